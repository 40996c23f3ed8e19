//! The encryption key secrets, as the launcher's `keys` commands handle them: where they
//! are, which key ids they hold, new keys and their ids, the safety check before a slot
//! is overwritten, and the writes themselves.
//!
//! Key material is read only to parse ids from it or to move it from one slot to the
//! other; it is never printed, logged or put into an error. Only ids are shown.

use std::collections::BTreeMap;

use anyhow::anyhow;
use aws_sdk_ecs::types::TaskDefinition;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::contract::result::{CompanionResult, Summary};
use crate::keyring::{KEY_LEN, Key, PREVIOUS_VAR, PRIMARY_VAR, is_valid_id, split_keys};
use crate::launcher::aws_api::aws_errors::describe_error;
use crate::launcher::error::{KeysError, LauncherError};

/// What `keys retire` writes into the previous slot: one space, which the companion
/// reads as "no previous keys" (Secrets Manager does not store an empty string).
pub(crate) const BLANK: &str = " ";

/// The two secrets that hold the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    /// The current key's secret (name or ARN).
    pub current: String,
    /// The previous keys' secret, when there is one.
    pub previous: Option<String>,
}

impl Slots {
    /// The previous slot, or the error saying how to name one.
    pub(crate) fn require_previous(&self) -> Result<&str, LauncherError> {
        self.previous.as_deref().ok_or_else(|| {
            KeysError::invalid(anyhow!(
                "no secret for the previous keys: add {PREVIOUS_VAR} to the task definition's \
                 secrets, pass --previous-secret, or set `previous_secret` in the config file"
            ))
        })
    }
}

/// Picks the slots: flags, then the config file, then the task definition's `secrets`
/// entries for `container` (their `valueFrom`).
pub(crate) fn resolve_slots(
    current: Option<&str>,
    previous: Option<&str>,
    definition: Option<&TaskDefinition>,
    container: &str,
) -> Result<Slots, LauncherError> {
    let from_definition = |variable: &str| -> Result<Option<String>, LauncherError> {
        let Some(definition) = definition else {
            return Ok(None);
        };
        let value_from = definition
            .container_definitions()
            .iter()
            .filter(|c| c.name() == Some(container))
            .flat_map(|c| c.secrets())
            .find(|s| s.name() == variable)
            .map(|s| s.value_from().to_string());
        value_from
            .map(|v| secret_id_from_value_from(&v, variable))
            .transpose()
    };
    let current = match current {
        Some(id) => id.to_string(),
        None => from_definition(PRIMARY_VAR)?.ok_or_else(|| {
            KeysError::invalid(anyhow!(
                "no secret for the current key: the task definition's container {container} has \
                 no {PRIMARY_VAR} secret; pass --current-secret or set `current_secret` in the \
                 config file"
            ))
        })?,
    };
    let previous = match previous {
        Some(id) => Some(id.to_string()),
        None => from_definition(PREVIOUS_VAR)?,
    };
    Ok(Slots { current, previous })
}

/// The Secrets Manager secret a task definition's `valueFrom` names. A JSON key,
/// version stage or version id after the ARN, or a Parameter Store reference, cannot
/// be rotated as a whole secret: exit 2 asking for the secret by flag.
pub(crate) fn secret_id_from_value_from(
    value_from: &str,
    variable: &str,
) -> Result<String, LauncherError> {
    let unsupported = |what: &str| {
        KeysError::invalid(anyhow!(
            "{variable} comes from {what} ({value_from}); `keys` handles whole Secrets Manager \
             secrets only: pass --current-secret / --previous-secret"
        ))
    };
    if !value_from.starts_with("arn:") {
        return Err(unsupported("a Parameter Store parameter"));
    }
    let parts: Vec<&str> = value_from.split(':').collect();
    if parts.get(2) != Some(&"secretsmanager") || parts.len() < 7 {
        return Err(unsupported("something other than a Secrets Manager secret"));
    }
    if parts[7..].iter().any(|p| !p.is_empty()) {
        return Err(unsupported("a JSON key or version of a secret"));
    }
    Ok(parts[..7].join(":"))
}

/// The key ids in one secret value, and what could not be read, by position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SlotIds {
    /// The ids of the keys that parse.
    pub ids: Vec<String>,
    /// Keys that do not parse: position and problem, never content.
    pub problems: Vec<String>,
}

