//! `--network`: clusters on separate networks reach each other's workloads through an
//! east-west gateway on port 15443. The source's gateway Service is checked before anything is
//! written; `--expose-services` also applies the `cross-network-gateway` Gateway that lets it
//! pass `*.local` through (Istio's `samples/multicluster/expose-services.yaml`).

use serde_json::{json, Value};

use crate::gateway::{GatewayRef, MULTICLUSTER_PORT};
use crate::objects;
use crate::vm::control_plane::NETWORK_LABEL;

/// The name of Istio's sample east-west gateway Service.
pub const DEFAULT_GATEWAY: &str = "istio-eastwestgateway.istio-system";
/// The Gateway of `expose-services.yaml`.
pub const GATEWAY_NAME: &str = "cross-network-gateway";

/// What is wrong with the east-west gateway Service of a cluster on `network`; empty when it
/// can carry the cross-network traffic.
pub fn gateway_problems(svc: Option<&Value>, gw: &GatewayRef, network: &str) -> Vec<String> {
    let Some(svc) = svc else {
        return vec![format!(
            "Service {gw} not found: install the east-west gateway (Istio's samples/multicluster/gen-eastwest-gateway.sh --network {network}), or name it with --eastwest-gateway"
        )];
    };
    let mut problems = Vec::new();
    // The port istiod sends to: the networking.istio.io/gatewayPort label, else 15443.
    if let Err(e) = super::probe::gateway_port(svc) {
        let why = e.replace("the Service has no port", "exposes no port");
        problems.push(format!("Service {gw} {why}"));
    }
    if super::probe::gateway_host(svc).is_none() {
        problems.push(format!(
            "Service {gw} has no external address yet (status.loadBalancer.ingress, spec.externalIPs)"
        ));
    }
    match svc["metadata"]["labels"][NETWORK_LABEL].as_str() {
        Some(n) if n == network => {}
        Some(n) => problems.push(format!(
            "Service {gw} has label {NETWORK_LABEL}={n}, not {network}: istiod would not take it for this network's gateway"
        )),
        None => problems.push(format!(
            "Service {gw} has no label {NETWORK_LABEL}={network}: istiod finds a network's gateway by it"
        )),
    }
    problems
}

/// The Gateway exposing every `*.local` service on 15443 with `AUTO_PASSTHROUGH`, selecting
/// the east-west gateway's pods as its Service does.
pub fn cross_network_gateway(namespace: &str, version: &str, selector: &Value) -> Value {
    let mut obj = objects::new_object(
        &objects::istio("Gateway", version),
        Some(namespace),
        GATEWAY_NAME,
    );
    let selector = if selector.as_object().is_some_and(|m| !m.is_empty()) {
        selector.clone()
    } else {
        json!({"istio": "eastwestgateway"})
    };
    obj["spec"] = json!({
        "selector": selector,
        "servers": [{
            "port": {"number": MULTICLUSTER_PORT, "name": "tls", "protocol": "TLS"},
            "tls": {"mode": "AUTO_PASSTHROUGH"},
            "hosts": ["*.local"],
        }],
    });
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Value {
        json!({
            "metadata": {"name": "istio-eastwestgateway", "labels": {NETWORK_LABEL: "network1"}},
            "spec": {"ports": [{"name": "tls", "port": 15443}], "selector": {"istio": "eastwestgateway"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}},
        })
    }

    #[test]
    fn gateway_checks() {
        let gw: GatewayRef = DEFAULT_GATEWAY.parse().expect("ref");
        assert!(gateway_problems(Some(&svc()), &gw, "network1").is_empty());
        let p = gateway_problems(Some(&svc()), &gw, "network2");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("not network2"));
        let mut bare = svc();
        bare["status"] = json!({});
        bare["spec"]["ports"] = json!([{"port": 443}]);
        assert_eq!(gateway_problems(Some(&bare), &gw, "network1").len(), 2);
        assert!(gateway_problems(None, &gw, "network1")[0].contains("not found"));
    }

    #[test]
    fn the_gateway_is_expose_services_yaml() {
        insta::assert_yaml_snapshot!(
            "cross_network_gateway",
            cross_network_gateway("istio-system", "v1", &json!({"istio": "eastwestgateway"}))
        );
    }
}
