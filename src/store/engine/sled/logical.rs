//! The sled side of logical backups and of run ids: streaming a store's [`LogicalRecord`]s out
//! of its trees, loading them into a new store (counters recomputed), restoring a physical
//! backup of format 1, and the durable run id allocator. Everything here names sled's trees; the
//! format and its checks live in `backup` and `logical`.
//!
//! Run ids come from a counter in the default tree (`revolve/last-run-id`, the last id handed
//! out, u64 BE), raised under a process-wide lock (sled lets one process open a database). A
//! store without one (made before it existed) starts above the highest run its ledger holds and
//! above sled's id generator, which handed out its run ids until then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use crate::id::Revision;
use crate::record::{self, RecordError};
use crate::store::backup::{BackupError, Frame, IMPORT_MARKER};
use crate::store::counters::Counter;
use crate::store::engine::sled::guard::{Db, Tree};
use crate::store::engine::sled::keys::{
    self, collection_of_tree, ledger as ledger_key, ledger_run, parse_failure_key, parse_head_key,
    parse_revision_key, Head,
};
use crate::store::engine::sled::walk::DEFAULT_TREE;
use crate::store::engine::sled::{
    backend, SledEngine, COLLECTION_TREE_PREFIX, LEDGER_TREE, META_TREE,
};
use crate::store::engine::FailureRecord;
use crate::store::engine::Import;
use crate::store::logical::LogicalRecord;
use crate::store::report::escape;
use crate::store::{validate_collection_name, Problem, Store, StoreError};

/// The key of the run id counter, in the default tree.
pub(crate) const RUN_COUNTER: &[u8] = b"revolve/last-run-id";
/// Serialises run id allocation within the process; sled lets one process open a database.
static RUN_IDS: Mutex<()> = Mutex::new(());
/// Keys restored per `apply_batch`.
const IMPORT_BATCH: usize = 1000;
/// A run id at or above this, named by a revision's origin, is not taken as one to stay above.
const MAX_PLAUSIBLE_RUN_ID: u64 = 1 << 60;

// ---------------------------------------------------------------------------------------------
// Run ids

/// A new run id, above every run id the store has handed out or imported, durable with the
/// first write that records the run (sled recovers a prefix of its log).
pub(crate) fn next_run_id(engine: &SledEngine) -> Result<u64, StoreError> {
    let _held = RUN_IDS.lock().unwrap_or_else(PoisonError::into_inner);
    let db = engine.db();
    let last = match db.get(RUN_COUNTER).map_err(backend)? {
        Some(bytes) => decode_run_counter(&bytes)?,
        // A store made before the counter: its run ids came from sled's id generator, which
        // continues above every id it handed out, even one whose ledger record was lost.
        None => highest_ledger_run(engine)?.max(db.generate_id().map_err(backend)?),
    };
    let next = last
        .checked_add(1)
        .ok_or_else(|| run_counter_corrupt("run ids exhausted"))?;
    db.insert(RUN_COUNTER, &next.to_be_bytes()[..])
        .map_err(backend)?;
    Ok(next)
}

/// Raises the run id counter to at least `run`.
fn raise_run_counter(db: &Db, run: u64) -> Result<(), StoreError> {
    let _held = RUN_IDS.lock().unwrap_or_else(PoisonError::into_inner);
    let current = match db.get(RUN_COUNTER).map_err(backend)? {
        Some(bytes) => decode_run_counter(&bytes)?,
        None => 0,
    };
    if run > current {
        db.insert(RUN_COUNTER, &run.to_be_bytes()[..])
            .map_err(backend)?;
    }
    Ok(())
}

fn decode_run_counter(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| run_counter_corrupt("the run id counter is not 8 bytes"))
}

fn run_counter_corrupt(reason: &'static str) -> StoreError {
    StoreError::Corrupt {
        collection: String::new(),
        id: String::from_utf8_lossy(RUN_COUNTER).into_owned(),
        revision: None,
        source: RecordError::InvalidHeader(reason),
    }
}

/// The highest run id the ledger holds; 0 without one.
fn highest_ledger_run(engine: &SledEngine) -> Result<u64, StoreError> {
    if !engine.has_tree(LEDGER_TREE.as_bytes()) {
        return Ok(0);
    }
    let ledger = engine.db().open_tree(LEDGER_TREE).map_err(backend)?;
    let mut highest = 0;
    for entry in &ledger {
        let (key, _) = entry.map_err(backend)?;
        if let Some(run) = ledger_run(&key).filter(|&run| run < MAX_PLAUSIBLE_RUN_ID) {
            highest = highest.max(run);
        }
    }
    Ok(highest)
}

