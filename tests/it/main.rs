//! Integration tests of revolve through its public API: one binary, one module per concern.

mod backup;
mod concurrency;
mod crud;
mod history;
mod ledger;
mod logging;
mod migrate;
mod nesting;
mod not_upgradable;
mod schema;
mod two_builds;
mod upgrade;
