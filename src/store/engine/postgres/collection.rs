//! One collection on PostgreSQL. A commit is one transaction: the newest registered version
//! read, heads moved only where they are still what the items saw (`UPDATE … WHERE revision =
//! seen`, `INSERT … ON CONFLICT DO NOTHING`), the revisions inserted, failure records cleared or
//! written, the count deltas added last, in key order, to this connection's shard.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use postgres::{Statement, Transaction};

use super::error::{db, retryable};
use super::lease::{self, Lease};
use super::pending::{self, HeadPages, PgPending};
use super::pool::Conn;
use super::{sql_run, Shared};
use crate::id::Revision;
use crate::record::{self, RecordError};
use crate::store::counters::{Counter, Counters};
use crate::store::engine::{
    refuse_older, Action, Bytes, ChunkItem, CollectionEngine, Commit, FailureRecord, Head, Heads,
    Joined, Outcome, Pending, Prepared, RunLease, RunSettings, Seen, WorkerInfo, WorkerRow,
};
use crate::store::error::BackendError;
use crate::store::StoreError;

const HEAD: &str =
    "SELECT revision, version, removed FROM revolve_heads WHERE collection = $1 AND id = $2";
const REVISION: &str =
    "SELECT record FROM revolve_revisions WHERE collection = $1 AND id = $2 AND revision = $3";
const REVISIONS: &str = "SELECT record FROM revolve_revisions
     WHERE collection = $1 AND id = $2 AND revision > $3 ORDER BY revision LIMIT $4";
const COUNTS: &str = "SELECT counter, version, sum(n)::bigint FROM revolve_counts
     WHERE collection = $1 GROUP BY counter, version";
const NEWEST: &str = "SELECT newest FROM revolve_collections WHERE id = $1";
/// The newest registered version, and whether the run `$2` (if a run commits) still holds the
/// collection's lease: a run's chunk commits only while it does, and the share lock taken on the
/// lease row keeps another run from taking it over until the chunk is committed.
const BEGIN: &str = "SELECT c.newest, EXISTS (SELECT 1 FROM (SELECT 1 FROM revolve_run_leases l
         WHERE l.collection = $1 AND l.run = $2 FOR SHARE) AS held)
     FROM revolve_collections c WHERE c.id = $1";
const REGISTERED: &str = "UPDATE revolve_collections SET newest = $2 WHERE id = $1 AND newest < $2";
/// The heads moved, where they are as the writer saw them. `h.id = ANY($2)` besides the join:
/// the heads are found by their ids in the primary key whatever the planner thinks of the
/// table (with statistics missing or stale, as after a bulk load and a restart, it would hash
/// the whole collection for every statement).
const MOVE: &str = "UPDATE revolve_heads h
     SET revision = u.revision, version = u.version, removed = u.removed
     FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int4[], $6::bool[])
         AS u(id, seen, revision, version, removed)
     WHERE h.collection = $1 AND h.id = ANY($2) AND h.id = u.id AND h.revision = u.seen
     RETURNING h.id";
const CREATE: &str = "INSERT INTO revolve_heads (collection, id, revision, version, removed)
     SELECT $1, u.id, u.revision, u.version, u.removed
     FROM unnest($2::text[], $3::int8[], $4::int4[], $5::bool[]) AS u(id, revision, version, removed)
     ON CONFLICT (collection, id) DO NOTHING
     RETURNING id";
/// The heads named (by their ids, as in [`MOVE`]) that are as the writer saw them, locked.
const LOCK: &str = "SELECT h.id FROM revolve_heads h
     JOIN unnest($2::text[], $3::int8[]) AS u(id, seen) ON h.id = u.id
     WHERE h.collection = $1 AND h.id = ANY($2) AND h.revision = u.seen
     ORDER BY h.id FOR UPDATE OF h";
const CHECK: &str = "SELECT h.id FROM revolve_heads h
     JOIN unnest($2::text[], $3::int8[]) AS u(id, seen) ON h.id = u.id
     WHERE h.collection = $1 AND h.id = ANY($2) AND h.revision = u.seen";
