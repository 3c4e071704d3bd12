//! The PostgreSQL engine: one set of `revolve_*` tables per store (see `layout.sql`), shared by
//! every process connected to it.
//!
//! Nothing writers share lives in a process's memory: heads are re-checked in SQL at every
//! commit, counts change by SQL deltas in the writing transaction, the newest registered version
//! is read inside it, run ids come from a sequence, and run exclusion and liveness are a lease
//! row that the holder renews (`lease`).

pub(crate) mod collection;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod layout;
pub(crate) mod lease;
pub(crate) mod logical;
pub(crate) mod meta;
pub(crate) mod pending;
pub(crate) mod pool;
pub(crate) mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use self::collection::PgCollection;
use self::error::db;
use self::pool::{Connector, Pool};
use super::{Bytes, CollectionEngine, Engine, Import, StoreState};
use crate::store::backup::BackupError;
use crate::store::logical::LogicalRecord;
use crate::store::{Durability, StoreError};
use crate::store::{RepairReport, Store, VerifyReport};

/// How to connect a store to PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) url: String,
    /// The schema the tables live in; the first of the search path when `None`.
    pub(crate) schema: Option<String>,
    /// A schema of its own, dropped with the store.
    pub(crate) temporary: bool,
    pub(crate) durability: Durability,
    pub(crate) pool_size: usize,
    pub(crate) checkout_timeout: Duration,
    pub(crate) run_lease: Duration,
    /// How long registration waits for another process registering the same collection.
    pub(crate) registration_timeout: Duration,
}

/// What every collection of a store shares.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) run_lease: Duration,
    /// The connection every lease renewal and heartbeat of the store runs on, outside the pool
    /// (see `lease::renew_until_stopped`); made on first use, and again after an error.
    pub(crate) renewals: parking_lot::Mutex<Option<pool::Conn>>,
}

/// A store on PostgreSQL.
pub(crate) struct PgEngine {
    pub(crate) shared: Arc<Shared>,
    /// The schema to drop with the store, for a temporary one.
    temporary: Option<String>,
    registration_timeout: Duration,
    collections: Mutex<HashMap<String, Arc<PgCollection>>>,
}

impl std::fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEngine")
            .field("pool", &self.shared.pool)
            .finish_non_exhaustive()
    }
}

impl PgEngine {
    /// Connects, and creates or checks the layout.
    pub(crate) fn open(options: &Options) -> Result<Self, StoreError> {
        let (mut config, root_cert) = pool::parse_url(&options.url)?;
        if config.get_application_name().is_none() {
            config.application_name("revolve");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let schema = match (&options.schema, options.temporary) {
            (Some(schema), _) => Some(schema.clone()),
            (None, true) => Some(format!(
                "revolve_tmp_{}",
                crate::id::DocId::generate().into_string().to_lowercase()
            )),
            (None, false) => None,
        };
        if let Some(schema) = &schema {
            validate_schema(schema)?;
        }
        let connector =
            Connector::new(config, schema.as_deref(), options.durability).root_cert(root_cert);
        let pool = Pool::new(connector, options.pool_size, options.checkout_timeout);
        {
            let mut conn = pool.get()?;
            layout::prepare(&mut conn.client, schema.as_deref())?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                run_lease: options.run_lease,
                renewals: parking_lot::Mutex::new(None),
            }),
            temporary: if options.temporary { schema } else { None },
            registration_timeout: options.registration_timeout,
            collections: Mutex::new(HashMap::new()),
        })
    }

    /// A collection's engine, opened on first use (its row made if missing).
    pub(crate) fn open_collection(&self, name: &str) -> Result<Arc<PgCollection>, StoreError> {
        let mut collections = self.collections.lock();
        if let Some(collection) = collections.get(name) {
            return Ok(Arc::clone(collection));
        }
        let mut conn = self.shared.pool.get()?;
        conn.client
            .execute(
                "INSERT INTO revolve_collections (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&name],
            )
            .map_err(db)?;
        let id: i32 = conn
            .client
            .query_one(
                "SELECT id FROM revolve_collections WHERE name = $1",
                &[&name],
            )
            .map_err(db)?
            .get(0);
        drop(conn);
        let collection = Arc::new(PgCollection::new(
            name.to_owned(),
            id,
            Arc::clone(&self.shared),
        ));
        collections.insert(name.to_owned(), Arc::clone(&collection));
        Ok(collection)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.shared.pool
    }
}

impl Drop for PgEngine {
    fn drop(&mut self) {
        if let Some(schema) = self.temporary.take() {
            // Off any async runtime: a store may be dropped inside one.
            let pool = &self.shared.pool;
            let dropped = pool::off_runtime(|| {
                pool.get().and_then(|mut conn| {
                    conn.client
                        .batch_execute(&format!("DROP SCHEMA {} CASCADE", pool::quote(&schema)))
                        .map_err(db)
                })
            })
            .unwrap_or_else(|error| {
                Err(StoreError::Backend(crate::store::error::BackendError::new(
                    error,
                )))
            });
            if let Err(error) = dropped {
                tracing::warn!(%schema, error = %crate::error::format::chain(&error), "could not drop a temporary store's schema");
            }
        }
    }
}

/// A schema name revolve accepts: 1 to 63 bytes, no NUL.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    if schema.is_empty() || schema.len() > 63 || schema.contains('\0') {
        return Err(StoreError::InvalidUrl {
            reason: format!("schema name {schema:?} must be 1 to 63 bytes without NUL"),
        });
    }
    Ok(())
}

