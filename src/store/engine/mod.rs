//! The engine boundary: what the store protocol asks of a storage backend.
//!
//! The protocol (`store/`: collections, the write rules, registration, migration's store side,
//! the ledger's records) is written once against the two traits here; an engine implements them
//! for one backend and is the only code that names it (`engine/sled/` today). The traits are at
//! the level of the store's operations, not a key-value API, and are shaped so that an engine
//! shared by several processes can implement them: nothing a writer must share lives only in the
//! protocol's memory.
//!
//! - Heads are re-checked by the engine when it commits: [`CollectionEngine::commit`] applies a
//!   change only if the document's head is still the one the change replaces (otherwise the
//!   change is [`Outcome::Skipped`] and the protocol decides again), and refuses a write from a
//!   program older than the newest version registered for the collection.
//! - Counts change with the heads they count, inside the engine's commit.
//! - Pending documents come from an opaque [`Position`]: the engine decides how to find them
//!   (sled keeps an id cursor; a database may claim through an index on version).
//! - Run exclusion and liveness are the engine's ([`CollectionEngine::begin_run`],
//!   [`CollectionEngine::run_is_live`]); run ids come from [`Engine::next_run_id`].

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod sled;

use std::collections::BTreeSet;
use std::fmt;

use super::backup::{BackupError, Frame};
use super::counters::Counters;
use super::error::StoreError;
pub(crate) use super::head::Head;
use super::logical::LogicalRecord;
use super::{RepairReport, Store, VerifyReport};
use crate::id::Revision;
use crate::record::{self, Kind, Origin, RecordError};

/// What a store is doing, for a readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreState {
    /// The store is being opened: sled is recovering its files. A [`Store`](crate::Store) value
    /// is never in this state, so neither `Store::state` nor the HTTP router's `GET /readyz`
    /// (built from an open store) ever reports it; it is for an application that opens its store
    /// in the background and reports readiness itself until the open returns.
    Opening,
    /// The store serves reads and writes.
    Ready,
    /// The storage engine panicked on damaged data: every call fails with
    /// [`StoreError::Poisoned`](crate::StoreError::Poisoned) until the store is opened again.
    Poisoned,
}

/// The stored bytes of one revision: its envelope, exactly as written.
pub(crate) type Bytes = Vec<u8>;

/// The current documents of a collection in id order: each a head, or the error that its head is
/// malformed ([`StoreError::Corrupt`] naming the id), after which the iteration goes on.
pub(crate) type Heads = Box<dyn Iterator<Item = Result<(String, Head), StoreError>> + Send>;

/// What [`Engine::update_meta`] asks: given a collection's metadata record as stored, the record
/// to store in its place (`None`: nothing to write), or why not.
pub(crate) type DecideMeta<'a> = dyn FnMut(Option<&[u8]>) -> Result<Option<Bytes>, StoreError> + 'a;

