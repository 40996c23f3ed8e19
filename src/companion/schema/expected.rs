//! The schema the migrations produce, version by version, as recorded when they were
//! written (`migrations/expected-schema.json`, built into the binary): each version
//! keeps only what its migration set or removed, so the file stays small however many
//! versions there are. Replaying them up to a database's applied version gives what
//! that database should hold, for an older image's database as for the newest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::objects::Objects;

/// The command that regenerates the file, for the message that finds it stale.
pub const REGENERATE: &str =
    "UPDATE_EXPECTED_SCHEMA=1 cargo test --test it expected_schema_is_current";

/// The file's name, beside the migrations.
pub(crate) const FILE: &str = "expected-schema.json";

/// What one migration changed in the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    /// The migration's version.
    pub version: i64,
    /// Objects it created or changed, with their definitions.
    pub set: BTreeMap<String, String>,
    /// Objects it removed.
    pub removed: Vec<String>,
}

/// The expected schema of every version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedSchema {
    /// How to make this file again.
    pub regenerate: String,
    /// Each migration's change, in order.
    pub versions: Vec<VersionChange>,
}

impl ExpectedSchema {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<ExpectedSchema, String> {
        serde_json::from_str(text).map_err(|e| format!("{FILE}: {e}; regenerate it: {REGENERATE}"))
    }

    /// The file made from the objects after each version, in order.
    pub fn from_snapshots(snapshots: &[(i64, Objects)]) -> ExpectedSchema {
        let mut before = Objects::new();
        let versions = snapshots
            .iter()
            .map(|(version, after)| {
                let set = after
                    .iter()
                    .filter(|(key, definition)| before.get(*key) != Some(*definition))
                    .map(|(k, d)| (k.clone(), d.clone()))
                    .collect();
                let removed = before
                    .keys()
                    .filter(|key| !after.contains_key(*key))
                    .cloned()
                    .collect();
                before = after.clone();
                VersionChange {
                    version: *version,
                    set,
                    removed,
                }
            })
            .collect();
        ExpectedSchema {
            regenerate: REGENERATE.to_owned(),
            versions,
        }
    }

    /// The file's text: sorted, indented, one trailing newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serializes");
        text.push('\n');
        text
    }

    /// The objects a database at `version` should hold; `None` for a version the file
    /// does not know.
    pub fn at(&self, version: i64) -> Option<Objects> {
        self.versions.iter().any(|v| v.version == version).then(|| {
            let mut objects = Objects::new();
            for change in self.versions.iter().take_while(|v| v.version <= version) {
                for key in &change.removed {
                    objects.remove(key);
                }
                objects.extend(change.set.clone());
            }
            objects
        })
    }

    /// The versions it records.
    pub fn versions(&self) -> impl Iterator<Item = i64> + '_ {
        self.versions.iter().map(|v| v.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(pairs: &[(&str, &str)]) -> Objects {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn replays_what_each_version_changed() {
        let one = objects(&[
            ("table t", "plain"),
            ("column t.a", "int4; nullable; no default"),
        ]);
        let two = objects(&[
            ("table t", "plain"),
            ("column t.a", "int4; not null; no default"),
        ]);
        let three = objects(&[("table t", "plain")]);
        let schema = ExpectedSchema::from_snapshots(&[
            (1, one.clone()),
            (2, two.clone()),
            (3, three.clone()),
        ]);
        assert_eq!(schema.versions[1].set.len(), 1, "only what changed is kept");
        assert_eq!(schema.versions[2].removed, ["column t.a"]);
        assert_eq!(schema.at(1), Some(one));
        assert_eq!(schema.at(2), Some(two));
        assert_eq!(schema.at(3), Some(three));
        assert_eq!(schema.at(4), None);
        let again = ExpectedSchema::parse(&schema.to_text()).unwrap();
        assert_eq!(again, schema);
    }
}
