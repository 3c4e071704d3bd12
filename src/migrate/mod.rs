//! Bulk migration: bring stored documents up to the latest version, as new revisions.
//!
//! Planning is pure (counters say what is pending), execution is a pipeline (one thread scans heads,
//! a rayon pool reads, decodes, steps, validates and encodes, the calling thread commits chunks),
//! and every run is recorded in the ledger. This module never names the storage engine: it works
//! through the store's crate-internal API.

mod executor;
mod failures;
mod fleet;
mod join;
mod ledger;
mod log;
mod options;
mod revert;
mod startup;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::id::{DocId, Revision};
use crate::record::RecordError;
use crate::schema::Schema;
use crate::store::{Collection, StoreError};

pub(crate) use self::ledger::settle_opened;
pub use self::ledger::{RunKind, RunRecord, RunState, WorkerRecord};
pub use self::options::MigrateOptions;
pub use self::revert::RevertReport;
pub(crate) use self::startup::Startups;
pub use self::startup::{
    StartupError, StartupMigration, StartupPolicy, StartupReport, StartupState, StartupStatus,
    MAX_STARTUP_FAILURES,
};

/// How many documents one chunk commits in one atomic batch.
pub(crate) const CHUNK_SIZE: usize = 1000;

/// How many failures a report and a ledger record list; the counts cover all of them.
pub const MAX_REPORTED_FAILURES: usize = 1000;

/// An error of a migration, a revert, or a ledger read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another run or revert is under way on the collection.
    #[error(
        "a migration run ({run}) is already under way on `{collection}`; wait for it or cancel it"
    )]
    RunInProgress {
        /// The collection.
        collection: String,
        /// The run under way.
        run: u64,
    },
    /// The ledger has no run with this id for the collection.
    #[error("no run {run} in the ledger of `{collection}`")]
    UnknownRun {
        /// The collection.
        collection: String,
        /// The run asked for.
        run: u64,
    },
    /// The run cannot be reverted.
    #[error("run {run} of `{collection}` cannot be reverted: {reason}")]
    NotRevertible {
        /// The collection.
        collection: String,
        /// The run asked for.
        run: u64,
        /// Why not.
        reason: &'static str,
    },
    /// A ledger record does not decode.
    #[error("ledger record {run} of `{collection}` is corrupt")]
    Ledger {
        /// The collection.
        collection: String,
        /// The run.
        run: u64,
        /// What is wrong with it.
        #[source]
        source: RecordError,
    },
    /// [`Migration::join`] found a run under way whose settings differ from this migration's.
    #[error(
        "cannot join run {run} of `{collection}`: its {setting} is {theirs}, this migration's is {ours}"
    )]
    JoinMismatch {
        /// The collection.
        collection: String,
        /// The run under way.
        run: u64,
        /// The setting that differs: `limit`, `retry_failed`, `target version` or
        /// `target schema fingerprint`.
        setting: &'static str,
        /// Its value in the run under way.
        theirs: String,
        /// Its value in this migration.
        ours: String,
    },
    /// [`Migration::join`] was asked of a dry run: a dry run writes nothing, so it has no share
    /// of a run to take.
    #[error("a dry run of `{collection}` cannot join a run")]
    DryRunJoin {
        /// The collection.
        collection: String,
    },
    /// The worker threads could not be started.
    #[error("cannot start {threads} migration threads: {message}")]
    Threads {
        /// How many were asked for.
        threads: usize,
        /// The thread pool's error.
        message: String,
    },
}

/// Why one document failed to migrate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureClass {
    /// A step returned an error.
    Step,
    /// A step panicked (the panic was caught).
    Panic,
    /// The stored revision does not decode at its version.
    Decode,
    /// The step's output does not encode, does not decode back as the latest version, or does not
    /// match the latest version's JSON Schema.
    InvalidOutput,
}

