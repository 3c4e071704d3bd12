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
//! revolve export   <PATH> <FILE|-> [--salvage]    a backup of every record (`-`: standard output)
//! revolve import   <FILE|-> <PATH> [--accept-salvaged]
//!                                                 restore a backup into a new store
//! revolve repair   <PATH> --rebuild-snapshot      rebuild a damaged snapshot from the log
//! revolve pg-layout --print                       the PostgreSQL tables' DDL, for roles without CREATE
//! ```
//!
//! `<PATH>` is a store's directory or a PostgreSQL URL (`postgres://user:password@host/database`,
//! `postgresql://…`; a schema other than `public` with `?options=-csearch_path%3Dschema`). Where
//! a command names the store it opened, a URL's password shows as `****`. `salvage` (`export
//! --salvage`, `import --accept-salvaged`) and `repair` are for a directory's files: on a URL
//! they fail.
//!
//! Every command takes `--json`, and `--log-format text|json` (or `REVOLVE_LOG_FORMAT`) for the log
//! events written to standard error, which `RUST_LOG` filters (warnings and errors by default).
//! Exit codes: 0 done, 1 failed, 2 usage, 3 problems found
//! (`verify`), 4 database locked by another process (see `revolve::cli::Status`). Migrations need
//! the application's types: see `revolve::cli::run` for the `migrate` commands in its own binary.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use revolve::cli::{Location, Status};
use revolve::{Failure, Origin, Problem, RunRecord, SnapshotRebuild, Store, StoreError};
use serde::Serialize;

use revolve::cli::__bin::{
    self as render, progress_bar, seconds, timestamp, write_json, write_runs, LogFormat,
};

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
        /// The store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
    },
    /// Every revision of one document, with its payload as JSON.
    History {
        /// The store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
        /// The collection.
        collection: String,
        /// The document's id.
        id: String,
    },
    /// The migration ledger, newest first.
    Runs {
        /// The store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
        /// One collection; all of them by default.
        collection: Option<String>,
    },
    /// The failure set: documents whose migration failed, and that runs skip, in id order.
    Failures {
        /// The store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
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
        /// The store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
        /// Recompute the counters from the heads (and drop stale failure records), then check
        /// again.
        #[arg(long)]
        repair: bool,
    },
    /// Write a backup of the store (every collection, head, revision, failure record and ledger
    /// run) to a file.
    Export {
        /// The store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
        /// The backup file to write; `-` for standard output. A FIFO or device is written
        /// through, never replaced.
        file: PathBuf,
        /// Save what is still readable from a damaged store, and list what is not; the backup
        /// is marked salvaged.
        #[arg(long)]
        salvage: bool,
    },
    /// Repair the files of a closed store.
    Repair {
        /// The store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
        /// Move the newest `snap.*` file aside, rebuild it from the log, and verify the store;
        /// put everything back as it was if the store does not open or verify without it.
        #[arg(long, required = true)]
        rebuild_snapshot: bool,
    },
    /// Restore a backup into a new, empty store.
    Import {
        /// The backup file; `-` for standard input.
        file: PathBuf,
        /// The new store's directory, or a `postgres://` URL.
        #[arg(value_name = "STORE")]
        path: Location,
        /// Accept a backup salvaged from a damaged store: rebuild the counters from the heads
        /// restored and report heads whose revisions were lost.
        #[arg(long)]
        accept_salvaged: bool,
    },
    /// The PostgreSQL layout: the SQL that creates revolve's tables, for an administrator to run
    /// once (with the search path set to the store's schema) where the store's role may not
    /// `CREATE`.
    PgLayout {
        /// Print the DDL to standard output.
        #[arg(long, required = true)]
        print: bool,
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
    if let Some(warning) = render::install(cli.log_format) {
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

/// The lock error somewhere in `error`'s chain; not for a repair that stopped part-way, whose
/// message names the directory of copies.
fn locked(error: &anyhow::Error) -> Option<&StoreError> {
    let repair = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<StoreError>(),
            Some(StoreError::RepairIncomplete { .. })
        )
    });
    if repair {
        return None;
    }
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<StoreError>())
        .find(|cause| matches!(cause, StoreError::Locked { .. }))
}

