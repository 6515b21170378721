//! SIGINT (Ctrl-C), SIGTERM and SIGHUP during a write: caught, so that a command finishes the
//! write in flight and puts back what it must, instead of dying between two writes.

use tokio::sync::watch;

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP, caught from when it is created until it is dropped.
pub struct Interrupt {
    pub(crate) rx: watch::Receiver<Option<&'static str>>,
    task: tokio::task::JoinHandle<()>,
    /// False once the listener is gone (no signal support): then only the clock counts.
    pub(crate) listening: bool,
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
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.task.abort();
    }
}
