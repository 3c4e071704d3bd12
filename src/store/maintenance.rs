//! Store maintenance: statistics, the consistency check and counter repair (backups are in
//! `backup.rs`).
//!
//! Everything here walks sled trees key by key, so it lives in the store module. It reports
//! progress through callbacks and never prints; the `revolve` binary draws the progress bars.
//!
//! A collection is walked under its write lock (writes to it wait; other collections go on), so
//! what one walk sees of a collection is consistent in itself.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;

use serde::de::IgnoredAny;
use serde::Serialize;

use super::backup::IMPORT_MARKER;
use super::counters::{Counter, Counters};
use super::engine::sled::backend;
use super::engine::sled::guard::{Fault, Iter, Tree};
use super::engine::sled::keys::ledger as ledger_key;
use super::engine::sled::keys::{self, Head};
use super::engine::sled::LEDGER_TREE;
use super::engine::sled::{COLLECTION_TREE_PREFIX, META_TREE};
use super::{validate_collection_name, FailureRecord, Store, StoreError};
use crate::id;
use crate::record::{self, Kind};

/// The name sled gives its default tree.
pub(super) const DEFAULT_TREE: &[u8] = b"__sled__default";
/// How often a walk reports progress, in items.
pub(super) const PROGRESS_EVERY: u64 = 1024;

/// How many problems a [`VerifyReport`] lists; [`VerifyReport::problem_count`] counts them all.
pub const MAX_REPORTED_PROBLEMS: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Public types

/// One of a collection's counters, as [`Problem::CounterMismatch`] and [`CounterChange`] name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CounterKind {
    /// Live documents whose head is at this version.
    Live {
        /// The schema version.
        version: u32,
    },
    /// Removed documents.
    Removed,
    /// Live documents at this version whose migration failed.
    Failed {
        /// The schema version.
        version: u32,
    },
}

impl From<Counter> for CounterKind {
    fn from(counter: Counter) -> Self {
        match counter {
            Counter::Live(version) => CounterKind::Live { version },
            Counter::Removed => CounterKind::Removed,
            Counter::Failed(version) => CounterKind::Failed { version },
        }
    }
}

impl fmt::Display for CounterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CounterKind::Live { version } => write!(f, "live documents at version {version}"),
            CounterKind::Removed => f.write_str("removed documents"),
            CounterKind::Failed { version } => {
                write!(f, "failed documents at version {version}")
            }
        }
    }
}