impl FailureClass {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureClass::Step => "step",
            FailureClass::Panic => "panic",
            FailureClass::Decode => "decode",
            FailureClass::InvalidOutput => "invalid_output",
        }
    }

    /// The class named `name` (as [`FailureClass::as_str`] writes it).
    pub(crate) fn parse(name: &str) -> Result<Self, RecordError> {
        match name {
            "step" => Ok(FailureClass::Step),
            "panic" => Ok(FailureClass::Panic),
            "decode" => Ok(FailureClass::Decode),
            "invalid_output" => Ok(FailureClass::InvalidOutput),
            _ => Err(RecordError::UnknownFailureClass {
                class: name.to_owned(),
            }),
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One document that failed to migrate. It stays byte-identical and is skipped by later runs until
/// it is written again or a run asks for [`Migration::retry_failed`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Failure {
    /// The document.
    pub id: DocId,
    /// Its head revision, left as it was.
    pub revision: Revision,
    /// The version that revision is stored at.
    pub from_version: u32,
    /// The kind of failure.
    pub class: FailureClass,
    /// The error, as text.
    pub error: String,
}

/// What a run did, or in a dry run, what it would have done.
///
/// `migrated + failed + skipped == scanned`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
#[must_use]
pub struct MigrationReport {
    /// The run's id in the ledger; `None` when nothing was pending, so no run was recorded.
    pub run_id: Option<u64>,
    /// Whether this was a dry run, which wrote no document.
    pub dry_run: bool,
    /// The version documents were migrated to.
    pub to_version: u32,
    /// Candidates taken: documents that needed migration (at most the limit).
    pub scanned: u64,
    /// Documents given a new revision at the latest version.
    pub migrated: u64,
    /// Candidates whose head changed between the scan and the commit (a write came in between).
    pub skipped: u64,
    /// Documents whose migration failed.
    pub failed: u64,
    /// The first [`MAX_REPORTED_FAILURES`] failures.
    pub failures: Vec<Failure>,
    /// How many failures of each class.
    pub failures_by_class: BTreeMap<FailureClass, u64>,
    /// Documents still to migrate after this run (known failures left out).
    pub remaining: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Whether the run was cancelled before it had taken every candidate it could.
    pub cancelled: bool,
}

/// Progress of a run, passed to [`Migration::on_progress`] after each chunk. A worker of a joined
/// run (PostgreSQL) counts the run's chunks, all workers together since it joined, not only its
/// own; its report gives its own share.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// The run's id in the ledger (a dry run has one too), as its report will give it.
    pub run_id: u64,
    /// Candidates handled so far.
    pub done: u64,
    /// Candidates the run expects to handle: the pending count, capped by the limit.
    pub total: u64,
    /// Documents migrated so far.
    pub migrated: u64,
    /// Documents failed so far.
    pub failed: u64,
    /// Candidates skipped so far.
    pub skipped: u64,
    /// Candidates per second since the run started.
    pub rate: f64,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// Cancels a run from another thread; the run stops at the next chunk boundary, and the next
/// [`Migration::execute`] continues where it stopped.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every run holding this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Documents of one version still below the latest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PendingCount {
    /// Documents a run would take.
    pub migratable: u64,
    /// Documents whose migration failed and that runs skip until they are written again.
    pub failed: u64,
}

/// What is left to migrate, per stored version below the latest.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Pending {
    /// Per version.
    pub by_version: BTreeMap<u32, PendingCount>,
}

impl Pending {
    /// Documents a run would take, over every version.
    #[must_use]
    pub fn migratable(&self) -> u64 {
        self.by_version.values().map(|count| count.migratable).sum()
    }

    /// Documents known to fail, over every version.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.by_version.values().map(|count| count.failed).sum()
    }
}

type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Called with a run's id as the run starts (see [`Migration::on_start`]).
pub(crate) type StartFn = Box<dyn FnMut(u64) + Send>;

/// How a migration treats the run under way on its collection (see [`Migration::join`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    /// Refused: [`MigrationError::RunInProgress`].
    No,
    /// Joined where the engine runs runs with many workers; waited for otherwise.
    Wait,
    /// Joined where the engine runs runs with many workers; refused otherwise, as [`No`](Self::No).
    Shared,
}

