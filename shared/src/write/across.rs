//! One write across several clusters ("contexts"), all or nothing: the caller has read and
//! validated every context; this writes the first alone, as a canary, then the rest together
//! (or each after the one before, when one needs the other's result) and, when a write fails or a signal comes, puts back every context written, prints each
//! context's state and fails with exit 4. mesh-split, mesh-register and mesh-link's remote
//! secrets all write several contexts through it.

use std::future::Future;
use std::io::Write;

use anyhow::{anyhow, Result};
use futures::stream::{self, StreamExt};

use crate::api::WriteMode;
use crate::cli::DryRun;
use crate::error::{one_line, MeshError};
use crate::interrupt::Interrupt;
use crate::table;

/// How many contexts after the first are written at once: enough that 20 clusters cost one
/// round trip, few enough that a long `--context` list does not open hundreds of connections
/// together.
const IN_FLIGHT: usize = 32;

/// A write to one context that failed.
pub struct Failed<W> {
    /// What went wrong.
    pub err: anyhow::Error,
    /// The write got no answer, so it may have landed: what it may have stored, to be put back
    /// too. `None` when it surely did not land, or the site took it back itself.
    pub in_doubt: Option<W>,
}

impl<W> From<anyhow::Error> for Failed<W> {
    fn from(err: anyhow::Error) -> Self {
        Failed {
            err,
            in_doubt: None,
        }
    }
}

/// How putting one context back went.
pub struct Restored {
    /// The context is as it was before the run (or the write never landed).
    pub complete: bool,
    /// Its state for the table: `restored to 100/0`, `NOT restored: ...`.
    pub state: String,
}

/// One context's share of a write across several.
pub trait Site {
    /// What the write did there, as needed to take it back.
    type Written;

    /// The context's name.
    fn context(&self) -> &str;

    /// How the context stands before the run, shown after `unchanged` (`100/0`); `None` (the
    /// default) when the word alone says it.
    fn before(&self) -> Option<String> {
        None
    }

    /// What the context holds when putting it back failed (`80/20`).
    fn left_at(&self) -> String;

    /// Writes this context.
    fn write(
        &self,
        mode: WriteMode,
    ) -> impl Future<Output = std::result::Result<Self::Written, Failed<Self::Written>>>;

    /// Whether the write changed nothing, so there is nothing to put back.
    fn unchanged(written: &Self::Written) -> bool;

    /// Puts the context back as it was, only while it still holds what this run wrote.
    fn put_back(
        &self,
        written: &Self::Written,
        in_doubt: bool,
    ) -> impl Future<Output = Result<Restored>>;
}

/// How a write across contexts is sent and reported.
pub struct Across<'a> {
    /// Dry run and force.
    pub mode: WriteMode,
    /// Which writes wait for which.
    pub order: Order,
    /// Caught signals: one that came stops the run before the next wave of writes.
    pub interrupt: Option<&'a Interrupt>,
    /// The command that shows the contexts as they are, for a context that could not be put
    /// back (`kubectl mesh-split status`).
    pub check_with: &'a str,
}

/// What became of one context's write.
enum Fate<W> {
    Written(W),
    Failed(Failed<W>),
    NotAttempted,
}

/// Which contexts' writes wait for which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The first alone, as a canary; then all the others together (at most [`IN_FLIGHT`] at
    /// once). N clusters cost two write round trips instead of N; the price is that a failure
    /// among the others finds the rest of them written too, so they are put back as well.
    CanaryThenTogether,
    /// Each after the one before it, for writes that need what the one before made (a remote
    /// secret carries the token its source cluster's write handed over).
    OneByOne,
}

