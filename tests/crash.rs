//! Crash tests: `kill -9` during `migrate().execute()`, then every invariant of DESIGN.md checked
//! through the public API after each kill, and the resumed end state compared with an uninterrupted
//! migration of an identical fresh store. The ledger must equal what is on disk after every kill:
//! each run's `migrated` is the number of migration revisions naming it, and its failures are
//! listed.
//!
//! The binary re-executes itself as a child (sled's `tests/test_crash_recovery.rs` does the same):
//! with `REVOLVE_CRASH_CHILD` set to a store's path, `main` opens that store and migrates it until
//! the parent kills it, either with a real SIGKILL after a pseudo-random delay, or deterministically
//! through `revolve::__private::fault::abort_at_point`, which aborts at the n-th write boundary
//! (before and after each batch of every write, after each migration chunk is durable). A last
//! scenario turns on the test-only broken write order (heads in one batch, their revisions in a
//! second) and asserts that the same checker reports it: the test can see the bug it guards
//! against.
//!
//! Unix only (it reads the signal that ended the child). Run with `cargo test --test crash`.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use revolve::__private::fault;
use revolve::{
    Collection, Durability, Origin, RawRevision, RunKind, RunRecord, RunState, Schema, SchemaError,
    StepError, Store, StoreError,
};
use serde::{Deserialize, Serialize};

/// Set to the store's path in a child.
const CHILD_ENV: &str = "REVOLVE_CRASH_CHILD";
/// The child's settings, as `key=value` words.
const SETTINGS_ENV: &str = "REVOLVE_CRASH_SETTINGS";
/// Documents in each store.
const DOCS: usize = 2000;
/// The message of a step's panic; the panic hook keeps these quiet.
const BOMB: &str = "step bomb";

// ---- The schema: a step that fails for some documents and panics for others. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 1)]
struct NoteV1 {
    title: String,
    body: String,
    priority: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 2, from = NoteV1, step = note_v1_to_v2)]
struct NoteV2 {
    title: String,
    body: String,
    priority: u8,
    words: u32,
}

fn note_v1_to_v2(old: NoteV1) -> Result<NoteV2, StepError> {
    assert!(old.priority != "bomb", "{BOMB}: {}", old.title);
    let priority = match old.priority.as_str() {
        "low" => 0,
        "normal" => 1,
        "high" => 2,
        other => return Err(StepError::new(format!("priority `{other}` is not known"))),
    };
    let words = u32::try_from(old.body.split_whitespace().count()).map_err(StepError::new)?;
    Ok(NoteV2 {
        title: old.title,
        body: old.body,
        priority,
        words,
    })
}

// ---- The data set: every document's content is a function of its index. ----

/// What becomes of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its step succeeds.
    Migrates,
    /// Its step returns an error (2%).
    Fails,
    /// Its step panics (1%).
    Panics,
    /// Removed before any migration.
    Removed,
}

fn fate(index: usize) -> Fate {
    if index % 125 == 3 {
        Fate::Removed
    } else if index % 50 == 17 {
        Fate::Fails
    } else if index % 100 == 42 {
        Fate::Panics
    } else {
        Fate::Migrates
    }
}

fn id_of(index: usize) -> String {
    format!("n{index:04}")
}

fn index_of(id: &str) -> Option<usize> {
    id.strip_prefix('n')?
        .parse()
        .ok()
        .filter(|&index| index < DOCS)
}

/// Whether the set-up writes a second v1 revision of the document (the migration must take the
/// head, not the first revision).
fn rewritten_at_v1(index: usize) -> bool {
    index % 10 == 1
}

/// Whether the children that write concurrently with the migration update the document. Some of
/// these fail or panic in the step: an update must clear their failure.
fn edited_by_child(index: usize) -> bool {
    index % 25 == 17
}

/// A document's v1 content at a revision of the set-up.
fn original(index: usize, revision: u64) -> NoteV1 {
    let mut random = XorShift::new(index as u64 * 7919 + revision);
    let words = 3 + random.below(30);
    let mut body = String::new();
    for word in 0..words {
        if word > 0 {
            body.push(' ');
        }
        for _ in 0..2 + random.below(7) {
            body.push(char::from(b'a' + u8::try_from(random.below(26)).unwrap()));
        }
    }
    let priority = match fate(index) {
        Fate::Fails => "urgent",
        Fate::Panics => "bomb",
        Fate::Migrates | Fate::Removed => ["low", "normal", "high"][index % 3],
    };
    NoteV1 {
        title: format!("note {index} at {revision}"),
        body,
        priority: priority.to_owned(),
    }
}

/// What a child's concurrent update writes.
fn edited(id: &str) -> NoteV2 {
    NoteV2 {
        title: format!("{id} edited"),
        body: "edited while a migration ran".to_owned(),
        priority: 2,
        words: 5,
    }
}

/// Opens a store, waiting for the lock longer than the default: under load, sled can take a while
/// to release a closed database's lock from its background threads.
fn open(path: &Path) -> Result<Store, StoreError> {
    Store::builder()
        .path(path)
        .lock_timeout(Duration::from_secs(30))
        .open()
}

/// Writes the v1 data set with a program that knows only `NoteV1`.
fn set_up(path: &Path) {
    let store = Store::builder()
        .path(path)
        .durability(Durability::Eventual)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .unwrap();
    let notes = store.collection::<NoteV1>().unwrap();
    for index in 0..DOCS {
        let id = id_of(index);
        notes.insert_with_id(&id, &original(index, 1)).unwrap();
        if rewritten_at_v1(index) {
            notes.update(&id, &original(index, 2)).unwrap();
        }
        if fate(index) == Fate::Removed {
            notes.remove(&id).unwrap();
        }
    }
    store.flush().unwrap();
}

