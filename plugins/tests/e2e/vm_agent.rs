//! Real tier only: Istio's own VM agent joins the mesh with nothing but the five files
//! `kubectl mesh-vm files` wrote. `pilot-agent` (from the same Istio module as istiod) is started
//! by Istio's own `istio-start.sh`, in a directory laid out as the VM's `/` (the agent and the
//! script use relative paths, `./etc/certs`, `./var/run/secrets/tokens`, ..., and run from `/` on
//! a VM), with our `hosts` appended to `/etc/hosts` in a private mount namespace.
//!
//! Envoy is not built by the real tier, so the agent runs as it does for proxyless gRPC
//! (`DISABLE_ENVOY=true`): it does its CA and xDS work, and the gRPC application's stream is
//! played by `xds-dump --bootstrap`, which reads the bootstrap the agent writes for such apps.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{plugin, realcluster_bin, xds_endpoints, Real, Run, Server, Tier};
use serde_json::Value;

/// What the test cluster runs: the mesh config, the injector values that name the cluster (the
/// agent's CA requests carry that ID, and istiod only knows `cluster1`), the VM's namespace with
/// the Service its workloads back, and a namespace for the sidecar that looks at them. No
/// east-west gateway Service: the test plays that gateway itself (see [`Gateway`]).
const INSTALL: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      discoveryAddress: istiod.istio-system.svc:15012
      meshId: mesh1
    rootNamespace: istio-system
    trustDomain: cluster.local
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"global":{"multiCluster":{"clusterName":"cluster1"},"meshID":"mesh1"}}'
  config: 'policy: enabled'
---
apiVersion: v1
kind: Namespace
metadata: {name: vm}
---
apiVersion: v1
kind: Service
metadata: {name: analytics, namespace: vm}
spec:
  selector: {app: analytics}
  ports:
  - {name: http, port: 8080, targetPort: 8080}
---
apiVersion: v1
kind: Namespace
metadata: {name: client}
"#;

/// The VM's address, as `--internal-ip` puts it in cluster.env (`ISTIO_SVC_IP`).
const VM_IP: &str = "10.128.0.13";
const SPIFFE: &str = "spiffe://cluster.local/ns/vm/sa/analytics";
const SERVICE_CLUSTER: &str = "outbound|8080||analytics.vm.svc.cluster.local";

/// The east-west gateway's pass-through to istiod's port 15012, as a TCP relay on a loopback
/// address of its own (any 127/8 address is local), so the VM reaches istiod exactly at
/// `hosts`' address and port 15012 while istiod itself listens on a port the harness picked.
struct Gateway {
    ip: String,
    /// Connections relayed so far: the VM reached istiod through `hosts` and port 15012.
    connections: Arc<AtomicUsize>,
}

impl Gateway {
    fn start(istiod: &str) -> Gateway {
        let seed = std::process::id();
        for attempt in 0..64u32 {
            let n = seed.wrapping_add(attempt.wrapping_mul(7919));
            let ip = format!("127.77.{}.{}", (n / 250) % 250, n % 250 + 1);
            let Ok(listener) = TcpListener::bind((ip.as_str(), 15012)) else {
                continue;
            };
            let to = istiod.to_string();
            let connections = Arc::new(AtomicUsize::new(0));
            let count = connections.clone();
            std::thread::spawn(move || {
                for down in listener.incoming().map_while(Result::ok) {
                    count.fetch_add(1, Ordering::SeqCst);
                    let to = to.clone();
                    std::thread::spawn(move || {
                        if let Ok(up) = TcpStream::connect(&to) {
                            relay(down, up);
                        }
                    });
                }
            });
            return Gateway { ip, connections };
        }
        panic!("no free 127.77.x.y:15012 for the gateway relay");
    }
}

fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    };
    let t = std::thread::spawn(move || pipe(a, b2));
    pipe(b, a2);
    let _ = t.join();
}

/// The VM's filesystem: our five files where Istio's VM guide puts them, and the operator's own
/// `sidecar.env` (which `istio-start.sh` sources before cluster.env) with what is local to this
/// machine: where the binaries are, no iptables, the agent as the current user, no Envoy.
struct VmRoot {
    root: PathBuf,
    hosts: PathBuf,
}

