use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    title: String,
}

// The step takes a reference instead of the previous version.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
struct IssueV2 {
    title: String,
}

fn issue_v1_to_v2(old: &IssueV1) -> Result<IssueV2, revolve::StepError> {
    Ok(IssueV2 {
        title: old.title.clone(),
    })
}

// The step returns the new version instead of a `Result`.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 3, from = IssueV2, step = issue_v2_to_v3)]
struct IssueV3 {
    title: String,
}

fn issue_v2_to_v3(old: IssueV2) -> IssueV3 {
    IssueV3 { title: old.title }
}

fn main() {}
