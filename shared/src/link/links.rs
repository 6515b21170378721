//! Linking, pruning and unlinking for one source → target pair: read every fact once, reserve
//! addresses in one compare-and-swap, then apply the ServiceEntries concurrently.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use anyhow::Result;
use serde_json::Value;
use tokio::task::JoinSet;

use super::ledger::{self, Ledger};
use super::plan::{Plan, Selection};
use super::pool::Pool;
use super::service_entry::{self, Link, SourceService};
use crate::api::{Applied, Cluster, Outcome, WriteMode};
use crate::cli::{DryRun, OutputFormat};
use crate::error::MeshError;
use crate::gateway::{self, AddressSource, GatewayAddress, GatewayRef, MULTICLUSTER_PORT};
use crate::interrupt::Interrupt;
use crate::objects;
use crate::output;
use crate::table;
use crate::write::{undo, Undo, Undone};
use crate::Io;

/// How many ServiceEntries are applied at once.
const CONCURRENCY: usize = 16;

/// Settings shared by every direction of a run.
pub struct Options {
    /// The namespace of the Services, and of their ServiceEntries in the target.
    pub namespace: String,
    /// `--address-pool`.
    pub pool: Pool,
    /// `--gateway-service`.
    pub gateway: GatewayRef,
    /// `--gateway-address`.
    pub gateway_address: Option<GatewayAddress>,
    /// `--dry-run`, `--force-conflicts`.
    pub mode: WriteMode,
}

/// One line of the result table.
#[derive(Debug, Clone)]
struct Row {
    from: String,
    to: String,
    service: String,
    host: String,
    address: String,
    result: String,
}

/// Everything a run prints at the end.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    objects: Vec<Value>,
    notes: Vec<String>,
    warnings: Vec<String>,
    failures: Vec<String>,
    changed: bool,
    /// Keep the written objects (only `-o` prints them; 5,000 server objects are tens of MiB).
    keep_objects: bool,
}

impl Report {
    fn suffix(mode: WriteMode) -> &'static str {
        match mode.dry_run {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }

    /// A report; `keep_objects` when the objects are printed (`-o`).
    pub fn new(keep_objects: bool) -> Self {
        Report {
            keep_objects,
            ..Report::default()
        }
    }

    fn record(&mut self, applied: &Applied) {
        self.record_outcome(applied.outcome, Some(&applied.object));
    }

    fn record_outcome(&mut self, outcome: Outcome, object: Option<&Value>) {
        if outcome != Outcome::Unchanged {
            self.changed = true;
        }
        if let (true, true, Some(obj)) = (self.keep_objects, outcome != Outcome::Deleted, object) {
            self.objects.push(objects::for_display(obj.clone()));
        }
    }

    /// Prints notes and warnings to stderr, then the objects (`-o`) or the table to stdout;
    /// fails when some writes failed.
    pub fn finish(
        self,
        io: &mut Io,
        output: Option<OutputFormat>,
        two_way: bool,
        extra_lines: &[String],
    ) -> Result<()> {
        for n in &self.notes {
            io.note(n)?;
        }
        for w in &self.warnings {
            io.warn(w)?;
        }
        if let Some(f) = output {
            output::print_objects(&mut io.out, f, &self.objects)?;
        } else {
            if !self.rows.is_empty() {
                let (headers, rows): (Vec<&str>, Vec<Vec<String>>) = if two_way {
                    (
                        vec!["from", "to", "service", "host", "address", "result"],
                        self.rows
                            .iter()
                            .map(|r| {
                                vec![
                                    r.from.clone(),
                                    r.to.clone(),
                                    r.service.clone(),
                                    r.host.clone(),
                                    r.address.clone(),
                                    r.result.clone(),
                                ]
                            })
                            .collect(),
                    )
                } else {
                    (
                        vec!["service", "host", "address", "result"],
                        self.rows
                            .iter()
                            .map(|r| {
                                vec![
                                    r.service.clone(),
                                    r.host.clone(),
                                    r.address.clone(),
                                    r.result.clone(),
                                ]
                            })
                            .collect(),
                    )
                };
                write!(io.out, "{}", table::render(&headers, &rows))?;
            }
            for l in extra_lines {
                writeln!(io.out, "{l}")?;
            }
        }
        if !self.failures.is_empty() {
            anyhow::bail!(
                "{} write(s) failed: {}",
                self.failures.len(),
                self.failures.join("; ")
            );
        }
        Ok(())
    }

