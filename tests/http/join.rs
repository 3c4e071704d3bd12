//! Joined runs over HTTP (`join` among the options of `migrate/execute`): a run with `join`
//! starts and reports as any other; while one is under way, a joiner with another `limit` or
//! `retry_failed` is refused with 409 `join-mismatch` naming the setting, a run without `join`
//! with 409 `run-in-progress`, and a dry run never joins (400); a `join` that is not a boolean
//! is refused saying so. On PostgreSQL, two requests with `join` are workers of one run, and the
//! ledger shows both.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::StatusCode;
use revolve::RunState;
use serde_json::{json, Value};

use crate::migrate::{gated_documents, gated_router, next_line, start_streaming};
use crate::support::{get, post, store_with, Gate, GatedV2};

/// The runs of the ledger of `gated`, newest first.
async fn runs(app: &axum::Router) -> Vec<Value> {
    let runs = get("/gated/migrate/runs")
        .auth()
        .send(app)
        .await
        .expect(StatusCode::OK);
    runs["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("{runs}"))
        .clone()
}

#[tokio::test]
async fn join_starts_a_run_and_reports_it() {
    let (_dir, store) = store_with(&gated_documents(1500, u64::MAX, "never"));
    let app = gated_router(&store);
    let report = post("/gated/migrate/execute?join=true")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (
            report["dry_run"].as_bool(),
            report["scanned"].as_u64(),
            report["migrated"].as_u64(),
            report["remaining"].as_u64(),
            report["cancelled"].as_bool(),
        ),
        (Some(false), Some(1500), Some(1500), Some(0), Some(false)),
        "{report}"
    );
    let run = report["run_id"].as_u64().unwrap();
    let record = get(&format!("/gated/migrate/runs/{run}"))
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (&record["state"], &record["migrated"], &record["workers"]),
        (&json!("done"), &json!(1500), &json!([])),
        "{record}"
    );
    // `join` in the body: nothing is left, so nothing is taken and no run is recorded.
    let again = post("/gated/migrate/execute")
        .json(&json!({ "join": true }))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (&again["run_id"], &again["scanned"]),
        (&Value::Null, &json!(0)),
        "{again}"
    );
    assert_eq!(runs(&app).await.len(), 1);
}

/// Starts a run with `join` whose progress streams, and returns its body once the first line
/// has come, with that line.
async fn start_joined_run(app: &axum::Router) -> (Body, Vec<u8>, Value) {
    start_streaming(app, "/gated/migrate/execute?join=true").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_with_other_settings_is_refused_naming_the_setting() {
    let gate = Gate::new("join-refused");
    let (_dir, store) = store_with(&gated_documents(3000, 2500, "join-refused"));
    let app = gated_router(&store);
    let gated = store.collection::<GatedV2>().unwrap();

    let (mut body, mut buffer, first) = start_joined_run(&app).await;
    assert_eq!(first["event"], "progress", "{first}");
    let run = first["run_id"].as_u64().unwrap();
    // The chunk holding document 2500 waits at the gate: the run is under way.
    assert_eq!(gated.run(run).unwrap().unwrap().state, RunState::Running);

    let limit = post("/gated/migrate/execute?join=true&limit=5")
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(
        limit["type"], "urn:revolve:problem:join-mismatch",
        "{limit}"
    );
    assert_eq!(limit["run_id"], run);
    assert_eq!(
        limit["detail"],
        format!("cannot join run {run} of `gated`: its limit is none, this migration's is 5")
    );
    let retry = post("/gated/migrate/execute")
        .json(&json!({ "join": true, "retry_failed": true }))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(
        retry["detail"],
        format!(
            "cannot join run {run} of `gated`: its retry_failed is false, this migration's is true"
        )
    );
    // Without `join`, the run under way is a conflict.
    let plain = post("/gated/migrate/execute")
        .json(&json!({ "join": false }))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(plain["type"], "urn:revolve:problem:run-in-progress");
    assert_eq!(plain["run_id"], run);
    // A dry run does not join, whether a run is under way or not.
    let dry = post("/gated/migrate/test?join=true")
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(dry["detail"], "a dry run of `gated` cannot join a run");

    gate.open();
    let mut last = first;
    while let Some(line) = next_line(&mut body, &mut buffer).await {
        last = line;
    }
    assert_eq!(last["event"], "report", "{last}");
    assert_eq!(
        (&last["report"]["run_id"], &last["report"]["migrated"]),
        (&json!(run), &json!(3000)),
        "{last}"
    );
    // None of the refused requests recorded a run or wrote a document.
    let ledger = runs(&app).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["state"], "done");
    assert_eq!(
        gated.count_by_version().unwrap(),
        BTreeMap::from([(2, 3000)])
    );
    let dry = post("/gated/migrate/test")
        .json(&json!({ "join": true }))
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(dry["detail"], "a dry run of `gated` cannot join a run");
}

