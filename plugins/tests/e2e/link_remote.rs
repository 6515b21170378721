//! End to end: `kubectl mesh-link --mode remote-secret` run by the real kubectl against two
//! clusters, on kube-emu and on real kube-apiservers (where a ServiceAccount token controller
//! fills token Secrets, the token is used against the source cluster's RBAC, and the secret is
//! compared with the one the real `istioctl create-remote-secret` makes).

use crate::common;

use crate::common::{kubectl, writes, Fault, FaultAction, Server, Tier};
use base64::Engine as _;
use serde_json::Value;

/// istiod's Deployment in each cluster, naming the cluster's ID as Istio's chart does.
fn seed(clusters: &[&str]) -> String {
    let mut y = String::new();
    for c in clusters {
        y.push_str(&format!(
            r#"---
apiVersion: v1
kind: Namespace
metadata: {{name: istio-system, annotations: {{kube-emu/cluster: {c}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: istiod, namespace: istio-system, annotations: {{kube-emu/cluster: {c}}}}}
spec:
  selector: {{matchLabels: {{app: istiod}}}}
  template:
    metadata: {{labels: {{app: istiod}}}}
    spec:
      containers:
      - name: discovery
        image: docker.io/istio/pilot:1.24.3
        env: [{{name: CLUSTER_ID, value: {c}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system, annotations: {{kube-emu/cluster: {c}}}}}
data:
  mesh: |
    defaultConfig:
      meshId: mesh1
    trustDomain: cluster.local
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio-ca-root-cert, namespace: istio-system, annotations: {{kube-emu/cluster: {c}}}}}
data:
  root-cert.pem: |
    -----BEGIN CERTIFICATE-----
    MIIDnzCCAoegAwIBAgIJAON1ifrBZ2/BMA0GCSqGSIb3DQEBCwUAMIGLMQswCQYD
    -----END CERTIFICATE-----
"#
        ));
    }
    y
}

fn start(tier: Tier) -> Server {
    start_with(tier, &["cluster1", "cluster2"])
}

fn start_with(tier: Tier, clusters: &[&str]) -> Server {
    Server::builder(tier)
        .clusters(clusters)
        .seed_yaml(&seed(clusters))
        .start()
}

fn remote(id: &str) -> String {
    format!("/api/v1/namespaces/istio-system/secrets/istio-remote-secret-{id}")
}

fn link(srv: &Server, args: &[&str]) -> common::Run {
    let mut full = vec!["mesh-link", "--mode", "remote-secret"];
    full.extend_from_slice(args);
    kubectl(srv, &full)
}

const REMOTE: &str = "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-cluster1";
const TOKEN_SECRET: &str =
    "/api/v1/namespaces/istio-system/secrets/istio-reader-service-account-istio-remote-secret-token";
const SA: &str = "/api/v1/namespaces/istio-system/serviceaccounts/istio-reader-service-account";
const ROLE: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/istio-reader-clusterrole-istio-system";
const BINDING: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/istio-reader-clusterrole-istio-system";

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

/// The kubeconfig in a remote secret (`data` or istioctl's `stringData`).
fn kubeconfig_of(secret: &Value, key: &str) -> Value {
    let text = match secret["data"][key].as_str() {
        Some(d) => String::from_utf8(b64(d)).expect("utf8"),
        None => secret["stringData"][key]
            .as_str()
            .expect("kubeconfig key")
            .to_string(),
    };
    serde_yaml::from_str(&text).expect("kubeconfig YAML")
}

fn token_in(kubeconfig: &Value) -> String {
    kubeconfig["users"][0]["user"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// The kubeconfig's CA of a context's cluster in the test kubeconfig.
fn ca_of(srv: &Server, cluster: &str) -> String {
    let kc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(srv.kubeconfig()).expect("kubeconfig"))
            .expect("yaml");
    kc["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|c| c["name"] == cluster)
        .and_then(|c| c["cluster"]["certificate-authority-data"].as_str())
        .expect("CA data")
        .to_string()
}

/// Uses the remote secret's kubeconfig as istiod in cluster2 would: reads cluster1's Services
/// and EndpointSlices with it (real tier: real authentication and RBAC).
fn read_with(kubeconfig: &Value) -> common::Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("remote.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(kubeconfig).expect("yaml")).expect("write");
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args([
            "get",
            "services,endpointslices,pods,namespaces",
            "-A",
            "-o",
            "name",
        ])
        .env("HOME", dir.path())
        .output()
        .expect("kubectl");
    out.into()
}

/// An AGE cell of something made during this test: `Ns`, under two minutes.
fn fresh(age: &str) -> bool {
    age.strip_suffix('s')
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n < 120)
}

/// A stand-in for istiod's debug port: answers every request with `/debug/clusterz`'s JSON,
/// whatever `body` holds at the time. Returns its `HOST:PORT`.
fn fake_istiod(body: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let text = body.lock().map(|b| b.clone()).unwrap_or_default();
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
        }
    });
    addr
}

/// The token in `cluster`'s remote secret for cluster1.
fn token_for_cluster1_in(srv: &Server, cluster: &str) -> String {
    let secret = srv
        .get_json(cluster, &remote("cluster1"))
        .expect("remote secret");
    token_in(&kubeconfig_of(&secret, "cluster1"))
}

/// Whether cluster1 takes `token`, asked until it answers `want` (the real API server caches a
/// token's authentication for 10 s, so a revocation shows a moment later).
#[track_caller]
fn wait_token_works(srv: &Server, token: &str, want: bool) {
    let kc: Value = serde_yaml::from_str(&format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{{name: c, cluster: {{server: '{}', certificate-authority-data: {}}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: c}}}}]\nusers: [{{name: c, user: {{token: '{token}'}}}}]\n",
        srv.url("cluster1"),
        ca_of(srv, "cluster1")
    ))
    .expect("kubeconfig");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let run = read_with(&kc);
        if (run.code == 0) == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "token works: want {want}, kubectl says: {}",
            run.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

