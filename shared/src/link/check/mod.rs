//! `kubectl mesh-link check`: the prerequisites of `.global` multicluster, one ✔/× line each.
//!
//! The facts are read first; each line is then a pure function of them (`lines.rs`, and
//! `release.rs` for the Istio version), so every verdict and hint is unit-tested without a
//! cluster.

mod lines;
mod release;

pub use lines::{
    destination_rule_line, gateway_line, root_cert_line, stub_domain_line, unique_addresses_line,
};
pub use release::{known_releases, release_of, version_line, Known, Release};

use std::fmt;

use anyhow::Result;
use serde_json::Value;

use super::dns;
use super::service_entry;
use crate::api::Cluster;
use crate::error::MeshError;
use crate::gateway::{GatewayAddress, GatewayRef};
use crate::istio::ServiceEntry;
use crate::objects;
use crate::Io;

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// ✔ when true.
    pub ok: bool,
    /// What was found, and on failure what to do.
    pub text: String,
}

impl Line {
    fn ok(text: impl Into<String>) -> Self {
        Line {
            ok: true,
            text: text.into(),
        }
    }
    fn fail(text: impl Into<String>) -> Self {
        Line {
            ok: false,
            text: text.into(),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", if self.ok { "✔" } else { "×" }, self.text)
    }
}

async fn control_plane(c: &Cluster) -> Result<Result<Release, String>> {
    let kind = objects::deployment();
    for name in ["istiod", "istio-pilot"] {
        if let Some(d) = c.get(&kind, Some("istio-system"), name).await? {
            return Ok(release_of(&d));
        }
    }
    Ok(Err(
        "no istiod (or istio-pilot) Deployment in istio-system".to_string()
    ))
}

/// Runs every check and prints one line each; exit 3 when any fails.
pub async fn run(
    a: &Cluster,
    b: &Cluster,
    gw: &GatewayRef,
    flag: Option<&GatewayAddress>,
    io: &mut Io,
) -> Result<()> {
    let mut lines = Vec::new();

    lines.push(version_line(&[
        (a.context.clone(), control_plane(a).await?),
        (b.context.clone(), control_plane(b).await?),
    ]));

    let svc = objects::core("Service");
    let gw_svc = a.get(&svc, Some(&gw.namespace), &gw.name).await?;
    lines.push(gateway_line(&a.context, gw, gw_svc.as_ref(), flag));

    lines.push(match istio_objects(b, "DestinationRule").await? {
        Ok(rules) => destination_rule_line(&b.context, &rules),
        Err(line) => line,
    });

    let istiocoredns = b.get(&svc, Some("istio-system"), "istiocoredns").await?;
    let (flavor, dns_cm) = dns::read(b).await?;
    lines.push(stub_domain_line(
        &b.context,
        istiocoredns.as_ref(),
        flavor,
        dns_cm.as_ref(),
    ));

    let (root_a, root_b) = (root_cert(a).await?, root_cert(b).await?);
    lines.push(root_cert_line(
        (&a.context, root_a.as_ref()),
        (&b.context, root_b.as_ref()),
    ));

    lines.push(match istio_objects(b, "ServiceEntry").await? {
        Ok(ses) => {
            let ses: Vec<ServiceEntry> = service_entry::read_listed(ses)?
                .into_iter()
                .map(|se| se.entry)
                .collect();
            unique_addresses_line(&b.context, &ses)
        }
        Err(line) => line,
    });

    finish(
        &mut io.out,
        &lines,
        None,
        &format!("{} -> {}", a.context, b.context),
    )
}

/// Every Istio object of `kind` in `c`, or the failed line when Istio's CRDs are not served
/// there (that fails this check only, not the run).
async fn istio_objects(c: &Cluster, kind: &str) -> Result<Result<Vec<Value>, Line>> {
    match c.istio_version().await {
        Ok(version) => Ok(Ok(c
            .list(&objects::istio(kind, &version), None, None)
            .await?)),
        Err(e) => Ok(Err(Line::fail(format!("{e:#}")))),
    }
}

/// The mesh's root certificate as istiod publishes it.
async fn root_cert(c: &Cluster) -> Result<Option<Value>> {
    let cm = objects::core("ConfigMap");
    c.get(&cm, Some("istio-system"), "istio-ca-root-cert").await
}

/// Prints the check lines (and a skipped one, which counts neither way), and fails with exit 3
/// when any line is a ×, naming how many of the checks of `what` failed.
pub fn finish(
    out: &mut impl std::io::Write,
    lines: &[Line],
    skipped: Option<&str>,
    what: &str,
) -> Result<()> {
    for l in lines {
        writeln!(out, "{l}")?;
    }
    if let Some(text) = skipped {
        writeln!(out, "- {text}")?;
    }
    let failed = lines.iter().filter(|l| !l.ok).count();
    if failed > 0 {
        return Err(MeshError::Check(format!(
            "{failed} of {} checks failed for {what}",
            lines.len()
        ))
        .into());
    }
    Ok(())
}
