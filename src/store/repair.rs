//! Repairs of a store's files that need the store closed: rebuilding a damaged snapshot.
//!
//! sled reads its newest `snap.*` file at open and refuses to open when its checksum does not
//! match. The snapshot is only an index of the log in `db`: without it, sled rebuilds it by
//! reading the whole log. [`Store::rebuild_snapshot`] moves the snapshot aside, opens the store,
//! verifies it, and puts everything back as it was if either fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::engine::{newest_snapshot, snapshot_intact};
use super::{Store, StoreError, VerifyReport};

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
        /// The directory that keeps the snapshot and a copy of `db` and `conf` as they were.
        kept: PathBuf,
        /// The verification of the reopened store.
        report: VerifyReport,
    },
    /// The store did not open, or did not verify, without the snapshot: every file was put back
    /// as it was.
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
    /// result only if the store opens and verifies without problems. Otherwise every file is put
    /// back as it was ([`SnapshotRebuild::PutBack`]).
    ///
    /// Before anything changes, the snapshot and copies of `db` and `conf` go into a new
    /// directory `rebuild-snapshot-<seconds>` inside the store's directory (so the store briefly
    /// needs twice its space): opening without a snapshot may rewrite the log's damaged tail.
    /// The snapshot is moved there whatever its checksum says, so this also serves when the
    /// snapshot is intact but wrong. The rebuild counts as done only when the log recovers at
    /// least as far as the old snapshot's name says it covered: a log damaged too would otherwise
    /// open as a smaller (or empty) store that verifies clean.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process has the store open (waiting up to
    /// `lock_timeout`), and [`StoreError::Io`] when the files cannot be copied, moved or put back.
    pub fn rebuild_snapshot(
        path: impl AsRef<Path>,
        lock_timeout: Duration,
    ) -> Result<SnapshotRebuild, StoreError> {
        let path = path.as_ref();
        let Some(snapshot) = newest_snapshot(path) else {
            return Ok(SnapshotRebuild::NoSnapshot);
        };
        // Refuse a store that is open elsewhere before moving anything.
        check_unlocked(path, lock_timeout)?;
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let kept = path.join(format!("rebuild-snapshot-{seconds}"));
        let io = |what: &str, file: &Path| {
            let what = format!("{what} {}", file.display());
            move |source| StoreError::Io { what, source }
        };
        std::fs::create_dir(&kept).map_err(io("cannot create", &kept))?;
        for name in ["db", "conf"] {
            let file = path.join(name);
            if file.exists() {
                std::fs::copy(&file, kept.join(name)).map_err(io("cannot copy", &file))?;
            }
        }
        let snapshot_name = snapshot
            .file_name()
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        let aside = kept.join(&snapshot_name);
        std::fs::rename(&snapshot, &aside).map_err(io("cannot move", &snapshot))?;
        #[cfg(feature = "http")]
        tracing::warn!(
            snapshot = %snapshot.display(),
            intact = snapshot_intact(&aside),
            "rebuilding the snapshot from the log"
        );

        let opened = Store::builder()
            .path(path)
            .lock_timeout(lock_timeout)
            .open();
        let (reason, report) = match opened {
            Ok(store) => {
                let report = store.verify();
                drop(store);
                // sled releases the lock from its own threads; wait for it before touching files.
                check_unlocked(path, lock_timeout)?;
                // sled names a snapshot after the log position it covers. A log that recovers to
                // a point short of the old snapshot's lost what lies between (a damaged page
                // ends recovery early, and a damaged start makes the store look empty).
                let recovered = newest_snapshot(path).as_deref().and_then(snapshot_lsn);
                let covered = snapshot_lsn(&snapshot);
                let short = match (recovered, covered) {
                    (Some(recovered), Some(covered)) => recovered < covered,
                    (None, Some(covered)) => covered > 0,
                    (_, None) => false,
                };
                match report {
                    Ok(report) if short => (
                        format!(
                            "the log recovers only to position {}, short of the snapshot's {}: part of the log is damaged too",
                            recovered.unwrap_or(0),
                            covered.unwrap_or(0)
                        ),
                        Some(report),
                    ),
                    Ok(report) if report.is_ok() => {
                        return Ok(SnapshotRebuild::Rebuilt {
                            snapshot,
                            kept,
                            report,
                        });
                    }
                    Ok(report) => (
                        format!(
                            "the store opened without the snapshot, but verify found {} problems",
                            report.problem_count
                        ),
                        Some(report),
                    ),
                    Err(error) => (
                        format!(
                            "the store opened without the snapshot, but verify failed: {error}"
                        ),
                        None,
                    ),
                }
            }
            Err(error) => (
                format!("the store does not open without the snapshot either: {error}"),
                None,
            ),
        };
        // Put everything back as it was: remove any snapshot the failed open wrote, restore the
        // copies and the snapshot.
        while let Some(written) = newest_snapshot(path) {
            std::fs::remove_file(&written).map_err(io("cannot remove", &written))?;
        }
        for name in ["db", "conf"] {
            let copy = kept.join(name);
            if copy.exists() {
                std::fs::copy(&copy, path.join(name)).map_err(io("cannot restore", &copy))?;
            }
        }
        std::fs::rename(&aside, &snapshot).map_err(io("cannot put back", &aside))?;
        std::fs::remove_dir_all(&kept).map_err(io("cannot remove", &kept))?;
        Ok(SnapshotRebuild::PutBack {
            snapshot,
            reason,
            report,
        })
    }
}

/// The log position a snapshot covers, from its name: `snap.<position, 16 hex digits>`.
fn snapshot_lsn(file: &Path) -> Option<u64> {
    let name = file.file_name()?.to_str()?;
    let hex = name.strip_prefix("snap.")?;
    u64::from_str_radix(hex, 16).ok()
}

/// Waits until no process holds the store at `path` open, without opening it: sled takes an
/// exclusive `flock` on `db`, which this takes and releases in turn.
fn check_unlocked(path: &Path, timeout: Duration) -> Result<(), StoreError> {
    let db = path.join("db");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let file = match std::fs::OpenOptions::new().read(true).write(true).open(&db) {
            Ok(file) => file,
            // No `db` (deleted): nothing holds it, and the open that follows reports the rest.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StoreError::Io {
                    what: format!("cannot open {}", db.display()),
                    source,
                })
            }
        };
        match fs2::FileExt::try_lock_exclusive(&file) {
            Ok(()) => {
                // Closing the file releases the lock too; unlock first to say so.
                let _ = fs2::FileExt::unlock(&file);
                return Ok(());
            }
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
