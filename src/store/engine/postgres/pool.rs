//! A small pool of connections: at most `size`, made on demand, each with its prepared
//! statements; a checkout waits up to a timeout, then fails with
//! [`StoreError::PoolExhausted`]. A connection that broke is dropped, not returned.
//!
//! TLS follows the URL's `sslmode`: `disable` is plain; `prefer` (the default) tries TLS and, when
//! the server does not offer it or its certificate is not trusted, plain; `require` needs TLS with
//! a trusted certificate (as libpq's `verify-full`: the host name is checked). Trusted are Mozilla's
//! roots (`webpki-roots`) and the certificates in the file named by `PGSSLROOTCERT`, as for libpq
//! (the client's URL parser knows no `sslrootcert`).

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use postgres::config::SslMode;
use postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::db;
use crate::store::error::BackendError;
use crate::store::{Durability, StoreError};

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
    /// When it was last given back to the pool.
    returned: Instant,
}

impl Conn {
    /// `sql` prepared on this connection, once.
    pub(crate) fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).map_err(db)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Prepares every statement named, then hands out the client and the statements, for a
    /// transaction.
    pub(crate) fn prepared<const N: usize>(
        &mut self,
        sql: [&'static str; N],
    ) -> Result<(&mut Client, [Statement; N]), StoreError> {
        let mut statements = Vec::with_capacity(N);
        for sql in sql {
            statements.push(self.statement(sql)?);
        }
        let statements: [Statement; N] =
            statements.try_into().map_err(|_| StoreError::Unsupported {
                operation: "preparing statements",
                engine: "PostgreSQL",
            })?;
        Ok((&mut self.client, statements))
    }
}

/// How to make connections.
pub(crate) struct Connector {
    pub(crate) config: postgres::Config,
    /// Run on every new connection: the search path, the session's durability.
    pub(crate) setup: String,
    /// The file of extra trusted root certificates (`PGSSLROOTCERT`).
    root_cert: Option<PathBuf>,
    /// The TLS configuration, made at the first connection that needs it.
    tls: Mutex<Option<MakeRustlsConnect>>,
}

/// The environment variable naming a PEM file of root certificates to trust besides Mozilla's,
/// as for libpq.
pub(crate) const ROOT_CERT_VAR: &str = "PGSSLROOTCERT";

/// The TLS configuration could not be made: the root certificate file is unreadable or holds no
/// certificate.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the root certificates in {path} ({ROOT_CERT_VAR}): {reason}")]
struct RootCertError {
    path: PathBuf,
    reason: String,
}

impl Connector {
    pub(crate) fn new(
        config: postgres::Config,
        schema: Option<&str>,
        durability: Durability,
    ) -> Self {
        // The commit relies on READ COMMITTED (a statement sees what committed before it, so a
        // write's failure clear sees the failure a migration recorded while it waited for the
        // head's row lock), whatever the role's or database's default.
        let mut setup = String::from("SET default_transaction_isolation TO 'read committed';");
        if let Some(schema) = schema {
            let _ = write!(setup, "SET search_path TO {};", quote(schema));
        }
        match durability {
            Durability::Eventual => setup.push_str("SET synchronous_commit TO off;"),
            // A commit returns once its WAL is flushed, even where the role's or database's
            // default is `off` (a stronger default, waiting for standbys, is kept).
            Durability::Immediate => setup.push_str(
                "SELECT set_config('synchronous_commit', 'on', false)
                 WHERE current_setting('synchronous_commit') = 'off';",
            ),
        }
        let root_cert = std::env::var_os(ROOT_CERT_VAR)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        Self {
            config,
            setup,
            root_cert,
            tls: Mutex::new(None),
        }
    }

    /// Trusts the roots in `path` (a URL's `sslrootcert`, see [`parse_url`]) rather than those of
    /// `PGSSLROOTCERT`; `None` changes nothing.
    pub(crate) fn root_cert(mut self, path: Option<PathBuf>) -> Self {
        if path.is_some() {
            self.root_cert = path;
        }
        self
    }

