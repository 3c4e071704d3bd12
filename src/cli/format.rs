//! Text, JSON and progress rendering shared by the `cli` module and the `revolve` binary, which
//! reaches it through the hidden [`__bin`](super::__bin) module: it is not public API.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::{Failure, RunKind, RunRecord, RunState};

/// A time as RFC 3339 in UTC, to the microsecond: `2026-12-06T11:16:19.123456Z`.
#[must_use]
pub fn timestamp(time: SystemTime) -> String {
    crate::time::rfc3339(time)
}

/// A progress bar on standard error, hidden when standard error is not a terminal. `len` unknown
/// draws a counter instead of a bar; a `unit` of `bytes` counts in KiB, MiB, ….
#[must_use]
pub fn progress_bar(len: Option<u64>, unit: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = match (len.is_some(), unit) {
        (true, "bytes") => "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta})",
        (true, _) => {
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ({per_sec}, {eta})"
        }
        (false, "bytes") => "{spinner} [{elapsed_precise}] {bytes} ({bytes_per_sec})",
        (false, _) => "{spinner} [{elapsed_precise}] {pos} {msg} ({per_sec})",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(unit);
    bar
}

/// `value` as pretty JSON and a newline.
///
/// # Errors
///
/// When `out` cannot be written or `value` does not serialize.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// Seconds with two decimals: `1.25 s`.
#[must_use]
pub fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// Runs as a table, one line each.
///
/// # Errors
///
/// When `out` cannot be written.
pub fn write_runs(out: &mut dyn Write, runs: &[RunRecord]) -> io::Result<()> {
    writeln!(
        out,
        "{:>10}  {:<16}  {:<16}  {:<20}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  STARTED",
        "RUN",
        "COLLECTION",
        "KIND",
        "STATE",
        "VERSIONS",
        "SCANNED",
        "MIGRATED",
        "FAILED",
        "SKIPPED"
    )?;
    for run in runs {
        let kind = match run.kind {
            RunKind::Migration if run.dry_run => "dry run".to_owned(),
            RunKind::Migration => "migration".to_owned(),
            RunKind::Revert { of } => format!("revert of {of}"),
        };
        let state = match run.state {
            RunState::Running => "running".to_owned(),
            RunState::Done => "done".to_owned(),
            RunState::DoneWithFailures => "done with failures".to_owned(),
            RunState::Cancelled => "cancelled".to_owned(),
            RunState::Interrupted => "interrupted".to_owned(),
            RunState::Reverted => match run.reverted_by {
                Some(by) => format!("reverted by {by}"),
                None => "reverted".to_owned(),
            },
        };
        let from = if run.from_versions.is_empty() {
            "-".to_owned()
        } else {
            run.from_versions
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        writeln!(
            out,
            "{:>10}  {:<16}  {:<16}  {:<20}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {}",
            run.id,
            run.collection,
            kind,
            state,
            format!("{from}->{}", run.to_version),
            run.scanned,
            run.migrated,
            run.failed,
            run.skipped,
            timestamp(run.started)
        )?;
        for worker in &run.workers {
            writeln!(
                out,
                "{:>10}  worker {} on {} (pid {}){}: taken {}, migrated {}, failed {}, skipped {}; started {}, last heartbeat {}",
                "",
                worker.instance,
                worker.host,
                worker.pid,
                if worker.live { ", live" } else { "" },
                worker.taken,
                worker.migrated,
                worker.failed,
                worker.skipped,
                timestamp(worker.started),
                timestamp(worker.heartbeat),
            )?;
        }
    }
    Ok(())
}

/// How many failure records one read takes when a listing pages through a failure set.
const FAILURE_PAGE: usize = 1000;

/// Up to `limit` documents of a failure set (all of them for `None`) after the id `after`, read
/// page by page with `fetch(after, limit)`; and the id to list after when more follow.
///
/// # Errors
///
/// The first error of `fetch`.
pub fn collect_failures<E>(
    mut fetch: impl FnMut(Option<&str>, usize) -> Result<Vec<Failure>, E>,
    after: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<Failure>, Option<String>), E> {
    let want = limit.unwrap_or(usize::MAX);
    let mut failures: Vec<Failure> = Vec::new();
    let mut cursor = after.map(ToOwned::to_owned);
    loop {
        // One more than wanted tells whether more follow.
        let take = (want - failures.len()).saturating_add(1).min(FAILURE_PAGE);
        let page = fetch(cursor.as_deref(), take)?;
        let full = page.len() == take;
        cursor = page.last().map(|failure| failure.id.to_string());
        for failure in page {
            if failures.len() == want {
                let next = failures.last().map(|failure| failure.id.to_string());
                return Ok((failures, next));
            }
            failures.push(failure);
        }
        if !full {
            return Ok((failures, None));
        }
    }
}

/// A collection's failed documents, one line each, and how to list the ones that follow. The
/// count heads the lines as the whole failure set's only when the listing started at its
/// beginning (`paged` false) and nothing follows; otherwise it counts the lines listed.
///
/// # Errors
///
/// When `out` cannot be written.
pub fn write_failures(
    out: &mut dyn Write,
    collection: &str,
    failures: &[Failure],
    paged: bool,
    next: Option<&str>,
) -> io::Result<()> {
    let (n, plural) = (failures.len(), if failures.len() == 1 { "" } else { "s" });
    if paged || next.is_some() {
        writeln!(
            out,
            "{collection}: {n} failed document{plural} listed (a page of the failure set)"
        )?;
    } else if n == 0 {
        writeln!(out, "{collection}: no failed documents")?;
    } else {
        writeln!(out, "{collection}: {n} failed document{plural}")?;
    }
    for failure in failures {
        writeln!(
            out,
            "  {} revision {} at version {} ({}): {}",
            failure.id, failure.revision, failure.from_version, failure.class, failure.error
        )?;
    }
    if let Some(next) = next {
        writeln!(out, "  more follow: list them with --after {next}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure set of `n` documents, `id0000`, `id0001`, …, in id order.
    fn failure_set(n: usize) -> Vec<Failure> {
        (0..n)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "id": format!("id{i:04}"),
                    "revision": 1,
                    "from_version": 1,
                    "class": "step",
                    "error": "refused",
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn failures_are_collected_page_by_page_and_next_is_given_only_when_more_follow() {
        let set = failure_set(2500);
        let mut reads = Vec::new();
        let mut fetch = |after: Option<&str>, limit: usize| {
            reads.push(limit);
            Ok::<_, std::convert::Infallible>(
                set.iter()
                    .filter(|failure| after.map_or(true, |after| failure.id.as_str() > after))
                    .take(limit)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        for (limit, listed, next) in [
            (None, 2500, None),
            (Some(1), 1, Some("id0000")),
            (Some(999), 999, Some("id0998")),
            (Some(1000), 1000, Some("id0999")),
            (Some(1001), 1001, Some("id1000")),
            (Some(2499), 2499, Some("id2498")),
            (Some(2500), 2500, None),
            (Some(2501), 2500, None),
        ] {
            let (failures, cursor) = collect_failures(&mut fetch, None, limit).unwrap();
            assert_eq!(failures[..], set[..listed], "limit {limit:?}");
            assert_eq!(cursor.as_deref(), next, "limit {limit:?}");
        }
        // From the middle: the documents after the id, and on to the end.
        let (failures, cursor) = collect_failures(&mut fetch, Some("id1499"), None).unwrap();
        assert_eq!((&failures[..], cursor), (&set[1500..], None));
        let (failures, cursor) = collect_failures(&mut fetch, Some("id1499"), Some(1000)).unwrap();
        assert_eq!((&failures[..], cursor), (&set[1500..], None));
        let (failures, cursor) = collect_failures(&mut fetch, Some("id2499"), Some(5)).unwrap();
        assert_eq!((failures.len(), cursor), (0, None));
        // No read asks for more than a page.
        assert!(
            reads.iter().all(|&limit| limit <= FAILURE_PAGE),
            "{reads:?}"
        );
    }
}
