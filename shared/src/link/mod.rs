//! `kubectl mesh-link`: make the services of one cluster callable from another as
//! `SERVICE.NS.global`, through `.global` ServiceEntries that point at the source cluster's
//! ingress gateway on port 15443, with addresses allocated uniquely per calling cluster.

pub mod check;
pub mod dns;
pub mod ledger;
pub mod pool;
pub mod selector;
pub mod service_entry;

mod links;
mod listing;
mod plan;
pub mod remote;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::api::{self, Cluster, WriteMode};
use crate::cli::{KubeArgs, WriteArgs};
use crate::kubeconfig;
use crate::names;
use crate::Io;
use plan::Action;

pub use crate::gateway::{GatewayAddress, GatewayRef};
pub use pool::Pool;
pub use selector::Selector;

const EXAMPLES: &str = "Examples:
  # Make adservice and checkoutservice of cluster1 callable from cluster2 as
  # adservice.default.global and checkoutservice.default.global
  kubectl mesh-link --from cluster1 --to cluster2 adservice checkoutservice

  # Every Service of the namespace, both ways; running it again changes nothing
  kubectl mesh-link --from cluster1 --to cluster2 --all --bidirectional

  # Point cluster2's `global` DNS domain at istiocoredns (undo with --setup-dns --undo)
  kubectl mesh-link --to cluster2 --setup-dns

  # Are the prerequisites in place?
  kubectl mesh-link check --from cluster1 --to cluster2

  # What cluster2 can call, and the objects a run would write
  kubectl mesh-link --list --to cluster2
  kubectl mesh-link --from cluster1 --to cluster2 --all --dry-run=client -o yaml

  # Remove links whose Service is gone; remove every link of the pair
  kubectl mesh-link --from cluster1 --to cluster2 --prune
  kubectl mesh-link --from cluster1 --to cluster2 --unlink --all";

/// Link clusters: `.global` ServiceEntries (Istio 1.1–1.8.5), or remote secrets (Istio 1.8 and later).
#[derive(Debug, Parser)]
#[command(
    name = "kubectl mesh-link",
    bin_name = "kubectl mesh-link",
    version,
    after_help = EXAMPLES,
    // Both clusters are named with --from and --to; --context is refused, so not advertised.
    mut_arg("contexts", |a| a.hide(true))
)]
pub struct Args {
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Services of the source namespace to link
    #[arg(value_name = "SERVICE", value_parser = names::parse_service, group = "selection")]
    pub services: Vec<String>,

    /// The context of the cluster that runs the services
    #[arg(long, value_name = "CONTEXT", global = true)]
    pub from: Option<String>,

    /// The context of the cluster that calls them (the ServiceEntries go there)
    #[arg(long, value_name = "CONTEXT", global = true)]
    pub to: Option<String>,

    /// Link every Service of the namespace
    #[arg(long, group = "selection")]
    pub all: bool,

    /// Link the Services matching a label selector (app=web, tier in (a,b), ...)
    #[arg(short = 'l', long, value_name = "SELECTOR", group = "selection")]
    pub selector: Option<Selector>,

    /// Link both ways: --from to --to and --to to --from
    #[arg(long)]
    pub bidirectional: bool,

