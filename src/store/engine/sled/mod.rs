//! The sled engine: one sled database per store, one tree per collection (see `keys` for its
//! layout), `_meta` for collection metadata and `_ledger` for run records.
//!
//! One process has a sled database, so what the protocol leaves to the engine may live in this
//! process's memory here: the counters (written as absolute values, under the collection's write
//! lock), the run mutex, and which run is live.

pub(crate) mod collection;
pub(crate) mod commit;
pub(crate) mod damaged;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod guard;
pub(crate) mod keys;
pub(crate) mod logical;
pub(crate) mod repair;
pub(crate) mod repair_counters;
pub(crate) mod salvage;
pub(crate) mod scan;
pub(crate) mod verify;
pub(crate) mod walk;
pub(crate) mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use self::collection::SledCollection;
use self::commit::GroupCommit;
use self::guard::{Damage, Db, Fault, Health, OpenFault, Tree};
use super::{Bytes, CollectionEngine, Engine, Import, StoreState};
use crate::store::backup::BackupError;
use crate::store::error::{BackendError, CONF_REMEDY, DB_REMEDY, SNAPSHOT_REMEDY};
use crate::store::logical::LogicalRecord;
use crate::store::{Durability, StoreError};
use crate::store::{RepairReport, Store, VerifyReport};

pub(crate) const META_TREE: &str = "_meta";
pub(crate) const LEDGER_TREE: &str = "_ledger";
pub(crate) const COLLECTION_TREE_PREFIX: &str = "c/";

/// How to open a sled store.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) path: Option<PathBuf>,
    pub(crate) temporary: bool,
    pub(crate) cache_capacity: u64,
    pub(crate) durability: Durability,
    pub(crate) lock_timeout: Duration,
}

/// What every collection of a store shares: the database and its durability.
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) commit: GroupCommit,
    durability: Durability,
}

impl Shared {
    /// Returns once the write `ticket` names is as durable as the store's durability says.
    pub(crate) fn durable(&self, ticket: u64) -> Result<(), StoreError> {
        match self.durability {
            Durability::Immediate => self
                .commit
                .wait(ticket, || self.db.flush().map(drop))
                .map_err(backend),
            Durability::Eventual => Ok(()),
        }
    }
}

/// A store on sled.
pub(crate) struct SledEngine {
    pub(crate) shared: Arc<Shared>,
    pub(crate) meta: Tree,
    /// The collections opened so far; its mutex is held while one is opened.
    pub(crate) collections: Mutex<HashMap<String, Arc<SledCollection>>>,
}

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine")
            .field("path", &self.shared.db.health().path())
            .field("durability", &self.shared.durability)
            .finish_non_exhaustive()
    }
}

