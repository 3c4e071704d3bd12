//! Bulk migration: limits and the cursor, isolated failures, dry runs, cancel and resume, threads,
//! concurrent writers, revert, the ledger, throttling and progress.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use revolve::{
    CancelToken, Collection, Durability, FailureClass, MigrationError, MigrationReport, Origin,
    Pending, Progress, RawRevision, Revision, RunKind, RunState, Schema, StepError, StoreError,
    MAX_REPORTED_FAILURES,
};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Place};

// ---- `items`: a title starting with `fail` makes the step return an error, `panic` makes it panic.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "items", version = 1)]
struct ItemV1 {
    title: String,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "items", version = 2, from = ItemV1, step = item_v1_to_v2)]
struct ItemV2 {
    title: String,
    n: u64,
    double: u64,
}

const PANIC_MESSAGE: &str = "deliberate step panic";

fn item_v1_to_v2(old: ItemV1) -> Result<ItemV2, StepError> {
    assert!(
        !old.title.starts_with("panic"),
        "{PANIC_MESSAGE} on `{}`",
        old.title
    );
    if old.title.starts_with("fail") {
        return Err(StepError::new(format!(
            "`{}` cannot be migrated",
            old.title
        )));
    }
    Ok(ItemV2 {
        double: old.n * 2,
        title: old.title,
        n: old.n,
    })
}

fn item_v2(title: &str, n: u64) -> ItemV2 {
    ItemV2 {
        title: title.to_owned(),
        n,
        double: 0,
    }
}

/// Keeps the deliberate step panics out of the test output; every other panic is reported as usual.
fn quiet_step_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with(PANIC_MESSAGE) {
                default(info);
            }
        }));
    });
}

/// Runs `write` in a program that knows `T` as its latest version, then closes the store.
fn with_program<T: Schema>(place: &impl Place, write: impl FnOnce(&Collection<T>)) {
    let store = place
        .builder()
        .durability(Durability::Eventual)
        .open()
        .unwrap();
    write(&store.collection::<T>().unwrap());
    store.flush().unwrap();
}

/// The store at `place`, opened by a program that knows `T` as its latest version.
fn open<T: Schema>(place: &impl Place) -> Collection<T> {
    place.open().collection::<T>().unwrap()
}

/// Whether document `i` of a fixture fails its step.
fn fails(i: u64, fail_percent: u64) -> bool {
    (i * 37 + 11) % 100 < fail_percent
}

/// A store of `items` written by two programs; two fixtures with the same arguments hold the same
/// documents under the same ids.
struct Fixture {
    _place: Box<dyn Place>,
    items: Collection<ItemV2>,
    ids: Vec<String>,
}

impl Fixture {
    /// `n` documents written at version 1 (every 7th edited once at version 1; `fail_percent` of them
    /// failing their step, a third of those by panicking if `panics`), then a version 2 program
    /// updates every 11th and removes every 13th.
    fn new<E: Engine>(n: u64, fail_percent: u64, panics: bool) -> Self {
        let dir = E::place();
        let ids: Vec<String> = (0..n).map(|i| format!("doc-{i:05}")).collect();
        with_program::<ItemV1>(&dir, |items| {
            for (i, id) in (0..).zip(&ids) {
                let title = match (fails(i, fail_percent), panics && i % 3 == 0) {
                    (false, _) => format!("item {i}"),
                    (true, false) => format!("fail {i}"),
                    (true, true) => format!("panic {i}"),
                };
                items.insert_with_id(id, &ItemV1 { title, n: i }).unwrap();
                if i % 7 == 3 {
                    let mut edited = items.get(id).unwrap().unwrap().data;
                    edited.n += 1000;
                    items.update(id, &edited).unwrap();
                }
            }
        });
        with_program::<ItemV2>(&dir, |items| {
            for (i, id) in (0..).zip(&ids) {
                if i % 11 == 5 {
                    items.update(id, &item_v2("rewritten", i)).unwrap();
                }
                if i % 13 == 9 {
                    items.remove(id).unwrap();
                }
            }
        });
        let items = open::<ItemV2>(&dir);
        Self {
            _place: Box::new(dir),
            items,
            ids,
        }
    }

    /// Live documents at version 1: what a migration takes.
    fn candidates(&self) -> u64 {
        self.items
            .count_by_version()
            .unwrap()
            .get(&1)
            .copied()
            .unwrap_or(0)
    }

    fn end_state(&self) -> EndState {
        end_state(&self.items, &self.ids)
    }

    fn raw(&self) -> BTreeMap<String, Vec<RawRevision>> {
        self.ids
            .iter()
            .map(|id| (id.clone(), raw_history(&self.items, id)))
            .collect()
    }
}

type Head = Result<Option<(u32, ItemV2)>, String>;
/// Each revision's version (`None` for a removal) and what wrote it.
type Revisions = Vec<(Option<u32>, &'static str)>;

/// The logical state of a collection: every document's head (upgraded, with its stored version),
/// its revisions' versions and origins (run ids left out), and the counters.
#[derive(Debug, PartialEq)]
struct EndState {
    docs: BTreeMap<String, (Head, Revisions)>,
    counts: BTreeMap<u32, u64>,
    removed: u64,
    pending: Pending,
}

fn origin_kind(origin: Origin) -> &'static str {
    match origin {
        Origin::Write => "write",
        Origin::Migration { .. } => "migration",
        Origin::Revert { .. } => "revert",
        _ => "other",
    }
}

fn end_state(items: &Collection<ItemV2>, ids: &[String]) -> EndState {
    let docs = ids
        .iter()
        .map(|id| {
            let head = items
                .get(id)
                .map(|doc| doc.map(|doc| (doc.stored_version, doc.data)))
                .map_err(|error| error.to_string());
            let revisions = items
                .history(id)
                .unwrap()
                .iter()
                .map(|info| (info.version, origin_kind(info.origin)))
                .collect();
            (id.clone(), (head, revisions))
        })
        .collect();
    EndState {
        docs,
        counts: items.count_by_version().unwrap(),
        removed: items.removed_count().unwrap(),
        pending: items.pending().unwrap(),
    }
}

/// Every revision of a document exactly as stored.
fn raw_history<T: Schema>(collection: &Collection<T>, id: &str) -> Vec<RawRevision> {
    collection
        .history(id)
        .unwrap()
        .iter()
        .map(|info| collection.raw_revision(id, info.revision).unwrap().unwrap())
        .collect()
}

fn history_len<T: Schema>(collection: &Collection<T>, id: &str) -> usize {
    collection.history(id).unwrap().len()
}

fn assert_counts_add_up(report: &MigrationReport) {
    assert_eq!(
        report.migrated + report.failed + report.skipped,
        report.scanned,
        "{report:?}"
    );
    assert_eq!(
        report.failures_by_class.values().sum::<u64>(),
        report.failed,
        "{report:?}"
    );
}

/// The report without what differs between two runs that did the same: run id and time.
fn normalized(mut report: MigrationReport) -> MigrationReport {
    report.run_id = None;
    report.elapsed = Duration::ZERO;
    report
}

