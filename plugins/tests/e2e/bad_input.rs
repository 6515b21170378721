//! The bad-input corpus across the suite: every malformed invocation exits 2 with exactly one
//! `error:` line, never panics, and sends not a single request to either cluster. (mesh-register
//! has 30 more in its own suite, mesh-vm 13, mesh-split 5.)

use crate::common::{plugin, Emu};

fn check(emu: &Emu, p: &str, cases: &[&[&str]]) -> usize {
    for args in cases {
        emu.clear_requests();
        let run = plugin(Some(emu), p, args);
        let label = format!("kubectl mesh-{p} {}", args.join(" "));
        assert_eq!(
            run.code, 2,
            "{label}: wanted exit 2\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{label}: wanted one line:\n{}",
            run.stderr
        );
        assert!(run.stderr.starts_with("error: "), "{label}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{label}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{label}: printed {}", run.stdout);
        for c in ["cluster1", "cluster2"] {
            assert!(
                emu.requests(c).is_empty(),
                "{label} sent {:?}",
                emu.requests(c)
            );
        }
    }
    cases.len()
}

fn emu() -> Emu {
    Emu::builder()
        .clusters(&["cluster1", "cluster2"])
        .start()
        .expect("emu")
}

#[test]
fn register_corpus() {
    let emu = emu();
    let n = check(
        &emu,
        "register",
        &[
            &["svc", "10.0.0.1", "grpc:3550", "--mode="],
            &["svc", "10.0.0.1", "grpc:3550", "--network", "Bad Net"],
            &[
                "svc",
                "10.0.0.1",
                "grpc:3550",
                "--cluster-domain",
                "bad..domain",
            ],
            &[
                "svc",
                "10.0.0.1",
                "grpc:3550",
                "--context",
                "cluster1",
                "--context",
                "cluster1",
            ],
            &[
                "svc",
                "10.0.0.1",
                "grpc:3550",
                "--kubeconfig",
                "/nonexistent/kubeconfig",
            ],
            &["svc", "10.0.0.1", "tls-:443"],
            &["svc", "10.0.0.1", "grpc::3550"],
            &["svc", "10.0.0.1", "grpc:35 50"],
            &["svc", "10.0.0.1", "ht tp:80"],
            &["svc", "10.0.0.1", "80", "8080"],
            &["svc", "::1::2", "grpc:3550"],
            &["svc", "10.0.0.1/24", "grpc:3550"],
            &["svc-", "10.0.0.1", "grpc:3550"],
            &["svc.x", "10.0.0.1", "grpc:3550"],
            &["--unknown-flag"],
        ],
    );
    assert_eq!(n, 15);
}

#[test]
fn vm_corpus() {
    let emu = emu();
    check(
        &emu,
        "vm",
        &[
            &[],
            &["group"],
            &["nosuchverb", "x"],
            &["group", "Bad_Name"],
            &["group", "g", "--ports", "grpc:"],
            &["group", "g", "--ports", "=3550"],
            &["group", "g", "--ports", "grpc=0"],
            &["group", "g", "--ports", "grpc=70000"],
            &["group", "g", "--ports", "smtp=25"],
            &["group", "g", "--ports", "grpc=3550,grpc=3551"],
            &["group", "g", "--probe", "udp:53"],
            &["group", "g", "--probe-http", "notaport/x"],
            &["group", "g", "--probe-tcp", "99999"],
            &["group", "g", "--probe-http", "8080", "--probe-tcp", "8080"],
            &["group", "g", "--locality", "a/b/c/d"],
            &["group", "g", "-l", "bad key=v"],
            &["group", "g", "-s", "Bad_SA"],
            &["group", "g", "--probe-period", "soon"],
            &["group", "-f", "/nonexistent/wg.yaml"],
            &["files", "g"],
            &[
                "files",
                "g",
                "--out-dir",
                "/tmp/x",
                "--internal-ip",
                "10.0.0.1",
                "--external-ip",
                "1.2.3.4",
            ],
            &[
                "files",
                "g",
                "--out-dir",
                "/tmp/x",
                "--internal-ip",
                "not-an-ip",
            ],
            &[
                "files",
                "g",
                "--out-dir",
                "/tmp/x",
                "--token-duration",
                "forever",
            ],
            &["files", "g", "--out-dir", "/tmp/x", "--wait", "1x"],
            &[
                "files",
                "g",
                "--out-dir",
                "/tmp/x",
                "--ingress-ip",
                "300.1.1.1",
            ],
            &["files", "g", "--out-dir", "/tmp/x", "--capture-dns=maybe"],
            &["files", "Bad_Name", "--out-dir", "/tmp/x"],
            &["refresh", "g"],
            &["status"],
            &["status", "g", "-o", "table"],
        ],
    );
}

#[test]
fn link_corpus() {
    let emu = emu();
    check(
        &emu,
        "link",
        &[
            &[],
            &["--from", "cluster1", "svc"],
            &["--to", "cluster2", "svc"],
            &["--from", "cluster1", "--to", "cluster1", "svc"],
            &["--from", "nope", "--to", "cluster2", "svc"],
            &["--from", "cluster1", "--to", "nope", "svc"],
            &["--from", "cluster1", "--to", "cluster2"],
            &["--from", "cluster1", "--to", "cluster2", "--all", "svc"],
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--all",
                "--address-pool",
                "240.0.0.0/33",
            ],
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--all",
                "--address-pool",
                "240.240.0.0/16",
            ],
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--all",
                "--address-pool",
                "240.0.0.0/8",
            ],
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--all",
                "--address-pool",
                "not-a-cidr",
            ],
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--all",
                "--address-pool",
                "300.0.0.0/16",
            ],
            &["--from", "cluster1", "--to", "cluster2", "Bad_Service"],
            &["--from", "cluster1", "--to", "cluster2", "-l", "=x"],
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--all",
                "--gateway-address",
                "not an address!",
            ],
            &[
                "--from", "cluster1", "--to", "cluster2", "--all", "-n", "Bad_NS",
            ],
            &[
                "--from",
                "cluster1",
                "--to",
                "cluster2",
                "--all",
                "--request-timeout",
                "x",
            ],
            &["check", "--from", "cluster1"],
            &["check", "--from", "cluster1", "--to", "cluster1"],
        ],
    );
}

#[test]
fn split_corpus() {
    let emu = emu();
    check(
        &emu,
        "split",
        &[
            &[],
            &["80/30"],
            &["101/-1"],
            &["80/20/abc"],
            &["v1=80,v1=20"],
            &["v1=80,v2="],
            &["=80,v2=20"],
            &["50.5/49.5"],
            &["productcatalogservice", "80:20:x"],
            &["vs/", "80/20"],
            &["vs/Bad_Name", "80/20"],
            &["host", "80/20", "extra"],
            &["80/20", "--steps", "20,x"],
            &["80/20", "--steps", "120"],
            &["0/100", "--steps", "20,50", "--interval", "soon"],
            &["80/20", "--context", "nope"],
            &["80/20", "--create"],
            &["80/20", "--to", "a,b"],
            &["80/20", "-o", "table"],
            &["80/20", "--dry-run=later"],
        ],
    );
}
