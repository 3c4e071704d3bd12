//! Repairs of a store's files that need the store closed: rebuilding a damaged snapshot.
//!
//! sled reads its newest `snap.*` file at open and refuses to open when its checksum does not
//! match. The snapshot is only an index of the log in `db`: without it, sled rebuilds it by
//! reading the whole log. [`Store::rebuild_snapshot`] moves the snapshot aside, opens the store,
//! verifies it, and puts the files back if either fails (what exactly is guaranteed is in its
//! documentation).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::store::engine::sled::guard::{newest_snapshot, snapshot_intact};
use crate::store::{Store, StoreError, VerifyReport};

/// What [`Store::rebuild_snapshot`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
#[must_use]
pub enum SnapshotRebuild {
    /// The store had no snapshot: nothing to rebuild.
    NoSnapshot,
    /// The snapshot was moved aside, the store opened without it and verified clean. The moved
    /// snapshot and a copy of the files as they were are kept in `kept`; delete it once satisfied.
    Rebuilt {
        /// The snapshot that was moved aside.
        snapshot: PathBuf,
        /// The directory that keeps the snapshot, copies of `db` and `conf`, and links to the
        /// blobs and older snapshots, as they were.
        kept: PathBuf,
        /// The verification of the reopened store.
        report: VerifyReport,
    },
    /// The store did not open, or did not verify, or recovered less of the log, without the
    /// snapshot: the files were put back (see [`Store::rebuild_snapshot`] for what that covers).
    PutBack {
        /// The snapshot.
        snapshot: PathBuf,
        /// Why the rebuild was given up.
        reason: String,
        /// The verification, when the store opened.
        report: Option<VerifyReport>,
    },
}

impl Store {
    /// Rebuilds the snapshot of the closed store at `path` from its log: moves the newest
    /// `snap.*` file aside, opens the store (sled reads the whole log), verifies it, and keeps the
    /// result only if the store opens and verifies without problems and the log recovers at
    /// least as far as the old snapshot's name says it covered (a log damaged too would otherwise
    /// open as a smaller, or empty, store that verifies clean). Otherwise the files are put back
    /// ([`SnapshotRebuild::PutBack`]).
    ///
    /// Before anything changes, a new directory `rebuild-snapshot-<seconds>` inside the store's
    /// directory receives copies of `db` and `conf` (so the store briefly needs twice its space),
    /// hard links to (or copies of) every file in `blobs/` and to every older `snap.*` file, and
    /// then the snapshot itself, moved: opening without a snapshot may rewrite the log's damaged
    /// tail, delete the blobs past the point it recovers to, and delete older snapshots. The
    /// snapshot is moved whatever its checksum says, so this also serves when the snapshot is
    /// intact but wrong. The store's lock is held while files are copied, moved and put back.
    ///
    /// What is guaranteed:
    /// - Until the snapshot is moved, a failure removes the new directory and changes nothing.
    /// - A put-back restores `db`, `conf`, the blobs and the snapshots that were there, removes the
    ///   `snap.*` files the reopen wrote (never older ones) and any `db` or `conf` it created; the
    ///   directory is removed only when all of that succeeded.
    /// - Any other failure after the move returns [`StoreError::RepairIncomplete`] naming the
    ///   kept directory, which then still holds the files as they were; when another process
    ///   opened the store in the moment between this function's lock and the reopen, nothing is
    ///   put back (that process has the files open).
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process has the store open (waiting up to
    /// `lock_timeout`) before anything changed, [`StoreError::Io`] when the files cannot be
    /// copied or the snapshot cannot be moved (nothing changed), and
    /// [`StoreError::RepairIncomplete`] for a failure after the move.
    pub fn rebuild_snapshot(
        path: impl AsRef<Path>,
        lock_timeout: Duration,
    ) -> Result<SnapshotRebuild, StoreError> {
        let path = path.as_ref();
        let Some(snapshot) = newest_snapshot(path) else {
            return Ok(SnapshotRebuild::NoSnapshot);
        };
        // Refuse a store that is open elsewhere before moving anything, and hold its lock while
        // the files are saved.
        let held = lock(path, lock_timeout)?;
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let kept = path.join(format!("rebuild-snapshot-{seconds}"));
        std::fs::create_dir(&kept).map_err(io("cannot create", &kept))?;
        let saved = match Saved::save(path, &kept, &snapshot) {
            Ok(saved) => saved,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&kept);
                return Err(error);
            }
        };
        drop(held);
        tracing::warn!(
            snapshot = %snapshot.display(),
            intact = snapshot_intact(&saved.aside),
            "rebuilding the snapshot from the log"
        );

