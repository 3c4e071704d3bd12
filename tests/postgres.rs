//! Several processes on one PostgreSQL database (issue 11), each scenario a set of child
//! processes and checks through the public API:
//!
//! - `three_processes_lose_no_update`: three processes apply `update_if` increments to the same
//!   50 documents, retrying on `Conflict`: each document's content is the sum of the increments
//!   acknowledged, its revisions one per acknowledged update, and the counts add up.
//! - `kill_during_migration`: `kill -9` of a migrating process at 14 points (in a step, after a
//!   chunk, after a delay), each on a fresh 3,000-document store; then every document reads once,
//!   decodes, at revision 1 (v1) or 2 (v2); the counts add up; the killed run reads as
//!   interrupted once its lease expired, counting what it committed; a resumed migration takes
//!   every document to v2 and the runs' `migrated` sum to the documents. `Store::verify` is
//!   called when the engine supports it.
//! - `run_lease_keeps_a_second_process_out`: while a run's holder lives, its run reads as running
//!   in another process and a second `execute` gets `RunInProgress`; once it is killed, the
//!   second one goes through after the lease expired.
//! - `inserters_are_not_serialised`: two processes of four inserting threads; a raw transaction
//!   holds one count shard's row: inserters whose backend maps to that shard wait for it (and
//!   only on it or on a writer of their own shard), while the others commit hundreds of
//!   documents; the count rows end spread over the writers' shards.
//! - `update_if_during_a_migration`: two processes rewrite documents with `update_if` while a
//!   third migrates them: every acknowledged write is in the history and the newest is the head,
//!   no migration revision follows a write, and the runs' `migrated` add up.
//! - `three_workers_migrate_once`: three processes join one migration (`migrate().join()`) of
//!   20,000 documents (`REVOLVE_FLEET_DOCS=100000` for the size) while a fourth rewrites
//!   documents with `update_if`; one worker is killed with `kill -9` mid-chunk: every document is
//!   migrated exactly once (revisions counted by origin run), no acknowledged write is lost, one
//!   run with three workers in the ledger, whose counts add up.
//! - `three_workers_keep_to_the_limit`: three workers of one run with a limit of half the
//!   documents migrate exactly that many.
//! - `a_stalled_worker_cannot_write_after_its_lease`: a worker stopped (SIGSTOP) mid-chunk past
//!   its lease: its peer waits for the stalled chunk, which fails its fence once woken
//!   (`WorkerLeaseLost`, rolled back); the peer then migrates what it held: each document once.
//! - `a_killed_workers_share_of_the_limit_is_given_back`: a worker killed in its second chunk
//!   holds a chunk of the run's limit; once its lease expires its peer takes it back, and the
//!   run migrates exactly the limit.
//! - `a_run_whose_workers_died_is_resumed`: the only worker of a joined run is killed with
//!   `kill -9`; the run reads `interrupted` once its lease expires, and a `join()` elsewhere
//!   starts a new run that migrates the rest, each document once.
//! - `workers_heartbeat_on_one_connection`: four joined workers in one process, held after
//!   their first chunk once each has renewed its lease, hold at most the pool's connections and
//!   one more: their heartbeats share one connection.
//! - `a_paused_holder_stops_after_losing_its_lease`: a holder
//!   stopped (SIGSTOP) past its lease, while another process migrates to the end, must not go on
//!   committing or record its run as done when it wakes up.
//!
//! The binary re-executes itself as a child (as `tests/crash.rs` does): with
//! `REVOLVE_PG_CHILD` set to a role, `main` plays that role against the schema named in
//! `REVOLVE_PG_SCHEMA` and talks to the parent through its standard input and output. Each
//! scenario uses a schema of its own in the database `REVOLVE_TEST_DATABASE_URL` names, and drops
//! it at the end. Without that variable every scenario is skipped with one printed line, except
//! under `CI=true`, where they fail. No sleep synchronises anything: the parent waits for a
//! child's line or polls the database, with a bound.
//!
//! Unix only (it sends signals). Run with `cargo test --features postgres --test postgres`; a
//! word after `--` runs only the scenarios whose name contains it; `--ignored` runs the ignored.

#[path = "common/postgres.rs"]
mod pg_server;
use pg_server::postgres_url;
use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use revolve::{
    Collection, MigrationError, RunKind, RunState, Schema, StepError, Store, StoreError,
};
use serde::{Deserialize, Serialize};

/// Set to the role in a child.
const CHILD_ENV: &str = "REVOLVE_PG_CHILD";
/// The schema a child works in.
const SCHEMA_ENV: &str = "REVOLVE_PG_SCHEMA";
/// The child's settings, as `key=value` words.
const SETTINGS_ENV: &str = "REVOLVE_PG_SETTINGS";
/// The documents an editing child writes, separated by commas.
const IDS_ENV: &str = "REVOLVE_PG_IDS";
/// How long a child may take to say what the parent waits for: a hang fails the test, not CI.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// The run lease of every store here: short, so that a killed run's lease expires quickly.
const LEASE: Duration = Duration::from_millis(500);

// ---- The schemas. ----

/// A counter that every successful `update_if` increments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tallies", version = 1)]
struct Tally {
    /// The sum of the increments applied.
    total: u64,
    /// The number of updates applied.
    updates: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "items", version = 1)]
struct ItemV1 {
    n: u64,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "items", version = 2, from = ItemV1, step = item_v1_to_v2)]
struct ItemV2 {
    n: u64,
    text: String,
    words: u32,
}

/// The startup races' collection, as the first program wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "starts", version = 1)]
struct StartV1 {
    n: u64,
}

/// A new version, with a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "starts", version = 2, from = StartV1, step = start_v1_to_v2)]
struct StartV2 {
    n: u64,
    double: u64,
}

// The step's signature is the derive's.
#[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value)]
fn start_v1_to_v2(old: StartV1) -> Result<StartV2, StepError> {
    let StartV1 { n } = old;
    Ok(StartV2 { n, double: n * 2 })
}

/// Version 1 changed compatibly: a field added with a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "starts", version = 1)]
struct StartV1Tagged {
    n: u64,
    #[serde(default)]
    tag: String,
}

/// Version 1 changed incompatibly: a field's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "starts", version = 1)]
struct StartV1Broken {
    n: String,
}

/// Steps taken in this process, and the step at which a child stops to be killed (0: never).
static STEPS: AtomicU64 = AtomicU64::new(0);
static STOP_AT_STEP: AtomicU64 = AtomicU64::new(0);
/// The step at which a child says `paused-in-step` and waits for `go` (0: never).
static PAUSE_AT_STEP: AtomicU64 = AtomicU64::new(0);

fn item_v1_to_v2(old: ItemV1) -> Result<ItemV2, StepError> {
    let step = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    if step == STOP_AT_STEP.load(Ordering::SeqCst) {
        stop_to_be_killed(&format!("step {step}"));
    }
    if step == PAUSE_AT_STEP.load(Ordering::SeqCst) {
        println!("paused-in-step {step}");
        let _ = std::io::stdout().flush();
        wait_for_go();
    }
    let words = u32::try_from(old.text.split_whitespace().count()).map_err(StepError::new)?;
    Ok(ItemV2 {
        n: old.n,
        text: old.text,
        words,
    })
}

fn item(index: u64) -> ItemV1 {
    let words = 1 + index % 7;
    let text = (0..words)
        .map(|word| format!("w{}", index * 31 + word))
        .collect::<Vec<_>>()
        .join(" ");
    ItemV1 { n: index, text }
}

fn item_v2(index: u64) -> ItemV2 {
    let ItemV1 { n, text } = item(index);
    let words = u32::try_from(text.split_whitespace().count()).unwrap();
    ItemV2 { n, text, words }
}

// ---- Helpers. ----

fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// The URL with an `application_name`, so that a test finds a process's connections in
/// `pg_stat_activity`.
fn with_application_name(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// A schema of the test database for one scenario, dropped at the end (also when it panics).
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    fn new(url: &str, scenario: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            url: url.to_owned(),
            name: format!(
                "multi_{scenario}_{}_{}_{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ),
        }
    }

    fn store(&self) -> Store {
        open_store(&self.url, &self.name)
    }

    fn client(&self) -> postgres::Client {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .unwrap();
        client
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ =
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

/// Opens a store with the run lease [`LEASE`], or as many milliseconds as a child's `lease_ms`
/// setting says.
fn open_store(url: &str, schema: &str) -> Store {
    let lease = settings()
        .get("lease_ms")
        .map_or(LEASE, |&ms| Duration::from_millis(ms));
    Store::builder()
        .url(url)
        .schema(schema)
        .run_lease(lease)
        .open()
        .unwrap_or_else(|error| panic!("cannot open the store: {}", chain(&error)))
}

/// Polls `done` every 20 ms until it holds, for at most `limit`.
fn poll(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- The parent's side of a child. ----

/// A child process: its output lines arrive on a channel; dropping it kills it.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    /// Lines read so far, for messages.
    seen: Vec<String>,
}

impl Proc {
    fn spawn(role: &str, url: &str, schema: &str, settings: &str) -> Self {
        Self::spawn_with(role, url, schema, settings, &[])
    }

    /// As [`spawn`](Self::spawn), with more environment variables.
    fn spawn_with(
        role: &str,
        url: &str,
        schema: &str,
        settings: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .envs(env.iter().copied())
            .env(CHILD_ENV, role)
            .env(SCHEMA_ENV, schema)
            .env(SETTINGS_ENV, settings)
            .env("REVOLVE_TEST_DATABASE_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`; panics on the child's end or a timeout.
    fn wait_for(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "child said no {prefix:?} within {CHILD_TIMEOUT:?}: {:?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.kill();
                    let status = self.child.wait();
                    let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
                    panic!(
                        "child ended ({status:?}) before saying {prefix:?}: {:?}; stderr: {}",
                        self.seen,
                        stderr.unwrap_or_default()
                    )
                }
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// `kill -9`, and waits for the child's end; `false` if it had already ended well.
    fn kill9(&mut self) -> bool {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        if status.success() {
            return false;
        }
        assert_eq!(
            status.signal(),
            Some(9),
            "the child was not killed: {status}"
        );
        true
    }

    /// Waits for a successful exit and returns every line the child printed.
    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("child did not end: {:?}", self.seen),
            }
        }
        let status = self.child.wait().unwrap();
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            status.success(),
            "child failed ({status}): {stderr}; it said {:?}",
            self.seen
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- The children. ----

/// Tells the parent to kill this process, and waits for it.
fn stop_to_be_killed(at: &str) -> ! {
    println!("kill-me {at}");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn settings() -> BTreeMap<String, u64> {
    std::env::var(SETTINGS_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|word| {
            let (key, value) = word.split_once('=')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go", "the parent said {line:?}");
}

fn child(role: &str) -> ExitCode {
    let url = std::env::var("REVOLVE_TEST_DATABASE_URL").unwrap();
    let schema = std::env::var(SCHEMA_ENV).unwrap();
    let settings = settings();
    let setting = |key: &str| settings.get(key).copied().unwrap_or(0);
    match role {
        "updater" => updater(&url, &schema, setting("seed")),
        "migrator" => migrator(
            &url,
            &schema,
            setting("stop_at_chunk"),
            setting("stop_at_step"),
            setting("rate"),
        ),
        "editor" => editor(&url, &schema, setting("seed")),
        "pauser" => pauser(&url, &schema),
        "inserter" => inserter(&url, &schema, setting("docs")),
        "starter" => starter(&url, &schema, setting("variant"), setting("pool")),
        "worker" => fleet_worker(
            &url,
            &schema,
            setting("seed"),
            setting("limit"),
            setting("stop_at_step"),
        ),
        "stalling-worker" => stalling_worker(&url, &schema, setting("pause_at_step")),
        _ => panic!("unknown role {role:?}"),
    }
    ExitCode::SUCCESS
}

/// Tally documents updated by `update_if` through the public API.
const TALLIES: u64 = 50;
/// Threads per updating process.
const UPDATER_THREADS: u64 = 2;
/// Updates per updating process.
const UPDATES_PER_PROCESS: u64 = 300;

/// Applies `UPDATES_PER_PROCESS` increments to random tallies with `update_if` on the revision
/// read, retrying on a conflict; prints per tally the updates applied and their sum.
fn updater(url: &str, schema: &str, seed: u64) {
    let store = open_store(url, schema);
    let tallies = store.collection::<Tally>().unwrap();
    println!("ready");
    wait_for_go();
    let threads: Vec<_> = (0..UPDATER_THREADS)
        .map(|thread| {
            let tallies = tallies.clone();
            std::thread::spawn(move || {
                let mut random = XorShift::new(seed * 1000 + thread);
                let mut applied: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
                let mut conflicts = 0u64;
                for _ in 0..UPDATES_PER_PROCESS / UPDATER_THREADS {
                    let doc = random.below(TALLIES);
                    let increment = 1 + random.below(9);
                    let id = format!("t{doc:02}");
                    loop {
                        let read = tallies.get(&id).unwrap().unwrap();
                        let next = Tally {
                            total: read.data.total + increment,
                            updates: read.data.updates + 1,
                        };
                        match tallies.update_if(&id, read.revision, &next) {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(error) => panic!("update_if {id}: {}", chain(&error)),
                        }
                    }
                    let entry = applied.entry(doc).or_default();
                    entry.0 += 1;
                    entry.1 += increment;
                }
                (applied, conflicts)
            })
        })
        .collect();
    let mut applied: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut conflicts = 0;
    for thread in threads {
        let (part, part_conflicts) = thread.join().unwrap();
        conflicts += part_conflicts;
        for (doc, (updates, sum)) in part {
            let entry = applied.entry(doc).or_default();
            entry.0 += updates;
            entry.1 += sum;
        }
    }
    for (doc, (updates, sum)) in applied {
        println!("doc {doc} {updates} {sum}");
    }
    println!("conflicts {conflicts}");
}

/// Migrates `items` to v2 until nothing is left; with `stop_at_chunk` or `stop_at_step`, stops
/// there and waits to be killed.
fn migrator(url: &str, schema: &str, stop_at_chunk: u64, stop_at_step: u64, rate: u64) {
    STOP_AT_STEP.store(stop_at_step, Ordering::SeqCst);
    let store = open_store(url, schema);
    let items = store.collection::<ItemV2>().unwrap();
    println!("ready");
    let _ = std::io::stdout().flush();
    if rate > 0 {
        wait_for_go();
    }
    loop {
        let mut chunks = 0;
        let mut migration = items.migrate().threads(2);
        if rate > 0 {
            migration = migration.max_rate(rate);
        }
        let report = migration
            .on_progress(move |progress| {
                chunks += 1;
                if chunks == stop_at_chunk {
                    stop_to_be_killed(&format!("chunk {chunks} run {}", progress.run_id));
                }
            })
            .execute()
            .unwrap_or_else(|error| panic!("migrate: {}", chain(&error)));
        if report.remaining == 0 {
            break;
        }
    }
    println!("done");
}

/// Migrates once, pausing in the progress callback after the first chunk until the parent says
/// `go`; prints how the run ended.
fn pauser(url: &str, schema: &str) {
    let store = open_store(url, schema);
    let items = store.collection::<ItemV2>().unwrap();
    let mut chunks = 0;
    let result = items
        .migrate()
        .on_progress(move |progress| {
            chunks += 1;
            if chunks == 1 {
                println!("paused run {}", progress.run_id);
                let _ = std::io::stdout().flush();
                wait_for_go();
            }
        })
        .execute();
    match result {
        Ok(report) => println!(
            "result ok migrated {} skipped {} remaining {}",
            report.migrated, report.skipped, report.remaining
        ),
        Err(error) => println!("result err {}", chain(&error)),
    }
}

/// Updates per editing process.
const EDITS: u64 = 300;

/// Rewrites random documents among those [`IDS_ENV`] names with `update_if` on the revision read,
/// retrying on a conflict, while another process migrates them; prints each acknowledged write
/// as `ack <id> <expected> <revision> <text>`.
fn editor(url: &str, schema: &str, seed: u64) {
    let store = open_store(url, schema);
    let items = store.collection::<ItemV2>().unwrap();
    let ids: Vec<String> = std::env::var(IDS_ENV)
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    println!("ready");
    let _ = std::io::stdout().flush();
    wait_for_go();
    let mut random = XorShift::new(seed);
    for edit in 0..EDITS {
        let id = &ids[usize::try_from(random.below(ids.len() as u64)).unwrap()];
        let text = format!("edit-{seed}-{edit}");
        loop {
            let read = items.get(id).unwrap().unwrap();
            let next = ItemV2 {
                n: read.data.n,
                text: text.clone(),
                words: 1,
            };
            match items.update_if(id, read.revision, &next) {
                Ok(revision) => {
                    println!("ack {id} {} {} {text}", read.revision.get(), revision.get());
                    break;
                }
                Err(StoreError::Conflict {
                    expected, current, ..
                }) => println!("conflict {id} {} {}", expected.get(), current.get()),
                Err(error) => panic!("update_if {id}: {}", chain(&error)),
            }
        }
    }
}

/// Inserts one document from each of four threads at once, says `ready`, waits for `go`, then
/// inserts `docs` documents from each thread.
fn inserter(url: &str, schema: &str, docs: u64) {
    let store = Store::builder()
        .url(with_application_name(url, schema))
        .schema(schema)
        .pool_size(INSERTER_THREADS)
        .open()
        .unwrap();
    let items = store.collection::<ItemV1>().unwrap();
    let barrier = Arc::new(Barrier::new(INSERTER_THREADS + 1));
    let threads: Vec<_> = (0..INSERTER_THREADS)
        .map(|_| {
            let items = items.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                items.insert(&item(0)).unwrap();
                barrier.wait();
                barrier.wait();
                for index in 0..docs {
                    items.insert(&item(index)).unwrap();
                }
            })
        })
        .collect();
    barrier.wait();
    barrier.wait();
    println!("ready");
    let _ = std::io::stdout().flush();
    wait_for_go();
    barrier.wait();
    for thread in threads {
        thread.join().unwrap();
    }
    println!("done");
}

/// A fixed-seed xorshift64.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

// ---- Scenario 1: three processes, `update_if` on the same documents. ----

fn three_processes_lose_no_update(url: &str) -> String {
    let schema = TestSchema::new(url, "update_if");
    let store = schema.store();
    let tallies = store.collection::<Tally>().unwrap();
    for doc in 0..TALLIES {
        tallies
            .insert_with_id(
                &format!("t{doc:02}"),
                &Tally {
                    total: 0,
                    updates: 0,
                },
            )
            .unwrap();
    }
    let mut procs: Vec<Proc> = (1..=3)
        .map(|seed| Proc::spawn("updater", url, &schema.name, &format!("seed={seed}")))
        .collect();
    for proc in &mut procs {
        proc.wait_for("ready");
    }
    for proc in &mut procs {
        proc.send("go");
    }
    let mut applied: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut conflicts = 0;
    for proc in procs {
        for line in proc.finish() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["doc", doc, updates, sum] => {
                    let entry = applied.entry(doc.parse().unwrap()).or_default();
                    entry.0 += updates.parse::<u64>().unwrap();
                    entry.1 += sum.parse::<u64>().unwrap();
                }
                ["conflicts", n] => conflicts += n.parse::<u64>().unwrap(),
                _ => {}
            }
        }
    }
    let mut total_updates = 0;
    for doc in 0..TALLIES {
        let id = format!("t{doc:02}");
        let (updates, sum) = applied.get(&doc).copied().unwrap_or_default();
        total_updates += updates;
        let read = tallies.get(&id).unwrap().unwrap();
        assert_eq!(
            read.data,
            Tally {
                total: sum,
                updates
            },
            "{id}: a lost update (the processes applied {updates} updates summing to {sum})"
        );
        let history = tallies.history(&id).unwrap();
        assert_eq!(
            history.len() as u64,
            1 + updates,
            "{id}: revisions besides the insert and the updates applied"
        );
        assert_eq!(read.revision.get(), 1 + updates, "{id}: head revision");
        for (at, info) in history.iter().enumerate() {
            assert_eq!(info.revision.get(), at as u64 + 1, "{id}: revision numbers");
        }
    }
    assert_eq!(total_updates, 3 * UPDATES_PER_PROCESS);
    assert_eq!(tallies.len().unwrap(), TALLIES);
    assert_eq!(
        tallies.count_by_version().unwrap(),
        BTreeMap::from([(1, TALLIES)])
    );
    assert_eq!(tallies.removed_count().unwrap(), 0);
    assert_eq!(tallies.iter().count() as u64, TALLIES);
    assert!(
        conflicts > 0,
        "no update_if ever conflicted: the processes did not contend"
    );
    drop(tallies);
    drop(store);
    format!(
        "{} updates in 3 processes on {TALLIES} documents, {conflicts} conflicts retried",
        3 * UPDATES_PER_PROCESS
    )
}

// ---- Scenario 2: `kill -9` of a migrating process. ----

/// Documents in each store of the kill scenario.
const ITEMS: u64 = 3000;

/// Where a migrating child is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// In the progress callback after its n-th chunk committed.
    AfterChunk(u64),
    /// In the n-th step (of a chunk being processed, the one before it possibly committing).
    AtStep(u64),
    /// This long after it said it was ready (wherever that lands).
    After(Duration),
}

/// Inserts the v1 documents; returns their ids in order.
fn set_up_items(store: &Store) -> Vec<String> {
    set_up_fleet(store, ITEMS)
}

/// Reads every document through the public API: each id once, decoding, at v1 (revision 1) or
/// v2 (revision 2, its migration); the counts add up. Returns the documents at v2.
fn check_items(store: &Store, what: &str) -> u64 {
    let items = store.collection::<ItemV2>().unwrap();
    let mut by_version: BTreeMap<u32, u64> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    for document in &items {
        let document =
            document.unwrap_or_else(|error| panic!("{what}: a read failed: {}", chain(&error)));
        let index = document.data.n;
        assert!(
            ids.insert(document.id.to_string()),
            "{what}: {} listed twice",
            document.id
        );
        assert!(indexes.insert(index), "{what}: document {index} twice");
        assert_eq!(document.data, item_v2(index), "{what}: {}", document.id);
        let expected_revision = match document.stored_version {
            1 => 1,
            2 => 2,
            other => panic!("{what}: {} stored at v{other}", document.id),
        };
        assert_eq!(
            document.revision.get(),
            expected_revision,
            "{what}: {} at v{}",
            document.id,
            document.stored_version
        );
        *by_version.entry(document.stored_version).or_default() += 1;
    }
    assert_eq!(indexes.len() as u64, ITEMS, "{what}: documents listed");
    by_version.retain(|_, n| *n > 0);
    let mut counted = items.count_by_version().unwrap();
    counted.retain(|_, n| *n > 0);
    assert_eq!(counted, by_version, "{what}: count_by_version");
    assert_eq!(items.len().unwrap(), ITEMS, "{what}: len");
    // Histories of a sample: one revision per version reached.
    for id in ids.iter().step_by(97) {
        let history = items.history(id).unwrap();
        let head = items.get(id).unwrap().unwrap();
        assert_eq!(history.len() as u64, head.revision.get(), "{what}: {id}");
    }
    match store.verify() {
        Ok(report) => assert!(report.is_ok(), "{what}: verify: {report:?}"),
        Err(StoreError::Unsupported { .. }) => {}
        Err(error) => panic!("{what}: verify: {}", chain(&error)),
    }
    by_version.get(&2).copied().unwrap_or(0)
}

/// The migration runs of the ledger: (id, state, migrated).
fn migration_runs(store: &Store) -> Vec<(u64, RunState, u64)> {
    store
        .collection::<ItemV2>()
        .unwrap()
        .runs()
        .unwrap()
        .into_iter()
        .filter(|run| run.kind == RunKind::Migration && !run.dry_run)
        .map(|run| (run.id, run.state, run.migrated))
        .collect()
}

/// One kill: returns whether the child was killed inside a run (the ledger has one).
fn kill_once(url: &str, point: KillPoint) -> bool {
    let what = format!("killed {point:?}");
    let schema = TestSchema::new(url, "kill");
    {
        let store = schema.store();
        set_up_items(&store);
    }
    let settings = match point {
        KillPoint::AfterChunk(n) => format!("stop_at_chunk={n}"),
        KillPoint::AtStep(n) => format!("stop_at_step={n}"),
        KillPoint::After(_) => String::new(),
    };
    let mut proc = Proc::spawn("migrator", url, &schema.name, &settings);
    proc.wait_for("ready");
    match point {
        KillPoint::AfterChunk(_) | KillPoint::AtStep(_) => {
            proc.wait_for("kill-me");
        }
        KillPoint::After(delay) => std::thread::sleep(delay),
    }
    let killed = proc.kill9();
    drop(proc);
    // A fresh process's view (this one never opened the store at v2).
    let store = schema.store();
    let at_v2 = check_items(&store, &what);
    if !killed {
        // It finished the migration before the delay was up: nothing was killed.
        assert!(matches!(point, KillPoint::After(_)), "{what}: not killed");
        assert_eq!(at_v2, ITEMS, "{what}: the child ended well before the end");
        return false;
    }
    // The killed run reads as interrupted once its lease expired.
    let mut runs = Vec::new();
    poll(
        &format!("{what}: the killed run reads as interrupted"),
        Duration::from_secs(20),
        || {
            runs = migration_runs(&store);
            runs.iter().all(|&(_, state, _)| state != RunState::Running)
        },
    );
    // A timed kill may land after the run finished, while the child was still exiting.
    if matches!(point, KillPoint::After(_))
        && at_v2 == ITEMS
        && !runs.is_empty()
        && runs.iter().all(|&(_, state, _)| state == RunState::Done)
    {
        return false;
    }
    let killed_in_run = !runs.is_empty();
    for &(id, state, _) in &runs {
        assert_eq!(state, RunState::Interrupted, "{what}: run {id}");
    }
    assert!(runs.len() <= 1, "{what}: {runs:?}");
    let migrated: u64 = runs.iter().map(|&(_, _, migrated)| migrated).sum();
    assert_eq!(
        migrated, at_v2,
        "{what}: the killed run's ledger record counts other than what it committed"
    );
    if let KillPoint::AfterChunk(n) = point {
        assert!(at_v2 >= n * 1000, "{what}: {at_v2} at v2 after {n} chunks");
    }

    // Resume.
    let items = store.collection::<ItemV2>().unwrap();
    let report = items
        .migrate()
        .execute()
        .unwrap_or_else(|error| panic!("{what}: resume: {}", chain(&error)));
    assert_eq!(report.remaining, 0, "{what}: resume: {report:?}");
    assert_eq!(report.migrated, ITEMS - at_v2, "{what}: resume: {report:?}");
    drop(items);
    assert_eq!(check_items(&store, &format!("{what}, resumed")), ITEMS);
    let runs = migration_runs(&store);
    let migrated: u64 = runs.iter().map(|&(_, _, migrated)| migrated).sum();
    assert_eq!(
        migrated, ITEMS,
        "{what}, resumed: migrated over runs {runs:?}"
    );
    // The resuming run, if the killed one had left anything to do, finished.
    if let Some(resuming) = report.run_id {
        assert_eq!(
            runs.iter().find(|&&(id, _, _)| id == resuming),
            Some(&(resuming, RunState::Done, ITEMS - at_v2)),
            "{what}, resumed: {runs:?}"
        );
    }
    drop(store);
    killed_in_run
}

fn kill_during_migration(url: &str) -> String {
    let points = [
        KillPoint::AtStep(1),
        KillPoint::AtStep(400),
        KillPoint::AtStep(999),
        KillPoint::AtStep(1001),
        KillPoint::AtStep(1700),
        KillPoint::AtStep(2400),
        KillPoint::AtStep(3000),
        KillPoint::AfterChunk(1),
        KillPoint::AfterChunk(2),
        KillPoint::AfterChunk(3),
        KillPoint::After(Duration::from_millis(0)),
        KillPoint::After(Duration::from_millis(30)),
        KillPoint::After(Duration::from_millis(80)),
        KillPoint::After(Duration::from_millis(150)),
    ];
    // Two at a time: most of a round is waiting for the server.
    let next = AtomicU64::new(0);
    let in_run = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut in_run = 0;
                    loop {
                        let at = usize::try_from(next.fetch_add(1, Ordering::SeqCst)).unwrap();
                        let Some(&point) = points.get(at) else {
                            return in_run;
                        };
                        in_run += usize::from(kill_once(url, point));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum::<usize>()
    });
    assert!(
        in_run >= 10,
        "only {in_run} of {} kills landed inside a run",
        points.len()
    );
    format!(
        "{} kills of {ITEMS}-document migrations, {in_run} inside a run; each checked and resumed",
        points.len()
    )
}

