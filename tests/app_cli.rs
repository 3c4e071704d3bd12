//! The command lines as processes: the `issues_cli` example (an application's own binary built on
//! `revolve::cli::run`) through every `migrate` command on a temporary store, and the log options
//! of it and of the `revolve` binary (`RUST_LOG`, `--log-format`, `REVOLVE_LOG_FORMAT`).
//!
//! The example is built by the test itself, once (see `tests/common/example.rs`).

#[path = "common/example.rs"]
mod example_build;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use revolve::cli::Status;
use revolve::{Schema, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `issues_cli` example's executable, built on first use.
fn issues_cli() -> &'static Path {
    static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();
    EXECUTABLE.get_or_init(|| example_build::build("issues_cli"))
}

/// Runs the example on the store at `data` with `args`; `RUST_LOG` unset unless `env` sets it.
fn app(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(issues_cli())
        .env("REVOLVE_DATA", data)
        .env_remove("RUST_LOG")
        .env_remove("REVOLVE_LOG_FORMAT")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run the example")
}

fn revolve(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_revolve"))
        .env_remove("RUST_LOG")
        .env_remove("REVOLVE_LOG_FORMAT")
        .envs(env.iter().copied())
        .args(["--lock-timeout", "10"])
        .args(args)
        .output()
        .expect("run revolve")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}\n{}", stdout(output), stderr(output)))
}

#[track_caller]
fn assert_code(output: &Output, status: Status) {
    assert_eq!(
        output.status.code(),
        Some(i32::from(status.code())),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// Every line of standard error is a JSON log event; there is at least one.
#[track_caller]
fn assert_json_logs(output: &Output) {
    let err = stderr(output);
    assert!(!err.trim().is_empty(), "no log events");
    for line in err.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON event ({error}): {line}"));
        assert!(event["level"].is_string(), "{line}");
        assert!(event["timestamp"].is_string(), "{line}");
    }
}

// One store taken through every command in turn, as an operator would.
#[test]
fn the_example_seeds_then_tests_executes_lists_and_reverts_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("issues");

    let status = app(&data, &["migrate", "status"], &[]);
    assert_code(&status, Status::Success);
    assert!(
        stderr(&status).contains("seeded 2500 version-1 issues"),
        "{}",
        stderr(&status)
    );
    assert!(
        stdout(&status).starts_with(
            "issues: latest version 2\n  version 1: 2500 documents (2500 to migrate, 0 failed)\n"
        ),
        "{}",
        stdout(&status)
    );

    // A dry run writes nothing; 2 of the first 100 have the status `wontfix` the step refuses.
    let test = app(&data, &["migrate", "test", "--limit", "100", "--json"], &[]);
    assert_code(&test, Status::Problems);
    let report = &json(&test)["collections"][0];
    assert_eq!(
        (&report["dry_run"], &report["scanned"], &report["failed"]),
        (&Value::Bool(true), &Value::from(100), &Value::from(2))
    );

    let execute = app(&data, &["migrate", "execute", "--json"], &[]);
    assert_code(&execute, Status::Problems);
    let report = &json(&execute)["collections"][0];
    assert_eq!(report["migrated"], 2450);
    assert_eq!(report["failed"], 50);
    let failure = &report["failures"][0];
    assert_eq!(failure["class"], "step");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("unknown status `wontfix`"),
        "{failure}"
    );
    let run_id = report["run_id"].as_u64().unwrap().to_string();

    let status = app(&data, &["migrate", "status", "issues", "--json"], &[]);
    assert_code(&status, Status::Success);
    let issues = &json(&status)["collections"][0];
    assert_eq!(issues["collection"], "issues");
    assert_eq!(issues["latest_version"], 2);

    let runs = app(&data, &["migrate", "runs", "--json"], &[]);
    assert_code(&runs, Status::Success);
    let runs = json(&runs);
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["id"].as_u64().unwrap().to_string(), run_id);
    assert_eq!(runs[1]["dry_run"], true);

    let revert = app(&data, &["migrate", "revert", &run_id], &[]);
    assert_code(&revert, Status::Success);
    assert!(
        stdout(&revert).contains(&format!("reverted run {run_id}")),
        "{}",
        stdout(&revert)
    );
    let status = app(&data, &["migrate", "status"], &[]);
    assert!(
        stdout(&status).starts_with(
            "issues: latest version 2\n  version 1: 2500 documents (2450 to migrate, 50 failed)\n  removed: 0\n"
        ),
        "{}",
        stdout(&status)
    );

    // Usage mistakes and unknown names.
    assert_code(&app(&data, &["migrate", "dance"], &[]), Status::Usage);
    let unknown = app(&data, &["migrate", "revert", "999999999"], &[]);
    assert_code(&unknown, Status::Error);
    assert!(
        stderr(&unknown).starts_with("error: "),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn the_example_says_when_the_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("issues");
    let _held = Store::open(&data).unwrap();
    // Built before the clock starts: the bound is on the example, not on cargo.
    issues_cli();
    let started = Instant::now();
    let locked = app(&data, &["migrate", "status"], &[]);
    assert_code(&locked, Status::Locked);
    assert!(
        stderr(&locked).contains("is locked by another process"),
        "{}",
        stderr(&locked)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_example_logs_as_json_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("issues");
    assert_code(&app(&data, &["migrate", "status"], &[]), Status::Success);

    // Warnings and errors only by default: a command that succeeds logs nothing.
    let quiet = app(&data, &["migrate", "status", "--json"], &[]);
    assert_code(&quiet, Status::Success);
    assert_eq!(stderr(&quiet), "");

    let flag = app(
        &data,
        &["migrate", "status", "--json", "--log-format", "json"],
        &[("RUST_LOG", "debug")],
    );
    assert_code(&flag, Status::Success);
    assert_eq!(json(&flag)["collections"][0]["collection"], "issues");
    assert_json_logs(&flag);

    let env = app(
        &data,
        &["migrate", "runs"],
        &[("RUST_LOG", "debug"), ("REVOLVE_LOG_FORMAT", "json")],
    );
    assert_code(&env, Status::Success);
    assert_json_logs(&env);

    assert_code(
        &app(&data, &["migrate", "runs", "--log-format", "xml"], &[]),
        Status::Usage,
    );
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 1)]
struct Note {
    text: String,
}

