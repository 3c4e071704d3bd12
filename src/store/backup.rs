//! Backups: the export and import of a whole store, in the framed, checksummed format below.
//!
//! # The backup format (2: logical)
//!
//! ```text
//! "REVOLVE\0"  8 bytes   signature
//! format       u32 BE    2
//! flags        u32 BE    bit 0: salvaged from a damaged store; no other bit is defined
//! frames, each a tag byte (ids and names UTF-8; strings are a length u32 BE, then the bytes):
//!   0x10 collection   name string, meta present u8 (0 or 1), [meta string]
//!   0x11 head         id string, removed u8, version u32 BE, revision u64 BE
//!   0x12 revision     id string, revision u64 BE, envelope string
//!   0x13 failure      id string, record string
//!   0x14 ledger run   run u64 BE, record string
//!   0x15 progress     run u64 BE, record string
//!   0xff end          collections u64 BE, other records u64 BE, then the SHA-256 of every byte
//!                     before the digest
//! ```
//!
//! A backup holds the store's logical records (see `logical`): each collection with its `_meta`
//! record (registered versions, schemas, schema history), then its heads, its revision envelopes
//! (the bytes as stored), its failure records, its ledger runs and the progress records of its
//! runs, in one order, so that exporting a store imported from a backup gives the same bytes.
//! Nothing in it names the storage engine, so a store moves between engines through it. Counters
//! are recomputed on import, migration cursors are left out (a run starts from the first id) and
//! run ids handed out after an import stay above every run the backup names. There is no export
//! time in it. Nothing may follow the end frame.
//!
//! A backup salvaged from a damaged store ([`Store::export_salvage`]) has the salvaged flag set;
//! [`Store::import`] refuses it, and [`Store::import_salvaged`] takes it.
//!
//! # Format 1 (physical), still imported
//!
//! ```text
//! "REVOLVE\0", format u32 BE 1, then frames:
//!   0x01 tree   name string                a tree's entries follow, keys ascending
//!   0x02 entry  key string, value string
//!   0xff end    trees u64 BE, entries u64 BE, then the SHA-256 of every byte before the digest
//! ```
//!
//! Every non-empty sled tree, byte for byte: written by earlier releases, restored key for key.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::frames::read_backup;
pub(crate) use super::frames::{Frame, HashingWriter};
use super::logical::LogicalRecord;
use super::report::PROGRESS_EVERY;
use super::{Durability, Store, StoreError};

/// A key in the store while an import is under way; a store that holds it after the import
/// returned is incomplete.
pub(crate) const IMPORT_MARKER: &[u8] = b"revolve/import-incomplete";

