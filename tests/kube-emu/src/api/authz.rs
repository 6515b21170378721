//! Bearer tokens other than the cluster's admin token, as kube-apiserver treats them: a token
//! this server issued (a TokenRequest's, or the token controller's legacy token still held by
//! its Secret) authenticates as its ServiceAccount; RBAC (ClusterRoles bound by
//! ClusterRoleBindings, the only RBAC kinds served) decides what it may do; and a
//! SelfSubjectAccessReview answers that question for the asking user.

use base64::Engine as _;
use serde_json::{json, Value};

use super::{meta_str, Core, Resp, State};
use crate::util;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// The cluster's admin token (`system:masters`): everything is allowed.
    Admin,
    /// `system:serviceaccount:NS:NAME`.
    ServiceAccount { namespace: String, name: String },
}

impl User {
    fn username(&self) -> String {
        match self {
            User::Admin => "admin".into(),
            User::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
        }
    }
}

/// What a request asks to do, in RBAC's terms.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

pub const SSAR_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl State {
    fn sa_uid(&self, ns: &str, name: &str) -> Option<String> {
        let rt = self.type_by_plural("", "v1", "serviceaccounts")?;
        let sa = self.get_obj(&rt, ns, name)?;
        meta_str(sa, "uid").map(String::from)
    }

    /// The ServiceAccount a token stands for, when this server issued it and it still holds.
    pub(super) fn authenticate(&self, token: &str) -> Option<User> {
        let c = claims(token)?;
        let (ns, name, uid) = if c["iss"] == "kubernetes/serviceaccount" {
            // A legacy token is good while its Secret exists and still holds it.
            let ns = c["kubernetes.io/serviceaccount/namespace"].as_str()?;
            let secret = c["kubernetes.io/serviceaccount/secret.name"].as_str()?;
            let rt = self.type_by_plural("", "v1", "secrets")?;
            let held = self.get_obj(&rt, ns, secret)?["data"]["token"].as_str()?;
            let held = base64::engine::general_purpose::STANDARD
                .decode(held)
                .ok()?;
            if held != token.as_bytes() {
                return None;
            }
            (
                ns.to_string(),
                c["kubernetes.io/serviceaccount/service-account.name"]
                    .as_str()?
                    .to_string(),
                c["kubernetes.io/serviceaccount/service-account.uid"]
                    .as_str()?
                    .to_string(),
            )
        } else {
            // A bound token: one this server issued, for the API server, not expired.
            let jti = c["jti"].as_str()?;
            if !self.issued.contains(jti) || c["exp"].as_i64()? <= self.now_secs() {
                return None;
            }
            let aud = c["aud"].as_array()?;
            if !aud
                .iter()
                .any(|a| a == "https://kubernetes.default.svc.cluster.local")
            {
                return None;
            }
            let k = &c["kubernetes.io"];
            (
                k["namespace"].as_str()?.to_string(),
                k["serviceaccount"]["name"].as_str()?.to_string(),
                k["serviceaccount"]["uid"].as_str()?.to_string(),
            )
        };
        // Deleting the ServiceAccount revokes its tokens.
        (self.sa_uid(&ns, &name)? == uid).then_some(User::ServiceAccount {
            namespace: ns,
            name,
        })
    }

    /// Whether RBAC lets `user` do `a`.
    pub(super) fn allowed(&self, user: &User, a: &Attributes) -> bool {
        let User::ServiceAccount { namespace, name } = user else {
            return true;
        };
        let (Some(crb), Some(cr)) = (
            self.type_by_plural("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
            self.type_by_plural("rbac.authorization.k8s.io", "v1", "clusterroles"),
        ) else {
            return false;
        };
        let Some(bindings) = self.objects.get(&crb.store_key()) else {
            return false;
        };
        let has = |list: &Value, want: &str| {
            list.as_array()
                .is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
        };
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        bindings.values().any(|b| {
            let subject = b["subjects"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    (s["kind"] == "ServiceAccount"
                        && s["name"] == *name
                        && s["namespace"] == *namespace)
                        || (s["kind"] == "Group"
                            && (s["name"] == "system:serviceaccounts"
                                || s["name"] == "system:authenticated"))
                })
            });
            if !subject || b["roleRef"]["kind"] != "ClusterRole" {
                return false;
            }
            let Some(role) = b["roleRef"]["name"]
                .as_str()
                .and_then(|r| self.get_obj(&cr, "", r))
            else {
                return false;
            };
            role["rules"].as_array().is_some_and(|rules| {
                rules.iter().any(|r| {
                    has(&r["verbs"], &a.verb)
                        && has(&r["apiGroups"], &a.group)
                        && has(&r["resources"], &resource)
                        && r["resourceNames"]
                            .as_array()
                            .is_none_or(|n| n.is_empty() || n.iter().any(|v| v == &a.name))
                })
            })
        })
    }
}

