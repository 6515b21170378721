//! The only module that talks to the Kubernetes API: connecting, reading, and the one write path.

use std::time::Duration;

use anyhow::Result;
use http::Request;
use kube::config::Kubeconfig;
use kube::{Client, Config};
use serde_json::{json, Value};

use crate::cli::{DryRun, KubeArgs};
use crate::kubeconfig::{self, Target};
use crate::objects::{
    self, Kind, FIELD_MANAGER, ISTIO_NETWORKING, ISTIO_SECURITY, ISTIO_VERSIONS, SECURITY_VERSIONS,
};
use crate::overrides::Overrides;

/// What a write did to one object, as kubectl reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The object did not exist.
    Created,
    /// The object changed.
    Configured,
    /// Nothing changed: the server kept its resourceVersion.
    Unchanged,
    /// The object was deleted.
    Deleted,
}

impl Outcome {
    /// The word kubectl prints.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
        }
    }
}

/// The result of one write.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The object as the server returned it (or as built, for a client dry run).
    pub object: Value,
    /// What happened.
    pub outcome: Outcome,
}

/// A write whose outcome is unknown: it was sent, but the connection failed, the answer did not
/// come within `--request-timeout`, or the server answered 5xx, so it may or may not be stored.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InDoubt(pub String);

/// A write refused because the object changed since it was read (409 "the object has been
/// modified"), or vanished: the compare-and-swap lost, and the caller re-reads and retries.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stale(pub String);

/// Whether `err` is a write that may or may not have landed (see [`InDoubt`]). Callers ask this
/// instead of matching the error type, so the rule lives in one place.
pub fn in_doubt(err: &anyhow::Error) -> bool {
    err.downcast_ref::<InDoubt>().is_some()
}

/// Whether `err` is a lost compare-and-swap (see [`Stale`]): re-read and try again.
pub fn conflict(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Stale>().is_some()
}

/// How writes are sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteMode {
    /// `--dry-run=server` sends `dryRun=All`; `client` sends no write at all.
    pub dry_run: DryRun,
    /// `--force-conflicts`.
    pub force: bool,
}

/// One cluster, reached through one kubeconfig context.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// The context name, for messages.
    pub context: String,
    /// The namespace commands default to.
    pub namespace: String,
    /// The request time limit, as an error names it.
    limit: String,
}

/// The time limit of one request without `--request-timeout`: kubectl's discovery timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(32);

/// Loads the kubeconfig once and resolves every requested context (the current one when none),
/// so unknown contexts fail as usage errors before any connection.
pub fn resolve_targets(args: &KubeArgs, contexts: &[String]) -> Result<(Kubeconfig, Vec<Target>)> {
    let kc = kubeconfig::load(args)?;
    let overrides = Overrides::from_args(args)?;
    let ns = args.namespace.as_deref();
    let targets = if contexts.is_empty() {
        vec![kubeconfig::resolve_with_server(
            &kc,
            None,
            ns,
            overrides.server.as_deref(),
        )?]
    } else {
        contexts
            .iter()
            .map(|c| kubeconfig::resolve(&kc, Some(c), ns))
            .collect::<Result<Vec<_>>>()?
    };
    Ok((kc, targets))
}

