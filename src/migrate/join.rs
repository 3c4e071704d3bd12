//! Joined runs ([`Migration::join`]): a migration that takes part in the run under way instead of
//! being refused.
//!
//! An engine shared by several processes (PostgreSQL) runs one run with many workers, each
//! claiming chunks of its own (`fleet`). Elsewhere (sled, one process), a joiner waits for the
//! run under way to end and then runs on what is left.

use std::time::{Duration, Instant};

use super::executor::{self, Tally};
use super::{Join, Migration, MigrationError, MigrationReport, RunKind};
use crate::schema::Schema;
use crate::store::RunSettings;

/// How often a joiner that waits for a run of this process looks again.
const WAIT: Duration = Duration::from_millis(50);

pub(super) fn run<T: Schema>(
    migration: &mut Migration<T>,
    dry_run: bool,
) -> Result<MigrationReport, MigrationError> {
    let started = Instant::now();
    if dry_run {
        return Err(MigrationError::DryRunJoin {
            collection: migration.collection.name().to_owned(),
        });
    }
    if let Some(report) = super::fleet::run(migration, started)? {
        return Ok(report);
    }
    loop {
        match executor::run_once(migration, false) {
            Err(error @ MigrationError::RunInProgress { run, .. }) => {
                if migration.join == Join::Shared {
                    return Err(error);
                }
                check(migration, run)?;
                if migration.cancel.is_cancelled() {
                    return Ok(Tally::default().into_report::<T>(None, false, 0, started, true));
                }
                std::thread::sleep(WAIT);
            }
            other => return other,
        }
    }
}

/// [`MigrationError::JoinMismatch`] unless the migration run `run` (as the ledger records it)
/// has this migration's settings; a record that is missing (the run has only just started) or
/// not of a migration (a revert) is waited for.
pub(super) fn check<T: Schema>(migration: &Migration<T>, run: u64) -> Result<(), MigrationError> {
    let collection = &migration.collection;
    let Some(record) = collection.run(run)? else {
        return Ok(());
    };
    if record.kind != RunKind::Migration || record.dry_run {
        return Ok(());
    }
    let ours = collection.schema_fingerprint();
    compare(
        migration,
        run,
        &RunSettings {
            target: record.to_version,
            // A record without one (written before fingerprints were kept) is not compared on it.
            fingerprint: record.schema_fingerprint.unwrap_or_else(|| ours.clone()),
            limit: record.limit,
            retry_failed: record.retry_failed,
        },
        &ours,
    )
}

/// [`MigrationError::JoinMismatch`] naming the first setting of the run `run` that differs from
/// this migration's (whose target schema's fingerprint is `ours`).
pub(super) fn compare<T: Schema>(
    migration: &Migration<T>,
    run: u64,
    theirs: &RunSettings,
    ours: &str,
) -> Result<(), MigrationError> {
    let collection = &migration.collection;
    let mismatch = |setting: &'static str, theirs: String, ours: String| {
        Err(MigrationError::JoinMismatch {
            collection: collection.name().to_owned(),
            run,
            setting,
            theirs,
            ours,
        })
    };
    let limit = |limit: Option<u64>| limit.map_or_else(|| "none".to_owned(), |n| n.to_string());
    if theirs.target != T::VERSION {
        return mismatch(
            "target version",
            theirs.target.to_string(),
            T::VERSION.to_string(),
        );
    }
    if theirs.fingerprint != ours {
        return mismatch(
            "target schema fingerprint",
            theirs.fingerprint.clone(),
            ours.to_owned(),
        );
    }
    if theirs.limit != migration.limit {
        return mismatch("limit", limit(theirs.limit), limit(migration.limit));
    }
    if theirs.retry_failed != migration.retry_failed {
        return mismatch(
            "retry_failed",
            theirs.retry_failed.to_string(),
            migration.retry_failed.to_string(),
        );
    }
    Ok(())
}
