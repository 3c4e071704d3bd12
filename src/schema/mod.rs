//! The `Schema` trait, the upgrade chain and step errors.
//!
//! This module knows nothing of storage: it turns a payload stored at some version into the latest
//! type by decoding it at its own version and running every step above it.

use std::any::TypeId;
use std::error::Error as StdError;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::record::{self, RecordError};

mod canonical;
mod compat;
mod validate;

pub(crate) use self::canonical::fingerprint_canonical;
pub use self::canonical::{canonical_schema, schema_fingerprint};
pub use self::compat::{
    compare_schemas, compare_schemas_with_aliases, is_breaking, ChangeKind, Compatibility,
    SchemaChange,
};
pub(crate) use self::validate::Validator;

/// One version of a stored document type.
///
/// Derive it with `#[derive(revolve::Schema)]` and `#[schema(...)]` rather than by hand:
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, schemars::JsonSchema, revolve::Schema)]
/// #[schema(collection = "notes", version = 1)]
/// struct NoteV1 {
///     text: String,
/// }
///
/// #[derive(Serialize, Deserialize, schemars::JsonSchema, revolve::Schema)]
/// #[schema(collection = "notes", version = 2, from = NoteV1, step = note_v1_to_v2)]
/// struct NoteV2 {
///     text: String,
///     pinned: bool,
/// }
///
/// fn note_v1_to_v2(old: NoteV1) -> Result<NoteV2, revolve::StepError> {
///     Ok(NoteV2 { text: old.text, pinned: false })
/// }
///
/// assert_eq!(<NoteV2 as revolve::Schema>::VERSION, 2);
/// ```
///
/// `#[schema(...)]` keys: `collection` and `version` (required); `from = PreviousType` for every
/// version above the oldest, with `step = function` (or, without `step`, a `From`/`TryFrom`
/// conversion); `oldest` for a version above 1 whose predecessors were dropped from the code once
/// every document was migrated past them; `crate = "path"` when revolve is re-exported under
/// another name. The derive also reads serde's `#[serde(alias = "...")]` on fields into
/// [`ALIASES`](Schema::ALIASES), so a rename with an alias counts as compatible.
///
/// A hand-written implementation must keep the same rules the derive checks at compile time:
/// versions count up by one without gaps, every version of a chain names the same collection, and
/// the oldest version names itself as [`Previous`](Schema::Previous). [`Store::collection`] checks them
/// again at run time.
///
/// [`Store::collection`]: crate::Store::collection
pub trait Schema:
    Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static
{
    /// The name of the collection every version of this chain is stored in.
    const COLLECTION: &'static str;

    /// This type's version: 1 for the first, one more than [`Previous`](Schema::Previous) after.
    const VERSION: u32;

    /// The version this one is upgraded from; `Self` for the oldest version the program defines
    /// (version 1, or a later one once every document has been migrated past the older ones).
    type Previous: Schema;

    /// Fields read under an old name too (`#[serde(alias = "old")]`), as `(field path, old name)`
    /// pairs such as `("/email", "mail")`: JSON Schema cannot say it, so the derive records it for
    /// the compatibility check.
    const ALIASES: &'static [(&'static str, &'static str)] = &[];

    /// Upgrades a document of the previous version to this one.
    ///
    /// Never called for version 1.
    ///
    /// # Errors
    ///
    /// A [`StepError`] when the document cannot be upgraded; only that document fails.
    fn upgrade(previous: Self::Previous) -> Result<Self, StepError>;
}

/// The error a step function returns when it cannot upgrade a document.
///
/// It carries a message and, where the step failed because of another error, that error as its
/// source:
///
/// ```
/// use revolve::StepError;
///
/// let by_message = StepError::new("priority `urgent!` is not known");
/// let by_error = StepError::new("12x".parse::<u32>().unwrap_err());
/// assert_eq!(by_message.to_string(), "priority `urgent!` is not known");
/// assert_eq!(by_error.to_string(), "invalid digit found in string");
/// ```
pub struct StepError {
    inner: Box<dyn StdError + Send + Sync + 'static>,
}

