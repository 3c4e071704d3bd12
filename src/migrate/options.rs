//! What a run is asked to do, as one value: built in code, or read from a request.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// The options of a migration run: how many documents to take, whether to retry failed ones,
/// whether to join the run under way, whether to write anything. Give them to a [`Migration`](crate::Migration) with
/// [`options`](crate::Migration::options) and run it with [`run`](crate::Migration::run).
///
/// Built with [`Default`] and the builder methods, or deserialized (an HTTP body, a query
/// string): `limit` (a whole number, `null` for none), `retry_failed` and `join` (booleans,
/// `null` for false) are read; any other field is refused, `dry_run` and `threads` included,
/// which the caller chooses (the HTTP API by its route).
///
/// ```
/// # use revolve::{MigrateOptions, Schema, Store};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
/// # #[schema(collection = "notes", version = 1)]
/// # struct Note { text: String }
/// let store = Store::temporary()?;
/// let notes = store.collection::<Note>()?;
/// let options: MigrateOptions = serde_json::from_str(r#"{"limit": 500}"#).unwrap();
/// let report = notes.migrate().options(&options.dry_run(true)).run()?;
/// assert!(report.dry_run);
/// # Ok::<(), revolve::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
#[must_use]
pub struct MigrateOptions {
    /// Take at most this many documents that need migration; all of them for `None`.
    #[serde(deserialize_with = "whole_number")]
    pub limit: Option<u64>,
    /// Also take documents whose migration failed before.
    #[serde(deserialize_with = "flag")]
    pub retry_failed: bool,
    /// Join the run under way, or start one others may join (see
    /// [`Migration::join`](crate::Migration::join)).
    #[serde(deserialize_with = "flag")]
    pub join: bool,
    /// Write nothing: run every step and report what a run would do.
    #[serde(skip)]
    pub dry_run: bool,
    /// Worker threads; the machine's parallelism for `None`.
    #[serde(skip)]
    pub threads: Option<usize>,
}

impl MigrateOptions {
    /// Every document, no retry, a real run, the machine's parallelism.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes at most `limit` documents.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether documents whose migration failed before are taken too.
    pub fn retry_failed(mut self, retry: bool) -> Self {
        self.retry_failed = retry;
        self
    }

    /// Whether the migration joins the run under way.
    pub fn join(mut self, join: bool) -> Self {
        self.join = join;
        self
    }

    /// Whether the run is a dry run.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Runs on this many worker threads.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }
}

/// A count as JSON Schema's `integer` allows it: `214`, and also `214.0` (JSON has one number
/// type); `null` is none.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer.deserialize_any(Whole)
}

/// A boolean; `null` is false.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(<Option<bool> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or(false))
}

struct Whole;

impl Visitor<'_> for Whole {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number from 0 to 18446744073709551615")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Some(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        u64::try_from(value)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        // 2^64: every whole f64 below it fits in a u64.
        const LIMIT: f64 = 18_446_744_073_709_551_616.0;
        if value.fract() == 0.0 && (0.0..LIMIT).contains(&value) {
            // Whole and in range: the cast is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return Ok(Some(value as u64));
        }
        Err(E::invalid_value(de::Unexpected::Float(value), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<MigrateOptions, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn options_read_limit_and_retry_failed_only() {
        assert_eq!(read("{}").unwrap(), MigrateOptions::new());
        assert_eq!(
            read(r#"{"limit": 3.0, "retry_failed": true}"#).unwrap(),
            MigrateOptions::new().limit(3).retry_failed(true)
        );
        assert_eq!(
            read(r#"{"limit": null, "retry_failed": null}"#).unwrap(),
            MigrateOptions::new()
        );
        for refused in [
            r#"{"limit": 2.5}"#,
            r#"{"limit": -1}"#,
            r#"{"limit": 1.0e30}"#,
            r#"{"limit": "3"}"#,
            r#"{"retry_failed": "yes"}"#,
            r#"{"dry_run": true}"#,
            r#"{"threads": 2}"#,
        ] {
            assert!(read(refused).is_err(), "{refused}");
        }
    }

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct NoteV1 {
        n: u32,
    }

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct NoteV2 {
        n: u64,
    }

    impl crate::Schema for NoteV1 {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, crate::StepError> {
            Ok(previous)
        }
    }

    impl crate::Schema for NoteV2 {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 2;
        type Previous = NoteV1;
        fn upgrade(previous: NoteV1) -> Result<Self, crate::StepError> {
            Ok(Self {
                n: previous.n.into(),
            })
        }
    }

    #[test]
    fn a_run_takes_its_options_and_each_progress_names_the_run() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = crate::Store::open(dir.path()).unwrap();
            let notes = store.collection::<NoteV1>().unwrap();
            for n in 0..3 {
                notes.insert(&NoteV1 { n }).unwrap();
            }
        }
        let store = crate::Store::open(dir.path()).unwrap();
        let notes = store.collection::<NoteV2>().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let progress = std::sync::Arc::clone(&seen);
        let report = notes
            .migrate()
            .options(&MigrateOptions::new().limit(2).dry_run(true).threads(1))
            .on_progress(move |p| progress.lock().unwrap().push(p.run_id))
            .run()
            .unwrap();
        assert!(report.dry_run);
        assert_eq!((report.scanned, report.remaining), (2, 1));
        assert_eq!(*seen.lock().unwrap(), [report.run_id.unwrap()]);

        let report = notes
            .migrate()
            .options(&MigrateOptions::new())
            .run()
            .unwrap();
        assert!(!report.dry_run);
        assert_eq!((report.migrated, report.remaining), (3, 0));
    }
}