    /// Adds a line to stderr.
    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    /// Adds an object to the `-o` output.
    pub fn object(&mut self, obj: Value) {
        if self.keep_objects {
            self.objects.push(obj);
        }
    }
}

/// What the reads found for one direction.
struct Facts<'a> {
    src: &'a Cluster,
    dst: &'a Cluster,
    /// Names of every Service of the namespace in the source.
    all_services: BTreeSet<String>,
    /// The selected Services that can be linked.
    linkable: Vec<SourceService>,
    gateway: Option<GatewayAddress>,
    version: String,
    /// Every ServiceEntry of the target, in every namespace.
    ses: Vec<Value>,
}

fn is_api_server(svc: &Value) -> bool {
    objects::name(svc) == "kubernetes" && objects::namespace(svc) == Some("default")
}

/// The source side of a direction: every Service name of the namespace, the selected Services
/// that can be linked, the gateway address, and notes for stderr.
async fn read_source(
    src: &Cluster,
    plan: &Plan,
    opts: &Options,
    prune: bool,
) -> Result<(
    BTreeSet<String>,
    Vec<SourceService>,
    Option<GatewayAddress>,
    Report,
)> {
    let mut report = Report::default();
    let ns = opts.namespace.as_str();
    let svc_kind = objects::core("Service");
    let (selected, all_services): (Vec<Value>, BTreeSet<String>) = match &plan.selection {
        Selection::Selector(sel) => {
            let selected = src.list(&svc_kind, Some(ns), Some(sel.as_str())).await?;
            let all = if prune {
                src.list(&svc_kind, Some(ns), None)
                    .await?
                    .iter()
                    .map(|s| objects::name(s).to_string())
                    .collect()
            } else {
                selected
                    .iter()
                    .map(|s| objects::name(s).to_string())
                    .collect()
            };
            (selected, all)
        }
        other => {
            let svcs = src.list(&svc_kind, Some(ns), None).await?;
            let all = svcs.iter().map(|s| objects::name(s).to_string()).collect();
            let selected = match other {
                Selection::Names(names) => svcs
                    .into_iter()
                    .filter(|s| names.iter().any(|n| n == objects::name(s)))
                    .collect(),
                Selection::All => svcs,
                _ => Vec::new(),
            };
            (selected, all)
        }
    };
    let mut linkable = Vec::new();
    for svc in &selected {
        if is_api_server(svc) && !matches!(plan.selection, Selection::Names(_)) {
            continue; // The API server is reachable in every cluster; linking it only confuses.
        }
        match service_entry::source_service(svc) {
            Ok(s) => {
                if !s.skipped_ports.is_empty() {
                    report.note(format!(
                        "service/{} in {}: ports {} are not TCP and are left out",
                        s.name,
                        src.context,
                        s.skipped_ports.join(", ")
                    ));
                }
                linkable.push(s);
            }
            Err(why) => report.note(format!("skipped: {why} (context {})", src.context)),
        }
    }
    linkable.sort_by(|a, b| a.name.cmp(&b.name));
    let gateway = if linkable.is_empty() {
        None
    } else {
        Some(
            gateway_address(
                src,
                &opts.gateway,
                opts.gateway_address.as_ref(),
                &mut report,
            )
            .await?,
        )
    };
    Ok((all_services, linkable, gateway, report))
}

/// The target side of a direction: the served Istio version and every ServiceEntry, in every
/// namespace, without their managedFields (most of a listed object, and nothing here reads them).
async fn read_target(dst: &Cluster) -> Result<(String, Vec<Value>)> {
    let version = dst.istio_version().await?;
    let ses = dst
        .list(&objects::istio("ServiceEntry", &version), None, None)
        .await?
        .into_iter()
        .map(objects::for_display)
        .collect();
    Ok((version, ses))
}

/// Reads everything one direction needs; fails before any write when a prerequisite is missing.
async fn gather<'a>(
    src: &'a Cluster,
    dst: &'a Cluster,
    plan: &Plan,
    opts: &Options,
    prune: bool,
    report: &mut Report,
) -> Result<Facts<'a>> {
    // The two clusters are read at the same time: neither read depends on the other.
    let ((all_services, linkable, gateway, notes), (version, ses)) =
        tokio::try_join!(read_source(src, plan, opts, prune), read_target(dst))?;
    report.notes.extend(notes.notes);
    report.warnings.extend(notes.warnings);
    Ok(Facts {
        src,
        dst,
        all_services,
        linkable,
        gateway,
        version,
        ses,
    })
}