// ---- Scenario 5: `update_if` in two processes while a third migrates. ----

/// An acknowledged write: the revision it expected, the revision it made, its text.
type Ack = (u64, u64, String);

/// The editors' acknowledged writes per document, and their conflicts (id, expected, current).
#[allow(clippy::type_complexity)]
fn editors_output(procs: Vec<Proc>) -> (BTreeMap<String, Vec<Ack>>, Vec<(String, u64, u64)>) {
    let mut acks: BTreeMap<String, Vec<Ack>> = BTreeMap::new();
    let mut conflicts: Vec<(String, u64, u64)> = Vec::new();
    for proc in procs {
        for line in proc.finish() {
            match line.split(' ').collect::<Vec<_>>().as_slice() {
                ["ack", id, expected, revision, text] => {
                    acks.entry((*id).to_owned()).or_default().push((
                        expected.parse().unwrap(),
                        revision.parse().unwrap(),
                        (*text).to_owned(),
                    ));
                }
                ["conflict", id, expected, current] => conflicts.push((
                    (*id).to_owned(),
                    expected.parse().unwrap(),
                    current.parse().unwrap(),
                )),
                _ => {}
            }
        }
    }
    (acks, conflicts)
}

/// Checks one edited document; returns whether the migration took it before any write, and how
/// many of its writes went through a migration revision.
fn check_edited(items: &Collection<ItemV2>, id: &str, acked: &[Ack]) -> (bool, usize) {
    let history = items.history(id).unwrap();
    let head = items.get(id).unwrap().unwrap();
    // The writes after the insert are exactly the acknowledged ones.
    let writes: BTreeSet<u64> = history
        .iter()
        .skip(1)
        .filter(|info| info.origin == revolve::Origin::Write)
        .map(|info| info.revision.get())
        .collect();
    let acked_revisions: BTreeSet<u64> = acked.iter().map(|&(_, revision, _)| revision).collect();
    assert_eq!(
        writes, acked_revisions,
        "{id}: writes in the history vs acknowledged"
    );
    // A migration revision, if any, follows the insert directly: a migration never
    // overwrote a write.
    let migrations: Vec<u64> = history
        .iter()
        .filter(|info| matches!(info.origin, revolve::Origin::Migration { .. }))
        .map(|info| info.revision.get())
        .collect();
    assert!(
        migrations.is_empty() || migrations == [2],
        "{id}: migrations {migrations:?} in {history:?}"
    );
    // The newest acknowledged write is the head.
    let (_, newest, text) = acked
        .iter()
        .max_by_key(|&&(_, revision, _)| revision)
        .unwrap();
    assert_eq!(head.revision.get(), *newest, "{id}: head");
    assert_eq!(&head.data.text, text, "{id}: content");
    assert_eq!(history.len() as u64, head.revision.get(), "{id}: revisions");
    // A write whose expected revision was superseded by the migration went through.
    let through = acked
        .iter()
        .filter(|&&(expected, revision, _)| revision > expected + 1)
        .count();
    (!migrations.is_empty(), through)
}

