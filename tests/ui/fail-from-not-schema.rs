use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = String)]
struct IssueV2 {
    title: String,
}

impl From<String> for IssueV2 {
    fn from(title: String) -> Self {
        IssueV2 { title }
    }
}

fn main() {}
