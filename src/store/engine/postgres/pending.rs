//! Reading in id order a page at a time: the heads of a collection, and the documents pending a
//! migration, claimed per source version through `revolve_heads_by_version` with a keyset
//! (`id > last`), never a sort of every pending row or a walk from the start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use postgres::Row;

use super::error::db;
use super::Shared;
use crate::id::Revision;
use crate::record::RecordError;
use crate::store::engine::{Head, Pending, PendingChunk, PendingDocument, Position, Stamp};
use crate::store::StoreError;

/// Heads read per page.
const PAGE: i64 = 1000;

const HEADS: &str = "SELECT id, revision, version, removed FROM revolve_heads
     WHERE collection = $1 AND id > $2 AND ($3 OR NOT removed)
     ORDER BY id LIMIT $4";

/// The next pending heads of one version after `$3` (up to `$6` when given), with their
/// revisions' bytes and, when retrying (`$5`), whether a failure record names them; a known
/// failure is left out unless retrying. One failure look-up per row: `NOT EXISTS` to leave known
/// failures out, or, retrying, `EXISTS` to flag them (the boolean operators stop at `$5`).
///
/// The keyset is a row comparison, which the primary key cannot serve, and the version is
/// bounded by `<=`, not `=`: with `version = $2` beside it, the index scan would start at the
/// version's first entry and step over every entry a run already migrated (dead until a vacuum)
/// at every chunk. The revision and the failure are looked up per row by subqueries, which the
/// planner never turns into joins here (the `OR` keeps the failure's from becoming an
/// anti-join): a merge join would walk the revisions (or failures) of the collection from its
/// first id at every chunk.
const PENDING: &str = "SELECT h.id, h.revision, h.version,
         (SELECT r.record FROM revolve_revisions r
          WHERE r.collection = h.collection AND r.id = h.id AND r.revision = h.revision),
         $5 AND EXISTS (SELECT 1 FROM revolve_failures f
                        WHERE f.collection = h.collection AND f.id = h.id)
     FROM revolve_heads h
     WHERE h.collection = $1 AND NOT h.removed AND (h.version, h.id) > ($2, $3) AND h.version <= $2
       AND ($6::text IS NULL OR h.id <= $6)
       AND ($5 OR NOT EXISTS (SELECT 1 FROM revolve_failures f
                              WHERE f.collection = h.collection AND f.id = h.id))
     ORDER BY h.version, h.id LIMIT $4";

/// [`PENDING`] for a collection without failure records when the run began (the common case):
/// no failure lookups. A failure recorded during the run names a document the run has already
/// passed, so none can be missed.
const PENDING_WITHOUT_FAILURES: &str = "SELECT h.id, h.revision, h.version,
         (SELECT r.record FROM revolve_revisions r
          WHERE r.collection = h.collection AND r.id = h.id AND r.revision = h.revision),
         false
     FROM revolve_heads h
     WHERE h.collection = $1 AND NOT h.removed AND (h.version, h.id) > ($2, $3) AND h.version <= $2
       AND ($6::text IS NULL OR h.id <= $6) AND ($5 OR true)
     ORDER BY h.version, h.id LIMIT $4";

/// Whether the collection has any failure record.
pub(crate) const ANY_FAILURE: &str =
    "SELECT EXISTS (SELECT 1 FROM revolve_failures WHERE collection = $1)";

/// Where the last run towards a target stopped.
pub(crate) const POSITION: &str =
    "SELECT position FROM revolve_positions WHERE collection = $1 AND target = $2";

/// The versions below `target` that live documents are at, oldest first.
pub(crate) const VERSIONS: &str = "SELECT version FROM revolve_counts
     WHERE collection = $1 AND counter = 0 AND version < $2
     GROUP BY version HAVING sum(n) > 0 ORDER BY version";

/// A head read from a row: `id, revision, version, removed`.
pub(crate) fn head(collection: &str, row: &Row, at: usize) -> Result<Head, StoreError> {
    let malformed = |id: &str| StoreError::Corrupt {
        collection: collection.to_owned(),
        id: id.to_owned(),
        revision: None,
        source: RecordError::InvalidHeader("malformed head"),
    };
    let revision: i64 = row.get(at);
    let version: i32 = row.get(at + 1);
    let removed: bool = row.get(at + 2);
    let revision = u64::try_from(revision).ok().and_then(Revision::new);
    let version = u32::try_from(version).ok();
    match (revision, version) {
        (Some(revision), Some(version)) => Ok(Head {
            revision,
            version,
            removed,
        }),
        _ => Err(malformed(row.get(0))),
    }
}

/// The heads of a collection in id order, a page at a time.
pub(crate) struct HeadPages {
    shared: Arc<Shared>,
    name: String,
    collection: i32,
    last: String,
    removed: bool,
    page: VecDeque<Result<(String, Head), StoreError>>,
    done: bool,
}

impl HeadPages {
    pub(crate) fn new(
        shared: Arc<Shared>,
        (name, collection): (&str, i32),
        after: Option<&str>,
        removed: bool,
    ) -> Self {
        Self {
            shared,
            name: name.to_owned(),
            collection,
            last: after.unwrap_or("").to_owned(),
            removed,
            page: VecDeque::new(),
            done: false,
        }
    }

