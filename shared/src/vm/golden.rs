//! Golden tests of the VM builders: parity with istioctl's own golden files, and insta snapshots
//! of the WorkloadGroup and of the bootstrap files in the cases the issue names.
//!
//! Re-bless with `INSTA_UPDATE=always cargo test -p mesh-shared vm::golden`, then read the diff.

use std::io::Write as _;
use std::net::IpAddr;

use serde_json::Value;

use crate::vm::bootstrap::{self, Options, SvcIp};
use crate::vm::control_plane::parse_mesh;
use crate::vm::group::{self, Group};

/// The `mesh` key of the `istio` ConfigMap a default `istioctl install` (1.24) writes, plus a
/// mesh ID as multi-cluster installs set it.
pub const HELM_MESH: &str = "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n  meshId: mesh1\n  proxyMetadata: {}\n  tracing:\n    zipkin:\n      address: zipkin.istio-system:9411\ndefaultProviders:\n  metrics:\n  - prometheus\nenablePrometheusMerge: true\nrootNamespace: istio-system\ntrustDomain: cluster.local\n";

/// Istio's VM-integration example group: `analytics` in `vm`, three ports, network1.
pub const ANALYTICS: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata:\n  name: analytics\n  namespace: vm\nspec:\n  metadata:\n    labels:\n      app: analytics\n      version: v0\n  template:\n    ports:\n      http: 8080\n      grpc: 8082\n      tcp: 8083\n    network: network1\n    serviceAccount: default\n  probe:\n    httpGet:\n      host: 127.0.0.1\n      port: 8080\n      path: /\n";

fn read_group(yaml: &str) -> Group {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(yaml.as_bytes()).expect("write");
    group::from_file(f.path(), "default")
        .expect("group file")
        .with_defaults()
}

fn opts() -> Options {
    Options {
        cluster_id: "cluster1".into(),
        istio_namespace: "istio-system".into(),
        revision: None,
        autoregister: false,
        capture_dns: true,
        svc_ip: None,
    }
}

fn render(group: &Group, mesh: &str, o: &Options, gateway: &str) -> String {
    let mesh: Value = parse_mesh(mesh).expect("mesh");
    let files = bootstrap::build(group, &mesh, o).expect("build");
    let ip: IpAddr = gateway.parse().expect("ip");
    let hosts = bootstrap::hosts(Some(ip), &o.istio_namespace, o.revision.as_deref());
    format!(
        "==> cluster.env <==\n{}==> mesh.yaml <==\n{}==> hosts <==\n{}",
        files.cluster_env, files.mesh_yaml, hosts
    )
}

/// The files of Istio's example group under a default install's mesh config, as the snapshots
/// of each option show them.
fn analytics(o: &Options) -> String {
    render(&read_group(ANALYTICS), HELM_MESH, o, "203.0.113.10")
}

