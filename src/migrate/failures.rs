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
            Ok(Failure {
                id: DocId::from_validated(id),
                revision,
                from_version: record.version,
                class: FailureClass::parse(&record.class),
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
    /// [`StoreError::Corrupt`] for a failure record that does not decode, and
    /// [`StoreError::Backend`].
    pub fn failures_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Failure>, StoreError> {
        failures(self.name(), self.failure_records(after, limit)?)
    }
}
