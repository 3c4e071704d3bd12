use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(colection = "issues", version = 0, crate = revolve)]
struct IssueV1<T> {
    title: T,
}

fn main() {}
