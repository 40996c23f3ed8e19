//! What one statement of a migration does to the tables it names, read from
//! PostgreSQL's own parse tree: the rules it hits, the tables it locks, creates or
//! touches, and what the linter carries from one statement to the next.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ColumnDef, ConstrType, Constraint, DropBehavior, Node,
    NullTestType, ObjectType, ReindexObjectType,
};

/// One thing a statement does that a rule names, on a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The rule.
    pub rule: &'static str,
    /// The table it concerns (unqualified name, as written).
    pub table: String,
    /// A detail (`column api_key`, `VACUUM FULL`).
    pub detail: String,
    /// The index the statement names when it names no table (DROP INDEX, REINDEX
    /// INDEX): the linter finds its table in the live database.
    pub index: Option<String>,
}

impl Hit {
    /// A hit on `table`.
    pub(crate) fn on(rule: &'static str, table: &str, detail: String) -> Hit {
        Hit {
            rule,
            table: table.to_owned(),
            detail,
            index: None,
        }
    }

    /// A hit on the table of `index`, which the statement does not name.
    fn on_index(rule: &'static str, index: &str) -> Hit {
        Hit {
            index: Some(index.to_owned()),
            ..Hit::on(rule, "", format!("index {index}"))
        }
    }
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
    /// Why running it a second time fails (`CREATE INDEX i without IF NOT EXISTS`),
    /// which matters in a `-- no-transaction` migration.
    pub not_rerunnable: Option<String>,
    /// The enum type it adds a value to (ALTER TYPE ... ADD VALUE).
    pub adds_enum_value: Option<String>,
}

/// The 32-bit (and smaller) integer types, as the parser names them.
const SMALL_INTEGERS: &[&str] = &[
    "int4",
    "int2",
    "serial",
    "serial4",
    "smallserial",
    "serial2",
];

/// A column's type name, as the parser names it (`int4` for `integer`).
fn type_of(column: &ColumnDef) -> String {
    column
        .type_name
        .as_ref()
        .map(|t| name_of(&t.names))
        .unwrap_or_default()
}

/// The constraints of a column definition.
fn column_constraints(column: &ColumnDef) -> impl Iterator<Item = &Constraint> {
    column.constraints.iter().filter_map(|c| match &c.node {
        Some(NodeEnum::Constraint(c)) => Some(c.as_ref()),
        _ => None,
    })
}

