//! The VM's bootstrap files `cluster.env`, `mesh.yaml` and `hosts`, built from the group and the
//! mesh config exactly as `istioctl x workload entry configure` builds them, but deterministic.
//!
//! The key set follows Istio 1.24-1.27 (no `IDENTITY_PATH_PREFIX`, which only the newest
//! istioctl adds, always empty).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::vm::goyaml;
use crate::vm::group::Group;

/// The annotation that overrides the proxy config of a group's VMs.
pub const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";
/// istiod's XDS and CA port.
pub const ISTIOD_PORT: u16 = 15012;

/// The VM's address as the mesh should see it (`--internal-ip` / `--external-ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvcIp {
    /// Reachable from the cluster's network: `ISTIO_SVC_IP`.
    Internal(IpAddr),
    /// Behind NAT: `ISTIO_SVC_IP` plus probe rewriting to the VM's own address.
    External(IpAddr),
}

/// Everything besides the group and the mesh config that shapes the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `ISTIO_META_CLUSTER_ID`.
    pub cluster_id: String,
    /// Where istiod runs.
    pub istio_namespace: String,
    /// The control-plane revision (`None` or `default`: the default one).
    pub revision: Option<String>,
    /// `ISTIO_META_AUTO_REGISTER_GROUP`.
    pub autoregister: bool,
    /// `ISTIO_META_DNS_CAPTURE`.
    pub capture_dns: bool,
    /// `ISTIO_SVC_IP`.
    pub svc_ip: Option<SvcIp>,
}

/// The two generated text files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// `cluster.env`.
    pub cluster_env: String,
    /// `mesh.yaml`.
    pub mesh_yaml: String,
    /// Warnings for the user (e.g. labels set on the template).
    pub warnings: Vec<String>,
}

/// A revision other than the default one.
pub fn revisioned(revision: Option<&str>) -> Option<&str> {
    revision.filter(|r| !r.is_empty() && *r != "default")
}

/// `istiod[-REV].NS.svc`: the name the VM resolves through `hosts`.
pub fn istiod_host(istio_namespace: &str, revision: Option<&str>) -> String {
    match revisioned(revision) {
        Some(r) => format!("istiod-{r}.{istio_namespace}.svc"),
        None => format!("istiod.{istio_namespace}.svc"),
    }
}

/// `istiod[-REV].NS.svc:15012`.
pub fn istiod_addr(istio_namespace: &str, revision: Option<&str>) -> String {
    format!("{}:{ISTIOD_PORT}", istiod_host(istio_namespace, revision))
}

/// The `hosts` line that sends the VM's istiod traffic to the east-west gateway.
pub fn hosts(addr: Option<IpAddr>, istio_namespace: &str, revision: Option<&str>) -> String {
    match addr {
        Some(ip) => format!("{ip} {}\n", istiod_host(istio_namespace, revision)),
        None => String::new(),
    }
}

/// istioctl's `shellescape.Quote`: empty → `''`; anything outside its (mis-escaped) safe set
/// `w @ % + = : , . / -` → single-quoted, so in practice every value is quoted. istioctl also
/// leaves `\` unquoted, which a shell then eats (`\` alone reads back as nothing); we quote it.
pub fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let safe = |c: char| matches!(c, 'w' | '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '-');
    if s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r#"'"'"'"#))
}

/// Recursively merges `over` into `base`: maps key by key, anything else replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether `key` can be a line `KEY=value` of cluster.env: `istio-start.sh` sources the file
/// as root, so a key such as `A=1;touch /tmp/pwned;B` would run as a command on the VM.
pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Refuses a `proxyMetadata` key of a proxy config that cannot be an environment variable name,
/// naming the key and `source`.
fn env_names(proxy_config: &Value, source: &str) -> Result<(), String> {
    if let Value::Object(md) = &proxy_config["proxyMetadata"] {
        if let Some(bad) = md.keys().find(|k| !is_env_name(k)) {
            return Err(format!(
                "proxyMetadata key {bad:?} in {source} is not an environment variable name \
                 ([A-Za-z_][A-Za-z0-9_]*): cluster.env is sourced by a shell as root, so nothing was written"
            ));
        }
    }
    Ok(())
}

