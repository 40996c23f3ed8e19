//! The rules: what each statement of a migration does to a table that already serves
//! traffic, read from PostgreSQL's own parse tree. Each rule has a stable id, the lock
//! the statement takes (PostgreSQL's documentation, "Explicit Locking" and the
//! `ALTER TABLE` page), why that hurts, and the safe pattern.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ColumnDef, ConstrType, Constraint, Node, NullTestType,
    ObjectType,
};
use serde::Serialize;

/// A rule: its id, the lock, why it is dangerous and what to do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Stable id, as suppressions name it.
    pub id: &'static str,
    /// The lock the statement takes on the table.
    pub lock: &'static str,
    /// Why it is dangerous on a live table.
    pub why: &'static str,
    /// The safe pattern.
    pub fix: &'static str,
    /// Whether it breaks the application version still running during a rollout,
    /// whatever the table's size (else only a large table makes it block).
    pub breaks_running_version: bool,
}

/// Every rule, in the order the README lists them.
pub const RULES: &[Rule] = &[
    Rule {
        id: "index-not-concurrent",
        lock: "SHARE (blocks INSERT, UPDATE, DELETE)",
        why: "CREATE INDEX without CONCURRENTLY blocks every write to the table for the whole build",
        fix: "CREATE INDEX CONCURRENTLY, alone in a migration that starts with `-- no-transaction`",
        breaks_running_version: false,
    },
    Rule {
        id: "concurrently-in-transaction",
        lock: "none: it fails",
        why: "CONCURRENTLY cannot run inside a transaction block, and each migration runs in one unless told otherwise: the migration fails at deploy time",
        fix: "make `-- no-transaction` the migration's first line and keep the statement alone in it",
        breaks_running_version: false,
    },
    Rule {
        id: "table-rewrite",
        lock: "ACCESS EXCLUSIVE (blocks every read and write)",
        why: "the table is rewritten while every query on it waits: ADD COLUMN with a volatile default, serial or stored generated column, ALTER COLUMN TYPE that is not binary-coercible, VACUUM FULL, CLUSTER",
        fix: "add the column without a default (or with a constant one), backfill in batches, then set the default; for a type change add a new column, dual-write, backfill and switch; use pg_repack instead of VACUUM FULL or CLUSTER",
        breaks_running_version: false,
    },
    Rule {
        id: "set-not-null",
        lock: "ACCESS EXCLUSIVE, held while the whole table is scanned",
        why: "SET NOT NULL scans every row under the lock unless a validated CHECK (col IS NOT NULL) already proves it",
        fix: "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c (a SHARE UPDATE EXCLUSIVE scan); then SET NOT NULL, which uses the check",
        breaks_running_version: false,
    },
    Rule {
        id: "constraint-not-valid",
        lock: "SHARE ROW EXCLUSIVE for a foreign key (on both tables), ACCESS EXCLUSIVE for a CHECK, held while every row is checked",
        why: "adding a foreign key or CHECK validates every existing row under the lock",
        fix: "ADD CONSTRAINT ... NOT VALID (instant), then VALIDATE CONSTRAINT in a later migration (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
        breaks_running_version: false,
    },
    Rule {
        id: "unique-without-index",
        lock: "ACCESS EXCLUSIVE while the unique index is built",
        why: "ADD UNIQUE or ADD PRIMARY KEY builds its index under the lock",
        fix: "CREATE UNIQUE INDEX CONCURRENTLY (its own `-- no-transaction` migration), then ADD CONSTRAINT ... UNIQUE USING INDEX (or PRIMARY KEY USING INDEX)",
        breaks_running_version: false,
    },
    Rule {
        id: "drop-table",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout reads the table: its queries fail",
        fix: "ship a release that no longer uses the table first; drop it in a later migration",
        breaks_running_version: true,
    },
    Rule {
        id: "drop-column",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout selects or writes the column: its queries fail",
        fix: "ship a release that no longer uses the column (and ignores it in ORMs) first; drop it in a later migration",
        breaks_running_version: true,
    },
    Rule {
        id: "rename",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout uses the old name: its queries fail",
        fix: "add the new table or column, write to both, backfill, move reads, and drop the old one in a later migration (or a view with the old name meanwhile)",
        breaks_running_version: true,
    },
    Rule {
        id: "column-type-change",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout reads and writes the column as its old type",
        fix: "add a column of the new type, write to both, backfill, switch reads, drop the old column later",
        breaks_running_version: true,
    },
    Rule {
        id: "lock-table",
        lock: "as named; ACCESS EXCLUSIVE when no mode is given",
        why: "an explicit LOCK TABLE queues behind any long transaction, and every query on the table queues behind it",
        fix: "remove it; if an ordering really needs it, take a weaker mode and keep the migration short under a lock_timeout",
        breaks_running_version: false,
    },
    Rule {
        id: "multiple-exclusive-locks",
        lock: "ACCESS EXCLUSIVE on several tables in one transaction",
        why: "holding exclusive locks on several tables at once deadlocks against application transactions that take them in the other order, and blocks all of them for the whole migration",
        fix: "one table per migration",
        breaks_running_version: false,
    },
    Rule {
        id: "suppression-without-reason",
        lock: "none",
        why: "an allowance must say why the danger is accepted, for the reviewer and the operator on call",
        fix: "write `-- everruns-admin:allow RULE-ID because ...` with a reason, and a rule id that exists",
        breaks_running_version: false,
    },
];

