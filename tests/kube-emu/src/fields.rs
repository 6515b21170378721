//! Field sets and merges: server-side apply (managedFields, FieldsV1, conflicts), strategic
//! merge patch for built-in kinds.

use crate::schema::Schema;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A path of FieldsV1 elements (`f:name`, `k:{..}`, `v:..`).
pub type FPath = Vec<String>;
/// A set of owned paths.
pub type FieldSet = BTreeSet<FPath>;

/// How a list merges.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    Atomic,
    Map(Vec<String>),
    Set,
}

/// The type information available at a node.
#[derive(Clone, Copy)]
pub enum Ty<'a> {
    Schema(&'a Schema),
    Builtin,
}

impl<'a> Ty<'a> {
    pub fn root(schema: Option<&'a Schema>) -> Ty<'a> {
        schema.map(Ty::Schema).unwrap_or(Ty::Builtin)
    }
    fn child(self, key: &str, at_root: bool) -> Ty<'a> {
        match self {
            Ty::Schema(s) if !(at_root && key == "metadata") => {
                s.child(key).map(Ty::Schema).unwrap_or(Ty::Builtin)
            }
            _ => Ty::Builtin,
        }
    }
    fn items(self) -> Ty<'a> {
        match self {
            Ty::Schema(s) => s.items.as_deref().map(Ty::Schema).unwrap_or(Ty::Builtin),
            Ty::Builtin => Ty::Builtin,
        }
    }
    fn list_kind(self, field: &str, items: &[Value]) -> ListKind {
        match self {
            Ty::Schema(s) => match s.list_type.as_deref() {
                Some("map") if !s.list_map_keys.is_empty() => {
                    ListKind::Map(s.list_map_keys.clone())
                }
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            },
            Ty::Builtin => builtin_list_kind(field, items),
        }
    }
}

/// Merge keys of the built-in kinds' lists.
pub fn builtin_list_kind(field: &str, items: &[Value]) -> ListKind {
    let keys = |k: &[&str]| ListKind::Map(k.iter().map(|s| s.to_string()).collect());
    match field {
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                keys(&["containerPort", "protocol"])
            } else if items.iter().all(|i| i.get("port").is_some()) {
                keys(&["port", "protocol"])
            } else {
                ListKind::Atomic
            }
        }
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => keys(&["name"]),
        "volumeMounts" => keys(&["mountPath"]),
        "ownerReferences" => keys(&["uid"]),
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        match item.get(k) {
            Some(v) => {
                m.insert(k.clone(), v.clone());
            }
            None if k == "protocol" => {
                m.insert(k.clone(), json!("TCP"));
            }
            None => {}
        }
    }
    format!("k:{}", Value::Object(m))
}

fn item_matches(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(k, v)| match item.get(k) {
        Some(x) => x == v,
        None => k == "protocol" && v == "TCP",
    })
}

/// Whether a top-level path is tracked by managedFields.
fn tracked(p: &FPath, sub: Option<&str>, has_status: bool) -> bool {
    let Some(first) = p.first() else { return false };
    match first.as_str() {
        "f:apiVersion" | "f:kind" => false,
        "f:metadata" => {
            sub.is_none()
                && matches!(
                    p.get(1).map(String::as_str),
                    Some("f:labels" | "f:annotations" | "f:finalizers" | "f:ownerReferences")
                )
        }
        "f:status" => sub == Some("status") || !has_status,
        _ => sub != Some("status"),
    }
}

/// The set of fields present in an object.
pub fn collect(v: &Value, ty: Ty, sub: Option<&str>, has_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    collect_into(v, ty, &mut Vec::new(), &mut out, true);
    out.retain(|p| tracked(p, sub, has_status));
    out
}