// ---------------------------------------------------------------------------------------------
// Export

/// A key of the store no logical record can hold.
fn unexportable(place: &str, key: &[u8], reason: &'static str) -> BackupError {
    BackupError::Unexportable {
        place: place.to_owned(),
        key: escape(key),
        reason,
    }
}

/// The record a key of a collection's tree holds: `Ok(None)` for derived keys (counters,
/// cursors), the reason for a key no record can hold.
fn record_of(
    collection: &str,
    key: &[u8],
    value: &[u8],
) -> Result<Option<LogicalRecord>, &'static str> {
    let collection = collection.to_owned();
    match key.first().copied() {
        Some(keys::HEAD) => {
            let id = parse_head_key(key).map_err(|_| "a head key without a valid id")?;
            let head = Head::decode(value).ok_or("a head that does not decode")?;
            Ok(Some(LogicalRecord::Head {
                collection,
                id: id.to_owned(),
                head,
            }))
        }
        Some(keys::REVISION) => {
            let (id, number) = parse_revision_key(key).map_err(|_| "a malformed revision key")?;
            let revision = Revision::new(number).ok_or("revision 0")?;
            Ok(Some(LogicalRecord::Revision {
                collection,
                id: id.to_owned(),
                revision,
                envelope: value.to_vec(),
            }))
        }
        Some(keys::FAILURE) => {
            let id = parse_failure_key(key).map_err(|_| "a failure key without a valid id")?;
            Ok(Some(LogicalRecord::Failure {
                collection,
                id: id.to_owned(),
                record: value.to_vec(),
            }))
        }
        Some(keys::PROGRESS) => {
            let run = keys::run_of_progress(key).ok_or("a malformed progress key")?;
            Ok(Some(LogicalRecord::RunProgress {
                collection,
                run,
                record: value.to_vec(),
            }))
        }
        Some(keys::COUNTER | keys::CURSOR) => Ok(None),
        _ => Err("a key outside every key space"),
    }
}

/// The key spaces of a collection's tree whose records are exported, in their logical order
/// (the ledger, a tree of its own, comes between failures and progress).
const EXPORTED_SPACES: [u8; 3] = [keys::HEAD, keys::REVISION, keys::FAILURE];
/// Every key space of a collection's tree.
const KEY_SPACES: [u8; 6] = [
    keys::HEAD,
    keys::REVISION,
    keys::FAILURE,
    keys::PROGRESS,
    keys::COUNTER,
    keys::CURSOR,
];

/// What the store holds beside its collection trees: `_meta` records and ledger records by
/// collection, and the set of collections.
struct Outside {
    meta: BTreeMap<String, Vec<u8>>,
    ledger: BTreeMap<String, Vec<(u64, Vec<u8>)>>,
}

impl Outside {
    fn add_meta(&mut self, key: &[u8], value: &[u8]) -> Result<(), &'static str> {
        let name = std::str::from_utf8(key)
            .ok()
            .filter(|name| validate_collection_name(name).is_ok())
            .ok_or("not a collection name")?;
        self.meta.insert(name.to_owned(), value.to_vec());
        Ok(())
    }

    fn add_ledger(&mut self, key: &[u8], value: &[u8]) -> Result<(), &'static str> {
        let run = ledger_run(key).ok_or("a malformed ledger key")?;
        let name = key
            .get(..key.len().saturating_sub(9))
            .and_then(|name| std::str::from_utf8(name).ok())
            .filter(|name| validate_collection_name(name).is_ok())
            .ok_or("a ledger key without a collection name")?;
        self.ledger
            .entry(name.to_owned())
            .or_default()
            .push((run, value.to_vec()));
        Ok(())
    }

    /// Every collection named by a `_meta` record, a ledger record or a tree, in name order.
    fn names<'a>(&self, trees: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = trees.cloned().collect();
        names.extend(self.meta.keys().chain(self.ledger.keys()).cloned());
        names
    }

    /// Takes out a collection's record (with its `_meta` record, if any) and its ledger runs.
    fn take(&mut self, name: &str) -> (LogicalRecord, Vec<(u64, Vec<u8>)>) {
        let record = LogicalRecord::Collection {
            name: name.to_owned(),
            meta: self.meta.remove(name),
        };
        (record, self.ledger.remove(name).unwrap_or_default())
    }
}

