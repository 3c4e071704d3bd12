//! Backups: the export and import of a whole database, in the framed, checksummed format
//! below.
//!
//! # The backup format
//!
//! ```text
//! "REVOLVE\0"  8 bytes   signature
//! format       u32 BE    1
//! frames, each a tag byte:
//!   0x01 tree   name length u32 BE, name              a tree's entries follow, keys ascending
//!   0x02 entry  key length u32 BE, key, value length u32 BE, value
//!   0xff end    trees u64 BE, entries u64 BE, then the SHA-256 of every byte before the digest
//! ```
//!
//! Every non-empty tree of the database is written, sorted by name: each collection tree (every
//! head, revision, counter, failure record and cursor), `_meta`, `_ledger` and sled's default tree.
//! Nothing may follow the end frame. A backup salvaged from a damaged store
//! ([`Store::export_salvage`]) has format 2 and the same frames; [`Store::import`] refuses it, and
//! [`Store::import_salvaged`] takes it.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use std::collections::BTreeSet;

use super::engine::sled::backend;
use super::engine::sled::guard::{Db, Tree};
use super::engine::sled::keys::{collection_of_tree, ledger_run};
use super::engine::sled::LEDGER_TREE;
use super::engine::sled::{keys, COLLECTION_TREE_PREFIX};
use super::report::hex;
use super::walk::{DEFAULT_TREE, PROGRESS_EVERY};
use super::{Durability, Store, StoreError};
use crate::record::{self, Origin};

/// A key in the default tree while an import is under way; a store that holds it after the import
/// returned is incomplete.
pub(super) const IMPORT_MARKER: &[u8] = b"revolve/import-incomplete";

pub(super) const MAGIC: [u8; 8] = *b"REVOLVE\0";
pub(super) const FORMAT: u32 = 1;
/// A salvaged backup (`revolve export --salvage`): format 1's frames, written from a damaged
/// store, holding only what could be read.
pub(super) const FORMAT_SALVAGED: u32 = 2;
pub(super) const FRAME_TREE: u8 = 0x01;
pub(super) const FRAME_ENTRY: u8 = 0x02;
pub(super) const FRAME_END: u8 = 0xff;
/// Entries restored per `apply_batch`.
const IMPORT_BATCH: usize = 1000;
/// Run ids sled hands out stay far below this; a larger one in a backup is not taken as a run id
/// to stay clear of (see [`advance_run_ids`]).
const MAX_PLAUSIBLE_RUN_ID: u64 = 1 << 60;
/// sled's default `idgen_persist_interval`, which [`Store`] opens databases with.
const SLED_ID_STEP: u64 = 1_000_000;

/// What an export wrote or an import restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct BackupSummary {
    /// Trees.
    pub trees: u64,
    /// Keys, over every tree.
    pub entries: u64,
    /// Bytes of the backup.
    pub bytes: u64,
    /// The backup's SHA-256, hex.
    pub checksum: String,
    /// Whether the backup was salvaged from a damaged store: it holds only what could be read.
    pub salvaged: bool,
}

/// An error of [`Store::export`] or [`Store::import`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing the backup failed.
    #[error("cannot read or write the backup")]
    Io(#[from] io::Error),
    /// The input does not start with the backup signature.
    #[error("not a revolve backup")]
    NotABackup,
    /// The backup was written in a format this build does not know.
    #[error("backup format {format} is not known to this build; use a newer revolve")]
    UnsupportedFormat {
        /// The format number in the backup.
        format: u32,
    },
    /// The backup ends before its end frame.
    #[error("backup is truncated after {offset} bytes")]
    Truncated {
        /// Bytes read before it ended.
        offset: u64,
    },
    /// A frame does not parse.
    #[error("backup is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Where, in bytes from the start.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The backup's checksum does not match its bytes.
    #[error("backup checksum mismatch: recorded {recorded}, computed {computed}")]
    Checksum {
        /// The checksum at its end, hex.
        recorded: String,
        /// The checksum of the bytes read, hex.
        computed: String,
    },
    /// The store to import into already holds data.
    #[error("store at {path} is not empty; import only into a new store")]
    NotEmpty {
        /// The store's path.
        path: PathBuf,
    },
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// The backup was salvaged from a damaged store and holds only what could be read.
    #[error("the backup was salvaged from a damaged store and may lack documents; import it with `--accept-salvaged` (Store::import_salvaged)")]
    Salvaged,
}

