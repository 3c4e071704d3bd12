//! The fleet mode of the PostgreSQL benchmark (`--fleet`, issue 12): one joined migration
//! (`migrate().join()`) with one worker, two workers in two threads of one process and two
//! worker processes, beside the hand-written migration with one and two workers; and where the
//! time goes, measured from outside revolve (see [`Meter`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use revolve::{Collection, Durability, RunState};

use super::dataset::IssueV2;
use super::{
    checkpoints, checkpoints_since, client, copy, golden, median, run_handwritten, store, Args,
    HandWorker,
};

/// Set in a worker process, to the worker's name: the process joins the run and reports.
pub(crate) const CHILD_ENV: &str = "REVOLVE_BENCH_FLEET_CHILD";
/// A worker process's rayon threads.
const THREADS_ENV: &str = "REVOLVE_BENCH_FLEET_THREADS";
/// `0` when a worker process does not validate its outputs.
const VALIDATE_ENV: &str = "REVOLVE_BENCH_FLEET_VALIDATE";

/// The schema every configuration migrates, a fresh copy of the golden one each time.
const SCHEMA: &str = "bench_fleet";
/// How often `pg_stat_activity` is sampled while a configuration runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// How much of a statement's text tells it apart in the profile.
const STATEMENT_CHARS: usize = 72;
/// How many statements the profile of a configuration shows.
const PROFILE_LINES: usize = 10;

/// A configuration.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    /// `processes` × `workers` (threads of a process) joined workers of one revolve run, each
    /// with `threads` rayon threads.
    Revolve {
        processes: usize,
        workers: usize,
        threads: usize,
    },
    /// The hand-written migration with `workers` threads, each on its connection.
    Hand { workers: usize },
}

impl Setup {
    fn name(self) -> String {
        match self {
            Setup::Revolve {
                processes,
                workers,
                threads,
            } => format!("revolve {processes}×{workers} ({threads} thread(s) each)"),
            Setup::Hand { workers } => format!("hand-written, {workers} worker(s)"),
        }
    }
}

/// What one configuration did in one run.
struct Measured {
    docs_per_second: f64,
    metered: Metered,
    /// Per worker: its name, the documents it took and how long it was in the run.
    workers: Vec<(String, u64, Duration)>,
    /// The latest of the workers' first chunks' commits, from the start: the time it takes to
    /// set a run up and have every worker at work.
    first_chunks: Duration,
    /// When the last chunk committed, from the start; from then to the end, the workers find
    /// nothing more to do and leave (revolve's idle workers poll for their peers, then look
    /// once more from the start).
    last_chunk: Duration,
    checkpoints: i64,
}

/// The fleet benchmark: every configuration on a fresh copy of the golden schema, in an order
/// reversed every other run; per run figures, then medians and the issue's ratios.
pub(crate) fn main(args: &Args) {
    let golden = golden(&args.url, args.docs);
    let postmaster = postmaster(&args.url);
    if postmaster.is_none() {
        eprintln!("fleet: the server's processes are not visible in /proc: no server CPU time");
    }
    let threads = args.threads;
    let mut setups = vec![
        Setup::Revolve {
            processes: 1,
            workers: 1,
            threads,
        },
        Setup::Revolve {
            processes: 1,
            workers: 2,
            threads,
        },
        Setup::Revolve {
            processes: 2,
            workers: 1,
            threads,
        },
        Setup::Hand { workers: 1 },
        Setup::Hand { workers: 2 },
    ];
    if threads != 2 {
        // One worker with the machine's two cores for its processing, for comparison.
        setups.push(Setup::Revolve {
            processes: 1,
            workers: 1,
            threads: 2,
        });
    }
    let mut results: Vec<Vec<Measured>> = setups.iter().map(|_| Vec::new()).collect();
    for run in 0..args.runs {
        let mut order: Vec<usize> = (0..setups.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for i in order {
            copy(&args.url, &golden, SCHEMA);
            let before = checkpoints(&args.url);
            let mut measured = match setups[i] {
                Setup::Revolve {
                    processes,
                    workers,
                    threads,
                } => revolve(args, postmaster, processes, workers, threads),
                Setup::Hand { workers } => hand(args, postmaster, workers),
            };
            measured.checkpoints = checkpoints_since(&args.url, before);
            println!(
                "run {run}, {}: {}",
                setups[i].name(),
                describe(&measured, args.docs)
            );
            results[i].push(measured);
        }
    }
    summary(args, &setups, &results);
    profile(&setups, &results);
    client(&args.url)
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{SCHEMA}\" CASCADE"))
        .unwrap();
}

