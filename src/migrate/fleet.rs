//! A run with many workers, on an engine shared by several processes ([`Migration::join`]).
//!
//! Each worker, in its own process or thread, loops: reserve a chunk of the run's limit, claim
//! and commit a chunk (the engine claims, this module's closure decodes, steps, validates and
//! encodes on the worker's pool, the engine writes and commits, in one transaction), count it.
//! A worker that finds nothing to claim marks itself idle and waits while any peer still works
//! (a peer's claimed documents are committed by it, or released when it dies); once none works,
//! it claims from the start again, as a peer that died mid-chunk leaves documents pending, and
//! leaves when nothing is left. The last worker to leave records the run's end in the ledger.

use std::time::{Duration, Instant};

use super::executor::{self, Tally};
use super::join;
use super::ledger::{self, RunProgress, RunState};
use super::{Join, Migration, MigrationError, MigrationReport, Progress, CHUNK_SIZE};
use crate::schema::Schema;
use crate::store::{
    Claimed, Ending, Joined, Left, PendingDocument, Process, RunSettings, Worker, WorkerInfo,
};

/// How often a joiner looks again whether a run it cannot join has ended, and the longest an
/// idle worker waits before it looks again whether its peers still work.
const POLL: Duration = Duration::from_millis(200);

/// How long an idle worker first waits before it looks again whether its peers still work; each
/// look that finds them working doubles it, up to [`POLL`]. Short at first, so that the workers of
/// a run that ends return together instead of one sleeping on after its peer's last chunk.
const FIRST_IDLE_POLL: Duration = Duration::from_millis(2);

/// Runs `migration` as a worker of the collection's joined run, when the engine has them;
/// `None` otherwise.
pub(super) fn run<T: Schema>(
    migration: &mut Migration<T>,
    started: Instant,
) -> Result<Option<MigrationReport>, MigrationError> {
    let collection = migration.collection.clone();
    collection.check_writable()?;
    let settings = RunSettings {
        target: T::VERSION,
        fingerprint: collection.schema_fingerprint(),
        limit: migration.limit,
        retry_failed: migration.retry_failed,
    };
    let info = worker_info(migration.worker_name.as_deref());
    loop {
        let pending = pending(migration)?;
        if pending == 0 {
            // As a run of one process: nothing to take, no run recorded.
            return Ok(None);
        }
        let run_id = collection.store().next_run_id()?;
        match collection.join_run(run_id, &settings, &info)? {
            None => return Ok(None),
            Some(Joined::Other {
                run,
                settings: theirs,
            }) => {
                join::compare(migration, run, &theirs, &settings.fingerprint)?;
                // Only the settings compared can differ; should they not, the run is refused
                // all the same, naming its fingerprint.
                return Err(MigrationError::RunInProgress {
                    collection: collection.name().to_owned(),
                    run,
                });
            }
            Some(Joined::Busy(run)) => {
                // A run of one process (or a revert): waited for, as on an engine without
                // joined runs, or left to the caller to wait for.
                if run != 0 && migration.join == Join::Shared {
                    return Err(MigrationError::RunInProgress {
                        collection: collection.name().to_owned(),
                        run,
                    });
                }
                if run != 0 {
                    join::check(migration, run)?;
                }
                if migration.cancel.is_cancelled() {
                    return Ok(Some(
                        Tally::default().into_report::<T>(None, false, pending, started, true),
                    ));
                }
                std::thread::sleep(POLL);
            }
            Some(Joined::Worker { worker, first }) => {
                return work(migration, worker, first, pending, started).map(Some);
            }
        }
    }
}

/// The documents a run would take, from the counters.
fn pending<T: Schema>(migration: &Migration<T>) -> Result<u64, MigrationError> {
    Ok(migration
        .collection
        .counters()?
        .candidates(T::VERSION, migration.retry_failed))
}

/// Who this worker is, for the ledger.
fn worker_info(name: Option<&str>) -> WorkerInfo {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|host| host.trim().to_owned())
        .ok()
        .filter(|host| !host.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let pid = std::process::id();
    WorkerInfo {
        instance: name.map_or_else(|| format!("{host}:{pid}"), str::to_owned),
        host,
        pid,
    }
}

fn work<T: Schema>(
    migration: &mut Migration<T>,
    mut worker: Box<dyn Worker + '_>,
    first: bool,
    pending: u64,
    started: Instant,
) -> Result<MigrationReport, MigrationError> {
    let collection = migration.collection.clone();
    let run = worker.run();
    migration.started(run);
    // What this worker's progress counts against: what was pending as it joined, and no more
    // than what the run's limit left (its progress counts the run's chunks since it joined).
    let total = migration.limit.map_or(pending, |limit| {
        limit.saturating_sub(worker.taken_before()).min(pending)
    });
    // The first worker records the run; should that fail, it still leaves (below), so that its
    // peers do not wait for it.
    let mut result = if first {
        record_start(migration, run)
    } else {
        Ok(())
    };
    tracing::info!(
        collection = collection.name(),
        run,
        first,
        "migration worker joined the run"
    );
    let mut tally = Tally::default();
    let mut cancelled = false;
    let (ending, left) = loop {
        if result.is_ok() {
            result = chunks(
                migration,
                &mut *worker,
                &mut tally,
                &mut cancelled,
                total,
                started,
            );
        }
        let ending = match (&result, cancelled) {
            (Err(_), _) => Ending::Failed,
            (Ok(()), true) => Ending::Cancelled,
            (Ok(()), false) => Ending::Done,
        };
        match worker.leave(ending) {
            // The last but for a peer's open chunk: wait for it, then claim what it left.
            Ok(Left::Busy) => std::thread::sleep(POLL),
            left => break (ending, left),
        }
    };
    let finished = if matches!(left, Ok(Left::Last)) {
        let state = match ending {
            Ending::Done => RunState::Done,
            Ending::Cancelled => RunState::Cancelled,
            Ending::Failed => RunState::Interrupted,
        };
        ledger::finish_joined(&collection, run, state, || {
            executor::new_record(migration, run, false)
        })
        .map(drop)
    } else {
        Ok(())
    };
    // The run's lease goes only once the ledger has its final record.
    let released = worker.release();
    if let Err(error) = result {
        if let Err(finishing) = finished {
            tracing::warn!(
                collection = collection.name(),
                run,
                error = %finishing,
                "cannot record the end of the run its failed worker ended"
            );
        }
        return Err(error);
    }
    left?;
    finished?;
    released?;
    let remaining = collection.counters()?.migratable(T::VERSION);
    Ok(tally.into_report::<T>(Some(run), false, remaining, started, cancelled))
}

