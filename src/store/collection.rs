//! Collections: raw handles, typed views over them, and the write protocol.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::engine::{
    Action, Bytes, ChunkItem, CollectionEngine, Commit, EncodedRevision, Head, Outcome, Seen,
};
use super::{Store, StoreError};
use crate::id::{self, DocId, Revision};
use crate::record::{self, Envelope, Kind, Origin};
use crate::schema::{self, Schema};

/// The state every handle of one collection name shares in this process.
pub(crate) struct Core {
    pub(super) name: String,
    pub(super) engine: Arc<dyn CollectionEngine>,
    binding: Mutex<Option<Binding>>,
    /// Whether the newest ledger record was settled since the store was opened: a run found
    /// `running` then is one that stopped (see `Store::settled`).
    pub(super) settled: AtomicBool,
}

/// The type a collection name is bound to in this process.
#[derive(Debug, Clone, Copy)]
struct Binding {
    type_id: TypeId,
    type_name: &'static str,
}

impl Core {
    pub(super) fn new(name: String, engine: Arc<dyn CollectionEngine>) -> Self {
        Self {
            name,
            engine,
            binding: Mutex::new(None),
            settled: AtomicBool::new(false),
        }
    }

    /// Binds the collection to a type on first use (registering it, and telling the engine the
    /// newest version registered), and checks every later use names the same type.
    pub(super) fn bind(
        &self,
        type_id: TypeId,
        type_name: &'static str,
        register: impl FnOnce() -> Result<u32, StoreError>,
    ) -> Result<(), StoreError> {
        let mut binding = self.binding.lock();
        if let Some(bound) = *binding {
            return if bound.type_id == type_id {
                Ok(())
            } else {
                Err(StoreError::CollectionTypeMismatch {
                    collection: self.name.clone(),
                    registered: bound.type_name,
                    requested: type_name,
                })
            };
        }
        let newest = register()?;
        self.engine.registered(newest)?;
        *binding = Some(Binding { type_id, type_name });
        Ok(())
    }

    pub(super) fn head(&self, id: &str) -> Result<Option<Head>, StoreError> {
        self.engine.head(id)
    }

    /// The sled engine of this collection, for tests that damage its records.
    #[cfg(test)]
    pub(crate) fn sled(&self) -> &super::engine::sled::collection::SledCollection {
        self.engine
            .as_any()
            .downcast_ref()
            .expect("tests run on sled")
    }

    /// The bytes of the revision a head names; a missing one is a dangling head.
    pub(super) fn head_revision(&self, id: &str, head: Head) -> Result<Bytes, StoreError> {
        self.engine
            .revision(id, head.revision)?
            .ok_or_else(|| StoreError::DanglingHead {
                collection: self.name.clone(),
                id: id.to_owned(),
                revision: head.revision,
            })
    }

    pub(super) fn corrupt(
        &self,
        id: &str,
        revision: Option<Revision>,
        source: record::RecordError,
    ) -> StoreError {
        StoreError::Corrupt {
            collection: self.name.clone(),
            id: id.to_owned(),
            revision,
            source,
        }
    }

    fn not_found(&self, id: &str) -> StoreError {
        StoreError::NotFound {
            collection: self.name.clone(),
            id: id.to_owned(),
        }
    }

