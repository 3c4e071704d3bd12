//! Run exclusion and liveness across processes: a collection's run holds a lease row until it
//! drops it, renewing it from a thread of its own on the store's renewal connection (one per
//! store, outside the pool, shared by every run's lease and worker's heartbeat); a lease whose
//! holder stopped renewing expires (by the database's clock) and is free to take.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::error::db;
use super::{sql_run, Shared};
use crate::store::engine::Held;
use crate::store::StoreError;

const ACQUIRE: &str = "INSERT INTO revolve_run_leases (collection, run, holder, expires)
     VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
     ON CONFLICT (collection) DO UPDATE
         SET run = excluded.run, holder = excluded.holder, expires = excluded.expires
         WHERE revolve_run_leases.expires < clock_timestamp()
     RETURNING run";

const RENEW: &str = "UPDATE revolve_run_leases
     SET expires = clock_timestamp() + make_interval(secs => $3)
     WHERE collection = $1 AND holder = $2";

const RELEASE: &str = "DELETE FROM revolve_run_leases WHERE collection = $1 AND holder = $2";

const HOLDER: &str = "SELECT run FROM revolve_run_leases WHERE collection = $1";

const LIVE: &str = "SELECT EXISTS (SELECT 1 FROM revolve_run_leases
     WHERE collection = $1 AND run = $2 AND expires > clock_timestamp())";

/// A held lease: renewed until dropped, then released.
pub(crate) struct Lease {
    shared: Arc<Shared>,
    collection: i32,
    holder: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<JoinHandle<()>>,
}

impl Held for Lease {}

/// Takes the lease of `collection` for `run` (0: to settle the ledger); `Ok(Err(run))` names the
/// run holding it.
pub(crate) fn acquire(
    shared: &Arc<Shared>,
    collection: i32,
    run: u64,
) -> Result<Result<Lease, u64>, StoreError> {
    let holder = crate::id::DocId::generate().into_string();
    let seconds = shared.run_lease.as_secs_f64();
    let run = sql_run(run)?;
    let mut conn = shared.pool.get()?;
    for _ in 0..3 {
        let statement = conn.statement(ACQUIRE)?;
        let taken = conn
            .client
            .query_opt(&statement, &[&collection, &run, &holder, &seconds])
            .map_err(db)?;
        if taken.is_some() {
            drop(conn);
            return Ok(Ok(start(shared, collection, holder)?));
        }
        let statement = conn.statement(HOLDER)?;
        if let Some(row) = conn
            .client
            .query_opt(&statement, &[&collection])
            .map_err(db)?
        {
            return Ok(Err(row.get::<_, i64>(0).unsigned_abs()));
        }
        // Released between the two statements: try again.
    }
    Ok(Err(0))
}

/// Whether `run` holds an unexpired lease.
pub(crate) fn is_live(shared: &Shared, collection: i32, run: u64) -> Result<bool, StoreError> {
    if run == 0 {
        return Ok(false);
    }
    let run = sql_run(run)?;
    let mut conn = shared.pool.get()?;
    let statement = conn.statement(LIVE)?;
    Ok(conn
        .client
        .query_one(&statement, &[&collection, &run])
        .map_err(db)?
        .get(0))
}

fn start(shared: &Arc<Shared>, collection: i32, holder: String) -> Result<Lease, StoreError> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let renewer = {
        let shared = Arc::clone(shared);
        let stop = Arc::clone(&stop);
        let holder = holder.clone();
        std::thread::Builder::new()
            .name("revolve-lease".to_owned())
            .spawn(move || renew(&shared, collection, &holder, &stop))
            .map_err(|source| StoreError::Io {
                what: "cannot start the thread that renews a run's lease".to_owned(),
                source,
            })?
    };
    Ok(Lease {
        shared: Arc::clone(shared),
        collection,
        holder,
        stop,
        renewer: Some(renewer),
    })
}

/// Renews the lease every quarter of its length until told to stop.
fn renew(shared: &Shared, collection: i32, holder: &str, stop: &(Mutex<bool>, Condvar)) {
    let seconds = shared.run_lease.as_secs_f64();
    renew_until_stopped(shared, stop, collection, "a run's lease", |client| {
        if client.execute(RENEW, &[&collection, &holder, &seconds])? != 1 {
            tracing::warn!(collection, "a run's lease expired before it was renewed");
        }
        Ok(true)
    });
}

/// Calls `renew` every quarter of the run lease until `stop` is set or `renew` answers `false`
/// (what it renews is lost). Errors are logged naming `what`.
///
/// Every renewer of the store (each run's lease, each joined worker's heartbeat) runs on one
/// connection of the store's, outside the pool, so that a busy pool cannot let a lease expire,
/// and a process running many workers (a fleet's instances each migrating several collections at
/// startup) takes one connection of the server's budget for them, not one each. It is made on
/// first use and again after it breaks. A renewal that waits for a lock or runs long gives up
/// after half the interval between renewals, an eighth of the lease (`lock_timeout` and
/// `statement_timeout` on that session; at least a second, for a loaded server), so that the
/// renewers behind it are held up that long at most; its own next turn tries again, well before
/// its lease expires.
pub(super) fn renew_until_stopped(
    shared: &Shared,
    stop: &(Mutex<bool>, Condvar),
    collection: i32,
    what: &str,
    mut renew: impl FnMut(&mut postgres::Client) -> Result<bool, postgres::Error>,
) {
    let every = (shared.run_lease / 4).max(Duration::from_millis(10));
    loop {
        {
            let mut stopped = stop.0.lock();
            if !*stopped {
                let _ = stop.1.wait_for(&mut stopped, every);
            }
            if *stopped {
                return;
            }
        }
        let mut connection = shared.renewals.lock();
        if connection.is_none() {
            *connection = renewal_connection(shared, (every / 2).max(Duration::from_secs(1)));
        }
        let Some(conn) = connection.as_mut() else {
            tracing::warn!(collection, "cannot reach the database to renew {what}");
            continue;
        };
        match renew(&mut conn.client) {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(collection, error = %error, "cannot renew {what}");
                // A statement that timed out leaves the session as it was; only a broken
                // connection is made again (under the lock every renewer waits on).
                if matches!(db(error), StoreError::ConnectionLost { .. }) {
                    *connection = None;
                }
            }
        }
    }
}

/// A new connection for the store's renewals, whose statements give up after `bound`.
fn renewal_connection(shared: &Shared, bound: Duration) -> Option<super::pool::Conn> {
    let mut conn = shared.pool.connector().connect().ok()?;
    let millis = bound.as_millis().max(1);
    conn.client
        .batch_execute(&format!(
            "SET lock_timeout = {millis}; SET statement_timeout = {millis}"
        ))
        .ok()?;
    Some(conn)
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        let released = self.shared.pool.get().and_then(|mut conn| {
            conn.client
                .execute(RELEASE, &[&self.collection, &self.holder])
                .map_err(db)
        });
        if let Err(error) = released {
            tracing::warn!(
                collection = self.collection,
                error = %crate::error::format::chain(&error),
                "cannot release a run's lease; it expires by itself"
            );
        }
    }
}
