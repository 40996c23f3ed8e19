//! Schema drift: the live objects against those the applied migrations produce, each
//! difference said in words, and the differences a person accepted, with why
//! (`migrations/schema-drift-allow.toml`): objects other tools own, a known hotfix.

use serde::Deserialize;

use super::objects::{Objects, describe_change};
use crate::contract::migration_report::SchemaDifference;

/// The allow-list's name, beside the migrations.
pub(crate) const ALLOW_FILE: &str = "schema-drift-allow.toml";

/// One accepted difference: an object as `everruns-admin schema` names it (`*` matches
/// any run of characters) and the reason, which is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Allowance {
    object: String,
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFile {
    #[serde(default)]
    allow: Vec<Allowance>,
}

/// The accepted differences.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowList(Vec<Allowance>);

impl AllowList {
    /// Parses the allow-list; an entry without a reason is refused, naming it.
    pub(crate) fn parse(text: &str) -> Result<AllowList, String> {
        let file: AllowFile =
            toml::from_str(text).map_err(|e| format!("{ALLOW_FILE}: {}", e.message()))?;
        if let Some(bare) = file.allow.iter().find(|a| a.reason.trim().is_empty()) {
            return Err(format!(
                "{ALLOW_FILE}: the entry for {:?} gives no reason; say why the difference is accepted",
                bare.object
            ));
        }
        Ok(AllowList(file.allow))
    }

    fn reason_for(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|a| matches(&a.object, key))
            .map(|a| a.reason.as_str())
    }
}

/// `*` matches any run of characters; everything else itself.
fn matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len())
                    .any(|at| text.is_char_boundary(at) && matches(tail, &text[at..]))
        }
    }
}

/// Every object that differs between `expected` and `live`, in key order, each marked
/// allowed when the allow-list accepts it.
pub(crate) fn compare(
    expected: &Objects,
    live: &Objects,
    allow: &AllowList,
) -> Vec<SchemaDifference> {
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(live.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let difference = match (expected.get(key), live.get(key)) {
                (Some(_), None) => "in the migrations, not in the database".to_owned(),
                (None, Some(_)) => "in the database, not in any migration".to_owned(),
                (Some(e), Some(l)) if e != l => describe_change(key, e, l),
                _ => return None,
            };
            Some(SchemaDifference {
                object: key.clone(),
                difference,
                allowed: allow.reason_for(key).map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_and_allowances_need_a_reason() {
        let expected: Objects = [
            (
                "column t.a".to_owned(),
                "text; not null; no default".to_owned(),
            ),
            (
                "index t_a_idx".to_owned(),
                "CREATE INDEX t_a_idx ON public.t USING btree (a)".to_owned(),
            ),
        ]
        .into();
        let live: Objects = [
            (
                "column t.a".to_owned(),
                "text; nullable; no default".to_owned(),
            ),
            (
                "index t_tmp".to_owned(),
                "CREATE INDEX t_tmp ON public.t USING btree (a)".to_owned(),
            ),
        ]
        .into();
        let allow =
            AllowList::parse("[[allow]]\nobject = \"index t_t*\"\nreason = \"built by hand\"\n")
                .unwrap();
        let found = compare(&expected, &live, &allow);
        let said: Vec<(&str, &str, Option<&str>)> = found
            .iter()
            .map(|d| {
                (
                    d.object.as_str(),
                    d.difference.as_str(),
                    d.allowed.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            said,
            [
                (
                    "column t.a",
                    "nullable in the database, not null in the migrations",
                    None
                ),
                (
                    "index t_a_idx",
                    "in the migrations, not in the database",
                    None
                ),
                (
                    "index t_tmp",
                    "in the database, not in any migration",
                    Some("built by hand")
                ),
            ]
        );
        let bare =
            AllowList::parse("[[allow]]\nobject = \"index x\"\nreason = \"\"\n").unwrap_err();
        assert!(bare.contains("\"index x\" gives no reason"), "{bare}");
        assert!(AllowList::parse("").is_ok());
    }
}
