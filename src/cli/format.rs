//! Text, JSON and progress rendering shared by the `cli` module and the `revolve` binary.
//!
//! The binary includes this file with `#[path]` rather than reaching it through the library, so
//! none of it becomes public API. It names revolve's types through `super::`, which resolves to
//! the `cli` module in the library and to the crate root in the binary.

use std::io::{self, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

pub(crate) use super::time::rfc3339 as timestamp;
use super::{RunKind, RunRecord, RunState};

/// A progress bar on standard error, hidden when standard error is not a terminal. `len` unknown
/// draws a counter instead of a bar; a `unit` of `bytes` counts in KiB, MiB, ….
pub(crate) fn progress_bar(len: Option<u64>, unit: &'static str) -> ProgressBar {
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
pub(crate) fn write_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// Seconds with two decimals: `1.25 s`.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// Runs as a table, one line each.
// The enums are `#[non_exhaustive]` for the binary that includes this file, so it needs the
// wildcard arms, which inside the library can never match.
#[allow(unreachable_patterns)]
pub(crate) fn write_runs(out: &mut dyn Write, runs: &[RunRecord]) -> io::Result<()> {
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
            _ => "other".to_owned(),
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
            _ => "other".to_owned(),
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
    }
    Ok(())
}