/// Whether `error`'s chain holds damage the storage engine found.
fn corrupt(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<StoreError>(),
            Some(StoreError::StorageCorrupt { .. } | StoreError::Poisoned { .. })
        )
    })
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
        Command::Verify { path, repair } => match open(cli, path) {
            Ok(store) => verify(&store, *repair, cli.json, out),
            // A store too damaged to open has problems too: exit 3, not 1.
            Err(error) if corrupt(&error) => {
                eprintln!("revolve: verify: {error:#}");
                Ok(Status::Problems)
            }
            Err(error) => Err(error),
        },
        Command::Export {
            path,
            file,
            salvage,
        } => {
            if *salvage {
                // Before connecting: salvage reads a directory's files.
                path.require_path("export --salvage")?;
            }
            export(&open(cli, path)?, path, file, *salvage, cli.json, out)
        }
        Command::Import {
            file,
            path,
            accept_salvaged,
        } => import(file, path, *accept_salvaged, cli.json, out),
        Command::Repair { path, .. } => rebuild_snapshot(cli, path, out),
        Command::PgLayout { .. } => {
            out.write_all(revolve::POSTGRES_LAYOUT.as_bytes())?;
            out.flush()?;
            Ok(Status::Success)
        }
    }
}

/// Opens an existing store; refuses a path that holds none rather than creating one. A URL's
/// store is opened as a program would (its tables created on first use).
fn open(cli: &Cli, location: &Location) -> anyhow::Result<Store> {
    if let Some(path) = location.path() {
        if !path.join("db").is_file() {
            bail!("no revolve store at {}", path.display());
        }
    }
    location
        .open(lock_timeout(cli)?)
        .with_context(|| format!("cannot open the store at {location}"))
}

fn lock_timeout(cli: &Cli) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(cli.lock_timeout)
        .context("--lock-timeout must be a number of seconds, 0 or more")
}

#[derive(Serialize)]
struct StatsOutput<'a, Stats> {
    counts: &'static str,
    #[serde(flatten)]
    stats: &'a Stats,
}

