//! Lazy upgrades on read across several builds' data, failing and panicking steps, versions too new
//! for the reader, and collection registration errors.

use std::collections::BTreeMap;

use revolve::{Collection, Revision, Schema, SchemaError, StepError, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Place};

// ---- A chain of four versions: a `step` function, `From` and `TryFrom`. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tickets", version = 1)]
struct TicketV1 {
    title: String,
    priority: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tickets", version = 2, from = TicketV1, step = ticket_v1_to_v2)]
struct TicketV2 {
    title: String,
    priority: u8,
}

fn ticket_v1_to_v2(old: TicketV1) -> Result<TicketV2, StepError> {
    assert!(old.title != "boom", "the step met a bomb");
    let priority = match old.priority.as_str() {
        "low" => 0,
        "normal" => 1,
        "high" => 2,
        other => return Err(StepError::new(format!("priority `{other}` is not known"))),
    };
    Ok(TicketV2 {
        title: old.title,
        priority,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tickets", version = 3, from = TicketV2)]
struct TicketV3 {
    summary: String,
    priority: u8,
    labels: Vec<String>,
}

impl From<TicketV2> for TicketV3 {
    fn from(old: TicketV2) -> Self {
        TicketV3 {
            summary: old.title,
            priority: old.priority,
            labels: vec!["imported".to_owned()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
enum Priority {
    Low,
    Normal,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tickets", version = 4, from = TicketV3)]
struct TicketV4 {
    summary: String,
    priority: Priority,
    labels: Vec<String>,
    closed: bool,
}

impl TryFrom<TicketV3> for TicketV4 {
    type Error = String;

    fn try_from(old: TicketV3) -> Result<Self, String> {
        let priority = match old.priority {
            0 => Priority::Low,
            1 => Priority::Normal,
            2 => Priority::High,
            other => return Err(format!("priority {other} is out of range")),
        };
        Ok(TicketV4 {
            summary: old.summary,
            priority,
            labels: old.labels,
            closed: false,
        })
    }
}

fn v1(title: &str, priority: &str) -> TicketV1 {
    TicketV1 {
        title: title.to_owned(),
        priority: priority.to_owned(),
    }
}

fn v2(title: &str, priority: u8) -> TicketV2 {
    TicketV2 {
        title: title.to_owned(),
        priority,
    }
}

fn v3(summary: &str, priority: u8, labels: &[&str]) -> TicketV3 {
    TicketV3 {
        summary: summary.to_owned(),
        priority,
        labels: labels.iter().map(|&label| label.to_owned()).collect(),
    }
}

fn v4(summary: &str, priority: Priority, labels: &[&str]) -> TicketV4 {
    TicketV4 {
        summary: summary.to_owned(),
        priority,
        labels: labels.iter().map(|&label| label.to_owned()).collect(),
        closed: false,
    }
}

fn rev(n: u64) -> Revision {
    Revision::new(n).unwrap()
}

/// A program that knows `T` as its latest version, opening the store at `place`.
fn open<T: Schema>(place: &impl Place) -> (Store, Collection<T>) {
    let store = place.open();
    let collection = store.collection::<T>().unwrap();
    (store, collection)
}

/// The id, revision, step and error of a read whose step failed or panicked, as text to compare.
fn step_failure(result: Result<Option<revolve::Document<TicketV4>>, StoreError>) -> String {
    match result {
        Err(StoreError::Upgrade {
            id,
            revision,
            source,
            ..
        }) => match *source {
            SchemaError::Step {
                collection,
                from,
                to,
                source,
                ..
            } => format!("{collection}/{id}@{revision}: {from}->{to}: {source}"),
            SchemaError::StepPanicked {
                collection,
                from,
                to,
                message,
                ..
            } => format!("{collection}/{id}@{revision}: {from}->{to}: panicked: {message}"),
            other => panic!("expected a failed step, got {other:?}"),
        },
        other => panic!("expected a failed step, got {other:?}"),
    }
}

const IDS: [&str; 9] = [
    "t1-low",
    "t1-high",
    "t1-bad",
    "t1-boom",
    "t1-edited",
    "t2",
    "t2-bad",
    "t3",
    "t3-bad",
];

/// Writes documents as three builds would, each knowing one version more than the one before.
fn write_with_three_older_builds(place: &impl Place) {
    // The build that knows only version 1.
    {
        let (_store, tickets) = open::<TicketV1>(place);
        tickets
            .insert_with_id("t1-low", &v1("one low", "low"))
            .unwrap();
        tickets
            .insert_with_id("t1-high", &v1("one high", "high"))
            .unwrap();
        tickets
            .insert_with_id("t1-bad", &v1("one bad", "urgent!"))
            .unwrap();
        tickets
            .insert_with_id("t1-boom", &v1("boom", "low"))
            .unwrap();
        tickets
            .insert_with_id("t1-edited", &v1("edited", "normal"))
            .unwrap();
    }
    // The build that knows versions 1 and 2.
    {
        let (_store, tickets) = open::<TicketV2>(place);
        let edited = tickets.get("t1-edited").unwrap().unwrap();
        assert_eq!((edited.stored_version, &edited.data), (1, &v2("edited", 1)));
        tickets
            .update("t1-edited", &v2("edited at two", 2))
            .unwrap();
        tickets.insert_with_id("t2", &v2("two", 2)).unwrap();
        // Fine at version 3, out of range for version 4's step.
        tickets.insert_with_id("t2-bad", &v2("two bad", 7)).unwrap();
    }
    // The build that knows versions 1 to 3.
    {
        let (_store, tickets) = open::<TicketV3>(place);
        tickets
            .insert_with_id("t3", &v3("three", 0, &["x"]))
            .unwrap();
        tickets
            .insert_with_id("t3-bad", &v3("three bad", 9, &[]))
            .unwrap();
        assert_eq!(
            tickets.count_by_version().unwrap(),
            BTreeMap::from([(1, 4), (2, 3), (3, 2)])
        );
    }
}

fn lazy_reads_upgrade_data_written_by_three_older_builds<E: Engine>() {
    let dir = E::place();
    let path = &dir;

    write_with_three_older_builds(path);

    // The build that knows versions 1 to 4 reads everything, lazily.
    let (store, tickets) = open::<TicketV4>(path);
    let counts_before = tickets.count_by_version().unwrap();
    assert_eq!(counts_before, BTreeMap::from([(1, 4), (2, 3), (3, 2)]));
    let snapshot = |tickets: &Collection<TicketV4>| -> Vec<(usize, Vec<u8>)> {
        IDS.iter()
            .map(|id| {
                let history = tickets.history(id).unwrap();
                let head = history.last().unwrap().revision;
                let bytes = tickets.raw_revision(id, head).unwrap().unwrap().bytes;
                (history.len(), bytes)
            })
            .collect()
    };
    let before = snapshot(&tickets);

    let read = |id: &str| tickets.get(id).unwrap().unwrap();
    let imported = ["imported"];
    let expected = [
        ("t1-low", 1, 1, v4("one low", Priority::Low, &imported)),
        ("t1-high", 1, 1, v4("one high", Priority::High, &imported)),
        (
            "t1-edited",
            2,
            2,
            v4("edited at two", Priority::High, &imported),
        ),
        ("t2", 1, 2, v4("two", Priority::High, &imported)),
        ("t3", 1, 3, v4("three", Priority::Low, &["x"])),
    ];
    for (id, revision, stored_version, data) in &expected {
        let doc = read(id);
        assert_eq!(doc.id.as_str(), *id);
        assert_eq!(doc.revision, rev(*revision), "{id}");
        assert_eq!(doc.stored_version, *stored_version, "{id}");
        assert_eq!(&doc.data, data, "{id}");
    }
    // An older revision is upgraded from its own version.
    let first = tickets
        .revision("t1-edited", Revision::FIRST)
        .unwrap()
        .unwrap();
    assert_eq!(first.stored_version, 1);
    assert_eq!(first.data, v4("edited", Priority::Normal, &imported));

    // Failing steps fail only their document, with the step that failed.
    assert_eq!(
        step_failure(tickets.get("t1-bad")),
        "tickets/t1-bad@1: 1->2: priority `urgent!` is not known"
    );
    // A panicking step is caught: it fails its document and nothing else.
    assert_eq!(
        step_failure(tickets.get("t1-boom")),
        "tickets/t1-boom@1: 1->2: panicked: the step met a bomb"
    );
    assert_eq!(
        step_failure(tickets.get("t2-bad")),
        "tickets/t2-bad@1: 3->4: priority 7 is out of range"
    );
    assert_eq!(
        step_failure(tickets.get("t3-bad")),
        "tickets/t3-bad@1: 3->4: priority 9 is out of range"
    );
    let listed: Vec<Result<_, _>> = tickets.iter().collect();
    assert_eq!(listed.len(), IDS.len());
    assert_eq!(listed.iter().filter(|doc| doc.is_err()).count(), 4);
    for result in &listed {
        if let Err(error) = result {
            assert!(matches!(error, StoreError::Upgrade { .. }), "{error:?}");
        }
    }

    // Reading wrote nothing: no revision, no counter change, not a byte.
    assert_eq!(snapshot(&tickets), before);
    assert_eq!(tickets.count_by_version().unwrap(), counts_before);
    drop(tickets);
    drop(store);
    let (_store, tickets) = open::<TicketV4>(path);
    assert_eq!(snapshot(&tickets), before);
    assert_eq!(tickets.count_by_version().unwrap(), counts_before);

    // Writing at version 4 appends; the version 1 bytes stay in the history.
    let old_bytes = tickets
        .raw_revision("t1-low", Revision::FIRST)
        .unwrap()
        .unwrap();
    let mut changed = tickets.get("t1-low").unwrap().unwrap().data;
    changed.closed = true;
    assert_eq!(tickets.update("t1-low", &changed).unwrap(), rev(2));
    let doc = tickets.get("t1-low").unwrap().unwrap();
    assert_eq!((doc.stored_version, doc.data), (4, changed));
    assert_eq!(
        tickets
            .raw_revision("t1-low", Revision::FIRST)
            .unwrap()
            .unwrap(),
        old_bytes
    );
    assert_eq!(old_bytes.info.version, Some(1));
    assert_eq!(
        old_bytes.payload.unwrap(),
        serde_json::json!({ "title": "one low", "priority": "low" })
    );
    assert_eq!(
        tickets.count_by_version().unwrap(),
        BTreeMap::from([(1, 3), (2, 3), (3, 2), (4, 1)])
    );
}

// ---- A field added with `#[serde(default)]`, without a new version. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "prefs", version = 1)]
struct PrefsBefore {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "prefs", version = 1)]
struct PrefsAfter {
    name: String,
    #[serde(default)]
    dark: bool,
    #[serde(default = "default_font")]
    font: String,
}

fn default_font() -> String {
    "mono".to_owned()
}

fn a_defaulted_field_fills_in_on_old_documents<E: Engine>() {
    let dir = E::place();
    {
        let (_store, prefs) = open::<PrefsBefore>(&dir);
        prefs
            .insert_with_id(
                "ada",
                &PrefsBefore {
                    name: "Ada".to_owned(),
                },
            )
            .unwrap();
    }
    let (_store, prefs) = open::<PrefsAfter>(&dir);
    let doc = prefs.get("ada").unwrap().unwrap();
    assert_eq!(doc.stored_version, 1);
    assert_eq!(
        doc.data,
        PrefsAfter {
            name: "Ada".to_owned(),
            dark: false,
            font: "mono".to_owned(),
        }
    );
    let mut changed = doc.data;
    changed.dark = true;
    prefs.update("ada", &changed).unwrap();
    assert_eq!(prefs.get("ada").unwrap().unwrap().data, changed);
    assert_eq!(prefs.count_by_version().unwrap(), BTreeMap::from([(1, 1)]));
}

// ---- Versions newer than the reader. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "letters", version = 1)]
struct LetterV1 {
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "letters", version = 2, from = LetterV1)]
struct LetterV2 {
    text: String,
    signed: bool,
}

impl From<LetterV1> for LetterV2 {
    fn from(old: LetterV1) -> Self {
        LetterV2 {
            text: old.text,
            signed: false,
        }
    }
}

fn letter(text: &str) -> LetterV1 {
    LetterV1 {
        text: text.to_owned(),
    }
}

fn assert_too_new<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::VersionTooNew {
            collection,
            stored: 2,
            known: 1,
            ..
        }) => assert_eq!(collection, "letters", "{what}"),
        other => panic!("{what}: expected VersionTooNew {{ stored: 2, known: 1 }}, got {other:?}"),
    }
}

fn an_older_build_cannot_read_newer_documents_nor_write<E: Engine>() {
    let dir = E::place();
    let path = &dir;
    {
        let (_store, letters) = open::<LetterV1>(path);
        letters.insert_with_id("old", &letter("from one")).unwrap();
    }
    {
        let (_store, letters) = open::<LetterV2>(path);
        assert_eq!(letters.get("old").unwrap().unwrap().stored_version, 1);
        letters
            .insert_with_id(
                "new",
                &LetterV2 {
                    text: "from two".to_owned(),
                    signed: true,
                },
            )
            .unwrap();
    }

    let (_store, letters) = open::<LetterV1>(path);
    let old = letters.get("old").unwrap().unwrap();
    assert_eq!((old.stored_version, old.data), (1, letter("from one")));
    assert_too_new("get", letters.get("new"));
    assert_too_new("revision", letters.revision("new", Revision::FIRST));
    let listed: Vec<_> = letters.iter().collect();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .any(|doc| matches!(doc, Ok(doc) if doc.id == "old")));
    assert!(listed
        .iter()
        .any(|doc| matches!(doc, Err(StoreError::VersionTooNew { stored: 2, .. }))));

    // The raw view still shows what is there.
    let raw = letters
        .raw_revision("new", Revision::FIRST)
        .unwrap()
        .unwrap();
    assert_eq!(raw.info.version, Some(2));
    assert_eq!(
        raw.payload.unwrap(),
        serde_json::json!({ "text": "from two", "signed": true })
    );

    let value = letter("from one, again");
    assert_too_new("insert", letters.insert(&value));
    assert_too_new("insert_many", letters.insert_many([&value]));
    assert_too_new("insert_with_id", letters.insert_with_id("third", &value));
    assert_too_new("update of an old document", letters.update("old", &value));
    assert_too_new("update of a new document", letters.update("new", &value));
    assert_too_new(
        "update_if",
        letters.update_if("old", Revision::FIRST, &value),
    );
    assert_too_new("remove", letters.remove("old"));

    // Nothing was written.
    assert_eq!(
        letters.count_by_version().unwrap(),
        BTreeMap::from([(1, 1), (2, 1)])
    );
    assert_eq!(letters.history("old").unwrap().len(), 1);
    assert_eq!(letters.history("new").unwrap().len(), 1);
    assert!(letters.history("third").unwrap().is_empty());
}

fn registering_a_newer_version_is_enough_to_stop_older_writers<E: Engine>() {
    let dir = E::place();
    let path = &dir;
    {
        let (_store, letters) = open::<LetterV1>(path);
        letters.insert_with_id("old", &letter("one")).unwrap();
    }
    {
        // A newer build opened the collection and wrote nothing.
        let (_store, letters) = open::<LetterV2>(path);
        assert_eq!(
            letters.count_by_version().unwrap(),
            BTreeMap::from([(1, 1)])
        );
    }
    let (_store, letters) = open::<LetterV1>(path);
    assert_eq!(letters.get("old").unwrap().unwrap().data, letter("one"));
    assert_too_new("insert", letters.insert(&letter("two")));
    assert_too_new("update", letters.update("old", &letter("two")));
    assert_eq!(letters.history("old").unwrap().len(), 1);
}

// ---- Registration. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "shared", version = 1)]
struct Cat {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "shared", version = 1)]
struct Invoice {
    total: u64,
}

fn one_store_binds_one_type_per_collection_name<E: Engine>() {
    let store = E::temporary();
    let cats = store.collection::<Cat>().unwrap();
    cats.insert_with_id(
        "tom",
        &Cat {
            name: "Tom".to_owned(),
        },
    )
    .unwrap();
    // The same type again is the same collection.
    let again = store.collection::<Cat>().unwrap();
    assert_eq!(again.get("tom").unwrap().unwrap().data.name, "Tom");

    match store.collection::<Invoice>() {
        Err(StoreError::CollectionTypeMismatch {
            collection,
            registered,
            requested,
        }) => {
            assert_eq!(collection, "shared");
            assert!(registered.ends_with("Cat"), "{registered}");
            assert!(requested.ends_with("Invoice"), "{requested}");
        }
        other => panic!("expected CollectionTypeMismatch, got {other:?}"),
    }
    // Two versions of one chain are two types too: a program reads through its latest only.
    store.collection::<LetterV1>().unwrap();
    assert!(matches!(
        store.collection::<LetterV2>(),
        Err(StoreError::CollectionTypeMismatch { .. })
    ));
    // The refused claims changed nothing.
    assert_eq!(cats.get("tom").unwrap().unwrap().data.name, "Tom");
}

fn raw_collections_exist_only_once_registered<E: Engine>() {
    let store = E::temporary();
    match store.raw_collection("nope") {
        Err(StoreError::UnknownCollection { collection }) => assert_eq!(collection, "nope"),
        other => panic!("expected UnknownCollection, got {other:?}"),
    }
    assert!(store.collection_names().unwrap().is_empty());

    let letters = store.collection::<LetterV2>().unwrap();
    let raw = store.raw_collection("letters").unwrap();
    assert_eq!(raw.name(), "letters");
    assert!(raw.count_by_version().unwrap().is_empty());
    letters
        .insert_with_id(
            "x",
            &LetterV2 {
                text: "hi".to_owned(),
                signed: false,
            },
        )
        .unwrap();
    letters.remove("x").unwrap();
    assert_eq!(raw.history("x").unwrap().len(), 2);
    assert_eq!(raw.removed_count().unwrap(), 1);
    let first = raw.raw_revision("x", Revision::FIRST).unwrap().unwrap();
    assert_eq!(first.info.version, Some(2));
    assert_eq!(
        first.payload.unwrap(),
        serde_json::json!({ "text": "hi", "signed": false })
    );
    assert_eq!(store.collection_names().unwrap(), ["letters"]);
    assert!(matches!(
        store.raw_collection("nope"),
        Err(StoreError::UnknownCollection { .. })
    ));
}

/// A hand-written version 1 of the `gaps` collection.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct GapBase {
    n: u32,
}

impl Schema for GapBase {
    const COLLECTION: &'static str = "gaps";
    const VERSION: u32 = 1;
    type Previous = Self;

