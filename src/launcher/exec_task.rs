//! The task an ECS Exec session runs in (`shell`, `tunnel`): started running the
//! companion's `shell` standby with ECS Exec enabled, awaited until its Exec agent
//! runs, and stopped when the session ends. A task attached with `--task` is only
//! awaited: this invocation did not start it, so it does not stop it.

use tokio::sync::mpsc;

use crate::contract::exit::launcher;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::{Context, confirmed, ensure_can_confirm};
use crate::launcher::ecs_exec::{self, ExecTiming, WaitEnd, wait_until_ready};
use crate::launcher::error::LauncherError;
use crate::launcher::job::existing::describe_task;
use crate::launcher::job::follow::stop_task;
use crate::launcher::job::launch::{Job, RunTaskPlan, rejected};
use crate::launcher::job::outcome::TaskOutcome;
use crate::launcher::job::report::TaskReport;
use crate::launcher::job::watch::{Poll, PollTiming, TaskWatcher};
use crate::launcher::task::{TaskSnapshot, task_id};
use crate::launcher::task_definition::fetch::{self, Purpose, TaskDefinitionInfo};
use crate::signals::Handled;

/// The companion command a session task runs: it waits for sessions without a terminal.
pub(crate) const COMPANION_SHELL: &str = "shell";

/// What is checked before any AWS call: the plugin is installed and, when a task is to
/// be launched (`launches`), the subnets are set and a confirmation can be asked.
pub(crate) fn preflight(
    context: &Context,
    purpose: &str,
    launches: bool,
) -> Result<std::path::PathBuf, LauncherError> {
    let plugin = ecs_exec::find_plugin(std::env::var_os("PATH").as_deref())?;
    if launches {
        context.config.require_subnets()?;
        ensure_can_confirm(context, purpose)?;
    }
    Ok(plugin)
}

/// Starts a session task for `purpose` (`shell`, `tunnel`): checks that the task
/// definition allows ECS Exec, asks in a `confirm = true` environment, and sends RunTask
/// with ECS Exec enabled. `None` when the operator interrupted the question.
pub(crate) async fn launch(
    context: &Context,
    clients: &Clients,
    purpose: &str,
    report: &mut TaskReport,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Option<TaskSnapshot>, LauncherError> {
    let config = &context.config;
    let renderer = &context.renderer;
    let definition = fetch::fetch(clients, &config.task_definition, Purpose::Launch).await?;
    let info = TaskDefinitionInfo::from_sdk(&definition);
    info.container(&config.container)?;
    for warning in ecs_exec::check_task_definition(&definition, &config.container)? {
        renderer.warn(&format!("warning: {warning}"));
    }
    if !confirmed(context, purpose, interrupts).await? {
        renderer.warn("interrupted; nothing was launched");
        return Ok(None);
    }
    let job = Job {
        argv: vec![COMPANION_SHELL.to_string()],
        mutating: false,
    };
    let mut plan = RunTaskPlan::new(config, &info.arn, &job, &context.operator)?;
    plan.enable_execute_command = true;
    report.task_definition = Some(info.arn.clone());
    report.command = job.argv.clone();
    report.started_by = Some(plan.started_by.clone());
    // From here a task may exist: this command stops it on a signal.
    let _handled = Handled::claim();
    let reply = tokio::select! {
        reply = plan.send(&clients.ecs) => reply?,
        Some(()) = interrupts.recv() => {
            renderer.warn(&format!(
                "interrupted while RunTask was in flight: a task may have started; `run-admin-task --cluster {} list` shows it",
                config.cluster
            ));
            return Ok(None);
        }
    };
    match reply.task {
        Some(task) if reply.failures.is_empty() => {
            renderer.note(&format!(
                "started task {} for a {purpose} in {}; waiting for ECS Exec",
                task.arn,
                crate::launcher::task::placement(&task.arn, &config.cluster)
            ));
            Ok(Some(task))
        }
        _ => Err(rejected(&reply.failures)),
    }
}

/// The session task of one invocation, and whether that invocation stops it after.
pub(crate) struct SessionTask<'a> {
    /// `shell` or `tunnel`, for messages and the stop reason.
    pub purpose: &'a str,
    /// The task.
    pub task: TaskSnapshot,
    /// Stop it when the session ends (started here, without `--keep`).
    pub stop_after: bool,
    /// How to poll it.
    pub timing: ExecTiming,
    /// Set once it has been stopped (or seen stopped), so that it is stopped once.
    pub ended: std::cell::Cell<bool>,
}

impl<'a> SessionTask<'a> {
    /// The report a session command starts from.
    pub(crate) fn report(context: &Context) -> TaskReport {
        let config = &context.config;
        TaskReport {
            cluster: config.cluster.clone(),
            container: config.container.clone(),
            operator: Some(context.operator.display()),
            ..TaskReport::default()
        }
    }