/// What an export wrote or an import restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct BackupSummary {
    /// Collections (format 2); trees (format 1).
    pub trees: u64,
    /// Records other than collections: heads, revisions, failure records, ledger runs and
    /// progress records (format 2); keys over every tree (format 1).
    pub entries: u64,
    /// Bytes of the backup.
    pub bytes: u64,
    /// The backup's SHA-256, hex.
    pub checksum: String,
    /// Whether the backup was salvaged from a damaged store: it holds only what could be read.
    pub salvaged: bool,
    /// The backup's format: 2 (logical) for every backup this build writes, 1 (physical) for
    /// one of an earlier release.
    pub format: u32,
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
    /// The store holds a key no backup record can hold (a malformed key, a head that does not
    /// decode, an unfinished import): `verify` names it; `repair` or `export --salvage`
    /// ([`Store::export_salvage`], which leaves such keys out and lists them) get past it.
    #[error("cannot export key `{key}` of `{place}`: {reason}; run `revolve verify`, then `repair` or `export --salvage`")]
    Unexportable {
        /// The tree (or key space) holding it.
        place: String,
        /// The key, escaped.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Store {
    /// Writes a backup of the whole store to `writer`: its logical records in the framed,
    /// checksummed format described in this module (format 2), restorable with
    /// [`import`](Self::import) into a store of any engine. `progress` is called with the number
    /// of records written so far, possibly while a collection's write lock is held: it must not
    /// write to the store.
    ///
    /// Each collection is copied under its write lock, so it is consistent in itself; stop the
    /// application's writers for a backup consistent across collections.
    ///
    /// # Errors
    ///
    /// [`BackupError::Io`] when writing fails, [`BackupError::Unexportable`] for a key no
    /// record can hold, and [`BackupError::Store`].
    pub fn export(
        &self,
        writer: impl Write,
        mut progress: impl FnMut(u64),
    ) -> Result<BackupSummary, BackupError> {
        let mut out = HashingWriter::begin(writer, false)?;
        self.inner().engine.export(self, &mut |record| {
            out.record(&record)?;
            let counted = !matches!(record, LogicalRecord::Collection { .. });
            if counted && out.records() % PROGRESS_EVERY == 0 {
                progress(out.records());
            }
            Ok(())
        })?;
        let summary = out.end()?;
        progress(summary.entries);
        Ok(summary)
    }

    /// Restores a backup written by [`export`](Self::export) (or a format-1 backup of an
    /// earlier release) into a new store at `path`, and closes it; open it with [`Store::open`]
    /// afterwards. `progress` is called with the number of records restored so far.
    ///
    /// The store must be new or empty. A new store (no directory at `path`, or an empty one) is
    /// written in a sibling directory `<path>.importing-<pid>` on the same filesystem and renamed
    /// into place only once complete: a failed import leaves nothing behind. Into an existing
    /// empty store the import goes in place: while it runs the store is marked incomplete
    /// ([`Problem::IncompleteImport`](crate::Problem::IncompleteImport)), and if the backup
    /// turns out damaged, everything restored is removed again and the store is left empty.
    /// Counters are recomputed from the heads and failure records restored, and migration run
    /// ids handed out later stay above every run id the backup names.
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
        store
            .load_backup(reader, accept_salvaged, &mut progress)
            .map_err(|error| match error {
                BackupError::NotEmpty { .. } => BackupError::NotEmpty {
                    path: path.to_owned(),
                },
                other => other,
            })
    }

    /// Restores a backup written by [`export`](Self::export) (format 2) into this open store,
    /// which must hold nothing: the way into a store on a database server, which
    /// [`import`](Self::import) (a path) cannot name. Counters are recomputed and run ids handed
    /// out later stay above every run id the backup names; if the backup turns out damaged,
    /// everything restored is removed again and the store is left empty. `progress` is called
    /// with the number of records restored so far.
    ///
    /// # Errors
    ///
    /// As [`import`](Self::import); a format-1 backup is refused with
    /// [`StoreError::Unsupported`] by an engine other than sled.
    pub fn import_into(
        &self,
        reader: impl Read,
        mut progress: impl FnMut(u64),
    ) -> Result<BackupSummary, BackupError> {
        self.load_backup(reader, false, &mut progress)
    }

    fn load_backup(
        &self,
        reader: impl Read,
        accept_salvaged: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BackupSummary, BackupError> {
        let mut import = self.inner().engine.import(self)?;
        let result = read_backup(
            reader,
            accept_salvaged,
            &mut |frame| import.frame(frame),
            progress,
        );
        match result {
            Ok(summary) => {
                import.finish()?;
                Ok(summary)
            }
            Err(error) => {
                // Leave the store as empty as it was found.
                import.abort()?;
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::id::Revision;
    use crate::store::engine::sled::fixtures::{migrated_store, populate};
    use crate::store::engine::sled::keys;
    use crate::store::engine::sled::walk::DEFAULT_TREE;
    use crate::store::engine::sled::LEDGER_TREE;
    use crate::store::frames::*;
    use crate::store::head::Head;
    use crate::store::Problem;

    type Trees = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

    /// Every key of every non-empty tree but the migration cursors, which a logical backup
    /// leaves out.
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
                let collection = name.starts_with(b"c/");
                let entries: Vec<_> = tree
                    .iter()
                    .map(|entry| {
                        let (k, v) = entry.unwrap();
                        (k.to_vec(), v.to_vec())
                    })
                    .filter(|(k, _)| !(collection && k.first() == Some(&keys::CURSOR)))
                    .collect();
                (name.to_vec(), entries)
            })
            .filter(|(_, entries)| !entries.is_empty())
            .collect()
    }

    fn max_run(store: &Store) -> u64 {
        store
            .raw_collection("tasks")
            .unwrap()
            .runs()
            .unwrap()
            .iter()
            .map(|run| run.id)
            .max()
            .unwrap()
    }

    #[test]
    fn export_then_import_restores_every_record_and_run_ids_stay_ahead() {
        let source_dir = tempfile::tempdir().unwrap();
        migrated_store(source_dir.path());
        let source = Store::open(source_dir.path()).unwrap();
        let mut backup = Vec::new();
        let exported = source.export(&mut backup, |_| {}).unwrap();
        assert_eq!(exported.bytes, backup.len() as u64);
        assert_eq!((exported.format, exported.trees), (FORMAT, 2));
        assert_eq!(backup[8..12], FORMAT.to_be_bytes());

        let target_dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        let imported = Store::import(target_dir.path(), &backup[..], |n| seen.push(n)).unwrap();
        assert_eq!(imported, exported);
        assert_eq!(seen.last(), Some(&exported.entries));

        let target = Store::open(target_dir.path()).unwrap();
        // Heads, revisions, failures, ledger, meta, recomputed counters and the run id counter:
        // every key but the cursors.
        assert_eq!(all_trees(&source), all_trees(&target));
        assert!(target.verify().unwrap().is_ok());
        let mut again = Vec::new();
        let _ = target.export(&mut again, |_| {}).unwrap();
        assert_eq!(again, backup);

        let max_run = max_run(&source);
        assert!(target.next_run_id().unwrap() > max_run);
        drop(target);
        // And after another reopen.
        let target = Store::open(target_dir.path()).unwrap();
        assert!(target.next_run_id().unwrap() > max_run);
    }

    /// The counters a backup's store held are not taken: they are counted from the heads and
    /// the failure records (removed and failed documents included).
    #[test]
    fn import_recomputes_the_counters() {
        use crate::store::counters::Counter;
        let source_dir = tempfile::tempdir().unwrap();
        migrated_store(source_dir.path());
        let source = Store::open(source_dir.path()).unwrap();
        let expected = all_trees(&source);
        // Wrong counters in the source: every one doubled, and a stray one.
        for name in ["c/notes", "c/tasks"] {
            let tree = source.sled().unwrap().db().open_tree(name).unwrap();
            for entry in tree.scan_prefix([keys::COUNTER]).collect::<Vec<_>>() {
                let (key, value) = entry.unwrap();
                let count = u64::from_be_bytes(value[..].try_into().unwrap());
                tree.insert(key, &(count * 2 + 1).to_be_bytes()[..])
                    .unwrap();
            }
            tree.insert(&Counter::Live(9).key()[..], &5u64.to_be_bytes()[..])
                .unwrap();
        }
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        drop(source);

        let target_dir = tempfile::tempdir().unwrap();
        let _ = Store::import(target_dir.path(), &backup[..], |_| {}).unwrap();
        let target = Store::open(target_dir.path()).unwrap();
        assert_eq!(expected, all_trees(&target));
        assert!(target.verify().unwrap().is_ok());
        let notes = target.raw_collection("notes").unwrap();
        assert_eq!(notes.removed_count().unwrap(), 1);
        let tasks = target.raw_collection("tasks").unwrap();
        assert_eq!(
            tasks.count_by_version().unwrap(),
            std::collections::BTreeMap::from([(1, 1), (2, 2)])
        );
        let counter = |name: &str, counter: Counter| {
            let tree = target.sled().unwrap().db().open_tree(name).unwrap();
            tree.get(counter.key())
                .unwrap()
                .map(|value| u64::from_be_bytes(value[..].try_into().unwrap()))
        };
        assert_eq!(counter("c/tasks", Counter::Failed(1)), Some(1));
        assert_eq!(counter("c/notes", Counter::Removed), Some(1));
        assert_eq!(counter("c/notes", Counter::Live(9)), None);
    }

    #[test]
    fn import_into_an_empty_store_opened_before_keeps_run_ids_ahead() {
        let source_dir = tempfile::tempdir().unwrap();
        migrated_store(source_dir.path());
        let source = Store::open(source_dir.path()).unwrap();
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        let max_run = max_run(&source);

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
        salvaged[12..16].copy_from_slice(&FLAG_SALVAGED.to_be_bytes());
        assert!(matches!(parse(&salvaged), Err(BackupError::Salvaged)));
        let mut flagged = backup.clone();
        flagged[12..16].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            parse(&flagged),
            Err(BackupError::Corrupt { offset: 12, .. })
        ));
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
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.push(FRAME_COLLECTION);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        bytes.extend_from_slice(b"short");
        assert!(matches!(parse(&bytes), Err(BackupError::Truncated { .. })));
    }

    /// A backup of `records`, written as an export writes them, checksum and all.
    fn written(records: &[LogicalRecord]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut out = HashingWriter::begin(&mut bytes, false).unwrap();
        for record in records {
            out.record(record).unwrap();
        }
        let _ = out.end().unwrap();
        bytes
    }

    /// Records in the wrong order, or with an invalid id or name, are refused even under a
    /// valid checksum.
    #[test]
    fn records_out_of_order_or_invalid_are_corrupt() {
        let collection = |name: &str| LogicalRecord::Collection {
            name: name.into(),
            meta: None,
        };
        let head = |id: &str| LogicalRecord::Head {
            collection: "a".into(),
            id: id.into(),
            head: Head {
                revision: Revision::FIRST,
                version: 1,
                removed: false,
            },
        };
        let good = written(&[collection("a"), head("01ARZ3NDEKTSV4RRFFQ69G5FAV")]);
        let (summary, frames) = parse(&good).unwrap();
        assert_eq!((summary.trees, summary.entries, frames.len()), (1, 1, 2));
        for (records, reason) in [
            (
                vec![collection("b"), collection("a")],
                "collections out of order",
            ),
            (
                vec![
                    collection("a"),
                    head("01ARZ3NDEKTSV4RRFFQ69G5FAW"),
                    head("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
                ],
                "records out of order",
            ),
            (vec![collection("a"), head("")], "an invalid document id"),
            (vec![collection("_meta")], "an invalid collection name"),
        ] {
            match parse(&written(&records)) {
                Err(BackupError::Corrupt { reason: found, .. }) => assert_eq!(found, reason),
                other => panic!("{reason}: {other:?}"),
            }
        }
        // A head record before any collection.
        let mut bytes = good.clone();
        let at = bytes.iter().position(|&b| b == FRAME_COLLECTION).unwrap();
        bytes[at] = FRAME_HEAD;
        assert!(matches!(parse(&bytes), Err(BackupError::Corrupt { .. })));
    }

    /// An empty store exports a backup that imports into an empty store.
    #[test]
    fn an_empty_store_round_trips() {
        let source = Store::temporary().unwrap();
        let mut backup = Vec::new();
        let summary = source.export(&mut backup, |_| {}).unwrap();
        assert_eq!((summary.trees, summary.entries), (0, 0));
        let dir = tempfile::tempdir().unwrap();
        let _ = Store::import(dir.path(), &backup[..], |_| {}).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.collection_names().unwrap().is_empty());
        assert!(store.verify().unwrap().is_ok());
    }

    /// A key no record can hold stops an export with a typed error naming it.
    #[test]
    fn a_stray_key_is_unexportable() {
        let source = Store::temporary().unwrap();
        populate(&source);
        let tree = source.sled().unwrap().db().open_tree("c/notes").unwrap();
        tree.insert(b"zz", &b"?"[..]).unwrap();
        let error = source.export(Vec::new(), |_| {}).unwrap_err();
        assert!(
            matches!(&error, BackupError::Unexportable { place, key, .. } if place == "c/notes" && key == "zz"),
            "{error:?}"
        );
        tree.remove(b"zz").unwrap();
        tree.insert(keys::head("01ARZ3NDEKTSV4RRFFQ69G5FAV"), &b"bad"[..])
            .unwrap();
        let error = source.export(Vec::new(), |_| {}).unwrap_err();
        assert!(
            matches!(&error, BackupError::Unexportable { reason, .. } if *reason == "a head that does not decode"),
            "{error:?}"
        );
    }

    /// A salvage leaves out what no record can hold and lists it; the rest imports.
    #[test]
    fn a_salvage_lists_a_stray_key_and_imports_the_rest() {
        let source = Store::temporary().unwrap();
        populate(&source);
        let mut plain = Vec::new();
        let _ = source.export(&mut plain, |_| {}).unwrap();
        let tree = source.sled().unwrap().db().open_tree("c/notes").unwrap();
        tree.insert(b"zz", &b"?"[..]).unwrap();
        let mut salvaged = Vec::new();
        let report = source.export_salvage(&mut salvaged, |_| {}).unwrap();
        assert!(report.summary.salvaged);
        assert!(
            matches!(&report.unreadable[..], [Problem::MalformedKey { tree, key, .. }] if tree == "c/notes" && key == "zz"),
            "{:?}",
            report.unreadable
        );
        // Salvaged from a store whose records are intact, it holds what an export holds.
        assert_eq!(salvaged.len(), plain.len());
        assert!(salvaged[16..salvaged.len() - 32] == plain[16..plain.len() - 32]);
        let dir = tempfile::tempdir().unwrap();
        let imported = Store::import_salvaged(dir.path(), &salvaged[..], |_| {}).unwrap();
        assert!(imported.report.is_ok(), "{:?}", imported.report);
    }

    /// A run's progress record goes with its collection and comes back as it was.
    #[test]
    fn progress_records_round_trip() {
        let source_dir = tempfile::tempdir().unwrap();
        migrated_store(source_dir.path());
        let source = Store::open(source_dir.path()).unwrap();
        let run = max_run(&source);
        let tree = source.sled().unwrap().db().open_tree("c/tasks").unwrap();
        tree.insert(keys::progress(run), &b"progress"[..]).unwrap();
        let mut backup = Vec::new();
        let summary = source.export(&mut backup, |_| {}).unwrap();
        let (_, frames) = parse(&backup).unwrap();
        assert!(frames.iter().any(|frame| matches!(
            frame,
            Frame::Record(LogicalRecord::RunProgress { collection, run: r, record })
                if collection == "tasks" && *r == run && record == b"progress"
        )));
        let target_dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Store::import(target_dir.path(), &backup[..], |_| {}).unwrap(),
            summary
        );
        let target = Store::open(target_dir.path()).unwrap();
        assert_eq!(all_trees(&source), all_trees(&target));
    }

    /// Run ids continue above a run only a revision's origin names (its ledger record gone).
    #[test]
    fn run_ids_continue_above_a_run_named_only_by_a_revision() {
        let source_dir = tempfile::tempdir().unwrap();
        migrated_store(source_dir.path());
        let source = Store::open(source_dir.path()).unwrap();
        let run = max_run(&source);
        source
            .sled()
            .unwrap()
            .db()
            .open_tree(LEDGER_TREE)
            .unwrap()
            .clear()
            .unwrap();
        let mut backup = Vec::new();
        let _ = source.export(&mut backup, |_| {}).unwrap();
        let target_dir = tempfile::tempdir().unwrap();
        let _ = Store::import(target_dir.path(), &backup[..], |_| {}).unwrap();
        let target = Store::open(target_dir.path()).unwrap();
        assert!(target.next_run_id().unwrap() > run);
    }
}
