use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues")]
struct IssueV1 {
    title: String,
}

fn main() {}
