//! One task launched and followed to its end: RunTask (started again when a start
//! fails for a passing reason, within `--start-retries`), then following, then the
//! conclusion.

use tokio::sync::mpsc;

use super::conclude::settle;
use super::follow::{Ending, LogSource, Target, follow, reattach_hint, stop_on_the_way_out};
use super::launch;
use super::launch::{Job, RunTaskPlan, idempotent_token, rejected};
use super::prepare::{follow_settings, log_target, prepare};
use super::report::{FailedStart, LaunchFailure, TaskReport};
use crate::contract::exit::launcher;
use crate::launcher::context::Context;
use crate::launcher::error::LauncherError;
use crate::launcher::flags::OutputFormat;
use crate::launcher::task::{TaskSnapshot, placement};
use crate::signals::Handled;

/// Launches `job`, follows it to its end and returns the exit status with the report
/// (`None` when nothing was launched), printing no JSON: for commands such as
/// `keys rotate` that act on the companion's result themselves.
pub(crate) async fn launch_and_follow(
    context: &Context,
    job: &Job,
    needs_confirmation: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<(u8, Option<TaskReport>), LauncherError> {
    let config = &context.config;
    let options = &context.options;
    let renderer = &context.renderer;
    let what = job.argv.join(" ");
    let own_token = idempotent_token(&config.idempotency, &job.argv);
    let Some((clients, definition)) = prepare(
        context,
        job,
        &what,
        own_token.as_deref(),
        needs_confirmation,
        interrupts,
    )
    .await?
    else {
        return Ok((launcher::INTERRUPTED, None));
    };

    let mut plan = RunTaskPlan::new(config, &definition.arn, job, &context.operator)?;
    plan.deadline = launch::companion_deadline(options.timeout);
    let mut report = plan.report(config, &context.operator);
    // From here a task may exist: a signal is this function's to handle.
    let _handled = Handled::claim();
    let stop_reason = format!(
        "Interrupted by {} via run-admin-task",
        context.operator.display()
    );
    let sent_at = chrono::Utc::now();
    let first_token = plan.client_token.clone();
    let mut attempt = 1;
    // Each pass is one start; a start that proves no container ran and may work next
    // time (--start-retries) goes round again.
    loop {
        let reply = loop {
            // A signal while RunTask is in flight waits for its answer (bounded by the call
            // timeout) to stop the task it started; a second one leaves.
            let (reply, interrupted) = {
                let send = plan.send(&clients.ecs);
                tokio::pin!(send);
                let mut interrupted = false;
                let reply = loop {
                    tokio::select! {
                        reply = &mut send => break reply?,
                        Some(()) = interrupts.recv() => {
                            if interrupted {
                                renderer.warn(&format!(
                                    "left while RunTask was in flight: a task may have started; `run-admin-task --cluster {} list` shows it",
                                    config.cluster
                                ));
                                return Ok((launcher::INTERRUPTED, Some(report)));
                            }
                            interrupted = true;
                            renderer.warn("interrupted while RunTask was in flight: waiting for its answer to stop the task it starts (Ctrl-C again to leave)");
                        }
                    }
                };
                (reply, interrupted)
            };
            if interrupted {
                if let Some(task) = &reply.task {
                    report.apply_snapshot(task);
                    if stop_on_the_way_out(
                        &clients,
                        &config.cluster,
                        &task.arn,
                        &stop_reason,
                        renderer,
                    )
                    .await
                    {
                        renderer.warn(&format!(
                            "interrupted: task {} was asked to stop",
                            task.id()
                        ));
                    }
                }
                report.interrupted = true;
                report.exit_code = launcher::INTERRUPTED;
                return Ok((launcher::INTERRUPTED, Some(report)));
            }
            // No container started: starting again may find the capacity this one lacked.
            if reply.task.is_none()
                && attempt <= config.start_retries
                && launch::worth_starting_again(&reply.failures)
            {
                let why = format!("refused, no container ran: {}", rejected(&reply.failures));
                let failed = FailedStart {
                    attempt,
                    failures: reply.failures,
                };
                if !start_again(context, &mut report, failed, &why, interrupts).await {
                    return Ok((launcher::INTERRUPTED, Some(report)));
                }
                attempt += 1;
                plan.client_token = launch::attempt_token(&first_token, attempt);
                continue;
            }
            break reply;
        };
        let task = match reply.task {
            Some(task) if reply.failures.is_empty() => task,
            _ => {
                let error = rejected(&reply.failures);
                renderer.warn(&format!("run-admin-task: {error}"));
                report.failures = reply.failures;
                report.exit_code = error.exit_code();
                report.error = Some(error.to_string());
                return Ok((error.exit_code(), Some(report)));
            }
        };
        report.apply_snapshot(&task);
        let log = log_target(&clients, &definition, &config.container, task.id())?;
        if let Some(log) = &log {
            report.apply_log(log);
        }
        report.attached = own_token.is_some() && started_earlier(&task, sent_at);
        if report.attached {
            renderer.note(&format!(
            "attached to task {} running `{what}` in {}: an earlier run with the same idempotency key ({}) started it{}; no second task was started",
            task.arn,
            placement(&task.arn, &config.cluster),
            plan.client_token,
            task.created_at
                .map(|t| format!(" at {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
                .unwrap_or_default()
        ));
        } else {
            renderer.note(&format!(
                "started task {} running `{what}` in {}",
                task.arn,
                placement(&task.arn, &config.cluster)
            ));
        }
        match &log {
            Some(log) => renderer.note(&format!("logs: {} {}", log.group, log.stream)),
            None => renderer.warn(&format!(
                "container {} does not use the awslogs driver: following its status only",
                config.container
            )),
        }

        if options.no_wait {
            if options.output == OutputFormat::Human {
                crate::stdio::out_line(format_args!("{}", task.arn));
            }
            renderer.warn(&format!("not waiting: {}", reattach_hint(&task.arn)));
            return Ok((0, Some(report)));
        }

        let target = Target {
            cluster: config.cluster.clone(),
            task: task.arn.clone(),
            container: config.container.clone(),
            log: log.as_ref().map(|l| LogSource {
                client: clients.logs_in(Some(&l.region)),
                group: l.group.clone(),
                stream: l.stream.clone(),
            }),
        };
        let followed = follow(
            &clients,
            &target,
            &follow_settings(context, Some(definition.container(&config.container)?)),
            renderer,
            interrupts,
            &stop_reason,
        )
        .await?;
        if followed.ending == Ending::Finished
            && followed.result.is_none()
            && attempt <= config.start_retries
            && let Some(last) = followed
                .last
                .as_ref()
                .filter(|task| launch::failed_to_start_transiently(task))
        {
            renderer.finish();
            let failure = LaunchFailure {
                arn: Some(last.arn.clone()),
                reason: last.stop_code.clone(),
                detail: last.stopped_reason.clone(),
            };
            let why = format!(
                "failed, no container ran: task {} stopped before its container started ({}: {})",
                last.id(),
                failure.reason.as_deref().unwrap_or_default(),
                failure.detail.as_deref().unwrap_or_default()
            );
            let failed = FailedStart {
                attempt,
                failures: vec![failure],
            };
            if !start_again(context, &mut report, failed, &why, interrupts).await {
                return Ok((launcher::INTERRUPTED, Some(report)));
            }
            attempt += 1;
            plan.client_token = launch::attempt_token(&first_token, attempt);
            continue;
        }
        let code = settle(context, &mut report, followed, log.as_ref());
        return Ok((code, Some(report)));
    }
}

/// Between two starts of one job (`--start-retries`): says why start `failed.attempt`
/// did not run, records it in the report and waits 1 s, 2 s, 4 s, ... before the next.
/// `false` when the operator interrupted the wait (no task is running then).
async fn start_again(
    context: &Context,
    report: &mut TaskReport,
    failed: FailedStart,
    why: &str,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> bool {
    let renderer = &context.renderer;
    let attempt = failed.attempt;
    let pause = std::time::Duration::from_secs(1 << (attempt - 1).min(5));
    renderer.warn(&format!(
        "start {attempt} {why}; starting again in {} s ({} more at most; --start-retries)",
        pause.as_secs(),
        context.config.start_retries + 1 - attempt
    ));
    report.failed_starts.push(failed);
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        Some(()) = interrupts.recv() => {
            renderer.warn("interrupted between starts: no task is running");
            report.interrupted = true;
            report.exit_code = launcher::INTERRUPTED;
            false
        }
    }
}

/// Whether RunTask answered with a task started before this request: a new Fargate
/// task is PROVISIONING (PENDING on EC2) with a fresh `createdAt`. The margin absorbs
/// clock skew between this machine and ECS.
fn started_earlier(task: &TaskSnapshot, sent_at: chrono::DateTime<chrono::Utc>) -> bool {
    let margin = chrono::Duration::seconds(5);
    !matches!(task.last_status.as_str(), "PROVISIONING" | "PENDING")
        || task
            .created_at
            .is_some_and(|created| created < sent_at - margin)
}