impl VmRoot {
    fn new(dir: &Path, files: &Path) -> VmRoot {
        let root = dir.join("vm-root");
        for (name, to) in [
            ("cluster.env", "var/lib/istio/envoy/cluster.env"),
            ("mesh.yaml", "etc/istio/config/mesh"),
            ("root-cert.pem", "etc/certs/root-cert.pem"),
            ("istio-token", "var/run/secrets/tokens/istio-token"),
        ] {
            let to = root.join(to);
            fs::create_dir_all(to.parent().expect("parent")).expect("VM directory");
            fs::copy(files.join(name), &to).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let bin = realcluster_bin("pilot-agent");
        let bin_dir = bin.parent().expect("bin dir");
        fs::create_dir_all(root.join("var/log/istio")).expect("log dir");
        fs::write(
            root.join("var/lib/istio/envoy/sidecar.env"),
            format!(
                "ISTIO_BIN_BASE={}\nISTIO_CUSTOM_IP_TABLES=true\nEXEC_USER=root\nDISABLE_ENVOY=true\n",
                bin_dir.display()
            ),
        )
        .expect("sidecar.env");
        // `hosts` is appended to the machine's /etc/hosts, as the guide says.
        let hosts = dir.join("etc-hosts");
        let mut text = fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&fs::read_to_string(files.join("hosts")).expect("hosts"));
        fs::write(&hosts, text).expect("etc-hosts");
        VmRoot { root, hosts }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("var/log/istio/agent.log")).unwrap_or_default()
    }
}

