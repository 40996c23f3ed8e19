//! Everything a launch needs before RunTask, for one task or a sharded job, and the
//! settings and log target following it needs after.

use tokio::sync::mpsc;

use super::follow::{FollowSettings, stop_wait};
use super::launch::{Job, concurrency_refusal, find_running_mutation};
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::{Context, confirmed, ensure_can_confirm};
use crate::launcher::error::LauncherError;
use crate::launcher::identity::{caller_account, check_account};
use crate::launcher::log_follower::LogTarget;
use crate::launcher::task_definition::fetch::{ContainerSpec, Purpose, TaskDefinitionInfo};

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
) -> Result<Option<(Clients, TaskDefinitionInfo)>, LauncherError> {
    let config = &context.config;
    let renderer = &context.renderer;
    config.require_subnets()?;
    if needs_confirmation {
        ensure_can_confirm(context, what)?;
    }
    let clients = Clients::connect(config).await?;
    let describe = TaskDefinitionInfo::describe(&clients, &config.task_definition, Purpose::Launch);
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
) -> Result<Option<LogTarget>, LauncherError> {
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
