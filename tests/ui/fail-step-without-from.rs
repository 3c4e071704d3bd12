use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    title: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, step = issue_v1_to_v2)]
struct IssueV2 {
    title: String,
}

fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, revolve::StepError> {
    Ok(IssueV2 { title: old.title })
}

fn main() {}
