//! What the maintenance jobs (verify, counter repair, backup, salvage) share to walk the
//! database: its trees by collection, and a collection's tree under its write lock.

use std::collections::BTreeMap;

use crate::store::counters::Counters;
use crate::store::engine::sled::backend;
use crate::store::engine::sled::guard::Tree;
use crate::store::engine::sled::keys::collection_of_tree;
use crate::store::{validate_collection_name, Store, StoreError};

/// The name sled gives its default tree.
pub(crate) const DEFAULT_TREE: &[u8] = b"__sled__default";
pub(crate) use crate::store::report::PROGRESS_EVERY;

impl Store {
    /// The collection trees of the database with their collections' names, in the order of the
    /// trees' names. Keyed by the tree, not the collection's name: every tree is walked, even
    /// two whose names are not UTF-8 alike.
    pub(crate) fn collection_trees(&self) -> Result<Vec<(String, sled::IVec)>, StoreError> {
        let trees: BTreeMap<sled::IVec, String> = self
            .sled()?
            .db()
            .tree_names()
            .into_iter()
            .filter_map(|name| Some((name.clone(), collection_of_tree(&name)?)))
            .collect();
        Ok(trees.into_iter().map(|(tree, name)| (name, tree)).collect())
    }

    /// Runs `work` on a collection's tree under its write lock, with its in-memory counters.
    ///
    /// A collection that cannot be opened the usual way (a malformed counter, a tree name no
    /// program could register) is worked on without counters, holding the lock every opening of a
    /// collection takes, so that no handle to it appears meanwhile.
    pub(crate) fn with_collection<R, E: From<StoreError>>(
        &self,
        name: &str,
        tree_name: &[u8],
        work: impl FnOnce(&Tree, Option<&mut Counters>) -> Result<R, E>,
    ) -> Result<R, E> {
        match validate_collection_name(name).and_then(|()| self.sled()?.open_collection(name)) {
            Ok(core) => {
                let mut counters = core.counters.lock();
                work(&core.tree, Some(&mut counters))
            }
            Err(error @ StoreError::Backend(_)) => Err(error.into()),
            Err(_) => {
                let _opening = self.sled()?.collections.lock();
                let tree = self
                    .sled()?
                    .db()
                    .open_tree(tree_name)
                    .map_err(|error| E::from(backend(error)))?;
                work(&tree, None)
            }
        }
    }
}
