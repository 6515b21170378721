//! End to end: `kubectl mesh-link` run by the real kubectl against two clusters laid out like
//! Istio's dual-control-plane sample (Online Boutique split across cluster1 and cluster2),
//! every ServiceEntry validated by Istio's real CRD schemas: on kube-emu and on real
//! kube-apiservers, and what a real istiod makes of the links.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{
    kubectl, plugin, writes, xds_cluster, xds_endpoints, Fault, FaultAction, Server, Tier,
};
use serde_json::{json, Value};

/// Istio 1.7 in both clusters: gateways with 15443, istiocoredns, the `*.global`
/// DestinationRule, one root certificate, CoreDNS.
fn istio(cluster: &str, gateway_ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: istio-ingressgateway, namespace: istio-system, labels: {{app: istio-ingressgateway, istio: ingressgateway}}, annotations: {{kube-emu/cluster: {cluster}}}}}
spec:
  type: LoadBalancer
  selector: {{istio: ingressgateway}}
  ports:
  - {{name: http2, port: 80, targetPort: 8080}}
  - {{name: https, port: 443, targetPort: 8443}}
  - {{name: tls, port: 15443, targetPort: 15443}}
status: {{loadBalancer: {{ingress: [{{ip: {gateway_ip}}}]}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: istiocoredns, namespace: istio-system, annotations: {{kube-emu/cluster: {cluster}}}}}
spec:
  clusterIP: 10.96.0.53
  selector: {{app: istiocoredns}}
  ports:
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 53, protocol: TCP}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: istiod, namespace: istio-system, annotations: {{kube-emu/cluster: {cluster}}}}}
spec:
  selector: {{matchLabels: {{app: istiod}}}}
  template:
    metadata: {{labels: {{app: istiod}}}}
    spec: {{containers: [{{name: discovery, image: "docker.io/istio/pilot:1.7.8"}}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio-ca-root-cert, namespace: istio-system, annotations: {{kube-emu/cluster: {cluster}}}}}
data:
  root-cert.pem: |
    -----BEGIN CERTIFICATE-----
    MIIDnzCCAoegAwIBAgIJAON1ifrBZ2/BMA0GCSqGSIb3DQEBCwUAMIGLMQswCQYD
    -----END CERTIFICATE-----
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: istio-multicluster-destinationrule, namespace: istio-system, annotations: {{kube-emu/cluster: {cluster}}}}}
spec:
  host: "*.global"
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system, annotations: {{kube-emu/cluster: {cluster}}}}}
data:
  Corefile: |
    .:53 {{
        errors
        health
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
           pods insecure
           fallthrough in-addr.arpa ip6.arpa
        }}
        forward . /etc/resolv.conf
        cache 30
        loop
        reload
        loadbalance
    }}
---
apiVersion: v1
kind: Service
metadata: {{name: kubernetes, namespace: default, annotations: {{kube-emu/cluster: {cluster}}}}}
spec:
  ports:
  - {{name: https, port: 443, targetPort: 6443}}
"#
    )
}

fn service(cluster: &str, name: &str, port_name: &str, port: u16, target: u16) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default, labels: {{app: {name}}}, annotations: {{kube-emu/cluster: {cluster}}}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: {port_name}, port: {port}, targetPort: {target}}}\n"
    )
}

const CLUSTER1_SERVICES: [(&str, &str, u16, u16); 6] = [
    ("emailservice", "grpc", 5000, 8080),
    ("checkoutservice", "grpc", 5050, 5050),
    ("paymentservice", "grpc", 50051, 50051),
    ("currencyservice", "grpc", 7000, 7000),
    ("shippingservice", "grpc", 50051, 50051),
    ("adservice", "grpc", 9555, 9555),
];

const CLUSTER2_SERVICES: [(&str, &str, u16, u16); 4] = [
    ("frontend", "http", 80, 8080),
    ("productcatalogservice", "grpc", 3550, 3550),
    ("recommendationservice", "grpc", 8080, 8080),
    ("cartservice", "grpc", 7070, 7070),
];

const GW1: &str = "203.0.113.1";
const GW2: &str = "203.0.113.2";

fn boutique() -> String {
    let mut y = istio("cluster1", GW1);
    y.push_str("---\n");
    y.push_str(&istio("cluster2", GW2));
    for (name, pname, port, target) in CLUSTER1_SERVICES {
        y.push_str(&service("cluster1", name, pname, port, target));
    }
    for (name, pname, port, target) in CLUSTER2_SERVICES {
        y.push_str(&service("cluster2", name, pname, port, target));
    }
    // loadgenerator runs in cluster2 without ports.
    y.push_str("---\napiVersion: v1\nkind: Service\nmetadata: {name: loadgenerator, namespace: default, annotations: {kube-emu/cluster: cluster2}}\nspec: {clusterIP: None, selector: {app: loadgenerator}}\n");
    y
}

fn start(tier: Tier) -> Server {
    Server::builder(tier)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&boutique())
        .start()
}

const SE_LIST: &str = "/apis/networking.istio.io/v1/serviceentries";
const LEDGER: &str = "/api/v1/namespaces/istio-system/configmaps/kubectl-mesh-addresses";

fn se_path(name: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/default/serviceentries/{name}")
}

