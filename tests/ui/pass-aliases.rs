//! Fields' `#[serde(alias = "...")]` are recorded in `Schema::ALIASES` under the name serde reads
//! the field by: `rename_all`, then the field's own `rename`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Schema;

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    #[serde(alias = "mail", default)]
    #[serde(alias = "e_mail")]
    email_address: String,
    #[serde(rename = "heading", alias = "title", alias = "subject")]
    title_text: String,
    #[serde(rename(serialize = "OPEN", deserialize = "isOpen"), alias = "open")]
    is_open: bool,
    created_at: u64,
}

// No alias: the trait's default.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[serde(rename_all = "camelCase")]
#[schema(collection = "notes", version = 1)]
struct NoteV1 {
    note_text: String,
}

// Enums and tuple structs have no field aliases.
#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "events", version = 1)]
enum EventV1 {
    Opened {
        #[serde(alias = "name")]
        title: String,
    },
}

#[derive(Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "counters", version = 1)]
struct CounterV1(#[serde(alias = "n")] u64);

fn main() {
    assert_eq!(
        <IssueV1 as Schema>::ALIASES,
        [
            ("/emailAddress", "mail"),
            ("/emailAddress", "e_mail"),
            ("/heading", "title"),
            ("/heading", "subject"),
            ("/isOpen", "open"),
        ]
    );
    assert!(<NoteV1 as Schema>::ALIASES.is_empty());
    assert!(<EventV1 as Schema>::ALIASES.is_empty());
    assert!(<CounterV1 as Schema>::ALIASES.is_empty());

    // The paths are those of the JSON Schema serde's names produce.
    let schema = serde_json::to_value(schemars::schema_for!(IssueV1)).unwrap();
    for (path, _) in <IssueV1 as Schema>::ALIASES {
        let field = path.strip_prefix('/').unwrap();
        assert!(
            schema["properties"].get(field).is_some(),
            "{path} in {schema}"
        );
    }
    let old: IssueV1 =
        serde_json::from_str(r#"{"mail": "a@b", "subject": "s", "open": true, "createdAt": 1}"#)
            .unwrap();
    assert_eq!(old.email_address, "a@b");
    assert_eq!(old.title_text, "s");
    assert!(old.is_open);
    assert_eq!(old.created_at, 1);
}
