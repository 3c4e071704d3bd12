//! Mounted collections: one object-safe trait over `Collection<T>` for every `T`, converting JSON to
//! and from `T` so that the handlers need not be generic.
//!
//! Every method blocks on the store; handlers call them inside `spawn_blocking`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::error::Category;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::{
    Collection, Document, MigrationReport, Progress, Revision, RevisionInfo, RunState, Schema,
    StoreError, MAX_ID_LEN,
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
    fn version(&self) -> u32;
    /// The JSON Schema of the latest version.
    fn schema(&self) -> Value;
    fn fingerprint(&self) -> String;
    fn schema_at(&self, version: u32) -> Result<Value, ApiError>;
    fn schema_history(&self) -> Result<Value, ApiError>;

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
    fn history(&self, id: &str) -> Result<Value, ApiError>;
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
}

impl<T> Mount<T> {
    pub(crate) fn new(collection: Collection<T>) -> Self {
        Self { collection }
    }
}

/// Parses a request body; a syntax error is the client's malformed JSON (400), a data error is
/// well-formed JSON of the wrong shape (422).
pub(crate) fn parse_json<D: DeserializeOwned>(body: &[u8]) -> Result<D, ApiError> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        Category::Data => ApiError::Unprocessable(format!("the body does not fit: {error}")),
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

fn revision_json(info: &RevisionInfo) -> Value {
    json!({
        "revision": info.revision,
        "parent": info.parent,
        "version": info.version,
        "removed": info.removed,
        "origin": info.origin,
        "timestamp": info.timestamp,
    })
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
            (StoreError::VersionTooNew { .. }, Some((id, revision))) => (id.to_owned(), revision),
            _ => return Err(error.into()),
        };
        let problem = if matches!(error, StoreError::Corrupt { .. }) {
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
        to_json(&self.collection.schema_history()?)
    }

    fn create(&self, id: Option<&str>, body: &[u8]) -> Result<Shown, ApiError> {
        let value: T = parse_json(body)?;
        if let Some(id) = id {
            let revision = self.collection.insert_with_id(id, &value)?;
            return Self::written(id, revision, &value);
        }
        let id = self.collection.insert(&value)?;
        Self::written(&id, Revision::FIRST, &value)
    }

    fn update(&self, id: &str, expected: Option<Revision>, body: &[u8]) -> Result<Shown, ApiError> {
        let value: T = parse_json(body)?;
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
        let mut shown = revision_json(&raw.info);
        shown["id"] = json!(id);
        shown["payload"] = raw.payload.unwrap_or(Value::Null);
        Ok(shown)
    }

    fn history(&self, id: &str) -> Result<Value, ApiError> {
        let history = self.collection.history(id)?;
        if history.is_empty() {
            return Err(self.not_found(id));
        }
        Ok(json!({
            "id": id,
            "revisions": history.iter().map(revision_json).collect::<Vec<_>>(),
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
        let pending = self.collection.pending();
        let runs = self.collection.runs_page(None, runs)?;
        let running = runs
            .iter()
            .find(|run| run.state == RunState::Running)
            .map(|run| run.id);
        Ok(json!({
            "collection": self.collection.name(),
            "version": T::VERSION,
            "fingerprint": self.collection.schema_fingerprint(),
            "counts": self.collection.count_by_version(),
            "removed": self.collection.removed_count(),
            "pending": to_json(&pending)?,
            "migratable": pending.migratable(),
            "failed": pending.failed(),
            "running": running,
            "runs": to_json(&runs)?,
        }))
    }

    fn runs(&self, before: Option<u64>, limit: usize) -> Result<Value, ApiError> {
        let runs = self.collection.runs_page(before, limit)?;
        let next = if runs.len() == limit {
            runs.last().map(|run| run.id)
        } else {
            None
        };
        Ok(json!({ "runs": to_json(&runs)?, "next": next }))
    }

    fn run(&self, run: u64) -> Result<Value, ApiError> {
        let record = self
            .collection
            .run(run)?
            .ok_or_else(|| ApiError::RunNotFound {
                collection: self.collection.name().to_owned(),
                run,
            })?;
        to_json(&record)
    }

    fn revert(&self, run: u64) -> Result<Value, ApiError> {
        to_json(&self.collection.revert(run)?)
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
                    "elapsed_ms": u64::try_from(progress.elapsed.as_millis()).unwrap_or(u64::MAX),
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