/// A worker process (`CHILD_ENV` set to its name): opens the store, says `ready`, waits for
/// `go`, joins the run, and says `report <run> <migrated> <CPU seconds> <first chunk seconds>
/// <last chunk seconds>`.
pub(crate) fn child(name: &str) {
    let url = std::env::var("REVOLVE_TEST_DATABASE_URL").unwrap();
    let threads: usize = std::env::var(THREADS_ENV).unwrap().parse().unwrap();
    let validate = std::env::var(VALIDATE_ENV).unwrap() != "0";
    let store = store(&url, SCHEMA, Durability::Immediate);
    let issues = store.collection::<IssueV2>().unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go", "the parent said {line:?}");
    let cpu = own_cpu();
    let share = join(&issues, name, threads, validate);
    println!(
        "report {} {} {} {} {}",
        share.run,
        share.migrated,
        own_cpu().saturating_sub(cpu).as_secs_f64(),
        share.first_chunk.as_secs_f64(),
        share.last_chunk.as_secs_f64()
    );
    std::io::stdout().flush().unwrap();
}

/// One worker's share of a joined run.
struct Share {
    run: u64,
    migrated: u64,
    /// When its first chunk committed, from its call.
    first_chunk: Duration,
    /// When its last chunk committed, from its call.
    last_chunk: Duration,
}

/// Joins the collection's run as the worker `name`.
fn join(issues: &Collection<IssueV2>, name: &str, threads: usize, validate: bool) -> Share {
    let started = Instant::now();
    let chunks = Arc::new(Mutex::new((None, Duration::ZERO)));
    let report = {
        let chunks = Arc::clone(&chunks);
        issues
            .migrate()
            .join()
            .threads(threads)
            .worker_name(name)
            .validate_output(validate)
            .on_progress(move |_| {
                let mut chunks = chunks.lock().unwrap();
                let now = started.elapsed();
                chunks.0.get_or_insert(now);
                chunks.1 = now;
            })
            .execute()
            .unwrap()
    };
    let (first_chunk, last_chunk) = *chunks.lock().unwrap();
    Share {
        run: report.run_id.expect("a worker of a run"),
        migrated: report.migrated,
        first_chunk: first_chunk.unwrap_or_default(),
        last_chunk,
    }
}

/// One revolve run of `processes` × `workers` workers: threads of this process, or worker
/// processes (this binary again, with `CHILD_ENV` set), started together.
fn revolve(
    args: &Args,
    postmaster: Option<u32>,
    processes: usize,
    workers: usize,
    threads: usize,
) -> Measured {
    let (metered, shares) = if processes == 1 {
        let store = store(&args.url, SCHEMA, Durability::Immediate);
        let issues = store.collection::<IssueV2>().unwrap();
        let start = Arc::new(Barrier::new(workers + 1));
        let handles: Vec<JoinHandle<Share>> = (0..workers)
            .map(|i| {
                let issues = issues.clone();
                let start = Arc::clone(&start);
                let validate = args.validate;
                std::thread::spawn(move || {
                    start.wait();
                    join(&issues, &format!("thread-{i}"), threads, validate)
                })
            })
            .collect();
        let meter = Meter::start(&args.url, postmaster);
        start.wait();
        let shares: Vec<Share> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (meter.stop(), shares)
    } else {
        assert_eq!(workers, 1, "one worker per process");
        let mut children: Vec<WorkerProcess> = (0..processes)
            .map(|i| WorkerProcess::spawn(args, &format!("process-{i}"), threads))
            .collect();
        for child in &mut children {
            assert_eq!(child.line(), "ready");
        }
        let meter = Meter::start(&args.url, postmaster);
        for child in &mut children {
            child.send("go");
        }
        let mut shares = Vec::new();
        let mut cpu = Duration::ZERO;
        for child in &mut children {
            let line = child.line();
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!((words.len(), words[0]), (6, "report"), "{line}");
            let seconds = |i: usize| Duration::from_secs_f64(words[i].parse().unwrap());
            cpu += seconds(3);
            shares.push(Share {
                run: words[1].parse().unwrap(),
                migrated: words[2].parse().unwrap(),
                first_chunk: seconds(4),
                last_chunk: seconds(5),
            });
        }
        let mut metered = meter.stop();
        metered.client_cpu += cpu;
        for child in children {
            child.finish();
        }
        (metered, shares)
    };
    let workers = check_revolve(args, &shares, processes * workers);
    Measured {
        docs_per_second: args.docs as f64 / metered.wall.as_secs_f64(),
        metered,
        workers,
        first_chunks: shares.iter().map(|s| s.first_chunk).max().unwrap(),
        last_chunk: shares.iter().map(|s| s.last_chunk).max().unwrap(),
        checkpoints: 0,
    }
}

