//! Documents whose step fails, on the example server's own seed (2500 version-1 issues, one in
//! 50 with a status the step refuses): reads answer 409 with the problem, list pages carry it in
//! place of the body and page on, and the failure set is listed page by page.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::example_issues::{seed, IssueV1, IssueV2, SEEDED};
use crate::support::{get, post, store_with, TOKEN};

const REFUSED: usize = SEEDED / 50;

/// The example's store and a router over it as the example builds it.
fn example() -> (tempfile::TempDir, axum::Router) {
    let (dir, store) = store_with::<IssueV1>(&seed());
    let app = revolve::http::Router::new(store)
        .collection::<IssueV2>()
        .unwrap()
        .token(TOKEN)
        .build()
        .unwrap();
    (dir, app)
}

/// Checks a not-upgradable problem of the seed's issue `id`.
#[track_caller]
fn assert_problem(problem: &Value, id: &str, base: &str) {
    assert_eq!(
        problem["type"], "urn:revolve:problem:not-upgradable",
        "{problem}"
    );
    assert_eq!(problem["status"], 409, "{problem}");
    assert_eq!(problem["collection"], "issues");
    assert_eq!(problem["id"], id);
    assert_eq!(problem["revision"], 1);
    assert_eq!(problem["stored_version"], 1);
    assert_eq!(problem["class"], "step");
    let message = problem["message"].as_str().unwrap();
    assert!(message.contains("unknown status `wontfix`"), "{message}");
    assert_eq!(
        problem["raw_revision"],
        format!("{base}/issues/docs/{id}/revisions/1?raw=true")
    );
}

/// Every page of `limit=100`, in order.
async fn pages(app: &axum::Router) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut uri = "/issues?limit=100".to_owned();
    loop {
        let page = get(&uri).send(app).await.expect(StatusCode::OK);
        let next = page["next"].as_str().map(ToOwned::to_owned);
        pages.push(page);
        match next {
            Some(next) => uri = format!("/issues?limit=100&after={next}"),
            None => return pages,
        }
        assert!(pages.len() <= SEEDED / 100, "paging does not end");
    }
}

#[tokio::test]
async fn the_example_seed_lists_reads_and_pages_past_refused_issues() {
    let (_dir, app) = example();
    let pages = pages(&app).await;
    assert_eq!(pages.len(), SEEDED / 100);
    let mut ids = BTreeSet::new();
    let mut refused = Vec::new();
    for (n, page) in pages.iter().enumerate() {
        let items = page["items"].as_array().unwrap();
        // A refused issue counts toward the limit, and `next` is given while more follow.
        assert_eq!(items.len(), 100, "page {n}");
        assert_eq!(page["next"].is_string(), n + 1 < pages.len(), "page {n}");
        for item in items {
            let id = item["id"].as_str().unwrap().to_owned();
            if let Some(problem) = item.get("problem") {
                assert_eq!(item["revision"], 1);
                assert!(item.get("data").is_none(), "{item}");
                assert_problem(problem, &id, "");
                refused.push(id.clone());
            } else {
                assert_eq!(item["stored_version"], 1, "{item}");
                assert!(item["data"]["status"].is_string(), "{item}");
            }
            assert!(ids.insert(id), "listed twice");
        }
    }
    assert_eq!(ids.len(), SEEDED);
    assert_eq!(refused.len(), REFUSED);

    // A page that ends just before a refused issue (the seed refuses every 50th, from the 50th):
    // `next` is given, and the next page starts with the problem.
    let ids: Vec<String> = ids.into_iter().collect();
    assert_eq!(refused[0], ids[49]);
    let first = get("/issues?limit=49")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(first["items"].as_array().unwrap().len(), 49);
    assert!(first["items"][48].get("problem").is_none());
    assert_eq!(first["next"], ids[48]);
    for uri in [
        format!("/issues?limit=49&after={}", ids[48]),
        format!("/issues?limit=1&after={}", ids[48]),
    ] {
        let page = get(&uri).send(&app).await.expect(StatusCode::OK);
        assert_eq!(page["items"][0]["id"], ids[49], "{uri}");
        assert_problem(&page["items"][0]["problem"], &ids[49], "");
        // Only the refused issue on the page, and still more after it.
        assert_eq!(
            page["next"],
            page["items"].as_array().unwrap().last().unwrap()["id"]
        );
    }
    // A page that ends on the refused issue gives `next` too.
    let page = get(&format!("/issues?limit=2&after={}", ids[47]))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["items"][1]["id"], ids[49]);
    assert_eq!(page["next"], ids[49]);
    // The last page is exactly full: no `next`, and no empty page after it.
    let last = get(&format!("/issues?limit=50&after={}", ids[SEEDED - 51]))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(last["items"].as_array().unwrap().len(), 50);
    assert_eq!(last["items"][49]["id"], ids[SEEDED - 1]);
    assert_problem(&last["items"][49]["problem"], &ids[SEEDED - 1], "");
    assert_eq!(last["next"], Value::Null);

    // Reading one: 409 with the problem; its raw revision is where the problem says.
    let id = &refused[0];
    let problem = get(&format!("/issues/docs/{id}"))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    assert_problem(&problem, id, "");
    assert!(problem["detail"].as_str().unwrap().contains(id.as_str()));
    let raw = get(problem["raw_revision"].as_str().unwrap())
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(raw["payload"]["status"], "wontfix");
    assert_eq!(raw["version"], 1);
    // By revision, the same.
    let by_revision = get(&format!("/issues/docs/{id}/revisions/1"))
        .send(&app)
        .await
        .expect(StatusCode::CONFLICT);
    assert_problem(&by_revision, id, "");

    // Nested under a prefix, the link follows.
    let nested = axum::Router::new().nest("/api", app.clone());
    let problem = get(&format!("/api/issues/docs/{id}"))
        .send(&nested)
        .await
        .expect(StatusCode::CONFLICT);
    assert_problem(&problem, id, "/api");
    let page = get("/api/issues?limit=1000")
        .send(&nested)
        .await
        .expect(StatusCode::OK);
    let entry = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item.get("problem").is_some())
        .unwrap();
    assert_problem(&entry["problem"], entry["id"].as_str().unwrap(), "/api");
}

