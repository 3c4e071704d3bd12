//! The one door to sled: every call revolve makes into the storage engine goes through a guard
//! here, which catches a panic inside sled and turns it into a typed error.
//!
//! sled 0.34 panics on some damaged files (an `unwrap` on a segment index it read from disk, for
//! example) instead of returning an error. The guard runs each call under
//! [`std::panic::catch_unwind`]; a caught panic is reported as [`StoreError::StorageCorrupt`]
//! naming the database file, and poisons the store: sled's in-memory state may be half-updated,
//! so every later call returns [`StoreError::Poisoned`] until the store is opened again.
//!
//! Not caught, by design of Rust rather than choice: panics on sled's own background threads
//! (the flusher, snapshotting), and any panic in a build with `panic = "abort"`. Not caught
//! either: a panic in sled's `Drop` when a poisoned store's handles are dropped (not guarded). The process's
//! panic hook still runs for a caught panic (by default it prints the panic message to stderr).
//!
//! [`Tree`], [`Iter`] and [`Db`] wrap sled's types with the methods revolve uses and return
//! [`Fault`]; [`backend`](super::backend) turns a fault into a [`StoreError`], so call
//! sites read `tree.get(key).map_err(backend)` as they would with sled itself.

use std::any::Any;
use std::ops::RangeBounds;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::store::StoreState;

const READY: u8 = 1;
const POISONED: u8 = 2;

/// A store's health, shared by every handle of it.
#[derive(Debug)]
pub(crate) struct Health {
    state: AtomicU8,
    /// The store's directory; `None` for a temporary store.
    path: Option<PathBuf>,
    /// What poisoned the store.
    cause: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self {
            state: AtomicU8::new(READY),
            path,
            cause: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> StoreState {
        match self.state.load(Ordering::SeqCst) {
            POISONED => StoreState::Poisoned,
            _ => StoreState::Ready,
        }
    }

    /// The store's directory, or a placeholder for a temporary store.
    pub(crate) fn path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from("(temporary store)"))
    }

    /// The database file sled's pages live in.
    pub(crate) fn db_file(&self) -> PathBuf {
        self.path().join("db")
    }

    fn poison(&self, message: &str) {
        let mut cause = self.cause.lock();
        if cause.is_none() {
            *cause = Some(message.to_owned());
        }
        self.state.store(POISONED, Ordering::SeqCst);
        tracing::error!(
            path = %self.path().display(),
            panic = message,
            "the storage engine panicked; the store is poisoned until it is reopened"
        );
    }

    fn poisoned(&self) -> Option<Fault> {
        (self.state.load(Ordering::SeqCst) == POISONED).then(|| Fault::Poisoned {
            path: self.path(),
            cause: self.cause.lock().clone().unwrap_or_default(),
        })
    }

    /// Runs one call into sled: refused on a poisoned store, and a panic inside becomes a fault.
    pub(crate) fn guard<R>(&self, call: impl FnOnce() -> sled::Result<R>) -> Result<R, Fault> {
        if let Some(fault) = self.poisoned() {
            return Err(fault);
        }
        match catch_unwind(AssertUnwindSafe(call)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(sled::Error::Corruption { .. })) => Err(Fault::Corrupt {
                file: self.db_file(),
                detail: "the storage engine read corrupted data".to_owned(),
            }),
            Ok(Err(sled::Error::Io(error))) if truncated(&error) => Err(Fault::Corrupt {
                file: self.db_file(),
                detail: format!("the storage engine read past the end of the file: {error}"),
            }),
            Ok(Err(error)) => Err(Fault::Engine(error)),
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                self.poison(&message);
                Err(Fault::Corrupt {
                    file: self.db_file(),
                    detail: format!("the storage engine panicked: {message}"),
                })
            }
        }
    }

    /// As [`guard`](Self::guard), for a call that cannot fail but may panic.
    fn guard_infallible<R>(&self, call: impl FnOnce() -> R) -> Result<R, Fault> {
        self.guard(|| Ok(call()))
    }
}