/// A fixed-seed xorshift64: the same kills on every run.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Keeps the step's deliberate panics off stderr; any other panic is reported as usual.
fn quiet_step_bombs() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if !message.is_some_and(|message| message.starts_with(BOMB)) {
            default(info);
        }
    }));
}

fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

// ---- The child. ----

/// What a child does; passed as `key=value` words in [`SETTINGS_ENV`].
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::struct_excessive_bools)] // independent switches, decoded from one variable
struct Settings {
    /// `abort_at_point` argument; 0 for none.
    abort_at: u64,
    /// The limit of each `execute`.
    limit: u64,
    /// Every this many rounds, an `execute` that retries failed documents; 0 for never.
    retry_every: u64,
    /// A thread flushing the store in a loop, so that a batch can reach the disk at any moment.
    flusher: bool,
    /// A thread updating documents concurrently, printing each acknowledged revision.
    updates: bool,
    /// The test-only broken write order.
    broken: bool,
    /// Keep migrating (retrying failures) once nothing is pending, until killed.
    forever: bool,
    /// Seed of the updater's choices.
    seed: u64,
    /// Counts fault points from before the store is opened, so that an abort can land while the
    /// collection's opening settles a killed run the parent did not read.
    early: bool,
}

impl Settings {
    fn encode(&self) -> String {
        format!(
            "abort_at={} limit={} retry_every={} flusher={} updates={} broken={} forever={} \
             seed={} early={}",
            self.abort_at,
            self.limit,
            self.retry_every,
            u8::from(self.flusher),
            u8::from(self.updates),
            u8::from(self.broken),
            u8::from(self.forever),
            self.seed,
            u8::from(self.early),
        )
    }

    fn decode(text: &str) -> Result<Self, String> {
        let mut settings = Self::default();
        for word in text.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("bad setting {word:?}"))?;
            let value: u64 = value.parse().map_err(|_| format!("bad setting {word:?}"))?;
            match key {
                "abort_at" => settings.abort_at = value,
                "limit" => settings.limit = value,
                "retry_every" => settings.retry_every = value,
                "flusher" => settings.flusher = value != 0,
                "updates" => settings.updates = value != 0,
                "broken" => settings.broken = value != 0,
                "forever" => settings.forever = value != 0,
                "seed" => settings.seed = value,
                "early" => settings.early = value != 0,
                _ => return Err(format!("unknown setting {key:?}")),
            }
        }
        Ok(settings)
    }
}

fn child(path: &Path) -> ExitCode {
    quiet_step_bombs();
    let result = std::env::var(SETTINGS_ENV)
        .map_err(|error| error.to_string())
        .and_then(|text| Settings::decode(&text))
        .and_then(|settings| migrate_until_killed(path, settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("child: {error}");
            ExitCode::from(2)
        }
    }
}

/// Opens the store with the v2 program and migrates it in `limit`-sized runs; returns when nothing
/// is left (unless `forever`), if it is not killed first.
fn migrate_until_killed(path: &Path, settings: Settings) -> Result<(), String> {
    if settings.early {
        fault::abort_at_point(settings.abort_at);
    }
    let store = open(path).map_err(|error| chain(&error))?;
    let notes = store
        .collection::<NoteV2>()
        .map_err(|error| chain(&error))?;
    fault::set_broken_write_order(settings.broken);
    if settings.flusher {
        let store = store.clone();
        std::thread::spawn(move || loop {
            if let Err(error) = store.flush() {
                eprintln!("child: flush: {}", chain(&error));
                std::process::exit(3);
            }
        });
    }
    if !settings.early {
        fault::abort_at_point(settings.abort_at);
    }
    // The first line: the parent starts its clock on it.
    println!("ready");
    if settings.updates {
        let notes = notes.clone();
        let ids: Vec<String> = (0..DOCS)
            .filter(|&index| edited_by_child(index))
            .map(id_of)
            .collect();
        let mut random = XorShift::new(settings.seed);
        std::thread::spawn(move || loop {
            let id = &ids[usize::try_from(random.below(ids.len() as u64)).unwrap()];
            match notes.update(id, &edited(id)) {
                // Printed only once acknowledged: the parent holds the store to every line.
                Ok(revision) => println!("ack {id} {}", revision.get()),
                Err(error) => {
                    eprintln!("child: update {id}: {}", chain(&error));
                    std::process::exit(3);
                }
            }
        });
    }
    for round in 1u64.. {
        let retry = settings.retry_every != 0 && round % settings.retry_every == 0;
        let mut migration = notes.migrate().limit(settings.limit).threads(2);
        if retry {
            migration = migration.retry_failed();
        }
        let report = migration.execute().map_err(|error| chain(&error))?;
        if report.scanned > 0 {
            println!(
                "run {:?} scanned {} migrated {} failed {} skipped {} remaining {}",
                report.run_id,
                report.scanned,
                report.migrated,
                report.failed,
                report.skipped,
                report.remaining
            );
        }
        if report.scanned == 0 && !retry && !settings.forever {
            break;
        }
    }
    println!("done after {} fault points", fault::points_passed());
    Ok(())
}

// ---- The parent's side of a child. ----

/// How a child ended.
struct ChildEnd {
    /// Killed by SIGKILL or aborted at a fault point.
    killed: bool,
    /// Complete lines it printed.
    lines: Vec<String>,
}

fn spawn(path: &Path, settings: Settings) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, path)
        .env(SETTINGS_ENV, settings.encode())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// How long a child may run before it is taken as hung: a deadlock fails the test, not CI.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a child to its end: killed with SIGKILL `kill_after` after it said it was ready, or until it aborts