const EXISTING: &str = "SELECT id FROM revolve_heads WHERE collection = $1 AND id = ANY($2)";
/// The revisions inserted, and the failure records of the documents written or failed cleared
/// (a write changes the document, so a recorded migration failure no longer holds; a new failure
/// replaces the old): one statement, one round trip.
const REVISIONS_INSERT: &str = "WITH inserted AS (
         INSERT INTO revolve_revisions (collection, id, revision, record)
         SELECT $1, u.id, u.revision, u.record
         FROM unnest($2::text[], $3::int8[], $4::bytea[]) AS u(id, revision, record))
     DELETE FROM revolve_failures WHERE collection = $1 AND id = ANY($5) RETURNING version";
const FAILURES_INSERT: &str = "INSERT INTO revolve_failures (collection, id, version, run, record)
     SELECT $1, u.id, u.version, u.run, u.record
     FROM unnest($2::text[], $3::int4[], $4::int8[], $5::bytea[]) AS u(id, version, run, record)";
/// The run's position and progress record (when given), and the count deltas, added in key
/// order to this connection's shard: one statement, the commit's last (the count rows are the
/// most contended, so their locks are taken last and held shortest).
const FINISH: &str = "WITH position AS (
         INSERT INTO revolve_positions (collection, target, position)
         SELECT $1, $2, $3 WHERE $3::text IS NOT NULL
         ON CONFLICT (collection, target) DO UPDATE SET position = excluded.position),
     progress AS (
         INSERT INTO revolve_progress (collection, run, record)
         SELECT $1, $4, $5 WHERE $5::bytea IS NOT NULL
         ON CONFLICT (collection, run) DO UPDATE SET record = excluded.record)
     INSERT INTO revolve_counts (collection, counter, version, shard, n)
     SELECT $1, u.counter, u.version, (pg_backend_pid() % 16)::int2, u.n
     FROM unnest($6::int2[], $7::int4[], $8::int8[]) AS u(counter, version, n)
     ORDER BY u.counter, u.version
     ON CONFLICT (collection, counter, version, shard) DO UPDATE SET n = revolve_counts.n + excluded.n";
const PROGRESS: &str = "SELECT record FROM revolve_progress WHERE collection = $1 AND run = $2";
const PROGRESS_FORGET: &str = "DELETE FROM revolve_progress WHERE collection = $1 AND run = $2";
const PROGRESS_RUNS: &str = "SELECT run FROM revolve_progress WHERE collection = $1 ORDER BY run";
const FAILURES: &str = "SELECT id, record FROM revolve_failures
     WHERE collection = $1 AND id > $2 ORDER BY id LIMIT $3";
const FAILURES_OF_RUN: &str = "SELECT id, record FROM revolve_failures
     WHERE collection = $1 AND run = $2 AND id > $3 ORDER BY id LIMIT $4";

/// The PostgreSQL engine of one collection.
pub(crate) struct PgCollection {
    pub(crate) name: String,
    /// The collection's row in `revolve_collections`.
    pub(crate) id: i32,
    pub(crate) shared: Arc<Shared>,
}

impl PgCollection {
    pub(crate) fn new(name: String, id: i32, shared: Arc<Shared>) -> Self {
        Self { name, id, shared }
    }

    fn corrupt(&self, id: &str, revision: Option<Revision>, source: RecordError) -> StoreError {
        StoreError::Corrupt {
            collection: self.name.clone(),
            id: id.to_owned(),
            revision,
            source,
        }
    }

    fn encode_error(&self, source: RecordError) -> StoreError {
        StoreError::Encode {
            collection: self.name.clone(),
            source,
        }
    }

