//! The routing core: discovery, OpenAPI, CRUD, patches, server-side apply, TokenRequest.

use crate::fields::{self, Ty, WriteInfo};
use crate::registry::{self, ResourceType};
use crate::schema::FieldError;
use crate::util::{self, status, Query, Resp};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The kubernetes version the server reports.
pub const GIT_VERSION: &str = "v1.32.4";

/// A request to the core.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    pub body: &'a [u8],
}

type Objects = BTreeMap<(String, String), Value>;

/// The mutable state of one cluster.
pub struct State {
    types: Vec<Arc<ResourceType>>,
    by_gvr: HashMap<(String, String, String), Arc<ResourceType>>,
    objects: HashMap<String, Objects>,
    rv: u64,
    counter: u64,
    ip: u32,
    node_port: u32,
    deterministic: bool,
    /// The ids (`jti`) of the bound tokens this server issued.
    issued: std::collections::HashSet<String>,
}

/// One cluster's API server core.
pub struct Core {
    pub state: Mutex<State>,
    pub name: String,
}

struct WriteOpts<'a> {
    manager: &'a str,
    sub: Option<&'a str>,
    dry_run: bool,
    strict: bool,
    /// managedFields were computed by an apply.
    managed_done: bool,
    /// Seeding: keep status, skip validation.
    seed: bool,
}

pub mod authz;

fn body_json(body: &[u8]) -> Result<Value, Resp> {
    if body.is_empty() {
        return Err(util::simple_status(400, "the request body is empty"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(e) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| util::simple_status(400, "the body is not UTF-8"))?;
            serde_yaml::from_str::<Value>(text).map_err(|_| {
                util::simple_status(
                    400,
                    &format!("couldn't get version/kind; json parse error: {e}"),
                )
            })
        }
    }
}

fn meta_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get("metadata")
        .and_then(|m| m.get(k))
        .and_then(Value::as_str)
}

fn ensure_meta(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let o = v.as_object_mut().expect("object");
    if !o.get("metadata").map(Value::is_object).unwrap_or(false) {
        o.insert("metadata".into(), json!({}));
    }
    o.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata")
}

fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn dns1123_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && dns1123_subdomain(s)
}

fn strip_volatile(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(md) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("resourceVersion");
        if let Some(Value::Array(mf)) = md.get_mut("managedFields") {
            for e in mf {
                if let Some(o) = e.as_object_mut() {
                    o.remove("time");
                }
            }
        }
    }
    v
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let pick = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    pick(old) != pick(new)
}

impl State {
    /// A state with the given kinds (built-ins plus CRD kinds).
    pub fn new(crds: &[Arc<registry::CrdSet>], deterministic: bool) -> State {
        let mut s = State {
            types: vec![],
            by_gvr: HashMap::new(),
            objects: HashMap::new(),
            rv: 1000,
            counter: 0,
            ip: 10,
            node_port: 30000,
            deterministic,
            issued: std::collections::HashSet::new(),
        };
        for t in registry::builtins() {
            s.add_type(Arc::new(t));
        }
        for set in crds {
            for t in &set.types {
                s.add_type(t.clone());
            }
        }
        for ns in ["default", "kube-system", "kube-public", "istio-system"] {
            let _ =
                s.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        for set in crds {
            for c in &set.crds {
                let _ = s.seed_object_only(c.clone());
            }
        }
        s
    }

    fn add_type(&mut self, t: Arc<ResourceType>) {
        let key = (t.group.clone(), t.version.clone(), t.plural.clone());
        self.types
            .retain(|x| !(x.group == t.group && x.version == t.version && x.plural == t.plural));
        self.by_gvr.insert(key, t.clone());
        self.types.push(t);
    }

    fn now(&self) -> String {
        util::rfc3339(if self.deterministic {
            util::FIXED_EPOCH
        } else {
            util::unix_now()
        })
    }

    fn now_secs(&self) -> i64 {
        if self.deterministic {
            util::FIXED_EPOCH
        } else {
            util::unix_now()
        }
    }

    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn new_uid(&mut self) -> String {
        let n = self.next_counter();
        if self.deterministic {
            format!("00000000-0000-4000-8000-{n:012x}")
        } else {
            util::uuid_from(util::random_u64(), util::random_u64() ^ n)
        }
    }

    fn suffix(&mut self) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = if self.deterministic {
            self.next_counter() * 7919
        } else {
            util::random_u64()
        };
        let mut s = String::new();
        for _ in 0..5 {
            s.push(ALPHA[(n % ALPHA.len() as u64) as usize] as char);
            n /= ALPHA.len() as u64;
        }
        s
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// Finds the type of an apiVersion + kind.
    pub fn type_of(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (g, v) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.types
            .iter()
            .find(|t| t.group == g && t.version == v && t.kind == kind)
            .cloned()
    }

    fn type_by_plural(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    fn ns_exists(&self, ns: &str) -> bool {
        self.objects
            .get("/namespaces")
            .map(|m| m.contains_key(&(String::new(), ns.to_string())))
            .unwrap_or(false)
    }

    fn get_obj(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&rt.store_key())?
            .get(&(ns.to_string(), name.to_string()))
    }

    fn present(rt: &ResourceType, v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("apiVersion".into(), json!(rt.api_version()));
            o.insert("kind".into(), json!(rt.kind));
        }
        v
    }

    // ---- errors ----

    fn not_found(rt: &ResourceType, name: &str) -> Resp {
        status(
            404,
            "NotFound",
            &format!("{} \"{}\" not found", rt.qualified_plural(), name),
            Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
        )
    }

    fn ns_not_found(ns: &str) -> Resp {
        status(
            404,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
            Some(json!({"name": ns, "kind": "namespaces"})),
        )
    }

