//! A run with many workers, on an engine shared by several processes.

use std::time::Instant;

use super::{Migration, MigrationError, MigrationReport};
use crate::schema::Schema;

/// Runs `migration` as a worker of the collection's joined run, when the engine has them;
/// `None` otherwise.
pub(super) fn run<T: Schema>(
    _migration: &mut Migration<T>,
    _started: Instant,
) -> Result<Option<MigrationReport>, MigrationError> {
    Ok(None)
}
