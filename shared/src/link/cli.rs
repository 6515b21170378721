//! The `kubectl mesh-link` command line: its clap definition, and nothing else.

use clap::{Parser, Subcommand};

use super::{pool, remote, GatewayAddress, GatewayRef, Pool, Selector};
use crate::cli::{KubeArgs, WriteArgs};
use crate::names;

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

    /// kubectl's cluster, auth and verbosity flags.
    #[command(flatten)]
    pub kube: KubeArgs,

    /// `--dry-run`, `-o` and `--force-conflicts`.
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
