//! `revolve::http::serve` on real sockets (127.0.0.1:0): stalled clients are closed by the header
//! read timeout while the connection cap keeps them from taking every file descriptor, requests
//! hyper cannot parse get a problem body, and a graceful shutdown lets a request under way finish.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use revolve::http::Server;
use serde_json::Value;

use crate::support::{issues, TOKEN};

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes; a reset counts as a close.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the server did not close the connection: {error}"),
    }
    received
}

/// The status, the head and the body of the one response to `raw`, sent on its own connection.
fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String, String) {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    let response = String::from_utf8(read_until_closed(&mut stream)).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {response:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

async fn spawn_server(server: Server) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener));
    addr
}

/// Why the figures are what they are: at the cap the server stops accepting, so connections wait
/// in the kernel's listen queue in the order they came (FIFO). The first `CAP` stalled sockets are
/// accepted at once and closed when their header timeout runs out; then the next `CAP` are
/// accepted, and so on. A `/healthz` that arrives behind `STALLED` stalled sockets is therefore
/// accepted after `ceil((STALLED + 1) / CAP) - 1` timeouts, and never before the first: that it
/// waits at least one timeout shows the cap held (no more than `CAP` were open), that it is
/// answered within the bound (plus 10 s of slack for a loaded CI machine) shows the timeout freed
/// the slots. With only `CAP` stalled sockets ahead of it, it is answered within one timeout (plus
/// 5 s). A stalled socket that sent part of a
/// request head and one that sent nothing are both closed, each no sooner than the timeout after
/// it connected, and without a response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_and_healthz_gets_through() {
    const CAP: usize = 16;
    const STALLED: usize = CAP + 100;
    const TIMEOUT: Duration = Duration::from_millis(500);
    let (_dir, _store, app, _issues) = issues();
    let addr = spawn_server(
        Server::new(app)
            .max_connections(CAP)
            .header_read_timeout(TIMEOUT),
    )
    .await;

    tokio::task::spawn_blocking(move || {
        // Behind STALLED stalled sockets.
        let stalled = hold_stalled(addr, STALLED);
        let healthz = std::thread::spawn(move || {
            let sent = Instant::now();
            let (status, _, body) = exchange(addr, HEALTHZ);
            (status, body, sent.elapsed())
        });
        check_closed(stalled, TIMEOUT);
        let (status, body, waited) = healthz.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let rounds = u32::try_from((STALLED + 1).div_ceil(CAP)).unwrap();
        assert!(
            waited >= TIMEOUT,
            "/healthz answered after {waited:?}, before any stalled socket timed out: the cap did not hold"
        );
        assert!(
            waited <= TIMEOUT * rounds + Duration::from_secs(10),
            "/healthz answered only after {waited:?}"
        );

        // Behind exactly CAP stalled sockets: within one timeout (and slack for a loaded machine).
        let stalled = hold_stalled(addr, CAP);
        let sent = Instant::now();
        let (status, _, body) = exchange(addr, HEALTHZ);
        let waited = sent.elapsed();
        assert_eq!(status, 200, "{body}");
        assert!(
            waited <= TIMEOUT + Duration::from_secs(5),
            "/healthz answered only after {waited:?}"
        );
        check_closed(stalled, TIMEOUT);
    })
    .await
    .unwrap();
}

/// `count` connections, every other one having sent part of a request head, the others nothing.
fn hold_stalled(addr: SocketAddr, count: usize) -> Vec<(TcpStream, Instant)> {
    (0..count)
        .map(|n| {
            let connected = Instant::now();
            let mut stream = connect(addr);
            if n % 2 == 0 {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
                    .unwrap();
            }
            (stream, connected)
        })
        .collect()
}