    fn conflict(rt: &ResourceType, name: &str) -> Resp {
        status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified_plural(),
                name
            ),
            Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
        )
    }

    fn invalid(rt: &ResourceType, name: &str, errs: &[FieldError]) -> Resp {
        let msgs: Vec<String> = errs.iter().map(FieldError::message).collect();
        let joined = if msgs.len() == 1 {
            msgs[0].clone()
        } else {
            format!("[{}]", msgs.join(", "))
        };
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.detail, "field": e.field}))
            .collect();
        status(
            422,
            "Invalid",
            &format!(
                "{} \"{}\" is invalid: {}",
                rt.qualified_kind(),
                name,
                joined
            ),
            Some(json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes})),
        )
    }

    // ---- the write pipeline ----

    fn apply_defaults(
        &mut self,
        rt: &ResourceType,
        old: Option<&Value>,
        obj: &mut Value,
        create: bool,
    ) {
        if rt.is_crd {
            return;
        }
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Service") => {
                let spec = obj
                    .as_object_mut()
                    .expect("object")
                    .entry("spec")
                    .or_insert_with(|| json!({}));
                let ty = spec
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("ClusterIP")
                    .to_string();
                spec["type"] = json!(ty);
                if ty != "ExternalName" {
                    let has_ip = spec
                        .get("clusterIP")
                        .and_then(Value::as_str)
                        .map(|s| !s.is_empty())
                        .unwrap_or(false);
                    if !has_ip {
                        let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
                        let ip = match old_ip {
                            Some(ip) => ip,
                            None => {
                                self.ip += 1;
                                json!(format!("10.96.{}.{}", self.ip / 256, self.ip % 256))
                            }
                        };
                        spec["clusterIP"] = ip;
                    }
                    let ip = spec["clusterIP"].clone();
                    spec["clusterIPs"] = json!([ip]);
                    if spec.get("sessionAffinity").is_none() {
                        spec["sessionAffinity"] = json!("None");
                    }
                    if spec.get("ipFamilies").is_none() {
                        spec["ipFamilies"] = json!(["IPv4"]);
                    }
                    if spec.get("ipFamilyPolicy").is_none() {
                        spec["ipFamilyPolicy"] = json!("SingleStack");
                    }
                    if spec.get("internalTrafficPolicy").is_none() {
                        spec["internalTrafficPolicy"] = json!("Cluster");
                    }
                }
                let node_ports = ty == "NodePort" || ty == "LoadBalancer";
                // Like kube-apiserver: a Service that no longer needs node ports loses the
                // ones (and the external traffic policy) it kept unchanged from before.
                if let (false, Some(old_spec)) = (node_ports, old.and_then(|o| o.get("spec"))) {
                    if spec.get("externalTrafficPolicy").is_some()
                        && spec.get("externalTrafficPolicy")
                            == old_spec.get("externalTrafficPolicy")
                    {
                        spec.as_object_mut()
                            .expect("object")
                            .remove("externalTrafficPolicy");
                    }
                    let old_ports = old_spec.get("ports").and_then(Value::as_array);
                    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                        for p in ports.iter_mut() {
                            let kept = old_ports.into_iter().flatten().any(|o| {
                                o.get("port") == p.get("port")
                                    && o.get("nodePort").is_some()
                                    && o.get("nodePort") == p.get("nodePort")
                            });
                            if kept {
                                p.as_object_mut().expect("object").remove("nodePort");
                            }
                        }
                    }
                }
                if node_ports && spec.get("externalTrafficPolicy").is_none() {
                    spec["externalTrafficPolicy"] = json!("Cluster");
                }
                if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                    for p in ports.iter_mut() {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                        if p.get("targetPort").is_none() && ty != "ExternalName" {
                            if let Some(port) = p.get("port").cloned() {
                                p["targetPort"] = port;
                            }
                        }
                        if node_ports && p.get("nodePort").is_none() {
                            let port = p.get("port").cloned();
                            let prev = old
                                .and_then(|o| o.pointer("/spec/ports"))
                                .and_then(Value::as_array)
                                .and_then(|a| a.iter().find(|x| x.get("port") == port.as_ref()))
                                .and_then(|x| x.get("nodePort"))
                                .cloned();
                            p["nodePort"] = match prev {
                                Some(n) => n,
                                None => {
                                    self.node_port += 1;
                                    json!(self.node_port)
                                }
                            };
                        }
                    }
                }
                if create && obj.get("status").is_none() {
                    obj["status"] = json!({"loadBalancer": {}});
                }
                // An ingress IP's ipMode defaults to VIP, as on kube-apiserver.
                if let Some(Value::Array(ingress)) = obj.pointer_mut("/status/loadBalancer/ingress")
                {
                    for i in ingress.iter_mut() {
                        if i.get("ip").is_some() && i.get("ipMode").is_none() {
                            i["ipMode"] = json!("VIP");
                        }
                    }
                }
            }
            ("", "Namespace") => {
                let md = ensure_meta(obj);
                let labels = md.entry("labels").or_insert_with(|| json!({}));
                labels["kubernetes.io/metadata.name"] = json!(name);
                if obj.get("spec").is_none() {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                }
                if obj.get("status").is_none() {
                    obj["status"] = json!({"phase": "Active"});
                }
            }
            ("", "Secret") => {
                if let Some(Value::Object(sd)) =
                    obj.as_object_mut().and_then(|o| o.remove("stringData"))
                {
                    let data = obj
                        .as_object_mut()
                        .expect("object")
                        .entry("data")
                        .or_insert_with(|| json!({}));
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or("").to_string();
                        data[k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                    }
                }
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
                if create {
                    self.fill_service_account_token(obj);
                }
            }
            ("", "Pod") if create && obj.get("status").is_none() => {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
            ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") => {
                let spec = obj
                    .as_object_mut()
                    .expect("object")
                    .entry("spec")
                    .or_insert_with(|| json!({}));
                if spec.get("replicas").is_none() {
                    spec["replicas"] = json!(1);
                }
            }
            _ => {}
        }
    }

    fn typed_check(rt: &ResourceType, obj: &Value) -> Result<(), String> {
        use k8s_openapi::api as a;
        fn chk<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
            serde_json::from_value::<T>(v.clone())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Service") => chk::<a::core::v1::Service>(obj),
            ("", "ConfigMap") => chk::<a::core::v1::ConfigMap>(obj),
            ("", "Secret") => chk::<a::core::v1::Secret>(obj),
            ("", "ServiceAccount") => chk::<a::core::v1::ServiceAccount>(obj),
            ("", "Endpoints") => chk::<a::core::v1::Endpoints>(obj),
            ("", "Pod") => chk::<a::core::v1::Pod>(obj),
            ("", "Namespace") => chk::<a::core::v1::Namespace>(obj),
            ("apps", "Deployment") => chk::<a::apps::v1::Deployment>(obj),
            ("apps", "StatefulSet") => chk::<a::apps::v1::StatefulSet>(obj),
            ("apps", "DaemonSet") => chk::<a::apps::v1::DaemonSet>(obj),
            ("apps", "ReplicaSet") => chk::<a::apps::v1::ReplicaSet>(obj),
            ("batch", "Job") => chk::<a::batch::v1::Job>(obj),
            ("batch", "CronJob") => chk::<a::batch::v1::CronJob>(obj),
            ("discovery.k8s.io", "EndpointSlice") => chk::<a::discovery::v1::EndpointSlice>(obj),
            ("rbac.authorization.k8s.io", "ClusterRole") => chk::<a::rbac::v1::ClusterRole>(obj),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
                chk::<a::rbac::v1::ClusterRoleBinding>(obj)
            }
            _ => Ok(()),
        }
    }

    /// Validates, versions and stores an object. Returns the stored object and whether it was created.
    // The arguments are the parts of one write request; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        mut new: Value,
        o: &WriteOpts,
        warnings: &mut Vec<String>,
    ) -> Result<(Value, bool), Resp> {
        if !new.is_object() {
            return Err(util::simple_status(400, "the object must be a JSON object"));
        }
        {
            let md = ensure_meta(&mut new);
            md.insert("name".into(), json!(name));
            if rt.namespaced {
                md.insert("namespace".into(), json!(ns));
            } else {
                md.remove("namespace");
            }
            md.remove("selfLink");
        }
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        if let Some(old) = old {
            if let Some(rv) = meta_str(&new, "resourceVersion") {
                if !rv.is_empty() && Some(rv) != meta_str(old, "resourceVersion") {
                    return Err(Self::conflict(rt, name));
                }
            }
            if o.sub == Some("status") {
                let mut merged = old.clone();
                match new.get("status") {
                    Some(s) => merged["status"] = s.clone(),
                    None => {
                        merged.as_object_mut().expect("object").remove("status");
                    }
                }
                if o.managed_done {
                    let mf = new.pointer("/metadata/managedFields").cloned();
                    let md = ensure_meta(&mut merged);
                    match mf {
                        Some(mf) => md.insert("managedFields".into(), mf),
                        None => md.remove("managedFields"),
                    };
                }
                new = merged;
            } else if rt.has_status && !o.seed {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().expect("object").remove("status");
                    }
                }
                // Like kube-apiserver: a Service that is no longer a LoadBalancer loses its
                // load-balancer status at once (the de-provisioning is not shown to users).
                if rt.group.is_empty()
                    && rt.kind == "Service"
                    && new.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer")
                    && new.pointer("/status/loadBalancer").is_some()
                {
                    new["status"]["loadBalancer"] = json!({});
                }
            }
            let md = ensure_meta(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                match old.pointer(&format!("/metadata/{k}")) {
                    Some(v) => md.insert(k.into(), v.clone()),
                    None => md.remove(k),
                };
            }
        } else {
            if rt.has_status && !o.seed {
                new.as_object_mut().expect("object").remove("status");
            }
            let uid = self.new_uid();
            let now = self.now();
            let md = ensure_meta(&mut new);
            md.insert("uid".into(), json!(uid));
            md.insert("creationTimestamp".into(), json!(now));
            md.insert("generation".into(), json!(1));
            md.remove("resourceVersion");
            md.remove("deletionTimestamp");
        }
        self.apply_defaults(rt, old, &mut new, old.is_none());
        // Validation.
        let mut errs = Vec::new();
        if old.is_none() {
            let ok = match (rt.group.as_str(), rt.kind.as_str()) {
                ("", "Namespace") | ("", "Service") => dns1123_label(name),
                _ => dns1123_subdomain(name),
            };
            if !ok {
                errs.push(FieldError::new(
                    "metadata.name",
                    "FieldValueInvalid",
                    format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
                ));
            }
        }
        let lb_ingress = new
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .is_some_and(|i| !i.is_empty());
        if !o.seed
            && rt.group.is_empty()
            && rt.kind == "Service"
            && lb_ingress
            && new.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer")
        {
            errs.push(FieldError::new(
                "status.loadBalancer.ingress",
                "FieldValueForbidden",
                "Forbidden: may only be used when `spec.type` is 'LoadBalancer'".into(),
            ));
        }
        if let Some(schema) = rt.schema.as_ref().filter(|_| !o.seed) {
            let mut unknown = Vec::new();
            crate::schema::prune(&schema.structural, &mut new, "", true, &mut unknown);
            if !unknown.is_empty() {
                if o.strict {
                    let parts: Vec<String> = unknown
                        .iter()
                        .map(|u| format!("unknown field \"{u}\""))
                        .collect();
                    return Err(status(
                        400,
                        "BadRequest",
                        &format!("strict decoding error: {}", parts.join(", ")),
                        None,
                    ));
                }
                warnings.extend(unknown.iter().map(|u| format!("unknown field \"{u}\"")));
            }
            let ctx = kube_cel::RootContext {
                api_version: rt.api_version(),
                api_group: rt.group.clone(),
                kind: rt.kind.clone(),
            };
            let old_for_cel = old.filter(|_| o.sub != Some("status"));
            errs.extend(schema.validate(&new, old_for_cel, &ctx));
        }
        if !errs.is_empty() {
            if std::env::var("KUBE_EMU_DEBUG").is_ok() {
                eprintln!("INVALID {new}");
            }
            return Err(Self::invalid(rt, name, &errs));
        }
        if !rt.is_crd {
            if let Err(e) = Self::typed_check(rt, &new) {
                return Err(status(
                    400,
                    "BadRequest",
                    &format!("{} in body is invalid: {e}", rt.kind),
                    None,
                ));
            }
        }
        let ty = Ty::root(rt.schema.as_ref().map(|s| &s.structural));
        if !o.managed_done && !o.seed {
            let now = self.now();
            let av = rt.api_version();
            let w = WriteInfo {
                manager: o.manager,
                api_version: &av,
                now: &now,
                sub: o.sub,
                has_status: rt.has_status,
            };
            fields::record_update(old, &mut new, ty, &w);
        }
        if let Some(old) = old {
            let gen = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let gen = if spec_changed(old, &new) {
                gen + 1
            } else {
                gen
            };
            ensure_meta(&mut new).insert("generation".into(), json!(gen));
            if strip_volatile(old) == strip_volatile(&new) {
                return Ok((Self::present(rt, old), false));
            }
        }
        if o.dry_run {
            return Ok((new, old.is_none()));
        }
        let rv = self.next_rv();
        ensure_meta(&mut new).insert("resourceVersion".into(), json!(rv));
        self.objects
            .entry(rt.store_key())
            .or_default()
            .insert((ns.to_string(), name.to_string()), new.clone());
        self.after_write(rt, ns, name, old.is_none(), &new);
        Ok((new, old.is_none()))
    }

    fn after_write(
        &mut self,
        rt: &ResourceType,
        _ns: &str,
        name: &str,
        created: bool,
        obj: &Value,
    ) {
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Namespace") if created => {
                let _ = self.seed(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": name}}));
                let _ = self.seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "kube-root-ca.crt", "namespace": name},
                    "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nkube-emu\n-----END CERTIFICATE-----\n"}}));
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                if let Ok(types) = registry::crd_types(obj) {
                    for t in types {
                        self.add_type(Arc::new(t));
                    }
                }
            }
            _ => {}
        }
    }

    fn seed_object_only(&mut self, obj: Value) -> anyhow::Result<()> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = obj["kind"].as_str().unwrap_or("").to_string();
        let rt = self
            .type_of(&api_version, &kind)
            .ok_or_else(|| anyhow::anyhow!("unknown kind {api_version} {kind}"))?;
        let name = meta_str(&obj, "name")
            .ok_or_else(|| anyhow::anyhow!("object without metadata.name"))?
            .to_string();
        let uid = self.new_uid();
        let now = self.now();
        let rv = self.next_rv();
        let mut obj = obj;
        let md = ensure_meta(&mut obj);
        md.insert("uid".into(), json!(uid));
        md.insert("creationTimestamp".into(), json!(now));
        md.insert("resourceVersion".into(), json!(rv));
        md.insert("generation".into(), json!(1));
        self.objects
            .entry(rt.store_key())
            .or_default()
            .insert((String::new(), name), obj);
        Ok(())
    }

    /// Seeds an object: create or replace, keeping the status it carries, without validation.
    pub fn seed(&mut self, mut obj: Value) -> anyhow::Result<()> {
        if let Some(ann) = obj
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            ann.remove("kube-emu/cluster");
            if ann.is_empty() {
                obj["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("annotations"));
            }
        }
        let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = obj["kind"].as_str().unwrap_or("").to_string();
        let rt = self
            .type_of(&api_version, &kind)
            .ok_or_else(|| anyhow::anyhow!("unknown kind {api_version} {kind}"))?;
        let name = meta_str(&obj, "name")
            .ok_or_else(|| anyhow::anyhow!("{kind} without metadata.name"))?
            .to_string();
        let ns = if rt.namespaced {
            meta_str(&obj, "namespace").unwrap_or("default").to_string()
        } else {
            String::new()
        };
        if rt.namespaced && !self.ns_exists(&ns) {
            self.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
        }
        let old = self.get_obj(&rt, &ns, &name).cloned();
        if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            md.remove("resourceVersion");
        }
        let o = WriteOpts {
            manager: "kube-emu",
            sub: None,
            dry_run: false,
            strict: false,
            managed_done: false,
            seed: true,
        };
        let mut w = Vec::new();
        self.commit(&rt, &ns, &name, old.as_ref(), obj, &o, &mut w)
            .map_err(|r| {
                anyhow::anyhow!(
                    "seeding {kind} {name}: {}",
                    String::from_utf8_lossy(&r.body)
                )
            })?;
        Ok(())
    }

    /// Reads an object or collection by API path (no log, no faults).
    pub fn read_path(&self, path: &str) -> Option<Value> {
        let p = parse_path(path)?;
        let rt = self.type_by_plural(&p.group, &p.version, &p.plural)?;
        match &p.name {
            Some(n) => self
                .get_obj(&rt, p.ns.as_deref().unwrap_or(""), n)
                .map(|v| Self::present(&rt, v)),
            None => {
                let items: Vec<Value> = self
                    .objects
                    .get(&rt.store_key())
                    .map(|m| {
                        m.iter()
                            .filter(|((ns, _), _)| p.ns.as_ref().map(|x| x == ns).unwrap_or(true))
                            .map(|(_, v)| Self::present(&rt, v))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Value::Array(items))
            }
        }
    }

    /// Deletes by API path (no log, no faults).
    pub fn delete_path(&mut self, path: &str) -> bool {
        let Some(p) = parse_path(path) else {
            return false;
        };
        let Some(rt) = self.type_by_plural(&p.group, &p.version, &p.plural) else {
            return false;
        };
        let Some(n) = p.name else { return false };
        self.remove(&rt, p.ns.as_deref().unwrap_or(""), &n)
            .is_some()
    }

    fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        let v = self
            .objects
            .get_mut(&rt.store_key())?
            .remove(&(ns.to_string(), name.to_string()))?;
        if rt.group.is_empty() && rt.kind == "Namespace" {
            for m in self.objects.values_mut() {
                m.retain(|(n, _), _| n != name);
            }
        }
        if rt.kind == "CustomResourceDefinition" {
            if let (Some(g), Some(p)) = (
                v.pointer("/spec/group").and_then(Value::as_str),
                v.pointer("/spec/names/plural").and_then(Value::as_str),
            ) {
                self.types.retain(|t| !(t.group == g && t.plural == p));
                self.by_gvr.retain(|(tg, _, tp), _| !(tg == g && tp == p));
                self.objects.remove(&format!("{g}/{p}"));
            }
        }
        Some(v)
    }
}