/// Writes the sites in [`Order`]. When the first fails, or a signal has come before a wave of
/// writes, nothing later is touched. When any write fails, every site written is put back;
/// with several sites the state of each is printed on `err` and the error is a partial failure
/// (exit 4). With one site the error is the write's own.
pub async fn commit<S: Site>(
    sites: &[S],
    how: &Across<'_>,
    err: &mut dyn Write,
) -> Result<Vec<S::Written>> {
    let waves: Vec<std::ops::Range<usize>> = match how.order {
        Order::OneByOne => (0..sites.len()).map(|i| i..i + 1).collect(),
        Order::CanaryThenTogether => vec![0..sites.len().min(1), sites.len().min(1)..sites.len()],
    };
    let mut fates: Vec<Fate<S::Written>> = Vec::with_capacity(sites.len());
    // The wave the run stopped in: a context written in it went alongside the failure.
    let mut last = 0..0;
    for wave in waves.into_iter().filter(|w| !w.is_empty()) {
        last = wave.clone();
        // A signal never stops the process between two clusters: the writes in flight
        // finished, and the ones written are put back as for a failure.
        if let Some(failed) = interrupted(how, &sites[wave.start]) {
            fates.push(Fate::Failed(failed));
            break;
        }
        let written: Vec<_> = stream::iter(sites[wave].iter().map(|site| site.write(how.mode)))
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        fates.extend(written.into_iter().map(fate));
        if fates.iter().any(|f| matches!(f, Fate::Failed(_))) {
            break;
        }
    }
    fates.resize_with(sites.len(), || Fate::NotAttempted);
    if fates.iter().all(|f| matches!(f, Fate::Written(_))) {
        return Ok(fates
            .into_iter()
            .filter_map(|f| match f {
                Fate::Written(w) => Some(w),
                _ => None,
            })
            .collect());
    }
    let alongside = fates[last]
        .iter()
        .any(|f| matches!(f, Fate::Written(w) if !S::unchanged(w)));
    Err(fail(sites, fates, alongside, how, err).await)
}

fn fate<W>(r: std::result::Result<W, Failed<W>>) -> Fate<W> {
    match r {
        Ok(w) => Fate::Written(w),
        Err(f) => Fate::Failed(f),
    }
}

/// The failure that a caught signal makes of `next`'s write, which is then never sent.
fn interrupted<W, S: Site>(how: &Across<'_>, next: &S) -> Option<Failed<W>> {
    let sig = how.interrupt.and_then(Interrupt::signal)?;
    Some(Failed {
        err: anyhow!(
            "interrupted by {sig}: context {} was not written",
            next.context()
        ),
        in_doubt: None,
    })
}

/// Puts back every context written (and every write in doubt) at once, prints the state table
/// and makes the error. Only the failed contexts' own errors are kept, the first one (in
/// `--context` order) as the cause.
async fn fail<S: Site>(
    sites: &[S],
    fates: Vec<Fate<S::Written>>,
    written_alongside: bool,
    how: &Across<'_>,
    out: &mut dyn Write,
) -> anyhow::Error {
    let failed: Vec<usize> = (0..sites.len())
        .filter(|&j| matches!(fates[j], Fate::Failed(_)))
        .collect();
    let first = failed[0];
    if how.mode.dry_run != DryRun::None {
        return take_err(fates, first); // nothing was stored anywhere
    }
    let states = futures::future::join_all(
        sites
            .iter()
            .zip(&fates)
            .map(|(site, fate)| state(site, fate)),
    )
    .await;
    let err = take_err(fates, first);
    if sites.len() == 1 {
        return err; // the write's own error says it all
    }
    let restored_all = states.iter().all(|(complete, _)| *complete);
    let rows: Vec<(String, String)> = sites
        .iter()
        .zip(states)
        .map(|(site, (_, state))| (site.context().to_string(), state))
        .collect();
    let _ = out.write_all(self::states(&rows).as_bytes());
    let outcome = if !restored_all {
        format!(
            "some contexts could NOT be put back: check them with {}",
            how.check_with
        )
    } else if written_alongside {
        "the other contexts written were put back".to_string()
    } else if failed.len() > 1 {
        "the contexts written before them were put back".to_string()
    } else {
        "the contexts written before it were put back".to_string()
    };
    let names: Vec<&str> = failed.iter().map(|&j| sites[j].context()).collect();
    let which = match names.as_slice() {
        [one] => format!("context {one}"),
        many => format!("contexts {}", many.join(", ")),
    };
    MeshError::Partial(format!(
        "the write failed in {which}; {outcome}: {}",
        one_line(&err)
    ))
    .into()
}

