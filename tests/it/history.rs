//! History is append-only: every revision's stored bytes stay as written, in order, across reopens.

use std::time::{Duration, SystemTime};

use revolve::{Origin, Revision, Schema};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Place};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "pages", version = 1)]
struct Page {
    title: String,
    body: String,
    edits: u32,
}

/// The page as it is after `edits` edits; sizes vary so that revisions are not all alike.
fn page(edits: u32) -> Page {
    Page {
        title: format!("page after {edits} edits"),
        body: "lorem ipsum ".repeat((edits as usize * 7) % 40),
        edits,
    }
}

fn rev(n: u64) -> Revision {
    Revision::new(n).unwrap()
}

const EDITS: u32 = 60;

fn older_revisions_never_change<E: Engine>() {
    let dir = E::place();
    // Timestamps are stored in microseconds: allow for the truncation.
    let started = SystemTime::now() - Duration::from_micros(1);
    let mut written: Vec<Vec<u8>> = Vec::new();
    {
        let store = dir.open();
        let pages = store.collection::<Page>().unwrap();
        assert_eq!(
            pages.insert_with_id("home", &page(0)).unwrap(),
            Revision::FIRST
        );
        // A neighbour written in between, so that its keys interleave with the document's.
        pages.insert_with_id("home2", &page(0)).unwrap();
        written.push(
            pages
                .raw_revision("home", Revision::FIRST)
                .unwrap()
                .unwrap()
                .bytes,
        );
        for edits in 1..EDITS {
            let revision = pages.update("home", &page(edits)).unwrap();
            assert_eq!(revision.get(), u64::from(edits) + 1);
            pages.update("home2", &page(edits + 1000)).unwrap();
            written.push(pages.raw_revision("home", revision).unwrap().unwrap().bytes);

            // Every older revision is still byte for byte what it was when written.
            for (number, bytes) in (1..).zip(&written) {
                let raw = pages.raw_revision("home", rev(number)).unwrap().unwrap();
                assert_eq!(
                    &raw.bytes, bytes,
                    "revision {number} changed after edit {edits}"
                );
            }
        }
    }

    let store = dir.open();
    let pages = store.collection::<Page>().unwrap();
    let finished = SystemTime::now();
    for (number, bytes) in (1..).zip(&written) {
        let raw = pages.raw_revision("home", rev(number)).unwrap().unwrap();
        assert_eq!(
            &raw.bytes, bytes,
            "revision {number} changed across a reopen"
        );
        let edits = u32::try_from(number - 1).unwrap();
        assert_eq!(
            raw.payload.unwrap(),
            serde_json::to_value(page(edits)).unwrap(),
            "revision {number}"
        );
        assert_eq!(raw.info.version, Some(1));

        let old = pages.revision("home", rev(number)).unwrap().unwrap();
        assert_eq!(old.revision, rev(number));
        assert_eq!(old.stored_version, 1);
        assert_eq!(old.data, page(edits));
    }
    assert!(pages
        .raw_revision("home", rev(u64::from(EDITS) + 1))
        .unwrap()
        .is_none());
    assert!(pages
        .revision("home", rev(u64::from(EDITS) + 1))
        .unwrap()
        .is_none());

    let history = pages.history("home").unwrap();
    assert_eq!(history.len(), EDITS as usize);
    for (number, info) in (1..).zip(&history) {
        assert_eq!(info.revision, rev(number), "history is oldest first");
        assert_eq!(info.parent, Revision::new(number - 1));
        assert_eq!(info.origin, Origin::Write);
        assert_eq!(info.version, Some(1));
        assert!(!info.removed);
        assert!(
            started <= info.timestamp && info.timestamp <= finished,
            "{info:?}"
        );
    }
    for pair in history.windows(2) {
        assert!(pair[0].timestamp <= pair[1].timestamp, "{pair:?}");
    }
    assert_eq!(pages.get("home").unwrap().unwrap().data, page(EDITS - 1));
    assert_eq!(
        pages.get("home2").unwrap().unwrap().data,
        page(EDITS - 1 + 1000)
    );
    assert_eq!(pages.history("home2").unwrap().len(), EDITS as usize);
}

fn history_through_a_removal_and_a_second_life<E: Engine>() {
    let store = E::temporary();
    let pages = store.collection::<Page>().unwrap();
    pages.insert_with_id("p", &page(0)).unwrap();
    pages.update("p", &page(1)).unwrap();
    let before_removal: Vec<Vec<u8>> = (1..=2)
        .map(|n| pages.raw_revision("p", rev(n)).unwrap().unwrap().bytes)
        .collect();
    pages.remove("p").unwrap();
    pages.insert_with_id("p", &page(3)).unwrap();
    pages.update("p", &page(4)).unwrap();

    let history = pages.history("p").unwrap();
    let summary: Vec<(u64, Option<u64>, Option<u32>, bool)> = history
        .iter()
        .map(|info| {
            (
                info.revision.get(),
                info.parent.map(Revision::get),
                info.version,
                info.removed,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, None, Some(1), false),
            (2, Some(1), Some(1), false),
            (3, Some(2), None, true),
            (4, Some(3), Some(1), false),
            (5, Some(4), Some(1), false),
        ]
    );
    for (number, bytes) in (1..).zip(&before_removal) {
        assert_eq!(
            &pages.raw_revision("p", rev(number)).unwrap().unwrap().bytes,
            bytes
        );
    }
    assert_eq!(pages.revision("p", rev(2)).unwrap().unwrap().data, page(1));
    assert_eq!(pages.revision("p", rev(4)).unwrap().unwrap().data, page(3));
}

engine_tests! {
    older_revisions_never_change,
    history_through_a_removal_and_a_second_life,
}
