//! PostgreSQL benchmark: revolve's migration beside a hand-written SQL migration of the same
//! rows, and single-document latency beside sled's.
//!
//! ```text
//! REVOLVE_PG_FSYNC=on scripts/with-postgres cargo bench --bench postgres --features postgres -- [--docs N] [--runs R] [--threads T]
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
use dataset::{issue, issue_v1_to_v2, IssueV1, IssueV2, XorShift};

const CHUNK: usize = 1000;

struct Args {
    url: String,
    docs: usize,
    runs: usize,
    threads: usize,
    latency_calls: usize,
}

fn args() -> Args {
    let mut args = Args {
        url: std::env::var("REVOLVE_TEST_DATABASE_URL")
            .expect("REVOLVE_TEST_DATABASE_URL: run under scripts/with-postgres"),
        docs: 1_000_000,
        runs: 3,
        threads: 1,
        latency_calls: 2000,
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

/// The hand-written migration: claim, upgrade, insert revisions, move heads, commit.
fn run_handwritten(url: &str, schema: &str, docs: usize) -> (f64, (f64, f64)) {
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
    let started = Instant::now();
    let mut migrated = 0;
    let mut last = String::new();
    let mut samples = Vec::new();
    loop {
        let mut tx = db.transaction().unwrap();
        let rows = tx.query(&claim, &[&collection, &last]).unwrap();
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
        tx.execute(&insert, &[&collection, &ids, &revisions, &records])
            .unwrap();
        tx.execute(&advance, &[&collection, &ids, &revisions])
            .unwrap();
        tx.commit().unwrap();
        migrated += rows.len();
        last = ids.pop().unwrap();
        samples.push((migrated as u64, started.elapsed()));
    }
    let elapsed = started.elapsed();
    assert_eq!(migrated, docs);
    (
        docs as f64 / elapsed.as_secs_f64(),
        tenths(&samples, docs as u64),
    )
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

fn main() {
    let args = args();
    let mut db = client(&args.url);
    let setting = |db: &mut Client, name: &str| -> String {
        db.query_one(&format!("SHOW {name}"), &[]).unwrap().get(0)
    };
    println!(
        "server: PostgreSQL {}, fsync={}, synchronous_commit={}, shared_buffers={}, full_page_writes={}",
        setting(&mut db, "server_version"),
        setting(&mut db, "fsync"),
        setting(&mut db, "synchronous_commit"),
        setting(&mut db, "shared_buffers"),
        setting(&mut db, "full_page_writes"),
    );
    drop(db);

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
                let (rate, (first, last)) = run_handwritten(&args.url, "bench_run", args.docs);
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
