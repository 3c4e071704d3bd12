//! Migration runs over HTTP: the ndjson progress stream arrives while the run is still going, a
//! second run meanwhile gets 409, and a client that goes away leaves the run to finish in the
//! ledger.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use http_body_util::BodyExt;
use revolve::{Collection, RunState, Store};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{get, post, store_with, Gate, GatedV1, GatedV2, TOKEN};

/// `count` version-1 documents; the one numbered `gated_at` waits at `gate` in its step.
pub(crate) fn gated_documents(count: u64, gated_at: u64, gate: &str) -> Vec<GatedV1> {
    (0..count)
        .map(|n| GatedV1 {
            n,
            gate: (n == gated_at).then(|| gate.to_owned()),
        })
        .collect()
}

pub(crate) fn gated_router(store: &Store) -> axum::Router {
    revolve::http::Router::new(store.clone())
        .collection::<GatedV2>()
        .unwrap()
        .token(TOKEN)
        .build()
        .unwrap()
}

/// Reads the body up to the next newline.
pub(crate) async fn next_line(body: &mut Body, buffer: &mut Vec<u8>) -> Option<Value> {
    loop {
        if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            return Some(serde_json::from_slice(&line).unwrap());
        }
        let frame = body.frame().await?.unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
}

/// Polls the run until it is no longer running (the run goes on in the background).
pub(crate) async fn finished_run(app: &axum::Router, collection: &str, run: u64) -> Value {
    for _ in 0..6000 {
        let record = get(&format!("/{collection}/migrate/runs/{run}"))
            .auth()
            .send(app)
            .await
            .expect(StatusCode::OK);
        if record["state"] != "running" {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run} did not finish");
}

async fn start_streaming_run(app: &axum::Router) -> (Body, Vec<u8>, Value) {
    start_streaming(app, "/gated/migrate/execute").await
}

/// POSTs `uri` asking for ndjson: the body, what was read of it, and its first line.
pub(crate) async fn start_streaming(app: &axum::Router, uri: &str) -> (Body, Vec<u8>, Value) {
    let response = app
        .clone()
        .oneshot(post(uri).header("accept", "application/x-ndjson").request())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/x-ndjson"
    );
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let first = next_line(&mut body, &mut buffer).await.unwrap();
    (body, buffer, first)
}

fn assert_under_way(gated: &Collection<GatedV2>, run: u64) {
    let record = gated.run(run).unwrap().unwrap();
    assert_eq!(record.state, RunState::Running);
    assert!(
        gated
            .count_by_version()
            .unwrap()
            .get(&1)
            .copied()
            .unwrap_or(0)
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_stream_before_the_last_chunk_commits() {
    let gate = Gate::new("stream");
    let (_dir, store) = store_with(&gated_documents(3000, 2500, "stream"));
    let app = gated_router(&store);
    let gated = store.collection::<GatedV2>().unwrap();

    let (mut body, mut buffer, first) = start_streaming_run(&app).await;
    assert_eq!(first["event"], "progress", "{first}");
    assert_eq!(first["total"], 3000);
    assert!(first["done"].as_u64().unwrap() < 3000);
    let run = first["run_id"].as_u64().unwrap();
    // The chunk holding document 2500 waits at the gate: the run is under way, not committed.
    assert_under_way(&gated, run);

    // Meanwhile a second run, or a dry run, is refused with the running one's id.
    let conflict = post("/gated/migrate/execute").send(&app).await;
    assert_eq!(conflict.expect(StatusCode::CONFLICT)["run_id"], run);
    post("/gated/migrate/test?limit=10")
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    let streamed = post("/gated/migrate/execute")
        .header("accept", "application/x-ndjson")
        .send(&app)
        .await;
    streamed.expect(StatusCode::CONFLICT);
    let status = get("/gated/migrate/status")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(status["running"], run);

    gate.open();
    let mut lines = vec![first];
    while let Some(line) = next_line(&mut body, &mut buffer).await {
        lines.push(line);
    }
    let (last, progress) = lines.split_last().unwrap();
    assert!(progress
        .iter()
        .all(|line| line["event"] == "progress" && line["run_id"] == run));
    let done: Vec<u64> = progress
        .iter()
        .map(|l| l["done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
    assert_eq!(last["event"], "report", "{last}");
    assert_eq!(last["report"]["migrated"], 3000);
    assert_eq!(last["report"]["run_id"], run);
    assert_eq!(
        gated.count_by_version().unwrap(),
        BTreeMap::from([(2, 3000)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_client_went_away_finishes_in_the_ledger() {
    let gate = Gate::new("dropped");
    let (_dir, store) = store_with(&gated_documents(2000, 1500, "dropped"));
    let app = gated_router(&store);
    let gated = store.collection::<GatedV2>().unwrap();

    let (body, _, first) = start_streaming_run(&app).await;
    let run = first["run_id"].as_u64().unwrap();
    assert_under_way(&gated, run);
    drop(body); // the client hangs up mid-run

    gate.open();
    let record = finished_run(&app, "gated", run).await;
    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(record["migrated"], 2000);
    assert_eq!(
        gated.count_by_version().unwrap(),
        BTreeMap::from([(2, 2000)])
    );
    // The lock is released: the next run starts (and has nothing to do).
    let report = post("/gated/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert!(report["run_id"].is_null());
}

#[tokio::test]
async fn a_stream_with_nothing_to_do_is_just_the_report() {
    let (_dir, store) = store_with::<GatedV1>(&[]);
    let app = gated_router(&store);
    let reply = post("/gated/migrate/test")
        .header("accept", "application/json, application/x-ndjson")
        .send(&app)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(&header::CONTENT_TYPE), "application/x-ndjson");
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], "report");
    assert_eq!(lines[0]["report"]["dry_run"], true);
}

#[tokio::test]
async fn options_in_the_query_and_the_body_merge_and_must_agree() {
    let (_dir, store) = store_with(&gated_documents(5, 99, "never"));
    let app = gated_router(&store);
    // A `null` in the body gives nothing: the query's value holds.
    let report = post("/gated/migrate/test?limit=2")
        .json(&serde_json::json!({ "limit": null }))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (report["dry_run"].as_bool(), report["scanned"].as_u64()),
        (Some(true), Some(2))
    );
    // The same value, written two ways.
    let report = post("/gated/migrate/test?limit=3")
        .json(&serde_json::json!({ "limit": 3.0 }))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(report["scanned"], 3);
    // Different values, a `false` included.
    post("/gated/migrate/test?retry_failed=false")
        .json(&serde_json::json!({ "retry_failed": true }))
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);
    // One option twice in the query.
    post("/gated/migrate/test?limit=1&limit=1")
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);
    // Nothing was written by any of these.
    assert_eq!(
        store
            .collection::<GatedV2>()
            .unwrap()
            .count_by_version()
            .unwrap(),
        BTreeMap::from([(1, 5)])
    );
}
