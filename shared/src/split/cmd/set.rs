//! Setting weights: choose the VirtualService, read and check it in every cluster before any
//! write, then print the plan (`--dry-run=client`) or walk it.

use std::io::Write as _;

use anyhow::Result;

use crate::api::{Cluster, WriteMode};
use crate::cli::DryRun;
use crate::error::usage;
use crate::istio::VirtualService;
use crate::objects::Kind;
use crate::output;
use crate::prompt::Prompter;
use crate::split::choose;
use crate::split::facts;
use crate::split::gate;
use crate::split::plan::{Create, Plan, SetPlan};
use crate::split::report;
use crate::split::route::{self, Route};
use crate::split::site::{self, Site};
use crate::split::target::Target;
use crate::split::walk::{self, Walk};
use crate::Io;

/// `kubectl mesh-split [TARGET] WEIGHTS`.
pub(in crate::split) async fn run(
    plan: &Plan,
    set: &SetPlan,
    clusters: Vec<Cluster>,
    io: &mut Io,
    prompter: &mut dyn Prompter,
) -> Result<()> {
    let hint = format!(" {}", set.weights);
    let target = choose::target_or_choose(plan, &clusters, io, prompter, false, &hint).await?;
    let (mut sites, finals) = read_sites(plan, set, clusters, &target).await?;
    let plans = walk::step_plans(set, &sites, &finals)?;
    report::start_disagreement(&sites, io)?;
    let walk = Walk {
        plan,
        set,
        target: &target,
        plans,
        previous: walk::previous(&sites),
    };
    report::ownership_notes(&sites, io)?;
    let mode = WriteMode {
        dry_run: plan.write.dry_run,
        force: plan.write.force_conflicts,
    };
    if mode.dry_run == DryRun::Client {
        return dry_run(&walk, &sites, io);
    }
    walk::run(&walk, &mut sites, mode, io).await
}

/// Reads every cluster for a split; validates the route and the weights in each. Returns the
/// sites and each one's final weights.
async fn read_sites(
    plan: &Plan,
    set: &SetPlan,
    clusters: Vec<Cluster>,
    target: &Target,
) -> Result<(Vec<Site>, Vec<Vec<u32>>)> {
    let mut sites: Vec<Site> = Vec::new();
    let mut finals = Vec::new();
    let reads = facts::read_targets(&clusters, target).await;
    for (cluster, read) in clusters.into_iter().zip(reads) {
        let (kind, live) = read?;
        let site = site_for_set(plan, set, cluster, kind, live, target)?;
        let want = set.weights.resolve(&site.route.destinations).map_err(|e| {
            usage(
                "WEIGHTS",
                format!(
                    "{e}: route {} of {} has {}",
                    site.route.at,
                    site.describe(),
                    site.route.describe()
                ),
            )
        })?;
        if let Some(first) = sites.first() {
            same_route(first, &site)?;
        }
        site::refuse_foreign_owner(&site)?;
        finals.push(want);
        sites.push(site);
    }
    Ok((sites, finals))
}

/// One cluster's site: the VirtualService read, or the one `--create` makes.
fn site_for_set(
    plan: &Plan,
    set: &SetPlan,
    cluster: Cluster,
    kind: Kind,
    live: Option<VirtualService>,
    target: &Target,
) -> Result<Site> {
    match (live, &set.create) {
        (Some(vs), create) => {
            let route = route::select(&vs, plan.route.as_ref())
                .map_err(|e| site::route_error(e, &vs, &cluster.context))?;
            if let Some(c) = create {
                check_existing_matches(&vs, &route, c, &cluster.context)?;
            }
            let force = plan.write.force_conflicts;
            Ok(Site::existing(cluster, kind, vs, route, force))
        }
        (None, Some(c)) => Ok(Site::to_create(cluster, kind, c)),
        (None, None) => Err(facts::not_found(&cluster, target, true)),
    }
}

/// Every context must route to as many destinations as the first.
fn same_route(first: &Site, site: &Site) -> Result<()> {
    if first.route.destinations.len() == site.route.destinations.len() {
        return Ok(());
    }
    Err(usage(
        "--context",
        format!(
            "the route differs between contexts: {} has {} destinations ({}), {} has {} ({})",
            first.context(),
            first.route.destinations.len(),
            first.route.describe(),
            site.context(),
            site.route.destinations.len(),
            site.route.describe()
        ),
    ))
}

fn check_existing_matches(
    vs: &VirtualService,
    route: &Route,
    c: &Create,
    context: &str,
) -> Result<()> {
    let same = route.destinations.len() == c.to.len()
        && route
            .destinations
            .iter()
            .zip(&c.to)
            .all(|(d, h)| d.host == *h || d.host.split('.').next() == h.split('.').next());
    if same {
        return Ok(());
    }
    Err(usage(
        "--to",
        format!(
            "VirtualService {} already exists in context {context} with destinations {}: drop --create, or use another TARGET",
            site::ns_name(vs),
            route.describe()
        ),
    ))
}

/// `--dry-run=client`: the objects every step would write (`-o`), else the table, the step
/// plan and the checks; nothing is written.
fn dry_run(walk: &Walk<'_>, sites: &[Site], io: &mut Io) -> Result<()> {
    let (plan, set, plans) = (walk.plan, walk.set, &walk.plans);
    let steps = walk.steps();
    let create = set.create.as_ref();
    let mut objs = Vec::new();
    for k in 0..steps {
        for ((site, p), prev) in sites.iter().zip(plans).zip(&walk.previous) {
            if site.live.is_some() && site.route.weights == p[k] {
                continue;
            }
            objs.push(site.desired(&p[k], prev.as_deref(), create));
        }
    }
    if let Some(format) = plan.output() {
        return output::print_objects(&mut io.out, format, &objs);
    }
    let finals: Vec<Vec<u32>> = plans.iter().map(|p| p[steps - 1].clone()).collect();
    report::print_table(sites, &finals, io)?;
    if steps > 1 {
        writeln!(io.out)?;
        let contexts = Walk::contexts(sites);
        io.out
            .write_all(report::step_plan(&contexts, plans, &walk.interval()).as_bytes())?;
    }
    if let Some(a) = &set.analysis {
        let gates = walk::make_gates(a, sites, plans)?;
        writeln!(io.out)?;
        io.out
            .write_all(gate::describe(&gates, &a.checks, a.window).as_bytes())?;
    }
    io.note("(dry run: nothing was written)")?;
    Ok(())
}
