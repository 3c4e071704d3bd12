//! The API's one error type and its RFC 9457 problem body.
//!
//! Every failure of every route, extractor rejection, fallback and middleware becomes an
//! [`ApiError`], and [`ApiError`]'s one `IntoResponse` turns it into an
//! `application/problem+json` response. Internal errors are logged with `tracing` and answered with
//! a generic detail: their text may name paths, payload fragments or engine internals.

use std::error::Error as StdError;
use std::fmt::Write as _;

use axum::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::path::encode_segment;
use crate::error::format::chain;
use crate::{FailureClass, MigrationError, Revision, RunState, SchemaError, StoreError};

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem `type`: a URN, so that it resolves nowhere and promises no page.
const TYPE_PREFIX: &str = "urn:revolve:problem:";

/// The `Retry-After` of a `lease-lost` problem, in seconds. The collection is not left stuck: the
/// run that took the lease, or the run's other workers, go on, so a request made again at once
/// joins them or is told of them (409 `run-in-progress`); a second only spares a tight loop.
const LEASE_LOST_RETRY_AFTER: &str = "1";

/// The `Retry-After` of a `database-busy` problem: the pool, a lock or a conflict that made the
/// request give up is usually free again within a second.
const BUSY_RETRY_AFTER: &str = "1";

/// The `Retry-After` of a `database-unavailable` problem: a server that restarts or a network
/// that fails takes longer to come back.
const UNAVAILABLE_RETRY_AFTER: &str = "5";

/// Why a request failed. Each variant is one problem type.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400: a malformed path, query, header or body.
    BadRequest(String),
    /// 401: no bearer token, or the wrong one (`presented`).
    Unauthorized {
        /// Whether a token was presented (and was wrong).
        presented: bool,
    },
    /// 404: no route has this path.
    NoRoute(String),
    /// 404: no collection of this name is mounted.
    UnknownCollection(String),
    /// 404: no live document has this id.
    DocumentNotFound { collection: String, id: String },
    /// 404: the document has no such revision, or it is a removal.
    RevisionNotFound {
        collection: String,
        id: String,
        revision: Revision,
    },
    /// 404: the collection never registered this schema version.
    VersionNotFound { collection: String, version: u32 },
    /// 404: the ledger has no such run.
    RunNotFound { collection: String, run: u64 },
    /// 405: the path exists, the method does not.
    MethodNotAllowed(String),
    /// 409: a migration run or revert is under way on the collection.
    RunInProgress { collection: String, run: u64 },
    /// 409: the run under way, asked to be joined, has other settings (the message names the
    /// one that differs).
    JoinMismatch { run: u64, message: String },
    /// 409: the run cannot be reverted.
    NotRevertible(String),
    /// 409: the run asked to be cancelled is not under way any more (`state` says how it ended).
    RunNotRunning {
        collection: String,
        run: u64,
        state: RunState,
    },
    /// 409: the run asked to be cancelled is under way, but neither as a joined run nor started
    /// through this server: only the program that runs it can cancel it.
    RunElsewhere { collection: String, run: u64 },
    /// 409: the run asked to be cancelled is a revert, which cannot be cancelled.
    NotCancellable { collection: String, run: u64 },
    /// 409: a newer program owns the collection or the document.
    VersionTooNew(String),
    /// 409: a stored revision cannot be brought to the latest version (its step fails, or its
    /// payload does not decode at its version).
    NotUpgradable(Box<NotUpgradable>),
    /// 500: a document's stored bytes are damaged. Shown only in a list page, in the document's
    /// place (with the damage logged); a read of the document is an internal error.
    Corrupt {
        collection: String,
        id: String,
        revision: Option<Revision>,
    },
    /// 412: `If-Match` named a revision that is no longer current, or `If-None-Match: *` found a
    /// document.
    PreconditionFailed {
        detail: String,
        current: Option<Revision>,
    },
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge(String),
    /// 415: the body is not JSON.
    UnsupportedMediaType(String),
    /// 422: well-formed JSON that does not fit the collection's schema.
    Unprocessable(String),
    /// 422: a body with fields the schema of the version it is decoded as does not declare
    /// (JSON pointers), which decoding would drop.
    UnknownFields {
        collection: String,
        version: u32,
        fields: Vec<String>,
    },
    /// 428: the server requires `If-Match` on this write.
    PreconditionRequired,
    /// 503: the request took longer than the configured timeout.
    Timeout,
    /// 503: the store is not ready (`GET /readyz`).
    NotReady(crate::StoreState),
    /// 503: a migration run, or a worker of a joined run, lost its lease and stopped; nothing of
    /// its open chunk was written, and trying again is the remedy.
    LeaseLost { run: u64, message: String },
    /// 503: the database was too busy for the request (no pooled connection came free, a lock
    /// stayed held, writes kept conflicting, a statement ran past its timeout); nothing was
    /// applied, and trying again is the remedy.
    Busy(String),
    /// 503: the database cannot be reached (the connection was lost or refused); logged with
    /// what the client saw, which the body leaves out (it names the server). A connection lost
    /// during a commit leaves the outcome unknown, which the body says.
    DatabaseUnavailable,
    /// Any other status, for responses made by layers that are not ours (the backstop).
    Status(StatusCode),
    /// 500: a bug or a failure of the store; logged, never sent.
    Internal(Box<dyn StdError + Send + Sync>),
}

