//! The two test tiers behind one type: kube-emu, or real kube-apiservers (with etcd, and istiod
//! on request) started by `mesh-testcluster` from `tests/realcluster`.
//!
//! A scenario is written once against [`Server`] and run on both tiers by [`on_both_tiers!`].
//! What only kube-emu can do (request logs, fault injection, a fixed clock) is reached through
//! [`Server::emu`], so a scenario says plainly which of its checks are kube-emu's alone.

use super::Emu;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Emu,
    Real,
}

impl Tier {
    /// `MESH_TIERS=emu` or `MESH_TIERS=real` runs one tier only (a quick local loop); the
    /// default, and what CI runs, is both.
    pub fn enabled(self) -> bool {
        match std::env::var("MESH_TIERS").as_deref() {
            Ok("emu") => self == Tier::Emu,
            Ok("real") => self == Tier::Real,
            _ => true,
        }
    }
}

/// Runs each scenario on both tiers: `mod NAME { fn emu(); fn real(); }`.
macro_rules! on_both_tiers {
    ($($(#[$meta:meta])* fn $name:ident($tier:ident) $body:block)+) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn scenario($tier: $crate::common::Tier) $body
            #[test]
            fn emu() {
                if $crate::common::Tier::Emu.enabled() {
                    scenario($crate::common::Tier::Emu)
                }
            }
            #[test]
            fn real() {
                if $crate::common::Tier::Real.enabled() {
                    scenario($crate::common::Tier::Real)
                }
            }
        }
    )+};
}

/// Like `Emu::builder()`, for either tier.
pub struct ServerBuilder {
    tier: Tier,
    clusters: Vec<String>,
    seeds: Vec<String>,
    no_crds: bool,
    istiod: bool,
}

impl Server {
    pub fn builder(tier: Tier) -> ServerBuilder {
        ServerBuilder {
            tier,
            clusters: vec!["cluster1".into()],
            seeds: vec![],
            no_crds: false,
            istiod: false,
        }
    }
}

impl ServerBuilder {
    pub fn clusters(mut self, names: &[&str]) -> Self {
        self.clusters = names.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn seed_yaml(mut self, yaml: &str) -> Self {
        self.seeds.push(yaml.to_string());
        self
    }
    /// No Istio kinds at all.
    pub fn no_crds(mut self) -> Self {
        self.no_crds = true;
        self
    }
    /// An istiod per cluster (real tier only: kube-emu has no control plane).
    pub fn istiod(mut self) -> Self {
        self.istiod = true;
        self
    }

    #[track_caller]
    pub fn start(self) -> Server {
        let inner = match self.tier {
            Tier::Emu => {
                let names: Vec<&str> = self.clusters.iter().map(String::as_str).collect();
                let mut b = Emu::builder().clusters(&names);
                for s in &self.seeds {
                    b = b.seed_yaml(s);
                }
                if self.no_crds {
                    b = b.no_crds();
                }
                Inner::Emu(b.start().expect("start kube-emu"))
            }
            Tier::Real => {
                let real = Real::start(&self.clusters, self.istiod, self.no_crds)
                    .unwrap_or_else(|e| panic!("real tier: {e:#}"));
                for c in &self.clusters {
                    for s in &self.seeds {
                        real.apply_yaml(c, s)
                            .unwrap_or_else(|e| panic!("real tier: seeding {c}: {e:#}"));
                    }
                }
                Inner::Real(real)
            }
        };
        Server { inner }
    }
}

/// A running set of clusters on either tier.
pub struct Server {
    inner: Inner,
}

enum Inner {
    Emu(Emu),
    Real(Real),
}

impl Server {
    /// kube-emu itself, for what only it has: request logs, faults, direct state.
    pub fn emu(&self) -> Option<&Emu> {
        match &self.inner {
            Inner::Emu(e) => Some(e),
            Inner::Real(_) => None,
        }
    }

