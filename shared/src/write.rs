//! Writing a set of objects to one cluster all-or-nothing: apply or delete each in order, and on
//! a failure put back what was already changed, so a cluster never stays half-written.
//! [`across`] does the same for one write across several clusters.

pub mod across;
pub mod cas;
pub mod concurrent;

use anyhow::Result;
use serde_json::{json, Map, Value};

use std::sync::Arc;
use std::time::Duration;

use crate::api::{ApiError, Applied, Cluster, ErrorKind, Outcome, Verb, WriteMode};
use crate::objects::{self, Kind};

/// How many times a compare-and-swap is re-read and retried before giving up: enough for the
/// VMs of one autoscaling group registering at once (each round, one of them wins).
const CAS_ATTEMPTS: usize = 64;

/// The pause before a compare-and-swap's next attempt: short, and spread by process and attempt,
/// so that of the writers that collided one wins each round.
async fn backoff(attempt: usize) {
    let jitter = (u64::from(std::process::id()) * 7 + attempt as u64 * 13) % 40;
    tokio::time::sleep(Duration::from_millis(5 + jitter)).await;
}

/// Recomputes a read-modify-write from the object as it is now (`None`: absent); `None` back
/// means there is nothing left to change, and an error (the object read again is malformed)
/// stops the write with that error.
#[derive(Clone)]
pub struct Rebase(pub Arc<RebaseFn>);

/// The function behind a [`Rebase`].
pub type RebaseFn = dyn Fn(Option<&Value>) -> Result<Option<Step>> + Send + Sync;

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

    /// `step` as a compare-and-swap on the object `kind` `namespace`/`name`: sent only onto the
    /// object as it was read; when another writer got there first, the object is read again and
    /// `rebase` computes the step anew from what is there now.
    pub fn cas(
        step: Step,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        rebase: impl Fn(Option<&Value>) -> Result<Option<Step>> + Send + Sync + 'static,
    ) -> Self {
        Step::Cas {
            step: Box::new(step),
            kind,
            namespace: namespace.map(String::from),
            name: name.to_string(),
            rebase: Rebase(Arc::new(rebase)),
        }
    }
}

/// Runs the steps in order. On the first failure, undoes the finished steps in reverse and
/// returns an error that says what failed and in what state the cluster was left.
pub async fn execute(cluster: &Cluster, steps: Vec<Step>, mode: WriteMode) -> Result<Vec<Applied>> {
    Ok(execute_kept(cluster, steps, mode).await?.results())
}

/// [`execute`], keeping what was written so that it can be taken back later (when a later
/// cluster of a write across several fails).
pub async fn execute_kept(cluster: &Cluster, steps: Vec<Step>, mode: WriteMode) -> Result<Written> {
    let mut done: Vec<Done> = Vec::new();
    for step in steps {
        let (step, result) = run_step(cluster, step, mode).await;
        match result {
            Ok(applied) => done.push(Done {
                step,
                applied,
                in_doubt: false,
            }),
            Err(err) => {
                if crate::api::in_doubt(&err) {
                    // It may have landed: undo it too, if it did.
                    let applied = assumed_outcome(&step);
                    done.push(Done {
                        step,
                        applied,
                        in_doubt: true,
                    });
                }
                let undo = rollback(cluster, &done, mode).await;
                return Err(err.context(undo.sentence()));
            }
        }
    }
    Ok(Written { done, mode })
}

/// Sends the steps with `dryRun=All`: the server checks each (schema, admission, RBAC,
/// field ownership conflicts) and stores nothing. The first refusal is the error.
pub async fn check(cluster: &Cluster, steps: Vec<Step>, force: bool) -> Result<()> {
    let mode = WriteMode {
        dry_run: crate::cli::DryRun::Server,
        force,
    };
    for step in steps {
        run_step(cluster, step, mode).await.1?;
    }
    Ok(())
}

/// The writes one [`execute_kept`] made in one cluster.
pub struct Written {
    done: Vec<Done>,
    mode: WriteMode,
}

impl Written {
    /// What each write did, in order.
    pub fn results(&self) -> Vec<Applied> {
        self.done.iter().map(|d| d.applied.clone()).collect()
    }

    /// Whether nothing changed.
    pub fn unchanged(&self) -> bool {
        self.done
            .iter()
            .all(|d| d.applied.outcome == Outcome::Unchanged)
    }

    /// Puts the cluster back as it was before these writes, for a write across contexts.
    pub async fn put_back(&self, cluster: &Cluster) -> across::Restored {
        let r = self.undo(cluster).await;
        across::Restored {
            complete: r.complete(),
            state: r.sentence(),
        }
    }

