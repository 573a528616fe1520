//! The shrink guard of a mirror run: an eviction storm is an alarm, not a
//! change to record.
//!
//! Under `allkeys-lru` Redis drops keys one by one when memory runs out; a
//! mirror that recorded each as deleted would make a latest restore leave
//! them out. So before a run records tombstones it compares, per kb_id and
//! category, the keys that vanished since the previous state with the keys
//! that were live then; when more than the limit vanished, no tombstone of
//! the run is written (the versions of the keys still there are) and the
//! run fails, naming what shrank, unless the operator says the deletions
//! are meant (`--force`).

use serde::Serialize;

/// Keys of one kb_id and category before a run, and how many of them the
/// run did not find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shrink {
    /// kb_id, for display.
    pub kb_id: String,
    /// Category name.
    pub category: String,
    /// Keys live in the mirror's latest state before the run.
    pub before: u64,
    /// Of those, keys the run did not find.
    pub gone: u64,
}

impl Shrink {
    /// The share of the keys that vanished, in percent.
    pub fn percent(&self) -> f64 {
        if self.before == 0 {
            return 0.0;
        }
        self.gone as f64 * 100.0 / self.before as f64
    }
}

/// The groups that shrank by more than `max_percent` (in 0..=100): the
/// ones that stop a run. A group that had no key before never counts.
pub fn over_limit(shrinks: &[Shrink], max_percent: f64) -> Vec<Shrink> {
    shrinks
        .iter()
        .filter(|s| s.gone > 0 && s.percent() > max_percent)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shrink(before: u64, gone: u64) -> Shrink {
        Shrink {
            kb_id: "kb".into(),
            category: "emotives".into(),
            before,
            gone,
        }
    }

    #[test]
    fn only_groups_above_the_limit_stop_a_run() {
        let all = [
            shrink(1000, 150),
            shrink(1000, 100),
            shrink(0, 0),
            shrink(3, 0),
        ];
        let over = over_limit(&all, 10.0);
        assert_eq!(over, vec![shrink(1000, 150)], "exactly 10% is allowed");
        assert_eq!(over[0].percent(), 15.0);
        assert!(over_limit(&all, 100.0).is_empty());
        assert_eq!(over_limit(&[shrink(1, 1)], 99.9).len(), 1, "a wiped group");
    }
}
