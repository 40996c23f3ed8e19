//! Why a companion command failed, and the one place a failure becomes an exit status
//! (README, "Exit codes"). Subjects return their own errors, which say what went wrong
//! ([`DatabaseError`], [`MigrateError`], [`KeyringError`], ...); none of them picks a
//! code. Outcomes that are not failures (pending, undecryptable) come from the typed
//! result of the command that found them.

use std::fmt;

use serde_json::{Value, json};

use super::cancel::{StopError, Stopped};
use super::database::DatabaseError;
use super::lint::Unparsable;
use super::migrations::MigrateError;
use crate::contract::exit::companion::{DRIFT, FAILURE, SCHEMA_DIFFERS, UNSAFE, USAGE};
use crate::keyring::KeyringError;

/// A companion command's failure.
#[derive(Debug)]
pub(crate) enum CompanionError {
    /// A flag or a file given on the command line cannot be used (`--target-version`,
    /// `--table`, `--batch-size`, `--source`): nothing was done.
    Argument(anyhow::Error),
    /// `SECRETS_ENCRYPTION_KEY` or `SECRETS_ENCRYPTION_KEY_PREVIOUS` cannot be used.
    Keyring(KeyringError),
    /// Reaching or talking to the database.
    Database(DatabaseError),
    /// What a migration run found or met.
    Migrate(MigrateError),
    /// A migration that does not parse as PostgreSQL.
    Unparsable(Unparsable),
    /// The process could not set itself up (signal handlers).
    Process(anyhow::Error),
    /// Stopped by a signal or the deadline before the work was done.
    Stopped(Stopped),
}

impl CompanionError {
    /// The exit status this failure ends the companion with: the one match.
    pub(crate) fn exit_code(&self) -> u8 {
        use DatabaseError as Db;
        use MigrateError as Mig;
        match self {
            Self::Argument(_)
            | Self::Keyring(_)
            | Self::Database(Db::Url(_))
            | Self::Migrate(Mig::Source(_) | Mig::UnknownTarget(_) | Mig::Database(Db::Url(_))) => {
                USAGE
            }
            Self::Stopped(stopped)
            | Self::Database(Db::Stopped(stopped))
            | Self::Migrate(Mig::Stopped(stopped) | Mig::Database(Db::Stopped(stopped))) => {
                stopped.cause.exit_code()
            }
            Self::Migrate(Mig::Drift(_)) => DRIFT,
            Self::Migrate(Mig::Unsafe { .. }) => UNSAFE,
            Self::Migrate(Mig::Leftover { .. }) => SCHEMA_DIFFERS,
            Self::Database(_)
            | Self::Unparsable(_)
            | Self::Process(_)
            | Self::Migrate(Mig::Failed { .. } | Mig::Database(_) | Mig::Unparsable(_)) => FAILURE,
        }
    }

    /// What the failure concerns, for the result summary (`{"failed": {...}}`), without
    /// the error text; never secret material.
    pub(crate) fn detail(&self) -> Value {
        match self {
            Self::Migrate(MigrateError::Unsafe { findings, .. }) => json!({ "findings": findings }),
            Self::Migrate(MigrateError::Leftover { invalid, .. }) => {
                json!({ "invalid_indexes": invalid })
            }
            Self::Migrate(MigrateError::Failed { failed, .. }) => json!({ "failed": failed }),
            _ => match self.stop() {
                Some(stopped) => stopped.detail(),
                None => json!({}),
            },
        }
    }

    /// The stop this failure is, wherever it was met.
    fn stop(&self) -> Option<&Stopped> {
        match self {
            Self::Stopped(stopped)
            | Self::Database(DatabaseError::Stopped(stopped))
            | Self::Migrate(
                MigrateError::Stopped(stopped)
                | MigrateError::Database(DatabaseError::Stopped(stopped)),
            ) => Some(stopped),
            _ => None,
        }
    }

    /// The same failure, its message passed through `scrub` (a password that a server's
    /// message might quote).
    pub(crate) fn scrubbed(self, scrub: impl Fn(&str) -> String) -> Self {
        let redo = |error: anyhow::Error| anyhow::anyhow!(scrub(&format!("{error:#}")));
        match self {
            Self::Database(error) => Self::Database(error.map(redo)),
            Self::Stopped(stopped) => Self::Stopped(stopped.map(redo)),
            other => other,
        }
    }
}

impl fmt::Display for CompanionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Argument(error) | Self::Process(error) => write!(f, "{error:#}"),
            Self::Keyring(error) => error.fmt(f),
            Self::Unparsable(error) => error.fmt(f),
            Self::Database(error) => error.fmt(f),
            Self::Migrate(error) => error.fmt(f),
            Self::Stopped(stopped) => stopped.fmt(f),
        }
    }
}

impl StopError for CompanionError {
    fn stop_mut(&mut self) -> Option<&mut Stopped> {
        match self {
            Self::Stopped(stopped)
            | Self::Database(DatabaseError::Stopped(stopped))
            | Self::Migrate(
                MigrateError::Stopped(stopped)
                | MigrateError::Database(DatabaseError::Stopped(stopped)),
            ) => Some(stopped),
            _ => None,
        }
    }

    fn unstoppable(error: anyhow::Error) -> Self {
        Self::Process(error)
    }
}

impl From<DatabaseError> for CompanionError {
    fn from(error: DatabaseError) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::Error> for CompanionError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<MigrateError> for CompanionError {
    fn from(error: MigrateError) -> Self {
        Self::Migrate(error)
    }
}

impl From<Stopped> for CompanionError {
    fn from(stopped: Stopped) -> Self {
        Self::Stopped(stopped)
    }
}

impl From<KeyringError> for CompanionError {
    fn from(error: KeyringError) -> Self {
        Self::Keyring(error)
    }
}

impl From<Unparsable> for CompanionError {
    fn from(error: Unparsable) -> Self {
        Self::Unparsable(error)
    }
}
