//! Writing a setup or undo to the cluster: istiocoredns's address, the compare-and-swap on
//! the DNS ConfigMap, and the note on how CoreDNS picks the change up.

use std::net::IpAddr;

use anyhow::Result;
use serde_json::Value;

use super::{clean, read, setup, undo, Flavor, CUSTOM_KEY, NAMESPACE};
use crate::api::{Applied, Cluster, WriteMode};
use crate::objects;
use crate::write::cas::{self, Change};

/// Sets up (or with `undo`, removes) the `global` stub domain of one cluster: reads the DNS
/// ConfigMap, changes only the `global` part, and writes it back guarded by its
/// resourceVersion (re-reading on a conflict). Returns what happened, and notes for stderr.
pub async fn apply(
    cluster: &Cluster,
    undo_it: bool,
    mode: WriteMode,
    notes: &mut Vec<String>,
) -> Result<Applied> {
    let cm_kind = objects::core("ConfigMap");
    let ip = if undo_it {
        None
    } else {
        Some(istiocoredns_ip(cluster).await?)
    };
    let (fl, first) = read(cluster).await?;
    let target = cas::Target {
        kind: &cm_kind,
        namespace: Some(NAMESPACE),
        name: fl.configmap(),
        read: Some(first),
    };
    let mut note = None;
    let updated = cas::update_cas(cluster, target, mode, |current| {
        let next = match ip {
            Some(ip) => setup(fl, current, ip),
            None => undo(fl, current),
        }
        .map_err(|e| anyhow::anyhow!("{e} (context {:?})", cluster.context))?;
        let Some(next) = next else {
            return Ok(Change::Keep);
        };
        note = restart_note(cluster, fl, ip.is_some(), &next);
        Ok(Change::Write(next))
    })
    .await?;
    notes.extend(note);
    let object = updated.object.as_ref().map_or_else(
        || objects::new_object(&cm_kind, Some(NAMESPACE), fl.configmap()),
        clean,
    );
    Ok(Applied {
        object,
        outcome: updated.outcome,
    })
}

/// The clusterIP of istiocoredns, which the `global` domain is to forward to.
async fn istiocoredns_ip(cluster: &Cluster) -> Result<IpAddr> {
    let svc = cluster
        .get(&objects::core("Service"), Some("istio-system"), "istiocoredns")
        .await?
        .ok_or_else(|| anyhow::anyhow!(
            "service istio-system/istiocoredns not found in context {:?}: --setup-dns needs istiocoredns (Istio 1.1-1.7 with addonComponents.istiocoredns.enabled)",
            cluster.context
        ))?;
    svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "service istio-system/istiocoredns in context {:?} has no cluster IP",
                cluster.context
            )
        })
}

/// When CoreDNS will not load the change by itself: AKS reads `coredns-custom` only on start,
/// and a Corefile without the reload plugin is read only on start.
fn restart_note(cluster: &Cluster, fl: Flavor, setting: bool, next: &Value) -> Option<String> {
    let reload = next["data"]["Corefile"]
        .as_str()
        .unwrap_or("")
        .contains("reload");
    match fl {
        Flavor::CoreDnsCustom => Some(format!(
            "{} runs AKS's managed CoreDNS: the block goes into configmap kube-system/coredns-custom (key {CUSTOM_KEY}), which CoreDNS loads on restart (kubectl --context {} -n kube-system rollout restart deployment coredns)",
            cluster.context, cluster.context
        )),
        Flavor::CoreDns if setting && !reload => Some(format!(
            "the Corefile of {} has no reload plugin: restart CoreDNS to load the change (kubectl --context {} -n kube-system rollout restart deployment coredns)",
            cluster.context, cluster.context
        )),
        _ => None,
    }
}
