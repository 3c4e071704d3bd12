//! Startup policies: what [`Store::collection_with`] does about documents stored below the latest
//! version when a program opens a collection: nothing (they are upgraded when read), a migration
//! on a thread of its own while the program serves, or a migration the call waits for.
//!
//! Every migration here is an ordinary run ([`Collection::migrate`]), made by [`migration`]; a run
//! of another instance under way is waited for (its lease polled), then whatever is still pending
//! is migrated, until nothing is.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{CancelToken, Failure, Migration, MigrationError, MigrationReport};
use crate::schema::Schema;
use crate::store::{Collection, Store, StoreError};

/// How many failures a [`StartupReport`] lists; [`StartupReport::known_failed`] counts them all.
pub const MAX_STARTUP_FAILURES: usize = 100;

/// How often a startup migration checks whether another instance's run is still under way.
const POLL: Duration = Duration::from_millis(100);

/// What [`Store::collection_with`] does about documents stored at an older version of the
/// collection's chain.
///
/// - [`Lazy`](Self::Lazy) (the default, and what [`Store::collection`] does): nothing; old
///   documents are upgraded in memory when read, and a migration runs when someone asks for one.
/// - [`MigrateInBackground`](Self::MigrateInBackground): the collection is returned at once and
///   serves (old documents are upgraded when read meanwhile); a thread migrates what is pending.
///   Its progress is [`Store::startup_migrations`], and the HTTP router's `GET /readyz` lists it
///   under `migrating`.
/// - [`MigrateBeforeServing`](Self::MigrateBeforeServing): the call returns once nothing is
///   pending, with a report listing the documents whose migration failed.
///
/// A run of another instance (or thread) under way on the collection is waited for, then what is
/// still pending is migrated. The recommendation for a service is `MigrateInBackground` with the
/// readiness route: a start that blocks on a long migration behind a liveness probe makes the
/// orchestrator kill and restart the instance, over and over.
///
/// ```
/// use revolve::{Schema, StartupPolicy, StartupState, Store};
/// use std::time::Duration;
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
/// #[schema(collection = "notes", version = 1)]
/// struct NoteV1 { text: String }
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
/// #[schema(collection = "notes", version = 2, from = NoteV1)]
/// struct NoteV2 { text: String, pinned: bool }
///
/// impl From<NoteV1> for NoteV2 {
///     fn from(old: NoteV1) -> Self {
///         Self { text: old.text, pinned: false }
///     }
/// }
///
/// # let dir = tempfile::tempdir()?;
/// # {
/// #     let store = Store::open(dir.path())?;
/// #     store.collection::<NoteV1>()?.insert(&NoteV1 { text: "old".into() })?;
/// # }
/// let store = Store::open(dir.path())?;
/// // Serve at once; the thread migrates the version 1 notes meanwhile.
/// let (notes, report) = store.collection_with::<NoteV2>(StartupPolicy::MigrateInBackground)?;
/// let background = report.background.expect("a background migration");
/// let status = background.wait(Duration::from_secs(30));
/// assert_eq!(status.state, StartupState::Done);
/// assert_eq!(notes.pending()?.migratable(), 0);
///
/// // Or wait, and refuse to start with documents that failed to migrate.
/// let (notes, report) = store.collection_with::<NoteV2>(StartupPolicy::MigrateBeforeServing)?;
/// let report = report.require_clean()?;
/// assert_eq!(report.remaining, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartupPolicy {
    /// Register the collection; documents at older versions are upgraded when read.
    #[default]
    Lazy,
    /// Return the collection at once; a named thread (`revolve-startup`) migrates what is
    /// pending while the program serves.
    MigrateInBackground,
    /// Return once nothing is pending, with a report listing failures.
    ///
    /// A run under way in another instance is waited for while its lease is live, without a
    /// deadline: an instance whose step hangs (its lease is still renewed) holds every start
    /// up. Cancel through [`Store::startup_migrations`] from another thread, or prefer
    /// `MigrateInBackground` behind a readiness check.
    MigrateBeforeServing,
}

