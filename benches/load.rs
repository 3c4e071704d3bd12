//! Load over HTTP: the router from `revolve::http` serves one `issues` collection on
//! 127.0.0.1 (an ephemeral port, a temporary store, `revolve::http::Server` with its default
//! limits, as an application ships it, and a bearer token), and N client tasks, each on its own
//! keep-alive connection (hyper's HTTP/1.1 client), run a mix of
//! creates (20 %), updates with `If-Match` (30 %), reads (40 %) and list pages (10 %) for a
//! bounded time. Every acknowledged write (id → revision and body) is recorded; afterwards the
//! runtime is dropped, the store is closed and opened again from disk, and every acknowledged
//! write must be there: that revision of that id with that body, and a head no older. It prints
//! clients, ops, ops/s, p50/p99 latency per kind of op, 5xx, other failures and acknowledged
//! writes lost (which must be 0: the process exits 1 otherwise).
//!
//! ```text
//! cargo bench --bench load --features http -- --clients 8,16,32 --seconds 60
//! ```
//!
//! `--clients` takes a comma-separated list, one run on a fresh store per entry (8 by default);
//! `--seconds` is each run's length (20 by default). Clients and server share the process and
//! its cores, so latency includes waiting for a core. Not run in CI.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, HOST, IF_MATCH};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use revolve::{Revision, Store};
use serde_json::Value;

#[path = "common/dataset.rs"]
#[allow(dead_code)]
mod dataset;
use dataset::{issue, issue_v1_to_v2, IssueV2, XorShift};

type BoxError = Box<dyn Error + Send + Sync>;

const TOKEN: &str = "load-bench-token-0123456789abcdef";

/// The kinds of op, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    UpdateIf,
    Get,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::UpdateIf => "update-if",
            Op::Get => "get",
            Op::List => "list",
        }
    }
}

/// One acknowledged write: the revision the server answered and the body sent.
#[derive(Debug)]
struct Ack {
    id: String,
    revision: u64,
    body: Value,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    /// Latency of every answered op, in microseconds, by kind.
    latencies: BTreeMap<Op, Vec<u64>>,
    server_errors: u64,
    /// Answers with an unexpected status below 500, and answers that do not say what was written.
    unexpected: u64,
    /// Requests that got no answer (the connection failed); the client reconnects.
    transport_errors: u64,
    /// Reads that returned a revision older than one this client had written and been told of.
    stale_reads: u64,
    acks: Vec<Ack>,
}

struct Options {
    clients: Vec<usize>,
    seconds: u64,
}

fn options() -> Result<Options, BoxError> {
    let mut options = Options {
        clients: vec![8],
        seconds: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clients" => {
                options.clients = args
                    .next()
                    .ok_or("--clients needs a number or a list such as 8,16,32")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--seconds" => {
                options.seconds = args.next().ok_or("--seconds needs a number")?.parse()?;
            }
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: load [--clients 8,16,32] [--seconds 20]"
                )
                .into())
            }
        }
    }
    if options.clients.contains(&0) {
        return Err("--clients must be at least 1".into());
    }
    Ok(options)
}

/// One keep-alive HTTP/1.1 connection, reopened when it fails.
struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// An answer: status, `ETag` revision if any, and the body as JSON (`Null` if not JSON).
struct Answer {
    status: StatusCode,
    etag: Option<u64>,
    body: Value,
}

impl Client {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        if_match: Option<u64>,
        body: Option<&Value>,
    ) -> Result<Answer, BoxError> {
        if self.sender.is_none() {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "127.0.0.1")
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"));
        if let Some(revision) = if_match {
            request = request.header(IF_MATCH, format!("\"{revision}\""));
        }
        let body = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(body)?))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body)?;
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let etag = response
                .headers()
                .get(ETAG)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim_matches('"').parse().ok());
            let bytes = response.into_body().collect().await?.to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok::<_, BoxError>(Answer { status, etag, body })
        }
        .await;
        if answer.is_err() {
            self.sender = None;
        }
        answer
    }
}

