//! What the library logs through `tracing`, captured by a small test subscriber: a span per
//! migration run with its fields and counts, one warning per chunk that had failures, schema
//! registration, and never a payload above `debug`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use revolve::{Schema, StepError};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::engine::{Engine, Place};

/// Every document's title holds this; a step error quotes the title.
const PAYLOAD: &str = "payload-secret";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "logged", version = 1)]
struct LoggedV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "logged", version = 2, from = LoggedV1, step = logged_v1_to_v2)]
struct LoggedV2 {
    title: String,
    length: u64,
}

/// Version 1 as another program defines it: a type change, not a compatible one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "logged", version = 1)]
struct LoggedV1Changed {
    title: u64,
}

fn logged_v1_to_v2(old: LoggedV1) -> Result<LoggedV2, StepError> {
    if old.title.starts_with("fail") {
        // Quotes the payload, as real steps' messages do.
        return Err(StepError::new(format!(
            "`{}` cannot be migrated",
            old.title
        )));
    }
    Ok(LoggedV2 {
        length: old.title.len() as u64,
        title: old.title,
    })
}

// ---- A subscriber that keeps every span and event, with their fields as text. ----
//
// It is the process's global subscriber, and keeps what the threads inside `capture` emit. A
// subscriber set for one thread only (`with_default`) misses events whose callsite another test's
// thread reached first: the callsite's interest is cached from that thread's (absent) subscriber.

type Fields = BTreeMap<String, String>;

#[derive(Debug, Default)]
struct Captured {
    /// Spans by id: name and fields (recorded ones included), in the order they were created.
    spans: BTreeMap<u64, (String, Fields)>,
    /// Events: level, fields (the message under `message`).
    events: Vec<(Level, Fields)>,
}

impl Captured {
    fn spans(&self, name: &str) -> Vec<&Fields> {
        self.spans
            .values()
            .filter(|(span, _)| span == name)
            .map(|(_, fields)| fields)
            .collect()
    }

    fn events(&self, level: Level, message: &str) -> Vec<&Fields> {
        self.events
            .iter()
            .filter(|(at, fields)| {
                *at == level
                    && fields
                        .get("message")
                        .is_some_and(|m| m.starts_with(message))
            })
            .map(|(_, fields)| fields)
            .collect()
    }

    /// Every name and value captured, as one text.
    fn text(&self) -> String {
        let mut text = String::new();
        for (name, fields) in self.spans.values() {
            let _ = write!(text, "{name}{fields:?}");
        }
        for (_, fields) in &self.events {
            let _ = write!(text, "{fields:?}");
        }
        text
    }
}

thread_local! {
    /// What this thread captures, and up to which level.
    static CAPTURING: RefCell<Option<(Level, Arc<Mutex<Captured>>)>> = const { RefCell::new(None) };
}

/// The capture of the current thread, if it captures `level`.
fn capturing(level: Level) -> Option<Arc<Mutex<Captured>>> {
    CAPTURING.with(|capturing| {
        capturing
            .borrow()
            .as_ref()
            .filter(|(max, _)| level <= *max)
            .map(|(_, captured)| Arc::clone(captured))
    })
}

struct Capture {
    next: AtomicU64,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Asked again at every call: whether it is enabled depends on the thread.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        capturing(*metadata.level()).is_some()
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        if let Some(captured) = capturing(*attributes.metadata().level()) {
            let mut fields = Fields::new();
            attributes.record(&mut Visitor(&mut fields));
            let name = attributes.metadata().name().to_owned();
            captured.lock().unwrap().spans.insert(id, (name, fields));
        }
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(captured) = capturing(Level::ERROR) {
            if let Some((_, fields)) = captured.lock().unwrap().spans.get_mut(&span.into_u64()) {
                values.record(&mut Visitor(fields));
            }
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let level = *event.metadata().level();
        if let Some(captured) = capturing(level) {
            let mut fields = Fields::new();
            event.record(&mut Visitor(&mut fields));
            captured.lock().unwrap().events.push((level, fields));
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the capturing subscriber as the process's global one, once: the first thing every
/// test of this file does, before it touches the library, so that no callsite it reaches was
/// registered without it.
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Capture {
            next: AtomicU64::new(1),
        })
        .expect("no other global subscriber in this test binary");
    });
}

/// Runs `f` with every span and event up to `max` that this thread emits captured.
fn capture<R>(max: Level, f: impl FnOnce() -> R) -> (R, Captured) {
    install();
    let captured = Arc::new(Mutex::new(Captured::default()));
    CAPTURING.with(|capturing| *capturing.borrow_mut() = Some((max, Arc::clone(&captured))));
    let result = f();
    CAPTURING.with(|capturing| *capturing.borrow_mut() = None);
    let captured = std::mem::take(&mut *captured.lock().unwrap());
    (result, captured)
}

/// 1,500 v1 documents, one in ten failing; returns the store's place and the failing ids.
fn seeded<E: Engine>() -> (E::Place, Vec<String>, Captured) {
    let dir = E::place();
    let ((), registered) = capture(Level::INFO, || {
        let store = dir.open();
        let _ = store.collection::<LoggedV1>().unwrap();
    });
    let store = dir.open();
    let logged = store.collection::<LoggedV1>().unwrap();
    let mut failing = Vec::new();
    for n in 0..1500 {
        let fails = n % 10 == 7;
        let title = format!("{} {PAYLOAD} {n}", if fails { "fail" } else { "keep" });
        let id = logged.insert(&LoggedV1 { title }).unwrap().to_string();
        if fails {
            failing.push(id);
        }
    }
    failing.sort();
    (dir, failing, registered)
}

