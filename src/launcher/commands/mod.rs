//! One module per command, and what they share: finding an existing task and its log
//! stream, and printing the JSON document.

pub mod doctor;
pub mod keys;
pub mod list;
pub mod logs;
pub mod run;
pub mod shell;
pub mod status;
pub mod stop;
pub mod task_def;

use anyhow::anyhow;
use tokio::sync::mpsc;

use super::clients::Clients;
use super::config::OutputFormat;
use super::confirm::{Decision, confirm, ensure_can_ask};
use super::follow::FollowSettings;
use super::outcome::console_url;
use super::task::TaskSnapshot;
use super::task_definition::TaskDefinitionInfo;
use super::watch::{Poll, PollTiming, TaskWatcher};
use super::{Command, Context};
use crate::exit::ExitError;

/// Runs `command` and returns the exit status.
pub async fn dispatch(
    context: &Context,
    command: &Command,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, ExitError> {
    match command {
        Command::Companion { .. } | Command::Run { .. } => {
            let argv = command.container_argv().unwrap_or_default();
            let job = super::launch::Job {
                argv,
                mutating: command.is_mutating(),
            };
            run::run(context, &job, command.needs_confirmation(), interrupts).await
        }
        Command::Logs { task, follow } => logs::logs(context, task, *follow, interrupts).await,
        Command::Status { task } => status::status(context, task).await,
        Command::Stop { task, reason } => stop::stop(context, task, reason.as_deref()).await,
        Command::List { limit } => list::list(context, *limit).await,
        Command::Shell(args) => shell::shell(context, args, interrupts).await,
        Command::Keys(command) => keys::keys(context, command, interrupts).await,
        Command::Doctor(options) => doctor::doctor(context, options, interrupts).await,
        Command::TaskDef(request) => task_def::task_def(context, request).await,
    }
}

/// Asks before `what` in a `confirm = true` environment, with this invocation's
/// settings (`--yes`, the environment's name, the cluster); `false` when the operator
/// interrupted the question. Refusals are errors (exit 2).
pub async fn confirmed(
    context: &Context,
    what: &str,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<bool, ExitError> {
    let config = &context.config;
    let decision = confirm(
        config.confirm,
        context.options.yes,
        config.env_name.as_deref(),
        &config.cluster,
        what,
        interrupts,
    )
    .await?;
    Ok(decision == Decision::Proceed)
}

/// Refuses at once, before any AWS call, what [`confirmed`] would have to ask about
/// when there is no terminal to ask on and no `--yes`.
pub fn ensure_can_confirm(context: &Context, what: &str) -> Result<(), ExitError> {
    let config = &context.config;
    ensure_can_ask(
        config.confirm,
        context.options.yes,
        config.env_name.as_deref(),
        &config.cluster,
        what,
    )
}

/// Following settings from the global options.
pub fn follow_settings(context: &Context) -> FollowSettings {
    FollowSettings {
        timeout: context.options.timeout,
        stop_on_timeout: context.options.stop_on_timeout,
        ..FollowSettings::default()
    }
}

/// Where a task's container logs, as an operator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The log group.
    pub group: String,
    /// The stream of this task's container.
    pub stream: String,
    /// The log region (the awslogs region, else the client's).
    pub region: String,
}

impl LogTarget {
    /// The CloudWatch console link to the stream.
    pub fn console_url(&self) -> String {
        console_url(&self.region, &self.group, &self.stream)
    }
}

/// The log target of `container` in a task running `definition`.
pub fn log_target(
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
pub async fn describe_task(
    clients: &Clients,
    cluster: &str,
    task: &str,
) -> Result<TaskSnapshot, ExitError> {
    let timing = PollTiming {
        missing_grace: std::time::Duration::ZERO,
        ..PollTiming::default()
    };
    let mut watcher = TaskWatcher::new(clients.ecs.clone(), cluster, task, timing);
    match watcher.poll().await {
        Ok(Poll::Seen(snapshot)) => Ok(*snapshot),
        Ok(Poll::Unavailable(problem)) => Err(ExitError::new(
            crate::exit::launcher::NEVER_RAN,
            anyhow!("{problem}; check the endpoint and network, then try again"),
        )),
        Ok(Poll::NotVisibleYet) | Err(_) => Err(ExitError::usage(anyhow!(
            "task {task} was not found on cluster {cluster}: check the id, --cluster and --region (ECS keeps stopped tasks visible for about an hour)"
        ))),
    }
}

/// The log target of an existing task, looked up from its task definition; `None`
/// when its container does not log to CloudWatch.
pub async fn existing_log_target(
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

/// Prints the one JSON document of `--output json` on stdout.
pub fn print_json(output: OutputFormat, document: &impl serde::Serialize) {
    if output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(document).expect("documents always serialize")
        );
    }
}
