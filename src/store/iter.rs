//! The iterator over a collection's current documents, in id order.

use std::fmt;

use super::collection::{Collection, Document};
use super::engine::Heads;
use super::StoreError;
use crate::id::Revision;
use crate::schema::Schema;

impl<T: Schema> Collection<T> {
    /// The current documents in id order, upgraded to `T`; removed ones are left out.
    ///
    /// A document that cannot be upgraded yields one [`StoreError::Upgrade`] (naming it, with its
    /// raw revision) and the iterator goes on to the next; so does one whose bytes are damaged
    /// ([`StoreError::Corrupt`]).
    #[must_use]
    pub fn iter(&self) -> Iter<T> {
        Iter::new(self.clone(), self.raw.core.engine.heads(None, false))
    }

    /// The current documents whose id comes after `id`, in id order: for paging.
    #[must_use]
    pub fn iter_after(&self, id: &str) -> Iter<T> {
        Iter::new(self.clone(), self.raw.core.engine.heads(Some(id), false))
    }
}

impl<T: Schema> IntoIterator for &Collection<T> {
    type Item = Result<Document<T>, StoreError>;
    type IntoIter = Iter<T>;

    fn into_iter(self) -> Iter<T> {
        self.iter()
    }
}

/// An iterator over a collection's current documents; see [`Collection::iter`].
pub struct Iter<T> {
    collection: Collection<T>,
    heads: Heads,
    /// The id of the head read last, and its revision unless it was malformed.
    last: Option<(String, Option<Revision>)>,
}

impl<T> Iter<T> {
    pub(super) fn new(collection: Collection<T>, heads: Heads) -> Self {
        Self {
            collection,
            heads,
            last: None,
        }
    }

    /// The id of the document the last item was about, and its head revision if the head
    /// decoded: what an error without an id (such as [`StoreError::VersionTooNew`]) was about.
    // Only the HTTP list needs it, to show a problem in the document's place.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn last_head(&self) -> Option<(&str, Option<Revision>)> {
        let (id, revision) = self.last.as_ref()?;
        Some((id, *revision))
    }
}

impl<T> fmt::Debug for Iter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("collection", &self.collection.raw.core.name)
            .finish_non_exhaustive()
    }
}

impl<T: Schema> Iterator for Iter<T> {
    type Item = Result<Document<T>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.last = None;
        let (id, head) = match self.heads.next()? {
            Ok(entry) => entry,
            Err(error) => {
                if let StoreError::Corrupt { id, .. } = &error {
                    self.last = Some((id.clone(), None));
                }
                return Some(Err(error));
            }
        };
        self.last = Some((id.clone(), Some(head.revision)));
        // The revision a head names is written in the same commit as the head and never removed,
        // so it is there even if the document changed since the head was read.
        let core = &self.collection.raw.core;
        let result = match core.head_revision(&id, head) {
            Ok(bytes) => self.collection.decode(&id, &bytes).transpose()?,
            Err(error) => Err(error),
        };
        Some(result)
    }
}
