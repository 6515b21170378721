//! End to end: `kubectl mesh-split --steps` gated on metrics, and `status --traffic`, against a
//! REAL Prometheus (Debian's `prometheus` package, started here on 127.0.0.1 with a 1 s scrape
//! interval) that scrapes an exporter this harness runs: Istio-shaped `istio_requests_total`
//! counters and `istio_request_duration_milliseconds` histograms at rates each test sets.
//! Prometheus's HTTP API is never mocked. Two clusters, each with its own Prometheus.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{kubectl, plugin, writes, Run, Server, Target, Tier};
use serde_json::Value;

const VS_PATH: &str =
    "/apis/networking.istio.io/v1/namespaces/default/virtualservices/productcatalog-migration";

/// The migration VirtualService of Istio's multicluster sample, per cluster: the VM's Service,
/// and the GKE workload (through `.global` from cluster1, local in cluster2).
fn vs_yaml(canary: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productcatalog-migration
  namespace: default
spec:
  hosts:
  - productcatalogservice
  http:
  - route:
    - destination:
        host: productcatalogservice
      weight: 100
    - destination:
        host: {canary}
      weight: 0
"
    )
}

const CANARY1: &str = "productcatalogservice-gke.default.global";
const CANARY2: &str = "productcatalogservice-gke";

fn migration(tier: Tier) -> Server {
    let srv = Server::builder(tier)
        .clusters(&["cluster1", "cluster2"])
        .start();
    for (c, canary) in [("cluster1", CANARY1), ("cluster2", CANARY2)] {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(vs_yaml(canary).as_bytes()).expect("write");
        let path = f.path().to_string_lossy().into_owned();
        kubectl(&srv, &["apply", "--context", c, "-f", &path]).ok();
    }
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    srv
}

fn weights(srv: &Server, cluster: &str) -> Vec<u64> {
    let v = srv.get_json(cluster, VS_PATH).expect("virtualservice");
    v["spec"]["http"][0]["route"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|d| d["weight"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The exporter: Istio-shaped series whose rates the test sets.

/// What one destination serves, as a caller's sidecar reports it.
#[derive(Debug, Clone)]
struct Traffic {
    /// Requests per second.
    rps: f64,
    /// Share of them answered 503.
    errors: f64,
    /// Every request's latency.
    latency_ms: f64,
}

impl Traffic {
    fn healthy(rps: f64) -> Self {
        Self {
            rps,
            errors: 0.0,
            latency_ms: 20.0,
        }
    }
}

const BUCKETS: [f64; 8] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// A destination's series: its labels, what it serves now, and its counters so far.
struct Series {
    labels: String,
    traffic: Traffic,
    ok: f64,
    failed: f64,
    buckets: [f64; BUCKETS.len()],
    count: f64,
    sum: f64,
}

struct State {
    series: Vec<Series>,
    last: Instant,
}

impl State {
    /// Moves every counter on by what the rates made of the time since the last scrape.
    fn advance(&mut self) {
        let dt = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        for s in &mut self.series {
            let n = s.traffic.rps * dt;
            s.ok += n * (1.0 - s.traffic.errors);
            s.failed += n * s.traffic.errors;
            for (i, le) in BUCKETS.iter().enumerate() {
                if s.traffic.latency_ms <= *le {
                    s.buckets[i] += n;
                }
            }
            s.count += n;
            s.sum += n * s.traffic.latency_ms;
        }
    }

    fn text(&self) -> String {
        let mut out = String::from("# TYPE istio_requests_total counter\n");
        for s in &self.series {
            let l = &s.labels;
            out.push_str(&format!(
                "istio_requests_total{{{l},response_code=\"200\"}} {}\n",
                s.ok
            ));
            out.push_str(&format!(
                "istio_requests_total{{{l},response_code=\"503\"}} {}\n",
                s.failed
            ));
        }
        out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
        for s in &self.series {
            let l = &s.labels;
            // Counters may be fractional: exact rates make exact shares.
            let total = s.count;
            for (i, le) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "istio_request_duration_milliseconds_bucket{{{l},le=\"{le}\"}} {}\n",
                    s.buckets[i]
                ));
            }
            out.push_str(&format!(
                "istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {total}\n"
            ));
            out.push_str(&format!(
                "istio_request_duration_milliseconds_sum{{{l}}} {}\n",
                s.sum
            ));
            out.push_str(&format!(
                "istio_request_duration_milliseconds_count{{{l}}} {total}\n"
            ));
        }
        out
    }
}

