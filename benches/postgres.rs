//! PostgreSQL benchmark: revolve's migration beside a hand-written SQL migration of the same
//! rows, and single-document latency beside sled's; with `--fleet`, the workers of one joined
//! migration beside the hand-written migration with as many connections (issue 12).
//!
//! ```text
//! REVOLVE_PG_FSYNC=on scripts/with-postgres cargo bench --bench postgres --features postgres -- [--docs N] [--runs R] [--threads T]
//! REVOLVE_PG_FSYNC=on scripts/with-postgres cargo bench --bench postgres --features postgres -- --fleet [--docs N] [--runs R] [--threads T] [--no-validate]
//! ```
//!
//! Needs `REVOLVE_TEST_DATABASE_URL` (which `scripts/with-postgres` sets); `REVOLVE_PG_FSYNC=on`
//! makes that server durable (`fsync`, `synchronous_commit`), as the figures in the README are.
//!
//! 1. Loads a golden schema of N version 1 issues (~350 bytes) once per N (`insert_many` of
//!    1,000, eventual durability) and keeps it for the next invocation.
//! 2. Each run copies the golden tables into a fresh schema (then `VACUUM ANALYZE` and
//!    `CHECKPOINT`), and times one of, alternating which goes first:
//!    - *revolve*: `migrate().threads(T).execute()` with immediate durability, and the speed of
//!      its first and last tenth (from the progress callback);
//!    - *hand-written*: one connection, per transaction: claim 1,000 pending heads with their
//!      revisions (`FOR UPDATE SKIP LOCKED` over the version index), upgrade them with the same
//!      step, build the same envelopes, `INSERT … SELECT FROM unnest` the revisions, `UPDATE`
//!      the heads from `unnest`, commit.
//! 3. After the last revolve run, before any `VACUUM`: "anything pending?" (`Collection::pending`,
//!    and a raw `EXISTS` on the version index) and a no-op `execute`, medians of 100 calls.
//! 4. Latency of `insert`, `get` and `update_if`, one document at a time, on PostgreSQL and on
//!    sled (immediate durability on both): medians and 99th percentiles of 2,000 calls.
//!
//! With `--fleet`, steps 3 and 4 are left out and each run migrates a fresh copy of the golden
//! schema (as in step 2) once per configuration, in an order reversed every other run:
//! - *revolve 1×1*: one `migrate().join().execute()`; *1×2*: two, in two threads of this
//!   process (one `Store`, its pool shared); *2×1*: two processes (this binary again, with
//!   `REVOLVE_BENCH_FLEET_CHILD` set), each making one, let go together by a `go` line on their
//!   standard input once both said `ready`. Every worker processes its chunks on T rayon threads
//!   (`--threads`, 1 by default: a worker's processing — decode, step, validate, encode — is a
//!   small part of a chunk, the rest being the server's, so on two cores a second thread per
//!   worker only competes with its peer and the server); *revolve 1×1 with 2 threads* is
//!   measured too, to show what a second thread gives one worker;
//! - *hand-written, 1 and 2 workers*: step 2's migration in one thread per worker, each on its
//!   connection, each claiming after its own keyset.
//!
//! A revolve run fails the bench unless every head is at version 2, the workers' reports add up
//! to N, and the ledger records the run done with one worker per call, each having taken some.
//! Revolve validates each output against the JSON Schema, which the hand-written migration does
//! not: `--no-validate` turns that off, to see what it costs.
//!
//! Printed per configuration and run: docs/s (N over the time from letting the workers go to
//! the return of the last), and where the time goes, measured from outside revolve:
//! - the CPU time of the client (every thread of this process, plus the worker processes' own
//!   from `go` to their report; `/proc/<pid>/stat`) and of the server (every process of the
//!   PostgreSQL server, when it runs on this machine), as cores busy and µs per document: on
//!   two cores, client and server adding up to near 2 cores means CPU-bound; and the machine's
//!   busy time (`/proc/stat`), whose part that is neither the client's nor the server's is other
//!   programs' (a figure taken while others were busy does not count), and its iowait;
//! - what the database's client backends were doing, sampled from `pg_stat_activity` every
//!   20 ms on a connection of its own: mean number running, waiting on WAL, on a lock, on
//!   anything else, and idle in a transaction (waiting for the client within a chunk); and, over
//!   every run, a profile by statement: the share of those samples active in each statement
//!   (the server's time) or idle in a transaction after it (the client's). Every client
//!   backend of the database is sampled: on a server of its own (`scripts/with-postgres`
//!   without `REVOLVE_TEST_DATABASE_URL`), only the bench's;
//! - when every worker had committed its first chunk (setting the run up), when the last chunk
//!   committed, and how long after it the last worker returned (revolve's idle worker polls
//!   every 200 ms while a peer works, then looks again before leaving); and per worker its
//!   documents and time (revolve: from joining to leaving, from the ledger's `WorkerRecord`s).
//!
//! Then per configuration the docs/s of every run and their median, and the issue's ratios, per
//! run and their median: revolve 1×2 and 2×1 over revolve 1×1 (goal ≥ 1.3), and revolve over
//! the hand-written migration with as many workers (goal ≥ 0.75); then the profiles by
//! statement.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)] // figures for display, and counts far below 2^52

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use revolve::{Durability, Store};

