//! Rules between the keys of `#[schema(...)]` and on the shape of the type.
//!
//! What needs another type's impl (the version and collection `from` names, the signature of
//! `step`) is left to the compiler by `expand`, at the user's tokens.

use proc_macro2::Span;
use syn::{Data, DeriveInput, Expr, Ident, LitStr, Path, PathSegment, Type};

use crate::attr::{Attrs, Ctxt, Name, Version};

/// A checked derive input, ready to expand.
pub(crate) struct Model<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) krate: Path,
    pub(crate) collection: LitStr,
    pub(crate) version: Version,
    pub(crate) upgrade: Upgrade,
}

/// How `upgrade` reaches this version.
pub(crate) enum Upgrade {
    /// Version 1, or a later version marked `oldest`: never upgraded, `Previous = Self`.
    Oldest,
    /// `from = T, step = f`.
    Step { from: Type, step: Expr },
    /// `from = T` alone: `TryFrom<T>`, so also `From<T>`.
    Convert { from: Type },
}

/// Applies the rules, recording each broken one in `cx`; `None` when the input cannot be expanded.
pub(crate) fn check<'a>(
    cx: &mut Ctxt,
    input: &'a DeriveInput,
    attrs: Attrs<'_>,
) -> Option<Model<'a>> {
    check_shape(cx, input);
    let Some(first) = attrs.first else {
        cx.error_spanned_by(
            &input.ident,
            "missing `#[schema(...)]`: add `#[schema(collection = \"...\", version = 1)]` to the \
             type, with `from = <previous version>` on versions after 1",
        );
        return None;
    };
    if attrs.collection.is_none() && attrs.is_missing(Name::Collection) {
        cx.error_spanned_by(
            first,
            "missing `collection`: add `collection = \"...\"` to `#[schema(...)]`, the same name on \
             every version of the type",
        );
    }
    if attrs.version.is_none() && attrs.is_missing(Name::Version) {
        cx.error_spanned_by(
            first,
            "missing `version`: add `#[schema(version = 1)]` for the first version of a type, or \
             `version = N, from = <version N-1 type>` for a later one",
        );
    }
    let upgrade = upgrade(cx, &attrs);
    Some(Model {
        ident: &input.ident,
        krate: attrs.krate.map_or_else(default_krate, |krate| krate.value),
        collection: attrs.collection?.value,
        version: attrs.version?.value,
        upgrade: upgrade?,
    })
}

/// The rules between `version`, `from`, `step` and `oldest`.
fn upgrade(cx: &mut Ctxt, attrs: &Attrs<'_>) -> Option<Upgrade> {
    let version = attrs.version.as_ref().map(|v| &v.value);
    match version {
        Some(version) if version.value == 0 => {
            cx.error_spanned_by(
                version,
                "versions start at 1: write `version = 1` for the first version of a type",
            );
            None
        }
        Some(version) if version.value == 1 => {
            if let Some(oldest) = &attrs.oldest {
                cx.error_spanned_by(
                    oldest,
                    "`oldest` is not needed on `version = 1`: version 1 is always the oldest; \
                       remove `oldest`",
                );
            }
            if let Some(from) = &attrs.from {
                cx.error_spanned_by(
                    from,
                    "`from` is not allowed on `version = 1`: the first version upgrades from \
                     nothing; remove `from`, or raise `version` if an earlier version exists",
                );
            }
            if let Some(step) = &attrs.step {
                cx.error_spanned_by(
                    step,
                    "`step` is not allowed on `version = 1`: the first version is never upgraded; \
                     remove `step`",
                );
            }
            Some(Upgrade::Oldest)
        }
        _ if attrs.oldest.is_some() => oldest_upgrade(cx, attrs, version),
        Some(version) => {
            let previous = version.value - 1;
            match (&attrs.from, &attrs.step) {
                (Some(from), Some(step)) => Some(Upgrade::Step {
                    from: from.value.clone(),
                    step: step.value.clone(),
                }),
                (Some(from), None) => Some(Upgrade::Convert {
                    from: from.value.clone(),
                }),
                (None, Some(step)) => {
                    if attrs.is_missing(Name::From) {
                        cx.error_spanned_by(
                            step,
                            format_args!(
                                "`step` needs `from`: add `from = <version {previous} type>`, the \
                                 type `step` takes"
                            ),
                        );
                    }
                    None
                }
                (None, None) => {
                    if attrs.is_missing(Name::From) && attrs.is_missing(Name::Oldest) {
                        cx.error_spanned_by(
                            version,
                            format_args!(
                                "missing `from`: version {} upgrades from version {previous}; add \
                                 `from = <version {previous} type>`, or `oldest` if the older \
                                 versions were dropped, or write `version = 1` if this is the \
                                 first version",
                                version.value
                            ),
                        );
                    }
                    None
                }
            }
        }
        None => {
            if let (Some(step), None) = (&attrs.step, &attrs.from) {
                if attrs.is_missing(Name::From) {
                    cx.error_spanned_by(
                        step,
                        "`step` needs `from`: add `from = <previous version type>`, the type \
                         `step` takes",
                    );
                }
            }
            None
        }
    }
}

