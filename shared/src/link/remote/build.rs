//! The objects of a remote-secret link, built from plain values: the reader identity in the
//! source cluster (Istio's own chart, Istio 1.31.0-alpha.eed52ebb66ad, the module the real test
//! tier builds) and the remote secret in the target cluster, shaped as
//! `istioctl create-remote-secret` shapes it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::objects::{self, Kind};

/// The ServiceAccount istiod of another cluster reads this one as.
pub const READER_SA: &str = "istio-reader-service-account";
/// The label istiod's secret controller watches Secrets by.
pub const MULTICLUSTER_LABEL: &str = "istio/multiCluster";
/// The annotation naming the cluster a remote secret is for.
pub const CLUSTER_ANNOTATION: &str = "networking.istio.io/cluster";
/// The prefix of a remote secret's name (istioctl's `remoteSecretPrefix`).
pub const SECRET_PREFIX: &str = "istio-remote-secret-";
/// The annotation tying a token Secret to its ServiceAccount.
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// The Secret type the token controller fills with a token.
pub const SA_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// The RBAC API group.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// `istio-reader-clusterrole-<NS>`: the chart's name for the ClusterRole and its binding
/// (default revision).
pub fn reader_role_name(istio_namespace: &str) -> String {
    format!("istio-reader-clusterrole-{istio_namespace}")
}

/// The name istioctl gives the token Secret it creates (`tokenSecretName`), so a Secret made by
/// either tool is found and reused by the other.
pub fn token_secret_name() -> String {
    format!("{READER_SA}-istio-remote-secret-token")
}

/// `istio-remote-secret-<cluster ID>`.
pub fn remote_secret_name(cluster_id: &str) -> String {
    format!("{SECRET_PREFIX}{cluster_id}")
}

/// A cluster-scoped RBAC kind (`ClusterRole`, `ClusterRoleBinding`).
pub fn rbac(kind: &str) -> Kind {
    let obj = json!({"apiVersion": format!("{RBAC_GROUP}/v1"), "kind": kind});
    // Both are in the known kinds.
    Kind::of(&obj).unwrap_or_else(|| objects::core("Unknown"))
}

/// The reader ServiceAccount.
pub fn service_account(istio_namespace: &str) -> Value {
    objects::new_object(
        &objects::core("ServiceAccount"),
        Some(istio_namespace),
        READER_SA,
    )
}

