//! The sink trait every output implements, and what travels through it: the two
//! streams, one progress event, a shard's board and a phase's rate. It depends on
//! nothing else of the output, so each sink can depend on it alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The two streams a line can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Where what a command shows goes. Lines arrive already worded (and prefixed for a
/// shard); a sink decides only where and how they appear.
pub(crate) trait Sink: Send + Sync {
    /// The stream of the container's log lines and a command's own report.
    fn log_stream(&self) -> Stream;
    /// Prints one line on `stream`, as it is.
    fn line(&self, stream: Stream, line: &str);
    /// One of the container's log lines.
    fn container_line(&self, text: &str) {
        self.line(self.log_stream(), text);
    }
    /// A line of the launcher's own.
    fn own_line(&self, stream: Stream, line: &str) {
        self.line(stream, line);
    }
    /// Draws a progress event on the live line; `false` when there is none, and the
    /// event is to be printed as a line.
    fn progress(&self, progress: &Progress, shard: Option<&Shard>) -> bool;
    /// A status transition: `line` printed, `spinner` shown on the live line.
    fn status(&self, line: &str, spinner: String);
    /// The command's document, rendered by `render` if this sink prints one.
    fn document(&self, _render: &dyn Fn() -> String) {}
    /// The document kept, taken out to print.
    fn take_document(&self) -> Option<String> {
        None
    }
    /// A workflow command (an annotation), on the log lines' stream.
    fn workflow_command(&self, line: &str) {
        self.line(self.log_stream(), line);
    }
    /// Ends what is still open (the live line, a log group).
    fn finish(&self);
    /// What a recording sink would have printed.
    fn captured(&self) -> Vec<String>;
    /// The live line, for tests of what it shows.
    #[cfg(test)]
    fn live_bar(&self) -> Option<indicatif::ProgressBar>;
}

/// One progress event of the container.
pub(crate) struct Progress {
    /// What is being done.
    pub(crate) phase: String,
    /// Units done.
    pub(crate) done: u64,
    /// Units in all, when known.
    pub(crate) total: Option<u64>,
    /// When the companion wrote it (rates are measured on its clock, not on the
    /// arrival of log batches).
    pub(crate) ts: DateTime<Utc>,
}

/// One shard of a sharded job: its label, and the job's progress board.
#[derive(Clone)]
pub(crate) struct Shard {
    pub(crate) label: String,
    pub(crate) board: Arc<ShardBoard>,
}

/// The progress of a job split across tasks: each shard's latest count per phase, so
/// the one live line shows the sum over every shard.
pub(crate) struct ShardBoard {
    title: String,
    counts: Mutex<BoardCounts>,
}

/// Each (shard, phase)'s latest done and total, and the job's rate since the first.
#[derive(Default)]
struct BoardCounts {
    latest: HashMap<(String, String), (u64, u64)>,
    rate: Option<PhaseRate>,
}

impl ShardBoard {
    /// A board whose bar is titled `title` (`reencrypt (4 shards)`).
    pub fn new(title: &str) -> Arc<Self> {
        Arc::new(ShardBoard {
            title: title.to_string(),
            counts: Mutex::new(BoardCounts::default()),
        })
    }

    /// The bar's title.
    pub(crate) fn title(&self) -> &str {
        &self.title
    }

    /// Records a shard's progress in a phase and returns the sums over all shards
    /// and phases seen, with the job's rate and time left.
    pub(crate) fn record(
        &self,
        shard: &str,
        phase: &str,
        done: u64,
        total: Option<u64>,
        ts: DateTime<Utc>,
    ) -> (u64, u64, Option<(f64, Option<Duration>)>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.latest.insert(
            (shard.to_string(), phase.to_string()),
            (done, total.unwrap_or(done)),
        );
        let done: u64 = counts.latest.values().map(|(d, _)| d).sum();
        let total: u64 = counts.latest.values().map(|(_, t)| t).sum();
        let rate = counts.rate.get_or_insert_with(|| PhaseRate::new(ts, done));
        (done, total, rate.estimate(ts, done, Some(total)))
    }
}

/// Rate and remaining time of one phase, measured between its first and latest event.
#[derive(Debug, Clone)]
pub(crate) struct PhaseRate {
    first: (DateTime<Utc>, u64),
}

impl PhaseRate {
    /// Starts measuring at the first event of a phase.
    pub fn new(ts: DateTime<Utc>, done: u64) -> Self {
        PhaseRate { first: (ts, done) }
    }

    /// Units per second and the estimated time left, once there is something to
    /// measure.
    pub(crate) fn estimate(
        &self,
        ts: DateTime<Utc>,
        done: u64,
        total: Option<u64>,
    ) -> Option<(f64, Option<Duration>)> {
        let elapsed = (ts - self.first.0).to_std().ok()?.as_secs_f64();
        let progressed = done.checked_sub(self.first.1)?;
        if elapsed <= 0.0 || progressed == 0 {
            return None;
        }
        let rate = progressed as f64 / elapsed;
        let eta = total.map(|t| Duration::from_secs_f64(t.saturating_sub(done) as f64 / rate));
        Some((rate, eta))
    }
}
