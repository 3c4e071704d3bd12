//! The PostgreSQL side of logical backups: every record of a store streamed out in backup order,
//! and a backup loaded into an empty store.
//!
//! An export reads in one `REPEATABLE READ` read-only transaction, so that it sees one snapshot
//! of the whole store, and reads each table through a portal (a server-side cursor over the
//! primary key's order) [`PAGE`] rows at a time: a store of any size streams out in bounded
//! memory, heads by id and revisions by id then number.
//!
//! An import loads everything in one transaction on one connection, so that an abort (or a
//! dropped import) is a `ROLLBACK` that leaves the store as empty as it was found. Heads and
//! revisions are staged a batch at a time (at most [`BATCH_ROWS`] rows or [`BATCH_BYTES`] bytes)
//! and written with binary `COPY`; the few failure, ledger and progress records with multi-row
//! `INSERT … SELECT FROM unnest(…)`. A writer thread owns the connection and writes each batch
//! while the next is read and decoded; at most [`QUEUED`] batches wait for it, so memory stays
//! bounded whatever the backup's size, and PostgreSQL keeps what the transaction wrote on disk. Once every frame is loaded, the counts are recomputed from
//! the heads (one `GROUP BY`) and the failure records, the run-id sequence is raised above the
//! highest run the backup names, and the transaction commits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, IsolationLevel, Row, Transaction};

use super::error::db;
use super::meta;
use super::{sql_run, PgEngine, Shared};
use crate::id::Revision;
use crate::record;
use crate::store::backup::{BackupError, Frame};
use crate::store::engine::{CollectionEngine, FailureRecord, Head, Import};
use crate::store::logical::LogicalRecord;
use crate::store::{Store, StoreError};

/// Rows fetched per round trip of an export.
pub(crate) const PAGE: i32 = 2000;
/// Rows staged per table before an import writes them.
const BATCH_ROWS: usize = 5000;
/// Bytes of revisions staged before an import writes them.
const BATCH_BYTES: usize = 8 << 20;
/// A run id at or above this, named by a revision's origin, is not taken as one to stay above
/// (as on sled).
const MAX_PLAUSIBLE_RUN_ID: u64 = 1 << 60;

// ---------------------------------------------------------------------------------------------
// Export

/// Every collection: those with a row, and those only the ledger names, by name (bytes: the
/// columns are `COLLATE "C"`), with the row's id (`None` for a ledger-only one) and `_meta`.
const COLLECTIONS: &str = "SELECT name, id, meta FROM (
         SELECT name, id, meta FROM revolve_collections
         UNION ALL
         SELECT DISTINCT r.collection, NULL::int4, NULL::bytea FROM revolve_runs r
         WHERE NOT EXISTS (SELECT 1 FROM revolve_collections c WHERE c.name = r.collection)
     ) AS every ORDER BY name";
const HEADS: &str = "SELECT id, revision, version, removed FROM revolve_heads
     WHERE collection = $1 ORDER BY id";
const REVISIONS: &str = "SELECT id, revision, record FROM revolve_revisions
     WHERE collection = $1 ORDER BY id, revision";
const FAILURES: &str = "SELECT id, record FROM revolve_failures
     WHERE collection = $1 ORDER BY id";
const RUNS: &str = "SELECT run, record FROM revolve_runs WHERE collection = $1 ORDER BY run";
const PROGRESS: &str =
    "SELECT run, record FROM revolve_progress WHERE collection = $1 ORDER BY run";

/// A row no logical record can hold.
fn unexportable(place: &str, key: String, reason: &'static str) -> BackupError {
    BackupError::Unexportable {
        place: place.to_owned(),
        key,
        reason,
    }
}

/// Reads a query's rows a page at a time through a portal, handing each row to `each`.
pub(crate) fn each_row<E: From<StoreError>>(
    tx: &mut Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    mut each: impl FnMut(&Row) -> Result<(), E>,
) -> Result<(), E> {
    let portal = tx.bind(sql, params).map_err(db)?;
    loop {
        let rows = tx.query_portal(&portal, PAGE).map_err(db)?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            each(row)?;
        }
    }
}

