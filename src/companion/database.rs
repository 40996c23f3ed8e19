//! Reaching the database: `DATABASE_URL` handling that never shows the password,
//! a first connection retried while a fresh task's network comes up, and advisory
//! locks that wait a bounded time and say who holds them.

use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use zeroize::Zeroizing;

use super::cancel::{self, Stopped};
use crate::contract::events::Event;
use crate::contract::migration_report::LockHolder;

/// What went wrong reaching or talking to the database.
#[derive(Debug)]
pub(crate) enum DatabaseError {
    /// `DATABASE_URL` is missing or cannot be used.
    Url(anyhow::Error),
    /// No connection within the budget, or the server refused this login.
    Connect(anyhow::Error),
    /// Another session still held an advisory lock when the wait for it ended.
    LockHeld(anyhow::Error),
    /// A statement failed.
    Statement(anyhow::Error),
    /// A stop came while waiting on the database.
    Stopped(Stopped),
}

impl DatabaseError {
    /// A failed statement, with what it was doing: `reading the tables' sizes: ...`.
    pub(crate) fn during(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |error| Self::Statement(anyhow::Error::from(error).context(what))
    }

    /// The same failure with its message rewritten by `f`.
    pub(crate) fn map(self, f: impl FnOnce(anyhow::Error) -> anyhow::Error) -> Self {
        match self {
            Self::Url(e) => Self::Url(f(e)),
            Self::Connect(e) => Self::Connect(f(e)),
            Self::LockHeld(e) => Self::LockHeld(f(e)),
            Self::Statement(e) => Self::Statement(f(e)),
            Self::Stopped(stopped) => Self::Stopped(stopped.map(f)),
        }
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(e) | Self::Connect(e) | Self::LockHeld(e) | Self::Statement(e) => {
                write!(f, "{e:#}")
            }
            Self::Stopped(stopped) => stopped.fmt(f),
        }
    }
}

impl From<sqlx::Error> for DatabaseError {
    fn from(error: sqlx::Error) -> Self {
        Self::Statement(error.into())
    }
}

/// The database to work on, from `DATABASE_URL`. Its password is kept out of every
/// message: [`DatabaseUrl::scrub`] removes it from any text that might quote it.
pub struct DatabaseUrl {
    raw: Zeroizing<String>,
    redacted: String,
    password: Option<Zeroizing<String>>,
}

impl DatabaseUrl {
    /// Reads `DATABASE_URL`; a missing or malformed value is a usage error (exit 2).
    pub(crate) fn from_env() -> Result<Self, DatabaseError> {
        let raw = std::env::var("DATABASE_URL").map_err(|_| {
            DatabaseError::Url(anyhow!(
                "DATABASE_URL is not set: set it to postgres://USER:PASSWORD@HOST:5432/DBNAME \
                 (on ECS the task definition injects it from Secrets Manager)"
            ))
        })?;
        Self::parse(&raw)
    }