/// `CANONICAL_SERVICE` and `CANONICAL_REVISION` from the labels, as Istio derives them.
pub fn canonical(labels: &BTreeMap<String, String>, workload: &str) -> (String, String) {
    let first = |keys: &[&str]| {
        keys.iter()
            .filter_map(|k| labels.get(*k))
            .find(|v| !v.is_empty())
            .cloned()
    };
    let name = first(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| workload.to_string());
    let rev = first(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".to_string());
    (name, rev)
}

/// Builds `cluster.env` and `mesh.yaml` from the group, the mesh config (the `mesh` key of
/// ConfigMap `istio[-REV]`, parsed) and the options.
pub fn build(group: &Group, mesh: &Value, opts: &Options) -> Result<Files, String> {
    let rev = revisioned(opts.revision.as_deref());
    let mut warnings = Vec::new();
    let mut pc = proxy_config(group, mesh, opts)?;
    let labels = labels(group, &mut warnings);
    let md = proxy_metadata(group, mesh, opts, &pc, labels)?;
    pc["proxyMetadata"] = json!(md);
    drop_nulls(&mut pc);
    let mesh_yaml = goyaml::to_string(&json!({ "defaultConfig": pc }));

    let mut env = md;
    for (k, v) in env_overrides(group, opts, rev, &pc) {
        env.insert(k, text(&v));
    }
    Ok(Files {
        cluster_env: cluster_env(&env)?,
        mesh_yaml,
        warnings,
    })
}

/// The VM's proxy config: the mesh's `defaultConfig`, the `proxy.istio.io/config` annotations
/// over it, and the group's readiness probe.
fn proxy_config(group: &Group, mesh: &Value, opts: &Options) -> Result<Value, String> {
    env_names(
        &mesh["defaultConfig"],
        "the mesh config (defaultConfig.proxyMetadata)",
    )?;
    let mut pc = match &mesh["defaultConfig"] {
        Value::Object(m) => Value::Object(m.clone()),
        Value::Null => json!({}),
        other => {
            return Err(format!(
                "defaultConfig in the mesh config is not a mapping: {other}"
            ))
        }
    };
    let rev = revisioned(opts.revision.as_deref());
    if rev.is_some() && text(&pc["discoveryAddress"]).is_empty() {
        pc["discoveryAddress"] = json!(istiod_addr(&opts.istio_namespace, rev));
    }
    // In this order, so spec.metadata's annotation wins over the object's.
    for (source, annotations) in [
        ("the WorkloadGroup's annotations", &group.object_annotations),
        ("spec.metadata.annotations", &group.annotations),
    ] {
        if let Some(yaml) = annotations.get(PROXY_CONFIG_ANNOTATION) {
            merge(&mut pc, &annotation_config(yaml, source)?);
        }
    }
    match &group.probe {
        Some(p) => pc["readinessProbe"] = serde_json::to_value(p).map_err(|e| e.to_string())?,
        None => {
            if let Some(m) = pc.as_object_mut() {
                m.remove("readinessProbe");
            }
        }
    }
    Ok(pc)
}

/// A `proxy.istio.io/config` annotation, parsed and checked.
fn annotation_config(yaml: &str, source: &str) -> Result<Value, String> {
    let over: Value = serde_yaml::from_str(yaml).map_err(|e| {
        format!("annotation {PROXY_CONFIG_ANNOTATION} in {source} is not valid YAML: {e}")
    })?;
    if !(over.is_object() || over.is_null()) {
        return Err(format!(
            "annotation {PROXY_CONFIG_ANNOTATION} in {source} is not a mapping"
        ));
    }
    env_names(
        &over,
        &format!("annotation {PROXY_CONFIG_ANNOTATION} in {source}"),
    )?;
    Ok(over)
}

/// The VM's labels: `spec.metadata.labels`, overridden (with a warning) by the template's.
fn labels(group: &Group, warnings: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut labels = group.labels.clone();
    let t = &group.template;
    if !t.labels.is_empty() {
        warnings.push(format!(
            "labels should be set in spec.metadata.labels; these spec.template.labels override them: {}",
            t.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        ));
        labels.extend(t.labels.clone());
    }
    labels
}

/// `proxyMetadata`: the proxy config's own, then the keys istioctl sets for the workload.
fn proxy_metadata(
    group: &Group,
    mesh: &Value,
    opts: &Options,
    pc: &Value,
    mut labels: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let t = &group.template;
    let mut md: BTreeMap<String, String> = match &pc["proxyMetadata"] {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        _ => BTreeMap::new(),
    };
    let (svc, canonical_rev) = canonical(&labels, &group.name);
    md.insert("CANONICAL_SERVICE".into(), svc.clone());
    md.insert("CANONICAL_REVISION".into(), canonical_rev.clone());
    md.insert("POD_NAMESPACE".into(), group.namespace.clone());
    md.insert("SERVICE_ACCOUNT".into(), t.service_account.clone());
    md.insert("TRUST_DOMAIN".into(), text(&mesh["trustDomain"]));
    md.insert("ISTIO_META_CLUSTER_ID".into(), opts.cluster_id.clone());
    md.insert("ISTIO_META_MESH_ID".into(), text(&pc["meshId"]));
    md.insert("ISTIO_META_NETWORK".into(), t.network.clone());
    if let Some(ports) = pod_ports(&t.ports) {
        md.insert("ISTIO_META_POD_PORTS".into(), ports);
    }
    md.insert("ISTIO_META_WORKLOAD_NAME".into(), group.name.clone());
    labels.insert("service.istio.io/canonical-name".into(), svc);
    labels.insert("service.istio.io/canonical-revision".into(), canonical_rev);
    md.insert(
        "ISTIO_METAJSON_LABELS".into(),
        serde_json::to_string(&labels).map_err(|e| e.to_string())?,
    );
    if opts.capture_dns {
        md.insert("ISTIO_META_DNS_CAPTURE".into(), "true".into());
    } else if md.contains_key("ISTIO_META_DNS_CAPTURE") {
        // istioctl would leave the mesh config's value; --capture-dns=false means off.
        md.insert("ISTIO_META_DNS_CAPTURE".into(), "false".into());
    }
    if opts.autoregister {
        md.insert("ISTIO_META_AUTO_REGISTER_GROUP".into(), group.name.clone());
    }
    Ok(md)
}

/// `ISTIO_META_POD_PORTS`: the named ports as the JSON istioctl writes, sorted by name.
fn pod_ports(ports: &BTreeMap<String, u16>) -> Option<String> {
    if ports.is_empty() {
        return None;
    }
    let mut by_name: Vec<(&String, &u16)> = ports.iter().collect();
    by_name.sort();
    let ports: Vec<String> = by_name
        .iter()
        .map(|(n, p)| {
            format!(
                "{{\"name\":{},\"containerPort\":{p},\"protocol\":\"\"}}",
                Value::String((*n).clone())
            )
        })
        .collect();
    Some(format!("[{}]", ports.join(",")))
}

/// The keys of cluster.env that are not proxy metadata: the VM's service, its ports and
/// addresses, and the CA of a revision.
fn env_overrides(
    group: &Group,
    opts: &Options,
    rev: Option<&str>,
    pc: &Value,
) -> Map<String, Value> {
    let t = &group.template;
    let mut overrides = Map::new();
    overrides.insert("ISTIO_INBOUND_PORTS".into(), json!(inbound_ports(&t.ports)));
    overrides.insert("ISTIO_NAMESPACE".into(), json!(group.namespace));
    overrides.insert(
        "ISTIO_SERVICE".into(),
        json!(format!("{}.{}", group.name, group.namespace)),
    );
    overrides.insert("ISTIO_SERVICE_CIDR".into(), json!("*"));
    overrides.insert("ISTIO_LOCAL_EXCLUDE_PORTS".into(), json!(exclude_ports(pc)));
    overrides.insert("SERVICE_ACCOUNT".into(), json!(t.service_account));
    if rev.is_some() {
        overrides.insert(
            "CA_ADDR".into(),
            json!(istiod_addr(&opts.istio_namespace, rev)),
        );
    }
    match opts.svc_ip {
        Some(SvcIp::Internal(ip)) => {
            overrides.insert("ISTIO_SVC_IP".into(), json!(ip.to_string()));
        }
        Some(SvcIp::External(ip)) => {
            overrides.insert("ISTIO_SVC_IP".into(), json!(ip.to_string()));
            overrides.insert(
                "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION".into(),
                json!("true"),
            );
        }
        None => {}
    }
    overrides
}

/// `ISTIO_INBOUND_PORTS`: the template's port numbers, or `*` (capture all) without any.
fn inbound_ports(ports: &BTreeMap<String, u16>) -> String {
    let mut numbers: Vec<u16> = ports.values().copied().collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.is_empty() {
        "*".to_string()
    } else {
        numbers
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `ISTIO_LOCAL_EXCLUDE_PORTS`: ssh and the proxy's own ports, the status port included.
fn exclude_ports(pc: &Value) -> String {
    let mut exclude = "22,15090,15021".to_string();
    let status_port = pc["statusPort"].as_u64().unwrap_or(0);
    if status_port != 15090 && status_port != 15021 {
        if status_port != 0 {
            exclude.push_str(&format!(",{status_port}"));
        } else {
            exclude.push_str(",15020");
        }
    }
    exclude
}

/// The text of cluster.env: sorted `KEY='value'` lines.
fn cluster_env(env: &BTreeMap<String, String>) -> Result<String, String> {
    // Every key has been checked where it came from; this keeps the promise for any key a
    // future change adds.
    if let Some(bad) = env.keys().find(|k| !is_env_name(k)) {
        return Err(format!(
            "cluster.env key {bad:?} is not an environment variable name"
        ));
    }
    let mut lines: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_quote(v)))
        .collect();
    lines.sort();
    let mut cluster_env = lines.join("\n");
    cluster_env.push('\n');
    Ok(cluster_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_like_istioctl() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("3550,8080"), "'3550,8080'");
        assert_eq!(shell_quote("*"), "'*'");
        assert_eq!(shell_quote("it's"), r#"'it'"'"'s'"#);
        // The safe set istioctl's regex really has.
        assert_eq!(shell_quote("w.w/w"), "w.w/w");
    }

    #[test]
    fn env_names_are_checked_where_they_come_from() {
        assert!(is_env_name("ISTIO_META_DNS_CAPTURE") && is_env_name("_x1"));
        for bad in ["", "1A", "A=1;touch /tmp/pwned;B", "A B", "A-B", "\u{e9}"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
        let over = json!({"proxyMetadata": {"A=1;touch /tmp/pwned;B": "x"}});
        let err = env_names(
            &over,
            "annotation proxy.istio.io/config in spec.metadata.annotations",
        )
        .expect_err("refused");
        assert!(err.contains("\"A=1;touch /tmp/pwned;B\""), "{err}");
        assert!(
            err.contains("in annotation proxy.istio.io/config in spec.metadata.annotations"),
            "{err}"
        );
        assert!(env_names(&json!({"proxyMetadata": {"OK_1": "x"}}), "x").is_ok());
    }

    #[test]
    fn canonical_labels() {
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(canonical(&l(&[]), "wg"), ("wg".into(), "latest".into()));
        assert_eq!(
            canonical(
                &l(&[
                    ("app", "a"),
                    ("app.kubernetes.io/name", "b"),
                    ("version", "v1")
                ]),
                "wg"
            ),
            ("b".into(), "v1".into())
        );
    }

    #[test]
    fn hosts_lines() {
        let ip: IpAddr = "10.0.0.9".parse().expect("ip");
        assert_eq!(
            hosts(Some(ip), "istio-system", None),
            "10.0.0.9 istiod.istio-system.svc\n"
        );
        assert_eq!(
            hosts(Some(ip), "istio-system", Some("default")),
            "10.0.0.9 istiod.istio-system.svc\n"
        );
        assert_eq!(
            hosts(Some(ip), "x", Some("canary")),
            "10.0.0.9 istiod-canary.x.svc\n"
        );
        assert_eq!(hosts(None, "x", None), "");
    }
}
