//! What a person sees: the container's log lines, the task's status transitions, and
//! progress bars driven by the companion's progress events.
//!
//! On a terminal, one live line on stderr shows the status spinner, or the bar of the
//! phase in progress, with log lines printed above it. Anywhere else (a pipe, a CI log), status transitions are
//! plain lines on stderr and there is never a spinner. Log lines and a command's own
//! report go to stdout, except with `--output json`, where stdout holds only the final
//! document (kept here, printed once) and they go to stderr. In GitHub Actions it prints
//! what [`crate::launcher::github_actions`] makes: the log groups and the annotations.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::contract::events::{Event, LogLine};
use crate::launcher::flags::OutputFormat;
use crate::launcher::github_actions::{Conclusion, LogGroup};

/// One log line, understood.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rendered {
    /// Text to print as a line (a readable protocol event or a foreign line as-is).
    Line(String),
    /// A progress event, drawn as a bar on a terminal and printed as a line otherwise.
    Progress {
        /// What is being done.
        phase: String,
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
        /// When the companion wrote it (rates are measured on its clock, not on the
        /// arrival of log batches).
        ts: DateTime<Utc>,
        /// The same event as a text line.
        text: String,
    },
}

/// Renders one log line: protocol events readably, anything else unchanged.
pub(crate) fn render_line(line: &LogLine) -> Rendered {
    let Some(event) = &line.event else {
        return Rendered::Line(line.text.clone());
    };
    match event {
        Event::Progress {
            ts,
            phase,
            done,
            total,
        } => Rendered::Progress {
            phase: phase.clone(),
            done: *done,
            total: *total,
            ts: *ts,
            text: event.to_text(),
        },
        other => Rendered::Line(other.to_text()),
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

/// The progress of one phase, as far as it has been shown.
struct Phase {
    rate: PhaseRate,
    finished: bool,
}

/// The phases seen so far and which one the live line shows.
#[derive(Default)]
struct Phases {
    seen: HashMap<String, Phase>,
    /// The phase whose bar is on the live line, if any.
    shown: Option<String>,
}

/// Prints everything the launcher shows while following a task.
pub struct Renderer {
    output: OutputFormat,
    quiet: bool,
    /// On a terminal, the one live line at the bottom: the status spinner, or the bar of
    /// the phase in progress. One line only: several live lines get redrawn out of
    /// place around the log lines printed above them.
    live: Option<ProgressBar>,
    /// Where the live line draws once it has something to show: it stays hidden until
    /// then, so a command that never follows a task (doctor, status) shows no empty
    /// spinner around its lines.
    live_target: Arc<Mutex<Option<ProgressDrawTarget>>>,
    /// The command's JSON document (`--output json`), printed once when it ends.
    document: Arc<Mutex<Option<String>>>,
    phases: Arc<Mutex<Phases>>,
    /// The spinner's text (`task ID STATUS`), shown again when a phase's bar ends.
    status_text: Arc<Mutex<String>>,
    started: Instant,
    captured: Option<Arc<Mutex<Vec<String>>>>,
    groups: Option<Arc<LogGroup>>,
    /// For one shard of a sharded job: its label and the job's progress board.
    shard: Option<(String, Arc<ShardBoard>)>,
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

    /// Records a shard's progress in a phase and returns the sums over all shards
    /// and phases seen, with the job's rate and time left.
    fn record(
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

const SPINNER_TEMPLATE: &str = "{spinner} {msg} ({elapsed})";

impl Renderer {
    /// A renderer for this process: a live line only when stderr is a terminal and
    /// `--quiet` is not given.
    pub fn new(output: OutputFormat, quiet: bool) -> Self {
        Self::with_terminal(output, quiet, std::io::stderr().is_terminal())
    }

    /// A renderer that believes stderr is (or is not) a terminal.
    pub(crate) fn with_terminal(output: OutputFormat, quiet: bool, terminal: bool) -> Self {
        let live = terminal && !quiet;
        Self::with_live(output, quiet, live.then(ProgressDrawTarget::stderr))
    }

    /// A renderer whose live line, if any, draws on `target` once it has content.
    fn with_live(output: OutputFormat, quiet: bool, target: Option<ProgressDrawTarget>) -> Self {
        Renderer {
            output,
            quiet,
            live: target.is_some().then(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                bar.set_style(spinner_style());
                bar
            }),
            live_target: Arc::new(Mutex::new(target)),
            document: Arc::new(Mutex::new(None)),
            phases: Arc::new(Mutex::new(Phases::default())),
            status_text: Arc::new(Mutex::new(String::new())),
            started: Instant::now(),
            captured: None,
            groups: None,
            shard: None,
        }
    }

    /// The renderer of shard `label` of a sharded job: the same outputs and live line,
    /// its lines prefixed with `[label]`, its progress summed on `board`.
    pub(crate) fn for_shard(&self, label: &str, board: &Arc<ShardBoard>) -> Renderer {
        Renderer {
            output: self.output,
            quiet: self.quiet,
            live: self.live.clone(),
            live_target: Arc::clone(&self.live_target),
            document: Arc::clone(&self.document),
            phases: Arc::clone(&self.phases),
            status_text: Arc::clone(&self.status_text),
            started: self.started,
            captured: self.captured.clone(),
            groups: self.groups.clone(),
            shard: Some((label.to_string(), Arc::clone(board))),
        }
    }

    /// `[label] line` for a shard's renderer, the line itself otherwise.
    fn prefixed(&self, line: &str) -> String {
        match &self.shard {
            Some((label, _)) => format!("[{label}] {line}"),
            None => line.to_string(),
        }
    }

    /// Puts the container's log lines into GitHub Actions groups titled `title`.
    pub(crate) fn with_log_groups(mut self, title: &str) -> Self {
        self.groups = Some(Arc::new(LogGroup::new(title)));
        self
    }

    /// A renderer that records what it would print (`stdout: ` or `stderr: ` before
    /// each line) instead of printing it, for tests of what an operator sees.
    pub fn capturing(output: OutputFormat) -> Self {
        Renderer {
            captured: Some(Arc::new(Mutex::new(Vec::new()))),
            ..Self::with_terminal(output, false, false)
        }
    }

    /// A capturing renderer whose live line draws on `target`, for tests of what the
    /// live line shows.
    #[cfg(test)]
    fn capturing_with_live(output: OutputFormat, target: ProgressDrawTarget) -> Self {
        Renderer {
            captured: Some(Arc::new(Mutex::new(Vec::new()))),
            ..Self::with_live(output, false, Some(target))
        }
    }

    /// The live line, made visible: called when there is something to show on it.
    fn shown_live(&self) -> Option<&ProgressBar> {
        let live = self.live.as_ref()?;
        if let Some(target) = self
            .live_target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            live.set_draw_target(target);
        }
        Some(live)
    }

    /// The lines recorded by a [`Renderer::capturing`] renderer.
    pub fn captured(&self) -> Vec<String> {
        self.captured
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Keeps `document` as the command's JSON document with `--output json`: the last
    /// one kept is printed, once, when the command ends, so stdout holds exactly one.
    pub fn document(&self, document: &impl serde::Serialize) {
        if self.output == OutputFormat::Json {
            let text = serde_json::to_string_pretty(document).expect("documents always serialize");
            *self.document.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        }
    }

    /// The JSON document kept, taken out to print.
    pub(crate) fn take_document(&self) -> Option<String> {
        self.document
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The output format in use.
    pub fn output(&self) -> OutputFormat {
        self.output
    }

    /// Time since the launcher started following.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Where the container's log lines go: stdout, unless it holds the JSON document.
    fn log_stream_is_stdout(&self) -> bool {
        self.output == OutputFormat::Human
    }

    /// Opens a log group, if groups are on and none is open.
    fn open_group(&self) {
        if let Some(lines) = self.groups.as_ref().and_then(|g| g.open()) {
            for line in lines {
                self.print_raw(self.log_stream_is_stdout(), &line);
            }
        }
    }

    /// Closes the open log group, if any.
    fn close_group(&self) {
        if let Some(lines) = self.groups.as_ref().and_then(|g| g.close()) {
            for line in lines {
                self.print_raw(self.log_stream_is_stdout(), &line);
            }
        }
    }

    /// Prints how a launch ended in GitHub Actions: its annotations, outside any log
    /// group, and the files it could not write.
    pub(crate) fn conclude_in_ci(&self, conclusion: Conclusion) {
        for line in &conclusion.annotations {
            self.workflow_command(line);
        }
        for problem in &conclusion.problems {
            self.warn(&format!("run-admin-task: {problem}"));
        }
    }

    /// A workflow command (an annotation), outside any log group, on the log lines'
    /// stream.
    pub(crate) fn workflow_command(&self, line: &str) {
        self.close_group();
        self.print_raw(self.log_stream_is_stdout(), line);
    }

    /// A line of the launcher's own: any open log group ends first.
    fn print(&self, to_stdout: bool, line: &str) {
        self.close_group();
        self.print_raw(to_stdout, &self.prefixed(line));
    }

    fn print_raw(&self, to_stdout: bool, line: &str) {
        if let Some(captured) = &self.captured {
            let stream = if to_stdout { "stdout" } else { "stderr" };
            captured
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{stream}: {line}"));
            return;
        }
        let write = || {
            if to_stdout {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            } else {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        };
        match &self.live {
            Some(live) => live.suspend(write),
            None => write(),
        }
    }

    /// Prints one of the container's log lines.
    pub(crate) fn log_line(&self, line: &LogLine) {
        let rendered = render_line(line);
        let to_stdout = self.log_stream_is_stdout();
        match rendered {
            Rendered::Line(text) => {
                self.open_group();
                self.print_raw(to_stdout, &self.prefixed(&text))
            }
            Rendered::Progress {
                phase,
                done,
                total,
                ts,
                text,
            } => match (self.shown_live(), &self.shard) {
                (Some(live), Some((label, board))) => {
                    let (done, total, estimate) = board.record(label, &phase, done, total, ts);
                    draw_job_progress(live, &board.title, done, total, estimate);
                }
                (Some(live), None) => self.draw_progress(live, phase, done, total, ts),
                (None, _) => {
                    self.open_group();
                    self.print_raw(to_stdout, &self.prefixed(&text))
                }
            },
        }
    }

    fn draw_progress(
        &self,
        live: &ProgressBar,
        phase: String,
        done: u64,
        total: Option<u64>,
        ts: DateTime<Utc>,
    ) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        let entry = phases.seen.entry(phase.clone()).or_insert_with(|| Phase {
            rate: PhaseRate::new(ts, done),
            finished: false,
        });
        if entry.finished {
            return;
        }
        let estimate = entry.rate.estimate(ts, done, total);
        if let Some(total) = total.filter(|&t| done >= t) {
            entry.finished = true;
            phases.shown = None;
            drop(phases);
            self.show_status(live);
            let line = if total == 0 {
                format!("{phase}: nothing to do")
            } else {
                let rate = estimate
                    .map(|(rate, _)| format!(" ({rate:.1}/s)"))
                    .unwrap_or_default();
                format!("{phase}: {total}/{total} done{rate}")
            };
            self.print(false, &line);
            return;
        }
        let rate = rate_text(estimate);
        if phases.shown.as_deref() == Some(phase.as_str()) && live.length() == total {
            live.set_position(done);
            live.set_message(rate);
            return;
        }
        phases.shown = Some(phase.clone());
        drop(phases);
        // Every call below may draw a frame. The status spinner shows neither position
        // nor length, so those change under it; the bar's style comes only once the bar
        // is the new phase's, so no frame mixes this phase with the last one's counts.
        self.show_status(live);
        // Not `reset()`: that would also restart the spinner's elapsed time, which then
        // ran backwards when the status came back after the phase.
        live.reset_eta();
        match total {
            Some(total) => live.set_length(total),
            None => live.unset_length(),
        }
        live.set_position(done);
        live.set_prefix(phase);
        live.set_style(progress_style(total.is_some()));
        live.set_message(rate);
    }

    /// Shows a status transition: the spinner's message on a terminal, a line on stderr
    /// otherwise.
    pub fn status(&self, task_id: &str, status: &str) {
        if self.quiet {
            return;
        }
        let elapsed = self.elapsed().as_secs_f64();
        self.print(false, &format!("[{elapsed:7.1}s] task {task_id} {status}"));
        *self.status_text.lock().unwrap_or_else(|e| e.into_inner()) =
            format!("task {task_id} {status}");
        if let Some(live) = self.shown_live() {
            // A phase's bar stays up; the status comes back when the phase ends.
            let bar_shown = self
                .phases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .shown
                .is_some();
            if !bar_shown {
                self.show_status(live);
            }
            live.enable_steady_tick(Duration::from_millis(120));
        }
    }

    fn show_status(&self, live: &ProgressBar) {
        live.set_style(spinner_style());
        live.set_message(
            self.status_text
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        );
    }

    /// A line of a command's own report (doctor's checks): on stdout, so that it can be
    /// piped and grepped; on stderr with `--output json`, where stdout holds only the
    /// JSON document. Not hidden by `--quiet`: it is what was asked for.
    pub fn report(&self, line: &str) {
        self.print(self.output == OutputFormat::Human, line);
    }

    /// An informational message on stderr (hidden by `--quiet`).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.print(false, message);
        }
    }

    /// A message on stderr that `--quiet` does not hide (warnings, the outcome of a
    /// failure, re-attach instructions).
    pub fn warn(&self, message: &str) {
        self.print(false, message);
    }

    /// Removes the live line and ends any open log group.
    pub fn finish(&self) {
        self.close_group();
        if let Some(live) = &self.live {
            live.finish_and_clear();
        }
    }
}

/// The live line of a sharded job: one bar over every shard, its total growing as
/// shards reach new phases.
fn draw_job_progress(
    live: &ProgressBar,
    title: &str,
    done: u64,
    total: u64,
    estimate: Option<(f64, Option<Duration>)>,
) {
    live.set_style(progress_style(true));
    live.set_prefix(title.to_string());
    live.set_length(total);
    live.set_position(done);
    live.set_message(rate_text(estimate));
}

/// `123.4/s, ETA 2m 3s` for a bar's message; empty before there is a rate.
fn rate_text(estimate: Option<(f64, Option<Duration>)>) -> String {
    estimate
        .map(|(rate, eta)| {
            let eta = eta
                .map(|d| {
                    format!(
                        ", ETA {}",
                        humantime::format_duration(Duration::from_secs(d.as_secs()))
                    )
                })
                .unwrap_or_default();
            format!("{rate:.1}/s{eta}")
        })
        .unwrap_or_default()
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template(SPINNER_TEMPLATE).expect("the template is valid")
}

/// A bar when the phase's total is known; a spinner with the count when it is not,
/// since a bar needs a length to be drawn against.
fn progress_style(total_known: bool) -> ProgressStyle {
    if total_known {
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
            .expect("the template is valid")
            .progress_chars("=> ")
    } else {
        ProgressStyle::with_template("{spinner} {prefix} {pos} {msg}")
            .expect("the template is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_log_lines_are_rendered_readably() {
        let raw = r#"{"event":"log","ts":"2026-01-02T03:04:05Z","level":"info","msg":"applied","fields":{"version":3,"table":"users"}}"#;
        let line = LogLine::parse(raw);
        let (rendered, event) = (render_line(&line), line.event);
        assert!(event.is_some());
        assert_eq!(
            rendered,
            Rendered::Line("2026-01-02T03:04:05.000Z  INFO applied version=3 table=users".into())
        );
    }

    #[test]
    fn foreign_lines_are_printed_as_they_are() {
        for raw in [
            "plain text  with  spaces",
            r#"{"level":"info","msg":"someone else"}"#,
            "",
        ] {
            let line = LogLine::parse(raw);
            let (rendered, event) = (render_line(&line), line.event);
            assert_eq!(event, None);
            assert_eq!(rendered, Rendered::Line(raw.to_string()));
        }
    }

    #[test]
    fn progress_events_carry_their_counts() {
        let raw = r#"{"event":"progress","ts":"2026-01-02T03:04:05Z","phase":"reencrypt llm_providers","done":5,"total":10}"#;
        match render_line(&LogLine::parse(raw)) {
            Rendered::Progress {
                phase,
                done,
                total,
                text,
                ..
            } => {
                assert_eq!(
                    (phase.as_str(), done, total),
                    ("reencrypt llm_providers", 5, Some(10))
                );
                assert!(text.ends_with("reencrypt llm_providers: 5/10"));
            }
            other => panic!("not progress: {other:?}"),
        }
    }

    #[test]
    fn rate_and_eta_use_the_companions_clock() {
        let t0: DateTime<Utc> = "2026-01-02T03:04:00Z".parse().unwrap();
        let rate = PhaseRate::new(t0, 0);
        assert_eq!(rate.estimate(t0, 0, Some(100)), None);
        let (per_sec, eta) = rate
            .estimate(t0 + chrono::Duration::seconds(10), 20, Some(100))
            .unwrap();
        assert!((per_sec - 2.0).abs() < 1e-9);
        assert_eq!(eta, Some(Duration::from_secs(40)));
    }

    #[test]
    fn result_events_render_as_a_summary_line() {
        let raw = r#"{"event":"result","ts":"2026-01-02T03:04:05Z","command":"migrate","exit_code":0,"summary":{"applied":2}}"#;
        let line = LogLine::parse(raw);
        let (rendered, event) = (render_line(&line), line.event);
        assert!(matches!(event, Some(Event::Result { exit_code: 0, .. })));
        assert_eq!(
            rendered,
            Rendered::Line("migrate finished with exit code 0".into())
        );
    }

    /// A terminal that records every line indicatif draws on it.
    #[derive(Debug, Clone, Default)]
    struct Frames(std::sync::Arc<Mutex<Vec<String>>>);

    impl Frames {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl indicatif::TermLike for Frames {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.trim().is_empty() {
                self.0.lock().unwrap().push(s.to_owned());
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn progress(phase: &str, done: u64, total: Option<u64>, second: i64) -> LogLine {
        let ts: DateTime<Utc> = "2026-01-02T03:04:00Z".parse().unwrap();
        LogLine::parse(
            &Event::Progress {
                ts: ts + chrono::Duration::seconds(second),
                phase: phase.into(),
                done,
                total,
            }
            .to_json_line(),
        )
    }

    /// A renderer drawing its live line, without a rate limit, on recorded frames.
    fn live_renderer() -> (Renderer, ProgressBar, Frames) {
        let frames = Frames::default();
        let renderer = Renderer::capturing_with_live(
            OutputFormat::Human,
            ProgressDrawTarget::term_like(Box::new(frames.clone())),
        );
        let bar = renderer.live.clone().expect("a live line");
        assert!(bar.is_hidden(), "nothing to show yet: no spinner");
        renderer.status("abc123", "RUNNING");
        assert!(!bar.is_hidden());
        frames.take();
        (renderer, bar, frames)
    }

    #[test]
    fn shards_share_one_bar_that_sums_them_and_prefix_their_lines() {
        let (renderer, bar, _frames) = live_renderer();
        let board = ShardBoard::new("reencrypt (2 shards)");
        let one = renderer.for_shard("1/2", &board);
        let two = renderer.for_shard("2/2", &board);
        one.log_line(&progress("reencrypt a", 10, Some(50), 0));
        two.log_line(&progress("reencrypt a", 5, Some(40), 1));
        assert_eq!((bar.length(), bar.position()), (Some(90), 15));
        one.log_line(&progress("reencrypt a", 50, Some(50), 2));
        one.log_line(&progress("reencrypt b", 1, Some(10), 3));
        assert_eq!((bar.length(), bar.position()), (Some(100), 56));
        assert_eq!(bar.prefix(), "reencrypt (2 shards)");
        two.log_line(&LogLine::parse("plain line"));
        two.warn("a warning");
        let lines = renderer.captured();
        assert!(
            lines.contains(&"stdout: [2/2] plain line".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"stderr: [2/2] a warning".to_string()),
            "{lines:?}"
        );
    }

    #[test]
    fn one_json_document_is_kept_and_only_for_json_output() {
        let human = Renderer::capturing(OutputFormat::Human);
        human.document(&serde_json::json!({"a": 1}));
        assert_eq!(human.take_document(), None);
        let json = Renderer::capturing(OutputFormat::Json);
        json.document(&serde_json::json!({"a": 1}));
        json.document(&serde_json::json!({"b": 2}));
        assert_eq!(json.take_document().as_deref(), Some("{\n  \"b\": 2\n}"));
        assert_eq!(json.take_document(), None, "printed once");
    }

    #[test]
    fn a_command_that_follows_no_task_shows_no_spinner() {
        let frames = Frames::default();
        let renderer = Renderer::capturing_with_live(
            OutputFormat::Human,
            ProgressDrawTarget::term_like(Box::new(frames.clone())),
        );
        renderer.report("ok   region: us-east-1");
        renderer.note("a note");
        renderer.warn("a warning");
        renderer.finish();
        assert!(renderer.live.as_ref().unwrap().is_hidden());
        assert_eq!(frames.take(), Vec::<String>::new());
    }

    #[test]
    fn the_spinners_time_never_goes_back_after_a_phase() {
        let (renderer, bar, _frames) = live_renderer();
        std::thread::sleep(Duration::from_millis(50));
        let before = bar.elapsed();
        renderer.log_line(&progress("migrate", 0, Some(4), 0));
        renderer.log_line(&progress("migrate", 4, Some(4), 1));
        assert!(bar.elapsed() >= before, "{:?} < {before:?}", bar.elapsed());
    }

    #[test]
    fn a_bar_starts_at_its_real_total_and_moves() {
        let (renderer, bar, frames) = live_renderer();
        renderer.log_line(&progress("migrate", 0, Some(4), 0));
        assert_eq!((bar.length(), bar.position()), (Some(4), 0));
        assert_eq!(bar.prefix(), "migrate");
        for done in 1..4 {
            renderer.log_line(&progress("migrate", done, Some(4), done as i64));
            assert_eq!(bar.position(), done);
        }
        let drawn = frames.take();
        let bars: Vec<_> = drawn.iter().filter(|f| f.contains("migrate")).collect();
        assert!(!bars.is_empty(), "{drawn:?}");
        assert!(bars.iter().all(|f| f.contains("/4")), "{drawn:?}");
        assert!(bars.iter().any(|f| f.contains("3/4")), "{drawn:?}");
        assert!(!drawn.iter().any(|f| f.contains("0/0")), "{drawn:?}");
        renderer.log_line(&progress("migrate", 4, Some(4), 4));
        assert!(
            renderer
                .captured()
                .iter()
                .any(|l| l.starts_with("stderr: migrate: 4/4 done")),
            "{:?}",
            renderer.captured()
        );
    }

    #[test]
    fn a_new_phase_never_shows_the_last_ones_counts() {
        let (renderer, bar, frames) = live_renderer();
        renderer.log_line(&progress("reencrypt llm_providers", 0, Some(2000), 0));
        renderer.log_line(&progress("reencrypt llm_providers", 1500, Some(2000), 1));
        // The phase is cut short (a stop, a failure): its bar is still up.
        frames.take();
        renderer.log_line(&progress("reencrypt mcp_servers", 0, Some(500), 2));
        assert_eq!((bar.length(), bar.position()), (Some(500), 0));
        let drawn = frames.take();
        // The ticker may redraw the old phase just before the switch: only as it was.
        let first_new = drawn
            .iter()
            .position(|f| f.contains("mcp_servers"))
            .unwrap_or_else(|| panic!("the new phase was never drawn: {drawn:?}"));
        for (i, f) in drawn.iter().enumerate() {
            if f.contains("llm_providers") {
                assert!(
                    i < first_new && f.contains("1500/2000"),
                    "a frame mixes phases: {drawn:?}"
                );
            }
            if f.contains("mcp_servers") {
                assert!(
                    f.contains("0/500") && !f.contains("2000") && !f.contains("1500"),
                    "a frame mixes phases: {drawn:?}"
                );
            }
        }

        // A phase of unknown total is a spinner with a count, not a bar against 0.
        renderer.log_line(&progress("scan", 7, None, 3));
        assert_eq!((bar.length(), bar.position()), (None, 7));
        let drawn = frames.take();
        let scans: Vec<_> = drawn.iter().filter(|f| f.contains("scan")).collect();
        assert!(!scans.is_empty(), "{drawn:?}");
        assert!(
            scans
                .iter()
                .all(|f| f.contains("scan 7") && !f.contains('/') && !f.contains('[')),
            "{drawn:?}"
        );
    }

    #[test]
    fn an_empty_phase_is_a_line_not_a_bar() {
        let (renderer, bar, frames) = live_renderer();
        renderer.log_line(&progress("reencrypt mcp_servers", 0, Some(0), 0));
        renderer.log_line(&progress("reencrypt mcp_servers", 0, Some(0), 1));
        assert!(frames.take().iter().all(|f| !f.contains("0/0")));
        assert_eq!(
            renderer.captured(),
            [
                "stderr: [    0.0s] task abc123 RUNNING",
                "stderr: reencrypt mcp_servers: nothing to do"
            ]
        );
        assert_ne!(bar.prefix(), "reencrypt mcp_servers");
    }

    #[test]
    fn a_status_change_keeps_the_bar_of_the_phase_in_progress() {
        let (renderer, bar, frames) = live_renderer();
        renderer.log_line(&progress("migrate", 1, Some(3), 0));
        renderer.status("abc123", "DEACTIVATING");
        frames.take();
        renderer.log_line(&progress("migrate", 2, Some(3), 1));
        let drawn = frames.take();
        assert!(drawn.iter().any(|f| f.contains("2/3")), "{drawn:?}");
        assert_eq!(bar.position(), 2);
        renderer.log_line(&progress("migrate", 3, Some(3), 2));
        assert_eq!(bar.message(), "task abc123 DEACTIVATING");
    }
}
