//! The real tier's own contract: `mesh-testcluster` reports the real version, runs one cluster
//! per name, and on SIGTERM or stdin EOF stops every server it started, leaving no process and
//! no listening port behind.

use crate::common::{realcluster_bin, Tier};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `mesh-testcluster` for two clusters; returns the child, the kubeconfig's server ports
/// and the work directory, once it printed `ready`.
fn start(dir: &std::path::Path) -> (std::process::Child, Vec<u16>) {
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(realcluster_bin("mesh-testcluster"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--clusters", "one,two", "--work-dir"])
        .arg(dir.join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tests/realcluster/build first");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(ready, format!("ready {}", kubeconfig.display()));
    let kc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&kubeconfig).expect("kubeconfig"))
            .expect("yaml");
    let ports = kc["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["cluster"]["server"].as_str())
        .filter_map(|s| s.rsplit(':').next()?.parse().ok())
        .collect();
    (child, ports)
}

fn stopped_cleanly(mut child: std::process::Child, ports: &[u16], dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "mesh-testcluster did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit {status}");
    for p in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *p)).is_err(),
            "port {p} still listening"
        );
    }
    // No child (kube-apiserver, etcd) outlives it: none has the work directory in its argv.
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let marker = dir.join("state").display().to_string();
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(&marker))
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn real_servers_report_their_version_and_stop_on_sigterm_and_on_eof() {
    if !Tier::Real.enabled() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, ports) = start(dir.path());
    assert_eq!(ports.len(), 2, "one server per cluster");
    let version = Command::new("kubectl")
        .env("KUBECONFIG", dir.path().join("kubeconfig"))
        .args(["--context", "two", "version", "-o", "json"])
        .output()
        .expect("kubectl");
    let v: Value = serde_json::from_slice(&version.stdout).expect("json");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.36.1", "{v}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    stopped_cleanly(child, &ports, dir.path());

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, ports) = start(dir.path());
    drop(child.stdin.take());
    stopped_cleanly(child, &ports, dir.path());
}
