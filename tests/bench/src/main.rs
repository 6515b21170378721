//! The kubectl-mesh benchmark: medians over repeated runs of the release binaries, printed as
//! Markdown tables (the README shows the latest). `--quick` is the short version CI runs.
//!
//! Usage: `cargo build --release -p kubectl-mesh && cargo run --release -p mesh-bench [-- --quick] [--across]`

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fixtures::{GATEWAY_CLUSTER1, MIGRATION, PRODUCTCATALOGSERVICE, VS_CLUSTER2};
use kube_emu::Emu;

mod fixtures;
mod real;

/// One measured run of a child process.
struct Sample {
    wall: Duration,
    max_rss_kib: i64,
    status: ExitStatus,
}

/// Runs a command to completion, measuring wall time and the child's peak RSS.
///
/// The child is started by a fresh, small `mesh-bench __measure` process: a child forked straight
/// from this process (which holds kube-emu and its CRDs) would report this process's memory as
/// its own peak, since Linux keeps the pre-exec high-water mark in `ru_maxrss`.
fn measure(cmd: &mut Command) -> Result<Sample> {
    let mut tramp = Command::new(std::env::current_exe()?);
    tramp
        .arg("__measure")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => tramp.env(k, v),
            None => tramp.env_remove(k),
        };
    }
    let out = tramp.stdin(Stdio::null()).stderr(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(|p| p.parse::<i64>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(ns)), Some(Ok(rss)), Some(Ok(status))) => Ok(Sample {
            wall: Duration::from_nanos(ns.max(0) as u64),
            max_rss_kib: rss,
            status: ExitStatus::from_raw(status as i32),
        }),
        _ => bail!("measuring {:?} failed: {text}", cmd.get_program()),
    }
}

