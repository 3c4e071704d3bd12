//! The example server's startup: a port in use fails before a store is seeded, and a store that
//! cannot be opened is reported with its cause.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The example server, built if need be in this test's profile and features (see the same helper
/// in `tests/it/two_builds.rs`: Cargo does not build examples for `cargo test --test http`).
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/http-<hash>
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let features = if cfg!(feature = "cli") {
            "http,cli"
        } else {
            "http"
        };
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--example", "server", "--features"])
            .arg(features)
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cargo.arg("--release");
            }
            other => {
                cargo.args(["--profile", other]);
            }
        }
        let status = cargo.status().unwrap();
        assert!(status.success(), "building the example failed: {status}");
        let binary = profile_dir
            .join("examples")
            .join(format!("server{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
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
