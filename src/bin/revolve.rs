//! `revolve`: the operator's command line for a revolve store. It works on any store without the
//! application's types: payloads are shown as JSON.
//!
//! ```text
//! revolve stats    <PATH>                         collections, documents per version, size
//! revolve history  <PATH> <COLLECTION> <ID>       every revision of a document, payloads as JSON
//! revolve runs     <PATH> [COLLECTION]            the migration ledger, newest first
//! revolve failures <PATH> <COLLECTION> [--after ID] [--limit N]
//!                                                 documents whose migration failed
//! revolve verify   <PATH> [--repair]              check every chain, head and counter
//! revolve export   <PATH> <FILE>                  a backup of every key
//! revolve import   <FILE> <PATH>                  restore a backup into a new store
//! ```
//!
//! Every command takes `--json`, and `--log-format text|json` (or `REVOLVE_LOG_FORMAT`) for the log
//! events written to standard error, which `RUST_LOG` filters (warnings and errors by default).
//! Exit codes: 0 done, 1 failed, 2 usage, 3 problems found
//! (`verify`), 4 database locked by another process (see `revolve::cli::Status`). Migrations need
//! the application's types: see `revolve::cli::run` for the `migrate` commands in its own binary.

#[path = "../cli/format.rs"]
mod format;
#[path = "../cli/logs.rs"]
mod logs;
#[path = "../time.rs"]
mod time;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use revolve::cli::Status;
use revolve::{Failure, Origin, RunKind, RunRecord, RunState, Store, StoreError};
use serde::Serialize;

use crate::format::{progress_bar, seconds, timestamp, write_json, write_runs};
use crate::logs::LogFormat;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  the command failed
  2  the command line does not parse
  3  verify found problems (left after --repair)
  4  another process has the database open";

/// Operate a revolve store: statistics, history, the migration ledger, consistency checks and
/// backups. Works without the application's types.
#[derive(Debug, Parser)]
#[command(name = "revolve", version, after_help = EXIT_CODES)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait for a database another process has open, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 2.0)]
    lock_timeout: f64,
    /// How log events are written to standard error; `RUST_LOG` chooses which (warnings and
    /// errors by default).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "REVOLVE_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Collections, documents per version, removed and failed documents, size on disk.
    Stats {
        /// The store's directory.
        path: PathBuf,
    },
    /// Every revision of one document, with its payload as JSON.
    History {
        /// The store's directory.
        path: PathBuf,
        /// The collection.
        collection: String,
        /// The document's id.
        id: String,
    },
    /// The migration ledger, newest first.
    Runs {
        /// The store's directory.
        path: PathBuf,
        /// One collection; all of them by default.
        collection: Option<String>,
    },
    /// The failure set: documents whose migration failed, and that runs skip, in id order.
    Failures {
        /// The store's directory.
        path: PathBuf,
        /// The collection.
        collection: String,
        /// List the documents after this id (as a previous listing's last line says).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        /// List at most this many; all of them by default.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Check every revision, chain, head, counter, failure record and cursor.
    Verify {
        /// The store's directory.
        path: PathBuf,
        /// Recompute the counters from the heads (and drop stale failure records), then check
        /// again.
        #[arg(long)]
        repair: bool,
    },
    /// Write a backup of every key of the store to a file.
    Export {
        /// The store's directory.
        path: PathBuf,
        /// The backup file to write.
        file: PathBuf,
    },
    /// Restore a backup into a new, empty store.
    Import {
        /// The backup file.
        file: PathBuf,
        /// The new store's directory.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                Status::Usage
            } else {
                Status::Success
            }
            .into();
        }
    };
    if let Some(warning) = logs::install(cli.log_format) {
        eprintln!("revolve: warning: {warning}");
    }
    match run(&cli) {
        Ok(status) => status.into(),
        Err(error) => {
            if let Some(locked) = locked(&error) {
                eprintln!("revolve: {locked}");
                return Status::Locked.into();
            }
            eprintln!("revolve: error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            Status::Error.into()
        }
    }
}

/// The lock error somewhere in `error`'s chain.
fn locked(error: &anyhow::Error) -> Option<&StoreError> {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<StoreError>())
        .find(|cause| matches!(cause, StoreError::Locked { .. }))
}

fn run(cli: &Cli) -> anyhow::Result<Status> {
    let mut out = io::stdout().lock();
    let out: &mut dyn Write = &mut out;
    match &cli.command {
        Command::Stats { path } => stats(&open(cli, path)?, path, cli.json, out),
        Command::History {
            path,
            collection,
            id,
        } => history(&open(cli, path)?, collection, id, cli.json, out),
        Command::Runs { path, collection } => {
            runs(&open(cli, path)?, collection.as_deref(), cli.json, out)
        }
        Command::Failures {
            path,
            collection,
            after,
            limit,
        } => failures(
            &open(cli, path)?,
            collection,
            after.as_deref(),
            *limit,
            cli.json,
            out,
        ),
        Command::Verify { path, repair } => verify(&open(cli, path)?, *repair, cli.json, out),
        Command::Export { path, file } => export(&open(cli, path)?, path, file, cli.json, out),
        Command::Import { file, path } => import(file, path, cli.json, out),
    }
}

