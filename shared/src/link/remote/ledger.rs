//! Which clusters hold a remote secret for a reader identity kubectl-mesh made: an annotation
//! on its ServiceAccount, updated by compare-and-swap, so that `--unlink` deletes the identity
//! only with its last user.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::build::{self, READER_SA};
use crate::objects;
use crate::write::Step;

/// The annotation: the cluster IDs of the targets, sorted, comma-separated.
pub const ANNOTATION: &str = "kubectl-mesh/remote-secrets";

/// The targets the ServiceAccount's ledger names.
pub fn users(sa: &Value) -> BTreeSet<String> {
    sa["metadata"]["annotations"][ANNOTATION]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The ServiceAccount with `target` added to (or taken from) the ledger of `now`; `None`
/// when the ledger already says so.
fn desired(ns: &str, now: Option<&Value>, target: &str, add: bool) -> Option<Value> {
    let mut set = now.map(users).unwrap_or_default();
    let changed = if add {
        set.insert(target.to_string())
    } else {
        set.remove(target)
    };
    if !changed && now.is_some() {
        return None;
    }
    let mut sa = build::service_account(ns);
    sa["metadata"]["annotations"] =
        json!({ ANNOTATION: set.into_iter().collect::<Vec<_>>().join(",") });
    Some(sa)
}

/// The write that records (`add`) or forgets `target` in the ServiceAccount's ledger: an apply
/// of the ServiceAccount (unchanged when the ledger already says so), sent only while the
/// ServiceAccount is as read, else recomputed from a fresh read.
pub fn record(ns: &str, existing: Option<Value>, target: &str, add: bool) -> Step {
    let first = desired(ns, existing.as_ref(), target, add).unwrap_or_else(|| {
        // Nothing to add: apply what is there, which the server reports unchanged.
        let mut sa = build::service_account(ns);
        if let Some(e) = &existing {
            sa["metadata"]["annotations"] =
                json!({ ANNOTATION: e["metadata"]["annotations"][ANNOTATION] });
        }
        sa
    });
    let (ns_owned, target_owned) = (ns.to_string(), target.to_string());
    let rebase = move |now: Option<&Value>| {
        Ok(desired(&ns_owned, now, &target_owned, add).map(|d| Step::apply(d, now.cloned())))
    };
    Step::cas(
        Step::apply(first, existing),
        objects::core("ServiceAccount"),
        Some(ns),
        READER_SA,
        rebase,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_adds_and_forgets_targets() {
        let none = desired("istio-system", None, "cluster2", true).expect("created");
        assert_eq!(users(&none), BTreeSet::from(["cluster2".to_string()]));
        let both = desired("istio-system", Some(&none), "cluster3", true).expect("added");
        assert_eq!(
            both["metadata"]["annotations"][ANNOTATION],
            "cluster2,cluster3"
        );
        assert!(desired("istio-system", Some(&both), "cluster2", true).is_none());
        let one = desired("istio-system", Some(&both), "cluster2", false).expect("forgot");
        assert_eq!(one["metadata"]["annotations"][ANNOTATION], "cluster3");
        assert!(objects::is_managed(&one));
    }
}
