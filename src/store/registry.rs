//! Registration: what `_meta` records of each collection, and the schema drift check that runs
//! when a program first opens a collection.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde_json::Value;

use super::collection::Core;
use super::{Collection, Store, StoreError};
#[cfg(feature = "postgres")]
use crate::record::RecordError;
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

#[cfg(feature = "postgres")]
impl SchemaEvent {
    /// The event's name, as the record spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Compatible => "compatible",
            Self::Accepted => "accepted",
        }
    }
}

#[cfg(feature = "postgres")]
/// How deep [`split_meta`] and [`join_meta`] decode: the least `read_meta` allows.
const META_DEPTH: usize = 128;

#[cfg(feature = "postgres")]
/// A `_meta` record split for an engine that keeps the schema history apart from the rest:
/// [`join_meta`] puts it back together, byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SplitMeta {
    /// The record with an empty history.
    pub(crate) record: Vec<u8>,
    /// Each entry of the history, oldest first.
    pub(crate) history: Vec<HistoryEntry>,
    /// The newest version the record registers; `None` for a record an engine keeps whole.
    pub(crate) newest: Option<u32>,
}

#[cfg(feature = "postgres")]
/// One entry of a split schema history: its bytes, and copies of the fields worth a query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistoryEntry {
    pub(crate) version: u32,
    pub(crate) event: SchemaEvent,
    pub(crate) fingerprint: String,
    pub(crate) recorded: SystemTime,
    /// The entry as the record encodes it: what [`join_meta`] takes.
    pub(crate) bytes: Vec<u8>,
}

#[cfg(feature = "postgres")]
/// Splits a `_meta` record into the record without its history and each history entry.
///
/// Only an exact split is made: a record that this build would not encode back byte for byte
/// (a field it does not know, say) is refused, and an engine keeps such a record whole.
pub(crate) fn split_meta(bytes: &[u8]) -> Result<SplitMeta, RecordError> {
    let mut meta: CollectionMeta = record::decode_payload(bytes, META_DEPTH)?;
    let entries = std::mem::take(&mut meta.history);
    let record = record::encode_payload(&meta)?;
    let history = entries
        .into_iter()
        .map(|entry| {
            Ok(HistoryEntry {
                bytes: record::encode_payload(&entry)?,
                version: entry.version,
                event: entry.event,
                fingerprint: entry.fingerprint,
                recorded: entry.recorded,
            })
        })
        .collect::<Result<Vec<_>, RecordError>>()?;
    if join_meta(&record, history.iter().map(|entry| entry.bytes.as_slice()))? != bytes {
        return Err(RecordError::InvalidPayload(
            "a `_meta` record this build would not encode back byte for byte",
        ));
    }
    Ok(SplitMeta {
        record,
        history,
        newest: Some(meta.newest_version),
    })
}

