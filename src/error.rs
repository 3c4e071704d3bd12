//! The top-level error, for applications that want one type for everything revolve returns.

use crate::migrate::MigrationError;
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
    /// Stored bytes are not a valid record.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// An error and its sources on one line, joined by `: ` (`cannot open: permission denied`): the
/// one formatter of error chains that the HTTP layer, migrations and the command lines share.
pub(crate) struct Chain<'a>(pub(crate) &'a dyn std::error::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// [`Chain`] as a `String`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    Chain(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_joins_an_error_and_its_sources() {
        let error = Outer(std::io::Error::other("permission denied"));
        assert_eq!(chain(&error), "cannot open the store: permission denied");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }
}
