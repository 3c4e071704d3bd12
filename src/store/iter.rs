//! The iterator over a collection's current documents, in id order.

use std::fmt;

use super::collection::{Collection, Document};
use super::error::backend;
use super::keys::{self, Head};
use super::StoreError;
use crate::id::Revision;
use crate::record;
use crate::schema::Schema;

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
    heads: super::engine::Iter,
    /// The head key of the item yielded last, and its revision once the head decoded.
    last: Option<(sled::IVec, Option<Revision>)>,
}

impl<T> Iter<T> {
    pub(super) fn new(collection: Collection<T>, heads: super::engine::Iter) -> Self {
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
        let (key, revision) = self.last.as_ref()?;
        Some((keys::id_of_head(key)?, *revision))
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
        loop {
            self.last = None;
            let (key, value) = match self.heads.next()? {
                Ok(entry) => entry,
                Err(error) => return Some(Err(backend(error))),
            };
            self.last = Some((key.clone(), None));
            let core = &self.collection.raw.core;
            let Some(id) = keys::id_of_head(&key) else {
                return Some(Err(core.corrupt(
                    &String::from_utf8_lossy(&key),
                    None,
                    record::RecordError::InvalidHeader("head key is not UTF-8"),
                )));
            };
            let Some(head) = Head::decode(&value) else {
                return Some(Err(core.corrupt(
                    id,
                    None,
                    record::RecordError::InvalidHeader("malformed head"),
                )));
            };
            if head.removed {
                continue;
            }
            self.last = Some((key.clone(), Some(head.revision)));
            // The revision a head names is written in the same batch as the head and never
            // removed, so it is there even if the document changed since the head was read.
            let result = match core.revision_bytes(id, head.revision) {
                Ok(Some(bytes)) => self.collection.decode(id, &bytes).transpose()?,
                Ok(None) => Err(core.corrupt(
                    id,
                    Some(head.revision),
                    record::RecordError::Truncated { len: 0 },
                )),
                Err(error) => Err(error),
            };
            return Some(result);
        }
    }
}
