//! Scans of a collection's tree: heads in id order, and pending documents for a migration.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::backend;
use super::guard::Iter;
use super::guard::Tree;
use super::keys::{self, Head};
use crate::id::Revision;
use crate::record::RecordError;
use crate::store::engine::{Pending, PendingChunk, PendingDocument, Position, Stamp};
use crate::store::StoreError;

/// Heads in id order, from a range of head keys.
pub(crate) struct HeadScan {
    collection: String,
    iter: Iter,
    removed: bool,
}

impl HeadScan {
    /// The heads after `after` up to and including `up_to`; removed ones too when `removed`.
    pub(super) fn new(
        collection: &str,
        tree: &Tree,
        after: Option<&str>,
        up_to: Option<&str>,
        removed: bool,
    ) -> Self {
        let start = match after {
            Some(id) => Bound::Excluded(keys::head(id)),
            None => Bound::Included(vec![keys::HEAD]),
        };
        let end = match up_to {
            Some(id) => Bound::Included(keys::head(id)),
            None => Bound::Excluded(vec![keys::HEAD + 1]),
        };
        Self {
            collection: collection.to_owned(),
            iter: tree.range::<Vec<u8>, _>((start, end)),
            removed,
        }
    }
}

impl Iterator for HeadScan {
    type Item = Result<(String, Head), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, value) = match self.iter.next()? {
                Ok(entry) => entry,
                Err(error) => return Some(Err(backend(error))),
            };
            let malformed = |id: String, what| StoreError::Corrupt {
                collection: self.collection.clone(),
                id,
                revision: None,
                source: RecordError::InvalidHeader(what),
            };
            let Some(id) = keys::id_of_head(&key) else {
                let id = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
                return Some(Err(malformed(id, "head key is not UTF-8")));
            };
            let Some(head) = Head::decode(&value) else {
                return Some(Err(malformed(id.to_owned(), "malformed head")));
            };
            if head.removed && !self.removed {
                continue;
            }
            return Some(Ok((id.to_owned(), head)));
        }
    }
}

/// How many revision keys a [`RevisionReader`] steps over before it seeks instead.
const MAX_STEPS: u64 = 16;

/// Reads head revisions of documents taken in id order with one forward pass over the revision
/// keys, where a lookup per document would descend the tree every time.
///
/// Revision keys sort by id, then revision number, and a document's head is its newest revision,
/// so the head revisions of consecutive documents are a few keys apart. The reader steps over at
/// most [`MAX_STEPS`] keys to reach the one asked for, and seeks otherwise. A step only ever
/// finds a revision that exists, and revisions never change once written; when stepping misses
/// the key (the iterator's view of the tree may be older than the head that named it), the seek
/// that follows reads the tree as it is now.
pub(crate) struct RevisionReader<'a> {
    tree: &'a Tree,
    iter: Option<Iter>,
    /// The entry a seek found after a missing revision, not yet used.
    peeked: Option<(::sled::IVec, ::sled::IVec)>,
}

impl<'a> RevisionReader<'a> {
    pub(crate) fn new(tree: &'a Tree) -> Self {
        Self {
            tree,
            iter: None,
            peeked: None,
        }
    }

    /// The stored bytes of `id`'s revision `revision`, if it exists.
    pub(crate) fn read(
        &mut self,
        id: &str,
        revision: Revision,
    ) -> Result<Option<::sled::IVec>, StoreError> {
        let target = keys::revision(id, revision);
        // Revisions are numbered from 1 with no gaps, so a head beyond `MAX_STEPS` is that many
        // keys past the previous document's at least: seek at once.
        if self.iter.is_some() && revision.get() <= MAX_STEPS {
            for _ in 0..MAX_STEPS {
                let Some((key, value)) = self.next_entry()? else {
                    break;
                };
                match key.as_ref().cmp(&target[..]) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Ok(Some(value)),
                    std::cmp::Ordering::Greater => break,
                }
            }
        }
        // Seek: the iterator starts from a fresh view of the tree.
        self.peeked = None;
        let end = [keys::REVISION + 1];
        let iter = self.iter.insert(
            self.tree
                .range::<&[u8], _>((Bound::Included(&target[..]), Bound::Excluded(&end[..]))),
        );
        match iter.next().transpose().map_err(backend)? {
            Some((key, value)) if key == target[..] => Ok(Some(value)),
            other => {
                self.peeked = other;
                Ok(None)
            }
        }
    }

    fn next_entry(&mut self) -> Result<Option<(::sled::IVec, ::sled::IVec)>, StoreError> {
        if let Some(entry) = self.peeked.take() {
            return Ok(Some(entry));
        }
        match self.iter.as_mut() {
            Some(iter) => iter.next().transpose().map_err(backend),
            None => Ok(None),
        }
    }
}

