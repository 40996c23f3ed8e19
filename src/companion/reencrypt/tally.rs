//! What a run found and did: counts per table and per key id, the undecryptable
//! values (by table and id, never content), and the readable summary.

use std::fmt;

use crate::contract::result::Summary;
use crate::contract::summary::{Counts, Outcome, ReencryptReport};

/// Undecryptable values listed in the final result event (the log has them all).
const MAX_LISTED_UNDECRYPTABLE: usize = 200;

impl Counts {
    pub(super) fn add(&mut self, disposition: Disposition) {
        match disposition {
            Disposition::OnPrimary => self.already_on_primary += 1,
            Disposition::Reencrypted => self.reencrypted += 1,
            Disposition::Skipped => self.skipped += 1,
            Disposition::Undecryptable => self.undecryptable += 1,
        }
    }
}

impl ReencryptReport {
    /// The status the companion exits with: 0, 5 when values could not be decrypted,
    /// 143 / 130 when stopped by SIGTERM / SIGINT.
    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }

    /// The summary for the final result event; the list of undecryptable values is
    /// cut to its first 200 there (the log lists every one).
    pub(crate) fn summary(&self) -> Summary {
        let mut summary = self.clone();
        if summary.undecryptable.len() > MAX_LISTED_UNDECRYPTABLE {
            summary.undecryptable_not_listed =
                Some(summary.undecryptable.len() - MAX_LISTED_UNDECRYPTABLE);
            summary.undecryptable.truncate(MAX_LISTED_UNDECRYPTABLE);
        }
        Summary::Reencrypt(Box::new(summary))
    }

    /// Writes the readable summary: a line per table and per key id, then the verdict.
    pub(super) fn log_summary(&self) {
        let done = if self.dry_run {
            "would re-encrypt"
        } else {
            "re-encrypted"
        };
        for t in &self.tables {
            tracing::info!(
                table = %t.table,
                column = %t.column,
                "{}.{}: {}",
                t.table,
                t.column,
                CountsLine(&t.counts, done)
            );
        }
        for (key_id, counts) in &self.by_key_id {
            tracing::info!(key_id = %key_id, "values under key {key_id}: {}", CountsLine(counts, done));
        }
        let total = self.total();
        let mode = if self.dry_run {
            " (dry run, nothing written)"
        } else {
            ""
        };
        match self.outcome {
            Outcome::Completed if total.undecryptable == 0 && self.dry_run => tracing::info!(
                "reencrypt finished{mode}: {}; every value can be decrypted, {} would move to key {}",
                CountsLine(&total, done),
                total.reencrypted,
                self.keys.primary
            ),
            Outcome::Completed if total.undecryptable == 0 && total.skipped > 0 => tracing::warn!(
                "reencrypt finished: {}; {} value(s) kept changing under another writer and were \
                 left as they are: rerun to move them to key {}",
                CountsLine(&total, done),
                total.skipped,
                self.keys.primary
            ),
            Outcome::Completed if total.undecryptable == 0 => tracing::info!(
                "reencrypt finished: {}; every value is on key {}",
                CountsLine(&total, done),
                self.keys.primary
            ),
            Outcome::Completed => tracing::warn!(
                "reencrypt finished{mode}: {}; {} value(s) could not be decrypted (listed above by \
                 table and id): check SECRETS_ENCRYPTION_KEY_PREVIOUS, then rerun",
                CountsLine(&total, done),
                total.undecryptable
            ),
            Outcome::Terminated | Outcome::Interrupted | Outcome::DeadlinePassed => tracing::warn!(
                "reencrypt stopped early{mode}: {}; finished batches are written, the one in flight \
                 was rolled back; \
                 rerun to continue (values already on the primary key are passed over)",
                CountsLine(&total, done)
            ),
        }
    }
}

struct CountsLine<'a>(&'a Counts, &'a str);

impl fmt::Display for CountsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "scanned {}, already on primary {}, {} {}, skipped {}, undecryptable {}",
            c.scanned, c.already_on_primary, self.1, c.reencrypted, c.skipped, c.undecryptable
        )
    }
}

/// What happened to one scanned value in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disposition {
    OnPrimary,
    Reencrypted,
    Skipped,
    Undecryptable,
}
