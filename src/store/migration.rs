//! The store's side of migrations: scanning heads, committing chunks, failure records, the cursor
//! and the ledger. Crate-internal: the `migrate` module drives it and never names sled.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::MutexGuard;

use super::collection::Core;
use super::counters::Counters;
use super::error::backend;
use super::keys::{self, Head};
use super::write::{Staged, WriteSet};
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

/// What a chunk does to one document, if its head is still the one the scan saw.
#[derive(Debug)]
pub(crate) enum Action {
    /// Append a revision at `version` holding `payload` (MessagePack).
    Write { version: u32, payload: Vec<u8> },
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

/// Live heads in id order over a range of ids, with their ids.
pub(crate) struct HeadScan {
    iter: sled::Iter,
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

impl<T: Schema> Collection<T> {
    fn core(&self) -> &Core {
        &self.core
    }

    /// The store this collection is in.
    pub(crate) fn store(&self) -> &Store {
        &self.store
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

    /// The run under way on this collection in this process, if any.
    pub(crate) fn current_run(&self) -> Option<u64> {
        match self.core().running.load(Ordering::SeqCst) {
            0 => None,
            run => Some(run),
        }
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
    /// still the one the scan saw, its new revision (origin `origin`) or its failure record; and
    /// the cursor of `cursor.0` moved to `cursor.1`. A dry run checks the heads the same way and
    /// writes nothing. Durable when it returns, as the store's durability says.
    ///
    /// `unchanged_since` is a [`foreign_writes`](Self::foreign_writes) reading taken before the
    /// heads were scanned: if no other write has happened since, every head is still the one the
    /// scan saw, and re-reading them is skipped.
    pub(crate) fn commit_chunk(
        &self,
        items: &[ChunkItem],
        origin: Origin,
        cursor: Option<(u32, &str)>,
        dry_run: bool,
        unchanged_since: Option<u64>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let core = self.core();
        let mut outcomes = Vec::with_capacity(items.len());
        let ticket = {
            let mut counters = core.counters.lock();
            let mut writes = WriteSet::default();
            let mut staged: Vec<Staged<'_>> = Vec::with_capacity(items.len());
            let recheck = unchanged_since != Some(core.foreign_writes.load(Ordering::SeqCst));
            if !dry_run && !matches!(origin, Origin::Migration { .. }) {
                core.foreign_writes.fetch_add(1, Ordering::SeqCst);
            }
            for item in items {
                if recheck && core.head(&item.id)? != Some(item.seen) {
                    outcomes.push(Outcome::Skipped);
                    continue;
                }
                match &item.action {
                    Action::Write { version, payload } => {
                        let head = Head {
                            revision: item.seen.revision.next(),
                            version: *version,
                            removed: false,
                        };
                        let record = record::encode(
                            Kind::Document,
                            *version,
                            head.revision,
                            origin,
                            payload,
                        );
                        staged.push(Staged {
                            id: &item.id,
                            replaces: Some(item.seen),
                            head,
                            record,
                        });
                        outcomes.push(Outcome::Written);
                    }
                    Action::Fail(failure) => {
                        if !dry_run {
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
            if dry_run {
                return Ok(outcomes);
            }
            for staged in &staged {
                writes.revision(staged);
                if let Some(seen) = staged.replaces {
                    writes.clear_failure(core, &counters, staged.id, seen.version)?;
                }
            }
            if let Some((target, id)) = cursor {
                writes.cursor(target, id);
            }
            writes.apply(core, &mut counters)?;
            self.store.inner().commit.ticket()
        };
        self.store.inner().durable(ticket)?;
        crate::fault::point();
        Ok(outcomes)
    }
}

impl Store {
    fn ledger(&self) -> Result<sled::Tree, StoreError> {
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

fn ledger_key(collection: &str, run: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection.len() + 9);
    key.extend_from_slice(collection.as_bytes());
    key.push(0);
    key.extend_from_slice(&run.to_be_bytes());
    key
}