/// Upstream `testdata/vmconfig/ipv4`, minus `IDENTITY_PATH_PREFIX=''` (newest istioctl only).
#[test]
fn parity_with_istioctl_ipv4_golden() {
    let wg = "kind: WorkloadGroup\nmetadata:\n  name: foo\n  namespace: bar\nspec:\n  metadata:\n    annotations:\n      proxy.istio.io/config: |-\n        proxyMetadata:\n          # this should override the value from the global meshconfig\n          PROXY_CONFIG_ANNOT_VALUE: bar\n    labels: {}\n  template:\n    ports: {}\n    serviceAccount: vm-serviceaccount\n  probe:\n    httpGet:\n      port: 8080\n";
    let mesh = "defaultConfig:\n  proxyMetadata:\n    # should be overridden by the command\n    ISTIO_META_DNS_CAPTURE: \"false\"\n    # should be overridden by the annotation on the WorkloadGroup\n    PROXY_CONFIG_ANNOT_VALUE: \"foo\"\n    # should be in the final cluster.env/mesh.yaml\n    CLUSTER_MESH_CONFIG_VALUE: \"foo\"\n";
    let o = Options {
        cluster_id: "Kubernetes".into(),
        revision: Some("rev-1".into()),
        svc_ip: Some(SvcIp::Internal("10.10.10.10".parse().expect("ip"))),
        ..opts()
    };
    let files =
        bootstrap::build(&read_group(wg), &parse_mesh(mesh).expect("mesh"), &o).expect("build");
    let upstream_env = "CANONICAL_REVISION='latest'\nCANONICAL_SERVICE='foo'\nCA_ADDR='istiod-rev-1.istio-system.svc:15012'\nCLUSTER_MESH_CONFIG_VALUE='foo'\nIDENTITY_PATH_PREFIX=''\nISTIO_INBOUND_PORTS='*'\nISTIO_LOCAL_EXCLUDE_PORTS='22,15090,15021,15020'\nISTIO_METAJSON_LABELS='{\"service.istio.io/canonical-name\":\"foo\",\"service.istio.io/canonical-revision\":\"latest\"}'\nISTIO_META_CLUSTER_ID='Kubernetes'\nISTIO_META_DNS_CAPTURE='true'\nISTIO_META_MESH_ID=''\nISTIO_META_NETWORK=''\nISTIO_META_WORKLOAD_NAME='foo'\nISTIO_NAMESPACE='bar'\nISTIO_SERVICE='foo.bar'\nISTIO_SERVICE_CIDR='*'\nISTIO_SVC_IP='10.10.10.10'\nPOD_NAMESPACE='bar'\nPROXY_CONFIG_ANNOT_VALUE='bar'\nSERVICE_ACCOUNT='vm-serviceaccount'\nTRUST_DOMAIN=''\n";
    let upstream_mesh = "defaultConfig:\n  discoveryAddress: istiod-rev-1.istio-system.svc:15012\n  proxyMetadata:\n    CANONICAL_REVISION: latest\n    CANONICAL_SERVICE: foo\n    CLUSTER_MESH_CONFIG_VALUE: foo\n    IDENTITY_PATH_PREFIX: \"\"\n    ISTIO_META_CLUSTER_ID: Kubernetes\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    ISTIO_META_MESH_ID: \"\"\n    ISTIO_META_NETWORK: \"\"\n    ISTIO_META_WORKLOAD_NAME: foo\n    ISTIO_METAJSON_LABELS: '{\"service.istio.io/canonical-name\":\"foo\",\"service.istio.io/canonical-revision\":\"latest\"}'\n    POD_NAMESPACE: bar\n    PROXY_CONFIG_ANNOT_VALUE: bar\n    SERVICE_ACCOUNT: vm-serviceaccount\n    TRUST_DOMAIN: \"\"\n  readinessProbe:\n    httpGet:\n      port: 8080\n";
    let without_identity = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("IDENTITY_PATH_PREFIX"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(files.cluster_env, without_identity(upstream_env));
    assert_eq!(files.mesh_yaml, without_identity(upstream_mesh));
    let hosts = bootstrap::hosts(
        Some("10.10.10.11".parse().expect("ip")),
        "istio-system",
        Some("rev-1"),
    );
    assert_eq!(hosts, "10.10.10.11 istiod-rev-1.istio-system.svc\n");
}

/// Upstream `testdata/vmconfig-nil-proxy-metadata` (mesh `defaultConfig: {}`, no revision).
#[test]
fn parity_with_istioctl_nil_proxy_metadata_golden() {
    let wg = "kind: WorkloadGroup\nmetadata:\n  name: foo\n  namespace: bar\nspec:\n  template:\n    serviceAccount: vm-serviceaccount\n  probe:\n    httpGet:\n      port: 8080\n";
    let o = Options {
        cluster_id: "Kubernetes".into(),
        svc_ip: Some(SvcIp::Internal("10.10.10.10".parse().expect("ip"))),
        ..opts()
    };
    let files = bootstrap::build(
        &read_group(wg),
        &parse_mesh("defaultConfig: {}").expect("mesh"),
        &o,
    )
    .expect("build");
    assert_eq!(files.mesh_yaml, "defaultConfig:\n  proxyMetadata:\n    CANONICAL_REVISION: latest\n    CANONICAL_SERVICE: foo\n    ISTIO_META_CLUSTER_ID: Kubernetes\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    ISTIO_META_MESH_ID: \"\"\n    ISTIO_META_NETWORK: \"\"\n    ISTIO_META_WORKLOAD_NAME: foo\n    ISTIO_METAJSON_LABELS: '{\"service.istio.io/canonical-name\":\"foo\",\"service.istio.io/canonical-revision\":\"latest\"}'\n    POD_NAMESPACE: bar\n    SERVICE_ACCOUNT: vm-serviceaccount\n    TRUST_DOMAIN: \"\"\n  readinessProbe:\n    httpGet:\n      port: 8080\n");
}

/// The guide's illustration (section 3b): ports grpc=3550,http=8080 with `--autoregister`.
#[test]
fn matches_the_guides_illustration() {
    let wg = "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: foo, namespace: bar}\nspec:\n  metadata:\n    labels: {app: foo}\n    annotations: {team: x}\n  template:\n    ports: {http: 8080, grpc: 3550}\n    serviceAccount: sa\n";
    let mesh = "defaultConfig:\n  meshId: mesh1\ntrustDomain: cluster.local\n";
    let o = Options {
        autoregister: true,
        ..opts()
    };
    let files =
        bootstrap::build(&read_group(wg), &parse_mesh(mesh).expect("mesh"), &o).expect("build");
    assert_eq!(files.cluster_env, "CANONICAL_REVISION='latest'\nCANONICAL_SERVICE='foo'\nISTIO_INBOUND_PORTS='3550,8080'\nISTIO_LOCAL_EXCLUDE_PORTS='22,15090,15021,15020'\nISTIO_METAJSON_LABELS='{\"app\":\"foo\",\"service.istio.io/canonical-name\":\"foo\",\"service.istio.io/canonical-revision\":\"latest\"}'\nISTIO_META_AUTO_REGISTER_GROUP='foo'\nISTIO_META_CLUSTER_ID='cluster1'\nISTIO_META_DNS_CAPTURE='true'\nISTIO_META_MESH_ID='mesh1'\nISTIO_META_NETWORK=''\nISTIO_META_POD_PORTS='[{\"name\":\"grpc\",\"containerPort\":3550,\"protocol\":\"\"},{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"\"}]'\nISTIO_META_WORKLOAD_NAME='foo'\nISTIO_NAMESPACE='bar'\nISTIO_SERVICE='foo.bar'\nISTIO_SERVICE_CIDR='*'\nPOD_NAMESPACE='bar'\nSERVICE_ACCOUNT='sa'\nTRUST_DOMAIN='cluster.local'\n");
}

#[test]
fn inbound_ports_sort_numerically() {
    let mut g = read_group(ANALYTICS);
    g.template.ports = [
        ("a".to_string(), 9000),
        ("b".to_string(), 80),
        ("c".to_string(), 10000),
    ]
    .into();
    let files = bootstrap::build(&g, &Value::Null, &opts()).expect("build");
    assert!(
        files
            .cluster_env
            .contains("ISTIO_INBOUND_PORTS='80,9000,10000'\n"),
        "{}",
        files.cluster_env
    );
}

#[test]
fn snapshot_files_default() {
    insta::assert_snapshot!(analytics(&opts()));
}

#[test]
fn snapshot_files_autoregister() {
    let o = Options {
        autoregister: true,
        ..opts()
    };
    insta::assert_snapshot!(analytics(&o));
}

#[test]
fn snapshot_files_revision() {
    let o = Options {
        revision: Some("canary".into()),
        ..opts()
    };
    // A revisioned control plane's mesh config usually leaves discoveryAddress to the chart.
    let mesh = HELM_MESH.replace("  discoveryAddress: istiod.istio-system.svc:15012\n", "");
    insta::assert_snapshot!(render(&read_group(ANALYTICS), &mesh, &o, "203.0.113.10"));
}

#[test]
fn snapshot_files_external_ip() {
    let o = Options {
        svc_ip: Some(SvcIp::External("198.51.100.7".parse().expect("ip"))),
        ..opts()
    };
    insta::assert_snapshot!(analytics(&o));
}

#[test]
fn snapshot_files_no_dns_capture() {
    let o = Options {
        capture_dns: false,
        ..opts()
    };
    insta::assert_snapshot!(analytics(&o));
}

#[test]
fn snapshot_workload_group_vm_integration_example() {
    insta::assert_yaml_snapshot!(read_group(ANALYTICS).to_object("v1"));
}
