//! The builder that mounts collections and makes the `axum::Router`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::auth::{authorize, Guard, Token};
use super::handlers as h;
use super::mount::Mount;
use super::offload::off_runtime;
use super::openapi;
use super::state::{AppState, Shared};
use super::trace;
use crate::erased;
use crate::{Schema, Store, StoreError};

/// The largest request body accepted unless [`Router::body_limit`] sets another: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How long a request may take unless [`Router::timeout`] sets another: 30 s. Migration runs and
/// reverts are exempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why [`Router::build`] or [`Router::collection`] refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Writing routes are enabled and no token is set.
    #[error(
        "writing and migrate routes need a bearer token: call `token(..)`, or `read_only()`, or `local_development()` for a server no one else can reach"
    )]
    MissingToken,
    /// The token given is empty.
    #[error("the bearer token is empty; give a long random one")]
    EmptyToken,
    /// A collection was mounted twice.
    #[error("collection `{collection}` is mounted twice")]
    DuplicateCollection {
        /// The collection.
        collection: String,
    },
    /// A collection's name is one of the router's own top-level routes (`healthz`), or one of the
    /// schemas its `OpenAPI` document names (`Problem`, `Status`, `Failure`, …), which the
    /// collection's own schema would take the place of.
    #[error("collection name `{collection}` is taken by the router's own `/{collection}` route or `OpenAPI` schema")]
    ReservedName {
        /// The collection.
        collection: String,
    },
    /// Opening the collection failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the HTTP API over a [`Store`]: mount collections, set the token, then
