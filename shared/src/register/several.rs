//! mesh-register across several `--context`s: every context is read, and its writes are
//! checked by the server (a `dryRun=All` of each), before any context is written; then they are
//! written through `write::across`, the first context alone and then the others together, and a
//! failure anywhere puts back every context written.

use std::io::Write as _;

use anyhow::{anyhow, Result};
use futures::future::join_all;
use serde_json::Value;

use super::add::plan_register;
use super::plan::{action, Action};
use super::remove::plan_deregister;
use super::{listing, Args};
use crate::api::{self, Applied, Cluster, Outcome, WriteMode};
use crate::cli::{DryRun, OutputFormat};
use crate::error::{one_line, usage};
use crate::interrupt::Interrupt;
use crate::objects;
use crate::output;
use crate::write::across::{self, Failed, Restored};
use crate::write::{self, Step, Written};
use crate::Io;

/// What each context's writes did, by context name.
type PerContext = Vec<(String, Vec<Applied>)>;

/// One context and the writes planned for it.
struct Context {
    cluster: Cluster,
    steps: Vec<Step>,
    /// The namespace is created by this run, so nothing in it can be checked before.
    new_namespace: bool,
}

impl across::Site for Context {
    type Written = Written;

    fn context(&self) -> &str {
        &self.cluster.context
    }

    fn left_at(&self) -> String {
        "as this run wrote it".to_string()
    }

    async fn write(&self, mode: WriteMode) -> std::result::Result<Written, Failed<Written>> {
        // A failure inside the context is taken back there (and said in the error).
        Ok(write::execute_kept(&self.cluster, self.steps.clone(), mode).await?)
    }

    fn unchanged(written: &Written) -> bool {
        written.unchanged()
    }

    async fn put_back(&self, written: &Written, _in_doubt: bool) -> Result<Restored> {
        Ok(written.put_back(&self.cluster).await)
    }
}

/// Runs `kubectl mesh-register` with `--context` given more than once.
pub(super) async fn run(args: &Args, mode: WriteMode, io: &mut Io) -> Result<()> {
    let kube = &args.kube;
    let (kc, targets) = api::resolve_targets(kube, &kube.contexts)?;
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|o| o.context == t.context) {
            return Err(usage("--context", format!("{} is given twice", t.context)));
        }
    }
    // Every argument is checked before anything else.
    action(args, "default")?;
    if let Some(per) = offline(args, &targets)? {
        return print(io, args.write.output, DryRun::Client, &per);
    }
    super::warn_link_local(args, io)?;
    let clusters = Cluster::connect_all(&kc, &targets, kube).await?;
    if args.list {
        return list(&clusters, args, io).await;
    }
    let contexts = plan_all(clusters, args, io).await?;
    if mode.dry_run == DryRun::None {
        check_all(&contexts, mode.force).await?;
    }
    let interrupt = if mode.dry_run == DryRun::None {
        Some(Interrupt::catch().await)
    } else {
        None
    };
    let how = across::Across {
        order: across::Order::CanaryThenTogether,
        mode,
        interrupt: interrupt.as_ref(),
        check_with: "kubectl mesh-register --list",
    };
    let written = across::commit(&contexts, &how, &mut *io.err).await?;
    let per: PerContext = contexts
        .iter()
        .zip(&written)
        .map(|(c, w)| (c.cluster.context.clone(), w.results()))
        .collect();
    print(io, args.write.output, mode.dry_run, &per)
}

/// A fresh registration's client dry run needs no cluster: what each context would get, from
/// the input alone; `None` when the run needs the clusters.
fn offline(args: &Args, targets: &[crate::kubeconfig::Target]) -> Result<Option<PerContext>> {
    let mut per = Vec::new();
    for t in targets {
        let Some(objs) = super::offline(args, &t.namespace)? else {
            return Ok(None);
        };
        let results = objs
            .into_iter()
            .map(|object| Applied {
                object,
                outcome: Outcome::Created,
            })
            .collect();
        per.push((t.context.clone(), results));
    }
    Ok((!per.is_empty()).then_some(per))
}

/// Reads and plans every context, all at once; each one's warnings are held and printed in the
/// order of --context, and the first failure in that order is the error, as when they were
/// read one after another.
async fn plan_all(clusters: Vec<Cluster>, args: &Args, io: &mut Io) -> Result<Vec<Context>> {
    let terminal = io.terminal;
    let planned = join_all(clusters.iter().map(|cluster| async move {
        let (mut own, held) = Io::held(terminal);
        let planned = plan(cluster, args, &mut own).await;
        (planned, held)
    }))
    .await;
    let mut contexts = Vec::with_capacity(clusters.len());
    for (cluster, (planned, held)) in clusters.into_iter().zip(planned) {
        held.replay(io)?;
        let (steps, new_namespace) = planned?;
        contexts.push(Context {
            cluster,
            steps,
            new_namespace,
        });
    }
    Ok(contexts)
}

