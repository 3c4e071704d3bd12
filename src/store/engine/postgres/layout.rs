//! The tables: created, or checked, in one transaction under a transaction-scoped advisory lock
//! when a store connects, so that processes starting at once do not race on `CREATE`; a layout
//! version row so that an older program refuses a newer layout; and a check of every column, so
//! that a table altered by hand is a clear error rather than failing statements later.

use postgres::Client;

use super::error::db;
use super::meta;
use super::pool::quote;
use crate::store::StoreError;

/// The DDL of the current layout (what `revolve pg-layout --print` prints): version 1, each
/// later version's changes, and the version row.
pub(crate) const DDL: &str = concat!(
    include_str!("layout.sql"),
    "\n",
    include_str!("layout-2.sql"),
    "\n",
    include_str!("layout-3.sql"),
    "\nINSERT INTO revolve_layout (version) VALUES (3);\n"
);

/// What `layout.sql` (version 1) gained after the first stores were made with it, brought to
/// those stores as they are upgraded: the positions of limited runs, and the failure records'
/// run index with the id (the paged read of a run's failures).
const VERSION_1_SINCE: &str = "CREATE TABLE IF NOT EXISTS revolve_positions (
         collection integer NOT NULL,
         target integer NOT NULL,
         position text COLLATE \"C\" NOT NULL,
         PRIMARY KEY (collection, target));
     DROP INDEX IF EXISTS revolve_failures_by_run;
     CREATE INDEX revolve_failures_by_run ON revolve_failures (collection, run, id);";

/// What version 2 adds to version 1: the schema history's table.
const VERSION_2: &str = include_str!("layout-2.sql");

/// What version 3 adds to version 2: the tables of runs with many workers.
const VERSION_3: &str = include_str!("layout-3.sql");

/// The layout version this program writes and reads.
pub(crate) const VERSION: u32 = 3;

/// Every column of the layout: table, column, type (as `information_schema` names it).
const COLUMNS: &[(&str, &str, &str)] = &[
    ("revolve_layout", "one", "boolean"),
    ("revolve_layout", "version", "integer"),
    ("revolve_collections", "id", "integer"),
    ("revolve_collections", "name", "text"),
    ("revolve_collections", "meta", "bytea"),
    ("revolve_collections", "newest", "integer"),
    ("revolve_schema_history", "collection", "integer"),
    ("revolve_schema_history", "seq", "integer"),
    ("revolve_schema_history", "version", "integer"),
    ("revolve_schema_history", "event", "text"),
    ("revolve_schema_history", "fingerprint", "text"),
    (
        "revolve_schema_history",
        "recorded",
        "timestamp with time zone",
    ),
    ("revolve_schema_history", "record", "bytea"),
    ("revolve_heads", "collection", "integer"),
    ("revolve_heads", "id", "text"),
    ("revolve_heads", "revision", "bigint"),
    ("revolve_heads", "version", "integer"),
    ("revolve_heads", "removed", "boolean"),
    ("revolve_revisions", "collection", "integer"),
    ("revolve_revisions", "id", "text"),
    ("revolve_revisions", "revision", "bigint"),
    ("revolve_revisions", "record", "bytea"),
    ("revolve_failures", "collection", "integer"),
    ("revolve_failures", "id", "text"),
    ("revolve_failures", "version", "integer"),
    ("revolve_failures", "run", "bigint"),
    ("revolve_failures", "record", "bytea"),
    ("revolve_counts", "collection", "integer"),
    ("revolve_counts", "counter", "smallint"),
    ("revolve_counts", "version", "integer"),
    ("revolve_counts", "shard", "smallint"),
    ("revolve_counts", "n", "bigint"),
    ("revolve_runs", "collection", "text"),
    ("revolve_runs", "run", "bigint"),
    ("revolve_runs", "record", "bytea"),
    ("revolve_progress", "collection", "integer"),
    ("revolve_progress", "run", "bigint"),
    ("revolve_progress", "record", "bytea"),
    ("revolve_positions", "collection", "integer"),
    ("revolve_positions", "target", "integer"),
    ("revolve_positions", "position", "text"),
    ("revolve_run_leases", "collection", "integer"),
    ("revolve_run_leases", "run", "bigint"),
    ("revolve_run_leases", "holder", "text"),
    ("revolve_run_leases", "expires", "timestamp with time zone"),
    ("revolve_fleet_runs", "collection", "integer"),
    ("revolve_fleet_runs", "run", "bigint"),
    ("revolve_fleet_runs", "target", "integer"),
    ("revolve_fleet_runs", "fingerprint", "text"),
    ("revolve_fleet_runs", "run_limit", "bigint"),
    ("revolve_fleet_runs", "retry_failed", "boolean"),
    ("revolve_fleet_runs", "reserved", "bigint"),
    ("revolve_fleet_runs", "cancel_requested", "boolean"),
    ("revolve_fleet_runs", "state", "text"),
    ("revolve_fleet_workers", "collection", "integer"),
    ("revolve_fleet_workers", "run", "bigint"),
    ("revolve_fleet_workers", "worker", "text"),
    ("revolve_fleet_workers", "instance", "text"),
    ("revolve_fleet_workers", "host", "text"),
    ("revolve_fleet_workers", "pid", "bigint"),
    (
        "revolve_fleet_workers",
        "started",
        "timestamp with time zone",
    ),
    (
        "revolve_fleet_workers",
        "heartbeat",
        "timestamp with time zone",
    ),
    (
        "revolve_fleet_workers",
        "expires",
        "timestamp with time zone",
    ),
    ("revolve_fleet_workers", "idle", "boolean"),
    ("revolve_fleet_workers", "gone", "boolean"),
    ("revolve_fleet_workers", "taken", "bigint"),
    ("revolve_fleet_workers", "migrated", "bigint"),
    ("revolve_fleet_workers", "failed", "bigint"),
    ("revolve_fleet_workers", "skipped", "bigint"),
    ("revolve_fleet_workers", "reserved", "bigint"),
    ("revolve_fleet_workers", "failures_by_class", "jsonb"),
];

