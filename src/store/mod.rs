//! The store protocol: [`Store`], collections, the write rules, registration, migration's store
//! side and the ledger's records, written once against the engine boundary (`engine`). Only
//! `engine/sled/` names its backend; see `docs/design.md` for the map.

mod backup;
mod collection;
pub(crate) mod counters;
pub(crate) mod engine;
pub(crate) mod error;
mod frames;
mod head;
mod iter;
mod logical;
mod migration;
mod registry;
mod report;
mod stats;

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub use self::backup::{BackupError, BackupSummary};
pub use self::collection::{Collection, Document, RawCollection, RawRevision, RevisionInfo};
pub use self::engine::sled::repair::SnapshotRebuild;
pub use self::engine::sled::salvage::{SalvageReport, SalvagedImport};
pub(crate) use self::engine::Head;
pub use self::engine::StoreState;
pub(crate) use self::engine::{
    Action, ChunkItem, Claimed, Commit, EncodedRevision, Ending, FailureRecord, Joined, Left,
    Outcome, PendingChunk, PendingDocument, Position, Prepared, Process, ProgressRecord,
    RunSettings, Seen, Worker, WorkerInfo,
};
pub use self::error::{BackendError, StoreError};
pub use self::iter::Iter;
pub use self::registry::{SchemaEvent, SchemaRecord};
pub use self::report::{
    CounterChange, CounterKind, KeySpace, Problem, RepairReport, VerifyReport,
    MAX_REPORTED_PROBLEMS,
};
pub use self::stats::{CollectionStats, StoreStats};

use self::collection::Core;
use self::engine::sled::SledEngine;
use self::engine::Engine;
use crate::record::DEFAULT_MAX_DEPTH;
use crate::schema::Schema;

/// The sled page cache size unless the builder sets another: 256 MiB.
pub const DEFAULT_CACHE_CAPACITY: u64 = 256 * 1024 * 1024;

/// How long `open` waits for a locked database unless the builder sets another time.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

const MAX_COLLECTION_NAME: usize = 64;

/// When a write is durable.
///
/// sled 0.34 makes a flushed write survive a crash of the process. Its flush writes with
/// `sync_file_range`, not `fsync`, so surviving a power loss or a kernel crash is best effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every write returns after it is flushed; concurrent writers share one flush (group commit).
    #[default]
    Immediate,
    /// Writes return once applied and sled flushes in the background (every 500 ms): for bulk
    /// loads. Call [`Store::flush`] to make everything written so far durable.
    Eventual,
}

/// Opens a [`Store`] with settings other than the defaults.
///
/// ```
/// use revolve::{Durability, Store};
///
/// let store = Store::builder()
///     .temporary(true)
///     .cache_capacity(64 * 1024 * 1024)
///     .durability(Durability::Eventual)
///     .open()?;
/// # Ok::<(), revolve::StoreError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreBuilder {
    path: Option<PathBuf>,
    temporary: bool,
    cache_capacity: u64,
    durability: Durability,
    max_depth: usize,
    lock_timeout: Duration,
    write_back_on_read: bool,
    accepted_changes: BTreeSet<(String, u32)>,
    #[cfg(feature = "postgres")]
    database: Database,
}

/// Where a PostgreSQL store is and how to reach it.
#[cfg(feature = "postgres")]
#[derive(Clone)]
struct Database {
    url: Option<String>,
    schema: Option<String>,
    pool_size: usize,
    checkout_timeout: Duration,
    run_lease: Duration,
    registration_timeout: Duration,
}

#[cfg(feature = "postgres")]
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.url.as_deref().map(engine::postgres::pool::redact_url);
        f.debug_struct("Database")
            .field("url", &url)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("run_lease", &self.run_lease)
            .field("registration_timeout", &self.registration_timeout)
            .finish()
    }
}

#[cfg(feature = "postgres")]
impl Default for Database {
    fn default() -> Self {
        Self {
            url: None,
            schema: None,
            pool_size: 8,
            checkout_timeout: Duration::from_secs(30),
            run_lease: Duration::from_secs(20),
            registration_timeout: Duration::from_secs(60),
        }
    }
}

