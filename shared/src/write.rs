//! Writing a set of objects to one cluster all-or-nothing: apply or delete each in order, and on
//! a failure put back what was already changed, so a cluster never stays half-written.

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::api::{Applied, Cluster, InDoubt, Outcome, WriteMode};
use crate::objects::{self, Kind};

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
        let result = match &step {
            Step::Apply { desired, existing } => {
                cluster.apply_over(desired, existing.as_ref(), mode).await
            }
            Step::Delete { existing } => delete(cluster, existing, mode).await,
        };
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

fn assumed_outcome(step: &Step) -> Applied {
    match step {
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

async fn delete(cluster: &Cluster, existing: &Value, mode: WriteMode) -> Result<Applied> {
    let kind = Kind::of(existing)
        .ok_or_else(|| anyhow::anyhow!("unknown kind of {}", objects::describe(existing)))?;
    cluster
        .delete(
            &kind,
            objects::namespace(existing),
            objects::name(existing),
            mode,
        )
        .await?;
    Ok(Applied {
        object: existing.clone(),
        outcome: Outcome::Deleted,
    })
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
            } => delete(cluster, desired, mode).await.map(|_| ()),
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
    if failed.is_empty() {
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
