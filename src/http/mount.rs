//! Mounted collections: each registered collection with its type erased (the library's
//! [`AnyCollection`]), with what the API adds: bodies checked against the schema, documents and
//! ledger records shown as JSON, errors as problems.
//!
//! Every method blocks on the store; handlers call them inside `spawn_blocking`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use serde_json::error::Category;
use serde_json::{json, Value};

use super::error::ApiError;
use super::fields::unknown_fields;
use super::view;
use crate::erased::{AnyCollection, Decoded, JsonDocument, ReadError, RunHooks};
use crate::migrate::StartFn;
use crate::{
    CancelToken, MigrateOptions, MigrationReport, Progress, Revision, RunKind, RunRecord, RunState,
    StoreError, MAX_ID_LEN,
};

/// A document as the API shows it, and its revision for the `ETag`.
#[derive(Debug)]
pub(crate) struct Shown {
    pub(crate) id: String,
    pub(crate) revision: Revision,
    pub(crate) body: Value,
}

/// Receives each progress line of a run, as JSON.
pub(crate) type ProgressSink = Box<dyn FnMut(Value) + Send>;

/// A mounted collection.
pub(crate) struct Mount {
    collection: Arc<dyn AnyCollection>,
    /// The latest version's JSON Schema, as schemars writes it: bodies are checked against it.
    schema: Value,
    /// Whether a body may carry fields the schema does not declare (they are dropped).
    unknown_fields_allowed: AtomicBool,
    /// The runs under way that this server's migrate requests started on the collection.
    runs: Arc<Runs>,
}

/// The runs under way that a router's migrate requests started on one collection, each with its
/// request's cancel token, so that `POST …/migrate/runs/{run_id}/cancel` reaches them. A run is
/// registered by its start hook as soon as it has its id (before its first chunk), and removed
/// when the request's call to the store returns, or unwinds ([`Registration`]).
///
/// Two requests can hold the same run (two workers of a joined run); a request holds at most one.
#[derive(Default)]
struct Runs {
    entries: Mutex<Vec<RunEntry>>,
    /// The next request's ticket.
    tickets: AtomicU64,
}

struct RunEntry {
    /// The request that started the run.
    ticket: u64,
    run: u64,
    cancel: CancelToken,
}

impl Runs {
    /// The entries. A panic while the lock was held (none can: each holder pushes, retains or
    /// cancels) would leave them whole, so a poisoned lock is taken as it is.
    fn entries(&self) -> MutexGuard<'_, Vec<RunEntry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks every request's run numbered `run` to stop at its next chunk boundary; whether this
    /// server holds such a run. A run that ended just before its entry is removed ignores it:
    /// its token is its request's own, and no later run reads it.
    fn cancel(&self, run: u64) -> bool {
        let entries = self.entries();
        let mut found = false;
        for entry in entries.iter().filter(|entry| entry.run == run) {
            entry.cancel.cancel();
            found = true;
        }
        found
    }
}

/// One migrate request's place in [`Runs`]: its run is added by the hook [`hook`](Self::hook)
/// gives, and removed when this guard drops, whether the run ended, failed or panicked.
struct Registration {
    runs: Arc<Runs>,
    ticket: u64,
}

