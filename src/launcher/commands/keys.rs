//! `keys generate|status|rotate|retire`: the encryption key secrets, handled so that no
//! stored value can become undecryptable and no key is ever printed (except the one
//! `generate` is asked for, on stdout alone, to be piped).
//!
//! `rotate` and `retire` overwrite the previous slot, so both first run the companion's
//! `reencrypt --dry-run` on ECS and refuse (exit 2, nothing changed) unless it exits 0
//! and finds no value under a key of the previous slot.

use anyhow::anyhow;
use serde_json::json;
use tokio::sync::mpsc;

use crate::contract::exit::launcher;
use crate::launcher::aws_api::clients::Clients;
use crate::launcher::context::Context;
use crate::launcher::context::{confirmed, ensure_can_confirm};
use crate::launcher::error::{KeysError, LauncherError};
use crate::launcher::flags::OutputFormat;
use crate::launcher::job::launch::Job;
use crate::launcher::job::single::launch_and_follow;
use crate::launcher::key_secrets::{
    self, DryRunFindings, SlotIds, SlotStatus, Slots, check_safe, read_ids, read_value,
    resolve_slots, slot_status,
};
use crate::launcher::task_definition::fetch::{self, Purpose};
use crate::signals::Handled;

/// Which secrets hold the keys, when named on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SecretFlags {
    /// The current key's secret [default: the task definition's SECRETS_ENCRYPTION_KEY]
    #[arg(long, value_name = "NAME|ARN")]
    pub current_secret: Option<String>,
    /// The previous keys' secret [default: the task definition's SECRETS_ENCRYPTION_KEY_PREVIOUS]
    #[arg(long, value_name = "NAME|ARN")]
    pub previous_secret: Option<String>,
}

/// `keys generate|status|rotate|retire`; the help texts are what `--help` prints.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum KeysArgs {
    /// Print a new key id:base64(32 random bytes) on stdout, to be piped
    Generate {
        /// The key id [default: the next version after the current key's]
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        #[command(flatten)]
        secrets: SecretFlags,
    },
    /// Key ids, last change and version stages of both key secrets (never the keys)
    Status {
        #[command(flatten)]
        secrets: SecretFlags,
    },
    /// Check with reencrypt --dry-run, move the current key to the previous slot, store a new one
    Rotate {
        /// The new key's id [default: the next version after the current key's]
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// Check and show what would change; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        secrets: SecretFlags,
    },
    /// Check with reencrypt --dry-run, then empty the previous slot
    Retire {
        /// Check and show what would change; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        secrets: SecretFlags,
    },
}

/// Runs a `keys` command.
pub async fn exec(
    context: &Context,
    command: &KeysArgs,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    if let KeysArgs::Generate { id: Some(id), .. } = command {
        crate::stdio::out_line(format_args!("{}", key_secrets::generate(id)?.as_str()));
        return Ok(0);
    }
    let writes = match command {
        KeysArgs::Rotate { dry_run, .. } | KeysArgs::Retire { dry_run, .. } => !dry_run,
        _ => false,
    };
    let config = &context.config;
    if writes {
        ensure_can_confirm(context, "keys")?;
    }
    let clients = Clients::connect(config).await?;
    match command {
        KeysArgs::Generate { secrets, .. } => {
            let slots = find_slots(context, &clients, secrets).await?;
            let current = current_id(&clients, &slots.current).await?;
            let id = key_secrets::next_id(&current)?;
            context
                .renderer
                .note(&format!("the current key is {current}; new key id {id}"));
            crate::stdio::out_line(format_args!("{}", key_secrets::generate(&id)?.as_str()));
            Ok(0)
        }
        KeysArgs::Status { secrets } => status(context, &clients, secrets).await,
        KeysArgs::Rotate {
            id,
            dry_run,
            secrets,
        } => {
            rotate(
                context,
                &clients,
                id.as_deref(),
                *dry_run,
                secrets,
                interrupts,
            )
            .await
        }
        KeysArgs::Retire { dry_run, secrets } => {
            retire(context, &clients, *dry_run, secrets, interrupts).await
        }
    }
}

