//! End to end: `kubectl mesh-vm` against an Istio install (mesh config, injector values, root
//! certificate, an east-west gateway with a load-balancer address, istiod), with Istio's real CRDs
//! validating every WorkloadGroup: on kube-emu and on a real kube-apiserver (`on_both_tiers!`),
//! plus real-tier checks against a running istiod and side by side with istioctl.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{api_requests, kubectl, plugin, writes, Run, Server, Tier, ISTIO};
use serde_json::Value;

/// Istio's VM-integration example group, as `mesh-vm group` makes it.
const ANALYTICS_ARGS: &[&str] = &[
    "group",
    "analytics",
    "-n",
    "vm",
    "-l",
    "app=analytics,version=v0",
    "--ports",
    "http=8080,grpc:8082,tcp=8083",
    "--network",
    "network1",
    "-s",
    "default",
    "--probe-http",
    "127.0.0.1:8080/",
];

fn istio(tier: Tier) -> Server {
    Server::builder(tier).seed_yaml(ISTIO).start()
}

/// An install with the analytics group already applied by `mesh-vm group`.
fn istio_with_group(tier: Tier) -> Server {
    let srv = istio(tier);
    plugin(Some(&srv), "vm", ANALYTICS_ARGS).ok();
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    srv
}

fn vm(srv: &Server, args: &[&str]) -> Run {
    plugin(Some(srv), "vm", args)
}

const GATEWAY_PATH: &str = "/api/v1/namespaces/istio-system/services/istio-eastwestgateway";

/// Replaces the east-west gateway Service, status included. A real API server keeps a Service's
/// status when the Service is replaced (status is written through its own subresource), so the
/// old Service is deleted first: the new one has exactly the address `yaml` gives it.
fn reseed_gateway(srv: &Server, yaml: &str) {
    srv.delete_path("cluster1", GATEWAY_PATH);
    srv.apply_yaml("cluster1", yaml)
        .expect("reseed the gateway");
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The claims of a JWT (base64url without padding, decoded by hand: no extra dependency).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let mut bits = 0u32;
    let mut n = 0;
    let mut bytes = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            bytes.push((bits >> n) as u8);
        }
    }
    serde_json::from_slice(&bytes).expect("claims")
}

const FIVE: [&str; 5] = [
    "cluster.env",
    "hosts",
    "istio-token",
    "mesh.yaml",
    "root-cert.pem",
];

/// cluster.env of the analytics group on this install, by the guide's rules (section 3b):
/// ports sorted numerically, lines sorted byte-wise, every value single-quoted.
const ENV_DEFAULT: &str = "CANONICAL_REVISION='v0'
CANONICAL_SERVICE='analytics'
ISTIO_INBOUND_PORTS='8080,8082,8083'
ISTIO_LOCAL_EXCLUDE_PORTS='22,15090,15021,15020'
ISTIO_METAJSON_LABELS='{\"app\":\"analytics\",\"service.istio.io/canonical-name\":\"analytics\",\"service.istio.io/canonical-revision\":\"v0\",\"version\":\"v0\"}'
ISTIO_META_CLUSTER_ID='cluster1'
ISTIO_META_DNS_CAPTURE='true'
ISTIO_META_MESH_ID='mesh1'
ISTIO_META_NETWORK='network1'
ISTIO_META_POD_PORTS='[{\"name\":\"grpc\",\"containerPort\":8082,\"protocol\":\"\"},{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"\"},{\"name\":\"tcp\",\"containerPort\":8083,\"protocol\":\"\"}]'
ISTIO_META_WORKLOAD_NAME='analytics'
ISTIO_NAMESPACE='vm'
ISTIO_SERVICE='analytics.vm'
ISTIO_SERVICE_CIDR='*'
POD_NAMESPACE='vm'
SERVICE_ACCOUNT='default'
TRUST_DOMAIN='cluster.local'
";

/// mesh.yaml: the mesh config's defaultConfig plus the proxy metadata, as go-yaml writes it.
const MESH_DEFAULT: &str = "defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  meshId: mesh1
  proxyMetadata:
    CANONICAL_REVISION: v0
    CANONICAL_SERVICE: analytics
    ISTIO_META_CLUSTER_ID: cluster1
    ISTIO_META_DNS_CAPTURE: \"true\"
    ISTIO_META_MESH_ID: mesh1
    ISTIO_META_NETWORK: network1
    ISTIO_META_POD_PORTS: '[{\"name\":\"grpc\",\"containerPort\":8082,\"protocol\":\"\"},{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"\"},{\"name\":\"tcp\",\"containerPort\":8083,\"protocol\":\"\"}]'
    ISTIO_META_WORKLOAD_NAME: analytics
    ISTIO_METAJSON_LABELS: '{\"app\":\"analytics\",\"service.istio.io/canonical-name\":\"analytics\",\"service.istio.io/canonical-revision\":\"v0\",\"version\":\"v0\"}'
    POD_NAMESPACE: vm
    SERVICE_ACCOUNT: default
    TRUST_DOMAIN: cluster.local
  readinessProbe:
    httpGet:
      host: 127.0.0.1
      path: /
      port: 8080
  tracing:
    zipkin:
      address: zipkin.istio-system:9411
";

const ROOT_CERT: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBfakeROOTcertificateFORtests\n-----END CERTIFICATE-----\n";

