//! Why a launcher command failed, and the one place a failure becomes an exit status
//! (README, "Exit codes"). Each variant says what happened; none carries a code. The
//! container's own exit code is not a failure: it comes from the job's outcome
//! ([`crate::launcher::job`]).

use std::fmt;

use crate::contract::exit::launcher::{FAILURE, INTERRUPTED, NEVER_RAN, TIMEOUT, USAGE};

/// A launcher command's failure.
#[derive(Debug)]
pub enum LauncherError {
    /// What was asked cannot be done as given: a flag, the environment, the settings
    /// file, a template, `--from-service`, the credentials' account, a task that is not
    /// there. Nothing was launched or changed.
    Usage(anyhow::Error),
    /// The operator did not confirm, or the command refused what it found; nothing was
    /// changed.
    Refused(anyhow::Error),
    /// The task never ran: a call before or at the launch failed, ECS rejected the task
    /// or did not start it, or an ECS Exec session could not be opened.
    NeverRan(anyhow::Error),
    /// A call of a command that launches nothing failed, or its answer cannot be used.
    Failed(anyhow::Error),
    /// This machine could not do its part (randomness, signals, the session-manager
    /// plugin).
    Local(anyhow::Error),
    /// The time allowed for waiting passed.
    TimedOut(anyhow::Error),
    /// Ctrl-C or SIGTERM.
    Interrupted(anyhow::Error),
    /// A job run to check something ended with `code` and gave no answer.
    JobEnded { code: u8, error: anyhow::Error },
}

impl LauncherError {
    /// The exit status this failure ends the launcher with: the one match.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Refused(_) => USAGE,
            Self::NeverRan(_) => NEVER_RAN,
            Self::Failed(_) | Self::Local(_) => FAILURE,
            Self::TimedOut(_) => TIMEOUT,
            Self::Interrupted(_) => INTERRUPTED,
            Self::JobEnded { code, .. } => *code,
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Self::Usage(error)
            | Self::Refused(error)
            | Self::NeverRan(error)
            | Self::Failed(error)
            | Self::Local(error)
            | Self::TimedOut(error)
            | Self::Interrupted(error)
            | Self::JobEnded { error, .. } => error,
        }
    }
}

impl fmt::Display for LauncherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error())
    }
}
