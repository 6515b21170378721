//! kubectl's global flags on every plugin: `-v` request logs that never show a credential, and
//! the cluster and auth flags (`--server`, `--token`, `--certificate-authority`, `--as`, ...)
//! over the kubeconfig. Impersonation needs RBAC, so those checks run on the real tier only.

use std::path::{Path, PathBuf};

use crate::common::{plugin, Run, Server, Target, Tier, ISTIO};
use base64::Engine as _;
use serde_json::Value;

/// The group `mesh-vm files` reads, beside the Istio install.
const GROUP: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: analytics, namespace: vm}
spec: {template: {serviceAccount: default}}
"#;

/// A CA no test server's certificate is signed by (self-signed, valid until 2126).
const WRONG_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBxjCCAWugAwIBAgIUCDkjTaBJDw2t5+66nLZ+CelfseowCgYIKoZIzj0EAwIw
NzE1MDMGA1UEAwwsa3ViZWN0bC1tZXNoIHRlc3RzOiBhIENBIG5vIHRlc3Qgc2Vy
dmVyIHVzZXMwIBcNMjYxMjA1MDYyMzEzWhgPMjEyNjExMTEwNjIzMTNaMDcxNTAz
BgNVBAMMLGt1YmVjdGwtbWVzaCB0ZXN0czogYSBDQSBubyB0ZXN0IHNlcnZlciB1
c2VzMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8+XSp6VphUTcOsBQqCFK3Po8
S+30GxXMOanEt9kiIs3Hm+A/7SlP8E25haaprHC9LponrJlKPjzvjHJLAsSeNKNT
MFEwHQYDVR0OBBYEFDZKJglUWwHW2RyEQZtGhX02+2i4MB8GA1UdIwQYMBaAFDZK
JglUWwHW2RyEQZtGhX02+2i4MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SQAwRgIhALpLly6ieoB+nnvFBjp9QFjLbMR420zlxcv3QOsOgDG+AiEAxN77LOIw
3gCt3xNsE3XXSeZmGZng8Y0PlDzTsSTHdHg=
-----END CERTIFICATE-----
";

