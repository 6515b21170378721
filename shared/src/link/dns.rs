//! The `global` stub domain of a calling cluster: a marked `global:53` server block in the
//! CoreDNS Corefile (or, on AKS, a server block key of `coredns-custom`), or a `global` entry in
//! kube-dns `stubDomains`, pointing at istiocoredns.
//!
//! Only the `global` part is touched; every other key and block stays as it is. The first setup
//! keeps the original value in an annotation, and undo takes out exactly what setup put in.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::api::{Applied, Cluster, WriteMode};
use crate::objects;
use crate::write::cas::Change;

/// Namespace of the cluster DNS ConfigMaps.
pub const NAMESPACE: &str = "kube-system";
/// CoreDNS's ConfigMap.
pub const COREDNS: &str = "coredns";
/// kube-dns's ConfigMap.
pub const KUBE_DNS: &str = "kube-dns";
/// AKS's ConfigMap for additions to its managed CoreDNS, whose own `coredns` ConfigMap the
/// addon manager puts back.
pub const COREDNS_CUSTOM: &str = "coredns-custom";
/// The key of our server block in `coredns-custom` (AKS imports every key ending in `.server`).
pub const CUSTOM_KEY: &str = "kubectl-mesh-global.server";
/// Annotation holding the original value of the changed key (JSON: `{"KEY": "text" | null}`).
pub const BACKUP_ANNOTATION: &str = "kubectl-mesh/dns-original";

const BEGIN: &str = "# kubectl-mesh: begin global stub domain (kubectl mesh-link --setup-dns)";
const END: &str = "# kubectl-mesh: end global stub domain";

/// Which DNS server the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// CoreDNS: a server block in `Corefile`.
    CoreDns,
    /// kube-dns: `stubDomains`.
    KubeDns,
    /// AKS: the key [`CUSTOM_KEY`] of `coredns-custom`.
    CoreDnsCustom,
}

impl Flavor {
    /// The ConfigMap to change.
    pub fn configmap(self) -> &'static str {
        match self {
            Flavor::CoreDns => COREDNS,
            Flavor::KubeDns => KUBE_DNS,
            Flavor::CoreDnsCustom => COREDNS_CUSTOM,
        }
    }
}

/// AKS's `coredns-custom` when it exists (an edit of `coredns` would be reverted there);
/// else CoreDNS when its ConfigMap has a Corefile; kube-dns otherwise.
pub fn flavor(coredns: Option<&Value>, custom: Option<&Value>) -> Flavor {
    match (coredns, custom) {
        (_, Some(_)) => Flavor::CoreDnsCustom,
        (Some(cm), None) if cm["data"]["Corefile"].is_string() => Flavor::CoreDns,
        _ => Flavor::KubeDns,
    }
}

/// Reads the DNS flavor of a cluster and the ConfigMap it keeps the stub domain in.
pub async fn read(cluster: &Cluster) -> Result<(Flavor, Option<Value>)> {
    let cm = objects::core("ConfigMap");
    let custom = cluster.get(&cm, Some(NAMESPACE), COREDNS_CUSTOM).await?;
    let coredns = match custom {
        Some(_) => None,
        None => cluster.get(&cm, Some(NAMESPACE), COREDNS).await?,
    };
    let fl = flavor(coredns.as_ref(), custom.as_ref());
    let current = match fl {
        Flavor::CoreDns => coredns,
        Flavor::CoreDnsCustom => custom,
        Flavor::KubeDns => cluster.get(&cm, Some(NAMESPACE), KUBE_DNS).await?,
    };
    Ok((fl, current))
}

/// The server block `--setup-dns` adds.
pub fn block(ip: IpAddr) -> String {
    format!("{BEGIN}\nglobal:53 {{\n    errors\n    cache 30\n    forward . {ip}\n}}\n{END}\n")
}

/// Splits a Corefile into (text without our block, our block if present).
fn split_block(corefile: &str) -> (String, Option<String>) {
    let Some(start) = corefile.find(BEGIN) else {
        return (corefile.to_string(), None);
    };
    let Some(end_rel) = corefile[start..].find(END) else {
        return (corefile.to_string(), None);
    };
    let mut end = start + end_rel + END.len();
    if corefile[end..].starts_with('\n') {
        end += 1;
    }
    let ours = corefile[start..end].to_string();
    let mut before = corefile[..start].to_string();
    // Setup put one blank line before the block; take it out again.
    if before.ends_with("\n\n") {
        before.pop();
    }
    (format!("{before}{}", &corefile[end..]), Some(ours))
}

