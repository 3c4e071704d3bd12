//! The damage matrix: copies of one store damaged in every way a disk or an operator damages
//! files (truncation, bit flips, zeroed pages, deleted files, a damaged snapshot or
//! configuration), each opened, verified, read and salvaged. For every case: no panic escapes,
//! the store either opens intact or fails with a typed error, `verify` names what it cannot
//! account for, and salvage exports every revision that is still readable. Prints the tally.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use revolve::{Schema, Store, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 1)]
struct Note {
    text: String,
    n: u32,
}

const DOCUMENTS: u32 = 300;

/// Every live document's payload, by id.
type Expected = BTreeMap<String, Note>;

fn note(n: u32, edit: u32) -> Note {
    Note {
        text: format!("note {n} edit {edit} {}", "x".repeat(2500)),
        n,
    }
}

/// Builds the pristine store: 300 documents, every third updated twice, every tenth removed;
/// closed and reopened so that sled writes a snapshot.
fn pristine(dir: &Path) -> Expected {
    pristine_with(dir, Layout::Plain)
}

/// The file layouts the matrix damages: the same documents, the pages laid out differently.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// The documents' tree alone.
    Plain,
    /// The migration ledger's tree created (empty) before the documents are written, which
    /// shifts every page of theirs.
    WithLedger,
}

fn pristine_with(dir: &Path, layout: Layout) -> Expected {
    let mut expected = Expected::new();
    {
        let store = Store::open(dir).unwrap();
        let notes = store.collection::<Note>().unwrap();
        if matches!(layout, Layout::WithLedger) {
            // Reading the (empty) ledger creates its tree.
            assert!(notes.runs().unwrap().is_empty());
        }
        for n in 0..DOCUMENTS {
            let id = format!("n{n:04}");
            notes.insert_with_id(&id, &note(n, 0)).unwrap();
            expected.insert(id.clone(), note(n, 0));
            if n % 3 == 0 {
                for edit in 1..=2 {
                    notes.update(&id, &note(n, edit)).unwrap();
                    expected.insert(id.clone(), note(n, edit));
                }
            }
            if n % 10 == 0 {
                notes.remove(&id).unwrap();
                expected.remove(&id);
            }
        }
        store.flush().unwrap();
    }
    // Reopening recovers the log and writes a snapshot.
    let store = Store::open(dir).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir).unwrap();
    drop(store);
    expected
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