/// The `__measure` trampoline: runs argv, prints `wall_ns max_rss_kib raw_status`.
fn trampoline(argv: &[String]) -> Result<()> {
    let (program, args) = argv.split_first().context("__measure needs a command")?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut usage: libc::rusage = unsafe_zeroed_rusage();
    let rc = wait4(pid, &mut status, &mut usage);
    let wall = start.elapsed();
    if rc < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    println!("{} {} {status}", wall.as_nanos(), usage.ru_maxrss);
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is a plain C struct of integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

#[allow(unsafe_code)]
fn wait4(pid: libc::pid_t, status: &mut libc::c_int, usage: &mut libc::rusage) -> libc::pid_t {
    // SAFETY: pid is our own un-waited child; the pointers are valid for the call.
    unsafe { libc::wait4(pid, status, 0, usage) }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: i64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

struct Bench {
    bins: PathBuf,
    runs: usize,
    quick: bool,
    home: tempdir::Dir,
}

mod tempdir {
    //! A scratch directory removed on drop.
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> std::io::Result<Self> {
            let p = std::env::temp_dir().join(format!("mesh-bench-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Bench {
    fn cmd(&self, program: &Path, emu: Option<&Emu>) -> Command {
        let mut c = Command::new(program);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bins.clone()];
        paths.extend(std::env::split_paths(&path));
        c.env("PATH", std::env::join_paths(paths).unwrap_or_default());
        match emu {
            Some(e) => c.env("KUBECONFIG", e.kubeconfig()).env("HOME", e.home()),
            None => c.env("HOME", self.home.path()).env_remove("KUBECONFIG"),
        };
        c
    }

    fn repeat(&self, mut make: impl FnMut() -> Command) -> Result<(Duration, i64)> {
        let mut times = Vec::new();
        let mut rss = 0;
        // One warm-up run: the page cache, not the binary, is what a first run measures.
        make()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        for _ in 0..self.runs {
            let s = measure(&mut make())?;
            times.push(s.wall);
            rss = rss.max(s.max_rss_kib);
        }
        Ok((median(times), rss))
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }
}

fn startup(b: &Bench) -> Result<()> {
    println!("\n### Start-up (`--help`, median of {} runs)\n", b.runs);
    println!("| binary | wall | peak RSS | size |");
    println!("|---|---|---|---|");
    for p in ["register", "vm", "link", "split"] {
        let bin = b.bin(&format!("kubectl-mesh_{p}"));
        let (t, rss) = b.repeat(|| {
            let mut c = b.cmd(&bin, None);
            c.arg("--help");
            c
        })?;
        let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
        println!(
            "| kubectl-mesh_{p} | {} | {} | {:.1} MiB |",
            ms(t),
            mib(rss),
            size as f64 / 1048576.0
        );
    }
    let kubectl = PathBuf::from("kubectl");
    let (t, rss) = b.repeat(|| {
        let mut c = b.cmd(&kubectl, None);
        c.args(["version", "--client"]);
        c
    })?;
    println!(
        "| kubectl version --client (reference) | {} | {} | |",
        ms(t),
        mib(rss)
    );
    Ok(())
}

fn completion(b: &Bench) -> Result<()> {
    println!("\n### Completion latency (median of {} runs)\n", b.runs);
    println!("| request | wall |");
    println!("|---|---|");
    let emu = Emu::builder().seed_yaml(PRODUCTCATALOGSERVICE).start()?;
    let cases: [(&str, &str, &[&str], bool); 4] = [
        (
            "flags: `kubectl_complete-mesh_register --mo`",
            "kubectl_complete-mesh_register",
            &["--mo"],
            false,
        ),
        (
            "presets: `kubectl_complete-mesh_split productcatalogservice ''`",
            "kubectl_complete-mesh_split",
            &["productcatalogservice", ""],
            false,
        ),
        (
            "contexts: `kubectl_complete-mesh_link --from ''`",
            "kubectl_complete-mesh_link",
            &["--from", ""],
            true,
        ),
        (
            "live Services: `kubectl_complete-mesh_register ''`",
            "kubectl_complete-mesh_register",
            &[""],
            true,
        ),
    ];
    for (label, bin, args, with_emu) in cases {
        let path = b.bin(bin);
        let (t, _) = b.repeat(|| {
            let mut c = b.cmd(&path, with_emu.then_some(&emu));
            c.args(args);
            c
        })?;
        println!("| {label} | {} |", ms(t));
    }
    Ok(())
}

fn count_requests(emu: &Emu, cluster: &str) -> (usize, usize) {
    let reqs = emu.requests(cluster);
    let api = reqs.iter().filter(|r| !r.is_discovery()).count();
    (api, reqs.len())
}

fn requests(b: &Bench) -> Result<()> {
    println!("\n### Requests per command (API requests / all requests incl. discovery)\n");
    println!("| command | requests |");
    println!("|---|---|");
    let emu = Emu::builder().start()?;
    emu.clear_requests();
    let status = b
        .cmd(&b.bin("kubectl-mesh_register"), Some(&emu))
        .args(["productcatalog", "10.128.0.13", "grpc:3550"])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("mesh-register failed");
    }
    let (api, all) = count_requests(&emu, "cluster1");
    println!("| `mesh-register productcatalog 10.128.0.13 grpc:3550` (fresh) | {api} / {all} |");
    emu.clear_requests();
    b.cmd(&b.bin("kubectl-mesh_register"), Some(&emu))
        .args(["productcatalog", "10.128.0.13", "grpc:3550"])
        .stdout(Stdio::null())
        .status()?;
    let (api, all) = count_requests(&emu, "cluster1");
    println!("| same again (unchanged) | {api} / {all} |");
    for (label, extra) in extra_request_cases() {
        match extra(b) {
            Ok(text) => println!("| {label} | {text} |"),
            Err(e) => println!("| {label} | not measured: {e:#} |"),
        }
    }
    Ok(())
}

type Case = fn(&Bench) -> Result<String>;

fn extra_request_cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "`mesh-vm files analytics` (VM bootstrap files)",
            vm_files as Case,
        ),
        (
            "`mesh-split 80/20 --context cluster1 --context cluster2`",
            split_two as Case,
        ),
    ]
}

const VM_SEED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      discoveryAddress: istiod.istio-system.svc:15012
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"global":{"multiCluster":{"clusterName":"cluster1"},"network":"network1"}}'
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-ca-root-cert, namespace: default}
data:
  root-cert.pem: |
    -----BEGIN CERTIFICATE-----
    MIIBbench
    -----END CERTIFICATE-----
---
apiVersion: v1
kind: Service
metadata: {name: istio-eastwestgateway, namespace: istio-system}
spec: {type: LoadBalancer, ports: [{name: tls-istiod, port: 15012}]}
status: {loadBalancer: {ingress: [{ip: 35.1.2.3}]}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: analytics, namespace: default}
spec:
  metadata: {labels: {app: analytics}}
  template: {serviceAccount: default, network: network1}
