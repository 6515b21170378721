//! The verdicts of `check` on the facts read: one pure function per prerequisite, each giving
//! one ✔/× line with the hint that fixes it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::Value;

use super::Line;
use crate::gateway::{self, GatewayAddress, GatewayRef, MULTICLUSTER_PORT};
use crate::istio::ServiceEntry;
use crate::link::dns::{self, Flavor};
use crate::link::service_entry;
use crate::objects;

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
pub fn unique_addresses_line(ctx: &str, ses: &[ServiceEntry]) -> Line {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let se = |host: &str, addr: &str| {
            ServiceEntry::read(&json!({"spec": {"hosts": [host], "addresses": [addr]}}))
                .expect("a ServiceEntry")
        };
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