#[path = "common/dataset.rs"]
mod dataset;
#[path = "postgres/fleet.rs"]
mod fleet;
use dataset::{issue, issue_v1_to_v2, IssueV1, IssueV2, XorShift};

const CHUNK: usize = 1000;

struct Args {
    url: String,
    docs: usize,
    runs: usize,
    threads: usize,
    latency_calls: usize,
    /// The fleet mode (`--fleet`).
    fleet: bool,
    /// Whether revolve validates its outputs (`--no-validate` turns it off; fleet mode).
    validate: bool,
}

fn args() -> Args {
    let mut args = Args {
        url: std::env::var("REVOLVE_TEST_DATABASE_URL")
            .expect("REVOLVE_TEST_DATABASE_URL: run under scripts/with-postgres"),
        docs: 1_000_000,
        runs: 3,
        threads: 1,
        latency_calls: 2000,
        fleet: false,
        validate: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the option");
        match arg.as_str() {
            "--docs" => args.docs = value().parse().unwrap(),
            "--runs" => args.runs = value().parse().unwrap(),
            "--threads" => args.threads = value().parse().unwrap(),
            "--latency-calls" => args.latency_calls = value().parse().unwrap(),
            "--url" => args.url = value(),
            "--fleet" => args.fleet = true,
            "--no-validate" => args.validate = false,
            _ => {} // cargo bench passes `--bench`
        }
    }
    args
}

fn client(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap()
}

fn store(url: &str, schema: &str, durability: Durability) -> Store {
    Store::builder()
        .url(url)
        .schema(schema)
        .durability(durability)
        .open()
        .unwrap()
}

/// The golden schema of `docs` version 1 issues, loaded unless it is there already.
fn golden(url: &str, docs: usize) -> String {
    let schema = format!("bench_golden_{docs}");
    let mut db = client(url);
    let loaded: Option<i64> = db
        .query_opt(
            &format!(
                "SELECT count(*) FROM \"{schema}\".revolve_heads WHERE NOT removed AND version = 1"
            ),
            &[],
        )
        .ok()
        .flatten()
        .map(|row| row.get(0));
    if loaded == Some(i64::try_from(docs).unwrap()) {
        eprintln!("golden: reusing {schema}");
        return schema;
    }
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .unwrap();
    let started = Instant::now();
    let store = store(url, &schema, Durability::Eventual);
    let issues = store.collection::<IssueV1>().unwrap();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut done = 0;
    while done < docs {
        let chunk: Vec<IssueV1> = (0..CHUNK.min(docs - done))
            .map(|_| issue(&mut rng))
            .collect();
        done += issues.insert_many(&chunk).unwrap().len();
    }
    store.flush().unwrap();
    eprintln!(
        "golden: loaded {docs} issues in {:.1} s ({:.0} docs/s through insert_many)",
        started.elapsed().as_secs_f64(),
        docs as f64 / started.elapsed().as_secs_f64()
    );
    schema
}

