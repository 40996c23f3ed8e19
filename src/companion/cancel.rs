//! Stopping the work, not only the process. On SIGTERM (ECS StopTask, a cancelled CI
//! job), SIGINT (Ctrl-C) or the deadline (`--deadline`, `EVERRUNS_ADMIN_DEADLINE`) the
//! statements this process has in flight are cancelled on the server, their
//! transactions roll back and the advisory locks are let go, before the companion
//! says it stopped.
//!
//! Why it takes a second connection: a backend does not read its client's socket
//! while a statement runs, so a process that only exits leaves its statement running
//! with every lock it holds, and sqlx 0.8 has no cancel request. Each session the
//! companion opens is recorded here by process id and start time (a pid the server
//! has since reused for someone else's session is never touched); a stop asks the
//! server, on a side session, to cancel them (`pg_cancel_backend`), gives the work a
//! moment to roll back and unlock on its own paths, then ends whatever of ours is
//! still there (`pg_terminate_backend`) and checks that nothing is left.

use std::fmt;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::watch;

use crate::companion::console::Ended;
use crate::contract::events::StopReport;
use crate::contract::exit::companion;
use crate::contract::migration_report::CancelledMigration;
use crate::contract::result::Summary;
use crate::signals::{Signal, Signals};

/// How long the work gets, after its statements were cancelled, to roll back and
/// release its locks by itself before its sessions are ended on the server.
const GRACE: Duration = Duration::from_millis(1000);
/// Bound on each step taken on the side session (connect, cancel, terminate, check).
const SIDE_STEP: Duration = Duration::from_secs(2);

/// Why the work was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// SIGTERM or SIGINT.
    Signal(Signal),
    /// The deadline passed.
    Deadline(DateTime<Utc>),
}

impl Cause {
    /// The exit status a stop for this cause ends with.
    pub fn exit_code(self) -> u8 {
        match self {
            Cause::Signal(Signal::Terminate) => companion::TERMINATED,
            Cause::Signal(Signal::Interrupt) => companion::INTERRUPTED,
            Cause::Deadline(_) => companion::DEADLINE,
        }
    }

    /// `interrupted by SIGTERM`, `stopped at its deadline 2026-12-04T10:00:00Z`.
    pub fn describe(self) -> String {
        match self {
            Cause::Signal(signal) => format!("interrupted by {signal}"),
            Cause::Deadline(at) => format!(
                "stopped at its deadline {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Signal(signal) => signal.fmt(f),
            Cause::Deadline(_) => f.write_str("deadline"),
        }
    }
}

/// Work that a stop ended before it was done: why, what was left, and what the stop
/// did in the database.
#[derive(Debug)]
pub(crate) struct Stopped {
    /// Why it was stopped.
    pub(crate) cause: Cause,
    error: anyhow::Error,
    /// The migration in flight that the stop cancelled.
    cancelled: Option<Box<CancelledMigration>>,
    /// What the stop did in the database, once it has run.
    report: Option<Box<StopReport>>,
}

impl Stopped {
    /// A stop for `cause`; `error` says what was and was not done.
    pub(crate) fn new(cause: Cause, error: anyhow::Error) -> Self {
        Self {
            cause,
            error,
            cancelled: None,
            report: None,
        }
    }

    /// The same stop, naming the migration it cancelled.
    pub(crate) fn cancelling(mut self, migration: CancelledMigration) -> Self {
        self.cancelled = Some(Box::new(migration));
        self
    }

    /// The same stop with its message rewritten by `f`.
    pub(crate) fn map(mut self, f: impl FnOnce(anyhow::Error) -> anyhow::Error) -> Self {
        self.error = f(self.error);
        self
    }

