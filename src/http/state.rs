//! What every handler shares: the mounted collections and the router's settings, built once by
//! [`Router::build`](super::Router::build).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use serde_json::Value;

use super::error::ApiError;
use super::mount::Mount;
use super::offload::off_runtime;

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
    /// The store, for the readiness check; `None` only while the state is dropped.
    pub(crate) store: Option<crate::Store>,
}

/// The last clone of the state may be dropped on a runtime's thread (a connection's task, or
/// where the server's future ends): the store handles go away off it (see [`off_runtime`]).
impl Drop for Shared {
    fn drop(&mut self) {
        let collections = std::mem::take(&mut self.collections);
        let store = self.store.take();
        off_runtime(move || drop((collections, store)));
    }
}

impl Shared {
    pub(crate) fn mounted(&self, name: &str) -> Result<Arc<Mount>, ApiError> {
        self.collections
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::UnknownCollection(name.to_owned()))
    }
}