/// Whether a Corefile has a server block for `global` that kubectl-mesh did not write.
fn has_foreign_global(corefile: &str) -> bool {
    corefile.lines().map(str::trim_start).any(|l| {
        l.strip_prefix("global")
            .is_some_and(|rest| rest.starts_with([':', ' ', '{', '.']) || rest.is_empty())
    })
}

/// The IP the `global` domain forwards to, as configured: CoreDNS `forward`/`proxy` in a
/// `global` block, or kube-dns `stubDomains.global`. `None` when no stub domain is set.
pub fn configured_target(flavor: Flavor, cm: Option<&Value>) -> Option<Vec<String>> {
    let cm = cm?;
    match flavor {
        Flavor::CoreDns => corefile_target(cm["data"]["Corefile"].as_str()?),
        Flavor::CoreDnsCustom => cm["data"]
            .as_object()?
            .iter()
            .filter(|(k, _)| k.ends_with(".server"))
            .find_map(|(_, v)| corefile_target(v.as_str()?)),
        Flavor::KubeDns => {
            let stub: Value = serde_json::from_str(cm["data"]["stubDomains"].as_str()?).ok()?;
            stub["global"].as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
        }
    }
}

/// Where a `global` block of a Corefile forwards to.
fn corefile_target(corefile: &str) -> Option<Vec<String>> {
    let mut in_global = false;
    let mut found = None;
    for line in corefile.lines().map(str::trim) {
        if line.starts_with("global") && line.ends_with('{') {
            in_global = true;
            continue;
        }
        if in_global && line.starts_with('}') {
            in_global = false;
        }
        if in_global {
            let mut words = line.split_whitespace();
            if matches!(words.next(), Some("forward" | "proxy")) && words.next() == Some(".") {
                found = Some(
                    words
                        .map(|w| w.trim_start_matches("dns://").to_string())
                        .collect(),
                );
            }
        }
    }
    found
}

fn backup(cm: &mut Value, key: &str, original: Option<&str>) {
    if cm["metadata"]["annotations"][BACKUP_ANNOTATION].is_string() {
        return; // The first setup's original is the one worth keeping.
    }
    let text = json!({ key: original }).to_string();
    objects::add_annotations(cm, &BTreeMap::from([(BACKUP_ANNOTATION.to_string(), text)]));
}

fn drop_backup(cm: &mut Value) {
    if let Some(a) = cm["metadata"]["annotations"].as_object_mut() {
        a.remove(BACKUP_ANNOTATION);
    }
}

fn clean(cm: &Value) -> Value {
    objects::for_display(cm.clone())
}

/// The ConfigMap with `global` pointed at `ip`; `Ok(None)` when it already is.
pub fn setup(flavor: Flavor, cm: Option<&Value>, ip: IpAddr) -> Result<Option<Value>, String> {
    match flavor {
        Flavor::CoreDns => {
            let cm = cm.ok_or("the coredns ConfigMap is missing")?;
            let corefile = cm["data"]["Corefile"]
                .as_str()
                .ok_or("configmap kube-system/coredns has no Corefile")?;
            let (rest, ours) = split_block(corefile);
            let wanted = block(ip);
            if ours.as_deref() == Some(wanted.as_str()) {
                return Ok(None);
            }
            if has_foreign_global(&rest) {
                return Err("the CoreDNS Corefile (configmap kube-system/coredns) already has a `global` server block that kubectl-mesh did not write: point its forward at istiocoredns by hand, or remove it and run --setup-dns again".into());
            }
            let mut out = clean(cm);
            let mut text = rest.clone();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&wanted);
            out["data"]["Corefile"] = json!(text);
            if ours.is_none() {
                backup(&mut out, "Corefile", Some(corefile));
            }
            Ok(Some(out))
        }
        Flavor::CoreDnsCustom => {
            let cm = cm.ok_or("the coredns-custom ConfigMap is missing")?;
            let wanted = block(ip);
            if cm["data"][CUSTOM_KEY].as_str() == Some(wanted.as_str()) {
                return Ok(None);
            }
            let foreign = cm["data"].as_object().and_then(|d| {
                d.iter()
                    .filter(|(k, _)| k.as_str() != CUSTOM_KEY)
                    .find(|(_, v)| v.as_str().is_some_and(has_foreign_global))
            });
            if let Some((key, _)) = foreign {
                return Err(format!("configmap kube-system/coredns-custom already has a `global` server block in key {key:?} that kubectl-mesh did not write: point its forward at istiocoredns by hand, or remove it and run --setup-dns again"));
            }
            let mut out = clean(cm);
            out["data"][CUSTOM_KEY] = json!(wanted);
            Ok(Some(out))
        }
        Flavor::KubeDns => {
            let (mut out, original) = match cm {
                Some(cm) => (
                    clean(cm),
                    cm["data"]["stubDomains"].as_str().map(String::from),
                ),
                None => (
                    objects::new_object(&objects::core("ConfigMap"), Some(NAMESPACE), KUBE_DNS),
                    None,
                ),
            };
            let mut stubs: Map<String, Value> = match &original {
                Some(text) if !text.trim().is_empty() => serde_json::from_str(text).map_err(|e| {
                    format!("stubDomains in configmap kube-system/kube-dns is not a JSON object ({e}): fix it by hand first")
                })?,
                _ => Map::new(),
            };
            let wanted = json!([ip.to_string()]);
            if stubs.get("global") == Some(&wanted) {
                return Ok(None);
            }
            stubs.insert("global".into(), wanted);
            out["data"]["stubDomains"] = json!(Value::Object(stubs).to_string());
            backup(&mut out, "stubDomains", original.as_deref());
            Ok(Some(out))
        }
    }
}

