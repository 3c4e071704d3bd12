//! One real server on 127.0.0.1:0: create and read over TCP, then a streamed migration whose
//! client disconnects after the first progress line, and the run found finished in the ledger.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::migrate::{gated_documents, gated_router};
use crate::support::{store_with, Gate, TOKEN};

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

fn request(method: &str, path: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// One request on its own connection: the status and the (not chunked) body.
fn exchange(addr: SocketAddr, request: &str) -> (u16, Value) {
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_socket_serves_and_a_disconnected_run_finishes() {
    let gate = Gate::new("socket");
    let (_dir, store) = store_with(&gated_documents(2000, 1800, "socket"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gated_router(&store);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = tokio::task::spawn_blocking(move || {
        let (status, health) = exchange(addr, &request("GET", "/healthz", "", ""));
        assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
        let (status, created) = exchange(
            addr,
            &request(
                "PUT",
                "/gated/docs/over%20tcp",
                "Content-Type: application/json\r\nIf-None-Match: *\r\n",
                r#"{"n":7,"gate":null,"doubled":14}"#,
            ),
        );
        assert_eq!((status, created["id"].as_str()), (201, Some("over tcp")));
        let (status, read) = exchange(addr, &request("GET", "/gated/docs/over%20tcp", "", ""));
        assert_eq!((status, read["data"]["doubled"].as_u64()), (200, Some(14)));

        // A streamed run: read up to the first progress line, then hang up.
        let mut stream = connect(addr);
        stream
            .write_all(
                request(
                    "POST",
                    "/gated/migrate/execute",
                    "Accept: application/x-ndjson\r\n",
                    "",
                )
                .as_bytes(),
            )
            .unwrap();
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        // The body is chunked; each ndjson line sits whole inside one chunk.
        let progress_line = |received: &[u8]| {
            received
                .split(|&b| b == b'\n')
                .filter_map(|piece| serde_json::from_slice::<Value>(piece).ok())
                .find(|line| line["event"] == "progress")
        };
        let first = loop {
            let read = stream.read(&mut chunk).unwrap();
            assert!(
                read > 0,
                "closed before a progress line: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&chunk[..read]);
            if let Some(line) = progress_line(&received) {
                break line;
            }
        };
        assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
        drop(stream);
        first["run_id"].as_u64().unwrap()
    });
    let run = client.await.unwrap();

    // The run still holds its documents at the gate; the client is gone.
    gate.open();
    let record = tokio::task::spawn_blocking(move || {
        for _ in 0..6000 {
            let (status, record) = exchange(
                addr,
                &request("GET", &format!("/gated/migrate/runs/{run}"), "", ""),
            );
            assert_eq!(status, 200);
            if record["state"] != "running" {
                return record;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("run {run} did not finish");
    })
    .await
    .unwrap();
    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(record["migrated"], 2000);
    server.abort();
}