/// Executes with `limit` until a call finds nothing to do; returns the reports of the calls that did
/// something, each checked.
fn run_to_completion(
    items: &Collection<ItemV2>,
    limit: Option<u64>,
    threads: usize,
) -> Vec<MigrationReport> {
    let mut reports = Vec::new();
    loop {
        let mut migration = items.migrate().threads(threads);
        if let Some(limit) = limit {
            migration = migration.limit(limit);
        }
        let report = migration.execute().unwrap();
        assert_counts_add_up(&report);
        assert!(!report.cancelled);
        if let Some(limit) = limit {
            assert!(report.scanned <= limit, "{report:?}");
        }
        if report.run_id.is_none() {
            assert_eq!((report.scanned, report.remaining), (0, 0), "{report:?}");
            return reports;
        }
        assert!(report.scanned > 0, "{report:?}");
        reports.push(report);
        assert!(reports.len() <= 10_000, "the runs do not converge");
    }
}

/// Held by the tests whose step functions read process-wide state (`FIX_APPLIED`, `GATE`,
/// `CORRECTED`): each runs once per engine, in threads of one process, and they must not see
/// each other's state.
static STEP_STATE: Mutex<()> = Mutex::new(());

fn step_state() -> std::sync::MutexGuard<'static, ()> {
    STEP_STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---- The example: ten documents, one failing, `limit(3)`. ----

static FIX_APPLIED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "fixable", version = 1)]
struct FixableV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "fixable", version = 2, from = FixableV1, step = fixable_v1_to_v2)]
struct FixableV2 {
    title: String,
    fixed: bool,
}

fn fixable_v1_to_v2(old: FixableV1) -> Result<FixableV2, StepError> {
    let fixed = FIX_APPLIED.load(Ordering::SeqCst);
    if old.title == "fail" && !fixed {
        return Err(StepError::new("the step cannot migrate `fail` yet"));
    }
    Ok(FixableV2 {
        title: old.title,
        fixed,
    })
}

/// Repeated limited runs advance through the collection even when they retry failures: three
/// documents that keep failing at the front of the id order do not take every run's limit.
fn limited_retries_advance_past_documents_that_keep_failing<E: Engine>() {
    let _state = step_state();
    FIX_APPLIED.store(false, Ordering::SeqCst);
    let dir = E::place();
    with_program::<FixableV1>(&dir, |docs| {
        for i in 0..10 {
            let title = if i < 3 {
                "fail".to_owned()
            } else {
                format!("doc {i}")
            };
            docs.insert_with_id(&format!("doc-{i:02}"), &FixableV1 { title })
                .unwrap();
        }
    });
    let docs = open::<FixableV2>(&dir);
    let outcome = |report: MigrationReport| (report.scanned, report.migrated, report.failed);
    // doc-00..02 fail; then doc-03..05.
    assert_eq!(
        outcome(docs.migrate().limit(3).execute().unwrap()),
        (3, 0, 3)
    );
    assert_eq!(
        outcome(docs.migrate().limit(3).execute().unwrap()),
        (3, 3, 0)
    );
    // Retrying goes on from there: doc-06..08, not the three failures again.
    let retry = || docs.migrate().retry_failed().limit(3).execute().unwrap();
    assert_eq!(outcome(retry()), (3, 3, 0));
    // Then doc-09 and, come round, two of the failures.
    assert_eq!(outcome(retry()), (3, 1, 2));
    assert_eq!(
        docs.count_by_version().unwrap(),
        BTreeMap::from([(1, 3), (2, 7)])
    );
}

fn limit_three_over_ten_documents_with_one_failure<E: Engine>() {
    let _state = step_state();
    FIX_APPLIED.store(false, Ordering::SeqCst);
    let dir = E::place();
    with_program::<FixableV1>(&dir, |docs| {
        for i in 0..10 {
            let title = if i == 4 {
                "fail".to_owned()
            } else {
                format!("doc {i}")
            };
            docs.insert_with_id(&format!("doc-{i:02}"), &FixableV1 { title })
                .unwrap();
        }
    });
    let docs = open::<FixableV2>(&dir);

    // (scanned, migrated, failed, remaining) per call. The cursor takes ids in order; doc-04 fails
    // in the second call and counts against its limit.
    let expected = [(3, 3, 0, 7), (3, 2, 1, 4), (3, 3, 0, 1), (1, 1, 0, 0)];
    for (call, expected) in (1..).zip(expected) {
        let report = docs.migrate().limit(3).execute().unwrap();
        assert_counts_add_up(&report);
        assert!(report.scanned <= 3);
        assert!(report.run_id.is_some());
        assert!(!report.dry_run && !report.cancelled);
        assert_eq!(report.skipped, 0);
        assert_eq!(
            (
                report.scanned,
                report.migrated,
                report.failed,
                report.remaining
            ),
            expected,
            "call {call}: {report:?}"
        );
        if call == 2 {
            assert_eq!(report.failures.len(), 1);
            let failure = &report.failures[0];
            assert_eq!(failure.id.as_str(), "doc-04");
            assert_eq!(failure.revision, Revision::FIRST);
            assert_eq!(failure.from_version, 1);
            assert_eq!(failure.class, FailureClass::Step);
            assert!(failure.error.contains("cannot migrate"), "{failure:?}");
            assert_eq!(
                report.failures_by_class,
                BTreeMap::from([(FailureClass::Step, 1)])
            );
        } else {
            assert!(report.failures.is_empty());
        }
    }
    let runs = docs.runs().unwrap().len();
    assert_eq!(runs, 4);

    // A fifth call returns at once and records no run.
    let fifth = docs.migrate().limit(3).execute().unwrap();
    assert_eq!(fifth.run_id, None);
    assert_eq!(
        (fifth.scanned, fifth.migrated, fifth.failed, fifth.remaining),
        (0, 0, 0, 0)
    );
    assert_eq!(docs.runs().unwrap().len(), runs);

    // The failed document is pending apart, and stays as it was.
    let pending = docs.pending().unwrap();
    assert_eq!(pending.by_version.keys().copied().collect::<Vec<_>>(), [1]);
    let at_v1 = pending.by_version[&1];
    assert_eq!((at_v1.migratable, at_v1.failed), (0, 1));
    assert_eq!((pending.migratable(), pending.failed()), (0, 1));
    assert_eq!(history_len(&docs, "doc-04"), 1);
    assert_eq!(
        docs.count_by_version().unwrap(),
        BTreeMap::from([(1, 1), (2, 9)])
    );

    // Fixed, it is still skipped until a retry is asked for.
    FIX_APPLIED.store(true, Ordering::SeqCst);
    assert_eq!(docs.migrate().execute().unwrap().run_id, None);
    let retry = docs.migrate().retry_failed().execute().unwrap();
    assert!(retry.run_id.is_some());
    assert_eq!(
        (
            retry.scanned,
            retry.migrated,
            retry.failed,
            retry.skipped,
            retry.remaining
        ),
        (1, 1, 0, 0, 0)
    );
    let doc = docs.get("doc-04").unwrap().unwrap();
    assert_eq!(doc.stored_version, 2);
    assert_eq!(
        doc.data,
        FixableV2 {
            title: "fail".to_owned(),
            fixed: true
        }
    );
    assert!(docs.pending().unwrap().by_version.is_empty());
    assert_eq!(docs.count_by_version().unwrap(), BTreeMap::from([(2, 10)]));
    assert_eq!(
        docs.migrate().retry_failed().execute().unwrap().run_id,
        None
    );
}

// ---- Limits, threads and the logical end state. ----