/// host → address of every ServiceEntry in a cluster.
fn addresses(srv: &Server, cluster: &str) -> BTreeMap<String, String> {
    srv.list_json(cluster, SE_LIST)
        .iter()
        .map(|se| {
            (
                se["spec"]["hosts"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                se["spec"]["addresses"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn ledger(srv: &Server, cluster: &str) -> BTreeMap<String, String> {
    srv.get_json(cluster, LEDGER)
        .and_then(|cm| cm["data"].as_object().cloned())
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// resourceVersion of every ServiceEntry and of the ledger of a cluster: what a write moves.
fn versions(srv: &Server, cluster: &str) -> BTreeMap<String, String> {
    let rv = |o: &Value| {
        o["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut v: BTreeMap<String, String> = srv
        .list_json(cluster, SE_LIST)
        .iter()
        .map(|se| {
            let ns = se["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = se["metadata"]["name"].as_str().unwrap_or_default();
            (format!("{ns}/{name}"), rv(se))
        })
        .collect();
    if let Some(cm) = srv.get_json(cluster, LEDGER) {
        v.insert("ledger".into(), rv(&cm));
    }
    v
}

fn assert_unique(map: &BTreeMap<String, String>) {
    let set: BTreeSet<&String> = map.values().collect();
    assert_eq!(set.len(), map.len(), "addresses shared: {map:?}");
}

fn link(srv: &Server, args: &[&str]) -> common::Run {
    let mut full = vec!["mesh-link"];
    full.extend_from_slice(args);
    kubectl(srv, &full)
}

/// Starts the plugin without waiting for it.
fn spawn(srv: &Server, args: &[&str]) -> std::process::Child {
    common::spawn_plugin(srv, "link", args)
}

on_both_tiers! {
fn dual_control_plane_both_ways_then_rerun_then_one_more(tier) {
    let srv = start(tier);
    let kubeconfig = std::fs::read_to_string(srv.kubeconfig()).expect("kubeconfig");
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--all",
            "--bidirectional",
        ],
    )
    .ok();
    assert!(
        run.stdout.starts_with("FROM       TO         SERVICE"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 11, "{}", run.stdout);
    assert!(
        run.stderr.contains("loadgenerator has no ports"),
        "{}",
        run.stderr
    );

    // cluster2 calls the six services of cluster1, cluster1 the four of cluster2.
    let in2 = addresses(&srv, "cluster2");
    let in1 = addresses(&srv, "cluster1");
    assert_eq!(in2.len(), 6, "{in2:?}");
    assert_eq!(in1.len(), 4, "{in1:?}");
    assert_unique(&in2);
    assert_unique(&in1);
    assert!(
        !in2.contains_key("kubernetes.default.global"),
        "the API server is never linked"
    );
    assert_eq!(ledger(&srv, "cluster2"), in2);
    assert_eq!(ledger(&srv, "cluster1"), in1);
    // The lowest addresses of the default pool, in service-name order.
    assert_eq!(in2["adservice.default.global"], "240.0.0.1");
    assert_eq!(in1["cartservice.default.global"], "240.0.0.1");

    // The real kubectl reads back the contract's shape.
    let run = kubectl(
        &srv,
        &[
            "--context",
            "cluster2",
            "get",
            "serviceentry",
            "emailservice-global",
            "-o",
            "json",
        ],
    )
    .ok();
    let se: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(se["spec"]["hosts"], json!(["emailservice.default.global"]));
    assert_eq!(se["spec"]["location"], "MESH_INTERNAL");
    assert_eq!(se["spec"]["resolution"], "DNS");
    assert_eq!(
        se["spec"]["ports"],
        json!([{"name": "grpc", "number": 5000, "protocol": "GRPC"}])
    );
    assert_eq!(
        se["spec"]["endpoints"],
        json!([{"address": GW1, "ports": {"grpc": 15443}, "labels": {"cluster": "cluster1"}}])
    );
    assert_eq!(
        se["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-mesh"
    );
    assert_eq!(
        se["metadata"]["annotations"]["kubectl-mesh/link-source"],
        "cluster1"
    );
    let frontend = srv
        .get_json("cluster1", &se_path("frontend-global"))
        .expect("frontend");
    assert_eq!(
        frontend["spec"]["ports"],
        json!([{"name": "http", "number": 80, "protocol": "HTTP"}])
    );
    assert_eq!(frontend["spec"]["endpoints"][0]["address"], GW2);

    // Again: every row unchanged, and not one write request (on the real server: no
    // resourceVersion moves).
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let versions_before = (versions(&srv, "cluster1"), versions(&srv, "cluster2"));
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--all",
            "--bidirectional",
        ],
    )
    .ok();
    assert_eq!(
        run.stdout.matches("unchanged").count(),
        10,
        "{}",
        run.stdout
    );
    if let Some(emu) = srv.emu() {
        assert!(
            writes(emu, "cluster1").is_empty(),
            "{:?}",
            writes(emu, "cluster1")
        );
        assert!(
            writes(emu, "cluster2").is_empty(),
            "{:?}",
            writes(emu, "cluster2")
        );
    }
    assert_eq!(
        (versions(&srv, "cluster1"), versions(&srv, "cluster2")),
        versions_before
    );
    assert_eq!(addresses(&srv, "cluster2"), in2);
    assert_eq!(addresses(&srv, "cluster1"), in1);

    // One more service in cluster1: it gets the next free address, the others keep theirs.
    srv.apply_yaml(
        "cluster1",
        &service("cluster1", "quoteservice", "http", 8090, 8090),
    )
    .expect("seed");
    let run = link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "quoteservice"],
    )
    .ok();
    assert_eq!(
        run.stdout,
        "SERVICE        HOST                          ADDRESS     RESULT\nquoteservice   quoteservice.default.global   240.0.0.7   created\n"
    );
    let after = addresses(&srv, "cluster2");
    for (host, addr) in &in2 {
        assert_eq!(&after[host], addr, "{host} moved");
    }
    assert_eq!(after["quoteservice.default.global"], "240.0.0.7");
    assert_eq!(ledger(&srv, "cluster2").len(), 7);
    // Both contexts were named; the kubeconfig (and its current context) is untouched.
    assert_eq!(
        std::fs::read_to_string(srv.kubeconfig()).expect("kubeconfig"),
        kubeconfig
    );
}

fn list_shows_the_links_of_a_cluster(tier) {
    let srv = start(tier);
    link(&srv, &["--from", "cluster2", "--to", "cluster1", "--all"]).ok();
    let run = link(&srv, &["--list", "--to", "cluster1"]).ok();
    assert_eq!(
        run.stdout,
        "HOST                                   ADDRESS     GATEWAY             SOURCE     PORTS
cartservice.default.global             240.0.0.1   203.0.113.2:15443   cluster2   7070/GRPC
frontend.default.global                240.0.0.2   203.0.113.2:15443   cluster2   80/HTTP
productcatalogservice.default.global   240.0.0.3   203.0.113.2:15443   cluster2   3550/GRPC
recommendationservice.default.global   240.0.0.4   203.0.113.2:15443   cluster2   8080/GRPC
"
    );
    let run = link(&srv, &["--list", "--to", "cluster2"]).ok();
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("No links found"), "{}", run.stderr);
}

fn concurrent_runs_never_share_an_address(tier) {
    // A real server takes half a minute to start: its rounds share one, emptied in between.
    let shared = (tier == Tier::Real).then(|| start(tier));
    for round in 0..3 {
        let fresh;
        let srv = match &shared {
            Some(srv) => {
                for se in srv.list_json("cluster2", SE_LIST) {
                    let name = se["metadata"]["name"].as_str().unwrap_or_default();
                    assert!(srv.delete_path("cluster2", &se_path(name)), "{name}");
                }
                srv.delete_path("cluster2", LEDGER);
                assert!(addresses(srv, "cluster2").is_empty());
                assert!(ledger(srv, "cluster2").is_empty());
                srv
            }
            None => {
                fresh = start(tier);
                &fresh
            }
        };
        // On kube-emu, hold the first ledger write back, so both runs read the same (absent)
        // ledger and one of them must lose the compare-and-swap and allocate again. On the
        // real server the two runs race as they come: its compare-and-swap is the one that
        // counts, whoever wins.
        if let Some(emu) = srv.emu() {
            emu.inject(
                "cluster2",
                Fault::new(
                    "POST",
                    "/configmaps",
                    FaultAction::Delay(std::time::Duration::from_millis(400)),
                ),
            );
        }
        let a = spawn(
            srv,
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "adservice",
                "checkoutservice",
                "currencyservice",
            ],
        );
        let b = spawn(
            srv,
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "emailservice",
                "paymentservice",
                "shippingservice",
            ],
        );
        for child in [a, b] {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let got = addresses(srv, "cluster2");
        assert_eq!(got.len(), 6, "{got:?}");
        assert_unique(&got);
        assert_eq!(ledger(srv, "cluster2"), got);
        if let Some(emu) = srv.emu() {
            let conflicts = emu
                .requests("cluster2")
                .into_iter()
                .filter(|r| {
                    r.path.contains("kubectl-mesh-addresses") || r.path.ends_with("/configmaps")
                })
                .filter(|r| r.status == 409)
                .count();
            assert!(
                conflicts >= 1,
                "round {round}: the compare-and-swap never lost, so the test proved nothing"
            );
        }
    }
}

fn unlink_removes_exactly_what_was_created(tier) {
    let srv = start(tier);
    // A hand-written entry from the published samples: never touched.
    srv.apply_yaml(
        "cluster2",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: currency-provider-external, namespace: default}\nspec: {hosts: [www.ecb.europa.eu], ports: [{number: 443, name: https, protocol: HTTPS}], resolution: DNS, location: MESH_EXTERNAL}\n",
    )
    .expect("seed");
    link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--all",
            "--bidirectional",
        ],
    )
    .ok();
    let in1 = addresses(&srv, "cluster1");
    let versions1 = versions(&srv, "cluster1");
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = link(
        &srv,
        &[
            "--from", "cluster1", "--to", "cluster2", "--unlink", "--all",
        ],
    )
    .ok();
    assert_eq!(run.stdout.matches(" deleted").count(), 6, "{}", run.stdout);
    let left: Vec<String> = addresses(&srv, "cluster2").into_keys().collect();
    assert_eq!(left, vec!["www.ecb.europa.eu".to_string()]);
    assert_eq!(
        addresses(&srv, "cluster1"),
        in1,
        "the other direction stays"
    );
    assert!(
        ledger(&srv, "cluster2").is_empty(),
        "addresses freed: {:?}",
        ledger(&srv, "cluster2")
    );
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster1").is_empty());
    }
    assert_eq!(versions(&srv, "cluster1"), versions1);
    // Unlinking again finds nothing.
    let run = link(
        &srv,
        &[
            "--from", "cluster1", "--to", "cluster2", "--unlink", "--all",
        ],
    )
    .ok();
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // Freed addresses are handed out again from the bottom.
    link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "adservice"],
    )
    .ok();
    assert_eq!(
        addresses(&srv, "cluster2")["adservice.default.global"],
        "240.0.0.1"
    );
}

