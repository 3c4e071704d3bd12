//! Once every document was migrated past versions 1 and 2, their types may be dropped: version 3
//! is then the oldest the program defines, and says so with `oldest`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 3, oldest)]
struct IssueV3 {
    title: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 4, from = IssueV3)]
struct IssueV4 {
    title: String,
    closed: bool,
}

impl From<IssueV3> for IssueV4 {
    fn from(old: IssueV3) -> Self {
        IssueV4 {
            title: old.title,
            closed: false,
        }
    }
}

fn main() {
    fn previous_is_self<T: Schema<Previous = T>>() {}
    previous_is_self::<IssueV3>();

    assert_eq!(<IssueV3 as Schema>::VERSION, 3);
    assert_eq!(<<IssueV4 as Schema>::Previous as Schema>::VERSION, 3);
    let v4 = <IssueV4 as Schema>::upgrade(IssueV3 {
        title: "crash".to_owned(),
    })
    .unwrap();
    assert_eq!(v4.title, "crash");
    assert!(!v4.closed);
}
