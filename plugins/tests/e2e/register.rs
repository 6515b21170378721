//! End to end: `kubectl mesh-register` run by the real kubectl against kube-emu loaded with
//! Istio's real CRDs, read back with the real kubectl.

use crate::common;

use crate::common::{
    api_requests, kubectl, plugin, writes, xds_endpoints, Emu, Fault, FaultAction, Run, Server,
    Target, Tier,
};
use serde_json::Value;

fn emu() -> Emu {
    Emu::builder().start().expect("start kube-emu")
}

fn get(emu: &dyn Target, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let run = kubectl(emu, &full);
    if run.code != 0 {
        return None;
    }
    serde_json::from_str(&run.stdout).ok()
}

const SE_PATH: &str =
    "/apis/networking.istio.io/v1/namespaces/default/serviceentries/mesh-expansion-productcatalog";
const SVC_PATH: &str = "/api/v1/namespaces/default/services/productcatalog";

fn rv(emu: &Server, path: &str) -> String {
    emu.get_json("cluster1", path)
        .and_then(|o| o["metadata"]["resourceVersion"].as_str().map(String::from))
        .unwrap_or_default()
}

#[test]
fn fresh_registration_makes_one_read_and_one_apply_per_object() {
    let emu = emu();
    emu.clear_requests();
    plugin(
        Some(&emu),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550"],
    )
    .ok();
    let reqs = api_requests(&emu, "cluster1");
    let gets: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    let patches: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path.clone())
        .collect();
    let posts: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path.clone())
        .collect();
    // Two objects: the Service and the ServiceEntry, plus the namespace check. The entry holds
    // the endpoint list that concurrent registrations also write, so it is created with a POST
    // (which fails if another run created it first) and then applied.
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].ends_with("/serviceentries"), "{posts:?}");
    assert!(gets.len() <= 3, "{gets:?}");
    assert_eq!(
        reqs.len(),
        gets.len() + patches.len() + posts.len(),
        "{reqs:?}"
    );
    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        assert!(r.query.contains("fieldManager=kubectl-mesh"), "{r:?}");
    }
}