    fn fill(&mut self) -> Result<(), StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(HEADS)?;
        let rows = conn
            .client
            .query(
                &statement,
                &[&self.collection, &self.last, &self.removed, &PAGE],
            )
            .map_err(db)?;
        self.done = rows.len() < usize::try_from(PAGE).unwrap_or(usize::MAX);
        for row in &rows {
            let id: String = row.get(0);
            let entry = head(&self.name, row, 1).map(|head| (id.clone(), head));
            self.last = id;
            self.page.push_back(entry);
        }
        Ok(())
    }
}

impl Iterator for HeadPages {
    type Item = Result<(String, Head), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            if let Err(error) = self.fill() {
                self.done = true;
                return Some(Err(error));
            }
        }
        self.page.pop_front()
    }
}

/// What is left to read: per segment, a version, the id the next read starts after, and the
/// last id it may take.
type Segments = VecDeque<(i32, String, Option<String>)>;

/// Pending documents on PostgreSQL: per source version, oldest first, in id order from where
/// the last run stopped; then, per version again, from the first id round to that position.
///
/// Each chunk handed out starts the read of the next one on a thread of its own (a connection
/// of the pool), so that it overlaps the caller's commit of the chunk before, which mostly
/// waits for the server; the read is only a read, so one the caller does not take as it is (a
/// smaller limit, an error) is dropped and read again.
pub(crate) struct PgPending {
    reader: Arc<Reader>,
    segments: Segments,
    ahead: Option<Ahead>,
}

/// How a run reads its pending documents.
struct Reader {
    shared: Arc<Shared>,
    name: String,
    collection: i32,
    retry: bool,
    /// Whether the collection had failure records when the run began.
    failures: bool,
}

/// The next chunk, being read.
struct Ahead {
    limit: usize,
    read: JoinHandle<Result<(Vec<PendingDocument>, Segments), StoreError>>,
}

impl PgPending {
    pub(crate) fn new(
        shared: Arc<Shared>,
        (name, collection): (&str, i32),
        (versions, position): (Vec<i32>, Option<String>),
        (retry, failures): (bool, bool),
    ) -> Self {
        let start = position.clone().unwrap_or_default();
        let mut segments: Segments = versions
            .iter()
            .map(|&version| (version, start.clone(), None))
            .collect();
        if let Some(position) = position {
            segments.extend(
                versions
                    .iter()
                    .map(|&version| (version, String::new(), Some(position.clone()))),
            );
        }
        Self {
            reader: Arc::new(Reader {
                shared,
                name: name.to_owned(),
                collection,
                retry,
                failures,
            }),
            segments,
            ahead: None,
        }
    }

    /// Starts reading the chunk after the one just handed out; without a thread, it is read
    /// when asked for.
    fn read_ahead(&mut self, limit: usize) {
        let reader = Arc::clone(&self.reader);
        let segments = self.segments.clone();
        let spawned = std::thread::Builder::new()
            .name("revolve-read-ahead".to_owned())
            .spawn(move || reader.read(segments, limit));
        if let Ok(read) = spawned {
            self.ahead = Some(Ahead { limit, read });
        }
    }
}

impl Reader {
    /// Up to `limit` pending documents from `segments`, and what is left to read after them.
    fn read(
        &self,
        mut segments: Segments,
        limit: usize,
    ) -> Result<(Vec<PendingDocument>, Segments), StoreError> {
        let mut documents = Vec::with_capacity(limit);
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(if self.failures {
            PENDING
        } else {
            PENDING_WITHOUT_FAILURES
        })?;
        while documents.len() < limit {
            let Some((version, after, until)) = segments.front().cloned() else {
                break;
            };
            let want = limit - documents.len();
            let rows = conn
                .client
                .query(
                    &statement,
                    &[
                        &self.collection,
                        &version,
                        &after,
                        &i64::try_from(want).unwrap_or(i64::MAX),
                        &self.retry,
                        &until,
                    ],
                )
                .map_err(db)?;
            if rows.len() < want {
                segments.pop_front();
            }
            for row in &rows {
                documents.push(pending_document(&self.name, row)?);
            }
            if rows.len() == want {
                if let (Some(segment), Some(last)) = (segments.front_mut(), rows.last()) {
                    segment.1 = last.get(0);
                }
            }
        }
        Ok((documents, segments))
    }
}

/// A pending head's row (id, revision, version, the revision's record, whether a failure record
/// names it) as a document; [`StoreError::Corrupt`] for a revision or version out of range.
pub(super) fn pending_document(
    collection: &str,
    row: &postgres::Row,
) -> Result<PendingDocument, StoreError> {
    let id: String = row.get(0);
    let (Some(revision), Some(version)) = (
        u64::try_from(row.get::<_, i64>(1))
            .ok()
            .and_then(Revision::new),
        u32::try_from(row.get::<_, i32>(2)).ok(),
    ) else {
        return Err(StoreError::Corrupt {
            collection: collection.to_owned(),
            id,
            revision: None,
            source: RecordError::InvalidHeader("malformed head"),
        });
    };
    Ok(PendingDocument {
        head: Head {
            revision,
            version,
            removed: false,
        },
        bytes: row.get(3),
        known_failed: row.get(4),
        id,
    })
}