/// The RBAC attributes of a request by path; `None` for non-resource paths (discovery), which
/// every authenticated user may read.
pub fn attributes(method: &str, path: &str, query: &str) -> Option<Attributes> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _v, rest @ ..] if !rest.is_empty() => (String::new(), rest.to_vec()),
        ["apis", g, _v, rest @ ..] if !rest.is_empty() => (g.to_string(), rest.to_vec()),
        _ => return None,
    };
    let (namespace, rest) = match rest.as_slice() {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (ns.to_string(), tail.to_vec()),
        _ => (String::new(), rest),
    };
    let resource = rest.first()?.to_string();
    let name = rest.get(1).map(|s| s.to_string()).unwrap_or_default();
    let subresource = rest.get(2).map(|s| s.to_string()).unwrap_or_default();
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_empty()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        _ => "unknown",
    };
    Some(Attributes {
        verb: verb.into(),
        group,
        resource,
        subresource,
        namespace,
        name,
    })
}

impl Core {
    /// The user of a bearer token that is not the admin token.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        self.lock().authenticate(token)
    }

    /// `None` when RBAC lets `user` send this request, else the 403 kube-apiserver answers.
    pub fn authorize(&self, user: &User, method: &str, path: &str, query: &str) -> Option<Resp> {
        let a = attributes(method, path, query)?;
        if self.lock().allowed(user, &a) {
            return None;
        }
        let group = if a.group.is_empty() {
            "\"\"".to_string()
        } else {
            format!("\"{}\"", a.group)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", a.namespace)
        };
        let what = if a.name.is_empty() {
            a.resource.clone()
        } else {
            format!("{} \"{}\"", a.resource, a.name)
        };
        Some(util::status(
            403,
            "Forbidden",
            &format!(
                "{what} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group {group} {scope}",
                user.username(),
                a.verb,
                a.resource
            ),
            Some(json!({"name": a.name, "group": a.group, "kind": a.resource})),
        ))
    }

    /// POST selfsubjectaccessreviews: whether the asking user may do what `spec` describes.
    pub fn self_subject_access_review(&self, user: &User, body: &[u8]) -> Resp {
        let Ok(mut review) = serde_json::from_slice::<Value>(body) else {
            return util::simple_status(400, "the request body is not a SelfSubjectAccessReview");
        };
        let ra = &review["spec"]["resourceAttributes"];
        let s = |k: &str| ra[k].as_str().unwrap_or("").to_string();
        let a = Attributes {
            verb: s("verb"),
            group: s("group"),
            resource: s("resource"),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
        };
        let allowed = self.lock().allowed(user, &a);
        review["status"] = if allowed {
            json!({"allowed": true, "reason": "RBAC: allowed"})
        } else {
            json!({"allowed": false})
        };
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!("SelfSubjectAccessReview");
        review["metadata"] = json!({"creationTimestamp": null});
        Resp::json(201, &review)
    }
}
