//! Why a launcher command failed, and the one place a failure becomes an exit status
//! (README, "Exit codes"). A failure names its subject (the settings, an AWS call, the
//! launch, ECS Exec, the key secrets) and what happened to it; none carries a code.
//! The container's own exit code is not a failure: it comes from the job's outcome
//! ([`crate::launcher::job`]).
//!
//! The subjects' errors live here rather than next to their code so that every
//! subject can return them without the subjects and this file importing each other.

use std::fmt;

use crate::contract::exit::launcher::{FAILURE, INTERRUPTED, NEVER_RAN, TIMEOUT, USAGE};

/// A launcher command's failure.
#[derive(Debug)]
pub enum LauncherError {
    /// The settings: flags, the environment, the settings file, a template,
    /// `--from-service`, the credentials' account, the operator's answer.
    Settings(SettingsError),
    /// An AWS call that got no usable answer.
    Call(CallError),
    /// Launching and following a task.
    Launch(LaunchError),
    /// An ECS Exec session (`shell`).
    Exec(ExecError),
    /// The encryption key secrets (`keys`).
    Keys(KeysError),
    /// Ctrl-C or SIGTERM.
    Interrupted(anyhow::Error),
}

/// The settings cannot be used as given: nothing was launched or changed.
#[derive(Debug)]
pub enum SettingsError {
    /// A value, a file or a combination of them is wrong.
    Invalid(anyhow::Error),
    /// The operator did not confirm.
    NotConfirmed(anyhow::Error),
}

/// An AWS call that failed, explained (the endpoint, the region, a hint).
#[derive(Debug)]
pub enum CallError {
    /// Before or at a launch: the task never ran.
    AtLaunch(anyhow::Error),
    /// In a command that launches nothing.
    Inspecting(anyhow::Error),
}

/// Launching and following a task.
#[derive(Debug)]
pub enum LaunchError {
    /// ECS rejected the task, did not start it, or does not know it: it never ran.
    NeverRan(anyhow::Error),
    /// A call to follow, stop or read the task failed; the task may still be running.
    Unfollowable(anyhow::Error),
    /// Another mutating task is running, or the task asked for is not there.
    Refused(anyhow::Error),
}

/// An ECS Exec session.
#[derive(Debug)]
pub enum ExecError {
    /// The session-manager-plugin is missing, or the task does not allow ECS Exec.
    Unavailable(anyhow::Error),
    /// The task stopped, or ECS opened no session.
    NoSession(anyhow::Error),
    /// The agent did not come up in time.
    TimedOut(anyhow::Error),
    /// This machine could not run the plugin or listen for signals.
    Local(anyhow::Error),
}

/// The encryption key secrets.
#[derive(Debug)]
pub enum KeysError {
    /// A key, a key id or a secret's content is not usable: nothing was changed.
    Invalid(anyhow::Error),
    /// The values are not safe to change yet: nothing was changed.
    Refused(anyhow::Error),
    /// Reading or writing a secret failed.
    Unreachable(anyhow::Error),
    /// No randomness from the system.
    Local(anyhow::Error),
    /// The `reencrypt --dry-run` check ended with `code` and gave no answer.
    CheckEnded { code: u8, error: anyhow::Error },
}

impl LauncherError {
    /// The exit status this failure ends the launcher with: the one match.
    pub fn exit_code(&self) -> u8 {
        use {CallError as C, ExecError as X, KeysError as K, LaunchError as L};
        match self {
            Self::Settings(_)
            | Self::Launch(L::Refused(_))
            | Self::Exec(X::Unavailable(_))
            | Self::Keys(K::Invalid(_) | K::Refused(_)) => USAGE,
            Self::Call(C::AtLaunch(_))
            | Self::Launch(L::NeverRan(_))
            | Self::Exec(X::NoSession(_)) => NEVER_RAN,
            Self::Call(C::Inspecting(_))
            | Self::Launch(L::Unfollowable(_))
            | Self::Exec(X::Local(_))
            | Self::Keys(K::Unreachable(_) | K::Local(_)) => FAILURE,
            Self::Exec(X::TimedOut(_)) => TIMEOUT,
            Self::Interrupted(_) => INTERRUPTED,
            Self::Keys(K::CheckEnded { code, .. }) => *code,
        }
    }

    fn error(&self) -> &anyhow::Error {
        use {CallError as C, ExecError as X, KeysError as K, LaunchError as L};
        match self {
            Self::Settings(SettingsError::Invalid(e) | SettingsError::NotConfirmed(e))
            | Self::Call(C::AtLaunch(e) | C::Inspecting(e))
            | Self::Launch(L::NeverRan(e) | L::Unfollowable(e) | L::Refused(e))
            | Self::Exec(X::Unavailable(e) | X::NoSession(e) | X::TimedOut(e) | X::Local(e))
            | Self::Keys(
                K::Invalid(e)
                | K::Refused(e)
                | K::Unreachable(e)
                | K::Local(e)
                | K::CheckEnded { error: e, .. },
            )
            | Self::Interrupted(e) => e,
        }
    }
}

impl fmt::Display for LauncherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error())
    }
}

/// Constructors that make a subject's failure a [`LauncherError`] at once, so a
/// subject's code reads `SettingsError::invalid(anyhow!(...))`.
macro_rules! into_launcher_error {
    ($subject:ident, $outer:ident, $($make:ident => $variant:ident),+) => {
        impl $subject {
            $(
                pub(crate) fn $make(error: anyhow::Error) -> LauncherError {
                    LauncherError::$outer($subject::$variant(error))
                }
            )+
        }
    };
}

into_launcher_error!(SettingsError, Settings, invalid => Invalid, not_confirmed => NotConfirmed);
into_launcher_error!(CallError, Call, at_launch => AtLaunch, inspecting => Inspecting);
into_launcher_error!(LaunchError, Launch, never_ran => NeverRan, unfollowable => Unfollowable, refused => Refused);
into_launcher_error!(ExecError, Exec, unavailable => Unavailable, no_session => NoSession, timed_out => TimedOut, local => Local);
into_launcher_error!(KeysError, Keys, invalid => Invalid, refused => Refused, unreachable => Unreachable, local => Local);

#[cfg(test)]
mod tests {
    use anyhow::anyhow;

    use super::*;

    /// The README's exit-code table, subject by subject.
    #[test]
    fn each_failure_ends_with_the_code_the_readme_gives_it() {
        let cases = [
            (SettingsError::invalid(anyhow!("x")), 2),
            (SettingsError::not_confirmed(anyhow!("x")), 2),
            (CallError::at_launch(anyhow!("x")), 125),
            (CallError::inspecting(anyhow!("x")), 1),
            (LaunchError::never_ran(anyhow!("x")), 125),
            (LaunchError::unfollowable(anyhow!("x")), 1),
            (LaunchError::refused(anyhow!("x")), 2),
            (ExecError::unavailable(anyhow!("x")), 2),
            (ExecError::no_session(anyhow!("x")), 125),
            (ExecError::timed_out(anyhow!("x")), 124),
            (ExecError::local(anyhow!("x")), 1),
            (KeysError::invalid(anyhow!("x")), 2),
            (KeysError::refused(anyhow!("x")), 2),
            (KeysError::unreachable(anyhow!("x")), 1),
            (KeysError::local(anyhow!("x")), 1),
            (LauncherError::Interrupted(anyhow!("x")), 130),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
        let check = LauncherError::Keys(KeysError::CheckEnded {
            code: 5,
            error: anyhow!("refusing"),
        });
        assert_eq!(
            (check.exit_code(), check.to_string().as_str()),
            (5, "refusing")
        );
    }
}
