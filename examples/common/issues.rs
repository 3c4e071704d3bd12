//! The example server's issues, their step, and the version-1 issues it seeds: shared with the
//! HTTP tests (`#[path]`), so that they test the very data the example serves.

use revolve::{Schema, StepError};
use serde::{Deserialize, Serialize};

/// How many issues [`seed`] makes.
pub(crate) const SEEDED: usize = 2500;

/// An issue as last year's program stored it: the status is free text.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
pub(crate) struct IssueV1 {
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) status: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Priority {
    Low,
    High,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Open,
    Closed,
}

/// Today's issue: a priority, and a status that is an enum.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
pub(crate) struct IssueV2 {
    pub(crate) title: String,
    pub(crate) priority: Priority,
    pub(crate) description: Option<String>,
    pub(crate) status: Status,
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

/// The version-1 issues last year's program left: [`SEEDED`] of them, one in 50 with a status
/// (`wontfix`) the step refuses, so that a migration reports it.
pub(crate) fn seed() -> Vec<IssueV1> {
    let statuses = ["open", "closed", "done", "open", "wontfix"];
    (0..SEEDED)
        .map(|n| IssueV1 {
            title: if n % 10 == 0 {
                format!("Crash #{n} when saving")
            } else {
                format!("Issue #{n}")
            },
            description: (n % 3 == 0).then(|| format!("Seeded issue number {n}")),
            status: statuses[if n % 50 == 49 { 4 } else { n % 4 }].to_owned(),
        })
        .collect()
}