fn prune_removes_the_entry_of_a_deleted_service(tier) {
    let srv = start(tier);
    link(&srv, &["--from", "cluster1", "--to", "cluster2", "--all"]).ok();
    let before = addresses(&srv, "cluster2");
    assert!(srv.delete_path(
        "cluster1",
        "/api/v1/namespaces/default/services/paymentservice"
    ));
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--prune"]).ok();
    assert_eq!(
        run.stdout,
        "SERVICE          HOST                            ADDRESS     RESULT\npaymentservice   paymentservice.default.global   240.0.0.5   pruned\n"
    );
    let after = addresses(&srv, "cluster2");
    assert_eq!(after.len(), 5);
    for (h, a) in &after {
        assert_eq!(&before[h], a);
    }
    assert!(!ledger(&srv, "cluster2").contains_key("paymentservice.default.global"));
}

fn hostname_gateway_gives_a_dns_endpoint(tier) {
    let srv = start(tier);
    srv.apply_yaml(
        "cluster1",
        "apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system}\nspec: {type: LoadBalancer, ports: [{name: tls, port: 15443}]}\nstatus: {loadBalancer: {ingress: [{hostname: a1b2-123.eu-west-1.elb.amazonaws.com}]}}\n",
    )
    .expect("seed");
    let run = link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "adservice"],
    )
    .ok();
    assert!(run.stderr.contains("resolution DNS"), "{}", run.stderr);
    let se = srv
        .get_json("cluster2", &se_path("adservice-global"))
        .expect("se");
    assert_eq!(
        se["spec"]["endpoints"][0]["address"],
        "a1b2-123.eu-west-1.elb.amazonaws.com"
    );
    assert_eq!(se["spec"]["resolution"], "DNS");
}

