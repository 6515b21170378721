//! The `.global` ServiceEntry that makes a service of one cluster callable from another: its
//! name and host, the ports taken from the source Service, and how a linked entry is recognised.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use serde_json::Value;

use crate::gateway::{GatewayAddress, MULTICLUSTER_PORT};
use crate::istio::{self, ServiceEntry, ServiceEntrySpec, ServicePort, WorkloadEntrySpec};
use crate::names;
use crate::objects;
use crate::ports::Protocol;

/// Annotation naming the context whose Service a linked ServiceEntry points at.
pub const SOURCE_ANNOTATION: &str = "kubectl-mesh/link-source";

/// `SERVICE.NAMESPACE.global`: the name callers use.
pub fn host(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.global")
}

/// `SERVICE-global`: the ServiceEntry's name.
pub fn name(service: &str) -> String {
    format!("{service}-global")
}

/// One port of the source Service, as the ServiceEntry declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPort {
    /// The Service port's name (or `<protocol>-<number>` for an unnamed single port).
    pub name: String,
    /// The Service port number (not the target port: callers dial the Service's port).
    pub number: u16,
    /// From `appProtocol`, else the name's prefix, else TCP.
    pub protocol: Protocol,
}

/// What a source Service contributes to its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceService {
    /// Service name.
    pub name: String,
    /// Service namespace (also the namespace of the ServiceEntry in the target).
    pub namespace: String,
    /// The ports to declare, in the Service's order.
    pub ports: Vec<LinkPort>,
    /// Ports left out, with the reason, for a note.
    pub skipped_ports: Vec<String>,
}

/// Why a Service is not linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotLinkable {
    /// No port the gateway can carry.
    NoPorts(String),
}

impl std::fmt::Display for NotLinkable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotLinkable::NoPorts(why) => f.write_str(why),
        }
    }
}

/// Reads the ports of a source Service. Only TCP ports travel through the gateway's 15443
/// passthrough, so UDP and SCTP ports are left out; a Service with no port left is not linked.
pub fn source_service(svc: &Service) -> Result<SourceService, NotLinkable> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let namespace = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Err(NotLinkable::NoPorts(format!(
            "service/{name} is an ExternalName Service: it has no endpoints behind the gateway"
        )));
    }
    let mut ports = Vec::new();
    let mut skipped_ports = Vec::new();
    for p in spec.and_then(|s| s.ports.as_deref()).unwrap_or_default() {
        let Some(number) = u16::try_from(p.port).ok().filter(|n| *n > 0) else {
            continue;
        };
        let transport = p.protocol.as_deref().unwrap_or("TCP");
        let port_name = p.name.as_deref().unwrap_or("").to_ascii_lowercase();
        if !transport.eq_ignore_ascii_case("TCP") {
            let label = if port_name.is_empty() {
                number.to_string()
            } else {
                format!("{port_name}:{number}")
            };
            skipped_ports.push(format!("{label}/{transport}"));
            continue;
        }
        let protocol = p
            .app_protocol
            .as_deref()
            .and_then(Protocol::from_app_protocol)
            .or_else(|| Protocol::from_port_name(&port_name))
            .unwrap_or(Protocol::Tcp);
        let name = if port_name.is_empty() {
            format!("{}-{number}", protocol.prefix())
        } else {
            port_name
        };
        ports.push(LinkPort {
            name,
            number,
            protocol,
        });
    }
    if ports.is_empty() {
        let why = if skipped_ports.is_empty() {
            format!("service/{name} has no ports")
        } else {
            format!(
                "service/{name} has only non-TCP ports ({})",
                skipped_ports.join(", ")
            )
        };
        return Err(NotLinkable::NoPorts(why));
    }
    Ok(SourceService {
        name,
        namespace,
        ports,
        skipped_ports,
    })
}

/// Everything one ServiceEntry is built from.
#[derive(Debug, Clone)]
pub struct Link<'a> {
    /// The source Service.
    pub service: &'a SourceService,
    /// Its address in the target cluster.
    pub address: Ipv4Addr,
    /// The source cluster's gateway.
    pub gateway: &'a GatewayAddress,
    /// The source context name.
    pub source_context: &'a str,
}

