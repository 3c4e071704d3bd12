//! [`Store::verify`]: the consistency check of every collection, `_meta` and `_ledger`.
//!
//! The ordered walk of a collection is here; a collection sled cannot read through is checked
//! again by other routes (see `damaged`). Problems are reported, never raised. A collection is
//! walked under its write lock (writes to it wait; other collections go on), so what one walk
//! sees of a collection is consistent in itself.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde::de::IgnoredAny;

use crate::error::format::chain as error_chain;
use crate::id;
use crate::record;
use crate::store::backup::IMPORT_MARKER;
use crate::store::counters::Counter;
use crate::store::engine::sled::backend;
use crate::store::engine::sled::guard::{Fault, Iter, Tree};
use crate::store::engine::sled::keys::ledger as ledger_key;
use crate::store::engine::sled::keys::{
    self, parse_cursor_key, parse_failure_key, parse_head_key, parse_ledger_key,
    parse_progress_key, parse_revision_key, Head, KeyError, KeySpace,
};
use crate::store::engine::sled::walk::PROGRESS_EVERY;
use crate::store::engine::sled::LEDGER_TREE;
use crate::store::engine::sled::{COLLECTION_TREE_PREFIX, META_TREE};
use crate::store::report::{check_chain, escape, Stored};
use crate::store::{
    validate_collection_name, FailureRecord, Problem, Store, StoreError, VerifyReport,
};

impl Store {
    /// The walk behind [`Store::verify_with_progress`] on sled.
    pub(crate) fn verify_sled(
        &self,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, StoreError> {
        let mut check = Check {
            report: VerifyReport::default(),
            max_depth: self.inner().max_depth,
            progress,
        };
        let mut registered = BTreeSet::new();
        // The last key read, malformed or not: where damage that stops the walk begins.
        let mut last_read = String::new();
        for entry in &self.sled()?.meta {
            let key = match entry {
                Ok((key, _)) => key,
                Err(Fault::Corrupt { detail, .. }) => {
                    check.report.problem(Problem::Unreadable {
                        tree: META_TREE.to_owned(),
                        after: last_read,
                        error: detail,
                    });
                    break;
                }
                Err(fault) => return Err(backend(fault)),
            };
            last_read = escape(&key);
            match std::str::from_utf8(&key) {
                Ok(name) if validate_collection_name(name).is_ok() => {
                    if let Err(error) = self.read_meta(name) {
                        check.report.problem(Problem::CorruptMeta {
                            collection: name.to_owned(),
                            error: error_chain(&error),
                        });
                    }
                    registered.insert(name.to_owned());
                }
                _ => check.report.problem(Problem::MalformedKey {
                    tree: META_TREE.to_owned(),
                    space: KeySpace::Meta,
                    key: escape(&key),
                    reason: "not a collection name",
                }),
            }
        }
        let trees = self.collection_trees()?;
        let mut names: BTreeSet<&String> = registered.iter().collect();
        names.extend(trees.iter().map(|(name, _)| name));
        check.report.collections = u64::try_from(names.len()).unwrap_or(u64::MAX);
        for (name, tree_name) in &trees {
            if !registered.contains(name) {
                check.report.problem(Problem::UnregisteredCollection {
                    collection: name.clone(),
                });
            }
            self.with_collection(name, tree_name, |tree, _| check.collection(name, tree))?;
            self.with_collection(name, tree_name, |tree, _| {
                match check.progress_records(self, name, tree) {
                    // Damage is reported by the collection's own check.
                    Err(StoreError::StorageCorrupt { .. }) => Ok(()),
                    other => other,
                }
            })?;
        }
        if self.sled()?.has_tree(LEDGER_TREE.as_bytes()) {
            let ledger = self.sled()?.db().open_tree(LEDGER_TREE).map_err(backend)?;
            match check.ledger(&ledger) {
                Err(StoreError::StorageCorrupt { detail, .. }) => {
                    check.report.problem(Problem::Unreadable {
                        tree: LEDGER_TREE.to_owned(),
                        after: String::new(),
                        error: detail,
                    });
                }
                other => other?,
            }
        }
        if self
            .sled()?
            .db()
            .contains_key(IMPORT_MARKER)
            .map_err(backend)?
        {
            check.report.problem(Problem::IncompleteImport);
        }
        let documents = check.report.documents;
        (check.progress)(documents);
        Ok(check.report)
    }
}

// ---------------------------------------------------------------------------------------------
// Verify

pub(crate) struct Check<'p> {
    pub(crate) report: VerifyReport,
    max_depth: usize,
    pub(crate) progress: &'p mut dyn FnMut(u64),
}

