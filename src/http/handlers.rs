//! The route handlers, the extractors whose rejections are problems, and the middleware.

use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::header::{
    HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH,
    LOCATION,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{ApiError, PROBLEM_JSON};
use super::mount::{check_id, parse_json, Shown};
use super::path::encode_segment;
use super::state::AppState;
use super::stream;
use super::view;
use crate::{MigrateOptions, Revision};

/// The most documents or runs one page returns.
pub(crate) const MAX_PAGE: usize = 1000;
/// The page size when the request names none.
const DEFAULT_PAGE: usize = 100;
/// How many recent runs `migrate/status` lists.
const STATUS_RUNS: usize = 10;

/// `Path`, with its rejection as a problem.
pub(crate) struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::rejected(
                rejection.status(),
                rejection.body_text(),
            )),
        }
    }
}

/// `Query`, with its rejection as a problem.
pub(crate) struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::rejected(
                rejection.status(),
                rejection.body_text(),
            )),
        }
    }
}

/// The body's bytes (within the body limit), with its rejection as a problem.
pub(crate) struct ApiBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) => Err(ApiError::rejected(
                rejection.status(),
                rejection.body_text(),
            )),
        }
    }
}

/// Runs a store call on the blocking pool: sled blocks, and a flush waits for the disk.
async fn blocking<R: Send + 'static>(
    call: impl FnOnce() -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(super::trace::in_current_span(call))
        .await
        .map_err(ApiError::internal)?
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase());
    match essence {
        Some(essence)
            if essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json")) =>
        {
            Ok(())
        }
        _ => Err(ApiError::UnsupportedMediaType(
            "the body must be sent with `Content-Type: application/json`".to_owned(),
        )),
    }
}

fn revision(number: u64) -> Result<Revision, ApiError> {
    Revision::new(number)
        .ok_or_else(|| ApiError::BadRequest("revisions are numbered from 1".to_owned()))
}

/// What `If-Match` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfMatch {
    /// `*`: any current document.
    Any,
    /// `"N"`: the document at revision N.
    Revision(Revision),
}

/// The value of a header given at most once; `None` if absent.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!("`{name}` may be given once")));
    }
    value
        .to_str()
        .map(|text| Some(text.trim()))
        .map_err(|_| ApiError::BadRequest(format!("`{name}` is not ASCII")))
}

fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    let Some(text) = single_header(headers, &IF_MATCH)? else {
        return Ok(None);
    };
    if text == "*" {
        return Ok(Some(IfMatch::Any));
    }
    let number = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|inner| inner.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "`If-Match` takes one strong entity tag, a revision such as \"3\", or `*`"
                    .to_owned(),
            )
        })?;
    revision(number).map(|revision| Some(IfMatch::Revision(revision)))
}

/// Whether `If-None-Match: *` is given (create only); any other value is refused.
fn if_none_match_any(headers: &HeaderMap) -> Result<bool, ApiError> {
    match single_header(headers, &IF_NONE_MATCH)? {
        None => Ok(false),
        Some("*") => Ok(true),
        Some(_) => Err(ApiError::BadRequest(
            "on a write, `If-None-Match` takes only `*` (create if absent)".to_owned(),
        )),
    }
}

fn etag(revision: Revision) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!("\"{revision}\"")).map_err(ApiError::internal)
}