/// The error of the failed write at `at`.
fn take_err<W>(mut fates: Vec<Fate<W>>, at: usize) -> anyhow::Error {
    match fates.swap_remove(at) {
        Fate::Failed(Failed { err, .. }) => err,
        _ => anyhow!("internal error: context {at} did not fail"),
    }
}

/// One context's row after a failure, putting it back first when it was written: whether it is
/// as before the run, and its state.
async fn state<S: Site>(site: &S, fate: &Fate<S::Written>) -> (bool, String) {
    let unchanged = match site.before() {
        Some(now) => format!("unchanged ({now})"),
        None => "unchanged".to_string(),
    };
    match fate {
        Fate::NotAttempted => (true, format!("{unchanged}, not attempted")),
        Fate::Written(written) if S::unchanged(written) => (true, unchanged),
        Fate::Written(written) => match site.put_back(written, false).await {
            Ok(r) => (r.complete, r.state),
            Err(e) => (
                false,
                format!(
                    "FAILED to restore, left at {}: {}",
                    site.left_at(),
                    one_line(&e)
                ),
            ),
        },
        Fate::Failed(Failed { err, in_doubt }) => match in_doubt {
            Some(written) => match site.put_back(written, true).await {
                Ok(r) => (
                    r.complete,
                    format!("FAILED: {}; it may have landed: {}", one_line(err), r.state),
                ),
                Err(e) => (
                    false,
                    format!(
                        "FAILED: {}; it may have landed and could NOT be put back: {}",
                        one_line(err),
                        one_line(&e)
                    ),
                ),
            },
            None => (true, format!("FAILED: {}", one_line(err))),
        },
    }
}

