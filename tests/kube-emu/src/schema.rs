//! Structural OpenAPI v3 schemas of CRDs: pruning, validation with API-server style messages,
//! and CEL rules (`x-kubernetes-validations`) through kube-cel.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One node of a structural schema, compiled once.
#[derive(Debug, Default)]
pub struct Schema {
    pub ty: Option<String>,
    pub properties: BTreeMap<String, Schema>,
    pub additional: Option<Box<Schema>>,
    pub additional_false: bool,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enum_: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub pattern: Option<(String, regex::Regex)>,
    pub nullable: bool,
    pub preserve_unknown: bool,
    pub int_or_string: bool,
    pub embedded: bool,
    pub unique_items: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub one_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub all_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
}

impl Schema {
    /// Compiles a JSON schema value.
    pub fn compile(v: &Value) -> Schema {
        let mut s = Schema::default();
        let Some(o) = v.as_object() else { return s };
        s.ty = o.get("type").and_then(Value::as_str).map(str::to_string);
        if let Some(p) = o.get("properties").and_then(Value::as_object) {
            for (k, v) in p {
                s.properties.insert(k.clone(), Schema::compile(v));
            }
        }
        match o.get("additionalProperties") {
            Some(Value::Bool(false)) => s.additional_false = true,
            Some(Value::Bool(true)) => s.additional = Some(Box::default()),
            Some(v @ Value::Object(_)) => s.additional = Some(Box::new(Schema::compile(v))),
            _ => {}
        }
        if let Some(i) = o.get("items") {
            s.items = Some(Box::new(Schema::compile(i)));
        }
        if let Some(r) = o.get("required").and_then(Value::as_array) {
            s.required = r
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
        }
        s.enum_ = o.get("enum").and_then(Value::as_array).cloned();
        let f = |k: &str| o.get(k).and_then(Value::as_f64);
        let u = |k: &str| o.get(k).and_then(Value::as_u64);
        let b = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
        s.minimum = f("minimum");
        s.maximum = f("maximum");
        s.exclusive_minimum = b("exclusiveMinimum");
        s.exclusive_maximum = b("exclusiveMaximum");
        s.min_length = u("minLength");
        s.max_length = u("maxLength");
        s.min_items = u("minItems");
        s.max_items = u("maxItems");
        s.min_properties = u("minProperties");
        s.max_properties = u("maxProperties");
        if let Some(p) = o.get("pattern").and_then(Value::as_str) {
            if let Ok(re) = regex::Regex::new(p) {
                s.pattern = Some((p.to_string(), re));
            }
        }
        s.nullable = b("nullable");
        s.preserve_unknown = b("x-kubernetes-preserve-unknown-fields");
        s.int_or_string = b("x-kubernetes-int-or-string");
        s.embedded = b("x-kubernetes-embedded-resource");
        s.unique_items = b("uniqueItems");
        s.list_type = o
            .get("x-kubernetes-list-type")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(k) = o
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
        {
            s.list_map_keys = k
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
        }
        let arr = |k: &str| -> Vec<Schema> {
            o.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Schema::compile).collect())
                .unwrap_or_default()
        };
        s.one_of = arr("oneOf");
        s.any_of = arr("anyOf");
        s.all_of = arr("allOf");
        s.not = o.get("not").map(|n| Box::new(Schema::compile(n)));
        s
    }

    /// The schema of a child field of an object node.
    pub fn child(&self, name: &str) -> Option<&Schema> {
        self.properties.get(name).or(self.additional.as_deref())
    }
}

/// A validation failure of one field.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    /// The message without the field prefix, e.g. `Required value`.
    pub detail: String,
}