#[test]
fn a_failed_write_rolls_back_and_names_object_and_verb() {
    let emu = emu();
    emu.inject(
        "cluster1",
        Fault::new("PATCH", "serviceentries", FaultAction::Status(500)),
    );
    let run = plugin(
        Some(&emu),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550"],
    )
    .expect_code(1);
    assert!(
        run.stderr
            .contains("cannot apply ServiceEntry default/mesh-expansion-productcatalog"),
        "{}",
        run.stderr
    );
    // The 500 answered the apply that follows the entry's POST: the entry was created, so it
    // is taken back with the Service.
    assert!(
        run.stderr.contains(
            "rolled back serviceentry.networking.istio.io/mesh-expansion-productcatalog, service/productcatalog"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        emu.get_json("cluster1", SVC_PATH).is_none(),
        "the Service must not be left behind"
    );
    assert!(emu.get_json("cluster1", SE_PATH).is_none());
}

#[test]
fn forbidden_names_the_verb_and_the_resource() {
    let emu = emu();
    emu.inject(
        "cluster1",
        Fault::new("PATCH", "services", FaultAction::Status(403)),
    );
    let run = plugin(
        Some(&emu),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550"],
    )
    .expect_code(1);
    assert!(
        run.stderr
            .contains("cannot apply Service default/productcatalog"),
        "{}",
        run.stderr
    );
    assert!(emu.get_json("cluster1", SVC_PATH).is_none());
}

#[test]
fn malformed_input_exits_2_with_one_line_and_sends_nothing() {
    let emu = emu();
    let cases: &[&[&str]] = &[
        &["productcatalog", "999.1.1.1", "grpc:3550"],
        &["productcatalog", "10.0.0.1", "0"],
        &["productcatalog", "10.0.0.1", "65536"],
        &["productcatalog", "10.0.0.1", "abc"],
        &["productcatalog", "10.0.0.1", "grpc:"],
        &["productcatalog", "10.0.0.1", ":3550"],
        &["productcatalog", "10.0.0.1", "smtp:25"],
        &[
            "productcatalog",
            "10.0.0.1",
            "grpc:3550",
            "-l",
            "bad label=x",
        ],
        &["productcatalog", "10.0.0.1", "grpc:3550", "-l", "novalue"],
        &["", "10.0.0.1", "grpc:3550"],
        &["ProductCatalog", "10.0.0.1", "grpc:3550"],
        &["1productcatalog", "10.0.0.1", "grpc:3550"],
        &["productcatalog", "vm1.example.com", "grpc:3550"],
        &["productcatalog", "10.0.0.1"],
        &["productcatalog"],
        &[],
        &["productcatalog", "10.0.0.1", "grpc:3550", "grpc:3551"],
        &["productcatalog", "10.0.0.1", "grpc:3550", "--mode", "vm"],
        &["productcatalog", "10.0.0.1", "grpc:3550", "-n", "Bad_NS"],
        &[
            "productcatalog",
            "10.0.0.1",
            "grpc:3550",
            "--context",
            "nope",
        ],
        &["productcatalog", "10.0.0.1", "grpc:3550", "--dry-run=maybe"],
        &["productcatalog", "10.0.0.1", "grpc:3550", "-o", "table"],
        &["productcatalog", "10.0.0.1", "grpc:3550", "-a", "=x"],
        &["productcatalog", "10.0.0.1", "grpc:3550", "-s", "Bad SA"],
        &["productcatalog", "10.0.0.1,", "grpc:3550"],
        &["--delete", "productcatalog", "10.0.0.1", "grpc:3550"],
        &["--delete", "productcatalog", "10.0.0.1,10.0.0.2"],
        &["--list", "productcatalog"],
        &[
            "productcatalog",
            "10.0.0.1",
            "grpc:3550",
            "--request-timeout",
            "soon",
        ],
        &["productcatalog", "10.0.0.1", "grpc:99999"],
    ];
    for args in cases {
        emu.clear_requests();
        let run = plugin(Some(&emu), "register", args);
        assert_eq!(
            run.code, 2,
            "{args:?} should exit 2\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{args:?}: one line wanted:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        assert!(
            emu.requests("cluster1").is_empty(),
            "{args:?} sent {:?}",
            emu.requests("cluster1")
        );
    }
}

on_both_tiers! {
fn serviceentry_mode_register_rerun_add_ip_and_delete(tier) {
    let srv = Server::builder(tier).start();
    let run = kubectl(
        &srv,
        &[
            "mesh-register",
            "productcatalog",
            "10.128.0.13",
            "grpc:3550",
        ],
    )
    .ok();
    assert_eq!(
        run.stdout,
        "service/productcatalog created\nserviceentry.networking.istio.io/mesh-expansion-productcatalog created\n"
    );

    // The real kubectl reads back exactly the objects of the contract.
    let svc = get(&srv, &["svc", "productcatalog"]).expect("service");
    assert_eq!(svc["metadata"]["labels"]["app"], "productcatalog");
    assert_eq!(
        svc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-mesh"
    );
    assert!(svc["spec"].get("selector").is_none(), "no selector: {svc}");
    assert_eq!(svc["spec"]["ports"][0]["name"], "grpc");
    assert_eq!(svc["spec"]["ports"][0]["port"], 3550);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 3550);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    let se = get(&srv, &["se", "mesh-expansion-productcatalog"]).expect("serviceentry");
    assert_eq!(
        se["spec"]["hosts"][0],
        "productcatalog.default.svc.cluster.local"
    );
    assert_eq!(se["spec"]["location"], "MESH_INTERNAL");
    assert_eq!(se["spec"]["resolution"], "STATIC");
    assert_eq!(
        se["spec"]["ports"],
        serde_json::json!([{"number": 3550, "name": "grpc", "protocol": "GRPC"}])
    );
    assert_eq!(
        se["spec"]["endpoints"],
        serde_json::json!([{"address": "10.128.0.13", "labels": {"app": "productcatalog"}, "ports": {"grpc": 3550}, "serviceAccount": "default"}])
    );
    // kubectl hides managedFields; read them from the store.
    let stored = srv.get_json("cluster1", SE_PATH).expect("stored");
    // Created with a POST (so that concurrent registrations cannot overwrite each other) and
    // then applied: kubectl-mesh holds the fields as an Update and as an Apply, nobody else.
    let mut managers: Vec<&str> = stored["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter_map(|f| f["manager"].as_str()).collect())
        .unwrap_or_default();
    managers.dedup();
    assert_eq!(managers, vec!["kubectl-mesh"]);

    // Again: unchanged, and no resourceVersion moves.
    let (rv_svc, rv_se) = (rv(&srv, SVC_PATH), rv(&srv, SE_PATH));
    let run = kubectl(
        &srv,
        &[
            "mesh-register",
            "productcatalog",
            "10.128.0.13",
            "grpc:3550",
        ],
    )
    .ok();
    assert_eq!(
        run.stdout,
        "service/productcatalog unchanged\nserviceentry.networking.istio.io/mesh-expansion-productcatalog unchanged\n"
    );
    assert_eq!((rv(&srv, SVC_PATH), rv(&srv, SE_PATH)), (rv_svc, rv_se));

    // A second VM adds an endpoint and keeps the first.
    let run = kubectl(
        &srv,
        &[
            "mesh-register",
            "productcatalog",
            "10.128.0.14",
            "grpc:3550",
        ],
    )
    .ok();
    assert!(
        run.stdout
            .contains("mesh-expansion-productcatalog configured"),
        "{}",
        run.stdout
    );
    let se = get(&srv, &["se", "mesh-expansion-productcatalog"]).expect("se");
    let addrs: Vec<&str> = se["spec"]["endpoints"]
        .as_array()
        .expect("eps")
        .iter()
        .filter_map(|e| e["address"].as_str())
        .collect();
    assert_eq!(addrs, vec!["10.128.0.13", "10.128.0.14"]);

    // The list shows both.
    let run = kubectl(&srv, &["mesh-register", "--list"]).ok();
    assert!(run.stdout.starts_with("NAME "), "{}", run.stdout);
    assert!(
        run.stdout.contains("10.128.0.13,10.128.0.14"),
        "{}",
        run.stdout
    );

    // Deregistering both leaves nothing behind.
    kubectl(
        &srv,
        &["mesh-register", "--delete", "productcatalog", "10.128.0.13"],
    )
    .ok();
    assert!(srv.get_json("cluster1", SE_PATH).is_some());
    let run = kubectl(
        &srv,
        &["mesh-register", "--delete", "productcatalog", "10.128.0.14"],
    )
    .ok();
    assert!(
        run.stdout
            .contains("serviceentry.networking.istio.io/mesh-expansion-productcatalog deleted"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("service/productcatalog deleted"),
        "{}",
        run.stdout
    );
    assert!(srv.get_json("cluster1", SE_PATH).is_none());
    assert!(srv.get_json("cluster1", SVC_PATH).is_none());

    // An address that is not registered: exit 1 with a clear message.
    let run = kubectl(
        &srv,
        &["mesh-register", "--delete", "productcatalog", "10.128.0.14"],
    )
    .expect_code(1);
    assert!(
        run.stderr
            .contains("10.128.0.14 is not registered for service productcatalog"),
        "{}",
        run.stderr
    );
}

fn workloadentry_mode_register_and_delete(tier) {
    let srv = Server::builder(tier).start();
    let run = plugin(
        Some(&srv),
        "register",
        &[
            "productcatalog",
            "10.128.0.13,fd00::13",
            "grpc:3550",
            "--mode",
            "workloadentry",
            "--network",
            "vm-net",
            "-l",
            "version=v1",
        ],
    )
    .ok();
    assert_eq!(
        run.stdout,
        "service/productcatalog created\n\
         workloadentry.networking.istio.io/productcatalog-10-128-0-13 created\n\
         workloadentry.networking.istio.io/productcatalog-fd00--13 created\n"
    );
    let svc = get(&srv, &["svc", "productcatalog"]).expect("svc");
    assert_eq!(
        svc["spec"]["selector"],
        serde_json::json!({"app": "productcatalog"})
    );
    let we = get(&srv, &["workloadentries", "productcatalog-fd00--13"]).expect("we");
    assert_eq!(we["spec"]["address"], "fd00::13");
    assert_eq!(we["spec"]["network"], "vm-net");
    assert_eq!(
        we["spec"]["labels"],
        serde_json::json!({"app": "productcatalog", "version": "v1"})
    );
    assert_eq!(we["spec"]["ports"], serde_json::json!({"grpc": 3550}));
    let run = plugin(
        Some(&srv),
        "register",
        &[
            "productcatalog",
            "10.128.0.13,fd00::13",
            "grpc:3550",
            "--mode",
            "workloadentry",
            "--network",
            "vm-net",
            "-l",
            "version=v1",
        ],
    )
    .ok();
    assert_eq!(run.stdout.matches("unchanged").count(), 3, "{}", run.stdout);

    plugin(
        Some(&srv),
        "register",
        &["--delete", "productcatalog", "10.128.0.13"],
    )
    .ok();
    assert!(
        get(&srv, &["svc", "productcatalog"]).is_some(),
        "the service stays while a VM is left"
    );
    let run = plugin(
        Some(&srv),
        "register",
        &["--delete", "productcatalog", "fd00::13"],
    )
    .ok();
    assert!(
        run.stdout.contains("service/productcatalog deleted"),
        "{}",
        run.stdout
    );
    let left = kubectl(&srv, &["get", "workloadentries,svc", "-o", "name"]).ok();
    assert!(!left.stdout.contains("productcatalog"), "{}", left.stdout);
}

fn endpoints_mode_register_dedupes_and_delete(tier) {
    let srv = Server::builder(tier).start();
    plugin(
        Some(&srv),
        "register",
        &[
            "legacy",
            "10.0.0.5,10.0.0.5,10.0.0.6",
            "http:8080",
            "--mode",
            "endpoints",
            "-s",
            "legacy-sa",
        ],
    )
    .ok();
    let ep = get(&srv, &["endpoints", "legacy"]).expect("endpoints");
    assert_eq!(
        ep["subsets"][0]["addresses"],
        serde_json::json!([{"ip": "10.0.0.5"}, {"ip": "10.0.0.6"}])
    );
    let svc = get(&srv, &["svc", "legacy"]).expect("svc");
    assert_eq!(
        svc["metadata"]["annotations"]["alpha.istio.io/kubernetes-serviceaccounts"],
        "legacy-sa"
    );
    plugin(Some(&srv), "register", &["--delete", "legacy", "10.0.0.5"]).ok();
    let ep = get(&srv, &["endpoints", "legacy"]).expect("endpoints");
    assert_eq!(
        ep["subsets"][0]["addresses"],
        serde_json::json!([{"ip": "10.0.0.6"}])
    );
    plugin(Some(&srv), "register", &["--delete", "legacy", "10.0.0.6"]).ok();
    assert!(get(&srv, &["endpoints", "legacy"]).is_none());
    assert!(get(&srv, &["svc", "legacy"]).is_none());
}

fn client_dry_run_needs_no_cluster_and_pipes_into_kubectl_apply(tier) {
    let run = plugin(
        None,
        "register",
        &[
            "productcatalog",
            "10.128.0.13",
            "grpc:3550",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    )
    .ok();
    assert!(run.stdout.contains("kind: ServiceEntry"), "{}", run.stdout);
    let srv = Server::builder(tier).start();
    let mut child = std::process::Command::new("kubectl")
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "kubectl-mesh",
            "-f",
            "-",
        ])
        .env("KUBECONFIG", srv.kubeconfig())
        .env("HOME", srv.home())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(run.stdout.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the dry run printed is exactly what the plugin applies: a real run is unchanged.
    let run = plugin(
        Some(&srv),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550"],
    )
    .ok();
    assert_eq!(run.stdout.matches("unchanged").count(), 2, "{}", run.stdout);
}

fn server_dry_run_validates_and_stores_nothing(tier) {
    let srv = Server::builder(tier).start();
    let run = plugin(
        Some(&srv),
        "register",
        &[
            "productcatalog",
            "10.128.0.13",
            "grpc:3550",
            "--dry-run=server",
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("created (server dry run)"),
        "{}",
        run.stdout
    );
    assert!(srv.get_json("cluster1", SVC_PATH).is_none());
    assert!(srv.get_json("cluster1", SE_PATH).is_none());
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster1")
            .iter()
            .all(|r| r.query.contains("dryRun=All")));
    }
}

fn no_istio_and_missing_namespace_are_clear_errors(tier) {
    let bare = Server::builder(tier).no_crds().start();
    let run = plugin(
        Some(&bare),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550"],
    )
    .expect_code(1);
    assert_eq!(
        run.stderr.trim(),
        "error: Istio CRDs not found in context cluster1: is Istio installed?"
    );
    let srv = Server::builder(tier).start();
    let run = plugin(
        Some(&srv),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550", "-n", "shop"],
    )
    .expect_code(1);
    assert!(
        run.stderr.contains("namespace \"shop\" not found")
            && run.stderr.contains("--create-namespace"),
        "{}",
        run.stderr
    );
    if let Some(emu) = srv.emu() {
        assert!(writes(emu, "cluster1").is_empty());
    }
    let run = plugin(
        Some(&srv),
        "register",
        &[
            "productcatalog",
            "10.128.0.13",
            "grpc:3550",
            "-n",
            "shop",
            "--create-namespace",
        ],
    )
    .ok();
    assert!(
        run.stdout.starts_with("namespace/shop created\n"),
        "{}",
        run.stdout
    );
    assert!(srv.get_json("cluster1", "/apis/networking.istio.io/v1/namespaces/shop/serviceentries/mesh-expansion-productcatalog").is_some());
}
}

/// What istiod makes of registrations, read as a sidecar in another namespace would get it.
#[test]
fn real_istiod_sends_the_registered_vm_endpoints() {
    if !Tier::Real.enabled() {
        return;
    }
    const CLUSTER: &str = "outbound|3550||productcatalog.default.svc.cluster.local";
    let srv = Server::builder(Tier::Real)
        .istiod()
        .seed_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: client}\n")
        .start();
    let real = srv.real().expect("real tier");
    let register = |args: &[&str]| {
        let mut full = vec!["mesh-register"];
        full.extend_from_slice(args);
        kubectl(&srv, &full).ok();
    };
    let endpoints_are =
        |want: &'static [&'static str]| move |d: &Value| xds_endpoints(d, CLUSTER) == want;

    register(&["productcatalog", "10.128.0.13", "grpc:3550"]);
    real.wait_xds(
        "cluster1",
        "client",
        "the first VM",
        endpoints_are(&["10.128.0.13:3550"]),
    );
    register(&["productcatalog", "10.128.0.14", "grpc:3550"]);
    real.wait_xds(
        "cluster1",
        "client",
        "both VMs",
        endpoints_are(&["10.128.0.13:3550", "10.128.0.14:3550"]),
    );
    register(&["--delete", "productcatalog", "10.128.0.13"]);
    register(&["--delete", "productcatalog", "10.128.0.14"]);
    real.wait_xds("cluster1", "client", "no productcatalog cluster", |d| {
        common::xds_cluster(d, CLUSTER).is_none()
    });

    // WorkloadEntries selected by the Service give the same endpoints.
    register(&[
        "productcatalog",
        "10.128.0.13,10.128.0.14",
        "grpc:3550",
        "--mode",
        "workloadentry",
    ]);
    real.wait_xds(
        "cluster1",
        "client",
        "both VMs as WorkloadEntries",
        endpoints_are(&["10.128.0.13:3550", "10.128.0.14:3550"]),
    );
}

