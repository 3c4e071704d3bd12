//! Integration tests of revolve through its public API: one binary, one module per concern.

mod concurrency;
mod crud;
mod history;
mod nesting;
mod two_builds;
mod upgrade;
