//! Joined runs through the public API, on every engine: `migrate().join()` starts a run when
//! none is under way, refuses one with other settings by naming the setting, and every document
//! is migrated once however many joiners there are; without `join`, a second run is refused. A
//! cancel, from one worker's token or from another handle, stops every worker of the run at a
//! chunk boundary; `retry_failed` retries only what earlier runs failed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use revolve::{
    CancelToken, Collection, Durability, FailureClass, Migration, MigrationError, MigrationReport,
    Origin, RunState, Schema, StepError, StoreError, MAX_REPORTED_FAILURES,
};
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

/// Runs `during` while `held`, joined, is held at its first chunk, then lets it go on to its
/// end: its report, and what `during` returned (which must not panic, or the held run would
/// wait forever).
fn while_held<R>(held: Migration<NoteV2>, during: impl FnOnce() -> R) -> (MigrationReport, R) {
    let under_way = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    thread::scope(|scope| {
        let first = scope.spawn(|| {
            let (under_way, release) = (Arc::clone(&under_way), Arc::clone(&release));
            let mut first_chunk = true;
            held.join()
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
        let during = during();
        release.wait();
        (first.join().unwrap(), during)
    })
}

fn a_joiner_with_other_settings_is_refused_naming_them<E: Engine>() {
    let (_place, notes) = notes::<E>(2500);
    let (first, refused) = while_held(notes.migrate(), || {
        [
            notes.migrate().join().limit(5).execute().map(drop),
            notes.migrate().join().retry_failed().execute().map(drop),
            notes.migrate().execute().map(drop),
            notes.migrate().join().dry_run().map(drop),
        ]
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

/// `NoteV2` as another program defines it: the same version with one more field, optional and
/// defaulted, which the registry records as a compatible change (`FieldAdded`) under another
/// schema fingerprint.
mod annotated {
    use super::{Deserialize, JsonSchema, NoteV1, Schema, Serialize, StepError};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    pub(super) struct NoteV2 {
        pub(super) n: u64,
        pub(super) doubled: u64,
        #[serde(default)]
        pub(super) note: Option<String>,
    }

    impl Schema for NoteV2 {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 2;
        type Previous = NoteV1;
        fn upgrade(previous: NoteV1) -> Result<Self, StepError> {
            Ok(Self {
                n: previous.n,
                doubled: previous.n * 2,
                note: None,
            })
        }
    }
}

/// On PostgreSQL, a second program whose version 2 has another (compatible) schema asks to join
/// the run under way: refused, naming both fingerprints, and the run goes on to its end.
///
/// On sled no joiner can have another schema than the run's: a joiner is in the run's process
/// and store, and a store binds one type per collection, while another program cannot open the
/// store as long as the run's program has it. That is what the sled instance asserts instead.
fn a_joiner_with_another_schema_is_refused_naming_the_fingerprints<E: Engine>() {
    let (place, notes) = notes::<E>(2500);
    let postgres = E::NAME == "postgres";
    let (first, other) = while_held(notes.migrate(), || {
        if postgres {
            // Another program: a store of its own.
            place
                .builder()
                .open()
                .and_then(|store| store.collection::<annotated::NoteV2>())
                .map(|annotated| {
                    let fingerprint = annotated.schema_fingerprint();
                    (fingerprint, annotated.migrate().join().execute().map(drop))
                })
        } else {
            place
                .builder()
                .lock_timeout(Duration::from_millis(50))
                .open()
                .and_then(|store| store.collection::<annotated::NoteV2>())
                .map(|annotated| (annotated.schema_fingerprint(), Ok(())))
        }
    });
    let run = first.run_id.unwrap();
    if postgres {
        let (joiner, refused) = other.unwrap();
        let runs = notes.schema_fingerprint();
        assert_ne!(joiner, runs, "the two definitions have one fingerprint");
        match refused {
            Err(MigrationError::JoinMismatch {
                run: found,
                setting,
                theirs,
                ours,
                ..
            }) => assert_eq!(
                (found, setting, theirs, ours),
                (run, "target schema fingerprint", runs, joiner)
            ),
            other => panic!("expected JoinMismatch, got {other:?}"),
        }
    } else {
        match other {
            Err(StoreError::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
    }
    assert_eq!((first.migrated, first.remaining), (2500, 0));
    assert_eq!(notes.run(run).unwrap().unwrap().state, RunState::Done);
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

/// Two joiners at `max_rate`: on PostgreSQL the rate is the run's, so the run takes as long as
/// one worker at that rate would (two workers at a rate each would take half as long), and each
/// worker's progress is the run's: its last report counts its peer's chunks too.
fn max_rate_and_progress_are_the_runs<E: Engine>() {
    const DOCS: u64 = 6_000;
    const RATE: u64 = 4_000;
    let (_place, notes) = notes::<E>(DOCS);
    let started = std::time::Instant::now();
    let reports = thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let last = Arc::new(Mutex::new(None));
                    let seen = Arc::clone(&last);
                    let report = notes
                        .migrate()
                        .join()
                        .threads(1)
                        .max_rate(RATE)
                        .on_progress(move |progress| *seen.lock().unwrap() = Some(*progress))
                        .execute()
                        .unwrap();
                    let last = last.lock().unwrap().take();
                    (report, last)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    assert_eq!(reports.iter().map(|(r, _)| r.scanned).sum::<u64>(), DOCS);
    // DOCS / RATE is 1.5 s; a rate per worker would let two workers end in about 0.75 s (and
    // up to 0.2 s more, as the one that ends first waits for its peer).
    let shares: Vec<u64> = reports.iter().map(|(report, _)| report.scanned).collect();
    assert!(
        elapsed >= Duration::from_millis(1300),
        "{elapsed:?} (shares {shares:?}): the run went faster than its max_rate"
    );
    for (report, last) in &reports {
        let Some(last) = last else {
            assert_eq!(report.scanned, 0);
            continue;
        };
        assert!(last.done >= report.scanned, "{last:?} {report:?}");
        assert!(last.done <= DOCS, "{last:?}");
        assert_eq!(last.done, last.migrated + last.failed + last.skipped);
    }
    let both_worked = reports.iter().all(|(report, _)| report.scanned > 0);
    if E::NAME == "postgres" && both_worked {
        // Each worker's progress counts the run: the sum of the last reports is more than the
        // run (each saw the other's chunks), where a worker's own counts would add up to it.
        let seen: u64 = reports
            .iter()
            .filter_map(|(_, last)| last.as_ref())
            .map(|last| last.done)
            .sum();
        assert!(seen > DOCS, "{reports:?}");
    }
}

/// A joiner's progress counts against what the run's limit left when it joined: with a limit
/// of 3,000 and 1,000 taken by the run's first worker, 2,000 (on sled, where the joiner waits
/// and runs on what is left, the 2,000 pending then).
fn a_joiners_progress_counts_against_what_the_limit_left<E: Engine>() {
    let (_place, notes) = notes::<E>(5000);
    let (first, second) = while_held(notes.migrate().limit(3000), || {
        let notes = notes.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let events = Arc::clone(&seen);
        let handle = thread::spawn(move || {
            notes
                .migrate()
                .join()
                .limit(3000)
                .on_progress(move |progress| events.lock().unwrap().push(*progress))
                .execute()
                .unwrap()
        });
        (handle, seen)
    });
    let (handle, seen) = second;
    let second = handle.join().unwrap();
    // One run with a limit of 3,000 on PostgreSQL; two runs of up to 3,000 each on sled.
    let scanned = if E::NAME == "postgres" { 3000 } else { 5000 };
    assert_eq!(
        first.scanned + second.scanned,
        scanned,
        "{first:?} {second:?}"
    );
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    for progress in seen.iter() {
        assert_eq!(progress.total, 2000, "{progress:?}");
        assert!(progress.done <= progress.total, "{progress:?}");
    }
}

/// What a worker of [`held_workers`] did.
struct Held {
    /// Its report.
    report: MigrationReport,
}

/// A worker's chunk: what a held worker had taken when it was held, after its first chunk (its
/// progress counts the run's, all workers together).
const CHUNK: u64 = 1000;

/// How [`held_workers`] lets its workers go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LetGo {
    /// All at once.
    Together,
    /// One at a time, in order, each to its end before the next goes on. Only for workers that
    /// stop of themselves: a worker with nothing left to claim waits for its peers.
    InOrder,
}

/// How long [`held_workers`] waits for what should come at once before it fails the test, so
/// that a test that fails never hangs the run.
const GUARD: Duration = Duration::from_secs(60);

/// Runs each migration on a thread of its own and holds each after its first chunk until every
/// one has committed one, so that all are under way at once (on PostgreSQL, workers of one joined
/// run); then calls `meanwhile` with the run's id and lets them go on as `let_go` says.
fn held_workers<T: Schema>(
    migrations: Vec<Migration<T>>,
    let_go: LetGo,
    meanwhile: impl FnOnce(u64),
) -> Vec<Held> {
    struct Worker<'scope> {
        first: mpsc::Receiver<u64>,
        go: mpsc::Sender<()>,
        done: mpsc::Receiver<()>,
        handle: thread::ScopedJoinHandle<'scope, Result<MigrationReport, MigrationError>>,
    }
    let go_all = |workers: &[Worker<'_>]| {
        for worker in workers {
            let _ = worker.go.send(());
        }
    };
    thread::scope(|scope| {
        let mut workers = Vec::new();
        for migration in migrations {
            let (first_tx, first) = mpsc::channel();
            let (go, go_rx) = mpsc::channel::<()>();
            let (done_tx, done) = mpsc::channel();
            let mut first_tx = Some(first_tx);
            let migration = migration.on_progress(move |progress| {
                if let Some(first) = first_tx.take() {
                    let _ = first.send(progress.run_id);
                    // Let go by `go`, or as it is dropped should the test fail first.
                    let _ = go_rx.recv();
                }
            });
            let handle = scope.spawn(move || {
                let report = migration.execute();
                let _ = done_tx.send(());
                report
            });
            workers.push(Worker {
                first,
                go,
                done,
                handle,
            });
        }
        let mut firsts = Vec::new();
        for (i, worker) in workers.iter().enumerate() {
            let Ok(first) = worker.first.recv_timeout(GUARD) else {
                go_all(&workers);
                panic!("worker {i} did not commit a first chunk");
            };
            firsts.push(first);
        }
        let runs: BTreeSet<u64> = firsts.iter().copied().collect();
        assert_eq!(runs.len(), 1, "the workers are in one run: {firsts:?}");
        meanwhile(firsts[0]);
        match let_go {
            LetGo::Together => go_all(&workers),
            LetGo::InOrder => {
                for (i, worker) in workers.iter().enumerate() {
                    let _ = worker.go.send(());
                    // Disconnected: the worker panicked, which its join reports.
                    if let Err(RecvTimeoutError::Timeout) = worker.done.recv_timeout(GUARD) {
                        go_all(&workers);
                        panic!("worker {i} did not end before the others went on");
                    }
                }
            }
        }
        workers
            .into_iter()
            .map(|worker| Held {
                report: worker.handle.join().unwrap().unwrap(),
            })
            .collect()
    })
}

/// How many workers can be under way at once in one run: on sled, a joiner waits for the run
/// under way to end.
fn workers<E: Engine>() -> usize {
    if E::NAME == "postgres" {
        2
    } else {
        1
    }
}

/// Asserts that the run `run` of `notes`, which held `total` documents at version 1, ended
/// cancelled with `held` as its workers, each stopped at the chunk boundary where it was held:
/// the run's counts are theirs, the documents it migrated are at version 2 in a revision of the
/// run, and every other one is still at version 1 in the revision it was written as.
fn assert_cancelled<E: Engine>(notes: &Collection<NoteV2>, run: u64, held: &[Held], total: u64) {
    for worker in held {
        let report = &worker.report;
        assert_eq!(report.run_id, Some(run));
        assert!(report.cancelled, "{report:?}");
        assert_eq!(report.scanned, CHUNK, "{report:?}");
    }
    let record = notes.run(run).unwrap().unwrap();
    assert_eq!(record.state, RunState::Cancelled, "{record:?}");
    let sum = |count: fn(&MigrationReport) -> u64| -> u64 {
        held.iter().map(|worker| count(&worker.report)).sum()
    };
    assert_eq!(
        (
            record.scanned,
            record.migrated,
            record.failed,
            record.skipped
        ),
        (
            sum(|r| r.scanned),
            sum(|r| r.migrated),
            sum(|r| r.failed),
            sum(|r| r.skipped)
        ),
        "{record:?}"
    );
    if E::NAME == "postgres" {
        assert_eq!(record.workers.len(), held.len(), "{record:?}");
        assert!(record.workers.iter().all(|w| !w.live), "{record:?}");
        let settled: u64 = record
            .workers
            .iter()
            .map(|w| w.migrated + w.failed + w.skipped)
            .sum();
        assert_eq!(settled, record.scanned, "{record:?}");
        let taken: u64 = record.workers.iter().map(|w| w.taken).sum();
        assert_eq!(taken, record.scanned, "{record:?}");
    } else {
        assert!(record.workers.is_empty(), "{record:?}");
    }
    let migrated = record.migrated;
    assert!(0 < migrated && migrated < total, "{record:?}");
    assert_eq!(
        notes.count_by_version().unwrap(),
        BTreeMap::from([(1, total - migrated), (2, migrated)])
    );
    for document in notes {
        let document = document.unwrap();
        match document.stored_version {
            1 => assert_eq!(document.revision.get(), 1, "{}", document.id),
            2 => {
                assert_eq!(document.revision.get(), 2, "{}", document.id);
                let history = notes.history(&document.id).unwrap();
                assert_eq!(history[1].origin, Origin::Migration { run });
            }
            other => panic!("{} is stored at version {other}", document.id),
        }
    }
    assert_eq!(notes.pending().unwrap().migratable(), total - migrated);
}

fn a_cancel_from_one_worker_stops_every_worker<E: Engine>() {
    let (_place, notes) = notes::<E>(5000);
    let token = CancelToken::new();
    let migrations = (0..workers::<E>())
        .map(|worker| {
            let migration = notes.migrate().join().threads(1);
            if worker == 0 {
                migration.cancel_token(token.clone())
            } else {
                migration
            }
        })
        .collect();
    // The first worker's token is cancelled while every worker is held after a chunk; the first
    // goes on (and asks the run to stop) and ends before the others go on.
    let held = held_workers(migrations, LetGo::InOrder, |_| token.cancel());
    let run = held[0].report.run_id.unwrap();
    assert_cancelled::<E>(&notes, run, &held, 5000);

    // The run let go of the collection: the next one takes what is left.
    let migrated = notes.run(run).unwrap().unwrap().migrated;
    let rest = notes.migrate().join().execute().unwrap();
    assert_eq!((rest.migrated, rest.remaining), (5000 - migrated, 0));
    assert_ne!(rest.run_id, Some(run));
}

fn cancel_run_from_another_handle_stops_every_worker<E: Engine>() {
    let (place, notes) = notes::<E>(5000);
    let postgres = E::NAME == "postgres";
    // On PostgreSQL a store of its own, as another process has; sled has one store per process.
    let other = if postgres {
        place.open().collection::<NoteV2>().unwrap()
    } else {
        notes.clone()
    };
    let migrations = (0..workers::<E>())
        .map(|_| notes.migrate().join().threads(1))
        .collect();
    let mut plain = None;
    let mut asked = None;
    let held = held_workers(migrations, LetGo::Together, |run| {
        plain = Some(other.migrate().execute().map(drop));
        asked = Some(other.cancel_run(run).unwrap());
    });
    let run = held[0].report.run_id.unwrap();
    match plain {
        Some(Err(MigrationError::RunInProgress { run: found, .. })) => assert_eq!(found, run),
        other => panic!("expected RunInProgress, got {other:?}"),
    }
    if postgres {
        assert_eq!(asked, Some(true));
        assert_cancelled::<E>(&notes, run, &held, 5000);
        // A run that ended has nothing to cancel.
        assert!(!other.cancel_run(run).unwrap());
    } else {
        // A run of one process is cancelled by its token only: it went on to its end.
        assert_eq!(asked, Some(false));
        let report = &held[0].report;
        assert!(!report.cancelled, "{report:?}");
        assert_eq!((report.migrated, report.remaining), (5000, 0));
        assert_eq!(notes.run(run).unwrap().unwrap().state, RunState::Done);
    }
}

/// Whether the step to `FlakyV2` fails for documents with an even `n`: one switch per engine (a
/// document names its engine's by `lane`), as the sled and PostgreSQL instances of a test run at
/// the same time in this process.
static FAILING: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// How many times the step to `FlakyV2` ran for each `n`, per lane.
static TRIED: [Mutex<BTreeMap<u64, u32>>; 2] =
    [Mutex::new(BTreeMap::new()), Mutex::new(BTreeMap::new())];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct FlakyV1 {
    n: u64,
    lane: usize,
}

impl Schema for FlakyV1 {
    const COLLECTION: &'static str = "flaky";
    const VERSION: u32 = 1;
    type Previous = Self;
    fn upgrade(previous: Self) -> Result<Self, StepError> {
        Ok(previous)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct FlakyV2 {
    n: u64,
    lane: usize,
    half: u64,
}

impl Schema for FlakyV2 {
    const COLLECTION: &'static str = "flaky";
    const VERSION: u32 = 2;
    type Previous = FlakyV1;
    fn upgrade(previous: FlakyV1) -> Result<Self, StepError> {
        *TRIED[previous.lane]
            .lock()
            .unwrap()
            .entry(previous.n)
            .or_insert(0) += 1;
        if previous.n % 2 == 0 && FAILING[previous.lane].load(Ordering::SeqCst) {
            return Err(StepError::new(format!("{} is even", previous.n)));
        }
        Ok(Self {
            n: previous.n,
            lane: previous.lane,
            half: previous.n / 2,
        })
    }
}

/// `n` documents written at version 1 naming `lane`, opened by a version 2 program.
fn flaky<E: Engine>(n: u64, lane: usize) -> (E::Place, Collection<FlakyV2>) {
    let place = E::place();
    {
        let store = place
            .builder()
            .durability(Durability::Eventual)
            .open()
            .unwrap();
        let flaky = store.collection::<FlakyV1>().unwrap();
        let values: Vec<FlakyV1> = (0..n).map(|n| FlakyV1 { n, lane }).collect();
        flaky.insert_many(&values).unwrap();
        store.flush().unwrap();
    }
    let flaky = place.open().collection::<FlakyV2>().unwrap();
    (place, flaky)
}

/// The ids of the failure set.
fn failure_ids<T>(collection: &Collection<T>) -> BTreeSet<String> {
    collection
        .failures_page(None, 10_000)
        .unwrap()
        .into_iter()
        .map(|failure| failure.id.to_string())
        .collect()
}

fn retry_failed_retries_only_what_earlier_runs_failed<E: Engine>() {
    let postgres = E::NAME == "postgres";
    let lane = usize::from(postgres);
    let (_place, flaky) = flaky::<E>(4000, lane);
    FAILING[lane].store(true, Ordering::SeqCst);

    // The first run fails the even documents.
    let first = flaky.migrate().join().threads(1).execute().unwrap();
    assert_eq!(
        (first.scanned, first.migrated, first.failed),
        (4000, 2000, 2000)
    );
    let failing = failure_ids(&flaky);
    assert_eq!(failing.len(), 2000);

    // The second retries them while they still fail. On PostgreSQL two workers, each held after
    // its first chunk until both have failed one: what either then claims must not be what the
    // other failed in this run.
    TRIED[lane].lock().unwrap().clear();
    let migrations = (0..workers::<E>())
        .map(|_| flaky.migrate().join().retry_failed().threads(1))
        .collect();
    let held = held_workers(migrations, LetGo::Together, |_| {});
    let run = held[0].report.run_id.unwrap();
    assert_ne!(first.run_id, Some(run));
    // Every failing document was tried once, and no other.
    let even: BTreeMap<u64, u32> = (0..4000).step_by(2).map(|n| (n, 1)).collect();
    assert_eq!(*TRIED[lane].lock().unwrap(), even);
    let mut listed = BTreeSet::new();
    for worker in &held {
        let report = &worker.report;
        assert_eq!(report.run_id, Some(run));
        assert_eq!(
            (report.migrated, report.skipped, report.failed),
            (0, 0, report.scanned),
            "{report:?}"
        );
        // No document is in two workers' reports.
        for failure in &report.failures {
            assert!(listed.insert(failure.id.to_string()), "{}", failure.id);
        }
    }
    assert!(listed.is_subset(&failing));
    let failed: u64 = held.iter().map(|worker| worker.report.failed).sum();
    assert_eq!(failed, 2000);
    let record = flaky.run(run).unwrap().unwrap();
    assert_eq!(record.state, RunState::DoneWithFailures, "{record:?}");
    assert!(record.retry_failed);
    // Per class too, past the failures it lists.
    assert_eq!(
        record.failures_by_class,
        BTreeMap::from([(FailureClass::Step, 2000)])
    );
    assert_eq!(
        (
            record.scanned,
            record.migrated,
            record.failed,
            record.skipped
        ),
        (2000, 0, 2000, 0)
    );
    // The run's record lists the first of the failure records that name it, each once.
    let listed: BTreeSet<String> = record.failures.iter().map(|f| f.id.to_string()).collect();
    assert_eq!(record.failures.len(), MAX_REPORTED_FAILURES.min(2000));
    assert_eq!(listed.len(), record.failures.len());
    assert!(listed.is_subset(&failing));
    assert!(record
        .failures
        .iter()
        .all(|f| f.class == FailureClass::Step && f.from_version == 1));
    if postgres {
        assert_eq!(record.workers.len(), 2, "{record:?}");
        let failed: u64 = record.workers.iter().map(|w| w.failed).sum();
        let taken: u64 = record.workers.iter().map(|w| w.taken).sum();
        assert_eq!((failed, taken), (2000, 2000), "{record:?}");
    }
    assert_eq!(failure_ids(&flaky), failing);
    assert_eq!(flaky.pending().unwrap().failed(), 2000);

    // Once the step passes, a run that retries migrates every one of them.
    FAILING[lane].store(false, Ordering::SeqCst);
    let third = flaky
        .migrate()
        .join()
        .retry_failed()
        .threads(1)
        .execute()
        .unwrap();
    assert_eq!(
        (third.scanned, third.migrated, third.failed, third.remaining),
        (2000, 2000, 0, 0)
    );
    assert!(failure_ids(&flaky).is_empty());
    assert_eq!(flaky.pending().unwrap().failed(), 0);
    assert_eq!(
        flaky.count_by_version().unwrap(),
        BTreeMap::from([(2, 4000)])
    );
    // No failed attempt wrote a revision: every document has the one it was written as and
    // the one of the run that migrated it.
    for document in &flaky {
        let document = document.unwrap();
        assert_eq!(
            (document.stored_version, document.revision.get()),
            (2, 2),
            "{}",
            document.id
        );
    }
}

engine_tests! {
    join_starts_a_run_when_none_is_under_way,
    a_joiner_with_other_settings_is_refused_naming_them,
    a_joiner_with_another_schema_is_refused_naming_the_fingerprints,
    joiners_migrate_every_document_once,
    max_rate_and_progress_are_the_runs,
    a_joiners_progress_counts_against_what_the_limit_left,
    a_cancel_from_one_worker_stops_every_worker,
    cancel_run_from_another_handle_stops_every_worker,
    retry_failed_retries_only_what_earlier_runs_failed,
}
