//! The only module that talks to the Kubernetes API: connecting, reading, and the one write path.

use std::time::Duration;

use anyhow::Result;
use http::Request;
use kube::config::Kubeconfig;
use kube::core::params::{
    DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::{Client, Config};
use serde_json::{json, Value};

use crate::cli::{DryRun, KubeArgs};
use crate::kubeconfig::{self, Target};
use crate::objects::{
    self, Kind, FIELD_MANAGER, ISTIO_NETWORKING, ISTIO_SECURITY, ISTIO_VERSIONS, SECURITY_VERSIONS,
};
use crate::overrides::Overrides;

mod error;
pub use error::{conflict, in_doubt, reclassify, ApiError, ErrorKind, Verb};

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

    async fn send(&self, mut req: Request<Vec<u8>>) -> std::result::Result<Value, kube::Error> {
        // kube's builders leave a bare `?` on a URL without parameters; logs (-v 6) and
        // request logs show the URL as kubectl sends it.
        if req.uri().query() == Some("") {
            let bare = req.uri().to_string().trim_end_matches('?').to_string();
            if let Ok(uri) = bare.parse() {
                *req.uri_mut() = uri;
            }
        }
        self.client.request::<Value>(req).await
    }

    /// Sends an idempotent write (server-side apply, delete). One that got no answer (timeout,
    /// reset) may or may not have landed, and sending it again is harmless, so it is sent once
    /// more, never more. An answer from the server, error or not, is returned as it is.
    async fn send_idempotent(
        &self,
        request: Request<Vec<u8>>,
    ) -> std::result::Result<Value, kube::Error> {
        let again = clone_request(&request);
        match self.send(request).await {
            Err(e) if !matches!(e, kube::Error::Api(_)) => self.send(again).await,
            answer => answer,
        }
    }

    fn fail(&self, err: kube::Error, verb: Verb, what: &str) -> anyhow::Error {
        ApiError::from_kube(&err, verb, what, &self.context, &self.limit).into()
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
        let req = collection(kind, namespace).get(name, &GetParams::default())?;
        match self.send(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.fail(e, Verb::Get, &what(kind, namespace, name))),
        }
    }

    /// Lists objects (every page), in one namespace or all (`None`), optionally by label selector.
    pub async fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>> {
        let base = collection(kind, namespace);
        let mut items = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let params = ListParams {
                label_selector: selector.map(String::from),
                limit: Some(500),
                continue_token: cont.clone(),
                ..ListParams::default()
            };
            let req = base.list(&params)?;
            let list = match self.send(req).await {
                Ok(v) => v,
                Err(kube::Error::Api(s)) if s.code == 404 && namespace.is_some() => {
                    return Ok(items)
                }
                Err(e) => {
                    let scope = namespace.map_or("in all namespaces".to_string(), |n| {
                        format!("in namespace {n}")
                    });
                    return Err(self.fail(e, Verb::List, &format!("{} {scope}", kind.plural)));
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
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            force: mode.force,
            dry_run: mode.dry_run == DryRun::Server,
            ..PatchParams::default()
        };
        crate::vlog!(
            4,
            "\"Server-side apply\" object={:?} context={:?} fieldManager={FIELD_MANAGER:?} force={} dryRun={:?}",
            what(&kind, ns, name),
            self.context,
            mode.force,
            if mode.dry_run == DryRun::Server { "All" } else { "" }
        );
        let req = collection(&kind, ns).patch(name, &params, &Patch::Apply(obj))?;
        let answer = self.send_idempotent(req).await;
        let object = answer.map_err(|e| self.fail(e, Verb::Apply, &what(&kind, ns, name)))?;
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
        let params = PostParams {
            dry_run: mode.dry_run == DryRun::Server,
            field_manager: Some(FIELD_MANAGER.to_string()),
        };
        let (verb, logged) = if replace {
            (Verb::Update, "Update")
        } else {
            (Verb::Create, "Create")
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
        let body = serde_json::to_vec(obj)?;
        let at = collection(&kind, ns);
        let req = if replace {
            at.replace(name, &params, body)?
        } else {
            at.create(&params, body)?
        };
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
    /// changed object is an [`ErrorKind::Conflict`] error.
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
        let params = DeleteParams {
            dry_run: mode.dry_run == DryRun::Server,
            preconditions: resource_version.map(|rv| Preconditions {
                resource_version: Some(rv.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let mut req = collection(kind, namespace).delete(name, &params)?;
        if params.dry_run {
            // kube puts dryRun in the DeleteOptions body only; kubectl also sends it in the
            // query, which every server honours and a request log shows.
            let uri = req.uri().to_string();
            let sep = match uri.split_once('?') {
                Some((_, "")) => "",
                Some(_) => "&",
                None => "?",
            };
            let uri = format!("{uri}{sep}dryRun=All");
            *req.uri_mut() = uri.parse()?;
        }
        let answer = self.send_idempotent(req).await;
        match answer {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.fail(e, Verb::Delete, &what(kind, namespace, name))),
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
        let req = collection(kind, Some(namespace)).create_subresource(
            sub,
            name,
            &PostParams::default(),
            serde_json::to_vec(body)?,
        )?;
        self.send(req).await.map_err(|e| {
            self.fail(
                e,
                Verb::Create,
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
            Err(e) => return Err(self.fail(e, Verb::Discover, &format!("the {group} API group"))),
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

/// kube's request builder for a kind's collection in a namespace (or cluster-wide).
fn collection(kind: &Kind, namespace: Option<&str>) -> kube::core::Request {
    kube::core::Request::new(kind.path(namespace, None))
}

fn get_req(uri: &str) -> Result<Request<Vec<u8>>> {
    Ok(Request::get(uri)
        .header("Accept", "application/json")
        .body(Vec::new())?)
}

/// A copy of a request to send again (http's `Request` is not `Clone`).
fn clone_request(req: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    copy
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
    fn dry_run_comparison_ignores_bookkeeping() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1", "managedFields": []}, "spec": {"a": 1}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "2"}, "spec": {"a": 1}});
        let c = json!({"metadata": {"name": "x"}, "spec": {"a": 2}});
        assert!(same_content(&a, &b));
        assert!(!same_content(&a, &c));
    }
}