fn a_run_is_one_span_and_each_chunk_with_failures_one_warning_without_payloads<E: Engine>() {
    install();
    let (dir, failing, registered) = seeded::<E>();
    let registration = registered.events(Level::INFO, "schema version registered");
    assert_eq!(registration.len(), 1, "{registered:?}");
    assert_eq!(registration[0]["collection"], "logged");
    assert_eq!(registration[0]["version"], "1");

    let store = dir.open();
    let (report, captured) = capture(Level::DEBUG, || {
        let logged = store.collection::<LoggedV2>().unwrap();
        logged.migrate().threads(2).execute().unwrap()
    });
    assert_eq!((report.migrated, report.failed), (1350, 150));
    let run = report.run_id.unwrap().to_string();

    let spans = captured.spans("migration");
    assert_eq!(spans.len(), 1, "{captured:?}");
    let span = spans[0];
    for (field, value) in [
        ("collection", "logged"),
        ("run", run.as_str()),
        ("from", "[1]"),
        ("to", "2"),
        ("dry_run", "false"),
        ("scanned", "1500"),
        ("migrated", "1350"),
        ("failed", "150"),
        ("skipped", "0"),
        ("state", "DoneWithFailures"),
    ] {
        assert_eq!(
            span.get(field).map(String::as_str),
            Some(value),
            "{field}: {span:?}"
        );
    }
    assert!(span.contains_key("elapsed_ms"), "{span:?}");
    assert_eq!(
        captured.events(Level::INFO, "migration run finished").len(),
        1
    );

    // Chunks of 1000 in id order: 100 failures in the first, 50 in the second.
    let warnings = captured.events(Level::WARN, "documents of a chunk failed");
    assert_eq!(warnings.len(), 2, "{captured:?}");
    let counts: Vec<(&str, &str)> = warnings
        .iter()
        .map(|w| (w["failed"].as_str(), w["step"].as_str()))
        .collect();
    assert_eq!(counts, [("100", "100"), ("50", "50")]);
    assert_eq!(warnings[0]["first_failed_id"], failing[0]);
    assert_eq!(warnings[0]["panic"], "0");
    assert!(failing.contains(&warnings[1]["first_failed_id"]));

    // The step's messages quote the payload: they are `debug` events, and nothing else is.
    let failed = captured.events(Level::DEBUG, "document failed to migrate");
    assert_eq!(failed.len(), 150, "{captured:?}");
    assert!(failed[0]["error"].contains(PAYLOAD));
    for (level, fields) in &captured.events {
        let text = format!("{fields:?}");
        if *level != Level::DEBUG {
            assert!(!text.contains(PAYLOAD), "a payload was logged: {text}");
        }
    }
    for (name, fields) in captured.spans.values() {
        let text = format!("{name}{fields:?}");
        assert!(!text.contains(PAYLOAD), "a payload was logged: {text}");
    }

    let (reverted, captured) = capture(Level::INFO, || {
        let logged = store.collection::<LoggedV2>().unwrap();
        logged.revert(report.run_id.unwrap()).unwrap()
    });
    let text = captured.text();
    assert!(!text.contains(PAYLOAD), "a payload was logged: {text}");
    let spans = captured.spans("revert");
    assert_eq!(spans.len(), 1, "{captured:?}");
    assert_eq!(spans[0]["of"], run);
    let finished = captured.events(Level::INFO, "revert finished");
    assert_eq!(finished[0]["reverted"], reverted.reverted.to_string());
    assert_eq!(reverted.reverted, 1350);
}

fn an_incompatible_schema_change_is_refused_with_a_warning<E: Engine>() {
    install();
    let (dir, _, _) = seeded::<E>();
    let store = dir.open();
    let (refused, captured) = capture(Level::INFO, || {
        store.collection::<LoggedV1Changed>().map(drop)
    });
    assert!(refused.is_err());
    let warnings = captured.events(Level::WARN, "refused: the schema of a version changed");
    assert_eq!(warnings.len(), 1, "{captured:?}");
    assert_eq!(warnings[0]["collection"], "logged");
    assert_eq!(warnings[0]["version"], "1");
}

fn step_messages_and_chunk_spans_are_at_debug<E: Engine>() {
    install();
    let (dir, failing, _) = seeded::<E>();
    let store = dir.open();
    let (report, captured) = capture(Level::DEBUG, || {
        let logged = store.collection::<LoggedV2>().unwrap();
        logged.migrate().threads(2).dry_run().unwrap()
    });
    assert_eq!(report.failed, 150);
    let spans = captured.spans("migration");
    assert_eq!(spans[0]["dry_run"], "true");

    let chunks = captured.spans("chunk");
    let documents: Vec<&str> = chunks.iter().map(|c| c["documents"].as_str()).collect();
    assert_eq!(documents, ["1000", "500"]);
    assert_eq!(chunks[0]["failed"], "100");
    assert!(chunks.iter().all(|c| c.contains_key("commit_ms")));

    let failed = captured.events(Level::DEBUG, "document failed to migrate");
    assert_eq!(failed.len(), 150);
    assert_eq!(failed[0]["id"], failing[0]);
    assert_eq!(failed[0]["class"], "step");
    assert!(failed[0]["error"].contains(PAYLOAD));
    // The payload is only in those debug events.
    let elsewhere = captured
        .events
        .iter()
        .filter(|(level, fields)| *level != Level::DEBUG && format!("{fields:?}").contains(PAYLOAD))
        .count();
    assert_eq!(elsewhere, 0);
    assert!(captured
        .spans
        .values()
        .all(|(_, fields)| !format!("{fields:?}").contains(PAYLOAD)));
}

engine_tests! {
    a_run_is_one_span_and_each_chunk_with_failures_one_warning_without_payloads,
    an_incompatible_schema_change_is_refused_with_a_warning,
    step_messages_and_chunk_spans_are_at_debug,
}
