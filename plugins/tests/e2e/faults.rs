//! Fault injection for every command that writes: for each request index of the command, the
//! server fails exactly that request (500, 409, a reset connection, or an answer stalled beyond
//! `--request-timeout` after the change was stored). Each time the command must exit with a
//! failure code and one `error:` line naming the verb and the object, or succeed; and the
//! cluster must end either exactly as it was or exactly as a clean run leaves it.

use std::path::Path;
use std::time::Duration;

use crate::common::fixtures::MIGRATION;
use crate::common::{plugin, Emu, Fault, FaultAction, Run, ISTIO};
use serde_json::{json, Value};

struct Case {
    plugin: &'static str,
    clusters: &'static [&'static str],
    seed: &'static str,
    args: &'static [&'static str],
    /// API paths (cluster, path) whose objects make up the state to compare.
    watch: &'static [(&'static str, &'static str)],
    /// Exit codes a failed run may give (besides 0).
    failure_codes: &'static [i32],
    /// Commands run first (they must succeed) to reach the state the command starts from.
    prepare: &'static [&'static [&'static str]],
}

/// The parts of an object a command is responsible for; server bookkeeping is left out.
fn normalize(v: Value) -> Value {
    let mut out = json!({});
    for key in ["spec", "data", "subsets"] {
        if let Some(x) = v.get(key) {
            out[key] = x.clone();
        }
    }
    // A Secret's token is minted anew by every run: runs compare equal on its keys. That the
    // remote secret holds the source's token is link_remote.rs's test.
    if v["kind"] == "Secret" {
        if let Some(data) = out.get_mut("data").and_then(Value::as_object_mut) {
            for value in data.values_mut() {
                *value = json!("<set>");
            }
        }
    }
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        for k in [
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "internalTrafficPolicy",
            "sessionAffinity",
            "type",
        ] {
            spec.remove(k);
        }
    }
    for key in ["labels", "annotations"] {
        if let Some(x) = v["metadata"].get(key) {
            out[key] = x.clone();
        }
    }
    // mesh-split's change ID names the run (its time and process): every run has its own, so
    // runs compare equal without it. That one run writes one ID everywhere is split.rs's test.
    let previous = "mesh.kubectl.io/previous-weights";
    if let Some(raw) = out["annotations"][previous].as_str() {
        if let Ok(mut p) = serde_json::from_str::<Value>(raw) {
            if let Some(m) = p.as_object_mut() {
                m.remove("change");
            }
            out["annotations"][previous] = json!(p.to_string());
        }
    }
    out
}

fn state(emu: &Emu, case: &Case) -> Vec<Option<Value>> {
    case.watch
        .iter()
        .map(|(c, p)| emu.get_json(c, p).map(normalize))
        .collect()
}

fn start(case: &Case) -> Emu {
    let emu = Emu::builder()
        .clusters(case.clusters)
        .seed_yaml(case.seed)
        .start()
        .expect("emu");
    for args in case.prepare {
        let r = plugin(Some(&emu), case.plugin, args);
        assert_eq!(r.code, 0, "preparing with {args:?}: {}", r.stderr);
    }
    emu.clear_requests();
    emu
}

fn run(emu: &Emu, case: &Case, extra: &[&str]) -> Run {
    let mut args: Vec<&str> = case.args.to_vec();
    args.extend_from_slice(extra);
    plugin(Some(emu), case.plugin, &args)
}

/// Whether a failed run's output says, for every cluster, that its write landed.
fn reports_every_cluster_written(case: &Case, r: &Run) -> bool {
    let text = format!("{}{}", r.stdout, r.stderr);
    case.clusters.len() > 1
        && case.clusters.iter().all(|c| {
            text.lines().any(|l| {
                l.starts_with(&format!("{c}: "))
                    && (l.ends_with(" configured") || l.ends_with(" created"))
            })
        })
}

