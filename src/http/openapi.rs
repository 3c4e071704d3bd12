//! The `OpenAPI` 3.1 document, built by hand from the mounted collections and their JSON Schemas.
//!
//! `OpenAPI` 3.1 schemas are JSON Schema 2020-12, which schemars writes, so each collection's
//! schema goes in as it is, except that its `$defs` move to `components/schemas` (a `$ref` such as
//! `#/$defs/Status` would otherwise resolve against the `OpenAPI` document's root).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::auth::needs_token;
use super::handlers::MAX_PAGE;
use super::mount::Mount;
use crate::MAX_ID_LEN;
use axum::http::Method;

/// The names of revolve's own schemas in `components/schemas`. A collection's schemas are named
/// after it (`{c}`, `{c}.Document`, `{c}.{def}`), so the router refuses to mount a collection
/// named like one of these, which would make two schemas one.
pub(crate) const OWN_SCHEMAS: [&str; 13] = [
    "Problem",
    "MigrationReport",
    "RunRecord",
    "RevertReport",
    "Status",
    "Revisions",
    "NotUpgradable",
    "ProblemEntry",
    "Failure",
    "Failures",
    "RevisionInfo",
    "RawRevision",
    "SchemaRecord",
];

/// What the document describes besides the collections.
pub(crate) struct Options {
    pub(crate) writable: bool,
    pub(crate) secured: bool,
    pub(crate) protect_reads: bool,
}

fn component_name(collection: &str, name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{collection}.{name}")
}

/// Points every `$ref` into `$defs` (and the root `#`) at the hoisted components.
fn rewrite_refs(value: &mut Value, collection: &str) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("$ref") {
                if reference == "#" {
                    *reference = format!("#/components/schemas/{collection}");
                } else if let Some(name) = reference.strip_prefix("#/$defs/") {
                    let name = name.replace("~1", "/").replace("~0", "~");
                    *reference =
                        format!("#/components/schemas/{}", component_name(collection, &name));
                }
            }
            for child in object.values_mut() {
                rewrite_refs(child, collection);
            }
        }
        Value::Array(items) => {
            for child in items {
                rewrite_refs(child, collection);
            }
        }
        _ => {}
    }
}

/// Closes every object schema that lists its `properties` and says nothing of others, as the
/// server refuses unknown fields (`fields.rs`): `additionalProperties: false`, or where
/// combinators add fields of their own (a flattened enum), `unevaluatedProperties: false`, which
/// sees them. The combinators' members are then left open: they describe part of the object.
fn close(schema: &mut Value) {
    let Value::Object(object) = schema else {
        return;
    };
    let own_fields = object.contains_key("properties");
    let combined = ["allOf", "oneOf", "anyOf"]
        .iter()
        .any(|key| object.contains_key(*key));
    for (key, child) in object.iter_mut() {
        match key.as_str() {
            "properties" | "$defs" | "definitions" => {
                if let Value::Object(children) = child {
                    children.values_mut().for_each(close);
                }
            }
            "items" | "additionalProperties" | "unevaluatedProperties" => close(child),
            "prefixItems" => {
                if let Value::Array(children) = child {
                    children.iter_mut().for_each(close);
                }
            }
            "allOf" | "oneOf" | "anyOf" if !own_fields => {
                if let Value::Array(children) = child {
                    children.iter_mut().for_each(close);
                }
            }
            _ => {}
        }
    }
    let open_ended = object.contains_key("additionalProperties")
        || object.contains_key("patternProperties")
        || object.contains_key("unevaluatedProperties");
    if own_fields && !open_ended {
        let keyword = if combined {
            "unevaluatedProperties"
        } else {
            "additionalProperties"
        };
        object.insert(keyword.to_owned(), Value::Bool(false));
    }
}

