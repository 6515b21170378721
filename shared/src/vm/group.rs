//! The WorkloadGroup: one typed value from flags, a file or the cluster, and the object built from it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::error::usage;
use crate::istio;
use crate::names;
use crate::objects::{self, ISTIO_NETWORKING};
use crate::vm::probe::Probe;

/// The service account istioctl defaults to.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// A WorkloadGroup, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.labels` of the object itself (a file may carry some).
    pub object_labels: BTreeMap<String, String>,
    /// `metadata.annotations` of the object itself (`proxy.istio.io/config` is honoured here too).
    pub object_annotations: BTreeMap<String, String>,
    /// `spec.metadata.labels`: the labels every WorkloadEntry of the group gets.
    pub labels: BTreeMap<String, String>,
    /// `spec.metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.template`.
    pub template: Template,
    /// `spec.probe`.
    pub probe: Option<Probe>,
}

/// `spec.template`: the WorkloadEntry every VM of the group starts from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Template {
    /// Port name → number.
    pub ports: BTreeMap<String, u16>,
    /// The identity of the VMs.
    pub service_account: String,
    /// The network the VMs are on (empty: the cluster's).
    pub network: String,
    /// `region/zone/subzone`.
    pub locality: String,
    /// Load-balancing weight (0: unset).
    pub weight: u32,
    /// Labels set on the template (Istio prefers `spec.metadata.labels`).
    pub labels: BTreeMap<String, String>,
}

/// `--locality REGION[/ZONE[/SUBZONE]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality(pub String);

impl std::str::FromStr for Locality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3
            || parts
                .iter()
                .any(|p| p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!(
                "invalid locality {s:?}: expected REGION[/ZONE[/SUBZONE]], e.g. us-central1/us-central1-a"
            ));
        }
        Ok(Locality(s.to_string()))
    }
}

/// `--network NAME`: any non-empty word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network(pub String);

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 253 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "invalid network {s:?}: expected a non-empty name without spaces, e.g. network1"
            ));
        }
        Ok(Network(s.to_string()))
    }
}

/// A Kubernetes object name (DNS-1123 subdomain), for NAME and `-s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName(pub String);

impl std::str::FromStr for ObjectName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        names::dns1123_subdomain(s)?;
        Ok(ObjectName(s.to_string()))
    }
}

impl Group {
    /// The istiod-facing defaults istioctl applies to a group read from a file, applied to every
    /// source so the files never carry an empty `SERVICE_ACCOUNT`.
    pub fn with_defaults(mut self) -> Self {
        if self.template.service_account.is_empty() {
            self.template.service_account = DEFAULT_SERVICE_ACCOUNT.to_string();
        }
        self
    }

    /// The labels each WorkloadEntry of the group gets: the template's, then `spec.metadata`'s,
    /// which win (istiod's order).
    pub fn workload_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.template.labels.clone();
        labels.extend(self.labels.clone());
        labels
    }

    /// The group as an object at `version` of `networking.istio.io`, ready for server-side apply.
    pub fn to_object(&self, version: &str) -> Value {
        let kind = objects::istio("WorkloadGroup", version);
        let nonempty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
        let t = &self.template;
        let text = |s: &String| (!s.is_empty()).then(|| s.clone());
        let template = istio::WorkloadEntrySpec {
            labels: nonempty(&t.labels),
            ports: (!t.ports.is_empty()).then(|| {
                t.ports
                    .iter()
                    .map(|(k, v)| (k.clone(), u32::from(*v)))
                    .collect()
            }),
            network: text(&t.network),
            locality: text(&t.locality),
            weight: (t.weight > 0).then_some(t.weight),
            service_account: Some(t.service_account.clone()),
            ..Default::default()
        };
        let spec = istio::WorkloadGroupSpec {
            metadata: Some(istio::GroupMetadata {
                labels: nonempty(&self.labels),
                annotations: nonempty(&self.annotations),
            }),
            template,
            probe: self
                .probe
                .as_ref()
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null)),
            ..Default::default()
        };
        let mut labels = self.object_labels.clone();
        labels.remove(objects::MANAGED_BY_KEY);
        let mut group = istio::WorkloadGroup::new(&kind, &self.namespace, &self.name, spec)
            .with_labels(&labels);
        istio::add(&mut group.metadata.annotations, &self.object_annotations);
        group.to_value()
    }

    /// Reads a group from the cluster's copy: the server validated it, so unknown fields are
    /// kept quiet (a newer Istio may add some).
    pub fn from_cluster(obj: &Value) -> Result<Group> {
        parse_object(obj, false).map_err(|e| {
            anyhow::anyhow!(
                "WorkloadGroup {}/{} cannot be read: {e}",
                objects::namespace(obj).unwrap_or(""),
                objects::name(obj)
            )
        })
    }
}

/// The ServiceAccount a group's VMs authenticate as, when it has to be created.
pub fn service_account(namespace: &str, name: &str) -> Value {
    objects::new_object(&objects::core("ServiceAccount"), Some(namespace), name)
}

