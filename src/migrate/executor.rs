//! The migration pipeline.
//!
//! ```text
//! calling thread:  read the next chunk: heads from the cursor and their revisions, in one
//!                  forward pass ─▶ channel (a chunk ahead of the commit)
//! process thread:  rayon: decode, step, validate, encode; then batch the new revisions and
//!                  heads ─▶ channel
//! calling thread:  commit the chunk (counters, failures and cursor added to the prepared batch:
//!                  one atomic batch under the write lock; heads re-checked if anything else
//!                  wrote meanwhile) ─▶ flush ─▶ progress ─▶ ledger ─▶ read the next chunk
//! ```
//!
//! sled runs every read and every batch under one process-wide lock, and applies batches one at a
//! time. So one thread does all the reads and commits, as a plain loop over the store would, and
//! the pool does the rest of the work, off that thread, a chunk ahead.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use rayon::prelude::*;

use super::ledger::{self, RunKind, RunProgress, RunRecord, RunState};
use super::log::{self, chain};
use super::{
    Failure, FailureClass, Migration, MigrationError, MigrationReport, Progress, CHUNK_SIZE,
    MAX_REPORTED_FAILURES,
};
use crate::id::DocId;
use crate::record::{self, Kind, Origin};
use crate::schema::{self, Schema, Validator};
use crate::store::{
    Action, ChunkItem, Collection, Commit, EncodedRevision, FailureRecord, Outcome, PendingChunk,
    PendingDocument, Position, Prepared, ProgressRecord, Seen, StoreError,
};

/// A chunk after the rayon stage: what to commit for each document, and what its pending chunk
/// said.
struct Chunk {
    items: Vec<ChunkItem>,
    /// Whether each item's document had a failure recorded before (taken with `retry_failed`).
    known_failed: Vec<bool>,
    /// The engine's work done ahead for the commit; none for a dry run.
    prepared: Option<Prepared>,
    position: Position,
    stamp: crate::store::engine::Stamp,
}

#[derive(Default)]
pub(super) struct Tally {
    /// The counts, as the progress record of the last committed chunk holds them.
    pub(super) counts: RunProgress,
    /// Candidates that were not known failures and were migrated or failed: what a real run would
    /// take off the migratable count.
    pub(super) settled_fresh: u64,
    pub(super) failures: Vec<Failure>,
}

pub(super) fn run<T: Schema>(
    mut migration: Migration<T>,
    dry_run: bool,
) -> Result<MigrationReport, MigrationError> {
    if migration.join != super::Join::No {
        return super::join::run(&mut migration, dry_run);
    }
    run_once(&mut migration, dry_run)
}

/// One run of this process, or [`MigrationError::RunInProgress`].
pub(super) fn run_once<T: Schema>(
    migration: &mut Migration<T>,
    dry_run: bool,
) -> Result<MigrationReport, MigrationError> {
    let started = Instant::now();
    let collection = migration.collection.clone();
    collection.check_writable()?;
    let counters = collection.counters()?;
    let migratable = counters.migratable(T::VERSION);
    let pending = counters.candidates(T::VERSION, migration.retry_failed);
    let total = migration.limit.map_or(pending, |limit| limit.min(pending));
    if total == 0 {
        // Known from the counters: nothing to take, whatever the collection's size.
        return Ok(Tally::default().into_report::<T>(None, dry_run, migratable, started, false));
    }

    let run_id = collection.store().next_run_id()?;
    let _guard = collection
        .start_run(run_id)?
        .map_err(|run| MigrationError::RunInProgress {
            collection: collection.name().to_owned(),
            run,
        })?;
    migration.started(run_id);
    // A run that stopped is brought up to what is on disk before this one writes anything.
    ledger::settle(&collection)?;
    let mut record = new_record(migration, run_id, dry_run);
    let from: Vec<u32> = counters
        .live()
        .into_keys()
        .filter(|&v| v < T::VERSION)
        .collect();
    let span = log::run_span(&record, &from);
    let _entered = span.enter();
    ledger::save(&collection, &record, true)?;
    log::run_started(total);

    let result = pipeline(
        &collection,
        migration,
        dry_run,
        run_id,
        total,
        &mut record,
        started,
    );
    let (tally, cancelled) = match result {
        Ok(done) => done,
        Err(error) => {
            // Every chunk committed before the error stays; the record says the run stopped.
            let _ = ledger::stopped(&collection, &mut record);
            log::run_stopped(&span, &record, &error);
            return Err(error);
        }
    };

    let remaining = if dry_run {
        migratable.saturating_sub(tally.settled_fresh)
    } else {
        collection.counters()?.migratable(T::VERSION)
    };
    record.state = if cancelled {
        RunState::Cancelled
    } else if tally.counts.failed > 0 {
        RunState::DoneWithFailures
    } else {
        RunState::Done
    };
    record.finished = Some(SystemTime::now());
    fill_record(&mut record, &tally);
    ledger::finish(&collection, &record)?;
    log::run_finished(&span, &record, remaining, started.elapsed());

    Ok(tally.into_report::<T>(Some(run_id), dry_run, remaining, started, cancelled))
}

