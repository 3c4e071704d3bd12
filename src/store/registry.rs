//! Registration: what `_meta` records of each collection, and the schema drift check that runs
//! when a program first opens a collection.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::Value;

use super::collection::Core;
use super::{Collection, Store, StoreError};
use crate::record::{self, Kind};
use crate::schema::{
    self, canonical_schema, compare_schemas_with_aliases, fingerprint_canonical, is_breaking,
    Schema, SchemaChange,
};

/// How many stored documents a compatible change is tried on before it is accepted.
const SAMPLE: usize = 100;

/// What `_meta` records of a collection.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct CollectionMeta {
    /// The newest version any program has registered for the collection.
    pub(super) newest_version: u32,
    /// The fingerprint and JSON Schema each version was last registered with.
    #[serde(default)]
    versions: BTreeMap<u32, VersionMeta>,
    /// Every registration and accepted change, oldest first.
    #[serde(default)]
    history: Vec<SchemaRecord>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct VersionMeta {
    fingerprint: String,
    schema: Value,
}

/// Why the schema history has a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchemaEvent {
    /// A program registered this version for the first time.
    Registered,
    /// The version's schema changed compatibly, and stored documents still decoded.
    Compatible,
    /// The version's schema changed incompatibly and an operator accepted it with
    /// [`StoreBuilder::accept_schema_change`](super::StoreBuilder::accept_schema_change).
    Accepted,
}

/// One entry of a collection's schema history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SchemaRecord {
    /// The version.
    pub version: u32,
    /// The fingerprint of its canonical schema (SHA-256, hex).
    pub fingerprint: String,
    /// When it was recorded.
    pub recorded: SystemTime,
    /// Why.
    pub event: SchemaEvent,
    /// The changes from the fingerprint recorded before, classified; empty for a registration.
    pub changes: Vec<SchemaChange>,
    /// The full JSON Schema, as an audit snapshot.
    pub schema: Value,
}

impl Store {
    pub(super) fn read_meta(&self, collection: &str) -> Result<Option<CollectionMeta>, StoreError> {
        self.decode_meta(collection, self.inner().engine.meta(collection)?.as_deref())
    }

    fn decode_meta(
        &self,
        collection: &str,
        bytes: Option<&[u8]>,
    ) -> Result<Option<CollectionMeta>, StoreError> {
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        record::decode_payload(bytes, self.inner().max_depth.max(128))
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                collection: collection.to_owned(),
                id: "_meta".to_owned(),
                revision: None,
                source,
            })
    }

    /// Replaces the record if it is still `expected`; `false` when another program changed it.
    fn write_meta(
        &self,
        collection: &str,
        expected: Option<&[u8]>,
        meta: &CollectionMeta,
    ) -> Result<bool, StoreError> {
        let bytes = record::encode_payload(meta).map_err(|source| StoreError::Encode {
            collection: collection.to_owned(),
            source,
        })?;
        self.inner().engine.put_meta(collection, expected, &bytes)
    }

    /// Checks `T`'s chain against what the store recorded and records what is new. Returns the
    /// newest version any program has registered. Reads no document unless a version's schema
    /// changed compatibly (then it tries a sample); writes nothing if the check fails.
    pub(super) fn register<T: Schema>(&self, core: &Core) -> Result<u32, StoreError> {
        let name = T::COLLECTION;
        let links = schema::chain::<T>()?;
        // Read, decide, and record only if no other program recorded meanwhile; otherwise decide
        // again on what it recorded.
        loop {
            let current = self.inner().engine.meta(name)?;
            let mut meta = self
                .decode_meta(name, current.as_deref())?
                .unwrap_or_default();
            let mut dirty = false;
            // Logged once recorded.
            let mut events = Vec::new();

            let oldest = links.last().map_or(T::VERSION, |link| link.version);
            let counters = core.engine.counts()?;
            if let Some((&version, &documents)) = counters.live().range(..oldest).next() {
                tracing::warn!(
                    collection = name,
                    version,
                    documents,
                    oldest,
                    "refused: documents are stored at a version the program no longer defines"
                );
                return Err(StoreError::VersionNotDefined {
                    collection: name.to_owned(),
                    version,
                    documents,
                });
            }

            for link in &links {
                let canonical = canonical_schema(&link.schema);
                let fingerprint = fingerprint_canonical(&canonical);
                let (event, changes) = match meta.versions.get(&link.version) {
                    Some(recorded) if recorded.fingerprint == fingerprint => continue,
                    None => (SchemaEvent::Registered, Vec::new()),
                    Some(recorded) => {
                        let found = compare_schemas_with_aliases(
                            &recorded.schema,
                            &link.schema,
                            link.aliases,
                        );
                        if is_breaking(&found) {
                            if !self.inner().accepts(name, link.version) {
                                tracing::warn!(
                                    collection = name,
                                    version = link.version,
                                    latest = T::VERSION,
                                    changes = found.len(),
                                    "refused: the schema of a version changed incompatibly; bump \
                                 the version or accept the change"
                                );
                                return Err(StoreError::SchemaChanged {
                                    collection: name.to_owned(),
                                    version: link.version,
                                    latest: T::VERSION,
                                    changes: found,
                                });
                            }
                            (SchemaEvent::Accepted, found)
                        } else {
                            self.try_sample::<T>(core, link.version, &found)
                                .inspect_err(|_| {
                                    tracing::warn!(
                                    collection = name,
                                    version = link.version,
                                    changes = found.len(),
                                    "refused: a compatible-looking schema change does not decode \
                                     stored documents"
                                );
                                })?;
                            (SchemaEvent::Compatible, found)
                        }
                    }
                };
                meta.versions.insert(
                    link.version,
                    VersionMeta {
                        fingerprint: fingerprint.clone(),
                        schema: link.schema.clone(),
                    },
                );
                events.push((link.version, event, changes.len()));
                meta.history.push(SchemaRecord {
                    version: link.version,
                    fingerprint,
                    recorded: SystemTime::now(),
                    event,
                    changes,
                    schema: link.schema.clone(),
                });
                dirty = true;
            }
            if meta.newest_version < T::VERSION {
                meta.newest_version = T::VERSION;
                dirty = true;
            }
            if dirty && !self.write_meta(name, current.as_deref(), &meta)? {
                continue;
            }
            log_recorded(name, &events);
            return Ok(meta.newest_version);
        }
    }

    /// Decodes up to [`SAMPLE`] stored documents at `version` with the program's definition of it:
    /// a change classified compatible must also hold on real data.
    fn try_sample<T: Schema>(
        &self,
        core: &Core,
        version: u32,
        changes: &[SchemaChange],
    ) -> Result<(), StoreError> {
        let mut tried = 0;
        // A malformed head or a dangling one is an error here, not a document skipped: the
        // sample must not pass because it could not read what it should have tried.
        for entry in core.engine.heads(None, false) {
            if tried == SAMPLE {
                break;
            }
            let (id, head) = entry?;
            let id = id.as_str();
            if head.version != version {
                continue;
            }
            tried += 1;
            let bytes = core.head_revision(id, head)?;
            let envelope =
                record::decode(&bytes).map_err(|e| core.corrupt(id, Some(head.revision), e))?;
            if envelope.kind != Kind::Document {
                continue;
            }
            if let Err(error) =
                schema::decode_exact::<T>(version, envelope.payload, self.inner().max_depth)
            {
                return Err(StoreError::SampleRejected {
                    collection: T::COLLECTION.to_owned(),
                    version,
                    id: id.to_owned(),
                    changes: changes.to_vec(),
                    source: Box::new(error),
                });
            }
        }
        Ok(())
    }
}

