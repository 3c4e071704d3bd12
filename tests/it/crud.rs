//! Insert, update, conditional update, remove and get against a `BTreeMap` model, plus the id rules.

use std::collections::BTreeMap;

use proptest::prelude::*;
use revolve::{DocId, Durability, InvalidId, Revision, Schema, Store, StoreError, MAX_ID_LEN};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 1)]
struct Note {
    text: String,
    n: u32,
}

fn note(text: &str, n: u32) -> Note {
    Note {
        text: text.to_owned(),
        n,
    }
}

fn rev(n: u64) -> Revision {
    Revision::new(n).unwrap()
}

/// A store that leaves flushing to the engine: these tests check semantics, not durability.
fn fast_store<E: Engine>() -> Store {
    E::fresh().durability(Durability::Eventual).open().unwrap()
}

/// Ids that share prefixes, so that a key layout mixing `ab` into `abc` would show.
const IDS: [&str; 6] = ["a", "ab", "abc", "b", "b\u{e9}", "z"];

#[derive(Debug, Clone)]
enum Op {
    Insert { id: usize, n: u32 },
    Update { id: usize, n: u32 },
    UpdateIf { id: usize, delta: i8, n: u32 },
    Remove { id: usize },
    Get { id: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    prop_oneof![
        3 => (id.clone(), any::<u32>()).prop_map(|(id, n)| Op::Insert { id, n }),
        3 => (id.clone(), any::<u32>()).prop_map(|(id, n)| Op::Update { id, n }),
        3 => (id.clone(), -2i8..=1, any::<u32>()).prop_map(|(id, delta, n)| Op::UpdateIf { id, delta, n }),
        2 => id.clone().prop_map(|id| Op::Remove { id }),
        2 => id.prop_map(|id| Op::Get { id }),
    ]
}

/// What the model says one id holds: its latest revision, and its value unless removed.
#[derive(Debug)]
struct Entry {
    revision: u64,
    value: Option<Note>,
}

/// A write's result, reduced to what the model predicts.
#[derive(Debug, PartialEq)]
enum Outcome {
    Written(u64),
    NotFound,
    AlreadyExists,
    Conflict { expected: u64, current: u64 },
    Other(String),
}

fn outcome(result: Result<Revision, StoreError>) -> Outcome {
    match result {
        Ok(revision) => Outcome::Written(revision.get()),
        Err(StoreError::NotFound { .. }) => Outcome::NotFound,
        Err(StoreError::AlreadyExists { .. }) => Outcome::AlreadyExists,
        Err(StoreError::Conflict {
            expected, current, ..
        }) => Outcome::Conflict {
            expected: expected.get(),
            current: current.get(),
        },
        Err(other) => Outcome::Other(format!("{other:?}")),
    }
}

/// A property test, run through proptest's runner so that it is an ordinary generic test body.
#[allow(clippy::too_many_lines)] // One arm per operation against the model, read top to bottom.
fn crud_matches_a_btreemap_model<E: Engine>() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let result = runner.run(&proptest::collection::vec(op(), 1..=40), |ops| {
        let store = fast_store::<E>();
        let notes = store.collection::<Note>().unwrap();
        let mut model: BTreeMap<&str, Entry> = BTreeMap::new();

        for op in ops {
            match op {
                Op::Insert { id, n } => {
                    let id = IDS[id];
                    let value = note(id, n);
                    let expected = match model.get_mut(id) {
                        Some(Entry { value: Some(_), .. }) => Outcome::AlreadyExists,
                        // A removed id is taken again, continuing its history.
                        Some(entry) => {
                            entry.revision += 1;
                            entry.value = Some(value.clone());
                            Outcome::Written(entry.revision)
                        }
                        None => {
                            model.insert(
                                id,
                                Entry {
                                    revision: 1,
                                    value: Some(value.clone()),
                                },
                            );
                            Outcome::Written(1)
                        }
                    };
                    prop_assert_eq!(
                        outcome(notes.insert_with_id(id, &value)),
                        expected,
                        "insert {}",
                        id
                    );
                }
                Op::Update { id, n } => {
                    let id = IDS[id];
                    let value = note(id, n);
                    let expected = match model.get_mut(id) {
                        Some(entry) if entry.value.is_some() => {
                            entry.revision += 1;
                            entry.value = Some(value.clone());
                            Outcome::Written(entry.revision)
                        }
                        _ => Outcome::NotFound,
                    };
                    prop_assert_eq!(outcome(notes.update(id, &value)), expected, "update {}", id);
                }
                Op::UpdateIf { id, delta, n } => {
                    let id = IDS[id];
                    let value = note(id, n);
                    let current = model.get(id).map_or(0, |entry| entry.revision);
                    let wanted = current.saturating_add_signed(i64::from(delta)).max(1);
                    let expected = match model.get_mut(id) {
                        Some(entry) if entry.value.is_some() => {
                            if entry.revision == wanted {
                                entry.revision += 1;
                                entry.value = Some(value.clone());
                                Outcome::Written(entry.revision)
                            } else {
                                Outcome::Conflict {
                                    expected: wanted,
                                    current: entry.revision,
                                }
                            }
                        }
                        _ => Outcome::NotFound,
                    };
                    prop_assert_eq!(
                        outcome(notes.update_if(id, rev(wanted), &value)),
                        expected,
                        "update_if {} expecting {}",
                        id,
                        wanted
                    );
                }
                Op::Remove { id } => {
                    let id = IDS[id];
                    let expected = match model.get_mut(id) {
                        Some(entry) if entry.value.is_some() => {
                            entry.revision += 1;
                            entry.value = None;
                            Outcome::Written(entry.revision)
                        }
                        _ => Outcome::NotFound,
                    };
                    prop_assert_eq!(outcome(notes.remove(id)), expected, "remove {}", id);
                }
                Op::Get { id } => {
                    let id = IDS[id];
                    let got = notes.get(id).unwrap();
                    match model.get(id) {
                        Some(Entry {
                            revision,
                            value: Some(value),
                        }) => {
                            let got = got.expect("a live document reads as Some");
                            prop_assert_eq!(got.id.as_str(), id);
                            prop_assert_eq!(got.revision.get(), *revision);
                            prop_assert_eq!(got.stored_version, 1);
                            prop_assert_eq!(&got.data, value);
                        }
                        _ => prop_assert!(got.is_none(), "{} reads as {:?}", id, got),
                    }
                }
            }

            let live = model.values().filter(|entry| entry.value.is_some()).count() as u64;
            let removed = model.len() as u64 - live;
            let expected_counts: BTreeMap<u32, u64> = if live == 0 {
                BTreeMap::new()
            } else {
                BTreeMap::from([(1, live)])
            };
            prop_assert_eq!(notes.count_by_version().unwrap(), expected_counts);
            prop_assert_eq!(notes.removed_count().unwrap(), removed);
            prop_assert_eq!(notes.len().unwrap(), live);
        }

        for id in IDS {
            let history = notes.history(id).unwrap();
            let expected_len = model.get(id).map_or(0, |entry| entry.revision);
            prop_assert_eq!(history.len() as u64, expected_len, "history of {}", id);
            for (index, info) in history.iter().enumerate() {
                prop_assert_eq!(info.revision.get(), index as u64 + 1);
            }
        }
        let listed: Vec<(String, Note)> = notes
            .iter()
            .map(|doc| doc.map(|doc| (doc.id.into_string(), doc.data)))
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<(String, Note)> = model
            .iter()
            .filter_map(|(id, entry)| entry.value.clone().map(|value| ((*id).to_owned(), value)))
            .collect();
        prop_assert_eq!(listed, expected);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

fn generated_ids_are_unique_and_sort_by_insertion<E: Engine>() {
    let store = fast_store::<E>();
    let notes = store.collection::<Note>().unwrap();
    let mut ids: Vec<DocId> = Vec::new();
    for n in 0..200 {
        ids.push(notes.insert(&note("generated", n)).unwrap());
    }
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
    }
    for (n, id) in (0..).zip(&ids) {
        assert_eq!(id.len(), 26, "{id}");
        let doc = notes.get(id).unwrap().unwrap();
        assert_eq!(doc.revision, Revision::FIRST);
        assert_eq!(doc.data, note("generated", n));
    }
    // Id order is insertion order.
    let listed: Vec<u32> = notes.iter().map(|doc| doc.unwrap().data.n).collect();
    assert_eq!(listed, (0..200).collect::<Vec<_>>());
    assert_eq!(
        notes.count_by_version().unwrap(),
        BTreeMap::from([(1, 200)])
    );
}

fn insert_many_writes_every_document_at_revision_one<E: Engine>() {
    let store = fast_store::<E>();
    let notes = store.collection::<Note>().unwrap();
    assert_eq!(notes.insert_many(&[]).unwrap(), Vec::<DocId>::new());
    assert!(notes.is_empty().unwrap());

    let values: Vec<Note> = (0..50).map(|n| note("many", n)).collect();
    let ids = notes.insert_many(&values).unwrap();
    assert_eq!(ids.len(), 50);
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1]);
    }
    for (id, value) in ids.iter().zip(&values) {
        let doc = notes.get(id).unwrap().unwrap();
        assert_eq!((doc.revision, &doc.data), (Revision::FIRST, value));
        assert_eq!(notes.history(id).unwrap().len(), 1);
    }
    assert_eq!(notes.count_by_version().unwrap(), BTreeMap::from([(1, 50)]));
}