on_both_tiers! {
fn links_with_a_remote_secret_and_a_rerun_changes_nothing(tier) {
    let srv = start(tier);
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    assert!(
        run.stderr.contains("cluster ID of context cluster1: cluster1 (from the CLUSTER_ID env of Deployment istio-system/istiod)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stdout,
        "serviceaccount/istio-reader-service-account created (context cluster1)\n\
         clusterrole.rbac.authorization.k8s.io/istio-reader-clusterrole-istio-system created (context cluster1)\n\
         clusterrolebinding.rbac.authorization.k8s.io/istio-reader-clusterrole-istio-system created (context cluster1)\n\
         secret/istio-reader-service-account-istio-remote-secret-token created (context cluster1)\n\
         secret/istio-remote-secret-cluster1 created (context cluster2)\n"
    );
    let secret = srv.get_json("cluster2", REMOTE).expect("remote secret in cluster2");
    assert_eq!(secret["metadata"]["labels"]["istio/multiCluster"], "true");
    assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kubectl-mesh");
    assert_eq!(secret["metadata"]["annotations"]["networking.istio.io/cluster"], "cluster1");
    let data: Vec<&String> = secret["data"].as_object().expect("data").keys().collect();
    assert_eq!(data, vec!["cluster1"]);
    let kc = kubeconfig_of(&secret, "cluster1");
    assert_eq!(kc["current-context"], "cluster1");
    assert_eq!(kc["clusters"][0]["name"], "cluster1");
    assert_eq!(kc["clusters"][0]["cluster"]["server"], srv.url("cluster1").as_str());
    assert_eq!(
        kc["clusters"][0]["cluster"]["certificate-authority-data"],
        ca_of(&srv, "cluster1").as_str()
    );
    // The token is the one the token controller put in cluster1's token Secret.
    let token_secret = srv.get_json("cluster1", TOKEN_SECRET).expect("token secret");
    assert_eq!(token_secret["type"], "kubernetes.io/service-account-token");
    let token = String::from_utf8(b64(token_secret["data"]["token"].as_str().expect("token"))).expect("utf8");
    assert_eq!(token_in(&kc), token);
    // The identity has the chart's rules, bound to the reader.
    let role = srv.get_json("cluster1", ROLE).expect("clusterrole");
    assert!(role["rules"].as_array().expect("rules").iter().any(|r| r["apiGroups"][0] == "discovery.k8s.io"
        && r["resources"][0] == "endpointslices"));
    let binding = srv.get_json("cluster1", BINDING).expect("binding");
    assert_eq!(binding["subjects"][0]["name"], "istio-reader-service-account");
    assert_eq!(binding["subjects"][0]["namespace"], "istio-system");

    // The token works: istiod may list what it reads (real tier: real RBAC).
    let list = link(&srv, &["--list", "--to", "cluster2"]).ok();
    let mut rows: Vec<Vec<&str>> = list.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    let url = srv.url("cluster1");
    // TOKEN AGE of a Secret-based token: its token Secret's, made during this test.
    let age = rows[1].remove(5);
    assert!(fresh(age), "{}", list.stdout);
    assert_eq!(
        rows,
        vec![
            vec!["CLUSTER", "ID", "SECRET", "SERVER", "MADE", "BY", "TOKEN", "WORKS", "TOKEN", "AGE", "EXPIRES", "GATEWAY"],
            // No east-west gateway Service in cluster1: nothing to probe.
            vec!["cluster1", "istio-remote-secret-cluster1", url.as_str(), "kubectl-mesh", "yes", "never", "-"],
        ],
        "{}",
        list.stdout
    );

    // No new token, no change.
    let again = link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    assert_eq!(again.stdout.matches(" unchanged (context").count(), 5, "{}", again.stdout);
    let after = srv.get_json("cluster2", REMOTE).expect("remote secret");
    assert_eq!(after["metadata"]["resourceVersion"], secret["metadata"]["resourceVersion"]);

    if tier == Tier::Real {
        // istiod in cluster2 would read cluster1 with it: real authentication and RBAC.
        let read = read_with(&kc).ok();
        assert!(read.stdout.contains("namespace/istio-system"), "{}", read.stdout);
        // The real istioctl, on the same cluster, makes the same secret: same name, label,
        // annotation, key and kubeconfig (it finds and reuses the same token Secret).
        let real = srv.real().expect("real tier");
        let made = real
            .istioctl(&["--context", "cluster1", "--namespace", "istio-system", "create-remote-secret", "--name", "cluster1"])
            .ok();
        // istioctl prints a header comment and a trailing `---`: take its one document.
        let theirs: Value = serde_yaml::Deserializer::from_str(&made.stdout)
            .map(|d| serde::Deserialize::deserialize(d).expect("istioctl YAML"))
            .find(|v: &Value| v.is_object())
            .expect("a Secret from istioctl");
        assert_eq!(theirs["metadata"]["name"], secret["metadata"]["name"]);
        assert_eq!(theirs["metadata"]["namespace"], "istio-system");
        assert_eq!(theirs["metadata"]["labels"]["istio/multiCluster"], "true");
        assert_eq!(
            theirs["metadata"]["annotations"],
            secret["metadata"]["annotations"]
        );
        let keys: Vec<&String> = theirs["stringData"].as_object().expect("stringData").keys().collect();
        assert_eq!(keys, vec!["cluster1"]);
        assert_eq!(kubeconfig_of(&theirs, "cluster1"), kc);
    }
    // Deleting the token Secret revokes the token, and the list says so (kube-apiserver reads
    // Secrets through an informer, so it may take a moment).
    assert!(srv.delete_path("cluster1", TOKEN_SECRET));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let revoked = link(&srv, &["--list", "--to", "cluster2", "--from", "cluster1"]).ok();
        if revoked.stdout.contains("no: the token is refused (401)") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", revoked.stdout);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn output_redacts_the_token_at_every_verbosity(tier) {
    let srv = start(tier);
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    let token_secret = srv.get_json("cluster1", TOKEN_SECRET).expect("token secret");
    let token = String::from_utf8(b64(token_secret["data"]["token"].as_str().expect("token"))).expect("utf8");
    let secret = srv.get_json("cluster2", REMOTE).expect("remote secret");
    let encoded = secret["data"]["cluster1"].as_str().expect("data").to_string();
    for args in [
        vec!["--from", "cluster1", "--to", "cluster2", "-o", "yaml"],
        vec!["--from", "cluster1", "--to", "cluster2", "--dry-run=server", "-o", "json"],
        vec!["--from", "cluster1", "--to", "cluster2", "-v=9"],
    ] {
        let run = link(&srv, &args).ok();
        for shown in [&run.stdout, &run.stderr] {
            assert!(!shown.contains(&token), "token printed by {args:?}");
            assert!(!shown.contains(&encoded), "secret data printed by {args:?}");
            assert!(!shown.contains(&token_secret["data"]["token"].as_str().unwrap_or("-").to_string()), "{args:?}");
        }
        if args.contains(&"-o") {
            assert!(run.stdout.contains("<redacted>"), "{}", run.stdout);
            assert!(run.stdout.contains("istio-remote-secret-cluster1"), "{}", run.stdout);
        }
    }
    let shown = link(&srv, &["--from", "cluster1", "--to", "cluster2", "-o", "yaml", "--show-secrets"]).ok();
    assert!(shown.stdout.contains(&encoded), "--show-secrets prints the data");
}

fn a_bound_token_with_token_duration(tier) {
    let srv = start(tier);
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--token-duration", "2h", "--cluster-id", "east"]).ok();
    assert!(run.stderr.contains("cluster ID of context cluster1: east (from --cluster-id)"), "{}", run.stderr);
    assert!(run.stderr.contains("Warning: --token-duration 2h: the remote secret holds a token that expires"), "{}", run.stderr);
    assert!(!run.stdout.contains("istio-remote-secret-token"), "no token Secret: {}", run.stdout);
    let list = link(&srv, &["--list", "--to", "cluster2"]).ok();
    let row: Vec<&str> = list.stdout.lines().nth(1).expect("a row").split_whitespace().collect();
    // WORKS, TOKEN AGE (the token's iat: just made), EXPIRES.
    assert_eq!(row[4], "yes", "{}", list.stdout);
    assert!(fresh(row[5]), "{}", list.stdout);
    assert!(row[6] == "in" && (row[7].starts_with("1h59m") || row[7] == "2h"), "{}", list.stdout);
    let secret = srv
        .get_json("cluster2", "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-east")
        .expect("remote secret");
    let kc = kubeconfig_of(&secret, "east");
    let token = token_in(&kc);
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("JWT"))
            .expect("claims"),
    )
    .expect("JSON");
    assert_eq!(claims["sub"], "system:serviceaccount:istio-system:istio-reader-service-account");
    let life = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(life, 7200);
    // A rerun keeps the token while more than half its lifetime is left.
    let again = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--token-duration", "2h", "--cluster-id", "east"]).ok();
    assert!(again.stdout.contains("secret/istio-remote-secret-east unchanged (context cluster2)"), "{}", again.stdout);
    if tier == Tier::Real {
        assert!(read_with(&kc).ok().stdout.contains("namespace/istio-system"));
    }
    // --rotate mints a new bound token; the old one cannot be revoked and runs out by itself.
    let rotated = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--token-duration", "2h", "--cluster-id", "east", "--rotate"]).ok();
    assert!(rotated.stdout.contains("secret/istio-remote-secret-east configured (context cluster2)"), "{}", rotated.stdout);
    assert!(rotated.stderr.contains("the old token is a bound token: it expires by itself at 20"), "{}", rotated.stderr);
    let secret = srv
        .get_json("cluster2", "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-east")
        .expect("remote secret");
    assert_ne!(token_in(&kubeconfig_of(&secret, "east")), token);
    // The TokenRequest's answer is logged at -v=9, its token is not.
    let loud = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--token-duration", "2h", "--cluster-id", "west", "-v=9"]).ok();
    let west = srv
        .get_json("cluster2", "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-west")
        .expect("remote secret");
    let minted = token_in(&kubeconfig_of(&west, "west"));
    assert_ne!(minted, token);
    assert!(loud.stderr.contains("serviceaccounts/istio-reader-service-account/token"), "{}", loud.stderr);
    assert!(!loud.stderr.contains(&minted), "the minted token was logged");
    assert!(!loud.stdout.contains(&minted));
}