/// The rule with `id`.
pub fn rule(id: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

/// One thing a statement does that a rule names, on a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The rule.
    pub rule: &'static str,
    /// The table it concerns (unqualified name, as written).
    pub table: String,
    /// A detail (`column api_key`, `VACUUM FULL`).
    pub detail: String,
}

/// What one statement does, as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatementFacts {
    /// The rules it hits.
    pub hits: Vec<Hit>,
    /// Tables it takes ACCESS EXCLUSIVE on.
    pub exclusive_tables: Vec<String>,
    /// Tables it creates.
    pub creates: Vec<String>,
    /// Every table it touches.
    pub touches: Vec<String>,
    /// Whether it uses CONCURRENTLY.
    pub concurrently: bool,
    /// `(table, column)` pairs a validated CHECK (col IS NOT NULL) now proves.
    pub proves_not_null: Vec<(String, String)>,
    /// `(table, constraint, column)` of CHECK (col IS NOT NULL) NOT VALID added here.
    pub not_null_checks: Vec<(String, String, String)>,
    /// `(table, constraint)` validated here.
    pub validates: Vec<(String, String)>,
}

const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
    "statement_timestamp",
];

fn name_of(nodes: &[Node]) -> String {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .next_back()
        .unwrap_or_default()
        .to_string()
}

/// Whether an expression calls a volatile function anywhere.
fn is_volatile(node: &Node) -> bool {
    match &node.node {
        Some(NodeEnum::FuncCall(call)) => {
            VOLATILE_FUNCTIONS.contains(&name_of(&call.funcname).as_str())
                || call.args.iter().any(is_volatile)
        }
        Some(NodeEnum::TypeCast(cast)) => cast.arg.as_deref().is_some_and(is_volatile),
        Some(NodeEnum::AExpr(expr)) => {
            expr.lexpr.as_deref().is_some_and(is_volatile)
                || expr.rexpr.as_deref().is_some_and(is_volatile)
        }
        Some(NodeEnum::CoalesceExpr(c)) => c.args.iter().any(is_volatile),
        _ => false,
    }
}

/// The column a `col IS NOT NULL` check is about.
fn not_null_column(expr: Option<&Node>) -> Option<String> {
    let Some(NodeEnum::NullTest(test)) = expr.and_then(|e| e.node.as_ref()) else {
        return None;
    };
    if test.nulltesttype() != NullTestType::IsNotNull {
        return None;
    }
    match test.arg.as_deref().and_then(|a| a.node.as_ref()) {
        Some(NodeEnum::ColumnRef(column)) => Some(name_of(&column.fields)),
        _ => None,
    }
}