/// Whether an I/O error is a read past the end of a file: sled reads only where its pages say
/// data is, so a file shorter than that was truncated, which is damage, not a failing device.
fn truncated(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::UnexpectedEof
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A failed call into sled.
#[derive(Debug)]
pub(crate) enum Fault {
    /// sled returned an error other than corruption.
    Engine(sled::Error),
    /// sled found corrupt data, or panicked on it.
    Corrupt { file: PathBuf, detail: String },
    /// The store was poisoned by an earlier panic.
    Poisoned { path: PathBuf, cause: String },
}

impl From<sled::Error> for Fault {
    fn from(error: sled::Error) -> Self {
        Fault::Engine(error)
    }
}

/// A sled tree whose every call is guarded.
#[derive(Clone)]
pub(crate) struct Tree {
    tree: sled::Tree,
    health: Arc<Health>,
}

impl Tree {
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, Fault> {
        self.health.guard(|| self.tree.get(key))
    }

    pub(crate) fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, Fault> {
        self.health.guard(|| self.tree.contains_key(key))
    }

    pub(crate) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<sled::IVec>,
    ) -> Result<Option<sled::IVec>, Fault> {
        self.health.guard(|| self.tree.insert(key, value))
    }

    /// Replaces the value under `key` if it is still `old` (`None`: absent); `false` otherwise.
    pub(crate) fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, Fault> {
        self.health
            .guard(|| Ok(self.tree.compare_and_swap(key, old, new)?.is_ok()))
    }

    pub(crate) fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, Fault> {
        self.health.guard(|| self.tree.remove(key))
    }

    pub(crate) fn apply_batch(&self, batch: sled::Batch) -> Result<(), Fault> {
        self.health.guard(|| self.tree.apply_batch(batch))
    }

    pub(crate) fn clear(&self) -> Result<(), Fault> {
        self.health.guard(|| self.tree.clear())
    }

    /// Whether the tree has no entry. Not sled's `is_empty`, which reads an unreadable first
    /// page as "not empty": the error of the first step is returned.
    pub(crate) fn is_empty(&self) -> Result<bool, Fault> {
        self.health
            .guard(|| Ok(self.tree.iter().next().transpose()?.is_none()))
    }

    #[cfg(test)]
    pub(crate) fn first(&self) -> Result<Option<(sled::IVec, sled::IVec)>, Fault> {
        self.health.guard(|| self.tree.first())
    }

    /// Every entry in key order. An iterator over a poisoned store yields its fault once.
    pub(crate) fn iter(&self) -> Iter {
        self.iter_of(|| self.tree.iter())
    }

    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        self.iter_of(|| self.tree.scan_prefix(prefix))
    }

    pub(crate) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        self.iter_of(|| self.tree.range(range))
    }

    fn iter_of(&self, make: impl FnOnce() -> sled::Iter) -> Iter {
        match self.health.guard_infallible(make) {
            Ok(iter) => Iter {
                inner: Some(iter),
                fault: None,
                health: Arc::clone(&self.health),
            },
            Err(fault) => Iter {
                inner: None,
                fault: Some(fault),
                health: Arc::clone(&self.health),
            },
        }
    }
}

impl IntoIterator for &Tree {
    type Item = Result<(sled::IVec, sled::IVec), Fault>;
    type IntoIter = Iter;

    fn into_iter(self) -> Iter {
        self.iter()
    }
}

/// A guarded iterator over a [`Tree`]: each step runs under the guard. After a fault it ends.
pub(crate) struct Iter {
    inner: Option<sled::Iter>,
    /// A fault to yield before ending.
    fault: Option<Fault>,
    health: Arc<Health>,
}

impl Iter {
    fn step(
        &mut self,
        step: impl FnOnce(&mut sled::Iter) -> Option<sled::Result<(sled::IVec, sled::IVec)>>,
    ) -> Option<Result<(sled::IVec, sled::IVec), Fault>> {
        if let Some(fault) = self.fault.take() {
            return Some(Err(fault));
        }
        let iter = self.inner.as_mut()?;
        match self.health.guard(|| step(iter).transpose()) {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => None,
            Err(fault) => {
                // sled's iterator cannot step over what it failed on; neither can this one.
                if matches!(fault, Fault::Corrupt { .. } | Fault::Poisoned { .. }) {
                    self.inner = None;
                }
                Some(Err(fault))
            }
        }
    }
}

