//! The tables: created, or checked, in one transaction under a transaction-scoped advisory lock
//! when a store connects, so that processes starting at once do not race on `CREATE`; a layout
//! version row so that an older program refuses a newer layout; and a check of every column, so
//! that a table altered by hand is a clear error rather than failing statements later.

use postgres::Client;

use super::error::db;
use super::pool::quote;
use crate::store::StoreError;

/// The DDL of the current layout (what `revolve pg-layout --print` prints).
pub(crate) const DDL: &str = include_str!("layout.sql");

/// The layout version this program writes and reads.
pub(crate) const VERSION: u32 = 1;

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
        if found < VERSION {
            return Err(StoreError::LayoutAltered {
                table: "revolve_layout".to_owned(),
                detail: format!("it records layout version {found}, which no revolve wrote"),
            });
        }
    } else {
        tx.batch_execute(DDL).map_err(db)?;
    }
    check_columns(&mut tx)?;
    tx.commit().map_err(db)
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
