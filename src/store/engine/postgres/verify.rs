//! The consistency check and counter repair on PostgreSQL.
//!
//! `verify` reads the whole store in one `REPEATABLE READ` read-only transaction (one snapshot:
//! counts and heads agree in it when nothing is wrong), a page at a time through portals. Per
//! collection it walks heads and revisions together in id order (each document's revisions
//! decoded, numbered 1, 2, 3, … without gaps, the head naming the last one with its version and
//! removed flag), checks failure records against the heads, compares the count rows with a
//! recount, and looks for progress records of runs the ledger does not hold; then every ledger
//! record and `_meta` record must decode. What the layout's keys and types rule out on sled
//! (malformed keys, heads that do not decode) shows here as columns out of range.
//!
//! `repair_counters` recounts each collection in one transaction that holds the heads and
//! failure tables in `SHARE` mode (writers wait; readers go on), removes failure records that no
//! longer name their document's live head, and replaces the collection's count rows with the
//! recount (one row per counter, shard 0).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use postgres::types::ToSql;
use postgres::{IsolationLevel, Portal, Row, Transaction};
use serde::de::IgnoredAny;

use super::error::db;
use super::logical::{each_row, head_of, PAGE};
use super::PgEngine;
use crate::error::format::chain as error_chain;
use crate::record;
use crate::store::counters::Counter;
use crate::store::report::PROGRESS_EVERY;
use crate::store::report::{check_chain, Stored};
use crate::store::{
    CounterChange, FailureRecord, Head, KeySpace, Problem, RepairReport, Store, StoreError,
    VerifyReport,
};

/// Each collection row, and whether it has a `_meta` record (or schema history rows, which
/// make reading it fail without one).
const COLLECTIONS: &str = "SELECT c.id, c.name, c.meta IS NOT NULL
         OR EXISTS (SELECT 1 FROM revolve_schema_history h WHERE h.collection = c.id)
     FROM revolve_collections c ORDER BY c.name";
const HEADS: &str = "SELECT id, revision, version, removed FROM revolve_heads
     WHERE collection = $1 ORDER BY id";
const REVISIONS: &str = "SELECT id, revision, record FROM revolve_revisions
     WHERE collection = $1 ORDER BY id, revision";
const FAILURES: &str = "SELECT f.id, f.record, h.revision, h.version, h.removed
     FROM revolve_failures f
     LEFT JOIN revolve_heads h ON h.collection = f.collection AND h.id = f.id
     WHERE f.collection = $1 ORDER BY f.id";
const COUNTS: &str = "SELECT counter, version, sum(n)::int8, count(*)::int8 FROM revolve_counts
     WHERE collection = $1 GROUP BY counter, version ORDER BY counter, version";
const ORPHAN_PROGRESS: &str = "SELECT p.run FROM revolve_progress p
     WHERE p.collection = $1
       AND NOT EXISTS (SELECT 1 FROM revolve_runs r WHERE r.collection = $2 AND r.run = p.run)
     ORDER BY p.run";
/// The tables whose rows name a collection by its row id (the first column of each primary key).
const COLLECTION_TABLES: [&str; 5] = [
    "revolve_heads",
    "revolve_revisions",
    "revolve_failures",
    "revolve_counts",
    "revolve_progress",
];
const LEDGER: &str = "SELECT collection, run, record FROM revolve_runs ORDER BY collection, run";

const RECOUNT_HEADS: &str = "SELECT removed, version, count(*)::int8 FROM revolve_heads
     WHERE collection = $1 AND revision >= 1 AND version >= 0
     GROUP BY removed, version";
const MALFORMED_HEADS: &str = "SELECT count(*)::int8 FROM revolve_heads
     WHERE collection = $1 AND (revision < 1 OR version < 0)";
const STALE_REMOVE: &str = "DELETE FROM revolve_failures WHERE collection = $1 AND id = ANY($2)";
const COUNTS_CLEAR: &str = "DELETE FROM revolve_counts WHERE collection = $1";
const COUNTS_INSERT: &str = "INSERT INTO revolve_counts (collection, counter, version, shard, n)
     SELECT $1, u.counter, u.version, 0::int2, u.n
     FROM unnest($2::int2[], $3::int4[], $4::int8[]) AS u(counter, version, n)";

