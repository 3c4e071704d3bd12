//! One collection on sled: its tree (see `keys`), its counters, whose mutex is the collection's
//! write lock, and its run lock.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::guard::Tree;
use super::keys::{self, Head};
use super::scan::{HeadScan, SledPending};
use super::write::{self, Staged, WriteSet};
use super::{backend, Shared};
use crate::id::Revision;
use crate::record::{self, Origin, RecordError};
use crate::store::counters::{Counter, Counters};
use crate::store::engine::{
    refuse_older, Action, Bytes, ChunkItem, CollectionEngine, Commit, FailureRecord, Heads, Held,
    Outcome, Pending, Prepared, RunLease, Seen, Stamp,
};
use crate::store::StoreError;

/// The sled engine of one collection.
pub(crate) struct SledCollection {
    pub(crate) name: String,
    pub(crate) tree: Tree,
    /// The collection's counters. Its mutex is the collection's write lock: every commit holds it
    /// from re-checking the heads it replaces until its batch is applied, so counters and heads
    /// never disagree and no update is lost.
    pub(crate) counters: Mutex<Counters>,
    /// Held by the migration run (or revert) under way, so that there is at most one at a time.
    run: Mutex<()>,
    /// The id of the run under way; 0 for none.
    running: AtomicU64,
    /// Commits other than migration chunks, counted under the write lock before they apply: a
    /// migration chunk whose stamp still equals it need not re-read its heads.
    foreign_writes: AtomicU64,
    /// The newest version registered or stored: writes from older programs are refused.
    newest: AtomicU32,
    shared: Arc<Shared>,
}

impl SledCollection {
    pub(super) fn open(name: String, tree: Tree, shared: Arc<Shared>) -> Result<Self, StoreError> {
        let mut counters = Counters::default();
        for entry in tree.scan_prefix([keys::COUNTER]) {
            let (key, value) = entry.map_err(backend)?;
            let counter = Counter::from_key(&key);
            let count = <[u8; 8]>::try_from(&value[..]).ok().map(u64::from_be_bytes);
            match (counter, count) {
                (Some(counter), Some(count)) => counters.insert(counter, count),
                _ => {
                    return Err(StoreError::Corrupt {
                        collection: name,
                        id: "counters".to_owned(),
                        revision: None,
                        source: RecordError::InvalidHeader("malformed counter"),
                    })
                }
            }
        }
        let newest = counters.newest_version().unwrap_or(0);
        Ok(Self {
            name,
            tree,
            counters: Mutex::new(counters),
            run: Mutex::new(()),
            running: AtomicU64::new(0),
            foreign_writes: AtomicU64::new(0),
            newest: AtomicU32::new(newest),
            shared,
        })
    }

    pub(crate) fn corrupt(
        &self,
        id: &str,
        revision: Option<Revision>,
        source: RecordError,
    ) -> StoreError {
        StoreError::Corrupt {
            collection: self.name.clone(),
            id: id.to_owned(),
            revision,
            source,
        }
    }

    /// The stored bytes of one revision.
    pub(crate) fn revision_bytes(
        &self,
        id: &str,
        revision: Revision,
    ) -> Result<Option<::sled::IVec>, StoreError> {
        self.tree.get(keys::revision(id, revision)).map_err(backend)
    }

    /// The foreign-write count, read under the write lock: every write counted in it has applied.
    pub(super) fn stamp(&self) -> u64 {
        let _lock = self.counters.lock();
        self.foreign_writes.load(Ordering::SeqCst)
    }

    fn decode_failure(&self, id: &str, bytes: &[u8]) -> Result<FailureRecord, StoreError> {
        record::decode_payload(bytes, 8).map_err(|source| self.corrupt(id, None, source))
    }
}

struct RunGuard<'a> {
    _exclusive: MutexGuard<'a, ()>,
    running: &'a AtomicU64,
}

impl Held for RunGuard<'_> {}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.running.store(0, Ordering::SeqCst);
    }
}

impl Held for MutexGuard<'_, ()> {}

