//! The frame every plugin's `main` uses: parse arguments, run on a small runtime, report.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;

use clap::{error::ErrorKind, Parser};

use crate::error::{self, EXIT_USAGE};
use crate::io::Io;

/// Parses the command line. Help and version print and exit 0; a usage error prints one
/// `error:` line and exits 2.
///
/// Hidden entry points come first, so completion never pays for a full parse:
/// - called by the name `kubectl_complete-mesh_<verb>` (a symlink to the plugin, which is how a
///   krew install gets completion: krew links only the plugin itself), the binary is its own
///   completion helper and answers for the words it was given;
/// - `__complete WORDS...` answers in cobra's format (what `kubectl_complete-mesh_*` calls);
/// - `completion`, alone, prints the one-line command that makes that symlink in krew's `bin`;
/// - `COMPLETE=bash|zsh|fish` prints the standalone shell script.
pub fn parse<A: Parser>() -> Result<A, ExitCode> {
    let cmd = kubectl_shorts(A::command());
    let plugin = cmd
        .get_name()
        .trim_start_matches("kubectl mesh-")
        .to_string();
    let bin = format!("kubectl-mesh_{plugin}");
    // Non-UTF-8 words cannot name anything completion offers; lossy keeps them from panicking.
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if argv.first().is_some_and(|a0| called_as_helper(a0, &plugin)) {
        return Err(complete_words(&plugin, &cmd, &argv[1..]));
    }
    if let Some(shell) = std::env::var_os("COMPLETE").filter(|s| !s.is_empty()) {
        let shell = shell.to_string_lossy().to_string();
        return Err(match crate::complete::script(&shell, &bin) {
            Some(text) => {
                let _ = std::io::stdout().write_all(text.as_bytes());
                ExitCode::SUCCESS
            }
            None => {
                let _ = writeln!(
                    std::io::stderr(),
                    "error: COMPLETE: unknown shell {shell:?} (bash, zsh or fish)"
                );
                ExitCode::from(EXIT_USAGE)
            }
        });
    }
    match argv.get(1).map(String::as_str) {
        Some("__complete") => return Err(complete_words(&plugin, &cmd, &argv[2..])),
        // Alone only: with more words, `completion` is a SERVICE or TARGET like any other name.
        // Alone it never was a working command (each plugin needs more, or refuses it), so
        // taking it over changes no run that used to succeed.
        Some("completion") if argv.len() == 2 => {
            let _ = writeln!(
                std::io::stderr(),
                "# For `kubectl mesh-{plugin} <TAB>` after a krew install, run this once (or pipe it into sh); rm the link after uninstalling:"
            );
            let _ = writeln!(std::io::stdout(), "{}", krew_link_command(&plugin));
            return Err(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let note = format!(
        "Completion after a krew install: `kubectl mesh-{plugin} completion` prints the command that links {}.",
        helper_name(&plugin)
    );
    let after = match cmd.get_after_help() {
        Some(text) => format!("{text}\n\n{note}"),
        None => note,
    };
    parse_with(cmd.after_help(after), std::env::args_os())
}

/// The name kubectl runs to complete `kubectl mesh-<plugin>`: `kubectl_complete-mesh_<plugin>`.
pub fn helper_name(plugin: &str) -> String {
    format!("kubectl_complete-mesh_{plugin}")
}

/// True when `argv0` (a path, as kubectl passes it) names this plugin's completion helper.
fn called_as_helper(argv0: &str, plugin: &str) -> bool {
    std::path::Path::new(argv0).file_name().is_some_and(|name| {
        let name = name.to_string_lossy();
        name.strip_suffix(".exe").unwrap_or(&name) == helper_name(plugin)
    })
}

/// The one-line shell command that makes the plugin its own completion helper in krew's `bin`.
///
/// The link is relative, to krew's own link `kubectl-mesh_<plugin>` in the same directory, so it
/// follows `kubectl krew upgrade` (which repoints krew's link at the new version) and `-f` makes
/// running it again harmless.
pub fn krew_link_command(plugin: &str) -> String {
    format!(
        "ln -sf kubectl-mesh_{plugin} \"${{KREW_ROOT:-$HOME/.krew}}/bin/{}\"",
        helper_name(plugin)
    )
}

/// Answers one completion request in cobra's format on stdout; completion never fails loudly.
fn complete_words(plugin: &str, cmd: &clap::Command, words: &[String]) -> ExitCode {
    let reply = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::complete::complete(plugin, cmd, words)),
        Err(_) => crate::complete::Reply::default(),
    };
    let _ = reply.print(&mut std::io::stdout().lock());
    ExitCode::SUCCESS
}

/// [`parse`] over given arguments.
pub fn parse_from<A: Parser, I, T>(argv: I) -> Result<A, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_with(kubectl_shorts(A::command()), argv)
}