    /// One attempt at a commit, in one transaction.
    fn try_commit(
        &self,
        items: &[ChunkItem],
        commit: &mut Commit<'_>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let (client, statements) = Statements::prepare(&mut conn)?;
        let mut tx = client.transaction().map_err(db)?;
        if commit.dry_run {
            return self.dry_run(&mut tx, &statements, items);
        }
        let run = commit.progress.as_ref().map(|progress| progress.run);
        let row = tx
            .query_one(
                &statements.begin,
                &[&self.id, &run.map(sql_run).transpose()?],
            )
            .map_err(db)?;
        refuse_older(
            &self.name,
            u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
            commit.writer,
        )?;
        if let Some(run) = run {
            if !row.get::<_, bool>(1) {
                return Err(StoreError::RunLeaseLost {
                    collection: self.name.clone(),
                    run,
                });
            }
        }
        let applied = self.claim(&mut tx, &statements, items)?;
        let mut writes = self.gather(items, &applied)?;
        self.write(&mut tx, &statements, &mut writes, commit)?;
        let lost = if writes.revision_ids.is_empty() {
            None
        } else {
            crate::fault::lost_reply(&self.name)
        };
        let result = match lost {
            None => tx.commit().map_err(db),
            Some(applied) => {
                if applied {
                    tx.commit().map_err(db)?;
                } else {
                    drop(tx); // rolls back
                }
                Err(StoreError::ConnectionLost {
                    source: BackendError::new(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the reply to COMMIT was lost (fault injection)",
                    )),
                })
            }
        };
        // Back to the pool (a broken one is dropped there) before finding out what became of
        // the commit, which takes a connection of its own.
        drop(conn);
        match result {
            Ok(()) => Ok(writes.outcomes),
            // The outcome is unknown: the revision the commit wrote says whether it applied.
            Err(error @ StoreError::ConnectionLost { .. })
                if !writes.revision_ids.is_empty()
                    && self.committed(items, &writes.outcomes)? =>
            {
                tracing::warn!(
                    collection = %self.name,
                    error = %crate::error::format::chain(&error),
                    "the connection dropped during COMMIT; the commit had applied"
                );
                Ok(writes.outcomes)
            }
            Err(error) => Err(error),
        }
    }

    /// A dry run's outcomes: which items still see what they saw; nothing written or locked.
    fn dry_run(
        &self,
        tx: &mut Transaction<'_>,
        statements: &Statements,
        items: &[ChunkItem],
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut kept = HashSet::new();
        let (ids, seen) = seen_heads(items, |_| true);
        if !ids.is_empty() {
            for row in tx
                .query(&statements.checking, &[&self.id, &ids, &seen])
                .map_err(db)?
            {
                kept.insert(row.get::<_, String>(0));
            }
        }
        let absent: Vec<&str> = items
            .iter()
            .filter(|item| item.seen == Seen::Absent)
            .map(|item| item.id.as_str())
            .collect();
        let mut taken = HashSet::new();
        if !absent.is_empty() {
            for row in tx
                .query(&statements.existing, &[&self.id, &absent])
                .map_err(db)?
            {
                taken.insert(row.get::<_, String>(0));
            }
        }
        Ok(items
            .iter()
            .map(|item| {
                let applies = match item.seen {
                    Seen::Fresh => true,
                    Seen::Absent => !taken.contains(&item.id),
                    Seen::Head(_) => kept.contains(&item.id),
                };
                match (&item.action, applies) {
                    (_, false) => Outcome::Skipped,
                    (Action::Write(_), true) => Outcome::Written,
                    (Action::Fail(_), true) => Outcome::Failed,
                }
            })
            .collect())
    }

    /// Moves the heads of the writes that still see what they saw and locks those the failures
    /// name, in SQL: an item whose head changed meanwhile is left out.
    pub(super) fn claim(
        &self,
        tx: &mut Transaction<'_>,
        statements: &Statements,
        items: &[ChunkItem],
    ) -> Result<Applied, StoreError> {
        let mut applied = Applied::default();
        // Failures lock the heads they name, in id order.
        let (ids, seen) = seen_heads(items, |action| matches!(action, Action::Fail(_)));
        if !ids.is_empty() {
            for row in tx
                .query(&statements.locking, &[&self.id, &ids, &seen])
                .map_err(db)?
            {
                applied.kept.insert(row.get(0));
            }
        }
        let mut moving = HeadRows::default();
        let mut creating = HeadRows::default();
        for item in items {
            let Action::Write(revision) = &item.action else {
                continue;
            };
            match item.seen {
                Seen::Head(seen) => moving.push(&item.id, Some(seen), revision.head),
                Seen::Absent | Seen::Fresh => creating.push(&item.id, None, revision.head),
            }
        }
        if !moving.ids.is_empty() {
            let rows = tx
                .query(
                    &statements.moving,
                    &[
                        &self.id,
                        &moving.ids,
                        &moving.seen,
                        &moving.revision,
                        &moving.version,
                        &moving.removed,
                    ],
                )
                .map_err(db)?;
            applied.moved.extend(rows.iter().map(|row| row.get(0)));
        }
        if !creating.ids.is_empty() {
            let rows = tx
                .query(
                    &statements.creating,
                    &[
                        &self.id,
                        &creating.ids,
                        &creating.revision,
                        &creating.version,
                        &creating.removed,
                    ],
                )
                .map_err(db)?;
            applied.created.extend(rows.iter().map(|row| row.get(0)));
        }
        Ok(applied)
    }

    /// The outcomes, and what the items that apply write besides their heads.
    pub(super) fn gather<'a>(
        &self,
        items: &'a [ChunkItem],
        applied: &Applied,
    ) -> Result<Writes<'a>, StoreError> {
        let mut writes = Writes::default();
        for item in items {
            match &item.action {
                Action::Write(revision) => {
                    let done = match item.seen {
                        Seen::Head(_) => applied.moved.contains(&item.id),
                        Seen::Absent | Seen::Fresh => applied.created.contains(&item.id),
                    };
                    if !done {
                        writes.outcomes.push(Outcome::Skipped);
                        continue;
                    }
                    if let Some(seen) = item.seen.head() {
                        *writes.deltas.entry(Counter::of(seen)).or_default() -= 1;
                        writes.cleared.push(&item.id);
                    }
                    *writes.deltas.entry(Counter::of(revision.head)).or_default() += 1;
                    writes.revision_ids.push(&item.id);
                    writes
                        .revision_numbers
                        .push(sql_revision(revision.head.revision));
                    writes.revision_records.push(&revision.record);
                    writes.outcomes.push(Outcome::Written);
                }
                Action::Fail(failure) => {
                    if !applied.kept.contains(&item.id) {
                        writes.outcomes.push(Outcome::Skipped);
                        continue;
                    }
                    // Counted at the version of the head it names, as a write clears it.
                    let version = item.seen.head().map_or(failure.version, |h| h.version);
                    let bytes = record::encode_payload(failure)
                        .map_err(|source| self.encode_error(source))?;
                    writes.cleared.push(&item.id);
                    *writes.deltas.entry(Counter::Failed(version)).or_default() += 1;
                    writes.failure_ids.push(&item.id);
                    writes.failure_versions.push(sql_version(version));
                    writes.failure_runs.push(sql_run(failure.run)?);
                    writes.failure_records.push(bytes);
                    writes.outcomes.push(Outcome::Failed);
                }
            }
        }
        Ok(writes)
    }

    /// Writes the revisions, failure records, progress record and count deltas.
    fn write(
        &self,
        tx: &mut Transaction<'_>,
        statements: &Statements,
        writes: &mut Writes<'_>,
        commit: &mut Commit<'_>,
    ) -> Result<(), StoreError> {
        self.write_rows(tx, statements, writes)?;
        self.finish(tx, statements, &writes.deltas, &writes.outcomes, commit)
    }

    /// Writes the revisions and failure records, and clears the failure records they replace
    /// (their count deltas are added to `writes`).
    pub(super) fn write_rows(
        &self,
        tx: &mut Transaction<'_>,
        statements: &Statements,
        writes: &mut Writes<'_>,
    ) -> Result<(), StoreError> {
        let collection = self.id;
        if !writes.revision_ids.is_empty() || !writes.cleared.is_empty() {
            for row in tx
                .query(
                    &statements.revisions,
                    &[
                        &collection,
                        &writes.revision_ids,
                        &writes.revision_numbers,
                        &writes.revision_records,
                        &writes.cleared,
                    ],
                )
                .map_err(db)?
            {
                let version: i32 = row.get(0);
                *writes
                    .deltas
                    .entry(Counter::Failed(u32::try_from(version).unwrap_or(0)))
                    .or_default() -= 1;
            }
        }
        if !writes.failure_ids.is_empty() {
            tx.execute(
                &statements.fail,
                &[
                    &collection,
                    &writes.failure_ids,
                    &writes.failure_versions,
                    &writes.failure_runs,
                    &writes.failure_records,
                ],
            )
            .map_err(db)?;
        }
        Ok(())
    }

    /// Writes the run's position and progress record (`commit`'s) and the count `deltas`: the
    /// commit's last statement.
    pub(super) fn finish(
        &self,
        tx: &mut Transaction<'_>,
        statements: &Statements,
        deltas: &BTreeMap<Counter, i64>,
        outcomes: &[Outcome],
        commit: &mut Commit<'_>,
    ) -> Result<(), StoreError> {
        let collection = self.id;
        let (target, position) = match &commit.position {
            // An id, as the engine handed it out (`PgPending`).
            Some((target, position)) => (
                sql_version(*target),
                Some(String::from_utf8_lossy(&position.0)),
            ),
            None => (0, None),
        };
        let (run, progress) = match commit.progress.as_mut() {
            Some(record) => (
                sql_run(record.run)?,
                Some((record.encode)(outcomes).map_err(|source| self.encode_error(source))?),
            ),
            None => (0, None),
        };
        let (kinds, versions, amounts) = count_rows(deltas);
        if position.is_some() || progress.is_some() || !kinds.is_empty() {
            tx.execute(
                &statements.finish,
                &[
                    &collection,
                    &target,
                    &position.as_deref(),
                    &run,
                    &progress,
                    &kinds,
                    &versions,
                    &amounts,
                ],
            )
            .map_err(db)?;
        }
        Ok(())
    }

    /// After a connection was lost during `COMMIT`: whether the commit applied (all of it, or
    /// none), read from the first revision it wrote. Its bytes, not the head: another writer that
    /// started from the same head may have written the same revision number since, but not the
    /// same envelope (it carries its own timestamp and content).
    fn committed(&self, items: &[ChunkItem], outcomes: &[Outcome]) -> Result<bool, StoreError> {
        for (item, outcome) in items.iter().zip(outcomes) {
            if let (Action::Write(revision), Outcome::Written) = (&item.action, outcome) {
                let stored = self.revision(&item.id, revision.head.revision)?;
                return Ok(stored.as_deref() == Some(&revision.record[..]));
            }
        }
        Ok(false)
    }

    fn query_bytes(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<Bytes>, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(sql)?;
        Ok(conn
            .client
            .query_opt(&statement, params)
            .map_err(db)?
            .map(|row| row.get(0)))
    }

    fn decode_failure(&self, id: &str, bytes: &[u8]) -> Result<FailureRecord, StoreError> {
        record::decode_payload(bytes, 8).map_err(|source| self.corrupt(id, None, source))
    }
}

