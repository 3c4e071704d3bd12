//! Runs with many workers (`Migration::join`): every process that joins claims chunks of its own
//! and commits each in one transaction with its claim.
//!
//! - The collection's lease row (`lease`) is taken with the holder `fleet` by the first worker;
//!   every worker's heartbeat extends it, so that no other run starts while any worker lives, and
//!   joining and leaving lock it, so that the last worker to leave knows it is the last.
//! - Each worker has a row of its own (`revolve_fleet_workers`): its lease, renewed from a thread
//!   of its own on the store's renewal connection (outside the pool, one per store) by the
//!   database's clock, and its counts, added by each chunk's transaction. No row is written by every chunk of every worker.
//! - A chunk is claimed with `FOR UPDATE OF h SKIP LOCKED` over the version index, per source
//!   version, after the worker's own keyset; its documents are processed while the transaction
//!   is open; the revisions, heads, failures and counts are written as a single-process run's
//!   commit writes them, in the same transaction. A chunk is claimed and written in pieces, each
//!   processed on a thread of its own while the server claims the next and writes the one
//!   before: a worker's processing and its server's work overlap on its one connection. A worker that dies loses its open transaction
//!   only: its row locks go with its connection, and another worker claims those documents.
//! - Fencing: each chunk's transaction key-share-locks the worker's row (a heartbeat, which updates
//!   other columns, does not wait for it) and checks that its lease is unexpired, and its last
//!   statement, which adds the chunk's counts to that row, checks it again: a worker whose lease
//!   expired mid-chunk (a stalled process) has its chunk rolled back and cannot write as the run.
//!   The last worker to leave waits for every other worker's open chunk (a row lock) before it
//!   ends the run. No chunk locks the collection's lease row, which the heartbeats update: share
//!   locks taken by chunks that overlap without a gap would starve that update. The run id is the
//!   term: ids are never reused, and a run whose workers all stopped is never resumed under its id.
//! - A limit caps the run: before a chunk, a worker reserves up to a chunk of what is left of it
//!   (lock order: the worker's row, then the run's); the chunk's transaction gives back what it
//!   did not use; a live worker clears the reservation of one whose lease expired.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::SystemTime;

use parking_lot::{Condvar, Mutex};
use postgres::{Statement, Transaction};

use super::collection::{sql_version, PgCollection, Statements};
use super::error::db;
use super::{lease, pending};
use super::{sql_run, Shared};
use crate::record::Origin;
use crate::store::counters::Counter;
use crate::store::engine::{
    refuse_older, Action, ChunkItem, Claimed, Commit, Ending, Joined, Left, Outcome,
    PendingDocument, Process, RunCounts, RunSettings, Worker, WorkerInfo, WorkerRow,
};
use crate::store::StoreError;

/// The lease row's holder for a run with many workers.
const HOLDER: &str = "fleet";

/// Takes the collection's lease for run `$2` if it is free (or expired).
const ACQUIRE: &str = "INSERT INTO revolve_run_leases (collection, run, holder, expires)
     VALUES ($1, $2, 'fleet', clock_timestamp() + make_interval(secs => $3))
     ON CONFLICT (collection) DO UPDATE
         SET run = excluded.run, holder = excluded.holder, expires = excluded.expires
         WHERE revolve_run_leases.expires < clock_timestamp()
     RETURNING run";
/// The lease row as it is (locked by the `ACQUIRE` that did not take it).
const HELD: &str = "SELECT run, holder FROM revolve_run_leases WHERE collection = $1 FOR UPDATE";
const RUN_INSERT: &str = "INSERT INTO revolve_fleet_runs
     (collection, run, target, fingerprint, run_limit, retry_failed)
     VALUES ($1, $2, $3, $4, $5, $6)";
const RUN_SETTINGS: &str = "SELECT target, fingerprint, run_limit, retry_failed
     FROM revolve_fleet_runs WHERE collection = $1 AND run = $2 AND state = 'running'";
const WORKER_INSERT: &str = "INSERT INTO revolve_fleet_workers
     (collection, run, worker, instance, host, pid, started, heartbeat, expires)
     VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), clock_timestamp(),
             clock_timestamp() + make_interval(secs => $7))";
const LEASE_EXTEND: &str = "UPDATE revolve_run_leases
     SET expires = GREATEST(expires, clock_timestamp() + make_interval(secs => $3))
     WHERE collection = $1 AND run = $2";
/// A heartbeat: only a worker whose lease has not expired renews it.
const HEARTBEAT: &str = "UPDATE revolve_fleet_workers
     SET heartbeat = clock_timestamp(), expires = clock_timestamp() + make_interval(secs => $4)
     WHERE collection = $1 AND run = $2 AND worker = $3 AND NOT gone
       AND expires > clock_timestamp()";
