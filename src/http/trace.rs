//! The request log: one event per request with its method, matched route, status and latency (µs),
//! inside a `request` span so that an internal error logged while answering carries them too. It
//! is at `info`, `warn` for a 503 (a request that ran out of time), `error` for any other 5xx:
//! whatever answered it (a handler's error, a layer, the backstop), a 5xx never stays at `info`.
//!
//! The route is the matched template (`/{collection}/docs/{id}`), never the request's path or
//! query, and no header or body is recorded: a document id, a token or a payload never reaches the
//! log through this layer.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The route recorded for a request that matched none (the 404 fallback).
const NO_ROUTE: &str = "(none)";

/// `call`, to run on another thread (the blocking pool) inside the current span and with the
/// current subscriber: without them, what it logs would lose the request's method and route, and
/// a subscriber set for this thread only (`tracing::subscriber::set_default`) would not see it.
pub(crate) fn in_current_span<R>(call: impl FnOnce() -> R) -> impl FnOnce() -> R {
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(call))
}

/// Middleware around the whole router: logs every request once its response is ready (for a
/// stream, when its head is sent).
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(NO_ROUTE, MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!("request", %method, route = %route);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| match status {
        // The router's own timeout: the server is slow, not broken.
        503 => tracing::warn!(status, latency_us, "request answered"),
        500.. => tracing::error!(status, latency_us, "request answered"),
        _ => tracing::info!(status, latency_us, "request answered"),
    });
    response
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde::{Deserialize, Serialize};
    use tower::ServiceExt;

    use crate::{Schema, Store};

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Note {
        text: String,
    }

    impl Schema for Note {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, crate::StepError> {
            Ok(previous)
        }
    }

    const TOKEN: &str = "token-that-must-not-be-logged-1234";
    const PAYLOAD: &str = "payload-that-must-not-be-logged-5678";

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    async fn send(app: &axum::Router, method: &str, uri: &str, body: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    /// Every 5xx is logged above `info`, whichever layer answered it: 503 at `warn`, the others
    /// at `error`.
    #[tokio::test]
    async fn every_5xx_is_logged_above_info() {
        let app = axum::Router::new()
            .route(
                "/503",
                axum::routing::get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .route(
                "/502",
                axum::routing::get(|| async { StatusCode::BAD_GATEWAY }),
            )
            .route("/200", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(super::log_request));
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        {
            let _guard = tracing::subscriber::set_default(subscriber);
            for path in ["/503", "/502", "/200"] {
                send(&app, "GET", path, "").await;
            }
        }
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = |route: &str| {
            log.lines()
                .find(|line| line.contains(&format!("route={route}")))
                .unwrap_or_else(|| panic!("no line for {route}: {log}"))
        };
        assert!(line("/503").contains(" WARN "), "{log}");
        assert!(line("/502").contains("ERROR "), "{log}");
        assert!(line("/200").contains(" INFO "), "{log}");
    }

    /// A real store error (a damaged head) answers 500; the log has the request (method, route,
    /// status) and the error's cause, and neither the token nor the payload, at every level.
    #[tokio::test]
    async fn a_5xx_is_logged_with_its_cause_and_no_token_or_payload() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let id = notes
            .insert(&Note {
                text: PAYLOAD.to_owned(),
            })
            .unwrap()
            .into_string();
        notes.damage_head_for_test(&id);
        let app = crate::http::Router::new(store)
            .collection::<Note>()
            .unwrap()
            .token(TOKEN)
            .build()
            .unwrap();

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let statuses = {
            let _guard = tracing::subscriber::set_default(subscriber);
            let document = format!("/notes/docs/{id}");
            let replacement = format!(r#"{{"text":"{PAYLOAD}"}}"#);
            [
                send(&app, "GET", "/healthz", "").await,
                send(&app, "GET", &document, "").await,
                send(&app, "PUT", &document, &replacement).await,
                send(&app, "POST", "/notes", &replacement).await,
                send(&app, "GET", "/notes", "").await,
            ]
        };
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::CREATED,
                StatusCode::OK,
            ],
            "{log}"
        );
        let lines: Vec<&str> = log.lines().collect();
        let answered = |method: &str, route: &str, status: u16| {
            lines.iter().any(|line| {
                line.contains(&format!("method={method}"))
                    && line.contains(&format!("route={route}"))
                    && line.contains(&format!("status={status}"))
                    && line.contains("latency_us=")
            })
        };
        assert!(answered("GET", "/healthz", 200), "{log}");
        assert!(answered("GET", "/{collection}/docs/{id}", 500), "{log}");
        assert!(answered("PUT", "/{collection}/docs/{id}", 500), "{log}");
        assert!(answered("POST", "/{collection}", 201), "{log}");
        // The 5xx's error chain, at error level, inside the request's span.
        let failures: Vec<&&str> = lines
            .iter()
            .filter(|line| line.contains("ERROR") && line.contains("request failed"))
            .collect();
        assert_eq!(failures.len(), 2, "{log}");
        for failure in failures {
            assert!(
                failure.contains(&format!("corrupt record for `{id}` in `notes`")),
                "{failure}"
            );
            assert!(
                failure.contains("route=/{collection}/docs/{id}"),
                "{failure}"
            );
        }
        // Logged on the blocking pool, still inside the request's span.
        assert!(
            lines.iter().any(|line| line.contains("ERROR")
                && line.contains("a listed document is damaged")
                && line.contains("route=/{collection}")
                && line.contains(&id)),
            "{log}"
        );
        assert!(!log.contains(TOKEN), "{log}");
        assert!(!log.contains(PAYLOAD), "{log}");
    }
}
