use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "boxes", version = 1)]
struct BoxV1<T> {
    item: T,
}

fn main() {}
