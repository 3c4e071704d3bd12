//! An issue tracker over HTTP: last year's program stored issues as `IssueV1`; this one serves them
//! as `IssueV2`, upgraded on read, and migrates them over the wire (`POST /issues/migrate/…`).
//! On its first start it seeds 2500 version-1 issues (a few with a status the step refuses), so
//! that a migration has work to do and failures to report.
//!
//! ```sh
//! REVOLVE_TOKEN=change-me cargo run --example server --features http -- [--port 3000] [--data DIR] [--log-format json]
//! cargo run --example server --features http -- --dev    # no token: reachable from this machine only
//! cargo run --example server --features http,postgres -- --dev --data postgres://user:password@host/db
//! ```
//!
//! `--data` names the store's directory, or a PostgreSQL database (`postgres://…`, with the
//! `postgres` feature; its tables are created on first use). Ctrl-C stops the server: it finishes
//! the requests under way and closes the store.
//!
//! Without `REVOLVE_TOKEN` it refuses to start unless given `--dev`. It listens on 127.0.0.1
//! (the port is taken before the store is opened or seeded) with [`revolve::http::Server`]'s
//! limits, and logs to standard error: `RUST_LOG` filters (`info` by default: a line per request),
//! `--log-format json` writes JSON lines.

use std::error::Error;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use revolve::Store;

#[path = "common/issues.rs"]
mod issues;

use issues::{IssueV1, IssueV2};

type Issue = IssueV2;

struct Options {
    port: u16,
    data: Data,
    dev: bool,
    json_logs: bool,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        port: 3000,
        data: Data::Dir(std::env::temp_dir().join("revolve-example-server")),
        dev: false,
        json_logs: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => options.port = args.next().ok_or("--port needs a number")?.parse()?,
            "--data" => {
                options.data = Data::from(args.next().ok_or("--data needs a directory or a URL")?);
            }
            "--dev" => options.dev = true,
            "--log-format" => {
                options.json_logs = match args.next().as_deref() {
                    Some("json") => true,
                    Some("text") => false,
                    _ => return Err("--log-format needs `text` or `json`".into()),
                }
            }
            "-h" | "--help" => {
                println!("usage: server [--port N] [--data DIR|URL] [--dev] [--log-format text|json]; the token is read from REVOLVE_TOKEN, the log filter from RUST_LOG (default `info`)");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`; try --help").into()),
        }
    }
    Ok(options)
}

/// Logs to standard error, filtered by `RUST_LOG` (`info` when unset), as text or JSON lines. A
/// `RUST_LOG` that does not parse is ignored with a warning, and `info` is logged.
fn install_logger(json: bool) -> Result<(), Box<dyn Error>> {
    let builder = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into());
    let (filter, bad_filter) = match builder.from_env() {
        Ok(filter) => (filter, None),
        Err(error) => (builder.parse_lossy(""), Some(error)),
    };
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        logger.json().try_init()
    } else {
        logger.try_init()
    }
    .map_err(|error| format!("cannot install the logger: {error}"))?;
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "ignoring RUST_LOG; logging at info");
    }
    Ok(())
}

/// Where the store is: a directory, or a PostgreSQL database.
enum Data {
    Dir(PathBuf),
    Url(String),
}

impl From<String> for Data {
    fn from(argument: String) -> Self {
        if argument.starts_with("postgres://") || argument.starts_with("postgresql://") {
            Data::Url(argument)
        } else {
            Data::Dir(argument.into())
        }
    }
}

impl std::fmt::Display for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Data::Dir(path) => write!(f, "{}", path.display()),
            // Never the password: the host and the database, without the parameters.
            Data::Url(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                let rest = rest.split('?').next().unwrap_or_default();
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                write!(f, "postgres://…@{host}")
            }
        }
    }
}

impl Data {
    /// Opens the store, waiting up to `lock_timeout` for a directory another process has open.
    fn open(&self, lock_timeout: Duration) -> Result<Store, Box<dyn Error>> {
        match self {
            Data::Dir(path) => Ok(Store::builder()
                .path(path)
                .lock_timeout(lock_timeout)
                .open()?),
            #[cfg(feature = "postgres")]
            Data::Url(url) => Ok(Store::builder().url(url.as_str()).open()?),
            #[cfg(not(feature = "postgres"))]
            Data::Url(_) => Err(
                "this build has no PostgreSQL engine: build it with `--features postgres`".into(),
            ),
        }
    }
}

/// Opens the store, seeding version-1 issues the first time, as last year's program would have.
fn open(data: &Data) -> Result<Store, Box<dyn Error>> {
    let fresh = {
        let store = data.open(Duration::from_secs(2))?;
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
        eprintln!("seeded 2500 version-1 issues in {data}");
    }
    data.open(Duration::from_secs(10))
}

fn run() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    install_logger(options.json_logs)?;
    let token = std::env::var("REVOLVE_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    if token.is_none() && !options.dev {
        return Err(
            "set REVOLVE_TOKEN to a long random string, or pass --dev to serve without a token on this machine only"
                .into(),
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // The port first: a server that cannot listen must fail before it seeds a new store.
    let address = ("127.0.0.1", options.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(address))
        .map_err(|error| format!("cannot listen on 127.0.0.1:{}: {error}", options.port))?;
    let store = open(&options.data).map_err(|error| {
        format!(
            "cannot open the store in {}: {}",
            options.data,
            chain(&*error)
        )
    })?;
    let router = revolve::http::Router::new(store).collection::<Issue>()?;
    let app = match token {
        Some(token) => router.token(token),
        None => router.local_development(),
    }
    .build()?;

    tracing::info!(
        data = %options.data,
        address = %listener.local_addr()?,
        "serving issues"
    );
    runtime.block_on(
        revolve::http::Server::new(app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .serve(listener),
    )?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", chain(&*error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line: "storage engine error" alone does not say what to fix.
fn chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}