#[tokio::test]
async fn the_failure_set_is_listed_page_by_page() {
    let (_dir, app) = example();
    let empty = get("/issues/migrate/failures")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(empty, serde_json::json!({ "failures": [], "next": null }));

    let report = post("/issues/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(report["failed"], REFUSED);
    assert_eq!(report["migrated"], SEEDED - REFUSED);

    // The migrate routes need the token.
    get("/issues/migrate/failures")
        .send(&app)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    get("/issues/migrate/failures?limit=0")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);

    // A limit that divides the set exactly: the last page is full and says no more follow.
    for limit in [25, REFUSED] {
        let mut uri = format!("/issues/migrate/failures?limit={limit}");
        let mut sizes = Vec::new();
        loop {
            let page = get(&uri).auth().send(&app).await.expect(StatusCode::OK);
            sizes.push(page["failures"].as_array().unwrap().len());
            match page["next"].as_str() {
                Some(next) => uri = format!("/issues/migrate/failures?limit={limit}&after={next}"),
                None => break,
            }
        }
        assert_eq!(sizes, vec![limit; REFUSED / limit], "limit {limit}");
    }

    let mut listed = Vec::new();
    let mut uri = "/issues/migrate/failures?limit=20".to_owned();
    let mut pages = 0;
    loop {
        let page = get(&uri).auth().send(&app).await.expect(StatusCode::OK);
        pages += 1;
        for failure in page["failures"].as_array().unwrap() {
            assert_eq!(failure["revision"], 1, "{failure}");
            assert_eq!(failure["from_version"], 1, "{failure}");
            assert_eq!(failure["class"], "step", "{failure}");
            assert!(failure["error"]
                .as_str()
                .unwrap()
                .contains("unknown status `wontfix`"));
            listed.push(failure["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => uri = format!("/issues/migrate/failures?limit=20&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, REFUSED.div_ceil(20));
    // In id order, each once, and exactly the documents a list shows as not upgradable.
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(listed, sorted);
    let problems: Vec<String> = crate::not_upgradable::pages(&app)
        .await
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap().clone())
        .filter(|item| item.get("problem").is_some())
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, problems);
}

#[tokio::test]
async fn openapi_declares_the_problem_the_entry_and_the_failures_route() {
    let (_dir, app) = example();
    let doc = get("/openapi.json").send(&app).await.expect(StatusCode::OK);
    for path in [
        "/issues/docs/{id}",
        "/issues/docs/{id}/revisions/{revision}",
    ] {
        assert_eq!(
            doc["paths"][path]["get"]["responses"]["409"]["content"]["application/problem+json"]
                ["schema"]["anyOf"][0]["$ref"],
            "#/components/schemas/NotUpgradable",
            "{path}"
        );
    }
    let items = &doc["paths"]["/issues"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["properties"]["items"]["items"]["oneOf"];
    assert_eq!(items[1]["$ref"], "#/components/schemas/ProblemEntry");
    let failures = &doc["paths"]["/issues/migrate/failures"]["get"];
    assert_eq!(failures["security"], serde_json::json!([{ "bearer": [] }]));
    let schemas = &doc["components"]["schemas"];
    // A read meets only the classes of an upgrade; a migration also `invalid_output`.
    assert_eq!(
        schemas["NotUpgradable"]["allOf"][1]["properties"]["class"]["enum"],
        serde_json::json!(["step", "panic", "decode"])
    );
    assert_eq!(
        schemas["Failure"]["properties"]["class"]["enum"],
        serde_json::json!(["step", "panic", "decode", "invalid_output"])
    );

    // Revolve's own schemas are the ones not named after the collection, and the router refuses
    // a collection named like one of them, whose schema would take its place.
    let own: Vec<&str> = schemas
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|name| *name != "issues" && !name.starts_with("issues."))
        .collect();
    assert!(
        own.contains(&"Problem") && own.contains(&"ProblemEntry"),
        "{own:?}"
    );
    let store = revolve::Store::temporary().unwrap();
    let refused = revolve::http::Router::new(store)
        .token(TOKEN)
        .collection::<Problem>()
        .unwrap_err();
    assert!(
        matches!(refused, revolve::http::BuildError::ReservedName { ref collection } if collection == "Problem"),
        "{refused:?}"
    );
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, revolve::Schema)]
#[schema(collection = "Problem", version = 1)]
struct Problem {
    text: String,
}

