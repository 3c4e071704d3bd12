//! Startup policies (`Store::collection_with`): lazy, before serving (reports, failures,
//! `require_clean`, waiting for a run under way), in the background (returns at once, status,
//! dropping the store meanwhile).

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use revolve::{
    Collection, RunState, Schema, StartupError, StartupPolicy, StartupState, StepError, Store,
};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Place};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "boot", version = 1)]
struct BootV1 {
    title: String,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "boot", version = 2, from = BootV1, step = boot_v1_to_v2)]
struct BootV2 {
    title: String,
    n: u64,
    double: u64,
}

/// A title starting with `fail` fails the step; a title that names an open [`Gate`] holds the
/// step until the gate is released.
fn boot_v1_to_v2(old: BootV1) -> Result<BootV2, StepError> {
    if let Some(gate) = gate(&old.title) {
        gate.pass();
    }
    if old.title.starts_with("fail") {
        return Err(StepError::new(format!(
            "`{}` cannot be migrated",
            old.title
        )));
    }
    Ok(BootV2 {
        double: old.n * 2,
        title: old.title,
        n: old.n,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "boot", version = 3, from = BootV2, step = boot_v2_to_v3)]
struct BootV3 {
    title: String,
    n: u64,
    double: u64,
    triple: u64,
}

#[allow(clippy::unnecessary_wraps)] // a step's signature
fn boot_v2_to_v3(old: BootV2) -> Result<BootV3, StepError> {
    Ok(BootV3 {
        triple: old.n * 3,
        title: old.title,
        n: old.n,
        double: old.double,
    })
}

const WAIT: Duration = Duration::from_secs(60);

/// Holds a step until released, and tells the test the step is held: a migration caught
/// mid-chunk, deterministically.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    /// A gate for documents titled with the returned title: unique per test, so that tests on
    /// both engines running at once never share one.
    fn open() -> (Arc<Gate>, String) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let title = format!("gate {}", NEXT.fetch_add(1, Ordering::SeqCst));
        let gate = Arc::new(Gate::default());
        gates()
            .lock()
            .unwrap()
            .insert(title.clone(), Arc::clone(&gate));
        (gate, title)
    }

    /// Called by the step: says it is held, and waits for the release (bounded, so that a test
    /// that fails cannot hang).
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        let _ = self
            .changed
            .wait_timeout_while(state, WAIT, |state| !state.1)
            .unwrap();
    }

    fn wait_held(&self) {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, WAIT, |state| !state.0)
            .unwrap();
        assert!(state.0, "the step was never reached");
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

fn gates() -> &'static Mutex<HashMap<String, Arc<Gate>>> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
    GATES.get_or_init(Mutex::default)
}

fn gate(title: &str) -> Option<Arc<Gate>> {
    gates().lock().unwrap().get(title).cloned()
}

/// A store at version 1 holding `titles` (ids `doc-00000`, …), closed.
fn place_with<E: Engine>(titles: &[String]) -> E::Place {
    let place = E::place();
    let store = place.open();
    let boot = store.collection::<BootV1>().unwrap();
    let documents: Vec<(String, BootV1)> = (0..)
        .zip(titles)
        .map(|(n, title)| {
            (
                format!("doc-{n:05}"),
                BootV1 {
                    title: title.clone(),
                    n,
                },
            )
        })
        .collect();
    for chunk in documents.chunks(500) {
        for (id, document) in chunk {
            boot.insert_with_id(id, document).unwrap();
        }
    }
    place
}

fn titles(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item {i}")).collect()
}

fn versions(boot: &Collection<BootV2>) -> BTreeMap<u32, u64> {
    boot.count_by_version().unwrap()
}

/// Polls `condition` until it holds, failing the test after [`WAIT`].
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn lazy_leaves_old_documents_to_reads<E: Engine>() {
    let place = place_with::<E>(&titles(300));
    let store = place.open();
    let (boot, report) = store
        .collection_with::<BootV2>(StartupPolicy::default())
        .unwrap();
    assert_eq!(report.policy, StartupPolicy::Lazy);
    assert_eq!((report.remaining, report.migrated), (300, 0));
    assert!(report.runs.is_empty() && report.background.is_none());
    assert!(store.startup_migrations().is_empty());
    assert!(boot.startup_migration().is_none());
    assert_eq!(versions(&boot), BTreeMap::from([(1, 300)]));
    let read = boot.get("doc-00007").unwrap().unwrap();
    assert_eq!((read.stored_version, read.data.double), (1, 14));
    assert!(boot.runs().unwrap().is_empty());
    let _ = report.require_clean().unwrap();
}

