//! The real tier's benchmarks: kubectl-mesh against istioctl and kubectl on real kube-apiservers
//! (mesh-testcluster from `tests/realcluster`), and the server's own ceiling for the same writes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{measure, median, mib, ms, tempdir, Bench};

/// Real clusters for the length of one benchmark section; EOF on stdin stops them.
struct Clusters {
    child: Child,
    stdin: Option<ChildStdin>,
    kubeconfig: PathBuf,
    _dir: tempdir::Dir,
}

impl Clusters {
    fn start(tools: &Path, names: &str) -> Result<Clusters> {
        let bin = tools.join("mesh-testcluster");
        if !bin.exists() {
            bail!("{} is missing: run tests/realcluster/build", bin.display());
        }
        let dir = tempdir::Dir::new("real")?;
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--clusters", names])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().context("mesh-testcluster stdout")?;
        let mut clusters = Clusters {
            child,
            stdin,
            kubeconfig,
            _dir: dir,
        };
        for line in BufReader::new(out).lines() {
            if line?.starts_with("ready ") {
                return Ok(clusters);
            }
        }
        let _ = clusters.child.wait();
        bail!("mesh-testcluster exited before it was ready")
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Clusters {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The kube-emu benchmark's VM seed, plus the ServiceAccount that a real cluster's
/// controller-manager would have created (none runs in mesh-testcluster).
fn vm_seed() -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: default, namespace: default}}\n---{}",
        crate::VM_SEED
    )
}

/// mesh-vm against istioctl on one real cluster: `--help`, and a whole `files` run next to
/// `istioctl x workload entry configure` for the same WorkloadGroup. Runs are interleaved so
/// both see the same machine.
pub fn vm_vs_istioctl(b: &Bench, tools: &Path) -> Result<()> {
    let istioctl = tools.join("istioctl");
    let vm = b.bin("kubectl-mesh_vm");
    let clusters = Clusters::start(tools, "cluster1")?;
    clusters.kubectl(&["apply", "-f", "-"], Some(&vm_seed()))?;
    let group = clusters.kubectl(&["get", "workloadgroup", "analytics", "-o", "yaml"], None)?;
    let dir = tempdir::Dir::new("vmfiles")?;
    let group_file = dir.path().join("group.yaml");
    std::fs::write(&group_file, group)?;

    let env = |c: &mut Command| {
        c.env("KUBECONFIG", &clusters.kubeconfig)
            .env("HOME", b.home.path());
    };
    let help_mesh = || {
        let mut c = Command::new(&vm);
        c.args(["files", "--help"]);
        env(&mut c);
        c
    };
    let help_istioctl = || {
        let mut c = Command::new(&istioctl);
        c.args(["x", "workload", "entry", "configure", "--help"]);
        env(&mut c);
        c
    };
    let files_mesh = |n: usize| {
        let mut c = Command::new(&vm);
        c.args(["files", "analytics", "--ingress-ip", "35.1.2.3", "--force"])
            .arg("--out-dir")
            .arg(dir.path().join(format!("mesh-{n}")));
        env(&mut c);
        c
    };
    let files_istioctl = |n: usize| {
        let mut c = Command::new(&istioctl);
        c.args([
            "x",
            "workload",
            "entry",
            "configure",
            "--clusterID",
            "cluster1",
        ])
        .args(["--ingressIP", "35.1.2.3", "-f"])
        .arg(&group_file)
        .arg("-o")
        .arg(dir.path().join(format!("istioctl-{n}")));
        env(&mut c);
        c
    };
    let runs = b.runs.min(15);
    println!("\n### mesh-vm and istioctl on a real kube-apiserver (interleaved, median of {runs} runs)\n");
    println!("| command | mesh-vm wall | peak RSS | istioctl wall | peak RSS | speed-up |");
    println!("|---|---|---|---|---|---|");
    type Make<'a> = &'a dyn Fn(usize) -> Command;
    let help_m = |_: usize| help_mesh();
    let help_i = |_: usize| help_istioctl();
    let cases: [(&str, Make, Make); 2] = [
        ("`files --help`", &help_m, &help_i),
        (
            "`files analytics` (TokenRequest, 3 ConfigMaps, 5 files)",
            &files_mesh,
            &files_istioctl,
        ),
    ];
    for (label, mesh, isto) in cases {
        let (mut tm, mut ti, mut rm, mut ri) = (vec![], vec![], 0, 0);
        for n in 0..=runs {
            let m = measure(&mut mesh(n))?;
            let i = measure(&mut isto(n))?;
            if !m.status.success() || !i.status.success() {
                bail!("{label}: mesh-vm {} istioctl {}", m.status, i.status);
            }
            // The first pair warms the page cache and is not counted.
            if n > 0 {
                tm.push(m.wall);
                ti.push(i.wall);
                rm = rm.max(m.max_rss_kib);
                ri = ri.max(i.max_rss_kib);
            }
        }
        let (tm, ti) = (median(tm), median(ti));
        println!(
            "| {label} | {} | {} | {} | {} | {:.1}x |",
            ms(tm),
            mib(rm),
            ms(ti),
            mib(ri),
            ti.as_secs_f64() / tm.as_secs_f64()
        );
    }
    Ok(())
}