impl FieldError {
    pub fn new(field: &str, reason: &'static str, detail: String) -> Self {
        FieldError {
            field: field.to_string(),
            reason,
            detail,
        }
    }
    pub fn message(&self) -> String {
        if self.field.is_empty() {
            self.detail.clone()
        } else {
            format!("{}: {}", self.field, self.detail)
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes fields the schema does not declare (and nulls of non-nullable fields); returns the
/// paths of the unknown fields. `metadata`, `apiVersion` and `kind` at the root are kept.
pub fn prune(schema: &Schema, v: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if schema.preserve_unknown
                && schema.properties.is_empty()
                && schema.additional.is_none()
            {
                return;
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if root && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                let child = schema.properties.get(&k).or(schema.additional.as_deref());
                match child {
                    Some(c) => {
                        let cv = m.get_mut(&k).expect("key");
                        if cv.is_null() && !c.nullable {
                            m.remove(&k);
                            continue;
                        }
                        prune(c, cv, &join(path, &k), false, unknown);
                    }
                    None => {
                        if !schema.preserve_unknown {
                            unknown.push(join(path, &k));
                            m.remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = &schema.items {
                for (i, x) in a.iter_mut().enumerate() {
                    prune(it, x, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How the API server prints a value in `Invalid value: X`.
pub fn show(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e18 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Validates a value against a structural schema, pushing every failure.
pub fn validate(s: &Schema, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if !s.nullable && s.ty.is_some() {
            errs.push(FieldError::new(
                path,
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    s.ty.as_deref().unwrap_or("")
                ),
            ));
        }
        return;
    }
    let actual = type_name(v);
    if s.int_or_string {
        if !(actual == "integer" || actual == "string") {
            errs.push(FieldError::new(
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: {}: {path} in body must be of type integer-or-string: \"{actual}\"", show(v)),
            ));
            return;
        }
    } else if let Some(t) = &s.ty {
        let ok = t == actual || (t == "number" && actual == "integer");
        if !ok {
            errs.push(FieldError::new(
                path,
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""
                ),
            ));
            return;
        }
    }
    if let Some(en) = &s.enum_ {
        if !en.contains(v) {
            let sup: Vec<String> = en.iter().map(|x| x.to_string()).collect();
            errs.push(FieldError::new(
                path,
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {}: supported values: {}",
                    v,
                    sup.join(", ")
                ),
            ));
        }
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = s.minimum {
                if x < min || (s.exclusive_minimum && x <= min) {
                    let rel = if s.exclusive_minimum {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::new(
                        path,
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: {v}: {path} in body should be {rel} {}",
                            fmt_num(min)
                        ),
                    ));
                }
            }
            if let Some(max) = s.maximum {
                if x > max || (s.exclusive_maximum && x >= max) {
                    let rel = if s.exclusive_maximum {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::new(
                        path,
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: {v}: {path} in body should be {rel} {}",
                            fmt_num(max)
                        ),
                    ));
                }
            }
        }
        Value::String(st) => {
            let len = st.chars().count() as u64;
            if let Some(m) = s.max_length {
                if len > m {
                    errs.push(FieldError::new(
                        path,
                        "FieldValueTooLong",
                        format!("Too long: may not be more than {m} bytes"),
                    ));
                }
            }
            if let Some(m) = s.min_length {
                if len < m {
                    errs.push(FieldError::new(
                        path,
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: {v}: {path} in body should be at least {m} chars long"
                        ),
                    ));
                }
            }
            if let Some((p, re)) = &s.pattern {
                if !re.is_match(st) {
                    errs.push(FieldError::new(
                        path,
                        "FieldValueInvalid",
                        format!("Invalid value: {v}: {path} in body should match '{p}'"),
                    ));
                }
            }
        }
        Value::Array(a) => {
            if let Some(m) = s.max_items {
                if a.len() as u64 > m {
                    errs.push(FieldError::new(
                        path,
                        "FieldValueTooMany",
                        format!("Too many: {}: must have at most {m} items", a.len()),
                    ));
                }
            }
            if let Some(m) = s.min_items {
                if (a.len() as u64) < m {
                    errs.push(FieldError::new(
                        path,
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: {}: {path} in body should have at least {m} items",
                            a.len()
                        ),
                    ));
                }
            }
            if let Some(it) = &s.items {
                for (i, x) in a.iter().enumerate() {
                    validate(it, x, &format!("{path}[{i}]"), errs);
                }
            }
            if s.list_type.as_deref() == Some("set") || s.unique_items {
                for (i, x) in a.iter().enumerate() {
                    if a[..i].contains(x) {
                        errs.push(FieldError::new(
                            &format!("{path}[{i}]"),
                            "FieldValueDuplicate",
                            format!("Duplicate value: {x}"),
                        ));
                    }
                }
            }
            if s.list_type.as_deref() == Some("map") && !s.list_map_keys.is_empty() {
                let mut seen: Vec<Vec<Option<&Value>>> = Vec::new();
                for (i, x) in a.iter().enumerate() {
                    let key: Vec<Option<&Value>> =
                        s.list_map_keys.iter().map(|k| x.get(k)).collect();
                    if seen.contains(&key) {
                        let shown: Vec<String> = s
                            .list_map_keys
                            .iter()
                            .zip(&key)
                            .map(|(k, v)| {
                                format!(
                                    "\"{k}\":{}",
                                    v.map(|v| v.to_string()).unwrap_or("null".into())
                                )
                            })
                            .collect();
                        errs.push(FieldError::new(
                            &format!("{path}[{i}]"),
                            "FieldValueDuplicate",
                            format!(
                                "Duplicate value: map[string]interface {{}}{{{}}}",
                                shown.join(", ")
                            ),
                        ));
                    }
                    seen.push(key);
                }
            }
        }
        Value::Object(m) => {
            for r in &s.required {
                if !m.contains_key(r) {
                    errs.push(FieldError::new(
                        &join(path, r),
                        "FieldValueRequired",
                        "Required value".into(),
                    ));
                }
            }
            if let Some(mx) = s.max_properties {
                if m.len() as u64 > mx {
                    errs.push(FieldError::new(
                        path,
                        "FieldValueTooMany",
                        format!("Too many: {}: must have at most {mx} items", m.len()),
                    ));
                }
            }
            if let Some(mn) = s.min_properties {
                if (m.len() as u64) < mn {
                    errs.push(FieldError::new(
                        path,
                        "FieldValueInvalid",
                        format!("Invalid value: {}: {path} in body should have at least {mn} properties", m.len()),
                    ));
                }
            }
            for (k, x) in m {
                if let Some(c) = s.properties.get(k).or(s.additional.as_deref()) {
                    validate(c, x, &join(path, k), errs);
                }
            }
        }
        _ => {}
    }
    // Value validations of the combinators.
    for a in &s.all_of {
        validate(a, v, path, errs);
    }
    if !s.one_of.is_empty() {
        let ok = s.one_of.iter().filter(|b| passes(b, v, path)).count();
        if ok != 1 {
            let detail = if ok == 0 {
                format!("Invalid value: {}: {}must validate one and only one schema (oneOf). Found none valid", show(v), prefix(path))
            } else {
                format!(
                    "Invalid value: {}: {}must validate one and only one schema (oneOf). Found {ok} valid alternatives",
                    show(v),
                    prefix(path)
                )
            };
            errs.push(FieldError::new(path, "FieldValueInvalid", detail));
        }
    }
    if !s.any_of.is_empty() && !s.any_of.iter().any(|b| passes(b, v, path)) {
        errs.push(FieldError::new(
            path,
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: {}must validate at least one schema (anyOf)",
                show(v),
                prefix(path)
            ),
        ));
    }
    if let Some(n) = &s.not {
        if passes(n, v, path) {
            errs.push(FieldError::new(
                path,
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: {}must not validate the schema (not)",
                    show(v),
                    prefix(path)
                ),
            ));
        }
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path} in body ")
    }
}

