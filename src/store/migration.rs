//! The store's side of migrations: scanning heads, committing chunks, failure records, the cursor
//! and the ledger. Crate-internal: the `migrate` module drives it and never names sled.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::MutexGuard;

use super::collection::Core;
use super::counters::Counters;
use super::error::backend;
use super::keys::{self, Head};
use super::write::{self, Staged, WriteSet};
use super::{Collection, Store, StoreError};
use crate::id::Revision;
use crate::record::{self, Kind, Origin, RecordError};
use crate::schema::Schema;

/// The tree of the migration ledger.
pub(super) const LEDGER_TREE: &str = "_ledger";

/// A stored revision's bytes, shared with the storage engine's cache rather than copied.
#[derive(Debug, Clone)]
pub(crate) struct RevisionBytes(sled::IVec);

impl AsRef<[u8]> for RevisionBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// What the store keeps of a failed migration, under `f ‖ id`. It always names the document's
/// current head: any write to the document removes it in the same batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FailureRecord {
    pub(crate) revision: u64,
    pub(crate) version: u32,
    pub(crate) class: String,
    pub(crate) error: String,
    pub(crate) run: u64,
}

/// A new revision of a document, encoded ahead of its commit (off the write lock, on any thread).
#[derive(Debug)]
pub(crate) struct EncodedRevision {
    /// The head it becomes.
    head: Head,
    /// Its envelope.
    record: sled::IVec,
}

impl EncodedRevision {
    /// The revision that follows `seen` at `version`, holding `payload` (MessagePack) and stamped
    /// with `origin` and the current time.
    pub(crate) fn new(seen: Head, version: u32, origin: Origin, payload: &[u8]) -> Self {
        let revision = seen.revision.next();
        Self {
            head: Head {
                revision,
                version,
                removed: false,
            },
            record: record::encode(Kind::Document, version, revision, origin, payload).into(),
        }
    }

    /// The revision as the write set stages it, replacing the head `item` saw.
    fn staged<'a>(&'a self, item: &'a ChunkItem) -> Staged<'a> {
        Staged {
            id: &item.id,
            replaces: Some(item.seen),
            head: self.head,
            record: self.record.clone(),
        }
    }
}

/// The revision and head keys of a chunk's writes, batched ahead of the commit.
pub(crate) struct PreparedBatch(sled::Batch);

impl PreparedBatch {
    /// Batches the revision and head keys of `items`' writes, off the write lock, so that the
    /// committing thread only adds counters, failures and the cursor (see [`Commit::prepared`]).
    pub(crate) fn new(items: &[ChunkItem]) -> Self {
        let mut batch = sled::Batch::default();
        for item in items {
            if let Action::Write(revision) = &item.action {
                write::batch_revision(&mut batch, &revision.staged(item));
            }
        }
        Self(batch)
    }
}

/// How [`Collection::commit_chunk`] commits a chunk.
pub(crate) struct Commit<'a> {
    /// What writes the chunk: every origin but a migration counts as a foreign write.
    pub(crate) origin: Origin,
    /// Moves the migration cursor of a target version to an id, in the same batch.
    pub(crate) cursor: Option<(u32, &'a str)>,
    /// Checks the heads and writes nothing.
    pub(crate) dry_run: bool,
    /// A [`foreign_writes`](Collection::foreign_writes) reading taken before the heads were
    /// scanned: if no other write has happened since, every head is still the one the scan saw,
    /// and re-reading them is skipped.
    pub(crate) unchanged_since: Option<u64>,
    /// The chunk's revisions and heads, batched ahead; used when no head needs a re-check.
    pub(crate) prepared: Option<PreparedBatch>,
    /// The run's progress record, written in the chunk's own batch.
    pub(crate) progress: Option<ProgressRecord<'a>>,
}

/// A run's progress record, rewritten by every chunk the run commits, in the chunk's own batch
/// (key `p ‖ run`): whatever a crash leaves on disk, the record counts exactly the chunks that
/// are there. The store keeps its bytes; the `migrate` module says what they hold.
pub(crate) struct ProgressRecord<'a> {
    /// The run.
    pub(crate) run: u64,
    /// The record's bytes once this chunk is committed, given the chunk's outcomes; called once,
    /// under the write lock, before the batch is applied.
    pub(crate) encode: &'a mut EncodeProgress<'a>,
}