/// Adds a collection's schema and its definitions to `schemas`; `closed` when the server refuses
/// fields the schema does not declare.
fn hoist(schemas: &mut Map<String, Value>, collection: &str, mut schema: Value, closed: bool) {
    if closed {
        close(&mut schema);
    }
    if let Value::Object(root) = &mut schema {
        root.remove("$schema");
        if let Some(Value::Object(defs)) = root.remove("$defs") {
            for (name, mut def) in defs {
                rewrite_refs(&mut def, collection);
                schemas.insert(component_name(collection, &name), def);
            }
        }
    }
    rewrite_refs(&mut schema, collection);
    schemas.insert(collection.to_owned(), schema);
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The body of `GET /readyz`: `Store::startup_migrations` under way, as `StartupStatus`
/// serializes them.
fn readiness_schema() -> Value {
    let count = json!({ "type": "integer", "minimum": 0 });
    json!({
        "type": "object",
        "required": ["status", "migrating"],
        "properties": {
            "status": { "type": "string", "enum": ["ready"] },
            "migrating": {
                "description": "startup migrations under way: the store serves meanwhile, \
                                upgrading documents not yet migrated when they are read",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "collection", "policy", "to_version", "state", "waiting_for", "runs",
                        "done", "total", "migrated", "failed", "skipped"
                    ],
                    "properties": {
                        "collection": { "type": "string" },
                        "policy": {
                            "type": "string",
                            "enum": ["migrate_in_background", "migrate_before_serving"],
                        },
                        "to_version": count,
                        "state": { "type": "string", "enum": ["migrating"] },
                        "waiting_for": {
                            "description": "the run of another instance it waits for",
                            "type": ["integer", "null"],
                        },
                        "runs": { "type": "array", "items": count },
                        "done": count,
                        "total": count,
                        "migrated": count,
                        "failed": count,
                        "skipped": count,
                    },
                },
            },
        },
    })
}

fn json_content(schema: &Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn path_param(name: &str, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
}

fn query_param(name: &str, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn header_param(name: &str, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "header", "required": false, "description": description, "schema": schema })
}

/// `If-Match`: one strong entity tag, a revision (`"3"`), or `*`.
fn if_match_schema() -> Value {
    json!({
        "anyOf": [
            { "const": "*" },
            { "type": "string", "pattern": "^\"[1-9][0-9]{0,18}\"$" },
        ],
    })
}

/// An unsigned 64-bit integer from `minimum`.
fn u64_schema(minimum: u64) -> Value {
    json!({ "type": "integer", "minimum": minimum, "maximum": u64::MAX })
}

/// A page size.
fn page_schema() -> Value {
    json!({ "type": "integer", "minimum": 1, "maximum": MAX_PAGE })
}

/// The route that cancels a run, whose refusals are declared one by one.
const CANCEL_ROUTE: &str = "/{collection}/migrate/runs/{run_id}/cancel";

/// One operation: its success response, and the problem response for every error.
struct Op<'a> {
    method: Method,
    route: &'a str,
    summary: String,
    parameters: Vec<Value>,
    body: Option<Value>,
    status: &'a str,
    response: Value,
}

impl Op<'_> {
    fn render(self, options: &Options) -> (String, Value) {
        let mut responses = Map::new();
        if self.method == Method::PUT {
            // `If-None-Match: *` creates.
            responses.insert(
                "201".to_owned(),
                json!({ "description": "created", "content": self.response.clone() }),
            );
        }
        responses.insert(
            self.status.to_owned(),
            json!({ "description": "success", "content": self.response }),
        );
        if self.method == Method::GET
            && matches!(
                self.route,
                "/{collection}/docs/{id}" | "/{collection}/docs/{id}/revisions/{revision}"
            )
        {
            responses.insert(
                "409".to_owned(),
                json!({
                    "description": "the document cannot be upgraded to the latest version (`not-upgradable`), or a newer program wrote it (`version-too-new`)",
                    "content": { "application/problem+json": { "schema": {
                        "anyOf": [schema_ref("NotUpgradable"), schema_ref("Problem")],
                    } } },
                }),
            );
        }
        if self.route == CANCEL_ROUTE {
            let problem =
                json!({ "application/problem+json": { "schema": schema_ref("Problem") } });
            responses.insert(
                "404".to_owned(),
                json!({
                    "description": "no such run in the collection's ledger (`run-not-found`)",
                    "content": problem.clone(),
                }),
            );
            responses.insert(
                "409".to_owned(),
                json!({
                    "description": "the run is not under way any more (`run-not-running`, with `run_id` and its `state`); it is under way in another process and is not a joined run, so only that process can cancel it (`run-elsewhere`, with `run_id`); or it is a revert, which cannot be cancelled (`not-cancellable`, with `run_id`)",
                    "content": problem,
                }),
            );
        }
        responses.insert(
            "default".to_owned(),
            json!({
                "description": "an RFC 9457 problem",
                "content": { "application/problem+json": { "schema": schema_ref("Problem") } },
            }),
        );
        let mut operation = json!({ "summary": self.summary, "responses": responses });
        if !self.parameters.is_empty() {
            operation["parameters"] = Value::Array(self.parameters);
        }
        if let Some(body) = self.body {
            // Only a migration's body is optional, and it is the only one that is not a document.
            let required = !self.route.contains("/migrate/");
            operation["requestBody"] = json!({ "required": required, "content": body });
        }
        if options.secured && needs_token(&self.method, self.route, options.protect_reads) {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        (self.method.as_str().to_ascii_lowercase(), operation)
    }
}

