//! serde's `rename_all` rules for struct fields (`serde_derive`'s `internals/case.rs`), so that
//! the derive names a field as it appears in JSON and in its JSON Schema.

/// One of the cases `#[serde(rename_all = "...")]` takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    const ALL: [(&'static str, Self); 8] = [
        ("lowercase", Self::Lower),
        ("UPPERCASE", Self::Upper),
        ("Pascal", Self::Pascal),
        ("camelCase", Self::Camel),
        ("snake_case", Self::Snake),
        ("SCREAMING_SNAKE_CASE", Self::ScreamingSnake),
        ("kebab-case", Self::Kebab),
        ("SCREAMING-KEBAB-CASE", Self::ScreamingKebab),
    ];

    /// The rule serde spells `name`; `None` for a name serde refuses (and reports itself).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|&(known, _)| known == name)
            .map(|(_, rule)| rule)
    }

    /// The name serde gives the field `field` (a Rust identifier, without `r#`) under this rule.
    pub(crate) fn apply_to_field(self, field: &str) -> String {
        match self {
            Self::Lower | Self::Snake => field.to_owned(),
            Self::Upper | Self::ScreamingSnake => field.to_ascii_uppercase(),
            Self::Pascal => {
                let mut pascal = String::with_capacity(field.len());
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            Self::Camel => {
                let pascal = Self::Pascal.apply_to_field(field);
                let mut chars = pascal.chars();
                chars.next().map_or_else(String::new, |first| {
                    let mut camel = String::with_capacity(pascal.len());
                    camel.push(first.to_ascii_lowercase());
                    camel.push_str(chars.as_str());
                    camel
                })
            }
            Self::Kebab => field.replace('_', "-"),
            Self::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RenameRule;

    #[test]
    fn names_are_serdes() {
        for (name, rule) in RenameRule::ALL {
            assert_eq!(RenameRule::from_name(name), Some(rule));
        }
        assert_eq!(RenameRule::from_name("camelcase"), None);
        assert_eq!(RenameRule::from_name("Train-Case"), None);
    }

    /// `serde_derive`'s own table (`rename_fields` in `internals/case.rs`), plus edge cases.
    #[test]
    fn fields_are_renamed_like_serde() {
        let table: [(&str, [&str; 8]); 7] = [
            (
                "outcome",
                [
                    "outcome", "OUTCOME", "Outcome", "outcome", "outcome", "OUTCOME", "outcome",
                    "OUTCOME",
                ],
            ),
            (
                "very_tasty",
                [
                    "very_tasty",
                    "VERY_TASTY",
                    "VeryTasty",
                    "veryTasty",
                    "very_tasty",
                    "VERY_TASTY",
                    "very-tasty",
                    "VERY-TASTY",
                ],
            ),
            ("a", ["a", "A", "A", "a", "a", "A", "a", "A"]),
            (
                "z42",
                ["z42", "Z42", "Z42", "z42", "z42", "Z42", "z42", "Z42"],
            ),
            (
                "_leading__double_",
                [
                    "_leading__double_",
                    "_LEADING__DOUBLE_",
                    "LeadingDouble",
                    "leadingDouble",
                    "_leading__double_",
                    "_LEADING__DOUBLE_",
                    "-leading--double-",
                    "-LEADING--DOUBLE-",
                ],
            ),
            (
                "émile_zola",
                [
                    "émile_zola",
                    "éMILE_ZOLA",
                    "émileZola",
                    "émileZola",
                    "émile_zola",
                    "éMILE_ZOLA",
                    "émile-zola",
                    "éMILE-ZOLA",
                ],
            ),
            ("_", ["_", "_", "", "", "_", "_", "-", "-"]),
        ];
        for (field, expected) in table {
            let renamed: Vec<String> = RenameRule::ALL
                .into_iter()
                .map(|(_, rule)| rule.apply_to_field(field))
                .collect();
            assert_eq!(renamed, expected, "{field}");
        }
    }
}