    /// `{"cancelled": ..., "stopped": ...}`, as far as known, for the result summary.
    pub(crate) fn detail(&self) -> Value {
        let mut detail = serde_json::json!({});
        if let Some(cancelled) = &self.cancelled {
            detail["cancelled"] = serde_json::to_value(cancelled).unwrap_or(Value::Null);
        }
        if let Some(report) = &self.report {
            detail["stopped"] = serde_json::to_value(report).unwrap_or(Value::Null);
        }
        detail
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// The error of work that can be stopped: it can carry a [`Stopped`], and say when it
/// is one, so that a stop is reported once, with what it did in the database.
pub(crate) trait StopError: From<Stopped> + fmt::Display {
    /// The stop this error is, if it is one.
    fn stop_mut(&mut self) -> Option<&mut Stopped>;
    /// The process could not set itself up to be stopped (signal handlers).
    fn unstoppable(error: anyhow::Error) -> Self;
}

/// A session this process opened.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Session {
    pid: i32,
    started: DateTime<Utc>,
}

struct Registry {
    cause: watch::Sender<Option<Cause>>,
    sessions: Mutex<Vec<Session>>,
    /// How to open the side session: the options of the first session recorded.
    options: Mutex<Option<PgConnectOptions>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    cause: watch::channel(None).0,
    sessions: Mutex::new(Vec::new()),
    options: Mutex::new(None),
});

/// Why the work is being stopped, once it is.
pub fn cause() -> Option<Cause> {
    *REGISTRY.cause.borrow()
}

/// Resolves when a stop is asked for (at once if it already was).
pub(crate) async fn requested() -> Cause {
    let mut rx = REGISTRY.cause.subscribe();
    loop {
        if let Some(cause) = *rx.borrow_and_update() {
            return cause;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Records a session just opened with `options`, so that a stop can reach it.
pub async fn record(
    conn: &mut PgConnection,
    options: &PgConnectOptions,
) -> Result<(), sqlx::Error> {
    let (pid, started): (i32, DateTime<Utc>) = sqlx::query_as(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .fetch_one(conn)
    .await?;
    if let Ok(mut sessions) = REGISTRY.sessions.lock() {
        sessions.push(Session { pid, started });
    }
    if let Ok(mut side) = REGISTRY.options.lock() {
        side.get_or_insert_with(|| options.clone());
    }
    Ok(())
}

/// Runs `work` (a command that works in the database) until it ends, or until a stop
/// signal or `deadline`; then stops its work in the database as the module says and
/// returns the command's result, whose exit status is the stop's (124, 130, 143)
/// unless the work had already finished.
pub(crate) async fn run_stoppable<E: StopError>(
    deadline: Option<DateTime<Utc>>,
    work: impl Future<Output = Result<(u8, Summary), E>>,
) -> Result<Ended, E> {
    if let Some(at) = deadline
        && at <= Utc::now()
    {
        return Err(E::from(Stopped::new(
            Cause::Deadline(at),
            anyhow!(
                "the deadline {} has already passed: nothing was done; give a later --deadline or EVERRUNS_ADMIN_DEADLINE",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        )));
    }
    let mut signals = Signals::install()
        .map_err(|e| E::unstoppable(anyhow!("cannot listen for SIGTERM and SIGINT: {e}")))?;
    let until_deadline = async {
        match deadline {
            Some(at) => {
                let left = (at - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(left).await;
                at
            }
            None => std::future::pending().await,
        }
    };
    let mut work = std::pin::pin!(work);
    let cause = tokio::select! {
        result = &mut work => return result.map(Ended::from),
        signal = signals.recv() => Cause::Signal(signal),
        at = until_deadline => Cause::Deadline(at),
    };
    REGISTRY.cause.send_replace(Some(cause));
    tracing::warn!(
        "{}: cancelling the statements in flight and releasing the locks",
        cause.describe()
    );
    let cancelled = match side_session(SideAction::Cancel).await {
        Ok(n) => n,
        Err(error) => {
            tracing::warn!("could not ask the server to cancel: {error}");
            0
        }
    };
    let finished = tokio::time::timeout(GRACE, &mut work).await;
    let terminated = side_session(SideAction::Terminate).await;
    let released = match &terminated {
        Ok(_) => side_session(SideAction::Confirm).await,
        Err(error) => Err(error.clone()),
    };
    let report = StopReport {
        by: cause.to_string(),
        cancelled_sessions: cancelled,
        terminated_sessions: terminated.as_ref().copied().unwrap_or(0),
        database_released: released.as_ref().is_ok_and(|left| *left == 0),
        unconfirmed: match released {
            Ok(0) => None,
            Ok(left) => Some(format!("{left} session(s) still open after being ended")),
            Err(error) => Some(error),
        },
    };
    if report.database_released {
        tracing::info!(
            cancelled = report.cancelled_sessions,
            terminated = report.terminated_sessions,
            "the database is released: no statement of this job runs and it holds no lock"
        );
    } else {
        tracing::error!(
            "could not confirm that the database is released ({}); the server ends the sessions \
             when it notices they are gone (client_connection_check_interval)",
            report.unconfirmed.as_deref().unwrap_or("unknown")
        );
    }
    let stopped = |code, summary| Ended {
        code,
        summary,
        stopped: Some(report.clone()),
    };
    let with_report = |stop: &mut Stopped| stop.report = Some(Box::new(report.clone()));
    // The work failed without saying it was stopped: the stop is what it ended with.
    let stopped_by = |error: anyhow::Error| {
        let mut stop = Stopped::new(cause, error);
        with_report(&mut stop);
        E::from(stop)
    };
    match finished {
        // Done before the stop could matter: the work's own answer.
        Ok(Ok((companion::SUCCESS, summary))) => Ok(stopped(companion::SUCCESS, summary)),
        // Ended early by the stop (a cancelled statement reads as a failed check): the
        // stop's code, the partial summary kept.
        Ok(Ok((code, summary))) => {
            if code != cause.exit_code() {
                tracing::warn!(
                    "{}: the statement in flight was cancelled; what it would have ended with (exit {code}) does not stand",
                    cause.describe()
                );
            }
            Ok(stopped(cause.exit_code(), summary))
        }
        Ok(Err(mut error)) => match error.stop_mut() {
            Some(stop) => {
                with_report(stop);
                Err(error)
            }
            None => Err(stopped_by(anyhow!(
                "{}: the statement in flight was cancelled and rolled back ({error})",
                cause.describe()
            ))),
        },
        Err(_) => Err(stopped_by(anyhow!(
            "{}: the work did not stop within {} ms of the cancel; its sessions were ended \
             on the server (transactions rolled back, locks released)",
            cause.describe(),
            GRACE.as_millis()
        ))),
    }
}

#[derive(Clone, Copy)]
enum SideAction {
    /// Cancel the statement each of our sessions runs.
    Cancel,
    /// End each of our sessions still open.
    Terminate,
    /// Count our sessions still open, waiting a little for ended ones to go.
    Confirm,
}

/// The sessions of this process: the same pid and the same start time ($1, $2).
macro_rules! ours {
    () => {
        " FROM pg_stat_activity a \
          JOIN unnest($1::int[], $2::timestamptz[]) AS s(pid, started) \
            ON a.pid = s.pid AND a.backend_start = s.started"
    };
}

/// Does `action` to this process's sessions from a session of its own; returns how
/// many sessions it concerned.
async fn side_session(action: SideAction) -> Result<u64, String> {
    let sessions = REGISTRY
        .sessions
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    if sessions.is_empty() {
        return Ok(0);
    }
    let Some(options) = REGISTRY.options.lock().ok().and_then(|o| o.clone()) else {
        return Ok(0);
    };
    let pids: Vec<i32> = sessions.iter().map(|s| s.pid).collect();
    let starts: Vec<DateTime<Utc>> = sessions.iter().map(|s| s.started).collect();
    let sql = match action {
        SideAction::Cancel => {
            concat!(
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(a.pid))",
                ours!(),
                " WHERE a.state = 'active'"
            )
        }
        SideAction::Terminate => concat!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))",
            ours!()
        ),
        SideAction::Confirm => concat!("SELECT count(*)", ours!()),
    };
    let bounded = async {
        let mut side = options
            .application_name("everruns-admin (stop)")
            .connect()
            .await
            .map_err(|e| format!("no side session: {}", first_line(&e)))?;
        let mut result;
        let mut asked = 0;
        loop {
            asked += 1;
            result = sqlx::query_scalar::<_, i64>(sql)
                .bind(&pids)
                .bind(&starts)
                .fetch_one(&mut side)
                .await
                .map_err(|e| format!("the server refused: {}", first_line(&e)));
            // An ended session takes a moment to go: Confirm asks again, for up to 1 s.
            if !matches!(action, SideAction::Confirm)
                || !matches!(result, Ok(n) if n > 0)
                || asked == 10
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = side.close().await;
        result.map(|n| n.max(0) as u64)
    };
    tokio::time::timeout(SIDE_STEP, bounded)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", SIDE_STEP.as_secs())))
}

/// The first line of an error, which for sqlx never holds the password.
fn first_line(error: &sqlx::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