fn stats(
    store: &Store,
    location: &Location,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let stats = store.stats()?;
    if json {
        write_json(
            out,
            &StatsOutput {
                counts: "from the counters, not verified; `revolve verify` checks them",
                stats: &stats,
            },
        )?;
        return Ok(Status::Success);
    }
    writeln!(
        out,
        "store {}: {} collections, {} on disk\ncounts from the counters, not verified (`revolve verify` checks them)",
        location,
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
        render::collect_failures(|after, limit| raw.failures_page(after, limit), after, limit)?;
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
        render::write_failures(out, collection, &failures, after.is_some(), next.as_deref())?;
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
    let report = match report {
        Ok(report) => report,
        Err(error @ (StoreError::StorageCorrupt { .. } | StoreError::Poisoned { .. })) => {
            eprintln!("revolve: verify: {error}");
            return Ok(Status::Problems);
        }
        Err(error) => return Err(error.into()),
    };
    // Counters recomputed from what damage left readable would hide the loss: no repair then.
    let damaged = report.problems.iter().any(|problem| {
        matches!(
            problem,
            Problem::Unreadable { .. }
                | Problem::UnreadableHead { .. }
                | Problem::UnreadableRevision { .. }
                | Problem::Unaccounted { .. }
        )
    });
    if repair && damaged {
        eprintln!(
            "revolve: not repairing a damaged store; save what is readable with `revolve export --salvage`"
        );
    }
    let (repaired, after) = if repair && !damaged {
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
struct BackupOutput<'a, Summary, Unreadable> {
    file: &'a Path,
    /// The directory, or the URL without its password.
    store: String,
    #[serde(flatten)]
    summary: &'a Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<&'a Unreadable>,
}

/// Where an export writes.
enum Target {
    /// Standard output.
    Stdout,
    /// A FIFO or a character device: written through, never replaced.
    Through(File),
    /// A regular file (or none yet): written next to it and renamed over it once complete.
    Replace {
        partial: PathBuf,
        file: File,
        /// The file renamed over: the target of a symbolic link, so that the link stays.
        dest: PathBuf,
    },
}

/// Opens where an export writes (see [`Target`]). A symbolic link is followed: the backup is
/// written beside its target and replaces the target, never the link. Block devices, sockets
/// and directories are refused.
fn export_target(file: &Path) -> anyhow::Result<Target> {
    if file == Path::new("-") {
        return Ok(Target::Stdout);
    }
    let is_link =
        fs::symlink_metadata(file).is_ok_and(|metadata| metadata.file_type().is_symlink());
    let dest = if is_link {
        fs::canonicalize(file).with_context(|| {
            format!(
                "{} is a symbolic link whose target cannot be resolved; name the target",
                file.display()
            )
        })?
    } else {
        file.to_owned()
    };
    if let Ok(metadata) = fs::metadata(&dest) {
        let kind = metadata.file_type();
        if kind.is_dir() {
            bail!("{} is a directory; name a file", file.display());
        }
        if !kind.is_file() {
            #[cfg(unix)]
            let through = {
                use std::os::unix::fs::FileTypeExt;
                kind.is_fifo() || kind.is_char_device()
            };
            #[cfg(not(unix))]
            let through = false;
            if !through {
                bail!(
                    "{} is neither a regular file, a FIFO nor a character device (a block device or a socket); name another",
                    file.display()
                );
            }
            return Ok(Target::Through(
                fs::OpenOptions::new()
                    .write(true)
                    .open(&dest)
                    .with_context(|| format!("cannot open {}", file.display()))?,
            ));
        }
    }
    // Written next to the file and renamed once complete, so that a failed export never leaves
    // a partial backup under the name asked for. A `.partial` that exists already is another
    // export's (or a crashed one's): refused, never truncated.
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let writer = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .with_context(|| {
            format!(
                "cannot create {} (if an earlier export left it, remove it)",
                partial.display()
            )
        })?;
    Ok(Target::Replace {
        partial,
        file: writer,
        dest,
    })
}

fn export(
    store: &Store,
    location: &Location,
    file: &Path,
    salvage: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let target = export_target(file)?;
    let bar = progress_bar(None, "keys");
    let mut stdout;
    let writer: &mut dyn Write = match &target {
        Target::Stdout => {
            stdout = io::stdout().lock();
            &mut stdout
        }
        Target::Through(file) | Target::Replace { file, .. } => &mut &*file,
    };
    let result = if salvage {
        store
            .export_salvage(writer, |keys| bar.set_position(keys))
            .map(|report| (report.summary.clone(), report.unreadable))
    } else {
        store
            .export(writer, |keys| bar.set_position(keys))
            .map(|summary| (summary, Vec::new()))
    };
    bar.finish_and_clear();
    let result = result.map_err(anyhow::Error::from).and_then(|done| {
        if let Target::Replace { file, .. } = &target {
            file.sync_all()?;
        }
        Ok(done)
    });
    let (summary, unreadable) = match result {
        Ok(done) => done,
        Err(error) => {
            if let Target::Replace { partial, .. } = &target {
                let _ = fs::remove_file(partial);
            }
            return Err(error).context(format!("cannot export to {}", file.display()));
        }
    };
    if let Target::Replace { partial, dest, .. } = &target {
        fs::rename(partial, dest)
            .with_context(|| format!("cannot move the backup to {}", dest.display()))?;
    }
    // With the backup on standard output, the report goes to standard error.
    let mut stderr;
    let out: &mut dyn Write = if matches!(target, Target::Stdout) {
        stderr = io::stderr().lock();
        &mut stderr
    } else {
        out
    };
    let status = if unreadable.is_empty() {
        Status::Success
    } else {
        Status::Problems
    };
    if json {
        write_json(
            out,
            &BackupOutput {
                file,
                store: location.to_string(),
                summary: &summary,
                unreadable: salvage.then_some(&unreadable),
            },
        )?;
        return Ok(status);
    }
    writeln!(
        out,
        "exported {} records of {} collections to {} ({}, sha256 {}){}",
        summary.entries,
        summary.trees,
        file.display(),
        human_bytes(summary.bytes),
        summary.checksum,
        if salvage { ", salvaged" } else { "" }
    )?;
    if salvage {
        if unreadable.is_empty() {
            writeln!(out, "everything was readable")?;
        } else {
            writeln!(out, "could not read:")?;
            for problem in &unreadable {
                writeln!(out, "  {problem}")?;
            }
        }
    }
    Ok(status)
}

fn import(
    file: &Path,
    location: &Location,
    accept_salvaged: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    if accept_salvaged {
        location.require_path("import --accept-salvaged")?;
    }
    if let Some(path) = location.path() {
        // A mistyped path must not scatter database files among someone's other files: the
        // target is new, empty, or a store (which `Store::import` then checks is empty).
        let occupied = fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some());
        if occupied && !path.join("db").is_file() {
            bail!(
                "{} is a directory with other files; import into a new directory",
                path.display()
            );
        }
    }
    let (reader, len): (Box<dyn io::Read>, Option<u64>) = if file == Path::new("-") {
        (Box::new(io::stdin().lock()), None)
    } else {
        let reader = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let len = reader
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|metadata| metadata.len());
        (Box::new(reader), len)
    };
    let bar = progress_bar(len, "bytes");
    let started = std::time::Instant::now();
    let reader = bar.wrap_read(reader);
    let result = match location.path() {
        Some(path) if accept_salvaged => Store::import_salvaged(path, reader, |_| {}).map(|done| {
            let summary = done.summary.clone();
            (summary, Some(done))
        }),
        Some(path) => Store::import(path, reader, |_| {}).map(|summary| (summary, None)),
        // A database: into the store there, which must be empty.
        None => location
            .open(Duration::ZERO)
            .map_err(revolve::BackupError::from)
            .and_then(|store| store.import_into(reader, |_| {}))
            .map(|summary| (summary, None)),
    };
    bar.finish_and_clear();
    let (summary, salvaged) =
        result.with_context(|| format!("cannot import {} into {location}", file.display()))?;
    let status = match &salvaged {
        Some(done) if !done.report.is_ok() => Status::Problems,
        _ => Status::Success,
    };
    if json {
        write_json(
            out,
            &ImportOutput {
                file,
                store: location.to_string(),
                summary: &summary,
                salvaged: salvaged.as_ref(),
            },
        )?;
        return Ok(status);
    }
    writeln!(
        out,
        "imported {} {} of {} {} into {} ({}, {})",
        summary.entries,
        if summary.format == 1 {
            "keys"
        } else {
            "records"
        },
        summary.trees,
        if summary.format == 1 {
            "trees"
        } else {
            "collections"
        },
        location,
        human_bytes(summary.bytes),
        seconds(started.elapsed())
    )?;
    if let Some(done) = &salvaged {
        writeln!(
            out,
            "salvaged backup: {} counters rebuilt from the heads; verify: {}",
            done.repair.counters.len(),
            problems(done.report.problem_count)
        )?;
        for problem in &done.report.problems {
            writeln!(out, "  {problem}")?;
        }
    }
    Ok(status)
}

