//! One VirtualService route per cluster ("site"): read and validated in every cluster before any
//! write, written cluster by cluster, put back where written when a later cluster fails, and
//! read back to check that every cluster holds the weights sent.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{anyhow, Result};
use futures::future::join_all;
use serde_json::Value;

use super::analysis::{self, Gate, Step};
use super::build::{self, Previous};
use super::ownership::{self, Decision};
use super::plan::{Action, Create, Plan, SetPlan};
use super::report::{self, Change, StatusRow};
use super::route::{self, Route, RouteError, RouteKind, RouteRef, RouteSelector};
use super::steps::Interrupt;
use super::target::{self, Target};
use super::weights::{self, slash};
use crate::api::{self, Applied, Cluster, Outcome, WriteMode};
use crate::cli::{DryRun, KubeArgs};
use crate::duration::HumanDuration;
use crate::error::{usage, MeshError};
use crate::objects::{self, Kind};
use crate::output;
use crate::prompt::{self, Prompter};
use crate::write::across::{self, Failed, Restored};
use crate::write::{self, Undo, Undone};
use crate::Io;

/// One cluster's VirtualService and the route being split.
struct Site {
    cluster: Cluster,
    kind: Kind,
    namespace: String,
    name: String,
    /// As last read or written; `None` while it is still to be created.
    live: Option<Value>,
    /// The route with its current weights.
    route: Route,
    /// Weights before the command (`None`: created by it).
    start: Option<Vec<u32>>,
    /// The route list's owners, for the next write.
    decision: Decision,
}

impl Site {
    fn context(&self) -> &str {
        &self.cluster.context
    }

    fn describe(&self) -> String {
        format!(
            "VirtualService {}/{} in context {}",
            self.namespace,
            self.name,
            self.context()
        )
    }

    /// The object to apply for `weights` with the previous-weights annotation `previous`.
    fn desired(&self, weights: &[u32], previous: Option<&str>, create: Option<&Create>) -> Value {
        match (&self.live, create) {
            (Some(live), _) => build::weights_object(live, &self.route.at, weights, previous),
            (None, Some(c)) => build::created_object(
                &self.kind.version,
                &self.namespace,
                &c.name,
                &c.host,
                &c.to,
                weights,
            ),
            // Unreachable: a site without an object always comes from --create.
            (None, None) => Value::Null,
        }
    }
}

/// Entry point after parsing: connect to every context, then act.
pub(super) async fn run(
    plan: Plan,
    kube: &KubeArgs,
    io: &mut Io,
    prompter: &mut dyn Prompter,
) -> Result<()> {
    let (kc, targets) = api::resolve_targets(kube, &kube.contexts)?;
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|o| o.context == t.context) {
            return Err(usage("--context", format!("{} is given twice", t.context)));
        }
    }
    let clusters = Cluster::connect_all(&kc, &targets, kube).await?;
    match plan.action.clone() {
        Action::Status => status(&plan, &clusters, io).await,
        Action::Undo => undo(&plan, clusters, io, prompter).await,
        Action::Set(set) => split(&plan, &set, clusters, io, prompter).await,
    }
}

async fn vs_kind(cluster: &Cluster) -> Result<Kind> {
    Ok(objects::istio(
        "VirtualService",
        &cluster.istio_version().await?,
    ))
}

/// The VirtualService kind `cluster` serves and the VirtualService TARGET names there.
async fn read_target(cluster: &Cluster, target: &Target) -> Result<(Kind, Option<Value>)> {
    let kind = vs_kind(cluster).await?;
    let live = find(cluster, &kind, target).await?;
    Ok((kind, live))
}

/// [`read_target`] in every cluster at once. Each result is then used in the order of the
/// clusters, so the first failure met is the one reading them one after another would meet.
async fn read_targets(clusters: &[Cluster], target: &Target) -> Vec<Result<(Kind, Option<Value>)>> {
    join_all(clusters.iter().map(|c| read_target(c, target))).await
}

