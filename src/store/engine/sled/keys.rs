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
use crate::store::counters::Counter;
pub(crate) use crate::store::engine::Head;
pub(crate) use crate::store::report::KeySpace;

pub(crate) const HEAD: u8 = b'h';
pub(crate) const REVISION: u8 = b'r';
pub(crate) const COUNTER: u8 = b'c';
pub(crate) const FAILURE: u8 = b'f';
pub(crate) const CURSOR: u8 = b'm';
pub(crate) const PROGRESS: u8 = b'p';

pub(crate) fn head(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(HEAD);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The id a head key names; `None` for a key outside the head space or not UTF-8.
pub(crate) fn id_of_head(key: &[u8]) -> Option<&str> {
    match key.split_first() {
        Some((&HEAD, id)) => std::str::from_utf8(id).ok(),
        _ => None,
    }
}

/// The prefix every revision key of `id` starts with.
pub(crate) fn revisions_of(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + id.len() + 8);
    key.push(REVISION);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key
}

pub(crate) fn revision(id: &str, revision: Revision) -> Vec<u8> {
    let mut key = revisions_of(id);
    key.extend_from_slice(&revision.get().to_be_bytes());
    key
}

pub(crate) fn failure(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(FAILURE);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The id a failure key names; `None` for a key outside the failure space or not UTF-8.
pub(crate) fn id_of_failure(key: &[u8]) -> Option<&str> {
    match key.split_first() {
        Some((&FAILURE, id)) => std::str::from_utf8(id).ok(),
        _ => None,
    }
}

pub(crate) fn cursor(target: u32) -> [u8; 5] {
    let v = target.to_be_bytes();
    [CURSOR, v[0], v[1], v[2], v[3]]
}

pub(crate) fn progress(run: u64) -> [u8; 9] {
    let mut key = [PROGRESS; 9];
    key[1..].copy_from_slice(&run.to_be_bytes());
    key
}

/// The run a progress key names, if it is one.
pub(crate) fn run_of_progress(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&PROGRESS, run)) => <[u8; 8]>::try_from(run).ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// A ledger record's key in the `_ledger` tree: collection name ‖ 0x00 ‖ run id u64 BE.
pub(crate) fn ledger(collection: &str, run: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection.len() + 9);
    key.extend_from_slice(collection.as_bytes());
    key.push(0);
    key.extend_from_slice(&run.to_be_bytes());
    key
}

