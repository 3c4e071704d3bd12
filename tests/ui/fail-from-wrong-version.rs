use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    title: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1)]
struct IssueV2 {
    title: String,
}

impl From<IssueV1> for IssueV2 {
    fn from(old: IssueV1) -> Self {
        IssueV2 { title: old.title }
    }
}

// Skips version 2.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 3, from = IssueV1)]
struct IssueV3 {
    title: String,
}

impl From<IssueV1> for IssueV3 {
    fn from(old: IssueV1) -> Self {
        IssueV3 { title: old.title }
    }
}

fn main() {}
