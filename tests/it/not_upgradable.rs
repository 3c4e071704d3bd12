//! Documents whose step fails: reading one gives its stored version and raw revision, iterating
//! goes past it, and the failure set lists every one page by page.

use revolve::{
    Collection, DocId, FailureClass, Revision, Schema, SchemaError, StepError, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::{Engine, Place};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "cards", version = 1)]
struct CardV1 {
    title: String,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "cards", version = 2, from = CardV1, step = card_v1_to_v2)]
struct CardV2 {
    title: String,
    open: bool,
}

fn card_v1_to_v2(old: CardV1) -> Result<CardV2, StepError> {
    let open = match old.status.as_str() {
        "open" => true,
        "closed" => false,
        other => return Err(StepError::new(format!("unknown status `{other}`"))),
    };
    Ok(CardV2 {
        title: old.title,
        open,
    })
}

fn card(n: usize) -> CardV1 {
    CardV1 {
        title: format!("card {n}"),
        // Every third one is refused by the step.
        status: if n % 3 == 2 { "wontfix" } else { "open" }.to_owned(),
    }
}

/// Ten version-1 cards written by a program that knew only version 1, read by one that knows
/// version 2; the ids in id order and, among them, the refused ones.
fn cards<E: Engine>() -> (
    E::Place,
    Store,
    Collection<CardV2>,
    Vec<String>,
    Vec<String>,
) {
    let dir = E::place();
    let ids: Vec<DocId> = {
        let store = dir.open();
        let cards: Vec<CardV1> = (0..10).map(card).collect();
        store
            .collection::<CardV1>()
            .unwrap()
            .insert_many(&cards)
            .unwrap()
    };
    let refused: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 3 == 2)
        .map(|(_, id)| id.to_string())
        .collect();
    let mut all: Vec<String> = ids.iter().map(ToString::to_string).collect();
    all.sort();
    let mut refused = refused;
    refused.sort();
    let store = dir.open();
    let collection = store.collection::<CardV2>().unwrap();
    (dir, store, collection, all, refused)
}

fn get_of_a_refused_document_gives_its_version_and_raw_revision<E: Engine>() {
    let (_dir, _store, cards, _, refused) = cards::<E>();
    let error = cards.get(&refused[0]).unwrap_err();
    let StoreError::Upgrade {
        collection,
        id,
        revision,
        stored_version,
        raw,
        source,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!((collection.as_str(), id), ("cards", &refused[0]));
    assert_eq!((*revision, *stored_version), (Revision::FIRST, 1));
    assert_eq!(raw.info.revision, Revision::FIRST);
    assert_eq!(raw.info.version, Some(1));
    let payload = raw.payload.as_ref().unwrap();
    assert_eq!(payload["status"], json!("wontfix"));
    assert!(!raw.bytes.is_empty());
    assert!(
        matches!(**source, SchemaError::Step { from: 1, to: 2, .. }),
        "{source:?}"
    );
    assert!(error.to_string().contains("version 1"), "{error}");
    // The same revision, raw, is what `raw_revision` gives.
    assert_eq!(
        cards
            .raw_revision(&refused[0], Revision::FIRST)
            .unwrap()
            .as_ref(),
        Some(&**raw)
    );
    // Asked for by revision, the same error.
    assert!(matches!(
        cards.revision(&refused[0], Revision::FIRST),
        Err(StoreError::Upgrade {
            stored_version: 1,
            ..
        })
    ));
}

fn iter_yields_one_error_per_refused_document_and_goes_on<E: Engine>() {
    let (_dir, _store, cards, all, refused) = cards::<E>();
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    for item in &cards {
        match item {
            Ok(document) => seen.push(document.id.to_string()),
            Err(StoreError::Upgrade { id, raw, .. }) => {
                assert_eq!(raw.info.version, Some(1));
                seen.push(id.clone());
                errors.push(id);
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, all, "every document, in id order, once");
    assert_eq!(errors, refused);
    // Paging past a refused document goes on too.
    let after: Vec<String> = cards
        .iter_after(&refused[0])
        .map(|item| match item {
            Ok(document) => document.id.to_string(),
            Err(StoreError::Upgrade { id, .. }) => id,
            Err(other) => panic!("{other:?}"),
        })
        .collect();
    let at = all.iter().position(|id| id == &refused[0]).unwrap();
    assert_eq!(after, all[at + 1..]);
}

fn the_failure_set_is_listed_page_by_page<E: Engine>() {
    let (dir, store, cards, _, refused) = cards::<E>();
    assert!(cards.failures_page(None, 100).unwrap().is_empty());
    let report = cards.migrate().execute().unwrap();
    assert_eq!((report.migrated, report.failed), (7, 3));

    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = cards.failures_page(after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        for failure in &page {
            assert_eq!(failure.revision, Revision::FIRST);
            assert_eq!(failure.from_version, 1);
            assert_eq!(failure.class, FailureClass::Step);
            assert!(
                failure.error.contains("unknown status `wontfix`"),
                "{failure:?}"
            );
        }
        listed.extend(page.iter().map(|failure| failure.id.to_string()));
        if page.len() < 2 {
            break;
        }
        after = page.last().map(|failure| failure.id.to_string());
    }
    assert_eq!(listed, refused);

    // A write takes the document out of the set.
    cards
        .update(
            &refused[1],
            &CardV2 {
                title: "fixed".to_owned(),
                open: true,
            },
        )
        .unwrap();
    let left: Vec<String> = cards
        .failures_page(None, 10)
        .unwrap()
        .iter()
        .map(|failure| failure.id.to_string())
        .collect();
    assert_eq!(left, [refused[0].clone(), refused[2].clone()]);

    // Without the types, the same list.
    let raw = store.raw_collection("cards").unwrap();
    let raw_left: Vec<String> = raw
        .failures_page(Some(&refused[0]), 10)
        .unwrap()
        .iter()
        .map(|failure| failure.id.to_string())
        .collect();
    assert_eq!(raw_left, [refused[2].clone()]);
    drop(dir);
}

engine_tests! {
    get_of_a_refused_document_gives_its_version_and_raw_revision,
    iter_yields_one_error_per_refused_document_and_goes_on,
    the_failure_set_is_listed_page_by_page,
}