/// See [`ProgressRecord::encode`].
pub(crate) type EncodeProgress<'a> = dyn FnMut(&[Outcome]) -> Result<Vec<u8>, RecordError> + 'a;

impl Commit<'_> {
    /// A commit of writes of `origin` that re-checks every head.
    pub(crate) fn new(origin: Origin) -> Self {
        Self {
            origin,
            cursor: None,
            dry_run: false,
            unchanged_since: None,
            prepared: None,
            progress: None,
        }
    }
}

/// What a chunk does to one document, if its head is still the one the scan saw.
#[derive(Debug)]
pub(crate) enum Action {
    /// Append a revision.
    Write(EncodedRevision),
    /// Record a failed migration.
    Fail(FailureRecord),
}

/// One document of a chunk.
#[derive(Debug)]
pub(crate) struct ChunkItem {
    pub(crate) id: String,
    /// The head the scan saw; the item is skipped if the head changed since.
    pub(crate) seen: Head,
    pub(crate) action: Action,
}

/// What committing one item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The new revision was written (or, in a dry run, would have been).
    Written,
    /// The failure was recorded (or, in a dry run, would have been).
    Failed,
    /// The head changed since the scan: nothing was done.
    Skipped,
}

/// Held while a migration run or a revert is under way on a collection.
pub(crate) struct RunGuard<'a> {
    _exclusive: MutexGuard<'a, ()>,
    running: &'a AtomicU64,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.running.store(0, Ordering::SeqCst);
    }
}

/// A collection's run lock, held without starting a run: to settle a stopped run's record while
/// no run or revert can write it.
pub(crate) struct RunLock<'a> {
    _held: MutexGuard<'a, ()>,
}

impl Core {
    /// The run lock, unless a run or revert (or another settling) holds it.
    pub(crate) fn try_run_lock(&self) -> Option<RunLock<'_>> {
        self.run.try_lock().map(|held| RunLock { _held: held })
    }
}

/// Live heads in id order over a range of ids, with their ids.
pub(crate) struct HeadScan {
    iter: super::engine::Iter,
    include_removed: bool,
}

impl Iterator for HeadScan {
    type Item = Result<(String, Head), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, value) = match self.iter.next()? {
                Ok(entry) => entry,
                Err(error) => return Some(Err(backend(error))),
            };
            let malformed = || StoreError::Corrupt {
                collection: String::new(),
                id: String::from_utf8_lossy(&key).into_owned(),
                revision: None,
                source: RecordError::InvalidHeader("malformed head"),
            };
            let (Some(id), Some(head)) = (keys::id_of_head(&key), Head::decode(&value)) else {
                return Some(Err(malformed()));
            };
            if head.removed && !self.include_removed {
                continue;
            }
            return Some(Ok((id.to_owned(), head)));
        }
    }
}

/// How many revision keys a [`RevisionReader`] steps over before it seeks instead.
const MAX_STEPS: u64 = 16;

/// Reads head revisions of documents taken in id order with one forward pass over the revision
/// keys, where a lookup per document would descend the tree every time.
///
/// Revision keys sort by id, then revision number, and a document's head is its newest revision,
/// so the head revisions of consecutive documents are a few keys apart. The reader steps over at
/// most [`MAX_STEPS`] keys to reach the one asked for, and seeks otherwise. A step only ever
/// finds a revision that exists, and revisions never change once written; when stepping misses
/// the key (the iterator's view of the tree may be older than the head that named it), the seek
/// that follows reads the tree as it is now.
pub(crate) struct RevisionReader<'a> {
    core: &'a Core,
    iter: Option<super::engine::Iter>,
    /// The entry a seek found after a missing revision, not yet used.
    peeked: Option<(sled::IVec, sled::IVec)>,
}