impl Store {
    /// Writes a backup of the whole database to `writer`: every key of every tree, in the
    /// framed, checksummed format described in this module, restorable byte for byte with
    /// [`import`](Self::import). `progress` is called with the number of keys written so far,
    /// possibly while a collection's write lock is held: it must not write to the store.
    ///
    /// Each collection is copied under its write lock, so it is consistent in itself; stop the
    /// application's writers for a backup consistent across collections.
    ///
    /// # Errors
    ///
    /// [`BackupError::Io`] when writing fails, and [`BackupError::Store`].
    pub fn export(
        &self,
        writer: impl Write,
        mut progress: impl FnMut(u64),
    ) -> Result<BackupSummary, BackupError> {
        let mut out = HashingWriter::begin(writer, FORMAT)?;
        let mut names = self.sled()?.db().tree_names();
        names.sort();
        let (mut trees, mut entries) = (0u64, 0u64);
        for name in names {
            let mut copy = |tree: &Tree| -> Result<(), BackupError> {
                let mut started = false;
                for entry in tree {
                    let (key, value) = entry.map_err(backend)?;
                    if !started {
                        out.write(&[FRAME_TREE])?;
                        out.chunk(&name)?;
                        trees += 1;
                        started = true;
                    }
                    out.write(&[FRAME_ENTRY])?;
                    out.chunk(&key)?;
                    out.chunk(&value)?;
                    entries += 1;
                    if entries % PROGRESS_EVERY == 0 {
                        progress(entries);
                    }
                }
                Ok(())
            };
            if &name[..] == DEFAULT_TREE {
                copy(&self.sled()?.db())?;
            } else if let Some(collection) = collection_of_tree(&name) {
                self.with_collection(&collection, &name, |tree, _| copy(tree))?;
            } else {
                copy(&self.sled()?.db().open_tree(&name).map_err(backend)?)?;
            }
        }
        out.write(&[FRAME_END])?;
        out.write(&trees.to_be_bytes())?;
        out.write(&entries.to_be_bytes())?;
        let digest = out.hasher.clone().finalize();
        out.inner.write_all(&digest)?;
        out.inner.flush()?;
        progress(entries);
        Ok(BackupSummary {
            trees,
            entries,
            bytes: out.bytes + 32,
            checksum: hex(&digest),
            salvaged: false,
        })
    }

    /// Restores a backup written by [`export`](Self::export) into a new store at `path`, byte for
    /// byte, and closes it; open it with [`Store::open`] afterwards. `progress` is called with the
    /// number of keys restored so far.
    ///
    /// The store must be new or empty. A new store (no directory at `path`, or an empty one) is
    /// written in a sibling directory `<path>.importing-<pid>` on the same filesystem and renamed
    /// into place only once complete: a failed import leaves nothing behind. Into an existing
    /// empty store the import goes in place: while it runs the store is marked incomplete
    /// ([`Problem::IncompleteImport`](crate::Problem::IncompleteImport)), and if the backup
    /// turns out damaged, everything restored is removed again and the store is left empty.
    /// Migration run ids handed out later stay above every run id the backup holds.
    ///
    /// # Errors
    ///
    /// [`BackupError::NotEmpty`] for a store that holds data; [`BackupError::NotABackup`],
    /// [`BackupError::UnsupportedFormat`], [`BackupError::Truncated`], [`BackupError::Corrupt`]
    /// and [`BackupError::Checksum`] for a damaged backup; [`BackupError::Io`] when reading
    /// fails; [`BackupError::Store`] when the store cannot be opened (for example
    /// [`StoreError::Locked`]) or written; [`BackupError::Salvaged`] for a backup salvaged
    /// from a damaged store (see [`import_salvaged`](Self::import_salvaged)).
    pub fn import(
        path: impl AsRef<Path>,
        reader: impl Read,
        progress: impl FnMut(u64),
    ) -> Result<BackupSummary, BackupError> {
        Self::import_frames(path.as_ref(), reader, false, progress)
    }

