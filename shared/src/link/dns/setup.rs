//! `--setup-dns` as a pure change: the DNS ConfigMap with `global` pointed at istiocoredns,
//! one function per flavor, and the backup of what it replaces.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::corefile::{block, has_foreign_global, split_block};
use super::{clean, Flavor, BACKUP_ANNOTATION, CUSTOM_KEY, KUBE_DNS, NAMESPACE};
use crate::objects;

/// The ConfigMap with `global` pointed at `ip`; `Ok(None)` when it already is.
pub fn setup(flavor: Flavor, cm: Option<&Value>, ip: IpAddr) -> Result<Option<Value>, String> {
    match flavor {
        Flavor::CoreDns => coredns(cm.ok_or("the coredns ConfigMap is missing")?, ip),
        Flavor::CoreDnsCustom => {
            coredns_custom(cm.ok_or("the coredns-custom ConfigMap is missing")?, ip)
        }
        Flavor::KubeDns => kube_dns(cm, ip),
    }
}

/// Our block at the end of the Corefile, one blank line after the rest.
fn coredns(cm: &Value, ip: IpAddr) -> Result<Option<Value>, String> {
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

/// Our block under its own key, refused when another key already serves `global`.
fn coredns_custom(cm: &Value, ip: IpAddr) -> Result<Option<Value>, String> {
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

/// `global` merged into `stubDomains`; the ConfigMap is created when kube-dns has none.
fn kube_dns(cm: Option<&Value>, ip: IpAddr) -> Result<Option<Value>, String> {
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

fn backup(cm: &mut Value, key: &str, original: Option<&str>) {
    if cm["metadata"]["annotations"][BACKUP_ANNOTATION].is_string() {
        return; // The first setup's original is the one worth keeping.
    }
    let text = json!({ key: original }).to_string();
    objects::add_annotations(cm, &BTreeMap::from([(BACKUP_ANNOTATION.to_string(), text)]));
}