/// Reads the ids from a slot's value (keys separated by commas and/or whitespace).
pub(crate) fn read_ids(value: &str) -> SlotIds {
    let mut slot = SlotIds::default();
    for (index, spec) in split_keys(value).into_iter().enumerate() {
        match Key::parse(spec) {
            Ok(key) => slot.ids.push(key.id().to_string()),
            Err(e) => slot.problems.push(format!("key {}: {e}", index + 1)),
        }
    }
    slot
}

/// A new key `id:base64(32 random bytes)`, for a secret value or a pipe.
pub fn generate(id: &str) -> Result<Zeroizing<String>, LauncherError> {
    check_id(id)?;
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(bytes.as_mut())
        .map_err(|e| KeysError::local(anyhow!("no randomness from the system: {e}")))?;
    Ok(Zeroizing::new(format!(
        "{id}:{}",
        STANDARD.encode(bytes.as_ref())
    )))
}

/// Refuses an id the companion would not accept.
pub(crate) fn check_id(id: &str) -> Result<(), LauncherError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(KeysError::invalid(anyhow!(
            "key id {id:?} is not valid: use 1 to 64 characters of A-Z a-z 0-9 . _ -, e.g. kek-v3"
        )))
    }
}

/// The id after `current`: its trailing number plus one, keeping zero padding
/// (`kek-v2` → `kek-v3`, `kek-v09` → `kek-v10`). An id without a trailing number has
/// no obvious successor: exit 2 asking for `--id`.
pub(crate) fn next_id(current: &str) -> Result<String, LauncherError> {
    let digits = current.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (stem, number) = current.split_at(current.len() - digits);
    let next = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or_else(|| {
            KeysError::invalid(anyhow!(
                "the current key id {current:?} does not end in a version number, so the next \
                 id cannot be proposed: pass --id (e.g. --id kek-v2)"
            ))
        })?;
    let id = format!("{stem}{next:0width$}", width = digits);
    check_id(&id)?;
    Ok(id)
}

/// What a `reencrypt --dry-run` found, read from its result event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DryRunFindings {
    /// The companion's exit code.
    pub exit_code: u8,
    /// The primary key id the task ran with.
    pub primary: Option<String>,
    /// Values found per key id.
    pub scanned_by_key_id: BTreeMap<String, u64>,
    /// Values that could not be decrypted.
    pub undecryptable: u64,
    /// The companion's error, when it failed.
    pub error: Option<String>,
}

impl DryRunFindings {
    /// Reads the result event of `reencrypt --dry-run` with the companion's own report
    /// type; `None` when there is no result event. A failed run's summary is its error.
    pub(crate) fn from_result(result: Option<&CompanionResult>) -> Option<Self> {
        let result = result?;
        let report = match &result.summary {
            Summary::Reencrypt(report) => Some(report),
            _ => None,
        };
        Some(DryRunFindings {
            exit_code: result.exit_code,
            primary: report.as_ref().map(|r| r.keys.primary.clone()),
            undecryptable: report
                .as_ref()
                .map_or(0, |r| r.by_key_id.values().map(|c| c.undecryptable).sum()),
            scanned_by_key_id: report
                .map(|r| {
                    r.by_key_id
                        .iter()
                        .map(|(id, c)| (id.clone(), c.scanned))
                        .collect()
                })
                .unwrap_or_default(),
            error: result.error.clone(),
        })
    }
}

/// Whether overwriting the previous slot (which holds `previous_ids`) is safe: the dry
/// run finished cleanly with the slot's current key as primary, and no value is under
/// a previous-slot id other than the current key's. A refusal is exit 2: nothing was
/// changed, and the message says what to do first.
pub(crate) fn check_safe(
    findings: &DryRunFindings,
    current_id: &str,
    previous_ids: &[String],
    what: &str,
) -> Result<(), LauncherError> {
    let refuse =
        |why: String| KeysError::refused(anyhow!("refusing to {what}: {why}; nothing was changed"));
    if findings.exit_code == crate::contract::exit::companion::UNDECRYPTABLE {
        return Err(refuse(format!(
            "`reencrypt --dry-run` found {} value(s) it cannot decrypt (exit 5); they may need \
             a key that is only in the previous slot: run `run-admin-task reencrypt --dry-run` \
             and follow examples/key-rotation.md, step 7",
            findings.undecryptable
        )));
    }
    if findings.exit_code != 0 {
        return Err(refuse(format!(
            "`reencrypt --dry-run` exited with {}{}",
            findings.exit_code,
            findings
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )));
    }
    if findings.primary.as_deref() != Some(current_id) {
        return Err(refuse(format!(
            "the admin task's primary key is {} but the current-key secret holds {current_id}: \
             the task definition injects another secret than the one named here",
            findings.primary.as_deref().unwrap_or("unknown")
        )));
    }
    let remaining: Vec<String> = previous_ids
        .iter()
        .filter(|id| *id != current_id)
        .filter_map(|id| {
            let n = findings.scanned_by_key_id.get(id).copied().unwrap_or(0);
            (n > 0).then(|| format!("{n} under {id}"))
        })
        .collect();
    if !remaining.is_empty() {
        return Err(refuse(format!(
            "values are still under the previous slot's key ({}), which would make them \
             undecryptable; run `run-admin-task reencrypt` first, then try again",
            remaining.join(", ")
        )));
    }
    Ok(())
}