/// The source gateway's address: exit 1 when it has none, exit 3 when it lacks port 15443.
async fn gateway_address(
    src: &Cluster,
    gw: &GatewayRef,
    flag: Option<&GatewayAddress>,
    report: &mut Report,
) -> Result<GatewayAddress> {
    let svc = src.get(&objects::core("Service"), Some(&gw.namespace), &gw.name).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "gateway service {gw} not found in context {:?}: name the ingress gateway with --gateway-service NAME[.NAMESPACE]",
            src.context
        )
    })?;
    if !gateway::exposes_multicluster_port(&svc) {
        return Err(MeshError::Check(format!(
            "gateway service {gw} in context {:?} does not expose port {MULTICLUSTER_PORT}: .global traffic enters there; install the gateways with Istio's multicluster values (port {MULTICLUSTER_PORT} named tls), then check with kubectl mesh-link check",
            src.context
        ))
        .into());
    }
    match gateway::choose(&svc, flag) {
        Some((addr, source)) => {
            if source != AddressSource::Flag {
                if let Some(f) = flag.filter(|f| **f != addr) {
                    report.warnings.push(format!("--gateway-address {f} is not used: gateway service {gw} in {} has the load-balancer address {addr}", src.context));
                }
            }
            if source == AddressSource::LoadBalancerHostname {
                report.note(format!(
                    "gateway service {gw} in {} has the hostname {addr}: the endpoints keep the name, and Envoy resolves it (resolution DNS)",
                    src.context
                ));
            }
            Ok(addr)
        }
        None => anyhow::bail!(
            "gateway service {gw} in context {:?} has no load-balancer IP or hostname (status.loadBalancer is empty): wait for the load balancer, or pass --gateway-address IP|HOSTNAME",
            src.context
        ),
    }
}

/// One apply's outcome and the resourceVersion it left (the rollback's precondition), with the
/// server's object when it is kept for `-o`.
type ApplyResult = Result<(Outcome, String, Option<Value>)>;

/// Applies ServiceEntries with at most [`CONCURRENCY`] requests in flight; results in input
/// order. Each result is the outcome, with the server's object when `keep` (for `-o`).
async fn apply_all(
    dst: &Cluster,
    items: Vec<(Value, Option<Value>)>,
    mode: WriteMode,
    keep: bool,
    interrupt: Option<&Interrupt>,
) -> Vec<ApplyResult> {
    let n = items.len();
    let mut results: Vec<Option<ApplyResult>> = (0..n).map(|_| None).collect();
    let mut pending = items.into_iter().enumerate();
    let mut set = JoinSet::new();
    loop {
        while set.len() < CONCURRENCY {
            // After a signal the applies in flight finish, and no new one starts: the caller
            // then rolls back as for a failure.
            if let Some(sig) = interrupt.and_then(Interrupt::signal) {
                for (i, _) in pending.by_ref() {
                    results[i] = Some(Err(anyhow::anyhow!("interrupted by {sig}: not written")));
                }
                break;
            }
            let Some((i, (desired, existing))) = pending.next() else {
                break;
            };
            let c = dst.clone();
            set.spawn(async move {
                let r = c.apply_over(&desired, existing.as_ref(), mode).await;
                // Drop the server's copy as soon as possible unless it is printed.
                (
                    i,
                    r.map(|a| {
                        let rv = objects::resource_version(&a.object).to_string();
                        (a.outcome, rv, keep.then_some(a.object))
                    }),
                )
            });
        }
        match set.join_next().await {
            Some(Ok((i, r))) => results[i] = Some(r),
            Some(Err(e)) => {
                // A panicked or cancelled task: report it in the first free slot.
                if let Some(slot) = results.iter_mut().find(|r| r.is_none()) {
                    *slot = Some(Err(anyhow::anyhow!("apply task failed: {e}")));
                }
            }
            None => break,
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("apply task lost"))))
        .collect()
}

