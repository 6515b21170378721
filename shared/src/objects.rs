//! The Kubernetes kinds the plugins read and write, and the metadata every written object carries.

use std::collections::BTreeMap;

use anyhow::anyhow;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kubectl-mesh";
/// Label on every object kubectl-mesh writes.
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_KEY`].
pub const MANAGED_BY_VALUE: &str = "kubectl-mesh";
/// The API group of Istio's networking kinds.
pub const ISTIO_NETWORKING: &str = "networking.istio.io";
/// Versions of `networking.istio.io`, newest first.
pub const ISTIO_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
/// The API group of Istio's security kinds (PeerAuthentication).
pub const ISTIO_SECURITY: &str = "security.istio.io";
/// Versions of `security.istio.io` that serve PeerAuthentication, newest first.
pub const SECURITY_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// A resource type: enough to build its API paths and print it like kubectl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: String,
    /// Kind, e.g. `ServiceEntry`.
    pub kind: &'static str,
    /// Plural resource name, e.g. `serviceentries`.
    pub plural: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl Kind {
    const fn core(
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> (&'static str, &'static str, &'static str, bool) {
        ("", kind, plural, namespaced)
    }

    fn new(
        group: &'static str,
        version: &str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> Self {
        Self {
            group,
            version: version.to_string(),
            kind,
            plural,
            namespaced,
        }
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How kubectl names the type in result lines: `service`, `serviceentry.networking.istio.io`.
    pub fn type_name(&self) -> String {
        let lower = self.kind.to_ascii_lowercase();
        if self.group.is_empty() {
            lower
        } else {
            format!("{lower}.{}", self.group)
        }
    }

    /// The API path of a collection (`name` None) or of one object.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let (true, Some(ns)) = (self.namespaced, namespace) {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(self.plural);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }

    /// Finds the kind of an object from its `apiVersion` and `kind`.
    pub fn of(obj: &Value) -> Option<Kind> {
        let api_version = obj.get("apiVersion")?.as_str()?;
        let kind = obj.get("kind")?.as_str()?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        KNOWN
            .iter()
            .find(|(g, k, _, _)| *g == group && *k == kind)
            .map(|(g, k, p, n)| Kind::new(g, version, k, p, *n))
    }
}

const KNOWN: [(&str, &str, &str, bool); 24] = [
    Kind::core("Namespace", "namespaces", false),
    Kind::core("Service", "services", true),
    Kind::core("Endpoints", "endpoints", true),
    Kind::core("ConfigMap", "configmaps", true),
    Kind::core("Secret", "secrets", true),
    Kind::core("ServiceAccount", "serviceaccounts", true),
    Kind::core("Pod", "pods", true),
    ("apps", "Deployment", "deployments", true),
    ("apps", "StatefulSet", "statefulsets", true),
    ("apps", "DaemonSet", "daemonsets", true),
    ("apps", "ReplicaSet", "replicasets", true),
    ("batch", "Job", "jobs", true),
    ("batch", "CronJob", "cronjobs", true),
    ("discovery.k8s.io", "EndpointSlice", "endpointslices", true),
    (
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    (ISTIO_NETWORKING, "ServiceEntry", "serviceentries", true),
    (ISTIO_NETWORKING, "WorkloadEntry", "workloadentries", true),
    (ISTIO_NETWORKING, "WorkloadGroup", "workloadgroups", true),
    (ISTIO_NETWORKING, "VirtualService", "virtualservices", true),
    (
        ISTIO_NETWORKING,
        "DestinationRule",
        "destinationrules",
        true,
    ),
    (ISTIO_NETWORKING, "Gateway", "gateways", true),
    (ISTIO_NETWORKING, "Sidecar", "sidecars", true),
    (
        ISTIO_SECURITY,
        "PeerAuthentication",
        "peerauthentications",
        true,
    ),
];

fn known(group: &str, kind: &str, version: &str) -> Kind {
    let (g, k, p, n) = KNOWN
        .iter()
        .find(|(g, k, _, _)| *g == group && *k == kind)
        .copied()
        .unwrap_or(("", "Unknown", "unknown", true));
    Kind::new(g, version, k, p, n)
}

/// Core `v1` kinds by name: `Service`, `ConfigMap`, ...
pub fn core(kind: &str) -> Kind {
    known("", kind, "v1")
}

/// `apps/v1` Deployment.
pub fn deployment() -> Kind {
    known("apps", "Deployment", "v1")
}

/// An `apps/v1` or `batch/v1` workload kind by name: `StatefulSet`, `Job`, ...
pub fn workload(kind: &str) -> Kind {
    let group = if matches!(kind, "Job" | "CronJob") {
        "batch"
    } else {
        "apps"
    };
    known(group, kind, "v1")
}

/// PeerAuthentication at the `security.istio.io` version the cluster serves.
pub fn peer_authentication(version: &str) -> Kind {
    known(ISTIO_SECURITY, "PeerAuthentication", version)
}

/// An Istio networking kind at the version the cluster serves.
pub fn istio(kind: &str, version: &str) -> Kind {
    known(ISTIO_NETWORKING, kind, version)
}

/// A typed object (k8s-openapi or [`crate::istio`]) as the JSON the write engine takes.
/// Serializing these types cannot fail: their maps have string keys and they hold no
/// non-finite floats; `Null` would be refused by the engine's kind check, never sent.
pub fn to_value<T: serde::Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

/// The typed form (k8s-openapi or [`crate::istio`]) of an object as a cluster served it. A
/// malformed one (a field of the wrong type) is an error naming the object, so that the person
/// can find and fix it, rather than a field silently read as absent.
pub fn read<T: DeserializeOwned>(obj: &Value) -> anyhow::Result<T> {
    serde_json::from_value(obj.clone()).map_err(|e| anyhow!("{} is malformed: {e}", describe(obj)))
}

/// A new object of `kind` with the managed-by label; builders fill in the rest.
pub fn new_object(kind: &Kind, namespace: Option<&str>, name: &str) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    if let (true, Some(ns)) = (kind.namespaced, namespace) {
        meta.insert("namespace".into(), json!(ns));
    }
    meta.insert("labels".into(), json!({ MANAGED_BY_KEY: MANAGED_BY_VALUE }));
    json!({ "apiVersion": kind.api_version(), "kind": kind.kind, "metadata": meta })
}

/// Adds labels to an object's metadata (existing keys are overwritten).
pub fn add_labels(obj: &mut Value, labels: &BTreeMap<String, String>) {
    add_meta_map(obj, "labels", labels);
}

/// Adds annotations to an object's metadata (existing keys are overwritten).
pub fn add_annotations(obj: &mut Value, annotations: &BTreeMap<String, String>) {
    add_meta_map(obj, "annotations", annotations);
}

fn add_meta_map(obj: &mut Value, field: &str, entries: &BTreeMap<String, String>) {
    if entries.is_empty() {
        return;
    }
    let meta = &mut obj["metadata"];
    if !meta[field].is_object() {
        meta[field] = json!({});
    }
    if let Some(map) = meta[field].as_object_mut() {
        for (k, v) in entries {
            map.insert(k.clone(), json!(v));
        }
    }
}

/// `metadata.name`, or "" when absent.
pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// `metadata.namespace`, if any.
pub fn namespace(obj: &Value) -> Option<&str> {
    obj["metadata"]["namespace"].as_str()
}

/// `metadata.resourceVersion`, or "".
pub fn resource_version(obj: &Value) -> &str {
    obj["metadata"]["resourceVersion"].as_str().unwrap_or("")
}

/// Whether kubectl-mesh's label is on the object.
pub fn is_managed(obj: &Value) -> bool {
    obj["metadata"]["labels"][MANAGED_BY_KEY].as_str() == Some(MANAGED_BY_VALUE)
}

/// `Kind ns/name` for messages.
pub fn describe(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or("object");
    match namespace(obj) {
        Some(ns) => format!("{kind} {ns}/{}", name(obj)),
        None => format!("{kind} {}", name(obj)),
    }
}

/// The object as it is worth showing: without server bookkeeping (`managedFields`).
pub fn for_display(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        let se = istio("ServiceEntry", "v1beta1");
        assert_eq!(se.api_version(), "networking.istio.io/v1beta1");
        assert_eq!(
            se.path(Some("default"), Some("x")),
            "/apis/networking.istio.io/v1beta1/namespaces/default/serviceentries/x"
        );
        assert_eq!(
            se.path(None, None),
            "/apis/networking.istio.io/v1beta1/serviceentries"
        );
        assert_eq!(se.type_name(), "serviceentry.networking.istio.io");
        let svc = core("Service");
        assert_eq!(svc.path(Some("ns"), None), "/api/v1/namespaces/ns/services");
        assert_eq!(svc.type_name(), "service");
        assert_eq!(
            core("Namespace").path(Some("ignored"), Some("x")),
            "/api/v1/namespaces/x"
        );
    }

    #[test]
    fn new_objects_carry_the_managed_by_label() {
        let obj = new_object(&core("Service"), Some("default"), "x");
        assert!(is_managed(&obj));
        assert_eq!(Kind::of(&obj), Some(core("Service")));
        assert_eq!(describe(&obj), "Service default/x");
    }
}