/// The ledger record of a run starting.
pub(super) fn new_record<T: Schema>(
    migration: &Migration<T>,
    run_id: u64,
    dry_run: bool,
) -> RunRecord {
    let collection = &migration.collection;
    let mut record = RunRecord::new(run_id, collection.name(), RunKind::Migration, T::VERSION);
    record.limit = migration.limit;
    record.schema_fingerprint = Some(collection.schema_fingerprint());
    record.dry_run = dry_run;
    record.retry_failed = migration.retry_failed;
    record
}

fn fill_record(record: &mut RunRecord, tally: &Tally) {
    tally.counts.fill(record);
    record.failures.clone_from(&tally.failures);
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn pipeline<T: Schema>(
    collection: &Collection<T>,
    migration: &mut Migration<T>,
    dry_run: bool,
    run_id: u64,
    total: u64,
    record: &mut RunRecord,
    started: Instant,
) -> Result<(Tally, bool), MigrationError> {
    let threads = migration.threads;
    let processor = Processor::new(migration, run_id)?;
    let mut scan = Scan {
        pending: collection.pending_documents(migration.retry_failed)?,
        taken: 0,
        total,
    };
    std::thread::scope(|scope| {
        // Made inside the scope, so that should this closure unwind (a progress callback that
        // panics, say), dropping them ends the processing thread, and the scope's join returns.
        let (scanned_tx, scanned_rx) = sync_channel::<PendingChunk>(AHEAD);
        let (processed_tx, processed_rx) = sync_channel::<Chunk>(AHEAD);
        let processor = &processor;
        let processor = std::thread::Builder::new()
            .name("revolve-process".to_owned())
            .spawn_scoped(scope, move || {
                for chunk in scanned_rx {
                    let PendingChunk {
                        documents,
                        position,
                        stamp,
                    } = chunk;
                    let (items, known_failed) = processor.chunk::<T>(documents);
                    let prepared = if dry_run {
                        None
                    } else {
                        collection.prepare_chunk(&items)
                    };
                    if processed_tx
                        .send(Chunk {
                            items,
                            known_failed,
                            prepared,
                            position,
                            stamp,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(|error| MigrationError::Threads {
                threads: threads + 1,
                message: format!("the processing thread: {error}"),
            })?;
        let mut committer = Committer {
            collection,
            dry_run,
            run_id,
            total,
            migration,
            record,
            tally: Tally::default(),
            started,
            chunks: 0,
        };
        let result = drive(&mut scan, &scanned_tx, &processed_rx, &mut committer);
        // The processing thread ends once either channel is closed. Panics are caught per
        // document, so it cannot stop early; should it ever, the run is an error, never a quietly
        // short one.
        drop(scanned_tx);
        drop(processed_rx);
        if let Err(panic) = processor.join() {
            std::panic::resume_unwind(panic);
        }
        match result? {
            End::Exhausted => Ok((committer.tally, false)),
            End::Cancelled => Ok((committer.tally, true)),
            End::ProcessorStopped => Err(MigrationError::Threads {
                threads: threads + 1,
                message: "the processing thread stopped before the run".to_owned(),
            }),
        }
    })
}

/// Keeps [`AHEAD`] chunks in flight (the one being committed and the next, read and on the pool),
/// and commits what comes back, in order, on this thread.
///
/// sled runs reads and batches under one process-wide lock: a read waits while a batch is being
/// applied. So the reads are done here, between two commits, in one forward pass over the heads and
/// the revisions, while the pool decodes, steps, validates and encodes the chunks read before.
fn drive<T: Schema>(
    scan: &mut Scan<'_>,
    scanned_tx: &SyncSender<PendingChunk>,
    processed_rx: &Receiver<Chunk>,
    committer: &mut Committer<'_, T>,
) -> Result<End, MigrationError> {
    let mut in_flight = 0;
    let mut exhausted = false;
    loop {
        while in_flight < AHEAD && !exhausted {
            if committer.migration.cancel.is_cancelled() {
                return Ok(End::Cancelled);
            }
            match scan.next_chunk()? {
                Some(chunk) => {
                    if scanned_tx.send(chunk).is_err() {
                        return Ok(End::ProcessorStopped);
                    }
                    in_flight += 1;
                }
                None => exhausted = true,
            }
        }
        if in_flight == 0 {
            return Ok(End::Exhausted);
        }
        let Ok(chunk) = processed_rx.recv() else {
            return Ok(End::ProcessorStopped);
        };
        in_flight -= 1;
        if committer.migration.cancel.is_cancelled() {
            return Ok(End::Cancelled);
        }
        committer.commit(chunk)?;
    }
}

/// How many chunks are in flight: read, on the pool, or waiting to be committed.
const AHEAD: usize = 2;

/// How [`drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every candidate was committed.
    Exhausted,
    /// The cancel token was set.
    Cancelled,
    /// The processing thread stopped before the run did.
    ProcessorStopped,
}

/// The pending documents a run takes, up to its total.
struct Scan<'a> {
    pending: Box<dyn crate::store::engine::Pending + 'a>,
    taken: u64,
    total: u64,
}

impl Scan<'_> {
    fn next_chunk(&mut self) -> Result<Option<PendingChunk>, StoreError> {
        let room = usize::try_from(self.total.saturating_sub(self.taken)).unwrap_or(usize::MAX);
        if room == 0 {
            return Ok(None);
        }
        let chunk = self.pending.next_chunk(CHUNK_SIZE.min(room))?;
        if let Some(chunk) = &chunk {
            self.taken += chunk.documents.len() as u64;
        }
        Ok(chunk)
    }
}

/// What processes a run's chunks: its rayon pool (`threads` of them), and what each document is
/// checked against.
pub(super) struct Processor {
    pool: rayon::ThreadPool,
    max_depth: usize,
    /// The latest version's canonical JSON Schema, compiled, when outputs are validated.
    target_schema: Option<Validator>,
    run: u64,
}

impl Processor {
    /// The processor of `migration`'s run `run`.
    pub(super) fn new<T: Schema>(
        migration: &Migration<T>,
        run: u64,
    ) -> Result<Self, MigrationError> {
        let threads = migration.threads;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("revolve-migrate-{i}"))
            .build()
            .map_err(|error| MigrationError::Threads {
                threads,
                message: error.to_string(),
            })?;
        let collection = &migration.collection;
        Ok(Self {
            pool,
            max_depth: collection.max_depth(),
            target_schema: migration
                .validate_output
                .then(|| Validator::new(&schema::canonical_schema(&collection.schema()))),
            run,
        })
    }

    /// Each candidate of a chunk processed on the pool: its item, and whether a failure record
    /// named it.
    pub(super) fn chunk<T: Schema>(
        &self,
        documents: Vec<PendingDocument>,
    ) -> (Vec<ChunkItem>, Vec<bool>) {
        let target_schema = self.target_schema.as_ref();
        self.pool.install(|| {
            documents
                .into_par_iter()
                .map(|candidate| process::<T>(self.max_depth, candidate, self.run, target_schema))
                .unzip()
        })
    }
}

/// Decodes, steps, validates and encodes one candidate.
fn process<T: Schema>(
    max_depth: usize,
    candidate: PendingDocument,
    run_id: u64,
    target_schema: Option<&Validator>,
) -> (ChunkItem, bool) {
    let PendingDocument {
        id,
        head,
        bytes,
        known_failed,
    } = candidate;
    let converted = match bytes {
        // Steps' panics are caught where they run; this catches any other (a `Serialize` or
        // `Deserialize` implementation, say), so that it too fails only its document.
        Some(bytes) => std::panic::catch_unwind(AssertUnwindSafe(|| {
            convert::<T>(&bytes, max_depth, target_schema)
        }))
        .unwrap_or_else(|panic| {
            Err((
                FailureClass::Panic,
                format!(
                    "panicked outside the steps: {}",
                    schema::panic_message(panic.as_ref())
                ),
            ))
        }),
        None => Err((
            FailureClass::Decode,
            format!("revision {} named by the head is missing", head.revision),
        )),
    };
    let action = match converted {
        Ok(payload) => Action::Write(EncodedRevision::new(
            Some(head),
            T::VERSION,
            Origin::Migration { run: run_id },
            &payload,
        )),
        Err((class, error)) => Action::Fail(FailureRecord {
            revision: head.revision.get(),
            version: head.version,
            class: class.as_str().to_owned(),
            error,
            run: run_id,
        }),
    };
    (
        ChunkItem {
            id,
            seen: Seen::Head(head),
            action,
        },
        known_failed,
    )
}

/// The latest version's payload for a stored revision, or why there is none. The output is
/// validated by decoding it back: a type whose `Serialize` and `Deserialize` disagree fails here,
/// not on the next read.
fn convert<T: Schema>(
    bytes: &[u8],
    max_depth: usize,
    target_schema: Option<&Validator>,
) -> Result<Vec<u8>, (FailureClass, String)> {
    let envelope = record::decode(bytes).map_err(|error| (FailureClass::Decode, chain(&error)))?;
    if envelope.kind == Kind::Tombstone {
        return Err((
            FailureClass::Decode,
            "the head revision is a removal".to_owned(),
        ));
    }
    let data: T = schema::upgrade(envelope.version, envelope.payload, max_depth)
        .map_err(|error| (FailureClass::of_upgrade(&error), chain(&error)))?;
    let payload = record::encode_payload(&data)
        .map_err(|error| (FailureClass::InvalidOutput, chain(&error)))?;
    record::decode_payload::<T>(&payload, max_depth).map_err(|error| {
        (
            FailureClass::InvalidOutput,
            format!("the output does not decode back: {}", chain(&error)),
        )
    })?;
    if let Some(target_schema) = target_schema {
        let json = serde_json::to_value(&data).map_err(|error| {
            (
                FailureClass::InvalidOutput,
                format!("the output is not representable as JSON: {error}"),
            )
        })?;
        target_schema.validate(&json).map_err(|error| {
            (
                FailureClass::InvalidOutput,
                format!(
                    "the output does not match the schema of version {}: {error}",
                    T::VERSION
                ),
            )
        })?;
    }
    Ok(payload)
}

/// Commits processed chunks and keeps the counts, the progress and the ledger record.
struct Committer<'a, T: Schema> {
    collection: &'a Collection<T>,
    dry_run: bool,
    run_id: u64,
    total: u64,
    migration: &'a mut Migration<T>,
    record: &'a mut RunRecord,
    tally: Tally,
    started: Instant,
    /// Chunks committed so far.
    chunks: u64,
}

impl<T: Schema> Committer<'_, T> {
    fn commit(&mut self, chunk: Chunk) -> Result<(), MigrationError> {
        let span = log::chunk_span(self.chunks, chunk.items.len());
        let _entered = span.enter();
        self.chunks += 1;
        let committing = Instant::now();
        let position = (!self.dry_run).then(|| (T::VERSION, chunk.position.clone()));
        // Each failure's class, parsed once; the chunk's counts and the run's counts with the
        // chunk, computed once: under the write lock for the chunk's progress record (the
        // outcomes are known there only), after the commit for a dry run.
        let classes = RunProgress::classes(self.collection.name(), &chunk.items)?;
        let mut counted: Option<(RunProgress, RunProgress)> = None;
        let outcomes = {
            let counts = &self.tally.counts;
            let items = &chunk.items;
            let classes = &classes;
            let counted = &mut counted;
            let mut encode = |outcomes: &[Outcome]| {
                let (_, next) = counted.insert(count(counts, items, outcomes, classes));
                record::encode_payload(next)
            };
            self.collection.commit_chunk(
                items,
                Commit {
                    origin: Origin::Migration { run: self.run_id },
                    writer: T::VERSION,
                    position,
                    dry_run: self.dry_run,
                    stamp: Some(chunk.stamp),
                    prepared: chunk.prepared,
                    progress: (!self.dry_run).then_some(ProgressRecord {
                        run: self.run_id,
                        encode: &mut encode,
                    }),
                },
            )?
        };
        let committed = committing.elapsed();
        let tally = &mut self.tally;
        let (counts, next) =
            counted.unwrap_or_else(|| count(&tally.counts, &chunk.items, &outcomes, &classes));
        tally.counts = next;
        let first_failed =
            tally.chunk_outcomes(&chunk.items, &outcomes, &chunk.known_failed, &classes);
        log::chunk_committed(&span, &counts, committed, first_failed);
        let counts = &tally.counts;
        let elapsed = self.started.elapsed();
        if let Some(callback) = self.migration.on_progress.as_mut() {
            #[allow(clippy::cast_precision_loss)] // a rate, not a count
            let rate = counts.scanned as f64 / elapsed.as_secs_f64().max(1e-9);
            callback(&Progress {
                run_id: self.run_id,
                done: counts.scanned,
                total: self.total,
                migrated: counts.migrated,
                failed: counts.failed,
                skipped: counts.skipped,
                rate,
                elapsed,
            });
        }
        if !self.dry_run {
            fill_record(self.record, tally);
            ledger::save(self.collection, self.record, false)?;
        }
        if let Some(rate) = self.migration.max_rate {
            #[allow(clippy::cast_precision_loss)] // a schedule, not a count
            let due = Duration::from_secs_f64(tally.counts.scanned as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    }
}

impl Tally {
    /// The report of a run (or of a worker's share of one) that counted this.
    pub(super) fn into_report<T: Schema>(
        self,
        run_id: Option<u64>,
        dry_run: bool,
        remaining: u64,
        started: Instant,
        cancelled: bool,
    ) -> MigrationReport {
        MigrationReport {
            run_id,
            dry_run,
            to_version: T::VERSION,
            scanned: self.counts.scanned,
            migrated: self.counts.migrated,
            skipped: self.counts.skipped,
            failed: self.counts.failed,
            failures_by_class: self.counts.failures_by_class,
            failures: self.failures,
            remaining,
            elapsed: started.elapsed(),
            cancelled,
        }
    }

    /// Counts a committed chunk's migrated and failed documents as settled, keeps its first
    /// failures and logs each failure (at debug); returns the chunk's first failed id.
    pub(super) fn chunk_outcomes<'a>(
        &mut self,
        items: &'a [ChunkItem],
        outcomes: &[Outcome],
        known_failed: &[bool],
        classes: &[Option<FailureClass>],
    ) -> Option<&'a str> {
        let mut first_failed = None;
        for (((item, outcome), known_failed), class) in
            items.iter().zip(outcomes).zip(known_failed).zip(classes)
        {
            let Seen::Head(seen) = item.seen else {
                continue;
            };
            match (*outcome, &item.action, *class) {
                (Outcome::Written, _, _) => {
                    self.settled_fresh += u64::from(!*known_failed);
                }
                (Outcome::Failed, Action::Fail(failure), Some(class)) => {
                    self.settled_fresh += u64::from(!*known_failed);
                    first_failed.get_or_insert(item.id.as_str());
                    log::document_failed(
                        &item.id,
                        failure.revision,
                        failure.version,
                        class,
                        &failure.error,
                    );
                    if self.failures.len() < MAX_REPORTED_FAILURES {
                        self.failures.push(Failure {
                            id: DocId::from_validated(item.id.clone()),
                            revision: seen.revision,
                            from_version: seen.version,
                            class,
                            error: failure.error.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        first_failed
    }
}

/// A committed chunk's counts, and the run's counts with the chunk.
pub(super) fn count(
    counts: &RunProgress,
    items: &[ChunkItem],
    outcomes: &[Outcome],
    classes: &[Option<FailureClass>],
) -> (RunProgress, RunProgress) {
    let chunk = RunProgress::of_chunk(items, outcomes, classes);
    let mut next = counts.clone();
    next.merge(&chunk);
    (chunk, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaError;

    #[test]
    fn chain_joins_sources() {
        let error = std::io::Error::other(SchemaError::UnknownVersion {
            collection: "c",
            version: 0,
        });
        assert!(chain(&error).contains("version 0"));
    }
}
