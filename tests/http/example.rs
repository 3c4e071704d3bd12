//! The example server's startup: a port in use fails before a store is seeded, and a store that
//! cannot be opened is reported with its cause.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The example server, built on first use (see `tests/common/example.rs`).
pub(crate) fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| crate::example_build::build("server"))
}

fn run_server(args: &[&str]) -> Output {
    Command::new(server_binary())
        .args(args)
        .env_remove("REVOLVE_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn a_port_in_use_fails_before_the_store_is_seeded() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let output = run_server(&["--dev", "--port", &port, "--data", data.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert!(!data.exists(), "a store was created: {stderr}");
    assert!(!stderr.contains("seeded"), "{stderr}");
}

/// A `RUST_LOG` that does not parse is not silently ignored.
#[test]
fn a_bad_rust_log_is_warned_about() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(server_binary())
        .args(["--dev", "--port", &port, "--data"])
        .arg(dir.path().join("store"))
        .env("RUST_LOG", "info,[unclosed")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("ignoring RUST_LOG"), "{stderr}");
}

#[test]
fn a_store_that_cannot_be_opened_is_reported_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a store").unwrap();
    let output = run_server(&["--dev", "--port", "0", "--data", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // "storage engine error" and then what the engine said.
    let (_, cause) = stderr
        .split_once("storage engine error: ")
        .unwrap_or_else(|| panic!("no cause: {stderr}"));
    assert!(cause.trim().len() > 3, "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a store");
}

/// Started with `--log-format json` on port 0: the address is in a JSON log line, each request is
/// a JSON line with its route and status, and Ctrl-C (SIGINT) shuts it down cleanly.
#[cfg(unix)]
#[test]
fn the_server_logs_json_lines_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let mut child = Running(
        Command::new(server_binary())
            .args(["--dev", "--port", "0", "--log-format", "json", "--data"])
            .arg(&data)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (lines, received) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // The seeding note is plain text; every log line is JSON.
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = lines.send(value);
            }
        }
    });
    let next_line = |what: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(left)
                .expect("the expected log line never came");
            if what(&line) {
                return line;
            }
        }
    };

    let serving = next_line(&|line| line["fields"]["message"] == "serving issues");
    let address: std::net::SocketAddr = serving["fields"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(
            b"GET /issues/docs/no-such-id HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    let answered = next_line(&|line| line["fields"]["message"] == "request answered");
    assert_eq!(answered["level"], "INFO", "{answered}");
    assert_eq!(answered["fields"]["status"], 404, "{answered}");
    assert!(answered["fields"]["latency_us"].is_u64(), "{answered}");
    assert_eq!(answered["span"]["method"], "GET", "{answered}");
    assert_eq!(
        answered["span"]["route"], "/{collection}/docs/{id}",
        "{answered}"
    );
    assert!(!answered.to_string().contains("no-such-id"), "{answered}");

    let status = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Waits for the exit on a thread of its own, so that the wait can have a bound.
    let pid = child.0.id();
    let (exited, exit) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.0.wait();
        let _ = exited.send(status);
        drop(child);
    });
    let Ok(exit) = exit.recv_timeout(Duration::from_secs(60)) else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("the server did not stop on SIGINT");
    };
    let exit = exit.unwrap();
    assert!(exit.success(), "{exit}");
}

/// A child process, killed if a failed assertion leaves it running.
pub(crate) struct Running(pub(crate) std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