fn update_if_during_a_migration(url: &str) -> String {
    let schema = TestSchema::new(url, "editors");
    // Every tenth document, so that the migration reaches them all through its run.
    let edited = set_up_items(&schema.store())
        .into_iter()
        .step_by(10)
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = vec![Proc::spawn("migrator", url, &schema.name, "rate=2000")];
    procs.extend((1..=2).map(|seed| {
        Proc::spawn_with(
            "editor",
            url,
            &schema.name,
            &format!("seed={seed}"),
            &[(IDS_ENV, &edited)],
        )
    }));
    for proc in &mut procs {
        proc.wait_for("ready");
    }
    for proc in &mut procs {
        proc.send("go");
    }
    let (acks, conflicts) = editors_output(procs);
    let store = schema.store();
    let items = store.collection::<ItemV2>().unwrap();
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(2, ITEMS)])
    );
    assert_eq!(items.len().unwrap(), ITEMS);
    let (mut migrated_first, mut transparent) = (0, 0);
    for (id, acked) in &acks {
        let (migration, through) = check_edited(&items, id, acked);
        migrated_first += usize::from(migration);
        transparent += through;
    }
    // A conflict is a write in between, never only a migration (which keeps the meaning).
    for (id, expected, current) in &conflicts {
        let history = items.history(id).unwrap();
        assert!(
            history.iter().any(|info| {
                (expected + 1..=*current).contains(&info.revision.get())
                    && info.origin == revolve::Origin::Write
            }),
            "{id}: update_if on {expected} conflicted with {current}, with no write between: \
             {history:?}"
        );
    }
    let runs = migration_runs(&store);
    let migrated: u64 = runs.iter().map(|&(_, _, migrated)| migrated).sum();
    let written_first = acks.len() - migrated_first;
    assert_eq!(
        migrated,
        ITEMS - written_first as u64,
        "migrated over runs {runs:?} vs documents a write took to v2 first ({written_first})"
    );
    drop(items);
    drop(store);
    format!(
        "{} acknowledged writes on {} documents during the migration; {written_first} written \
         at v2 before the migration reached them, {transparent} went through a migration \
         revision, {} conflicts with a write",
        acks.values().map(Vec::len).sum::<usize>(),
        acks.len(),
        conflicts.len()
    )
}

// ---- Scenario 3: a run's lease across processes. ----

fn run_lease_keeps_a_second_process_out(url: &str) -> String {
    let schema = TestSchema::new(url, "lease");
    {
        let store = schema.store();
        set_up_items(&store);
    }
    // A longer lease: the holder must not lose it to a slow renewal on a loaded machine while the
    // test asserts that it holds it.
    let mut proc = Proc::spawn(
        "migrator",
        url,
        &schema.name,
        "stop_at_chunk=1 lease_ms=3000",
    );
    proc.wait_for("ready");
    let line = proc.wait_for("kill-me");
    let holder: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();

    let store = schema.store();
    let items = store.collection::<ItemV2>().unwrap();
    // The child is alive and renews its lease: its run reads as running, not interrupted.
    // (Its record is saved after the progress callback: it may not count the chunk yet.)
    let runs = migration_runs(&store);
    assert_eq!(
        runs.iter()
            .map(|&(id, state, _)| (id, state))
            .collect::<Vec<_>>(),
        [(holder, RunState::Running)],
        "the ledger while the run's holder lives: {runs:?}"
    );
    // And a second run is refused, naming it.
    match items.migrate().execute() {
        Err(MigrationError::RunInProgress { run, .. }) => assert_eq!(run, holder),
        other => panic!("a second process migrated while the run's holder lived: {other:?}"),
    }
    assert!(proc.kill9(), "the run's holder ended before it was killed");
    drop(proc);
    // Refused while the lease lives, then let in.
    let mut refused = 0;
    let mut report = None;
    poll(
        "a migration once the killed run's lease expired",
        Duration::from_secs(20),
        || {
            match items.migrate().execute() {
                Ok(done) => report = Some(done),
                Err(MigrationError::RunInProgress { run, .. }) => {
                    assert_eq!(run, holder);
                    refused += 1;
                }
                Err(error) => panic!("migrate: {}", chain(&error)),
            }
            report.is_some()
        },
    );
    let report = report.unwrap();
    assert_eq!(report.remaining, 0, "{report:?}");
    assert_eq!(report.migrated, ITEMS - 1000, "{report:?}");
    drop(items);
    assert_eq!(check_items(&store, "after the lease expired"), ITEMS);
    let runs = migration_runs(&store);
    assert_eq!(
        runs.iter().find(|&&(id, _, _)| id == holder),
        Some(&(holder, RunState::Interrupted, 1000)),
        "{runs:?}"
    );
    assert_eq!(
        runs.iter().map(|&(_, _, migrated)| migrated).sum::<u64>(),
        ITEMS,
        "{runs:?}"
    );
    drop(store);
    format!("refused while the holder lived, and {refused} times after its kill; then let in")
}

// ---- Scenario 6: a holder paused past its lease. ----

/// Sends a signal to a child with `kill(1)`.
fn signal(proc: &Proc, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(proc.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}: {status}");
}

/// A process whose run's lease expired while it was stopped (a long pause, a partition) must not
/// go on committing chunks, nor record its run as finished, once another process took the
/// collection's lease: exclusion that holds only while every holder is prompt is no exclusion.
fn a_paused_holder_stops_after_losing_its_lease(url: &str) -> String {
    let schema = TestSchema::new(url, "paused");
    set_up_items(&schema.store());
    let mut proc = Proc::spawn("pauser", url, &schema.name, "");
    let line = proc.wait_for("paused run");
    let holder: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    // Stopped: its lease is no longer renewed.
    signal(&proc, "STOP");
    let store = schema.store();
    let items = store.collection::<ItemV2>().unwrap();
    let mut report = None;
    poll(
        "a migration once the stopped holder's lease expired",
        Duration::from_secs(20),
        || {
            match items.migrate().execute() {
                Ok(done) => report = Some(done),
                Err(MigrationError::RunInProgress { run, .. }) => assert_eq!(run, holder),
                Err(error) => panic!("migrate: {}", chain(&error)),
            }
            report.is_some()
        },
    );
    let report = report.unwrap();
    assert_eq!(report.remaining, 0, "{report:?}");
    // The stopped holder wakes up and goes on with its run.
    signal(&proc, "CONT");
    proc.send("go");
    let lines = proc.finish();
    let result = lines
        .iter()
        .find(|line| line.starts_with("result"))
        .cloned()
        .unwrap_or_default();
    drop(items);
    assert_eq!(
        check_items(&store, "after the paused holder woke up"),
        ITEMS
    );
    let runs = migration_runs(&store);
    let migrated: u64 = runs.iter().map(|&(_, _, migrated)| migrated).sum();
    assert_eq!(migrated, ITEMS, "migrated over runs {runs:?}");
    let stale = runs.iter().find(|&&(id, _, _)| id == holder).copied();
    assert!(
        result.starts_with("result err") && matches!(stale, Some((_, RunState::Interrupted, _))),
        "the holder that lost its lease went on: it said {result:?}; its run reads {stale:?}; \
         runs {runs:?}"
    );
    drop(store);
    format!("{result}; its run reads {stale:?}")
}

