//! The first build of an application, which knows only `IssueV1`. Together with `deploy_v2` it
//! shows a schema change shipped as a second build over the same store: the new build reads the
//! old documents upgraded, and once it has written, this old build is refused instead of
//! misreading newer documents or writing old ones.
//!
//! ```text
//! cargo run --example deploy_v1 -- <path>          # write two issues, then read them
//! cargo run --example deploy_v2 -- <path>          # read them upgraded, update one, add one
//! cargo run --example deploy_v1 -- <path> read     # now refused: the store holds version 2
//! ```
//!
//! Subcommands: `write` (insert `issue-1` and `issue-2`), `read [ID...]` (every issue, or the
//! ones named); without one, `write` then `read`.

use std::error::Error;
use std::process::ExitCode;

use revolve::{Collection, Document, Schema, Store, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
pub struct IssueV1 {
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
}

/// The latest version this build knows.
pub type Issue = IssueV1;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: deploy_v1 <path> [write | read [ID...]]")?;
    let command = args.next();
    let ids: Vec<String> = args.collect();

    let store = Store::open(&path)?;
    let issues = store.collection::<Issue>()?;
    match command.as_deref() {
        None => {
            write(&issues)?;
            read(&issues, &ids)
        }
        Some("write") => write(&issues),
        Some("read") => read(&issues, &ids),
        Some(other) => Err(format!("unknown command `{other}`; use `write` or `read`").into()),
    }
}

fn write(issues: &Collection<Issue>) -> Result<(), Box<dyn Error>> {
    let new = [
        (
            "issue-1",
            IssueV1 {
                title: "Crash on start".to_owned(),
                description: Some("segfault when the config is empty".to_owned()),
                status: Status::Open,
            },
        ),
        (
            "issue-2",
            IssueV1 {
                title: "Typo in the README".to_owned(),
                description: None,
                status: Status::Closed,
            },
        ),
    ];
    for (id, issue) in &new {
        match issues.insert_with_id(id, issue) {
            Ok(revision) => println!("wrote {id} revision {revision} version {}", Issue::VERSION),
            Err(StoreError::AlreadyExists { .. }) => println!("kept {id}: it already exists"),
            Err(error) => return Err(format!("cannot write {id}: {error}").into()),
        }
    }
    Ok(())
}

fn read(issues: &Collection<Issue>, ids: &[String]) -> Result<(), Box<dyn Error>> {
    let mut failed = 0;
    let mut show = |id: &str, result: Result<Option<Document<Issue>>, StoreError>| match result {
        Ok(Some(doc)) => println!(
            "{} revision {} stored_version {} title={:?} status={:?}",
            doc.id, doc.revision, doc.stored_version, doc.data.title, doc.data.status
        ),
        Ok(None) => println!("{id} not found"),
        Err(error) => {
            failed += 1;
            eprintln!("cannot read {id}: {error}");
        }
    };
    if ids.is_empty() {
        for result in issues {
            show("an issue", result.map(Some));
        }
    } else {
        for id in ids {
            show(id, issues.get(id));
        }
    }
    if failed > 0 {
        return Err(format!("{failed} issue(s) could not be read by this build").into());
    }
    Ok(())
}