/// Reads what one parsed statement does.
pub(crate) fn facts(statement: &NodeEnum) -> StatementFacts {
    let mut facts = StatementFacts::default();
    let hit = |facts: &mut StatementFacts, rule: &'static str, table: &str, detail: String| {
        facts.hits.push(Hit {
            rule,
            table: table.to_string(),
            detail,
        });
    };
    match statement {
        NodeEnum::IndexStmt(index) => {
            let table = index
                .relation
                .as_ref()
                .map(|r| r.relname.clone())
                .unwrap_or_default();
            facts.touches.push(table.clone());
            if index.concurrent {
                facts.concurrently = true;
            } else {
                hit(
                    &mut facts,
                    "index-not-concurrent",
                    &table,
                    format!("index {}", index.idxname),
                );
            }
        }
        NodeEnum::ReindexStmt(reindex) => {
            let concurrently = reindex.params.iter().any(
                |p| matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname == "concurrently"),
            );
            facts.concurrently |= concurrently;
        }
        NodeEnum::CreateStmt(create) => {
            if let Some(relation) = &create.relation {
                facts.creates.push(relation.relname.clone());
                facts.touches.push(relation.relname.clone());
            }
        }
        NodeEnum::DropStmt(drop) => {
            facts.concurrently |= drop.concurrent;
            if drop.remove_type() == ObjectType::ObjectTable {
                for object in &drop.objects {
                    if let Some(NodeEnum::List(list)) = &object.node {
                        let table = name_of(&list.items);
                        facts.touches.push(table.clone());
                        facts.exclusive_tables.push(table.clone());
                        hit(&mut facts, "drop-table", &table, String::new());
                    }
                }
            }
        }
        NodeEnum::RenameStmt(rename) => {
            let table = rename
                .relation
                .as_ref()
                .map(|r| r.relname.clone())
                .unwrap_or_default();
            let what = match rename.rename_type() {
                ObjectType::ObjectTable => Some(format!("table renamed to {}", rename.newname)),
                ObjectType::ObjectColumn => Some(format!(
                    "column {} renamed to {}",
                    rename.subname, rename.newname
                )),
                _ => None,
            };
            if let Some(what) = what {
                facts.touches.push(table.clone());
                facts.exclusive_tables.push(table.clone());
                hit(&mut facts, "rename", &table, what);
            }
        }
        NodeEnum::LockStmt(lock) => {
            for relation in &lock.relations {
                if let Some(NodeEnum::RangeVar(r)) = &relation.node {
                    facts.touches.push(r.relname.clone());
                    // 8 is ACCESS EXCLUSIVE, also what LOCK TABLE takes by default.
                    if lock.mode == 8 || lock.mode == 0 {
                        facts.exclusive_tables.push(r.relname.clone());
                    }
                    hit(&mut facts, "lock-table", &r.relname, String::new());
                }
            }
        }
        NodeEnum::VacuumStmt(vacuum) => {
            let full = vacuum
                .options
                .iter()
                .any(|o| matches!(&o.node, Some(NodeEnum::DefElem(d)) if d.defname == "full"));
            if full {
                for relation in &vacuum.rels {
                    if let Some(NodeEnum::VacuumRelation(v)) = &relation.node
                        && let Some(r) = &v.relation
                    {
                        facts.touches.push(r.relname.clone());
                        facts.exclusive_tables.push(r.relname.clone());
                        hit(
                            &mut facts,
                            "table-rewrite",
                            &r.relname,
                            "VACUUM FULL".into(),
                        );
                    }
                }
            }
        }
        NodeEnum::ClusterStmt(cluster) => {
            if let Some(r) = &cluster.relation {
                facts.touches.push(r.relname.clone());
                facts.exclusive_tables.push(r.relname.clone());
                hit(&mut facts, "table-rewrite", &r.relname, "CLUSTER".into());
            }
        }
        NodeEnum::AlterTableStmt(alter) => {
            let table = alter
                .relation
                .as_ref()
                .map(|r| r.relname.clone())
                .unwrap_or_default();
            facts.touches.push(table.clone());
            let mut exclusive = false;
            for cmd in &alter.cmds {
                if let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node {
                    exclusive |= alter_command(&mut facts, &table, cmd);
                }
            }
            if exclusive {
                facts.exclusive_tables.push(table);
            }
        }
        _ => {}
    }
    facts
}