    /// `user@host:port/database`, never the password.
    pub(crate) fn target(&self) -> String {
        target(&self.config)
    }

    fn connect_error(&self, source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Connect {
            target: self.target(),
            source: BackendError::new(source),
        }
    }

    /// The TLS connector: Mozilla's roots and those of `PGSSLROOTCERT`.
    fn tls(&self) -> Result<MakeRustlsConnect, StoreError> {
        let mut tls = self.tls.lock();
        if let Some(tls) = &*tls {
            return Ok(tls.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.root_cert {
            add_root_certs(&mut roots, path).map_err(|error| self.connect_error(error))?;
        }
        // ring, not aws-lc (which needs cmake to build); rustls deprecates ring's provider for
        // lacking post-quantum key exchange, which PostgreSQL servers do not offer yet anyway.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| self.connect_error(error))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let made = MakeRustlsConnect::new(config);
        *tls = Some(made.clone());
        Ok(made)
    }

    /// A new connection, encrypted as `sslmode` says, with the session set up.
    pub(crate) fn connect(&self) -> Result<Conn, StoreError> {
        let client = match self.config.get_ssl_mode() {
            SslMode::Disable => self.config.connect(NoTls),
            SslMode::Prefer => match self.config.connect(self.tls()?) {
                Err(error) if is_tls_failure(&error) => {
                    tracing::warn!(
                        target = %self.target(),
                        error = %error,
                        "TLS failed with sslmode=prefer: connecting without it (sslmode=require refuses this)"
                    );
                    let mut plain = self.config.clone();
                    plain.ssl_mode(SslMode::Disable);
                    plain.connect(NoTls)
                }
                other => other,
            },
            // `require`, and any stricter mode a later client may parse.
            _ => self.config.connect(self.tls()?),
        };
        let mut client = client.map_err(|error| self.connect_error(error))?;
        client.batch_execute(&self.setup).map_err(db)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            returned: Instant::now(),
        })
    }
}

/// A database URL parsed by the client, less what the client's parser does not know, which is
/// taken here: `sslrootcert=FILE` (the roots to trust besides Mozilla's, returned), and
/// `sslmode=verify-ca` or `verify-full` (read as `require`, which checks the certificate and the
/// host name). Only the URL form (`postgres://…?…`) is rewritten; the `key=value` form goes to
/// the client as it is.
///
/// # Errors
///
/// [`StoreError::InvalidUrl`] when the client refuses the URL or a parameter is badly encoded.
pub(crate) fn parse_url(url: &str) -> Result<(postgres::Config, Option<PathBuf>), StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl { reason };
    let mut root_cert = None;
    let url = match url.split_once('?') {
        Some((base, query))
            if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
        {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let (key, value) = (
                    percent_decode(key).map_err(invalid)?,
                    percent_decode(value).map_err(invalid)?,
                );
                match (key.as_str(), value.as_str()) {
                    ("sslrootcert", path) => root_cert = Some(PathBuf::from(path)),
                    ("sslmode", "verify-ca" | "verify-full") => kept.push("sslmode=require"),
                    _ => kept.push(pair),
                }
            }
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        _ => url.to_owned(),
    };
    let config = url
        .parse()
        .map_err(|error: postgres::Error| invalid(error.to_string()))?;
    Ok((config, root_cert))
}