fn an_existing_reader_identity_is_used_and_never_changed(tier) {
    let srv = start(tier);
    srv.apply_yaml("cluster1", r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: istio-reader-service-account, namespace: istio-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: istio-reader-clusterrole-istio-system, labels: {release: istio}}
rules:
- {apiGroups: [""], resources: [services], verbs: [get, list, watch]}
"#).expect("seed");
    let before = srv.get_json("cluster1", ROLE).expect("role");
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    assert!(run.stderr.contains("serviceaccount/istio-reader-service-account exists in context cluster1: used as it is"), "{}", run.stderr);
    assert!(run.stderr.contains("clusterrole.rbac.authorization.k8s.io/istio-reader-clusterrole-istio-system exists in context cluster1: used as it is"), "{}", run.stderr);
    let after = srv.get_json("cluster1", ROLE).expect("role");
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]);
    assert_eq!(after["rules"], before["rules"]);
    assert!(srv.get_json("cluster1", BINDING).is_some());
    assert!(srv.get_json("cluster2", REMOTE).is_some());
    // That role lets the reader list Services only, and the list says what is missing.
    let list = link(&srv, &["--list", "--to", "cluster2"]).ok();
    assert!(list.stdout.contains("no: may not list endpointslices, pods, namespaces"), "{}", list.stdout);
}

fn bidirectional_then_unlink_takes_back_one_direction(tier) {
    let srv = start(tier);
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--bidirectional"]).ok();
    assert!(run.stderr.contains("cluster ID of context cluster2: cluster2 (from the CLUSTER_ID env of Deployment istio-system/istiod)"), "{}", run.stderr);
    assert_eq!(run.stdout.matches(" created (context cluster1)").count(), 5, "{}", run.stdout);
    assert_eq!(run.stdout.matches(" created (context cluster2)").count(), 5, "{}", run.stdout);
    let to2 = srv.get_json("cluster2", &remote("cluster1")).expect("secret for cluster1 in cluster2");
    let to1 = srv.get_json("cluster1", &remote("cluster2")).expect("secret for cluster2 in cluster1");
    assert_eq!(kubeconfig_of(&to1, "cluster2")["clusters"][0]["cluster"]["server"], srv.url("cluster2").as_str());
    let sa = srv.get_json("cluster1", SA).expect("reader");
    assert_eq!(sa["metadata"]["annotations"]["kubectl-mesh/remote-secrets"], "cluster2");
    if tier == Tier::Real {
        read_with(&kubeconfig_of(&to2, "cluster1")).ok();
        read_with(&kubeconfig_of(&to1, "cluster2")).ok();
    }
    let again = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--bidirectional"]).ok();
    assert_eq!(again.stdout.matches(" unchanged (context").count(), 10, "{}", again.stdout);

    let unlink = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--unlink"]).ok();
    assert_eq!(
        unlink.stdout,
        "secret/istio-remote-secret-cluster1 deleted (context cluster2)\n\
         secret/istio-reader-service-account-istio-remote-secret-token deleted (context cluster1)\n\
         clusterrolebinding.rbac.authorization.k8s.io/istio-reader-clusterrole-istio-system deleted (context cluster1)\n\
         clusterrole.rbac.authorization.k8s.io/istio-reader-clusterrole-istio-system deleted (context cluster1)\n\
         serviceaccount/istio-reader-service-account deleted (context cluster1)\n"
    );
    for path in [SA, ROLE, BINDING, TOKEN_SECRET] {
        assert!(srv.get_json("cluster1", path).is_none(), "{path} left in cluster1");
        assert!(srv.get_json("cluster2", path).is_some(), "{path} of the other direction gone");
    }
    assert!(srv.get_json("cluster2", &remote("cluster1")).is_none());
    assert!(srv.get_json("cluster1", &remote("cluster2")).is_some());
    let twice = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--unlink"]).ok();
    assert!(twice.stdout.is_empty(), "{}", twice.stdout);
    assert!(twice.stderr.contains("secret/istio-remote-secret-cluster1 not found in context cluster2: nothing to unlink there"), "{}", twice.stderr);
}

fn the_reader_identity_goes_with_its_last_remote_secret(tier) {
    let srv = start_with(tier, &["cluster1", "cluster2", "cluster3"]);
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    link(&srv, &["--from", "cluster1", "--to", "cluster3"]).ok();
    let sa = srv.get_json("cluster1", SA).expect("reader");
    assert_eq!(sa["metadata"]["annotations"]["kubectl-mesh/remote-secrets"], "cluster2,cluster3");
    // Both secrets hold the one token.
    let t2 = token_in(&kubeconfig_of(&srv.get_json("cluster2", &remote("cluster1")).expect("2"), "cluster1"));
    let t3 = token_in(&kubeconfig_of(&srv.get_json("cluster3", &remote("cluster1")).expect("3"), "cluster1"));
    assert_eq!(t2, t3);
    let first = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--unlink"]).ok();
    assert!(first.stderr.contains("the reader identity in context cluster1 stays: the remote secrets of cluster3 use it"), "{}", first.stderr);
    assert_eq!(
        first.stdout,
        "secret/istio-remote-secret-cluster1 deleted (context cluster2)\n\
         serviceaccount/istio-reader-service-account configured (context cluster1)\n"
    );
    assert!(srv.get_json("cluster1", TOKEN_SECRET).is_some());
    let last = link(&srv, &["--from", "cluster1", "--to", "cluster3", "--unlink"]).ok();
    assert!(last.stdout.contains("serviceaccount/istio-reader-service-account deleted (context cluster1)"), "{}", last.stdout);
    for path in [SA, ROLE, BINDING, TOKEN_SECRET] {
        assert!(srv.get_json("cluster1", path).is_none(), "{path} left in cluster1");
    }
}