/// A store's engine: collections, collection metadata, the run ledger and run ids.
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// The engine of one collection, created when missing; `name` is valid.
    fn collection(&self, name: &str) -> Result<std::sync::Arc<dyn CollectionEngine>, StoreError>;

    /// Every collection with metadata, by name.
    fn collection_names(&self) -> Result<Vec<String>, StoreError>;

    /// A collection's metadata record (registered versions, schemas, schema history), as stored.
    fn meta(&self, collection: &str) -> Result<Option<Bytes>, StoreError>;

    /// Replaces a collection's metadata record if it is still `expected` (`None`: no record),
    /// durably; `false`, writing nothing, when another writer changed it since it was read.
    fn put_meta(
        &self,
        collection: &str,
        expected: Option<&[u8]>,
        bytes: &[u8],
    ) -> Result<bool, StoreError>;

    /// Decides on a collection's metadata record and records the decision, once: `decide` is
    /// given the record as stored and returns the record to store in its place, or `None` to
    /// write nothing (also the way to end without a write); its error is returned as is.
    ///
    /// An engine shared by several processes orders the calls for one collection (a transaction
    /// lock), so that `decide` sees what another process recorded and the change is recorded
    /// once. By default, a compare-and-set loop: `decide` is called again on what another writer
    /// recorded meanwhile. `decide` must not use the engine: it may be called holding a
    /// connection or a lock.
    fn update_meta(&self, collection: &str, decide: &mut DecideMeta<'_>) -> Result<(), StoreError> {
        loop {
            let current = self.meta(collection)?;
            let Some(bytes) = decide(current.as_deref())? else {
                return Ok(());
            };
            if self.put_meta(collection, current.as_deref(), &bytes)? {
                return Ok(());
            }
        }
    }

    /// A new run id, above every run id handed out or imported before.
    fn next_run_id(&self) -> Result<u64, StoreError>;

    /// Whether any ledger record was ever written (a shortcut for opening: nothing to settle).
    fn has_ledger(&self) -> bool;

    /// Writes a ledger record; `durable` makes it durable before returning.
    fn put_run(
        &self,
        collection: &str,
        run: u64,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), StoreError>;

    /// One ledger record.
    fn run(&self, collection: &str, run: u64) -> Result<Option<Bytes>, StoreError>;

    /// Up to `limit` ledger records of a collection, newest first, below `before` if given.
    fn runs(
        &self,
        collection: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// The bytes the store takes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// The consistency check behind [`Store::verify_with_progress`]: walks every record.
    fn verify(
        &self,
        store: &Store,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, StoreError>;

    /// Recomputes the counts from the heads and failure records (see
    /// [`Store::repair_counters`]).
    fn repair_counters(&self, store: &Store) -> Result<RepairReport, StoreError>;

    /// Streams every logical record of the store to `sink`, in backup order (see `logical`).
    fn export(
        &self,
        store: &Store,
        sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
    ) -> Result<(), BackupError>;

    /// Starts loading a backup into the store, which must be empty.
    fn import<'a>(&'a self, store: &'a Store) -> Result<Box<dyn Import + 'a>, BackupError>;

    /// Whether the engine can still be used.
    fn state(&self) -> StoreState;

    /// The engine as itself, for what only one engine offers (its files, its repairs).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A backup being loaded into a store, frame by frame.
pub(crate) trait Import {
    /// Loads one frame of the backup.
    fn frame(&mut self, frame: Frame) -> Result<(), BackupError>;

    /// Completes the import once every frame is loaded: counts recomputed, run ids handed out
    /// later above every run the backup names.
    fn finish(self: Box<Self>) -> Result<(), BackupError>;

    /// Removes whatever was loaded, leaving the store as empty as it was found.
    fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// One collection's engine.
pub(crate) trait CollectionEngine: Send + Sync {
    /// A document's head.
    fn head(&self, id: &str) -> Result<Option<Head>, StoreError>;

    /// One revision's bytes.
    fn revision(&self, id: &str, revision: Revision) -> Result<Option<Bytes>, StoreError>;

    /// Up to `limit` revisions of a document numbered above `after`, oldest first.
    fn revisions(
        &self,
        id: &str,
        after: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<Bytes>, StoreError>;

    /// The heads of documents whose id comes after `after` (all when `None`), in id byte order;
    /// removed documents too when `removed`.
    fn heads(&self, after: Option<&str>, removed: bool) -> Heads;

    /// The collection's counts: live documents and known failures per version, removed ones.
    fn counts(&self) -> Result<Counters, StoreError>;

    /// Commits a write set atomically: each item applies only if the document's head is still
    /// the one it saw (otherwise [`Outcome::Skipped`]); the new revisions, head changes, count
    /// changes, failure records (a written document's is removed), position and progress record
    /// go together or not at all, and are durable as the store's durability says when it returns.
    fn commit(&self, items: &[ChunkItem], commit: Commit<'_>) -> Result<Vec<Outcome>, StoreError>;

    /// Work for [`commit`](Self::commit) that may be done ahead, off the committing thread.
    fn prepare(&self, items: &[ChunkItem]) -> Option<Prepared>;

    /// The documents below version `target` from the position the last commit for `target`
    /// recorded (from the start when none), round to where it began; known failures are left
    /// out unless `retry_failed`.
    fn pending(&self, target: u32, retry_failed: bool)
        -> Result<Box<dyn Pending + '_>, StoreError>;

    /// Up to `limit` failure records in id order, after `after` if given.
    fn failures(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, FailureRecord)>, StoreError>;

    /// Up to `limit` failure records written by `run`, leaving out `except`; and how many records
    /// could not be read.
    fn failures_of_run(
        &self,
        run: u64,
        limit: usize,
        except: &BTreeSet<&str>,
    ) -> Result<(Vec<(String, FailureRecord)>, u64), StoreError>;

    /// A run's progress record, written with its last chunk.
    fn progress(&self, run: u64) -> Result<Option<Bytes>, StoreError>;

    /// Removes a run's progress record.
    fn forget_progress(&self, run: u64) -> Result<(), StoreError>;

    /// The runs with a progress record.
    fn progress_runs(&self) -> Result<Vec<u64>, StoreError>;

    /// Makes `run` the collection's run until the lease is dropped; `Ok(Err(run))` names the run
    /// under way instead. An engine that cannot tell (a database it cannot reach) says so with
    /// the outer error.
    fn begin_run(&self, run: u64) -> Result<Result<RunLease<'_>, u64>, StoreError>;

    /// The run lock without a run (to settle the ledger), unless a run or a settling holds it.
    fn try_run_lock(&self) -> Result<Option<RunLease<'_>>, StoreError>;

    /// Whether `run` is held by a live worker, so that its ledger record's `running` is true. An
    /// engine that cannot tell says so with an error, never with `false` (which would mark
    /// another process's live run interrupted).
    fn run_is_live(&self, run: u64) -> Result<bool, StoreError>;

    /// Makes this process a worker of the collection's joined run towards `settings.target`:
    /// joins the run under way, or starts `run` with `settings` when none is. `None` for an
    /// engine without joined runs (the protocol runs alone, one run at a time).
    fn join_run(
        &self,
        _run: u64,
        _settings: &RunSettings,
        _worker: &WorkerInfo,
    ) -> Result<Option<Joined<'_>>, StoreError> {
        Ok(None)
    }

    /// The workers of a joined run, as their rows say now; empty for any other run.
    fn run_workers(&self, _run: u64) -> Result<Vec<WorkerRow>, StoreError> {
        Ok(Vec::new())
    }

    /// Asks every worker of a joined run to stop at its next chunk boundary; `false` when `run`
    /// is not a joined run under way.
    fn cancel_run(&self, _run: u64) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Refuses ([`StoreError::VersionTooNew`]) a program whose version is older than the newest
    /// registered for the collection: it may read but not write.
    fn writable_by(&self, writer: u32) -> Result<(), StoreError>;

    /// The newest version registered for the collection is at least `newest` (from its metadata,
    /// just read or written): from now on, commits from older programs are refused.
    fn registered(&self, newest: u32) -> Result<(), StoreError>;

    /// The collection's engine as itself, for what only one engine offers.
    #[cfg_attr(not(test), allow(dead_code))] // tests reach sled's records through it
    fn as_any(&self) -> &dyn std::any::Any;
}

/// [`StoreError::VersionTooNew`] when a program at version `writer` would write to a collection
/// whose newest registered version is `newest`: it may read but not write.
pub(crate) fn refuse_older(collection: &str, newest: u32, writer: u32) -> Result<(), StoreError> {
    if newest > writer {
        return Err(StoreError::VersionTooNew {
            collection: collection.to_owned(),
            stored: newest,
            known: writer,
        });
    }
    Ok(())
}

/// What every worker of a joined run shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunSettings {
    pub(crate) target: u32,
    pub(crate) fingerprint: String,
    pub(crate) limit: Option<u64>,
    pub(crate) retry_failed: bool,
}

/// Who a worker is, for the ledger.
#[derive(Debug, Clone)]
pub(crate) struct WorkerInfo {
    pub(crate) instance: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
}

/// A worker's row of a joined run.
#[derive(Debug, Clone)]
pub(crate) struct WorkerRow {
    pub(crate) worker: String,
    pub(crate) info: WorkerInfo,
    pub(crate) started: std::time::SystemTime,
    pub(crate) heartbeat: std::time::SystemTime,
    pub(crate) live: bool,
    pub(crate) taken: u64,
    pub(crate) migrated: u64,
    pub(crate) failed: u64,
    pub(crate) skipped: u64,
    /// Its failures per class, by the class's name.
    pub(crate) failures_by_class: std::collections::BTreeMap<String, u64>,
}

/// What [`CollectionEngine::join_run`] found.
// Built only by an engine with joined runs, which a build may leave out.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Joined<'a> {
    /// This process is a worker of `run`: it started it (`first`) or joined it.
    Worker {
        worker: Box<dyn Worker + 'a>,
        first: bool,
    },
    /// A joined run with other settings is under way.
    Other { run: u64, settings: RunSettings },
    /// A run that cannot be joined (of one process, or a revert) is under way.
    Busy(u64),
}

/// A chunk claimed and committed by a worker: the items and what became of each, and the
/// run's counts over all its workers since this one joined.
pub(crate) struct Claimed {
    pub(crate) items: Vec<ChunkItem>,
    pub(crate) known_failed: Vec<bool>,
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) run: RunCounts,
}

/// What a joined run's workers did, all together, as their committed chunks say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RunCounts {
    /// Documents claimed (each migrated, failed or skipped).
    pub(crate) taken: u64,
    pub(crate) migrated: u64,
    pub(crate) failed: u64,
    pub(crate) skipped: u64,
}