    /// Up to `limit` revisions after `after` (from the first without it), oldest first: a range
    /// read, so a long history costs only the page.
    fn history_page(
        &self,
        id: &str,
        after: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<RevisionInfo>, StoreError> {
        validate_id(id)?;
        self.engine
            .revisions(id, after, limit)?
            .iter()
            .map(|bytes| {
                let envelope = record::decode(bytes).map_err(|e| self.corrupt(id, None, e))?;
                Ok(RevisionInfo::from(&envelope))
            })
            .collect()
    }

    fn raw_revision(
        &self,
        id: &str,
        revision: Revision,
        max_depth: usize,
    ) -> Result<Option<RawRevision>, StoreError> {
        validate_id(id)?;
        let Some(bytes) = self.engine.revision(id, revision)? else {
            return Ok(None);
        };
        let envelope = record::decode(&bytes).map_err(|e| self.corrupt(id, Some(revision), e))?;
        let payload = match envelope.kind {
            Kind::Tombstone => None,
            Kind::Document => Some(
                record::decode_payload(envelope.payload, max_depth)
                    .map_err(|e| self.corrupt(id, Some(revision), e))?,
            ),
        };
        Ok(Some(RawRevision {
            info: RevisionInfo::from(&envelope),
            payload,
            bytes: envelope.payload.to_vec(),
        }))
    }

    /// Whether every revision after `expected` up to the head is a migration or a revert, which
    /// `update_if` looks through.
    fn only_transparent_since(
        &self,
        id: &str,
        expected: Revision,
        head: Revision,
    ) -> Result<bool, StoreError> {
        let mut revision = expected.next();
        while revision <= head {
            let Some(bytes) = self.engine.revision(id, revision)? else {
                return Ok(false);
            };
            let envelope =
                record::decode(&bytes).map_err(|e| self.corrupt(id, Some(revision), e))?;
            if !envelope.origin.is_transparent() {
                return Ok(false);
            }
            revision = revision.next();
        }
        Ok(true)
    }
}

/// What a single-document write requires of the current head.
#[derive(Clone, Copy)]
enum Expect {
    /// No live document (a removed one is brought back with a new revision).
    Absent,
    /// A live document.
    Live,
    /// A live document at this revision, or one changed since only by migrations and reverts.
    Revision(Revision),
}

fn validate_id(id: &str) -> Result<(), StoreError> {
    id::validate(id).map_err(|source| StoreError::invalid_id(id, source))
}

/// A collection of documents whose latest version is `T`.
///
/// Cheap to clone, `Send` and `Sync`; every handle of a collection shares one write lock.
pub struct Collection<T> {
    pub(super) raw: RawCollection,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            _type: PhantomData,
        }
    }
}

/// A typed collection is a [`RawCollection`] that also knows its documents' type: every untyped
/// method (its name, history, raw revisions, counts) is the raw collection's.
impl<T> std::ops::Deref for Collection<T> {
    type Target = RawCollection;

    fn deref(&self) -> &RawCollection {
        &self.raw
    }
}

impl<T> Collection<T> {
    /// The untyped view of this collection.
    #[must_use]
    pub fn raw(&self) -> &RawCollection {
        &self.raw
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.raw.core.name)
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// A document read from a collection, upgraded to the latest version.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Document<T> {
    /// The document's id.
    pub id: DocId,
    /// The revision read.
    pub revision: Revision,
    /// The schema version the revision's bytes are stored at; below `T::VERSION` when the document
    /// was upgraded on read.
    pub stored_version: u32,
    /// The document, at the latest version.
    pub data: T,
}

/// What the history of a document records of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevisionInfo {
    /// The revision's number.
    pub revision: Revision,
    /// The revision it follows; `None` for the first.
    pub parent: Option<Revision>,
    /// The schema version its bytes are stored at; `None` for a removal.
    pub version: Option<u32>,
    /// Whether this revision removed the document.
    pub removed: bool,
    /// What wrote it.
    pub origin: Origin,
    /// When it was written.
    pub timestamp: SystemTime,
}

impl From<&Envelope<'_>> for RevisionInfo {
    fn from(envelope: &Envelope<'_>) -> Self {
        let removed = envelope.kind == Kind::Tombstone;
        Self {
            revision: envelope.revision,
            parent: envelope.revision.parent(),
            version: (!removed).then_some(envelope.version),
            removed,
            origin: envelope.origin,
            timestamp: UNIX_EPOCH + Duration::from_micros(envelope.timestamp_micros),
        }
    }
}

/// One stored revision as it is on disk, not upgraded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RawRevision {
    /// The revision's metadata.
    pub info: RevisionInfo,
    /// The payload as JSON; `None` for a removal.
    pub payload: Option<serde_json::Value>,
    /// The payload's MessagePack bytes exactly as stored; empty for a removal.
    pub bytes: Vec<u8>,
}