impl StepError {
    /// Wraps a message (`&str`, `String`) or any error.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self {
            inner: error.into(),
        }
    }

    /// The wrapped error.
    #[must_use]
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl StdError for StepError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

/// A schema chain that breaks the rules, or a document that cannot be brought to the latest version.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The bytes of a stored document could not be decoded.
    #[error("cannot decode `{collection}` document at version {version}")]
    Decode {
        /// The collection.
        collection: &'static str,
        /// The version the bytes are stored at.
        version: u32,
        /// What went wrong.
        #[source]
        source: RecordError,
    },
    /// A step function returned an error.
    #[error("step from version {from} to {to} of `{collection}` failed")]
    Step {
        /// The collection.
        collection: &'static str,
        /// The version the step upgrades from.
        from: u32,
        /// The version the step upgrades to.
        to: u32,
        /// The step's error.
        #[source]
        source: StepError,
    },
    /// A step function panicked; the panic was caught and only this document failed.
    #[error("step from version {from} to {to} of `{collection}` panicked: {message}")]
    StepPanicked {
        /// The collection.
        collection: &'static str,
        /// The version the step upgrades from.
        from: u32,
        /// The version the step upgrades to.
        to: u32,
        /// The panic's message.
        message: String,
    },
    /// A document is stored at a version this program does not define yet.
    #[error(
        "`{collection}` document is stored at version {stored}, but this program knows versions up to {known}; run a newer build"
    )]
    VersionTooNew {
        /// The collection.
        collection: &'static str,
        /// The version the document is stored at.
        stored: u32,
        /// The latest version this program defines.
        known: u32,
    },
    /// A document is stored at a version no type of the chain defines: version 0, or one older
    /// than the oldest the program defines.
    #[error("`{collection}` document is stored at version {version}, which no type of the chain defines")]
    UnknownVersion {
        /// The collection.
        collection: &'static str,
        /// The stored version.
        version: u32,
    },
    /// A hand-written `Schema` implementation breaks the chain rules.
    #[error("invalid schema chain for `{collection}` at `{type_name}`: {reason}")]
    InvalidChain {
        /// The collection.
        collection: &'static str,
        /// The offending type.
        type_name: &'static str,
        /// Which rule it breaks.
        reason: String,
    },
    /// The JSON Schema of a version's type cannot be generated: its `JsonSchema` implementation
    /// panicked (the panic was caught).
    #[error("cannot generate the JSON Schema of `{type_name}` (version {version} of `{collection}`): {message}")]
    SchemaGeneration {
        /// The collection.
        collection: &'static str,
        /// The version of the type.
        version: u32,
        /// The type.
        type_name: &'static str,
        /// The panic's message.
        message: String,
    },
}

/// One version of a chain, as registration sees it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) version: u32,
    /// The JSON Schema of the version's type, as schemars generates it.
    pub(crate) schema: serde_json::Value,
    /// `(field path, old name)` pairs the type reads under `#[serde(alias)]`.
    pub(crate) aliases: &'static [(&'static str, &'static str)],
}

/// Walks the chain from `T` down to its oldest version, checking the rules the derive checks at
/// compile time, and returns its versions, newest first.
pub(crate) fn chain<T: Schema>() -> Result<Vec<Link>, SchemaError> {
    let mut links = Vec::new();
    push_links::<T>(T::COLLECTION, T::VERSION, &mut links)?;
    Ok(links)
}

