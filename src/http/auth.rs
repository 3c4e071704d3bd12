//! The bearer token: kept only as a SHA-256 digest, compared in constant time, never logged.

use std::fmt;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The configured token. Only its digest is kept, so that the secret is not in memory for a
/// `Debug` or a core dump to show, and comparing digests of equal length leaks neither the
/// token's bytes nor its length through timing.
#[derive(Clone)]
pub(crate) struct Token([u8; 32]);

/// What [`authorize`] checks requests against.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// The token; without one, every request passes.
    pub(crate) token: Option<Token>,
    /// Whether reading routes need the token too.
    pub(crate) protect_reads: bool,
}

impl Token {
    pub(crate) fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Which requests need the token: every method but `GET` and `HEAD`, every route under
/// `…/migrate`, and with `protect_reads` every route but `/healthz`, `/readyz` and `/openapi.json`.
///
/// `route` is the matched route template (`/{collection}/migrate/status`), never the request's
/// path, so no document id can make a guarded route look open.
pub(crate) fn needs_token(method: &Method, route: &str, protect_reads: bool) -> bool {
    if route.ends_with("/healthz") || route.ends_with("/readyz") || route.ends_with("/openapi.json")
    {
        return false;
    }
    let reading = method == Method::GET || method == Method::HEAD;
    !reading || route.contains("/{collection}/migrate") || protect_reads
}

/// The token of an `Authorization: Bearer <token>` header; `None` for no header or another scheme.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware on every matched route: refuses a guarded request without the right token (401), or
/// with more than one `Authorization` header (400), whatever they hold.
pub(crate) async fn authorize(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &guard.token {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str);
        if needs_token(request.method(), route, guard.protect_reads) {
            if request
                .headers()
                .get_all(AUTHORIZATION)
                .iter()
                .nth(1)
                .is_some()
            {
                // Ambiguous: a proxy in front may have checked another one than this server would.
                return ApiError::BadRequest(
                    "more than one `Authorization` header; send exactly one".to_owned(),
                )
                .into_response();
            }
            match bearer(request.headers()) {
                None => return ApiError::Unauthorized { presented: false }.into_response(),
                Some(presented) if !token.accepts(presented) => {
                    return ApiError::Unauthorized { presented: true }.into_response()
                }
                Some(_) => {}
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_never_shown() {
        let token = Token::new("hunter2");
        assert!(!format!("{token:?}").contains("hunter2"));
        assert!(token.accepts("hunter2"));
        assert!(!token.accepts("hunter"));
        assert!(!token.accepts(""));
    }

    #[test]
    fn writes_and_migrate_routes_are_guarded() {
        let get = Method::GET;
        assert!(!needs_token(&get, "/{collection}/docs/{id}", false));
        assert!(needs_token(&get, "/{collection}/docs/{id}", true));
        assert!(needs_token(&get, "/{collection}/migrate/status", false));
        assert!(needs_token(&Method::PUT, "/{collection}/docs/{id}", false));
        assert!(!needs_token(&get, "/healthz", true));
        assert!(!needs_token(&get, "/openapi.json", true));
    }

    #[test]
    fn only_the_bearer_scheme_counts() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
