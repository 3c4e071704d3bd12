//! The bearer token: which routes need it, 401s with `WWW-Authenticate`, and the builder's refusal
//! to serve writing routes without one.

use axum::http::{header, Method, StatusCode};
use revolve::http::{BuildError, Router};

use crate::support::{call, get, issue_json, issues, store_with, v1, IssueV2, TOKEN};

#[tokio::test]
async fn writes_and_migrate_routes_need_the_token() {
    let (_dir, _store, app, issues) = issues();
    let id = issues.iter().next().unwrap().unwrap().id.into_string();
    let doc = format!("/issues/docs/{id}");
    let guarded = [
        (Method::POST, "/issues".to_owned(), true),
        (Method::PUT, doc.clone(), true),
        (Method::DELETE, doc.clone(), false),
        (Method::POST, "/issues/migrate/test".to_owned(), false),
        (Method::POST, "/issues/migrate/execute".to_owned(), false),
        (Method::GET, "/issues/migrate/status".to_owned(), false),
        (Method::GET, "/issues/migrate/runs".to_owned(), false),
        (Method::GET, "/issues/migrate/runs/1".to_owned(), false),
        (
            Method::POST,
            "/issues/migrate/runs/1/revert".to_owned(),
            false,
        ),
        (
            Method::POST,
            "/issues/migrate/runs/1/cancel".to_owned(),
            false,
        ),
    ];
    let before = (
        issues.count_by_version().unwrap(),
        issues.history(&id).unwrap().len(),
    );
    for (method, uri, body) in guarded {
        let with_body = |call: crate::support::Call| {
            if body {
                call.json(&issue_json("sneaky"))
            } else {
                call
            }
        };
        // No header, another scheme, a wrong token, an empty one.
        for authorization in [
            None,
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer wrong"),
            Some("Bearer "),
        ] {
            let mut request = with_body(call(method.clone(), &uri));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let reply = request.send(&app).await;
            reply.expect(StatusCode::UNAUTHORIZED);
            let challenge = reply.header(&header::WWW_AUTHENTICATE);
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            assert_eq!(
                challenge.contains("invalid_token"),
                authorization == Some("Bearer wrong"),
                "{method} {uri} {authorization:?}: {challenge}"
            );
            assert!(!String::from_utf8_lossy(&reply.body).contains(TOKEN));
        }
    }
    assert_eq!(
        (
            issues.count_by_version().unwrap(),
            issues.history(&id).unwrap().len()
        ),
        before
    );
    assert!(issues.runs().unwrap().is_empty());

    // Reads stay open.
    get(&doc).send(&app).await.expect(StatusCode::OK);
    get("/issues").send(&app).await.expect(StatusCode::OK);
    get("/issues/schema")
        .send(&app)
        .await
        .expect(StatusCode::OK);
    get(&format!("{doc}/revisions"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    // And the right token, in any case of the scheme, is accepted.
    call(Method::POST, "/issues")
        .header("authorization", &format!("bearer {TOKEN}"))
        .json(&issue_json("ok"))
        .send(&app)
        .await
        .expect(StatusCode::CREATED);
}

/// Two `Authorization` headers are ambiguous (a proxy may have checked the other one): refused
/// with 400 whatever their order and values, and nothing is written.
#[tokio::test]
async fn a_duplicate_authorization_header_is_refused() {
    let (_dir, _store, app, issues) = issues();
    let valid = format!("Bearer {TOKEN}");
    let before = issues.count_by_version().unwrap();
    for pair in [
        [valid.as_str(), "Bearer wrong"],
        ["Bearer wrong", valid.as_str()],
        [valid.as_str(), valid.as_str()],
        [valid.as_str(), "Basic dXNlcjpwYXNz"],
    ] {
        let reply = call(Method::POST, "/issues")
            .header("authorization", pair[0])
            .header("authorization", pair[1])
            .json(&issue_json("ambiguous"))
            .send(&app)
            .await;
        let problem = reply.expect(StatusCode::BAD_REQUEST);
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("Authorization")),
            "{problem}"
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains(TOKEN));
    }
    let reply = call(Method::GET, "/issues/migrate/status")
        .header("authorization", &valid)
        .header("authorization", "Bearer wrong")
        .send(&app)
        .await;
    reply.expect(StatusCode::BAD_REQUEST);
    assert_eq!(issues.count_by_version().unwrap(), before);
    // One valid header still works.
    call(Method::POST, "/issues")
        .header("authorization", &valid)
        .json(&issue_json("one header"))
        .send(&app)
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn reads_can_be_protected_too() {
    let (_dir, store) = store_with(&[v1("a")]);
    let app = Router::new(store)
        .collection::<IssueV2>()
        .unwrap()
        .token(TOKEN)
        .protect_reads()
        .build()
        .unwrap();
    get("/issues")
        .send(&app)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    get("/issues/schema")
        .send(&app)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    get("/issues")
        .auth()
        .send(&app)
        .await
        .expect(StatusCode::OK);
    get("/healthz").send(&app).await.expect(StatusCode::OK);
    get("/openapi.json").send(&app).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn the_builder_refuses_writing_routes_without_a_token() {
    let (_dir, store) = store_with(&[v1("a")]);
    let mounted = || Router::new(store.clone()).collection::<IssueV2>().unwrap();
    assert!(matches!(mounted().build(), Err(BuildError::MissingToken)));
    assert!(matches!(
        mounted().token("").build(),
        Err(BuildError::EmptyToken)
    ));
    assert!(matches!(
        mounted().collection::<IssueV2>(),
        Err(BuildError::DuplicateCollection { .. })
    ));
    let message = mounted().build().unwrap_err().to_string();
    assert!(message.contains("local_development"), "{message}");

    // Read only: no token needed, and no writing or migrate route.
    let app = mounted().read_only().build().unwrap();
    get("/issues").send(&app).await.expect(StatusCode::OK);
    call(Method::POST, "/issues")
        .json(&issue_json("x"))
        .send(&app)
        .await
        .expect(StatusCode::METHOD_NOT_ALLOWED);
    call(Method::POST, "/issues/migrate/execute")
        .send(&app)
        .await
        .expect(StatusCode::NOT_FOUND);
    let doc = get("/openapi.json").send(&app).await.expect(StatusCode::OK);
    assert!(doc["paths"]["/issues"].get("post").is_none());

    // Local development: writes without a token.
    let app = mounted().local_development().build().unwrap();
    call(Method::POST, "/issues")
        .json(&issue_json("x"))
        .send(&app)
        .await
        .expect(StatusCode::CREATED);
    // A token set for local development is still required.
    let app = mounted().local_development().token(TOKEN).build().unwrap();
    call(Method::POST, "/issues")
        .json(&issue_json("x"))
        .send(&app)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

#[test]
fn the_token_is_not_in_the_builders_debug() {
    let store = revolve::Store::temporary().unwrap();
    let router = Router::new(store).token(TOKEN);
    assert!(!format!("{router:?}").contains(TOKEN));
}
