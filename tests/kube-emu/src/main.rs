//! `kube-emu --kubeconfig PATH [--clusters a,b] [--crds FILE]... [--seed FILE]... [--deterministic] [--latency-ms MS]`,
//! or `kube-emu --demo`: two clusters seeded as the migration sample has them, for the README.
#![allow(missing_docs)]

use anyhow::{bail, Context};
use std::io::Read;

/// The demo's kubeconfig, unless `--kubeconfig` says otherwise.
const DEMO_KUBECONFIG: &str = "/tmp/kubectl-mesh-demo.kubeconfig";
/// Both clusters of the demo, each object routed by its `kube-emu/cluster` annotation.
const DEMO_SEED: &str = include_str!("../demo/seed.yaml");

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut kubeconfig = None;
    let mut builder = kube_emu::Emu::builder();
    let mut no_crds = false;
    let mut demo = false;
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--kubeconfig" => kubeconfig = Some(val("--kubeconfig")?),
            "--clusters" => {
                let v = val("--clusters")?;
                let names: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                builder = builder.clusters(&names);
            }
            "--crds" => builder = builder.crds_file(val("--crds")?),
            "--no-crds" => no_crds = true,
            "--seed" => {
                let f = val("--seed")?;
                let text = std::fs::read_to_string(&f).with_context(|| format!("reading {f}"))?;
                builder = builder.seed_yaml(&text);
            }
            "--deterministic" => builder = builder.deterministic(),
            "--latency-ms" => {
                let v = val("--latency-ms")?;
                let ms: u64 = v
                    .parse()
                    .with_context(|| format!("--latency-ms {v:?}: not a number of milliseconds"))?;
                builder = builder.latency(std::time::Duration::from_millis(ms));
            }
            "--demo" => demo = true,
            "-h" | "--help" => {
                println!("usage: kube-emu --kubeconfig PATH [--clusters cluster1,cluster2] [--crds FILE]... [--no-crds] [--seed FILE]... [--deterministic] [--latency-ms MS]\n       kube-emu --demo [--kubeconfig PATH]   (two clusters seeded as the migration sample; default {DEMO_KUBECONFIG})");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if no_crds {
        builder = builder.no_crds();
    }
    if demo {
        builder = builder
            .clusters(&["cluster1", "cluster2"])
            .seed_yaml(DEMO_SEED);
        kubeconfig = kubeconfig.or_else(|| Some(DEMO_KUBECONFIG.to_string()));
    }
    let Some(kubeconfig) = kubeconfig else {
        bail!("--kubeconfig PATH is required (or --demo)")
    };
    let emu = builder.start()?;
    std::fs::write(&kubeconfig, emu.kubeconfig_yaml())
        .with_context(|| format!("writing {kubeconfig}"))?;
    // The handlers are installed before "ready": a test that sends SIGTERM as soon as it reads
    // that line must find them, or the default action kills the process without dropping `emu`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = {
        let _enter = rt.enter();
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    println!("ready {kubeconfig}");
    if demo {
        println!("export KUBECONFIG={kubeconfig}");
        eprintln!("kube-emu: cluster1 and cluster2 are up, seeded as the migration sample at its step 9; stop them with `kill %1` (or Ctrl-C in the foreground)");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        // End of stdin stops a server started by a test; but a terminal is never read: a shell
        // stops a background job that reads its terminal (`kube-emu ... &`).
        use std::io::IsTerminal as _;
        let watch_stdin = !std::io::stdin().is_terminal();
        std::thread::spawn(move || {
            if !watch_stdin {
                // Keep the sender alive, so the channel never reports an end.
                let _keep = tx;
                loop {
                    std::thread::park();
                }
            }
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = tx.blocking_send(());
        });
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = rx.recv() => {}
        }
        anyhow::Ok(())
    })?;
    drop(emu);
    Ok(())
}