/// What [`Store::collection_with`] did.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
#[must_use]
pub struct StartupReport {
    /// The collection.
    pub collection: String,
    /// The policy it was opened with.
    pub policy: StartupPolicy,
    /// The collection's latest version.
    pub to_version: u32,
    /// The runs this call ran, in order (`MigrateBeforeServing`).
    pub runs: Vec<u64>,
    /// Runs of another instance or thread this call waited for.
    pub waited_for: Vec<u64>,
    /// Documents this call's runs migrated.
    pub migrated: u64,
    /// Documents this call's runs skipped (written meanwhile).
    pub skipped: u64,
    /// Documents whose migration failed in this call's runs.
    pub failed: u64,
    /// Documents at an older version whose migration failed, in this call's runs or earlier
    /// ones, when the call returned: runs skip them until they are written again or a run
    /// retries them, and reading one fails as its migration did.
    pub known_failed: u64,
    /// The first [`MAX_STARTUP_FAILURES`] of those, in id order.
    pub failures: Vec<Failure>,
    /// Documents still to migrate when the call returned (known failures left out): 0 after
    /// `MigrateBeforeServing`, unless it was cancelled, stopped on counts that disagree with
    /// the documents (see the log), or a newer program owns the migration
    /// ([`superseded_by`](Self::superseded_by)); [`require_clean`](Self::require_clean) tells.
    pub remaining: u64,
    /// The newest version registered for the collection when a newer program did so: this
    /// program may read but not write, and that program's instances migrate (during a rolling
    /// upgrade, say).
    pub superseded_by: Option<u32>,
    /// How long the call took.
    pub elapsed: Duration,
    /// The migration on its own thread, for `MigrateInBackground`.
    pub background: Option<StartupMigration>,
}

impl StartupReport {
    fn new(collection: &str, policy: StartupPolicy, to_version: u32) -> Self {
        Self {
            collection: collection.to_owned(),
            policy,
            to_version,
            runs: Vec::new(),
            waited_for: Vec::new(),
            migrated: 0,
            skipped: 0,
            failed: 0,
            known_failed: 0,
            failures: Vec::new(),
            remaining: 0,
            superseded_by: None,
            elapsed: Duration::ZERO,
            background: None,
        }
    }

    /// The report, or [`StartupError::Failures`] when documents of the collection failed to
    /// migrate ([`known_failed`](Self::known_failed) is not zero), naming how many and the first;
    /// after `MigrateBeforeServing`, [`StartupError::Incomplete`] when documents are still to
    /// migrate ([`remaining`](Self::remaining)) and no newer program owns the migration.
    ///
    /// # Errors
    ///
    /// [`StartupError::Failures`], [`StartupError::Incomplete`].
    pub fn require_clean(self) -> Result<Self, StartupError> {
        if self.known_failed > 0 {
            return Err(StartupError::Failures {
                collection: self.collection,
                to_version: self.to_version,
                failed: self.known_failed,
                first: self.failures.into_iter().next().map(Box::new),
            });
        }
        if self.policy == StartupPolicy::MigrateBeforeServing
            && self.remaining > 0
            && self.superseded_by.is_none()
        {
            return Err(StartupError::Incomplete {
                collection: self.collection,
                to_version: self.to_version,
                remaining: self.remaining,
            });
        }
        Ok(self)
    }
}

