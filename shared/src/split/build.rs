//! Pure builders of the VirtualService objects mesh-split applies: new weights on an existing
//! route (everything else in the route kept exactly), a new split VirtualService, and the
//! previous-weights annotation that `undo` reads.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::route::{Destination, Route, RouteRef};
use crate::istio::{self, VirtualService};
use crate::objects::{self, FIELD_MANAGER};

/// The annotation holding the weights before the last change, as JSON.
pub const PREVIOUS_ANNOTATION: &str = "mesh.kubectl.io/previous-weights";

/// The weights a route had before the last change: what `undo` restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// The route: its name, or `http/0`.
    pub route: String,
    /// Each destination with its weight, in the route's order.
    pub destinations: Vec<PreviousWeight>,
    /// The run that recorded it, the same in every context of that run: `undo` across
    /// contexts refuses ones that were not changed together (absent: written before 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

/// One destination and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousWeight {
    /// The destination.
    #[serde(flatten)]
    pub destination: Destination,
    /// Its weight.
    pub weight: u32,
}

impl Previous {
    /// What `route` holds now.
    pub fn of(route: &Route) -> Self {
        Self {
            route: route.at.to_string(),
            destinations: route
                .destinations
                .iter()
                .zip(&route.weights)
                .map(|(d, w)| PreviousWeight {
                    destination: d.clone(),
                    weight: *w,
                })
                .collect(),
            change: None,
        }
    }

    /// The same, recorded by the run `change`.
    pub fn by(mut self, change: &str) -> Self {
        self.change = Some(change.to_string());
        self
    }

    /// The weights alone.
    pub fn weights(&self) -> Vec<u32> {
        self.destinations.iter().map(|d| d.weight).collect()
    }

    /// The destinations alone.
    pub fn destination_list(&self) -> Vec<Destination> {
        self.destinations
            .iter()
            .map(|d| d.destination.clone())
            .collect()
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A new change ID: when the run started, and which process ran it, so two runs never share
/// one and a person can read it.
pub fn change_id() -> String {
    let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    format!("{now}-{}", std::process::id())
}

/// The raw previous-weights annotation of `vs`, if any.
pub fn previous_raw(vs: &VirtualService) -> Option<&str> {
    vs.annotation(PREVIOUS_ANNOTATION)
}

/// The previous weights recorded on `vs`: `None` without the annotation, `Err` when unreadable.
pub fn read_previous(vs: &VirtualService) -> Option<Result<Previous, String>> {
    let raw = previous_raw(vs)?;
    Some(serde_json::from_str(raw).map_err(|e| {
        format!("annotation {PREVIOUS_ANNOTATION} is not what kubectl-mesh wrote ({e})")
    }))
}

/// Our own server-side-apply entry: the fields kubectl-mesh owns, which every apply must
/// repeat (a field an apply leaves out is removed when no other manager owns it).
fn our_fields(live: &ObjectMeta) -> Map<String, Value> {
    let mut merged = Map::new();
    let entries: &[ManagedFieldsEntry] = live.managed_fields.as_deref().unwrap_or_default();
    for e in entries {
        let ours =
            e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply");
        let main = e.subresource.as_deref().is_none_or(str::is_empty);
        // The field set is the server's own notation (`f:spec`, `k:{...}`), untyped by nature.
        let fields = e.fields_v1.as_ref().and_then(|f| f.0.as_object());
        if let (true, true, Some(f)) = (ours, main, fields) {
            merge_fields(&mut merged, f);
        }
    }
    merged
}

fn merge_fields(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v.as_object()) {
            (Some(Value::Object(a)), Some(b)) => merge_fields(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

fn owned_keys(fields: &Map<String, Value>, path: &[&str]) -> Vec<String> {
    let mut node = fields;
    for p in path {
        match node.get(&format!("f:{p}")).and_then(Value::as_object) {
            Some(n) => node = n,
            None => return Vec::new(),
        }
    }
    node.keys()
        .filter_map(|k| k.strip_prefix("f:").map(String::from))
        .collect()
}

/// The apply that sets `weights` on the route at `at` of `live`.
///
/// The object carries only what kubectl-mesh owns: the route list (atomic in Istio's schema,
/// so it is sent whole, with every other field of every route exactly as read), the
/// previous-weights annotation (its raw value; `None` removes it), and whatever an earlier
/// kubectl-mesh apply set, so nothing of ours is dropped. Labels are not added to objects
/// someone else created.
pub fn weights_object(
    live: &VirtualService,
    at: &RouteRef,
    weights: &[u32],
    previous: Option<&str>,
) -> Value {
    let ours = our_fields(&live.metadata);
    let kept = |field: &str, from: &Option<BTreeMap<String, String>>| {
        let from = from.as_ref();
        owned_keys(&ours, &["metadata", field])
            .into_iter()
            .filter_map(|key| Some((key.clone(), from?.get(&key)?.clone())))
            .collect::<BTreeMap<String, String>>()
    };
    let labels = kept("labels", &live.metadata.labels);
    let mut annotations = kept("annotations", &live.metadata.annotations);
    match previous {
        Some(p) => {
            annotations.insert(PREVIOUS_ANNOTATION.into(), p.to_string());
        }
        None => {
            annotations.remove(PREVIOUS_ANNOTATION);
        }
    }
    let non_empty = |m: BTreeMap<String, String>| (!m.is_empty()).then_some(m);
    let metadata = ObjectMeta {
        name: Some(live.name().to_string()),
        namespace: live.metadata.namespace.clone(),
        labels: non_empty(labels),
        annotations: non_empty(annotations),
        ..ObjectMeta::default()
    };
    let mut spec = live.spec.clone();
    if let Some(route) = at
        .kind
        .list_mut(&mut spec)
        .and_then(|list| list.get_mut(at.index))
    {
        for (d, w) in route.route.iter_mut().flatten().zip(weights) {
            d.weight = Some(i64::from(*w));
        }
    }
    // Only what kubectl-mesh owns goes out, plus the whole route list (atomic in Istio).
    let field = at.kind.field();
    let owned = owned_keys(&ours, &["spec"]);
    let mut spec = match objects::to_value(&spec) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    spec.retain(|key, _| key == field || owned.contains(key));
    istio::Object {
        api_version: live.api_version.clone(),
        kind: "VirtualService".to_string(),
        metadata,
        spec,
    }
    .to_value()
}

/// A new VirtualService for `host` with one http route to `to`, in that order.
pub fn created_object(
    version: &str,
    namespace: &str,
    name: &str,
    host: &str,
    to: &[String],
    weights: &[u32],
) -> Value {
    let kind = objects::istio("VirtualService", version);
    let route = to
        .iter()
        .zip(weights)
        .map(|(h, w)| istio::RouteDestination {
            destination: istio::Destination {
                host: h.clone(),
                ..Default::default()
            },
            weight: Some(i64::from(*w)),
            ..Default::default()
        })
        .collect();
    let spec = istio::VirtualServiceSpec {
        hosts: Some(vec![host.to_string()]),
        http: Some(vec![istio::Route {
            route: Some(route),
            ..Default::default()
        }]),
        ..Default::default()
    };
    istio::VirtualService::new(&kind, namespace, name, spec).to_value()
}

/// The name `--create` gives a VirtualService when `--name` is absent: `<host's first label>-split`.
pub fn default_name(host: &str) -> String {
    let first = host
        .trim_start_matches("*.")
        .split('.')
        .next()
        .unwrap_or("traffic");
    let mut base: String = first.chars().take(57).collect();
    base = base.trim_end_matches('-').to_string();
    format!("{base}-split")
}
