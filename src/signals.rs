//! SIGINT (Ctrl-C) and SIGTERM (ECS StopTask, a cancelled CI job): the one place the
//! crate listens for them, so every command of both binaries stops the same way.

use std::fmt;
#[cfg(feature = "launcher")]
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::signal::unix::{SignalKind, signal};

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGTERM: ECS StopTask, or a CI runner cancelling the job.
    Terminate,
    /// SIGINT: Ctrl-C.
    Interrupt,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        })
    }
}

/// Both stop signals, received in the order they arrive. Installing them replaces the
/// default action (the process is no longer killed), so install only where a command
/// stops cleanly on its own.
pub(crate) struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::Terminate,
            _ = self.interrupt.recv() => Signal::Interrupt,
        }
    }
}

/// How many [`Handled`] guards are alive.
#[cfg(feature = "launcher")]
static HANDLED: AtomicUsize = AtomicUsize::new(0);

/// While alive, says that the code running handles stop signals itself: a task this
/// invocation launched must be stopped, or a write sequence finished, before the process
/// leaves. Elsewhere a signal simply ends the command, even in the middle of a call.
#[cfg(feature = "launcher")]
pub(crate) struct Handled(());

#[cfg(feature = "launcher")]
impl Handled {
    /// Claims the signals until the guard is dropped.
    pub(crate) fn claim() -> Self {
        HANDLED.fetch_add(1, Ordering::SeqCst);
        Handled(())
    }

    /// Whether some code has claimed the signals.
    pub(crate) fn is_claimed() -> bool {
        HANDLED.load(Ordering::SeqCst) > 0
    }
}

#[cfg(feature = "launcher")]
impl Drop for Handled {
    fn drop(&mut self) {
        HANDLED.fetch_sub(1, Ordering::SeqCst);
    }
}