/// An error of [`Store::collection_with`] or [`StartupReport::require_clean`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// Opening the collection failed (as [`Store::collection`] fails).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The migration failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// Documents failed to migrate and stay at an older version.
    #[error("{}", failures_message(collection, *to_version, *failed, first.as_deref()))]
    Failures {
        /// The collection.
        collection: String,
        /// The version they could not be migrated to.
        to_version: u32,
        /// How many documents.
        failed: u64,
        /// The first of them, in id order.
        first: Option<Box<Failure>>,
    },
    /// `MigrateBeforeServing` returned with documents still to migrate: it was cancelled, or it
    /// stopped because a run took nothing while the counts said documents were pending (the log
    /// says which; `repair_counters` mends counts).
    #[error(
        "{remaining} documents of `{collection}` are still to migrate to version {to_version}: \
         the startup migration was cancelled or stopped early (see the log)"
    )]
    Incomplete {
        /// The collection.
        collection: String,
        /// The version they are to be migrated to.
        to_version: u32,
        /// How many documents.
        remaining: u64,
    },
    /// The background migration panicked outside the steps (whose panics fail their document
    /// only): a bug of revolve's or of a `Serialize`/`Deserialize` implementation.
    #[error("the startup migration of `{collection}` panicked: {message}")]
    Panicked {
        /// The collection.
        collection: String,
        /// What the panic said.
        message: String,
    },
}

fn failures_message(
    collection: &str,
    to_version: u32,
    failed: u64,
    first: Option<&Failure>,
) -> String {
    let first = first.map_or_else(String::new, |first| {
        format!(
            " (the first: `{}` at version {}, {}: {})",
            first.id, first.from_version, first.class, first.error
        )
    });
    format!(
        "{failed} documents of `{collection}` failed to migrate to version {to_version}{first}; \
         fix them or the step, then migrate with retry_failed"
    )
}

/// Where a startup migration is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartupState {
    /// Migrating, or waiting for another instance's run.
    Migrating,
    /// Nothing is pending (documents that failed aside: see [`StartupStatus::failed`]).
    Done,
    /// The migration stopped on an error; documents not migrated are upgraded when read, and
    /// the next start (or any run) continues.
    Failed {
        /// The error.
        error: String,
    },
    /// Stopped at a chunk boundary: [`StartupMigration::cancel`], or every handle of the store
    /// was dropped.
    Cancelled,
    /// A newer program registered version `newer` (a rolling upgrade): its instances migrate,
    /// this one serves reads and leaves documents as they are.
    Superseded {
        /// The newest registered version.
        newer: u32,
    },
}

/// A startup migration's progress, as [`Store::startup_migrations`] lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct StartupStatus {
    /// The collection.
    pub collection: String,
    /// The policy it was started by.
    pub policy: StartupPolicy,
    /// The version documents are migrated to.
    pub to_version: u32,
    /// Where it is.
    #[serde(flatten)]
    pub state: StartupState,
    /// The run of another instance or thread it is waiting for.
    pub waiting_for: Option<u64>,
    /// The runs it ran, the last one under way while migrating.
    pub runs: Vec<u64>,
    /// Candidates handled so far by its runs.
    pub done: u64,
    /// Candidates its runs expect to handle, so far.
    pub total: u64,
    /// Documents migrated so far.
    pub migrated: u64,
    /// Documents failed so far.
    pub failed: u64,
    /// Documents skipped so far (written meanwhile).
    pub skipped: u64,
}

/// A handle on a startup migration: its status, a wait for its end, and cancel. Cheap to clone;
/// it does not keep the store open.
#[derive(Clone)]
pub struct StartupMigration(Arc<Shared>);

struct Shared {
    status: Mutex<StartupStatus>,
    changed: Condvar,
    cancel: CancelToken,
}

impl fmt::Debug for StartupMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StartupMigration")
            .field(&*self.0.status.lock())
            .finish()
    }
}

/// Serialized as its [`status`](StartupMigration::status).
impl serde::Serialize for StartupMigration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.status().serialize(serializer)
    }
}

impl StartupMigration {
    fn new(collection: &str, policy: StartupPolicy, to_version: u32) -> Self {
        Self(Arc::new(Shared {
            status: Mutex::new(StartupStatus {
                collection: collection.to_owned(),
                policy,
                to_version,
                state: StartupState::Migrating,
                waiting_for: None,
                runs: Vec::new(),
                done: 0,
                total: 0,
                migrated: 0,
                failed: 0,
                skipped: 0,
            }),
            changed: Condvar::new(),
            cancel: CancelToken::new(),
        }))
    }