fn gateway_problems(tier) {
    let srv = start(tier);
    // No port 15443: a prerequisite is missing (exit 3), nothing is written.
    srv.apply_yaml(
        "cluster1",
        "apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system}\nspec: {type: LoadBalancer, ports: [{name: https, port: 443}]}\nstatus: {loadBalancer: {ingress: [{ip: 203.0.113.1}]}}\n",
    )
    .expect("seed");
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "adservice"],
    )
    .expect_code(3);
    assert!(run.stderr.contains("15443"), "{}", run.stderr);
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster2").is_empty());
    }
    assert!(versions(&srv, "cluster2").is_empty());

    // No load balancer address: exit 1 naming the Service; --gateway-address fills in. The
    // operator turns the gateway into a NodePort Service with kubectl, and the API server
    // drops its load-balancer status.
    kubectl(
        &srv,
        &[
            "--context",
            "cluster1",
            "-n",
            "istio-system",
            "patch",
            "service",
            "istio-ingressgateway",
            "--type=merge",
            "-p",
            r#"{"spec": {"type": "NodePort", "ports": [{"name": "tls", "port": 15443}]}}"#,
        ],
    )
    .ok();
    let gw = srv
        .get_json(
            "cluster1",
            "/api/v1/namespaces/istio-system/services/istio-ingressgateway",
        )
        .expect("gateway");
    assert_eq!(gw["status"]["loadBalancer"], json!({}), "{gw:#}");
    let run = link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "adservice"],
    )
    .expect_code(1);
    assert!(
        run.stderr.contains("istio-system/istio-ingressgateway"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster2").is_empty());
    }
    assert!(versions(&srv, "cluster2").is_empty());
    link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "adservice",
            "--gateway-address",
            "198.51.100.7",
        ],
    )
    .ok();
    let se = srv
        .get_json("cluster2", &se_path("adservice-global"))
        .expect("se");
    assert_eq!(se["spec"]["endpoints"][0]["address"], "198.51.100.7");

    // A gateway Service that does not exist.
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "adservice",
            "--gateway-service",
            "nope",
        ],
    )
    .expect_code(1);
    assert!(run.stderr.contains("istio-system/nope"), "{}", run.stderr);
}

fn malformed_input_exits_2_and_sends_nothing(tier) {
    let srv = start(tier);
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let cases: [(&[&str], &str); 7] = [
        (
            &["--from", "nope", "--to", "cluster2", "adservice"],
            "--from",
        ),
        (
            &["--from", "cluster1", "--to", "nope", "adservice"],
            "--to: context \"nope\" not found",
        ),
        (
            &["--from", "cluster1", "--to", "cluster1", "adservice"],
            "--to",
        ),
        (
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--address-pool",
                "240.0.0.0/99",
                "adservice",
            ],
            "--address-pool",
        ),
        (
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--address-pool",
                "240.240.0.0/16",
                "adservice",
            ],
            "--address-pool",
        ),
        (
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--address-pool",
                "240.0.0.0/8",
                "adservice",
            ],
            "240.240.0.0/16",
        ),
        (&["--from", "cluster1", "--to", "cluster2"], "SERVICE"),
    ];
    for (args, needle) in cases {
        let run = plugin(Some(&srv), "link", args).expect_code(2);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    if let Some(emu) = srv.emu() {
        assert!(
            emu.requests("cluster1").is_empty(),
            "{:?}",
            emu.requests("cluster1")
        );
        assert!(
            emu.requests("cluster2").is_empty(),
            "{:?}",
            emu.requests("cluster2")
        );
    }
    // A missing Service is found in the cluster: exit 1, still nothing written.
    let run = plugin(
        Some(&srv),
        "link",
        &["--from", "cluster1", "--to", "cluster2", "nosuchservice"],
    )
    .expect_code(1);
    assert!(run.stderr.contains("nosuchservice"), "{}", run.stderr);
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster2").is_empty());
    }
    assert!(versions(&srv, "cluster2").is_empty());
}