impl Pending for PgPending {
    fn next_chunk(&mut self, limit: usize) -> Result<Option<PendingChunk>, StoreError> {
        let ahead = match self.ahead.take() {
            Some(Ahead {
                limit: read,
                read: handle,
            }) if read == limit => handle.join().ok(),
            Some(Ahead { read: handle, .. }) => {
                let _ = handle.join();
                None
            }
            None => None,
        };
        let (documents, segments) = match ahead {
            Some(Ok(read)) => read,
            // A read ahead that failed is read again, here, where its error counts.
            Some(Err(_)) | None => self.reader.read(self.segments.clone(), limit)?,
        };
        self.segments = segments;
        let Some(last) = documents.last() else {
            return Ok(None);
        };
        let position = Position(last.id.as_bytes().to_vec());
        if !self.segments.is_empty() {
            self.read_ahead(limit);
        }
        Ok(Some(PendingChunk {
            documents,
            position,
            stamp: Stamp(0),
        }))
    }
}

impl Drop for PgPending {
    fn drop(&mut self) {
        // The read holds a connection of the store's pool: done before the store may close.
        if let Some(ahead) = self.ahead.take() {
            let _ = ahead.read.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Schema, StepError, Store};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
    struct Note {
        n: u32,
    }

    impl Schema for Note {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, StepError> {
            Ok(previous)
        }
    }

    /// The plan of a pending claim: an index scan of the version index in id order, with no
    /// sort, no scan of the heads table, and revisions and failures looked up per row (a merge
    /// or hash join would read them from the collection's first id at every chunk).
    #[test]
    fn pending_documents_are_claimed_through_the_version_index_without_a_sort_or_a_join() {
        let Some(url) = super::super::test_url() else {
            return;
        };
        let schema = format!("plan_{}", std::process::id());
        let store = Store::builder().url(&url).schema(&schema).open().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let values: Vec<Note> = (0..10_000).map(|n| Note { n }).collect();
        notes.insert_many(&values).unwrap();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\"; ANALYZE"))
            .unwrap();
        // Custom plans (the values known) and the generic plan a prepared statement may switch
        // to after five executions.
        let cases = [
            (PENDING, "pending", "auto"),
            (PENDING, "pending, generic plan", "force_generic_plan"),
            (PENDING_WITHOUT_FAILURES, "pending (no failures)", "auto"),
            (
                PENDING_WITHOUT_FAILURES,
                "pending (no failures), generic plan",
                "force_generic_plan",
            ),
        ];
        for (sql, what, mode) in cases {
            client
                .batch_execute(&format!("SET plan_cache_mode = {mode}"))
                .unwrap();
            let statement = client.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let plan: Vec<String> = client
                .query(
                    &statement,
                    &[&1i32, &1i32, &"", &1000i64, &false, &None::<String>],
                )
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            let plan = plan.join("\n");
            assert!(
                plan.contains("revolve_heads_by_version"),
                "{what} does not use the version index:\n{plan}"
            );
            assert!(!plan.contains("Sort"), "{what} sorts:\n{plan}");
            assert!(
                !plan.contains("Merge") && !plan.contains("Hash"),
                "{what} joins revisions or failures wholesale:\n{plan}"
            );
            assert!(
                !plan.contains("Seq Scan on revolve_heads"),
                "{what} scans every head:\n{plan}"
            );
        }

        // Half the documents moved on to version 2 (their version-1 index entries dead until a
        // vacuum): a claim from the middle reads a few pages, not every entry before it.
        client
            .batch_execute(
                "SET plan_cache_mode = auto;
                 UPDATE revolve_heads SET version = 2, revision = revision + 1
                 WHERE id < (SELECT id FROM revolve_heads ORDER BY id OFFSET 5000 LIMIT 1)",
            )
            .unwrap();
        let middle: String = client
            .query_one(
                "SELECT id FROM revolve_heads WHERE version = 1 ORDER BY id LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        let statement = client
            .prepare(&format!("EXPLAIN (ANALYZE, BUFFERS) {PENDING}"))
            .unwrap();
        let plan: Vec<String> = client
            .query(
                &statement,
                &[&1i32, &1i32, &middle, &1i64, &false, &None::<String>],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let pages: u64 = plan
            .iter()
            .find_map(|line| line.trim().strip_prefix("Buffers: shared "))
            .map(|counts| {
                counts
                    .split_whitespace()
                    .filter_map(|count| count.split_once('=')?.1.parse::<u64>().ok())
                    .sum()
            })
            .unwrap();
        assert!(
            pages < 20,
            "a claim from the middle read {pages} pages:\n{}",
            plan.join("\n")
        );
        drop(notes);
        drop(store);
        client
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .unwrap();
    }
}