/// A head's columns as a head; `None` when they hold no valid one.
pub(crate) fn head_of(revision: i64, version: i32, removed: bool) -> Option<Head> {
    Some(Head {
        revision: u64::try_from(revision).ok().and_then(Revision::new)?,
        version: u32::try_from(version).ok()?,
        removed,
    })
}

/// Streams every logical record of the store to `sink`, in the order `logical` describes, from
/// one snapshot. A row no record can hold (a head with a negative revision, say) stops the export
/// with [`BackupError::Unexportable`]; counts are left out as derived.
pub(crate) fn export(
    engine: &PgEngine,
    _store: &Store,
    sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let mut conn = engine.pool().get()?;
    let mut tx = conn
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db)?;
    let collections: Vec<(String, Option<i32>, Option<Vec<u8>>)> = tx
        .query(COLLECTIONS, &[])
        .map_err(db)?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    for (name, id, meta) in collections {
        // The record as the engine boundary sees it: the schema history joined back in.
        let meta = match id {
            Some(id) => {
                let history: Vec<(i32, Vec<u8>)> = tx
                    .query(meta::HISTORY, &[&id])
                    .map_err(db)?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect();
                meta::joined(&name, meta, &history)?
            }
            None => meta,
        };
        sink(LogicalRecord::Collection {
            name: name.clone(),
            meta,
        })?;
        if let Some(id) = id {
            export_documents(&mut tx, &name, id, sink)?;
        }
        each_row(&mut tx, RUNS, &[&name], |row| {
            let run: i64 = row.get(0);
            let run = u64::try_from(run).map_err(|_| {
                unexportable(
                    "revolve_runs",
                    format!("{name} run {run}"),
                    "a negative run id",
                )
            })?;
            sink(LogicalRecord::LedgerRun {
                collection: name.clone(),
                run,
                record: row.get(1),
            })
        })?;
        if let Some(id) = id {
            each_row(&mut tx, PROGRESS, &[&id], |row| {
                let run: i64 = row.get(0);
                let run = u64::try_from(run).map_err(|_| {
                    unexportable(
                        "revolve_progress",
                        format!("{name} run {run}"),
                        "a negative run id",
                    )
                })?;
                sink(LogicalRecord::RunProgress {
                    collection: name.clone(),
                    run,
                    record: row.get(1),
                })
            })?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(())
}

/// A collection's heads, revisions and failure records.
fn export_documents(
    tx: &mut Transaction<'_>,
    name: &str,
    collection: i32,
    sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    each_row(tx, HEADS, &[&collection], |row| {
        let id: String = row.get(0);
        let head = head_of(row.get(1), row.get(2), row.get(3)).ok_or_else(|| {
            unexportable(
                "revolve_heads",
                format!("{name} {id}"),
                "a head that does not decode",
            )
        })?;
        sink(LogicalRecord::Head {
            collection: name.to_owned(),
            id,
            head,
        })
    })?;
    each_row(tx, REVISIONS, &[&collection], |row| {
        let id: String = row.get(0);
        let number: i64 = row.get(1);
        let revision = u64::try_from(number)
            .ok()
            .and_then(Revision::new)
            .ok_or_else(|| {
                unexportable(
                    "revolve_revisions",
                    format!("{name} {id} {number}"),
                    "a revision number below 1",
                )
            })?;
        sink(LogicalRecord::Revision {
            collection: name.to_owned(),
            id,
            revision,
            envelope: row.get(2),
        })
    })?;
    each_row(tx, FAILURES, &[&collection], |row| {
        sink(LogicalRecord::Failure {
            collection: name.to_owned(),
            id: row.get(0),
            record: row.get(1),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Import

/// Whether the store holds anything: a document, a failure or progress record, a ledger run, a
/// registered collection. (A collection row without `_meta` or data is what opening a collection
/// leaves, and holds nothing.)
const HOLDS_DATA: &str = "SELECT EXISTS (SELECT 1 FROM revolve_heads)
     OR EXISTS (SELECT 1 FROM revolve_revisions)
     OR EXISTS (SELECT 1 FROM revolve_failures)
     OR EXISTS (SELECT 1 FROM revolve_progress)
     OR EXISTS (SELECT 1 FROM revolve_runs)
     OR EXISTS (SELECT 1 FROM revolve_collections WHERE meta IS NOT NULL)
     OR EXISTS (SELECT 1 FROM revolve_schema_history)";
const COLLECTION_PUT: &str = "INSERT INTO revolve_collections (name, meta) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET meta = excluded.meta RETURNING id";
const COPY_HEADS: &str =
    "COPY revolve_heads (collection, id, revision, version, removed) FROM STDIN BINARY";
const COPY_REVISIONS: &str =
    "COPY revolve_revisions (collection, id, revision, record) FROM STDIN BINARY";
const FAILURES_INSERT: &str = "INSERT INTO revolve_failures (collection, id, version, run, record)
     SELECT $1, u.id, u.version, u.run, u.record
     FROM unnest($2::text[], $3::int4[], $4::int8[], $5::bytea[]) AS u(id, version, run, record)";
const HEADS_OF: &str = "SELECT id, revision, version, removed FROM revolve_heads
     WHERE collection = $1 AND id = ANY($2)";
const RUNS_INSERT: &str = "INSERT INTO revolve_runs (collection, run, record)
     SELECT $1, u.run, u.record FROM unnest($2::int8[], $3::bytea[]) AS u(run, record)";
const PROGRESS_INSERT: &str = "INSERT INTO revolve_progress (collection, run, record)
     SELECT $1, u.run, u.record FROM unnest($2::int8[], $3::bytea[]) AS u(run, record)";
/// The live and removed counts of every collection, from the heads (the store was empty).
const COUNT_HEADS: &str = "INSERT INTO revolve_counts (collection, counter, version, shard, n)
     SELECT collection, CASE WHEN removed THEN 1 ELSE 0 END::int2,
            CASE WHEN removed THEN 0 ELSE version END, 0::int2, count(*)
     FROM revolve_heads GROUP BY 1, 2, 3";
const COUNTS_INSERT: &str = "INSERT INTO revolve_counts (collection, counter, version, shard, n)
     SELECT u.collection, 2::int2, u.version, 0::int2, u.n
     FROM unnest($1::int4[], $2::int4[], $3::int8[]) AS u(collection, version, n)";
const RAISE_RUN_IDS: &str = "SELECT setval('revolve_run_ids',
     greatest($1::int8, (SELECT last_value FROM revolve_run_ids)))";

/// Begins loading a backup into the store, which must hold nothing: in one transaction on one
/// connection, with the heads and revisions tables locked against other writers until it ends.
pub(crate) fn import<'a>(
    engine: &'a PgEngine,
    store: &'a Store,
) -> Result<Box<dyn Import + 'a>, BackupError> {
    let mut worker = Worker::start(Arc::clone(&engine.shared))?;
    let holds_data = worker.call(|client, _| {
        client
            .batch_execute("BEGIN; LOCK TABLE revolve_heads, revolve_revisions IN EXCLUSIVE MODE")
            .map_err(db)?;
        let holds_data: bool = client.query_one(HOLDS_DATA, &[]).map_err(db)?.get(0);
        if !holds_data {
            return Ok(None);
        }
        let schema: String = client
            .query_one("SELECT current_schema()", &[])
            .map_err(db)?
            .get(0);
        Ok(Some(schema))
    })?;
    if let Some(schema) = holds_data {
        let target = engine.pool().connector().target();
        return Err(BackupError::NotEmpty {
            path: PathBuf::from(format!("{target} (schema {schema})")),
        });
    }
    Ok(Box::new(PgImport {
        engine,
        store,
        worker,
        collection: None,
        staged: Staged::default(),
        registered: Vec::new(),
        max_run: 0,
    }))
}

/// What the writer learns while it writes: the failure records that name their document's live
/// head, per collection row and version.
#[derive(Default)]
struct Written {
    failed: BTreeMap<(i32, u32), i64>,
    committed: bool,
}

/// Work for the writer, on its connection, inside the import's transaction.
type Job = Box<dyn FnOnce(&mut Client, &mut Written) -> Result<(), StoreError> + Send>;

/// Batches queued for the writer at most: what an import holds in memory is this many batches,
/// the one being written and the one being staged.
const QUEUED: usize = 2;

/// The import's writer: a thread with a connection of the pool that runs the import's
/// transaction, so that reading and decoding the backup goes on while PostgreSQL writes the
/// batch before. After a job fails, the rest are skipped; when the queue closes, what did not
/// commit is rolled back.
struct Worker {
    jobs: Option<SyncSender<Job>>,
    handle: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Worker {
    fn start(shared: Arc<Shared>) -> Result<Self, BackupError> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUED);
        let handle = std::thread::Builder::new()
            .name("revolve-import".to_owned())
            .spawn(move || {
                let mut conn = shared.pool.get()?;
                let mut written = Written::default();
                let mut result = Ok(());
                for job in queue {
                    if result.is_ok() {
                        result = job(&mut conn.client, &mut written);
                    }
                }
                if !written.committed {
                    if let Err(error) = conn.client.batch_execute("ROLLBACK") {
                        // The server undoes a transaction whose connection is gone.
                        tracing::warn!(error = %crate::error::format::chain(&db(error)), "could not roll back an import");
                    }
                }
                result
            })?;
        Ok(Self {
            jobs: Some(jobs),
            handle: Some(handle),
        })
    }

    /// Queues a job.
    fn send(&mut self, job: Job) -> Result<(), StoreError> {
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.stop().err().unwrap_or_else(stopped))
        }
    }

    /// Runs a job once every job before it ran, and returns what it returns.
    fn call<R: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Client, &mut Written) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = mpsc::channel();
        self.send(Box::new(move |client, written| {
            let value = work(client, written)?;
            let _ = reply.send(value);
            Ok(())
        }))?;
        match answer.recv() {
            Ok(value) => Ok(value),
            // The job, or one before it, failed: the writer says why.
            Err(_) => Err(self.stop().err().unwrap_or_else(stopped)),
        }
    }

    /// Closes the queue and waits for the writer: its first error, if any.
    fn stop(&mut self) -> Result<(), StoreError> {
        self.jobs = None;
        match self.handle.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(stopped()),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // An import neither finished nor aborted leaves nothing behind either.
        let _ = self.stop();
    }
}

