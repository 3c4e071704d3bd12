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

/// A fresh schema of the test server, dropped with this value.
// Not every test crate that includes this file makes schemas of its own.
#[allow(dead_code)]
pub(crate) struct TestSchema {
    url: String,
    name: String,
}

#[allow(dead_code)]
impl TestSchema {
    /// A fresh schema whose name starts with `prefix`, and a builder for stores in it (with a
    /// 2-second run lease, so that tests of dead workers are quick); `None` without a test
    /// server.
    pub(crate) fn new(prefix: &str) -> Option<(Self, impl Fn() -> revolve::StoreBuilder)> {
        let url = postgres_url()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let builder = {
            let (url, name) = (url.clone(), name.clone());
            move || {
                revolve::Store::builder()
                    .url(&url)
                    .schema(&name)
                    .run_lease(std::time::Duration::from_secs(2))
            }
        };
        Some((Self { url, name }, builder))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ =
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}