fn sweep(case: &Case) {
    // A clean run tells how many requests each cluster sees and what the new state is.
    let emu = start(case);
    let before = state(&emu, case);
    emu.clear_requests();
    let clean = run(&emu, case, &[]);
    assert_eq!(clean.code, 0, "clean run failed: {}", clean.stderr);
    let after = state(&emu, case);
    assert_ne!(before, after, "the command must change something");
    let counts: Vec<(&str, usize)> = case
        .clusters
        .iter()
        .map(|c| (*c, emu.requests(c).len()))
        .collect();
    drop(emu);

    let actions = [
        FaultAction::Status(500),
        FaultAction::Status(409),
        FaultAction::Reset,
        FaultAction::StallAfter(Duration::from_millis(4000)),
        // What etcd timing out after the write does: stored, then a 500.
        FaultAction::StoreThenStatus(500),
    ];
    let expected_runs: usize = counts.iter().map(|(_, n)| n * actions.len()).sum();
    let mut runs = 0;
    let mut failures = 0;
    for (cluster, n) in counts {
        for i in 1..=n {
            for action in &actions {
                let emu = start(case);
                emu.inject(
                    cluster,
                    Fault {
                        method: None,
                        path_contains: None,
                        nth: i,
                        action: action.clone(),
                    },
                );
                let r = run(&emu, case, &["--request-timeout=2s"]);
                let label = format!(
                    "{} {:?}: request {i} of {n} in {cluster} fails with {action:?}",
                    case.plugin, case.args
                );
                assert!(!r.stderr.contains("panicked"), "{label}: {}", r.stderr);
                if r.code != 0 {
                    assert!(
                        case.failure_codes.contains(&r.code),
                        "{label}: exit {}\n{}",
                        r.code,
                        r.stderr
                    );
                    let first = r
                        .stderr
                        .lines()
                        .find(|l| l.starts_with("error: "))
                        .unwrap_or_default();
                    assert!(
                        first.contains("cannot "),
                        "{label}: the message must name the verb and object: {}",
                        r.stderr
                    );
                }
                // Exit 0 promises the complete state; any other exit, the state before.
                let now = state(&emu, case);
                if r.code == 0 {
                    assert!(
                        now == after,
                        "{label}: exit 0 without the complete state\n{}\nstate: {now:#?}",
                        r.stderr
                    );
                } else if now == after && reports_every_cluster_written(case, &r) {
                    // mesh-split's read-back failed after every write landed: not the state
                    // before, but the state it reports, cluster by cluster.
                    failures += 1;
                } else {
                    failures += 1;
                    assert!(
                        now == before,
                        "{label}: exit {} but not the state before\n{}\nstate: {now:#?}",
                        r.code,
                        r.stderr
                    );
                }
                runs += 1;
            }
        }
    }
    assert_eq!(
        runs, expected_runs,
        "every request of the clean run, with every fault"
    );
    // A sweep whose faults never make the command fail proves nothing.
    assert!(failures > 0, "no injected fault made {} fail", case.plugin);
}

const REGISTER_WATCH: &[(&str, &str)] = &[
    ("cluster1", "/api/v1/namespaces/default/services/productcatalog"),
    ("cluster1", "/apis/networking.istio.io/v1/namespaces/default/serviceentries/mesh-expansion-productcatalog"),
    ("cluster1", "/apis/networking.istio.io/v1/namespaces/default/workloadentries/productcatalog-10-0-0-1"),
    ("cluster1", "/apis/networking.istio.io/v1/namespaces/default/workloadentries/productcatalog-10-0-0-2"),
    ("cluster1", "/api/v1/namespaces/default/endpoints/productcatalog"),
];

#[test]
fn register_serviceentry_survives_every_fault() {
    sweep(&Case {
        plugin: "register",
        clusters: &["cluster1"],
        seed: "",
        args: &["productcatalog", "10.0.0.1", "grpc:3550"],
        watch: REGISTER_WATCH,
        failure_codes: &[1],
        prepare: &[],
    });
}

/// Registering in two clusters (#16 part 4): both hold the registration, or neither does (exit
/// 1 before any write, exit 4 after cluster1 was put back).
#[test]
fn register_across_two_clusters_survives_every_fault() {
    sweep(&Case {
        plugin: "register",
        clusters: &["cluster1", "cluster2"],
        seed: "",
        args: &[
            "productcatalog",
            "10.0.0.1",
            "grpc:3550",
            "--context",
            "cluster1",
            "--context",
            "cluster2",
        ],
        watch: &[
            ("cluster1", "/api/v1/namespaces/default/services/productcatalog"),
            ("cluster1", "/apis/networking.istio.io/v1/namespaces/default/serviceentries/mesh-expansion-productcatalog"),
            ("cluster2", "/api/v1/namespaces/default/services/productcatalog"),
            ("cluster2", "/apis/networking.istio.io/v1/namespaces/default/serviceentries/mesh-expansion-productcatalog"),
        ],
        failure_codes: &[1, 4],
        prepare: &[],
    });
}

