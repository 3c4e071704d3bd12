//! The migration pipeline.
//!
//! ```text
//! scan thread:     scan heads from the cursor ─▶ chunk of candidates ─▶ channel (one chunk ahead)
//! process thread:  rayon: read, decode, step, validate, encode ─▶ channel (one chunk ahead)
//! calling thread:  commit chunk (revisions, heads, counters, failures, cursor: one atomic batch
//!                  under the write lock, each head re-checked) ─▶ flush ─▶ progress ─▶ ledger
//! ```
//!
//! sled applies batches one at a time process-wide, so one committing thread is all the write side
//! can use; the reader keeps it busy.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use rayon::prelude::*;

use super::ledger::{self, RunKind, RunRecord, RunState};
use super::{
    CancelToken, Failure, FailureClass, Migration, MigrationError, MigrationReport, Progress,
    CHUNK_SIZE, MAX_REPORTED_FAILURES,
};
use crate::id::DocId;
use crate::record::{self, Kind, Origin};
use crate::schema::{self, Schema, SchemaError};
use crate::store::{Action, ChunkItem, Collection, FailureRecord, Head, Outcome, StoreError};

/// A document the scan took.
struct Candidate {
    id: String,
    head: Head,
    /// Whether a failure was recorded for it (only taken with `retry_failed`).
    known_failed: bool,
}

/// A chunk after the rayon stage: what to commit for each candidate.
struct Chunk {
    items: Vec<ChunkItem>,
    known_failed: Vec<bool>,
}

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// It took every candidate it could.
    Exhausted,
    /// The cancel token was set.
    Cancelled,
    /// The committing side stopped listening (it failed or was cancelled).
    Disconnected,
}

/// Counts kept while chunks commit.
#[derive(Default)]
struct Tally {
    scanned: u64,
    migrated: u64,
    failed: u64,
    skipped: u64,
    /// Candidates that were not known failures and were migrated or failed: what a real run would
    /// take off the migratable count.
    settled_fresh: u64,
    failures: Vec<Failure>,
    failures_by_class: BTreeMap<FailureClass, u64>,
    from_versions: BTreeSet<u32>,
}

pub(super) fn run<T: Schema>(
    mut migration: Migration<T>,
    dry_run: bool,
) -> Result<MigrationReport, MigrationError> {
    let started = Instant::now();
    let collection = migration.collection.clone();
    collection.check_writable()?;
    let counters = collection.counters();
    let migratable = counters.migratable(T::VERSION);
    let known_failed: BTreeMap<u32, u64> = counters
        .failed()
        .into_iter()
        .filter(|&(version, _)| version < T::VERSION)
        .collect();
    let pending = migratable
        + if migration.retry_failed {
            known_failed.values().sum()
        } else {
            0
        };
    let total = migration.limit.map_or(pending, |limit| limit.min(pending));
    if total == 0 {
        // Known from the counters: nothing to take, whatever the collection's size.
        return Ok(MigrationReport {
            run_id: None,
            dry_run,
            to_version: T::VERSION,
            scanned: 0,
            migrated: 0,
            skipped: 0,
            failed: 0,
            failures: Vec::new(),
            failures_by_class: BTreeMap::new(),
            remaining: migratable,
            elapsed: started.elapsed(),
            cancelled: false,
        });
    }

    let run_id = collection.store().next_run_id()?;
    let _guard = collection
        .start_run(run_id)
        .map_err(|run| MigrationError::RunInProgress {
            collection: collection.name().to_owned(),
            run,
        })?;
    let mut record = RunRecord::new(run_id, collection.name(), RunKind::Migration, T::VERSION);
    record.limit = migration.limit;
    record.schema_fingerprint = Some(collection.schema_fingerprint());
    record.dry_run = dry_run;
    record.retry_failed = migration.retry_failed;
    ledger::save(&collection, &record, true)?;

    let result = pipeline(
        &collection,
        &mut migration,
        dry_run,
        run_id,
        total,
        &known_failed,
        &mut record,
        started,
    );
    let (tally, cancelled) = match result {
        Ok(done) => done,
        Err(error) => {
            // Every chunk committed before the error stays; the record says the run stopped.
            record.state = RunState::Interrupted;
            record.finished = Some(SystemTime::now());
            let _ = ledger::save(&collection, &record, true);
            return Err(error);
        }
    };

    let remaining = if dry_run {
        migratable.saturating_sub(tally.settled_fresh)
    } else {
        collection.counters().migratable(T::VERSION)
    };
    record.state = if cancelled {
        RunState::Cancelled
    } else if tally.failed > 0 {
        RunState::DoneWithFailures
    } else {
        RunState::Done
    };
    record.finished = Some(SystemTime::now());
    fill_record(&mut record, &tally);
    ledger::save(&collection, &record, true)?;

    Ok(MigrationReport {
        run_id: Some(run_id),
        dry_run,
        to_version: T::VERSION,
        scanned: tally.scanned,
        migrated: tally.migrated,
        skipped: tally.skipped,
        failed: tally.failed,
        failures: tally.failures,
        failures_by_class: tally.failures_by_class,
        remaining,
        elapsed: started.elapsed(),
        cancelled,
    })
}