/// Puts back every entry a failed run wrote (or may have written, when no answer came), then
/// the namespace it created and the addresses it handed out; returns what the report should
/// say. An entry another writer changed since is left as it is, and said so.
async fn roll_back(
    dst: &Cluster,
    sent: &[(Value, Option<Value>)],
    results: &[ApplyResult],
    created_ns: Option<&Value>,
    fresh: &BTreeSet<String>,
) -> String {
    let mut failed = Vec::new();
    let mut left = Vec::new();
    for ((desired, current), result) in sent.iter().zip(results) {
        let (after, in_doubt) = match result {
            Ok((outcome, rv, _)) if *outcome != Outcome::Unchanged => {
                let mut after = desired.clone();
                after["metadata"]["resourceVersion"] = Value::String(rv.clone());
                (after, false)
            }
            Err(e) if crate::api::in_doubt(e) => (desired.clone(), true),
            _ => continue,
        };
        let u = Undo {
            before: current.as_ref(),
            after: Some(&after),
            in_doubt,
            put_back: None,
        };
        match undo(dst, u).await {
            Ok(Undone::Restored | Undone::NotLanded) => {}
            Ok(Undone::Left(why)) => {
                left.push(format!("{} ({why})", output::type_and_name(desired)))
            }
            Err(e) => failed.push(format!(
                "{} ({})",
                output::type_and_name(desired),
                crate::error::one_line(&e)
            )),
        }
    }
    if let Some(ns) = created_ns {
        match remove_created_namespace(dst, ns).await {
            Ok(None) => {}
            Ok(Some(why)) => left.push(format!("{} ({why})", output::type_and_name(ns))),
            Err(e) => failed.push(format!(
                "{} ({})",
                output::type_and_name(ns),
                crate::error::one_line(&e)
            )),
        }
    }
    if let Err(e) = ledger::release(dst, WriteMode::default(), fresh).await {
        failed.push(format!(
            "the address ledger ({})",
            crate::error::one_line(&e)
        ));
    }
    let ns_too = if created_ns.is_some() {
        ", the namespace it created deleted"
    } else {
        ""
    };
    let mut parts = Vec::new();
    if !left.is_empty() {
        parts.push(format!(
            "left as they are in {}: {}",
            dst.context,
            left.join(", ")
        ));
    }
    if !failed.is_empty() {
        parts.push(format!(
            "could NOT roll back in {}: {}",
            dst.context,
            failed.join(", ")
        ));
    }
    if parts.is_empty() {
        format!("nothing was linked into {}: the entries written were rolled back{ns_too} and their addresses released", dst.context)
    } else {
        format!("{}: check them by hand", parts.join("; "))
    }
}

/// Deletes the namespace a failed run created, while it holds nothing but what Kubernetes and
/// istiod put in every namespace: a namespace delete takes its contents with it, and someone
/// may have started using the new namespace meanwhile. `Some(reason)` when it was left.
async fn remove_created_namespace(dst: &Cluster, ns: &Value) -> Result<Option<String>> {
    let name = objects::name(ns);
    let automatic = ["kube-root-ca.crt", "istio-ca-root-cert"];
    for kind in ["Service", "Pod", "ConfigMap"] {
        let items = dst.list(&objects::core(kind), Some(name), None).await?;
        if let Some(item) = items
            .iter()
            .find(|i| !(kind == "ConfigMap" && automatic.contains(&objects::name(i))))
        {
            return Ok(Some(format!(
                "it holds {} now, so it was not deleted",
                output::type_and_name(item)
            )));
        }
    }
    let u = Undo {
        before: None,
        after: Some(ns),
        in_doubt: false,
        put_back: None,
    };
    Ok(match undo(dst, u).await? {
        Undone::Left(why) => Some(why),
        _ => None,
    })
}

fn outcome_text(outcome: Outcome, mode: WriteMode) -> String {
    format!("{}{}", outcome.word(), Report::suffix(mode))
}

