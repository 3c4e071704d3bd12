//! Code generation for `#[derive(Schema)]`.
//!
//! Rules that need another type's impl are written as code the compiler checks at the user's
//! tokens (`quote_spanned!`): the version and collection of `from` in `const` assertions outside
//! the impl, the signature of `step` in a coercion to a function pointer.

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{DeriveInput, Expr, Path, Type};

use crate::aliases;
use crate::attr::{Attrs, Ctxt};
use crate::valid::{self, Model, Upgrade};

/// Expands one `#[derive(Schema)]`, or every mistake found in it.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    let attrs = Attrs::from_ast(&mut cx, input);
    let model = valid::check(&mut cx, input, attrs);
    let model = cx.finish(model)?;
    Ok(expand(&model, &aliases::from_ast(input)))
}

fn expand(model: &Model<'_>, aliases: &[(String, String)]) -> TokenStream {
    let Model {
        ident,
        krate,
        collection,
        version,
        upgrade,
    } = model;
    let mut version_literal = Literal::u32_unsuffixed(version.value);
    version_literal.set_span(version.literal.span());
    let (previous, body, checks) = match upgrade {
        Upgrade::Oldest => (
            quote!(Self),
            // Never called for the oldest version, and `Previous` is `Self`: returning the value
            // unchanged is correct and cannot panic.
            quote!(::core::result::Result::Ok(previous)),
            TokenStream::new(),
        ),
        Upgrade::Step { from, step } => (
            quote!(#from),
            step_body(krate, from, step),
            checks(krate, from, collection.value().as_str(), version.value),
        ),
        Upgrade::Convert { from } => (
            quote!(#from),
            convert_body(krate, from),
            checks(krate, from, collection.value().as_str(), version.value),
        ),
    };
    // Left to the trait's default (none) when no field has an alias.
    let aliases = (!aliases.is_empty()).then(|| {
        let (paths, names): (Vec<_>, Vec<_>) = aliases.iter().cloned().unzip();
        quote! {
            const ALIASES: &'static [(
                &'static ::core::primitive::str,
                &'static ::core::primitive::str,
            )] = &[#((#paths, #names)),*];
        }
    });
    quote! {
        #checks

        #[automatically_derived]
        impl #krate::Schema for #ident {
            const COLLECTION: &'static ::core::primitive::str = #collection;
            const VERSION: ::core::primitive::u32 = #version_literal;
            type Previous = #previous;
            #aliases

            fn upgrade(
                previous: Self::Previous,
            ) -> ::core::result::Result<Self, #krate::StepError> {
                #body
            }
        }
    }
}

/// Calls `step` through a function pointer of the exact signature, so that a step with the wrong
/// argument or return type fails at the user's `step = ...` tokens.
fn step_body(krate: &Path, from: &Type, step: &Expr) -> TokenStream {
    let binding = quote_spanned! {step.span()=>
        let step: fn(#from) -> ::core::result::Result<Self, #krate::StepError> = #step;
    };
    quote! {
        #binding
        step(previous)
    }
}

/// Converts with `TryFrom` (so also `From`) through `__private::FromPrevious`, whose
/// `on_unimplemented` says what to do; the whole call at the user's `from = ...` tokens so that a
/// missing impl is reported there rather than at the derive.
fn convert_body(krate: &Path, from: &Type) -> TokenStream {
    let span = from.span();
    let krate = respan(krate.to_token_stream(), span);
    quote_spanned! {span=>
        <Self as #krate::__private::FromPrevious<#from>>::from_previous(previous)
    }
}

/// `tokens` with every span set to `span`, for an expression the compiler reports as one span.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// Compile-time checks, at the user's `from = ...` tokens, that `from` is version N-1 of the same
/// collection.
fn checks(krate: &Path, from: &Type, collection: &str, version: u32) -> TokenStream {
    let previous = version - 1;
    let previous_literal = Literal::u32_unsuffixed(previous);
    // The messages are format strings of `panic!`; braces in a collection name must not be read
    // as arguments.
    let escaped = collection.replace('{', "{{").replace('}', "}}");
    let version_message = format!(
        "`from` must name the version {previous} type of `{escaped}`: point `from` at the type \
         with `#[schema(version = {previous})]`"
    );
    let collection_message = format!(
        "`from` must name a type of collection `{escaped}`: point `from` at the version \
         {previous} type with `#[schema(collection = \"{escaped}\")]`"
    );
    quote_spanned! {from.span()=>
        const _: () = ::core::assert!(
            <#from as #krate::Schema>::VERSION == #previous_literal,
            #version_message,
        );
        const _: () = ::core::assert!(
            #krate::__private::str_eq(<#from as #krate::Schema>::COLLECTION, #collection),
            #collection_message,
        );
    }
}