/// The slots from flags, the config file, else the task definition (read as by any
/// command that launches nothing: before `keys rotate` launches, no task has run).
pub(crate) async fn find_slots(
    context: &Context,
    clients: &Clients,
    flags: &SecretFlags,
) -> Result<Slots, LauncherError> {
    let config = &context.config;
    let current = flags
        .current_secret
        .clone()
        .or_else(|| config.current_secret.clone());
    let previous = flags
        .previous_secret
        .clone()
        .or_else(|| config.previous_secret.clone());
    let definition = if current.is_none() || previous.is_none() {
        Some(fetch::fetch(clients, &config.task_definition, Purpose::Inspect).await?)
    } else {
        None
    };
    resolve_slots(
        current.as_deref(),
        previous.as_deref(),
        definition.as_ref(),
        &config.container,
    )
}

/// The current key's id; the slot must hold exactly one well-formed key.
async fn current_id(clients: &Clients, secret: &str) -> Result<String, LauncherError> {
    let value = read_value(&clients.secrets, secret).await?;
    single_id(secret, &value)
}

/// The id of the one key `value` (the current-key secret's value) must hold.
fn single_id(secret: &str, value: &str) -> Result<String, LauncherError> {
    match read_ids(value) {
        SlotIds { ids, problems } if ids.len() == 1 && problems.is_empty() => {
            Ok(ids.into_iter().next().unwrap_or_default())
        }
        SlotIds { ids, problems } => Err(KeysError::invalid(anyhow!(
            "secret {secret} must hold exactly one key; it holds {} readable key(s){}{}",
            ids.len(),
            if ids.is_empty() {
                String::new()
            } else {
                format!(" ({})", ids.join(", "))
            },
            if problems.is_empty() {
                String::new()
            } else {
                format!(" and: {}", problems.join("; "))
            }
        ))),
    }
}

/// `keys status`: both slots, ids only.
pub async fn status(
    context: &Context,
    clients: &Clients,
    flags: &SecretFlags,
) -> Result<u8, LauncherError> {
    let slots = find_slots(context, clients, flags).await?;
    let current = slot_status(&clients.secrets, &slots.current).await?;
    let previous = match &slots.previous {
        Some(secret) => Some(slot_status(&clients.secrets, secret).await?),
        None => None,
    };
    // A slot the companion cannot use is a failure, not a detail of the listing.
    let problems: Vec<String> = current
        .current_problem()
        .into_iter()
        .chain(
            previous
                .iter()
                .filter(|p| !p.keys.problems.is_empty())
                .map(|p| {
                    format!(
                        "the previous keys' secret has unreadable entries: {}",
                        p.keys.problems.join("; ")
                    )
                }),
        )
        .collect();
    let code = if problems.is_empty() { 0 } else { 1 };
    if context.options.output == OutputFormat::Json {
        context.renderer.document(&json!({"current": current, "previous": previous, "problems": problems, "exit_code": code}),
        );
        return Ok(code);
    }
    let mut lines = describe_slot("current", &current);
    match &previous {
        Some(previous) => lines.extend(describe_slot("previous", previous)),
        None => lines.push("previous: no secret configured".to_string()),
    }
    crate::stdio::out_line(format_args!("{}", lines.join("\n")));
    for problem in &problems {
        context.renderer.warn(&format!(
            "{problem}; fix the secret's value (`run-admin-task keys generate` makes a key) before the next deploy"
        ));
    }
    Ok(code)
}