// Several `--context`s (#16, part 4): the VM service registered in every cluster that calls it.

const BOTH: [&str; 4] = ["--context", "cluster1", "--context", "cluster2"];

fn across<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend_from_slice(&BOTH);
    v
}

fn two_clusters(tier: Tier) -> Server {
    Server::builder(tier)
        .clusters(&["cluster1", "cluster2"])
        .start()
}

fn rv_in(srv: &Server, cluster: &str, path: &str) -> String {
    srv.get_json(cluster, path)
        .and_then(|o| o["metadata"]["resourceVersion"].as_str().map(String::from))
        .unwrap_or_default()
}

fn se_addresses(srv: &Server, cluster: &str) -> Vec<String> {
    srv.get_json(cluster, SE_PATH)
        .and_then(|se| se["spec"]["endpoints"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["address"].as_str().map(String::from))
        .collect()
}

/// Writes that were sent for real (a server dry run stores nothing), from kube-emu's log.
fn real_writes(emu: &Emu, cluster: &str) -> Vec<common::LoggedRequest> {
    writes(emu, cluster)
        .into_iter()
        .filter(|r| !r.query.contains("dryRun=All"))
        .collect()
}

/// A Service `productcatalog` in cluster2 whose targetPort another field manager owns: our
/// apply (targetPort = port) conflicts with it.
const HELM_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: productcatalog
  namespace: default
  labels: {app: productcatalog, app.kubernetes.io/managed-by: kubectl-mesh}
spec:
  ports:
  - {name: grpc, port: 3550, targetPort: 8080, protocol: TCP}
";

/// Refuses every real (not dry-run) create or update of a ServiceEntry in cluster2: an admission
/// refusal that the server dry run cannot foresee, so the write itself fails.
const REFUSE_REAL_WRITES: &str = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: refuse-serviceentries}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [networking.istio.io]
      apiVersions: ['*']
      operations: [CREATE, UPDATE]
      resources: [serviceentries]
  validations:
  - expression: has(request.dryRun) && request.dryRun
    message: serviceentries are frozen in this cluster
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: refuse-serviceentries}
spec:
  policyName: refuse-serviceentries
  validationActions: [Deny]