fn snapshot_of(dir: &Path) -> Option<PathBuf> {
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect();
    snaps.sort();
    snaps.pop()
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(&'static str, f64),
    Flip(&'static str, u64),
    Zero(&'static str, f64, u64),
    Delete(&'static str),
    Garbage(&'static str),
    /// The snapshot deleted and a page of `db` zeroed: sled reads the whole log at open.
    ZeroWithoutSnapshot(f64),
}

fn file(dir: &Path, name: &str) -> Option<PathBuf> {
    if name == "snap" {
        snapshot_of(dir)
    } else {
        Some(dir.join(name))
    }
}

/// A small deterministic generator, so that every run damages the same bytes.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn apply(dir: &Path, damage: &Damage) {
    match damage {
        Damage::Truncate(name, fraction) => {
            let Some(path) = file(dir, name) else { return };
            let len = std::fs::metadata(&path).unwrap().len();
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let at = (len as f64 * fraction) as u64;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(at)
                .unwrap();
        }
        Damage::Flip(name, seed) => {
            let Some(path) = file(dir, name) else { return };
            let mut bytes = std::fs::read(&path).unwrap();
            let mut seed = *seed;
            for _ in 0..4 {
                let at = usize::try_from(next(&mut seed) % bytes.len() as u64).unwrap();
                bytes[at] ^= 1 << (next(&mut seed) % 8);
            }
            std::fs::write(&path, bytes).unwrap();
        }
        Damage::Zero(name, fraction, len) => {
            let Some(path) = file(dir, name) else { return };
            let mut bytes = std::fs::read(&path).unwrap();
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let at = (bytes.len() as f64 * fraction) as usize;
            let end = (at + usize::try_from(*len).unwrap()).min(bytes.len());
            bytes[at..end].fill(0);
            std::fs::write(&path, bytes).unwrap();
        }
        Damage::Delete(name) => {
            if let Some(path) = file(dir, name) {
                std::fs::remove_file(path).unwrap();
            }
        }
        Damage::ZeroWithoutSnapshot(fraction) => {
            apply(dir, &Damage::Delete("snap"));
            apply(dir, &Damage::Zero("db", *fraction, 4096));
        }
        Damage::Garbage(name) => {
            if let Some(path) = file(dir, name) {
                std::fs::write(path, b"segment_size: banana\n\xff\xfe").unwrap();
            }
        }
    }
}

fn cases() -> Vec<Damage> {
    let mut cases = Vec::new();
    for fraction in [0.05, 0.2, 0.4, 0.5, 0.6, 0.8, 0.9, 0.99] {
        cases.push(Damage::Truncate("db", fraction));
    }
    for seed in 1..=20 {
        cases.push(Damage::Flip("db", seed * 7919));
    }
    for (i, fraction) in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
        .into_iter()
        .enumerate()
    {
        cases.push(Damage::Zero(
            "db",
            fraction,
            if i % 2 == 0 { 4096 } else { 512 },
        ));
    }
    cases.push(Damage::Delete("db"));
    cases.push(Damage::Delete("conf"));
    cases.push(Damage::Delete("snap"));
    for fraction in [0.0, 0.5, 0.99] {
        cases.push(Damage::Truncate("snap", fraction));
    }
    for seed in 1..=4 {
        cases.push(Damage::Flip("snap", seed * 104_729));
    }
    cases.push(Damage::Zero("snap", 0.3, 64));
    cases.push(Damage::Garbage("snap"));
    cases.push(Damage::Truncate("conf", 0.5));
    cases.push(Damage::Flip("conf", 31));
    cases.push(Damage::Garbage("conf"));
    for fraction in [0.0, 0.3, 0.6] {
        cases.push(Damage::ZeroWithoutSnapshot(fraction));
    }
    cases
}

#[derive(Debug, Default)]
struct Tally {
    cases: u32,
    intact: u32,
    open_refused: u32,
    damage_reported: u32,
    panics: u32,
    /// Opens refused after a panic inside sled, caught and reported as a typed error.
    panics_caught: u32,
    /// Documents that did not read back as written, over the cases that opened.
    documents_affected: usize,
    /// Of those, named by `verify`.
    documents_named: usize,
    /// Revisions readable in the damaged stores, every one found again after salvage.
    revisions_salvaged: usize,
}

#[derive(Debug)]
enum Outcome {
    Intact {
        salvaged: usize,
    },
    OpenRefused(String),
    DamageReported {
        what: String,
        affected: usize,
        named: usize,
        salvaged: usize,
    },
}

fn run(dir: &Path, expected: &Expected) -> Outcome {
    let store = match Store::open(dir) {
        Ok(store) => store,
        Err(error) => {
            match &error {
                StoreError::StorageCorrupt { file, .. } => {
                    assert!(file.starts_with(dir), "{error}");
                }
                other => panic!("not a typed storage error: {other:?}"),
            }
            return Outcome::OpenRefused(error.to_string());
        }
    };
    let verify = store.verify();
    let mut read = Expected::new();
    let mut read_errors = 0;
    match store.collection::<Note>() {
        Ok(notes) => {
            for document in &notes {
                match document {
                    Ok(document) => {
                        read.insert(document.id.to_string(), document.data);
                    }
                    Err(_) => read_errors += 1,
                }
            }
            // A walk stops at the first damaged page; what lies past it may still read by id.
            for id in expected.keys() {
                if !read.contains_key(id) {
                    if let Ok(Some(document)) = notes.get(id) {
                        read.insert(id.clone(), document.data);
                    }
                }
            }
        }
        Err(_) => read_errors += 1,
    }
    let salvaged = salvage(&store, dir, expected);
    let problems = match &verify {
        Ok(report) => report.problem_count,
        Err(_) => 1,
    };
    if read == *expected && read_errors == 0 && problems == 0 {
        return Outcome::Intact { salvaged };
    }
    let affected: Vec<&String> = expected
        .iter()
        .filter(|(id, note)| read.get(*id) != Some(note))
        .map(|(id, _)| id)
        .collect();
    let mut named = 0;
    // Every document that did not read back as written is named by verify, or counted among
    // the documents the counters expect and verify could not account for.
    if let Ok(report) = &verify {
        let text: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        let unaccounted: u64 = report
            .problems
            .iter()
            .filter_map(|problem| match problem {
                revolve::Problem::Unaccounted {
                    expected, found, ..
                } => Some(expected - found),
                _ => None,
            })
            .sum();
        let unnamed: Vec<&&String> = affected
            .iter()
            .filter(|id| !text.iter().any(|line| line.contains(&format!("`{id}`"))))
            .collect();
        named = affected.len() - unnamed.len();
        // Or nothing of the collection can be read at all: there is nothing to name then.
        let nothing_readable = report.documents == 0
            && report.problems.iter().any(|problem| {
                matches!(problem, revolve::Problem::Unreadable { tree, after, .. } if tree == "c/notes" && after.is_empty())
            });
        assert!(
            unnamed.len() as u64 <= unaccounted || nothing_readable,
            "verify names neither these documents nor their number: {unnamed:?}\n{report:#?}"
        );
    }
    // Damage the store cannot account for must be reported, not passed off as a smaller store.
    assert!(
        problems > 0 || read_errors > 0,
        "documents lost silently: {} of {} read, verify {verify:?}",
        read.len(),
        expected.len()
    );
    let what = format!(
        "{} of {} read, {read_errors} read errors, verify: {}",
        read.len(),
        expected.len(),
        match &verify {
            Ok(report) => format!("{} problems", report.problem_count),
            Err(error) => error.to_string(),
        }
    );
    Outcome::DamageReported {
        what,
        affected: affected.len(),
        named,
        salvaged,
    }
}

/// Every revision of every expected document that reads in the damaged store, by id.
fn readable_revisions(store: &Store, expected: &Expected) -> BTreeMap<(String, u64), Note> {
    let mut found = BTreeMap::new();
    let Ok(notes) = store.collection::<Note>() else {
        return found;
    };
    for id in expected.keys() {
        for number in 1..=3 {
            let revision = revolve::Revision::new(number).unwrap();
            if let Ok(Some(document)) = notes.revision(id, revision) {
                found.insert((id.clone(), number), document.data);
            }
        }
    }
    found
}

/// Salvages the damaged store, imports the salvage, and checks every revision that was readable
/// came through.
fn salvage(store: &Store, dir: &Path, expected: &Expected) -> usize {
    let mut backup = Vec::new();
    let report = store.export_salvage(&mut backup, |_| {}).unwrap();
    assert!(report.summary.salvaged);
    let readable = readable_revisions(store, expected);
    let target = dir.with_extension("salvaged");
    assert!(matches!(
        Store::import(&target, &backup[..], |_| {}),
        Err(revolve::BackupError::Salvaged)
    ));
    assert!(!target.exists(), "a refused import leaves nothing behind");
    let imported = Store::import_salvaged(&target, &backup[..], |_| {}).unwrap();
    assert!(imported.summary.salvaged);
    let restored = Store::builder()
        .path(&target)
        .lock_timeout(std::time::Duration::from_secs(10))
        .open()
        .unwrap();
    let restored_revisions = readable_revisions(&restored, expected);
    for (key, note) in &readable {
        assert_eq!(
            restored_revisions.get(key),
            Some(note),
            "revision {key:?} was readable but not salvaged; could not read: {:?}",
            report.unreadable
        );
    }
    readable.len()
}

#[test]
fn damage_matrix() {
    let root = tempfile::tempdir().unwrap();
    let mut panics = 0;
    for layout in [Layout::Plain, Layout::WithLedger] {
        let tally = matrix(&root.path().join(format!("{layout:?}")), layout);
        println!("damage matrix ({layout:?}): {tally:?}");
        assert!(tally.cases >= 50);
        panics += tally.panics;
    }
    assert_eq!(panics, 0);
}

/// Damages copies of one pristine store of `layout` in every way of [`cases`].
fn matrix(root: &Path, layout: Layout) -> Tally {
    let template = root.join("template");
    let expected = pristine_with(&template, layout);
    assert!(
        snapshot_of(&template).is_some(),
        "the template has a snapshot"
    );
    let mut tally = Tally::default();
    for (i, damage) in cases().into_iter().enumerate() {
        let dir = root.join(format!("case{i}"));
        copy_dir(&template, &dir);
        apply(&dir, &damage);
        tally.cases += 1;
        match catch_unwind(AssertUnwindSafe(|| run(&dir, &expected))) {
            Ok(Outcome::Intact { salvaged }) => {
                tally.intact += 1;
                tally.revisions_salvaged += salvaged;
            }
            Ok(Outcome::OpenRefused(error)) => {
                eprintln!("{layout:?} {damage:?}: open refused: {error}");
                tally.open_refused += 1;
                if error.contains("the storage engine panicked") {
                    tally.panics_caught += 1;
                }
            }
            Ok(Outcome::DamageReported {
                what,
                affected,
                named,
                salvaged,
            }) => {
                eprintln!("{layout:?} {damage:?}: {what}");
                tally.damage_reported += 1;
                tally.documents_affected += affected;
                tally.documents_named += named;
                tally.revisions_salvaged += salvaged;
            }
            Err(payload) => {
                // A failed assertion in `run` and a panic out of sled both land here: the
                // message tells them apart.
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                eprintln!("{layout:?} {damage:?}: PANIC: {message}");
                tally.panics += 1;
            }
        }
        // Each case's copies go once checked: the matrix holds one at a time on disk.
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(dir.with_extension("salvaged"));
    }
    tally
}

fn read_all(dir: &Path) -> Expected {
    let store = Store::open(dir).unwrap();
    let notes = store.collection::<Note>().unwrap();
    (&notes)
        .into_iter()
        .map(|document| {
            let document = document.unwrap();
            (document.id.to_string(), document.data)
        })
        .collect()
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_damaged_snapshot_is_named_and_rebuilt_from_the_log() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let expected = pristine(&dir);
    apply(&dir, &Damage::Flip("snap", 12345));
    let snapshot = snapshot_of(&dir).unwrap();
    let error = Store::open(&dir).unwrap_err();
    match &error {
        StoreError::StorageCorrupt { file, .. } => assert_eq!(file, &snapshot),
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("--rebuild-snapshot"), "{error}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_revolve"))
        .args(["repair", "--rebuild-snapshot"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rebuilt the snapshot"), "{stdout}");
    assert_eq!(read_all(&dir), expected);
}

#[test]
fn a_rebuild_without_a_lock_timeout_still_waits_for_the_engine_to_let_go() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let expected = pristine(&dir);
    apply(&dir, &Damage::Flip("snap", 12345));
    // sled releases the reopened store's lock from its own threads: with no wait at all the
    // rebuild would stop with its files moved.
    let outcome = Store::rebuild_snapshot(&dir, std::time::Duration::ZERO).unwrap();
    assert!(
        matches!(outcome, revolve::SnapshotRebuild::Rebuilt { .. }),
        "{outcome:?}"
    );
    assert_eq!(read_all(&dir), expected);
}

#[test]
fn a_rebuild_that_fails_puts_every_file_back() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    pristine(&dir);
    apply(&dir, &Damage::Flip("snap", 777));
    apply(&dir, &Damage::Zero("db", 0.0, 4096));
    let before = files(&dir);
    let outcome = Store::rebuild_snapshot(&dir, std::time::Duration::from_secs(5)).unwrap();
    assert!(
        matches!(outcome, revolve::SnapshotRebuild::PutBack { .. }),
        "{outcome:?}"
    );
    assert_eq!(files(&dir), before);
    let entries = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(entries, before.len() + 1, "only `blobs` besides the files");
}

/// Every file under `dir`, `blobs/` included, by path relative to `dir`.
fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = files(dir);
    let blobs = dir.join("blobs");
    if blobs.is_dir() {
        for (name, bytes) in files(&blobs) {
            all.insert(format!("blobs/{name}"), bytes);
        }
    }
    all
}

#[test]
fn a_rebuild_that_fails_puts_large_values_back() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    pristine(&dir);
    {
        // A value past sled's blob threshold lives in its own file under `blobs/`.
        let store = Store::open(&dir).unwrap();
        let notes = store.collection::<Note>().unwrap();
        let big = Note {
            text: "b".repeat(200 * 1024),
            n: 1,
        };
        notes.insert_with_id("big", &big).unwrap();
        store.flush().unwrap();
    }
    drop(Store::open(&dir).unwrap());
    let blobs = std::fs::read_dir(dir.join("blobs")).unwrap().count();
    assert!(blobs > 0, "the large value is in a blob");
    apply(&dir, &Damage::Flip("snap", 4242));
    // A shortened log recovers to a point before the blob, which sled's recovery then deletes.
    apply(&dir, &Damage::Truncate("db", 0.8));
    let before = all_files(&dir);
    let outcome = Store::rebuild_snapshot(&dir, std::time::Duration::from_secs(5)).unwrap();
    assert!(
        matches!(outcome, revolve::SnapshotRebuild::PutBack { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        all_files(&dir).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert!(all_files(&dir) == before, "every byte is back");
}

#[test]
fn a_rebuild_keeps_older_snapshots_and_removes_only_its_own() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    pristine(&dir);
    // An older snapshot sled left behind (it deletes them when it writes a new one).
    std::fs::write(dir.join("snap.0000000000000001"), b"older").unwrap();
    apply(&dir, &Damage::Flip("snap", 777));
    apply(&dir, &Damage::Zero("db", 0.0, 4096));
    let before = all_files(&dir);
    let outcome = Store::rebuild_snapshot(&dir, std::time::Duration::from_secs(5)).unwrap();
    assert!(
        matches!(outcome, revolve::SnapshotRebuild::PutBack { .. }),
        "{outcome:?}"
    );
    assert!(
        all_files(&dir) == before,
        "every file is back, the older snapshot included"
    );
}

#[test]
fn a_rebuild_of_a_store_open_elsewhere_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    pristine(&dir);
    let store = Store::open(&dir).unwrap();
    let before = all_files(&dir);
    let error = Store::rebuild_snapshot(&dir, std::time::Duration::from_millis(50)).unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    drop(store);
    assert!(all_files(&dir) == before);
    let entries = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        entries,
        before.len() - before.keys().filter(|k| k.starts_with("blobs/")).count() + 1,
        "no directory of copies is left"
    );
}

#[test]
fn a_rebuild_removes_the_files_its_reopen_created() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    // A snapshot without its log: the reopen creates `db`, `conf` and `blobs`.
    std::fs::write(dir.join("snap.0000000000100000"), b"a snapshot").unwrap();
    let outcome = Store::rebuild_snapshot(&dir, std::time::Duration::from_secs(5)).unwrap();
    assert!(
        matches!(outcome, revolve::SnapshotRebuild::PutBack { .. }),
        "{outcome:?}"
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["snap.0000000000100000"]);
}