/// An HTTP server on 127.0.0.1 serving `/metrics` from a shared state.
struct Exporter {
    port: u16,
    state: Arc<Mutex<State>>,
}

/// The labels Istio's source reporter puts on requests to a Kubernetes Service or a host.
fn labels(service: &str, name: &str) -> String {
    format!(
        "reporter=\"source\",source_workload=\"frontend\",source_canonical_service=\"frontend\",destination_service=\"{service}\",destination_service_name=\"{name}\",destination_service_namespace=\"default\",destination_canonical_service=\"productcatalogservice\",request_protocol=\"http\""
    )
}

impl Exporter {
    /// Serves the VM (`productcatalogservice`) and the canary `canary` of one cluster.
    fn start(canary: &str, vm: Traffic, gke: Traffic) -> Self {
        let canary_labels = if canary.ends_with(".global") {
            // A ServiceEntry host: Istio uses the host as the service name.
            labels(canary, canary)
        } else {
            labels(&format!("{canary}.default.svc.cluster.local"), canary)
        };
        let series = vec![
            Series {
                labels: labels(
                    "productcatalogservice.default.svc.cluster.local",
                    "productcatalogservice",
                ),
                traffic: vm,
                ok: 0.0,
                failed: 0.0,
                buckets: [0.0; BUCKETS.len()],
                count: 0.0,
                sum: 0.0,
            },
            Series {
                labels: canary_labels,
                traffic: gke,
                ok: 0.0,
                failed: 0.0,
                buckets: [0.0; BUCKETS.len()],
                count: 0.0,
                sum: 0.0,
            },
        ];
        let state = Arc::new(Mutex::new(State {
            series,
            last: Instant::now(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind exporter");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let body = {
                    let mut st = shared.lock().expect("state");
                    st.advance();
                    st.text()
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, state }
    }

    /// Sets what the canary (the second destination) serves from now on.
    fn set_canary(&self, t: Traffic) {
        let mut st = self.state.lock().expect("state");
        st.advance();
        st.series[1].traffic = t;
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus: Debian's binary, on a free port, with a temporary storage directory.

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn prometheus_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the prometheus binary is missing: these tests need Debian's prometheus package (apt-get install -y prometheus; .ci/run installs it)"
            )
        })
}

/// A plain HTTP GET against Prometheus, for the harness's own readiness checks.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Prometheus {
    /// Starts Prometheus scraping `exporter` every second (see [`Prometheus::wait_ready`]).
    fn start(exporter: &Exporter) -> Self {
        Self::start_with(exporter, tempfile::tempdir().expect("temp dir"), None)
    }

