//! What the OpenAPI document promises, held against what the routes do: the points where they
//! disagreed (the contract test in `.ci/contract` runs schemathesis over the example server for
//! the rest).

use axum::http::StatusCode;
use revolve::MAX_ID_LEN;
use serde_json::{json, Value};

use crate::support::{get, issue_json, issues, post, put};

async fn document(app: &axum::Router) -> Value {
    get("/openapi.json").send(app).await.expect(StatusCode::OK)
}

fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no parameters for {method} {path}"))
        .iter()
        .find(|p| p["name"] == name)
        .map_or_else(|| panic!("no {name} on {method} {path}"), |p| &p["schema"])
}

#[tokio::test]
async fn bounds_and_shapes_are_declared_as_the_routes_enforce_them() {
    let (_dir, _store, app, _) = issues();
    let doc = document(&app).await;
    // Page sizes: 1 to 1000 everywhere, and 1001 is refused.
    for (path, method) in [
        ("/issues", "get"),
        ("/issues/docs/{id}/revisions", "get"),
        ("/issues/migrate/runs", "get"),
        ("/issues/migrate/failures", "get"),
    ] {
        let limit = parameter(&doc, path, method, "limit");
        assert_eq!(
            (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
            (Some(1), Some(1000)),
            "{path}"
        );
    }
    get("/issues/migrate/runs?limit=1001")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);
    // u64 and u32 parameters say so; the largest declared value is accepted (404: no such run).
    let run_id = parameter(&doc, "/issues/migrate/runs/{run_id}", "get", "run_id");
    assert_eq!(run_id["maximum"], json!(u64::MAX));
    get(&format!("/issues/migrate/runs/{}", u64::MAX))
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::NOT_FOUND);
    let version = parameter(&doc, "/issues/schema/{version}", "get", "version");
    assert_eq!(version["maximum"], json!(u32::MAX));
    get(&format!("/issues/schema/{}", u32::MAX))
        .send(&app)
        .await
        .expect(StatusCode::NOT_FOUND);
    // `before=0` is accepted (an empty page), and declared so.
    let before = parameter(&doc, "/issues/migrate/runs", "get", "before");
    assert_eq!(before["minimum"], 0);
    get("/issues/migrate/runs?before=0")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    // The failure set's cursor is an id, declared as the list's, and checked as one.
    assert_eq!(
        parameter(&doc, "/issues/migrate/failures", "get", "after"),
        &json!({ "type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, "pattern": "^[^\\u0000]+$" })
    );
    for after in ["", &"x".repeat(MAX_ID_LEN + 1), "a%00b"] {
        get(&format!("/issues/migrate/failures?after={after}"))
            .auth()
            .send(&app)
            .await
            .expect(StatusCode::BAD_REQUEST);
    }
    get(&format!(
        "/issues/migrate/failures?after={}",
        "x".repeat(MAX_ID_LEN)
    ))
    .auth()
    .send(&app)
    .await
    .expect(StatusCode::OK);
    // `/schema/history` is an array, and declared as one.
    let history = &doc["paths"]["/issues/schema/history"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert_eq!(history["type"], "array");
    assert!(get("/issues/schema/history")
        .send(&app)
        .await
        .expect(StatusCode::OK)
        .is_array());
    // The document body is closed, as the server refuses unknown fields.
    assert_eq!(
        doc["components"]["schemas"]["issues"]["additionalProperties"],
        false
    );
    // Times are declared as date-time strings.
    assert_eq!(
        doc["components"]["schemas"]["RunRecord"]["properties"]["started"]["format"],
        "date-time"
    );
}

#[tokio::test]
async fn a_whole_number_written_with_a_fraction_is_a_whole_number() {
    let (_dir, _store, app, _) = issues();
    for body in [
        json!({ "limit": 214.0 }),
        json!({ "limit": 2 }),
        json!({ "limit": null }),
    ] {
        post("/issues/migrate/test")
            .json(&body)
            .send(&app)
            .await
            .expect(StatusCode::OK);
    }
    post("/issues/migrate/test?limit=3.0")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    for body in [
        json!({ "limit": 2.5 }),
        json!({ "limit": -1 }),
        json!({ "limit": 1.0e30 }),
        json!({ "limit": "3" }),
        json!([null, null]),
        json!("x"),
    ] {
        post("/issues/migrate/test")
            .json(&body)
            .send(&app)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
    }
    post("/issues/migrate/test?limit=2.5")
        .send(&app)
        .await
        .expect(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_422_even_where_an_enum_is_expected() {
    let (_dir, _store, app, _) = issues();
    for (field, value) in [
        ("title", json!({})),
        ("status", json!({})),
        ("status", json!(0)),
        ("status", json!(null)),
        ("status", json!([null, null])),
        ("priority", json!(false)),
        ("status", json!("nonsense")),
    ] {
        let mut body = issue_json("x");
        body[field] = value;
        post("/issues")
            .json(&body)
            .send(&app)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Malformed JSON stays a bad request.
    for body in [&b"{"[..], b"{\"status\": }", b"nul"] {
        post("/issues")
            .header("content-type", "application/json")
            .raw(body.to_vec())
            .send(&app)
            .await
            .expect(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn if_match_with_if_none_match_fails_its_preconditions_once_well_formed() {
    let (_dir, _store, app, issues) = issues();
    let id = issues.iter().next().unwrap().unwrap().id;
    for target in [
        format!("/issues/docs/{id}"),
        "/issues/docs/absent".to_owned(),
    ] {
        let both =
            |call: crate::support::Call| call.header("if-match", "*").header("if-none-match", "*");
        both(put(&target))
            .json(&issue_json("x"))
            .send(&app)
            .await
            .expect(StatusCode::PRECONDITION_FAILED);
        // A body that would be refused anyway is refused first.
        both(put(&target))
            .send(&app)
            .await
            .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        both(put(&target))
            .json(&json!({ "title": 1 }))
            .send(&app)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
    }
}

/// The inputs of `method path`: each parameter's location, whether it is required and its schema,
/// by name; and the request body.
fn inputs(doc: &Value, path: &str, method: &str) -> (Vec<(String, Value)>, Value) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "no {method} {path}");
    let parameters = operation["parameters"]
        .as_array()
        .map(|parameters| {
            parameters
                .iter()
                .map(|p| {
                    let name = p["name"].as_str().unwrap().to_owned();
                    (name, json!([p["in"], p["required"], p["schema"]]))
                })
                .collect()
        })
        .unwrap_or_default();
    (parameters, operation["requestBody"].clone())
}

/// `.ci/schemathesis.toml` leaves out of the contract test's coverage phase the operations whose
/// inputs a covered twin takes through the same code. That holds for what they answer only if
/// they also declare the same inputs: otherwise the coverage phase checks a promise that the
/// left-out operation does not make.
#[tokio::test]
async fn twins_left_out_of_the_coverage_phase_declare_what_their_twin_declares() {
    let (_dir, _store, app, _) = issues();
    let doc = document(&app).await;
    let find = |inputs: &(Vec<(String, Value)>, Value), name: &str| {
        inputs
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| panic!("no parameter {name}"), |(_, input)| input.clone())
    };
    // PUT: the body of POST /{c}, the If-Match of DELETE, the id of GET.
    let put = inputs(&doc, "/issues/docs/{id}", "put");
    let post = inputs(&doc, "/issues", "post");
    let delete = inputs(&doc, "/issues/docs/{id}", "delete");
    let get_doc = inputs(&doc, "/issues/docs/{id}", "get");
    assert_eq!(put.1, post.1);
    assert_eq!(find(&put, "If-Match"), find(&delete, "If-Match"));
    assert_eq!(find(&put, "id"), find(&get_doc, "id"));
    // A run: the dry run's inputs, but for `join`, which only a run takes (a dry run joins
    // nothing: `false` or null there); joining is tested in `tests/http/join.rs`.
    let mut execute = inputs(&doc, "/issues/migrate/execute", "post");
    let mut test = inputs(&doc, "/issues/migrate/test", "post");
    let join = |inputs: &mut (Vec<(String, Value)>, Value)| {
        inputs.1["content"]["application/json"]["schema"]["properties"]
            .as_object_mut()
            .and_then(|properties| properties.remove("join"))
    };
    assert_eq!(
        join(&mut execute),
        Some(serde_json::json!({ "type": ["boolean", "null"] }))
    );
    assert_eq!(
        join(&mut test),
        Some(serde_json::json!({ "enum": [false, null] }))
    );
    assert_eq!(execute, test);
    // The failure set pages as the list does.
    let failures = inputs(&doc, "/issues/migrate/failures", "get");
    let list = inputs(&doc, "/issues", "get");
    assert_eq!(failures.0, list.0);
    // The ledger pages as the revisions do, with `before` for `after`.
    let runs = inputs(&doc, "/issues/migrate/runs", "get");
    let revisions = inputs(&doc, "/issues/docs/{id}/revisions", "get");
    assert_eq!(find(&runs, "before"), find(&revisions, "after"));
    assert_eq!(find(&runs, "limit"), find(&revisions, "limit"));
    assert_eq!(runs.0.len(), 2);
    // A revert and a cancel name their run as reading it does.
    for action in ["revert", "cancel"] {
        assert_eq!(
            inputs(
                &doc,
                &format!("/issues/migrate/runs/{{run_id}}/{action}"),
                "post"
            ),
            inputs(&doc, "/issues/migrate/runs/{run_id}", "get"),
            "{action}"
        );
    }
}