/// A database URL with its password replaced by `***`, for a `Debug` or a log: in the user
/// information (`postgres://user:password@…`), a `password=` query parameter, or a
/// `password=` pair of the `key=value` form.
pub(crate) fn redact_url(url: &str) -> String {
    const HIDDEN: &str = "***";
    let mut out = String::with_capacity(url.len());
    let rest = if let Some(at) = url.find("://") {
        let (scheme, after) = url.split_at(at + 3);
        out.push_str(scheme);
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(HIDDEN);
                    }
                    None => out.push_str(userinfo),
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest
    } else {
        url
    };
    // `password=` as a query parameter or a `key=value` pair: up to `&`, a space, or the end
    // (a quoted value up to its closing quote).
    let mut rest = rest;
    while let Some(found) = rest.find("password=") {
        let (before, after) = rest.split_at(found + "password=".len());
        out.push_str(before);
        out.push_str(HIDDEN);
        let end = if let Some(quoted) = after.strip_prefix('\'') {
            quoted.find('\'').map_or(after.len(), |close| close + 2)
        } else {
            after.find(['&', ' ']).unwrap_or(after.len())
        };
        rest = after.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// A URL query's key or value, `%XX` decoded.
fn percent_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in URL parameter {text:?}"))?;
            bytes.push(hex);
            rest = tail.get(2..).unwrap_or_default();
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("URL parameter {text:?} is not UTF-8"))
}

/// Adds the certificates of a PEM file to `roots`.
fn add_root_certs(roots: &mut rustls::RootCertStore, path: &PathBuf) -> Result<(), RootCertError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let failed = |reason: String| RootCertError {
        path: path.clone(),
        reason,
    };
    let mut added = 0_usize;
    for cert in CertificateDer::pem_file_iter(path).map_err(|error| failed(error.to_string()))? {
        let cert = cert.map_err(|error| failed(error.to_string()))?;
        roots.add(cert).map_err(|error| failed(error.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(failed("the file holds no PEM certificate".to_owned()));
    }
    Ok(())
}

/// Whether connecting failed in the TLS handshake (not in reaching the server or logging in).
fn is_tls_failure(error: &postgres::Error) -> bool {
    error.code().is_none()
        && error
            .to_string()
            .starts_with("error performing TLS handshake")
}

/// `user@host:port/database` of a configuration, without its password.
pub(crate) fn target(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{dbname}")
}

/// An identifier quoted for SQL.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The pool.
pub(crate) struct Pool {
    connector: Connector,
    size: usize,
    checkout: Duration,
    /// An idle connection unused for longer is pinged before it is handed out.
    validate_after: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Conn>,
    /// Connections made and not dropped, idle or checked out.
    open: usize,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.connector.target())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(connector: Connector, size: usize, checkout: Duration) -> Self {
        Self {
            connector,
            size: size.max(1),
            checkout,
            validate_after: VALIDATE_AFTER,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    /// A connection: an idle one that is still open, a new one while fewer than `size` are
    /// open, or the first to come back within the checkout timeout.
    ///
    /// An idle connection unused for more than [`VALIDATE_AFTER`] is pinged first (one round
    /// trip), and dropped if that fails, so that a store left alone while the server restarted
    /// does not fail its next operations. One used more recently is handed out unchecked, as
    /// pinging every checkout would cost a round trip per operation: if the server ended it
    /// meanwhile, the statement fails with [`StoreError::ConnectionLost`] and the connection
    /// (and every idle one with it) is dropped when it comes back.
    pub(crate) fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let deadline = Instant::now() + self.checkout;
        let mut state = self.state.lock();
        loop {
            if let Some(mut conn) = state.idle.pop() {
                drop(state);
                if self.alive(&mut conn) {
                    return Ok(Pooled {
                        conn: Some(conn),
                        pool: self,
                    });
                }
                tracing::debug!(target = %self.connector.target(), "dropping a pooled connection the server closed");
                drop(conn);
                state = self.state.lock();
                state.open -= 1;
                continue;
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.connector.connect() {
                    Ok(conn) => Ok(Pooled {
                        conn: Some(conn),
                        pool: self,
                    }),
                    Err(error) => {
                        self.state.lock().open -= 1;
                        self.freed.notify_one();
                        Err(error)
                    }
                };
            }
            if self.freed.wait_until(&mut state, deadline).timed_out() {
                return Err(StoreError::PoolExhausted {
                    size: self.size,
                    waited: self.checkout,
                });
            }
        }
    }

    /// Takes a connection back; one that broke is dropped, and so are the idle ones, since a
    /// server that restarted closed them all.
    fn put(&self, mut conn: Conn) {
        conn.returned = Instant::now();
        let mut state = self.state.lock();
        let broken = if conn.client.is_closed() {
            let mut broken = std::mem::take(&mut state.idle);
            state.open -= 1 + broken.len();
            broken.push(conn);
            broken
        } else {
            state.idle.push(conn);
            Vec::new()
        };
        drop(state);
        self.freed.notify_all();
        drop(broken);
    }
}

/// How long an idle connection goes unchecked: as a busy store reuses its connections sooner,
/// it pings none, while a store that was left alone checks each connection once.
const VALIDATE_AFTER: Duration = Duration::from_millis(500);

/// How long a ping of an idle connection may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

impl Pool {
    /// Whether an idle connection can be handed out: not closed, and answering a ping if it
    /// was idle for long.
    fn alive(&self, conn: &mut Conn) -> bool {
        if conn.client.is_closed() {
            return false;
        }
        if conn.returned.elapsed() < self.validate_after {
            return true;
        }
        conn.client
            .is_valid(PING_TIMEOUT.min(self.checkout.max(Duration::from_secs(1))))
            .is_ok()
    }
}

impl Drop for Pool {
    /// Closes the idle connections on a thread of its own (see [`off_runtime`]).
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state.get_mut().idle);
        if idle.is_empty() {
            return;
        }
        if let Err(error) = off_runtime(move || drop(idle)) {
            // The connections were closed here, with the thread's closure.
            tracing::warn!(%error, "could not start a thread to close the pool's connections");
        }
    }
}

