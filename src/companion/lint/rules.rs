//! The rules: each has a stable id, the lock the statement takes (PostgreSQL's
//! documentation, "Explicit Locking" and the `ALTER TABLE` page), why that hurts, the
//! safe pattern, and when it blocks rather than warns. What a statement does is read in
//! [`super::statement`].

/// When a finding blocks the gate (exit 6) rather than warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    /// On a large table: the harm is how long the lock is held.
    OnLargeTables,
    /// On any table that exists, whatever its size: the statement fails on rows, loses
    /// data, or breaks the application version still running during the rollout.
    OnExistingTables,
    /// Always, even on a table the pending set creates: the migration cannot run, or
    /// cannot be run again, as written.
    Always,
    /// Against a server the rule applies to; offline, where the server is unknown, a
    /// warning.
    OnAffectedServers,
}

/// A rule: its id, the lock, why it is dangerous and what to do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, as suppressions name it.
    pub id: &'static str,
    /// The lock the statement takes on the table.
    pub lock: &'static str,
    /// Why it is dangerous on a live table.
    pub why: &'static str,
    /// The safe pattern.
    pub fix: &'static str,
    /// When a finding blocks.
    pub blocks: Blocks,
}

/// Every rule, in the order the README lists them.
pub const RULES: &[Rule] = &[
    Rule {
        id: "index-not-concurrent",
        lock: "SHARE (blocks INSERT, UPDATE, DELETE)",
        why: "CREATE INDEX without CONCURRENTLY blocks every write to the table for the whole build",
        fix: "CREATE INDEX CONCURRENTLY IF NOT EXISTS, alone in a migration that starts with `-- no-transaction`",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "concurrently-in-transaction",
        lock: "none: it fails",
        why: "CONCURRENTLY cannot run inside a transaction block, and each migration runs in one unless told otherwise: the migration fails at deploy time",
        fix: "make `-- no-transaction` the migration's first line and keep the statement alone in it",
        blocks: Blocks::Always,
    },
    Rule {
        id: "table-rewrite",
        lock: "ACCESS EXCLUSIVE (blocks every read and write)",
        why: "the table is rewritten while every query on it waits: ADD COLUMN with a volatile default, serial or stored generated column, ALTER COLUMN TYPE that is not binary-coercible, VACUUM FULL, CLUSTER",
        fix: "add the column without a default (or with a constant one), backfill in batches, then set the default; for a type change add a new column, dual-write, backfill and switch; use pg_repack instead of VACUUM FULL or CLUSTER",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "set-not-null",
        lock: "ACCESS EXCLUSIVE, held while the whole table is scanned",
        why: "SET NOT NULL scans every row under the lock unless a validated CHECK (col IS NOT NULL) already proves it",
        fix: "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c (a SHARE UPDATE EXCLUSIVE scan); then SET NOT NULL, which uses the check",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "constraint-not-valid",
        lock: "SHARE ROW EXCLUSIVE for a foreign key (on both tables), ACCESS EXCLUSIVE for a CHECK, held while every row is checked",
        why: "adding a foreign key or CHECK validates every existing row under the lock",
        fix: "ADD CONSTRAINT ... NOT VALID (instant), then VALIDATE CONSTRAINT in a later migration (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "unique-without-index",
        lock: "ACCESS EXCLUSIVE while the unique index is built",
        why: "ADD UNIQUE or ADD PRIMARY KEY builds its index under the lock",
        fix: "CREATE UNIQUE INDEX CONCURRENTLY (its own `-- no-transaction` migration), then ADD CONSTRAINT ... UNIQUE USING INDEX (or PRIMARY KEY USING INDEX)",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "drop-table",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout reads the table: its queries fail",
        fix: "ship a release that no longer uses the table first; drop it in a later migration",
        blocks: Blocks::OnExistingTables,
    },
    Rule {
        id: "drop-column",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout selects or writes the column: its queries fail",
        fix: "ship a release that no longer uses the column (and ignores it in ORMs) first; drop it in a later migration",
        blocks: Blocks::OnExistingTables,
    },
    Rule {
        id: "rename",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout uses the old name: its queries fail",
        fix: "add the new table or column, write to both, backfill, move reads, and drop the old one in a later migration (or a view with the old name meanwhile)",
        blocks: Blocks::OnExistingTables,
    },
    Rule {
        id: "column-type-change",
        lock: "ACCESS EXCLUSIVE",
        why: "the application version still running during the rollout reads and writes the column as its old type",
        fix: "add a column of the new type, write to both, backfill, switch reads, drop the old column later",
        blocks: Blocks::OnExistingTables,
    },
    Rule {
        id: "lock-table",
        lock: "as named; ACCESS EXCLUSIVE when no mode is given",
        why: "an explicit LOCK TABLE queues behind any long transaction, and every query on the table queues behind it",
        fix: "remove it; if an ordering really needs it, take a weaker mode and keep the migration short under a lock_timeout",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "multiple-exclusive-locks",
        lock: "ACCESS EXCLUSIVE on several tables in one transaction",
        why: "holding exclusive locks on several tables at once deadlocks against application transactions that take them in the other order, and blocks all of them for the whole migration",
        fix: "one table per migration",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "drop-index-not-concurrent",
        lock: "ACCESS EXCLUSIVE on the index's table (blocks every read and write)",
        why: "DROP INDEX without CONCURRENTLY waits for every transaction on the table, and every query on it waits behind",
        fix: "DROP INDEX CONCURRENTLY IF EXISTS, alone in a migration that starts with `-- no-transaction`",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "reindex-not-concurrent",
        lock: "SHARE on the table (blocks INSERT, UPDATE, DELETE), ACCESS EXCLUSIVE on each index (blocks the reads that use it)",
        why: "REINDEX without CONCURRENTLY blocks writes for the whole rebuild",
        fix: "REINDEX INDEX CONCURRENTLY (PostgreSQL 12+), alone in a migration that starts with `-- no-transaction`",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "not-rerunnable",
        lock: "none: a second run fails",
        why: "a `-- no-transaction` migration is never retried and, when it fails half-way, what ran stays; running it again fails at the first statement that already ran",
        fix: "make every statement idempotent: CREATE ... IF NOT EXISTS, DROP ... IF EXISTS, ADD COLUMN IF NOT EXISTS (and drop an INVALID index a failed CREATE INDEX CONCURRENTLY left before retrying)",
        blocks: Blocks::Always,
    },
    Rule {
        id: "add-column-not-null-without-default",
        lock: "ACCESS EXCLUSIVE",
        why: "ADD COLUMN ... NOT NULL without a default fails on a table with any row (\"contains null values\")",
        fix: "add it with a constant DEFAULT (instant), or nullable, backfill in batches, then CHECK (col IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL",
        blocks: Blocks::OnExistingTables,
    },
    Rule {
        id: "truncate-cascade",
        lock: "ACCESS EXCLUSIVE on the table and on every table that references it",
        why: "CASCADE empties every table with a foreign key to it, tables the statement does not name",
        fix: "TRUNCATE the tables meant, by name, without CASCADE; or DELETE in batches",
        blocks: Blocks::OnExistingTables,
    },
    Rule {
        id: "enum-value-in-transaction",
        lock: "ACCESS EXCLUSIVE on the type",
        why: "before PostgreSQL 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block: the migration fails; from 12 on, the new value cannot be used before the transaction commits",
        fix: "put it alone in a migration that starts with `-- no-transaction`, with IF NOT EXISTS, and use the value in a later migration",
        blocks: Blocks::OnAffectedServers,
    },
    Rule {
        id: "integer-primary-key",
        lock: "none now; ACCESS EXCLUSIVE for the rewrite that widens it later",
        why: "a 32-bit key (integer, smallint, serial) runs out at 2,147,483,647, and widening it then rewrites the table and every index and foreign key on it",
        fix: "bigint (bigint GENERATED ALWAYS AS IDENTITY, or bigserial), or uuid",
        blocks: Blocks::OnLargeTables,
    },
    Rule {
        id: "suppression-without-reason",
        lock: "none",
        why: "an allowance must say why the danger is accepted, for the reviewer and the operator on call",
        fix: "write `-- everruns-admin:allow RULE-ID because ...` with a reason, and a rule id that exists",
        blocks: Blocks::Always,
    },
];

/// The rule with `id`.
pub fn rule(id: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
