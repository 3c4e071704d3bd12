//! The logical content of a store, engine-neutral: what a backup of format 2 holds and what an
//! engine streams out of a store and loads into a new one.
//!
//! A store is, logically, its collections, each with its `_meta` record (registered versions,
//! schemas, schema history), its documents' heads, their revision envelopes (the bytes as stored,
//! checksummed by `record`), its failure set, and its migration ledger with the progress records
//! of runs. Everything else an engine keeps is derived or transient and is not part of it: the
//! per-version counters (recomputed from the heads and the failure set on load), the migration
//! cursors (a run without one starts at the first id and takes the same documents), and the run
//! id allocator (raised on load above the highest run the records name).
//!
//! Records come in one order, so that the same content always streams as the same records:
//! collections by name (bytes); after each [`LogicalRecord::Collection`], that collection's
//! heads by id, its revisions by id then number, its failures by id, its ledger runs by run id,
//! and the progress records of its runs by run id. [`Sequence`] checks that order.

use crate::id::Revision;

use super::head::Head;

/// One logical record of a store. Every record but [`Collection`](Self::Collection) names the
/// collection it belongs to, which streams before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogicalRecord {
    /// A collection, with its `_meta` record (registered versions, schemas and schema history,
    /// as stored); `None` for a collection that holds data but was never registered.
    Collection { name: String, meta: Option<Vec<u8>> },
    /// A document's head.
    Head {
        collection: String,
        id: String,
        head: Head,
    },
    /// A revision of a document: its envelope, the bytes as stored.
    Revision {
        collection: String,
        id: String,
        revision: Revision,
        envelope: Vec<u8>,
    },
    /// The migration failure recorded for a document's head, as stored.
    Failure {
        collection: String,
        id: String,
        record: Vec<u8>,
    },
    /// A migration ledger record, as stored.
    LedgerRun {
        collection: String,
        run: u64,
        record: Vec<u8>,
    },
    /// A run's progress record (its counts as of its last committed chunk), as stored: what
    /// settles a run that was under way when the records were taken.
    RunProgress {
        collection: String,
        run: u64,
        record: Vec<u8>,
    },
}

impl LogicalRecord {
    /// The collection the record belongs to (its own name for a collection).
    pub(crate) fn collection(&self) -> &str {
        match self {
            Self::Collection { name, .. } => name,
            Self::Head { collection, .. }
            | Self::Revision { collection, .. }
            | Self::Failure { collection, .. }
            | Self::LedgerRun { collection, .. }
            | Self::RunProgress { collection, .. } => collection,
        }
    }

    /// The run a record names, if any: a ledger run, a progress record, or a revision written
    /// by a migration or a revert.
    pub(crate) fn run(&self) -> Option<u64> {
        match self {
            Self::LedgerRun { run, .. } | Self::RunProgress { run, .. } => Some(*run),
            Self::Revision { envelope, .. } => match crate::record::decode(envelope) {
                Ok(envelope) => match envelope.origin {
                    crate::record::Origin::Migration { run }
                    | crate::record::Origin::Revert { run } => Some(run),
                    _ => None,
                },
                Err(_) => None,
            },
            _ => None,
        }
    }

    /// Where the record sorts within its collection: its kind's rank, then its key.
    fn position(&self) -> (u8, Vec<u8>) {
        match self {
            Self::Collection { name, .. } => (0, name.as_bytes().to_vec()),
            Self::Head { id, .. } => (1, id.as_bytes().to_vec()),
            Self::Revision { id, revision, .. } => {
                // Ids hold no NUL, so the id's bytes then a NUL sort as the id does.
                let mut key = id.as_bytes().to_vec();
                key.push(0);
                key.extend_from_slice(&revision.get().to_be_bytes());
                (2, key)
            }
            Self::Failure { id, .. } => (3, id.as_bytes().to_vec()),
            Self::LedgerRun { run, .. } => (4, run.to_be_bytes().to_vec()),
            Self::RunProgress { run, .. } => (5, run.to_be_bytes().to_vec()),
        }
    }
}

/// Checks that records come in the order the module describes.
#[derive(Debug, Default)]
pub(crate) struct Sequence {
    collection: Option<String>,
    last: Option<(u8, Vec<u8>)>,
}

impl Sequence {
    /// Takes the next record; the reason when it is out of order.
    pub(crate) fn next(&mut self, record: &LogicalRecord) -> Result<(), &'static str> {
        let position = record.position();
        if let LogicalRecord::Collection { name, .. } = record {
            if self
                .collection
                .as_ref()
                .is_some_and(|last| last.as_bytes() >= name.as_bytes())
            {
                return Err("collections out of order");
            }
            self.collection = Some(name.clone());
            self.last = Some(position);
            return Ok(());
        }
        if self.collection.as_deref() != Some(record.collection()) {
            return Err("a record outside its collection");
        }
        if self.last.as_ref().is_some_and(|last| *last >= position) {
            return Err("records out of order");
        }
        self.last = Some(position);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(collection: &str, id: &str) -> LogicalRecord {
        LogicalRecord::Head {
            collection: collection.into(),
            id: id.into(),
            head: Head {
                revision: Revision::FIRST,
                version: 1,
                removed: false,
            },
        }
    }

    fn collection(name: &str) -> LogicalRecord {
        LogicalRecord::Collection {
            name: name.into(),
            meta: None,
        }
    }

    fn revision(id: &str, number: u64) -> LogicalRecord {
        LogicalRecord::Revision {
            collection: "a".into(),
            id: id.into(),
            revision: Revision::new(number).unwrap(),
            envelope: Vec::new(),
        }
    }

    #[test]
    fn the_order_is_checked() {
        let mut sequence = Sequence::default();
        for record in [
            collection("a"),
            head("a", "x"),
            head("a", "y"),
            revision("x", 1),
            revision("x", 2),
            revision("xy", 1),
            LogicalRecord::LedgerRun {
                collection: "a".into(),
                run: 3,
                record: Vec::new(),
            },
            collection("b"),
            head("b", "x"),
        ] {
            sequence.next(&record).unwrap();
        }
        let mut sequence = Sequence::default();
        assert!(sequence.next(&head("a", "x")).is_err());
        let mut sequence = Sequence::default();
        sequence.next(&collection("b")).unwrap();
        assert!(sequence.next(&collection("a")).is_err());
        assert!(sequence.next(&collection("b")).is_err());
        assert!(sequence.next(&head("a", "x")).is_err());
        let mut sequence = Sequence::default();
        sequence.next(&collection("a")).unwrap();
        sequence.next(&revision("x", 2)).unwrap();
        assert!(sequence.next(&revision("x", 1)).is_err());
        assert!(sequence.next(&head("a", "z")).is_err());
    }
}
