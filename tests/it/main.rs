//! Integration tests of revolve through its public API: one binary, one module per concern.
//!
//! # Engines
//!
//! The behavioural tests (`crud`, `history`, `upgrade`, `migrate`, `ledger`, `schema`,
//! `concurrency`, `not_upgradable`, `nesting`, `logging`) are written against the store
//! protocol, not against an engine: each is a function generic over [`engine::Engine`] that makes
//! its stores through that trait, and each module lists its tests in `engine_tests!`, which
//! instantiates every one per engine in a child module named after the engine
//! (`crud::sled::insert_many_is_all_or_nothing`).
//!
//! A new engine plugs in with two additions to `engine.rs`: an implementation of
//! [`engine::Engine`] (a fresh store that disappears when dropped, and a [`engine::Place`] where
//! a store can be closed and opened again, removed when the place is dropped), and a module for
//! it in `engine_tests!`, under the `cfg` (a feature, say) that builds the engine, calling each
//! test with that engine. Nothing else changes: the test bodies are shared.
//!
//! A test that hands its store to a child process names it by [`engine::Place::address`] and
//! the child opens it with [`engine::Engine::at`]
//! (`schema::sled::drift_is_detected_across_processes`). Only `two_builds` stays on sled alone, and says why: its example programs open the store by
//! the directory given on their command line.

#[macro_use]
mod engine;
#[cfg(feature = "postgres")]
#[path = "../common/postgres.rs"]
mod pg_server;

mod backup;
mod concurrency;
mod crud;
#[cfg(feature = "postgres")]
mod engines;
mod history;
mod join;
mod ledger;
mod logging;
mod migrate;
mod nesting;
mod not_upgradable;
mod schema;
mod startup;
mod two_builds;
mod upgrade;
