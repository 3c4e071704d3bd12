//! Migration runs streamed as newline-delimited JSON: a line per committed chunk, then the report.
//!
//! The run executes on the blocking pool and sends its lines through a channel. The response
//! starts once the run has sent its first line, so that a run that cannot start (another is under
//! way: 409) is still an ordinary problem response. If the client goes away the channel's sends
//! fail quietly and the run goes on to the end, recorded in the ledger.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::mount::Mount;
use super::view;
use crate::{MigrateOptions, MigrationReport};

/// The media type of the stream.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// What the run sends.
enum Event {
    /// A progress line.
    Progress(Value),
    /// The run ended.
    Done(Result<MigrationReport, ApiError>),
}

impl Event {
    fn line(self) -> Bytes {
        let value = match self {
            Event::Progress(value) => value,
            Event::Done(result) => match result.and_then(|report| view::report(&report)) {
                Ok(report) => json!({ "event": "report", "report": report }),
                Err(error) => {
                    error.log();
                    json!({ "event": "error", "problem": error.problem() })
                }
            },
        };
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// Starts the run in the background and answers with its lines.
pub(crate) async fn respond(
    mounted: Arc<Mount>,
    options: MigrateOptions,
) -> Result<Response, ApiError> {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let progress = sender.clone();
    // Not awaited: the run belongs to the blocking pool, not to this request.
    drop(tokio::task::spawn_blocking(super::trace::in_current_span(
        move || {
            let sink = Box::new(move |line: Value| {
                // A client that went away closed the channel; the run goes on.
                let _ = progress.send(Event::Progress(line));
            });
            let result = mounted.migrate(&options, Some(sink));
            let _ = sender.send(Event::Done(result));
        },
    )));
    let first = match receiver.recv().await {
        None => {
            return Err(ApiError::internal(
                "the migration task ended without a result",
            ))
        }
        Some(Event::Done(Err(error))) => return Err(error),
        Some(first) => first,
    };
    let lines = Lines {
        first: Some(first),
        receiver,
        finished: false,
    };
    let mut response = Body::from_stream(lines).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The response body: the first event, then each one as it comes, up to the run's end.
struct Lines {
    first: Option<Event>,
    receiver: mpsc::UnboundedReceiver<Event>,
    finished: bool,
}

impl futures_core::Stream for Lines {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let event = match self.first.take() {
            Some(event) => event,
            None => match self.receiver.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(event)) => event,
                Poll::Ready(None) => Event::Done(Err(ApiError::internal(
                    "the migration task ended without a result",
                ))),
            },
        };
        if matches!(event, Event::Done(_)) {
            self.finished = true;
        }
        Poll::Ready(Some(Ok(event.line())))
    }
}
