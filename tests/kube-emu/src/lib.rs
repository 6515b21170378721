//! kube-emu: an in-memory Kubernetes API server for tests.
//!
//! Start it with [`Emu::builder`]; it serves one HTTPS API server per cluster on 127.0.0.1
//! from a background thread, writes a kubeconfig, and stops when dropped.
#![allow(missing_docs)]

pub mod api;
pub mod fields;
pub mod registry;
pub mod schema;
mod server;
pub mod util;

use anyhow::Context as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use server::tls_ca_pem;

/// One request as seen by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The answered status; 0 when the connection was reset.
    pub status: u16,
    pub user_agent: String,
}

impl LoggedRequest {
    /// Whether this is /version, /healthz, discovery or OpenAPI rather than a resource request.
    pub fn is_discovery(&self) -> bool {
        let p = self.path.trim_end_matches('/');
        if matches!(
            p,
            "/version" | "/healthz" | "/livez" | "/readyz" | "/api" | "/apis" | "/api/v1"
        ) || p.starts_with("/openapi")
        {
            return true;
        }
        let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
        matches!(segs.as_slice(), ["apis", _] | ["apis", _, _])
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer a `Status` body with this code, without touching the store.
    Status(u16),
    /// Close the connection without answering.
    Reset,
    /// Sleep, then handle normally.
    Delay(Duration),
    /// Handle normally (the change is stored), then sleep before answering.
    StallAfter(Duration),
    /// Handle normally (the change is stored), then answer this status instead, as a real
    /// server does when etcd times out after the write (`etcdserver: request timed out`).
    StoreThenStatus(u16),
    /// Hold the request, then answer this status without touching the store: a slow failure,
    /// during which a test can act as another writer.
    DelayThenStatus(Duration, u16),
    /// Answer 200 with this JSON body instead of handling the request (a broken server or proxy).
    Body(String),
}

/// A fault that fires once, on the `nth` (1-based) request matching method and path.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub nth: usize,
    pub action: FaultAction,
}

impl Fault {
    /// A fault on the first request matching `method` (e.g. "PATCH") and a path fragment.
    pub fn new(method: &str, path_contains: &str, action: FaultAction) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path_contains: Some(path_contains.to_string()),
            nth: 1,
            action,
        }
    }
    /// Fire on the nth matching request instead of the first.
    pub fn nth(mut self, n: usize) -> Fault {
        self.nth = n;
        self
    }
}

pub(crate) struct FaultState {
    fault: Fault,
    seen: usize,
    fired: bool,
}

