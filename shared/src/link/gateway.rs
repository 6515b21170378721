//! The source cluster's ingress gateway: which Service it is, the address other clusters reach
//! it on, and whether it serves the `.global` SNI port 15443.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

use crate::names;

/// The port `.global` traffic enters the source cluster's gateway on (mTLS, routed by SNI).
pub const MULTICLUSTER_PORT: u16 = 15443;

/// `--gateway-service NAME[.NAMESPACE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRef {
    /// Service name.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
}

impl Default for GatewayRef {
    fn default() -> Self {
        GatewayRef {
            name: "istio-ingressgateway".into(),
            namespace: "istio-system".into(),
        }
    }
}

impl FromStr for GatewayRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, namespace) = s.split_once('.').unwrap_or((s, "istio-system"));
        names::dns1035_label(name).map_err(|e| format!("{e}; expected NAME[.NAMESPACE]"))?;
        names::dns1123_label(namespace).map_err(|e| {
            format!("{e}; expected NAME[.NAMESPACE], e.g. istio-ingressgateway.istio-system")
        })?;
        Ok(GatewayRef {
            name: name.into(),
            namespace: namespace.into(),
        })
    }
}

impl fmt::Display for GatewayRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where the gateway is reached: an IP, or a DNS name (AWS ELBs) that Envoy resolves itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayAddress {
    /// A load-balancer or given IP.
    Ip(IpAddr),
    /// A DNS name, kept as a name so address changes behind it are followed.
    Hostname(String),
}

impl GatewayAddress {
    /// The text of the endpoint address.
    pub fn as_endpoint(&self) -> String {
        match self {
            GatewayAddress::Ip(ip) => ip.to_string(),
            GatewayAddress::Hostname(h) => h.clone(),
        }
    }
}

impl fmt::Display for GatewayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_endpoint())
    }
}

impl FromStr for GatewayAddress {
    type Err = String;

    /// `--gateway-address`: an IP, or a DNS name.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = IpAddr::from_str(s) {
            return Ok(GatewayAddress::Ip(ip));
        }
        let host = s.trim_end_matches('.').to_ascii_lowercase();
        let looks_numeric = host
            .split('.')
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if host.is_empty() || looks_numeric || s.contains(':') || s.contains('/') {
            return Err(format!(
                "{s:?} is neither an IP address nor a DNS name: expected e.g. 203.0.113.10 or gw.example.com (no port: it is always {MULTICLUSTER_PORT})"
            ));
        }
        names::dns1123_subdomain(&host).map_err(|e| {
            format!("{e}: expected an IP address or a DNS name such as gw.example.com")
        })?;
        Ok(GatewayAddress::Hostname(host))
    }
}

/// The gateway Service's external address: a load-balancer IP first, else a load-balancer
/// hostname. `None` when the load balancer has not been provisioned.
pub fn address_of(svc: &Value) -> Option<GatewayAddress> {
    let ingress = svc["status"]["loadBalancer"]["ingress"].as_array()?;
    let ip = ingress
        .iter()
        .filter_map(|i| i["ip"].as_str())
        .find_map(|s| IpAddr::from_str(s).ok());
    if let Some(ip) = ip {
        return Some(GatewayAddress::Ip(ip));
    }
    ingress
        .iter()
        .filter_map(|i| i["hostname"].as_str())
        .find(|h| !h.is_empty())
        .map(|h| GatewayAddress::Hostname(h.trim_end_matches('.').to_string()))
}

/// Whether the Service exposes the multicluster port 15443.
pub fn exposes_multicluster_port(svc: &Value) -> bool {
    svc["spec"]["ports"].as_array().is_some_and(|ps| {
        ps.iter()
            .any(|p| p["port"].as_u64() == Some(u64::from(MULTICLUSTER_PORT)))
    })
}

/// Where the address came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// `status.loadBalancer.ingress[].ip`.
    LoadBalancerIp,
    /// `status.loadBalancer.ingress[].hostname`.
    LoadBalancerHostname,
    /// `--gateway-address`.
    Flag,
}

