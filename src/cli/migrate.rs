//! The typed migration commands: an application registers its collections, and gets `migrate
//! status|test|execute|cancel|revert|runs|failures` in its own binary.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use super::format::{
    collect_failures, progress_bar, seconds, write_failures, write_json, write_runs,
};
use super::logs::{self, LogFormat};
use super::Status;
use crate::erased::{self, AnyCollection, RunHooks};
use crate::error::format::Chain;
use crate::{
    Failure, MigrateOptions, MigrationError, MigrationReport, Pending, Progress, RevertReport,
    RunKind, RunRecord, RunState, Schema, Store, StoreError,
};

/// How many runs `migrate status` lists per collection.
const STATUS_RUNS: usize = 5;

/// Parses the process's arguments as `migrate …` commands over the collections `register` adds,
/// runs the command, prints its output, and returns the exit code. Never exits the process.
///
/// ```no_run
/// # use revolve::{Schema, Store};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
/// # #[schema(collection = "issues", version = 1)]
/// # struct Issue { title: String }
/// # fn main() -> Result<std::process::ExitCode, revolve::StoreError> {
/// let store = Store::open("data/app.revolve")?;
/// Ok(revolve::cli::run(&store, |r| r.collection::<Issue>()))
/// # }
/// ```
#[must_use]
pub fn run(store: &Store, register: impl FnOnce(Migrations) -> Migrations) -> ExitCode {
    register(Migrations::new(store)).run()
}

/// The `migrate` command line.
#[derive(Debug, Parser)]
#[command(about = "Schema migrations of this program's collections")]
struct Cli {
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
    top: Top,
}

/// Parses `args`, writing `--help` to `out` and usage mistakes to `err`; the status to exit with
/// when there is nothing to run.
fn parse<I, A>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> Result<Cli, Status>
where
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    Cli::try_parse_from(args).map_err(|error| {
        let text = error.render().to_string();
        if error.use_stderr() {
            let _ = write!(err, "{text}");
            Status::Usage
        } else {
            let _ = write!(out, "{text}");
            Status::Success
        }
    })
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    /// Migrate documents to their collection's latest version, and look at past runs.
    Migrate(MigrateArgs),
}

/// The arguments of `migrate`: embed them in an application's own clap parser
/// (`Migrate(revolve::cli::MigrateArgs)`) and run them with [`Migrations::execute`].
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct MigrateArgs {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: MigrateCommand,
}