fn push_links<T: Schema>(
    collection: &'static str,
    expected_version: u32,
    links: &mut Vec<Link>,
) -> Result<(), SchemaError> {
    let invalid = |reason: String| SchemaError::InvalidChain {
        collection,
        type_name: std::any::type_name::<T>(),
        reason,
    };
    if T::COLLECTION != collection {
        return Err(invalid(format!(
            "it belongs to collection `{}`",
            T::COLLECTION
        )));
    }
    if T::VERSION != expected_version {
        return Err(invalid(format!(
            "its version is {}, expected {expected_version}",
            T::VERSION
        )));
    }
    if T::VERSION == 0 {
        return Err(invalid("versions start at 1".to_owned()));
    }
    let schema = generate_schema::<T>()?;
    links.push(Link {
        version: T::VERSION,
        schema,
        aliases: T::ALIASES,
    });
    let is_oldest = TypeId::of::<T::Previous>() == TypeId::of::<T>();
    match (T::VERSION, is_oldest) {
        (_, true) => Ok(()),
        (1, false) => Err(invalid(
            "version 1 must name itself as `Previous`".to_owned(),
        )),
        (version, false) => push_links::<T::Previous>(collection, version - 1, links),
    }
}

/// The JSON Schema of `T`'s version, as schemars generates it. A `JsonSchema` implementation
/// that panics makes a [`SchemaError::SchemaGeneration`], never an accept-everything schema.
fn generate_schema<T: Schema>() -> Result<serde_json::Value, SchemaError> {
    panic::catch_unwind(|| {
        schemars::SchemaGenerator::default()
            .into_root_schema_for::<T>()
            .to_value()
    })
    .map_err(|payload| SchemaError::SchemaGeneration {
        collection: T::COLLECTION,
        version: T::VERSION,
        type_name: std::any::type_name::<T>(),
        message: panic_message(payload.as_ref()).to_owned(),
    })
}

/// Decodes a payload stored at `version` as the chain's type of that version, without stepping.
pub(crate) fn decode_exact<T: Schema>(
    version: u32,
    payload: &[u8],
    max_depth: usize,
) -> Result<(), SchemaError> {
    if version == T::VERSION {
        return record::decode_payload::<T>(payload, max_depth)
            .map(drop)
            .map_err(|source| SchemaError::Decode {
                collection: T::COLLECTION,
                version,
                source,
            });
    }
    if version > T::VERSION || TypeId::of::<T::Previous>() == TypeId::of::<T>() {
        return Err(SchemaError::UnknownVersion {
            collection: T::COLLECTION,
            version,
        });
    }
    decode_exact::<T::Previous>(version, payload, max_depth)
}

/// Decodes a payload stored at `version` and upgrades it to `T` through every step above it.
///
/// The caller has checked the chain with [`chain`], so the recursion ends at the oldest version.
pub(crate) fn upgrade<T: Schema>(
    version: u32,
    payload: &[u8],
    max_depth: usize,
) -> Result<T, SchemaError> {
    if version == T::VERSION {
        return record::decode_payload(payload, max_depth).map_err(|source| SchemaError::Decode {
            collection: T::COLLECTION,
            version,
            source,
        });
    }
    if version > T::VERSION {
        return Err(SchemaError::VersionTooNew {
            collection: T::COLLECTION,
            stored: version,
            known: T::VERSION,
        });
    }
    if TypeId::of::<T::Previous>() == TypeId::of::<T>() {
        return Err(SchemaError::UnknownVersion {
            collection: T::COLLECTION,
            version,
        });
    }
    let previous = upgrade::<T::Previous>(version, payload, max_depth)?;
    run_step::<T>(previous)
}

