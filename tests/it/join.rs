//! Joined runs through the public API, on every engine: `migrate().join()` starts a run when
//! none is under way, refuses one with other settings by naming the setting, and every document
//! is migrated once however many joiners there are; without `join`, a second run is refused.

use std::sync::{Arc, Barrier};
use std::thread;

use revolve::{Collection, Durability, MigrationError, RunState, Schema, StepError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Place};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct NoteV1 {
    n: u64,
}

impl Schema for NoteV1 {
    const COLLECTION: &'static str = "notes";
    const VERSION: u32 = 1;
    type Previous = Self;
    fn upgrade(previous: Self) -> Result<Self, StepError> {
        Ok(previous)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct NoteV2 {
    n: u64,
    doubled: u64,
}

impl Schema for NoteV2 {
    const COLLECTION: &'static str = "notes";
    const VERSION: u32 = 2;
    type Previous = NoteV1;
    fn upgrade(previous: NoteV1) -> Result<Self, StepError> {
        Ok(Self {
            n: previous.n,
            doubled: previous.n * 2,
        })
    }
}

/// `n` documents written at version 1, opened by a version 2 program.
fn notes<E: Engine>(n: u64) -> (E::Place, Collection<NoteV2>) {
    let place = E::place();
    {
        let store = place
            .builder()
            .durability(Durability::Eventual)
            .open()
            .unwrap();
        let notes = store.collection::<NoteV1>().unwrap();
        let values: Vec<NoteV1> = (0..n).map(|n| NoteV1 { n }).collect();
        notes.insert_many(&values).unwrap();
        store.flush().unwrap();
    }
    let notes = place.open().collection::<NoteV2>().unwrap();
    (place, notes)
}

fn join_starts_a_run_when_none_is_under_way<E: Engine>() {
    let (_place, notes) = notes::<E>(2500);
    let report = notes.migrate().join().execute().unwrap();
    assert_eq!(
        (report.scanned, report.migrated, report.remaining),
        (2500, 2500, 0)
    );
    let run = notes.run(report.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(run.migrated, 2500);
    // On PostgreSQL the run is a joined run with one worker; on sled, a run of one process.
    let workers = usize::from(E::NAME == "postgres");
    assert_eq!(run.workers.len(), workers, "{run:?}");
    // Nothing left: a joiner takes nothing, and records no run.
    let again = notes.migrate().join().execute().unwrap();
    assert_eq!((again.run_id, again.scanned), (None, 0));
}

fn a_joiner_with_other_settings_is_refused_naming_them<E: Engine>() {
    let (_place, notes) = notes::<E>(2500);
    let under_way = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (first, refused) = thread::scope(|scope| {
        let first = scope.spawn(|| {
            let (under_way, release) = (Arc::clone(&under_way), Arc::clone(&release));
            let mut first_chunk = true;
            notes
                .migrate()
                .join()
                .on_progress(move |_| {
                    if std::mem::take(&mut first_chunk) {
                        under_way.wait();
                        release.wait();
                    }
                })
                .execute()
                .unwrap()
        });
        under_way.wait();
        let refused = [
            notes.migrate().join().limit(5).execute().map(drop),
            notes.migrate().join().retry_failed().execute().map(drop),
            notes.migrate().execute().map(drop),
            notes.migrate().join().dry_run().map(drop),
        ];
        release.wait();
        (first.join().unwrap(), refused)
    });
    let run = first.run_id.unwrap();
    let [limit, retry, plain, dry] = refused;
    match limit {
        Err(MigrationError::JoinMismatch {
            run: found,
            setting,
            theirs,
            ours,
            ..
        }) => assert_eq!(
            (found, setting, theirs.as_str(), ours.as_str()),
            (run, "limit", "none", "5")
        ),
        other => panic!("expected JoinMismatch, got {other:?}"),
    }
    match retry {
        Err(error @ MigrationError::JoinMismatch { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("retry_failed") && text.contains(&run.to_string()),
                "{text}"
            );
        }
        other => panic!("expected JoinMismatch, got {other:?}"),
    }
    match plain {
        Err(MigrationError::RunInProgress { run: found, .. }) => assert_eq!(found, run),
        other => panic!("expected RunInProgress, got {other:?}"),
    }
    assert!(
        matches!(dry, Err(MigrationError::DryRunJoin { .. })),
        "{dry:?}"
    );
    assert_eq!((first.migrated, first.remaining), (2500, 0));
}

fn joiners_migrate_every_document_once<E: Engine>() {
    let (_place, notes) = notes::<E>(5000);
    let under_way = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (first, second) = thread::scope(|scope| {
        let first = scope.spawn(|| {
            let (under_way, release) = (Arc::clone(&under_way), Arc::clone(&release));
            let mut first_chunk = true;
            notes
                .migrate()
                .join()
                .threads(1)
                .on_progress(move |_| {
                    if std::mem::take(&mut first_chunk) {
                        under_way.wait();
                        release.wait();
                    }
                })
                .execute()
                .unwrap()
        });
        under_way.wait();
        let second = scope.spawn(|| notes.migrate().join().threads(1).execute().unwrap());
        release.wait();
        (first.join().unwrap(), second.join().unwrap())
    });
    assert_eq!(first.migrated + second.migrated, 5000);
    assert_eq!(first.scanned + second.scanned, 5000);
    if E::NAME == "postgres" {
        // One run, two workers, whose counts add up to the run's.
        assert_eq!(first.run_id, second.run_id);
        let run = notes.run(first.run_id.unwrap()).unwrap().unwrap();
        assert_eq!(run.state, RunState::Done);
        assert_eq!(run.workers.len(), 2, "{run:?}");
        assert_eq!(run.scanned, 5000);
        assert_eq!(run.workers.iter().map(|w| w.migrated).sum::<u64>(), 5000);
        assert!(run.workers.iter().all(|w| !w.live));
    }
    for document in &notes {
        let document = document.unwrap();
        assert_eq!(document.stored_version, 2);
        assert_eq!(document.revision.get(), 2, "{}", document.id);
    }
    assert_eq!(notes.pending().unwrap().migratable(), 0);
}

engine_tests! {
    join_starts_a_run_when_none_is_under_way,
    a_joiner_with_other_settings_is_refused_naming_them,
    joiners_migrate_every_document_once,
}