/// Reads `-f FILE` strictly: one WorkloadGroup document, no unknown fields, valid values.
/// Every problem is a usage error (exit 2) that names the file and the field.
pub fn from_file(path: &Path, default_namespace: &str) -> Result<Group> {
    let shown = path.display().to_string();
    let bad = |msg: String| usage(&format!("-f {shown}"), msg);
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| bad(format!("not valid YAML: {e}")))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    let obj = match docs.len() {
        1 => docs.remove(0),
        0 => return Err(bad("no WorkloadGroup in the file".into())),
        n => {
            return Err(bad(format!(
                "{n} documents: expected exactly one WorkloadGroup"
            )))
        }
    };
    let mut group = parse_object(&obj, true).map_err(bad)?;
    if group.namespace.is_empty() {
        group.namespace = default_namespace.to_string();
    }
    Ok(group)
}

/// Fields allowed at each level of a strict read.
const TOP: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
const SPEC: &[&str] = &["metadata", "template", "probe"];
const SPEC_META: &[&str] = &["labels", "annotations"];
const TEMPLATE: &[&str] = &[
    "address",
    "ports",
    "labels",
    "network",
    "locality",
    "weight",
    "serviceAccount",
];

fn check_fields(v: &Value, at: &str, allowed: &[&str], strict: bool) -> Result<(), String> {
    let Some(map) = v.as_object() else {
        if v.is_null() {
            return Ok(());
        }
        return Err(format!("{at}: expected a mapping"));
    };
    if strict {
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "{at}.{k}: unknown field (expected one of {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

fn string_map(v: &Value, at: &str) -> Result<BTreeMap<String, String>, String> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("{at}.{k}: expected a string, got {other}")),
            })
            .collect(),
        _ => Err(format!("{at}: expected a mapping of strings")),
    }
}

fn string_at(v: &Value, at: &str) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("{at}: expected a string, got {other}")),
    }
}

fn parse_object(obj: &Value, strict: bool) -> Result<Group, String> {
    check_fields(obj, "", TOP, strict).map_err(|e| e.trim_start_matches('.').to_string())?;
    check_kind(obj)?;
    let mut group = parse_metadata(&obj["metadata"])?;
    let spec = &obj["spec"];
    check_fields(spec, "spec", SPEC, strict)?;
    (group.labels, group.annotations) = parse_spec_metadata(&spec["metadata"], strict)?;
    group.template = parse_template(&spec["template"], strict)?;
    group.probe = parse_probe(&spec["probe"])?;
    Ok(group)
}

fn check_kind(obj: &Value) -> Result<(), String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    // istioctl reads files without apiVersion; accept that, but not a wrong one.
    let group_ok = api_version.is_empty()
        || api_version
            .split_once('/')
            .is_some_and(|(g, v)| g == ISTIO_NETWORKING && objects::ISTIO_VERSIONS.contains(&v));
    if kind != "WorkloadGroup" || !group_ok {
        return Err(format!(
            "expected kind WorkloadGroup of networking.istio.io/v1, v1beta1 or v1alpha3, got {kind:?} of {api_version:?}"
        ));
    }
    Ok(())
}

/// The object's own `metadata`; the spec's fields are left at their defaults.
fn parse_metadata(meta: &Value) -> Result<Group, String> {
    let name = string_at(&meta["name"], "metadata.name")?;
    if name.is_empty() {
        return Err("metadata.name is missing".into());
    }
    names::dns1123_subdomain(&name).map_err(|e| format!("metadata.name: {e}"))?;
    let namespace = string_at(&meta["namespace"], "metadata.namespace")?;
    if !namespace.is_empty() {
        names::dns1123_label(&namespace).map_err(|e| format!("metadata.namespace: {e}"))?;
    }
    Ok(Group {
        name,
        namespace,
        object_labels: string_map(&meta["labels"], "metadata.labels")?,
        object_annotations: string_map(&meta["annotations"], "metadata.annotations")?,
        ..Group::default()
    })
}

/// `spec.metadata`: the labels (checked as label keys and values) and annotations.
type SpecMetadata = (BTreeMap<String, String>, BTreeMap<String, String>);

fn parse_spec_metadata(smeta: &Value, strict: bool) -> Result<SpecMetadata, String> {
    check_fields(smeta, "spec.metadata", SPEC_META, strict)?;
    let labels = string_map(&smeta["labels"], "spec.metadata.labels")?;
    for (k, v) in &labels {
        names::qualified_key(k).map_err(|e| format!("spec.metadata.labels: {e}"))?;
        names::label_value(v).map_err(|e| format!("spec.metadata.labels.{k}: {e}"))?;
    }
    let annotations = string_map(&smeta["annotations"], "spec.metadata.annotations")?;
    Ok((labels, annotations))
}