/// The address to use: the load balancer's, else `--gateway-address`; `None` when neither.
pub fn choose(
    svc: &Value,
    flag: Option<&GatewayAddress>,
) -> Option<(GatewayAddress, AddressSource)> {
    match address_of(svc) {
        Some(a @ GatewayAddress::Ip(_)) => Some((a, AddressSource::LoadBalancerIp)),
        Some(a @ GatewayAddress::Hostname(_)) => Some((a, AddressSource::LoadBalancerHostname)),
        None => flag.map(|a| (a.clone(), AddressSource::Flag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ingress: Value, ports: &[u16]) -> Value {
        let ports: Vec<Value> = ports.iter().map(|p| json!({"port": p})).collect();
        json!({"spec": {"ports": ports}, "status": {"loadBalancer": {"ingress": ingress}}})
    }

    #[test]
    fn refs() {
        assert_eq!("istio-ingressgateway".parse(), Ok(GatewayRef::default()));
        assert_eq!(
            "gw.mesh-gw".parse(),
            Ok(GatewayRef {
                name: "gw".into(),
                namespace: "mesh-gw".into()
            })
        );
        for bad in ["", "Gw", "gw.", ".ns", "gw.ns.x", "1gw"] {
            assert!(bad.parse::<GatewayRef>().is_err(), "{bad}");
        }
        assert_eq!(
            GatewayRef::default().to_string(),
            "istio-system/istio-ingressgateway"
        );
    }

    #[test]
    fn address_flag() {
        assert_eq!(
            "203.0.113.10".parse(),
            Ok(GatewayAddress::Ip("203.0.113.10".parse().expect("ip")))
        );
        assert_eq!(
            "fd00::1".parse::<GatewayAddress>().map(|a| a.to_string()),
            Ok("fd00::1".into())
        );
        assert_eq!(
            "GW.Example.com.".parse(),
            Ok(GatewayAddress::Hostname("gw.example.com".into()))
        );
        for bad in [
            "",
            "1.2.3",
            "999.1.1.1",
            "gw.example.com:15443",
            "gw_1.example.com",
            "http://gw",
        ] {
            assert!(bad.parse::<GatewayAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_before_hostname() {
        let s = svc(
            json!([{"hostname": "a.elb.amazonaws.com"}, {"ip": "203.0.113.10"}]),
            &[15443],
        );
        assert_eq!(
            address_of(&s),
            Some(GatewayAddress::Ip("203.0.113.10".parse().expect("ip")))
        );
        let s = svc(json!([{"hostname": "a.elb.amazonaws.com"}]), &[15443]);
        assert_eq!(
            address_of(&s),
            Some(GatewayAddress::Hostname("a.elb.amazonaws.com".into()))
        );
        let s = svc(json!([]), &[15443]);
        assert_eq!(address_of(&s), None);
        assert_eq!(address_of(&json!({"spec": {}})), None);
    }

    #[test]
    fn flag_is_the_fallback() {
        let flag: GatewayAddress = "198.51.100.1".parse().expect("flag");
        let pending = svc(json!([]), &[15443]);
        assert_eq!(
            choose(&pending, Some(&flag)),
            Some((flag.clone(), AddressSource::Flag))
        );
        assert_eq!(choose(&pending, None), None);
        let lb = svc(json!([{"ip": "203.0.113.10"}]), &[15443]);
        assert_eq!(
            choose(&lb, Some(&flag)).map(|c| c.1),
            Some(AddressSource::LoadBalancerIp)
        );
    }

    #[test]
    fn port_15443() {
        assert!(exposes_multicluster_port(&svc(
            json!([]),
            &[80, 443, 15443]
        )));
        assert!(!exposes_multicluster_port(&svc(json!([]), &[80, 443])));
        assert!(!exposes_multicluster_port(&json!({})));
    }
}
