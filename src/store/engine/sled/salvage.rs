//! Salvage: a backup of everything still readable in a damaged store, and its import.
//!
//! [`Store::export_salvage`] walks every tree as `verify` does on damage (see `damaged`): scans
//! restart past damaged pages at keys the other key spaces name or just past the last key read,
//! read back towards the damage and search what they stepped over by bisection, and every
//! revision a head names is point-read. It writes what it read as a backup of format 2 with the salvaged flag set, and
//! lists what it could not read, and what it read but no backup record can hold (malformed keys,
//! heads that do not decode). [`Store::import`] refuses such a backup;
//! [`Store::import_salvaged`] restores it, rebuilds the counters from the heads, and verifies,
//! so that heads whose revisions were lost are reported.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::id::Revision;
use crate::store::backup::{BackupError, BackupSummary, HashingWriter};
use crate::store::engine::sled::backend;
use crate::store::engine::sled::damaged::{point, scan_range, Point, MAX_PROBED_REVISIONS};
use crate::store::engine::sled::guard::Tree;
use crate::store::engine::sled::keys::{
    self, collection_of_tree, parse_head_key, parse_revision_key, Head,
};
use crate::store::engine::sled::logical::{salvaged_records, SalvagedTree};
use crate::store::engine::sled::walk::DEFAULT_TREE;
use crate::store::logical::LogicalRecord;
use crate::store::report::escape;
use crate::store::{Problem, RepairReport, Store, StoreError, VerifyReport};

/// What [`Store::export_salvage`] wrote, and what it could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct SalvageReport {
    /// The backup written (marked salvaged).
    pub summary: BackupSummary,
    /// What could not be read: damaged stretches of trees ([`Problem::Unreadable`], named by
    /// the last key read before them), heads ([`Problem::UnreadableHead`]) and revisions
    /// ([`Problem::UnreadableRevision`]).
    pub unreadable: Vec<Problem>,
}

/// What [`Store::import_salvaged`] restored and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct SalvagedImport {
    /// The backup restored.
    pub summary: BackupSummary,
    /// The counters rebuilt from the heads restored.
    pub repair: RepairReport,
    /// The restored store's verification: heads whose revisions were lost show as
    /// [`Problem::HeadNotLast`] or [`Problem::MissingRevisions`].
    pub report: VerifyReport,
}

type Entries = SalvagedTree;

impl Store {
    /// Writes a backup of everything readable in a damaged store to `writer`, marked salvaged,
    /// and lists what could not be read. On an intact store it writes what
    /// [`export`](Self::export) writes, marked salvaged.
    ///
    /// Each tree is held in memory while it is salvaged (scans go back over it with restart
    /// points), so this needs memory for the largest collection. A key no backup record can
    /// hold (a malformed key, a head that does not decode) is left out and listed as
    /// [`Problem::MalformedKey`].
    ///
    /// # Errors
    ///
    /// [`BackupError::Io`] when writing fails, and [`BackupError::Store`] when the storage engine
    /// fails other than on damaged data (for example [`StoreError::Poisoned`]).
    pub fn export_salvage(
        &self,
        writer: impl Write,
        mut progress: impl FnMut(u64),
    ) -> Result<SalvageReport, BackupError> {
        let mut out = HashingWriter::begin(writer, true)?;
        let db = self.sled()?.db();
        let mut unreadable = Vec::new();
        let mut outside = BTreeMap::new();
        let mut collections = BTreeMap::new();
        for name in db.tree_names() {
            let label = String::from_utf8_lossy(&name).into_owned();
            if &name[..] == DEFAULT_TREE {
                outside.insert(name.to_vec(), salvage_tree(db, &label, &mut unreadable)?);
            } else if let Some(collection) = collection_of_tree(&name) {
                collections.insert(collection, name.to_vec());
            } else {
                let tree = db.open_tree(&name).map_err(backend)?;
                outside.insert(name.to_vec(), salvage_tree(&tree, &label, &mut unreadable)?);
            }
        }
        let mut salvage = |collection: &str, tree_name: &[u8], unreadable: &mut Vec<Problem>| {
            let label = String::from_utf8_lossy(tree_name).into_owned();
            self.with_collection(collection, tree_name, |tree, _| {
                salvage_collection(tree, collection, &label, unreadable)
            })
            .map_err(BackupError::from)
        };
        salvaged_records(
            &outside,
            &collections,
            &mut salvage,
            &mut unreadable,
            &mut |record| {
                let collection = matches!(record, LogicalRecord::Collection { .. });
                out.record(&record)?;
                if collection {
                    progress(out.records());
                }
                Ok(())
            },
        )?;
        let summary = out.end()?;
        progress(summary.entries);
        Ok(SalvageReport {
            summary,
            unreadable,
        })
    }

