//! The linter: each migration's statements, read from PostgreSQL's parse tree, judged
//! against the tables' sizes (live or assumed large), with the file's allowances.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::rules::{Blocks, RULES, rule};
use super::sizes::{TableSizes, Thresholds};
use super::statement::{Hit, facts};
use crate::contract::exit;
use crate::contract::findings::{Finding, LintCounts, LintSummary, Severity};
use crate::contract::result::Summary;

/// The comment that allows a finding: `-- everruns-admin:allow RULE-ID reason`.
pub(crate) const ALLOW: &str = "-- everruns-admin:allow";

/// A migration to lint.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSource<'a> {
    /// Its version.
    pub version: i64,
    /// Its description (the file name's, `_` read as a space).
    pub description: &'a str,
    /// Its SQL.
    pub sql: &'a str,
    /// Whether it runs outside a transaction (`-- no-transaction`).
    pub no_transaction: bool,
    /// Its file, as findings and CI annotations name it (`migrations/1_init.sql`, or
    /// under the `--source` folder).
    pub file: &'a str,
}

/// What the tables are: the live database's sizes, or, offline, "every table exists
/// and is large unless the same migration creates it".
#[derive(Debug, Clone)]
pub enum Judged<'a> {
    /// Against a database: its tables' sizes and the thresholds.
    Live(&'a TableSizes, Thresholds),
    /// Without one.
    Offline,
}

/// Where a statement starts in the file: its first line of code (after blank and
/// comment lines) and the comment lines right above it.
struct Located<'a> {
    line: usize,
    first_line: &'a str,
    comments: Vec<(usize, &'a str)>,
}

fn locate(sql: &str, from: usize) -> Located<'_> {
    let from = from.min(sql.len());
    let lines: Vec<&str> = sql.split('\n').collect();
    let start = sql[..from].matches('\n').count();
    // The statement's text may begin with the blank and comment lines after the
    // previous statement; its first line of code is what a person reads as its start.
    let first = (start..lines.len())
        .find(|&i| {
            // The first piece may be the rest of a line (`...; CREATE ...`).
            let t = if i == start {
                sql[from..].split('\n').next().unwrap_or_default()
            } else {
                lines[i]
            };
            let t = t.trim();
            !t.is_empty() && !t.starts_with("--")
        })
        .unwrap_or(start);
    let comments = (0..first)
        .rev()
        .map(|i| (i + 1, lines[i].trim()))
        .take_while(|(_, t)| t.starts_with("--"))
        .collect();
    let text = lines.get(first).map(|l| l.trim()).unwrap_or_default();
    let end = text.char_indices().nth(120).map_or(text.len(), |(i, _)| i);
    Located {
        line: first + 1,
        first_line: &text[..end],
        comments,
    }
}

/// The allowances in comment lines: rule id -> reason, and the findings for
/// allowances that name no rule or give no reason.
fn allowances(
    comments: &[(usize, &str)],
    migration: &MigrationSource<'_>,
    statement: &str,
) -> (HashMap<String, String>, Vec<Finding>) {
    let mut allowed = HashMap::new();
    let mut broken = Vec::new();
    for (line, comment) in comments {
        let Some(rest) = comment.strip_prefix(ALLOW) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let id = words.next().unwrap_or_default();
        let reason = words.collect::<Vec<_>>().join(" ");
        if reason.is_empty() || !RULES.iter().any(|r| r.id == id) {
            let r = rule("suppression-without-reason");
            broken.push(Finding {
                rule: r.id.to_string(),
                severity: Severity::Blocking,
                version: migration.version,
                file: migration.file.to_string(),
                line: *line,
                statement: statement.to_string(),
                table: String::new(),
                detail: if id.is_empty() {
                    "no rule id".to_string()
                } else if RULES.iter().any(|r| r.id == id) {
                    format!("{id} without a reason")
                } else {
                    format!("{id} is not a rule")
                },
                lock: r.lock.to_string(),
                rows: None,
                bytes: None,
                why: r.why.to_string(),
                fix: r.fix.to_string(),
                reason: None,
            });
        } else {
            allowed.insert(id.to_string(), reason);
        }
    }
    (allowed, broken)
}

