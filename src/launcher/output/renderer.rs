//! The handle a command pushes into: it words status lines, prefixes a shard's lines,
//! reads the container's log lines once into text or progress, and hands all of it to
//! the sink chosen for the output format.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::ProgressDrawTarget;

use super::github::{Conclusion, GitHub};
use super::json::Json;
use super::sink::{Progress, Shard, ShardBoard, Sink, Stream};
use super::terminal::Terminal;
use crate::contract::events::{Event, LogLine};
use crate::launcher::flags::OutputFormat;

/// What the launcher shows, for one command (or one shard of a job): the handle every
/// part of a command pushes into.
#[derive(Clone)]
pub struct Renderer {
    sink: Arc<dyn Sink>,
    output: OutputFormat,
    quiet: bool,
    started: Instant,
    /// For one shard of a sharded job: its lines are prefixed, its progress summed.
    shard: Option<Shard>,
}

impl Renderer {
    /// A renderer for this process: a live line only when stderr is a terminal and
    /// `--quiet` is not given.
    pub fn new(output: OutputFormat, quiet: bool) -> Self {
        Self::with_terminal(output, quiet, std::io::stderr().is_terminal())
    }

    /// A renderer that believes stderr is (or is not) a terminal.
    pub(crate) fn with_terminal(output: OutputFormat, quiet: bool, terminal: bool) -> Self {
        let live = (terminal && !quiet).then(ProgressDrawTarget::stderr);
        Self::over(output, quiet, live, false)
    }

    /// A renderer over the sink for `output`, its live line (if any) drawn on `live`,
    /// recording instead of printing when `capture`.
    fn over(
        output: OutputFormat,
        quiet: bool,
        live: Option<ProgressDrawTarget>,
        capture: bool,
    ) -> Self {
        let sink: Arc<dyn Sink> = match output {
            OutputFormat::Human => Arc::new(Terminal::new(Stream::Stdout, live, capture)),
            OutputFormat::Json => Arc::new(Json::new(Terminal::new(Stream::Stderr, live, capture))),
        };
        Renderer {
            sink,
            output,
            quiet,
            started: Instant::now(),
            shard: None,
        }
    }

    /// A renderer that records what it would print (`stdout: ` or `stderr: ` before
    /// each line) instead of printing it, for tests of what an operator sees.
    pub fn capturing(output: OutputFormat) -> Self {
        Self::over(output, false, None, true)
    }

    /// A capturing renderer whose live line draws on `target`, for tests of what the
    /// live line shows.
    #[cfg(test)]
    fn capturing_with_live(output: OutputFormat, target: ProgressDrawTarget) -> Self {
        Self::over(output, false, Some(target), true)
    }

    /// The renderer of shard `label` of a sharded job: the same sink, its lines
    /// prefixed with `[label]`, its progress summed on `board`.
    pub(crate) fn for_shard(&self, label: &str, board: &Arc<ShardBoard>) -> Renderer {
        Renderer {
            shard: Some(Shard {
                label: label.to_string(),
                board: Arc::clone(board),
            }),
            ..self.clone()
        }
    }

    /// Puts the container's log lines into GitHub Actions groups titled `title`.
    pub(crate) fn with_log_groups(mut self, title: &str) -> Self {
        self.sink = Arc::new(GitHub::new(self.sink, title));
        self
    }

    /// `[label] line` for a shard's renderer, the line itself otherwise.
    fn prefixed(&self, line: &str) -> String {
        match &self.shard {
            Some(shard) => format!("[{}] {line}", shard.label),
            None => line.to_string(),
        }
    }

    /// The lines recorded by a [`Renderer::capturing`] renderer.
    pub fn captured(&self) -> Vec<String> {
        self.sink.captured()
    }

    /// Keeps `document` as the command's JSON document with `--output json`: the last
    /// one kept is printed, once, when the command ends, so stdout holds exactly one.
    pub fn document(&self, document: &impl serde::Serialize) {
        self.sink.document(&|| {
            serde_json::to_string_pretty(document).expect("documents always serialize")
        });
    }

    /// The JSON document kept, taken out to print.
    pub(crate) fn take_document(&self) -> Option<String> {
        self.sink.take_document()
    }

    /// The output format in use.
    pub fn output(&self) -> OutputFormat {
        self.output
    }

    /// Time since the launcher started following.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints how a launch ended in GitHub Actions: its annotations, outside any log
    /// group, and the files it could not write.
    pub(crate) fn conclude_in_ci(&self, conclusion: Conclusion) {
        for line in &conclusion.annotations {
            self.sink.workflow_command(line);
        }
        for problem in &conclusion.problems {
            self.warn(&format!("run-admin-task: {problem}"));
        }
    }

    /// Prints one of the container's log lines.
    pub(crate) fn log_line(&self, line: &LogLine) {
        match render_line(line) {
            Rendered::Line(text) => self.sink.container_line(&self.prefixed(&text)),
            Rendered::Progress {
                phase,
                done,
                total,
                ts,
                text,
            } => {
                let progress = Progress {
                    phase,
                    done,
                    total,
                    ts,
                };
                if !self.sink.progress(&progress, self.shard.as_ref()) {
                    self.sink.container_line(&self.prefixed(&text));
                }
            }
        }
    }

    /// Shows a status transition: the spinner's message on a terminal, a line on stderr
    /// otherwise.
    pub fn status(&self, task_id: &str, status: &str) {
        if self.quiet {
            return;
        }
        let elapsed = self.elapsed().as_secs_f64();
        self.sink.status(
            &self.prefixed(&format!("[{elapsed:7.1}s] task {task_id} {status}")),
            format!("task {task_id} {status}"),
        );
    }

    /// A line of a command's own report (doctor's checks): on stdout, so that it can be
    /// piped and grepped; on stderr with `--output json`, where stdout holds only the
    /// JSON document. Not hidden by `--quiet`: it is what was asked for.
    pub fn report(&self, line: &str) {
        self.sink
            .own_line(self.sink.log_stream(), &self.prefixed(line));
    }

    /// An informational message on stderr (hidden by `--quiet`).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.sink.own_line(Stream::Stderr, &self.prefixed(message));
        }
    }

    /// A message on stderr that `--quiet` does not hide (warnings, the outcome of a
    /// failure, re-attach instructions).
    pub fn warn(&self, message: &str) {
        self.sink.own_line(Stream::Stderr, &self.prefixed(message));
    }

    /// Removes the live line and ends any open log group.
    pub fn finish(&self) {
        self.sink.finish();
    }
}

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

#[cfg(test)]
mod tests {
    use indicatif::ProgressBar;
    use std::sync::Mutex;

    use super::*;
    use crate::launcher::output::sink::PhaseRate;

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
        let bar = renderer.sink.live_bar().expect("a live line");
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
        assert!(renderer.sink.live_bar().unwrap().is_hidden());
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