/// The environment variable [`Store::connect_env`] reads the database URL from.
#[cfg(feature = "postgres")]
pub const DATABASE_URL_VARIABLE: &str = "REVOLVE_DATABASE_URL";

/// The SQL that creates the PostgreSQL layout (every table, index, trigger and the layout
/// version row), as a store creates it on first use; `revolve pg-layout --print` prints it.
///
/// For a role without `CREATE`: an administrator runs it once with the search path set to the
/// store's schema (`SET search_path TO app;`), grants the role `SELECT`, `INSERT`, `UPDATE` and
/// `DELETE` on the tables and `USAGE` on the sequences, and the store then finds the layout and
/// only checks it.
#[cfg(feature = "postgres")]
pub const POSTGRES_LAYOUT: &str = engine::postgres::layout::DDL;

impl Default for StoreBuilder {
    fn default() -> Self {
        Self {
            path: None,
            temporary: false,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            durability: Durability::Immediate,
            max_depth: DEFAULT_MAX_DEPTH,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            write_back_on_read: false,
            accepted_changes: BTreeSet::new(),
            #[cfg(feature = "postgres")]
            database: Database::default(),
        }
    }
}

impl StoreBuilder {
    /// The directory the database lives in; created if missing.
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_owned());
        self
    }

    /// A PostgreSQL database (`postgres://user:password@host:port/database`, with `sslmode`
    /// and the other libpq URL parameters) instead of a directory: see "Choosing an engine" in
    /// the README.
    #[cfg(feature = "postgres")]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.database.url = Some(url.into());
        self
    }

    /// The PostgreSQL schema the store's tables live in, created if missing; by default the
    /// first schema of the connection's search path (`public`). Stores in different schemas of
    /// one database are independent.
    #[cfg(feature = "postgres")]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.database.schema = Some(schema.into());
        self
    }

    /// At most this many connections to PostgreSQL at once (8 by default); a call that finds
    /// them all in use waits for one (see [`checkout_timeout`](Self::checkout_timeout)).
    #[cfg(feature = "postgres")]
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.database.pool_size = connections.max(1);
        self
    }

    /// How long a call waits for a free connection before it fails with
    /// [`StoreError::PoolExhausted`]; 30 s by default.
    #[cfg(feature = "postgres")]
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.database.checkout_timeout = timeout;
        self
    }

    /// How long a migration run's claim on a collection outlives its last renewal on
    /// PostgreSQL (20 s by default; renewed every quarter of it). A process that dies holding a
    /// run frees it after this long, and another may resume the run.
    #[cfg(feature = "postgres")]
    pub fn run_lease(mut self, lease: Duration) -> Self {
        self.database.run_lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How long [`Store::collection`] waits on PostgreSQL while other instances register the
    /// same collection (60 s by default) before it fails with [`StoreError::LockTimeout`]. A
    /// registration holds its lock for one short transaction: a long wait means an instance
    /// stuck inside one (see "Running several instances" in the README).
    #[cfg(feature = "postgres")]
    pub fn registration_timeout(mut self, timeout: Duration) -> Self {
        self.database.registration_timeout = timeout;
        self
    }

    /// A database removed when the store is dropped. Without a path, one in a fresh directory;
    /// with a [`url`](Self::url) and no [`schema`](Self::schema), a fresh schema, dropped with
    /// the store.
    pub fn temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// The page cache size in bytes; [`DEFAULT_CACHE_CAPACITY`] by default.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// When writes are durable; [`Durability::Immediate`] by default.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The deepest MessagePack nesting a stored payload may have (128 by default). Deeper payloads
    /// are refused with an error instead of exhausting the stack.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// How long `open` keeps trying while the database is locked; 2 s by default.
    ///
    /// sled releases a closed database's file lock from its background threads, shortly after the
    /// last handle is dropped, so a program that closes and reopens a store needs a short wait.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Whether [`Collection::get`] writes an upgraded document back: a read of a document stored
    /// at an older version appends a revision at the latest version (origin
    /// [`Origin::UpgradeOnRead`](crate::Origin::UpgradeOnRead)), through the same checked path as
    /// the migrator. Off by default: reads never write.
    pub fn write_back_on_read(mut self, enabled: bool) -> Self {
        self.write_back_on_read = enabled;
        self
    }

    /// Accepts an incompatible change of `collection`'s `version` schema that
    /// [`Store::collection`] would otherwise refuse with [`StoreError::SchemaChanged`]: the escape
    /// hatch for an operator who knows the stored documents still fit. The acceptance is recorded
    /// in the schema history.
    pub fn accept_schema_change(mut self, collection: &str, version: u32) -> Self {
        self.accepted_changes
            .insert((collection.to_owned(), version));
        self
    }

    /// Opens the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process has the database open,
    /// [`StoreError::StorageCorrupt`] naming the damaged file (the `db`, `conf` or a `snap.*`
    /// file) when the storage engine finds corrupt data or panics on it (or its log recovers
    /// short of what its segments hold as written), and
    /// [`StoreError::Backend`] for I/O errors.
    pub fn open(self) -> Result<Store, StoreError> {
        let engine = self.engine()?;
        let startups = Arc::new(crate::migrate::Startups::default());
        Ok(Store {
            _owner: Some(Arc::new(Owner(Arc::clone(&startups)))),
            inner: Arc::new(Inner {
                engine,
                durability: self.durability,
                max_depth: self.max_depth,
                write_back_on_read: self.write_back_on_read,
                accepted_changes: self.accepted_changes,
                collections: Mutex::new(HashMap::new()),
                startups,
            }),
        })
    }
}

