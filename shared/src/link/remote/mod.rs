//! `kubectl mesh-link --mode remote-secret`: make istiod in --to discover the services of
//! --from the way Istio 1.8 and later link clusters, through a remote secret holding a
//! kubeconfig for a reader identity in --from, written in both clusters all or nothing.

pub mod age;
pub mod build;
pub mod check;
pub mod facts;
pub mod istiod;
pub mod ledger;
pub mod listing;
pub mod network;
pub mod probe;

mod apply;
mod east_west;
mod linking;
mod plan;
mod report;
mod unlink;

use anyhow::Result;

use super::Args;
use crate::cli::DryRun;
use crate::error::usage;
use crate::kubeconfig;
use crate::Io;

/// Runs `kubectl mesh-link --mode remote-secret`.
pub async fn run(args: &Args, io: &mut Io) -> Result<()> {
    let plan = plan::plan(args)?;
    let kc = kubeconfig::load(&args.kube)?;
    plan.check_contexts(&kubeconfig::context_names(&kc))?;
    if args.istiod_debug.is_some() && args.command.is_none() {
        return Err(usage(
            "--istiod-debug",
            "is where check reads istiod's /debug/clusterz: only with check",
        ));
    }
    if args.list {
        return listing::list(args, &plan, io).await;
    }
    if args.command.is_some() {
        let (a, b) = facts::connect(&args.kube, &plan.from, &plan.to).await?;
        let how = check::Reach {
            network: args.network.then_some(&args.eastwest_gateway),
            istiod_debug: args.istiod_debug.as_ref(),
        };
        return check::run(&a, &b, &plan.istio_namespace, how, io).await;
    }
    let from_endpoint = facts::endpoint(&kc, &plan.from, plan.server.as_deref())?;
    let to_endpoint = match args.bidirectional {
        true => Some(facts::endpoint(&kc, &plan.to, None)?),
        false => None,
    };
    let (a, b) = facts::connect(&args.kube, &plan.from, &plan.to).await?;
    let mode = args.write.mode();
    let ns = plan.istio_namespace.as_str();
    facts::istio_namespaces([&a, &b], ns).await?;
    // --to's ID is shown when it is linked or unlinked too; else it only names --to in the
    // reader's ledger of who uses it, detected quietly.
    let show_to = args.bidirectional || args.unlink;
    let flag = plan.cluster_id.as_deref();
    let (a_id, b_id) = facts::cluster_ids((&a, &b), ns, flag, show_to, io).await?;
    if a_id == b_id {
        anyhow::bail!(
            "contexts {:?} and {:?} have the same cluster ID {a_id:?}: istiod tells clusters apart by it, so give each cluster its own (--cluster-id names --from's)",
            a.context,
            b.context
        );
    }
    let ids = (a_id.as_str(), b_id.as_str());
    let sides = match args.unlink {
        true => unlink::sides((&a, &b), ns, ids, io).await?,
        false => {
            let endpoints = (from_endpoint, to_endpoint);
            linking::sides(args, &plan, (&a, &b), ids, endpoints, io).await?
        }
    };
    let written = apply::commit(sides, mode, io).await?;
    report::print(written, args, mode, io)?;
    if plan.rotate && mode.dry_run == DryRun::None {
        io.warn(format!(
            "istiod in {} may go on using the old credentials until it restarts (istio/istio#60612): see that it still syncs {} with kubectl mesh-link check --mode remote-secret --from {} --to {}",
            b.context, a.context, a.context, b.context
        ))?;
    }
    Ok(())
}