/// A fresh copy of the golden tables in `schema`, vacuumed, analysed and checkpointed.
fn copy(url: &str, golden: &str, schema: &str) {
    let mut db = client(url);
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .unwrap();
    drop(store(url, schema, Durability::Immediate)); // the layout, as revolve makes it
    let tables = [
        "revolve_heads",
        "revolve_revisions",
        "revolve_counts",
        "revolve_failures",
        "revolve_runs",
        "revolve_progress",
    ];
    let mut sql = format!(
        "INSERT INTO \"{schema}\".revolve_collections OVERRIDING SYSTEM VALUE SELECT * FROM \"{golden}\".revolve_collections;"
    );
    for table in tables {
        let _ = write!(
            sql,
            "INSERT INTO \"{schema}\".{table} SELECT * FROM \"{golden}\".{table};"
        );
    }
    db.batch_execute(&format!("BEGIN; {sql} COMMIT;")).unwrap();
    for table in tables {
        db.batch_execute(&format!("VACUUM ANALYZE \"{schema}\".{table}"))
            .unwrap();
    }
    db.batch_execute("CHECKPOINT").unwrap();
}

/// The speed of the first and the last tenth of a run, from (done, elapsed) samples.
fn tenths(samples: &[(u64, Duration)], total: u64) -> (f64, f64) {
    let at = |fraction: f64| {
        let goal = (total as f64 * fraction) as u64;
        samples
            .iter()
            .find(|(done, _)| *done >= goal)
            .copied()
            .unwrap_or((0, Duration::ZERO))
    };
    let rate = |(d0, t0): (u64, Duration), (d1, t1): (u64, Duration)| {
        (d1 - d0) as f64 / t1.saturating_sub(t0).as_secs_f64().max(1e-9)
    };
    let first = rate((0, Duration::ZERO), at(0.1));
    let last = rate(at(0.9), *samples.last().unwrap());
    (first, last)
}

struct RevolveRun {
    docs_per_second: f64,
    first_tenth: f64,
    last_tenth: f64,
}

fn run_revolve(url: &str, schema: &str, docs: usize, threads: usize) -> RevolveRun {
    let store = store(url, schema, Durability::Immediate);
    let issues = store.collection::<IssueV2>().unwrap();
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let report = {
        let samples = std::sync::Arc::clone(&samples);
        issues
            .migrate()
            .threads(threads)
            .on_progress(move |progress| {
                samples
                    .lock()
                    .unwrap()
                    .push((progress.done, started.elapsed()));
            })
            .execute()
            .unwrap()
    };
    let elapsed = started.elapsed();
    assert_eq!(report.migrated, docs as u64, "{report:?}");
    let samples = samples.lock().unwrap().clone();
    let (first_tenth, last_tenth) = tenths(&samples, docs as u64);
    RevolveRun {
        docs_per_second: docs as f64 / elapsed.as_secs_f64(),
        first_tenth,
        last_tenth,
    }
}

