//! Time of the routing core alone (no TLS, no client) for ServiceEntry applies, and of CRD
//! validation alone. `cargo run --release -p kube-emu --example core_bench`
#![allow(missing_docs)]

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let path =
        kube_emu::registry::default_crd_path().ok_or_else(|| anyhow::anyhow!("no CRD file"))?;
    let set = kube_emu::registry::crd_file(&path)?;
    let core = kube_emu::api::Core::new("c", std::slice::from_ref(&set), false);
    let n = 20_000;
    let t = Instant::now();
    for i in 0..n {
        let body = serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": format!("se-{}", i % 500), "labels": {"round": (i / 500).to_string()}},
            "spec": {"hosts": [format!("se-{}.example.com", i % 500)], "location": "MESH_EXTERNAL", "resolution": "STATIC",
                "ports": [{"number": 8000 + (i / 500) % 100, "name": "http", "protocol": "HTTP"}],
                "endpoints": [{"address": "10.0.0.1", "labels": {"app": "x"}}]}
        });
        let body = serde_json::to_vec(&body)?;
        let path = format!(
            "/apis/networking.istio.io/v1/namespaces/default/serviceentries/se-{}",
            i % 500
        );
        let r = kube_emu::api::Request {
            method: "PATCH",
            path: &path,
            query: "fieldManager=bench&force=true",
            accept: "",
            content_type: "application/apply-patch+yaml",
            user_agent: "bench",
            body: &body,
        };
        let resp = core.handle(&r);
        assert!(resp.status < 300, "{}", String::from_utf8_lossy(&resp.body));
    }
    let per = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "core apply: {:.1} µs/op ({:.0}/s on one core)",
        per * 1e6,
        1.0 / per
    );
    let rt = set
        .types
        .iter()
        .find(|t| t.kind == "ServiceEntry" && t.version == "v1")
        .expect("se");
    let schema = rt.schema.as_ref().expect("schema");
    let obj = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "x"},
        "spec": {"hosts": ["a.example.com"], "location": "MESH_EXTERNAL", "resolution": "STATIC",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "endpoints": [{"address": "10.0.0.1"}]}});
    let ctx = kube_cel::RootContext {
        api_version: "networking.istio.io/v1".into(),
        api_group: "networking.istio.io".into(),
        kind: "ServiceEntry".into(),
    };
    let t = Instant::now();
    for _ in 0..n {
        assert!(schema.validate(&obj, Some(&obj), &ctx).is_empty());
    }
    println!(
        "validation: {:.1} µs/op",
        t.elapsed().as_secs_f64() / n as f64 * 1e6
    );
    Ok(())
}
