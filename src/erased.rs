//! A typed collection with its type erased: what the HTTP router and the `migrate` commands keep
//! of each collection an application registers by type (`Collection<T>` for its `T`), to serve
//! it by name. Documents cross it as JSON; everything that does not need `T` is on the
//! [`RawCollection`] it dereferences to.
//!
//! Every method blocks on the store.

// Documents cross as JSON for the HTTP layer only.
#![cfg_attr(not(feature = "http"), allow(dead_code))]

use std::sync::Arc;

use serde_json::Value;

use crate::migrate::{
    CancelToken, MigrateOptions, MigrationError, MigrationReport, Pending, Progress, StartFn,
};
use crate::store::{Collection, Document, Iter, RawCollection, SchemaRecord, Store, StoreError};
use crate::{RevertReport, Revision, Schema};

/// Called with the progress of a run after each chunk.
pub(crate) type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// What a run is given besides its options.
#[derive(Default)]
pub(crate) struct RunHooks {
    /// Called after each chunk.
    pub(crate) on_progress: Option<ProgressFn>,
    /// Called with the run's id as soon as the run has one (see `Migration::on_start`).
    pub(crate) on_start: Option<StartFn>,
    /// Cancels the run; a token of its own if `None`.
    pub(crate) cancel: Option<CancelToken>,
}

/// A document read as JSON.
pub(crate) type JsonDocument = Document<Value>;

/// Why a document could not be read as JSON.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The store could not read it (or upgrade it).
    Store(StoreError),
    /// The document read does not serialize as JSON (the program's fault).
    Json(serde_json::Error),
}

impl From<StoreError> for ReadError {
    fn from(error: StoreError) -> Self {
        ReadError::Store(error)
    }
}

/// A `Collection<T>` of some `T`.
pub(crate) trait AnyCollection: Send + Sync + 'static {
    /// The collection without its type.
    fn raw(&self) -> &RawCollection;
    /// `T::VERSION`.
    fn version(&self) -> u32;
    /// `T::ALIASES`.
    fn aliases(&self) -> &'static [(&'static str, &'static str)];
    /// The JSON Schema of `T`.
    fn schema(&self) -> Value;
    /// The fingerprint of `T`'s JSON Schema.
    fn schema_fingerprint(&self) -> String;
    /// The JSON Schema recorded for `version`, if any.
    fn schema_at(&self, version: u32) -> Result<Option<Value>, StoreError>;
    /// Every schema recorded for the collection.
    fn schema_history(&self) -> Result<Vec<SchemaRecord>, StoreError>;

    /// What is left to migrate to `T`'s version.
    fn pending(&self) -> Result<Pending, StoreError>;
    /// Runs a migration (a dry run if the options ask for one).
    fn migrate(
        &self,
        options: &MigrateOptions,
        hooks: RunHooks,
    ) -> Result<MigrationReport, MigrationError>;
    /// Reverts a run.
    fn revert(&self, run: u64) -> Result<RevertReport, MigrationError>;

    /// Decodes a JSON body as `T`, ready to write.
    fn decode<'a>(&'a self, body: &[u8]) -> Result<Box<dyn Decoded + 'a>, serde_json::Error>;
    /// The current revision of a document, or `revision`, upgraded to `T`.
    fn get(&self, id: &str, revision: Option<Revision>) -> Result<Option<JsonDocument>, ReadError>;
    /// Removes a document; with `expected`, only if it is still at that revision.
    fn remove(&self, id: &str, expected: Option<Revision>) -> Result<Revision, StoreError>;
    /// The current documents in id order, after `after` if given.
    fn documents<'a>(&'a self, after: Option<&str>) -> Box<dyn Documents + 'a>;
}

/// A document body decoded as `T`.
pub(crate) trait Decoded {
    /// The document as JSON, as `T` serializes it.
    fn data(&self) -> Result<Value, serde_json::Error>;
    /// Inserts it under a generated id, or under `id` (which must be free); its id and revision.
    fn insert(&self, id: Option<&str>) -> Result<(String, Revision), StoreError>;
    /// Writes it as a new revision; with `expected`, only if the document is still at it.
    fn update(&self, id: &str, expected: Option<Revision>) -> Result<Revision, StoreError>;
}

/// The documents of a collection, as JSON.
pub(crate) trait Documents: Iterator<Item = Result<JsonDocument, ReadError>> {
    /// The id and revision of the head read last, for an error that names no document.
    fn last_head(&self) -> Option<(&str, Option<Revision>)>;
}

