//! Enums derive `Schema` like structs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "events", version = 1)]
enum EventV1 {
    Opened { title: String },
    Closed,
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "events", version = 2, from = EventV1)]
enum EventV2 {
    Opened { title: String, by: Option<String> },
    Closed,
}

impl From<EventV1> for EventV2 {
    fn from(old: EventV1) -> Self {
        match old {
            EventV1::Opened { title } => EventV2::Opened { title, by: None },
            EventV1::Closed => EventV2::Closed,
        }
    }
}

fn main() {
    let upgraded = <EventV2 as Schema>::upgrade(EventV1::Closed).unwrap();
    assert!(matches!(upgraded, EventV2::Closed));
}
