//! Mounted collections: one object-safe trait over `Collection<T>` for every `T`, converting JSON to
//! and from `T` so that the handlers need not be generic.
//!
//! Every method blocks on the store; handlers call them inside `spawn_blocking`.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use serde_json::error::Category;
use serde_json::{json, Value};

use super::error::ApiError;
use super::fields::unknown_fields;
use super::view;
use crate::{
    Collection, Document, MigrationReport, Progress, Revision, RunState, Schema, StoreError,
    MAX_ID_LEN,
};

/// A document as the API shows it, and its revision for the `ETag`.
#[derive(Debug)]
pub(crate) struct Shown {
    pub(crate) id: String,
    pub(crate) revision: Revision,
    pub(crate) body: Value,
}

/// What a migration request asks for.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    pub(crate) limit: Option<u64>,
    pub(crate) retry_failed: bool,
    pub(crate) dry_run: bool,
}

/// Receives each progress line of a run, as JSON.
pub(crate) type ProgressSink = Box<dyn FnMut(Value) + Send>;

/// A collection with its type erased.
pub(crate) trait Mounted: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// Accepts fields the schema does not declare in bodies from now on (serde drops them).
    fn allow_unknown_fields(&self);
    /// Whether bodies may carry fields the schema does not declare.
    fn unknown_fields_allowed(&self) -> bool;
    fn version(&self) -> u32;
    /// The JSON Schema of the latest version.
    fn schema(&self) -> Value;
    fn fingerprint(&self) -> String;
    fn schema_at(&self, version: u32) -> Result<Value, ApiError>;
    fn schema_history(&self) -> Result<Value, ApiError>;

    /// Checks a document body as a write would, without writing.
    fn check_body(&self, body: &[u8]) -> Result<(), ApiError>;
    /// Inserts under a generated id, or under `id` (which must be free).
    fn create(&self, id: Option<&str>, body: &[u8]) -> Result<Shown, ApiError>;
    /// Writes a new revision; with `expected`, only if the document is still at it.
    fn update(&self, id: &str, expected: Option<Revision>, body: &[u8]) -> Result<Shown, ApiError>;
    /// Removes; with `expected`, only if the document is still at it.
    fn remove(&self, id: &str, expected: Option<Revision>) -> Result<Revision, ApiError>;
    /// The current revision, or `revision`, upgraded to the latest version; a problem links under
    /// `base`.
    fn get(&self, id: &str, revision: Option<Revision>, base: &str) -> Result<Shown, ApiError>;
    /// One revision exactly as stored.
    fn raw_revision(&self, id: &str, revision: Revision) -> Result<Value, ApiError>;
    /// Up to `limit` revisions' metadata after `after`, and the cursor of the next page.
    fn history(&self, id: &str, after: Option<Revision>, limit: usize) -> Result<Value, ApiError>;
    /// Up to `limit` current documents after `after`, and the cursor of the next page. A document
    /// that cannot be upgraded is an entry with its problem, linking under `base`.
    fn list(&self, after: Option<&str>, limit: usize, base: &str) -> Result<Value, ApiError>;
    /// Up to `limit` documents of the failure set after `after`, and the cursor of the next page.
    fn failures(&self, after: Option<&str>, limit: usize) -> Result<Value, ApiError>;

    fn status(&self, runs: usize) -> Result<Value, ApiError>;
    fn runs(&self, before: Option<u64>, limit: usize) -> Result<Value, ApiError>;
    fn run(&self, run: u64) -> Result<Value, ApiError>;
    fn revert(&self, run: u64) -> Result<Value, ApiError>;
    fn migrate(
        &self,
        options: RunOptions,
        progress: Option<ProgressSink>,
    ) -> Result<MigrationReport, ApiError>;
}

/// The typed side: a `Collection<T>`.
pub(crate) struct Mount<T> {
    collection: Collection<T>,
    /// The latest version's JSON Schema, as schemars writes it: bodies are checked against it.
    schema: Value,
    /// Whether a body may carry fields the schema does not declare (they are dropped).
    unknown_fields_allowed: AtomicBool,
}

impl<T: Schema> Mount<T> {
    pub(crate) fn new(collection: Collection<T>) -> Self {
        let schema = collection.schema();
        Self {
            collection,
            schema,
            unknown_fields_allowed: AtomicBool::new(false),
        }
    }

    /// Decodes a document body as `T`, refusing fields `T`'s schema does not declare unless the
    /// application allowed them.
    fn decode(&self, body: &[u8]) -> Result<T, ApiError> {
        let document: T = parse_json(body)?;
        if self.unknown_fields_allowed.load(Ordering::Relaxed) {
            return Ok(document);
        }
        // `T` decoded, so anything `Value` cannot parse (nesting past its recursion limit) lies
        // in what decoding skipped: a field the type does not have.
        let value: Value = serde_json::from_slice(body).map_err(|_| {
            ApiError::Unprocessable(
                "the body nests too deep inside a field the schema does not declare".to_owned(),
            )
        })?;
        let fields = unknown_fields(&value, &self.schema, T::ALIASES);
        if !fields.is_empty() {
            return Err(ApiError::UnknownFields {
                collection: self.collection.name().to_owned(),
                version: T::VERSION,
                fields,
            });
        }
        Ok(document)
    }
}