/// A store at `dir`, waiting for the lock of the handle dropped before.
fn reopen(dir: &std::path::Path) -> revolve::Store {
    revolve::Store::builder()
        .path(dir)
        .lock_timeout(std::time::Duration::from_secs(30))
        .open()
        .unwrap()
}

/// Every page of `limit=1`: the entries, each page holding one, with `next` until the last.
async fn single_pages(app: &axum::Router) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut uri = "/issues?limit=1".to_owned();
    loop {
        let page = get(&uri).send(app).await.expect(StatusCode::OK);
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
        entries.push(page["items"][0].clone());
        match page["next"].as_str() {
            Some(next) => uri = format!("/issues?limit=1&after={next}"),
            None => return entries,
        }
    }
}

#[tokio::test]
async fn a_document_a_newer_program_wrote_is_a_problem_entry_and_paging_goes_on() {
    use crate::support::{store_with_ids, v1};
    let (dir, store) = store_with_ids(&[("a", v1("a")), ("c", v1("c"))]);
    drop(store);
    {
        // The newer build writes `b` at version 2.
        let newer = reopen(dir.path());
        let issues = newer.collection::<crate::support::IssueV2>().unwrap();
        let mut b = issues.get("a").unwrap().unwrap().data;
        b.title = "b".to_owned();
        issues.insert_with_id("b", &b).unwrap();
    }
    // The older build lists them.
    let app = revolve::http::Router::new(reopen(dir.path()))
        .collection::<crate::support::IssueV1>()
        .unwrap()
        .read_only()
        .build()
        .unwrap();
    for entries in [
        get("/issues").send(&app).await.expect(StatusCode::OK)["items"]
            .as_array()
            .unwrap()
            .clone(),
        single_pages(&app).await,
    ] {
        let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(entries[0]["data"]["title"], "a");
        assert_eq!(entries[1]["revision"], 1);
        let problem = &entries[1]["problem"];
        assert_eq!(
            problem["type"], "urn:revolve:problem:version-too-new",
            "{problem}"
        );
        assert_eq!(problem["status"], 409);
        assert_eq!(entries[2]["data"]["title"], "c");
    }
}

#[tokio::test]
async fn a_damaged_document_is_a_problem_entry_and_paging_goes_on() {
    use crate::support::{store_with_ids, v1};
    use sha2::Digest as _;
    let (_dir, store) = store_with_ids(&[("a", v1("a")), ("b", v1("DAMAGE-ME")), ("c", v1("c"))]);
    // Damage `b`'s only revision in a backup (and seal the backup again), and restore it: the
    // revision's own checksum no longer matches.
    let mut backup = Vec::new();
    let _ = store.export(&mut backup, |_| {}).unwrap();
    drop(store);
    let marker = b"DAMAGE-ME";
    let at = backup
        .windows(marker.len())
        .position(|window| window == marker)
        .unwrap();
    assert!(
        backup[at + 1..]
            .windows(marker.len())
            .all(|window| window != marker),
        "the marker is in one place only"
    );
    backup[at] = b'd';
    let sealed = backup.len() - 32;
    let digest = sha2::Sha256::digest(&backup[..sealed]);
    backup[sealed..].copy_from_slice(&digest);
    let restored = tempfile::tempdir().unwrap();
    let path = restored.path().join("store");
    let _ = revolve::Store::import(&path, &backup[..], |_| {}).unwrap();
    let app = revolve::http::Router::new(reopen(&path))
        .collection::<crate::support::IssueV2>()
        .unwrap()
        .read_only()
        .build()
        .unwrap();
    for entries in [
        get("/issues").send(&app).await.expect(StatusCode::OK)["items"]
            .as_array()
            .unwrap()
            .clone(),
        single_pages(&app).await,
    ] {
        let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(entries[0]["data"]["title"], "a");
        assert_eq!(entries[1]["revision"], 1);
        let problem = &entries[1]["problem"];
        assert_eq!(problem["type"], "urn:revolve:problem:corrupt", "{problem}");
        assert_eq!(problem["status"], 500);
        assert_eq!(
            (&problem["id"], &problem["revision"]),
            (&json!("b"), &json!(1))
        );
        assert_eq!(entries[2]["data"]["title"], "c");
    }
    // Read alone, the damaged document is an internal error, logged.
    get("/issues/docs/b")
        .send(&app)
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR);
}