";

fn kubectl_apply_file(srv: &Server, extra: &[&str], yaml: &str) -> Run {
    use std::io::Write as _;
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(yaml.as_bytes()).expect("write yaml");
    let path = f.path().to_string_lossy().into_owned();
    let mut args = vec!["apply", "-f", path.as_str()];
    args.extend_from_slice(extra);
    kubectl(srv, &args)
}

on_both_tiers! {
fn two_contexts_are_written_rerun_unchanged_listed_and_deleted(tier) {
    let srv = two_clusters(tier);
    let run = kubectl(
        &srv,
        &across(&["mesh-register", "productcatalog", "10.128.0.13", "grpc:3550"]),
    )
    .ok();
    assert_eq!(
        run.stdout,
        "cluster1: service/productcatalog created\n\
         cluster1: serviceentry.networking.istio.io/mesh-expansion-productcatalog created\n\
         cluster2: service/productcatalog created\n\
         cluster2: serviceentry.networking.istio.io/mesh-expansion-productcatalog created\n"
    );
    for c in ["cluster1", "cluster2"] {
        assert_eq!(se_addresses(&srv, c), vec!["10.128.0.13"], "{c}");
        assert!(srv.get_json(c, SVC_PATH).is_some(), "{c}");
    }

    // Again: unchanged in each context, and no resourceVersion moves.
    let rvs: Vec<String> = ["cluster1", "cluster2"]
        .iter()
        .flat_map(|c| [rv_in(&srv, c, SVC_PATH), rv_in(&srv, c, SE_PATH)])
        .collect();
    let run = plugin(
        Some(&srv),
        "register",
        &across(&["productcatalog", "10.128.0.13", "grpc:3550"]),
    )
    .ok();
    assert_eq!(run.stdout.matches(" unchanged\n").count(), 4, "{}", run.stdout);
    assert!(run.stdout.starts_with("cluster1: service/productcatalog unchanged\n"), "{}", run.stdout);
    let again: Vec<String> = ["cluster1", "cluster2"]
        .iter()
        .flat_map(|c| [rv_in(&srv, c, SVC_PATH), rv_in(&srv, c, SE_PATH)])
        .collect();
    assert_eq!(again, rvs);

    // A second VM registered in cluster1 alone: --list marks the difference.
    plugin(
        Some(&srv),
        "register",
        &["productcatalog", "10.128.0.14", "grpc:3550", "--context", "cluster1"],
    )
    .ok();
    let run = plugin(Some(&srv), "register", &across(&["--list"])).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("CONTEXT    NAME "), "{}", run.stdout);
    assert!(lines[0].ends_with("DIFFERS"), "{}", run.stdout);
    assert!(lines[1].starts_with("cluster1   productcatalog "), "{}", run.stdout);
    assert!(lines[1].contains("10.128.0.13,10.128.0.14"), "{}", run.stdout);
    assert!(lines[1].ends_with("addresses"), "{}", run.stdout);
    assert!(lines[2].starts_with("cluster2   productcatalog "), "{}", run.stdout);
    assert!(lines[2].ends_with("addresses"), "{}", run.stdout);
    assert!(
        run.stderr.contains("Warning: service default/productcatalog differs between the contexts: addresses: cluster1 10.128.0.13,10.128.0.14, cluster2 10.128.0.13"),
        "{}",
        run.stderr
    );

    // --delete across both: cluster1 keeps its second VM, cluster2 loses the registration.
    let run = plugin(
        Some(&srv),
        "register",
        &across(&["--delete", "productcatalog", "10.128.0.13"]),
    )
    .ok();
    assert_eq!(
        run.stdout,
        "cluster1: serviceentry.networking.istio.io/mesh-expansion-productcatalog configured\n\
         cluster2: serviceentry.networking.istio.io/mesh-expansion-productcatalog deleted\n\
         cluster2: service/productcatalog deleted\n"
    );
    assert_eq!(se_addresses(&srv, "cluster1"), vec!["10.128.0.14"]);
    assert!(srv.get_json("cluster2", SE_PATH).is_none());
    assert!(srv.get_json("cluster2", SVC_PATH).is_none());
    let run = plugin(Some(&srv), "register", &across(&["--list"])).ok();
    assert!(run.stdout.lines().nth(1).unwrap_or("").ends_with("not-in:cluster2"), "{}", run.stdout);

    // An address one context does not have: found before any context is written.
    let rv1 = rv_in(&srv, "cluster1", SE_PATH);
    let run = plugin(
        Some(&srv),
        "register",
        &across(&["--delete", "productcatalog", "10.128.0.14"]),
    )
    .expect_code(1);
    assert!(
        run.stderr.contains("10.128.0.14 is not registered for service productcatalog in namespace default (context \"cluster2\")"),
        "{}",
        run.stderr
    );
    assert_eq!(rv_in(&srv, "cluster1", SE_PATH), rv1);
    assert_eq!(se_addresses(&srv, "cluster1"), vec!["10.128.0.14"]);
}

