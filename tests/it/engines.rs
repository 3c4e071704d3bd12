//! Both engines side by side: what must be the same on sled and PostgreSQL whatever the test
//! (the order documents are listed in).

use revolve::{Schema, StepError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use revolve::Store;

use crate::engine::{postgres_url, Engine, Sled};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Note {
    n: u32,
}

impl Schema for Note {
    const COLLECTION: &'static str = "notes";
    const VERSION: u32 = 1;
    type Previous = Self;
    fn upgrade(previous: Self) -> Result<Self, StepError> {
        Ok(previous)
    }
}

/// Ids that a locale's collation orders differently from their bytes: case, accents, symbols,
/// digits, prefixes, non-Latin scripts.
const IDS: &[&str] = &[
    "b", "B", "a", "A", "aa", "a-b", "a_b", "a.b", "a b", "ab", "Z", "z", "é", "e", "É", "f", "0",
    "10", "9", "~", "!", "日本", "中", "ß", "ss", "ä", "az", "Å", "ø", "o", "a\u{301}",
];

fn listed(store: &Store) -> Vec<String> {
    let notes = store.collection::<Note>().unwrap();
    for (n, id) in IDS.iter().enumerate() {
        notes
            .insert_with_id(
                id,
                &Note {
                    n: u32::try_from(n).unwrap(),
                },
            )
            .unwrap();
    }
    let all: Vec<String> = notes
        .iter()
        .map(|document| document.unwrap().id.into_string())
        .collect();
    let after: Vec<String> = notes
        .iter_after("a")
        .map(|document| document.unwrap().id.into_string())
        .collect();
    [all, vec!["--".to_owned()], after].concat()
}

/// A database of the test server whose default collation is ICU's English one, made once: ids
/// there sort by bytes only if revolve's columns say `COLLATE "C"`.
fn english_database(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let (server, _) = base.rsplit_once('/').unwrap();
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = 'revolve_english'",
            &[],
        )
        .unwrap()
        .is_some();
    if !exists {
        // Another test process may make it at the same moment.
        let _ = client.batch_execute(
            "CREATE DATABASE revolve_english TEMPLATE template0
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'",
        );
    }
    if query.is_empty() {
        format!("{server}/revolve_english")
    } else {
        format!("{server}/revolve_english?{query}")
    }
}

/// PostgreSQL lists ids in byte order, as sled does, from the start and after an id, even in a
/// database whose default collation orders them otherwise (`text COLLATE "C"`).
#[test]
fn both_engines_list_ids_in_byte_order() {
    let Some(url) = postgres_url() else {
        return;
    };
    let on_sled = listed(&Sled::temporary());
    let mut bytes: Vec<&str> = IDS.to_vec();
    bytes.sort_unstable();
    assert_eq!(&on_sled[..IDS.len()], &bytes[..]);
    let english = Store::builder()
        .url(english_database(&url))
        .temporary(true)
        .open()
        .unwrap();
    assert_eq!(listed(&english), on_sled);
}