    /// Its progress now.
    #[must_use]
    pub fn status(&self) -> StartupStatus {
        self.0.status.lock().clone()
    }

    /// Whether it has ended (done, failed or cancelled).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.0.status.lock().state != StartupState::Migrating
    }

    /// Waits until it has ended or `timeout` has passed, and returns its status then.
    #[must_use]
    pub fn wait(&self, timeout: Duration) -> StartupStatus {
        // A timeout too long to add to now waits without a deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut status = self.0.status.lock();
        while status.state == StartupState::Migrating {
            match deadline {
                Some(deadline) => {
                    if self.0.changed.wait_until(&mut status, deadline).timed_out() {
                        break;
                    }
                }
                None => self.0.changed.wait(&mut status),
            }
        }
        status.clone()
    }

    /// Stops it at the next chunk boundary (or its wait for another run); what it committed
    /// stays, and the next start continues.
    pub fn cancel(&self) {
        self.0.cancel.cancel();
        let _status = self.0.status.lock();
        self.0.changed.notify_all();
    }

    fn update(&self, change: impl FnOnce(&mut StartupStatus)) {
        change(&mut self.0.status.lock());
        self.0.changed.notify_all();
    }

    /// Sleeps for one poll interval, or less if cancelled; whether it was cancelled.
    fn pause(&self) -> bool {
        let mut status = self.0.status.lock();
        if !self.0.cancel.is_cancelled() {
            let _ = self.0.changed.wait_for(&mut status, POLL);
        }
        self.0.cancel.is_cancelled()
    }

    fn collection(&self) -> String {
        self.0.status.lock().collection.clone()
    }
}

/// The startup migrations of one store, and their threads. Every user handle of the store shares
/// an owner that stops them when the last one is dropped (see `Store`).
#[derive(Default)]
pub(crate) struct Startups {
    jobs: Mutex<Vec<Job>>,
}

struct Job {
    migration: StartupMigration,
    thread: Option<JoinHandle<()>>,
}

impl Startups {
    /// Every startup migration this store has made, oldest first.
    pub(crate) fn list(&self) -> Vec<StartupMigration> {
        self.jobs
            .lock()
            .iter()
            .map(|job| job.migration.clone())
            .collect()
    }

    /// The background migration of `migration`'s collection under way, or `migration`, started
    /// by `spawn`: under one lock, so that two opens at once start one.
    fn background(
        &self,
        migration: StartupMigration,
        spawn: impl FnOnce(StartupMigration) -> std::io::Result<JoinHandle<()>>,
    ) -> std::io::Result<StartupMigration> {
        let collection = migration.collection();
        let mut jobs = self.jobs.lock();
        let active = jobs.iter().map(|job| &job.migration).find(|job| {
            let status = job.0.status.lock();
            status.collection == collection
                && status.policy == StartupPolicy::MigrateInBackground
                && status.state == StartupState::Migrating
        });
        if let Some(active) = active {
            return Ok(active.clone());
        }
        let thread = spawn(migration.clone())?;
        let ended = Self::replace(&mut jobs, &collection, migration.clone(), Some(thread));
        drop(jobs);
        join_ended(ended);
        Ok(migration)
    }

    /// The newest migration of `collection`, if any.
    pub(crate) fn of(&self, collection: &str) -> Option<StartupMigration> {
        self.jobs
            .lock()
            .iter()
            .rev()
            .map(|job| &job.migration)
            .find(|migration| migration.0.status.lock().collection == collection)
            .cloned()
    }

    /// Adds a migration, in place of the ended ones of its collection.
    fn add(&self, migration: StartupMigration) {
        let collection = migration.collection();
        let ended = Self::replace(&mut self.jobs.lock(), &collection, migration, None);
        join_ended(ended);
    }

