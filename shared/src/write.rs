//! Writing a set of objects to one cluster all-or-nothing: apply or delete each in order, and on
//! a failure put back what was already changed, so a cluster never stays half-written.

use anyhow::Result;
use serde_json::{json, Map, Value};

use std::sync::Arc;
use std::time::Duration;

use crate::api::{Applied, Cluster, InDoubt, Outcome, Stale, WriteMode};
use crate::objects::{self, Kind};

/// How many times a compare-and-swap is re-read and retried before giving up: enough for the
/// VMs of one autoscaling group registering at once (each round, one of them wins).
const CAS_ATTEMPTS: usize = 64;

/// Recomputes a read-modify-write from the object as it is now (`None`: absent); `None` back
/// means there is nothing left to change.
#[derive(Clone)]
pub struct Rebase(pub Arc<RebaseFn>);

/// The function behind a [`Rebase`].
pub type RebaseFn = dyn Fn(Option<&Value>) -> Option<Step> + Send + Sync;

impl std::fmt::Debug for Rebase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rebase")
    }
}

/// One change to make.
#[derive(Debug, Clone)]
pub enum Step {
    /// Server-side apply `desired`; `existing` is what the read found (None: absent).
    Apply {
        /// The object to apply.
        desired: Value,
        /// The object as read before the write.
        existing: Option<Value>,
    },
    /// Delete `existing`.
    Delete {
        /// The object as read before the delete.
        existing: Value,
    },
    /// A read-modify-write of a list other writers change too (a ServiceEntry's endpoints):
    /// `step` is sent only while the object is still at the resourceVersion it was computed
    /// from; when another writer got there first, the object is re-read and `rebase` computes
    /// the step again from what is there now.
    Cas {
        /// The write computed from the first read.
        step: Box<Step>,
        /// The object's kind, namespace and name, for the re-read.
        kind: Kind,
        /// Namespace of the object.
        namespace: Option<String>,
        /// Name of the object.
        name: String,
        /// Computes the write again from a fresh read.
        rebase: Rebase,
    },
}

impl Step {
    /// An apply step.
    pub fn apply(desired: Value, existing: Option<Value>) -> Self {
        Step::Apply { desired, existing }
    }
}

/// Runs the steps in order. On the first failure, undoes the finished steps in reverse and
/// returns an error that says what failed and in what state the cluster was left.
pub async fn execute(cluster: &Cluster, steps: Vec<Step>, mode: WriteMode) -> Result<Vec<Applied>> {
    let mut done: Vec<(Step, Applied)> = Vec::new();
    for step in steps {
        let (step, result) = run_step(cluster, step, mode).await;
        match result {
            Ok(applied) => done.push((step, applied)),
            Err(err) => {
                if err.downcast_ref::<InDoubt>().is_some() {
                    // It may have landed: undo it too (undoing a write that never landed is a no-op).
                    let assumed = assumed_outcome(&step);
                    done.push((step, assumed));
                }
                let undo = rollback(cluster, &done, mode).await;
                return Err(err.context(undo));
            }
        }
    }
    Ok(done.into_iter().map(|(_, a)| a).collect())
}

