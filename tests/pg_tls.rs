//! TLS on the PostgreSQL engine, on a private server of the test's own with a certificate from a
//! test authority: `sslmode=require` connects when `PGSSLROOTCERT` trusts the authority and is
//! refused when it does not; `prefer` (the default) uses TLS when it can and goes on without it
//! when the certificate is not trusted; `disable` never asks. The same private server is also
//! restarted under a store, which goes on.
//!
//! The server refuses the `revolve` role without TLS (`hostssl` only) and takes the role `plain`
//! only without it, so which one connected shows whether TLS was used. The tests are in their own
//! binary and take turns, as one sets `PGSSLROOTCERT` for the process.
//!
//! It needs PostgreSQL's server binaries (`initdb`, `pg_ctl`, as `scripts/with-postgres` finds
//! them); without them it is skipped with one printed line, except under `CI=true`, where it
//! fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use revolve::{Store, StoreError};

/// Where PostgreSQL's server binaries are: 15 first, then the newest, then PATH.
fn bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|dir| {
        let version: u32 = dir
            .parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse().ok())
            .unwrap_or(0);
        (version != 15, std::cmp::Reverse(version))
    });
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().find(|dir| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A private PostgreSQL with TLS, stopped and removed when dropped.
struct TlsServer {
    bindir: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    /// A command run as the server's user (`postgres` when the test runs as root).
    fn command(&self, program: &str) -> Command {
        server_command(&self.bindir, program, self.as_postgres)
    }

    /// Initialises and starts the server with `certificate` and `key` (PEM).
    fn start(bindir: PathBuf, certificate: &str, key: &str) -> Self {
        let as_postgres = is_root();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).unwrap();
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path()));
        }
        run(server_command(&bindir, "initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "revolve",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=trust",
                "--no-sync",
            ]));
        // The role that may connect only without TLS; single-user mode needs no client.
        let mut single = server_command(&bindir, "postgres", as_postgres)
            .arg("--single")
            .arg("-D")
            .arg(&data)
            .arg("postgres")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = single.stdin.take().unwrap();
            stdin
                .write_all(b"CREATE ROLE plain LOGIN SUPERUSER\n")
                .unwrap();
        }
        let out = single.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!said.contains("ERROR") && !said.contains("FATAL"), "{said}");
        for (name, text) in [
            ("server.crt", certificate),
            ("server.key", key),
            (
                "pg_hba.conf",
                "local all all trust\n\
                 hostssl all revolve 127.0.0.1/32 trust\n\
                 hostnossl all plain 127.0.0.1/32 trust\n",
            ),
        ] {
            let path = data.join(name);
            std::fs::write(&path, text).unwrap();
            if as_postgres {
                run(Command::new("chown").arg("postgres:").arg(&path));
            }
            run(Command::new("chmod").arg("600").arg(&path));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c fsync=off",
            sock.display()
        );
        let server = Self {
            bindir,
            data,
            port,
            as_postgres,
            _dir: dir,
        };
        let log = server.data.parent().unwrap().join("server.log");
        let started = server
            .command("pg_ctl")
            .arg("-D")
            .arg(&server.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            started.success(),
            "the TLS server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        server
    }

    fn url(&self, user: &str, parameters: &str) -> String {
        format!(
            "postgres://{user}@localhost:{}/postgres?{parameters}",
            self.port
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

fn server_command(bindir: &Path, program: &str, as_postgres: bool) -> Command {
    let program = bindir.join(program);
    let mut command = if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir("/");
    command
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test authority and a certificate it issued for `localhost` (not for 127.0.0.1): (authority
/// PEM, certificate PEM, key PEM).
fn certificates() -> (String, String, String) {
    let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(rcgen::DnType::CommonName, "revolve test authority");
    let authority_key = rcgen::KeyPair::generate().unwrap();
    let authority = authority.self_signed(&authority_key).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf
        .signed_by(&leaf_key, &authority, &authority_key)
        .unwrap();
    (authority.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn opens(url: &str) -> Result<(), StoreError> {
    Store::builder().url(url).temporary(true).open().map(drop)
}

fn connect_error(result: Result<(), StoreError>) -> String {
    match result {
        Err(error @ StoreError::Connect { .. }) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

/// The tests take turns: one changes the process's environment.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A TLS server and a directory with `authority.pem` (its authority) and `stranger.pem`
/// (another); `None`, with one printed line, without PostgreSQL's server binaries, outside CI.
fn tls_server() -> Option<(TlsServer, tempfile::TempDir)> {
    let Some(bindir) = bindir() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL's server binaries are missing: under CI=true the TLS test must run"
        );
        eprintln!("skipped: no PostgreSQL server binaries (initdb, pg_ctl)");
        return None;
    };
    let (authority, certificate, key) = certificates();
    let (stranger, _, _) = certificates();
    let server = TlsServer::start(bindir, &certificate, &key);
    let trust = tempfile::tempdir().unwrap();
    std::fs::write(trust.path().join("authority.pem"), authority).unwrap();
    std::fs::write(trust.path().join("stranger.pem"), stranger).unwrap();
    Some((server, trust))
}

#[test]
fn sslmode_require_prefer_and_disable() {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((server, trust)) = tls_server() else {
        return;
    };
    let trusted = trust.path().join("authority.pem");
    let untrusted = trust.path().join("stranger.pem");

    // The authority trusted: TLS, with the host name checked.
    std::env::set_var("PGSSLROOTCERT", &trusted);
    opens(&server.url("revolve", "sslmode=require")).unwrap();
    // `prefer` (the default) used TLS: `revolve` is refused without it...
    opens(&server.url("revolve", "")).unwrap();
    let refused = connect_error(opens(&server.url("revolve", "sslmode=disable")));
    assert!(refused.contains("no encryption"), "{refused}");
    // ... and `plain` is refused with it.
    let refused = connect_error(opens(&server.url("plain", "sslmode=require")));
    assert!(refused.contains("SSL encryption"), "{refused}");
    // A host name the certificate does not name: the same server by its address.
    let wrong_name = server
        .url("revolve", "sslmode=require")
        .replace("localhost", "127.0.0.1");
    let refused = connect_error(opens(&wrong_name));
    assert!(refused.contains("TLS"), "{refused}");

    // Not trusted: `require` refuses, `prefer` goes on without TLS.
    std::env::set_var("PGSSLROOTCERT", &untrusted);
    let refused = connect_error(opens(&server.url("revolve", "sslmode=require")));
    assert!(refused.contains("TLS"), "{refused}");
    opens(&server.url("plain", "sslmode=prefer")).unwrap();
    connect_error(opens(&server.url("revolve", "sslmode=prefer")));

    // An unreadable root certificate file is a clear connect error.
    std::env::set_var("PGSSLROOTCERT", trust.path().join("missing.pem"));
    let refused = connect_error(opens(&server.url("revolve", "sslmode=require")));
    assert!(refused.contains("missing.pem"), "{refused}");
    std::env::remove_var("PGSSLROOTCERT");
}

#[test]
fn sslrootcert_and_verify_full_in_the_url() {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((server, trust)) = tls_server() else {
        return;
    };
    let root = |name: &str| {
        let path = trust.path().join(name);
        let path = path
            .to_str()
            .unwrap()
            .replace('%', "%25")
            .replace(' ', "%20");
        format!("sslrootcert={path}")
    };
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = server.url(
            "revolve",
            &format!("sslmode={mode}&{}", root("authority.pem")),
        );
        opens(&url).unwrap();
        let url = server.url(
            "revolve",
            &format!("sslmode={mode}&{}", root("stranger.pem")),
        );
        let refused = connect_error(opens(&url));
        assert!(refused.contains("TLS"), "{refused}");
    }
}

#[derive(
    Debug,
    Clone,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    revolve::Schema,
)]
#[schema(collection = "notes", version = 1)]
struct Note {
    text: String,
}

#[test]
fn a_store_goes_on_after_the_server_restarts() {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((server, _trust)) = tls_server() else {
        return;
    };
    let store = Store::builder()
        .url(server.url("plain", "sslmode=disable"))
        .schema("restart")
        .pool_size(3)
        .open()
        .unwrap();
    let notes = store.collection::<Note>().unwrap();
    let note = Note {
        text: "kept".to_owned(),
    };
    let id = notes.insert(&note).unwrap();
    let restarted = server
        .command("pg_ctl")
        .arg("-D")
        .arg(&server.data)
        .args(["-m", "fast", "-w", "-t", "60", "restart"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(restarted.success());
    // Every connection of the pool was closed by the restart: at most one operation sees it.
    let mut lost = 0;
    let found = loop {
        match notes.get(id.as_str()) {
            Ok(found) => break found,
            Err(StoreError::ConnectionLost { .. }) if lost == 0 => lost += 1,
            Err(error) => panic!("after {lost} lost: {error:?}"),
        }
    };
    assert_eq!(found.unwrap().data, note);
    notes.insert(&note).unwrap();
    assert_eq!(notes.len().unwrap(), 2);
}
