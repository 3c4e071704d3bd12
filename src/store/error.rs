//! The store layer's error.

use std::fmt;
use std::path::PathBuf;

use super::collection::RawRevision;
use crate::id::{InvalidId, Revision};
use crate::record::RecordError;
use crate::schema::{Compatibility, SchemaChange, SchemaError};

/// An error of the storage engine, kept opaque so that its type is not part of revolve's API.
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// An error of a [`Store`](crate::Store) or [`Collection`](crate::Collection) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (I/O, or another failure it reported); damaged data is
    /// [`StoreError::StorageCorrupt`] instead.
    #[error("storage engine error")]
    Backend(#[source] BackendError),
    /// The database's files are damaged: the storage engine found corrupt data, or panicked on it
    /// (see [`Store`](crate::Store), "Damaged files"). After a panic the store is poisoned.
    #[error("storage corrupt: {} is damaged ({detail}); {remedy}", file.display())]
    StorageCorrupt {
        /// The file that holds the damage, as far as revolve can tell: the database's `db`,
        /// `conf` or a `snap.*` file.
        file: PathBuf,
        /// What the storage engine reported.
        detail: String,
        /// What the operator can do about it.
        remedy: &'static str,
    },
    /// An earlier call found the storage engine in a state it could not recover from (a panic on
    /// damaged data): every call fails until the store is opened again.
    #[error("store at {} is poisoned by an earlier storage failure ({cause}); reopen it", path.display())]
    Poisoned {
        /// The store's directory.
        path: PathBuf,
        /// The failure that poisoned it.
        cause: String,
    },
    /// A file of the store could not be read, written, copied or moved (by a repair).
    #[error("{what}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A repair moved the store's files and then could not finish: the files as they were
    /// before it are kept in `kept` (see [`Store::rebuild_snapshot`](crate::Store::rebuild_snapshot)).
    #[error("{reason}; the store's files as they were are kept in {}", kept.display())]
    RepairIncomplete {
        /// The directory that keeps the files as they were before the repair.
        kept: PathBuf,
        /// What stopped the repair, and what was and was not put back.
        reason: String,
        /// The failure that stopped it.
        #[source]
        source: Box<StoreError>,
    },
    /// Another process (or another `Store` in this one) has the database open.
    #[error("database at {path} is locked by another process; close it there first")]
    Locked {
        /// The database's path.
        path: PathBuf,
    },
    /// An id breaks the id rules.
    #[error("invalid id {id:?}")]
    InvalidId {
        /// The id, cut to its first 64 characters.
        id: String,
        /// Which rule it breaks.
        #[source]
        source: InvalidId,
    },
    /// A collection name breaks the naming rules.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidCollectionName {
        /// The name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No document has this id, or it was removed.
    #[error("no document `{id}` in `{collection}`")]
    NotFound {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
    },
    /// A document with this id already exists.
    #[error("document `{id}` already exists in `{collection}`")]
    AlreadyExists {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
    },
    /// `update_if` found the document changed since the revision the caller expected.
    #[error(
        "document `{id}` in `{collection}` is at revision {current}, not {expected}; read it again"
    )]
    Conflict {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The document's current revision.
        current: Revision,
    },
    /// A document, or the collection, is at a schema version this program does not define.
    ///
    /// Returned when reading a document stored at a newer version, and for every write once a
    /// newer program has registered a newer version of the collection.
    #[error(
        "`{collection}` holds version {stored}, but this program knows versions up to {known}; run a newer build"
    )]
    VersionTooNew {
        /// The collection.
        collection: String,
        /// The version found in the store.
        stored: u32,
        /// The latest version this program defines.
        known: u32,
    },
    /// Two different types claim the same collection name in one store.
    #[error(
        "collection `{collection}` is registered with `{registered}`; `{requested}` cannot claim it too"
    )]
    CollectionTypeMismatch {
        /// The collection.
        collection: String,
        /// The type it was first opened with.
        registered: &'static str,
        /// The type that asked for it now.
        requested: &'static str,
    },
    /// No collection of this name was ever written in the store.
    #[error("no collection `{collection}` in this store")]
    UnknownCollection {
        /// The name asked for.
        collection: String,
    },
    /// Stored bytes are not a valid record.
    #[error("corrupt record for `{id}` in `{collection}`{}", revision.map(|r| format!(" at revision {r}")).unwrap_or_default())]
    Corrupt {
        /// The collection.
        collection: String,
        /// The document's id.
        id: String,
        /// The revision, when the corrupt record is one.
        revision: Option<Revision>,
        /// What is wrong with it.
        #[source]
        source: RecordError,
    },
    /// A document's head names a revision that is not stored: the store is damaged (a revision
    /// is always written in the same commit as the head that names it, and never removed).
    /// `revolve verify` lists every such document.
    #[error("the head of `{id}` in `{collection}` names revision {revision}, which is missing")]
    DanglingHead {
        /// The collection.
        collection: String,
        /// The document's id.
        id: String,
        /// The revision the head names.
        revision: Revision,
    },
    /// A stored revision could not be brought to the latest version: its payload does not decode,
    /// or a step failed.
    ///
    /// Not a damaged store: the revision is intact, kept as it is, and given here (`raw`) so that
    /// the caller can show it or write a repaired document over it. [`Iter`](crate::Iter) yields
    /// this error for the document and goes on to the next.
    #[error("cannot read `{id}` revision {revision} (version {stored_version}) in `{collection}`")]
    Upgrade {
        /// The collection.
        collection: String,
        /// The document's id.
        id: String,
        /// The revision read.
        revision: Revision,
        /// The schema version the revision is stored at.
        stored_version: u32,
        /// The revision exactly as stored. Its `payload` is `None` when the stored bytes are not
        /// MessagePack at all; `bytes` holds them either way.
        raw: Box<RawRevision>,
        /// Why it failed. Boxed, as `raw` is, so that every `Result` of the store stays small.
        #[source]
        source: Box<SchemaError>,
    },
    /// A document could not be encoded for writing.
    #[error("cannot encode a `{collection}` document")]
    Encode {
        /// The collection.
        collection: String,
        /// What went wrong.
        #[source]
        source: RecordError,
    },
    /// A version's schema changed incompatibly without a new version.
    #[error("{}", schema_changed_message(collection, *version, *latest, changes))]
    SchemaChanged {
        /// The collection.
        collection: String,
        /// The version whose schema changed.
        version: u32,
        /// The latest version the program defines.
        latest: u32,
        /// Every change, classified; at least one is breaking.
        changes: Vec<SchemaChange>,
    },
    /// A version's schema changed in a way classified compatible, but a stored document of that
    /// version does not decode with the new definition.
    #[error(
        "schema of `{collection}` version {version} changed, and stored document `{id}` no longer decodes with it; bump the version and add a step"
    )]
    SampleRejected {
        /// The collection.
        collection: String,
        /// The version.
        version: u32,
        /// The document that does not decode.
        id: String,
        /// The changes found.
        changes: Vec<SchemaChange>,
        /// Why it does not decode.
        #[source]
        source: Box<SchemaError>,
    },
    /// Documents are stored at a version older than the oldest this program defines.
    #[error(
        "{documents} documents of `{collection}` are stored at version {version}, which this program no longer defines; migrate them with a build that still defines it"
    )]
    VersionNotDefined {
        /// The collection.
        collection: String,
        /// The version.
        version: u32,
        /// How many live documents are at it.
        documents: u64,
    },
    /// The store's engine does not offer this operation (a sled-only repair on another engine).
    #[error("{operation} is not supported by {engine}")]
    Unsupported {
        /// What was asked.
        operation: &'static str,
        /// The engine.
        engine: &'static str,
    },
    /// Every connection of the pool stayed in use for as long as a caller may wait for one.
    #[error("no database connection came free within {waited:?} (pool of {size}); raise the pool size or lower the load")]
    PoolExhausted {
        /// The pool's size.
        size: usize,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// The database could not be reached or refused the connection: nothing listens there, the
    /// password is wrong, the database does not exist. `target` names the server without the
    /// password.
    #[error("cannot connect to {target}")]
    Connect {
        /// `user@host:port/database`.
        target: String,
        /// What the server or the network said.
        #[source]
        source: BackendError,
    },
    /// The database URL does not parse.
    #[error("invalid database URL: {reason}")]
    InvalidUrl {
        /// Why.
        reason: String,
    },
    /// The connection to the database was lost (the server restarted or the network failed);
    /// what the statement under way did is rolled back.
    #[error("the connection to the database was lost")]
    ConnectionLost {
        /// What the client saw.
        #[source]
        source: BackendError,
    },
    /// The database cancelled a statement that ran longer than its `statement_timeout`, or that
    /// waited for a lock longer than its `lock_timeout`.
    #[error("the database cancelled a statement that ran past its timeout")]
    Timeout {
        /// What the server said.
        #[source]
        source: BackendError,
    },
    /// A lock that orders work across instances stayed held by another instance for longer than
    /// this one waits (on PostgreSQL, the lock under which a collection's versions are
    /// registered: see `StoreBuilder::registration_timeout`, feature `postgres`);
    /// nothing was recorded.
    #[error("{what} waited {waited:?} for a lock another instance held, and gave up; nothing was recorded")]
    LockTimeout {
        /// What waited, naming the collection.
        what: String,
        /// How long it waited, over every attempt.
        waited: std::time::Duration,
        /// What the server said of the last attempt.
        #[source]
        source: BackendError,
    },
    /// Concurrent transactions kept conflicting (serialization failure or deadlock) after a
    /// retry; nothing of the write was applied.
    #[error("the write kept conflicting with concurrent writes; nothing was applied, try again")]
    Contention {
        /// What the server said.
        #[source]
        source: BackendError,
    },
    /// A migration or revert run's lease on its collection passed to another run (its process
    /// stopped renewing it for longer than the lease): the run stops at a chunk boundary, and
    /// nothing of the chunk was written.
    #[error(
        "run {run} of `{collection}` lost its lease to another run; it stopped at a chunk boundary"
    )]
    RunLeaseLost {
        /// The collection.
        collection: String,
        /// The run.
        run: u64,
    },
    /// A worker of a joined run (see [`Migration::join`](crate::Migration::join)) did not renew
    /// its lease in time (its process stalled for longer than the lease): it cannot write as the
    /// run any more, its open chunk was rolled back, and the run's other workers take over what
    /// it had not committed.
    #[error(
        "a worker of run {run} of `{collection}` let its lease expire; its open chunk was rolled back and it stopped"
    )]
    WorkerLeaseLost {
        /// The collection.
        collection: String,
        /// The run.
        run: u64,
    },
    /// The store's tables were made by a newer revolve: this program refuses to touch them.
    #[error("the store's layout is version {found}, newer than this program knows ({known}); upgrade revolve")]
    LayoutTooNew {
        /// The layout version recorded in the store.
        found: u32,
        /// The newest this program knows.
        known: u32,
    },
    /// One of the store's tables is not as revolve made it (altered by hand).
    #[error("the store's table `{table}` is not as revolve made it: {detail}")]
    LayoutAltered {
        /// The table.
        table: String,
        /// What differs.
        detail: String,
    },
    /// The type's schema chain is invalid.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl StoreError {
    pub(super) fn invalid_id(id: &str, source: InvalidId) -> Self {
        Self::InvalidId {
            id: id.chars().take(64).collect(),
            source,
        }
    }
}

