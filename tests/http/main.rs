//! Tests of the HTTP API (`revolve::http`): every route and error status through
//! `router().oneshot(request)`, a table of bad requests without side effects, auth, the ndjson
//! progress stream, and one real socket on 127.0.0.1:0.

mod auth;
mod bad_requests;
mod contract;
mod migrate;
mod routes;
mod socket;
mod support;
mod unknown_fields;
mod wire;