/// A store with one note, closed again.
fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .collection::<Note>()
        .unwrap()
        .insert(&Note {
            text: "hello".to_owned(),
        })
        .unwrap();
    dir
}

#[test]
fn revolve_logs_warnings_by_default_and_json_when_asked() {
    let dir = store();
    let path = dir.path().to_str().unwrap();

    let quiet = revolve(&["stats", path], &[]);
    assert_code(&quiet, Status::Success);
    assert_eq!(stderr(&quiet), "");

    let text = revolve(&["stats", path], &[("RUST_LOG", "debug")]);
    assert_code(&text, Status::Success);
    assert!(stderr(&text).contains(" DEBUG "), "{}", stderr(&text));

    let flag = revolve(
        &["stats", path, "--json", "--log-format", "json"],
        &[("RUST_LOG", "debug")],
    );
    assert_code(&flag, Status::Success);
    assert!(json(&flag).is_object());
    assert_json_logs(&flag);

    let env = revolve(
        &["stats", path, "--json"],
        &[("RUST_LOG", "debug"), ("REVOLVE_LOG_FORMAT", "json")],
    );
    assert_code(&env, Status::Success);
    assert_json_logs(&env);

    // A filter that does not parse is reported, and warnings are logged.
    let bad = revolve(&["stats", path], &[("RUST_LOG", "=[")]);
    assert_code(&bad, Status::Success);
    assert!(
        stderr(&bad).contains("ignoring RUST_LOG"),
        "{}",
        stderr(&bad)
    );

    assert_code(
        &revolve(&["stats", path], &[("REVOLVE_LOG_FORMAT", "xml")]),
        Status::Usage,
    );
}

#[test]
fn revolve_errors_print_their_cause_chain() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.rvb");
    let target = dir.path().join("copy");
    let output = revolve(
        &[
            "import",
            missing.to_str().unwrap(),
            target.to_str().unwrap(),
        ],
        &[],
    );
    assert_code(&output, Status::Error);
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "revolve: error: cannot open {}\n",
            missing.display()
        )),
        "{err}"
    );
    assert!(err.contains("\n  caused by: "), "{err}");
}

/// A schema of the test database, dropped at the end of the test.
#[cfg(feature = "postgres")]
struct DroppedSchema(postgres::Client, String);

#[cfg(feature = "postgres")]
impl Drop for DroppedSchema {
    fn drop(&mut self) {
        let _ = self
            .0
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.1));
    }
}

/// The example's store in a PostgreSQL database: `REVOLVE_DATA` takes a URL, which the example
/// opens as the `revolve` binary does (`revolve::cli::Location`), and both see one store. A URL's
/// password is never printed. Skipped with one line without `REVOLVE_TEST_DATABASE_URL`, failing
/// under `CI=true`.
#[cfg(feature = "postgres")]
#[test]
fn the_example_and_revolve_share_a_store_in_postgres() {
    let url = match std::env::var("REVOLVE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REVOLVE_TEST_DATABASE_URL is not set: under CI=true the PostgreSQL tests must run (scripts/with-postgres)"
            );
            eprintln!("skipped: no PostgreSQL (run under scripts/with-postgres)");
            return;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("t_app_cli_{}_{nanos}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .unwrap();
    let _schema = DroppedSchema(admin, schema.clone());
    let separator = if url.contains('?') { '&' } else { '?' };
    let location = format!("{url}{separator}options=-csearch_path%3D{schema}");
    let data = Path::new(&location);

    let status = app(data, &["migrate", "status"], &[]);
    assert_code(&status, Status::Success);
    assert!(
        stderr(&status).contains("seeded 2500 version-1 issues in postgres"),
        "{}",
        stderr(&status)
    );
    let execute = app(data, &["migrate", "execute", "--json"], &[]);
    assert_code(&execute, Status::Problems);
    let report = &json(&execute)["collections"][0];
    assert_eq!(
        (&report["migrated"], &report["failed"]),
        (&Value::from(2450), &Value::from(50))
    );
    let runs = revolve(&["runs", "--json", &location], &[]);
    assert_code(&runs, Status::Success);
    let runs = json(&runs)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["collection"], "issues");
    assert_eq!(runs[0]["migrated"], 2450);

    // A password in the URL stays out of what the example prints, even when it cannot connect.
    let refused = app(
        Path::new("postgres://someone:hunter2-never-shown@127.0.0.1:1/nothing"),
        &["migrate", "status"],
        &[],
    );
    assert_code(&refused, Status::Error);
    assert!(
        stderr(&refused).contains("someone:****@"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !stderr(&refused).contains("hunter2"),
        "{}",
        stderr(&refused)
    );
}