fn client_dry_run_prints_what_kubectl_can_apply(tier) {
    let srv = start(tier);
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--all",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    )
    .ok();
    if let Some(emu) = srv.emu() {
        assert!(
            writes(emu, "cluster2").is_empty(),
            "{:?}",
            writes(emu, "cluster2")
        );
    }
    assert!(versions(&srv, "cluster2").is_empty());
    assert_eq!(run.stdout.matches("kind: ServiceEntry").count(), 6);
    let table = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--all",
            "--dry-run=client",
        ],
    )
    .ok();
    assert_eq!(
        table.stdout.matches("created (dry run)").count(),
        6,
        "{}",
        table.stdout
    );
    // The printed objects are exactly what a real run writes.
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("se.yaml");
    std::fs::write(&file, &run.stdout).expect("write");
    kubectl(
        &srv,
        &[
            "--context",
            "cluster2",
            "apply",
            "--server-side",
            "--field-manager",
            "kubectl-mesh",
            "-f",
            file.to_str().unwrap_or(""),
        ],
    )
    .ok();
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "--all"]).ok();
    assert_eq!(run.stdout.matches("unchanged").count(), 6, "{}", run.stdout);
    // Server dry run: validated by the server, nothing stored.
    let srv = start(tier);
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--all",
            "--dry-run=server",
        ],
    )
    .ok();
    assert_eq!(
        run.stdout.matches("created (server dry run)").count(),
        6,
        "{}",
        run.stdout
    );
    assert!(addresses(&srv, "cluster2").is_empty());
    assert!(ledger(&srv, "cluster2").is_empty());
}

fn a_lost_ledger_is_rebuilt_and_addresses_stay(tier) {
    let srv = start(tier);
    link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "adservice",
            "checkoutservice",
        ],
    )
    .ok();
    let before = addresses(&srv, "cluster2");
    assert!(srv.delete_path("cluster2", LEDGER));
    // A foreign entry took the next address in the meantime.
    srv.apply_yaml(
        "cluster2",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: legacy, namespace: other}\nspec: {hosts: [legacy.other.global], addresses: [240.0.0.3], resolution: STATIC, endpoints: [{address: 10.0.0.1}]}\n",
    )
    .expect("seed");
    link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "adservice",
            "checkoutservice",
            "currencyservice",
        ],
    )
    .ok();
    let after = addresses(&srv, "cluster2");
    assert_eq!(
        after["adservice.default.global"],
        before["adservice.default.global"]
    );
    assert_eq!(
        after["checkoutservice.default.global"],
        before["checkoutservice.default.global"]
    );
    assert_eq!(after["currencyservice.default.global"], "240.0.0.4");
    assert_eq!(ledger(&srv, "cluster2").len(), 3);
}

/// A pool outside 240.0.0.0/4 draws a warning, and one holding a Service's cluster IP in the
/// target is refused before any write (#18 item 6).
fn a_routable_pool_warns_and_one_holding_a_service_ip_is_refused(tier) {
    let srv = start(tier);
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let args = |pool: &'static str| {
        ["--from", "cluster1", "--to", "cluster2", "adservice", "--address-pool", pool]
    };
    let run = link(&srv, &args("10.96.0.0/16")).expect_code(2);
    assert!(
        run.stderr
            .starts_with("error: --address-pool: 10.96.0.0/16 contains 10.96."),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(", the cluster IP of Service ")
            && run.stderr.contains(" in context cluster2: give a range no Service uses"),
        "{}",
        run.stderr
    );
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster2").is_empty(), "{:?}", writes(emu, "cluster2"));
    }
    assert!(versions(&srv, "cluster2").is_empty());
    let run = link(&srv, &args("192.168.200.0/24")).ok();
    assert!(
        run.stderr.contains("--address-pool 192.168.200.0/24 is routable"),
        "{}",
        run.stderr
    );
    assert_eq!(
        addresses(&srv, "cluster2").get("adservice.default.global").map(String::as_str),
        Some("192.168.200.1")
    );
    // The default pool says nothing of the kind.
    let run = link(&srv, &["--from", "cluster1", "--to", "cluster2", "emailservice"]).ok();
    assert!(!run.stderr.contains("routable"), "{}", run.stderr);
}

fn an_exhausted_pool_fails_before_any_entry(tier) {
    let srv = start(tier);
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--all",
            "--address-pool",
            "240.0.0.0/30",
        ],
    )
    .expect_code(1);
    assert!(run.stderr.contains("exhausted"), "{}", run.stderr);
    if let Some(emu) = srv.emu() {
        assert!(
            writes(emu, "cluster2").is_empty(),
            "{:?}",
            writes(emu, "cluster2")
        );
    }
    assert!(versions(&srv, "cluster2").is_empty());
}