/// The ConfigMap with the stub domain taken out again; `None` when setup left no trace.
pub fn undo(flavor: Flavor, cm: Option<&Value>) -> Result<Option<Value>, String> {
    let Some(cm) = cm else { return Ok(None) };
    let saved: Option<Value> = cm["metadata"]["annotations"][BACKUP_ANNOTATION]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok());
    match flavor {
        Flavor::CoreDns => {
            let Some(corefile) = cm["data"]["Corefile"].as_str() else {
                return Ok(None);
            };
            let (rest, ours) = split_block(corefile);
            if ours.is_none() && saved.is_none() {
                return Ok(None);
            }
            let mut out = clean(cm);
            out["data"]["Corefile"] = json!(rest);
            drop_backup(&mut out);
            Ok(Some(out))
        }
        Flavor::CoreDnsCustom => {
            if cm["data"].get(CUSTOM_KEY).is_none() {
                return Ok(None);
            }
            let mut out = clean(cm);
            if let Some(d) = out["data"].as_object_mut() {
                d.remove(CUSTOM_KEY);
            }
            Ok(Some(out))
        }
        Flavor::KubeDns => {
            let Some(saved) = saved else { return Ok(None) };
            let original: Option<Map<String, Value>> = saved["stubDomains"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok());
            let mut stubs: Map<String, Value> = cm["data"]["stubDomains"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            match original.as_ref().and_then(|o| o.get("global")) {
                Some(g) => {
                    stubs.insert("global".into(), g.clone());
                }
                None => {
                    stubs.remove("global");
                }
            }
            let mut out = clean(cm);
            if stubs.is_empty() && original.is_none() {
                if let Some(d) = out["data"].as_object_mut() {
                    d.remove("stubDomains");
                }
            } else {
                out["data"]["stubDomains"] = json!(Value::Object(stubs).to_string());
            }
            drop_backup(&mut out);
            Ok(Some(out))
        }
    }
}