fn dry_runs_across_contexts_print_each_context(tier) {
    let srv = two_clusters(tier);
    let run = plugin(
        Some(&srv),
        "register",
        &across(&["productcatalog", "10.128.0.13", "grpc:3550", "--dry-run=client", "-o", "yaml"]),
    )
    .ok();
    assert!(run.stdout.starts_with("# context: cluster1\n"), "{}", run.stdout);
    assert!(run.stdout.contains("---\n# context: cluster2\n"), "{}", run.stdout);
    assert_eq!(run.stdout.matches("kind: ServiceEntry").count(), 2, "{}", run.stdout);
    let run = plugin(
        Some(&srv),
        "register",
        &across(&["productcatalog", "10.128.0.13", "grpc:3550", "--dry-run=server", "-o", "json"]),
    )
    .ok();
    let lists: Vec<Value> = serde_json::Deserializer::from_str(&run.stdout)
        .into_iter::<Value>()
        .map(|v| v.expect("json"))
        .collect();
    assert_eq!(lists.len(), 2, "{}", run.stdout);
    for l in &lists {
        assert_eq!(l["kind"], "List");
        assert_eq!(l["items"].as_array().map(Vec::len), Some(2), "{l}");
    }
    for c in ["cluster1", "cluster2"] {
        assert!(srv.get_json(c, SVC_PATH).is_none(), "{c}");
        assert!(srv.get_json(c, SE_PATH).is_none(), "{c}");
    }
    // The same context twice is a usage error, before any request.
    let run = plugin(
        Some(&srv),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550", "--context", "cluster1", "--context", "cluster1"],
    )
    .expect_code(2);
    assert_eq!(run.stderr, "error: --context: cluster1 is given twice\n");
}

