//! Every route's success path, reserved-word and awkward ids, `ETag`/`If-Match`, pagination,
//! schemas, the run ledger and revert.

use std::collections::BTreeMap;

use axum::http::{header, StatusCode};
use revolve::Revision;
use serde_json::json;

use crate::support::{call, delete, get, issue_json, issues, post, put, IssueV2, Status};

#[tokio::test]
async fn healthz_and_openapi() {
    let (_dir, _store, app, _) = issues();
    assert_eq!(
        get("/healthz").send(&app).await.expect(StatusCode::OK)["status"],
        "ok"
    );
    let reply = get("/openapi.json").send(&app).await;
    let doc = reply.expect(StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/issues",
        "/issues/docs/{id}",
        "/issues/docs/{id}/revisions/{revision}",
        "/issues/migrate/execute",
        "/issues/migrate/runs/{run_id}/revert",
        "/issues/migrate/runs/{run_id}/cancel",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["schemas"]["issues"]["properties"]["status"]["$ref"],
        "#/components/schemas/issues.Status"
    );
    assert!(doc["components"]["schemas"].get("issues.Status").is_some());
    assert!(!reply.body.windows(7).any(|w| w == b"#/$defs"));
    assert_eq!(
        doc["paths"]["/issues"]["post"]["security"],
        json!([{ "bearer": [] }])
    );
    assert!(doc["paths"]["/issues"]["get"].get("security").is_none());
}

