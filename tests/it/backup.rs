//! Backups through the public API, on every engine: a format-2 export imports and exports again
//! to the same bytes, run ids continue above the imported ones, a store with data is refused, and
//! a damaged backup leaves the store empty. A backup moves a store from sled to PostgreSQL and
//! back, byte for byte. On sled alone: a salvaged export imports only when told, and a format-1
//! backup written by the previous release (`tests/fixtures/format1.revolve-backup`) still imports
//! and verifies.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use revolve::{BackupError, RunState, Schema, StepError, Store};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Place};

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

/// Opens the store at a place of any engine, waiting for a closed sled store's lock.
fn open_at(place: &impl Place) -> Store {
    place
        .builder()
        .lock_timeout(Duration::from_secs(10))
        .open()
        .unwrap()
}

/// The store the fixture was written from: notes (one updated, one removed), tasks migrated from
/// version 1 to 2 by one run in which `fail 3` failed.
fn populated(path: &Path) {
    populate(|| open(path));
}

fn populate(open: impl Fn() -> Store) {
    {
        let store = open();
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
    let store = open();
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

fn export_import_export_gives_the_same_bytes_and_run_ids_continue<E: Engine>() {
    let source_place = E::place();
    populate(|| open_at(&source_place));
    let source = open_at(&source_place);
    let imported_run = highest_run(&source);
    let mut first = Vec::new();
    let exported = source.export(&mut first, |_| {}).unwrap();
    assert_eq!(exported.format, 2);
    assert_eq!(exported.trees, 2);

    let target_place = E::place();
    let target = open_at(&target_place);
    let mut seen = Vec::new();
    let imported = target.import_into(&first[..], |n| seen.push(n)).unwrap();
    assert_eq!(imported, exported);
    assert_eq!(seen.last(), Some(&exported.entries));
    let report = target.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
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
    assert!(!target.repair_counters().unwrap().changed_anything());

    // Run ids continue above the highest imported, in this process and after a reopen.
    let run = next_run(&target);
    assert!(run > imported_run, "{run} after {imported_run}");
    drop((notes, tasks, target));
    let target = open_at(&target_place);
    assert!(next_run(&target) > run);
}

fn import_refuses_a_store_with_data<E: Engine>() {
    let source_place = E::place();
    populate(|| open_at(&source_place));
    let mut backup = Vec::new();
    let _ = open_at(&source_place).export(&mut backup, |_| {}).unwrap();

    let target = E::temporary();
    let notes = target.collection::<Note>().unwrap();
    let id = notes.insert(&note("mine")).unwrap();
    let error = target.import_into(&backup[..], |_| {}).unwrap_err();
    assert!(matches!(error, BackupError::NotEmpty { .. }), "{error:?}");
    // Nothing was loaded, nothing was lost.
    assert_eq!(notes.len().unwrap(), 1);
    assert_eq!(notes.get(&id).unwrap().unwrap().data, note("mine"));
    assert_eq!(target.collection_names().unwrap(), ["notes"]);
    assert!(target.verify().unwrap().is_ok());
}

fn a_damaged_backup_is_refused_and_the_store_left_empty<E: Engine>() {
    let source_place = E::place();
    populate(|| open_at(&source_place));
    let mut backup = Vec::new();
    let _ = open_at(&source_place).export(&mut backup, |_| {}).unwrap();

    let target = E::temporary();
    // Cut before its end: every record but the last few loads, then the checksum is missing.
    let truncated = &backup[..backup.len() - 40];
    assert!(target.import_into(truncated, |_| {}).is_err());
    assert!(target.collection_names().unwrap().is_empty());
    let mut empty = Vec::new();
    let _ = target.export(&mut empty, |_| {}).unwrap();
    assert!(empty.len() < 100, "{} bytes left", empty.len());
    // Left empty: the intact backup still imports.
    let _ = target.import_into(&backup[..], |_| {}).unwrap();
    let mut again = Vec::new();
    let _ = target.export(&mut again, |_| {}).unwrap();
    assert_eq!(again, backup);
}

engine_tests! {
    export_import_export_gives_the_same_bytes_and_run_ids_continue,
    import_refuses_a_store_with_data,
    a_damaged_backup_is_refused_and_the_store_left_empty,
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

/// A direct connection to a PostgreSQL place's schema, to damage what revolve wrote.
#[cfg(feature = "postgres")]
fn client(place: &impl Place) -> ::postgres::Client {
    let address = place.address();
    let (url, schema) = address.rsplit_once('|').unwrap();
    let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .unwrap();
    client
}

/// Moving a store between engines, and the consistency check on PostgreSQL.
#[cfg(feature = "postgres")]
mod across_engines {
    use super::client;
    use super::*;
    use crate::engine::{postgres_url, Postgres, Sled};
    use revolve::{CounterKind, KeySpace, Problem};

    /// Every revision of every live note, as stored, by id then number.
    fn note_revisions(store: &Store) -> Vec<(String, Vec<Vec<u8>>)> {
        let notes = store.collection::<Note>().unwrap();
        let mut ids: Vec<String> = notes
            .iter()
            .map(|document| document.unwrap().id.to_string())
            .collect();
        ids.sort();
        let raw = notes.raw();
        ids.into_iter()
            .map(|id| {
                let bytes = raw
                    .history(&id)
                    .unwrap()
                    .iter()
                    .map(|info| raw.raw_revision(&id, info.revision).unwrap().unwrap().bytes)
                    .collect();
                (id, bytes)
            })
            .collect()
    }

    #[test]
    fn a_store_moves_from_sled_to_postgres_and_back_byte_for_byte() {
        if postgres_url().is_none() {
            return;
        }
        let sled_place = Sled::place();
        populate(|| open_at(&sled_place));
        let sled = open_at(&sled_place);
        let imported_run = highest_run(&sled);
        let mut from_sled = Vec::new();
        let exported = sled.export(&mut from_sled, |_| {}).unwrap();

        let pg_place = Postgres::place();
        // One connection is enough for everything a backup and a check do.
        let pg = pg_place
            .builder()
            .pool_size(1)
            .checkout_timeout(Duration::from_secs(2))
            .open()
            .unwrap();
        assert_eq!(pg.import_into(&from_sled[..], |_| {}).unwrap(), exported);
        let report = pg.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.collections, report.documents), (2, 6));
        let revisions = note_revisions(&sled);
        assert_eq!(revisions.len(), 2);
        assert_eq!(note_revisions(&pg), revisions);
        for collection in ["notes", "tasks"] {
            let (on_pg, on_sled) = (
                pg.raw_collection(collection).unwrap(),
                sled.raw_collection(collection).unwrap(),
            );
            assert_eq!(
                on_pg.count_by_version().unwrap(),
                on_sled.count_by_version().unwrap()
            );
            assert_eq!(on_pg.runs().unwrap(), on_sled.runs().unwrap());
        }
        // Format 2 has no export time: the same content exports to the same bytes.
        let mut from_pg = Vec::new();
        let _ = pg.export(&mut from_pg, |_| {}).unwrap();
        assert_eq!(from_pg, from_sled);
        let tasks = pg.collection::<TaskV2>().unwrap();
        assert_eq!(tasks.failures_page(None, 10).unwrap().len(), 1);
        drop(tasks);
        assert!(next_run(&pg) > imported_run);

        // And back to a new sled store, where it exports the same again.
        let back_place = Sled::place();
        let back = open_at(&back_place);
        let _ = back.import_into(&from_pg[..], |_| {}).unwrap();
        assert!(back.verify().unwrap().is_ok());
        let mut from_back = Vec::new();
        let _ = back.export(&mut from_back, |_| {}).unwrap();
        assert_eq!(from_back, from_sled);
        assert_eq!(note_revisions(&back), revisions);
    }

    // One damage per kind of problem, then one assertion per kind.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn verify_finds_damage_on_postgres_and_repair_fixes_the_counts() {
        if postgres_url().is_none() {
            return;
        }
        let place = Postgres::place();
        populate(|| open_at(&place));
        let store = open_at(&place);
        let mut seen = Vec::new();
        let clean = store.verify_with_progress(|n| seen.push(n)).unwrap();
        assert!(clean.is_ok(), "{clean:?}");
        assert_eq!(
            (clean.collections, clean.documents, clean.revisions),
            (2, 6, 10)
        );
        assert_eq!(seen.last(), Some(&6));
        assert!(!store.repair_counters().unwrap().changed_anything());

        let notes = store.raw_collection("notes").unwrap();
        let live: Vec<String> = store
            .collection::<Note>()
            .unwrap()
            .iter()
            .map(|document| document.unwrap().id.to_string())
            .collect();
        // The edited note (two revisions) and one with one.
        let edited = live
            .iter()
            .find(|id| notes.history(id).unwrap().len() == 2)
            .unwrap()
            .clone();
        let single = live
            .iter()
            .find(|id| notes.history(id).unwrap().len() == 1)
            .unwrap()
            .clone();
        let mut db = client(&place);
        let notes_id: i32 = db
            .query_one(
                "SELECT id FROM revolve_collections WHERE name = 'notes'",
                &[],
            )
            .unwrap()
            .get(0);
        // Revisions are never updated: damage one with its guard off.
        db.batch_execute(
            "ALTER TABLE revolve_revisions DISABLE TRIGGER revolve_revisions_are_never_updated",
        )
        .unwrap();
        db.execute(
            "UPDATE revolve_revisions SET record = set_byte(record, 3, get_byte(record, 3) # 64)
             WHERE collection = $1 AND id = $2 AND revision = 1",
            &[&notes_id, &single],
        )
        .unwrap();
        // The edited note's head names revision 2, which goes.
        db.execute(
            "DELETE FROM revolve_revisions WHERE collection = $1 AND id = $2 AND revision = 2",
            &[&notes_id, &edited],
        )
        .unwrap();
        // A count that disagrees with the heads, a progress record of no run, a ledger record
        // that does not decode.
        db.execute(
            "INSERT INTO revolve_counts (collection, counter, version, shard, n) VALUES ($1, 0, 1, 99, 5)",
            &[&notes_id],
        )
        .unwrap();
        db.execute(
            "INSERT INTO revolve_progress (collection, run, record) VALUES ($1, 777, '\\x00')",
            &[&notes_id],
        )
        .unwrap();
        db.batch_execute(
            "INSERT INTO revolve_runs (collection, run, record) VALUES ('tasks', 999, '\\xc1')",
        )
        .unwrap();
        // Rows of a collection that does not exist.
        db.batch_execute(
            "INSERT INTO revolve_counts (collection, counter, version, shard, n) VALUES (4242, 0, 1, 0, 1)",
        )
        .unwrap();

        let report = store.verify().unwrap();
        let problems = &report.problems;
        assert!(
            problems.iter().any(
                |p| matches!(p, Problem::CorruptRevision { id, revision: 1, .. } if *id == single)
            ),
            "{problems:#?}"
        );
        assert!(
            problems.iter().any(|p| matches!(p, Problem::HeadNotLast { id, head: 2, last: Some(1), .. } if *id == edited)),
            "{problems:#?}"
        );
        let wrong_count = Problem::CounterMismatch {
            collection: "notes".into(),
            counter: CounterKind::Live { version: 1 },
            stored: 7,
            actual: 2,
        };
        assert!(problems.contains(&wrong_count), "{problems:#?}");
        assert!(problems.contains(&Problem::OrphanProgress {
            collection: "notes".into(),
            run: 777
        }));
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, Problem::CorruptLedger { .. })),
            "{problems:#?}"
        );
        assert!(
            problems.contains(&Problem::MalformedKey {
                tree: "revolve_counts".into(),
                space: KeySpace::Unknown,
                key: "collection 4242".into(),
                reason: "rows of a collection that has no row in revolve_collections",
            }),
            "{problems:#?}"
        );
        assert_eq!(report.problem_count, 6, "{problems:#?}");

        // Repair rewrites the count, and nothing else.
        let repair = store.repair_counters().unwrap();
        assert_eq!(repair.counters.len(), 1, "{repair:?}");
        assert_eq!(
            (repair.counters[0].before, repair.counters[0].after),
            (7, 2)
        );
        assert_eq!(notes.count_by_version().unwrap(), BTreeMap::from([(1, 2)]));
        let after = store.verify().unwrap();
        assert!(!after.problems.contains(&wrong_count), "{after:?}");
        assert_eq!(after.problem_count, 5, "{:#?}", after.problems);
        assert!(!store.repair_counters().unwrap().changed_anything());
    }
}