    /// Parses a `postgres://` URL.
    pub(crate) fn parse(raw: &str) -> Result<Self, DatabaseError> {
        let raw = Zeroizing::new(raw.to_owned());
        let parsed = url::Url::parse(&raw).map_err(|e| {
            // Unparsed, the password cannot be told apart: mask the whole value.
            crate::companion::console::never_print(&raw);
            DatabaseError::Url(anyhow!(
                "DATABASE_URL is not a valid URL ({e}): expected postgres://USER:PASSWORD@HOST:5432/DBNAME"
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            crate::companion::console::never_print(&raw);
            return Err(DatabaseError::Url(anyhow!(
                "DATABASE_URL has scheme {:?}: expected postgres:// or postgresql://",
                parsed.scheme()
            )));
        }
        let password = parsed.password().map(|p| {
            Zeroizing::new(
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        });
        if let Some(password) = &password {
            crate::companion::console::never_print(password);
            crate::companion::console::never_print(parsed.password().unwrap_or_default());
        }
        let mut shown = parsed.clone();
        if parsed.password().is_some() {
            let _ = shown.set_password(Some("****"));
        }
        // Query parameters can carry `password=` too; drop them from what is shown.
        shown.set_query(None);
        let redacted = shown.to_string();
        if redacted != *raw {
            crate::companion::console::never_print(&raw);
        }
        Ok(Self {
            raw,
            redacted,
            password,
        })
    }

    /// Where the URL points, without its password (`tunnel` forwards there); `None`
    /// without a host in the URL (a socket directory in its query).
    pub(crate) fn endpoint(&self) -> Option<Event> {
        let parsed = url::Url::parse(&self.raw).ok()?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let host = parsed.host_str().filter(|h| !h.is_empty())?;
        let database = parsed.path().trim_start_matches('/');
        Some(Event::Database {
            ts: chrono::Utc::now(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: parsed.port().unwrap_or(5432),
            database: (!database.is_empty()).then(|| decode(database)),
            user: (!parsed.username().is_empty()).then(|| decode(parsed.username())),
        })
    }

    /// The URL with its password masked, safe to print.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `text` with every occurrence of the password (raw or percent-encoded) masked.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Some(password) = &self.password
            && !password.is_empty()
        {
            out = out.replace(password.as_str(), "****");
            let encoded =
                percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            out = out.replace(&encoded, "****");
        }
        out.replace(self.raw.as_str(), &self.redacted)
    }

    /// Connection options for this URL, with statement logging kept at debug level.
    pub(crate) fn options(&self) -> Result<PgConnectOptions, DatabaseError> {
        let options = PgConnectOptions::from_str(&self.raw).map_err(|e| {
            DatabaseError::Url(anyhow!(
                "DATABASE_URL is not usable: {}",
                self.scrub(&e.to_string())
            ))
        })?;
        Ok(options
            .application_name("everruns-admin")
            .log_statements(tracing::log::LevelFilter::Debug))
    }
}

/// The least time one connection attempt gets, so that the last try, at the end of the
/// budget, is a real try rather than an instant time-out.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// Connects, retrying failures that a network still coming up produces (refused,
/// unreachable, timed out) with backoff for up to `retry_for`. Authentication and
/// missing-database errors fail at once: waiting will not fix them.
///
/// The whole budget is used: the last pause is shortened to what is left, and each
/// attempt is bounded by the time left (at least [`MIN_ATTEMPT`]), so a host that
/// drops packets cannot hold the companion much past the budget.
pub(crate) async fn connect(
    url: &DatabaseUrl,
    retry_for: Duration,
) -> Result<PgConnection, DatabaseError> {
    connect_with(url, retry_for, &[]).await
}

/// [`connect`] with server settings sent as startup options (`lock_timeout`, ...).
pub(crate) async fn connect_with(
    url: &DatabaseUrl,
    retry_for: Duration,
    settings: &[(&str, String)],
) -> Result<PgConnection, DatabaseError> {
    let base = url
        .options()?
        .options(settings.iter().map(|(k, v)| (*k, v.as_str())));
    let mut options = with_client_check(base.clone());
    let started = Instant::now();
    let deadline = started + retry_for;
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let bound = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_ATTEMPT);
        let error = match tokio::time::timeout(bound, options.connect()).await {
            Ok(Ok(mut conn)) => {
                cancel::record(&mut conn, &options).await.map_err(|e| {
                    DatabaseError::Connect(anyhow!(
                        "connected to {}, but the server did not say who this session is: {}",
                        url.redacted(),
                        url.scrub(&e.to_string())
                    ))
                })?;
                return Ok(conn);
            }
            Ok(Err(error)) if is_unknown_check_parameter(&error) => {
                // A server before PostgreSQL 14: said once, then connect without it.
                tracing::warn!(
                    "this server has no client_connection_check_interval (PostgreSQL 14+): a companion \
                     killed with SIGKILL cannot be noticed while its statement runs"
                );
                CLIENT_CHECK_UNSUPPORTED.store(true, Ordering::Relaxed);
                options = base.clone();
                continue;
            }
            Ok(Err(error)) => ConnectFailure::Refused(error),
            Err(_) => ConnectFailure::NoAnswer(bound),
        };
        let transient = error.is_transient();
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !transient || remaining.is_zero() {
            let hint = if transient {
                format!(
                    "gave up after {attempts} attempts over {:.1}s; check that the host is reachable \
                     from here (security groups, subnets) or raise --connect-timeout",
                    started.elapsed().as_secs_f64()
                )
            } else {
                "check the user, password and database name in DATABASE_URL".to_owned()
            };
            return Err(DatabaseError::Connect(anyhow!(
                "cannot connect to {}: {}; {hint}",
                url.redacted(),
                url.scrub(&error.to_string()),
            )));
        }
        let pause = delay.min(remaining);
        tracing::warn!(
            attempt = attempts,
            error = %url.scrub(&error.to_string()),
            "database not reachable yet, retrying in {} ms",
            pause.as_millis()
        );
        tokio::time::sleep(pause).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// `client_connection_check_interval` of every session (0: off), set once at start.
static CLIENT_CHECK: OnceLock<Duration> = OnceLock::new();
/// Set once a server refused the parameter, so it is neither sent nor warned about again.
static CLIENT_CHECK_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// How often the server checks, while a statement runs, that the companion is still
/// there (`--client-check-interval`): after a SIGKILL, the OOM killer or a lost task,
/// the server ends the statement and lets go of its locks within about this long,
/// instead of when the statement ends.
pub(crate) const DEFAULT_CLIENT_CHECK: Duration = Duration::from_secs(5);

/// Sets the check interval for the sessions opened from now on; the first call wins.
pub(crate) fn set_client_check_interval(interval: Duration) {
    let _ = CLIENT_CHECK.set(interval);
}

/// `options` with `client_connection_check_interval` as a startup option (a `RESET ALL`
/// in a migration cannot clear it), unless it is off or the server lacks it.
fn with_client_check(options: PgConnectOptions) -> PgConnectOptions {
    let interval = CLIENT_CHECK.get().copied().unwrap_or(DEFAULT_CLIENT_CHECK);
    if interval.is_zero() || CLIENT_CHECK_UNSUPPORTED.load(Ordering::Relaxed) {
        return options;
    }
    options.options([(
        "client_connection_check_interval",
        format!("{}ms", interval.as_millis()),
    )])
}

/// A server before 14 refuses an unknown startup parameter (SQLSTATE 42704).
fn is_unknown_check_parameter(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("42704")
            && db.message().contains("client_connection_check_interval"))
}

/// Why one connection attempt failed.
enum ConnectFailure {
    /// The server or the network answered with an error.
    Refused(sqlx::Error),
    /// Nothing came back within the attempt's bound.
    NoAnswer(Duration),
}

impl ConnectFailure {
    fn is_transient(&self) -> bool {
        match self {
            Self::Refused(error) => is_transient(error),
            Self::NoAnswer(_) => true,
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(error) => error.fmt(f),
            Self::NoAnswer(bound) => write!(
                f,
                "no answer within {:.1}s (packets dropped on the way?)",
                bound.as_secs_f64()
            ),
        }
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // 57P03: the server is starting up or shutting down.
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// The holders for a message: `pid 12 (...); pid 34 (...)`, or who it was when none
/// is left.
pub(crate) fn describe_holders(holders: &[LockHolder]) -> String {
    if holders.is_empty() {
        "a session that has since let go".to_owned()
    } else {
        holders
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The sessions, other than this one, that hold the session-level advisory lock `key`.
pub(crate) async fn lock_holders(
    conn: &mut PgConnection,
    key: i64,
) -> Result<Vec<LockHolder>, sqlx::Error> {
    // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
    sqlx::query_as::<_, LockHolder>(
        "SELECT a.pid, a.application_name, a.client_addr::text AS client_addr, \
                a.backend_start, a.state_change, a.state \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid = ((($1::bigint >> 32) & 4294967295))::oid \
           AND l.objid = (($1::bigint & 4294967295))::oid \
           AND l.pid <> pg_backend_pid()",
    )
    .bind(key)
    .fetch_all(conn)
    .await
}

/// The sessions, other than this one, holding a lock on any of `tables` (by name, on
/// the search path): whom a migration whose lock wait timed out was waiting for.
pub(crate) async fn table_lock_holders(
    conn: &mut PgConnection,
    tables: &[String],
) -> Result<Vec<LockHolder>, sqlx::Error> {
    sqlx::query_as::<_, LockHolder>(
        "SELECT DISTINCT a.pid, a.application_name, a.client_addr::text AS client_addr, \
                a.backend_start, a.state_change, a.state \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
              JOIN pg_class c ON c.oid = l.relation \
         WHERE l.locktype = 'relation' AND l.granted AND c.relname = ANY($1) \
           AND l.pid <> pg_backend_pid()",
    )
    .bind(tables)
    .fetch_all(conn)
    .await
}

/// Takes the session-level advisory lock `key`, trying until `wait` has passed. On
/// time-out the error names the holders. `what` says what the lock protects.
pub(crate) async fn acquire_lock(
    conn: &mut PgConnection,
    key: i64,
    wait: Duration,
    what: &str,
) -> Result<(), DatabaseError> {
    acquire_lock_as(conn, key, LockMode::Exclusive, wait, what).await
}

/// How a session holds an advisory lock: alone, or beside other shared holders (an
/// exclusive request waits for every shared holder, and the other way round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// `pg_advisory_lock`.
    Exclusive,
    /// `pg_advisory_lock_shared`.
    Shared,
}

/// [`acquire_lock`] in `mode`.
pub(crate) async fn acquire_lock_as(
    conn: &mut PgConnection,
    key: i64,
    mode: LockMode,
    wait: Duration,
    what: &str,
) -> Result<(), DatabaseError> {
    let started = Instant::now();
    let mut announced = false;
    let try_lock = match mode {
        LockMode::Exclusive => "SELECT pg_try_advisory_lock($1)",
        LockMode::Shared => "SELECT pg_try_advisory_lock_shared($1)",
    };
    loop {
        if let Some(cause) = cancel::cause() {
            return Err(DatabaseError::Stopped(Stopped::new(
                cause,
                anyhow!(
                    "{} while waiting for the {what} lock; nothing was done",
                    cause.describe()
                ),
            )));
        }
        let got: bool = sqlx::query_scalar(try_lock)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if got {
            return Ok(());
        }
        if started.elapsed() >= wait {
            let holders = lock_holders(conn, key).await.unwrap_or_default();
            let who = describe_holders(&holders);
            return Err(DatabaseError::LockHeld(anyhow!(
                "the {what} lock (advisory lock {key}) is still held after waiting {}s, by {who}; \
                 wait for that job to finish and rerun, or raise --lock-timeout",
                wait.as_secs()
            )));
        }
        if !announced {
            announced = true;
            let holders = lock_holders(conn, key).await.unwrap_or_default();
            tracing::info!(
                holders = %holders.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                "waiting up to {}s for the {what} lock",
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Releases the session-level advisory lock `key` (a no-op if it is not held).
pub(crate) async fn release_lock(conn: &mut PgConnection, key: i64) -> Result<(), sqlx::Error> {
    release_lock_as(conn, key, LockMode::Exclusive).await
}

/// [`release_lock`] of a lock held in `mode`.
pub(crate) async fn release_lock_as(
    conn: &mut PgConnection,
    key: i64,
    mode: LockMode,
) -> Result<(), sqlx::Error> {
    let unlock = match mode {
        LockMode::Exclusive => "SELECT pg_advisory_unlock($1)",
        LockMode::Shared => "SELECT pg_advisory_unlock_shared($1)",
    };
    sqlx::query_scalar::<_, bool>(unlock)
        .bind(key)
        .fetch_one(conn)
        .await
        .map(|_| ())
}

/// Closes a connection, ignoring errors: used on paths that already failed.
pub(crate) async fn close_quietly(conn: PgConnection) {
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::companion::failure::CompanionError;

    #[test]
    fn password_is_masked_and_scrubbed() {
        let url =
            DatabaseUrl::parse("postgres://admin:s3cr%40t@db.internal:5432/everruns").unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://admin:****@db.internal:5432/everruns"
        );
        assert_eq!(
            url.scrub("error for s3cr@t and s3cr%40t"),
            "error for **** and ****"
        );
    }

    #[test]
    fn query_parameters_are_not_shown() {
        let url = DatabaseUrl::parse("postgres://db/app?password=hunter2&sslmode=require").unwrap();
        assert!(!url.redacted().contains("hunter2"));
    }

    #[test]
    fn malformed_urls_are_usage_errors_without_the_url() {
        let err = DatabaseUrl::parse("mysql://u:topsecret@h/d").err().unwrap();
        assert!(matches!(err, DatabaseError::Url(_)));
        assert_eq!(CompanionError::from(err).exit_code(), 2);
        let err = DatabaseUrl::parse("mysql://u:topsecret@h/d").err().unwrap();
        assert!(!err.to_string().contains("topsecret"));
        let err = DatabaseUrl::parse("not a url topsecret").err().unwrap();
        assert!(matches!(err, DatabaseError::Url(_)));
        assert!(!err.to_string().contains("topsecret"));
    }
}