/// A field that refuses to be serialized when asked to, so that a batch can fail midway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Poison(bool);

impl Serialize for Poison {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 {
            Err(serde::ser::Error::custom("poisoned"))
        } else {
            serializer.serialize_bool(false)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "batches", version = 1)]
struct Batched {
    n: u32,
    #[schemars(with = "bool")]
    poison: Poison,
}

fn insert_many_is_all_or_nothing<E: Engine>() {
    let store = fast_store::<E>();
    let batches = store.collection::<Batched>().unwrap();
    let values: Vec<Batched> = (0..10)
        .map(|n| Batched {
            n,
            poison: Poison(n == 7),
        })
        .collect();
    let err = batches.insert_many(&values).unwrap_err();
    assert!(matches!(err, StoreError::Encode { .. }), "{err:?}");
    assert!(batches.count_by_version().unwrap().is_empty());
    assert_eq!(batches.iter().count(), 0);

    let ids = batches.insert_many(&values[..7]).unwrap();
    assert_eq!(ids.len(), 7);
    assert_eq!(
        batches.count_by_version().unwrap(),
        BTreeMap::from([(1, 7)])
    );
}

fn ids_sharing_a_prefix_keep_separate_histories<E: Engine>() {
    let store = fast_store::<E>();
    let notes = store.collection::<Note>().unwrap();
    let ids = ["a", "ab", "abc", "abd", "b"];
    for (writes, id) in (1..).zip(ids) {
        notes.insert_with_id(id, &note(id, 0)).unwrap();
        for n in 1..writes {
            notes.update(id, &note(id, n)).unwrap();
        }
    }
    for (writes, id) in (1..).zip(ids) {
        let history = notes.history(id).unwrap();
        assert_eq!(history.len(), writes as usize, "history of {id}");
        let doc = notes.get(id).unwrap().unwrap();
        assert_eq!(doc.data, note(id, writes - 1));
        assert_eq!(doc.revision.get(), u64::from(writes));
        for revision in 1..=writes {
            let old = notes.revision(id, rev(revision.into())).unwrap().unwrap();
            assert_eq!(old.data, note(id, revision - 1), "{id} at {revision}");
        }
        assert!(notes
            .revision(id, rev(u64::from(writes) + 1))
            .unwrap()
            .is_none());
    }

    notes.remove("ab").unwrap();
    assert!(notes.get("ab").unwrap().is_none());
    assert_eq!(notes.get("abc").unwrap().unwrap().data, note("abc", 2));
    assert_eq!(notes.get("a").unwrap().unwrap().data, note("a", 0));
    assert_eq!(notes.history("abc").unwrap().len(), 3);

    let after: Vec<String> = notes
        .iter_after("ab")
        .map(|doc| doc.unwrap().id.into_string())
        .collect();
    assert_eq!(after, ["abc", "abd", "b"]);
    let after: Vec<String> = notes
        .iter_after("a")
        .map(|doc| doc.unwrap().id.into_string())
        .collect();
    assert_eq!(after, ["abc", "abd", "b"], "the removed `ab` is left out");
}

