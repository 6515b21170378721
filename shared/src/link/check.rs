//! `kubectl mesh-link check`: the prerequisites of `.global` multicluster, one ✔/× line each.
//!
//! The facts are read first; each line is then a pure function of them, so every verdict and
//! hint is unit-tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use anyhow::Result;
use serde_json::Value;

use super::dns::{self, Flavor};
use super::service_entry;
use crate::api::Cluster;
use crate::error::MeshError;
use crate::gateway::{self, GatewayAddress, GatewayRef, MULTICLUSTER_PORT};
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

/// An Istio release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release(pub u32, pub u32, pub u32);

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The release of the control plane from its Deployment's image tag (`istio/pilot:1.7.8`,
/// `pilot:1.7.8-distroless`).
pub fn release_of(deployment: &Value) -> Result<Release, String> {
    let images: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["image"].as_str()).collect())
        .unwrap_or_default();
    let image = images
        .iter()
        .find(|i| i.contains("pilot"))
        .or(images.first())
        .ok_or_else(|| {
            format!(
                "deployment {} has no container image",
                objects::name(deployment)
            )
        })?;
    let tail = image.rsplit('/').next().unwrap_or(image);
    let tag = tail.split_once('@').map_or(tail, |(t, _)| t);
    let tag = tag
        .split_once(':')
        .map(|(_, t)| t)
        .ok_or_else(|| format!("image {image} has no version tag"))?;
    let core = tag.split(['-', '+']).next().unwrap_or(tag);
    let nums: Vec<u32> = core
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("image {image}: tag {tag:?} is not a release version"))?;
    match nums.as_slice() {
        [a, b, c] => Ok(Release(*a, *b, *c)),
        [a, b] => Ok(Release(*a, *b, 0)),
        _ => Err(format!(
            "image {image}: tag {tag:?} is not a release version"
        )),
    }
}

const MODERN: &str = "use multi-primary on separate networks instead: an east-west gateway exposing *.local on 15443 (samples/multicluster/expose-services.yaml) and remote secrets both ways (kubectl mesh-link --mode remote-secret --bidirectional, or istioctl create-remote-secret); callers then use SERVICE.NS.svc.cluster.local";

/// Each context's release, and the `1.8.6 in cluster1, ...` list of them.
pub type Known<'a> = (Vec<(&'a String, Release)>, String);

