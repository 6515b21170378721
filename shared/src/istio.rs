//! Typed Istio objects: the kinds the suite writes (ServiceEntry, WorkloadEntry, WorkloadGroup,
//! VirtualService), written by hand from the fields of Istio's CRD schemas that the suite sets.
//!
//! Every spec keeps the fields it does not name in a flattened `other` map, so that an object
//! read from a cluster and written back (split keeps every route field it does not own exactly
//! as read) loses nothing. Optional fields are `Option`s and are left out when `None`: an
//! empty map and an absent one are different field sets to server-side apply.

// The fields mirror Istio's CRD schemas one to one; their meaning is Istio's reference.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::objects::{self, Kind, MANAGED_BY_KEY, MANAGED_BY_VALUE};

/// One Istio object: the resource envelope around a typed spec.
///
/// A missing envelope field reads as empty rather than failing: what matters of an object read
/// is its spec and metadata, and a wrong type anywhere still fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "S: Deserialize<'de> + Default"))]
pub struct Object<S> {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
}

/// The four kinds the suite writes.
pub type ServiceEntry = Object<ServiceEntrySpec>;
pub type WorkloadEntry = Object<WorkloadEntrySpec>;
pub type WorkloadGroup = Object<WorkloadGroupSpec>;
pub type VirtualService = Object<VirtualServiceSpec>;

impl<S: Serialize> Object<S> {
    /// A new object of `kind` with the managed-by label.
    pub fn new(kind: &Kind, namespace: &str, name: &str, spec: S) -> Self {
        Self {
            api_version: kind.api_version(),
            kind: kind.kind.to_string(),
            metadata: managed_meta(namespace, name),
            spec,
        }
    }

    /// Adds labels (existing keys are overwritten).
    pub fn with_labels(mut self, labels: &BTreeMap<String, String>) -> Self {
        add(&mut self.metadata.labels, labels);
        self
    }

    /// The object as the write engine takes it.
    pub fn to_value(&self) -> Value {
        objects::to_value(self)
    }
}

impl<S> Object<S> {
    /// `metadata.name`, or "" when absent.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace`, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    /// Whether kubectl-mesh's label is on the object.
    pub fn is_managed(&self) -> bool {
        self.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_KEY))
            .is_some_and(|v| v == MANAGED_BY_VALUE)
    }

    /// The annotation `key`, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

impl<S: DeserializeOwned + Default> Object<S> {
    /// The typed form of an object as a cluster served it ([`objects::read`]).
    pub fn read(value: &Value) -> anyhow::Result<Self> {
        objects::read(value)
    }
}

/// Metadata of a new managed object: name, namespace and the managed-by label.
pub fn managed_meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY_KEY.to_string(),
            MANAGED_BY_VALUE.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// Adds `entries` to an optional label or annotation map; an empty `entries` leaves it as is.
pub fn add(map: &mut Option<BTreeMap<String, String>>, entries: &BTreeMap<String, String>) {
    if entries.is_empty() {
        return;
    }
    map.get_or_insert_with(BTreeMap::new)
        .extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
}

/// `networking.istio.io` ServiceEntry spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ServicePort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<WorkloadEntrySpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A ServiceEntry port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `networking.istio.io` WorkloadEntry spec; also a ServiceEntry's inline endpoint and a
/// WorkloadGroup's template, which have the same schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<BTreeMap<String, u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `networking.istio.io` WorkloadGroup spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadGroupSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<GroupMetadata>,
    pub template: WorkloadEntrySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The labels and annotations a WorkloadGroup gives its WorkloadEntries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `networking.istio.io` VirtualService spec: the hosts and the routes split sets weights on.
