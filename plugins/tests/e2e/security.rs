//! Security checks as tests: refused credentials are reported with the verb and the resource,
//! and no credential (the kubeconfig's bearer token, a minted VM token) is ever printed.

use crate::common::fixtures::{GATEWAY_CLUSTER1, VS_CLUSTER2};
use crate::common::{plugin, Fault, FaultAction, Server, Tier, ISTIO};

/// With an Istio install, the gateway and a VirtualService to split in both clusters, enough
/// for every command to reach its first write: a WorkloadGroup, and a Service to link.
const EXTRA: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: analytics, namespace: vm}
spec: {template: {serviceAccount: default}}
---
apiVersion: v1
kind: Service
metadata: {name: productcatalogservice, namespace: default, annotations: {kube-emu/cluster: cluster1}}
spec: {ports: [{name: grpc, port: 3550}]}
"#;

fn two_clusters(tier: Tier) -> Server {
    let seed = format!("{ISTIO}---{EXTRA}---\n{GATEWAY_CLUSTER1}---\n{VS_CLUSTER2}");
    Server::builder(tier)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed)
        .start()
}

fn commands(out_dir: &str) -> Vec<(&'static str, Vec<String>)> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("register", v(&["productcatalog", "10.0.0.1", "grpc:3550"])),
        ("register", v(&["--list"])),
        (
            "vm",
            v(&["group", "analytics", "-n", "vm", "--ports", "http=8080"]),
        ),
        (
            "vm",
            v(&["files", "analytics", "-n", "vm", "--out-dir", out_dir]),
        ),
        (
            "link",
            v(&["--from", "cluster1", "--to", "cluster2", "--all"]),
        ),
        (
            "split",
            v(&["80/20", "--context", "cluster1", "--context", "cluster2"]),
        ),
    ]
}

on_both_tiers! {
fn a_refused_token_names_the_verb_and_resource_and_is_never_printed(tier) {
    let emu = two_clusters(tier);
    // Every request with the kubeconfig's token now gets 401: kube-emu is told to expect
    // another token; the real servers are sent one they never issued.
    let token = match emu.emu() {
        Some(e) => {
            let token = e.token("cluster1");
            e.set_token("cluster1", "rotated-token");
            e.set_token("cluster2", "rotated-token");
            token
        }
        None => emu.real().expect("real tier").refuse_tokens(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("vm").to_string_lossy().into_owned();
    for (p, args) in commands(&out) {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = plugin(Some(&emu), p, &refs);
        let label = format!("mesh-{p} {}", args.join(" "));
        assert_eq!(run.code, 1, "{label}: {}", run.stderr);
        assert!(
            run.stderr.contains("cannot "),
            "{label}: no verb named: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("Unauthorized"),
            "{label}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains(&token) && !run.stdout.contains(&token),
            "{label} printed the token"
        );
    }
}

fn forbidden_writes_name_the_verb_and_resource(tier) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("vm").to_string_lossy().into_owned();
    for (p, args) in commands(&out) {
        if args.contains(&"--list".to_string()) {
            continue;
        }
        let emu = two_clusters(tier);
        // kube-emu refuses every write; on the real servers RBAC does, for a user who may
        // only read.
        match emu.emu() {
            Some(e) => {
                for c in ["cluster1", "cluster2"] {
                    e.inject(c, Fault::new("PATCH", "", FaultAction::Status(403)));
                    e.inject(c, Fault::new("POST", "", FaultAction::Status(403)));
                }
            }
            None => emu.real().expect("real tier").use_restricted_user(),
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = plugin(Some(&emu), p, &refs);
        let label = format!("mesh-{p} {}", args.join(" "));
        assert_ne!(run.code, 0, "{label}");
        assert!(
            run.stderr.contains("cannot apply ") || run.stderr.contains("cannot create "),
            "{label}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("403"), "{label}: {}", run.stderr);
    }
}
}