fn before_serving_migrates_everything<E: Engine>() {
    let place = place_with::<E>(&titles(300));
    let store = place.open();
    let (boot, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateBeforeServing)
        .unwrap();
    assert_eq!(versions(&boot), BTreeMap::from([(2, 300)]));
    assert_eq!(
        (
            report.migrated,
            report.failed,
            report.skipped,
            report.remaining
        ),
        (300, 0, 0, 0)
    );
    assert_eq!(report.runs.len(), 1);
    assert!(report.waited_for.is_empty() && report.background.is_none());
    let record = boot.run(report.runs[0]).unwrap().unwrap();
    assert_eq!((record.state, record.migrated), (RunState::Done, 300));
    let status = boot.startup_migration().unwrap().status();
    assert_eq!(status.state, StartupState::Done);
    assert_eq!((status.migrated, status.done), (300, 300));
    let report = report.require_clean().unwrap();

    // A second start finds nothing pending and runs nothing.
    let (_, again) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateBeforeServing)
        .unwrap();
    assert!(again.runs.is_empty());
    assert_eq!((again.migrated, again.remaining), (0, 0));
    assert_eq!(boot.runs().unwrap().len(), 1, "{report:?}");
}

fn before_serving_reports_failures_and_require_clean_names_them<E: Engine>() {
    let mut titles = titles(300);
    for i in [40, 41, 150, 299, 12] {
        titles[i] = format!("fail {i}");
    }
    let place = place_with::<E>(&titles);
    let store = place.open();
    let (boot, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateBeforeServing)
        .unwrap();
    assert_eq!(
        (
            report.migrated,
            report.failed,
            report.known_failed,
            report.remaining
        ),
        (295, 5, 5, 0)
    );
    let failed: Vec<&str> = report.failures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        failed,
        [
            "doc-00012",
            "doc-00040",
            "doc-00041",
            "doc-00150",
            "doc-00299"
        ]
    );
    assert!(report.failures[0]
        .error
        .contains("`fail 12` cannot be migrated"));
    assert_eq!(versions(&boot), BTreeMap::from([(1, 5), (2, 295)]));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["failed"], 5);
    assert_eq!(json["policy"], "migrate_before_serving");

    let error = report.require_clean().unwrap_err();
    let message = error.to_string();
    match error {
        StartupError::Failures {
            collection,
            to_version,
            failed,
            first,
            ..
        } => {
            assert_eq!((collection.as_str(), to_version, failed), ("boot", 2, 5));
            assert_eq!(first.unwrap().id.as_str(), "doc-00012");
        }
        other => panic!("expected Failures, got {other:?}"),
    }
    assert!(message.contains("5 documents of `boot`"), "{message}");
    assert!(message.contains("doc-00012"), "{message}");

    // A later start still sees them: the failures outlive the run that recorded them.
    let (_, again) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateBeforeServing)
        .unwrap();
    assert_eq!((again.failed, again.known_failed), (0, 5));
    assert!(again.require_clean().is_err());
}