/// The ledger record of a run its first worker starts, saved (flushed) before it claims.
fn record_start<T: Schema>(migration: &Migration<T>, run: u64) -> Result<(), MigrationError> {
    let collection = &migration.collection;
    ledger::settle(collection)?;
    let mut record = executor::new_record(migration, run, false);
    record.from_versions = collection
        .counters()?
        .live()
        .into_keys()
        .filter(|&v| v < T::VERSION)
        .collect();
    ledger::save(collection, &record, true)
}

/// The worker's loop, until nothing is left to claim, the run is cancelled or an error.
fn chunks<T: Schema>(
    migration: &mut Migration<T>,
    worker: &mut dyn Worker,
    tally: &mut Tally,
    cancelled: &mut bool,
    total: u64,
    started: Instant,
) -> Result<(), MigrationError> {
    let run = worker.run();
    let processor = executor::Processor::new(migration, run)?;
    let mut process = |documents: Vec<PendingDocument>| processor.chunk::<T>(documents);
    let mut idle = false;
    let mut idle_wait = FIRST_IDLE_POLL;
    loop {
        if migration.cancel.is_cancelled() {
            if migration.join == Join::Shared {
                // A startup migration's token: this instance stops (it shuts down), the run
                // goes on with the others.
                *cancelled = true;
                return Ok(());
            }
            worker.cancel()?;
        }
        if worker.cancelled()? {
            *cancelled = true;
            return Ok(());
        }
        let chunk = if let Some(chunk) = claim_next::<T>(worker, &mut process)? {
            chunk
        } else {
            if !idle {
                worker.idle(true)?;
                idle = true;
            }
            if worker.peers_working()? {
                back_off(&mut idle_wait);
                continue;
            }
            // No peer works: what one that died left pending is claimed from the start.
            worker.rewind()?;
            match claim_next::<T>(worker, &mut process)? {
                Some(chunk) => chunk,
                // A peer claimed what was left meanwhile: it is waited for, should it die.
                None if worker.peers_working()? => {
                    back_off(&mut idle_wait);
                    continue;
                }
                None => return Ok(()),
            }
        };
        if idle {
            worker.idle(false)?;
            idle = false;
            idle_wait = FIRST_IDLE_POLL;
        }
        account(migration, tally, &chunk, run, total, started)?;
    }
}

/// The next chunk: a share of the run's limit reserved, then claimed and committed; `None` when
/// the limit is reserved or nothing is left to claim.
fn claim_next<T: Schema>(
    worker: &mut dyn Worker,
    process: &mut Process<'_>,
) -> Result<Option<Claimed>, MigrationError> {
    let room = worker.reserve(CHUNK_SIZE)?;
    if room == 0 {
        return Ok(None);
    }
    Ok(worker.claim(room, T::VERSION, process)?)
}

/// An idle worker's wait before it looks at its peers again, doubled for the next, up to
/// [`POLL`].
fn back_off(idle_wait: &mut Duration) {
    std::thread::sleep(*idle_wait);
    *idle_wait = (*idle_wait * 2).min(POLL);
}

/// Counts a committed chunk, reports progress and keeps to the rate. Progress and the rate are
/// the run's (all its workers, since this one joined), so that each instance's progress bar
/// shows the run's, and `max_rate` holds for the run as a whole, not per worker.
fn account<T: Schema>(
    migration: &mut Migration<T>,
    tally: &mut Tally,
    chunk: &Claimed,
    run: u64,
    total: u64,
    started: Instant,
) -> Result<(), MigrationError> {
    let classes = RunProgress::classes(migration.collection.name(), &chunk.items)?;
    let (_, next) = executor::count(&tally.counts, &chunk.items, &chunk.outcomes, &classes);
    tally.counts = next;
    tally.chunk_outcomes(&chunk.items, &chunk.outcomes, &chunk.known_failed, &classes);
    let counts = &chunk.run;
    let elapsed = started.elapsed();
    if let Some(callback) = migration.on_progress.as_mut() {
        #[allow(clippy::cast_precision_loss)] // a rate, not a count
        let rate = counts.taken as f64 / elapsed.as_secs_f64().max(1e-9);
        callback(&Progress {
            run_id: run,
            done: counts.taken,
            total,
            migrated: counts.migrated,
            failed: counts.failed,
            skipped: counts.skipped,
            rate,
            elapsed,
        });
    }
    if let Some(rate) = migration.max_rate {
        #[allow(clippy::cast_precision_loss)] // a schedule, not a count
        let due = Duration::from_secs_f64(counts.taken as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}