/// The statements of a commit, prepared on its connection.
pub(super) struct Statements {
    begin: Statement,
    moving: Statement,
    creating: Statement,
    locking: Statement,
    checking: Statement,
    existing: Statement,
    revisions: Statement,
    fail: Statement,
    finish: Statement,
}

impl Statements {
    /// A commit's statements, prepared on `conn` (once per connection), with its client.
    pub(super) fn prepare(conn: &mut Conn) -> Result<(&mut postgres::Client, Self), StoreError> {
        let (client, statements) = conn.prepared([
            BEGIN,
            MOVE,
            CREATE,
            LOCK,
            CHECK,
            EXISTING,
            REVISIONS_INSERT,
            FAILURES_INSERT,
            FINISH,
        ])?;
        Ok((client, Self::from(statements)))
    }
}

impl From<[Statement; 9]> for Statements {
    fn from(
        [begin, moving, creating, locking, checking, existing, revisions, fail, finish]: [Statement;
            9],
    ) -> Self {
        Self {
            begin,
            moving,
            creating,
            locking,
            checking,
            existing,
            revisions,
            fail,
            finish,
        }
    }
}

/// The items that still saw what they saw, by id: writes whose heads moved or were created,
/// failures whose heads are locked.
#[derive(Default)]
pub(super) struct Applied {
    moved: HashSet<String>,
    created: HashSet<String>,
    kept: HashSet<String>,
}

