//! `crate = "..."` names revolve through a re-export, as a library wrapping revolve would.

mod storage {
    pub use revolve as engine;
}

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema, storage::engine::Schema)]
#[schema(collection = "notes", version = 1, crate = "storage::engine")]
struct NoteV1 {
    text: String,
}

#[derive(Serialize, Deserialize, JsonSchema, storage::engine::Schema)]
#[schema(collection = "notes", version = 2, from = NoteV1, step = note_v1_to_v2)]
#[schema(crate = "crate::storage::engine")]
struct NoteV2 {
    text: String,
    pinned: bool,
}

fn note_v1_to_v2(old: NoteV1) -> Result<NoteV2, storage::engine::StepError> {
    Ok(NoteV2 {
        text: old.text,
        pinned: false,
    })
}

fn main() {
    assert_eq!(<NoteV2 as storage::engine::Schema>::VERSION, 2);
}
