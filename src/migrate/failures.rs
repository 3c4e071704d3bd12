//! The failure set: every document whose migration failed and that runs skip until it is written
//! again, listed page by page.

use super::{Failure, FailureClass};
use crate::id::{DocId, Revision};
use crate::record::RecordError;
use crate::schema::SchemaError;
use crate::store::{FailureRecord, RawCollection, StoreError};

impl FailureClass {
    /// The class of a failure to upgrade a stored revision, named as a migration names it.
    pub(crate) fn of_upgrade(error: &SchemaError) -> Self {
        match error {
            SchemaError::Step { .. } => FailureClass::Step,
            SchemaError::StepPanicked { .. } => FailureClass::Panic,
            _ => FailureClass::Decode,
        }
    }
}

/// One page of the failure set as public [`Failure`]s.
fn failures(
    collection: &str,
    page: Vec<(String, FailureRecord)>,
) -> Result<Vec<Failure>, StoreError> {
    page.into_iter()
        .map(|(id, record)| {
            let revision = Revision::new(record.revision).ok_or_else(|| StoreError::Corrupt {
                collection: collection.to_owned(),
                id: id.clone(),
                revision: None,
                source: RecordError::InvalidHeader("failure record names revision 0"),
            })?;
            let class =
                FailureClass::parse(&record.class).map_err(|source| StoreError::Corrupt {
                    collection: collection.to_owned(),
                    id: id.clone(),
                    revision: Some(revision),
                    source,
                })?;
            Ok(Failure {
                id: DocId::from_validated(id),
                revision,
                from_version: record.version,
                class,
                error: record.error,
            })
        })
        .collect()
}

impl RawCollection {
    /// The documents of the failure set, in id order: up to `limit` of them, those whose id
    /// comes after `after` if given. Page on with the last id returned; a page shorter than
    /// `limit` is the last.
    ///
    /// The failure set holds every document whose last migration failed and that runs skip
    /// (unless [`Migration::retry_failed`](crate::Migration::retry_failed)) until it is written
    /// again; each [`Failure`] names its head revision, the version it is stored at, the class
    /// and the error, as a run reported them. Unlike a report's `failures`, it is not cut at
    /// [`MAX_REPORTED_FAILURES`](crate::MAX_REPORTED_FAILURES) and spans every run.
    ///
    /// ```
    /// # use revolve::{Schema, Store};
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
    /// # #[schema(collection = "notes", version = 1)]
    /// # struct Note { text: String }
    /// let store = Store::temporary()?;
    /// let notes = store.collection::<Note>()?;
    /// let mut after = None;
    /// loop {
    ///     let page = notes.failures_page(after.as_deref(), 1000)?;
    ///     for failure in &page {
    ///         println!("{} at version {}: {}", failure.id, failure.from_version, failure.error);
    ///     }
    ///     if page.len() < 1000 {
    ///         break;
    ///     }
    ///     after = page.last().map(|failure| failure.id.to_string());
    /// }
    /// # Ok::<(), revolve::StoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a failure record that does not decode or that names a failure
    /// class this build does not know ([`RecordError::UnknownFailureClass`](crate::RecordError::UnknownFailureClass)),
    /// and [`StoreError::Backend`].
    pub fn failures_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Failure>, StoreError> {
        failures(self.name(), self.failure_records(after, limit)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use crate::store::{Action, ChunkItem, Commit};
    use crate::{Collection, Schema, Store};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct Note {
        n: u32,
    }

    impl Schema for Note {
        const COLLECTION: &'static str = "notes";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, crate::StepError> {
            Ok(previous)
        }
    }

    /// Records a failure of class `class` for a new document; returns its id.
    fn fail_with_class(notes: &Collection<Note>, class: &str) -> DocId {
        let id = notes.insert(&Note { n: 1 }).unwrap();
        let seen = notes
            .scan_all_heads()
            .find(|head| head.as_ref().unwrap().0 == id.as_str())
            .unwrap()
            .unwrap()
            .1;
        let item = ChunkItem {
            id: id.to_string(),
            seen: crate::store::Seen::Head(seen),
            action: Action::Fail(FailureRecord {
                revision: seen.revision.get(),
                version: 1,
                class: class.to_owned(),
                error: "no".to_owned(),
                run: 7,
            }),
        };
        notes
            .commit_chunk(&[item], Commit::new(Origin::Migration { run: 7 }, 1))
            .unwrap();
        id
    }

    #[test]
    fn every_class_reads_back_as_itself() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let classes = [
            FailureClass::Step,
            FailureClass::Panic,
            FailureClass::Decode,
            FailureClass::InvalidOutput,
        ];
        for class in classes {
            fail_with_class(&notes, class.as_str());
        }
        let mut read: Vec<FailureClass> = notes
            .failures_page(None, 10)
            .unwrap()
            .into_iter()
            .map(|failure| failure.class)
            .collect();
        read.sort();
        assert_eq!(read, classes);
    }

    /// A failure record of a class this build does not know is an error naming the class, not a
    /// `decode` failure.
    #[test]
    fn a_failure_of_an_unknown_class_is_an_error_naming_it() {
        let store = Store::temporary().unwrap();
        let notes = store.collection::<Note>().unwrap();
        let id = fail_with_class(&notes, "cosmic_ray");
        let error = notes.failures_page(None, 10).unwrap_err();
        match &error {
            StoreError::Corrupt {
                collection,
                id: corrupt,
                revision,
                source: RecordError::UnknownFailureClass { class },
            } => {
                assert_eq!(collection, "notes");
                assert_eq!(corrupt, id.as_str());
                assert_eq!(*revision, Some(Revision::FIRST));
                assert_eq!(class, "cosmic_ray");
            }
            other => panic!("unexpected error: {other:?}"),
        }
        let raw = store.raw_collection("notes").unwrap();
        assert!(matches!(
            raw.failures_page(None, 10),
            Err(StoreError::Corrupt {
                source: RecordError::UnknownFailureClass { .. },
                ..
            })
        ));
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(source, "unknown failure class `cosmic_ray`");
    }
}
