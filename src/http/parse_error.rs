//! A problem body for the requests hyper refuses before they reach the router.
//!
//! When hyper cannot parse a request head (a bad request line, `Content-Length: -1`, a NUL in a
//! header, an unsupported version, a URI or a head too long) it writes its own response and closes
//! the connection: `HTTP/1.1 400 Bad Request`, `connection: close`, `content-length: 0`, `date`,
//! and no body. hyper offers no hook to change it, so [`ProblemOnParseError`] sits between hyper
//! and the socket, recognises that exact head among the bytes hyper writes, and sends in its place
//! the same head with `content-type: application/problem+json` and a problem body.
//!
//! It recognises only a whole head of that shape at the start of a write (of one slice of a
//! vectored write), with a 4xx status. A response of the service can have that very shape: hyper
//! writes `connection: close` and `content-length: 0` on any empty response when keep-alive is off
//! (the client sent `Connection: close`, or a graceful shutdown is under way), so an empty 401 or
//! the answer to a `HEAD` looks the same. The shim therefore counts: the server wraps the service
//! so that it counts the responses it produced ([`Responses`]), the shim counts the response heads
//! written, and a head of that shape is replaced only when it is one more than the service
//! produced. hyper serves one request at a time on an HTTP/1.1 connection and writes a response's
//! head only after the service produced it, so a head written while the count of heads equals
//! the count of responses is hyper's own. A head the shim fails to count (one that does not start a
//! write) can only make it leave hyper's empty response as it is, never replace a service's.
//! If a later hyper writes its automatic response differently, the client gets hyper's empty
//! response again: the tests in `tests/http/serve.rs` would fail and say so.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::{ApiError, PROBLEM_JSON};

/// The headers hyper writes, in this order, on its automatic response to a parse error.
const AUTOMATIC_HEADERS: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// Whether `bytes` start a final response head (`HTTP/1.1 200`, or `HTTP/1.0` to an HTTP/1.0
/// client), not an interim `100 Continue`, which hyper writes itself and is no response of its own.
fn starts_final_head(bytes: &[u8]) -> bool {
    matches!(
        bytes,
        [
            b'H',
            b'T',
            b'T',
            b'P',
            b'/',
            b'1',
            b'.',
            b'0' | b'1',
            b' ',
            b'2'..=b'5',
            ..
        ]
    )
}

/// How many responses the service produced on one connection, shared between the service's
/// wrapper (which counts) and the connection's [`ProblemOnParseError`] (which reads).
#[derive(Clone, Debug, Default)]
pub(crate) struct Responses(Arc<AtomicUsize>);

impl Responses {
    /// Counts one response of the service; call it before hyper can write the response's head.
    pub(crate) fn produced(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// An I/O stream that replaces hyper's empty response to an unparsable request by a problem.
#[derive(Debug)]
pub(crate) struct ProblemOnParseError<I> {
    inner: I,
    /// The responses the service produced on this connection.
    responses: Responses,
    /// The response heads written so far (hyper's own included).
    heads: usize,
    /// The response being written in place of hyper's, how much of it is written, and how many
    /// bytes of hyper's it stands for.
    replacing: Option<Replacement>,
}

#[derive(Debug)]
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<I> ProblemOnParseError<I> {
    pub(crate) fn new(inner: I, responses: Responses) -> Self {
        Self {
            inner,
            responses,
            heads: 0,
            replacing: None,
        }
    }

    /// Counts the heads among the bytes just written: those of `slices` that start a response
    /// head and of which the `written` bytes reached at least the first.
    fn count_heads<'a>(&mut self, slices: impl IntoIterator<Item = &'a [u8]>, written: usize) {
        let mut before = 0;
        for slice in slices {
            if before >= written {
                break;
            }
            if starts_final_head(slice) {
                self.heads += 1;
            }
            before += slice.len();
        }
    }
}

/// The status of `head` when it is hyper's automatic response to a request it could not parse.
fn automatic_status(head: &[u8]) -> Option<StatusCode> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let status = StatusCode::from_bytes(status).ok()?;
    let automatic = status.is_client_error()
        && head.ends_with(b"\r\n\r\n")
        && head
            .windows(AUTOMATIC_HEADERS.len())
            .any(|window| window == AUTOMATIC_HEADERS)
        && !head
            .windows(b"content-type:".len())
            .any(|window| window.eq_ignore_ascii_case(b"content-type:"));
    automatic.then_some(status)
}