fn shown(status: StatusCode, shown: Shown, location: Option<String>) -> Result<Response, ApiError> {
    let mut response = (status, Json(shown.body)).into_response();
    let headers = response.headers_mut();
    headers.insert(ETAG, etag(shown.revision)?);
    if let Some(location) = location {
        headers.insert(
            LOCATION,
            HeaderValue::from_str(&location).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 while the store serves reads and writes, 503 otherwise (a store poisoned by a
/// storage failure stays so until the process reopens it). `/healthz` is liveness only. Never
/// `opening`: the router holds an open store.
///
/// The body lists the startup migrations under way (`migrating`): the store serves meanwhile
/// (documents not yet migrated are upgraded when read), so they do not make it unready.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(store) = state.store.as_ref() else {
        return Err(ApiError::internal("the router's store is closed"));
    };
    match store.state() {
        crate::StoreState::Ready => {
            let migrating: Vec<crate::StartupStatus> = store
                .startup_migrations()
                .iter()
                .map(crate::StartupMigration::status)
                .filter(|status| status.state == crate::StartupState::Migrating)
                .collect();
            Ok(Json(json!({ "status": "ready", "migrating": migrating })))
        }
        other => Err(ApiError::NotReady(other)),
    }
}

pub(crate) async fn openapi(State(state): State<AppState>) -> Json<Value> {
    Json(state.openapi.clone())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(ApiError::BadRequest(
            "`limit` must be at least 1".to_owned(),
        )),
        limit if limit > MAX_PAGE => Err(ApiError::BadRequest(format!(
            "`limit` must be at most {MAX_PAGE}"
        ))),
        limit => Ok(limit),
    }
}

/// The path the router is nested at (empty when it is not): what the original request path has
/// before the path routed. Every link a problem gives starts with it, so the read handlers take it
/// and the mount's reads require it.
pub(crate) struct Base(String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let base = parts
            .extensions
            .get::<OriginalUri>()
            .and_then(|OriginalUri(original)| original.path().strip_suffix(parts.uri.path()))
            .unwrap_or_default();
        Ok(Self(base.to_owned()))
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
    Base(base): Base,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    let limit = page_size(query.limit)?;
    if let Some(after) = &query.after {
        check_id(after)?;
    }
    blocking(move || mounted.list(query.after.as_deref(), limit, &base))
        .await
        .map(Json)
}

pub(crate) async fn create(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let mounted = state.mounted(&collection)?;
    require_json(&headers)?;
    let created = blocking(move || mounted.create(None, &body)).await?;
    let location = format!(
        "{}/docs/{}",
        uri.path().trim_end_matches('/'),
        encode_segment(&created.id)
    );
    shown(StatusCode::CREATED, created, Some(location))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    revision: Option<u64>,
}

pub(crate) async fn read(
    State(state): State<AppState>,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ReadQuery>,
    Base(base): Base,
) -> Result<Response, ApiError> {
    let mounted = state.mounted(&collection)?;
    let at = query.revision.map(revision).transpose()?;
    let document = blocking(move || mounted.get(&id, at, &base)).await?;
    shown(StatusCode::OK, document, None)
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let mounted = state.mounted(&collection)?;
    let expected = if_match(&headers)?;
    let create = if_none_match_any(&headers)?;
    if create && expected.is_some() {
        // RFC 9110 §13.2.2: `If-Match` holds only if the document exists, and then
        // `If-None-Match: *` fails; either way the preconditions fail, once the request is
        // otherwise well-formed.
        check_id(&id)?;
        require_json(&headers)?;
        mounted.check_body(&body)?;
        return Err(ApiError::PreconditionFailed {
            detail: "`If-Match` and `If-None-Match: *` cannot both hold: the first needs the document, the second its absence".to_owned(),
            current: None,
        });
    }
    if !create && expected.is_none() && state.require_if_match {
        return Err(ApiError::PreconditionRequired);
    }
    require_json(&headers)?;
    if create {
        let created = blocking(move || mounted.create(Some(&id), &body)).await?;
        let location = uri.path().to_owned();
        return shown(StatusCode::CREATED, created, Some(location));
    }
    let expected = match expected {
        Some(IfMatch::Revision(revision)) => Some(revision),
        Some(IfMatch::Any) | None => None,
    };
    let updated = blocking(move || mounted.update(&id, expected, &body)).await?;
    shown(StatusCode::OK, updated, None)
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mounted = state.mounted(&collection)?;
    let expected = if_match(&headers)?;
    if headers.contains_key(IF_NONE_MATCH) {
        return Err(ApiError::BadRequest(
            "`If-None-Match` has no meaning on DELETE".to_owned(),
        ));
    }
    if expected.is_none() && state.require_if_match {
        return Err(ApiError::PreconditionRequired);
    }
    let expected = match expected {
        Some(IfMatch::Revision(revision)) => Some(revision),
        Some(IfMatch::Any) | None => None,
    };
    let answer_id = id.clone();
    let removed = blocking(move || mounted.remove(&id, expected)).await?;
    let mut response =
        Json(json!({ "id": answer_id, "revision": removed, "removed": true })).into_response();
    response.headers_mut().insert(ETAG, etag(removed)?);
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn history(
    State(state): State<AppState>,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    let limit = page_size(query.limit)?;
    // `after=0` is the start, like no `after`.
    let after = query.after.and_then(Revision::new);
    blocking(move || mounted.history(&id, after, limit))
        .await
        .map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevisionQuery {
    #[serde(default)]
    raw: bool,
}

pub(crate) async fn revision_of(
    State(state): State<AppState>,
    ApiPath((collection, id, number)): ApiPath<(String, String, u64)>,
    ApiQuery(query): ApiQuery<RevisionQuery>,
    Base(base): Base,
) -> Result<Response, ApiError> {
    let mounted = state.mounted(&collection)?;
    let at = revision(number)?;
    if query.raw {
        let raw = blocking(move || mounted.raw_revision(&id, at)).await?;
        let mut response = Json(raw).into_response();
        response.headers_mut().insert(ETAG, etag(at)?);
        return Ok(response);
    }
    let document = blocking(move || mounted.get(&id, Some(at), &base)).await?;
    shown(StatusCode::OK, document, None)
}

pub(crate) async fn schema(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    Ok(Json(json!({
        "collection": mounted.name(),
        "version": mounted.version(),
        "fingerprint": mounted.fingerprint(),
        "schema": mounted.schema(),
    })))
}

pub(crate) async fn schema_at(
    State(state): State<AppState>,
    ApiPath((collection, version)): ApiPath<(String, u32)>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    blocking(move || mounted.schema_at(version)).await.map(Json)
}

pub(crate) async fn schema_history(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    blocking(move || mounted.schema_history()).await.map(Json)
}

pub(crate) async fn migrate_status(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    blocking(move || mounted.status(STATUS_RUNS))
        .await
        .map(Json)
}

/// A migration's options in a query string, as JSON: every value is text there, read as a
/// number or a boolean where it spells one, so that the options deserialize from the query as
/// from a body (where `"3"` is not a number).
fn query_options(pairs: Vec<(String, String)>) -> Result<Map<String, Value>, ApiError> {
    let mut options = Map::new();
    for (key, text) in pairs {
        let value = if let Ok(number) = text.parse::<u64>() {
            Value::from(number)
        } else if let Some(number) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            Value::Number(number)
        } else {
            match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text),
            }
        };
        if options.insert(key.clone(), value).is_some() {
            return Err(query_rejected(&format!("duplicate field `{key}`")));
        }
    }
    Ok(options)
}