/// A migration of a collection to its latest version, set up with builder methods and run with
/// [`execute`](Self::execute) or [`dry_run`](Self::dry_run).
#[must_use]
#[allow(clippy::struct_excessive_bools)] // independent builder settings, not a state
pub struct Migration<T> {
    collection: Collection<T>,
    limit: Option<u64>,
    threads: usize,
    on_progress: Option<ProgressFn>,
    /// Told the run's id as soon as it has one (see [`on_start`](Migration::on_start)).
    on_start: Option<StartFn>,
    max_rate: Option<u64>,
    retry_failed: bool,
    validate_output: bool,
    cancel: CancelToken,
    /// What [`run`](Migration::run) does.
    dry_run: bool,
    /// How the run under way is treated (see [`join`](Migration::join)).
    join: Join,
    /// The worker's name in the ledger (see [`worker_name`](Migration::worker_name)).
    worker_name: Option<String>,
}

impl<T> fmt::Debug for Migration<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("collection", &self.collection)
            .field("limit", &self.limit)
            .field("threads", &self.threads)
            .field("max_rate", &self.max_rate)
            .field("retry_failed", &self.retry_failed)
            .field("validate_output", &self.validate_output)
            .field("dry_run", &self.dry_run)
            .field("join", &self.join)
            .finish_non_exhaustive()
    }
}

impl<T: Schema> Migration<T> {
    /// Takes at most `limit` documents that need migration. Repeated runs advance through the
    /// collection (a persisted cursor) until none is left.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Decodes, steps and encodes on this many threads; the machine's parallelism by default.
    /// Results do not depend on it.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Called after every chunk, on the thread that runs the migration. A worker of a joined
    /// run (PostgreSQL) reports the run's progress, all its workers together since this one
    /// joined (as their committed chunks have it), against what was pending as it joined.
    pub fn on_progress(mut self, callback: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(callback));
        self
    }

    /// Commits at most this many documents per second, so live writers are not starved. For a
    /// joined run (PostgreSQL), the rate is the run's: each worker waits while the run as a
    /// whole is ahead of it, so that more workers do not multiply the load.
    pub fn max_rate(mut self, docs_per_second: u64) -> Self {
        self.max_rate = Some(docs_per_second.max(1));
        self
    }

    /// Also takes documents whose migration failed before.
    pub fn retry_failed(mut self) -> Self {
        self.retry_failed = true;
        self
    }

    /// Whether each step's output is checked against the latest version's JSON Schema (on by
    /// default, in dry runs and real runs alike, so that a dry run reports exactly what a run
    /// would). An output that does not match fails its document with
    /// [`FailureClass::InvalidOutput`]. Turning it off saves a JSON conversion per document.
    pub fn validate_output(mut self, validate: bool) -> Self {
        self.validate_output = validate;
        self
    }

    /// Takes `options`: their limit, whether to retry failed documents, whether to
    /// [`join`](Self::join) the run under way, their thread count if they give one, and whether
    /// [`run`](Self::run) is a dry run. Each replaces what an earlier builder call set.
    pub fn options(mut self, options: &MigrateOptions) -> Self {
        self.limit = options.limit;
        self.retry_failed = options.retry_failed;
        if let Some(threads) = options.threads {
            self = self.threads(threads);
        }
        self.dry_run = options.dry_run;
        self.join = if options.join { Join::Wait } else { Join::No };
        self
    }

    /// Joins the run under way on the collection towards the same version, or starts one that
    /// later migrations may join; without it, a run under way is
    /// [`MigrationError::RunInProgress`].
    ///
    /// On PostgreSQL every joined migration (in this process or another) is a worker of one
    /// run: each claims chunks of its own (`FOR UPDATE SKIP LOCKED`), the limit caps the run as
    /// a whole, and the ledger records one run with one [`WorkerRecord`] per worker. Each
    /// worker's report covers its own share (its progress, and `max_rate`, are the run's); the
    /// last worker to leave finishes the run. On sled
    /// (one process), a joiner waits for the run under way to end, then runs on what is left
    /// (a report with no run id when nothing is).
    ///
    /// A joiner's limit, [`retry_failed`](Self::retry_failed) and target schema must equal the
    /// run's ([`MigrationError::JoinMismatch`] names the difference); a dry run does not join
    /// ([`MigrationError::DryRunJoin`]).
    pub fn join(mut self) -> Self {
        self.join = Join::Wait;
        self
    }

    /// Joins a run with many workers where the engine has them; elsewhere, a run under way is
    /// [`MigrationError::RunInProgress`] as without joining (startup migrations wait for it
    /// themselves, saying what they wait for).
    pub(crate) fn join_where_shared(mut self) -> Self {
        self.join = Join::Shared;
        self
    }

    /// The name this worker has in the ledger of a joined run ([`WorkerRecord::instance`]);
    /// `host:pid` by default.
    pub fn worker_name(mut self, name: impl Into<String>) -> Self {
        self.worker_name = Some(name.into());
        self
    }

    /// Called with the run's id as soon as the run is this migration's: a run of this process
    /// once it holds the collection's run lock, a worker once it joined its run; before the run's
    /// first chunk and before its ledger record is saved. Not called when nothing is pending (no
    /// run is recorded) nor for a run that is refused. Crate-internal: the HTTP API registers
    /// the runs it starts with it, so that a request can cancel one by its id.
    // Reached only through `crate::erased`, which the HTTP API and the command line use.
    #[cfg_attr(not(any(feature = "http", feature = "cli")), allow(dead_code))]
    pub(crate) fn on_start(mut self, hook: StartFn) -> Self {
        self.on_start = Some(hook);
        self
    }

    /// Tells [`on_start`](Self::on_start)'s hook that `run` is this migration's run.
    pub(super) fn started(&mut self, run: u64) {
        if let Some(hook) = self.on_start.as_mut() {
            hook(run);
        }
    }

    /// Runs with this token, so that [`CancelToken::cancel`] from another thread stops the run.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// The token that cancels this run.
    #[must_use]
    pub fn canceller(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Migrates: writes every migrated document as a new revision at the latest version, records
    /// failures, moves the cursor, all in atomic chunks.
    ///
    /// # Errors
    ///
    /// [`MigrationError::RunInProgress`] when another run is under way on the collection (unless
    /// [`join`](Self::join)ing it), [`MigrationError::JoinMismatch`] when the run joined has
    /// other settings, and [`MigrationError::Store`] when the store fails (the chunks committed
    /// before stay).
    pub fn execute(self) -> Result<MigrationReport, MigrationError> {
        executor::run(self, false)
    }

    /// Runs every step, encoding and validation exactly as [`execute`](Self::execute) does, and
    /// writes no document and no cursor: the report says what `execute` would do. Recorded in the
    /// ledger as a dry run.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn dry_run(self) -> Result<MigrationReport, MigrationError> {
        executor::run(self, true)
    }

    /// [`dry_run`](Self::dry_run) if the [`options`](Self::options) ask for one, otherwise
    /// [`execute`](Self::execute).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn run(self) -> Result<MigrationReport, MigrationError> {
        let dry_run = self.dry_run;
        executor::run(self, dry_run)
    }
}

