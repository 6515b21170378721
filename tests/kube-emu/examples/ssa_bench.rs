//! Throughput of server-side applies of ServiceEntries with 16 requests in flight.
//!
//! `cargo run --release -p kube-emu --example ssa_bench [TOTAL]`
#![allow(missing_docs)]

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const IN_FLIGHT: usize = 16;

fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let emu = kube_emu::Emu::builder().start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = emu.client("cluster1").await?;
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("networking.istio.io", "v1", "ServiceEntry"), "serviceentries");
        let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
        let next = Arc::new(AtomicUsize::new(0));
        // Warm up connections.
        apply(&api, 0, 0).await?;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..IN_FLIGHT {
            let api = api.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    apply(&api, i % 500, i / 500).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{total} server-side applies of ServiceEntries, {IN_FLIGHT} in flight: {secs:.2}s, {:.0} requests/s", total as f64 / secs);
        anyhow::Ok(())
    })?;
    Ok(())
}

async fn apply(api: &Api<DynamicObject>, n: usize, round: usize) -> anyhow::Result<()> {
    let name = format!("se-{n}");
    let obj = serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": name, "labels": {"round": round.to_string()}},
        "spec": {
            "hosts": [format!("{name}.example.com")],
            "location": "MESH_EXTERNAL", "resolution": "STATIC",
            "ports": [{"number": 8000 + (round % 100) as u32, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "10.0.0.1", "labels": {"app": "x"}}],
        }
    });
    let pp = PatchParams::apply("bench").force();
    api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
    Ok(())
}