/// One run of the hand-written migration with `workers` connections.
fn hand(args: &Args, postmaster: Option<u32>, workers: usize) -> Measured {
    let hands = (0..workers)
        .map(|_| HandWorker::new(&args.url, SCHEMA))
        .collect();
    let meter = Meter::start(&args.url, postmaster);
    let run = run_handwritten(hands, args.docs);
    let metered = meter.stop();
    check_versions(args);
    Measured {
        docs_per_second: args.docs as f64 / metered.wall.as_secs_f64(),
        metered,
        workers: run
            .workers
            .iter()
            .enumerate()
            .map(|(i, share)| (format!("connection-{i}"), share.migrated, share.took))
            .collect(),
        first_chunks: run.workers.iter().map(|s| s.first_chunk).max().unwrap(),
        last_chunk: run.workers.iter().map(|s| s.last_chunk).max().unwrap(),
        checkpoints: 0,
    }
}

/// Fails unless every document is at version 2 (counted in the heads' table).
fn check_versions(args: &Args) {
    let row = client(&args.url)
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE version = 2), count(*)
                 FROM \"{SCHEMA}\".revolve_heads WHERE NOT removed"
            ),
            &[],
        )
        .unwrap();
    let docs = args.docs as i64;
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (docs, docs),
        "documents at version 2, of all documents"
    );
}

/// Fails unless the workers' shares make one run that migrated every document, recorded done
/// with `workers` workers that each took some; the ledger's workers, with their time in the run
/// (by the database's clock, from joining to leaving).
fn check_revolve(args: &Args, shares: &[Share], workers: usize) -> Vec<(String, u64, Duration)> {
    check_versions(args);
    let run = shares[0].run;
    assert!(
        shares.iter().all(|s| s.run == run),
        "one run: {:?}",
        shares.iter().map(|s| s.run).collect::<Vec<_>>()
    );
    assert_eq!(
        shares.iter().map(|s| s.migrated).sum::<u64>(),
        args.docs as u64,
        "the workers' reports"
    );
    let store = store(&args.url, SCHEMA, Durability::Immediate);
    let issues = store.collection::<IssueV2>().unwrap();
    let record = issues.run(run).unwrap().expect("the run's record");
    assert_eq!(record.state, RunState::Done, "{record:?}");
    assert_eq!(record.migrated, args.docs as u64, "{record:?}");
    assert_eq!(record.workers.len(), workers, "{record:?}");
    assert!(
        record.workers.iter().all(|w| w.taken > 0),
        "a worker took nothing: {:?}",
        record.workers
    );
    record
        .workers
        .iter()
        .map(|w| {
            let took = w.heartbeat.duration_since(w.started).unwrap_or_default();
            (w.instance.clone(), w.taken, took)
        })
        .collect()
}

/// A worker process and its standard input and output.
struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl WorkerProcess {
    fn spawn(args: &Args, name: &str, threads: usize) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, name)
            .env(THREADS_ENV, threads.to_string())
            .env(VALIDATE_ENV, if args.validate { "1" } else { "0" })
            .env("REVOLVE_TEST_DATABASE_URL", &args.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    /// The next line it says; fails if it ended.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line).unwrap();
        assert!(read > 0, "a worker process ended: {:?}", self.child.wait());
        line.trim_end().to_owned()
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn finish(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "a worker process failed: {status}");
    }
}

// ---- Where the time goes. ----

/// What a configuration cost, measured from outside revolve: the wall time; the CPU time of the
/// client (this process, every thread, and the worker processes' own) and of the server (every
/// process of the PostgreSQL server, when it runs on this machine); and what the client
/// backends were doing, sampled from `pg_stat_activity`.
struct Metered {
    wall: Duration,
    client_cpu: Duration,
    server_cpu: Option<Duration>,
    /// The whole machine's: CPU time busy, and idle while a disk request was outstanding.
    machine: Machine,
    activity: Activity,
}