/// A property test, run through proptest's runner so that it is an ordinary generic test body.
fn limited_runs_converge_to_one_unlimited_run<E: Engine>() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &(0u64..200, 1u64..50, 0u64..40, 1usize..=4),
        |(n, limit, fail_percent, threads)| {
            let limited = Fixture::new::<E>(n, fail_percent, false);
            let candidates = limited.candidates();
            let reports = run_to_completion(&limited.items, Some(limit), threads);
            prop_assert_eq!(reports.len() as u64, candidates.div_ceil(limit));
            prop_assert_eq!(reports.iter().map(|r| r.scanned).sum::<u64>(), candidates);
            if let Some(last) = reports.last() {
                prop_assert_eq!(last.remaining, 0);
            }

            let whole = Fixture::new::<E>(n, fail_percent, false);
            let single = run_to_completion(&whole.items, None, 1);
            prop_assert!(single.len() <= 1);
            let total = |reports: &[MigrationReport], count: fn(&MigrationReport) -> u64| {
                reports.iter().map(count).sum::<u64>()
            };
            prop_assert_eq!(total(&single, |r| r.scanned), candidates);
            prop_assert_eq!(
                total(&reports, |r| r.migrated),
                total(&single, |r| r.migrated)
            );
            prop_assert_eq!(total(&reports, |r| r.failed), total(&single, |r| r.failed));
            prop_assert_eq!(limited.end_state(), whole.end_state());
            Ok(())
        },
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

fn one_thread_and_four_threads_agree<E: Engine>() {
    quiet_step_panics();
    let one = Fixture::new::<E>(2500, 6, true);
    let four = Fixture::new::<E>(2500, 6, true);
    assert_eq!(one.end_state(), four.end_state());
    for limit in [Some(1200), None] {
        let with = |fixture: &Fixture, threads: usize| {
            let mut migration = fixture.items.migrate().threads(threads);
            if let Some(limit) = limit {
                migration = migration.limit(limit);
            }
            migration.execute().unwrap()
        };
        let single = with(&one, 1);
        let parallel = with(&four, 4);
        assert_counts_add_up(&single);
        assert!(single.failed > 0 && single.migrated > 0);
        assert!(single.failures_by_class.contains_key(&FailureClass::Panic));
        assert_eq!(normalized(single), normalized(parallel));
    }
    assert_eq!(one.end_state(), four.end_state());
    assert_eq!(one.items.pending().unwrap().migratable(), 0);
}

fn rerunning_a_finished_migration_writes_nothing<E: Engine>() {
    let fixture = Fixture::new::<E>(300, 5, false);
    let first = fixture.items.migrate().execute().unwrap();
    assert!(first.failed > 0);
    assert_eq!(first.remaining, 0);
    let state = fixture.end_state();
    let raw = fixture.raw();
    let runs = fixture.items.runs().unwrap();

    let again = fixture.items.migrate().execute().unwrap();
    assert_eq!(again.run_id, None);
    assert_eq!((again.scanned, again.remaining), (0, 0));
    assert_eq!(fixture.end_state(), state);
    assert_eq!(fixture.raw(), raw);
    assert_eq!(fixture.items.runs().unwrap(), runs);

    // Retrying failures whose step still fails records the run but writes no revision.
    let retry = fixture.items.migrate().retry_failed().execute().unwrap();
    assert!(retry.run_id.is_some());
    assert_eq!(
        (retry.scanned, retry.failed, retry.migrated),
        (first.failed, first.failed, 0)
    );
    assert_eq!(fixture.end_state(), state);
    assert_eq!(fixture.raw(), raw);
}

fn migration_appends_revisions_and_agrees_with_lazy_reads<E: Engine>() {
    let fixture = Fixture::new::<E>(300, 5, false);
    let items = &fixture.items;
    let lazy: BTreeMap<String, Head> = fixture
        .end_state()
        .docs
        .into_iter()
        .map(|(id, (head, _))| (id, head))
        .collect();
    let raw = fixture.raw();
    let report = items.migrate().execute().unwrap();
    let run = report.run_id.unwrap();
    let failed: Vec<&str> = report.failures.iter().map(|f| f.id.as_str()).collect();

    let mut migrated = 0;
    for id in &fixture.ids {
        let before = &raw[id];
        let after = raw_history(items, id);
        // The old revisions are untouched, byte for byte.
        assert_eq!(&after[..before.len()], &before[..], "{id}");
        let head = before.last().unwrap();
        let eager = items.get(id).map_err(|error| error.to_string());
        let was_candidate = head.info.version == Some(1) && !head.info.removed;
        if !was_candidate || failed.contains(&id.as_str()) {
            assert_eq!(after.len(), before.len(), "{id}");
            assert_eq!(
                eager.map(|doc| doc.map(|doc| (doc.stored_version, doc.data))),
                lazy[id],
                "{id}"
            );
            continue;
        }
        migrated += 1;
        assert_eq!(after.len(), before.len() + 1, "{id}");
        let new = after.last().unwrap();
        assert_eq!(new.info.origin, Origin::Migration { run }, "{id}");
        assert_eq!(new.info.version, Some(2));
        assert_eq!(new.info.parent, Some(head.info.revision));
        let doc = eager.unwrap().unwrap();
        assert_eq!((doc.revision, doc.stored_version), (new.info.revision, 2));
        let (lazy_version, lazy_data) = lazy[id].clone().unwrap().unwrap();
        assert_eq!(lazy_version, 1);
        assert_eq!(doc.data, lazy_data, "{id}: lazy read != eager migration");
        // The old revision still reads, upgraded lazily, as it did.
        let old = items.revision(id, head.info.revision).unwrap().unwrap();
        assert_eq!((old.stored_version, old.data), (1, lazy_data));
    }
    assert_eq!(report.migrated, migrated);
    assert_eq!(report.failed, failed.len() as u64);
}

fn dry_run_reports_what_execute_does_and_writes_nothing<E: Engine>() {
    quiet_step_panics();
    let dry = Fixture::new::<E>(400, 8, true);
    let real = Fixture::new::<E>(400, 8, true);
    let mut dry_ids = Vec::new();
    for round in 0.. {
        let state = dry.end_state();
        let raw = dry.raw();
        let preview = dry.items.migrate().limit(130).dry_run().unwrap();
        assert!(preview.dry_run);
        let report = real.items.migrate().limit(130).execute().unwrap();
        assert!(!report.dry_run);
        assert_counts_add_up(&preview);
        let Some(preview_id) = preview.run_id else {
            // Nothing left: neither records a run.
            assert_eq!(report.run_id, None);
            break;
        };
        dry_ids.push(preview_id);
        let mut expected = normalized(report.clone());
        expected.dry_run = true;
        assert_eq!(normalized(preview), expected, "round {round}");

        // Nothing written: no revision, no counter, no cursor (the same documents come next).
        assert_eq!(dry.end_state(), state, "round {round}");
        assert_eq!(dry.raw(), raw, "round {round}");
        let executed = dry.items.migrate().limit(130).execute().unwrap();
        assert_eq!(normalized(executed), normalized(report), "round {round}");
        assert_eq!(dry.end_state(), real.end_state(), "round {round}");
    }
    assert_eq!(dry.items.pending().unwrap().migratable(), 0);
    // Retrying the known failures: the same again.
    let state = dry.end_state();
    let preview = dry.items.migrate().retry_failed().dry_run().unwrap();
    let report = real.items.migrate().retry_failed().execute().unwrap();
    assert!(report.failed > 0);
    let mut expected = normalized(report);
    expected.dry_run = true;
    assert_eq!(normalized(preview), expected);
    assert_eq!(dry.end_state(), state);

    assert_eq!(dry_ids.len(), 3, "336 candidates in pages of 130");
    let runs = dry.items.runs().unwrap();
    for id in dry_ids {
        let record = runs.iter().find(|record| record.id == id).unwrap();
        assert!(record.dry_run);
        assert_eq!(record.kind, RunKind::Migration);
        assert_eq!(dry.items.run(id).unwrap().as_ref(), Some(record));
    }
    // The three above and the retry.
    assert_eq!(runs.iter().filter(|record| record.dry_run).count(), 4);
}

