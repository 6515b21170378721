//! Pure builders: a Registration (plus what the cluster already holds) to Kubernetes objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::plan::{service_entry_name, workload_entry_name, Mode, Registration};
use crate::istio::{self, ServiceEntry, ServiceEntrySpec, WorkloadEntry, WorkloadEntrySpec};
use crate::objects;

/// The annotation Pilot maps to the workloads' SPIFFE identity (read by Istio for Endpoints).
pub const SERVICE_ACCOUNTS_ANNOTATION: &str = "alpha.istio.io/kubernetes-serviceaccounts";

fn port_map(reg: &Registration) -> BTreeMap<String, u32> {
    reg.ports
        .iter()
        .map(|p| (p.name.clone(), u32::from(p.number)))
        .collect()
}

/// Metadata of the core objects (the Istio ones get the same through `with_labels`):
/// managed-by plus the workload's labels.
fn meta(
    reg: &Registration,
    name: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    let mut meta = istio::managed_meta(&reg.namespace, name);
    istio::add(&mut meta.labels, &reg.workload_labels());
    meta
}

/// One VM address as a workload: the same fields inline in a ServiceEntry or in a WorkloadEntry.
fn workload(reg: &Registration, ip: &IpAddr) -> WorkloadEntrySpec {
    WorkloadEntrySpec {
        address: Some(ip.to_string()),
        labels: Some(reg.workload_labels()),
        ports: Some(port_map(reg)),
        service_account: Some(reg.service_account.clone()),
        network: reg.network.clone(),
        ..Default::default()
    }
}

/// The Service: no selector except in WorkloadEntry mode, every port TCP with targetPort = port.
pub fn service(reg: &Registration) -> Value {
    objects::to_value(&service_object(reg))
}

/// [`service`], typed: what a re-run compares the Service read with.
pub fn service_object(reg: &Registration) -> Service {
    let mut metadata = meta(reg, &reg.service);
    let mut annotations = reg.annotations.clone();
    if reg.mode == Mode::Endpoints {
        annotations.insert(
            SERVICE_ACCOUNTS_ANNOTATION.to_string(),
            reg.service_account.clone(),
        );
    }
    istio::add(&mut metadata.annotations, &annotations);
    let ports = reg
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: i32::from(p.number),
            target_port: Some(IntOrString::Int(i32::from(p.number))),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        })
        .collect();
    let selector = (reg.mode == Mode::WorkloadEntry)
        .then(|| BTreeMap::from([("app".to_string(), reg.service.clone())]));
    Service {
        metadata,
        spec: Some(ServiceSpec {
            ports: Some(ports),
            selector,
            ..Default::default()
        }),
        status: None,
    }
}

/// The ServiceEntry `mesh-expansion-SERVICE` with one endpoint per address in `ips`.
pub fn service_entry(reg: &Registration, version: &str, ips: &[IpAddr]) -> Value {
    service_entry_object(reg, version, ips).to_value()
}

/// [`service_entry`], typed: what a re-run compares the ServiceEntry read with.
pub fn service_entry_object(reg: &Registration, version: &str, ips: &[IpAddr]) -> ServiceEntry {
    let kind = objects::istio("ServiceEntry", version);
    let ports = reg
        .ports
        .iter()
        .map(|p| istio::ServicePort {
            number: u32::from(p.number),
            name: Some(p.name.clone()),
            protocol: Some(p.protocol.istio_name().to_string()),
            ..Default::default()
        })
        .collect();
    let spec = ServiceEntrySpec {
        hosts: vec![reg.host()],
        location: Some("MESH_INTERNAL".to_string()),
        resolution: Some("STATIC".to_string()),
        ports: Some(ports),
        endpoints: Some(ips.iter().map(|ip| workload(reg, ip)).collect()),
        ..Default::default()
    };
    ServiceEntry::new(
        &kind,
        &reg.namespace,
        &service_entry_name(&reg.service),
        spec,
    )
    .with_labels(&reg.workload_labels())
}

/// The WorkloadEntry of one VM address.
pub fn workload_entry(reg: &Registration, version: &str, ip: &IpAddr) -> Value {
    let kind = objects::istio("WorkloadEntry", version);
    let name = workload_entry_name(&reg.service, ip);
    WorkloadEntry::new(&kind, &reg.namespace, &name, workload(reg, ip))
        .with_labels(&reg.workload_labels())
        .to_value()
}

/// The Endpoints of the selector-less Service: one subset with every address and port.
pub fn endpoints(reg: &Registration, ips: &[IpAddr]) -> Value {
    let addresses = ips
        .iter()
        .map(|ip| EndpointAddress {
            ip: ip.to_string(),
            ..Default::default()
        })
        .collect();
    let ports = reg
        .ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone()),
            port: i32::from(p.number),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        })
        .collect();
    objects::to_value(&Endpoints {
        metadata: meta(reg, &reg.service),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(addresses),
            ports: Some(ports),
            ..Default::default()
        }]),
    })
}

/// Addresses of an existing ServiceEntry's endpoints, in order (an endpoint that is a hostname
/// is not a VM address).
pub fn service_entry_ips(se: &ServiceEntry) -> Vec<IpAddr> {
    se.spec
        .endpoints
        .iter()
        .flatten()
        .filter_map(|e| e.address.as_deref()?.parse().ok())
        .collect()
}

/// Addresses of existing Endpoints, in order, de-duplicated.
pub fn endpoints_ips(ep: &Endpoints) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        for a in subset.addresses.iter().flatten() {
            if let Ok(ip) = a.ip.parse() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    }
    ips
}

/// `existing` followed by the new addresses it lacks: registering keeps earlier VMs.
pub fn union(existing: &[IpAddr], new: &[IpAddr]) -> Vec<IpAddr> {
    let mut all = existing.to_vec();
    for ip in new {
        if !all.contains(ip) {
            all.push(*ip);
        }
    }
    all
}

/// Ports of an existing Service as `name:port` strings, to tell the user what a re-run changes.
pub fn service_ports(svc: &Service) -> Vec<String> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_deref());
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port))
        .collect()
}

/// The objects of a fresh registration, in apply order (what `--dry-run=client` prints).
pub fn fresh(reg: &Registration, version: &str) -> Vec<Value> {
    let mut objs = vec![service(reg)];
    match reg.mode {
        Mode::ServiceEntry => objs.push(service_entry(reg, version, &reg.ips)),
        Mode::WorkloadEntry => {
            objs.extend(reg.ips.iter().map(|ip| workload_entry(reg, version, ip)))
        }
        Mode::Endpoints => objs.push(endpoints(reg, &reg.ips)),
    }
    objs
}