/// A revision envelope as revolve writes it (see `src/record.rs`): a migration's, at version 2.
fn envelope(revision: u64, run: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(31 + payload.len() + 4);
    out.push(1); // format
    out.push(0); // document
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&revision.to_be_bytes());
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    out.extend_from_slice(&micros.to_be_bytes());
    out.push(1); // migration
    out.extend_from_slice(&run.to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// What a hand-written migration did.
struct HandRun {
    docs_per_second: f64,
    /// The speed of its first and last tenth.
    tenths: (f64, f64),
    workers: Vec<HandShare>,
}

/// One worker's part of a hand-written migration, its times from the start.
struct HandShare {
    migrated: u64,
    /// When its first chunk committed.
    first_chunk: Duration,
    /// When its last chunk committed.
    last_chunk: Duration,
    /// When it ended (its claim found nothing).
    took: Duration,
}

/// The hand-written migration, one thread per worker (each on its connection): claim, upgrade,
/// insert revisions, move heads, commit.
fn run_handwritten(hands: Vec<HandWorker>, docs: usize) -> HandRun {
    let start = std::sync::Arc::new(std::sync::Barrier::new(hands.len() + 1));
    let threads: Vec<_> = hands
        .into_iter()
        .map(|hand| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || hand.run(&start))
        })
        .collect();
    start.wait();
    let started = Instant::now();
    let results: Vec<(Vec<(u64, Duration)>, Duration)> = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    let wall = started.elapsed();
    let mut chunks: Vec<(Duration, u64)> = results
        .iter()
        .flat_map(|(chunks, _)| chunks.iter().map(|&(n, at)| (at, n)))
        .collect();
    chunks.sort_unstable();
    let mut migrated = 0;
    let samples: Vec<(u64, Duration)> = chunks
        .into_iter()
        .map(|(at, n)| {
            migrated += n;
            (migrated, at)
        })
        .collect();
    assert_eq!(migrated, docs as u64, "the hand-written migration");
    HandRun {
        docs_per_second: docs as f64 / wall.as_secs_f64(),
        tenths: tenths(&samples, docs as u64),
        workers: results
            .iter()
            .map(|(chunks, took)| HandShare {
                migrated: chunks.iter().map(|&(n, _)| n).sum(),
                first_chunk: chunks.first().map_or(Duration::ZERO, |&(_, at)| at),
                last_chunk: chunks.last().map_or(Duration::ZERO, |&(_, at)| at),
                took: *took,
            })
            .collect(),
    }
}

/// One worker of the hand-written migration: its connection and statements, made before the
/// start.
struct HandWorker {
    db: Client,
    collection: i32,
    claim: postgres::Statement,
    insert: postgres::Statement,
    advance: postgres::Statement,
}

impl HandWorker {
    fn new(url: &str, schema: &str) -> Self {
        let mut db = client(url);
        db.batch_execute(&format!("SET search_path TO \"{schema}\""))
            .unwrap();
        let collection: i32 = db
            .query_one(
                "SELECT id FROM revolve_collections WHERE name = 'issues'",
                &[],
            )
            .unwrap()
            .get(0);
        let claim = db
            .prepare(
                // The revision by a subquery per row: as a join, the planner merges with the
                // revisions from the collection's first id at every claim.
                "SELECT h.id, h.revision,
                     (SELECT r.record FROM revolve_revisions r
                      WHERE r.collection = h.collection AND r.id = h.id AND r.revision = h.revision)
                 FROM revolve_heads h
                 WHERE h.collection = $1 AND NOT h.removed AND h.version = 1 AND h.id > $2
                 ORDER BY h.id LIMIT 1000 FOR UPDATE OF h SKIP LOCKED",
            )
            .unwrap();
        let insert = db
            .prepare(
                "INSERT INTO revolve_revisions (collection, id, revision, record)
                 SELECT $1, u.id, u.revision, u.record
                 FROM unnest($2::text[], $3::int8[], $4::bytea[]) AS u(id, revision, record)",
            )
            .unwrap();
        let advance = db
            .prepare(
                "UPDATE revolve_heads h SET revision = u.revision, version = 2
                 FROM unnest($2::text[], $3::int8[]) AS u(id, revision)
                 WHERE h.collection = $1 AND h.id = u.id",
            )
            .unwrap();
        Self {
            db,
            collection,
            claim,
            insert,
            advance,
        }
    }