impl Cluster {
    /// Connects to one resolved target.
    pub async fn connect(kc: &Kubeconfig, target: &Target, args: &KubeArgs) -> Result<Self> {
        // kubectl's flags (--server, --token, --as, ...) are written into a copy of the
        // kubeconfig, so kube reads one kubeconfig that says it all.
        let mut kc = kc.clone();
        let opts = Overrides::from_args(args)?.apply(
            &mut kc,
            target,
            args.cluster.as_deref(),
            args.user.as_deref(),
        )?;
        let kc = &kc;
        let mut config = Config::from_custom_kubeconfig(kc.clone(), &opts)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "loading context {:?} from the kubeconfig: {}",
                    target.context,
                    crate::proxy::redact(&crate::error::one_line(&e.into()))
                )
            })?;
        // kube applies NO_PROXY to the proxy's own address and the environment's proxy even to
        // loopback servers; kubectl's rules are the ones users know, so the choice is ours.
        config.proxy_url = crate::proxy::choose(
            kubeconfig::proxy_url(kc, &target.context, args.cluster.as_deref()),
            &config.cluster_url,
            &crate::proxy::Env::from_process(),
        )?;
        // A server that accepts connections and never answers must not hang a plugin for the
        // five minutes kube's own read timeout allows: without the flag, kubectl's discovery
        // timeout applies to every request (an admission webhook may take up to 30 s).
        let (timeout, limit) = match args.request_timeout {
            Some(t) => (t.0, format!("--request-timeout ({t})")),
            None => (
                DEFAULT_REQUEST_TIMEOUT,
                "32s, the default request timeout (--request-timeout sets another, 0 none)"
                    .to_string(),
            ),
        };
        if timeout > Duration::ZERO {
            config.connect_timeout = Some(timeout);
            config.read_timeout = Some(timeout);
            config.write_timeout = Some(timeout);
        }
        crate::vlog!(
            4,
            "\"Using server\" context={:?} server={:?} user={:?} impersonate={:?} proxy={:?}",
            target.context,
            config.cluster_url.to_string(),
            opts.user.as_deref().unwrap_or_default(),
            config.auth_info.impersonate.as_deref().unwrap_or_default(),
            config
                .proxy_url
                .as_ref()
                .map(|p| crate::proxy::redact(&p.to_string()))
                .unwrap_or_default()
        );
        let built = if crate::verbose::enabled(6) {
            crate::verbose::client(config)
        } else {
            Client::try_from(config)
        };
        let client = built.map_err(|e| {
            anyhow::anyhow!(
                "building a client for context {:?}: {}",
                target.context,
                crate::proxy::redact(&crate::error::one_line(&e.into()))
            )
        })?;
        Ok(Self {
            client,
            context: target.context.clone(),
            namespace: target.namespace.clone(),
            limit,
        })
    }

    /// Connects to every target at once (an exec credential plugin may take its time); the
    /// error is the first in the order of the targets, as when connecting one after another.
    pub async fn connect_all(
        kc: &Kubeconfig,
        targets: &[Target],
        args: &KubeArgs,
    ) -> Result<Vec<Self>> {
        futures::future::join_all(targets.iter().map(|t| Self::connect(kc, t, args)))
            .await
            .into_iter()
            .collect()
    }

    /// Connects to the single context a one-cluster command works on.
    pub async fn connect_one(args: &KubeArgs) -> Result<Self> {
        if args.contexts.len() > 1 {
            return Err(crate::error::usage(
                "--context",
                "this command works on one cluster: give --context once",
            ));
        }
        let (kc, targets) = resolve_targets(args, &args.contexts)?;
        Self::connect(&kc, &targets[0], args).await
    }

    /// Wraps a client built elsewhere (tests).
    pub fn from_client(client: Client, context: &str, namespace: &str) -> Self {
        Self {
            client,
            context: context.to_string(),
            namespace: namespace.to_string(),
            limit: "the client's timeout".to_string(),
        }
    }

    async fn send(&self, req: Request<Vec<u8>>) -> std::result::Result<Value, kube::Error> {
        self.client.request::<Value>(req).await
    }

    /// Sends an idempotent write (server-side apply, delete). One that got no answer (timeout,
    /// reset) may or may not have landed, and sending it again is harmless, so it is sent once
    /// more, never more. An answer from the server, error or not, is returned as it is.
    async fn send_idempotent(
        &self,
        method: http::Method,
        uri: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<std::result::Result<Value, kube::Error>> {
        let request = || {
            Request::builder()
                .method(method.clone())
                .uri(uri)
                .header("Content-Type", content_type)
                .body(body.to_vec())
        };
        Ok(match self.send(request()?).await {
            Err(e) if !matches!(e, kube::Error::Api(_)) => self.send(request()?).await,
            answer => answer,
        })
    }

    fn fail(&self, err: kube::Error, verb: &str, what: &str) -> anyhow::Error {
        let detail = match &err {
            kube::Error::Api(s) if s.code == 401 => {
                format!(
                    "Unauthorized: the credentials of context {:?} were refused",
                    self.context
                )
            }
            kube::Error::Api(s)
                if s.code == 409 && verb == "apply" && s.message.contains("conflict") =>
            {
                format!(
                    "{} (rerun with --force-conflicts to take these fields over)",
                    s.message
                )
            }
            kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({})", s.message, s.code),
            kube::Error::Api(s) => format!("the server answered {} {}", s.code, s.reason),
            other => {
                let msg = crate::proxy::redact(&transport_message(other, &self.limit));
                tls_hint(&msg).unwrap_or(msg)
            }
        };
        let msg = format!(
            "cannot {verb} {what} in context {:?}: {detail}",
            self.context
        );
        let stale = match &err {
            kube::Error::Api(s) => {
                s.code == 409 && s.message.contains("modified") || s.code == 404 && verb == "apply"
            }
            _ => false,
        };
        if stale {
            return Stale(msg).into();
        }
        let is_write = matches!(verb, "apply" | "create" | "update" | "delete");
        // No answer, or a 5xx: a server can answer 500 or 504 after etcd stored the write
        // (`etcdserver: request timed out`), so the write may have landed either way.
        let maybe_stored = match &err {
            kube::Error::Api(s) => s.code >= 500,
            _ => true,
        };
        if is_write && maybe_stored {
            return InDoubt(msg).into();
        }
        anyhow::anyhow!(msg)
    }

    /// GETs a path of the server as JSON, the error as kube gives it (a proxied component's
    /// answer, whose status is that component's).
    pub async fn get_path(&self, path: &str) -> std::result::Result<Value, kube::Error> {
        let req = get_req(path).map_err(|e| kube::Error::Service(e.into()))?;
        self.send(req).await
    }

    /// Reads one object; `None` when it does not exist.
    pub async fn get(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>> {
        let req = get_req(&kind.path(namespace, Some(name)))?;
        match self.send(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.fail(e, "get", &what(kind, namespace, name))),
        }
    }

    /// Lists objects (every page), in one namespace or all (`None`), optionally by label selector.
    pub async fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>> {
        let base = kind.path(namespace, None);
        let mut items = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut query = vec![("limit".to_string(), "500".to_string())];
            if let Some(s) = selector {
                query.push(("labelSelector".into(), s.to_string()));
            }
            if let Some(c) = &cont {
                query.push(("continue".into(), c.clone()));
            }
            let req = get_req(&with_query(&base, &query))?;
            let list = match self.send(req).await {
                Ok(v) => v,
                Err(kube::Error::Api(s)) if s.code == 404 && namespace.is_some() => {
                    return Ok(items)
                }
                Err(e) => {
                    let scope = namespace.map_or("in all namespaces".to_string(), |n| {
                        format!("in namespace {n}")
                    });
                    return Err(self.fail(e, "list", &format!("{} {scope}", kind.plural)));
                }
            };
            let api_version = kind.api_version();
            if let Some(arr) = list["items"].as_array() {
                for item in arr {
                    let Value::Object(mut item) = item.clone() else {
                        // A broken server or proxy: say so rather than index into a non-object.
                        anyhow::bail!(
                            "cannot list {} in context {}: the server answered an item that is not an object",
                            kind.plural,
                            self.context
                        );
                    };
                    // Lists omit apiVersion/kind on items; restore them so items are whole objects.
                    item.insert("apiVersion".into(), json!(api_version));
                    item.insert("kind".into(), json!(kind.kind));
                    items.push(Value::Object(item));
                }
            }
            cont = list["metadata"]["continue"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(String::from);
            if cont.is_none() {
                return Ok(items);
            }
        }
    }

    /// Server-side apply of a whole object, reading it first to report honestly what changed.
    pub async fn apply(&self, obj: &Value, mode: WriteMode) -> Result<Applied> {
        let kind = kind_of(obj)?;
        let existing = self
            .get(&kind, objects::namespace(obj), objects::name(obj))
            .await?;
        self.apply_over(obj, existing.as_ref(), mode).await
    }

    /// Server-side apply when the caller already holds the current object (`None`: absent).
    pub async fn apply_over(
        &self,
        obj: &Value,
        existing: Option<&Value>,
        mode: WriteMode,
    ) -> Result<Applied> {
        let kind = kind_of(obj)?;
        let (ns, name) = (objects::namespace(obj), objects::name(obj));
        if mode.dry_run == DryRun::Client {
            // A client dry run never writes: report what the apply would do.
            let outcome = if existing.is_some() {
                Outcome::Configured
            } else {
                Outcome::Created
            };
            return Ok(Applied {
                object: obj.clone(),
                outcome,
            });
        }
        let mut query = vec![("fieldManager".to_string(), FIELD_MANAGER.to_string())];
        if mode.force {
            query.push(("force".into(), "true".into()));
        }
        if mode.dry_run == DryRun::Server {
            query.push(("dryRun".into(), "All".into()));
        }
        crate::vlog!(
            4,
            "\"Server-side apply\" object={:?} context={:?} fieldManager={FIELD_MANAGER:?} force={} dryRun={:?}",
            what(&kind, ns, name),
            self.context,
            mode.force,
            if mode.dry_run == DryRun::Server { "All" } else { "" }
        );
        let uri = with_query(&kind.path(ns, Some(name)), &query);
        let body = serde_json::to_vec(obj)?;
        let answer = self
            .send_idempotent(
                http::Method::PATCH,
                &uri,
                "application/apply-patch+yaml",
                &body,
            )
            .await?;
        let object = answer.map_err(|e| self.fail(e, "apply", &what(&kind, ns, name)))?;
        let outcome = match existing {
            None => Outcome::Created,
            Some(old) if mode.dry_run == DryRun::Server => {
                if same_content(old, &object) {
                    Outcome::Unchanged
                } else {
                    Outcome::Configured
                }
            }
            Some(old) if objects::resource_version(old) == objects::resource_version(&object) => {
                Outcome::Unchanged
            }
            Some(_) => Outcome::Configured,
        };
        Ok(Applied { object, outcome })
    }

    /// Creates an object (POST); fails with 409 when it exists.
    pub async fn create(
        &self,
        obj: &Value,
        mode: WriteMode,
    ) -> Result<std::result::Result<Value, u16>> {
        self.post_or_put(obj, mode, false).await
    }

    /// Replaces an object (PUT) guarded by its `metadata.resourceVersion`: `Err(409)` when stale.
    pub async fn replace(
        &self,
        obj: &Value,
        mode: WriteMode,
    ) -> Result<std::result::Result<Value, u16>> {
        self.post_or_put(obj, mode, true).await
    }

    /// A create (POST) or, with `replace`, an update (PUT); a 409 comes back as `Err(409)`.
    async fn post_or_put(
        &self,
        obj: &Value,
        mode: WriteMode,
        replace: bool,
    ) -> Result<std::result::Result<Value, u16>> {
        let kind = kind_of(obj)?;
        let (ns, name) = (objects::namespace(obj), objects::name(obj));
        if mode.dry_run == DryRun::Client {
            return Ok(Ok(obj.clone()));
        }
        let mut query = vec![("fieldManager".to_string(), FIELD_MANAGER.to_string())];
        if mode.dry_run == DryRun::Server {
            query.push(("dryRun".into(), "All".into()));
        }
        let (verb, logged, builder) = if replace {
            let uri = with_query(&kind.path(ns, Some(name)), &query);
            ("update", "Update", Request::put(uri))
        } else {
            let uri = with_query(&kind.path(ns, None), &query);
            ("create", "Create", Request::post(uri))
        };
        crate::vlog!(
            4,
            "{logged:?} object={:?} context={:?} fieldManager={FIELD_MANAGER:?}{}",
            what(&kind, ns, name),
            self.context,
            if replace {
                format!(" resourceVersion={:?}", objects::resource_version(obj))
            } else {
                String::new()
            }
        );
        let req = builder
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(obj)?)?;
        match self.send(req).await {
            Ok(v) => Ok(Ok(v)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Err(409)),
            Err(e) => Err(self.fail(e, verb, &what(&kind, ns, name))),
        }
    }

    /// Deletes an object; `false` when it was already gone.
    pub async fn delete(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        mode: WriteMode,
    ) -> Result<bool> {
        self.delete_at(kind, namespace, name, None, mode).await
    }

    /// Deletes an object only while it is at `resource_version` (None: whatever it is now); a
    /// changed object is a [`Stale`] error.
    pub async fn delete_at(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        resource_version: Option<&str>,
        mode: WriteMode,
    ) -> Result<bool> {
        if mode.dry_run == DryRun::Client {
            return Ok(true);
        }
        let mut query = Vec::new();
        if mode.dry_run == DryRun::Server {
            query.push(("dryRun".to_string(), "All".to_string()));
        }
        let uri = with_query(&kind.path(namespace, Some(name)), &query);
        let body = match resource_version {
            Some(rv) => serde_json::to_vec(&json!({
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"resourceVersion": rv},
            }))?,
            None => Vec::new(),
        };
        let answer = self
            .send_idempotent(http::Method::DELETE, &uri, "application/json", &body)
            .await?;
        match answer {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.fail(e, "delete", &what(kind, namespace, name))),
        }
    }

    /// POSTs to a subresource (e.g. `serviceaccounts/NAME/token`).
    pub async fn post_subresource(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        sub: &str,
        body: &Value,
    ) -> Result<Value> {
        let uri = format!("{}/{sub}", kind.path(Some(namespace), Some(name)));
        let req = Request::post(uri)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body)?)?;
        self.send(req).await.map_err(|e| {
            self.fail(
                e,
                "create",
                &format!("{} {namespace}/{name}/{sub}", kind.kind),
            )
        })
    }

    /// The newest `networking.istio.io` version the cluster serves, or the "is Istio installed?" error.
    pub async fn istio_version(&self) -> Result<String> {
        self.served_istio_version().await?.ok_or_else(|| {
            anyhow::anyhow!(
                "Istio CRDs not found in context {}: is Istio installed?",
                self.context
            )
        })
    }

    /// The newest `networking.istio.io` version served; `None` when Istio is not installed.
    /// Any other failure (a 500, a timeout) is an error, never taken for "not installed".
    pub async fn served_istio_version(&self) -> Result<Option<String>> {
        self.served_version(ISTIO_NETWORKING, &ISTIO_VERSIONS).await
    }

    /// The newest `security.istio.io` version that serves PeerAuthentication, or the "is Istio
    /// installed?" error.
    pub async fn security_version(&self) -> Result<String> {
        self.served_version(ISTIO_SECURITY, &SECURITY_VERSIONS)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the {ISTIO_SECURITY} API group (PeerAuthentication) is not served in context {}: is Istio installed?",
                    self.context
                )
            })
    }

    /// The first of `versions` that `group` serves; `None` when the group is not served.
    async fn served_version(&self, group: &str, versions: &[&str]) -> Result<Option<String>> {
        let req = get_req(&format!("/apis/{group}"))?;
        let answer = match self.send(req).await {
            Ok(v) => v,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                crate::vlog!(
                    4,
                    "\"Istio API not served\" group={group:?} context={:?}",
                    self.context
                );
                return Ok(None);
            }
            Err(e) => return Err(self.fail(e, "discover", &format!("the {group} API group"))),
        };
        let served: Vec<&str> = answer["versions"]
            .as_array()
            .map(|vs| vs.iter().filter_map(|v| v["version"].as_str()).collect())
            .unwrap_or_default();
        let chosen = versions
            .iter()
            .find(|v| served.contains(v))
            .map(|v| v.to_string());
        crate::vlog!(
            4,
            "\"Istio API version\" group={group:?} version={:?} served={served:?} context={:?}",
            chosen.as_deref().unwrap_or_default(),
            self.context
        );
        Ok(chosen)
    }

    /// Whether a namespace exists.
    pub async fn has_namespace(&self, ns: &str) -> Result<bool> {
        Ok(self
            .get(&objects::core("Namespace"), None, ns)
            .await?
            .is_some())
    }

    /// Makes sure a namespace exists: creates it when `create`, else a clear error naming the flag.
    pub async fn ensure_namespace(
        &self,
        ns: &str,
        create: bool,
        mode: WriteMode,
    ) -> Result<Option<Applied>> {
        if self.has_namespace(ns).await? {
            return Ok(None);
        }
        if !create {
            anyhow::bail!(
                "namespace {ns:?} not found in context {:?}: create it, or pass --create-namespace",
                self.context
            );
        }
        let obj = objects::new_object(&objects::core("Namespace"), None, ns);
        Ok(Some(self.apply_over(&obj, None, mode).await?))
    }
}

