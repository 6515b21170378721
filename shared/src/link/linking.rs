//! Linking (and pruning) for one source → target pair: read every fact once, reserve addresses
//! in one compare-and-swap, then apply the ServiceEntries concurrently, all or nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use anyhow::Result;
use serde_json::Value;

use super::facts::{self, Facts};
use super::ledger::{self, Allocation};
use super::plan::{Options, Plan, Selection};
use super::report::{outcome_text, Report};
use super::rollback;
use super::service_entry::{self, Link, Listed, SourceService};
use super::unlink::delete_links;
use crate::api::{Cluster, Outcome, WriteMode};
use crate::cli::DryRun;
use crate::error::MeshError;
use crate::interrupt::Interrupt;
use crate::write::concurrent::apply_all;

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
    let pairs = facts::directions(src, dst, plan.bidirectional);
    let facts = facts::gather_all(pairs, plan, opts, prune, report).await?;
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
    facts::check_pool(&facts, opts, report).await?;
    for f in &facts {
        if f.linkable.is_empty() && !prune {
            report.note(format!(
                "No Services to link in namespace {} of {}.",
                opts.namespace, f.src.context
            ));
        }
    }
    write_directions(facts, opts, prune, report).await
}

/// Writes the directions one after the other. A later direction's failure or a signal leaves
/// the earlier ones written, and says so (exit 4).
async fn write_directions(
    facts: Vec<Facts<'_>>,
    opts: &Options,
    prune: bool,
    report: &mut Report,
) -> Result<()> {
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

/// One ServiceEntry of a direction: its Service, host and address, the entry to apply and the
/// entry there now.
struct Entry<'s> {
    service: &'s SourceService,
    host: String,
    address: Ipv4Addr,
    desired: Value,
    current: Option<Value>,
}

/// Links the selection from `facts.src` into `facts.dst`, then prunes when asked.
async fn write_direction(
    facts: Facts<'_>,
    opts: &Options,
    prune: bool,
    interrupt: Option<&Interrupt>,
    report: &mut Report,
) -> Result<()> {
    let ns = opts.namespace.as_str();
    let pair = (facts.src, facts.dst);
    let existing: BTreeMap<&str, &Listed> = facts
        .ses
        .iter()
        .filter(|se| se.namespace() == Some(ns))
        .map(|se| (se.name(), se))
        .collect();
    let to_link = to_link(&facts, &existing, ns, report);
    let hosts: Vec<String> = to_link
        .iter()
        .map(|s| service_entry::host(&s.name, ns))
        .collect();
    let allocation = reserve(facts.dst, opts, &hosts, &facts.ses, report).await?;
    let created_ns = match to_link.is_empty() {
        true => None,
        false => ensure_namespace(facts.dst, ns, opts.mode, &allocation, report).await?,
    };
    let (unchanged, items) = entries(&facts, &to_link, &existing, &allocation, ns);
    for e in unchanged {
        report.object(e.desired);
        let result = outcome_text(Outcome::Unchanged, opts.mode);
        report.row(
            pair,
            &e.service.name,
            &e.host,
            &e.address.to_string(),
            &result,
        );
    }
    let fresh = &allocation.fresh;
    let done = Written {
        created_ns: created_ns.as_ref(),
        fresh,
    };
    if !write_entries(pair, items, opts.mode, done, interrupt, report).await {
        return Ok(());
    }
    if prune {
        let gone: Vec<&Listed> = facts
            .ses
            .iter()
            .filter(|se| {
                se.namespace() == Some(ns)
                    && service_entry::is_link(se)
                    && service_entry::source(se) == Some(facts.src.context.as_str())
                    && service_entry::service_of(se)
                        .is_some_and(|svc| !facts.all_services.contains(svc))
            })
            .collect();
        let (src, dst, version) = (facts.src, facts.dst, &facts.version);
        delete_links(src, dst, version, &gone, opts.mode, "pruned", report).await?;
    }
    Ok(())
}

/// The Services to link: those whose ServiceEntry name is free or this pair's link. A name
/// taken by something else is a failure, and a hand-written entry of the same host a warning.
fn to_link<'f>(
    facts: &'f Facts<'_>,
    existing: &BTreeMap<&str, &Listed>,
    ns: &str,
    report: &mut Report,
) -> Vec<&'f SourceService> {
    let (src, dst) = (facts.src, facts.dst);
    // Hand-written entries by host, looked up once per Service (not a scan per Service).
    let mut foreign: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
    for se in facts.ses.iter().filter(|se| !service_entry::is_link(se)) {
        for h in service_entry::hosts(se) {
            foreign.entry(h).or_default().push(se);
        }
    }
    let mut to_link = Vec::new();
    for s in &facts.linkable {
        let name = service_entry::name(&s.name);
        let host = service_entry::host(&s.name, ns);
        match existing.get(name.as_str()) {
            Some(se) if !service_entry::is_link(se) => {
                report.failures.push(format!("serviceentry {ns}/{name} in {} exists and was not created by kubectl mesh-link: left as it is", dst.context));
                report.row((src, dst), &s.name, &host, "", "skipped: not managed");
            }
            Some(se) if service_entry::source(se) != Some(src.context.as_str()) => {
                let other = service_entry::source(se).unwrap_or("?");
                report.failures.push(format!(
                    "{host} in {} is already linked from {other}: unlink it there first",
                    dst.context
                ));
                let result = format!("skipped: linked from {other}");
                report.row((src, dst), &s.name, &host, "", &result);
            }
            _ => {
                for se in foreign.get(host.as_str()).into_iter().flatten() {
                    report.warnings.push(format!(
                        "{host} is also defined by serviceentry {}/{} in {} (not created by kubectl mesh-link): its address is kept; delete that entry once the link works",
                        se.namespace().unwrap_or(""),
                        se.name(),
                        dst.context
                    ));
                }
                to_link.push(s);
            }
        }
    }
    to_link
}

