//! mTLS on a group's VMs: the PeerAuthentication `group --mtls` writes, the Kubernetes workloads
//! its selector would catch too, and the mode Istio puts in effect for a set of labels.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::objects;
use crate::vm::group::Group;

/// `--mtls`: the mode of the group's PeerAuthentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MtlsMode {
    /// Accept both mTLS and plain text (what Istio's VM guide sets)
    Permissive,
    /// Accept mTLS only
    Strict,
    /// Inherit the namespace's or the mesh's mode (the policy stays, its selector in place)
    Unset,
}

impl MtlsMode {
    /// The mode as the API spells it.
    pub fn api(self) -> &'static str {
        match self {
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
            MtlsMode::Unset => "UNSET",
        }
    }
}

/// PeerAuthentication `NAME` in the group's namespace, selecting exactly the group's workloads
/// (all of their labels), at `version` of `security.istio.io`.
pub fn peer_authentication(group: &Group, mode: MtlsMode, version: &str) -> Value {
    let kind = objects::peer_authentication(version);
    let mut obj = objects::new_object(&kind, Some(&group.namespace), &group.name);
    obj["spec"] = json!({
        "selector": {"matchLabels": group.workload_labels()},
        "mtls": {"mode": mode.api()},
    });
    obj
}

/// Whether every key of `selector` is in `labels` with the same value.
pub fn selects(selector: &BTreeMap<String, String>, labels: &Value) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels[k].as_str() == Some(v.as_str()))
}

/// The labels the pods of an object get: a Pod's own, a CronJob's job template's pod template,
/// any other workload's pod template.
fn pod_labels(obj: &Value) -> &Value {
    match obj["kind"].as_str() {
        Some("Pod") => &obj["metadata"]["labels"],
        Some("CronJob") => &obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
        _ => &obj["spec"]["template"]["metadata"]["labels"],
    }
}

/// The objects (Pods and workloads, as listed) whose pods `selector` matches, as sorted
/// `Kind/name`. An object whose controller is caught too is left out (a Deployment's
/// ReplicaSets and Pods), so the list names what the user manages.
pub fn caught(selector: &BTreeMap<String, String>, objects: &[Value]) -> Vec<String> {
    let hits: Vec<&Value> = objects
        .iter()
        .filter(|o| selects(selector, pod_labels(o)))
        .collect();
    let uids: Vec<&str> = hits
        .iter()
        .filter_map(|o| o["metadata"]["uid"].as_str())
        .collect();
    let mut names: Vec<String> = hits
        .iter()
        .filter(|o| {
            !o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r["controller"] == true
                            && r["uid"].as_str().is_some_and(|u| uids.contains(&u))
                    })
                })
        })
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("object"),
                objects::name(o)
            )
        })
        .collect();
    names.sort();
    names
}

/// The mTLS mode in effect for a workload and the policy that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// `STRICT`, `PERMISSIVE` or `DISABLE`.
    pub mode: String,
    /// `NS/NAME` of the deciding PeerAuthentication, or `<default>` (Istio's PERMISSIVE).
    pub policy: String,
    /// Port-level modes of the workload's own policy, port → mode.
    pub ports: BTreeMap<String, String>,
}

impl Effective {
    /// When the policies could not be read.
    pub fn unknown() -> Effective {
        Effective {
            mode: "<unknown>".into(),
            policy: "<unknown>".into(),
            ports: BTreeMap::new(),
        }
    }

    /// The MTLS column: the mode, then any port that differs (`PERMISSIVE (8083: DISABLE)`).
    pub fn column(&self) -> String {
        let ports: Vec<String> = self
            .ports
            .iter()
            .filter(|(_, m)| **m != self.mode)
            .map(|(p, m)| format!("{p}: {m}"))
            .collect();
        if ports.is_empty() {
            self.mode.clone()
        } else {
            format!("{} ({})", self.mode, ports.join(", "))
        }
    }
}