    /// The source cluster's ingress gateway Service
    #[arg(
        long,
        value_name = "NAME[.NAMESPACE]",
        default_value = "istio-ingressgateway.istio-system",
        global = true
    )]
    pub gateway_service: GatewayRef,

    /// The gateway address to use when its Service has no load-balancer IP or hostname
    #[arg(long, value_name = "IP|HOSTNAME", global = true)]
    pub gateway_address: Option<GatewayAddress>,

    /// The IPv4 range the .global addresses are allocated from
    ///
    /// Must not overlap 240.240.0.0/16 (Istio's DNS auto-allocation), loopback or multicast.
    #[arg(long, value_name = "CIDR", default_value = pool::DEFAULT_POOL)]
    pub address_pool: Pool,

    /// Delete the ServiceEntries kubectl-mesh created for the pair and free their addresses
    #[arg(long, conflicts_with_all = ["prune", "setup_dns", "list"])]
    pub unlink: bool,

    /// Also delete linked ServiceEntries whose source Service no longer exists
    #[arg(long, conflicts_with = "list")]
    pub prune: bool,

    /// Point the `global` DNS domain of --to at istiocoredns (CoreDNS or kube-dns)
    #[arg(long, conflicts_with = "list")]
    pub setup_dns: bool,

    /// With --setup-dns: take the `global` stub domain out again
    #[arg(long, requires = "setup_dns")]
    pub undo: bool,

    /// List the links in --to as a table
    #[arg(long, conflicts_with_all = ["selection", "bidirectional"])]
    pub list: bool,

    /// How clusters are linked: global (.global ServiceEntries, Istio 1.1–1.8.5) or remote-secret (Istio 1.8 and later)
    #[arg(long, value_enum, default_value_t = Mode::Global, global = true)]
    pub mode: Mode,

    /// remote-secret: the cluster ID of --from (default: its istiod's, as detected)
    #[arg(long, value_name = "ID", global = true)]
    pub cluster_id: Option<String>,

    /// remote-secret: the API server URL of --from as --to reaches it (default: the kubeconfig's)
    #[arg(long, value_name = "URL")]
    pub remote_server: Option<String>,

    /// remote-secret: a bound token of this lifetime instead of a Secret-based one (it must be renewed)
    #[arg(long, value_name = "DURATION")]
    pub token_duration: Option<crate::vm::token::TokenDuration>,

    /// remote-secret: mint a new token for --from's reader, put it in --to's secret, then revoke the old one
    #[arg(long)]
    pub rotate: bool,

    /// remote-secret: print Secret data with -o (it holds a credential)
    #[arg(long)]
    pub show_secrets: bool,

    /// remote-secret: the clusters are on separate networks; check --from's east-west gateway first
    #[arg(long, global = true)]
    pub network: bool,

    /// remote-secret: the network of --from, labelled on its Istio namespace if unlabelled (implies --network)
    #[arg(long, value_name = "NETWORK")]
    pub from_network: Option<String>,

    /// remote-secret: the network of --to, labelled on its Istio namespace if unlabelled (implies --network)
    #[arg(long, value_name = "NETWORK")]
    pub to_network: Option<String>,

    /// remote-secret with --network: also apply the cross-network-gateway Gateway (*.local, 15443, AUTO_PASSTHROUGH)
    #[arg(long, requires = "network")]
    pub expose_services: bool,

    /// remote-secret with --network: the east-west gateway Service
    #[arg(
        long,
        value_name = "NAME[.NAMESPACE]",
        default_value = remote::network::DEFAULT_GATEWAY,
        global = true
    )]
    pub eastwest_gateway: GatewayRef,

    /// remote-secret check: where istiod's debug port of --to answers (after kubectl port-forward)
    ///
    /// check reads istiod's /debug/clusterz there to tell whether it has --from synced. Without
    /// it, check tries the istiod pods through the API server's pod proxy.
    #[arg(long, value_name = "URL|HOST:PORT", global = true)]
    pub istiod_debug: Option<remote::istiod::DebugAddress>,

    /// remote-secret: the Istio namespace of both clusters
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "istio-system",
        global = true
    )]
    pub istio_namespace: String,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub kube: KubeArgs,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub write: WriteArgs,
}

/// How `mesh-link` links clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `.global` ServiceEntries through the source's ingress gateway (Istio 1.1–1.8.5).
    Global,
    /// A remote secret in --to for istiod to read --from's API server (Istio 1.8 and later).
    RemoteSecret,
}

/// Verbs other than linking.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Check the prerequisites of .global multicluster for --from and --to (exit 3 when one fails)
    Check,
}

