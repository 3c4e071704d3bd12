//! The old names a struct's fields are also read under (`#[serde(alias = "...")]`), for
//! `Schema::ALIASES`: JSON Schema cannot say it, and the compatibility check needs it to tell a
//! rename from a removal.
//!
//! Only what names a field is read: `alias`, `rename` and the container's `rename_all` (their
//! deserialize side, the contract the stored schema is generated for), and `skip`,
//! `skip_deserializing`, `flatten` and `transparent`, which take a field's name out of the JSON.
//! `#[schemars(rename = ...)]` and `#[schemars(rename_all = ...)]` override serde's in the schema,
//! so they override it here too. Every other key, and any attribute that does not parse, is
//! skipped silently: serde and schemars check their own attributes.

use proc_macro2::TokenTree;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Data, DeriveInput, Expr, ExprLit, Fields, Lit, Token};

use crate::case::RenameRule;

/// `(field path, old name)` pairs such as `("/email", "mail")`, in the order of the fields and
/// their aliases; empty for enums, tuple and unit structs and `#[serde(transparent)]` structs.
pub(crate) fn from_ast(input: &DeriveInput) -> Vec<(String, String)> {
    let Data::Struct(data) = &input.data else {
        return Vec::new();
    };
    let Fields::Named(fields) = &data.fields else {
        return Vec::new();
    };
    let serde = Keys::read(&input.attrs, "serde");
    let schemars = Keys::read(&input.attrs, "schemars");
    if serde.transparent || schemars.transparent {
        return Vec::new();
    }
    let rename_all = schemars
        .rename_all
        .or(serde.rename_all)
        .and_then(|rule| rule.deserialize);
    let mut aliases = Vec::new();
    for field in &fields.named {
        let Some(ident) = &field.ident else {
            continue;
        };
        let serde = Keys::read(&field.attrs, "serde");
        let schemars = Keys::read(&field.attrs, "schemars");
        if serde.skipped || schemars.skipped {
            continue;
        }
        let name = schemars
            .rename
            .or(serde.rename)
            .and_then(|rename| rename.deserialize)
            .unwrap_or_else(|| {
                let ident = ident.unraw().to_string();
                rename_all.map_or_else(|| ident.clone(), |rule| rule.apply_to_field(&ident))
            });
        let mut seen = Vec::new();
        for alias in serde.aliases {
            if alias != name && !seen.contains(&alias) {
                seen.push(alias.clone());
                aliases.push((format!("/{name}"), alias));
            }
        }
    }
    aliases
}

/// A `rename` or `rename_all` as written, which may name the serialize side only.
#[derive(Debug)]
struct Written<T> {
    deserialize: Option<T>,
}

/// The keys of one kind of attribute (`serde` or `schemars`) on one item that name fields.
#[derive(Default, Debug)]
struct Keys {
    rename: Option<Written<String>>,
    rename_all: Option<Written<RenameRule>>,
    aliases: Vec<String>,
    /// `skip`, `skip_deserializing` or `flatten`: the field has no name of its own in the JSON.
    skipped: bool,
    transparent: bool,
}

impl Keys {
    fn read(attrs: &[Attribute], tool: &str) -> Self {
        let mut keys = Self::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident(tool)) {
            // A list that does not parse is for serde or schemars to report; what was read
            // before the mistake is kept, since the build fails anyway.
            let _ = attr.parse_nested_meta(|meta| keys.read_key(&meta));
        }
        keys
    }

    fn read_key(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let path = &meta.path;
        if path.is_ident("alias") {
            if let Some(alias) = string_value(meta)? {
                self.aliases.push(alias);
            }
        } else if path.is_ident("rename") {
            self.rename = Some(Written {
                deserialize: deserialize_side(meta)?,
            });
        } else if path.is_ident("rename_all") {
            let rule = deserialize_side(meta)?;
            self.rename_all = Some(Written {
                deserialize: rule.as_deref().and_then(RenameRule::from_name),
            });
        } else if ["skip", "skip_deserializing", "flatten"]
            .iter()
            .any(|key| path.is_ident(key))
        {
            self.skipped = true;
        } else if path.is_ident("transparent") {
            self.transparent = true;
        }
        skip_rest(meta)
    }
}

/// The deserialize side of `key = "both"` or `key(serialize = "...", deserialize = "...")`.
fn deserialize_side(meta: &ParseNestedMeta<'_>) -> syn::Result<Option<String>> {
    if meta.input.peek(Token![=]) {
        return string_value(meta);
    }
    let mut deserialize = None;
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            if inner.path.is_ident("deserialize") {
                deserialize = string_value(&inner)?;
            }
            skip_rest(&inner)
        })?;
    }
    Ok(deserialize)
}

