//! [`Store::repair_counters`]: recomputes every collection's counters from its heads and failure
//! records. (Rebuilding a damaged snapshot is `repair`.)

use std::collections::{BTreeMap, BTreeSet};

use crate::store::counters::{Counter, Counters};
use crate::store::engine::sled::backend;
use crate::store::engine::sled::guard::Tree;
use crate::store::engine::sled::keys::{self, parse_failure_key, parse_head_key, Head};
use crate::store::engine::sled::verify::{current_failure, decode_counter};
use crate::store::{CounterChange, RepairReport, Store, StoreError};

impl Store {
    /// The repair behind [`Store::repair_counters`] on sled.
    pub(crate) fn repair_counters_sled(&self) -> Result<RepairReport, StoreError> {
        let mut report = RepairReport::default();
        for (name, tree_name) in &self.collection_trees()? {
            report.collections += 1;
            self.with_collection(name, tree_name, |tree, memory| {
                repair_collection(name, tree, memory, &mut report)
            })?;
        }
        self.flush()?;
        Ok(report)
    }
}

fn repair_collection(
    name: &str,
    tree: &Tree,
    memory: Option<&mut Counters>,
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    let mut actual: BTreeMap<Counter, u64> = BTreeMap::new();
    for entry in tree.scan_prefix([keys::HEAD]) {
        let (key, value) = entry.map_err(backend)?;
        // Counted exactly as `verify` counts: heads with a valid id that decode. The others are
        // left as they are and counted as such: `verify` names them.
        match (parse_head_key(&key), Head::decode(&value)) {
            (Ok(_), Some(head)) => *actual.entry(Counter::of(head)).or_insert(0) += 1,
            _ => report.uncounted_heads += 1,
        }
    }
    let mut batch = sled::Batch::default();
    for entry in tree.scan_prefix([keys::FAILURE]) {
        let (key, value) = entry.map_err(backend)?;
        let current = match parse_failure_key(&key) {
            Ok(id) => current_failure(tree, id, &value)?,
            // A record whose key names no document names no head either.
            Err(error) => Err(error.reason.to_owned()),
        };
        if let Ok(version) = current {
            *actual.entry(Counter::Failed(version)).or_insert(0) += 1;
        } else {
            batch.remove(key);
            report.stale_failures_removed += 1;
        }
    }
    let mut stored = BTreeMap::new();
    for entry in tree.scan_prefix([keys::COUNTER]) {
        let (key, value) = entry.map_err(backend)?;
        if let Ok((counter, count)) = decode_counter(&key, &value) {
            stored.insert(counter, count);
        } else {
            batch.remove(key);
            report.malformed_counters_removed += 1;
        }
    }
    let counters: BTreeSet<Counter> = stored.keys().chain(actual.keys()).copied().collect();
    for counter in counters {
        let before = stored.get(&counter).copied().unwrap_or(0);
        let after = actual.get(&counter).copied().unwrap_or(0);
        if before != after {
            batch.insert(&counter.key()[..], &after.to_be_bytes()[..]);
            report.counters.push(CounterChange {
                collection: name.to_owned(),
                counter: counter.into(),
                before,
                after,
            });
        }
    }
    tree.apply_batch(batch).map_err(backend)?;
    if let Some(memory) = memory {
        let mut fresh = Counters::default();
        for (counter, count) in actual {
            fresh.insert(counter, count);
        }
        *memory = fresh;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::record;
    use crate::store::engine::sled::fixtures::{kinds, migrated_store, populate, tree};
    use crate::store::{CounterKind, FailureRecord, Problem};

    #[test]
    fn repair_recomputes_counters_and_drops_stale_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (_, tasks) = migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let t = tree(&store, "tasks");
        t.insert(Counter::Live(2).key(), &40u64.to_be_bytes()[..])
            .unwrap();
        t.insert(Counter::Failed(5).key(), &3u64.to_be_bytes()[..])
            .unwrap();
        let failure = FailureRecord {
            revision: 9,
            version: 1,
            class: "step".into(),
            error: "x".into(),
            run: 1,
        };
        t.insert(
            keys::failure(&tasks[2]),
            record::encode_payload(&failure).unwrap(),
        )
        .unwrap();
        let report = store.verify().unwrap();
        assert!(!report.is_ok());
        assert!(report.problems.iter().all(Problem::is_repairable));

        let repair = store.repair_counters().unwrap();
        assert_eq!(repair.stale_failures_removed, 1);
        let mut changed: Vec<_> = repair
            .counters
            .iter()
            .map(|c| (c.counter, c.before, c.after))
            .collect();
        changed.sort_unstable();
        assert_eq!(
            changed,
            [
                (CounterKind::Live { version: 2 }, 40, 2),
                (CounterKind::Failed { version: 1 }, 1, 0),
                (CounterKind::Failed { version: 5 }, 3, 0),
            ]
        );
        assert!(store.verify().unwrap().is_ok());
        // The in-memory counters follow: the collection reports the repaired counts.
        let raw = store.raw_collection("tasks").unwrap();
        assert_eq!(
            raw.count_by_version().unwrap(),
            BTreeMap::from([(1, 1), (2, 2)])
        );
        // The failed document is pending again.
        let stats = store.stats().unwrap();
        assert!(stats.collections[1].failed.is_empty());
    }

    #[test]
    fn a_malformed_counter_is_verified_and_repaired_without_opening_the_collection() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("c/notes")
                .unwrap()
                .insert(Counter::Live(1).key(), &[1u8][..])
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.raw_collection("notes"),
            Err(StoreError::Corrupt { .. })
        ));
        let report = store.verify().unwrap();
        assert!(kinds(&report).contains(&"malformed_counter"), "{report:#?}");
        let repair = store.repair_counters().unwrap();
        assert_eq!(repair.malformed_counters_removed, 1);
        assert!(store.verify().unwrap().is_ok());
        let raw = store.raw_collection("notes").unwrap();
        assert_eq!(raw.count_by_version().unwrap(), BTreeMap::from([(1, 2)]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn verify_never_panics_on_arbitrary_keys_and_values(
            entries in proptest::collection::vec(
                (
                    prop_oneof![
                        Just(b'h'), Just(b'r'), Just(b'c'), Just(b'f'), Just(b'm'), any::<u8>()
                    ],
                    proptest::collection::vec(any::<u8>(), 0..24),
                    proptest::collection::vec(any::<u8>(), 0..40),
                ),
                0..24,
            )
        ) {
            let store = Store::temporary().unwrap();
            populate(&store);
            let t = tree(&store, "notes");
            for (space, rest, value) in entries {
                let mut key = vec![space];
                key.extend(rest);
                t.insert(key, value).unwrap();
            }
            let report = store.verify().unwrap();
            let _ = store.repair_counters().unwrap();
            let after = store.verify().unwrap();
            prop_assert!(after.problems.iter().all(|p| !p.is_repairable()), "{:#?} then {:#?}", report, after);
        }
    }

    #[test]
    fn repair_counts_the_heads_it_leaves_out() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let n = tree(&store, "notes");
        // A head that does not decode, and a head key without a valid id.
        n.insert(keys::head("broken"), &[9u8; 4][..]).unwrap();
        let good = n.iter().find_map(|entry| {
            let (key, value) = entry.unwrap();
            (key.first() == Some(&keys::HEAD)).then_some(value)
        });
        n.insert(b"h\xff", good.unwrap()).unwrap();
        let repair = store.repair_counters().unwrap();
        assert_eq!(repair.uncounted_heads, 2);
        assert!(!repair.changed_anything(), "{repair:#?}");
        let after = store.verify().unwrap();
        assert!(kinds(&after).contains(&"malformed_head"), "{after:#?}");
        assert!(kinds(&after).contains(&"malformed_key"), "{after:#?}");
    }
}