/// A document's revisions as found: its id, and each revision's number and bytes in order.
type Chain = (String, Vec<(u64, Vec<u8>)>);

/// A query's rows a page at a time, through a portal of the transaction.
struct Pages {
    portal: Portal,
    page: VecDeque<Row>,
    done: bool,
}

impl Pages {
    fn new(
        tx: &mut Transaction<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Self, StoreError> {
        Ok(Self {
            portal: tx.bind(sql, params).map_err(db)?,
            page: VecDeque::new(),
            done: false,
        })
    }

    fn next(&mut self, tx: &mut Transaction<'_>) -> Result<Option<Row>, StoreError> {
        if self.page.is_empty() && !self.done {
            self.page = tx.query_portal(&self.portal, PAGE).map_err(db)?.into();
            self.done = self.page.is_empty();
        }
        Ok(self.page.pop_front())
    }
}

struct Check<'p> {
    report: VerifyReport,
    max_depth: usize,
    progress: &'p mut dyn FnMut(u64),
}

/// The walk behind [`Store::verify_with_progress`] on PostgreSQL.
pub(crate) fn verify(
    engine: &PgEngine,
    store: &Store,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let mut check = Check {
        report: VerifyReport::default(),
        max_depth: store.inner().max_depth,
        progress,
    };
    let mut conn = engine.pool().get()?;
    let mut tx = conn
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db)?;
    let collections: Vec<(i32, String, bool)> = tx
        .query(COLLECTIONS, &[])
        .map_err(db)?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    check.report.collections = u64::try_from(collections.len()).unwrap_or(u64::MAX);
    for (id, name, registered) in &collections {
        check.collection(&mut tx, name, *id, *registered)?;
    }
    for table in COLLECTION_TABLES {
        check.orphan_rows(&mut tx, table)?;
    }
    each_row(&mut tx, LEDGER, &[], |row| {
        let collection: String = row.get(0);
        let run: i64 = row.get(1);
        let bytes: Vec<u8> = row.get(2);
        let error = if run < 0 {
            Some("a negative run id".to_owned())
        } else {
            record::decode_payload::<IgnoredAny>(&bytes, 64)
                .err()
                .map(|error| error_chain(&error))
        };
        if let Some(error) = error {
            check.report.problem(Problem::CorruptLedger {
                key: format!("{collection} run {run}"),
                error,
            });
        }
        Ok::<_, StoreError>(())
    })?;
    tx.commit().map_err(db)?;
    // Read through the store, on a connection of its own: the walk's goes back first, so that a
    // pool of one connection is enough.
    drop(conn);
    for (_, name, registered) in &collections {
        if *registered {
            if let Err(error) = store.read_meta(name) {
                check.report.problem(Problem::CorruptMeta {
                    collection: name.clone(),
                    error: error_chain(&error),
                });
            }
        }
    }
    let documents = check.report.documents;
    (check.progress)(documents);
    Ok(check.report)
}

