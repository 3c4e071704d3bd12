//! Serving the router on a TCP listener with the limits `axum::serve` does not set: a header read
//! timeout, a cap on open connections, and a graceful shutdown.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinError, JoinSet};

use super::parse_error::{ProblemOnParseError, Responses};

/// How long a client may take to send a request's headers unless
/// [`Server::header_read_timeout`] sets another: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections may be open at once unless [`Server::max_connections`] sets another.
///
/// As many as a usual soft file descriptor limit (`ulimit -n` is often 1,024), so
/// [`Server::serve`] lowers the cap it uses to that limit less [`FD_RESERVE`] on Linux.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The file descriptors [`Server::serve`] leaves for the rest of the process (the store's files,
/// the listener, logs) when it lowers the connection cap to the file descriptor limit.
pub const FD_RESERVE: usize = 64;

/// How long a graceful shutdown waits for open connections unless [`Server::shutdown_timeout`]
/// sets another: 30 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait before accepting again after an error that is not one connection's (such as
/// running out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves `router` on `listener` with the default limits until an I/O error ends accepting:
/// the shortcut for `Server::new(router).serve(listener)`. See [`Server`].
///
/// # Errors
///
/// None in practice: errors accepting a connection are logged and retried; the `io::Result` is
/// kept so that a future version can report a listener that fails for good.
pub async fn serve(listener: TcpListener, router: axum::Router) -> io::Result<()> {
    Server::new(router).serve(listener).await
}