/// A migration that does not parse as PostgreSQL: nothing can be said about it.
#[derive(Debug)]
pub struct Unparsable {
    /// The migration's file.
    pub file: String,
    /// What the parser said.
    pub error: String,
}

impl std::fmt::Display for Unparsable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} does not parse as PostgreSQL: {}; fix its SQL",
            self.file, self.error
        )
    }
}

/// Lints `migrations` in order, as they would be applied. A file that does not parse
/// is a runtime error naming it.
pub fn lint(
    migrations: &[MigrationSource<'_>],
    judged: &Judged<'_>,
) -> Result<Vec<Finding>, Unparsable> {
    let mut findings = Vec::new();
    // CHECK (col IS NOT NULL) constraints added NOT VALID, and those validated, so far.
    let mut not_null_checks: HashMap<(String, String), String> = HashMap::new();
    let mut proven_not_null: HashSet<(String, String)> = HashSet::new();
    for migration in migrations {
        let parsed = pg_query::parse(migration.sql, 0).map_err(|e| Unparsable {
            file: migration.file.to_string(),
            error: e.to_string(),
        })?;
        let mut created_here: BTreeSet<String> = BTreeSet::new();
        let mut exclusive: Vec<(String, Located<'_>)> = Vec::new();
        for raw in &parsed.protobuf.stmts {
            let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
                continue;
            };
            let at = locate(
                migration.sql,
                usize::try_from(raw.stmt_location).unwrap_or(0),
            );
            let facts = facts(node);
            created_here.extend(facts.creates.iter().cloned());
            for (table, name, column) in &facts.not_null_checks {
                not_null_checks.insert((table.clone(), name.clone()), column.clone());
            }
            for (table, name) in &facts.validates {
                if let Some(column) = not_null_checks.get(&(table.clone(), name.clone())) {
                    proven_not_null.insert((table.clone(), column.clone()));
                }
            }
            proven_not_null.extend(facts.proves_not_null.iter().cloned());
            let (allowed, broken) = allowances(&at.comments, migration, at.first_line);
            findings.extend(broken);
            let mut hits = facts.hits.clone();
            let first_table = facts.touches.first().cloned().unwrap_or_default();
            if facts.concurrently && !migration.no_transaction {
                hits.push(Hit::on(
                    "concurrently-in-transaction",
                    &first_table,
                    String::new(),
                ));
            }
            if migration.no_transaction
                && let Some(detail) = &facts.not_rerunnable
            {
                hits.push(Hit::on("not-rerunnable", &first_table, detail.clone()));
            }
            if let Some(enum_type) = &facts.adds_enum_value
                && !migration.no_transaction
                && !matches!(judged, Judged::Live(sizes, _) if sizes.at_least(12))
            {
                hits.push(Hit::on(
                    "enum-value-in-transaction",
                    enum_type,
                    format!("type {enum_type}"),
                ));
            }
            for mut hit in hits {
                if let (Some(index), Judged::Live(sizes, _)) = (&hit.index, judged)
                    && let Some(table) = sizes.table_of_index(index)
                {
                    hit.table = table.to_owned();
                }
                // An index on a table that does not exist yet blocks nobody, and a
                // column added to it finds no row.
                if matches!(
                    hit.rule,
                    "index-not-concurrent" | "add-column-not-null-without-default"
                ) && is_new(&hit.table, &created_here, judged)
                {
                    continue;
                }
                if hit.rule == "set-not-null"
                    && proven_not_null.contains(&(
                        hit.table.clone(),
                        hit.detail.trim_start_matches("column ").to_string(),
                    ))
                {
                    continue;
                }
                findings.push(judge(
                    migration,
                    &at,
                    &hit,
                    &created_here,
                    judged,
                    allowed.get(hit.rule),
                ));
            }
            for table in &facts.exclusive_tables {
                if !exclusive.iter().any(|(t, _)| t == table) {
                    exclusive.push((
                        table.clone(),
                        locate(
                            migration.sql,
                            usize::try_from(raw.stmt_location).unwrap_or(0),
                        ),
                    ));
                }
            }
        }
        let existing: Vec<&(String, Located<'_>)> = exclusive
            .iter()
            .filter(|(t, _)| !is_new(t, &created_here, judged))
            .collect();
        if !migration.no_transaction && existing.len() > 1 {
            let (_, at) = existing[existing.len() - 1];
            let tables: Vec<&str> = existing.iter().map(|(t, _)| t.as_str()).collect();
            let (allowed, _) = allowances(&at.comments, migration, at.first_line);
            let hit = Hit::on(
                "multiple-exclusive-locks",
                &tables.join(", "),
                String::new(),
            );
            let mut finding = judge(
                migration,
                at,
                &hit,
                &created_here,
                judged,
                allowed.get(hit.rule),
            );
            if finding.severity == Severity::Warning
                && existing.iter().any(|(t, _)| is_large(t, judged))
            {
                finding.severity = Severity::Blocking;
            }
            findings.push(finding);
        }
    }
    Ok(findings)
}

/// Whether `table` is new: created by the pending set (live: not in the database yet)
/// or, offline, by the same migration.
fn is_new(table: &str, created_here: &BTreeSet<String>, judged: &Judged<'_>) -> bool {
    match judged {
        Judged::Live(sizes, _) => sizes.get(table).is_none(),
        Judged::Offline => created_here.contains(table),
    }
}

fn is_large(table: &str, judged: &Judged<'_>) -> bool {
    match judged {
        Judged::Live(sizes, thresholds) => sizes.get(table).is_some_and(|s| thresholds.is_large(s)),
        Judged::Offline => true,
    }
}

fn judge(
    migration: &MigrationSource<'_>,
    at: &Located<'_>,
    hit: &Hit,
    created_here: &BTreeSet<String>,
    judged: &Judged<'_>,
    allowed: Option<&String>,
) -> Finding {
    let r = rule(hit.rule);
    let size = match judged {
        Judged::Live(sizes, _) => sizes.get(&hit.table).copied(),
        Judged::Offline => None,
    };
    let severity = match r.blocks {
        _ if allowed.is_some() => Severity::Suppressed,
        Blocks::Always => Severity::Blocking,
        // The linter reports it live only against a server it applies to.
        Blocks::OnAffectedServers if matches!(judged, Judged::Live(..)) => Severity::Blocking,
        Blocks::OnAffectedServers => Severity::Warning,
        _ if is_new(&hit.table, created_here, judged) => Severity::Warning,
        Blocks::OnExistingTables => Severity::Blocking,
        Blocks::OnLargeTables if is_large(&hit.table, judged) => Severity::Blocking,
        Blocks::OnLargeTables => Severity::Warning,
    };
    Finding {
        rule: r.id.to_string(),
        severity,
        version: migration.version,
        file: migration.file.to_string(),
        line: at.line,
        statement: at.first_line.to_string(),
        table: hit.table.clone(),
        detail: hit.detail.clone(),
        lock: r.lock.to_string(),
        rows: size.and_then(|s| s.rows),
        bytes: size.map(|s| s.bytes),
        why: r.why.to_string(),
        fix: r.fix.to_string(),
        reason: allowed.cloned(),
    }
}

/// The tables `sql` touches, for naming who holds their locks; empty when it does not
/// parse.
pub(crate) fn touched_tables(sql: &str) -> Vec<String> {
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        return Vec::new();
    };
    let mut tables: Vec<String> = parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| raw.stmt.as_ref()?.node.as_ref())
        .flat_map(|node| facts(node).touches)
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// `lint`: the migrations `sources`, without a database (every table counts as large
/// unless the migration creates it). Exit 6 on a blocking finding, else 0.
pub(crate) fn offline(sources: &[MigrationSource]) -> Result<(u8, Summary), Unparsable> {
    let findings = lint(sources, &Judged::Offline)?;
    log(&findings);
    let counts = LintCounts::of(sources.len(), &findings);
    tracing::info!(
        "linted {} migration(s): {} blocking, {} warning(s), {} allowed",
        counts.migrations,
        counts.blocking,
        counts.warnings,
        counts.suppressed
    );
    let code = if counts.blocking > 0 {
        exit::companion::UNSAFE
    } else {
        exit::companion::SUCCESS
    };
    Ok((code, Summary::Lint(LintSummary { findings, counts })))
}

/// Logs each finding at its level: error for blocking, warn otherwise.
pub fn log(findings: &[Finding]) {
    for finding in findings {
        match finding.severity {
            Severity::Blocking => tracing::error!(rule = finding.rule, "{}", finding.describe()),
            Severity::Warning => tracing::warn!(rule = finding.rule, "{}", finding.describe()),
            Severity::Suppressed => tracing::info!(rule = finding.rule, "{}", finding.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(sql: &str, no_transaction: bool) -> Vec<Finding> {
        lint(
            &[MigrationSource {
                version: 1,
                description: "test",
                sql,
                no_transaction,
                file: "migrations/1_test.sql",
            }],
            &Judged::Offline,
        )
        .unwrap()
    }

    #[test]
    fn a_finding_names_its_line_and_statement() {
        let findings = offline(
            "-- a comment\n\nSELECT 1;\n\n-- why\nCREATE INDEX i ON t (c);\n",
            false,
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].line, 6);
        assert_eq!(findings[0].statement, "CREATE INDEX i ON t (c);");
        assert_eq!(findings[0].file, "migrations/1_test.sql");
        assert_eq!(findings[0].severity, Severity::Blocking);
    }

    #[test]
    fn an_allowance_needs_a_known_rule_and_a_reason() {
        let ok = offline(
            "-- everruns-admin:allow index-not-concurrent t has 12 rows, always\nCREATE INDEX i ON t (c);",
            false,
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].severity, Severity::Suppressed);
        assert_eq!(ok[0].reason.as_deref(), Some("t has 12 rows, always"));
        let bare = offline(
            "-- everruns-admin:allow index-not-concurrent\nCREATE INDEX i ON t (c);",
            false,
        );
        let rules: Vec<_> = bare.iter().map(|f| (f.rule.as_str(), f.severity)).collect();
        assert!(
            rules.contains(&("suppression-without-reason", Severity::Blocking)),
            "{rules:?}"
        );
        assert!(
            rules.contains(&("index-not-concurrent", Severity::Blocking)),
            "{rules:?}"
        );
    }

    #[test]
    fn a_table_the_same_migration_creates_is_only_a_warning_offline() {
        let findings = offline(
            "CREATE TABLE n (id int);\nCREATE INDEX i ON n (id);\nALTER TABLE n ADD CONSTRAINT c CHECK (id > 0);",
            false,
        );
        let rules: Vec<_> = findings
            .iter()
            .map(|f| (f.rule.as_str(), f.severity))
            .collect();
        assert_eq!(rules, [("constraint-not-valid", Severity::Warning)]);
    }

    #[test]
    fn a_syntax_error_names_the_file() {
        let error = lint(
            &[MigrationSource {
                version: 7,
                description: "bad one",
                sql: "CREAT TABLE x ();",
                no_transaction: false,
                file: "migrations/7_bad_one.sql",
            }],
            &Judged::Offline,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("migrations/7_bad_one.sql does not parse"),
            "{error}"
        );
    }
}
