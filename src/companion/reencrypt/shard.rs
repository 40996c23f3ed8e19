//! `--shard K/N`: the K-th of N equal ranges of the primary-key space, so N tasks can
//! re-encrypt one database together, each walking only its own range of every table.
//!
//! UUIDs compare in PostgreSQL as their 16 bytes do, which is the order of the
//! unsigned 128-bit integers they spell: shard K covers ⌊(K−1)·2¹²⁸/N⌋ up to, but not
//! including, ⌊K·2¹²⁸/N⌋; the last shard goes up to the largest UUID, included.

use uuid::Uuid;

use super::pass::LOCK_KEY;
use crate::contract::command_line::Shard;
use crate::contract::summary::{KeyRange, ShardSummary};

impl KeyRange {
    /// Every key: an unsharded run.
    pub const ALL: KeyRange = KeyRange {
        from: Uuid::nil(),
        to: Uuid::max(),
    };
}

impl Shard {
    /// ⌊k·2¹²⁸/n⌋ for k < n, computed without overflow: 2¹²⁸ = q·n + r.
    fn boundary(k: u32, n: u32) -> u128 {
        if k == 0 {
            return 0;
        }
        // From here n ≥ 2, so 2¹²⁸ / n fits.
        let n128 = u128::from(n);
        // 2¹²⁸ = (u128::MAX + 1): its quotient and remainder by n.
        let r = (u128::MAX % n128 + 1) % n128;
        let q = u128::MAX / n128 + u128::from(r == 0);
        u128::from(k) * q + u128::from(k) * r / n128
    }

    /// The keys this shard walks.
    pub(crate) fn range(&self) -> KeyRange {
        let from = Self::boundary(self.index - 1, self.count);
        let to = if self.index == self.count {
            u128::MAX
        } else {
            Self::boundary(self.index, self.count) - 1
        };
        KeyRange {
            from: Uuid::from_u128(from),
            to: Uuid::from_u128(to),
        }
    }

    /// The advisory lock only this shard (of this many) takes, exclusively: two runs of
    /// the same shard exclude each other. Near [`LOCK_KEY`], which every shard holds
    /// shared and an unsharded run holds exclusively.
    pub fn lock_key(&self) -> i64 {
        LOCK_KEY.wrapping_add((i64::from(self.count) << 16) | i64::from(self.index))
    }

    /// What the result event says about it.
    pub fn summary(&self) -> ShardSummary {
        ShardSummary {
            shard: self.to_string(),
            index: self.index,
            count: self.count,
            range: self.range(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_shards_say_what_to_write() {
        for bad in ["0/4", "5/4", "1/0", "a/b", "3", "1/2/3", "", "-1/4"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} was accepted");
        }
        assert_eq!(
            "0/4".parse::<Shard>().unwrap_err(),
            "\"0/4\": K must be from 1 to 4"
        );
        assert_eq!(
            "1/0".parse::<Shard>().unwrap_err(),
            "\"1/0\": N must be at least 1"
        );
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
    }

    #[test]
    fn shards_are_disjoint_and_cover_every_key() {
        for count in [1, 2, 3, 4, 7, 16, 1000, u32::MAX] {
            let ranges: Vec<KeyRange> = (1..=count.min(50))
                .chain((count > 50).then_some(count))
                .map(|index| Shard { index, count }.range())
                .collect();
            assert_eq!(ranges[0].from, Uuid::nil(), "{count}");
            assert_eq!(ranges.last().unwrap().to, Uuid::max(), "{count}");
            for pair in ranges
                .windows(2)
                .take(if count > 50 { 49 } else { usize::MAX })
            {
                assert_eq!(
                    pair[0].to.as_u128() + 1,
                    pair[1].from.as_u128(),
                    "{count}: {pair:?}"
                );
            }
            for range in &ranges {
                assert!(range.from <= range.to, "{count}: {range:?}");
            }
        }
        let quarter = Shard { index: 3, count: 4 }.range();
        assert_eq!(
            quarter.from.to_string(),
            "80000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            quarter.to.to_string(),
            "bfffffff-ffff-ffff-ffff-ffffffffffff"
        );
        let third = Shard { index: 2, count: 3 }.range();
        assert_eq!(third.from.as_u128(), u128::MAX / 3);
    }

    #[test]
    fn each_shard_has_its_own_lock() {
        let keys: std::collections::BTreeSet<i64> = (1..=8)
            .map(|index| Shard { index, count: 8 }.lock_key())
            .chain((1..=4).map(|index| Shard { index, count: 4 }.lock_key()))
            .collect();
        assert_eq!(keys.len(), 12);
        assert!(!keys.contains(&LOCK_KEY));
    }
}
