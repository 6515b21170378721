//! The step walk of a set: per cluster, the weights at each step (the last being the final
//! weights), written step by step with a wait between, the metric checks before each next step,
//! and what happens when a check fails (every cluster back to its start) or a signal comes (a
//! note on how to resume or undo).

use std::io::Write as _;

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::analysis::Analysis;
use super::build::{self, Previous};
use super::commit::commit;
use super::facts;
use super::gate::{self, Gate, Step};
use super::plan::{Plan, SetPlan};
use super::report;
use super::site::Site;
use super::steps::Interrupt;
use super::target::Target;
use super::weights::{self, slash};
use crate::api::WriteMode;
use crate::cli::DryRun;
use crate::duration::HumanDuration;
use crate::error::{usage, MeshError};
use crate::objects;
use crate::output;
use crate::Io;

/// A set's walk, planned before anything is written.
pub(super) struct Walk<'a> {
    pub(super) plan: &'a Plan,
    pub(super) set: &'a SetPlan,
    pub(super) target: &'a Target,
    /// `plans[site][step]`: the weights of each site at each step, the last being the final
    /// weights.
    pub(super) plans: Vec<Vec<Vec<u32>>>,
    /// Per site, the previous-weights annotation every step writes: what undo restores.
    pub(super) previous: Vec<Option<String>>,
}

impl Walk<'_> {
    /// How many steps (1 without `--steps`).
    pub(super) fn steps(&self) -> usize {
        self.plans.first().map_or(0, Vec::len)
    }

    /// Every site's weights at step `k`.
    fn at(&self, k: usize) -> Vec<Vec<u32>> {
        self.plans.iter().map(|p| p[k].clone()).collect()
    }

    /// The context names, in order.
    pub(super) fn contexts(sites: &[Site]) -> Vec<String> {
        sites.iter().map(|s| s.context().to_string()).collect()
    }

    /// `--interval` as the user writes it.
    pub(super) fn interval(&self) -> String {
        HumanDuration(self.set.interval).to_string()
    }
}

/// The weights of each site at each step: the final weights alone without `--steps`.
pub(super) fn step_plans(
    set: &SetPlan,
    sites: &[Site],
    finals: &[Vec<u32>],
) -> Result<Vec<Vec<Vec<u32>>>> {
    let mut plans: Vec<Vec<Vec<u32>>> = Vec::new();
    for (site, fin) in sites.iter().zip(finals) {
        if set.steps.is_empty() {
            plans.push(vec![fin.clone()]);
            continue;
        }
        let Some(start) = &site.start else {
            return Err(usage(
                "--steps",
                format!(
                    "{} does not exist yet: create it at its starting weights first, then walk with --steps",
                    site.describe()
                ),
            ));
        };
        let p = weights::step_weights(start, fin, &set.steps).map_err(|e| {
            usage(
                "--steps",
                format!("{e} ({}: now {})", site.describe(), slash(start)),
            )
        })?;
        plans.push(p);
    }
    Ok(plans)
}

/// What undo restores, per site: the weights before this command, kept through every step,
/// with one change ID for every context of the run (none for a site the run creates).
pub(super) fn previous(sites: &[Site]) -> Vec<Option<String>> {
    let change = build::change_id();
    sites
        .iter()
        .map(|s| {
            s.live
                .as_ref()
                .map(|_| Previous::of(&s.route).by(&change).to_annotation())
        })
        .collect()
}

/// Walks every site through the steps, reading each step back before the wait for the next.
pub(super) async fn run(
    walk: &Walk<'_>,
    sites: &mut [Site],
    mode: WriteMode,
    io: &mut Io,
) -> Result<()> {
    let steps = walk.steps();
    let mut interrupt = if (steps > 1 || sites.len() > 1) && mode.dry_run == DryRun::None {
        Some(Interrupt::catch().await)
    } else {
        None
    };
    let gates = preflight(walk, sites, mode).await?;
    let starts: Vec<Vec<u32>> = sites.iter().map(|s| s.route.weights.clone()).collect();
    let mut objs = Vec::new();
    let mut reached: Vec<Vec<u32>> = starts.clone();
    for k in 0..steps {
        let want = walk.at(k);
        objs.extend(step(walk, sites, &want, k, mode, interrupt.as_ref(), io).await?);
        reached = want;
        let last = k + 1 == steps;
        if let (false, Some(int)) = (last, interrupt.as_mut()) {
            match between(walk, k, int, gates.as_ref(), io).await? {
                Step::Pass => {}
                Step::Interrupted => return interrupted(walk, sites, &reached, k, io),
                Step::Fail(f) => return roll_back(sites, &starts, &f, io).await,
            }
        }
    }
    if let Some(format) = walk.plan.output() {
        return output::print_objects(&mut io.out, format, &objs);
    }
    report::print_table(sites, &reached, io)
}

/// The checks, asked once before anything is written: a Prometheus that cannot answer stops
/// here (exit 1). A server-side dry run moves no traffic, so it is not checked.
async fn preflight<'a>(
    walk: &Walk<'a>,
    sites: &[Site],
    mode: WriteMode,
) -> Result<Option<(Vec<Gate>, &'a Analysis)>> {
    match &walk.set.analysis {
        Some(a) if mode.dry_run == DryRun::None => {
            let g = make_gates(a, sites, &walk.plans)?;
            for line in gate::describe(&g, &a.checks, a.window).lines() {
                crate::vlog!(4, "{line}");
            }
            gate::preflight(&g).await?;
            Ok(Some((g, a)))
        }
        _ => Ok(None),
    }
}