/// One `migrate` command.
#[derive(Debug, Clone, clap::Subcommand)]
#[non_exhaustive]
pub enum MigrateCommand {
    /// Documents per version, what is pending, and the last runs.
    Status {
        /// One collection; every registered one by default.
        collection: Option<String>,
    },
    /// A dry run: run every step and validate its output, write nothing.
    Test {
        /// One collection; every registered one by default.
        collection: Option<String>,
        /// Take at most this many documents per collection.
        #[arg(long)]
        limit: Option<u64>,
        /// Worker threads; the machine's parallelism by default.
        #[arg(long)]
        threads: Option<usize>,
        /// Also take documents whose migration failed before.
        #[arg(long)]
        retry_failed: bool,
    },
    /// Migrate documents to the latest version, as new revisions.
    Execute {
        /// One collection; every registered one by default.
        collection: Option<String>,
        /// Take at most this many documents per collection; run again to continue.
        #[arg(long)]
        limit: Option<u64>,
        /// Worker threads; the machine's parallelism by default.
        #[arg(long)]
        threads: Option<usize>,
        /// Also take documents whose migration failed before.
        #[arg(long)]
        retry_failed: bool,
        /// Join the run under way (another instance's too, on PostgreSQL) instead of failing.
        #[arg(long)]
        join: bool,
    },
    /// Cancel a joined run under way (PostgreSQL, `execute --join`): every worker, in every
    /// process, stops at its next chunk boundary; `runs` then shows how the run ended. A run
    /// that is not joined is cancelled only by the process that runs it.
    Cancel {
        /// The run's id, as `status` and `runs` list it.
        run: u64,
    },
    /// Revert a migration run: documents it migrated get their old content back.
    Revert {
        /// The run's id, as `status` and `runs` list it.
        run: u64,
    },
    /// The ledger of runs, newest first.
    Runs {
        /// One collection; every registered one by default.
        collection: Option<String>,
    },
    /// The failure set: documents whose migration failed, and that runs skip, in id order.
    Failures {
        /// One collection; every registered one by default.
        collection: Option<String>,
        /// List the documents after this id (as a previous listing's last line says).
        #[arg(long, value_name = "ID", requires = "collection")]
        after: Option<String>,
        /// List at most this many per collection; all of them by default.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
}

/// An error of a `migrate` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No collection was registered.
    #[error("no collection is registered; register each with `Migrations::collection`")]
    NoCollections,
    /// The command named a collection that was not registered.
    #[error("no collection `{name}` is registered (registered: {})", known.join(", "))]
    UnknownCollection {
        /// The name given.
        name: String,
        /// The registered names.
        known: Vec<String>,
    },
    /// No registered collection's ledger has the run.
    #[error("no run {run} in the ledger of any registered collection")]
    UnknownRun {
        /// The run given.
        run: u64,
    },
    /// The run asked to be cancelled is not under way.
    #[error("run {run} of `{collection}` is not under way: it is {}", state_text(*.state))]
    RunNotRunning {
        /// The run's collection.
        collection: String,
        /// The run given.
        run: u64,
        /// How it ended.
        state: RunState,
    },
    /// The run asked to be cancelled is under way, but it is not a joined run: only the process
    /// that runs it can cancel it (with its [`CancelToken`](crate::CancelToken)).
    #[error(
        "run {run} of `{collection}` is under way but is not a joined run: only the process that runs it can cancel it"
    )]
    NotJoined {
        /// The run's collection.
        collection: String,
        /// The run given.
        run: u64,
    },
    /// The run asked to be cancelled is a revert under way, which no one can cancel.
    #[error("run {run} of `{collection}` is a revert under way, which cannot be cancelled")]
    NotCancellable {
        /// The run's collection.
        collection: String,
        /// The run given.
        run: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A migration, revert or ledger read failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The output could not be written.
    #[error("cannot write the output")]
    Output(#[from] io::Error),
}

impl CommandError {
    /// The status a command that failed with this error ends with.
    #[must_use]
    pub fn status(&self) -> Status {
        match self {
            CommandError::Store(error) | CommandError::Migration(MigrationError::Store(error)) => {
                Status::from_store_error(error)
            }
            _ => Status::Error,
        }
    }
}

/// The collections an application's `migrate` commands work on.
///
/// ```no_run
/// # use revolve::{Schema, Store};
/// # use revolve::cli::{Migrations, Status};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
/// # #[schema(collection = "issues", version = 1)]
/// # struct Issue { title: String }
/// # let store = Store::temporary()?;
/// let migrations = Migrations::new(&store).collection::<Issue>();
/// let mut out = Vec::new();
/// let mut err = Vec::new();
/// let status = migrations.run_with(["app", "migrate", "status", "--json"], &mut out, &mut err);
/// assert_eq!(status, Status::Success);
/// # Ok::<(), revolve::StoreError>(())
/// ```
#[must_use]
pub struct Migrations {
    store: Store,
    collections: Vec<Registered>,
}

struct Registered {
    name: &'static str,
    open: fn(&Store) -> Result<Arc<dyn AnyCollection>, StoreError>,
}

impl fmt::Debug for Migrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrations")
            .field("store", &self.store)
            .field(
                "collections",
                &self.collections.iter().map(|c| c.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Migrations {
    /// No collections yet, over `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            store: store.clone(),
            collections: Vec::new(),
        }
    }

    /// Adds the collection whose latest version is `T`. Opened when a command needs it; a second
    /// registration of the same collection replaces the first.
    pub fn collection<T: Schema>(mut self) -> Self {
        self.collections.retain(|c| c.name != T::COLLECTION);
        self.collections.push(Registered {
            name: T::COLLECTION,
            open: erased::open::<T>,
        });
        self
    }

    /// Runs the command the process's arguments give; see [`run_with`](Self::run_with).
    #[must_use]
    pub fn run(&self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Runs the command `args` give (the program name first), printing to standard output and
    /// standard error; see [`run_with`](Self::run_with). Installs a log subscriber first, unless
    /// the process has one: `RUST_LOG` chooses what is logged (warnings and errors by default),
    /// to standard error, as JSON lines with `--log-format json` or `REVOLVE_LOG_FORMAT=json`.
    #[must_use]
    pub fn run_from<I, A>(&self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString> + Clone,
    {
        // Not locked for the whole command: log events from a run's threads go to standard
        // error too, and would wait for the lock until the run ends.
        let mut out = io::stdout();
        let mut err = io::stderr();
        let cli = match parse(args, &mut out, &mut err) {
            Ok(cli) => cli,
            Err(status) => return status.into(),
        };
        if let Some(warning) = logs::install(cli.log_format) {
            let _ = writeln!(err, "warning: {warning}");
        }
        self.run_parsed(cli, &mut out, &mut err).into()
    }

    /// Parses `args` (the program name first, then `migrate …`), runs the command, and writes
    /// its output (and `--help`) to `out`, errors and usage mistakes to `err`. Accepts
    /// `--log-format` but installs no log subscriber: the caller owns the process's logging.
    #[must_use]
    pub fn run_with<I, A>(&self, args: I, out: &mut dyn Write, err: &mut dyn Write) -> Status
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString> + Clone,
    {
        match parse(args, out, err) {
            Ok(cli) => self.run_parsed(cli, out, err),
            Err(status) => status,
        }
    }

    fn run_parsed(&self, cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Status {
        let Top::Migrate(args) = cli.top;
        match self.execute(&args, out) {
            Ok(status) => status,
            Err(error) => {
                let _ = writeln!(err, "error: {}", Chain(&error));
                error.status()
            }
        }
    }

    /// Runs a parsed `migrate` command, writing its output to `out`. Returns
    /// [`Status::Problems`] when a run or dry run had failed documents.
    ///
    /// # Errors
    ///
    /// [`CommandError::NoCollections`], [`CommandError::UnknownCollection`] and
    /// [`CommandError::UnknownRun`] for what the command names; [`CommandError::Store`] and
    /// [`CommandError::Migration`] when the store or a run fails; [`CommandError::Output`] when
    /// `out` cannot be written.
    pub fn execute(&self, args: &MigrateArgs, out: &mut dyn Write) -> Result<Status, CommandError> {
        match &args.command {
            MigrateCommand::Status { collection } => {
                let targets = self.targets(collection.as_deref())?;
                Self::status(&targets, args.json, out)
            }
            MigrateCommand::Test {
                collection,
                limit,
                threads,
                retry_failed,
            } => {
                let options = MigrateOptions {
                    limit: *limit,
                    retry_failed: *retry_failed,
                    join: false,
                    dry_run: true,
                    threads: *threads,
                };
                let targets = self.targets(collection.as_deref())?;
                migrate(&targets, &options, args.json, out)
            }
            MigrateCommand::Execute {
                collection,
                limit,
                threads,
                retry_failed,
                join,
            } => {
                let options = MigrateOptions {
                    limit: *limit,
                    retry_failed: *retry_failed,
                    join: *join,
                    dry_run: false,
                    threads: *threads,
                };
                let targets = self.targets(collection.as_deref())?;
                migrate(&targets, &options, args.json, out)
            }
            MigrateCommand::Cancel { run } => {
                let targets = self.targets(None)?;
                cancel(&targets, *run, args.json, out)
            }
            MigrateCommand::Revert { run } => {
                let targets = self.targets(None)?;
                revert(&targets, *run, args.json, out)
            }
            MigrateCommand::Runs { collection } => {
                let targets = self.targets(collection.as_deref())?;
                let mut runs = Vec::new();
                for target in &targets {
                    runs.extend(target.raw().runs_page(None, usize::MAX)?);
                }
                runs.sort_by_key(|run| std::cmp::Reverse(run.id));
                if args.json {
                    write_json(out, &RunsOutput { runs: &runs })?;
                } else if runs.is_empty() {
                    writeln!(out, "no runs")?;
                } else {
                    write_runs(out, &runs)?;
                }
                Ok(Status::Success)
            }
            MigrateCommand::Failures {
                collection,
                after,
                limit,
            } => {
                let targets = self.targets(collection.as_deref())?;
                failures(&targets, after.as_deref(), *limit, args.json, out)
            }
        }
    }

    /// The registered collections `name` selects (all of them for `None`), opened.
    fn targets(&self, name: Option<&str>) -> Result<Vec<Arc<dyn AnyCollection>>, CommandError> {
        if self.collections.is_empty() {
            return Err(CommandError::NoCollections);
        }
        let selected: Vec<&Registered> = match name {
            None => self.collections.iter().collect(),
            Some(name) => match self.collections.iter().find(|c| c.name == name) {
                Some(found) => vec![found],
                None => {
                    return Err(CommandError::UnknownCollection {
                        name: name.to_owned(),
                        known: self.collections.iter().map(|c| c.name.to_owned()).collect(),
                    })
                }
            },
        };
        selected
            .into_iter()
            .map(|registered| (registered.open)(&self.store).map_err(CommandError::from))
            .collect()
    }

    fn status(
        targets: &[Arc<dyn AnyCollection>],
        json: bool,
        out: &mut dyn Write,
    ) -> Result<Status, CommandError> {
        let mut collections = Vec::new();
        for target in targets {
            let pending = target.pending()?;
            collections.push(CollectionStatus {
                collection: target.raw().name().to_owned(),
                latest_version: target.version(),
                count_by_version: target.raw().count_by_version()?,
                removed: target.raw().removed_count()?,
                migratable: pending.migratable(),
                failed: pending.failed(),
                pending,
                runs: target.raw().runs_page(None, STATUS_RUNS)?,
            });
        }
        if json {
            write_json(out, &StatusOutput { collections })?;
            return Ok(Status::Success);
        }
        for status in &collections {
            writeln!(
                out,
                "{}: latest version {}",
                status.collection, status.latest_version
            )?;
            for (version, count) in &status.count_by_version {
                match status.pending.by_version.get(version) {
                    Some(pending) => writeln!(
                        out,
                        "  version {version}: {count} documents ({} to migrate, {} failed)",
                        pending.migratable, pending.failed
                    )?,
                    None => writeln!(out, "  version {version}: {count} documents")?,
                }
            }
            writeln!(out, "  removed: {}", status.removed)?;
            writeln!(
                out,
                "  pending: {} to migrate, {} failed",
                status.migratable, status.failed
            )?;
            if status.runs.is_empty() {
                writeln!(out, "  no runs")?;
            } else {
                writeln!(out, "  last runs:")?;
                write_runs(out, &status.runs)?;
            }
        }
        Ok(Status::Success)
    }
}

fn migrate(
    targets: &[Arc<dyn AnyCollection>],
    options: &MigrateOptions,
    json: bool,
    out: &mut dyn Write,
) -> Result<Status, CommandError> {
    let mut reports = Vec::new();
    for target in targets {
        let bar = progress_bar(None, "documents");
        let shown = bar.clone();
        let report = target.migrate(
            options,
            RunHooks {
                on_progress: Some(Box::new(move |progress: &Progress| {
                    shown.set_length(progress.total);
                    shown.set_position(progress.done);
                })),
                ..RunHooks::default()
            },
        );
        bar.finish_and_clear();
        reports.push(CollectionReport {
            collection: target.raw().name().to_owned(),
            report: report?,
        });
    }
    let failed = reports.iter().any(|r| r.report.failed > 0);
    if json {
        write_json(
            out,
            &ReportsOutput {
                collections: &reports,
            },
        )?;
    } else {
        for CollectionReport { collection, report } in &reports {
            write_report(out, collection, report)?;
        }
    }
    Ok(if failed {
        Status::Problems
    } else {
        Status::Success
    })
}

fn failures(
    targets: &[Arc<dyn AnyCollection>],
    after: Option<&str>,
    limit: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Status, CommandError> {
    let limit = limit.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
    let mut listed = Vec::new();
    for target in targets {
        let (failures, next) = collect_failures(
            |after, limit| target.raw().failures_page(after, limit),
            after,
            limit,
        )?;
        listed.push(CollectionFailures {
            collection: target.raw().name().to_owned(),
            failures,
            next,
        });
    }
    if json {
        write_json(
            out,
            &FailuresOutput {
                collections: &listed,
            },
        )?;
    } else {
        for listed in &listed {
            write_failures(
                out,
                &listed.collection,
                &listed.failures,
                after.is_some(),
                listed.next.as_deref(),
            )?;
        }
    }
    Ok(Status::Success)
}

fn write_report(out: &mut dyn Write, collection: &str, report: &MigrationReport) -> io::Result<()> {
    let Some(run) = report.run_id else {
        return writeln!(
            out,
            "{collection}: nothing to migrate to version {}",
            report.to_version
        );
    };
    let (what, migrated, failed) = if report.dry_run {
        (format!("dry run {run}"), "would migrate", "would fail")
    } else {
        (format!("run {run}"), "migrated", "failed")
    };
    writeln!(
        out,
        "{collection}: {what} to version {}: {} scanned, {} {migrated}, {} {failed}, {} skipped, {} remaining{} ({})",
        report.to_version,
        report.scanned,
        report.migrated,
        report.failed,
        report.skipped,
        report.remaining,
        if report.cancelled { ", cancelled" } else { "" },
        seconds(report.elapsed)
    )?;
    for failure in &report.failures {
        writeln!(
            out,
            "  {failed} {} revision {} at version {} ({}): {}",
            failure.id, failure.revision, failure.from_version, failure.class, failure.error
        )?;
    }
    let listed = report.failures.len() as u64;
    if report.failed > listed {
        writeln!(out, "  … and {} more", report.failed - listed)?;
    }
    Ok(())
}

/// A run's state in words, as `runs` shows it.
fn state_text(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Done => "done",
        RunState::DoneWithFailures => "done with failures",
        RunState::Cancelled => "cancelled",
        RunState::Interrupted => "interrupted",
        RunState::Reverted => "reverted",
    }
}

/// Asks every worker of the joined run `run` to stop, through the engine.
fn cancel(
    targets: &[Arc<dyn AnyCollection>],
    run: u64,
    json: bool,
    out: &mut dyn Write,
) -> Result<Status, CommandError> {
    let collection = cancel_run(targets, run)?;
    if json {
        write_json(
            out,
            &CancelOutput {
                collection,
                run_id: run,
                cancel: "requested",
            },
        )?;
    } else {
        writeln!(
            out,
            "{collection}: run {run} asked to stop; its workers stop at their next chunk boundary (`runs` shows how it ended)"
        )?;
    }
    Ok(Status::Success)
}

/// Cancels the joined run `run` of one of `targets`; the name of its collection.
fn cancel_run(targets: &[Arc<dyn AnyCollection>], run: u64) -> Result<&str, CommandError> {
    for target in targets {
        let Some(record) = target.raw().run(run)? else {
            continue;
        };
        let collection = target.raw().name();
        let not_running = |state| CommandError::RunNotRunning {
            collection: collection.to_owned(),
            run,
            state,
        };
        if record.state != RunState::Running {
            return Err(not_running(record.state));
        }
        if target.raw().cancel_run(run)? {
            return Ok(collection);
        }
        // Not a joined run; or it ended since it was read.
        return Err(match target.raw().run(run)? {
            Some(record) if record.state != RunState::Running => not_running(record.state),
            _ if matches!(record.kind, RunKind::Revert { .. }) => CommandError::NotCancellable {
                collection: collection.to_owned(),
                run,
            },
            _ => CommandError::NotJoined {
                collection: collection.to_owned(),
                run,
            },
        });
    }
    // A joined run's first worker saves its record just after it joined.
    for target in targets {
        if target.raw().cancel_run(run)? {
            return Ok(target.raw().name());
        }
    }
    Err(CommandError::UnknownRun { run })
}

fn revert(
    targets: &[Arc<dyn AnyCollection>],
    run: u64,
    json: bool,
    out: &mut dyn Write,
) -> Result<Status, CommandError> {
    let mut owner = None;
    for target in targets {
        if target.raw().run(run)?.is_some() {
            owner = Some(target);
            break;
        }
    }
    let target = owner.ok_or(CommandError::UnknownRun { run })?;
    let bar = progress_bar(None, "reverting");
    bar.enable_steady_tick(Duration::from_millis(100));
    let report = target.revert(run);
    bar.finish_and_clear();
    let report = report?;
    if json {
        write_json(
            out,
            &RevertOutput {
                collection: target.raw().name(),
                report: &report,
            },
        )?;
    } else {
        writeln!(
            out,
            "{}: reverted run {} (revert {}): {} documents restored, {} changed since and left alone ({})",
            target.raw().name(),
            report.reverted_run,
            report.run_id,
            report.reverted,
            report.changed.len(),
            seconds(report.elapsed)
        )?;
        for id in &report.changed {
            writeln!(out, "  changed since: {id}")?;
        }
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct CollectionStatus {
    collection: String,
    latest_version: u32,
    count_by_version: BTreeMap<u32, u64>,
    removed: u64,
    migratable: u64,
    failed: u64,
    pending: Pending,
    runs: Vec<RunRecord>,
}

#[derive(Serialize)]
struct StatusOutput {
    collections: Vec<CollectionStatus>,
}

#[derive(Serialize)]
struct CollectionReport {
    collection: String,
    #[serde(flatten)]
    report: MigrationReport,
}

#[derive(Serialize)]
struct ReportsOutput<'a> {
    collections: &'a [CollectionReport],
}

#[derive(Serialize)]
struct RevertOutput<'a> {
    collection: &'a str,
    #[serde(flatten)]
    report: &'a RevertReport,
}

#[derive(Serialize)]
struct CancelOutput<'a> {
    collection: &'a str,
    run_id: u64,
    cancel: &'static str,
}

#[derive(Serialize)]
struct CollectionFailures {
    collection: String,
    failures: Vec<Failure>,
    next: Option<String>,
}

#[derive(Serialize)]
struct FailuresOutput<'a> {
    collections: &'a [CollectionFailures],
}

#[derive(Serialize)]
struct RunsOutput<'a> {
    runs: &'a [RunRecord],
}