fn collect_into(v: &Value, ty: Ty, prefix: &mut FPath, out: &mut FieldSet, root: bool) {
    let Value::Object(m) = v else { return };
    for (k, x) in m {
        if x.is_null() {
            continue;
        }
        let cty = ty.child(k, root);
        prefix.push(format!("f:{k}"));
        match x {
            Value::Object(mm) if !mm.is_empty() => collect_into(x, cty, prefix, out, false),
            Value::Array(a) => match cty.list_kind(k, a) {
                ListKind::Atomic => {
                    out.insert(prefix.clone());
                }
                ListKind::Set => {
                    if a.is_empty() {
                        out.insert(prefix.clone());
                    }
                    for it in a {
                        let mut p = prefix.clone();
                        p.push(format!("v:{it}"));
                        out.insert(p);
                    }
                }
                ListKind::Map(keys) => {
                    if a.is_empty() {
                        out.insert(prefix.clone());
                    }
                    for it in a {
                        prefix.push(item_key(it, &keys));
                        out.insert(prefix.clone());
                        collect_into(it, cty.items(), prefix, out, false);
                        prefix.pop();
                    }
                }
            },
            _ => {
                out.insert(prefix.clone());
            }
        }
        prefix.pop();
    }
}

/// FieldsV1 JSON of a field set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for p in set {
        let mut node = &mut root;
        for e in p {
            node = node
                .as_object_mut()
                .expect("object")
                .entry(e.clone())
                .or_insert_with(|| json!({}));
        }
    }
    for p in set {
        let mut node = &mut root;
        for e in p {
            node = node.get_mut(e).expect("node");
        }
        let m = node.as_object_mut().expect("object");
        if !m.is_empty() && !m.contains_key(".") {
            m.insert(".".into(), json!({}));
        }
    }
    root
}

/// Field set of FieldsV1 JSON.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, prefix: &mut FPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        for (k, c) in m {
            if k == "." {
                out.insert(prefix.clone());
                continue;
            }
            prefix.push(k.clone());
            match c.as_object() {
                Some(cm) if !cm.is_empty() => walk(c, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The value at a path, if present.
pub fn get_at<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for e in p {
        cur = step(cur, e)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, e: &str) -> Option<&'a Value> {
    if let Some(f) = e.strip_prefix("f:") {
        cur.get(f)
    } else if let Some(k) = e.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        cur.as_array()?.iter().find(|i| item_matches(i, &key))
    } else if let Some(vs) = e.strip_prefix("v:") {
        let val: Value = serde_json::from_str(vs).ok()?;
        cur.as_array()?.iter().find(|i| **i == val)
    } else {
        None
    }
}

fn step_mut<'a>(cur: &'a mut Value, e: &str) -> Option<&'a mut Value> {
    if let Some(f) = e.strip_prefix("f:") {
        cur.get_mut(f)
    } else if let Some(k) = e.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        cur.as_array_mut()?
            .iter_mut()
            .find(|i| item_matches(i, &key))
    } else if let Some(vs) = e.strip_prefix("v:") {
        let val: Value = serde_json::from_str(vs).ok()?;
        cur.as_array_mut()?.iter_mut().find(|i| **i == val)
    } else {
        None
    }
}

/// Removes the value at a path.
pub fn remove_at(v: &mut Value, p: &[String]) {
    let Some((last, parent)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for e in parent {
        match step_mut(cur, e) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(key), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|i| !item_matches(i, &key));
        }
    } else if let Some(vs) = last.strip_prefix("v:") {
        if let (Ok(val), Some(a)) = (serde_json::from_str::<Value>(vs), cur.as_array_mut()) {
            a.retain(|i| *i != val);
        }
    }
}

