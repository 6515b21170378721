//! Completion end to end: the real kubectl's `__complete` through the `kubectl_complete-mesh_*`
//! helpers, the committed bash/zsh/fish scripts (fresh, loaded and exercised in real shells), and
//! live values from kube-emu.

use std::path::PathBuf;
use std::process::Command;

use crate::common::fixtures::PRODUCTCATALOGSERVICE;
use crate::common::{bin, bin_dir, kubectl, plugin, Emu};

const PLUGINS: [&str; 4] = ["register", "vm", "link", "split"];

/// With [`PRODUCTCATALOGSERVICE`] before it.
const SEED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: checkoutservice, namespace: default}
spec: {ports: [{name: grpc, port: 5050}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: cartservice, namespace: shop}
spec: {ports: [{name: grpc, port: 7070}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: analytics, namespace: default}
spec: {template: {serviceAccount: default}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productcatalog-migration, namespace: default}
spec:
  hosts: [productcatalogservice]
  http:
  - route:
    - destination: {host: productcatalogservice}
      weight: 100
    - destination: {host: productcatalogservice-gke.default.global}
      weight: 0
"#;

fn emu() -> Emu {
    Emu::builder()
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(&format!("{PRODUCTCATALOGSERVICE}---{SEED}"))
        .start()
        .expect("emu")
}

/// `kubectl __complete mesh-PLUGIN WORDS...`: candidates (values only) and the directive line.
fn kubectl_complete(emu: &Emu, plugin: &str, words: &[&str]) -> (Vec<String>, String) {
    let mut args = vec!["__complete".to_string(), format!("mesh-{plugin}")];
    args.extend(words.iter().map(|w| w.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = kubectl(emu, &refs).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    let (directive, values) = lines.split_last().expect("a directive line");
    (
        values
            .iter()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect(),
        directive.to_string(),
    )
}

#[test]
fn kubectl_completes_register_services_from_the_cluster() {
    let emu = emu();
    let (values, directive) = kubectl_complete(&emu, "register", &[""]);
    assert_eq!(values, vec!["checkoutservice", "productcatalogservice"]);
    assert_eq!(directive, ":4");
    // -n typed on the line is honoured.
    let (values, _) = kubectl_complete(&emu, "register", &["-n", "shop", ""]);
    assert_eq!(values, vec!["cartservice"]);
    let (values, _) = kubectl_complete(&emu, "register", &["-n", ""]);
    assert!(
        values.contains(&"shop".to_string()) && values.contains(&"istio-system".to_string()),
        "{values:?}"
    );
    // --context typed on the line picks the cluster: cluster2 has the same seed.
    let (values, _) = kubectl_complete(&emu, "register", &["--context", "cluster2", "p"]);
    assert_eq!(values, vec!["productcatalogservice"]);
    // Port specs offer protocols, with no space after the colon.
    let (values, directive) = kubectl_complete(&emu, "register", &["x", "10.0.0.1", "h"]);
    assert_eq!(values, vec!["http:", "http2:", "https:"]);
    assert_eq!(directive, ":6");
    let (values, _) = kubectl_complete(&emu, "register", &["--mo"]);
    assert_eq!(values, vec!["--mode"]);
}

#[test]
fn kubectl_completes_contexts_for_every_plugin() {
    let emu = emu();
    for p in PLUGINS {
        let (values, directive) = kubectl_complete(&emu, p, &["--context", ""]);
        assert_eq!(values, vec!["cluster1", "cluster2"], "{p}");
        assert_eq!(directive, ":4", "{p}");
    }
    let (values, _) = kubectl_complete(&emu, "link", &["--from", ""]);
    assert_eq!(values, vec!["cluster1", "cluster2"]);
    let (values, _) = kubectl_complete(&emu, "link", &["--from", "cluster1", "--to", "c"]);
    assert_eq!(values, vec!["cluster1", "cluster2"]);
}

#[test]
fn kubectl_completes_live_values_of_each_plugin() {
    let emu = emu();
    // mesh-vm: subcommands, then WorkloadGroup names.
    let (values, _) = kubectl_complete(&emu, "vm", &[""]);
    for sub in ["group", "files", "refresh", "status"] {
        assert!(values.contains(&sub.to_string()), "{values:?}");
    }
    let (values, _) = kubectl_complete(&emu, "vm", &["status", ""]);
    assert_eq!(values, vec!["analytics"]);
    // mesh-link: Services of the --from cluster.
    let (values, _) = kubectl_complete(
        &emu,
        "link",
        &["--from", "cluster2", "--to", "cluster1", "check"],
    );
    assert!(
        values.contains(&"checkoutservice".to_string()) || values.contains(&"check".to_string()),
        "{values:?}"
    );
    let (values, _) = kubectl_complete(
        &emu,
        "link",
        &["--from", "cluster2", "--to", "cluster1", "pro"],
    );
    assert_eq!(values, vec!["productcatalogservice"]);
    // mesh-split: VirtualService hosts and weight presets.
    let (values, _) = kubectl_complete(&emu, "split", &[""]);
    assert!(
        values.contains(&"productcatalogservice".to_string()),
        "{values:?}"
    );
    assert!(values.contains(&"80/20".to_string()), "{values:?}");
    let (values, _) = kubectl_complete(&emu, "split", &["productcatalogservice", ""]);
    assert_eq!(
        values,
        vec!["100/0", "90/10", "80/20", "50/50", "20/80", "0/100"]
    );
}

#[test]
fn flags_complete_for_every_plugin() {
    let emu = emu();
    for p in PLUGINS {
        let (values, directive) = kubectl_complete(&emu, p, &["--kubec"]);
        assert_eq!(values, vec!["--kubeconfig"], "{p}");
        assert_eq!(directive, ":4", "{p}");
    }
    let (values, _) = kubectl_complete(&emu, "vm", &["files", "analytics", "--out-dir", ""]);
    assert!(values.is_empty());
    let (_, directive) = kubectl_complete(&emu, "vm", &["files", "analytics", "--out-dir", ""]);
    assert_eq!(directive, ":16", "directories only");
    let (values, _) = kubectl_complete(&emu, "split", &["--dry-run="]);
    assert_eq!(
        values,
        vec!["--dry-run=none", "--dry-run=client", "--dry-run=server"]
    );
}

#[test]
fn a_dead_cluster_completes_nothing_quickly_and_quietly() {
    let emu = emu();
    let kc = emu.kubeconfig().to_path_buf();
    drop(emu);
    let start = std::time::Instant::now();
    let out = Command::new(bin_dir().join("kubectl_complete-mesh_register"))
        .arg("")
        .env("KUBECONFIG", &kc)
        .output()
        .expect("run");
    assert!(start.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), ":4\n");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A krew install links only `kubectl-mesh_<verb>`: the plugin itself answers as the completion
/// helper when called by the helper's name, and `completion` prints the link that gives it that name.
#[test]
fn the_plugin_is_its_own_helper_when_linked_under_that_name() {
    let emu = emu();
    let dir = tempfile::tempdir().expect("tempdir");
    for p in PLUGINS {
        let printed = plugin(None, p, &["completion"]).ok();
        assert_eq!(
            printed.stdout,
            format!(
                "ln -sf kubectl-mesh_{p} \"${{KREW_ROOT:-$HOME/.krew}}/bin/kubectl_complete-mesh_{p}\"\n"
            )
        );
        // The printed command, run with KREW_ROOT pointing at a krew-like bin directory.
        let bin_dir_krew = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir_krew).expect("bin");
        std::os::unix::fs::symlink(bin(p), bin_dir_krew.join(format!("kubectl-mesh_{p}")))
            .expect("plugin link");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&printed.stdout)
            .env("KREW_ROOT", dir.path())
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let helper = dir.path().join("bin/kubectl_complete-mesh_register");
    let out = Command::new(&helper)
        .arg("")
        .env("KUBECONFIG", emu.kubeconfig())
        .env("HOME", emu.home())
        .output()
        .expect("run the link");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "checkoutservice\nproductcatalogservice\n:4\n"
    );
    let out = Command::new(dir.path().join("bin/kubectl_complete-mesh_split"))
        .args(["--dry-run="])
        .output()
        .expect("run the link");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "--dry-run=none\n--dry-run=client\n--dry-run=server\n:4\n"
    );
    // Called by its own name, the same words are a SERVICE and an IP, refused as usual.
    let run = plugin(Some(&emu), "register", &["completion", "x"]);
    assert_eq!(run.code, 2, "{run:?}");
}

fn committed_script(shell: &str, plugin: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("completions");
    match shell {
        "bash" => root
            .join("bash")
            .join(format!("kubectl-mesh_{plugin}.bash")),
        "zsh" => root.join("zsh").join(format!("_kubectl-mesh_{plugin}")),
        _ => root
            .join("fish")
            .join(format!("kubectl-mesh_{plugin}.fish")),
    }
}

/// The committed scripts are what the binaries generate; `UPDATE_COMPLETIONS=1` rewrites them.
#[test]
fn committed_scripts_are_fresh() {
    let update = std::env::var_os("UPDATE_COMPLETIONS").is_some();
    for p in PLUGINS {
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(bin(p))
                .env("COMPLETE", shell)
                .output()
                .expect("run");
            assert!(out.status.success());
            let path = committed_script(shell, p);
            if update {
                std::fs::write(&path, &out.stdout).expect("write");
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(committed == out.stdout, "{} is stale: run UPDATE_COMPLETIONS=1 cargo test -p kubectl-mesh --test e2e completion::", path.display());
        }
    }
}

fn shell_available(shell: &str) -> bool {
    Command::new(shell)
        .arg("-c")
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn shell_env(cmd: &mut Command, emu: &Emu) {
    let path = std::env::join_paths(std::iter::once(bin_dir()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("path");
    cmd.env("PATH", path)
        .env("KUBECONFIG", emu.kubeconfig())
        .env("HOME", emu.home());
}

#[test]
fn bash_completes_the_standalone_binary() {
    assert!(shell_available("bash"), "bash is required");
    let emu = emu();
    let script = committed_script("bash", "register");
    let probe = format!(
        "source {}; COMP_WORDS=(kubectl-mesh_register \"$@\"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); _kubectl_mesh_register; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let run = |words: &[&str]| {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(&probe).arg("bash").args(words);
        shell_env(&mut cmd, &emu);
        let out = cmd.output().expect("bash");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(&[""]), "checkoutservice\nproductcatalogservice\n");
    assert_eq!(run(&["--mo"]), "--mode\n");
    assert_eq!(run(&["--mode", "w"]), "workloadentry\n");
}

#[test]
fn bash_completes_through_kubectl_completion() {
    let emu = emu();
    // kubectl's bash script relies on the bash-completion package (.ci/run installs it).
    let probe = "source /usr/share/bash-completion/bash_completion; source <(kubectl completion bash); COMP_WORDS=(kubectl mesh-register \"\"); COMP_CWORD=2; COMP_LINE='kubectl mesh-register '; COMP_POINT=${#COMP_LINE}; __start_kubectl; printf '%s\\n' \"${COMPREPLY[@]}\"";
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(probe);
    shell_env(&mut cmd, &emu);
    let out = cmd.output().expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("productcatalogservice") && text.contains("checkoutservice"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn zsh_script_loads_and_completes() {
    assert!(
        shell_available("zsh"),
        "zsh is required (.ci/run installs it)"
    );
    let emu = emu();
    let script = committed_script("zsh", "register");
    // Stand-ins for zsh's completion builtins record what the script offers.
    let probe = format!(
        "compdef() {{ :; }}; _describe() {{ local arr=$4; print -l -- ${{(P)arr}}; }}; _files() {{ print FILES; }}; _path_files() {{ print DIRS; }}; \
         source {}; words=(kubectl-mesh_register \"$@\"); CURRENT=${{#words}}; _kubectl_mesh_register",
        script.display()
    );
    let run = |words: &[&str]| {
        let mut cmd = Command::new("zsh");
        cmd.arg("-f").arg("-c").arg(&probe).arg("zsh").args(words);
        shell_env(&mut cmd, &emu);
        let out = cmd.output().expect("zsh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let services = run(&[""]);
    assert!(
        services.contains("checkoutservice") && services.contains("productcatalogservice"),
        "{services}"
    );
    assert!(run(&["--mo"]).contains("--mode"));
}

#[test]
fn fish_script_loads_and_completes() {
    assert!(
        shell_available("fish"),
        "fish is required (.ci/run installs it)"
    );
    let emu = emu();
    let script = committed_script("fish", "register");
    let run = |line: &str| {
        let mut cmd = Command::new("fish");
        cmd.arg("--no-config")
            .arg("-c")
            .arg(format!("source {}; complete -C '{line}'", script.display()));
        shell_env(&mut cmd, &emu);
        let out = cmd.output().expect("fish");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let services = run("kubectl-mesh_register ");
    assert!(
        services.contains("checkoutservice") && services.contains("productcatalogservice"),
        "{services}"
    );
    assert!(run("kubectl-mesh_register --mo").contains("--mode"));
}

#[test]
fn help_names_the_kubectl_command() {
    for p in PLUGINS {
        let run = plugin(None, p, &["--help"]).ok();
        assert!(
            run.stdout.contains(&format!("kubectl mesh-{p}")),
            "{p}: {}",
            run.stdout
        );
    }
}