/// The whole document.
#[allow(clippy::too_many_lines)] // one declarative table of routes, read top to bottom
pub(crate) fn document(collections: &BTreeMap<String, Arc<Mount>>, options: &Options) -> Value {
    let mut schemas = Map::new();
    schemas.insert(
        "Problem".to_owned(),
        json!({
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
            },
        }),
    );
    schemas.extend(record_schemas());
    not_upgradable_schemas(&mut schemas);
    let mut paths = Map::new();
    let mut add = |path: String, ops: Vec<Op<'_>>| {
        let mut item = Map::new();
        for op in ops {
            let (method, operation) = op.render(options);
            item.insert(method, operation);
        }
        paths.insert(path, Value::Object(item));
    };
    let object = json!({ "type": "object" });
    add(
        "/healthz".to_owned(),
        vec![Op {
            method: Method::GET,
            route: "/healthz",
            summary: "liveness".to_owned(),
            parameters: vec![],
            body: None,
            status: "200",
            response: json_content(&object),
        }],
    );
    add(
        "/readyz".to_owned(),
        vec![Op {
            method: Method::GET,
            route: "/readyz",
            summary: "readiness: 200 when the store is ready (listing the startup migrations \
                      under way, which do not make it unready), 503 problem+json otherwise"
                .to_owned(),
            parameters: vec![],
            body: None,
            status: "200",
            response: json_content(&readiness_schema()),
        }],
    );
    add(
        "/openapi.json".to_owned(),
        vec![Op {
            method: Method::GET,
            route: "/openapi.json",
            summary: "this document".to_owned(),
            parameters: vec![],
            body: None,
            status: "200",
            response: json_content(&object),
        }],
    );

    for (name, mounted) in collections {
        hoist(
            &mut schemas,
            name,
            mounted.schema(),
            !mounted.unknown_fields_allowed(),
        );
        let document = format!("{name}.Document");
        schemas.insert(
            document.clone(),
            json!({
                "type": "object",
                "required": ["id", "revision", "version", "stored_version", "data"],
                "properties": {
                    "id": { "type": "string" },
                    "revision": { "type": "integer", "minimum": 1 },
                    "version": { "type": "integer" },
                    "stored_version": { "type": "integer" },
                    "data": schema_ref(name),
                },
            }),
        );
        let doc_content = json_content(&schema_ref(&document));
        let data_body = json_content(&schema_ref(name));
        // Ids are 1 to MAX_ID_LEN bytes: exact for ASCII; JSON Schema counts characters.
        let id_schema = json!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_LEN,
            "pattern": "^[^\\u0000]+$",
        });
        let id = path_param(
            "id",
            &format!(
                "the document's id, percent-encoded: 1 to {MAX_ID_LEN} bytes of UTF-8, no NUL"
            ),
            &id_schema,
        );
        let positive = u64_schema(1);

        let mut root = vec![Op {
            method: Method::GET,
            route: "/{collection}",
            summary: format!("list `{name}` in id order"),
            parameters: vec![
                query_param(
                    "after",
                    "the `next` of the previous page (an id): documents with a greater id follow",
                    &id_schema,
                ),
                query_param("limit", "page size (100 if not given)", &page_schema()),
            ],
            body: None,
            status: "200",
            response: json_content(&json!({
                "type": "object",
                "required": ["items", "next"],
                "properties": {
                    "items": { "type": "array", "items": {
                        "oneOf": [schema_ref(&document), schema_ref("ProblemEntry")],
                    } },
                    "next": { "type": ["string", "null"] },
                },
            })),
        }];
        if options.writable {
            root.push(Op {
                method: Method::POST,
                route: "/{collection}",
                summary: format!("create a `{name}` document under a generated id"),
                parameters: vec![],
                body: Some(data_body.clone()),
                status: "201",
                response: doc_content.clone(),
            });
        }
        add(format!("/{name}"), root);

        let mut doc = vec![Op {
            method: Method::GET,
            route: "/{collection}/docs/{id}",
            summary: "read a document, upgraded to the latest version".to_owned(),
            parameters: vec![
                id.clone(),
                query_param("revision", "an older revision", &positive),
            ],
            body: None,
            status: "200",
            response: doc_content.clone(),
        }];
        if options.writable {
            doc.push(Op {
                method: Method::PUT,
                route: "/{collection}/docs/{id}",
                summary: "replace a document (`If-Match`), or create it under this id (`If-None-Match: *`)"
                    .to_owned(),
                parameters: vec![
                    id.clone(),
                    header_param(
                        "If-Match",
                        "the revision read, as \"N\"; or *",
                        &if_match_schema(),
                    ),
                    header_param(
                        "If-None-Match",
                        "* to create (412 if the document exists)",
                        &json!({ "type": "string", "enum": ["*"] }),
                    ),
                ],
                body: Some(data_body.clone()),
                status: "200",
                response: doc_content.clone(),
            });
            doc.push(Op {
                method: Method::DELETE,
                route: "/{collection}/docs/{id}",
                summary: "remove a document; its history stays".to_owned(),
                parameters: vec![
                    id.clone(),
                    header_param(
                        "If-Match",
                        "the revision read, as \"N\"; or *",
                        &if_match_schema(),
                    ),
                ],
                body: None,
                status: "200",
                response: json_content(&json!({
                    "type": "object",
                    "required": ["id", "revision", "removed"],
                    "properties": {
                        "id": { "type": "string" },
                        "revision": positive,
                        "removed": { "const": true },
                    },
                })),
            });
        }
        add(format!("/{name}/docs/{{id}}"), doc);
        add(
            format!("/{name}/docs/{{id}}/revisions"),
            vec![Op {
                method: Method::GET,
                route: "/{collection}/docs/{id}/revisions",
                summary: "the revisions' metadata, oldest first, in pages".to_owned(),
                parameters: vec![
                    id.clone(),
                    query_param(
                        "after",
                        "the `next` of the previous page: revisions numbered above it follow",
                        &u64_schema(0),
                    ),
                    query_param("limit", "page size (100 if not given)", &page_schema()),
                ],
                body: None,
                status: "200",
                response: json_content(&schema_ref("Revisions")),
            }],
        );
        add(
            format!("/{name}/docs/{{id}}/revisions/{{revision}}"),
            vec![Op {
                method: Method::GET,
                route: "/{collection}/docs/{id}/revisions/{revision}",
                summary: "one revision, upgraded; or as stored with `raw=true`".to_owned(),
                parameters: vec![
                    id.clone(),
                    path_param("revision", "the revision number", &positive),
                    query_param(
                        "raw",
                        "as stored, not upgraded",
                        &json!({ "type": "boolean" }),
                    ),
                ],
                body: None,
                status: "200",
                response: json_content(&json!({
                    "oneOf": [schema_ref(&document), schema_ref("RawRevision")],
                })),
            }],
        );
        for (suffix, summary, parameters, response) in [
            (
                "schema",
                "the latest version's JSON Schema",
                vec![],
                json!({
                    "type": "object",
                    "required": ["collection", "version", "fingerprint", "schema"],
                    "properties": {
                        "collection": { "type": "string" },
                        "version": { "type": "integer", "minimum": 1 },
                        "fingerprint": { "type": "string" },
                        "schema": {},
                    },
                }),
            ),
            (
                "schema/history",
                "every registration and accepted change",
                vec![],
                json!({ "type": "array", "items": schema_ref("SchemaRecord") }),
            ),
            (
                "schema/{version}",
                "one version's JSON Schema",
                vec![path_param(
                    "version",
                    "a schema version",
                    &json!({ "type": "integer", "minimum": 1, "maximum": u32::MAX }),
                )],
                json!({
                    "type": "object",
                    "required": ["version", "schema"],
                    "properties": {
                        "version": { "type": "integer", "minimum": 1 },
                        "schema": {},
                    },
                }),
            ),
        ] {
            add(
                format!("/{name}/{suffix}"),
                vec![Op {
                    method: Method::GET,
                    route: "/{collection}/schema",
                    summary: summary.to_owned(),
                    parameters,
                    body: None,
                    status: "200",
                    response: json_content(&response),
                }],
            );
        }
        if options.writable {
            let run_id = path_param("run_id", "a run's id", &positive);
            // The same options are taken as `?limit=N&retry_failed=true` (given in both, they
            // must agree): only the body is declared, as no schema can say "agree".
            // A dry run writes nothing, so it joins no run: `join` may only be false there.
            let migrate_body = |join: Value| {
                json_content(&json!({
                    "type": "object",
                    "properties": {
                        "limit": { "type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX },
                        "retry_failed": { "type": ["boolean", "null"] },
                        "join": join,
                    },
                    "additionalProperties": false,
                }))
            };
            let report = json!({
                "application/json": { "schema": schema_ref("MigrationReport") },
                "application/x-ndjson": { "schema": { "type": "string" } },
            });
            for (suffix, summary, join) in [
                (
                    "test",
                    "dry run: every step, no write",
                    json!({ "enum": [false, null] }),
                ),
                (
                    "execute",
                    "migrate documents to the latest version",
                    json!({ "type": ["boolean", "null"] }),
                ),
            ] {
                add(
                    format!("/{name}/migrate/{suffix}"),
                    vec![Op {
                        method: Method::POST,
                        route: "/{collection}/migrate/",
                        summary: summary.to_owned(),
                        parameters: vec![],
                        body: Some(migrate_body(join)),
                        status: "200",
                        response: report.clone(),
                    }],
                );
            }
            add(
                format!("/{name}/migrate/failures"),
                vec![Op {
                    method: Method::GET,
                    route: "/{collection}/migrate/failures",
                    summary: "the failure set: documents whose migration failed, in id order"
                        .to_owned(),
                    parameters: vec![
                        query_param(
                            "after",
                            "the `next` of the previous page (an id): documents with a greater id follow",
                            &id_schema,
                        ),
                        query_param("limit", "page size (100 if not given)", &page_schema()),
                    ],
                    body: None,
                    status: "200",
                    response: json_content(&schema_ref("Failures")),
                }],
            );
            add(
                format!("/{name}/migrate/status"),
                vec![Op {
                    method: Method::GET,
                    route: "/{collection}/migrate/status",
                    summary: "counts per version, pending, last runs".to_owned(),
                    parameters: vec![],
                    body: None,
                    status: "200",
                    response: json_content(&schema_ref("Status")),
                }],
            );
            add(
                format!("/{name}/migrate/runs"),
                vec![Op {
                    method: Method::GET,
                    route: "/{collection}/migrate/runs",
                    summary: "the ledger, newest first".to_owned(),
                    parameters: vec![
                        query_param(
                            "before",
                            "the `next` of the previous page: runs with a lower id follow",
                            &u64_schema(0),
                        ),
                        query_param("limit", "page size (100 if not given)", &page_schema()),
                    ],
                    body: None,
                    status: "200",
                    response: json_content(&json!({
                        "type": "object",
                        "required": ["runs", "next"],
                        "properties": {
                            "runs": { "type": "array", "items": schema_ref("RunRecord") },
                            "next": { "type": ["integer", "null"] },
                        },
                    })),
                }],
            );
            add(
                format!("/{name}/migrate/runs/{{run_id}}"),
                vec![Op {
                    method: Method::GET,
                    route: "/{collection}/migrate/runs/{run_id}",
                    summary: "one run of the ledger".to_owned(),
                    parameters: vec![run_id.clone()],
                    body: None,
                    status: "200",
                    response: json_content(&schema_ref("RunRecord")),
                }],
            );
            add(
                format!("/{name}/migrate/runs/{{run_id}}/cancel"),
                vec![Op {
                    method: Method::POST,
                    route: CANCEL_ROUTE,
                    summary: "ask a run under way to stop at its next chunk boundary: a run this \
                              server started, or a joined run in any process; answered at once, \
                              the run's record says how it ended"
                        .to_owned(),
                    parameters: vec![run_id.clone()],
                    body: None,
                    status: "202",
                    response: json_content(&json!({
                        "type": "object",
                        "required": ["run_id", "cancel"],
                        "properties": {
                            "run_id": u64_schema(1),
                            "cancel": { "const": "requested" },
                        },
                    })),
                }],
            );
            add(
                format!("/{name}/migrate/runs/{{run_id}}/revert"),
                vec![Op {
                    method: Method::POST,
                    route: "/{collection}/migrate/runs/{run_id}/revert",
                    summary: "restore what a run replaced, as new revisions".to_owned(),
                    parameters: vec![run_id],
                    body: None,
                    status: "200",
                    response: json_content(&schema_ref("RevertReport")),
                }],
            );
        }
    }

    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "revolve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Versioned documents whose schemas evolve. Every error is an RFC 9457 problem.",
        },
        "paths": paths,
        "components": { "schemas": schemas },
    });
    if options.secured {
        document["components"]["securitySchemes"] =
            json!({ "bearer": { "type": "http", "scheme": "bearer" } });
    }
    document
}