/// One served cluster.
pub(crate) struct Cluster {
    pub name: String,
    pub core: api::Core,
    pub port: u16,
    pub token: Mutex<String>,
    pub log: Mutex<Vec<LoggedRequest>>,
    pub faults: Mutex<Vec<FaultState>>,
    /// The round trip every request pays (see [`Emu::set_latency`]).
    pub latency: Mutex<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Cluster {
    pub(crate) fn latency(&self) -> Duration {
        *lock(&self.latency)
    }

    pub(crate) fn take_fault(&self, method: &str, path: &str) -> Option<FaultAction> {
        let mut faults = lock(&self.faults);
        for f in faults.iter_mut() {
            if f.fired {
                continue;
            }
            let m_ok = f
                .fault
                .method
                .as_deref()
                .map(|m| m.eq_ignore_ascii_case(method))
                .unwrap_or(true);
            let p_ok = f
                .fault
                .path_contains
                .as_deref()
                .map(|p| path.contains(p))
                .unwrap_or(true);
            if m_ok && p_ok {
                f.seen += 1;
                if f.seen >= f.fault.nth.max(1) {
                    f.fired = true;
                    return Some(f.fault.action.clone());
                }
            }
        }
        None
    }
}

enum Crds {
    Default,
    Files(Vec<PathBuf>),
    None,
}

/// Configures and starts an [`Emu`].
pub struct EmuBuilder {
    clusters: Vec<String>,
    crds: Crds,
    seeds: Vec<String>,
    deterministic: bool,
    bind: std::net::IpAddr,
    latency: Duration,
}

/// Running API servers, one per cluster. Dropping it stops them.
pub struct Emu {
    clusters: Vec<Arc<Cluster>>,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    home: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emu {
    pub fn builder() -> EmuBuilder {
        EmuBuilder {
            clusters: vec!["cluster1".into()],
            crds: Crds::Default,
            seeds: vec![],
            deterministic: false,
            bind: std::net::IpAddr::from([127, 0, 0, 1]),
            latency: Duration::ZERO,
        }
    }
}

fn kind_order(v: &Value) -> u8 {
    match v.get("kind").and_then(Value::as_str) {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        Some("ServiceAccount") => 2,
        _ => 3,
    }
}

/// Seeds a cluster's state from documents, honouring the `kube-emu/cluster` annotation.
fn seed_docs(core: &api::Core, cluster: &str, docs: &[Value]) -> anyhow::Result<()> {
    let mut docs: Vec<&Value> = docs.iter().collect();
    docs.sort_by_key(|d| kind_order(d));
    let mut st = core.lock();
    for d in docs {
        let target = d
            .pointer("/metadata/annotations/kube-emu~1cluster")
            .and_then(Value::as_str);
        if target.map(|t| t != cluster).unwrap_or(false) {
            continue;
        }
        st.seed(d.clone())?;
    }
    Ok(())
}

impl EmuBuilder {
    pub fn clusters(mut self, names: &[&str]) -> Self {
        self.clusters = names.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Loads CRDs from a file (may be given several times).
    pub fn crds_file(mut self, path: impl Into<PathBuf>) -> Self {
        match &mut self.crds {
            Crds::Files(v) => v.push(path.into()),
            _ => self.crds = Crds::Files(vec![path.into()]),
        }
        self
    }
    /// No Istio kinds at all.
    pub fn no_crds(mut self) -> Self {
        self.crds = Crds::None;
        self
    }
    pub fn seed_yaml(mut self, yaml: &str) -> Self {
        self.seeds.push(yaml.to_string());
        self
    }
    /// Fixed clock (2026-01-01T00:00:00Z) and counter-based UIDs.
    pub fn deterministic(mut self) -> Self {
        self.deterministic = true;
        self
    }

    /// Listens on `addr` instead of 127.0.0.1 (`0.0.0.0`: every interface), for tests that must
    /// reach the server by an address that is not loopback (a proxy is never used for one).
    pub fn bind(mut self, addr: std::net::IpAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Every cluster is this far away: see [`Emu::set_latency`].
    pub fn latency(mut self, round_trip: Duration) -> Self {
        self.latency = round_trip;
        self
    }

    pub fn start(self) -> anyhow::Result<Emu> {
        let sets: Vec<Arc<registry::CrdSet>> = match &self.crds {
            Crds::None => vec![],
            Crds::Files(fs) => fs
                .iter()
                .map(|f| registry::crd_file(f))
                .collect::<anyhow::Result<_>>()?,
            Crds::Default => match registry::default_crd_path() {
                Some(p) => vec![registry::crd_file(&p)?],
                None => vec![registry::builtin_istio_crds()],
            },
        };
        let mut docs = Vec::new();
        for s in &self.seeds {
            docs.extend(registry::parse_multi_yaml(s).context("parsing seed YAML")?);
        }
        let mut names = self.clusters.clone();
        if names.is_empty() {
            names.push("cluster1".into());
        }
        let mut listeners = Vec::new();
        let mut clusters = Vec::new();
        for name in &names {
            let l = std::net::TcpListener::bind((self.bind, 0))?;
            l.set_nonblocking(true)?;
            let port = l.local_addr()?.port();
            let core = api::Core::new(name, &sets, self.deterministic);
            seed_docs(&core, name, &docs)?;
            clusters.push(Arc::new(Cluster {
                name: name.clone(),
                core,
                port,
                token: Mutex::new(format!("kube-emu-token-{name}")),
                log: Mutex::new(vec![]),
                faults: Mutex::new(vec![]),
                latency: Mutex::new(self.latency),
            }));
            listeners.push(l);
        }
        let tls = server::tls_config()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let cl = clusters.clone();
        let thread = std::thread::Builder::new()
            .name("kube-emu".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    for (l, c) in listeners.into_iter().zip(cl) {
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => {
                                tokio::spawn(server::serve(l, c, tls.clone()));
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.into()));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = rx.await;
                });
                rt.shutdown_background();
            })?;
        ready_rx.recv().context("server thread died")??;
        let dir = tempfile::Builder::new().prefix("kube-emu-").tempdir()?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        let kubeconfig = dir.path().join("kubeconfig");
        let emu = Emu {
            clusters,
            _dir: dir,
            kubeconfig,
            home,
            shutdown: Some(tx),
            thread: Some(thread),
        };
        std::fs::write(&emu.kubeconfig, emu.kubeconfig_yaml())?;
        Ok(emu)
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Emu {
    fn cluster(&self, name: &str) -> &Arc<Cluster> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("kube-emu: no cluster named {name:?}"))
    }