const REGISTERED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: productcatalog, namespace: default, labels: {app: productcatalog, app.kubernetes.io/managed-by: kubectl-mesh}}
spec: {selector: {app: productcatalog}, ports: [{name: grpc, port: 3550, targetPort: 3550, protocol: TCP}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productcatalog-10-0-0-1, namespace: default, labels: {app: productcatalog, app.kubernetes.io/managed-by: kubectl-mesh}}
spec: {address: 10.0.0.1, labels: {app: productcatalog}, serviceAccount: default, ports: {grpc: 3550}}
"#;

#[test]
fn register_workloadentry_second_ip_survives_every_fault() {
    sweep(&Case {
        plugin: "register",
        clusters: &["cluster1"],
        seed: REGISTERED,
        args: &[
            "productcatalog",
            "10.0.0.1,10.0.0.2",
            "grpc:3550",
            "--mode",
            "workloadentry",
        ],
        watch: REGISTER_WATCH,
        failure_codes: &[1],
        prepare: &[],
    });
}

#[test]
fn deregister_last_ip_survives_every_fault() {
    sweep(&Case {
        plugin: "register",
        clusters: &["cluster1"],
        seed: REGISTERED,
        args: &["--delete", "productcatalog", "10.0.0.1"],
        watch: REGISTER_WATCH,
        failure_codes: &[1],
        prepare: &[],
    });
}

#[test]
fn register_endpoints_survives_every_fault() {
    sweep(&Case {
        plugin: "register",
        clusters: &["cluster1"],
        seed: "",
        args: &[
            "productcatalog",
            "10.0.0.1",
            "http:8080",
            "--mode",
            "endpoints",
        ],
        watch: REGISTER_WATCH,
        failure_codes: &[1],
        prepare: &[],
    });
}

#[test]
fn vm_group_survives_every_fault() {
    sweep(&Case {
        plugin: "vm",
        clusters: &["cluster1"],
        seed: "apiVersion: v1\nkind: Namespace\nmetadata: {name: vm}\n",
        args: &[
            "group",
            "analytics",
            "-n",
            "vm",
            "--ports",
            "http=8080",
            "-s",
            "analytics",
        ],
        watch: &[
            (
                "cluster1",
                "/apis/networking.istio.io/v1/namespaces/vm/workloadgroups/analytics",
            ),
            (
                "cluster1",
                "/api/v1/namespaces/vm/serviceaccounts/analytics",
            ),
        ],
        failure_codes: &[1],
        prepare: &[],
    });
}

/// `--mtls` adds a PeerAuthentication to the same write: a failure at any request leaves the
/// ServiceAccount, the WorkloadGroup and the PeerAuthentication all as they were.
#[test]
fn vm_group_with_mtls_survives_every_fault() {
    sweep(&Case {
        plugin: "vm",
        clusters: &["cluster1"],
        seed: "apiVersion: v1\nkind: Namespace\nmetadata: {name: vm}\n",
        args: &[
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
            "--mtls",
            "strict",
        ],
        watch: &[
            (
                "cluster1",
                "/apis/networking.istio.io/v1/namespaces/vm/workloadgroups/analytics",
            ),
            (
                "cluster1",
                "/api/v1/namespaces/vm/serviceaccounts/analytics",
            ),
            (
                "cluster1",
                "/apis/security.istio.io/v1/namespaces/vm/peerauthentications/analytics",
            ),
        ],
        failure_codes: &[1],
        prepare: &[],
    });
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `mesh-vm files` writes no cluster object; its all-or-nothing promise is about the directory.
#[test]
fn vm_files_writes_all_five_files_or_none_under_every_fault() {
    let seed = format!("{ISTIO}---\napiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {{name: analytics, namespace: vm}}\nspec: {{template: {{serviceAccount: default}}}}\n");
    let seed: &'static str = Box::leak(seed.into_boxed_str());
    let scratch = tempfile::tempdir().expect("tempdir");
    let emu = Emu::builder().seed_yaml(seed).start().expect("emu");
    let out = scratch.path().join("clean");
    let out_s = out.to_string_lossy().into_owned();
    emu.clear_requests();
    plugin(
        Some(&emu),
        "vm",
        &["files", "analytics", "-n", "vm", "--out-dir", &out_s],
    )
    .ok();
    let all = files_in(&out);
    assert_eq!(
        all,
        vec![
            "cluster.env",
            "hosts",
            "istio-token",
            "mesh.yaml",
            "root-cert.pem"
        ]
    );
    let n = emu.requests("cluster1").len();
    drop(emu);
    for i in 1..=n {
        for action in [
            FaultAction::Status(500),
            FaultAction::Reset,
            FaultAction::StallAfter(Duration::from_millis(4000)),
        ] {
            let emu = Emu::builder().seed_yaml(seed).start().expect("emu");
            emu.inject(
                "cluster1",
                Fault {
                    method: None,
                    path_contains: None,
                    nth: i,
                    action: action.clone(),
                },
            );
            let out = scratch
                .path()
                .join(format!("run-{i}-{action:?}").replace(['(', ')', ' ', ':'], "_"));
            let out_s = out.to_string_lossy().into_owned();
            let r = plugin(
                Some(&emu),
                "vm",
                &[
                    "files",
                    "analytics",
                    "-n",
                    "vm",
                    "--out-dir",
                    &out_s,
                    "--request-timeout=2s",
                ],
            );
            let label = format!("request {i} of {n} fails with {action:?}");
            assert!(!r.stderr.contains("panicked"), "{label}: {}", r.stderr);
            let got = files_in(&out);
            if r.code == 0 {
                assert_eq!(got, all, "{label}");
            } else {
                assert_eq!(r.code, 1, "{label}: {}", r.stderr);
                assert!(
                    got.is_empty(),
                    "{label}: partial files {got:?}\n{}",
                    r.stderr
                );
            }
        }
    }
}

const SPLIT_WATCH: &[(&str, &str)] = &[
    (
        "cluster1",
        "/apis/networking.istio.io/v1/namespaces/default/virtualservices/productcatalog-migration",
    ),
    (
        "cluster2",
        "/apis/networking.istio.io/v1/namespaces/default/virtualservices/productcatalog-migration",
    ),
];

/// Two clusters: a failure anywhere leaves both at 100/0 (exit 1 before any write, exit 4 after
/// a rollback) or both at 80/20.
#[test]
fn split_across_two_clusters_survives_every_fault() {
    sweep(&Case {
        plugin: "split",
        clusters: &["cluster1", "cluster2"],
        seed: MIGRATION,
        args: &[
            "80/20",
            "--context",
            "cluster1",
            "--context",
            "cluster2",
            "-n",
            "default",
        ],
        watch: SPLIT_WATCH,
        failure_codes: &[1, 3, 4],
        prepare: &[],
    });
}

const LINK_SEED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system, annotations: {kube-emu/cluster: cluster1}}
spec: {type: LoadBalancer, ports: [{name: tls, port: 15443}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.1}]}}
---
apiVersion: v1
kind: Service
metadata: {name: checkoutservice, namespace: default, annotations: {kube-emu/cluster: cluster1}}
spec: {ports: [{name: grpc, port: 5050}]}
---
apiVersion: v1
kind: Service
metadata: {name: emailservice, namespace: default, annotations: {kube-emu/cluster: cluster1}}
spec: {ports: [{name: grpc, port: 5000}, {name: http-metrics, port: 9090}]}
"#;