impl Registration {
    fn new(runs: &Arc<Runs>) -> Self {
        Self {
            runs: Arc::clone(runs),
            ticket: runs.tickets.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The start hook that registers the request's run with `cancel`, its token.
    fn hook(&self, cancel: CancelToken) -> StartFn {
        let runs = Arc::clone(&self.runs);
        let ticket = self.ticket;
        Box::new(move |run| {
            runs.entries().push(RunEntry {
                ticket,
                run,
                cancel: cancel.clone(),
            });
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ticket = self.ticket;
        self.runs.entries().retain(|entry| entry.ticket != ticket);
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Store(error) => error.into(),
            ReadError::Json(error) => ApiError::internal(error),
        }
    }
}

/// Parses a request body; a syntax error is the client's malformed JSON (400), a data error is
/// well-formed JSON of the wrong shape (422).
pub(crate) fn parse_json<D: DeserializeOwned>(body: &[u8]) -> Result<D, ApiError> {
    serde_json::from_slice(body).map_err(|error| json_error(body, &error))
}

/// The problem of a body that does not parse, as [`parse_json`] tells them apart.
fn json_error(body: &[u8], error: &serde_json::Error) -> ApiError {
    match error.classify() {
        Category::Data => ApiError::Unprocessable(format!("the body does not fit: {error}")),
        // serde_json reports a value of the wrong type where an enum is expected (`{}`, `0`,
        // `null`) as "expected value", a syntax error, although the JSON is well-formed.
        Category::Syntax if serde_json::from_slice::<IgnoredAny>(body).is_ok() => {
            ApiError::Unprocessable(format!("the body does not fit: {error}"))
        }
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
        }
    }
}

/// Checks an id from a query string against the store's rules before it reaches a key.
pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "an id is 1 to {MAX_ID_LEN} bytes without NUL"
        )));
    }
    Ok(())
}