/// The endpoint label value for a context: the name itself when it is a valid label value,
/// else a cleaned-up form (`arn:aws:eks:...:cluster/prod` becomes `arn-aws-eks-...-cluster-prod`).
pub fn cluster_label(context: &str) -> String {
    if names::label_value(context).is_ok() && !context.is_empty() {
        return context.to_string();
    }
    let cleaned: String = context
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tail: String = cleaned
        .chars()
        .rev()
        .take(63)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let trimmed = tail
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if trimmed.is_empty() {
        "unknown".to_string()
    } else {
        trimmed
    }
}

/// Builds the ServiceEntry `SERVICE-global` in the target cluster, as the write engine takes it.
pub fn build(link: &Link<'_>, version: &str) -> Value {
    entry(link, version).to_value()
}

/// Builds the ServiceEntry `SERVICE-global` in the target cluster.
pub fn entry(link: &Link<'_>, version: &str) -> ServiceEntry {
    let svc = link.service;
    let kind = objects::istio("ServiceEntry", version);
    let ports = svc
        .ports
        .iter()
        .map(|p| ServicePort {
            number: u32::from(p.number),
            name: Some(p.name.clone()),
            protocol: Some(p.protocol.istio_name().to_string()),
            ..ServicePort::default()
        })
        .collect();
    // Every port reaches the source cluster through its gateway's one mTLS passthrough port.
    let endpoint_ports = svc
        .ports
        .iter()
        .map(|p| (p.name.clone(), u32::from(MULTICLUSTER_PORT)))
        .collect();
    let spec = ServiceEntrySpec {
        hosts: vec![host(&svc.name, &svc.namespace)],
        location: Some("MESH_INTERNAL".to_string()),
        resolution: Some("DNS".to_string()),
        addresses: Some(vec![link.address.to_string()]),
        ports: Some(ports),
        endpoints: Some(vec![WorkloadEntrySpec {
            address: Some(link.gateway.as_endpoint()),
            ports: Some(endpoint_ports),
            labels: Some(BTreeMap::from([(
                "cluster".to_string(),
                cluster_label(link.source_context),
            )])),
            ..WorkloadEntrySpec::default()
        }]),
        ..ServiceEntrySpec::default()
    };
    let mut se = ServiceEntry::new(&kind, &svc.namespace, &name(&svc.name), spec);
    istio::add(
        &mut se.metadata.annotations,
        &BTreeMap::from([(
            SOURCE_ANNOTATION.to_string(),
            link.source_context.to_string(),
        )]),
    );
    se
}

/// A ServiceEntry as a cluster listed it: typed for every read, and kept as served for what
/// must hand back the object exactly as read (the typed envelope drops `status` and any other
/// top-level field it does not name): putting a deleted entry back, the rollback's "before"
/// state, and `-o`, which prints objects as they were read.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The typed entry, which every reader takes.
    pub entry: ServiceEntry,
    /// The entry as served.
    pub served: Value,
}

impl Listed {
    /// Types one served ServiceEntry; a malformed one is an error naming it.
    pub fn read(served: Value) -> anyhow::Result<Self> {
        let entry = ServiceEntry::read(&served)?;
        Ok(Self { entry, served })
    }
}

// Reads go to the typed entry, so a listed entry is passed wherever a ServiceEntry is read.
impl std::ops::Deref for Listed {
    type Target = ServiceEntry;

    fn deref(&self) -> &ServiceEntry {
        &self.entry
    }
}

/// Types every listed ServiceEntry. One mesh-link manages (its label or its source
/// annotation) that does not read is an error naming it: its host and address matter to the
/// ledger and the run must not guess them. Someone else's is left out of the scan instead of
/// failing the command: a real API server validates ServiceEntries, so only a hand-fed store
/// holds one that does not read, and it is not this tool's to judge.
pub fn read_listed(served: Vec<Value>) -> anyhow::Result<Vec<Listed>> {
    let mut listed = Vec::with_capacity(served.len());
    for v in served {
        let ours = objects::is_managed(&v) || has_source_annotation(&v);
        match Listed::read(v) {
            Ok(se) => listed.push(se),
            Err(e) if ours => return Err(e),
            Err(_) => {}
        }
    }
    Ok(listed)
}

/// Whether the served object carries the source annotation, read without typing it (the
/// typing is what failed).
fn has_source_annotation(v: &Value) -> bool {
    v.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(SOURCE_ANNOTATION))
        .is_some()
}

