//! A gateway Service as every plugin finds it: the `NAME[.NAMESPACE]` flags that name it, the
//! address other clusters and VMs reach it on, and whether it serves the multicluster port 15443.

use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
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

/// `NAME[.NAMESPACE]`: a Service name and, when given, its namespace.
pub fn parse_ref(s: &str) -> Result<(String, Option<String>), String> {
    let (name, namespace) = match s.split_once('.') {
        Some((n, ns)) => (n, Some(ns)),
        None => (s, None),
    };
    let bad = |e: String| {
        format!("{e} (expected NAME or NAME.NAMESPACE, e.g. istio-eastwestgateway.istio-system)")
    };
    names::dns1035_label(name).map_err(bad)?;
    if let Some(ns) = namespace {
        names::dns1123_label(ns).map_err(bad)?;
    }
    Ok((name.to_string(), namespace.map(String::from)))
}

impl FromStr for GatewayRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, namespace) = parse_ref(s)?;
        Ok(GatewayRef {
            name,
            namespace: namespace.unwrap_or_else(|| "istio-system".into()),
        })
    }
}

/// `--ingress-service NAME[.NAMESPACE]` of mesh-vm, whose namespace defaults to the Istio
/// namespace the command is given.
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
        let (name, namespace) = parse_ref(s)?;
        Ok(IngressService { name, namespace })
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

/// What a gateway Service offers, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `status.loadBalancer.ingress[].ip`.
    LoadBalancerIp(IpAddr),
    /// `spec.externalIPs[]`.
    ExternalIp(IpAddr),
    /// `status.loadBalancer.ingress[].hostname` (a trailing `.` dropped): needs DNS.
    Hostname(String),
    /// No address yet.
    Nothing,
}

/// Reads the best address a gateway Service offers: a load-balancer IP, else an external IP,
/// else a load-balancer hostname.
pub fn from_service(svc: &Value) -> Found {
    let ingress = svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if let Some(ip) = ingress
        .iter()
        .find_map(|i| i["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok()))
    {
        return Found::LoadBalancerIp(ip);
    }
    if let Some(ip) = svc["spec"]["externalIPs"]
        .as_array()
        .and_then(|a| a.iter().find_map(|s| s.as_str()?.parse::<IpAddr>().ok()))
    {
        return Found::ExternalIp(ip);
    }
    ingress
        .iter()
        .filter_map(|i| i["hostname"].as_str())
        .map(|h| h.trim_end_matches('.'))
        .find(|h| !h.is_empty())
        .map_or(Found::Nothing, |h| Found::Hostname(h.to_string()))
}

/// The gateway Service's external address (see [`from_service`]); `None` when the load
/// balancer has not been provisioned and no external IP is set.
pub fn address_of(svc: &Value) -> Option<GatewayAddress> {
    choose(svc, None).map(|(a, _)| a)
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
    /// `spec.externalIPs[]`.
    ExternalIp,
    /// `status.loadBalancer.ingress[].hostname`.
    LoadBalancerHostname,
    /// `--gateway-address`.
    Flag,
}

/// The address to use: the Service's (see [`from_service`]), else `--gateway-address`; `None`
/// when neither.
pub fn choose(
    svc: &Value,
    flag: Option<&GatewayAddress>,
) -> Option<(GatewayAddress, AddressSource)> {
    match from_service(svc) {
        Found::LoadBalancerIp(ip) => Some((GatewayAddress::Ip(ip), AddressSource::LoadBalancerIp)),
        Found::ExternalIp(ip) => Some((GatewayAddress::Ip(ip), AddressSource::ExternalIp)),
        Found::Hostname(h) => Some((
            GatewayAddress::Hostname(h),
            AddressSource::LoadBalancerHostname,
        )),
        Found::Nothing => flag.map(|a| (a.clone(), AddressSource::Flag)),
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
        assert_eq!(
            choose(&ext, None).map(|c| c.1),
            Some(AddressSource::ExternalIp)
        );
        let host = json!({"status": {"loadBalancer": {"ingress": [{"hostname": "x.elb."}]}}});
        assert_eq!(from_service(&host), Found::Hostname("x.elb".into()));
        assert_eq!(from_service(&json!({})), Found::Nothing);
    }

    #[test]
    fn localhost_resolves() {
        assert!(resolve("localhost")
            .map(|ip| ip.is_loopback())
            .unwrap_or(false));
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