"#;

fn vm_files(b: &Bench) -> Result<String> {
    let emu = Emu::builder().seed_yaml(VM_SEED).start()?;
    let out = tempdir::Dir::new("vm")?;
    let dir = out.path().join("files");
    emu.clear_requests();
    let status = b
        .cmd(&b.bin("kubectl-mesh_vm"), Some(&emu))
        .args(["files", "analytics", "--out-dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("mesh-vm files exited {status}");
    }
    let (api, all) = count_requests(&emu, "cluster1");
    Ok(format!("{api} / {all}"))
}

fn split_two(b: &Bench) -> Result<String> {
    let emu = Emu::builder()
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(MIGRATION)
        .start()?;
    emu.clear_requests();
    let status = b
        .cmd(&b.bin("kubectl-mesh_split"), Some(&emu))
        .args([
            "80/20",
            "--context",
            "cluster1",
            "--context",
            "cluster2",
            "-n",
            "default",
        ])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("mesh-split exited {status}");
    }
    let (a1, t1) = count_requests(&emu, "cluster1");
    let (a2, t2) = count_requests(&emu, "cluster2");
    Ok(format!(
        "{} / {} (cluster1 {a1}/{t1}, cluster2 {a2}/{t2})",
        a1 + a2,
        t1 + t2
    ))
}

fn services_yaml(n: usize) -> String {
    let mut y = String::from(GATEWAY_CLUSTER1);
    for i in 0..n {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i:05}, namespace: default, annotations: {{kube-emu/cluster: cluster1}}}}\nspec: {{ports: [{{name: grpc, port: 3550}}, {{name: http-metrics, port: 9090}}]}}\n"
        ));
    }
    y
}

/// One mesh-link run and one kubectl apply of the same objects, each into a fresh cluster.
struct LinkRun {
    link: Sample,
    link_requests: usize,
    kubectl: Sample,
    kubectl_requests: usize,
}

fn link_once(b: &Bench, n: usize) -> Result<LinkRun> {
    let emu = Emu::builder()
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&services_yaml(n))
        .start()?;
    let link = b.bin("kubectl-mesh_link");
    let args = [
        "--from", "cluster1", "--to", "cluster2", "-n", "default", "--all",
    ];
    emu.clear_requests();
    let s = measure(b.cmd(&link, Some(&emu)).args(args))?;
    if !s.status.success() {
        bail!("mesh-link of {n} services failed: {}", s.status);
    }
    let link_requests = count_requests(&emu, "cluster2").0 + count_requests(&emu, "cluster1").0;
    // The same objects, applied by kubectl into a fresh cluster.
    let out = b
        .cmd(&link, Some(&emu))
        .args(args)
        .args(["--dry-run=client", "-o", "yaml"])
        .stderr(Stdio::null())
        .output()?;
    let dir = tempdir::Dir::new("link")?;
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, &out.stdout).context("writing the dry-run objects")?;
    let fresh = Emu::builder().clusters(&["cluster1", "cluster2"]).start()?;
    fresh.clear_requests();
    let k = measure(
        b.cmd(Path::new("kubectl"), Some(&fresh))
            .args(["apply", "--server-side", "--context", "cluster2", "-f"])
            .arg(&file),
    )?;
    if !k.status.success() {
        bail!("kubectl apply of {n} ServiceEntries failed: {}", k.status);
    }
    Ok(LinkRun {
        link: s,
        link_requests,
        kubectl: k,
        kubectl_requests: count_requests(&fresh, "cluster2").0,
    })
}