/// An HTTP/1.1 server for the router (or any `axum::Router`) with limits against clients that hold
/// connections open:
///
/// - a **header read timeout** ([`DEFAULT_HEADER_READ_TIMEOUT`]): a connection whose request
///   headers are not complete within it is closed, and so is a kept-alive connection that sends no
///   new request within it;
/// - a **cap on open connections** ([`DEFAULT_MAX_CONNECTIONS`]): at the cap the server stops
///   accepting until a connection closes, so new clients wait in the kernel's listen queue instead
///   of the process running out of file descriptors;
/// - a **graceful shutdown** ([`with_graceful_shutdown`](Self::with_graceful_shutdown)): when the
///   signal fires it stops accepting, lets requests under way finish (up to
///   [`shutdown_timeout`](Self::shutdown_timeout)), and returns.
///
/// A request whose head hyper cannot parse (a bad request line, `Content-Length: -1`, a NUL in a
/// header) gets a `400` `application/problem+json` body, like every other error of the API; see
/// the module documentation for the cases where hyper answers without one.
///
/// Only HTTP/1.1 is served (no `h2c`); put a proxy in front for HTTP/2 or TLS.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// use std::time::Duration;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// revolve::http::Server::new(app)
///     .header_read_timeout(Duration::from_secs(5))
///     .max_connections(256)
///     .with_graceful_shutdown(async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .serve(listener)
///     .await
/// # }
/// ```
#[must_use]
pub struct Server {
    router: axum::Router,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown_timeout: Duration,
    signal: Option<Signal>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("graceful_shutdown", &self.signal.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `router` with the default limits and no shutdown signal.
    pub fn new(router: axum::Router) -> Self {
        Self {
            router,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            signal: None,
        }
    }

    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may stay idle; [`DEFAULT_HEADER_READ_TIMEOUT`] by default. The connection is
    /// closed without a response when it runs out.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How many connections may be open at once (at least 1, at most tokio's
    /// `Semaphore::MAX_PERMITS`); [`DEFAULT_MAX_CONNECTIONS`] by
    /// default. On Linux, [`serve`](Self::serve) lowers it to the process's soft file descriptor
    /// limit (`ulimit -n`, read from `/proc/self/limits`) less [`FD_RESERVE`], and logs the cap it
    /// uses at `info`; elsewhere keep it under that limit yourself. To serve more connections,
    /// raise the limit.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long a graceful shutdown waits for open connections before closing them;
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`] by default. A migration run whose client is cut off goes on
    /// (see the module documentation) as long as the runtime does.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Stops accepting when `signal` completes, then waits for open connections to finish their
    /// request (idle ones are closed at once), up to [`shutdown_timeout`](Self::shutdown_timeout).
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// Accepts and serves connections on `listener` until the shutdown signal, if any.
    ///
    /// # Errors
    ///
    /// None in practice: errors accepting a connection (a client that left, no file descriptor
    /// left) are logged and accepting goes on; the `io::Result` is kept so that a future version
    /// can report a listener that fails for good.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        let Self {
            router,
            header_read_timeout,
            max_connections,
            shutdown_timeout,
            signal,
        } = self;
        let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        let fd_limit = open_files_limit();
        let max_connections = within_fd_limit(max_connections, fd_limit);
        tracing::info!(
            max_connections,
            fd_limit = fd_limit.map_or_else(|| "unknown".to_owned(), |limit| limit.to_string()),
            header_read_timeout_ms =
                u64::try_from(header_read_timeout.as_millis()).unwrap_or(u64::MAX),
            "serving"
        );
        let permits = Arc::new(Semaphore::new(max_connections));
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let builder = Arc::new(builder);

        loop {
            // Wait for a free slot before accepting: at the cap, new clients wait in the listen
            // queue, and no file descriptor is spent on them.
            let permit = tokio::select! {
                () = &mut signal => break,
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    ended(joined);
                    continue;
                }
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // never closed
                },
            };
            let (stream, peer) = tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        drop(permit);
                        accept_failed(&error).await;
                        continue;
                    }
                },
            };
            // The shim tells hyper's own responses from the service's by counting the latter.
            let responses = Responses::default();
            let produced = responses.clone();
            let service = TowerToHyperService::new(tower::util::MapResponse::new(
                router.clone(),
                move |response: axum::response::Response| {
                    produced.produced();
                    response
                },
            ));
            let builder = Arc::clone(&builder);
            let mut stopped = stopped.clone();
            connections.spawn(async move {
                let _permit = permit;
                let connection = builder.serve_connection(io(stream, responses), service);
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    _ = stopped.changed() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
        }

        drop(listener);
        let _ = stop.send(true);
        while let Some(joined) = connections.try_join_next() {
            ended(joined);
        }
        let open = connections.len();
        if open > 0 {
            tracing::info!(open, "shutting down: waiting for open connections");
        }
        let drained = tokio::time::timeout(shutdown_timeout, async {
            while let Some(joined) = connections.join_next().await {
                ended(joined);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                "shutdown timeout: closing the connections still open"
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// The process's soft limit on open files, where it can be read (Linux: `/proc/self/limits`);
/// `None` if unlimited or unknown.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    soft_open_files(&limits)
}

/// The soft "Max open files" of a `/proc/self/limits` text.
fn soft_open_files(limits: &str) -> Option<usize> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `requested` connections, lowered to leave [`FD_RESERVE`] of the file descriptor `limit` (at
/// least half of it, and at least one connection).
fn within_fd_limit(requested: usize, limit: Option<usize>) -> usize {
    let Some(limit) = limit else {
        return requested;
    };
    let usable = limit.saturating_sub(FD_RESERVE).max(limit / 2).max(1);
    if requested > usable {
        tracing::warn!(
            requested,
            limit,
            usable,
            "lowering the connection cap to the file descriptor limit (ulimit -n) less a reserve"
        );
    }
    requested.min(usable)
}

/// Logs a connection's task that panicked (a handler's panic ends its connection).
fn ended(joined: Result<(), JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            tracing::error!("a connection's task panicked; the connection was closed");
        }
    }
}

fn io(stream: TcpStream, responses: Responses) -> TokioIo<ProblemOnParseError<TcpStream>> {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    TokioIo::new(ProblemOnParseError::new(stream, responses))
}

/// Logs an accept error; after one that is not one connection's, waits a little before the next
/// try, so that running out of file descriptors neither spins nor goes unseen.
async fn accept_failed(error: &io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::Interrupted => {
            tracing::debug!(%error, "accepting a connection failed");
        }
        _ => {
            tracing::error!(%error, "accepting connections failed; retrying");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_under_the_file_descriptor_limit() {
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             63704                63704                processes \n\
            Max open files            1024                 1048576              files     \n";
        assert_eq!(soft_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_files(unlimited), None);
        assert_eq!(soft_open_files(""), None);

        assert_eq!(within_fd_limit(1024, Some(1024)), 1024 - FD_RESERVE);
        assert_eq!(within_fd_limit(100, Some(1024)), 100);
        assert_eq!(within_fd_limit(1024, None), 1024);
        assert_eq!(within_fd_limit(1024, Some(100)), 50);
        assert_eq!(within_fd_limit(1024, Some(1)), 1);
        assert_eq!(within_fd_limit(1024, Some(0)), 1);
    }

    #[test]
    fn the_connection_cap_stays_in_the_semaphores_range() {
        let server = Server::new(axum::Router::new());
        assert_eq!(server.max_connections, DEFAULT_MAX_CONNECTIONS);
        let server = server.max_connections(0);
        assert_eq!(server.max_connections, 1);
        let server = server.max_connections(usize::MAX);
        assert_eq!(server.max_connections, Semaphore::MAX_PERMITS);
        // Makes no semaphore it cannot.
        let permits = Semaphore::new(server.max_connections);
        assert_eq!(permits.available_permits(), Semaphore::MAX_PERMITS);
    }
}