/// or returns.
fn run_child(
    path: &Path,
    settings: Settings,
    kill_after: Option<Duration>,
) -> Result<ChildEnd, String> {
    let mut child = spawn(path, settings);
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let child = Arc::new(Mutex::new(child));
    let (finished, watched) = mpsc::channel::<()>();
    let watchdog = {
        let child = Arc::clone(&child);
        std::thread::spawn(move || {
            let hung = watched.recv_timeout(CHILD_TIMEOUT) == Err(RecvTimeoutError::Timeout);
            if hung {
                let _ = child.lock().unwrap().kill();
            }
            hung
        })
    };
    let mut first = String::new();
    let _ = stdout.read_line(&mut first);
    let ready = first == "ready\n";
    if let (true, Some(delay)) = (ready, kill_after) {
        std::thread::sleep(delay);
        // On Unix, `kill` is SIGKILL. The child may have ended already.
        let _ = child.lock().unwrap().kill();
    }
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let _ = finished.send(());
    let hung = watchdog.join().unwrap();
    let status = child.lock().unwrap().wait().unwrap();
    let stderr = stderr.join().unwrap();
    let killed = matches!(status.signal(), Some(6 | 9));
    // A child that counts fault points from before it opens the store may abort before it is
    // ready.
    let started = ready || (settings.early && killed);
    if hung || !started || !(killed || status.success()) {
        let what = if hung { "hung" } else { "ended" };
        let tail = rest.len().saturating_sub(2000);
        let tail = rest.get(tail..).unwrap_or_default();
        return Err(format!(
            "child ({}) {what} with {status}: stdout {first:?}…{tail:?}, stderr {stderr:?}",
            settings.encode()
        ));
    }
    // A line the kill cut short is not a complete line.
    let mut lines: Vec<String> = rest.split('\n').map(str::to_owned).collect();
    lines.pop();
    Ok(ChildEnd { killed, lines })
}

// ---- The checker. ----

/// What the checker holds a store to.
#[derive(Default)]
struct Model {
    /// Every revision a check has seen, as stored: none may ever change or disappear.
    seen: BTreeMap<(String, u64), Seen>,
    /// Revisions that children's updates acknowledged: none may be lost.
    acknowledged: BTreeSet<(String, u64)>,
    /// Whether writes other than migrations may have appended revisions.
    updates: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    version: Option<u32>,
    removed: bool,
    origin: Origin,
    bytes: Vec<u8>,
}

impl Seen {
    fn of(raw: &RawRevision) -> Self {
        Self {
            version: raw.info.version,
            removed: raw.info.removed,
            origin: raw.info.origin,
            bytes: raw.bytes.clone(),
        }
    }
}

/// What a check may expect beyond the invariants.
#[derive(Debug, Clone, Copy, Default)]
struct Expect {
    /// A child aborted inside a run: the newest run must read as interrupted.
    interrupted: bool,
    /// The migration has finished: nothing may be left to migrate.
    finished: bool,
}

/// The logical state of a store, for comparing two of them.
#[derive(Debug, Default, PartialEq)]
struct Digest {
    /// Per id: the head's stored version and content, "failed" plus the v1 content for a document
    /// whose step fails, or "removed".
    heads: BTreeMap<String, String>,
    /// Per id not edited by a child: how many revisions it has.
    revisions: BTreeMap<String, u64>,
    /// Ids whose step failed (heads still at v1 that cannot be read at v2).
    failed: BTreeSet<String>,
    /// Ids a child's update wrote.
    edited: BTreeSet<String>,
}

impl Digest {
    /// How many heads are at v2.
    fn at_v2(&self) -> usize {
        self.heads
            .values()
            .filter(|head| head.starts_with("v2"))
            .count()
    }
}

/// Collects violations instead of stopping at the first.
#[derive(Default)]
struct Violations(Vec<String>);

impl Violations {
    fn push(&mut self, violation: String) {
        self.0.push(violation);
    }

    fn into_result<T>(self, value: T) -> Result<T, String> {
        if self.0.is_empty() {
            return Ok(value);
        }
        let mut text = format!("{} invariant violations:", self.0.len());
        for violation in self.0.iter().take(20) {
            let _ = write!(text, "\n  - {violation}");
        }
        if self.0.len() > 20 {
            let _ = write!(text, "\n  - … and {} more", self.0.len() - 20);
        }
        Err(text)
    }
}

/// Opens the store at `path` and checks every invariant of DESIGN.md through the public API;
/// returns the store's digest, or every violation found.
fn check(path: &Path, model: &mut Model, expect: Expect) -> Result<Digest, String> {
    let store = open(path).map_err(|error| format!("open: {}", chain(&error)))?;
    let notes = store
        .collection::<NoteV2>()
        .map_err(|error| format!("collection: {}", chain(&error)))?;
    let mut violations = Violations::default();
    let mut digest = Digest::default();
    let mut heads = Heads::default();
    // Migration revisions per run.
    let mut by_run: BTreeMap<u64, u64> = BTreeMap::new();

    for index in 0..DOCS {
        let id = id_of(index);
        let last = check_history(&notes, model, index, &id, &mut by_run, &mut violations);
        let Some((count, last)) = last else { continue };
        let edited = (2..=count).any(|revision| {
            model
                .seen
                .get(&(id.clone(), revision))
                .is_some_and(|seen| seen.origin == Origin::Write && seen.version == Some(2))
        });
        if edited {
            digest.edited.insert(id.clone());
        } else {
            digest.revisions.insert(id.clone(), count);
        }
        let head = check_head(
            &notes,
            index,
            &id,
            count,
            &last,
            &mut heads,
            &mut violations,
        );
        if let Some(head) = head {
            if head.starts_with("failed") {
                digest.failed.insert(id.clone());
            }
            digest.heads.insert(id, head);
        }
    }

    check_counts(&notes, &heads, expect, &mut violations);
    check_ledger(&notes, &by_run, model, expect, &mut violations);
    // Invariant 2: no acknowledged write is lost.
    for (id, revision) in &model.acknowledged {
        let kept = model.seen.get(&(id.clone(), *revision));
        if !kept.is_some_and(|seen| seen.origin == Origin::Write && seen.version == Some(2)) {
            violations.push(format!(
                "{id}: acknowledged update at revision {revision} is lost ({kept:?})"
            ));
        }
    }
    drop(notes);
    drop(store);
    violations.into_result(digest)
}