/// One inconsistency [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// A key that fits none of its tree's key spaces, or does not parse in its own.
    MalformedKey {
        /// The tree: `c/<collection>`, `_meta` or `_ledger`.
        tree: String,
        /// The key, non-printable bytes escaped.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A head whose value does not decode.
    MalformedHead {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
    },
    /// A revision whose envelope or MessagePack payload does not decode, or whose envelope names
    /// another revision number than its key.
    CorruptRevision {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
        /// The revision, from its key.
        revision: u64,
        /// What is wrong with it.
        error: String,
    },
    /// Revisions missing from a document's chain, which counts 1, 2, 3, … without gaps.
    MissingRevisions {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
        /// The first missing revision.
        from: u64,
        /// The last missing revision.
        to: u64,
    },
    /// Revisions of a document that has no head.
    RevisionsWithoutHead {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
        /// How many revisions it has.
        revisions: u64,
    },
    /// A head that does not name the document's last revision.
    HeadNotLast {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
        /// The revision the head names.
        head: u64,
        /// The last revision stored; `None` when there is none.
        last: Option<u64>,
    },
    /// A head whose version or removed flag disagrees with the revision it names.
    HeadStateMismatch {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
        /// The revision.
        revision: u64,
        /// The version the head says; `None` for removed.
        head: Option<u32>,
        /// The version the revision is stored at; `None` for a removal.
        stored: Option<u32>,
    },
    /// A counter that disagrees with the heads and failure records it counts.
    CounterMismatch {
        /// The collection.
        collection: String,
        /// The counter.
        counter: CounterKind,
        /// Its stored value.
        stored: u64,
        /// What the heads and failure records say.
        actual: u64,
    },
    /// A counter whose key or value does not decode.
    MalformedCounter {
        /// The collection.
        collection: String,
        /// The key, non-printable bytes escaped.
        key: String,
    },
    /// A failure record that does not decode or does not name the document's current live head.
    StaleFailure {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A migration cursor whose value is not a valid document id.
    InvalidCursor {
        /// The collection.
        collection: String,
        /// The version the cursor is for.
        target: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A migration run's progress record (`p ‖ run`) that names no run of the ledger. Builds
    /// before progress records existed report such keys as malformed.
    OrphanProgress {
        /// The collection.
        collection: String,
        /// The run it names.
        run: u64,
    },
    /// A collection's `_meta` record that does not decode.
    CorruptMeta {
        /// The collection.
        collection: String,
        /// What is wrong with it.
        error: String,
    },
    /// A `_ledger` record whose key or value does not decode.
    CorruptLedger {
        /// The key, non-printable bytes escaped.
        key: String,
        /// What is wrong with it.
        error: String,
    },
    /// A collection tree without a `_meta` record: no program registered it, and
    /// [`Store::collection_names`] does not list it.
    UnregisteredCollection {
        /// The collection.
        collection: String,
    },
    /// The store holds an import that did not finish.
    IncompleteImport,
    /// Part of a tree the storage engine cannot read (a damaged page): what lies in it is named
    /// by the problems that follow, as far as other routes reach.
    Unreadable {
        /// The tree: `c/<collection>`, `_meta` or `_ledger`.
        tree: String,
        /// The last key read before it, non-printable bytes escaped; empty when none was.
        after: String,
        /// What the storage engine reported.
        error: String,
    },
    /// A document whose head the storage engine cannot read.
    UnreadableHead {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
    },
    /// A revision the storage engine cannot read.
    UnreadableRevision {
        /// The collection.
        collection: String,
        /// The document.
        id: String,
        /// The revision.
        revision: u64,
    },
    /// Documents the counters expect that no readable head accounts for: lost to damage no
    /// route could read past, or counted wrongly.
    Unaccounted {
        /// The collection.
        collection: String,
        /// Documents (live and removed) the counters expect.
        expected: u64,
        /// Heads found and read.
        found: u64,
    },
}

impl Problem {
    /// Whether [`Store::repair_counters`] repairs it: a counter that disagrees with the heads, a
    /// malformed counter, or a failure record that no longer names its document's head.
    #[must_use]
    pub fn is_repairable(&self) -> bool {
        matches!(
            self,
            Problem::CounterMismatch { .. }
                | Problem::MalformedCounter { .. }
                | Problem::StaleFailure { .. }
        )
    }
}

impl fmt::Display for Problem {
    // One arm per variant; splitting it would only scatter the messages.
    #[allow(clippy::too_many_lines)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MalformedKey { tree, key, reason } => {
                write!(f, "`{tree}`: malformed key {key}: {reason}")
            }
            Problem::MalformedHead { collection, id } => {
                write!(f, "`{collection}` `{id}`: the head does not decode")
            }
            Problem::CorruptRevision {
                collection,
                id,
                revision,
                error,
            } => write!(f, "`{collection}` `{id}` revision {revision}: {error}"),
            Problem::MissingRevisions {
                collection,
                id,
                from,
                to,
            } => {
                if from == to {
                    write!(f, "`{collection}` `{id}`: revision {from} is missing")
                } else {
                    write!(f, "`{collection}` `{id}`: revisions {from} to {to} are missing")
                }
            }
            Problem::RevisionsWithoutHead {
                collection,
                id,
                revisions,
            } => write!(f, "`{collection}` `{id}`: {revisions} revisions but no head"),
            Problem::HeadNotLast {
                collection,
                id,
                head,
                last,
            } => match last {
                Some(last) => write!(
                    f,
                    "`{collection}` `{id}`: the head names revision {head}, but the last revision is {last}"
                ),
                None => write!(
                    f,
                    "`{collection}` `{id}`: the head names revision {head}, but no revision is stored"
                ),
            },
            Problem::HeadStateMismatch {
                collection,
                id,
                revision,
                head,
                stored,
            } => {
                let state = |version: &Option<u32>| {
                    version.map_or_else(|| "removed".to_owned(), |v| format!("at version {v}"))
                };
                write!(
                    f,
                    "`{collection}` `{id}`: the head says {}, but revision {revision} is {}",
                    state(head),
                    state(stored)
                )
            }
            Problem::CounterMismatch {
                collection,
                counter,
                stored,
                actual,
            } => write!(
                f,
                "`{collection}`: the counter of {counter} is {stored}, but the heads say {actual}"
            ),
            Problem::MalformedCounter { collection, key } => {
                write!(f, "`{collection}`: malformed counter {key}")
            }
            Problem::StaleFailure {
                collection,
                id,
                reason,
            } => write!(f, "`{collection}` `{id}`: failure record {reason}"),
            Problem::InvalidCursor {
                collection,
                target,
                reason,
            } => write!(
                f,
                "`{collection}`: the migration cursor to version {target} {reason}"
            ),
            Problem::OrphanProgress { collection, run } => write!(
                f,
                "`{collection}`: a progress record names run {run}, which the ledger does not hold"
            ),
            Problem::CorruptMeta { collection, error } => {
                write!(f, "`{collection}`: the `_meta` record does not decode: {error}")
            }
            Problem::CorruptLedger { key, error } => {
                write!(f, "`_ledger`: record {key}: {error}")
            }
            Problem::UnregisteredCollection { collection } => write!(
                f,
                "`{collection}`: a collection tree without a `_meta` record"
            ),
            Problem::IncompleteImport => f.write_str(
                "the store holds an import that did not finish; delete it and import again",
            ),
            Problem::Unreadable { tree, after, error } => {
                if after.is_empty() {
                    write!(f, "`{tree}`: unreadable from its start: {error}")
                } else {
                    write!(f, "`{tree}`: unreadable after key {after}: {error}")
                }
            }
            Problem::UnreadableHead { collection, id } => {
                write!(f, "`{collection}` `{id}`: the head cannot be read")
            }
            Problem::UnreadableRevision {
                collection,
                id,
                revision,
            } => write!(f, "`{collection}` `{id}` revision {revision} cannot be read"),
            Problem::Unaccounted {
                collection,
                expected,
                found,
            } => write!(
                f,
                "`{collection}`: the counters expect {expected} documents, {found} were found; {} cannot be accounted for",
                expected.saturating_sub(*found)
            ),
        }
    }
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct VerifyReport {
    /// Collections checked.
    pub collections: u64,
    /// Documents (heads) checked.
    pub documents: u64,
    /// Revisions decoded.
    pub revisions: u64,
    /// The first [`MAX_REPORTED_PROBLEMS`] problems, in the order found.
    pub problems: Vec<Problem>,
    /// How many problems were found in all.
    pub problem_count: u64,
}