    pub fn real(&self) -> Option<&Real> {
        match &self.inner {
            Inner::Emu(_) => None,
            Inner::Real(r) => Some(r),
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        match &self.inner {
            Inner::Emu(e) => e.kubeconfig(),
            Inner::Real(r) => &r.kubeconfig,
        }
    }

    pub fn home(&self) -> &Path {
        match &self.inner {
            Inner::Emu(e) => e.home(),
            Inner::Real(r) => &r.home,
        }
    }

    pub fn url(&self, cluster: &str) -> String {
        match &self.inner {
            Inner::Emu(e) => e.url(cluster),
            Inner::Real(r) => r.url(cluster),
        }
    }

    /// Reads an object by API path; None when absent.
    pub fn get_json(&self, cluster: &str, path: &str) -> Option<Value> {
        match &self.inner {
            Inner::Emu(e) => e.get_json(cluster, path),
            Inner::Real(r) => r.get_json(cluster, path),
        }
    }

    /// Items of a collection path.
    pub fn list_json(&self, cluster: &str, path: &str) -> Vec<Value> {
        match &self.inner {
            Inner::Emu(e) => e.list_json(cluster, path),
            Inner::Real(r) => r
                .get_raw(cluster, path)
                .and_then(|v| v["items"].as_array().cloned())
                .unwrap_or_default(),
        }
    }

    /// Creates or replaces objects (multi-document YAML), as an operator would by hand.
    pub fn apply_yaml(&self, cluster: &str, yaml: &str) -> anyhow::Result<()> {
        match &self.inner {
            Inner::Emu(e) => e.apply_yaml(cluster, yaml),
            Inner::Real(r) => r.apply_yaml(cluster, yaml),
        }
    }

    /// Deletes an object by API path; false when absent.
    pub fn delete_path(&self, cluster: &str, path: &str) -> bool {
        match &self.inner {
            Inner::Emu(e) => e.delete_path(cluster, path),
            Inner::Real(r) => r.kubectl(cluster, &["delete", "--raw", path], None).0,
        }
    }
}

/// Where `tests/realcluster/build` puts the Go tools.
pub fn realcluster_bin(tool: &str) -> PathBuf {
    let dir = std::env::var_os("MESH_REALCLUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/realcluster/bin"));
    dir.join(tool)
}

/// istiod's addresses for one cluster.
#[derive(Debug, Clone)]
pub struct Istiod {
    pub grpc: String,
    pub debug: String,
    /// The mTLS port (15012 in a cluster): the CA and xDS for proxies with a certificate.
    pub secure_grpc: String,
}

/// Real kube-apiservers run by one `mesh-testcluster` process, which stops them when its
/// stdin closes (so a test that panics still leaves nothing behind).
pub struct Real {
    child: Child,
    stdin: Option<ChildStdin>,
    _dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
    pub istiods: BTreeMap<String, Istiod>,
    urls: BTreeMap<String, String>,
}

impl Real {
    fn start(clusters: &[String], istiod: bool, no_crds: bool) -> anyhow::Result<Real> {
        use anyhow::Context as _;
        let bin = realcluster_bin("mesh-testcluster");
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: run tests/realcluster/build (needs Go 1.26 and the Go module proxy)",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("mesh-real-").tempdir()?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        let kubeconfig = dir.path().join("kubeconfig");
        let log = std::fs::File::create(dir.path().join("mesh-testcluster.log"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--clusters")
            .arg(clusters.join(","))
            .arg("--work-dir")
            .arg(dir.path().join("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        if istiod {
            cmd.arg("--istiod");
        }
        if no_crds {
            cmd.arg("--no-crds");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("mesh-testcluster stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut istiods = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut real = Real {
            child,
            stdin,
            kubeconfig: kubeconfig.clone(),
            home,
            istiods: BTreeMap::new(),
            urls: BTreeMap::new(),
            _dir: dir,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let log =
                        std::fs::read_to_string(real._dir.path().join("mesh-testcluster.log"))
                            .unwrap_or_default();
                    anyhow::bail!("mesh-testcluster did not get ready:\n{log}");
                }
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ready", _] => break,
                ["istiod", name, grpc, debug, secure_grpc] => {
                    istiods.insert(
                        name.to_string(),
                        Istiod {
                            grpc: grpc.to_string(),
                            debug: debug.to_string(),
                            secure_grpc: secure_grpc.to_string(),
                        },
                    );
                }
                _ => {}
            }
        }
        real.istiods = istiods;
        let kc: Value = serde_yaml::from_str(&std::fs::read_to_string(&kubeconfig)?)?;
        for c in kc["clusters"].as_array().into_iter().flatten() {
            if let (Some(n), Some(s)) = (c["name"].as_str(), c["cluster"]["server"].as_str()) {
                real.urls.insert(n.to_string(), s.to_string());
            }
        }
        Ok(real)
    }

    pub fn url(&self, cluster: &str) -> String {
        self.urls.get(cluster).cloned().unwrap_or_default()
    }

    /// Runs the real kubectl against one cluster as admin: (success, stdout, stderr).
    pub fn kubectl(
        &self,
        cluster: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> (bool, String, String) {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .arg("--context")
            .arg(cluster)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let Ok(mut child) = cmd.spawn() else {
            return (false, String::new(), "cannot run kubectl".into());
        };
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(text.as_bytes());
        }
        match child.wait_with_output() {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (false, String::new(), e.to_string()),
        }
    }

    fn get_raw(&self, cluster: &str, path: &str) -> Option<Value> {
        let (ok, out, _) = self.kubectl(cluster, &["get", "--raw", path], None);
        if !ok {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    fn get_json(&self, cluster: &str, path: &str) -> Option<Value> {
        self.get_raw(cluster, path)
            .filter(|v| !v["kind"].as_str().unwrap_or("").ends_with("List"))
    }

    /// Creates each document (replacing one that exists), then its `status` through the
    /// status subresource, as a controller would have written it. Namespaces are created
    /// first, each with the `default` ServiceAccount that kube-controller-manager would add.
    fn apply_yaml(&self, cluster: &str, yaml: &str) -> anyhow::Result<()> {
        let mut docs = Vec::new();
        for d in serde_yaml::Deserializer::from_str(yaml) {
            let v: Value = serde::Deserialize::deserialize(d)?;
            if v.is_object() {
                docs.push(v);
            }
        }
        docs.retain(|d| {
            d.pointer("/metadata/annotations/kube-emu~1cluster")
                .and_then(Value::as_str)
                .is_none_or(|t| t == cluster)
        });
        let order = |d: &Value| match d["kind"].as_str() {
            Some("CustomResourceDefinition") => 0,
            Some("Namespace") => 1,
            Some("ServiceAccount") => 2,
            _ => 3,
        };
        docs.sort_by_key(order);
        let mut namespaces: Vec<String> = docs
            .iter()
            .filter_map(|d| d["metadata"]["namespace"].as_str().map(String::from))
            .chain(
                docs.iter()
                    .filter(|d| d["kind"] == "Namespace")
                    .filter_map(|d| d["metadata"]["name"].as_str().map(String::from)),
            )
            .collect();
        namespaces.push("default".into());
        namespaces.sort();
        namespaces.dedup();
        // Three kubectl runs however many documents: namespaces with their ServiceAccount, the
        // documents, then (for those that existed) a replace; statuses one by one.
        let mut basics = Vec::new();
        for ns in &namespaces {
            basics.push(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
            basics.push(serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}));
        }
        self.create_or_replace(cluster, basics, false)?;
        let mut statuses = Vec::new();
        let mut items = Vec::new();
        for mut d in docs {
            if let Some(ann) = d
                .pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut)
            {
                ann.remove("kube-emu/cluster");
            }
            if let Some(status) = d.as_object_mut().and_then(|o| o.remove("status")) {
                statuses.push((d.clone(), status));
            }
            items.push(d);
        }
        self.create_or_replace(cluster, items, true)?;
        for (d, status) in statuses {
            let kind = d["kind"].as_str().unwrap_or_default();
            let group = d["apiVersion"]
                .as_str()
                .and_then(|a| a.split_once('/').map(|(g, _)| g))
                .unwrap_or("");
            let resource = if group.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}.{group}")
            };
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let ns = d["metadata"]["namespace"].as_str().unwrap_or("default");
            let patch = serde_json::json!({ "status": status }).to_string();
            let (ok, _, err) = self.kubectl(
                cluster,
                &[
                    "patch",
                    &resource,
                    name,
                    "-n",
                    ns,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ],
                None,
            );
            anyhow::ensure!(
                ok,
                "kubectl patch --subresource=status {kind} {name}: {err}"
            );
        }
        Ok(())
    }