/// The VirtualService TARGET names in `cluster`; `None` when there is none.
async fn find(cluster: &Cluster, kind: &Kind, target: &Target) -> Result<Option<Value>> {
    let ns = cluster.namespace.as_str();
    match target {
        Target::Vs(name) => cluster.get(kind, Some(ns), name).await,
        Target::Host(host) => {
            let all = cluster.list(kind, Some(ns), None).await?;
            let mut hits: Vec<Value> = all
                .into_iter()
                .filter(|vs| target::matches(vs, target, ns))
                .collect();
            if hits.len() > 1 {
                // A gateway VirtualService may share the host; the split one is what counts.
                let split: Vec<Value> = hits
                    .iter()
                    .filter(|vs| !route::splittable(vs).is_empty())
                    .cloned()
                    .collect();
                if split.len() == 1 {
                    hits = split;
                }
            }
            if hits.len() > 1 {
                let names: Vec<String> = hits
                    .iter()
                    .map(|v| format!("vs/{}", objects::name(v)))
                    .collect();
                return Err(usage(
                    "TARGET",
                    format!(
                        "host {host} is in several VirtualServices in namespace {ns} (context {}): {}: name one as vs/NAME",
                        cluster.context,
                        names.join(", ")
                    ),
                ));
            }
            Ok(hits.pop())
        }
    }
}

fn not_found(cluster: &Cluster, target: &Target, create_hint: bool) -> anyhow::Error {
    let ns = &cluster.namespace;
    let hint = if create_hint {
        ": name one as vs/NAME, or create one with --create --to HOST_A,HOST_B"
    } else {
        ""
    };
    match target {
        Target::Vs(name) => anyhow!(
            "VirtualService {ns}/{name} not found in context {}",
            cluster.context
        ),
        Target::Host(h) => anyhow!(
            "no VirtualService in namespace {ns} (context {}) routes host {h}{hint}",
            cluster.context
        ),
    }
}

/// Without TARGET: the only candidate in the first cluster, a pick-list, or a usage error.
async fn choose(
    cluster: &Cluster,
    kind: &Kind,
    undo: bool,
    example_rest: &str,
    may_prompt: bool,
    prompter: &mut dyn Prompter,
) -> Result<Target> {
    let ns = cluster.namespace.as_str();
    let all = cluster.list(kind, Some(ns), None).await?;
    let with_previous: Vec<Value> = all
        .iter()
        .filter(|v| build::previous_raw(v).is_some())
        .cloned()
        .collect();
    let pool = if undo { &with_previous } else { &all };
    let cands = target::candidates(pool);
    let verb = if undo { "undo " } else { "" };
    match cands.len() {
        0 if undo => Err(usage(
            "TARGET",
            format!(
                "no VirtualService in namespace {ns} (context {}) has previous weights recorded by kubectl mesh-split",
                cluster.context
            ),
        )),
        0 => Err(usage(
            "TARGET",
            format!(
                "no VirtualService in namespace {ns} (context {}) has a route with two or more destinations: name one as vs/NAME or a host, or create one with TARGET WEIGHTS --create --to HOST_A,HOST_B",
                cluster.context
            ),
        )),
        // The result lines name it; a note here would precede a usage error's one line.
        1 => Ok(Target::Vs(cands[0].name.clone())),
        n if may_prompt => {
            let items: Vec<String> = cands.iter().map(|c| c.line()).collect();
            let i = prompter.select(
                &format!(
                    "VirtualService to {} ({n} in namespace {ns})",
                    if undo { "undo" } else { "split" }
                ),
                &items,
            )?;
            let c = cands
                .get(i)
                .ok_or_else(|| anyhow!("no VirtualService was picked"))?;
            Ok(Target::Vs(c.name.clone()))
        }
        n => {
            let list: Vec<String> = cands.iter().map(|c| c.line()).collect();
            Err(usage(
                "TARGET",
                format!(
                    "{n} VirtualServices in namespace {ns} (context {}) have a route with two or more destinations: {}; name one, e.g. kubectl mesh-split {verb}vs/{}{example_rest}",
                    cluster.context,
                    list.join("; "),
                    cands[0].name
                ),
            ))
        }
    }
}

