//! The API's one error type and its RFC 9457 problem body.
//!
//! Every failure of every route, extractor rejection, fallback and middleware becomes an
//! [`ApiError`], and [`ApiError`]'s one `IntoResponse` turns it into an
//! `application/problem+json` response. Internal errors are logged with `tracing` and answered with
//! a generic detail: their text may name paths, payload fragments or engine internals.

use std::error::Error as StdError;
use std::fmt::Write as _;

use axum::http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::{MigrationError, Revision, StoreError};

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem `type`: a URN, so that it resolves nowhere and promises no page.
const TYPE_PREFIX: &str = "urn:revolve:problem:";

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
    /// 409: the run cannot be reverted.
    NotRevertible(String),
    /// 409: a newer program owns the collection or the document.
    VersionTooNew(String),
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
    /// Any other status, for responses made by layers that are not ours (the backstop).
    Status(StatusCode),
    /// 500: a bug or a failure of the store; logged, never sent.
    Internal(Box<dyn StdError + Send + Sync>),
}

impl ApiError {
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
            Self::NotRevertible(_) => (
                StatusCode::CONFLICT,
                "not-revertible",
                "the run cannot be reverted",
            ),
            Self::VersionTooNew(_) => (
                StatusCode::CONFLICT,
                "version-too-new",
                "a newer program owns this collection",
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
            | Self::PreconditionFailed { detail, .. } => detail.clone(),
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
            Self::PreconditionRequired => {
                "this server requires `If-Match: \"<revision>\"` on writes to a document".to_owned()
            }
            Self::Timeout => "the request took longer than the server allows".to_owned(),
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
            Self::RunInProgress { run, .. } => problem["run_id"] = json!(run),
            Self::UnknownFields { fields, .. } => problem["fields"] = json!(fields),
            Self::PreconditionFailed {
                current: Some(current),
                ..
            } => problem["current_revision"] = json!(current),
            _ => {}
        }
        problem
    }

    /// Logs an internal error; every other kind is the client's and is not logged.
    pub(crate) fn log(&self) {
        if let Self::Internal(error) = self {
            tracing::error!(error = %chain(&**error), "request failed");
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
            StoreError::UnknownCollection { collection } => Self::UnknownCollection(collection),
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
            other => Self::internal(other),
        }
    }
}

/// An error and its sources on one line, for errors whose text is the client's to read.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_keep_their_text_out_of_the_body() {
        let error = ApiError::internal("disk on fire at /secret/path");
        let body = error.problem().to_string();
        assert!(!body.contains("secret"), "{body}");
        assert_eq!(error.problem()["status"], 500);
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