/// One ALTER TABLE subcommand; returns whether it takes ACCESS EXCLUSIVE.
fn alter_command(facts: &mut StatementFacts, table: &str, cmd: &AlterTableCmd) -> bool {
    let mut hit = |rule: &'static str, detail: String| {
        facts.hits.push(Hit {
            rule,
            table: table.to_string(),
            detail,
        });
    };
    let def = cmd.def.as_deref().and_then(|d| d.node.as_ref());
    match cmd.subtype() {
        AlterTableType::AtAddColumn => {
            if let Some(NodeEnum::ColumnDef(column)) = def
                && let Some(why) = rewriting_column(column)
            {
                hit("table-rewrite", format!("column {}: {why}", column.colname));
            }
            true
        }
        AlterTableType::AtAlterColumnType => {
            let to = match def {
                Some(NodeEnum::ColumnDef(column)) => column
                    .type_name
                    .as_ref()
                    .map(|t| (name_of(&t.names), t.typmods.is_empty())),
                _ => None,
            };
            // To text, or to varchar without a length, is binary-coercible from the
            // text types; anything else may rewrite.
            let coercible =
                matches!(&to, Some((name, true)) if name == "text" || name == "varchar");
            if !coercible {
                hit(
                    "table-rewrite",
                    format!(
                        "column {} to {}",
                        cmd.name,
                        to.map(|(n, _)| n).unwrap_or_default()
                    ),
                );
            }
            hit("column-type-change", format!("column {}", cmd.name));
            true
        }
        AlterTableType::AtSetNotNull => {
            hit("set-not-null", format!("column {}", cmd.name));
            true
        }
        AlterTableType::AtDropColumn => {
            hit("drop-column", format!("column {}", cmd.name));
            true
        }
        AlterTableType::AtValidateConstraint => {
            facts.validates.push((table.to_string(), cmd.name.clone()));
            false
        }
        AlterTableType::AtAddConstraint => {
            if let Some(NodeEnum::Constraint(constraint)) = def {
                add_constraint(facts, table, constraint)
            } else {
                true
            }
        }
        AlterTableType::AtSetLogged | AlterTableType::AtSetUnLogged => {
            hit("table-rewrite", "SET LOGGED / UNLOGGED".into());
            true
        }
        AlterTableType::AtColumnDefault | AlterTableType::AtDropNotNull => true,
        _ => true,
    }
}

/// Why adding this column rewrites the table, if it does.
fn rewriting_column(column: &ColumnDef) -> Option<String> {
    let type_name = column
        .type_name
        .as_ref()
        .map(|t| name_of(&t.names))
        .unwrap_or_default();
    if [
        "serial",
        "bigserial",
        "smallserial",
        "serial4",
        "serial8",
        "serial2",
    ]
    .contains(&type_name.as_str())
    {
        return Some(format!("{type_name} fills every row from a sequence"));
    }
    for constraint in &column.constraints {
        if let Some(NodeEnum::Constraint(c)) = &constraint.node {
            match c.contype() {
                ConstrType::ConstrDefault if c.raw_expr.as_deref().is_some_and(is_volatile) => {
                    return Some("a volatile default is computed for every row".into());
                }
                ConstrType::ConstrGenerated => {
                    return Some("a stored generated column is computed for every row".into());
                }
                ConstrType::ConstrIdentity => {
                    return Some("an identity column fills every row".into());
                }
                _ => {}
            }
        }
    }
    if column.raw_default.as_deref().is_some_and(is_volatile) {
        return Some("a volatile default is computed for every row".into());
    }
    None
}

