//! What following saw, turned into the exit status, the closing explanation and the
//! report.

use super::follow::{Ending, Followed, reattach_hint};
use super::outcome::TaskOutcome;
use super::report::{Phases, TaskReport};
use crate::contract::exit::launcher;
use crate::contract::result::CompanionResult;
use crate::launcher::context::Context;
use crate::launcher::log_follower::LogTarget;
use crate::launcher::output::Renderer;

/// After a stop the launcher asked for: the companion's own account of its work in the
/// database, from its result event (what was cancelled, whether the database is free).
fn say_database_side(renderer: &Renderer, task: &str, result: Option<&CompanionResult>) {
    match result.and_then(|r| r.stopped.as_ref().map(|s| (s, &r.error))) {
        Some((stopped, error)) => {
            if let Some(error) = error {
                renderer.warn(&format!("  the companion: {error}"));
            }
            renderer.warn(&format!("  database: {}", stopped.describe()));
        }
        None => renderer.warn(&format!(
            "  database: the companion's account was not read before leaving; `run-admin-task logs {task}` shows it once the container has exited"
        )),
    }
}

/// Turns what following saw into the exit status, the closing explanation on stderr,
/// and the JSON document.
pub(crate) fn conclude(
    context: &Context,
    report: &mut TaskReport,
    followed: Followed,
    log: Option<&LogTarget>,
) -> u8 {
    let code = settle(context, report, followed, log);
    context.renderer.document(report);
    code
}

/// [`conclude`] without the JSON document: the exit status and the closing explanation.
pub(crate) fn settle(
    context: &Context,
    report: &mut TaskReport,
    followed: Followed,
    log: Option<&LogTarget>,
) -> u8 {
    let renderer = &context.renderer;
    renderer.finish();
    if let Some(last) = &followed.last {
        report.apply_snapshot(last);
    }
    report.result = followed.result;
    if let Some(last) = &followed.last {
        report.phases = Phases::of(last, followed.after_exit);
    }
    let task = report.task_id.clone().unwrap_or_default();
    let code = match followed.ending {
        Ending::Finished | Ending::Interrupted => {
            let outcome = followed
                .last
                .as_ref()
                .map(|last| TaskOutcome::decide(last, &report.container, report.result.as_ref()));
            let code = match (&followed.ending, &outcome) {
                (Ending::Interrupted, _) => launcher::INTERRUPTED,
                (_, Some(outcome)) => outcome.exit_code,
                (_, None) => launcher::NEVER_RAN,
            };
            if let Some(outcome) = &outcome {
                report.apply_outcome(outcome);
                let say = |line: &str| {
                    if code == 0 {
                        renderer.note(line)
                    } else {
                        renderer.warn(line)
                    }
                };
                let status = report.last_status.clone().unwrap_or_default();
                say(&match outcome.container_exit_code {
                    Some(_) if status != "STOPPED" => format!(
                        "task {task}: its container has exited; the task is still {status} while ECS releases it (not waited for; --wait-stopped waits)"
                    ),
                    _ => format!("task {task} stopped"),
                });
                if let Some(phases) = report.phases.describe() {
                    say(&format!("  phases: {phases}"));
                }
                for line in &outcome.explanation {
                    say(&format!("  {line}"));
                }
                for hint in &outcome.hints {
                    renderer.warn(&format!("  hint: {hint}"));
                }
                match log {
                    Some(_) if !report.wrote_logs() => {
                        say("  log stream: none, the task failed to start before its container ran")
                    }
                    Some(log) => {
                        say(&format!("  log stream: {} {}", log.group, log.stream));
                        say(&format!("  console: {}", log.console_url()));
                    }
                    None => {}
                }
            }
            if followed.ending == Ending::Interrupted {
                report.interrupted = true;
                renderer.warn(&format!("interrupted: task {task} was asked to stop"));
            }
            // The companion's own deadline (this launcher's --timeout, less a margin)
            // stops it before the launcher's clock runs out: its account is told too.
            if followed.ending == Ending::Interrupted
                || report.result.as_ref().is_some_and(|r| r.stopped.is_some())
            {
                say_database_side(renderer, &task, report.result.as_ref());
            }
            code
        }
        Ending::TimedOut { stop_requested } => {
            report.timed_out = true;
            let timeout = context
                .options
                .timeout
                .map(|t| humantime::format_duration(t).to_string())
                .unwrap_or_default();
            if stop_requested {
                renderer.warn(&format!(
                    "timed out after {timeout}: task {task} was asked to stop"
                ));
                say_database_side(renderer, &task, report.result.as_ref());
            } else {
                renderer.warn(&format!(
                    "timed out after {timeout}: task {task} is still running; {}",
                    reattach_hint(&task)
                ));
            }
            launcher::TIMEOUT
        }
        Ending::Abandoned => {
            report.interrupted = true;
            launcher::INTERRUPTED
        }
    };
    report.exit_code = code;
    code
}