    /// The task `attach` names, or a new one for `purpose` (stopped after unless
    /// `keep`); `None` when the operator interrupted before a launch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn obtain(
        context: &Context,
        clients: &Clients,
        purpose: &'a str,
        attach: Option<&str>,
        keep: bool,
        timing: &ExecTiming,
        report: &mut TaskReport,
        interrupts: &mut mpsc::UnboundedReceiver<()>,
    ) -> Result<Option<Self>, LauncherError> {
        let (task, started_here) = match attach {
            Some(task) => (
                describe_task(clients, &context.config.cluster, task).await?,
                false,
            ),
            None => match launch(context, clients, purpose, report, interrupts).await? {
                Some(task) => (task, true),
                None => return Ok(None),
            },
        };
        report.apply_snapshot(&task);
        Ok(Some(SessionTask {
            purpose,
            task,
            stop_after: started_here && !keep,
            timing: *timing,
            ended: Default::default(),
        }))
    }

    /// Waits until the task takes sessions and returns its container's runtime id, or,
    /// when it never will, the exit status (125 stopped first, 130 interrupted) after
    /// reporting it and stopping the task if it is ours.
    pub(crate) async fn ready(
        &self,
        context: &Context,
        clients: &Clients,
        report: &mut TaskReport,
        interrupts: &mut mpsc::UnboundedReceiver<()>,
    ) -> Result<Result<String, u8>, LauncherError> {
        let config = &context.config;
        let renderer = &context.renderer;
        let waited = wait_until_ready(
            &clients.ecs,
            &config.cluster,
            &self.task.arn,
            &config.container,
            &self.timing,
            renderer,
            interrupts,
        )
        .await;
        match waited {
            Ok(WaitEnd::Ready(runtime_id)) => Ok(Ok(runtime_id)),
            Ok(WaitEnd::Stopped(last)) => {
                renderer.finish();
                let outcome = TaskOutcome::decide(&last, &config.container, None);
                renderer.warn(&format!(
                    "task {} stopped before a session could start",
                    self.task.id()
                ));
                for line in outcome.explanation.iter().chain(&outcome.hints) {
                    renderer.warn(&format!("  {line}"));
                }
                report.apply_snapshot(&last);
                report.apply_outcome(&outcome);
                report.exit_code = launcher::NEVER_RAN;
                self.ended.set(true);
                Ok(Err(launcher::NEVER_RAN))
            }
            Ok(WaitEnd::Interrupted) => {
                renderer.finish();
                renderer.warn("interrupted before the session started");
                self.end(context, clients, report, "Interrupted").await;
                report.interrupted = true;
                report.exit_code = launcher::INTERRUPTED;
                Ok(Err(launcher::INTERRUPTED))
            }
            Err(e) => Err(self.no_session(context, clients, report, e).await),
        }
    }

    /// A failure before the session opened: the task is stopped first if it is ours, so
    /// nothing is left running, then the failure is returned.
    pub(crate) async fn no_session(
        &self,
        context: &Context,
        clients: &Clients,
        report: &mut TaskReport,
        error: LauncherError,
    ) -> LauncherError {
        context.renderer.finish();
        if self.stop_after {
            context.renderer.warn(&format!("run-admin-task: {error}"));
            self.end(context, clients, report, "No session").await;
        }
        error
    }

    /// Stops the task if it is ours (once) and reports how it ended, waiting for STOPPED up to
    /// the stop limit. Problems are reported, not raised: the session already happened.
    pub(crate) async fn end(
        &self,
        context: &Context,
        clients: &Clients,
        report: &mut TaskReport,
        why: &str,
    ) {
        if !self.stop_after || self.ended.replace(true) {
            return;
        }
        let config = &context.config;
        let renderer = &context.renderer;
        let task = &self.task;
        let reason = format!(
            "{why}: {} of {} via run-admin-task",
            self.purpose,
            context.operator.display()
        );
        if let Err(e) = stop_task(clients, &config.cluster, &task.arn, &reason).await {
            renderer.warn(&format!("{e}"));
            return;
        }
        renderer.note(&format!("stopping task {}", task.id()));
        let poll = PollTiming {
            fast: self.timing.interval.min(PollTiming::default().fast),
            running_ceiling: self.timing.interval,
            transitional_ceiling: self.timing.interval,
            ..PollTiming::default()
        };
        let mut watcher = TaskWatcher::new(clients.ecs.clone(), &config.cluster, &task.arn, poll);
        let deadline = tokio::time::Instant::now() + self.timing.stop_limit;
        loop {
            if let Ok(Poll::Seen(last)) = watcher.poll().await
                && last.is_stopped()
            {
                let outcome = TaskOutcome::decide(&last, &config.container, None);
                renderer.note(&format!("task {} stopped", last.id()));
                for line in &outcome.explanation {
                    renderer.note(&format!("  {line}"));
                }
                report.apply_snapshot(&last);
                report.apply_outcome(&outcome);
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                renderer.warn(&format!(
                    "task {} is still stopping; check with `run-admin-task status {}`",
                    task_id(&task.arn),
                    task_id(&task.arn)
                ));
                return;
            }
            tokio::time::sleep(watcher.next_delay()).await;
        }
    }
}
