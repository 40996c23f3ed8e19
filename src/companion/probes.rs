//! `status`: can this task reach the database, where does its schema stand, and are
//! its keys usable. The answer to "database connection issues" from inside the VPC.
//!
//! Every probe is reported with how long it took, and a failing probe is a result,
//! not a crash: the summary always has all three parts, so `run-admin-task doctor
//! --in-vpc` can turn it into checks. Strictly read-only; no key material and no
//! password is ever part of the output, only key ids and the redacted URL.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;

use crate::companion::console;
use crate::companion::database::{self, DatabaseUrl};
use crate::companion::failure::CompanionError;
use crate::companion::migrations::state::SchemaState;
use crate::companion::migrations::{Catalog, history};
use crate::contract::result::Summary;
use crate::contract::summary::{DatabaseProbe, KeysProbe, SchemaProbe, StatusSummary};
use crate::keyring::Keyring;

/// Options of `status`.
#[derive(Debug, Clone)]
pub(crate) struct StatusOptions {
    /// How long to retry the first connection (a fresh task's network can take seconds).
    pub connect_timeout: Duration,
}

/// Runs the three probes and returns the exit code and the summary. Never fails:
/// every problem is part of the summary.
pub async fn run(options: &StatusOptions) -> Result<(u8, Summary), CompanionError> {
    let keys = probe_keys();
    let (database, schema) = match DatabaseUrl::from_env() {
        Ok(url) => probe_database(&url, options.connect_timeout).await,
        Err(error) => {
            tracing::error!("database: {error}");
            (
                DatabaseProbe {
                    error: Some(error.to_string()),
                    ..DatabaseProbe::default()
                },
                skipped_schema(),
            )
        }
    };
    let summary = StatusSummary {
        database,
        schema,
        keys,
    };
    Ok((summary.exit_code(), Summary::Status(summary)))
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn skipped_schema() -> SchemaProbe {
    SchemaProbe {
        error: Some("not checked: the database is not reachable".to_owned()),
        ..SchemaProbe::default()
    }
}

fn probe_keys() -> KeysProbe {
    let started = Instant::now();
    let probe = match Keyring::from_env() {
        Ok(keyring) => {
            let ids = keyring.ids();
            tracing::info!(
                primary = %ids.primary,
                previous = %ids.previous.join(","),
                "encryption keys are valid"
            );
            KeysProbe {
                ok: true,
                primary: Some(ids.primary),
                previous: ids.previous,
                ..KeysProbe::default()
            }
        }
        Err(error) => {
            tracing::error!("encryption keys: {error}");
            KeysProbe {
                error: Some(error.to_string()),
                ..KeysProbe::default()
            }
        }
    };
    KeysProbe {
        ms: elapsed_ms(started),
        ..probe
    }
}

async fn probe_database(url: &DatabaseUrl, retry_for: Duration) -> (DatabaseProbe, SchemaProbe) {
    let started = Instant::now();
    let mut probe = DatabaseProbe {
        url: Some(url.redacted().to_owned()),
        ..DatabaseProbe::default()
    };
    let mut conn = match database::connect(url, retry_for).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!("database: {error}");
            probe.error = Some(error.to_string());
            probe.ms = elapsed_ms(started);
            return (probe, skipped_schema());
        }
    };
    match ask_server(&mut conn).await {
        Ok((version, select1)) => {
            probe.ok = true;
            probe.select1_ms = Some(select1.as_secs_f64() * 1000.0);
            tracing::info!(
                server_version = %version,
                select1_ms = select1.as_secs_f64() * 1000.0,
                "database {} is reachable",
                url.redacted()
            );
            probe.server_version = Some(version);
        }
        Err(error) => {
            let error = url.scrub(&error.to_string());
            tracing::error!("database: connected but the server did not answer: {error}");
            probe.error = Some(format!("connected but the server did not answer: {error}"));
        }
    }
    probe.ms = elapsed_ms(started);
    let schema = if probe.ok {
        probe_schema(&mut conn, url).await
    } else {
        skipped_schema()
    };
    database::close_quietly(conn).await;
    (probe, schema)
}

/// The server version and one `SELECT 1` round trip, in a read-only session.
async fn ask_server(conn: &mut PgConnection) -> Result<(String, Duration), sqlx::Error> {
    sqlx::query("SET default_transaction_read_only = on")
        .execute(&mut *conn)
        .await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut *conn)
        .await?;
    let started = Instant::now();
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut *conn)
        .await?;
    Ok((version, started.elapsed()))
}

async fn probe_schema(conn: &mut PgConnection, url: &DatabaseUrl) -> SchemaProbe {
    let started = Instant::now();
    let probe = match history::read(conn).await {
        Ok(history) => {
            let state = SchemaState::compare(&Catalog::embedded(), history.as_deref());
            let pending = state.pending().count();
            let drift = state.drift(false).len();
            if drift > 0 {
                tracing::warn!(
                    drift,
                    "the database disagrees with this image: run `{}` for details",
                    console::command_line("migrate-info")
                );
            } else {
                tracing::info!(pending, "schema: {pending} migration(s) pending");
            }
            SchemaProbe {
                ok: true,
                history_table_exists: state.history_table_exists,
                pending,
                drift,
                ..SchemaProbe::default()
            }
        }
        Err(error) => {
            let error = url.scrub(&error.to_string());
            tracing::error!("schema: reading _sqlx_migrations: {error}");
            SchemaProbe {
                error: Some(format!("reading _sqlx_migrations: {error}")),
                ..SchemaProbe::default()
            }
        }
    };
    SchemaProbe {
        ms: elapsed_ms(started),
        ..probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_with_valid_keys_is_success_whatever_the_schema() {
        let mut summary = StatusSummary {
            database: DatabaseProbe {
                ok: true,
                ..DatabaseProbe::default()
            },
            schema: SchemaProbe {
                ok: true,
                pending: 3,
                drift: 1,
                ..SchemaProbe::default()
            },
            keys: KeysProbe {
                ok: true,
                ..KeysProbe::default()
            },
        };
        assert_eq!(summary.exit_code(), 0);
        summary.keys.ok = false;
        assert_eq!(summary.exit_code(), 1);
        summary.keys.ok = true;
        summary.database.ok = false;
        assert_eq!(summary.exit_code(), 1);
    }

    #[test]
    fn summary_round_trips_through_the_result_event() {
        let summary = StatusSummary {
            keys: KeysProbe {
                ok: true,
                primary: Some("kek-v2".into()),
                previous: vec!["kek-v1".into()],
                ms: 1,
                ..KeysProbe::default()
            },
            ..StatusSummary::default()
        };
        let value = serde_json::to_value(&summary).unwrap();
        assert_eq!(value["keys"]["primary"], "kek-v2");
        let back: StatusSummary = serde_json::from_value(value).unwrap();
        assert_eq!(back, summary);
    }
}