fn link_scaling(b: &Bench) -> Result<()> {
    let sizes: &[usize] = if b.quick { &[100] } else { &[100, 1000, 5000] };
    let reps = if b.quick { 1 } else { 3 };
    println!("\n### mesh-link of N services vs `kubectl apply --server-side -f` of the same ServiceEntries (median of {reps})\n");
    println!("| N | mesh-link time | requests | peak RSS | kubectl apply time | requests | peak RSS | speed-up |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        let runs = (0..reps)
            .map(|_| link_once(b, n))
            .collect::<Result<Vec<_>>>()?;
        let link = median(runs.iter().map(|r| r.link.wall).collect());
        let kubectl = median(runs.iter().map(|r| r.kubectl.wall).collect());
        let link_rss = runs.iter().map(|r| r.link.max_rss_kib).max().unwrap_or(0);
        let kubectl_rss = runs
            .iter()
            .map(|r| r.kubectl.max_rss_kib)
            .max()
            .unwrap_or(0);
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {:.1}x |",
            ms(link),
            runs[0].link_requests,
            mib(link_rss),
            ms(kubectl),
            runs[0].kubectl_requests,
            mib(kubectl_rss),
            kubectl.as_secs_f64() / link.as_secs_f64()
        );
    }
    Ok(())
}

/// The round trip of every request to a cluster in the multi-cluster table: an API server in
/// another region.
const FAR: Duration = Duration::from_millis(100);

/// One run of `plugin args --context cluster1 ... --context clusterN` against N fresh clusters,
/// each `FAR` away: its wall time and the requests cluster1 answered.
fn across_once(b: &Bench, n: usize, plugin: &str, args: &[&str]) -> Result<(Duration, usize)> {
    let names: Vec<String> = (1..=n).map(|i| format!("cluster{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let emu = Emu::builder()
        .clusters(&refs)
        // The migration VirtualService at 100/0, in every cluster.
        .seed_yaml(VS_CLUSTER2)
        .latency(FAR)
        .start()?;
    emu.clear_requests();
    let mut cmd = b.cmd(&b.bin(&format!("kubectl-mesh_{plugin}")), Some(&emu));
    cmd.args(args).args(["-n", "default"]);
    for name in &names {
        cmd.args(["--context", name]);
    }
    let s = measure(&mut cmd)?;
    if !s.status.success() {
        bail!("mesh-{plugin} across {n} clusters exited {}", s.status);
    }
    Ok((s.wall, emu.requests("cluster1").len()))
}

/// Multi-cluster commands against clusters 100 ms away (#17): what connecting to, reading,
/// checking, writing and reading back N clusters costs.
fn across(b: &Bench) -> Result<()> {
    let reps = if b.quick { 1 } else { 3 };
    println!(
        "\n### Across N clusters, each {} ms away (every request and TLS handshake; median of {reps})\n",
        FAR.as_millis()
    );
    println!("| clusters | `mesh-split 80/20` | requests per cluster | `mesh-register` (fresh) | requests per cluster |");
    println!("|---|---|---|---|---|");
    let cases: [(&str, &[&str]); 2] = [
        ("split", &["80/20"]),
        ("register", &["productcatalog", "10.128.0.13", "grpc:3550"]),
    ];
    for n in [1, 5, 20] {
        let mut cells = Vec::new();
        for (plugin, args) in cases {
            let runs = (0..reps)
                .map(|_| across_once(b, n, plugin, args))
                .collect::<Result<Vec<_>>>()?;
            let wall = median(runs.iter().map(|r| r.0).collect());
            cells.push(format!("{} | {}", ms(wall), runs[0].1));
        }
        println!("| {n} | {} |", cells.join(" | "));
    }
    Ok(())
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__measure") {
        return trampoline(&argv[2..]);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    // `--across`: only the multi-cluster table (a quick look while working on #17).
    let only_across = std::env::args().any(|a| a == "--across");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Where cargo put the release build: CARGO_TARGET_DIR when set (as `.ci/run` may be run).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bins = std::env::var_os("MESH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("release"));
    if !bins.join("kubectl-mesh_register").exists() {
        bail!(
            "no release binaries in {}: run cargo build --release -p kubectl-mesh first",
            bins.display()
        );
    }
    let b = Bench {
        bins,
        runs: if quick { 5 } else { 30 },
        quick,
        home: tempdir::Dir::new("home")?,
    };
    println!(
        "## kubectl-mesh benchmark ({} on {} cores)",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if only_across {
        return across(&b);
    }
    startup(&b)?;
    completion(&b)?;
    requests(&b)?;
    across(&b)?;
    link_scaling(&b)?;
    // The real tier: real kube-apiservers, istioctl and kubectl side by side.
    let tools = std::env::var_os("MESH_REALCLUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/realcluster/bin"));
    real::vm_vs_istioctl(&b, &tools)?;
    real::link_on_real(&b, &tools)?;
    Ok(())
}