/// The processing of a claimed chunk's documents, done while its claim is held (called once per
/// part of the chunk, on a thread other than the claim's): each document's item and whether a
/// failure record named it.
pub(crate) type Process<'a> =
    dyn FnMut(Vec<PendingDocument>) -> (Vec<ChunkItem>, Vec<bool>) + Send + 'a;

/// One worker of a joined run, heartbeating until it is dropped or leaves.
pub(crate) trait Worker: Send {
    /// The run.
    fn run(&self) -> u64;

    /// What the run's workers had taken, all together, as this one joined.
    fn taken_before(&self) -> u64;

    /// Takes up to `want` documents of the run's limit for the next chunk: how many this worker
    /// may claim (`want` without a limit; 0 once the limit is reserved). The next claim gives
    /// back what it does not use.
    fn reserve(&mut self, want: usize) -> Result<usize, StoreError>;

    /// Claims up to `limit` pending documents after this worker's keyset, processes them with
    /// `process` and commits, in one transaction; `None` when none is left to claim from here.
    /// [`StoreError::WorkerLeaseLost`] when the worker's lease expired: it cannot write as the
    /// run.
    fn claim(
        &mut self,
        limit: usize,
        writer: u32,
        process: &mut Process<'_>,
    ) -> Result<Option<Claimed>, StoreError>;