/// A chunk's first statement: the newest registered version, whether the worker's lease holds,
/// what it has reserved, and whether any failure record names a document of the collection. The
/// worker's row is key-share-locked until the commit: peers that wait for a worker's open chunk
/// lock it `FOR UPDATE`, which conflicts; the heartbeat's update, which does not touch the key,
/// does not.
const FLEET_BEGIN: &str =
    "SELECT c.newest, w.expires > clock_timestamp() AND NOT w.gone, w.reserved,
         EXISTS (SELECT 1 FROM revolve_failures f WHERE f.collection = $1)
     FROM revolve_collections c
     JOIN revolve_fleet_workers w ON w.collection = c.id AND w.run = $2 AND w.worker = $3
     WHERE c.id = $1
     FOR KEY SHARE OF w";
/// The next pending heads of one version after `$3`, locked, skipping those another
/// transaction holds, with their revisions' bytes and whether a failure record names them;
/// a document whose failure this run may not retry (`$5`: retrying failures recorded before run
/// `$6`) is left out.
const CLAIM: &str = "SELECT h.id, h.revision, h.version,
         (SELECT r.record FROM revolve_revisions r
          WHERE r.collection = h.collection AND r.id = h.id AND r.revision = h.revision),
         EXISTS (SELECT 1 FROM revolve_failures f WHERE f.collection = h.collection AND f.id = h.id)
     FROM revolve_heads h
     WHERE h.collection = $1 AND NOT h.removed AND (h.version, h.id) > ($2, $3) AND h.version <= $2
       AND NOT EXISTS (SELECT 1 FROM revolve_failures f
                       WHERE f.collection = h.collection AND f.id = h.id
                         AND (NOT $5 OR f.run >= $6))
     ORDER BY h.version, h.id LIMIT $4
     FOR UPDATE OF h SKIP LOCKED";
/// [`CLAIM`] where no failure record names a document of the collection: no look-up per row.
/// A failure recorded since by a peer of the run is found by [`UNRETRIABLE`]; an earlier run's
/// cannot be recorded while this one runs.
const CLAIM_CLEAN: &str = "SELECT h.id, h.revision, h.version,
         (SELECT r.record FROM revolve_revisions r
          WHERE r.collection = h.collection AND r.id = h.id AND r.revision = h.revision),
         false
     FROM revolve_heads h
     WHERE h.collection = $1 AND NOT h.removed AND (h.version, h.id) > ($2, $3) AND h.version <= $2
     ORDER BY h.version, h.id LIMIT $4
     FOR UPDATE OF h SKIP LOCKED";
/// Of the documents claimed, those with a failure record the run may not retry, as a statement
/// started after the locks were taken sees them: a peer that failed a document and committed
/// while the claim ran leaves its head as it was, so the claim's snapshot may miss the record.
/// Where the collection has no failure record at all, one look-up answers (a one-time filter),
/// not one per document.
const UNRETRIABLE: &str = "SELECT id FROM revolve_failures
     WHERE collection = $1 AND id = ANY($2) AND (NOT $3 OR run >= $4)
       AND EXISTS (SELECT 1 FROM revolve_failures WHERE collection = $1)";
/// A chunk's last statement: its counts on the worker's row (with the worker's failures per
/// class so far, when the chunk failed any), its reservation given back, if the worker's lease
/// still holds (the fence at the commit: 0 rows when it expired meanwhile); and the run's counts
/// over all its workers as committed before this chunk (the statement's snapshot, which the
/// updates it makes do not change).
const TALLY: &str = "WITH worker AS (
         UPDATE revolve_fleet_workers
         SET taken = taken + $4::int8, migrated = migrated + $5::int8, failed = failed + $6::int8,
             skipped = skipped + $7::int8, reserved = 0,
             failures_by_class = COALESCE($9::text::jsonb, failures_by_class)
         WHERE collection = $1 AND run = $2 AND worker = $3 AND NOT gone
           AND expires > clock_timestamp()
         RETURNING 1),
     run AS (
         UPDATE revolve_fleet_runs SET reserved = reserved - $8::int8
         WHERE collection = $1 AND run = $2 AND $8::int8 > 0 AND EXISTS (SELECT 1 FROM worker)
         RETURNING 1)
     SELECT (SELECT count(*) FROM worker), s.taken, s.migrated, s.failed, s.skipped
     FROM (SELECT COALESCE(sum(taken), 0)::int8 AS taken,
                  COALESCE(sum(migrated), 0)::int8 AS migrated,
                  COALESCE(sum(failed), 0)::int8 AS failed,
                  COALESCE(sum(skipped), 0)::int8 AS skipped
           FROM revolve_fleet_workers WHERE collection = $1 AND run = $2) AS s";
/// The run's counts over all its workers as committed (a worker's baseline as it joins).
const RUN_COUNTS: &str = "SELECT COALESCE(sum(taken), 0)::int8, COALESCE(sum(migrated), 0)::int8,
         COALESCE(sum(failed), 0)::int8, COALESCE(sum(skipped), 0)::int8
     FROM revolve_fleet_workers WHERE collection = $1 AND run = $2";
const RESERVE_WORKER: &str = "SELECT 1 FROM revolve_fleet_workers
     WHERE collection = $1 AND run = $2 AND worker = $3 AND NOT gone
       AND expires > clock_timestamp() FOR UPDATE";