// ---- Scenario 4: eight inserters in two processes are not serialised. ----

/// Inserting threads (and connections) per process.
const INSERTER_THREADS: usize = 4;
/// Documents each inserting thread inserts after `go`.
const INSERTS_PER_THREAD: u64 = 150;

/// Backends whose `application_name` is `name`: (pid, waiting on a lock, pids blocking it).
fn backends(client: &mut postgres::Client, name: &str) -> Vec<(i32, bool, Vec<i32>)> {
    client
        .query(
            "SELECT pid, coalesce(wait_event_type = 'Lock', false), pg_blocking_pids(pid)
             FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

fn shard(pid: i32) -> i16 {
    i16::try_from(pid % 16).unwrap()
}

/// The shard most of the connections `seen` write their counts to; at least two shards are used.
fn busiest_shard(seen: &BTreeSet<i32>) -> i16 {
    let mut per_shard: BTreeMap<i16, usize> = BTreeMap::new();
    for &pid in seen {
        *per_shard.entry(shard(pid)).or_default() += 1;
    }
    assert!(
        per_shard.len() >= 2,
        "the inserters' {} connections all map to one shard ({per_shard:?}): nothing to show",
        seen.len()
    );
    per_shard
        .iter()
        .max_by_key(|&(_, &n)| n)
        .map(|(&shard, _)| shard)
        .unwrap()
}

/// Two writers whose counts go to one shard may queue on its row; a writer waiting on a writer of
/// another shard would show a row (or lock) all writers share.
fn check_waits(backends: &[(i32, bool, Vec<i32>)], holder_pid: i32, held: i16) {
    for (pid, _, blockers) in backends.iter().filter(|(_, waits, _)| *waits) {
        for &blocker in blockers {
            let expected = if blocker == holder_pid {
                held
            } else {
                shard(blocker)
            };
            assert_eq!(
                shard(*pid),
                expected,
                "backend {pid} (shard {}) waits on {blocker} (the holder of shard {held} is \
                 {holder_pid})",
                shard(*pid)
            );
        }
    }
}

/// The shards of the connections `seen`, and the shards holding counts of v1 documents, which
/// must be several and among the former.
fn count_shards(
    observer: &mut postgres::Client,
    collection: i32,
    seen: &BTreeSet<i32>,
) -> (BTreeSet<i16>, BTreeSet<i16>) {
    let shards: BTreeMap<i16, i64> = observer
        .query(
            "SELECT shard, n FROM revolve_counts WHERE collection = $1 AND counter = 0 AND version = 1",
            &[&collection],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let used: BTreeSet<i16> = shards
        .iter()
        .filter(|&(_, &n)| n > 0)
        .map(|(&shard, _)| shard)
        .collect();
    let possible: BTreeSet<i16> = seen.iter().map(|&pid| shard(pid)).collect();
    assert!(used.len() >= 2, "counts on one shard: {shards:?}");
    assert!(
        used.is_subset(&possible),
        "count rows {used:?} outside the writers' shards {possible:?}"
    );
    (possible, used)
}

fn inserters_are_not_serialised(url: &str) -> String {
    let schema = TestSchema::new(url, "inserters");
    let store = schema.store();
    drop(store.collection::<ItemV1>().unwrap());
    let mut observer = schema.client();
    let collection: i32 = observer
        .query_one(
            "SELECT id FROM revolve_collections WHERE name = 'items'",
            &[],
        )
        .unwrap()
        .get(0);
    let settings = format!("docs={INSERTS_PER_THREAD}");
    let mut procs: Vec<Proc> = (0..2)
        .map(|_| Proc::spawn("inserter", url, &schema.name, &settings))
        .collect();
    for proc in &mut procs {
        proc.wait_for("ready");
    }
    // Every connection the two processes opened so far, and the shard their counts go to.
    let mut seen: BTreeSet<i32> = backends(&mut observer, &schema.name)
        .into_iter()
        .map(|(pid, _, _)| pid)
        .collect();
    // Hold the count row of the most used shard, as a writer would.
    let held = busiest_shard(&seen);
    let mut holder = schema.client();
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut tx = holder.transaction().unwrap();
    tx.execute(
        "INSERT INTO revolve_counts (collection, counter, version, shard, n)
         VALUES ($1, 0, 1, $2, 0)
         ON CONFLICT (collection, counter, version, shard) DO UPDATE SET n = revolve_counts.n",
        &[&collection, &held],
    )
    .unwrap();
    let committed = |observer: &mut postgres::Client| -> i64 {
        observer
            .query_one(
                "SELECT count(*) FROM revolve_heads WHERE collection = $1",
                &[&collection],
            )
            .unwrap()
            .get(0)
    };
    let before = committed(&mut observer);
    for proc in &mut procs {
        proc.send("go");
    }
    // While the row is held: some inserter waits for it, and the others keep committing.
    let mut waiting = Vec::new();
    let mut after = before;
    poll(
        "an inserter waiting on the held count row while 200 others commit",
        Duration::from_secs(40),
        || {
            let now = backends(&mut observer, &schema.name);
            seen.extend(now.iter().map(|&(pid, _, _)| pid));
            check_waits(&now, holder_pid, held);
            waiting = now
                .into_iter()
                .filter(|(_, waits, blockers)| *waits && blockers.contains(&holder_pid))
                .collect::<Vec<_>>();
            after = committed(&mut observer);
            !waiting.is_empty() && after >= before + 200
        },
    );
    tx.rollback().unwrap();
    for proc in procs {
        proc.finish();
    }
    let expected = 2 * INSERTER_THREADS as u64 * (1 + INSERTS_PER_THREAD);
    let items = store.collection::<ItemV1>().unwrap();
    assert_eq!(items.len().unwrap(), expected);
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(1, expected)])
    );
    // The counts are spread over the shards of the connections that wrote them.
    let (possible, used) = count_shards(&mut observer, collection, &seen);
    drop(items);
    drop(store);
    format!(
        "{} connections over shards {possible:?}; shard {held} held: {} waited, {} documents \
         committed meanwhile; counts on {} shards",
        seen.len(),
        waiting.len(),
        after - before,
        used.len()
    )
}

// ---- The runner. ----

type Scenario = fn(&str) -> String;

// ---- Scenarios 8 to 11: startup races and the registration lock. ----

/// How many processes start at once.
const STARTERS: usize = 5;
/// The documents the first program wrote.
const STARTS: u64 = 20;

/// Opens the store (with a pool of `pool` connections unless 0), says `ready`, waits for `go`,
/// then opens the collection as the program `variant` defines it (1: a new version 2; 2: version
/// 1 changed compatibly; 3: version 1 changed incompatibly) and serves: writes a document, reads
/// it and a document the first program wrote. Says `served`, or `refused` and the error.
fn starter(url: &str, schema: &str, variant: u64, pool: u64) {
    let mut builder = Store::builder().url(url).schema(schema);
    if pool > 0 {
        builder = builder.pool_size(usize::try_from(pool).unwrap());
    }
    let store = builder
        .open()
        .unwrap_or_else(|error| panic!("cannot open the store: {}", chain(&error)));
    println!("ready");
    wait_for_go();
    let id = format!("p{}", std::process::id());
    let outcome = match variant {
        1 => serve(
            &store,
            &id,
            &StartV2 { n: 1, double: 2 },
            &StartV2 { n: 0, double: 0 },
        ),
        2 => serve(
            &store,
            &id,
            &StartV1Tagged {
                n: 1,
                tag: id.clone(),
            },
            &StartV1Tagged {
                n: 0,
                tag: String::new(),
            },
        ),
        3 => serve(
            &store,
            &id,
            &StartV1Broken { n: id.clone() },
            &StartV1Broken { n: String::new() },
        ),
        _ => panic!("unknown variant {variant}"),
    };
    println!("{outcome}");
}

/// Opens `T`'s collection and writes `mine` as `id`, reads it back, and reads `s0` (`first`).
fn serve<T: Schema + PartialEq + std::fmt::Debug>(
    store: &Store,
    id: &str,
    mine: &T,
    first: &T,
) -> String {
    let collection = match store.collection::<T>() {
        Ok(collection) => collection,
        Err(error @ StoreError::SchemaChanged { .. }) => return refusal(&error),
        Err(error) => panic!("opening the collection: {}", chain(&error)),
    };
    collection.insert_with_id(id, mine).unwrap();
    assert_eq!(&collection.get(id).unwrap().unwrap().data, mine);
    assert_eq!(&collection.get("s0").unwrap().unwrap().data, first);
    "served".to_owned()
}

/// A refusal as one line: `refused` and the message, its line breaks escaped.
fn refusal(error: &StoreError) -> String {
    format!("refused {}", error.to_string().replace('\n', "\\n"))
}