/// The policy's mode; `UNSET` when it sets none.
fn mode_of(policy: &Value) -> &str {
    policy["spec"]["mtls"]["mode"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or("UNSET")
}

fn selector_of(policy: &Value) -> BTreeMap<String, String> {
    policy["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Of several policies at one level Istio takes the oldest (then the first by name).
fn oldest<'a>(policies: impl Iterator<Item = &'a Value>) -> Option<&'a Value> {
    policies.min_by(|a, b| {
        let key = |p: &'a Value| {
            (
                p["metadata"]["creationTimestamp"].as_str().unwrap_or(""),
                objects::name(p),
            )
        };
        key(a).cmp(&key(b))
    })
}

/// The mode Istio applies to a workload with `labels` in `namespace`: its own policy (a
/// selector that matches), else the namespace's (no selector), else the mesh's (no selector in
/// the root namespace), else PERMISSIVE; a level whose mode is UNSET defers to the next.
/// `in_namespace` are the namespace's PeerAuthentications, `in_root` the root namespace's.
pub fn effective(
    labels: &BTreeMap<String, String>,
    in_namespace: &[Value],
    in_root: &[Value],
) -> Effective {
    let labels = json!(labels);
    let workload = oldest(in_namespace.iter().filter(|p| {
        let s = selector_of(p);
        !s.is_empty() && selects(&s, &labels)
    }));
    let namespace_wide = oldest(in_namespace.iter().filter(|p| selector_of(p).is_empty()));
    let mesh_wide = oldest(in_root.iter().filter(|p| selector_of(p).is_empty()));
    let decided = [workload, namespace_wide, mesh_wide]
        .into_iter()
        .flatten()
        .find(|p| mode_of(p) != "UNSET");
    let (mode, policy) = match decided {
        Some(p) => (
            mode_of(p).to_string(),
            format!(
                "{}/{}",
                objects::namespace(p).unwrap_or(""),
                objects::name(p)
            ),
        ),
        None => ("PERMISSIVE".to_string(), "<default>".to_string()),
    };
    let ports = workload
        .and_then(|p| p["spec"]["portLevelMtls"].as_object())
        .map(|m| {
            m.iter()
                .map(|(port, v)| {
                    let m = v["mode"]
                        .as_str()
                        .filter(|m| !m.is_empty() && *m != "UNSET");
                    (port.clone(), m.unwrap_or(mode.as_str()).to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Effective {
        mode,
        policy,
        ports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn analytics() -> Group {
        Group {
            name: "analytics".into(),
            namespace: "vm".into(),
            labels: labels(&[("app", "analytics"), ("version", "v0")]),
            ..Group::default()
        }
    }

    #[test]
    fn snapshot_peer_authentication_permissive() {
        insta::assert_yaml_snapshot!(peer_authentication(
            &analytics(),
            MtlsMode::Permissive,
            "v1"
        ));
    }

    #[test]
    fn the_selector_is_all_of_the_workloads_labels() {
        let mut g = analytics();
        g.template.labels = labels(&[("app", "template-loses"), ("tier", "backend")]);
        let pa = peer_authentication(&g, MtlsMode::Unset, "v1beta1");
        assert_eq!(pa["apiVersion"], "security.istio.io/v1beta1");
        assert_eq!(
            pa["spec"]["selector"]["matchLabels"],
            json!({"app": "analytics", "tier": "backend", "version": "v0"})
        );
        assert_eq!(pa["spec"]["mtls"]["mode"], "UNSET");
    }

    #[test]
    fn caught_names_what_the_user_manages() {
        let sel = labels(&[("app", "analytics"), ("version", "v0")]);
        let objs = vec![
            json!({"kind": "Deployment", "metadata": {"name": "web", "uid": "d1"},
                   "spec": {"template": {"metadata": {"labels": {"app": "analytics", "version": "v0", "x": "y"}}}}}),
            json!({"kind": "ReplicaSet", "metadata": {"name": "web-5d9", "uid": "r1",
                   "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d1", "controller": true}]},
                   "spec": {"template": {"metadata": {"labels": {"app": "analytics", "version": "v0"}}}}}),
            json!({"kind": "Pod", "metadata": {"name": "web-5d9-abc", "uid": "p1", "labels": {"app": "analytics", "version": "v0"},
                   "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9", "uid": "r1", "controller": true}]}}),
            json!({"kind": "Pod", "metadata": {"name": "lone", "labels": {"app": "analytics", "version": "v0"}}}),
            json!({"kind": "CronJob", "metadata": {"name": "nightly"},
                   "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "analytics", "version": "v0"}}}}}}}),
            json!({"kind": "StatefulSet", "metadata": {"name": "other"},
                   "spec": {"template": {"metadata": {"labels": {"app": "analytics"}}}}}),
            json!({"kind": "Job", "metadata": {"name": "no-template"}}),
        ];
        assert_eq!(
            caught(&sel, &objs),
            ["CronJob/nightly", "Deployment/web", "Pod/lone"]
        );
        assert!(caught(&sel, &objs[5..]).is_empty());
    }

    fn pa(
        ns: &str,
        name: &str,
        created: &str,
        selector: Option<Value>,
        mode: Option<&str>,
    ) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": {}});
        if let Some(s) = selector {
            p["spec"]["selector"] = json!({"matchLabels": s});
        }
        if let Some(m) = mode {
            p["spec"]["mtls"] = json!({"mode": m});
        }
        p
    }

    #[test]
    fn the_most_specific_set_mode_wins() {
        let wl = labels(&[("app", "analytics"), ("version", "v0")]);
        let t0 = "2026-01-01T00:00:00Z";
        let t1 = "2026-01-02T00:00:00Z";
        let mesh = pa("istio-system", "default", t0, None, Some("STRICT"));
        let ns = pa("vm", "ns-wide", t0, None, Some("DISABLE"));
        let own = pa(
            "vm",
            "analytics",
            t1,
            Some(json!({"app": "analytics"})),
            Some("PERMISSIVE"),
        );
        let other = pa(
            "vm",
            "other",
            t0,
            Some(json!({"app": "other"})),
            Some("STRICT"),
        );
        let e = |n: &[Value], r: &[Value]| {
            let x = effective(&wl, n, r);
            (x.mode, x.policy)
        };
        assert_eq!(e(&[], &[]), ("PERMISSIVE".into(), "<default>".into()));
        assert_eq!(
            e(&[], std::slice::from_ref(&mesh)),
            ("STRICT".into(), "istio-system/default".into())
        );
        assert_eq!(
            e(&[ns.clone(), other.clone()], std::slice::from_ref(&mesh)),
            ("DISABLE".into(), "vm/ns-wide".into())
        );
        assert_eq!(
            e(
                &[ns.clone(), own.clone(), other],
                std::slice::from_ref(&mesh)
            ),
            ("PERMISSIVE".into(), "vm/analytics".into())
        );
        // UNSET defers to the next level; a policy without mtls is UNSET.
        let unset = pa(
            "vm",
            "analytics",
            t1,
            Some(json!({"app": "analytics"})),
            Some("UNSET"),
        );
        let ns_unset = pa("vm", "ns-wide", t0, None, None);
        assert_eq!(
            e(&[unset, ns_unset], std::slice::from_ref(&mesh)),
            ("STRICT".into(), "istio-system/default".into())
        );
        // Of two workload policies, the oldest decides.
        let older = pa(
            "vm",
            "zz-older",
            t0,
            Some(json!({"version": "v0"})),
            Some("STRICT"),
        );
        assert_eq!(
            e(&[own, older], &[]),
            ("STRICT".into(), "vm/zz-older".into())
        );
    }

    #[test]
    fn port_level_modes_show_where_they_differ() {
        let wl = labels(&[("app", "analytics")]);
        let mut own = pa(
            "vm",
            "analytics",
            "",
            Some(json!({"app": "analytics"})),
            Some("STRICT"),
        );
        own["spec"]["portLevelMtls"] =
            json!({"8083": {"mode": "DISABLE"}, "8080": {"mode": "UNSET"}});
        let e = effective(&wl, &[own], &[]);
        assert_eq!(e.column(), "STRICT (8083: DISABLE)");
    }
}