/// Streams every logical record of the store to `sink`, in the order `logical` describes; each
/// collection's records under its write lock. A key no record can hold (a malformed key, a head
/// that does not decode, a stray tree, an unfinished import) stops the export with
/// [`BackupError::Unexportable`]: counters and cursors are left out as derived.
pub(crate) fn export_records(
    store: &Store,
    sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let db = store.sled()?.db();
    let mut outside = Outside {
        meta: BTreeMap::new(),
        ledger: BTreeMap::new(),
    };
    let mut trees = BTreeMap::new();
    for name in db.tree_names() {
        let label = String::from_utf8_lossy(&name).into_owned();
        if &name[..] == DEFAULT_TREE {
            for entry in &**db {
                let (key, _) = entry.map_err(backend)?;
                if &key[..] == IMPORT_MARKER {
                    return Err(unexportable(
                        &label,
                        &key,
                        "an import into the store did not complete",
                    ));
                }
                if &key[..] != RUN_COUNTER {
                    return Err(unexportable(&label, &key, "an unknown key"));
                }
            }
        } else if &name[..] == META_TREE.as_bytes() {
            for entry in &db.open_tree(&name).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                outside
                    .add_meta(&key, &value)
                    .map_err(|reason| unexportable(&label, &key, reason))?;
            }
        } else if &name[..] == LEDGER_TREE.as_bytes() {
            for entry in &db.open_tree(&name).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                outside
                    .add_ledger(&key, &value)
                    .map_err(|reason| unexportable(&label, &key, reason))?;
            }
        } else if let Some(collection) = collection_of_tree(&name)
            .filter(|collection| validate_collection_name(collection).is_ok())
        {
            trees.insert(collection, name);
        } else if !db
            .open_tree(&name)
            .map_err(backend)?
            .is_empty()
            .map_err(backend)?
        {
            return Err(unexportable(&label, b"", "a tree revolve does not know"));
        }
    }
    for name in outside.names(trees.keys()) {
        let (record, runs) = outside.take(&name);
        sink(record)?;
        let Some(tree_name) = trees.get(&name) else {
            emit_runs(&name, runs, sink)?;
            continue;
        };
        let label = String::from_utf8_lossy(tree_name).into_owned();
        store.with_collection(&name, tree_name, |tree, _| {
            export_collection(&name, &label, tree, runs, sink)
        })?;
    }
    Ok(())
}

/// A collection's records after its [`LogicalRecord::Collection`], from its tree (under its
/// write lock) and its ledger `runs`.
fn export_collection(
    name: &str,
    label: &str,
    tree: &Tree,
    runs: Vec<(u64, Vec<u8>)>,
    sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    for space in EXPORTED_SPACES {
        for entry in tree.scan_prefix([space]) {
            let (key, value) = entry.map_err(backend)?;
            if let Some(record) =
                record_of(name, &key, &value).map_err(|reason| unexportable(label, &key, reason))?
            {
                sink(record)?;
            }
        }
    }
    emit_runs(name, runs, sink)?;
    for entry in tree.scan_prefix([keys::PROGRESS]) {
        let (key, value) = entry.map_err(backend)?;
        if let Some(record) =
            record_of(name, &key, &value).map_err(|reason| unexportable(label, &key, reason))?
        {
            sink(record)?;
        }
    }
    // A key outside every key space, found without reading the spaces again.
    let mut spaces = KEY_SPACES;
    spaces.sort_unstable();
    let mut from = Vec::new();
    for space in spaces {
        if let Some(entry) = tree.range(from..vec![space]).next() {
            let (key, _) = entry.map_err(backend)?;
            return Err(unexportable(label, &key, "a key outside every key space"));
        }
        from = vec![space + 1];
    }
    if let Some(entry) = tree.range(from..).next() {
        let (key, _) = entry.map_err(backend)?;
        return Err(unexportable(label, &key, "a key outside every key space"));
    }
    Ok(())
}

fn emit_runs(
    collection: &str,
    runs: Vec<(u64, Vec<u8>)>,
    sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    for (run, record) in runs {
        sink(LogicalRecord::LedgerRun {
            collection: collection.to_owned(),
            run,
            record,
        })?;
    }
    Ok(())
}

/// What a salvage read of a tree holds: every readable entry.
pub(crate) type SalvagedTree = BTreeMap<Vec<u8>, sled::IVec>;