/// What reading every head found.
#[derive(Default)]
struct Heads {
    /// Live heads per stored version.
    live: BTreeMap<u32, u64>,
    /// The stored version of each live head.
    versions: BTreeMap<String, u32>,
    /// Removed documents.
    removed: u64,
    /// Live heads at v1 whose step fails.
    failing_at_v1: u64,
}

/// Invariant 1: the head decodes at exactly one known version, or is a document whose step
/// fails, still at v1; and it is the last revision of the history. Returns the head for the
/// digest.
fn check_head(
    notes: &Collection<NoteV2>,
    index: usize,
    id: &str,
    count: u64,
    last: &RawRevision,
    heads: &mut Heads,
    violations: &mut Violations,
) -> Option<String> {
    let head = match notes.get(id) {
        Ok(None) => {
            if fate(index) != Fate::Removed || !last.info.removed {
                violations.push(format!("{id}: get says removed, but it is not"));
            }
            heads.removed += 1;
            "removed".to_owned()
        }
        Ok(Some(document)) => {
            let version = document.stored_version;
            if document.revision.get() != count
                || last.info.version != Some(version)
                || !(1..=2).contains(&version)
                || fate(index) == Fate::Removed
            {
                violations.push(format!(
                    "{id}: head is revision {} at v{version}, history ends at {count} ({:?})",
                    document.revision, last.info
                ));
            }
            // Lazy reads and eager migration agree.
            if let Some(expected) = expected_content(last) {
                if expected != document.data {
                    violations.push(format!(
                        "{id}: read {:?}, expected {expected:?}",
                        document.data
                    ));
                }
            }
            *heads.live.entry(version).or_insert(0) += 1;
            heads.versions.insert(id.to_owned(), version);
            format!("v{version} {:?}", document.data)
        }
        Err(StoreError::Upgrade {
            revision, source, ..
        }) if matches!(
            *source,
            SchemaError::Step { .. } | SchemaError::StepPanicked { .. }
        ) =>
        {
            if !matches!(fate(index), Fate::Fails | Fate::Panics)
                || revision.get() != count
                || last.info.version != Some(1)
            {
                violations.push(format!(
                    "{id}: step failed at revision {revision}, history ends at {count}"
                ));
            }
            *heads.live.entry(1).or_insert(0) += 1;
            heads.versions.insert(id.to_owned(), 1);
            heads.failing_at_v1 += 1;
            format!("failed {:?}", last.payload)
        }
        Err(error) => {
            violations.push(format!("{id}: get: {}", chain(&error)));
            return None;
        }
    };
    Some(head)
}

/// Checks a document's revisions: numbered 1..=n with parents, none changed since a check saw it,
/// every new one a correct migration or a child's acknowledged kind of update. Returns the
/// revision count and the last revision.
fn check_history(
    notes: &Collection<NoteV2>,
    model: &mut Model,
    index: usize,
    id: &str,
    by_run: &mut BTreeMap<u64, u64>,
    violations: &mut Violations,
) -> Option<(u64, RawRevision)> {
    let history = match notes.history(id) {
        Ok(history) => history,
        Err(error) => {
            violations.push(format!("{id}: history: {}", chain(&error)));
            return None;
        }
    };
    let mut previous: Option<RawRevision> = None;
    for (at, info) in (1u64..).zip(&history) {
        let parent = info.parent.map(revolve::Revision::get);
        if info.revision.get() != at || parent != (at > 1).then(|| at - 1) {
            violations.push(format!("{id}: revision {at} of history is {info:?}"));
        }
        let raw = match notes.raw_revision(id, info.revision) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                violations.push(format!("{id}: revision {at} in history but not readable"));
                return None;
            }
            Err(error) => {
                violations.push(format!("{id}: revision {at}: {}", chain(&error)));
                return None;
            }
        };
        let key = (id.to_owned(), at);
        match model.seen.get(&key) {
            Some(seen) if *seen != Seen::of(&raw) => {
                violations.push(format!(
                    "{id}: revision {at} changed since it was first seen"
                ));
            }
            Some(_) => {}
            None => {
                check_new_revision(model, index, id, &raw, previous.as_ref(), violations);
                model.seen.insert(key, Seen::of(&raw));
            }
        }
        if let Origin::Migration { run } = raw.info.origin {
            *by_run.entry(run).or_insert(0) += 1;
        }
        previous = Some(raw);
    }
    // Invariant 2: every revision ever seen is still there.
    let count = history.len() as u64;
    if let Some(((_, lost), _)) = model
        .seen
        .range((id.to_owned(), count + 1)..=(id.to_owned(), u64::MAX))
        .next()
    {
        violations.push(format!("{id}: revision {lost} was seen before and is gone"));
    }
    if count == 0 {
        violations.push(format!("{id}: no revisions"));
    }
    previous.map(|last| (count, last))
}