fn env_with(extra: &[&str], without: &[&str]) -> String {
    let mut lines: Vec<String> = ENV_DEFAULT
        .lines()
        .filter(|l| !without.iter().any(|w| l.starts_with(w)))
        .map(String::from)
        .collect();
    lines.extend(extra.iter().map(|s| s.to_string()));
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn group_client_dry_run_prints_only_the_group_without_a_cluster() {
    let run = plugin(
        None,
        "vm",
        &[
            "group",
            "foo",
            "-n",
            "bar",
            "-p",
            "grpc=3550,http=8080",
            "-l",
            "app=foo",
            "-s",
            "sa",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    )
    .ok();
    assert_eq!(
        run.stdout,
        "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata:\n  labels:\n    app.kubernetes.io/managed-by: kubectl-mesh\n  name: foo\n  namespace: bar\nspec:\n  metadata:\n    labels:\n      app: foo\n  template:\n    ports:\n      grpc: 3550\n      http: 8080\n    serviceAccount: sa\n"
    );
}

const NO_ADDRESS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: istio-eastwestgateway, namespace: istio-system}\nspec:\n  type: LoadBalancer\n  ports:\n  - {name: tls-istiod, port: 15012, targetPort: 15012}\n";

on_both_tiers! {
fn group_makes_the_vm_integration_example_and_istio_accepts_it(tier) {
    let srv = istio(tier);
    let run = kubectl(&srv, &[&["mesh-vm"][..], ANALYTICS_ARGS].concat()).ok();
    // The namespace's default ServiceAccount exists, so only the group is written.
    assert_eq!(
        run.stdout,
        "workloadgroup.networking.istio.io/analytics created\n"
    );
    let got = kubectl(&srv, &["get", "wg", "analytics", "-n", "vm", "-o", "json"]).ok();
    let wg: Value = serde_json::from_str(&got.stdout).expect("json");
    assert_eq!(wg["apiVersion"], "networking.istio.io/v1");
    assert_eq!(
        wg["spec"],
        serde_json::json!({
            "metadata": {"labels": {"app": "analytics", "version": "v0"}},
            "template": {"ports": {"http": 8080, "grpc": 8082, "tcp": 8083}, "network": "network1", "serviceAccount": "default"},
            "probe": {"httpGet": {"host": "127.0.0.1", "port": 8080, "path": "/"}}
        })
    );
    // Running it again changes nothing.
    let again = vm(&srv, ANALYTICS_ARGS).ok();
    assert_eq!(
        again.stdout,
        "workloadgroup.networking.istio.io/analytics unchanged\n"
    );
}

fn group_creates_a_missing_service_account_and_reads_files(tier) {
    let srv = istio(tier);
    let run = vm(
        &srv,
        &[
            "group", "web", "-n", "vm", "-s", "web-vm", "-p", "http:80", "--probe", "tcp:80",
        ],
    )
    .ok();
    assert_eq!(
        run.stdout,
        "serviceaccount/web-vm created\nworkloadgroup.networking.istio.io/web created\n"
    );
    let sa = srv
        .get_json("cluster1", "/api/v1/namespaces/vm/serviceaccounts/web-vm")
        .expect("service account");
    assert_eq!(
        sa["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-mesh"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wg.yaml");
    fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: fromfile, namespace: vm}\nspec:\n  metadata: {labels: {app: fromfile}}\n  template: {ports: {grpc: 3550}, serviceAccount: web-vm}\n  probe: {grpc: {port: 3550}, periodSeconds: 5}\n",
    )
    .expect("write");
    let run = vm(&srv, &["group", "-f", file.to_str().unwrap_or("")]).ok();
    assert_eq!(
        run.stdout,
        "workloadgroup.networking.istio.io/fromfile created\n"
    );
}

fn group_server_dry_run_validates_and_stores_nothing(tier) {
    let srv = istio(tier);
    let run = vm(
        &srv,
        &[ANALYTICS_ARGS, &["--dry-run=server", "-o", "name"]].concat(),
    )
    .ok();
    assert_eq!(run.stdout, "workloadgroup.networking.istio.io/analytics\n");
    assert!(srv
        .get_json(
            "cluster1",
            "/apis/networking.istio.io/v1/namespaces/vm/workloadgroups/analytics"
        )
        .is_none());
}

fn malformed_input_exits_2_with_one_line_and_no_request(tier) {
    let srv = istio_with_group(tier);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out = out.to_str().unwrap_or("");
    let bad_file = dir.path().join("bad.yaml");
    fs::write(
        &bad_file,
        "kind: WorkloadGroup\nmetadata: {name: x}\nspec:\n  template: {prots: {http: 80}}\n",
    )
    .expect("write");
    let bad_file = bad_file.to_str().unwrap_or("");
    let good_file = dir.path().join("good.yaml");
    fs::write(
        &good_file,
        "kind: WorkloadGroup\nmetadata: {name: x, namespace: vm}\nspec: {}\n",
    )
    .expect("write");
    let good_file = good_file.to_str().unwrap_or("");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["group", "x", "--ports", "grpc:"], "--ports"),
        (vec!["group", "x", "--ports", "grpc=abc"], "--ports"),
        (vec!["group", "x", "--ports", "http=80,web=81"], "--ports"),
        (
            vec!["group", "x", "--probe", "udp:53"],
            "unknown probe kind",
        ),
        (
            vec!["group", "x", "--probe-http", "8080", "--probe-tcp", "22"],
            "--probe",
        ),
        (vec!["group", "-f", bad_file], "spec.template.prots"),
        (vec!["group", "-n", "other", "-f", good_file], "--namespace"),
        (
            vec![
                "files",
                "analytics",
                "-n",
                "vm",
                "--out-dir",
                out,
                "--token-duration",
                "1y",
            ],
            "--token-duration",
        ),
        (
            vec![
                "files",
                "analytics",
                "-n",
                "vm",
                "--out-dir",
                out,
                "--token-duration",
                "5m",
            ],
            "at least 10m",
        ),
        (
            vec![
                "files",
                "analytics",
                "-n",
                "vm",
                "--out-dir",
                out,
                "--wait",
                "soon",
            ],
            "--wait",
        ),
        (
            vec![
                "files",
                "analytics",
                "-n",
                "vm",
                "--out-dir",
                out,
                "--internal-ip",
                "10.0.0.1",
                "--external-ip",
                "10.0.0.2",
            ],
            "--external-ip",
        ),
        (
            vec![
                "files",
                "analytics",
                "-n",
                "vm",
                "--out-dir",
                out,
                "--ingress-ip",
                "gw.example.com",
            ],
            "--ingress-ip",
        ),
        (
            vec!["files", "analytics", "-n", "Bad_NS", "--out-dir", out],
            "--namespace",
        ),
        (vec!["group", "x", "--mtls", "maybe"], "--mtls"),
        (vec!["group", "x", "--force"], "--mtls"),
        (
            vec!["group", "x", "-n", "vm", "-p", "http=80", "--mtls", "strict"],
            "has no labels (-l): a PeerAuthentication without a selector",
        ),
        (vec!["group", "x", "-i", "Bad_NS"], "--istio-namespace"),
    ];
    for (args, needle) in cases {
        let run = vm(&srv, &args).expect_code(2);
        let line = run.stderr.trim_end();
        assert!(!line.contains('\n'), "{args:?}: one line, got {line}");
        assert!(line.starts_with("error: "), "{args:?}: {line}");
        assert!(line.contains(needle), "{args:?}: {needle} not in {line}");
        if let Some(emu) = srv.emu() {
            assert!(
                api_requests(emu, "cluster1").is_empty(),
                "{args:?} sent requests"
            );
        }
    }
    assert!(
        !Path::new(out).exists(),
        "no output directory for bad input"
    );
}

fn files_writes_the_five_files_private_and_byte_exact(tier) {
    let srv = istio_with_group(tier);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("analytics");
    let run = vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
        ],
    )
    .ok();
    assert_eq!(listing(&dir), FIVE);
    assert_eq!(read(&dir, "cluster.env"), ENV_DEFAULT);
    assert_eq!(read(&dir, "mesh.yaml"), MESH_DEFAULT);
    assert_eq!(read(&dir, "root-cert.pem"), ROOT_CERT);
    assert_eq!(
        read(&dir, "hosts"),
        "203.0.113.10 istiod.istio-system.svc\n"
    );
    let token = read(&dir, "istio-token");
    let c = claims(&token);
    assert_eq!(c["aud"], serde_json::json!(["istio-ca"]));
    assert_eq!(c["sub"], "system:serviceaccount:vm:default");
    assert_eq!(
        c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0),
        3600
    );
    assert_eq!(mode(&dir), 0o700);
    for f in FIVE {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // The token's expiry is printed, never the token.
    assert!(!run.stdout.contains(&token) && !run.stderr.contains(&token));
    assert!(run.stderr.contains("cluster ID: cluster1 (from global.multiCluster.clusterName in ConfigMap istio-system/istio-sidecar-injector)"), "{}", run.stderr);
    assert!(run.stderr.contains("network: network1 (from global.network in ConfigMap istio-system/istio-sidecar-injector)\n"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "path: pod IPs directly (the VMs and the cluster are both on network network1)\n"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("istio-token: ServiceAccount vm/default, audience istio-ca, expires "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(in 1h)"), "{}", run.stderr);
    assert!(run.stdout.contains("cluster.env written"), "{}", run.stdout);

    if let Some(emu) = srv.emu() {
        // Nine requests: the group, three ConfigMaps, the Istio namespace and istiod (for the
        // network; the injector values, already read for the cluster ID, name it), the gateway,
        // the ServiceAccount, the token.
        let reqs: Vec<String> = api_requests(emu, "cluster1")
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(reqs.len(), 9, "{reqs:#?}");
        // The only write is the TokenRequest.
        let w = writes(emu, "cluster1");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].path,
            "/api/v1/namespaces/vm/serviceaccounts/default/token"
        );
    }

    // Again, into the same directory: same files, new token.
    vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
        ],
    )
    .ok();
    assert_eq!(read(&dir, "cluster.env"), ENV_DEFAULT);
    assert_ne!(read(&dir, "istio-token"), token);
}

