//! Migration benchmark: `migrate().execute()` from version 1 to version 2 of an `issues`
//! collection of ~350-byte documents, beside a baseline that writes the same keys per document
//! with plain sled and no migration logic.
//!
//! ```text
//! cargo bench --bench migrate -- [--docs N] [--runs R]
//! ```
//!
//! Options (after `--`): `--docs N` documents (1,000,000 by default, or `REVOLVE_BENCH_DOCS`),
//! `--runs R` interleaved runs of each kind (5), `--rss-docs N` the smaller size whose peak RSS is
//! also measured (100,000), `--cache-mib M` the sled cache of every store (256), `--threads T` the
//! migration's threads (the machine's parallelism), `--durability immediate|eventual` of the
//! migrating store (`immediate`, the default a user gets), `--golden DIR` keeps the loaded store in
//! `DIR` and reuses it on the next invocation, `--baseline-variants` also runs diagnostic baselines
//! (head re-read before the write, flush per batch), `--no-validate-output` migrates with
//! `validate_output(false)` (on by default, as for users).
//!
//! What it does:
//! 1. Loads a "golden" store of N version 1 documents once (`insert_many` of 1000, eventual
//!    durability, then flushed and closed), in a child process.
//! 2. Each run copies the closed golden directory and runs in a child process of its own:
//!    - *migrate*: opens the copy with `IssueV2` and times `migrate().execute()`;
//!    - *baseline*: opens the copy with plain sled (same cache) and, per document, scans its head
//!      (`h ‖ id`), reads the head revision (`r ‖ id ‖ 0 ‖ rev`) and writes what a migration writes:
//!      a new revision key (the old envelope's bytes, padded to the migrated envelope's size) and the
//!      head (13 bytes), in `apply_batch`es of 1000, then one flush.
//!
//!    Runs alternate (migrate first, then baseline first, …); docs/s are compared as medians.
//! 3. `execute` with nothing pending, 100 calls on the migrated store (fresh process).
//! 4. Peak RSS (`VmHWM` of the child) of the migration at `--rss-docs` and at N.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use revolve::{Durability, Store};

#[path = "common/dataset.rs"]
mod dataset;
use dataset::{issue, IssueV1, IssueV2, XorShift};

const CHUNK: usize = 1000;
const MIB: u64 = 1024 * 1024;
/// The collection's sled tree (`c/` ‖ name) and its key spaces, as `src/store/keys.rs` lays them out.
const TREE: &str = "c/issues";
const HEAD: u8 = b'h';
const REVISION: u8 = b'r';
/// `Origin::Migration { run }` takes 8 bytes more in an envelope than `Origin::Write`.
const MIGRATION_ORIGIN_EXTRA: usize = 8;

// ---------------------------------------------------------------------------------------------
// Child processes: each prints one `RESULT key=value …` line on stdout.
// ---------------------------------------------------------------------------------------------

fn open_store(path: &Path, cache: u64, durability: Durability) -> Store {
    Store::builder()
        .path(path)
        .cache_capacity(cache)
        .durability(durability)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .unwrap()
}

/// Loads `docs` version 1 documents at `path` through a program that knows only `IssueV1`.
fn child_build(path: &Path, docs: usize, cache: u64) -> String {
    let started = Instant::now();
    let store = open_store(path, cache, Durability::Eventual);
    let issues = store.collection::<IssueV1>().unwrap();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut loaded = 0;
    while loaded < docs {
        let chunk: Vec<IssueV1> = (0..CHUNK.min(docs - loaded))
            .map(|_| issue(&mut rng))
            .collect();
        loaded += issues.insert_many(&chunk).unwrap().len();
    }
    store.flush().unwrap();
    drop(issues);
    drop(store);
    format!(
        "docs={loaded} secs={:.3} {}",
        started.elapsed().as_secs_f64(),
        process_stats()
    )
}

