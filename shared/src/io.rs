//! Where a command writes: data to stdout, messages to stderr, and whether it may prompt.

use std::io::{self, IsTerminal, Write};

/// The streams a command writes to. Library code never prints directly, so tests can capture.
pub struct Io {
    /// Data: objects, tables, result lines.
    pub out: Box<dyn Write>,
    /// Messages: warnings, progress, notes.
    pub err: Box<dyn Write>,
    /// Both stdin and stderr are terminals, so a prompt can be answered.
    pub terminal: bool,
}

impl Io {
    /// The process's own streams; stdout buffered, flushed by the caller.
    pub fn std() -> Self {
        Self {
            out: Box::new(io::BufWriter::new(io::stdout())),
            err: Box::new(io::stderr()),
            terminal: io::stdin().is_terminal() && io::stderr().is_terminal(),
        }
    }

    /// Writes a warning line to stderr, as kubectl does.
    pub fn warn(&mut self, msg: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.err, "Warning: {msg}")
    }

    /// Writes a note line to stderr.
    pub fn note(&mut self, msg: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.err, "{msg}")
    }
}
