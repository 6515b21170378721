//! A registration as validated, typed input: what `kubectl mesh-register` was asked to do.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;
use clap::ValueEnum;

use super::cli::Args;
use crate::error::usage;
use crate::names;
use crate::ports::{self, PortSpec};

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

/// What one run of the command does, checked and typed.
pub(super) enum Action {
    /// Register the addresses.
    Register(Registration),
    /// Remove one address of a service.
    Delete { service: String, ip: IpAddr },
    /// List what is registered.
    List,
}

const SYNOPSIS: &str = "kubectl mesh-register SERVICE IP[,IP...] [NAME:]PORT...";

/// Checks the arguments and turns them into an [`Action`] in `namespace`, before any API call.
pub(super) fn action(args: &Args, namespace: &str) -> Result<Action> {
    if args.list {
        if args.service.is_some() {
            return Err(usage("--list", "takes no SERVICE, IP or PORT arguments"));
        }
        return Ok(Action::List);
    }
    let service = args
        .service
        .clone()
        .ok_or_else(|| usage("SERVICE", format!("missing: {SYNOPSIS}")))?;
    let ips = args
        .ips
        .clone()
        .ok_or_else(|| usage("IP", format!("missing: {SYNOPSIS}")))?;
    if args.delete {
        if !args.ports.is_empty() {
            return Err(usage(
                "--delete",
                "takes SERVICE and one IP, no ports: kubectl mesh-register --delete SERVICE IP",
            ));
        }
        let [ip] = ips.0.as_slice() else {
            return Err(usage("IP", "--delete takes one IP address at a time"));
        };
        return Ok(Action::Delete { service, ip: *ip });
    }
    for ip in &ips.0 {
        crate::addr::check_workload(ip).map_err(|e| usage("IP", e))?;
    }
    if args.ports.is_empty() {
        return Err(usage(
            "PORT",
            format!("at least one port is required: {SYNOPSIS}"),
        ));
    }
    ports::check_unique(&args.ports).map_err(|e| usage("PORT", e))?;
    if let Some(net) = &args.network {
        names::dns1123_subdomain(net).map_err(|e| usage("--network", e))?;
    }
    Ok(Action::Register(Registration {
        service,
        namespace: namespace.to_string(),
        ips: ips.0,
        ports: args.ports.clone(),
        mode: args.mode,
        labels: names::label_map(&args.labels),
        annotations: names::annotation_map(&args.annotations),
        service_account: args.service_account.clone(),
        network: args.network.clone(),
        cluster_domain: args.cluster_domain.clone(),
    }))
}