fn fill_record(record: &mut RunRecord, tally: &Tally) {
    record.scanned = tally.scanned;
    record.migrated = tally.migrated;
    record.failed = tally.failed;
    record.skipped = tally.skipped;
    record.from_versions = tally.from_versions.iter().copied().collect();
    record.failures.clone_from(&tally.failures);
    record
        .failures_by_class
        .clone_from(&tally.failures_by_class);
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn pipeline<T: Schema>(
    collection: &Collection<T>,
    migration: &mut Migration<T>,
    dry_run: bool,
    run_id: u64,
    total: u64,
    known_failed: &BTreeMap<u32, u64>,
    record: &mut RunRecord,
    started: Instant,
) -> Result<(Tally, bool), MigrationError> {
    let threads = migration.threads;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("revolve-migrate-{i}"))
        .build()
        .map_err(|error| MigrationError::Threads {
            threads,
            message: error.to_string(),
        })?;
    let cursor = collection.cursor(T::VERSION)?;
    // Read before any head is scanned: if it is unchanged at a commit, so is every scanned head.
    let unchanged_since = collection.foreign_writes();
    let retry = migration.retry_failed;
    let cancel = migration.cancel.clone();
    let failed_versions: BTreeSet<u32> = known_failed.keys().copied().collect();
    let target_schema = migration
        .validate_output
        .then(|| schema::canonical_schema(&collection.schema()));
    let (scanned_tx, scanned_rx) = sync_channel::<Result<Vec<Candidate>, StoreError>>(1);
    let (sender, receiver) = sync_channel(1);

    std::thread::scope(|scope| {
        // Three stages, each a chunk ahead of the next: scan heads, process on the pool, commit.
        let reader = scope.spawn(|| {
            // Owned here, so that the channel closes when the scan is done, whatever the end.
            let scanned_tx = scanned_tx;
            let scan = Scan {
                collection,
                cursor: cursor.as_deref(),
                total,
                retry,
                failed_versions: &failed_versions,
                cancel: &cancel,
            };
            scan.run(&scanned_tx)
        });
        scope.spawn(|| {
            let sender = sender;
            let target_schema = target_schema.as_ref();
            for scanned in scanned_rx {
                let message = scanned.and_then(|chunk| {
                    pool.install(|| {
                        chunk
                            .into_par_iter()
                            .map(|candidate| process(collection, candidate, run_id, target_schema))
                            .collect::<Result<Vec<(ChunkItem, bool)>, StoreError>>()
                    })
                    .map(|processed| {
                        let (items, known_failed) = processed.into_iter().unzip();
                        Chunk {
                            items,
                            known_failed,
                        }
                    })
                });
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        let mut tally = Tally::default();
        let written = commit_all(
            collection,
            receiver,
            dry_run,
            run_id,
            total,
            migration,
            record,
            &mut tally,
            started,
            unchanged_since,
        );
        let read_end = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let cancelled = written? || read_end == ReadEnd::Cancelled;
        Ok((tally, cancelled))
    })
}

struct Scan<'a, T> {
    collection: &'a Collection<T>,
    cursor: Option<&'a str>,
    total: u64,
    retry: bool,
    failed_versions: &'a BTreeSet<u32>,
    cancel: &'a CancelToken,
}

type Message = Result<Chunk, StoreError>;
type Scanned = Result<Vec<Candidate>, StoreError>;

impl<T: Schema> Scan<'_, T> {
    /// Takes candidates from the cursor to the end, then from the start up to the cursor (the
    /// wrap, at most once), and sends them on in chunks to be processed.
    fn run(&self, sender: &SyncSender<Scanned>) -> ReadEnd {
        let mut ranges = vec![(self.cursor, None)];
        if self.cursor.is_some() {
            ranges.push((None, self.cursor));
        }
        let mut taken = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK_SIZE);
        for (after, up_to) in ranges {
            for entry in self.collection.scan_heads(after, up_to) {
                if taken == self.total {
                    break;
                }
                let candidate = match entry.and_then(|(id, head)| self.candidate(id, head)) {
                    Ok(Some(candidate)) => candidate,
                    Ok(None) => continue,
                    Err(error) => {
                        let _ = sender.send(Err(error));
                        return ReadEnd::Disconnected;
                    }
                };
                chunk.push(candidate);
                taken += 1;
                if chunk.len() == CHUNK_SIZE {
                    if let Some(end) = self.send(sender, &mut chunk) {
                        return end;
                    }
                }
            }
        }
        if !chunk.is_empty() {
            if let Some(end) = self.send(sender, &mut chunk) {
                return end;
            }
        }
        ReadEnd::Exhausted
    }

    /// A live head below the latest version is a candidate unless its migration failed before
    /// (and the run does not retry failures).
    fn candidate(&self, id: String, head: Head) -> Result<Option<Candidate>, StoreError> {
        if head.version >= T::VERSION {
            return Ok(None);
        }
        // A failure record always names the current head (writes remove it), so its presence is
        // enough; only versions with failures pay for the lookup.
        let known_failed =
            self.failed_versions.contains(&head.version) && self.collection.failure(&id)?.is_some();
        if known_failed && !self.retry {
            return Ok(None);
        }
        Ok(Some(Candidate {
            id,
            head,
            known_failed,
        }))
    }

    fn send(&self, sender: &SyncSender<Scanned>, chunk: &mut Vec<Candidate>) -> Option<ReadEnd> {
        if self.cancel.is_cancelled() {
            return Some(ReadEnd::Cancelled);
        }
        let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK_SIZE));
        sender.send(Ok(full)).err().map(|_| ReadEnd::Disconnected)
    }
}