/// Each context's release and the `1.8.6 in cluster1, ...` list of them, or the failed line of
/// the first context whose release is unknown (both modes' version checks start here).
pub fn known_releases(releases: &[(String, Result<Release, String>)]) -> Result<Known<'_>, Line> {
    let mut found = Vec::new();
    for (ctx, r) in releases {
        match r {
            Err(e) => {
                return Err(Line::fail(format!(
                    "cannot tell the Istio version of {ctx}: {e}"
                )))
            }
            Ok(r) => found.push((ctx, *r)),
        }
    }
    let list = found
        .iter()
        .map(|(c, r)| format!("{r} in {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((found, list))
}

/// The Istio version line over both clusters' releases.
pub fn version_line(releases: &[(String, Result<Release, String>)]) -> Line {
    let (found, list) = match known_releases(releases) {
        Ok(known) => known,
        Err(line) => return line,
    };
    if let Some((ctx, r)) = found.iter().find(|(_, r)| *r >= Release(1, 8, 6)) {
        return Line::fail(format!(
            "Istio {list}: .global is deprecated since 1.8 and broken from 1.8.6 (istio/istio#32848), and {ctx} runs {r}: {MODERN}"
        ));
    }
    if found.iter().any(|(_, r)| *r >= Release(1, 8, 0)) {
        return Line::ok(format!("Istio {list}: .global still works but is deprecated since 1.8 and breaks from 1.8.6; plan the move: {MODERN}"));
    }
    Line::ok(format!("Istio {list}: .global multicluster is supported"))
}

/// The source gateway line.
pub fn gateway_line(
    ctx: &str,
    gw: &GatewayRef,
    svc: Option<&Value>,
    flag: Option<&GatewayAddress>,
) -> Line {
    let Some(svc) = svc else {
        return Line::fail(format!(
            "gateway service {gw} not found in {ctx}: install the ingress gateway, or name it with --gateway-service NAME[.NAMESPACE]"
        ));
    };
    if !gateway::exposes_multicluster_port(svc) {
        return Line::fail(format!(
            "gateway service {gw} in {ctx} does not expose port {MULTICLUSTER_PORT}: install the gateways with the multicluster values (port {MULTICLUSTER_PORT} named tls, ISTIO_META_ROUTER_MODE=sni-dnat)"
        ));
    }
    match gateway::choose(svc, flag) {
        Some((addr, _)) => Line::ok(format!("gateway service {gw} in {ctx} serves port {MULTICLUSTER_PORT} at {addr}")),
        None => Line::fail(format!(
            "gateway service {gw} in {ctx} serves port {MULTICLUSTER_PORT} but has no load-balancer IP or hostname: wait for the load balancer, or pass --gateway-address"
        )),
    }
}

/// The `*.global` DestinationRule line.
pub fn destination_rule_line(ctx: &str, rules: &[Value]) -> Line {
    let found = rules.iter().find(|dr| {
        dr["spec"]["host"].as_str() == Some("*.global")
            && dr["spec"]["trafficPolicy"]["tls"]["mode"].as_str() == Some("ISTIO_MUTUAL")
    });
    match found {
        Some(dr) => Line::ok(format!(
            "DestinationRule {}/{} in {ctx} sends *.global traffic with ISTIO_MUTUAL",
            objects::namespace(dr).unwrap_or(""),
            objects::name(dr)
        )),
        None => Line::fail(format!(
            "no DestinationRule for host *.global with tls mode ISTIO_MUTUAL in {ctx}: install Istio there with the multicluster gateways values, or apply one in istio-system (spec: {{host: \"*.global\", trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}})"
        )),
    }
}

/// The stub-domain line: istiocoredns exists and the cluster DNS forwards `global` to it.
pub fn stub_domain_line(
    ctx: &str,
    istiocoredns: Option<&Value>,
    flavor: Flavor,
    dns_cm: Option<&Value>,
) -> Line {
    let ip = istiocoredns
        .and_then(|s| s["spec"]["clusterIP"].as_str())
        .filter(|ip| !ip.is_empty() && *ip != "None");
    let Some(ip) = ip else {
        return Line::fail(format!(
            "service istio-system/istiocoredns not found in {ctx}: install Istio (1.1-1.7) with istiocoredns enabled (addonComponents.istiocoredns.enabled: true)"
        ));
    };
    let cm = format!("configmap {}/{}", dns::NAMESPACE, flavor.configmap());
    match dns::configured_target(flavor, dns_cm) {
        Some(targets) if targets.iter().any(|t| t == ip) => {
            Line::ok(format!("the global DNS domain of {ctx} forwards to istiocoredns ({ip}) in {cm}"))
        }
        Some(targets) => Line::fail(format!(
            "the global DNS domain of {ctx} forwards to {} but istiocoredns is {ip}: run kubectl mesh-link --to {ctx} --setup-dns",
            targets.join(",")
        )),
        None => Line::fail(format!(
            "no global stub domain in {cm} of {ctx}: run kubectl mesh-link --to {ctx} --setup-dns"
        )),
    }
}

/// The shared-root line: `istio-ca-root-cert` holds the same `root-cert.pem` in both clusters.
pub fn root_cert_line(a: (&str, Option<&Value>), b: (&str, Option<&Value>)) -> Line {
    let pem = |cm: Option<&Value>| {
        cm.and_then(|c| c["data"]["root-cert.pem"].as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    match (pem(a.1), pem(b.1)) {
        (Some(x), Some(y)) if x == y => Line::ok(format!("{} and {} share the root certificate (istio-ca-root-cert)", a.0, b.0)),
        (Some(_), Some(_)) => Line::fail(format!(
            "{} and {} have different root certificates (istio-ca-root-cert): mTLS between them fails; plug the same root CA into both (the cacerts secret in istio-system, from one root) and restart istiod",
            a.0, b.0
        )),
        (x, _) => {
            let missing = if x.is_none() { a.0 } else { b.0 };
            Line::fail(format!(
                "configmap istio-system/istio-ca-root-cert (root-cert.pem) not found in {missing}: is Istio installed there?"
            ))
        }
    }
}

/// The uniqueness line: no address of the target is used by two different hosts.
pub fn unique_addresses_line(ctx: &str, ses: &[Value]) -> Line {
    let mut owners: BTreeMap<Ipv4Addr, BTreeSet<String>> = BTreeMap::new();
    for se in ses {
        for ip in service_entry::ipv4_addresses(se) {
            for h in service_entry::hosts(se) {
                owners.entry(ip).or_default().insert(h.to_string());
            }
        }
    }
    let shared: Vec<String> = owners
        .iter()
        .filter(|(_, hs)| hs.len() > 1)
        .map(|(ip, hs)| {
            format!(
                "{ip} ({})",
                hs.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    if shared.is_empty() {
        Line::ok(format!(
            "the {} ServiceEntry addresses in {ctx} are unique",
            owners.len()
        ))
    } else {
        let shown = shared
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        let more = if shared.len() > 5 {
            format!(" and {} more", shared.len() - 5)
        } else {
            String::new()
        };
        Line::fail(format!(
            "{} addresses in {ctx} are shared by several hosts: {shown}{more}: give each host its own address (kubectl mesh-link allocates unique ones)",
            shared.len()
        ))
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
    let svc = objects::core("Service");
    let cm = objects::core("ConfigMap");
    let mut lines = Vec::new();

    lines.push(version_line(&[
        (a.context.clone(), control_plane(a).await?),
        (b.context.clone(), control_plane(b).await?),
    ]));

    let gw_svc = a.get(&svc, Some(&gw.namespace), &gw.name).await?;
    lines.push(gateway_line(&a.context, gw, gw_svc.as_ref(), flag));

    match b.istio_version().await {
        Ok(version) => {
            let rules = b
                .list(&objects::istio("DestinationRule", &version), None, None)
                .await?;
            lines.push(destination_rule_line(&b.context, &rules));
        }
        Err(e) => lines.push(Line::fail(format!("{e:#}"))),
    }

    let istiocoredns = b.get(&svc, Some("istio-system"), "istiocoredns").await?;
    let (flavor, dns_cm) = dns::read(b).await?;
    lines.push(stub_domain_line(
        &b.context,
        istiocoredns.as_ref(),
        flavor,
        dns_cm.as_ref(),
    ));

    let root_a = a
        .get(&cm, Some("istio-system"), "istio-ca-root-cert")
        .await?;
    let root_b = b
        .get(&cm, Some("istio-system"), "istio-ca-root-cert")
        .await?;
    lines.push(root_cert_line(
        (&a.context, root_a.as_ref()),
        (&b.context, root_b.as_ref()),
    ));

    match b.istio_version().await {
        Ok(version) => {
            let ses = b
                .list(&objects::istio("ServiceEntry", &version), None, None)
                .await?;
            lines.push(unique_addresses_line(&b.context, &ses));
        }
        Err(e) => lines.push(Line::fail(format!("{e:#}"))),
    }

    finish(
        &mut io.out,
        &lines,
        None,
        &format!("{} -> {}", a.context, b.context),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(image: &str) -> Value {
        json!({"metadata": {"name": "istiod"}, "spec": {"template": {"spec": {"containers": [{"name": "discovery", "image": image}]}}}})
    }

    #[test]
    fn releases_from_images() {
        assert_eq!(
            release_of(&deploy("docker.io/istio/pilot:1.7.8")),
            Ok(Release(1, 7, 8))
        );
        assert_eq!(
            release_of(&deploy("gcr.io/istio-release/pilot:1.5.2-distroless")),
            Ok(Release(1, 5, 2))
        );
        assert_eq!(
            release_of(&deploy("localhost:5000/istio/pilot:1.6")),
            Ok(Release(1, 6, 0))
        );
        assert_eq!(
            release_of(&deploy("istio/pilot:1.4.2@sha256:abc")),
            Ok(Release(1, 4, 2))
        );
        assert!(release_of(&deploy("istio/pilot:latest")).is_err());
        assert!(release_of(&deploy("istio/pilot")).is_err());
        assert!(release_of(&json!({})).is_err());
    }

    fn v(ctx: &str, r: Release) -> (String, Result<Release, String>) {
        (ctx.to_string(), Ok(r))
    }

    #[test]
    fn versions() {
        let l = version_line(&[v("c1", Release(1, 7, 8)), v("c2", Release(1, 6, 14))]);
        assert!(l.ok, "{l}");
        assert_eq!(
            l.to_string(),
            "✔ Istio 1.7.8 in c1, 1.6.14 in c2: .global multicluster is supported"
        );
        let l = version_line(&[v("c1", Release(1, 8, 5)), v("c2", Release(1, 7, 0))]);
        assert!(l.ok && l.text.contains("deprecated"), "{l}");
        let l = version_line(&[v("c1", Release(1, 7, 0)), v("c2", Release(1, 8, 6))]);
        assert!(
            !l.ok
                && l.text.contains("broken from 1.8.6")
                && l.text.contains("create-remote-secret"),
            "{l}"
        );
        let l = version_line(&[v("c1", Release(1, 20, 0)), v("c2", Release(1, 20, 0))]);
        assert!(!l.ok);
        let l = version_line(&[
            ("c1".into(), Err("no istiod".into())),
            v("c2", Release(1, 7, 0)),
        ]);
        assert!(!l.ok && l.text.contains("c1"));
    }

    #[test]
    fn gateway() {
        let gw = GatewayRef::default();
        let good = json!({"spec": {"ports": [{"port": 15443}]}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}});
        assert!(gateway_line("c1", &gw, Some(&good), None).ok);
        let l = gateway_line("c1", &gw, None, None);
        assert!(!l.ok && l.text.contains("--gateway-service"));
        let no_port = json!({"spec": {"ports": [{"port": 443}]}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}});
        assert!(gateway_line("c1", &gw, Some(&no_port), None)
            .text
            .contains("15443"));
        let pending = json!({"spec": {"ports": [{"port": 15443}]}});
        assert!(!gateway_line("c1", &gw, Some(&pending), None).ok);
        let flag: GatewayAddress = "198.51.100.1".parse().expect("addr");
        assert!(gateway_line("c1", &gw, Some(&pending), Some(&flag)).ok);
    }

    #[test]
    fn destination_rules() {
        let good = json!({"metadata": {"name": "istio-multicluster-ingressgateway", "namespace": "istio-system"},
                          "spec": {"host": "*.global", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}});
        let plain = json!({"metadata": {"name": "x", "namespace": "default"}, "spec": {"host": "*.global"}});
        assert!(destination_rule_line("c2", &[plain.clone(), good]).ok);
        assert!(!destination_rule_line("c2", &[plain]).ok);
    }

    #[test]
    fn stub_domains() {
        let core = json!({"data": {"Corefile": ".:53 {\n}\n"}});
        let svc = json!({"spec": {"clusterIP": "10.96.0.53"}});
        let l = stub_domain_line("c2", Some(&svc), Flavor::CoreDns, Some(&core));
        assert!(!l.ok && l.text.contains("--setup-dns"), "{l}");
        let set = dns::setup(
            Flavor::CoreDns,
            Some(&core),
            "10.96.0.53".parse().expect("ip"),
        )
        .expect("setup")
        .expect("changed");
        assert!(stub_domain_line("c2", Some(&svc), Flavor::CoreDns, Some(&set)).ok);
        let other = json!({"spec": {"clusterIP": "10.96.0.54"}});
        assert!(!stub_domain_line("c2", Some(&other), Flavor::CoreDns, Some(&set)).ok);
        assert!(stub_domain_line("c2", None, Flavor::CoreDns, Some(&set))
            .text
            .contains("istiocoredns"));
    }

    #[test]
    fn root_certs() {
        let a = json!({"data": {"root-cert.pem": "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"}});
        let b = json!({"data": {"root-cert.pem": "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----"}});
        let c = json!({"data": {"root-cert.pem": "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----"}});
        assert!(root_cert_line(("c1", Some(&a)), ("c2", Some(&b))).ok);
        assert!(!root_cert_line(("c1", Some(&a)), ("c2", Some(&c))).ok);
        let l = root_cert_line(("c1", Some(&a)), ("c2", None));
        assert!(!l.ok && l.text.contains("c2"));
    }

    #[test]
    fn address_uniqueness() {
        let se = |host: &str, addr: &str| json!({"spec": {"hosts": [host], "addresses": [addr]}});
        let ok = [
            se("a.default.global", "240.0.0.1"),
            se("b.default.global", "240.0.0.2"),
            se("a.default.global", "240.0.0.1"),
        ];
        assert!(unique_addresses_line("c2", &ok).ok);
        let bad = [
            se("a.default.global", "240.0.0.1"),
            se("b.default.global", "240.0.0.1"),
        ];
        let l = unique_addresses_line("c2", &bad);
        assert!(
            !l.ok
                && l.text
                    .contains("240.0.0.1 (a.default.global, b.default.global)"),
            "{l}"
        );
    }
}