/// Route fields the suite does not own (matches, retries, fault injection, ...) stay in the
/// flattened maps, untouched, because split writes back every route it read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    // A delegate VirtualService has no hosts; `[]` and absent must both survive a write back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<Route>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Vec<Route>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Vec<Route>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One http, tcp or tls route: its weighted destinations and everything else as read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<RouteDestination>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A weighted destination of a route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteDestination {
    pub destination: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Where a route sends traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The port of a destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_not_named_round_trip_unchanged() {
        let read = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "hosts": ["reviews"],
                "gateways": ["mesh"],
                "http": [{
                    "match": [{"uri": {"prefix": "/v2"}}],
                    "retries": {"attempts": 3},
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}, "weight": 80},
                        {"destination": {"host": "reviews.default.global"}, "weight": 20, "headers": {"request": {"set": {"x": "1"}}}}
                    ]
                }]
            }
        });
        let vs: VirtualService = serde_json::from_value(read.clone()).expect("a VirtualService");
        assert_eq!(vs.to_value(), read);
    }

    #[test]
    fn named_route_fields_and_server_metadata_round_trip_unchanged() {
        // Route names, destination ports and everything the server keeps in metadata are typed
        // now; a read and a write must still give back what was read.
        let read = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": "reviews", "namespace": "default", "resourceVersion": "7",
                "uid": "0b7c", "generation": 2, "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"app": "reviews"},
                "annotations": {"mesh.kubectl.io/previous-weights": "{}"},
                "managedFields": [{
                    "manager": "kubectl-mesh", "operation": "Apply",
                    "apiVersion": "networking.istio.io/v1", "time": "2026-01-02T03:04:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:http": {}}}
                }]
            },
            "spec": {
                "hosts": ["reviews"],
                "tcp": [{"name": "", "route": [
                    {"destination": {"host": "db", "port": {"number": 5432, "x": 1}}, "weight": 0}
                ]}],
                "tls": [{"match": [{"sniHosts": ["a"]}], "route": []}],
                "http": [{"name": "canary", "route": [{"destination": {"host": "r", "subset": ""}}]}]
            }
        });
        let vs = VirtualService::read(&read).expect("a VirtualService");
        assert_eq!(vs.to_value(), read);
    }

    #[test]
    fn a_service_entry_read_and_written_back_is_unchanged() {
        // mesh-register's deregistration writes a ServiceEntry back with one endpoint fewer:
        // whatever else it holds (an unnamed port, a hostname endpoint, fields the suite does
        // not name, an empty hosts list of a VirtualService delegate) must come back as read.
        let read = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "mesh-expansion-db", "namespace": "default"},
            "spec": {
                "hosts": ["db.default.svc.cluster.local"],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "subjectAltNames": ["spiffe://cluster.local/ns/default/sa/db"],
                "ports": [{"number": 5432, "protocol": "TCP"}, {"number": 80, "name": "http", "targetPort": 8080}],
                "endpoints": [
                    {"address": "10.0.0.1", "ports": {"http": 8080}, "locality": "eu/a"},
                    {"address": "db.example.com", "weight": 2, "network": "n1", "serviceAccount": "db"}
                ],
                "workloadSelector": {"labels": {"app": "db"}}
            }
        });
        let se = ServiceEntry::read(&read).expect("a ServiceEntry");
        assert_eq!(se.to_value(), read);
        let delegate = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "d"}, "spec": {"hosts": [], "http": []}});
        let vs = VirtualService::read(&delegate).expect("a VirtualService");
        assert_eq!(vs.to_value(), delegate);
    }

    #[test]
    fn a_malformed_object_is_an_error_naming_it() {
        let read = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"http": [{"route": [{"destination": {"host": "r"}, "weight": "80"}]}]}
        });
        let err = VirtualService::read(&read).expect_err("a string weight");
        assert!(
            err.to_string()
                .starts_with("VirtualService default/reviews is malformed: "),
            "{err}"
        );
    }

    #[test]
    fn a_new_object_carries_the_managed_by_label() {
        let se = ServiceEntry::new(
            &objects::istio("ServiceEntry", "v1"),
            "ns",
            "x",
            ServiceEntrySpec {
                hosts: vec!["x.ns.svc.cluster.local".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            se.to_value(),
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": "x", "namespace": "ns", "labels": {MANAGED_BY_KEY: MANAGED_BY_VALUE}},
                "spec": {"hosts": ["x.ns.svc.cluster.local"]}
            })
        );
    }
}