fn revolve(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_revolve"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_cli_names_damaged_documents_and_exits_3() {
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    pristine(&template);
    // The first damaged page that leaves the store opening (where it lands depends on sled's
    // layout, so look for one).
    let mut checked = 0;
    for (i, damage) in cases().into_iter().enumerate() {
        if !matches!(damage, Damage::Flip("db", _) | Damage::Zero("db", ..)) {
            continue;
        }
        let dir = root.path().join(format!("case{i}"));
        copy_dir(&template, &dir);
        apply(&dir, &damage);
        let opens = Store::open(&dir).is_ok();
        let verify = revolve(&["verify".as_ref(), dir.as_os_str()]);
        let stdout = String::from_utf8_lossy(&verify.stdout);
        let stderr = String::from_utf8_lossy(&verify.stderr);
        if opens && stdout.contains("cannot be read") {
            if checked == 0 {
                println!("{stdout}");
            }
            assert_eq!(verify.status.code(), Some(3), "{stdout}{stderr}");
            assert!(stdout.contains("`notes` `n0"), "{stdout}");
            let stats = revolve(&["stats".as_ref(), dir.as_os_str()]);
            assert!(
                String::from_utf8_lossy(&stats.stdout).contains("not verified"),
                "{stats:?}"
            );
            checked += 1;
            if checked == 3 {
                break;
            }
        } else if !opens {
            assert_eq!(verify.status.code(), Some(3), "{stdout}{stderr}");
            assert!(stderr.contains("storage corrupt"), "{stderr}");
        }
    }
    assert!(checked > 0, "no damaged page left the store opening");
}