/// A revision appended since the set-up: a migration of the revision before it (exactly the step's
/// output), or a child's update.
fn check_new_revision(
    model: &Model,
    index: usize,
    id: &str,
    raw: &RawRevision,
    previous: Option<&RawRevision>,
    violations: &mut Violations,
) {
    let at = raw.info.revision;
    match raw.info.origin {
        Origin::Migration { .. } => {
            let from = previous
                .filter(|previous| previous.info.version == Some(1) && !previous.info.removed)
                .and_then(|previous| previous.payload.clone())
                .and_then(|payload| serde_json::from_value::<NoteV1>(payload).ok());
            let Some(from) = from else {
                violations.push(format!(
                    "{id}: migration revision {at} follows no v1 revision"
                ));
                return;
            };
            if matches!(fate(index), Fate::Fails | Fate::Panics | Fate::Removed) {
                violations.push(format!(
                    "{id}: migration revision {at} of a failing document"
                ));
                return;
            }
            let expected = note_v1_to_v2(from).ok();
            let found = payload_v2(raw);
            if raw.info.version != Some(2) || found.is_none() || found != expected {
                violations.push(format!(
                    "{id}: migration revision {at} holds {found:?}, the step gives {expected:?}"
                ));
            }
        }
        // The set-up's writes: first seen by the check right after the set-up.
        Origin::Write if raw.info.removed => {
            if fate(index) != Fate::Removed {
                violations.push(format!("{id}: removal at revision {at}"));
            }
        }
        Origin::Write if raw.info.version == Some(1) => {
            let found = raw
                .payload
                .clone()
                .and_then(|payload| serde_json::from_value::<NoteV1>(payload).ok());
            let known = at.get() == 1 || (at.get() == 2 && rewritten_at_v1(index));
            if !known || found != Some(original(index, at.get())) {
                violations.push(format!("{id}: v1 revision {at} holds {found:?}"));
            }
        }
        Origin::Write if model.updates && edited_by_child(index) => {
            if payload_v2(raw) != Some(edited(id)) {
                violations.push(format!(
                    "{id}: update revision {at} holds {:?}",
                    raw.payload
                ));
            }
        }
        origin => violations.push(format!("{id}: unexpected revision {at} from {origin:?}")),
    }
}

fn payload_v2(raw: &RawRevision) -> Option<NoteV2> {
    (raw.info.version == Some(2))
        .then(|| serde_json::from_value(raw.payload.clone()?).ok())
        .flatten()
}

/// What reading a live head must give: its v2 content, or the step applied to its v1 content.
fn expected_content(last: &RawRevision) -> Option<NoteV2> {
    match last.info.version {
        Some(2) => payload_v2(last),
        Some(1) => serde_json::from_value::<NoteV1>(last.payload.clone()?)
            .ok()
            .and_then(|old| note_v1_to_v2(old).ok()),
        _ => None,
    }
}

/// The O(1) counters agree with what iterating finds; failure records stay within the documents
/// that can fail.
fn check_counts(
    notes: &Collection<NoteV2>,
    heads: &Heads,
    expect: Expect,
    violations: &mut Violations,
) {
    let Heads {
        live,
        versions: head_versions,
        removed,
        failing_at_v1,
    } = heads;
    let (removed, failing_at_v1) = (*removed, *failing_at_v1);
    let mut iterated: BTreeMap<u32, u64> = BTreeMap::new();
    let mut iterated_ids = BTreeSet::new();
    for item in notes {
        let id = match item {
            Ok(document) => {
                *iterated.entry(document.stored_version).or_insert(0) += 1;
                document.id.into_string()
            }
            Err(StoreError::Upgrade { id, .. }) => {
                *iterated.entry(1).or_insert(0) += 1;
                id
            }
            Err(error) => {
                violations.push(format!("iter: {}", chain(&error)));
                continue;
            }
        };
        if index_of(&id).is_none() || !iterated_ids.insert(id.clone()) {
            violations.push(format!("iter: unknown or repeated id {id}"));
        }
    }
    let counted = notes.count_by_version().unwrap();
    if counted != *live || iterated != *live {
        violations.push(format!(
            "count_by_version {counted:?}, iter finds {iterated:?}, get finds {live:?}"
        ));
    }
    let heads: BTreeSet<String> = head_versions.keys().cloned().collect();
    if iterated_ids != heads {
        violations.push(format!(
            "iter finds {} ids, get finds {} live",
            iterated_ids.len(),
            heads.len()
        ));
    }
    if notes.removed_count().unwrap() != removed {
        violations.push(format!(
            "removed_count {}, get finds {removed} removed",
            notes.removed_count().unwrap()
        ));
    }
    let pending = notes.pending().unwrap();
    let at_v1 = pending.by_version.get(&1).copied();
    let (migratable, failed) = at_v1.map_or((0, 0), |count| (count.migratable, count.failed));
    let live_v1 = live.get(&1).copied().unwrap_or(0);
    if migratable + failed != live_v1 || failed > failing_at_v1 {
        violations.push(format!(
            "pending: {migratable} migratable + {failed} failed at v1, {live_v1} live at v1 of \
             which {failing_at_v1} cannot migrate"
        ));
    }
    if expect.finished && (migratable != 0 || failed != failing_at_v1) {
        violations.push(format!(
            "finished, yet pending says {migratable} migratable and {failed} failed \
             ({failing_at_v1} cannot migrate)"
        ));
    }
}