/// The first program's store: `STARTS` documents at version 1.
fn set_up_starts(schema: &TestSchema) {
    let store = schema.store();
    let starts = store.collection::<StartV1>().unwrap();
    for n in 0..STARTS {
        starts
            .insert_with_id(&format!("s{n}"), &StartV1 { n })
            .unwrap();
    }
}

/// The schema history's rows of `starts`: (version, event), oldest first.
fn start_history(schema: &TestSchema) -> Vec<(i32, String)> {
    schema
        .client()
        .query(
            "SELECT h.version, h.event FROM revolve_schema_history h
             JOIN revolve_collections c ON c.id = h.collection
             WHERE c.name = 'starts' ORDER BY h.seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The `_meta` record of `starts` as stored, history apart.
fn start_meta(schema: &TestSchema) -> Vec<u8> {
    schema
        .client()
        .query_one(
            "SELECT meta FROM revolve_collections WHERE name = 'starts'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Starts [`STARTERS`] processes of `variant` at once (each opens its store, then all are let go
/// together) and returns what each said.
fn race(url: &str, schema: &TestSchema, variant: u64, pool: u64) -> Vec<String> {
    let settings = format!("variant={variant} pool={pool}");
    let mut procs: Vec<Proc> = (0..STARTERS)
        .map(|_| Proc::spawn("starter", url, &schema.name, &settings))
        .collect();
    for proc in &mut procs {
        proc.wait_for("ready");
    }
    for proc in &mut procs {
        proc.send("go");
    }
    procs
        .into_iter()
        .map(|proc| {
            let lines = proc.finish();
            lines
                .into_iter()
                .find(|line| line.starts_with("served") || line.starts_with("refused"))
                .expect("a starter said neither served nor refused")
        })
        .collect()
}

fn startup_race_registers_a_new_version_once(url: &str) -> String {
    let schema = TestSchema::new(url, "race_new");
    set_up_starts(&schema);
    // Half of the starters with a pool of one connection.
    let mut said = race(url, &schema, 1, 1);
    said.extend(race_more(url, &schema, 1));
    assert!(said.iter().all(|line| line == "served"), "{said:?}");
    let history = start_history(&schema);
    assert_eq!(
        history,
        [(1, "registered".to_owned()), (2, "registered".to_owned())],
        "the schema history after the race"
    );
    // Every starter's document and the first program's, readable at v2.
    let store = schema.store();
    let starts = store.collection::<StartV2>().unwrap();
    assert_eq!(
        starts.iter().map(Result::unwrap).count(),
        usize::try_from(STARTS).unwrap() + 2 * STARTERS
    );
    format!("{} starters served; v2 registered once", said.len())
}

/// A second wave of starters once the first served: they find the version recorded and skip.
fn race_more(url: &str, schema: &TestSchema, variant: u64) -> Vec<String> {
    race(url, schema, variant, 0)
}

fn startup_race_records_a_compatible_change_once(url: &str) -> String {
    let schema = TestSchema::new(url, "race_compatible");
    set_up_starts(&schema);
    // A pool of one: the change is tried on stored documents while the store has no other
    // connection to spare.
    let said = race(url, &schema, 2, 1);
    assert!(said.iter().all(|line| line == "served"), "{said:?}");
    assert_eq!(
        start_history(&schema),
        [(1, "registered".to_owned()), (1, "compatible".to_owned())],
        "the schema history after the race"
    );
    format!("{} starters served; the change recorded once", said.len())
}

fn startup_race_refuses_a_breaking_change_everywhere(url: &str) -> String {
    let schema = TestSchema::new(url, "race_breaking");
    set_up_starts(&schema);
    let before = (start_meta(&schema), start_history(&schema));
    // Today's message: what one program alone is told.
    let alone = match schema.store().collection::<StartV1Broken>() {
        Err(error @ StoreError::SchemaChanged { .. }) => refusal(&error),
        other => panic!("a breaking change was not refused: {other:?}"),
    };
    let said = race(url, &schema, 3, 0);
    assert_eq!(said, vec![alone; STARTERS]);
    assert_eq!(
        (start_meta(&schema), start_history(&schema)),
        before,
        "a refusal recorded something"
    );
    format!("{} starters refused; nothing recorded", said.len())
}

fn a_held_registration_lock_is_waited_for_with_a_bound(url: &str) -> String {
    let schema = TestSchema::new(url, "lock_wait");
    set_up_starts(&schema);
    let before = start_history(&schema);
    // Another instance inside its registration transaction: the lock of the schema and the
    // collection, as the engine takes it.
    let mut holder = schema.client();
    let mut tx = holder.transaction().unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(
             'revolve.meta:' || length(current_schema()) || ':' || current_schema() || ':starts', 0))",
        &[],
    )
    .unwrap();
    let bound = Duration::from_millis(1500);
    let store = Store::builder()
        .url(url)
        .schema(&schema.name)
        .pool_size(1)
        .registration_timeout(bound)
        .open()
        .unwrap();
    let started = Instant::now();
    let Err(error) = store.collection::<StartV2>() else {
        panic!("registered while another instance held the lock")
    };
    let waited = started.elapsed();
    assert!(
        matches!(error, StoreError::LockTimeout { .. }),
        "{}",
        chain(&error)
    );
    let message = error.to_string();
    assert!(
        message.starts_with("registering collection \"starts\" waited "),
        "{message}"
    );
    assert!(waited >= bound, "gave up after {waited:?}");
    assert!(
        waited < bound + Duration::from_secs(10),
        "waited {waited:?}"
    );
    // Nothing recorded; the collection is not bound, so a later call tries again.
    assert_eq!(start_history(&schema), before);
    // Another store in another schema does not wait for it.
    let other = TestSchema::new(url, "lock_wait_other");
    set_up_starts(&other);
    drop(other.store().collection::<StartV2>().unwrap());
    // Once the holder's transaction ends (a crash ends it too), registration goes through.
    tx.rollback().unwrap();
    let starts = store.collection::<StartV2>().unwrap();
    assert_eq!(starts.get("s1").unwrap().unwrap().data.double, 2);
    assert_eq!(
        start_history(&schema),
        [(1, "registered".to_owned()), (2, "registered".to_owned())]
    );
    format!("gave up after {waited:.1?} (bound {bound:?}), then registered once released")
}

/// Every scenario, by name.
fn scenarios() -> [(&'static str, Scenario); 16] {
    [
        (
            "three_processes_lose_no_update",
            three_processes_lose_no_update,
        ),
        ("kill_during_migration", kill_during_migration),
        (
            "run_lease_keeps_a_second_process_out",
            run_lease_keeps_a_second_process_out,
        ),
        ("inserters_are_not_serialised", inserters_are_not_serialised),
        ("update_if_during_a_migration", update_if_during_a_migration),
        (
            "a_paused_holder_stops_after_losing_its_lease",
            a_paused_holder_stops_after_losing_its_lease,
        ),
        (
            "startup_race_registers_a_new_version_once",
            startup_race_registers_a_new_version_once,
        ),
        (
            "startup_race_records_a_compatible_change_once",
            startup_race_records_a_compatible_change_once,
        ),
        (
            "startup_race_refuses_a_breaking_change_everywhere",
            startup_race_refuses_a_breaking_change_everywhere,
        ),
        (
            "a_held_registration_lock_is_waited_for_with_a_bound",
            a_held_registration_lock_is_waited_for_with_a_bound,
        ),
        ("three_workers_migrate_once", three_workers_migrate_once),
        (
            "three_workers_keep_to_the_limit",
            three_workers_keep_to_the_limit,
        ),
        (
            "a_run_whose_workers_died_is_resumed",
            a_run_whose_workers_died_is_resumed,
        ),
        (
            "a_stalled_worker_cannot_write_after_its_lease",
            a_stalled_worker_cannot_write_after_its_lease,
        ),
        (
            "a_killed_workers_share_of_the_limit_is_given_back",
            a_killed_workers_share_of_the_limit_is_given_back,
        ),
        (
            "workers_heartbeat_on_one_connection",
            workers_heartbeat_on_one_connection,
        ),
    ]
}

// ---- Scenarios 12 and 13: one run, many workers (`Migration::join`). ----

/// Documents of the fleet scenarios: `REVOLVE_FLEET_DOCS` (100,000 for the size), 20,000
/// by default so that CI on two cores stays quick.
fn fleet_docs() -> u64 {
    std::env::var("REVOLVE_FLEET_DOCS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

/// The run lease of the fleet's workers: a killed worker's share is taken over once it expires.
const FLEET_LEASE_MS: u64 = 2000;

/// Joins the migration of `items` (with `limit` when not 0); with `stop_at_step`, stops in that
/// step, its chunk's transaction open, and waits to be killed. Prints its report as
/// `report <run> <scanned> <migrated> <failed> <skipped>`.
fn fleet_worker(url: &str, schema: &str, seed: u64, limit: u64, stop_at_step: u64) {
    STOP_AT_STEP.store(stop_at_step, Ordering::SeqCst);
    let store = open_store(url, schema);
    let items = store.collection::<ItemV2>().unwrap();
    println!("ready");
    let _ = std::io::stdout().flush();
    wait_for_go();
    let mut migration = items
        .migrate()
        .join()
        .threads(2)
        .worker_name(format!("worker-{seed}"));
    if limit > 0 {
        migration = migration.limit(limit);
    }
    let report = migration
        .execute()
        .unwrap_or_else(|error| panic!("migrate: {}", chain(&error)));
    println!(
        "report {} {} {} {} {}",
        report.run_id.unwrap_or(0),
        report.scanned,
        report.migrated,
        report.failed,
        report.skipped
    );
}

/// Joins the migration of `items`, pausing in the step `pause_at_step` (its chunk's transaction
/// open) until the parent says `go`; prints how it ended: `result ok` or `result err <error>`.
fn stalling_worker(url: &str, schema: &str, pause_at_step: u64) {
    PAUSE_AT_STEP.store(pause_at_step, Ordering::SeqCst);
    let store = open_store(url, schema);
    let items = store.collection::<ItemV2>().unwrap();
    match items.migrate().join().worker_name("stalled").execute() {
        Ok(report) => println!("result ok migrated {}", report.migrated),
        Err(error) => println!("result err {}", chain(&error)),
    }
}

/// `n` v1 documents; their ids in order.
fn set_up_fleet(store: &Store, n: u64) -> Vec<String> {
    let items = store.collection::<ItemV1>().unwrap();
    let mut ids = Vec::new();
    let all: Vec<ItemV1> = (0..n).map(item).collect();
    for batch in all.chunks(5000) {
        ids.extend(
            items
                .insert_many(batch)
                .unwrap()
                .iter()
                .map(ToString::to_string),
        );
    }
    ids.sort();
    ids
}

/// A worker's report line: (run, scanned, migrated, failed, skipped).
fn fleet_report(lines: &[String]) -> (u64, u64, u64, u64, u64) {
    let line = lines
        .iter()
        .find(|line| line.starts_with("report "))
        .unwrap_or_else(|| panic!("no report in {lines:?}"));
    let n: Vec<u64> = line
        .split(' ')
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3], n[4])
}

/// Three processes join one migration while a fourth rewrites documents with `update_if`; one
/// worker is killed with `kill -9` in a step, its chunk's transaction open. The others finish
/// its share: every document is at v2 with exactly one migration revision (of the one run) or
/// none (a write took it to v2 first), every acknowledged write is in the history, the ledger
/// has one run with three workers whose counts add up to the run's and to the survivors'
/// reports plus what the killed one committed.
fn three_workers_migrate_once(url: &str) -> String {
    let n = fleet_docs();
    let schema = TestSchema::new(url, "fleet");
    let ids = set_up_fleet(&schema.store(), n);
    // At most 2,000 ids: they travel in an environment variable.
    let edited = ids
        .iter()
        .step_by((ids.len() / 2000).max(1))
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    let lease = format!("lease_ms={FLEET_LEASE_MS}");
    let mut workers: Vec<Proc> = (1..=3)
        .map(|seed| {
            let stop = if seed == 3 {
                format!(" stop_at_step={}", n / 6)
            } else {
                String::new()
            };
            Proc::spawn(
                "worker",
                url,
                &schema.name,
                &format!("{lease} seed={seed}{stop}"),
            )
        })
        .collect();
    let mut editor = Proc::spawn_with("editor", url, &schema.name, "seed=7", &[(IDS_ENV, &edited)]);
    for proc in workers.iter_mut().chain(std::iter::once(&mut editor)) {
        proc.wait_for("ready");
    }
    for proc in workers.iter_mut().chain(std::iter::once(&mut editor)) {
        proc.send("go");
    }
    let mut killed = workers.pop().unwrap();
    killed.wait_for("kill-me");
    assert!(
        killed.kill9(),
        "the third worker ended before it was killed"
    );
    let (acks, _) = editors_output(vec![editor]);
    let reports: Vec<_> = workers
        .into_iter()
        .map(|proc| fleet_report(&proc.finish()))
        .collect();

    let store = schema.store();
    let items = store.collection::<ItemV2>().unwrap();
    assert_eq!(items.count_by_version().unwrap(), BTreeMap::from([(2, n)]));
    let run_id = reports[0].0;
    assert!(
        reports.iter().all(|r| r.0 == run_id),
        "one run: {reports:?}"
    );
    let run = items.run(run_id).unwrap().unwrap();
    assert_eq!(run.state, RunState::Done, "{run:?}");
    assert_eq!(run.workers.len(), 3, "{run:?}");
    let sum = |f: fn(&revolve::WorkerRecord) -> u64| run.workers.iter().map(f).sum::<u64>();
    assert_eq!(sum(|w| w.taken), run.scanned);
    assert_eq!(sum(|w| w.migrated + w.failed + w.skipped), run.scanned);
    assert_eq!(run.migrated + run.failed + run.skipped, run.scanned);
    let dead = run
        .workers
        .iter()
        .find(|w| w.instance == "worker-3")
        .unwrap();
    let survivors: u64 = reports.iter().map(|r| r.2).sum();
    assert_eq!(
        survivors + dead.migrated,
        run.migrated,
        "{reports:?} {run:?}"
    );
    // Every document migrated exactly once: one migration revision, of this run, or none where
    // a write took it to v2 first.
    let mut migrations = 0u64;
    let mut written_first = 0u64;
    for id in &ids {
        let history = items.history(id).unwrap();
        let of_run = history
            .iter()
            .filter(|info| info.origin == revolve::Origin::Migration { run: run_id })
            .count();
        let any = history
            .iter()
            .filter(|info| matches!(info.origin, revolve::Origin::Migration { .. }))
            .count();
        assert!(of_run <= 1 && any == of_run, "{id}: {history:?}");
        migrations += of_run as u64;
        written_first += u64::from(of_run == 0);
    }
    assert_eq!(migrations, run.migrated);
    assert_eq!(migrations + written_first, n);
    for (id, acked) in &acks {
        check_edited(&items, id, acked);
    }
    format!(
        "{n} documents, run {run_id}: workers took {:?}; {} acknowledged writes, {written_first} \
         written at v2 first",
        run.workers
            .iter()
            .map(|w| (w.instance.clone(), w.taken))
            .collect::<Vec<_>>(),
        acks.values().map(Vec::len).sum::<usize>()
    )
}

/// Three processes join one migration with a limit of half the documents: exactly that many
/// are migrated, over the three.
fn three_workers_keep_to_the_limit(url: &str) -> String {
    let n = fleet_docs();
    let limit = n / 2;
    let schema = TestSchema::new(url, "fleetlimit");
    set_up_fleet(&schema.store(), n);
    let mut workers: Vec<Proc> = (1..=3)
        .map(|seed| {
            Proc::spawn(
                "worker",
                url,
                &schema.name,
                &format!("lease_ms={FLEET_LEASE_MS} seed={seed} limit={limit}"),
            )
        })
        .collect();
    for proc in &mut workers {
        proc.wait_for("ready");
    }
    for proc in &mut workers {
        proc.send("go");
    }
    let reports: Vec<_> = workers
        .into_iter()
        .map(|proc| fleet_report(&proc.finish()))
        .collect();
    let store = schema.store();
    let items = store.collection::<ItemV2>().unwrap();
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(1, n - limit), (2, limit)])
    );
    assert_eq!(
        reports.iter().map(|r| r.2).sum::<u64>(),
        limit,
        "{reports:?}"
    );
    let run = items.run(reports[0].0).unwrap().unwrap();
    assert_eq!((run.migrated, run.workers.len()), (limit, 3), "{run:?}");
    format!(
        "limit {limit} of {n}: the workers migrated {:?}",
        reports.iter().map(|r| r.2).collect::<Vec<_>>()
    )
}