/// Runs `f` on a thread of its own and waits for it. A connection blocks on a small runtime of
/// its own, which panics on a thread that drives an async runtime: what may run there (a store
/// dropped inside `block_on` or on a tokio worker, closing its connections or dropping a
/// temporary schema) goes through this.
///
/// # Errors
///
/// The thread could not be started; `f` was dropped unrun.
pub(crate) fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> std::io::Result<R> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("revolve-pg".to_owned())
            .spawn_scoped(scope, f)?;
        Ok(thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// A checked-out connection, back in the pool when dropped.
pub(crate) struct Pooled<'a> {
    conn: Option<Conn>,
    pool: &'a Pool,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Only `drop` takes it out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_never_names_the_password() {
        let config: postgres::Config = "postgres://ann:s3cret@db.example:6543/shop"
            .parse()
            .unwrap();
        let target = target(&config);
        assert_eq!(target, "ann@db.example:6543/shop");
        assert!(!target.contains("s3cret"));
    }

    #[test]
    fn a_url_may_name_root_certificates_and_verify_modes() {
        let (config, root) = parse_url(
            "postgres://ann:pw@db.example/shop?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(root, Some(PathBuf::from("/etc/ca dir/root.pem")));
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(target(&config), "ann@db.example:5432/shop");
        let (config, root) =
            parse_url("postgresql://ann@db.example/shop?sslmode=verify-ca").unwrap();
        assert_eq!((config.get_ssl_mode(), root), (SslMode::Require, None));
        let (config, root) =
            parse_url("postgres://ann@db.example/shop?sslrootcert=ca.pem").unwrap();
        assert_eq!(
            (config.get_ssl_mode(), root),
            (SslMode::Prefer, Some(PathBuf::from("ca.pem")))
        );
        let (config, root) = parse_url("host=db.example user=ann sslmode=disable").unwrap();
        assert_eq!((config.get_ssl_mode(), root), (SslMode::Disable, None));
        for bad in [
            "postgres://ann@db.example/shop?sslmode=sometimes",
            "postgres://ann@db.example/shop?sslrootcert=%zz",
            "postgres://ann@db.example/shop?nonsense=1",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_redacted_url_has_no_password() {
        for (url, redacted) in [
            (
                "postgres://ann:s3cret@db.example:6543/shop?sslmode=require",
                "postgres://ann:***@db.example:6543/shop?sslmode=require",
            ),
            (
                "postgresql://ann@db.example/shop?password=s3cret&application_name=x",
                "postgresql://ann@db.example/shop?password=***&application_name=x",
            ),
            (
                "host=db.example password='s3 cret' user=ann",
                "host=db.example password=*** user=ann",
            ),
            (
                "host=db.example password=s3cret",
                "host=db.example password=***",
            ),
            ("postgres://db.example/shop", "postgres://db.example/shop"),
        ] {
            assert_eq!(redact_url(url), redacted);
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }

    /// The test server (see `test_url`), its connections named for this module.
    fn server() -> Option<postgres::Config> {
        let mut config: postgres::Config = super::super::test_url()?.parse().unwrap();
        config.application_name("revolve-pool-test");
        Some(config)
    }

    fn pool(config: postgres::Config, size: usize, checkout: Duration) -> Pool {
        Pool::new(
            Connector::new(config, None, Durability::Immediate),
            size,
            checkout,
        )
    }

    fn backend_pid(conn: &mut Conn) -> Result<i32, StoreError> {
        Ok(conn
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(db)?
            .get(0))
    }

    fn terminate(config: &postgres::Config, pid: i32) {
        let mut admin = config.connect(NoTls).unwrap();
        let ended: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap()
            .get(0);
        assert!(ended);
        // pg_terminate_backend only signals: wait until the backend is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
        {
            assert!(Instant::now() < deadline, "backend {pid} did not end");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_checkout_beyond_the_size_times_out_naming_size_and_wait() {
        let Some(config) = server() else { return };
        let pool = pool(config, 1, Duration::from_millis(50));
        let held = pool.get().unwrap();
        let started = Instant::now();
        let error = pool.get().err().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(
            matches!(error, StoreError::PoolExhausted { size: 1, waited } if waited == Duration::from_millis(50)),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains('1') && message.contains("50ms"),
            "{message}"
        );
        drop(held);
        // Returned, it is handed out again.
        pool.get().unwrap();
    }

    #[test]
    fn a_connection_the_server_ended_is_not_handed_out_again() {
        let Some(config) = server() else { return };
        let mut pool = pool(config.clone(), 1, Duration::from_secs(5));
        // As if the connection had been idle for long.
        pool.validate_after = Duration::ZERO;
        let first = backend_pid(&mut pool.get().unwrap()).unwrap();
        terminate(&config, first);
        // The idle connection fails its ping at checkout; the statement runs on a new one.
        let second = backend_pid(&mut pool.get().unwrap()).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn a_connection_that_broke_under_a_statement_is_dropped() {
        let Some(config) = server() else { return };
        let pool = pool(config.clone(), 2, Duration::from_secs(5));
        let mut conn = pool.get().unwrap();
        let mut other = pool.get().unwrap();
        let first = backend_pid(&mut conn).unwrap();
        backend_pid(&mut other).unwrap();
        drop(other);
        // Ended while checked out: the next statement on it fails, typed.
        terminate(&config, first);
        let error = backend_pid(&mut conn).err().unwrap();
        assert!(
            matches!(error, StoreError::ConnectionLost { .. }),
            "{error:?}"
        );
        drop(conn);
        let again = backend_pid(&mut pool.get().unwrap()).unwrap();
        assert_ne!(first, again);
    }

    #[test]
    fn a_pool_dropped_inside_an_async_runtime_closes_its_connections() {
        let Some(config) = server() else { return };
        let pool = pool(config, 2, Duration::from_secs(5));
        {
            let mut a = pool.get().unwrap();
            let mut b = pool.get().unwrap();
            backend_pid(&mut a).unwrap();
            backend_pid(&mut b).unwrap();
        }
        assert_eq!(pool.state.lock().idle.len(), 2);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async move { drop(pool) });
    }
}
