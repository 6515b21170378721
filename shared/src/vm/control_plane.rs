//! What the VM files need from the Istio control plane: the mesh config, the cluster ID, the
//! cluster's network, and where each comes from (Namespace `istio-system`, ConfigMaps
//! `istio[-REV]`, `istio-sidecar-injector[-REV]`, Deployment `istiod[-REV]`): the lookup chains
//! as data, read by `vm::detect`.

use std::fmt;

use serde_json::Value;

use crate::vm::bootstrap::revisioned;

/// The cluster ID Istio uses when nothing else says otherwise.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
/// The ConfigMap istiod copies the root certificate into, in every namespace.
pub const ROOT_CERT_CONFIGMAP: &str = "istio-ca-root-cert";
/// Its key.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";

/// `NAME` or `NAME-REV`.
pub fn with_revision(name: &str, revision: Option<&str>) -> String {
    match revisioned(revision) {
        Some(r) => format!("{name}-{r}"),
        None => name.to_string(),
    }
}

/// The control-plane objects settings are read from, each fetched at most once per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    /// The Istio namespace itself (its labels).
    Namespace,
    /// ConfigMap `istio-sidecar-injector[-REV]` (key `values`, JSON).
    Injector,
    /// Deployment `istiod[-REV]` (its containers' env).
    Istiod,
    /// ConfigMap `istio[-REV]` (keys `mesh` and `meshNetworks`).
    Mesh,
}

impl Object {
    /// Its name for a control plane of `revision`.
    pub fn name(self, istio_namespace: &str, revision: Option<&str>) -> String {
        match self {
            Object::Namespace => istio_namespace.to_string(),
            Object::Injector => with_revision("istio-sidecar-injector", revision),
            Object::Istiod => with_revision("istiod", revision),
            Object::Mesh => with_revision("istio", revision),
        }
    }

    /// `Kind NS/NAME` for messages.
    pub fn describe(self, istio_namespace: &str, revision: Option<&str>) -> String {
        let name = self.name(istio_namespace, revision);
        match self {
            Object::Namespace => format!("Namespace {name}"),
            Object::Injector | Object::Mesh => format!("ConfigMap {istio_namespace}/{name}"),
            Object::Istiod => format!("Deployment {istio_namespace}/{name}"),
        }
    }
}