    /// `kubectl create` of every item in one list; what existed already is left alone, or with
    /// `replace` replaced as a whole list (an unchanged replace is a no-op on the server).
    fn create_or_replace(
        &self,
        cluster: &str,
        items: Vec<Value>,
        replace: bool,
    ) -> anyhow::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let list =
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
        let (ok, _, err) = self.kubectl(cluster, &["create", "-f", "-"], Some(&list));
        if ok {
            return Ok(());
        }
        let only_existing = err
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.contains("AlreadyExists") || l.contains("already exists"));
        anyhow::ensure!(only_existing, "kubectl create: {err}");
        if replace {
            let (ok, _, err) = self.kubectl(cluster, &["replace", "-f", "-"], Some(&list));
            anyhow::ensure!(ok, "kubectl replace: {err}");
        }
        Ok(())
    }

    /// Rewrites the kubeconfig so every cluster's user presents a token the servers never issued,
    /// and returns that token (the one no output may contain).
    pub fn refuse_tokens(&self) -> String {
        let token = format!("refused-{}", std::process::id());
        self.edit_kubeconfig(|kc| {
            for u in kc["users"].as_array_mut().into_iter().flatten() {
                if !u["name"].as_str().unwrap_or("").ends_with("-restricted") {
                    u["user"]["token"] = Value::String(token.clone());
                }
            }
        });
        token
    }

    /// Points every context at the cluster's restricted user, who may read everything and
    /// write nothing (RBAC, as mesh-testcluster sets it up).
    pub fn use_restricted_user(&self) {
        self.edit_kubeconfig(|kc| {
            for c in kc["contexts"].as_array_mut().into_iter().flatten() {
                let user = format!(
                    "{}-restricted",
                    c["context"]["cluster"].as_str().unwrap_or("")
                );
                c["context"]["user"] = Value::String(user);
            }
        });
    }

    fn edit_kubeconfig(&self, edit: impl FnOnce(&mut Value)) {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read kubeconfig");
        let mut kc: Value = serde_yaml::from_str(&text).expect("parse kubeconfig");
        edit(&mut kc);
        std::fs::write(&self.kubeconfig, serde_yaml::to_string(&kc).expect("yaml"))
            .expect("write kubeconfig");
    }

    /// istiod of one cluster (started with [`ServerBuilder::istiod`]).
    #[track_caller]
    pub fn istiod(&self, cluster: &str) -> &Istiod {
        self.istiods
            .get(cluster)
            .unwrap_or_else(|| panic!("no istiod for {cluster}: start with .istiod()"))
    }

    /// What Envoy would receive, read by `xds-dump` as a sidecar in `namespace`, with more
    /// `xds-dump` flags after the defaults, which they override: the
    /// proxy's `--network`, `--type router`, `--labels`, `--ip`.
    pub fn xds_as(&self, cluster: &str, namespace: &str, flags: &[&str]) -> anyhow::Result<Value> {
        use anyhow::Context as _;
        let bin = realcluster_bin("xds-dump");
        let out = Command::new(&bin)
            .args([
                "--istiod",
                &self.istiod(cluster).grpc,
                "--namespace",
                namespace,
            ])
            .args([
                "--ip",
                "10.44.0.9",
                "--cluster-id",
                cluster,
                "--timeout",
                "20s",
            ])
            .args(flags)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "xds-dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Polls xDS until `want` holds (istiod debounces and pushes asynchronously); panics with
    /// the last dump after 60 s.
    #[track_caller]
    pub fn wait_xds(
        &self,
        cluster: &str,
        namespace: &str,
        what: &str,
        want: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_xds_as(cluster, namespace, &[], what, want)
    }

    /// [`Real::wait_xds`] with more `xds-dump` flags, as [`Real::xds_as`].
    #[track_caller]
    pub fn wait_xds_as(
        &self,
        cluster: &str,
        namespace: &str,
        flags: &[&str],
        what: &str,
        want: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.xds_as(cluster, namespace, flags) {
                Ok(d) if want(&d) => return d,
                Ok(d) => last = d,
                Err(e) => last = Value::String(format!("{e:#}")),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{cluster}: xDS never showed {what}; last dump:\n{last:#}");
    }

    /// Runs istioctl (built from the same module as istiod) against this server.
    pub fn istioctl(&self, args: &[&str]) -> super::Run {
        let out = Command::new(realcluster_bin("istioctl"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run istioctl: {e}"));
        out.into()
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        // EOF on stdin is mesh-testcluster's signal to stop its servers and clean up.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The clusters of an xDS dump whose name is `name`.
pub fn xds_cluster<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    dump["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// `address:port` of each endpoint of a cluster in an xDS dump, sorted.
pub fn xds_endpoints(dump: &Value, name: &str) -> Vec<String> {
    let mut v: Vec<String> = xds_cluster(dump, name)
        .and_then(|c| c["endpoints"].as_array())
        .into_iter()
        .flatten()
        .map(|e| format!("{}:{}", e["address"].as_str().unwrap_or(""), e["port"]))
        .collect();
    v.sort();
    v
}
