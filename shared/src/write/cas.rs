//! The one read-modify-write of the suite: read an object, compute what it should become, and
//! write that only over what was read (its resourceVersion); on a conflict, read again and
//! compute again. The `.global` address ledger and the DNS stub domain use it.

use anyhow::Result;
use serde_json::{json, Value};

use super::CAS_ATTEMPTS;
use crate::api::{Cluster, Outcome, WriteMode};
use crate::objects::{self, Kind};

/// What the object should become, given what it is now.
#[derive(Debug, Clone)]
pub enum Change {
    /// Nothing to write.
    Keep,
    /// Create it (when absent) or replace it with this.
    Write(Value),
    /// Delete it.
    Delete,
}

/// The result of an update.
#[derive(Debug, Clone)]
pub struct Updated {
    /// What the write did (`Unchanged` when nothing was written).
    pub outcome: Outcome,
    /// The object as written, or as read when kept; `None` when absent or deleted.
    pub object: Option<Value>,
}

/// Which object, and what was already read of it.
pub struct Target<'a> {
    /// Its kind.
    pub kind: &'a Kind,
    /// Its namespace.
    pub namespace: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// The object as the caller already read it (`Some(None)`: read and absent), so the first
    /// round needs no second read.
    pub read: Option<Option<Value>>,
}

/// Reads the object (unless already read), lets `change` compute what it should become, and
/// writes that guarded by the resourceVersion read: a create when it was absent (which fails if
/// someone created it meanwhile), a replace or a delete at that version. When another writer got
/// there first, it starts over from a fresh read, with a growing, spread-out pause.
pub async fn update_cas(
    cluster: &Cluster,
    target: Target<'_>,
    mode: WriteMode,
    mut change: impl FnMut(Option<&Value>) -> Result<Change>,
) -> Result<Updated> {
    let Target {
        kind,
        namespace,
        name,
        mut read,
    } = target;
    for attempt in 1..=CAS_ATTEMPTS {
        let current = match read.take() {
            Some(r) => r,
            None => cluster.get(kind, namespace, name).await?,
        };
        let landed = match (change(current.as_ref())?, &current) {
            (Change::Keep, _) | (Change::Delete, None) => {
                return Ok(Updated {
                    outcome: Outcome::Unchanged,
                    object: current,
                })
            }
            (Change::Delete, Some(now)) => {
                let rv = objects::resource_version(now);
                match cluster
                    .delete_at(kind, namespace, name, Some(rv), mode)
                    .await
                {
                    Ok(_) => Some((Outcome::Deleted, None)),
                    Err(e) if crate::api::conflict(&e) => None,
                    Err(e) => return Err(e),
                }
            }
            (Change::Write(obj), None) => cluster
                .create(&obj, mode)
                .await?
                .ok()
                .map(|o| (Outcome::Created, Some(o))),
            (Change::Write(mut obj), Some(now)) => {
                obj["metadata"]["resourceVersion"] = json!(objects::resource_version(now));
                cluster
                    .replace(&obj, mode)
                    .await?
                    .ok()
                    .map(|o| (Outcome::Configured, Some(o)))
            }
        };
        if let Some((outcome, object)) = landed {
            return Ok(Updated { outcome, object });
        }
        super::backoff(attempt).await;
    }
    anyhow::bail!(
        "{} {}{name} in context {:?} kept changing under this run ({CAS_ATTEMPTS} attempts): try again",
        kind.kind.to_ascii_lowercase(),
        namespace.map(|n| format!("{n}/")).unwrap_or_default(),
        cluster.context
    )
}
