//! The upgrade path across two separate builds: `examples/deploy_v1.rs` writes, `deploy_v2.rs`
//! reads its documents upgraded and writes version 2, and then the old build is refused.
//!
//! Sled only, not written against the engine fixture: the example binaries open the store by the
//! directory given on their command line, as a deployed program does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use revolve::{Revision, Store};

/// The directory the example binaries of this test's profile are in, built if need be.
///
/// Cargo builds examples for `cargo test` but not for `cargo test --test it` or nextest, and a
/// binary left from an earlier build may be stale: ask Cargo to bring them up to date (it does
/// nothing when they are), in the profile this test binary was built in.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/it-<hash>
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "--example",
                "deploy_v1",
                "--example",
                "deploy_v2",
            ])
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
        assert!(status.success(), "building the examples failed: {status}");
        let dir = profile_dir.join("examples");
        for name in ["deploy_v1", "deploy_v2"] {
            let binary = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            assert!(binary.is_file(), "{} was not built", binary.display());
        }
        dir
    })
}

/// What one run of an example printed, and whether it succeeded.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

fn run(example: &str, db: &Path, args: &[&str]) -> Run {
    let binary = examples_dir().join(format!("{example}{}", std::env::consts::EXE_SUFFIX));
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(binary).arg(db).args(args).output().unwrap();
    Run {
        success: status.success(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// Runs an example that must succeed, and returns its output lines.
fn run_ok(example: &str, db: &Path, args: &[&str]) -> Vec<String> {
    let run = run(example, db, args);
    assert!(
        run.success,
        "{example} {args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
    run.lines().into_iter().map(str::to_owned).collect()
}

/// The stored payload bytes of every revision of `id`, read with this process's own library and
/// no types at all; the store is closed again before returning.
fn stored_bytes(db: &Path, id: &str) -> Vec<(Option<u32>, Vec<u8>)> {
    let store = Store::open(db).unwrap();
    let issues = store.raw_collection("issues").unwrap();
    issues
        .history(id)
        .unwrap()
        .into_iter()
        .map(|info| {
            let raw = issues.raw_revision(id, info.revision).unwrap().unwrap();
            (info.version, raw.bytes)
        })
        .collect()
}

const TOO_NEW: &str = "`issues` holds version 2, but this program knows versions up to 1";

#[test]
fn a_second_build_reads_the_first_builds_documents_and_retires_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.revolve");

    // Build 1 writes and reads its own documents.
    assert_eq!(
        run_ok("deploy_v1", &db, &["write"]),
        [
            "wrote issue-1 revision 1 version 1",
            "wrote issue-2 revision 1 version 1"
        ]
    );
    assert_eq!(
        run_ok("deploy_v1", &db, &["read", "issue-1", "issue-2"]),
        [
            r#"issue-1 revision 1 stored_version 1 title="Crash on start" status=Open"#,
            r#"issue-2 revision 1 stored_version 1 title="Typo in the README" status=Closed"#,
        ]
    );
    let written_by_v1 = stored_bytes(&db, "issue-1");
    assert_eq!(written_by_v1.len(), 1);
    assert_eq!(written_by_v1[0].0, Some(1));

    // Build 2 reads them upgraded by its step, without writing anything.
    let upgraded = [
        r#"issue-1 revision 1 stored_version 1 title="Crash on start" priority=High status=Open"#,
        r#"issue-2 revision 1 stored_version 1 title="Typo in the README" priority=Normal status=Closed"#,
    ];
    assert_eq!(
        run_ok("deploy_v2", &db, &["read", "issue-1", "issue-2"]),
        upgraded
    );
    assert_eq!(run_ok("deploy_v2", &db, &["read"]), upgraded);
    assert_eq!(stored_bytes(&db, "issue-1"), written_by_v1);

    // Build 2 updates one to version 2; the version 1 bytes stay in its history.
    assert_eq!(
        run_ok("deploy_v2", &db, &["update", "issue-1"]),
        ["updated issue-1 revision 2 version 2"]
    );
    let after_update = stored_bytes(&db, "issue-1");
    assert_eq!(after_update.len(), 2);
    assert_eq!(after_update[0], written_by_v1[0]);
    assert_eq!(after_update[1].0, Some(2));
    assert_eq!(
        run_ok("deploy_v2", &db, &["history", "issue-1"]),
        [
            r#"history issue-1 revision 1 version 1 payload {"description":"segfault when the config is empty","status":"open","title":"Crash on start"}"#,
            r#"history issue-1 revision 2 version 2 payload {"description":"segfault when the config is empty","priority":"high","status":"closed","title":"Crash on start"}"#,
        ]
    );
    assert_eq!(
        run_ok("deploy_v2", &db, &["write"]),
        ["wrote issue-3 revision 1 version 2"]
    );
    assert_eq!(
        run_ok("deploy_v2", &db, &["read"]),
        [
            r#"issue-1 revision 2 stored_version 2 title="Crash on start" priority=High status=Closed"#,
            upgraded[1],
            r#"issue-3 revision 1 stored_version 2 title="Dark mode" priority=Low status=Open"#,
        ]
    );

    // Build 1 still reads the document left at version 1, and refuses the others clearly.
    let read = run("deploy_v1", &db, &["read", "issue-1", "issue-2", "issue-3"]);
    assert!(!read.success, "{}", read.stdout);
    assert_eq!(
        read.lines(),
        [r#"issue-2 revision 1 stored_version 1 title="Typo in the README" status=Closed"#]
    );
    for id in ["issue-1", "issue-3"] {
        let message = format!("cannot read {id}: {TOO_NEW}; run a newer build");
        assert!(read.stderr.contains(&message), "{}", read.stderr);
    }
    assert!(
        !read.stderr.contains("cannot read issue-2"),
        "{}",
        read.stderr
    );

    // Build 1 may not write any more, and wrote nothing trying.
    let issue_2_before = stored_bytes(&db, "issue-2");
    let write = run("deploy_v1", &db, &["write"]);
    assert!(!write.success, "{}", write.stdout);
    assert!(write.stdout.is_empty(), "{}", write.stdout);
    assert!(write.stderr.contains(TOO_NEW), "{}", write.stderr);
    assert_eq!(stored_bytes(&db, "issue-2"), issue_2_before);
    assert_eq!(stored_bytes(&db, "issue-1"), after_update);

    let store = Store::open(&db).unwrap();
    let issues = store.raw_collection("issues").unwrap();
    assert_eq!(
        issues.count_by_version().unwrap(),
        std::collections::BTreeMap::from([(1, 1), (2, 2)])
    );
    assert!(issues
        .raw_revision("issue-3", Revision::new(2).unwrap())
        .unwrap()
        .is_none());
}

#[test]
fn the_documented_commands_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.revolve");
    let first = run_ok("deploy_v1", &db, &[]);
    assert_eq!(first.len(), 4, "{first:?}");
    let second = run_ok("deploy_v2", &db, &[]);
    assert!(
        second.contains(&"updated issue-1 revision 2 version 2".to_owned()),
        "{second:?}"
    );
    let again = run("deploy_v1", &db, &["read"]);
    assert!(!again.success);
    assert!(again.stderr.contains(TOO_NEW), "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("2 issue(s) could not be read by this build"),
        "{}",
        again.stderr
    );
}
