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
use super::mount::Mounted;
use axum::http::Method;

/// The names of revolve's own schemas in `components/schemas`. A collection's schemas are named
/// after it (`{c}`, `{c}.Document`, `{c}.{def}`), so the router refuses to mount a collection
/// named like one of these, which would make two schemas one.
pub(crate) const OWN_SCHEMAS: [&str; 10] = [
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

/// Adds a collection's schema and its definitions to `schemas`.
fn hoist(schemas: &mut Map<String, Value>, collection: &str, mut schema: Value) {
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

fn json_content(schema: &Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn path_param(name: &str, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
}

fn query_param(name: &str, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn header_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "header", "required": false, "description": description, "schema": { "type": "string" } })
}

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
pub(crate) fn document(
    collections: &BTreeMap<String, Arc<dyn Mounted>>,
    options: &Options,
) -> Value {
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
    not_upgradable_schemas(&mut schemas);
    for name in [
        "MigrationReport",
        "RunRecord",
        "RevertReport",
        "Status",
        "Revisions",
    ] {
        schemas.insert(name.to_owned(), json!({ "type": "object" }));
    }
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
            summary: "readiness: 200 when the store is ready, 503 problem+json otherwise"
                .to_owned(),
            parameters: vec![],
            body: None,
            status: "200",
            response: json_content(&object),
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
        hoist(&mut schemas, name, mounted.schema());
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
        let id = path_param(
            "id",
            "the document's id, percent-encoded",
            &json!({ "type": "string" }),
        );
        let string = json!({ "type": "string" });
        let positive = json!({ "type": "integer", "minimum": 1 });

        let mut root = vec![Op {
            method: Method::GET,
            route: "/{collection}",
            summary: format!("list `{name}` in id order"),
            parameters: vec![
                query_param("after", "the `next` of the previous page", &string),
                query_param(
                    "limit",
                    "page size",
                    &json!({ "type": "integer", "minimum": 1, "maximum": MAX_PAGE }),
                ),
            ],
            body: None,
            status: "200",
            response: json_content(&json!({
                "type": "object",
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
                    header_param("If-Match", "the revision read, as \"N\"; or *"),
                    header_param("If-None-Match", "* to create"),
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
                    header_param("If-Match", "the revision read, as \"N\""),
                ],
                body: None,
                status: "200",
                response: json_content(&object),
            });
        }
        add(format!("/{name}/docs/{{id}}"), doc);
        add(
            format!("/{name}/docs/{{id}}/revisions"),
            vec![Op {
                method: Method::GET,
                route: "/{collection}/docs/{id}/revisions",
                summary: "every revision's metadata, oldest first".to_owned(),
                parameters: vec![id.clone()],
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
                response: json_content(&object),
            }],
        );
        for (suffix, summary, parameters) in [
            ("schema", "the latest version's JSON Schema", vec![]),
            (
                "schema/history",
                "every registration and accepted change",
                vec![],
            ),
            (
                "schema/{version}",
                "one version's JSON Schema",
                vec![path_param("version", "a schema version", &positive)],
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
                    response: json_content(&object),
                }],
            );
        }
        if options.writable {
            let run_id = path_param("run_id", "a run's id", &positive);
            let migrate_params = vec![
                query_param(
                    "limit",
                    "at most this many documents",
                    &json!({ "type": "integer", "minimum": 0 }),
                ),
                query_param(
                    "retry_failed",
                    "also retry documents that failed before",
                    &json!({ "type": "boolean" }),
                ),
            ];
            let migrate_body = json_content(&json!({
                "type": "object",
                "properties": {
                    "limit": { "type": "integer", "minimum": 0 },
                    "retry_failed": { "type": "boolean" },
                },
                "additionalProperties": false,
            }));
            let report = json!({
                "application/json": { "schema": schema_ref("MigrationReport") },
                "application/x-ndjson": { "schema": { "type": "string" } },
            });
            for (suffix, summary) in [
                ("test", "dry run: every step, no write"),
                ("execute", "migrate documents to the latest version"),
            ] {
                add(
                    format!("/{name}/migrate/{suffix}"),
                    vec![Op {
                        method: Method::POST,
                        route: "/{collection}/migrate/",
                        summary: summary.to_owned(),
                        parameters: migrate_params.clone(),
                        body: Some(migrate_body.clone()),
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
                        query_param("after", "the `next` of the previous page", &string),
                        query_param(
                            "limit",
                            "page size",
                            &json!({ "type": "integer", "minimum": 1, "maximum": MAX_PAGE }),
                        ),
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
                        query_param("before", "the `next` of the previous page", &positive),
                        query_param("limit", "page size", &positive),
                    ],
                    body: None,
                    status: "200",
                    response: json_content(&object),
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

/// The schemas of the problem of a document that cannot be upgraded, of a list page's entry in
/// place of a document it cannot show, and of the failure set.
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
    schemas.insert(
        "Failure".to_owned(),
        json!({
            "type": "object",
            "required": ["id", "revision", "from_version", "class", "error"],
            "properties": {
                "id": { "type": "string" },
                "revision": { "type": "integer", "minimum": 1 },
                "from_version": { "type": "integer", "minimum": 0 },
                "class": { "enum": ["step", "panic", "decode", "invalid_output"] },
                "error": { "type": "string" },
            },
        }),
    );
    schemas.insert(
        "Failures".to_owned(),
        json!({
            "type": "object",
            "required": ["failures", "next"],
            "properties": {
                "failures": { "type": "array", "items": schema_ref("Failure") },
                "next": { "type": ["string", "null"] },
            },
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
        hoist(&mut schemas, "issues", schema);
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
