//! How the API shows the library's records: times as RFC 3339 strings in UTC
//! (`2026-12-06T11:16:19.123456Z`) and durations as whole milliseconds (`elapsed_ms`), as the
//! command line does, never serde's `{"secs_since_epoch": …}` or `{"secs": …, "nanos": …}`.
//!
//! The library's types keep `SystemTime` and `Duration` (the ledger stores them as they are), so
//! the conversion happens here, on the way out.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::time::rfc3339;
use crate::{MigrationReport, RevertReport, RevisionInfo, RunRecord, SchemaRecord};

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn to_json(value: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

fn time(time: SystemTime) -> Value {
    Value::String(rfc3339(time))
}

/// Replaces the member `elapsed` of a serialised report with `elapsed_ms`.
fn elapsed_ms(mut value: Value, elapsed: Duration) -> Value {
    if let Value::Object(members) = &mut value {
        members.remove("elapsed");
        members.insert("elapsed_ms".to_owned(), json!(millis(elapsed)));
    }
    value
}

/// One revision's metadata.
pub(crate) fn revision(info: &RevisionInfo) -> Value {
    json!({
        "revision": info.revision,
        "parent": info.parent,
        "version": info.version,
        "removed": info.removed,
        "origin": info.origin,
        "timestamp": time(info.timestamp),
    })
}

/// A ledger record: `started` and `finished` as RFC 3339.
pub(crate) fn run(record: &RunRecord) -> Result<Value, ApiError> {
    let mut value = to_json(record)?;
    value["started"] = time(record.started);
    value["finished"] = record.finished.map_or(Value::Null, time);
    if let Some(Value::Array(workers)) = value.get_mut("workers") {
        for (worker, record) in workers.iter_mut().zip(&record.workers) {
            worker["started"] = time(record.started);
            worker["heartbeat"] = time(record.heartbeat);
        }
    }
    Ok(value)
}

/// Ledger records.
pub(crate) fn runs(records: &[RunRecord]) -> Result<Value, ApiError> {
    records
        .iter()
        .map(run)
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A migration report, with `elapsed_ms`.
pub(crate) fn report(report: &MigrationReport) -> Result<Value, ApiError> {
    Ok(elapsed_ms(to_json(report)?, report.elapsed))
}

/// A revert report, with `elapsed_ms`.
pub(crate) fn revert(report: &RevertReport) -> Result<Value, ApiError> {
    Ok(elapsed_ms(to_json(report)?, report.elapsed))
}

/// A collection's schema history: `recorded` as RFC 3339.
pub(crate) fn schema_history(records: &[SchemaRecord]) -> Result<Value, ApiError> {
    records
        .iter()
        .map(|record| {
            let mut value = to_json(record)?;
            value["recorded"] = time(record.recorded);
            Ok(value)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn elapsed_becomes_whole_milliseconds() {
        let value = elapsed_ms(
            json!({ "elapsed": { "secs": 1, "nanos": 5 }, "scanned": 3 }),
            Duration::from_micros(1_250_900),
        );
        assert_eq!(value, json!({ "elapsed_ms": 1250, "scanned": 3 }));
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(time(UNIX_EPOCH), json!("1970-01-01T00:00:00.000000Z"));
    }
}