/// Parses a request body; a syntax error is the client's malformed JSON (400), a data error is
/// well-formed JSON of the wrong shape (422).
pub(crate) fn parse_json<D: DeserializeOwned>(body: &[u8]) -> Result<D, ApiError> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        Category::Data => ApiError::Unprocessable(format!("the body does not fit: {error}")),
        // serde_json reports a value of the wrong type where an enum is expected (`{}`, `0`,
        // `null`) as "expected value", a syntax error, although the JSON is well-formed.
        Category::Syntax if serde_json::from_slice::<IgnoredAny>(body).is_ok() => {
            ApiError::Unprocessable(format!("the body does not fit: {error}"))
        }
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
        }
    })
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

impl<T: Schema> Mount<T> {
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
            (StoreError::Upgrade { id, revision, .. }, _) => (id.clone(), Some(*revision)),
            (StoreError::Corrupt { id, revision, .. }, last) => (
                id.clone(),
                revision.or_else(|| last.and_then(|(_, revision)| revision)),
            ),
            (StoreError::DanglingHead { id, revision, .. }, _) => (id.clone(), Some(*revision)),
            (StoreError::VersionTooNew { .. }, Some((id, revision))) => (id.to_owned(), revision),
            _ => return Err(error.into()),
        };
        let problem = if matches!(
            error,
            StoreError::Corrupt { .. } | StoreError::DanglingHead { .. }
        ) {
            tracing::error!(
                collection = self.collection.name(),
                id,
                error = %super::error::log_chain(&error),
                "a listed document is damaged"
            );
            ApiError::Corrupt {
                collection: self.collection.name().to_owned(),
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
            collection: self.collection.name().to_owned(),
            id: id.to_owned(),
        }
    }

    fn show(document: &Document<T>) -> Result<Shown, ApiError> {
        Ok(Shown {
            id: document.id.to_string(),
            revision: document.revision,
            body: json!({
                "id": document.id,
                "revision": document.revision,
                "version": T::VERSION,
                "stored_version": document.stored_version,
                "data": to_json(&document.data)?,
            }),
        })
    }

    fn written(id: &str, revision: Revision, value: &T) -> Result<Shown, ApiError> {
        Ok(Shown {
            id: id.to_owned(),
            revision,
            body: json!({
                "id": id,
                "revision": revision,
                "version": T::VERSION,
                "stored_version": T::VERSION,
                "data": to_json(value)?,
            }),
        })
    }
}

impl<T: Schema> Mounted for Mount<T> {
    fn name(&self) -> &str {
        self.collection.name()
    }

    fn allow_unknown_fields(&self) {
        self.unknown_fields_allowed.store(true, Ordering::Relaxed);
    }

    fn unknown_fields_allowed(&self) -> bool {
        self.unknown_fields_allowed.load(Ordering::Relaxed)
    }

    fn version(&self) -> u32 {
        T::VERSION
    }

    fn schema(&self) -> Value {
        self.collection.schema()
    }

    fn fingerprint(&self) -> String {
        self.collection.schema_fingerprint()
    }

    fn schema_at(&self, version: u32) -> Result<Value, ApiError> {
        let schema =
            self.collection
                .schema_at(version)?
                .ok_or_else(|| ApiError::VersionNotFound {
                    collection: self.collection.name().to_owned(),
                    version,
                })?;
        Ok(json!({ "version": version, "schema": schema }))
    }

    fn schema_history(&self) -> Result<Value, ApiError> {
        view::schema_history(&self.collection.schema_history()?)
    }

    fn check_body(&self, body: &[u8]) -> Result<(), ApiError> {
        self.decode(body).map(drop)
    }

    fn create(&self, id: Option<&str>, body: &[u8]) -> Result<Shown, ApiError> {
        let value = self.decode(body)?;
        if let Some(id) = id {
            let revision = self.collection.insert_with_id(id, &value)?;
            return Self::written(id, revision, &value);
        }
        let id = self.collection.insert(&value)?;
        Self::written(&id, Revision::FIRST, &value)
    }

    fn update(&self, id: &str, expected: Option<Revision>, body: &[u8]) -> Result<Shown, ApiError> {
        let value = self.decode(body)?;
        let revision = match expected {
            Some(expected) => self.collection.update_if(id, expected, &value)?,
            None => self.collection.update(id, &value)?,
        };
        Self::written(id, revision, &value)
    }

    fn remove(&self, id: &str, expected: Option<Revision>) -> Result<Revision, ApiError> {
        Ok(match expected {
            Some(expected) => self.collection.remove_if(id, expected)?,
            None => self.collection.remove(id)?,
        })
    }

