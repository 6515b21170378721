//! The output directory of the VM files: mode 0700, files 0600, never through a symlink, and
//! written all at once (temporary files, then renames, the old files kept aside until all are in
//! place) so a failure leaves the old set or the new one, never a mix.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::error::usage;

/// The five files, in the order istioctl writes them.
pub const FILES: [&str; 5] = [
    "mesh.yaml",
    "cluster.env",
    "root-cert.pem",
    "istio-token",
    "hosts",
];
/// Mode of every file (the token is a credential).
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directory.
pub const DIR_MODE: u32 = 0o700;
const TEMP_PREFIX: &str = ".kubectl-mesh-";

/// What is in the directory before writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Whether it exists already.
    pub exists: bool,
    /// Entries that are not ours (sorted).
    pub foreign: Vec<String>,
}

/// Checks `--out-dir` before anything else happens: it must be a real directory (or absent),
/// and hold nothing but the five files unless `force`.
pub fn check(dir: &Path, force: bool) -> Result<State> {
    let flag = "--out-dir";
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(State {
                exists: false,
                foreign: Vec::new(),
            })
        }
        Err(e) => return Err(usage(flag, format!("cannot read {}: {e}", dir.display()))),
    };
    if meta.file_type().is_symlink() {
        return Err(usage(
            flag,
            format!(
                "{} is a symbolic link: give the real directory",
                dir.display()
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(usage(
            flag,
            format!("{} exists and is not a directory", dir.display()),
        ));
    }
    let mut foreign = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if FILES.contains(&name.as_str()) {
            if entry.file_type()?.is_symlink() {
                return Err(usage(
                    flag,
                    format!(
                        "{} is a symbolic link: refusing to write through it",
                        dir.join(&name).display()
                    ),
                ));
            }
        } else if !name.starts_with(TEMP_PREFIX) {
            foreign.push(name);
        }
    }
    foreign.sort();
    if !foreign.is_empty() && !force {
        let shown: Vec<&str> = foreign.iter().take(3).map(String::as_str).collect();
        let more = if foreign.len() > 3 { ", ..." } else { "" };
        return Err(usage(
            flag,
            format!(
                "{} holds other files ({}{more}): give an empty or new directory, or pass --force",
                dir.display(),
                shown.join(", ")
            ),
        ));
    }
    Ok(State {
        exists: true,
        foreign,
    })
}

/// Creates the directory 0700 when missing; tightens it to 0700 when it holds only our files.
/// Returns a warning when a shared directory (`--force`) stays readable by others.
pub fn prepare(dir: &Path, state: &State) -> Result<Option<String>> {
    if !state.exists {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode == DIR_MODE {
        return Ok(None);
    }
    if state.foreign.is_empty() {
        fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
            .with_context(|| format!("setting mode 0700 on {}", dir.display()))?;
        return Ok(None);
    }
    Ok(Some(format!(
        "{} has mode {mode:04o} and holds other files, so it was left as it is: the token in it may be readable by others",
        dir.display()
    )))
}

/// Writes the files into `dir` all at once: every file goes to a temporary file first (created
/// exclusively, so never through a symlink), and only when all are written are they renamed
/// over the targets. A target that is a symlink or not a regular file is refused.
///
/// Five renames are not one atomic step, and the directory cannot be swapped whole because
/// `--force` lets it hold the user's own files. So each old file is first hard-linked aside, and
/// a rename that fails puts back every file already replaced: the set is all old or all new.
/// Temporary files that a killed run left behind (a token among them) are removed first.
pub fn write_all(dir: &Path, files: &[(&str, &[u8])]) -> Result<Vec<PathBuf>> {
    write_all_with(dir, files, |from, to| fs::rename(from, to))
}

/// A file this run put aside or wrote, removed when the run ends whatever happens.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

fn write_all_with(
    dir: &Path,
    files: &[(&str, &[u8])],
    mut rename: impl FnMut(&Path, &Path) -> std::io::Result<()>,
) -> Result<Vec<PathBuf>> {
    let had_old = files
        .iter()
        .map(|(name, _)| existing(&dir.join(name)))
        .collect::<Result<Vec<bool>>>()?;
    remove_stale_temps(dir);
    let mut scratch = Scratch(Vec::new());
    let mut plan: Vec<Staged> = Vec::new();
    for ((name, data), had) in files.iter().zip(had_old) {
        plan.push(stage(dir, name, data, had, &mut scratch)?);
    }
    for (i, s) in plan.iter().enumerate() {
        if let Err(e) = rename(&s.temp, &s.target) {
            return Err(anyhow::anyhow!(
                "renaming into {}: {e}; nothing was replaced: {}",
                s.target.display(),
                put_back(&plan[..i])
            ));
        }
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(plan.into_iter().map(|s| s.target).collect())
}

/// Whether a file is already at `target`; refuses a symbolic link or anything but a regular
/// file there, which a rename would replace or write through.
fn existing(target: &Path) -> Result<bool> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => Err(usage(
            "--out-dir",
            format!(
                "{} is a symbolic link: refusing to write through it",
                target.display()
            ),
        )),
        Ok(m) if !m.is_file() => Err(usage(
            "--out-dir",
            format!("{} exists and is not a regular file", target.display()),
        )),
        Ok(_) => Ok(true),
        Err(_) => Ok(false),
    }
}

/// One file written beside its target, waiting for the rename: the new content in `temp`, and
/// a hard link to the old file in `old` to put back if a later rename fails.
struct Staged {
    temp: PathBuf,
    target: PathBuf,
    old: Option<PathBuf>,
}

/// Writes `data` to a temporary file of mode 0600 beside `name` (synced before any rename) and
/// keeps the old file aside when there is one; both are removed by `scratch` at the end.
fn stage(dir: &Path, name: &str, data: &[u8], had: bool, scratch: &mut Scratch) -> Result<Staged> {
    let pid = std::process::id();
    let temp = dir.join(format!("{TEMP_PREFIX}{name}.{pid}"));
    let _ = fs::remove_file(&temp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    scratch.0.push(temp.clone());
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    let target = dir.join(name);
    let old = if had {
        let old = dir.join(format!("{TEMP_PREFIX}old-{name}.{pid}"));
        let _ = fs::remove_file(&old);
        fs::hard_link(&target, &old)
            .with_context(|| format!("keeping the old {} aside", target.display()))?;
        scratch.0.push(old.clone());
        Some(old)
    } else {
        None
    };
    Ok(Staged { temp, target, old })
}

/// After a failed rename, puts the files already renamed back as they were, last first; what
/// the error says of them.
fn put_back(renamed: &[Staged]) -> String {
    let mut unrestored = Vec::new();
    for s in renamed.iter().rev() {
        let back = match &s.old {
            Some(old) => fs::rename(old, &s.target),
            None => fs::remove_file(&s.target),
        };
        if back.is_err() {
            unrestored.push(s.target.display().to_string());
        }
    }
    if unrestored.is_empty() {
        "the old files are in place".to_string()
    } else {
        format!(
            "these could not be put back and hold the new version: {}",
            unrestored.join(", ")
        )
    }
}

/// Removes temporary files whose run is over: their name ends in the process ID that wrote
/// them, and a run still alive (another `files` at the same time) keeps its own.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let alive = rest
            .rsplit_once('.')
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn creates_private_files_in_a_private_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/vm");
        let state = check(&dir, false).expect("check");
        assert!(!state.exists);
        assert_eq!(prepare(&dir, &state).expect("prepare"), None);
        let written = write_all(&dir, &[("hosts", b"x\n"), ("istio-token", b"t")]).expect("write");
        assert_eq!(written.len(), 2);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("istio-token")), 0o600);
        assert_eq!(fs::read(dir.join("hosts")).expect("read"), b"x\n");
        let names: Vec<String> = fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
        // Re-running over our own files is fine.
        assert!(check(&dir, false).expect("recheck").foreign.is_empty());
    }

    #[test]
    fn refuses_other_files_unless_forced() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("notes.txt"), "x").expect("write");
        let err = check(tmp.path(), false).expect_err("foreign");
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("notes.txt"), "{err}");
        let state = check(tmp.path(), true).expect("forced");
        assert_eq!(state.foreign, vec!["notes.txt".to_string()]);
    }

    #[test]
    fn refuses_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("out");
        fs::create_dir(&dir).expect("mkdir");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "keep").expect("write");
        std::os::unix::fs::symlink(&victim, dir.join("istio-token")).expect("symlink");
        let err = write_all(&dir, &[("istio-token", b"t")]).expect_err("symlink");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "keep");
        std::os::unix::fs::symlink(&dir, tmp.path().join("link")).expect("symlink");
        assert!(check(&tmp.path().join("link"), true).is_err());
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_rename_puts_every_old_file_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        for name in ["mesh.yaml", "cluster.env", "istio-token"] {
            fs::write(dir.join(name), format!("old {name}")).expect("write");
        }
        let new: [(&str, &[u8]); 4] = [
            ("mesh.yaml", b"new"),
            ("cluster.env", b"new"),
            ("hosts", b"new"),
            ("istio-token", b"new"),
        ];
        // The fourth rename fails, after three files (one of them new) are in place.
        let mut calls = 0;
        let err = write_all_with(dir, &new, |from, to| {
            calls += 1;
            if calls == 4 {
                return Err(std::io::Error::other("disk full"));
            }
            fs::rename(from, to)
        })
        .expect_err("fails");
        assert!(
            err.to_string().contains("the old files are in place"),
            "{err}"
        );
        for name in ["mesh.yaml", "cluster.env", "istio-token"] {
            let got = fs::read_to_string(dir.join(name)).expect("read");
            assert_eq!(got, format!("old {name}"));
        }
        assert_eq!(
            listing(dir),
            ["cluster.env", "istio-token", "mesh.yaml"],
            "no new file, no temporary file or token copy left"
        );
        write_all(dir, &new).expect("then it works");
        assert_eq!(fs::read_to_string(dir.join("hosts")).expect("read"), "new");
        assert_eq!(listing(dir).len(), 4);
    }

    #[test]
    fn temp_files_of_dead_runs_are_removed_and_live_ones_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // No process has an ID this large (pid_max is at most 2^22).
        let dead = format!("{TEMP_PREFIX}istio-token.{}", 1u32 << 30);
        let live = format!("{TEMP_PREFIX}istio-token.{}", std::process::id());
        fs::write(dir.join(&dead), "secret").expect("write");
        fs::write(dir.join(&live), "secret").expect("write");
        write_all(dir, &[("hosts", b"h")]).expect("write");
        assert_eq!(listing(dir), vec![live, "hosts".to_string()]);
    }
}
