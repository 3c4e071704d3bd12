//! The `revolve` binary and the typed `revolve::cli` helper on stores made here: each command's
//! text and `--json` output, exit codes, verify on good and damaged stores and `--repair`, export →
//! import → verify round trips equal byte for byte, a locked database, and `migrate` commands
//! parsed from argument vectors in process.

#[path = "common/postgres.rs"]
mod pg_server;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clap::Parser;
use revolve::cli::{MigrateArgs, Migrations, Status};
use revolve::{DocId, Revision, Schema, StepError, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tempfile::TempDir;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 1)]
struct Note {
    text: String,
    tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tasks", version = 1)]
struct TaskV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tasks", version = 2, from = TaskV1, step = task_v1_to_v2)]
struct TaskV2 {
    title: String,
    done: bool,
}

/// Titles starting with `fail` do not migrate.
fn task_v1_to_v2(old: TaskV1) -> Result<TaskV2, StepError> {
    if old.title.starts_with("fail") {
        return Err(StepError::new("cannot migrate a failing task"));
    }
    Ok(TaskV2 {
        title: old.title,
        done: false,
    })
}

fn note(text: &str) -> Note {
    Note {
        text: text.to_owned(),
        tags: vec!["x".to_owned()],
    }
}

struct Fixture {
    dir: TempDir,
    /// The first was updated, the second removed.
    notes: Vec<DocId>,
    /// `ok 1`, `ok 2`, `fail 3`.
    tasks: Vec<DocId>,
}

impl Fixture {
    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

/// Notes and tasks at version 1, closed again.
fn unmigrated() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let notes = store.collection::<Note>().unwrap();
    let note_ids = notes
        .insert_many(&[note("first"), note("second"), note("third")])
        .unwrap();
    notes.update(&note_ids[0], &note("first edited")).unwrap();
    notes.remove(&note_ids[1]).unwrap();
    let tasks = store.collection::<TaskV1>().unwrap();
    let task_ids = ["ok 1", "ok 2", "fail 3"]
        .iter()
        .map(|title| {
            tasks
                .insert(&TaskV1 {
                    title: (*title).to_owned(),
                })
                .unwrap()
        })
        .collect();
    Fixture {
        dir,
        notes: note_ids,
        tasks: task_ids,
    }
}

/// As [`unmigrated`], then the tasks migrated to version 2 by one run (`fail 3` fails).
fn fixture() -> Fixture {
    let fixture = unmigrated();
    let store = open(fixture.dir.path());
    let report = store
        .collection::<TaskV2>()
        .unwrap()
        .migrate()
        .execute()
        .unwrap();
    assert_eq!((report.migrated, report.failed), (2, 1));
    fixture
}

/// Opens a store, waiting for a closed one's lock to be released.
fn open(path: &Path) -> Store {
    Store::builder()
        .path(path)
        .lock_timeout(Duration::from_secs(10))
        .open()
        .unwrap()
}

/// The database under the store, opened with sled itself to damage it on purpose.
fn raw_db(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(error) if Instant::now() < deadline => {
                assert!(error.to_string().contains("lock"), "{error}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("{error}"),
        }
    }
}

/// Every non-empty tree's keys and values.
/// Tree name → its keys and values, in order.
type Trees = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

fn dump(path: &Path) -> Trees {
    let db = raw_db(path);
    db.tree_names()
        .into_iter()
        .map(|name| {
            let entries: Vec<_> = db
                .open_tree(&name)
                .unwrap()
                .iter()
                .map(|entry| {
                    let (key, value) = entry.unwrap();
                    (key.to_vec(), value.to_vec())
                })
                .collect();
            (name.to_vec(), entries)
        })
        .filter(|(_, entries)| !entries.is_empty())
        .collect()
}

fn revision_key(id: &str, revision: u64) -> Vec<u8> {
    let mut key = vec![b'r'];
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

/// Runs the binary; the store closed a moment ago may still be locked, so it waits for it.
fn revolve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_revolve"))
        .args(["--lock-timeout", "10"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(output)))
}

#[track_caller]
fn assert_code(output: &Output, status: Status) {
    assert_eq!(
        output.status.code(),
        Some(i32::from(status.code())),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

#[test]
fn stats_text_and_json() {
    let fixture = fixture();
    let text = revolve(&["stats", fixture.path()]);
    assert_code(&text, Status::Success);
    let text = stdout(&text);
    assert!(text.contains(": 2 collections, "), "{text}");
    assert!(
        text.contains(
            "notes: 2 documents, 1 removed (newest version 1)\n  version 1: 2 documents\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "tasks: 3 documents, 0 removed (newest version 2)\n  version 1: 1 documents, 1 failed to migrate\n  version 2: 2 documents\n"
        ),
        "{text}"
    );

    let output = revolve(&["stats", "--json", fixture.path()]);
    assert_code(&output, Status::Success);
    let stats = json(&output);
    assert!(stats["size_on_disk"].as_u64().unwrap() > 0);
    let collections = stats["collections"].as_array().unwrap();
    assert_eq!(collections.len(), 2);
    assert_eq!(collections[0]["name"], "notes");
    assert_eq!(collections[0]["live"], serde_json::json!({"1": 2}));
    assert_eq!(collections[0]["removed"], 1);
    assert_eq!(collections[1]["name"], "tasks");
    assert_eq!(collections[1]["newest_version"], 2);
    assert_eq!(collections[1]["live"], serde_json::json!({"1": 1, "2": 2}));
    assert_eq!(collections[1]["failed"], serde_json::json!({"1": 1}));
}

#[test]
fn history_shows_every_revision_with_its_payload_as_json() {
    let fixture = fixture();
    let edited = fixture.notes[0].as_str();
    let text = revolve(&["history", fixture.path(), "notes", edited]);
    assert_code(&text, Status::Success);
    let text = stdout(&text);
    assert!(
        text.starts_with(&format!("notes {edited}: 2 revisions\nrevision 1  ")),
        "{text}"
    );
    assert!(text.contains("  write  version 1\n"), "{text}");
    assert!(
        text.contains("  {\"tags\":[\"x\"],\"text\":\"first\"}\n"),
        "{text}"
    );
    assert!(
        text.contains("  {\"tags\":[\"x\"],\"text\":\"first edited\"}\n"),
        "{text}"
    );

    let output = revolve(&["history", "--json", fixture.path(), "notes", edited]);
    assert_code(&output, Status::Success);
    let history = json(&output);
    assert_eq!(history["collection"], "notes");
    assert_eq!(history["id"], edited);
    let revisions = history["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2);
    assert_eq!(revisions[0]["revision"], 1);
    assert_eq!(revisions[0]["parent"], Value::Null);
    assert_eq!(revisions[1]["parent"], 1);
    assert_eq!(revisions[1]["version"], 1);
    assert_eq!(revisions[1]["origin"], serde_json::json!({"kind": "write"}));
    assert_eq!(
        revisions[1]["payload"],
        serde_json::json!({"text": "first edited", "tags": ["x"]})
    );
    assert!(revisions[1]["timestamp"].as_str().unwrap().ends_with('Z'));

    // A removal has no payload.
    let output = revolve(&[
        "history",
        "--json",
        fixture.path(),
        "notes",
        &fixture.notes[1],
    ]);
    let removed = &json(&output)["revisions"][1];
    assert_eq!(removed["removed"], true);
    assert_eq!(removed["version"], Value::Null);
    assert_eq!(removed["payload"], Value::Null);
    let text = stdout(&revolve(&[
        "history",
        fixture.path(),
        "notes",
        &fixture.notes[1],
    ]));
    assert!(text.contains("  write  removed\n"), "{text}");

    // A migrated document: its old revision stays, the new one names the run.
    let output = revolve(&[
        "history",
        "--json",
        fixture.path(),
        "tasks",
        &fixture.tasks[0],
    ]);
    let revisions = json(&output)["revisions"].as_array().unwrap().clone();
    assert_eq!(
        revisions[0]["payload"],
        serde_json::json!({"title": "ok 1"})
    );
    assert_eq!(revisions[1]["origin"]["kind"], "migration");
    assert_eq!(
        revisions[1]["payload"],
        serde_json::json!({"title": "ok 1", "done": false})
    );

    let missing = revolve(&["history", fixture.path(), "notes", "nope"]);
    assert_code(&missing, Status::Error);
    assert!(
        stderr(&missing).contains("no document `nope` in `notes`"),
        "{}",
        stderr(&missing)
    );
    let unknown = revolve(&["history", fixture.path(), "nothing", "x"]);
    assert_code(&unknown, Status::Error);
    assert!(
        stderr(&unknown).contains("no collection `nothing`"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn runs_lists_the_ledger() {
    let fixture = fixture();
    let text = revolve(&["runs", fixture.path()]);
    assert_code(&text, Status::Success);
    let text = stdout(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("RUN") && lines[0].contains("STATE"),
        "{text}"
    );
    for column in [
        "tasks",
        "migration",
        "done with failures",
        "1->2",
        "       3 ",
    ] {
        assert!(lines[1].contains(column), "{column}: {text}");
    }

    let output = revolve(&["runs", "--json", fixture.path()]);
    assert_code(&output, Status::Success);
    let runs = json(&output)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["collection"], "tasks");
    assert_eq!(runs[0]["state"], "done_with_failures");
    assert_eq!(runs[0]["kind"], serde_json::json!({"kind": "migration"}));
    assert_eq!(
        (runs[0]["migrated"].as_u64(), runs[0]["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(lines[1].contains(&runs[0]["id"].to_string()), "{text}");

    let notes = revolve(&["runs", fixture.path(), "notes"]);
    assert_code(&notes, Status::Success);
    assert_eq!(stdout(&notes), "no runs\n");
    let notes = revolve(&["runs", "--json", fixture.path(), "notes"]);
    assert_eq!(json(&notes), serde_json::json!({"runs": []}));
}

#[test]
fn verify_passes_a_good_store() {
    let fixture = fixture();
    let text = revolve(&["verify", fixture.path()]);
    assert_code(&text, Status::Success);
    assert_eq!(
        stdout(&text),
        "checked 2 collections, 6 documents, 10 revisions: no problems\n"
    );
    let output = revolve(&["verify", "--json", fixture.path()]);
    assert_code(&output, Status::Success);
    let verify = json(&output);
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["report"]["problem_count"], 0);
    assert_eq!(verify["report"]["documents"], 6);
    assert_eq!(verify["repair"], Value::Null);
}

#[test]
fn verify_finds_a_broken_counter_and_repair_fixes_it() {
    let fixture = fixture();
    {
        let db = raw_db(fixture.dir.path());
        let live_v1 = [b'c', b'l', 0, 0, 0, 1];
        db.open_tree("c/notes")
            .unwrap()
            .insert(live_v1, &9u64.to_be_bytes()[..])
            .unwrap();
        db.flush().unwrap();
    }
    let broken = revolve(&["verify", fixture.path()]);
    assert_code(&broken, Status::Problems);
    let text = stdout(&broken);
    assert!(
        text.contains(": 1 problem\n  `notes`: the counter of live documents at version 1 is 9, but the heads say 2\n"),
        "{text}"
    );
    let output = revolve(&["verify", "--json", fixture.path()]);
    assert_code(&output, Status::Problems);
    let verify = json(&output);
    assert_eq!(verify["ok"], false);
    assert_eq!(
        verify["report"]["problems"][0],
        serde_json::json!({
            "kind": "counter_mismatch",
            "collection": "notes",
            "counter": {"class": "live", "version": 1},
            "stored": 9,
            "actual": 2,
        })
    );
    // The counters are what `stats` reports: wrong until repaired.
    let stats = json(&revolve(&["stats", "--json", fixture.path()]));
    assert_eq!(stats["collections"][0]["live"]["1"], 9);

    let repaired = revolve(&["verify", "--repair", fixture.path()]);
    assert_code(&repaired, Status::Success);
    let text = stdout(&repaired);
    assert!(
        text.contains("repair: 1 counters rewritten, 0 malformed counters and 0 stale failure records removed\n  `notes`: live documents at version 1: 9 -> 2\nafter repair: no problems\n"),
        "{text}"
    );
    let again = revolve(&["verify", "--json", fixture.path()]);
    assert_code(&again, Status::Success);
    let stats = json(&revolve(&["stats", "--json", fixture.path()]));
    assert_eq!(stats["collections"][0]["live"]["1"], 2);
}

#[test]
fn verify_finds_a_missing_revision_that_repair_cannot_fix() {
    let fixture = fixture();
    let edited = fixture.notes[0].to_string();
    {
        let db = raw_db(fixture.dir.path());
        db.open_tree("c/notes")
            .unwrap()
            .remove(revision_key(&edited, 1))
            .unwrap()
            .unwrap();
        db.flush().unwrap();
    }
    let broken = revolve(&["verify", fixture.path()]);
    assert_code(&broken, Status::Problems);
    assert!(
        stdout(&broken).contains(&format!("`notes` `{edited}`: revision 1 is missing")),
        "{}",
        stdout(&broken)
    );
    let output = revolve(&["verify", "--repair", "--json", fixture.path()]);
    assert_code(&output, Status::Problems);
    let verify = json(&output);
    assert_eq!(verify["ok"], false);
    assert_eq!(verify["repair"]["counters"], serde_json::json!([]));
    assert_eq!(verify["after_repair"]["problem_count"], 1);
    assert_eq!(
        verify["after_repair"]["problems"][0]["kind"],
        "missing_revisions"
    );
}

#[cfg(unix)]
#[test]
fn export_keeps_a_symbolic_link_and_never_truncates_a_partial_file() {
    let fixture = fixture();
    let backups = tempfile::tempdir().unwrap();
    let real = backups.path().join("real.backup");
    std::fs::write(&real, b"old").unwrap();
    let link = backups.path().join("link.backup");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let exported = revolve(&["export", fixture.path(), link.to_str().unwrap()]);
    assert_code(&exported, Status::Success);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read(&real).unwrap().starts_with(b"REVOLVE\0"));
    assert!(!backups.path().join("link.backup.partial").exists());
    assert!(!backups.path().join("real.backup.partial").exists());

    // A `.partial` left behind (or being written by another export) is refused, not truncated.
    let other = backups.path().join("other.backup");
    let partial = backups.path().join("other.backup.partial");
    std::fs::write(&partial, b"someone else's").unwrap();
    let refused = revolve(&["export", fixture.path(), other.to_str().unwrap()]);
    assert_code(&refused, Status::Error);
    assert!(
        stderr(&refused).contains("other.backup.partial"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read(&partial).unwrap(), b"someone else's");
    assert!(!other.exists());
}

#[test]
fn export_import_verify_round_trip_is_byte_for_byte() {
    let fixture = fixture();
    let backups = tempfile::tempdir().unwrap();
    let first = backups.path().join("first.revolve-backup");
    let second = backups.path().join("second.revolve-backup");
    let target = tempfile::tempdir().unwrap();
    let target_path = target.path().join("restored");
    let target_str = target_path.to_str().unwrap();

    let exported = revolve(&["export", "--json", fixture.path(), first.to_str().unwrap()]);
    assert_code(&exported, Status::Success);
    let exported = json(&exported);
    // Six heads, ten revisions, a failure record and a ledger run, in two collections.
    assert_eq!(exported["entries"].as_u64(), Some(18));
    assert_eq!(exported["trees"].as_u64(), Some(2));
    assert_eq!(exported["format"].as_u64(), Some(2));
    assert_eq!(
        exported["bytes"].as_u64(),
        Some(std::fs::metadata(&first).unwrap().len())
    );
    assert!(!backups.path().join("first.revolve-backup.partial").exists());

    let imported = revolve(&["import", first.to_str().unwrap(), target_str]);
    assert_code(&imported, Status::Success);
    assert!(
        stdout(&imported).starts_with(&format!(
            "imported {} records of {} collections into {target_str}",
            exported["entries"], exported["trees"]
        )),
        "{}",
        stdout(&imported)
    );
    assert_code(&revolve(&["verify", target_str]), Status::Success);

    // Every key of every tree, byte for byte, but the migration cursors a backup leaves out
    // (counters are recomputed, to the same values).
    let without_cursors = |mut trees: Trees| {
        for (name, entries) in &mut trees {
            if name.starts_with(b"c/") {
                entries.retain(|(key, _)| key.first() != Some(&b'm'));
            }
        }
        trees
    };
    assert_eq!(
        without_cursors(dump(fixture.dir.path())),
        without_cursors(dump(&target_path))
    );

    // Through the public API: every raw revision, every history, the ledger.
    {
        let source = open(fixture.dir.path());
        let restored = open(&target_path);
        assert_eq!(
            source.collection_names().unwrap(),
            restored.collection_names().unwrap()
        );
        for (collection, ids) in [("notes", &fixture.notes), ("tasks", &fixture.tasks)] {
            let a = source.raw_collection(collection).unwrap();
            let b = restored.raw_collection(collection).unwrap();
            assert_eq!(a.count_by_version().unwrap(), b.count_by_version().unwrap());
            assert_eq!(a.removed_count().unwrap(), b.removed_count().unwrap());
            assert_eq!(a.runs().unwrap(), b.runs().unwrap());
            for id in ids {
                let history = a.history(id).unwrap();
                assert!(!history.is_empty());
                assert_eq!(history, b.history(id).unwrap());
                for info in &history {
                    let revision = info.revision;
                    assert_eq!(
                        a.raw_revision(id, revision).unwrap(),
                        b.raw_revision(id, revision).unwrap()
                    );
                }
                let past_the_end = Revision::new(history.len() as u64 + 1).unwrap();
                assert_eq!(b.raw_revision(id, past_the_end).unwrap(), None);
            }
        }
        // The restored store works: its typed collections read.
        let notes = restored.collection::<Note>().unwrap();
        assert_eq!(
            notes.get(&fixture.notes[0]).unwrap().unwrap().data,
            note("first edited")
        );
    }

    // And the restored store exports to the same file.
    let again = revolve(&["export", target_str, second.to_str().unwrap()]);
    assert_code(&again, Status::Success);
    assert!(stdout(&again).contains(exported["checksum"].as_str().unwrap()));
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
}

#[test]
fn import_refuses_a_store_with_data_and_a_damaged_backup() {
    let fixture = fixture();
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("backup");
    assert_code(
        &revolve(&["export", fixture.path(), file.to_str().unwrap()]),
        Status::Success,
    );

    let into_itself = revolve(&["import", file.to_str().unwrap(), fixture.path()]);
    assert_code(&into_itself, Status::Error);
    assert!(
        stderr(&into_itself).contains("is not empty; import only into a new store"),
        "{}",
        stderr(&into_itself)
    );

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    let damaged = backups.path().join("damaged");
    std::fs::write(&damaged, &bytes).unwrap();
    let target = backups.path().join("target");
    let refused = revolve(&[
        "import",
        damaged.to_str().unwrap(),
        target.to_str().unwrap(),
    ]);
    assert_code(&refused, Status::Error);
    assert!(stderr(&refused).contains("backup"), "{}", stderr(&refused));
    // The target was left empty: the intact backup imports into it.
    assert_code(
        &revolve(&["import", file.to_str().unwrap(), target.to_str().unwrap()]),
        Status::Success,
    );
    assert_code(
        &revolve(&["verify", target.to_str().unwrap()]),
        Status::Success,
    );

    // A directory with other files in it is not taken for a new store.
    let refused = revolve(&[
        "import",
        file.to_str().unwrap(),
        backups.path().to_str().unwrap(),
    ]);
    assert_code(&refused, Status::Error);
    assert!(
        stderr(&refused).contains("is a directory with other files"),
        "{}",
        stderr(&refused)
    );
    assert!(!backups.path().join("db").exists());

    let not_a_backup = backups.path().join("notes.txt");
    std::fs::write(&not_a_backup, "hello").unwrap();
    let other = backups.path().join("other");
    let refused = revolve(&[
        "import",
        not_a_backup.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert_code(&refused, Status::Error);
    assert!(
        stderr(&refused).contains("not a revolve backup"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_locked_database_gives_a_clear_message_and_exit_code_4() {
    let fixture = fixture();
    let _held = open(fixture.dir.path());
    for args in [
        vec!["stats", fixture.path()],
        vec!["verify", "--json", fixture.path()],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_revolve"))
            .args(["--lock-timeout", "0.2"])
            .args(&args)
            .output()
            .unwrap();
        assert_code(&output, Status::Locked);
        assert_eq!(
            stderr(&output),
            format!(
                "revolve: database at {} is locked by another process; close it there first\n",
                fixture.path()
            )
        );
        assert!(output.stdout.is_empty());
    }
    // Import into a database another process holds.
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("backup");
    {
        let empty = Store::temporary().unwrap();
        let _ = empty
            .export(std::fs::File::create(&file).unwrap(), |_| {})
            .unwrap();
    }
    let import = Command::new(env!("CARGO_BIN_EXE_revolve"))
        .args(["import", file.to_str().unwrap(), fixture.path()])
        .output()
        .unwrap();
    assert_code(&import, Status::Locked);
    assert!(stderr(&import).contains("is locked by another process"));
}

#[test]
fn usage_errors_and_missing_stores() {
    assert_code(&revolve(&[]), Status::Usage);
    assert_code(&revolve(&["stats"]), Status::Usage);
    let help = revolve(&["--help"]);
    assert_code(&help, Status::Success);
    assert!(stdout(&help).contains("Exit codes:"), "{}", stdout(&help));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let output = revolve(&["stats", missing.to_str().unwrap()]);
    assert_code(&output, Status::Error);
    assert!(stderr(&output).contains("no revolve store at"));
    assert!(!missing.exists(), "stats must not create a store");
}

// ---- The typed helper, in process.

fn migrate(migrations: &Migrations, args: &[&str]) -> (Status, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = ["app", "migrate"].iter().chain(args);
    let status = migrations.run_with(args, &mut out, &mut err);
    (
        status,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

// One store taken through every command in turn, so each sees the previous one's effect.
#[allow(clippy::too_many_lines)]
#[test]
fn typed_migrate_commands_status_test_execute_runs_revert() {
    let fixture = unmigrated();
    let store = open(fixture.dir.path());
    let migrations = Migrations::new(&store)
        .collection::<TaskV2>()
        .collection::<Note>();

    let (status, out, err) = migrate(&migrations, &["status"]);
    assert_eq!(status, Status::Success, "{err}");
    assert!(
        out.starts_with(
            "tasks: latest version 2\n  version 1: 3 documents (3 to migrate, 0 failed)\n  removed: 0\n  pending: 3 to migrate, 0 failed\n  no runs\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("notes: latest version 1\n  version 1: 2 documents\n  removed: 1\n"),
        "{out}"
    );
    let (_, out, _) = migrate(&migrations, &["status", "tasks", "--json"]);
    let status_json: Value = serde_json::from_str(&out).unwrap();
    let tasks = &status_json["collections"][0];
    assert_eq!(tasks["collection"], "tasks");
    assert_eq!(tasks["latest_version"], 2);
    assert_eq!(tasks["migratable"], 3);
    assert_eq!(status_json["collections"].as_array().unwrap().len(), 1);

    // A dry run of all three: one would fail, so the status says problems; nothing is written.
    let (status, out, _) = migrate(&migrations, &["test", "tasks"]);
    assert_eq!(status, Status::Problems);
    assert!(
        out.contains("3 scanned, 2 would migrate, 1 would fail, 0 skipped, 0 remaining"),
        "{out}"
    );
    assert!(out.contains("cannot migrate a failing task"), "{out}");
    // The first document only: nothing fails.
    let (status, out, _) = migrate(&migrations, &["test", "tasks", "--limit", "1", "--json"]);
    assert_eq!(status, Status::Success);
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dry["collections"][0]["dry_run"], true);
    assert_eq!(dry["collections"][0]["migrated"], 1);

    let (status, out, _) = migrate(&migrations, &["execute", "tasks", "--limit", "1", "--json"]);
    assert_eq!(status, Status::Success);
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first["collections"][0]["collection"], "tasks");
    assert_eq!(first["collections"][0]["migrated"], 1);
    assert_eq!(first["collections"][0]["remaining"], 2);

    let (status, out, _) = migrate(&migrations, &["execute", "--threads", "2"]);
    assert_eq!(status, Status::Problems);
    assert!(
        out.contains("2 scanned, 1 migrated, 1 failed, 0 skipped, 0 remaining"),
        "{out}"
    );
    assert!(
        out.contains("notes: nothing to migrate to version 1"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  failed {} revision 1 at version 1 (step): step from version 1 to 2 of `tasks` failed: cannot migrate a failing task",
            fixture.tasks[2]
        )),
        "{out}"
    );

    let (status, out, _) = migrate(&migrations, &["runs"]);
    assert_eq!(status, Status::Success);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.contains("dry run") && out.contains("migration"),
        "{out}"
    );
    let (_, out, _) = migrate(&migrations, &["runs", "--json"]);
    let runs: Value = serde_json::from_str(&out).unwrap();
    let last_run = runs["runs"][0]["id"].as_u64().unwrap();
    assert_eq!(runs["runs"][0]["state"], "done_with_failures");

    let (status, out, err) = migrate(&migrations, &["revert", &last_run.to_string()]);
    assert_eq!(status, Status::Success, "{err}");
    assert!(
        out.starts_with(&format!("tasks: reverted run {last_run} (revert ")),
        "{out}"
    );
    assert!(
        out.contains(": 1 documents restored, 0 changed since"),
        "{out}"
    );
    let tasks = store.collection::<TaskV2>().unwrap();
    assert_eq!(
        tasks.count_by_version().unwrap(),
        BTreeMap::from([(1, 2), (2, 1)])
    );

    let (status, _, err) = migrate(&migrations, &["revert", "999"]);
    assert_eq!(status, Status::Error);
    assert_eq!(
        err,
        "error: no run 999 in the ledger of any registered collection\n"
    );
    let (status, _, err) = migrate(&migrations, &["status", "nope"]);
    assert_eq!(status, Status::Error);
    assert_eq!(
        err,
        "error: no collection `nope` is registered (registered: tasks, notes)\n"
    );
    let (status, _, err) = migrate(&migrations, &["explode"]);
    assert_eq!(status, Status::Usage);
    assert!(err.contains("explode"), "{err}");
    let (status, out, _) = migrate(&migrations, &["--help"]);
    assert_eq!(status, Status::Success);
    assert!(out.contains("execute") && out.contains("revert"), "{out}");

    let (status, _, err) = migrate(&Migrations::new(&store), &["status"]);
    assert_eq!(status, Status::Error);
    assert!(err.contains("no collection is registered"), "{err}");
}

/// An application that has its own clap parser embeds `MigrateArgs`.
#[derive(Debug, Parser)]
struct App {
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AppCommand {
    Serve,
    Migrate(MigrateArgs),
}

#[test]
fn migrate_args_embed_in_an_applications_parser() {
    let fixture = unmigrated();
    let store = open(fixture.dir.path());
    let app = App::try_parse_from(["app", "migrate", "execute", "tasks", "--json"]).unwrap();
    let AppCommand::Migrate(args) = app.command else {
        panic!("{app:?}")
    };
    let mut out = Vec::new();
    let status = Migrations::new(&store)
        .collection::<TaskV2>()
        .execute(&args, &mut out)
        .unwrap();
    assert_eq!(status, Status::Problems);
    let report: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["collections"][0]["migrated"], 2);
    assert!(matches!(
        App::try_parse_from(["app", "serve"]).unwrap().command,
        AppCommand::Serve
    ));
}

#[test]
fn statuses_are_exit_codes() {
    let codes: Vec<u8> = [
        Status::Success,
        Status::Error,
        Status::Usage,
        Status::Problems,
        Status::Locked,
    ]
    .iter()
    .map(|status| status.code())
    .collect();
    assert_eq!(codes, [0, 1, 2, 3, 4]);
    assert_eq!(
        std::process::ExitCode::from(Status::Locked),
        std::process::ExitCode::from(4)
    );
}

// ---- The failure set.

/// Seven tasks at version 1, five of which the step refuses, migrated once; the refused ids in
/// id order.
fn failing() -> (TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut refused = Vec::new();
    {
        let store = open(dir.path());
        let tasks = store.collection::<TaskV1>().unwrap();
        for title in [
            "ok 1", "fail 2", "fail 3", "ok 4", "fail 5", "fail 6", "fail 7",
        ] {
            let id = tasks
                .insert(&TaskV1 {
                    title: title.to_owned(),
                })
                .unwrap();
            if title.starts_with("fail") {
                refused.push(id.to_string());
            }
        }
    }
    {
        let store = open(dir.path());
        let report = store
            .collection::<TaskV2>()
            .unwrap()
            .migrate()
            .execute()
            .unwrap();
        assert_eq!((report.migrated, report.failed), (2, 5));
    }
    refused.sort();
    (dir, refused)
}

fn ids(listing: &Value) -> Vec<String> {
    listing["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failure| failure["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn failures_lists_the_failure_set_page_by_page() {
    let (dir, refused) = failing();
    let path = dir.path().to_str().unwrap();

    let output = revolve(&["failures", path, "tasks"]);
    assert_code(&output, Status::Success);
    let text = stdout(&output);
    assert!(text.starts_with("tasks: 5 failed documents\n"), "{text}");
    for id in &refused {
        assert!(
            text.contains(&format!(
                "  {id} revision 1 at version 1 (step): step from version 1 to 2 of `tasks` failed: cannot migrate a failing task\n"
            )),
            "{text}"
        );
    }
    assert!(!text.contains("more follow"), "{text}");

    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["failures", path, "tasks", "--json", "--limit", "2"];
        if let Some(after) = &after {
            args.extend(["--after", after.as_str()]);
        }
        let output = revolve(&args);
        assert_code(&output, Status::Success);
        let page = json(&output);
        assert_eq!(page["collection"], "tasks");
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2);
        pages += 1;
        listed.extend(page_ids);
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), listed.last().map(String::as_str));
                after = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!((pages, &listed), (3, &refused));

    // A limit that is exactly the set's size: all of it, and no page follows.
    let output = revolve(&["failures", path, "tasks", "--json", "--limit", "5"]);
    let page = json(&output);
    assert_eq!((ids(&page), &page["next"]), (refused.clone(), &Value::Null));
    let output = revolve(&["failures", path, "tasks", "--limit", "5"]);
    let text = stdout(&output);
    assert!(text.starts_with("tasks: 5 failed documents\n"), "{text}");
    assert!(!text.contains("more follow"), "{text}");

    // A page says it is one, not the size of the set.
    let output = revolve(&["failures", path, "tasks", "--limit", "2"]);
    assert!(
        stdout(&output)
            .starts_with("tasks: 2 failed documents listed (a page of the failure set)\n"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).ends_with(&format!(
            "  more follow: list them with --after {}\n",
            refused[1]
        )),
        "{}",
        stdout(&output)
    );
    assert_code(
        &revolve(&["failures", path, "tasks", "--limit", "0"]),
        Status::Usage,
    );
    let output = revolve(&["failures", path, "notes"]);
    assert_code(&output, Status::Error);
}

#[test]
fn typed_failures_and_a_dry_run_that_retries_them() {
    let (dir, refused) = failing();
    let store = open(dir.path());
    let migrations = Migrations::new(&store).collection::<TaskV2>();

    let (status, out, err) = migrate(&migrations, &["failures", "--json"]);
    assert_eq!(status, Status::Success, "{err}");
    let all: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all["collections"][0]["collection"], "tasks");
    assert_eq!(ids(&all["collections"][0]), refused);
    assert_eq!(all["collections"][0]["next"], Value::Null);

    let (status, out, _) = migrate(
        &migrations,
        &["failures", "tasks", "--json", "--limit", "3"],
    );
    assert_eq!(status, Status::Success);
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ids(&first["collections"][0]), refused[..3]);
    let next = first["collections"][0]["next"].as_str().unwrap().to_owned();
    let (_, out, _) = migrate(&migrations, &["failures", "tasks", "--after", &next]);
    assert_eq!(
        out,
        format!(
            "tasks: 2 failed documents listed (a page of the failure set)\n  {} revision 1 at version 1 (step): step from version 1 to 2 of `tasks` failed: cannot migrate a failing task\n  {} revision 1 at version 1 (step): step from version 1 to 2 of `tasks` failed: cannot migrate a failing task\n",
            refused[3], refused[4]
        )
    );
    // `--after` names an id of one collection.
    let (status, _, _) = migrate(&migrations, &["failures", "--after", &next]);
    assert_eq!(status, Status::Usage);

    // A dry run skips known failures, unless asked to retry them, as `execute` does.
    let (status, out, err) = migrate(&migrations, &["test", "tasks", "--json"]);
    assert_eq!(status, Status::Success, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["collections"][0]["failed"], 0, "{report}");
    let (status, out, err) = migrate(&migrations, &["test", "tasks", "--retry-failed", "--json"]);
    assert_eq!(status, Status::Problems, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["collections"][0]["failed"], 5, "{report}");
    assert_eq!(report["collections"][0]["dry_run"], true, "{report}");
    // Nothing was written: the failure set is as it was.
    assert_eq!(
        store
            .collection::<TaskV2>()
            .unwrap()
            .failures_page(None, 10)
            .unwrap()
            .len(),
        5
    );
}

// ---- On PostgreSQL: every command takes a URL as well as a directory.

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::pg_server::postgres_url;

    /// A fresh schema of the test database, dropped at the end.
    struct Schema {
        url: String,
        name: String,
    }

    impl Schema {
        fn new(url: &str, tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let name = format!("t_{tag}_{}_{nanos}", std::process::id());
            client(url)
                .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
                .unwrap();
            Self {
                url: url.to_owned(),
                name,
            }
        }

        /// `url` (the test server's, perhaps with a password added) naming this schema as the
        /// search path, as a user of the command line would.
        fn url_from(&self, url: &str) -> String {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}options=-csearch_path%3D{}", self.name)
        }

        fn url(&self) -> String {
            self.url_from(&self.url)
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            if let Ok(mut client) = ::postgres::Client::connect(&self.url, ::postgres::NoTls) {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
            }
        }
    }

    fn client(url: &str) -> ::postgres::Client {
        ::postgres::Client::connect(url, ::postgres::NoTls).unwrap()
    }

    /// `url` with a password, and the password: the one it has, or one added where it names a
    /// user without one (a server that trusts the test's connections ignores it).
    fn with_password(url: &str) -> (String, Option<String>) {
        let Some((scheme, rest)) = url.split_once("://") else {
            return (url.to_owned(), None);
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let Some((user_info, _)) = authority.rsplit_once('@') else {
            return (url.to_owned(), None);
        };
        if let Some((_, password)) = user_info.split_once(':') {
            return (url.to_owned(), Some(password.to_owned()));
        }
        let secret = "hunter2-never-shown";
        let rest = rest.replacen(user_info, &format!("{user_info}:{secret}"), 1);
        (format!("{scheme}://{rest}"), Some(secret.to_owned()))
    }

    /// Notes and tasks as [`fixture`] makes them, in a schema of the test database.
    fn pg_fixture(url: &str) -> (Schema, Vec<DocId>) {
        let schema = Schema::new(url, "cli");
        let store = Store::builder()
            .url(url)
            .schema(schema.name.as_str())
            .open()
            .unwrap();
        let notes = store.collection::<Note>().unwrap();
        let ids = notes
            .insert_many(&[note("first"), note("second"), note("third")])
            .unwrap();
        notes.update(&ids[0], &note("first edited")).unwrap();
        notes.remove(&ids[1]).unwrap();
        let tasks = store.collection::<TaskV1>().unwrap();
        for title in ["ok 1", "ok 2", "fail 3"] {
            tasks
                .insert(&TaskV1 {
                    title: title.to_owned(),
                })
                .unwrap();
        }
        drop((tasks, store));
        // This year's program.
        let store = Store::builder()
            .url(url)
            .schema(schema.name.as_str())
            .open()
            .unwrap();
        let report = store
            .collection::<TaskV2>()
            .unwrap()
            .migrate()
            .execute()
            .unwrap();
        assert_eq!((report.migrated, report.failed), (2, 1));
        (schema, ids)
    }

    /// A store moves from PostgreSQL to a directory and back into another schema with the
    /// command line, and every export of it is the same file; `verify` checks it on the URL.
    #[test]
    fn a_store_moves_between_a_url_and_a_directory() {
        let Some(url) = postgres_url() else { return };
        let (schema, _) = pg_fixture(&url);
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.rvb");
        let second = dir.path().join("second.rvb");
        let third = dir.path().join("third.rvb");
        let copy = dir.path().join("copy");
        let first = first.to_str().unwrap();
        let second = second.to_str().unwrap();
        let third = third.to_str().unwrap();
        let copy = copy.to_str().unwrap();

        assert_code(&revolve(&["export", &schema.url(), first]), Status::Success);
        assert_code(&revolve(&["import", first, copy]), Status::Success);
        assert_code(&revolve(&["export", copy, second]), Status::Success);
        let target = Schema::new(&url, "cli_into");
        let imported = revolve(&["import", second, &target.url()]);
        assert_code(&imported, Status::Success);
        assert!(
            stdout(&imported).contains("records of 2 collections"),
            "{imported:?}"
        );
        assert_code(&revolve(&["verify", &target.url()]), Status::Success);
        assert_code(&revolve(&["export", &target.url(), third]), Status::Success);
        let bytes = |path: &str| std::fs::read(path).unwrap();
        assert_eq!(bytes(first), bytes(second));
        assert_eq!(bytes(first), bytes(third));

        // A store with data is refused, and left as it was.
        let again = revolve(&["import", first, &target.url()]);
        assert_code(&again, Status::Error);
        assert_code(&revolve(&["verify", &target.url()]), Status::Success);
    }

    #[test]
    fn stats_runs_and_history_take_a_url() {
        let Some(url) = postgres_url() else { return };
        let (schema, notes) = pg_fixture(&url);
        let (with_password, secret) = with_password(&url);
        let location = schema.url_from(&with_password);

        let text = revolve(&["stats", &location]);
        assert_code(&text, Status::Success);
        let text = stdout(&text);
        assert!(text.contains(": 2 collections, "), "{text}");
        assert!(
            text.contains(
                "tasks: 3 documents, 0 removed (newest version 2)\n  version 1: 1 documents, 1 failed to migrate\n  version 2: 2 documents\n"
            ),
            "{text}"
        );
        if let Some(secret) = &secret {
            assert!(!text.contains(secret.as_str()), "{text}");
            assert!(text.contains(":****@"), "{text}");
        }

        let runs = revolve(&["runs", "--json", &location]);
        assert_code(&runs, Status::Success);
        let runs = json(&runs)["runs"].as_array().unwrap().clone();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["collection"], "tasks");
        assert_eq!(runs[0]["state"], "done_with_failures");

        let first = &notes[0];
        let history = revolve(&["history", "--json", &location, "notes", first.as_str()]);
        assert_code(&history, Status::Success);
        let history = json(&history);
        assert_eq!(
            history["revisions"].as_array().unwrap().len(),
            2,
            "{history}"
        );
        assert_eq!(history["revisions"][1]["payload"]["text"], "first edited");
        assert_eq!(
            revolve(&["failures", "--json", &schema.url(), "tasks"])
                .status
                .code(),
            Some(0)
        );
    }

    /// Salvage and snapshot repairs read a directory's files: on a URL they fail clearly (exit
    /// 1), before connecting, and a URL's password is never printed, not even when the
    /// connection fails.
    #[test]
    fn directory_only_commands_refuse_a_url_and_passwords_stay_hidden() {
        let Some(url) = postgres_url() else { return };
        let (url, secret) = with_password(&url);
        let unreachable = "postgres://someone:hunter2-never-shown@127.0.0.1:1/nothing";
        for args in [
            vec!["repair", unreachable, "--rebuild-snapshot"],
            vec!["export", unreachable, "-", "--salvage"],
            vec!["import", "-", unreachable, "--accept-salvaged"],
        ] {
            let output = revolve(&args);
            assert_code(&output, Status::Error);
            let text = stderr(&output);
            assert!(text.contains("is not supported by PostgreSQL"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        let output = revolve(&["stats", unreachable]);
        assert_code(&output, Status::Error);
        let text = stderr(&output);
        assert!(
            text.contains("cannot open the store at postgres://someone:****@127.0.0.1:1/nothing"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        // A database that refuses a login: its error says who, never with what password.
        let output = revolve(&["stats", &format!("{url}?user=no_such_role_here")]);
        assert_code(&output, Status::Error);
        if let Some(secret) = secret {
            assert!(!stderr(&output).contains(&secret), "{}", stderr(&output));
        }
    }

    /// A login role of the test database with a password, dropped at the end.
    struct Role {
        admin: String,
        name: String,
    }

    impl Drop for Role {
        fn drop(&mut self) {
            if let Ok(mut client) = ::postgres::Client::connect(&self.admin, ::postgres::NoTls) {
                let _ = client.batch_execute(&format!(
                    "DROP OWNED BY \"{0}\"; DROP ROLE IF EXISTS \"{0}\"",
                    self.name
                ));
            }
        }
    }

    /// `url` with `user:password` as its user information.
    fn as_user(url: &str, user: &str, password: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let tail = match tail.split_once('?') {
            // Another user or password in the parameters would win over ours.
            Some((path, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|parameter| {
                        !parameter.starts_with("user=") && !parameter.starts_with("password=")
                    })
                    .collect();
                if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                }
            }
            None => tail.to_owned(),
        };
        format!("{scheme}://{user}:{password}@{host}{tail}")
    }

    /// `pg-layout --print` prints the layout's DDL. Run by an administrator in a schema, it makes
    /// tables a store accepts as its own, and a role that may not `CREATE` anything then uses
    /// the store (writes, a migration run) and the commands show it, its password hidden.
    #[test]
    fn pg_layout_prints_the_ddl_a_role_without_create_then_uses() {
        let output = revolve(&["pg-layout", "--print"]);
        assert_code(&output, Status::Success);
        assert_eq!(stdout(&output), revolve::POSTGRES_LAYOUT);
        assert!(revolve::POSTGRES_LAYOUT.contains("CREATE TABLE revolve_heads"));
        assert_code(&revolve(&["pg-layout"]), Status::Usage);

        let Some(url) = postgres_url() else { return };
        let schema = Schema::new(&url, "layout");
        let role = Role {
            admin: url.clone(),
            name: format!("t_nocreate_{}", schema.name),
        };
        let password = "layout-test-secret";
        let mut admin = client(&url);
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}';
                 SET search_path TO \"{schema}\";
                 {ddl}
                 GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\";
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\";
                 GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA \"{schema}\" TO \"{role}\";",
                role = role.name,
                schema = schema.name,
                ddl = stdout(&output),
            ))
            .unwrap();
        let may_create: bool = admin
            .query_one(
                "SELECT has_database_privilege($1, current_database(), 'CREATE')
                     OR has_schema_privilege($1, $2, 'CREATE')",
                &[&role.name, &schema.name],
            )
            .unwrap()
            .get(0);
        assert!(!may_create);
        drop(admin);

        let location = schema.url_from(&as_user(&url, &role.name, password));
        let store = Store::connect(&location).unwrap();
        let tasks = store.collection::<TaskV1>().unwrap();
        for title in ["ok 1", "fail 2"] {
            tasks
                .insert(&TaskV1 {
                    title: title.to_owned(),
                })
                .unwrap();
        }
        drop((tasks, store));
        let store = Store::connect(&location).unwrap();
        let report = store
            .collection::<TaskV2>()
            .unwrap()
            .migrate()
            .execute()
            .unwrap();
        assert_eq!((report.migrated, report.failed), (1, 1));
        drop(store);

        let stats = revolve(&["stats", &location]);
        assert_code(&stats, Status::Success);
        let text = stdout(&stats);
        assert!(
            text.contains("tasks: 2 documents, 0 removed (newest version 2)"),
            "{text}"
        );
        assert!(text.contains(&format!("{}:****@", role.name)), "{text}");
        assert!(!text.contains(password), "{text}");
        // A wrong password is refused (by a server that asks for one), and never printed.
        let wrong = schema.url_from(&as_user(&url, &role.name, "wrong-secret-xyz"));
        let output = revolve(&["runs", &wrong]);
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert!(!all.contains("wrong-secret-xyz"), "{all}");
    }

    // ---- `migrate cancel`: a joined run, stopped from another process.

    #[derive(
        Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema,
    )]
    #[schema(collection = "slow", version = 1)]
    struct SlowV1 {
        n: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
    #[schema(collection = "slow", version = 2, from = SlowV1, step = slow_v1_to_v2)]
    struct SlowV2 {
        n: u64,
        doubled: u64,
    }

    /// Two gates, one for each run of the test; the step of the document numbered as the gate
    /// waits until it opens.
    static GATES: [(u64, std::sync::atomic::AtomicBool); 2] = [
        (1500, std::sync::atomic::AtomicBool::new(false)),
        (4500, std::sync::atomic::AtomicBool::new(false)),
    ];

    #[allow(clippy::unnecessary_wraps)] // the signature a step has
    fn slow_v1_to_v2(old: SlowV1) -> Result<SlowV2, StepError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (gated, open) in &GATES {
            while old.n == *gated
                && !open.load(std::sync::atomic::Ordering::SeqCst)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(SlowV2 {
            n: old.n,
            doubled: old.n * 2,
        })
    }

    /// Opens the gates when dropped, so that a failing test leaves no step waiting.
    struct Gates;

    impl Gates {
        fn open(gate: usize) {
            GATES[gate]
                .1
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Drop for Gates {
        fn drop(&mut self) {
            Self::open(0);
            Self::open(1);
        }
    }

    /// Runs `migration` on a thread of its own; the run's id once its first chunk committed.
    fn start(
        migration: revolve::Migration<SlowV2>,
    ) -> (u64, std::thread::JoinHandle<revolve::MigrationReport>) {
        let (runs, started) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            migration
                .on_progress(move |progress| {
                    let _ = runs.send(progress.run_id);
                })
                .execute()
                .unwrap()
        });
        let run = started.recv_timeout(Duration::from_secs(60)).unwrap();
        (run, thread)
    }

    /// `migrate cancel RUN` stops a joined run that another process runs (here another store
    /// handle), and refuses a run that is not joined, one that ended and one that does not exist.
    #[test]
    fn migrate_cancel_stops_a_joined_run_of_another_process() {
        let Some(url) = postgres_url() else { return };
        let _gates = Gates;
        let schema = Schema::new(&url, "cancel");
        let builder = || {
            Store::builder()
                .url(&url)
                .schema(schema.name.as_str())
                .run_lease(Duration::from_secs(2))
        };
        {
            let store = builder().open().unwrap();
            let documents: Vec<SlowV1> = (0..6000).map(|n| SlowV1 { n }).collect();
            store
                .collection::<SlowV1>()
                .unwrap()
                .insert_many(&documents)
                .unwrap();
        }
        let other = builder().open().unwrap();
        let theirs = other.collection::<SlowV2>().unwrap();
        let store = builder().open().unwrap();
        let migrations = Migrations::new(&store)
            .collection::<TaskV2>()
            .collection::<SlowV2>();

        // A run of one process: only its own token stops it.
        let token = revolve::CancelToken::new();
        let (run, thread) = start(theirs.migrate().cancel_token(token.clone()));
        let (status, out, err) = migrate(&migrations, &["cancel", &run.to_string()]);
        assert_eq!((status, out.as_str()), (Status::Error, ""), "{err}");
        assert_eq!(
            err,
            format!("error: run {run} of `slow` is under way but is not a joined run: only the process that runs it can cancel it\n")
        );
        token.cancel();
        Gates::open(0);
        let report = thread.join().unwrap();
        assert!(report.cancelled, "{report:?}");

        // A joined run: its workers stop at their next chunk boundary.
        let (run, thread) = start(theirs.migrate().join());
        let (status, out, err) = migrate(&migrations, &["cancel", &run.to_string(), "--json"]);
        assert_eq!(status, Status::Success, "{err}");
        let answer: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({ "collection": "slow", "run_id": run, "cancel": "requested" })
        );
        Gates::open(1);
        let joined = thread.join().unwrap();
        assert!(joined.cancelled, "{joined:?}");
        assert!(report.migrated + joined.migrated < 6000, "{joined:?}");
        let record = theirs.run(run).unwrap().unwrap();
        assert_eq!(record.state, revolve::RunState::Cancelled, "{record:?}");
        assert_eq!(record.migrated, joined.migrated);

        // Ended: not under way; and a run no collection has.
        let (status, _, err) = migrate(&migrations, &["cancel", &run.to_string()]);
        assert_eq!(status, Status::Error);
        assert_eq!(
            err,
            format!("error: run {run} of `slow` is not under way: it is cancelled\n")
        );
        let (status, _, err) = migrate(&migrations, &["cancel", "999999"]);
        assert_eq!(status, Status::Error);
        assert_eq!(
            err,
            "error: no run 999999 in the ledger of any registered collection\n"
        );
        drop((theirs, other));
    }
}