/// The server checks every write of every context (conflicting field owners, schema,
/// admission, permissions) before any is sent for real; the contexts are checked at once.
async fn check_all(contexts: &[Context], force: bool) -> Result<()> {
    let checks = join_all(contexts.iter().map(|c| {
        let steps: Vec<Step> = if c.new_namespace {
            c.steps.iter().take(1).cloned().collect()
        } else {
            c.steps.clone()
        };
        write::check(&c.cluster, steps, force)
    }))
    .await;
    for check in checks {
        check.map_err(|e| {
            anyhow!(
                "{}; nothing was written in any context (checked with a server dry run before writing)",
                one_line(&e)
            )
        })?;
    }
    Ok(())
}

/// Reads one context and plans its writes: the steps, and whether the first creates the
/// namespace.
async fn plan(cluster: &Cluster, args: &Args, io: &mut Io) -> Result<(Vec<Step>, bool)> {
    let prefix = format!("{}: ", cluster.context);
    Ok(match action(args, &cluster.namespace)? {
        Action::Register(reg) => {
            let planned = plan_register(cluster, &reg, args.create_namespace, &prefix, io).await?;
            let mut steps = Vec::new();
            let new_namespace = planned.namespace.is_some();
            // Created by this run, so taken back with the rest when a later context fails.
            if let Some(ns) = planned.namespace {
                steps.push(Step::apply(ns, None));
            }
            steps.extend(planned.steps);
            (steps, new_namespace)
        }
        Action::Delete { service, ip } => {
            let ns = cluster.namespace.clone();
            let steps = plan_deregister(cluster, &ns, &service, ip, &prefix, io).await?;
            (steps, false)
        }
        Action::List => unreachable!("handled before any context is planned"),
    })
}

/// Result lines prefixed with their context, or each context's objects under its name.
fn print(
    io: &mut Io,
    format: Option<OutputFormat>,
    dry_run: DryRun,
    per: &[(String, Vec<Applied>)],
) -> Result<()> {
    let Some(format) = format else {
        for (context, results) in per {
            for r in results {
                let line = output::result_line(&r.object, r.outcome, dry_run);
                writeln!(io.out, "{context}: {line}")?;
            }
        }
        return Ok(());
    };
    let objs: Vec<(String, Vec<Value>)> = per
        .iter()
        .map(|(context, results)| {
            let objs = results
                .iter()
                .filter(|r| r.outcome != Outcome::Deleted)
                .map(|r| objects::for_display(r.object.clone()))
                .collect();
            (context.clone(), objs)
        })
        .collect();
    output::print_per_context(&mut io.out, format, &objs)
}

/// `--list` across contexts: one table with a CONTEXT column, and what differs between them.
async fn list(clusters: &[Cluster], args: &Args, io: &mut Io) -> Result<()> {
    let reads = join_all(
        clusters
            .iter()
            .map(|cluster| listing::read(cluster, args.all_namespaces)),
    )
    .await;
    let mut per = Vec::with_capacity(clusters.len());
    for (cluster, found) in clusters.iter().zip(reads) {
        per.push((cluster.context.clone(), found?));
    }
    if let Some(format) = args.write.output {
        let objs: Vec<(String, Vec<Value>)> = per
            .into_iter()
            .map(|(c, found)| (c, found.objects()))
            .collect();
        return output::print_per_context(&mut io.out, format, &objs);
    }
    let contexts: Vec<String> = per.iter().map(|(c, _)| c.clone()).collect();
    let rows: Vec<(String, listing::Row)> = per
        .iter()
        .flat_map(|(c, found)| found.rows().into_iter().map(move |r| (c.clone(), r)))
        .collect();
    if rows.is_empty() {
        let scope = if args.all_namespaces {
            "any namespace".to_string()
        } else {
            let namespaces: Vec<String> = clusters
                .iter()
                .map(|c| format!("namespace {} (context {})", c.namespace, c.context))
                .collect();
            namespaces.join(", ")
        };
        io.note(format!(
            "No VM services registered by kubectl-mesh in {scope}."
        ))?;
        return Ok(());
    }
    let differences = listing::differences(&rows, &contexts);
    io.out
        .write_all(listing::render_across(&rows, &differences, args.all_namespaces).as_bytes())?;
    for ((ns, name), what) in &differences {
        io.warn(format!(
            "service {ns}/{name} differs between the contexts: {}",
            what.detail.join("; ")
        ))?;
    }
    Ok(())
}