/// Pending documents on sled: the heads from the cursor to the end, then from the start up to
/// the cursor, with their head revisions read by a [`RevisionReader`].
pub(super) struct SledPending<'a> {
    tree: &'a Tree,
    /// The collection's foreign-write count, read under its write lock before any head iterator
    /// of this scan existed (see `SledCollection::stamp`).
    stamp: Stamp,
    heads: std::iter::Flatten<std::vec::IntoIter<HeadScan>>,
    revisions: RevisionReader<'a>,
    target: u32,
    retry: bool,
    /// Versions with known failures: only their documents pay for a failure lookup.
    failed_versions: BTreeSet<u32>,
}

impl<'a> SledPending<'a> {
    pub(super) fn new(
        (name, tree): (&str, &'a Tree),
        stamp: Stamp,
        cursor: Option<&str>,
        target: u32,
        (retry, failed_versions): (bool, BTreeSet<u32>),
    ) -> Self {
        let mut ranges = vec![HeadScan::new(name, tree, cursor, None, false)];
        if cursor.is_some() {
            ranges.push(HeadScan::new(name, tree, None, cursor, false));
        }
        Self {
            tree,
            stamp,
            heads: ranges.into_iter().flatten(),
            revisions: RevisionReader::new(tree),
            target,
            retry,
            failed_versions,
        }
    }

    fn document(&mut self, id: String, head: Head) -> Result<Option<PendingDocument>, StoreError> {
        if head.version >= self.target {
            return Ok(None);
        }
        // A failure record always names the current head (writes remove it), so its presence is
        // enough; only versions with failures pay for the lookup.
        let known_failed = self.failed_versions.contains(&head.version)
            && self
                .tree
                .contains_key(keys::failure(&id))
                .map_err(backend)?;
        if known_failed && !self.retry {
            return Ok(None);
        }
        let bytes = self.revisions.read(&id, head.revision)?;
        Ok(Some(PendingDocument {
            id,
            head,
            bytes: bytes.map(|bytes| bytes.to_vec()),
            known_failed,
        }))
    }
}

impl Pending for SledPending<'_> {
    fn next_chunk(&mut self, limit: usize) -> Result<Option<PendingChunk>, StoreError> {
        // Taken once, before the head iterators were made: a sled iterator serves later heads
        // from a copy of a leaf it read earlier, so a stamp taken per chunk could postdate a head
        // the chunk reads. If it still holds at a commit, no head the scan read has changed.
        let stamp = self.stamp;
        let mut documents = Vec::with_capacity(limit);
        while documents.len() < limit {
            let Some(entry) = self.heads.next() else {
                break;
            };
            let (id, head) = entry?;
            if let Some(document) = self.document(id, head)? {
                documents.push(document);
            }
        }
        let Some(last) = documents.last() else {
            return Ok(None);
        };
        let position = Position(last.id.as_bytes().to_vec());
        Ok(Some(PendingChunk {
            documents,
            position,
            stamp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::Origin;
    use crate::store::engine::sled::collection::SledCollection;
    use crate::store::engine::{Action, ChunkItem, CollectionEngine, Commit, FailureRecord, Seen};
    use crate::{Schema, Store};
    use serde::{Deserialize, Serialize};

    fn sled(store: &Store) -> Arc<SledCollection> {
        store.sled().unwrap().open_collection("notes").unwrap()
    }

    fn heads(notes: &SledCollection) -> HeadScan {
        HeadScan::new(&notes.name, &notes.tree, None, None, false)
    }

    fn lookup(notes: &SledCollection, id: &str, revision: Revision) -> Option<::sled::IVec> {
        notes.revision_bytes(id, revision).unwrap()
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct Note {
        n: u32,
    }

    impl Schema for Note {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, crate::StepError> {
            Ok(previous)
        }
    }

    /// Every head revision, read in id order with one reader, is the revision a lookup finds:
    /// across documents with one revision, with more than `MAX_STEPS`, and removed ones.
    #[test]
    fn the_revision_reader_finds_what_a_lookup_finds() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        for n in 0..200u32 {
            let id = notes.insert(&Note { n }).unwrap();
            let updates = match n % 10 {
                0 => u32::try_from(MAX_STEPS).unwrap() + 3,
                1 | 2 => 2,
                _ => 0,
            };
            for k in 0..updates {
                notes.update(&id, &Note { n: n + k }).unwrap();
            }
            if n % 7 == 0 {
                notes.remove(&id).unwrap();
            }
        }
        let engine = sled(&store);
        let mut reader = RevisionReader::new(&engine.tree);
        let mut read = 0;
        for entry in heads(&engine) {
            let (id, head) = entry.unwrap();
            let expected = lookup(&engine, &id, head.revision).unwrap();
            let found = reader.read(&id, head.revision).unwrap().unwrap();
            assert_eq!(
                found.as_ref(),
                expected.as_ref(),
                "{id} at {}",
                head.revision
            );
            read += 1;
        }
        assert_eq!(read, 200 - 200usize.div_ceil(7));
    }

    /// A revision written after the reader stepped past its document is found: stepping misses
    /// it in the reader's older view of the tree, and the seek that follows reads the tree anew.
    #[test]
    fn the_revision_reader_finds_a_revision_written_behind_it() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let mut ids: Vec<String> = (0..50)
            .map(|n| notes.insert(&Note { n }).unwrap().to_string())
            .collect();
        ids.sort();
        let engine = sled(&store);
        let mut reader = RevisionReader::new(&engine.tree);
        let first = Revision::FIRST;
        assert!(reader.read(&ids[0], first).unwrap().is_some());
        let updated = notes.update(&ids[1], &Note { n: 1000 }).unwrap();
        let expected = lookup(&engine, &ids[1], updated).unwrap();
        let found = reader.read(&ids[1], updated).unwrap().unwrap();
        assert_eq!(found.as_ref(), expected.as_ref());
        assert!(reader.read(&ids[2], first).unwrap().is_some());
    }

    /// A revision that does not exist is `None`, and the reader goes on from there.
    #[test]
    fn the_revision_reader_reports_a_missing_revision_and_goes_on() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let ids: Vec<_> = (0..3).map(|n| notes.insert(&Note { n }).unwrap()).collect();
        let mut sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        sorted.sort();
        let first = Revision::FIRST;
        let engine = sled(&store);
        let mut reader = RevisionReader::new(&engine.tree);
        assert!(reader.read(&sorted[0], first).unwrap().is_some());
        assert!(reader.read(&sorted[1], first.next()).unwrap().is_none());
        assert!(reader.read(&sorted[1], first).unwrap().is_some());
        assert!(reader.read(&sorted[2], first).unwrap().is_some());
        assert!(reader.read("zzzz", first).unwrap().is_none());
    }

    /// A failure record that does not decode, of whichever run, is skipped and counted: it does
    /// not stop the records of the run asked for from being found.
    #[test]
    fn failures_of_run_skips_and_counts_undecodable_records() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let mut ids: Vec<String> = (0..2)
            .map(|n| notes.insert(&Note { n }).unwrap().to_string())
            .collect();
        ids.sort();
        let (bad, good) = (&ids[0], &ids[1]);
        let engine = sled(&store);
        let seen = engine.head(good).unwrap().unwrap();
        let item = ChunkItem {
            id: good.clone(),
            seen: Seen::Head(seen),
            action: Action::Fail(FailureRecord {
                revision: seen.revision.get(),
                version: 1,
                class: "decode".to_owned(),
                error: "no".to_owned(),
                run: 7,
            }),
        };
        engine
            .commit(&[item], Commit::new(Origin::Migration { run: 7 }, 1))
            .unwrap();
        engine.tree.insert(keys::failure(bad), &[0xc1][..]).unwrap();

        let (found, undecodable) = engine
            .failures_of_run(7, 10, &std::collections::BTreeSet::new())
            .unwrap();
        assert_eq!(undecodable, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(&found[0].0, good);
    }
}
