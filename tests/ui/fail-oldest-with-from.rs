use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::{Schema, StepError};

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, oldest)]
struct IssueV2 {
    title: String,
}

// `oldest` says nothing older is defined: there is nothing to upgrade from.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 3, oldest, from = IssueV2)]
struct IssueV3 {
    title: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 4, step = issue_v3_to_v4, oldest)]
struct IssueV4 {
    title: String,
}

fn issue_v3_to_v4(old: IssueV3) -> Result<IssueV4, StepError> {
    Ok(IssueV4 { title: old.title })
}

fn main() {}