/// Migrates the store at `path` to version 2; times `execute` alone.
fn child_migrate(
    path: &Path,
    cache: u64,
    durability: Durability,
    threads: Option<usize>,
    validate_output: bool,
) -> String {
    let opening = Instant::now();
    let store = open_store(path, cache, durability);
    let issues = store.collection::<IssueV2>().unwrap();
    let open = opening.elapsed().as_secs_f64();
    let pending = issues.pending().unwrap().migratable();
    let hwm_open = vm_kib("VmHWM:");
    let cpu_before = cpu_secs();
    let mut migration = issues.migrate().validate_output(validate_output);
    if let Some(threads) = threads {
        migration = migration.threads(threads);
    }
    let started = Instant::now();
    let report = migration.execute().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    assert_eq!(report.migrated, pending, "{report:?}");
    assert_eq!((report.failed, report.skipped, report.remaining), (0, 0, 0));
    format!(
        "docs={} secs={secs:.3} run_cpu={cpu:.2} open_secs={open:.3} hwm_open_kib={hwm_open} {}",
        report.migrated,
        process_stats()
    )
}

/// The baseline: the keys a migration writes per document, with plain sled and no migration
/// logic. `reread` reads each head again just before writing (as the migrator's re-check does),
/// `flush` flushes after every batch (as a migration at immediate durability does).
fn child_baseline(path: &Path, cache: u64, pad: usize, reread: bool, flush: bool) -> String {
    let opening = Instant::now();
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache)
        .flush_every_ms(Some(500))
        .open()
        .unwrap();
    let tree = db.open_tree(TREE).unwrap();
    let open = opening.elapsed().as_secs_f64();
    let hwm_open = vm_kib("VmHWM:");
    let cpu_before = cpu_secs();
    let started = Instant::now();
    let mut heads = tree.scan_prefix([HEAD]);
    let mut written = 0usize;
    loop {
        let chunk: Vec<(sled::IVec, sled::IVec)> =
            heads.by_ref().take(CHUNK).map(Result::unwrap).collect();
        if chunk.is_empty() {
            break;
        }
        let mut batch = sled::Batch::default();
        for (key, head) in &chunk {
            let id = &key[1..];
            if reread {
                assert_eq!(tree.get(key).unwrap().as_ref(), Some(head));
            }
            let revision = u64::from_be_bytes(head[5..13].try_into().unwrap());
            let old = tree.get(revision_key(id, revision)).unwrap().unwrap();
            let mut value = Vec::with_capacity(old.len() + pad);
            value.extend_from_slice(&old);
            value.resize(old.len() + pad, 0);
            batch.insert(revision_key(id, revision + 1), value);
            let mut new_head = [0u8; 13];
            new_head.copy_from_slice(head);
            new_head[5..].copy_from_slice(&(revision + 1).to_be_bytes());
            batch.insert(key, &new_head[..]);
        }
        tree.apply_batch(batch).unwrap();
        if flush {
            db.flush().unwrap();
        }
        written += chunk.len();
    }
    db.flush().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    format!(
        "docs={written} secs={secs:.3} run_cpu={cpu:.2} open_secs={open:.3} hwm_open_kib={hwm_open} {}",
        process_stats()
    )
}

fn revision_key(id: &[u8], revision: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + 10);
    key.push(REVISION);
    key.extend_from_slice(id);
    key.push(0);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

/// `calls` executions of a migration with nothing pending on a migrated store.
fn child_noop(path: &Path, cache: u64, calls: usize) -> String {
    let started = Instant::now();
    let store = open_store(path, cache, Durability::Immediate);
    let issues = store.collection::<IssueV2>().unwrap();
    let open = started.elapsed();
    let total: u64 = issues.count_by_version().unwrap().values().sum();
    let mut times: Vec<f64> = (0..calls)
        .map(|_| {
            let started = Instant::now();
            let report = issues.migrate().execute().unwrap();
            let elapsed = started.elapsed();
            assert_eq!((report.run_id, report.scanned), (None, 0), "{report:?}");
            elapsed.as_secs_f64() * 1e3
        })
        .collect();
    let first = times[0];
    times.sort_by(f64::total_cmp);
    format!(
        "docs={total} open_ms={:.1} first_ms={first:.4} median_ms={:.4} max_ms={:.4} {}",
        open.as_secs_f64() * 1e3,
        median(&times),
        times[times.len() - 1],
        process_stats()
    )
}

