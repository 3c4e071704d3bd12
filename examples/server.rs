//! An issue tracker over HTTP: last year's program stored issues as `IssueV1`; this one serves them
//! as `IssueV2`, upgraded on read, and migrates them over the wire (`POST /issues/migrate/…`).
//! On its first start it seeds 2500 version-1 issues (a few with a status the step refuses), so
//! that a migration has work to do and failures to report.
//!
//! ```sh
//! REVOLVE_TOKEN=change-me cargo run --example server --features http -- [--port 3000] [--data DIR]
//! cargo run --example server --features http -- --dev    # no token: reachable from this machine only
//! ```
//!
//! Without `REVOLVE_TOKEN` it refuses to start unless given `--dev`. It listens on 127.0.0.1.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use revolve::Store;

#[path = "common/issues.rs"]
mod issues;

use issues::{IssueV1, IssueV2};

type Issue = IssueV2;

struct Options {
    port: u16,
    data: PathBuf,
    dev: bool,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        port: 3000,
        data: std::env::temp_dir().join("revolve-example-server"),
        dev: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => options.port = args.next().ok_or("--port needs a number")?.parse()?,
            "--data" => options.data = args.next().ok_or("--data needs a directory")?.into(),
            "--dev" => options.dev = true,
            "-h" | "--help" => {
                println!("usage: server [--port N] [--data DIR] [--dev]; the token is read from REVOLVE_TOKEN");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`; try --help").into()),
        }
    }
    Ok(options)
}

/// Opens the store, seeding version-1 issues the first time, as last year's program would have.
fn open(path: &Path) -> Result<Store, Box<dyn Error>> {
    let fresh = {
        let store = Store::open(path)?;
        if store.collection_names()?.is_empty() {
            // One in 50 has a status the step refuses: a migration reports it.
            store
                .collection::<IssueV1>()?
                .insert_many(&issues::seed())?;
            true
        } else {
            false
        }
    }; // last year's program exits here
    if fresh {
        eprintln!("seeded 2500 version-1 issues in {}", path.display());
    }
    Ok(Store::builder()
        .path(path)
        .lock_timeout(Duration::from_secs(10))
        .open()?)
}

fn run() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    let token = std::env::var("REVOLVE_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    if token.is_none() && !options.dev {
        return Err(
            "set REVOLVE_TOKEN to a long random string, or pass --dev to serve without a token on this machine only"
                .into(),
        );
    }
    let store = open(&options.data)?;
    let router = revolve::http::Router::new(store).collection::<Issue>()?;
    let app = match token {
        Some(token) => router.token(token),
        None => router.local_development(),
    }
    .build()?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
        eprintln!(
            "serving issues from {} on http://{}",
            options.data.display(),
            listener.local_addr()?
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok::<(), Box<dyn Error>>(())
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