/// Opens an existing store; refuses a path that holds none rather than creating one.
fn open(cli: &Cli, path: &Path) -> anyhow::Result<Store> {
    if !path.join("db").is_file() {
        bail!("no revolve store at {}", path.display());
    }
    let timeout = Duration::try_from_secs_f64(cli.lock_timeout)
        .context("--lock-timeout must be a number of seconds, 0 or more")?;
    Store::builder()
        .path(path)
        .lock_timeout(timeout)
        .open()
        .with_context(|| format!("cannot open the store at {}", path.display()))
}

fn stats(store: &Store, path: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<Status> {
    let stats = store.stats()?;
    if json {
        write_json(out, &stats)?;
        return Ok(Status::Success);
    }
    writeln!(
        out,
        "store {}: {} collections, {} on disk",
        path.display(),
        stats.collections.len(),
        human_bytes(stats.size_on_disk)
    )?;
    for collection in &stats.collections {
        writeln!(
            out,
            "{}: {} documents, {} removed (newest version {})",
            collection.name,
            collection.documents(),
            collection.removed,
            collection.newest_version
        )?;
        for (version, count) in &collection.live {
            match collection.failed.get(version) {
                Some(failed) => writeln!(
                    out,
                    "  version {version}: {count} documents, {failed} failed to migrate"
                )?,
                None => writeln!(out, "  version {version}: {count} documents")?,
            }
        }
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct HistoryOutput<'a> {
    collection: &'a str,
    id: &'a str,
    revisions: Vec<RevisionOutput>,
}

#[derive(Serialize)]
struct RevisionOutput {
    revision: u64,
    parent: Option<u64>,
    version: Option<u32>,
    removed: bool,
    origin: Origin,
    timestamp: String,
    payload: Option<serde_json::Value>,
}

fn history(
    store: &Store,
    collection: &str,
    id: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let raw = store.raw_collection(collection)?;
    let infos = raw.history(id)?;
    if infos.is_empty() {
        bail!("no document `{id}` in `{collection}`");
    }
    let mut revisions = Vec::with_capacity(infos.len());
    for info in infos {
        let payload = if info.removed {
            None
        } else {
            raw.raw_revision(id, info.revision)?
                .and_then(|raw| raw.payload)
        };
        revisions.push(RevisionOutput {
            revision: info.revision.get(),
            parent: info.parent.map(revolve::Revision::get),
            version: info.version,
            removed: info.removed,
            origin: info.origin,
            timestamp: timestamp(info.timestamp),
            payload,
        });
    }
    if json {
        write_json(
            out,
            &HistoryOutput {
                collection,
                id,
                revisions,
            },
        )?;
        return Ok(Status::Success);
    }
    writeln!(out, "{collection} {id}: {} revisions", revisions.len())?;
    for revision in &revisions {
        let origin = match revision.origin {
            Origin::Write => "write".to_owned(),
            Origin::Migration { run } => format!("migration {run}"),
            Origin::Revert { run } => format!("revert of {run}"),
            Origin::UpgradeOnRead => "upgrade on read".to_owned(),
            _ => "other".to_owned(),
        };
        let state = match revision.version {
            Some(version) => format!("version {version}"),
            None => "removed".to_owned(),
        };
        writeln!(
            out,
            "revision {}  {}  {origin}  {state}",
            revision.revision, revision.timestamp
        )?;
        if let Some(payload) = &revision.payload {
            writeln!(out, "  {}", serde_json::to_string(payload)?)?;
        }
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct RunsOutput<'a> {
    runs: &'a [RunRecord],
}

fn runs(
    store: &Store,
    collection: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let names = match collection {
        Some(name) => vec![name.to_owned()],
        None => store.collection_names()?,
    };
    let mut runs = Vec::new();
    for name in &names {
        let raw = store.raw_collection(name)?;
        let mut before = None;
        // Page through the whole ledger, newest first.
        loop {
            let page = raw.runs_page(before, 100)?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            let full = page.len() == 100;
            runs.extend(page);
            if !full {
                break;
            }
        }
    }
    runs.sort_by_key(|run| std::cmp::Reverse(run.id));
    if json {
        write_json(out, &RunsOutput { runs: &runs })?;
    } else if runs.is_empty() {
        writeln!(out, "no runs")?;
    } else {
        write_runs(out, &runs)?;
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct FailuresOutput<'a> {
    collection: &'a str,
    failures: &'a [Failure],
    next: Option<&'a str>,
}

fn failures(
    store: &Store,
    collection: &str,
    after: Option<&str>,
    limit: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let raw = store.raw_collection(collection)?;
    let limit = limit.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
    let (failures, next) =
        format::collect_failures(|after, limit| raw.failures_page(after, limit), after, limit)?;
    if json {
        write_json(
            out,
            &FailuresOutput {
                collection,
                failures: &failures,
                next: next.as_deref(),
            },
        )?;
    } else {
        format::write_failures(out, collection, &failures, after.is_some(), next.as_deref())?;
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct VerifyOutput<'a, Report, Repair> {
    ok: bool,
    report: &'a Report,
    repair: Option<&'a Repair>,
    after_repair: Option<&'a Report>,
}

fn verify(store: &Store, repair: bool, json: bool, out: &mut dyn Write) -> anyhow::Result<Status> {
    // The counters give the bar's length; a store whose counters do not load gets a counter.
    let total = store.stats().ok().map(|stats| {
        stats
            .collections
            .iter()
            .map(|c| c.documents() + c.removed)
            .sum()
    });
    let bar = progress_bar(total, "documents");
    let report = store.verify_with_progress(|done| bar.set_position(done));
    bar.finish_and_clear();
    let report = report?;
    let (repaired, after) = if repair {
        let repaired = store.repair_counters()?;
        (Some(repaired), Some(store.verify()?))
    } else {
        (None, None)
    };
    let ok = after.as_ref().unwrap_or(&report).is_ok();
    let status = if ok {
        Status::Success
    } else {
        Status::Problems
    };
    if json {
        write_json(
            out,
            &VerifyOutput {
                ok,
                report: &report,
                repair: repaired.as_ref(),
                after_repair: after.as_ref(),
            },
        )?;
        return Ok(status);
    }
    writeln!(
        out,
        "checked {} collections, {} documents, {} revisions: {}",
        report.collections,
        report.documents,
        report.revisions,
        problems(report.problem_count)
    )?;
    for problem in &report.problems {
        writeln!(out, "  {problem}")?;
    }
    let listed = report.problems.len() as u64;
    if report.problem_count > listed {
        writeln!(out, "  … and {} more", report.problem_count - listed)?;
    }
    if let (Some(repaired), Some(after)) = (&repaired, &after) {
        writeln!(
            out,
            "repair: {} counters rewritten, {} malformed counters and {} stale failure records removed",
            repaired.counters.len(),
            repaired.malformed_counters_removed,
            repaired.stale_failures_removed
        )?;
        for change in &repaired.counters {
            writeln!(
                out,
                "  `{}`: {}: {} -> {}",
                change.collection, change.counter, change.before, change.after
            )?;
        }
        writeln!(out, "after repair: {}", problems(after.problem_count))?;
        for problem in &after.problems {
            writeln!(out, "  {problem}")?;
        }
    }
    Ok(status)
}

fn problems(count: u64) -> String {
    match count {
        0 => "no problems".to_owned(),
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    }
}

#[derive(Serialize)]
struct BackupOutput<'a, Summary> {
    file: &'a Path,
    store: &'a Path,
    #[serde(flatten)]
    summary: &'a Summary,
}

fn export(
    store: &Store,
    path: &Path,
    file: &Path,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    // Written next to the file and renamed once complete, so that a failed export never leaves
    // a partial backup under the name asked for.
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut writer =
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let bar = progress_bar(None, "keys");
    let result = store.export(&mut writer, |keys| bar.set_position(keys));
    bar.finish_and_clear();
    let result = result.map_err(anyhow::Error::from).and_then(|summary| {
        writer.sync_all()?;
        Ok(summary)
    });
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            let _ = fs::remove_file(&partial);
            return Err(error).context(format!("cannot export to {}", file.display()));
        }
    };
    fs::rename(&partial, file)
        .with_context(|| format!("cannot move the backup to {}", file.display()))?;
    if json {
        write_json(
            out,
            &BackupOutput {
                file,
                store: path,
                summary: &summary,
            },
        )?;
    } else {
        writeln!(
            out,
            "exported {} keys of {} trees to {} ({}, sha256 {})",
            summary.entries,
            summary.trees,
            file.display(),
            human_bytes(summary.bytes),
            summary.checksum
        )?;
    }
    Ok(Status::Success)
}

fn import(file: &Path, path: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<Status> {
    // A mistyped path must not scatter database files among someone's other files: the target is
    // new, empty, or a store (which `Store::import` then checks is empty).
    let occupied = fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some());
    if occupied && !path.join("db").is_file() {
        bail!(
            "{} is a directory with other files; import into a new directory",
            path.display()
        );
    }
    let reader = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let len = reader.metadata().map(|metadata| metadata.len()).ok();
    let bar = progress_bar(len, "bytes");
    let started = std::time::Instant::now();
    let result = Store::import(path, bar.wrap_read(reader), |_| {});
    bar.finish_and_clear();
    let summary = result
        .with_context(|| format!("cannot import {} into {}", file.display(), path.display()))?;
    if json {
        write_json(
            out,
            &BackupOutput {
                file,
                store: path,
                summary: &summary,
            },
        )?;
    } else {
        writeln!(
            out,
            "imported {} keys of {} trees into {} ({}, {})",
            summary.entries,
            summary.trees,
            path.display(),
            human_bytes(summary.bytes),
            seconds(started.elapsed())
        )?;
    }
    Ok(Status::Success)
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision beyond a float's 53 bits is irrelevant for display.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
