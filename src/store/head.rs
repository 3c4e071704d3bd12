//! A document's head: where its current revision is.

use crate::id::Revision;

/// Where a document's current revision is, at which version, and whether it is a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) revision: Revision,
    /// The schema version of the head revision; 0 for a removed document.
    pub(crate) version: u32,
    pub(crate) removed: bool,
}