/// [`build`](Self::build) an `axum::Router`.
///
/// ```no_run
/// # use revolve::{Schema, Store};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Schema)]
/// # #[schema(collection = "issues", version = 1)]
/// # struct Issue { title: String }
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::open("data/app.revolve")?;
/// let app = revolve::http::Router::new(store)
///     .collection::<Issue>()?
///     .token(std::env::var("REVOLVE_TOKEN")?)
///     .build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// revolve::http::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
#[must_use]
#[allow(clippy::struct_excessive_bools)] // a builder's independent switches, not a state machine
pub struct Router {
    store: Store,
    collections: BTreeMap<String, Arc<Mount>>,
    token: Option<Token>,
    empty_token: bool,
    local_development: bool,
    read_only: bool,
    require_if_match: bool,
    protect_reads: bool,
    body_limit: usize,
    timeout: Duration,
    unknown_fields_allowed: BTreeSet<&'static str>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("collections", &self.collections.keys().collect::<Vec<_>>())
            .field("token", &self.token)
            .field("local_development", &self.local_development)
            .field("read_only", &self.read_only)
            .field("require_if_match", &self.require_if_match)
            .field("protect_reads", &self.protect_reads)
            .field("body_limit", &self.body_limit)
            .field("timeout", &self.timeout)
            .field("unknown_fields_allowed", &self.unknown_fields_allowed)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router over `store` with no collection mounted yet.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            collections: BTreeMap::new(),
            token: None,
            empty_token: false,
            local_development: false,
            read_only: false,
            require_if_match: false,
            protect_reads: false,
            body_limit: DEFAULT_BODY_LIMIT,
            timeout: DEFAULT_TIMEOUT,
            unknown_fields_allowed: BTreeSet::new(),
        }
    }

    /// Mounts the collection of `T` (its latest version) at `/{T::COLLECTION}`.
    ///
    /// # Errors
    ///
    /// [`BuildError::Store`] when the store refuses the collection (see [`Store::collection`]),
    /// [`BuildError::DuplicateCollection`], and [`BuildError::ReservedName`] for `healthz`,
    /// `readyz` and the names of the `OpenAPI` document's own schemas (`Problem`, `Status`, `Failure`, …).
    pub fn collection<T: Schema>(self) -> Result<Self, BuildError> {
        // The store is called (and, on an error, this router's handle dropped) off the runtime.
        off_runtime(move || self.mount::<T>())
    }

    fn mount<T: Schema>(mut self) -> Result<Self, BuildError> {
        let collection = erased::open::<T>(&self.store)?;
        let name = collection.raw().name().to_owned();
        if name == "healthz" || name == "readyz" || openapi::OWN_SCHEMAS.contains(&name.as_str()) {
            return Err(BuildError::ReservedName { collection: name });
        }
        if self.collections.contains_key(&name) {
            return Err(BuildError::DuplicateCollection { collection: name });
        }
        self.collections
            .insert(name, Arc::new(Mount::new(collection)));
        Ok(self)
    }

    /// The bearer token every writing and migrate route requires (`Authorization: Bearer …`).
    /// Only its SHA-256 digest is kept; it is compared in constant time and never logged.
    pub fn token(mut self, token: impl AsRef<str>) -> Self {
        let token = token.as_ref();
        self.empty_token = token.is_empty();
        self.token = Some(Token::new(token));
        self
    }

    /// Allows building with writing routes and no token: for a server on a developer's machine
    /// that no one else can reach. A token, if set, is still required.
    pub fn local_development(mut self) -> Self {
        self.local_development = true;
        self
    }

    /// Mounts only the reading routes (documents, revisions, listing, schemas): no writes, no
    /// migrations. Needs no token.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Requires `If-Match` on `PUT` and `DELETE` (428 without it), so that no client overwrites a
    /// document it has not read.
    pub fn require_if_match(mut self) -> Self {
        self.require_if_match = true;
        self
    }

    /// Requires the token on reading routes too; `/healthz`, `/readyz` and `/openapi.json` stay open.
    pub fn protect_reads(mut self) -> Self {
        self.protect_reads = true;
        self
    }

    /// Accepts fields that `T`'s JSON Schema does not declare in the bodies written to its
    /// collection: they are dropped, as serde drops them, instead of refused.
    ///
    /// By default a body of `POST /{c}` or `PUT /{c}/docs/{id}` is checked against the JSON
    /// Schema of the version it is decoded as (nested objects, flattened fields, tagged enums, and
    /// the old names of the document type's own fields), and a field the schema does not declare
    /// is refused with 422
    /// (`urn:revolve:problem:unknown-field`, naming each field as a JSON pointer in `fields`), so
    /// that a misspelt field is not acknowledged and lost. Call this for a collection whose
    /// clients send fields on purpose that the type leaves out.
    pub fn allow_unknown_fields<T: Schema>(mut self) -> Self {
        self.unknown_fields_allowed.insert(T::COLLECTION);
        self
    }

    /// The largest request body accepted (413 above it); [`DEFAULT_BODY_LIMIT`] by default.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long a request may take (503 after it); [`DEFAULT_TIMEOUT`] by default. Migration runs
    /// and reverts are exempt: they take as long as the collection needs.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `axum::Router`, with its state: serve it, or nest it in a larger application.
    ///
    /// # Errors
    ///
    /// [`BuildError::MissingToken`] when writing routes are enabled without a token and without
    /// [`local_development`](Self::local_development), and [`BuildError::EmptyToken`].
    pub fn build(self) -> Result<axum::Router, BuildError> {
        // On an error, this router's handles on the store are dropped off the runtime.
        off_runtime(move || self.assemble())
    }

    fn assemble(self) -> Result<axum::Router, BuildError> {
        if self.empty_token {
            return Err(BuildError::EmptyToken);
        }
        let writable = !self.read_only;
        if writable && self.token.is_none() && !self.local_development {
            return Err(BuildError::MissingToken);
        }
        if self.token.is_none() && writable {
            tracing::warn!(
                "local development: writing and migrate routes are open to anyone who can connect"
            );
        }
        for name in &self.unknown_fields_allowed {
            if let Some(mounted) = self.collections.get(*name) {
                mounted.allow_unknown_fields();
            }
        }
        let openapi = openapi::document(
            &self.collections,
            &openapi::Options {
                writable,
                secured: self.token.is_some(),
                protect_reads: self.protect_reads,
            },
        );
        let guard = Arc::new(Guard {
            token: self.token,
            protect_reads: self.protect_reads,
        });
        let state = AppState(Arc::new(Shared {
            collections: self.collections,
            require_if_match: self.require_if_match,
            openapi,
            store: Some(self.store.clone()),
        }));

        let (root, document) = if writable {
            (
                get(h::list).post(h::create),
                get(h::read).put(h::replace).delete(h::remove),
            )
        } else {
            (get(h::list), get(h::read))
        };
        let mut quick = axum::Router::new()
            .route("/healthz", get(h::healthz))
            .route("/readyz", get(h::readyz))
            .route("/openapi.json", get(h::openapi))
            .route("/{collection}", root)
            .route("/{collection}/docs/{id}", document)
            .route("/{collection}/docs/{id}/revisions", get(h::history))
            .route(
                "/{collection}/docs/{id}/revisions/{revision}",
                get(h::revision_of),
            )
            .route("/{collection}/schema", get(h::schema))
            .route("/{collection}/schema/history", get(h::schema_history))
            .route("/{collection}/schema/{version}", get(h::schema_at));
        if writable {
            quick = quick
                .route("/{collection}/migrate/status", get(h::migrate_status))
                .route("/{collection}/migrate/failures", get(h::failures))
                .route("/{collection}/migrate/runs", get(h::runs))
                .route("/{collection}/migrate/runs/{run_id}", get(h::run))
                // Answers at once: the run stops at its next chunk boundary.
                .route(
                    "/{collection}/migrate/runs/{run_id}/cancel",
                    post(h::cancel),
                );
        }
        let mut router = quick.layer(from_fn_with_state(self.timeout, h::limit_time));
        if writable {
            // No timeout: a run takes as long as the collection needs, and goes on if the client
            // leaves (`POST …/migrate/runs/{run_id}/cancel` stops it).
            router = router.merge(
                axum::Router::new()
                    .route("/{collection}/migrate/test", post(h::migrate_test))
                    .route("/{collection}/migrate/execute", post(h::migrate_execute))
                    .route(
                        "/{collection}/migrate/runs/{run_id}/revert",
                        post(h::revert),
                    ),
            );
        }
        Ok(router
            .route_layer(from_fn_with_state(guard, authorize))
            .fallback(h::no_route)
            .method_not_allowed_fallback(h::wrong_method)
            .layer(DefaultBodyLimit::max(self.body_limit))
            // Also for the migrate routes, which the request timeout leaves out: a body sent
            // slower than this fails (400) instead of holding the connection.
            .layer(RequestBodyTimeoutLayer::new(self.timeout))
            .layer(from_fn(h::problem_backstop))
            .layer(from_fn(trace::log_request))
            .with_state(state))
    }
}
