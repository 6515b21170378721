//! Waiting between progressive steps: a progress bar on a terminal, a line otherwise, and
//! Ctrl-C, SIGTERM or SIGHUP, which stop the walk (or a write across contexts) after the write
//! in flight instead of killing the process between two clusters.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP, caught from when it is created until it is dropped.
pub struct Interrupt {
    rx: watch::Receiver<Option<&'static str>>,
    task: tokio::task::JoinHandle<()>,
    /// False once the listener is gone (no signal support): then only the clock counts.
    listening: bool,
}

impl Interrupt {
    /// Starts catching the signals: from now on they no longer kill the process.
    pub async fn catch() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = watch::channel(None);
        // Installed here, before the first write, not inside the task.
        let handlers = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        );
        let task = tokio::spawn(async move {
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = handlers else {
                return;
            };
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            let _ = tx.send(Some(name));
            // Keep the handlers installed: a second signal must not kill the rollback.
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
        });
        Self {
            rx,
            task,
            listening: true,
        }
    }

    /// Whether a signal came.
    pub fn pressed(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// The signal that came, if any.
    pub fn signal(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// Waits `interval`; `false` when a signal cut the wait short.
    pub async fn wait(
        &mut self,
        interval: Duration,
        label: &str,
        bar: bool,
        err: &mut dyn Write,
    ) -> bool {
        if self.pressed() {
            return false;
        }
        let deadline = Instant::now() + interval;
        let progress = bar.then(|| {
            let pb = ProgressBar::new(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX));
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {elapsed}") {
                pb.set_style(style.progress_chars("=> "));
            }
            pb.set_message(label.to_string());
            pb
        });
        if progress.is_none() {
            let _ = writeln!(err, "{label}");
        }
        let start = Instant::now();
        let completed = loop {
            let tick = (Instant::now() + Duration::from_millis(200)).min(deadline);
            tokio::select! {
                _ = sleep_until(tick) => {
                    if let Some(pb) = &progress {
                        pb.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
                    }
                    if Instant::now() >= deadline {
                        break true;
                    }
                }
                changed = self.rx.changed(), if self.listening => {
                    if changed.is_err() {
                        self.listening = false;
                    } else if self.pressed() {
                        break false;
                    }
                }
            }
        };
        if let Some(pb) = progress {
            pb.finish_and_clear();
        }
        completed
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.task.abort();
    }
}
