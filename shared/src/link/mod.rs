//! `kubectl mesh-link`: make the services of one cluster callable from another as
//! `SERVICE.NS.global`, through `.global` ServiceEntries that point at the source cluster's
//! ingress gateway on port 15443, with addresses allocated uniquely per calling cluster.

pub mod check;
pub mod dns;
pub mod ledger;
pub mod pool;
pub mod remote;
pub mod selector;
pub mod service_entry;

mod cli;
mod dns_setup;
mod facts;
mod linking;
mod listing;
mod plan;
mod report;
mod rollback;
mod unlink;

use anyhow::Result;

use crate::api;
use crate::kubeconfig;
use crate::Io;
use plan::Action;
use report::Report;

pub use crate::gateway::{GatewayAddress, GatewayRef};
pub use cli::{Args, Command, Mode};
pub use pool::Pool;
pub use selector::Selector;

/// Runs `kubectl mesh-link`.
pub async fn run(args: Args, io: &mut Io) -> Result<()> {
    if args.mode == Mode::RemoteSecret {
        return remote::run(&args, io).await;
    }
    plan::global_only(&args)?;
    let plan = plan::plan(&args)?;
    // Unknown contexts and a bad -n fail here, as usage errors naming the flag, before any
    // connection.
    plan.check_contexts(&kubeconfig::context_names(&kubeconfig::load(&args.kube)?))?;
    let (kc, targets) = api::resolve_targets(&args.kube, &plan.contexts())?;
    let (src_target, dst_target) = match targets.as_slice() {
        [s, d] => (Some(s), d),
        [d] => (None, d),
        _ => anyhow::bail!("expected one or two contexts"),
    };
    let opts = plan::options(&args, src_target, dst_target);
    let (dst, src) = facts::connect(&kc, dst_target, src_target, &args.kube).await?;
    let mode = opts.mode;
    let mut report = Report::new(args.write.output.is_some());
    let mut dns_lines = Vec::new();
    let two_way = plan.bidirectional;
    match (&plan.action, &src) {
        (Action::Check, Some(src)) => {
            return check::run(src, &dst, &opts.gateway, opts.gateway_address.as_ref(), io).await;
        }
        (Action::List, _) => {
            let (from, ns) = (plan.from.as_deref(), args.kube.namespace.as_deref());
            return listing::run(&dst, from, ns, args.write.output, io).await;
        }
        (Action::Link { prune, setup_dns }, Some(src)) => {
            linking::link(src, &dst, &plan, &opts, *prune, &mut report).await?;
            if *setup_dns {
                dns_lines =
                    dns_setup::setup_dns(&dst, Some(src), two_way, false, mode, &mut report)
                        .await?;
            }
        }
        (Action::Unlink, Some(src)) => unlink::unlink(src, &dst, &plan, &opts, &mut report).await?,
        (Action::Dns { undo }, src) => {
            dns_lines =
                dns_setup::setup_dns(&dst, src.as_ref(), two_way, *undo, mode, &mut report).await?;
        }
        _ => {
            return Err(crate::error::usage(
                "--from",
                "required: the context of the cluster that runs the services",
            ))
        }
    }
    report.finish(io, args.write.output, two_way, &dns_lines)
}

#[cfg(test)]
mod tests;
