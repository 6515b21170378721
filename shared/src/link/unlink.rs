//! Unlinking (and the deletes of a prune): delete the linked ServiceEntries, then free their
//! addresses in the ledger; on a failure put the deleted entries back.

use std::collections::BTreeSet;

use anyhow::Result;
use serde_json::Value;

use super::facts;
use super::ledger::{self, Ledger};
use super::plan::{Options, Plan, Selection};
use super::report::Report;
use super::rollback;
use super::service_entry::{self, Listed};
use crate::api::{Cluster, WriteMode};
use crate::error::MeshError;
use crate::objects;

/// Unlinks the selection in one or both directions.
pub async fn unlink(
    src: &Cluster,
    dst: &Cluster,
    plan: &Plan,
    opts: &Options,
    report: &mut Report,
) -> Result<()> {
    let ns = opts.namespace.as_str();
    let pairs = facts::directions(src, dst, plan.bidirectional);
    let work = facts::linked(pairs, plan, ns).await?;
    if let Selection::Names(names) = &plan.selection {
        for n in names {
            let found = work.iter().any(|w| {
                w.links
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
    for w in &work {
        if w.links.is_empty() && !matches!(plan.selection, Selection::Names(_)) {
            report.note(format!(
                "No links from {} in namespace {ns} of {}.",
                w.src.context, w.dst.context
            ));
        }
        let refs: Vec<&Listed> = w.links.iter().collect();
        let before = report.changed;
        let deleted = delete_links(
            w.src, w.dst, &w.version, &refs, opts.mode, "deleted", report,
        );
        if let Err(e) = deleted.await {
            if before {
                return Err(MeshError::Partial(format!(
                    "{e:#} (the other direction was already unlinked: run the command again)"
                ))
                .into());
            }
            return Err(e);
        }
    }
    report.sort_rows();
    Ok(())
}

/// Deletes linked ServiceEntries, then frees their ledger entries; all or nothing.
pub(super) async fn delete_links(
    src: &Cluster,
    dst: &Cluster,
    version: &str,
    ses: &[&Listed],
    mode: WriteMode,
    word: &str,
    report: &mut Report,
) -> Result<()> {
    let kind = objects::istio("ServiceEntry", version);
    let mut freed = BTreeSet::new();
    let mut deleted: Vec<(&Listed, bool)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    for se in ses {
        let result = dst.delete(&kind, se.namespace(), se.name(), mode).await;
        // A delete in doubt may have landed: it is put back with the others.
        if let Some(in_doubt) = rollback::to_take_back(&result, |_| true) {
            deleted.push((*se, in_doubt));
        }
        match result {
            Ok(_) => freed.extend(service_entry::hosts(se).into_iter().map(String::from)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() && !freed.is_empty() {
        if let Err(e) = free(dst, mode, &freed, report).await {
            failure = Some(e);
        }
    }
    let Some(err) = failure else {
        for (se, _) in &deleted {
            report.changed = true;
            let state = format!("{word}{}", Report::suffix(mode));
            report.entry_row((src, dst), se, &state);
        }
        return Ok(());
    };
    // All or nothing: put back what this run deleted, so the entries and the ledger agree.
    // What is put back is each entry exactly as it was read.
    let served: Vec<(&Value, bool)> = deleted.iter().map(|(se, d)| (&se.served, *d)).collect();
    let not_restored = rollback::put_back_deleted(dst, &served, mode).await;
    for se in ses {
        report.entry_row((src, dst), se, "failed: nothing unlinked");
    }
    report.failures.push(crate::error::one_line(&err));
    report.failures.extend(not_restored);
    Ok(())
}

/// Frees the addresses of deleted links in the ledger.
async fn free(
    dst: &Cluster,
    mode: WriteMode,
    freed: &BTreeSet<String>,
    report: &mut Report,
) -> Result<()> {
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
            Err(e) if rollback::in_doubt(e) => continue,
            _ => break,
        }
    }
    report.warnings.extend(warnings);
    released
}