/// Sends one step; returns the step that was finally sent (a CAS may have been recomputed), for
/// the rollback.
async fn run_step(cluster: &Cluster, step: Step, mode: WriteMode) -> (Step, Result<Applied>) {
    let Step::Cas {
        step,
        kind,
        namespace,
        name,
        rebase,
    } = step
    else {
        let result = send(cluster, &step, mode, false).await;
        return (step, result);
    };
    let mut current = *step;
    for attempt in 1.. {
        let result = send(cluster, &current, mode, true).await;
        match result {
            Err(e) if e.downcast_ref::<Stale>().is_some() && attempt < CAS_ATTEMPTS => {
                // Spread the retries of writers that collided, so one of them wins each round.
                let jitter = (std::process::id() as u64 * 7 + attempt as u64 * 13) % 40;
                tokio::time::sleep(Duration::from_millis(5 + jitter)).await;
                let now = match cluster.get(&kind, namespace.as_deref(), &name).await {
                    Ok(now) => now,
                    Err(e) => return (current, Err(e)),
                };
                match (rebase.0)(now.as_ref()) {
                    Some(next) => current = next,
                    None => {
                        let object = now.unwrap_or(Value::Null);
                        let unchanged = Applied {
                            object: object.clone(),
                            outcome: Outcome::Unchanged,
                        };
                        let step = Step::Apply {
                            desired: object.clone(),
                            existing: Some(object),
                        };
                        return (step, Ok(unchanged));
                    }
                }
            }
            other => return (current, other),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Sends an apply or a delete; with `cas`, only while the object is at the resourceVersion it
/// was read at.
async fn send(cluster: &Cluster, step: &Step, mode: WriteMode, cas: bool) -> Result<Applied> {
    // A dry run changes nothing another writer could race with.
    let cas = cas && mode.dry_run == crate::cli::DryRun::None;
    match step {
        Step::Apply { desired, existing } if cas => {
            cas_apply(cluster, desired, existing.as_ref(), mode).await
        }
        Step::Apply { desired, existing } => {
            cluster.apply_over(desired, existing.as_ref(), mode).await
        }
        Step::Delete { existing } => {
            let rv = Some(objects::resource_version(existing)).filter(|rv| cas && !rv.is_empty());
            delete_at(cluster, existing, rv, mode).await
        }
        Step::Cas { step, .. } => Box::pin(send(cluster, step, mode, true)).await,
    }
}

/// A server-side apply that lands only on the object as it was read: created with a POST when
/// it was absent (409 if another writer created it first), else applied with its
/// resourceVersion as the precondition. It forces ownership: having seen the whole current
/// list, this writer may take it over. After a POST the apply is still sent, so that
/// kubectl-mesh owns the fields as an Apply beside the POST's Update entry now rather than on
/// the next run, which therefore changes nothing and says "unchanged".
async fn cas_apply(
    cluster: &Cluster,
    desired: &Value,
    existing: Option<&Value>,
    mode: WriteMode,
) -> Result<Applied> {
    let forced = WriteMode {
        force: true,
        ..mode
    };
    let (base, created) = match existing {
        Some(old) => (old.clone(), false),
        None => match cluster.create(desired, mode).await? {
            Ok(created) => (created, true),
            Err(_) => {
                return Err(Stale(format!(
                    "{} was created by another writer",
                    objects::describe(desired)
                ))
                .into())
            }
        },
    };
    let mut guarded = desired.clone();
    guarded["metadata"]["resourceVersion"] = json!(objects::resource_version(&base));
    let applied = match cluster.apply_over(&guarded, Some(&base), forced).await {
        Ok(applied) => applied,
        // The POST landed: whatever went wrong after it, the object is there to be undone.
        Err(e) if created && e.downcast_ref::<Stale>().is_none() => {
            return Err(InDoubt(crate::error::one_line(&e)).into())
        }
        Err(e) => return Err(e),
    };
    Ok(if created {
        Applied {
            outcome: Outcome::Created,
            ..applied
        }
    } else {
        applied
    })
}

fn assumed_outcome(step: &Step) -> Applied {
    match step {
        Step::Cas { step, .. } => assumed_outcome(step),
        Step::Apply { desired, existing } => Applied {
            object: desired.clone(),
            outcome: if existing.is_some() {
                Outcome::Configured
            } else {
                Outcome::Created
            },
        },
        Step::Delete { existing } => Applied {
            object: existing.clone(),
            outcome: Outcome::Deleted,
        },
    }
}

async fn delete_at(
    cluster: &Cluster,
    existing: &Value,
    resource_version: Option<&str>,
    mode: WriteMode,
) -> Result<Applied> {
    remove(cluster, existing, resource_version, mode).await?;
    Ok(Applied {
        object: existing.clone(),
        outcome: Outcome::Deleted,
    })
}

/// Deletes `object` (at `resource_version`, when given); false when it was not there.
async fn remove(
    cluster: &Cluster,
    object: &Value,
    resource_version: Option<&str>,
    mode: WriteMode,
) -> Result<bool> {
    let kind = Kind::of(object)
        .ok_or_else(|| anyhow::anyhow!("unknown kind of {}", objects::describe(object)))?;
    cluster
        .delete_at(
            &kind,
            objects::namespace(object),
            objects::name(object),
            resource_version,
            mode,
        )
        .await
}

/// Undoes finished steps, newest first; returns a sentence for the error report.
async fn rollback(cluster: &Cluster, done: &[(Step, Applied)], mode: WriteMode) -> String {
    let changed: Vec<&(Step, Applied)> = done
        .iter()
        .filter(|(_, a)| a.outcome != Outcome::Unchanged)
        .collect();
    if changed.is_empty() {
        return "nothing was changed".to_string();
    }
    let mut restored = Vec::new();
    let mut failed = Vec::new();
    for (step, applied) in changed.into_iter().rev() {
        let what = crate::output::type_and_name(&applied.object);
        let result = match step {
            Step::Apply {
                existing: None,
                desired,
            } => match remove(cluster, desired, None, mode).await {
                // A write in doubt that never landed leaves nothing to undo, and is not reported.
                Ok(false) => continue,
                other => other.map(|_| ()),
            },
            // run_step records the step it finally sent, never the Cas wrapper.
            Step::Cas { .. } => Ok(()),
            Step::Apply {
                existing: Some(old),
                ..
            }
            | Step::Delete { existing: old } => cluster
                .apply_over(&restorable(old), Some(&applied.object), mode)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => restored.push(what),
            Err(e) => failed.push(format!("{what} ({})", crate::error::one_line(&e))),
        }
    }
    if failed.is_empty() && restored.is_empty() {
        "nothing was changed".to_string()
    } else if failed.is_empty() {
        format!(
            "rolled back {}; the cluster is as it was",
            restored.join(", ")
        )
    } else {
        format!(
            "rolled back {}; could NOT roll back {}: check these objects by hand",
            if restored.is_empty() {
                "nothing".to_string()
            } else {
                restored.join(", ")
            },
            failed.join(", ")
        )
    }
}

/// The part of an object kubectl-mesh can put back with server-side apply: identity, labels,
/// annotations and content, without the fields the server fills in.
pub fn restorable(old: &Value) -> Value {
    let mut meta = Map::new();
    for key in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = old["metadata"].get(key) {
            meta.insert(key.to_string(), v.clone());
        }
    }
    let mut obj = json!({"apiVersion": old["apiVersion"], "kind": old["kind"], "metadata": meta});
    for key in ["spec", "data", "binaryData", "subsets", "stringData"] {
        if let Some(v) = old.get(key) {
            obj[key] = v.clone();
        }
    }
    if old["kind"] == "Service" {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.retain(|k, _| {
                matches!(k.as_str(), "ports" | "selector" | "type" | "externalName")
            });
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restorable_keeps_content_not_bookkeeping() {
        let old = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x", "namespace": "d", "uid": "u", "resourceVersion": "5", "labels": {"a": "b"}, "managedFields": []},
            "spec": {"ports": [{"port": 80}], "clusterIP": "10.0.0.1", "selector": {"app": "x"}},
            "status": {}
        });
        let r = restorable(&old);
        assert_eq!(
            r,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "x", "namespace": "d", "labels": {"a": "b"}},
                "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}
            })
        );
    }
}