/// One slot as DescribeSecret and GetSecretValue show it, ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// The secret as named (name or ARN).
    pub secret: String,
    /// Its ARN.
    pub arn: Option<String>,
    /// When its value last changed.
    pub last_changed: Option<DateTime<Utc>>,
    /// Version id → staging labels (`AWSCURRENT`, `AWSPREVIOUS`, ...).
    pub versions: BTreeMap<String, Vec<String>>,
    /// The key ids in its current value.
    #[serde(flatten)]
    pub keys: SlotIds,
}

impl SlotStatus {
    /// What is wrong with this slot as the current key's, if anything: the companion
    /// needs exactly one readable key there.
    pub(crate) fn current_problem(&self) -> Option<String> {
        match (self.keys.ids.len(), self.keys.problems.is_empty()) {
            (1, true) => None,
            (count, _) => Some(format!(
                "the current key's secret must hold exactly one readable key; it holds {count}{}",
                if self.keys.problems.is_empty() {
                    String::new()
                } else {
                    format!(" and: {}", self.keys.problems.join("; "))
                }
            )),
        }
    }
}

/// Reads a secret's current value. The value is material: callers only parse it.
pub(crate) async fn read_value(
    secrets: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<Zeroizing<String>, LauncherError> {
    let reply = secrets
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            KeysError::unreachable(anyhow!(
                "{} for {secret}; check the secret name, region and \
                 secretsmanager:GetSecretValue permission",
                describe_error("GetSecretValue", &e)
            ))
        })?;
    Ok(Zeroizing::new(
        reply.secret_string().unwrap_or_default().to_string(),
    ))
}

/// DescribeSecret and GetSecretValue for one slot, reduced to ids and metadata.
pub async fn slot_status(
    secrets: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<SlotStatus, LauncherError> {
    let described = secrets
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            KeysError::unreachable(anyhow!(
                "{} for {secret}; check the secret name, region and \
                 secretsmanager:DescribeSecret permission",
                describe_error("DescribeSecret", &e)
            ))
        })?;
    let value = read_value(secrets, secret).await?;
    let versions = described
        .version_ids_to_stages()
        .map(|map| {
            map.iter()
                .map(|(version, stages)| (version.clone(), stages.clone()))
                .collect()
        })
        .unwrap_or_default();
    Ok(SlotStatus {
        secret: secret.to_string(),
        arn: described.arn().map(str::to_string),
        last_changed: described
            .last_changed_date()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        versions,
        keys: read_ids(&value),
    })
}

/// Writes `value` as the secret's new current version.
async fn put(
    secrets: &aws_sdk_secretsmanager::Client,
    secret: &str,
    value: &str,
) -> Result<(), String> {
    secrets
        .put_secret_value()
        .secret_id(secret)
        .secret_string(value)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| describe_error("PutSecretValue", &e))
}

/// The rotation's two writes: the current key's value into the previous slot, then the
/// new key into the current slot. If the second fails, nothing is lost (the previous
/// slot holds the current key, which the current slot still holds too) and the error
/// says to run the rotation again.
pub async fn write_rotation(
    secrets: &aws_sdk_secretsmanager::Client,
    slots: &Slots,
    current_value: &str,
    current_id: &str,
    new_key: &str,
    new_id: &str,
) -> Result<(), LauncherError> {
    let previous = slots.require_previous()?;
    put(secrets, previous, current_value).await.map_err(|e| {
        KeysError::unreachable(anyhow!(
            "{e} for {previous}; nothing was changed: check the secretsmanager:PutSecretValue \
             permission and try again"
        ))
    })?;
    put(secrets, &slots.current, new_key).await.map_err(|e| {
        KeysError::unreachable(anyhow!(
            "{e} for {}: the previous slot {previous} now holds {current_id} and the current \
             slot still holds {current_id}, so no key is lost, but admin tasks refuse to start \
             while both slots hold the same id; run `run-admin-task keys rotate --id {new_id}` \
             again to finish (or put the previous slot's AWSPREVIOUS version back)",
            slots.current
        ))
    })
}