impl Iterator for Iter {
    type Item = Result<(sled::IVec, sled::IVec), Fault>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(Iterator::next)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(DoubleEndedIterator::next_back)
    }
}

/// A sled database whose every call is guarded. Dereferences to its default tree.
#[derive(Clone)]
pub(crate) struct Db {
    db: sled::Db,
    default: Tree,
}

impl std::ops::Deref for Db {
    type Target = Tree;

    fn deref(&self) -> &Tree {
        &self.default
    }
}

impl Db {
    pub(crate) fn new(db: sled::Db, health: Arc<Health>) -> Self {
        let default = Tree {
            tree: (*db).clone(),
            health,
        };
        Self { db, default }
    }

    pub(crate) fn health(&self) -> &Arc<Health> {
        &self.default.health
    }

    pub(crate) fn open_tree(&self, name: impl AsRef<[u8]>) -> Result<Tree, Fault> {
        let tree = self.health().guard(|| self.db.open_tree(name))?;
        Ok(Tree {
            tree,
            health: Arc::clone(self.health()),
        })
    }

    /// The names of the trees; sled keeps them in memory, so this reads no file.
    pub(crate) fn tree_names(&self) -> Vec<sled::IVec> {
        self.db.tree_names()
    }

    pub(crate) fn flush(&self) -> Result<usize, Fault> {
        self.health().guard(|| self.db.flush())
    }

    pub(crate) fn size_on_disk(&self) -> Result<u64, Fault> {
        self.health().guard(|| self.db.size_on_disk())
    }

    pub(crate) fn generate_id(&self) -> Result<u64, Fault> {
        self.health().guard(|| self.db.generate_id())
    }
}

/// Opens a sled database under the guard. A panic or corruption is reported naming the file that
/// most likely holds the damage (see [`suspect_file`]).
pub(crate) fn open(config: &sled::Config, path: Option<&Path>) -> Result<sled::Db, OpenFault> {
    // sled rebuilds the store from the log (all of it without a snapshot), and a damaged page
    // ends that early without an error: what the log's segments say was durable tells, against
    // the snapshot sled writes when it has recovered, named after where it stopped. sled rewrites
    // the torn segments then, so only the first open after the damage can tell.
    let durable = path.and_then(durable_position);
    match catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => {
            let recovered = path
                .and_then(newest_snapshot)
                .as_deref()
                .and_then(snapshot_position);
            match (path, durable, recovered) {
                (Some(path), Some(durable), Some(recovered)) if recovered < durable => {
                    drop(db);
                    Err(OpenFault::Corrupt(Damage {
                        file: path.join("db"),
                        detail: format!(
                            "the log recovers only to position {recovered}, short of position \
                             {durable} it holds as written: a damaged page ended recovery early"
                        ),
                        snapshot: false,
                    }))
                }
                _ => Ok(db),
            }
        }
        Ok(Err(sled::Error::Corruption { .. })) => Err(OpenFault::Corrupt(suspect_file(
            path,
            "the storage engine read corrupted data".to_owned(),
        ))),
        Ok(Err(sled::Error::Io(error))) if truncated(&error) => {
            Err(OpenFault::Corrupt(suspect_file(
                path,
                format!("the storage engine read past the end of the file: {error}"),
            )))
        }
        Ok(Err(error)) => Err(OpenFault::Engine(error)),
        Err(payload) => Err(OpenFault::Corrupt(suspect_file(
            path,
            format!(
                "the storage engine panicked: {}",
                panic_message(payload.as_ref())
            ),
        ))),
    }
}

/// The log position a snapshot covers, from its name: `snap.<position, 16 hex digits>`.
fn snapshot_position(file: &Path) -> Option<u64> {
    let name = file.file_name()?.to_str()?;
    u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
}