/// A worker killed with `kill -9` in its second chunk holds a chunk's share of the run's limit:
/// once its lease expires, its peer takes that share back and the run still migrates exactly
/// the limit.
fn a_killed_workers_share_of_the_limit_is_given_back(url: &str) -> String {
    let (n, limit) = (10_000, 8_000);
    let schema = TestSchema::new(url, "fleetshare");
    set_up_fleet(&schema.store(), n);
    let mut workers: Vec<Proc> = [(1, ""), (2, " stop_at_step=1001")]
        .into_iter()
        .map(|(seed, stop)| {
            Proc::spawn(
                "worker",
                url,
                &schema.name,
                &format!("lease_ms={FLEET_LEASE_MS} seed={seed} limit={limit}{stop}"),
            )
        })
        .collect();
    for proc in &mut workers {
        proc.wait_for("ready");
    }
    for proc in &mut workers {
        proc.send("go");
    }
    let mut killed = workers.pop().unwrap();
    killed.wait_for("kill-me");
    assert!(
        killed.kill9(),
        "the second worker ended before it was killed"
    );
    let survivor = fleet_report(&workers.pop().unwrap().finish());
    let store = schema.store();
    let items = store.collection::<ItemV2>().unwrap();
    assert_eq!(
        items.count_by_version().unwrap(),
        BTreeMap::from([(1, n - limit), (2, limit)])
    );
    let run = items.run(survivor.0).unwrap().unwrap();
    let dead = run
        .workers
        .iter()
        .find(|w| w.instance == "worker-2")
        .unwrap();
    assert_eq!(dead.migrated, 1000, "{run:?}");
    assert_eq!(survivor.2 + dead.migrated, limit, "{survivor:?} {run:?}");
    assert_eq!(
        (run.migrated, run.state),
        (limit, RunState::Done),
        "{run:?}"
    );
    format!(
        "limit {limit} of {n}: the survivor migrated {}, the killed worker {}",
        survivor.2, dead.migrated
    )
}