/// A parsed resource path.
#[derive(Debug)]
pub struct ApiPath {
    pub group: String,
    pub version: String,
    pub ns: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub fn parse_path(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (ns, r) = if namespaced {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    if r.len() > 3 {
        return None;
    }
    Some(ApiPath {
        group,
        version,
        ns,
        plural: r[0].to_string(),
        name: r.get(1).map(|s| s.to_string()),
        sub: r.get(2).map(|s| s.to_string()),
    })
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Core {
    pub fn new(name: &str, crds: &[Arc<registry::CrdSet>], deterministic: bool) -> Core {
        Core {
            state: Mutex::new(State::new(crds, deterministic)),
            name: name.to_string(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Handles one authenticated request.
    pub fn handle(&self, r: &Request) -> Resp {
        let path = if r.path.len() > 1 {
            r.path.trim_end_matches('/')
        } else {
            r.path
        };
        match path {
            "/version" => return Resp::json(200, &version_json()),
            "/healthz" | "/livez" | "/readyz" => return Resp::text(200, "ok"),
            "/openapi/v2" | "/swagger.json" => {
                return util::simple_status(404, "the server could not find the requested resource")
            }
            _ => {}
        }
        let st = self.lock();
        if path == "/api" || path == "/apis" {
            return discovery_root(&st, path == "/api", r.accept);
        }
        if path == "/openapi/v3" {
            return Resp::json(200, &openapi_root(&st));
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            return match openapi_gv(&st, gv) {
                Some(v) => Resp::json(200, &v),
                None => {
                    util::simple_status(404, "the server could not find the requested resource")
                }
            };
        }
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segs.as_slice() {
            ["api", "v1"] => return Resp::json(200, &resource_list(&st, "", "v1")),
            ["apis", g] => {
                return match group_json(&st, g) {
                    Some(v) => Resp::json(200, &v),
                    None => {
                        util::simple_status(404, "the server could not find the requested resource")
                    }
                }
            }
            ["apis", g, v] => {
                return if st.types.iter().any(|t| t.group == *g && t.version == *v) {
                    Resp::json(200, &resource_list(&st, g, v))
                } else {
                    util::simple_status(404, "the server could not find the requested resource")
                }
            }
            _ => {}
        }
        drop(st);
        let Some(p) = parse_path(path) else {
            return util::simple_status(404, "the server could not find the requested resource");
        };
        self.resource(r, p)
    }

    fn resource(&self, r: &Request, p: ApiPath) -> Resp {
        let q = Query::parse(r.query);
        let mut st = self.lock();
        let Some(rt) = st.type_by_plural(&p.group, &p.version, &p.plural) else {
            return util::simple_status(404, "the server could not find the requested resource");
        };
        if !rt.namespaced && p.ns.is_some() {
            return util::simple_status(404, "the server could not find the requested resource");
        }
        if rt.namespaced && p.ns.is_none() && p.name.is_some() {
            return util::simple_status(404, "the server could not find the requested resource");
        }
        if let Some(sub) = &p.sub {
            if !rt.subresources().contains(&sub.as_str()) {
                return util::simple_status(
                    404,
                    "the server could not find the requested resource",
                );
            }
        }
        if r.content_type.contains("protobuf") {
            return status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json", None);
        }
        let ns = p.ns.clone().unwrap_or_default();
        let manager_default = r
            .user_agent
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string();
        let manager = q
            .get("fieldManager")
            .map(str::to_string)
            .unwrap_or(manager_default);
        let dry_run = q.get("dryRun") == Some("All");
        let strict = q.get("fieldValidation") == Some("Strict");
        let mut warnings = Vec::new();
        let mut resp = match (r.method, &p.name, p.sub.as_deref()) {
            ("GET", None, _) => {
                if q.flag("watch") {
                    status(
                        405,
                        "MethodNotAllowed",
                        "watch is not supported by kube-emu",
                        None,
                    )
                } else {
                    list(&st, &rt, p.ns.as_deref(), &q)
                }
            }
            ("GET", Some(name), _) => match st.get_obj(&rt, &ns, name) {
                Some(v) => Resp::json(200, &State::present(&rt, v)),
                None => State::not_found(&rt, name),
            },
            ("POST", None, _) => {
                let body = match body_json(r.body) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                create(
                    &mut st,
                    &rt,
                    &ns,
                    p.ns.is_some(),
                    body,
                    &manager,
                    dry_run,
                    strict,
                    &mut warnings,
                )
            }
            ("POST", Some(name), Some("token")) => token_request(&mut st, &ns, name, r.body),
            ("PUT", Some(name), sub) => {
                let body = match body_json(r.body) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                if let Some(bn) = meta_str(&body, "name") {
                    if bn != name {
                        return status(400, "BadRequest", &format!("the name of the object ({bn}) does not match the name on the URL ({name})"), None);
                    }
                }
                let old = match st.get_obj(&rt, &ns, name) {
                    Some(o) => o.clone(),
                    None => return State::not_found(&rt, name),
                };
                let o = WriteOpts {
                    manager: &manager,
                    sub,
                    dry_run,
                    strict,
                    managed_done: false,
                    seed: false,
                };
                match st.commit(&rt, &ns, name, Some(&old), body, &o, &mut warnings) {
                    Ok((v, _)) => Resp::json(200, &v),
                    Err(e) => e,
                }
            }
            ("PATCH", Some(name), sub) => patch(
                &mut st,
                &rt,
                &ns,
                name,
                sub,
                r,
                &q,
                &manager,
                dry_run,
                strict,
                &mut warnings,
            ),
            ("DELETE", Some(name), None) => {
                let options = serde_json::from_slice::<Value>(r.body).ok();
                let want = options.as_ref().and_then(|b| {
                    b["preconditions"]["resourceVersion"]
                        .as_str()
                        .map(String::from)
                });
                // The real server takes dryRun from the DeleteOptions body too, which is where
                // kube-rs puts it.
                let dry_run = dry_run
                    || options.as_ref().is_some_and(|b| {
                        b["dryRun"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x == "All"))
                    });
                let have = st
                    .get_obj(&rt, &ns, name)
                    .and_then(|o| meta_str(o, "resourceVersion"))
                    .map(String::from);
                if have.is_none() {
                    State::not_found(&rt, name)
                } else if want.is_some() && want != have {
                    status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {} \"{name}\": the ResourceVersion in the precondition ({}) does not match the ResourceVersion in record ({}). The object might have been modified",
                            rt.qualified_plural(),
                            want.unwrap_or_default(),
                            have.unwrap_or_default()
                        ),
                        Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
                    )
                } else if dry_run {
                    Resp::json(
                        200,
                        &State::present(&rt, st.get_obj(&rt, &ns, name).expect("present")),
                    )
                } else {
                    let v = st.remove(&rt, &ns, name).expect("present");
                    if rt.kind == "Namespace" && rt.group.is_empty() {
                        let mut v = State::present(&rt, &v);
                        v["status"] = json!({"phase": "Terminating"});
                        Resp::json(200, &v)
                    } else {
                        Resp::json(200, &State::present(&rt, &v))
                    }
                }
            }
            ("DELETE", None, None) => {
                let sel = match q.get("labelSelector").map(util::parse_selector).transpose() {
                    Ok(s) => s.unwrap_or_default(),
                    Err(e) => return util::simple_status(400, &e),
                };
                let keys: Vec<(String, String)> = st
                    .objects
                    .get(&rt.store_key())
                    .map(|m| {
                        m.iter()
                            .filter(|((n, _), v)| {
                                (p.ns.is_none() || *n == ns) && label_match(&sel, v)
                            })
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let mut items = Vec::new();
                for (n, name) in keys {
                    if !dry_run {
                        if let Some(v) = st.remove(&rt, &n, &name) {
                            items.push(State::present(&rt, &v));
                        }
                    }
                }
                let rv = st.rv.to_string();
                Resp::json(
                    200,
                    &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            _ => status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
        };
        resp.warnings.extend(warnings);
        resp
    }
}

fn label_match(sel: &[util::Req], v: &Value) -> bool {
    if sel.is_empty() {
        return true;
    }
    let labels = v.pointer("/metadata/labels");
    util::matches(sel, &|k| {
        labels
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

fn list(st: &State, rt: &ResourceType, ns: Option<&str>, q: &Query) -> Resp {
    let sel = match q.get("labelSelector").map(util::parse_selector).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return util::simple_status(400, &e),
    };
    let fsel = match q.get("fieldSelector").map(util::parse_selector).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return util::simple_status(400, &e),
    };
    for r in &fsel {
        let k = match r {
            util::Req::Eq(k, _) | util::Req::Ne(k, _) => k,
            _ => {
                return util::simple_status(
                    400,
                    "invalid field selector: only =, == and != are supported",
                )
            }
        };
        if !(k == "metadata.name"
            || k == "metadata.namespace"
            || k.starts_with("spec.")
            || k.starts_with("status.")
            || k == "type")
        {
            return status(
                400,
                "BadRequest",
                &format!("field label not supported: {k}"),
                None,
            );
        }
    }
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let all: Vec<&Value> = st
        .objects
        .get(&rt.store_key())
        .map(|m| {
            m.iter()
                .filter(|((n, _), _)| ns.map(|x| x == n).unwrap_or(true))
                .map(|(_, v)| v)
                .filter(|v| label_match(&sel, v))
                .filter(|v| {
                    util::matches(&fsel, &|k| {
                        crate::schema::lookup_path(v, k)
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|v| State::present(rt, v))
        .collect();
    let mut md = json!({"resourceVersion": st.rv.to_string()});
    if start + page.len() < all.len() {
        md["continue"] = json!((start + page.len()).to_string());
        md["remainingItemCount"] = json!(all.len() - start - page.len());
    }
    Resp::json(
        200,
        &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": md, "items": page}),
    )
}

#[allow(clippy::too_many_arguments)]
fn create(
    st: &mut State,
    rt: &Arc<ResourceType>,
    ns: &str,
    has_ns: bool,
    mut body: Value,
    manager: &str,
    dry_run: bool,
    strict: bool,
    warnings: &mut Vec<String>,
) -> Resp {
    if rt.namespaced && !has_ns {
        return util::simple_status(
            405,
            "the server does not allow this method on the requested resource",
        );
    }
    if let (Some(k), Some(av)) = (
        body.get("kind").and_then(Value::as_str),
        body.get("apiVersion").and_then(Value::as_str),
    ) {
        if (k != rt.kind || (av != rt.api_version() && !(rt.group.is_empty() && av == "v1")))
            && st
                .type_of(av, k)
                .map(|t| t.store_key() != rt.store_key())
                .unwrap_or(true)
        {
            return status(400, "BadRequest", &format!("the API version in the data ({av}) does not match the expected API version ({})", rt.api_version()), None);
        }
    }
    if rt.namespaced {
        if let Some(bns) = meta_str(&body, "namespace") {
            if !bns.is_empty() && bns != ns {
                return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request", None);
            }
        }
        if !st.ns_exists(ns) {
            return State::ns_not_found(ns);
        }
    }
    let mut name = meta_str(&body, "name").unwrap_or("").to_string();
    if name.is_empty() {
        if let Some(gn) = meta_str(&body, "generateName")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
        {
            name = format!("{gn}{}", st.suffix());
        }
    }
    if name.is_empty() {
        return State::invalid(
            rt,
            "",
            &[FieldError::new(
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required".into(),
            )],
        );
    }
    if st.get_obj(rt, ns, &name).is_some() {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{}\" already exists", rt.qualified_plural(), name),
            Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
        );
    }
    ensure_meta(&mut body);
    let o = WriteOpts {
        manager,
        sub: None,
        dry_run,
        strict,
        managed_done: false,
        seed: false,
    };
    match st.commit(rt, ns, &name, None, body, &o, warnings) {
        Ok((v, _)) => Resp::json(201, &v),
        Err(e) => e,
    }
}

#[allow(clippy::too_many_arguments)]
fn patch(
    st: &mut State,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    r: &Request,
    q: &Query,
    manager: &str,
    dry_run: bool,
    strict: bool,
    warnings: &mut Vec<String>,
) -> Resp {
    let ct = r.content_type.split(';').next().unwrap_or("").trim();
    let old = st.get_obj(rt, ns, name).cloned();
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+json" {
        let Some(fm) = q.get("fieldManager").filter(|s| !s.is_empty()) else {
            return status(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})),
            );
        };
        let mut cfg = match body_json(r.body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Some(bn) = meta_str(&cfg, "name") {
            if bn != name {
                return status(
                    400,
                    "BadRequest",
                    &format!(
                        "the name of the object ({bn}) does not match the name on the URL ({name})"
                    ),
                    None,
                );
            }
        }
        if cfg.get("apiVersion").is_none() || cfg.get("kind").is_none() {
            return status(
                400,
                "BadRequest",
                "invalid object type: apiVersion and kind must be set",
                None,
            );
        }
        if rt.namespaced && old.is_none() && !st.ns_exists(ns) {
            return State::ns_not_found(ns);
        }
        // As on a real server, metadata.resourceVersion in an apply is a precondition on an
        // object that exists (and ignored when the apply creates it).
        if let (Some(want), Some(old)) = (
            meta_str(&cfg, "resourceVersion").filter(|v| !v.is_empty()),
            old.as_ref(),
        ) {
            if meta_str(old, "resourceVersion") != Some(want) {
                return State::conflict(rt, name);
            }
        }
        if let Some(md) = cfg.get_mut("metadata").and_then(Value::as_object_mut) {
            md.remove("resourceVersion");
            md.remove("managedFields");
            md.remove("namespace");
            md.remove("name");
        }
        cfg.as_object_mut().map(|o| {
            o.remove("apiVersion");
            o.remove("kind")
        });
        if let Some(schema) = &rt.schema {
            let mut unknown = Vec::new();
            crate::schema::prune(&schema.structural, &mut cfg, "", true, &mut unknown);
            if !unknown.is_empty() {
                if strict {
                    let parts: Vec<String> = unknown
                        .iter()
                        .map(|u| format!("unknown field \"{u}\""))
                        .collect();
                    return status(
                        400,
                        "BadRequest",
                        &format!("strict decoding error: {}", parts.join(", ")),
                        None,
                    );
                }
                warnings.extend(unknown.iter().map(|u| format!("unknown field \"{u}\"")));
            }
        }
        if rt.has_status && sub.is_none() {
            cfg.as_object_mut().map(|o| o.remove("status"));
        }
        let live = old.clone().unwrap_or_else(|| json!({"metadata": {}}));
        let now = st.now();
        let av = rt.api_version();
        let w = WriteInfo {
            manager: fm,
            api_version: &av,
            now: &now,
            sub,
            has_status: rt.has_status,
        };
        let ty = Ty::root(rt.schema.as_ref().map(|s| &s.structural));
        let merged = match fields::apply(&live, &cfg, ty, &w, q.flag("force")) {
            Ok(m) => m,
            Err(conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version), "field": c.path}))
                    .collect();
                let msg = if conflicts.len() == 1 {
                    let c = &conflicts[0];
                    format!(
                        "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
                        c.manager, c.api_version, c.path
                    )
                } else {
                    let mut s = format!("Apply failed with {} conflicts: ", conflicts.len());
                    let mut by: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
                    for c in &conflicts {
                        by.entry((c.manager.clone(), c.api_version.clone()))
                            .or_default()
                            .push(c.path.clone());
                    }
                    let parts: Vec<String> = by
                        .iter()
                        .map(|((m, a), ps)| {
                            format!("conflicts with \"{m}\" using {a}:\n- {}", ps.join("\n- "))
                        })
                        .collect();
                    s.push_str(&parts.join("\n"));
                    s
                };
                return status(
                    409,
                    "Conflict",
                    &msg,
                    Some(
                        json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
                    ),
                );
            }
        };
        let o = WriteOpts {
            manager: fm,
            sub,
            dry_run,
            strict,
            managed_done: true,
            seed: false,
        };
        return match st.commit(rt, ns, name, old.as_ref(), merged, &o, warnings) {
            Ok((v, created)) => Resp::json(if created { 201 } else { 200 }, &v),
            Err(e) => e,
        };
    }
    let Some(old) = old else {
        return State::not_found(rt, name);
    };
    let patch_body = match body_json(r.body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut new = old.clone();
    match ct {
        "application/json-patch+json" => {
            let p: json_patch::Patch = match serde_json::from_value(patch_body.clone()) {
                Ok(p) => p,
                Err(e) => return status(400, "BadRequest", &format!("the server rejected our request due to an error in our request: {e}"), None),
            };
            if let Err(e) = json_patch::patch(&mut new, &p) {
                return status(422, "Invalid", &format!("the server rejected our request due to an error in our request: {e}"), None);
            }
        }
        "application/merge-patch+json" => json_patch::merge(&mut new, &patch_body),
        "application/strategic-merge-patch+json" => {
            if rt.is_crd {
                return status(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    None,
                );
            }
            fields::strategic_merge(&mut new, &patch_body)
        }
        other => {
            return status(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"), None)
        }
    }
    // The patch may carry a resourceVersion precondition; otherwise the write is unconditional.
    if meta_str(&patch_body, "resourceVersion").is_none() && !ct.contains("json-patch") {
        if let Some(md) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            md.remove("resourceVersion");
        }
    }
    let o = WriteOpts {
        manager,
        sub,
        dry_run,
        strict,
        managed_done: false,
        seed: false,
    };
    match st.commit(rt, ns, name, Some(&old), new, &o, warnings) {
        Ok((v, _)) => Resp::json(200, &v),
        Err(e) => e,
    }
}

impl State {
    /// What kube-controller-manager's token controller does to a new
    /// `kubernetes.io/service-account-token` Secret whose ServiceAccount exists: fills in
    /// `token` (a legacy, non-expiring token for the ServiceAccount), `ca.crt` and `namespace`.
    /// Done at creation here; a real cluster does it a moment later, so clients poll for it.
    fn fill_service_account_token(&mut self, obj: &mut Value) {
        if obj.get("type").and_then(Value::as_str) != Some("kubernetes.io/service-account-token") {
            return;
        }
        let ns = meta_str(obj, "namespace").unwrap_or("").to_string();
        let Some(sa_name) = obj
            .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return;
        };
        let Some(sa_type) = self.type_by_plural("", "v1", "serviceaccounts") else {
            return;
        };
        let Some(sa) = self.get_obj(&sa_type, &ns, &sa_name).cloned() else {
            return;
        };
        let uid = meta_str(&sa, "uid").unwrap_or("").to_string();
        let secret = meta_str(obj, "name").unwrap_or("").to_string();
        let b64url = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(v).unwrap_or_default())
        };
        let jti = self.new_uid();
        let claims = json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": ns,
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": sa_name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
            "sub": format!("system:serviceaccount:{ns}:{sa_name}"),
        });
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("kube-emu-signature-{jti}"));
        let token = format!(
            "{}.{}.{}",
            b64url(&json!({"alg": "RS256", "kid": "kube-emu"})),
            b64url(&claims),
            sig
        );
        let std64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let data = obj
            .as_object_mut()
            .expect("object")
            .entry("data")
            .or_insert_with(|| json!({}));
        data["token"] = json!(std64(&token));
        data["ca.crt"] = json!(std64(&crate::server::tls_ca_pem()));
        data["namespace"] = json!(std64(&ns));
    }
}