impl VerifyReport {
    /// Whether no problem was found.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    pub(super) fn problem(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_REPORTED_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// One counter [`Store::repair_counters`] rewrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CounterChange {
    /// The collection.
    pub collection: String,
    /// The counter.
    pub counter: CounterKind,
    /// Its value before.
    pub before: u64,
    /// Its value now.
    pub after: u64,
}

/// What [`Store::repair_counters`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct RepairReport {
    /// Collections walked.
    pub collections: u64,
    /// Counters rewritten.
    pub counters: Vec<CounterChange>,
    /// Malformed counter keys removed.
    pub malformed_counters_removed: u64,
    /// Failure records removed because they no longer named their document's head.
    pub stale_failures_removed: u64,
}

impl RepairReport {
    /// Whether anything was changed.
    #[must_use]
    pub fn changed_anything(&self) -> bool {
        !self.counters.is_empty()
            || self.malformed_counters_removed > 0
            || self.stale_failures_removed > 0
    }
}

/// One collection's counts, from its counters: no scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CollectionStats {
    /// The collection's name.
    pub name: String,
    /// The newest version any program has registered.
    pub newest_version: u32,
    /// Live documents per version.
    pub live: BTreeMap<u32, u64>,
    /// Removed documents.
    pub removed: u64,
    /// Live documents whose migration failed, per version.
    pub failed: BTreeMap<u32, u64>,
}

impl CollectionStats {
    /// Live documents over every version.
    #[must_use]
    pub fn documents(&self) -> u64 {
        self.live.values().sum()
    }
}

/// What [`Store::stats`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct StoreStats {
    /// Every registered collection, by name.
    pub collections: Vec<CollectionStats>,
    /// The size of the database's files, in bytes.
    pub size_on_disk: u64,
}

// ---------------------------------------------------------------------------------------------
// Store methods

