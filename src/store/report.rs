//! The reports of the maintenance jobs: what [`Store::verify`](crate::Store::verify) found and
//! what [`Store::repair_counters`](crate::Store::repair_counters) changed.
//!
//! These are protocol types: they name collections, documents, revisions and key spaces, never
//! the storage engine, so that every engine reports in the same terms.

use std::fmt;

use serde::Serialize;

use super::counters::Counter;
use super::{Store, StoreError};

/// A key space of the store: where a key that does not parse was found, as
/// [`Problem::MalformedKey`](crate::Problem::MalformedKey) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeySpace {
    /// `_meta`: one record per collection, keyed by its name.
    Meta,
    /// `_ledger`: one record per migration run, keyed by its collection and run id.
    Ledger,
    /// A collection's heads: `h ‖ id`.
    Heads,
    /// A collection's revisions: `r ‖ id ‖ 0x00 ‖ revision`.
    Revisions,
    /// A collection's counters: `c ‖ class ‖ version`.
    Counters,
    /// A collection's migration failure records: `f ‖ id`.
    Failures,
    /// A collection's migration cursors: `m ‖ target version`.
    Cursors,
    /// A collection's migration progress records: `p ‖ run id`.
    Progress,
    /// Outside every key space of its tree.
    Unknown,
}

impl fmt::Display for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySpace::Meta => "collection record",
            KeySpace::Ledger => "ledger",
            KeySpace::Heads => "head",
            KeySpace::Revisions => "revision",
            KeySpace::Counters => "counter",
            KeySpace::Failures => "failure record",
            KeySpace::Cursors => "migration cursor",
            KeySpace::Progress => "progress record",
            KeySpace::Unknown => "unknown",
        })
    }
}

/// How often a walk (verify, export, import) reports progress, in items.
pub(crate) const PROGRESS_EVERY: u64 = 1024;

/// How many problems a [`VerifyReport`] lists; [`VerifyReport::problem_count`] counts them all.
pub const MAX_REPORTED_PROBLEMS: usize = 1000;

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
        /// The key space it was found in; [`KeySpace::Unknown`] when it fits none.
        space: KeySpace,
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
        /// What is wrong with it: its key or its value.
        reason: &'static str,
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
            Problem::MalformedKey {
                tree,
                space: KeySpace::Unknown,
                key,
                reason,
            } => write!(f, "`{tree}`: malformed key {key}: {reason}"),
            Problem::MalformedKey {
                tree,
                space,
                key,
                reason,
            } => write!(f, "`{tree}`: malformed {space} key {key}: {reason}"),
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
            Problem::MalformedCounter {
                collection,
                key,
                reason,
            } => write!(f, "`{collection}`: malformed counter {key}: {reason}"),
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
    /// Heads left out of the counters because their key or value does not decode: repair never
    /// changes heads, and [`Store::verify`] names them ([`Problem::MalformedKey`],
    /// [`Problem::MalformedHead`]).
    pub uncounted_heads: u64,
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

impl Store {
    /// Checks every collection: every revision of every document decodes (envelope and
    /// MessagePack payload), each document's revisions count 1, 2, 3, … without gaps, every head
    /// names its last revision with the same version and removed flag, the counters equal what the
    /// heads and failure records say, every failure record names its document's current head, and
    /// every migration cursor is a valid id. Also checks `_meta` and `_ledger` records decode.
    ///
    /// Reads everything, so it takes as long as reading the whole database. On sled each
    /// collection is walked under its write lock, so writes to it wait meanwhile; on PostgreSQL
    /// the whole store is read in one snapshot and writers go on. Problems are reported, never
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
    /// `progress` may run while a collection's write lock is held (sled): it must not write to
    /// the store.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub fn verify_with_progress(
        &self,
        mut progress: impl FnMut(u64),
    ) -> Result<VerifyReport, StoreError> {
        self.inner().engine.verify(self, &mut progress)
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
        self.inner().engine.repair_counters(self)
    }
}

/// A key as a report shows it: non-printable bytes escaped.
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

/// What the newest revision of a document's chain says, as [`check_chain`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// The envelope does not decode.
    Unreadable,
    /// At this version; `None` for a removal.
    State(Option<u32>),
}

/// Decodes a document's revisions (number and stored bytes, oldest first) and checks they count
/// up from 1 without gaps, reporting what is wrong; returns the last revision's number and what
/// its envelope says. Every engine's `verify` walks its chains through this.
pub(crate) fn check_chain<'a>(
    report: &mut VerifyReport,
    max_depth: usize,
    (collection, id): (&str, &str),
    revisions: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Option<(u64, Stored)> {
    use crate::error::format::chain as error_chain;
    use crate::record::{self, Kind};

    let mut expected = 1u64;
    let mut last = None;
    for (revision, bytes) in revisions {
        report.revisions += 1;
        if revision > expected {
            report.problem(Problem::MissingRevisions {
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
                report.problem(corrupt(error_chain(&error)));
                Stored::Unreadable
            }
            Ok(envelope) if envelope.revision.get() != revision => {
                report.problem(corrupt(format!(
                    "the envelope names revision {}",
                    envelope.revision
                )));
                Stored::Unreadable
            }
            Ok(envelope) => {
                if envelope.kind == Kind::Document {
                    if let Err(error) =
                        record::decode_payload::<serde::de::IgnoredAny>(envelope.payload, max_depth)
                    {
                        report.problem(corrupt(error_chain(&error)));
                    }
                }
                Stored::State((envelope.kind == Kind::Document).then_some(envelope.version))
            }
        };
        last = Some((revision, state));
    }
    last
}
