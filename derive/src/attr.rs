//! `#[schema(...)]` attributes parsed into typed values.
//!
//! Only the shape of each key is checked here (known, given once, the right kind of literal); the
//! rules between keys live in `valid`.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, DeriveInput, Expr, ExprLit, Lit, LitInt, LitStr, Path, Token, Type};

/// Errors found while reading one derive input, reported together rather than one per build
/// (`serde_derive`'s `Ctxt`).
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records an error spanned on `tokens`, the user's tokens the mistake is in.
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn syn_error(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// Every error recorded, combined into one, or `value` when there is none.
    pub(crate) fn finish<T>(self, value: Option<T>) -> syn::Result<T> {
        let mut errors = self.errors.into_iter();
        match (errors.next(), value) {
            (Some(mut combined), _) => {
                for error in errors {
                    combined.combine(error);
                }
                Err(combined)
            }
            (None, Some(value)) => Ok(value),
            // Every path that yields no value records why; this arm keeps a path that forgot to
            // from compiling silently into nothing.
            (None, None) => Err(syn::Error::new(
                Span::call_site(),
                "invalid `#[schema(...)]` attribute",
            )),
        }
    }
}

/// The keys `#[schema(...)]` knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Name {
    Collection,
    Version,
    From,
    Step,
    Oldest,
    Crate,
}

impl Name {
    const ALL: [Self; 6] = [
        Self::Collection,
        Self::Version,
        Self::From,
        Self::Step,
        Self::Oldest,
        Self::Crate,
    ];

    fn of(path: &Path) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|name| path.is_ident(name.as_str()))
    }

    /// The key a mistyped or guessed key most likely stands for.
    fn meant_by(key: &str) -> Option<Self> {
        let key = key.to_ascii_lowercase();
        let alias = match key.as_str() {
            "name" | "table" | "tree" | "collection_name" => Some(Self::Collection),
            "v" | "ver" | "schema_version" => Some(Self::Version),
            "previous" | "prev" | "upgrade_from" | "from_version" | "migrate_from" => {
                Some(Self::From)
            }
            "upgrade" | "migrate" | "migration" | "with" | "function" | "fn" => Some(Self::Step),
            "first" | "earliest" | "base" | "root" | "initial" | "oldest_version" => {
                Some(Self::Oldest)
            }
            "krate" | "revolve" | "path" => Some(Self::Crate),
            _ => None,
        };
        alias.or_else(|| {
            Self::ALL
                .into_iter()
                .map(|name| (edit_distance(&key, name.as_str()), name))
                .filter(|&(distance, _)| distance <= 2)
                .min_by_key(|&(distance, _)| distance)
                .map(|(_, name)| name)
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Collection => "collection",
            Self::Version => "version",
            Self::From => "from",
            Self::Step => "step",
            Self::Oldest => "oldest",
            Self::Crate => "crate",
        }
    }

    /// A correct use of the key, for messages.
    fn example(self) -> &'static str {
        match self {
            Self::Collection => "collection = \"issues\"",
            Self::Version => "version = 1",
            Self::From => "from = IssueV1",
            Self::Step => "step = issue_v1_to_v2",
            Self::Oldest => "oldest",
            Self::Crate => "crate = \"revolve\"",
        }
    }
}

/// A key with its value; its tokens (for error spans) run from the key to the end of the value.
pub(crate) struct Key<T> {
    pub(crate) key: Path,
    pub(crate) value: T,
}

impl<T: ToTokens> ToTokens for Key<T> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.key.to_tokens(tokens);
        self.value.to_tokens(tokens);
    }
}

/// A `version = N` literal and its value.
pub(crate) struct Version {
    pub(crate) literal: LitInt,
    pub(crate) value: u32,
}

impl ToTokens for Version {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.literal.to_tokens(tokens);
    }
}

/// Every `#[schema(...)]` of one derive input, merged.
#[derive(Default)]
pub(crate) struct Attrs<'a> {
    /// The first `#[schema]` attribute, where errors about missing keys point.
    pub(crate) first: Option<&'a Attribute>,
    pub(crate) collection: Option<Key<LitStr>>,
    pub(crate) version: Option<Key<Version>>,
    pub(crate) from: Option<Key<Type>>,
    pub(crate) step: Option<Key<Expr>>,
    /// The `oldest` flag, by its key.
    pub(crate) oldest: Option<Path>,
    pub(crate) krate: Option<Key<Path>>,
    /// Keys written, even with a value that was refused: a refused value is not also "missing".
    seen: Vec<Name>,
    /// Keys an unknown key most likely stands for.
    guessed: Vec<Name>,
    /// An attribute stopped parsing part-way, so keys after the mistake were never read.
    aborted: bool,
}

