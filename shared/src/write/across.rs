//! One write across several clusters ("contexts"), all or nothing: the caller has read and
//! validated every context; this writes them in order and, when a write fails or a signal
//! comes, puts back the contexts already written, prints each context's state and fails with
//! exit 4. mesh-split and mesh-register both write several contexts through it.

use std::future::Future;
use std::io::Write;

use anyhow::{anyhow, Result};

use crate::api::WriteMode;
use crate::cli::DryRun;
use crate::error::{one_line, MeshError};
use crate::interrupt::Interrupt;
use crate::table;

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
    /// Caught signals: one that came stops the run before the next context.
    pub interrupt: Option<&'a Interrupt>,
    /// The command that shows the contexts as they are, for a context that could not be put
    /// back (`kubectl mesh-split status`).
    pub check_with: &'a str,
}

/// Writes every site in order. When a write fails, or a signal has come before the next
/// context, the sites already written are put back; with several sites the state of each is
/// printed on `err` and the error is a partial failure (exit 4). With one site the error is the
/// write's own.
pub async fn commit<S: Site>(
    sites: &[S],
    how: &Across<'_>,
    err: &mut dyn Write,
) -> Result<Vec<S::Written>> {
    let mut done = Vec::with_capacity(sites.len());
    for (i, site) in sites.iter().enumerate() {
        // A signal never stops the process between two clusters: the write in flight finished,
        // and the ones before it are put back as for a failure.
        if let Some(sig) = how.interrupt.and_then(Interrupt::signal) {
            let failed = Failed {
                err: anyhow!(
                    "interrupted by {sig}: context {} was not written",
                    site.context()
                ),
                in_doubt: None,
            };
            return Err(fail(sites, &done, i, failed, how, err).await);
        }
        match site.write(how.mode).await {
            Ok(w) => done.push(w),
            Err(failed) => return Err(fail(sites, &done, i, failed, how, err).await),
        }
    }
    Ok(done)
}

async fn fail<S: Site>(
    sites: &[S],
    done: &[S::Written],
    failed: usize,
    failure: Failed<S::Written>,
    how: &Across<'_>,
    out: &mut dyn Write,
) -> anyhow::Error {
    let Failed { err, in_doubt } = failure;
    if how.mode.dry_run != DryRun::None {
        return err; // nothing was stored anywhere
    }
    let mut rows = Vec::new();
    let mut restored_all = true;
    for (j, site) in sites.iter().enumerate() {
        let unchanged = match site.before() {
            Some(now) => format!("unchanged ({now})"),
            None => "unchanged".to_string(),
        };
        let state = if j < failed {
            let written = &done[j];
            if S::unchanged(written) {
                unchanged
            } else {
                match site.put_back(written, false).await {
                    Ok(r) => {
                        restored_all &= r.complete;
                        r.state
                    }
                    Err(e) => {
                        restored_all = false;
                        format!(
                            "FAILED to restore, left at {}: {}",
                            site.left_at(),
                            one_line(&e)
                        )
                    }
                }
            }
        } else if j == failed {
            match &in_doubt {
                Some(written) => match site.put_back(written, true).await {
                    Ok(r) => {
                        restored_all &= r.complete;
                        format!(
                            "FAILED: {}; it may have landed: {}",
                            one_line(&err),
                            r.state
                        )
                    }
                    Err(e) => {
                        restored_all = false;
                        format!(
                            "FAILED: {}; it may have landed and could NOT be put back: {}",
                            one_line(&err),
                            one_line(&e)
                        )
                    }
                },
                None => format!("FAILED: {}", one_line(&err)),
            }
        } else {
            format!("{unchanged}, not attempted")
        };
        rows.push((site.context().to_string(), state));
    }
    if sites.len() == 1 {
        return err;
    }
    let _ = out.write_all(states(&rows).as_bytes());
    let outcome = if restored_all {
        "the contexts written before it were put back".to_string()
    } else {
        format!(
            "some contexts could NOT be put back: check them with {}",
            how.check_with
        )
    };
    MeshError::Partial(format!(
        "the write failed in context {}; {outcome}: {}",
        sites[failed].context(),
        one_line(&err)
    ))
    .into()
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

    fn run(sites: &[Fake<'_>]) -> (Result<Vec<bool>>, String) {
        let how = Across {
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
            "the write failed in context c3; the contexts written before it were put back: cannot apply X in context \"c3\": boom"
        );
        assert_eq!(
            table,
            "CONTEXT   STATE\nc1        restored to old\nc2        unchanged (old)\nc3        FAILED: cannot apply X in context \"c3\": boom\nc4        unchanged (old), not attempted\n"
        );
        // c4 is never written; c2 changed nothing, so nothing is put back there.
        assert_eq!(
            *log.borrow(),
            vec!["write c1", "write c2", "write c3", "put back c1"]
        );
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
