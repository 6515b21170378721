//! Pure builders: a Registration (plus what the cluster already holds) to Kubernetes objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::plan::{service_entry_name, workload_entry_name, Mode, Registration};
use crate::objects::{self, add_annotations, add_labels, new_object};

/// The annotation Pilot maps to the workloads' SPIFFE identity (read by Istio for Endpoints).
pub const SERVICE_ACCOUNTS_ANNOTATION: &str = "alpha.istio.io/kubernetes-serviceaccounts";

fn port_map(reg: &Registration) -> Map<String, Value> {
    reg.ports
        .iter()
        .map(|p| (p.name.clone(), json!(p.number)))
        .collect()
}

fn meta_labels(reg: &Registration) -> BTreeMap<String, String> {
    reg.workload_labels()
}

/// The Service: no selector except in WorkloadEntry mode, every port TCP with targetPort = port.
pub fn service(reg: &Registration) -> Value {
    let mut obj = new_object(
        &objects::core("Service"),
        Some(&reg.namespace),
        &reg.service,
    );
    add_labels(&mut obj, &meta_labels(reg));
    let mut annotations = reg.annotations.clone();
    if reg.mode == Mode::Endpoints {
        annotations.insert(
            SERVICE_ACCOUNTS_ANNOTATION.to_string(),
            reg.service_account.clone(),
        );
    }
    add_annotations(&mut obj, &annotations);
    let ports: Vec<Value> = reg
        .ports
        .iter()
        .map(|p| json!({"name": p.name, "port": p.number, "targetPort": p.number, "protocol": "TCP"}))
        .collect();
    obj["spec"] = json!({ "ports": ports });
    if reg.mode == Mode::WorkloadEntry {
        obj["spec"]["selector"] = json!({ "app": reg.service });
    }
    obj
}

/// The ServiceEntry `mesh-expansion-SERVICE` with one endpoint per address in `ips`.
pub fn service_entry(reg: &Registration, version: &str, ips: &[IpAddr]) -> Value {
    let kind = objects::istio("ServiceEntry", version);
    let mut obj = new_object(
        &kind,
        Some(&reg.namespace),
        &service_entry_name(&reg.service),
    );
    add_labels(&mut obj, &meta_labels(reg));
    let ports: Vec<Value> = reg
        .ports
        .iter()
        .map(|p| json!({"number": p.number, "name": p.name, "protocol": p.protocol.istio_name()}))
        .collect();
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| {
            let mut ep = json!({
                "address": ip.to_string(),
                "labels": reg.workload_labels(),
                "ports": port_map(reg),
                "serviceAccount": reg.service_account,
            });
            if let Some(net) = &reg.network {
                ep["network"] = json!(net);
            }
            ep
        })
        .collect();
    obj["spec"] = json!({
        "hosts": [reg.host()],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "ports": ports,
        "endpoints": endpoints,
    });
    obj
}

/// The WorkloadEntry of one VM address.
pub fn workload_entry(reg: &Registration, version: &str, ip: &IpAddr) -> Value {
    let kind = objects::istio("WorkloadEntry", version);
    let mut obj = new_object(
        &kind,
        Some(&reg.namespace),
        &workload_entry_name(&reg.service, ip),
    );
    add_labels(&mut obj, &meta_labels(reg));
    obj["spec"] = json!({
        "address": ip.to_string(),
        "labels": reg.workload_labels(),
        "serviceAccount": reg.service_account,
        "ports": port_map(reg),
    });
    if let Some(net) = &reg.network {
        obj["spec"]["network"] = json!(net);
    }
    obj
}

/// The Endpoints of the selector-less Service: one subset with every address and port.
pub fn endpoints(reg: &Registration, ips: &[IpAddr]) -> Value {
    let mut obj = new_object(
        &objects::core("Endpoints"),
        Some(&reg.namespace),
        &reg.service,
    );
    add_labels(&mut obj, &meta_labels(reg));
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let ports: Vec<Value> = reg
        .ports
        .iter()
        .map(|p| json!({"name": p.name, "port": p.number, "protocol": "TCP"}))
        .collect();
    obj["subsets"] = json!([{ "addresses": addresses, "ports": ports }]);
    obj
}

/// Addresses of an existing ServiceEntry's endpoints, in order.
pub fn service_entry_ips(se: &Value) -> Vec<IpAddr> {
    se["spec"]["endpoints"]
        .as_array()
        .map(|eps| {
            eps.iter()
                .filter_map(|e| e["address"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Addresses of existing Endpoints, in order, de-duplicated.
pub fn endpoints_ips(ep: &Value) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str().and_then(|s| s.parse().ok()) {
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
pub fn service_ports(svc: &Value) -> Vec<String> {
    svc["spec"]["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p["name"].as_str().unwrap_or(""),
                        p["port"].as_u64().unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default()
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