impl<'a> Attrs<'a> {
    /// Reads every `#[schema(...)]` on `input`, recording each mistake in `cx`.
    pub(crate) fn from_ast(cx: &mut Ctxt, input: &'a DeriveInput) -> Self {
        let mut attrs = Self::default();
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("schema")) {
            attrs.first.get_or_insert(attr);
            if let Err(error) = attr.parse_nested_meta(|meta| attrs.parse_key(cx, &meta)) {
                cx.syn_error(error);
                attrs.aborted = true;
            }
        }
        attrs
    }

    /// Whether a `missing <key>` error would be sound: the key was neither written nor possibly
    /// hidden behind a mistake that stopped parsing.
    pub(crate) fn is_missing(&self, name: Name) -> bool {
        !self.aborted && !self.seen.contains(&name) && !self.guessed.contains(&name)
    }

    /// Parses one `key = value`. Mistakes that leave the input readable are recorded and parsing
    /// goes on; an `Err` abandons the rest of this attribute.
    fn parse_key(&mut self, cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(name) = Name::of(&meta.path) else {
            let key = meta.path.to_token_stream().to_string().replace(' ', "");
            let known = "`#[schema(...)]` takes `collection`, `version`, `from`, `step`, \
                         `oldest` and `crate`";
            if let Some(meant) = Name::meant_by(&key) {
                cx.error_spanned_by(
                    &meta.path,
                    format_args!(
                        "unknown key `{key}`: did you mean `{}`? {known}",
                        meant.as_str()
                    ),
                );
                // The key is there under another name: not also "missing".
                self.guessed.push(meant);
            } else {
                cx.error_spanned_by(&meta.path, format_args!("unknown key `{key}`: {known}"));
            }
            return skip_value(meta);
        };
        let duplicate = self.seen.contains(&name);
        if duplicate {
            cx.error_spanned_by(
                &meta.path,
                format_args!(
                    "duplicate `{}`: give each key once across the `#[schema(...)]` attributes",
                    name.as_str()
                ),
            );
        } else {
            self.seen.push(name);
        }
        if name == Name::Oldest {
            // Kept even with a value: the intent is plain, and other rules still apply to it.
            store(&mut self.oldest, duplicate, meta.path.clone());
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                cx.error_spanned_by(
                    &meta.path,
                    "`oldest` is a flag and takes no value: write `oldest`",
                );
                return skip_value(meta);
            }
            return Ok(());
        }
        if !meta.input.peek(Token![=]) {
            cx.error_spanned_by(
                &meta.path,
                format_args!(
                    "`{}` needs a value: write `{}`",
                    name.as_str(),
                    name.example()
                ),
            );
            return skip_value(meta);
        }
        let key = meta.path.clone();
        let input = meta.value()?;
        match name {
            Name::Collection => {
                if let Some(value) = collection(cx, input.parse()?) {
                    store(&mut self.collection, duplicate, Key { key, value });
                }
            }
            Name::Version => {
                if let Some(value) = version(cx, input.parse()?) {
                    store(&mut self.version, duplicate, Key { key, value });
                }
            }
            Name::From => {
                if input.peek(Lit) {
                    let literal: Lit = input.parse()?;
                    let hint = match &literal {
                        Lit::Str(s) => format!("write `from = {}` without quotes", s.value()),
                        _ => format!("write `{}`", Name::From.example()),
                    };
                    cx.error_spanned_by(
                        literal,
                        format_args!(
                            "`from` takes the type of the previous version, not a literal: {hint}"
                        ),
                    );
                } else {
                    let value = input.parse()?;
                    store(&mut self.from, duplicate, Key { key, value });
                }
            }
            Name::Step => {
                if let Some(value) = step(cx, input.parse()?) {
                    store(&mut self.step, duplicate, Key { key, value });
                }
            }
            // Handled above: a flag has no value.
            Name::Oldest => {}
            Name::Crate => {
                if let Some(value) = krate(cx, input.parse()?) {
                    store(&mut self.krate, duplicate, Key { key, value });
                }
            }
        }
        Ok(())
    }
}

