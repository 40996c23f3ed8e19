//! What a migration run found or met, as an error the companion maps to its exit code.

use crate::companion::cancel::Stopped;
use crate::companion::database::DatabaseError;
use crate::companion::lint::Unparsable;
use crate::contract::findings::Finding;
use crate::contract::migration_report::{FailedMigration, InvalidIndex};

/// What a migration run found or met, besides the database failing under it.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The migrations given with `--source` cannot be read, or there are none.
    Source(anyhow::Error),
    /// `--target-version` names no migration of this image.
    UnknownTarget(anyhow::Error),
    /// The database's history disagrees with this image.
    Drift(anyhow::Error),
    /// Pending migrations have blocking lint findings and nothing allows them.
    Unsafe {
        error: anyhow::Error,
        findings: Vec<Finding>,
    },
    /// A pending migration would meet an INVALID index an earlier run of it left.
    Leftover {
        error: anyhow::Error,
        invalid: Vec<InvalidIndex>,
    },
    /// A migration failed and was rolled back.
    Failed {
        error: anyhow::Error,
        failed: FailedMigration,
    },
    /// Reaching or reading the database failed.
    Database(DatabaseError),
    /// A pending migration does not parse, so it cannot be judged.
    Unparsable(Unparsable),
    /// Stopped by a signal or the deadline.
    Stopped(Stopped),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Source(error)
            | Self::UnknownTarget(error)
            | Self::Drift(error)
            | Self::Unsafe { error, .. }
            | Self::Leftover { error, .. }
            | Self::Failed { error, .. } => write!(f, "{error:#}"),
            Self::Database(error) => error.fmt(f),
            Self::Unparsable(error) => error.fmt(f),
            Self::Stopped(stopped) => stopped.fmt(f),
        }
    }
}

impl From<DatabaseError> for MigrateError {
    fn from(error: DatabaseError) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::Error> for MigrateError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<Unparsable> for MigrateError {
    fn from(error: Unparsable) -> Self {
        Self::Unparsable(error)
    }
}

impl From<Stopped> for MigrateError {
    fn from(stopped: Stopped) -> Self {
        Self::Stopped(stopped)
    }
}