#[derive(Serialize)]
struct ImportOutput<'a, Summary, Salvaged> {
    file: &'a Path,
    /// The directory, or the URL without its password.
    store: String,
    #[serde(flatten)]
    summary: &'a Summary,
    salvaged: Option<&'a Salvaged>,
}

fn rebuild_snapshot(cli: &Cli, location: &Location, out: &mut dyn Write) -> anyhow::Result<Status> {
    let path = location.require_path("repair --rebuild-snapshot")?;
    if !path.join("db").is_file() {
        bail!("no revolve store at {}", path.display());
    }
    let timeout = lock_timeout(cli)?;
    let outcome = Store::rebuild_snapshot(path, timeout)
        .with_context(|| format!("cannot rebuild the snapshot of {}", path.display()))?;
    let status = match &outcome {
        SnapshotRebuild::PutBack { .. } => Status::Problems,
        _ => Status::Success,
    };
    if cli.json {
        write_json(out, &outcome)?;
        return Ok(status);
    }
    match &outcome {
        SnapshotRebuild::NoSnapshot => {
            writeln!(out, "{} has no snapshot; nothing to rebuild", path.display())?;
        }
        SnapshotRebuild::Rebuilt {
            snapshot,
            kept,
            report,
        } => writeln!(
            out,
            "rebuilt the snapshot from the log: the store opens and verifies ({} documents, {} revisions)\n\
             the old snapshot {} and copies of the files as they were are in {}; delete it once satisfied",
            report.documents,
            report.revisions,
            snapshot.display(),
            kept.display()
        )?,
        SnapshotRebuild::PutBack {
            snapshot, reason, ..
        } => writeln!(
            out,
            "gave up: {reason}\nevery file is back as it was, {} included; restore a backup, or save what is readable with `revolve export --salvage`",
            snapshot.display()
        )?,
        _ => writeln!(out, "done")?,
    }
    Ok(status)
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