    /// Imports into a sibling directory `<path>.importing-<pid>` renamed into place once
    /// complete, when `path` does not exist or is an empty directory, so that a failed import
    /// leaves nothing behind; into `path` itself when it is an existing (empty) store.
    pub(super) fn import_frames(
        path: &Path,
        reader: impl Read,
        accept_salvaged: bool,
        progress: impl FnMut(u64),
    ) -> Result<BackupSummary, BackupError> {
        // Nothing at `path`, or an empty directory that is not a symbolic link (a link, even a
        // dangling one, is imported through, never renamed over).
        let vacant = match std::fs::symlink_metadata(path) {
            Ok(metadata) if metadata.is_dir() => {
                std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
            }
            Ok(_) => false,
            Err(error) => error.kind() == io::ErrorKind::NotFound,
        };
        if !vacant {
            return Self::import_in_place(path, reader, accept_salvaged, progress);
        }
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!(".importing-{}", std::process::id()));
        let staging = PathBuf::from(staging);
        // Claimed by creating it: an existing one (another import's) is refused, not reused.
        match std::fs::create_dir(&staging) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BackupError::NotEmpty { path: staging });
            }
            Err(error) => return Err(error.into()),
        }
        let result = Self::import_in_place(&staging, reader, accept_salvaged, progress).and_then(
            |summary| {
                // Over an empty directory or nothing: `rename` replaces an empty directory.
                std::fs::rename(&staging, path)?;
                Ok(summary)
            },
        );
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    fn import_in_place(
        path: &Path,
        reader: impl Read,
        accept_salvaged: bool,
        mut progress: impl FnMut(u64),
    ) -> Result<BackupSummary, BackupError> {
        let store = Store::builder()
            .path(path)
            .durability(Durability::Eventual)
            .open()?;
        let db = store.sled()?.db();
        for name in db.tree_names() {
            let tree = if &name[..] == DEFAULT_TREE {
                (**db).clone()
            } else {
                db.open_tree(&name).map_err(backend)?
            };
            if !tree.is_empty().map_err(backend)? {
                return Err(BackupError::NotEmpty {
                    path: path.to_owned(),
                });
            }
        }
        db.insert(IMPORT_MARKER, &[][..]).map_err(backend)?;
        store.flush()?;

        let mut restore = Restore {
            db,
            tree: None,
            batch: sled::Batch::default(),
            pending: 0,
            max_run: 0,
        };
        let mut result = read_backup(
            reader,
            accept_salvaged,
            &mut |frame| restore.frame(frame),
            &mut progress,
        );
        if result.is_ok() {
            if let Err(error) = restore.apply() {
                result = Err(error);
            }
        }
        let summary = match result {
            Ok(summary) => summary,
            Err(error) => {
                // Leave the store as empty as it was found; the marker goes with the default tree.
                for name in db.tree_names() {
                    let tree = if &name[..] == DEFAULT_TREE {
                        (**db).clone()
                    } else {
                        db.open_tree(&name).map_err(backend)?
                    };
                    tree.clear().map_err(backend)?;
                }
                store.flush()?;
                return Err(error);
            }
        };
        db.remove(IMPORT_MARKER).map_err(backend)?;
        store.flush()?;
        let max_run = restore.max_run;
        // Every tree handle keeps the database, and its file lock, alive.
        drop(restore);
        if max_run == 0 {
            return Ok(summary);
        }
        if db.was_recovered() {
            // An empty database opened before: its id counter is unknown, so take ids until
            // past the backup's (see `advance_run_ids` for the quick way a new database allows).
            while db.generate_id().map_err(backend)? < max_run {}
            store.flush()?;
        } else {
            drop(store);
            advance_run_ids(path, max_run)?;
        }
        Ok(summary)
    }
}