fn services_yaml(n: usize) -> String {
    let mut y = String::new();
    for i in 0..n {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i:05}, namespace: default}}\nspec: {{ports: [{{name: grpc, port: 3550}}, {{name: http-metrics, port: 9090}}]}}\n"
        ));
    }
    y
}

/// mesh-link of N services on real kube-apiservers, next to `kubectl apply --server-side` of
/// the same ServiceEntries and to the ceiling: the same applies from a bare kube client with 16
/// in flight, each into a fresh namespace so every run creates every entry.
pub fn link_on_real(b: &Bench, tools: &Path) -> Result<()> {
    // 1,000 in both modes: the comparison is at the size users link; --quick runs it once.
    let n = 1000;
    let reps = if b.quick { 1 } else { 3 };
    let clusters = Clusters::start(tools, "cluster1,cluster2")?;
    clusters.kubectl(
        &["--context", "cluster1", "apply", "-f", "-"],
        Some(&services_yaml(n)),
    )?;
    clusters.kubectl(
        &["--context", "cluster1", "apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system}\nspec: {type: LoadBalancer, ports: [{name: tls, port: 15443}]}\n"),
    )?;
    clusters.kubectl(
        &[
            "--context",
            "cluster1",
            "patch",
            "svc",
            "istio-ingressgateway",
            "-n",
            "istio-system",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"35.0.0.1"}]}}}"#,
        ],
        None,
    )?;
    let link = b.bin("kubectl-mesh_link");
    let cmd = || {
        let mut c = Command::new(&link);
        c.env("KUBECONFIG", &clusters.kubeconfig)
            .env("HOME", b.home.path())
            .args([
                "--from", "cluster1", "--to", "cluster2", "-n", "default", "--all",
            ]);
        c
    };
    // The objects, from mesh-link's own client-side dry run.
    let yaml = String::from_utf8(
        cmd()
            .args(["--dry-run=client", "-o", "yaml"])
            .stderr(Stdio::null())
            .output()?
            .stdout,
    )?;
    let (mut tl, mut tk, mut tc, mut rl, mut rk) = (vec![], vec![], vec![], 0, 0);
    for rep in 0..reps {
        if rep > 0 {
            // Each run creates every entry: take the previous run's back first.
            let status = cmd().arg("--unlink").stdout(Stdio::null()).status()?;
            if !status.success() {
                bail!("mesh-link --unlink: {status}");
            }
        }
        let s = measure(&mut cmd())?;
        if !s.status.success() {
            bail!("mesh-link of {n} services on the real tier: {}", s.status);
        }
        tl.push(s.wall);
        rl = rl.max(s.max_rss_kib);
        // The same ServiceEntries from kubectl, into a fresh namespace.
        let ns = format!("kubectl-{rep}");
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": service_entries(&yaml, &ns)?});
        let dir = tempdir::Dir::new("reallink")?;
        let file = dir.path().join("objects.json");
        std::fs::write(&file, list.to_string())?;
        clusters.kubectl(&["--context", "cluster2", "create", "namespace", &ns], None)?;
        let mut kubectl = Command::new("kubectl");
        kubectl
            .env("KUBECONFIG", &clusters.kubeconfig)
            .args(["--context", "cluster2", "apply", "--server-side", "-f"])
            .arg(&file);
        let k = measure(&mut kubectl)?;
        if !k.status.success() {
            bail!("kubectl apply of {n} ServiceEntries: {}", k.status);
        }
        tk.push(k.wall);
        rk = rk.max(k.max_rss_kib);
        let entries = service_entries(&yaml, &format!("ceiling-{rep}"))?;
        clusters.kubectl(
            &[
                "--context",
                "cluster2",
                "create",
                "namespace",
                &format!("ceiling-{rep}"),
            ],
            None,
        )?;
        tc.push(ceiling(&clusters.kubeconfig, entries)?);
    }
    let (tl, tk, tc) = (median(tl), median(tk), median(tc));
    println!("\n### mesh-link of {n} services on a real kube-apiserver (median of {reps})\n");
    println!("| client | time | peak RSS | applies/s | share of the ceiling |");
    println!("|---|---|---|---|---|");
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    println!(
        "| mesh-link (the whole command: reads, ledger, {n} applies) | {} | {} | {:.0} | {:.0}% |",
        ms(tl),
        mib(rl),
        rate(tl),
        100.0 * tc.as_secs_f64() / tl.as_secs_f64()
    );
    println!(
        "| kubectl apply --server-side -f (same entries) | {} | {} | {:.0} | {:.0}% |",
        ms(tk),
        mib(rk),
        rate(tk),
        100.0 * tc.as_secs_f64() / tk.as_secs_f64()
    );
    println!(
        "| ceiling: bare kube client, 16 in flight, applies only | {} | | {:.0} | 100% |",
        ms(tc),
        rate(tc)
    );
    Ok(())
}