/// A query string that does not fit, as axum's `Query` rejects one.
fn query_rejected(error: &dyn fmt::Display) -> ApiError {
    ApiError::rejected(
        StatusCode::BAD_REQUEST,
        format!("Failed to deserialize query string: {error}"),
    )
}

/// The options given in the query and in the body; one given in both must have the same value in
/// each.
fn merge_options(
    query: Map<String, Value>,
    mut body: Map<String, Value>,
) -> Result<MigrateOptions, ApiError> {
    // `null` is as good as absent.
    body.retain(|_, value| !value.is_null());
    for (name, value) in query {
        if let Some(in_body) = body.get(&name) {
            let alone =
                |value: &Value| MigrateOptions::deserialize(json!({ name.as_str(): value })).ok();
            if alone(in_body) != alone(&value) {
                return Err(ApiError::BadRequest(format!(
                    "`{name}` is given in the query and in the body with different values"
                )));
            }
        }
        body.insert(name, value);
    }
    MigrateOptions::deserialize(Value::Object(body)).map_err(ApiError::internal)
}

/// Whether the client asked for a progress stream.
fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case(stream::NDJSON))
        })
}

async fn migrate(
    state: &AppState,
    collection: &str,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let query = query_options(query)?;
    MigrateOptions::deserialize(Value::Object(query.clone()))
        .map(drop)
        .map_err(|error| query_rejected(&error))?;
    let mounted = state.mounted(collection)?;
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        require_json(headers)?;
        // An object: serde would also take a struct from an array (`[null, null]`).
        let Value::Object(value) = parse_json(body)? else {
            return Err(ApiError::Unprocessable(
                "the body must be a JSON object such as {\"limit\": 100}".to_owned(),
            ));
        };
        MigrateOptions::deserialize(Value::Object(value.clone()))
            .map(drop)
            .map_err(|error| ApiError::Unprocessable(format!("the body does not fit: {error}")))?;
        value
    };
    let options = merge_options(query, from_body)?.dry_run(dry_run);
    if wants_ndjson(headers) {
        return stream::respond(mounted, options).await;
    }
    // On the blocking pool, not in this future: if the client goes away, the run goes on and
    // finishes in the ledger.
    let report = blocking(move || mounted.migrate(&options, None)).await?;
    Ok(Json(view::report(&report)?).into_response())
}