fn files_autoregister(tier) {
    let srv = istio_with_group(tier);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
            "--autoregister",
        ],
    )
    .ok();
    assert_eq!(
        read(&dir, "cluster.env"),
        env_with(&["ISTIO_META_AUTO_REGISTER_GROUP='analytics'"], &[])
    );
    assert_eq!(
        read(&dir, "mesh.yaml"),
        MESH_DEFAULT.replace(
            "    CANONICAL_SERVICE: analytics\n",
            "    CANONICAL_SERVICE: analytics\n    ISTIO_META_AUTO_REGISTER_GROUP: analytics\n"
        )
    );
}

fn files_for_a_revision(tier) {
    let srv = istio_with_group(tier);
    // A canary control plane: its own mesh config (no discoveryAddress), injector and istiod.
    srv.apply_yaml(
        "cluster1",
        &ISTIO
            .split("---")
            .take(2)
            .collect::<Vec<_>>()
            .join("---")
            .replace("name: istio,", "name: istio-canary,")
            .replace(
                "name: istio-sidecar-injector,",
                "name: istio-sidecar-injector-canary,",
            )
            .replace(
                "      discoveryAddress: istiod.istio-system.svc:15012\n",
                "",
            ),
    )
    .expect("seed canary");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
            "--revision",
            "canary",
        ],
    )
    .ok();
    assert_eq!(
        read(&dir, "cluster.env"),
        env_with(&["CA_ADDR='istiod-canary.istio-system.svc:15012'"], &[])
    );
    assert_eq!(
        read(&dir, "mesh.yaml"),
        MESH_DEFAULT.replace("istiod.istio-system", "istiod-canary.istio-system")
    );
    assert_eq!(
        read(&dir, "hosts"),
        "203.0.113.10 istiod-canary.istio-system.svc\n"
    );
}

fn files_external_ip(tier) {
    let srv = istio_with_group(tier);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
            "--external-ip",
            "198.51.100.7",
        ],
    )
    .ok();
    assert_eq!(
        read(&dir, "cluster.env"),
        env_with(
            &[
                "ISTIO_SVC_IP='198.51.100.7'",
                "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION='true'"
            ],
            &[]
        )
    );
    assert_eq!(read(&dir, "mesh.yaml"), MESH_DEFAULT);
}

fn files_without_dns_capture(tier) {
    let srv = istio_with_group(tier);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
            "--capture-dns=false",
        ],
    )
    .ok();
    assert_eq!(
        read(&dir, "cluster.env"),
        env_with(&[], &["ISTIO_META_DNS_CAPTURE="])
    );
    assert_eq!(
        read(&dir, "mesh.yaml"),
        MESH_DEFAULT.replace("    ISTIO_META_DNS_CAPTURE: \"true\"\n", "")
    );
}

fn cluster_id_falls_back_to_istiod_then_to_kubernetes(tier) {
    let srv = istio_with_group(tier);
    srv.apply_yaml(
        "cluster1",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\ndata:\n  values: '{\"global\":{\"multiCluster\":{\"clusterName\":\"\"}}}'\n",
    )
    .expect("reseed");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let d = dir.to_str().unwrap_or("");
    let run = vm(&srv, &["files", "analytics", "-n", "vm", "--out-dir", d]).ok();
    assert!(
        run.stderr.contains(
            "cluster ID: from-istiod (from the CLUSTER_ID env of Deployment istio-system/istiod)"
        ),
        "{}",
        run.stderr
    );
    assert!(read(&dir, "cluster.env").contains("ISTIO_META_CLUSTER_ID='from-istiod'\n"));

    assert!(srv.delete_path(
        "cluster1",
        "/apis/apps/v1/namespaces/istio-system/deployments/istiod"
    ));
    let run = vm(&srv, &["files", "analytics", "-n", "vm", "--out-dir", d]).ok();
    assert!(
        run.stderr
            .contains("cluster ID: Kubernetes (Istio's default"),
        "{}",
        run.stderr
    );
    assert!(read(&dir, "cluster.env").contains("ISTIO_META_CLUSTER_ID='Kubernetes'\n"));

    let run = vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            d,
            "--cluster-id",
            "vm-cluster",
        ],
    )
    .ok();
    assert!(
        run.stderr
            .contains("cluster ID: vm-cluster (from --cluster-id)"),
        "{}",
        run.stderr
    );
}

