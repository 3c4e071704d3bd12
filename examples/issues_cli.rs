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
//! The store is the directory or the PostgreSQL URL (`postgres://…`) `REVOLVE_DATA` names, by
//! default the `server` example's directory (`revolve-example-server` in the temporary
//! directory), opened by [`revolve::cli::Location`] as the `revolve` binary opens its stores. Stop
//! the server first, or this waits two seconds for the directory's lock and exits 4 (a database
//! is shared: no need to stop it). A store with no collection yet is seeded with the
//! server's 2500 version-1 issues, one in 50 with a status the step refuses. `RUST_LOG` and
//! `--log-format json` control the logs on standard error.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use revolve::cli::{Location, Status as ExitStatus};
use revolve::{Store, StoreError};

// The issue types, step and seed of examples/server.rs: both programs read one store.
#[path = "common/issues.rs"]
mod issues;

use issues::{IssueV1, IssueV2};

/// Opens the store, first seeding version-1 issues into one with no collection, as the server
/// example does: last year's program writes them and closes the store, and this one opens it.
fn open(location: &Location) -> Result<Store, StoreError> {
    let store = location.open(Duration::from_secs(2))?;
    if !store.collection_names()?.is_empty() {
        return Ok(store);
    }
    let seed = issues::seed();
    store.collection::<IssueV1>()?.insert_many(&seed)?;
    drop(store);
    eprintln!("seeded {} version-1 issues in {location}", issues::SEEDED);
    // Closing releases a directory's lock in the background: wait for it.
    location.open(Duration::from_secs(10))
}

fn main() -> ExitCode {
    let location = std::env::var_os("REVOLVE_DATA").map_or_else(
        || Location::from(std::env::temp_dir().join("revolve-example-server")),
        Location::from,
    );
    let store = match open(&location) {
        Ok(store) => store,
        Err(error) => {
            // A URL is shown without its password.
            eprintln!("error: {location}: {error}");
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
