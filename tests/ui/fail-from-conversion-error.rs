use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    title: String,
}

// `TryFrom<IssueV1>`, but with an error a `StepError` cannot hold.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1)]
struct IssueV2 {
    title: String,
}

impl TryFrom<IssueV1> for IssueV2 {
    type Error = ();

    fn try_from(old: IssueV1) -> Result<Self, ()> {
        Ok(IssueV2 { title: old.title })
    }
}

fn main() {}