/// The string of `key = "value"`; `None` for any other value.
fn string_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Option<String>> {
    if !meta.input.peek(Token![=]) {
        return Ok(None);
    }
    match meta.value()?.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) => Ok(Some(literal.value())),
        _ => Ok(None),
    }
}

/// Skips whatever is left of a key's value, up to the next `,`.
fn skip_rest(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn assert_pairs(input: &DeriveInput, expected: &[(&str, &str)]) {
        let pairs = from_ast(input);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(p, a)| (&**p, &**a)).collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn aliases_are_read_wherever_serde_reads_them() {
        let input: DeriveInput = parse_quote! {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields, rename_all = "camelCase")]
            struct Issue {
                #[serde(default, alias = "mail", alias = "e_mail")]
                #[serde(skip_serializing_if = "Option::is_none")]
                #[serde(alias = "contact")]
                email_address: Option<String>,
                #[serde(rename = "heading", alias = "title", with = "some::module")]
                title_text: String,
                #[doc = "no alias"]
                body: String,
                #[serde(alias = "type_")]
                r#type: u8,
                #[serde(bound(deserialize = "T: Clone"), alias = "was_open")]
                #[serde(rename(serialize = "isOpenNow"))]
                is_open: bool,
            }
        };
        assert_pairs(
            &input,
            &[
                ("/emailAddress", "mail"),
                ("/emailAddress", "e_mail"),
                ("/emailAddress", "contact"),
                ("/heading", "title"),
                ("/type", "type_"),
                ("/isOpen", "was_open"),
            ],
        );
    }

    #[test]
    fn the_deserialize_side_names_the_field() {
        let input: DeriveInput = parse_quote! {
            #[serde(rename_all(serialize = "UPPERCASE", deserialize = "kebab-case"))]
            struct Issue {
                #[serde(alias = "old")]
                due_date: u64,
                #[serde(rename(deserialize = "Owner", serialize = "owner"), alias = "user")]
                owner_name: String,
            }
        };
        assert_pairs(&input, &[("/due-date", "old"), ("/Owner", "user")]);

        let input: DeriveInput = parse_quote! {
            #[serde(rename_all(serialize = "UPPERCASE"))]
            struct Issue {
                #[serde(alias = "old")]
                due_date: u64,
            }
        };
        assert_pairs(&input, &[("/due_date", "old")]);
    }

    #[test]
    fn schemars_overrides_serde_names() {
        let input: DeriveInput = parse_quote! {
            #[serde(rename_all = "camelCase")]
            #[schemars(rename_all = "SCREAMING-KEBAB-CASE")]
            struct Issue {
                #[serde(alias = "old")]
                due_date: u64,
                #[serde(rename = "o", alias = "user")]
                #[schemars(rename = "owner")]
                owner_name: String,
            }
        };
        assert_pairs(&input, &[("/DUE-DATE", "old"), ("/owner", "user")]);
    }

    #[test]
    fn fields_without_a_name_of_their_own_are_left_out() {
        let input: DeriveInput = parse_quote! {
            struct Issue {
                #[serde(skip, alias = "a")]
                a: u8,
                #[serde(skip_deserializing, alias = "b")]
                b: u8,
                #[serde(flatten, alias = "c")]
                c: Extra,
                #[serde(alias = "d", alias = "d", alias = "dd")]
                d: u8,
            }
        };
        assert_pairs(&input, &[("/d", "dd")]);

        for input in [
            parse_quote! { #[serde(transparent)] struct A { #[serde(alias = "x")] a: u8 } },
            parse_quote! { struct A(#[serde(alias = "x")] u8); },
            parse_quote! { enum A { B { #[serde(alias = "x")] a: u8 } } },
        ] {
            assert_pairs(&input, &[]);
        }
    }

    #[test]
    fn unknown_or_broken_serde_attributes_are_ignored() {
        let input: DeriveInput = parse_quote! {
            #[serde = "nonsense"]
            #[serde(rename_all = "Train-Case", future_key(a, b = 1), another = [1, 2])]
            struct Issue {
                #[serde(alias = concat!("a", "b"), default = "path::to", alias = "ok")]
                due_date: u64,
                #[serde(alias = "kept", ??? garbage, alias = "lost")]
                #[serde]
                #[serde(alias)]
                #[serde(alias = 3)]
                #[schemars(rename = 3)]
                owner: String,
            }
        };
        assert_pairs(&input, &[("/due_date", "ok"), ("/owner", "kept")]);
    }
}
