//! The README's quick start, word for word, in a real interactive shell (bash under tmux): the
//! emulated clusters start as a background job, and the plugin and kubectl run against them.
//! Before kube-emu stopped reading a terminal, the shell stopped the job at once
//! (`Stopped (tty input)`) and the next command hung.

mod common;

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
    let screen = || tmux(&["capture-pane", "-t", &session, "-p", "-S", "-200"]);
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
    let mut ok = true;
    for line in &lines {
        tmux(&["send-keys", "-t", &session, "-l", line]);
        tmux(&["send-keys", "-t", &session, "Enter"]);
        if line.ends_with('&') {
            // The servers print `ready PATH` once they serve.
            ok &= wait_for("ready /tmp/emu.kubeconfig", 600);
        } else if line.starts_with("kubectl mesh-register") {
            ok &= wait_for("mesh-expansion-productcatalog", 30);
        } else if line.starts_with("kubectl get") {
            ok &= wait_for("kind: ServiceEntry", 30);
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
    assert!(ok, "the quick start did not get through:\n{text}");
    assert!(
        !text.contains("Stopped"),
        "the shell stopped the server:\n{text}"
    );
    assert!(
        text.contains("Running"),
        "the server is not running as a job:\n{text}"
    );
    assert!(
        text.contains("serviceentry.networking.istio.io/mesh-expansion-productcatalog"),
        "{text}"
    );
}