/// Every run in the ledger: none left running, counts that add up, and migrated counts that
/// match the migration revisions naming the run.
fn check_ledger(
    notes: &Collection<NoteV2>,
    by_run: &BTreeMap<u64, u64>,
    model: &Model,
    expect: Expect,
    violations: &mut Violations,
) {
    let mut runs: Vec<RunRecord> = Vec::new();
    loop {
        match notes.runs_page(runs.last().map(|run| run.id), 100) {
            Ok(page) if page.is_empty() => break,
            Ok(page) => runs.extend(page),
            Err(error) => {
                violations.push(format!("runs: {}", chain(&error)));
                return;
            }
        }
    }
    if expect.interrupted && runs.first().map(|run| run.state) != Some(RunState::Interrupted) {
        violations.push(format!(
            "the killed run does not read as interrupted: {:?}",
            runs.first()
        ));
    }
    let known: BTreeSet<u64> = runs.iter().map(|run| run.id).collect();
    for run in &runs {
        let id = run.id;
        if run.kind != RunKind::Migration || run.dry_run || run.to_version != 2 {
            violations.push(format!("run {id}: unexpected {:?}", run.kind));
        }
        if run.migrated + run.failed + run.skipped != run.scanned {
            violations.push(format!(
                "run {id}: {} migrated + {} failed + {} skipped != {} scanned",
                run.migrated, run.failed, run.skipped, run.scanned
            ));
        }
        if run.failures_by_class.values().sum::<u64>() != run.failed {
            violations.push(format!("run {id}: failures by class do not add up"));
        }
        for failure in &run.failures {
            let fails = index_of(&failure.id).is_some_and(|index| {
                matches!(fate(index), Fate::Fails | Fate::Panics) && failure.from_version == 1
            });
            if !fails {
                violations.push(format!("run {id}: lists {} as failed", failure.id));
            }
        }
        // The ledger equals what is on disk, whenever the process stopped: a finished record is
        // saved durably after its last chunk, and an interrupted one is reconciled from the
        // progress record each chunk writes in its own batch.
        let written = by_run.get(&id).copied().unwrap_or(0);
        let finished = matches!(run.state, RunState::Done | RunState::DoneWithFailures);
        let agrees = written == run.migrated
            && (!finished || (run.state == RunState::Done) == (run.failed == 0));
        // Every failure is listed, up to the cap: an interrupted record's list is completed from
        // the failure records that name the run.
        let listed: BTreeSet<&str> = run
            .failures
            .iter()
            .map(|failure| failure.id.as_str())
            .collect();
        let expected = run.failed.min(revolve::MAX_REPORTED_FAILURES as u64);
        // An interrupted record's list is completed from the failure records that *still* name
        // the run: an update that rewrote a failed document since (at version 2) cleared its
        // record, so the run counts it but cannot list it. Only such documents may be missing.
        let resolved = if run.state == RunState::Interrupted && model.updates {
            (0..DOCS)
                .filter(|&index| matches!(fate(index), Fate::Fails | Fate::Panics))
                .map(id_of)
                .filter(|id| !listed.contains(id.as_str()))
                .filter(|id| {
                    model.seen.iter().any(|((seen_id, _), seen)| {
                        seen_id == id && seen.origin == Origin::Write && seen.version == Some(2)
                    })
                })
                .count() as u64
        } else {
            0
        };
        let short = expected.saturating_sub(run.failures.len() as u64);
        if listed.len() != run.failures.len()
            || run.failures.len() as u64 > expected
            || short > resolved
        {
            violations.push(format!(
                "run {id} ({:?}) lists {} failures ({} distinct); it counts {} failed",
                run.state,
                run.failures.len(),
                listed.len(),
                run.failed
            ));
        }
        match run.state {
            RunState::Running => violations.push(format!("run {id} still reads as running")),
            RunState::Done | RunState::DoneWithFailures | RunState::Interrupted => {}
            other => violations.push(format!("run {id}: unexpected state {other:?}")),
        }
        if !agrees {
            violations.push(format!(
                "run {id} ({:?}) says {} migrated; {written} revisions name it",
                run.state, run.migrated
            ));
        }
    }
    for run in by_run.keys() {
        if !known.contains(run) {
            violations.push(format!(
                "migration revisions name run {run}, not in the ledger"
            ));
        }
    }
}

// ---- Scenarios. ----

/// The kills one scenario made, and of which kind.
#[derive(Debug, Default)]
struct Kills {
    aborted: u64,
    sigkilled: u64,
}