/// The records the migrate and history routes answer with, as the API shows them: times as
/// RFC 3339 strings, durations as `elapsed_ms`.
#[allow(clippy::too_many_lines)] // one declarative table of records
fn record_schemas() -> Map<String, Value> {
    let count = json!({ "type": "integer", "minimum": 0 });
    let revision = json!({ "type": "integer", "minimum": 1 });
    let version = json!({ "type": "integer", "minimum": 1 });
    let time = json!({ "type": "string", "format": "date-time" });
    let classes = json!(["step", "panic", "decode", "invalid_output"]);
    let by_class = json!({ "type": "object", "additionalProperties": count });
    let origin = json!({
        "type": "object",
        "required": ["kind"],
        "properties": {
            "kind": { "enum": ["write", "migration", "revert", "upgrade_on_read"] },
            "run": count,
        },
    });
    let info_properties = json!({
        "revision": revision,
        "parent": { "type": ["integer", "null"], "minimum": 1 },
        "version": { "type": ["integer", "null"], "minimum": 1 },
        "removed": { "type": "boolean" },
        "origin": origin,
        "timestamp": time,
    });
    let info_required = json!([
        "revision",
        "parent",
        "version",
        "removed",
        "origin",
        "timestamp"
    ]);
    let mut raw_properties = info_properties.clone();
    raw_properties["id"] = json!({ "type": "string" });
    raw_properties["payload"] = json!({});
    let mut raw_required = info_required.clone();
    if let Value::Array(required) = &mut raw_required {
        required.extend([json!("id"), json!("payload")]);
    }
    let worker = json!({
        "type": "object",
        "required": [
            "worker", "instance", "host", "pid", "started", "heartbeat", "live", "taken",
            "migrated", "failed", "skipped",
        ],
        "properties": {
            "worker": { "type": "string" },
            "instance": { "type": "string" },
            "host": { "type": "string" },
            "pid": count,
            "started": time,
            "heartbeat": time,
            "live": { "type": "boolean" },
            "taken": count,
            "migrated": count,
            "failed": count,
            "skipped": count,
        },
    });
    let schemas = json!({
        "RevisionInfo": {
            "type": "object",
            "required": info_required,
            "properties": info_properties,
        },
        "RawRevision": {
            "type": "object",
            "required": raw_required,
            "properties": raw_properties,
        },
        "Revisions": {
            "type": "object",
            "required": ["id", "revisions", "next"],
            "properties": {
                "id": { "type": "string" },
                "revisions": { "type": "array", "items": schema_ref("RevisionInfo") },
                "next": { "type": ["integer", "null"], "minimum": 1 },
            },
        },
        "SchemaRecord": {
            "type": "object",
            "required": ["version", "fingerprint", "recorded", "event", "changes", "schema"],
            "properties": {
                "version": version,
                "fingerprint": { "type": "string" },
                "recorded": time,
                "event": { "enum": ["registered", "compatible", "accepted"] },
                "changes": { "type": "array" },
                "schema": {},
            },
        },
        "Failure": {
            "type": "object",
            "required": ["id", "revision", "from_version", "class", "error"],
            "properties": {
                "id": { "type": "string" },
                "revision": revision,
                "from_version": version,
                "class": { "enum": classes },
                "error": { "type": "string" },
            },
        },
        "Failures": {
            "type": "object",
            "required": ["failures", "next"],
            "properties": {
                "failures": { "type": "array", "items": schema_ref("Failure") },
                "next": { "type": ["string", "null"] },
            },
        },
        "RunRecord": {
            "type": "object",
            "required": [
                "id", "collection", "kind", "from_versions", "to_version", "limit", "dry_run",
                "retry_failed", "started", "finished", "state", "scanned", "migrated", "failed",
                "skipped", "failures", "failures_by_class", "schema_fingerprint", "reverted_by", "workers",
            ],
            "properties": {
                "id": count,
                "collection": { "type": "string" },
                "kind": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {
                        "kind": { "enum": ["migration", "revert"] },
                        "of": count,
                    },
                },
                "from_versions": { "type": "array", "items": version },
                "to_version": version,
                "limit": { "type": ["integer", "null"], "minimum": 0 },
                "dry_run": { "type": "boolean" },
                "retry_failed": { "type": "boolean" },
                "started": time,
                "finished": { "type": ["string", "null"], "format": "date-time" },
                "state": {
                    "enum": [
                        "running", "done", "done_with_failures", "cancelled", "interrupted",
                        "reverted",
                    ],
                },
                "scanned": count,
                "migrated": count,
                "failed": count,
                "skipped": count,
                "failures": { "type": "array", "items": schema_ref("Failure") },
                "failures_by_class": by_class,
                "schema_fingerprint": { "type": ["string", "null"] },
                "reverted_by": { "type": ["integer", "null"], "minimum": 0 },
                "workers": { "type": "array", "items": worker },
            },
        },
        "MigrationReport": {
            "type": "object",
            "required": [
                "run_id", "dry_run", "to_version", "scanned", "migrated", "skipped", "failed",
                "failures", "failures_by_class", "remaining", "elapsed_ms", "cancelled",
            ],
            "properties": {
                "run_id": { "type": ["integer", "null"], "minimum": 0 },
                "dry_run": { "type": "boolean" },
                "to_version": version,
                "scanned": count,
                "migrated": count,
                "skipped": count,
                "failed": count,
                "failures": { "type": "array", "items": schema_ref("Failure") },
                "failures_by_class": by_class,
                "remaining": count,
                "elapsed_ms": count,
                "cancelled": { "type": "boolean" },
            },
        },
        "RevertReport": {
            "type": "object",
            "required": ["run_id", "reverted_run", "reverted", "changed", "elapsed_ms"],
            "properties": {
                "run_id": count,
                "reverted_run": count,
                "reverted": count,
                "changed": { "type": "array", "items": { "type": "string" } },
                "elapsed_ms": count,
            },
        },
        "Status": {
            "type": "object",
            "required": [
                "collection", "version", "fingerprint", "counts", "removed", "pending",
                "migratable", "failed", "running", "runs",
            ],
            "properties": {
                "collection": { "type": "string" },
                "version": version,
                "fingerprint": { "type": "string" },
                "counts": { "type": "object", "additionalProperties": count },
                "removed": count,
                "pending": {
                    "type": "object",
                    "required": ["by_version"],
                    "properties": {
                        "by_version": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["migratable", "failed"],
                                "properties": { "migratable": count, "failed": count },
                            },
                        },
                    },
                },
                "migratable": count,
                "failed": count,
                "running": { "type": ["integer", "null"], "minimum": 0 },
                "runs": { "type": "array", "items": schema_ref("RunRecord") },
            },
        },
    });
    match schemas {
        Value::Object(schemas) => schemas,
        _ => Map::new(),
    }
}