/// Levenshtein distance, for suggestions on mistyped keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let mut previous: Vec<usize> = (0..=b.chars().count()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for ((cb, &diagonal), &above) in b.chars().zip(&previous).zip(previous.iter().skip(1)) {
            let left = current.last().copied().unwrap_or(usize::MAX);
            let substitute = diagonal + usize::from(ca != cb);
            current.push(substitute.min(above + 1).min(left + 1));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

/// Keeps the first of duplicated keys; the duplicate is already reported.
fn store<T>(slot: &mut Option<T>, duplicate: bool, value: T) {
    if !duplicate {
        *slot = Some(value);
    }
}

/// Skips the value of a refused key, up to the next `,`, so that the keys after it are still read.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn collection(cx: &mut Ctxt, expr: Expr) -> Option<LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) => {
            if literal.value().is_empty() {
                cx.error_spanned_by(
                    &literal,
                    "`collection` must not be empty: name the collection, e.g. \
                     `collection = \"issues\"`",
                );
            }
            Some(literal)
        }
        Expr::Path(path) if path.path.get_ident().is_some() => {
            let hint = path.path.to_token_stream();
            cx.error_spanned_by(
                path,
                format_args!(
                    "`collection` takes a string literal: write `collection = \"{hint}\"`"
                ),
            );
            None
        }
        other => {
            cx.error_spanned_by(
                other,
                "`collection` takes a string literal: write `collection = \"issues\"`",
            );
            None
        }
    }
}

fn version(cx: &mut Ctxt, expr: Expr) -> Option<Version> {
    let literal = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(literal),
            ..
        }) => literal,
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) if literal.value().parse::<u32>().is_ok() => {
            let hint = literal.value();
            cx.error_spanned_by(
                literal,
                format_args!(
                    "`version` takes an integer, not a string: write `version = {hint}` without quotes"
                ),
            );
            return None;
        }
        other => {
            cx.error_spanned_by(
                other,
                "`version` takes an integer literal: write `version = 1` for the first version, \
                 then 2, 3, ...",
            );
            return None;
        }
    };
    if !matches!(literal.suffix(), "" | "u32") {
        cx.error_spanned_by(
            &literal,
            format_args!(
                "`version` takes a plain integer: write `version = {}`",
                literal.base10_digits()
            ),
        );
        return None;
    }
    if let Ok(value) = literal.base10_parse::<u32>() {
        Some(Version { literal, value })
    } else {
        cx.error_spanned_by(
            &literal,
            "`version` must fit in a `u32`: versions count up from 1, one per change",
        );
        None
    }
}

fn step(cx: &mut Ctxt, expr: Expr) -> Option<Expr> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => {
            let hint = match &lit {
                Lit::Str(s) => format!("write `step = {}` without quotes", s.value()),
                _ => format!("write `{}`", Name::Step.example()),
            };
            cx.error_spanned_by(
                lit,
                format_args!("`step` takes the path of a function, not a literal: {hint}"),
            );
            None
        }
        other => Some(other),
    }
}