/// Creates the layout in `schema` (the first of the search path when `None`) if it is missing,
/// and checks it.
pub(crate) fn prepare(client: &mut Client, schema: Option<&str>) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(db)?;
    tx.batch_execute("SET LOCAL lock_timeout = '30s'")
        .map_err(db)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('revolve.layout:' || COALESCE($1::text, current_schema(), ''), 0))",
        &[&schema],
    )
    .map_err(db)?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)))
            .map_err(db)?;
    }
    let exists: bool = tx
        .query_one("SELECT to_regclass('revolve_layout') IS NOT NULL", &[])
        .map_err(db)?
        .get(0);
    if exists {
        let found: i32 = tx
            .query_opt("SELECT version FROM revolve_layout", &[])
            .map_err(db)?
            .map_or(0, |row| row.get(0));
        let found = u32::try_from(found).unwrap_or(0);
        if found > VERSION {
            return Err(StoreError::LayoutTooNew {
                found,
                known: VERSION,
            });
        }
        match found {
            VERSION => {}
            1 => {
                upgrade_from_1(&mut tx)?;
                upgrade_from_2(&mut tx)?;
            }
            2 => upgrade_from_2(&mut tx)?,
            _ => {
                return Err(StoreError::LayoutAltered {
                    table: "revolve_layout".to_owned(),
                    detail: format!("it records layout version {found}, which no revolve wrote"),
                })
            }
        }
    } else {
        tx.batch_execute(DDL).map_err(db)?;
    }
    check_columns(&mut tx)?;
    tx.commit().map_err(db)
}

/// Version 1 to 2, inside the layout transaction: the schema history's table, filled from the
/// `_meta` records (each record keeps the rest). A record that does not split stays whole, as
/// `meta::write` keeps it.
fn upgrade_from_1(tx: &mut postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(VERSION_1_SINCE).map_err(db)?;
    tx.batch_execute(VERSION_2).map_err(db)?;
    let records = tx
        .query(
            "SELECT id, meta FROM revolve_collections WHERE meta IS NOT NULL ORDER BY id",
            &[],
        )
        .map_err(db)?;
    for row in &records {
        let id: i32 = row.get(0);
        let bytes: Vec<u8> = row.get(1);
        let split = meta::split_or_whole(&bytes);
        if split.history.is_empty() {
            continue;
        }
        tx.execute(
            "UPDATE revolve_collections SET meta = $2 WHERE id = $1",
            &[&id, &split.record],
        )
        .map_err(db)?;
        meta::HistoryRows::new(&split, 0)?
            .insert(tx, id)
            .map_err(db)?;
    }
    tx.execute("UPDATE revolve_layout SET version = 2", &[])
        .map_err(db)?;
    tracing::info!(
        collections = records.len(),
        "PostgreSQL layout upgraded from version 1 to 2: the schema history has a table of its own"
    );
    Ok(())
}