fn before_serving_waits_for_a_run_under_way<E: Engine>() {
    let place = place_with::<E>(&titles(1500));
    let store = place.open();
    let boot = store.collection::<BootV2>().unwrap();
    let under_way = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    thread::scope(|scope| {
        let first = scope.spawn(|| {
            let (under_way, release) = (Arc::clone(&under_way), Arc::clone(&release));
            let mut first_chunk = true;
            boot.migrate()
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
        let running = boot.runs().unwrap()[0].id;
        let starting = scope.spawn(|| {
            store
                .collection_with::<BootV2>(StartupPolicy::MigrateBeforeServing)
                .unwrap()
                .1
        });
        eventually("the start to wait for the run under way", || {
            store
                .startup_migrations()
                .iter()
                .any(|migration| migration.status().waiting_for == Some(running))
        });
        release.wait();
        let first = first.join().unwrap();
        let report = starting.join().unwrap();
        assert_eq!(report.waited_for, [running]);
        assert_eq!(report.remaining, 0);
        assert_eq!(first.migrated + report.migrated, 1500);
    });
    assert_eq!(versions(&boot), BTreeMap::from([(2, 1500)]));
}

fn background_returns_at_once_and_migrates<E: Engine>() {
    let (gate, held) = Gate::open();
    let mut titles = titles(300);
    titles[0].clone_from(&held);
    let place = place_with::<E>(&titles);
    let store = place.open();
    let (boot, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateInBackground)
        .unwrap();
    // Returned while the migration's step is held: the call did not wait for it.
    gate.wait_held();
    let background = report.background.clone().unwrap();
    let status = background.status();
    assert_eq!(status.state, StartupState::Migrating);
    assert_eq!(status.policy, StartupPolicy::MigrateInBackground);
    assert_eq!(report.remaining, 300);
    let listed = store.startup_migrations();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status().collection, "boot");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["background"]["state"], "migrating");
    // It serves meanwhile: reads upgrade, writes land.
    assert_eq!(boot.get("doc-00003").unwrap().unwrap().data.double, 6);
    boot.insert(&BootV2 {
        title: "new".to_owned(),
        n: 1,
        double: 2,
    })
    .unwrap();
    // Opening it again while it runs does not start a second one.
    let (_, second) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateInBackground)
        .unwrap();
    assert_eq!(store.startup_migrations().len(), 1);
    assert_eq!(
        second.background.unwrap().status().state,
        StartupState::Migrating
    );

    gate.release();
    let status = background.wait(WAIT);
    assert_eq!(status.state, StartupState::Done, "{status:?}");
    assert_eq!((status.migrated, status.failed, status.done), (300, 0, 300));
    assert_eq!(status.total, 300);
    assert_eq!(status.runs.len(), 1);
    assert!(status.waiting_for.is_none());
    assert_eq!(versions(&boot), BTreeMap::from([(2, 301)]));
    let record = boot.run(status.runs[0]).unwrap().unwrap();
    assert_eq!(record.state, RunState::Done);
}

/// A store of `n` documents whose first one's step waits at a gate, opened with
/// `MigrateInBackground`, once that step is held: the gate, the place, the store, its collection
/// and the background migration.
fn held_background<E: Engine>(
    n: usize,
) -> (
    Arc<Gate>,
    E::Place,
    Store,
    Collection<BootV2>,
    revolve::StartupMigration,
) {
    let (gate, held) = Gate::open();
    let mut titles = titles(n);
    titles[0].clone_from(&held);
    let place = place_with::<E>(&titles);
    let store = place.open();
    let (boot, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateInBackground)
        .unwrap();
    let background = report.background.unwrap();
    gate.wait_held();
    (gate, place, store, boot, background)
}

/// Two instances (two stores on one schema) of 3,000 documents started with
/// `MigrateInBackground`: the first instance's worker holds its first chunk (its transaction
/// open) at `gate`; the second has taken what the first does not hold, 2,000, and waits for its
/// peer. PostgreSQL only: on sled one process owns the store.
struct TwoInstances<P> {
    gate: Arc<Gate>,
    /// The first instance's collection.
    boot: Collection<BootV2>,
    first: revolve::StartupMigration,
    second: revolve::StartupMigration,
    /// Kept open until the test ends (bind it: a pattern's `..` would drop it at once).
    _stores: (P, Store, Store),
}

impl<P: Place> TwoInstances<P> {
    fn start<E: Engine<Place = P>>() -> Self {
        // The first instance's worker holds its first chunk, its transaction open.
        let (gate, place, first_store, boot, first) = held_background::<E>(3000);
        let second_store = place.open();
        let (_, report) = second_store
            .collection_with::<BootV2>(StartupPolicy::MigrateInBackground)
            .unwrap();
        let second = report.background.unwrap();
        // The second takes what the first does not hold (the first's chunk is its own), then
        // waits for its peer, whose chunk is still open.
        let deadline = Instant::now() + WAIT;
        while second.status().done < 2000 {
            assert!(Instant::now() < deadline, "{:?}", second.status());
            thread::sleep(Duration::from_millis(10));
        }
        Self {
            gate,
            boot,
            first,
            second,
            _stores: (place, first_store, second_store),
        }
    }
}

