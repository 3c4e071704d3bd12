//! What every handler shares: the mounted collections and the router's settings, built once by
//! [`Router::build`](super::Router::build).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use serde_json::Value;

use super::error::ApiError;
use super::mount::Mount;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub(crate) struct Shared {
    pub(crate) collections: BTreeMap<String, Arc<Mount>>,
    pub(crate) require_if_match: bool,
    pub(crate) openapi: Value,
    /// The store, for the readiness check.
    pub(crate) store: crate::Store,
}

impl Shared {
    pub(crate) fn mounted(&self, name: &str) -> Result<Arc<Mount>, ApiError> {
        self.collections
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::UnknownCollection(name.to_owned()))
    }
}