fn what(kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{} {ns}/{name}", kind.kind),
        _ => format!("{} {name}", kind.kind),
    }
}

fn kind_of(obj: &Value) -> Result<Kind> {
    Kind::of(obj)
        .ok_or_else(|| anyhow::anyhow!("unknown kind {} {}", obj["apiVersion"], obj["kind"]))
}

fn get_req(uri: &str) -> Result<Request<Vec<u8>>> {
    Ok(Request::get(uri)
        .header("Accept", "application/json")
        .body(Vec::new())?)
}

fn with_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let mut s = String::from(path);
    for (i, (k, v)) in query.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}

fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn transport_message(err: &kube::Error, limit: &str) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    if msg.to_ascii_lowercase().contains("elapsed")
        || msg.to_ascii_lowercase().contains("timed out")
    {
        return format!("no answer within {limit} ({msg})");
    }
    msg
}

/// A refused server certificate, said plainly with the flag that fixes it, instead of the
/// nested "client error (Connect)" chain of the TLS library.
fn tls_hint(msg: &str) -> Option<String> {
    let at = msg.find("invalid peer certificate")?;
    let cause = msg[at..].trim_end();
    let (what, fix) = if cause.contains("UnknownIssuer") {
        (
            "is not signed by a trusted CA",
            "check --certificate-authority, or the kubeconfig cluster's certificate-authority",
        )
    } else if cause.contains("NotValidForName") {
        (
            "is not issued for the name connected to",
            "check --server and --tls-server-name, or the kubeconfig cluster's server and tls-server-name",
        )
    } else {
        (
            "was refused",
            "check --certificate-authority, or the kubeconfig cluster's certificate-authority",
        )
    };
    Some(format!(
        "TLS: the server's certificate {what} ({cause}): {fix}"
    ))
}

