//! `kubectl mesh-split undo`: every context back to the weights its previous-weights annotation
//! recorded, refused when the contexts were not changed by one run.

use anyhow::{anyhow, Result};
use serde_json::Value;

use crate::api::{Cluster, WriteMode};
use crate::cli::DryRun;
use crate::error::MeshError;
use crate::istio::VirtualService;
use crate::objects;
use crate::output;
use crate::prompt::Prompter;
use crate::split::build::{self, Previous};
use crate::split::choose;
use crate::split::commit::commit;
use crate::split::facts;
use crate::split::plan::Plan;
use crate::split::report;
use crate::split::route::{self, Route, RouteSelector};
use crate::split::site::{self, Site};
use crate::split::steps::Interrupt;
use crate::split::target::Target;
use crate::split::weights::slash;
use crate::Io;

/// What undo writes, per site.
#[derive(Default)]
struct Undoing {
    sites: Vec<Site>,
    /// The recorded weights, to write back.
    want: Vec<Vec<u32>>,
    /// The annotation recording what undo replaces, so a second undo goes forward again.
    previous: Vec<Option<String>>,
    /// Per site: the context, its weights now, and what its annotation recorded.
    recorded: Vec<(String, String, Previous)>,
}

/// `kubectl mesh-split undo [TARGET]`.
pub(in crate::split) async fn run(
    plan: &Plan,
    clusters: Vec<Cluster>,
    io: &mut Io,
    prompter: &mut dyn Prompter,
) -> Result<()> {
    let target = choose::target_or_choose(plan, &clusters, io, prompter, true, "").await?;
    let Undoing {
        mut sites,
        want,
        previous,
        recorded,
    } = read_sites(plan, clusters, &target).await?;
    refuse_separate_changes(&recorded)?;
    report::ownership_notes(&sites, io)?;
    let mode = WriteMode {
        dry_run: plan.write.dry_run,
        force: plan.write.force_conflicts,
    };
    if mode.dry_run == DryRun::Client {
        return dry_run(plan, &sites, &want, &previous, io);
    }
    let interrupt = if sites.len() > 1 && mode.dry_run == DryRun::None {
        Some(Interrupt::catch().await)
    } else {
        None
    };
    let applied = commit(
        &mut sites,
        &want,
        &previous,
        None,
        mode,
        interrupt.as_ref(),
        io,
    )
    .await?;
    report::result_lines(&sites, &applied, mode.dry_run, io)?;
    if mode.dry_run == DryRun::None {
        facts::read_back(&sites, &want).await?;
    }
    if let Some(format) = plan.output() {
        let objs: Vec<Value> = applied
            .into_iter()
            .map(|a| objects::for_display(a.object))
            .collect();
        return output::print_objects(&mut io.out, format, &objs);
    }
    report::print_table(&sites, &want, io)
}

/// Reads every cluster and checks that each has recorded weights for a route still there.
async fn read_sites(plan: &Plan, clusters: Vec<Cluster>, target: &Target) -> Result<Undoing> {
    let mut u = Undoing::default();
    let change = build::change_id();
    let reads = facts::read_targets(&clusters, target).await;
    for (cluster, read) in clusters.into_iter().zip(reads) {
        let (kind, live) = read?;
        let Some(vs) = live else {
            return Err(facts::not_found(&cluster, target, false));
        };
        let what = format!(
            "VirtualService {} in context {}",
            site::ns_name(&vs),
            cluster.context
        );
        let (prev, route) = recorded_route(plan, &vs, &what)?;
        u.want.push(prev.weights());
        // Undo records what it replaces, so a second undo goes forward again.
        u.previous
            .push(Some(Previous::of(&route).by(&change).to_annotation()));
        u.recorded
            .push((cluster.context.clone(), slash(&route.weights), prev));
        let site = Site::existing(cluster, kind, vs, route, plan.write.force_conflicts);
        site::refuse_foreign_owner(&site)?;
        u.sites.push(site);
    }
    Ok(u)
}

/// The weights recorded on `vs` (`what` names it) and the route they are for, as long as it
/// still has the destinations they were recorded for.
fn recorded_route(plan: &Plan, vs: &VirtualService, what: &str) -> Result<(Previous, Route)> {
    let prev = match build::read_previous(vs) {
        None => {
            return Err(anyhow!(
                "nothing to undo: {what} has no previous weights recorded by kubectl mesh-split"
            ))
        }
        Some(Err(e)) => return Err(anyhow!("{what}: {e}")),
        Some(Ok(p)) => p,
    };
    let sel = match &plan.route {
        Some(s) => s.clone(),
        None => prev
            .route
            .parse::<RouteSelector>()
            .map_err(|e| anyhow!("{what}: {e}"))?,
    };
    let route = route::select(vs, Some(&sel)).map_err(|_| {
        anyhow!(
            "{what}: route {} recorded in the annotation is gone: set the weights instead",
            prev.route
        )
    })?;
    if route.destinations != prev.destination_list() {
        return Err(anyhow!(
            "{what}: route {} changed since the weights were recorded (now {}; recorded {}): set the weights instead",
            route.at,
            route.describe(),
            prev.destinations
                .iter()
                .map(|d| format!("{} {}", d.destination, d.weight))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((prev, route))
}

/// `--dry-run=client`: the objects undo would write (`-o`), else the table.
fn dry_run(
    plan: &Plan,
    sites: &[Site],
    want: &[Vec<u32>],
    previous: &[Option<String>],
    io: &mut Io,
) -> Result<()> {
    let objs: Vec<Value> = sites
        .iter()
        .enumerate()
        .filter(|(i, s)| s.route.weights != want[*i])
        .map(|(i, s)| s.desired(&want[i], previous[i].as_deref(), None))
        .collect();
    if let Some(format) = plan.output() {
        return output::print_objects(&mut io.out, format, &objs);
    }
    report::print_table(sites, want, io)?;
    io.note("(dry run: nothing was written)")?;
    Ok(())
}

/// Undo across contexts puts each back to what its own annotation recorded, which is one state
/// only when one run wrote them all: after a partial failure, or a change made in one context
/// alone, the contexts would end at different weights. Refused then, saying what each holds.
/// Annotations older than change IDs pass when they record the same weights.
fn refuse_separate_changes(recorded: &[(String, String, Previous)]) -> Result<()> {
    let Some((_, _, first)) = recorded.first() else {
        return Ok(());
    };
    let together = recorded
        .iter()
        .all(|(_, _, p)| match (&p.change, &first.change) {
            (Some(a), Some(b)) => a == b,
            (None, None) => p.weights() == first.weights(),
            _ => false,
        });
    if together {
        return Ok(());
    }
    let each: Vec<String> = recorded
        .iter()
        .map(|(context, now, p)| {
            format!(
                "{context} holds {now} (change {}, undo would set {})",
                p.change.as_deref().unwrap_or("unrecorded"),
                slash(&p.weights())
            )
        })
        .collect();
    Err(MeshError::Check(format!(
        "the contexts were not changed by one run, so undo would leave them at different weights: {}; set the weights instead (kubectl mesh-split WEIGHTS), or undo one --context at a time",
        each.join("; ")
    ))
    .into())
}