fn parse_with<A: Parser, I, T>(cmd: clap::Command, argv: I) -> Result<A, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let parsed = cmd.try_get_matches_from(argv).and_then(|m| {
        // `-v` is global, so its value is on the top-level matches wherever it was typed.
        if let Ok(Some(level)) = m.try_get_one::<u8>("verbosity") {
            crate::verbose::set_level(*level);
        }
        A::from_arg_matches(&m)
    });
    match parsed {
        Ok(a) => Ok(a),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A bare `kubectl mesh-vm` is a usage error like any other: one line, naming the choices.
            let cmd = A::command();
            let subs: Vec<&str> = cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| s.get_name())
                .collect();
            let _ = writeln!(
                std::io::stderr(),
                "error: a subcommand is required: {} (see --help)",
                subs.join(", ")
            );
            Err(ExitCode::from(EXIT_USAGE))
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", clap_one_line(&e));
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// kubectl's `-s` for `--server`, in a plugin where no flag has `-s` already: mesh-register
/// and mesh-vm keep it for the service account, as istioctl has it, and take `--server` only.
pub fn kubectl_shorts(cmd: clap::Command) -> clap::Command {
    let has_server = cmd.get_arguments().any(|a| a.get_id() == "server");
    if has_server && !uses_short(&cmd, 's') {
        cmd.mut_arg("server", |a| a.short('s'))
    } else {
        cmd
    }
}

fn uses_short(cmd: &clap::Command, c: char) -> bool {
    cmd.get_arguments().any(|a| a.get_short() == Some(c))
        || cmd.get_subcommands().any(|s| uses_short(s, c))
}

/// clap's multi-line error folded into one line, without the usage block.
pub fn clap_one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let mut text = parts.join(" ");
    text.push_str(" (see --help)");
    text
}

/// A plugin's whole `main`: parse its arguments, run the command, map the outcome to an exit
/// code. `run` borrows the process's [`Io`] for as long as the command runs, hence the boxed
/// future: `app::main(|args, io| Box::pin(register::run(args, io)))`.
pub fn main<A, F>(run: F) -> ExitCode
where
    A: Parser,
    F: for<'io> FnOnce(A, &'io mut Io) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'io>>,
{
    let args = match parse::<A>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let mut io = Io::std();
    let result = block_on(run(args, &mut io));
    finish(result, io)
}

/// Runs a command future on a single-threaded runtime: these tools do little at once and start fast.
pub fn block_on<F: Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(fut)
}

/// Flushes stdout and maps the outcome to the exit code, printing one `error:` line on failure.
pub fn finish(result: anyhow::Result<()>, mut io: Io) -> ExitCode {
    let flushed = io.out.flush().map_err(anyhow::Error::from);
    let result = result.and(flushed);
    error::report(result, &mut io.err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    #[command(name = "kubectl mesh-test")]
    struct T {
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
    }

    #[test]
    fn the_helper_name_is_recognised_by_file_name_only() {
        assert!(called_as_helper(
            "/home/u/.krew/bin/kubectl_complete-mesh_register",
            "register"
        ));
        assert!(called_as_helper("kubectl_complete-mesh_vm", "vm"));
        assert!(!called_as_helper(
            "/home/u/.krew/bin/kubectl-mesh_register",
            "register"
        ));
        // Another plugin's helper name is not ours: its words would be completed wrongly.
        assert!(!called_as_helper(
            "/bin/kubectl_complete-mesh_split",
            "register"
        ));
        assert!(!called_as_helper(
            "/kubectl_complete-mesh_register/kubectl-mesh_register",
            "register"
        ));
    }

    #[test]
    fn the_link_command_is_one_relative_idempotent_line() {
        assert_eq!(
            krew_link_command("split"),
            r#"ln -sf kubectl-mesh_split "${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-mesh_split""#
        );
    }

    #[test]
    fn clap_errors_fold_to_one_line() {
        let err = T::try_parse_from(["x", "0"]).unwrap_err();
        let line = clap_one_line(&err);
        assert!(!line.contains('\n'));
        assert!(line.contains("<PORT>"), "{line}");
        let err = T::try_parse_from(["x"]).unwrap_err();
        let line = clap_one_line(&err);
        assert!(
            line.contains("required") && line.contains("<PORT>"),
            "{line}"
        );
    }
}