#[allow(clippy::too_many_lines)] // One scenario, read top to bottom.
fn failing_and_panicking_steps_fail_only_their_documents<E: Engine>() {
    quiet_step_panics();
    let dir = E::place();
    let titles = |i: u64| match i {
        3 => "fail three".to_owned(),
        8 => "fail eight".to_owned(),
        12 => "panic twelve".to_owned(),
        20 => "panic twenty".to_owned(),
        _ => format!("fine {i}"),
    };
    with_program::<ItemV1>(&dir, |items| {
        for i in 0..30 {
            let id = format!("doc-{i:02}");
            items
                .insert_with_id(
                    &id,
                    &ItemV1 {
                        title: titles(i),
                        n: i,
                    },
                )
                .unwrap();
            if i == 8 || i == 20 {
                // A second revision at version 1: the failure names the head revision.
                items
                    .update(
                        &id,
                        &ItemV1 {
                            title: titles(i),
                            n: 0,
                        },
                    )
                    .unwrap();
            }
        }
    });
    let items = open::<ItemV2>(&dir);
    let broken = ["doc-03", "doc-08", "doc-12", "doc-20"];
    let before: Vec<Vec<RawRevision>> = broken.iter().map(|id| raw_history(&items, id)).collect();

    let report = items.migrate().threads(2).execute().unwrap();
    assert_counts_add_up(&report);
    assert_eq!(
        (
            report.scanned,
            report.migrated,
            report.failed,
            report.remaining
        ),
        (30, 26, 4, 0)
    );
    assert_eq!(
        report.failures_by_class,
        BTreeMap::from([(FailureClass::Step, 2), (FailureClass::Panic, 2)])
    );
    let mut failures = report.failures.clone();
    failures.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let listed: Vec<(&str, u64, u32, FailureClass)> = failures
        .iter()
        .map(|f| (f.id.as_str(), f.revision.get(), f.from_version, f.class))
        .collect();
    assert_eq!(
        listed,
        [
            ("doc-03", 1, 1, FailureClass::Step),
            ("doc-08", 2, 1, FailureClass::Step),
            ("doc-12", 1, 1, FailureClass::Panic),
            ("doc-20", 2, 1, FailureClass::Panic),
        ]
    );
    assert!(failures[0]
        .error
        .contains("`fail three` cannot be migrated"));
    assert!(
        failures[2].error.contains(PANIC_MESSAGE),
        "{:?}",
        failures[2]
    );

    // The failed documents are byte-identical; every other one migrated.
    for (id, before) in broken.iter().zip(&before) {
        assert_eq!(&raw_history(&items, id), before, "{id}");
    }
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(1, 4), (2, 26)])
    );
    for i in (0..30).filter(|i| ![3, 8, 12, 20].contains(i)) {
        let doc = items.get(&format!("doc-{i:02}")).unwrap().unwrap();
        assert_eq!(doc.stored_version, 2);
    }
    let pending = items.pending().unwrap();
    assert_eq!((pending.migratable(), pending.failed()), (0, 4));
    let record = items.run(report.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(record.state, RunState::DoneWithFailures);
    assert_eq!(record.failures, report.failures);
    assert_eq!(record.failures_by_class, report.failures_by_class);
    // The pool survived its panics: the next run works.
    assert_eq!(items.migrate().execute().unwrap().run_id, None);

    // Writing or removing a failed document settles its failure.
    items.update("doc-03", &item_v2("written", 3)).unwrap();
    items.remove("doc-12").unwrap();
    let pending = items.pending().unwrap();
    assert_eq!((pending.migratable(), pending.failed()), (0, 2));
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(1, 2), (2, 27)])
    );
    let retry = items.migrate().retry_failed().execute().unwrap();
    let mut retried: Vec<&str> = retry.failures.iter().map(|f| f.id.as_str()).collect();
    retried.sort_unstable();
    assert_eq!((retry.scanned, retry.failed), (2, 2));
    assert_eq!(retried, ["doc-08", "doc-20"]);
}

fn reports_list_the_first_failures_and_count_them_all<E: Engine>() {
    let dir = E::place();
    let count = MAX_REPORTED_FAILURES as u64 + 150;
    with_program::<ItemV1>(&dir, |items| {
        let docs: Vec<ItemV1> = (0..count)
            .map(|n| ItemV1 {
                title: format!("fail {n}"),
                n,
            })
            .collect();
        items.insert_many(&docs).unwrap();
    });
    let items = open::<ItemV2>(&dir);
    let report = items.migrate().execute().unwrap();
    assert_counts_add_up(&report);
    assert_eq!(
        (report.scanned, report.failed, report.migrated),
        (count, count, 0)
    );
    assert_eq!(report.failures.len(), MAX_REPORTED_FAILURES);
    assert_eq!(
        report.failures_by_class,
        BTreeMap::from([(FailureClass::Step, count)])
    );
    let record = items.run(report.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(record.failed, count);
    assert_eq!(record.failures, report.failures);
    assert_eq!(items.pending().unwrap().failed(), count);
}

// `lossy`: version 2 does not serialize a field it requires, so the step's output does not decode
// back; the migrator must refuse to write it.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "lossy", version = 1)]
struct LossyV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "lossy", version = 2, from = LossyV1)]
struct LossyV2 {
    title: String,
    #[serde(skip_serializing)]
    secret: String,
}

impl From<LossyV1> for LossyV2 {
    fn from(old: LossyV1) -> Self {
        LossyV2 {
            secret: old.title.to_uppercase(),
            title: old.title,
        }
    }
}

fn an_output_that_does_not_decode_back_is_an_isolated_failure<E: Engine>() {
    let dir = E::place();
    with_program::<LossyV1>(&dir, |docs| {
        for i in 0..5 {
            docs.insert_with_id(
                &format!("doc-{i}"),
                &LossyV1 {
                    title: format!("doc {i}"),
                },
            )
            .unwrap();
        }
    });
    let docs = open::<LossyV2>(&dir);
    let before: Vec<Vec<RawRevision>> = (0..5)
        .map(|i| raw_history(&docs, &format!("doc-{i}")))
        .collect();
    let preview = docs.migrate().dry_run().unwrap();
    let report = docs.migrate().execute().unwrap();
    let mut expected = normalized(report.clone());
    expected.dry_run = true;
    assert_eq!(normalized(preview), expected);
    assert_eq!((report.scanned, report.failed, report.migrated), (5, 5, 0));
    assert_eq!(
        report.failures_by_class,
        BTreeMap::from([(FailureClass::InvalidOutput, 5)])
    );
    for (i, before) in before.iter().enumerate() {
        assert_eq!(&raw_history(&docs, &format!("doc-{i}")), before);
    }
    assert_eq!(docs.count_by_version().unwrap(), BTreeMap::from([(1, 5)]));
}