/// A kubeconfig and HOME of the test's choosing (an empty kubeconfig, for one).
struct Env {
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Target for Env {
    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
    fn home(&self) -> &Path {
        &self.home
    }
}

fn kubeconfig(srv: &Server) -> Value {
    let text = std::fs::read_to_string(srv.kubeconfig()).expect("kubeconfig");
    serde_yaml::from_str(&text).expect("kubeconfig yaml")
}

/// The admin bearer token of `cluster1` in the kubeconfig: the one no output may contain.
fn admin_token(srv: &Server) -> String {
    kubeconfig(srv)["users"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["name"] == "cluster1")
        .and_then(|u| u["user"]["token"].as_str())
        .expect("cluster1's token")
        .to_string()
}

/// `cluster1`'s CA certificate, written to a file for `--certificate-authority`.
fn ca_file(srv: &Server, dir: &Path) -> PathBuf {
    let data = kubeconfig(srv)["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "cluster1")
        .and_then(|c| c["cluster"]["certificate-authority-data"].as_str())
        .map(String::from)
        .expect("cluster1's CA");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64 CA");
    let path = dir.join("ca.crt");
    std::fs::write(&path, pem).expect("write CA");
    path
}

/// An empty kubeconfig file and an empty HOME.
fn empty_kubeconfig(dir: &Path) -> Env {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let kubeconfig = dir.join("empty.kubeconfig");
    std::fs::write(&kubeconfig, "").expect("empty kubeconfig");
    Env { kubeconfig, home }
}

/// klog's line header: `I1205 06:16:00.051670   17689 file.rs:42] `.
fn is_klog_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 30
        && b[0] == b'I'
        && b[1..5].iter().all(u8::is_ascii_digit)
        && b[5] == b' '
        && b[8] == b':'
        && b[14] == b'.'
        && line.contains("] ")
}

/// The log lines (a source file named before `]`) are klog's, among the command's own notes.
#[track_caller]
fn assert_klog(run: &Run) {
    let logs: Vec<&str> = run.stderr.lines().filter(|l| l.contains(".rs:")).collect();
    assert!(!logs.is_empty(), "no log lines:\n{}", run.stderr);
    assert!(logs.iter().all(|l| is_klog_line(l)), "{}", run.stderr);
}

#[track_caller]
fn assert_has(run: &Run, what: &str) {
    assert!(
        run.stderr.contains(what),
        "stderr lacks {what:?}:\n{}",
        run.stderr
    );
}

on_both_tiers! {
fn verbose_levels_log_decisions_and_requests_and_never_a_credential(tier) {
    let srv = Server::builder(tier)
        .seed_yaml(&format!("{ISTIO}---{GROUP}"))
        .start();
    let bearer = admin_token(&srv);

    // Level 4: the decisions, and no request lines.
    let run = plugin(
        Some(&srv),
        "vm",
        &["group", "analytics", "-n", "vm", "--ports", "http=8080", "-v", "4"],
    )
    .ok();
    assert_has(&run, r#""Using context" context="cluster1" source="current-context""#);
    assert_has(&run, r#""Using namespace" namespace="vm" source="--namespace""#);
    assert_has(&run, r#""Istio API version" group="networking.istio.io" version="v1""#);
    assert_has(&run, r#"fieldManager="kubectl-mesh""#);
    assert!(!run.stderr.contains(" GET https://"), "{}", run.stderr);
    assert_klog(&run);

    // Without -v: nothing but the command's own output.
    let quiet = plugin(Some(&srv), "vm", &["status", "analytics", "-n", "vm"]).ok();
    assert!(!quiet.stderr.lines().any(is_klog_line), "{}", quiet.stderr);

    // `mesh-vm files` mints a TokenRequest: at every level neither the kubeconfig's bearer
    // token nor the minted token may appear, in any spelling of the flag.
    let dir = tempfile::tempdir().expect("tempdir");
    for (level, flag) in [(4, vec!["-v", "4"]), (6, vec!["-v6"]), (7, vec!["--v=7"]), (8, vec!["-v", "8"])] {
        let out = dir.path().join(format!("v{level}"));
        let out_s = out.to_string_lossy().into_owned();
        let mut args = vec!["files", "analytics", "-n", "vm", "--out-dir", out_s.as_str()];
        args.extend(flag);
        let run = plugin(Some(&srv), "vm", &args).ok();
        let minted = std::fs::read_to_string(out.join("istio-token")).expect("istio-token");
        assert!(minted.len() > 20, "a real token was written");
        for (name, secret) in [("the kubeconfig's bearer token", bearer.as_str()), ("the minted token", minted.trim())] {
            assert!(
                !run.stderr.contains(secret) && !run.stdout.contains(secret),
                "-v {level} printed {name}:\n{}",
                run.stderr
            );
        }
        let requests: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("] POST https://") || l.contains("] GET https://"))
            .collect();
        match level {
            4 => assert!(requests.is_empty(), "{}", run.stderr),
            6 => {
                // One line per request: method, whole URL, status, latency.
                assert!(
                    requests.iter().any(|l| l.contains("/apis/networking.istio.io 200 OK in ")
                        && l.ends_with(" milliseconds")),
                    "{}", run.stderr
                );
                assert!(
                    requests.iter().any(|l| l.contains("/api/v1/namespaces/vm/serviceaccounts/default/token 201 Created in ")),
                    "{}", run.stderr
                );
                assert!(!run.stderr.contains("Request Headers:"), "{}", run.stderr);
            }
            7 | 8 => {
                assert!(requests.iter().any(|l| l.ends_with("/api/v1/namespaces/vm/serviceaccounts/default/token")), "{}", run.stderr);
                assert_has(&run, "Request Headers:");
                assert_has(&run, "    Authorization: Bearer <masked>");
                assert_has(&run, "Response Status: 201 Created in ");
                if level == 7 {
                    assert!(!run.stderr.contains("Response Body"), "{}", run.stderr);
                } else {
                    assert_has(&run, "Response Headers:");
                    assert_has(&run, r#""Request Body" body="{\"apiVersion\":\"authentication.k8s.io/v1\""#);
                    assert_has(&run, r#"\"token\":\"<redacted>\""#);
                }
            }
            _ => unreachable!(),
        }
        assert_klog(&run);
    }
}

fn server_and_token_work_with_an_empty_kubeconfig(tier) {
    let srv = Server::builder(tier).start();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_file(&srv, dir.path());
    let url = srv.url("cluster1");
    let token = admin_token(&srv);
    let empty = empty_kubeconfig(dir.path());
    let ca_s = ca.to_string_lossy().into_owned();
    let flags: [&[&str]; 2] = [
        &["--certificate-authority", &ca_s],
        &["--insecure-skip-tls-verify"],
    ];
    for (i, tls) in flags.iter().enumerate() {
        let svc = format!("flags{i}");
        let mut args = vec![svc.as_str(), "10.0.0.1", "grpc:3550", "--server", &url, "--token", &token];
        args.extend_from_slice(tls);
        // An empty kubeconfig file, and then no kubeconfig at all.
        let run = plugin(Some(&empty), "register", &args).ok();
        assert!(run.stdout.contains(&format!("service/{svc} created")), "{}", run.stdout);
        let run = plugin(None, "register", &args).ok();
        assert!(run.stdout.contains(&format!("service/{svc} unchanged")), "{}", run.stdout);
        assert!(!run.stderr.contains(&token));
    }
    assert!(srv.get_json("cluster1", "/api/v1/namespaces/default/services/flags0").is_some());

    // The flags win over the kubeconfig: a refused kubeconfig token is replaced by --token.
    let run = plugin(Some(&srv), "register", &["--list", "--token", "not-a-token-the-server-knows"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_has(&run, "Unauthorized");
    assert!(!run.stderr.contains("not-a-token-the-server-knows"), "{}", run.stderr);

    // A CA that did not sign the server's certificate: one clear line, exit 1.
    let wrong = dir.path().join("wrong-ca.crt");
    std::fs::write(&wrong, WRONG_CA).expect("write");
    let run = plugin(Some(&srv), "register", &["--list", "--certificate-authority", &wrong.to_string_lossy()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_has(&run, "TLS");
    assert_has(&run, "--certificate-authority");
}
}

/// The real tier's admin user is in `system:masters`, so it may impersonate: `--as` the
/// restricted user is refused its first write by RBAC, and `--as-group system:masters` lifts it.
#[test]
fn impersonation_is_authorized_by_the_real_api_server() {
    if !Tier::Real.enabled() {
        return;
    }
    let srv = Server::builder(Tier::Real).start();
    let args = ["productcatalog", "10.0.0.1", "grpc:3550"];
    let with = |extra: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(extra);
        plugin(Some(&srv), "register", &a)
    };
    let run = with(&["--as", "restricted"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_has(&run, "cannot apply Service default/productcatalog");
    assert_has(
        &run,
        r#"User "restricted" cannot patch resource "services""#,
    );
    assert_has(&run, "(403)");
    assert!(srv
        .get_json(
            "cluster1",
            "/api/v1/namespaces/default/services/productcatalog"
        )
        .is_none());

    let run = with(&[
        "--as",
        "restricted",
        "--as-group",
        "system:masters",
        "-v",
        "7",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("service/productcatalog created"),
        "{}",
        run.stdout
    );
    assert_has(&run, "    Impersonate-User: restricted");
    assert_has(&run, "    Impersonate-Group: system:masters");

    // The UID is sent as well; the API server requires impersonating it to be authorized.
    let run = with(&[
        "--as",
        "restricted",
        "--as-uid",
        "restricted-uid",
        "--as-group",
        "system:masters",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn bad_cluster_and_auth_flags_are_usage_errors_before_any_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.crt");
    let missing = missing.to_string_lossy();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--certificate-authority", &missing],
            "error: --certificate-authority: cannot read ",
        ),
        (
            &["--client-key", &missing],
            "error: --client-key: cannot read ",
        ),
        (
            &["--as-group", "system:masters"],
            "error: --as-group: needs --as",
        ),
        (&["--server", "ftp://example.com"], "error: --server: "),
        (&["--token", "SECRET WITH SPACES"], "error: --token: "),
        (
            &["-v", "many"],
            "error: invalid value 'many' for '--v <LEVEL>'",
        ),
    ];
    for (flags, want) in cases {
        for p in ["register", "vm", "link", "split"] {
            let mut args: Vec<&str> = match p {
                "register" => vec!["--list"],
                "vm" => vec!["status", "analytics"],
                "link" => vec!["--from", "cluster1", "--to", "cluster2", "--all"],
                _ => vec!["status"],
            };
            args.extend_from_slice(flags);
            // A server that would fail the test if anything were sent is not even needed: no
            // kubeconfig exists, and the error must come first all the same.
            let run = plugin(None, p, &args);
            assert_eq!(run.code, 2, "mesh-{p} {args:?}: {}", run.stderr);
            assert!(
                run.stderr.starts_with(want),
                "mesh-{p} {args:?}: {}",
                run.stderr
            );
            assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
            assert!(!run.stderr.contains("SECRET"), "{}", run.stderr);
        }
    }
}

#[test]
fn help_shows_the_flags_with_kubectls_short_names_where_free() {
    for p in ["register", "vm", "link", "split"] {
        let run = plugin(None, p, &["--help"]).ok();
        for flag in [
            "--server <URL>",
            "--token <TOKEN>",
            "--certificate-authority <PATH>",
            "--client-certificate <PATH>",
            "--client-key <PATH>",
            "--insecure-skip-tls-verify[=<BOOL>]",
            "--tls-server-name <NAME>",
            "--as <USER>",
            "--as-group <GROUP>",
            "--as-uid <UID>",
            "-v, --v <LEVEL>",
        ] {
            assert!(
                run.stdout.contains(flag),
                "mesh-{p} --help lacks {flag}:\n{}",
                run.stdout
            );
        }
        let cluster_options = run
            .stdout
            .split("Cluster options:")
            .nth(1)
            .unwrap_or_default();
        assert!(
            cluster_options.contains("--as-uid"),
            "mesh-{p}: not under Cluster options"
        );
        // mesh-register and mesh-vm keep `-s` for the service account, as istioctl has it.
        let short = run.stdout.contains("-s, --server <URL>");
        assert_eq!(
            short,
            matches!(p, "link" | "split"),
            "mesh-{p}:\n{}",
            run.stdout
        );
    }
}