/// Salvages one collection's tree: given the collection and the tree's name, what it could read
/// (what it could not is added to the problems).
pub(crate) type SalvageCollection<'s> =
    dyn FnMut(&str, &[u8], &mut Vec<Problem>) -> Result<SalvagedTree, BackupError> + 's;

/// The logical records of what a salvage read, in order: `outside` holds what was read of the
/// trees that are not a collection's, by tree name; each collection tree (by collection, with its
/// tree name) is read by `salvage` when its turn comes, so that one is held in memory at a time.
/// What no record can hold is listed in `unreadable` as [`Problem::MalformedKey`] and left out.
pub(crate) fn salvaged_records(
    outside_trees: &BTreeMap<Vec<u8>, SalvagedTree>,
    collection_trees: &BTreeMap<String, Vec<u8>>,
    salvage: &mut SalvageCollection<'_>,
    unreadable: &mut Vec<Problem>,
    sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let mut outside = Outside {
        meta: BTreeMap::new(),
        ledger: BTreeMap::new(),
    };
    let malformed = |unreadable: &mut Vec<Problem>, label: &str, key: &[u8], reason| {
        unreadable.push(Problem::MalformedKey {
            tree: label.to_owned(),
            space: keys::KeySpace::of(label, key),
            key: escape(key),
            reason,
        });
    };
    for (name, entries) in outside_trees {
        let label = String::from_utf8_lossy(name).into_owned();
        if &name[..] == DEFAULT_TREE {
            for key in entries.keys() {
                if &key[..] != RUN_COUNTER {
                    malformed(
                        unreadable,
                        &label,
                        key,
                        "an unknown key in the default tree",
                    );
                }
            }
        } else if &name[..] == META_TREE.as_bytes() {
            for (key, value) in entries {
                if let Err(reason) = outside.add_meta(key, value) {
                    malformed(unreadable, &label, key, reason);
                }
            }
        } else if &name[..] == LEDGER_TREE.as_bytes() {
            for (key, value) in entries {
                if let Err(reason) = outside.add_ledger(key, value) {
                    malformed(unreadable, &label, key, reason);
                }
            }
        } else {
            for key in entries.keys() {
                malformed(
                    unreadable,
                    &label,
                    key,
                    "a key of a tree revolve does not know",
                );
            }
        }
    }
    let mut valid = BTreeMap::new();
    for (collection, tree_name) in collection_trees {
        if validate_collection_name(collection).is_ok() {
            valid.insert(collection.clone(), tree_name.clone());
        } else {
            let label = String::from_utf8_lossy(tree_name).into_owned();
            for key in salvage(collection, tree_name, unreadable)?.keys() {
                malformed(
                    unreadable,
                    &label,
                    key,
                    "a key of a tree revolve does not know",
                );
            }
        }
    }
    for name in outside.names(valid.keys()) {
        let (record, runs) = outside.take(&name);
        sink(record)?;
        let (label, entries) = match valid.get(&name) {
            Some(tree_name) => (
                String::from_utf8_lossy(tree_name).into_owned(),
                salvage(&name, tree_name, unreadable)?,
            ),
            None => (String::new(), SalvagedTree::new()),
        };
        salvaged_collection(&name, &label, &entries, runs, unreadable, sink)?;
    }
    Ok(())
}