fn setup_dns_merges_and_undo_restores(tier) {
    let srv = start(tier);
    let original = srv
        .get_json(
            "cluster2",
            "/api/v1/namespaces/kube-system/configmaps/coredns",
        )
        .expect("coredns");
    let run = link(&srv, &["--to", "cluster2", "--setup-dns"]).ok();
    assert_eq!(
        run.stdout,
        "configmap/coredns configured (context cluster2)\n"
    );
    let cm = srv
        .get_json(
            "cluster2",
            "/api/v1/namespaces/kube-system/configmaps/coredns",
        )
        .expect("coredns");
    let corefile = cm["data"]["Corefile"].as_str().expect("corefile");
    assert!(corefile.starts_with(original["data"]["Corefile"].as_str().expect("orig")));
    assert!(
        corefile.contains("global:53 {\n    errors\n    cache 30\n    forward . 10.96.0.53\n}"),
        "{corefile}"
    );
    assert!(cm["metadata"]["annotations"]["kubectl-mesh/dns-original"].is_string());
    assert!(srv
        .get_json(
            "cluster1",
            "/api/v1/namespaces/kube-system/configmaps/coredns"
        )
        .expect("c1")["data"]["Corefile"]
        .as_str()
        .is_some_and(|c| !c.contains("global:53")));
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = link(&srv, &["--to", "cluster2", "--setup-dns"]).ok();
    assert_eq!(
        run.stdout,
        "configmap/coredns unchanged (context cluster2)\n"
    );
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster2").is_empty());
    }
    let again = srv
        .get_json(
            "cluster2",
            "/api/v1/namespaces/kube-system/configmaps/coredns",
        )
        .expect("coredns");
    assert_eq!(
        again["metadata"]["resourceVersion"],
        cm["metadata"]["resourceVersion"]
    );
    link(&srv, &["--to", "cluster2", "--setup-dns", "--undo"]).ok();
    let cm = srv
        .get_json(
            "cluster2",
            "/api/v1/namespaces/kube-system/configmaps/coredns",
        )
        .expect("coredns");
    assert_eq!(cm["data"], original["data"]);
    assert!(cm["metadata"]["annotations"]
        .get("kubectl-mesh/dns-original")
        .is_none());
}

fn setup_dns_on_kube_dns_keeps_other_stub_domains(tier) {
    let srv = start(tier);
    assert!(srv.delete_path(
        "cluster2",
        "/api/v1/namespaces/kube-system/configmaps/coredns"
    ));
    srv.apply_yaml(
        "cluster2",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-dns, namespace: kube-system}\ndata: {stubDomains: '{\"acme.local\": [\"1.2.3.4\"]}', upstreamNameservers: '[\"8.8.8.8\"]'}\n",
    )
    .expect("seed");
    link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "adservice",
            "--setup-dns",
        ],
    )
    .ok();
    let cm = srv
        .get_json(
            "cluster2",
            "/api/v1/namespaces/kube-system/configmaps/kube-dns",
        )
        .expect("kube-dns");
    let stubs: Value =
        serde_json::from_str(cm["data"]["stubDomains"].as_str().expect("stubs")).expect("json");
    assert_eq!(
        stubs,
        json!({"acme.local": ["1.2.3.4"], "global": ["10.96.0.53"]})
    );
    assert_eq!(cm["data"]["upstreamNameservers"], "[\"8.8.8.8\"]");
    link(&srv, &["--to", "cluster2", "--setup-dns", "--undo"]).ok();
    let cm = srv
        .get_json(
            "cluster2",
            "/api/v1/namespaces/kube-system/configmaps/kube-dns",
        )
        .expect("kube-dns");
    assert_eq!(cm["data"]["stubDomains"], "{\"acme.local\":[\"1.2.3.4\"]}");
}

/// AKS puts its managed `coredns` ConfigMap back, so with `coredns-custom` present the block
/// goes there, in a key of its own (#18 item 14); check reads it there; undo takes only it.
fn setup_dns_on_aks_writes_coredns_custom(tier) {
    let srv = start(tier);
    srv.apply_yaml(
        "cluster2",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: coredns-custom, namespace: kube-system}\ndata:\n  azurestack.server: |\n    azurestack.local:53 {\n        forward . 1.2.3.4\n    }\n",
    )
    .expect("seed");
    const CUSTOM: &str = "/api/v1/namespaces/kube-system/configmaps/coredns-custom";
    const COREDNS: &str = "/api/v1/namespaces/kube-system/configmaps/coredns";
    let before = srv.get_json("cluster2", COREDNS).expect("coredns");
    let original = srv.get_json("cluster2", CUSTOM).expect("custom");
    let run = link(&srv, &["--to", "cluster2", "--setup-dns"]).ok();
    assert_eq!(
        run.stdout,
        "configmap/coredns-custom configured (context cluster2)\n"
    );
    assert!(run.stderr.contains("AKS's managed CoreDNS"), "{}", run.stderr);
    let custom = srv.get_json("cluster2", CUSTOM).expect("custom");
    assert_eq!(
        custom["data"]["kubectl-mesh-global.server"]
            .as_str()
            .map(|b| b.contains("global:53 {\n    errors\n    cache 30\n    forward . 10.96.0.53\n}")),
        Some(true),
        "{custom}"
    );
    assert_eq!(custom["data"]["azurestack.server"], original["data"]["azurestack.server"]);
    let after = srv.get_json("cluster2", COREDNS).expect("coredns");
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]);
    let run = link(&srv, &["--to", "cluster2", "--setup-dns"]).ok();
    assert_eq!(
        run.stdout,
        "configmap/coredns-custom unchanged (context cluster2)\n"
    );
    let run = link(&srv, &["check", "--from", "cluster1", "--to", "cluster2"]).ok();
    assert!(
        run.stdout.contains("forwards to istiocoredns (10.96.0.53)"),
        "{}",
        run.stdout
    );
    link(&srv, &["--to", "cluster2", "--setup-dns", "--undo"]).ok();
    let undone = srv.get_json("cluster2", CUSTOM).expect("custom");
    assert_eq!(undone["data"], original["data"]);
}