#[test]
fn backups_pipe_through_standard_streams_and_fifos_and_failed_imports_leave_nothing() {
    use std::io::Write as _;
    use std::process::Stdio;

    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let expected = pristine(&dir);

    // `export … -` writes the backup to standard output; `import - …` reads it back.
    let exported = revolve(&["export".as_ref(), dir.as_os_str(), "-".as_ref()]);
    assert_eq!(exported.status.code(), Some(0), "{exported:?}");
    assert!(exported.stdout.starts_with(b"REVOLVE\0"));
    let target = root.path().join("piped");
    let mut import = std::process::Command::new(env!("CARGO_BIN_EXE_revolve"))
        .args(["import".as_ref(), "-".as_ref(), target.as_os_str()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(&exported.stdout)
        .unwrap();
    let output = import.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(read_all(&target), expected);

    // A FIFO is written through, not replaced by a regular file.
    let fifo = root.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // The reader's open blocks until a writer opens the FIFO: bounded, so that an export that
    // replaced the FIFO fails the test rather than hanging it.
    let (sender, received) = std::sync::mpsc::channel();
    {
        let fifo = fifo.clone();
        std::thread::spawn(move || sender.send(std::fs::read(fifo).unwrap()));
    }
    let through = revolve(&["export".as_ref(), dir.as_os_str(), fifo.as_os_str()]);
    assert_eq!(through.status.code(), Some(0), "{through:?}");
    let read = received
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the export wrote through the FIFO");
    assert_eq!(read, exported.stdout);
    {
        use std::os::unix::fs::FileTypeExt as _;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    // A damaged backup leaves no store directory and no staging directory behind.
    let mut damaged = exported.stdout.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let file = root.path().join("damaged.backup");
    std::fs::write(&file, &damaged).unwrap();
    let failed_target = root.path().join("failed");
    let failed = revolve(&[
        "import".as_ref(),
        file.as_os_str(),
        failed_target.as_os_str(),
    ]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("failed"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_cli_salvages_a_damaged_store_and_imports_it_only_when_told() {
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    pristine(&template);
    // The first damaged page that leaves the store opening but not wholly readable.
    for (i, damage) in cases().into_iter().enumerate() {
        if !matches!(damage, Damage::Flip("db", _)) {
            continue;
        }
        let dir = root.path().join(format!("case{i}"));
        copy_dir(&template, &dir);
        apply(&dir, &damage);
        if Store::open(&dir).is_err() {
            continue;
        }
        let file = root.path().join(format!("case{i}.backup"));
        let salvaged = revolve(&[
            "export".as_ref(),
            dir.as_os_str(),
            file.as_os_str(),
            "--salvage".as_ref(),
        ]);
        let stdout = String::from_utf8_lossy(&salvaged.stdout);
        if salvaged.status.code() != Some(3) {
            assert_eq!(salvaged.status.code(), Some(0), "{salvaged:?}");
            continue;
        }
        assert!(
            stdout.contains("salvaged") && stdout.contains("could not read:"),
            "{stdout}"
        );
        let target = root.path().join(format!("case{i}.restored"));
        let refused = revolve(&["import".as_ref(), file.as_os_str(), target.as_os_str()]);
        assert_eq!(refused.status.code(), Some(1), "{refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("--accept-salvaged"),
            "{refused:?}"
        );
        assert!(!target.exists());
        let accepted = revolve(&[
            "import".as_ref(),
            file.as_os_str(),
            target.as_os_str(),
            "--accept-salvaged".as_ref(),
        ]);
        let text = String::from_utf8_lossy(&accepted.stdout);
        assert!(
            matches!(accepted.status.code(), Some(0 | 3)),
            "{accepted:?}"
        );
        assert!(text.contains("salvaged backup: "), "{text}");
        println!("{stdout}{text}");
        return;
    }
    panic!("no damaged page left the store opening with something unreadable");
}