    /// [`Prometheus::start`] in `dir`, with `--web.config.file` when `web` is given.
    fn start_with(exporter: &Exporter, dir: tempfile::TempDir, web: Option<&str>) -> Self {
        let bin = prometheus_binary();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: istio-mesh\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n",
                exporter.port
            ),
        )
        .expect("write config");
        let port = free_port();
        let mut cmd = Command::new(bin);
        if let Some(web) = web {
            let path = dir.path().join("web.yml");
            std::fs::write(&path, web).expect("write web config");
            cmd.arg(format!("--web.config.file={}", path.display()));
        }
        let child = cmd
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// Waits until it holds a few seconds of samples (a `rate` needs two in its window).
    fn wait_ready(self) -> Self {
        let port = self.port;
        let q = format!(
            "/api/v1/query?query={}",
            encode("count_over_time(istio_requests_total{response_code=\"200\"}[30s])")
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let samples = http_get(port, &q)
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .and_then(|v| {
                    v["data"]["result"][0]["value"][1]
                        .as_str()
                        .and_then(|s| s.parse::<f64>().ok())
                });
            if samples.is_some_and(|n| n >= 4.0) {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus on port {port} has no samples of the exporter after 60s"
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Each cluster's exporter and Prometheus.
struct Metrics {
    exporters: Vec<Exporter>,
    proms: Vec<Prometheus>,
}

fn metrics(vm: Traffic, gke: Traffic) -> Metrics {
    let exporters: Vec<Exporter> = [CANARY1, CANARY2]
        .iter()
        .map(|c| Exporter::start(c, vm.clone(), gke.clone()))
        .collect();
    // Both start first, then both are waited for: their warm-up overlaps.
    let started: Vec<Prometheus> = exporters.iter().map(Prometheus::start).collect();
    let proms = started.into_iter().map(Prometheus::wait_ready).collect();
    Metrics { exporters, proms }
}

impl Metrics {
    /// `--prometheus URL` for each cluster, in `--context` order.
    fn flags(&self) -> Vec<String> {
        self.proms
            .iter()
            .flat_map(|p| ["--prometheus".to_string(), p.url()])
            .collect()
    }
}

fn split(srv: &dyn Target, args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    plugin(Some(srv), "split", &args)
}

/// A gated walk to 0/100 through 80/20 and 50/50 in both clusters, plus `extra`.
fn walk(m: &Metrics, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "vs/productcatalog-migration",
        "0/100",
        "--steps",
        "20,50",
        "--interval",
        "2s",
        "--window",
        "3s",
        "--context",
        "cluster1",
        "--context",
        "cluster2",
        "-n",
        "default",
        "--max-error-rate",
        "1%",
        "--max-p99",
        "500ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(m.flags());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Waits until `cluster` holds `want` (a walk in another process got there).
fn wait_for_weights(srv: &Server, cluster: &str, want: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while weights(srv, cluster) != want {
        assert!(
            Instant::now() < deadline,
            "{cluster} never reached {want:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_walk(srv: &Server, args: &[String]) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::spawn_plugin(srv, "split", &args)
}

fn finish(child: Child) -> Run {
    child.wait_with_output().expect("wait").into()
}

on_both_tiers! {
/// A healthy canary: every check holds before each next step, and the walk ends at 0/100 in
/// both clusters.
fn a_healthy_canary_completes_in_both_clusters(tier) {
    let srv = migration(tier);
    let m = metrics(Traffic::healthy(80.0), Traffic::healthy(20.0));
    let run = split(&srv, &walk(&m, &["--min-requests", "5"])).ok();
    for step in ["Step 1/3: 80/20", "Step 2/3: 50/50", "Step 3/3: 0/100"] {
        assert!(run.stderr.contains(step), "{step}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("Check failed"), "{}", run.stderr);
    assert_eq!(weights(&srv, "cluster1"), vec![0, 100]);
    assert_eq!(weights(&srv, "cluster2"), vec![0, 100]);
}

/// The canary answers 10% 503s from step 2 on, in cluster2 only: the check before step 3
/// fails there, and BOTH clusters go back to 100/0, exit 5, naming value, threshold, cluster
/// and query.
fn errors_at_step_2_roll_every_cluster_back_with_exit_5(tier) {
    let srv = migration(tier);
    let m = metrics(Traffic::healthy(80.0), Traffic::healthy(20.0));
    let child = spawn_walk(&srv, &walk(&m, &[]));
    wait_for_weights(&srv, "cluster2", &[50, 50]);
    m.exporters[1].set_canary(Traffic {
        errors: 0.1,
        ..Traffic::healthy(20.0)
    });
    let run = finish(child).expect_code(5);
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
    assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);
    let err = &run.stderr;
    assert!(err.contains("Step 2/3: 50/50"), "{err}");
    assert!(!err.contains("Step 3/3"), "{err}");
    assert!(
        err.contains("Check failed in context cluster2: error rate of productcatalogservice-gke is "),
        "{err}"
    );
    assert!(err.contains("(--max-error-rate 1%)"), "{err}");
    assert!(
        err.contains("Query: (sum(rate(istio_requests_total{reporter=\"source\",destination_service_name=\"productcatalogservice-gke\",destination_service_namespace=\"default\",response_code=~\"5..\"}[3s])) or vector(0)) / sum(rate(istio_requests_total{reporter=\"source\",destination_service_name=\"productcatalogservice-gke\",destination_service_namespace=\"default\"}[3s]))"),
        "{err}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: check failed in context cluster2: error rate"), "{err}");
    assert!(
        last.ends_with("every context is back at its weights from before the walk"),
        "{err}"
    );
    // The value is the canary's measured share of 503s, well above 1%.
    let value = last
        .split("error rate of productcatalogservice-gke is ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("value");
    assert!(value > 1.0 && value <= 10.0, "{value}: {err}");
}

/// No traffic to the canary: the walk waits up to one more interval, then fails and rolls
/// back; with --allow-no-traffic it goes on to the end; traffic arriving meanwhile lets it go on.
fn no_traffic_waits_then_fails_or_goes_on_when_allowed(tier) {
    let srv = migration(tier);
    let m = metrics(Traffic::healthy(80.0), Traffic::healthy(0.0));
    let run = split(&srv, &walk(&m, &["--min-requests", "5"])).expect_code(5);
    assert!(run.stderr.contains("Too little traffic to judge (productcatalogservice-gke.default.global in context cluster1: 0 requests, --min-requests 5 needed"), "{}", run.stderr);
    assert!(run.stderr.contains("; waiting up to 2s more"), "{}", run.stderr);
    assert!(
        run.stderr.contains("requests of productcatalogservice-gke.default.global is 0 requests after waiting one more interval"),
        "{}",
        run.stderr
    );
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
    assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);

    let run = split(
        &srv,
        &walk(&m, &["--min-requests", "5", "--allow-no-traffic"]),
    )
    .ok();
    assert!(run.stderr.contains("going on as --allow-no-traffic says"), "{}", run.stderr);
    assert_eq!(weights(&srv, "cluster1"), vec![0, 100]);
    assert_eq!(weights(&srv, "cluster2"), vec![0, 100]);

    // Traffic that arrives during the extra wait is evidence: the walk goes on without --allow-no-traffic.
    let back = ["100/0", "--context", "cluster1", "--context", "cluster2", "-n", "default"];
    split(&srv, &back.iter().map(|s| s.to_string()).collect::<Vec<_>>()).ok();
    let mut child = spawn_walk(&srv, &walk(&m, &["--min-requests", "5"]));
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("line");
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("Too little traffic to judge") {
            for e in &m.exporters {
                e.set_canary(Traffic::healthy(20.0));
            }
        }
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{seen}");
    assert!(seen.contains("Too little traffic to judge"), "{seen}");
    assert!(!seen.contains("--allow-no-traffic"), "{seen}");
    assert_eq!(weights(&srv, "cluster1"), vec![0, 100]);
    assert_eq!(weights(&srv, "cluster2"), vec![0, 100]);
}

/// Prometheus goes away mid-walk: the next check cannot be answered, which fails it, and
/// every cluster goes back. One that cannot be reached at the start stops the walk before
/// anything is written (exit 1).
fn prometheus_down_mid_walk_rolls_back(tier) {
    let srv = migration(tier);
    let mut m = metrics(Traffic::healthy(80.0), Traffic::healthy(20.0));
    let child = spawn_walk(&srv, &walk(&m, &[]));
    wait_for_weights(&srv, "cluster2", &[80, 20]);
    m.proms[1].kill();
    let run = finish(child).expect_code(5);
    assert!(run.stderr.contains("Check failed in context cluster2: requests of productcatalogservice-gke is unknown: query Prometheus at http://127.0.0.1:"), "{}", run.stderr);
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
    assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);

    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
    let run = split(&srv, &walk(&m, &[])).expect_code(1);
    assert!(
        run.stderr.contains("error: before the first step, for the checks of context cluster2: query Prometheus at http://127.0.0.1:"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    if let Some(emu) = srv.emu() {
        for c in ["cluster1", "cluster2"] {
            assert!(writes(emu, c).is_empty(), "{c}");
        }
    }
}

/// `status --traffic` shows the configured weight next to the observed share, success rate
/// and p99; `--watch` without a terminal prints one table per refresh.
fn status_traffic_shows_the_observed_shares(tier) {
    let srv = migration(tier);
    let m = metrics(
        Traffic::healthy(75.0),
        Traffic {
            errors: 0.2,
            latency_ms: 120.0,
            ..Traffic::healthy(25.0)
        },
    );
    let mut args: Vec<String> = [
        "status",
        "--traffic",
        "--window",
        "3s",
        "--context",
        "cluster1",
        "--context",
        "cluster2",
        "-n",
        "default",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(m.flags());
    let run = split(&srv, &args).ok();
    let out = &run.stdout;
    assert!(out.starts_with("CONTEXT "), "{out}");
    for line in [
        ("cluster1", "productcatalogservice ", "100%", "75.0%", "100.0%"),
        ("cluster1", CANARY1, "0%", "25.0%", "80.0%"),
        ("cluster2", CANARY2, "0%", "25.0%", "80.0%"),
    ] {
        let found = out.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&line.0)
                && cells.get(2) == Some(&line.1.trim())
                && cells.get(3) == Some(&line.2)
                && cells.get(4) == Some(&line.3)
                && cells.get(5) == Some(&line.4)
        });
        assert!(found, "{line:?}:\n{out}");
    }
    // p99 of requests that all took 120ms, interpolated in the 100-250 bucket.
    assert!(out.contains("ms"), "{out}");

    let mut watch = args.clone();
    watch.push("--watch".into());
    let mut child = spawn_walk(&srv, &watch);
    let stdout = child.stdout.take().expect("stdout");
    let mut titles = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.starts_with("Observed over the last 3s") {
            titles += 1;
            if titles == 2 {
                break;
            }
        }
    }
    assert_eq!(titles, 2);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}
}

/// What a gated walk would check, with the queries, in a client dry run (no Prometheus is
/// asked); and the flags' bad values, each exit 2 with one line before any API call.
#[test]
fn dry_run_prints_the_checks_and_bad_flags_exit_2() {
    if !Tier::Emu.enabled() {
        return;
    }
    let srv = migration(Tier::Emu);
    let base = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "vs/productcatalog-migration",
            "0/100",
            "--steps",
            "50",
            "--interval",
            "2m",
            "--context",
            "cluster1",
            "--context",
            "cluster2",
            "-n",
            "default",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = split(
        &srv,
        &base(&[
            "--dry-run",
            "--prometheus",
            "http://127.0.0.1:1",
            "--max-error-rate",
            "0.5%",
            "--max-p99",
            "500ms",
            "--min-requests",
            "100",
        ]),
    )
    .ok();
    let out = &run.stdout;
    assert!(
        out.contains("Checks before each next step, over the last 2m in every context:"),
        "{out}"
    );
    assert!(
        out.contains(
            "  cluster1 productcatalogservice-gke.default.global (Prometheus http://127.0.0.1:1):"
        ),
        "{out}"
    );
    assert!(out.contains("    requests >= 100: sum(increase(istio_requests_total{reporter=\"source\",destination_service=\"productcatalogservice-gke.default.global\"}[120s]))"), "{out}");
    assert!(out.contains("    error rate <= 0.5%: "), "{out}");
    assert!(out.contains("    p99 <= 500ms: histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter=\"source\",destination_service_name=\"productcatalogservice-gke\",destination_service_namespace=\"default\"}[120s])))"), "{out}");

    let p = ["--prometheus", "http://127.0.0.1:1"];
    for (extra, want) in [
        (
            vec!["--max-error-rate", "1", p[0], p[1]],
            "error: invalid value '1' for '--max-error-rate <PERCENT>'",
        ),
        (
            vec!["--max-p99", "fast", p[0], p[1]],
            "error: invalid value 'fast' for '--max-p99 <DURATION>'",
        ),
        (
            vec!["--max-error-rate", "1%"],
            "error: --max-error-rate: needs --prometheus URL to check against",
        ),
        (
            vec![p[0], p[1]],
            "error: --prometheus: give the checks to run",
        ),
        (
            vec![p[0], "ftp://x", "--min-requests", "3"],
            "error: --prometheus: \"ftp://x\" is not a URL",
        ),
        (
            vec![p[0], p[1], p[0], p[1], p[0], p[1], "--min-requests", "3"],
            "error: --prometheus: given 3 times for 2 contexts",
        ),
        (
            vec![p[0], "http://u:hunter2@127.0.0.1:1", "--min-requests", "3"],
            "error: --prometheus: credentials in the URL are not accepted",
        ),
        (
            vec![
                p[0],
                p[1],
                "--min-requests",
                "3",
                "--prometheus-token-file",
                "/nonexistent/token",
            ],
            "error: --prometheus-token-file: cannot read /nonexistent/token",
        ),
    ] {
        let run = split(&srv, &base(&extra)).expect_code(2);
        assert!(run.stderr.starts_with(want), "{extra:?}: {}", run.stderr);
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
        assert_eq!(
            run.stderr.trim_end().lines().count(),
            1,
            "{extra:?}: {}",
            run.stderr
        );
    }
    let emu = srv.emu().expect("emu");
    for c in ["cluster1", "cluster2"] {
        assert!(writes(emu, c).is_empty(), "{c}");
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus secured as it is in practice: its own TLS, and an auth proxy in front of it.

/// A reverse proxy in front of a real Prometheus that forwards only requests carrying one of
/// `accept` as their Authorization header (as kube-rbac-proxy or an ingress would), and
/// answers 401 otherwise. It records the headers it saw.
struct AuthProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl AuthProxy {
    fn start(upstream: u16, accept: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                            .map(|(_, v)| v.trim().to_string())
                    })
                    .unwrap_or_default();
                log.lock().expect("log").push(auth.clone());
                if !accept.contains(&auth) {
                    let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\nConnection: close\r\n\r\nUnauthorized");
                    continue;
                }
                let answer = TcpStream::connect(("127.0.0.1", upstream)).and_then(|mut up| {
                    write!(
                        up,
                        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{upstream}\r\n\r\n"
                    )?;
                    let mut all = Vec::new();
                    up.read_to_end(&mut all)?;
                    Ok(all)
                });
                if let Ok(all) = answer {
                    let _ = conn.write_all(&all);
                }
            }
        });
        Self { port, seen }
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1 it signed, in `dir`.
fn certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=mesh-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
}

/// Writes a credential file as a user would keep it: 0600.
fn secret_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.to_string_lossy().into_owned()
}

/// `status --traffic` through TLS with a CA file, a bearer token file and basic auth; a wrong
/// token is exit 1 naming the 401, and no credential ever shows.
#[test]
fn tls_bearer_and_basic_auth_reach_prometheus_and_never_show_credentials() {
    if !Tier::Emu.enabled() {
        return;
    }
    let srv = migration(Tier::Emu);
    let exporter = Exporter::start(CANARY1, Traffic::healthy(75.0), Traffic::healthy(25.0));
    let tls_dir = tempfile::tempdir().expect("temp dir");
    certificates(tls_dir.path());
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        tls_dir.path().join("tls.crt").display(),
        tls_dir.path().join("tls.key").display()
    );
    let tls = Prometheus::start_with(&exporter, tempfile::tempdir().expect("dir"), Some(&web));
    let plain = Prometheus::start(&exporter).wait_ready();
    let proxy = AuthProxy::start(
        plain.port,
        vec![
            "Bearer s3cret-token".to_string(),
            "Basic bWVzaDpwYTU1d29yZA==".to_string(),
        ],
    );
    let secrets = tempfile::tempdir().expect("dir");
    let status = |extra: &[String]| {
        let mut a: Vec<String> = [
            "status",
            "--traffic",
            "--window",
            "3s",
            "--context",
            "cluster1",
            "-n",
            "default",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().cloned());
        split(&srv, &a)
    };
    let shows_shares =
        |run: &Run| run.code == 0 && run.stdout.contains("75.0%") && run.stdout.contains("25.0%");

    // TLS: trusted through the CA file once Prometheus has scraped a few times.
    let ca = tls_dir.path().join("ca.crt").to_string_lossy().into_owned();
    let url = format!("https://127.0.0.1:{}", tls.port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = status(&[
            "--prometheus".into(),
            url.clone(),
            "--prometheus-ca-file".into(),
            ca.clone(),
        ]);
        if shows_shares(&run) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no shares over TLS:\n{}{}",
            run.stdout,
            run.stderr
        );
        thread::sleep(Duration::from_millis(500));
    }
    let run = status(&["--prometheus".into(), url.clone()]).expect_code(1);
    assert!(
        run.stderr.contains(&format!("query Prometheus at {url}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );

    // A bearer token from a file, and basic auth with a password file.
    let proxied = format!("http://127.0.0.1:{}", proxy.port);
    let token = secret_file(secrets.path(), "token", "s3cret-token\n");
    let run = status(&[
        "--prometheus".into(),
        proxied.clone(),
        "--prometheus-token-file".into(),
        token,
    ]);
    assert!(shows_shares(&run), "{}{}", run.stdout, run.stderr);
    let password = secret_file(secrets.path(), "password", "pa55word\n");
    let run = status(&[
        "--prometheus".into(),
        proxied.clone(),
        "--prometheus-user".into(),
        "mesh".into(),
        "--prometheus-password-file".into(),
        password,
    ]);
    assert!(shows_shares(&run), "{}{}", run.stdout, run.stderr);

    // The wrong token: exit 1, the 401 named, the token nowhere.
    let wrong = secret_file(secrets.path(), "wrong", "wrong-token");
    let run = status(&[
        "--prometheus".into(),
        proxied.clone(),
        "--prometheus-token-file".into(),
        wrong,
    ])
    .expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "query Prometheus at {proxied}: answered HTTP 401 Unauthorized"
        )),
        "{}",
        run.stderr
    );
    for secret in [
        "wrong-token",
        "s3cret-token",
        "pa55word",
        "bWVzaDpwYTU1d29yZA",
    ] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "{secret}"
        );
    }
    let seen = proxy.seen.lock().expect("log").clone();
    assert!(
        seen.contains(&"Bearer s3cret-token".to_string()),
        "{seen:?}"
    );
    assert!(seen.contains(&"Bearer wrong-token".to_string()), "{seen:?}");
    assert!(
        seen.contains(&"Basic bWVzaDpwYTU1d29yZA==".to_string()),
        "{seen:?}"
    );
}