    /// Migrates chunks after `start` until a claim finds none: each chunk's size and the time
    /// it committed at, and the time it ended at, from the start.
    fn run(mut self, start: &std::sync::Barrier) -> (Vec<(u64, Duration)>, Duration) {
        let collection = self.collection;
        let mut last = String::new();
        let mut chunks = Vec::new();
        start.wait();
        let started = Instant::now();
        loop {
            let mut tx = self.db.transaction().unwrap();
            // Rows a peer holds are skipped; they are at version 2 once it commits.
            let rows = tx.query(&self.claim, &[&collection, &last]).unwrap();
            if rows.is_empty() {
                tx.commit().unwrap();
                break;
            }
            let mut ids: Vec<String> = Vec::with_capacity(rows.len());
            let mut revisions: Vec<i64> = Vec::with_capacity(rows.len());
            let mut records: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
            for row in &rows {
                let record: &[u8] = row.get(2);
                let payload = &record[23..record.len() - 4];
                let old: IssueV1 = rmp_serde::from_slice(payload).unwrap();
                let new = issue_v1_to_v2(old).unwrap();
                let payload = rmp_serde::to_vec_named(&new).unwrap();
                let revision = row.get::<_, i64>(1) + 1;
                records.push(envelope(revision as u64, 1, &payload));
                ids.push(row.get(0));
                revisions.push(revision);
            }
            tx.execute(&self.insert, &[&collection, &ids, &revisions, &records])
                .unwrap();
            tx.execute(&self.advance, &[&collection, &ids, &revisions])
                .unwrap();
            tx.commit().unwrap();
            chunks.push((rows.len() as u64, started.elapsed()));
            last = ids.pop().unwrap();
        }
        (chunks, started.elapsed())
    }
}

/// Checkpoints the server has made so far.
fn checkpoints(url: &str) -> i64 {
    client(url)
        .query_one(
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",
            &[],
        )
        .unwrap()
        .get(0)
}

fn checkpoints_since(url: &str, before: i64) -> i64 {
    checkpoints(url) - before
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p) as usize]
}

/// Medians of 100 calls of "anything pending?" and a no-op `execute`, right after a migration.
fn pending_checks(url: &str, schema: &str) {
    let store = store(url, schema, Durability::Immediate);
    let issues = store.collection::<IssueV2>().unwrap();
    let mut pending = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let left = issues.pending().unwrap();
        pending.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(left.migratable(), 0);
        let started = Instant::now();
        let report = issues.migrate().execute().unwrap();
        assert_eq!(report.migrated, 0);
        noop.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut db = client(url);
    db.batch_execute(&format!("SET search_path TO \"{schema}\""))
        .unwrap();
    let exists = db
        .prepare(
            "SELECT EXISTS (SELECT 1 FROM revolve_heads
             WHERE collection = (SELECT id FROM revolve_collections WHERE name = 'issues')
               AND NOT removed AND version < 2)",
        )
        .unwrap();
    let mut raw = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let any: bool = db.query_one(&exists, &[]).unwrap().get(0);
        raw.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(!any);
    }
    println!(
        "anything pending, right after the migration, before VACUUM (median of 100): Collection::pending {:.3} ms, raw EXISTS on the version index {:.3} ms, no-op execute {:.3} ms",
        median(&mut pending),
        median(&mut raw),
        median(&mut noop)
    );
}

/// Median and 99th percentile, in µs, of `insert`, `get` and `update_if` on one store.
fn latency(store: &Store, calls: usize) -> [(f64, f64); 3] {
    let issues = store.collection::<IssueV1>().unwrap();
    let mut rng = XorShift(42);
    let mut ids = Vec::with_capacity(calls);
    let mut timings = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..calls {
        let value = issue(&mut rng);
        let started = Instant::now();
        ids.push(issues.insert(&value).unwrap());
        timings[0].push(started.elapsed().as_secs_f64() * 1e6);
    }
    for id in &ids {
        let started = Instant::now();
        let document = issues.get(id.as_str()).unwrap().unwrap();
        timings[1].push(started.elapsed().as_secs_f64() * 1e6);
        let mut value = document.data;
        value.updated_at += 1;
        let started = Instant::now();
        issues
            .update_if(id.as_str(), document.revision, &value)
            .unwrap();
        timings[2].push(started.elapsed().as_secs_f64() * 1e6);
    }
    timings.map(|mut t| (median(&mut t), percentile(&mut t, 0.99)))
}