/// The rules of `reader-clusterrole.yaml` in Istio's istio-discovery chart (default values:
/// MCS API group `multicluster.x-k8s.io`, no `istiodRemote`).
pub fn reader_rules() -> Value {
    let read = json!(["get", "list", "watch"]);
    json!([
        {"apiGroups": ["config.istio.io", "security.istio.io", "networking.istio.io", "authentication.istio.io",
                       "rbac.istio.io", "telemetry.istio.io", "extensions.istio.io"],
         "resources": ["*"], "verbs": read},
        {"apiGroups": [""],
         "resources": ["endpoints", "pods", "services", "nodes", "replicationcontrollers", "namespaces", "secrets", "configmaps"],
         "verbs": read},
        {"apiGroups": ["networking.istio.io"], "verbs": ["get", "watch", "list"], "resources": ["workloadentries"]},
        {"apiGroups": ["networking.x-k8s.io", "gateway.networking.k8s.io"], "resources": ["gateways"], "verbs": read},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": read},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        {"apiGroups": ["multicluster.x-k8s.io"], "resources": ["serviceexports"],
         "verbs": ["get", "list", "watch", "create", "delete"]},
        {"apiGroups": ["multicluster.x-k8s.io"], "resources": ["serviceimports"], "verbs": read},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": read},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ])
}

/// The chart's labels on the reader ClusterRole and binding, besides kubectl-mesh's own.
fn reader_labels(obj: &mut Value) {
    let labels: BTreeMap<String, String> = [
        ("app", "istio-reader"),
        ("app.kubernetes.io/name", "istio-reader"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    objects::add_labels(obj, &labels);
}

/// The reader ClusterRole.
pub fn cluster_role(istio_namespace: &str) -> Value {
    let mut obj = objects::new_object(
        &rbac("ClusterRole"),
        None,
        &reader_role_name(istio_namespace),
    );
    reader_labels(&mut obj);
    obj["rules"] = reader_rules();
    obj
}

/// The binding of the reader ClusterRole to the reader ServiceAccount.
pub fn cluster_role_binding(istio_namespace: &str) -> Value {
    let name = reader_role_name(istio_namespace);
    let mut obj = objects::new_object(&rbac("ClusterRoleBinding"), None, &name);
    reader_labels(&mut obj);
    obj["roleRef"] = json!({"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name});
    obj["subjects"] =
        json!([{"kind": "ServiceAccount", "name": READER_SA, "namespace": istio_namespace}]);
    obj
}

/// The token Secret the token controller fills with a non-expiring token for the reader.
pub fn token_secret(istio_namespace: &str) -> Value {
    let mut obj = objects::new_object(
        &objects::core("Secret"),
        Some(istio_namespace),
        &token_secret_name(),
    );
    obj["metadata"]["annotations"] = json!({ SA_NAME_ANNOTATION: READER_SA });
    obj["type"] = json!(SA_TOKEN_TYPE);
    obj
}

/// The annotation marking a token Secret as one target's own, made by `--rotate`: the cluster
/// ID of the one remote secret that holds its token.
pub const DEDICATED_ANNOTATION: &str = "kubectl-mesh/remote-secret-for";

/// The name of the token Secret `--rotate` makes for `target_id`: the target and a stamp (the
/// rotation's Unix time, hex), so that the new token exists beside the old one until the target's
/// secret holds it.
pub fn dedicated_token_name(target_id: &str, stamp: u64) -> String {
    format!("{READER_SA}-token-{target_id}-{stamp:x}")
}

/// A token Secret of the reader that only `target_id`'s remote secret uses (see `--rotate`).
pub fn dedicated_token_secret(istio_namespace: &str, name: &str, target_id: &str) -> Value {
    let mut obj = token_secret(istio_namespace);
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["annotations"][DEDICATED_ANNOTATION] = json!(target_id);
    obj
}

/// The target whose own token a token Secret holds, when `--rotate` made it for one.
pub fn dedicated_to(secret: &Value) -> Option<&str> {
    secret["metadata"]["annotations"][DEDICATED_ANNOTATION].as_str()
}

/// The token Secret kubectl-mesh applies for an existing one it made: the same name and the
/// same target, so a rerun leaves it unchanged.
pub fn token_secret_like(istio_namespace: &str, existing: &Value) -> Value {
    match dedicated_to(existing) {
        Some(target) => dedicated_token_secret(istio_namespace, objects::name(existing), target),
        None => {
            let mut obj = token_secret(istio_namespace);
            obj["metadata"]["name"] = json!(objects::name(existing));
            obj
        }
    }
}

/// Where and how the target's istiod reaches the source cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct Access {
    /// The source cluster's API server URL, as the target reaches it.
    pub server: String,
    /// The source cluster's CA bundle (PEM).
    pub ca_pem: Vec<u8>,
    /// The reader's bearer token: a credential, never printed.
    pub token: String,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("server", &self.server)
            .field("token", &crate::verbose::REDACTED)
            .finish()
    }
}

/// The kubeconfig in a remote secret, in the shape istioctl writes (client-go's encoding of
/// `api.Config`, which omits empty `preferences`): one cluster, context and user, all named
/// after the cluster ID.
pub fn kubeconfig(cluster_id: &str, access: &Access) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&access.ca_pem);
    let doc = json!({
        "apiVersion": "v1",
        "clusters": [{"cluster": {"certificate-authority-data": ca, "server": access.server}, "name": cluster_id}],
        "contexts": [{"context": {"cluster": cluster_id, "user": cluster_id}, "name": cluster_id}],
        "current-context": cluster_id,
        "kind": "Config",
        "users": [{"name": cluster_id, "user": {"token": access.token}}],
    });
    // serde_yaml cannot fail on a tree of strings and maps.
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// The remote secret for `cluster_id` in the target's Istio namespace.
pub fn remote_secret(istio_namespace: &str, cluster_id: &str, access: &Access) -> Value {
    let mut obj = objects::new_object(
        &objects::core("Secret"),
        Some(istio_namespace),
        &remote_secret_name(cluster_id),
    );
    obj["metadata"]["labels"][MULTICLUSTER_LABEL] = json!("true");
    obj["metadata"]["annotations"] = json!({ CLUSTER_ANNOTATION: cluster_id });
    obj["type"] = json!("Opaque");
    let config = kubeconfig(cluster_id, access);
    obj["data"] = json!({ cluster_id: base64::engine::general_purpose::STANDARD.encode(config) });
    obj
}

/// The server, CA and token of a remote secret's kubeconfig for `cluster_id`; `None` when the
/// secret holds no such kubeconfig.
pub fn access_of(secret: &Value, cluster_id: &str) -> Option<Access> {
    let encoded = secret["data"][cluster_id].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let doc: Value = serde_yaml::from_slice(&bytes).ok()?;
    let cluster = &doc["clusters"].as_array()?.first()?["cluster"];
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().unwrap_or(""))
        .ok()?;
    Some(Access {
        server: cluster["server"].as_str()?.to_string(),
        ca_pem: ca,
        token: doc["users"].as_array()?.first()?["user"]["token"]
            .as_str()?
            .to_string(),
    })
}

/// The object as it may be shown: a Secret's `data` and `stringData` values replaced by
/// `<redacted>` (the keys stay, so the shape can be reviewed).
pub fn redacted(mut obj: Value) -> Value {
    if obj["kind"] != "Secret" {
        return obj;
    }
    for field in ["data", "stringData"] {
        if let Some(map) = obj.get_mut(field).and_then(Value::as_object_mut) {
            for v in map.values_mut() {
                *v = json!(crate::verbose::REDACTED);
            }
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access {
            server: "https://10.0.0.1:6443".into(),
            ca_pem: b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
            token: "eyJhbGciOi.secret.token".into(),
        }
    }

    #[test]
    fn reader_identity_is_the_charts() {
        insta::assert_yaml_snapshot!(
            "remote_reader_identity",
            vec![
                service_account("istio-system"),
                cluster_role("istio-system"),
                cluster_role_binding("istio-system"),
                token_secret("istio-system"),
                dedicated_token_secret(
                    "istio-system",
                    &dedicated_token_name("cluster2", 0x6750_0000),
                    "cluster2"
                ),
            ]
        );
    }

    #[test]
    fn remote_secret_has_istioctls_shape() {
        let s = remote_secret("istio-system", "cluster1", &access());
        insta::assert_yaml_snapshot!("remote_secret_redacted", redacted(s.clone()));
        insta::assert_snapshot!(
            "remote_secret_kubeconfig",
            kubeconfig(
                "cluster1",
                &Access {
                    token: "TOKEN".into(),
                    ..access()
                }
            )
        );
        assert_eq!(access_of(&s, "cluster1"), Some(access()));
        assert_eq!(access_of(&s, "cluster2"), None);
        assert!(!format!("{:?}", access()).contains("secret.token"));
    }
}
