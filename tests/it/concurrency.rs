//! Concurrent writers on one document lose no update: plain updates, and `update_if` retry loops.

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::thread;

use revolve::{Collection, DocId, Durability, Revision, Schema, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "counters", version = 1)]
struct Counter {
    count: u64,
    /// Which thread wrote this revision, and its how-manyth write.
    writer: (u32, u32),
}

const THREADS: u32 = 4;

fn store<E: Engine>(durability: Durability) -> Store {
    E::fresh().durability(durability).open().unwrap()
}

/// Runs `work(thread)` on `THREADS` threads started together, and collects what each returns.
fn on_threads<R: Send>(work: impl Fn(u32) -> R + Sync) -> Vec<R> {
    let barrier = Barrier::new(THREADS as usize);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    work(thread)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    })
}

/// Checks that the document's history counts 1..=`revisions` with each parent one less.
fn assert_unbroken_history(counters: &Collection<Counter>, id: &str, revisions: u64) {
    let history = counters.history(id).unwrap();
    assert_eq!(history.len() as u64, revisions);
    for (number, info) in (1..).zip(&history) {
        assert_eq!(info.revision.get(), number);
        assert_eq!(info.parent, Revision::new(number - 1));
    }
}

fn concurrent_updates_lose_nothing<E: Engine>() {
    const UPDATES: u32 = 150;
    let store = store::<E>(Durability::Eventual);
    let counters = store.collection::<Counter>().unwrap();
    let start = Counter {
        count: 0,
        writer: (u32::MAX, 0),
    };
    counters.insert_with_id("shared", &start).unwrap();

    let per_thread: Vec<Vec<(Revision, Counter)>> = on_threads(|thread| {
        (0..UPDATES)
            .map(|i| {
                let value = Counter {
                    count: u64::from(i),
                    writer: (thread, i),
                };
                (counters.update("shared", &value).unwrap(), value)
            })
            .collect()
    });

    let total = u64::from(THREADS * UPDATES);
    let mut seen = BTreeSet::new();
    for writes in &per_thread {
        // One thread's writes are ordered.
        for pair in writes.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{:?} then {:?}",
                pair[0].0,
                pair[1].0
            );
        }
        for (revision, value) in writes {
            assert!(
                seen.insert(revision.get()),
                "revision {revision} returned twice"
            );
            // Each acknowledged update is exactly the revision it was told it got.
            let stored = counters.revision("shared", *revision).unwrap().unwrap();
            assert_eq!(&stored.data, value, "revision {revision}");
        }
    }
    assert_eq!(seen, (2..=1 + total).collect::<BTreeSet<_>>());
    let head = counters.get("shared").unwrap().unwrap();
    assert_eq!(head.revision.get(), 1 + total);
    assert_unbroken_history(&counters, "shared", 1 + total);
    assert_eq!(counters.len().unwrap(), 1);
}

fn update_if_retry_loops_count_every_increment<E: Engine>() {
    // Immediate durability: each successful write waits for a flush, shared by the writers that
    // committed meanwhile (group commit).
    const INCREMENTS: u32 = 25;
    let store = store::<E>(Durability::Immediate);
    let counters = store.collection::<Counter>().unwrap();
    counters
        .insert_with_id(
            "hits",
            &Counter {
                count: 0,
                writer: (u32::MAX, 0),
            },
        )
        .unwrap();

    let conflicts: Vec<u32> = on_threads(|thread| {
        let mut conflicts = 0;
        for i in 0..INCREMENTS {
            loop {
                let doc = counters.get("hits").unwrap().unwrap();
                let next = Counter {
                    count: doc.data.count + 1,
                    writer: (thread, i),
                };
                match counters.update_if("hits", doc.revision, &next) {
                    Ok(revision) => {
                        assert_eq!(revision.get(), doc.revision.get() + 1);
                        break;
                    }
                    Err(StoreError::Conflict {
                        expected, current, ..
                    }) => {
                        assert_eq!(expected, doc.revision);
                        assert!(current > expected, "{current} <= {expected}");
                        conflicts += 1;
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
        conflicts
    });

    let total = u64::from(THREADS * INCREMENTS);
    let head = counters.get("hits").unwrap().unwrap();
    assert_eq!(head.data.count, total, "after {conflicts:?} conflicts");
    assert_eq!(head.revision.get(), 1 + total);
    assert_unbroken_history(&counters, "hits", 1 + total);
    // Every revision added exactly one to the one before it.
    for number in 1..=1 + total {
        let doc = counters
            .revision("hits", Revision::new(number).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(doc.data.count, number - 1);
    }
}

fn concurrent_inserts_get_distinct_ids_and_exact_counts<E: Engine>() {
    const INSERTS: u32 = 100;
    let store = store::<E>(Durability::Eventual);
    let counters = store.collection::<Counter>().unwrap();
    let ids: Vec<Vec<DocId>> = on_threads(|thread| {
        (0..INSERTS)
            .map(|i| {
                counters
                    .insert(&Counter {
                        count: 0,
                        writer: (thread, i),
                    })
                    .unwrap()
            })
            .collect()
    });
    let distinct: BTreeSet<&DocId> = ids.iter().flatten().collect();
    assert_eq!(distinct.len() as u64, u64::from(THREADS * INSERTS));
    assert_eq!(counters.len().unwrap(), u64::from(THREADS * INSERTS));
    assert_eq!(counters.iter().count() as u64, u64::from(THREADS * INSERTS));
}

engine_tests! {
    concurrent_updates_lose_nothing,
    update_if_retry_loops_count_every_increment,
    concurrent_inserts_get_distinct_ids_and_exact_counts,
}
