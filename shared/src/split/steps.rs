//! Waiting between progressive steps: a progress bar on a terminal, a line otherwise, and
//! Ctrl-C, SIGTERM or SIGHUP, which stop the walk (or a write across contexts) after the write
//! in flight instead of killing the process between two clusters.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub use crate::interrupt::Interrupt;
use tokio::time::{sleep_until, Instant};

impl Interrupt {
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
