//! The `kubectl_complete-mesh_*` helpers: kubectl (1.26+) runs `kubectl_complete-<plugin>` to
//! complete a plugin's arguments. Each helper is a tiny std-only binary that hands the words to
//! the plugin's hidden `__complete` mode, so the real work (and the live lookups) lives in one place.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Runs `<plugin binary> __complete ARGS...`, preferring the binary installed beside this helper.
pub fn run(plugin_bin: &str) -> ExitCode {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(plugin_bin)))
        .filter(|p| p.exists());
    let program = beside.unwrap_or_else(|| PathBuf::from(plugin_bin));
    let mut cmd = Command::new(program);
    cmd.arg("__complete").args(std::env::args_os().skip(1));
    exec(cmd)
}

#[cfg(unix)]
fn exec(mut cmd: Command) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let _ = cmd.exec();
    // exec returns only on failure: offer nothing rather than an error in the completion.
    println!(":4");
    ExitCode::SUCCESS
}

#[cfg(not(unix))]
fn exec(mut cmd: Command) -> ExitCode {
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => {
            println!(":4");
            ExitCode::SUCCESS
        }
    }
}