/// Merges an applied configuration into an object (server-side apply semantics).
pub fn merge_apply(live: &mut Value, cfg: &Value, ty: Ty, root: bool) {
    match (live, cfg) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                if cv.is_null() {
                    l.remove(k);
                    continue;
                }
                let cty = ty.child(k, root);
                match (l.get_mut(k), cv) {
                    (Some(lv @ Value::Object(_)), Value::Object(_)) => {
                        merge_apply(lv, cv, cty, false)
                    }
                    (Some(Value::Array(la)), Value::Array(ca)) => match cty.list_kind(k, ca) {
                        ListKind::Map(keys) => {
                            let mut out = Vec::new();
                            for ci in ca {
                                let key = item_key(ci, &keys);
                                let keymap: Map<String, Value> =
                                    serde_json::from_str(&key[2..]).unwrap_or_default();
                                match la.iter().position(|i| item_matches(i, &keymap)) {
                                    Some(pos) => {
                                        let mut li = la.remove(pos);
                                        merge_apply(&mut li, ci, cty.items(), false);
                                        out.push(li);
                                    }
                                    None => out.push(ci.clone()),
                                }
                            }
                            // Items owned by others stay (after the applied ones).
                            out.append(la);
                            *la = out;
                        }
                        ListKind::Set => {
                            for ci in ca {
                                if !la.contains(ci) {
                                    la.push(ci.clone());
                                }
                            }
                        }
                        ListKind::Atomic => *la = ca.clone(),
                    },
                    _ => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
            }
        }
        (l, c) => *l = c.clone(),
    }
}

/// One managedFields entry.
#[derive(Debug, Clone)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    let Some(a) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return vec![];
    };
    a.iter()
        .map(|e| Managed {
            manager: e["manager"].as_str().unwrap_or("").into(),
            operation: e["operation"].as_str().unwrap_or("Update").into(),
            api_version: e["apiVersion"].as_str().unwrap_or("").into(),
            time: e["time"].as_str().unwrap_or("").into(),
            subresource: e["subresource"].as_str().map(str::to_string),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, entries: &[Managed]) {
    let arr: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                m["subresource"] = json!(s);
            }
            m
        })
        .collect();
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            md.remove("managedFields");
        } else {
            md.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

/// Context of a write for managedFields.
pub struct WriteInfo<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
    pub sub: Option<&'a str>,
    pub has_status: bool,
}