fn unlink_leaves_a_secret_kubectl_mesh_did_not_make(tier) {
    let srv = start(tier);
    srv.apply_yaml("cluster2", r#"
apiVersion: v1
kind: Secret
metadata:
  name: istio-remote-secret-cluster1
  namespace: istio-system
  labels: {istio/multiCluster: "true"}
  annotations: {networking.istio.io/cluster: cluster1}
stringData: {cluster1: "made by istioctl"}
"#).expect("seed");
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--unlink"]).expect_code(1);
    assert!(run.stderr.contains("was not made by kubectl-mesh"), "{}", run.stderr);
    assert!(srv.get_json("cluster2", REMOTE).is_some());
}

fn rotate_replaces_the_token_and_revokes_the_old_one_with_its_last_holder(tier) {
    let srv = start_with(tier, &["cluster1", "cluster2", "cluster3"]);
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    link(&srv, &["--from", "cluster1", "--to", "cluster3"]).ok();
    let shared = token_for_cluster1_in(&srv, "cluster2");
    let before = srv.get_json("cluster2", REMOTE).expect("secret");

    // cluster2 gets a token of its own; the shared one stays, cluster3 holds it.
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--rotate"]).ok();
    let own = run
        .stdout
        .lines()
        .find(|l| l.starts_with("secret/istio-reader-service-account-token-cluster2-") && l.ends_with(" created (context cluster1)"))
        .unwrap_or_else(|| panic!("a new token Secret: {}", run.stdout))
        .split_whitespace()
        .next()
        .expect("name")
        .trim_start_matches("secret/")
        .to_string();
    assert!(run.stdout.contains("secret/istio-remote-secret-cluster1 configured (context cluster2)"), "{}", run.stdout);
    assert!(!run.stdout.contains(" deleted "), "{}", run.stdout);
    assert!(run.stderr.contains("the old token stays valid: the remote secrets of cluster3 hold it too"), "{}", run.stderr);
    assert!(run.stderr.contains("istio/istio#60612"), "{}", run.stderr);
    let after = srv.get_json("cluster2", REMOTE).expect("secret");
    assert_ne!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]);
    let first = token_for_cluster1_in(&srv, "cluster2");
    assert_ne!(first, shared);
    assert_eq!(token_for_cluster1_in(&srv, "cluster3"), shared);
    for t in [&first, &shared] {
        assert!(!run.stdout.contains(t.as_str()) && !run.stderr.contains(t.as_str()), "a token was printed");
    }
    let own_path = format!("/api/v1/namespaces/istio-system/secrets/{own}");
    let own_secret = srv.get_json("cluster1", &own_path).expect("own token Secret");
    assert_eq!(own_secret["metadata"]["annotations"]["kubectl-mesh/remote-secret-for"], "cluster2");
    wait_token_works(&srv, &first, true);
    wait_token_works(&srv, &shared, true);

    // A plain rerun keeps cluster2's own token.
    let again = link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    assert_eq!(again.stdout.lines().count(), again.stdout.matches(" unchanged (context").count(), "{}", again.stdout);
    assert!(again.stdout.contains(&format!("secret/{own} unchanged (context cluster1)")), "{}", again.stdout);
    assert_eq!(token_for_cluster1_in(&srv, "cluster2"), first);

    // Rotating its last holder revokes the shared token.
    let third = link(&srv, &["--from", "cluster1", "--to", "cluster3", "--rotate"]).ok();
    assert!(third.stdout.ends_with("secret/istio-reader-service-account-istio-remote-secret-token deleted (context cluster1)\n"), "{}", third.stdout);
    assert!(srv.get_json("cluster1", TOKEN_SECRET).is_none());
    wait_token_works(&srv, &shared, false);
    wait_token_works(&srv, &token_for_cluster1_in(&srv, "cluster3"), true);

    // Rotating cluster2 again revokes its own first token at once.
    let second = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--rotate"]).ok();
    assert!(second.stdout.ends_with(&format!("secret/{own} deleted (context cluster1)\n")), "{}", second.stdout);
    let newest = token_for_cluster1_in(&srv, "cluster2");
    assert_ne!(newest, first);
    wait_token_works(&srv, &first, false);
    wait_token_works(&srv, &newest, true);

    // Unlinking cluster2 takes its own token with it; the identity stays for cluster3.
    let unlink = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--unlink"]).ok();
    assert!(unlink.stdout.contains("secret/istio-reader-service-account-token-cluster2-"), "{}", unlink.stdout);
    assert!(srv.get_json("cluster1", SA).is_some());
    wait_token_works(&srv, &newest, false);
    wait_token_works(&srv, &token_for_cluster1_in(&srv, "cluster3"), true);
}

fn rotate_needs_a_link_and_takes_no_other_verb(tier) {
    let srv = start(tier);
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--rotate"]).expect_code(1);
    assert!(run.stderr.contains("--rotate replaces the token of a remote secret, and context \"cluster2\" holds no Secret istio-system/istio-remote-secret-cluster1: link first"), "{}", run.stderr);
    assert!(srv.get_json("cluster1", SA).is_none(), "nothing written");
    for (extra, why) in [
        ("--unlink", "--rotate: replaces the token of a link"),
        ("--bidirectional", "--rotate: replaces one target's token"),
    ] {
        let bad = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--rotate", extra]).expect_code(2);
        assert!(bad.stderr.contains(why), "{extra}: {}", bad.stderr);
    }
    let global = kubectl(&srv, &["mesh-link", "--from", "cluster1", "--to", "cluster2", "--all", "--rotate"]).expect_code(2);
    assert!(global.stderr.contains("--rotate"), "{}", global.stderr);
    // A dry run mints nothing and changes nothing.
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    let before = srv.get_json("cluster2", REMOTE).expect("secret");
    let dry = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--rotate", "--dry-run=server"]).ok();
    assert!(dry.stdout.contains("(server dry run)"), "{}", dry.stdout);
    let after = srv.get_json("cluster2", REMOTE).expect("secret");
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]);
    assert!(srv.get_json("cluster1", TOKEN_SECRET).is_some());
}

fn check_says_what_is_missing_then_all_is_well(tier) {
    let srv = start(tier);
    let check = |srv: &Server| kubectl(srv, &["mesh-link", "check", "--mode", "remote-secret", "--from", "cluster1", "--to", "cluster2"]);
    let before = check(&srv).expect_code(3);
    let lines: Vec<&str> = before.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", before.stdout);
    // No istiod pod to reach (and no --istiod-debug): skipped, saying how to make it reachable.
    assert_eq!(
        lines[5],
        "- skipped: whether istiod in cluster2 syncs cluster1: no istiod pod (app=istiod) in istio-system of cluster2 to reach through the API server; to check it, run kubectl port-forward -n istio-system deploy/istiod 8080 --context cluster2 and add --istiod-debug localhost:8080"
    );
    assert_eq!(lines[0], "✔ Istio 1.24.3 in cluster1, 1.24.3 in cluster2: remote secrets are supported (1.8 and later)");
    assert!(lines[1].starts_with("✔ cluster1 and cluster2 share the root certificate"), "{}", lines[1]);
    assert!(lines[2].starts_with("× cluster2 holds no remote secret istio-remote-secret-cluster1 for cluster1 (cluster ID cluster1; it holds: none): run kubectl mesh-link --mode remote-secret --from cluster1 --to cluster2"), "{}", lines[2]);
    assert_eq!(lines[3], "✔ cluster1 and cluster2 are in mesh mesh1");
    assert!(lines[4].starts_with("× no token to try"), "{}", lines[4]);
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    let after = check(&srv).ok();
    assert_eq!(after.stdout.matches("✔ ").count(), 5, "{}", after.stdout);
    let token = after.stdout.lines().find(|l| l.starts_with("✔ the token in istio-remote-secret-cluster1 (cluster2) may list services, endpointslices, pods and namespaces in cluster1 (token age ")).unwrap_or_else(|| panic!("{}", after.stdout));
    let age = token.rsplit("token age ").next().and_then(|t| t.strip_suffix(", never expires)")).expect("age");
    assert!(fresh(age), "{token}");
    assert!(after.stdout.ends_with("and add --istiod-debug localhost:8080\n"), "the skipped line comes last: {}", after.stdout);
    // A reader without the rights istiod needs is a ×.
    srv.apply_yaml("cluster1", r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: istio-reader-clusterrole-istio-system}
rules:
- {apiGroups: [""], resources: [services, pods, namespaces], verbs: [get, list, watch]}
"#).expect("narrow the role");
    let narrowed = check(&srv).expect_code(3);
    assert!(narrowed.stdout.contains("does not work against cluster1: no: may not list endpointslices"), "{}", narrowed.stdout);
}