/// A pool outside 240.0.0.0/4 may hold addresses real workloads have: warn, and refuse it when
/// a Service of a target cluster already has a cluster IP in it (its traffic would go to the
/// remote cluster instead), before anything is written.
async fn check_pool(facts: &[Facts<'_>], opts: &Options, report: &mut Report) -> Result<()> {
    if !opts.pool.routable() {
        return Ok(());
    }
    report.warnings.push(format!(
        "--address-pool {} is routable: a .global address there hides any pod, Service or VM that has it from the calling cluster's sidecars; {} is never routed",
        opts.pool,
        super::pool::DEFAULT_POOL
    ));
    let mut seen = BTreeSet::new();
    for f in facts {
        if !seen.insert(f.dst.context.as_str()) {
            continue;
        }
        let services = f.dst.list(&objects::core("Service"), None, None).await?;
        for svc in &services {
            let ips = svc["spec"]["clusterIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&svc["spec"]["clusterIP"]))
                .filter_map(|v| v.as_str()?.parse::<std::net::Ipv4Addr>().ok());
            if let Some(ip) = ips.into_iter().find(|ip| opts.pool.contains(*ip)) {
                return Err(crate::error::usage(
                    "--address-pool",
                    format!(
                        "{} contains {ip}, the cluster IP of Service {}/{} in context {}: give a range no Service uses, such as {}",
                        opts.pool,
                        objects::namespace(svc).unwrap_or(""),
                        objects::name(svc),
                        f.dst.context,
                        super::pool::DEFAULT_POOL
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Links the selection from `facts.src` into `facts.dst`, then prunes when asked.
async fn write_direction(
    facts: Facts<'_>,
    opts: &Options,
    prune: bool,
    interrupt: Option<&Interrupt>,
    report: &mut Report,
) -> Result<()> {
    let Facts {
        src,
        dst,
        all_services,
        linkable,
        gateway,
        version,
        ses,
    } = facts;
    let ns = opts.namespace.as_str();
    let mode = opts.mode;
    let existing: BTreeMap<&str, &Value> = ses
        .iter()
        .filter(|se| objects::namespace(se) == Some(ns))
        .map(|se| (objects::name(se), se))
        .collect();

    // Hand-written entries by host, looked up once per Service (not a scan per Service).
    let mut foreign: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for se in ses.iter().filter(|se| !service_entry::is_link(se)) {
        for h in service_entry::hosts(se) {
            foreign.entry(h).or_default().push(se);
        }
    }

    // Services whose ServiceEntry name is taken by something that is not this pair's link.
    let mut to_link = Vec::new();
    for s in &linkable {
        let name = service_entry::name(&s.name);
        let host = service_entry::host(&s.name, ns);
        match existing.get(name.as_str()) {
            Some(se) if !service_entry::is_link(se) => {
                report.failures.push(format!("serviceentry {ns}/{name} in {} exists and was not created by kubectl mesh-link: left as it is", dst.context));
                report
                    .rows
                    .push(row(src, dst, &s.name, &host, "", "skipped: not managed"));
            }
            Some(se) if service_entry::source(se) != Some(src.context.as_str()) => {
                let other = service_entry::source(se).unwrap_or("?");
                report.failures.push(format!(
                    "{host} in {} is already linked from {other}: unlink it there first",
                    dst.context
                ));
                report.rows.push(row(
                    src,
                    dst,
                    &s.name,
                    &host,
                    "",
                    &format!("skipped: linked from {other}"),
                ));
            }
            _ => {
                for se in foreign.get(host.as_str()).into_iter().flatten() {
                    report.warnings.push(format!(
                        "{host} is also defined by serviceentry {}/{} in {} (not created by kubectl mesh-link): its address is kept; delete that entry once the link works",
                        objects::namespace(se).unwrap_or(""),
                        objects::name(se),
                        dst.context
                    ));
                }
                to_link.push(s);
            }
        }
    }

    let hosts: Vec<String> = to_link
        .iter()
        .map(|s| service_entry::host(&s.name, ns))
        .collect();
    let mut ledger_warnings = Vec::new();
    let pool = opts.pool;
    // What this run hands out, kept outside the closure so a ledger write with no answer (it may
    // have landed) can be taken back.
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let allocation = match ledger::update(
        dst,
        mode,
        |l| {
            let a = ledger::allocate(&pool, &hosts, &ses, l)?;
            tried = a.fresh.clone();
            Ok((Some(a.ledger.clone()), a))
        },
        &mut ledger_warnings,
    )
    .await
    {
        Ok(a) => a,
        Err(e) if crate::api::in_doubt(&e) => {
            let undo = match ledger::release(dst, mode, &tried).await {
                Ok(()) => "the addresses it may have recorded were released".to_string(),
                Err(r) => format!(
                    "releasing the addresses it may have recorded failed too: {}",
                    crate::error::one_line(&r)
                ),
            };
            return Err(e.context(undo));
        }
        Err(e) => return Err(e),
    };
    report.warnings.extend(ledger_warnings);
    report.warnings.extend(allocation.warnings.iter().cloned());

    let mut created_ns = None;
    if !to_link.is_empty() {
        let ensured = match dst.ensure_namespace(ns, true, mode).await {
            Ok(x) => x,
            Err(e) => {
                let _ = ledger::release(dst, mode, &allocation.fresh).await;
                return Err(e);
            }
        };
        if let Some(created) = ensured {
            report.note(format!(
                "namespace/{ns} created in {}{}",
                dst.context,
                Report::suffix(mode)
            ));
            report.record(&created);
            if mode.dry_run == DryRun::None {
                created_ns = Some(created.object);
            }
        }
    }

    let mut items = Vec::new();
    let mut unchanged = Vec::new();
    if let Some(gw) = &gateway {
        for s in &to_link {
            let host = service_entry::host(&s.name, ns);
            let Some(address) = allocation.addresses.get(&host).copied() else {
                continue;
            };
            let desired = service_entry::build(
                &Link {
                    service: s,
                    address,
                    gateway: gw,
                    source_context: &src.context,
                },
                &version,
            );
            let current = existing
                .get(service_entry::name(&s.name).as_str())
                .map(|v| (*v).clone());
            match &current {
                Some(cur) if service_entry::up_to_date(cur, &desired) => {
                    unchanged.push((s, host, address, desired))
                }
                _ => items.push((s, host, address, desired, current)),
            }
        }
    }
    for (s, host, address, desired) in unchanged {
        report.object(desired);
        report.rows.push(row(
            src,
            dst,
            &s.name,
            &host,
            &address.to_string(),
            &outcome_text(Outcome::Unchanged, mode),
        ));
    }
    let meta: Vec<(String, String, String)> = items
        .iter()
        .map(|(s, h, a, _, _)| (s.name.clone(), h.clone(), a.to_string()))
        .collect();
    let sent: Vec<(Value, Option<Value>)> =
        items.into_iter().map(|(_, _, _, d, c)| (d, c)).collect();
    let results = apply_all(dst, sent.clone(), mode, report.keep_objects, interrupt).await;
    if mode.dry_run == DryRun::None && results.iter().any(Result::is_err) {
        // All or nothing: take back the entries this run wrote and the addresses it handed out.
        let undo = roll_back(dst, &sent, &results, created_ns.as_ref(), &allocation.fresh).await;
        for ((service, host, address), result) in meta.into_iter().zip(&results) {
            let state = match result {
                Ok(_) => "rolled back".to_string(),
                Err(e) => {
                    report.failures.push(crate::error::one_line(e));
                    "failed".to_string()
                }
            };
            report
                .rows
                .push(row(src, dst, &service, &host, &address, &state));
        }
        report.failures.push(undo);
        report
            .rows
            .sort_by(|a, b| (&a.from, &a.service).cmp(&(&b.from, &b.service)));
        return Ok(());
    }
    for ((service, host, address), result) in meta.into_iter().zip(results) {
        match result {
            Ok((outcome, _, object)) => {
                report.record_outcome(outcome, object.as_ref());
                report.rows.push(row(
                    src,
                    dst,
                    &service,
                    &host,
                    &address,
                    &outcome_text(outcome, mode),
                ));
            }
            Err(e) => {
                report.failures.push(crate::error::one_line(&e));
                report
                    .rows
                    .push(row(src, dst, &service, &host, &address, "failed"));
            }
        }
    }
    report
        .rows
        .sort_by(|a, b| (&a.from, &a.service).cmp(&(&b.from, &b.service)));

    if prune {
        let gone: Vec<&Value> = ses
            .iter()
            .filter(|se| {
                objects::namespace(se) == Some(ns)
                    && service_entry::is_link(se)
                    && service_entry::source(se) == Some(src.context.as_str())
                    && service_entry::service_of(se).is_some_and(|svc| !all_services.contains(svc))
            })
            .collect();
        delete_links(src, dst, &version, &gone, mode, "pruned", report).await?;
    }
    Ok(())
}

fn row(
    src: &Cluster,
    dst: &Cluster,
    service: &str,
    host: &str,
    address: &str,
    result: &str,
) -> Row {
    Row {
        from: src.context.clone(),
        to: dst.context.clone(),
        service: service.to_string(),
        host: host.to_string(),
        address: address.to_string(),
        result: result.to_string(),
    }
}

/// Deletes linked ServiceEntries, then frees their ledger entries.
async fn delete_links(
    src: &Cluster,
    dst: &Cluster,
    version: &str,
    ses: &[&Value],
    mode: WriteMode,
    word: &str,
    report: &mut Report,
) -> Result<()> {
    let kind = objects::istio("ServiceEntry", version);
    let mut freed = BTreeSet::new();
    let mut deleted: Vec<(&Value, bool)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    for se in ses {
        match dst
            .delete(&kind, objects::namespace(se), objects::name(se), mode)
            .await
        {
            Ok(_) => {
                deleted.push((se, false));
                freed.extend(service_entry::hosts(se).into_iter().map(String::from));
            }
            Err(e) => {
                if crate::api::in_doubt(&e) {
                    deleted.push((se, true)); // it may be gone: put it back with the others
                }
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() && !freed.is_empty() {
        let mut warnings = Vec::new();
        let mut released = Ok(());
        // Releasing addresses is idempotent, so a write that got no answer is simply tried again.
        for _ in 0..2 {
            released = ledger::update(
                dst,
                mode,
                |l: &Ledger| {
                    let mut next = l.clone();
                    next.0.retain(|h, _| !freed.contains(h));
                    Ok((Some(next), ()))
                },
                &mut warnings,
            )
            .await;
            match &released {
                Err(e) if crate::api::in_doubt(e) => continue,
                _ => break,
            }
        }
        report.warnings.extend(warnings);
        if let Err(e) = released {
            failure = Some(e);
        }
    }
    let Some(err) = failure else {
        for (se, _) in &deleted {
            report.changed = true;
            push_row(
                src,
                dst,
                se,
                &format!("{word}{}", Report::suffix(mode)),
                report,
            );
        }
        return Ok(());
    };
    // All or nothing: put back what this run deleted, so the entries and the ledger agree.
    let mut not_restored = Vec::new();
    if mode.dry_run == DryRun::None {
        for (se, in_doubt) in &deleted {
            let u = Undo {
                before: Some(se),
                after: None,
                in_doubt: *in_doubt,
                put_back: None,
            };
            let why = match undo(dst, u).await {
                Ok(Undone::Restored | Undone::NotLanded) => continue,
                Ok(Undone::Left(why)) => why,
                Err(e) => crate::error::one_line(&e),
            };
            not_restored.push(format!("{} ({why})", objects::name(se)));
        }
    }
    for se in ses {
        push_row(src, dst, se, "failed: nothing unlinked", report);
    }
    report.failures.push(crate::error::one_line(&err));
    if !not_restored.is_empty() {
        report.failures.push(format!(
            "could NOT put back in {}: {}: check them by hand",
            dst.context,
            not_restored.join(", ")
        ));
    }
    Ok(())
}

fn push_row(src: &Cluster, dst: &Cluster, se: &Value, state: &str, report: &mut Report) {
    let service = service_entry::service_of(se)
        .unwrap_or(objects::name(se))
        .to_string();
    let host = service_entry::hosts(se)
        .first()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let address = service_entry::ipv4_addresses(se)
        .first()
        .map(|a| a.to_string())
        .unwrap_or_default();
    report
        .rows
        .push(row(src, dst, &service, &host, &address, state));
}

/// The directions of a run: `(source, target)` pairs.
fn directions<'a>(
    src: &'a Cluster,
    dst: &'a Cluster,
    two_way: bool,
) -> Vec<(&'a Cluster, &'a Cluster)> {
    if two_way {
        vec![(src, dst), (dst, src)]
    } else {
        vec![(src, dst)]
    }
}

/// Links (and prunes) in one or both directions. All reads of every direction happen before
/// the first write, so a missing Service or gateway stops the run with nothing changed.
pub async fn link(
    src: &Cluster,
    dst: &Cluster,
    plan: &Plan,
    opts: &Options,
    prune: bool,
    report: &mut Report,
) -> Result<()> {
    let mut facts = Vec::new();
    for (s, d) in directions(src, dst, plan.bidirectional) {
        facts.push(gather(s, d, plan, opts, prune, report).await?);
    }
    if let Selection::Names(names) = &plan.selection {
        for n in names {
            if !facts.iter().any(|f| f.all_services.contains(n)) {
                let where_ = facts
                    .iter()
                    .map(|f| f.src.context.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ");
                anyhow::bail!(
                    "service {n} not found in namespace {} of {where_}",
                    opts.namespace
                );
            }
        }
    }
    check_pool(&facts, opts, report).await?;
    for f in &facts {
        if f.linkable.is_empty() && !prune {
            report.note(format!(
                "No Services to link in namespace {} of {}.",
                opts.namespace, f.src.context
            ));
        }
    }
    // Signals never stop a run between two writes: see apply_all, and between directions.
    let interrupt = if opts.mode.dry_run == DryRun::None {
        Some(Interrupt::catch().await)
    } else {
        None
    };
    // The direction already written, if any: what a later failure or signal leaves behind.
    let mut written: Option<String> = None;
    for f in facts {
        let failures = report.failures.len();
        let direction = format!("{} to {}", f.src.context, f.dst.context);
        if let Some(sig) = interrupt.as_ref().and_then(Interrupt::signal) {
            let Some(w) = &written else {
                break; // nothing stays written: the report says what was rolled back
            };
            return Err(MeshError::Partial(format!(
                "interrupted by {sig}: {w} was written, {direction} was not: run the command again to finish, or --unlink to take {w} back"
            ))
            .into());
        }
        let result = write_direction(f, opts, prune, interrupt.as_ref(), report).await;
        if let Err(e) = result {
            if written.is_some() {
                return Err(MeshError::Partial(format!(
                    "{e:#} (the other direction was already written: run the command again)"
                ))
                .into());
            }
            return Err(e);
        }
        if report.failures.len() > failures {
            if let Some(w) = &written {
                // This direction was rolled back, the one before it stays: exit 4, saying so.
                return Err(MeshError::Partial(format!(
                    "{} ({direction} was rolled back; {w} stays written: run the command again to finish, or --unlink to take it back)",
                    report.failures[failures..].join("; ")
                ))
                .into());
            }
        } else if report.changed {
            written = Some(direction);
        }
    }
    Ok(())
}

/// Unlinks the selection in one or both directions.
pub async fn unlink(
    src: &Cluster,
    dst: &Cluster,
    plan: &Plan,
    opts: &Options,
    report: &mut Report,
) -> Result<()> {
    let ns = opts.namespace.as_str();
    let mut work = Vec::new();
    for (s, d) in directions(src, dst, plan.bidirectional) {
        let version = d.istio_version().await?;
        let ses = d
            .list(&objects::istio("ServiceEntry", &version), Some(ns), None)
            .await?;
        let wanted: Option<BTreeSet<String>> = match &plan.selection {
            Selection::Names(n) => Some(n.iter().cloned().collect()),
            Selection::Selector(sel) => Some(
                s.list(&objects::core("Service"), Some(ns), Some(sel.as_str()))
                    .await?
                    .iter()
                    .map(|v| objects::name(v).to_string())
                    .collect(),
            ),
            _ => None,
        };
        let links: Vec<Value> = ses
            .into_iter()
            .filter(|se| {
                service_entry::is_link(se)
                    && service_entry::source(se) == Some(s.context.as_str())
                    && service_entry::service_of(se)
                        .is_some_and(|svc| wanted.as_ref().is_none_or(|w| w.contains(svc)))
            })
            .collect();
        work.push((s, d, version, links, wanted));
    }
    if let Selection::Names(names) = &plan.selection {
        for n in names {
            let found = work.iter().any(|(_, _, _, links, _)| {
                links
                    .iter()
                    .any(|se| service_entry::service_of(se) == Some(n.as_str()))
            });
            if !found {
                report.warnings.push(format!(
                    "{} is not linked in namespace {ns}: nothing to unlink",
                    service_entry::host(n, ns)
                ));
            }
        }
    }
    for (s, d, version, links, _) in &work {
        if links.is_empty() && !matches!(plan.selection, Selection::Names(_)) {
            report.note(format!(
                "No links from {} in namespace {ns} of {}.",
                s.context, d.context
            ));
        }
        let refs: Vec<&Value> = links.iter().collect();
        let before = report.changed;
        if let Err(e) = delete_links(s, d, version, &refs, opts.mode, "deleted", report).await {
            if before {
                return Err(MeshError::Partial(format!(
                    "{e:#} (the other direction was already unlinked: run the command again)"
                ))
                .into());
            }
            return Err(e);
        }
    }
    report
        .rows
        .sort_by(|a, b| (&a.from, &a.service).cmp(&(&b.from, &b.service)));
    Ok(())
}