/// The speed of an import into PostgreSQL beside a binary `COPY` of the same head and revision
/// rows (the goal: at least 0.7×). A benchmark, not a check: run it in release, beside a
/// PostgreSQL, with `cargo test --release --all-features --test it -- --ignored --nocapture
/// import_beside_binary_copy` (`REVOLVE_IMPORT_DOCUMENTS` sets the size, 100,000 by default).
#[cfg(feature = "postgres")]
#[test]
#[ignore = "a benchmark: run in release with --ignored"]
#[allow(clippy::too_many_lines)] // one measurement, read top to bottom
fn import_beside_binary_copy() {
    use std::time::Instant;

    use ::postgres::binary_copy::BinaryCopyInWriter;
    use ::postgres::types::Type;

    use crate::engine::{postgres_url, Postgres};

    let Some(url) = postgres_url() else { return };
    let documents: u32 = std::env::var("REVOLVE_IMPORT_DOCUMENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    // About 350 bytes a revision.
    let text = "x".repeat(300);
    let source = Store::builder().temporary(true).open().unwrap();
    let notes = source.collection::<Note>().unwrap();
    for _ in 0..documents / 1000 {
        let batch: Vec<Note> = (0..1000).map(|_| note(&text)).collect();
        let _ = notes.insert_many(&batch).unwrap();
    }
    let mut backup = Vec::new();
    let _ = source.export(&mut backup, |_| {}).unwrap();

    let median = |mut runs: Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    let mut imports = Vec::new();
    let mut copies = Vec::new();
    let mut rows: Vec<(i32, String, i64, i32, bool, Vec<u8>)> = Vec::new();
    for _ in 0..3 {
        let place = Postgres::place();
        let store = open_at(&place);
        let started = Instant::now();
        let _ = store.import_into(&backup[..], |_| {}).unwrap();
        imports.push(started.elapsed().as_secs_f64());
        let mut db = client(&place);
        if rows.is_empty() {
            rows = db
                .query(
                    "SELECT h.collection, h.id, h.revision, h.version, h.removed, r.record
                     FROM revolve_heads h JOIN revolve_revisions r USING (collection, id, revision)",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|row| {
                    (
                        row.get(0),
                        row.get(1),
                        row.get(2),
                        row.get(3),
                        row.get(4),
                        row.get(5),
                    )
                })
                .collect();
        }
        drop(store);

        // The same rows, written by hand into a fresh store's tables.
        let place = Postgres::place();
        let store = open_at(&place);
        let mut db = client(&place);
        let started = Instant::now();
        let mut tx = db.transaction().unwrap();
        let mut heads = BinaryCopyInWriter::new(
            tx.copy_in(
                "COPY revolve_heads (collection, id, revision, version, removed) FROM STDIN BINARY",
            )
            .unwrap(),
            &[Type::INT4, Type::TEXT, Type::INT8, Type::INT4, Type::BOOL],
        );
        for (collection, id, revision, version, removed, _) in &rows {
            heads
                .write(&[collection, id, revision, version, removed])
                .unwrap();
        }
        heads.finish().unwrap();
        let mut revisions = BinaryCopyInWriter::new(
            tx.copy_in(
                "COPY revolve_revisions (collection, id, revision, record) FROM STDIN BINARY",
            )
            .unwrap(),
            &[Type::INT4, Type::TEXT, Type::INT8, Type::BYTEA],
        );
        for (collection, id, revision, _, _, record) in &rows {
            revisions
                .write(&[collection, id, revision, record])
                .unwrap();
        }
        revisions.finish().unwrap();
        tx.commit().unwrap();
        copies.push(started.elapsed().as_secs_f64());
        drop(store);
    }
    let settings: Vec<String> = ::postgres::Client::connect(&url, ::postgres::NoTls)
        .unwrap()
        .query(
            "SELECT name || '=' || setting FROM pg_settings
             WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers') ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let (import, copy) = (median(imports), median(copies));
    let n = f64::from(documents);
    eprintln!(
        "{documents} documents, backup {} bytes, {}: import {import:.2} s ({:.0} docs/s), binary COPY {copy:.2} s ({:.0} rows/s of each table), ratio {:.2}",
        backup.len(),
        settings.join(" "),
        n / import,
        n / copy,
        copy / import
    );
}