/// The records of one salvaged collection tree, after its [`LogicalRecord::Collection`]: what
/// no record can hold is listed as [`Problem::MalformedKey`].
fn salvaged_collection(
    name: &str,
    label: &str,
    entries: &SalvagedTree,
    runs: Vec<(u64, Vec<u8>)>,
    unreadable: &mut Vec<Problem>,
    sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let malformed = |unreadable: &mut Vec<Problem>, key: &[u8], reason| {
        unreadable.push(Problem::MalformedKey {
            tree: label.to_owned(),
            space: keys::KeySpace::of(label, key),
            key: escape(key),
            reason,
        });
    };
    let space = |space: u8,
                 unreadable: &mut Vec<Problem>,
                 sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>| {
        for (key, value) in entries.range(vec![space]..vec![space + 1]) {
            match record_of(name, key, value) {
                Ok(Some(record)) => sink(record)?,
                Ok(None) => {}
                Err(reason) => malformed(unreadable, key, reason),
            }
        }
        Ok::<_, BackupError>(())
    };
    for kind in EXPORTED_SPACES {
        space(kind, unreadable, sink)?;
    }
    emit_runs(name, runs, sink)?;
    space(keys::PROGRESS, unreadable, sink)?;
    for (key, value) in entries {
        let known = KEY_SPACES.iter().any(|space| key.first() == Some(space));
        if let (false, Err(reason)) = (known, record_of(name, key, value)) {
            malformed(unreadable, key, reason);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Import

/// Every tree of the store, the default one included.
fn every_tree(db: &Db) -> Result<Vec<Tree>, StoreError> {
    db.tree_names()
        .into_iter()
        .map(|name| {
            if &name[..] == DEFAULT_TREE {
                Ok((**db).clone())
            } else {
                db.open_tree(&name).map_err(backend)
            }
        })
        .collect()
}

/// Begins an import into `store`: refuses one that holds data, then marks it incomplete.
pub(crate) fn begin_import(store: &Store) -> Result<(), BackupError> {
    let db = store.sled()?.db();
    for tree in every_tree(db)? {
        if !tree.is_empty().map_err(backend)? {
            return Err(BackupError::NotEmpty {
                path: db.health().path(),
            });
        }
    }
    db.insert(IMPORT_MARKER, &[][..]).map_err(backend)?;
    store.flush()?;
    Ok(())
}

/// Removes everything an import wrote, the incomplete mark with it.
pub(crate) fn abort_import(store: &Store) -> Result<(), StoreError> {
    for tree in every_tree(store.sled()?.db())? {
        tree.clear().map_err(backend)?;
    }
    store.flush()
}

/// Ends an import: run ids handed out later stay above `max_run`, and the mark goes.
pub(crate) fn end_import(store: &Store, max_run: u64) -> Result<(), StoreError> {
    let db = store.sled()?.db();
    raise_run_counter(db, max_run)?;
    db.remove(IMPORT_MARKER).map_err(backend)?;
    store.flush()
}

/// Loads an import's frames, physical (format 1) or logical, into a store `begin_import` marked.
pub(crate) struct Loader<'a> {
    db: &'a Db,
    /// The tree frames go to, with its name; for a logical import, the collection's.
    tree: Option<(Vec<u8>, Tree)>,
    batch: sled::Batch,
    pending: usize,
    /// The counters of the collection being loaded, counted from its heads and failures.
    counts: BTreeMap<Counter, u64>,
    meta: Option<Tree>,
    ledger: Option<Tree>,
    /// The highest migration run id the backup names.
    pub(crate) max_run: u64,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(store: &'a Store) -> Result<Self, StoreError> {
        Ok(Self {
            db: store.sled()?.db(),
            tree: None,
            batch: sled::Batch::default(),
            pending: 0,
            counts: BTreeMap::new(),
            meta: None,
            ledger: None,
            max_run: 0,
        })
    }

    pub(crate) fn frame(&mut self, frame: Frame) -> Result<(), BackupError> {
        match frame {
            Frame::Tree(name) => {
                self.apply()?;
                let tree = if name == DEFAULT_TREE {
                    (**self.db).clone()
                } else {
                    self.db.open_tree(&name).map_err(backend)?
                };
                self.tree = Some((name, tree));
            }
            Frame::Entry(key, value) => {
                if let Some(run) = self
                    .tree
                    .as_ref()
                    .and_then(|(name, _)| run_of_entry(name, &key, &value))
                {
                    self.saw_run(run);
                }
                self.stage(key, value)?;
            }
            Frame::Record(record) => self.record(record)?,
        }
        Ok(())
    }

    fn saw_run(&mut self, run: u64) {
        if run < MAX_PLAUSIBLE_RUN_ID {
            self.max_run = self.max_run.max(run);
        }
    }

    fn stage(
        &mut self,
        key: impl Into<sled::IVec>,
        value: impl Into<sled::IVec>,
    ) -> Result<(), BackupError> {
        self.batch.insert(key, value);
        self.pending += 1;
        if self.pending == IMPORT_BATCH {
            self.apply()?;
        }
        Ok(())
    }

    fn record(&mut self, record: LogicalRecord) -> Result<(), BackupError> {
        if let Some(run) = record.run() {
            self.saw_run(run);
        }
        match record {
            LogicalRecord::Collection { name, meta } => {
                self.finish_collection()?;
                if let Some(meta) = meta {
                    self.meta_tree()?
                        .insert(name.as_bytes(), meta)
                        .map_err(backend)?;
                }
                let tree_name = format!("{COLLECTION_TREE_PREFIX}{name}").into_bytes();
                let tree = self.db.open_tree(&tree_name).map_err(backend)?;
                self.tree = Some((tree_name, tree));
            }
            LogicalRecord::Head { id, head, .. } => {
                *self.counts.entry(Counter::of(head)).or_insert(0) += 1;
                self.stage(keys::head(&id), &head.encode()[..])?;
            }
            LogicalRecord::Revision {
                id,
                revision,
                envelope,
                ..
            } => self.stage(keys::revision(&id, revision), envelope)?,
            LogicalRecord::Failure { id, record, .. } => {
                // Every head is staged before the first failure: read them back.
                self.apply()?;
                if let Some(version) = self.current_failure(&id, &record)? {
                    *self.counts.entry(Counter::Failed(version)).or_insert(0) += 1;
                }
                self.stage(keys::failure(&id), record)?;
            }
            LogicalRecord::LedgerRun {
                collection,
                run,
                record,
            } => {
                self.ledger_tree()?
                    .insert(ledger_key(&collection, run), record)
                    .map_err(backend)?;
            }
            LogicalRecord::RunProgress { run, record, .. } => {
                self.stage(&keys::progress(run)[..], record)?;
            }
        }
        Ok(())
    }

    /// The version a failure record is counted at: that of the live head it names, if it does.
    fn current_failure(&self, id: &str, record: &[u8]) -> Result<Option<u32>, BackupError> {
        let Some((_, tree)) = &self.tree else {
            return Ok(None);
        };
        let Ok(failure) = record::decode_payload::<FailureRecord>(record, 8) else {
            return Ok(None);
        };
        let head = tree
            .get(keys::head(id))
            .map_err(backend)?
            .and_then(|bytes| Head::decode(&bytes));
        Ok(head
            .filter(|head| {
                !head.removed
                    && head.revision.get() == failure.revision
                    && head.version == failure.version
            })
            .map(|head| head.version))
    }

    fn meta_tree(&mut self) -> Result<Tree, BackupError> {
        if let Some(tree) = &self.meta {
            return Ok(tree.clone());
        }
        let tree = self.db.open_tree(META_TREE).map_err(backend)?;
        self.meta = Some(tree.clone());
        Ok(tree)
    }

    fn ledger_tree(&mut self) -> Result<Tree, BackupError> {
        if let Some(tree) = &self.ledger {
            return Ok(tree.clone());
        }
        let tree = self.db.open_tree(LEDGER_TREE).map_err(backend)?;
        self.ledger = Some(tree.clone());
        Ok(tree)
    }

    /// Writes what is staged, and the counters of the collection loaded so far.
    fn finish_collection(&mut self) -> Result<(), BackupError> {
        for (counter, count) in std::mem::take(&mut self.counts) {
            if count > 0 {
                self.batch
                    .insert(&counter.key()[..], &count.to_be_bytes()[..]);
                self.pending += 1;
            }
        }
        self.apply()
    }

    /// Writes everything staged; called once the last frame is read.
    pub(crate) fn finish(&mut self) -> Result<(), BackupError> {
        self.finish_collection()
    }

    fn apply(&mut self) -> Result<(), BackupError> {
        if let Some((_, tree)) = &self.tree {
            if self.pending > 0 {
                tree.apply_batch(std::mem::take(&mut self.batch))
                    .map_err(backend)?;
                self.pending = 0;
            }
        }
        Ok(())
    }
}

/// The migration run a ledger key or a revision's origin names, in a physical backup.
fn run_of_entry(tree: &[u8], key: &[u8], value: &[u8]) -> Option<u64> {
    if tree == LEDGER_TREE.as_bytes() {
        ledger_run(key)
    } else if tree.starts_with(COLLECTION_TREE_PREFIX.as_bytes())
        && key.first() == Some(&keys::REVISION)
    {
        match record::decode(value).map(|envelope| envelope.origin) {
            Ok(record::Origin::Migration { run } | record::Origin::Revert { run }) => Some(run),
            _ => None,
        }
    } else {
        None
    }
}

/// A backup being loaded into a sled store (see [`Import`]).
pub(crate) struct SledImport<'a> {
    pub(crate) store: &'a Store,
    pub(crate) loader: Loader<'a>,
}

impl Import for SledImport<'_> {
    fn frame(&mut self, frame: Frame) -> Result<(), BackupError> {
        self.loader.frame(frame)
    }

    fn finish(mut self: Box<Self>) -> Result<(), BackupError> {
        self.loader.finish()?;
        let max_run = self.loader.max_run;
        let store = self.store;
        drop(self);
        end_import(store, max_run)?;
        Ok(())
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        let store = self.store;
        drop(self);
        abort_import(store)
    }
}
