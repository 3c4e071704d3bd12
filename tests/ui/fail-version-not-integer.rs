use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = "1")]
struct IssueV1 {
    title: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "notes", version = 1.5)]
struct NoteV1 {
    text: String,
}

fn main() {}