    fn upgrade(previous: Self) -> Result<Self, StepError> {
        Ok(previous)
    }
}

/// A hand-written version 3 that skips version 2.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct GapTop {
    n: u32,
}

impl Schema for GapTop {
    const COLLECTION: &'static str = "gaps";
    const VERSION: u32 = 3;
    type Previous = GapBase;

    fn upgrade(previous: GapBase) -> Result<Self, StepError> {
        Ok(GapTop { n: previous.n })
    }
}

fn a_broken_hand_written_chain_is_refused<E: Engine>() {
    let store = E::temporary();
    match store.collection::<GapTop>() {
        Err(StoreError::Schema(SchemaError::InvalidChain { collection, .. })) => {
            assert_eq!(collection, "gaps");
        }
        other => panic!("expected InvalidChain, got {other:?}"),
    }
    assert!(store.collection_names().unwrap().is_empty());
}

engine_tests! {
    lazy_reads_upgrade_data_written_by_three_older_builds,
    a_defaulted_field_fills_in_on_old_documents,
    an_older_build_cannot_read_newer_documents_nor_write,
    registering_a_newer_version_is_enough_to_stop_older_writers,
    one_store_binds_one_type_per_collection_name,
    raw_collections_exist_only_once_registered,
    a_broken_hand_written_chain_is_refused,
}