#[tokio::test]
async fn join_must_be_a_boolean() {
    let (_dir, store) = store_with(&gated_documents(5, u64::MAX, "never"));
    let app = gated_router(&store);
    for query in ["join=yes", "join=1", "join="] {
        let problem = post(&format!("/gated/migrate/execute?{query}"))
            .send(&app)
            .await
            .expect(StatusCode::BAD_REQUEST);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("expected a boolean"), "{query}: {detail}");
    }
    let problem = post("/gated/migrate/execute")
        .json(&json!({ "join": "yes" }))
        .send(&app)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("expected a boolean"), "{detail}");
    let problem = post("/gated/migrate/execute?join=true")
        .json(&json!({ "join": false }))
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        problem["detail"],
        "`join` is given in the query and in the body with different values"
    );
    // Nothing ran.
    assert!(runs(&app).await.is_empty());
    assert_eq!(
        store
            .collection::<GatedV2>()
            .unwrap()
            .count_by_version()
            .unwrap(),
        BTreeMap::from([(1, 5)])
    );
}

/// On PostgreSQL: a request with `join` while a joined run is under way becomes a worker of that
/// run (the ledger's record of the run shows both workers), one with another limit is refused
/// naming it, one without `join` gets 409. Every store call runs off the runtime's threads (the
/// synchronous PostgreSQL client runs a runtime of its own): the store is set up and dropped
/// outside the runtime, and the router's handlers call it on the blocking pool.
#[cfg(feature = "postgres")]
#[test]
#[allow(clippy::too_many_lines)] // one scenario, in the order it happens
fn requests_with_join_are_workers_of_one_run_on_postgres() {
    use std::time::Duration;

    use revolve::Durability;

    use crate::support::GatedV1;

    let Some((_schema, builder)) = crate::pg_server::TestSchema::new("t_http_join") else {
        return;
    };
    let gate = Gate::new("join-postgres");
    {
        let store = builder().durability(Durability::Eventual).open().unwrap();
        store
            .collection::<GatedV1>()
            .unwrap()
            .insert_many(&gated_documents(3000, 2500, "join-postgres"))
            .unwrap();
        store.flush().unwrap();
    }
    let store = builder().open().unwrap();
    let app = gated_router(&store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(async {
        let (mut body, mut buffer, first) = start_joined_run(&app).await;
        assert_eq!(first["event"], "progress", "{first}");
        let run = first["run_id"].as_u64().unwrap();

        let limit = post("/gated/migrate/execute?join=true&limit=5")
            .send(&app)
            .await
            .expect(StatusCode::CONFLICT);
        assert_eq!(
            limit["detail"],
            format!("cannot join run {run} of `gated`: its limit is none, this migration's is 5")
        );
        let plain = post("/gated/migrate/execute")
            .send(&app)
            .await
            .expect(StatusCode::CONFLICT);
        assert_eq!(plain["run_id"], run);
        let dry = post("/gated/migrate/test?join=true")
            .send(&app)
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(dry["detail"], "a dry run of `gated` cannot join a run");

        // A second worker: it claims what the first has not (one of them holds the chunk at
        // the gate) and waits for its peer. The ledger shows it: nothing else says it joined.
        let second = tokio::spawn({
            let app = app.clone();
            async move { post("/gated/migrate/execute?join=true").send(&app).await }
        });
        let mut workers = 0;
        for _ in 0..6000 {
            let record = get(&format!("/gated/migrate/runs/{run}"))
                .auth()
                .send(&app)
                .await
                .expect(StatusCode::OK);
            workers = record["workers"].as_array().unwrap().len();
            if workers == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(workers, 2, "the second request did not join run {run}");

        gate.open();
        let mut last = first;
        while let Some(line) = next_line(&mut body, &mut buffer).await {
            last = line;
        }
        assert_eq!(last["event"], "report", "{last}");
        assert_eq!(last["report"]["run_id"], run, "{last}");
        let joined = second.await.unwrap().expect(StatusCode::OK);
        assert_eq!(joined["run_id"], run, "{joined}");
        assert_eq!(
            last["report"]["migrated"].as_u64().unwrap() + joined["migrated"].as_u64().unwrap(),
            3000
        );

        let record = get(&format!("/gated/migrate/runs/{run}"))
            .auth()
            .send(&app)
            .await
            .expect(StatusCode::OK);
        assert_eq!(
            (&record["state"], &record["migrated"], &record["scanned"]),
            (&json!("done"), &json!(3000), &json!(3000)),
            "{record}"
        );
        let workers = record["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2, "{record}");
        for worker in workers {
            assert_eq!(worker["live"], false, "{worker}");
            assert_eq!(worker["pid"], std::process::id(), "{worker}");
            assert!(
                worker["started"].is_string() && worker["heartbeat"].is_string(),
                "{worker}"
            );
        }
        let migrated: u64 = workers
            .iter()
            .map(|w| w["migrated"].as_u64().unwrap())
            .sum();
        assert_eq!(migrated, 3000, "{record}");
        assert_eq!(runs(&app).await.len(), 1);
        run
    });
    drop(runtime);
    let gated = store.collection::<GatedV2>().unwrap();
    assert_eq!(gated.run(run).unwrap().unwrap().workers.len(), 2);
    assert_eq!(
        gated.count_by_version().unwrap(),
        BTreeMap::from([(2, 3000)])
    );
    drop(app);
    drop(store);
}