/// Equal apart from server bookkeeping: how a server dry run tells "unchanged".
fn same_content(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "managedFields",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "uid",
            ] {
                m.remove(k);
            }
        }
        v
    }
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        let q = vec![("labelSelector".to_string(), "app in (a,b)".to_string())];
        assert_eq!(
            with_query("/x", &q),
            "/x?labelSelector=app%20in%20%28a%2Cb%29"
        );
        assert_eq!(with_query("/x", &[]), "/x");
    }

    #[test]
    fn a_refused_certificate_names_the_flag_that_fixes_it() {
        let msg = "ServiceError: client error (Connect): client error (Connect): invalid peer certificate: UnknownIssuer";
        assert_eq!(
            tls_hint(msg).as_deref(),
            Some("TLS: the server's certificate is not signed by a trusted CA (invalid peer certificate: UnknownIssuer): check --certificate-authority, or the kubeconfig cluster's certificate-authority")
        );
        assert!(tls_hint("connection refused").is_none());
    }

    #[test]
    fn dry_run_comparison_ignores_bookkeeping() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1", "managedFields": []}, "spec": {"a": 1}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "2"}, "spec": {"a": 1}});
        let c = json!({"metadata": {"name": "x"}, "spec": {"a": 2}});
        assert!(same_content(&a, &b));
        assert!(!same_content(&a, &c));
    }
}
