//! The second build of an application: it adds `IssueV2` (a priority) with a step from `IssueV1`.
//! Run after `deploy_v1` on the same store, it reads the version 1 issues upgraded on the fly,
//! writes version 2 ones, and shows that the version 1 bytes stay in each issue's history.
//!
//! ```text
//! cargo run --example deploy_v1 -- <path>          # write two issues, then read them
//! cargo run --example deploy_v2 -- <path>          # read them upgraded, update one, add one
//! cargo run --example deploy_v1 -- <path> read     # now refused: the store holds version 2
//! ```
//!
//! Subcommands: `read [ID...]`, `update ID` (close it), `write` (insert `issue-3`) and
//! `history ID` (every revision as stored); without one, `read`, `update issue-1`, `write`,
//! `history issue-1`.

use std::error::Error;
use std::process::ExitCode;

use revolve::{Collection, Document, Schema, StepError, Store, StoreError};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
pub struct IssueV2 {
    pub title: String,
    pub priority: Priority,
    pub description: Option<String>,
    pub status: Status,
}

/// The latest version this build knows.
pub type Issue = IssueV2;

/// Crashes are urgent; everything else starts at normal priority. An issue without a title
/// cannot be triaged: the step refuses it, and only that issue fails to read.
fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, StepError> {
    if old.title.trim().is_empty() {
        return Err(StepError::new(
            "an issue needs a title to be given a priority",
        ));
    }
    let priority = if old.title.to_lowercase().contains("crash") {
        Priority::High
    } else {
        Priority::Normal
    };
    Ok(IssueV2 {
        title: old.title,
        priority,
        description: old.description,
        status: old.status,
    })
}

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
        .ok_or("usage: deploy_v2 <path> [read [ID...] | update ID | write | history ID]")?;
    let command = args.next();
    let rest: Vec<String> = args.collect();

    let store = Store::open(&path)?;
    let issues = store.collection::<Issue>()?;
    let one_id = || rest.first().map(String::as_str).ok_or("name an issue id");
    match command.as_deref() {
        None => {
            read(&issues, &[])?;
            update(&issues, "issue-1")?;
            write(&issues)?;
            history(&issues, "issue-1")
        }
        Some("read") => read(&issues, &rest),
        Some("update") => update(&issues, one_id()?),
        Some("write") => write(&issues),
        Some("history") => history(&issues, one_id()?),
        Some(other) => Err(format!(
            "unknown command `{other}`; use `read`, `update`, `write` or `history`"
        )
        .into()),
    }
}

fn show(doc: &Document<Issue>) {
    println!(
        "{} revision {} stored_version {} title={:?} priority={:?} status={:?}",
        doc.id,
        doc.revision,
        doc.stored_version,
        doc.data.title,
        doc.data.priority,
        doc.data.status
    );
}

fn read(issues: &Collection<Issue>, ids: &[String]) -> Result<(), Box<dyn Error>> {
    if ids.is_empty() {
        for doc in issues {
            show(&doc?);
        }
    } else {
        for id in ids {
            match issues.get(id)? {
                Some(doc) => show(&doc),
                None => println!("{id} not found"),
            }
        }
    }
    Ok(())
}

fn update(issues: &Collection<Issue>, id: &str) -> Result<(), Box<dyn Error>> {
    let doc = issues.get(id)?.ok_or_else(|| format!("no issue `{id}`"))?;
    let mut issue = doc.data;
    issue.status = Status::Closed;
    // Conditional on the revision read: a concurrent edit is not overwritten.
    let revision = issues.update_if(id, doc.revision, &issue)?;
    println!(
        "updated {id} revision {revision} version {}",
        Issue::VERSION
    );
    Ok(())
}

fn write(issues: &Collection<Issue>) -> Result<(), Box<dyn Error>> {
    let issue = IssueV2 {
        title: "Dark mode".to_owned(),
        priority: Priority::Low,
        description: None,
        status: Status::Open,
    };
    match issues.insert_with_id("issue-3", &issue) {
        Ok(revision) => println!(
            "wrote issue-3 revision {revision} version {}",
            Issue::VERSION
        ),
        Err(StoreError::AlreadyExists { .. }) => println!("kept issue-3: it already exists"),
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

fn history(issues: &Collection<Issue>, id: &str) -> Result<(), Box<dyn Error>> {
    for info in issues.history(id)? {
        let raw = issues
            .raw_revision(id, info.revision)?
            .ok_or_else(|| format!("{id} revision {} is missing", info.revision))?;
        let version = info
            .version
            .map_or_else(|| "removed".to_owned(), |version| version.to_string());
        let payload = raw
            .payload
            .map_or_else(|| "null".to_owned(), |payload| payload.to_string());
        println!(
            "history {id} revision {} version {version} payload {payload}",
            info.revision
        );
    }
    Ok(())
}
