//! Cancelling runs over HTTP (`POST /{c}/migrate/runs/{run_id}/cancel`): a run a migrate request
//! started (streamed or not, on sled and on PostgreSQL, joined or not, even before its first
//! chunk) stops at its next chunk boundary, and its record says `cancelled` with fewer documents
//! migrated than were pending; on PostgreSQL a joined run of another process is cancelled through
//! the engine. The route answers 202 at once; an unknown run is 404, a run that is not under way
//! 409 `run-not-running` naming its state, and a run under way that the server cannot reach 409
//! `run-elsewhere`.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use revolve::{Collection, RunState};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::migrate::{finished_run, gated_documents, gated_router, next_line, start_streaming};
use crate::support::{get, post, store_with, Gate, GatedV2};

/// `migration` run on a thread of its own, as another program would run it: its run's id once
/// its first chunk has committed, and the thread, which returns its report.
fn library_run(
    migration: revolve::Migration<GatedV2>,
) -> (u64, std::thread::JoinHandle<revolve::MigrationReport>) {
    let (runs, started) = mpsc::channel();
    let library = std::thread::spawn(move || {
        migration
            .on_progress(move |progress| {
                let _ = runs.send(progress.run_id);
            })
            .execute()
            .unwrap()
    });
    let run = started.recv_timeout(Duration::from_secs(60)).unwrap();
    (run, library)
}

/// Asks for run `run` to be cancelled.
async fn cancel(app: &axum::Router, run: u64) -> crate::support::Reply {
    post(&format!("/gated/migrate/runs/{run}/cancel"))
        .send(app)
        .await
}

/// Asserts the route's answer to a cancel that reached its run.
#[track_caller]
fn assert_requested(reply: &crate::support::Reply, run: u64) {
    assert_eq!(
        reply.expect(StatusCode::ACCEPTED),
        json!({ "run_id": run, "cancel": "requested" })
    );
}

/// Reads the rest of a streamed run and returns its last line, the report.
async fn last_line(body: &mut Body, buffer: &mut Vec<u8>, first: Value) -> Value {
    let mut last = first;
    while let Some(line) = next_line(body, buffer).await {
        last = line;
    }
    assert_eq!(last["event"], "report", "{last}");
    last["report"].clone()
}

/// Asserts that run `run` ended cancelled with `migrated` documents of `total`, fewer than all,
/// in its report and in its record.
#[track_caller]
fn assert_cancelled(report: &Value, record: &Value, run: u64, total: u64) {
    assert_eq!(report["run_id"], run, "{report}");
    assert_eq!(report["cancelled"], true, "{report}");
    let migrated = report["migrated"].as_u64().unwrap();
    assert!(migrated < total, "{report}");
    assert_eq!(
        (&record["state"], &record["migrated"]),
        (&json!("cancelled"), &json!(migrated)),
        "{record}"
    );
}

