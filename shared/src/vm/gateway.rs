//! The east-west gateway's address, which the VM reaches istiod through: read from its Service,
//! with a hostname (e.g. an AWS ELB) resolved through DNS.

use std::net::{IpAddr, ToSocketAddrs};
use std::str::FromStr;

use serde_json::Value;

/// `--ingress-service NAME[.NAMESPACE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressService {
    /// Service name.
    pub name: String,
    /// Namespace, when given (default: the Istio namespace).
    pub namespace: Option<String>,
}

impl FromStr for IngressService {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, namespace) = match s.split_once('.') {
            Some((n, ns)) => (n, Some(ns)),
            None => (s, None),
        };
        let bad = |e: String| {
            format!("{e} (expected SERVICE or SERVICE.NAMESPACE, e.g. istio-eastwestgateway.istio-system)")
        };
        crate::names::dns1035_label(name).map_err(bad)?;
        if let Some(ns) = namespace {
            crate::names::dns1123_label(ns).map_err(bad)?;
        }
        Ok(IngressService {
            name: name.to_string(),
            namespace: namespace.map(String::from),
        })
    }
}

/// What a gateway Service offers, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `status.loadBalancer.ingress[].ip`.
    LoadBalancerIp(IpAddr),
    /// `spec.externalIPs[0]`.
    ExternalIp(IpAddr),
    /// `status.loadBalancer.ingress[].hostname`: needs DNS.
    Hostname(String),
    /// No address yet.
    Nothing,
}

/// Reads the best address a gateway Service offers.
pub fn from_service(svc: &Value) -> Found {
    let ingress = svc
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(ip) = ingress
        .iter()
        .find_map(|i| i["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok()))
    {
        return Found::LoadBalancerIp(ip);
    }
    if let Some(ip) = svc
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find_map(|s| s.as_str()?.parse::<IpAddr>().ok()))
    {
        return Found::ExternalIp(ip);
    }
    if let Some(h) = ingress
        .iter()
        .find_map(|i| i["hostname"].as_str().filter(|h| !h.is_empty()))
    {
        return Found::Hostname(h.to_string());
    }
    Found::Nothing
}

/// Resolves a load-balancer hostname; IPv4 first, as most VMs reach gateways over IPv4.
pub fn resolve(hostname: &str) -> Result<IpAddr, String> {
    let addrs: Vec<IpAddr> = (hostname, 15012)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the gateway's hostname {hostname}: {e}"))?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("the gateway's hostname {hostname} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ingress_service_flag() {
        assert_eq!(
            "gw.mesh".parse::<IngressService>(),
            Ok(IngressService {
                name: "gw".into(),
                namespace: Some("mesh".into())
            })
        );
        assert_eq!(
            "gw".parse::<IngressService>().map(|s| s.namespace),
            Ok(None)
        );
        for bad in ["", "Gw", "gw.", "gw.a.b", "1gw"] {
            assert!(bad.parse::<IngressService>().is_err(), "{bad}");
        }
    }

    #[test]
    fn address_preference() {
        let ip = json!({"status": {"loadBalancer": {"ingress": [{"hostname": "x.elb"}, {"ip": "1.2.3.4"}]}}, "spec": {"externalIPs": ["5.6.7.8"]}});
        assert_eq!(
            from_service(&ip),
            Found::LoadBalancerIp("1.2.3.4".parse().expect("ip"))
        );
        let ext = json!({"status": {"loadBalancer": {}}, "spec": {"externalIPs": ["5.6.7.8"]}});
        assert_eq!(
            from_service(&ext),
            Found::ExternalIp("5.6.7.8".parse().expect("ip"))
        );
        let host = json!({"status": {"loadBalancer": {"ingress": [{"hostname": "x.elb"}]}}});
        assert_eq!(from_service(&host), Found::Hostname("x.elb".into()));
        assert_eq!(from_service(&json!({})), Found::Nothing);
    }

    #[test]
    fn localhost_resolves() {
        assert!(resolve("localhost")
            .map(|ip| ip.is_loopback())
            .unwrap_or(false));
    }
}