impl CollectionEngine for SledCollection {
    fn head(&self, id: &str) -> Result<Option<Head>, StoreError> {
        match self.tree.get(keys::head(id)).map_err(backend)? {
            None => Ok(None),
            Some(bytes) => Head::decode(&bytes).map(Some).ok_or_else(|| {
                self.corrupt(id, None, RecordError::InvalidHeader("malformed head"))
            }),
        }
    }

    fn revision(&self, id: &str, revision: Revision) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .revision_bytes(id, revision)?
            .map(|bytes| bytes.to_vec()))
    }

    fn revisions(
        &self,
        id: &str,
        after: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        let prefix = keys::revisions_of(id);
        let start = match after {
            None => prefix.clone(),
            Some(after) => match after.get().checked_add(1).and_then(Revision::new) {
                Some(next) => keys::revision(id, next),
                None => return Ok(Vec::new()),
            },
        };
        let mut out = Vec::new();
        for entry in self.tree.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (key, bytes) = entry.map_err(backend)?;
            if !key.starts_with(&prefix) {
                break;
            }
            out.push(bytes.to_vec());
        }
        Ok(out)
    }

    fn heads(&self, after: Option<&str>, removed: bool) -> Heads {
        Box::new(HeadScan::new(&self.name, &self.tree, after, None, removed))
    }

    fn counts(&self) -> Result<Counters, StoreError> {
        Ok(self.counters.lock().clone())
    }

    fn commit(&self, items: &[ChunkItem], commit: Commit<'_>) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(items.len());
        let ticket = {
            let mut counters = self.counters.lock();
            if !commit.dry_run {
                self.writable_by(commit.writer)?;
            }
            let recheck = commit.stamp.map(|stamp| stamp.0)
                != Some(self.foreign_writes.load(Ordering::SeqCst));
            if !commit.dry_run && !matches!(commit.origin, Origin::Migration { .. }) {
                self.foreign_writes.fetch_add(1, Ordering::SeqCst);
            }
            // A batch prepared from every item holds only what should be written while no head
            // has changed since the chunk was read.
            let prepared = commit
                .prepared
                .filter(|_| !recheck)
                .and_then(|prepared| prepared.0.downcast::<::sled::Batch>().ok());
            let (mut writes, batched) =
                match prepared.and_then(|batch| WriteSet::with_batch(*batch)) {
                    Some(writes) => (writes, true),
                    None => (WriteSet::default(), false),
                };
            let mut staged: Vec<Staged<'_>> = Vec::with_capacity(items.len());
            for item in items {
                let changed = match item.seen {
                    Seen::Fresh => false,
                    seen => recheck && self.head(&item.id)? != seen.head(),
                };
                if changed {
                    outcomes.push(Outcome::Skipped);
                    continue;
                }
                match &item.action {
                    Action::Write(revision) => {
                        staged.push(Staged {
                            id: &item.id,
                            replaces: item.seen.head(),
                            head: revision.head,
                            record: &revision.record,
                        });
                        outcomes.push(Outcome::Written);
                    }
                    Action::Fail(failure) => {
                        if !commit.dry_run {
                            let known = self
                                .tree
                                .contains_key(keys::failure(&item.id))
                                .map_err(backend)?;
                            let bytes = record::encode_payload(failure).map_err(|source| {
                                StoreError::Encode {
                                    collection: self.name.clone(),
                                    source,
                                }
                            })?;
                            // Counted at the version of the head it names, as a write clears it.
                            let version = item.seen.head().map_or(failure.version, |h| h.version);
                            writes.put_failure(&item.id, version, &bytes, known);
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
                // A write changes the document, so a recorded migration failure no longer holds.
                if let Some(seen) = staged.replaces {
                    writes.clear_failure(&self.tree, &counters, staged.id, seen.version)?;
                }
            }
            if let Some((target, position)) = &commit.position {
                writes.cursor(*target, &position.0);
            }
            if let Some(progress) = commit.progress {
                let bytes = (progress.encode)(&outcomes).map_err(|source| StoreError::Encode {
                    collection: self.name.clone(),
                    source,
                })?;
                writes.progress(progress.run, &bytes);
            }
            writes.apply(&self.tree, &mut counters)?;
            self.shared.commit.ticket()
        };
        self.shared.durable(ticket)?;
        crate::fault::point();
        Ok(outcomes)
    }

    fn prepare(&self, items: &[ChunkItem]) -> Option<Prepared> {
        let mut batch = ::sled::Batch::default();
        for item in items {
            if let Action::Write(revision) = &item.action {
                write::batch_revision(
                    &mut batch,
                    &Staged {
                        id: &item.id,
                        replaces: item.seen.head(),
                        head: revision.head,
                        record: &revision.record,
                    },
                );
            }
        }
        Some(Prepared(Box::new(batch)))
    }

    fn pending(
        &self,
        target: u32,
        retry_failed: bool,
    ) -> Result<Box<dyn Pending + '_>, StoreError> {
        let cursor = match self.tree.get(keys::cursor(target)).map_err(backend)? {
            None => None,
            Some(bytes) => Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                self.corrupt(
                    "cursor",
                    None,
                    RecordError::InvalidHeader("cursor is not UTF-8"),
                )
            })?),
        };
        let failed_versions = self
            .counters
            .lock()
            .failed()
            .into_keys()
            .filter(|&version| version < target)
            .collect();
        // Before the scan's iterators exist (see `SledPending`).
        let stamp = Stamp(self.stamp());
        Ok(Box::new(SledPending::new(
            (&self.name, &self.tree),
            stamp,
            cursor.as_deref(),
            target,
            (retry_failed, failed_versions),
        )))
    }

    fn failures(
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
            page.push((id.to_owned(), self.decode_failure(id, &bytes)?));
        }
        Ok(page)
    }

    fn failures_of_run(
        &self,
        run: u64,
        limit: usize,
        except: &BTreeSet<&str>,
    ) -> Result<(Vec<(String, FailureRecord)>, u64), StoreError> {
        let mut found = Vec::new();
        let mut undecodable = 0u64;
        for entry in self.tree.scan_prefix([keys::FAILURE]) {
            if found.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(backend)?;
            let Some(id) = keys::id_of_failure(&key) else {
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

    fn progress(&self, run: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .tree
            .get(keys::progress(run))
            .map_err(backend)?
            .map(|bytes| bytes.to_vec()))
    }

    fn forget_progress(&self, run: u64) -> Result<(), StoreError> {
        self.tree.remove(keys::progress(run)).map_err(backend)?;
        Ok(())
    }

    fn progress_runs(&self) -> Result<Vec<u64>, StoreError> {
        let mut runs = Vec::new();
        for entry in self.tree.scan_prefix([keys::PROGRESS]) {
            let (key, _) = entry.map_err(backend)?;
            // A malformed key is `verify`'s to report (`Problem::MalformedKey`); it must not
            // block settling, and so every later run.
            if let Some(run) = keys::run_of_progress(&key) {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    fn begin_run(&self, run: u64) -> Result<Result<RunLease<'_>, u64>, StoreError> {
        let Some(exclusive) = self.run.try_lock() else {
            return Ok(Err(self.running.load(Ordering::SeqCst)));
        };
        self.running.store(run, Ordering::SeqCst);
        Ok(Ok(RunLease(Box::new(RunGuard {
            _exclusive: exclusive,
            running: &self.running,
        }))))
    }

    fn try_run_lock(&self) -> Result<Option<RunLease<'_>>, StoreError> {
        Ok(self.run.try_lock().map(|held| RunLease(Box::new(held))))
    }

    fn run_is_live(&self, run: u64) -> Result<bool, StoreError> {
        // One process has the database: a run is live while this process holds it.
        Ok(run != 0 && self.running.load(Ordering::SeqCst) == run)
    }

    fn writable_by(&self, writer: u32) -> Result<(), StoreError> {
        refuse_older(&self.name, self.newest.load(Ordering::SeqCst), writer)
    }

    fn registered(&self, newest: u32) -> Result<(), StoreError> {
        self.newest.fetch_max(newest, Ordering::SeqCst);
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
