#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(any(feature = "http", feature = "cli"))]
mod erased;
mod error;
mod fault;
mod id;
mod migrate;
mod record;
mod schema;
mod store;
#[cfg(any(feature = "http", feature = "cli"))]
mod time;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "cli")]
pub mod cli;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use crate::error::Error;
pub use crate::id::{DocId, InvalidId, Revision, MAX_ID_LEN};
pub use crate::migrate::{
    CancelToken, Failure, FailureClass, MigrateOptions, Migration, MigrationError, MigrationReport,
    Pending, PendingCount, Progress, RevertReport, RunKind, RunRecord, RunState, StartupError,
    StartupMigration, StartupPolicy, StartupReport, StartupState, StartupStatus, WorkerRecord,
    MAX_REPORTED_FAILURES, MAX_STARTUP_FAILURES,
};
pub use crate::record::{Origin, RecordError};
pub use crate::schema::{
    canonical_schema, compare_schemas, compare_schemas_with_aliases, is_breaking,
    schema_fingerprint, ChangeKind, Compatibility, Schema, SchemaChange, SchemaError, StepError,
};
pub use crate::store::KeySpace;
pub use crate::store::{
    BackendError, Collection, Document, Durability, Iter, RawCollection, RawRevision, RevisionInfo,
    SchemaEvent, SchemaRecord, Store, StoreBuilder, StoreError, DEFAULT_CACHE_CAPACITY,
};
pub use crate::store::{
    BackupError, BackupSummary, CollectionStats, CounterChange, CounterKind, Problem, RepairReport,
    StoreStats, VerifyReport, MAX_REPORTED_PROBLEMS,
};
pub use crate::store::{SalvageReport, SalvagedImport, SnapshotRebuild, StoreState};
#[cfg(feature = "postgres")]
pub use crate::store::{DATABASE_URL_VARIABLE, POSTGRES_LAYOUT};
pub use revolve_derive::Schema;
