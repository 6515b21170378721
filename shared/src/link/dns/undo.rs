//! `--setup-dns --undo` as a pure change: the DNS ConfigMap with exactly what setup put in
//! taken out again, one function per flavor.

use serde_json::{json, Map, Value};

use super::corefile::split_block;
use super::{clean, Flavor, BACKUP_ANNOTATION, CUSTOM_KEY};

/// The ConfigMap with the stub domain taken out again; `None` when setup left no trace.
pub fn undo(flavor: Flavor, cm: Option<&Value>) -> Result<Option<Value>, String> {
    let Some(cm) = cm else { return Ok(None) };
    let saved: Option<Value> = cm["metadata"]["annotations"][BACKUP_ANNOTATION]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok());
    Ok(match flavor {
        Flavor::CoreDns => coredns(cm, saved.as_ref()),
        Flavor::CoreDnsCustom => coredns_custom(cm),
        Flavor::KubeDns => saved.and_then(|saved| kube_dns(cm, &saved)),
    })
}

/// Our block out of the Corefile; edits made around it since setup stay.
fn coredns(cm: &Value, saved: Option<&Value>) -> Option<Value> {
    let corefile = cm["data"]["Corefile"].as_str()?;
    let (rest, ours) = split_block(corefile);
    if ours.is_none() && saved.is_none() {
        return None;
    }
    let mut out = clean(cm);
    out["data"]["Corefile"] = json!(rest);
    drop_backup(&mut out);
    Some(out)
}

/// Our key out of `coredns-custom`; no backup was kept, as setup replaced nothing there.
fn coredns_custom(cm: &Value) -> Option<Value> {
    cm["data"].get(CUSTOM_KEY)?;
    let mut out = clean(cm);
    if let Some(d) = out["data"].as_object_mut() {
        d.remove(CUSTOM_KEY);
    }
    Some(out)
}

/// `global` back to what the backup says it was (or gone), every other stub domain kept.
fn kube_dns(cm: &Value, saved: &Value) -> Option<Value> {
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
    Some(out)
}

fn drop_backup(cm: &mut Value) {
    if let Some(a) = cm["metadata"]["annotations"].as_object_mut() {
        a.remove(BACKUP_ANNOTATION);
    }
}