/// A document that cannot be upgraded: what the problem tells the client.
#[derive(Debug)]
pub(crate) struct NotUpgradable {
    pub(crate) collection: String,
    pub(crate) id: String,
    pub(crate) revision: Revision,
    pub(crate) stored_version: u32,
    pub(crate) class: FailureClass,
    /// The error and its sources, as a migration records it.
    pub(crate) message: String,
    /// The path of the raw revision, `/{c}/docs/{id}/revisions/{rev}?raw=true`, under the path
    /// the router is nested at.
    pub(crate) raw_revision: String,
}

impl ApiError {
    /// Puts the paths a problem links to under `base`, the path the router is nested at (empty
    /// when it is not).
    pub(crate) fn under(mut self, base: &str) -> Self {
        if let Self::NotUpgradable(not_upgradable) = &mut self {
            not_upgradable.raw_revision.insert_str(0, base);
        }
        self
    }

    /// An internal error from anything that is an error.
    pub(crate) fn internal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    /// An error for an extractor's rejection, keeping its status and its text.
    pub(crate) fn rejected(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest(text),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(text),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(text),
            status if status.is_server_error() => Self::internal(text),
            status => Self::Status(status),
        }
    }

    /// The status, the problem type's name and its title.
    // A table with one arm per variant: splitting it would only scatter it.
    #[allow(clippy::too_many_lines)]
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "bad request"),
            Self::Unauthorized { .. } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token",
            ),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "no-route", "no such route"),
            Self::UnknownCollection(_) => (
                StatusCode::NOT_FOUND,
                "unknown-collection",
                "no such collection",
            ),
            Self::DocumentNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "document-not-found",
                "no such document",
            ),
            Self::RevisionNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "revision-not-found",
                "no such revision",
            ),
            Self::VersionNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "version-not-found",
                "no such schema version",
            ),
            Self::RunNotFound { .. } => (StatusCode::NOT_FOUND, "run-not-found", "no such run"),
            Self::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "method not allowed",
            ),
            Self::RunInProgress { .. } => (
                StatusCode::CONFLICT,
                "run-in-progress",
                "a migration run is under way",
            ),
            Self::JoinMismatch { .. } => (
                StatusCode::CONFLICT,
                "join-mismatch",
                "the run under way has other settings",
            ),
            Self::NotRevertible(_) => (
                StatusCode::CONFLICT,
                "not-revertible",
                "the run cannot be reverted",
            ),
            Self::RunNotRunning { .. } => (
                StatusCode::CONFLICT,
                "run-not-running",
                "the run is not under way",
            ),
            Self::RunElsewhere { .. } => (
                StatusCode::CONFLICT,
                "run-elsewhere",
                "the run is under way where this server cannot cancel it",
            ),
            Self::NotCancellable { .. } => (
                StatusCode::CONFLICT,
                "not-cancellable",
                "the run cannot be cancelled",
            ),
            Self::VersionTooNew(_) => (
                StatusCode::CONFLICT,
                "version-too-new",
                "a newer program owns this collection",
            ),
            Self::NotUpgradable(_) => (
                StatusCode::CONFLICT,
                "not-upgradable",
                "the document cannot be upgraded to the latest version",
            ),
            Self::Corrupt { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "corrupt",
                "the document's stored bytes are damaged",
            ),
            Self::PreconditionFailed { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "precondition failed",
            ),
            Self::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "request body too large",
            ),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "unsupported media type",
            ),
            Self::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-document",
                "the body does not fit the schema",
            ),
            Self::UnknownFields { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-field",
                "the body has fields the schema does not declare",
            ),
            Self::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "If-Match required",
            ),
            Self::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "request timed out",
            ),
            Self::NotReady(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "the store is not ready",
            ),
            Self::LeaseLost { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "lease-lost",
                "the migration lost its lease; try again",
            ),
            Self::Busy(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database-busy",
                "the database is busy; try again",
            ),
            Self::DatabaseUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "the database cannot be reached; try again later",
            ),
            Self::Status(status) => (
                *status,
                "http-error",
                status.canonical_reason().unwrap_or("error"),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::BadRequest(detail)
            | Self::NotRevertible(detail)
            | Self::VersionTooNew(detail)
            | Self::PayloadTooLarge(detail)
            | Self::UnsupportedMediaType(detail)
            | Self::Unprocessable(detail)
            | Self::PreconditionFailed { detail, .. }
            | Self::JoinMismatch {
                message: detail, ..
            }
            | Self::LeaseLost {
                message: detail, ..
            }
            | Self::Busy(detail) => detail.clone(),
            Self::DatabaseUnavailable => "the database cannot be reached; a write under way may \
                 or may not have been applied (read it before writing it again)"
                .to_owned(),
            Self::Unauthorized { presented: false } => {
                "this route needs `Authorization: Bearer <token>`".to_owned()
            }
            Self::Unauthorized { presented: true } => "the bearer token is not valid".to_owned(),
            Self::NoRoute(path) => format!("no route matches `{path}`"),
            Self::UnknownCollection(name) => format!("no collection `{name}` is mounted"),
            Self::DocumentNotFound { collection, id } => {
                format!("no document `{id}` in `{collection}`")
            }
            Self::RevisionNotFound {
                collection,
                id,
                revision,
            } => format!("document `{id}` in `{collection}` has no revision {revision} holding a document"),
            Self::VersionNotFound {
                collection,
                version,
            } => format!("`{collection}` has no schema version {version}"),
            Self::RunNotFound { collection, run } => {
                format!("no run {run} in the ledger of `{collection}`")
            }
            Self::NotUpgradable(not) => format!(
                "document `{}` in `{}` is stored at version {} (revision {}) and cannot be upgraded: {}; it is kept as stored, at {}, until a new revision is written over it",
                not.id, not.collection, not.stored_version, not.revision, not.message, not.raw_revision
            ),
            Self::Corrupt {
                collection,
                id,
                revision,
            } => format!(
                "document `{id}` in `{collection}`{} is damaged and cannot be read; the damage has been logged",
                revision.map(|revision| format!(" (revision {revision})")).unwrap_or_default()
            ),
            Self::MethodNotAllowed(method) => format!("this route does not accept {method}"),
            Self::UnknownFields {
                collection,
                version,
                fields,
            } => format!(
                "version {version} of `{collection}` declares no field {}; it would be dropped, not stored",
                fields
                    .iter()
                    .map(|field| format!("`{field}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::RunInProgress { collection, run } => format!(
                "a migration run ({run}) is already under way on `{collection}`; wait for it to finish"
            ),
            Self::RunNotRunning {
                collection,
                run,
                state,
            } => format!(
                "run {run} of `{collection}` is not under way: it is `{}`",
                state_name(*state)
            ),
            Self::RunElsewhere { collection, run } => format!(
                "run {run} of `{collection}` is under way, but it is not a joined run and this server did not start it: only the process that runs it can cancel it"
            ),
            Self::NotCancellable { collection, run } => format!(
                "run {run} of `{collection}` is a revert, which cannot be cancelled; it ends on its own"
            ),
            Self::PreconditionRequired => {
                "this server requires `If-Match: \"<revision>\"` on writes to a document".to_owned()
            }
            Self::Timeout => "the request took longer than the server allows".to_owned(),
            Self::NotReady(state) => match state {
                crate::StoreState::Poisoned => "the store is poisoned by a storage failure; restart the server after checking the store with `revolve verify`".to_owned(),
                _ => "the store is still opening".to_owned(),
            },
            Self::Status(status) => status.canonical_reason().unwrap_or("error").to_owned(),
            Self::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
        }
    }

    /// The RFC 9457 problem object, also sent as the last line of a failed ndjson stream.
    pub(crate) fn problem(&self) -> Value {
        let (status, name, title) = self.kind();
        let mut problem = json!({
            "type": format!("{TYPE_PREFIX}{name}"),
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail(),
        });
        match self {
            Self::RunInProgress { run, .. }
            | Self::JoinMismatch { run, .. }
            | Self::LeaseLost { run, .. }
            | Self::RunElsewhere { run, .. }
            | Self::NotCancellable { run, .. } => {
                problem["run_id"] = json!(run);
            }
            Self::RunNotRunning { run, state, .. } => {
                problem["run_id"] = json!(run);
                problem["state"] = json!(state_name(*state));
            }
            Self::NotReady(state) => problem["state"] = json!(state),
            Self::UnknownFields { fields, .. } => problem["fields"] = json!(fields),
            Self::PreconditionFailed {
                current: Some(current),
                ..
            } => problem["current_revision"] = json!(current),
            Self::NotUpgradable(not) => {
                problem["collection"] = json!(not.collection);
                problem["id"] = json!(not.id);
                problem["revision"] = json!(not.revision);
                problem["stored_version"] = json!(not.stored_version);
                problem["class"] = json!(not.class);
                problem["message"] = json!(not.message);
                problem["raw_revision"] = json!(not.raw_revision);
            }
            Self::Corrupt {
                collection,
                id,
                revision,
            } => {
                problem["collection"] = json!(collection);
                problem["id"] = json!(id);
                problem["revision"] = json!(revision);
            }
            _ => {}
        }
        problem
    }

    /// Logs an internal error; every other kind is the client's and is not logged.
    pub(crate) fn log(&self) {
        if let Self::Internal(error) = self {
            tracing::error!(error = %log_chain(&**error), "request failed");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let (status, _, _) = self.kind();
        let mut response = (status, self.problem().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Self::Unauthorized { presented: false } => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"revolve\""),
                );
            }
            Self::Unauthorized { presented: true } => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"revolve\", error=\"invalid_token\""),
                );
            }
            Self::LeaseLost { .. } => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from_static(LEASE_LOST_RETRY_AFTER),
                );
            }
            Self::Busy(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(BUSY_RETRY_AFTER));
            }
            Self::DatabaseUnavailable => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidId { .. } => Self::BadRequest(chain(&error)),
            StoreError::NotFound { collection, id } => Self::DocumentNotFound { collection, id },
            StoreError::AlreadyExists { .. } => Self::PreconditionFailed {
                detail: error.to_string(),
                current: None,
            },
            StoreError::Conflict { current, .. } => Self::PreconditionFailed {
                detail: error.to_string(),
                current: Some(current),
            },
            StoreError::VersionTooNew { .. } => Self::VersionTooNew(error.to_string()),
            // Only a failure of the document itself is a known state; a broken chain is the
            // program's fault and stays an internal error.
            StoreError::Upgrade {
                collection,
                id,
                revision,
                stored_version,
                source,
                ..
            } if matches!(
                *source,
                SchemaError::Step { .. }
                    | SchemaError::StepPanicked { .. }
                    | SchemaError::Decode { .. }
                    | SchemaError::UnknownVersion { .. }
            ) =>
            {
                let raw_revision = format!(
                    "/{}/docs/{}/revisions/{revision}?raw=true",
                    encode_segment(&collection),
                    encode_segment(&id)
                );
                Self::NotUpgradable(Box::new(NotUpgradable {
                    class: FailureClass::of_upgrade(&source),
                    message: chain(&*source),
                    collection,
                    id,
                    revision,
                    stored_version,
                    raw_revision,
                }))
            }
            StoreError::Upgrade { ref source, .. }
                if matches!(**source, SchemaError::VersionTooNew { .. }) =>
            {
                Self::VersionTooNew(chain(&error))
            }
            StoreError::UnknownCollection { collection } => Self::UnknownCollection(collection),
            // Logged when the store was poisoned; every request fails alike until a restart.
            StoreError::Poisoned { .. } => Self::NotReady(crate::StoreState::Poisoned),
            StoreError::RunLeaseLost { run, .. } | StoreError::WorkerLeaseLost { run, .. } => {
                Self::LeaseLost {
                    run,
                    message: error.to_string(),
                }
            }
            // Their texts name no server and no secret: what gave up, and how long it waited.
            StoreError::PoolExhausted { .. }
            | StoreError::LockTimeout { .. }
            | StoreError::Contention { .. }
            | StoreError::Timeout { .. } => Self::Busy(error.to_string()),
            StoreError::ConnectionLost { .. } | StoreError::Connect { .. } => {
                tracing::warn!(error = %chain(&error), "the database cannot be reached");
                Self::DatabaseUnavailable
            }
            other => Self::internal(other),
        }
    }
}

