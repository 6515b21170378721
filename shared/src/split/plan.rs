//! The command line turned once into a typed, validated plan, before any API call.

use std::time::Duration;

use anyhow::Result;

use super::analysis::Analysis;
use super::cli::{Args, Verb};
use super::route::{Destination, RouteSelector};
use super::target::Target;
use super::traffic::Traffic;
use super::weights::{self, Weights};
use crate::cli::{DryRun, OutputFormat, WriteArgs};
use crate::error::usage;
use crate::names;

/// What to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Set weights (possibly through steps, possibly creating the VirtualService).
    Set(SetPlan),
    /// Restore the recorded previous weights.
    Undo,
    /// Show the current weights.
    Status,
}

/// Setting weights.
#[derive(Debug, Clone)]
pub struct SetPlan {
    /// The final weights.
    pub weights: Weights,
    /// The last destination's weight at each intermediate step.
    pub steps: Vec<u32>,
    /// The wait at each step.
    pub interval: Duration,
    /// `--create --to ... [--name]`.
    pub create: Option<Create>,
    /// The metric checks before each next step (`--prometheus` with checks).
    pub analysis: Option<Box<Analysis>>,
}

/// Creating the VirtualService when none exists.
#[derive(Debug, Clone)]
pub struct Create {
    /// The host the VirtualService routes (TARGET).
    pub host: String,
    /// Destination hosts, in weight order.
    pub to: Vec<String>,
    /// Its name.
    pub name: String,
}

/// The validated command.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What to do.
    pub action: Action,
    /// TARGET, when given.
    pub target: Option<Target>,
    /// `--route`.
    pub route: Option<RouteSelector>,
    /// Output, dry-run, force and yes flags (status: only `-o`).
    pub write: WriteArgs,
    /// The cluster flags as given, to print commands that resume or undo.
    pub repeat_flags: Vec<String>,
    /// `status --traffic`.
    pub traffic: Option<Traffic>,
}

/// The default `--interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

const SYNOPSIS: &str =
    "kubectl mesh-split [TARGET] WEIGHTS, e.g. kubectl mesh-split 80/20 (or: undo, status)";

fn looks_like_weights(s: &str) -> bool {
    s.contains(['/', ':', '=']) || s.starts_with(|c: char| c.is_ascii_digit() || c == '-')
}

impl Plan {
    /// Validates the arguments; every error is a usage error (exit 2) naming the argument.
    pub fn from_args(args: &Args) -> Result<Self> {
        let repeat_flags = repeat_flags(args);
        if let Some(verb) = &args.verb {
            let name = match verb {
                Verb::Undo(_) => "undo",
                Verb::Status(_) => "status",
            };
            if let Some(extra) = args.first.as_ref().or(args.second.as_ref()) {
                return Err(usage(
                    name,
                    format!("{extra:?} before {name}: give TARGET after it (kubectl mesh-split {name} [TARGET])"),
                ));
            }
            let set_only = [
                (!args.steps.is_empty(), "--steps"),
                (args.interval.is_some(), "--interval"),
                (args.create, "--create"),
                (args.checks.max_error_rate.is_some(), "--max-error-rate"),
                (args.checks.max_p99.is_some(), "--max-p99"),
                (args.checks.min_requests.is_some(), "--min-requests"),
                (args.checks.allow_no_traffic, "--allow-no-traffic"),
            ];
            if let Some((_, flag)) = set_only.iter().find(|(given, _)| *given) {
                return Err(usage(flag, format!("does not go with {name}")));
            }
            if matches!(verb, Verb::Undo(_)) {
                if !args.prom.urls.is_empty() {
                    return Err(usage("--prometheus", "does not go with undo"));
                }
                if args.window.is_some() {
                    return Err(usage("--window", "does not go with undo"));
                }
            }
        }
        match &args.verb {
            Some(Verb::Undo(u)) => Ok(Plan {
                traffic: None,
                action: Action::Undo,
                target: u.target.clone(),
                route: u.route.route.clone().or_else(|| args.route.route.clone()),
                write: merge(&args.write, &u.write),
                repeat_flags,
            }),
            Some(Verb::Status(s)) => Ok(Plan {
                traffic: Traffic::plan(s, args)?,
                action: Action::Status,
                target: s.target.clone(),
                route: s.route.route.clone().or_else(|| args.route.route.clone()),
                write: WriteArgs {
                    output: s.read.output.or(args.write.output),
                    ..WriteArgs::default()
                },
                repeat_flags,
            }),
            None => Self::set(args, repeat_flags),
        }
    }