    /// Takes every write back, newest first, each only while the object is still as this run
    /// left it.
    pub async fn undo(&self, cluster: &Cluster) -> Rollback {
        rollback(cluster, &self.done, self.mode).await
    }
}

/// A step that was sent, with what it did.
struct Done {
    step: Step,
    applied: Applied,
    in_doubt: bool,
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
            Err(e) if crate::api::conflict(&e) && attempt < CAS_ATTEMPTS => {
                backoff(attempt).await;
                let now = match cluster.get(&kind, namespace.as_deref(), &name).await {
                    Ok(now) => now,
                    Err(e) => return (current, Err(e)),
                };
                match (rebase.0)(now.as_ref()) {
                    Err(e) => return (current, Err(e)),
                    Ok(Some(next)) => current = next,
                    Ok(None) => {
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
                return Err(ApiError {
                    verb: Verb::Create,
                    object: objects::describe(desired),
                    context: cluster.context.clone(),
                    kind: ErrorKind::Conflict,
                    detail: "it was created by another writer".to_string(),
                }
                .into())
            }
        },
    };
    let mut guarded = desired.clone();
    guarded["metadata"]["resourceVersion"] = json!(objects::resource_version(&base));
    let applied = match cluster.apply_over(&guarded, Some(&base), forced).await {
        Ok(applied) => applied,
        // The POST landed: whatever went wrong after it, the object is there to be undone.
        Err(e) if created && !crate::api::conflict(&e) => {
            return Err(
                crate::api::reclassify(&e, ErrorKind::InDoubt).unwrap_or_else(|| {
                    ApiError {
                        verb: Verb::Apply,
                        object: objects::describe(desired),
                        context: cluster.context.clone(),
                        kind: ErrorKind::InDoubt,
                        detail: crate::error::one_line(&e),
                    }
                    .into()
                }),
            )
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
    let kind = kind_of(object)?;
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

/// What a rollback did: which objects are back, which were left to another writer, and which
/// could not be put back.
#[derive(Debug, Clone, Default)]
pub struct Rollback {
    dry_run: bool,
    restored: Vec<String>,
    left: Vec<String>,
    failed: Vec<String>,
}

impl Rollback {
    /// Whether the cluster is as it was before the run.
    pub fn complete(&self) -> bool {
        self.left.is_empty() && self.failed.is_empty()
    }

    /// A sentence for the error report.
    pub fn sentence(&self) -> String {
        let Rollback {
            dry_run,
            restored,
            left,
            failed,
        } = self;
        if *dry_run {
            return "nothing was changed (dry run)".to_string();
        }
        if restored.is_empty() && left.is_empty() && failed.is_empty() {
            return "nothing was changed".to_string();
        }
        let mut parts = Vec::new();
        if !restored.is_empty() || (left.is_empty() && failed.is_empty()) {
            parts.push(format!("rolled back {}", restored.join(", ")));
        }
        if !left.is_empty() {
            parts.push(format!("did not roll back {}", left.join(", ")));
        }
        if !failed.is_empty() {
            parts.push(format!("could NOT roll back {}", failed.join(", ")));
        }
        if self.complete() {
            format!("{}; the cluster is as it was", parts.join("; "))
        } else {
            format!("{}: check these objects by hand", parts.join("; "))
        }
    }
}

/// Undoes finished steps, newest first.
async fn rollback(cluster: &Cluster, done: &[Done], mode: WriteMode) -> Rollback {
    let mut r = Rollback::default();
    if mode.dry_run != crate::cli::DryRun::None {
        r.dry_run = true;
        return r;
    }
    for d in done.iter().rev() {
        if d.applied.outcome == Outcome::Unchanged {
            continue;
        }
        let what = crate::output::type_and_name(&d.applied.object);
        let (before, after) = match &d.step {
            Step::Apply { existing, .. } => (existing.as_ref(), Some(&d.applied.object)),
            Step::Delete { existing } => (Some(existing), None),
            // run_step records the step it finally sent, never the Cas wrapper.
            Step::Cas { .. } => continue,
        };
        let u = Undo {
            before,
            after,
            in_doubt: d.in_doubt,
            put_back: None,
        };
        match undo(cluster, u).await {
            Ok(Undone::Restored) => r.restored.push(what),
            Ok(Undone::NotLanded) => {}
            Ok(Undone::Left(why)) => r.left.push(format!("{what} ({why})")),
            Err(e) => r
                .failed
                .push(format!("{what} ({})", crate::error::one_line(&e))),
        }
    }
    r
}

/// One write of this run to take back.
#[derive(Debug, Clone)]
pub struct Undo<'a> {
    /// The object before the run (`None`: it was absent).
    pub before: Option<&'a Value>,
    /// What the run left: the server's answer, or what was sent when the write is in doubt
    /// (`None`: the run deleted it).
    pub after: Option<&'a Value>,
    /// The write got no clear answer, so it may not have landed.
    pub in_doubt: bool,
    /// What to apply to put `before` back (default: [`restorable`] of it).
    pub put_back: Option<Value>,
}

/// What taking back one write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undone {
    /// The object is as it was before the run.
    Restored,
    /// A write in doubt never landed: there was nothing to take back.
    NotLanded,
    /// Another writer changed the object after this run wrote it, so it was left as it is:
    /// putting the old copy back would overwrite their edit.
    Left(String),
}

/// Takes back one write, only while the object is still what this run left: the delete or
/// apply carries the resourceVersion of the run's own write as a precondition (re-read first
/// when the write is in doubt), and a re-creation is a POST that fails when someone else
/// created the object meanwhile.
pub async fn undo(cluster: &Cluster, u: Undo<'_>) -> Result<Undone> {
    let changed_since = || {
        Undone::Left(
            "changed by another writer since this run wrote it, so it was left as it is".into(),
        )
    };
    let guard = if u.in_doubt {
        let probe = u.after.or(u.before).unwrap_or(&Value::Null);
        let kind = kind_of(probe)?;
        let now = cluster
            .get(&kind, objects::namespace(probe), objects::name(probe))
            .await?;
        let untouched = match (&now, u.before) {
            (None, None) => true,
            (Some(n), Some(b)) => objects::resource_version(n) == objects::resource_version(b),
            _ => false,
        };
        if untouched {
            return Ok(Undone::NotLanded);
        }
        match (&now, u.after) {
            (Some(n), Some(a)) if carries(n, a) => Some(objects::resource_version(n).to_string()),
            (None, None) => None,
            _ => return Ok(changed_since()),
        }
    } else {
        u.after.map(|a| objects::resource_version(a).to_string())
    };
    let exact = WriteMode {
        dry_run: crate::cli::DryRun::None,
        force: true,
    };
    match (u.before, u.after) {
        (None, Some(after)) => {
            match remove(
                cluster,
                after,
                guard.as_deref().filter(|rv| !rv.is_empty()),
                exact,
            )
            .await
            {
                Ok(_) => Ok(Undone::Restored),
                Err(e) if crate::api::conflict(&e) => Ok(changed_since()),
                Err(e) => Err(e),
            }
        }
        (Some(before), Some(after)) => {
            let mut obj = u.put_back.unwrap_or_else(|| restorable(before));
            if let Some(rv) = guard.filter(|rv| !rv.is_empty()) {
                obj["metadata"]["resourceVersion"] = json!(rv);
            }
            match cluster.apply_over(&obj, Some(after), exact).await {
                Ok(_) => Ok(Undone::Restored),
                Err(e) if crate::api::conflict(&e) => Ok(changed_since()),
                Err(e) => Err(e),
            }
        }
        (Some(before), None) => {
            let obj = u.put_back.unwrap_or_else(|| restorable(before));
            match cluster.create(&obj, exact).await? {
                Ok(_) => Ok(Undone::Restored),
                Err(_) => Ok(Undone::Left(
                    "created again by another writer since this run deleted it, so it was left as it is".into(),
                )),
            }
        }
        (None, None) => Ok(Undone::NotLanded),
    }
}

fn kind_of(obj: &Value) -> Result<Kind> {
    Kind::of(obj).ok_or_else(|| anyhow::anyhow!("unknown kind of {}", objects::describe(obj)))
}

/// Whether `now` still holds everything `sent` set: every field of `sent` (bookkeeping aside)
/// is in `now` with the same value; maps may have more (server defaults), lists must match
/// item by item.
pub fn carries(now: &Value, sent: &Value) -> bool {
    fn sub(now: &Value, sent: &Value) -> bool {
        match (now, sent) {
            (Value::Object(n), Value::Object(s)) => {
                s.iter().all(|(k, v)| n.get(k).is_some_and(|nv| sub(nv, v)))
            }
            (Value::Array(n), Value::Array(s)) => {
                n.len() == s.len() && n.iter().zip(s).all(|(a, b)| sub(a, b))
            }
            _ => now == sent,
        }
    }
    sub(now, &restorable(sent))
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