fn krate(cx: &mut Ctxt, expr: Expr) -> Option<Path> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) => {
            if let Ok(path) = literal.parse::<Path>() {
                return Some(path);
            }
            cx.error_spanned_by(
                literal,
                "`crate` must hold a path to the revolve crate: write `crate = \"revolve\"` \
                 or the path of a re-export such as `crate = \"my_app::revolve\"`",
            );
            None
        }
        other => {
            let hint = other.to_token_stream().to_string().replace(' ', "");
            cx.error_spanned_by(
                other,
                format_args!("`crate` takes a string literal: write `crate = \"{hint}\"`"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn errors(input: &DeriveInput) -> Vec<String> {
        let mut cx = Ctxt::new();
        let _ = Attrs::from_ast(&mut cx, input);
        cx.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn keys_are_read_across_attributes() {
        let input: DeriveInput = parse_quote! {
            #[schema(collection = "issues", version = 2u32)]
            #[schema(from = crate::v1::IssueV1, step = |old| convert(old), crate = "::my::revolve")]
            struct IssueV2;
        };
        let mut cx = Ctxt::new();
        let attrs = Attrs::from_ast(&mut cx, &input);
        assert!(cx.errors.is_empty());
        assert_eq!(attrs.collection.unwrap().value.value(), "issues");
        assert_eq!(attrs.version.unwrap().value.value, 2);
        assert_eq!(
            attrs.from.unwrap().value.to_token_stream().to_string(),
            "crate :: v1 :: IssueV1"
        );
        assert!(matches!(attrs.step.unwrap().value, Expr::Closure(_)));
        assert_eq!(
            attrs.krate.unwrap().value.to_token_stream().to_string(),
            ":: my :: revolve"
        );
    }

    #[test]
    fn every_mistake_is_reported() {
        let input: DeriveInput = parse_quote! {
            #[schema(colection = "issues", version = "2", version = 3, step = "f")]
            #[schema(collection = "", from = "IssueV1", crate = revolve)]
            struct IssueV2;
        };
        assert_eq!(
            errors(&input),
            [
                "unknown key `colection`: did you mean `collection`? `#[schema(...)]` takes \
                 `collection`, `version`, `from`, `step`, `oldest` and `crate`",
                "`version` takes an integer, not a string: write `version = 2` without quotes",
                "duplicate `version`: give each key once across the `#[schema(...)]` attributes",
                "`step` takes the path of a function, not a literal: write `step = f` without \
                 quotes",
                "`collection` must not be empty: name the collection, e.g. `collection = \"issues\"`",
                "`from` takes the type of the previous version, not a literal: write \
                 `from = IssueV1` without quotes",
                "`crate` takes a string literal: write `crate = \"revolve\"`",
            ]
        );
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        assert_eq!(Name::meant_by("versoin"), Some(Name::Version));
        assert_eq!(Name::meant_by("Collection"), Some(Name::Collection));
        assert_eq!(Name::meant_by("previous"), Some(Name::From));
        assert_eq!(Name::meant_by("stpe"), Some(Name::Step));
        assert_eq!(Name::meant_by("olderst"), Some(Name::Oldest));
        assert_eq!(Name::meant_by("first"), Some(Name::Oldest));
        assert_eq!(Name::meant_by("rename_all"), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn versions_must_be_plain_u32_literals() {
        let cases: [(DeriveInput, &str); 4] = [
            (
                parse_quote! { #[schema(version = 4294967296)] struct A; },
                "`version` must fit in a `u32`",
            ),
            (
                parse_quote! { #[schema(version = 2u8)] struct A; },
                "write `version = 2`",
            ),
            (
                parse_quote! { #[schema(version = 1.5)] struct A; },
                "`version` takes an integer literal",
            ),
            (
                parse_quote! { #[schema(version)] struct A; },
                "`version` needs a value: write `version = 1`",
            ),
        ];
        for (input, expected) in cases {
            let errors = errors(&input);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains(expected), "{errors:?}");
        }
    }

    #[test]
    fn oldest_is_a_flag() {
        let input: DeriveInput = parse_quote! {
            #[schema(collection = "issues", oldest, version = 3)]
            struct IssueV3;
        };
        let mut cx = Ctxt::new();
        let attrs = Attrs::from_ast(&mut cx, &input);
        assert!(cx.errors.is_empty());
        assert!(attrs.oldest.unwrap().is_ident("oldest"));
        assert_eq!(attrs.version.unwrap().value.value, 3);

        let input: DeriveInput = parse_quote! {
            #[schema(oldest = true, version = 3, oldest(yes))]
            #[schema(oldest)]
            struct IssueV3;
        };
        assert_eq!(
            errors(&input),
            [
                "`oldest` is a flag and takes no value: write `oldest`",
                "duplicate `oldest`: give each key once across the `#[schema(...)]` attributes",
                "`oldest` is a flag and takes no value: write `oldest`",
                "duplicate `oldest`: give each key once across the `#[schema(...)]` attributes",
            ]
        );
    }

    #[test]
    fn a_syntax_error_hides_missing_keys() {
        let input: DeriveInput = parse_quote! {
            #[schema(collection = "issues", from = , version = 2)]
            struct A;
        };
        let mut cx = Ctxt::new();
        let attrs = Attrs::from_ast(&mut cx, &input);
        assert_eq!(cx.errors.len(), 1);
        assert!(!attrs.is_missing(Name::Version));
    }
}