/// A head as found: `None` when its value does not decode.
pub(crate) type FoundHead = (String, Option<Head>);
/// One document's revisions as found, in key order.
type FoundRevisions = (String, Vec<(u64, sled::IVec)>);

impl Check<'_> {
    fn collection(&mut self, name: &str, tree: &Tree) -> Result<(), StoreError> {
        let before = self.report.clone();
        match self.collection_in_order(name, tree) {
            Err(StoreError::StorageCorrupt { .. }) => {
                // sled cannot read through part of the tree: check it again by other routes.
                self.report = before;
                self.damaged_collection(name, tree)
            }
            other => other,
        }
    }

    /// Checks a collection in one ordered walk of each key space.
    fn collection_in_order(&mut self, name: &str, tree: &Tree) -> Result<(), StoreError> {
        let tree_name = format!("{COLLECTION_TREE_PREFIX}{name}");
        let mut actual: BTreeMap<Counter, u64> = BTreeMap::new();
        self.documents(name, &tree_name, tree, &mut actual)?;
        self.failures(name, &tree_name, tree, &mut actual)?;
        self.counters(name, tree, &actual)?;
        self.cursors(name, &tree_name, tree)?;
        self.stray_keys(&tree_name, tree)?;
        let documents = self.report.documents;
        (self.progress)(documents);
        Ok(())
    }

    /// Walks heads and revisions together (they sort by id alike, see `keys`), checking each
    /// document and counting its head.
    fn documents(
        &mut self,
        name: &str,
        tree_name: &str,
        tree: &Tree,
        actual: &mut BTreeMap<Counter, u64>,
    ) -> Result<(), StoreError> {
        let mut heads = tree.scan_prefix([keys::HEAD]);
        let mut groups = Groups {
            iter: tree.scan_prefix([keys::REVISION]),
            peeked: None,
        };
        let mut head = self.next_head(tree_name, &mut heads)?;
        let mut group = groups.next(self, tree_name)?;
        loop {
            let order = match (&head, &group) {
                (None, None) => return Ok(()),
                (Some((head_id, _)), Some((group_id, _))) => head_id.cmp(group_id),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
            };
            match order {
                Ordering::Equal => {
                    if let (Some(found), Some((_, revisions))) = (head.take(), group.take()) {
                        self.document(name, found, Some(&revisions), actual);
                    }
                    head = self.next_head(tree_name, &mut heads)?;
                    group = groups.next(self, tree_name)?;
                }
                Ordering::Less => {
                    if let Some(found) = head.take() {
                        self.document(name, found, None, actual);
                    }
                    head = self.next_head(tree_name, &mut heads)?;
                }
                Ordering::Greater => {
                    if let Some((id, revisions)) = group.take() {
                        self.chain(name, &id, &revisions);
                        self.report.problem(Problem::RevisionsWithoutHead {
                            collection: name.to_owned(),
                            id,
                            revisions: u64::try_from(revisions.len()).unwrap_or(u64::MAX),
                        });
                    }
                    group = groups.next(self, tree_name)?;
                }
            }
        }
    }

    /// Checks every failure record names its document's live head, and counts those that do.
    pub(crate) fn failures(
        &mut self,
        name: &str,
        tree_name: &str,
        tree: &Tree,
        actual: &mut BTreeMap<Counter, u64>,
    ) -> Result<(), StoreError> {
        for entry in tree.scan_prefix([keys::FAILURE]) {
            let (key, value) = entry.map_err(backend)?;
            let id = match parse_failure_key(&key) {
                Ok(id) => id,
                Err(error) => {
                    self.report.problem(malformed_key(tree_name, &key, error));
                    continue;
                }
            };
            match current_failure(tree, id, &value)? {
                Ok(version) => *actual.entry(Counter::Failed(version)).or_insert(0) += 1,
                Err(reason) => self.report.problem(Problem::StaleFailure {
                    collection: name.to_owned(),
                    id: id.to_owned(),
                    reason,
                }),
            }
        }
        Ok(())
    }

    /// Compares the stored counters with what the heads and failure records say.
    pub(crate) fn counters(
        &mut self,
        name: &str,
        tree: &Tree,
        actual: &BTreeMap<Counter, u64>,
    ) -> Result<(), StoreError> {
        let mut stored = BTreeMap::new();
        for entry in tree.scan_prefix([keys::COUNTER]) {
            let (key, value) = entry.map_err(backend)?;
            match decode_counter(&key, &value) {
                Ok((counter, count)) => {
                    stored.insert(counter, count);
                }
                Err(reason) => self.report.problem(Problem::MalformedCounter {
                    collection: name.to_owned(),
                    key: escape(&key),
                    reason,
                }),
            }
        }
        let counters: BTreeSet<Counter> = stored.keys().chain(actual.keys()).copied().collect();
        for counter in counters {
            let stored = stored.get(&counter).copied().unwrap_or(0);
            let actual = actual.get(&counter).copied().unwrap_or(0);
            if stored != actual {
                self.report.problem(Problem::CounterMismatch {
                    collection: name.to_owned(),
                    counter: counter.into(),
                    stored,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Checks every migration cursor holds a valid id.
    pub(crate) fn cursors(
        &mut self,
        name: &str,
        tree_name: &str,
        tree: &Tree,
    ) -> Result<(), StoreError> {
        for entry in tree.scan_prefix([keys::CURSOR]) {
            let (key, value) = entry.map_err(backend)?;
            let target = match parse_cursor_key(&key) {
                Ok(target) => target,
                Err(error) => {
                    self.report.problem(malformed_key(tree_name, &key, error));
                    continue;
                }
            };
            let reason = match std::str::from_utf8(&value) {
                Err(_) => Some("is not UTF-8"),
                Ok(id) if id::validate(id).is_err() => Some("is not a valid id"),
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                self.report.problem(Problem::InvalidCursor {
                    collection: name.to_owned(),
                    target,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Reports progress records that name no run of the ledger.
    pub(crate) fn progress_records(
        &mut self,
        store: &Store,
        name: &str,
        tree: &Tree,
    ) -> Result<(), StoreError> {
        let mut ledger = None;
        for entry in tree.scan_prefix([keys::PROGRESS]) {
            let (key, _) = entry.map_err(backend)?;
            let run = match parse_progress_key(&key) {
                Ok(run) => run,
                Err(error) => {
                    let tree_name = format!("{COLLECTION_TREE_PREFIX}{name}");
                    self.report.problem(malformed_key(&tree_name, &key, error));
                    continue;
                }
            };
            let ledger = match &ledger {
                Some(ledger) => ledger,
                None => ledger.insert(store.sled()?.db().open_tree(LEDGER_TREE).map_err(backend)?),
            };
            if !ledger
                .contains_key(ledger_key(name, run))
                .map_err(backend)?
            {
                self.report.problem(Problem::OrphanProgress {
                    collection: name.to_owned(),
                    run,
                });
            }
        }
        Ok(())
    }

    /// Reports keys outside every key space.
    pub(crate) fn stray_keys(&mut self, tree_name: &str, tree: &Tree) -> Result<(), StoreError> {
        let spaces = [
            keys::COUNTER,
            keys::FAILURE,
            keys::HEAD,
            keys::CURSOR,
            keys::PROGRESS,
            keys::REVISION,
        ];
        let mut start = Bound::Unbounded;
        for space in spaces.into_iter().map(Some).chain([None]) {
            let end = space.map_or(Bound::Unbounded, |space| Bound::Excluded(vec![space]));
            for entry in tree.range::<Vec<u8>, _>((start, end)) {
                let (key, _) = entry.map_err(backend)?;
                self.report.problem(Problem::MalformedKey {
                    tree: tree_name.to_owned(),
                    space: KeySpace::Unknown,
                    key: escape(&key),
                    reason: "outside every key space",
                });
            }
            start = match space.and_then(|space| space.checked_add(1)) {
                Some(next) => Bound::Included(vec![next]),
                None => break,
            };
        }
        Ok(())
    }

    /// The next head with a valid id; heads with another key are reported and skipped.
    fn next_head(
        &mut self,
        tree_name: &str,
        heads: &mut Iter,
    ) -> Result<Option<FoundHead>, StoreError> {
        for entry in heads {
            let (key, value) = entry.map_err(backend)?;
            match parse_head_key(&key) {
                Ok(id) => return Ok(Some((id.to_owned(), Head::decode(&value)))),
                Err(error) => self.report.problem(malformed_key(tree_name, &key, error)),
            }
        }
        Ok(None)
    }

    /// Checks a document's head against its revisions, and counts it.
    pub(crate) fn document(
        &mut self,
        collection: &str,
        (id, head): FoundHead,
        revisions: Option<&[(u64, sled::IVec)]>,
        actual: &mut BTreeMap<Counter, u64>,
    ) {
        self.report.documents += 1;
        if self.report.documents % PROGRESS_EVERY == 0 {
            (self.progress)(self.report.documents);
        }
        let last = revisions.and_then(|revisions| self.chain(collection, &id, revisions));
        let Some(head) = head else {
            self.report.problem(Problem::MalformedHead {
                collection: collection.to_owned(),
                id,
            });
            return;
        };
        *actual.entry(Counter::of(head)).or_insert(0) += 1;
        let head_state = (!head.removed).then_some(head.version);
        match last {
            Some((revision, _)) if revision != head.revision.get() => {
                self.report.problem(Problem::HeadNotLast {
                    collection: collection.to_owned(),
                    id,
                    head: head.revision.get(),
                    last: Some(revision),
                });
            }
            None => self.report.problem(Problem::HeadNotLast {
                collection: collection.to_owned(),
                id,
                head: head.revision.get(),
                last: None,
            }),
            Some((revision, Stored::State(stored))) if stored != head_state => {
                self.report.problem(Problem::HeadStateMismatch {
                    collection: collection.to_owned(),
                    id,
                    revision,
                    head: head_state,
                    stored,
                });
            }
            Some(_) => {}
        }
    }

    /// Decodes a document's revisions and checks they count up from 1 without gaps. Returns the
    /// last revision's number and what its envelope says.
    pub(crate) fn chain(
        &mut self,
        collection: &str,
        id: &str,
        revisions: &[(u64, sled::IVec)],
    ) -> Option<(u64, Stored)> {
        check_chain(
            &mut self.report,
            self.max_depth,
            (collection, id),
            revisions
                .iter()
                .map(|(revision, bytes)| (*revision, &bytes[..])),
        )
    }

    fn ledger(&mut self, ledger: &Tree) -> Result<(), StoreError> {
        for entry in ledger {
            let (key, value) = entry.map_err(backend)?;
            let error = match parse_ledger_key(&key) {
                Err(error) => Some(error.reason.to_owned()),
                Ok(_) => record::decode_payload::<IgnoredAny>(&value, 64)
                    .err()
                    .map(|error| error_chain(&error)),
            };
            if let Some(error) = error {
                self.report.problem(Problem::CorruptLedger {
                    key: escape(&key),
                    error,
                });
            }
        }
        Ok(())
    }
}

/// A collection's revisions, grouped by document.
struct Groups {
    iter: Iter,
    peeked: Option<(sled::IVec, sled::IVec)>,
}

impl Groups {
    /// The next document's revisions; keys that do not parse are reported and skipped.
    fn next(
        &mut self,
        check: &mut Check<'_>,
        tree_name: &str,
    ) -> Result<Option<FoundRevisions>, StoreError> {
        let mut current: Option<FoundRevisions> = None;
        loop {
            let (key, value) = match self.peeked.take() {
                Some(entry) => entry,
                None => match self.iter.next() {
                    Some(entry) => entry.map_err(backend)?,
                    None => return Ok(current),
                },
            };
            let (id, revision) = match parse_revision_key(&key) {
                Ok(parsed) => parsed,
                Err(error) => {
                    check.report.problem(malformed_key(tree_name, &key, error));
                    continue;
                }
            };
            match &mut current {
                None => current = Some((id.to_owned(), vec![(revision, value)])),
                Some((current_id, revisions)) if current_id == id => {
                    revisions.push((revision, value));
                }
                Some(_) => {
                    self.peeked = Some((key, value));
                    return Ok(current);
                }
            }
        }
    }
}

/// The problem a key that does not parse in its key space is.
pub(crate) fn malformed_key(tree_name: &str, key: &[u8], error: KeyError) -> Problem {
    Problem::MalformedKey {
        tree: tree_name.to_owned(),
        space: error.space,
        key: escape(key),
        reason: error.reason,
    }
}

/// A counter's key and value as stored; `Err` with what is wrong with them.
///
/// Here rather than in `keys`, which `counters` imports.
pub(crate) fn decode_counter(key: &[u8], value: &[u8]) -> Result<(Counter, u64), &'static str> {
    let counter = Counter::from_key(key)
        .ok_or("the key is not `c`, a class (`l`, `r` or `f`) and a version")?;
    let count = <[u8; 8]>::try_from(value).map_err(|_| "the value is not an 8-byte count")?;
    Ok((counter, u64::from_be_bytes(count)))
}

/// Whether a failure record names its document's current live head: `Ok` with the head's version
/// if it does, `Err` with the reason if not.
pub(crate) fn current_failure(
    tree: &Tree,
    id: &str,
    bytes: &[u8],
) -> Result<Result<u32, String>, StoreError> {
    let failure = match record::decode_payload::<FailureRecord>(bytes, 8) {
        Ok(failure) => failure,
        Err(error) => return Ok(Err(format!("does not decode: {}", error_chain(&error)))),
    };
    let Some(bytes) = tree.get(keys::head(id)).map_err(backend)? else {
        return Ok(Err("names a document without a head".to_owned()));
    };
    Ok(match Head::decode(&bytes) {
        Some(head)
            if !head.removed
                && head.revision.get() == failure.revision
                && head.version == failure.version =>
        {
            Ok(head.version)
        }
        Some(head) if head.removed => Err("names a removed document".to_owned()),
        Some(head) => Err(format!(
            "names revision {} at version {}, but the head is revision {} at version {}",
            failure.revision, failure.version, head.revision, head.version
        )),
        None => Err("names a document whose head does not decode".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Revision;
    use crate::store::engine::sled::fixtures::{kinds, migrated_store, tree};
    use crate::store::CounterKind;

    #[test]
    fn a_good_store_verifies_clean() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let mut seen = Vec::new();
        let report = store.verify_with_progress(|done| seen.push(done)).unwrap();
        assert!(report.is_ok(), "{:#?}", report.problems);
        assert_eq!(report.collections, 2);
        assert_eq!(report.documents, 6);
        // notes: 2 + 2 + 1 revisions; tasks: 2 + 2 + 1.
        assert_eq!(report.revisions, 10);
        assert_eq!(seen.last(), Some(&6));
        assert!(!store.repair_counters().unwrap().changed_anything());
    }

    // One damage per kind of problem, then one assertion per kind.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn verify_finds_every_kind_of_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (notes, tasks) = migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let n = tree(&store, "notes");
        let t = tree(&store, "tasks");
        let rev = |id: &str, r: u64| keys::revision(id, Revision::new(r).unwrap());

        // notes[0] has revisions 1 and 2: lose revision 1.
        n.remove(rev(&notes[0], 1)).unwrap();
        // notes[2] has revision 1: flip a byte of it.
        let mut bytes = n.get(rev(&notes[2], 1)).unwrap().unwrap().to_vec();
        bytes[3] ^= 0x40;
        n.insert(rev(&notes[2], 1), bytes).unwrap();
        // Revisions of a document without a head.
        let good = n.get(rev(&notes[0], 2)).unwrap().unwrap();
        n.insert(rev("ghost", 1), good.clone()).unwrap();
        // A counter that disagrees, and one that does not decode.
        n.insert(Counter::Live(1).key(), &7u64.to_be_bytes()[..])
            .unwrap();
        n.insert(Counter::Removed.key(), &[1u8, 2][..]).unwrap();
        // A key outside every key space, and a malformed revision key.
        n.insert(b"zzz", &b"?"[..]).unwrap();
        n.insert(b"r-no-terminator", &b"?"[..]).unwrap();

        // tasks[0] is at revision 2 (migrated): its head claims revision 3, then tasks[1]'s
        // head claims version 1 where revision 2 is at version 2.
        let head = |revision: u64, version: u32| Head {
            revision: Revision::new(revision).unwrap(),
            version,
            removed: false,
        };
        t.insert(keys::head(&tasks[0]), &head(3, 2).encode()[..])
            .unwrap();
        t.insert(keys::head(&tasks[1]), &head(2, 1).encode()[..])
            .unwrap();
        // A head that does not decode.
        t.insert(keys::head("broken"), &[9u8; 4][..]).unwrap();
        // The failed task's failure record made stale: it now names revision 9.
        let failure = FailureRecord {
            revision: 9,
            version: 1,
            class: "step".into(),
            error: "x".into(),
            run: 1,
        };
        t.insert(
            keys::failure(&tasks[2]),
            record::encode_payload(&failure).unwrap(),
        )
        .unwrap();
        // A cursor that is not an id.
        t.insert(keys::cursor(2), &b"a\0b"[..]).unwrap();

        // A broken `_meta` record, a broken ledger record, a stray collection tree, and the
        // import marker.
        store
            .sled()
            .unwrap()
            .meta
            .insert("tasks", &[0xc1u8][..])
            .unwrap();
        let ledger = store.sled().unwrap().db().open_tree(LEDGER_TREE).unwrap();
        let (key, _) = ledger.first().unwrap().unwrap();
        ledger.insert(key, &[0x92u8][..]).unwrap();
        ledger.insert(b"short", &[0x90u8][..]).unwrap();
        store
            .sled()
            .unwrap()
            .db()
            .open_tree("c/stray")
            .unwrap()
            .insert(b"zz", &b""[..])
            .unwrap();
        store
            .sled()
            .unwrap()
            .db()
            .insert(IMPORT_MARKER, &[][..])
            .unwrap();

        let report = store.verify().unwrap();
        let mut found = kinds(&report);
        found.sort_unstable();
        found.dedup();
        assert_eq!(
            found,
            [
                "corrupt_ledger",
                "corrupt_meta",
                "corrupt_revision",
                "counter_mismatch",
                "head_not_last",
                "head_state_mismatch",
                "incomplete_import",
                "invalid_cursor",
                "malformed_counter",
                "malformed_head",
                "malformed_key",
                "missing_revisions",
                "revisions_without_head",
                "stale_failure",
                "unregistered_collection",
            ],
            "{:#?}",
            report.problems
        );
        assert_eq!(report.problem_count, report.problems.len() as u64);
        assert!(report.problems.contains(&Problem::MissingRevisions {
            collection: "notes".into(),
            id: notes[0].to_string(),
            from: 1,
            to: 1,
        }));
        assert!(report.problems.contains(&Problem::CounterMismatch {
            collection: "notes".into(),
            counter: CounterKind::Live { version: 1 },
            stored: 7,
            actual: 2,
        }));
        assert!(report.problems.contains(&Problem::HeadNotLast {
            collection: "tasks".into(),
            id: tasks[0].to_string(),
            head: 3,
            last: Some(2),
        }));
        assert!(report.problems.contains(&Problem::HeadStateMismatch {
            collection: "tasks".into(),
            id: tasks[1].to_string(),
            revision: 2,
            head: Some(1),
            stored: Some(2),
        }));
        for problem in &report.problems {
            assert!(!problem.to_string().is_empty());
        }
    }

    /// Every malformed key a check meets, with its key space and what is wrong with it.
    fn malformed_keys(report: &VerifyReport) -> Vec<(String, KeySpace, &'static str)> {
        report
            .problems
            .iter()
            .filter_map(|problem| match problem {
                Problem::MalformedKey {
                    tree,
                    space,
                    reason,
                    ..
                } => Some((tree.clone(), *space, *reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_malformed_key_names_its_key_space() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let n = tree(&store, "notes");
        for key in [
            &b"h\xff"[..],
            b"r-no-terminator",
            b"f",
            b"m12",
            b"p1",
            b"zzz",
        ] {
            n.insert(key, &b"?"[..]).unwrap();
        }
        let mut zero = keys::revisions_of("doc");
        zero.extend_from_slice(&0u64.to_be_bytes());
        n.insert(zero, &b"?"[..]).unwrap();
        store
            .sled()
            .unwrap()
            .meta
            .insert(b"\xff", &b"?"[..])
            .unwrap();

        let report = store.verify().unwrap();
        let mut found = malformed_keys(&report);
        found.sort_unstable();
        let notes = |space, reason| ("c/notes".to_owned(), space, reason);
        assert_eq!(
            found,
            [
                ("_meta".to_owned(), KeySpace::Meta, "not a collection name"),
                notes(KeySpace::Heads, "the id is not UTF-8"),
                notes(
                    KeySpace::Revisions,
                    "a revision key is `r`, an id, a NUL and a revision number"
                ),
                notes(KeySpace::Revisions, "revision numbers start at 1"),
                notes(KeySpace::Failures, "the id breaks the id rules"),
                notes(KeySpace::Cursors, "a cursor key is `m` and a version"),
                notes(KeySpace::Progress, "a progress key is `p` and a run id"),
                notes(KeySpace::Unknown, "outside every key space"),
            ],
            "{:#?}",
            report.problems
        );
        let text: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"`c/notes`: malformed head key h\\xff: the id is not UTF-8".to_owned()),
            "{text:#?}"
        );
        assert!(
            text.contains(&"`c/notes`: malformed key zzz: outside every key space".to_owned()),
            "{text:#?}"
        );
    }

    #[test]
    fn a_malformed_counter_says_whether_its_key_or_its_value_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let n = tree(&store, "notes");
        n.insert(b"cx\0\0\0\x01", &1u64.to_be_bytes()[..]).unwrap();
        n.insert(Counter::Removed.key(), &[1u8, 2][..]).unwrap();
        let report = store.verify().unwrap();
        let mut reasons: Vec<&str> = report
            .problems
            .iter()
            .filter_map(|problem| match problem {
                Problem::MalformedCounter { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            [
                "the key is not `c`, a class (`l`, `r` or `f`) and a version",
                "the value is not an 8-byte count",
            ]
        );
    }

    #[test]
    fn a_stale_failure_tells_a_missing_head_from_one_that_does_not_decode() {
        let dir = tempfile::tempdir().unwrap();
        let (_, tasks) = migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let t = tree(&store, "tasks");
        // tasks[2] failed to migrate: its failure record names its head. Break the head, and
        // copy the record to a document that has none.
        let record = t.get(keys::failure(&tasks[2])).unwrap().unwrap();
        t.insert(keys::failure("nohead"), record).unwrap();
        t.insert(keys::head(&tasks[2]), &[9u8; 4][..]).unwrap();
        let report = store.verify().unwrap();
        let mut reasons: Vec<(String, String)> = report
            .problems
            .iter()
            .filter_map(|problem| match problem {
                Problem::StaleFailure { id, reason, .. } => Some((id.clone(), reason.clone())),
                _ => None,
            })
            .collect();
        reasons.sort_unstable();
        let mut expected = vec![
            (
                tasks[2].to_string(),
                "names a document whose head does not decode".to_owned(),
            ),
            (
                "nohead".to_owned(),
                "names a document without a head".to_owned(),
            ),
        ];
        expected.sort_unstable();
        assert_eq!(reasons, expected, "{:#?}", report.problems);
    }

    #[test]
    fn every_collection_tree_is_checked_even_two_whose_names_are_not_utf8() {
        let store = Store::temporary().unwrap();
        for tree_name in [&b"c/\xfe"[..], b"c/\xff"] {
            let tree = store.sled().unwrap().db().open_tree(tree_name).unwrap();
            tree.insert(b"zz", &b""[..]).unwrap();
        }
        let report = store.verify().unwrap();
        assert_eq!(report.collections, 2);
        let mut found: Vec<(&str, String)> = report
            .problems
            .iter()
            .filter_map(|problem| match problem {
                Problem::UnregisteredCollection { collection } => {
                    Some(("unregistered", collection.clone()))
                }
                Problem::MalformedKey { tree, .. } => Some(("malformed", tree.clone())),
                _ => None,
            })
            .collect();
        found.sort_unstable();
        assert_eq!(
            found,
            [
                ("malformed", "c/\\xfe".to_owned()),
                ("malformed", "c/\\xff".to_owned()),
                ("unregistered", "\\xfe".to_owned()),
                ("unregistered", "\\xff".to_owned()),
            ],
            "{:#?}",
            report.problems
        );
    }
}
