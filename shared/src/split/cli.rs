//! The command line of `kubectl mesh-split`: the clap definitions of setting weights, `undo`
//! and `status` (turned into a [`Plan`](super::Plan) by `plan.rs`).

use clap::{Args as ClapArgs, Parser, Subcommand};

use super::analysis::CheckArgs;
use super::route::RouteSelector;
use super::target::Target;
use crate::cli::{KubeArgs, ReadArgs, WriteArgs};
use crate::duration::HumanDuration;
use crate::prom::PromArgs;

const USAGE: &str = "kubectl mesh-split [TARGET] WEIGHTS [OPTIONS]
       kubectl mesh-split undo [TARGET] [OPTIONS]
       kubectl mesh-split status [TARGET] [OPTIONS]";

const EXAMPLES: &str = "Examples:
  # The only VirtualService in the namespace with a split route: 80% to the first destination
  kubectl mesh-split 80/20

  # By host, in two clusters at once (read and checked in both before either is written)
  kubectl mesh-split productcatalogservice 80/20 --context cluster1 --context cluster2

  # By subset or host name instead of order
  kubectl mesh-split reviews v1=90,v2=10

  # Walk to 0/100 through 80/20, 50/50 and 20/80, two minutes apart (Ctrl-C stops between steps)
  kubectl mesh-split vs/productcatalog-migration 0/100 --steps 20,50,80 --interval 2m

  # The same walk, checked against each cluster's Prometheus before every next step: a 5xx
  # share above 1% or a p99 above 500ms puts every cluster back to 100/0 (exit 5)
  kubectl mesh-split vs/productcatalog-migration 0/100 --steps 20,50,80 --interval 2m \
    --context cluster1 --context cluster2 \
    --prometheus http://prom1:9090 --prometheus http://prom2:9090 \
    --max-error-rate 1% --max-p99 500ms --min-requests 100

  # Back to the weights before the last change, in every given context
  kubectl mesh-split undo --context cluster1 --context cluster2

  # Current weights per context
  kubectl mesh-split status productcatalogservice --context cluster1 --context cluster2

  # Weights next to the observed share, success rate and p99, redrawn every few seconds
  kubectl mesh-split status productcatalogservice --traffic --prometheus http://prom:9090 --watch

  # Create the VirtualService when there is none yet
  kubectl mesh-split productcatalogservice 100/0 --create --to productcatalogservice,productcatalogservice-gke

Exit codes: 0 done, 1 API or runtime failure, 2 invalid input (nothing written),
3 the weights read back differ, 4 a write failed in one cluster after others were written
(those were put back), 5 a metric check failed during --steps (every cluster was put back to
its weights from before the walk).";

/// Split traffic between the destinations of a VirtualService route, across clusters
#[derive(Debug, Parser)]
#[command(
    name = "kubectl mesh-split",
    bin_name = "kubectl mesh-split",
    version,
    override_usage = USAGE,
    after_help = EXAMPLES,
    // `undo`/`status` are verbs wherever they appear, even after flags (`-n ns undo`).
    subcommand_precedence_over_arg = true
)]
pub struct Args {
    /// vs/NAME, or a host (productcatalogservice or its FQDN) of a VirtualService
    ///
    /// Without it: the only VirtualService in the namespace whose route has two or more
    /// destinations (a pick-list on a terminal when there are several).
    #[arg(value_name = "TARGET", allow_hyphen_values = true)]
    pub first: Option<String>,

    /// 80/20 (route order), 50/30/20, or v1=80,v2=20 (by subset or host): integers adding up to 100
    #[arg(value_name = "WEIGHTS", allow_hyphen_values = true)]
    pub second: Option<String>,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub route: RouteArg,

    /// Walk there through these weights of the last destination, e.g. 20,50,80
    #[arg(long, value_name = "W,W...", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=99))]
    pub steps: Vec<u32>,

    /// With --steps: how long to wait at each step [default: 1m]
    #[arg(long, value_name = "DURATION", requires = "steps")]
    pub interval: Option<HumanDuration>,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub checks: CheckArgs,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub prom: PromArgs,

    /// The range the metrics are taken over [default: the --interval; status --traffic: 5m]
    #[arg(long, value_name = "DURATION", global = true)]
    pub window: Option<HumanDuration>,

    /// Create the VirtualService for TARGET (a host) when none exists
    #[arg(long, requires = "to")]
    pub create: bool,

    /// With --create: the destination hosts, in weight order
    #[arg(
        long,
        value_name = "HOST,HOST...",
        value_delimiter = ',',
        requires = "create"
    )]
    pub to: Vec<String>,

    /// With --create: the VirtualService name [default: <host>-split]
    #[arg(long, value_name = "NAME", requires = "create")]
    pub name: Option<String>,

    #[allow(missing_docs)]
    #[command(subcommand)]
    pub verb: Option<Verb>,

    /// kubectl's cluster, auth and verbosity flags.
    #[command(flatten)]
    pub kube: KubeArgs,

    /// `--dry-run`, `-o` and `--force-conflicts`.
    #[command(flatten)]
    pub write: WriteArgs,
}

/// `--route`, shared by every verb.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct RouteArg {
    /// The route when several have two or more destinations: an http route's name, or http/0, tcp/0, tls/0
    #[arg(long = "route", value_name = "ROUTE")]
    pub route: Option<RouteSelector>,
}

/// The verbs besides setting weights.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Restore the weights recorded before the last change, in every given context
    Undo(UndoArgs),
    /// Show the current weights per context
    Status(StatusArgs),
}

/// `kubectl mesh-split undo`.
#[derive(Debug, ClapArgs)]
pub struct UndoArgs {
    /// vs/NAME or a host; without it, the only VirtualService with recorded previous weights
    #[arg(value_name = "TARGET")]
    pub target: Option<Target>,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub route: RouteArg,

    /// `--dry-run`, `-o` and `--force-conflicts`.
    #[command(flatten)]
    pub write: WriteArgs,
}

/// `kubectl mesh-split status`.
#[derive(Debug, ClapArgs)]
pub struct StatusArgs {
    /// vs/NAME or a host; without it, every VirtualService with a split route
    #[arg(value_name = "TARGET")]
    pub target: Option<Target>,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub route: RouteArg,

    /// Show the observed share of requests, success rate and p99 per destination (needs --prometheus)
    #[arg(long)]
    pub traffic: bool,

    /// With --traffic: redraw every few seconds (a bar per destination on a terminal)
    #[arg(long, requires = "traffic")]
    pub watch: bool,

    #[allow(missing_docs)]
    #[command(flatten)]
    pub read: ReadArgs,
}