fn token_request(st: &mut State, ns: &str, name: &str, body: &[u8]) -> Resp {
    let sa_type = st
        .type_by_plural("", "v1", "serviceaccounts")
        .expect("builtin");
    let Some(sa) = st.get_obj(&sa_type, ns, name).cloned() else {
        return State::not_found(&sa_type, name);
    };
    let req = if body.is_empty() {
        json!({})
    } else {
        body_json(body).unwrap_or_else(|_| json!({}))
    };
    let audiences = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!("https://kubernetes.default.svc.cluster.local")]);
    let exp_secs = req
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    let now = st.now_secs();
    let exp = now + exp_secs;
    let uid = meta_str(&sa, "uid").unwrap_or("").to_string();
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).unwrap_or_default())
    };
    let header = json!({"alg": "RS256", "kid": "kube-emu"});
    let jti = st.new_uid();
    st.issued.insert(jti.clone());
    let claims = json!({
        "aud": audiences, "exp": exp, "iat": now, "nbf": now, "jti": jti,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("kube-emu-signature-{jti}"));
    let token = format!("{}.{}.{}", b64(&header), b64(&claims), sig);
    let mut spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["audiences"] = Value::Array(audiences);
    spec["expirationSeconds"] = json!(exp_secs);
    if spec.get("boundObjectRef").is_none() {
        spec["boundObjectRef"] = Value::Null;
    }
    Resp::json(
        201,
        &json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": util::rfc3339(now)},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": util::rfc3339(exp)},
        }),
    )
}