impl Check<'_> {
    /// Reports rows of `table` that name a collection with no row, found by a walk of the primary
    /// key's first column (one index probe per collection, not a scan).
    fn orphan_rows(&mut self, tx: &mut Transaction<'_>, table: &str) -> Result<(), StoreError> {
        let sql = format!(
            "WITH RECURSIVE c (id) AS (
                 SELECT min(collection) FROM {table}
                 UNION ALL
                 SELECT (SELECT min(collection) FROM {table} WHERE collection > c.id)
                 FROM c WHERE c.id IS NOT NULL)
             SELECT id FROM c WHERE id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM revolve_collections k WHERE k.id = c.id)
             ORDER BY id"
        );
        for row in tx.query(&sql, &[]).map_err(db)? {
            let collection: i32 = row.get(0);
            self.report.problem(Problem::MalformedKey {
                tree: table.to_owned(),
                space: KeySpace::Unknown,
                key: format!("collection {collection}"),
                reason: "rows of a collection that has no row in revolve_collections",
            });
        }
        Ok(())
    }

    fn collection(
        &mut self,
        tx: &mut Transaction<'_>,
        name: &str,
        id: i32,
        registered: bool,
    ) -> Result<(), StoreError> {
        let mut actual: BTreeMap<Counter, u64> = BTreeMap::new();
        let holds_documents = self.documents(tx, name, id, &mut actual)?;
        if !registered && holds_documents {
            self.report.problem(Problem::UnregisteredCollection {
                collection: name.to_owned(),
            });
        }
        self.failures(tx, name, id, &mut actual)?;
        self.counters(tx, name, id, &actual)?;
        for row in tx.query(ORPHAN_PROGRESS, &[&id, &name]).map_err(db)? {
            let run: i64 = row.get(0);
            self.report.problem(Problem::OrphanProgress {
                collection: name.to_owned(),
                run: run.unsigned_abs(),
            });
        }
        let documents = self.report.documents;
        (self.progress)(documents);
        Ok(())
    }

    /// Walks heads and revisions together (both by id), checking each document and counting its
    /// head; whether any head or revision was found.
    fn documents(
        &mut self,
        tx: &mut Transaction<'_>,
        name: &str,
        collection: i32,
        actual: &mut BTreeMap<Counter, u64>,
    ) -> Result<bool, StoreError> {
        let mut heads = Pages::new(tx, HEADS, &[&collection])?;
        let mut revisions = Pages::new(tx, REVISIONS, &[&collection])?;
        let mut peeked: Option<Row> = None;
        let mut head = heads.next(tx)?;
        let mut group = self.group(tx, name, &mut revisions, &mut peeked)?;
        let mut found = false;
        loop {
            let order = match (&head, &group) {
                (None, None) => return Ok(found),
                (Some(row), Some((id, _))) => row.get::<_, &str>(0).cmp(id.as_str()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
            };
            found = true;
            match order {
                Ordering::Equal => {
                    if let (Some(row), Some((_, chain))) = (head.take(), group.take()) {
                        self.document(name, &row, Some(&chain), actual);
                    }
                    head = heads.next(tx)?;
                    group = self.group(tx, name, &mut revisions, &mut peeked)?;
                }
                Ordering::Less => {
                    if let Some(row) = head.take() {
                        self.document(name, &row, None, actual);
                    }
                    head = heads.next(tx)?;
                }
                Ordering::Greater => {
                    if let Some((id, chain)) = group.take() {
                        self.chain(name, &id, &chain);
                        self.report.problem(Problem::RevisionsWithoutHead {
                            collection: name.to_owned(),
                            id,
                            revisions: u64::try_from(chain.len()).unwrap_or(u64::MAX),
                        });
                    }
                    group = self.group(tx, name, &mut revisions, &mut peeked)?;
                }
            }
        }
    }

    /// The next document's revisions, in number order; rows numbered below 1 are reported and
    /// skipped.
    fn group(
        &mut self,
        tx: &mut Transaction<'_>,
        name: &str,
        revisions: &mut Pages,
        peeked: &mut Option<Row>,
    ) -> Result<Option<Chain>, StoreError> {
        let mut current: Option<Chain> = None;
        loop {
            let row = match peeked.take() {
                Some(row) => row,
                None => match revisions.next(tx)? {
                    Some(row) => row,
                    None => return Ok(current),
                },
            };
            let id: &str = row.get(0);
            if let Some((current_id, _)) = &current {
                if current_id != id {
                    *peeked = Some(row);
                    return Ok(current);
                }
            }
            let number: i64 = row.get(1);
            let Some(number) = u64::try_from(number).ok().filter(|&n| n >= 1) else {
                self.report.problem(Problem::MalformedKey {
                    tree: format!("revolve_revisions of `{name}`"),
                    space: KeySpace::Revisions,
                    key: format!("{id} {number}"),
                    reason: "a revision number below 1",
                });
                continue;
            };
            let bytes: Vec<u8> = row.get(2);
            match &mut current {
                Some((_, chain)) => chain.push((number, bytes)),
                None => current = Some((id.to_owned(), vec![(number, bytes)])),
            }
        }
    }

    /// Checks a document's head against its revisions, and counts it.
    fn document(
        &mut self,
        collection: &str,
        row: &Row,
        revisions: Option<&[(u64, Vec<u8>)]>,
        actual: &mut BTreeMap<Counter, u64>,
    ) {
        let id: String = row.get(0);
        self.report.documents += 1;
        if self.report.documents % PROGRESS_EVERY == 0 {
            (self.progress)(self.report.documents);
        }
        let last = revisions.and_then(|revisions| self.chain(collection, &id, revisions));
        let Some(head) = head_of(row.get(1), row.get(2), row.get(3)) else {
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
    fn chain(
        &mut self,
        collection: &str,
        id: &str,
        revisions: &[(u64, Vec<u8>)],
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

    /// Checks every failure record names its document's live head, and counts those that do.
    fn failures(
        &mut self,
        tx: &mut Transaction<'_>,
        name: &str,
        collection: i32,
        actual: &mut BTreeMap<Counter, u64>,
    ) -> Result<(), StoreError> {
        each_row(tx, FAILURES, &[&collection], |row| {
            match current_failure(row) {
                Ok(version) => *actual.entry(Counter::Failed(version)).or_insert(0) += 1,
                Err(reason) => self.report.problem(Problem::StaleFailure {
                    collection: name.to_owned(),
                    id: row.get(0),
                    reason,
                }),
            }
            Ok::<_, StoreError>(())
        })
    }

    /// Compares the count rows with what the heads and failure records say.
    fn counters(
        &mut self,
        tx: &mut Transaction<'_>,
        name: &str,
        collection: i32,
        actual: &BTreeMap<Counter, u64>,
    ) -> Result<(), StoreError> {
        let mut stored = BTreeMap::new();
        for row in tx.query(COUNTS, &[&collection]).map_err(db)? {
            match decode_counter(&row) {
                Ok((counter, count)) => {
                    stored.insert(counter, count);
                }
                Err((key, reason)) => self.report.problem(Problem::MalformedCounter {
                    collection: name.to_owned(),
                    key,
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
}

/// A counter's columns and summed rows (`counter, version, sum, rows`); `Err` with its key as a
/// report names it and what is wrong.
fn decode_counter(row: &Row) -> Result<(Counter, u64), (String, &'static str)> {
    let kind: i16 = row.get(0);
    let version: i32 = row.get(1);
    let n: i64 = row.get(2);
    let key = format!("counter {kind} version {version}");
    let counter = match (kind, u32::try_from(version)) {
        (0, Ok(version)) => Counter::Live(version),
        (1, Ok(0)) => Counter::Removed,
        (2, Ok(version)) => Counter::Failed(version),
        _ => {
            return Err((
                key,
                "not a counter (0 live, 1 removed at version 0, 2 failed) at a version",
            ))
        }
    };
    let n = u64::try_from(n).map_err(|_| (key, "the count is negative"))?;
    Ok((counter, n))
}

/// Whether a failure row (`id, record` and its document's head columns, NULL without one) names
/// the document's current live head: `Ok` with the head's version if it does, `Err` with the
/// reason if not.
fn current_failure(row: &Row) -> Result<u32, String> {
    let bytes: &[u8] = row.get(1);
    let failure = record::decode_payload::<FailureRecord>(bytes, 8)
        .map_err(|error| format!("does not decode: {}", error_chain(&error)))?;
    let (Some(revision), Some(version), Some(removed)) = (
        row.get::<_, Option<i64>>(2),
        row.get::<_, Option<i32>>(3),
        row.get::<_, Option<bool>>(4),
    ) else {
        return Err("names a document without a head".to_owned());
    };
    match head_of(revision, version, removed) {
        Some(head)
            if !head.removed
                && head.revision.get() == failure.revision
                && head.version == failure.version =>
        {
            Ok(head.version)
        }
        Some(head) if head.removed => Err("names a removed document".to_owned()),
        Some(Head {
            revision, version, ..
        }) => Err(format!(
            "names revision {} at version {}, but the head is revision {revision} at version {version}",
            failure.revision, failure.version
        )),
        None => Err("names a document whose head does not decode".to_owned()),
    }
}

/// The repair behind [`Store::repair_counters`] on PostgreSQL.
pub(crate) fn repair_counters(
    engine: &PgEngine,
    _store: &Store,
) -> Result<RepairReport, StoreError> {
    let mut report = RepairReport::default();
    let mut conn = engine.pool().get()?;
    let collections: Vec<(i32, String)> = conn
        .client
        .query(
            "SELECT id, name FROM revolve_collections ORDER BY name",
            &[],
        )
        .map_err(db)?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for (id, name) in collections {
        report.collections += 1;
        let mut tx = conn.client.transaction().map_err(db)?;
        repair_collection(&mut tx, &name, id, &mut report)?;
        tx.commit().map_err(db)?;
    }
    Ok(report)
}

/// Recounts one collection and replaces its count rows, inside `tx`.
fn repair_collection(
    tx: &mut Transaction<'_>,
    name: &str,
    collection: i32,
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    // Writers wait until the recount is in; readers go on.
    tx.batch_execute("LOCK TABLE revolve_heads, revolve_failures IN SHARE MODE")
        .map_err(db)?;
    let mut actual: BTreeMap<Counter, u64> = BTreeMap::new();
    for row in tx.query(RECOUNT_HEADS, &[&collection]).map_err(db)? {
        let removed: bool = row.get(0);
        let version: i32 = row.get(1);
        let n: i64 = row.get(2);
        let counter = if removed {
            Counter::Removed
        } else {
            Counter::Live(version.unsigned_abs())
        };
        *actual.entry(counter).or_insert(0) += n.unsigned_abs();
    }
    let uncounted: i64 = tx
        .query_one(MALFORMED_HEADS, &[&collection])
        .map_err(db)?
        .get(0);
    report.uncounted_heads += uncounted.unsigned_abs();
    let mut stale: Vec<String> = Vec::new();
    each_row(tx, FAILURES, &[&collection], |row| {
        match current_failure(row) {
            Ok(version) => *actual.entry(Counter::Failed(version)).or_insert(0) += 1,
            Err(_) => stale.push(row.get(0)),
        }
        Ok::<_, StoreError>(())
    })?;
    if !stale.is_empty() {
        tx.execute(STALE_REMOVE, &[&collection, &stale])
            .map_err(db)?;
        report.stale_failures_removed += u64::try_from(stale.len()).unwrap_or(u64::MAX);
    }
    let mut stored = BTreeMap::new();
    for row in tx.query(COUNTS, &[&collection]).map_err(db)? {
        if let Ok((counter, count)) = decode_counter(&row) {
            stored.insert(counter, count);
        } else {
            let rows: i64 = row.get(3);
            report.malformed_counters_removed += rows.unsigned_abs();
        }
    }
    let counters: BTreeSet<Counter> = stored.keys().chain(actual.keys()).copied().collect();
    for counter in counters {
        let before = stored.get(&counter).copied().unwrap_or(0);
        let after = actual.get(&counter).copied().unwrap_or(0);
        if before != after {
            report.counters.push(CounterChange {
                collection: name.to_owned(),
                counter: counter.into(),
                before,
                after,
            });
        }
    }
    tx.execute(COUNTS_CLEAR, &[&collection]).map_err(db)?;
    let mut kinds: Vec<i16> = Vec::new();
    let mut versions: Vec<i32> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    for (counter, n) in actual.into_iter().filter(|&(_, n)| n > 0) {
        let (kind, version) = match counter {
            Counter::Live(version) => (0, version),
            Counter::Removed => (1, 0),
            Counter::Failed(version) => (2, version),
        };
        kinds.push(kind);
        versions.push(i32::try_from(version).unwrap_or(i32::MAX));
        counts.push(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if !kinds.is_empty() {
        tx.execute(COUNTS_INSERT, &[&collection, &kinds, &versions, &counts])
            .map_err(db)?;
    }
    Ok(())
}