/// Records an Update operation: the manager takes the fields that changed.
pub fn record_update(old: Option<&Value>, new: &mut Value, ty: Ty, w: &WriteInfo) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let new_fields = collect(new, ty, w.sub, w.has_status);
    let old_fields = old
        .map(|o| collect(o, ty, w.sub, w.has_status))
        .unwrap_or_default();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| !old_fields.contains(*p) || old.and_then(|o| get_at(o, p)) != get_at(new, p))
        .cloned()
        .collect();
    let all_new = collect(new, ty, None, false);
    let all_new_status = collect(new, ty, Some("status"), true);
    for e in entries.iter_mut() {
        e.fields.retain(|p| {
            (all_new.contains(p) || all_new_status.contains(p)) && !changed.contains(p)
        });
    }
    if !changed.is_empty() {
        let sub = w.sub.map(str::to_string);
        match entries
            .iter_mut()
            .find(|e| e.manager == w.manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = w.now.into();
                e.api_version = w.api_version.into();
            }
            None => entries.push(Managed {
                manager: w.manager.into(),
                operation: "Update".into(),
                api_version: w.api_version.into(),
                time: w.now.into(),
                subresource: sub,
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    write_managed(new, &entries);
}

/// A field owned by another manager with a different value.
#[derive(Debug)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: String,
}

/// Renders a path the way conflict messages do (`.spec.ports[port=80,protocol="TCP"].name`).
pub fn render_path(p: &[String]) -> String {
    let mut s = String::new();
    for e in p {
        if let Some(f) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Server-side apply of `cfg` onto `live` (or a fresh object).
pub fn apply(
    live: &Value,
    cfg: &Value,
    ty: Ty,
    w: &WriteInfo,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_managed(live);
    let cfg_fields = collect(cfg, ty, w.sub, w.has_status);
    let sub = w.sub.map(str::to_string);
    let is_me =
        |e: &Managed| e.manager == w.manager && e.operation == "Apply" && e.subresource == sub;
    let mut conflicts = Vec::new();
    let mut lost: Vec<(usize, FPath)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if is_me(e) {
            continue;
        }
        for p in e.fields.intersection(&cfg_fields) {
            let is_item = p
                .last()
                .map(|l| l.starts_with("k:") || l.starts_with("v:"))
                .unwrap_or(false);
            if is_item {
                continue;
            }
            if get_at(live, p) != get_at(cfg, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: render_path(p),
                });
                lost.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for (i, p) in lost {
        entries[i].fields.remove(&p);
    }
    let my_old: FieldSet = entries
        .iter()
        .find(|e| is_me(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut result = live.clone();
    merge_apply(&mut result, cfg, ty, true);
    let removed: Vec<&FPath> = my_old.difference(&cfg_fields).collect();
    for p in removed {
        let owned_by_other = entries
            .iter()
            .any(|e| !is_me(e) && e.fields.iter().any(|q| q.starts_with(p)));
        let still_applied = cfg_fields.iter().any(|q| q.starts_with(p));
        if !owned_by_other && !still_applied {
            remove_at(&mut result, p);
            // A list or map emptied by the removal goes too, unless someone owns it.
            let parent = &p[..p.len() - 1];
            let empty = match get_at(&result, parent) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(m)) => m.is_empty(),
                _ => false,
            };
            let parent_owned = entries
                .iter()
                .any(|e| !is_me(e) && e.fields.contains(parent))
                || cfg_fields.contains(parent);
            if empty && !parent.is_empty() && !parent_owned {
                remove_at(&mut result, parent);
            }
        }
    }
    match entries.iter_mut().find(|e| is_me(e)) {
        Some(e) => {
            if e.fields != cfg_fields || e.api_version != w.api_version {
                e.time = w.now.into();
            }
            e.fields = cfg_fields;
            e.api_version = w.api_version.into();
        }
        None => entries.push(Managed {
            manager: w.manager.into(),
            operation: "Apply".into(),
            api_version: w.api_version.into(),
            time: w.now.into(),
            subresource: sub,
            fields: cfg_fields,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    write_managed(&mut result, &entries);
    Ok(result)
}

/// Strategic merge patch for built-in kinds (merge keys from a small table, `$patch`,
/// `$retainKeys`, `$deleteFromPrimitiveList`, `$setElementOrder` ignored).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip(patch);
            return;
        }
        Some("delete") => {
            *target = json!({});
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, pv) in p {
        if k.starts_with("$setElementOrder/") || k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(a)), Some(del)) = (t.get_mut(list), pv.as_array()) {
                a.retain(|x| !del.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        match pv {
            Value::Object(_) => {
                let entry = t.entry(k.clone()).or_insert_with(|| json!({}));
                strategic_merge(entry, pv);
            }
            Value::Array(pa) => {
                let existing = t.get(k).and_then(Value::as_array).cloned();
                let kind = builtin_list_kind(k, existing.as_deref().unwrap_or(&[]));
                let kind = if kind == ListKind::Atomic {
                    builtin_list_kind(k, pa)
                } else {
                    kind
                };
                match (kind, existing) {
                    (ListKind::Map(keys), Some(mut la)) => {
                        let mk = &keys[0];
                        for pi in pa {
                            let pos = la
                                .iter()
                                .position(|li| li.get(mk).is_some() && li.get(mk) == pi.get(mk));
                            let del = pi.get("$patch").and_then(Value::as_str) == Some("delete");
                            match (pos, del) {
                                (Some(i), true) => {
                                    la.remove(i);
                                }
                                (Some(i), false) => strategic_merge(&mut la[i], pi),
                                (None, false) => la.push(strip(pi)),
                                (None, true) => {}
                            }
                        }
                        t.insert(k.clone(), Value::Array(la));
                    }
                    (ListKind::Set, Some(mut la)) => {
                        for pi in pa {
                            if !la.contains(pi) {
                                la.push(pi.clone());
                            }
                        }
                        t.insert(k.clone(), Value::Array(la));
                    }
                    _ => {
                        t.insert(k.clone(), Value::Array(pa.iter().map(strip).collect()));
                    }
                }
            }
            _ => {
                t.insert(k.clone(), pv.clone());
            }
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        o => o.clone(),
    }
}