// `brittle`: version 2's own `Serialize` panics on a title starting with `boom`, outside any step.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "brittle", version = 1)]
struct BrittleV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "brittle", version = 2, from = BrittleV1)]
struct BrittleV2 {
    title: String,
}

impl From<BrittleV1> for BrittleV2 {
    fn from(old: BrittleV1) -> Self {
        BrittleV2 { title: old.title }
    }
}

impl Serialize for BrittleV2 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        assert!(
            !self.title.starts_with("boom"),
            "{PANIC_MESSAGE}, in Serialize"
        );
        let mut fields = serializer.serialize_struct("BrittleV2", 1)?;
        fields.serialize_field("title", &self.title)?;
        fields.end()
    }
}

fn a_panic_outside_the_steps_fails_only_its_document<E: Engine>() {
    quiet_step_panics();
    let dir = E::place();
    with_program::<BrittleV1>(&dir, |docs| {
        for i in 0..9 {
            let title = if i % 3 == 1 { "boom" } else { "fine" };
            docs.insert_with_id(
                &format!("doc-{i}"),
                &BrittleV1 {
                    title: format!("{title} {i}"),
                },
            )
            .unwrap();
        }
    });
    let docs = open::<BrittleV2>(&dir);
    let before = raw_history(&docs, "doc-1");
    let preview = docs.migrate().threads(2).dry_run().unwrap();
    let report = docs.migrate().threads(2).execute().unwrap();
    let mut expected = normalized(report.clone());
    expected.dry_run = true;
    assert_eq!(normalized(preview), expected);
    assert_eq!((report.scanned, report.migrated, report.failed), (9, 6, 3));
    assert_eq!(
        report.failures_by_class,
        BTreeMap::from([(FailureClass::Panic, 3)])
    );
    assert!(
        report.failures[0]
            .error
            .contains("panicked outside the steps")
            && report.failures[0].error.contains("in Serialize"),
        "{}",
        report.failures[0].error
    );
    assert_eq!(raw_history(&docs, "doc-1"), before);
    assert_eq!(
        docs.count_by_version().unwrap(),
        BTreeMap::from([(1, 3), (2, 6)])
    );
}

// ---- Cancel and resume. ----

fn cancel_then_resume_equals_an_uninterrupted_run<E: Engine>() {
    let interrupted = Fixture::new::<E>(3500, 3, false);
    let uninterrupted = Fixture::new::<E>(3500, 3, false);
    let candidates = interrupted.candidates();
    assert!(candidates > 2000);

    let token = CancelToken::new();
    let canceller = token.clone();
    let first = interrupted
        .items
        .migrate()
        .threads(2)
        .cancel_token(token.clone())
        .on_progress(move |_| canceller.cancel())
        .execute()
        .unwrap();
    assert!(token.is_cancelled());
    assert!(first.cancelled);
    assert_counts_add_up(&first);
    assert_eq!(first.scanned, 1000, "stops at the first chunk boundary");
    assert_eq!(first.remaining, candidates - 1000);
    assert_eq!(
        interrupted.items.pending().unwrap().migratable(),
        candidates - 1000
    );
    let record = interrupted
        .items
        .run(first.run_id.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RunState::Cancelled);
    assert_eq!(record.scanned, 1000);

    let second = interrupted.items.migrate().threads(2).execute().unwrap();
    assert!(!second.cancelled);
    assert_counts_add_up(&second);
    assert_eq!(
        second.scanned,
        candidates - 1000,
        "continues where it stopped"
    );
    assert_eq!(second.remaining, 0);

    let whole = uninterrupted.items.migrate().threads(2).execute().unwrap();
    assert_eq!(whole.scanned, candidates);
    assert_eq!(first.migrated + second.migrated, whole.migrated);
    assert_eq!(first.failed + second.failed, whole.failed);
    let mut failures = first.failures.clone();
    failures.extend(second.failures.iter().cloned());
    assert_eq!(failures, whole.failures);
    assert_eq!(interrupted.end_state(), uninterrupted.end_state());
}

fn a_run_cancelled_before_it_starts_takes_nothing<E: Engine>() {
    let fixture = Fixture::new::<E>(50, 0, false);
    let state = fixture.end_state();
    let migration = fixture.items.migrate();
    migration.canceller().cancel();
    let report = migration.execute().unwrap();
    assert!(report.cancelled);
    assert_eq!((report.scanned, report.migrated), (0, 0));
    assert_eq!(report.remaining, fixture.candidates());
    assert_eq!(fixture.end_state(), state);
    let record = fixture.items.run(report.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(record.state, RunState::Cancelled);
}

// ---- Concurrent writers. ----

#[allow(clippy::too_many_lines)] // One scenario, read top to bottom.
fn concurrent_writers_lose_no_update_during_a_migration<E: Engine>() {
    const N: u64 = 2000;
    let dir = E::place();
    let ids: Vec<String> = (0..N).map(|i| format!("doc-{i:05}")).collect();
    with_program::<ItemV1>(&dir, |items| {
        for (i, id) in (0..).zip(&ids) {
            items
                .insert_with_id(
                    id,
                    &ItemV1 {
                        title: format!("item {i}"),
                        n: i,
                    },
                )
                .unwrap();
        }
    });
    let items = open::<ItemV2>(&dir);
    // Every 10th document is updated twice with `update`, every 10th + 3 removed, every 10th + 5
    // updated once with `update_if` against the revision read before the migration; newest ids
    // first, so that some writes land before the migrator reaches their document and some after.
    let updated: Vec<&String> = ids.iter().step_by(10).rev().collect();
    let removed: Vec<&String> = ids.iter().skip(3).step_by(10).rev().collect();
    let conditional: Vec<&String> = ids.iter().skip(5).step_by(10).rev().collect();
    let barrier = Barrier::new(3);

    let (report, written) = thread::scope(|scope| {
        let migrator = scope.spawn(|| {
            barrier.wait();
            items.migrate().threads(2).execute().unwrap()
        });
        let writer = scope.spawn(|| {
            barrier.wait();
            let mut written = BTreeMap::new();
            for round in 0..2 {
                for (id, removed) in updated.iter().zip(&removed) {
                    let value = item_v2(&format!("update {round} of {id}"), round);
                    items.update(id, &value).unwrap();
                    written.insert((*id).clone(), value);
                    if round == 0 {
                        items.remove(removed).unwrap();
                    }
                }
            }
            written
        });
        let conditional_writer = scope.spawn(|| {
            barrier.wait();
            let mut written = BTreeMap::new();
            for id in &conditional {
                let value = item_v2(&format!("conditional update of {id}"), 7);
                // Only the migrator writes these documents besides this thread: its revision is
                // transparent to `update_if`.
                let revision = items.update_if(id, Revision::FIRST, &value).unwrap();
                assert!(
                    revision.get() == 2 || revision.get() == 3,
                    "{id}: {revision}"
                );
                written.insert((*id).clone(), value);
            }
            written
        });
        let report = migrator.join().unwrap();
        let mut written = writer.join().unwrap();
        written.extend(conditional_writer.join().unwrap());
        (report, written)
    });

    assert_counts_add_up(&report);
    let run = report.run_id.unwrap();
    assert_eq!(report.failed, 0);
    assert_eq!(report.remaining, 0);
    let mut migrated = 0;
    for (i, id) in (0..).zip(&ids) {
        let history = items.history(id).unwrap();
        let by_run = history
            .iter()
            .filter(|info| info.origin == Origin::Migration { run })
            .count();
        assert!(by_run <= 1, "{id}");
        // The migrator only writes over the version 1 revision it read.
        if by_run == 1 {
            assert_eq!(history[1].origin, Origin::Migration { run }, "{id}");
        }
        migrated += by_run as u64;
        let user_writes = match i % 10 {
            0 => 2,
            3 | 5 => 1,
            _ => 0,
        };
        assert_eq!(history.len(), 1 + user_writes + by_run, "{id}");
        if i % 10 == 3 {
            assert!(history.last().unwrap().removed, "{id}");
            assert!(items.get(id).unwrap().is_none(), "{id}");
            continue;
        }
        let doc = items.get(id).unwrap().unwrap();
        assert_eq!(doc.stored_version, 2);
        if user_writes == 0 {
            assert_eq!(by_run, 1, "{id} was written by nobody else");
            assert_eq!(doc.data.double, 2 * i);
        } else {
            // No lost update: the last write is the head.
            assert_eq!(doc.data, written[id], "{id}");
        }
    }
    assert_eq!(report.migrated, migrated);
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(2, N - N / 10)])
    );
    assert_eq!(items.removed_count().unwrap(), N / 10);
    assert!(items.pending().unwrap().by_version.is_empty());
}