fn a_gateway_without_an_address_fails_and_writes_nothing(tier) {
    let srv = istio_with_group(tier);
    reseed_gateway(&srv, NO_ADDRESS);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let d = dir.to_str().unwrap_or("");
    let run = vm(&srv, &["files", "analytics", "-n", "vm", "--out-dir", d]).expect_code(1);
    assert!(run.stderr.contains("\nerror: no address for the VM to reach istiod through: Service istio-system/istio-eastwestgateway has no load-balancer IP"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-empty-hosts"), "{}", run.stderr);
    assert!(!dir.exists(), "no directory, no files");
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster1").is_empty(), "no token minted");
    }

    // istioctl's behaviour, on request: an empty hosts file and a warning.
    let run = vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            d,
            "--allow-empty-hosts",
        ],
    )
    .ok();
    assert!(
        run.stderr.contains(
            "Warning: Service istio-system/istio-eastwestgateway has no load-balancer IP"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(read(&dir, "hosts"), "");

    // externalIPs are the second choice.
    reseed_gateway(&srv, &format!("{NO_ADDRESS}  externalIPs: [192.0.2.44]\n"));
    vm(&srv, &["files", "analytics", "-n", "vm", "--out-dir", d]).ok();
    assert_eq!(read(&dir, "hosts"), "192.0.2.44 istiod.istio-system.svc\n");

    // refresh with no address: exit 1 and nothing rewritten, or, with --allow-empty-hosts, a
    // new token and the old hosts kept.
    reseed_gateway(&srv, NO_ADDRESS);
    let token = read(&dir, "istio-token");
    vm(&srv, &["refresh", "analytics", "-n", "vm", "--out-dir", d]).expect_code(1);
    assert_eq!(read(&dir, "istio-token"), token);
    let run = vm(
        &srv,
        &[
            "refresh",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            d,
            "--allow-empty-hosts",
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("hosts left as it was"),
        "{}",
        run.stdout
    );
    assert_eq!(read(&dir, "hosts"), "192.0.2.44 istiod.istio-system.svc\n");
    assert_ne!(read(&dir, "istio-token"), token);
}

fn wait_polls_until_the_gateway_gets_an_address(tier) {
    let srv = istio_with_group(tier);
    reseed_gateway(&srv, NO_ADDRESS);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let d = dir.to_str().unwrap_or("").to_string();
    std::thread::scope(|s| {
        let runner = s.spawn(|| {
            vm(
                &srv,
                &[
                    "files",
                    "analytics",
                    "-n",
                    "vm",
                    "--out-dir",
                    &d,
                    "--wait",
                    "20s",
                ],
            )
        });
        std::thread::sleep(Duration::from_millis(1500));
        srv.apply_yaml(
            "cluster1",
            &format!(
                "{NO_ADDRESS}status:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.99\n"
            ),
        )
        .expect("address");
        let run = runner.join().expect("join").ok();
        assert!(
            run.stderr.contains("gateway: 203.0.113.99"),
            "{}",
            run.stderr
        );
    });
    assert_eq!(
        read(&dir, "hosts"),
        "203.0.113.99 istiod.istio-system.svc\n"
    );
    if let Some(emu) = srv.emu() {
        let polls = api_requests(emu, "cluster1")
            .iter()
            .filter(|r| r.path.ends_with("/services/istio-eastwestgateway"))
            .count();
        assert!(polls >= 2, "polled {polls} times");
    }
}

fn a_hostname_gateway_is_resolved_with_a_warning(tier) {
    let srv = istio_with_group(tier);
    reseed_gateway(
        &srv,
        &format!("{NO_ADDRESS}status:\n  loadBalancer:\n    ingress:\n    - hostname: localhost\n"),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let run = vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
        ],
    )
    .ok();
    assert!(run.stderr.contains("Warning: Service istio-system/istio-eastwestgateway has a load-balancer hostname (localhost), resolved to 127.0.0.1; the address may change"), "{}", run.stderr);
    assert_eq!(read(&dir, "hosts"), "127.0.0.1 istiod.istio-system.svc\n");
}

fn a_missing_root_certificate_names_the_configmap_and_why(tier) {
    let srv = istio_with_group(tier);
    assert!(srv.delete_path(
        "cluster1",
        "/api/v1/namespaces/vm/configmaps/istio-ca-root-cert"
    ));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let run = vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
        ],
    )
    .expect_code(1);
    assert!(
        run.stderr
            .contains("ConfigMap istio-ca-root-cert not found in namespace vm"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("istiod may not be running"),
        "{}",
        run.stderr
    );
    assert!(!dir.exists());
}

fn the_output_directory_is_guarded(tier) {
    let srv = istio_with_group(tier);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("shared");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("notes.txt"), "mine").expect("write");
    let d = dir.to_str().unwrap_or("");
    let run = vm(&srv, &["files", "analytics", "-n", "vm", "--out-dir", d]).expect_code(2);
    assert!(
        run.stderr.contains("holds other files (notes.txt)"),
        "{}",
        run.stderr
    );
    if let Some(emu) = srv.emu() {
        assert!(api_requests(emu, "cluster1").is_empty());
    }
    vm(
        &srv,
        &["files", "analytics", "-n", "vm", "--out-dir", d, "--force"],
    )
    .ok();
    assert_eq!(read(&dir, "notes.txt"), "mine");
    assert_eq!(mode(&dir.join("istio-token")), 0o600);

    // A symlink where a file goes is never followed.
    let clean = tmp.path().join("clean");
    fs::create_dir(&clean).expect("mkdir");
    let victim = tmp.path().join("victim");
    fs::write(&victim, "untouched").expect("write");
    std::os::unix::fs::symlink(&victim, clean.join("istio-token")).expect("symlink");
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            clean.to_str().unwrap_or(""),
        ],
    )
    .expect_code(2);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    if let Some(emu) = srv.emu() {
        assert!(api_requests(emu, "cluster1").is_empty());
    }
    assert_eq!(fs::read_to_string(&victim).expect("read"), "untouched");
    assert_eq!(listing(&clean), vec!["istio-token".to_string()]);
}

fn refresh_rewrites_only_the_token_and_hosts(tier) {
    let srv = istio_with_group(tier);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let d = dir.to_str().unwrap_or("");
    vm(&srv, &["files", "analytics", "-n", "vm", "--out-dir", d]).ok();
    let before: Vec<(String, String)> = FIVE
        .iter()
        .map(|f| (f.to_string(), read(&dir, f)))
        .collect();
    let mtimes: Vec<_> = ["cluster.env", "mesh.yaml", "root-cert.pem"]
        .iter()
        .map(|f| {
            fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .expect("mtime")
        })
        .collect();
    // The gateway moved, and the cluster's mesh config changed (refresh must not pick that up).
    srv.apply_yaml(
        "cluster1",
        "apiVersion: v1\nkind: Service\nmetadata: {name: istio-eastwestgateway, namespace: istio-system}\nspec:\n  type: LoadBalancer\n  ports:\n  - {name: tls-istiod, port: 15012, targetPort: 15012}\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.20\n",
    )
    .expect("move gateway");
    std::thread::sleep(Duration::from_millis(1100));
    let run = vm(
        &srv,
        &[
            "refresh",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            d,
            "--token-duration",
            "2h",
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("istio-token renewed: expires "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("(in 2h); the old one had 59m left")
            || run.stdout.contains("(in 2h); the old one had 1h left"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("hosts changed: 203.0.113.20 istiod.istio-system.svc (was 203.0.113.10 istiod.istio-system.svc)"), "{}", run.stdout);
    assert_eq!(
        read(&dir, "hosts"),
        "203.0.113.20 istiod.istio-system.svc\n"
    );
    let token = read(&dir, "istio-token");
    assert_ne!(token, before[2].1);
    assert!(!run.stdout.contains(&token) && !run.stderr.contains(&token));
    for (i, f) in ["cluster.env", "mesh.yaml", "root-cert.pem"]
        .iter()
        .enumerate()
    {
        let now = fs::metadata(dir.join(f))
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(now, mtimes[i], "{f} was rewritten");
    }
    assert_eq!(read(&dir, "cluster.env"), before[0].1);
    assert_eq!(listing(&dir), FIVE);
    assert_eq!(mode(&dir.join("istio-token")), 0o600);

    // Nothing moved: hosts unchanged, said so.
    let run = vm(&srv, &["refresh", "analytics", "-n", "vm", "--out-dir", d]).ok();
    assert!(
        run.stdout
            .contains("hosts unchanged: 203.0.113.20 istiod.istio-system.svc"),
        "{}",
        run.stdout
    );

    // refresh needs a directory files wrote.
    let run = vm(
        &srv,
        &[
            "refresh",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            tmp.path().join("nope").to_str().unwrap_or(""),
        ],
    )
    .expect_code(2);
    assert!(run.stderr.contains("--out-dir"), "{}", run.stderr);
}

fn status_lists_the_groups_workload_entries(tier) {
    let srv = istio_with_group(tier);
    srv.apply_yaml(
        "cluster1",
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: analytics-10.128.0.13-network1
  namespace: vm
  annotations:
    istio.io/autoRegistrationGroup: analytics
    istio.io/connectedAt: "2020-01-01T00:00:00.123456789Z"
    istio.io/workloadController: istiod-abc
spec:
  address: 10.128.0.13
  labels: {app: analytics, version: v0}
  network: network1
  serviceAccount: default
status:
  conditions:
  - type: Healthy
    status: "True"
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: analytics-manual, namespace: vm}
spec:
  address: 10.128.0.14
  labels: {app: analytics, version: v0}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other, namespace: vm}
spec:
  address: 10.128.0.15
  labels: {app: other}
"#,
    )
    .expect("entries");
    let run = kubectl(&srv, &["mesh-vm", "status", "analytics", "-n", "vm"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        cols(lines[0]),
        ["NAME", "ADDRESS", "HEALTHY", "CONNECTED", "MTLS", "POLICY", "AGE"]
    );
    let auto = cols(lines[1]);
    assert_eq!(
        &auto[..3],
        ["analytics-10.128.0.13-network1", "10.128.0.13", "True"]
    );
    assert!(auto[3].ends_with('d'), "connected days ago: {auto:?}");
    assert_eq!(
        &cols(lines[2])[..4],
        ["analytics-manual", "10.128.0.14", "<none>", "<none>"]
    );

    let run = vm(&srv, &["status", "analytics", "-n", "vm", "-o", "name"]).ok();
    assert_eq!(
        run.stdout,
        "workloadentry.networking.istio.io/analytics-10.128.0.13-network1\nworkloadentry.networking.istio.io/analytics-manual\n"
    );
    let run = vm(&srv, &["status", "nothing", "-n", "vm"]).expect_code(1);
    assert!(
        run.stderr.contains("WorkloadGroup vm/nothing not found"),
        "{}",
        run.stderr
    );
}
}

/// The install without its root certificates (istiod writes `istio-ca-root-cert` itself), and
/// the VM namespace.
fn istio_without_root_certs() -> String {
    let mut docs: Vec<&str> = ISTIO
        .split("\n---\n")
        .filter(|d| !d.contains("istio-ca-root-cert"))
        .collect();
    docs.push("apiVersion: v1\nkind: Namespace\nmetadata: {name: vm}\n");
    docs.join("\n---\n")
}

/// The body of a plain-HTTP GET (istiod's debug port), or why not.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.split_whitespace().nth(1) == Some("200") => Ok(body.into()),
        _ => Err(answer),
    }
}