const RESERVE_RUN: &str = "WITH old AS (
         SELECT reserved, run_limit FROM revolve_fleet_runs
         WHERE collection = $1 AND run = $2 FOR UPDATE)
     UPDATE revolve_fleet_runs r
     SET reserved = r.reserved + GREATEST(0, LEAST($3::int8, o.run_limit - o.reserved))
     FROM old o WHERE r.collection = $1 AND r.run = $2
     RETURNING GREATEST(0, LEAST($3::int8, o.run_limit - o.reserved))::int8";
const RESERVE_KEEP: &str = "UPDATE revolve_fleet_workers SET reserved = reserved + $4
     WHERE collection = $1 AND run = $2 AND worker = $3";
/// The reservations of workers whose lease expired, given back (rows a transaction still holds
/// are left for a later look).
const RELEASE_EXPIRED: &str = "WITH dead AS (
         SELECT worker, reserved FROM revolve_fleet_workers
         WHERE collection = $1 AND run = $2 AND reserved > 0
           AND (gone OR expires < clock_timestamp())
         FOR UPDATE SKIP LOCKED),
     cleared AS (
         UPDATE revolve_fleet_workers w SET reserved = 0 FROM dead d
         WHERE w.collection = $1 AND w.run = $2 AND w.worker = d.worker RETURNING 1)
     UPDATE revolve_fleet_runs
     SET reserved = reserved - (SELECT COALESCE(sum(reserved), 0) FROM dead)
     WHERE collection = $1 AND run = $2 AND EXISTS (SELECT 1 FROM dead)
       AND (SELECT count(*) FROM cleared) >= 0";
/// Whether a peer works: its lease is live and it is not idle, or it is in a chunk (its row is
/// locked; the chunk of a peer whose lease expired meanwhile is waited for until it ends).
const PEERS_WORKING: &str = "SELECT EXISTS (SELECT 1 FROM revolve_fleet_workers
         WHERE collection = $1 AND run = $2 AND worker <> $3 AND NOT gone AND NOT idle
           AND expires > clock_timestamp())
     OR (SELECT count(*) FROM revolve_fleet_workers
         WHERE collection = $1 AND run = $2 AND worker <> $3 AND NOT gone)
        > (SELECT count(*) FROM (SELECT 1 FROM revolve_fleet_workers
             WHERE collection = $1 AND run = $2 AND worker <> $3 AND NOT gone
             FOR UPDATE SKIP LOCKED) AS free)";
const IDLE: &str = "UPDATE revolve_fleet_workers SET idle = $4
     WHERE collection = $1 AND run = $2 AND worker = $3";
const CANCELLED: &str =
    "SELECT cancel_requested FROM revolve_fleet_runs WHERE collection = $1 AND run = $2";
const CANCEL: &str = "UPDATE revolve_fleet_runs SET cancel_requested = true
     WHERE collection = $1 AND run = $2 AND state = 'running'";
const LEAVE_LOCK: &str =
    "SELECT 1 FROM revolve_run_leases WHERE collection = $1 AND run = $2 FOR UPDATE";
/// The worker marked gone, its reservation given back to the run (lock order: the worker's row,
/// then the run's, as a reservation takes them).
const LEAVE: &str = "WITH old AS (
         SELECT reserved FROM revolve_fleet_workers
         WHERE collection = $1 AND run = $2 AND worker = $3 FOR UPDATE),
     gone AS (
         UPDATE revolve_fleet_workers
         SET gone = true, reserved = 0, heartbeat = clock_timestamp()
         WHERE collection = $1 AND run = $2 AND worker = $3 RETURNING 1)
     UPDATE revolve_fleet_runs
     SET reserved = reserved - (SELECT COALESCE(sum(reserved), 0) FROM old)
     WHERE collection = $1 AND run = $2 AND EXISTS (SELECT 1 FROM gone)
       AND (SELECT COALESCE(sum(reserved), 0) FROM old) > 0";
const OTHERS_LIVE: &str = "SELECT EXISTS (SELECT 1 FROM revolve_fleet_workers
     WHERE collection = $1 AND run = $2 AND worker <> $3 AND NOT gone
       AND expires > clock_timestamp())";
/// Whether another worker that has not left is in a chunk (its row is locked): the last worker
/// does not end the run under an open chunk, which may roll back and leave documents pending
/// (a worker whose lease expired mid-chunk has it rolled back by its own fence).
const PEERS_IN_CHUNK: &str = "SELECT (SELECT count(*) FROM revolve_fleet_workers
         WHERE collection = $1 AND run = $2 AND worker <> $3 AND NOT gone)
     > (SELECT count(*) FROM (SELECT 1 FROM revolve_fleet_workers
         WHERE collection = $1 AND run = $2 AND worker <> $3 AND NOT gone
         FOR UPDATE SKIP LOCKED) AS free)";
/// The run ended, once: a worker that finds it ended already is not its last.
const END_RUN: &str = "UPDATE revolve_fleet_runs SET state = $3, reserved = 0
     WHERE collection = $1 AND run = $2 AND state = 'running' RETURNING 1";
const RELEASE: &str =
    "DELETE FROM revolve_run_leases WHERE collection = $1 AND run = $2 AND holder = 'fleet'";