/// Linking two services: the ServiceEntries and the address ledger in the target cluster are
/// all there or none is.
#[test]
fn link_survives_every_fault() {
    sweep(&Case {
        plugin: "link",
        clusters: &["cluster1", "cluster2"],
        seed: LINK_SEED,
        args: &["--from", "cluster1", "--to", "cluster2", "checkoutservice", "emailservice"],
        watch: &[
            ("cluster2", "/apis/networking.istio.io/v1/namespaces/default/serviceentries/checkoutservice-global"),
            ("cluster2", "/apis/networking.istio.io/v1/namespaces/default/serviceentries/emailservice-global"),
            ("cluster2", "/api/v1/namespaces/istio-system/configmaps/kubectl-mesh-addresses"),
        ],
        failure_codes: &[1],
        prepare: &[],
    });
}

/// Undo across two clusters after an 80/20: both back at 100/0, or both left at 80/20.
#[test]
fn split_undo_across_two_clusters_survives_every_fault() {
    sweep(&Case {
        plugin: "split",
        clusters: &["cluster1", "cluster2"],
        seed: MIGRATION,
        args: &[
            "undo",
            "--context",
            "cluster1",
            "--context",
            "cluster2",
            "-n",
            "default",
        ],
        watch: SPLIT_WATCH,
        failure_codes: &[1, 3, 4],
        prepare: &[&[
            "80/20",
            "--context",
            "cluster1",
            "--context",
            "cluster2",
            "-n",
            "default",
        ]],
    });
}