        let opened = Store::builder()
            .path(path)
            .lock_timeout(lock_timeout)
            .open();
        let (reason, report) = match opened {
            Err(error @ StoreError::Locked { .. }) => {
                return Err(StoreError::RepairIncomplete {
                    kept,
                    reason: "another process opened the store while its snapshot was moved aside; nothing was put back".to_owned(),
                    source: Box::new(error),
                });
            }
            Ok(store) => {
                let report = store.verify();
                drop(store);
                // sled releases the lock from its own threads: wait for it (at least a few
                // seconds, whatever `lock_timeout` says) before touching files, and hold it.
                let held = saved.relock(path, &kept, lock_timeout)?;
                match (report, recovered_short(path, &snapshot)) {
                    (Ok(report), Some(short)) => (short, (Some(report), held)),
                    (Ok(report), None) if report.is_ok() => {
                        return Ok(SnapshotRebuild::Rebuilt {
                            snapshot,
                            kept,
                            report,
                        });
                    }
                    (Ok(report), None) => (
                        format!(
                            "the store opened without the snapshot, but verify found {} problems",
                            report.problem_count
                        ),
                        (Some(report), held),
                    ),
                    (Err(error), _) => (
                        format!(
                            "the store opened without the snapshot, but verify failed: {error}"
                        ),
                        (None, held),
                    ),
                }
            }
            Err(error) => {
                let held = saved.relock(path, &kept, lock_timeout)?;
                (
                    format!("the store does not open without the snapshot either: {error}"),
                    (None, held),
                )
            }
        };
        let (report, held) = report;
        if let Err(error) = saved.put_back(path, &kept) {
            return Err(StoreError::RepairIncomplete {
                kept,
                reason: format!("{reason}; putting the files back failed"),
                source: Box::new(error),
            });
        }
        std::fs::remove_dir_all(&kept).map_err(|source| StoreError::RepairIncomplete {
            kept: kept.clone(),
            reason: format!("{reason}; every file was put back, but the directory of copies could not be removed"),
            source: Box::new(io("cannot remove", &kept)(source)),
        })?;
        drop(held);
        Ok(SnapshotRebuild::PutBack {
            snapshot,
            reason,
            report,
        })
    }
}

/// How long to wait, at least, for sled to release a closed store's lock.
const RELEASE_FLOOR: Duration = Duration::from_secs(10);

fn io(what: &str, file: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = format!("{what} {}", file.display());
    move |source| StoreError::Io { what, source }
}

/// The names in `dir` (none when it does not exist).
fn names(dir: &Path) -> Result<BTreeSet<OsString>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io("cannot list", dir)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(source) => Err(io("cannot list", dir)(source)),
    }
}

fn is_snapshot(name: &OsString) -> bool {
    name.to_string_lossy().starts_with("snap.")
}

/// A hard link to `from` at `to`, or a copy where the file system has no hard links.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), StoreError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(drop)
        .map_err(io("cannot copy", from))
}

/// What [`Store::rebuild_snapshot`] saved before it moved the snapshot.
struct Saved {
    /// The snapshot's name and where it was moved.
    snapshot_name: OsString,
    aside: PathBuf,
    /// The store directory's `snap.*` names before the move (the moved one included).
    snapshots: BTreeSet<OsString>,
    /// Which of `db` and `conf` existed.
    files: BTreeSet<&'static str>,
    /// Whether `blobs/` existed, and its files.
    blobs_dir: bool,
    blobs: BTreeSet<OsString>,
}

impl Saved {
    /// Copies `db` and `conf` into `kept`, links the blobs into `kept/blobs` and the older
    /// snapshots into `kept`, then moves the snapshot there.
    fn save(path: &Path, kept: &Path, snapshot: &Path) -> Result<Self, StoreError> {
        let mut files = BTreeSet::new();
        for name in ["db", "conf"] {
            let file = path.join(name);
            if file.exists() {
                std::fs::copy(&file, kept.join(name)).map_err(io("cannot copy", &file))?;
                files.insert(name);
            }
        }
        let blobs_path = path.join("blobs");
        let blobs_dir = blobs_path.is_dir();
        let blobs = names(&blobs_path)?;
        if blobs_dir {
            let kept_blobs = kept.join("blobs");
            std::fs::create_dir(&kept_blobs).map_err(io("cannot create", &kept_blobs))?;
            for name in &blobs {
                link_or_copy(&blobs_path.join(name), &kept_blobs.join(name))?;
            }
        }
        let snapshot_name = snapshot
            .file_name()
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        let snapshots: BTreeSet<OsString> = names(path)?.into_iter().filter(is_snapshot).collect();
        for name in snapshots.iter().filter(|name| **name != snapshot_name) {
            link_or_copy(&path.join(name), &kept.join(name))?;
        }
        let aside = kept.join(&snapshot_name);
        std::fs::rename(snapshot, &aside).map_err(io("cannot move", snapshot))?;
        Ok(Self {
            snapshot_name,
            aside,
            snapshots,
            files,
            blobs_dir,
            blobs,
        })
    }