/// Opens the collection whose latest version is `T`, its type erased.
pub(crate) fn open<T: Schema>(store: &Store) -> Result<Arc<dyn AnyCollection>, StoreError> {
    Ok(Arc::new(store.collection::<T>()?))
}

fn json<T: Schema>(document: Document<T>) -> Result<JsonDocument, ReadError> {
    Ok(Document {
        id: document.id,
        revision: document.revision,
        stored_version: document.stored_version,
        data: serde_json::to_value(&document.data).map_err(ReadError::Json)?,
    })
}

impl<T: Schema> AnyCollection for Collection<T> {
    fn raw(&self) -> &RawCollection {
        Collection::raw(self)
    }

    fn version(&self) -> u32 {
        T::VERSION
    }

    fn aliases(&self) -> &'static [(&'static str, &'static str)] {
        T::ALIASES
    }

    fn schema(&self) -> Value {
        Collection::schema(self)
    }

    fn schema_fingerprint(&self) -> String {
        Collection::schema_fingerprint(self)
    }

    fn schema_at(&self, version: u32) -> Result<Option<Value>, StoreError> {
        Collection::schema_at(self, version)
    }

    fn schema_history(&self) -> Result<Vec<SchemaRecord>, StoreError> {
        Collection::schema_history(self)
    }

    fn pending(&self) -> Result<Pending, StoreError> {
        Collection::pending(self)
    }

    fn migrate(
        &self,
        options: &MigrateOptions,
        hooks: RunHooks,
    ) -> Result<MigrationReport, MigrationError> {
        let RunHooks {
            on_progress,
            on_start,
            cancel,
        } = hooks;
        let mut migration = Collection::migrate(self).options(options);
        if let Some(on_progress) = on_progress {
            migration = migration.on_progress(on_progress);
        }
        if let Some(on_start) = on_start {
            migration = migration.on_start(on_start);
        }
        if let Some(cancel) = cancel {
            migration = migration.cancel_token(cancel);
        }
        migration.run()
    }

    fn revert(&self, run: u64) -> Result<RevertReport, MigrationError> {
        Collection::revert(self, run)
    }

    fn decode<'a>(&'a self, body: &[u8]) -> Result<Box<dyn Decoded + 'a>, serde_json::Error> {
        let data: T = serde_json::from_slice(body)?;
        Ok(Box::new(Typed {
            collection: self,
            data,
        }))
    }

    fn get(&self, id: &str, revision: Option<Revision>) -> Result<Option<JsonDocument>, ReadError> {
        let document = match revision {
            None => Collection::get(self, id)?,
            Some(revision) => Collection::revision(self, id, revision)?,
        };
        document.map(json).transpose()
    }

    fn remove(&self, id: &str, expected: Option<Revision>) -> Result<Revision, StoreError> {
        match expected {
            Some(expected) => self.remove_if(id, expected),
            None => Collection::remove(self, id),
        }
    }

    fn documents<'a>(&'a self, after: Option<&str>) -> Box<dyn Documents + 'a> {
        Box::new(JsonIter(match after {
            Some(after) => self.iter_after(after),
            None => self.iter(),
        }))
    }
}

/// A body decoded as `T`, with the collection to write it to.
struct Typed<'a, T> {
    collection: &'a Collection<T>,
    data: T,
}

impl<T: Schema> Decoded for Typed<'_, T> {
    fn data(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.data)
    }

    fn insert(&self, id: Option<&str>) -> Result<(String, Revision), StoreError> {
        if let Some(id) = id {
            let revision = self.collection.insert_with_id(id, &self.data)?;
            return Ok((id.to_owned(), revision));
        }
        let id = self.collection.insert(&self.data)?;
        Ok((id.to_string(), Revision::FIRST))
    }

    fn update(&self, id: &str, expected: Option<Revision>) -> Result<Revision, StoreError> {
        match expected {
            Some(expected) => self.collection.update_if(id, expected, &self.data),
            None => self.collection.update(id, &self.data),
        }
    }
}

/// [`Iter`] with its documents as JSON.
struct JsonIter<T>(Iter<T>);

impl<T: Schema> Iterator for JsonIter<T> {
    type Item = Result<JsonDocument, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.0.next()? {
            Ok(document) => json(document),
            Err(error) => Err(ReadError::Store(error)),
        })
    }
}

impl<T: Schema> Documents for JsonIter<T> {
    fn last_head(&self) -> Option<(&str, Option<Revision>)> {
        self.0.last_head()
    }
}