/// A version after 1 marked `oldest`: no `from`, no `step`.
fn oldest_upgrade(cx: &mut Ctxt, attrs: &Attrs<'_>, version: Option<&Version>) -> Option<Upgrade> {
    let previous = version.map_or_else(
        || "the previous version's type".to_owned(),
        |version| format!("the version {} type", version.value.saturating_sub(1)),
    );
    let mut valid = true;
    if let Some(from) = &attrs.from {
        cx.error_spanned_by(
            from,
            format_args!(
                "`from` is not allowed with `oldest`: the oldest version the program defines \
                 upgrades from nothing; remove `from`, or remove `oldest` if {previous} still \
                 exists"
            ),
        );
        valid = false;
    }
    if let Some(step) = &attrs.step {
        cx.error_spanned_by(
            step,
            "`step` is not allowed with `oldest`: the oldest version is never upgraded; remove \
             `step`",
        );
        valid = false;
    }
    // Without a version, `missing `version`` is already reported.
    (valid && version.is_some()).then_some(Upgrade::Oldest)
}

/// Only one concrete, non-union type can be a stored schema version.
fn check_shape(cx: &mut Ctxt, input: &DeriveInput) {
    if let Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`Schema` cannot be derived for a union: store a struct or an enum",
        );
    }
    let generics = &input.generics;
    if !generics.params.is_empty() {
        cx.error_spanned_by(
            generics,
            "`Schema` cannot be derived for a generic type: each version of a stored type must be \
             one concrete type; remove the generic parameters",
        );
    }
    if let Some(where_clause) = &generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "`Schema` cannot be derived for a type with a `where` clause: remove it",
        );
    }
}