impl RawRevision {
    /// The revision an envelope holds; its payload is `None` for a removal, and for bytes that are
    /// not MessagePack (kept in `bytes`).
    fn of(envelope: &Envelope<'_>, max_depth: usize) -> Self {
        let payload = match envelope.kind {
            Kind::Tombstone => None,
            Kind::Document => record::decode_payload(envelope.payload, max_depth).ok(),
        };
        Self {
            info: RevisionInfo::from(envelope),
            payload,
            bytes: envelope.payload.to_vec(),
        }
    }
}

#[cfg(all(test, feature = "http"))]
impl<T> Collection<T> {
    /// Test only: overwrites the head of `id` with bytes that do not decode, so that the HTTP
    /// layer's tests can provoke a real store error (500).
    pub(crate) fn damage_head_for_test(&self, id: &str) {
        use super::engine::sled::keys;
        self.raw
            .core
            .sled()
            .tree
            .insert(keys::head(id), &[9u8; 3][..])
            .unwrap();
    }
}

impl<T: Schema> Collection<T> {
    pub(super) fn new(store: Store, core: Arc<Core>) -> Self {
        Self {
            raw: RawCollection::new(store, core),
            _type: PhantomData,
        }
    }

    pub(crate) fn max_depth(&self) -> usize {
        self.raw.store.inner().max_depth
    }

    /// Refuses writes from a program older than the newest one that registered the collection.
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        self.raw.core.engine.writable_by(T::VERSION)
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>, StoreError> {
        record::encode_payload(value).map_err(|source| StoreError::Encode {
            collection: self.raw.core.name.clone(),
            source,
        })
    }

    /// Decodes a stored revision and upgrades it to `T`; `None` for a removal.
    pub(super) fn decode(&self, id: &str, bytes: &[u8]) -> Result<Option<Document<T>>, StoreError> {
        let envelope = record::decode(bytes).map_err(|e| self.raw.core.corrupt(id, None, e))?;
        if envelope.kind == Kind::Tombstone {
            return Ok(None);
        }
        // Checked on the envelope, before decoding: field-named MessagePack of a newer layout can
        // decode as an older one without complaint.
        if envelope.version > T::VERSION {
            return Err(StoreError::VersionTooNew {
                collection: self.raw.core.name.clone(),
                stored: envelope.version,
                known: T::VERSION,
            });
        }
        let data = schema::upgrade::<T>(envelope.version, envelope.payload, self.max_depth())
            .map_err(|source| StoreError::Upgrade {
                collection: self.raw.core.name.clone(),
                id: id.to_owned(),
                revision: envelope.revision,
                stored_version: envelope.version,
                raw: Box::new(RawRevision::of(&envelope, self.max_depth())),
                source: Box::new(source),
            })?;
        Ok(Some(Document {
            id: DocId::from_validated(id.to_owned()),
            revision: envelope.revision,
            stored_version: envelope.version,
            data,
        }))
    }

    /// Inserts a new document under a generated id; its first revision.
    ///
    /// # Errors
    ///
    /// [`StoreError::VersionTooNew`] when a newer program has taken the collection over,
    /// [`StoreError::Encode`], and [`StoreError::Backend`].
    pub fn insert(&self, value: &T) -> Result<DocId, StoreError> {
        let mut ids = self.insert_many(std::slice::from_ref(value))?;
        ids.pop()
            .ok_or_else(|| self.raw.core.not_found("(generated)"))
    }