impl<T: Schema> Collection<T> {
    /// A migration of this collection to `T`'s version.
    ///
    /// ```
    /// # use revolve::{Schema, Store};
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
    /// # #[schema(collection = "notes", version = 1)]
    /// # struct Note { text: String }
    /// let store = Store::temporary()?;
    /// let notes = store.collection::<Note>()?;
    /// let report = notes.migrate().limit(10_000).execute()?;
    /// assert_eq!(report.remaining, 0);
    /// # Ok::<(), revolve::Error>(())
    /// ```
    pub fn migrate(&self) -> Migration<T> {
        Migration {
            collection: self.clone(),
            limit: None,
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            on_progress: None,
            on_start: None,
            max_rate: None,
            retry_failed: false,
            validate_output: true,
            cancel: CancelToken::new(),
            dry_run: false,
            join: Join::No,
            worker_name: None,
        }
    }

    /// What is left to migrate, from the counters: no scan.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`](crate::StoreError::Backend) when the engine cannot answer.
    pub fn pending(&self) -> Result<Pending, crate::StoreError> {
        let counters = self.counters()?;
        let failed = counters.failed();
        let by_version = counters
            .live()
            .into_iter()
            .filter(|&(version, _)| version < T::VERSION)
            .map(|(version, live)| {
                let failed = failed.get(&version).copied().unwrap_or(0);
                let count = PendingCount {
                    migratable: live.saturating_sub(failed),
                    failed,
                };
                (version, count)
            })
            .collect();
        Ok(Pending { by_version })
    }
}