const WORKERS: &str = "SELECT worker, instance, host, pid, started, heartbeat,
         NOT gone AND expires > clock_timestamp(), taken, migrated, failed, skipped,
         failures_by_class::text
     FROM revolve_fleet_workers WHERE collection = $1 AND run = $2 ORDER BY started, worker";

impl PgCollection {
    /// See [`CollectionEngine::join_run`](crate::store::engine::CollectionEngine::join_run).
    pub(super) fn join(
        &self,
        run: u64,
        settings: &RunSettings,
        info: &WorkerInfo,
    ) -> Result<Joined<'_>, StoreError> {
        let seconds = self.shared.run_lease.as_secs_f64();
        let worker = crate::id::DocId::generate().into_string();
        let pid = i64::from(info.pid);
        let limit = settings
            .limit
            .map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let mut conn = self.shared.pool.get()?;
        let mut tx = conn.client.transaction().map_err(db)?;
        let taken = tx
            .query_opt(ACQUIRE, &[&self.id, &sql_run(run)?, &seconds])
            .map_err(db)?
            .is_some();
        let (run, first) = if taken {
            tx.execute(
                RUN_INSERT,
                &[
                    &self.id,
                    &sql_run(run)?,
                    &sql_version(settings.target),
                    &settings.fingerprint,
                    &limit,
                    &settings.retry_failed,
                ],
            )
            .map_err(db)?;
            (run, true)
        } else {
            let Some(row) = tx.query_opt(HELD, &[&self.id]).map_err(db)? else {
                // Released between the two statements: the caller tries again.
                return Ok(Joined::Busy(0));
            };
            let held = row.get::<_, i64>(0).unsigned_abs();
            if row.get::<_, String>(1) != HOLDER {
                return Ok(Joined::Busy(held));
            }
            let Some(row) = tx
                .query_opt(RUN_SETTINGS, &[&self.id, &sql_run(held)?])
                .map_err(db)?
            else {
                return Ok(Joined::Busy(held));
            };
            let theirs = RunSettings {
                target: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
                fingerprint: row.get(1),
                limit: row.get::<_, Option<i64>>(2).map(i64::unsigned_abs),
                retry_failed: row.get(3),
            };
            if theirs != *settings {
                return Ok(Joined::Other {
                    run: held,
                    settings: theirs,
                });
            }
            tx.execute(LEASE_EXTEND, &[&self.id, &sql_run(held)?, &seconds])
                .map_err(db)?;
            (held, false)
        };
        tx.execute(
            WORKER_INSERT,
            &[
                &self.id,
                &sql_run(run)?,
                &worker,
                &info.instance,
                &info.host,
                &pid,
                &seconds,
            ],
        )
        .map_err(db)?;
        let baseline = counts(
            &tx.query_one(RUN_COUNTS, &[&self.id, &sql_run(run)?])
                .map_err(db)?,
            0,
        );
        tx.commit().map_err(db)?;
        drop(conn);
        let heart = self.start_heart(run, &worker)?;
        let mut pg = PgWorker {
            collection: self,
            run,
            worker,
            target: settings.target,
            limited: settings.limit.is_some(),
            retry_failed: settings.retry_failed,
            segments: VecDeque::new(),
            classes: BTreeMap::new(),
            baseline,
            ended: false,
            heart,
        };
        if let Err(error) = pg.rewind() {
            let _ = pg.leave(Ending::Failed);
            let _ = Box::new(pg).release();
            return Err(error);
        }
        Ok(Joined::Worker {
            worker: Box::new(pg),
            first,
        })
    }

    /// The heartbeat of a worker that just joined; should it not start, the worker's row is
    /// marked gone, so that no peer waits for a worker that never began.
    fn start_heart(&self, run: u64, worker: &str) -> Result<Heart, StoreError> {
        Heart::start(&self.shared, self.id, run, worker.to_owned()).inspect_err(|_| {
            if let (Ok(mut conn), Ok(run)) = (self.shared.pool.get(), sql_run(run)) {
                let _ = conn.client.execute(LEAVE, &[&self.id, &run, &worker]);
            }
        })
    }

    /// See [`CollectionEngine::run_workers`](crate::store::engine::CollectionEngine::run_workers).
    pub(super) fn workers(&self, run: u64) -> Result<Vec<WorkerRow>, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(WORKERS)?;
        let rows = conn
            .client
            .query(&statement, &[&self.id, &sql_run(run)?])
            .map_err(db)?;
        let count = |n: i64| n.unsigned_abs();
        Ok(rows
            .iter()
            .map(|row| WorkerRow {
                worker: row.get(0),
                info: WorkerInfo {
                    instance: row.get(1),
                    host: row.get(2),
                    pid: u32::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                },
                started: row.get::<_, SystemTime>(4),
                heartbeat: row.get::<_, SystemTime>(5),
                live: row.get(6),
                taken: count(row.get(7)),
                migrated: count(row.get(8)),
                failed: count(row.get(9)),
                skipped: count(row.get(10)),
                failures_by_class: classes(row.get(11)),
            })
            .collect())
    }

    /// See [`CollectionEngine::cancel_run`](crate::store::engine::CollectionEngine::cancel_run).
    pub(super) fn cancel(&self, run: u64) -> Result<bool, StoreError> {
        let mut conn = self.shared.pool.get()?;
        let statement = conn.statement(CANCEL)?;
        Ok(conn
            .client
            .execute(&statement, &[&self.id, &sql_run(run)?])
            .map_err(db)?
            > 0)
    }
}

