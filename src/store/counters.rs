//! A collection's counts: live documents per version, removed documents, and known migration
//! failures per version (a subset of the live count). Engines keep them up to date in the same
//! commit as the heads they count; how they store them is theirs.

use std::collections::BTreeMap;

use super::head::Head;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Counter {
    Live(u32),
    Removed,
    Failed(u32),
}

impl Counter {
    /// The counter a head is counted in.
    pub(crate) fn of(head: Head) -> Self {
        if head.removed {
            Counter::Removed
        } else {
            Counter::Live(head.version)
        }
    }
}

/// A collection's counts, as an engine reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counters(BTreeMap<Counter, u64>);

impl Counters {
    pub(crate) fn insert(&mut self, counter: Counter, value: u64) {
        self.0.insert(counter, value);
    }

    pub(crate) fn get(&self, counter: Counter) -> u64 {
        self.0.get(&counter).copied().unwrap_or(0)
    }

    /// Live documents per version, versions with none left out.
    pub(crate) fn live(&self) -> BTreeMap<u32, u64> {
        self.by_class(|counter| match counter {
            Counter::Live(version) => Some(version),
            _ => None,
        })
    }

    /// Documents whose migration failed, per version, versions with none left out.
    pub(crate) fn failed(&self) -> BTreeMap<u32, u64> {
        self.by_class(|counter| match counter {
            Counter::Failed(version) => Some(version),
            _ => None,
        })
    }

    pub(crate) fn removed(&self) -> u64 {
        self.get(Counter::Removed)
    }

    /// Live documents below `latest` whose migration has not failed: what a migration would take.
    pub(crate) fn migratable(&self, latest: u32) -> u64 {
        self.live()
            .into_iter()
            .filter(|&(version, _)| version < latest)
            .map(|(version, live)| live.saturating_sub(self.get(Counter::Failed(version))))
            .sum()
    }

    /// What a migration to `latest` would take: [`migratable`](Self::migratable), and with
    /// `retry_failed` the documents below `latest` whose migration failed.
    pub(crate) fn candidates(&self, latest: u32, retry_failed: bool) -> u64 {
        let failed: u64 = if retry_failed {
            self.failed()
                .into_iter()
                .filter(|&(version, _)| version < latest)
                .map(|(_, n)| n)
                .sum()
        } else {
            0
        };
        self.migratable(latest) + failed
    }

    /// The newest version any live document is at.
    pub(crate) fn newest_version(&self) -> Option<u32> {
        self.live().keys().next_back().copied()
    }

    fn by_class(&self, class: impl Fn(Counter) -> Option<u32>) -> BTreeMap<u32, u64> {
        self.0
            .iter()
            .filter(|&(_, &count)| count > 0)
            .filter_map(|(&counter, &count)| Some((class(counter)?, count)))
            .collect()
    }
}

/// Counter changes staged for one batch.
#[derive(Debug, Default)]
pub(crate) struct Delta(BTreeMap<Counter, i64>);

impl Delta {
    pub(crate) fn add(&mut self, counter: Counter, change: i64) {
        *self.0.entry(counter).or_insert(0) += change;
    }

    /// A head replaced by another.
    pub(crate) fn replace(&mut self, old: Option<Head>, new: Head) {
        if let Some(old) = old {
            self.add(Counter::of(old), -1);
        }
        self.add(Counter::of(new), 1);
    }

    /// The new value of every changed counter.
    pub(crate) fn values(&self, counters: &Counters) -> Vec<(Counter, u64)> {
        self.0
            .iter()
            .filter(|&(_, &change)| change != 0)
            .map(|(&counter, &change)| {
                let current = counters.get(counter);
                let value = if change < 0 {
                    current.saturating_sub(change.unsigned_abs())
                } else {
                    current.saturating_add(change.unsigned_abs())
                };
                (counter, value)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Revision;

    #[test]
    fn migratable_leaves_out_failed_and_latest() {
        let mut counters = Counters::default();
        counters.insert(Counter::Live(1), 10);
        counters.insert(Counter::Failed(1), 3);
        counters.insert(Counter::Live(2), 5);
        counters.insert(Counter::Live(3), 7);
        counters.insert(Counter::Removed, 4);
        assert_eq!(counters.migratable(3), 7 + 5);
        assert_eq!(counters.migratable(1), 0);
        assert_eq!(counters.newest_version(), Some(3));
    }

    #[test]
    fn delta_replaces_heads() {
        let mut counters = Counters::default();
        counters.insert(Counter::Live(1), 2);
        let old = Head {
            revision: Revision::FIRST,
            version: 1,
            removed: false,
        };
        let new = Head {
            revision: Revision::FIRST,
            version: 2,
            removed: false,
        };
        let mut delta = Delta::default();
        delta.replace(Some(old), new);
        assert_eq!(
            delta.values(&counters),
            [(Counter::Live(1), 1), (Counter::Live(2), 1)]
        );
    }
}
