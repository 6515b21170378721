//! Exit codes and the one-line error report every plugin prints.

use std::io::{self, Write};
use std::process::ExitCode;

/// Errors the user can act on, each mapped to its own exit code.
///
/// Everything else (API and runtime failures) travels as a plain `anyhow::Error` and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Invalid usage or input, found before any API call (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A check ran and found problems (exit 3).
    #[error("{0}")]
    Check(String),
    /// Some clusters were changed and others were not (exit 4).
    #[error("{0}")]
    Partial(String),
    /// A metric check failed during a progressive walk, which was rolled back (exit 5).
    #[error("{0}")]
    Gate(String),
}

/// Shorthand for a usage error that names the argument at fault and what is accepted.
pub fn usage(arg: &str, msg: impl std::fmt::Display) -> anyhow::Error {
    MeshError::Usage(format!("{arg}: {msg}")).into()
}

/// Exit code for success or nothing to do.
pub const EXIT_OK: u8 = 0;
/// Exit code for an API or runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for invalid usage or input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a check that found problems.
pub const EXIT_CHECK: u8 = 3;
/// Exit code for a partial failure across several clusters.
pub const EXIT_PARTIAL: u8 = 4;
/// Exit code for a metric check that failed during a walk (every cluster put back).
pub const EXIT_GATE: u8 = 5;

/// The exit code an error maps to.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        return EXIT_OK;
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<MeshError>() {
            return match e {
                MeshError::Usage(_) => EXIT_USAGE,
                MeshError::Check(_) => EXIT_CHECK,
                MeshError::Partial(_) => EXIT_PARTIAL,
                MeshError::Gate(_) => EXIT_GATE,
            };
        }
        if let Some(e) = cause.downcast_ref::<crate::api::ApiError>() {
            return e.kind.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<clap::Error>() {
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    }
    EXIT_FAILURE
}

/// A closed stdout (`| head`) is not an error worth reporting.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The single `error: ...` line for an error: the whole context chain, newlines folded.
pub fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let mut line = String::with_capacity(text.len());
    for (i, part) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(part);
    }
    line
}

/// Turns the outcome of a command into the process exit code, printing one `error:` line.
pub fn report(result: anyhow::Result<()>, stderr: &mut dyn Write) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            let code = exit_code(&err);
            if code != EXIT_OK {
                let _ = writeln!(stderr, "error: {}", one_line(&err));
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn codes_follow_the_error_kind() {
        assert_eq!(exit_code(&usage("--port", "bad")), 2);
        assert_eq!(exit_code(&MeshError::Check("x".into()).into()), 3);
        assert_eq!(exit_code(&MeshError::Partial("x".into()).into()), 4);
        assert_eq!(exit_code(&MeshError::Gate("x".into()).into()), 5);
        assert_eq!(exit_code(&anyhow::anyhow!("api down")), 1);
    }

    #[test]
    fn context_does_not_hide_the_kind() {
        let err = Err::<(), _>(usage("WEIGHTS", "must add up to 100"))
            .context("reading weights")
            .unwrap_err();
        assert_eq!(exit_code(&err), 2);
    }

    #[test]
    fn broken_pipe_is_quiet_success() {
        let err: anyhow::Error = io::Error::new(io::ErrorKind::BrokenPipe, "closed").into();
        assert_eq!(exit_code(&err), 0);
        let mut buf = Vec::new();
        let _ = report(Err(err), &mut buf);
        assert!(buf.is_empty());
    }

    #[test]
    fn report_prints_one_line() {
        let err = anyhow::anyhow!("line one\nline two").context("applying Service default/x");
        let mut buf = Vec::new();
        let code = report(Err(err), &mut buf);
        assert_eq!(code, ExitCode::from(1));
        let text = String::from_utf8(buf).unwrap_or_default();
        assert_eq!(
            text,
            "error: applying Service default/x: line one line two\n"
        );
    }
}