/// Sets up (or with `undo`, removes) the `global` stub domain of one cluster: reads the DNS
/// ConfigMap, changes only the `global` part, and writes it back guarded by its
/// resourceVersion (re-reading on a conflict). Returns what happened, and notes for stderr.
pub async fn apply(
    cluster: &Cluster,
    undo_it: bool,
    mode: WriteMode,
    notes: &mut Vec<String>,
) -> Result<Applied> {
    let cm_kind = objects::core("ConfigMap");
    let ip = if undo_it {
        None
    } else {
        let svc = cluster
            .get(&objects::core("Service"), Some("istio-system"), "istiocoredns")
            .await?
            .ok_or_else(|| anyhow::anyhow!(
                "service istio-system/istiocoredns not found in context {:?}: --setup-dns needs istiocoredns (Istio 1.1-1.7 with addonComponents.istiocoredns.enabled)",
                cluster.context
            ))?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "service istio-system/istiocoredns in context {:?} has no cluster IP",
                    cluster.context
                )
            })?;
        Some(ip)
    };
    let (fl, first) = read(cluster).await?;
    let target = crate::write::cas::Target {
        kind: &cm_kind,
        namespace: Some(NAMESPACE),
        name: fl.configmap(),
        read: Some(first),
    };
    let mut note = None;
    let updated = crate::write::cas::update_cas(cluster, target, mode, |current| {
        let next = match ip {
            Some(ip) => setup(fl, current, ip),
            None => undo(fl, current),
        }
        .map_err(|e| anyhow::anyhow!("{e} (context {:?})", cluster.context))?;
        let Some(next) = next else {
            return Ok(Change::Keep);
        };
        let reload = next["data"]["Corefile"]
            .as_str()
            .unwrap_or("")
            .contains("reload");
        note = match fl {
            Flavor::CoreDnsCustom => Some(format!(
                "{} runs AKS's managed CoreDNS: the block goes into configmap kube-system/coredns-custom (key {CUSTOM_KEY}), which CoreDNS loads on restart (kubectl --context {} -n kube-system rollout restart deployment coredns)",
                cluster.context, cluster.context
            )),
            Flavor::CoreDns if ip.is_some() && !reload => Some(format!(
                "the Corefile of {} has no reload plugin: restart CoreDNS to load the change (kubectl --context {} -n kube-system rollout restart deployment coredns)",
                cluster.context, cluster.context
            )),
            _ => None,
        };
        Ok(Change::Write(next))
    })
    .await?;
    notes.extend(note);
    let object = updated.object.as_ref().map_or_else(
        || objects::new_object(&cm_kind, Some(NAMESPACE), fl.configmap()),
        clean,
    );
    Ok(Applied {
        object,
        outcome: updated.outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COREFILE: &str = ".:53 {\n    errors\n    health\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n    }\n    forward . /etc/resolv.conf\n    cache 30\n    reload\n}\n";

    fn coredns() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "coredns", "namespace": "kube-system", "resourceVersion": "5", "managedFields": []},
               "data": {"Corefile": COREFILE, "other": "kept"}})
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn coredns_block_is_added_kept_and_removed() {
        let cm = coredns();
        assert_eq!(flavor(Some(&cm), None), Flavor::CoreDns);
        assert_eq!(flavor(Some(&cm), Some(&cm)), Flavor::CoreDnsCustom);
        let set = setup(Flavor::CoreDns, Some(&cm), ip("10.96.0.53"))
            .expect("setup")
            .expect("changed");
        let corefile = set["data"]["Corefile"].as_str().expect("corefile");
        assert!(corefile.starts_with(COREFILE), "{corefile}");
        assert!(
            corefile.contains("global:53 {\n    errors\n    cache 30\n    forward . 10.96.0.53\n}")
        );
        assert_eq!(set["data"]["other"], "kept");
        assert_eq!(objects::resource_version(&set), "5");
        assert!(set["metadata"].get("managedFields").is_none());
        let saved: Value = serde_json::from_str(
            set["metadata"]["annotations"][BACKUP_ANNOTATION]
                .as_str()
                .expect("backup"),
        )
        .expect("json");
        assert_eq!(saved["Corefile"], COREFILE);
        assert_eq!(
            configured_target(Flavor::CoreDns, Some(&set)),
            Some(vec!["10.96.0.53".to_string()])
        );
        assert_eq!(configured_target(Flavor::CoreDns, Some(&cm)), None);

        // Again: nothing to do. With a new IP: the block moves, the backup stays the original.
        assert_eq!(
            setup(Flavor::CoreDns, Some(&set), ip("10.96.0.53")),
            Ok(None)
        );
        let moved = setup(Flavor::CoreDns, Some(&set), ip("10.96.0.54"))
            .expect("setup")
            .expect("changed");
        assert_eq!(
            moved["data"]["Corefile"]
                .as_str()
                .map(|c| c.matches("global:53").count()),
            Some(1)
        );
        assert_eq!(
            moved["metadata"]["annotations"][BACKUP_ANNOTATION],
            set["metadata"]["annotations"][BACKUP_ANNOTATION]
        );

        let undone = undo(Flavor::CoreDns, Some(&moved))
            .expect("undo")
            .expect("changed");
        assert_eq!(undone["data"]["Corefile"], COREFILE);
        assert!(undone["metadata"]["annotations"]
            .get(BACKUP_ANNOTATION)
            .is_none());
        assert_eq!(undo(Flavor::CoreDns, Some(&cm)), Ok(None));
    }

    #[test]
    fn undo_keeps_edits_made_after_setup() {
        let set = setup(Flavor::CoreDns, Some(&coredns()), ip("10.96.0.53"))
            .expect("setup")
            .expect("changed");
        let mut edited = set.clone();
        let text = format!(
            "example.org:53 {{\n    forward . 8.8.8.8\n}}\n{}",
            set["data"]["Corefile"].as_str().expect("text")
        );
        edited["data"]["Corefile"] = json!(text);
        let undone = undo(Flavor::CoreDns, Some(&edited))
            .expect("undo")
            .expect("changed");
        let back = undone["data"]["Corefile"].as_str().expect("text");
        assert!(back.starts_with("example.org:53"));
        assert!(!back.contains("global"));
    }

    #[test]
    fn a_foreign_global_block_is_not_overwritten() {
        let mut cm = coredns();
        cm["data"]["Corefile"] = json!(format!(
            "{COREFILE}global:53 {{\n    forward . 10.0.0.9\n}}\n"
        ));
        let e = setup(Flavor::CoreDns, Some(&cm), ip("10.96.0.53")).expect_err("refused");
        assert!(e.contains("did not write"), "{e}");
        assert_eq!(
            configured_target(Flavor::CoreDns, Some(&cm)),
            Some(vec!["10.0.0.9".to_string()])
        );
    }

    #[test]
    fn kube_dns_stub_domains_are_merged() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                        "data": {"stubDomains": "{\"acme.local\": [\"1.2.3.4\"]}", "upstreamNameservers": "[\"8.8.8.8\"]"}});
        assert_eq!(flavor(None, None), Flavor::KubeDns);
        let set = setup(Flavor::KubeDns, Some(&cm), ip("10.0.0.53"))
            .expect("setup")
            .expect("changed");
        let stubs: Value =
            serde_json::from_str(set["data"]["stubDomains"].as_str().expect("text")).expect("json");
        assert_eq!(
            stubs,
            json!({"acme.local": ["1.2.3.4"], "global": ["10.0.0.53"]})
        );
        assert_eq!(set["data"]["upstreamNameservers"], "[\"8.8.8.8\"]");
        assert_eq!(
            configured_target(Flavor::KubeDns, Some(&set)),
            Some(vec!["10.0.0.53".to_string()])
        );
        assert_eq!(
            setup(Flavor::KubeDns, Some(&set), ip("10.0.0.53")),
            Ok(None)
        );
        let undone = undo(Flavor::KubeDns, Some(&set))
            .expect("undo")
            .expect("changed");
        let stubs: Value =
            serde_json::from_str(undone["data"]["stubDomains"].as_str().expect("text"))
                .expect("json");
        assert_eq!(stubs, json!({"acme.local": ["1.2.3.4"]}));
        assert!(undone["metadata"]["annotations"]
            .get(BACKUP_ANNOTATION)
            .is_none());
    }

    #[test]
    fn kube_dns_without_a_configmap() {
        let set = setup(Flavor::KubeDns, None, ip("10.0.0.53"))
            .expect("setup")
            .expect("changed");
        assert_eq!(objects::name(&set), "kube-dns");
        assert_eq!(set["data"]["stubDomains"], "{\"global\":[\"10.0.0.53\"]}");
        let undone = undo(Flavor::KubeDns, Some(&set))
            .expect("undo")
            .expect("changed");
        assert!(undone["data"].get("stubDomains").is_none());
        let mut bad = set.clone();
        bad["data"]["stubDomains"] = json!("not json");
        bad["metadata"]["annotations"] = json!({});
        assert!(setup(Flavor::KubeDns, Some(&bad), ip("10.0.0.53")).is_err());
    }

    #[test]
    fn aks_gets_its_own_key_in_coredns_custom_and_undo_takes_only_that() {
        let ip: IpAddr = "10.0.0.53".parse().expect("ip");
        let custom = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": COREDNS_CUSTOM, "namespace": NAMESPACE, "resourceVersion": "7"},
            "data": {"azurestack.server": "azurestack.local:53 {\n    forward . 1.2.3.4\n}\n"}});
        let set = setup(Flavor::CoreDnsCustom, Some(&custom), ip)
            .expect("setup")
            .expect("a change");
        assert_eq!(set["data"][CUSTOM_KEY], json!(block(ip)));
        assert_eq!(
            set["data"]["azurestack.server"],
            custom["data"]["azurestack.server"]
        );
        assert_eq!(
            configured_target(Flavor::CoreDnsCustom, Some(&set)),
            Some(vec!["10.0.0.53".to_string()])
        );
        assert_eq!(setup(Flavor::CoreDnsCustom, Some(&set), ip), Ok(None));
        let undone = undo(Flavor::CoreDnsCustom, Some(&set))
            .expect("undo")
            .expect("a change");
        assert_eq!(undone["data"], custom["data"]);
        assert_eq!(undo(Flavor::CoreDnsCustom, Some(&custom)), Ok(None));
        // Someone else's global block in another key is never overwritten.
        let mut theirs = custom.clone();
        theirs["data"]["mine.server"] = json!("global:53 {\n    forward . 9.9.9.9\n}\n");
        let err = setup(Flavor::CoreDnsCustom, Some(&theirs), ip).expect_err("foreign");
        assert!(err.contains("\"mine.server\""), "{err}");
    }
}
