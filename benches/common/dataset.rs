//! The benchmarks' dataset: an issue of about 350 bytes at version 1, and version 2 with a step.

use revolve::{Schema, StepError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
pub(crate) struct IssueV1 {
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) status: String,
    pub(crate) tags: Vec<String>,
    pub(crate) created_at: u64,
    pub(crate) updated_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Open,
    InProgress,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
pub(crate) struct IssueV2 {
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) status: Status,
    pub(crate) priority: u8,
    pub(crate) tags: Vec<String>,
    pub(crate) created_at: u64,
    pub(crate) updated_at: u64,
}

pub(crate) fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, StepError> {
    let status = match old.status.as_str() {
        "open" => Status::Open,
        "in_progress" => Status::InProgress,
        "closed" => Status::Closed,
        other => return Err(StepError::new(format!("status `{other}` is not known"))),
    };
    let priority = if old.tags.iter().any(|tag| tag == "urgent") {
        0
    } else if old.tags.iter().any(|tag| tag == "bug") {
        1
    } else {
        2
    };
    Ok(IssueV2 {
        title: old.title,
        description: old.description,
        status,
        priority,
        tags: old.tags,
        created_at: old.created_at,
        updated_at: old.updated_at,
    })
}