impl RevisionReader<'_> {
    /// The stored bytes of `id`'s revision `revision`, if it exists.
    pub(crate) fn read(
        &mut self,
        id: &str,
        revision: Revision,
    ) -> Result<Option<RevisionBytes>, StoreError> {
        let target = keys::revision(id, revision);
        // Revisions are numbered from 1 with no gaps, so a head beyond `MAX_STEPS` is that many
        // keys past the previous document's at least: seek at once.
        if self.iter.is_some() && revision.get() <= MAX_STEPS {
            for _ in 0..MAX_STEPS {
                let Some((key, value)) = self.next_entry()? else {
                    break;
                };
                match key.as_ref().cmp(&target[..]) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Ok(Some(RevisionBytes(value))),
                    std::cmp::Ordering::Greater => break,
                }
            }
        }
        // Seek: the iterator starts from a fresh view of the tree.
        self.peeked = None;
        let end = [keys::REVISION + 1];
        let iter = self.iter.insert(
            self.core
                .tree
                .range::<&[u8], _>((Bound::Included(&target[..]), Bound::Excluded(&end[..]))),
        );
        match iter.next().transpose().map_err(backend)? {
            Some((key, value)) if key == target[..] => Ok(Some(RevisionBytes(value))),
            other => {
                self.peeked = other;
                Ok(None)
            }
        }
    }

    fn next_entry(&mut self) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        if let Some(entry) = self.peeked.take() {
            return Ok(Some(entry));
        }
        match self.iter.as_mut() {
            Some(iter) => iter.next().transpose().map_err(backend),
            None => Ok(None),
        }
    }
}

impl Core {
    /// Up to `limit` records of the failure set in id order, after `after` if given.
    pub(super) fn failure_records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, FailureRecord)>, StoreError> {
        let start = match after {
            Some(id) => Bound::Excluded(keys::failure(id)),
            None => Bound::Included(vec![keys::FAILURE]),
        };
        let end = Bound::Excluded(vec![keys::FAILURE + 1]);
        let mut page = Vec::new();
        for entry in self.tree.range::<Vec<u8>, _>((start, end)).take(limit) {
            let (key, bytes) = entry.map_err(backend)?;
            let Some(id) = keys::id_of_failure(&key) else {
                return Err(self.corrupt(
                    &String::from_utf8_lossy(&key),
                    None,
                    RecordError::InvalidHeader("failure key is not UTF-8"),
                ));
            };
            let record = record::decode_payload(&bytes, 8)
                .map_err(|source| self.corrupt(id, None, source))?;
            page.push((id.to_owned(), record));
        }
        Ok(page)
    }
}

impl<T: Schema> Collection<T> {
    fn core(&self) -> &Core {
        &self.raw.core
    }

    /// A copy of the collection's counters.
    pub(crate) fn counters(&self) -> Counters {
        self.core().counters.lock().clone()
    }

