//! A body's fields that the schema does not declare are refused (422 naming them), not dropped,
//! unless the application allows them for the collection.

use axum::http::StatusCode;
use revolve::{Schema, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support::{get, issue_json, issues, post, put, store_with, IssueV1, IssueV2, TOKEN};

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Author {
    name: String,
    email: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Body {
    Text { text: String },
    Link { url: String },
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "notes", version = 1)]
struct Note {
    #[serde(alias = "heading")]
    title: String,
    author: Author,
    #[serde(flatten)]
    body: Body,
    tags: Vec<Author>,
}

fn notes(store: &Store, allow: bool) -> axum::Router {
    let router = revolve::http::Router::new(store.clone())
        .collection::<Note>()
        .unwrap()
        .token(TOKEN);
    if allow {
        router.allow_unknown_fields::<Note>()
    } else {
        router
    }
    .build()
    .unwrap()
}

fn note() -> serde_json::Value {
    json!({
        "title": "t",
        "author": { "name": "a", "email": null },
        "kind": "text",
        "text": "body",
        "tags": [{ "name": "b", "email": "b@example.invalid" }],
    })
}

#[tokio::test]
async fn a_misspelt_field_is_refused_and_nothing_is_written() {
    let (_dir, _store, app, issues) = issues();
    let before = issues.len().unwrap();
    let mut body = issue_json("typo");
    body["descripton"] = json!("this text would have been lost");
    let problem = post("/issues")
        .json(&body)
        .send(&app)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "urn:revolve:problem:unknown-field");
    assert_eq!(problem["fields"], json!(["/descripton"]));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("`/descripton`"),
        "{problem}"
    );
    assert_eq!(issues.len().unwrap(), before);

    // The same on a replace and on a create under a chosen id.
    let id = issues.iter().next().unwrap().unwrap().id;
    let current = issues.get(id.as_str()).unwrap().unwrap();
    put(&format!("/issues/docs/{id}"))
        .json(&body)
        .send(&app)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        issues.get(id.as_str()).unwrap().unwrap().revision,
        current.revision
    );
    put("/issues/docs/chosen")
        .header("if-none-match", "*")
        .json(&body)
        .send(&app)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(issues.get("chosen").unwrap().is_none());

    // Without the typo it is written.
    post("/issues")
        .json(&issue_json("fine"))
        .send(&app)
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn nested_flattened_and_tagged_fields_are_checked() {
    let (_dir, store) = store_with::<IssueV1>(&[]);
    let app = notes(&store, false);
    post("/notes")
        .json(&note())
        .send(&app)
        .await
        .expect(StatusCode::CREATED);
    // The old names of the document type's own fields (`Schema::ALIASES`) are known.
    let mut aliased = note();
    aliased["heading"] = aliased.as_object_mut().unwrap().remove("title").unwrap();
    post("/notes")
        .json(&aliased)
        .send(&app)
        .await
        .expect(StatusCode::CREATED);

    let cases = [
        ("/author/nmae", &["author"][..], "nmae"),
        ("/tags/0/extra", &["tags", "0"][..], "extra"),
        // `url` belongs to the variant `link`; this note is `text`.
        ("/url", &[][..], "url"),
    ];
    for (pointer, parent, name) in cases {
        let mut body = note();
        let mut target = &mut body;
        for step in parent {
            target = match step.parse::<usize>() {
                Ok(index) => &mut target[index],
                Err(_) => &mut target[*step],
            };
        }
        target[name] = json!("x");
        let problem = post("/notes")
            .json(&body)
            .send(&app)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["fields"], json!([pointer]), "{problem}");
    }
    // Several at once are all named.
    let mut body = note();
    body["a"] = json!(1);
    body["author"]["b"] = json!(2);
    let problem = post("/notes")
        .json(&body)
        .send(&app)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["fields"], json!(["/a", "/author/b"]));
}

#[tokio::test]
async fn an_application_can_allow_unknown_fields_per_collection() {
    let (_dir, store) = store_with::<IssueV1>(&[]);
    let app = notes(&store, true);
    let mut body = note();
    body["extra"] = json!("dropped");
    let created = post("/notes")
        .json(&body)
        .send(&app)
        .await
        .expect(StatusCode::CREATED);
    assert!(created["data"].get("extra").is_none());
    let id = created["id"].as_str().unwrap();
    let read = get(&format!("/notes/docs/{id}"))
        .send(&app)
        .await
        .expect(StatusCode::OK);
    assert_eq!(read["data"]["title"], "t");
    // Only that collection: issues mounted beside it still refuse.
    let both = revolve::http::Router::new(store.clone())
        .collection::<Note>()
        .unwrap()
        .collection::<IssueV2>()
        .unwrap()
        .allow_unknown_fields::<Note>()
        .token(TOKEN)
        .build()
        .unwrap();
    let mut issue = issue_json("x");
    issue["extra"] = json!(1);
    post("/issues")
        .json(&issue)
        .send(&both)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    post("/notes")
        .json(&body)
        .send(&both)
        .await
        .expect(StatusCode::CREATED);
}
