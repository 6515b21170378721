//! The real kubectl against kube-emu.
#![allow(missing_docs, clippy::unwrap_used)]

use kube_emu::Emu;
use std::path::Path;
use std::process::{Command, Output};

fn have_kubectl() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn kubectl(emu: &Emu, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("kubectl")
        .args(args)
        .arg("--cache-dir")
        .arg(emu.home().join("cache"))
        .env("KUBECONFIG", emu.kubeconfig())
        .env("HOME", emu.home())
        .current_dir(dir)
        .output()
        .unwrap();
    eprintln!(
        "$ kubectl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(emu: &Emu, dir: &Path, args: &[&str]) -> String {
    let out = kubectl(emu, dir, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fail(emu: &Emu, dir: &Path, args: &[&str]) -> String {
    let out = kubectl(emu, dir, args);
    assert!(!out.status.success(), "kubectl {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n";
const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: ext\nspec:\n  hosts: [ext.example.com]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports:\n  - {number: 443, name: https, protocol: TLS}\n";

fn setup() -> Option<(Emu, tempfile::TempDir)> {
    if !have_kubectl() {
        eprintln!("kubectl not installed: skipping");
        return None;
    }
    let emu = Emu::builder().start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
    std::fs::write(dir.path().join("se.yaml"), SE).unwrap();
    std::fs::write(
        dir.path().join("svc2.yaml"),
        SVC.replace("name: web\n", "name: web2\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("se2.yaml"),
        SE.replace("name: ext\n", "name: ext2\n"),
    )
    .unwrap();
    Some((emu, dir))
}

#[test]
fn api_resources_lists_serviceentries_with_short_name() {
    let Some((emu, dir)) = setup() else { return };
    let out = ok(&emu, dir.path(), &["api-resources"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("serviceentries "))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "serviceentries",
            "se",
            "networking.istio.io/v1",
            "true",
            "ServiceEntry"
        ]
    );
    assert!(out
        .lines()
        .any(|l| l.starts_with("services ") && l.contains("svc")));
}

#[test]
fn client_side_apply_then_unchanged() {
    let Some((emu, dir)) = setup() else { return };
    assert_eq!(
        ok(&emu, dir.path(), &["apply", "-f", "svc.yaml"]).trim(),
        "service/web created"
    );
    assert_eq!(
        ok(&emu, dir.path(), &["apply", "-f", "svc.yaml"]).trim(),
        "service/web unchanged"
    );
    assert_eq!(
        ok(&emu, dir.path(), &["apply", "-f", "se.yaml"]).trim(),
        "serviceentry.networking.istio.io/ext created"
    );
    assert_eq!(
        ok(&emu, dir.path(), &["apply", "-f", "se.yaml"]).trim(),
        "serviceentry.networking.istio.io/ext unchanged"
    );
    // A change goes through a strategic merge patch (Service) and a merge patch (ServiceEntry).
    std::fs::write(
        dir.path().join("svc.yaml"),
        SVC.replace("port: 80", "port: 8080"),
    )
    .unwrap();
    assert_eq!(
        ok(&emu, dir.path(), &["apply", "-f", "svc.yaml"]).trim(),
        "service/web configured"
    );
    let svc = emu
        .get_json("cluster1", "/api/v1/namespaces/default/services/web")
        .unwrap();
    assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    std::fs::write(dir.path().join("se.yaml"), SE.replace("DNS", "STATIC")).unwrap();
    assert_eq!(
        ok(&emu, dir.path(), &["apply", "-f", "se.yaml"]).trim(),
        "serviceentry.networking.istio.io/ext configured"
    );
    let yaml = ok(&emu, dir.path(), &["get", "se", "ext", "-o", "yaml"]);
    let v: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(v["spec"]["resolution"], "STATIC");
    assert_eq!(v["spec"]["hosts"][0], "ext.example.com");
    let table = ok(&emu, dir.path(), &["get", "se"]);
    assert!(table.contains("ext"), "{table}");
    let patches: Vec<_> = emu
        .requests("cluster1")
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
}

#[test]
fn server_side_apply_twice_keeps_resource_version() {
    let Some((emu, dir)) = setup() else { return };
    for (file, path) in [
        ("svc2.yaml", "/api/v1/namespaces/default/services/web2"),
        (
            "se2.yaml",
            "/apis/networking.istio.io/v1/namespaces/default/serviceentries/ext2",
        ),
    ] {
        let out = ok(&emu, dir.path(), &["apply", "--server-side", "-f", file]);
        assert!(out.contains("serverside-applied"), "{out}");
        let rv1 = emu.get_json("cluster1", path).unwrap()["metadata"]["resourceVersion"].clone();
        ok(&emu, dir.path(), &["apply", "--server-side", "-f", file]);
        let obj = emu.get_json("cluster1", path).unwrap();
        assert_eq!(
            obj["metadata"]["resourceVersion"], rv1,
            "a second identical apply must not change {path}"
        );
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "kubectl");
    }
    let yaml = ok(&emu, dir.path(), &["get", "se", "ext2", "-o", "yaml"]);
    assert!(yaml.contains("ext.example.com"));
    // A conflicting apply by another manager fails; --force-conflicts wins.
    std::fs::write(
        dir.path().join("se3.yaml"),
        SE.replace("name: ext\n", "name: ext2\n")
            .replace("DNS", "STATIC"),
    )
    .unwrap();
    let err = fail(
        &emu,
        dir.path(),
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            "se3.yaml",
        ],
    );
    assert!(err.contains("conflict"), "{err}");
    ok(
        &emu,
        dir.path(),
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "--force-conflicts",
            "-f",
            "se3.yaml",
        ],
    );
}

#[test]
fn invalid_serviceentries_are_rejected() {
    let Some((emu, dir)) = setup() else { return };
    std::fs::write(
        dir.path().join("nohosts.yaml"),
        SE.replace("  hosts: [ext.example.com]\n", ""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("none.yaml"),
        SE.replace(
            "resolution: DNS",
            "resolution: NONE\n  endpoints: [{address: 10.1.1.1}]",
        ),
    )
    .unwrap();
    for f in ["nohosts.yaml", "none.yaml"] {
        let err = fail(&emu, dir.path(), &["apply", "-f", f]);
        assert!(err.contains("is invalid"), "{err}");
        let err = fail(&emu, dir.path(), &["apply", "--server-side", "-f", f]);
        assert!(err.contains("is invalid"), "{err}");
    }
    let err = fail(&emu, dir.path(), &["apply", "-f", "nohosts.yaml"]);
    assert!(err.contains("spec.hosts: Required value"), "{err}");
    let err = fail(&emu, dir.path(), &["apply", "-f", "none.yaml"]);
    assert!(err.contains("NONE mode cannot set endpoints"), "{err}");
    let codes: Vec<u16> = emu
        .requests("cluster1")
        .iter()
        .filter(|r| !r.is_discovery() && r.method != "GET")
        .map(|r| r.status)
        .collect();
    assert!(codes.iter().all(|c| *c == 422), "{codes:?}");
    assert!(emu
        .list_json("cluster1", "/apis/networking.istio.io/v1/serviceentries")
        .is_empty());
}

#[test]
fn stale_replace_conflicts() {
    let Some((emu, dir)) = setup() else { return };
    ok(&emu, dir.path(), &["apply", "-f", "se.yaml"]);
    let yaml = ok(&emu, dir.path(), &["get", "se", "ext", "-o", "yaml"]);
    ok(&emu, dir.path(), &["label", "se", "ext", "touched=yes"]);
    std::fs::write(dir.path().join("stale.yaml"), yaml).unwrap();
    let err = fail(&emu, dir.path(), &["replace", "-f", "stale.yaml"]);
    assert!(err.contains("the object has been modified"), "{err}");
    let status: Vec<u16> = emu
        .requests("cluster1")
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(status, [409]);
}

#[test]
fn token_request_via_create_raw() {
    let Some((emu, dir)) = setup() else { return };
    std::fs::write(
        dir.path().join("tokenrequest.json"),
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["istio-ca"],"expirationSeconds":3600}}"#,
    )
    .unwrap();
    let out = ok(
        &emu,
        dir.path(),
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            "-f",
            "tokenrequest.json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["token"].as_str().unwrap().split('.').count(), 3);
    assert!(v["status"]["expirationTimestamp"].is_string());
    fail(
        &emu,
        dir.path(),
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/serviceaccounts/missing/token",
            "-f",
            "tokenrequest.json",
        ],
    );
}

#[test]
fn contexts_get_delete_and_forbidden() {
    let Some((emu, dir)) = setup() else { return };
    drop(emu);
    let emu = Emu::builder().clusters(&["east", "west"]).start().unwrap();
    assert_eq!(
        ok(&emu, dir.path(), &["config", "current-context"]).trim(),
        "east"
    );
    ok(
        &emu,
        dir.path(),
        &["--context", "west", "apply", "-f", "se.yaml"],
    );
    assert!(emu
        .get_json(
            "west",
            "/apis/networking.istio.io/v1/namespaces/default/serviceentries/ext"
        )
        .is_some());
    assert!(emu
        .get_json(
            "east",
            "/apis/networking.istio.io/v1/namespaces/default/serviceentries/ext"
        )
        .is_none());
    let names = ok(
        &emu,
        dir.path(),
        &["--context", "west", "get", "se", "-o", "name"],
    );
    assert_eq!(names.trim(), "serviceentry.networking.istio.io/ext");
    emu.inject(
        "west",
        kube_emu::Fault::new(
            "DELETE",
            "serviceentries/ext",
            kube_emu::FaultAction::Status(403),
        ),
    );
    let err = fail(
        &emu,
        dir.path(),
        &["--context", "west", "delete", "se", "ext"],
    );
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
    ok(
        &emu,
        dir.path(),
        &["--context", "west", "delete", "se", "ext"],
    );
    assert!(emu
        .get_json(
            "west",
            "/apis/networking.istio.io/v1/namespaces/default/serviceentries/ext"
        )
        .is_none());
}

/// The workload kinds a PeerAuthentication selector check lists are discovered, stored and
/// validated like the other built-ins.
#[test]
fn workload_kinds_are_served_with_discovery() {
    let Some((emu, dir)) = setup() else { return };
    let out = ok(&emu, dir.path(), &["api-resources"]);
    for (name, version) in [
        ("statefulsets", "apps/v1"),
        ("daemonsets", "apps/v1"),
        ("replicasets", "apps/v1"),
        ("jobs", "batch/v1"),
        ("cronjobs", "batch/v1"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains(version)),
            "{name} not discovered:\n{out}"
        );
    }
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n";
    std::fs::write(dir.path().join("job.yaml"), job).unwrap();
    assert_eq!(
        ok(&emu, dir.path(), &["apply", "-f", "job.yaml"]).trim(),
        "job.batch/migrate created"
    );
    let got = ok(
        &emu,
        dir.path(),
        &[
            "get",
            "jobs",
            "-o",
            "jsonpath={.items[0].spec.template.metadata.labels.app}",
        ],
    );
    assert_eq!(got, "web");
    // A typed check: a replica count that is not a number is refused.
    std::fs::write(
        dir.path().join("sts.yaml"),
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec: {replicas: many, selector: {matchLabels: {app: db}}, template: {metadata: {labels: {app: db}}}}\n",
    )
    .unwrap();
    let err = fail(&emu, dir.path(), &["apply", "-f", "sts.yaml"]);
    assert!(
        err.contains("Error from server (BadRequest)") && err.contains("StatefulSet"),
        "{err}"
    );
}