/// Polls `f` until it gives a value (istiod works asynchronously); panics after 60 s.
#[track_caller]
fn wait_for<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// istiod takes the group `mesh-vm group` writes, probe included, and `mesh-vm files` hands the
/// VM the root certificate istiod itself wrote into the group's namespace.
#[test]
fn real_istiod_takes_the_group_and_files_carry_its_root_certificate() {
    if !Tier::Real.enabled() {
        return;
    }
    let srv = Server::builder(Tier::Real)
        .istiod()
        .seed_yaml(&istio_without_root_certs())
        .start();
    let real = srv.real().expect("real tier");
    let run = kubectl(&srv, &[&["mesh-vm"][..], ANALYTICS_ARGS].concat()).ok();
    assert_eq!(
        run.stdout,
        "workloadgroup.networking.istio.io/analytics created\n"
    );

    let debug = real.istiod("cluster1").debug.clone();
    let wg = wait_for(
        "WorkloadGroup vm/analytics in istiod's /debug/configz",
        || {
            let all: Value =
                serde_json::from_str(&http_get(&debug, "/debug/configz").ok()?).ok()?;
            all.as_array()?
                .iter()
                .find(|c| {
                    c["kind"] == "WorkloadGroup"
                        && c["metadata"]["namespace"] == "vm"
                        && c["metadata"]["name"] == "analytics"
                })
                .cloned()
        },
    );
    // What istiod parsed into its own types is what the plugin wrote.
    assert_eq!(
        wg["spec"],
        serde_json::json!({
            "metadata": {"labels": {"app": "analytics", "version": "v0"}},
            "template": {"ports": {"http": 8080, "grpc": 8082, "tcp": 8083}, "network": "network1", "serviceAccount": "default"},
            "probe": {"httpGet": {"host": "127.0.0.1", "port": 8080, "path": "/"}}
        })
    );

    let root = |ns: &str| {
        srv.get_json(
            "cluster1",
            &format!("/api/v1/namespaces/{ns}/configmaps/istio-ca-root-cert"),
        )
        .and_then(|cm| cm["data"]["root-cert.pem"].as_str().map(String::from))
    };
    let cert = wait_for("istiod to write ConfigMap vm/istio-ca-root-cert", || {
        root("vm")
    });
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"), "{cert}");
    assert_ne!(cert, ROOT_CERT);
    assert_eq!(root("istio-system").as_deref(), Some(cert.as_str()));

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("analytics");
    vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            dir.to_str().unwrap_or(""),
        ],
    )
    .ok();
    assert_eq!(listing(&dir), FIVE);
    assert_eq!(read(&dir, "root-cert.pem"), cert);
    let c = claims(&read(&dir, "istio-token"));
    assert_eq!(c["aud"], serde_json::json!(["istio-ca"]));
    assert_eq!(c["sub"], "system:serviceaccount:vm:default");
}