impl<T: Schema> Collection<T> {
    /// The JSON Schema of the latest version, `T`, as schemars generates it.
    #[must_use]
    pub fn schema(&self) -> Value {
        serde_json::to_value(schemars::SchemaGenerator::default().into_root_schema_for::<T>())
            .unwrap_or(Value::Bool(true))
    }

    /// The JSON Schema of any version: from this program's chain, or, for a version it no longer
    /// defines, as the store recorded it. `None` for a version never registered.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an unreadable `_meta` record, and [`StoreError::Backend`].
    pub fn schema_at(&self, version: u32) -> Result<Option<Value>, StoreError> {
        if let Some(link) = schema::chain::<T>()?
            .into_iter()
            .find(|link| link.version == version)
        {
            return Ok(Some(link.schema));
        }
        Ok(self
            .store()
            .read_meta(self.name())?
            .and_then(|mut meta| meta.versions.remove(&version))
            .map(|recorded| recorded.schema))
    }

    /// The recorded schema history: every registration and accepted change, oldest first.
    ///
    /// # Errors
    ///
    /// As [`schema_at`](Self::schema_at).
    pub fn schema_history(&self) -> Result<Vec<SchemaRecord>, StoreError> {
        Ok(self
            .store()
            .read_meta(self.name())?
            .map(|meta| meta.history)
            .unwrap_or_default())
    }

    /// The fingerprint of the latest version's canonical schema.
    #[must_use]
    pub fn schema_fingerprint(&self) -> String {
        fingerprint_canonical(&canonical_schema(&self.schema()))
    }
}

/// Logs what registration recorded, once it is recorded.
fn log_recorded(name: &str, events: &[(u32, SchemaEvent, usize)]) {
    for &(version, event, changes) in events {
        match event {
            SchemaEvent::Accepted => tracing::warn!(
                collection = name,
                version,
                changes,
                "incompatible schema change accepted by the operator and recorded"
            ),
            SchemaEvent::Compatible => tracing::info!(
                collection = name,
                version,
                changes,
                "compatible schema change recorded"
            ),
            SchemaEvent::Registered => {
                tracing::info!(collection = name, version, "schema version registered");
            }
        }
    }
}