    /// Names of the clusters, in order.
    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.name.clone()).collect()
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A private HOME for kubectl.
    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn url(&self, cluster: &str) -> String {
        format!("https://127.0.0.1:{}", self.cluster(cluster).port)
    }

    /// The bearer token a cluster accepts.
    pub fn token(&self, cluster: &str) -> String {
        lock(&self.cluster(cluster).token).clone()
    }

    /// Changes the token a cluster accepts (the kubeconfig is not rewritten).
    pub fn set_token(&self, cluster: &str, token: &str) {
        *lock(&self.cluster(cluster).token) = token.to_string();
    }

    /// The kubeconfig text: one context per cluster, current = first, namespace default.
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(tls_ca_pem());
        let clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|c| json!({"name": c.name, "cluster": {"server": self.url(&c.name), "certificate-authority-data": ca}}))
            .collect();
        let users: Vec<Value> = self
            .clusters
            .iter()
            .map(|c| json!({"name": c.name, "user": {"token": self.token(&c.name)}}))
            .collect();
        let contexts: Vec<Value> = self
            .clusters
            .iter()
            .map(|c| json!({"name": c.name, "context": {"cluster": c.name, "user": c.name, "namespace": "default"}}))
            .collect();
        let v = json!({
            "apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users, "contexts": contexts,
            "current-context": self.clusters[0].name, "preferences": {},
        });
        serde_yaml::to_string(&v).unwrap_or_default()
    }

    /// A kube client for a cluster (call from any tokio runtime).
    pub async fn client(&self, cluster: &str) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let opts = kube::config::KubeConfigOptions {
            context: Some(cluster.to_string()),
            ..Default::default()
        };
        let cfg = kube::Config::from_custom_kubeconfig(kc, &opts).await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    /// The requests a cluster has answered, in order.
    pub fn requests(&self, cluster: &str) -> Vec<LoggedRequest> {
        lock(&self.cluster(cluster).log).clone()
    }

    pub fn clear_requests(&self) {
        for c in &self.clusters {
            lock(&c.log).clear();
        }
    }

    pub fn inject(&self, cluster: &str, fault: Fault) {
        lock(&self.cluster(cluster).faults).push(FaultState {
            fault,
            seen: 0,
            fired: false,
        });
    }

    /// Makes a cluster as far away as a remote API server: every request (discovery, /version
    /// and OpenAPI included) takes `round_trip` longer, half on the way in (before it is
    /// handled, so a write lands late too) and half on the way back; a new connection pays one
    /// more for its TLS handshake. Faults come on top. Zero (the default) turns it off.
    pub fn set_latency(&self, cluster: &str, round_trip: Duration) {
        *lock(&self.cluster(cluster).latency) = round_trip;
    }

    pub fn clear_faults(&self) {
        for c in &self.clusters {
            lock(&c.faults).clear();
        }
    }

    /// Reads an object by API path; None when absent.
    pub fn get_json(&self, cluster: &str, path: &str) -> Option<Value> {
        let st = self.cluster(cluster).core.lock();
        match st.read_path(path)? {
            Value::Array(_) => None,
            v => Some(v),
        }
    }

    /// Items of a collection path (namespaced or cluster-wide).
    pub fn list_json(&self, cluster: &str, path: &str) -> Vec<Value> {
        let st = self.cluster(cluster).core.lock();
        match st.read_path(path) {
            Some(Value::Array(a)) => a,
            _ => vec![],
        }
    }

    /// Creates or replaces objects (multi-document YAML), bypassing log and faults.
    pub fn apply_yaml(&self, cluster: &str, yaml: &str) -> anyhow::Result<()> {
        let docs = registry::parse_multi_yaml(yaml)?;
        seed_docs(&self.cluster(cluster).core, cluster, &docs)
    }

    /// Deletes an object by API path; false when absent.
    pub fn delete_path(&self, cluster: &str, path: &str) -> bool {
        self.cluster(cluster).core.lock().delete_path(path)
    }
}