/// How many documents a chunk claims, processes and writes at a time: while one piece is
/// written, the next is processed on a thread of its own, so that a worker's processing and its
/// server's work on the chunk (one connection, one transaction) overlap.
const PIECE: usize = 250;

/// What a chunk's pieces are claimed and written with.
struct Part<'p, 't> {
    tx: &'p mut Transaction<'t>,
    statements: &'p Statements,
    claim: Claim<'p>,
    unretriable: &'p Statement,
    /// The worker's keyset, moved on past what is claimed.
    segments: &'p mut VecDeque<(i32, String)>,
    /// Whether a failure record named a document of the collection as the chunk began. Where
    /// none did, none names a document the chunk keeps: one recorded since by a peer is found
    /// by [`UNRETRIABLE`] (which leaves the document out), an earlier run's cannot be recorded
    /// while this run holds the lease, and none can be while the chunk holds the head's lock.
    /// So no statement looks for one to clear.
    failures: bool,
}

/// A chunk as written: its items in claim order, whether a failure record named each, their
/// outcomes, and the count deltas.
#[derive(Default)]
struct Written {
    items: Vec<ChunkItem>,
    known_failed: Vec<bool>,
    outcomes: Vec<Outcome>,
    deltas: BTreeMap<Counter, i64>,
}

/// The claim's statement: with a look-up of failure records per row, or without where the
/// collection has none.
#[derive(Clone, Copy)]
enum Claim<'a> {
    Filtered(&'a Statement),
    Clean(&'a Statement),
}

/// Four counts (taken, migrated, failed, skipped) from `row`'s columns from `first` on.
fn counts(row: &postgres::Row, first: usize) -> [i64; 4] {
    [
        row.get(first),
        row.get(first + 1),
        row.get(first + 2),
        row.get(first + 3),
    ]
}

/// A worker's failures per class, from its row's JSON object; an object that does not parse
/// (edited by hand) counts none, with a warning.
fn classes(json: &str) -> BTreeMap<String, u64> {
    serde_json::from_str(json).unwrap_or_else(|error| {
        tracing::warn!(%error, "a migration worker's failures per class do not parse; counted as none");
        BTreeMap::new()
    })
}

/// A worker of a joined run on PostgreSQL.
struct PgWorker<'a> {
    collection: &'a PgCollection,
    run: u64,
    worker: String,
    target: u32,
    limited: bool,
    retry_failed: bool,
    /// Per source version left to claim from, oldest first: the version and the last id this
    /// worker claimed in it.
    segments: VecDeque<(i32, String)>,
    /// Its failures per class, as its row has them.
    classes: BTreeMap<String, u64>,
    /// The run's counts as it joined.
    baseline: [i64; 4],
    /// Whether it ended the run as it left: it releases the run's lease once the ledger has the
    /// run's final record (until then the run reads as live, never as interrupted).
    ended: bool,
    heart: Heart,
}