impl From<MigrationError> for ApiError {
    fn from(error: MigrationError) -> Self {
        match error {
            MigrationError::Store(store) => store.into(),
            MigrationError::RunInProgress { collection, run } => {
                Self::RunInProgress { collection, run }
            }
            MigrationError::UnknownRun { collection, run } => Self::RunNotFound { collection, run },
            MigrationError::NotRevertible { .. } => Self::NotRevertible(error.to_string()),
            MigrationError::JoinMismatch { run, .. } => Self::JoinMismatch {
                run,
                message: error.to_string(),
            },
            MigrationError::DryRunJoin { .. } => Self::BadRequest(error.to_string()),
            other => Self::internal(other),
        }
    }
}

/// A run's state as the ledger's records name it (`done_with_failures`).
fn state_name(state: RunState) -> String {
    match serde_json::to_value(state) {
        Ok(Value::String(name)) => name,
        _ => format!("{state:?}"),
    }
}

/// An error and its sources on one line, for the log: as [`chain`], except that a payload's decode
/// error is named by its kind only, since its text may quote the stored value (`invalid type:
/// string "…"`), and no payload may reach the log.
pub(crate) fn log_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        if !text.is_empty() {
            text.push_str(": ");
        }
        if let Some(decode) = cause.downcast_ref::<rmp_serde::decode::Error>() {
            text.push_str(decode_kind(decode));
            break;
        }
        let _ = write!(text, "{cause}");
        next = cause.source();
    }
    text
}