#[tokio::test]
async fn create_read_update_remove() {
    let (_dir, _store, app, issues) = issues();
    let reply = post("/issues").json(&issue_json("new")).send(&app).await;
    let created = reply.expect(StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.header(&header::ETAG), "\"1\"");
    assert_eq!(
        reply.header(&header::LOCATION),
        format!("/issues/docs/{id}")
    );
    assert_eq!(created["data"], issue_json("new"));

    let location = reply.header(&header::LOCATION).to_owned();
    let read = get(&location).send(&app).await;
    assert_eq!(read.header(&header::ETAG), "\"1\"");
    let doc = read.expect(StatusCode::OK);
    assert_eq!(
        (doc["revision"].as_u64(), doc["version"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(doc["data"], issue_json("new"));

    // If-Match with the current revision.
    let reply = put(&location)
        .header("if-match", "\"1\"")
        .json(&issue_json("renamed"))
        .send(&app)
        .await;
    assert_eq!(reply.header(&header::ETAG), "\"2\"");
    assert_eq!(reply.expect(StatusCode::OK)["data"]["title"], "renamed");
    // A stale one: 412 with the current revision; nothing written.
    let stale = put(&location)
        .header("if-match", "\"1\"")
        .json(&issue_json("lost update"))
        .send(&app)
        .await
        .expect(StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale["current_revision"], 2);
    assert_eq!(issues.get(&id).unwrap().unwrap().data.title, "renamed");
    // `*` and no precondition: unconditional.
    put(&location)
        .header("if-match", "*")
        .json(&issue_json("star"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    put(&location)
        .json(&issue_json("blind"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    // An old revision stays readable.
    let old = get(&format!("{location}?revision=2")).send(&app).await;
    assert_eq!(old.expect(StatusCode::OK)["data"]["title"], "renamed");

    // DELETE with a stale If-Match is refused, with the right one goes through.
    delete(&location)
        .header("if-match", "\"3\"")
        .send(&app)
        .await
        .expect(StatusCode::PRECONDITION_FAILED);
    let removed = delete(&location)
        .header("if-match", "\"4\"")
        .send(&app)
        .await;
    assert_eq!(removed.header(&header::ETAG), "\"5\"");
    assert_eq!(removed.expect(StatusCode::OK)["removed"], true);
    get(&location)
        .send(&app)
        .await
        .expect(StatusCode::NOT_FOUND);
    delete(&location)
        .send(&app)
        .await
        .expect(StatusCode::NOT_FOUND);
    // The history stays.
    let history = get(&format!("{location}/revisions"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    let revisions = history["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 5);
    assert_eq!(revisions[4]["removed"], true);
    assert_eq!(revisions[0]["origin"]["kind"], "write");
}

#[tokio::test]
async fn ids_that_are_route_words_or_need_encoding_stay_reachable() {
    let (_dir, _store, app, issues) = issues();
    let awkward = [
        ("migrate", "migrate"),
        ("schema", "schema"),
        ("docs", "docs"),
        ("runs", "runs"),
        ("revisions", "revisions"),
        ("healthz", "healthz"),
        ("openapi.json", "openapi.json"),
        ("a/b", "a%2Fb"),
        ("with space", "with%20space"),
        ("..", "%2E%2E"),
        ("ünï", "%C3%BC%6E%C3%AF"),
    ];
    for (id, segment) in awkward {
        let uri = format!("/issues/docs/{segment}");
        let created = put(&uri)
            .header("if-none-match", "*")
            .json(&issue_json(id))
            .send(&app)
            .await;
        assert_eq!(created.expect(StatusCode::CREATED)["id"], id, "{id}");
        assert_eq!(issues.get(id).unwrap().unwrap().data.title, id);
        let read = get(&uri).send(&app).await.expect(StatusCode::OK);
        assert_eq!(read["id"], id);
        let history = get(&format!("{uri}/revisions")).send(&app).await;
        assert_eq!(
            history.expect(StatusCode::OK)["revisions"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let first = get(&format!("{uri}/revisions/1")).send(&app).await;
        assert_eq!(first.expect(StatusCode::OK)["data"]["title"], id);
    }
    // A `Location` is a path that reads the document back.
    let reply = put("/issues/docs/x%2Fy")
        .header("if-none-match", "*")
        .json(&issue_json("x/y"))
        .send(&app)
        .await;
    assert_eq!(reply.header(&header::LOCATION), "/issues/docs/x%2Fy");
    // The control routes are still themselves.
    let schema = get("/issues/schema")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(schema["version"], 2);
    let history = get("/issues/schema/history")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert!(history.is_array());
    post("/issues/migrate/test")
        .send(&app)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn old_documents_are_upgraded_on_read_and_raw_on_request() {
    let (_dir, _store, app, issues) = issues();
    let id = issues.iter().next().unwrap().unwrap().id;
    let doc = get(&format!("/issues/docs/{id}"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (doc["version"].as_u64(), doc["stored_version"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        doc["data"],
        json!({ "title": "first", "status": "open", "priority": 1 })
    );
    let raw = get(&format!("/issues/docs/{id}/revisions/1?raw=true"))
        .send(&app)
        .await;
    assert_eq!(raw.header(&header::ETAG), "\"1\"");
    let raw = raw.expect(StatusCode::OK);
    assert_eq!(raw["version"], 1);
    assert_eq!(
        raw["payload"],
        json!({ "title": "first", "status": "open" })
    );
    let upgraded = get(&format!("/issues/docs/{id}/revisions/1?raw=false"))
        .send(&app)
        .await;
    assert_eq!(upgraded.expect(StatusCode::OK)["data"]["priority"], 1);
    // Reading wrote nothing.
    assert_eq!(issues.history(&id).unwrap().len(), 1);
}

#[tokio::test]
async fn listing_pages_through_every_document_in_id_order() {
    let (_dir, _store, app, issues) = issues();
    for n in 0..4 {
        post("/issues")
            .json(&issue_json(&format!("n{n}")))
            .send(&app)
            .await
            .expect(StatusCode::CREATED);
    }
    let expected: Vec<String> = issues.iter().map(|d| d.unwrap().id.into_string()).collect();
    assert_eq!(expected.len(), 7);
    let mut seen = Vec::new();
    let mut uri = "/issues?limit=3".to_owned();
    loop {
        let page = get(&uri).send(&app).await.expect(StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => uri = format!("/issues?limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let all = get("/issues").send(&app).await.expect(StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 7);
    assert!(all["next"].is_null());
}

#[tokio::test]
async fn schemas_by_version_and_history() {
    let (_dir, _store, app, issues) = issues();
    let latest = get("/issues/schema")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(latest["fingerprint"], issues.schema_fingerprint());
    assert_eq!(latest["schema"], issues.schema());
    let v1 = get("/issues/schema/1")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert!(v1["schema"]["properties"].get("priority").is_none());
    assert!(v1["schema"]["properties"].get("status").is_some());
    get("/issues/schema/3")
        .send(&app)
        .await
        .expect(StatusCode::NOT_FOUND);
    let history = get("/issues/schema/history")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    let versions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["version"].as_u64().unwrap())
        .collect();
    assert!(
        versions.contains(&1) && versions.contains(&2),
        "{versions:?}"
    );
}

#[tokio::test]
async fn migrate_test_execute_status_runs_and_revert() {
    let (_dir, _store, app, issues) = issues();
    let status = get("/issues/migrate/status")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(status["counts"], json!({ "1": 3 }));
    assert_eq!(status["migratable"], 3);
    assert!(status["running"].is_null());

    // A dry run, limit in the query: nothing written.
    let report = post("/issues/migrate/test?limit=2")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (report["dry_run"].as_bool(), report["scanned"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(issues.count_by_version().unwrap(), BTreeMap::from([(1, 3)]));

    // The limit in the body.
    let report = post("/issues/migrate/execute")
        .json(&json!({ "limit": 2 }))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (report["migrated"].as_u64(), report["remaining"].as_u64()),
        (Some(2), Some(1))
    );
    let run_id = report["run_id"].as_u64().unwrap();
    assert_eq!(
        issues.count_by_version().unwrap(),
        BTreeMap::from([(1, 1), (2, 2)])
    );
    // Both, agreeing.
    let report = post("/issues/migrate/execute?limit=5")
        .json(&json!({ "limit": 5 }))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(report["migrated"], 1);
    // Nothing left: no run recorded.
    let report = post("/issues/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert!(report["run_id"].is_null());

    let run = get(&format!("/issues/migrate/runs/{run_id}"))
        .auth()
        .send(&app)
        .await;
    let run = run.expect(StatusCode::OK);
    assert_eq!(
        (run["state"].as_str(), run["migrated"].as_u64()),
        (Some("done"), Some(2))
    );
    let runs = get("/issues/migrate/runs?limit=2")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);
    let status = get("/issues/migrate/status")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(status["counts"], json!({ "2": 3 }));
    assert_eq!(status["runs"].as_array().unwrap().len(), 3);

    let revert = post(&format!("/issues/migrate/runs/{run_id}/revert"))
        .send(&app)
        .await;
    let revert = revert.expect(StatusCode::OK);
    assert_eq!(
        (revert["reverted_run"].as_u64(), revert["reverted"].as_u64()),
        (Some(run_id), Some(2))
    );
    assert_eq!(
        issues.count_by_version().unwrap(),
        BTreeMap::from([(1, 2), (2, 1)])
    );
    // Once only; a dry run cannot be reverted either.
    post(&format!("/issues/migrate/runs/{run_id}/revert"))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    let all = get("/issues/migrate/runs")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    let dry = &all["runs"][3];
    assert_eq!(dry["dry_run"], true, "{all}");
    let dry = dry["id"].as_u64().unwrap();
    post(&format!("/issues/migrate/runs/{dry}/revert"))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
}

#[tokio::test]
async fn failed_steps_are_listed_in_the_report() {
    let (_dir, store) = crate::support::store_with(&[
        crate::support::v1("good"),
        crate::support::IssueV1 {
            title: "bad".into(),
            status: "broken".into(),
        },
    ]);
    let app = crate::support::router(&store);
    let report = post("/issues/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (report["migrated"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(report["failures"][0]["error"]
        .as_str()
        .unwrap()
        .contains("broken"));
    let status = get("/issues/migrate/status")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(status["failed"], 1);
}

#[tokio::test]
async fn if_match_may_be_required() {
    let (_dir, store) = crate::support::store_with(&[crate::support::v1("a")]);
    let app = revolve::http::Router::new(store.clone())
        .collection::<IssueV2>()
        .unwrap()
        .token(crate::support::TOKEN)
        .require_if_match()
        .build()
        .unwrap();
    let issues = store.collection::<IssueV2>().unwrap();
    let id = issues.iter().next().unwrap().unwrap().id;
    let uri = format!("/issues/docs/{id}");
    put(&uri)
        .json(&issue_json("x"))
        .send(&app)
        .await
        .expect(StatusCode::PRECONDITION_REQUIRED);
    delete(&uri)
        .send(&app)
        .await
        .expect(StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(issues.history(&id).unwrap().len(), 1);
    // A revision written by a migration is transparent to If-Match.
    post("/issues/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(issues.history(&id).unwrap().len(), 2);
    let reply = put(&uri)
        .header("if-match", "\"1\"")
        .json(&issue_json("x"))
        .send(&app)
        .await;
    assert_eq!(reply.header(&header::ETAG), "\"3\"");
    reply.expect(StatusCode::OK);
    let doc = issues.get(&id).unwrap().unwrap();
    assert_eq!(
        (doc.revision, doc.data.status),
        (Revision::new(3).unwrap(), Status::Open)
    );
    delete(&uri)
        .header("if-match", "\"3\"")
        .send(&app)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_slow_request_times_out_with_a_problem() {
    // Reading the document runs its step lazily, and the step waits at the gate.
    let gate = crate::support::Gate::new("timeout");
    let (_dir, store) = crate::support::store_with_ids(&[(
        "slow",
        crate::support::GatedV1 {
            n: 1,
            gate: Some("timeout".into()),
        },
    )]);
    let app = revolve::http::Router::new(store.clone())
        .collection::<crate::support::GatedV2>()
        .unwrap()
        .token(crate::support::TOKEN)
        .timeout(std::time::Duration::from_millis(50))
        .build()
        .unwrap();
    get("/gated/docs/slow")
        .send(&app)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    gate.open();
    let gated = store.collection::<crate::support::GatedV2>().unwrap();
    assert_eq!(gated.get("slow").unwrap().unwrap().data.doubled, 2);
}

#[tokio::test]
async fn head_follows_get() {
    let (_dir, _store, app, _) = issues();
    let reply = call(axum::http::Method::HEAD, "/issues").send(&app).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn an_older_program_gets_409_for_newer_documents_and_for_writes() {
    let (dir, store) = crate::support::store_with(&[crate::support::v1("old")]);
    let newer = store
        .collection::<IssueV2>()
        .unwrap()
        .insert(&IssueV2 {
            title: "new".into(),
            status: Status::Open,
            priority: 3,
        })
        .unwrap();
    drop(store);
    let store = revolve::Store::builder()
        .path(dir.path())
        .lock_timeout(std::time::Duration::from_secs(30))
        .open()
        .unwrap();
    let app = revolve::http::Router::new(store)
        .collection::<crate::support::IssueV1>()
        .unwrap()
        .token(crate::support::TOKEN)
        .build()
        .unwrap();
    get(&format!("/issues/docs/{newer}"))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    post("/issues")
        .json(&json!({ "title": "x", "status": "open" }))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
}

#[tokio::test]
async fn readyz_answers_503_once_the_store_is_poisoned_and_healthz_stays_200() {
    let (_dir, store, app, _) = issues();
    let ready = get("/readyz").send(&app).await.expect(StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    let error = revolve::__private::fault::poison(&store);
    assert!(
        matches!(error, revolve::StoreError::StorageCorrupt { .. }),
        "{error:?}"
    );
    assert_eq!(store.state(), revolve::StoreState::Poisoned);
    let reply = get("/readyz").send(&app).await;
    let problem = reply.expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.header(&header::CONTENT_TYPE),
        "application/problem+json"
    );
    assert_eq!(problem["type"], "urn:revolve:problem:not-ready");
    assert_eq!(problem["state"], "poisoned");
    get("/healthz").send(&app).await.expect(StatusCode::OK);
    // Every route that reaches the store answers 503 alike until the store is reopened.
    let listed = get("/issues").send(&app).await;
    let problem = listed.expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "urn:revolve:problem:not-ready");
    let doc = get("/openapi.json").send(&app).await.expect(StatusCode::OK);
    assert!(doc["paths"].get("/readyz").is_some());
}