/// Empties the previous slot.
pub(crate) async fn write_retirement(
    secrets: &aws_sdk_secretsmanager::Client,
    previous: &str,
) -> Result<(), LauncherError> {
    put(secrets, previous, BLANK).await.map_err(|e| {
        KeysError::unreachable(anyhow!(
            "{e} for {previous}; nothing was changed: check the secretsmanager:PutSecretValue \
             permission and try again"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::events::Event;
    use crate::contract::summary::{Counts, KeyIds, Outcome, ReencryptReport};

    #[test]
    fn next_version_keeps_stem_and_padding() {
        assert_eq!(next_id("kek-v2").unwrap(), "kek-v3");
        assert_eq!(next_id("kek-v09").unwrap(), "kek-v10");
        assert_eq!(next_id("2025.01").unwrap(), "2025.02");
        let err = next_id("local").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--id"), "{err}");
    }

    #[test]
    fn generated_keys_parse_and_carry_the_id() {
        let key = generate("kek-v3").unwrap();
        assert_eq!(Key::parse(&key).unwrap().id(), "kek-v3");
        assert_ne!(*generate("kek-v3").unwrap(), *key);
        assert_eq!(generate("bad id").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn ids_are_read_without_material() {
        let ids =
            read_ids("kek-v1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=, kek-v0:c2hvcnQ=\n");
        assert_eq!(ids.ids, vec!["kek-v1"]);
        assert_eq!(ids.problems.len(), 1);
        assert!(!ids.problems[0].contains("c2hvcnQ"), "{:?}", ids.problems);
        assert_eq!(read_ids(BLANK), SlotIds::default());
    }

    #[test]
    fn value_from_must_be_a_whole_secret() {
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:everruns/key-AbCdEf";
        assert_eq!(secret_id_from_value_from(arn, "X").unwrap(), arn);
        assert_eq!(
            secret_id_from_value_from(&format!("{arn}::AWSCURRENT:"), "X")
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            secret_id_from_value_from(&format!("{arn}:::"), "X").unwrap(),
            arn
        );
        assert_eq!(
            secret_id_from_value_from("/everruns/key", "X")
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    fn findings(exit_code: u8, by_key: &[(&str, u64)]) -> DryRunFindings {
        let report = ReencryptReport {
            outcome: Outcome::Completed,
            dry_run: true,
            exit_code,
            keys: KeyIds {
                primary: "kek-v2".into(),
                previous: vec!["kek-v1".into()],
            },
            batch_size: 100,
            elapsed_ms: 1,
            tables: Vec::new(),
            by_key_id: by_key
                .iter()
                .map(|(id, n)| {
                    let counts = Counts {
                        scanned: *n,
                        ..Counts::default()
                    };
                    (id.to_string(), counts)
                })
                .collect(),
            undecryptable: Vec::new(),
            shard: None,
            rows_per_second: 0.0,
            undecryptable_not_listed: None,
        };
        let event = Event::Result {
            ts: chrono::Utc::now(),
            command: "reencrypt".into(),
            exit_code,
            summary: report.summary().to_value(),
        };
        DryRunFindings::from_result(CompanionResult::read(&event).as_ref()).unwrap()
    }

    #[test]
    fn refuses_while_values_remain_under_a_previous_slot_key() {
        let previous = vec!["kek-v1".to_string()];
        let err = check_safe(
            &findings(0, &[("kek-v1", 3), ("kek-v2", 5)]),
            "kek-v2",
            &previous,
            "rotate",
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("3 under kek-v1"), "{err}");
        check_safe(
            &findings(0, &[("kek-v2", 5)]),
            "kek-v2",
            &previous,
            "rotate",
        )
        .unwrap();
        let err = check_safe(
            &findings(5, &[("kek-v2", 5)]),
            "kek-v2",
            &previous,
            "rotate",
        )
        .unwrap_err();
        assert!(err.to_string().contains("exit 5"), "{err}");
        let err = check_safe(&findings(0, &[]), "kek-v9", &previous, "rotate").unwrap_err();
        assert!(err.to_string().contains("another secret"), "{err}");
    }
}
