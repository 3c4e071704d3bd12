//! Command lines: typed migration commands for an application's own binary, and the exit codes
//! they share with the `revolve` operator binary (feature `cli`).
//!
//! # Migration commands in your binary
//!
//! The `revolve` binary works on any store without the application's types, so it cannot run
//! steps. An application gets the typed commands in its own binary by registering its collections
//! (the `issues_cli` example does it for the `server` example's issues):
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use revolve::{Schema, Store};
//!
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
//! #[schema(collection = "issues", version = 1)]
//! struct Issue {
//!     title: String,
//! }
//!
//! fn main() -> ExitCode {
//!     let store = match Store::open("data/app.revolve") {
//!         Ok(store) => store,
//!         Err(error) => {
//!             eprintln!("error: {error}");
//!             return revolve::cli::Status::from_store_error(&error).into();
//!         }
//!     };
//!     revolve::cli::run(&store, |r| r.collection::<Issue>())
//! }
//! ```
//!
//! which gives
//!
//! ```text
//! app migrate status  [COLLECTION]                 documents per version, pending, last runs
//! app migrate test    [COLLECTION] [--limit N] [--threads N] [--retry-failed]
//!                                                  a dry run: every step runs, nothing is written
//! app migrate execute [COLLECTION] [--limit N] [--threads N] [--retry-failed]
//! app migrate cancel  RUN                          stop a joined run under way (PostgreSQL),
//!                                                  every worker in every process
//! app migrate revert  RUN                          restore what a run replaced
//! app migrate runs    [COLLECTION]                 the ledger, newest first
//! app migrate failures [COLLECTION [--after ID]] [--limit N]
//!                                                  the failure set: documents whose migration
//!                                                  failed (all of them, in id order)
//! ```
//!
//! each with `--json` and `--log-format text|json`, and a progress bar on standard error while a
//! run goes (hidden when standard error is not a terminal). [`Migrations::execute`] runs an
//! already parsed [`MigrateArgs`], for applications that embed the commands in their own clap
//! parser.
//!
//! # Stores: a directory or a URL
//!
//! Every store the `revolve` binary takes is a directory or a PostgreSQL URL
//! (`postgres://user:password@host/database`; with `?options=-csearch_path%3Dschema` for a schema
//! other than `public`), told apart by [`Location`]; an application's binary opens its store the
//! same way with [`Location::open`]. A location is shown (`Display`, `Debug`) without its
//! password. The `cli` feature enables `postgres`.
//!
//! # Logs
//!
//! [`run`] installs a [`tracing`](https://docs.rs/tracing) subscriber (unless the process already
//! has one) writing to standard error: `RUST_LOG` chooses what is logged (warnings and errors by
//! default, e.g. `RUST_LOG=revolve=debug`), as text, or as one JSON object per line with
//! `--log-format json` or `REVOLVE_LOG_FORMAT=json`. The `revolve` binary does the same.
//!
//! # Exit codes
//!
//! Both the `revolve` binary and [`run`] exit with a [`Status`]:
//!
//! | code | status | meaning |
//! |---|---|---|
//! | 0 | [`Status::Success`] | done |
//! | 1 | [`Status::Error`] | the command failed (I/O, unknown collection or document, damaged backup, …) |
//! | 2 | [`Status::Usage`] | the command line does not parse |
//! | 3 | [`Status::Problems`] | done, and found problems: `verify` found inconsistencies (left after `--repair`), or a migration had failed documents |
//! | 4 | [`Status::Locked`] | another process has the database open |

mod format;
mod location;
mod logs;
mod migrate;

use std::process::ExitCode;

use crate::StoreError;

pub use self::location::{redact, Location};
pub use self::migrate::{run, CommandError, MigrateArgs, MigrateCommand, Migrations};

/// What the `revolve` binary shares with this module (rendering and the log subscriber), so that
/// it is compiled once. Not public API: hidden, and it may change in any release.
#[doc(hidden)]
pub mod __bin {
    pub use super::format::{
        collect_failures, progress_bar, seconds, timestamp, write_failures, write_json, write_runs,
    };
    pub use super::logs::{install, LogFormat};
}

/// How a command ended; [`code`](Self::code) is its process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Done: exit code 0.
    Success,
    /// The command failed: exit code 1.
    Error,
    /// The command line does not parse: exit code 2.
    Usage,
    /// Done, and found problems (an inconsistent store, failed documents): exit code 3.
    Problems,
    /// Another process has the database open: exit code 4.
    Locked,
}

impl Status {
    /// The process exit code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Error => 1,
            Status::Usage => 2,
            Status::Problems => 3,
            Status::Locked => 4,
        }
    }

    /// [`Status::Locked`] for [`StoreError::Locked`], [`Status::Error`] for anything else.
    #[must_use]
    pub fn from_store_error(error: &StoreError) -> Self {
        match error {
            StoreError::Locked { .. } => Status::Locked,
            _ => Status::Error,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(status.code())
    }
}