/// The error of a writer that stopped without one of its own (it panicked).
fn stopped() -> StoreError {
    StoreError::Unsupported {
        operation: "an import whose writer stopped",
        engine: "PostgreSQL",
    }
}

/// A failure record staged: its id, version and run columns, its bytes, and the record decoded
/// when it decodes.
type StagedFailure = (String, i32, i64, Vec<u8>, Option<FailureRecord>);

/// What an import has read and not yet written, for the collection being loaded.
#[derive(Default)]
struct Staged {
    heads: Vec<(String, i64, i32, bool)>,
    revisions: Vec<(String, i64, Vec<u8>)>,
    revision_bytes: usize,
    failures: Vec<StagedFailure>,
    runs: Vec<(i64, Vec<u8>)>,
    progress: Vec<(i64, Vec<u8>)>,
}

impl Staged {
    fn full(&self) -> bool {
        [
            self.heads.len(),
            self.revisions.len(),
            self.failures.len(),
            self.runs.len(),
            self.progress.len(),
        ]
        .into_iter()
        .any(|rows| rows >= BATCH_ROWS)
            || self.revision_bytes >= BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.heads.is_empty()
            && self.revisions.is_empty()
            && self.failures.is_empty()
            && self.runs.is_empty()
            && self.progress.is_empty()
    }