/// Prints the server's version and the settings that matter to durability.
fn server(url: &str) {
    let mut db = client(url);
    let mut setting =
        |name: &str| -> String { db.query_one(&format!("SHOW {name}"), &[]).unwrap().get(0) };
    println!(
        "server: PostgreSQL {}, fsync={}, synchronous_commit={}, shared_buffers={}, full_page_writes={}",
        setting("server_version"),
        setting("fsync"),
        setting("synchronous_commit"),
        setting("shared_buffers"),
        setting("full_page_writes"),
    );
}

fn main() {
    if let Ok(name) = std::env::var(fleet::CHILD_ENV) {
        fleet::child(&name);
        return;
    }
    let args = args();
    server(&args.url);
    if args.fleet {
        fleet::main(&args);
        return;
    }

    let golden = golden(&args.url, args.docs);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut ratios = Vec::new();
    let mut last_over_first = Vec::new();
    for run in 0..args.runs {
        let order = if run % 2 == 0 {
            ["revolve", "hand"]
        } else {
            ["hand", "revolve"]
        };
        let mut pair = (0.0, 0.0);
        for kind in order {
            copy(&args.url, &golden, "bench_run");
            if kind == "revolve" {
                let checkpoints = checkpoints(&args.url);
                let result = run_revolve(&args.url, "bench_run", args.docs, args.threads);
                println!(
                    "run {run}: revolve {:.0} docs/s (first tenth {:.0}, last tenth {:.0}: {:.2}x; {} checkpoints)",
                    result.docs_per_second,
                    result.first_tenth,
                    result.last_tenth,
                    result.last_tenth / result.first_tenth,
                    checkpoints_since(&args.url, checkpoints)
                );
                last_over_first.push(result.last_tenth / result.first_tenth);
                pair.0 = result.docs_per_second;
                if run + 1 == args.runs {
                    pending_checks(&args.url, "bench_run");
                }
            } else {
                let checkpoints = checkpoints(&args.url);
                let hand =
                    run_handwritten(vec![HandWorker::new(&args.url, "bench_run")], args.docs);
                let (rate, (first, last)) = (hand.docs_per_second, hand.tenths);
                println!(
                    "run {run}: hand-written SQL {rate:.0} docs/s (first tenth {first:.0}, last tenth {last:.0}: {:.2}x; {} checkpoints)",
                    last / first,
                    checkpoints_since(&args.url, checkpoints)
                );
                pair.1 = rate;
            }
        }
        ours.push(pair.0);
        theirs.push(pair.1);
        ratios.push(pair.0 / pair.1);
    }
    println!(
        "migration of {} docs, {} thread(s): revolve median {:.0} docs/s, hand-written median {:.0} docs/s, ratio per run {:?} (median {:.2}x); last tenth / first tenth median {:.2}x",
        args.docs,
        args.threads,
        median(&mut ours),
        median(&mut theirs),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>(),
        median(&mut ratios.clone()),
        median(&mut last_over_first),
    );
    let mut db = client(&args.url);
    db.batch_execute(
        "DROP SCHEMA IF EXISTS bench_run CASCADE; DROP SCHEMA IF EXISTS bench_latency CASCADE",
    )
    .unwrap();
    drop(db);

    let pg = store(&args.url, "bench_latency", Durability::Immediate);
    let on_pg = latency(&pg, args.latency_calls);
    drop(pg);
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::builder().path(dir.path()).open().unwrap();
    let on_sled = latency(&sled, args.latency_calls);
    for (i, name) in ["insert", "get", "update_if"].iter().enumerate() {
        println!(
            "latency {name}: PostgreSQL median {:.0} µs (p99 {:.0}), sled median {:.0} µs (p99 {:.0}), ratio {:.1}x",
            on_pg[i].0,
            on_pg[i].1,
            on_sled[i].0,
            on_sled[i].1,
            on_pg[i].0 / on_sled[i].0
        );
    }
    let mut db = client(&args.url);
    db.batch_execute("DROP SCHEMA IF EXISTS bench_latency CASCADE")
        .unwrap();
}