impl Store {
    /// The size of the database's files, in bytes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.sled()?.db().size_on_disk().map_err(backend)
    }

    /// Every collection's counts per version, removed and failed documents, and the size on
    /// disk. Reads counters only: no scan.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an unreadable `_meta` record or counter (run
    /// [`verify`](Self::verify)), and [`StoreError::Backend`].
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut collections = Vec::new();
        for name in self.collection_names()? {
            let newest_version = self.read_meta(&name)?.map_or(0, |meta| meta.newest_version);
            let counters = self.core(&name)?.engine.counts()?;
            collections.push(CollectionStats {
                live: counters.live(),
                removed: counters.removed(),
                failed: counters.failed(),
                newest_version,
                name,
            });
        }
        Ok(StoreStats {
            collections,
            size_on_disk: self.size_on_disk()?,
        })
    }

    /// Checks every collection: every revision of every document decodes (envelope and
    /// MessagePack payload), each document's revisions count 1, 2, 3, … without gaps, every head
    /// names its last revision with the same version and removed flag, the counters equal what the
    /// heads and failure records say, every failure record names its document's current head, and
    /// every migration cursor is a valid id. Also checks `_meta` and `_ledger` records decode.
    ///
    /// Reads everything, so it takes as long as reading the whole database; each collection is
    /// walked under its write lock, so writes to it wait meanwhile. Problems are reported, never
    /// raised: no bytes on disk make it fail or panic.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the storage engine fails.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_with_progress(|_| {})
    }

    /// As [`verify`](Self::verify), calling `progress` with the number of documents checked so
    /// far, every thousand or so documents and at the end of each collection.
    ///
    /// `progress` runs while a collection's write lock is held: it must not write to the store.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub fn verify_with_progress(
        &self,
        mut progress: impl FnMut(u64),
    ) -> Result<VerifyReport, StoreError> {
        let mut check = Check {
            report: VerifyReport::default(),
            max_depth: self.inner().max_depth,
            progress: &mut progress,
        };
        let mut registered = BTreeSet::new();
        for entry in &self.sled()?.meta {
            let key = match entry {
                Ok((key, _)) => key,
                Err(Fault::Corrupt { detail, .. }) => {
                    check.report.problem(Problem::Unreadable {
                        tree: META_TREE.to_owned(),
                        after: registered.last().cloned().unwrap_or_default(),
                        error: detail,
                    });
                    break;
                }
                Err(fault) => return Err(backend(fault)),
            };
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
                    key: escape(&key),
                    reason: "not a collection name",
                }),
            }
        }
        let trees = self.collection_trees()?;
        let mut names: BTreeSet<&String> = registered.iter().collect();
        names.extend(trees.keys());
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

    /// Recomputes every collection's counters from its heads and failure records, and persists
    /// those that differ, in one atomic batch per collection under its write lock. Failure
    /// records that no longer name their document's live head, and malformed counter keys, are
    /// removed in the same batch. Heads and revisions are never changed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the storage engine fails.
    pub fn repair_counters(&self) -> Result<RepairReport, StoreError> {
        let mut report = RepairReport::default();
        for (name, tree_name) in &self.collection_trees()? {
            report.collections += 1;
            self.with_collection(name, tree_name, |tree, memory| {
                repair_collection(name, tree, memory, &mut report)
            })?;
        }
        self.flush()?;
        Ok(report)
    }

    /// The collection trees of the database, by collection name.
    fn collection_trees(&self) -> Result<BTreeMap<String, sled::IVec>, StoreError> {
        Ok(self
            .sled()?
            .db()
            .tree_names()
            .into_iter()
            .filter_map(|name| Some((collection_of_tree(&name)?, name)))
            .collect())
    }

    /// Runs `work` on a collection's tree under its write lock, with its in-memory counters.
    ///
    /// A collection that cannot be opened the usual way (a malformed counter, a tree name no
    /// program could register) is worked on without counters, holding the lock every opening of a
    /// collection takes, so that no handle to it appears meanwhile.
    pub(super) fn with_collection<R, E: From<StoreError>>(
        &self,
        name: &str,
        tree_name: &[u8],
        work: impl FnOnce(&Tree, Option<&mut Counters>) -> Result<R, E>,
    ) -> Result<R, E> {
        match validate_collection_name(name).and_then(|()| self.sled()?.open_collection(name)) {
            Ok(core) => {
                let mut counters = core.counters.lock();
                work(&core.tree, Some(&mut counters))
            }
            Err(error @ StoreError::Backend(_)) => Err(error.into()),
            Err(_) => {
                let _opening = self.sled()?.collections.lock();
                let tree = self
                    .sled()?
                    .db()
                    .open_tree(tree_name)
                    .map_err(|error| E::from(backend(error)))?;
                work(&tree, None)
            }
        }
    }
}