    /// Puts every saved file back; `kept` stays (the snapshot is no longer in it).
    fn put_back(&self, path: &Path, kept: &Path) -> Result<(), StoreError> {
        // Only the snapshots the reopen wrote: a name that was not there before the move, or the
        // moved snapshot's own name written anew.
        for name in names(path)?.into_iter().filter(is_snapshot) {
            if !self.snapshots.contains(&name) || name == self.snapshot_name {
                let written = path.join(&name);
                std::fs::remove_file(&written).map_err(io("cannot remove", &written))?;
            }
        }
        for name in ["db", "conf"] {
            let file = path.join(name);
            if self.files.contains(name) {
                let copy = kept.join(name);
                std::fs::copy(&copy, &file).map_err(io("cannot restore", &copy))?;
            } else if file.exists() {
                std::fs::remove_file(&file).map_err(io("cannot remove", &file))?;
            }
        }
        let blobs_path = path.join("blobs");
        if self.blobs_dir {
            std::fs::create_dir_all(&blobs_path).map_err(io("cannot create", &blobs_path))?;
            for name in &self.blobs {
                let target = blobs_path.join(name);
                let copy = kept.join("blobs").join(name);
                if target.exists() {
                    let same = std::fs::read(&target).ok() == std::fs::read(&copy).ok();
                    if same {
                        continue;
                    }
                    std::fs::remove_file(&target).map_err(io("cannot remove", &target))?;
                }
                link_or_copy(&copy, &target)?;
            }
        } else {
            // sled creates an empty `blobs`; remove it only when it is still empty.
            let _ = std::fs::remove_dir(&blobs_path);
        }
        for name in self
            .snapshots
            .iter()
            .filter(|name| **name != self.snapshot_name)
        {
            let target = path.join(name);
            if !target.exists() {
                link_or_copy(&kept.join(name), &target)?;
            }
        }
        let snapshot = path.join(&self.snapshot_name);
        std::fs::rename(&self.aside, &snapshot).map_err(io("cannot put back", &self.aside))
    }

    /// Waits for the store's lock once the reopen is over (sled releases it from its own
    /// threads: at least [`RELEASE_FLOOR`], whatever `timeout` says) and takes it. Still locked:
    /// another process may have opened the store, so nothing is put back; another failure puts
    /// the files back. Either way the error names `kept`.
    fn relock(
        &self,
        path: &Path,
        kept: &Path,
        timeout: Duration,
    ) -> Result<Option<std::fs::File>, StoreError> {
        match lock(path, timeout.max(RELEASE_FLOOR)) {
            Ok(held) => Ok(held),
            Err(error @ StoreError::Locked { .. }) => Err(StoreError::RepairIncomplete {
                kept: kept.to_owned(),
                reason: "the store stayed locked after the reopen (another process may have opened it); nothing was put back".to_owned(),
                source: Box::new(error),
            }),
            Err(error) => Err(self.put_back_after(path, kept, error)),
        }
    }

    /// After `error` stopped the rebuild: puts the files back and reports the failure naming
    /// `kept`.
    fn put_back_after(&self, path: &Path, kept: &Path, error: StoreError) -> StoreError {
        let reason = match self.put_back(path, kept) {
            Ok(()) => {
                "the snapshot rebuild failed; every file was put back (the copies stay)".to_owned()
            }
            Err(put_back) => {
                format!("the snapshot rebuild failed, and putting the files back failed too: {put_back}")
            }
        };
        StoreError::RepairIncomplete {
            kept: kept.to_owned(),
            reason,
            source: Box::new(error),
        }
    }
}

/// Why the log of the store at `path`, reopened without `snapshot`, recovered too little, if it
/// did. sled names a snapshot after the log position it covers. A log that recovers to a point
/// short of the old snapshot's lost what lies between (a damaged page ends recovery early, and a
/// damaged start makes the store look empty).
fn recovered_short(path: &Path, snapshot: &Path) -> Option<String> {
    let recovered = newest_snapshot(path).as_deref().and_then(snapshot_lsn);
    let covered = snapshot_lsn(snapshot)?;
    (recovered.unwrap_or(0) < covered).then(|| {
        format!(
            "the log recovers only to position {}, short of the snapshot's {covered}: part of the log is damaged too",
            recovered.unwrap_or(0)
        )
    })
}

/// The log position a snapshot covers, from its name: `snap.<position, 16 hex digits>`.
fn snapshot_lsn(file: &Path) -> Option<u64> {
    let name = file.file_name()?.to_str()?;
    let hex = name.strip_prefix("snap.")?;
    u64::from_str_radix(hex, 16).ok()
}

/// Waits until no process holds the store at `path` open, without opening it, and takes its
/// lock: sled takes an exclusive `flock` on `db`, which this holds until the file is dropped.
/// `None` when there is no `db`.
fn lock(path: &Path, timeout: Duration) -> Result<Option<std::fs::File>, StoreError> {
    let db = path.join("db");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let file = match std::fs::OpenOptions::new().read(true).write(true).open(&db) {
            Ok(file) => file,
            // No `db` (deleted): nothing holds it, and the open that follows reports the rest.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    what: format!("cannot open {}", db.display()),
                    source,
                })
            }
        };
        match fs2::FileExt::try_lock_exclusive(&file) {
            Ok(()) => return Ok(Some(file)),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                })
            }
        }
    }
}
