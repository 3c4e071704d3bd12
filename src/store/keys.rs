//! Key layout of a collection's tree, and the head record.
//!
//! One sled tree per collection, so that one `apply_batch` covers every key a write changes.
//! Key spaces are told apart by their first byte:
//!
//! ```text
//! h ‖ id                          → head: flags u8, schema version u32 BE, revision u64 BE
//! r ‖ id ‖ 0x00 ‖ revision u64 BE → revision envelope (see `record`)
//! c ‖ class ‖ version u32 BE     → counters, u64 BE (see `counters`)
//! f ‖ id                          → the migration failure recorded for the document's head
//! m ‖ target version u32 BE       → the migration cursor: the last id a run to that version took
//! p ‖ run id u64 BE               → a run's progress: its counts as of its last committed chunk
//! ```
//!
//! Ids never contain NUL, so the 0x00 after an id ends it: the revisions of `ab` (`r ab 00 …`) and of
//! `abc` (`r abc 00 …`) are disjoint ranges, and a prefix scan of one never meets the other.

use super::COLLECTION_TREE_PREFIX;
use crate::id::{self, Revision};

pub(super) const HEAD: u8 = b'h';
pub(super) const REVISION: u8 = b'r';
pub(super) const COUNTER: u8 = b'c';
pub(super) const FAILURE: u8 = b'f';
pub(super) const CURSOR: u8 = b'm';
pub(super) const PROGRESS: u8 = b'p';

pub(super) fn head(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(HEAD);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The id a head key names; `None` for a key outside the head space or not UTF-8.
pub(super) fn id_of_head(key: &[u8]) -> Option<&str> {
    match key.split_first() {
        Some((&HEAD, id)) => std::str::from_utf8(id).ok(),
        _ => None,
    }
}

/// The prefix every revision key of `id` starts with.
pub(super) fn revisions_of(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + id.len() + 8);
    key.push(REVISION);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key
}

pub(super) fn revision(id: &str, revision: Revision) -> Vec<u8> {
    let mut key = revisions_of(id);
    key.extend_from_slice(&revision.get().to_be_bytes());
    key
}

pub(super) fn failure(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(FAILURE);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The id a failure key names; `None` for a key outside the failure space or not UTF-8.
pub(super) fn id_of_failure(key: &[u8]) -> Option<&str> {
    match key.split_first() {
        Some((&FAILURE, id)) => std::str::from_utf8(id).ok(),
        _ => None,
    }
}

pub(super) fn cursor(target: u32) -> [u8; 5] {
    let v = target.to_be_bytes();
    [CURSOR, v[0], v[1], v[2], v[3]]
}

pub(super) fn progress(run: u64) -> [u8; 9] {
    let mut key = [PROGRESS; 9];
    key[1..].copy_from_slice(&run.to_be_bytes());
    key
}

/// The run a progress key names, if it is one.
pub(super) fn run_of_progress(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&PROGRESS, run)) => <[u8; 8]>::try_from(run).ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// A document's current state: its latest revision and, unless removed, the version it is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) revision: Revision,
    /// The schema version of the head revision; 0 when `removed`.
    pub(crate) version: u32,
    pub(crate) removed: bool,
}

impl Head {
    pub(super) fn encode(self) -> [u8; 13] {
        let mut out = [0u8; 13];
        out[0] = u8::from(self.removed);
        out[1..5].copy_from_slice(&self.version.to_be_bytes());
        out[5..].copy_from_slice(&self.revision.get().to_be_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 13] = bytes.try_into().ok()?;
        let removed = match bytes[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let version = u32::from_be_bytes(bytes[1..5].try_into().ok()?);
        let revision = Revision::new(u64::from_be_bytes(bytes[5..].try_into().ok()?))?;
        if removed != (version == 0) {
            return None;
        }
        Some(Self {
            revision,
            version,
            removed,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing keys read back from disk

/// The collection a tree holds, for a `c/<name>` tree.
pub(super) fn collection_of_tree(tree: &[u8]) -> Option<String> {
    tree.strip_prefix(COLLECTION_TREE_PREFIX.as_bytes())
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// `r ‖ id ‖ 0x00 ‖ revision u64 BE` → the id and a revision above 0.
pub(super) fn parse_revision_key(key: &[u8]) -> Option<(&str, u64)> {
    let (&REVISION, rest) = key.split_first()? else {
        return None;
    };
    let split = rest.len().checked_sub(9)?;
    let (id, tail) = rest.split_at(split);
    let (&0, number) = tail.split_first()? else {
        return None;
    };
    let revision = u64::from_be_bytes(number.try_into().ok()?);
    (revision > 0).then_some(())?;
    Some((valid_id(id)?, revision))
}

pub(super) fn valid_id(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|id| id::validate(id).is_ok())
}

/// The run a ledger key names: `collection ‖ 0x00 ‖ run u64 BE`.
pub(super) fn ledger_run(key: &[u8]) -> Option<u64> {
    let split = key.len().checked_sub(9)?;
    let (collection, tail) = key.split_at(split);
    let (&0, run) = tail.split_first()? else {
        return None;
    };
    (!collection.is_empty()).then_some(())?;
    Some(u64::from_be_bytes(run.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ids_revisions_never_contain_anothers() {
        let ab = revisions_of("ab");
        let abc = revision("abc", Revision::FIRST);
        assert!(!abc.starts_with(&ab));
        let a_rev = revision("a", Revision::new(0x6200_0000_0000_0000).unwrap());
        assert!(!a_rev.starts_with(&revisions_of("ab")));
    }

    #[test]
    fn revision_keys_sort_by_number() {
        let low = revision("x", Revision::new(2).unwrap());
        let high = revision("x", Revision::new(256).unwrap());
        assert!(low < high);
    }

    #[test]
    fn head_round_trips_and_refuses_garbage() {
        let head = Head {
            revision: Revision::new(42).unwrap(),
            version: 3,
            removed: false,
        };
        assert_eq!(Head::decode(&head.encode()), Some(head));
        let removed = Head {
            revision: Revision::FIRST,
            version: 0,
            removed: true,
        };
        assert_eq!(Head::decode(&removed.encode()), Some(removed));
        assert_eq!(Head::decode(&[0; 12]), None);
        assert_eq!(Head::decode(&[2; 13]), None);
        assert_eq!(Head::decode(&[0; 13]), None);
    }

    #[test]
    fn key_spaces_are_told_apart() {
        assert_eq!(id_of_head(&head("doc")), Some("doc"));
        assert_eq!(id_of_head(&revision("doc", Revision::FIRST)), None);
        assert_ne!(failure("doc")[0], head("doc")[0]);
        assert_eq!(id_of_failure(&failure("doc")), Some("doc"));
        assert_eq!(id_of_failure(&head("doc")), None);
        assert_ne!(cursor(1)[0], HEAD);
        assert_eq!(progress(7)[0], PROGRESS);
        assert_eq!(progress(7)[1..], 7u64.to_be_bytes());
    }
}
