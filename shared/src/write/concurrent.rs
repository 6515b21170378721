//! Many writes to one cluster at once: at most [`IN_FLIGHT`] requests in flight, results in
//! input order, no new write started once a signal came; and the concurrent take-back of such
//! a batch through [`super::undo`], the engine's one rollback rule. mesh-link writes its
//! ServiceEntries (thousands, in one direction) this way.

use anyhow::Result;
use futures::stream::{self, StreamExt};
use serde_json::Value;
use tokio::task::JoinSet;

use super::{undo, Undo, Undone};
use crate::api::{Cluster, Outcome, WriteMode};
use crate::interrupt::Interrupt;
use crate::objects;

/// How many writes to one cluster are sent at once: enough for mesh-link's 1,000 entries to
/// reach a real API server's ceiling in the benchmark (see the README's Performance section).
pub const IN_FLIGHT: usize = 16;

/// One apply's outcome and the resourceVersion it left (the rollback's precondition), with the
/// server's object only when it is kept for `-o`: thousands of whole objects are tens of MiB.
pub type ApplyResult = Result<(Outcome, String, Option<Value>)>;

/// Applies each `(desired, existing)` over what was read, with at most [`IN_FLIGHT`] requests
/// in flight; results in input order. Each result is the outcome, with the server's object
/// when `keep`. After a signal the applies in flight finish and no new one starts: the others
/// fail with "interrupted", and the caller takes back what was written, as for a failure.
pub async fn apply_all(
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
        while set.len() < IN_FLIGHT {
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

/// Takes back many writes to one cluster at once, each by the one rule of [`undo`], at most
/// [`IN_FLIGHT`] at a time; results in input order, so a report of what was left reads the
/// same however the requests interleaved.
pub async fn undo_all(dst: &Cluster, undos: Vec<Undo<'_>>) -> Vec<Result<Undone>> {
    stream::iter(undos.into_iter().map(|u| undo(dst, u)))
        .buffered(IN_FLIGHT)
        .collect()
        .await
}