fn check_closed(stalled: Vec<(TcpStream, Instant)>, timeout: Duration) {
    for (n, (mut stream, connected)) in stalled.into_iter().enumerate() {
        let received = read_until_closed(&mut stream);
        let open = connected.elapsed();
        assert!(
            received.is_empty(),
            "stalled socket {n} got {:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(open >= timeout, "stalled socket {n} closed after {open:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_cannot_parse_get_a_problem() {
    let (_dir, _store, app, _issues) = issues();
    let addr = spawn_server(Server::new(app)).await;
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: test\r\n\r\n",
        "a".repeat(100_000)
    );
    tokio::task::spawn_blocking(move || {
        let cases: [(&str, &[u8], u16); 7] = [
            ("bad request line", b"GARBAGE\r\n\r\n", 400),
            ("no version", b"GET /healthz\r\nHost: test\r\n\r\n", 400),
            (
                "unknown version",
                b"GET /healthz HTTP/9.1\r\nHost: test\r\n\r\n",
                400,
            ),
            (
                "negative Content-Length",
                b"POST /issues HTTP/1.1\r\nHost: test\r\nContent-Length: -1\r\n\r\n",
                400,
            ),
            (
                "two Content-Lengths",
                b"POST /issues HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                "NUL in a header",
                b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Test: a\0b\r\n\r\n",
                400,
            ),
            ("URI too long", long_uri.as_bytes(), 414),
        ];
        for (case, raw, expected) in cases {
            let (status, head, body) = exchange(addr, raw);
            assert_eq!(status, expected, "{case}: {head}");
            assert!(
                head.contains("\r\ncontent-type: application/problem+json\r\n"),
                "{case}: {head}"
            );
            assert!(
                head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
                "{case}: {head}"
            );
            let problem: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(problem["status"], expected, "{case}: {problem}");
            assert!(
                problem["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("urn:revolve:problem:")),
                "{case}: {problem}"
            );
        }

        // A malformed request behind a good one on the same connection: the good one is answered
        // as usual, the bad one with a problem.
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\nGARBAGE\r\n\r\n")
            .unwrap();
        let received = String::from_utf8(read_until_closed(&mut stream)).unwrap();
        let (first, second) = received.split_once("}HTTP/1.1 ").unwrap();
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");
        assert!(second.starts_with("400 Bad Request\r\n"), "{received}");
        assert!(second.contains("urn:revolve:problem:bad-request"), "{received}");

        // Two `Authorization` headers, the first valid, pass hyper and are refused by the router.
        let body = r#"{"title":"twice","status":"open","priority":2}"#;
        let raw = format!(
            "POST /issues HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, head, body) = exchange(addr, raw.as_bytes());
        assert_eq!(status, 400, "{head}\n{body}");
        assert!(head.contains("application/problem+json"), "{head}");
    })
    .await
    .unwrap();
}

/// hyper writes the service's empty 4xx with `connection: close` and `content-length: 0` when
/// keep-alive is off, just as its own answer to a request it cannot parse: such a response of the
/// service passes unchanged, and a malformed request after it on the same connection still gets a
/// problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_errors_of_the_service_pass_unchanged() {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/401", get(|| async { StatusCode::UNAUTHORIZED }))
        .route("/400", get(|| async { StatusCode::BAD_REQUEST }));
    let addr = spawn_server(Server::new(app)).await;
    tokio::task::spawn_blocking(move || {
        for (method, path, expected) in [
            ("GET", "/401", 401),
            ("GET", "/400", 400),
            ("HEAD", "/401", 401),
            ("HEAD", "/400", 400),
        ] {
            let raw =
                format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
            let (status, head, body) = exchange(addr, raw.as_bytes());
            assert_eq!(status, expected, "{method} {path}: {head}");
            assert!(
                head.contains("\r\ncontent-length: 0"),
                "{method} {path}: {head}"
            );
            assert!(!head.contains("content-type"), "{method} {path}: {head}");
            assert!(body.is_empty(), "{method} {path}: {body}");
        }

        // Kept alive, then closing, then malformed: only hyper's own answer is replaced.
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /401 HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 1024];
        let read = stream.read(&mut first).unwrap();
        let first = String::from_utf8_lossy(&first[..read]).to_ascii_lowercase();
        assert!(first.starts_with("http/1.1 401"), "{first}");
        assert!(!first.contains("content-type"), "{first}");
        stream
            .write_all(b"GET /400 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let second = String::from_utf8(read_until_closed(&mut stream)).unwrap();
        assert!(second.starts_with("HTTP/1.1 400"), "{second}");
        assert!(second.ends_with("\r\n\r\n"), "{second}");
        assert!(
            !second.to_ascii_lowercase().contains("content-type"),
            "{second}"
        );

        let mut stream = connect(addr);
        stream
            .write_all(b"GET /401 HTTP/1.1\r\nHost: test\r\n\r\nGARBAGE\r\n\r\n")
            .unwrap();
        let received = String::from_utf8(read_until_closed(&mut stream)).unwrap();
        let (first, second) = received.split_once("\r\n\r\nHTTP/1.1 ").unwrap();
        assert!(first.starts_with("HTTP/1.1 401"), "{received}");
        assert!(!first.contains("content-type"), "{received}");
        assert!(second.starts_with("400 Bad Request\r\n"), "{received}");
        assert!(
            second.contains("urn:revolve:problem:bad-request"),
            "{received}"
        );
    })
    .await
    .unwrap();
}

/// After the signal the server accepts no more connections, answers the request whose body is
/// still arriving, closes that connection, and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_finishes_the_request_under_way() {
    let (_dir, _store, app, issues) = issues();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new(app)
            .header_read_timeout(Duration::from_secs(60))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .serve(listener),
    );

    let body = r#"{"title":"sent during shutdown","status":"open","priority":2}"#;
    let (half, rest) = body.split_at(10);
    let mut under_way = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        write!(
            stream,
            "POST /issues HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{half}",
            body.len()
        )
        .unwrap();
        // An idle kept-alive connection, too: closed at the signal, not after the 60 s timeout.
        let mut idle = connect(addr);
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut answer = [0u8; 1024];
        assert!(idle.read(&mut answer).unwrap() > 0);
        (stream, idle)
    })
    .await
    .unwrap();

    stop.send(()).unwrap();
    let (status, head) = tokio::task::spawn_blocking(move || {
        // The idle connection is closed once the server acted on the signal, and it closes the
        // listener before it closes connections: from then on, no connection is accepted.
        let (stream, idle) = &mut under_way;
        read_until_closed(idle);
        assert!(
            TcpStream::connect(addr).is_err(),
            "still accepting after the signal"
        );
        stream.write_all(rest.as_bytes()).unwrap();
        let response = String::from_utf8(read_until_closed(stream)).unwrap();
        let head = response.split("\r\n\r\n").next().unwrap().to_owned();
        (head.split(' ').nth(1).unwrap().to_owned(), head)
    })
    .await
    .unwrap();
    assert_eq!(status, "201", "{head}");
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("serve returned after the shutdown")
        .unwrap()
        .unwrap();
    assert!(issues
        .iter()
        .any(|document| document.unwrap().data.title == "sent during shutdown"));
}
