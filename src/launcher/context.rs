//! What every command works with: the options as given, the resolved configuration,
//! who is running, where output goes; and the two things every command may do with
//! them: ask for confirmation, and print the one JSON document.

use tokio::sync::mpsc;

use crate::launcher::config::LaunchConfig;
use crate::launcher::confirm::{Decision, confirm, ensure_can_ask};
use crate::launcher::error::LauncherError;
use crate::launcher::flags::GlobalOptions;
use crate::launcher::identity::Operator;
use crate::launcher::output::Renderer;

/// What every command works with.
pub struct Context {
    /// The options as given.
    pub options: GlobalOptions,
    /// The resolved configuration.
    pub config: LaunchConfig,
    /// Who is running the launcher.
    pub operator: Operator,
    /// Where output goes.
    pub renderer: Renderer,
}

/// Asks before `what` in a `confirm = true` environment, with this invocation's
/// settings (`--yes`, the environment's name, the cluster); `false` when the operator
/// interrupted the question. Refusals are errors (exit 2).
pub(crate) async fn confirmed(
    context: &Context,
    what: &str,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<bool, LauncherError> {
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
pub(crate) fn ensure_can_confirm(context: &Context, what: &str) -> Result<(), LauncherError> {
    let config = &context.config;
    ensure_can_ask(
        config.confirm,
        context.options.yes,
        config.env_name.as_deref(),
        &config.cluster,
        what,
    )
}