/// A worker stopped (SIGSTOP) mid-chunk past its lease while a peer works: the peer migrates
/// the rest, then waits for the stalled chunk (its row locks hold those documents); once woken,
/// the stalled worker's chunk fails its fence (`WorkerLeaseLost`) and rolls back, so it writes
/// nothing as the run, and the peer migrates what it held and ends the run: every document
/// once.
fn a_stalled_worker_cannot_write_after_its_lease(url: &str) -> String {
    let n = 5000;
    let schema = TestSchema::new(url, "fleetstall");
    let ids = set_up_fleet(&schema.store(), n);
    let mut stalled = Proc::spawn(
        "stalling-worker",
        url,
        &schema.name,
        &format!("lease_ms={FLEET_LEASE_MS} pause_at_step=1500"),
    );
    stalled.wait_for("paused-in-step");
    // Its heartbeat stops with it.
    signal(&stalled, "STOP");
    let store = Store::builder()
        .url(url)
        .schema(&schema.name)
        .run_lease(Duration::from_millis(FLEET_LEASE_MS))
        .open()
        .unwrap();
    let items = store.collection::<ItemV2>().unwrap();
    let run = items.runs().unwrap()[0].id;
    let (report, woke) = std::thread::scope(|scope| {
        let peer = scope.spawn(|| items.migrate().join().worker_name("peer").execute());
        // The peer takes everything the stalled chunk does not hold, then waits for it; the
        // stalled worker's lease expires meanwhile.
        poll("the stalled worker's lease expired", CHILD_TIMEOUT, || {
            let record = items.run(run).unwrap().unwrap();
            record.workers.len() == 2
                && record
                    .workers
                    .iter()
                    .any(|w| w.instance == "stalled" && !w.live)
        });
        poll("the peer migrated all it could", CHILD_TIMEOUT, || {
            items.count_by_version().unwrap().get(&1) == Some(&1000)
        });
        assert!(
            !peer.is_finished(),
            "the peer left a chunk it could not see end"
        );
        signal(&stalled, "CONT");
        stalled.send("go");
        let woke = stalled.finish();
        (peer.join().unwrap(), woke)
    });
    let report = report.unwrap_or_else(|error| panic!("peer: {}", chain(&error)));
    let result = woke
        .iter()
        .find(|line| line.starts_with("result"))
        .cloned()
        .unwrap_or_default();
    assert!(
        result.starts_with("result err") && result.contains("let its lease expire"),
        "{result:?}"
    );
    assert_eq!(report.run_id, Some(run));
    assert_eq!(items.count_by_version().unwrap(), BTreeMap::from([(2, n)]));
    let record = items.run(run).unwrap().unwrap();
    assert_eq!(record.state, RunState::Done, "{record:?}");
    let stalled_worker = record
        .workers
        .iter()
        .find(|w| w.instance == "stalled")
        .unwrap();
    assert_eq!(
        stalled_worker.migrated, 1000,
        "only its first chunk: {record:?}"
    );
    assert_eq!(report.migrated + stalled_worker.migrated, n);
    assert_eq!(record.migrated, n);
    for id in &ids {
        let migrations = items
            .history(id)
            .unwrap()
            .into_iter()
            .filter(|info| info.origin == revolve::Origin::Migration { run })
            .count();
        assert_eq!(migrations, 1, "{id}");
    }
    format!(
        "{result}; the peer migrated {} and the run {}",
        report.migrated, record.migrated
    )
}

/// The only worker of a joined run is killed with `kill -9` mid-chunk: once its lease expires the
/// run reads `interrupted` (its counts from its row), and a `join()` from another process starts
/// a new run that migrates what is left, each document once.
fn a_run_whose_workers_died_is_resumed(url: &str) -> String {
    let n = 5000;
    let schema = TestSchema::new(url, "fleetdied");
    let ids = set_up_fleet(&schema.store(), n);
    let mut worker = Proc::spawn(
        "worker",
        url,
        &schema.name,
        &format!("lease_ms={FLEET_LEASE_MS} seed=1 stop_at_step=2500"),
    );
    worker.wait_for("ready");
    worker.send("go");
    worker.wait_for("kill-me");
    assert!(worker.kill9(), "the worker ended before it was killed");
    drop(worker);

    let store = Store::builder()
        .url(url)
        .schema(&schema.name)
        .run_lease(Duration::from_millis(FLEET_LEASE_MS))
        .open()
        .unwrap();
    let items = store.collection::<ItemV2>().unwrap();
    let first = items.runs().unwrap()[0].id;
    poll(
        "the dead worker's run reads interrupted",
        CHILD_TIMEOUT,
        || items.run(first).unwrap().unwrap().state == RunState::Interrupted,
    );
    let dead = items.run(first).unwrap().unwrap();
    assert_eq!(dead.workers.len(), 1, "{dead:?}");
    assert!(!dead.workers[0].live);
    assert_eq!(dead.migrated, dead.workers[0].migrated);
    assert!(dead.migrated > 0 && dead.migrated < n, "{dead:?}");

    let report = items.migrate().join().execute().unwrap();
    let second = report.run_id.unwrap();
    assert_ne!(second, first);
    assert_eq!(report.migrated + dead.migrated, n, "{report:?} {dead:?}");
    assert_eq!(items.count_by_version().unwrap(), BTreeMap::from([(2, n)]));
    let resumed = items.run(second).unwrap().unwrap();
    assert_eq!((resumed.state, resumed.workers.len()), (RunState::Done, 1));
    for id in &ids {
        let migrations: Vec<_> = items
            .history(id)
            .unwrap()
            .into_iter()
            .filter(|info| matches!(info.origin, revolve::Origin::Migration { .. }))
            .collect();
        assert_eq!(migrations.len(), 1, "{id}: {migrations:?}");
    }
    format!(
        "run {first} interrupted after {} of {n}; run {second} migrated the other {}",
        dead.migrated, report.migrated
    )
}

fn main() -> ExitCode {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        return child(&role);
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let scenarios = scenarios();
    // As libtest's `#[ignore]`: run only with `--ignored` or `--include-ignored`.
    let ignored: [(&str, &str); 0] = [];
    let only_ignored = std::env::args().any(|arg| arg == "--ignored");
    let include_ignored = only_ignored || std::env::args().any(|arg| arg == "--include-ignored");
    let chosen: Vec<_> = scenarios
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .filter(|(name, _)| {
            let reason = ignored.iter().find(|(ignored, _)| ignored == name);
            if let (Some((_, reason)), false) = (reason, include_ignored) {
                println!("test {name} ... ignored, {reason}");
            }
            if reason.is_some() {
                include_ignored
            } else {
                !only_ignored
            }
        })
        .collect();
    let Some(url) = postgres_url() else {
        for (name, _) in &chosen {
            println!("test {name} ... skipped: no PostgreSQL (run under scripts/with-postgres)");
        }
        return ExitCode::SUCCESS;
    };
    let started = Instant::now();
    let results: Vec<_> = std::thread::scope(|scope| {
        let running: Vec<_> = chosen
            .iter()
            .map(|&(name, scenario)| {
                let url = url.clone();
                let thread = std::thread::Builder::new()
                    .name(name.to_owned())
                    .spawn_scoped(scope, move || {
                        let at = Instant::now();
                        (scenario(&url), at.elapsed())
                    })
                    .unwrap();
                (name, thread)
            })
            .collect();
        running
            .into_iter()
            .map(|(name, thread)| (name, thread.join()))
            .collect()
    });
    let (mut passed, mut failed) = (0, 0);
    for (name, result) in results {
        if let Ok((summary, elapsed)) = result {
            passed += 1;
            println!("test {name} ... ok ({elapsed:.1?}): {summary}");
        } else {
            failed += 1;
            println!("test {name} ... FAILED (its panic is printed above)");
        }
    }
    println!(
        "{passed} passed, {failed} failed in {:.1?}",
        started.elapsed()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The heartbeats of a process's workers share one connection: four joined workers of one run,
/// in four threads of one store with a pool of two, held after their first chunk once each has
/// renewed its lease, hold at most the pool's connections and one more (not one more each: a
/// fleet of instances migrating several collections at startup would run a server out of
/// connections).
fn workers_heartbeat_on_one_connection(url: &str) -> String {
    const WORKERS: usize = 4;
    const POOL: usize = 2;
    let schema = TestSchema::new(url, "heartbeats");
    set_up_fleet(&schema.store(), 10_000);
    let name = format!("revolve_heartbeats_{}", std::process::id());
    let store = Store::builder()
        .url(with_application_name(url, &name))
        .schema(&schema.name)
        .run_lease(Duration::from_millis(FLEET_LEASE_MS))
        .pool_size(POOL)
        .open()
        .unwrap();
    let items = store.collection::<ItemV2>().unwrap();
    let held = Arc::new(Barrier::new(WORKERS + 1));
    let release = Arc::new(Barrier::new(WORKERS + 1));
    let workers: Vec<JoinHandle<u64>> = (0..WORKERS)
        .map(|_| {
            let (items, held, release) = (items.clone(), Arc::clone(&held), Arc::clone(&release));
            std::thread::spawn(move || {
                let mut first = true;
                items
                    .migrate()
                    .join()
                    .threads(1)
                    .on_progress(move |_| {
                        if std::mem::take(&mut first) {
                            held.wait();
                            release.wait();
                        }
                    })
                    .execute()
                    .unwrap()
                    .migrated
            })
        })
        .collect();
    held.wait();
    let mut client = schema.client();
    poll(
        "every worker renews its lease",
        Duration::from_secs(30),
        || {
            client
                .query_one(
                    "SELECT count(*) FROM revolve_fleet_workers WHERE heartbeat > started",
                    &[],
                )
                .unwrap()
                .get::<_, i64>(0)
                == i64::try_from(WORKERS).unwrap()
        },
    );
    let connections: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    release.wait();
    let migrated: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(migrated, 10_000);
    assert!(
        connections <= i64::try_from(POOL + 1).unwrap(),
        "{WORKERS} workers held {connections} connections with a pool of {POOL}"
    );
    drop(items);
    drop(store);
    format!("{WORKERS} workers held {connections} connections with a pool of {POOL}")
}