    /// Marks a run as under way on this collection, or names the one that is.
    pub(crate) fn start_run(&self, run: u64) -> Result<RunGuard<'_>, u64> {
        let core = self.core();
        let exclusive = core
            .run
            .try_lock()
            .ok_or_else(|| core.running.load(Ordering::SeqCst))?;
        core.running.store(run, Ordering::SeqCst);
        Ok(RunGuard {
            _exclusive: exclusive,
            running: &core.running,
        })
    }

    /// How many writes other than migration chunks this collection has taken since it was
    /// opened. Every write that can change an existing head counts itself under the write lock
    /// before it applies; migration chunks do not, as one run's chunks never share a document.
    pub(crate) fn foreign_writes(&self) -> u64 {
        self.core().foreign_writes.load(Ordering::SeqCst)
    }

    /// Live heads whose id is in the range `(after, up_to]`, in id order.
    pub(crate) fn scan_heads(&self, after: Option<&str>, up_to: Option<&str>) -> HeadScan {
        let start = match after {
            Some(id) => Bound::Excluded(keys::head(id)),
            None => Bound::Included(vec![keys::HEAD]),
        };
        let end = match up_to {
            Some(id) => Bound::Included(keys::head(id)),
            None => Bound::Excluded(vec![keys::HEAD + 1]),
        };
        HeadScan {
            iter: self.core().tree.range::<Vec<u8>, _>((start, end)),
            include_removed: false,
        }
    }

    /// Every head, removed ones included, in id order.
    pub(crate) fn scan_all_heads(&self) -> HeadScan {
        HeadScan {
            iter: self.core().tree.scan_prefix([keys::HEAD]),
            include_removed: true,
        }
    }

    /// A revision's stored bytes.
    pub(crate) fn read_revision(
        &self,
        id: &str,
        revision: Revision,
    ) -> Result<Option<RevisionBytes>, StoreError> {
        Ok(self.core().revision_bytes(id, revision)?.map(RevisionBytes))
    }

    /// A reader of head revisions for documents taken in id order.
    pub(crate) fn revision_reader(&self) -> RevisionReader<'_> {
        RevisionReader {
            core: self.core(),
            iter: None,
            peeked: None,
        }
    }

    /// The failure recorded for a document, if any.
    pub(crate) fn failure(&self, id: &str) -> Result<Option<FailureRecord>, StoreError> {
        match self.core().tree.get(keys::failure(id)).map_err(backend)? {
            None => Ok(None),
            Some(bytes) => record::decode_payload(&bytes, 8)
                .map(Some)
                .map_err(|source| self.core().corrupt(id, None, source)),
        }
    }

    /// The last id a migration to `target` took, if any.
    pub(crate) fn cursor(&self, target: u32) -> Result<Option<String>, StoreError> {
        match self
            .core()
            .tree
            .get(keys::cursor(target))
            .map_err(backend)?
        {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
                self.core().corrupt(
                    "cursor",
                    None,
                    RecordError::InvalidHeader("cursor is not UTF-8"),
                )
            }),
        }
    }

    /// Commits one chunk in one atomic batch under the write lock: for every item whose head is
    /// still the one the scan saw, its new revision or its failure record; and the cursor moved as
    /// `commit` says. Durable when it returns, as the store's durability says. A dry run checks
    /// the heads the same way and writes nothing.
    pub(crate) fn commit_chunk(
        &self,
        items: &[ChunkItem],
        commit: Commit<'_>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let core = self.core();
        let mut outcomes = Vec::with_capacity(items.len());
        let ticket = {
            let mut counters = core.counters.lock();
            let recheck =
                commit.unchanged_since != Some(core.foreign_writes.load(Ordering::SeqCst));
            if !commit.dry_run && !matches!(commit.origin, Origin::Migration { .. }) {
                core.foreign_writes.fetch_add(1, Ordering::SeqCst);
            }
            // A batch prepared from every item holds only what should be written while no head
            // has changed since the scan.
            let prepared = commit.prepared.filter(|_| !recheck);
            let (mut writes, batched) = match prepared.and_then(|p| WriteSet::with_batch(p.0)) {
                Some(writes) => (writes, true),
                None => (WriteSet::default(), false),
            };
            let mut staged: Vec<Staged<'_>> = Vec::with_capacity(items.len());
            for item in items {
                if recheck && core.head(&item.id)? != Some(item.seen) {
                    outcomes.push(Outcome::Skipped);
                    continue;
                }
                match &item.action {
                    Action::Write(revision) => {
                        debug_assert_eq!(revision.head.revision, item.seen.revision.next());
                        staged.push(revision.staged(item));
                        outcomes.push(Outcome::Written);
                    }
                    Action::Fail(failure) => {
                        if !commit.dry_run {
                            let known = core
                                .tree
                                .contains_key(keys::failure(&item.id))
                                .map_err(backend)?;
                            let bytes = record::encode_payload(failure).map_err(|source| {
                                StoreError::Encode {
                                    collection: core.name.clone(),
                                    source,
                                }
                            })?;
                            writes.put_failure(&item.id, item.seen.version, &bytes, known);
                        }
                        outcomes.push(Outcome::Failed);
                    }
                }
            }
            if commit.dry_run {
                return Ok(outcomes);
            }
            for staged in &staged {
                if batched {
                    writes.counted(staged);
                } else {
                    writes.revision(staged);
                }
                if let Some(seen) = staged.replaces {
                    writes.clear_failure(core, &counters, staged.id, seen.version)?;
                }
            }
            if let Some((target, id)) = commit.cursor {
                writes.cursor(target, id);
            }
            if let Some(progress) = commit.progress {
                let bytes = (progress.encode)(&outcomes).map_err(|source| StoreError::Encode {
                    collection: core.name.clone(),
                    source,
                })?;
                writes.progress(progress.run, &bytes);
            }
            writes.apply(core, &mut counters)?;
            self.raw.store.inner().commit.ticket()
        };
        self.raw.store.inner().durable(ticket)?;
        crate::fault::point();
        Ok(outcomes)
    }
}

