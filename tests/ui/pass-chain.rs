//! A chain of three versions: a `step` function, `From` and `TryFrom`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::{Schema, StepError};

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    title: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
struct IssueV2 {
    title: String,
    priority: String,
}

fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, StepError> {
    Ok(IssueV2 {
        title: old.title,
        priority: "normal".to_owned(),
    })
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 3, from = IssueV2)]
struct IssueV3 {
    title: String,
    priority: u8,
}

impl TryFrom<IssueV2> for IssueV3 {
    type Error = String;

    fn try_from(old: IssueV2) -> Result<Self, String> {
        let priority = match old.priority.as_str() {
            "low" => 0,
            "normal" => 1,
            "high" => 2,
            other => return Err(format!("priority `{other}` is not known")),
        };
        Ok(IssueV3 {
            title: old.title,
            priority,
        })
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues")]
#[schema(version = 4, from = IssueV3)]
struct IssueV4 {
    title: String,
    priority: u8,
    closed: bool,
}

impl From<IssueV3> for IssueV4 {
    fn from(old: IssueV3) -> Self {
        IssueV4 {
            title: old.title,
            priority: old.priority,
            closed: false,
        }
    }
}

// A closure that captures nothing is a step too.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(
    collection = "issues",
    version = 5,
    from = IssueV4,
    step = |old: IssueV4| Ok(IssueV5 { title: old.title }),
)]
struct IssueV5 {
    title: String,
}

fn main() {
    assert_eq!(<IssueV1 as Schema>::VERSION, 1);
    assert_eq!(<IssueV5 as Schema>::VERSION, 5);
    assert_eq!(<IssueV3 as Schema>::COLLECTION, "issues");

    let v2 = <IssueV2 as Schema>::upgrade(IssueV1 {
        title: "crash".to_owned(),
    })
    .unwrap();
    assert_eq!(v2.priority, "normal");
    let v3 = <IssueV3 as Schema>::upgrade(v2).unwrap();
    assert_eq!(v3.priority, 1);
    let v4 = <IssueV4 as Schema>::upgrade(v3).unwrap();
    assert!(!v4.closed);
    let v5 = <IssueV5 as Schema>::upgrade(v4).unwrap();
    assert_eq!(v5.title, "crash");

    let unknown = IssueV2 {
        title: "t".to_owned(),
        priority: "urgent!".to_owned(),
    };
    let error = <IssueV3 as Schema>::upgrade(unknown).err().unwrap();
    assert_eq!(error.to_string(), "priority `urgent!` is not known");
}