fn separate_networks_check_the_east_west_gateway_and_expose_services(tier) {
    // cluster1's gateway answers on 127.0.0.1, at the port its networking.istio.io/gatewayPort
    // label names (as istiod reads it; 15443 itself may be taken on the test machine).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let free = listener.local_addr().expect("addr").port();
    let mut nets = String::new();
    for (c, n, ip, port) in [("cluster1", "network1", "127.0.0.1", free), ("cluster2", "network2", "192.0.2.20", 15443)] {
        nets.push_str(&format!(
            r#"---
apiVersion: v1
kind: Namespace
metadata: {{name: istio-system, labels: {{topology.istio.io/network: {n}}}, annotations: {{kube-emu/cluster: {c}}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels: {{istio: eastwestgateway, topology.istio.io/network: {n}, networking.istio.io/gatewayPort: "{port}"}}
  annotations: {{kube-emu/cluster: {c}}}
spec:
  type: LoadBalancer
  selector: {{istio: eastwestgateway}}
  ports: [{{name: tls, port: {port}, targetPort: 15443}}]
status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}
"#
        ));
    }
    let srv = Server::builder(tier)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed(&["cluster1", "cluster2"]))
        .seed_yaml(&nets)
        .start();
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--network", "--expose-services"]).ok();
    assert!(run.stderr.contains("network of context cluster1: network1 (from the topology.istio.io/network label of Namespace istio-system)"), "{}", run.stderr);
    assert!(run.stderr.contains("east-west gateway of context cluster1: istio-system/istio-eastwestgateway on network network1, port 15443"), "{}", run.stderr);
    assert!(run.stdout.starts_with("gateway.networking.istio.io/cross-network-gateway created (context cluster1)\n"), "{}", run.stdout);
    let gw = srv
        .get_json("cluster1", "/apis/networking.istio.io/v1/namespaces/istio-system/gateways/cross-network-gateway")
        .expect("Gateway");
    assert_eq!(gw["spec"]["selector"]["istio"], "eastwestgateway");
    assert_eq!(gw["spec"]["servers"][0]["tls"]["mode"], "AUTO_PASSTHROUGH");
    assert_eq!(gw["spec"]["servers"][0]["hosts"][0], "*.local");
    assert_eq!(gw["spec"]["servers"][0]["port"]["number"], 15443);
    let again = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--network", "--expose-services"]).ok();
    assert_eq!(again.stdout.matches(" unchanged (context").count(), 6, "{}", again.stdout);
    let check = kubectl(&srv, &["mesh-link", "check", "--mode", "remote-secret", "--network", "--from", "cluster1", "--to", "cluster2"]).ok();
    assert!(check.stdout.contains(&format!("✔ cluster1 is on network1, cluster2 on network2; cluster1's east-west gateway istio-system/istio-eastwestgateway carries network1 on {free}")), "{}", check.stdout);
    assert!(check.stdout.contains("✔ Gateway cross-network-gateway in cluster1 exposes *.local on 15443 (AUTO_PASSTHROUGH)"), "{}", check.stdout);
    let probe = format!("✔ cluster1's east-west gateway istio-system/istio-eastwestgateway accepts connections on 127.0.0.1:{free} (");
    assert!(check.stdout.lines().any(|l| l.starts_with(&probe) && l.ends_with("ms)")), "{}", check.stdout);
    // Eight verdicts and the skipped istiod line.
    assert_eq!(check.stdout.lines().count(), 9, "{}", check.stdout);
    // --list probes the same gateway with the remote secret's own credentials.
    let list = link(&srv, &["--list", "--to", "cluster2"]).ok();
    let gateway = format!("127.0.0.1:{free} (");
    assert!(list.stdout.lines().nth(1).is_some_and(|r| r.contains(&gateway) && r.ends_with("ms)")), "{}", list.stdout);
    // Nothing listens there any more: unreachable, and check fails on it.
    drop(listener);
    let list = link(&srv, &["--list", "--to", "cluster2"]).ok();
    assert!(list.stdout.contains(&format!("unreachable: 127.0.0.1:{free}: connection refused")), "{}", list.stdout);
    let check = kubectl(&srv, &["mesh-link", "check", "--mode", "remote-secret", "--network", "--from", "cluster1", "--to", "cluster2"]).expect_code(3);
    assert!(check.stdout.contains(&format!("× cluster1's east-west gateway istio-system/istio-eastwestgateway does not answer: 127.0.0.1:{free}: connection refused")), "{}", check.stdout);
    assert_eq!(check.stdout.matches("× ").count(), 1, "{}", check.stdout);

    // cluster2's gateway loses its network label: the reverse link is refused before any write.
    srv.apply_yaml("cluster2", r#"
apiVersion: v1
kind: Service
metadata: {name: istio-eastwestgateway, namespace: istio-system, labels: {istio: eastwestgateway}}
spec:
  type: LoadBalancer
  selector: {istio: eastwestgateway}
  ports: [{name: tls, port: 15443, targetPort: 15443}]
status: {loadBalancer: {ingress: [{ip: 192.0.2.20}]}}
"#).expect("relabel");
    let refused = link(&srv, &["--from", "cluster2", "--to", "cluster1", "--network"]).expect_code(1);
    assert!(refused.stderr.contains("has no label topology.istio.io/network=network2"), "{}", refused.stderr);
    let check = kubectl(&srv, &["mesh-link", "check", "--mode", "remote-secret", "--network", "--from", "cluster2", "--to", "cluster1"]).expect_code(3);
    assert!(check.stdout.contains("× cluster2's east-west gateway: Service istio-system/istio-eastwestgateway has no label topology.istio.io/network=network2"), "{}", check.stdout);
    assert!(check.stdout.contains("× no Gateway in cluster2 exposes *.local on 15443"), "{}", check.stdout);
    assert!(srv.get_json("cluster1", &remote("cluster2")).is_none());
    assert!(srv.get_json("cluster2", SA).is_none());

    // Clusters on one network need no east-west gateway: --network says so.
    srv.apply_yaml(
        "cluster2",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system, labels: {topology.istio.io/network: network1}}\n",
    )
    .expect("one network");
    let same = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--network"]).expect_code(1);
    assert!(same.stderr.contains("--network is for clusters on separate networks, and cluster1 and cluster2 are not"), "{}", same.stderr);
}

fn network_flags_label_the_istio_namespaces(tier) {
    let srv = start(tier);
    srv.apply_yaml("cluster1", r#"
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels: {istio: eastwestgateway, topology.istio.io/network: network1}
spec:
  type: LoadBalancer
  selector: {istio: eastwestgateway}
  ports: [{name: tls, port: 15443, targetPort: 15443}]
status: {loadBalancer: {ingress: [{ip: 192.0.2.10}]}}
"#).expect("gateway");
    let ns_path = "/api/v1/namespaces/istio-system";
    let label = |c: &str| srv.get_json(c, ns_path).expect("namespace")["metadata"]["labels"]["topology.istio.io/network"].clone();
    // Without the flags nothing names the networks: refused before any write.
    let none = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--network"]).expect_code(1);
    assert!(none.stderr.contains("--network is for clusters on separate networks"), "{}", none.stderr);
    let bad = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--from-network", "net 1"]).expect_code(2);
    assert!(bad.stderr.contains("--from-network"), "{}", bad.stderr);
    // cluster2's istiod knows its network, cluster1's istiod could not tell it: the label can.
    srv.apply_yaml("cluster2", r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: istio-system}
spec:
  selector: {matchLabels: {app: istiod}}
  template:
    metadata: {labels: {app: istiod}}
    spec:
      containers:
      - name: discovery
        image: docker.io/istio/pilot:1.24.3
        env: [{name: CLUSTER_ID, value: cluster2}, {name: NETWORK, value: network2}]
"#).expect("istiod env");
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--from-network", "network1"]).ok();
    assert!(run.stderr.contains("network of context cluster1: network1 (from --from-network)"), "{}", run.stderr);
    assert!(run.stderr.contains("network of context cluster2: network2 (from the NETWORK env of Deployment istio-system/istiod)"), "{}", run.stderr);
    assert!(run.stdout.starts_with("namespace/istio-system configured (context cluster1)\n"), "{}", run.stdout);
    assert!(run.stdout.contains("namespace/istio-system configured (context cluster2)\nsecret/istio-remote-secret-cluster1 created (context cluster2)\n"), "{}", run.stdout);
    assert_eq!(label("cluster1"), "network1");
    assert_eq!(label("cluster2"), "network2");
    let ns = srv.get_json("cluster1", ns_path).expect("namespace");
    assert!(ns["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(), "the Istio namespace is not kubectl-mesh's: {ns}");
    // The labels now say it: a rerun, with the flags or without, changes nothing.
    for args in [&["--from-network", "network1", "--to-network", "network2"][..], &["--network"][..]] {
        let mut full = vec!["--from", "cluster1", "--to", "cluster2"];
        full.extend_from_slice(args);
        let again = link(&srv, &full).ok();
        assert_eq!(again.stdout.lines().count(), 5, "{}", again.stdout);
        assert_eq!(again.stdout.matches(" unchanged (context").count(), 5, "{}", again.stdout);
    }
    // A flag that contradicts the cluster is refused, and nothing changes.
    let wrong = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--to-network", "network3"]).expect_code(1);
    assert!(wrong.stderr.contains("context \"cluster2\" is on network network2 (from the topology.istio.io/network label of Namespace istio-system), and --to-network says network3"), "{}", wrong.stderr);
    assert_eq!(label("cluster2"), "network2");
}

fn dry_runs_write_nothing(tier) {
    let srv = start(tier);
    for dry in ["--dry-run=client", "--dry-run=server"] {
        let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--bidirectional", dry, "-o", "yaml"]).ok();
        assert_eq!(run.stdout.matches("# context: ").count(), 4, "{}", run.stdout);
        assert!(run.stdout.contains("name: istio-remote-secret-cluster1"), "{}", run.stdout);
        assert!(run.stdout.contains("cluster1: <redacted>"), "{}", run.stdout);
        for c in ["cluster1", "cluster2"] {
            assert!(srv.get_json(c, SA).is_none(), "{dry} wrote in {c}");
        }
        assert!(srv.get_json("cluster2", REMOTE).is_none());
        if let Some(emu) = srv.emu() {
            if dry == "--dry-run=client" {
                assert!(writes(emu, "cluster1").is_empty() && writes(emu, "cluster2").is_empty());
            }
        }
    }
}

fn bad_input_exits_2_before_any_request(tier) {
    let srv = start(tier);
    for (args, wanted) in [
        (vec!["--from", "cluster1", "--to", "cluster2", "--cluster-id", "Not_A_Label"], "--cluster-id: "),
        (vec!["--from", "cluster1", "--to", "cluster2", "--remote-server", "http://10.0.0.1"], "--remote-server: \"http://10.0.0.1\" is not an https:// URL"),
        (vec!["--from", "cluster1", "--to", "cluster2", "--all"], "--all: not available with --mode remote-secret"),
        (vec!["--from", "cluster1", "--to", "cluster1"], "--to: must name another context than --from"),
        (vec!["--to", "cluster2"], "--from: required"),
        (vec!["--from", "cluster1", "--to", "cluster2", "--bidirectional", "--cluster-id", "x"], "--cluster-id: names --from's cluster ID only"),
        (vec!["--from", "cluster1", "--to", "cluster2", "--unlink", "--bidirectional"], "--unlink: undoes one direction"),
        (vec!["--from", "cluster1", "--to", "nowhere"], "--to: context \"nowhere\" not found"),
    ] {
        let run = link(&srv, &args).expect_code(2);
        assert!(run.stderr.contains(wanted), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
    let run = kubectl(&srv, &["mesh-link", "--from", "cluster1", "--to", "cluster2", "--all", "--token-duration", "1h"]).expect_code(2);
    assert!(run.stderr.contains("--token-duration: only with --mode remote-secret"), "{}", run.stderr);
    let short = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--token-duration", "1m"]).expect_code(2);
    assert!(short.stderr.contains("too short"), "{}", short.stderr);
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster1").is_empty());
        assert!(writes(emu, "cluster2").is_empty());
    }
}

fn check_says_whether_istiod_syncs_the_source(tier) {
    let srv = start(tier);
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    // istiod still without cluster1 (a restart is due, istio/istio#60612): × and exit 3, all
    // else ✔. The clusterz shape is istiod's `cluster.DebugInfo` list.
    let body = std::sync::Arc::new(std::sync::Mutex::new(
        r#"[{"id":"cluster2","secretName":"","syncStatus":"synced"}]"#.to_string(),
    ));
    let addr = fake_istiod(body.clone());
    let check = |srv: &Server, addr: &str| kubectl(srv, &["mesh-link", "check", "--mode", "remote-secret", "--from", "cluster1", "--to", "cluster2", "--istiod-debug", addr]);
    let stale = check(&srv, &addr).expect_code(3);
    assert_eq!(stale.stdout.matches("✔ ").count(), 5, "{}", stale.stdout);
    assert_eq!(
        stale.stdout.lines().last(),
        Some(format!("× istiod in cluster2 does not read cluster1 (cluster1) from a remote secret; it lists cluster2 (its own) (/debug/clusterz at {addr}): once cluster2 holds istio-remote-secret-cluster1, restart it: kubectl rollout restart deployment/istiod -n istio-system --context cluster2 (istiod can keep a remote cluster's old state and credentials until it restarts, istio/istio#60612)").as_str()),
        "{}",
        stale.stdout
    );
    // Read, but stuck.
    *body.lock().expect("lock") = r#"[{"id":"cluster2","secretName":"","syncStatus":"synced"},{"id":"cluster1","secretName":"istio-system/istio-remote-secret-cluster1","syncStatus":"timeout"}]"#.into();
    let stuck = check(&srv, &addr).expect_code(3);
    assert!(stuck.stdout.contains("× istiod in cluster2 reads cluster1 (cluster1) from secret istio-system/istio-remote-secret-cluster1 but its sync status is timeout"), "{}", stuck.stdout);
    // Synced: ✔ and exit 0.
    let now_synced = body.lock().expect("lock").replace("timeout", "synced");
    *body.lock().expect("lock") = now_synced;
    let synced = check(&srv, &addr).ok();
    assert_eq!(synced.stdout.matches("✔ ").count(), 6, "{}", synced.stdout);
    assert!(synced.stdout.contains(&format!("✔ istiod in cluster2 has synced cluster1 (cluster1) from secret istio-system/istio-remote-secret-cluster1 (/debug/clusterz at {addr})")), "{}", synced.stdout);
    // Nothing listens at the address: skipped, not ×.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = gone.local_addr().expect("addr").to_string();
    drop(gone);
    let skipped = check(&srv, &nowhere).ok();
    assert!(skipped.stdout.contains(&format!("- skipped: whether istiod in cluster2 syncs cluster1: /debug/clusterz at {nowhere}: ")), "{}", skipped.stdout);
    // Without the flag, an istiod pod is tried through the API server's pod proxy. This one has
    // no IP (no kubelet runs it), so the proxy cannot reach it: skipped, naming the pod.
    srv.apply_yaml("cluster2", r#"
apiVersion: v1
kind: Pod
metadata: {name: istiod-0, namespace: istio-system, labels: {app: istiod}}
spec:
  containers: [{name: discovery, image: docker.io/istio/pilot:1.24.3}]
"#).expect("pod");
    let proxied = kubectl(&srv, &["mesh-link", "check", "--mode", "remote-secret", "--from", "cluster1", "--to", "cluster2"]).ok();
    let last = proxied.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("- skipped: whether istiod in cluster2 syncs cluster1: pod istiod-0"), "{}", proxied.stdout);
    // --istiod-debug is check's: refused elsewhere, before any request.
    let refused = link(&srv, &["--list", "--to", "cluster2", "--istiod-debug", "localhost:8080"]).expect_code(2);
    assert!(refused.stderr.contains("--istiod-debug: is where check reads istiod's /debug/clusterz: only with check"), "{}", refused.stderr);
    let bad = kubectl(&srv, &["mesh-link", "check", "--mode", "remote-secret", "--from", "cluster1", "--to", "cluster2", "--istiod-debug", "https://x:8080"]).expect_code(2);
    assert!(bad.stderr.contains("plain HTTP"), "{}", bad.stderr);
}
}

/// On the real tier, check reads the real istiod's `/debug/clusterz` (istiod runs as a process
/// there, so through the debug address the harness gives, as after a port forward): before the
/// link it does not read cluster1 (×, exit 3), after it has cluster1 synced (✔).
#[test]
fn check_reads_the_real_istiods_clusterz() {
    if !Tier::Real.enabled() {
        return;
    }
    let srv = Server::builder(Tier::Real)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed(&["cluster1", "cluster2"]))
        .istiod()
        .start();
    let debug = srv
        .real()
        .expect("real tier")
        .istiod("cluster2")
        .debug
        .clone();
    let check = |srv: &Server| {
        kubectl(
            srv,
            &[
                "mesh-link",
                "check",
                "--mode",
                "remote-secret",
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--istiod-debug",
                &debug,
            ],
        )
    };
    wait_debug(&debug, "/debug/clusterz", "cluster2's istiod up", |b| {
        b.starts_with('[')
    });
    let before = check(&srv).expect_code(3);
    assert!(before.stdout.contains("× istiod in cluster2 does not read cluster1 (cluster1) from a remote secret; it lists cluster2 (its own)"), "{}", before.stdout);
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    wait_debug(&debug, "/debug/clusterz", "cluster1 synced", |b| {
        b.contains("\"cluster1\"") && b.contains("synced")
    });
    // Each real istiod made its own CA here, so the root-certificate line is the one ×.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let after = check(&srv);
        let last = after.stdout.lines().last().unwrap_or_default().to_string();
        if last.starts_with("✔ istiod in cluster2 has synced cluster1 (cluster1) from secret ") {
            assert!(last.contains("istio-remote-secret-cluster1"), "{last}");
            assert_eq!(after.stdout.matches("× ").count(), 1, "{}", after.stdout);
            assert!(
                after
                    .stdout
                    .contains("× cluster1 and cluster2 have different root certificates"),
                "{}",
                after.stdout
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", after.stdout);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// kube-emu refuses (403) every write of a remote secret in cluster2, so the run fails after
/// writing cluster1.
fn refuse_remote_secret_writes(srv: &Server) {
    srv.emu().expect("kube-emu").inject(
        "cluster2",
        Fault::new(
            "PATCH",
            "/secrets/istio-remote-secret",
            FaultAction::Status(403),
        ),
    );
}

/// A failed write in cluster2 takes back what the run wrote in cluster1 (kube-emu's fault
/// injection).
#[test]
fn a_failure_in_the_target_puts_the_source_back() {
    if !Tier::Emu.enabled() {
        return;
    }
    let srv = start(Tier::Emu);
    refuse_remote_secret_writes(&srv);
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2"]).expect_code(4);
    assert!(
        run.stderr.contains(
            "the write failed in context cluster2; the contexts written before it were put back"
        ),
        "{}",
        run.stderr
    );
    for path in [SA, ROLE, BINDING, TOKEN_SECRET] {
        assert!(
            srv.get_json("cluster1", path).is_none(),
            "{path} left behind"
        );
    }
    assert!(srv.get_json("cluster2", REMOTE).is_none());
    // And the next run links.
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    assert!(srv.get_json("cluster2", REMOTE).is_some());
}

/// A failed write in cluster2 takes the network labels back off both Istio namespaces.
#[test]
fn a_failed_link_takes_the_network_labels_back() {
    if !Tier::Emu.enabled() {
        return;
    }
    let srv = start(Tier::Emu);
    srv.apply_yaml("cluster1", "apiVersion: v1\nkind: Service\nmetadata: {name: istio-eastwestgateway, namespace: istio-system, labels: {topology.istio.io/network: network1}}\nspec: {type: LoadBalancer, ports: [{name: tls, port: 15443}]}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.10}]}}\n").expect("gateway");
    refuse_remote_secret_writes(&srv);
    link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--from-network",
            "network1",
            "--to-network",
            "network2",
        ],
    )
    .expect_code(4);
    for c in ["cluster1", "cluster2"] {
        let ns = srv
            .get_json(c, "/api/v1/namespaces/istio-system")
            .expect("namespace");
        assert!(
            ns["metadata"]["labels"]["topology.istio.io/network"].is_null(),
            "{c}: {ns}"
        );
    }
    assert!(srv.get_json("cluster1", SA).is_none());
}

/// A rotation whose write in cluster2 fails leaves both clusters as they were: the new token
/// Secret is taken back, cluster2's secret and the old token are untouched.
#[test]
fn a_failed_rotation_keeps_the_old_token() {
    if !Tier::Emu.enabled() {
        return;
    }
    let srv = start(Tier::Emu);
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    let before = srv.get_json("cluster2", REMOTE).expect("secret");
    refuse_remote_secret_writes(&srv);
    let run = link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "--rotate"],
    )
    .expect_code(4);
    assert!(
        run.stderr.contains(
            "the write failed in context cluster2; the contexts written before it were put back"
        ),
        "{}",
        run.stderr
    );
    let after = srv.get_json("cluster2", REMOTE).expect("secret");
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert!(
        srv.get_json("cluster1", TOKEN_SECRET).is_some(),
        "the old token was revoked"
    );
    let names = kubectl(
        &srv,
        &[
            "get",
            "secrets",
            "-n",
            "istio-system",
            "--context",
            "cluster1",
            "-o",
            "name",
        ],
    )
    .ok()
    .stdout;
    assert!(
        !names.contains("-token-cluster2-"),
        "the new token Secret was left: {names}"
    );
}

/// The body of a plain-HTTP GET (istiod's debug port), or why not.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.split_whitespace().nth(1) == Some("200") => Ok(body.into()),
        _ => Err(answer),
    }
}