/// Runs one step, turning a panic into an error so that only this document fails.
pub(crate) fn run_step<T: Schema>(previous: T::Previous) -> Result<T, SchemaError> {
    match panic::catch_unwind(AssertUnwindSafe(|| T::upgrade(previous))) {
        Ok(result) => result.map_err(|source| SchemaError::Step {
            collection: T::COLLECTION,
            from: T::VERSION - 1,
            to: T::VERSION,
            source,
        }),
        Err(payload) => Err(SchemaError::StepPanicked {
            collection: T::COLLECTION,
            from: T::VERSION - 1,
            to: T::VERSION,
            message: panic_message(payload.as_ref()).to_owned(),
        }),
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "a non-string payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct A {
        n: u32,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct B {
        n: u64,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct Gap {
        n: u64,
    }

    impl Schema for A {
        const COLLECTION: &'static str = "t";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, StepError> {
            Ok(previous)
        }
    }
    impl Schema for B {
        const COLLECTION: &'static str = "t";
        const VERSION: u32 = 2;
        type Previous = A;
        fn upgrade(previous: A) -> Result<Self, StepError> {
            assert!(previous.n != 13, "unlucky");
            if previous.n == 7 {
                return Err(StepError::new("seven"));
            }
            Ok(B {
                n: u64::from(previous.n) * 10,
            })
        }
    }
    impl Schema for Gap {
        const COLLECTION: &'static str = "t";
        const VERSION: u32 = 3;
        type Previous = A;
        fn upgrade(previous: A) -> Result<Self, StepError> {
            Ok(Gap {
                n: previous.n.into(),
            })
        }
    }

    #[test]
    fn chain_lists_every_version() {
        let versions: Vec<u32> = chain::<B>().unwrap().iter().map(|l| l.version).collect();
        assert_eq!(versions, [2, 1]);
        assert_eq!(
            chain::<B>().unwrap()[0].schema["properties"]["n"]["format"],
            "uint64"
        );
    }

    #[test]
    fn chain_with_a_gap_is_refused() {
        let err = chain::<Gap>().unwrap_err();
        assert!(
            err.to_string().contains("its version is 1, expected 2"),
            "{err}"
        );
    }

    #[test]
    fn upgrade_runs_steps_and_isolates_failures() {
        let bytes = record::encode_payload(&A { n: 4 }).unwrap();
        assert_eq!(upgrade::<B>(1, &bytes, 64).unwrap(), B { n: 40 });

        let bytes = record::encode_payload(&A { n: 7 }).unwrap();
        let err = upgrade::<B>(1, &bytes, 64).unwrap_err();
        assert!(
            matches!(err, SchemaError::Step { from: 1, to: 2, .. }),
            "{err}"
        );

        let bytes = record::encode_payload(&A { n: 13 }).unwrap();
        let err = upgrade::<B>(1, &bytes, 64).unwrap_err();
        assert!(
            matches!(&err, SchemaError::StepPanicked { message, .. } if message == "unlucky"),
            "{err}"
        );
    }

    #[test]
    fn newer_and_unknown_versions_are_typed_errors() {
        let bytes = record::encode_payload(&A { n: 1 }).unwrap();
        assert!(matches!(
            upgrade::<A>(2, &bytes, 64),
            Err(SchemaError::VersionTooNew {
                stored: 2,
                known: 1,
                ..
            })
        ));
        assert!(matches!(
            upgrade::<B>(0, &bytes, 64),
            Err(SchemaError::UnknownVersion { version: 0, .. })
        ));
    }

    /// A type whose `JsonSchema` implementation panics.
    #[derive(Debug, Serialize, Deserialize)]
    struct Unschemable {
        n: u32,
    }

    impl schemars::JsonSchema for Unschemable {
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Unschemable".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            panic!("no schema for you")
        }
    }

    impl Schema for Unschemable {
        const COLLECTION: &'static str = "unschemable";
        const VERSION: u32 = 1;
        type Previous = Self;
        fn upgrade(previous: Self) -> Result<Self, StepError> {
            Ok(previous)
        }
    }

    /// A schema that cannot be generated is refused at registration, not recorded as a schema
    /// that accepts everything.
    #[test]
    fn a_schema_that_cannot_be_generated_is_refused_at_registration() {
        assert!(matches!(
            chain::<Unschemable>(),
            Err(SchemaError::SchemaGeneration {
                collection: "unschemable",
                version: 1,
                ref message,
                ..
            }) if message == "no schema for you"
        ));
        let store = crate::Store::temporary().unwrap();
        let error = store.collection::<Unschemable>().unwrap_err();
        match error {
            crate::StoreError::Schema(SchemaError::SchemaGeneration { type_name, .. }) => {
                assert!(type_name.ends_with("Unschemable"), "{type_name}");
            }
            other => panic!("unexpected error: {other:?}"),
        }
        assert!(store.collection_names().unwrap().is_empty());
    }
}
