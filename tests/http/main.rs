//! Tests of the HTTP API (`revolve::http`): every route and error status through
//! `router().oneshot(request)`, a table of bad requests without side effects, auth, the ndjson
//! progress stream, one real socket on 127.0.0.1:0, and `revolve::http::serve` against stalled
//! and malformed clients.

mod auth;
mod bad_requests;
mod cancel;
mod contract;
mod example;
mod join;
mod migrate;
mod not_upgradable;
#[cfg(feature = "postgres")]
#[path = "../common/postgres.rs"]
mod pg_server;
mod postgres;
mod routes;
mod serve;
mod socket;
mod startup;
mod support;
mod unknown_fields;
mod wire;

/// Building the example server (shared with `tests/app_cli.rs`).
#[path = "../common/example.rs"]
mod example_build;

/// The example server's issues and seed, so that the tests use the data it serves.
#[path = "../../examples/common/issues.rs"]
mod example_issues;