/// The revision an answer reports: its `ETag`, which must agree with the body's `revision`.
fn revision_of(answer: &Answer) -> Option<u64> {
    let in_body = answer.body.get("revision").and_then(Value::as_u64);
    match (answer.etag, in_body) {
        (Some(etag), Some(body)) if etag == body => Some(etag),
        _ => None,
    }
}

fn new_issue(rng: &mut XorShift) -> Result<Value, BoxError> {
    let issue: IssueV2 = issue_v1_to_v2(issue(rng))?;
    Ok(serde_json::to_value(issue)?)
}

/// One client: ops until `deadline`, on its own documents for writes.
#[allow(clippy::too_many_lines)]
async fn client(addr: SocketAddr, seed: u64, deadline: Instant) -> Result<Tally, BoxError> {
    let mut rng = XorShift(seed);
    let mut client = Client { addr, sender: None };
    let mut tally = Tally::default();
    // This client's documents and the last revision it was told of.
    let mut own: Vec<(String, u64)> = Vec::new();
    while Instant::now() < deadline {
        let roll = rng.below(100);
        let op = match roll {
            _ if own.is_empty() => Op::Create,
            0..=19 => Op::Create,
            20..=49 => Op::UpdateIf,
            50..=89 => Op::Get,
            _ => Op::List,
        };
        let pick = if own.is_empty() {
            0
        } else {
            rng.below(own.len())
        };
        let started = Instant::now();
        let (answer, expected, sent) = match op {
            Op::Create => {
                let body = new_issue(&mut rng)?;
                let answer = client
                    .send(Method::POST, "/issues", None, Some(&body))
                    .await;
                (answer, StatusCode::CREATED, Some(body))
            }
            Op::UpdateIf => {
                let body = new_issue(&mut rng)?;
                let (id, revision) = &own[pick];
                let answer = client
                    .send(
                        Method::PUT,
                        &format!("/issues/docs/{id}"),
                        Some(*revision),
                        Some(&body),
                    )
                    .await;
                (answer, StatusCode::OK, Some(body))
            }
            Op::Get => {
                let (id, _) = &own[pick];
                let answer = client
                    .send(Method::GET, &format!("/issues/docs/{id}"), None, None)
                    .await;
                (answer, StatusCode::OK, None)
            }
            Op::List => {
                let (id, _) = &own[pick];
                let answer = client
                    .send(
                        Method::GET,
                        &format!("/issues?after={id}&limit=20"),
                        None,
                        None,
                    )
                    .await;
                (answer, StatusCode::OK, None)
            }
        };
        let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let Ok(answer) = answer else {
            tally.transport_errors += 1;
            continue;
        };
        tally.latencies.entry(op).or_default().push(elapsed);
        if answer.status.is_server_error() {
            tally.server_errors += 1;
            continue;
        }
        if answer.status != expected {
            tally.unexpected += 1;
            continue;
        }
        match op {
            Op::Create | Op::UpdateIf => {
                let id = answer.body.get("id").and_then(Value::as_str);
                let data = answer.body.get("data");
                let (Some(id), Some(revision), Some(body)) = (id, revision_of(&answer), sent)
                else {
                    tally.unexpected += 1;
                    continue;
                };
                if data != Some(&body) {
                    tally.unexpected += 1;
                }
                if op == Op::Create {
                    own.push((id.to_owned(), revision));
                } else {
                    own[pick].1 = revision;
                }
                tally.acks.push(Ack {
                    id: id.to_owned(),
                    revision,
                    body,
                });
            }
            Op::Get => match revision_of(&answer) {
                Some(revision) if revision >= own[pick].1 => {}
                Some(_) => tally.stale_reads += 1,
                None => tally.unexpected += 1,
            },
            Op::List => {
                if !answer.body.get("items").is_some_and(Value::is_array) {
                    tally.unexpected += 1;
                }
            }
        }
    }
    Ok(tally)
}

/// The value at quantile `q` of sorted `values`, in milliseconds.
fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    #[allow(clippy::cast_precision_loss)]
    let ms = sorted[index.min(sorted.len() - 1)] as f64 / 1000.0;
    ms
}

