use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1, oldest)]
struct IssueV1 {
    title: String,
}

fn main() {}