/// Unlinking what a link created: every entry and the ledger go, or nothing does.
#[test]
fn unlink_survives_every_fault() {
    sweep(&Case {
        plugin: "link",
        clusters: &["cluster1", "cluster2"],
        seed: LINK_SEED,
        args: &["--from", "cluster1", "--to", "cluster2", "--unlink", "--all"],
        watch: &[
            ("cluster2", "/apis/networking.istio.io/v1/namespaces/default/serviceentries/checkoutservice-global"),
            ("cluster2", "/apis/networking.istio.io/v1/namespaces/default/serviceentries/emailservice-global"),
            ("cluster2", "/api/v1/namespaces/istio-system/configmaps/kubectl-mesh-addresses"),
        ],
        failure_codes: &[1],
        prepare: &[&["--from", "cluster1", "--to", "cluster2", "checkoutservice", "emailservice"]],
    });
}

const REMOTE_SEED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: istio-system, annotations: {kube-emu/cluster: cluster1}}
spec:
  selector: {matchLabels: {app: istiod}}
  template:
    metadata: {labels: {app: istiod}}
    spec: {containers: [{name: discovery, image: "docker.io/istio/pilot:1.24.3", env: [{name: CLUSTER_ID, value: cluster1}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: istio-system, annotations: {kube-emu/cluster: cluster2}}
spec:
  selector: {matchLabels: {app: istiod}}
  template:
    metadata: {labels: {app: istiod}}
    spec: {containers: [{name: discovery, image: "docker.io/istio/pilot:1.24.3", env: [{name: CLUSTER_ID, value: cluster2}]}]}
"#;

const REMOTE_WATCH: &[(&str, &str)] = &[
    ("cluster1", "/api/v1/namespaces/istio-system/serviceaccounts/istio-reader-service-account"),
    ("cluster1", "/apis/rbac.authorization.k8s.io/v1/clusterroles/istio-reader-clusterrole-istio-system"),
    ("cluster1", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/istio-reader-clusterrole-istio-system"),
    ("cluster1", "/api/v1/namespaces/istio-system/secrets/istio-reader-service-account-istio-remote-secret-token"),
    ("cluster2", "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-cluster1"),
];

/// A remote-secret link: the reader identity in cluster1 and the secret in cluster2 are all
/// there or none is.
#[test]
fn remote_secret_link_survives_every_fault() {
    sweep(&Case {
        plugin: "link",
        clusters: &["cluster1", "cluster2"],
        seed: REMOTE_SEED,
        args: &[
            "--mode",
            "remote-secret",
            "--from",
            "cluster1",
            "--to",
            "cluster2",
        ],
        watch: REMOTE_WATCH,
        failure_codes: &[1, 4],
        prepare: &[],
    });
}

/// Its unlink: the secret and the reader identity go, or nothing does.
#[test]
fn remote_secret_unlink_survives_every_fault() {
    sweep(&Case {
        plugin: "link",
        clusters: &["cluster1", "cluster2"],
        seed: REMOTE_SEED,
        args: &[
            "--mode",
            "remote-secret",
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--unlink",
        ],
        watch: REMOTE_WATCH,
        failure_codes: &[1, 4],
        prepare: &[&[
            "--mode",
            "remote-secret",
            "--from",
            "cluster1",
            "--to",
            "cluster2",
        ]],
    });
}
