//! A small pool of connections: at most `size`, made on demand, each with its prepared
//! statements; a checkout waits up to a timeout, then fails with
//! [`StoreError::PoolExhausted`]. A connection that broke is dropped, not returned.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use postgres::{Client, NoTls, Statement};

use super::error::db;
use crate::store::error::BackendError;
use crate::store::{Durability, StoreError};

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
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
}

impl Connector {
    pub(crate) fn new(
        config: postgres::Config,
        schema: Option<&str>,
        durability: Durability,
    ) -> Self {
        let mut setup = String::new();
        if let Some(schema) = schema {
            setup = format!("SET search_path TO {};", quote(schema));
        }
        if durability == Durability::Eventual {
            setup.push_str("SET synchronous_commit TO off;");
        }
        Self { config, setup }
    }

    /// `user@host:port/database`, never the password.
    pub(crate) fn target(&self) -> String {
        target(&self.config)
    }

    pub(crate) fn connect(&self) -> Result<Conn, StoreError> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|source| StoreError::Connect {
                target: self.target(),
                source: BackendError::new(source),
            })?;
        if !self.setup.is_empty() {
            client.batch_execute(&self.setup).map_err(db)?;
        }
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
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

    /// A connection: an idle one, a new one while fewer than `size` are open, or the first to
    /// come back within the checkout timeout.
    pub(crate) fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let deadline = Instant::now() + self.checkout;
        let mut state = self.state.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Pooled {
                    conn: Some(conn),
                    pool: self,
                });
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

    fn put(&self, conn: Conn) {
        let mut state = self.state.lock();
        if conn.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.freed.notify_one();
    }
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
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