    /// Writes the batch for collection row `collection` (`name`), in the order the tables
    /// depend on each other: heads before the failure records counted against them.
    fn write(
        self,
        client: &mut Client,
        written: &mut Written,
        name: &str,
        collection: i32,
    ) -> Result<(), StoreError> {
        if !self.heads.is_empty() {
            let types = [Type::INT4, Type::TEXT, Type::INT8, Type::INT4, Type::BOOL];
            let mut writer =
                BinaryCopyInWriter::new(client.copy_in(COPY_HEADS).map_err(db)?, &types);
            for (id, revision, version, removed) in &self.heads {
                writer
                    .write(&[&collection, id, revision, version, removed])
                    .map_err(db)?;
            }
            writer.finish().map_err(db)?;
        }
        if !self.revisions.is_empty() {
            let types = [Type::INT4, Type::TEXT, Type::INT8, Type::BYTEA];
            let mut writer =
                BinaryCopyInWriter::new(client.copy_in(COPY_REVISIONS).map_err(db)?, &types);
            for (id, revision, record) in &self.revisions {
                writer
                    .write(&[&collection, id, revision, record])
                    .map_err(db)?;
            }
            writer.finish().map_err(db)?;
        }
        if !self.failures.is_empty() {
            let ids: Vec<&str> = self.failures.iter().map(|f| f.0.as_str()).collect();
            let mut heads = BTreeMap::new();
            for row in client.query(HEADS_OF, &[&collection, &ids]).map_err(db)? {
                if let Some(head) = head_of(row.get(1), row.get(2), row.get(3)) {
                    heads.insert(row.get::<_, String>(0), head);
                }
            }
            for (id, _, _, _, failure) in &self.failures {
                // Counted as sled counts it: when it names the document's live head.
                if let (Some(failure), Some(head)) = (failure, heads.get(id)) {
                    if !head.removed
                        && head.revision.get() == failure.revision
                        && head.version == failure.version
                    {
                        *written
                            .failed
                            .entry((collection, head.version))
                            .or_default() += 1;
                    }
                }
            }
            let versions: Vec<i32> = self.failures.iter().map(|f| f.1).collect();
            let runs: Vec<i64> = self.failures.iter().map(|f| f.2).collect();
            let records: Vec<&[u8]> = self.failures.iter().map(|f| f.3.as_slice()).collect();
            client
                .execute(
                    FAILURES_INSERT,
                    &[&collection, &ids, &versions, &runs, &records],
                )
                .map_err(db)?;
        }
        if !self.runs.is_empty() {
            let (runs, records): (Vec<i64>, Vec<Vec<u8>>) = self.runs.into_iter().unzip();
            client
                .execute(RUNS_INSERT, &[&name, &runs, &records])
                .map_err(db)?;
        }
        if !self.progress.is_empty() {
            let (runs, records): (Vec<i64>, Vec<Vec<u8>>) = self.progress.into_iter().unzip();
            client
                .execute(PROGRESS_INSERT, &[&collection, &runs, &records])
                .map_err(db)?;
        }
        Ok(())
    }
}