/// Measures from [`start`](Self::start) (right before the workers are let go) to
/// [`stop`](Self::stop) (right after the last one returned).
struct Meter {
    started: Instant,
    client_cpu: Duration,
    server_cpu: Option<Duration>,
    machine: Machine,
    postmaster: Option<u32>,
    sampler: Sampler,
}

impl Meter {
    fn start(url: &str, postmaster: Option<u32>) -> Self {
        let sampler = Sampler::start(url);
        Self {
            client_cpu: own_cpu(),
            server_cpu: postmaster.and_then(server_cpu),
            machine: Machine::now(),
            postmaster,
            sampler,
            started: Instant::now(),
        }
    }

    fn stop(self) -> Metered {
        let wall = self.started.elapsed();
        let client_cpu = own_cpu().saturating_sub(self.client_cpu);
        let server_cpu = match (self.server_cpu, self.postmaster.and_then(server_cpu)) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        let machine = Machine::now();
        Metered {
            wall,
            client_cpu,
            server_cpu,
            machine: Machine {
                busy: machine.busy.saturating_sub(self.machine.busy),
                iowait: machine.iowait.saturating_sub(self.machine.iowait),
            },
            activity: self.sampler.stop(),
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command's name: the state is field 0, the parent
/// process 1, the user and system CPU time 11 and 12, those of its waited-for children 13 and
/// 14 (in clock ticks).
fn proc_stat(pid: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = text.rsplit_once(')')?;
    Some(
        fields
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

fn ticks(ticks: u64) -> Duration {
    static PER_SECOND: OnceLock<u64> = OnceLock::new();
    let per_second = *PER_SECOND.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|out| out.trim().parse().ok())
            .unwrap_or(100)
    });
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// The machine's CPU time so far, from the first line of `/proc/stat`: every other process's
/// work shows as busy time that is neither the client's nor the server's.
#[derive(Debug, Clone, Copy)]
struct Machine {
    /// User, nice, system, irq, softirq and steal time.
    busy: Duration,
    iowait: Duration,
}

impl Machine {
    fn now() -> Self {
        let text = std::fs::read_to_string("/proc/stat").expect("/proc/stat (Linux)");
        let line = text.lines().next().unwrap_or_default();
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        Self {
            busy: ticks(field(0) + field(1) + field(2) + field(5) + field(6) + field(7)),
            iowait: ticks(field(4)),
        }
    }
}

/// This process's CPU time, over every thread it has had.
fn own_cpu() -> Duration {
    let stat = proc_stat("self").expect("/proc/self/stat (Linux)");
    ticks(stat[11] + stat[12])
}

/// The PostgreSQL server's process, when it runs on this machine: the parent of a backend.
fn postmaster(url: &str) -> Option<u32> {
    let backend: i32 = client(url)
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let is_postgres = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
    };
    let backend = u64::try_from(backend).ok()?;
    let parent = *proc_stat(&backend.to_string())?.get(1)?;
    if !(is_postgres(backend) && is_postgres(parent)) {
        return None;
    }
    u32::try_from(parent).ok()
}

/// The server's CPU time so far: the postmaster's own and that of its children, live (backends,
/// WAL writer, checkpointer, autovacuum) or ended.
fn server_cpu(postmaster: u32) -> Option<Duration> {
    let main = proc_stat(&postmaster.to_string())?;
    let mut total = main[11] + main[12] + main[13] + main[14];
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(stat) = proc_stat(pid) {
            if stat.get(1) == Some(&u64::from(postmaster)) {
                total += stat[11] + stat[12];
            }
        }
    }
    Some(ticks(total))
}

/// What the client backends of the database were doing: how many were in each state, summed
/// over the samples.
#[derive(Debug, Default, Clone)]
struct Activity {
    samples: u64,
    /// Executing, waiting for nothing: on a CPU or in its run queue.
    running: u64,
    /// Writing or flushing WAL, or waiting for another backend to (`IO` or `LWLock` `WAL…`).
    wal: u64,
    /// Waiting for a heavyweight lock (a row, a transaction).
    lock: u64,
    /// Any other wait (buffers, data files, …).
    other: u64,
    /// Idle in a transaction: waiting for the client's next statement (its processing, or the
    /// round trip).
    in_transaction: u64,
    /// The samples of active backends by statement (`false`), and of those idle in a
    /// transaction by the statement they ran last (`true`): a sampling profile of the server's
    /// time, and of the client's within transactions, by statement.
    statements: BTreeMap<(bool, String), u64>,
}

impl Activity {
    fn mean(&self, count: u64) -> f64 {
        count as f64 / self.samples.max(1) as f64
    }

