//! What one cluster holds that a registration depends on, read in two concurrent rounds.

use std::net::IpAddr;

use anyhow::Result;
use futures::future::{join3, join_all};
use serde_json::Value;

use super::plan::{service_entry_name, workload_entry_name, Mode, Registration};
use crate::api::Cluster;
use crate::objects;

/// The cluster as a registration finds it.
pub(super) struct Facts {
    /// The context, for messages.
    pub context: String,
    /// The `networking.istio.io` version to write (the newest served; v1 in Endpoints mode,
    /// which needs no Istio).
    pub version: String,
    /// Whether the target namespace exists.
    pub namespace_exists: bool,
    /// The Service as it is now.
    pub service: Option<Value>,
    /// The endpoint list as it is now: the ServiceEntry or the Endpoints, by mode.
    pub list: Option<Value>,
    /// Each address's WorkloadEntry as it is now, in the order of `reg.ips` (WorkloadEntry mode).
    pub workload_entries: Vec<(IpAddr, Option<Value>)>,
}

/// Reads what `reg` depends on: the Istio version, the namespace and the Service at once, then
/// the mode's objects at once (their kind's version is known only after the first round).
/// Errors come in the order a one-by-one read would meet them.
pub(super) async fn read(cluster: &Cluster, reg: &Registration) -> Result<Facts> {
    let ns = reg.namespace.as_str();
    let version = async {
        if reg.mode == Mode::Endpoints {
            Ok(objects::ISTIO_VERSIONS[0].to_string())
        } else {
            cluster.istio_version().await
        }
    };
    let (version, namespace_exists, service) = join3(
        version,
        cluster.has_namespace(ns),
        cluster.get(&objects::core("Service"), Some(ns), &reg.service),
    )
    .await;
    let (version, namespace_exists) = (version?, namespace_exists?);
    // In a missing namespace there is no Service; the plan reports the namespace instead.
    let service = if namespace_exists {
        service?
    } else {
        service.ok().flatten()
    };
    let mut facts = Facts {
        context: cluster.context.clone(),
        version,
        namespace_exists,
        service,
        list: None,
        workload_entries: Vec::new(),
    };
    match reg.mode {
        Mode::ServiceEntry => {
            let kind = objects::istio("ServiceEntry", &facts.version);
            let name = service_entry_name(&reg.service);
            facts.list = cluster.get(&kind, Some(ns), &name).await?;
        }
        Mode::Endpoints => {
            let kind = objects::core("Endpoints");
            facts.list = cluster.get(&kind, Some(ns), &reg.service).await?;
        }
        Mode::WorkloadEntry => {
            let kind = objects::istio("WorkloadEntry", &facts.version);
            let reads = join_all(reg.ips.iter().map(|ip| {
                let name = workload_entry_name(&reg.service, ip);
                let kind = &kind;
                async move { (*ip, cluster.get(kind, Some(ns), &name).await) }
            }))
            .await;
            for (ip, read) in reads {
                facts.workload_entries.push((ip, read?));
            }
        }
    }
    Ok(facts)
}
