//! `kubectl mesh-vm status`: a group's WorkloadEntries, their health, connection, age and the
//! mTLS mode in effect for each.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::Result;
use serde_json::Value;

use crate::api::Cluster;
use crate::cli::KubeArgs;
use crate::io::Io;
use crate::objects;
use crate::output;
use crate::time;
use crate::vm::cli::StatusArgs;
use crate::vm::entries;
use crate::vm::facts::{Entries, Policies};
use crate::vm::mtls::Effective;
use crate::vm::plan;

/// `kubectl mesh-vm status NAME`.
pub(in crate::vm) async fn run(kube: &KubeArgs, a: StatusArgs, io: &mut Io) -> Result<()> {
    plan::check_control_plane(&a.control_plane)?;
    let cluster = Cluster::connect_one(kube).await?;
    let ns = cluster.namespace.clone();
    let name = &a.name.0;
    let Entries { group, entries } = Entries::read(&cluster, &ns, name).await?;
    if let Some(format) = a.read.output {
        let objs: Vec<Value> = entries.into_iter().map(objects::for_display).collect();
        return output::print_objects(&mut io.out, format, &objs);
    }
    // The entries are what status is for: policies that cannot be read leave MTLS unknown.
    let policies = match Policies::read(&cluster, &ns, &a.control_plane).await {
        Ok(p) => Some(p),
        Err(e) => {
            io.warn(format!("mTLS mode unknown: {}", crate::error::one_line(&e)))?;
            None
        }
    };
    let effective = |labels: &BTreeMap<String, String>| match &policies {
        Some(p) => p.effective(labels),
        None => Effective::unknown(),
    };
    if entries.is_empty() {
        let labels = group.map(|g| g.workload_labels()).unwrap_or_default();
        let e = effective(&labels);
        io.note(format!(
            "No WorkloadEntries found for WorkloadGroup {ns}/{name}. mTLS for its workloads: {} (policy {})",
            e.column(),
            e.policy
        ))?;
        return Ok(());
    }
    let mtls: Vec<Effective> = entries
        .iter()
        .map(|e| effective(&entries::labels(e)))
        .collect();
    io.out
        .write_all(entries::table(&entries, &mtls, time::now()).as_bytes())?;
    Ok(())
}
