//! A registration as validated, typed input: what `kubectl mesh-register` was asked to do.

use std::collections::BTreeMap;
use std::net::IpAddr;

use clap::ValueEnum;

use crate::ports::PortSpec;

/// How a VM service is represented in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Selector-less Service + a MESH_INTERNAL ServiceEntry (Istio's VM docs of the 1.x era)
    #[value(name = "serviceentry")]
    ServiceEntry,
    /// Service with a selector + one WorkloadEntry per IP (Istio 1.6 and later)
    #[value(name = "workloadentry")]
    WorkloadEntry,
    /// Selector-less Service + Endpoints (the oldest way, istioctl register)
    #[value(name = "endpoints")]
    Endpoints,
}

impl Mode {
    /// The name shown in `--list`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ServiceEntry => "serviceentry",
            Mode::WorkloadEntry => "workloadentry",
            Mode::Endpoints => "endpoints",
        }
    }
}

/// Everything the builders need, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The Service name (a DNS-1035 label).
    pub service: String,
    /// Namespace of every object.
    pub namespace: String,
    /// VM addresses, de-duplicated, in the order given.
    pub ips: Vec<IpAddr>,
    /// Ports, unique by name and number.
    pub ports: Vec<PortSpec>,
    /// Representation.
    pub mode: Mode,
    /// `-l` labels (besides `app: SERVICE`).
    pub labels: BTreeMap<String, String>,
    /// `-a` annotations.
    pub annotations: BTreeMap<String, String>,
    /// The workloads' service account.
    pub service_account: String,
    /// `--network`, for WorkloadEntries and ServiceEntry endpoints.
    pub network: Option<String>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
}

impl Registration {
    /// The mesh-internal host name: `SERVICE.NAMESPACE.svc.CLUSTER_DOMAIN`.
    pub fn host(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.service, self.namespace, self.cluster_domain
        )
    }

    /// `app: SERVICE` plus the `-l` labels: what workloads carry.
    pub fn workload_labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([("app".to_string(), self.service.clone())]);
        l.extend(self.labels.clone());
        l
    }
}

/// Name of the ServiceEntry of a service.
pub fn service_entry_name(service: &str) -> String {
    format!("mesh-expansion-{service}")
}

/// Name of the WorkloadEntry of one VM address.
pub fn workload_entry_name(service: &str, ip: &IpAddr) -> String {
    format!("{service}-{}", crate::addr::name_fragment(ip))
}