/// What kind of decode error `error` is, in words that quote nothing of the payload.
fn decode_kind(error: &rmp_serde::decode::Error) -> &'static str {
    use rmp_serde::decode::Error;
    match error {
        Error::InvalidMarkerRead(_) | Error::InvalidDataRead(_) => "the payload ends early",
        Error::TypeMismatch(_) | Error::Syntax(_) | Error::Uncategorized(_) => {
            "the payload does not have the type's shape (its text is not logged: it may quote the value)"
        }
        Error::OutOfRange => "a number in the payload is out of range",
        Error::LengthMismatch(_) => "an array in the payload has the wrong length",
        Error::Utf8Error(_) => "a string in the payload is not UTF-8",
        Error::DepthLimitExceeded => "the payload nests too deep",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload that does not decode as its type: the logged chain says so without its value.
    #[test]
    fn a_decode_error_is_logged_without_the_payload() {
        const SECRET: &str = "payload-that-must-not-be-logged-9012";
        let payload = rmp_serde::to_vec_named(&serde_json::json!({ "n": SECRET })).unwrap();
        let error = crate::record::decode_payload::<std::collections::BTreeMap<String, Vec<u32>>>(
            &payload, 64,
        )
        .unwrap_err();
        assert!(chain(&error).contains(SECRET), "{}", chain(&error));

        let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = std::sync::Arc::clone(&captured);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(std::sync::Arc::clone(&writer)))
            .finish();
        let status = tracing::subscriber::with_default(subscriber, || {
            ApiError::internal(crate::Error::from(error))
                .into_response()
                .status()
        });
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let log = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
        assert!(log.contains("request failed"), "{log}");
        assert!(
            log.contains("cannot decode payload: the payload does not have the type's shape"),
            "{log}"
        );
        assert!(!log.contains(SECRET), "{log}");
    }

    struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn internal_errors_keep_their_text_out_of_the_body() {
        let error = ApiError::internal("disk on fire at /secret/path");
        let body = error.problem().to_string();
        assert!(!body.contains("secret"), "{body}");
        assert_eq!(error.problem()["status"], 500);
    }

    fn upgrade(source: SchemaError) -> StoreError {
        StoreError::Upgrade {
            collection: "notes".to_owned(),
            id: "a b".to_owned(),
            revision: Revision::FIRST,
            stored_version: 1,
            raw: Box::new(crate::RawRevision {
                info: crate::RevisionInfo {
                    revision: Revision::FIRST,
                    parent: None,
                    version: Some(1),
                    removed: false,
                    origin: crate::Origin::Write,
                    timestamp: std::time::UNIX_EPOCH,
                },
                payload: None,
                bytes: Vec::new(),
            }),
            source: Box::new(source),
        }
    }

    #[test]
    fn only_a_failing_document_is_not_upgradable() {
        let refused = ApiError::from(upgrade(SchemaError::UnknownVersion {
            collection: "notes",
            version: 0,
        }));
        let problem = refused.problem();
        assert_eq!(problem["status"], 409, "{problem}");
        assert_eq!(problem["type"], "urn:revolve:problem:not-upgradable");
        assert_eq!(problem["class"], "decode");
        assert_eq!(
            problem["raw_revision"],
            "/notes/docs/a%20b/revisions/1?raw=true"
        );
        let panicked = ApiError::from(upgrade(SchemaError::StepPanicked {
            collection: "notes",
            from: 1,
            to: 2,
            message: "boom".to_owned(),
        }));
        assert_eq!(panicked.problem()["class"], "panic");
        let newer = ApiError::from(upgrade(SchemaError::VersionTooNew {
            collection: "notes",
            stored: 3,
            known: 2,
        }));
        assert_eq!(
            newer.problem()["type"],
            "urn:revolve:problem:version-too-new"
        );
        // A broken chain is the program's fault: logged, never sent.
        let broken = ApiError::from(upgrade(SchemaError::InvalidChain {
            collection: "notes",
            type_name: "Note",
            reason: "secret reason".to_owned(),
        }));
        let problem = broken.problem();
        assert_eq!(problem["status"], 500, "{problem}");
        assert!(!problem.to_string().contains("secret"), "{problem}");
    }

    /// A database that is busy or cannot be reached is the client's to try again later: 503 with
    /// `Retry-After`, not an internal error; the unreachable server is not named in the body.
    #[test]
    fn a_busy_or_unreachable_database_is_503() {
        let backend = || {
            crate::BackendError::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "db.internal:5432 refused",
            ))
        };
        let busy = [
            StoreError::PoolExhausted {
                size: 8,
                waited: std::time::Duration::from_secs(30),
            },
            StoreError::LockTimeout {
                what: "registering `notes`".to_owned(),
                waited: std::time::Duration::from_secs(60),
                source: backend(),
            },
            StoreError::Contention { source: backend() },
            StoreError::Timeout { source: backend() },
        ];
        for error in busy {
            let text = error.to_string();
            let error = ApiError::from(error);
            let problem = error.problem();
            assert_eq!(problem["status"], 503, "{problem}");
            assert_eq!(problem["type"], "urn:revolve:problem:database-busy");
            assert_eq!(problem["detail"], text.as_str());
            let response = error.into_response();
            assert_eq!(response.headers()[RETRY_AFTER], BUSY_RETRY_AFTER);
        }
        let unreachable = [
            StoreError::ConnectionLost { source: backend() },
            StoreError::Connect {
                target: "app@db.internal:5432/app".to_owned(),
                source: backend(),
            },
        ];
        for error in unreachable {
            let error = ApiError::from(MigrationError::from(error));
            let problem = error.problem();
            assert_eq!(problem["status"], 503, "{problem}");
            assert_eq!(problem["type"], "urn:revolve:problem:database-unavailable");
            assert!(!problem.to_string().contains("db.internal"), "{problem}");
            let response = error.into_response();
            assert_eq!(response.headers()[RETRY_AFTER], UNAVAILABLE_RETRY_AFTER);
        }
    }

    /// A run or a worker that lost its lease is the client's to try again: 503 `lease-lost`, with
    /// the run and `Retry-After`, not an internal error.
    #[test]
    fn a_lost_lease_is_503_lease_lost() {
        let lost: [fn() -> StoreError; 2] = [
            || StoreError::RunLeaseLost {
                collection: "notes".to_owned(),
                run: 7,
            },
            || StoreError::WorkerLeaseLost {
                collection: "notes".to_owned(),
                run: 7,
            },
        ];
        for lost in lost {
            let text = lost().to_string();
            // As a store operation fails, and as a migration does.
            for error in [
                ApiError::from(lost()),
                ApiError::from(MigrationError::from(lost())),
            ] {
                let problem = error.problem();
                assert_eq!(problem["status"], 503, "{problem}");
                assert_eq!(problem["type"], "urn:revolve:problem:lease-lost");
                assert_eq!(problem["run_id"], 7);
                assert_eq!(problem["detail"], text.as_str());
                let response = error.into_response();
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(response.headers()[RETRY_AFTER], LEASE_LOST_RETRY_AFTER);
                assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
            }
        }
    }

    /// The refusals of a cancel name the run, and a run that ended its state as the ledger does.
    #[test]
    fn a_refused_cancel_names_the_run_and_its_state() {
        let ended = ApiError::RunNotRunning {
            collection: "notes".to_owned(),
            run: 7,
            state: RunState::DoneWithFailures,
        }
        .problem();
        assert_eq!(ended["status"], 409, "{ended}");
        assert_eq!(ended["type"], "urn:revolve:problem:run-not-running");
        assert_eq!(
            (&ended["run_id"], &ended["state"]),
            (&json!(7), &json!("done_with_failures"))
        );
        assert_eq!(
            ended["detail"],
            "run 7 of `notes` is not under way: it is `done_with_failures`"
        );
        for (error, name) in [
            (
                ApiError::RunElsewhere {
                    collection: "notes".to_owned(),
                    run: 7,
                },
                "run-elsewhere",
            ),
            (
                ApiError::NotCancellable {
                    collection: "notes".to_owned(),
                    run: 7,
                },
                "not-cancellable",
            ),
        ] {
            let problem = error.problem();
            assert_eq!(problem["status"], 409, "{problem}");
            assert_eq!(problem["type"], format!("urn:revolve:problem:{name}"));
            assert_eq!(problem["run_id"], 7, "{problem}");
            assert!(problem.get("state").is_none(), "{problem}");
        }
    }

    #[test]
    fn every_problem_has_the_four_members() {
        for error in [
            ApiError::BadRequest("x".into()),
            ApiError::Unauthorized { presented: true },
            ApiError::PreconditionRequired,
            ApiError::Status(StatusCode::IM_A_TEAPOT),
        ] {
            let problem = error.problem();
            for member in ["type", "title", "status", "detail"] {
                assert!(problem.get(member).is_some(), "{member} in {problem}");
            }
        }
    }
}