/// Runs `kubectl mesh-link`.
pub async fn run(args: Args, io: &mut Io) -> Result<()> {
    if args.mode == Mode::RemoteSecret {
        return remote::run(&args, io).await;
    }
    let remote_only = [
        (args.cluster_id.is_some(), "--cluster-id"),
        (args.remote_server.is_some(), "--remote-server"),
        (args.token_duration.is_some(), "--token-duration"),
        (args.show_secrets, "--show-secrets"),
        (args.rotate, "--rotate"),
        (args.network, "--network"),
        (args.from_network.is_some(), "--from-network"),
        (args.to_network.is_some(), "--to-network"),
        (args.istiod_debug.is_some(), "--istiod-debug"),
        (args.istio_namespace != "istio-system", "--istio-namespace"),
    ];
    if let Some((_, flag)) = remote_only.iter().find(|(given, _)| *given) {
        return Err(crate::error::usage(flag, "only with --mode remote-secret"));
    }
    let plan = plan::plan(&args)?;
    let mut contexts = Vec::new();
    contexts.extend(plan.from.clone());
    contexts.push(plan.to.clone());
    // Unknown contexts and a bad -n fail here, as usage errors naming the flag, before any
    // connection.
    let known = kubeconfig::context_names(&kubeconfig::load(&args.kube)?);
    for (flag, ctx) in [
        ("--from", plan.from.as_deref()),
        ("--to", Some(plan.to.as_str())),
    ] {
        if let Some(ctx) = ctx.filter(|c| !known.iter().any(|k| k == c)) {
            return Err(crate::error::usage(
                flag,
                format!(
                    "context {ctx:?} not found in the kubeconfig (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let (kc, targets) = api::resolve_targets(&args.kube, &contexts)?;
    let (src_target, dst_target) = match targets.as_slice() {
        [s, d] => (Some(s), d),
        [d] => (None, d),
        _ => anyhow::bail!("expected one or two contexts"),
    };
    let namespace = args
        .kube
        .namespace
        .clone()
        .unwrap_or_else(|| src_target.unwrap_or(dst_target).namespace.clone());
    let dst = Cluster::connect(&kc, dst_target, &args.kube).await?;
    let src = match src_target {
        Some(t) => Some(Cluster::connect(&kc, t, &args.kube).await?),
        None => None,
    };
    let mode = args.write.mode();
    let opts = links::Options {
        namespace,
        pool: args.address_pool,
        gateway: args.gateway_service.clone(),
        gateway_address: args.gateway_address.clone(),
        mode,
    };
    let mut report = links::Report::new(args.write.output.is_some());
    let mut dns_lines = Vec::new();
    let two_way = plan.bidirectional;
    match (&plan.action, &src) {
        (Action::Check, Some(src)) => {
            return check::run(src, &dst, &opts.gateway, opts.gateway_address.as_ref(), io).await;
        }
        (Action::List, _) => {
            return listing::run(
                &dst,
                plan.from.as_deref(),
                args.kube.namespace.as_deref(),
                args.write.output,
                io,
            )
            .await;
        }
        (
            Action::Link {
                prune,
                setup_dns: dns_too,
            },
            Some(src),
        ) => {
            links::link(src, &dst, &plan, &opts, *prune, &mut report).await?;
            if *dns_too {
                dns_lines = setup_dns(&dst, Some(src), two_way, false, mode, &mut report).await?;
            }
        }
        (Action::Unlink, Some(src)) => links::unlink(src, &dst, &plan, &opts, &mut report).await?,
        (Action::Dns { undo }, src) => {
            dns_lines = setup_dns(&dst, src.as_ref(), two_way, *undo, mode, &mut report).await?;
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

/// `--setup-dns` (or `--undo`) in the target, and in the source too when linking both ways.
async fn setup_dns(
    dst: &Cluster,
    src: Option<&Cluster>,
    two_way: bool,
    undo: bool,
    mode: WriteMode,
    report: &mut links::Report,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut targets = vec![dst];
    if let (true, Some(s)) = (two_way, src) {
        targets.push(s);
    }
    for t in targets {
        let mut notes = Vec::new();
        let applied = dns::apply(t, undo, mode, &mut notes).await?;
        notes.into_iter().for_each(|n| report.note(n));
        lines.push(dns_line(t, &applied, mode, report));
    }
    Ok(lines)
}

fn dns_line(
    cluster: &Cluster,
    applied: &crate::api::Applied,
    mode: WriteMode,
    report: &mut links::Report,
) -> String {
    report.object(crate::objects::for_display(applied.object.clone()));
    format!(
        "{} (context {})",
        crate::output::result_line(&applied.object, applied.outcome, mode.dry_run),
        cluster.context
    )
}

#[cfg(test)]
mod tests;