fn a_conflict_in_cluster2_is_found_before_cluster1_is_written(tier) {
    let srv = two_clusters(tier);
    kubectl_apply_file(
        &srv,
        &["--server-side", "--field-manager=helm", "--context", "cluster2"],
        HELM_SERVICE,
    )
    .ok();
    // cluster2 alone: the apply conflicts with helm's targetPort.
    let alone = plugin(
        Some(&srv),
        "register",
        &["productcatalog", "10.128.0.13", "grpc:3550", "--context", "cluster2"],
    );
    assert_ne!(alone.code, 0, "{}", alone.stderr);
    assert!(alone.stderr.contains("conflict"), "{}", alone.stderr);
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = plugin(
        Some(&srv),
        "register",
        &across(&["productcatalog", "10.128.0.13", "grpc:3550"]),
    )
    .expect_code(alone.code);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot apply Service default/productcatalog in context \"cluster2\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("conflict"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was written in any context"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(srv.get_json("cluster1", SVC_PATH).is_none());
    assert!(srv.get_json("cluster1", SE_PATH).is_none());
    assert!(srv.get_json("cluster2", SE_PATH).is_none());
    if let Some(emu) = srv.emu() {
        for c in ["cluster1", "cluster2"] {
            let w = real_writes(emu, c);
            assert!(w.is_empty(), "{c} was written: {w:?}");
        }
    }
}

