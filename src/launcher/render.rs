//! What a person sees: the container's log lines, the task's status transitions, and
//! progress bars driven by the companion's progress events.
//!
//! On a terminal, one live line on stderr shows the status spinner, or the bar of the
//! phase in progress, with log lines printed above it. Anywhere else (a pipe, a CI log), status transitions are
//! plain lines on stderr and there is never a spinner. Log lines go to stdout, except
//! with `--output json`, where stdout holds only the final document and they go to
//! stderr.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::launcher::config::OutputFormat;
use crate::protocol::{Event, LogLine};

/// One log line, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
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
pub fn render_line(line: &LogLine) -> Rendered {
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
pub struct PhaseRate {
    first: (DateTime<Utc>, u64),
}

impl PhaseRate {
    /// Starts measuring at the first event of a phase.
    pub fn new(ts: DateTime<Utc>, done: u64) -> Self {
        PhaseRate { first: (ts, done) }
    }

    /// Units per second and the estimated time left, once there is something to
    /// measure.
    pub fn estimate(
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

/// Prints everything the launcher shows while following a task.
pub struct Renderer {
    output: OutputFormat,
    quiet: bool,
    /// On a terminal, the one live line at the bottom: the status spinner, or the bar of
    /// the phase in progress. One line only: several live lines get redrawn out of
    /// place around the log lines printed above them.
    live: Option<ProgressBar>,
    phases: Mutex<HashMap<String, Phase>>,
    /// The spinner's text (`task ID STATUS`), shown again when a phase's bar ends.
    status_text: Mutex<String>,
    started: Instant,
    captured: Option<Mutex<Vec<String>>>,
}

const SPINNER_TEMPLATE: &str = "{spinner} {msg} ({elapsed})";

impl Renderer {
    /// A renderer for this process: a live line only when stderr is a terminal and
    /// `--quiet` is not given.
    pub fn new(output: OutputFormat, quiet: bool) -> Self {
        Self::with_terminal(output, quiet, std::io::stderr().is_terminal())
    }

    /// A renderer that believes stderr is (or is not) a terminal.
    pub fn with_terminal(output: OutputFormat, quiet: bool, terminal: bool) -> Self {
        Renderer {
            output,
            quiet,
            live: (terminal && !quiet).then(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(spinner_style());
                bar
            }),
            phases: Mutex::new(HashMap::new()),
            status_text: Mutex::new(String::new()),
            started: Instant::now(),
            captured: None,
        }
    }

    /// A renderer that records what it would print (`stdout: ` or `stderr: ` before
    /// each line) instead of printing it, for tests of what an operator sees.
    pub fn capturing(output: OutputFormat) -> Self {
        Renderer {
            captured: Some(Mutex::new(Vec::new())),
            ..Self::with_terminal(output, false, false)
        }
    }

    /// The lines recorded by a [`Renderer::capturing`] renderer.
    pub fn captured(&self) -> Vec<String> {
        self.captured
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The output format in use.
    pub fn output(&self) -> OutputFormat {
        self.output
    }

    /// Time since the launcher started following.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn print(&self, to_stdout: bool, line: &str) {
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

    /// Prints one of the container's log lines and returns its protocol event, if any.
    pub fn log_line(&self, line: &LogLine) {
        let rendered = render_line(line);
        let to_stdout = self.output == OutputFormat::Human;
        match rendered {
            Rendered::Line(text) => self.print(to_stdout, &text),
            Rendered::Progress {
                phase,
                done,
                total,
                ts,
                text,
            } => match &self.live {
                Some(live) => self.draw_progress(live, phase, done, total, ts),
                None => self.print(to_stdout, &text),
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
        let entry = phases.entry(phase.clone()).or_insert_with(|| Phase {
            rate: PhaseRate::new(ts, done),
            finished: false,
        });
        if entry.finished {
            return;
        }
        let estimate = entry.rate.estimate(ts, done, total);
        if total.is_some_and(|t| done >= t) {
            entry.finished = true;
            drop(phases);
            self.show_status(live);
            let rate = estimate
                .map(|(rate, _)| format!(" ({rate:.1}/s)"))
                .unwrap_or_default();
            self.print(false, &format!("{phase}: {done}/{done} done{rate}"));
            return;
        }
        let rate = estimate.map(|(rate, eta)| {
            let eta = eta
                .map(|d| {
                    format!(
                        ", ETA {}",
                        humantime::format_duration(Duration::from_secs(d.as_secs()))
                    )
                })
                .unwrap_or_default();
            format!("{rate:.1}/s{eta}")
        });
        let template = if total.is_some() {
            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg}"
        } else {
            "{prefix} {pos} {msg}"
        };
        live.set_style(
            ProgressStyle::with_template(template)
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        live.set_prefix(phase);
        live.set_length(total.unwrap_or(0));
        live.set_position(done);
        live.set_message(rate.unwrap_or_default());
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
        if let Some(live) = &self.live {
            self.show_status(live);
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

    /// Removes the live line.
    pub fn finish(&self) {
        if let Some(live) = &self.live {
            live.finish_and_clear();
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template(SPINNER_TEMPLATE).expect("the template is valid")
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
}
