//! Building one of the package's examples from a test, shared by the test crates that run one
//! (`#[path]`-included by `tests/http/main.rs` and `tests/app_cli.rs`).
//!
//! Cargo gives tests the path of the package's binaries (`CARGO_BIN_EXE_…`) but not of its
//! examples, and `cargo test --test NAME` does not build examples at all. So the test builds the
//! example itself with the cargo that runs it (`env!("CARGO")`), in the test's own target
//! directory and profile (read from the test executable's path, `<target>/<profile>/deps/…`) and
//! with the test crate's features among `http`, `cli` and `postgres`, and takes the executable's
//! path from cargo's JSON messages: up to date after a change, and no fixed path under `target/`.
//! Cargo releases its build lock before it runs tests. Every test crate asks for the same features and
//! profile, so the example is built once for all of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The executable of the example `name`, built (or found up to date) by cargo.
pub(crate) fn build(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a profile directory");
    let features: Vec<&str> = [
        ("http", cfg!(feature = "http")),
        ("cli", cfg!(feature = "cli")),
        ("postgres", cfg!(feature = "postgres")),
    ]
    .into_iter()
    .filter_map(|(feature, on)| on.then_some(feature))
    .collect();

    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--example", name, "--message-format", "json"])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .args(["--features", &features.join(",")])
        .arg("--target-dir")
        .arg(target_dir)
        .stderr(Stdio::inherit());
    match profile {
        "debug" => {}
        "release" => {
            cargo.arg("--release");
        }
        other => {
            cargo.args(["--profile", other]);
        }
    }
    let output = cargo.output().expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed"
    );
    String::from_utf8(output.stdout)
        .expect("cargo's messages are UTF-8")
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["name"] == name
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo names the executable of the example {name}"))
}