impl Engine for PgEngine {
    fn collection(&self, name: &str) -> Result<Arc<dyn CollectionEngine>, StoreError> {
        Ok(self.open_collection(name)?)
    }

    fn collection_names(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool().get()?;
        let rows = conn
            .client
            .query(
                "SELECT name FROM revolve_collections WHERE meta IS NOT NULL ORDER BY name",
                &[],
            )
            .map_err(db)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn meta(&self, collection: &str) -> Result<Option<Bytes>, StoreError> {
        let mut conn = self.pool().get()?;
        meta::read(&mut conn.client, collection)
    }

    fn put_meta(
        &self,
        collection: &str,
        expected: Option<&[u8]>,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool().get()?;
        meta::write(&mut conn.client, collection, expected, bytes)
    }

    fn update_meta(
        &self,
        collection: &str,
        decide: &mut super::DecideMeta<'_>,
    ) -> Result<(), StoreError> {
        meta::update(self.pool(), collection, self.registration_timeout, decide)
    }

    fn next_run_id(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool().get()?;
        let id: i64 = conn
            .client
            .query_one("SELECT nextval('revolve_run_ids')", &[])
            .map_err(db)?
            .get(0);
        Ok(id.unsigned_abs())
    }

    fn has_ledger(&self) -> bool {
        // Unknown counts as yes: settling then reads the ledger and reports the error.
        self.pool()
            .get()
            .and_then(|mut conn| {
                conn.client
                    .query_one("SELECT EXISTS (SELECT 1 FROM revolve_runs)", &[])
                    .map(|row| row.get(0))
                    .map_err(db)
            })
            .unwrap_or(true)
    }

    fn put_run(
        &self,
        collection: &str,
        run: u64,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        // One statement in its own transaction, whose commit waits for its WAL only when the
        // record must be durable (then also on an `Eventual` store's sessions, as sled flushes):
        // the record a run rewrites after each chunk is flushed with the next synchronous commit
        // (the next chunk's), not waited for here.
        let mut conn = self.pool().get()?;
        let statement = conn.statement(
            "INSERT INTO revolve_runs (collection, run, record)
             SELECT $1, $2, $3
             FROM (SELECT set_config('synchronous_commit',
                 CASE WHEN NOT $4 THEN 'off'
                      WHEN current_setting('synchronous_commit') = 'off' THEN 'on'
                      ELSE current_setting('synchronous_commit') END, true)) AS durability
             ON CONFLICT (collection, run) DO UPDATE SET record = excluded.record",
        )?;
        conn.client
            .execute(&statement, &[&collection, &sql_run(run)?, &bytes, &durable])
            .map_err(db)?;
        Ok(())
    }

    fn run(&self, collection: &str, run: u64) -> Result<Option<Bytes>, StoreError> {
        let mut conn = self.pool().get()?;
        Ok(conn
            .client
            .query_opt(
                "SELECT record FROM revolve_runs WHERE collection = $1 AND run = $2",
                &[&collection, &sql_run(run)?],
            )
            .map_err(db)?
            .map(|row| row.get(0)))
    }

    fn runs(
        &self,
        collection: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let before = match before {
            Some(run) => sql_run(run)?,
            None => i64::MAX,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.pool().get()?;
        let rows = conn
            .client
            .query(
                "SELECT run, record FROM revolve_runs WHERE collection = $1 AND run < $2
                 ORDER BY run DESC LIMIT $3",
                &[&collection, &before, &limit],
            )
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, i64>(0).unsigned_abs(), row.get(1)))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // A transaction with an id commits synchronously: it waits for the WAL up to it, and so
        // for every commit before it, also those made with `synchronous_commit = off`.
        let mut conn = self.pool().get()?;
        conn.client
            .batch_execute(
                "BEGIN; SET LOCAL synchronous_commit = on; SELECT pg_current_xact_id(); COMMIT;",
            )
            .map_err(db)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool().get()?;
        let size: i64 = conn
            .client
            .query_one(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'
                   AND c.relname LIKE 'revolve\\_%'",
                &[],
            )
            .map_err(db)?
            .get(0);
        Ok(size.unsigned_abs())
    }

    fn verify(
        &self,
        store: &Store,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, StoreError> {
        verify::verify(self, store, progress)
    }

    fn repair_counters(&self, store: &Store) -> Result<RepairReport, StoreError> {
        verify::repair_counters(self, store)
    }

    fn export(
        &self,
        store: &Store,
        sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        logical::export(self, store, sink)
    }

    fn import<'a>(&'a self, store: &'a Store) -> Result<Box<dyn Import + 'a>, BackupError> {
        logical::import(self, store)
    }

    fn state(&self) -> StoreState {
        StoreState::Ready
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A run id as PostgreSQL's `bigint`.
pub(crate) fn sql_run(run: u64) -> Result<i64, StoreError> {
    i64::try_from(run).map_err(|_| StoreError::Unsupported {
        operation: "a run id above 2^63",
        engine: "PostgreSQL",
    })
}

/// The test server's URL (`REVOLVE_TEST_DATABASE_URL`, set by `scripts/with-postgres`): without
/// one a test is skipped with one printed line, except under `CI=true`, where it fails.
#[cfg(test)]
pub(crate) fn test_url() -> Option<String> {
    match std::env::var("REVOLVE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REVOLVE_TEST_DATABASE_URL is not set: under CI=true the PostgreSQL tests must run"
            );
            eprintln!("skipped: no PostgreSQL (run under scripts/with-postgres)");
            None
        }
    }
}