    fn get(&self, id: &str, revision: Option<Revision>, base: &str) -> Result<Shown, ApiError> {
        let read = match revision {
            None => self.collection.get(id),
            Some(revision) => self.collection.revision(id, revision),
        };
        let document = match (read, revision) {
            (Err(error), _) => return Err(ApiError::from(error).under(base)),
            (Ok(Some(document)), _) => document,
            (Ok(None), None) => return Err(self.not_found(id)),
            (Ok(None), Some(revision)) => {
                return Err(ApiError::RevisionNotFound {
                    collection: self.collection.name().to_owned(),
                    id: id.to_owned(),
                    revision,
                })
            }
        };
        Self::show(&document)
    }

    fn raw_revision(&self, id: &str, revision: Revision) -> Result<Value, ApiError> {
        let raw = self.collection.raw_revision(id, revision)?.ok_or_else(|| {
            ApiError::RevisionNotFound {
                collection: self.collection.name().to_owned(),
                id: id.to_owned(),
                revision,
            }
        })?;
        let mut shown = view::revision(&raw.info);
        shown["id"] = json!(id);
        shown["payload"] = raw.payload.unwrap_or(Value::Null);
        Ok(shown)
    }

    fn history(&self, id: &str, after: Option<Revision>, limit: usize) -> Result<Value, ApiError> {
        // One more than the page, to know whether another follows.
        let mut page = self
            .collection
            .history_page(id, after, limit.saturating_add(1))?;
        if page.is_empty()
            && (after.is_none() || self.collection.history_page(id, None, 1)?.is_empty())
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

    fn list(&self, after: Option<&str>, limit: usize, base: &str) -> Result<Value, ApiError> {
        let mut documents = match after {
            Some(after) => self.collection.iter_after(after),
            None => self.collection.iter(),
        };
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
                Ok(document) => items.push((document.id.to_string(), Self::show(&document)?.body)),
                Err(error) => {
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

    fn failures(&self, after: Option<&str>, limit: usize) -> Result<Value, ApiError> {
        // One more than the page tells whether another page follows.
        let mut failures = self
            .collection
            .failures_page(after, limit.saturating_add(1))?;
        let next = if failures.len() > limit {
            failures.truncate(limit);
            failures.last().map(|failure| failure.id.to_string())
        } else {
            None
        };
        Ok(json!({ "failures": to_json(&failures)?, "next": next }))
    }

    fn status(&self, runs: usize) -> Result<Value, ApiError> {
        let pending = self.collection.pending()?;
        let runs = self.collection.runs_page(None, runs)?;
        let running = runs
            .iter()
            .find(|run| run.state == RunState::Running)
            .map(|run| run.id);
        Ok(json!({
            "collection": self.collection.name(),
            "version": T::VERSION,
            "fingerprint": self.collection.schema_fingerprint(),
            "counts": self.collection.count_by_version()?,
            "removed": self.collection.removed_count()?,
            "pending": to_json(&pending)?,
            "migratable": pending.migratable(),
            "failed": pending.failed(),
            "running": running,
            "runs": view::runs(&runs)?,
        }))
    }

    fn runs(&self, before: Option<u64>, limit: usize) -> Result<Value, ApiError> {
        let runs = self.collection.runs_page(before, limit)?;
        let next = if runs.len() == limit {
            runs.last().map(|run| run.id)
        } else {
            None
        };
        Ok(json!({ "runs": view::runs(&runs)?, "next": next }))
    }

    fn run(&self, run: u64) -> Result<Value, ApiError> {
        let record = self
            .collection
            .run(run)?
            .ok_or_else(|| ApiError::RunNotFound {
                collection: self.collection.name().to_owned(),
                run,
            })?;
        view::run(&record)
    }

    fn revert(&self, run: u64) -> Result<Value, ApiError> {
        view::revert(&self.collection.revert(run)?)
    }

    fn migrate(
        &self,
        options: RunOptions,
        progress: Option<ProgressSink>,
    ) -> Result<MigrationReport, ApiError> {
        let mut migration = self.collection.migrate();
        if let Some(limit) = options.limit {
            migration = migration.limit(limit);
        }
        if options.retry_failed {
            migration = migration.retry_failed();
        }
        if let Some(mut sink) = progress {
            let collection = self.collection.clone();
            let mut run_id = None;
            migration = migration.on_progress(move |progress: &Progress| {
                // The run holds the collection's run lock and wrote its ledger record when it
                // started, so the newest record of the collection is this run's.
                if run_id.is_none() {
                    run_id = collection
                        .runs_page(None, 1)
                        .ok()
                        .and_then(|runs| runs.first().map(|run| run.id));
                }
                sink(json!({
                    "event": "progress",
                    "run_id": run_id,
                    "done": progress.done,
                    "total": progress.total,
                    "migrated": progress.migrated,
                    "failed": progress.failed,
                    "skipped": progress.skipped,
                    "rate": progress.rate,
                    "elapsed_ms": view::millis(progress.elapsed),
                }));
            });
        }
        let report = if options.dry_run {
            migration.dry_run()?
        } else {
            migration.execute()?
        };
        Ok(report)
    }
}