/// A head's record: flags u8, schema version u32 BE, revision u64 BE.
impl Head {
    pub(crate) fn encode(self) -> [u8; 13] {
        let mut out = [0u8; 13];
        out[0] = u8::from(self.removed);
        out[1..5].copy_from_slice(&self.version.to_be_bytes());
        out[5..].copy_from_slice(&self.revision.get().to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
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

/// A counter's key: `c ‖ class ‖ version u32 BE`.
impl Counter {
    pub(crate) fn key(self) -> [u8; 6] {
        let (class, version) = match self {
            Counter::Live(version) => (b'l', version),
            Counter::Removed => (b'r', 0),
            Counter::Failed(version) => (b'f', version),
        };
        let v = version.to_be_bytes();
        [COUNTER, class, v[0], v[1], v[2], v[3]]
    }

    pub(crate) fn from_key(key: &[u8]) -> Option<Self> {
        let [COUNTER, class, a, b, c, d] = *key else {
            return None;
        };
        let version = u32::from_be_bytes([a, b, c, d]);
        match class {
            b'l' => Some(Counter::Live(version)),
            b'r' if version == 0 => Some(Counter::Removed),
            b'f' => Some(Counter::Failed(version)),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing keys read back from disk

impl KeySpace {
    /// The key space a key of the tree `tree` (`_meta`, `_ledger`, `c/<name>`) is in, by its
    /// tree and first byte; [`KeySpace::Unknown`] when it fits none.
    pub(crate) fn of(tree: &str, key: &[u8]) -> Self {
        match tree {
            "_meta" => return KeySpace::Meta,
            "_ledger" => return KeySpace::Ledger,
            _ => {}
        }
        match key.first() {
            Some(&HEAD) => KeySpace::Heads,
            Some(&REVISION) => KeySpace::Revisions,
            Some(&COUNTER) => KeySpace::Counters,
            Some(&FAILURE) => KeySpace::Failures,
            Some(&CURSOR) => KeySpace::Cursors,
            Some(&PROGRESS) => KeySpace::Progress,
            _ => KeySpace::Unknown,
        }
    }
}

/// Why a key read back does not parse in its key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyError {
    /// The key space it was found in.
    pub(crate) space: KeySpace,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
}

impl KeyError {
    fn new(space: KeySpace, reason: &'static str) -> Self {
        Self { space, reason }
    }
}

/// The collection a tree holds, for a `c/<name>` tree; `None` for another tree (`_meta`,
/// `_ledger`, the default tree). A name that is not UTF-8 (no program could register it) is
/// given with its bytes escaped, so that two such names stay apart.
pub(crate) fn collection_of_tree(tree: &[u8]) -> Option<String> {
    let name = tree.strip_prefix(COLLECTION_TREE_PREFIX.as_bytes())?;
    Some(match std::str::from_utf8(name) {
        Ok(name) => name.to_owned(),
        Err(_) => name.escape_ascii().to_string(),
    })
}

/// The id a key of `space` holds, if it is UTF-8 and keeps the id rules.
fn parse_id(bytes: &[u8], space: KeySpace) -> Result<&str, KeyError> {
    let id = std::str::from_utf8(bytes).map_err(|_| KeyError::new(space, "the id is not UTF-8"))?;
    id::validate(id).map_err(|_| KeyError::new(space, "the id breaks the id rules"))?;
    Ok(id)
}

/// `h ‖ id` → the id.
pub(crate) fn parse_head_key(key: &[u8]) -> Result<&str, KeyError> {
    match key.split_first() {
        Some((&HEAD, id)) => parse_id(id, KeySpace::Heads),
        _ => Err(KeyError::new(
            KeySpace::Heads,
            "a head key is `h` and an id",
        )),
    }
}

/// `f ‖ id` → the id.
pub(crate) fn parse_failure_key(key: &[u8]) -> Result<&str, KeyError> {
    match key.split_first() {
        Some((&FAILURE, id)) => parse_id(id, KeySpace::Failures),
        _ => Err(KeyError::new(
            KeySpace::Failures,
            "a failure record key is `f` and an id",
        )),
    }
}

/// `r ‖ id ‖ 0x00 ‖ revision u64 BE` → the id and a revision above 0.
pub(crate) fn parse_revision_key(key: &[u8]) -> Result<(&str, u64), KeyError> {
    let shape = KeyError::new(
        KeySpace::Revisions,
        "a revision key is `r`, an id, a NUL and a revision number",
    );
    let Some((&REVISION, rest)) = key.split_first() else {
        return Err(shape);
    };
    let split = rest.len().checked_sub(9).ok_or(shape)?;
    let (id, tail) = rest.split_at(split);
    let Some((&0, number)) = tail.split_first() else {
        return Err(shape);
    };
    let revision = u64::from_be_bytes(number.try_into().map_err(|_| shape)?);
    if revision == 0 {
        return Err(KeyError::new(
            KeySpace::Revisions,
            "revision numbers start at 1",
        ));
    }
    Ok((parse_id(id, KeySpace::Revisions)?, revision))
}

/// `m ‖ target version u32 BE` → the target version.
pub(crate) fn parse_cursor_key(key: &[u8]) -> Result<u32, KeyError> {
    match key {
        [CURSOR, a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(KeyError::new(
            KeySpace::Cursors,
            "a cursor key is `m` and a version",
        )),
    }
}

/// `p ‖ run u64 BE` → the run.
pub(crate) fn parse_progress_key(key: &[u8]) -> Result<u64, KeyError> {
    run_of_progress(key).ok_or(KeyError::new(
        KeySpace::Progress,
        "a progress key is `p` and a run id",
    ))
}

/// `collection ‖ 0x00 ‖ run u64 BE`, a `_ledger` key → the run.
pub(crate) fn parse_ledger_key(key: &[u8]) -> Result<u64, KeyError> {
    let shape = KeyError::new(
        KeySpace::Ledger,
        "a ledger key is a collection, a NUL and a run id",
    );
    let split = key.len().checked_sub(9).ok_or(shape)?;
    let (collection, tail) = key.split_at(split);
    let Some((&0, run)) = tail.split_first() else {
        return Err(shape);
    };
    if collection.is_empty() {
        return Err(KeyError::new(KeySpace::Ledger, "the collection is empty"));
    }
    Ok(u64::from_be_bytes(run.try_into().map_err(|_| shape)?))
}

/// The run a ledger key names, `None` for a malformed key (see [`parse_ledger_key`]).
pub(crate) fn ledger_run(key: &[u8]) -> Option<u64> {
    parse_ledger_key(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_keys_round_trip() {
        for counter in [
            Counter::Live(3),
            Counter::Removed,
            Counter::Failed(u32::MAX),
        ] {
            assert_eq!(Counter::from_key(&counter.key()), Some(counter));
        }
        assert_eq!(Counter::from_key(b"c"), None);
        assert_eq!(Counter::from_key(&[COUNTER, b'x', 0, 0, 0, 1]), None);
    }

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

    #[test]
    fn malformed_keys_name_their_key_space() {
        let revision_key = revision("doc", Revision::FIRST);
        assert_eq!(parse_revision_key(&revision_key), Ok(("doc", 1)));
        let mut zero = revisions_of("doc");
        zero.extend_from_slice(&0u64.to_be_bytes());
        let error = parse_revision_key(&zero).unwrap_err();
        assert_eq!(error.space, KeySpace::Revisions);
        assert_eq!(error.reason, "revision numbers start at 1");
        assert_eq!(
            parse_revision_key(b"r-no-terminator").unwrap_err().space,
            KeySpace::Revisions
        );
        assert_eq!(parse_head_key(&head("doc")), Ok("doc"));
        let error = parse_head_key(b"h\xff").unwrap_err();
        assert_eq!(
            (error.space, error.reason),
            (KeySpace::Heads, "the id is not UTF-8")
        );
        let error = parse_failure_key(b"f").unwrap_err();
        assert_eq!(
            (error.space, error.reason),
            (KeySpace::Failures, "the id breaks the id rules")
        );
        assert_eq!(parse_cursor_key(&cursor(7)), Ok(7));
        assert_eq!(
            parse_cursor_key(b"m12").unwrap_err().space,
            KeySpace::Cursors
        );
        assert_eq!(parse_progress_key(&progress(9)), Ok(9));
        assert_eq!(
            parse_progress_key(b"p1").unwrap_err().space,
            KeySpace::Progress
        );
        assert_eq!(parse_ledger_key(&ledger("notes", 3)), Ok(3));
        let ledger = ledger("notes", 3);
        let error = parse_ledger_key(&ledger[5..]).unwrap_err();
        assert_eq!(
            (error.space, error.reason),
            (KeySpace::Ledger, "the collection is empty")
        );
        assert_eq!(
            parse_ledger_key(b"short").unwrap_err().space,
            KeySpace::Ledger
        );
    }
}
