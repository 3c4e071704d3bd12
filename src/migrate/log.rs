//! What migrations and reverts tell an operator through `tracing`.
//!
//! - a span `migration` per run (collection, run, from → to versions, dry run, limit, retry),
//!   with its counts, state and time recorded when it ends, and an `info` event at its start and
//!   end (a `warn` if it stops on an error);
//! - a span `chunk` per committed chunk (`debug`), with the chunk's counts and commit time;
//! - one `warn` per chunk that had failures: counts per failure class and the first failing id;
//! - one `debug` event per failed document with the step's message, which may quote the payload:
//!   that is why it is never above `debug`;
//! - a span `revert` per revert, with an `info` event when it ends.
//!
//! Never a payload, and never a credential: fields are ids, versions, counts and times.

use std::error::Error as StdError;
use std::time::Duration;

use tracing::field::Empty;
use tracing::{debug, debug_span, info, info_span, warn, Span};

use super::ledger::{RunProgress, RunRecord};
use super::FailureClass;

/// Whole milliseconds, for log fields.
pub(super) fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// The span of a migration run; entered by the calling thread for the whole run.
pub(super) fn run_span(record: &RunRecord, from: &[u32]) -> Span {
    info_span!(
        "migration",
        collection = %record.collection,
        run = record.id,
        from = ?from,
        to = record.to_version,
        dry_run = record.dry_run,
        limit = record.limit,
        retry_failed = record.retry_failed,
        scanned = Empty,
        migrated = Empty,
        failed = Empty,
        skipped = Empty,
        state = Empty,
        elapsed_ms = Empty,
    )
}

/// The run has its ledger record and starts its pipeline.
pub(super) fn run_started(total: u64) {
    info!(candidates = total, "migration run started");
}

/// The run ended (done, with failures, or cancelled): its counts go on the span and in an event.
pub(super) fn run_finished(span: &Span, record: &RunRecord, remaining: u64, elapsed: Duration) {
    let state = format!("{:?}", record.state);
    span.record("scanned", record.scanned)
        .record("migrated", record.migrated)
        .record("failed", record.failed)
        .record("skipped", record.skipped)
        .record("state", state.as_str())
        .record("elapsed_ms", millis(elapsed));
    info!(
        scanned = record.scanned,
        migrated = record.migrated,
        failed = record.failed,
        skipped = record.skipped,
        remaining,
        state = %state,
        elapsed_ms = millis(elapsed),
        "migration run finished"
    );
}

/// The run stopped on an error; the chunks committed before it stay. The warning carries the
/// error's own message only: its sources may quote stored values (a payload that does not
/// decode), so the whole chain is at `debug`.
pub(super) fn run_stopped(span: &Span, record: &RunRecord, error: &dyn StdError) {
    span.record("scanned", record.scanned)
        .record("migrated", record.migrated)
        .record("failed", record.failed)
        .record("skipped", record.skipped)
        .record("state", "Interrupted");
    warn!(
        error = %error,
        scanned = record.scanned,
        migrated = record.migrated,
        "migration run stopped on an error; the chunks committed before it stay"
    );
    debug!(error = %chain(error), "the error that stopped the migration run");
}

/// The span of one chunk's commit.
pub(super) fn chunk_span(index: u64, documents: usize) -> Span {
    debug_span!(
        "chunk",
        index,
        documents,
        migrated = Empty,
        failed = Empty,
        skipped = Empty,
        commit_ms = Empty,
    )
}

/// A chunk is committed (durable, as the store's durability says): its counts go on its span,
/// and a chunk with failures is one warning.
pub(super) fn chunk_committed(
    span: &Span,
    counts: &RunProgress,
    commit: Duration,
    first_failed: Option<&str>,
) {
    span.record("migrated", counts.migrated)
        .record("failed", counts.failed)
        .record("skipped", counts.skipped)
        .record("commit_ms", millis(commit));
    if counts.failed == 0 {
        return;
    }
    let class = |class| counts.failures_by_class.get(&class).copied().unwrap_or(0);
    warn!(
        failed = counts.failed,
        step = class(FailureClass::Step),
        panic = class(FailureClass::Panic),
        decode = class(FailureClass::Decode),
        invalid_output = class(FailureClass::InvalidOutput),
        first_failed_id = first_failed.unwrap_or_default(),
        "documents of a chunk failed to migrate; they stay as they were, in the failure set"
    );
}

/// One document failed. The message may quote the payload: `debug` only.
pub(super) fn document_failed(
    id: &str,
    revision: u64,
    version: u32,
    class: FailureClass,
    error: &str,
) {
    debug!(
        id,
        revision,
        version,
        class = %class,
        error,
        "document failed to migrate"
    );
}

/// The span of a revert.
pub(super) fn revert_span(collection: &str, revert: u64, of: u64) -> Span {
    info_span!("revert", collection, run = revert, of)
}

/// A revert ended.
pub(super) fn revert_finished(reverted: u64, changed: usize, elapsed: Duration) {
    info!(
        reverted,
        changed,
        elapsed_ms = millis(elapsed),
        "revert finished; documents written since the run were left alone"
    );
}

pub(super) use crate::error::format::chain;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::record::RecordError;
    use crate::store::StoreError;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A stored value quoted by the error's source is logged at `debug` only, never at `warn`.
    #[test]
    fn a_stopped_run_warns_without_the_stored_values_its_error_quotes() {
        // As serde reports a stored value it did not expect.
        let quoting: rmp_serde::decode::Error = serde::de::Error::invalid_value(
            serde::de::Unexpected::Str("payload-secret"),
            &"a version number",
        );
        assert!(quoting.to_string().contains("payload-secret"));
        let error = crate::MigrationError::Store(StoreError::Corrupt {
            collection: "notes".to_owned(),
            id: "a".to_owned(),
            revision: None,
            source: RecordError::Payload(quoting),
        });
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let record = RunRecord::new(7, "notes", super::super::RunKind::Migration, 2);
            run_stopped(&Span::none(), &record, &error);
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let warned: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warned.len(), 1, "{text}");
        assert!(warned[0].contains("corrupt record"), "{text}");
        assert!(!warned[0].contains("payload-secret"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("DEBUG") && l.contains("payload-secret")),
            "{text}"
        );
    }
}