/// Step `k`: every site to `want`, the result lines, and the read-back; the objects written,
/// for `-o`.
async fn step(
    walk: &Walk<'_>,
    sites: &mut [Site],
    want: &[Vec<u32>],
    k: usize,
    mode: WriteMode,
    interrupt: Option<&Interrupt>,
    io: &mut Io,
) -> Result<Vec<Value>> {
    let create = walk.set.create.as_ref();
    let applied = commit(sites, want, &walk.previous, create, mode, interrupt, io).await?;
    let steps = walk.steps();
    if steps > 1 {
        io.note(format!(
            "Step {}/{steps}: {} in {}",
            k + 1,
            slash(&want[0]),
            Walk::contexts(sites).join(", ")
        ))?;
    }
    report::result_lines(sites, &applied, mode.dry_run, io)?;
    if mode.dry_run == DryRun::None {
        facts::read_back(sites, want).await?;
    }
    Ok(applied
        .into_iter()
        .map(|a| objects::for_display(a.object))
        .collect())
}

/// The wait after step `k`, then the checks: whether to go on.
async fn between(
    walk: &Walk<'_>,
    k: usize,
    int: &mut Interrupt,
    gates: Option<&(Vec<Gate>, &Analysis)>,
    io: &mut Io,
) -> Result<Step> {
    let label = format!(
        "Step {}/{} done; step {} ({}) in {}",
        k + 1,
        walk.steps(),
        k + 2,
        slash(&walk.plans[0][k + 1]),
        walk.interval()
    );
    let bar = io.terminal;
    if !int.wait(walk.set.interval, &label, bar, &mut io.err).await {
        return Ok(Step::Interrupted);
    }
    match gates {
        Some((g, a)) => gate::check_step(g, &a.checks, walk.set.interval, int, io).await,
        None => Ok(Step::Pass),
    }
}

/// Each cluster's Prometheus and the destinations its walk moves traffic to.
pub(super) fn make_gates(
    a: &Analysis,
    sites: &[Site],
    plans: &[Vec<Vec<u32>>],
) -> Result<Vec<Gate>> {
    let mut out = Vec::new();
    for (i, (site, plan)) in sites.iter().zip(plans).enumerate() {
        let endpoint = &a.endpoints[i.min(a.endpoints.len() - 1)];
        let end = plan.last().map_or(&site.route.weights, |w| w);
        out.push(Gate::new(
            site.context(),
            crate::prom::Prometheus::connect(endpoint)?,
            &site.route.destinations,
            &site.route.weights,
            end,
            &site.namespace,
            a.window,
        ));
    }
    Ok(out)
}

/// A check failed: every cluster goes back to its weights from before the walk, through the
/// same all-or-nothing write as every step and `undo` (recording what it replaces, as `undo`
/// does), then exit 5 naming the check.
async fn roll_back(
    sites: &mut [Site],
    starts: &[Vec<u32>],
    failed: &gate::Failure,
    io: &mut Io,
) -> Result<()> {
    gate::print_failure(failed, io)?;
    io.note(format!(
        "Rolling back every context to {}",
        slash(&starts[0])
    ))?;
    let change = build::change_id();
    let previous: Vec<Option<String>> = sites
        .iter()
        .map(|s| Some(Previous::of(&s.route).by(&change).to_annotation()))
        .collect();
    let mode = WriteMode {
        dry_run: DryRun::None,
        force: false,
    };
    // No interrupt: a signal must not stop the way back halfway.
    let applied = commit(sites, starts, &previous, None, mode, None, io)
        .await
        .map_err(|e| e.context(format!("{failed}; rolling back")))?;
    report::result_lines(sites, &applied, DryRun::None, io)?;
    facts::read_back(sites, starts)
        .await
        .map_err(|e| e.context(format!("{failed}; rolled back")))?;
    report::print_table(sites, starts, io)?;
    Err(MeshError::Gate(format!(
        "{failed}; every context is back at its weights from before the walk"
    ))
    .into())
}

/// A signal stopped the walk after step `k`: the table as reached, how to resume or undo, and
/// an error saying where every context stands.
fn interrupted(
    walk: &Walk<'_>,
    sites: &[Site],
    reached: &[Vec<u32>],
    k: usize,
    io: &mut Io,
) -> Result<()> {
    let (plan, set, target, steps) = (walk.plan, walk.set, walk.target, walk.steps());
    report::print_table(sites, reached, io)?;
    let name = sites.first().map_or(String::new(), |s| s.name.clone());
    let vs = match target {
        Target::Vs(_) => target.to_string(),
        Target::Host(_) => format!("vs/{name}"),
    };
    let flags = if plan.repeat_flags.is_empty() {
        String::new()
    } else {
        format!(" {}", plan.repeat_flags.join(" "))
    };
    let rest: Vec<String> = set.steps[(k + 1).min(set.steps.len())..]
        .iter()
        .map(u32::to_string)
        .collect();
    let steps_flag = if rest.is_empty() {
        String::new()
    } else {
        format!(
            " --steps {} --interval {}",
            rest.join(","),
            HumanDuration(set.interval)
        )
    };
    writeln!(
        io.err,
        "Interrupted: stopped at step {}/{steps} ({}).\n  Resume: kubectl mesh-split {vs} {}{steps_flag}{flags}\n  Undo:   kubectl mesh-split undo {vs}{flags}",
        k + 1,
        slash(&reached[0]),
        set.weights,
    )?;
    Err(anyhow!(
        "interrupted at step {}/{steps}: the weights are {} in every context",
        k + 1,
        slash(&reached[0])
    ))
}