    /// Whether a cancel was asked for the run (from any process).
    fn cancelled(&mut self) -> Result<bool, StoreError>;

    /// Asks every worker of the run to stop at its next chunk boundary.
    fn cancel(&mut self) -> Result<(), StoreError>;

    /// Marks this worker idle (nothing to claim) or working again.
    fn idle(&mut self, idle: bool) -> Result<(), StoreError>;

    /// Whether another worker is still working: its lease is live and it is not idle. Releases
    /// the reservations of workers whose lease expired, and answers `true` when it released
    /// any, so that the caller claims again before it leaves (a dead worker's row may still be
    /// locked by its connection as one look skips it, and free at the next, expired).
    fn peers_working(&mut self) -> Result<bool, StoreError>;

    /// Claims from the start again (documents a worker that died left pending).
    fn rewind(&mut self) -> Result<(), StoreError>;

    /// Leaves the run, as `ending` says it ended for this worker: [`Left::Last`] when this was
    /// its last live worker and it ended the run (then [`release`](Self::release) lets the
    /// collection go, once the ledger has the run's final record); [`Left::Busy`] when, ending
    /// `Done`, it would be the last but another worker's chunk is open: it stays and waits.
    fn leave(&mut self, ending: Ending) -> Result<Left, StoreError>;

    /// Stops heartbeating, and releases the run's lease if this worker ended the run.
    fn release(self: Box<Self>) -> Result<(), StoreError>;
}

/// How a worker's part of a joined run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Nothing was left to claim.
    Done,
    /// The run was cancelled.
    Cancelled,
    /// The worker failed.
    Failed,
}

/// What [`Worker::leave`] did.
// Built only by an engine with joined runs, which a build may leave out.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// Other workers go on (or the run had ended already).
    Peers,
    /// This worker was the last, and ended the run.
    Last,
    /// This worker would be the last, but another's chunk is open: it did not leave.
    Busy,
}

/// Pending documents handed out a chunk at a time (see [`CollectionEngine::pending`]).
pub(crate) trait Pending {
    /// Up to `limit` more pending documents, with their head revisions' bytes; `None` when none
    /// is left.
    fn next_chunk(&mut self, limit: usize) -> Result<Option<PendingChunk>, StoreError>;
}

/// A chunk of pending documents.
pub(crate) struct PendingChunk {
    pub(crate) documents: Vec<PendingDocument>,
    /// Where the next run resumes once this chunk is committed.
    pub(crate) position: Position,
    /// What the engine knew when it read the chunk (it may skip re-reading heads at commit).
    pub(crate) stamp: Stamp,
}