impl StoreBuilder {
    fn engine(&self) -> Result<Box<dyn Engine>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(url) = &self.database.url {
            return Ok(Box::new(engine::postgres::PgEngine::open(
                &engine::postgres::Options {
                    url: url.clone(),
                    schema: self.database.schema.clone(),
                    temporary: self.temporary,
                    durability: self.durability,
                    pool_size: self.database.pool_size,
                    checkout_timeout: self.database.checkout_timeout,
                    run_lease: self.database.run_lease,
                    registration_timeout: self.database.registration_timeout,
                },
            )?));
        }
        Ok(Box::new(SledEngine::open(engine::sled::Options {
            path: self.path.clone(),
            temporary: self.temporary,
            cache_capacity: self.cache_capacity,
            durability: self.durability,
            lock_timeout: self.lock_timeout,
        })?))
    }
}

/// A document store: collections of versioned documents in one embedded database.
///
/// Cheap to clone; every clone is the same store. One process at a time may open a database.
/// Dropping the last clone (and the last collection made from it) closes the store; a startup
/// migration running in the background ([`Store::collection_with`]) is cancelled then, and the
/// drop waits for it to stop at its chunk boundary.
///
/// # Damaged files
///
/// Corrupt data the storage engine detects is reported as [`StoreError::StorageCorrupt`],
/// naming the file and a remedy. sled panics on some damage instead; revolve catches such a
/// panic on the calling thread at open, reads and writes and reports it the same way, then
/// *poisons* the store: sled's in-memory state may be half-updated, so every later call on any
/// clone returns [`StoreError::Poisoned`] until the store is opened again, and
/// [`state`](Self::state) says [`StoreState::Poisoned`]. Two kinds of panic are not caught:
/// those on sled's own background threads (flushing, snapshots), and every panic in a build with
/// `panic = "abort"`. The process's panic hook still runs for a caught panic.
#[derive(Clone)]
pub struct Store {
    /// Shared by every handle the program holds (and the collections made from them), not by
    /// the threads of startup migrations: dropping the last one stops those threads (see
    /// [`Owner`]). Declared first, so dropped before `inner`: the store itself then closes on
    /// the thread that dropped it.
    _owner: Option<Arc<Owner>>,
    inner: Arc<Inner>,
}