impl PgWorker<'_> {
    fn key(&self) -> Result<(i32, i64), StoreError> {
        Ok((self.collection.id, sql_run(self.run)?))
    }

    fn lost(&self) -> StoreError {
        StoreError::WorkerLeaseLost {
            collection: self.collection.name.clone(),
            run: self.run,
        }
    }

    /// Adds a chunk's counts (taken, migrated, failed, skipped) to the worker's row and gives
    /// back `give_back` of its reservation, in `tx`: the run's counts since this worker joined,
    /// the chunk's included; `None` when the worker's lease expired.
    fn tally(
        &self,
        tx: &mut Transaction<'_>,
        statement: &Statement,
        chunk: [i64; 4],
        give_back: i64,
        classes: Option<&str>,
    ) -> Result<Option<RunCounts>, StoreError> {
        let (collection, run) = self.key()?;
        let [taken, migrated, failed, skipped] = chunk;
        let row = tx
            .query_one(
                statement,
                &[
                    &collection,
                    &run,
                    &self.worker,
                    &taken,
                    &migrated,
                    &failed,
                    &skipped,
                    &give_back.max(0),
                    &classes,
                ],
            )
            .map_err(db)?;
        if row.get::<_, i64>(0) == 0 {
            return Ok(None);
        }
        let before = counts(&row, 1);
        let since = |i: usize| u64::try_from(before[i] + chunk[i] - self.baseline[i]).unwrap_or(0);
        Ok(Some(RunCounts {
            taken: since(0),
            migrated: since(1),
            failed: since(2),
            skipped: since(3),
        }))
    }

    /// A chunk of up to `limit` documents claimed and written piece by piece in `part`'s
    /// transaction, each piece processed by `process` on a thread of its own while the pieces
    /// before it are written.
    fn pieces(
        &self,
        part: &mut Part<'_, '_>,
        limit: usize,
        process: &mut Process<'_>,
    ) -> Result<Written, StoreError> {
        std::thread::scope(|scope| {
            let (to_process, claimed) = mpsc::channel::<Vec<PendingDocument>>();
            let (to_write, processed) = mpsc::channel();
            let processing = std::thread::Builder::new()
                .name("revolve-chunk".to_owned())
                .spawn_scoped(scope, move || {
                    for piece in claimed {
                        if to_write.send(process(piece)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|source| StoreError::Io {
                    what: "cannot start the thread that processes a migration chunk".to_owned(),
                    source,
                })?;
            let written = self.claim_and_write(part, limit, &to_process, &processed);
            // The processing thread stops once the pieces stop coming (also after an error).
            drop((to_process, processed));
            if let Err(panic) = processing.join() {
                // The processing catches every step's and every conversion's panic: one here is
                // revolve's own, and it goes on as if it had happened on this thread.
                std::panic::resume_unwind(panic);
            }
            written
        })
    }

    /// Claims the pieces of a chunk and hands each to be processed, then writes each as it
    /// comes back.
    fn claim_and_write(
        &self,
        part: &mut Part<'_, '_>,
        limit: usize,
        to_process: &mpsc::Sender<Vec<PendingDocument>>,
        processed: &mpsc::Receiver<(Vec<ChunkItem>, Vec<bool>)>,
    ) -> Result<Written, StoreError> {
        let this = self.collection;
        let mut taken = 0;
        let mut sent = 0;
        while taken < limit && !part.segments.is_empty() {
            let piece = self.take(
                part.tx,
                part.claim,
                part.unretriable,
                PIECE.min(limit - taken),
                part.segments,
            )?;
            if piece.is_empty() {
                continue;
            }
            taken += piece.len();
            if to_process.send(piece).is_err() {
                // The processing thread is gone (it panicked): its join says so.
                break;
            }
            sent += 1;
        }
        let mut written = Written::default();
        for _ in 0..sent {
            let Ok((items, known_failed)) = processed.recv() else {
                break;
            };
            let applied = this.claim(part.tx, part.statements, &items)?;
            let mut batch = this.gather(&items, &applied)?;
            if !part.failures {
                batch.keep_failure_records();
            }
            this.write_rows(part.tx, part.statements, &mut batch)?;
            for (counter, delta) in batch.take_deltas() {
                *written.deltas.entry(counter).or_default() += delta;
            }
            written.outcomes.append(&mut batch.outcomes);
            drop(batch);
            written.items.extend(items);
            written.known_failed.extend(known_failed);
        }
        Ok(written)
    }

    /// The claim: up to `limit` pending documents, version by version, after this worker's
    /// keyset (`segments`, moved on past what is claimed), locked in `tx`, without those whose
    /// failure the run may not retry.
    fn take(
        &self,
        tx: &mut Transaction<'_>,
        claim: Claim<'_>,
        unretriable: &Statement,
        limit: usize,
        segments: &mut VecDeque<(i32, String)>,
    ) -> Result<Vec<PendingDocument>, StoreError> {
        let (collection, run) = self.key()?;
        let mut documents: Vec<PendingDocument> = Vec::with_capacity(limit);
        while documents.len() < limit {
            let Some((version, after)) = segments.front().cloned() else {
                break;
            };
            let want = limit - documents.len();
            let want_sql = i64::try_from(want).unwrap_or(i64::MAX);
            let rows = match claim {
                Claim::Filtered(statement) => tx.query(
                    statement,
                    &[
                        &collection,
                        &version,
                        &after,
                        &want_sql,
                        &self.retry_failed,
                        &run,
                    ],
                ),
                Claim::Clean(statement) => {
                    tx.query(statement, &[&collection, &version, &after, &want_sql])
                }
            }
            .map_err(db)?;
            let exhausted = rows.len() < want;
            for row in &rows {
                documents.push(pending::pending_document(&self.collection.name, row)?);
            }
            if exhausted {
                segments.pop_front();
            } else if let (Some(segment), Some(last)) = (segments.front_mut(), rows.last()) {
                segment.1 = last.get(0);
            }
        }
        if !documents.is_empty() {
            let ids: Vec<&str> = documents.iter().map(|d| d.id.as_str()).collect();
            let refused: HashSet<String> = tx
                .query(unretriable, &[&collection, &ids, &self.retry_failed, &run])
                .map_err(db)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if !refused.is_empty() {
                documents.retain(|d| !refused.contains(&d.id));
            }
        }
        Ok(documents)
    }
}

impl Worker for PgWorker<'_> {
    fn run(&self) -> u64 {
        self.run
    }

    fn taken_before(&self) -> u64 {
        u64::try_from(self.baseline[0]).unwrap_or(0)
    }

    fn reserve(&mut self, want: usize) -> Result<usize, StoreError> {
        if !self.limited {
            return Ok(want);
        }
        let (collection, run) = self.key()?;
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        let mut conn = self.collection.shared.pool.get()?;
        let mut tx = conn.client.transaction().map_err(db)?;
        if tx
            .query_opt(RESERVE_WORKER, &[&collection, &run, &self.worker])
            .map_err(db)?
            .is_none()
        {
            return Err(self.lost());
        }
        let granted: i64 = tx
            .query_opt(RESERVE_RUN, &[&collection, &run, &want])
            .map_err(db)?
            .map_or(0, |row| row.get(0));
        if granted > 0 {
            tx.execute(RESERVE_KEEP, &[&collection, &run, &self.worker, &granted])
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(usize::try_from(granted).unwrap_or(0))
    }

    fn claim(
        &mut self,
        limit: usize,
        writer: u32,
        process: &mut Process<'_>,
    ) -> Result<Option<Claimed>, StoreError> {
        let (collection, run) = self.key()?;
        let this = self.collection;
        let mut conn = this.shared.pool.get()?;
        let begin = conn.statement(FLEET_BEGIN)?;
        let claim = conn.statement(CLAIM)?;
        let claim_clean = conn.statement(CLAIM_CLEAN)?;
        let unretriable = conn.statement(UNRETRIABLE)?;
        let tally = conn.statement(TALLY)?;
        let (client, statements) = Statements::prepare(&mut conn)?;
        let mut tx = client.transaction().map_err(db)?;
        let Some(row) = tx
            .query_opt(&begin, &[&collection, &run, &self.worker])
            .map_err(db)?
        else {
            return Err(self.lost());
        };
        let (live, reserved, failures): (bool, i64, bool) = (row.get(1), row.get(2), row.get(3));
        if !live {
            return Err(self.lost());
        }
        refuse_older(
            &this.name,
            u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
            writer,
        )?;
        let mut segments = self.segments.clone();
        let claim = if failures {
            Claim::Filtered(&claim)
        } else {
            Claim::Clean(&claim_clean)
        };
        let mut part = Part {
            tx: &mut tx,
            statements: &statements,
            claim,
            unretriable: &unretriable,
            segments: &mut segments,
            failures,
        };
        let written = self.pieces(&mut part, limit, process)?;
        let taken = i64::try_from(written.items.len()).unwrap_or(i64::MAX);
        let give_back = if self.limited {
            reserved.saturating_sub(taken)
        } else {
            0
        };
        if written.items.is_empty() {
            if give_back > 0 || reserved > 0 {
                self.tally(&mut tx, &tally, [0; 4], give_back, None)?;
                tx.commit().map_err(db)?;
            }
            self.segments = segments;
            return Ok(None);
        }
        let mut commit = Commit::new(Origin::Migration { run: self.run }, writer);
        this.finish(
            &mut tx,
            &statements,
            &written.deltas,
            &written.outcomes,
            &mut commit,
        )?;
        let count = |which: Outcome| {
            i64::try_from(written.outcomes.iter().filter(|&&o| o == which).count())
                .unwrap_or(i64::MAX)
        };
        let counts = [
            taken,
            count(Outcome::Written),
            count(Outcome::Failed),
            count(Outcome::Skipped),
        ];
        let mut classes = self.classes.clone();
        for (item, outcome) in written.items.iter().zip(&written.outcomes) {
            if let (Action::Fail(failure), Outcome::Failed) = (&item.action, outcome) {
                *classes.entry(failure.class.clone()).or_insert(0) += 1;
            }
        }
        let changed = (classes != self.classes)
            .then(|| serde_json::to_string(&classes).unwrap_or_else(|_| "{}".to_owned()));
        let Some(run_counts) =
            self.tally(&mut tx, &tally, counts, give_back, changed.as_deref())?
        else {
            // The lease expired while the chunk was processed: the transaction rolls back as
            // it is dropped, and what it claimed is left to the run's other workers.
            return Err(self.lost());
        };
        tx.commit().map_err(db)?;
        self.segments = segments;
        self.classes = classes;
        Ok(Some(Claimed {
            items: written.items,
            known_failed: written.known_failed,
            outcomes: written.outcomes,
            run: run_counts,
        }))
    }

    fn cancelled(&mut self) -> Result<bool, StoreError> {
        let (collection, run) = self.key()?;
        let mut conn = self.collection.shared.pool.get()?;
        let statement = conn.statement(CANCELLED)?;
        Ok(conn
            .client
            .query_opt(&statement, &[&collection, &run])
            .map_err(db)?
            .is_some_and(|row| row.get(0)))
    }

    fn cancel(&mut self) -> Result<(), StoreError> {
        self.collection.cancel(self.run).map(drop)
    }

    fn idle(&mut self, idle: bool) -> Result<(), StoreError> {
        let (collection, run) = self.key()?;
        let mut conn = self.collection.shared.pool.get()?;
        let statement = conn.statement(IDLE)?;
        conn.client
            .execute(&statement, &[&collection, &run, &self.worker, &idle])
            .map_err(db)?;
        Ok(())
    }

    fn peers_working(&mut self) -> Result<bool, StoreError> {
        let (collection, run) = self.key()?;
        let mut conn = self.collection.shared.pool.get()?;
        if self.limited {
            let statement = conn.statement(RELEASE_EXPIRED)?;
            let released = conn
                .client
                .execute(&statement, &[&collection, &run])
                .map_err(db)?;
            if released > 0 {
                // Part of the limit came back: the caller claims again before it may leave.
                return Ok(true);
            }
        }
        let statement = conn.statement(PEERS_WORKING)?;
        Ok(conn
            .client
            .query_one(&statement, &[&collection, &run, &self.worker])
            .map_err(db)?
            .get(0))
    }

    fn rewind(&mut self) -> Result<(), StoreError> {
        let mut conn = self.collection.shared.pool.get()?;
        let statement = conn.statement(pending::VERSIONS)?;
        self.segments = conn
            .client
            .query(
                &statement,
                &[&self.collection.id, &sql_version(self.target)],
            )
            .map_err(db)?
            .iter()
            .map(|row| (row.get(0), String::new()))
            .collect();
        Ok(())
    }

    fn leave(&mut self, ending: Ending) -> Result<Left, StoreError> {
        let (collection, run) = self.key()?;
        let mut conn = self.collection.shared.pool.get()?;
        let mut tx = conn.client.transaction().map_err(db)?;
        // Joining and leaving take the lease row's lock, so that two last workers cannot both
        // miss each other; a row that is not the run's any more (the run ended, its lease passed
        // on) leaves nothing to end.
        let held = tx
            .query_opt(LEAVE_LOCK, &[&collection, &run])
            .map_err(db)?
            .is_some();
        tx.execute(LEAVE, &[&collection, &run, &self.worker])
            .map_err(db)?;
        let others = held
            && tx
                .query_one(OTHERS_LIVE, &[&collection, &run, &self.worker])
                .map_err(db)?
                .get::<_, bool>(0);
        if !held || others {
            tx.commit().map_err(db)?;
            self.heart.stop();
            return Ok(Left::Peers);
        }
        if ending == Ending::Done
            && tx
                .query_one(PEERS_IN_CHUNK, &[&collection, &run, &self.worker])
                .map_err(db)?
                .get::<_, bool>(0)
        {
            // A chunk is open (a peer stalled past its lease): it may roll back and leave
            // documents pending, so this worker stays (the transaction rolls back as dropped).
            return Ok(Left::Busy);
        }
        let state = match ending {
            Ending::Done => "done",
            Ending::Cancelled => "cancelled",
            Ending::Failed => "interrupted",
        };
        self.ended = tx
            .query_opt(END_RUN, &[&collection, &run, &state])
            .map_err(db)?
            .is_some();
        tx.commit().map_err(db)?;
        self.heart.stop();
        Ok(if self.ended { Left::Last } else { Left::Peers })
    }

    fn release(self: Box<Self>) -> Result<(), StoreError> {
        self.heart.stop();
        if !self.ended {
            return Ok(());
        }
        let (collection, run) = self.key()?;
        let mut conn = self.collection.shared.pool.get()?;
        conn.client
            .execute(RELEASE, &[&collection, &run])
            .map_err(db)?;
        Ok(())
    }
}

/// A worker's heartbeat: a thread of its own, on the store's renewal connection (outside the
/// pool, which must not let the lease expire when busy; see `lease::renew_until_stopped`),
/// renewing the worker's row, then the collection's lease row, as two
/// statements (each holding one row lock only, so that it never waits in a cycle with a chunk).
struct Heart {
    stop: Arc<(Mutex<bool>, Condvar)>,
    beat: Option<JoinHandle<()>>,
}

impl Heart {
    fn start(
        shared: &Arc<Shared>,
        collection: i32,
        run: u64,
        worker: String,
    ) -> Result<Self, StoreError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let beat = {
            let shared = Arc::clone(shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("revolve-heartbeat".to_owned())
                .spawn(move || beat(&shared, collection, run, &worker, &stop))
                .map_err(|source| StoreError::Io {
                    what: "cannot start the thread that heartbeats a migration worker".to_owned(),
                    source,
                })?
        };
        Ok(Self {
            stop,
            beat: Some(beat),
        })
    }

    fn stop(&self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
    }
}

impl Drop for Heart {
    fn drop(&mut self) {
        self.stop();
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
    }
}

fn beat(shared: &Shared, collection: i32, run: u64, worker: &str, stop: &(Mutex<bool>, Condvar)) {
    let seconds = shared.run_lease.as_secs_f64();
    let Ok(run) = sql_run(run) else {
        return;
    };
    lease::renew_until_stopped(
        shared,
        stop,
        collection,
        "a migration worker's lease",
        |client| {
            // The run's lease row extended only while the worker's own lease holds; a row that is
            // not the run's any more (its lease passed to another run) stops the heartbeat too, so
            // that the worker's own lease expires and fences it.
            let renewed = client.execute(HEARTBEAT, &[&collection, &run, &worker, &seconds])? == 1
                && client.execute(LEASE_EXTEND, &[&collection, &run, &seconds])? == 1;
            // Left meanwhile: nothing to say.
            if !renewed && !*stop.0.lock() {
                tracing::warn!(
                collection,
                run,
                "a migration worker's lease expired, or its run's lease passed on; its heartbeat stops"
            );
            }
            Ok(renewed)
        },
    );
}