fn passes(s: &Schema, v: &Value, path: &str) -> bool {
    let mut e = Vec::new();
    validate(s, v, path, &mut e);
    e.is_empty()
}

/// A compiled CRD version schema: structural part plus CEL programs.
pub struct CrdSchema {
    pub structural: Schema,
    pub cel: Option<kube_cel::CompiledSchema>,
    pub raw: Value,
}

impl std::fmt::Debug for CrdSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrdSchema")
    }
}

fn has_cel(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_cel),
        Value::Array(a) => a.iter().any(has_cel),
        _ => false,
    }
}

impl CrdSchema {
    pub fn compile(raw: &Value) -> CrdSchema {
        let cel = if has_cel(raw) {
            Some(kube_cel::compile_schema(raw))
        } else {
            None
        };
        CrdSchema {
            structural: Schema::compile(raw),
            cel,
            raw: raw.clone(),
        }
    }

    /// Validates an object (already pruned): structural checks first, then CEL when those pass.
    pub fn validate(
        &self,
        obj: &Value,
        old: Option<&Value>,
        ctx: &kube_cel::RootContext,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        // Only spec/status etc. are covered by the schema; metadata is checked elsewhere.
        if let Value::Object(m) = obj {
            for r in &self.structural.required {
                if !m.contains_key(r) && r != "metadata" {
                    errs.push(FieldError::new(
                        r,
                        "FieldValueRequired",
                        "Required value".into(),
                    ));
                }
            }
            for (k, v) in m {
                if k == "metadata" || k == "apiVersion" || k == "kind" {
                    continue;
                }
                if let Some(c) = self.structural.properties.get(k) {
                    validate(c, v, k, &mut errs);
                }
            }
        }
        if errs.is_empty() {
            if let Some(cel) = &self.cel {
                // CRD rules see only metadata.name and metadata.generateName.
                let slim = |v: &Value| -> Value {
                    let mut out = Map::new();
                    if let Value::Object(m) = v {
                        for (k, x) in m {
                            if k == "metadata" {
                                let mut md = Map::new();
                                for f in ["name", "generateName"] {
                                    if let Some(y) = x.get(f) {
                                        md.insert(f.into(), y.clone());
                                    }
                                }
                                out.insert(k.clone(), Value::Object(md));
                            } else {
                                out.insert(k.clone(), x.clone());
                            }
                        }
                    }
                    Value::Object(out)
                };
                let obj_s = slim(obj);
                let old_s = old.map(slim);
                VALIDATOR.with(|val| {
                    if let Err(e) =
                        val.validate_compiled_with_context(cel, &obj_s, old_s.as_ref(), Some(ctx))
                    {
                        for ve in e.into_vec() {
                            let field = ve.field_path.trim_start_matches('.').to_string();
                            let reason = match ve.reason.as_deref() {
                                Some("FieldValueForbidden") => "FieldValueForbidden",
                                Some("FieldValueRequired") => "FieldValueRequired",
                                Some("FieldValueDuplicate") => "FieldValueDuplicate",
                                _ => "FieldValueInvalid",
                            };
                            let value = lookup_path(obj, &field)
                                .map(show)
                                .unwrap_or_else(|| "\"object\"".into());
                            let detail = match reason {
                                "FieldValueForbidden" => format!("Forbidden: {}", ve.message),
                                "FieldValueRequired" => format!("Required value: {}", ve.message),
                                _ => format!("Invalid value: {value}: {}", ve.message),
                            };
                            errs.push(FieldError::new(&field, reason, detail));
                        }
                    }
                });
            }
        }
        errs
    }
}

thread_local! {
    static VALIDATOR: kube_cel::Validator = kube_cel::Validator::new();
}

/// Reads `a.b[1].c` style paths.
pub fn lookup_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    if path.is_empty() {
        return Some(v);
    }
    for part in path.split('.') {
        let (name, idx) = match part.find('[') {
            Some(i) => (&part[..i], Some(&part[i..])),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(idx) = idx {
            for ix in idx.split('[').filter(|s| !s.is_empty()) {
                let n: usize = ix.trim_end_matches(']').parse().ok()?;
                cur = cur.get(n)?;
            }
        }
    }
    Some(cur)
}