fn describe_slot(label: &str, slot: &SlotStatus) -> Vec<String> {
    let mut lines = vec![format!(
        "{label}: {}",
        slot.arn.as_deref().unwrap_or(&slot.secret)
    )];
    lines.push(format!(
        "  key ids:      {}",
        if slot.keys.ids.is_empty() {
            "(none)".to_string()
        } else {
            slot.keys.ids.join(", ")
        }
    ));
    for problem in &slot.keys.problems {
        lines.push(format!("  unreadable:   {problem}"));
    }
    if let Some(changed) = slot.last_changed {
        lines.push(format!(
            "  last changed: {}",
            changed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    for (version, stages) in &slot.versions {
        lines.push(format!("  version:      {version} {}", stages.join(" ")));
    }
    lines
}

/// Runs `reencrypt --dry-run` on ECS and refuses (exit 2) unless overwriting a previous
/// slot holding `previous_ids` is safe. An empty previous slot protects nothing, so no
/// dry run is needed then.
async fn ensure_safe(
    context: &Context,
    current_id: &str,
    previous_ids: &[String],
    what: &str,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<(), LauncherError> {
    if previous_ids.iter().all(|id| id == current_id) {
        return Ok(());
    }
    context.renderer.note(&format!(
        "checking with `reencrypt --dry-run` on ECS that no value is still under {}",
        previous_ids.join(", ")
    ));
    let job = Job {
        argv: vec!["reencrypt".into(), "--dry-run".into()],
        mutating: false,
    };
    let (code, report) = launch_and_follow(context, &job, false, interrupts).await?;
    let result = report.as_ref().and_then(|r| r.result.as_ref());
    let Some(findings) = DryRunFindings::from_result(result) else {
        let code = if code == 0 { launcher::NEVER_RAN } else { code };
        return Err(LauncherError::Keys(KeysError::CheckEnded {
            code,
            error: anyhow!(
                "refusing to {what}: `reencrypt --dry-run` gave no result (exit {code}); nothing \
                 was changed"
            ),
        }));
    };
    check_safe(&findings, current_id, previous_ids, what)?;
    context
        .renderer
        .note("the dry run found no value under the previous slot's keys");
    Ok(())
}

/// What `rotate` and `retire` start from: both slots, each read once.
struct SlotContents {
    slots: Slots,
    previous_secret: String,
    current_value: zeroize::Zeroizing<String>,
    current_id: String,
    previous: SlotIds,
}

async fn read_slots(
    context: &Context,
    clients: &Clients,
    flags: &SecretFlags,
) -> Result<SlotContents, LauncherError> {
    let slots = find_slots(context, clients, flags).await?;
    let previous_secret = slots.require_previous()?.to_string();
    let current_value = read_value(&clients.secrets, &slots.current).await?;
    let current_id = single_id(&slots.current, &current_value)?;
    let previous = read_ids(&read_value(&clients.secrets, &previous_secret).await?);
    Ok(SlotContents {
        slots,
        previous_secret,
        current_value,
        current_id,
        previous,
    })
}

/// `keys rotate`.
async fn rotate(
    context: &Context,
    clients: &Clients,
    id: Option<&str>,
    dry_run: bool,
    flags: &SecretFlags,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let renderer = &context.renderer;
    let SlotContents {
        slots,
        previous_secret,
        current_value,
        current_id,
        previous,
    } = read_slots(context, clients, flags).await?;
    if !previous.problems.is_empty() {
        return Err(KeysError::invalid(anyhow!(
            "refusing to rotate: the previous slot {previous_secret} holds keys that cannot be \
             read ({}); fix it first; nothing was changed",
            previous.problems.join("; ")
        )));
    }
    let new_id = match id {
        Some(id) => {
            key_secrets::check_id(id)?;
            id.to_string()
        }
        None => key_secrets::next_id(&current_id)?,
    };
    if new_id == current_id || previous.ids.contains(&new_id) {
        return Err(KeysError::invalid(anyhow!(
            "key id {new_id} is already in use; values record the id they were wrapped with, so \
             pick a new one with --id"
        )));
    }
    ensure_safe(context, &current_id, &previous.ids, "rotate", interrupts).await?;
    let plan = format!(
        "previous slot {previous_secret}: {} -> {current_id}; current slot {}: {current_id} -> {new_id}",
        if previous.ids.is_empty() {
            "(empty)".to_string()
        } else {
            previous.ids.join(", ")
        },
        slots.current
    );
    if dry_run {
        renderer.note(&format!(
            "dry run: would rotate: {plan}; nothing was changed"
        ));
        context.renderer.document(&json!({"action": "rotate", "dry_run": true, "current_id": current_id, "new_id": new_id, "previous_ids": previous.ids, "changed": false}),
        );
        return Ok(0);
    }
    if !confirmed(context, &format!("keys rotate ({plan})"), interrupts).await? {
        renderer.warn("interrupted; nothing was changed");
        return Ok(launcher::INTERRUPTED);
    }
    let new_key = key_secrets::generate(&new_id)?;
    // The writes go in an order that is safe at every step, but not half-way: a signal
    // waits for them (each call is bounded).
    let _handled = Handled::claim();
    key_secrets::write_rotation(
        &clients.secrets,
        &slots,
        &current_value,
        &current_id,
        &new_key,
        &new_id,
    )
    .await?;
    drop(new_key);
    renderer.warn(&format!("rotated: {plan}"));
    renderer.warn(&format!(
        "next: (1) redeploy the application so its tasks load both keys (new values are \
         written under {new_id}); (2) run `run-admin-task reencrypt` to move every value to \
         {new_id}; (3) when `run-admin-task reencrypt --dry-run` shows nothing under \
         {current_id}, run `run-admin-task keys retire`"
    ));
    context.renderer.document(&json!({"action": "rotate", "dry_run": false, "current_id": current_id, "new_id": new_id, "previous_ids": previous.ids, "changed": true}),
    );
    Ok(0)
}

/// `keys retire`.
async fn retire(
    context: &Context,
    clients: &Clients,
    dry_run: bool,
    flags: &SecretFlags,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> Result<u8, LauncherError> {
    let renderer = &context.renderer;
    let SlotContents {
        previous_secret,
        current_id,
        previous,
        ..
    } = read_slots(context, clients, flags).await?;
    if previous.ids.is_empty() && previous.problems.is_empty() {
        renderer.note(&format!(
            "the previous slot {previous_secret} is already empty; nothing to do"
        ));
        return Ok(0);
    }
    if !previous.problems.is_empty() {
        return Err(KeysError::invalid(anyhow!(
            "refusing to retire: the previous slot {previous_secret} holds keys that cannot be \
             read ({}), so it cannot be checked that no value needs them; nothing was changed",
            previous.problems.join("; ")
        )));
    }
    ensure_safe(context, &current_id, &previous.ids, "retire", interrupts).await?;
    let plan = format!(
        "previous slot {previous_secret}: {} -> (empty)",
        previous.ids.join(", ")
    );
    if dry_run {
        renderer.note(&format!(
            "dry run: would retire: {plan}; nothing was changed"
        ));
        context.renderer.document(&json!({"action": "retire", "dry_run": true, "current_id": current_id, "previous_ids": previous.ids, "changed": false}),
        );
        return Ok(0);
    }
    if !confirmed(context, &format!("keys retire ({plan})"), interrupts).await? {
        renderer.warn("interrupted; nothing was changed");
        return Ok(launcher::INTERRUPTED);
    }
    let _handled = Handled::claim();
    key_secrets::write_retirement(&clients.secrets, &previous_secret).await?;
    renderer.warn(&format!("retired: {plan}"));
    renderer.warn(
        "next: redeploy the application so no task holds the retired keys; the old value stays \
         retrievable as the secret's AWSPREVIOUS version",
    );
    context.renderer.document(&json!({"action": "retire", "dry_run": false, "current_id": current_id, "previous_ids": previous.ids, "changed": true}),
    );
    Ok(0)
}