// `gated`: the step of the document titled `gate` waits for the test to write that document, so
// the migrator's head re-check must skip it.

type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);
static GATE: Mutex<Option<Gate>> = Mutex::new(None);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "gated", version = 1)]
struct GatedV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "gated", version = 2, from = GatedV1)]
struct GatedV2 {
    title: String,
    by: String,
}

impl From<GatedV1> for GatedV2 {
    fn from(old: GatedV1) -> Self {
        if old.title == "gate" {
            if let Some((reached, go)) = GATE.lock().unwrap().as_ref() {
                reached.send(()).unwrap();
                go.recv().unwrap();
            }
        }
        GatedV2 {
            title: old.title,
            by: "step".to_owned(),
        }
    }
}

fn a_document_written_during_its_migration_is_skipped<E: Engine>() {
    let _state = step_state();
    let dir = E::place();
    with_program::<GatedV1>(&dir, |docs| {
        for i in 0..20 {
            let title = if i == 6 {
                "gate".to_owned()
            } else {
                format!("doc {i}")
            };
            docs.insert_with_id(&format!("doc-{i:02}"), &GatedV1 { title })
                .unwrap();
        }
    });
    let docs = open::<GatedV2>(&dir);
    let (reached_tx, reached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    *GATE.lock().unwrap() = Some((reached_tx, go_rx));
    let user = GatedV2 {
        title: "gate".to_owned(),
        by: "user".to_owned(),
    };

    let report = thread::scope(|scope| {
        let migrator = scope.spawn(|| docs.migrate().threads(2).execute().unwrap());
        // The migrator has read doc-06's head and is stepping it: write the document now.
        reached_rx.recv().unwrap();
        assert_eq!(docs.update("doc-06", &user).unwrap().get(), 2);
        go_tx.send(()).unwrap();
        migrator.join().unwrap()
    });
    GATE.lock().unwrap().take();

    assert_counts_add_up(&report);
    assert_eq!(
        (
            report.scanned,
            report.migrated,
            report.skipped,
            report.failed,
            report.remaining
        ),
        (20, 19, 1, 0, 0)
    );
    let history = docs.history("doc-06").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].origin, Origin::Write);
    assert_eq!(docs.get("doc-06").unwrap().unwrap().data, user);
    assert_eq!(docs.count_by_version().unwrap(), BTreeMap::from([(2, 20)]));
    assert_eq!(docs.migrate().execute().unwrap().run_id, None);
}

/// Documents written while a run is under way, ahead of where it has read, keep the write: once
/// anything else has written, the run re-reads every head it commits. (A stamp taken per chunk
/// missed heads that a storage iterator had copied before the write.)
fn writes_ahead_of_a_running_migration_are_kept<E: Engine>() {
    const DOCUMENTS: u64 = 3500;
    let dir = E::place();
    with_program::<ItemV1>(&dir, |items| {
        for n in 0..DOCUMENTS {
            let item = ItemV1 {
                title: format!("doc {n}"),
                n,
            };
            items.insert_with_id(&format!("d{n:05}"), &item).unwrap();
        }
    });
    let store = dir.open();
    let items = store.collection::<ItemV2>().unwrap();
    // After the first chunk, write every 7th document past it (some already read ahead, some
    // not), and remove every 11th.
    let writer = items.clone();
    let wrote = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&wrote);
    let report = items
        .migrate()
        .threads(2)
        .on_progress(move |progress| {
            if progress.done != 1000 {
                return;
            }
            let mut record = record.lock().unwrap();
            for n in 1000..DOCUMENTS {
                let id = format!("d{n:05}");
                if n % 11 == 0 {
                    writer.remove(&id).unwrap();
                    record.push((id, None));
                } else if n % 7 == 0 {
                    let value = item_v2("written", n);
                    writer.update(&id, &value).unwrap();
                    record.push((id, Some(value)));
                }
            }
        })
        .execute()
        .unwrap();
    assert_counts_add_up(&report);
    let wrote = wrote.lock().unwrap();
    assert!(wrote.len() > 300, "{}", wrote.len());
    for (id, value) in wrote.iter() {
        let document = items.get(id).unwrap();
        assert_eq!(document.map(|document| document.data), *value, "{id}");
        let history = items.history(id).unwrap();
        assert_eq!(history.len(), 2, "{id}: {history:?}");
        assert_eq!(history[1].origin, Origin::Write, "{id}");
    }
    let removed = wrote.iter().filter(|(_, value)| value.is_none()).count() as u64;
    assert_eq!(items.removed_count().unwrap(), removed);
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(2, DOCUMENTS - removed)])
    );
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
}

fn update_if_looks_through_migration_revisions_only<E: Engine>() {
    let dir = E::place();
    with_program::<ItemV1>(&dir, |items| {
        for id in ["migrated", "written-after", "written-before"] {
            items
                .insert_with_id(
                    id,
                    &ItemV1 {
                        title: id.to_owned(),
                        n: 1,
                    },
                )
                .unwrap();
        }
    });
    let items = open::<ItemV2>(&dir);
    let read = Revision::FIRST;
    items
        .update("written-before", &item_v2("before", 2))
        .unwrap();
    let report = items.migrate().execute().unwrap();
    assert_eq!((report.scanned, report.migrated), (2, 2));
    items.update("written-after", &item_v2("after", 3)).unwrap();

    // Only the migration came in between: the write goes through, on top of it.
    let value = item_v2("conditional", 4);
    assert_eq!(items.update_if("migrated", read, &value).unwrap().get(), 3);
    assert_eq!(items.get("migrated").unwrap().unwrap().data, value);

    // A user's write came in between, after or before the migration: a conflict.
    for (id, current) in [("written-after", 3), ("written-before", 2)] {
        let error = items.update_if(id, read, &value).unwrap_err();
        match error {
            StoreError::Conflict {
                expected,
                current: found,
                ..
            } => assert_eq!((expected, found.get()), (read, current), "{id}"),
            other => panic!("{id}: expected a conflict, got {other:?}"),
        }
        assert_eq!(history_len(&items, id), usize::try_from(current).unwrap());
    }
}