// ---- discovery ----

fn version_json() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": GIT_VERSION,
        "gitCommit": "4cb5f07a1b2c3d4e5f60718293a4b5c6d7e8f901", "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:00:00Z", "goVersion": "go1.23.8", "compiler": "gc", "platform": "linux/amd64",
    })
}

/// Groups in order (core first, then built-in groups, then CRD groups), versions by priority.
fn groups(st: &State) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in &st.types {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    for (_, vs) in out.iter_mut() {
        vs.sort_by_key(|v| std::cmp::Reverse(registry::version_priority(v)));
    }
    out
}

fn types_in<'a>(st: &'a State, g: &str, v: &str) -> Vec<&'a Arc<ResourceType>> {
    st.types
        .iter()
        .filter(|t| t.group == g && t.version == v)
        .collect()
}

fn resource_list(st: &State, g: &str, v: &str) -> Value {
    let mut res = Vec::new();
    for t in types_in(st, g, v) {
        res.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": VERBS, "shortNames": t.short_names, "categories": t.categories,
        }));
        for s in t.subresources() {
            if s == "token" {
                res.push(json!({"name": format!("{}/token", t.plural), "singularName": "", "namespaced": true,
                    "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}));
            } else {
                res.push(json!({"name": format!("{}/{s}", t.plural), "singularName": "", "namespaced": t.namespaced,
                    "kind": t.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res})
}

fn group_json(st: &State, g: &str) -> Option<Value> {
    let (name, vs) = groups(st)
        .into_iter()
        .find(|(n, _)| n == g && !n.is_empty())?;
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": versions, "preferredVersion": versions[0]}),
    )
}

const AGG_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn discovery_root(st: &State, core: bool, accept: &str) -> Resp {
    let aggregated = accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2");
    let gs: Vec<(String, Vec<String>)> = groups(st)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .collect();
    if aggregated {
        let items: Vec<Value> = gs
            .iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| {
                        let resources: Vec<Value> = types_in(st, g, v)
                            .iter()
                            .map(|t| {
                                let subs: Vec<Value> = t
                                    .subresources()
                                    .iter()
                                    .map(|s| {
                                        if *s == "token" {
                                            json!({"subresource": "token", "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}, "verbs": ["create"]})
                                        } else {
                                            json!({"subresource": s, "responseKind": {"group": t.group, "version": t.version, "kind": t.kind}, "verbs": ["get", "patch", "update"]})
                                        }
                                    })
                                    .collect();
                                let mut r = json!({
                                    "resource": t.plural,
                                    "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                    "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": t.singular, "verbs": VERBS,
                                });
                                if !t.short_names.is_empty() {
                                    r["shortNames"] = json!(t.short_names);
                                }
                                if !t.categories.is_empty() {
                                    r["categories"] = json!(t.categories);
                                }
                                if !subs.is_empty() {
                                    r["subresources"] = json!(subs);
                                }
                                r
                            })
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                let mut md = json!({"creationTimestamp": null});
                if !g.is_empty() {
                    md["name"] = json!(g);
                }
                json!({"metadata": md, "versions": versions})
            })
            .collect();
        let v = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
        let mut r = Resp::json(200, &v);
        r.content_type = AGG_CT;
        return r;
    }
    if core {
        return Resp::json(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
        );
    }
    let groups: Vec<Value> = gs
        .iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    Resp::json(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

// ---- OpenAPI v3 ----

fn gv_hash(st: &State, g: &str, v: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in types_in(st, g, v) {
        (&t.plural, &t.kind, t.namespaced).hash(&mut h);
    }
    format!("{:016X}", h.finish())
}

fn openapi_root(st: &State) -> Value {
    let mut paths = Map::new();
    for (g, vs) in groups(st) {
        for v in vs {
            let key = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let url = format!("/openapi/v3/{key}?hash={}", gv_hash(st, &g, &v));
            paths.insert(key, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

fn openapi_gv(st: &State, gv: &str) -> Option<Value> {
    let (g, v) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return None,
    };
    let ts = types_in(st, &g, &v);
    if ts.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let qp = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    for t in ts {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = if t.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", t.prefix(), t.plural)
        } else {
            format!("{}/{}", t.prefix(), t.plural)
        };
        let op = |action: &str, params: Vec<Value>| {
            json!({"operationId": format!("{action}{}", t.kind), "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "parameters": params,
                "responses": {"200": {"description": "OK"}}})
        };
        let write_params = || vec![qp("dryRun"), qp("fieldManager"), qp("fieldValidation")];
        let mut patch_params = write_params();
        patch_params.push(qp("force"));
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get", vec![]), "put": op("put", write_params()), "patch": op("patch", patch_params),
                "delete": op("delete", vec![qp("dryRun")])}),
        );
        paths.insert(
            base,
            json!({"get": op("list", vec![]), "post": op("post", write_params())}),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION}, "paths": paths, "components": {"schemas": {}}}),
    )
}