fn a_failed_write_in_cluster2_puts_cluster1_back_and_exits_4(tier) {
    let srv = two_clusters(tier);
    match srv.emu() {
        // The ServiceEntry's POST is sent only for real (the dry run checks with an apply).
        Some(emu) => emu.inject(
            "cluster2",
            Fault::new("POST", "serviceentries", FaultAction::Status(403)),
        ),
        None => refuse_real_serviceentry_writes(&srv),
    }
    let run = plugin(
        Some(&srv),
        "register",
        &across(&["productcatalog", "10.128.0.13", "grpc:3550"]),
    )
    .expect_code(4);
    assert!(run.stderr.contains("CONTEXT    STATE\n"), "{}", run.stderr);
    assert!(
        run.stderr.contains("cluster1   rolled back serviceentry.networking.istio.io/mesh-expansion-productcatalog, service/productcatalog; the cluster is as it was"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cluster2   FAILED: ")
            && run.stderr.contains("cannot create ServiceEntry default/mesh-expansion-productcatalog in context \"cluster2\""),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("error: the write failed in context cluster2; the contexts written before it were put back"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for c in ["cluster1", "cluster2"] {
        assert!(srv.get_json(c, SVC_PATH).is_none(), "{c}: the Service is left");
        assert!(srv.get_json(c, SE_PATH).is_none(), "{c}: the ServiceEntry is left");
    }
}
}

/// A ValidatingAdmissionPolicy in cluster2 that refuses real ServiceEntry writes and lets dry
/// runs through; waits until the server enforces it.
fn refuse_real_serviceentry_writes(srv: &Server) {
    kubectl_apply_file(srv, &["--context", "cluster2"], REFUSE_REAL_WRITES).ok();
    let probe = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: probe, namespace: default}
spec: {hosts: [probe.example.com], ports: [{name: http, number: 80, protocol: HTTP}], resolution: DNS}
";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let run = kubectl_apply_file(srv, &["--context", "cluster2"], probe);
        if run.code != 0 && run.stderr.contains("frozen") {
            return;
        }
        if run.code == 0 {
            kubectl(
                srv,
                &["delete", "serviceentry", "probe", "--context", "cluster2"],
            )
            .ok();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the admission policy never took effect: {}",
            run.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A signal while cluster1 is written (kube-emu holds the write): cluster1's write finishes,
/// cluster2 is never written, cluster1 is put back, exit 4 with the state table.
#[test]
fn a_signal_during_a_write_across_contexts_puts_back_and_exits_4() {
    use std::time::{Duration, Instant};
    let srv = Server::builder(Tier::Emu)
        .clusters(&["cluster1", "cluster2"])
        .start();
    let emu = srv.emu().expect("kube-emu");
    // The first PATCH of the Service is the server dry run; the second is the write.
    emu.inject(
        "cluster1",
        Fault::new(
            "PATCH",
            "services",
            FaultAction::Delay(Duration::from_millis(1500)),
        )
        .nth(2),
    );
    let child = common::spawn_plugin(
        &srv,
        "register",
        &across(&["productcatalog", "10.128.0.13", "grpc:3550"]),
    );
    // Every context is checked before any is written; then cluster1's write is held.
    let deadline = Instant::now() + Duration::from_secs(20);
    while writes(emu, "cluster2").is_empty() {
        assert!(Instant::now() < deadline, "the run never checked cluster2");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let run: Run = child.wait_with_output().expect("wait").into();
    let run = run.expect_code(4);
    assert!(
        run.stderr.contains("cluster1   rolled back serviceentry.networking.istio.io/mesh-expansion-productcatalog, service/productcatalog; the cluster is as it was"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "cluster2   FAILED: interrupted by SIGTERM: context cluster2 was not written"
        ),
        "{}",
        run.stderr
    );
    assert!(real_writes(emu, "cluster2").is_empty());
    for c in ["cluster1", "cluster2"] {
        assert!(emu.get_json(c, SVC_PATH).is_none(), "{c}");
        assert!(emu.get_json(c, SE_PATH).is_none(), "{c}");
    }
}
