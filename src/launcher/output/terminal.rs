//! The terminal sink: lines on stdout and stderr, and on a terminal one live line at
//! the bottom of stderr that shows the status spinner, or the bar of the phase in
//! progress, with the lines printed above it.
//!
//! One live line only: several get redrawn out of place around the lines printed above
//! them. Anywhere else (a pipe, a CI log) there is no live line: status transitions and
//! progress are plain lines.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::sink::{PhaseRate, Progress, Shard, Sink, Stream};

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

/// Prints to this process's stdout and stderr (or records what it would print).
pub(crate) struct Terminal {
    /// Where the container's log lines go: stdout, unless it holds a JSON document.
    log_stream: Stream,
    /// On a terminal, the one live line.
    live: Option<ProgressBar>,
    /// Where the live line draws once it has something to show: it stays hidden until
    /// then, so a command that never follows a task (doctor, status) shows no empty
    /// spinner around its lines.
    live_target: Mutex<Option<ProgressDrawTarget>>,
    phases: Mutex<Phases>,
    /// The spinner's text (`task ID STATUS`), shown again when a phase's bar ends.
    status_text: Mutex<String>,
    /// What would have been printed (`stdout: ` or `stderr: ` before each line), when
    /// recording instead of printing.
    captured: Option<Mutex<Vec<String>>>,
}

const SPINNER_TEMPLATE: &str = "{spinner} {msg} ({elapsed})";

impl Terminal {
    /// A terminal sink whose log lines go to `log_stream`, with a live line drawn on
    /// `live` once it has content, recording instead of printing when `capture`.
    pub(crate) fn new(log_stream: Stream, live: Option<ProgressDrawTarget>, capture: bool) -> Self {
        Terminal {
            log_stream,
            live: live.is_some().then(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                bar.set_style(spinner_style());
                bar
            }),
            live_target: Mutex::new(live),
            phases: Mutex::new(Phases::default()),
            status_text: Mutex::new(String::new()),
            captured: capture.then(|| Mutex::new(Vec::new())),
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

    fn draw_progress(&self, live: &ProgressBar, progress: &Progress) {
        let Progress {
            phase,
            done,
            total,
            ts,
            ..
        } = progress;
        let (done, total) = (*done, *total);
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        let entry = phases.seen.entry(phase.clone()).or_insert_with(|| Phase {
            rate: PhaseRate::new(*ts, done),
            finished: false,
        });
        if entry.finished {
            return;
        }
        let estimate = entry.rate.estimate(*ts, done, total);
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
            self.line(Stream::Stderr, &line);
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
        live.set_prefix(phase.clone());
        live.set_style(progress_style(total.is_some()));
        live.set_message(rate);
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
}

impl Sink for Terminal {
    fn log_stream(&self) -> Stream {
        self.log_stream
    }

    fn line(&self, stream: Stream, line: &str) {
        if let Some(captured) = &self.captured {
            let stream = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            captured
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{stream}: {line}"));
            return;
        }
        let write = || match stream {
            Stream::Stdout => {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            Stream::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        };
        match &self.live {
            Some(live) => live.suspend(write),
            None => write(),
        }
    }

    fn progress(&self, progress: &Progress, shard: Option<&Shard>) -> bool {
        let Some(live) = self.shown_live() else {
            return false;
        };
        match shard {
            Some(shard) => {
                let (done, total, estimate) = shard.board.record(
                    &shard.label,
                    &progress.phase,
                    progress.done,
                    progress.total,
                    progress.ts,
                );
                live.set_style(progress_style(true));
                live.set_prefix(shard.board.title().to_string());
                live.set_length(total);
                live.set_position(done);
                live.set_message(rate_text(estimate));
            }
            None => self.draw_progress(live, progress),
        }
        true
    }

    fn status(&self, line: &str, spinner: String) {
        self.line(Stream::Stderr, line);
        *self.status_text.lock().unwrap_or_else(|e| e.into_inner()) = spinner;
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

    fn finish(&self) {
        if let Some(live) = &self.live {
            live.finish_and_clear();
        }
    }

    fn captured(&self) -> Vec<String> {
        self.captured
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    #[cfg(test)]
    fn live_bar(&self) -> Option<ProgressBar> {
        self.live.clone()
    }
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
