//! Shared fixtures: document types, stores holding version-1 documents, gates that hold a step
//! until a test opens them, and a small request builder over `oneshot`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use revolve::{Collection, Durability, Schema, StepError, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

pub(crate) const TOKEN: &str = "test-token-0123456789";

// ---- issues: version 1 → 2; the step refuses the status `broken`. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
pub(crate) struct IssueV1 {
    pub(crate) title: String,
    pub(crate) status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
pub(crate) struct IssueV2 {
    pub(crate) title: String,
    pub(crate) status: Status,
    pub(crate) priority: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Open,
    Closed,
}

fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, StepError> {
    let status = match old.status.as_str() {
        "open" => Status::Open,
        "closed" => Status::Closed,
        other => return Err(StepError::new(format!("unknown status `{other}`"))),
    };
    Ok(IssueV2 {
        title: old.title,
        status,
        priority: 1,
    })
}

pub(crate) fn v1(title: &str) -> IssueV1 {
    IssueV1 {
        title: title.to_owned(),
        status: "open".to_owned(),
    }
}

pub(crate) fn issue_json(title: &str) -> Value {
    serde_json::json!({ "title": title, "status": "open", "priority": 2 })
}

// ---- gated: version 1 → 2; the step of a document naming a gate waits until it opens. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "gated", version = 1)]
pub(crate) struct GatedV1 {
    pub(crate) n: u64,
    pub(crate) gate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "gated", version = 2, from = GatedV1, step = gated_v1_to_v2)]
pub(crate) struct GatedV2 {
    pub(crate) n: u64,
    pub(crate) gate: Option<String>,
    pub(crate) doubled: u64,
}

#[allow(clippy::unnecessary_wraps)] // the signature a step has
fn gated_v1_to_v2(old: GatedV1) -> Result<GatedV2, StepError> {
    if let Some(gate) = &old.gate {
        wait_for(gate);
    }
    Ok(GatedV2 {
        n: old.n,
        gate: old.gate,
        doubled: old.n * 2,
    })
}

static GATES: Mutex<BTreeMap<String, bool>> = Mutex::new(BTreeMap::new());
static OPENED: Condvar = Condvar::new();
/// The gates a step has reached (and waits at, until they open).
static REACHED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static ARRIVED: Condvar = Condvar::new();

/// Blocks until `gate` opens; gives up after a minute so that a failed test cannot hang the run.
fn wait_for(gate: &str) {
    REACHED.lock().unwrap().insert(gate.to_owned());
    ARRIVED.notify_all();
    let mut gates = GATES.lock().unwrap();
    let mut waited = Duration::ZERO;
    while !gates.get(gate).copied().unwrap_or(false) && waited < Duration::from_secs(60) {
        let (next, _) = OPENED
            .wait_timeout(gates, Duration::from_millis(100))
            .unwrap();
        gates = next;
        waited += Duration::from_millis(100);
    }
}

/// A gate, opened when dropped so that a failing test never leaves a step waiting.
pub(crate) struct Gate(String);

impl Gate {
    pub(crate) fn new(name: &str) -> Self {
        GATES.lock().unwrap().insert(name.to_owned(), false);
        Self(name.to_owned())
    }

    pub(crate) fn open(&self) {
        GATES.lock().unwrap().insert(self.0.clone(), true);
        OPENED.notify_all();
    }

    /// Waits until a step waits at this gate: `false` if none did within `timeout`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn reached(&self, timeout: Duration) -> bool {
        let reached = REACHED.lock().unwrap();
        let (reached, _) = ARRIVED
            .wait_timeout_while(reached, timeout, |reached| !reached.contains(&self.0))
            .unwrap();
        reached.contains(&self.0)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

// ---- stores ----

/// A store in a fresh directory whose collection of `Old` holds `documents`, written by a program
/// that knew only `Old`, reopened for a program that knows the whole chain.
pub(crate) fn store_with<Old: Schema>(documents: &[Old]) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::builder()
            .path(dir.path())
            .durability(Durability::Eventual)
            .open()
            .unwrap();
        store
            .collection::<Old>()
            .unwrap()
            .insert_many(documents)
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::builder()
        .path(dir.path())
        .durability(Durability::Eventual)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .unwrap();
    (dir, store)
}

/// As [`store_with`], each document under the id given.
pub(crate) fn store_with_ids<Old: Schema>(documents: &[(&str, Old)]) -> (TempDir, Store) {
    let (dir, store) = store_with::<Old>(&[]);
    drop(store);
    {
        let store = Store::builder()
            .path(dir.path())
            .lock_timeout(Duration::from_secs(30))
            .open()
            .unwrap();
        let collection = store.collection::<Old>().unwrap();
        for (id, document) in documents {
            collection.insert_with_id(id, document).unwrap();
        }
    }
    let store = Store::builder()
        .path(dir.path())
        .durability(Durability::Eventual)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .unwrap();
    (dir, store)
}

/// A router over `store` with `issues` mounted and [`TOKEN`].
pub(crate) fn router(store: &Store) -> axum::Router {
    revolve::http::Router::new(store.clone())
        .collection::<IssueV2>()
        .unwrap()
        .token(TOKEN)
        .body_limit(4096)
        .build()
        .unwrap()
}

/// A store with three version-1 issues and the router over it, plus a typed handle.
pub(crate) fn issues() -> (TempDir, Store, axum::Router, Collection<IssueV2>) {
    let (dir, store) = store_with(&[v1("first"), v1("second"), v1("third")]);
    let app = router(&store);
    let issues = store.collection::<IssueV2>().unwrap();
    (dir, store, app, issues)
}

// ---- requests ----

pub(crate) struct Call {
    request: axum::http::request::Builder,
    body: Body,
}

pub(crate) fn call(method: Method, uri: &str) -> Call {
    Call {
        request: Request::builder().method(method).uri(uri),
        body: Body::empty(),
    }
}

pub(crate) fn get(uri: &str) -> Call {
    call(Method::GET, uri)
}

pub(crate) fn post(uri: &str) -> Call {
    call(Method::POST, uri).auth()
}

pub(crate) fn put(uri: &str) -> Call {
    call(Method::PUT, uri).auth()
}

pub(crate) fn delete(uri: &str) -> Call {
    call(Method::DELETE, uri).auth()
}

impl Call {
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    pub(crate) fn auth(self) -> Self {
        self.header("authorization", &format!("Bearer {TOKEN}"))
    }

    pub(crate) fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .raw(value.to_string())
    }

    pub(crate) fn raw(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) fn request(self) -> Request<Body> {
        self.request.body(self.body).unwrap()
    }

    pub(crate) async fn send(self, app: &axum::Router) -> Reply {
        let response = app.clone().oneshot(self.request()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }

    /// Asserts the status, and for an error that the body is a problem of that status.
    #[track_caller]
    pub(crate) fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                self.headers.get(header::CONTENT_TYPE),
                Some(&HeaderValue::from_static("application/problem+json")),
                "{:?}",
                self.headers
            );
            let problem = self.json();
            assert_eq!(problem["status"], status.as_u16(), "{problem}");
            assert!(
                problem["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("urn:revolve:problem:")),
                "{problem}"
            );
            assert!(problem["title"].is_string() && problem["detail"].is_string());
            return problem;
        }
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}