/// Polls istiod's debug endpoint `path` until `want` holds; panics with the last answer after 60 s.
#[track_caller]
fn wait_debug(addr: &str, path: &str, what: &str, want: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let last = http_get(addr, path).unwrap_or_else(|e| e);
        if want(&last) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {path} says:\n{last}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// End to end on the real tier: after the link, the real istiod of cluster2 reads cluster1's API
/// server with the secret's token, and cluster1's Service is in its registry; after --unlink it
/// is gone again.
#[test]
fn real_istiod_in_cluster2_discovers_the_services_of_cluster1() {
    if !Tier::Real.enabled() {
        return;
    }
    let srv = Server::builder(Tier::Real)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed(&["cluster1", "cluster2"]))
        .seed_yaml(
            "apiVersion: v1\nkind: Service\nmetadata: {name: onlyinone, namespace: default, annotations: {kube-emu/cluster: cluster1}}\nspec: {ports: [{name: http, port: 8080}]}\n",
        )
        .istiod()
        .start();
    let debug = srv
        .real()
        .expect("real tier")
        .istiod("cluster2")
        .debug
        .clone();
    let host = "onlyinone.default.svc.cluster.local";
    wait_debug(&debug, "/debug/registryz", "cluster2 alone", |b| {
        b.starts_with('[') && !b.contains(host)
    });
    link(&srv, &["--from", "cluster1", "--to", "cluster2"]).ok();
    wait_debug(
        &debug,
        "/debug/clusterz",
        "cluster1 synced in cluster2's istiod",
        |b| b.contains("\"cluster1\"") && b.contains("istio-remote-secret-cluster1"),
    );
    wait_debug(
        &debug,
        "/debug/registryz",
        "cluster1's Service in cluster2's istiod",
        |b| b.contains(host),
    );
    link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "--unlink"],
    )
    .ok();
    wait_debug(
        &debug,
        "/debug/registryz",
        "cluster1's Service gone after --unlink",
        |b| b.starts_with('[') && !b.contains(host),
    );
}