/// hyper's `head`, with a problem body for `status`.
fn problem_response(head: &[u8], status: StatusCode) -> Vec<u8> {
    let error = if status == StatusCode::BAD_REQUEST {
        ApiError::BadRequest(
            "the request is not valid HTTP/1.1: its request line or a header is malformed (for example a NUL byte in a header, or a `Content-Length` that is not a number)"
                .to_owned(),
        )
    } else {
        ApiError::Status(status)
    };
    let body = error.problem().to_string();
    let headers = format!(
        "\r\nconnection: close\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\n",
        body.len()
    );
    let mut bytes = Vec::with_capacity(head.len() + headers.len() + body.len());
    let at = head
        .windows(AUTOMATIC_HEADERS.len())
        .position(|window| window == AUTOMATIC_HEADERS)
        .unwrap_or(0);
    bytes.extend_from_slice(head.get(..at).unwrap_or_default());
    bytes.extend_from_slice(headers.as_bytes());
    bytes.extend_from_slice(head.get(at + AUTOMATIC_HEADERS.len()..).unwrap_or_default());
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

impl<I: AsyncWrite + Unpin> ProblemOnParseError<I> {
    /// Starts replacing `head` if it is hyper's automatic response: of its shape, and one head
    /// more than the service produced.
    fn recognise(&mut self, head: &[u8]) -> bool {
        if self.replacing.is_none() && self.heads >= self.responses.count() {
            if let Some(status) = automatic_status(head) {
                tracing::debug!(%status, "answering a request hyper could not parse");
                self.replacing = Some(Replacement {
                    bytes: problem_response(head, status),
                    written: 0,
                    stands_for: head.len(),
                });
            }
        }
        self.replacing.is_some()
    }

    /// Writes the replacement; when it is all written, reports hyper's bytes as written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(replacement) = &mut self.replacing else {
            return Poll::Ready(Ok(0));
        };
        while let Some(rest) = replacement
            .bytes
            .get(replacement.written..)
            .filter(|rest| !rest.is_empty())
        {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => replacement.written += written,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        let stands_for = replacement.stands_for;
        self.replacing = None;
        self.heads += 1;
        Poll::Ready(Ok(stands_for))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ProblemOnParseError<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ProblemOnParseError<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.recognise(buf) {
            return this.poll_replacement(cx);
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.count_heads([buf], written);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_some() {
            return this.poll_replacement(cx);
        }
        // hyper writes each response head as a slice of its own: write the slices before an
        // automatic head as they are, then the head's replacement in the next call.
        let found = bufs
            .iter()
            .position(|slice| automatic_status(slice).is_some());
        let bufs = match (found, bufs.first()) {
            (Some(0), Some(head)) => {
                if this.recognise(head) {
                    return this.poll_replacement(cx);
                }
                bufs
            }
            (Some(before), _) => bufs.get(..before).unwrap_or(bufs),
            (None, _) => bufs,
        };
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.count_heads(bufs.iter().map(|slice| &**slice), written);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    // hyper writes all it has buffered before it flushes or shuts down, and after a `Pending`
    // write it offers the same bytes again, so a replacement is always completed by a write and
    // reported there. A replacement under way at a flush or a shutdown is completed here only so
    // that the client never receives half of one; hyper would then believe its head unwritten.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replacing.is_some() {
            ready!(this.poll_replacement(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replacing.is_some() {
            ready!(this.poll_replacement(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 11:31:09 GMT\r\n\r\n";

    #[test]
    fn final_heads_are_told_from_interim_ones_and_bodies() {
        assert!(starts_final_head(HEAD));
        assert!(starts_final_head(b"HTTP/1.0 200 OK\r\n"));
        assert!(!starts_final_head(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!starts_final_head(b"{\"title\":1}"));
        assert!(!starts_final_head(b"HTTP/1.1 "));
    }

    #[test]
    fn only_hypers_automatic_head_is_recognised() {
        assert_eq!(automatic_status(HEAD), Some(StatusCode::BAD_REQUEST));
        let too_long = String::from_utf8_lossy(HEAD).replace("400 Bad Request", "414 URI Too Long");
        assert_eq!(
            automatic_status(too_long.as_bytes()),
            Some(StatusCode::URI_TOO_LONG)
        );
        for other in [
            &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\n\r\n",
            b"{\"title\":\"HTTP/1.1 400\"}",
            b"HTTP/1.1 4",
            b"",
        ] {
            assert_eq!(automatic_status(other), None, "{other:?}");
        }
    }

    /// A writer that takes at most 7 bytes a call, and is not ready every other call.
    #[derive(Default)]
    struct Trickle {
        written: Vec<u8>,
        ready: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let taken = buf.len().min(7);
            self.written.extend_from_slice(&buf[..taken]);
            Poll::Ready(Ok(taken))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Writes all of `buf` as hyper would: the same bytes again after `Pending`, the rest after a
    /// short write.
    async fn write_all(shim: &mut ProblemOnParseError<Trickle>, mut buf: &[u8]) {
        while !buf.is_empty() {
            let written = std::future::poll_fn(|cx| Pin::new(&mut *shim).poll_write(cx, buf))
                .await
                .unwrap();
            buf = &buf[written..];
        }
    }

    /// hyper's head is reported written only once the whole replacement is, however short the
    /// writes, and the bytes around it pass unchanged.
    #[tokio::test]
    async fn the_replacement_survives_short_writes() {
        let mut shim = ProblemOnParseError::new(Trickle::default(), Responses::default());
        write_all(&mut shim, b"before;").await;
        write_all(&mut shim, HEAD).await;
        write_all(&mut shim, b";after").await;
        std::future::poll_fn(|cx| Pin::new(&mut shim).poll_flush(cx))
            .await
            .unwrap();
        let received = String::from_utf8(shim.inner.written).unwrap();
        let expected = String::from_utf8(problem_response(HEAD, StatusCode::BAD_REQUEST)).unwrap();
        assert_eq!(received, format!("before;{expected};after"));
    }

    /// As hyper writes with vectored writes: the head's own slice is replaced, the slices around
    /// it pass unchanged.
    #[tokio::test]
    async fn the_replacement_survives_vectored_writes() {
        let parts: [&[u8]; 3] = [b"before;", HEAD, b";after"];
        let mut shim = ProblemOnParseError::new(Trickle::default(), Responses::default());
        let mut done = 0;
        let total: usize = parts.iter().map(|part| part.len()).sum();
        while done < total {
            let mut skip = done;
            let slices: Vec<io::IoSlice<'_>> = parts
                .iter()
                .filter_map(|part| {
                    let rest = part.get(skip.min(part.len())..)?;
                    skip = skip.saturating_sub(part.len());
                    (!rest.is_empty()).then(|| io::IoSlice::new(rest))
                })
                .collect();
            done += std::future::poll_fn(|cx| Pin::new(&mut shim).poll_write_vectored(cx, &slices))
                .await
                .unwrap();
        }
        let received = String::from_utf8(shim.inner.written).unwrap();
        let expected = String::from_utf8(problem_response(HEAD, StatusCode::BAD_REQUEST)).unwrap();
        assert_eq!(received, format!("before;{expected};after"));
    }

    /// A head of hyper's shape that the service produced passes unchanged; one more than the
    /// service produced is hyper's own, and is replaced.
    #[tokio::test]
    async fn only_a_head_the_service_did_not_produce_is_replaced() {
        const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        let responses = Responses::default();
        let mut shim = ProblemOnParseError::new(Trickle::default(), responses.clone());
        write_all(&mut shim, CONTINUE).await;
        responses.produced();
        write_all(&mut shim, HEAD).await;
        write_all(&mut shim, HEAD).await;
        let received = String::from_utf8(shim.inner.written).unwrap();
        let expected = String::from_utf8(problem_response(HEAD, StatusCode::BAD_REQUEST)).unwrap();
        assert_eq!(
            received,
            format!(
                "{}{}{expected}",
                String::from_utf8_lossy(CONTINUE),
                String::from_utf8_lossy(HEAD)
            )
        );
    }

    #[test]
    fn the_replacement_keeps_the_head_and_adds_a_problem() {
        let bytes = problem_response(HEAD, StatusCode::BAD_REQUEST);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\ndate: Sun, 06 Dec 2026"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(head.contains("\r\ncontent-type: application/problem+json"));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["type"], "urn:revolve:problem:bad-request");
    }
}
