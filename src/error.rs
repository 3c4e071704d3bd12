//! The top-level error, for applications that want one type for everything revolve returns.

pub(crate) mod format;

use crate::migrate::{MigrationError, StartupError};
use crate::record::RecordError;
use crate::schema::SchemaError;
use crate::store::{BackupError, StoreError};

/// Any error revolve returns. Each function returns its layer's narrower type, which converts into
/// this one with `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store or collection operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A schema chain is invalid or a document could not be upgraded.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A migration, revert or ledger read failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// An export or import failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// [`Store::collection_with`](crate::Store::collection_with) or
    /// [`StartupReport::require_clean`](crate::StartupReport::require_clean) failed.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// Stored bytes are not a valid record.
    #[error(transparent)]
    Record(#[from] RecordError),
}
