//! Backups through the public API: a format-2 export imports and exports again to the same
//! bytes, run ids continue above the imported ones, a salvaged export imports only when told, and
//! a format-1 backup written by the previous release (`tests/fixtures/format1.revolve-backup`)
//! still imports and verifies.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use revolve::{BackupError, RunState, Schema, StepError, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 1)]
struct Note {
    text: String,
    tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tasks", version = 1)]
struct TaskV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tasks", version = 2, from = TaskV1, step = task_v1_to_v2)]
struct TaskV2 {
    title: String,
    done: bool,
}

/// Titles starting with `fail` do not migrate.
fn task_v1_to_v2(old: TaskV1) -> Result<TaskV2, StepError> {
    if old.title.starts_with("fail") {
        return Err(StepError::new("cannot migrate a failing task"));
    }
    Ok(TaskV2 {
        title: old.title,
        done: false,
    })
}

fn note(text: &str) -> Note {
    Note {
        text: text.to_owned(),
        tags: vec!["x".to_owned()],
    }
}

/// Opens a store, waiting for a closed one's lock to be released.
fn open(path: &Path) -> Store {
    Store::builder()
        .path(path)
        .lock_timeout(Duration::from_secs(10))
        .open()
        .unwrap()
}

/// The store the fixture was written from: notes (one updated, one removed), tasks migrated from
/// version 1 to 2 by one run in which `fail 3` failed.
fn populated(path: &Path) {
    {
        let store = open(path);
        let notes = store.collection::<Note>().unwrap();
        let ids = notes
            .insert_many(&[note("first"), note("second"), note("third")])
            .unwrap();
        notes.update(&ids[0], &note("first edited")).unwrap();
        notes.remove(&ids[1]).unwrap();
        let tasks = store.collection::<TaskV1>().unwrap();
        for title in ["ok 1", "ok 2", "fail 3"] {
            tasks
                .insert(&TaskV1 {
                    title: title.to_owned(),
                })
                .unwrap();
        }
    }
    let store = open(path);
    let report = store
        .collection::<TaskV2>()
        .unwrap()
        .migrate()
        .execute()
        .unwrap();
    assert_eq!((report.migrated, report.failed), (2, 1));
}

fn highest_run(store: &Store) -> u64 {
    store
        .raw_collection("tasks")
        .unwrap()
        .runs()
        .unwrap()
        .iter()
        .map(|run| run.id)
        .max()
        .unwrap()
}

/// The id of a new migration run on the tasks of `store` (a dry run retrying the failed task:
/// it records a ledger run and writes no document).
fn next_run(store: &Store) -> u64 {
    let tasks = store.collection::<TaskV2>().unwrap();
    let _ = tasks.migrate().retry_failed().dry_run().unwrap();
    highest_run(store)
}

#[test]
fn export_import_export_gives_the_same_bytes_and_run_ids_continue() {
    let root = tempfile::tempdir().unwrap();
    let source_path = root.path().join("source");
    populated(&source_path);
    let source = open(&source_path);
    let imported_run = highest_run(&source);
    let mut first = Vec::new();
    let exported = source.export(&mut first, |_| {}).unwrap();
    assert_eq!(exported.format, 2);
    assert_eq!(exported.trees, 2);

    let target_path = root.path().join("target");
    let imported = Store::import(&target_path, &first[..], |_| {}).unwrap();
    assert_eq!(imported, exported);
    let target = open(&target_path);
    assert!(target.verify().unwrap().is_ok());
    let mut second = Vec::new();
    let again = target.export(&mut second, |_| {}).unwrap();
    assert_eq!(again, exported);
    assert_eq!(first, second);

    // Counts recomputed: removed and failed documents included.
    let notes = target.raw_collection("notes").unwrap();
    assert_eq!(notes.count_by_version().unwrap(), BTreeMap::from([(1, 2)]));
    assert_eq!(notes.removed_count().unwrap(), 1);
    let tasks = target.raw_collection("tasks").unwrap();
    assert_eq!(
        tasks.count_by_version().unwrap(),
        BTreeMap::from([(1, 1), (2, 2)])
    );
    assert_eq!(
        tasks.runs().unwrap(),
        source.raw_collection("tasks").unwrap().runs().unwrap()
    );
    let failures = tasks.failures_page(None, 10).unwrap();
    assert_eq!(failures.len(), 1);

    // Run ids continue above the highest imported, in this process and after a reopen.
    let run = next_run(&target);
    assert!(run > imported_run, "{run} after {imported_run}");
    drop((notes, tasks, target));
    let target = open(&target_path);
    assert!(next_run(&target) > run);
}

#[test]
fn a_salvaged_export_imports_only_when_told() {
    let root = tempfile::tempdir().unwrap();
    let source_path = root.path().join("source");
    populated(&source_path);
    let source = open(&source_path);
    let mut plain = Vec::new();
    let _ = source.export(&mut plain, |_| {}).unwrap();
    let mut salvaged = Vec::new();
    let report = source.export_salvage(&mut salvaged, |_| {}).unwrap();
    assert!(report.summary.salvaged);
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);

