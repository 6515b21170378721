//! Which WorkloadEntries belong to a group, and the table `mesh-vm status` shows them in.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::time;
use crate::vm::mtls::Effective;

/// The annotation istiod sets on auto-registered entries.
pub const AUTO_REGISTRATION_GROUP: &str = "istio.io/autoRegistrationGroup";
/// When the VM's proxy connected.
pub const CONNECTED_AT: &str = "istio.io/connectedAt";
/// When it disconnected (the entry is deleted after a grace period).
pub const DISCONNECTED_AT: &str = "istio.io/disconnectedAt";

/// Table headers.
pub const HEADERS: [&str; 7] = [
    "NAME",
    "ADDRESS",
    "HEALTHY",
    "CONNECTED",
    "MTLS",
    "POLICY",
    "AGE",
];

/// The labels Istio gives an entry's workload: `spec.labels`, then `metadata.labels`, which win.
pub fn labels(entry: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for at in [&entry["spec"]["labels"], &entry["metadata"]["labels"]] {
        if let Some(m) = at.as_object() {
            for (k, v) in m {
                if let Some(v) = v.as_str() {
                    out.insert(k.clone(), v.to_string());
                }
            }
        }
    }
    out
}

/// Whether an entry belongs to the group: auto-registered by it, owned by it, or (for entries
/// made by hand) carrying all of the group's labels.
pub fn belongs(entry: &Value, group: &str, group_labels: &BTreeMap<String, String>) -> bool {
    let meta = &entry["metadata"];
    if meta["annotations"][AUTO_REGISTRATION_GROUP].as_str() == Some(group) {
        return true;
    }
    let owned = meta["ownerReferences"].as_array().is_some_and(|refs| {
        refs.iter()
            .any(|r| r["kind"] == "WorkloadGroup" && r["name"].as_str() == Some(group))
    });
    if owned {
        return true;
    }
    !group_labels.is_empty()
        && group_labels.iter().all(|(k, v)| {
            let labels = &entry["spec"]["labels"];
            let from_meta = &meta["labels"];
            labels[k].as_str() == Some(v.as_str()) || from_meta[k].as_str() == Some(v.as_str())
        })
}

/// One table row: NAME, ADDRESS, HEALTHY, CONNECTED, MTLS, POLICY, AGE.
pub fn row(entry: &Value, mtls: &Effective, now: i64) -> Vec<String> {
    let meta = &entry["metadata"];
    let none = || "<none>".to_string();
    let address = entry["spec"]["address"]
        .as_str()
        .filter(|a| !a.is_empty())
        .map_or_else(none, String::from);
    let healthy = entry["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Healthy"))
        .and_then(|c| c["status"].as_str())
        .map_or_else(none, String::from);
    let annotations = &meta["annotations"];
    let connected = match (
        annotations[CONNECTED_AT].as_str(),
        annotations[DISCONNECTED_AT].as_str(),
    ) {
        (_, Some(d)) => format!("no ({} ago)", time::age_of(d, now)),
        (Some(c), None) => time::age_of(c, now),
        (None, None) => none(),
    };
    let age = meta["creationTimestamp"]
        .as_str()
        .map_or_else(|| "<unknown>".into(), |t| time::age_of(t, now));
    vec![
        meta["name"].as_str().unwrap_or("").to_string(),
        address,
        healthy,
        connected,
        mtls.column(),
        mtls.policy.clone(),
        age,
    ]
}

/// The table, rows sorted by name; `mtls[i]` is the mode in effect for `entries[i]`.
pub fn table(entries: &[Value], mtls: &[Effective], now: i64) -> String {
    let mut rows: Vec<Vec<String>> = entries
        .iter()
        .zip(mtls)
        .map(|(e, m)| row(e, m, now))
        .collect();
    rows.sort();
    crate::table::render(&HEADERS, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(name: &str, annotations: Value, labels: Value) -> Value {
        json!({"metadata": {"name": name, "annotations": annotations, "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"address": "10.0.0.1", "labels": labels}})
    }

    #[test]
    fn membership() {
        let gl: BTreeMap<String, String> = [("app".to_string(), "foo".to_string())].into();
        assert!(belongs(
            &entry("a", json!({AUTO_REGISTRATION_GROUP: "foo"}), json!({})),
            "foo",
            &BTreeMap::new()
        ));
        assert!(belongs(
            &entry("b", json!({}), json!({"app": "foo", "x": "y"})),
            "foo",
            &gl
        ));
        assert!(!belongs(
            &entry("c", json!({}), json!({"app": "bar"})),
            "foo",
            &gl
        ));
        assert!(!belongs(
            &entry("d", json!({}), json!({})),
            "foo",
            &BTreeMap::new()
        ));
        let mut owned = entry("e", json!({}), json!({}));
        owned["metadata"]["ownerReferences"] = json!([{"kind": "WorkloadGroup", "name": "foo"}]);
        assert!(belongs(&owned, "foo", &BTreeMap::new()));
    }

    fn permissive() -> Effective {
        Effective {
            mode: "PERMISSIVE".into(),
            policy: "<default>".into(),
            ports: BTreeMap::new(),
        }
    }

    #[test]
    fn rows_read_like_kubectl() {
        let p = permissive();
        let now = 1_767_225_600 + 600;
        let mut e = entry(
            "foo-10-0-0-1",
            json!({CONNECTED_AT: "2026-01-01T00:05:00.123456789Z"}),
            json!({}),
        );
        e["status"] = json!({"conditions": [{"type": "Healthy", "status": "True"}]});
        assert_eq!(
            row(&e, &p, now),
            vec![
                "foo-10-0-0-1",
                "10.0.0.1",
                "True",
                "5m",
                "PERMISSIVE",
                "<default>",
                "10m"
            ]
        );
        let manual = entry("manual", json!({}), json!({}));
        assert_eq!(
            row(&manual, &p, now)[2..4],
            ["<none>".to_string(), "<none>".to_string()]
        );
        let gone = entry(
            "gone",
            json!({CONNECTED_AT: "2026-01-01T00:00:00Z", DISCONNECTED_AT: "2026-01-01T00:08:00Z"}),
            json!({}),
        );
        assert_eq!(row(&gone, &p, now)[3], "no (2m ago)");
    }

    #[test]
    fn metadata_labels_win_over_spec_labels() {
        let mut e = entry("a", json!({}), json!({"app": "spec", "v": "1"}));
        e["metadata"]["labels"] = json!({"app": "meta"});
        assert_eq!(
            labels(&e),
            [
                ("app".to_string(), "meta".to_string()),
                ("v".to_string(), "1".to_string())
            ]
            .into()
        );
    }
}
