//! The output directory of the VM files: mode 0700, files 0600, never through a symlink, and
//! written all at once (temporary files, then renames) so a failure leaves no partial set.

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
pub fn write_all(dir: &Path, files: &[(&str, &[u8])]) -> Result<Vec<PathBuf>> {
    for (name, _) in files {
        let target = dir.join(name);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(usage(
                    "--out-dir",
                    format!(
                        "{} is a symbolic link: refusing to write through it",
                        target.display()
                    ),
                ))
            }
            Ok(m) if !m.is_file() => {
                return Err(usage(
                    "--out-dir",
                    format!("{} exists and is not a regular file", target.display()),
                ))
            }
            _ => {}
        }
    }
    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<()> {
        for (name, data) in files {
            let temp = dir.join(format!("{TEMP_PREFIX}{name}.{}", std::process::id()));
            let _ = fs::remove_file(&temp);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&temp)
                .with_context(|| format!("creating {}", temp.display()))?;
            temps.push((temp.clone(), dir.join(name)));
            f.set_permissions(Permissions::from_mode(FILE_MODE))?;
            f.write_all(data)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", temp.display()))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (temp, _) in &temps {
            let _ = fs::remove_file(temp);
        }
        return Err(e);
    }
    let mut written = Vec::new();
    for (temp, target) in &temps {
        fs::rename(temp, target).with_context(|| format!("renaming into {}", target.display()))?;
        written.push(target.clone());
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(written)
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
}