    /// Restores a backup, salvaged or not, into a new store at `path` as
    /// [`import`](Self::import) does, then rebuilds every collection's counters from the heads
    /// restored and verifies the store, so that what the salvage lost is reported.
    ///
    /// # Errors
    ///
    /// As [`import`](Self::import), but never [`BackupError::Salvaged`].
    pub fn import_salvaged(
        path: impl AsRef<Path>,
        reader: impl Read,
        progress: impl FnMut(u64),
    ) -> Result<SalvagedImport, BackupError> {
        let path = path.as_ref();
        let summary = Self::import_frames(path, reader, true, progress)?;
        let store = Store::builder()
            .path(path)
            .lock_timeout(Duration::from_secs(10))
            .open()?;
        let repair = store.repair_counters()?;
        let report = store.verify()?;
        Ok(SalvagedImport {
            summary,
            repair,
            report,
        })
    }
}

/// Every readable entry of a tree that is not a collection's: one scan, up to the damage.
fn salvage_tree(
    tree: &Tree,
    label: &str,
    unreadable: &mut Vec<Problem>,
) -> Result<Entries, StoreError> {
    let mut entries = Entries::new();
    let damage = scan_range(tree, Vec::new(), None, &BTreeSet::new(), |key, value| {
        entries.insert(key.to_vec(), value.into());
    })?;
    for stretch in damage {
        unreadable.push(Problem::Unreadable {
            tree: label.to_owned(),
            after: escape(&stretch.after),
            error: stretch.detail,
        });
    }
    Ok(entries)
}

/// Every readable entry of a collection's tree: scans restarted at the keys the other key
/// spaces name, then point reads of every revision a head names.
fn salvage_collection(
    tree: &Tree,
    collection: &str,
    label: &str,
    unreadable: &mut Vec<Problem>,
) -> Result<Entries, StoreError> {
    let mut entries = Entries::new();
    let mut hints = BTreeSet::new();
    let mut damage = Vec::new();
    // Each round restarts past damage at what the rounds before found; stop when one finds
    // nothing new.
    for _ in 0..3 {
        let before = entries.len();
        damage = scan_range(tree, Vec::new(), None, &hints, |key, value| {
            entries.insert(key.to_vec(), value.into());
        })?;
        if damage.is_empty() || (entries.len() == before && before > 0) {
            break;
        }
        hints = restart_points(&entries);
    }
    for stretch in damage {
        unreadable.push(Problem::Unreadable {
            tree: label.to_owned(),
            after: escape(&stretch.after),
            error: stretch.detail,
        });
    }
    // Point reads reach revisions and heads no scan could.
    let mut heads: BTreeMap<String, Option<Head>> = BTreeMap::new();
    let mut revision_ids = BTreeSet::new();
    for (key, value) in &entries {
        if let Ok(id) = parse_head_key(key) {
            heads.insert(id.to_owned(), Head::decode(value));
        } else if let Ok((id, _)) = parse_revision_key(key) {
            revision_ids.insert(id.to_owned());
        }
    }
    for id in revision_ids.iter().filter(|id| !heads.contains_key(*id)) {
        let key = keys::head(id);
        match point(tree, &key)? {
            Point::Found(value) => {
                entries.insert(key, value);
            }
            Point::Absent => {}
            Point::Unreadable => unreadable.push(Problem::UnreadableHead {
                collection: collection.to_owned(),
                id: id.clone(),
            }),
        }
    }
    for (id, head) in &heads {
        let Some(head) = head else { continue };
        for number in 1..=head.revision.get().min(MAX_PROBED_REVISIONS) {
            let Some(revision) = Revision::new(number) else {
                continue;
            };
            let key = keys::revision(id, revision);
            if entries.contains_key(&key) {
                continue;
            }
            match point(tree, &key)? {
                Point::Found(value) => {
                    entries.insert(key, value);
                }
                Point::Absent => {}
                Point::Unreadable => unreadable.push(Problem::UnreadableRevision {
                    collection: collection.to_owned(),
                    id: id.clone(),
                    revision: number,
                }),
            }
        }
    }
    Ok(entries)
}

/// Where a scan may restart past damage: the start of every key space, and every key the
/// documents found so far would have in each space.
fn restart_points(entries: &Entries) -> BTreeSet<Vec<u8>> {
    let mut ids = BTreeSet::new();
    for key in entries.keys() {
        if let Ok(id) = parse_head_key(key) {
            ids.insert(id.to_owned());
        } else if let Ok((id, _)) = parse_revision_key(key) {
            ids.insert(id.to_owned());
        }
    }
    let mut hints: BTreeSet<Vec<u8>> = [
        keys::COUNTER,
        keys::FAILURE,
        keys::HEAD,
        keys::CURSOR,
        keys::REVISION,
    ]
    .into_iter()
    .map(|space| vec![space])
    .collect();
    for id in &ids {
        hints.insert(keys::head(id));
        hints.insert(keys::revisions_of(id));
        hints.insert(keys::failure(id));
    }
    hints
}