/// The `integer-primary-key` hit for a column that is a 32-bit primary key.
fn small_primary_key(table: &str, column: &ColumnDef, table_keys: &[String]) -> Option<Hit> {
    let is_key = table_keys.contains(&column.colname)
        || column_constraints(column).any(|c| c.contype() == ConstrType::ConstrPrimary);
    let type_name = type_of(column);
    (is_key && SMALL_INTEGERS.contains(&type_name.as_str())).then(|| {
        Hit::on(
            "integer-primary-key",
            table,
            format!("column {} {type_name}", column.colname),
        )
    })
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
        facts.hits.push(Hit::on(rule, table, detail));
    };
    match statement {
        NodeEnum::IndexStmt(index) => {
            let table = index
                .relation
                .as_ref()
                .map(|r| r.relname.clone())
                .unwrap_or_default();
            facts.touches.push(table.clone());
            if !index.if_not_exists {
                facts.not_rerunnable = Some(format!(
                    "CREATE INDEX {} without IF NOT EXISTS",
                    index.idxname
                ));
            }
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
            if !concurrently {
                let table = reindex.relation.as_ref().map(|r| r.relname.clone());
                facts.hits.push(match (reindex.kind(), table) {
                    (ReindexObjectType::ReindexObjectIndex, Some(index)) => {
                        Hit::on_index("reindex-not-concurrent", &index)
                    }
                    (ReindexObjectType::ReindexObjectTable, Some(table)) => {
                        facts.touches.push(table.clone());
                        Hit::on("reindex-not-concurrent", &table, String::new())
                    }
                    // A schema, the system catalogs or the database: every table.
                    _ => Hit::on(
                        "reindex-not-concurrent",
                        "",
                        format!("every table of {}", reindex.name),
                    ),
                });
            }
        }
        NodeEnum::CreateStmt(create) => {
            if let Some(relation) = &create.relation {
                let table = &relation.relname;
                facts.creates.push(table.clone());
                facts.touches.push(table.clone());
                if !create.if_not_exists {
                    facts.not_rerunnable =
                        Some(format!("CREATE TABLE {table} without IF NOT EXISTS"));
                }
                let mut keys = Vec::new();
                let mut columns = Vec::new();
                for element in &create.table_elts {
                    match &element.node {
                        Some(NodeEnum::ColumnDef(column)) => columns.push(column),
                        Some(NodeEnum::Constraint(c))
                            if c.contype() == ConstrType::ConstrPrimary =>
                        {
                            keys.extend(c.keys.iter().map(|k| name_of(std::slice::from_ref(k))));
                        }
                        _ => {}
                    }
                }
                facts.hits.extend(
                    columns
                        .into_iter()
                        .filter_map(|column| small_primary_key(table, column, &keys)),
                );
            }
        }
        NodeEnum::TruncateStmt(truncate) if truncate.behavior() == DropBehavior::DropCascade => {
            for relation in &truncate.relations {
                if let Some(NodeEnum::RangeVar(r)) = &relation.node {
                    facts.touches.push(r.relname.clone());
                    facts.exclusive_tables.push(r.relname.clone());
                    hit(&mut facts, "truncate-cascade", &r.relname, String::new());
                }
            }
        }
        // ADD VALUE, not RENAME VALUE.
        NodeEnum::AlterEnumStmt(alter) if !alter.new_val.is_empty() && alter.old_val.is_empty() => {
            let enum_type = name_of(&alter.type_name);
            if !alter.skip_if_new_val_exists {
                facts.not_rerunnable = Some(format!(
                    "ALTER TYPE {enum_type} ADD VALUE without IF NOT EXISTS"
                ));
            }
            facts.adds_enum_value = Some(enum_type);
        }
        NodeEnum::DropStmt(drop) => {
            facts.concurrently |= drop.concurrent;
            if !drop.missing_ok {
                facts.not_rerunnable = Some("DROP without IF EXISTS".to_owned());
            }
            if drop.remove_type() == ObjectType::ObjectIndex && !drop.concurrent {
                for object in &drop.objects {
                    if let Some(NodeEnum::List(list)) = &object.node {
                        facts.hits.push(Hit::on_index(
                            "drop-index-not-concurrent",
                            &name_of(&list.items),
                        ));
                    }
                }
            }
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
    let mut hits = Vec::new();
    let mut not_rerunnable = None;
    let mut hit = |rule: &'static str, detail: String| hits.push(Hit::on(rule, table, detail));
    let def = cmd.def.as_deref().and_then(|d| d.node.as_ref());
    let exclusive = match cmd.subtype() {
        AlterTableType::AtAddColumn => {
            if let Some(NodeEnum::ColumnDef(column)) = def {
                let rewrites = rewriting_column(column);
                if let Some(why) = &rewrites {
                    hit("table-rewrite", format!("column {}: {why}", column.colname));
                }
                let not_null = column.is_not_null
                    || column_constraints(column).any(|c| {
                        matches!(
                            c.contype(),
                            ConstrType::ConstrNotnull | ConstrType::ConstrPrimary
                        )
                    });
                let filled = rewrites.is_some()
                    || column.raw_default.is_some()
                    || column_constraints(column).any(|c| c.contype() == ConstrType::ConstrDefault);
                if not_null && !filled {
                    hit(
                        "add-column-not-null-without-default",
                        format!("column {}", column.colname),
                    );
                }
                if !cmd.missing_ok {
                    not_rerunnable = Some(format!(
                        "ADD COLUMN {} without IF NOT EXISTS",
                        column.colname
                    ));
                }
                if let Some(key) = small_primary_key(table, column, &[]) {
                    hit(key.rule, key.detail);
                }
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
            if !cmd.missing_ok {
                not_rerunnable = Some(format!("DROP COLUMN {} without IF EXISTS", cmd.name));
            }
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
    };
    facts.hits.extend(hits);
    if not_rerunnable.is_some() {
        facts.not_rerunnable = not_rerunnable;
    }
    exclusive
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
        facts.hits.push(Hit::on(rule, table, detail));
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
