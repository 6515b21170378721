//! Installing through krew, with the real krew (`target/realcluster/bin/kubectl-krew`, built from
//! `sigs.k8s.io/krew` by `tests/realcluster/build`) and the real kubectl: `dist/build`'s archive
//! and manifests install, run, complete and uninstall the way the README and the manifests'
//! caveats say. No cluster is needed; it runs with the real tier's tools (`MESH_TIERS=emu` skips it).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{realcluster_bin, Run, Tier};
use serde_yaml::Value;

const PLUGINS: [&str; 4] = ["register", "vm", "link", "split"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn archive_name() -> String {
    format!("kubectl-mesh-{}-linux-amd64", env!("CARGO_PKG_VERSION"))
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Runs `dist/build` and returns the archive's sha256; panics with its stderr on failure.
///
/// The variables cargo sets for a test run are taken out first: build scripts track some of them
/// (ring's tracks CARGO_MANIFEST_DIR), and the release build would otherwise be redone here and
/// again by the next `cargo build --release` from a shell.
fn dist_build() -> String {
    let mut cmd = Command::new("bash");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo_test = key == "CARGO"
            || key == "OUT_DIR"
            || key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_MANIFEST_PATH"
            || key == "CARGO_CRATE_NAME"
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_TARGET_TMPDIR"
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_");
        if set_by_cargo_test {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd
        .arg(repo().join("dist/build"))
        .stdin(Stdio::null())
        .output()
        .expect("run dist/build");
    assert!(
        out.status.success(),
        "dist/build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256(&archive())
}

fn archive() -> PathBuf {
    repo()
        .join("target/dist")
        .join(format!("{}.tar.gz", archive_name()))
}

fn manifest(plugin: &str) -> PathBuf {
    repo()
        .join("target/dist/krew")
        .join(format!("mesh-{plugin}.yaml"))
}

/// A private krew root and HOME, and a PATH on which the only kubectl-mesh executables are the
/// ones krew links (directories that hold other builds of them are left out).
struct Krew {
    dir: tempfile::TempDir,
    path: OsString,
}

impl Krew {
    fn new() -> Krew {
        let dir = tempfile::Builder::new()
            .prefix("mesh-krew-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        let krew_bin = dir.path().join("krew/bin");
        let tools = realcluster_bin("kubectl-krew");
        assert!(
            tools.exists(),
            "{} is missing: run tests/realcluster/build (needs Go 1.26 and the Go module proxy)",
            tools.display()
        );
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![krew_bin, tools.parent().expect("bin dir").to_path_buf()];
        paths.extend(std::env::split_paths(&inherited).filter(|d| !holds_mesh(d)));
        let path = std::env::join_paths(paths).expect("PATH");
        Krew { dir, path }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("krew")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null())
            .env("PATH", &self.path)
            .env("HOME", self.dir.path().join("home"))
            .env("KREW_ROOT", self.root())
            // An unstamped krew never checks for upgrades anyway; this says so twice.
            .env("KREW_NO_UPGRADE_CHECK", "1")
            .env_remove("KUBECONFIG");
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Run {
        self.command("kubectl")
            .args(args)
            .output()
            .expect("run kubectl")
            .into()
    }

    /// Runs a line of shell, as a user pastes it from the docs.
    fn sh(&self, line: &str) -> Run {
        self.command("sh")
            .arg("-c")
            .arg(line)
            .output()
            .expect("run sh")
            .into()
    }

    fn bin_entries(&self) -> BTreeSet<String> {
        names(&self.root().join("bin"))
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn holds_mesh(dir: &Path) -> bool {
    PLUGINS.iter().any(|p| {
        dir.join(format!("kubectl-mesh_{p}")).exists()
            || dir.join(format!("kubectl_complete-mesh_{p}")).exists()
    })
}

/// `kubectl __complete mesh-PLUGIN WORDS...`: the candidate values and the directive line.
fn complete(krew: &Krew, plugin: &str, words: &[&str]) -> (Vec<String>, String) {
    let mut args = vec!["__complete".to_string(), format!("mesh-{plugin}")];
    args.extend(words.iter().map(|w| w.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = krew.kubectl(&refs).ok();
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

/// The shell lines of a manifest's caveats (indented, the way krew prints them).
fn caveat_commands(manifest: &Value) -> Vec<String> {
    manifest["spec"]["caveats"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect()
}

fn tar_listing() -> Vec<String> {
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(archive())
        .output()
        .expect("tar");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn dist_archive_installs_completes_and_uninstalls_through_krew() {
    if !Tier::Real.enabled() {
        eprintln!("skipped: MESH_TIERS leaves out the real tools (kubectl-krew)");
        return;
    }
    // The archive: every plugin, its helper, LICENSE and README, owned by 0 with one mtime, and
    // the same bytes when built again from the same binaries.
    let sha = dist_build();
    assert_eq!(dist_build(), sha, "a second dist/build changed the archive");
    let listing = tar_listing();
    let dir = archive_name();
    let mut expected: BTreeSet<String> = ["LICENSE", "README.md"]
        .iter()
        .map(|f| format!("{dir}/{f}"))
        .collect();
    for p in PLUGINS {
        expected.insert(format!("{dir}/kubectl-mesh_{p}"));
        expected.insert(format!("{dir}/kubectl_complete-mesh_{p}"));
    }
    let files: BTreeSet<String> = listing
        .iter()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect();
    assert_eq!(files, expected, "{listing:#?}");
    for line in &listing {
        assert!(line.contains(" 0/0 "), "not owned by 0/0: {line}");
        assert!(line.contains("1980-01-01"), "not the fixed mtime: {line}");
        if line.contains("/kubectl") {
            assert!(line.starts_with("-rwxr-xr-x"), "{line}");
        }
    }

    // The manifests: the shape krew's validation wants, and the archive's sha256.
    let mut manifests = Vec::new();
    for p in PLUGINS {
        let text = std::fs::read_to_string(manifest(p)).expect("manifest");
        let m: Value = serde_yaml::from_str(&text).expect("manifest yaml");
        assert_eq!(
            m["apiVersion"],
            "krew.googlecontainertools.github.com/v1alpha2"
        );
        assert_eq!(m["kind"], "Plugin");
        assert_eq!(m["metadata"]["name"], format!("mesh-{p}").as_str());
        assert_eq!(
            m["spec"]["version"],
            format!("v{}", env!("CARGO_PKG_VERSION")).as_str()
        );
        let platform = &m["spec"]["platforms"][0];
        assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
        assert_eq!(platform["selector"]["matchLabels"]["arch"], "amd64");
        assert_eq!(platform["sha256"], sha.as_str(), "mesh-{p}");
        assert_eq!(platform["bin"], format!("kubectl-mesh_{p}").as_str());
        assert!(
            platform["uri"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("/{dir}.tar.gz"))),
            "{text}"
        );
        manifests.push(m);
    }

    // 1. krew installs each plugin from its manifest and the local archive.
    let krew = Krew::new();
    for (p, m) in PLUGINS.iter().zip(&manifests) {
        let run = krew
            .kubectl(&[
                "krew",
                "install",
                &format!("--manifest={}", manifest(p).display()),
                &format!("--archive={}", archive().display()),
            ])
            .ok();
        assert!(
            run.stderr.contains(&format!("Installed plugin: mesh-{p}")),
            "{}",
            run.stderr
        );
        // krew shows the caveats, which say how to link completion.
        for line in caveat_commands(m) {
            assert!(
                run.stderr.contains(&line),
                "{line:?} not in:\n{}",
                run.stderr
            );
        }
    }
    // (`kubectl krew list` wants the default index, a git clone this machine cannot make; the
    // receipts are what it lists.)
    let receipts: BTreeSet<String> = PLUGINS.iter().map(|p| format!("mesh-{p}.yaml")).collect();
    assert_eq!(names(&krew.root().join("receipts")), receipts);

    // 2. Through krew's bin: help works, and kubectl lists the four with no warning.
    let bin = krew.root().join("bin");
    for p in PLUGINS {
        let run = krew.kubectl(&[&format!("mesh-{p}"), "--help"]).ok();
        assert!(
            run.stdout.contains(&format!("kubectl mesh-{p}")),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains(&format!("kubectl mesh-{p} completion")),
            "help names the completion command: {}",
            run.stdout
        );
    }
    let list = krew.kubectl(&["plugin", "list"]).ok();
    let all = format!("{}{}", list.stdout, list.stderr);
    assert!(!all.to_lowercase().contains("warning"), "{all}");
    for p in PLUGINS {
        let linked = bin.join(format!("kubectl-mesh_{p}"));
        assert!(
            list.stdout.lines().any(|l| l == linked.to_string_lossy()),
            "{all}"
        );
    }

    // 3. Completion: nothing before the documented link, candidates after it.
    let (values, _) = complete(&krew, "register", &["--kubec"]);
    assert!(values.is_empty(), "completed before the link: {values:?}");
    for (p, m) in PLUGINS.iter().zip(&manifests) {
        let printed = krew.kubectl(&[&format!("mesh-{p}"), "completion"]).ok();
        assert_eq!(printed.stdout.lines().count(), 1, "{}", printed.stdout);
        let link_cmd = caveat_commands(m)
            .into_iter()
            .find(|l| l.contains("completion"))
            .expect("a completion line in the caveats");
        krew.sh(&link_cmd).ok();
        let link = bin.join(format!("kubectl_complete-mesh_{p}"));
        assert_eq!(
            std::fs::read_link(&link).expect("completion link"),
            PathBuf::from(format!("kubectl-mesh_{p}"))
        );
        let (values, directive) = complete(&krew, p, &["--kubec"]);
        assert_eq!(values, vec!["--kubeconfig"], "mesh-{p}");
        assert_eq!(directive, ":4", "mesh-{p}");
    }
    let (values, _) = complete(&krew, "vm", &[""]);
    for sub in ["group", "files", "refresh", "status"] {
        assert!(values.contains(&sub.to_string()), "{values:?}");
    }
    let (values, directive) = complete(&krew, "split", &["productcatalogservice", ""]);
    assert_eq!(
        values,
        vec!["100/0", "90/10", "80/20", "50/50", "20/80", "0/100"]
    );
    assert_eq!(directive, ":36");
    // The completion links are not plugins: kubectl still lists four, with no warning.
    let list = krew.kubectl(&["plugin", "list"]).ok();
    assert!(
        !format!("{}{}", list.stdout, list.stderr)
            .to_lowercase()
            .contains("warning"),
        "{list:?}"
    );
    assert_eq!(
        list.stdout
            .lines()
            .filter(|l| l.contains("kubectl-mesh_"))
            .count(),
        4,
        "{}",
        list.stdout
    );

    // 4. Uninstall, then the caveats' rm: nothing of ours is left in the krew root.
    // krew uninstalls only with a plugin index in place (a user always has the default one, a
    // git clone this machine cannot make), so add a local one: a git repository of the manifests,
    // as a custom index for these plugins would be.
    let index = krew.dir.path().join("index-src");
    std::fs::create_dir_all(index.join("plugins")).expect("index dir");
    for p in PLUGINS {
        std::fs::copy(
            manifest(p),
            index.join("plugins").join(format!("mesh-{p}.yaml")),
        )
        .expect("copy manifest");
    }
    for args in [
        &["init", "-q"][..],
        &["add", "plugins"],
        &[
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
            "commit",
            "-qm",
            "index",
        ],
    ] {
        let out = krew
            .command("git")
            .current_dir(&index)
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }
    krew.kubectl(&["krew", "index", "add", "mesh", &index.to_string_lossy()])
        .ok();
    let listed = krew.kubectl(&["krew", "list"]).ok();
    for p in PLUGINS {
        assert!(
            listed.stdout.contains(&format!("mesh-{p}")),
            "{}",
            listed.stdout
        );
    }
    let mut args = vec!["krew".to_string(), "uninstall".to_string()];
    args.extend(PLUGINS.iter().map(|p| format!("mesh-{p}")));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    krew.kubectl(&refs).ok();
    let left: BTreeSet<String> = PLUGINS
        .iter()
        .map(|p| format!("kubectl_complete-mesh_{p}"))
        .collect();
    assert_eq!(
        krew.bin_entries(),
        left,
        "krew removes its links, the completion links stay until removed"
    );
    for m in &manifests {
        let rm = caveat_commands(m)
            .into_iter()
            .find(|l| l.starts_with("rm "))
            .expect("an rm line in the caveats");
        krew.sh(&rm).ok();
    }
    assert!(krew.bin_entries().is_empty(), "{:?}", krew.bin_entries());
    assert!(names(&krew.root().join("store")).is_empty());
    assert!(names(&krew.root().join("receipts")).is_empty());
    let list = krew.kubectl(&["plugin", "list"]);
    assert!(!list.stdout.contains("kubectl-mesh_"), "{list:?}");
    let run = krew.kubectl(&["mesh-register", "--help"]);
    assert_ne!(run.code, 0, "mesh-register still runs after uninstall");
}