pub(crate) async fn migrate_test(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    migrate(&state, &collection, query, &headers, &body, true).await
}

pub(crate) async fn migrate_execute(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    migrate(&state, &collection, query, &headers, &body, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    let limit = page_size(query.limit)?;
    blocking(move || mounted.runs(query.before, limit))
        .await
        .map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailuresQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn failures(
    State(state): State<AppState>,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<FailuresQuery>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    let limit = page_size(query.limit)?;
    if let Some(after) = &query.after {
        check_id(after)?;
    }
    blocking(move || mounted.failures(query.after.as_deref(), limit))
        .await
        .map(Json)
}

pub(crate) async fn run(
    State(state): State<AppState>,
    ApiPath((collection, run)): ApiPath<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    blocking(move || mounted.run(run)).await.map(Json)
}

/// Asks a run under way to stop at its next chunk boundary, and answers at once: 202 with
/// `{"run_id", "cancel": "requested"}`; the run's record says how it ended (`cancelled`, or
/// `done` should its last chunk commit first). See [`Mount::cancel`](super::mount::Mount::cancel).
pub(crate) async fn cancel(
    State(state): State<AppState>,
    ApiPath((collection, run)): ApiPath<(String, u64)>,
) -> Result<Response, ApiError> {
    let mounted = state.mounted(&collection)?;
    let requested = blocking(move || mounted.cancel(run)).await?;
    Ok((StatusCode::ACCEPTED, Json(requested)).into_response())
}

pub(crate) async fn revert(
    State(state): State<AppState>,
    ApiPath((collection, run)): ApiPath<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    let mounted = state.mounted(&collection)?;
    blocking(move || mounted.revert(run)).await.map(Json)
}

/// The 404 fallback.
pub(crate) async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// The 405 fallback; axum adds the `Allow` header.
pub(crate) async fn wrong_method(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// Fails a request that takes longer than `timeout`. Not on migration runs and reverts, which
/// take as long as the collection needs (and go on if the client leaves; `…/cancel` stops a run).
pub(crate) async fn limit_time(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Turns an error response that some layer made without a problem body into one, keeping its
/// status and headers (`Allow`, `WWW-Authenticate`): every error the API sends is a problem.
pub(crate) async fn problem_backstop(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NoRoute(path),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(method.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is too large".to_owned())
        }
        StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
        status => ApiError::Status(status),
    };
    let (parts, _) = response.into_parts();
    let mut fresh = error.into_response();
    *fresh.status_mut() = status;
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            fresh.headers_mut().append(name.clone(), value.clone());
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_one_strong_tag_or_a_star() {
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IF_MATCH, value.parse().unwrap());
            if_match(&headers)
        };
        assert_eq!(
            parse("\"3\"").unwrap(),
            Some(IfMatch::Revision(Revision::new(3).unwrap()))
        );
        assert_eq!(parse("*").unwrap(), Some(IfMatch::Any));
        for bad in ["3", "W/\"3\"", "\"0\"", "\"x\"", "\"1\", \"2\""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ndjson_media_type_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            "application/json, application/x-ndjson;q=0.9"
                .parse()
                .unwrap(),
        );
        assert!(wants_ndjson(&headers));
        headers.insert(ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_ndjson(&headers));
    }
}