// ---------------------------------------------------------------------------------------------
// Backups

pub(super) struct HashingWriter<W: Write> {
    pub(super) inner: W,
    pub(super) hasher: Sha256,
    pub(super) bytes: u64,
}

impl<W: Write> HashingWriter<BufWriter<W>> {
    /// A backup of `format` begun on `writer`: its signature and format number written.
    pub(super) fn begin(writer: W, format: u32) -> io::Result<Self> {
        let mut out = Self {
            inner: BufWriter::new(writer),
            hasher: Sha256::new(),
            bytes: 0,
        };
        out.write(&MAGIC)?;
        out.write(&format.to_be_bytes())?;
        Ok(out)
    }
}

impl<W: Write> HashingWriter<W> {
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// A length-prefixed byte string.
    pub(super) fn chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a key or value longer than 4 GiB",
            )
        })?;
        self.write(&len.to_be_bytes())?;
        self.write(bytes)
    }
}

/// One frame of a backup, as read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame {
    Tree(Vec<u8>),
    Entry(Vec<u8>, Vec<u8>),
}

struct HashingReader<R: Read> {
    inner: R,
    hasher: Sha256,
    offset: u64,
}

impl<R: Read> HashingReader<R> {
    fn read_unhashed(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.inner.read_exact(buf).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                BackupError::Truncated {
                    offset: self.offset,
                }
            } else {
                BackupError::Io(error)
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let mut buf = [0u8; N];
        self.read_unhashed(&mut buf)?;
        self.hasher.update(buf);
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, BackupError> {
        self.array().map(u64::from_be_bytes)
    }

    /// A length-prefixed byte string. Reads incrementally, so a damaged length cannot make it
    /// allocate more than the input holds.
    fn chunk(&mut self) -> Result<Vec<u8>, BackupError> {
        let len = self.u32()?;
        let mut buf = Vec::new();
        (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        if buf.len() as u64 != u64::from(len) {
            return Err(BackupError::Truncated {
                offset: self.offset,
            });
        }
        self.hasher.update(&buf);
        Ok(buf)
    }
}

/// Reads and checks a whole backup, handing each frame to `sink` as it comes. Keys must ascend
/// within a tree and no tree may appear twice. The summary is returned only once the end frame's
/// counts and checksum match and nothing follows it.
pub(super) fn read_backup(
    reader: impl Read,
    accept_salvaged: bool,
    sink: &mut dyn FnMut(Frame) -> Result<(), BackupError>,
    progress: &mut dyn FnMut(u64),
) -> Result<BackupSummary, BackupError> {
    let mut input = HashingReader {
        inner: BufReader::new(reader),
        hasher: Sha256::new(),
        offset: 0,
    };
    let magic = input.array::<8>().map_err(|error| match error {
        BackupError::Truncated { .. } => BackupError::NotABackup,
        other => other,
    })?;
    if magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let format = input.u32()?;
    match format {
        FORMAT => {}
        FORMAT_SALVAGED if accept_salvaged => {}
        FORMAT_SALVAGED => return Err(BackupError::Salvaged),
        format => return Err(BackupError::UnsupportedFormat { format }),
    }
    let mut seen = BTreeSet::new();
    let mut last_key: Option<Vec<u8>> = None;
    let mut in_tree = false;
    let (mut trees, mut entries) = (0u64, 0u64);
    loop {
        let at = input.offset;
        let corrupt = |reason| BackupError::Corrupt { offset: at, reason };
        let [tag] = input.array::<1>()?;
        match tag {
            FRAME_TREE => {
                let name = input.chunk()?;
                if name.is_empty() {
                    return Err(corrupt("a tree without a name"));
                }
                if !seen.insert(name.clone()) {
                    return Err(corrupt("a tree appears twice"));
                }
                trees += 1;
                in_tree = true;
                last_key = None;
                sink(Frame::Tree(name))?;
            }
            FRAME_ENTRY => {
                if !in_tree {
                    return Err(corrupt("an entry before any tree"));
                }
                let key = input.chunk()?;
                let value = input.chunk()?;
                if last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(corrupt("keys out of order"));
                }
                last_key = Some(key.clone());
                entries += 1;
                sink(Frame::Entry(key, value))?;
                if entries % PROGRESS_EVERY == 0 {
                    progress(entries);
                }
            }
            FRAME_END => {
                let recorded_trees = input.u64()?;
                let recorded_entries = input.u64()?;
                let computed = input.hasher.clone().finalize();
                let mut recorded = [0u8; 32];
                input.read_unhashed(&mut recorded)?;
                if recorded[..] != computed[..] {
                    return Err(BackupError::Checksum {
                        recorded: hex(&recorded),
                        computed: hex(&computed),
                    });
                }
                if (recorded_trees, recorded_entries) != (trees, entries) {
                    return Err(corrupt("the end frame's counts do not match the frames"));
                }
                let mut rest = [0u8; 1];
                if input.inner.read(&mut rest)? != 0 {
                    return Err(BackupError::Corrupt {
                        offset: input.offset,
                        reason: "bytes after the end frame",
                    });
                }
                progress(entries);
                return Ok(BackupSummary {
                    trees,
                    entries,
                    bytes: input.offset,
                    checksum: hex(&computed),
                    salvaged: format == FORMAT_SALVAGED,
                });
            }
            _ => return Err(corrupt("unknown frame")),
        }
    }
}

/// Writes the frames of an import into the database, a batch at a time.
struct Restore<'a> {
    db: &'a Db,
    tree: Option<(Vec<u8>, Tree)>,
    batch: sled::Batch,
    pending: usize,
    /// The highest migration run id the backup mentions.
    max_run: u64,
}