/// `istio-start.sh` running pilot-agent, in its own process group and mount namespace; stopped
/// (the whole group, by its id) when dropped, so a failing test leaves no agent behind.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(vm: &VmRoot) -> Agent {
        let start = realcluster_bin("../share/istio-start.sh");
        assert!(
            start.exists(),
            "{} is missing: run tests/realcluster/build",
            start.display()
        );
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(vm.path("var/log/istio/agent.log"))
            .expect("agent log");
        let child = Command::new("unshare")
            .args(["-m", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/hosts && cd "$2" && exec bash "$3""#)
            .arg("vm")
            .arg(&vm.hosts)
            .arg(&vm.root)
            .arg(&start)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("USER", "root")
            .env("HOME", &vm.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect(
                "start istio-start.sh under unshare -m (the real tier's agent test runs as root)",
            );
        Agent { child }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The script ran the agent as its child: make sure none of the group is left.
                self.signal("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

/// The proxyless gRPC app on the VM: `xds-dump --bootstrap`, holding its stream open through the
/// agent until dropped (stdin closed).
struct App {
    child: Child,
    stdin: Option<ChildStdin>,
    first: Value,
}

impl App {
    fn start(vm: &VmRoot) -> App {
        let bootstrap = vm.path("etc/istio/proxy/grpc-bootstrap.json");
        wait_for("the agent's gRPC bootstrap", || {
            bootstrap.exists().then_some(())
        });
        let mut child = Command::new(realcluster_bin("xds-dump"))
            .arg("--bootstrap")
            .arg(&bootstrap)
            .arg("--root")
            .arg(&vm.root)
            .args([
                "--target",
                "analytics.vm.svc.cluster.local:8080",
                "--timeout",
                "60s",
                "--hold",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xds-dump --bootstrap");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read xds-dump");
        if line.trim().is_empty() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            panic!(
                "the app got no xDS through the agent: {err}\nagent log:\n{}",
                vm.log()
            );
        }
        let first = serde_json::from_str(&line).expect("xds-dump JSON");
        App {
            child,
            stdin,
            first,
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Polls `f` until it gives a value (istiod and the agent work asynchronously); panics after
/// 120 s.
#[track_caller]
fn wait_for<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    wait_up_to(Duration::from_secs(120), what, f)
}

#[track_caller]
fn wait_up_to<T>(limit: Duration, what: &str, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits for the workload certificate the agent writes to `OUTPUT_CERTS` (`./etc/certs`, set by
/// istio-start.sh) and checks it: the group's identity, signed under the root we handed the VM.
#[track_caller]
fn assert_workload_cert(vm: &VmRoot, files: &Path) {
    let cert = vm.path("etc/certs/cert-chain.pem");
    let key = vm.path("etc/certs/key.pem");
    let ok = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if cert.exists() && key.exists() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    assert!(
        ok,
        "the agent wrote no workload certificate; its log:\n{}",
        vm.log()
    );
    let cert = cert.to_str().unwrap_or("");
    let san = openssl(&["x509", "-in", cert, "-noout", "-ext", "subjectAltName"]);
    assert!(san.contains(&format!("URI:{SPIFFE}")), "{san}");
    let root = files.join("root-cert.pem");
    let verify = openssl(&["verify", "-CAfile", root.to_str().unwrap_or(""), cert]);
    assert!(verify.trim_end().ends_with(": OK"), "{verify}");
}

fn vm(srv: &Server, args: &[&str]) -> Run {
    plugin(Some(srv), "vm", args)
}

fn workload_entries(srv: &Server) -> Vec<Value> {
    srv.list_json(
        "cluster1",
        "/apis/networking.istio.io/v1/namespaces/vm/workloadentries",
    )
}

fn recreate_service_account(real: &Real) {
    let (ok, _, err) = real.kubectl(
        "cluster1",
        &["delete", "serviceaccount", "analytics", "-n", "vm"],
        None,
    );
    assert!(ok, "delete ServiceAccount vm/analytics: {err}");
    let (ok, _, err) = real.kubectl(
        "cluster1",
        &["create", "serviceaccount", "analytics", "-n", "vm"],
        None,
    );
    assert!(ok, "create ServiceAccount vm/analytics: {err}");
}

/// Whether the API server authenticates `token` for istiod's CA (audience `istio-ca`), as the
/// TokenReview istiod's CA makes; None when the review itself fails.
fn token_review(real: &Real, token: &str) -> Option<bool> {
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token.trim(), "audiences": ["istio-ca"]},
    });
    let (ok, out, _) = real.kubectl(
        "cluster1",
        &["create", "-f", "-", "-o", "json"],
        Some(&review.to_string()),
    );
    let v: Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    Some(v["status"]["authenticated"] == true)
}

/// The whole journey of issue 16, part 3: certificate, connection on 15012, auto-registration,
/// `status`, the VM as an endpoint seen by another sidecar, and `refresh` giving the agent a
/// token it can get a certificate with again.
#[test]
fn istios_agent_joins_with_the_files() {
    if !Tier::Real.enabled() {
        return;
    }
    let srv = Server::builder(Tier::Real)
        .istiod()
        .seed_yaml(INSTALL)
        .start();
    let real = srv.real().expect("real tier");
    let gateway = Gateway::start(&real.istiod("cluster1").secure_grpc);

    vm(
        &srv,
        &[
            "group",
            "analytics",
            "-n",
            "vm",
            "-l",
            "app=analytics",
            "--ports",
            "http=8080",
            "-s",
            "analytics",
        ],
    )
    .ok();
    // istiod writes the root certificate into the namespace once it runs; `files` needs it.
    wait_for("istiod to write ConfigMap vm/istio-ca-root-cert", || {
        srv.get_json(
            "cluster1",
            "/api/v1/namespaces/vm/configmaps/istio-ca-root-cert",
        )
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = tmp.path().join("analytics");
    let out = files.to_str().unwrap_or("").to_string();
    let files_args = [
        "files",
        "analytics",
        "-n",
        "vm",
        "--out-dir",
        &out,
        "--autoregister",
        "--internal-ip",
        VM_IP,
        "--ingress-ip",
        &gateway.ip,
        "--token-duration",
        "10m",
    ];
    vm(&srv, &files_args).ok();
    assert_eq!(
        fs::read_to_string(files.join("hosts")).expect("hosts"),
        format!("{} istiod.istio-system.svc\n", gateway.ip)
    );

    // 1. The certificate: our token and root certificate, CA_ADDR istiod.istio-system.svc:15012.
    let vmroot = VmRoot::new(tmp.path(), &files);
    let agent = Agent::start(&vmroot);
    assert_workload_cert(&vmroot, &files);
    let log = vmroot.log();
    assert!(
        log.contains("CA Endpoint istiod.istio-system.svc:15012"),
        "{log}"
    );
    let ca_connections = gateway.connections.load(Ordering::SeqCst);
    assert!(ca_connections > 0, "the CA was not reached through hosts");
    let first_cert = fs::read_to_string(vmroot.path("etc/certs/cert-chain.pem")).expect("cert");

    // 2. xDS on 15012 through the agent, as the VM's proxyless gRPC app: istiod answers it.
    let app = App::start(&vmroot);
    assert!(
        app.first["node"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("sidecar~{VM_IP}~")),
        "{}",
        app.first
    );
    assert_eq!(
        app.first["listeners"],
        serde_json::json!(["analytics.vm.svc.cluster.local:8080"]),
        "{}",
        app.first
    );

    // The agent's own stream to istiod is a connection of its own, through the same relay.
    assert!(gateway.connections.load(Ordering::SeqCst) > ca_connections);

    // 3. ISTIO_META_AUTO_REGISTER_GROUP: istiod creates the WorkloadEntry on connect.
    let we = wait_for("istiod to auto-register the VM", || {
        workload_entries(&srv)
            .into_iter()
            .find(|w| w["metadata"]["annotations"]["istio.io/autoRegistrationGroup"] == "analytics")
    });
    assert_eq!(we["spec"]["address"], VM_IP, "{we:#}");
    assert_eq!(we["spec"]["serviceAccount"], "analytics", "{we:#}");
    assert_eq!(we["spec"]["labels"]["app"], "analytics", "{we:#}");
    let status = vm(&srv, &["status", "analytics", "-n", "vm"]).ok();
    let row = status
        .stdout
        .lines()
        .find(|l| l.contains(VM_IP))
        .unwrap_or_else(|| panic!("no row for {VM_IP}:\n{}", status.stdout));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // NAME ADDRESS HEALTHY CONNECTED MTLS POLICY AGE
    assert_eq!(cols.len(), 7, "{}", status.stdout);
    assert!(
        cols[3] != "<none>" && !cols[3].starts_with("no"),
        "CONNECTED: {}",
        status.stdout
    );

    // 4. A sidecar elsewhere sees the VM behind the group's Service.
    real.wait_xds(
        "cluster1",
        "client",
        "the VM as an endpoint of Service vm/analytics",
        |d| xds_endpoints(d, SERVICE_CLUSTER) == [format!("{VM_IP}:8080")],
    );

    // 5. The token stops working. The API server grants no token shorter than 10 minutes
    // (TokenRequest's minimum), so by default it is revoked the way Kubernetes revokes one
    // instead of waiting that out: the ServiceAccount is recreated, and a token of the old one
    // fails the TokenReview istiod's CA makes, as an expired one does. MESH_VM_AGENT_EXPIRY=1
    // waits for the real expiry instead (about 11 minutes: 10 plus the API server's leeway).
    // The VM restarts without its certificate (as after a long outage), so only the token can
    // authenticate it.
    drop(app);
    drop(agent);
    let old_token = fs::read_to_string(files.join("istio-token")).expect("istio-token");
    let expire = std::env::var_os("MESH_VM_AGENT_EXPIRY").is_some_and(|v| v == "1");
    if !expire {
        recreate_service_account(real);
    }
    // The API server caches a successful review for 10 s: wait until it refuses the old token.
    wait_up_to(
        Duration::from_secs(if expire { 15 * 60 } else { 120 }),
        "the API server to refuse the old token",
        || (token_review(real, &old_token) == Some(false)).then_some(()),
    );
    for f in ["cert-chain.pem", "key.pem"] {
        fs::remove_file(vmroot.path(&format!("etc/certs/{f}"))).expect("remove the VM's cert");
    }
    let before = vmroot.log().len();
    let agent = Agent::start(&vmroot);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !vmroot.log()[before..].contains("failed to get certificate") {
        assert!(
            Instant::now() < deadline,
            "the agent was never refused a certificate; its log:\n{}",
            &vmroot.log()[before..]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let refusal = vmroot.log()[before..].to_string();
    assert!(
        refusal.contains("code = Unauthenticated desc = request authenticate failure"),
        "{refusal}"
    );
    assert!(!vmroot.path("etc/certs/cert-chain.pem").exists());

    let refreshed = vm(
        &srv,
        &[
            "refresh",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            &out,
            "--ingress-ip",
            &gateway.ip,
        ],
    )
    .ok();
    assert!(
        refreshed.stdout.starts_with("istio-token renewed: "),
        "{}",
        refreshed.stdout
    );
    if expire {
        assert!(
            refreshed.stdout.contains("; the old one expired "),
            "{}",
            refreshed.stdout
        );
    }
    assert!(
        refreshed
            .stdout
            .contains(&format!("hosts unchanged: {} istiod", gateway.ip)),
        "{}",
        refreshed.stdout
    );
    // The operator copies the new token to the VM; the running agent reads it on its next try.
    let token = vmroot.path("var/run/secrets/tokens/istio-token");
    let tmp_token = vmroot.path("var/run/secrets/tokens/.istio-token.new");
    fs::copy(files.join("istio-token"), &tmp_token).expect("copy the new token");
    fs::rename(&tmp_token, &token).expect("install the new token");
    assert_workload_cert(&vmroot, &files);
    let renewed = fs::read_to_string(vmroot.path("etc/certs/cert-chain.pem")).expect("cert");
    assert_ne!(renewed, first_cert, "a new certificate, not the old one");
    drop(agent);
}
