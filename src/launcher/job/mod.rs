//! The launch-and-follow path that every command launching a task goes through:
//! start it ([`launch`]), follow its status and logs ([`follow`], [`watch`]), decide how
//! it ended ([`outcome`]) and report it ([`report`]). Also how an existing task and its
//! log stream are found, for `logs`, `status` and `stop`.

pub mod follow;
pub mod launch;
pub mod outcome;
pub mod report;
pub mod shards;
pub mod watch;

use anyhow::anyhow;
use tokio::sync::mpsc;

use self::follow::{
    Ending, FollowSettings, Followed, LogSource, Target, follow, reattach_hint,
    stop_on_the_way_out, stop_wait,
};
use self::launch::{
    Job, RunTaskPlan, concurrency_refusal, find_running_mutation, idempotent_token, rejected,
};
use self::outcome::TaskOutcome;
use self::report::{FailedStart, LaunchFailure, Phases, TaskReport};
use self::watch::{Poll, PollTiming, TaskWatcher};
use crate::contract::exit::{ExitError, launcher};
use crate::contract::result::CompanionResult;
use crate::launcher::clients::Clients;
use crate::launcher::context::{Context, confirmed, ensure_can_confirm};
use crate::launcher::flags::OutputFormat;
use crate::launcher::identity::{caller_account, check_account};
use crate::launcher::log_follower::LogTarget;
use crate::launcher::log_history;
use crate::launcher::render::Renderer;
use crate::launcher::task::{TaskSnapshot, placement};
use crate::launcher::task_definition::fetch::{ContainerSpec, TaskDefinitionInfo};
use crate::signals::Handled;

/// Launches `job`, follows it to its end and returns the exit status with the report
/// (`None` when nothing was launched), printing no JSON: for commands such as
/// `keys rotate` that act on the companion's result themselves.
pub(crate) async fn launch_and_follow(
    context: &Context,
    job: &Job,
    needs_confirmation: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<(u8, Option<TaskReport>), ExitError> {
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
                let why = format!(
                    "refused, no container ran: {}",
                    rejected(&reply.failures).error
                );
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
                report.exit_code = error.code;
                report.error = Some(error.to_string());
                return Ok((error.code, Some(report)));
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

/// Everything before RunTask, for one task or a sharded job: settings that a launch
/// needs, the confirmation a `confirm = true` environment asks for, the task
/// definition and its container, and the refusal to start beside a running mutating
/// job (`own_token` names a rerun's own task). `None` when the operator interrupted.
pub(crate) async fn prepare(
    context: &Context,
    job: &Job,
    what: &str,
    own_token: Option<&str>,
    needs_confirmation: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Option<(Clients, TaskDefinitionInfo)>, ExitError> {
    let config = &context.config;
    let renderer = &context.renderer;
    config.require_subnets()?;
    if needs_confirmation {
        ensure_can_confirm(context, what)?;
    }
    let clients = Clients::connect(config).await?;
    let describe = TaskDefinitionInfo::describe(&clients, &config.task_definition);
    let check = async {
        if job.mutating && !context.options.allow_concurrent {
            let family = config.family();
            find_running_mutation(&clients.ecs, &config.cluster, &family, own_token).await
        } else {
            Ok(None)
        }
    };
    let account = async {
        match &config.account_id {
            Some(_) => check_account(config, &caller_account(&clients).await?),
            None => Ok(()),
        }
    };
    let (definition, running, account) = tokio::select! {
        all = async { tokio::join!(describe, check, account) } => all,
        Some(()) = interrupts.recv() => {
            renderer.warn("interrupted; nothing was launched");
            return Ok(None);
        }
    };
    account?;
    let definition = definition?;
    definition.container(&config.container)?;
    if let Some(running) = running? {
        return Err(concurrency_refusal(&running, &config.cluster));
    }
    if needs_confirmation && !confirmed(context, what, interrupts).await? {
        renderer.warn("interrupted; nothing was launched");
        return Ok(None);
    }
    Ok(Some((clients, definition)))
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

/// Following settings from the global options and, for a task this launcher may stop,
/// its container's `stopTimeout`.
pub(crate) fn follow_settings(
    context: &Context,
    container: Option<&ContainerSpec>,
) -> FollowSettings {
    let defaults = FollowSettings::default();
    FollowSettings {
        timeout: context.options.timeout,
        stop_wait: container.map_or(defaults.stop_wait, |c| stop_wait(c.stop_timeout)),
        stop_on_timeout: context.options.stop_on_timeout,
        wait_stopped: context.config.wait_stopped,
        slow_start: context.config.slow_start,
        ..defaults
    }
}

/// The log target of `container` in a task running `definition`.
pub(crate) fn log_target(
    clients: &Clients,
    definition: &TaskDefinitionInfo,
    container: &str,
    task_id: &str,
) -> Result<Option<LogTarget>, ExitError> {
    let spec = definition.container(container)?;
    Ok(spec.logs.as_ref().map(|logs| LogTarget {
        group: logs.group.clone(),
        stream: logs.stream_name(container, task_id),
        region: logs
            .region
            .clone()
            .unwrap_or_else(|| clients.region.clone()),
    }))
}

/// Describes an existing task (id or ARN). Not found is a usage error: the id, the
/// cluster or the region is wrong, or the task stopped over an hour ago.
pub(crate) async fn describe_task(
    clients: &Clients,
    cluster: &str,
    task: &str,
) -> Result<TaskSnapshot, ExitError> {
    find_task(clients, cluster, task)
        .await?
        .ok_or_else(|| log_history::not_found(task, cluster, None))
}

/// Describes an existing task (id or ARN); `None` when ECS does not know it (it forgets
/// stopped tasks after about an hour).
pub(crate) async fn find_task(
    clients: &Clients,
    cluster: &str,
    task: &str,
) -> Result<Option<TaskSnapshot>, ExitError> {
    let timing = PollTiming {
        missing_grace: std::time::Duration::ZERO,
        ..PollTiming::default()
    };
    let mut watcher = TaskWatcher::new(clients.ecs.clone(), cluster, task, timing);
    match watcher.poll().await {
        Ok(Poll::Seen(snapshot)) => Ok(Some(*snapshot)),
        Ok(Poll::Unavailable(problem)) => Err(ExitError::new(
            crate::contract::exit::launcher::NEVER_RAN,
            anyhow!("{problem}; check the endpoint and network, then try again"),
        )),
        Ok(Poll::NotVisibleYet) | Err(_) => Ok(None),
    }
}

/// The log target of an existing task, looked up from its task definition; `None`
/// when its container does not log to CloudWatch.
pub(crate) async fn existing_log_target(
    clients: &Clients,
    task: &TaskSnapshot,
    container: &str,
) -> Result<Option<LogTarget>, ExitError> {
    let Some(arn) = &task.task_definition_arn else {
        return Ok(None);
    };
    let definition = TaskDefinitionInfo::describe(clients, arn).await?;
    log_target(clients, &definition, container, task.id())
}
