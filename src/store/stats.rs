//! [`Store::stats`]: every collection's counts, read from its counters without a scan.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Store, StoreError};

/// One collection's counts, from its counters: no scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CollectionStats {
    /// The collection's name.
    pub name: String,
    /// The newest version any program has registered.
    pub newest_version: u32,
    /// Live documents per version.
    pub live: BTreeMap<u32, u64>,
    /// Removed documents.
    pub removed: u64,
    /// Live documents whose migration failed, per version.
    pub failed: BTreeMap<u32, u64>,
}

impl CollectionStats {
    /// Live documents over every version.
    #[must_use]
    pub fn documents(&self) -> u64 {
        self.live.values().sum()
    }
}

/// What [`Store::stats`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct StoreStats {
    /// Every registered collection, by name.
    pub collections: Vec<CollectionStats>,
    /// The size of the database's files, in bytes.
    pub size_on_disk: u64,
}

impl Store {
    /// The size of the database's files, in bytes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner().engine.size_on_disk()
    }

    /// Every collection's counts per version, removed and failed documents, and the size on
    /// disk. Reads counters only: no scan.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an unreadable `_meta` record or counter (run
    /// [`verify`](Self::verify)), [`StoreError::UnknownCollection`] for a collection whose `_meta`
    /// record is gone, and [`StoreError::Backend`].
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut collections = Vec::new();
        for name in self.collection_names()? {
            // Listed from `_meta`, so its record is there unless it went missing meanwhile.
            let newest_version = self
                .read_meta(&name)?
                .ok_or_else(|| StoreError::UnknownCollection {
                    collection: name.clone(),
                })?
                .newest_version;
            let counters = self.core(&name)?.engine.counts()?;
            collections.push(CollectionStats {
                live: counters.live(),
                removed: counters.removed(),
                failed: counters.failed(),
                newest_version,
                name,
            });
        }
        Ok(StoreStats {
            collections,
            size_on_disk: self.size_on_disk()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::sled::fixtures::migrated_store;

    #[test]
    fn stats_read_the_counters() {
        let dir = tempfile::tempdir().unwrap();
        migrated_store(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let stats = store.stats().unwrap();
        let names: Vec<_> = stats.collections.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["notes", "tasks"]);
        let tasks = &stats.collections[1];
        assert_eq!(tasks.newest_version, 2);
        assert_eq!(tasks.live, BTreeMap::from([(1, 1), (2, 2)]));
        assert_eq!(tasks.failed, BTreeMap::from([(1, 1)]));
        assert_eq!(stats.collections[0].removed, 1);
        assert_eq!(stats.collections[0].documents(), 2);
        assert!(stats.size_on_disk > 0);
    }
}
