//! Test harness shared by the end-to-end suites: a kube-emu server, and the plugins and the real
//! kubectl run against it as separate processes, exactly as a user runs them.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use kube_emu::{Emu, Fault, FaultAction, LoggedRequest};

pub mod fixtures;
#[macro_use]
mod tier;
pub use tier::*;

/// What a plugin or kubectl run is pointed at: a kubeconfig and a private HOME.
pub trait Target {
    fn kubeconfig(&self) -> &Path;
    fn home(&self) -> &Path;
}

impl Target for Emu {
    fn kubeconfig(&self) -> &Path {
        Emu::kubeconfig(self)
    }
    fn home(&self) -> &Path {
        Emu::home(self)
    }
}

impl Target for Server {
    fn kubeconfig(&self) -> &Path {
        Server::kubeconfig(self)
    }
    fn home(&self) -> &Path {
        Server::home(self)
    }
}

/// Directory holding the built plugin binaries (and kubectl_complete-* helpers).
pub fn bin_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_kubectl-mesh_register"));
    exe.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Path of one plugin binary, e.g. `bin("register")`.
pub fn bin(plugin: &str) -> PathBuf {
    bin_dir().join(format!("kubectl-mesh_{plugin}"))
}

/// The result of one process run, with text streams.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics with both streams when the exit code is not `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }
}

fn base_command(program: &Path, emu: Option<&dyn Target>) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null());
    cmd.env_remove("KUBECONFIG");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir()];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths).unwrap_or_default());
    if let Some(emu) = emu {
        cmd.env("KUBECONFIG", emu.kubeconfig());
        cmd.env("HOME", emu.home());
    } else {
        cmd.env(
            "HOME",
            std::env::temp_dir().join("kubectl-mesh-tests-no-home"),
        );
    }
    cmd
}

/// Starts a plugin binary without waiting for it, stdout and stderr piped (for concurrent runs
/// and for signals sent mid-run).
pub fn spawn_plugin(target: &dyn Target, plugin: &str, args: &[&str]) -> std::process::Child {
    base_command(&bin(plugin), Some(target))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start plugin {plugin}: {e}"))
}

/// Runs a plugin binary directly (`kubectl-mesh_<plugin> args...`) against the emulator.
pub fn plugin(emu: Option<&dyn Target>, plugin: &str, args: &[&str]) -> Run {
    let out = base_command(&bin(plugin), emu)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run plugin {plugin}: {e}"));
    out.into()
}

/// Runs the real kubectl with the emulator's kubeconfig and a private HOME, so `kubectl mesh-x`
/// finds the freshly built plugins first on PATH.
pub fn kubectl(emu: &dyn Target, args: &[&str]) -> Run {
    let out = base_command(Path::new("kubectl"), Some(emu))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
    out.into()
}

/// Requests a command sent, without discovery and version probes.
pub fn api_requests(emu: &Emu, cluster: &str) -> Vec<LoggedRequest> {
    emu.requests(cluster)
        .into_iter()
        .filter(|r| !r.is_discovery())
        .collect()
}

/// Writes requests (anything but GET) a command sent.
pub fn writes(emu: &Emu, cluster: &str) -> Vec<LoggedRequest> {
    emu.requests(cluster)
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect()
}

/// A default install: the `istio` ConfigMap as `istioctl install` writes it (plus a mesh ID),
/// the injector values of a multi-cluster install, the root certificate in istio-system and in
/// the VM namespace, the east-west gateway with a load-balancer IP, and istiod.
pub const ISTIO: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      discoveryAddress: istiod.istio-system.svc:15012
      meshId: mesh1
      proxyMetadata: {}
      tracing:
        zipkin:
          address: zipkin.istio-system:9411
    defaultProviders:
      metrics:
      - prometheus
    enablePrometheusMerge: true
    rootNamespace: istio-system
    trustDomain: cluster.local
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"global":{"multiCluster":{"clusterName":"cluster1","enabled":true},"network":"network1","meshID":"mesh1"}}'
  config: 'policy: enabled'
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-ca-root-cert, namespace: istio-system}
data:
  root-cert.pem: |
    -----BEGIN CERTIFICATE-----
    MIIBfakeROOTcertificateFORtests
    -----END CERTIFICATE-----
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-ca-root-cert, namespace: vm}
data:
  root-cert.pem: |
    -----BEGIN CERTIFICATE-----
    MIIBfakeROOTcertificateFORtests
    -----END CERTIFICATE-----
---
apiVersion: v1
kind: Service
metadata: {name: istio-eastwestgateway, namespace: istio-system}
spec:
  type: LoadBalancer
  selector: {istio: eastwestgateway}
  ports:
  - {name: tls-istiod, port: 15012, targetPort: 15012}
  - {name: tls-webhook, port: 15017, targetPort: 15017}
status:
  loadBalancer:
    ingress:
    - ip: 203.0.113.10
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: istio-system}
spec:
  selector:
    matchLabels: {app: istiod}
  template:
    metadata:
      labels: {app: istiod}
    spec:
      containers:
      - name: discovery
        image: docker.io/istio/pilot:1.24.0
        env:
        - {name: CLUSTER_ID, value: from-istiod}
"#;
