//! A table of bad requests: each gets its status and an `application/problem+json` body, and
//! changes nothing (documents, counts, histories and the run ledger are as before).

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use revolve::{Collection, Revision};

use crate::support::{call, issue_json, issues, IssueV2, TOKEN};

/// One bad request: method, path, headers, body, expected status.
struct Bad {
    method: Method,
    uri: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Body,
    status: StatusCode,
}

enum Body {
    None,
    Json(&'static str),
    Raw(&'static str),
    Big,
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

fn bad(
    method: Method,
    uri: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Body,
    status: StatusCode,
) -> Bad {
    Bad {
        method,
        uri,
        headers,
        body,
        status,
    }
}

/// What a bad request must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    counts: BTreeMap<u32, u64>,
    removed: u64,
    known: usize,
    runs: usize,
}

fn snapshot(issues: &Collection<IssueV2>) -> Snapshot {
    Snapshot {
        counts: issues.count_by_version().unwrap(),
        removed: issues.removed_count().unwrap(),
        known: issues.history("known").unwrap().len(),
        runs: issues.runs().unwrap().len(),
    }
}

/// A path whose id is longer than the store allows.
fn too_long() -> &'static str {
    Box::leak(format!("/issues/docs/{}", "x".repeat(revolve::MAX_ID_LEN + 1)).into_boxed_str())
}

#[allow(clippy::too_many_lines)] // the table
fn table() -> Vec<Bad> {
    use Body::{Big, Json, None, Raw};
    use Method as M;
    use StatusCode as S;
    vec![
        // Bodies.
        bad(
            M::POST,
            "/issues",
            JSON,
            Raw(r#"{"title":"#),
            S::BAD_REQUEST,
        ),
        bad(M::POST, "/issues", JSON, Raw(""), S::BAD_REQUEST),
        bad(
            M::POST,
            "/issues",
            JSON,
            Raw("{\"title\":\"t\",\"status\":\"open\",\"priority\":1} trailing"),
            S::BAD_REQUEST,
        ),
        bad(M::POST, "/issues", JSON, Raw("\u{feff}{}"), S::BAD_REQUEST),
        bad(
            M::POST,
            "/issues",
            JSON,
            Json(r#"{"title":5,"status":"open","priority":1}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues",
            JSON,
            Json(r#"{"title":"t"}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues",
            JSON,
            Json(r#"{"title":"t","status":"lost","priority":1}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues",
            JSON,
            Json(r#"{"title":"t","status":"open","priority":300}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues",
            JSON,
            Json("[]"),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues",
            JSON,
            Json("null"),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues",
            &[],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::UNSUPPORTED_MEDIA_TYPE,
        ),
        bad(
            M::POST,
            "/issues",
            &[("content-type", "text/plain")],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::UNSUPPORTED_MEDIA_TYPE,
        ),
        bad(
            M::POST,
            "/issues",
            &[("content-type", "application/x-www-form-urlencoded")],
            Raw("title=t"),
            S::UNSUPPORTED_MEDIA_TYPE,
        ),
        bad(M::POST, "/issues", JSON, Big, S::PAYLOAD_TOO_LARGE),
        // Unknown things.
        bad(
            M::POST,
            "/nothing",
            JSON,
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::NOT_FOUND,
        ),
        bad(M::GET, "/nothing", &[], None, S::NOT_FOUND),
        bad(M::GET, "/nothing/docs/known", &[], None, S::NOT_FOUND),
        bad(M::GET, "/issues/docs/missing", &[], None, S::NOT_FOUND),
        bad(M::GET, "/issues/docs/", &[], None, S::NOT_FOUND),
        bad(
            M::GET,
            "/issues/docs/missing/revisions",
            &[],
            None,
            S::NOT_FOUND,
        ),
        bad(
            M::GET,
            "/issues/docs/known/revisions/99",
            &[],
            None,
            S::NOT_FOUND,
        ),
        bad(
            M::GET,
            "/issues/docs/known/revisions/99?raw=true",
            &[],
            None,
            S::NOT_FOUND,
        ),
        bad(
            M::GET,
            "/issues/docs/known?revision=99",
            &[],
            None,
            S::NOT_FOUND,
        ),
        bad(
            M::PUT,
            "/issues/docs/missing",
            JSON,
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::NOT_FOUND,
        ),
        bad(
            M::PUT,
            "/issues/docs/missing",
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::NOT_FOUND,
        ),
        bad(M::DELETE, "/issues/docs/missing", &[], None, S::NOT_FOUND),
        bad(M::GET, "/issues/schema/99", &[], None, S::NOT_FOUND),
        bad(
            M::GET,
            "/issues/migrate/runs/999999",
            &[],
            None,
            S::NOT_FOUND,
        ),
        bad(
            M::POST,
            "/issues/migrate/runs/999999/revert",
            &[],
            None,
            S::NOT_FOUND,
        ),
        bad(
            M::POST,
            "/issues/migrate/runs/999999/cancel",
            &[],
            None,
            S::NOT_FOUND,
        ),
        bad(M::GET, "/a/b/c/d/e/f", &[], None, S::NOT_FOUND),
        // Preconditions.
        bad(
            M::PUT,
            "/issues/docs/known",
            &[("content-type", "application/json"), ("if-match", "\"9\"")],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::PRECONDITION_FAILED,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[("content-type", "application/json"), ("if-none-match", "*")],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::PRECONDITION_FAILED,
        ),
        bad(
            M::DELETE,
            "/issues/docs/known",
            &[("if-match", "\"7\"")],
            None,
            S::PRECONDITION_FAILED,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[
                ("content-type", "application/json"),
                ("if-match", "W/\"1\""),
            ],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::BAD_REQUEST,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[("content-type", "application/json"), ("if-match", "1")],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::BAD_REQUEST,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[("content-type", "application/json"), ("if-match", "\"0\"")],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::BAD_REQUEST,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[
                ("content-type", "application/json"),
                ("if-match", "\"1\""),
                ("if-none-match", "*"),
            ],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            // RFC 9110 §13.2.2: the two cannot both hold, so the preconditions fail.
            S::PRECONDITION_FAILED,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[
                ("content-type", "application/json"),
                ("if-none-match", "\"1\""),
            ],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::BAD_REQUEST,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[
                ("content-type", "application/json"),
                ("if-match", "\"1\""),
                ("if-match", "\"1\""),
            ],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::BAD_REQUEST,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[("if-match", "\"1\"")],
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::UNSUPPORTED_MEDIA_TYPE,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            Raw("{"),
            S::BAD_REQUEST,
        ),
        bad(
            M::PUT,
            "/issues/docs/known",
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            Json(r#"{"title":[]}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::DELETE,
            "/issues/docs/known",
            &[("if-none-match", "*")],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::DELETE,
            "/issues/docs/known",
            &[("if-match", "\"one\"")],
            None,
            S::BAD_REQUEST,
        ),
        // Paths and queries.
        bad(
            M::GET,
            "/issues/docs/known?revision=0",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::GET,
            "/issues/docs/known?revision=abc",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::GET,
            "/issues/docs/known?rev=1",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::GET,
            "/issues/docs/known/revisions/abc",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::GET,
            "/issues/docs/known/revisions/0",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::GET,
            "/issues/docs/known/revisions/-1",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::GET,
            "/issues/docs/known/revisions/1?raw=maybe",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(M::GET, "/issues?limit=0", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues?limit=5000", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues?limit=-1", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues?limit=ten", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues?after=", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues?bogus=1", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues/schema/abc", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues/schema/-2", &[], None, S::BAD_REQUEST),
        bad(
            M::GET,
            "/issues/migrate/runs/abc",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::GET,
            "/issues/migrate/runs?limit=0",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/runs/abc/revert",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/runs/abc/cancel",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(M::GET, "/issues/docs/%FF", &[], None, S::BAD_REQUEST),
        bad(M::GET, "/issues/docs/a%00b", &[], None, S::BAD_REQUEST),
        bad(
            M::GET,
            "/issues/docs/a%00b/revisions",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(M::GET, "/issues?after=a%00b", &[], None, S::BAD_REQUEST),
        bad(M::GET, too_long(), &[], None, S::BAD_REQUEST),
        // Migration options.
        bad(
            M::POST,
            "/issues/migrate/execute",
            JSON,
            Json(r#"{"limit":"ten"}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute",
            JSON,
            Json(r#"{"limit":-1}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute",
            JSON,
            Json(r#"{"limt":5}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute",
            JSON,
            Json("[5]"),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute",
            JSON,
            Raw(r#"{"limit":5"#),
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute",
            &[],
            Json(r#"{"limit":5}"#),
            S::UNSUPPORTED_MEDIA_TYPE,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute?limit=abc",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute?limit=-5",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute?limt=5",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute?limit=1",
            JSON,
            Json(r#"{"limit":2}"#),
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/execute?retry_failed=yes",
            &[],
            None,
            S::BAD_REQUEST,
        ),
        bad(
            M::POST,
            "/issues/migrate/test",
            JSON,
            Json(r#"{"limit":"all"}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        bad(
            M::POST,
            "/issues/migrate/test?limit=1",
            JSON,
            Json(r#"{"limit":2}"#),
            S::BAD_REQUEST,
        ),
        bad(M::POST, "/nothing/migrate/execute", &[], None, S::NOT_FOUND),
        // Methods.
        bad(
            M::PATCH,
            "/issues/docs/known",
            JSON,
            Json(r#"{"title":"t"}"#),
            S::METHOD_NOT_ALLOWED,
        ),
        bad(M::DELETE, "/issues", &[], None, S::METHOD_NOT_ALLOWED),
        bad(
            M::PUT,
            "/issues",
            JSON,
            Json(r#"{"title":"t","status":"open","priority":1}"#),
            S::METHOD_NOT_ALLOWED,
        ),
        bad(
            M::GET,
            "/issues/migrate/execute",
            &[],
            None,
            S::METHOD_NOT_ALLOWED,
        ),
        bad(
            M::DELETE,
            "/issues/migrate/runs/1",
            &[],
            None,
            S::METHOD_NOT_ALLOWED,
        ),
        bad(M::POST, "/healthz", &[], None, S::METHOD_NOT_ALLOWED),
        bad(M::POST, "/issues/schema", &[], None, S::METHOD_NOT_ALLOWED),
        bad(
            M::POST,
            "/issues/docs/known/revisions",
            &[],
            None,
            S::METHOD_NOT_ALLOWED,
        ),
    ]
}

#[tokio::test]
async fn bad_requests_get_a_problem_and_change_nothing() {
    let (_dir, _store, app, issues) = issues();
    issues
        .insert_with_id(
            "known",
            &serde_json::from_value(issue_json("known")).unwrap(),
        )
        .unwrap();
    let table = table();
    assert!(table.len() >= 40, "{}", table.len());
    let before = snapshot(&issues);
    assert_eq!(before.known, 1);
    for row in table {
        let mut request =
            call(row.method.clone(), row.uri).header("authorization", &format!("Bearer {TOKEN}"));
        for (name, value) in row.headers {
            request = request.header(name, value);
        }
        request = match row.body {
            Body::None => request,
            Body::Json(text) | Body::Raw(text) => request.raw(text),
            Body::Big => request.raw(format!(
                "{{\"title\":\"{}\",\"status\":\"open\",\"priority\":1}}",
                "x".repeat(10_000)
            )),
        };
        let reply = request.send(&app).await;
        assert_eq!(
            reply.status,
            row.status,
            "{} {}: {}",
            row.method,
            row.uri,
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.expect(row.status);
        if row.status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(
                reply.headers.contains_key("allow"),
                "{} {}: no Allow",
                row.method,
                row.uri
            );
        }
        assert!(!problem["detail"].as_str().unwrap().is_empty());
        assert_eq!(
            snapshot(&issues),
            before,
            "{} {} changed the store",
            row.method,
            row.uri
        );
    }
    let known = issues.get("known").unwrap().unwrap();
    assert_eq!(
        (known.revision, known.data.title.as_str()),
        (Revision::FIRST, "known")
    );
}

#[tokio::test]
async fn deeply_nested_json_neither_overflows_nor_is_stored() {
    let (_dir, store, _, issues) = issues();
    let app = revolve::http::Router::new(store.clone())
        .collection::<IssueV2>()
        .unwrap()
        .token(TOKEN)
        .body_limit(1 << 20)
        .build()
        .unwrap();
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // Where the schema wants a string: refused at the first bracket.
    let typed = format!(
        r#"{{"title":{},"status":"open","priority":1}}"#,
        nested(100_000)
    );
    crate::support::post("/issues")
        .header("content-type", "application/json")
        .raw(typed)
        .send(&app)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(issues.len().unwrap(), 3);
    // In an unknown field: refused as one, without recursion.
    let ignored = format!(
        r#"{{"title":"t","status":"open","priority":1,"extra":{}}}"#,
        nested(100_000)
    );
    crate::support::post("/issues")
        .header("content-type", "application/json")
        .raw(ignored.clone())
        .send(&app)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(issues.len().unwrap(), 3);
    // Where unknown fields are allowed: skipped without recursion, and not stored.
    let lenient = revolve::http::Router::new(store)
        .collection::<IssueV2>()
        .unwrap()
        .allow_unknown_fields::<IssueV2>()
        .token(TOKEN)
        .body_limit(1 << 20)
        .build()
        .unwrap();
    let created = crate::support::post("/issues")
        .header("content-type", "application/json")
        .raw(ignored)
        .send(&lenient)
        .await
        .expect(StatusCode::CREATED);
    assert!(created["data"].get("extra").is_none());
}
