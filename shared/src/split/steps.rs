//! Waiting between progressive steps: a progress bar on a terminal, a line otherwise, and
//! Ctrl-C, which stops the walk after the current step instead of killing the process mid-write.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

/// Ctrl-C, caught from when it is created until it is dropped.
pub struct Interrupt {
    rx: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    /// False once the listener is gone (no signal support): then only the clock counts.
    listening: bool,
}

impl Interrupt {
    /// Starts catching Ctrl-C: from now on it no longer kills the process.
    pub async fn catch() -> Self {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        // Let the task install the handler before the first write.
        tokio::task::yield_now().await;
        Self {
            rx,
            task,
            listening: true,
        }
    }

    /// Whether Ctrl-C was pressed.
    pub fn pressed(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits `interval`; `false` when Ctrl-C cut the wait short.
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
