//! `GET /readyz` while a startup migration runs in the background: still 200, listing it under
//! `migrating`, as the `OpenAPI` document declares.

use std::time::Duration;

use axum::http::StatusCode;
use revolve::{StartupPolicy, StartupState};

use crate::support::{get, router, store_with, Gate, GatedV1, GatedV2};

#[tokio::test]
async fn readyz_lists_a_background_migration_and_stays_200() {
    let gate = Gate::new("readyz-startup");
    let mut documents: Vec<GatedV1> = (0..200).map(|n| GatedV1 { n, gate: None }).collect();
    documents[0].gate = Some("readyz-startup".to_owned());
    let (_dir, store) = store_with(&documents);
    let app = router(&store);
    let ready = get("/readyz").send(&app).await.expect(StatusCode::OK);
    assert_eq!(ready["migrating"], serde_json::json!([]));

    let (_gated, report) = store
        .collection_with::<GatedV2>(StartupPolicy::MigrateInBackground)
        .unwrap();
    // The gate holds the migration's first chunk: it cannot have ended.
    let ready = get("/readyz").send(&app).await.expect(StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    let migrating = ready["migrating"].as_array().unwrap();
    assert_eq!(migrating.len(), 1, "{ready}");
    assert_eq!(migrating[0]["collection"], "gated");
    assert_eq!(migrating[0]["state"], "migrating");
    assert_eq!(migrating[0]["policy"], "migrate_in_background");
    assert_eq!(migrating[0]["to_version"], 2);

    gate.open();
    let background = report.background.unwrap();
    let status = tokio::task::spawn_blocking(move || background.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(status.state, StartupState::Done, "{status:?}");
    assert_eq!(status.migrated, 200);
    let ready = get("/readyz").send(&app).await.expect(StatusCode::OK);
    assert_eq!(ready["migrating"], serde_json::json!([]));

    let doc = get("/openapi.json").send(&app).await.expect(StatusCode::OK);
    let schema = &doc["paths"]["/readyz"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let item = &schema["properties"]["migrating"]["items"]["properties"];
    for field in migrating[0].as_object().unwrap().keys() {
        assert!(
            item.get(field).is_some(),
            "`{field}` is not declared: {schema}"
        );
    }
}