fn check_reports_every_prerequisite(tier) {
    let srv = start(tier);
    link(&srv, &["--to", "cluster2", "--setup-dns"]).ok();
    let run = link(&srv, &["check", "--from", "cluster1", "--to", "cluster2"]).ok();
    assert_eq!(run.stdout.lines().count(), 6, "{}", run.stdout);
    assert!(
        run.stdout.lines().all(|l| l.starts_with("✔ ")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Istio 1.7.8 in cluster1, 1.7.8 in cluster2"),
        "{}",
        run.stdout
    );

    // Istio 1.9 in cluster1, no stub domain in cluster1, different roots: exit 3.
    srv.apply_yaml(
        "cluster1",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: istiod, namespace: istio-system}\nspec: {selector: {matchLabels: {app: istiod}}, template: {metadata: {labels: {app: istiod}}, spec: {containers: [{name: discovery, image: 'docker.io/istio/pilot:1.9.0'}]}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-ca-root-cert, namespace: istio-system}\ndata: {root-cert.pem: other}\n",
    )
    .expect("seed");
    let run = link(&srv, &["check", "--from", "cluster2", "--to", "cluster1"]).expect_code(3);
    let failed: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("× ")).collect();
    assert_eq!(failed.len(), 3, "{}", run.stdout);
    assert!(
        failed[0].contains("broken from 1.8.6") && failed[0].contains("create-remote-secret"),
        "{}",
        failed[0]
    );
    assert!(failed[1].contains("--setup-dns"), "{}", failed[1]);
    assert!(failed[2].contains("root certificates"), "{}", failed[2]);
    assert!(
        run.stderr.contains("3 of 6 checks failed"),
        "{}",
        run.stderr
    );
}

fn a_link_from_another_cluster_is_not_taken_over(tier) {
    let srv = Server::builder(tier)
        .clusters(&["cluster1", "cluster2", "cluster3"])
        .seed_yaml(&boutique())
        .seed_yaml(&istio("cluster3", "203.0.113.3"))
        .seed_yaml(&service("cluster3", "adservice", "grpc", 9555, 9555))
        .start();
    link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "adservice"],
    )
    .ok();
    let run = link(
        &srv,
        &["--from", "cluster3", "--to", "cluster2", "adservice"],
    )
    .expect_code(1);
    assert!(
        run.stdout.contains("skipped: linked from cluster1"),
        "{}",
        run.stdout
    );
    let se = srv
        .get_json("cluster2", &se_path("adservice-global"))
        .expect("se");
    assert_eq!(se["spec"]["endpoints"][0]["address"], GW1);
}

fn label_selectors_pick_the_services(tier) {
    let srv = start(tier);
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "-l",
            "app in (adservice,emailservice)",
        ],
    )
    .ok();
    assert_eq!(run.stdout.matches(" created").count(), 2, "{}", run.stdout);
    let names: Vec<String> = addresses(&srv, "cluster2").into_keys().collect();
    assert_eq!(
        names,
        vec!["adservice.default.global", "emailservice.default.global"]
    );
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--unlink",
            "-l",
            "app=adservice",
            "-o",
            "name",
        ],
    )
    .ok();
    assert!(
        run.stdout.is_empty(),
        "deleted objects are not printed: {}",
        run.stdout
    );
    assert_eq!(addresses(&srv, "cluster2").len(), 1);
    let run = link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "emailservice",
            "-o",
            "json",
        ],
    )
    .ok();
    let obj: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(obj["kind"], "ServiceEntry");
    assert_eq!(obj["spec"]["addresses"], json!(["240.0.0.2"]));
}
}

/// What a real istiod in cluster2 makes of a link: a sidecar there gets a cluster for the
/// `.global` host whose only endpoint is cluster1's gateway on 15443.
#[test]
fn real_istiod_routes_a_linked_service_to_the_remote_gateway() {
    if !Tier::Real.enabled() {
        return;
    }
    const CLUSTER: &str = "outbound|9555||adservice.default.global";
    let srv = Server::builder(Tier::Real)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&boutique())
        .seed_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: client}\n")
        .istiod()
        .start();
    let real = srv.real().expect("real tier");
    real.wait_xds("cluster2", "client", "no link yet", |d| {
        !d["clusters"].as_array().is_none_or(Vec::is_empty) && xds_cluster(d, CLUSTER).is_none()
    });
    link(
        &srv,
        &["--from", "cluster1", "--to", "cluster2", "adservice"],
    )
    .ok();
    let want = format!("{GW1}:15443");
    let dump = real.wait_xds(
        "cluster2",
        "client",
        "adservice.default.global via GW1, with its route",
        // RDS may come a push after CDS and EDS: wait for all three, not only the endpoint.
        |d| {
            xds_endpoints(d, CLUSTER) == [want.as_str()]
                && d["routes"].as_array().is_some_and(|rs| {
                    rs.iter()
                        .any(|r| r["virtualHost"] == "adservice.default.global:9555")
                })
        },
    );
    let cluster = xds_cluster(&dump, CLUSTER).expect("cluster");
    assert_eq!(cluster["type"], "STRICT_DNS", "{cluster:#}");
    // The HTTP route of port 9555 answers to the host and to the address the ledger gave it.
    let route = dump["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["virtualHost"] == "adservice.default.global:9555")
        .unwrap_or_else(|| panic!("no route for adservice.default.global: {dump:#}"));
    assert_eq!(route["cluster"], CLUSTER, "{route:#}");
    assert_eq!(route["config"], "9555", "{route:#}");
    let domains = route["domains"].as_array().expect("domains");
    for want in ["adservice.default.global", "240.0.0.1"] {
        assert!(domains.iter().any(|d| d == want), "{want}: {route:#}");
    }

    // Unlinking takes the cluster away again.
    link(
        &srv,
        &[
            "--from",
            "cluster1",
            "--to",
            "cluster2",
            "--unlink",
            "adservice",
        ],
    )
    .ok();
    real.wait_xds("cluster2", "client", "no adservice.default.global", |d| {
        xds_cluster(d, CLUSTER).is_none()
    });
}