/// `namespace/name` of an object.
fn ns_name(obj: &Value) -> String {
    format!(
        "{}/{}",
        objects::namespace(obj).unwrap_or(""),
        objects::name(obj)
    )
}

fn route_error(e: RouteError, vs: &Value, context: &str) -> anyhow::Error {
    let what = format!("VirtualService {} in context {context}", ns_name(vs));
    match e {
        RouteError::NoSuchRoute(routes) => {
            usage("--route", format!("no such route in {what}: {routes}"))
        }
        RouteError::NoneSplittable => usage(
            "TARGET",
            format!("{what} has no route with two or more destinations: nothing to split"),
        ),
        RouteError::Several(ids) => usage(
            "--route",
            format!(
                "{what} has several routes with two or more destinations ({}): pass --route",
                ids.join(", ")
            ),
        ),
    }
}

/// Refuses a route list another tool owns (checked while validating, before any output).
fn refuse_foreign_owner(site: &Site) -> Result<()> {
    let Decision::Refuse(from) = &site.decision else {
        return Ok(());
    };
    Err(anyhow!(
        "{}: spec.{} is managed by {}: change the weights where {} gets them from, or pass --force-conflicts to take them over",
        site.describe(),
        site.route.at.kind.field(),
        from.join(", "),
        if from.len() == 1 { "it" } else { "they" }
    ))
}

/// Says whose route list is taken over, once every cluster has passed validation.
fn ownership_notes(sites: &[Site], io: &mut Io) -> Result<()> {
    for site in sites {
        let field = format!("spec.{}", site.route.at.kind.field());
        match &site.decision {
            Decision::TakeOver(from) => io.note(format!(
                "{}: taking over {field} from {} (kubectl by hand)",
                site.describe(),
                from.join(", ")
            ))?,
            Decision::Forced(from) => io.warn(format!(
                "{}: {field} is managed by {}; --force-conflicts takes it over, and {} may change it back",
                site.describe(),
                from.join(", "),
                from.join(", ")
            ))?,
            Decision::Free | Decision::Refuse(_) => {}
        }
    }
    Ok(())
}

/// Reads every cluster for a split; validates the route and the weights in each.
async fn read_for_split(
    plan: &Plan,
    set: &SetPlan,
    clusters: Vec<Cluster>,
    target: &Target,
) -> Result<(Vec<Site>, Vec<Vec<u32>>)> {
    let mut sites = Vec::new();
    let mut finals = Vec::new();
    let reads = read_targets(&clusters, target).await;
    for (cluster, read) in clusters.into_iter().zip(reads) {
        let (kind, live) = read?;
        let namespace = cluster.namespace.clone();
        let site = match (live, &set.create) {
            (Some(vs), create) => {
                let route = route::select(&vs, plan.route.as_ref())
                    .map_err(|e| route_error(e, &vs, &cluster.context))?;
                if let Some(c) = create {
                    check_existing_matches(&vs, &route, c, &cluster.context)?;
                }
                let decision = ownership::decide(&vs, route.at.kind, plan.write.force_conflicts);
                Site {
                    name: objects::name(&vs).to_string(),
                    start: Some(route.weights.clone()),
                    live: Some(vs),
                    route,
                    decision,
                    cluster,
                    kind,
                    namespace,
                }
            }
            (None, Some(c)) => Site {
                name: c.name.clone(),
                start: None,
                live: None,
                route: Route {
                    at: RouteRef {
                        kind: RouteKind::Http,
                        index: 0,
                        name: None,
                    },
                    destinations: c.to.iter().map(|h| route::Destination::host(h)).collect(),
                    weights: Vec::new(),
                },
                decision: Decision::Free,
                cluster,
                kind,
                namespace,
            },
            (None, None) => return Err(not_found(&cluster, target, true)),
        };
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
            let first: &Site = first;
            if first.route.destinations.len() != site.route.destinations.len() {
                return Err(usage(
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
                ));
            }
        }
        refuse_foreign_owner(&site)?;
        finals.push(want);
        sites.push(site);
    }
    Ok((sites, finals))
}

