//! Batches: everything one atomic write changes in a collection's tree.

use super::backend;
use super::guard::Tree;
use super::keys::{self, Head};
use crate::fault;
use crate::store::counters::{Counter, Counters, Delta};
use crate::store::StoreError;

/// One new revision, ready to be applied.
pub(super) struct Staged<'a> {
    pub(super) id: &'a str,
    /// The head it replaces; `None` for a new document.
    pub(super) replaces: Option<Head>,
    pub(super) head: Head,
    /// The revision's envelope.
    pub(super) record: &'a [u8],
}

/// The keys and counter changes of one `apply_batch`.
pub(super) struct WriteSet {
    batch: ::sled::Batch,
    /// Revisions held back for a second batch: only with the test-only broken write order.
    late: Option<::sled::Batch>,
    delta: Delta,
    empty: bool,
}

impl Default for WriteSet {
    fn default() -> Self {
        Self {
            batch: ::sled::Batch::default(),
            late: fault::broken_write_order().then(::sled::Batch::default),
            delta: Delta::default(),
            empty: true,
        }
    }
}

impl WriteSet {
    /// A write set that starts from `batch`, which holds the revision and head keys of new
    /// revisions put there by [`batch_revision`] ahead of the write lock; each must then be
    /// [`counted`](Self::counted). `None` in the test-only broken write order, which needs the
    /// revisions apart.
    pub(super) fn with_batch(batch: ::sled::Batch) -> Option<Self> {
        (!fault::broken_write_order()).then(|| Self {
            batch,
            late: None,
            delta: Delta::default(),
            empty: false,
        })
    }

    /// Adds a new revision and moves the document's head to it. Revision keys are never written
    /// twice: revisions only append.
    pub(super) fn revision(&mut self, staged: &Staged<'_>) {
        match self.late.as_mut() {
            Some(late) => {
                late.insert(
                    keys::revision(staged.id, staged.head.revision),
                    staged.record,
                );
                self.batch
                    .insert(keys::head(staged.id), &staged.head.encode()[..]);
            }
            None => batch_revision(&mut self.batch, staged),
        }
        self.counted(staged);
    }

    /// Counts a new revision whose keys the batch holds already.
    pub(super) fn counted(&mut self, staged: &Staged<'_>) {
        self.delta.replace(staged.replaces, staged.head);
        self.empty = false;
    }

    /// Records that the migration of `id`, live at `version`, failed; `known` if a failure record
    /// exists already (it is replaced, and counted once).
    pub(super) fn put_failure(&mut self, id: &str, version: u32, record: &[u8], known: bool) {
        self.batch.insert(keys::failure(id), record);
        if !known {
            self.delta.add(Counter::Failed(version), 1);
        }
        self.empty = false;
    }

    /// Removes the failure record of `id`, live at `version`.
    pub(super) fn delete_failure(&mut self, id: &str, version: u32) {
        self.batch.remove(keys::failure(id));
        self.delta.add(Counter::Failed(version), -1);
        self.empty = false;
    }

    /// Removes the failure record of `id` if there is one. Reads only when some document of
    /// `version` has failed.
    pub(super) fn clear_failure(
        &mut self,
        tree: &Tree,
        counters: &Counters,
        id: &str,
        version: u32,
    ) -> Result<(), StoreError> {
        if counters.get(Counter::Failed(version)) > 0
            && tree.contains_key(keys::failure(id)).map_err(backend)?
        {
            self.delete_failure(id, version);
        }
        Ok(())
    }

    /// Moves the migration cursor of `target` to `id`.
    pub(super) fn cursor(&mut self, target: u32, id: &[u8]) {
        self.batch.insert(&keys::cursor(target)[..], id);
        self.empty = false;
    }

    /// Writes the progress record of `run`.
    pub(super) fn progress(&mut self, run: u64, record: &[u8]) {
        self.batch.insert(&keys::progress(run)[..], record);
        self.empty = false;
    }

    /// Applies everything in one atomic batch, with the new counter values, and updates the
    /// in-memory counters once it is applied. The caller holds the write lock as `counters`.
    pub(super) fn apply(self, tree: &Tree, counters: &mut Counters) -> Result<(), StoreError> {
        if self.empty {
            return Ok(());
        }
        let Self {
            mut batch,
            late,
            delta,
            ..
        } = self;
        let values = delta.values(counters);
        for &(counter, value) in &values {
            batch.insert(&counter.key()[..], &value.to_be_bytes()[..]);
        }
        fault::point();
        tree.apply_batch(batch).map_err(backend)?;
        if let Some(late) = late {
            fault::point();
            tree.apply_batch(late).map_err(backend)?;
        }
        fault::point();
        for (counter, value) in values {
            counters.insert(counter, value);
        }
        Ok(())
    }
}

/// Puts a new revision's key and its document's new head into `batch`.
pub(super) fn batch_revision(batch: &mut ::sled::Batch, staged: &Staged<'_>) {
    batch.insert(
        keys::revision(staged.id, staged.head.revision),
        staged.record,
    );
    batch.insert(keys::head(staged.id), &staged.head.encode()[..]);
}
