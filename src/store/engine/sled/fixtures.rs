//! Fixtures the store's unit tests share: a small store with two collections, one migrated.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::store::engine::sled::guard::Tree;
use crate::store::{Problem, Store, VerifyReport};
use crate::{DocId, StepError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Note {
    text: String,
}

impl crate::Schema for Note {
    const COLLECTION: &'static str = "notes";
    const VERSION: u32 = 1;
    type Previous = Self;
    fn upgrade(previous: Self) -> Result<Self, StepError> {
        Ok(previous)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct TaskV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct TaskV2 {
    title: String,
    done: bool,
}

impl crate::Schema for TaskV1 {
    const COLLECTION: &'static str = "tasks";
    const VERSION: u32 = 1;
    type Previous = Self;
    fn upgrade(previous: Self) -> Result<Self, StepError> {
        Ok(previous)
    }
}

/// Titles starting with `fail` do not migrate.
impl crate::Schema for TaskV2 {
    const COLLECTION: &'static str = "tasks";
    const VERSION: u32 = 2;
    type Previous = TaskV1;
    fn upgrade(previous: TaskV1) -> Result<Self, StepError> {
        if previous.title.starts_with("fail") {
            return Err(StepError::new("deliberate failure"));
        }
        Ok(TaskV2 {
            title: previous.title,
            done: false,
        })
    }
}

fn note(text: &str) -> Note {
    Note { text: text.into() }
}

/// A store with notes (one updated, one removed) and tasks at version 1.
pub(crate) fn populate(store: &Store) -> (Vec<DocId>, Vec<DocId>) {
    let notes = store.collection::<Note>().unwrap();
    let ids = notes
        .insert_many(&[note("a"), note("b"), note("c")])
        .unwrap();
    notes.update(&ids[0], &note("a2")).unwrap();
    notes.remove(&ids[1]).unwrap();
    let tasks = store.collection::<TaskV1>().unwrap();
    let task_ids = ["ok 1", "ok 2", "fail 3"]
        .iter()
        .map(|title| {
            tasks
                .insert(&TaskV1 {
                    title: (*title).into(),
                })
                .unwrap()
        })
        .collect();
    (ids, task_ids)
}

/// A store at `dir` whose tasks were migrated to version 2 (one failed), closed again.
pub(crate) fn migrated_store(dir: &Path) -> (Vec<DocId>, Vec<DocId>) {
    let ids = {
        let store = Store::open(dir).unwrap();
        populate(&store)
    };
    let store = Store::open(dir).unwrap();
    let tasks = store.collection::<TaskV2>().unwrap();
    let report = tasks.migrate().execute().unwrap();
    assert_eq!((report.migrated, report.failed), (2, 1));
    ids
}

pub(crate) fn tree(store: &Store, name: &str) -> Tree {
    store
        .sled()
        .unwrap()
        .db()
        .open_tree(format!("c/{name}"))
        .unwrap()
}

pub(crate) fn kinds(report: &VerifyReport) -> Vec<&'static str> {
    report
        .problems
        .iter()
        .map(|problem| match problem {
            Problem::MalformedKey { .. } => "malformed_key",
            Problem::MalformedHead { .. } => "malformed_head",
            Problem::CorruptRevision { .. } => "corrupt_revision",
            Problem::MissingRevisions { .. } => "missing_revisions",
            Problem::RevisionsWithoutHead { .. } => "revisions_without_head",
            Problem::HeadNotLast { .. } => "head_not_last",
            Problem::HeadStateMismatch { .. } => "head_state_mismatch",
            Problem::CounterMismatch { .. } => "counter_mismatch",
            Problem::MalformedCounter { .. } => "malformed_counter",
            Problem::StaleFailure { .. } => "stale_failure",
            Problem::InvalidCursor { .. } => "invalid_cursor",
            Problem::OrphanProgress { .. } => "orphan_progress",
            Problem::CorruptMeta { .. } => "corrupt_meta",
            Problem::CorruptLedger { .. } => "corrupt_ledger",
            Problem::UnregisteredCollection { .. } => "unregistered_collection",
            Problem::IncompleteImport => "incomplete_import",
            Problem::Unreadable { .. } => "unreadable",
            Problem::UnreadableHead { .. } => "unreadable_head",
            Problem::UnreadableRevision { .. } => "unreadable_revision",
            Problem::Unaccounted { .. } => "unaccounted",
        })
        .collect()
}