/// Counts acknowledged writes missing from the store at `path`, opened afresh: the revision
/// absent or with another body, or a head older than the last acknowledged revision.
fn lost_writes(path: &std::path::Path, acks: &[Ack]) -> Result<u64, BoxError> {
    let store = Store::builder()
        .path(path)
        .lock_timeout(Duration::from_secs(30))
        .open()?;
    let issues = store.collection::<IssueV2>()?;
    let present = |id: &str, revision: u64, body: &Value| -> Result<bool, BoxError> {
        let revision = Revision::new(revision).ok_or("revision 0 acknowledged")?;
        Ok(match issues.revision(id, revision)? {
            Some(document) => serde_json::to_value(&document.data)? == *body,
            None => false,
        })
    };
    // The check must be able to fail: another body, or a revision never written, is missing.
    if let Some(first) = acks.first() {
        let mut changed = first.body.clone();
        changed["title"] = Value::from("not what was written");
        if present(&first.id, first.revision, &changed)?
            || present(&first.id, first.revision + 1_000_000, &first.body)?
        {
            return Err("the check finds writes that were never made".into());
        }
    }
    let mut lost = 0;
    let mut newest_by_id: BTreeMap<&str, u64> = BTreeMap::new();
    for ack in acks {
        if !present(&ack.id, ack.revision, &ack.body)? {
            lost += 1;
        }
        let newest = newest_by_id.entry(&ack.id).or_default();
        *newest = (*newest).max(ack.revision);
    }
    for (id, newest) in newest_by_id {
        match issues.get(id)? {
            Some(head) if head.revision.get() >= newest => {}
            _ => lost += 1,
        }
    }
    Ok(lost)
}

/// One run: `clients` clients for `seconds` against a fresh store. Returns the lost count.
fn run(clients: usize, seconds: u64) -> Result<u64, BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("load.revolve");
    let runtime = tokio::runtime::Runtime::new()?;
    let (tallies, elapsed) = runtime.block_on(async {
        let store = Store::open(&path)?;
        let app = revolve::http::Router::new(store)
            .collection::<IssueV2>()?
            .token(TOKEN)
            .build()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            revolve::http::Server::new(app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .serve(listener)
                .await
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..clients)
            .map(|n| {
                let seed = 0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1).wrapping_mul(0x2545_F491);
                tokio::spawn(client(addr, seed, deadline))
            })
            .collect();
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await??);
        }
        let elapsed = started.elapsed();
        let _ = stop.send(());
        server.await??;
        Ok::<_, BoxError>((tallies, elapsed))
    })?;
    // Every task and the store with it are gone once the runtime is.
    drop(runtime);

    let mut latencies: BTreeMap<Op, Vec<u64>> = BTreeMap::new();
    let (mut server_errors, mut unexpected, mut transport, mut stale) = (0, 0, 0, 0);
    let mut acks = Vec::new();
    for tally in tallies {
        for (op, values) in tally.latencies {
            latencies.entry(op).or_default().extend(values);
        }
        server_errors += tally.server_errors;
        unexpected += tally.unexpected;
        transport += tally.transport_errors;
        stale += tally.stale_reads;
        acks.extend(tally.acks);
    }
    let lost = lost_writes(&path, &acks)?;
    let ops: usize = latencies.values().map(Vec::len).sum();
    #[allow(clippy::cast_precision_loss)]
    let rate = ops as f64 / elapsed.as_secs_f64();
    println!(
        "clients {clients}, {:.1} s: {ops} ops, {rate:.0} ops/s, 5xx {server_errors}, \
         other unexpected answers {unexpected}, no answer {transport}, stale reads {stale}, \
         acknowledged writes {}, lost {lost}",
        elapsed.as_secs_f64(),
        acks.len(),
    );
    for (op, mut values) in latencies {
        values.sort_unstable();
        println!(
            "  {:<9} {:>8} ops  p50 {:>7.2} ms  p99 {:>7.2} ms",
            op.name(),
            values.len(),
            quantile_ms(&values, 0.50),
            quantile_ms(&values, 0.99),
        );
    }
    Ok(lost)
}

fn main() -> ExitCode {
    let result = options().and_then(|options| {
        let mut lost = 0;
        for clients in options.clients {
            lost += run(clients, options.seconds)?;
        }
        Ok(lost)
    });
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(lost) => {
            eprintln!("error: {lost} acknowledged writes lost");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