/// The ServiceEntries of a dry run, moved into `namespace`.
fn service_entries(yaml: &str, namespace: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let mut v: Value = serde::Deserialize::deserialize(doc)?;
        if v["kind"] == "ServiceEntry" {
            v["metadata"]["namespace"] = Value::String(namespace.into());
            out.push(v);
        }
    }
    Ok(out)
}

/// Server-side applies of `entries` to cluster2 with 16 in flight; the wall time of them all.
fn ceiling(kubeconfig: &Path, entries: Vec<Value>) -> Result<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let opts = kube::config::KubeConfigOptions {
            context: Some("cluster2".into()),
            ..Default::default()
        };
        let client =
            kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &opts).await?)?;
        let ar = kube::core::ApiResource {
            group: "networking.istio.io".into(),
            version: "v1".into(),
            api_version: "networking.istio.io/v1".into(),
            kind: "ServiceEntry".into(),
            plural: "serviceentries".into(),
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(16));
        let mut set = tokio::task::JoinSet::new();
        let start = Instant::now();
        for e in entries {
            let ns = e["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            let name = e["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let api: kube::Api<kube::core::DynamicObject> =
                kube::Api::namespaced_with(client.clone(), &ns, &ar);
            let permit = gate.clone().acquire_owned().await?;
            set.spawn(async move {
                let pp = kube::api::PatchParams::apply("mesh-bench");
                let r = api.patch(&name, &pp, &kube::api::Patch::Apply(&e)).await;
                drop(permit);
                r.map(|_| ())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok(start.elapsed())
    })
}