// ---- Revert. ----

static CORRECTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "revertible", version = 1)]
struct RevertibleV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "revertible", version = 2, from = RevertibleV1, step = revertible_v1_to_v2)]
struct RevertibleV2 {
    title: String,
    step: u32,
}

fn revertible_v1_to_v2(old: RevertibleV1) -> Result<RevertibleV2, StepError> {
    let corrected = CORRECTED.load(Ordering::SeqCst);
    if old.title == "fail" && !corrected {
        return Err(StepError::new("the first step cannot migrate `fail`"));
    }
    Ok(RevertibleV2 {
        title: old.title,
        step: if corrected { 2 } else { 1 },
    })
}

fn is_not_revertible(result: &Result<revolve::RevertReport, MigrationError>, run: u64) -> bool {
    matches!(result, Err(MigrationError::NotRevertible { run: r, .. }) if *r == run)
}

/// Twenty documents at version 1, `doc-07` failing the first step; with each one's stored bytes.
fn revertible(
    place: &impl Place,
) -> (
    Collection<RevertibleV2>,
    Vec<String>,
    BTreeMap<String, Vec<u8>>,
) {
    let ids: Vec<String> = (0..20).map(|i| format!("doc-{i:02}")).collect();
    with_program::<RevertibleV1>(place, |docs| {
        for (i, id) in ids.iter().enumerate() {
            let title = if i == 7 {
                "fail".to_owned()
            } else {
                format!("doc {i}")
            };
            docs.insert_with_id(id, &RevertibleV1 { title }).unwrap();
        }
    });
    let docs = open::<RevertibleV2>(place);
    let before = ids
        .iter()
        .map(|id| {
            let raw = docs.raw_revision(id, Revision::FIRST).unwrap().unwrap();
            (id.clone(), raw.bytes)
        })
        .collect();
    (docs, ids, before)
}

fn revert_restores_what_the_run_replaced<E: Engine>() {
    let _state = step_state();
    CORRECTED.store(false, Ordering::SeqCst);
    let dir = E::place();
    let (docs, ids, before) = revertible(&dir);
    let preview = docs.migrate().dry_run().unwrap().run_id.unwrap();
    let report = docs.migrate().execute().unwrap();
    let run = report.run_id.unwrap();
    assert_eq!((report.migrated, report.failed), (19, 1));
    // Changed since the run: one written, one removed.
    let user = RevertibleV2 {
        title: "user".to_owned(),
        step: 0,
    };
    docs.update("doc-03", &user).unwrap();
    docs.remove("doc-05").unwrap();

    let revert = docs.revert(run).unwrap();
    assert_eq!(revert.reverted_run, run);
    assert_eq!(revert.reverted, 17);
    let changed: Vec<&str> = revert.changed.iter().map(revolve::DocId::as_str).collect();
    assert_eq!(changed, ["doc-03", "doc-05"]);

    for id in &ids {
        let history = docs.history(id).unwrap();
        match id.as_str() {
            "doc-03" => {
                assert_eq!(history.len(), 3);
                assert_eq!(history[2].origin, Origin::Write);
                assert_eq!(docs.get(id).unwrap().unwrap().data, user);
            }
            "doc-05" => {
                assert_eq!(history.len(), 3);
                assert!(history[2].removed);
                assert!(docs.get(id).unwrap().is_none());
            }
            "doc-07" => assert_eq!(history.len(), 1, "the failed document is untouched"),
            _ => {
                assert_eq!(history.len(), 3, "{id}");
                let head = &history[2];
                assert_eq!(head.origin, Origin::Revert { run }, "{id}");
                assert_eq!(head.version, Some(1));
                let raw = docs.raw_revision(id, head.revision).unwrap().unwrap();
                assert_eq!(raw.bytes, before[id], "{id}: not the content from before");
                let doc = docs.get(id).unwrap().unwrap();
                assert_eq!((doc.stored_version, doc.data.step), (1, 1));
            }
        }
    }
    let pending = docs.pending().unwrap();
    let at_v1 = pending.by_version[&1];
    assert_eq!((at_v1.migratable, at_v1.failed), (17, 1));
    assert_eq!(
        docs.count_by_version().unwrap(),
        BTreeMap::from([(1, 18), (2, 1)])
    );

    // The ledger: the run is reverted, the revert is a run of its own, newest first.
    let record = docs.run(run).unwrap().unwrap();
    assert_eq!(record.state, RunState::Reverted);
    assert_eq!(record.reverted_by, Some(revert.run_id));
    let runs = docs.runs().unwrap();
    assert_eq!(runs[0].id, revert.run_id);
    assert_eq!(runs[0].kind, RunKind::Revert { of: run });
    assert_eq!(runs[0].migrated, 17);

    // What cannot be reverted says why, typed.
    assert!(is_not_revertible(&docs.revert(run), run));
    assert!(is_not_revertible(
        &docs.revert(revert.run_id),
        revert.run_id
    ));
    assert!(is_not_revertible(&docs.revert(preview), preview));
    let unknown = revert.run_id + 1_000_000;
    assert!(matches!(
        docs.revert(unknown),
        Err(MigrationError::UnknownRun { run, .. }) if run == unknown
    ));

    // A corrected step migrates them anew; the failed one on a retry.
    CORRECTED.store(true, Ordering::SeqCst);
    let again = docs.migrate().execute().unwrap();
    assert_eq!(
        (again.scanned, again.migrated, again.remaining),
        (17, 17, 0)
    );
    let retry = docs.migrate().retry_failed().execute().unwrap();
    assert_eq!((retry.scanned, retry.migrated), (1, 1));
    for id in ids
        .iter()
        .filter(|id| !["doc-03", "doc-05"].contains(&id.as_str()))
    {
        let doc = docs.get(id).unwrap().unwrap();
        assert_eq!((doc.stored_version, doc.data.step), (2, 2), "{id}");
    }
    assert_eq!(history_len(&docs, "doc-00"), 4);
    assert_eq!(history_len(&docs, "doc-07"), 2);
    // `update_if` looks through migrations and reverts alike.
    let value = RevertibleV2 {
        title: "last".to_owned(),
        step: 9,
    };
    assert_eq!(
        docs.update_if("doc-00", Revision::FIRST, &value)
            .unwrap()
            .get(),
        5
    );
}

// ---- One run at a time. ----

