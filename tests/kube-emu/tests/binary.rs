//! The standalone `kube-emu` binary.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn binary_serves_clusters_until_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc.yaml");
    let seed = dir.path().join("seed.yaml");
    std::fs::write(
        &seed,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: only-b, annotations: {kube-emu/cluster: b}}\ndata: {x: y}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-emu"))
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--clusters",
            "a,b",
            "--seed",
            seed.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("ready {}", kc.display()));
    let cfg: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&kc).unwrap()).unwrap();
    assert_eq!(cfg["current-context"], "a");
    assert_eq!(cfg["contexts"].as_array().unwrap().len(), 2);
    assert_eq!(cfg["contexts"][1]["context"]["namespace"], "default");
    assert!(cfg["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (ctx, present) in [("a", false), ("b", true)] {
            let kcfg = kube::config::Kubeconfig::read_from(&kc).unwrap();
            let opts = kube::config::KubeConfigOptions {
                context: Some(ctx.into()),
                ..Default::default()
            };
            let client = kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(kcfg, &opts)
                    .await
                    .unwrap(),
            )
            .unwrap();
            let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                kube::Api::namespaced(client, "default");
            assert_eq!(
                cms.get_opt("only-b").await.unwrap().is_some(),
                present,
                "context {ctx}"
            );
        }
    });
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn binary_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-emu"))
        .args(["--kubeconfig", kc.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready "));
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(child.wait().unwrap().success());
}