    /// Inserts many documents under generated ids in one atomic batch: all are written, or none.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_many<'a>(
        &self,
        values: impl IntoIterator<Item = &'a T>,
    ) -> Result<Vec<DocId>, StoreError> {
        self.check_writable()?;
        let mut items = Vec::new();
        for value in values {
            let payload = self.encode(value)?;
            items.push(ChunkItem {
                id: DocId::generate().into_string(),
                // A generated id is new: no head is looked for.
                seen: Seen::Fresh,
                action: Action::Write(EncodedRevision::new(
                    None,
                    T::VERSION,
                    Origin::Write,
                    &payload,
                )),
            });
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.raw
            .core
            .engine
            .commit(&items, Commit::new(Origin::Write, T::VERSION))?;
        Ok(items
            .into_iter()
            .map(|item| DocId::from_validated(item.id))
            .collect())
    }

    /// Inserts a document under an id the application chooses.
    ///
    /// An id whose document was removed is taken again: the new document continues the removed
    /// one's history with the next revision, and the old revisions stay readable.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyExists`] when a live document has the id, [`StoreError::InvalidId`],
    /// and as [`insert`](Self::insert).
    pub fn insert_with_id(&self, id: &str, value: &T) -> Result<Revision, StoreError> {
        self.write(id, Expect::Absent, Some(value))
    }

    /// Writes a new revision of a document.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no live document has the id, [`StoreError::InvalidId`], and as
    /// [`insert`](Self::insert).
    pub fn update(&self, id: &str, value: &T) -> Result<Revision, StoreError> {
        self.write(id, Expect::Live, Some(value))
    }

    /// Writes a new revision of a document only if it is still at `expected`, or was changed since
    /// only by migrations or reverts (which keep its meaning).
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] with the current revision when another write came in between, and
    /// as [`update`](Self::update).
    pub fn update_if(
        &self,
        id: &str,
        expected: Revision,
        value: &T,
    ) -> Result<Revision, StoreError> {
        self.write(id, Expect::Revision(expected), Some(value))
    }

    /// Removes a document by appending a removal revision; its history stays readable.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no live document has the id, and as
    /// [`update`](Self::update).
    pub fn remove(&self, id: &str) -> Result<Revision, StoreError> {
        self.write(id, Expect::Live, None)
    }

    /// Removes a document only if it is still at `expected`, or was changed since only by
    /// migrations or reverts: the removal's form of [`update_if`](Self::update_if).
    ///
    /// # Errors
    ///
    /// As [`update_if`](Self::update_if).
    pub fn remove_if(&self, id: &str, expected: Revision) -> Result<Revision, StoreError> {
        self.write(id, Expect::Revision(expected), None)
    }

    /// A single-document write: decides from the head it reads, and commits only if that head
    /// is still the document's; when another write moved it meanwhile, decides again.
    fn write(&self, id: &str, expect: Expect, value: Option<&T>) -> Result<Revision, StoreError> {
        validate_id(id)?;
        self.check_writable()?;
        let payload = value.map(|value| self.encode(value)).transpose()?;
        let core = &self.raw.core;
        loop {
            let current = core.head(id)?;
            let live = current.filter(|head| !head.removed);
            match (expect, live) {
                (Expect::Absent, Some(_)) => {
                    return Err(StoreError::AlreadyExists {
                        collection: core.name.clone(),
                        id: id.to_owned(),
                    })
                }
                (Expect::Live | Expect::Revision(_), None) => return Err(core.not_found(id)),
                (Expect::Revision(expected), Some(head)) if head.revision != expected => {
                    let transparent = expected < head.revision
                        && core.only_transparent_since(id, expected, head.revision)?;
                    if !transparent {
                        return Err(StoreError::Conflict {
                            collection: core.name.clone(),
                            id: id.to_owned(),
                            expected,
                            current: head.revision,
                        });
                    }
                }
                _ => {}
            }
            let revision = match (&payload, live) {
                (Some(payload), _) => {
                    EncodedRevision::new(current, T::VERSION, Origin::Write, payload)
                }
                (None, Some(live)) => EncodedRevision::tombstone(live, Origin::Write),
                (None, None) => return Err(core.not_found(id)),
            };
            let written = revision.head.revision;
            let item = ChunkItem {
                id: id.to_owned(),
                seen: current.map_or(Seen::Absent, Seen::Head),
                action: Action::Write(revision),
            };
            let outcome = core.engine.commit(
                std::slice::from_ref(&item),
                Commit::new(Origin::Write, T::VERSION),
            )?;
            if outcome == [Outcome::Written] {
                return Ok(written);
            }
        }
    }

    /// The current revision of a document, upgraded to `T`; `None` if there is none or it was
    /// removed. Reading never writes, unless the store was opened with
    /// [`write_back_on_read`](crate::StoreBuilder::write_back_on_read).
    ///
    /// # Errors
    ///
    /// [`StoreError::VersionTooNew`] for a document stored by a newer program,
    /// [`StoreError::Corrupt`] for damaged bytes, [`StoreError::Upgrade`] when the payload does not
    /// decode or a step fails (with the stored version and the revision as stored, which stays
    /// untouched), [`StoreError::InvalidId`], and [`StoreError::Backend`].
    pub fn get(&self, id: &str) -> Result<Option<Document<T>>, StoreError> {
        validate_id(id)?;
        let Some(head) = self.raw.core.head(id)? else {
            return Ok(None);
        };
        if head.removed {
            return Ok(None);
        }
        let bytes = self.raw.core.head_revision(id, head)?;
        let Some(mut document) = self.decode(id, &bytes)? else {
            return Ok(None);
        };
        if self.raw.store.inner().write_back_on_read
            && document.stored_version < T::VERSION
            && self.check_writable().is_ok()
        {
            let payload = self.encode(&document.data)?;
            let item = ChunkItem {
                id: id.to_owned(),
                seen: Seen::Head(head),
                action: Action::Write(EncodedRevision::new(
                    Some(head),
                    T::VERSION,
                    Origin::UpgradeOnRead,
                    &payload,
                )),
            };
            // Skipped when another write replaced the head meanwhile: the read stays correct.
            let outcome =
                self.commit_chunk(&[item], Commit::new(Origin::UpgradeOnRead, T::VERSION))?;
            if outcome == [Outcome::Written] {
                document.revision = head.revision.next();
                document.stored_version = T::VERSION;
            }
        }
        Ok(Some(document))
    }

    /// Any revision of a document, upgraded to `T`; `None` if it does not exist or is a removal.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn revision(
        &self,
        id: &str,
        revision: Revision,
    ) -> Result<Option<Document<T>>, StoreError> {
        validate_id(id)?;
        match self.raw.core.engine.revision(id, revision)? {
            Some(bytes) => self.decode(id, &bytes),
            None => Ok(None),
        }
    }
}

