//! The PostgreSQL server the tests run against: `REVOLVE_TEST_DATABASE_URL`, which
//! `scripts/with-postgres` sets.

/// The test server's URL. Without one a test is skipped with one printed line, except under
/// `CI=true`, where it fails: CI must run the PostgreSQL tests.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var("REVOLVE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REVOLVE_TEST_DATABASE_URL is not set: under CI=true the PostgreSQL tests must run (scripts/with-postgres)"
            );
            eprintln!("skipped: no PostgreSQL (run under scripts/with-postgres)");
            None
        }
    }
}
