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
//! revolve::http::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await?;
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
//! | `GET /{c}?after=ID&limit=N` | current documents in id order; `next` is the following page's `after`, given whenever more follow; a document that cannot be shown is `{"id", "revision", "problem"}` in place of its body (see below) | no |
//! | `POST /{c}` | create under a generated id: 201, `Location`, `ETag` | yes |
//! | `GET /{c}/docs/{id}[?revision=N]` | a document upgraded to the latest version; `ETag` is its revision | no |
//! | `PUT /{c}/docs/{id}` | `If-Match: "N"` replace (412 if stale), `If-Match: *` or none replace, `If-None-Match: *` create under this id (201) | yes |
//! | `DELETE /{c}/docs/{id}` | remove (history stays); optional `If-Match` | yes |
//! | `GET /{c}/docs/{id}/revisions?after=REV&limit=N` | the revisions' metadata, oldest first, in pages (100 by default, at most 1000); `next` is the following page's `after` | no |
//! | `GET /{c}/docs/{id}/revisions/{rev}[?raw=true]` | one revision, upgraded, or as stored | no |
//! | `GET /{c}/schema`, `/{c}/schema/history`, `/{c}/schema/{version}` | JSON Schemas and their history | no |
//! | `POST /{c}/migrate/test`, `POST /{c}/migrate/execute` | a dry run or a run; `{"limit": N, "retry_failed": B, "join": B}` in the body or the same in the query (`join`, joining the run under way, only for a run); the `MigrationReport`, or with `Accept: application/x-ndjson` a progress line per chunk and then the report | yes |
//! | `GET /{c}/migrate/status` | counts per version, pending, the last runs | yes |
//! | `GET /{c}/migrate/failures[?after=ID&limit=N]` | the failure set: every document whose migration failed and that runs skip, in id order (`id`, head `revision`, `from_version`, `class`, `error`); `next` is the following page's `after`, given whenever more follow | yes |
//! | `GET /{c}/migrate/runs[?before=ID&limit=N]`, `GET /{c}/migrate/runs/{run_id}` | the run ledger | yes |
//! | `POST /{c}/migrate/runs/{run_id}/revert` | revert a run | yes |
//! | `POST /{c}/migrate/runs/{run_id}/cancel` | ask a run under way to stop at its next chunk boundary: a run that a migrate request to this router started (on either engine, joined or not; from the moment it has its id, before its first chunk), or a joined run under way in any process (PostgreSQL: every worker stops); answered at once with 202 `{"run_id": N, "cancel": "requested"}`, and the run's record then says how it ended (`cancelled`, or `done` had its last chunk committed first) | yes |
//!
//! And `GET /healthz` (liveness), `GET /readyz` (readiness: 200 while the store is ready, with the
//! startup migrations under way listed under `migrating` (see
//! [`Store::collection_with`](crate::Store::collection_with)), 503
//! problem+json once it is poisoned, see [`Store::state`](crate::Store::state); it never
//! answers `opening`: the router is built from an open store, so
//! [`StoreState::Opening`](crate::StoreState::Opening) is for an application that opens its store
//! in the background and answers readiness itself until then), `GET
//! /openapi.json` (an `OpenAPI` 3.1 document built from the mounted collections' JSON Schemas),
//! all always open. A [`Router::read_only`] server mounts neither the
//! writing routes nor any `/{c}/migrate` route, reading ones included (status, failures, runs):
//! those are an operator's, on a writable server or with the `revolve` command line.
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
//! `run_id`), a run under way with other settings asked to be joined (409 `join-mismatch`, with
//! `run_id`), a dry run asked to join (400), a run asked to be cancelled that is not under way
//! any more (409 `run-not-running`, with `run_id` and its `state`), one under way in another
//! process that is not a joined run, which only that process can cancel (409 `run-elsewhere`,
//! with `run_id`), or a revert (409 `not-cancellable`, with `run_id`), a timeout (503), a
//! migration run or a worker of a joined run that lost its lease and stopped (503 `lease-lost`,
//! with `run_id` and `Retry-After`: nothing of its open chunk was written, and the remedy is to
//! ask again), a database too busy for the request (503 `database-busy`, `Retry-After: 1`: no
//! pooled connection came free, a lock stayed held, writes kept conflicting or a statement ran
//! past its timeout; nothing was applied) or one that cannot be reached (503
//! `database-unavailable`, `Retry-After: 5`; the server is named in the log, not the body; a
//! connection lost during a commit leaves the outcome unknown: read before writing again).
//! Internal errors are logged with `tracing`, never sent.
//!
//! A document whose stored revision cannot be brought to the latest version (its step refuses it,
//! or its payload does not decode at its version) is not an internal error but a known state:
//! reading it answers 409 `urn:revolve:problem:not-upgradable` with `collection`, `id`,
//! `revision`, `stored_version`, the failure `class` (`step`, `panic` or `decode`, as a migration
//! names it), `message`, the whole error chain (the step's own message last), and
//! `raw_revision`, the path of that revision as stored (`/{c}/docs/{id}/revisions/{rev}?raw=true`,
//! under the path the router is nested at). Such documents stay as they are until written again;
//! a migration records them in the failure set (`GET /{c}/migrate/failures`, on a writable
//! server). The problem and a failure record name the same things differently, each after its
//! own side: the problem's `stored_version` is the version the revision read is stored at, as a
//! document's `stored_version` is, and its `message` is the error of this read; a failure's
//! `from_version` is the version a migration tried to upgrade from, and its `error` is what that
//! run recorded (the same text when the document and the program did not change since).
//!
//! A list page never fails for one document: one it cannot show appears as
//! `{"id", "revision", "problem"}` in the document's place, counts toward `limit`, and the page goes
//! on. The problem is `not-upgradable` as above; `version-too-new` (409) for a document a newer
//! program wrote; or `corrupt` (500, with `collection`, `id` and `revision` when the head names
//! it) for one whose stored bytes are damaged, which is also logged, and which a read of the
//! document alone answers as an internal error. Any other error (the storage engine failing)
//! still fails the page.
//!
//! Requests that hyper cannot parse (a bad request line, `Content-Length: -1`, a NUL in a header,
//! an unsupported HTTP version: 400; a URI too long: 414; headers too large: 431) get a problem
//! body too when served by [`serve`]/[`Server`], which rewrite hyper's own empty response. Where the
//! stack does not allow one: a connection that runs out of its header read timeout is closed
//! without a response (hyper writes none); an HTTP/2 preface is refused by closing (only HTTP/1.1
//! is served); and behind another server (`axum::serve`, a proxy) such requests get that server's
//! response, hyper's being an empty 400.
//!
//! Two `Authorization` headers on a route that needs the token are refused (400), whatever they
//! hold: a proxy in front might have checked the other one.
//!
//! # Serving
//!
//! [`serve`] (or [`Server`], to change its limits) serves the router over HTTP/1.1 with what
//! `axum::serve` does not set: a header read timeout ([`DEFAULT_HEADER_READ_TIMEOUT`], 10 s;
//! idle kept-alive connections are closed after it too), a cap on open connections
//! ([`DEFAULT_MAX_CONNECTIONS`], 1,024, lowered on Linux to the soft file descriptor limit less
//! [`FD_RESERVE`] and logged at `info`; at the cap it stops accepting, so new clients wait in the
//! kernel's listen queue, in order: a client behind `n` stalled connections waits at most about
//! `ceil(n / cap)` header timeouts), and a graceful shutdown
//! ([`Server::with_graceful_shutdown`]).
//!
//! An application that mounts the router elsewhere (`axum::serve`, its own hyper server, nested
//! in a larger `axum::Router`) must provide these itself, or put a proxy in front that does
//! (nginx: `client_header_timeout`, `worker_connections`):
//! - **a header read timeout**: hyper's `http1::Builder::header_read_timeout` takes effect only
//!   with a timer (`.timer(hyper_util::rt::TokioTimer::new())`); `axum::serve` sets none, so a
//!   client that stalls inside its headers holds its socket for ever;
//! - **a cap on open sockets**, not on requests: `tower::limit::ConcurrencyLimit` counts requests,
//!   and a stalled connection has none; acquire a permit before `accept` and hold it per
//!   connection; keep the cap under the file descriptor limit (`ulimit -n`);
//! - **a graceful shutdown** that stops accepting and lets requests under way finish;
//! - **a request log**: the router logs each request itself (see below), so nothing is needed for
//!   that; the layers of [`Router::build`] (body limit, request timeout, auth) come with it.
//!
//! # Logs
//!
//! The router emits `tracing` events; the application installs a subscriber (the example server
//! does: `RUST_LOG`, `--log-format json`). Each request is an event "request answered" with
//! `status` and `latency_us`, inside a `request` span with `method` and `route` (the matched
//! template, such as `/{collection}/docs/{id}`, never the path): at `info`, at `warn` for a 503
//! (the request timeout), at `error` for any other 5xx. A 5xx that an internal error caused is
//! also an `error` event "request failed" with the error and its causes (a payload's decode error
//! by its kind only: its text may quote the value). Store calls log inside the request's span. No header, token, query or body is
//! logged. [`Server`] logs accept errors (`error`, such as running out of file descriptors), its
//! shutdown (`info`), and at `debug` each connection that ends in an error (a header read
//! timeout, a request hyper could not parse: these never reach the router, so they have no
//! request line).
//!
//! Store calls run on tokio's blocking pool, never on a runtime's worker thread: mounting a
//! collection, [`Router::build`] and dropping the built router's last clone (the last handle on
//! the store) move to a thread of their own when called inside a runtime, so that a store whose
//! engine blocks on a runtime of its own (PostgreSQL) is never used or dropped inside another.
//! Migration runs run on the blocking pool too, not in the request:
//! a client that disconnects leaves the run going, and finds its end in the ledger
//! (`GET /{c}/migrate/runs/{run_id}`; every progress line carries the `run_id`);
//! `POST /{c}/migrate/runs/{run_id}/cancel` stops it. The run holds the
//! collection's run lock until it ends, so another run gets 409 meanwhile.

mod auth;
mod error;
mod fields;
mod handlers;
mod mount;
mod offload;
mod openapi;
mod parse_error;
mod path;
mod router;
mod serve;
mod state;
mod stream;
mod trace;
mod view;

pub use self::router::{BuildError, Router, DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT};
pub use self::serve::{
    serve, Server, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_TIMEOUT,
    FD_RESERVE,
};