/// A collection opened by name, without its types: history, raw payloads and counts, read only.
///
/// Every [`Collection`] dereferences to its raw collection.
#[derive(Clone)]
pub struct RawCollection {
    pub(super) store: Store,
    pub(super) core: Arc<Core>,
}

impl fmt::Debug for RawCollection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCollection")
            .field("name", &self.core.name)
            .finish_non_exhaustive()
    }
}

impl RawCollection {
    pub(super) fn new(store: Store, core: Arc<Core>) -> Self {
        Self { store, core }
    }

    /// The collection's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.core.name
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// One revision exactly as stored: its version and payload, not upgraded.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for damaged bytes, [`StoreError::InvalidId`], and
    /// [`StoreError::Backend`].
    pub fn raw_revision(
        &self,
        id: &str,
        revision: Revision,
    ) -> Result<Option<RawRevision>, StoreError> {
        self.core
            .raw_revision(id, revision, self.store.inner().max_depth)
    }

    /// Every revision of a document, oldest first; empty for an id never written.
    ///
    /// # Errors
    ///
    /// As [`raw_revision`](Self::raw_revision).
    pub fn history(&self, id: &str) -> Result<Vec<RevisionInfo>, StoreError> {
        self.core.history_page(id, None, usize::MAX)
    }

    /// A page of a document's history, oldest first: up to `limit` revisions numbered above
    /// `after` (from the first when `None`). It reads only the page, so a document with a long
    /// history can be listed in steps: pass the last revision of one page as the next `after`.
    ///
    /// # Errors
    ///
    /// As [`raw_revision`](Self::raw_revision).
    pub fn history_page(
        &self,
        id: &str,
        after: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<RevisionInfo>, StoreError> {
        self.core.history_page(id, after, limit)
    }

    /// How many live documents are at each schema version. Kept up to date by every write, so
    /// this costs nothing like a scan.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the engine cannot answer.
    pub fn count_by_version(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        Ok(self.core.engine.counts()?.live())
    }

    /// How many documents are removed (their last revision is a removal).
    ///
    /// # Errors
    ///
    /// As [`count_by_version`](Self::count_by_version).
    pub fn removed_count(&self) -> Result<u64, StoreError> {
        Ok(self.core.engine.counts()?.removed())
    }

    /// How many live documents the collection holds.
    ///
    /// # Errors
    ///
    /// As [`count_by_version`](Self::count_by_version).
    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self.count_by_version()?.values().sum())
    }

    /// Whether the collection holds no live document.
    ///
    /// # Errors
    ///
    /// As [`count_by_version`](Self::count_by_version).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::sled::keys;
    use crate::{Store, StoreError};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct Note {
        text: String,
    }

    impl Schema for Note {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, crate::StepError> {
            Ok(previous)
        }
    }

    fn note(text: &str) -> Note {
        Note { text: text.into() }
    }

    fn store_with_note() -> (Store, Collection<Note>, DocId) {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let id = notes.insert(&note("hello")).unwrap();
        (store, notes, id)
    }

    #[test]
    fn truncated_and_corrupt_records_are_typed_errors() {
        let (_store, notes, id) = store_with_note();
        let key = keys::revision(&id, Revision::FIRST);
        let good = notes
            .raw
            .core
            .sled()
            .tree
            .get(&key)
            .unwrap()
            .unwrap()
            .to_vec();

        for len in [0, 1, 10, good.len() - 1] {
            notes
                .raw
                .core
                .sled()
                .tree
                .insert(&key, &good[..len])
                .unwrap();
            let err = notes.get(&id).unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt { .. }),
                "len {len}: {err:?}"
            );
            assert!(notes.history(&id).is_err());
            assert!(notes.raw_revision(&id, Revision::FIRST).is_err());
        }
        for i in 0..good.len() {
            let mut corrupt = good.clone();
            corrupt[i] ^= 0x55;
            notes.raw.core.sled().tree.insert(&key, corrupt).unwrap();
            let err = notes.get(&id).unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt { .. }),
                "byte {i}: {err:?}"
            );
        }
        notes.raw.core.sled().tree.insert(&key, good).unwrap();
        assert_eq!(notes.get(&id).unwrap().unwrap().data, note("hello"));
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_an_upgrade_error() {
        let (_store, notes, id) = store_with_note();
        let payload = record::encode_payload(&vec![1, 2, 3]).unwrap();
        let bytes = record::encode(Kind::Document, 1, Revision::FIRST, Origin::Write, &payload);
        notes
            .raw
            .core
            .sled()
            .tree
            .insert(keys::revision(&id, Revision::FIRST), bytes)
            .unwrap();
        let err = notes.get(&id).unwrap_err();
        let StoreError::Upgrade {
            stored_version,
            raw,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        // The error carries the revision as stored.
        assert_eq!(*stored_version, 1);
        assert_eq!(raw.payload, Some(serde_json::json!([1, 2, 3])));
        assert_eq!(raw.bytes, payload);
        // The raw payload is still readable as JSON.
        let raw = notes.raw_revision(&id, Revision::FIRST).unwrap().unwrap();
        assert_eq!(raw.payload, Some(serde_json::json!([1, 2, 3])));
    }

    #[test]
    fn a_malformed_head_is_corrupt_and_a_head_without_its_revision_dangles() {
        let (_store, notes, id) = store_with_note();
        notes
            .raw
            .core
            .sled()
            .tree
            .insert(keys::head(&id), &[9u8; 3][..])
            .unwrap();
        assert!(matches!(notes.get(&id), Err(StoreError::Corrupt { .. })));
        assert!(notes.update(&id, &note("x")).is_err());
        assert!(notes.iter().next().unwrap().is_err());

        let dangling = Head {
            revision: Revision::new(5).unwrap(),
            version: 1,
            removed: false,
        };
        notes
            .raw
            .core
            .sled()
            .tree
            .insert(keys::head(&id), &dangling.encode()[..])
            .unwrap();
        // A head naming a revision that is not there is a dangling head, named as such (it used
        // to read as a truncated record of length 0).
        for error in [
            notes.get(&id).unwrap_err(),
            notes.iter().next().unwrap().unwrap_err(),
        ] {
            assert!(
                matches!(&error, StoreError::DanglingHead { revision, .. } if revision.get() == 5),
                "{error:?}"
            );
        }
    }

    #[test]
    fn counters_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let notes = store.collection::<Note>().unwrap();
            let ids = notes
                .insert_many(&[note("a"), note("b"), note("c")])
                .unwrap();
            notes.remove(&ids[0]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let notes = store.collection::<Note>().unwrap();
        assert_eq!(notes.count_by_version().unwrap(), BTreeMap::from([(1, 2)]));
        assert_eq!(notes.removed_count().unwrap(), 1);
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct TaskV1 {
        title: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct TaskV2 {
        title: String,
        done: bool,
    }

    impl Schema for TaskV1 {
        const COLLECTION: &'static str = "tasks";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, crate::StepError> {
            Ok(previous)
        }
    }

    impl Schema for TaskV2 {
        const COLLECTION: &'static str = "tasks";
        const VERSION: u32 = 2;
        type Previous = TaskV1;
        fn upgrade(previous: TaskV1) -> Result<Self, crate::StepError> {
            Ok(TaskV2 {
                title: previous.title,
                done: false,
            })
        }
    }

    #[test]
    fn write_back_on_read_appends_one_upgrade_revision() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = Store::open(dir.path()).unwrap();
            let tasks = store.collection::<TaskV1>().unwrap();
            tasks.insert(&TaskV1 { title: "a".into() }).unwrap()
        };
        let store = Store::builder()
            .path(dir.path())
            .write_back_on_read(true)
            .open()
            .unwrap();
        let tasks = store.collection::<TaskV2>().unwrap();
        let first = tasks.get(&id).unwrap().unwrap();
        assert_eq!((first.revision.get(), first.stored_version), (2, 2));
        assert_eq!(tasks.count_by_version().unwrap(), BTreeMap::from([(2, 1)]));
        let history = tasks.history(&id).unwrap();
        assert_eq!(history[1].origin, Origin::UpgradeOnRead);
        assert_eq!(history[1].version, Some(2));
        // Read again: already current, nothing more is written.
        let again = tasks.get(&id).unwrap().unwrap();
        assert_eq!(again, first);
        assert_eq!(tasks.history(&id).unwrap().len(), 2);
        // A client holding revision 1 may still update: the upgrade changed no meaning.
        let updated = TaskV2 {
            title: "b".into(),
            done: true,
        };
        assert_eq!(
            tasks
                .update_if(&id, Revision::FIRST, &updated)
                .unwrap()
                .get(),
            3
        );
        // The original bytes are kept.
        let raw = tasks.raw_revision(&id, Revision::FIRST).unwrap().unwrap();
        assert_eq!(raw.info.version, Some(1));
    }

    #[test]
    fn reads_never_write_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = Store::open(dir.path()).unwrap();
            let tasks = store.collection::<TaskV1>().unwrap();
            tasks.insert(&TaskV1 { title: "a".into() }).unwrap()
        };
        let store = Store::open(dir.path()).unwrap();
        let tasks = store.collection::<TaskV2>().unwrap();
        assert_eq!(tasks.get(&id).unwrap().unwrap().stored_version, 1);
        assert_eq!(tasks.history(&id).unwrap().len(), 1);
    }
}