fn to_json(value: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

impl Mount {
    pub(crate) fn new(collection: Arc<dyn AnyCollection>) -> Self {
        let schema = collection.schema();
        Self {
            collection,
            schema,
            unknown_fields_allowed: AtomicBool::new(false),
            runs: Arc::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.collection.raw().name()
    }

    /// Accepts fields the schema does not declare in bodies from now on (serde drops them).
    pub(crate) fn allow_unknown_fields(&self) {
        self.unknown_fields_allowed.store(true, Ordering::Relaxed);
    }

    /// Whether bodies may carry fields the schema does not declare.
    pub(crate) fn unknown_fields_allowed(&self) -> bool {
        self.unknown_fields_allowed.load(Ordering::Relaxed)
    }

    pub(crate) fn version(&self) -> u32 {
        self.collection.version()
    }

    /// The JSON Schema of the latest version.
    pub(crate) fn schema(&self) -> Value {
        self.collection.schema()
    }

    pub(crate) fn fingerprint(&self) -> String {
        self.collection.schema_fingerprint()
    }

    /// Decodes a document body as the latest version, refusing fields its schema does not
    /// declare unless the application allowed them.
    fn decode(&self, body: &[u8]) -> Result<Box<dyn Decoded + '_>, ApiError> {
        let document = self
            .collection
            .decode(body)
            .map_err(|error| json_error(body, &error))?;
        if self.unknown_fields_allowed() {
            return Ok(document);
        }
        // The document decoded, so anything `Value` cannot parse (nesting past its recursion
        // limit) lies in what decoding skipped: a field the type does not have.
        let value: Value = serde_json::from_slice(body).map_err(|_| {
            ApiError::Unprocessable(
                "the body nests too deep inside a field the schema does not declare".to_owned(),
            )
        })?;
        let fields = unknown_fields(&value, &self.schema, self.collection.aliases());
        if !fields.is_empty() {
            return Err(ApiError::UnknownFields {
                collection: self.name().to_owned(),
                version: self.version(),
                fields,
            });
        }
        Ok(document)
    }

    /// The id, revision and problem a list page shows in place of a document it cannot show: one
    /// that cannot be upgraded, one a newer program wrote, one whose bytes are damaged. `last` is
    /// what the iterator read last, for an error that names no document. Any other error fails
    /// the page.
    fn entry_problem(
        &self,
        error: StoreError,
        last: Option<(&str, Option<Revision>)>,
        base: &str,
    ) -> Result<(String, Option<Revision>, Value), ApiError> {
        let (id, revision) = match (&error, last) {
            (
                StoreError::Upgrade { id, revision, .. }
                | StoreError::DanglingHead { id, revision, .. },
                _,
            ) => (id.clone(), Some(*revision)),
            (StoreError::Corrupt { id, revision, .. }, last) => (
                id.clone(),
                revision.or_else(|| last.and_then(|(_, revision)| revision)),
            ),
            (StoreError::VersionTooNew { .. }, Some((id, revision))) => (id.to_owned(), revision),
            _ => return Err(error.into()),
        };
        let problem = if matches!(
            error,
            StoreError::Corrupt { .. } | StoreError::DanglingHead { .. }
        ) {
            tracing::error!(
                collection = self.name(),
                id,
                error = %super::error::log_chain(&error),
                "a listed document is damaged"
            );
            ApiError::Corrupt {
                collection: self.name().to_owned(),
                id: id.clone(),
                revision,
            }
        } else {
            ApiError::from(error).under(base)
        };
        Ok((id, revision, problem.problem()))
    }

    fn not_found(&self, id: &str) -> ApiError {
        ApiError::DocumentNotFound {
            collection: self.name().to_owned(),
            id: id.to_owned(),
        }
    }

    fn show(&self, document: &JsonDocument) -> Shown {
        Shown {
            id: document.id.to_string(),
            revision: document.revision,
            body: json!({
                "id": document.id,
                "revision": document.revision,
                "version": self.version(),
                "stored_version": document.stored_version,
                "data": document.data,
            }),
        }
    }

    fn written(
        &self,
        id: &str,
        revision: Revision,
        value: &dyn Decoded,
    ) -> Result<Shown, ApiError> {
        Ok(Shown {
            id: id.to_owned(),
            revision,
            body: json!({
                "id": id,
                "revision": revision,
                "version": self.version(),
                "stored_version": self.version(),
                "data": value.data().map_err(ApiError::internal)?,
            }),
        })
    }

    pub(crate) fn schema_at(&self, version: u32) -> Result<Value, ApiError> {
        let schema =
            self.collection
                .schema_at(version)?
                .ok_or_else(|| ApiError::VersionNotFound {
                    collection: self.name().to_owned(),
                    version,
                })?;
        Ok(json!({ "version": version, "schema": schema }))
    }

    pub(crate) fn schema_history(&self) -> Result<Value, ApiError> {
        view::schema_history(&self.collection.schema_history()?)
    }

    /// Checks a document body as a write would, without writing.
    pub(crate) fn check_body(&self, body: &[u8]) -> Result<(), ApiError> {
        self.decode(body).map(drop)
    }

    /// Inserts under a generated id, or under `id` (which must be free).
    pub(crate) fn create(&self, id: Option<&str>, body: &[u8]) -> Result<Shown, ApiError> {
        let value = self.decode(body)?;
        let (id, revision) = value.insert(id)?;
        self.written(&id, revision, &*value)
    }

    /// Writes a new revision; with `expected`, only if the document is still at it.
    pub(crate) fn update(
        &self,
        id: &str,
        expected: Option<Revision>,
        body: &[u8],
    ) -> Result<Shown, ApiError> {
        let value = self.decode(body)?;
        let revision = value.update(id, expected)?;
        self.written(id, revision, &*value)
    }

    /// Removes; with `expected`, only if the document is still at it.
    pub(crate) fn remove(
        &self,
        id: &str,
        expected: Option<Revision>,
    ) -> Result<Revision, ApiError> {
        Ok(self.collection.remove(id, expected)?)
    }

    /// The current revision, or `revision`, upgraded to the latest version; a problem links
    /// under `base`.
    pub(crate) fn get(
        &self,
        id: &str,
        revision: Option<Revision>,
        base: &str,
    ) -> Result<Shown, ApiError> {
        let document = match (self.collection.get(id, revision), revision) {
            (Err(ReadError::Store(error)), _) => return Err(ApiError::from(error).under(base)),
            (Err(error), _) => return Err(error.into()),
            (Ok(Some(document)), _) => document,
            (Ok(None), None) => return Err(self.not_found(id)),
            (Ok(None), Some(revision)) => {
                return Err(ApiError::RevisionNotFound {
                    collection: self.name().to_owned(),
                    id: id.to_owned(),
                    revision,
                })
            }
        };
        Ok(self.show(&document))
    }

    /// One revision exactly as stored.
    pub(crate) fn raw_revision(&self, id: &str, revision: Revision) -> Result<Value, ApiError> {
        let raw = self
            .collection
            .raw()
            .raw_revision(id, revision)?
            .ok_or_else(|| ApiError::RevisionNotFound {
                collection: self.name().to_owned(),
                id: id.to_owned(),
                revision,
            })?;
        let mut shown = view::revision(&raw.info);
        shown["id"] = json!(id);
        shown["payload"] = raw.payload.unwrap_or(Value::Null);
        Ok(shown)
    }

    /// Up to `limit` revisions' metadata after `after`, and the cursor of the next page.
    pub(crate) fn history(
        &self,
        id: &str,
        after: Option<Revision>,
        limit: usize,
    ) -> Result<Value, ApiError> {
        // One more than the page, to know whether another follows.
        let mut page = self
            .collection
            .raw()
            .history_page(id, after, limit.saturating_add(1))?;
        if page.is_empty()
            && (after.is_none() || self.collection.raw().history_page(id, None, 1)?.is_empty())
        {
            return Err(self.not_found(id));
        }
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|info| info.revision)
        } else {
            None
        };
        Ok(json!({
            "id": id,
            "revisions": page.iter().map(view::revision).collect::<Vec<_>>(),
            "next": next,
        }))
    }

    /// Up to `limit` current documents after `after`, and the cursor of the next page. A
    /// document that cannot be upgraded is an entry with its problem, linking under `base`.
    pub(crate) fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        base: &str,
    ) -> Result<Value, ApiError> {
        let mut documents = self.collection.documents(after);
        // (id, entry): a document, or in its place the problem of one that cannot be shown.
        let mut items: Vec<(String, Value)> = Vec::new();
        let mut next = None;
        while let Some(document) = documents.next() {
            // Whatever follows, even an error, is a document after this page.
            if items.len() == limit {
                next = items.last().map(|(id, _)| Value::String(id.clone()));
                break;
            }
            match document {
                Ok(document) => items.push((document.id.to_string(), self.show(&document).body)),
                Err(ReadError::Json(error)) => return Err(ApiError::internal(error)),
                Err(ReadError::Store(error)) => {
                    let (id, revision, problem) =
                        self.entry_problem(error, documents.last_head(), base)?;
                    let entry = json!({ "id": id, "revision": revision, "problem": problem });
                    items.push((id, entry));
                }
            }
        }
        Ok(json!({
            "items": items.into_iter().map(|(_, entry)| entry).collect::<Vec<_>>(),
            "next": next,
        }))
    }

    /// Up to `limit` documents of the failure set after `after`, and the cursor of the next
    /// page.
    pub(crate) fn failures(&self, after: Option<&str>, limit: usize) -> Result<Value, ApiError> {
        // One more than the page tells whether another page follows.
        let mut failures = self
            .collection
            .raw()
            .failures_page(after, limit.saturating_add(1))?;
        let next = if failures.len() > limit {
            failures.truncate(limit);
            failures.last().map(|failure| failure.id.to_string())
        } else {
            None
        };
        Ok(json!({ "failures": to_json(&failures)?, "next": next }))
    }

    pub(crate) fn status(&self, runs: usize) -> Result<Value, ApiError> {
        let pending = self.collection.pending()?;
        let runs = self.collection.raw().runs_page(None, runs)?;
        let running = runs
            .iter()
            .find(|run| run.state == RunState::Running)
            .map(|run| run.id);
        Ok(json!({
            "collection": self.name(),
            "version": self.version(),
            "fingerprint": self.collection.schema_fingerprint(),
            "counts": self.collection.raw().count_by_version()?,
            "removed": self.collection.raw().removed_count()?,
            "pending": to_json(&pending)?,
            "migratable": pending.migratable(),
            "failed": pending.failed(),
            "running": running,
            "runs": view::runs(&runs)?,
        }))
    }

    pub(crate) fn runs(&self, before: Option<u64>, limit: usize) -> Result<Value, ApiError> {
        let runs = self.collection.raw().runs_page(before, limit)?;
        let next = if runs.len() == limit {
            runs.last().map(|run| run.id)
        } else {
            None
        };
        Ok(json!({ "runs": view::runs(&runs)?, "next": next }))
    }

    pub(crate) fn run(&self, run: u64) -> Result<Value, ApiError> {
        let record = self
            .collection
            .raw()
            .run(run)?
            .ok_or_else(|| ApiError::RunNotFound {
                collection: self.name().to_owned(),
                run,
            })?;
        view::run(&record)
    }

    pub(crate) fn revert(&self, run: u64) -> Result<Value, ApiError> {
        view::revert(&self.collection.revert(run)?)
    }

    /// Runs a migration, sending each progress line to `progress`.
    pub(crate) fn migrate(
        &self,
        options: &MigrateOptions,
        progress: Option<ProgressSink>,
    ) -> Result<MigrationReport, ApiError> {
        let on_progress = progress.map(|mut sink| {
            Box::new(move |progress: &Progress| {
                sink(json!({
                    "event": "progress",
                    "run_id": progress.run_id,
                    "done": progress.done,
                    "total": progress.total,
                    "migrated": progress.migrated,
                    "failed": progress.failed,
                    "skipped": progress.skipped,
                    "rate": progress.rate,
                    "elapsed_ms": view::millis(progress.elapsed),
                }));
            }) as crate::erased::ProgressFn
        });
        let cancel = CancelToken::new();
        // Dropped once the run returns (or unwinds): the run leaves the registry.
        let registration = Registration::new(&self.runs);
        let hooks = RunHooks {
            on_progress,
            on_start: Some(registration.hook(cancel.clone())),
            cancel: Some(cancel),
        };
        let report = self.collection.migrate(options, hooks);
        drop(registration);
        Ok(report?)
    }

    /// Asks the run `run` to stop at its next chunk boundary: a run this server's migrate
    /// requests started (on any engine, joined or not) by its request's cancel token, or a
    /// joined run under way in any process by the engine ([`RawCollection::cancel_run`]).
    /// Answers what `POST …/runs/{run_id}/cancel` shows; the run's record says how it ended.
    ///
    /// [`RawCollection::cancel_run`]: crate::RawCollection::cancel_run
    pub(crate) fn cancel(&self, run: u64) -> Result<Value, ApiError> {
        let requested = || json!({ "run_id": run, "cancel": "requested" });
        let raw = self.collection.raw();
        // This server's runs first: one that has only just started has no ledger record yet.
        if self.runs.cancel(run) {
            // A joined run's other workers, in other processes, are told at once too: this
            // server's worker would only tell them at its next chunk boundary (and not at all
            // should it be failing).
            if let Err(error) = raw.cancel_run(run) {
                tracing::warn!(
                    collection = self.name(),
                    run,
                    error = %crate::error::format::chain(&error),
                    "cannot ask a joined run's other workers to stop; this server's stops"
                );
            }
            return Ok(requested());
        }
        let Some(record) = raw.run(run)? else {
            // A joined run's first worker saves the record just after it joined.
            if raw.cancel_run(run)? {
                return Ok(requested());
            }
            return Err(ApiError::RunNotFound {
                collection: self.name().to_owned(),
                run,
            });
        };
        if record.state != RunState::Running {
            return Err(self.not_running(&record));
        }
        // A run of this server may have started since it was looked for.
        if raw.cancel_run(run)? || self.runs.cancel(run) {
            return Ok(requested());
        }
        // Neither joined nor this server's; or it ended meanwhile.
        match raw.run(run)? {
            Some(record) if record.state != RunState::Running => Err(self.not_running(&record)),
            _ if matches!(record.kind, RunKind::Revert { .. }) => Err(ApiError::NotCancellable {
                collection: self.name().to_owned(),
                run,
            }),
            _ => Err(ApiError::RunElsewhere {
                collection: self.name().to_owned(),
                run,
            }),
        }
    }

    fn not_running(&self, record: &RunRecord) -> ApiError {
        ApiError::RunNotRunning {
            collection: self.name().to_owned(),
            run: record.id,
            state: record.state,
        }
    }
}
