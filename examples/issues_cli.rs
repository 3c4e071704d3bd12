//! The issue tracker's own command line: the `migrate` commands of `revolve::cli::run`, typed with
//! the same `IssueV1` → `IssueV2` issues and step as the `server` example, over the same store.
//! The `revolve` binary cannot run a step (it does not have the types); this program can.
//!
//! ```sh
//! cargo run --example issues_cli --features cli -- migrate status
//! cargo run --example issues_cli --features cli -- migrate test --limit 100
//! cargo run --example issues_cli --features cli -- migrate execute     # 50 issues fail: exit 3
//! cargo run --example issues_cli --features cli -- migrate runs --json
//! cargo run --example issues_cli --features cli -- migrate revert RUN
//! ```
//!
//! The store is the directory `REVOLVE_DATA` names, by default the `server` example's
//! (`revolve-example-server` in the temporary directory); stop the server first, or this waits
//! two seconds for its lock and exits 4. A store with no collection yet is seeded with the
//! server's 2500 version-1 issues, one in 50 with a status the step refuses. `RUST_LOG` and
//! `--log-format json` control the logs on standard error.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use revolve::cli::Status as ExitStatus;
use revolve::{Schema, StepError, Store, StoreError};
use serde::{Deserialize, Serialize};

// The issue types and step, exactly as in examples/server.rs: both programs read one store.

/// An issue as last year's program stored it: the status is free text.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    title: String,
    description: Option<String>,
    status: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Priority {
    Low,
    High,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Status {
    Open,
    Closed,
}

/// Today's issue: a priority, and a status that is an enum.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
struct IssueV2 {
    title: String,
    priority: Priority,
    description: Option<String>,
    status: Status,
}

fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, StepError> {
    let status = match old.status.as_str() {
        "open" => Status::Open,
        "closed" | "done" => Status::Closed,
        other => return Err(StepError::new(format!("unknown status `{other}`"))),
    };
    let priority = if old.title.to_lowercase().contains("crash") {
        Priority::High
    } else {
        Priority::Low
    };
    Ok(IssueV2 {
        title: old.title,
        priority,
        description: old.description,
        status,
    })
}

/// Opens the store, first seeding version-1 issues into one with no collection, as the server
/// example does: last year's program writes them and closes the store, and this one opens it.
fn open(path: &Path) -> Result<Store, StoreError> {
    let store = Store::builder()
        .path(path)
        .lock_timeout(Duration::from_secs(2))
        .open()?;
    if !store.collection_names()?.is_empty() {
        return Ok(store);
    }
    let statuses = ["open", "closed", "done", "open", "wontfix"];
    let seed: Vec<IssueV1> = (0..2500)
        .map(|n| IssueV1 {
            title: if n % 10 == 0 {
                format!("Crash #{n} when saving")
            } else {
                format!("Issue #{n}")
            },
            description: (n % 3 == 0).then(|| format!("Seeded issue number {n}")),
            // One in 50 has a status the step refuses: a migration reports it.
            status: statuses[if n % 50 == 49 { 4 } else { n % 4 }].to_owned(),
        })
        .collect();
    store.collection::<IssueV1>()?.insert_many(&seed)?;
    drop(store);
    eprintln!("seeded 2500 version-1 issues in {}", path.display());
    // Closing releases the lock in the background: wait for it.
    Store::builder()
        .path(path)
        .lock_timeout(Duration::from_secs(10))
        .open()
}

fn main() -> ExitCode {
    let path = std::env::var_os("REVOLVE_DATA").map_or_else(
        || std::env::temp_dir().join("revolve-example-server"),
        PathBuf::from,
    );
    let store = match open(&path) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("error: {}: {error}", path.display());
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            return ExitStatus::from_store_error(&error).into();
        }
    };
    // One `.collection::<T>()` per collection the program migrates, chained.
    #[allow(clippy::redundant_closure_for_method_calls)]
    revolve::cli::run(&store, |r| r.collection::<IssueV2>())
}