/// One pending document.
pub(crate) struct PendingDocument {
    pub(crate) id: String,
    pub(crate) head: Head,
    /// The head revision's bytes; `None` when the revision the head names is missing.
    pub(crate) bytes: Option<Bytes>,
    /// Whether a failure record names it (only handed out when retrying failures).
    pub(crate) known_failed: bool,
}

/// Where a run over pending documents resumes: opaque to the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position(pub(crate) Vec<u8>);

/// An engine's note of what it knew when it read a chunk: opaque to the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(pub(crate) u64);

/// Work an engine did ahead for a commit: opaque to the protocol.
pub(crate) struct Prepared(pub(crate) Box<dyn std::any::Any + Send>);

/// Holds a collection's run (or its run lock) until dropped.
pub(crate) struct RunLease<'a>(#[allow(dead_code)] pub(crate) Box<dyn Held + 'a>);

/// Something held for as long as a [`RunLease`] lives.
pub(crate) trait Held {}

/// A failure record: why a document could not be migrated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FailureRecord {
    /// The head revision that failed.
    pub(crate) revision: u64,
    /// Its schema version.
    pub(crate) version: u32,
    pub(crate) class: String,
    pub(crate) error: String,
    pub(crate) run: u64,
}

/// A new revision, encoded, and the head it makes.
#[derive(Debug)]
pub(crate) struct EncodedRevision {
    pub(crate) head: Head,
    pub(crate) record: Bytes,
}

impl EncodedRevision {
    /// A document revision following `seen` (the first when `None`).
    pub(crate) fn new(seen: Option<Head>, version: u32, origin: Origin, payload: &[u8]) -> Self {
        Self::of(seen, Kind::Document, version, origin, payload)
    }

    /// A removal following `seen`.
    pub(crate) fn tombstone(seen: Head, origin: Origin) -> Self {
        Self::of(Some(seen), Kind::Tombstone, 0, origin, &[])
    }

    fn of(seen: Option<Head>, kind: Kind, version: u32, origin: Origin, payload: &[u8]) -> Self {
        let revision = seen.map_or(Revision::FIRST, |seen| seen.revision.next());
        Self {
            head: Head {
                revision,
                version,
                removed: kind == Kind::Tombstone,
            },
            record: record::encode(kind, version, revision, origin, payload),
        }
    }
}

/// What a commit does to one document.
#[derive(Debug)]
pub(crate) enum Action {
    Write(EncodedRevision),
    Fail(FailureRecord),
}

/// What a commit expects a document's head to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A freshly generated id: no head can exist, none is looked for.
    Fresh,
    /// No head.
    Absent,
    /// This head.
    Head(Head),
}

impl Seen {
    pub(crate) fn head(self) -> Option<Head> {
        match self {
            Seen::Head(head) => Some(head),
            Seen::Fresh | Seen::Absent => None,
        }
    }
}

/// One document of a write set.
#[derive(Debug)]
pub(crate) struct ChunkItem {
    pub(crate) id: String,
    pub(crate) seen: Seen,
    pub(crate) action: Action,
}

/// What became of one item of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Written,
    Failed,
    /// Its head changed since it was seen: nothing was written for it.
    Skipped,
}

/// How to commit a write set.
pub(crate) struct Commit<'a> {
    pub(crate) origin: Origin,
    /// The version of the program writing: a write is refused with
    /// [`StoreError::VersionTooNew`] once a newer version is registered for the collection.
    pub(crate) writer: u32,
    /// The position to record for a target version.
    pub(crate) position: Option<(u32, Position)>,
    /// Check heads and report outcomes, write nothing.
    pub(crate) dry_run: bool,
    /// From the chunk's [`PendingChunk::stamp`].
    pub(crate) stamp: Option<Stamp>,
    pub(crate) prepared: Option<Prepared>,
    pub(crate) progress: Option<ProgressRecord<'a>>,
}

impl Commit<'_> {
    pub(crate) fn new(origin: Origin, writer: u32) -> Self {
        Self {
            origin,
            writer,
            position: None,
            dry_run: false,
            stamp: None,
            prepared: None,
            progress: None,
        }
    }
}

/// A run's progress record, encoded from the chunk's outcomes inside the commit.
pub(crate) struct ProgressRecord<'a> {
    pub(crate) run: u64,
    pub(crate) encode: &'a mut EncodeProgress<'a>,
}

pub(crate) type EncodeProgress<'a> = dyn FnMut(&[Outcome]) -> Result<Vec<u8>, RecordError> + 'a;
