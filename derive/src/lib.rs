//! Implementation detail of revolve: the `#[derive(Schema)]` macro.
//!
//! Users never name this crate; they write `#[derive(revolve::Schema)]`, which revolve re-exports.
//! `attr` parses `#[schema(...)]`, `valid` applies the rules between keys and `expand` writes the
//! impl, leaving type-level rules to the compiler at the user's tokens. `aliases` reads the old
//! field names from serde's attributes, naming fields as serde does (`case`).

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod aliases;
mod attr;
mod case;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `revolve::Schema` for one version of a document type.
///
/// See `revolve::Schema` for the attribute's keys: `collection`, `version`, `from`, `step`,
/// `oldest` and `crate`. Fields' `#[serde(alias = "...")]` are recorded in `Schema::ALIASES`.
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
