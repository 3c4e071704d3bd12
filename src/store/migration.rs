//! The store's side of migrations, as the `migrate` module drives it: counts, runs, pending
//! documents, chunk commits, failure records, progress records and the ledger. Crate-internal;
//! every call goes to the engine.

use std::collections::BTreeSet;

use super::collection::RawCollection;
use super::counters::Counters;
use super::engine::{
    Bytes, ChunkItem, Commit, FailureRecord, Heads, Joined, Outcome, Pending, RunLease,
    RunSettings, WorkerInfo, WorkerRow,
};
use super::{Collection, Store, StoreError};
use crate::id::Revision;
use crate::schema::Schema;

impl RawCollection {
    /// The collection's counts.
    pub(crate) fn counters(&self) -> Result<Counters, StoreError> {
        self.core.engine.counts()
    }

    /// The run lock, unless a run or revert holds it.
    pub(crate) fn try_run_lock(&self) -> Result<Option<RunLease<'_>>, StoreError> {
        self.core.engine.try_run_lock()
    }

    /// The workers of a joined run, as their rows say now; empty for any other run.
    pub(crate) fn run_workers(&self, run: u64) -> Result<Vec<WorkerRow>, StoreError> {
        self.core.engine.run_workers(run)
    }

    /// Asks every worker of the joined run `run` to stop at its next chunk boundary, from any
    /// process; `false` when `run` is not a joined run under way (a run of one process is
    /// cancelled by its [`CancelToken`](crate::CancelToken)).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the engine cannot answer.
    pub fn cancel_run(&self, run: u64) -> Result<bool, StoreError> {
        self.core.engine.cancel_run(run)
    }

    /// Whether `run` is held by a live worker.
    pub(crate) fn run_is_live(&self, run: u64) -> Result<bool, StoreError> {
        self.core.engine.run_is_live(run)
    }

    /// Up to `limit` records of the failure set in id order, after `after` if given.
    pub(crate) fn failure_records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, FailureRecord)>, StoreError> {
        self.core.engine.failures(after, limit)
    }

    /// Every head, removed documents too, in id order.
    pub(crate) fn scan_all_heads(&self) -> Heads {
        self.core.engine.heads(None, true)
    }

    /// One revision's stored bytes.
    pub(crate) fn read_revision(
        &self,
        id: &str,
        revision: Revision,
    ) -> Result<Option<Bytes>, StoreError> {
        self.core.engine.revision(id, revision)
    }
}

impl<T: Schema> Collection<T> {
    /// Makes this process a worker of the collection's joined run (see
    /// [`CollectionEngine::join_run`](super::engine::CollectionEngine::join_run)).
    pub(crate) fn join_run(
        &self,
        run: u64,
        settings: &RunSettings,
        worker: &WorkerInfo,
    ) -> Result<Option<Joined<'_>>, StoreError> {
        self.raw.core.engine.join_run(run, settings, worker)
    }

    /// Makes `run` the collection's run while the lease lives; the run under way otherwise.
    pub(crate) fn start_run(&self, run: u64) -> Result<Result<RunLease<'_>, u64>, StoreError> {
        self.raw.core.engine.begin_run(run)
    }

    /// The documents below `T`'s version, from where the last run stopped.
    pub(crate) fn pending_documents(
        &self,
        retry_failed: bool,
    ) -> Result<Box<dyn Pending + '_>, StoreError> {
        self.raw.core.engine.pending(T::VERSION, retry_failed)
    }

    /// Work for a chunk's commit done ahead, off the committing thread.
    pub(crate) fn prepare_chunk(&self, items: &[ChunkItem]) -> Option<super::engine::Prepared> {
        self.raw.core.engine.prepare(items)
    }

    /// Commits a chunk (see [`CollectionEngine::commit`](super::engine::CollectionEngine::commit)).
    pub(crate) fn commit_chunk(
        &self,
        items: &[ChunkItem],
        commit: Commit<'_>,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.raw.core.engine.commit(items, commit)
    }
}

impl Store {
    /// A run's progress record, if its last chunk wrote one.
    pub(crate) fn run_progress(
        &self,
        collection: &str,
        run: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.core(collection)?.engine.progress(run)
    }

    /// Removes a run's progress record once the ledger holds what it said.
    pub(crate) fn forget_run_progress(&self, collection: &str, run: u64) -> Result<(), StoreError> {
        self.core(collection)?.engine.forget_progress(run)
    }

    /// The runs with a progress record in a collection.
    pub(crate) fn progress_runs(&self, collection: &str) -> Result<Vec<u64>, StoreError> {
        self.core(collection)?.engine.progress_runs()
    }

    /// Up to `limit` failure records a run wrote, leaving out `except`, and how many records
    /// could not be read.
    pub(crate) fn failures_of_run(
        &self,
        collection: &str,
        run: u64,
        limit: usize,
        except: &BTreeSet<&str>,
    ) -> Result<(Vec<(String, FailureRecord)>, u64), StoreError> {
        self.core(collection)?
            .engine
            .failures_of_run(run, limit, except)
    }

    /// Whether any run was ever recorded.
    pub(crate) fn has_ledger(&self) -> bool {
        self.inner.engine.has_ledger()
    }

    /// A new run id.
    pub(crate) fn next_run_id(&self) -> Result<u64, StoreError> {
        self.inner.engine.next_run_id()
    }

    /// Writes a ledger record; `durable` makes it durable before returning.
    pub(crate) fn ledger_put(
        &self,
        collection: &str,
        run: u64,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        self.inner.engine.put_run(collection, run, bytes, durable)
    }

    /// One ledger record.
    pub(crate) fn ledger_get(
        &self,
        collection: &str,
        run: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.engine.run(collection, run)
    }

    /// Up to `limit` ledger records of a collection, newest first, older than `before` if given.
    pub(crate) fn ledger_page(
        &self,
        collection: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.engine.runs(collection, before, limit)
    }
}