    let target_path = root.path().join("target");
    assert!(matches!(
        Store::import(&target_path, &salvaged[..], |_| {}),
        Err(BackupError::Salvaged)
    ));
    assert!(!target_path.exists());
    let imported = Store::import_salvaged(&target_path, &salvaged[..], |_| {}).unwrap();
    assert!(imported.summary.salvaged);
    assert!(imported.report.is_ok(), "{:?}", imported.report);
    assert!(imported.repair.counters.is_empty(), "{:?}", imported.repair);
    // What was salvaged from an intact store is the whole store.
    let target = open(&target_path);
    let mut again = Vec::new();
    let _ = target.export(&mut again, |_| {}).unwrap();
    assert_eq!(again, plain);
}

/// The fixture was written by `revolve export` of the release before format 2, from the store
/// [`populated`] makes (its run id, 2000001, came from sled's id generator).
#[test]
fn a_format_1_backup_imports_and_verifies() {
    let backup = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/format1.revolve-backup"
    ))
    .unwrap();
    assert_eq!(backup[8..12], 1u32.to_be_bytes());
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("restored");
    let summary = Store::import(&path, &backup[..], |_| {}).unwrap();
    assert_eq!((summary.format, summary.trees, summary.entries), (1, 4, 26));
    assert!(!summary.salvaged);

    let store = open(&path);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.collection_names().unwrap(), ["notes", "tasks"]);

    let notes = store.collection::<Note>().unwrap();
    assert_eq!(notes.len().unwrap(), 2);
    assert_eq!(notes.removed_count().unwrap(), 1);
    let texts: Vec<String> = notes
        .iter()
        .map(|document| document.unwrap().data.text)
        .collect();
    assert_eq!(texts, ["first edited", "third"]);

    let tasks = store.collection::<TaskV2>().unwrap();
    assert_eq!(
        tasks.count_by_version().unwrap(),
        BTreeMap::from([(1, 1), (2, 2)])
    );
    let runs = tasks.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, 2_000_001);
    assert_eq!(runs[0].state, RunState::DoneWithFailures);
    assert_eq!((runs[0].migrated, runs[0].failed), (2, 1));
    assert_eq!(tasks.failures_page(None, 10).unwrap().len(), 1);
    let migrated: Vec<String> = tasks
        .iter()
        .filter_map(Result::ok)
        .map(|document| document.data.title)
        .collect();
    assert_eq!(migrated, ["ok 1", "ok 2"]);

    // Run ids continue above the imported one.
    drop((notes, tasks));
    assert!(next_run(&store) > 2_000_001);

    // And the store exports in format 2, which imports to the same bytes again.
    let mut first = Vec::new();
    let _ = store.export(&mut first, |_| {}).unwrap();
    let again_path = root.path().join("again");
    let _ = Store::import(&again_path, &first[..], |_| {}).unwrap();
    let mut second = Vec::new();
    let _ = open(&again_path).export(&mut second, |_| {}).unwrap();
    assert_eq!(first, second);
}