/// The envelope bytes a migrated document's new revision takes beyond its version 1 revision:
/// the payload's growth plus the migration origin. Measured on a few documents.
fn child_probe(path: &Path) -> String {
    let store = open_store(path, 8 * MIB, Durability::Eventual);
    let v1 = store.collection::<IssueV1>().unwrap();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let docs: Vec<IssueV1> = (0..100).map(|_| issue(&mut rng)).collect();
    let ids = v1.insert_many(&docs).unwrap();
    drop(v1);
    drop(store);
    let store = open_store(path, 8 * MIB, Durability::Eventual);
    let v2 = store.collection::<IssueV2>().unwrap();
    let _ = v2.migrate().execute().unwrap();
    let (mut old, mut new) = (0, 0);
    for id in &ids {
        old += payload_len(&v2, id, 1);
        new += payload_len(&v2, id, 2);
    }
    format!(
        "v1_payload={} v2_payload={}",
        old / ids.len(),
        new / ids.len()
    )
}

fn payload_len(issues: &revolve::Collection<IssueV2>, id: &str, revision: u64) -> usize {
    let revision = revolve::Revision::new(revision).unwrap();
    issues
        .raw_revision(id, revision)
        .unwrap()
        .unwrap()
        .bytes
        .len()
}

/// Peak and current RSS, and CPU seconds of the whole process.
fn process_stats() -> String {
    format!(
        "hwm_kib={} rss_kib={} cpu={:.2}",
        vm_kib("VmHWM:"),
        vm_kib("VmRSS:"),
        cpu_secs()
    )
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User + system CPU time of this process, from `/proc/self/stat` (clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    f64::from(u32::try_from(ticks).unwrap()) / 100.0
}

// ---------------------------------------------------------------------------------------------
// The driver.
// ---------------------------------------------------------------------------------------------

struct Options {
    docs: usize,
    runs: usize,
    rss_docs: usize,
    cache: u64,
    threads: Option<usize>,
    durability: Durability,
    golden: Option<PathBuf>,
    baseline_variants: bool,
    validate_output: bool,
}

impl Options {
    fn parse(args: &[String]) -> Self {
        let mut options = Options {
            docs: std::env::var("REVOLVE_BENCH_DOCS")
                .map_or(1_000_000, |value| value.parse().unwrap()),
            runs: 5,
            rss_docs: 100_000,
            cache: 256 * MIB,
            threads: None,
            durability: Durability::Immediate,
            golden: None,
            baseline_variants: false,
            validate_output: true,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().expect("a value after the option").clone();
            match arg.as_str() {
                "--docs" => options.docs = value().parse().unwrap(),
                "--runs" => options.runs = value().parse::<usize>().unwrap().max(1),
                "--rss-docs" => options.rss_docs = value().parse().unwrap(),
                "--cache-mib" => options.cache = value().parse::<u64>().unwrap() * MIB,
                "--threads" => options.threads = Some(value().parse().unwrap()),
                "--durability" => options.durability = parse_durability(&value()),
                "--golden" => options.golden = Some(PathBuf::from(value())),
                "--baseline-variants" => options.baseline_variants = true,
                "--no-validate-output" => options.validate_output = false,
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                other => panic!("unknown option `{other}`; see the header of benches/migrate.rs"),
            }
        }
        options
    }
}

fn parse_durability(name: &str) -> Durability {
    match name {
        "immediate" => Durability::Immediate,
        "eventual" => Durability::Eventual,
        other => panic!("durability `{other}`: immediate or eventual"),
    }
}

fn durability_name(durability: Durability) -> &'static str {
    if durability == Durability::Eventual {
        "eventual"
    } else {
        "immediate"
    }
}

/// One child's `RESULT` line, as key=value pairs.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn f64(&self, key: &str) -> f64 {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no `{key}` in the child's result"))
            .1
            .parse()
            .unwrap()
    }

    fn u64(&self, key: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no `{key}` in the child's result"))
            .1
            .parse()
            .unwrap()
    }

    fn mib(&self, key: &str) -> f64 {
        self.f64(key) / 1024.0
    }

    fn rate(&self) -> f64 {
        self.f64("docs") / self.f64("secs")
    }
}

fn child(args: &[&str]) -> Fields {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "child {args:?} failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("child {args:?} printed no result: {stdout}"));
    Fields(
        line.split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                dir_size(&entry.path())
            } else {
                entry.metadata().unwrap().len()
            }
        })
        .sum()
}