/// A failed link takes back the namespace it created in the target (#18 item 16): the
/// services live in namespace `shop`, which cluster2 does not have, and the second entry's
/// write is refused.
#[test]
fn a_failed_link_deletes_the_namespace_it_created() {
    let mut seed = boutique();
    seed.push_str("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop, annotations: {kube-emu/cluster: cluster1}}\n");
    for name in ["cartservice", "emailservice"] {
        seed.push_str(
            &service("cluster1", name, "grpc", 7070, 7070)
                .replace("namespace: default", "namespace: shop"),
        );
    }
    let srv = Server::builder(Tier::Emu)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed)
        .start();
    let emu = srv.emu().expect("kube-emu");
    emu.inject(
        "cluster2",
        Fault::new("PATCH", "/serviceentries/", FaultAction::Status(403)).nth(2),
    );
    let args = [
        "--from", "cluster1", "--to", "cluster2", "-n", "shop", "--all",
    ];
    let run = link(&srv, &args).expect_code(1);
    assert!(
        run.stderr.contains("namespace/shop created in cluster2"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the namespace it created deleted"),
        "{}",
        run.stderr
    );
    assert!(srv
        .get_json("cluster2", "/api/v1/namespaces/shop")
        .is_none());
    assert!(srv
        .list_json("cluster2", SE_LIST)
        .iter()
        .all(|se| se["metadata"]["namespace"] != "shop"));
    // Then it works, and creates the namespace again.
    link(&srv, &args).ok();
    assert!(srv
        .get_json("cluster2", "/api/v1/namespaces/shop")
        .is_some());
}

/// Holds the next `held` ServiceEntry applies to cluster2 for 1.5 s each, starts mesh-link
/// with `args`, sends it `sig` once the address ledger (written before them) is in, and waits
/// for its end.
fn signal_during_applies(srv: &Server, held: usize, args: &[&str], sig: &str) -> common::Run {
    let emu = srv.emu().expect("kube-emu");
    for _ in 0..held {
        emu.inject(
            "cluster2",
            Fault::new(
                "PATCH",
                "/serviceentries/",
                FaultAction::Delay(std::time::Duration::from_millis(1500)),
            ),
        );
    }
    let child = spawn(srv, args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !emu
        .requests("cluster2")
        .iter()
        .any(|r| r.path.contains("/configmaps") && r.method != "GET")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the ledger was never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    child.wait_with_output().expect("wait").into()
}

/// A signal during a link (#18 item 17): the applies in flight finish, no new one starts, and
/// the direction is rolled back as for a failure: no entry, no reserved address.
#[test]
fn a_signal_during_a_link_rolls_it_back() {
    let mut seed = boutique();
    for n in 0..20 {
        seed.push_str(&service(
            "cluster1",
            &format!("extra{n}"),
            "grpc",
            7000 + n,
            7000 + n,
        ));
    }
    let srv = Server::builder(Tier::Emu)
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&seed)
        .start();
    // Hold every apply the first round sends (16 in flight), so the signal comes mid-way.
    let args = ["--from", "cluster1", "--to", "cluster2", "--all"];
    let run = signal_during_applies(&srv, 16, &args, "TERM").expect_code(1);
    assert!(
        run.stderr.contains("interrupted by SIGTERM: not written"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the entries written were rolled back and their addresses released"),
        "{}",
        run.stderr
    );
    assert!(
        addresses(&srv, "cluster2").is_empty(),
        "{:?}",
        addresses(&srv, "cluster2")
    );
    assert!(ledger(&srv, "cluster2").is_empty());
}

/// A signal during the first direction of a two-way link: that direction finishes, the second
/// is never started, and the exit is 4 with exactly that said.
#[test]
fn a_signal_between_the_directions_of_a_two_way_link_exits_4() {
    let srv = start(Tier::Emu);
    let args = [
        "--from",
        "cluster1",
        "--to",
        "cluster2",
        "--all",
        "--bidirectional",
    ];
    let run = signal_during_applies(&srv, 6, &args, "INT").expect_code(4);
    assert!(
        run.stderr.contains(
            "interrupted by SIGINT: cluster1 to cluster2 was written, cluster2 to cluster1 was not"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(addresses(&srv, "cluster2").len(), 6);
    assert!(addresses(&srv, "cluster1").is_empty());
}