/// `ISTIO_INBOUND_PORTS` with its numbers sorted: istioctl joins them in Go map order, which
/// changes from run to run; `mesh-vm` sorts them (deliberate difference 1 in the README).
fn ports_sorted(cluster_env: &str) -> String {
    cluster_env
        .lines()
        .map(|l| match l.strip_prefix("ISTIO_INBOUND_PORTS='") {
            Some(rest) if rest != "*'" => {
                let mut p: Vec<u32> = rest
                    .trim_end_matches('\'')
                    .split(',')
                    .map(|n| n.parse().expect("port"))
                    .collect();
                p.sort_unstable();
                let p: Vec<String> = p.iter().map(u32::to_string).collect();
                format!("ISTIO_INBOUND_PORTS='{}'\n", p.join(","))
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// Side by side with the istioctl built from the Istio module the real tier runs, on the same
/// cluster and the same WorkloadGroup: every difference is named here and in the README
/// ("Compared with istioctl on a real cluster").
#[test]
fn real_istioctl_writes_the_same_group_and_files() {
    if !Tier::Real.enabled() {
        return;
    }
    let srv = istio(Tier::Real);
    let real = srv.real().expect("real tier");
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| tmp.path().join(name).to_str().unwrap_or("").to_string();

    // The group. Deliberate difference 2: mesh-vm labels what it writes as kubectl-mesh's.
    let theirs = real
        .istioctl(&[
            "x",
            "workload",
            "group",
            "create",
            "--name",
            "analytics",
            "--namespace",
            "vm",
            "--labels",
            "app=analytics,version=v0",
            "--ports",
            "http=8080,grpc=8082,tcp=8083",
            "--network",
            "network1",
            "--serviceAccount",
            "default",
        ])
        .ok()
        .stdout;
    let ours = kubectl(
        &srv,
        &[
            "mesh-vm",
            "group",
            "analytics",
            "-n",
            "vm",
            "-l",
            "app=analytics,version=v0",
            "--ports",
            "http=8080,grpc=8082,tcp=8083",
            "--network",
            "network1",
            "-s",
            "default",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    )
    .ok()
    .stdout;
    assert_eq!(
        ours,
        theirs.replacen(
            "metadata:\n  name: analytics\n",
            "metadata:\n  labels:\n    app.kubernetes.io/managed-by: kubectl-mesh\n  name: analytics\n",
            1
        ),
        "istioctl:\n{theirs}"
    );
    // Deliberate difference 3: istioctl has no probe flags; mesh-vm's probe lands in the group.
    let with_probe = vm(
        &srv,
        &[ANALYTICS_ARGS, &["--dry-run=client", "-o", "yaml"]].concat(),
    )
    .ok()
    .stdout;
    assert!(
        !theirs.contains("probe:") && with_probe.contains("  probe:\n    httpGet:\n"),
        "{with_probe}"
    );
    let group_file = path("group.yaml");
    fs::write(&group_file, &with_probe).expect("write group.yaml");
    vm(&srv, &["group", "-f", &group_file]).ok();

    // The five files, for the same group, with several flag sets.
    let variants: [(&[&str], &[&str]); 3] = [
        (&[], &[]),
        (
            &["--autoregister", "--externalIP", "198.51.100.7"],
            &["--autoregister", "--external-ip", "198.51.100.7"],
        ),
        (
            &[
                "--internalIP",
                "10.0.0.9",
                "--capture-dns=false",
                "--ingressIP",
                "192.0.2.1",
            ],
            &[
                "--internal-ip",
                "10.0.0.9",
                "--capture-dns=false",
                "--ingress-ip",
                "192.0.2.1",
            ],
        ),
    ];
    for (i, (their_flags, our_flags)) in variants.iter().enumerate() {
        let (ic, from_cluster, from_file) = (
            path(&format!("istioctl{i}")),
            path(&format!("ours{i}")),
            path(&format!("file{i}")),
        );
        real.istioctl(
            &[
                &[
                    "x",
                    "workload",
                    "entry",
                    "configure",
                    "-f",
                    &group_file,
                    "-o",
                    &ic,
                ],
                &["--clusterID", "cluster1"][..],
                their_flags,
            ]
            .concat(),
        )
        .ok();
        let run = kubectl(
            &srv,
            &[
                &[
                    "mesh-vm",
                    "files",
                    "analytics",
                    "-n",
                    "vm",
                    "--out-dir",
                    &from_cluster,
                ][..],
                our_flags,
            ]
            .concat(),
        )
        .ok();
        assert!(
            run.stderr
                .contains("cluster ID: cluster1 (from global.multiCluster.clusterName"),
            "{}",
            run.stderr
        );
        kubectl(
            &srv,
            &[
                &[
                    "mesh-vm",
                    "files",
                    "-f",
                    &group_file,
                    "--out-dir",
                    &from_file,
                ][..],
                &["--cluster-id", "cluster1"],
                our_flags,
            ]
            .concat(),
        )
        .ok();
        let (ic, ours, file) = (
            Path::new(&ic),
            Path::new(&from_cluster),
            Path::new(&from_file),
        );
        assert_eq!(listing(ic), FIVE, "{their_flags:?}");
        for f in ["cluster.env", "mesh.yaml", "hosts", "root-cert.pem"] {
            let theirs = read(ic, f);
            let theirs = if f == "cluster.env" {
                ports_sorted(&theirs)
            } else {
                theirs
            };
            assert_eq!(read(ours, f), theirs, "{f} with {their_flags:?}");
            assert_eq!(read(file, f), theirs, "{f} with -f and {our_flags:?}");
        }
        // Deliberate difference 1, by itself: mesh-vm's ports are in numeric order.
        assert!(read(ours, "cluster.env").contains("ISTIO_INBOUND_PORTS='8080,8082,8083'\n"));
        // The token differs by nature; both are for the group's ServiceAccount and istiod.
        let (a, b) = (
            claims(&read(ic, "istio-token")),
            claims(&read(ours, "istio-token")),
        );
        assert_eq!(
            (&a["aud"], &a["sub"]),
            (&b["aud"], &b["sub"]),
            "{their_flags:?}"
        );
        assert_ne!(read(ic, "istio-token"), read(ours, "istio-token"));
        // Deliberate difference 4: private files; istioctl writes every file 0744.
        for f in FIVE {
            assert_eq!(mode(&ic.join(f)), 0o744, "istioctl's {f}");
            assert_eq!(mode(&ours.join(f)), 0o600, "our {f}");
        }
    }

    // Deliberate difference 5: on an install whose injector has no clusterName (the chart
    // default), istioctl writes an empty cluster ID; mesh-vm takes istiod's CLUSTER_ID.
    srv.apply_yaml(
        "cluster1",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\ndata:\n  values: '{\"global\":{\"multiCluster\":{\"clusterName\":\"\"}}}'\n",
    )
    .expect("reseed the injector");
    let (ic, ours) = (path("istioctl-id"), path("ours-id"));
    real.istioctl(&[
        "x",
        "workload",
        "entry",
        "configure",
        "--name",
        "analytics",
        "-n",
        "vm",
        "-o",
        &ic,
    ])
    .ok();
    vm(
        &srv,
        &["files", "analytics", "-n", "vm", "--out-dir", &ours],
    )
    .ok();
    let (ic, ours) = (Path::new(&ic), Path::new(&ours));
    assert_eq!(
        ports_sorted(&read(ic, "cluster.env")).replace(
            "ISTIO_META_CLUSTER_ID=''",
            "ISTIO_META_CLUSTER_ID='from-istiod'"
        ),
        read(ours, "cluster.env")
    );
    assert_eq!(
        read(ic, "mesh.yaml").replace(
            "ISTIO_META_CLUSTER_ID: \"\"",
            "ISTIO_META_CLUSTER_ID: from-istiod"
        ),
        read(ours, "mesh.yaml")
    );

    // Deliberate difference 6: with no gateway address istioctl writes an empty hosts file and
    // exits 0; mesh-vm exits 1 and writes nothing, or, with --allow-empty-hosts, does the same.
    assert!(srv.delete_path("cluster1", GATEWAY_PATH));
    let (ic, ours) = (path("istioctl-nogw"), path("ours-nogw"));
    real.istioctl(&[
        "x",
        "workload",
        "entry",
        "configure",
        "--name",
        "analytics",
        "-n",
        "vm",
        "-o",
        &ic,
        "--clusterID",
        "cluster1",
    ])
    .ok();
    assert_eq!(read(Path::new(&ic), "hosts"), "");
    vm(
        &srv,
        &["files", "analytics", "-n", "vm", "--out-dir", &ours],
    )
    .expect_code(1);
    assert!(!Path::new(&ours).exists());
    vm(
        &srv,
        &[
            "files",
            "analytics",
            "-n",
            "vm",
            "--out-dir",
            &ours,
            "--allow-empty-hosts",
        ],
    )
    .ok();
    assert_eq!(read(Path::new(&ours), "hosts"), "");
}

/// The Istio install with no network set anywhere: injector values without `global.network`.
const NO_NETWORK_INJECTOR: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\ndata:\n  values: '{\"global\":{\"multiCluster\":{\"clusterName\":\"cluster1\"}}}'\n";

/// The seeded istiod with extra env entries.
fn istiod_with_env(env: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: istiod, namespace: istio-system}}\nspec:\n  selector:\n    matchLabels: {{app: istiod}}\n  template:\n    metadata:\n      labels: {{app: istiod}}\n    spec:\n      containers:\n      - name: discovery\n        image: docker.io/istio/pilot:1.24.0\n        env:\n        - {{name: CLUSTER_ID, value: from-istiod}}\n{env}")
}

const WEB_GROUP: &[&str] = &["group", "web", "-n", "vm", "-l", "app=web", "-p", "http=80"];

fn group_network(srv: &Server, name: &str) -> Value {
    srv.get_json(
        "cluster1",
        &format!("/apis/networking.istio.io/v1/namespaces/vm/workloadgroups/{name}"),
    )
    .expect("group")["spec"]["template"]["network"]
        .clone()
}

const PA_PATH: &str = "/apis/security.istio.io/v1/namespaces/vm/peerauthentications/analytics";

/// A Deployment and a Job whose pods carry the analytics labels, as a careless namespace has.
const LOOKALIKES: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: analytics-web, namespace: vm}
spec:
  selector:
    matchLabels: {app: analytics}
  template:
    metadata:
      labels: {app: analytics, version: v0, tier: web}
    spec:
      containers: [{name: web, image: nginx}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: analytics-migrate, namespace: vm}
spec:
  template:
    metadata:
      labels: {app: analytics, version: v0}
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: analytics-v1, namespace: vm}
spec:
  selector:
    matchLabels: {app: analytics}
  template:
    metadata:
      labels: {app: analytics, version: v1}
    spec:
      containers: [{name: web, image: nginx}]
"#;

on_both_tiers! {
fn group_detects_the_network_from_each_source_in_order(tier) {
    let srv = istio(tier);
    // Nothing sets a network: none is written.
    srv.apply_yaml("cluster1", NO_NETWORK_INJECTOR).expect("reseed injector");
    let run = vm(&srv, WEB_GROUP).ok();
    assert!(
        run.stderr.contains("network: none set (no topology.istio.io/network label on Namespace istio-system, no NETWORK env on Deployment istio-system/istiod, no global.network in ConfigMap istio-system/istio-sidecar-injector, no meshNetworks entry with fromRegistry: cluster1 in ConfigMap istio-system/istio): one network\n"),
        "{}",
        run.stderr
    );
    assert_eq!(group_network(&srv, "web"), Value::Null);

    // Each source, added from the last to the first, takes over.
    let mesh_networks = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    defaultConfig:\n      discoveryAddress: istiod.istio-system.svc:15012\n  meshNetworks: |\n    networks:\n      net-other:\n        endpoints: [{fromRegistry: cluster9}]\n      net-mesh:\n        endpoints: [{fromRegistry: cluster1}]\n        gateways: [{address: 203.0.113.10, port: 15443}]\n";
    let steps = [
        (
            mesh_networks.to_string(),
            "net-mesh",
            "from meshNetworks in ConfigMap istio-system/istio, whose endpoints include fromRegistry: cluster1",
        ),
        (
            ISTIO.split("---").nth(1).unwrap_or("").to_string(),
            "network1",
            "from global.network in ConfigMap istio-system/istio-sidecar-injector",
        ),
        (
            istiod_with_env("        - {name: NETWORK, value: net-istiod}\n"),
            "net-istiod",
            "from the NETWORK env of Deployment istio-system/istiod",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n  labels: {topology.istio.io/network: net-label}\n".to_string(),
            "net-label",
            "from the topology.istio.io/network label of Namespace istio-system",
        ),
    ];
    for (yaml, network, source) in steps {
        srv.apply_yaml("cluster1", &yaml).expect("reseed");
        let run = vm(&srv, WEB_GROUP).ok();
        assert!(
            run.stderr.contains(&format!("network: {network} ({source})\n")),
            "{network}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("Warning"), "{}", run.stderr);
        assert_eq!(group_network(&srv, "web"), network);
    }
}

fn a_contradicting_network_is_a_warning_and_files_names_the_gateway_path(tier) {
    let srv = istio(tier);
    let run = vm(&srv, &[WEB_GROUP, &["--network", "vm-net"]].concat()).ok();
    assert!(
        run.stderr.contains("Warning: --network vm-net is not the cluster's network network1 (from global.network in ConfigMap istio-system/istio-sidecar-injector): the VMs will reach the cluster's pods through its east-west gateway"),
        "{}",
        run.stderr
    );
    assert_eq!(group_network(&srv, "web"), "vm-net");
    // The same network given explicitly is no warning.
    let run = vm(&srv, &[WEB_GROUP, &["--network", "network1"]].concat()).ok();
    assert!(!run.stderr.contains("Warning"), "{}", run.stderr);
    vm(&srv, &[WEB_GROUP, &["--network", "vm-net"]].concat()).ok();

    // A file's network is applied as written, and checked the same way.
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("wg.yaml");
    fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: fromfile, namespace: vm}\nspec:\n  metadata: {labels: {app: fromfile}}\n  template: {network: file-net}\n",
    )
    .expect("write");
    let f = file.to_str().unwrap_or("");
    let run = vm(&srv, &["group", "-f", f]).ok();
    assert!(
        run.stderr.contains(&format!("Warning: network file-net of {f} is not the cluster's network network1 (")),
        "{}",
        run.stderr
    );
    assert_eq!(group_network(&srv, "fromfile"), "file-net");

    let dir = tmp.path().join("web");
    let run = vm(
        &srv,
        &["files", "web", "-n", "vm", "--out-dir", dir.to_str().unwrap_or("")],
    )
    .ok();
    assert!(
        run.stderr.contains("path: the VMs are on network vm-net, the cluster on network1: they reach its pods through the east-west gateway, Service istio-system/istio-eastwestgateway (203.0.113.10)\n"),
        "{}",
        run.stderr
    );
    assert!(read(&dir, "cluster.env").contains("ISTIO_META_NETWORK='vm-net'\n"));
}

fn mtls_writes_a_peer_authentication_selecting_only_the_group(tier) {
    let srv = istio(tier);
    let run = vm(&srv, &[ANALYTICS_ARGS, &["--mtls", "permissive"]].concat()).ok();
    assert_eq!(
        run.stdout,
        "workloadgroup.networking.istio.io/analytics created\npeerauthentication.security.istio.io/analytics created\n"
    );
    let pa = srv.get_json("cluster1", PA_PATH).expect("PeerAuthentication");
    assert_eq!(
        pa["spec"],
        serde_json::json!({
            "selector": {"matchLabels": {"app": "analytics", "version": "v0"}},
            "mtls": {"mode": "PERMISSIVE"}
        })
    );
    assert_eq!(
        pa["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-mesh"
    );
    let again = vm(&srv, &[ANALYTICS_ARGS, &["--mtls", "permissive"]].concat()).ok();
    assert_eq!(
        again.stdout,
        "workloadgroup.networking.istio.io/analytics unchanged\npeerauthentication.security.istio.io/analytics unchanged\n"
    );
    let strict = vm(&srv, &[ANALYTICS_ARGS, &["--mtls", "strict"]].concat()).ok();
    assert_eq!(
        strict.stdout,
        "workloadgroup.networking.istio.io/analytics unchanged\npeerauthentication.security.istio.io/analytics configured\n"
    );
    let pa = srv.get_json("cluster1", PA_PATH).expect("PeerAuthentication");
    assert_eq!(pa["spec"]["mtls"]["mode"], "STRICT");

    // Once workloads of the namespace carry the group's labels, the selector is refused.
    srv.apply_yaml("cluster1", LOOKALIKES).expect("workloads");
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = vm(&srv, &[ANALYTICS_ARGS, &["--mtls", "unset"]].concat()).expect_code(2);
    // The detected network's note, then the one error line.
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(lines[0].starts_with("network: network1 ("), "{}", run.stderr);
    let line = lines[1];
    assert!(
        line.starts_with("error: --mtls: PeerAuthentication vm/analytics selects app=analytics,version=v0, which also matches Deployment/analytics-web, Job/analytics-migrate in namespace vm, not only the VMs: give the group a label those lack (-l), or pass --force; nothing was written"),
        "{line}"
    );
    assert!(!line.contains("analytics-v1"), "{line}");
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster1").is_empty(), "refused, yet wrote");
    }
    let pa = srv.get_json("cluster1", PA_PATH).expect("PeerAuthentication");
    assert_eq!(pa["spec"]["mtls"]["mode"], "STRICT");

    let forced = vm(
        &srv,
        &[ANALYTICS_ARGS, &["--mtls", "unset", "--force"]].concat(),
    )
    .ok();
    assert!(
        forced.stderr.contains("Warning: PeerAuthentication vm/analytics selects app=analytics,version=v0, which also matches Deployment/analytics-web, Job/analytics-migrate in namespace vm: their mTLS mode changes too (--force)"),
        "{}",
        forced.stderr
    );
    assert!(
        forced.stdout.ends_with("peerauthentication.security.istio.io/analytics configured\n"),
        "{}",
        forced.stdout
    );
    let pa = srv.get_json("cluster1", PA_PATH).expect("PeerAuthentication");
    assert_eq!(pa["spec"]["mtls"]["mode"], "UNSET");
}

fn mtls_refusal_on_a_new_group_writes_nothing(tier) {
    let srv = istio(tier);
    srv.apply_yaml("cluster1", LOOKALIKES).expect("workloads");
    let run = vm(&srv, &[ANALYTICS_ARGS, &["--mtls", "permissive"]].concat()).expect_code(2);
    assert!(run.stderr.contains("Deployment/analytics-web, Job/analytics-migrate"), "{}", run.stderr);
    assert!(srv
        .get_json(
            "cluster1",
            "/apis/networking.istio.io/v1/namespaces/vm/workloadgroups/analytics"
        )
        .is_none());
    assert!(srv.get_json("cluster1", PA_PATH).is_none());
}

fn status_shows_the_mtls_mode_in_effect_and_the_policy_that_decided_it(tier) {
    let srv = istio(tier);
    vm(&srv, &[ANALYTICS_ARGS, &["--mtls", "strict"]].concat()).ok();
    // No entry yet: the mode for the group's labels.
    let run = vm(&srv, &["status", "analytics", "-n", "vm"]).ok();
    assert!(
        run.stderr.contains("No WorkloadEntries found for WorkloadGroup vm/analytics. mTLS for its workloads: STRICT (policy vm/analytics)"),
        "{}",
        run.stderr
    );
    srv.apply_yaml(
        "cluster1",
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: analytics-10.128.0.13-network1
  namespace: vm
  annotations: {istio.io/autoRegistrationGroup: analytics}
spec:
  address: 10.128.0.13
  labels: {app: analytics, version: v0}
  network: network1
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: vm}
spec:
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"#,
    )
    .expect("entries and policies");
    let mtls = |srv: &Server| {
        let run = vm(srv, &["status", "analytics", "-n", "vm"]).ok();
        let lines: Vec<Vec<String>> = run
            .stdout
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect();
        assert_eq!(lines.len(), 2, "{}", run.stdout);
        assert_eq!(lines[0][4..6], ["MTLS", "POLICY"]);
        (lines[1][4].clone(), lines[1][5].clone())
    };
    // The group's own policy, then the namespace's, the mesh's, Istio's default.
    assert_eq!(mtls(&srv), ("STRICT".into(), "vm/analytics".into()));
    vm(&srv, &[ANALYTICS_ARGS, &["--mtls", "unset"]].concat()).ok();
    assert_eq!(mtls(&srv), ("DISABLE".into(), "vm/default".into()));
    assert!(srv.delete_path(
        "cluster1",
        "/apis/security.istio.io/v1/namespaces/vm/peerauthentications/default"
    ));
    assert_eq!(mtls(&srv), ("STRICT".into(), "istio-system/default".into()));
    assert!(srv.delete_path(
        "cluster1",
        "/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications/default"
    ));
    assert_eq!(mtls(&srv), ("PERMISSIVE".into(), "<default>".into()));
}
}