#[allow(clippy::cast_precision_loss)] // sizes for display
fn to_mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap();
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn load1() -> String {
    load_average().split(' ').next().unwrap().to_owned()
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// A golden store of `docs` version 1 documents under `root`, built unless already there.
fn golden(root: &Path, docs: usize, cache: u64) -> PathBuf {
    let path = root.join(format!("golden-{docs}"));
    if path.join("done").exists() {
        eprintln!(
            "golden store of {docs} documents reused from {}",
            path.display()
        );
        return path;
    }
    let _ = std::fs::remove_dir_all(&path);
    let store = path.join("store");
    eprintln!(
        "loading {docs} version 1 documents into {} …",
        store.display()
    );
    let built = child(&[
        "__build",
        store.to_str().unwrap(),
        &docs.to_string(),
        &cache.to_string(),
    ]);
    eprintln!(
        "loaded {docs} documents in {:.1} s ({:.0} docs/s), {:.0} MiB on disk",
        built.f64("secs"),
        built.rate(),
        to_mib(dir_size(&store))
    );
    std::fs::write(path.join("done"), b"").unwrap();
    path
}

struct Run {
    kind: &'static str,
    round: usize,
    load1: String,
    fields: Fields,
}

struct Bench {
    options: Options,
    scratch: PathBuf,
    pad: usize,
    runs: Vec<Run>,
}

impl Bench {
    fn cache_arg(&self) -> String {
        self.options.cache.to_string()
    }

    /// Copies `golden` to a scratch directory and runs `kind` on the copy in a child process;
    /// the copy is removed afterwards unless `keep`.
    fn run_on_copy(&self, kind: &str, golden: &Path, keep: bool) -> (Fields, PathBuf) {
        let copy = self
            .scratch
            .join(format!("run-{kind}{}", if keep { "-kept" } else { "" }));
        let _ = std::fs::remove_dir_all(&copy);
        copy_dir(&golden.join("store"), &copy);
        let dir = copy.to_str().unwrap();
        let cache = self.cache_arg();
        let threads = self.options.threads.unwrap_or(0).to_string();
        let pad = self.pad.to_string();
        let fields = match kind {
            "migrate" => child(&[
                "__migrate",
                dir,
                &cache,
                durability_name(self.options.durability),
                &threads,
                if self.options.validate_output {
                    "validate"
                } else {
                    "no-validate"
                },
            ]),
            "baseline" => child(&["__baseline", dir, &cache, &pad, "plain"]),
            "baseline+reread" => child(&["__baseline", dir, &cache, &pad, "reread"]),
            "baseline+flush" => child(&["__baseline", dir, &cache, &pad, "flush"]),
            "baseline+both" => child(&["__baseline", dir, &cache, &pad, "both"]),
            other => unreachable!("{other}"),
        };
        if !keep {
            std::fs::remove_dir_all(&copy).unwrap();
        }
        (fields, copy)
    }

    fn measure(&mut self, kind: &'static str, round: usize, golden: &Path, keep: bool) -> PathBuf {
        let load1 = load1();
        let (fields, copy) = self.run_on_copy(kind, golden, keep);
        eprintln!(
            "round {round} {kind:<16} {:>8.0} docs/s  {:>6.1} s  cpu {:>5.1} s  peak RSS {:>5.0} MiB  load {load1}",
            fields.rate(),
            fields.f64("secs"),
            fields.f64("run_cpu"),
            fields.mib("hwm_kib"),
        );
        self.runs.push(Run {
            kind,
            round,
            load1,
            fields,
        });
        copy
    }

    fn rates(&self, kind: &str) -> Vec<f64> {
        sorted(
            self.runs
                .iter()
                .filter(|run| run.kind == kind)
                .map(|run| run.fields.rate())
                .collect(),
        )
    }

    /// The largest `field` (KiB) of the runs of `kind`, in MiB.
    fn peak_mib(&self, kind: &str, field: &str) -> f64 {
        self.runs
            .iter()
            .filter(|run| run.kind == kind)
            .map(|run| run.fields.mib(field))
            .fold(0.0, f64::max)
    }
}

#[allow(clippy::too_many_lines)] // a script: measure, then print
fn drive(options: Options) {
    let load_start = load_average();
    let started = Instant::now();
    let temp = tempfile::tempdir().unwrap();
    let scratch = temp.path().to_owned();
    let golden_root = options.golden.clone().unwrap_or_else(|| scratch.clone());
    std::fs::create_dir_all(&golden_root).unwrap();
    let cache = options.cache;

    let probe = child(&["__probe", scratch.join("probe").to_str().unwrap()]);
    let (v1_payload, v2_payload) = (probe.f64("v1_payload"), probe.f64("v2_payload"));
    let pad = usize::try_from(
        probe
            .u64("v2_payload")
            .saturating_sub(probe.u64("v1_payload")),
    )
    .unwrap()
        + MIGRATION_ORIGIN_EXTRA;
    eprintln!(
        "payload {v1_payload} B at version 1, {v2_payload} B at version 2: the baseline pads each \
         copied envelope by {pad} B"
    );

    let big = golden(&golden_root, options.docs, cache);
    let small = (options.rss_docs != options.docs && options.rss_docs > 0)
        .then(|| golden(&golden_root, options.rss_docs, cache));

    let mut bench = Bench {
        options,
        scratch,
        pad,
        runs: Vec::new(),
    };
    let kinds: &[&'static str] = if bench.options.baseline_variants {
        &[
            "migrate",
            "baseline",
            "baseline+reread",
            "baseline+flush",
            "baseline+both",
        ]
    } else {
        &["migrate", "baseline"]
    };
    let mut migrated = None;
    let rounds = bench.options.runs;
    for round in 1..=rounds {
        let mut order: Vec<&'static str> = kinds.to_vec();
        if round % 2 == 0 {
            order.reverse();
        }
        for kind in order {
            let keep = kind == "migrate" && migrated.is_none();
            let copy = bench.measure(kind, round, &big, keep);
            if keep {
                migrated = Some(copy);
            }
        }
    }

    let migrated = migrated.unwrap();
    let noop = child(&[
        "__noop",
        migrated.to_str().unwrap(),
        &bench.cache_arg(),
        "100",
    ]);
    assert_eq!(noop.u64("docs"), bench.runs[0].fields.u64("docs"));
    std::fs::remove_dir_all(&migrated).unwrap();

    let small_runs = small.map(|small| {
        let (migrate, _) = bench.run_on_copy("migrate", &small, false);
        let (baseline, _) = bench.run_on_copy("baseline", &small, false);
        (migrate, baseline)
    });
    let load_end = load_average();

    // ----- report -----
    let options = &bench.options;
    let mut out = String::new();
    let threads = options.threads.map_or_else(
        || {
            format!(
                "{} (default)",
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            )
        },
        |threads| threads.to_string(),
    );
    writeln!(
        out,
        "\nrevolve migration benchmark: {} documents v1 → v2, payload {v1_payload} → {v2_payload} B, \
         sled cache {} MiB, {threads} threads, migration at {} durability, output validation {}",
        options.docs,
        cache / MIB,
        durability_name(options.durability),
        if options.validate_output { "on" } else { "off" }
    )
    .unwrap();
    writeln!(
        out,
        "load average (1/5/15 min): {load_start} at start, {load_end} at end; {} cores; {:.0} s in all",
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        started.elapsed().as_secs_f64()
    )
    .unwrap();
    writeln!(
        out,
        "\n{:<6} {:<16} {:>9} {:>8} {:>8} {:>10} {:>8} {:>6}",
        "round", "kind", "docs/s", "wall s", "cpu s", "peak MiB", "open s", "load1"
    )
    .unwrap();
    for run in &bench.runs {
        writeln!(
            out,
            "{:<6} {:<16} {:>9.0} {:>8.2} {:>8.2} {:>10.0} {:>8.2} {:>6}",
            run.round,
            run.kind,
            run.fields.rate(),
            run.fields.f64("secs"),
            run.fields.f64("run_cpu"),
            run.fields.mib("hwm_kib"),
            run.fields.f64("open_secs"),
            run.load1
        )
        .unwrap();
    }
    writeln!(
        out,
        "\n{:<16} {:>9} {:>9} {:>9} {:>11}",
        "kind", "median", "min", "max", "vs baseline"
    )
    .unwrap();
    let baseline = median(&bench.rates("baseline"));
    for kind in kinds {
        let rates = bench.rates(kind);
        writeln!(
            out,
            "{kind:<16} {:>9.0} {:>9.0} {:>9.0} {:>10.3}×",
            median(&rates),
            rates[0],
            rates[rates.len() - 1],
            median(&rates) / baseline
        )
        .unwrap();
    }
    let migration = median(&bench.rates("migrate"));
    let ratio = migration / baseline;

    writeln!(
        out,
        "\nno-op execute on the migrated {}-document store, {} calls: median {:.3} ms, max {:.3} ms, \
         first {:.3} ms (open {:.0} ms)",
        noop.f64("docs"),
        100,
        noop.f64("median_ms"),
        noop.f64("max_ms"),
        noop.f64("first_ms"),
        noop.f64("open_ms")
    )
    .unwrap();

    let cache_mib = to_mib(cache);
    let peak_big = bench.peak_mib("migrate", "hwm_kib");
    let peak_open_big = bench.peak_mib("migrate", "hwm_open_kib");
    let peak_baseline_big = bench.peak_mib("baseline", "hwm_kib");
    writeln!(
        out,
        "\npeak RSS (child VmHWM), sled cache {cache_mib:.0} MiB:\n{:<10} {:>12} {:>12} {:>14} {:>14}",
        "docs", "migrate MiB", "over cache", "after open MiB", "baseline MiB"
    )
    .unwrap();
    let mut rss_line = |docs: usize, peak: f64, open: f64, base: f64| {
        writeln!(
            out,
            "{docs:<10} {peak:>12.0} {:>+12.0} {open:>14.0} {base:>14.0}",
            peak - cache_mib
        )
        .unwrap();
    };
    if let Some((migrate, baseline)) = &small_runs {
        rss_line(
            options.rss_docs,
            migrate.mib("hwm_kib"),
            migrate.mib("hwm_open_kib"),
            baseline.mib("hwm_kib"),
        );
    }
    rss_line(options.docs, peak_big, peak_open_big, peak_baseline_big);

    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let mut summary = format!(
        "\nsummary: migration {migration:.0} docs/s = {ratio:.2}× baseline {baseline:.0} docs/s \
         (target ≥ 0.85× {}, ≥ 35000 docs/s {}); no-op execute median {:.3} ms (< 10 ms {}); \
         peak RSS {peak_big:.0} MiB at {} docs = cache {cache_mib:.0} MiB {:+.0} MiB",
        verdict(ratio >= 0.85),
        verdict(migration >= 35_000.0),
        noop.f64("median_ms"),
        verdict(noop.f64("median_ms") < 10.0),
        options.docs,
        peak_big - cache_mib,
    );
    if let Some((migrate, _)) = &small_runs {
        let peak = migrate.mib("hwm_kib");
        write!(
            summary,
            ", {peak:.0} MiB at {} docs = cache {:+.0} MiB",
            options.rss_docs,
            peak - cache_mib
        )
        .unwrap();
    }
    out.push_str(&summary);
    println!("{out}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args[i].as_str();
    let number = |i: usize| arg(i).parse::<u64>().unwrap();
    let result = match args.first().map(String::as_str) {
        Some("__build") => child_build(
            Path::new(arg(1)),
            usize::try_from(number(2)).unwrap(),
            number(3),
        ),
        Some("__migrate") => child_migrate(
            Path::new(arg(1)),
            number(2),
            parse_durability(arg(3)),
            Some(usize::try_from(number(4)).unwrap()).filter(|&threads| threads > 0),
            arg(5) == "validate",
        ),
        Some("__baseline") => child_baseline(
            Path::new(arg(1)),
            number(2),
            usize::try_from(number(3)).unwrap(),
            matches!(arg(4), "reread" | "both"),
            matches!(arg(4), "flush" | "both"),
        ),
        Some("__noop") => child_noop(
            Path::new(arg(1)),
            number(2),
            usize::try_from(number(3)).unwrap(),
        ),
        Some("__probe") => child_probe(Path::new(arg(1))),
        _ => {
            drive(Options::parse(&args));
            return;
        }
    };
    println!("RESULT {result}");
}
