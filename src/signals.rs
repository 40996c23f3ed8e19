//! SIGINT (Ctrl-C) and SIGTERM (ECS StopTask, a cancelled CI job): the one place the
//! crate listens for them, so every command of both binaries stops the same way.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use tokio::signal::unix::{SignalKind, signal};

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
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
pub struct Signals {
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

/// Remembers the first stop signal, for loops that finish a unit of work before they
/// look (a re-encryption batch is never cut in half).
pub struct StopFlag {
    received: Arc<AtomicU8>,
    listener: tokio::task::JoinHandle<()>,
}

impl StopFlag {
    const NONE: u8 = 0;

    /// Starts listening; `on_signal` runs once, when the first signal arrives.
    pub fn install(on_signal: impl FnOnce(Signal) + Send + 'static) -> std::io::Result<Self> {
        let mut signals = Signals::install()?;
        let received = Arc::new(AtomicU8::new(Self::NONE));
        let flag = Arc::clone(&received);
        let listener = tokio::spawn(async move {
            let signal = signals.recv().await;
            flag.store(signal as u8 + 1, Ordering::SeqCst);
            on_signal(signal);
        });
        Ok(Self { received, listener })
    }

    /// The first signal received so far.
    pub fn received(&self) -> Option<Signal> {
        match self.received.load(Ordering::SeqCst) {
            1 => Some(Signal::Terminate),
            2 => Some(Signal::Interrupt),
            _ => None,
        }
    }
}

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// How many [`Handled`] guards are alive.
static HANDLED: AtomicUsize = AtomicUsize::new(0);

/// While alive, says that the code running handles stop signals itself: a task this
/// invocation launched must be stopped, or a write sequence finished, before the process
/// leaves. Elsewhere a signal simply ends the command, even in the middle of a call.
pub struct Handled(());

impl Handled {
    /// Claims the signals until the guard is dropped.
    pub fn claim() -> Self {
        HANDLED.fetch_add(1, Ordering::SeqCst);
        Handled(())
    }

    /// Whether some code has claimed the signals.
    pub fn is_claimed() -> bool {
        HANDLED.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Handled {
    fn drop(&mut self) {
        HANDLED.fetch_sub(1, Ordering::SeqCst);
    }
}