/// Reads, decodes, steps, validates and encodes one candidate.
fn process<T: Schema>(
    collection: &Collection<T>,
    candidate: Candidate,
    run_id: u64,
    target_schema: Option<&serde_json::Value>,
) -> Result<(ChunkItem, bool), StoreError> {
    let Candidate {
        id,
        head,
        known_failed,
    } = candidate;
    let converted = match collection.read_revision(&id, head.revision)? {
        Some(bytes) => convert::<T>(bytes.as_ref(), collection.max_depth(), target_schema),
        None => Err((
            FailureClass::Decode,
            format!("revision {} named by the head is missing", head.revision),
        )),
    };
    let action = match converted {
        Ok(payload) => Action::Write {
            version: T::VERSION,
            payload,
        },
        Err((class, error)) => Action::Fail(FailureRecord {
            revision: head.revision.get(),
            version: head.version,
            class: class.as_str().to_owned(),
            error,
            run: run_id,
        }),
    };
    Ok((
        ChunkItem {
            id,
            seen: head,
            action,
        },
        known_failed,
    ))
}

/// The latest version's payload for a stored revision, or why there is none. The output is
/// validated by decoding it back: a type whose `Serialize` and `Deserialize` disagree fails here,
/// not on the next read.
fn convert<T: Schema>(
    bytes: &[u8],
    max_depth: usize,
    target_schema: Option<&serde_json::Value>,
) -> Result<Vec<u8>, (FailureClass, String)> {
    let envelope = record::decode(bytes).map_err(|error| (FailureClass::Decode, chain(&error)))?;
    if envelope.kind == Kind::Tombstone {
        return Err((
            FailureClass::Decode,
            "the head revision is a removal".to_owned(),
        ));
    }
    let data: T =
        schema::upgrade(envelope.version, envelope.payload, max_depth).map_err(|error| {
            let class = match error {
                SchemaError::Step { .. } => FailureClass::Step,
                SchemaError::StepPanicked { .. } => FailureClass::Panic,
                _ => FailureClass::Decode,
            };
            (class, chain(&error))
        })?;
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
        schema::validate(&json, target_schema).map_err(|error| {
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

/// An error and its sources, as one line.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Commits chunks as they come; returns whether the run was cancelled.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn commit_all<T: Schema>(
    collection: &Collection<T>,
    receiver: Receiver<Message>,
    dry_run: bool,
    run_id: u64,
    total: u64,
    migration: &mut Migration<T>,
    record: &mut RunRecord,
    tally: &mut Tally,
    started: Instant,
    unchanged_since: u64,
) -> Result<bool, MigrationError> {
    for message in receiver {
        let chunk = message?;
        if migration.cancel.is_cancelled() {
            return Ok(true);
        }
        let cursor = match (dry_run, chunk.items.last()) {
            (false, Some(last)) => Some((T::VERSION, last.id.as_str())),
            _ => None,
        };
        let outcomes = collection.commit_chunk(
            &chunk.items,
            Origin::Migration { run: run_id },
            cursor,
            dry_run,
            Some(unchanged_since),
        )?;
        for ((item, outcome), known_failed) in
            chunk.items.iter().zip(outcomes).zip(chunk.known_failed)
        {
            tally.scanned += 1;
            tally.from_versions.insert(item.seen.version);
            match (outcome, &item.action) {
                (Outcome::Written, _) => {
                    tally.migrated += 1;
                    tally.settled_fresh += u64::from(!known_failed);
                }
                (Outcome::Failed, Action::Fail(failure)) => {
                    tally.failed += 1;
                    tally.settled_fresh += u64::from(!known_failed);
                    let class = FailureClass::parse(&failure.class);
                    *tally.failures_by_class.entry(class).or_insert(0) += 1;
                    if tally.failures.len() < MAX_REPORTED_FAILURES {
                        tally.failures.push(Failure {
                            id: DocId::from_validated(item.id.clone()),
                            revision: item.seen.revision,
                            from_version: item.seen.version,
                            class,
                            error: failure.error.clone(),
                        });
                    }
                }
                _ => tally.skipped += 1,
            }
        }
        let elapsed = started.elapsed();
        if let Some(callback) = migration.on_progress.as_mut() {
            #[allow(clippy::cast_precision_loss)] // a rate, not a count
            let rate = tally.scanned as f64 / elapsed.as_secs_f64().max(1e-9);
            callback(&Progress {
                done: tally.scanned,
                total,
                migrated: tally.migrated,
                failed: tally.failed,
                skipped: tally.skipped,
                rate,
                elapsed,
            });
        }
        if !dry_run {
            fill_record(record, tally);
            ledger::save(collection, record, false)?;
        }
        if let Some(rate) = migration.max_rate {
            #[allow(clippy::cast_precision_loss)] // a schedule, not a count
            let due = Duration::from_secs_f64(tally.scanned as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_joins_sources() {
        let error = std::io::Error::other(SchemaError::UnknownVersion {
            collection: "c",
            version: 0,
        });
        assert!(chain(&error).contains("version 0"));
    }
}