/// Starts a streamed run of `uri` whose chunk holding the gated document waits, cancels it by
/// its id once its first line has come, opens the gate, and checks that it ended cancelled with
/// fewer than `total` documents migrated. The run's id.
async fn cancel_streamed_run(app: &axum::Router, uri: &str, gate: &Gate, total: u64) -> u64 {
    let (mut body, mut buffer, first) = start_streaming(app, uri).await;
    assert_eq!(first["event"], "progress", "{first}");
    let run = first["run_id"].as_u64().unwrap();
    assert_requested(&cancel(app, run).await, run);
    gate.open();
    let report = last_line(&mut body, &mut buffer, first).await;
    let record = finished_run(app, "gated", run).await;
    assert_cancelled(&report, &record, run, total);
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_this_server_started_is_cancelled_at_its_next_chunk() {
    let gate = Gate::new("cancel-sled");
    let (_dir, store) = store_with(&gated_documents(5000, 1500, "cancel-sled"));
    let app = gated_router(&store);
    let gated = store.collection::<GatedV2>().unwrap();

    let run = cancel_streamed_run(&app, "/gated/migrate/execute", &gate, 5000).await;
    let migrated = gated.run(run).unwrap().unwrap().migrated;
    assert_eq!(
        gated.count_by_version().unwrap(),
        BTreeMap::from([(1, 5000 - migrated), (2, migrated)])
    );
    // Asked again once it stopped: it is not under way, and the problem says how it ended.
    let again = cancel(&app, run).await.expect(StatusCode::CONFLICT);
    assert_eq!(again["type"], "urn:revolve:problem:run-not-running");
    assert_eq!(
        (&again["run_id"], &again["state"]),
        (&json!(run), &json!("cancelled"))
    );
    // The next run continues where it stopped.
    let report = post("/gated/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(report["migrated"], 5000 - migrated, "{report}");
}

/// The server knows the run's id as soon as the run has one: a run is cancelled before its
/// first chunk commits (so before the request has answered anything), and migrates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_cancelled_before_its_first_chunk_commits() {
    let gate = Gate::new("cancel-first");
    let (_dir, store) = store_with(&gated_documents(3000, 10, "cancel-first"));
    let app = gated_router(&store);
    let gated = store.collection::<GatedV2>().unwrap();

    let request = tokio::spawn({
        let app = app.clone();
        async move {
            app.oneshot(
                post("/gated/migrate/execute")
                    .header("accept", "application/x-ndjson")
                    .request(),
            )
            .await
            .unwrap()
        }
    });
    // The run is recorded `running` before its first chunk, which waits at the gate.
    let run = running_run(&app).await;
    assert_requested(&cancel(&app, run).await, run);
    gate.open();

    let mut body = request.await.unwrap().into_body();
    let mut buffer = Vec::new();
    let first = next_line(&mut body, &mut buffer).await.unwrap();
    let report = last_line(&mut body, &mut buffer, first).await;
    let record = finished_run(&app, "gated", run).await;
    assert_cancelled(&report, &record, run, 3000);
    assert_eq!(report["migrated"], 0, "{report}");
    assert_eq!(
        gated.count_by_version().unwrap(),
        BTreeMap::from([(1, 3000)])
    );
}

/// A run that is not streamed is cancelled alike: its request answers the report, cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_request_waits_for_its_report_is_cancelled() {
    let gate = Gate::new("cancel-plain");
    let (_dir, store) = store_with(&gated_documents(5000, 1500, "cancel-plain"));
    let app = gated_router(&store);
    let request = tokio::spawn({
        let app = app.clone();
        async move { post("/gated/migrate/execute").send(&app).await }
    });
    let run = running_run(&app).await;
    assert_requested(&cancel(&app, run).await, run);
    gate.open();
    let report = request.await.unwrap().expect(StatusCode::OK);
    let record = finished_run(&app, "gated", run).await;
    assert_cancelled(&report, &record, run, 5000);
}