    fn add(&mut self, other: &Activity) {
        self.samples += other.samples;
        self.running += other.running;
        self.wal += other.wal;
        self.lock += other.lock;
        self.other += other.other;
        self.in_transaction += other.in_transaction;
        for (key, n) in &other.statements {
            *self.statements.entry(key.clone()).or_default() += n;
        }
    }
}

/// The start of a statement's text, its white space collapsed: enough to tell statements apart.
fn statement(query: &str) -> String {
    let words = query.split_whitespace().collect::<Vec<_>>().join(" ");
    match words.char_indices().nth(STATEMENT_CHARS) {
        Some((end, _)) => format!("{}…", &words[..end]),
        None => words,
    }
}

/// A thread sampling `pg_stat_activity` on a connection of its own.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Activity>,
}

impl Sampler {
    fn start(url: &str) -> Self {
        let mut db = client(url);
        let query = db
            .prepare(
                "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity
                 WHERE backend_type = 'client backend' AND datname = current_database()
                   AND pid <> pg_backend_pid()",
            )
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut activity = Activity::default();
                while !stop.load(Ordering::Relaxed) {
                    activity.samples += 1;
                    for row in db.query(&query, &[]).unwrap() {
                        let state: Option<&str> = row.get(0);
                        let kind: Option<&str> = row.get(1);
                        let event = row.get::<_, Option<&str>>(2).unwrap_or("");
                        let query = row.get::<_, Option<&str>>(3).unwrap_or("");
                        let count = match (state, kind) {
                            (Some("idle in transaction"), _) => &mut activity.in_transaction,
                            (Some("active"), None) => &mut activity.running,
                            (Some("active"), Some("IO" | "LWLock")) if event.starts_with("WAL") => {
                                &mut activity.wal
                            }
                            (Some("active"), Some("Lock")) => &mut activity.lock,
                            (Some("active"), Some(_)) => &mut activity.other,
                            _ => continue,
                        };
                        *count += 1;
                        let client = state == Some("idle in transaction");
                        *activity
                            .statements
                            .entry((client, statement(query)))
                            .or_default() += 1;
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
                activity
            })
        };
        Self { stop, thread }
    }

    fn stop(self) -> Activity {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

// ---- Output. ----

/// CPU time as cores busy over the wall time, and per document.
fn cpu(what: &str, cpu: Duration, wall: Duration, docs: usize) -> String {
    format!(
        "{what} {:.2} cores ({:.0} µs/doc)",
        cpu.as_secs_f64() / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / docs as f64
    )
}

fn describe(measured: &Measured, docs: usize) -> String {
    let m = &measured.metered;
    let mut out = format!(
        "{:.0} docs/s, {:.2} s; CPU: {}",
        measured.docs_per_second,
        m.wall.as_secs_f64(),
        cpu("client", m.client_cpu, m.wall, docs)
    );
    let mut others = m.machine.busy.as_secs_f64() - m.client_cpu.as_secs_f64();
    if let Some(server) = m.server_cpu {
        let _ = write!(out, ", {}", cpu("server", server, m.wall, docs));
        others -= server.as_secs_f64();
    }
    let _ = write!(
        out,
        "; machine busy {:.2} cores (others {:.2}), iowait {:.2}",
        m.machine.busy.as_secs_f64() / m.wall.as_secs_f64(),
        others / m.wall.as_secs_f64(),
        m.machine.iowait.as_secs_f64() / m.wall.as_secs_f64()
    );
    let a = &m.activity;
    let _ = write!(
        out,
        "; backends (mean of {} samples): running {:.2}, WAL {:.2}, lock {:.2}, other wait {:.2}, idle in transaction {:.2}",
        a.samples,
        a.mean(a.running),
        a.mean(a.wal),
        a.mean(a.lock),
        a.mean(a.other),
        a.mean(a.in_transaction),
    );
    let _ = write!(
        out,
        "; every worker's first chunk by {:.3} s, the last chunk at {:.3} s, the end {:.3} s later",
        measured.first_chunks.as_secs_f64(),
        measured.last_chunk.as_secs_f64(),
        m.wall.saturating_sub(measured.last_chunk).as_secs_f64()
    );
    out += "; workers:";
    for (name, taken, took) in &measured.workers {
        let _ = write!(
            out,
            " {name} {taken} in {:.2} s ({:.0}/s)",
            took.as_secs_f64(),
            *taken as f64 / took.as_secs_f64().max(1e-9)
        );
    }
    let _ = write!(out, "; {} checkpoints", measured.checkpoints);
    out
}

/// Per configuration, the statements the sampled backends were busy with, over every run.
fn profile(setups: &[Setup], results: &[Vec<Measured>]) {
    println!(
        "where the time goes, by statement (all runs; share of the samples of backends active or \
         idle in a transaction; `server` is active in the statement, `client` idle in a \
         transaction after it):"
    );
    for (setup, runs) in setups.iter().zip(results) {
        let mut activity = Activity::default();
        for run in runs {
            activity.add(&run.metered.activity);
        }
        let busy: u64 = activity.statements.values().sum();
        let mut statements: Vec<_> = activity.statements.iter().collect();
        statements.sort_by(|a, b| b.1.cmp(a.1));
        println!("  {} ({busy} samples):", setup.name());
        for ((client, statement), n) in statements.into_iter().take(PROFILE_LINES) {
            println!(
                "    {:5.1}% {} {statement}",
                *n as f64 * 100.0 / busy.max(1) as f64,
                if *client { "client" } else { "server" }
            );
        }
    }
}

fn summary(args: &Args, setups: &[Setup], results: &[Vec<Measured>]) {
    let per_run = |values: &[f64], digits: usize| {
        values
            .iter()
            .map(|v| format!("{v:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "fleet migration of {} docs, {} run(s), output validation {}:",
        args.docs,
        args.runs,
        if args.validate { "on" } else { "off" }
    );
    for (setup, runs) in setups.iter().zip(results) {
        let rates: Vec<f64> = runs.iter().map(|m| m.docs_per_second).collect();
        let mut client: Vec<f64> = runs
            .iter()
            .map(|m| m.metered.client_cpu.as_secs_f64() * 1e6 / args.docs as f64)
            .collect();
        let mut server: Vec<f64> = runs
            .iter()
            .filter_map(|m| m.metered.server_cpu)
            .map(|cpu| cpu.as_secs_f64() * 1e6 / args.docs as f64)
            .collect();
        let server = if server.is_empty() {
            "n/a".to_owned()
        } else {
            format!("{:.0}", median(&mut server))
        };
        println!(
            "  {}: [{}] docs/s, median {:.0}; CPU per doc (median): client {:.0} µs, server {server} µs",
            setup.name(),
            per_run(&rates, 0),
            median(&mut rates.clone()),
            median(&mut client),
        );
    }
    let find = |wanted: Setup| setups.iter().position(|&s| s == wanted).unwrap();
    let threads = args.threads;
    let revolve = |processes, workers, threads| {
        find(Setup::Revolve {
            processes,
            workers,
            threads,
        })
    };
    let mut ratios = vec![
        (revolve(1, 2, threads), revolve(1, 1, threads), "≥ 1.3"),
        (revolve(2, 1, threads), revolve(1, 1, threads), "≥ 1.3"),
        (
            revolve(1, 1, threads),
            find(Setup::Hand { workers: 1 }),
            "≥ 0.75",
        ),
        (
            revolve(1, 2, threads),
            find(Setup::Hand { workers: 2 }),
            "≥ 0.75",
        ),
        (
            revolve(2, 1, threads),
            find(Setup::Hand { workers: 2 }),
            "≥ 0.75",
        ),
        (
            find(Setup::Hand { workers: 2 }),
            find(Setup::Hand { workers: 1 }),
            "",
        ),
    ];
    if threads != 2 {
        ratios.push((revolve(1, 1, 2), revolve(1, 1, threads), ""));
    }
    println!("ratios (per run; median):");
    for (a, b, goal) in ratios {
        let mut values: Vec<f64> = results[a]
            .iter()
            .zip(&results[b])
            .map(|(a, b)| a.docs_per_second / b.docs_per_second)
            .collect();
        let goal = if goal.is_empty() {
            String::new()
        } else {
            format!(" (goal {goal})")
        };
        println!(
            "  {} / {}: [{}], median {:.2}{goal}",
            setups[a].name(),
            setups[b].name(),
            per_run(&values, 2),
            median(&mut values)
        );
    }
}