#[cfg(feature = "postgres")]
/// The `_meta` record that [`split_meta`] split into `record` and the `history` entries.
pub(crate) fn join_meta<'a>(
    record: &[u8],
    history: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, RecordError> {
    let mut meta: CollectionMeta = record::decode_payload(record, META_DEPTH)?;
    if !meta.history.is_empty() {
        return Err(RecordError::InvalidPayload(
            "a `_meta` record that holds a history besides the one kept apart",
        ));
    }
    meta.history = history
        .into_iter()
        .map(|entry| record::decode_payload(entry, META_DEPTH))
        .collect::<Result<_, _>>()?;
    record::encode_payload(&meta)
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

    /// Checks `T`'s chain against what the store recorded and records what is new. Returns the
    /// newest version any program has registered. Reads no document unless a version's schema
    /// changed compatibly (then it tries a sample); writes nothing if the check fails.
    ///
    /// The record is read and decided on first without the engine's ordering: a program that
    /// finds its chain recorded as it is (a restart, or the instances after the first) writes
    /// nothing and waits for no one. Anything else (a record to write, or a refusal) is decided
    /// again on the record as [`Engine::update_meta`](super::engine::Engine::update_meta) reads
    /// it, in order with every other program registering the collection, so that a change is
    /// recorded once. The sample a compatible change needs is read before, outside that order:
    /// the decision under it reads no document.
    pub(super) fn register<T: Schema>(&self, core: &Core) -> Result<u32, StoreError> {
        let name = T::COLLECTION;
        let links = schema::chain::<T>()?;

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

        // The changes a sample of stored documents passed: each version, with the fingerprint
        // recorded for it when the sample was read (a change from another record is tried anew).
        let mut sampled = BTreeSet::new();
        loop {
            let current = self.inner().engine.meta(name)?;
            match self.decide::<T>(&links, current.as_deref(), &sampled) {
                Ok(Decision::Unchanged(newest)) => return Ok(newest),
                Ok(Decision::Sample {
                    version,
                    recorded,
                    changes,
                }) => {
                    self.try_sample::<T>(core, version, &changes)
                        .inspect_err(|_| {
                            tracing::warn!(
                                collection = name,
                                version,
                                changes = changes.len(),
                                "refused: a compatible-looking schema change does not decode \
                                 stored documents"
                            );
                        })?;
                    sampled.insert((version, recorded));
                    continue;
                }
                Ok(Decision::Record { .. }) | Err(_) => {}
            }
            let mut decided = None;
            self.inner()
                .engine
                .update_meta(name, &mut |bytes| {
                    let decision = self.decide::<T>(&links, bytes, &sampled)?;
                    let write = match &decision {
                        Decision::Record { bytes, .. } => Some(bytes.clone()),
                        Decision::Unchanged(_) | Decision::Sample { .. } => None,
                    };
                    decided = Some(decision);
                    Ok(write)
                })
                .inspect_err(|error| log_refusal(name, error))?;
            match decided {
                Some(Decision::Unchanged(newest)) => return Ok(newest),
                Some(Decision::Record { newest, events, .. }) => {
                    log_recorded(name, &events);
                    return Ok(newest);
                }
                // Another program recorded a change of a version meanwhile: the sample of this
                // program's change from it is read outside the order, and the record decided on
                // again.
                Some(Decision::Sample { .. }) | None => {}
            }
        }
    }

    /// What to record of `T`'s chain, given the record `bytes` as stored: the versions in
    /// `sampled` (version, recorded fingerprint) passed a sample of stored documents. Reads no
    /// document.
    fn decide<T: Schema>(
        &self,
        links: &[schema::Link],
        bytes: Option<&[u8]>,
        sampled: &BTreeSet<(u32, String)>,
    ) -> Result<Decision, StoreError> {
        let name = T::COLLECTION;
        let mut meta = self.decode_meta(name, bytes)?.unwrap_or_default();
        let mut dirty = false;
        let mut events = Vec::new();
        for link in links {
            let canonical = canonical_schema(&link.schema);
            let fingerprint = fingerprint_canonical(&canonical);
            let (event, changes) = match meta.versions.get(&link.version) {
                Some(recorded) if recorded.fingerprint == fingerprint => continue,
                None => (SchemaEvent::Registered, Vec::new()),
                Some(recorded) => {
                    let found =
                        compare_schemas_with_aliases(&recorded.schema, &link.schema, link.aliases);
                    if is_breaking(&found) {
                        if !self.inner().accepts(name, link.version) {
                            return Err(StoreError::SchemaChanged {
                                collection: name.to_owned(),
                                version: link.version,
                                latest: T::VERSION,
                                changes: found,
                            });
                        }
                        (SchemaEvent::Accepted, found)
                    } else if sampled.contains(&(link.version, recorded.fingerprint.clone())) {
                        (SchemaEvent::Compatible, found)
                    } else {
                        return Ok(Decision::Sample {
                            version: link.version,
                            recorded: recorded.fingerprint.clone(),
                            changes: found,
                        });
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
        if !dirty {
            return Ok(Decision::Unchanged(meta.newest_version));
        }
        let bytes = record::encode_payload(&meta).map_err(|source| StoreError::Encode {
            collection: name.to_owned(),
            source,
        })?;
        Ok(Decision::Record {
            bytes,
            newest: meta.newest_version,
            events,
        })
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

/// What registration decided on a `_meta` record.
enum Decision {
    /// Nothing to record; the newest version registered.
    Unchanged(u32),
    /// The record to store, the newest version it registers, and what it records (for the log).
    Record {
        bytes: Vec<u8>,
        newest: u32,
        events: Vec<(u32, SchemaEvent, usize)>,
    },
    /// A compatible change of `version` is to be tried on stored documents first.
    Sample {
        version: u32,
        /// The fingerprint recorded for it, that the change is from.
        recorded: String,
        changes: Vec<SchemaChange>,
    },
}

/// Logs a refusal, once it is final.
fn log_refusal(name: &str, error: &StoreError) {
    if let StoreError::SchemaChanged {
        version,
        latest,
        changes,
        ..
    } = error
    {
        tracing::warn!(
            collection = name,
            version,
            latest,
            changes = changes.len(),
            "refused: the schema of a version changed incompatibly; bump the version or accept \
             the change"
        );
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

/// A `_meta` record as registration writes it: `newest` registered with one schema, and a
/// history entry for each of `history` (at fixed times), for engines' tests.
#[cfg(all(test, feature = "postgres"))]
pub(crate) fn sample_meta(newest: u32, history: &[u32]) -> Vec<u8> {
    use std::time::{Duration, UNIX_EPOCH};
    let schema = serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}});
    let fingerprint = fingerprint_canonical(&canonical_schema(&schema));
    let meta = CollectionMeta {
        newest_version: newest,
        versions: BTreeMap::from([(
            newest,
            VersionMeta {
                fingerprint: fingerprint.clone(),
                schema: schema.clone(),
            },
        )]),
        history: history
            .iter()
            .zip(1..)
            .map(|(&version, at)| SchemaRecord {
                version,
                fingerprint: fingerprint.clone(),
                recorded: UNIX_EPOCH + Duration::new(1_790_000_000 + at, 500),
                event: SchemaEvent::Registered,
                changes: Vec::new(),
                schema: schema.clone(),
            })
            .collect(),
    };
    record::encode_payload(&meta).unwrap_or_default()
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::schema::compare_schemas;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn entry(version: u32, event: SchemaEvent, old: &Value, new: &Value) -> SchemaRecord {
        SchemaRecord {
            version,
            fingerprint: fingerprint_canonical(&canonical_schema(new)),
            recorded: at(1_790_000_000 + u64::from(version), 123_456_789),
            event,
            changes: match event {
                SchemaEvent::Registered => Vec::new(),
                _ => compare_schemas(old, new),
            },
            schema: new.clone(),
        }
    }

    /// The records registration writes: the first program, a second version, a compatible
    /// change and an accepted incompatible one.
    fn written() -> Vec<CollectionMeta> {
        let v1 = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
        let v1_wider = json!({"type": "object", "properties": {"text": {"type": "string"}, "tag": {"type": ["string", "null"], "default": null}}, "required": ["text"]});
        let v2 = json!({"type": "object", "properties": {"text": {"type": "string"}, "len": {"type": "integer", "format": "uint64", "minimum": 0.0, "maximum": -1.5e300}}, "required": ["text", "len"]});
        let v2_breaking = json!({"type": "object", "properties": {"text": {"type": "integer", "minimum": -7}}, "required": ["text"]});
        let mut meta = CollectionMeta::default();
        let mut records = vec![CollectionMeta {
            newest_version: 0,
            versions: BTreeMap::new(),
            history: Vec::new(),
        }];
        let mut record = |meta: &mut CollectionMeta, version, event, old: &Value, new: &Value| {
            meta.newest_version = meta.newest_version.max(version);
            meta.versions.insert(
                version,
                VersionMeta {
                    fingerprint: fingerprint_canonical(&canonical_schema(new)),
                    schema: new.clone(),
                },
            );
            meta.history.push(entry(version, event, old, new));
            records.push(CollectionMeta {
                newest_version: meta.newest_version,
                versions: meta.versions.clone(),
                history: meta.history.clone(),
            });
        };
        record(&mut meta, 1, SchemaEvent::Registered, &v1, &v1);
        record(&mut meta, 2, SchemaEvent::Registered, &v2, &v2);
        record(&mut meta, 1, SchemaEvent::Compatible, &v1, &v1_wider);
        record(&mut meta, 2, SchemaEvent::Accepted, &v2, &v2_breaking);
        records
    }

    fn roundtrip(meta: &CollectionMeta) -> SplitMeta {
        let bytes = record::encode_payload(meta).unwrap();
        let split = split_meta(&bytes).unwrap();
        assert_eq!(split.history.len(), meta.history.len());
        let joined = join_meta(
            &split.record,
            split.history.iter().map(|e| e.bytes.as_slice()),
        )
        .unwrap();
        assert_eq!(joined, bytes, "join(split(x)) == x");
        split
    }

    #[test]
    fn every_record_registration_writes_splits_and_joins_back_byte_for_byte() {
        let records = written();
        assert!(records
            .iter()
            .any(|meta| meta.history.iter().any(|entry| !entry.changes.is_empty())));
        for meta in &records {
            let split = roundtrip(meta);
            // The record without its history is the record of an empty history.
            let bare: CollectionMeta = record::decode_payload(&split.record, 128).unwrap();
            assert!(bare.history.is_empty());
            assert_eq!(bare.versions.len(), meta.versions.len());
            for (entry, original) in split.history.iter().zip(&meta.history) {
                assert_eq!(entry.version, original.version);
                assert_eq!(entry.event, original.event);
                assert_eq!(entry.fingerprint, original.fingerprint);
                assert_eq!(entry.recorded, original.recorded);
                let decoded: SchemaRecord = record::decode_payload(&entry.bytes, 128).unwrap();
                assert_eq!(&decoded, original);
            }
        }
    }

    #[test]
    fn a_record_without_history_splits_into_itself() {
        let meta = CollectionMeta::default();
        let bytes = record::encode_payload(&meta).unwrap();
        let split = split_meta(&bytes).unwrap();
        assert_eq!(split.record, bytes);
        assert!(split.history.is_empty());
    }

    #[test]
    fn a_record_this_build_would_write_otherwise_is_not_split() {
        // A field this build does not know: decoding drops it, so a split would lose it.
        let bytes = record::encode_payload(&json!({
            "newest_version": 1, "versions": {}, "history": [], "later": true
        }))
        .unwrap();
        assert!(split_meta(&bytes).is_err());
        // A record older builds wrote without the defaulted fields.
        let bytes = record::encode_payload(&json!({"newest_version": 1})).unwrap();
        assert!(split_meta(&bytes).is_err());
        assert!(split_meta(b"\xc1 not messagepack").is_err());
    }

    #[test]
    fn join_refuses_what_split_does_not_make() {
        let records = written();
        let full = record::encode_payload(records.last().unwrap()).unwrap();
        let split = split_meta(&full).unwrap();
        // A record that still holds a history.
        assert!(join_meta(&full, [split.history[0].bytes.as_slice()]).is_err());
        // A history entry that does not decode.
        assert!(join_meta(&split.record, [&b"\x93\x01"[..]]).is_err());
        assert!(join_meta(&split.record, [&b"\xc1"[..]]).is_err());
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z$ é]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z$]{1,6}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn change() -> impl Strategy<Value = SchemaChange> {
        (
            "[a-z/*]{0,10}",
            proptest::option::of("[a-z]{0,6}"),
            proptest::option::of("[a-z]{0,6}"),
            any::<bool>(),
        )
            .prop_map(|(path, old, new, breaking)| SchemaChange {
                path,
                kind: if breaking {
                    schema::ChangeKind::TypeChanged
                } else {
                    schema::ChangeKind::FieldAdded
                },
                compatibility: if breaking {
                    schema::Compatibility::Breaking
                } else {
                    schema::Compatibility::Compatible
                },
                old,
                new,
                reason: "because".to_owned(),
            })
    }

    fn schema_record() -> impl Strategy<Value = SchemaRecord> {
        (
            any::<u32>(),
            "[0-9a-f]{0,64}",
            (0u64..=u64::from(u32::MAX) * 4, 0u32..1_000_000_000),
            prop_oneof![
                Just(SchemaEvent::Registered),
                Just(SchemaEvent::Compatible),
                Just(SchemaEvent::Accepted),
            ],
            proptest::collection::vec(change(), 0..3),
            value(),
        )
            .prop_map(
                |(version, fingerprint, (secs, nanos), event, changes, schema)| SchemaRecord {
                    version,
                    fingerprint,
                    recorded: at(secs, nanos),
                    event,
                    changes,
                    schema,
                },
            )
    }

    proptest! {
        #[test]
        fn join_of_split_is_the_record(
            newest_version in any::<u32>(),
            versions in proptest::collection::btree_map(
                any::<u32>(),
                ("[0-9a-f]{0,64}", value()).prop_map(|(fingerprint, schema)| VersionMeta { fingerprint, schema }),
                0..4,
            ),
            history in proptest::collection::vec(schema_record(), 0..5),
        ) {
            roundtrip(&CollectionMeta { newest_version, versions, history });
        }

        #[test]
        fn splitting_or_joining_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
            entry in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = split_meta(&bytes);
            let _ = join_meta(&bytes, [entry.as_slice()]);
        }
    }
}
