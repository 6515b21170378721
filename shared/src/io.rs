//! Where a command writes: data to stdout, messages to stderr, and whether it may prompt.

use std::cell::RefCell;
use std::io::{self, IsTerminal, Write};
use std::rc::Rc;

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

    /// Streams kept in memory, for work done for several contexts at once: each context writes
    /// its own, and the caller replays them in the order of `--context` ([`Held::replay`]), so
    /// the output is the same as when the contexts were worked on one after another.
    pub fn held(terminal: bool) -> (Self, Held) {
        let held = Held::default();
        let io = Self {
            out: Box::new(Shared(held.out.clone())),
            err: Box::new(Shared(held.err.clone())),
            terminal,
        };
        (io, held)
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

/// What an [`Io::held`] was given.
#[derive(Default)]
pub struct Held {
    out: Rc<RefCell<Vec<u8>>>,
    err: Rc<RefCell<Vec<u8>>>,
}

impl Held {
    /// Writes what was held to `io`: stdout's share to stdout, stderr's to stderr.
    pub fn replay(self, io: &mut Io) -> io::Result<()> {
        io.out.write_all(&self.out.borrow())?;
        io.err.write_all(&self.err.borrow())
    }
}

/// One of a [`Held`]'s buffers, as a stream.
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_streams_replay_in_the_order_asked() {
        let (mut a, held_a) = Io::held(false);
        let (mut b, held_b) = Io::held(false);
        b.warn("from b").expect("write");
        a.note("from a").expect("write");
        writeln!(a.out, "data a").expect("write");
        drop((a, b));
        let (mut io, all) = Io::held(false);
        held_a.replay(&mut io).expect("replay");
        held_b.replay(&mut io).expect("replay");
        assert_eq!(*all.err.borrow(), b"from a\nWarning: from b\n".to_vec());
        assert_eq!(*all.out.borrow(), b"data a\n".to_vec());
    }
}