#[test]
fn group_client_dry_run_with_mtls_prints_the_peer_authentication_too() {
    let run = plugin(
        None,
        "vm",
        &[
            "group",
            "foo",
            "-n",
            "bar",
            "-l",
            "app=foo",
            "--mtls",
            "permissive",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    )
    .ok();
    assert!(
        run.stdout.ends_with("---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  labels:\n    app.kubernetes.io/managed-by: kubectl-mesh\n  name: foo\n  namespace: bar\nspec:\n  mtls:\n    mode: PERMISSIVE\n  selector:\n    matchLabels:\n      app: foo\n"),
        "{}",
        run.stdout
    );
}

/// Policies that cannot be read leave MTLS unknown, with a warning; the entries are still listed.
#[test]
fn status_lists_entries_when_policies_cannot_be_read() {
    let srv = istio(Tier::Emu);
    vm(&srv, ANALYTICS_ARGS).ok();
    srv.apply_yaml(
        "cluster1",
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: analytics-manual, namespace: vm}\nspec:\n  address: 10.128.0.14\n  labels: {app: analytics, version: v0}\n",
    )
    .expect("entry");
    let emu = srv.emu().expect("kube-emu");
    emu.inject(
        "cluster1",
        common::Fault::new(
            "GET",
            "/peerauthentications",
            common::FaultAction::Status(403),
        ),
    );
    let run = vm(&srv, &["status", "analytics", "-n", "vm"]).ok();
    assert!(
        run.stderr.starts_with(
            "Warning: mTLS mode unknown: cannot list peerauthentications in namespace vm"
        ),
        "{}",
        run.stderr
    );
    let row: Vec<&str> = run
        .stdout
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row[..2], ["analytics-manual", "10.128.0.14"]);
    assert_eq!(row[4..6], ["<unknown>", "<unknown>"]);
}
