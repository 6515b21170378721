//! Taking back what a failed `.global` run wrote, so that the entries and the address ledger
//! agree: the write engine takes the entries back, all at once and by its one rule (only while
//! the object is still as this run left it, see [`crate::write::concurrent::undo_all`]); this
//! decides which writes to take back ([`to_take_back`]), guards the namespace the run created,
//! releases the addresses, and words the report.

use std::collections::BTreeSet;

use anyhow::Result;
use serde_json::Value;

use super::ledger;
use crate::api::{Cluster, Outcome, WriteMode};
use crate::cli::DryRun;
use crate::objects;
use crate::output;
use crate::write::concurrent::{undo_all, ApplyResult};
use crate::write::{undo, Undo, Undone};

/// Whether a failed write may have landed all the same: no answer came, so it is taken back
/// if it did. The one place link asks the API layer this.
pub(super) fn in_doubt(err: &anyhow::Error) -> bool {
    crate::api::in_doubt(err)
}

/// Whether a failed run takes back a write, judged by its result: `Some(false)` when it landed
/// and `changed` something, `Some(true)` when it is in doubt (taken back only if it landed),
/// `None` when there is nothing to take back.
pub(super) fn to_take_back<T>(
    result: &Result<T>,
    changed: impl FnOnce(&T) -> bool,
) -> Option<bool> {
    match result {
        Ok(done) => changed(done).then_some(false),
        Err(e) => in_doubt(e).then_some(true),
    }
}

/// A write that was not taken back.
struct Missed {
    /// The object, as the report names it.
    what: String,
    why: String,
    /// The put-back failed (else another writer's change was left as it is).
    failed: bool,
}

impl Missed {
    fn line(&self) -> String {
        format!("{} ({})", self.what, self.why)
    }
}

/// Takes back the writes of a failed run at once, each named as the report names it; the ones
/// that could not be, in input order.
async fn take_back(dst: &Cluster, writes: Vec<(String, Undo<'_>)>) -> Vec<Missed> {
    let (names, undos): (Vec<String>, Vec<Undo<'_>>) = writes.into_iter().unzip();
    let done = undo_all(dst, undos).await;
    names
        .into_iter()
        .zip(done)
        .filter_map(|(what, r)| {
            let (why, failed) = match r {
                Ok(Undone::Restored | Undone::NotLanded) => return None,
                Ok(Undone::Left(why)) => (why, false),
                Err(e) => (crate::error::one_line(&e), true),
            };
            Some(Missed { what, why, failed })
        })
        .collect()
}

/// Puts back every entry a failed run wrote (or may have written, when no answer came), then
/// the namespace it created and the addresses it handed out; returns what the report should
/// say. An entry another writer changed since is left as it is, and said so.
pub(super) async fn roll_back(
    dst: &Cluster,
    sent: &[(Value, Option<Value>)],
    results: &[ApplyResult],
    created_ns: Option<&Value>,
    fresh: &BTreeSet<String>,
) -> String {
    // What each write left: what was sent, with the resourceVersion of the server's answer.
    let taken: Vec<(&Value, Option<&Value>, Value, bool)> = sent
        .iter()
        .zip(results)
        .filter_map(|((desired, current), result)| {
            let in_doubt = to_take_back(result, |(outcome, _, _)| *outcome != Outcome::Unchanged)?;
            let mut after = desired.clone();
            if let Ok((_, rv, _)) = result {
                after["metadata"]["resourceVersion"] = Value::String(rv.clone());
            }
            Some((desired, current.as_ref(), after, in_doubt))
        })
        .collect();
    let writes = taken
        .iter()
        .map(|(desired, before, after, in_doubt)| {
            let u = Undo {
                before: *before,
                after: Some(after),
                in_doubt: *in_doubt,
                put_back: None,
            };
            (output::type_and_name(desired), u)
        })
        .collect();
    let missed = take_back(dst, writes).await;
    let (mut left, mut failed): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for m in &missed {
        match m.failed {
            true => failed.push(m.line()),
            false => left.push(m.line()),
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
    rolled_back(dst, created_ns.is_some(), &left, &failed)
}

/// The report's sentence on a rollback of linked entries.
fn rolled_back(dst: &Cluster, created_ns: bool, left: &[String], failed: &[String]) -> String {
    let ns_too = if created_ns {
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

/// Puts back the entries a failed unlink or prune deleted (each with whether its delete is in
/// doubt), so the entries and the ledger agree; the failure line naming those that could not
/// be put back, if any.
pub(super) async fn put_back_deleted(
    dst: &Cluster,
    deleted: &[(&Value, bool)],
    mode: WriteMode,
) -> Option<String> {
    if mode.dry_run != DryRun::None {
        return None;
    }
    let writes = deleted
        .iter()
        .map(|(se, in_doubt)| {
            let u = Undo {
                before: Some(*se),
                after: None,
                in_doubt: *in_doubt,
                put_back: None,
            };
            (objects::name(se).to_string(), u)
        })
        .collect();
    let missed = take_back(dst, writes).await;
    if missed.is_empty() {
        return None;
    }
    let lines: Vec<String> = missed.iter().map(Missed::line).collect();
    Some(format!(
        "could NOT put back in {}: {}: check them by hand",
        dst.context,
        lines.join(", ")
    ))
}

/// After an address reservation that got no answer (it may have landed): releases the
/// addresses it tried to hand out, and says so on the error.
pub(super) async fn release_in_doubt(
    dst: &Cluster,
    mode: WriteMode,
    tried: &BTreeSet<String>,
    err: anyhow::Error,
) -> anyhow::Error {
    let undo = match ledger::release(dst, mode, tried).await {
        Ok(()) => "the addresses it may have recorded were released".to_string(),
        Err(r) => format!(
            "releasing the addresses it may have recorded failed too: {}",
            crate::error::one_line(&r)
        ),
    };
    err.context(undo)
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