impl Restore<'_> {
    fn frame(&mut self, frame: Frame) -> Result<(), BackupError> {
        match frame {
            Frame::Tree(name) => {
                self.apply()?;
                let tree = if name == DEFAULT_TREE {
                    (**self.db).clone()
                } else {
                    self.db.open_tree(&name).map_err(backend)?
                };
                self.tree = Some((name, tree));
            }
            Frame::Entry(key, value) => {
                if let Some(run) = self
                    .tree
                    .as_ref()
                    .and_then(|(name, _)| run_of_entry(name, &key, &value))
                {
                    self.max_run = self.max_run.max(run);
                }
                self.batch.insert(key, value);
                self.pending += 1;
                if self.pending == IMPORT_BATCH {
                    self.apply()?;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self) -> Result<(), BackupError> {
        if let Some((_, tree)) = &self.tree {
            if self.pending > 0 {
                tree.apply_batch(std::mem::take(&mut self.batch))
                    .map_err(backend)?;
                self.pending = 0;
            }
        }
        Ok(())
    }
}

/// The migration run a ledger key or a revision's origin names.
fn run_of_entry(tree: &[u8], key: &[u8], value: &[u8]) -> Option<u64> {
    let run = if tree == LEDGER_TREE.as_bytes() {
        ledger_run(key)
    } else if tree.starts_with(COLLECTION_TREE_PREFIX.as_bytes())
        && key.first() == Some(&keys::REVISION)
    {
        match record::decode(value).map(|envelope| envelope.origin) {
            Ok(Origin::Migration { run } | Origin::Revert { run }) => Some(run),
            _ => None,
        }
    } else {
        None
    };
    run.filter(|&run| run < MAX_PLAUSIBLE_RUN_ID)
}

/// Makes the new database at `path` hand out ids above `max_run` from now on.
///
/// Run ids come from sled's `generate_id`, which a new database starts at 0, so the imported
/// ledger's ids would be handed out again. sled persists its id counter in steps of
/// `idgen_persist_interval` (and asserts the persisted value is a multiple of the step it runs
/// with), and a reopened database continues two steps above the last persisted value. Opening the
/// new database (counter 0) once with a step that is a multiple of sled's default and at least half
/// of `max_run`, and taking one id, persists twice that step; every later open, with the default
/// step, continues above it.
fn advance_run_ids(path: &Path, max_run: u64) -> Result<(), StoreError> {
    let step = (max_run / 2 / SLED_ID_STEP + 1) * SLED_ID_STEP;
    let config = sled::Config::new().path(path).idgen_persist_interval(step);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Through the engine's guard like every other call into sled.
    let db = loop {
        match super::engine::sled::guard::open(&config, Some(path)) {
            Ok(db) => break db,
            // sled releases the import's lock from its background threads, shortly after the
            // store was dropped.
            Err(super::engine::sled::guard::OpenFault::Engine(sled::Error::Io(io)))
                if io.to_string().contains("could not acquire lock") =>
            {
                if Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        path: path.to_owned(),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(super::engine::sled::guard::OpenFault::Engine(other)) => {
                return Err(backend(other))
            }
            Err(super::engine::sled::guard::OpenFault::Corrupt(damage)) => {
                return Err(super::engine::sled::damaged(damage))
            }
        }
    };
    let db = Db::new(
        db,
        std::sync::Arc::new(super::engine::sled::guard::Health::new(Some(
            path.to_owned(),
        ))),
    );
    db.generate_id().map_err(backend)?;
    db.flush().map_err(backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::fixtures::{migrated_store, populate};

    type Trees = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

    fn all_trees(store: &Store) -> Trees {
        let db = store.sled().unwrap().db();
        db.tree_names()
            .into_iter()
            .map(|name| {
                let tree = if &name[..] == DEFAULT_TREE {
                    (**db).clone()
                } else {
                    db.open_tree(&name).unwrap()
                };
                let entries: Vec<_> = tree
                    .iter()
                    .map(|entry| {
                        let (k, v) = entry.unwrap();
                        (k.to_vec(), v.to_vec())
                    })
                    .collect();
                (name.to_vec(), entries)
            })
            .filter(|(_, entries)| !entries.is_empty())
            .collect()
    }

    #[test]
    fn export_then_import_restores_every_key_and_run_ids_stay_ahead() {
        let source_dir = tempfile::tempdir().unwrap();
        migrated_store(source_dir.path());
        let source = Store::open(source_dir.path()).unwrap();
        let mut backup = Vec::new();
        let exported = source.export(&mut backup, |_| {}).unwrap();
        assert_eq!(exported.bytes, backup.len() as u64);

        let target_dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        let imported = Store::import(target_dir.path(), &backup[..], |n| seen.push(n)).unwrap();
        assert_eq!(imported, exported);
        assert_eq!(seen.last(), Some(&exported.entries));

        let target = Store::open(target_dir.path()).unwrap();
        assert_eq!(all_trees(&source), all_trees(&target));
        assert!(target.verify().unwrap().is_ok());
        let mut again = Vec::new();
        let _ = target.export(&mut again, |_| {}).unwrap();
        assert_eq!(again, backup);

        let max_run = source
            .raw_collection("tasks")
            .unwrap()
            .runs()
            .unwrap()
            .iter()
            .map(|run| run.id)
            .max()
            .unwrap();
        assert!(target.next_run_id().unwrap() > max_run);
        drop(target);
        // And after another reopen.
        let target = Store::open(target_dir.path()).unwrap();
        assert!(target.next_run_id().unwrap() > max_run);
    }

    #[test]
    fn import_into_an_empty_store_opened_before_keeps_run_ids_ahead() {
        let source_dir = tempfile::tempdir().unwrap();
        migrated_store(source_dir.path());
        let source = Store::open(source_dir.path()).unwrap();
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        let max_run = source
            .raw_collection("tasks")
            .unwrap()
            .runs()
            .unwrap()
            .iter()
            .map(|run| run.id)
            .max()
            .unwrap();

        let target_dir = tempfile::tempdir().unwrap();
        drop(Store::open(target_dir.path()).unwrap());
        let _ = Store::import(target_dir.path(), &backup[..], |_| {}).unwrap();
        for _ in 0..2 {
            let target = Store::open(target_dir.path()).unwrap();
            assert!(target.next_run_id().unwrap() > max_run);
            assert!(target.verify().unwrap().is_ok());
        }
    }

    #[test]
    fn import_refuses_a_store_with_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            populate(&store);
        }
        let source = Store::temporary().unwrap();
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        let error = Store::import(dir.path(), &backup[..], |_| {}).unwrap_err();
        assert!(matches!(error, BackupError::NotEmpty { .. }), "{error:?}");
    }

    #[test]
    fn import_claims_its_staging_directory_and_never_replaces_a_link() {
        let source = Store::temporary().unwrap();
        populate(&source);
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        let root = tempfile::tempdir().unwrap();
        // Another import's staging directory (this process's id) is refused, not reused.
        let target = root.path().join("target");
        let staging = root
            .path()
            .join(format!("target.importing-{}", std::process::id()));
        std::fs::create_dir(&staging).unwrap();
        let error = Store::import(&target, &backup[..], |_| {}).unwrap_err();
        assert!(matches!(error, BackupError::NotEmpty { .. }), "{error:?}");
        assert!(staging.is_dir() && !target.exists());
        std::fs::remove_dir(&staging).unwrap();
        // A dangling symbolic link stays a link, whatever becomes of the import.
        #[cfg(unix)]
        {
            let link = root.path().join("link");
            std::os::unix::fs::symlink(root.path().join("missing"), &link).unwrap();
            let _ = Store::import(&link, &backup[..], |_| {});
            assert!(std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
        }
    }

    #[test]
    fn a_damaged_backup_is_refused_and_the_store_left_empty() {
        let source = Store::temporary().unwrap();
        populate(&source);
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut damaged = backup.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x01;
        assert!(Store::import(dir.path(), &damaged[..], |_| {}).is_err());
        // Left empty: the intact backup still imports.
        let _ = Store::import(dir.path(), &backup[..], |_| {}).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.verify().unwrap().is_ok());
        assert_eq!(store.collection_names().unwrap(), ["notes", "tasks"]);
    }

    fn parse(bytes: &[u8]) -> Result<(BackupSummary, Vec<Frame>), BackupError> {
        let mut frames = Vec::new();
        let summary = read_backup(
            bytes,
            false,
            &mut |frame| {
                frames.push(frame);
                Ok(())
            },
            &mut |_| {},
        )?;
        Ok((summary, frames))
    }

    #[test]
    fn every_truncation_and_flipped_bit_of_a_backup_is_an_error() {
        let source = Store::temporary().unwrap();
        populate(&source);
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        let (summary, frames) = parse(&backup).unwrap();
        assert_eq!(summary.entries + summary.trees, frames.len() as u64);
        for len in 0..backup.len() {
            assert!(parse(&backup[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..backup.len() {
            for bit in [0x01, 0x80] {
                let mut damaged = backup.clone();
                damaged[i] ^= bit;
                assert!(parse(&damaged).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        let mut longer = backup.clone();
        longer.push(0);
        assert!(matches!(parse(&longer), Err(BackupError::Corrupt { .. })));
        assert!(matches!(parse(b"hello"), Err(BackupError::NotABackup)));
        let mut salvaged = backup.clone();
        salvaged[8..12].copy_from_slice(&FORMAT_SALVAGED.to_be_bytes());
        assert!(matches!(parse(&salvaged), Err(BackupError::Salvaged)));
        let mut future = backup.clone();
        future[8..12].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(
            parse(&future),
            Err(BackupError::UnsupportedFormat { format: 3 })
        ));
    }

    #[test]
    fn a_huge_length_does_not_allocate_it() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT.to_be_bytes());
        bytes.push(FRAME_TREE);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        bytes.extend_from_slice(b"short");
        assert!(matches!(parse(&bytes), Err(BackupError::Truncated { .. })));
    }
}
