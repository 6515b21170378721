//! The defects a review reproduced (issue "Hardening"), each as a test that failed before its
//! fix: a shell command hidden in a cluster.env key, registrations lost to a race, durations
//! that abort the process, addresses no VM can have, 5xx answers after a stored write, and a
//! list item that is not an object.

use crate::common;

use crate::common::fixtures::GATEWAY_CLUSTER1;
use crate::common::{kubectl, plugin, Emu, Fault, FaultAction, Server, Tier, ISTIO};
use std::process::{Command, Stdio};

const SE_PATH: &str =
    "/apis/networking.istio.io/v1/namespaces/default/serviceentries/mesh-expansion-racy";
const EP_PATH: &str = "/api/v1/namespaces/default/endpoints/racy";
const SVC_PATH: &str = "/api/v1/namespaces/default/services/racy";

/// Runs `kubectl-mesh_register ARGS` for every ARGS at once, as VMs of one autoscaling group
/// booting together do; panics unless every run exits 0.
fn all_at_once(srv: &Server, runs: Vec<Vec<String>>) {
    let children: Vec<_> = runs
        .iter()
        .map(|args| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::spawn_plugin(srv, "register", &args)
        })
        .collect();
    for (args, child) in runs.iter().zip(children) {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn addresses(srv: &Server, path: &str) -> Vec<String> {
    let obj = srv.get_json("cluster1", path).unwrap_or_default();
    let mut v: Vec<String> = if path.contains("/endpoints/") {
        obj["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(String::from))
            .collect()
    } else {
        obj["spec"]["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["address"].as_str().map(String::from))
            .collect()
    };
    v.sort();
    v
}

fn ips(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|n| format!("10.0.0.{n}")).collect();
    v.sort();
    v
}

fn concurrent_register_and_delete(tier: Tier, mode: &str, path: &str) {
    let srv = Server::builder(tier).start();
    let with_mode = |mut a: Vec<String>| {
        a.extend(["--mode".to_string(), mode.to_string()]);
        a
    };
    let registers = (1..=32)
        .map(|n| {
            with_mode(vec![
                "racy".into(),
                format!("10.0.0.{n}"),
                "grpc:3550".into(),
            ])
        })
        .collect();
    all_at_once(&srv, registers);
    assert_eq!(addresses(&srv, path), ips(1..=32), "after 32 registrations");
    let deletes = (1..=16)
        .map(|n| {
            with_mode(vec![
                "--delete".into(),
                "racy".into(),
                format!("10.0.0.{n}"),
            ])
        })
        .map(|mut a| {
            // --delete finds the address in whichever mode holds it.
            a.truncate(3);
            a
        })
        .collect();
    all_at_once(&srv, deletes);
    assert_eq!(addresses(&srv, path), ips(17..=32), "after 16 deletes");
    assert!(srv.get_json("cluster1", SVC_PATH).is_some());
}

on_both_tiers! {
    /// Read-modify-write of an endpoint list is a compare-and-swap: 32 VMs registering at once
    /// and 16 leaving at once lose no address (before the fix, 8 at once left 4).
    fn concurrent_registrations_keep_every_address_in_a_service_entry(tier) {
        concurrent_register_and_delete(tier, "serviceentry", SE_PATH);
    }

    fn concurrent_registrations_keep_every_address_in_endpoints(tier) {
        concurrent_register_and_delete(tier, "endpoints", EP_PATH);
    }

    /// `istio-start.sh` sources cluster.env as root: a proxyMetadata key holding a command must
    /// be refused with its source named, and nothing written.
    fn a_cluster_env_key_that_is_a_shell_command_writes_nothing(tier) {
        let srv = Server::builder(tier).seed_yaml(ISTIO).start();
        let annotation = r#"proxy.istio.io/config=proxyMetadata: {"A=1;touch /tmp/pwned;B": x}"#;
        kubectl(
            &srv,
            &["mesh-vm", "group", "analytics", "-n", "vm", "--ports", "http=8080", "-a", annotation],
        )
        .ok();
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("vm");
        let run = kubectl(
            &srv,
            &["mesh-vm", "files", "analytics", "-n", "vm", "--out-dir", &out.to_string_lossy()],
        );
        assert_ne!(run.code, 0, "{}", run.stderr);
        // Progress notes (the cluster ID and its source) may come first; one error line.
        assert_eq!(run.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(r#""A=1;touch /tmp/pwned;B""#)
                && run.stderr.contains("proxy.istio.io/config"),
            "{}",
            run.stderr
        );
        let written: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(written.is_empty(), "wrote {written:?}");

        // The same key in the mesh config is refused too, naming the mesh config.
        let mesh = ISTIO.replace("      proxyMetadata: {}", "      proxyMetadata: {\"X;reboot\": y}");
        let srv = Server::builder(tier).seed_yaml(&mesh).start();
        kubectl(&srv, &["mesh-vm", "group", "analytics", "-n", "vm", "--ports", "http=8080"]).ok();
        let run = kubectl(
            &srv,
            &["mesh-vm", "files", "analytics", "-n", "vm", "--out-dir", &out.to_string_lossy()],
        );
        assert_ne!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stderr.contains(r#""X;reboot""#) && run.stderr.contains("the mesh config"),
            "{}",
            run.stderr
        );
        assert!(!out.join("cluster.env").exists());
    }

    /// Unspecified, loopback, multicast and broadcast addresses are usage errors; link-local is
    /// a warning; an IPv4-mapped IPv6 address is written as the IPv4 address.
    fn addresses_no_vm_can_have_are_refused(tier) {
        let srv = Server::builder(tier).start();
        for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "::", "::1", "ff02::1"] {
            let run = plugin(Some(&srv), "register", &["svc", bad, "grpc:3550"]);
            assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
            assert_eq!(run.stderr.lines().count(), 1, "{bad}: {}", run.stderr);
            assert!(run.stderr.contains("IP") && run.stderr.contains(bad), "{bad}: {}", run.stderr);
        }
        assert!(srv
            .get_json("cluster1", "/api/v1/namespaces/default/services/svc")
            .is_none());
        let run = plugin(Some(&srv), "register", &["svc", "fe80::1", "grpc:3550"]).ok();
        assert!(run.stderr.contains("Warning: fe80::1 is link-local"), "{}", run.stderr);
        plugin(Some(&srv), "register", &["svc", "::ffff:10.0.0.1", "grpc:3550"]).ok();
        let se = srv
            .get_json(
                "cluster1",
                "/apis/networking.istio.io/v1/namespaces/default/serviceentries/mesh-expansion-svc",
            )
            .expect("se");
        let addrs: Vec<&str> = se["spec"]["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .filter_map(|e| e["address"].as_str())
            .collect();
        assert_eq!(addrs, vec!["fe80::1", "10.0.0.1"]);
    }
}

/// A duration past a year overflowed a deadline and aborted the process (panic = "abort"), for
/// --interval after step 1 was already written. Now: exit 2, one line, the range, no request.
#[test]
fn huge_durations_exit_2_with_the_range_before_any_request() {
    let emu = Emu::builder().seed_yaml(ISTIO).start().expect("emu");
    let huge = "9999999999999999999";
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("register", vec!["--list", "--request-timeout", huge]),
        (
            "register",
            vec!["svc", "10.0.0.1", "grpc:3550", "--request-timeout", huge],
        ),
        (
            "vm",
            vec![
                "files",
                "analytics",
                "-n",
                "vm",
                "--out-dir",
                "/tmp/x",
                "--wait",
                huge,
            ],
        ),
        (
            "split",
            vec!["80/20", "--steps", "10,50", "--interval", huge],
        ),
        (
            "split",
            vec!["80/20", "--steps", "10,50", "--interval", "8761h"],
        ),
        (
            "link",
            vec![
                "--from",
                "cluster1",
                "--to",
                "cluster1",
                "--all",
                "--request-timeout",
                "1000000000000000ms",
            ],
        ),
    ];
    for (p, args) in cases {
        emu.clear_requests();
        let run = plugin(Some(&emu), p, &args);
        let label = format!("mesh-{p} {}", args.join(" "));
        assert_eq!(run.code, 2, "{label}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{label}: {}", run.stderr);
        assert!(run.stderr.contains("8760h"), "{label}: {}", run.stderr);
        assert!(emu.requests("cluster1").is_empty(), "{label} sent requests");
    }
}

/// A 5xx can come after the server stored the write; it is in doubt like a dropped connection,
/// so the run is rolled back to the state before, never left half-written.
#[test]
fn a_5xx_after_the_write_was_stored_is_rolled_back() {
    for code in [500, 504] {
        let emu = Emu::builder().start().expect("emu");
        emu.inject(
            "cluster1",
            Fault::new(
                "PATCH",
                "serviceentries",
                FaultAction::StoreThenStatus(code),
            ),
        );
        let run = plugin(Some(&emu), "register", &["racy", "10.0.0.1", "grpc:3550"]);
        let (se, svc) = (
            emu.get_json("cluster1", SE_PATH).is_some(),
            emu.get_json("cluster1", SVC_PATH).is_some(),
        );
        match run.code {
            // kube-rs resends on a 504 by itself; the second apply finds the entry stored.
            0 => assert!(
                code == 504 && se && svc,
                "{code}: exit 0 without the complete state"
            ),
            1 => {
                assert!(
                    run.stderr.contains("cannot apply ServiceEntry"),
                    "{}",
                    run.stderr
                );
                assert!(
                    !se && !svc,
                    "{code}: left half-written (entry {se}, Service {svc})"
                );
            }
            other => panic!("{code}: exit {other}: {}", run.stderr),
        }
        assert!(
            code != 500 || run.code == 1,
            "a 500 is never retried: {}",
            run.stderr
        );
    }
}

/// A list whose item is not an object (a broken server or proxy) is an error, not a panic.
#[test]
fn a_list_item_that_is_not_an_object_is_an_error() {
    let emu = Emu::builder().start().expect("emu");
    emu.inject(
        "cluster1",
        Fault::new(
            "GET",
            "serviceentries",
            FaultAction::Body(
                r#"{"kind":"List","apiVersion":"v1","metadata":{},"items":[42]}"#.into(),
            ),
        ),
    );
    let run = plugin(Some(&emu), "register", &["--list"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stderr.contains("not an object"), "{}", run.stderr);
}

/// A failed mesh-link run gives its addresses back; when that empties the ledger it is deleted,
/// but only as it was read: an address another run reserved meanwhile stays reserved.
#[test]
fn releasing_addresses_never_wipes_a_reservation_made_meanwhile() {
    const LEDGER: &str = "/api/v1/namespaces/istio-system/configmaps/kubectl-mesh-addresses";
    let seed = format!(
        "{ISTIO}---\n{GATEWAY_CLUSTER1}---\n{}",
        r#"apiVersion: v1
kind: Service
metadata: {name: adservice, namespace: default, annotations: {kube-emu/cluster: cluster1}}
spec: {ports: [{name: grpc, port: 9555}]}
"#
    );
    let emu = Emu::builder()
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed)
        .start()
        .expect("emu");
    emu.inject(
        "cluster2",
        Fault::new("PATCH", "serviceentries", FaultAction::Status(403)),
    );
    emu.inject(
        "cluster2",
        Fault::new(
            "DELETE",
            "configmaps/kubectl-mesh-addresses",
            FaultAction::Delay(std::time::Duration::from_millis(1500)),
        ),
    );
    let run = std::thread::scope(|s| {
        let link = s.spawn(|| {
            plugin(
                Some(&emu),
                "link",
                &["--from", "cluster1", "--to", "cluster2", "adservice"],
            )
        });
        // Once the failed run has read the ledger to give its address back, and while its
        // delete is on the wire, another run reserves an address.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let reqs = emu.requests("cluster2");
            let failed = reqs
                .iter()
                .position(|r| r.method == "PATCH" && r.status == 403);
            let reread = failed.is_some_and(|i| {
                reqs[i..]
                    .iter()
                    .any(|r| r.method == "GET" && r.path == LEDGER)
            });
            if reread {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{reqs:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut ledger = emu.get_json("cluster2", LEDGER).expect("ledger");
        ledger["data"]["legacy.other.global"] = serde_json::json!("240.0.0.9");
        emu.apply_yaml("cluster2", &serde_json::to_string(&ledger).expect("json"))
            .expect("reserve");
        link.join().expect("link run")
    });
    assert_eq!(run.code, 1, "{}", run.stderr);
    let ledger = emu
        .get_json("cluster2", LEDGER)
        .expect("the ledger must stay");
    assert_eq!(
        ledger["data"],
        serde_json::json!({"legacy.other.global": "240.0.0.9"}),
        "the failed run's address is back and the other reservation kept"
    );
}

/// The YAML parser quotes the source lines around a fault; in a kubeconfig those hold tokens
/// and passwords. A malformed kubeconfig is exit 2 with the line and column only.
#[test]
fn a_malformed_kubeconfig_error_never_shows_its_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: SUPERSECRETTOKEN\n    password: [unclosed\n",
    )
    .expect("write");
    for p in ["register", "vm", "link", "split"] {
        let args: &[&str] = match p {
            "register" => &["--list"],
            "vm" => &["status", "analytics"],
            "link" => &["--list", "--to", "c"],
            _ => &["status"],
        };
        let run = Command::new(common::bin(p))
            .args(args)
            .env("KUBECONFIG", &path)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "mesh-{p}: {err}");
        assert!(
            !err.contains("SUPERSECRET"),
            "mesh-{p} printed the token: {err}"
        );
        assert!(err.contains("line 6 column"), "mesh-{p}: {err}");
    }
}

/// A server that accepts connections and never answers (#18 item 5): without
/// `--request-timeout`, every plugin gives up after kubectl's discovery timeout and says so,
/// instead of hanging for minutes. The four plugins run at once, over plain HTTP and TLS.
#[test]
fn a_server_that_never_answers_times_out_by_default() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.extend(conn.ok());
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut children = Vec::new();
    for scheme in ["http", "https"] {
        let path = dir.path().join(scheme);
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Config\ncurrent-context: h\nclusters:\n- name: h\n  cluster: {{server: '{scheme}://127.0.0.1:{port}', insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: HANGINGTOKEN}}\ncontexts:\n- name: h\n  context: {{cluster: h, user: u}}\n"),
        )
        .expect("write");
        for (p, args) in [
            ("register", &["--list"][..]),
            ("vm", &["status", "analytics"][..]),
            ("link", &["--list", "--to", "h"][..]),
            ("split", &["status"][..]),
        ] {
            let child = Command::new(common::bin(p))
                .args(args)
                .env("KUBECONFIG", &path)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            children.push((format!("{scheme} mesh-{p}"), child));
        }
    }
    let started = std::time::Instant::now();
    for (what, child) in children {
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("no answer within 32s, the default request timeout (--request-timeout sets another, 0 none)"),
            "{what}: {err}"
        );
        assert!(err.contains("in context \"h\""), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(!err.contains("HANGINGTOKEN"), "{what}: {err}");
    }
    // Not a speed check: a hang would be kube's five-minute read timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
}
