use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "users", version = 1)]
struct UserV1 {
    name: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = UserV1)]
struct IssueV2 {
    title: String,
}

impl From<UserV1> for IssueV2 {
    fn from(old: UserV1) -> Self {
        IssueV2 { title: old.name }
    }
}

fn main() {}