/// The collection a tree holds, for a `c/<name>` tree.
pub(super) fn collection_of_tree(tree: &[u8]) -> Option<String> {
    tree.strip_prefix(COLLECTION_TREE_PREFIX.as_bytes())
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Verify

pub(super) struct Check<'p> {
    pub(super) report: VerifyReport,
    max_depth: usize,
    pub(super) progress: &'p mut dyn FnMut(u64),
}

/// What a revision's envelope says of the document.
#[derive(Clone, Copy)]
pub(super) enum Stored {
    /// The envelope does not decode.
    Unreadable,
    /// At this version; `None` for a removal.
    State(Option<u32>),
}

/// A head as found: `None` when its value does not decode.
pub(super) type FoundHead = (String, Option<Head>);
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
    pub(super) fn failures(
        &mut self,
        name: &str,
        tree_name: &str,
        tree: &Tree,
        actual: &mut BTreeMap<Counter, u64>,
    ) -> Result<(), StoreError> {
        for entry in tree.scan_prefix([keys::FAILURE]) {
            let (key, value) = entry.map_err(backend)?;
            let Some(id) = key.get(1..).and_then(valid_id) else {
                self.report.problem(Problem::MalformedKey {
                    tree: tree_name.to_owned(),
                    key: escape(&key),
                    reason: "a failure record key without a valid id",
                });
                continue;
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
    pub(super) fn counters(
        &mut self,
        name: &str,
        tree: &Tree,
        actual: &BTreeMap<Counter, u64>,
    ) -> Result<(), StoreError> {
        let mut stored = BTreeMap::new();
        for entry in tree.scan_prefix([keys::COUNTER]) {
            let (key, value) = entry.map_err(backend)?;
            match decode_counter(&key, &value) {
                Some((counter, count)) => {
                    stored.insert(counter, count);
                }
                None => self.report.problem(Problem::MalformedCounter {
                    collection: name.to_owned(),
                    key: escape(&key),
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
    pub(super) fn cursors(
        &mut self,
        name: &str,
        tree_name: &str,
        tree: &Tree,
    ) -> Result<(), StoreError> {
        for entry in tree.scan_prefix([keys::CURSOR]) {
            let (key, value) = entry.map_err(backend)?;
            let Ok([keys::CURSOR, a, b, c, d]) = <[u8; 5]>::try_from(&key[..]) else {
                self.report.problem(Problem::MalformedKey {
                    tree: tree_name.to_owned(),
                    key: escape(&key),
                    reason: "a cursor key is `m` and a version",
                });
                continue;
            };
            let reason = match std::str::from_utf8(&value) {
                Err(_) => Some("is not UTF-8"),
                Ok(id) if id::validate(id).is_err() => Some("is not a valid id"),
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                self.report.problem(Problem::InvalidCursor {
                    collection: name.to_owned(),
                    target: u32::from_be_bytes([a, b, c, d]),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Reports progress records that name no run of the ledger.
    pub(super) fn progress_records(
        &mut self,
        store: &Store,
        name: &str,
        tree: &Tree,
    ) -> Result<(), StoreError> {
        let mut ledger = None;
        for entry in tree.scan_prefix([keys::PROGRESS]) {
            let (key, _) = entry.map_err(backend)?;
            let Some(run) = keys::run_of_progress(&key) else {
                self.report.problem(Problem::MalformedKey {
                    tree: format!("{COLLECTION_TREE_PREFIX}{name}"),
                    key: escape(&key),
                    reason: "a progress key is `p` and a run id",
                });
                continue;
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
    pub(super) fn stray_keys(&mut self, tree_name: &str, tree: &Tree) -> Result<(), StoreError> {
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
            match keys::id_of_head(&key).and_then(|id| valid_id(id.as_bytes())) {
                Some(id) => return Ok(Some((id.to_owned(), Head::decode(&value)))),
                None => self.report.problem(Problem::MalformedKey {
                    tree: tree_name.to_owned(),
                    key: escape(&key),
                    reason: "a head key without a valid id",
                }),
            }
        }
        Ok(None)
    }

    /// Checks a document's head against its revisions, and counts it.
    pub(super) fn document(
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
    pub(super) fn chain(
        &mut self,
        collection: &str,
        id: &str,
        revisions: &[(u64, sled::IVec)],
    ) -> Option<(u64, Stored)> {
        let mut expected = 1u64;
        let mut last = None;
        for (revision, bytes) in revisions {
            let revision = *revision;
            self.report.revisions += 1;
            if revision > expected {
                self.report.problem(Problem::MissingRevisions {
                    collection: collection.to_owned(),
                    id: id.to_owned(),
                    from: expected,
                    to: revision - 1,
                });
            }
            expected = revision.saturating_add(1);
            let corrupt = |error: String| Problem::CorruptRevision {
                collection: collection.to_owned(),
                id: id.to_owned(),
                revision,
                error,
            };
            let state = match record::decode(bytes) {
                Err(error) => {
                    self.report.problem(corrupt(error_chain(&error)));
                    Stored::Unreadable
                }
                Ok(envelope) if envelope.revision.get() != revision => {
                    self.report.problem(corrupt(format!(
                        "the envelope names revision {}",
                        envelope.revision
                    )));
                    Stored::Unreadable
                }
                Ok(envelope) => {
                    if envelope.kind == Kind::Document {
                        if let Err(error) =
                            record::decode_payload::<IgnoredAny>(envelope.payload, self.max_depth)
                        {
                            self.report.problem(corrupt(error_chain(&error)));
                        }
                    }
                    Stored::State((envelope.kind == Kind::Document).then_some(envelope.version))
                }
            };
            last = Some((revision, state));
        }
        last
    }

    fn ledger(&mut self, ledger: &Tree) -> Result<(), StoreError> {
        for entry in ledger {
            let (key, value) = entry.map_err(backend)?;
            let error = if ledger_run(&key).is_none() {
                Some("the key is not a collection, a NUL and a run id".to_owned())
            } else {
                record::decode_payload::<IgnoredAny>(&value, 64)
                    .err()
                    .map(|error| error_chain(&error))
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
            let Some((id, revision)) = parse_revision_key(&key) else {
                check.report.problem(Problem::MalformedKey {
                    tree: tree_name.to_owned(),
                    key: escape(&key),
                    reason: "a revision key is `r`, an id, a NUL and a revision number",
                });
                continue;
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

/// `r ‖ id ‖ 0x00 ‖ revision u64 BE` → the id and a revision above 0.
pub(super) fn parse_revision_key(key: &[u8]) -> Option<(&str, u64)> {
    let (&keys::REVISION, rest) = key.split_first()? else {
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

pub(super) fn decode_counter(key: &[u8], value: &[u8]) -> Option<(Counter, u64)> {
    let counter = Counter::from_key(key)?;
    let count = u64::from_be_bytes(value.try_into().ok()?);
    Some((counter, count))
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

/// Whether a failure record names its document's current live head: `Ok` with the head's version
/// if it does, `Err` with the reason if not.
fn current_failure(tree: &Tree, id: &str, bytes: &[u8]) -> Result<Result<u32, String>, StoreError> {
    let failure = match record::decode_payload::<FailureRecord>(bytes, 8) {
        Ok(failure) => failure,
        Err(error) => return Ok(Err(format!("does not decode: {}", error_chain(&error)))),
    };
    let head = tree
        .get(keys::head(id))
        .map_err(backend)?
        .and_then(|bytes| Head::decode(&bytes));
    Ok(match head {
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
        None => Err("names a document without a readable head".to_owned()),
    })
}

// ---------------------------------------------------------------------------------------------
// Repair

fn repair_collection(
    name: &str,
    tree: &Tree,
    memory: Option<&mut Counters>,
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    let mut actual: BTreeMap<Counter, u64> = BTreeMap::new();
    for entry in tree.scan_prefix([keys::HEAD]) {
        let (key, value) = entry.map_err(backend)?;
        // Counted exactly as `verify` counts: heads with a valid id that decode.
        let id = keys::id_of_head(&key).and_then(|id| valid_id(id.as_bytes()));
        if let (Some(_), Some(head)) = (id, Head::decode(&value)) {
            *actual.entry(Counter::of(head)).or_insert(0) += 1;
        }
    }
    let mut batch = sled::Batch::default();
    for entry in tree.scan_prefix([keys::FAILURE]) {
        let (key, value) = entry.map_err(backend)?;
        let current = match key.get(1..).and_then(valid_id) {
            Some(id) => current_failure(tree, id, &value)?,
            None => Err(String::new()),
        };
        if let Ok(version) = current {
            *actual.entry(Counter::Failed(version)).or_insert(0) += 1;
        } else {
            batch.remove(key);
            report.stale_failures_removed += 1;
        }
    }
    let mut stored = BTreeMap::new();
    for entry in tree.scan_prefix([keys::COUNTER]) {
        let (key, value) = entry.map_err(backend)?;
        if let Some((counter, count)) = decode_counter(&key, &value) {
            stored.insert(counter, count);
        } else {
            batch.remove(key);
            report.malformed_counters_removed += 1;
        }
    }
    let counters: BTreeSet<Counter> = stored.keys().chain(actual.keys()).copied().collect();
    for counter in counters {
        let before = stored.get(&counter).copied().unwrap_or(0);
        let after = actual.get(&counter).copied().unwrap_or(0);
        if before != after {
            batch.insert(&counter.key()[..], &after.to_be_bytes()[..]);
            report.counters.push(CounterChange {
                collection: name.to_owned(),
                counter: counter.into(),
                before,
                after,
            });
        }
    }
    tree.apply_batch(batch).map_err(backend)?;
    if let Some(memory) = memory {
        let mut fresh = Counters::default();
        for (counter, count) in actual {
            fresh.insert(counter, count);
        }
        *memory = fresh;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

pub(super) fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// An error and its sources, joined by `: `.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::backup::*;
    use super::*;
    use crate::id::Revision;
    use crate::{DocId, StepError};
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use std::path::Path;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct Note {
        text: String,
    }

    impl crate::Schema for Note {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, StepError> {
            Ok(previous)
        }
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

    impl crate::Schema for TaskV1 {
        const COLLECTION: &'static str = "tasks";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, StepError> {
            Ok(previous)
        }
    }

    /// Titles starting with `fail` do not migrate.
    impl crate::Schema for TaskV2 {
        const COLLECTION: &'static str = "tasks";
        const VERSION: u32 = 2;
        type Previous = TaskV1;
        fn upgrade(previous: TaskV1) -> Result<Self, StepError> {
            if previous.title.starts_with("fail") {
                return Err(StepError::new("deliberate failure"));
            }
            Ok(TaskV2 {
                title: previous.title,
                done: false,
            })
        }
    }

    fn note(text: &str) -> Note {
        Note { text: text.into() }
    }

    /// A store with notes (one updated, one removed) and tasks at version 1.
    pub(in crate::store) fn populate(store: &Store) -> (Vec<DocId>, Vec<DocId>) {
        let notes = store.collection::<Note>().unwrap();
        let ids = notes
            .insert_many(&[note("a"), note("b"), note("c")])
            .unwrap();
        notes.update(&ids[0], &note("a2")).unwrap();
        notes.remove(&ids[1]).unwrap();
        let tasks = store.collection::<TaskV1>().unwrap();
        let task_ids = ["ok 1", "ok 2", "fail 3"]
            .iter()
            .map(|title| {
                tasks
                    .insert(&TaskV1 {
                        title: (*title).into(),
                    })
                    .unwrap()
            })
            .collect();
        (ids, task_ids)
    }

    /// A store at `dir` whose tasks were migrated to version 2 (one failed), closed again.
    pub(in crate::store) fn migrated_store(dir: &Path) -> (Vec<DocId>, Vec<DocId>) {
        let ids = {
            let store = Store::open(dir).unwrap();
            populate(&store)
        };
        let store = Store::open(dir).unwrap();
        let tasks = store.collection::<TaskV2>().unwrap();
        let report = tasks.migrate().execute().unwrap();
        assert_eq!((report.migrated, report.failed), (2, 1));
        ids
    }

    fn tree(store: &Store, name: &str) -> Tree {
        store
            .sled()
            .unwrap()
            .db()
            .open_tree(format!("c/{name}"))
            .unwrap()
    }

    fn kinds(report: &VerifyReport) -> Vec<&'static str> {
        report
            .problems
            .iter()
            .map(|problem| match problem {
                Problem::MalformedKey { .. } => "malformed_key",
                Problem::MalformedHead { .. } => "malformed_head",
                Problem::CorruptRevision { .. } => "corrupt_revision",
                Problem::MissingRevisions { .. } => "missing_revisions",
                Problem::RevisionsWithoutHead { .. } => "revisions_without_head",
                Problem::HeadNotLast { .. } => "head_not_last",
                Problem::HeadStateMismatch { .. } => "head_state_mismatch",
                Problem::CounterMismatch { .. } => "counter_mismatch",
                Problem::MalformedCounter { .. } => "malformed_counter",
                Problem::StaleFailure { .. } => "stale_failure",
                Problem::InvalidCursor { .. } => "invalid_cursor",
                Problem::OrphanProgress { .. } => "orphan_progress",
                Problem::CorruptMeta { .. } => "corrupt_meta",
                Problem::CorruptLedger { .. } => "corrupt_ledger",
                Problem::UnregisteredCollection { .. } => "unregistered_collection",
                Problem::IncompleteImport => "incomplete_import",
                Problem::Unreadable { .. } => "unreadable",
                Problem::UnreadableHead { .. } => "unreadable_head",
                Problem::UnreadableRevision { .. } => "unreadable_revision",
                Problem::Unaccounted { .. } => "unaccounted",
            })
            .collect()
    }

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

    #[test]
    fn stats_read_the_counters() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let stats = store.stats().unwrap();
        let names: Vec<_> = stats.collections.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["notes", "tasks"]);
        let tasks = &stats.collections[1];
        assert_eq!(tasks.newest_version, 2);
        assert_eq!(tasks.live, BTreeMap::from([(1, 1), (2, 2)]));
        assert_eq!(tasks.failed, BTreeMap::from([(1, 1)]));
        assert_eq!(stats.collections[0].removed, 1);
        assert_eq!(stats.collections[0].documents(), 2);
        assert!(stats.size_on_disk > 0);
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

    #[test]
    fn repair_recomputes_counters_and_drops_stale_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (_, tasks) = migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let t = tree(&store, "tasks");
        t.insert(Counter::Live(2).key(), &40u64.to_be_bytes()[..])
            .unwrap();
        t.insert(Counter::Failed(5).key(), &3u64.to_be_bytes()[..])
            .unwrap();
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
        let report = store.verify().unwrap();
        assert!(!report.is_ok());
        assert!(report.problems.iter().all(Problem::is_repairable));

        let repair = store.repair_counters().unwrap();
        assert_eq!(repair.stale_failures_removed, 1);
        let mut changed: Vec<_> = repair
            .counters
            .iter()
            .map(|c| (c.counter, c.before, c.after))
            .collect();
        changed.sort_unstable();
        assert_eq!(
            changed,
            [
                (CounterKind::Live { version: 2 }, 40, 2),
                (CounterKind::Failed { version: 1 }, 1, 0),
                (CounterKind::Failed { version: 5 }, 3, 0),
            ]
        );
        assert!(store.verify().unwrap().is_ok());
        // The in-memory counters follow: the collection reports the repaired counts.
        let raw = store.raw_collection("tasks").unwrap();
        assert_eq!(
            raw.count_by_version().unwrap(),
            BTreeMap::from([(1, 1), (2, 2)])
        );
        // The failed document is pending again.
        let stats = store.stats().unwrap();
        assert!(stats.collections[1].failed.is_empty());
    }

    #[test]
    fn a_malformed_counter_is_verified_and_repaired_without_opening_the_collection() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("c/notes")
                .unwrap()
                .insert(Counter::Live(1).key(), &[1u8][..])
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.raw_collection("notes"),
            Err(StoreError::Corrupt { .. })
        ));
        let report = store.verify().unwrap();
        assert!(kinds(&report).contains(&"malformed_counter"), "{report:#?}");
        let repair = store.repair_counters().unwrap();
        assert_eq!(repair.malformed_counters_removed, 1);
        assert!(store.verify().unwrap().is_ok());
        let raw = store.raw_collection("notes").unwrap();
        assert_eq!(raw.count_by_version().unwrap(), BTreeMap::from([(1, 2)]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn verify_never_panics_on_arbitrary_keys_and_values(
            entries in proptest::collection::vec(
                (
                    prop_oneof![
                        Just(b'h'), Just(b'r'), Just(b'c'), Just(b'f'), Just(b'm'), any::<u8>()
                    ],
                    proptest::collection::vec(any::<u8>(), 0..24),
                    proptest::collection::vec(any::<u8>(), 0..40),
                ),
                0..24,
            )
        ) {
            let store = Store::temporary().unwrap();
            populate(&store);
            let t = tree(&store, "notes");
            for (space, rest, value) in entries {
                let mut key = vec![space];
                key.extend(rest);
                t.insert(key, value).unwrap();
            }
            let report = store.verify().unwrap();
            let _ = store.repair_counters().unwrap();
            let after = store.verify().unwrap();
            prop_assert!(after.problems.iter().all(|p| !p.is_repairable()), "{:#?} then {:#?}", report, after);
        }
    }
}
