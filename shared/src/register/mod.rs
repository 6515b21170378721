//! `kubectl mesh-register`: register (and deregister, and list) a VM service in the mesh.
//!
//! `cli` parses, `plan` checks the arguments into an action, `facts` reads a cluster, `add`
//! and `remove` plan and write one cluster, `several` does either across contexts, `listing`
//! lists; `build` holds the pure builders.

mod add;
mod build;
mod cli;
mod facts;
mod listing;
mod plan;
mod remove;
mod several;

pub use build::{
    endpoints, fresh, service, service_entry, workload_entry, SERVICE_ACCOUNTS_ANNOTATION,
};
pub use cli::Args;
pub use plan::{service_entry_name, workload_entry_name, Mode, Registration};

use anyhow::Result;
use serde_json::Value;

use crate::api::Cluster;
use crate::cli::{DryRun, WriteArgs};
use crate::objects;
use crate::output;
use crate::Io;
use plan::{action, Action};

/// Runs `kubectl mesh-register`.
pub async fn run(args: Args, io: &mut Io) -> Result<()> {
    let mode = args.write.mode();
    if args.kube.contexts.len() > 1 {
        return several::run(&args, mode, io).await;
    }
    // A fresh registration's client dry run needs no cluster: it is printed from the input.
    if let Some(objs) = offline(&args, &args.kube.offline_namespace())? {
        return print_client_dry_run(io, &args.write, objs);
    }
    warn_link_local(&args, io)?;
    let cluster = Cluster::connect_one(&args.kube).await?;
    let namespace = cluster.namespace.clone();
    match action(&args, &namespace)? {
        Action::List => listing::run(&cluster, args.all_namespaces, args.write.output, io).await,
        Action::Delete { service, ip } => {
            remove::deregister(&cluster, &namespace, &service, ip, &args.write, mode, io).await
        }
        Action::Register(reg) => add::register(&cluster, &reg, &args, mode, io).await,
    }
}

/// Validates the arguments once before connecting (the namespace is filled in after), and
/// warns of link-local addresses.
fn warn_link_local(args: &Args, io: &mut Io) -> Result<()> {
    if let Action::Register(reg) = action(args, "default")? {
        for ip in reg.ips.iter().filter(|ip| crate::addr::is_link_local(ip)) {
            io.warn(format_args!(
                "{ip} is link-local: only hosts on the VM's own link can reach it"
            ))?;
        }
    }
    Ok(())
}

fn print_client_dry_run(io: &mut Io, write: &WriteArgs, objs: Vec<Value>) -> Result<()> {
    let results: Vec<crate::api::Applied> = objs
        .into_iter()
        .map(|object| crate::api::Applied {
            object,
            outcome: crate::api::Outcome::Created,
        })
        .collect();
    output::print_results(&mut io.out, write.output, DryRun::Client, &results)
}

/// The objects a client dry run of a fresh registration prints, in `namespace`, or `None`
/// when this run needs the cluster (a list, a deregistration, or a real write).
fn offline(args: &Args, namespace: &str) -> Result<Option<Vec<Value>>> {
    if args.write.dry_run != DryRun::Client || args.list || args.delete {
        return Ok(None);
    }
    Ok(match action(args, namespace)? {
        Action::Register(reg) => Some(fresh(&reg, objects::ISTIO_VERSIONS[0])),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
