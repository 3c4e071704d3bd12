//! The engine fixture: what a behavioural test asks of the engine under it, so that one test body
//! runs on every engine.
//!
//! A behavioural test is a function generic over [`Engine`] (`fn name<E: Engine>()`) that makes
//! its stores only through the fixture: [`Engine::temporary`] or [`Engine::fresh`] for a store
//! that lives as long as the test, [`Engine::place`] for one that the test closes and opens again
//! ([`Place::open`], [`Place::builder`]), [`Place::address`] and [`Engine::at`] to hand a store
//! to a child process. The module lists its tests once in
//! `engine_tests!`, which makes a `#[test]` per engine in a child module
//! named after it: `crud::sled::insert_many_is_all_or_nothing`.

use std::path::PathBuf;

use revolve::{Store, StoreBuilder};

/// Where one store of an engine lives, for a test that closes the store and opens it again.
/// Dropping it removes the store.
pub(crate) trait Place {
    /// A builder for the store at this place; the test adds its options.
    fn builder(&self) -> StoreBuilder;

    /// What names this place to another process (a directory, a database URL), for
    /// [`Engine::at`].
    fn address(&self) -> String;

    /// Opens the store at this place with default options.
    fn open(&self) -> Store {
        self.builder().open().unwrap()
    }
}

/// A storage engine the behavioural tests run on.
pub(crate) trait Engine {
    /// The name of the module of its tests that `engine_tests!` makes, as in a test's path.
    const NAME: &'static str;

    /// Where its stores live.
    type Place: Place + 'static;

    /// A new, empty place for a store.
    fn place() -> Self::Place;

    /// The place another process named by [`Place::address`]; dropping it leaves the store.
    fn at(address: &str) -> Self::Place;

    /// A builder for a new, empty store that disappears when dropped; the test adds its options.
    fn fresh() -> StoreBuilder;

    /// A new, empty store that disappears when dropped, with default options.
    fn temporary() -> Store {
        Self::fresh().open().unwrap()
    }
}

/// The embedded sled engine: a store is a directory.
#[derive(Debug)]
pub(crate) struct Sled;

/// A store's directory: a temporary one, removed when dropped, or one another process made.
#[derive(Debug)]
pub(crate) struct SledPlace {
    path: PathBuf,
    _owned: Option<tempfile::TempDir>,
}

impl Place for SledPlace {
    fn builder(&self) -> StoreBuilder {
        Store::builder().path(&self.path)
    }

    fn address(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }
}

impl Engine for Sled {
    const NAME: &'static str = "sled";
    type Place = SledPlace;

    fn place() -> SledPlace {
        let dir = tempfile::tempdir().unwrap();
        SledPlace {
            path: dir.path().to_owned(),
            _owned: Some(dir),
        }
    }

    fn at(address: &str) -> SledPlace {
        SledPlace {
            path: PathBuf::from(address),
            _owned: None,
        }
    }

    fn fresh() -> StoreBuilder {
        Store::builder().temporary(true)
    }
}
#[cfg(feature = "postgres")]
pub(crate) use crate::pg_server::postgres_url;

/// The PostgreSQL engine: a store is a schema of the test server's database
/// (`REVOLVE_TEST_DATABASE_URL`, which `scripts/with-postgres` sets).
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(crate) struct Postgres;

/// A schema of the test database: a fresh one, dropped with the place, or one another process
/// made.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(crate) struct PgPlace {
    url: String,
    schema: String,
    owned: bool,
}

#[cfg(feature = "postgres")]
impl Place for PgPlace {
    fn builder(&self) -> StoreBuilder {
        Store::builder()
            .url(&self.url)
            .schema(&self.schema)
            .run_lease(std::time::Duration::from_secs(2))
    }

    fn address(&self) -> String {
        format!("{}|{}", self.url, self.schema)
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgPlace {
    fn drop(&mut self) {
        if self.owned {
            if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
                let _ = client.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                    self.schema
                ));
            }
        }
    }
}

#[cfg(feature = "postgres")]
impl Engine for Postgres {
    const NAME: &'static str = "postgres";
    type Place = PgPlace;

    fn place() -> PgPlace {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        PgPlace {
            url: postgres_url().expect("a PostgreSQL test runs only with a server"),
            schema: format!(
                "t_{}_{}_{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ),
            owned: true,
        }
    }

    fn at(address: &str) -> PgPlace {
        let (url, schema) = address.rsplit_once('|').unwrap();
        PgPlace {
            url: url.to_owned(),
            schema: schema.to_owned(),
            owned: false,
        }
    }

    fn fresh() -> StoreBuilder {
        Store::builder()
            .url(postgres_url().expect("a PostgreSQL test runs only with a server"))
            .temporary(true)
            .run_lease(std::time::Duration::from_secs(2))
    }
}

/// Makes one `#[test]` per engine for each generic test function named, in a child module per
/// engine: `engine_tests! { a, b }` in `crud` gives `crud::sled::a` calling `a::<Sled>()`.
/// Attributes written before a name (`#[ignore]`, a doc comment) are put on each of its tests.
///
/// A new engine adds its module here, under the `cfg` that builds it.
macro_rules! engine_tests {
    ($($(#[$meta:meta])* $test:ident),* $(,)?) => {
        /// The tests of this module on the sled engine.
        mod sled {
            $(
                $(#[$meta])*
                #[test]
                fn $test() {
                    super::$test::<crate::engine::Sled>();
                }
            )*
        }

        /// The tests of this module on the PostgreSQL engine.
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                $(#[$meta])*
                #[test]
                fn $test() {
                    if crate::engine::postgres_url().is_some() {
                        super::$test::<crate::engine::Postgres>();
                    }
                }
            )*
        }
    };
}
