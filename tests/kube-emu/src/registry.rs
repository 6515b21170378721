//! The kinds a server knows: built-in core kinds plus CRD kinds.

use crate::schema::CrdSchema;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// One served group/version/resource.
#[derive(Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub has_status: bool,
    /// Whether this is a CRD kind (no strategic merge patch).
    pub is_crd: bool,
    pub schema: Option<Arc<CrdSchema>>,
    /// Whether this version is the preferred one of its group (listed first).
    pub version_priority: i64,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// Key of the storage shared by all versions.
    pub fn store_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
    /// `serviceentries.networking.istio.io` as used in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
    pub fn subresources(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.has_status {
            v.push("status");
        }
        if self.plural == "serviceaccounts" && self.group.is_empty() {
            v.push("token");
        }
        v
    }
}

/// Priority of a Kubernetes version string (v1 > v1beta2 > v1beta1 > v1alpha1 > other).
pub fn version_priority(v: &str) -> i64 {
    let re = |s: &str| -> Option<(i64, i64, i64)> {
        let s = s.strip_prefix('v')?;
        let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: i64 = digits.parse().ok()?;
        let rest = &s[digits.len()..];
        if rest.is_empty() {
            return Some((3, major, 0));
        }
        for (name, rank) in [("beta", 2), ("alpha", 1)] {
            if let Some(n) = rest.strip_prefix(name) {
                let minor: i64 = n.parse().ok()?;
                return Some((rank, major, minor));
            }
        }
        None
    };
    match re(v) {
        Some((rank, major, minor)) => rank * 1_000_000 + major * 1000 + minor,
        None => 0,
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    short: &[&str],
    namespaced: bool,
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if matches!(
            plural,
            "services"
                | "pods"
                | "deployments"
                | "statefulsets"
                | "daemonsets"
                | "replicasets"
                | "jobs"
                | "cronjobs"
        ) {
            vec!["all".into()]
        } else {
            vec![]
        },
        namespaced,
        has_status: status,
        is_crd: false,
        schema: None,
        version_priority: version_priority(version),
    }
}

/// The built-in kinds.
pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin("", "v1", "Namespace", "namespaces", &["ns"], false, true),
        builtin("", "v1", "Service", "services", &["svc"], true, true),
        builtin("", "v1", "Endpoints", "endpoints", &["ep"], true, false),
        builtin("", "v1", "ConfigMap", "configmaps", &["cm"], true, false),
        builtin("", "v1", "Secret", "secrets", &[], true, false),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            &["sa"],
            true,
            false,
        ),
        builtin("", "v1", "Pod", "pods", &["po"], true, true),
        builtin("", "v1", "Node", "nodes", &["no"], false, true),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            &["deploy"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            &["sts"],
            true,
            true,
        ),
        builtin("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true, true),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            &["rs"],
            true,
            true,
        ),
        builtin("batch", "v1", "Job", "jobs", &[], true, true),
        builtin("batch", "v1", "CronJob", "cronjobs", &["cj"], true, true),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            &[],
            false,
            false,
        ),
        builtin(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            &[],
            true,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            &["crd", "crds"],
            false,
            true,
        ),
    ]
}

/// Turns a CRD object into resource types, one per served version.
pub fn crd_types(crd: &Value) -> anyhow::Result<Vec<ResourceType>> {
    let spec = crd
        .get("spec")
        .ok_or_else(|| anyhow::anyhow!("CRD without spec"))?;
    let group = spec["group"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("CRD without spec.group"))?;
    let names = &spec["names"];
    let kind = names["kind"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("CRD without spec.names.kind"))?;
    let plural = names["plural"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("CRD without spec.names.plural"))?;
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().cloned().unwrap_or_default() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("v1").to_string();
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .map(|s| Arc::new(CrdSchema::compile(s)));
        out.push(ResourceType {
            group: group.into(),
            version: name.clone(),
            kind: kind.into(),
            plural: plural.into(),
            singular: singular.clone(),
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            namespaced,
            has_status: v.pointer("/subresources/status").is_some(),
            is_crd: true,
            schema,
            version_priority: version_priority(&name),
        });
    }
    Ok(out)
}

/// The CRD documents of a file plus their compiled kinds.
pub struct CrdSet {
    pub crds: Vec<Value>,
    pub types: Vec<Arc<ResourceType>>,
}

/// Parses multi-document YAML into JSON values (skipping empty documents).
pub fn parse_multi_yaml(text: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)?;
        match v {
            Value::Null => {}
            Value::Object(ref m) if m.is_empty() => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(items) = m.get("items").and_then(Value::as_array) {
                    out.extend(items.iter().cloned());
                }
            }
            v => out.push(v),
        }
    }
    Ok(out)
}

fn load_crd_file(path: &Path) -> anyhow::Result<CrdSet> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let docs = parse_multi_yaml(&text)?;
    let mut crds = Vec::new();
    let mut types = Vec::new();
    for d in docs {
        if d["kind"].as_str() != Some("CustomResourceDefinition") {
            continue;
        }
        types.extend(crd_types(&d)?.into_iter().map(Arc::new));
        crds.push(d);
    }
    Ok(CrdSet { crds, types })
}

/// Loads a CRD file once per process (by canonical path) and shares it.
pub fn crd_file(path: &Path) -> anyhow::Result<Arc<CrdSet>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<CrdSet>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .get(&key)
    {
        return Ok(s.clone());
    }
    let set = Arc::new(load_crd_file(&key)?);
    cache
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .insert(key, set.clone());
    Ok(set)
}

/// The default CRD file: `KUBE_EMU_CRDS`, else `../shared/istio/crd-all.gen.yaml` beside the workspace.
pub fn default_crd_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KUBE_EMU_CRDS") {
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio/crd-all.gen.yaml");
    if p.exists() {
        Some(p)
    } else {
        None
    }
}

/// Schema-less CRDs of the Istio networking kinds, for a checkout without the CRD file.
pub fn builtin_istio_crds() -> Arc<CrdSet> {
    static SET: OnceLock<Arc<CrdSet>> = OnceLock::new();
    SET.get_or_init(|| {
        let kinds = [
            ("ServiceEntry", "serviceentries", "serviceentry", vec!["se"]),
            ("WorkloadEntry", "workloadentries", "workloadentry", vec!["we"]),
            ("WorkloadGroup", "workloadgroups", "workloadgroup", vec!["wg"]),
            ("VirtualService", "virtualservices", "virtualservice", vec!["vs"]),
            ("DestinationRule", "destinationrules", "destinationrule", vec!["dr"]),
            ("Gateway", "gateways", "gateway", vec!["gw"]),
            ("Sidecar", "sidecars", "sidecar", vec![]),
        ];
        let mut crds = Vec::new();
        let mut types = Vec::new();
        for (kind, plural, singular, short) in kinds {
            let versions: Vec<Value> = ["v1", "v1alpha3", "v1beta1"]
                .iter()
                .map(|v| {
                    json!({"name": v, "served": true, "storage": *v == "v1",
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                        "subresources": {"status": {}}})
                })
                .collect();
            let crd = json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.networking.istio.io")},
                "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": singular, "shortNames": short,
                              "listKind": format!("{kind}List"), "categories": ["istio-io", "networking-istio-io"]},
                    "versions": versions}
            });
            if let Ok(t) = crd_types(&crd) {
                types.extend(t.into_iter().map(Arc::new));
            }
            crds.push(crd);
        }
        Arc::new(CrdSet { crds, types })
    })
    .clone()
}