fn check_existing_matches(vs: &Value, route: &Route, c: &Create, context: &str) -> Result<()> {
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
            ns_name(vs),
            route.describe()
        ),
    ))
}

/// Writes `want[i]` to every site in order, through the write across contexts: when a write
/// fails, or a signal comes, the sites already written are put back; with several contexts the
/// error is a partial failure (exit 4) after a state table.
async fn commit(
    sites: &mut [Site],
    want: &[Vec<u32>],
    previous: &[Option<String>],
    create: Option<&Create>,
    mode: WriteMode,
    interrupt: Option<&Interrupt>,
    io: &mut Io,
) -> Result<Vec<Applied>> {
    let writes: Vec<Writing> = sites
        .iter()
        .zip(want)
        .zip(previous)
        .map(|((site, want), previous)| Writing {
            site,
            want,
            previous: previous.as_deref(),
            create,
        })
        .collect();
    let how = across::Across {
        mode,
        interrupt,
        check_with: "kubectl mesh-split status",
    };
    let done = across::commit(&writes, &how, &mut *io.err).await?;
    if mode.dry_run == DryRun::None {
        for ((site, applied), w) in sites.iter_mut().zip(&done).zip(want) {
            site.live = Some(applied.object.clone());
            site.route.weights = w.clone();
            // Taken over (or forced): the list is ours now.
            site.decision = ownership::decide(&applied.object, site.route.at.kind, true);
        }
    }
    Ok(done)
}

/// One site's share of a write across contexts: its weights `want`, with the previous-weights
/// annotation `previous`.
struct Writing<'a> {
    site: &'a Site,
    want: &'a [u32],
    previous: Option<&'a str>,
    create: Option<&'a Create>,
}

impl across::Site for Writing<'_> {
    type Written = Applied;

    fn context(&self) -> &str {
        self.site.context()
    }

    fn before(&self) -> Option<String> {
        Some(if self.site.live.is_some() {
            slash(&self.site.route.weights)
        } else {
            "absent".to_string()
        })
    }

    fn left_at(&self) -> String {
        slash(self.want)
    }

    async fn write(&self, mode: WriteMode) -> std::result::Result<Applied, Failed<Applied>> {
        let site = self.site;
        if let Some(live) = &site.live {
            if site.route.weights == self.want {
                return Ok(Applied {
                    object: live.clone(),
                    outcome: Outcome::Unchanged,
                });
            }
        }
        let desired = site.desired(self.want, self.previous, self.create);
        let m = WriteMode {
            dry_run: mode.dry_run,
            force: site.decision.force(),
        };
        site.cluster
            .apply_over(&desired, site.live.as_ref(), m)
            .await
            .map_err(|err| {
                // No answer is not "not written": the write may have landed, so undo it too.
                let in_doubt = crate::api::in_doubt(&err).then(|| Applied {
                    object: desired.clone(),
                    outcome: if site.live.is_some() {
                        Outcome::Configured
                    } else {
                        Outcome::Created
                    },
                });
                Failed { err, in_doubt }
            })
    }

    fn unchanged(written: &Applied) -> bool {
        written.outcome == Outcome::Unchanged
    }

    /// Puts the site back as it was before the run, only while it still holds what the run
    /// wrote.
    async fn put_back(&self, applied: &Applied, in_doubt: bool) -> Result<Restored> {
        let site = self.site;
        let put_back = site.live.as_ref().map(|before| {
            build::weights_object(
                &applied.object,
                &site.route.at,
                &site.route.weights,
                build::previous_raw(before),
            )
        });
        let u = Undo {
            before: site.live.as_ref(),
            after: Some(&applied.object),
            in_doubt,
            put_back,
        };
        let (complete, state) = match write::undo(&site.cluster, u).await? {
            Undone::NotLanded => (true, "it did not land".to_string()),
            Undone::Restored if site.live.is_none() => {
                (true, "deleted again (this run created it)".to_string())
            }
            Undone::Restored => (true, format!("restored to {}", slash(&site.route.weights))),
            Undone::Left(why) => (false, format!("NOT restored: {why}")),
        };
        Ok(Restored { complete, state })
    }
}