/// The schemas of the problem of a document that cannot be upgraded, and of a list page's entry
/// in place of a document it cannot show.
fn not_upgradable_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "NotUpgradable".to_owned(),
        json!({
            "allOf": [schema_ref("Problem"), {
                "type": "object",
                "required": ["collection", "id", "revision", "stored_version", "class", "message", "raw_revision"],
                "properties": {
                    "collection": { "type": "string" },
                    "id": { "type": "string" },
                    "revision": { "type": "integer", "minimum": 1 },
                    "stored_version": { "type": "integer", "minimum": 0 },
                    // Only the classes a read can meet: `invalid_output` is a migration's.
                    "class": { "enum": ["step", "panic", "decode"] },
                    "message": { "type": "string", "description": "the whole error chain" },
                    "raw_revision": { "type": "string", "description": "the path of the revision as stored (`?raw=true`)" },
                },
            }],
        }),
    );
    schemas.insert(
        "ProblemEntry".to_owned(),
        json!({
            "type": "object",
            "description": "in a list page, a document that cannot be shown, in place of its body: one that cannot be upgraded (`not-upgradable`), written by a newer program (`version-too-new`), or damaged (`corrupt`)",
            "required": ["id", "revision", "problem"],
            "properties": {
                "id": { "type": "string" },
                "revision": { "type": ["integer", "null"], "minimum": 1 },
                "problem": { "anyOf": [schema_ref("NotUpgradable"), schema_ref("Problem")] },
            },
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_keeps_flattened_variants_and_maps_open_where_they_must_be() {
        let mut schema = json!({
            "type": "object",
            "properties": { "a": { "type": "object", "properties": { "b": {} } } },
            "oneOf": [{ "properties": { "kind": { "const": "x" }, "x": {} } }],
            "$defs": {
                "Tagged": { "oneOf": [{ "type": "object", "properties": { "t": {} } }] },
                "Map": { "type": "object", "additionalProperties": { "properties": { "c": {} } } },
            },
        });
        close(&mut schema);
        // Fields from a flattened enum's variants: only `unevaluatedProperties` sees them.
        assert_eq!(schema["unevaluatedProperties"], false);
        assert!(schema.get("additionalProperties").is_none());
        assert!(schema["oneOf"][0].get("additionalProperties").is_none());
        assert_eq!(schema["properties"]["a"]["additionalProperties"], false);
        // A tagged enum on its own: each variant holds all its fields.
        assert_eq!(
            schema["$defs"]["Tagged"]["oneOf"][0]["additionalProperties"],
            false
        );
        // A map stays open; its values are closed.
        let map = &schema["$defs"]["Map"];
        assert_eq!(map["additionalProperties"]["additionalProperties"], false);
    }

    #[test]
    fn own_schemas_are_the_ones_the_router_reserves() {
        let document = document(
            &BTreeMap::new(),
            &Options {
                writable: true,
                secured: true,
                protect_reads: false,
            },
        );
        let mut names: Vec<&str> = document["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut own = OWN_SCHEMAS.to_vec();
        names.sort_unstable();
        own.sort_unstable();
        assert_eq!(names, own);
    }

    #[test]
    fn defs_are_hoisted_and_refs_follow() {
        let mut schemas = Map::new();
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": { "status": { "$ref": "#/$defs/Status" }, "parent": { "$ref": "#" } },
            "$defs": { "Status": { "enum": ["Open"] }, "Wrap": { "$ref": "#/$defs/Status" } },
        });
        hoist(&mut schemas, "issues", schema, false);
        let root = &schemas["issues"];
        assert!(root.get("$defs").is_none() && root.get("$schema").is_none());
        assert_eq!(
            root["properties"]["status"]["$ref"],
            "#/components/schemas/issues.Status"
        );
        assert_eq!(
            root["properties"]["parent"]["$ref"],
            "#/components/schemas/issues"
        );
        assert_eq!(
            schemas["issues.Wrap"]["$ref"],
            "#/components/schemas/issues.Status"
        );
    }
}
