//! Who owns a VirtualService's route list, read from `metadata.managedFields`.
//!
//! Istio's route lists (`spec.http`, `spec.tcp`, `spec.tls`) are atomic: a server-side apply of
//! one route's weights takes ownership of the whole list. When a GitOps tool or Flagger owns it,
//! changing weights behind its back starts a tug of war, so mesh-split refuses and names it.
//! Edits by hand through kubectl (client-side apply, edit, patch) are taken over.

use super::route::RouteKind;
use crate::istio::VirtualService;
use crate::objects::FIELD_MANAGER;

/// Field managers that are a person using kubectl, whose ownership is safe to take over.
pub const HAND_MANAGERS: [&str; 7] = [
    "kubectl",
    "kubectl-client-side-apply",
    "kubectl-edit",
    "kubectl-patch",
    "kubectl-replace",
    "kubectl-create",
    "before-first-apply",
];

/// Another field manager that owns the route list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `manager`.
    pub manager: String,
    /// `operation`: Apply or Update.
    pub operation: String,
}

impl Owner {
    /// Whether this is kubectl by hand.
    pub fn by_hand(&self) -> bool {
        HAND_MANAGERS.contains(&self.manager.as_str())
    }
}

/// Managers other than kubectl-mesh that own `spec.<kind>` of `vs`.
pub fn owners(vs: &VirtualService, kind: RouteKind) -> Vec<Owner> {
    let key = format!("f:{}", kind.field());
    let mut out: Vec<Owner> = Vec::new();
    for entry in vs.metadata.managed_fields.as_deref().unwrap_or_default() {
        let manager = entry.manager.as_deref().unwrap_or("");
        if manager == FIELD_MANAGER || entry.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
            continue;
        }
        // The field set is the server's own notation, untyped by nature.
        let owns = entry
            .fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:spec"))
            .is_some_and(|spec| spec.get(&key).is_some());
        if !owns {
            continue;
        }
        let owner = Owner {
            manager: manager.to_string(),
            operation: entry.operation.clone().unwrap_or_default(),
        };
        if !out.contains(&owner) {
            out.push(owner);
        }
    }
    out
}

/// What to do about the route list's owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody else owns it (or only kubectl-mesh): a plain apply.
    Free,
    /// Only kubectl-by-hand managers own it: apply with force, taking it over from them.
    TakeOver(Vec<String>),
    /// Someone else owns it and `--force-conflicts` was not given: refuse, naming them.
    Refuse(Vec<String>),
    /// Someone else owns it and `--force-conflicts` was given.
    Forced(Vec<String>),
}

/// Decides whether a write of `spec.<kind>` may go ahead.
pub fn decide(vs: &VirtualService, kind: RouteKind, force_conflicts: bool) -> Decision {
    let owners = owners(vs, kind);
    if owners.is_empty() {
        return Decision::Free;
    }
    let names = |v: &[&Owner]| v.iter().map(|o| o.manager.clone()).collect::<Vec<_>>();
    let foreign: Vec<&Owner> = owners.iter().filter(|o| !o.by_hand()).collect();
    if foreign.is_empty() {
        let all: Vec<&Owner> = owners.iter().collect();
        return Decision::TakeOver(names(&all));
    }
    if force_conflicts {
        Decision::Forced(names(&foreign))
    } else {
        Decision::Refuse(names(&foreign))
    }
}

impl Decision {
    /// Whether the apply must be sent with `force=true`.
    pub fn force(&self) -> bool {
        !matches!(self, Decision::Free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn typed(v: Value) -> VirtualService {
        serde_json::from_value(v).expect("a VirtualService")
    }

    fn vs(entries: Value) -> VirtualService {
        typed(json!({"metadata": {"name": "x", "managedFields": entries}}))
    }

    fn entry(manager: &str, operation: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": operation, "apiVersion": "networking.istio.io/v1",
               "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    #[test]
    fn nobody_owns_a_seeded_object() {
        assert_eq!(
            decide(&typed(json!({"metadata": {}})), RouteKind::Http, false),
            Decision::Free
        );
        let ours = vs(json!([entry(
            "kubectl-mesh",
            "Apply",
            json!({"f:spec": {"f:http": {}}})
        )]));
        assert_eq!(decide(&ours, RouteKind::Http, false), Decision::Free);
    }

    #[test]
    fn kubectl_by_hand_is_taken_over() {
        let v = vs(json!([
            entry(
                "kubectl-client-side-apply",
                "Update",
                json!({"f:metadata": {"f:annotations": {}}, "f:spec": {"f:hosts": {}, "f:http": {}}})
            ),
            entry("kubectl-edit", "Update", json!({"f:spec": {"f:http": {}}})),
        ]));
        let d = decide(&v, RouteKind::Http, false);
        assert_eq!(
            d,
            Decision::TakeOver(vec![
                "kubectl-client-side-apply".into(),
                "kubectl-edit".into()
            ])
        );
        assert!(d.force());
    }

    #[test]
    fn gitops_and_flagger_are_refused_unless_forced() {
        let v = vs(json!([
            entry(
                "argocd-controller",
                "Apply",
                json!({"f:spec": {"f:http": {}}})
            ),
            entry("kubectl-edit", "Update", json!({"f:spec": {"f:http": {}}})),
            entry("flagger", "Update", json!({"f:spec": {"f:tcp": {}}})),
            entry("kube-controller", "Update", json!({"f:status": {}})),
        ]));
        assert_eq!(
            decide(&v, RouteKind::Http, false),
            Decision::Refuse(vec!["argocd-controller".into()])
        );
        assert_eq!(
            decide(&v, RouteKind::Http, true),
            Decision::Forced(vec!["argocd-controller".into()])
        );
        assert_eq!(
            decide(&v, RouteKind::Tcp, false),
            Decision::Refuse(vec!["flagger".into()])
        );
        assert_eq!(decide(&v, RouteKind::Tls, false), Decision::Free);
    }

    #[test]
    fn status_subresource_entries_do_not_count() {
        let mut e = entry("istiod", "Update", json!({"f:spec": {"f:http": {}}}));
        e["subresource"] = json!("status");
        assert_eq!(
            decide(&vs(json!([e])), RouteKind::Http, false),
            Decision::Free
        );
    }
}
