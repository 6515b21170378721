//! The concurrent write of a direction's ServiceEntries: at most [`CONCURRENCY`] applies in
//! flight, results in input order, and no new apply started once a signal came.

use anyhow::Result;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::api::{Cluster, Outcome, WriteMode};
use crate::interrupt::Interrupt;
use crate::objects;

/// How many ServiceEntries are applied at once.
const CONCURRENCY: usize = 16;

/// One apply's outcome and the resourceVersion it left (the rollback's precondition), with the
/// server's object when it is kept for `-o`.
pub(super) type ApplyResult = Result<(Outcome, String, Option<Value>)>;

/// Applies ServiceEntries with at most [`CONCURRENCY`] requests in flight; results in input
/// order. Each result is the outcome, with the server's object when `keep` (for `-o`).
pub(super) async fn apply_all(
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
