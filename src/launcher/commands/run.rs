//! `migrate`, `migrate-info`, `reencrypt` and `run -- CMD...`: launch the container with
//! the command override, follow it to its end, and exit with its exit code.

use tokio::sync::mpsc;

use super::{LogTarget, follow_settings, log_target, print_json};
use super::{confirmed, ensure_can_confirm};
use crate::exit::{ExitError, launcher};
use crate::launcher::Context;
use crate::launcher::clients::Clients;
use crate::launcher::config::OutputFormat;
use crate::launcher::follow::{Ending, Followed, LogSource, Target, follow, reattach_hint};
use crate::launcher::launch::{
    Job, RunTaskPlan, concurrency_refusal, find_running_mutation, rejected,
};
use crate::launcher::outcome::TaskOutcome;
use crate::launcher::report::TaskReport;
use crate::launcher::task_definition::TaskDefinitionInfo;

/// Launches `job` and follows it.
pub async fn run(
    context: &Context,
    job: &Job,
    needs_confirmation: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, ExitError> {
    let config = &context.config;
    if context.options.print_request {
        let plan = RunTaskPlan::new(config, &config.task_definition, job, &context.operator)?;
        println!(
            "{}",
            serde_json::to_string_pretty(&plan.to_json()).expect("requests always serialize")
        );
        return Ok(0);
    }
    let (code, report) = launch_and_follow(context, job, needs_confirmation, interrupts).await?;
    if let Some(report) = &report {
        print_json(context.options.output, report);
    }
    Ok(code)
}

/// Launches `job`, follows it to its end and returns the exit status with the report
/// (`None` when nothing was launched), printing no JSON: for commands such as
/// `keys rotate` that act on the companion's result themselves.
pub async fn launch_and_follow(
    context: &Context,
    job: &Job,
    needs_confirmation: bool,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<(u8, Option<TaskReport>), ExitError> {
    let config = &context.config;
    let options = &context.options;
    let renderer = &context.renderer;
    config.require_subnets()?;
    let what = job.argv.join(" ");
    if needs_confirmation {
        ensure_can_confirm(context, &what)?;
    }

    let clients = Clients::connect(config).await?;
    let describe = TaskDefinitionInfo::describe(&clients, &config.task_definition);
    let check = async {
        if job.mutating && !options.allow_concurrent {
            find_running_mutation(&clients.ecs, &config.cluster, &config.family()).await
        } else {
            Ok(None)
        }
    };
    let (definition, running) = tokio::select! {
        both = async { tokio::join!(describe, check) } => both,
        Some(()) = interrupts.recv() => {
            renderer.warn("interrupted; nothing was launched");
            return Ok((launcher::INTERRUPTED, None));
        }
    };
    let definition = definition?;
    definition.container(&config.container)?;
    if let Some(running) = running? {
        return Err(concurrency_refusal(&running, &config.cluster));
    }

    if needs_confirmation && !confirmed(context, &what, interrupts).await? {
        renderer.warn("interrupted; nothing was launched");
        return Ok((launcher::INTERRUPTED, None));
    }

    let plan = RunTaskPlan::new(config, &definition.arn, job, &context.operator)?;
    let mut report = TaskReport {
        cluster: config.cluster.clone(),
        task_definition: Some(definition.arn.clone()),
        container: config.container.clone(),
        command: job.argv.clone(),
        started_by: Some(plan.started_by.clone()),
        operator: Some(context.operator.display()),
        ..TaskReport::default()
    };
    let reply = plan.send(&clients.ecs).await?;
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
        report.log_group = Some(log.group.clone());
        report.log_stream = Some(log.stream.clone());
        report.console_url = Some(log.console_url());
    }
    renderer.note(&format!(
        "started task {} running `{what}` on cluster {}",
        task.arn, config.cluster
    ));
    match &log {
        Some(log) => renderer.note(&format!("logs: {} {}", log.group, log.stream)),
        None => renderer.warn(&format!(
            "container {} does not use the awslogs driver: following its status only",
            config.container
        )),
    }

    if options.no_wait {
        if options.output == OutputFormat::Human {
            println!("{}", task.arn);
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
    let stop_reason = format!(
        "Interrupted by {} via run-admin-task",
        context.operator.display()
    );
    let followed = follow(
        &clients,
        &target,
        &follow_settings(context),
        renderer,
        interrupts,
        &stop_reason,
    )
    .await?;
    let code = settle(context, &mut report, followed, log.as_ref());
    Ok((code, Some(report)))
}

/// Turns what following saw into the exit status, the closing explanation on stderr,
/// and the JSON document.
pub fn conclude(
    context: &Context,
    report: &mut TaskReport,
    followed: Followed,
    log: Option<&LogTarget>,
) -> u8 {
    let code = settle(context, report, followed, log);
    print_json(context.options.output, report);
    code
}

/// [`conclude`] without the JSON document: the exit status and the closing explanation.
pub fn settle(
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
    report.result = followed
        .result
        .as_ref()
        .and_then(|event| serde_json::to_value(event).ok());
    let task = report.task_id.clone().unwrap_or_default();
    let code = match followed.ending {
        Ending::Stopped | Ending::Interrupted => {
            let outcome = followed
                .last
                .as_ref()
                .map(|last| TaskOutcome::decide(last, &report.container));
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
                // ECS's own timestamps: the launcher's wall time includes the log drain.
                let lifetime = match (report.created_at, report.stopped_at) {
                    (Some(created), Some(stopped)) => {
                        (stopped - created).to_std().unwrap_or_default()
                    }
                    _ => renderer.elapsed(),
                };
                say(&format!(
                    "task {task} stopped {:.1}s after it was created",
                    lifetime.as_secs_f64()
                ));
                for line in &outcome.explanation {
                    say(&format!("  {line}"));
                }
                for hint in &outcome.hints {
                    renderer.warn(&format!("  hint: {hint}"));
                }
                if let Some(log) = log {
                    say(&format!("  log stream: {} {}", log.group, log.stream));
                    say(&format!("  console: {}", log.console_url()));
                }
            }
            if followed.ending == Ending::Interrupted {
                report.interrupted = true;
                renderer.warn(&format!("interrupted: task {task} was stopped"));
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