/// Two instances (two stores on one PostgreSQL schema) starting with `MigrateInBackground` while
/// the first one's run is under way: the second joins it, as a worker of the same run, instead
/// of waiting for it. On sled one process owns the store: the test does not apply.
fn background_migrations_of_two_instances_share_one_run<E: Engine>() {
    if E::NAME != "postgres" {
        return;
    }
    let TwoInstances {
        gate,
        boot,
        first,
        second,
        _stores: _open,
    } = TwoInstances::start::<E>();
    assert_eq!(second.status().state, StartupState::Migrating);
    gate.release();
    let status = first.wait(WAIT);
    let taken = second.wait(WAIT);
    assert_eq!(status.state, StartupState::Done, "{status:?}");
    assert_eq!(taken.state, StartupState::Done, "{taken:?}");
    assert!(taken.waiting_for.is_none(), "{taken:?}");
    assert_eq!(taken.migrated, 2000, "{taken:?}");
    assert_eq!(status.runs, taken.runs, "one run");
    assert_eq!(status.migrated + taken.migrated, 3000);
    let run = boot.run(status.runs[0]).unwrap().unwrap();
    assert_eq!(
        (run.state, run.workers.len()),
        (RunState::Done, 2),
        "{run:?}"
    );
    assert_eq!(run.migrated, 3000);
    assert_eq!(versions(&boot), BTreeMap::from([(2, 3000)]));
}

/// An instance that stops (its startup migration cancelled, as dropping its store does) leaves
/// the shared run; the run goes on with the other instances and ends done, not cancelled.
fn an_instance_stopping_does_not_cancel_the_shared_run<E: Engine>() {
    if E::NAME != "postgres" {
        return;
    }
    let TwoInstances {
        gate,
        boot,
        first,
        second,
        _stores: _open,
    } = TwoInstances::start::<E>();
    // The first instance stops: its worker leaves after its chunk.
    first.cancel();
    gate.release();
    let stopped = first.wait(WAIT);
    let went_on = second.wait(WAIT);
    assert_eq!(stopped.state, StartupState::Cancelled, "{stopped:?}");
    assert_eq!(went_on.state, StartupState::Done, "{went_on:?}");
    let run = boot.run(went_on.runs[0]).unwrap().unwrap();
    assert_eq!((run.state, run.migrated), (RunState::Done, 3000), "{run:?}");
    assert_eq!(versions(&boot), BTreeMap::from([(2, 3000)]));
}

fn dropping_the_store_during_a_background_migration_ends_cleanly<E: Engine>() {
    let (gate, place, store, boot, background) = held_background::<E>(1200);
    // Dropping every handle cancels the thread and waits for it, at its chunk boundary.
    let (dropped_tx, dropped) = mpsc::channel();
    let dropping = thread::spawn(move || {
        drop((boot, store));
        dropped_tx.send(()).unwrap();
    });
    assert!(
        dropped.recv_timeout(Duration::from_millis(200)).is_err(),
        "the drop returned while the migration thread was still inside its chunk"
    );
    gate.release();
    dropped.recv_timeout(WAIT).expect("dropping the store hung");
    dropping.join().unwrap();
    let status = background.status();
    assert_eq!(status.state, StartupState::Cancelled, "{status:?}");

    // The store opens again (the thread let go of it), with no run left `running`, and every
    // document at one version or the other.
    let store = place.open();
    let boot = store.collection::<BootV2>().unwrap();
    let runs = boot.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Cancelled);
    assert_eq!(versions(&boot).values().sum::<u64>(), 1200);
    let report = boot.migrate().execute().unwrap();
    assert_eq!(report.remaining, 0);
    assert_eq!(versions(&boot), BTreeMap::from([(2, 1200)]));
}