    /// Puts `migration` in place of the ended ones of its collection, and returns their
    /// threads, to be joined once the list is unlocked: an ended thread may still hold a handle
    /// of the store for a moment, and the store must not close on it after its last drop.
    fn replace(
        jobs: &mut Vec<Job>,
        collection: &str,
        migration: StartupMigration,
        thread: Option<JoinHandle<()>>,
    ) -> Vec<JoinHandle<()>> {
        let mut ended = Vec::new();
        jobs.retain_mut(|job| {
            let keep = {
                let status = job.migration.0.status.lock();
                status.collection != collection || status.state == StartupState::Migrating
            };
            if !keep {
                ended.extend(job.thread.take());
            }
            keep
        });
        jobs.push(Job { migration, thread });
        ended
    }

    /// Cancels every migration and waits for their threads to stop: each stops at its next chunk
    /// boundary.
    pub(crate) fn stop(&self) {
        let threads: Vec<JoinHandle<()>> = {
            let mut jobs = self.jobs.lock();
            jobs.iter_mut()
                .filter_map(|job| {
                    job.migration.cancel();
                    job.thread.take()
                })
                .collect()
        };
        let current = std::thread::current().id();
        for thread in threads {
            // A startup thread never holds an owning handle, so never stops itself; were it to,
            // joining itself would deadlock, so it is left to end on its own.
            if thread.thread().id() != current && thread.join().is_err() {
                tracing::error!("a startup migration thread panicked");
            }
        }
    }
}

impl Store {
    /// The collection of documents of type `T`, as [`collection`](Self::collection) opens it,
    /// then what `policy` asks for documents stored at older versions: see [`StartupPolicy`].
    ///
    /// Opening a collection whose background migration is under way in this store does not start
    /// another: the report names the one under way.
    ///
    /// # Errors
    ///
    /// [`StartupError::Store`] as [`collection`](Self::collection) fails; for
    /// `MigrateBeforeServing`, [`StartupError::Migration`] when a run fails (the chunks it
    /// committed stay). Failed documents are not an error: see
    /// [`StartupReport::require_clean`].
    pub fn collection_with<T: Schema>(
        &self,
        policy: StartupPolicy,
    ) -> Result<(Collection<T>, StartupReport), StartupError> {
        let started = Instant::now();
        let collection = self.collection::<T>()?;
        let mut report = StartupReport::new(collection.name(), policy, T::VERSION);
        match policy {
            StartupPolicy::Lazy => {}
            StartupPolicy::MigrateInBackground => {
                report.background = Some(self.background(&collection)?);
            }
            StartupPolicy::MigrateBeforeServing => {
                let migration = StartupMigration::new(collection.name(), policy, T::VERSION);
                self.startups().add(migration.clone());
                let result = migrate_all(&collection, &migration, &mut report);
                finish(&migration, collection.name(), &result, report.superseded_by);
                result?;
            }
        }
        let pending = collection.pending()?;
        report.remaining = pending.migratable();
        report.known_failed = pending.failed();
        if report.known_failed > 0 {
            report.failures = collection.failures_page(None, MAX_STARTUP_FAILURES)?;
        }
        report.elapsed = started.elapsed();
        Ok((collection, report))
    }

    /// Every startup migration of this store (one per collection, the newest), oldest first:
    /// background ones under way and ended, and `MigrateBeforeServing` ones while their call
    /// waits.
    #[must_use]
    pub fn startup_migrations(&self) -> Vec<StartupMigration> {
        self.startups().list()
    }