impl Store {
    /// The progress record of `run` in `collection`'s tree, if any.
    pub(crate) fn run_progress(
        &self,
        collection: &str,
        run: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .core(collection)?
            .tree
            .get(keys::progress(run))
            .map_err(backend)?
            .map(|bytes| bytes.to_vec()))
    }

    /// Removes the progress record of `run`, once its ledger record is final and flushed. If the
    /// removal is lost in a crash, the record stays, unused: only a run still `running` reads it.
    pub(crate) fn forget_run_progress(&self, collection: &str, run: u64) -> Result<(), StoreError> {
        self.core(collection)?
            .tree
            .remove(keys::progress(run))
            .map_err(backend)?;
        Ok(())
    }

    /// The runs that have a progress record in `collection`'s tree, in id order.
    pub(crate) fn progress_runs(&self, collection: &str) -> Result<Vec<u64>, StoreError> {
        let core = self.core(collection)?;
        let mut runs = Vec::new();
        for entry in core.tree.scan_prefix([keys::PROGRESS]) {
            let (key, _) = entry.map_err(backend)?;
            if let Some(run) = keys::run_of_progress(&key) {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// Up to `limit` failure records that name `run`, with their ids, in id order, leaving out
    /// the ids in `except`, and how many records on the way did not decode: those are skipped
    /// (whichever run they name; `verify` reports them), so that one bad record cannot stop
    /// every later run from settling the ledger. Scans the failure set.
    pub(crate) fn failures_of_run(
        &self,
        collection: &str,
        run: u64,
        limit: usize,
        except: &std::collections::BTreeSet<&str>,
    ) -> Result<(Vec<(String, FailureRecord)>, u64), StoreError> {
        let core = self.core(collection)?;
        let mut found = Vec::new();
        let mut undecodable = 0u64;
        for entry in core.tree.scan_prefix([keys::FAILURE]) {
            if found.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(backend)?;
            let Some(id) = key.get(1..).and_then(|id| std::str::from_utf8(id).ok()) else {
                undecodable += 1;
                continue;
            };
            if except.contains(id) {
                continue;
            }
            match record::decode_payload::<FailureRecord>(&value, 8) {
                Ok(failure) if failure.run == run => found.push((id.to_owned(), failure)),
                Ok(_) => {}
                Err(_) => undecodable += 1,
            }
        }
        Ok((found, undecodable))
    }

    /// Whether the database has a ledger tree yet: one that never ran a migration has none, and
    /// opening a collection must not create it (that would write to a store that may be damaged).
    pub(crate) fn has_ledger(&self) -> bool {
        self.has_tree(LEDGER_TREE.as_bytes())
    }

    fn ledger(&self) -> Result<super::engine::Tree, StoreError> {
        self.inner().db.open_tree(LEDGER_TREE).map_err(backend)
    }

    /// A new run id, unique in this database across restarts.
    pub(crate) fn next_run_id(&self) -> Result<u64, StoreError> {
        self.inner()
            .db
            .generate_id()
            .map(|id| id.saturating_add(1))
            .map_err(backend)
    }

    /// Writes a ledger record; `durable` flushes it.
    pub(crate) fn ledger_put(
        &self,
        collection: &str,
        run: u64,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        self.ledger()?
            .insert(ledger_key(collection, run), bytes)
            .map_err(backend)?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    /// One ledger record.
    pub(crate) fn ledger_get(
        &self,
        collection: &str,
        run: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .ledger()?
            .get(ledger_key(collection, run))
            .map_err(backend)?
            .map(|bytes| bytes.to_vec()))
    }

    /// Up to `limit` ledger records of a collection, newest first, older than `before` if given.
    pub(crate) fn ledger_page(
        &self,
        collection: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let start = ledger_key(collection, 0);
        let end = before.map_or_else(
            || {
                let mut end = collection.as_bytes().to_vec();
                end.push(1);
                end
            },
            |run| ledger_key(collection, run),
        );
        self.ledger()?
            .range(start..end)
            .rev()
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry.map_err(backend)?;
                let run = key
                    .len()
                    .checked_sub(8)
                    .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
                    .map_or(0, u64::from_be_bytes);
                Ok((run, bytes.to_vec()))
            })
            .collect()
    }
}