/// Deterministic aborts at each write boundary of a child's first chunks, then SIGKILLs at
/// pseudo-random moments, each followed by a full check; then a resume, compared with an
/// uninterrupted migration of a fresh store.
fn kill_during_migration(kills: &mut Kills) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    set_up(&path);
    let mut model = Model::default();
    check(&path, &mut model, Expect::default()).map_err(|error| format!("set-up: {error}"))?;
    let interrupted = Expect {
        interrupted: true,
        ..Expect::default()
    };

    // A run of one chunk passes seven points: after its ledger record is saved at the start;
    // before the chunk's batch, after it, after the flush; after the record is saved with the
    // chunk's counts; after the final record is saved (and flushed), and after the progress
    // record is removed. Aborting at 1..=15 lands on each of them in a child's first two runs and
    // at the start of its third (which retries failures, so failure records are rewritten under
    // the aborts too). Half the children flush in a loop, so that an applied batch may or may not
    // be on disk when they stop. After every fourth abort the parent does not read the store:
    // the next child settles the killed run as it opens the collection, and is aborted during
    // that settling or just after it (its points counted from before the store is opened).
    let mut after_aborts = Digest::default();
    for round in 0..24u64 {
        let early = round % 4 == 2;
        let settings = Settings {
            abort_at: if early {
                round / 4 % 3 + 1
            } else {
                round % 15 + 1
            },
            limit: [40, 25, 60][usize::try_from(round % 3).unwrap()],
            retry_every: 3,
            flusher: round % 2 == 1,
            early,
            ..Settings::default()
        };
        let end = run_child(&path, settings, None)?;
        if !end.killed {
            return Err(format!(
                "child ({}) passed fewer fault points than it was to abort at: {:?}",
                settings.encode(),
                end.lines
            ));
        }
        kills.aborted += 1;
        if round % 4 == 1 {
            continue;
        }
        // Aborted after a run's final record was saved: the newest run reads as done.
        let finished = !early && (settings.abort_at - 1) % 7 >= 5;
        let expect = if finished {
            Expect::default()
        } else {
            interrupted
        };
        after_aborts = check(&path, &mut model, expect)
            .map_err(|error| format!("after abort ({}): {error}", settings.encode()))?;
    }

    let mut random = XorShift::new(0x5eed);
    let mut after_kills = Digest::default();
    let mut runs_finished = 0;
    for round in 0..6u64 {
        let settings = Settings {
            limit: 20 + random.below(80),
            retry_every: 4,
            flusher: round % 2 == 0,
            forever: true,
            ..Settings::default()
        };
        let delay = Duration::from_millis(5 + random.below(80));
        let end = run_child(&path, settings, Some(delay))?;
        if !end.killed {
            return Err(format!("child ({}) was not killed", settings.encode()));
        }
        kills.sigkilled += 1;
        runs_finished += end
            .lines
            .iter()
            .filter(|line| line.starts_with("run "))
            .count();
        after_kills = check(&path, &mut model, Expect::default()).map_err(|error| {
            format!(
                "after SIGKILL at {delay:?} ({}): {error}",
                settings.encode()
            )
        })?;
    }

    let resumed = resume(&path, &mut model)?;
    let reference = uninterrupted(&resumed.edited)?;
    compare(&resumed, &reference)?;
    Ok(format!(
        "{} of {DOCS} at v2 after the aborts, {} after the SIGKILLs ({runs_finished} runs \
         finished before them), {} after the resume; {} failed",
        after_aborts.at_v2(),
        after_kills.at_v2(),
        resumed.at_v2(),
        resumed.failed.len()
    ))
}

/// SIGKILLs while a second thread updates documents: no acknowledged update may be lost, and the
/// resumed end state equals an uninterrupted migration of a fresh store given the same updates.
fn kill_during_migration_with_writers(kills: &mut Kills) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    set_up(&path);
    let mut model = Model {
        updates: true,
        ..Model::default()
    };
    check(&path, &mut model, Expect::default()).map_err(|error| format!("set-up: {error}"))?;
    let mut random = XorShift::new(0x00c0_ffee);
    let mut after_kills = Digest::default();
    for round in 0..6u64 {
        let settings = Settings {
            limit: 60 + random.below(300),
            retry_every: 3,
            flusher: round % 3 == 2,
            updates: true,
            forever: true,
            seed: round + 1,
            ..Settings::default()
        };
        let delay = Duration::from_millis(10 + random.below(240));
        let end = run_child(&path, settings, Some(delay))?;
        if !end.killed {
            return Err(format!("child ({}) was not killed", settings.encode()));
        }
        kills.sigkilled += 1;
        for line in &end.lines {
            let mut words = line.split(' ');
            if words.next() == Some("ack") {
                let id = words.next().unwrap_or_default().to_owned();
                let revision = words.next().and_then(|word| word.parse().ok()).unwrap_or(0);
                model.acknowledged.insert((id, revision));
            }
        }
        after_kills = check(&path, &mut model, Expect::default()).map_err(|error| {
            format!(
                "after SIGKILL at {delay:?} ({}): {error}",
                settings.encode()
            )
        })?;
    }
    if model.acknowledged.is_empty() {
        return Err("no child acknowledged an update before it was killed".to_owned());
    }
    let resumed = resume(&path, &mut model)?;
    let reference = uninterrupted(&resumed.edited)?;
    compare(&resumed, &reference)?;
    Ok(format!(
        "{} of {DOCS} at v2 after the SIGKILLs; {} acknowledged updates kept, {} documents edited",
        after_kills.at_v2(),
        model.acknowledged.len(),
        resumed.edited.len()
    ))
}

/// Finishes the migration in this process, checks, and checks that running it again writes
/// nothing.
fn resume(path: &Path, model: &mut Model) -> Result<Digest, String> {
    migrate_to_the_end(path)?;
    let finished = Expect {
        finished: true,
        ..Expect::default()
    };
    let digest = check(path, model, finished).map_err(|error| format!("resumed: {error}"))?;
    // Invariant 3: re-running a finished migration creates no revision.
    let again = {
        let store = open(path).map_err(|error| chain(&error))?;
        let notes = store
            .collection::<NoteV2>()
            .map_err(|error| chain(&error))?;
        notes.migrate().execute().map_err(|error| chain(&error))?
    };
    if again.run_id.is_some() || again.scanned != 0 || again.remaining != 0 {
        return Err(format!("a finished migration ran again: {again:?}"));
    }
    let after = check(path, model, finished).map_err(|error| format!("re-run: {error}"))?;
    if after != digest {
        return Err("re-running a finished migration changed the store".to_owned());
    }
    Ok(digest)
}

fn migrate_to_the_end(path: &Path) -> Result<(), String> {
    let store = open(path).map_err(|error| chain(&error))?;
    let notes = store
        .collection::<NoteV2>()
        .map_err(|error| chain(&error))?;
    let report = notes.migrate().execute().map_err(|error| chain(&error))?;
    if report.remaining != 0 || report.cancelled {
        return Err(format!("the resumed migration did not finish: {report:?}"));
    }
    Ok(())
}

