//! The HTTP API (feature `http`): an axum router over a [`Store`](crate::Store) and the
//! collections an application mounts.
//!
//! ```no_run
//! # use revolve::{Schema, Store};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
//! # #[schema(collection = "issues", version = 1)]
//! # struct Issue { title: String }
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let app = revolve::http::Router::new(Store::open("data/app.revolve")?)
//!     .collection::<Issue>()?
//!     .token(std::env::var("REVOLVE_TOKEN")?)
//!     .build()?;
//! axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Routes
//!
//! Per mounted collection `{c}` (its registered name):
//!
//! | route | does | token |
//! |---|---|---|
//! | `GET /{c}?after=ID&limit=N` | current documents in id order; `next` is the following page's `after` | no |
//! | `POST /{c}` | create under a generated id: 201, `Location`, `ETag` | yes |
//! | `GET /{c}/docs/{id}[?revision=N]` | a document upgraded to the latest version; `ETag` is its revision | no |
//! | `PUT /{c}/docs/{id}` | `If-Match: "N"` replace (412 if stale), `If-Match: *` or none replace, `If-None-Match: *` create under this id (201) | yes |
//! | `DELETE /{c}/docs/{id}` | remove (history stays); optional `If-Match` | yes |
//! | `GET /{c}/docs/{id}/revisions?after=REV&limit=N` | the revisions' metadata, oldest first, in pages (100 by default, at most 1000); `next` is the following page's `after` | no |
//! | `GET /{c}/docs/{id}/revisions/{rev}[?raw=true]` | one revision, upgraded, or as stored | no |
//! | `GET /{c}/schema`, `/{c}/schema/history`, `/{c}/schema/{version}` | JSON Schemas and their history | no |
//! | `POST /{c}/migrate/test`, `POST /{c}/migrate/execute` | a dry run or a run; `{"limit": N}` in the body or `?limit=N`; the `MigrationReport`, or with `Accept: application/x-ndjson` a progress line per chunk and then the report | yes |
//! | `GET /{c}/migrate/status` | counts per version, pending, the last runs | yes |
//! | `GET /{c}/migrate/runs[?before=ID&limit=N]`, `GET /{c}/migrate/runs/{run_id}` | the run ledger | yes |
//! | `POST /{c}/migrate/runs/{run_id}/revert` | revert a run | yes |
//!
//! And `GET /healthz`, `GET /openapi.json` (an `OpenAPI` 3.1 document built from the mounted
//! collections' JSON Schemas), both always open.
//!
//! Times are RFC 3339 strings in UTC to the microsecond (`2026-12-06T11:16:19.123456Z`: a
//! revision's `timestamp`, a run's `started` and `finished`, a schema record's `recorded`) and
//! durations whole milliseconds (`elapsed_ms`). A document body's fields are checked against the
//! JSON Schema of the version it is decoded as: one the schema does not declare is refused (422)
//! rather than dropped, unless [`Router::allow_unknown_fields`]. `.ci/contract` holds the
//! `OpenAPI` document to what the routes answer, with schemathesis against the example server.
//!
//! **Documents live under `/{c}/docs/`.** A document id may be any string (a reserved word such as
//! `migrate` or `schema`, or one with a `/`, percent-encoded as `%2F`), so no word can be kept
//! out of the id space: if documents sat at `/{c}/{id}`, the document `schema` and the route
//! `/{c}/schema` would be one path, and `/{c}/schema/revisions` would be both the history of the
//! document `schema` and the schema of version `revisions`. Under the fixed `docs` segment every
//! id, whatever it is, names exactly one path, and the control routes keep the names the API
//! promises (`/{c}/migrate/test`, `/{c}/schema`).
//!
//! # Auth
//!
//! With [`Router::token`], every request that is not a `GET`/`HEAD`, and every route under
//! `/{c}/migrate` (status and ledger included: they are operators' routes), needs
//! `Authorization: Bearer <token>`; otherwise 401 with `WWW-Authenticate: Bearer`. Reading
//! documents and schemas stays open unless [`Router::protect_reads`]. [`Router::build`] refuses
//! writing routes without a token unless [`Router::local_development`] says no one else can
//! reach the server, or [`Router::read_only`] mounts no writing route.
//!
//! # Errors
//!
//! Every error is an RFC 9457 `application/problem+json` body with `type`
//! (`urn:revolve:problem:…`), `title`, `status` and `detail`: malformed JSON (400), JSON of the
//! wrong shape (422), a field the collection's schema does not declare (422, `unknown-field`, with
//! the fields as JSON pointers in `fields`; see [`Router::allow_unknown_fields`]), a missing or wrong content type (415), a body over the limit (413), an unknown
//! collection, id, revision or run (404), a wrong method (405), a stale `If-Match` (412, with
//! `current_revision`), a missing `If-Match` when required (428), a run under way (409, with
//! `run_id`), a timeout (503). Internal errors are logged with `tracing`, never sent.
//!
//! Store calls run on tokio's blocking pool. Migration runs run there too, not in the request:
//! a client that disconnects leaves the run going, and finds its end in the ledger
//! (`GET /{c}/migrate/runs/{run_id}`; every progress line carries the `run_id`). The run holds the
//! collection's run lock until it ends, so another run gets 409 meanwhile.

mod auth;
mod error;
mod fields;
mod handlers;
mod mount;
mod openapi;
mod router;
mod stream;
mod view;

pub use self::router::{BuildError, Router, DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT};
