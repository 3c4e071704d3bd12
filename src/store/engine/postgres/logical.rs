//! The PostgreSQL side of logical backups: every record of a store streamed out in backup order,
//! and a backup loaded into an empty store.

use super::PgEngine;
use crate::store::backup::BackupError;
use crate::store::engine::Import;
use crate::store::logical::LogicalRecord;
use crate::store::{Store, StoreError};

pub(crate) fn export(
    _engine: &PgEngine,
    _store: &Store,
    _sink: &mut dyn FnMut(LogicalRecord) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    Err(BackupError::from(StoreError::Unsupported {
        operation: "export",
        engine: "PostgreSQL (not yet)",
    }))
}

pub(crate) fn import<'a>(
    _engine: &'a PgEngine,
    _store: &'a Store,
) -> Result<Box<dyn Import + 'a>, BackupError> {
    Err(BackupError::from(StoreError::Unsupported {
        operation: "import",
        engine: "PostgreSQL (not yet)",
    }))
}