/// The same data set, given the same updates, migrated in one uninterrupted run.
fn uninterrupted(edited_ids: &BTreeSet<String>) -> Result<Digest, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    set_up(&path);
    if !edited_ids.is_empty() {
        let store = open(&path).map_err(|error| chain(&error))?;
        let notes = store
            .collection::<NoteV2>()
            .map_err(|error| chain(&error))?;
        for id in edited_ids {
            notes
                .update(id, &edited(id))
                .map_err(|error| chain(&error))?;
        }
    }
    migrate_to_the_end(&path)?;
    let mut model = Model {
        updates: !edited_ids.is_empty(),
        ..Model::default()
    };
    let finished = Expect {
        finished: true,
        ..Expect::default()
    };
    check(&path, &mut model, finished).map_err(|error| format!("uninterrupted: {error}"))
}

/// Interrupted-and-resumed equals uninterrupted.
fn compare(resumed: &Digest, reference: &Digest) -> Result<(), String> {
    if resumed == reference {
        return Ok(());
    }
    let mut text = "resumed end state differs from an uninterrupted migration:".to_owned();
    for (id, head) in &resumed.heads {
        if reference.heads.get(id) != Some(head) {
            let _ = write!(text, "\n  {id}: {head} vs {:?}", reference.heads.get(id));
        }
    }
    for (id, count) in &resumed.revisions {
        if reference.revisions.get(id) != Some(count) {
            let _ = write!(
                text,
                "\n  {id}: {count} revisions vs {:?}",
                reference.revisions.get(id)
            );
        }
    }
    let _ = write!(
        text,
        "\n  failed {:?} vs {:?}",
        resumed.failed, reference.failed
    );
    Err(text)
}

/// The same checker, after a child that commits heads before their revisions, must report a
/// violation; after the same child with the correct write order, it must not.
///
/// With the broken order a run passes a fault point once its ledger record is saved, then its
/// chunk four: before the head batch, between the two batches, after the revision batch, after
/// the flush. sled writes a batch's last log buffer only
/// when the next batch starts (or at a flush), so an abort right between the batches loses the
/// head batch too and leaves nothing to see; an abort after the revision batch, before the flush,
/// finds the head batch on disk and the revision batch not.
fn broken_write_order_is_seen(kills: &mut Kills) -> Result<String, String> {
    const ATTEMPTS: usize = 3;
    let broken = Settings {
        abort_at: 4,
        limit: 1000,
        broken: true,
        ..Settings::default()
    };
    let interrupted = Expect {
        interrupted: true,
        ..Expect::default()
    };
    let mut seen = None;
    for attempt in 1..=ATTEMPTS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        set_up(&path);
        let mut model = Model::default();
        check(&path, &mut model, Expect::default()).map_err(|error| format!("set-up: {error}"))?;
        if !run_child(&path, broken, None)?.killed {
            return Err(format!("broken child ({}) did not abort", broken.encode()));
        }
        kills.aborted += 1;
        if let Err(violations) = check(&path, &mut model, interrupted) {
            seen = Some((attempt, violations));
            break;
        }
    }
    let Some((attempt, violations)) = seen else {
        return Err(format!(
            "the checker saw nothing wrong after {ATTEMPTS} children with the broken write order"
        ));
    };

    // The control: the same chunk, the same moment (its batch applied, not yet flushed).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    set_up(&path);
    let mut model = Model::default();
    check(&path, &mut model, Expect::default()).map_err(|error| format!("set-up: {error}"))?;
    let correct = Settings {
        abort_at: 3,
        broken: false,
        ..broken
    };
    if !run_child(&path, correct, None)?.killed {
        return Err(format!("child ({}) did not abort", correct.encode()));
    }
    kills.aborted += 1;
    check(&path, &mut model, interrupted)
        .map_err(|error| format!("control with the correct order: {error}"))?;
    let first = violations.lines().take(2).collect::<Vec<_>>().join(" ");
    Ok(format!(
        "broken order seen at attempt {attempt}: {first}; the correct order passes"
    ))
}

type Scenario = fn(&mut Kills) -> Result<String, String>;

fn main() -> ExitCode {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&path));
    }
    quiet_step_bombs();
    let started = Instant::now();
    let scenarios: [(&str, Scenario); 3] = [
        ("kill_during_migration", kill_during_migration),
        (
            "kill_during_migration_with_writers",
            kill_during_migration_with_writers,
        ),
        ("broken_write_order_is_seen", broken_write_order_is_seen),
    ];
    // Each scenario has its own stores and children: they run side by side.
    let results: Vec<_> = std::thread::scope(|scope| {
        let running: Vec<_> = scenarios
            .iter()
            .map(|&(name, scenario)| {
                scope.spawn(move || {
                    let at = Instant::now();
                    let mut kills = Kills::default();
                    let result = scenario(&mut kills);
                    (name, result, kills, at.elapsed())
                })
            })
            .collect();
        running
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect()
    });
    let (mut passed, mut failed) = (0, 0);
    let mut total = Kills::default();
    for (name, result, kills, elapsed) in results {
        total.aborted += kills.aborted;
        total.sigkilled += kills.sigkilled;
        let kills = kills.aborted + kills.sigkilled;
        match result {
            Ok(summary) => {
                passed += 1;
                println!("test {name} ... ok ({kills} kills, {elapsed:.1?}): {summary}");
            }
            Err(error) => {
                failed += 1;
                println!("test {name} ... FAILED ({kills} kills, {elapsed:.1?})\n{error}");
            }
        }
    }
    let kills = total.aborted + total.sigkilled;
    println!(
        "{kills} kills ({} aborts at fault points, {} SIGKILLs) in {:.1?}",
        total.aborted,
        total.sigkilled,
        started.elapsed()
    );
    if kills < 30 {
        failed += 1;
        println!("test enough_kills ... FAILED: {kills} < 30");
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