    /// Starts the background migration of `collection`, unless one is under way.
    fn background<T: Schema>(
        &self,
        collection: &Collection<T>,
    ) -> Result<StartupMigration, StartupError> {
        let migration = StartupMigration::new(
            collection.name(),
            StartupPolicy::MigrateInBackground,
            T::VERSION,
        );
        // The thread's handle does not own the store: dropping every handle the program holds
        // cancels the thread and waits for it (see `Store`), instead of the thread keeping the
        // store open.
        let detached = collection.detached();
        self.startups()
            .background(migration, move |handle| {
                std::thread::Builder::new()
                    .name("revolve-startup".to_owned())
                    .spawn(move || background_thread(&detached, &handle))
            })
            .map_err(|source| {
                StartupError::Store(StoreError::Io {
                    what: format!(
                        "cannot start the thread of the startup migration of `{}`",
                        collection.name()
                    ),
                    source,
                })
            })
    }
}

impl<T: Schema> Collection<T> {
    /// This collection's startup migration in this store (the newest, background or
    /// before-serving), if it was opened with one: see [`Store::collection_with`].
    #[must_use]
    pub fn startup_migration(&self) -> Option<StartupMigration> {
        self.store().startups().of(self.name())
    }
}

fn background_thread<T: Schema>(collection: &Collection<T>, migration: &StartupMigration) {
    let name = collection.name().to_owned();
    tracing::info!(collection = %name, "startup migration started in the background");
    let mut report = StartupReport::new(&name, StartupPolicy::MigrateInBackground, T::VERSION);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        migrate_all(collection, migration, &mut report)
    }))
    .unwrap_or_else(|panic| {
        Err(StartupError::Panicked {
            collection: name.clone(),
            message: crate::schema::panic_message(panic.as_ref()).to_owned(),
        })
    });
    let result = result.and_then(|cancelled| {
        if cancelled || report.superseded_by.is_some() {
            return Ok(cancelled);
        }
        // Done means nothing is pending: a run that took nothing while documents are pending
        // (counters that disagree with the heads) stopped the loop, and says so.
        let left = collection.pending()?.migratable();
        if left > 0 {
            return Err(StartupError::Incomplete {
                collection: name.clone(),
                to_version: T::VERSION,
                remaining: left,
            });
        }
        Ok(false)
    });
    finish(migration, &name, &result, report.superseded_by);
}

/// Records how a startup migration ended, and logs it.
fn finish(
    migration: &StartupMigration,
    collection: &str,
    result: &Result<bool, StartupError>,
    superseded_by: Option<u32>,
) {
    let state = match result {
        Ok(true) => StartupState::Cancelled,
        Ok(false) => superseded_by.map_or(StartupState::Done, |newer| StartupState::Superseded {
            newer,
        }),
        // The error's own message: its sources may quote stored values (see the logs in
        // `docs/design.md`), so the whole chain is a debug event only.
        Err(error) => StartupState::Failed {
            error: error.to_string(),
        },
    };
    match &state {
        StartupState::Failed { error: message } => {
            tracing::error!(collection, error = %message, "startup migration failed");
            if let Err(error) = result {
                tracing::debug!(
                    collection,
                    error = %crate::error::format::chain(error),
                    "startup migration failed"
                );
            }
        }
        StartupState::Cancelled => tracing::info!(collection, "startup migration cancelled"),
        StartupState::Superseded { newer } => {
            tracing::info!(
                collection,
                newer,
                "startup migration left to a newer program"
            );
        }
        _ => {
            let status = migration.status();
            tracing::info!(
                collection,
                migrated = status.migrated,
                failed = status.failed,
                skipped = status.skipped,
                "startup migration done"
            );
        }
    }
    migration.update(|status| {
        status.state = state;
        status.waiting_for = None;
    });
}

/// The run a startup migration starts: it joins the run under way (on PostgreSQL every instance
/// is a worker of one run; on sled it waits for the run of this process), so the wait in
/// [`migrate_all`] is only for runs that cannot be joined (a revert, a run with other settings).
fn migration<T: Schema>(collection: &Collection<T>, cancel: &CancelToken) -> Migration<T> {
    collection
        .migrate()
        .join_where_shared()
        .cancel_token(cancel.clone())
}