/// Reserves the addresses of `hosts` in the target's ledger, in one compare-and-swap; a
/// reservation that got no answer is released again before the error is returned.
async fn reserve(
    dst: &Cluster,
    opts: &Options,
    hosts: &[String],
    ses: &[Listed],
    report: &mut Report,
) -> Result<Allocation> {
    let mut ledger_warnings = Vec::new();
    let pool = opts.pool;
    // What this run hands out, kept outside the closure so a ledger write with no answer (it may
    // have landed) can be taken back.
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let reserved = ledger::update(
        dst,
        opts.mode,
        |l| {
            let a = ledger::allocate(&pool, hosts, ses, l)?;
            tried = a.fresh.clone();
            Ok((Some(a.ledger.clone()), a))
        },
        &mut ledger_warnings,
    )
    .await;
    let allocation = match reserved {
        Ok(a) => a,
        Err(e) if rollback::in_doubt(&e) => {
            return Err(rollback::release_in_doubt(dst, opts.mode, &tried, e).await)
        }
        Err(e) => return Err(e),
    };
    report.warnings.extend(ledger_warnings);
    report.warnings.extend(allocation.warnings.iter().cloned());
    Ok(allocation)
}

/// Creates the namespace of the entries when it is missing; the namespace this run created
/// (for the rollback), or `None`. When that fails, the addresses reserved are released.
async fn ensure_namespace(
    dst: &Cluster,
    ns: &str,
    mode: WriteMode,
    allocation: &Allocation,
    report: &mut Report,
) -> Result<Option<Value>> {
    let ensured = match dst.ensure_namespace(ns, true, mode).await {
        Ok(x) => x,
        Err(e) => {
            let _ = ledger::release(dst, mode, &allocation.fresh).await;
            return Err(e);
        }
    };
    let Some(created) = ensured else {
        return Ok(None);
    };
    report.note(format!(
        "namespace/{ns} created in {}{}",
        dst.context,
        Report::suffix(mode)
    ));
    report.record(&created);
    Ok((mode.dry_run == DryRun::None).then_some(created.object))
}

/// The entries of the Services to link that have an address: those already up to date, and
/// those to write.
fn entries<'s>(
    facts: &Facts<'_>,
    to_link: &[&'s SourceService],
    existing: &BTreeMap<&str, &Listed>,
    allocation: &Allocation,
    ns: &str,
) -> (Vec<Entry<'s>>, Vec<Entry<'s>>) {
    let (mut unchanged, mut items) = (Vec::new(), Vec::new());
    let Some(gw) = &facts.gateway else {
        return (unchanged, items);
    };
    for s in to_link {
        let host = service_entry::host(&s.name, ns);
        let Some(address) = allocation.addresses.get(&host).copied() else {
            continue;
        };
        let link = Link {
            service: s,
            address,
            gateway: gw,
            source_context: &facts.src.context,
        };
        let desired = service_entry::entry(&link, &facts.version);
        let current = existing.get(service_entry::name(&s.name).as_str());
        let up_to_date = current.is_some_and(|cur| service_entry::up_to_date(cur, &desired));
        // The rollback puts back the entry exactly as it was read.
        let current = current.map(|cur| cur.served.clone());
        let desired = desired.to_value();
        let entry = Entry {
            service: s,
            host,
            address,
            desired,
            current,
        };
        match up_to_date {
            true => unchanged.push(entry),
            false => items.push(entry),
        }
    }
    (unchanged, items)
}

/// What a direction wrote before its entries, for their rollback.
struct Written<'a> {
    created_ns: Option<&'a Value>,
    fresh: &'a BTreeSet<String>,
}

/// Applies the entries concurrently and puts their results in the table; when one fails (and
/// it is no dry run), takes back every entry, the namespace and the addresses. False when it
/// rolled back.
async fn write_entries(
    pair: (&Cluster, &Cluster),
    items: Vec<Entry<'_>>,
    mode: WriteMode,
    before: Written<'_>,
    interrupt: Option<&Interrupt>,
    report: &mut Report,
) -> bool {
    let dst = pair.1;
    let meta: Vec<(String, String, String)> = items
        .iter()
        .map(|e| {
            (
                e.service.name.clone(),
                e.host.clone(),
                e.address.to_string(),
            )
        })
        .collect();
    let sent: Vec<(Value, Option<Value>)> =
        items.into_iter().map(|e| (e.desired, e.current)).collect();
    let results = apply_all(dst, sent.clone(), mode, report.keep_objects, interrupt).await;
    if mode.dry_run == DryRun::None && results.iter().any(Result::is_err) {
        // All or nothing: take back the entries this run wrote and the addresses it handed out.
        let undo = rollback::roll_back(dst, &sent, &results, before.created_ns, before.fresh).await;
        for ((service, host, address), result) in meta.into_iter().zip(&results) {
            let state = match result {
                Ok(_) => "rolled back".to_string(),
                Err(e) => {
                    report.failures.push(crate::error::one_line(e));
                    "failed".to_string()
                }
            };
            report.row(pair, &service, &host, &address, &state);
        }
        report.failures.push(undo);
        report.sort_rows();
        return false;
    }
    for ((service, host, address), result) in meta.into_iter().zip(results) {
        match result {
            Ok((outcome, _, object)) => {
                report.record_outcome(outcome, object.as_ref());
                let result = outcome_text(outcome, mode);
                report.row(pair, &service, &host, &address, &result);
            }
            Err(e) => {
                report.failures.push(crate::error::one_line(&e));
                report.row(pair, &service, &host, &address, "failed");
            }
        }
    }
    report.sort_rows();
    true
}