/// The id of the run under way, once the ledger shows one.
async fn running_run(app: &axum::Router) -> u64 {
    for _ in 0..6000 {
        let status = get("/gated/migrate/status")
            .auth()
            .send(app)
            .await
            .expect(StatusCode::OK);
        if let Some(running) = status["running"].as_u64() {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no run started");
}

#[tokio::test]
async fn an_unknown_run_is_404_and_a_finished_one_409() {
    let (_dir, store) = store_with(&gated_documents(5, u64::MAX, "never"));
    let app = gated_router(&store);
    let unknown = cancel(&app, 999_999).await.expect(StatusCode::NOT_FOUND);
    assert_eq!(unknown["type"], "urn:revolve:problem:run-not-found");
    assert_eq!(unknown["detail"], "no run 999999 in the ledger of `gated`");
    // As reading the run answers.
    let read = get("/gated/migrate/runs/999999")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(unknown, read);

    // A dry run that ended.
    let dry = post("/gated/migrate/test")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    let dry = dry["run_id"].as_u64().unwrap();
    let refused = cancel(&app, dry).await.expect(StatusCode::CONFLICT);
    assert_eq!(refused["type"], "urn:revolve:problem:run-not-running");
    assert_eq!(refused["state"], "done", "{refused}");

    let report = post("/gated/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    let run = report["run_id"].as_u64().unwrap();
    let done = cancel(&app, run).await.expect(StatusCode::CONFLICT);
    assert_eq!(done["type"], "urn:revolve:problem:run-not-running");
    assert_eq!(
        (&done["run_id"], &done["state"]),
        (&json!(run), &json!("done"))
    );
    assert_eq!(
        done["detail"],
        format!("run {run} of `gated` is not under way: it is `done`")
    );
    // Nothing was changed by any of these.
    let record = get(&format!("/gated/migrate/runs/{run}"))
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(record["state"], "done", "{record}");
}

/// A run the program started itself, not through the router, is under way where the server
/// cannot cancel it: 409 `run-elsewhere`, and the run goes on to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_this_server_did_not_start_is_409_run_elsewhere() {
    let gate = Gate::new("cancel-elsewhere");
    let (_dir, store) = store_with(&gated_documents(3000, 1500, "cancel-elsewhere"));
    let app = gated_router(&store);
    let gated = store.collection::<GatedV2>().unwrap();
    let (run, library) = library_run(gated.migrate());
    let problem = cancel(&app, run).await.expect(StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:revolve:problem:run-elsewhere");
    assert_eq!(problem["run_id"], run);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("only the process that runs it can cancel it"),
        "{problem}"
    );
    gate.open();
    let report = tokio::task::spawn_blocking(move || library.join().unwrap())
        .await
        .unwrap();
    assert!(!report.cancelled);
    assert_eq!(report.migrated, 3000);
    assert_eq!(gated.run(run).unwrap().unwrap().state, RunState::Done);
}

/// A store in a fresh schema holding `documents`; `None` without a test server.
#[cfg(feature = "postgres")]
fn pg_store(
    documents: &[crate::support::GatedV1],
) -> Option<(
    crate::pg_server::TestSchema,
    impl Fn() -> revolve::StoreBuilder,
)> {
    let (schema, builder) = crate::pg_server::TestSchema::new("t_http_cancel")?;
    {
        let store = builder()
            .durability(revolve::Durability::Eventual)
            .open()
            .unwrap();
        store
            .collection::<crate::support::GatedV1>()
            .unwrap()
            .insert_many(documents)
            .unwrap();
        store.flush().unwrap();
    }
    Some((schema, builder))
}

#[cfg(feature = "postgres")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// On PostgreSQL, a run of one process and a joined run, each started over HTTP, are cancelled
/// through the route (a joined run's worker asks the run's other workers to stop too). Every
/// store call runs off the runtime's threads: the store is set up and dropped outside it.
#[cfg(feature = "postgres")]
#[test]
fn runs_started_over_http_are_cancelled_on_postgres() {
    let plain = Gate::new("cancel-pg-plain");
    let joined = Gate::new("cancel-pg-joined");
    let mut documents = gated_documents(8000, 1500, "cancel-pg-plain");
    documents[6500].gate = Some("cancel-pg-joined".to_owned());
    let Some((_schema, builder)) = pg_store(&documents) else {
        return;
    };
    let store = builder().open().unwrap();
    let app = gated_router(&store);
    let runtime = runtime();
    let (first, second) = runtime.block_on(async {
        let first = cancel_streamed_run(&app, "/gated/migrate/execute", &plain, 8000).await;
        let second =
            cancel_streamed_run(&app, "/gated/migrate/execute?join=true", &joined, 8000).await;
        (first, second)
    });
    drop(runtime);
    let gated = store.collection::<GatedV2>().unwrap();
    for run in [first, second] {
        let record = gated.run(run).unwrap().unwrap();
        assert_eq!(record.state, RunState::Cancelled, "{record:?}");
    }
    let migrated: u64 = [first, second]
        .iter()
        .map(|&run| gated.run(run).unwrap().unwrap().migrated)
        .sum();
    assert!(migrated < 8000);
    assert_eq!(
        gated.count_by_version().unwrap(),
        BTreeMap::from([(1, 8000 - migrated), (2, migrated)])
    );
    drop(app);
    drop(store);
}

/// On PostgreSQL, a joined run that another process (another store handle, here a library call)
/// runs is cancelled through the route; a run of one process there is `run-elsewhere`.
#[cfg(feature = "postgres")]
#[test]
#[allow(clippy::too_many_lines)] // one scenario, in the order it happens
fn another_process_joined_run_is_cancelled_on_postgres() {
    let plain = Gate::new("cancel-pg-other-plain");
    let joined = Gate::new("cancel-pg-other-joined");
    let mut documents = gated_documents(6000, 1500, "cancel-pg-other-plain");
    documents[4500].gate = Some("cancel-pg-other-joined".to_owned());
    let Some((_schema, builder)) = pg_store(&documents) else {
        return;
    };
    // The other process's store, and this server's.
    let other = builder().open().unwrap();
    let store = builder().open().unwrap();
    let app = gated_router(&store);
    let runtime = runtime();
    let theirs: Collection<GatedV2> = other.collection().unwrap();

    // A run of one process there: only its own token stops it.
    let token = revolve::CancelToken::new();
    let (run, library) = library_run(theirs.migrate().cancel_token(token.clone()));
    let problem = runtime.block_on(async { cancel(&app, run).await.expect(StatusCode::CONFLICT) });
    assert_eq!(problem["type"], "urn:revolve:problem:run-elsewhere");
    assert_eq!(problem["run_id"], run);
    token.cancel();
    plain.open();
    let report = library.join().unwrap();
    assert!(report.cancelled);
    let done = report.migrated;

    // A joined run there: the engine asks every worker to stop.
    let (run, library) = library_run(theirs.migrate().join());
    let (accepted, record) = runtime.block_on(async {
        let accepted = cancel(&app, run).await;
        joined.open();
        let record = finished_run(&app, "gated", run).await;
        (accepted, record)
    });
    assert_requested(&accepted, run);
    let report = library.join().unwrap();
    assert!(report.cancelled, "{report:?}");
    assert_eq!(report.run_id, Some(run));
    assert!(done + report.migrated < 6000, "{report:?}");
    assert_eq!(record["state"], "cancelled", "{record}");
    assert_eq!(record["migrated"], report.migrated, "{record}");
    let again = runtime.block_on(async { cancel(&app, run).await.expect(StatusCode::CONFLICT) });
    assert_eq!(again["state"], "cancelled", "{again}");
    drop(runtime);
    drop(app);
    drop(store);
    drop(theirs);
    drop(other);
}

/// On PostgreSQL, a cancel through the server that runs one of a joined run's workers reaches
/// the run's workers in other processes at once, not only when this server's worker passes it
/// on at its next chunk boundary: here that worker waits inside a step, mid-chunk, and the other
/// process's worker stops all the same.
#[cfg(feature = "postgres")]
#[test]
fn a_joined_runs_other_workers_stop_while_this_servers_is_mid_chunk_on_postgres() {
    let gate = Gate::new("cancel-pg-mid-chunk");
    let documents = gated_documents(8000, 500, "cancel-pg-mid-chunk");
    let Some((_schema, builder)) = pg_store(&documents) else {
        return;
    };
    let other = builder().open().unwrap();
    let store = builder().open().unwrap();
    let app = gated_router(&store);
    let runtime = runtime();
    let theirs: Collection<GatedV2> = other.collection().unwrap();

    // This server's worker claims the first chunk, which holds the gated document.
    let request = runtime.spawn({
        let app = app.clone();
        async move {
            post("/gated/migrate/execute")
                .json(&json!({ "join": true }))
                .send(&app)
                .await
        }
    });
    assert!(gate.reached(Duration::from_secs(60)), "the step never ran");
    // The other process's worker claims past the chunk held, and commits.
    let (run, library) = library_run(theirs.migrate().join());
    let accepted = runtime.block_on(async { cancel(&app, run).await });
    assert_requested(&accepted, run);
    // It stops at its next chunk boundary, while this server's worker still waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !library.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        library.is_finished(),
        "the other process's worker did not stop"
    );
    let theirs_report = library.join().unwrap();
    assert!(theirs_report.cancelled, "{theirs_report:?}");
    assert!(theirs_report.migrated < 7000, "{theirs_report:?}");
    gate.open();
    let (ours, record) = runtime.block_on(async {
        let ours = request.await.unwrap().expect(StatusCode::OK);
        let record = finished_run(&app, "gated", run).await;
        (ours, record)
    });
    assert_eq!(ours["cancelled"], true, "{ours}");
    assert_eq!(ours["migrated"], 1000, "{ours}");
    assert_eq!(record["state"], "cancelled", "{record}");
    assert_eq!(
        record["migrated"],
        theirs_report.migrated + 1000,
        "{record}"
    );
    drop(runtime);
    drop(app);
    drop(store);
    drop(theirs);
    drop(other);
}