/// Whether a ServiceEntry was written by `kubectl mesh-link`.
pub fn is_link(se: &ServiceEntry) -> bool {
    se.is_managed() && source(se).is_some()
}

/// The source context of a linked ServiceEntry.
pub fn source(se: &ServiceEntry) -> Option<&str> {
    se.annotation(SOURCE_ANNOTATION)
}

/// The Service a linked ServiceEntry stands for, from its `SERVICE.NS.global` host.
pub fn service_of(se: &ServiceEntry) -> Option<&str> {
    let ns = se.namespace()?;
    hosts(se).into_iter().find_map(|h| {
        h.strip_suffix(".global")?
            .strip_suffix(ns)?
            .strip_suffix('.')
    })
}

/// `spec.hosts`.
pub fn hosts(se: &ServiceEntry) -> Vec<&str> {
    se.spec.hosts.iter().map(String::as_str).collect()
}

/// `spec.addresses`, as written.
pub fn addresses(se: &ServiceEntry) -> Vec<&str> {
    se.spec
        .addresses
        .iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

/// Every IPv4 address in `spec.addresses` (CIDRs and IPv6 are not VIPs this tool hands out).
pub fn ipv4_addresses(se: &ServiceEntry) -> Vec<Ipv4Addr> {
    addresses(se)
        .into_iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Whether the cluster's object already says what `desired` says, so the apply can be skipped:
/// the same spec, and every desired label and annotation present with the same value.
pub fn up_to_date(existing: &ServiceEntry, desired: &ServiceEntry) -> bool {
    fn contains(
        have: &Option<BTreeMap<String, String>>,
        want: &Option<BTreeMap<String, String>>,
    ) -> bool {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    }
    existing.spec == desired.spec
        && contains(&existing.metadata.labels, &desired.metadata.labels)
        && contains(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        )
}

/// `80/HTTP,9555/GRPC` for tables.
pub fn ports_text(se: &ServiceEntry) -> String {
    se.spec
        .ports
        .iter()
        .flatten()
        .map(|p| format!("{}/{}", p.number, p.protocol.as_deref().unwrap_or("TCP")))
        .collect::<Vec<_>>()
        .join(",")
}

/// `203.0.113.10:15443` for tables: each endpoint's address and its first port.
pub fn gateway_text(se: &ServiceEntry) -> String {
    se.spec
        .endpoints
        .iter()
        .flatten()
        .map(|e| {
            let addr = e.address.as_deref().unwrap_or("?");
            match e.ports.as_ref().and_then(|m| m.values().next()) {
                Some(p) => format!("{addr}:{p}"),
                None => addr.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn typed(svc: Value) -> Service {
        serde_json::from_value(svc).expect("a Service")
    }

    fn svc(name: &str, ports: Value) -> Service {
        typed(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": {"ports": ports}}),
        )
    }

    #[test]
    fn ports_from_names_and_app_protocol() {
        let s = source_service(&svc(
            "mixed",
            json!([
                {"name": "grpc", "port": 9555},
                {"name": "http-web", "port": 80, "targetPort": 8080},
                {"name": "metrics", "port": 9090, "appProtocol": "http"},
                {"name": "http-but-grpc", "port": 81, "appProtocol": "grpc"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "h2c", "port": 82, "appProtocol": "kubernetes.io/h2c"},
                {"name": "redis", "port": 6379},
            ]),
        ))
        .expect("linkable");
        let got: Vec<(String, u16, Protocol)> = s
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.number, p.protocol))
            .collect();
        assert_eq!(
            got,
            vec![
                ("grpc".into(), 9555, Protocol::Grpc),
                ("http-web".into(), 80, Protocol::Http),
                ("metrics".into(), 9090, Protocol::Http),
                ("http-but-grpc".into(), 81, Protocol::Grpc),
                ("h2c".into(), 82, Protocol::Http2),
                ("redis".into(), 6379, Protocol::Redis),
            ]
        );
        assert_eq!(s.skipped_ports, vec!["dns:53/UDP".to_string()]);
    }

    #[test]
    fn unnamed_port_gets_a_protocol_name() {
        let s = source_service(&svc("one", json!([{"port": 7000}]))).expect("linkable");
        assert_eq!(s.ports[0].name, "tcp-7000");
        let s = source_service(&svc("one", json!([{"port": 7000, "appProtocol": "grpc"}])))
            .expect("linkable");
        assert_eq!(
            (s.ports[0].name.as_str(), s.ports[0].protocol),
            ("grpc-7000", Protocol::Grpc)
        );
    }

    #[test]
    fn services_without_usable_ports_are_not_linked() {
        assert!(source_service(&svc("none", json!([]))).is_err());
        assert!(source_service(&typed(json!({"metadata": {"name": "x"}, "spec": {}}))).is_err());
        let e = source_service(&svc(
            "dns",
            json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
        ))
        .expect_err("udp");
        assert!(e.to_string().contains("non-TCP"), "{e}");
        let mut ext = svc("ext", json!([{"port": 80}]));
        ext.spec.get_or_insert_default().type_ = Some("ExternalName".to_string());
        assert!(source_service(&ext).is_err());
    }

    #[test]
    fn context_names_become_label_values() {
        assert_eq!(cluster_label("cluster1"), "cluster1");
        assert_eq!(
            cluster_label("gke_proj_us-central1-a_c1"),
            "gke_proj_us-central1-a_c1"
        );
        assert_eq!(
            cluster_label("arn:aws:eks:eu-west-1:123456789012:cluster/prod"),
            "arn-aws-eks-eu-west-1-123456789012-cluster-prod"
        );
        let long = format!("ctx/{}", "a".repeat(80));
        assert_eq!(cluster_label(&long).len(), 63);
        assert_eq!(cluster_label("@@"), "unknown");
        for c in ["a:b", "x/y/z", "-a-", &"b".repeat(70)] {
            assert!(names::label_value(&cluster_label(c)).is_ok(), "{c}");
        }
    }

    #[test]
    fn a_malformed_entry_fails_only_when_it_is_a_link() {
        let se = |name: &str, labels: Value, annotations: Value| {
            json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                   "metadata": {"name": name, "namespace": "default", "labels": labels, "annotations": annotations},
                   "spec": {"hosts": "not-a-list"}})
        };
        let good = json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                          "metadata": {"name": "ok", "namespace": "default"},
                          "spec": {"hosts": ["ok.example.com"]}});
        let foreign = se("theirs", json!({}), json!({}));
        let listed = read_listed(vec![foreign, good.clone()]).expect("a stranger is left out");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].served, good);
        let labelled = se(
            "ours",
            json!({objects::MANAGED_BY_KEY: objects::MANAGED_BY_VALUE}),
            json!({}),
        );
        let annotated = se("annotated", json!({}), json!({SOURCE_ANNOTATION: "c1"}));
        for (bad, name) in [(labelled, "default/ours"), (annotated, "default/annotated")] {
            let e = read_listed(vec![good.clone(), bad]).expect_err("a link must read");
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn recognises_links() {
        let s = source_service(&svc("adservice", json!([{"name": "grpc", "port": 9555}])))
            .expect("linkable");
        let gw = GatewayAddress::Ip("203.0.113.10".parse().expect("ip"));
        let served = build(
            &Link {
                service: &s,
                address: Ipv4Addr::new(240, 0, 0, 1),
                gateway: &gw,
                source_context: "cluster1",
            },
            "v1",
        );
        let read = |v: &Value| ServiceEntry::read(v).expect("a ServiceEntry");
        let se = read(&served);
        assert!(is_link(&se));
        assert_eq!(source(&se), Some("cluster1"));
        assert_eq!(service_of(&se), Some("adservice"));
        assert_eq!(ipv4_addresses(&se), vec![Ipv4Addr::new(240, 0, 0, 1)]);
        assert_eq!(ports_text(&se), "9555/GRPC");
        assert_eq!(gateway_text(&se), "203.0.113.10:15443");
        assert!(up_to_date(&se, &se));
        let mut server = served.clone();
        server["metadata"]["resourceVersion"] = json!("7");
        server["metadata"]["labels"]["extra"] = json!("x");
        assert!(up_to_date(&read(&server), &se));
        server["spec"]["addresses"] = json!(["240.0.0.2"]);
        assert!(!up_to_date(&read(&server), &se));
        let mut foreign = served.clone();
        foreign["metadata"]["labels"] = json!({});
        assert!(!is_link(&read(&foreign)));
    }
}