fn a_second_run_on_a_collection_is_refused_while_one_is_under_way<E: Engine>() {
    let fixture = Fixture::new::<E>(1500, 0, false);
    let items = &fixture.items;
    let earlier = items.migrate().limit(10).execute().unwrap().run_id.unwrap();
    assert!(fixture.candidates() > 1000);

    let under_way = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (report, refused) = thread::scope(|scope| {
        let first = scope.spawn(|| {
            let (under_way, release) = (Arc::clone(&under_way), Arc::clone(&release));
            let mut first_chunk = true;
            items
                .migrate()
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
        let running = items.runs().unwrap()[0].clone();
        assert_eq!(running.state, RunState::Running);
        let refused = [
            items.migrate().execute().map(drop),
            items.migrate().dry_run().map(drop),
            items.revert(earlier).map(drop),
        ];
        release.wait();
        let report = first.join().unwrap();
        assert_eq!(report.run_id, Some(running.id));
        (report, refused.map(|result| (result, running.id)))
    });
    for (result, running) in refused {
        match result {
            Err(MigrationError::RunInProgress { collection, run }) => {
                assert_eq!((collection.as_str(), run), ("items", running));
            }
            other => panic!("expected RunInProgress, got {other:?}"),
        }
    }
    assert_eq!(report.remaining, 0);
    let record = items.run(report.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(record.state, RunState::Done);
    // The refused attempts left the collection free.
    assert!(items.revert(earlier).is_ok());
}

// ---- The ledger. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "items_b", version = 1)]
struct OtherV1 {
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "items_b", version = 2, from = OtherV1)]
struct OtherV2 {
    text: String,
    length: usize,
}

impl From<OtherV1> for OtherV2 {
    fn from(old: OtherV1) -> Self {
        OtherV2 {
            length: old.text.len(),
            text: old.text,
        }
    }
}

fn the_ledger_lists_runs_newest_first_in_pages<E: Engine>() {
    let dir = E::place();
    with_program::<ItemV1>(&dir, |items| {
        for i in 0..10 {
            let title = if i == 5 {
                "fail five".to_owned()
            } else {
                format!("item {i}")
            };
            items
                .insert_with_id(&format!("doc-{i}"), &ItemV1 { title, n: i })
                .unwrap();
        }
    });
    with_program::<OtherV1>(&dir, |others| {
        others
            .insert_with_id(
                "other",
                &OtherV1 {
                    text: "x".to_owned(),
                },
            )
            .unwrap();
    });
    let store = dir.open();
    let items = store.collection::<ItemV2>().unwrap();
    let others = store.collection::<OtherV2>().unwrap();

    let mut reports = vec![items.migrate().limit(3).dry_run().unwrap()];
    let other_run = others.migrate().execute().unwrap().run_id.unwrap();
    reports.extend((0..4).map(|_| items.migrate().limit(3).execute().unwrap()));
    assert_eq!(items.migrate().limit(3).execute().unwrap().run_id, None);

    let runs = items.runs().unwrap();
    assert_eq!(runs.len(), 5);
    assert!(runs.windows(2).all(|pair| pair[0].id > pair[1].id));
    assert!(runs.iter().all(|record| record.id != other_run));
    for (record, report) in runs.iter().rev().zip(&reports) {
        assert_eq!(Some(record.id), report.run_id);
        assert_eq!(record.collection, "items");
        assert_eq!(record.kind, RunKind::Migration);
        assert_eq!(record.dry_run, report.dry_run);
        assert_eq!(record.limit, Some(3));
        assert!(!record.retry_failed);
        assert_eq!(
            (record.from_versions.as_slice(), record.to_version),
            ([1].as_slice(), 2)
        );
        assert_eq!(
            (
                record.scanned,
                record.migrated,
                record.failed,
                record.skipped
            ),
            (
                report.scanned,
                report.migrated,
                report.failed,
                report.skipped
            )
        );
        assert_eq!(record.failures, report.failures);
        assert_eq!(record.failures_by_class, report.failures_by_class);
        assert_eq!(record.schema_fingerprint, Some(items.schema_fingerprint()));
        let expected = if report.failed > 0 {
            RunState::DoneWithFailures
        } else {
            RunState::Done
        };
        assert_eq!(record.state, expected);
        assert!(record.finished.unwrap() >= record.started);
        assert_eq!(record.reverted_by, None);
        assert_eq!(items.run(record.id).unwrap().as_ref(), Some(record));
    }

    // Pages of two, each older than the last one seen.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = items.runs_page(before, 2).unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, runs);
    assert_eq!(items.runs_page(Some(runs[1].id), 100).unwrap(), runs[2..]);
    assert_eq!(items.runs_page(None, 0).unwrap(), []);

    assert_eq!(items.run(other_run).unwrap(), None);
    assert_eq!(others.runs().unwrap().len(), 1);
    assert_eq!(
        others.run(other_run).unwrap().unwrap().collection,
        "items_b"
    );
    assert_eq!(items.run(runs[0].id + 1_000_000).unwrap(), None);
}

// ---- Throttle and progress. ----

fn max_rate_throttles_the_run<E: Engine>() {
    let dir = E::place();
    with_program::<ItemV1>(&dir, |items| {
        let docs: Vec<ItemV1> = (0..1000)
            .map(|n| ItemV1 {
                title: format!("item {n}"),
                n,
            })
            .collect();
        items.insert_many(&docs).unwrap();
    });
    let items = open::<ItemV2>(&dir);
    let started = Instant::now();
    let report = items.migrate().max_rate(2000).execute().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.migrated, 1000);
    // 1000 documents at 2000 per second: half a second at least (a lower bound, not a benchmark).
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(report.elapsed >= Duration::from_millis(400), "{report:?}");
}

fn progress_is_reported_after_every_chunk<E: Engine>() {
    let fixture = Fixture::new::<E>(2800, 4, false);
    assert!(fixture.candidates() > 2200);
    for dry_run in [true, false] {
        let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
        let sink = Arc::clone(&seen);
        let migration = fixture
            .items
            .migrate()
            .limit(2200)
            .on_progress(move |progress| sink.lock().unwrap().push(*progress));
        let report = if dry_run {
            migration.dry_run()
        } else {
            migration.execute()
        }
        .unwrap();
        let seen = seen.lock().unwrap();
        let done: Vec<u64> = seen.iter().map(|progress| progress.done).collect();
        assert_eq!(done, [1000, 2000, 2200], "dry run: {dry_run}");
        for (earlier, later) in seen.iter().zip(seen.iter().skip(1)) {
            assert!(later.elapsed >= earlier.elapsed);
            assert!(later.failed >= earlier.failed && later.migrated >= earlier.migrated);
        }
        for progress in seen.iter() {
            assert_eq!(progress.total, 2200);
            assert_eq!(
                progress.migrated + progress.failed + progress.skipped,
                progress.done
            );
            assert!(progress.rate > 0.0);
        }
        let last = seen.last().unwrap();
        assert_eq!(last.done, report.scanned);
        assert_eq!(
            (last.migrated, last.failed, last.skipped),
            (report.migrated, report.failed, report.skipped)
        );
        assert!(report.failed > 0);
    }
}

engine_tests! {
    limited_runs_converge_to_one_unlimited_run,
    limit_three_over_ten_documents_with_one_failure,
    limited_retries_advance_past_documents_that_keep_failing,
    one_thread_and_four_threads_agree,
    rerunning_a_finished_migration_writes_nothing,
    migration_appends_revisions_and_agrees_with_lazy_reads,
    dry_run_reports_what_execute_does_and_writes_nothing,
    failing_and_panicking_steps_fail_only_their_documents,
    reports_list_the_first_failures_and_count_them_all,
    an_output_that_does_not_decode_back_is_an_isolated_failure,
    a_panic_outside_the_steps_fails_only_its_document,
    cancel_then_resume_equals_an_uninterrupted_run,
    a_run_cancelled_before_it_starts_takes_nothing,
    concurrent_writers_lose_no_update_during_a_migration,
    a_document_written_during_its_migration_is_skipped,
    writes_ahead_of_a_running_migration_are_kept,
    update_if_looks_through_migration_revisions_only,
    revert_restores_what_the_run_replaced,
    a_second_run_on_a_collection_is_refused_while_one_is_under_way,
    the_ledger_lists_runs_newest_first_in_pages,
    max_rate_throttles_the_run,
    progress_is_reported_after_every_chunk,
}