fn invalid_ids_are_refused_and_write_nothing<E: Engine>() {
    let store = fast_store::<E>();
    let notes = store.collection::<Note>().unwrap();
    let too_long = "x".repeat(MAX_ID_LEN + 1);
    // Multibyte: the limit is in bytes, not characters.
    let too_long_multibyte = "\u{e9}".repeat(MAX_ID_LEN / 2 + 1);
    let cases: [(&str, InvalidId); 5] = [
        ("", InvalidId::Empty),
        ("a\0b", InvalidId::Nul { position: 1 }),
        ("\0", InvalidId::Nul { position: 0 }),
        (
            &too_long,
            InvalidId::TooLong {
                len: MAX_ID_LEN + 1,
            },
        ),
        (
            &too_long_multibyte,
            InvalidId::TooLong {
                len: MAX_ID_LEN + 2,
            },
        ),
    ];
    let value = note("bad", 1);
    for (id, rule) in cases {
        let results = [
            ("insert_with_id", notes.insert_with_id(id, &value).map(drop)),
            ("update", notes.update(id, &value).map(drop)),
            (
                "update_if",
                notes.update_if(id, Revision::FIRST, &value).map(drop),
            ),
            ("remove", notes.remove(id).map(drop)),
            ("get", notes.get(id).map(drop)),
            ("revision", notes.revision(id, Revision::FIRST).map(drop)),
            (
                "raw_revision",
                notes.raw_revision(id, Revision::FIRST).map(drop),
            ),
            ("history", notes.history(id).map(drop)),
        ];
        for (operation, result) in results {
            match result {
                Err(StoreError::InvalidId { source, .. }) => {
                    assert_eq!(source, rule, "{operation} of {id:?}");
                }
                other => panic!("{operation} of {id:?}: {other:?}"),
            }
        }
    }
    assert!(notes.count_by_version().unwrap().is_empty());
    assert_eq!(notes.removed_count().unwrap(), 0);
    assert_eq!(notes.iter().count(), 0);

    // The limits themselves are fine.
    let longest = "y".repeat(MAX_ID_LEN);
    let longest_multibyte = "\u{e9}".repeat(MAX_ID_LEN / 2);
    for id in [
        longest.as_str(),
        &longest_multibyte,
        "\u{1f980} spaces/slashes",
    ] {
        assert_eq!(notes.insert_with_id(id, &value).unwrap(), Revision::FIRST);
        assert_eq!(notes.get(id).unwrap().unwrap().data, value);
    }
}