/// The furthest log position the segments of the store at `path` record as durable (flushed
/// before a later segment was begun), read from their headers as sled 0.34 writes them: a
/// checksum of the rest, then the segment's position and that durable position, each masked
/// with `0x7FFF_FFFF_FFFF_FFFF`, little-endian. `None` without a log or a readable
/// configuration.
fn durable_position(path: &Path) -> Option<u64> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const MASK: u64 = 0x7FFF_FFFF_FFFF_FFFF;
    // sled ends its configuration with a binary checksum.
    let conf = std::fs::read(path.join("conf")).ok()?;
    let segment_size: u64 = String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|line| line.strip_prefix("segment_size:"))?
        .trim()
        .parse()
        .ok()
        .filter(|&size| size > 0)?;
    let mut file = std::fs::File::open(path.join("db")).ok()?;
    let len = file.metadata().ok()?.len();
    let mut durable = None;
    let mut at = 0u64;
    while at.checked_add(20)? <= len {
        let mut header = [0u8; 20];
        file.seek(SeekFrom::Start(at)).ok()?;
        file.read_exact(&mut header).ok()?;
        let (crc, rest) = header.split_at(4);
        let crc = u32::from_le_bytes(crc.try_into().ok()?) ^ 0xFFFF_FFFF;
        if crc32fast::hash(rest) == crc {
            let stable = rest
                .get(8..16)
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map(|bytes| u64::from_le_bytes(bytes) ^ MASK)
                // A header not yet knowing any durable position records -1.
                .filter(|&stable| stable < MASK);
            durable = durable.max(stable);
        }
        at = at.checked_add(segment_size)?;
    }
    durable
}

/// Why [`open`] failed.
pub(crate) enum OpenFault {
    Engine(sled::Error),
    Corrupt(Damage),
}

/// A damaged file, as [`suspect_file`] judges it.
#[derive(Debug)]
pub(crate) struct Damage {
    pub(crate) file: PathBuf,
    pub(crate) detail: String,
    /// Whether the file is a snapshot that `revolve repair --rebuild-snapshot` can move aside.
    pub(crate) snapshot: bool,
}

/// The file of a store at `path` that most likely holds the damage sled failed on at open: the
/// newest `snap.*` file if its checksum does not match, else `conf` if it does not parse, else
/// `db`.
pub(crate) fn suspect_file(path: Option<&Path>, detail: String) -> Damage {
    let Some(path) = path else {
        return Damage {
            file: PathBuf::from("(temporary store)"),
            detail,
            snapshot: false,
        };
    };
    if let Some(snapshot) = newest_snapshot(path) {
        if !snapshot_intact(&snapshot) {
            return Damage {
                file: snapshot,
                detail: format!("{detail}; the snapshot's checksum does not match"),
                snapshot: true,
            };
        }
    }
    let conf = path.join("conf");
    if conf.exists() && !conf_intact(&conf) {
        return Damage {
            file: conf,
            detail: format!("{detail}; the configuration does not parse"),
            snapshot: false,
        };
    }
    Damage {
        file: path.join("db"),
        detail,
        snapshot: false,
    }
}

/// The snapshot sled reads at open: the last `snap.*` file by name.
pub(crate) fn newest_snapshot(path: &Path) -> Option<PathBuf> {
    let mut snapshots: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("snap.") && !name.ends_with(".in___motion")
        })
        .map(|entry| entry.path())
        .collect();
    snapshots.sort();
    snapshots.pop()
}

/// Whether a snapshot's trailing CRC-32 (as sled 0.34 writes it: the bytes, an 8-byte length and
/// the CRC of the bytes, little-endian) matches.
pub(crate) fn snapshot_intact(file: &Path) -> bool {
    let Ok(bytes) = std::fs::read(file) else {
        return false;
    };
    let Some(body_len) = bytes.len().checked_sub(12).filter(|&len| len > 0) else {
        return false;
    };
    let (body, tail) = bytes.split_at(body_len);
    let Some(crc) = tail
        .get(8..12)
        .and_then(|crc| <[u8; 4]>::try_from(crc).ok())
    else {
        return false;
    };
    crc32fast::hash(body) == u32::from_le_bytes(crc)
}

/// Whether sled's `conf` file matches its trailing CRC-32 (little-endian, as sled writes it).
fn conf_intact(file: &Path) -> bool {
    let Ok(bytes) = std::fs::read(file) else {
        return false;
    };
    let Some(body_len) = bytes.len().checked_sub(4).filter(|&len| len > 4) else {
        return false;
    };
    let (body, crc) = bytes.split_at(body_len);
    <[u8; 4]>::try_from(crc).is_ok_and(|crc| crc32fast::hash(body) == u32::from_le_bytes(crc))
}