/// `::revolve`, the path generated code names the crate by unless `crate = "..."` says otherwise.
fn default_krate() -> Path {
    Path {
        leading_colon: Some(<syn::Token![::]>::default()),
        segments: std::iter::once(PathSegment::from(Ident::new("revolve", Span::call_site())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;
    use syn::parse_quote;

    use super::*;

    fn check_input(input: &DeriveInput) -> syn::Result<String> {
        let mut cx = Ctxt::new();
        let attrs = Attrs::from_ast(&mut cx, input);
        let model = check(&mut cx, input, attrs);
        cx.finish(model).map(|model| {
            format!(
                "{} {} {}",
                model.krate.to_token_stream(),
                model.collection.value(),
                model.version.value
            )
        })
    }

    fn messages(input: &DeriveInput) -> Vec<String> {
        match check_input(input) {
            Ok(model) => panic!("expected errors, got {model}"),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_chain_is_accepted() {
        let first: DeriveInput = parse_quote! {
            #[schema(collection = "issues", version = 1)]
            enum IssueV1 { Open, Closed }
        };
        assert_eq!(check_input(&first).unwrap(), ":: revolve issues 1");
        let second: DeriveInput = parse_quote! {
            #[schema(collection = "issues", version = 2, from = IssueV1, crate = "revolve")]
            struct IssueV2 { open: bool }
        };
        assert_eq!(check_input(&second).unwrap(), "revolve issues 2");
    }

    #[test]
    fn missing_keys_say_what_to_add() {
        let input: DeriveInput = parse_quote! { struct A; };
        let errors = messages(&input);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("missing `#[schema(...)]`"),
            "{errors:?}"
        );

        let input: DeriveInput = parse_quote! { #[schema(from = Z)] struct A; };
        let errors = messages(&input);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("missing `collection`"), "{errors:?}");
        assert!(errors[1].starts_with("missing `version`"), "{errors:?}");
    }

    #[test]
    fn version_rules() {
        let cases: [(DeriveInput, &str); 5] = [
            (
                parse_quote! { #[schema(collection = "c", version = 0)] struct A; },
                "versions start at 1",
            ),
            (
                parse_quote! { #[schema(collection = "c", version = 1, from = Z)] struct A; },
                "`from` is not allowed on `version = 1`",
            ),
            (
                parse_quote! { #[schema(collection = "c", version = 1, step = f)] struct A; },
                "`step` is not allowed on `version = 1`",
            ),
            (
                parse_quote! { #[schema(collection = "c", version = 3)] struct A; },
                "missing `from`: version 3 upgrades from version 2",
            ),
            (
                parse_quote! { #[schema(collection = "c", version = 2, step = f)] struct A; },
                "`step` needs `from`",
            ),
        ];
        for (input, expected) in cases {
            let errors = messages(&input);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with(expected), "{errors:?}");
        }
    }

    #[test]
    fn oldest_rules() {
        let input: DeriveInput = parse_quote! {
            #[schema(collection = "issues", version = 3, oldest)]
            struct IssueV3 { title: String }
        };
        let mut cx = Ctxt::new();
        let attrs = Attrs::from_ast(&mut cx, &input);
        let model = check(&mut cx, &input, attrs);
        let model = cx.finish(model).unwrap();
        assert!(matches!(model.upgrade, Upgrade::Oldest));
        assert_eq!(model.version.value, 3);

        let cases: [(DeriveInput, &[&str]); 5] = [
            (
                parse_quote! {
                    #[schema(collection = "c", version = 3, oldest, from = Z)]
                    struct A;
                },
                &[
                    "`from` is not allowed with `oldest`: the oldest version the program defines \
                     upgrades from nothing; remove `from`, or remove `oldest` if the version 2 \
                     type still exists",
                ],
            ),
            (
                parse_quote! {
                    #[schema(collection = "c", version = 3, oldest, from = Z, step = f)] struct A;
                },
                &[
                    "`from` is not allowed with `oldest`",
                    "`step` is not allowed with `oldest`",
                ],
            ),
            (
                parse_quote! {
                    #[schema(collection = "c", version = 2, step = f, oldest)]
                    struct A;
                },
                &["`step` is not allowed with `oldest`"],
            ),
            (
                parse_quote! { #[schema(collection = "c", version = 1, oldest)] struct A; },
                &[
                    "`oldest` is not needed on `version = 1`: version 1 is always the oldest; \
                     remove `oldest`",
                ],
            ),
            (
                parse_quote! { #[schema(collection = "c", version = 4)] struct A; },
                &["missing `from`: version 4 upgrades from version 3; add \
                   `from = <version 3 type>`, or `oldest` if the older versions were dropped, or \
                   write `version = 1` if this is the first version"],
            ),
        ];
        for (input, expected) in cases {
            let errors = messages(&input);
            assert_eq!(errors.len(), expected.len(), "{errors:?}");
            for (error, expected) in errors.iter().zip(expected) {
                assert!(error.starts_with(expected), "{errors:?}");
            }
        }
    }

    #[test]
    fn shape_rules() {
        let input: DeriveInput = parse_quote! {
            #[schema(collection = "c", version = 1)]
            struct A<'a, T> where T: Clone { t: &'a T }
        };
        let errors = messages(&input);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("generic type"), "{errors:?}");
        assert!(errors[1].contains("`where` clause"), "{errors:?}");

        let input: DeriveInput = parse_quote! {
            #[schema(collection = "c", version = 1)]
            union U { a: u32 }
        };
        assert!(messages(&input)[0].contains("union"));
    }
}