/// Migrates until nothing is pending: runs, and waits for another's run under way. `Ok(true)`
/// when cancelled.
fn migrate_all<T: Schema>(
    collection: &Collection<T>,
    migration: &StartupMigration,
    report: &mut StartupReport,
) -> Result<bool, StartupError> {
    let cancel = migration.0.cancel.clone();
    loop {
        if cancel.is_cancelled() {
            return Ok(true);
        }
        if collection.pending()?.migratable() == 0 {
            return Ok(false);
        }
        // A newer program's version (the run's first check) is `superseded`, below.
        let handle = migration.clone();
        // What earlier runs did: this run's progress counts from there.
        let (base_done, base_total) = {
            let status = handle.0.status.lock();
            (status.done, status.total)
        };
        let run = self::migration(collection, &cancel).on_progress(move |progress| {
            handle.update(|status| {
                if status.runs.last() != Some(&progress.run_id) {
                    status.runs.push(progress.run_id);
                }
                status.done = base_done + progress.done;
                status.total = base_total + progress.total;
            });
        });
        match run.execute() {
            Ok(run_report) => {
                let progressed = record_run(migration, report, &run_report);
                if run_report.cancelled {
                    return Ok(true);
                }
                if !progressed && collection.pending()?.migratable() > 0 {
                    // Pending, yet the run took nothing (a joiner whose peers took all is not
                    // this): counts that disagree with the heads. Stop instead of spinning;
                    // reads still upgrade what is left.
                    tracing::warn!(
                        collection = collection.name(),
                        remaining = run_report.remaining,
                        "a startup run took nothing while documents are pending; stopping"
                    );
                    return Ok(false);
                }
            }
            Err(MigrationError::Store(StoreError::VersionTooNew { stored, .. })) => {
                superseded(collection.name(), report, stored);
                return Ok(false);
            }
            // A run that cannot be joined: a revert, or a run started with other settings (an
            // operator's run with a limit, say).
            Err(
                MigrationError::RunInProgress { run, .. }
                | MigrationError::JoinMismatch { run, .. },
            ) => {
                tracing::info!(
                    collection = collection.name(),
                    run,
                    "waiting for the run under way before migrating what is left"
                );
                // Run 0 is not a run: the ledger being settled.
                if run != 0 && !report.waited_for.contains(&run) {
                    report.waited_for.push(run);
                }
                migration.update(|status| status.waiting_for = Some(run));
                // Always one pause first: a run that is not live but still refuses (a revert
                // ending) is retried after it, never in a tight loop.
                loop {
                    if migration.pause() {
                        return Ok(true);
                    }
                    if !collection.run_is_live(run)? {
                        break;
                    }
                }
                migration.update(|status| status.waiting_for = None);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Joins threads that have ended their migration (they are exiting).
fn join_ended(threads: Vec<JoinHandle<()>>) {
    for thread in threads {
        let _ = thread.join();
    }
}

/// A newer program registered a newer version: it owns the migration, this one may only read.
fn superseded(collection: &str, report: &mut StartupReport, newest: u32) {
    tracing::info!(
        collection,
        newest,
        "a newer program registered a newer version: its instances migrate; this one serves reads"
    );
    report.superseded_by = Some(newest);
}

/// Adds a run's counts to the report and the status; whether the run took anything.
fn record_run(
    migration: &StartupMigration,
    report: &mut StartupReport,
    run: &MigrationReport,
) -> bool {
    if let Some(id) = run.run_id {
        report.runs.push(id);
    }
    report.migrated += run.migrated;
    report.skipped += run.skipped;
    report.failed += run.failed;
    migration.update(|status| {
        if let Some(id) = run.run_id {
            if status.runs.last() != Some(&id) {
                status.runs.push(id);
            }
        }
        status.migrated += run.migrated;
        status.failed += run.failed;
        status.skipped += run.skipped;
    });
    run.scanned > 0
}