    fn set(args: &Args, repeat_flags: Vec<String>) -> Result<Self> {
        let (target, weights) = match (&args.first, &args.second) {
            (None, _) => return Err(usage("WEIGHTS", format!("missing: {SYNOPSIS}"))),
            (Some(one), None) => {
                if !looks_like_weights(one) && one.parse::<Target>().is_ok() {
                    return Err(usage(
                        "WEIGHTS",
                        format!("missing after TARGET {one}: e.g. kubectl mesh-split {one} 80/20"),
                    ));
                }
                (
                    None,
                    one.parse::<Weights>().map_err(|e| usage("WEIGHTS", e))?,
                )
            }
            (Some(t), Some(w)) => (
                Some(t.parse::<Target>().map_err(|e| usage("TARGET", e))?),
                w.parse::<Weights>().map_err(|e| usage("WEIGHTS", e))?,
            ),
        };
        weights::check_steps(&args.steps).map_err(|e| usage("--steps", e))?;
        let create = if args.create {
            let Some(Target::Host(host)) = &target else {
                return Err(usage(
                    "--create",
                    "needs TARGET as a host, e.g. kubectl mesh-split productcatalogservice 100/0 --create --to A,B",
                ));
            };
            Some(create_plan(host, &args.to, args.name.as_deref(), &weights)?)
        } else {
            None
        };
        let interval = args.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
        let endpoints = args.prom.endpoints()?;
        let analysis = args.checks.plan(
            endpoints,
            args.kube.contexts.len(),
            !args.steps.is_empty(),
            interval,
            args.window.map(|w| w.0),
        )?;
        Ok(Plan {
            traffic: None,
            action: Action::Set(SetPlan {
                weights,
                steps: args.steps.clone(),
                interval,
                create,
                analysis,
            }),
            target,
            route: args.route.route.clone(),
            write: args.write.clone(),
            repeat_flags,
        })
    }

    /// The output format (`-o`).
    pub fn output(&self) -> Option<OutputFormat> {
        self.write.output
    }
}

/// Write flags given before the verb (`--dry-run undo`) or after it (`undo --dry-run`).
fn merge(top: &WriteArgs, verb: &WriteArgs) -> WriteArgs {
    WriteArgs {
        output: verb.output.or(top.output),
        dry_run: if verb.dry_run == DryRun::None {
            top.dry_run
        } else {
            verb.dry_run
        },
        force_conflicts: verb.force_conflicts || top.force_conflicts,
        yes: verb.yes || top.yes,
    }
}

fn create_plan(host: &str, to: &[String], name: Option<&str>, weights: &Weights) -> Result<Create> {
    if host.starts_with("*.") {
        return Err(usage("--create", "TARGET must be a host without wildcard"));
    }
    if to.len() < 2 {
        return Err(usage(
            "--to",
            "give two or more destination hosts, comma-separated, in weight order",
        ));
    }
    let mut hosts = Vec::new();
    for h in to {
        let h = h.trim().to_ascii_lowercase();
        names::dns1123_subdomain(&h).map_err(|e| usage("--to", e))?;
        if hosts.contains(&h) {
            return Err(usage("--to", format!("{h} is given twice")));
        }
        hosts.push(h);
    }
    let dests: Vec<Destination> = hosts.iter().map(|h| Destination::host(h)).collect();
    weights.resolve(&dests).map_err(|e| {
        usage(
            "WEIGHTS",
            format!("{e} given with --to {}", hosts.join(",")),
        )
    })?;
    let name = match name {
        Some(n) => {
            names::dns1123_subdomain(n).map_err(|e| usage("--name", e))?;
            n.to_string()
        }
        None => super::build::default_name(host),
    };
    Ok(Create {
        host: host.to_string(),
        to: hosts,
        name,
    })
}

/// `--kubeconfig`, every `--context`, `--cluster`, `--user`, `-n` and `--route` as given.
fn repeat_flags(args: &Args) -> Vec<String> {
    let k = &args.kube;
    let mut flags = Vec::new();
    if let Some(p) = &k.kubeconfig {
        flags.push(format!("--kubeconfig {}", p.display()));
    }
    for c in &k.contexts {
        flags.push(format!("--context {c}"));
    }
    if let Some(c) = &k.cluster {
        flags.push(format!("--cluster {c}"));
    }
    if let Some(u) = &k.user {
        flags.push(format!("--user {u}"));
    }
    if let Some(n) = &k.namespace {
        flags.push(format!("-n {n}"));
    }
    let route = match &args.verb {
        Some(Verb::Undo(u)) => u.route.route.as_ref(),
        Some(Verb::Status(s)) => s.route.route.as_ref(),
        None => None,
    }
    .or(args.route.route.as_ref());
    if let Some(r) = route {
        flags.push(format!("--route {r}"));
    }
    flags
}
