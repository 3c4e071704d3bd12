//! What the API puts on the wire: times as RFC 3339 strings and durations in milliseconds, and a
//! document's history in pages.

use axum::http::StatusCode;
use serde_json::Value;

use crate::support::{get, issue_json, issues, post, put, router, store_with, v1};

/// `2026-12-06T11:16:19.123456Z`: RFC 3339, UTC, to the microsecond.
#[track_caller]
fn assert_time(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 27
        && text.ends_with('Z')
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'.',
            26 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    assert!(shape_ok, "not RFC 3339 UTC to the microsecond: {text}");
    assert!(text.starts_with("20"), "{text}");
}

#[track_caller]
fn assert_millis(report: &Value) {
    assert!(report["elapsed_ms"].is_u64(), "{report}");
    assert!(report.get("elapsed").is_none(), "{report}");
}

#[tokio::test]
async fn times_are_rfc_3339_and_durations_milliseconds() {
    let (_dir, _store, app, issues) = issues();
    let id = issues.iter().next().unwrap().unwrap().id;

    let history = get(&format!("/issues/docs/{id}/revisions"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_time(&history["revisions"][0]["timestamp"]);
    let raw = get(&format!("/issues/docs/{id}/revisions/1?raw=true"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_time(&raw["timestamp"]);
    let schemas = get("/issues/schema/history")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    for record in schemas.as_array().unwrap() {
        assert_time(&record["recorded"]);
    }

    let report = post("/issues/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_millis(&report);
    let run = report["run_id"].as_u64().unwrap();
    let record = get(&format!("/issues/migrate/runs/{run}"))
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_time(&record["started"]);
    assert_time(&record["finished"]);
    let runs = get("/issues/migrate/runs")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_time(&runs["runs"][0]["started"]);
    let status = get("/issues/migrate/status")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_time(&status["runs"][0]["finished"]);
    let reverted = post(&format!("/issues/migrate/runs/{run}/revert"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_millis(&reverted);

    // The last line of a progress stream is the report, with the same shape.
    let streamed = post("/issues/migrate/test")
        .header("accept", "application/x-ndjson")
        .send(&app)
        .await;
    assert_eq!(streamed.status, StatusCode::OK);
    let last: Value = String::from_utf8_lossy(&streamed.body)
        .lines()
        .last()
        .map(|line| serde_json::from_str(line).unwrap())
        .unwrap();
    assert_eq!(last["event"], "report", "{last}");
    assert_millis(&last["report"]);
}

#[tokio::test]
async fn a_history_comes_in_pages() {
    let (_dir, store) = store_with(&[v1("paged")]);
    let app = router(&store);
    let id = store
        .collection::<crate::support::IssueV2>()
        .unwrap()
        .iter()
        .next()
        .unwrap()
        .unwrap()
        .id;
    for n in 0..4 {
        put(&format!("/issues/docs/{id}"))
            .json(&issue_json(&format!("edit {n}")))
            .send(&app)
            .await
            .expect(StatusCode::OK);
    }
    let page = |query: &str| {
        let app = app.clone();
        let uri = format!("/issues/docs/{id}/revisions{query}");
        async move { get(&uri).send(&app).await }
    };
    let numbers = |page: &Value| -> Vec<u64> {
        page["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["revision"].as_u64().unwrap())
            .collect()
    };

    // Without a query: the first page of the default size, which holds all five.
    let all = page("").await.expect(StatusCode::OK);
    assert_eq!(numbers(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all["next"], Value::Null);

    // In pages of two, following `next`.
    let first = page("?limit=2").await.expect(StatusCode::OK);
    assert_eq!(numbers(&first), [1, 2]);
    assert_eq!(first["next"], 2);
    let second = page("?after=2&limit=2").await.expect(StatusCode::OK);
    assert_eq!(numbers(&second), [3, 4]);
    assert_eq!(second["next"], 4);
    let third = page("?after=4&limit=2").await.expect(StatusCode::OK);
    assert_eq!(numbers(&third), [5]);
    assert_eq!(third["next"], Value::Null);
    // A page that ends exactly at the last revision has no `next`.
    let exact = page("?after=3&limit=2").await.expect(StatusCode::OK);
    assert_eq!(numbers(&exact), [4, 5]);
    assert_eq!(exact["next"], Value::Null);

    // Past the end: an empty page, not a 404; `after=0` is the start.
    let past = page("?after=99").await.expect(StatusCode::OK);
    assert!(numbers(&past).is_empty());
    let past_max = page(&format!("?after={}", u64::MAX))
        .await
        .expect(StatusCode::OK);
    assert!(numbers(&past_max).is_empty());
    let start = page("?after=0&limit=1").await.expect(StatusCode::OK);
    assert_eq!(numbers(&start), [1]);

    // Bounds.
    page("?limit=0").await.expect(StatusCode::BAD_REQUEST);
    page("?limit=1001").await.expect(StatusCode::BAD_REQUEST);
    let most = page("?limit=1000").await.expect(StatusCode::OK);
    assert_eq!(numbers(&most).len(), 5);
    page("?after=-1").await.expect(StatusCode::BAD_REQUEST);
    page("?page=2").await.expect(StatusCode::BAD_REQUEST);

    // An unknown document is a 404, with or without `after`.
    for query in ["", "?after=1"] {
        get(&format!("/issues/docs/nobody/revisions{query}"))
            .send(&app)
            .await
            .expect(StatusCode::NOT_FOUND);
    }
}

#[test]
fn a_history_page_is_a_range_of_one_documents_revisions() {
    let (_dir, store) = store_with(&[v1("one")]);
    let issues = store.collection::<crate::support::IssueV2>().unwrap();
    let id = issues.iter().next().unwrap().unwrap().id;
    let current = issues.get(id.as_str()).unwrap().unwrap();
    let mut revision = current.revision;
    for n in 0..3 {
        let mut data = current.data.clone();
        data.title = format!("t{n}");
        revision = issues.update_if(id.as_str(), revision, &data).unwrap();
    }
    let numbers = |after: Option<u64>, limit: usize| -> Vec<u64> {
        issues
            .history_page(id.as_str(), after.and_then(revolve::Revision::new), limit)
            .unwrap()
            .iter()
            .map(|info| info.revision.get())
            .collect()
    };
    assert_eq!(numbers(None, 10), [1, 2, 3, 4]);
    assert_eq!(numbers(Some(1), 2), [2, 3]);
    assert_eq!(numbers(Some(4), 2), Vec::<u64>::new());
    assert_eq!(numbers(Some(u64::MAX), 2), Vec::<u64>::new());
    assert_eq!(numbers(None, 0), Vec::<u64>::new());
    // Another document's revisions never leak into the page (ids are prefixes of each other).
    issues
        .insert_with_id(&format!("{id}x"), &current.data)
        .unwrap();
    assert_eq!(numbers(Some(3), 10), [4]);
    assert!(issues.history_page("missing", None, 10).unwrap().is_empty());
}