/// Reads every site back, all at once, and compares with what was sent.
async fn read_back(sites: &[Site], want: &[Vec<u32>]) -> Result<()> {
    let mut diffs = Vec::new();
    let reads = join_all(sites.iter().map(|site| {
        site.cluster
            .get(&site.kind, Some(&site.namespace), &site.name)
    }))
    .await;
    for ((site, w), got) in sites.iter().zip(want).zip(reads) {
        let got = got?;
        let sel = RouteSelector::At(site.route.at.kind, site.route.at.index);
        let found = got
            .as_ref()
            .and_then(|vs| route::select(vs, Some(&sel)).ok());
        match found {
            None => diffs.push(format!("{}: the route is gone", site.describe())),
            Some(r) if r.destinations != site.route.destinations => diffs.push(format!(
                "{}: the destinations are now {}",
                site.describe(),
                r.describe()
            )),
            Some(r) if r.weights != *w => diffs.push(format!(
                "{}: reads {}, not {} (another controller may have changed it back)",
                site.describe(),
                slash(&r.weights),
                slash(w)
            )),
            Some(_) => {}
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(MeshError::Check(format!("read back: {}", diffs.join("; "))).into())
    }
}

fn result_lines(sites: &[Site], applied: &[Applied], dry_run: DryRun, io: &mut Io) -> Result<()> {
    for (site, a) in sites.iter().zip(applied) {
        io.note(format!(
            "{}: {}",
            site.context(),
            output::result_line(&a.object, a.outcome, dry_run)
        ))?;
    }
    Ok(())
}

fn print_table(sites: &[Site], after: &[Vec<u32>], io: &mut Io) -> Result<()> {
    let mut rows: Vec<Change> = Vec::new();
    for (site, a) in sites.iter().zip(after) {
        rows.extend(report::changes(
            site.context(),
            &site.route,
            site.start.as_deref(),
            a,
        ));
    }
    io.out.write_all(report::before_after(&rows).as_bytes())?;
    Ok(())
}

/// The TARGET given, else the one VirtualService of the first context that fits (a pick-list
/// on a terminal); `for_undo` looks for recorded previous weights instead of split routes.
async fn target_or_choose(
    plan: &Plan,
    clusters: &[Cluster],
    io: &Io,
    prompter: &mut dyn Prompter,
    for_undo: bool,
    hint: &str,
) -> Result<Target> {
    if let Some(t) = &plan.target {
        return Ok(t.clone());
    }
    let first = clusters
        .first()
        .ok_or_else(|| anyhow!("no context to work on"))?;
    let kind = vs_kind(first).await?;
    let may = prompt::may_prompt(io.terminal, plan.write.yes);
    choose(first, &kind, for_undo, hint, may, prompter).await
}

async fn split(
    plan: &Plan,
    set: &SetPlan,
    clusters: Vec<Cluster>,
    io: &mut Io,
    prompter: &mut dyn Prompter,
) -> Result<()> {
    let hint = format!(" {}", set.weights);
    let target = target_or_choose(plan, &clusters, io, prompter, false, &hint).await?;
    let (mut sites, finals) = read_for_split(plan, set, clusters, &target).await?;
    let create = set.create.as_ref();

    // The plan: per site, the weights at each step, the last being the final weights.
    let mut plans: Vec<Vec<Vec<u32>>> = Vec::new();
    for (site, fin) in sites.iter().zip(&finals) {
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
    if sites.len() > 1 {
        let starts: Vec<Option<&Vec<u32>>> = sites.iter().map(|s| s.start.as_ref()).collect();
        if starts.iter().any(|s| *s != starts[0]) {
            let parts: Vec<String> = sites
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s.context(),
                        s.start.as_deref().map_or("absent".to_string(), slash)
                    )
                })
                .collect();
            io.warn(format!(
                "the contexts do not agree now: {}",
                parts.join(", ")
            ))?;
        }
    }
    // What undo restores: the weights before this command, kept through every step, and
    // one change ID for every context of the run.
    let change = build::change_id();
    let previous: Vec<Option<String>> = sites
        .iter()
        .map(|s| {
            s.live
                .as_ref()
                .map(|_| Previous::of(&s.route).by(&change).to_annotation())
        })
        .collect();
    let steps = plans.first().map_or(0, Vec::len);
    let contexts: Vec<String> = sites.iter().map(|s| s.context().to_string()).collect();
    let interval = HumanDuration(set.interval).to_string();
    ownership_notes(&sites, io)?;
    let mode = WriteMode {
        dry_run: plan.write.dry_run,
        force: plan.write.force_conflicts,
    };

    if mode.dry_run == DryRun::Client {
        let mut objs = Vec::new();
        for k in 0..steps {
            for ((site, p), prev) in sites.iter().zip(&plans).zip(&previous) {
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
        print_table(&sites, &finals, io)?;
        if steps > 1 {
            writeln!(io.out)?;
            io.out
                .write_all(report::step_plan(&contexts, &plans, &interval).as_bytes())?;
        }
        if let Some(a) = &set.analysis {
            let gates = make_gates(a, &sites, &plans)?;
            writeln!(io.out)?;
            io.out
                .write_all(analysis::describe(&gates, &a.checks, a.window).as_bytes())?;
        }
        io.note("(dry run: nothing was written)")?;
        return Ok(());
    }

    let mut interrupt = if (steps > 1 || sites.len() > 1) && mode.dry_run == DryRun::None {
        Some(Interrupt::catch().await)
    } else {
        None
    };
    // The checks, asked once before anything is written: a Prometheus that cannot answer
    // stops here (exit 1). A server-side dry run moves no traffic, so it is not checked.
    let gates = match &set.analysis {
        Some(a) if mode.dry_run == DryRun::None => {
            let g = make_gates(a, &sites, &plans)?;
            for line in analysis::describe(&g, &a.checks, a.window).lines() {
                crate::vlog!(4, "{line}");
            }
            analysis::preflight(&g).await?;
            Some((g, a))
        }
        _ => None,
    };
    let starts: Vec<Vec<u32>> = sites.iter().map(|s| s.route.weights.clone()).collect();
    let mut objs = Vec::new();
    let mut reached: Vec<Vec<u32>> = starts.clone();
    for k in 0..steps {
        let want: Vec<Vec<u32>> = plans.iter().map(|p| p[k].clone()).collect();
        let applied = commit(
            &mut sites,
            &want,
            &previous,
            create,
            mode,
            interrupt.as_ref(),
            io,
        )
        .await?;
        if steps > 1 {
            io.note(format!(
                "Step {}/{steps}: {} in {}",
                k + 1,
                slash(&want[0]),
                contexts.join(", ")
            ))?;
        }
        result_lines(&sites, &applied, mode.dry_run, io)?;
        if mode.dry_run == DryRun::None {
            read_back(&sites, &want).await?;
        }
        objs.extend(applied.into_iter().map(|a| objects::for_display(a.object)));
        reached = want;
        let last = k + 1 == steps;
        if let (false, Some(int)) = (last, interrupt.as_mut()) {
            let label = format!(
                "Step {}/{steps} done; step {} ({}) in {interval}",
                k + 1,
                k + 2,
                slash(&plans[0][k + 1])
            );
            let bar = io.terminal;
            if !int.wait(set.interval, &label, bar, &mut io.err).await {
                return interrupted(plan, set, &target, &sites, &reached, k, steps, io);
            }
            if let Some((g, a)) = &gates {
                match analysis::check_step(g, &a.checks, set.interval, int, io).await? {
                    Step::Pass => {}
                    Step::Interrupted => {
                        return interrupted(plan, set, &target, &sites, &reached, k, steps, io)
                    }
                    Step::Fail(f) => return roll_back(&mut sites, &starts, &f, io).await,
                }
            }
        }
    }
    if let Some(format) = plan.output() {
        return output::print_objects(&mut io.out, format, &objs);
    }
    print_table(&sites, &reached, io)
}

/// Each cluster's Prometheus and the destinations its walk moves traffic to.
fn make_gates(
    a: &analysis::Analysis,
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
    failed: &analysis::Failure,
    io: &mut Io,
) -> Result<()> {
    analysis::print_failure(failed, io)?;
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
    result_lines(sites, &applied, DryRun::None, io)?;
    read_back(sites, starts)
        .await
        .map_err(|e| e.context(format!("{failed}; rolled back")))?;
    print_table(sites, starts, io)?;
    Err(MeshError::Gate(format!(
        "{failed}; every context is back at its weights from before the walk"
    ))
    .into())
}

#[allow(clippy::too_many_arguments)]
fn interrupted(
    plan: &Plan,
    set: &SetPlan,
    target: &Target,
    sites: &[Site],
    reached: &[Vec<u32>],
    k: usize,
    steps: usize,
    io: &mut Io,
) -> Result<()> {
    print_table(sites, reached, io)?;
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

async fn undo(
    plan: &Plan,
    clusters: Vec<Cluster>,
    io: &mut Io,
    prompter: &mut dyn Prompter,
) -> Result<()> {
    let target = target_or_choose(plan, &clusters, io, prompter, true, "").await?;
    let mut sites = Vec::new();
    let mut want = Vec::new();
    let mut previous = Vec::new();
    let mut recorded = Vec::new();
    let change = build::change_id();
    let reads = read_targets(&clusters, &target).await;
    for (cluster, read) in clusters.into_iter().zip(reads) {
        let (kind, live) = read?;
        let Some(vs) = live else {
            return Err(not_found(&cluster, &target, false));
        };
        let what = format!(
            "VirtualService {} in context {}",
            ns_name(&vs),
            cluster.context
        );
        let prev = match build::read_previous(&vs) {
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
        let route = route::select(&vs, Some(&sel)).map_err(|_| {
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
        want.push(prev.weights());
        // Undo records what it replaces, so a second undo goes forward again.
        previous.push(Some(Previous::of(&route).by(&change).to_annotation()));
        recorded.push((cluster.context.clone(), slash(&route.weights), prev.clone()));
        let decision = ownership::decide(&vs, route.at.kind, plan.write.force_conflicts);
        let site = Site {
            name: objects::name(&vs).to_string(),
            start: Some(route.weights.clone()),
            live: Some(vs),
            route,
            decision,
            namespace: cluster.namespace.clone(),
            cluster,
            kind,
        };
        refuse_foreign_owner(&site)?;
        sites.push(site);
    }
    refuse_separate_changes(&recorded)?;
    ownership_notes(&sites, io)?;
    let mode = WriteMode {
        dry_run: plan.write.dry_run,
        force: plan.write.force_conflicts,
    };
    if mode.dry_run == DryRun::Client {
        let objs: Vec<Value> = sites
            .iter()
            .enumerate()
            .filter(|(i, s)| s.route.weights != want[*i])
            .map(|(i, s)| s.desired(&want[i], previous[i].as_deref(), None))
            .collect();
        if let Some(format) = plan.output() {
            return output::print_objects(&mut io.out, format, &objs);
        }
        print_table(&sites, &want, io)?;
        io.note("(dry run: nothing was written)")?;
        return Ok(());
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
    result_lines(&sites, &applied, mode.dry_run, io)?;
    if mode.dry_run == DryRun::None {
        read_back(&sites, &want).await?;
    }
    if let Some(format) = plan.output() {
        let objs: Vec<Value> = applied
            .into_iter()
            .map(|a| objects::for_display(a.object))
            .collect();
        return output::print_objects(&mut io.out, format, &objs);
    }
    print_table(&sites, &want, io)
}

/// Weights of one route, per context.
type PerContext = Vec<(String, Vec<u32>)>;

/// The VirtualServices `status` shows in one cluster, each with the routes to show; `Err` with
/// the text of what is missing when there is none.
pub(super) async fn status_routes(
    plan: &Plan,
    cluster: &Cluster,
) -> Result<std::result::Result<Vec<(Value, Vec<Route>)>, String>> {
    let kind = vs_kind(cluster).await?;
    let ns = cluster.namespace.as_str();
    let vss: Vec<Value> = match &plan.target {
        Some(t) => find(cluster, &kind, t).await?.into_iter().collect(),
        None => cluster
            .list(&kind, Some(ns), None)
            .await?
            .into_iter()
            .filter(|v| !route::splittable(v).is_empty())
            .collect(),
    };
    if vss.is_empty() {
        return Ok(Err(match &plan.target {
            Some(t) => not_found(cluster, t, false).to_string(),
            None => format!(
                "no VirtualService in namespace {ns} (context {}) has a route with two or more destinations",
                cluster.context
            ),
        }));
    }
    Ok(Ok(vss
        .into_iter()
        .map(|vs| {
            let routes: Vec<Route> = match &plan.route {
                Some(sel) => route::routes(&vs)
                    .into_iter()
                    .filter(|r| sel.matches(&r.at))
                    .collect(),
                None => {
                    let s = route::splittable(&vs);
                    if s.is_empty() {
                        route::routes(&vs)
                    } else {
                        s
                    }
                }
            };
            (vs, routes)
        })
        .collect()))
}

async fn status(plan: &Plan, clusters: &[Cluster], io: &mut Io) -> Result<()> {
    if let Some(t) = &plan.traffic {
        return super::traffic::run(plan, t, clusters, io).await;
    }
    let mut rows: Vec<StatusRow> = Vec::new();
    let mut objs = Vec::new();
    let mut missing = Vec::new();
    // (vs, route) -> weights per context, to warn when contexts disagree.
    let mut seen: BTreeMap<(String, String), PerContext> = BTreeMap::new();
    let reads = join_all(clusters.iter().map(|c| status_routes(plan, c))).await;
    for (cluster, read) in clusters.iter().zip(reads) {
        let found = match read? {
            Ok(found) => found,
            Err(m) => {
                missing.push(m);
                continue;
            }
        };
        for (vs, routes) in &found {
            let prev = build::read_previous(vs).and_then(Result::ok);
            for r in routes {
                let recorded = prev
                    .as_ref()
                    .filter(|p| {
                        p.route == r.at.to_string() && p.destination_list() == r.destinations
                    })
                    .map(Previous::weights);
                seen.entry((objects::name(vs).to_string(), r.at.to_string()))
                    .or_default()
                    .push((cluster.context.clone(), r.weights.clone()));
                for (i, d) in r.destinations.iter().enumerate() {
                    rows.push(StatusRow {
                        context: cluster.context.clone(),
                        name: objects::name(vs).to_string(),
                        route: r.at.to_string(),
                        destination: d.to_string(),
                        weight: r.weights[i],
                        previous: recorded.as_ref().and_then(|p| p.get(i).copied()),
                    });
                }
            }
            objs.push(objects::for_display(vs.clone()));
        }
    }
    match plan.output() {
        Some(format) => output::print_objects(&mut io.out, format, &objs)?,
        None if !rows.is_empty() => io.out.write_all(report::status(&rows).as_bytes())?,
        None => {}
    }
    for ((name, route), per) in &seen {
        if per.len() > 1 && per.iter().any(|(_, w)| *w != per[0].1) {
            let parts: Vec<String> = per
                .iter()
                .map(|(c, w)| format!("{c} {}", slash(w)))
                .collect();
            io.warn(format!(
                "vs/{name} route {route}: the contexts do not agree: {}",
                parts.join(", ")
            ))?;
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(missing.join("; ")))
    }
}