/// Head changes as columns, for `unnest`.
#[derive(Default)]
struct HeadRows<'a> {
    ids: Vec<&'a str>,
    seen: Vec<i64>,
    revision: Vec<i64>,
    version: Vec<i32>,
    removed: Vec<bool>,
}

impl<'a> HeadRows<'a> {
    fn push(&mut self, id: &'a str, seen: Option<Head>, head: Head) {
        self.ids.push(id);
        if let Some(seen) = seen {
            self.seen.push(sql_revision(seen.revision));
        }
        self.revision.push(sql_revision(head.revision));
        self.version.push(sql_version(head.version));
        self.removed.push(head.removed);
    }
}

/// What a commit writes besides heads, as columns, and the outcomes.
#[derive(Default)]
pub(super) struct Writes<'a> {
    pub(super) outcomes: Vec<Outcome>,
    deltas: BTreeMap<Counter, i64>,
    revision_ids: Vec<&'a str>,
    revision_numbers: Vec<i64>,
    revision_records: Vec<&'a [u8]>,
    /// Documents whose failure record goes: written ones, and failed ones (replaced).
    cleared: Vec<&'a str>,
    failure_ids: Vec<&'a str>,
    failure_versions: Vec<i32>,
    failure_runs: Vec<i64>,
    failure_records: Vec<Vec<u8>>,
}