fn parse_template(t: &Value, strict: bool) -> Result<Template, String> {
    check_fields(t, "spec.template", TEMPLATE, strict)?;
    if strict && !string_at(&t["address"], "spec.template.address")?.is_empty() {
        return Err("spec.template.address: must be empty: each VM's address comes from its own WorkloadEntry".into());
    }
    let ports = parse_ports(&t["ports"])?;
    let weight = match &t["weight"] {
        Value::Null => 0,
        v => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("spec.template.weight: expected a whole number, got {v}"))?,
    };
    let service_account = string_at(&t["serviceAccount"], "spec.template.serviceAccount")?;
    if !service_account.is_empty() {
        names::dns1123_subdomain(&service_account)
            .map_err(|e| format!("spec.template.serviceAccount: {e}"))?;
    }
    let locality = string_at(&t["locality"], "spec.template.locality")?;
    if !locality.is_empty() {
        locality
            .parse::<Locality>()
            .map_err(|e| format!("spec.template.locality: {e}"))?;
    }
    Ok(Template {
        ports,
        service_account,
        network: string_at(&t["network"], "spec.template.network")?,
        locality,
        weight,
        labels: string_map(&t["labels"], "spec.template.labels")?,
    })
}

/// `spec.template.ports`: port names as Kubernetes allows them, numbers 1 to 65535.
fn parse_ports(v: &Value) -> Result<BTreeMap<String, u16>, String> {
    let mut ports = BTreeMap::new();
    let m = match v {
        Value::Null => return Ok(ports),
        Value::Object(m) => m,
        other => {
            return Err(format!(
                "spec.template.ports: expected a mapping of name to port, got {other}"
            ))
        }
    };
    for (k, v) in m {
        let n = v
            .as_u64()
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| {
                format!("spec.template.ports.{k}: expected a port from 1 to 65535, got {v}")
            })?;
        if k.is_empty()
            || k.len() > 63
            || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "spec.template.ports: invalid port name {k:?}: letters, digits and '-', at most 63"
            ));
        }
        ports.insert(k.clone(), n as u16);
    }
    Ok(ports)
}

fn parse_probe(v: &Value) -> Result<Option<Probe>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let p: Probe = serde_json::from_value(v.clone()).map_err(|e| format!("spec.probe: {e}"))?;
    p.validate().map_err(|e| format!("spec.probe: {e}"))?;
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;
    use std::io::Write as _;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    const GOOD: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata:\n  name: foo\n  namespace: bar\nspec:\n  metadata:\n    labels: {app: foo}\n  template:\n    ports: {grpc: 3550, http: 8080}\n    serviceAccount: sa\n  probe:\n    httpGet: {port: 8080, path: /ready}\n";

    #[test]
    fn a_good_file_round_trips() {
        let f = file(GOOD);
        let g = from_file(f.path(), "default").expect("parse");
        assert_eq!(g.namespace, "bar");
        assert_eq!(g.template.ports.get("http"), Some(&8080));
        assert_eq!(
            g.probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .map(|h| h.port),
            Some(8080)
        );
        let obj = g.to_object("v1");
        assert_eq!(obj["spec"]["template"]["serviceAccount"], "sa");
        assert_eq!(obj["spec"]["probe"]["httpGet"]["path"], "/ready");
        assert!(objects::is_managed(&obj));
        let back = Group::from_cluster(&obj).expect("read back");
        assert_eq!(back.template, g.template);
    }

    #[test]
    fn malformed_files_are_usage_errors_naming_the_file_and_field() {
        for (text, needle) in [
            ("not: [valid", "not valid YAML"),
            ("", "no WorkloadGroup"),
            (
                &GOOD.replace("ports:", "prots:"),
                "spec.template.prots: unknown field",
            ),
            (&GOOD.replace("3550", "0"), "spec.template.ports.grpc"),
            (
                &GOOD.replace("3550", "\"3550\""),
                "spec.template.ports.grpc",
            ),
            (&GOOD.replace("httpGet", "udpGet"), "spec.probe"),
            (
                &GOOD.replace("kind: WorkloadGroup", "kind: WorkloadEntry"),
                "expected kind WorkloadGroup",
            ),
            (&GOOD.replace("name: foo", "name: Foo_1"), "metadata.name"),
            (&format!("{GOOD}---\n{GOOD}"), "2 documents"),
        ] {
            let f = file(text);
            let err = from_file(f.path(), "default").expect_err(needle);
            let msg = format!("{err:#}");
            assert_eq!(exit_code(&err), 2, "{msg}");
            assert!(
                msg.starts_with(&format!("-f {}", f.path().display())),
                "{msg}"
            );
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }

    #[test]
    fn missing_namespace_and_service_account_get_defaults() {
        let f = file("apiVersion: networking.istio.io/v1beta1\nkind: WorkloadGroup\nmetadata: {name: foo}\nspec: {}\n");
        let g = from_file(f.path(), "vm").expect("parse").with_defaults();
        assert_eq!(g.namespace, "vm");
        assert_eq!(g.template.service_account, "default");
    }

    #[test]
    fn flag_values() {
        assert!("us-east1/us-east1-b/rack1".parse::<Locality>().is_ok());
        for bad in ["", "a//b", "a/b/c/d", "a b"] {
            assert!(bad.parse::<Locality>().is_err(), "{bad}");
        }
        assert!("network1".parse::<Network>().is_ok());
        assert!("net work".parse::<Network>().is_err());
        assert!("vm-sa".parse::<ObjectName>().is_ok());
        assert!("VM".parse::<ObjectName>().is_err());
    }
}