pub(super) fn ledger_key(collection: &str, run: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection.len() + 9);
    key.extend_from_slice(collection.as_bytes());
    key.push(0);
    key.extend_from_slice(&run.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct Note {
        n: u32,
    }

    impl Schema for Note {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, crate::StepError> {
            Ok(previous)
        }
    }

    /// Every head revision, read in id order with one reader, is the revision a lookup finds:
    /// across documents with one revision, with more than `MAX_STEPS`, and removed ones.
    #[test]
    fn the_revision_reader_finds_what_a_lookup_finds() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        for n in 0..200u32 {
            let id = notes.insert(&Note { n }).unwrap();
            let updates = match n % 10 {
                0 => u32::try_from(MAX_STEPS).unwrap() + 3,
                1 | 2 => 2,
                _ => 0,
            };
            for k in 0..updates {
                notes.update(&id, &Note { n: n + k }).unwrap();
            }
            if n % 7 == 0 {
                notes.remove(&id).unwrap();
            }
        }
        let mut reader = notes.revision_reader();
        let mut read = 0;
        for entry in notes.scan_heads(None, None) {
            let (id, head) = entry.unwrap();
            let expected = notes.read_revision(&id, head.revision).unwrap().unwrap();
            let found = reader.read(&id, head.revision).unwrap().unwrap();
            assert_eq!(
                found.as_ref(),
                expected.as_ref(),
                "{id} at {}",
                head.revision
            );
            read += 1;
        }
        assert_eq!(read, 200 - 200usize.div_ceil(7));
    }

    /// A revision written after the reader stepped past its document is found: stepping misses
    /// it in the reader's older view of the tree, and the seek that follows reads the tree anew.
    #[test]
    fn the_revision_reader_finds_a_revision_written_behind_it() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let mut ids: Vec<String> = (0..50)
            .map(|n| notes.insert(&Note { n }).unwrap().to_string())
            .collect();
        ids.sort();
        let mut reader = notes.revision_reader();
        let first = Revision::FIRST;
        assert!(reader.read(&ids[0], first).unwrap().is_some());
        let updated = notes.update(&ids[1], &Note { n: 1000 }).unwrap();
        let expected = notes.read_revision(&ids[1], updated).unwrap().unwrap();
        let found = reader.read(&ids[1], updated).unwrap().unwrap();
        assert_eq!(found.as_ref(), expected.as_ref());
        assert!(reader.read(&ids[2], first).unwrap().is_some());
    }

    /// A revision that does not exist is `None`, and the reader goes on from there.
    #[test]
    fn the_revision_reader_reports_a_missing_revision_and_goes_on() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let ids: Vec<_> = (0..3).map(|n| notes.insert(&Note { n }).unwrap()).collect();
        let mut sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        sorted.sort();
        let first = Revision::FIRST;
        let mut reader = notes.revision_reader();
        assert!(reader.read(&sorted[0], first).unwrap().is_some());
        assert!(reader.read(&sorted[1], first.next()).unwrap().is_none());
        assert!(reader.read(&sorted[1], first).unwrap().is_some());
        assert!(reader.read(&sorted[2], first).unwrap().is_some());
        assert!(reader.read("zzzz", first).unwrap().is_none());
    }

    /// A failure record that does not decode, of whichever run, is skipped and counted: it does
    /// not stop the records of the run asked for from being found.
    #[test]
    fn failures_of_run_skips_and_counts_undecodable_records() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let mut ids: Vec<String> = (0..2)
            .map(|n| notes.insert(&Note { n }).unwrap().to_string())
            .collect();
        ids.sort();
        let (bad, good) = (&ids[0], &ids[1]);
        let seen = notes.core().head(good).unwrap().unwrap();
        let item = ChunkItem {
            id: good.clone(),
            seen,
            action: Action::Fail(FailureRecord {
                revision: seen.revision.get(),
                version: 1,
                class: "decode".to_owned(),
                error: "no".to_owned(),
                run: 7,
            }),
        };
        notes
            .commit_chunk(&[item], Commit::new(Origin::Migration { run: 7 }))
            .unwrap();
        notes
            .core()
            .tree
            .insert(keys::failure(bad), &[0xc1][..])
            .unwrap();

        let (found, undecodable) = store
            .failures_of_run("notes", 7, 10, &std::collections::BTreeSet::new())
            .unwrap();
        assert_eq!(undecodable, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(&found[0].0, good);
    }
}