impl Writes<'_> {
    /// Leaves the failure records as they are: for items none of which a failure record names
    /// (no statement looks for one to clear).
    pub(super) fn keep_failure_records(&mut self) {
        self.cleared.clear();
    }

    /// The count deltas so far, taken out (for a commit written in several parts).
    pub(super) fn take_deltas(&mut self) -> BTreeMap<Counter, i64> {
        std::mem::take(&mut self.deltas)
    }
}

/// The ids and seen revisions of the items whose action `which` selects and that saw a head.
fn seen_heads(items: &[ChunkItem], which: impl Fn(&Action) -> bool) -> (Vec<&str>, Vec<i64>) {
    items
        .iter()
        .filter(|item| which(&item.action))
        .filter_map(|item| {
            let seen = item.seen.head()?;
            Some((item.id.as_str(), sql_revision(seen.revision)))
        })
        .unzip()
}

fn sql_revision(revision: Revision) -> i64 {
    i64::try_from(revision.get()).unwrap_or(i64::MAX)
}

pub(super) fn sql_version(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}

/// A counter as its key columns.
fn counter_key(counter: Counter) -> (i16, i32) {
    match counter {
        Counter::Live(version) => (0, sql_version(version)),
        Counter::Removed => (1, 0),
        Counter::Failed(version) => (2, sql_version(version)),
    }
}

/// The non-zero deltas as rows, in key order.
fn count_rows(deltas: &BTreeMap<Counter, i64>) -> (Vec<i16>, Vec<i32>, Vec<i64>) {
    let mut rows: Vec<((i16, i32), i64)> = deltas
        .iter()
        .filter(|(_, &n)| n != 0)
        .map(|(&counter, &n)| (counter_key(counter), n))
        .collect();
    rows.sort_unstable();
    let mut kinds = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut amounts = Vec::with_capacity(rows.len());
    for ((kind, version), n) in rows {
        kinds.push(kind);
        versions.push(version);
        amounts.push(n);
    }
    (kinds, versions, amounts)
}

