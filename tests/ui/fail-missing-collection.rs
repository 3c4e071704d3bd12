use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(version = 1)]
struct IssueV1 {
    title: String,
}

fn main() {}