fn a_cancelled_background_migration_is_continued_by_the_next_start<E: Engine>() {
    let (gate, _place, store, boot, first) = held_background::<E>(1200);
    first.cancel();
    gate.release();
    let status = first.wait(WAIT);
    assert_eq!(status.state, StartupState::Cancelled, "{status:?}");
    assert!(first.is_finished());
    assert_eq!(boot.runs().unwrap()[0].state, RunState::Cancelled);

    let (_, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateInBackground)
        .unwrap();
    let second = report.background.unwrap();
    let status = second.wait(WAIT);
    assert_eq!(status.state, StartupState::Done, "{status:?}");
    assert_eq!(status.migrated + first.status().migrated, 1200);
    assert_eq!(versions(&boot), BTreeMap::from([(2, 1200)]));
    // One entry per collection: the newest.
    let listed = store.startup_migrations();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status(), status);
    assert_eq!(boot.startup_migration().unwrap().status(), status);
}

fn a_store_dropped_after_its_background_migration_closes<E: Engine>() {
    let place = place_with::<E>(&titles(50));
    let store = place.open();
    let (_, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateInBackground)
        .unwrap();
    let status = report.background.as_ref().unwrap().wait(WAIT);
    assert_eq!(status.state, StartupState::Done);
    drop(store);
    // Nothing keeps it open: it opens again at once.
    let store: Store = place.open();
    let boot = store.collection::<BootV2>().unwrap();
    assert_eq!(versions(&boot), BTreeMap::from([(2, 50)]));
}

/// During a rolling upgrade: a program older than the newest registered version starts with
/// `MigrateBeforeServing` while documents are still below its own version. It may not write, so
/// it serves reads and leaves the migration to the newer program's instances, instead of
/// failing its start; a background migration ends `Superseded`.
fn an_older_program_leaves_the_migration_to_the_newer_one<E: Engine>() {
    let place = place_with::<E>(&titles(50));
    {
        let store = place.open();
        let _ = store.collection::<BootV3>().unwrap();
    }
    let store = place.open();
    let (boot, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateBeforeServing)
        .unwrap();
    assert_eq!(report.superseded_by, Some(3));
    assert_eq!((report.migrated, report.remaining), (0, 50));
    assert!(report.runs.is_empty());
    assert_eq!(boot.get("doc-00003").unwrap().unwrap().data.double, 6);
    let _ = report.require_clean().unwrap();
    drop((boot, store));

    // In the background it says so, not that nothing is pending.
    let store = place.open();
    let (_, report) = store
        .collection_with::<BootV2>(StartupPolicy::MigrateInBackground)
        .unwrap();
    let status = report.background.unwrap().wait(WAIT);
    assert_eq!(
        status.state,
        StartupState::Superseded { newer: 3 },
        "{status:?}"
    );
    assert_eq!(status.migrated, 0);
}

/// A `MigrateBeforeServing` start cancelled midway returns what it did, and `require_clean`
/// refuses it: documents are still to migrate.
fn a_cancelled_start_is_not_clean<E: Engine>() {
    let (gate, held) = Gate::open();
    // Held in the second chunk, with a third to come: the cancel leaves it.
    let mut titles = titles(3000);
    titles[1200].clone_from(&held);
    let place = place_with::<E>(&titles);
    let store = place.open();
    thread::scope(|scope| {
        let starting = scope.spawn(|| {
            store
                .collection_with::<BootV2>(StartupPolicy::MigrateBeforeServing)
                .unwrap()
                .1
        });
        gate.wait_held();
        let migrations = store.startup_migrations();
        assert_eq!(migrations.len(), 1);
        migrations[0].cancel();
        gate.release();
        let report = starting.join().unwrap();
        assert!(report.remaining > 0, "{report:?}");
        match report.require_clean() {
            Err(StartupError::Incomplete {
                remaining,
                to_version: 2,
                ..
            }) => assert!(remaining > 0),
            other => panic!("expected Incomplete, got {other:?}"),
        }
    });
}

engine_tests! {
    background_migrations_of_two_instances_share_one_run,
    an_instance_stopping_does_not_cancel_the_shared_run,
    an_older_program_leaves_the_migration_to_the_newer_one,
    a_cancelled_start_is_not_clean,
    lazy_leaves_old_documents_to_reads,
    before_serving_migrates_everything,
    before_serving_reports_failures_and_require_clean_names_them,
    before_serving_waits_for_a_run_under_way,
    background_returns_at_once_and_migrates,
    dropping_the_store_during_a_background_migration_ends_cleanly,
    a_cancelled_background_migration_is_continued_by_the_next_start,
    a_store_dropped_after_its_background_migration_closes,
}