/// CONTEXT STATE, after a failed write.
pub fn states(rows: &[(String, String)]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(c, s)| vec![c.clone(), s.clone()])
        .collect();
    table::render(&["context", "state"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A context that records what happened to it; `fail` makes its write fail.
    struct Fake<'a> {
        name: &'static str,
        fail: bool,
        unchanged: bool,
        log: &'a RefCell<Vec<String>>,
    }

    impl Site for Fake<'_> {
        type Written = bool;
        fn context(&self) -> &str {
            self.name
        }
        fn before(&self) -> Option<String> {
            Some("old".into())
        }
        fn left_at(&self) -> String {
            "new".into()
        }
        async fn write(&self, _mode: WriteMode) -> std::result::Result<bool, Failed<bool>> {
            self.log.borrow_mut().push(format!("write {}", self.name));
            if self.fail {
                return Err(anyhow!("cannot apply X in context {:?}: boom", self.name).into());
            }
            Ok(self.unchanged)
        }
        fn unchanged(written: &bool) -> bool {
            *written
        }
        async fn put_back(&self, _written: &bool, _in_doubt: bool) -> Result<Restored> {
            self.log
                .borrow_mut()
                .push(format!("put back {}", self.name));
            Ok(Restored {
                complete: true,
                state: "restored to old".into(),
            })
        }
    }

    /// Contexts c1, c2, ... that change what they write; those marked `true` fail.
    fn fakes<'a>(log: &'a RefCell<Vec<String>>, failing: &[bool]) -> Vec<Fake<'a>> {
        const NAMES: [&str; 4] = ["c1", "c2", "c3", "c4"];
        NAMES
            .iter()
            .zip(failing)
            .map(|(name, fail)| Fake {
                name,
                fail: *fail,
                unchanged: false,
                log,
            })
            .collect()
    }

    fn run(sites: &[Fake<'_>]) -> (Result<Vec<bool>>, String) {
        let how = Across {
            order: Order::CanaryThenTogether,
            mode: WriteMode::default(),
            interrupt: None,
            check_with: "kubectl mesh-x status",
        };
        let mut err = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let r = rt.block_on(commit(sites, &how, &mut err));
        (r, String::from_utf8(err).expect("utf8"))
    }

    #[test]
    fn a_failure_puts_back_the_written_contexts_and_exits_4() {
        let log = RefCell::new(Vec::new());
        let site = |name, fail, unchanged| Fake {
            name,
            fail,
            unchanged,
            log: &log,
        };
        let sites = [
            site("c1", false, false),
            site("c2", false, true),
            site("c3", true, false),
            site("c4", false, false),
        ];
        let (r, table) = run(&sites);
        let e = r.expect_err("c3 fails");
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_PARTIAL);
        assert_eq!(
            e.to_string(),
            "the write failed in context c3; the other contexts written were put back: cannot apply X in context \"c3\": boom"
        );
        assert_eq!(
            table,
            "CONTEXT   STATE\nc1        restored to old\nc2        unchanged (old)\nc3        FAILED: cannot apply X in context \"c3\": boom\nc4        restored to old\n"
        );
        // c1 goes first, alone; c2 to c4 together, so c4 was written alongside c3 and is put
        // back with c1. c2 changed nothing, so nothing is put back there.
        assert_eq!(
            *log.borrow(),
            vec![
                "write c1",
                "write c2",
                "write c3",
                "write c4",
                "put back c1",
                "put back c4"
            ]
        );
    }

    #[test]
    fn a_failed_first_context_leaves_the_others_unattempted() {
        let log = RefCell::new(Vec::new());
        let sites = fakes(&log, &[true, false, false]);
        let (r, table) = run(&sites);
        let e = r.expect_err("c1 fails");
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_PARTIAL);
        assert_eq!(
            e.to_string(),
            "the write failed in context c1; the contexts written before it were put back: cannot apply X in context \"c1\": boom"
        );
        assert_eq!(
            table,
            "CONTEXT   STATE\nc1        FAILED: cannot apply X in context \"c1\": boom\nc2        unchanged (old), not attempted\nc3        unchanged (old), not attempted\n"
        );
        assert_eq!(*log.borrow(), vec!["write c1"]);
    }

    #[test]
    fn several_failures_are_each_named() {
        let log = RefCell::new(Vec::new());
        let sites = fakes(&log, &[false, true, true]);
        let (r, table) = run(&sites);
        let e = r.expect_err("c2 and c3 fail");
        assert_eq!(
            e.to_string(),
            "the write failed in contexts c2, c3; the contexts written before them were put back: cannot apply X in context \"c2\": boom"
        );
        assert!(table.contains("c3        FAILED: cannot apply X in context \"c3\": boom"));
        assert_eq!(
            *log.borrow(),
            vec!["write c1", "write c2", "write c3", "put back c1"]
        );
    }

    #[test]
    fn the_writes_after_the_first_go_together() {
        use std::cell::Cell;
        /// Records how many writes were in flight at once, at the most, for the first site and
        /// for the others.
        struct Counted<'a> {
            now: &'a Cell<usize>,
            most: &'a RefCell<Vec<usize>>,
        }
        impl Site for Counted<'_> {
            type Written = ();
            fn context(&self) -> &str {
                "c"
            }
            fn left_at(&self) -> String {
                String::new()
            }
            async fn write(&self, _mode: WriteMode) -> std::result::Result<(), Failed<()>> {
                self.now.set(self.now.get() + 1);
                self.most.borrow_mut().push(self.now.get());
                tokio::task::yield_now().await;
                self.now.set(self.now.get() - 1);
                Ok(())
            }
            fn unchanged(_: &()) -> bool {
                true
            }
            async fn put_back(&self, _: &(), _: bool) -> Result<Restored> {
                Err(anyhow!("not called"))
            }
        }
        let now = Cell::new(0);
        let most = RefCell::new(Vec::new());
        let sites: Vec<Counted> = (0..10)
            .map(|_| Counted {
                now: &now,
                most: &most,
            })
            .collect();
        let how = Across {
            order: Order::CanaryThenTogether,
            mode: WriteMode::default(),
            interrupt: None,
            check_with: "",
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let done = rt.block_on(commit(&sites, &how, &mut Vec::new()));
        assert_eq!(done.expect("all written").len(), 10);
        // The first alone; then the nine others all started before any finished.
        assert_eq!(*most.borrow(), vec![1, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn one_context_fails_with_its_own_error_and_no_table() {
        let log = RefCell::new(Vec::new());
        let sites = [Fake {
            name: "c1",
            fail: true,
            unchanged: false,
            log: &log,
        }];
        let (r, table) = run(&sites);
        let e = r.expect_err("fails");
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_FAILURE);
        assert!(table.is_empty());
    }
}