/// Version 2 to 3, inside the layout transaction: the tables of runs with many workers (new and
/// empty; nothing moves).
fn upgrade_from_2(tx: &mut postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(VERSION_3).map_err(db)?;
    tx.execute("UPDATE revolve_layout SET version = 3", &[])
        .map_err(db)?;
    tracing::info!("PostgreSQL layout upgraded from version 2 to 3: runs with many workers");
    Ok(())
}

/// Every column of the layout is there, with its type.
fn check_columns(tx: &mut postgres::Transaction<'_>) -> Result<(), StoreError> {
    let rows = tx
        .query(
            "SELECT table_name::text, column_name::text, data_type::text
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name LIKE 'revolve\\_%'",
            &[],
        )
        .map_err(db)?;
    let found: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    for &(table, column, kind) in COLUMNS {
        let actual = found
            .iter()
            .find(|(t, c, _)| t == table && c == column)
            .map(|(_, _, kind)| kind.as_str());
        match actual {
            Some(actual) if actual == kind => {}
            Some(actual) => {
                return Err(StoreError::LayoutAltered {
                    table: table.to_owned(),
                    detail: format!("column `{column}` is {actual}, not {kind}"),
                })
            }
            None => {
                return Err(StoreError::LayoutAltered {
                    table: table.to_owned(),
                    detail: format!("column `{column}` is missing"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{test_url, Options, PgEngine};
    use crate::store::engine::Engine;
    use crate::store::registry::sample_meta;
    use crate::store::Durability;

    fn open(url: &str, schema: &str) -> Result<PgEngine, crate::StoreError> {
        PgEngine::open(&Options {
            url: url.to_owned(),
            schema: Some(schema.to_owned()),
            temporary: false,
            durability: Durability::Immediate,
            pool_size: 2,
            checkout_timeout: Duration::from_secs(10),
            run_lease: Duration::from_secs(10),
            registration_timeout: Duration::from_secs(10),
        })
    }

    /// A version 1 layout (the schema history inside each `_meta` record) is upgraded when a
    /// store connects: the history moves to its table, every record reads back byte for byte.
    #[test]
    fn a_version_1_layout_is_upgraded_with_its_schema_history() {
        let Some(url) = test_url() else {
            return;
        };
        let schema = format!("layout_v1_{}", std::process::id());
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .unwrap();
        let notes = sample_meta(2, &[1, 2]);
        let plain = sample_meta(1, &[]);
        {
            let engine = open(&url, &schema).unwrap();
            assert!(engine.put_meta("notes", None, &notes).unwrap());
            assert!(engine.put_meta("plain", None, &plain).unwrap());
        }
        // What the first version 1 stores held: whole records, no history table, no positions,
        // the failures' run index without the id.
        client
            .batch_execute(&format!(
                "SET search_path TO {schema};
                 DROP TABLE revolve_schema_history;
                 DROP TABLE revolve_positions;
                 DROP INDEX revolve_failures_by_run;
                 CREATE INDEX revolve_failures_by_run ON revolve_failures (collection, run);
                 DROP TABLE revolve_fleet_runs;
                 DROP TABLE revolve_fleet_workers;
                 DROP FUNCTION revolve_refuse_change();
                 UPDATE revolve_layout SET version = 1;"
            ))
            .unwrap();
        for (name, bytes) in [("notes", &notes), ("plain", &plain)] {
            client
                .execute(
                    "UPDATE revolve_collections SET meta = $2 WHERE name = $1",
                    &[&name, bytes],
                )
                .unwrap();
        }

        let engine = open(&url, &schema).unwrap();
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&notes[..]));
        assert_eq!(engine.meta("plain").unwrap().as_deref(), Some(&plain[..]));
        let row = client
            .query_one(
                "SELECT (SELECT version FROM revolve_layout),
                        (SELECT count(*) FROM revolve_schema_history),
                        (SELECT length(meta) FROM revolve_collections WHERE name = 'notes')",
                &[],
            )
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 3);
        assert_eq!(row.get::<_, i64>(1), 2);
        assert!(usize::try_from(row.get::<_, i32>(2)).unwrap() < notes.len());
        // What version 1 gained later is there too.
        let index: String = client
            .query_one(
                "SELECT indexdef FROM pg_indexes
                 WHERE schemaname = $1 AND indexname = 'revolve_failures_by_run'",
                &[&schema],
            )
            .unwrap()
            .get(0);
        assert!(index.ends_with("(collection, run, id)"), "{index}");
        drop(engine);
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    }
}