/// One place a control-plane setting can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A label of the Istio namespace.
    NamespaceLabel(&'static str),
    /// An env var of istiod's `discovery` container.
    IstiodEnv(&'static str),
    /// A dotted key of the injector's `values`, e.g. `global.network`.
    InjectorValues(&'static str),
    /// The network of `meshNetworks` whose endpoints include `fromRegistry: <cluster ID>`.
    MeshNetworks,
}

/// Where the cluster ID is read from, in Istio's order of precedence for VM files.
pub const CLUSTER_ID: &[Lookup] = &[
    Lookup::InjectorValues("global.multiCluster.clusterName"),
    Lookup::IstiodEnv("CLUSTER_ID"),
];

/// The label istiod takes the cluster's network from, on its own namespace.
pub const NETWORK_LABEL: &str = "topology.istio.io/network";

/// Where the cluster's network is read from: the label istiod itself honours first, then what
/// the install set (istiod's env, the injector values), then the mesh networks config.
pub const NETWORK: &[Lookup] = &[
    Lookup::NamespaceLabel(NETWORK_LABEL),
    Lookup::IstiodEnv("NETWORK"),
    Lookup::InjectorValues("global.network"),
    Lookup::MeshNetworks,
];

impl Lookup {
    /// The object this lookup reads.
    pub fn object(self) -> Object {
        match self {
            Lookup::NamespaceLabel(_) => Object::Namespace,
            Lookup::IstiodEnv(_) => Object::Istiod,
            Lookup::InjectorValues(_) => Object::Injector,
            Lookup::MeshNetworks => Object::Mesh,
        }
    }

    /// The value in `obj` (as read from the cluster); `None` when unset or empty. An error only
    /// for content that cannot be parsed, which names the key.
    pub fn find(self, obj: &Value, cluster_id: &str) -> Result<Option<String>, String> {
        let found = match self {
            Lookup::NamespaceLabel(key) => {
                obj["metadata"]["labels"][key].as_str().map(String::from)
            }
            Lookup::IstiodEnv(name) => env_of_istiod(obj, name),
            Lookup::InjectorValues(key) => match obj["data"]["values"].as_str() {
                Some(values) => value_at(values, key)?,
                None => None,
            },
            Lookup::MeshNetworks => match obj["data"]["meshNetworks"].as_str() {
                Some(text) => network_of_registry(text, cluster_id)?,
                None => None,
            },
        };
        Ok(found.filter(|v| !v.is_empty()))
    }

    /// Where a value found by this lookup came from.
    pub fn source(self, istio_namespace: &str, revision: Option<&str>, cluster_id: &str) -> Source {
        let at = self.object().describe(istio_namespace, revision);
        match self {
            Lookup::NamespaceLabel(key) => Source(format!("from the {key} label of {at}")),
            Lookup::IstiodEnv(name) => Source(format!("from the {name} env of {at}")),
            Lookup::InjectorValues(key) => Source(format!("from {key} in {at}")),
            Lookup::MeshNetworks => Source(format!(
                "from meshNetworks in {at}, whose endpoints include fromRegistry: {cluster_id}"
            )),
        }
    }

    /// What was looked at and not found, for the message when no lookup finds a value.
    pub fn missing(
        self,
        istio_namespace: &str,
        revision: Option<&str>,
        cluster_id: &str,
    ) -> String {
        let at = self.object().describe(istio_namespace, revision);
        match self {
            Lookup::NamespaceLabel(key) => format!("no {key} label on {at}"),
            Lookup::IstiodEnv(name) => format!("no {name} env on {at}"),
            Lookup::InjectorValues(key) => format!("no {key} in {at}"),
            Lookup::MeshNetworks => {
                format!("no meshNetworks entry with fromRegistry: {cluster_id} in {at}")
            }
        }
    }
}

/// Where a setting came from, printed after it (`cluster ID: c1 (from ...)`), so the user can
/// tell a guess from a fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source(pub String);

impl Source {
    /// Given by a flag.
    pub fn flag(flag: &str) -> Source {
        Source(format!("from {flag}"))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the cluster ID is Istio's default.
pub const CLUSTER_ID_DEFAULT: &str =
    "Istio's default: no --cluster-id, no global.multiCluster.clusterName, no CLUSTER_ID on istiod";

/// A dotted key (`global.multiCluster.clusterName`) of the injector's `values` (JSON).
fn value_at(values: &str, key: &str) -> Result<Option<String>, String> {
    let v: Value =
        serde_json::from_str(values).map_err(|e| format!("key values is not JSON: {e}"))?;
    let pointer = format!("/{}", key.replace('.', "/"));
    Ok(v.pointer(&pointer)
        .and_then(Value::as_str)
        .map(String::from))
}

/// The env var `name` of istiod's `discovery` container (else of any container).
fn env_of_istiod(deployment: &Value, name: &str) -> Option<String> {
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)?;
    let mut ordered: Vec<&Value> = containers
        .iter()
        .filter(|c| c["name"] == "discovery")
        .collect();
    ordered.extend(containers.iter().filter(|c| c["name"] != "discovery"));
    ordered.iter().find_map(|c| {
        c["env"].as_array()?.iter().find_map(|e| {
            (e["name"] == name)
                .then(|| e["value"].as_str())
                .flatten()
                .filter(|v| !v.is_empty())
                .map(String::from)
        })
    })
}

/// The network of `meshNetworks` (YAML, `networks: {NAME: {endpoints: [{fromRegistry: ID}]}}`)
/// that holds the registry `cluster_id`; the first by name when several do.
fn network_of_registry(text: &str, cluster_id: &str) -> Result<Option<String>, String> {
    let v: Value = serde_yaml::from_str(text)
        .map_err(|e| format!("key meshNetworks is not valid YAML: {e}"))?;
    let Some(networks) = v["networks"].as_object() else {
        return Ok(None);
    };
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    Ok(names
        .into_iter()
        .find(|n| {
            networks[n.as_str()]["endpoints"]
                .as_array()
                .is_some_and(|eps| eps.iter().any(|e| e["fromRegistry"] == cluster_id))
        })
        .cloned())
}

/// Whether the VMs reach the cluster's pods directly: same network, or either one unset (Istio
/// treats an empty network as reachable from every network).
pub fn same_network(vm: &str, cluster: &str) -> bool {
    vm.is_empty() || cluster.is_empty() || vm == cluster
}

/// The sentence `files` prints about the path the VMs' traffic to the cluster's pods takes;
/// `gateway` names the east-west gateway (with its address when known).
pub fn path(vm: &str, cluster: &str, gateway: &str) -> String {
    if !same_network(vm, cluster) {
        return format!(
            "the VMs are on network {vm}, the cluster on {cluster}: they reach its pods through the east-west gateway, {gateway}"
        );
    }
    let why = match (vm.is_empty(), cluster.is_empty()) {
        (false, false) => format!("the VMs and the cluster are both on network {vm}"),
        (true, true) => "neither the group nor the cluster sets a network".to_string(),
        (true, false) => {
            format!("the group sets no network, which Istio treats as the cluster's ({cluster})")
        }
        (false, true) => {
            format!("the cluster sets no network, which Istio treats as the VMs' ({vm})")
        }
    };
    format!("pod IPs directly ({why})")
}

/// Parses the `mesh` key of ConfigMap `istio[-REV]`.
pub fn parse_mesh(text: &str) -> Result<Value, String> {
    let v: Value =
        serde_yaml::from_str(text).map_err(|e| format!("key mesh is not valid YAML: {e}"))?;
    match v {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(v),
        _ => Err("key mesh is not a mapping".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookups_read_each_source() {
        let values = json!({"data": {"values": r#"{"global":{"multiCluster":{"clusterName":"c1"},"network":"n1"}}"#}});
        let id = Lookup::InjectorValues("global.multiCluster.clusterName");
        assert_eq!(id.find(&values, ""), Ok(Some("c1".into())));
        assert_eq!(
            Lookup::InjectorValues("global.network").find(&values, ""),
            Ok(Some("n1".into()))
        );
        let empty =
            json!({"data": {"values": r#"{"global":{"multiCluster":{"clusterName":""}}}"#}});
        assert_eq!(id.find(&empty, ""), Ok(None));
        assert!(id.find(&json!({"data": {"values": "{"}}), "").is_err());

        let d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "env": [{"name": "CLUSTER_ID", "value": "wrong"}]},
            {"name": "discovery", "env": [{"name": "X"}, {"name": "CLUSTER_ID", "value": "c2"}, {"name": "NETWORK", "value": "n2"}]}
        ]}}}});
        assert_eq!(
            Lookup::IstiodEnv("CLUSTER_ID").find(&d, ""),
            Ok(Some("c2".into()))
        );
        assert_eq!(
            Lookup::IstiodEnv("NETWORK").find(&d, ""),
            Ok(Some("n2".into()))
        );
        assert_eq!(
            Lookup::IstiodEnv("CLUSTER_ID").find(&json!({}), ""),
            Ok(None)
        );

        let ns = json!({"metadata": {"labels": {NETWORK_LABEL: "n3"}}});
        assert_eq!(
            Lookup::NamespaceLabel(NETWORK_LABEL).find(&ns, ""),
            Ok(Some("n3".into()))
        );

        let mesh = json!({"data": {"meshNetworks": "networks:\n  west:\n    endpoints: [{fromRegistry: c9}]\n  east:\n    endpoints: [{fromCidr: 10.0.0.0/8}, {fromRegistry: c1}]\n    gateways: [{address: 1.2.3.4, port: 15443}]\n"}});
        assert_eq!(
            Lookup::MeshNetworks.find(&mesh, "c1"),
            Ok(Some("east".into()))
        );
        assert_eq!(Lookup::MeshNetworks.find(&mesh, "c2"), Ok(None));
        let none = json!({"data": {"meshNetworks": "networks: {}"}});
        assert_eq!(Lookup::MeshNetworks.find(&none, "c1"), Ok(None));
        assert!(Lookup::MeshNetworks
            .find(&json!({"data": {"meshNetworks": "networks: ["}}), "c1")
            .is_err());
    }

    #[test]
    fn sources_read_like_sentences() {
        assert_eq!(
            CLUSTER_ID[0].source("istio-system", None, "").to_string(),
            "from global.multiCluster.clusterName in ConfigMap istio-system/istio-sidecar-injector"
        );
        assert_eq!(
            CLUSTER_ID[1]
                .source("istio-system", Some("canary"), "")
                .to_string(),
            "from the CLUSTER_ID env of Deployment istio-system/istiod-canary"
        );
        assert_eq!(
            NETWORK[0].source("istio-system", None, "").to_string(),
            "from the topology.istio.io/network label of Namespace istio-system"
        );
        assert_eq!(
            NETWORK[3].source("istio-system", None, "c1").to_string(),
            "from meshNetworks in ConfigMap istio-system/istio, whose endpoints include fromRegistry: c1"
        );
        assert_eq!(
            NETWORK[2].missing("istio-system", None, "c1"),
            "no global.network in ConfigMap istio-system/istio-sidecar-injector"
        );
        assert_eq!(
            Source::flag("--cluster-id").to_string(),
            "from --cluster-id"
        );
    }

    #[test]
    fn an_empty_network_is_every_network() {
        assert!(same_network("", "n1"));
        assert!(same_network("n1", ""));
        assert!(same_network("n1", "n1"));
        assert!(!same_network("n1", "n2"));
        let gw = "Service istio-system/istio-eastwestgateway (203.0.113.10)";
        assert_eq!(
            path("n1", "n1", gw),
            "pod IPs directly (the VMs and the cluster are both on network n1)"
        );
        assert_eq!(
            path("vm-net", "n1", gw),
            "the VMs are on network vm-net, the cluster on n1: they reach its pods through the east-west gateway, Service istio-system/istio-eastwestgateway (203.0.113.10)"
        );
        assert!(path("", "n1", gw).starts_with("pod IPs directly (the group sets no network"));
    }

    #[test]
    fn names_with_revisions() {
        assert_eq!(with_revision("istio", None), "istio");
        assert_eq!(with_revision("istio", Some("default")), "istio");
        assert_eq!(with_revision("istio", Some("canary")), "istio-canary");
    }
}
