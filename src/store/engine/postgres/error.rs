//! PostgreSQL's errors as the store's: typed where a caller can act on them, never with a
//! password (the client's errors do not carry the connection string, and `target` is built
//! without it).

use postgres::error::SqlState;

use crate::store::error::BackendError;
use crate::store::StoreError;

/// The store's error for a failed statement.
pub(crate) fn db(error: postgres::Error) -> StoreError {
    if error.is_closed() || is_io(&error) {
        return StoreError::ConnectionLost {
            source: BackendError::new(error),
        };
    }
    match error.code() {
        // `statement_timeout` cancels the statement; `lock_timeout` fails a wait for a lock.
        Some(code)
            if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE =>
        {
            StoreError::Timeout {
                source: BackendError::new(error),
            }
        }
        Some(code) if is_conflict(code) => StoreError::Contention {
            source: BackendError::new(error),
        },
        Some(code)
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW =>
        {
            StoreError::ConnectionLost {
                source: BackendError::new(error),
            }
        }
        _ => StoreError::Backend(BackendError::new(error)),
    }
}

/// Whether retrying the transaction may succeed: a serialization failure or a deadlock.
pub(crate) fn is_conflict(code: &SqlState) -> bool {
    *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// Whether the error came from the connection rather than the server.
fn is_io(error: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether a write may be tried again: its transaction rolled back on a conflict.
pub(crate) fn retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Contention { .. })
}
