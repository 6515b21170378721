//! When the plugins may ask questions, and a seam so tests can answer them.

use anyhow::Result;

use crate::error::usage;

/// Asks the user to choose; implemented by dialoguer on a terminal and by scripts in tests.
pub trait Prompter {
    /// Picks one of `items`; returns its index.
    fn select(&mut self, question: &str, items: &[String]) -> Result<usize>;
    /// Asks a yes/no question.
    fn confirm(&mut self, question: &str) -> Result<bool>;
}

/// The terminal prompter, on stderr.
pub struct Terminal;

impl Prompter for Terminal {
    fn select(&mut self, question: &str, items: &[String]) -> Result<usize> {
        Ok(dialoguer::Select::new()
            .with_prompt(question)
            .items(items)
            .default(0)
            .interact()?)
    }

    fn confirm(&mut self, question: &str) -> Result<bool> {
        Ok(dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()?)
    }
}

/// Whether a prompt may be shown: both stdin and stderr are terminals and `--yes` is absent.
/// Otherwise the caller must fail with [`needs_flag`].
pub fn may_prompt(terminal: bool, yes: bool) -> bool {
    terminal && !yes
}

/// The error when a question cannot be asked: names the flag that answers it.
pub fn needs_flag(flag: &str, question: &str) -> anyhow::Error {
    usage(
        flag,
        format!("{question}, and there is no terminal to ask on: pass {flag}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_only_on_a_terminal_without_yes() {
        assert!(may_prompt(true, false));
        assert!(!may_prompt(true, true));
        assert!(!may_prompt(false, false));
        let e = needs_flag("--route", "several routes have two or more destinations");
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().starts_with("--route: "));
    }
}