impl Db {
    /// Runs a call that panics through the guard, as sled does on some damaged files: for tests
    /// of what follows a poisoned store (see `revolve::__private::fault::poison`).
    // The one deliberate panic: it stands for sled's, and the guard catches it.
    #[allow(clippy::panic)]
    pub(crate) fn panic_in_engine(&self) -> crate::store::StoreError {
        let fault = self
            .health()
            .guard(|| -> sled::Result<()> { panic!("simulated panic in sled") });
        match fault {
            Err(fault) => super::backend(fault),
            Ok(()) => crate::store::StoreError::Poisoned {
                path: self.health().path(),
                cause: String::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreError};

    #[test]
    fn a_read_past_the_end_of_a_file_is_corruption_and_other_io_errors_are_not() {
        let health = Health::new(Some(PathBuf::from("store")));
        let eof = health.guard::<()>(|| {
            Err(sled::Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            )))
        });
        match eof {
            Err(Fault::Corrupt { file, detail }) => {
                assert_eq!(file, Path::new("store").join("db"));
                assert!(detail.contains("past the end of the file"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let denied = health.guard::<()>(|| {
            Err(sled::Error::Io(std::io::Error::from(
                std::io::ErrorKind::PermissionDenied,
            )))
        });
        assert!(matches!(denied, Err(Fault::Engine(_))), "{denied:?}");
        assert_eq!(health.state(), StoreState::Ready);
    }

    #[test]
    fn a_panic_in_sled_is_a_typed_error_and_poisons_the_store() {
        let store = Store::temporary().unwrap();
        assert_eq!(store.state(), StoreState::Ready);
        let fault = store
            .sled()
            .unwrap()
            .db()
            .health()
            .guard(|| -> sled::Result<()> { panic!("index out of bounds") })
            .unwrap_err();
        let error = super::super::backend(fault);
        assert!(
            matches!(&error, StoreError::StorageCorrupt { detail, .. } if detail.contains("index out of bounds")),
            "{error:?}"
        );
        assert_eq!(store.state(), StoreState::Poisoned);
        // Every later call, on any clone, is refused until the store is reopened.
        let clone = store.clone();
        let error = clone.collection_names().unwrap_err();
        assert!(
            matches!(&error, StoreError::Poisoned { cause, .. } if cause.contains("index out of bounds")),
            "{error:?}"
        );
        assert!(matches!(
            store.flush().unwrap_err(),
            StoreError::Poisoned { .. }
        ));
        let mut iter = store.sled().unwrap().meta.iter();
        assert!(matches!(iter.next(), Some(Err(Fault::Poisoned { .. }))));
        assert!(iter.next().is_none());
    }

    #[test]
    fn damaged_snapshots_and_configurations_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(suspect_file(Some(dir.path()), String::new())
            .file
            .ends_with("db"));
        let snapshot = dir.path().join("snap.0000000000000010");
        let mut bytes = b"some snapshot bytes".to_vec();
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(b"some snapshot bytes").to_le_bytes());
        std::fs::write(&snapshot, &bytes).unwrap();
        assert!(snapshot_intact(&snapshot));
        std::fs::write(dir.path().join("snap.0000000000000001"), b"old").unwrap();
        assert_eq!(newest_snapshot(dir.path()), Some(snapshot.clone()));
        bytes[2] ^= 1;
        std::fs::write(&snapshot, &bytes).unwrap();
        let damage = suspect_file(Some(dir.path()), String::new());
        assert!(damage.snapshot);
        assert_eq!(damage.file, snapshot);
        std::fs::remove_file(&snapshot).unwrap();
        std::fs::remove_file(dir.path().join("snap.0000000000000001")).unwrap();
        std::fs::write(dir.path().join("conf"), b"segment_size: 1\n\0\0\0\0").unwrap();
        assert!(suspect_file(Some(dir.path()), String::new())
            .file
            .ends_with("conf"));
    }
}