impl SledEngine {
    /// Opens the database, waiting up to the lock timeout while another process has it.
    pub(crate) fn open(options: Options) -> Result<Self, StoreError> {
        let mut config = ::sled::Config::new()
            .cache_capacity(options.cache_capacity)
            .temporary(options.temporary)
            // Durability is ours to manage: Immediate flushes per write (grouped), Eventual relies
            // on sled's default background flush.
            .flush_every_ms(Some(500));
        if let Some(path) = &options.path {
            config = config.path(path);
        }
        let deadline = Instant::now() + options.lock_timeout;
        let db = loop {
            match guard::open(&config, options.path.as_deref()) {
                Ok(db) => break db,
                Err(OpenFault::Engine(::sled::Error::Io(io)))
                    if io.to_string().contains("could not acquire lock") =>
                {
                    if Instant::now() >= deadline {
                        return Err(StoreError::Locked {
                            path: options.path.unwrap_or_default(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(OpenFault::Engine(other)) => return Err(backend(other)),
                Err(OpenFault::Corrupt(damage)) => return Err(damaged(damage)),
            }
        };
        let db = Db::new(db, Arc::new(Health::new(options.path.clone())));
        let meta = db.open_tree(META_TREE).map_err(backend)?;
        Ok(Self {
            shared: Arc::new(Shared {
                db,
                commit: GroupCommit::default(),
                durability: options.durability,
            }),
            meta,
            collections: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn db(&self) -> &Db {
        &self.shared.db
    }

    /// A collection's engine, opened on first use.
    pub(crate) fn open_collection(&self, name: &str) -> Result<Arc<SledCollection>, StoreError> {
        let mut collections = self.collections.lock();
        if let Some(collection) = collections.get(name) {
            return Ok(Arc::clone(collection));
        }
        let tree = self
            .db()
            .open_tree(format!("{COLLECTION_TREE_PREFIX}{name}"))
            .map_err(backend)?;
        let collection = Arc::new(SledCollection::open(
            name.to_owned(),
            tree,
            Arc::clone(&self.shared),
        )?);
        collections.insert(name.to_owned(), Arc::clone(&collection));
        Ok(collection)
    }

    /// Whether the database holds a tree of this name.
    pub(crate) fn has_tree(&self, name: &[u8]) -> bool {
        self.db().tree_names().iter().any(|tree| &tree[..] == name)
    }

    fn ledger(&self) -> Result<Tree, StoreError> {
        self.db().open_tree(LEDGER_TREE).map_err(backend)
    }
}

impl Engine for SledEngine {
    fn collection(&self, name: &str) -> Result<Arc<dyn CollectionEngine>, StoreError> {
        Ok(self.open_collection(name)?)
    }

    fn collection_names(&self) -> Result<Vec<String>, StoreError> {
        self.meta
            .iter()
            // A name no program could register (not UTF-8) is listed lossily, as before: `verify`
            // reports it, and it must not hide the other collections.
            .map(|entry| {
                let (key, _) = entry.map_err(backend)?;
                Ok(String::from_utf8_lossy(&key).into_owned())
            })
            .collect()
    }

    fn meta(&self, collection: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .meta
            .get(collection)
            .map_err(backend)?
            .map(|bytes| bytes.to_vec()))
    }

    fn put_meta(
        &self,
        collection: &str,
        expected: Option<&[u8]>,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        let swapped = self
            .meta
            .compare_and_swap(collection, expected, Some(bytes))
            .map_err(backend)?;
        if swapped {
            self.flush()?;
        }
        Ok(swapped)
    }

    fn next_run_id(&self) -> Result<u64, StoreError> {
        logical::next_run_id(self)
    }

    fn has_ledger(&self) -> bool {
        self.has_tree(LEDGER_TREE.as_bytes())
    }

    fn put_run(
        &self,
        collection: &str,
        run: u64,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        self.ledger()?
            .insert(keys::ledger(collection, run), bytes)
            .map_err(backend)?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    fn run(&self, collection: &str, run: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .ledger()?
            .get(keys::ledger(collection, run))
            .map_err(backend)?
            .map(|bytes| bytes.to_vec()))
    }

    fn runs(
        &self,
        collection: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let start = keys::ledger(collection, 0);
        let end = before.map_or_else(
            || {
                let mut end = collection.as_bytes().to_vec();
                end.push(1);
                end
            },
            |run| keys::ledger(collection, run),
        );
        self.ledger()?
            .range(start..end)
            .rev()
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry.map_err(backend)?;
                // A malformed key is an error, never some run (it used to read as run 0).
                let run = keys::parse_ledger_key(&key).map_err(|error| StoreError::Corrupt {
                    collection: collection.to_owned(),
                    id: "_ledger".to_owned(),
                    revision: None,
                    source: crate::record::RecordError::InvalidHeader(error.reason),
                })?;
                Ok((run, bytes.to_vec()))
            })
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db().flush().map(drop).map_err(backend)
    }

    fn state(&self) -> StoreState {
        self.db().health().state()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db().size_on_disk().map_err(backend)
    }

    fn verify(
        &self,
        store: &Store,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, StoreError> {
        store.verify_sled(progress)
    }

    fn repair_counters(&self, store: &Store) -> Result<RepairReport, StoreError> {
        store.repair_counters_sled()
    }

    fn export(
        &self,
        store: &Store,
        sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        logical::export_records(store, sink)
    }

    fn import<'a>(&'a self, store: &'a Store) -> Result<Box<dyn Import + 'a>, BackupError> {
        logical::begin_import(store)?;
        Ok(Box::new(logical::SledImport {
            store,
            loader: logical::Loader::new(store)?,
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Wraps a sled error or a guarded call's fault; a function rather than `From` so that sled
/// stays out of the public API.
pub(crate) fn backend(error: impl Into<Fault>) -> StoreError {
    match error.into() {
        Fault::Engine(error) => StoreError::Backend(BackendError::new(error)),
        Fault::Corrupt { file, detail } => StoreError::StorageCorrupt {
            file,
            detail,
            remedy: DB_REMEDY,
        },
        Fault::Poisoned { path, cause } => StoreError::Poisoned { path, cause },
    }
}

/// The error for a damaged file found at open.
pub(crate) fn damaged(damage: Damage) -> StoreError {
    let remedy = if damage.snapshot {
        SNAPSHOT_REMEDY
    } else if damage.file.ends_with("conf") {
        CONF_REMEDY
    } else {
        DB_REMEDY
    };
    StoreError::StorageCorrupt {
        file: damage.file,
        detail: damage.detail,
        remedy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata record is replaced only if it is still what the writer read: registrations by
    /// two programs at once cannot lose one another's schema history.
    #[test]
    fn meta_is_replaced_only_if_unchanged() {
        let store = Store::temporary().unwrap();
        let engine = store.sled().unwrap();
        assert!(engine.put_meta("notes", None, b"first").unwrap());
        // Another writer read nothing: it is refused and writes nothing.
        assert!(!engine.put_meta("notes", None, b"lost").unwrap());
        assert!(!engine.put_meta("notes", Some(b"stale"), b"lost").unwrap());
        assert_eq!(
            engine.meta("notes").unwrap().as_deref(),
            Some(&b"first"[..])
        );
        assert!(engine.put_meta("notes", Some(b"first"), b"second").unwrap());
        assert_eq!(
            engine.meta("notes").unwrap().as_deref(),
            Some(&b"second"[..])
        );
    }

    /// `update_meta` decides on what is stored and decides again when another writer changed
    /// the record between its read and its write.
    #[test]
    fn update_meta_decides_again_after_a_lost_race() {
        let store = Store::temporary().unwrap();
        let engine = store.sled().unwrap();
        let mut seen = Vec::new();
        engine
            .update_meta("notes", &mut |current| {
                seen.push(current.map(<[u8]>::to_vec));
                if current.is_none() {
                    // Another program records first, after this one read.
                    assert!(engine.put_meta("notes", None, b"theirs").unwrap());
                    return Ok(Some(b"lost".to_vec()));
                }
                Ok(Some(b"mine".to_vec()))
            })
            .unwrap();
        assert_eq!(seen, [None, Some(b"theirs".to_vec())]);
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&b"mine"[..]));
        // `None` writes nothing.
        engine.update_meta("notes", &mut |_| Ok(None)).unwrap();
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&b"mine"[..]));
    }

    /// A ledger key that does not parse is an error naming the ledger, never some run (it used
    /// to read as run 0).
    #[test]
    fn a_malformed_ledger_key_is_an_error_not_run_0() {
        let store = Store::temporary().unwrap();
        let engine = store.sled().unwrap();
        engine.put_run("notes", 7, b"record", false).unwrap();
        assert_eq!(engine.runs("notes", None, 10).unwrap()[0].0, 7);
        // A key in the collection's range whose run part is cut short.
        let mut key = keys::ledger("notes", 8);
        key.truncate(key.len() - 3);
        key.push(0xff);
        engine.ledger().unwrap().insert(&key, &b"x"[..]).unwrap();
        let error = engine.runs("notes", None, 10).unwrap_err();
        assert!(
            matches!(&error, StoreError::Corrupt { collection, id, .. }
                if collection == "notes" && id == "_ledger"),
            "{error:?}"
        );
    }
}