fn removed_documents_are_gone_but_their_history_stays<E: Engine>() {
    let store = fast_store::<E>();
    let notes = store.collection::<Note>().unwrap();
    assert!(matches!(
        notes.update("ghost", &note("ghost", 0)),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        notes.remove("ghost"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(notes.get("ghost").unwrap().is_none());
    assert!(notes.history("ghost").unwrap().is_empty());

    notes.insert_with_id("doc", &note("first", 1)).unwrap();
    notes.update("doc", &note("second", 2)).unwrap();
    assert_eq!(notes.remove("doc").unwrap(), rev(3));

    assert!(notes.get("doc").unwrap().is_none());
    for result in [
        notes.update("doc", &note("x", 0)),
        notes.update_if("doc", rev(3), &note("x", 0)),
        notes.remove("doc"),
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound { .. })),
            "{result:?}"
        );
    }
    assert!(notes.count_by_version().unwrap().is_empty());
    assert_eq!(notes.removed_count().unwrap(), 1);
    assert!(notes.is_empty().unwrap());
    assert_eq!(notes.iter().count(), 0);

    let history = notes.history("doc").unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(
        history
            .iter()
            .map(|info| (info.revision.get(), info.version, info.removed))
            .collect::<Vec<_>>(),
        [(1, Some(1), false), (2, Some(1), false), (3, None, true)]
    );
    assert_eq!(
        notes.revision("doc", rev(1)).unwrap().unwrap().data,
        note("first", 1)
    );
    assert_eq!(
        notes.revision("doc", rev(2)).unwrap().unwrap().data,
        note("second", 2)
    );
    assert!(notes.revision("doc", rev(3)).unwrap().is_none());
    let tombstone = notes.raw_revision("doc", rev(3)).unwrap().unwrap();
    assert!(tombstone.info.removed);
    assert_eq!(tombstone.info.version, None);
    assert_eq!(tombstone.payload, None);
    assert!(tombstone.bytes.is_empty());

    // Inserting under the id again continues its history.
    assert_eq!(
        notes.insert_with_id("doc", &note("third", 3)).unwrap(),
        rev(4)
    );
    let doc = notes.get("doc").unwrap().unwrap();
    assert_eq!((doc.revision, doc.data), (rev(4), note("third", 3)));
    assert_eq!(
        notes.revision("doc", rev(1)).unwrap().unwrap().data,
        note("first", 1)
    );
    assert_eq!(notes.count_by_version().unwrap(), BTreeMap::from([(1, 1)]));
    assert_eq!(notes.removed_count().unwrap(), 0);
}

engine_tests! {
    crud_matches_a_btreemap_model,
    generated_ids_are_unique_and_sort_by_insertion,
    insert_many_writes_every_document_at_revision_one,
    insert_many_is_all_or_nothing,
    ids_sharing_a_prefix_keep_separate_histories,
    invalid_ids_are_refused_and_write_nothing,
    removed_documents_are_gone_but_their_history_stays,
}