/// The endpoints of one xDS cluster as `ADDRESS:PORT CLUSTER_ID TLS_MODE` lines, sorted.
fn endpoints_of(dump: &Value, name: &str) -> Vec<String> {
    let mut v: Vec<String> = common::xds_cluster(dump, name)
        .and_then(|c| c["endpoints"].as_array())
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}:{} {} {}",
                e["address"].as_str().unwrap_or(""),
                e["port"],
                e["cluster"].as_str().unwrap_or("-"),
                e["tlsMode"].as_str().unwrap_or("-")
            )
        })
        .collect();
    v.sort();
    v
}

/// Each cluster on its own network, with an east-west gateway Service as Istio's
/// `gen-eastwest-gateway.sh` makes it (its load-balancer address set as the cloud would), and
/// the Service `web` run by one sidecar-injected Pod (label `security.istio.io/tlsMode: istio`)
/// behind a hand-made EndpointSlice, and the Service `plain` whose hand-made EndpointSlice
/// names an address and no Pod (a workload without a sidecar). No kube-controller-manager runs:
/// the Pod's status is written through the status subresource, as the kubelet would.
fn two_networks(clusters: &[(&str, &str, &str, &str, &str)]) -> String {
    let mut y = String::new();
    for (c, network, gateway_ip, pod_ip, plain_ip) in clusters {
        y.push_str(&format!(
            r#"---
apiVersion: v1
kind: Namespace
metadata: {{name: istio-system, labels: {{topology.istio.io/network: {network}}}, annotations: {{kube-emu/cluster: {c}}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels: {{istio: eastwestgateway, topology.istio.io/network: {network}}}
  annotations: {{kube-emu/cluster: {c}}}
spec:
  type: LoadBalancer
  selector: {{istio: eastwestgateway}}
  ports: [{{name: tls, port: 15443, targetPort: 15443}}]
status: {{loadBalancer: {{ingress: [{{ip: {gateway_ip}}}]}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo, annotations: {{kube-emu/cluster: {c}}}}}
spec: {{ports: [{{name: http, port: 8080}}]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-{c}
  namespace: demo
  labels: {{app: web, security.istio.io/tlsMode: istio}}
  annotations: {{kube-emu/cluster: {c}}}
spec:
  nodeName: node-{c}
  containers: [{{name: web, image: web:1}}]
status:
  phase: Running
  podIP: {pod_ip}
  podIPs: [{{ip: {pod_ip}}}]
  conditions: [{{type: Ready, status: "True"}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-{c}
  namespace: demo
  labels: {{kubernetes.io/service-name: web}}
  annotations: {{kube-emu/cluster: {c}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: [{pod_ip}]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: web-{c}, namespace: demo}}
---
apiVersion: v1
kind: Service
metadata: {{name: plain, namespace: demo, annotations: {{kube-emu/cluster: {c}}}}}
spec: {{ports: [{{name: http, port: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: plain-{c}
  namespace: demo
  labels: {{kubernetes.io/service-name: plain}}
  annotations: {{kube-emu/cluster: {c}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints: [{{addresses: [{plain_ip}], conditions: {{ready: true}}}}]
"#
        ));
    }
    y
}

/// The cross-network data plane on the real tier (issue #13): cluster1 on network1 and cluster2
/// on network2 both run `web`. After `--network --expose-services`, a sidecar in cluster2 gets
/// cluster2's Pod directly and cluster1's through cluster1's east-west gateway on 15443, the
/// east-west gateway of cluster1 gets the AUTO_PASSTHROUGH cluster of the Gateway mesh-link
/// wrote, and after `--unlink` only cluster2's Pod is left.
#[test]
fn real_sidecar_in_cluster2_reaches_cluster1_through_its_east_west_gateway() {
    if !Tier::Real.enabled() {
        return;
    }
    let srv = Server::builder(Tier::Real)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed(&["cluster1", "cluster2"]))
        .seed_yaml(&two_networks(&[
            ("cluster1", "network1", "192.0.2.10", "10.1.0.5", "10.1.0.6"),
            ("cluster2", "network2", "192.0.2.20", "10.2.0.7", "10.2.0.8"),
        ]))
        .istiod()
        .start();
    let real = srv.real().expect("real tier");
    let web = "outbound|8080||web.demo.svc.cluster.local";
    let plain = "outbound|8080||plain.demo.svc.cluster.local";
    // A sidecar in cluster2 (istiod tells networks apart by the proxy's NETWORK metadata).
    let sidecar = ["--network", "network2"];
    // cluster1's east-west gateway: a router with the gateway Service's selector labels.
    let eastwest = [
        "--type",
        "router",
        "--labels",
        "istio=eastwestgateway",
        "--network",
        "network1",
        "--ip",
        "10.1.0.100",
    ];
    let sni = "outbound_.8080_._.web.demo.svc.cluster.local";

    real.wait_xds_as(
        "cluster2",
        "client",
        &sidecar,
        "cluster2's own web Pod",
        |d| endpoints_of(d, web) == ["10.2.0.7:8080 cluster2 istio"],
    );
    let before = real
        .xds_as("cluster1", "istio-system", &eastwest)
        .expect("xds of the gateway");
    assert!(
        common::xds_cluster(&before, sni).is_none(),
        "no Gateway yet, no {sni}: {before:#}"
    );

    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--network",
            "--expose-services",
        ],
    )
    .ok();
    assert!(
        run.stdout.contains(
            "gateway.networking.istio.io/cross-network-gateway created (context cluster1)"
        ),
        "{}",
        run.stdout
    );

    let debug = real.istiod("cluster2").debug.clone();
    wait_debug(
        &debug,
        "/debug/registryz",
        "cluster1's web in cluster2's istiod",
        |b| {
            serde_json::from_str::<Value>(b).ok().is_some_and(|all| {
                all.as_array().into_iter().flatten().any(|s| {
                    s["hostname"] == "web.demo.svc.cluster.local"
                        && s["clusterVIPs"]["Addresses"]["cluster1"].is_array()
                })
            })
        },
    );
    wait_debug(
        &debug,
        "/debug/endpointShardz",
        "cluster1's endpoints in cluster2's istiod",
        |b| b.contains("\"10.1.0.5\"") && b.contains("\"10.1.0.6\""),
    );
    let both = real.wait_xds_as(
        "cluster2",
        "client",
        &sidecar,
        "cluster1's web through its east-west gateway",
        |d| endpoints_of(d, web).len() == 2,
    );
    assert_eq!(
        endpoints_of(&both, web),
        [
            "10.2.0.7:8080 cluster2 istio",
            "192.0.2.10:15443 cluster1 istio"
        ],
        "{both:#}"
    );
    // The gateway routes by the SNI of Istio mTLS, so istiod sends a remote network's endpoint
    // only where the sidecar would use it: it holds cluster1's `plain` (endpointShardz, above)
    // but sends none of it, as `plain` has no sidecar (no Pod labelled with tlsMode `istio`).
    assert_eq!(
        endpoints_of(&both, plain),
        ["10.2.0.8:8080 cluster2 -"],
        "{both:#}"
    );
    // The gateway passes the SNI of `web` through to cluster1's Pod: the Gateway's shape is one
    // istiod acts on.
    let gw = real.wait_xds_as(
        "cluster1",
        "istio-system",
        &eastwest,
        "the AUTO_PASSTHROUGH cluster of web",
        |d| common::xds_cluster(d, sni).is_some(),
    );
    assert_eq!(common::xds_endpoints(&gw, sni), ["10.1.0.5:8080"], "{gw:#}");

    link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "--unlink"],
    )
    .ok();
    let after = real.wait_xds_as(
        "cluster2",
        "client",
        &sidecar,
        "cluster1's web gone after --unlink",
        |d| endpoints_of(d, web).len() == 1,
    );
    assert_eq!(
        endpoints_of(&after, web),
        ["10.2.0.7:8080 cluster2 istio"],
        "{after:#}"
    );
    assert_eq!(
        endpoints_of(&after, plain),
        ["10.2.0.8:8080 cluster2 -"],
        "{after:#}"
    );
}