/// A backup being loaded into a PostgreSQL store (see [`Import`]).
struct PgImport<'a> {
    engine: &'a PgEngine,
    store: &'a Store,
    worker: Worker,
    /// The collection being loaded: its name and row id.
    collection: Option<(String, i32)>,
    staged: Staged,
    /// The collections loaded with a `_meta` record.
    registered: Vec<String>,
    /// The highest migration run id the backup names.
    max_run: u64,
}

impl PgImport<'_> {
    fn record(&mut self, record: LogicalRecord) -> Result<(), BackupError> {
        if let Some(run) = record.run().filter(|&run| run < MAX_PLAUSIBLE_RUN_ID) {
            self.max_run = self.max_run.max(run);
        }
        if let LogicalRecord::Collection { name, meta } = record {
            self.flush()?;
            if meta.is_some() {
                self.registered.push(name.clone());
            }
            let key = name.clone();
            // The schema history goes to its own table (see `meta`).
            let meta = meta.as_deref().map(meta::split_or_whole);
            let id: i32 = self.worker.call(move |client, _| {
                let record = meta.as_ref().map(|meta| meta.record.as_slice());
                let id: i32 = client
                    .query_one(COLLECTION_PUT, &[&key, &record])
                    .map_err(db)?
                    .get(0);
                if let Some(meta) = &meta {
                    meta::HistoryRows::new(meta, 0)?
                        .insert(client, id)
                        .map_err(db)?;
                }
                Ok(id)
            })?;
            self.collection = Some((name, id));
            return Ok(());
        }
        if !matches!(&self.collection, Some((name, _)) if name == record.collection()) {
            // `read_backup` checks the order; this only keeps a record out of another's table.
            return Err(BackupError::Store(StoreError::Unsupported {
                operation: "importing a record outside its collection",
                engine: "PostgreSQL",
            }));
        }
        let staged = &mut self.staged;
        match record {
            LogicalRecord::Collection { .. } => {}
            LogicalRecord::Head { id, head, .. } => staged.heads.push((
                id,
                i64::try_from(head.revision.get()).map_err(|_| too_large("revision"))?,
                i32::try_from(head.version).map_err(|_| too_large("version"))?,
                head.removed,
            )),
            LogicalRecord::Revision {
                id,
                revision,
                envelope,
                ..
            } => {
                staged.revision_bytes += envelope.len() + id.len();
                staged.revisions.push((
                    id,
                    i64::try_from(revision.get()).map_err(|_| too_large("revision"))?,
                    envelope,
                ));
            }
            LogicalRecord::Failure { id, record, .. } => {
                let failure = record::decode_payload::<FailureRecord>(&record, 8).ok();
                let (version, run) = failure.as_ref().map_or((0, 0), |failure| {
                    (
                        i32::try_from(failure.version).unwrap_or(i32::MAX),
                        i64::try_from(failure.run).unwrap_or(i64::MAX),
                    )
                });
                staged.failures.push((id, version, run, record, failure));
            }
            LogicalRecord::LedgerRun { run, record, .. } => {
                staged.runs.push((sql_run(run)?, record));
            }
            LogicalRecord::RunProgress { run, record, .. } => {
                staged.progress.push((sql_run(run)?, record));
            }
        }
        if self.staged.full() {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands what is staged to the writer.
    fn flush(&mut self) -> Result<(), StoreError> {
        let Some((name, collection)) = self.collection.clone() else {
            return Ok(());
        };
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        self.worker.send(Box::new(move |client, written| {
            staged.write(client, written, &name, collection)
        }))
    }

    /// Counts, run ids, commit.
    fn complete(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        let max_run = sql_run(self.max_run)?;
        self.worker.call(move |client, written| {
            client
                .batch_execute("DELETE FROM revolve_counts")
                .map_err(db)?;
            client.execute(COUNT_HEADS, &[]).map_err(db)?;
            let failed = std::mem::take(&mut written.failed);
            if !failed.is_empty() {
                let mut collections = Vec::new();
                let mut versions = Vec::new();
                let mut counts = Vec::new();
                for ((collection, version), n) in failed {
                    collections.push(collection);
                    versions.push(i32::try_from(version).unwrap_or(i32::MAX));
                    counts.push(n);
                }
                client
                    .execute(COUNTS_INSERT, &[&collections, &versions, &counts])
                    .map_err(db)?;
            }
            if max_run > 0 {
                // Not undone by a rollback: at worst run ids skip ahead.
                client.execute(RAISE_RUN_IDS, &[&max_run]).map_err(db)?;
            }
            client.batch_execute("COMMIT").map_err(db)?;
            written.committed = true;
            Ok(())
        })?;
        self.worker.stop()?;
        // Commits from programs older than the newest version registered are refused from now
        // on, as if each collection had been opened by its newest program.
        for name in std::mem::take(&mut self.registered) {
            if let Some(meta) = self.store.read_meta(&name)? {
                self.engine
                    .open_collection(&name)?
                    .registered(meta.newest_version)?;
            }
        }
        Ok(())
    }
}

fn too_large(what: &'static str) -> StoreError {
    StoreError::Unsupported {
        operation: match what {
            "revision" => "a revision number above 2^63",
            _ => "a schema version above 2^31",
        },
        engine: "PostgreSQL",
    }
}

impl Import for PgImport<'_> {
    fn frame(&mut self, frame: Frame) -> Result<(), BackupError> {
        match frame {
            Frame::Record(record) => self.record(record),
            Frame::Tree(_) | Frame::Entry(..) => Err(BackupError::Store(StoreError::Unsupported {
                operation: "importing a format-1 backup (import it into a sled store, export that and import the new backup)",
                engine: "PostgreSQL",
            })),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<(), BackupError> {
        Ok(self.complete()?)
    }

    fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        // The writer rolls back what it did not commit; an error it met is why the import
        // stops, and reported by the caller already.
        let _ = self.worker.stop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_columns_out_of_range_hold_no_head() {
        assert_eq!(head_of(0, 1, false), None);
        assert_eq!(head_of(-4, 1, false), None);
        assert_eq!(head_of(1, -1, false), None);
        assert_eq!(
            head_of(3, 2, true),
            Some(Head {
                revision: Revision::new(3).unwrap(),
                version: 2,
                removed: true,
            })
        );
    }
}