/// ADD CONSTRAINT; returns whether it takes ACCESS EXCLUSIVE.
fn add_constraint(facts: &mut StatementFacts, table: &str, constraint: &Constraint) -> bool {
    let name = &constraint.conname;
    let mut hit = |rule: &'static str, detail: String| {
        facts.hits.push(Hit {
            rule,
            table: table.to_string(),
            detail,
        });
    };
    match constraint.contype() {
        ConstrType::ConstrForeign => {
            if !constraint.skip_validation {
                hit("constraint-not-valid", format!("foreign key {name}"));
            }
            // SHARE ROW EXCLUSIVE, not ACCESS EXCLUSIVE.
            false
        }
        ConstrType::ConstrCheck => {
            if constraint.skip_validation {
                if let Some(column) = not_null_column(constraint.raw_expr.as_deref()) {
                    facts
                        .not_null_checks
                        .push((table.to_string(), name.clone(), column));
                }
            } else {
                hit("constraint-not-valid", format!("check {name}"));
                if let Some(column) = not_null_column(constraint.raw_expr.as_deref()) {
                    facts.proves_not_null.push((table.to_string(), column));
                }
            }
            true
        }
        ConstrType::ConstrUnique | ConstrType::ConstrPrimary => {
            if constraint.indexname.is_empty() {
                hit(
                    "unique-without-index",
                    format!(
                        "{} {name}",
                        if constraint.contype() == ConstrType::ConstrPrimary {
                            "primary key"
                        } else {
                            "unique"
                        }
                    ),
                );
            }
            true
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_of(sql: &str) -> StatementFacts {
        let parsed = pg_query::parse(sql, 0).unwrap();
        let stmt = parsed.protobuf.stmts[0].stmt.as_ref().unwrap();
        facts(stmt.node.as_ref().unwrap())
    }

    fn rules_of(sql: &str) -> Vec<&'static str> {
        facts_of(sql).hits.iter().map(|h| h.rule).collect()
    }

    #[test]
    fn every_rule_id_is_unique_and_documented() {
        let ids: std::collections::BTreeSet<_> = RULES.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), RULES.len());
        for r in RULES {
            assert!(
                !r.lock.is_empty() && !r.why.is_empty() && !r.fix.is_empty(),
                "{}",
                r.id
            );
        }
    }

    #[test]
    fn constant_defaults_do_not_rewrite_and_volatile_ones_do() {
        assert!(rules_of("ALTER TABLE t ADD COLUMN c int DEFAULT 0").is_empty());
        assert!(rules_of("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()").is_empty());
        assert_eq!(
            rules_of("ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()"),
            ["table-rewrite"]
        );
        assert_eq!(
            rules_of("ALTER TABLE t ADD COLUMN c bigserial"),
            ["table-rewrite"]
        );
    }

    #[test]
    fn type_changes_to_text_are_only_a_breaking_change() {
        assert_eq!(
            rules_of("ALTER TABLE t ALTER COLUMN c TYPE text"),
            ["column-type-change"]
        );
        assert_eq!(
            rules_of("ALTER TABLE t ALTER COLUMN c TYPE bigint"),
            ["table-rewrite", "column-type-change"]
        );
    }

    #[test]
    fn a_not_valid_not_null_check_is_remembered() {
        let f = facts_of("ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID");
        assert!(f.hits.is_empty());
        assert_eq!(f.not_null_checks, [("t".into(), "c_nn".into(), "c".into())]);
        let f = facts_of("ALTER TABLE t VALIDATE CONSTRAINT c_nn");
        assert_eq!(f.validates, [("t".into(), "c_nn".into())]);
        assert!(f.exclusive_tables.is_empty());
    }
}
