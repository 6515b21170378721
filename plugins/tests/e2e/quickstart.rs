//! The README's quick start, word for word, in a real interactive shell (bash under tmux): the
//! demo's emulated clusters start as a background job, and every plugin and kubectl run
//! against them; each line's exit status is checked.
//! Before kube-emu stopped reading a terminal, the shell stopped the job at once
//! (`Stopped (tty input)`) and the next command hung.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The shell lines of the README block that follows `marker`.
fn readme_block(marker: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let after = &readme[readme
        .find(marker)
        .expect("the quick start is in the README")..];
    let start = after.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let body = &after[start..];
    body[..body.find("```").expect("end of block")]
        .lines()
        .map(String::from)
        .collect()
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is required (.ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_quick_start_runs_word_for_word_in_an_interactive_shell() {
    let lines = readme_block("To try the real thing without a cluster");
    assert!(lines.iter().any(|l| l.ends_with('&')), "{lines:?}");
    let session = format!("mesh-quickstart-{}", std::process::id());
    // The user's own HOME: `cargo run` needs its toolchain and registry cache there.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = format!(
        "{}:{}",
        common::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = format!(
        "env -i PATH='{path}' HOME='{home}' TERM=xterm PS1='$ ' bash --norc --noprofile -i"
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "200",
        "-y",
        "60",
        "-c",
        &root.to_string_lossy(),
        &shell,
    ]);
    let screen = || tmux(&["capture-pane", "-t", &session, "-p", "-S", "-"]);
    let wait_for = |what: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if screen().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    // After each README line, the shell echoes its exit status, so a failure names its line.
    let mut ok = true;
    let mut failed = None;
    for (n, line) in lines.iter().enumerate() {
        tmux(&["send-keys", "-t", &session, "-l", line]);
        tmux(&["send-keys", "-t", &session, "Enter"]);
        if line.ends_with('&') {
            // The demo prints `ready PATH` once it serves (the first run compiles it).
            ok &= wait_for("ready /tmp/kubectl-mesh-demo.kubeconfig", 900);
        } else {
            // The typed probe never contains its own answer: 1000 + n is computed by the shell.
            let probe = format!("echo \"== line $(( {n} + 1000 )) exit $?\"");
            tmux(&["send-keys", "-t", &session, "-l", &probe]);
            tmux(&["send-keys", "-t", &session, "Enter"]);
            let mark = format!("== line {} exit ", n + 1000);
            ok &= wait_for(&mark, 60);
            if !screen().contains(&format!("{mark}0")) {
                failed = Some(line.clone());
                ok = false;
            }
        }
        if !ok {
            break;
        }
    }
    tmux(&["send-keys", "-t", &session, "-l", "jobs"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    let text = screen();
    tmux(&["send-keys", "-t", &session, "-l", "kill %1"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["kill-session", "-t", &session]);
    assert!(
        ok,
        "the quick start did not get through (failed: {failed:?}):\n{text}"
    );
    assert!(
        !text.contains("Stopped"),
        "the shell stopped the server:\n{text}"
    );
    assert!(
        text.contains("Running"),
        "the server is not running as a job:\n{text}"
    );
    assert!(
        text.contains("export KUBECONFIG=/tmp/kubectl-mesh-demo.kubeconfig"),
        "{text}"
    );
    for want in [
        "serviceentry.networking.istio.io/mesh-expansion-productcatalogservice created",
        "kind: ServiceEntry",
        "workloadgroup.networking.istio.io/productcatalog",
        "/tmp/productcatalog-vm/istio-token written",
        "productcatalogservice-gke.default.global   240.0.0.",
        "cluster2   productcatalogservice-gke                  0        20",
        "cluster1   productcatalog-migration   http/0   productcatalogservice-gke.default.global   20       0",
        "cluster1   productcatalogservice-gke.default.global   20       0",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
}
