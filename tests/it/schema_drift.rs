//! The schema the migrations make (`migrations/expected-schema.json`) and the check of a
//! live database against it, on a real PostgreSQL: `migrate-info --check` exits 7 and
//! names the object when a person changed the schema by hand, unless the allow-list
//! accepts it; an older image's database is compared with its own version.

use std::path::Path;
use std::process::Output;

use everruns_admin::seam::{Catalog, ExpectedSchema, REGENERATE};

use crate::common::{
    TestDatabase, cluster, companion, describe, migrated_database, psql, result_summary,
    schema_objects,
};

const EXPECTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/migrations/expected-schema.json"
);

/// Applies the migrations one version at a time, as `migrate` does, and records the
/// schema after each: what the file must hold. `UPDATE_EXPECTED_SCHEMA=1` writes it.
#[test]
fn expected_schema_is_current() {
    let db = cluster().create_database();
    let mut snapshots = Vec::new();
    for migration in Catalog::embedded().migrations() {
        let version = migration.version.to_string();
        let out = companion(&db.url)
            .args(["migrate", "--target-version", &version])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        snapshots.push((migration.version, schema_objects(&db.url).0));
    }
    let made = ExpectedSchema::from_snapshots(&snapshots).to_text();
    if std::env::var_os("UPDATE_EXPECTED_SCHEMA").is_some() {
        std::fs::write(EXPECTED, &made).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(EXPECTED).unwrap_or_default();
    assert!(
        recorded == made,
        "migrations/expected-schema.json is not what the migrations make: regenerate it with \
         `{REGENERATE}` and commit it.\nmade:\n{made}"
    );
}

fn gate(db: &TestDatabase, source: Option<&Path>) -> Output {
    let mut cmd = companion(&db.url);
    cmd.args(["migrate-info", "--check"]);
    if let Some(source) = source {
        cmd.arg("--source").arg(source);
    }
    cmd.output().unwrap()
}

fn differences(out: &Output) -> Vec<(String, String, Option<String>)> {
    let summary = result_summary(out);
    summary["schema_differences"]
        .as_array()
        .unwrap_or_else(|| panic!("not compared: {}", describe(out)))
        .iter()
        .map(|d| {
            (
                d["object"].as_str().unwrap().to_owned(),
                d["difference"].as_str().unwrap().to_owned(),
                d["allowed"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn each_hand_change_fails_the_gate_naming_the_object_until_it_is_undone() {
    let db = migrated_database();
    let clean = gate(&db, None);
    assert_eq!(clean.status.code(), Some(0), "{}", describe(&clean));
    assert_eq!(differences(&clean), []);

    let cases = [
        (
            "ALTER TABLE llm_providers ALTER COLUMN name DROP NOT NULL",
            "ALTER TABLE llm_providers ALTER COLUMN name SET NOT NULL",
            "column llm_providers.name",
            "nullable in the database, not null in the migrations",
        ),
        (
            "CREATE INDEX llm_providers_tmp_idx ON llm_providers (base_url)",
            "DROP INDEX llm_providers_tmp_idx",
            "index llm_providers_tmp_idx",
            "in the database, not in any migration",
        ),
        (
            "DROP INDEX llm_providers_status_idx",
            "CREATE INDEX llm_providers_status_idx ON llm_providers (status)",
            "index llm_providers_status_idx",
            "in the migrations, not in the database",
        ),
        (
            "ALTER TABLE mcp_servers ALTER COLUMN enabled SET DEFAULT false",
            "ALTER TABLE mcp_servers ALTER COLUMN enabled SET DEFAULT true",
            "column mcp_servers.enabled",
            "default false in the database, default true in the migrations",
        ),
        (
            "ALTER TABLE llm_providers DROP CONSTRAINT llm_providers_status_check",
            "ALTER TABLE llm_providers ADD CONSTRAINT llm_providers_status_check \
             CHECK (status IN ('active', 'disabled'))",
            "constraint llm_providers.llm_providers_status_check",
            "in the migrations, not in the database",
        ),
    ];
    for (change, undo, object, said) in cases {
        psql(&db.url, change);
        let out = gate(&db, None);
        assert_eq!(out.status.code(), Some(7), "{change}: {}", describe(&out));
        assert_eq!(
            differences(&out),
            [(object.to_owned(), said.to_owned(), None)],
            "{change}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("schema: {object}: {said}")),
            "{change}: the log names it: {}",
            describe(&out)
        );
        psql(&db.url, undo);
        let out = gate(&db, None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "after {undo}: {}",
            describe(&out)
        );
    }
}

#[test]
fn an_allowed_difference_passes_and_is_listed_with_its_reason() {
    let db = migrated_database();
    psql(
        &db.url,
        "CREATE INDEX llm_providers_tmp_idx ON llm_providers (base_url)",
    );
    let source = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, source.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        source.path().join("schema-drift-allow.toml"),
        "[[allow]]\nobject = \"index llm_providers_tmp_*\"\nreason = \"built by hand in the incident; dropped next release\"\n",
    )
    .unwrap();
    let out = gate(&db, Some(source.path()));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        differences(&out),
        [(
            "index llm_providers_tmp_idx".to_owned(),
            "in the database, not in any migration".to_owned(),
            Some("built by hand in the incident; dropped next release".to_owned())
        )]
    );

    std::fs::write(
        source.path().join("schema-drift-allow.toml"),
        "[[allow]]\nobject = \"index llm_providers_tmp_idx\"\nreason = \"\"\n",
    )
    .unwrap();
    let out = gate(&db, Some(source.path()));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("gives no reason"),
        "{}",
        describe(&out)
    );
}

#[test]
fn an_older_images_database_is_compared_with_its_own_version() {
    let db = cluster().create_database();
    let migrations = Catalog::embedded();
    let second = migrations.migrations()[1].version.to_string();
    let out = companion(&db.url)
        .args(["migrate", "--target-version", &second])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = gate(&db, None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "pending, not drift: {}",
        describe(&out)
    );
    assert_eq!(differences(&out), []);

    // `schema --diff` says the same, and `schema --version` prints that version's.
    let diff = companion(&db.url)
        .args(["schema", "--diff"])
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
    let printed = companion(&db.url)
        .args(["schema", "--version", &second])
        .output()
        .unwrap();
    assert_eq!(printed.status.code(), Some(0), "{}", describe(&printed));
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        stdout.contains("table mcp_servers: plain") && !stdout.contains("llm_providers_status_idx"),
        "{}",
        describe(&printed)
    );
    psql(
        &db.url,
        "ALTER TABLE mcp_servers ALTER COLUMN url DROP NOT NULL",
    );
    let diff = companion(&db.url)
        .args(["schema", "--diff"])
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(7), "{}", describe(&diff));
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains(
            "column mcp_servers.url: nullable in the database, not null in the migrations"
        ),
        "{}",
        describe(&diff)
    );
}
