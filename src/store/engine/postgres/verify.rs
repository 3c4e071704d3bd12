//! The consistency check and counter repair on PostgreSQL.

use super::PgEngine;
use crate::store::{RepairReport, Store, StoreError, VerifyReport};

pub(crate) fn verify(
    _engine: &PgEngine,
    _store: &Store,
    _progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    Err(StoreError::Unsupported {
        operation: "verify",
        engine: "PostgreSQL (not yet)",
    })
}

pub(crate) fn repair_counters(
    _engine: &PgEngine,
    _store: &Store,
) -> Result<RepairReport, StoreError> {
    Err(StoreError::Unsupported {
        operation: "repair_counters",
        engine: "PostgreSQL (not yet)",
    })
}