impl CollectionEngine for PgCollection {
    fn head(&self, id: &str) -> Result<Option<Head>, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(HEAD)?;
        let row = conn
            .client
            .query_opt(&statement, &[&self.id, &id])
            .map_err(db)?;
        drop(conn);
        match row {
            None => Ok(None),
            Some(row) => {
                let revision: i64 = row.get(0);
                let version: i32 = row.get(1);
                match (
                    u64::try_from(revision).ok().and_then(Revision::new),
                    u32::try_from(version).ok(),
                ) {
                    (Some(revision), Some(version)) => Ok(Some(Head {
                        revision,
                        version,
                        removed: row.get(2),
                    })),
                    _ => Err(self.corrupt(id, None, RecordError::InvalidHeader("malformed head"))),
                }
            }
        }
    }

    fn revision(&self, id: &str, revision: Revision) -> Result<Option<Bytes>, StoreError> {
        self.query_bytes(REVISION, &[&self.id, &id, &sql_revision(revision)])
    }

    fn revisions(
        &self,
        id: &str,
        after: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        let after = after.map_or(0, sql_revision);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(REVISIONS)?;
        Ok(conn
            .client
            .query(&statement, &[&self.id, &id, &after, &limit])
            .map_err(db)?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn heads(&self, after: Option<&str>, removed: bool) -> Heads {
        Box::new(HeadPages::new(
            Arc::clone(&self.shared),
            (&self.name, self.id),
            after,
            removed,
        ))
    }

    fn counts(&self) -> Result<Counters, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(COUNTS)?;
        let rows = conn.client.query(&statement, &[&self.id]).map_err(db)?;
        let mut counters = Counters::default();
        for row in rows {
            let kind: i16 = row.get(0);
            let version: i32 = row.get(1);
            let n: i64 = row.get(2);
            let version = u32::try_from(version).ok();
            let counter = match (kind, version) {
                (0, Some(version)) => Counter::Live(version),
                (1, _) => Counter::Removed,
                (2, Some(version)) => Counter::Failed(version),
                _ => {
                    return Err(self.corrupt(
                        "counters",
                        None,
                        RecordError::InvalidHeader("malformed counter"),
                    ))
                }
            };
            // Below zero only after a stale failure record (one a backup carried without
            // counting it) was cleared: as on sled, the count stops at zero, and `verify` names
            // the difference.
            counters.insert(counter, u64::try_from(n).unwrap_or(0));
        }
        Ok(counters)
    }

    fn commit(
        &self,
        items: &[ChunkItem],
        mut commit: Commit<'_>,
    ) -> Result<Vec<Outcome>, StoreError> {
        match self.try_commit(items, &mut commit) {
            // A serialization failure or deadlock rolled everything back: try once more.
            Err(error) if retryable(&error) => self.try_commit(items, &mut commit),
            result => result,
        }
    }

    fn prepare(&self, _items: &[ChunkItem]) -> Option<Prepared> {
        None
    }

    fn pending(
        &self,
        target: u32,
        retry_failed: bool,
    ) -> Result<Box<dyn Pending + '_>, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(pending::VERSIONS)?;
        let versions = conn
            .client
            .query(&statement, &[&self.id, &sql_version(target)])
            .map_err(db)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let statement = conn.statement(pending::POSITION)?;
        let position: Option<String> = conn
            .client
            .query_opt(&statement, &[&self.id, &sql_version(target)])
            .map_err(db)?
            .map(|row| row.get(0));
        let statement = conn.statement(pending::ANY_FAILURE)?;
        let failures: bool = conn
            .client
            .query_one(&statement, &[&self.id])
            .map_err(db)?
            .get(0);
        Ok(Box::new(PgPending::new(
            Arc::clone(&self.shared),
            (&self.name, self.id),
            (versions, position),
            (retry_failed, failures),
        )))
    }

    fn failures(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, FailureRecord)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(FAILURES)?;
        let rows = conn
            .client
            .query(&statement, &[&self.id, &after.unwrap_or(""), &limit])
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                let id: String = row.get(0);
                let bytes: Vec<u8> = row.get(1);
                let failure = self.decode_failure(&id, &bytes)?;
                Ok((id, failure))
            })
            .collect()
    }

    fn failures_of_run(
        &self,
        run: u64,
        limit: usize,
        except: &BTreeSet<&str>,
    ) -> Result<(Vec<(String, FailureRecord)>, u64), StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(FAILURES_OF_RUN)?;
        // A page at a time (through the run index), never every failure of a long run at once.
        let page = i64::try_from(limit.saturating_add(except.len()).clamp(1, 1000)).unwrap_or(1000);
        let mut found = Vec::new();
        let mut undecodable = 0u64;
        let mut after = String::new();
        while found.len() < limit {
            let rows = conn
                .client
                .query(&statement, &[&self.id, &sql_run(run)?, &after, &page])
                .map_err(db)?;
            for row in &rows {
                if found.len() >= limit {
                    break;
                }
                let id: String = row.get(0);
                if except.contains(id.as_str()) {
                    continue;
                }
                let bytes: Vec<u8> = row.get(1);
                match record::decode_payload::<FailureRecord>(&bytes, 8) {
                    Ok(failure) if failure.run == run => found.push((id, failure)),
                    Ok(_) => {}
                    Err(_) => undecodable += 1,
                }
            }
            match rows.last() {
                Some(row) if i64::try_from(rows.len()).unwrap_or(i64::MAX) == page => {
                    after = row.get(0);
                }
                _ => break,
            }
        }
        Ok((found, undecodable))
    }

    fn progress(&self, run: u64) -> Result<Option<Bytes>, StoreError> {
        self.query_bytes(PROGRESS, &[&self.id, &sql_run(run)?])
    }

    fn forget_progress(&self, run: u64) -> Result<(), StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(PROGRESS_FORGET)?;
        conn.client
            .execute(&statement, &[&self.id, &sql_run(run)?])
            .map_err(db)?;
        Ok(())
    }

    fn progress_runs(&self) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(PROGRESS_RUNS)?;
        Ok(conn
            .client
            .query(&statement, &[&self.id])
            .map_err(db)?
            .iter()
            .map(|row| row.get::<_, i64>(0).unsigned_abs())
            .collect())
    }

    fn begin_run(&self, run: u64) -> Result<Result<RunLease<'_>, u64>, StoreError> {
        Ok(lease::acquire(&self.shared, self.id, run)?.map(lease))
    }

    fn try_run_lock(&self) -> Result<Option<RunLease<'_>>, StoreError> {
        Ok(lease::acquire(&self.shared, self.id, 0)?.ok().map(lease))
    }

    fn run_is_live(&self, run: u64) -> Result<bool, StoreError> {
        lease::is_live(&self.shared, self.id, run)
    }

    fn join_run(
        &self,
        run: u64,
        settings: &RunSettings,
        worker: &WorkerInfo,
    ) -> Result<Option<Joined<'_>>, StoreError> {
        self.join(run, settings, worker).map(Some)
    }

    fn run_workers(&self, run: u64) -> Result<Vec<WorkerRow>, StoreError> {
        self.workers(run)
    }

    fn cancel_run(&self, run: u64) -> Result<bool, StoreError> {
        self.cancel(run)
    }

    fn writable_by(&self, writer: u32) -> Result<(), StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(NEWEST)?;
        let newest: i32 = conn
            .client
            .query_one(&statement, &[&self.id])
            .map_err(db)?
            .get(0);
        refuse_older(&self.name, u32::try_from(newest).unwrap_or(0), writer)
    }

    fn registered(&self, newest: u32) -> Result<(), StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(REGISTERED)?;
        conn.client
            .execute(&statement, &[&self.id, &sql_version(newest)])
            .map_err(db)?;
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn lease(lease: Lease) -> RunLease<'static> {
    RunLease(Box::new(lease))
}