/// Stops the store's startup migrations when the program drops its last handle of the store:
/// their threads hold handles without an owner, so they never keep the store open, and they stop
/// at a chunk boundary before the store closes.
struct Owner(Arc<crate::migrate::Startups>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stop();
    }
}

pub(crate) struct Inner {
    engine: Box<dyn Engine>,
    durability: Durability,
    max_depth: usize,
    write_back_on_read: bool,
    accepted_changes: BTreeSet<(String, u32)>,
    /// One core per collection name, shared by every handle of that name: the engine's
    /// collection and the type bound to the name live here.
    collections: Mutex<HashMap<String, Arc<Core>>>,
    /// The startup migrations (`Store::collection_with`).
    startups: Arc<crate::migrate::Startups>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` with the default settings.
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder().path(path).open()
    }

    /// Connects to the store in a PostgreSQL database, with the default settings; the tables
    /// are created on first use (see `revolve pg-layout --print` for roles without `CREATE`).
    ///
    /// ```no_run
    /// let store = revolve::Store::connect("postgres://app:secret@db.internal/app")?;
    /// # Ok::<(), revolve::StoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`], [`StoreError::Connect`] when the server cannot be reached or
    /// refuses the login, [`StoreError::LayoutTooNew`] and [`StoreError::LayoutAltered`] when the
    /// tables are not as this program makes them.
    #[cfg(feature = "postgres")]
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().url(url).open()
    }

    /// [`connect`](Self::connect) to the URL in `REVOLVE_DATABASE_URL`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`] when the variable is not set, and as
    /// [`connect`](Self::connect).
    #[cfg(feature = "postgres")]
    pub fn connect_env() -> Result<Self, StoreError> {
        let url = std::env::var(DATABASE_URL_VARIABLE).map_err(|_| StoreError::InvalidUrl {
            reason: format!("{DATABASE_URL_VARIABLE} is not set"),
        })?;
        Self::connect(&url)
    }

    /// A store in a fresh temporary directory, removed when the store is dropped.
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::open`].
    pub fn temporary() -> Result<Self, StoreError> {
        Self::builder().temporary(true).open()
    }

    /// A builder for a store with settings other than the defaults.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// What the store is doing: [`StoreState::Ready`], or [`StoreState::Poisoned`] after the
    /// storage engine panicked on damaged data. For a readiness check.
    #[must_use]
    pub fn state(&self) -> StoreState {
        self.inner.engine.state()
    }

    /// Makes every write so far durable.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the flush fails.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.engine.flush()
    }

    /// The collection of documents of type `T`, the latest version of its chain; documents stored
    /// at older versions of the chain are upgraded when read.
    ///
    /// The first call for a collection in this store checks the chain against what the store
    /// recorded (see `docs/design.md`, "Schema drift"): each version's canonical JSON Schema
    /// fingerprint is compared with the recorded one; a new version is recorded, an unchanged one
    /// costs nothing, a compatible change is tried on stored documents and recorded, and an
    /// incompatible one is refused before anything is read or written. Every handle of a collection
    /// name shares one write lock; one type per name per store.
    ///
    /// # Errors
    ///
    /// [`StoreError::SchemaChanged`] for an incompatible change without a version bump,
    /// [`StoreError::SampleRejected`] for a compatible-looking change stored documents do not
    /// decode with, [`StoreError::VersionNotDefined`] when documents are at a version the chain no
    /// longer defines, [`StoreError::Schema`] for a chain that breaks the rules (only possible with
    /// a hand-written `Schema`), [`StoreError::CollectionTypeMismatch`] when another type has
    /// claimed the name, [`StoreError::InvalidCollectionName`],
    /// [`StoreError::LockTimeout`] on PostgreSQL when other instances held the collection's
    /// registration lock for longer than
    /// `StoreBuilder::registration_timeout`, and
    /// [`StoreError::Backend`].
    pub fn collection<T: Schema>(&self) -> Result<Collection<T>, StoreError> {
        let core = self.core(T::COLLECTION)?;
        core.bind(TypeId::of::<T>(), std::any::type_name::<T>(), || {
            self.register::<T>(&core)
        })?;
        let collection = Collection::new(self.clone(), Arc::clone(&core));
        Self::settled(&core, &collection);
        Ok(collection)
    }

    /// A collection by name, without its types: history and raw payloads, read only.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownCollection`] if no program ever registered it, and
    /// [`StoreError::Backend`].
    pub fn raw_collection(&self, name: &str) -> Result<RawCollection, StoreError> {
        if self.read_meta(name)?.is_none() {
            return Err(StoreError::UnknownCollection {
                collection: name.to_owned(),
            });
        }
        let core = self.core(name)?;
        let collection = RawCollection::new(self.clone(), Arc::clone(&core));
        Self::settled(&core, &collection);
        Ok(collection)
    }

    /// Settles the newest ledger record of a collection the first time it is opened in this
    /// process, before anything can write to it: a run found `running` then stopped with the
    /// process that ran it, and is marked interrupted with the counts on disk before a write can
    /// remove the failure records it left. Reads one ledger record; nothing once done.
    fn settled(core: &Core, collection: &RawCollection) {
        use std::sync::atomic::Ordering;
        if !core.settled.load(Ordering::SeqCst) && crate::migrate::settle_opened(collection) {
            core.settled.store(true, Ordering::SeqCst);
        }
    }

    /// The names of every collection ever registered in this store, sorted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub fn collection_names(&self) -> Result<Vec<String>, StoreError> {
        self.inner.engine.collection_names()
    }

    fn core(&self, name: &str) -> Result<Arc<Core>, StoreError> {
        validate_collection_name(name)?;
        let mut collections = self.inner.collections.lock();
        if let Some(core) = collections.get(name) {
            return Ok(Arc::clone(core));
        }
        let core = Arc::new(Core::new(
            name.to_owned(),
            self.inner.engine.collection(name)?,
        ));
        collections.insert(name.to_owned(), Arc::clone(&core));
        Ok(core)
    }

    /// The sled engine, for what only it offers (its files, its repairs).
    pub(crate) fn sled(&self) -> Result<&SledEngine, StoreError> {
        self.inner
            .engine
            .as_any()
            .downcast_ref()
            .ok_or(StoreError::Unsupported {
                operation: "this operation",
                engine: "this engine",
            })
    }

    /// Runs a call that panics inside the engine (see `revolve::__private::fault::poison`).
    pub(crate) fn panic_in_engine(&self) -> StoreError {
        match self.sled() {
            Ok(sled) => sled.db().panic_in_engine(),
            Err(error) => error,
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn startups(&self) -> &crate::migrate::Startups {
        &self.inner.startups
    }

    /// A handle of this store that does not own it: for a startup migration's thread, which
    /// must not keep the store open (see [`Owner`]).
    fn detached(&self) -> Store {
        Store {
            _owner: None,
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Schema> Collection<T> {
    /// This collection through a handle of the store that does not own it (see [`Owner`]).
    pub(crate) fn detached(&self) -> Collection<T> {
        Collection::new(self.raw.store.detached(), Arc::clone(&self.raw.core))
    }
}

impl Inner {
    /// Whether the builder accepted an incompatible change of this version.
    fn accepts(&self, collection: &str, version: u32) -> bool {
        self.accepted_changes
            .iter()
            .any(|(name, accepted)| name == collection && *accepted == version)
    }
}

fn validate_collection_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_COLLECTION_NAME {
        Some("it is longer than 64 bytes")
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("it must start with an ASCII letter")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("only ASCII letters, digits, `_` and `-` are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidCollectionName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_checked() {
        for good in ["issues", "a", "Issue_2-b"] {
            validate_collection_name(good).unwrap();
        }
        for bad in ["", "_meta", "2issues", "is sues", "a/b", &"x".repeat(65)] {
            assert!(validate_collection_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_second_open_of_one_path_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let second = Store::builder()
            .path(dir.path())
            .lock_timeout(Duration::from_millis(50))
            .open()
            .unwrap_err();
        assert!(matches!(second, StoreError::Locked { .. }), "{second:?}");
    }
}