/// What to do about a damaged `db` file.
pub(crate) const DB_REMEDY: &str =
    "run `revolve verify` to name the affected documents, `revolve export --salvage` to save what is readable, or restore a backup";
/// What to do about a damaged snapshot.
pub(crate) const SNAPSHOT_REMEDY: &str =
    "run `revolve repair --rebuild-snapshot <store>` to move it aside and rebuild it from the log";
/// What to do about a damaged `conf` file.
pub(crate) const CONF_REMEDY: &str =
    "restore the file from a copy of the store, or restore a backup";

fn schema_changed_message(
    collection: &str,
    version: u32,
    latest: u32,
    changes: &[SchemaChange],
) -> String {
    use std::fmt::Write as _;
    let mut message = format!(
        "schema of `{collection}` version {version} changed incompatibly since it was recorded; stored documents may no longer read:"
    );
    for change in changes
        .iter()
        .filter(|change| change.compatibility == Compatibility::Breaking)
    {
        let path = if change.path.is_empty() {
            "/"
        } else {
            &change.path
        };
        let _ = write!(
            message,
            "\n  {path}: {} -> {} — {}",
            change.old.as_deref().unwrap_or("(none)"),
            change.new.as_deref().unwrap_or("(none)"),
            change.reason
        );
    }
    let _ = write!(
        message,
        "\nto fix: put version {version} back as it was and declare the new layout as version {} with `from` and a `step`;\nor, if every stored document is known to fit: Store::builder().accept_schema_change({collection:?}, {version})",
        latest + 1
    );
    message
}
