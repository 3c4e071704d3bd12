//! Comparing two JSON Schemas of one version: which changes leave every stored document readable
//! (compatible) and which do not (breaking).
//!
//! The rules, applied to the canonical forms (see `docs/design.md`):
//!
//! | change | classification |
//! |---|---|
//! | field added, not required (`Option`, `#[serde(default)]`) | compatible |
//! | field added and required | breaking: old documents lack it |
//! | field removed | breaking: stored data would be dropped on the next write |
//! | field renamed with `#[serde(alias = "old")]` on the new field | compatible |
//! | field renamed without an alias | breaking (a removal and an addition) |
//! | optional field became required | breaking |
//! | required field became optional | compatible |
//! | type widened (`T` → `Option<T>`, `u32` → `u64`, integer → number, a type added to a union) | compatible |
//! | type changed or narrowed | breaking |
//! | enum value or union variant added | compatible |
//! | enum value or union variant removed | breaking |
//! | default changed | compatible |
//! | constraint loosened or removed (`maxLength` up, `minimum` down, …) | compatible |
//! | constraint added or tightened, unknown fields refused | breaking |
//! | documentation (titles, descriptions) | no change: not part of the canonical form |

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::canonical::{canonical_schema, write_sorted};

/// Whether stored documents of the old schema still read under the new one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Compatibility {
    /// Every document the old schema accepts, the new one accepts too.
    Compatible,
    /// Some stored document may no longer read, or lose data: the version must be bumped and a
    /// step added.
    Breaking,
}

/// What changed at one place of a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// A field was added.
    FieldAdded,
    /// A field was removed.
    FieldRemoved,
    /// A field was renamed, the old name kept as an alias.
    FieldRenamed,
    /// A field became required.
    BecameRequired,
    /// A field became optional.
    BecameOptional,
    /// The type now accepts more values.
    TypeWidened,
    /// The type changed or accepts fewer values.
    TypeChanged,
    /// Enum values were added.
    EnumWidened,
    /// Enum values were removed.
    EnumNarrowed,
    /// A union (enum with data, `oneOf`/`anyOf`) gained a variant.
    VariantAdded,
    /// A union lost a variant.
    VariantRemoved,
    /// The default value changed.
    DefaultChanged,
    /// A constraint (length, range, pattern, format, unknown fields) changed.
    ConstraintChanged,
}

/// One difference between two schemas, classified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SchemaChange {
    /// Where: the field path from the document's root, such as `/assignee/email`; `*` stands for
    /// every element of an array or every value of a map; empty for the root.
    pub path: String,
    /// What changed.
    pub kind: ChangeKind,
    /// Whether stored documents still read.
    pub compatibility: Compatibility,
    /// The old type or value, in short.
    pub old: Option<String>,
    /// The new type or value, in short.
    pub new: Option<String>,
    /// Why it is classified so.
    pub reason: String,
}

/// Compares two JSON Schemas (any form: they are canonicalised first) and classifies every
/// difference.
///
/// ```
/// use revolve::{compare_schemas, Compatibility};
/// use serde_json::json;
///
/// let old = json!({"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]});
/// let new = json!({"type": "object", "properties": {"email": {"type": "integer"}}, "required": ["email"]});
/// let changes = compare_schemas(&old, &new);
/// assert_eq!(changes[0].path, "/email");
/// assert_eq!(changes[0].compatibility, Compatibility::Breaking);
/// ```
#[must_use]
pub fn compare_schemas(old: &Value, new: &Value) -> Vec<SchemaChange> {
    compare_schemas_with_aliases(old, new, &[])
}

/// As [`compare_schemas`], knowing that the new field at `path` (such as `/email`) also reads
/// the old name `alias` (`#[serde(alias = "…")]`, which JSON Schema cannot express).
#[must_use]
pub fn compare_schemas_with_aliases(
    old: &Value,
    new: &Value,
    aliases: &[(&str, &str)],
) -> Vec<SchemaChange> {
    let mut comparison = Comparison {
        aliases,
        changes: Vec::new(),
    };
    comparison.compare("", &canonical_schema(old), &canonical_schema(new));
    comparison.changes
}

/// Whether any change is breaking.
#[must_use]
pub fn is_breaking(changes: &[SchemaChange]) -> bool {
    changes
        .iter()
        .any(|change| change.compatibility == Compatibility::Breaking)
}

struct Comparison<'a> {
    aliases: &'a [(&'a str, &'a str)],
    changes: Vec<SchemaChange>,
}

/// Keywords compared by dedicated rules, not as constraints.
const STRUCTURAL: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "enum",
    "const",
    "oneOf",
    "anyOf",
    "default",
    "format",
    "minimum",
    "maximum",
    "$recursive",
];

impl Comparison<'_> {
    fn push(
        &mut self,
        path: &str,
        kind: ChangeKind,
        compatibility: Compatibility,
        old: Option<String>,
        new: Option<String>,
        reason: impl Into<String>,
    ) {
        self.changes.push(SchemaChange {
            path: path.to_owned(),
            kind,
            compatibility,
            old,
            new,
            reason: reason.into(),
        });
    }

    fn compare(&mut self, path: &str, old: &Value, new: &Value) {
        if old == new {
            return;
        }
        let (Some(old_object), Some(new_object)) = (old.as_object(), new.as_object()) else {
            // `true`/`false` schemas.
            let widened = new == &Value::Bool(true);
            self.push(
                path,
                if widened {
                    ChangeKind::TypeWidened
                } else {
                    ChangeKind::TypeChanged
                },
                if widened {
                    Compatibility::Compatible
                } else {
                    Compatibility::Breaking
                },
                Some(describe(old)),
                Some(describe(new)),
                "the schema changed as a whole",
            );
            return;
        };
        let old_alternatives = alternatives(old_object);
        let new_alternatives = alternatives(new_object);
        if old_alternatives.len() > 1 || new_alternatives.len() > 1 {
            self.compare_unions(path, &old_alternatives, &new_alternatives);
            return;
        }
        if !self.compare_types(path, old_object, new_object) {
            return;
        }
        self.compare_values(path, old_object, new_object);
        if old_object.contains_key("properties") || new_object.contains_key("properties") {
            self.compare_objects(path, old_object, new_object);
        }
        for key in ["additionalProperties", "items"] {
            if let (Some(old_items), Some(new_items)) = (old_object.get(key), new_object.get(key)) {
                if old_items.is_object() || new_items.is_object() {
                    self.compare(&format!("{path}/*"), old_items, new_items);
                }
            }
        }
        if let (Some(Value::Array(old_items)), Some(Value::Array(new_items))) =
            (old_object.get("prefixItems"), new_object.get("prefixItems"))
        {
            self.compare_tuples(path, old_items, new_items);
        }
        if additional_refused(old_object) && !additional_refused(new_object) {
            self.push(
                path,
                ChangeKind::ConstraintChanged,
                Compatibility::Compatible,
                Some("unknown fields refused".to_owned()),
                None,
                "unknown fields are now accepted",
            );
        }
        if additional_refused(new_object) && !additional_refused(old_object) {
            self.push(
                path,
                ChangeKind::ConstraintChanged,
                Compatibility::Breaking,
                None,
                Some("unknown fields refused".to_owned()),
                "documents with fields the new schema does not list are refused",
            );
        }
        self.compare_constraints(path, old_object, new_object);
    }

    /// Records a type that was widened (compatible) or changed (breaking).
    fn push_type_change(
        &mut self,
        path: &str,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
        widened: bool,
        widened_reason: &str,
        changed_reason: &str,
    ) {
        let (kind, compatibility, reason) = if widened {
            (
                ChangeKind::TypeWidened,
                Compatibility::Compatible,
                widened_reason,
            )
        } else {
            (
                ChangeKind::TypeChanged,
                Compatibility::Breaking,
                changed_reason,
            )
        };
        self.push(
            path,
            kind,
            compatibility,
            Some(describe(&Value::Object(old.clone()))),
            Some(describe(&Value::Object(new.clone()))),
            reason,
        );
    }

    /// Compares `type` (and integer ranges); returns whether the rest is worth comparing.
    fn compare_types(
        &mut self,
        path: &str,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
    ) -> bool {
        if let (Some(Value::String(a)), Some(Value::String(b))) =
            (old.get("$recursive"), new.get("$recursive"))
        {
            if a == b {
                return false;
            }
        }
        let old_types = types(old);
        let new_types = types(new);
        if old_types != new_types {
            let widened = match (&old_types, &new_types) {
                (Some(old_types), Some(new_types)) => old_types.iter().all(|t| {
                    new_types.contains(t) || (t == "integer" && new_types.contains("number"))
                }),
                (_, None) => true,
                (None, Some(_)) => false,
            };
            self.push_type_change(
                path,
                old,
                new,
                widened,
                "the new type accepts every value of the old one",
                "stored values of the old type do not fit the new one",
            );
            if !widened {
                return false;
            }
        }
        if old_types != new_types {
            // A widened type was reported above; its range comes with it.
            return true;
        }
        if let (Some(old_range), Some(new_range)) = (numeric_range(old), numeric_range(new)) {
            if old_range != new_range {
                let widened = new_range.0 <= old_range.0 && new_range.1 >= old_range.1;
                if old.get("format") == new.get("format") {
                    self.push(
                        path,
                        ChangeKind::ConstraintChanged,
                        if widened {
                            Compatibility::Compatible
                        } else {
                            Compatibility::Breaking
                        },
                        Some(format!("{} to {}", old_range.0, old_range.1)),
                        Some(format!("{} to {}", new_range.0, new_range.1)),
                        if widened {
                            "the bounds were loosened"
                        } else {
                            "the bounds were tightened: stored values may not fit"
                        },
                    );
                } else {
                    self.push_type_change(
                        path,
                        old,
                        new,
                        widened,
                        "the new range holds every value of the old one",
                        "the new range is narrower: stored values may not fit",
                    );
                }
            }
        }
        true
    }

    /// Compares `enum`, `const` and `default`.
    fn compare_values(&mut self, path: &str, old: &Map<String, Value>, new: &Map<String, Value>) {
        let old_values = allowed_values(old);
        let new_values = allowed_values(new);
        match (&old_values, &new_values) {
            (Some(old_values), Some(new_values)) if old_values != new_values => {
                let removed: Vec<&String> = old_values.difference(new_values).collect();
                let added: Vec<&String> = new_values.difference(old_values).collect();
                if !removed.is_empty() {
                    self.push(
                        path,
                        ChangeKind::EnumNarrowed,
                        Compatibility::Breaking,
                        Some(join(&removed)),
                        None,
                        "stored documents may hold a removed value",
                    );
                }
                if !added.is_empty() {
                    self.push(
                        path,
                        ChangeKind::EnumWidened,
                        Compatibility::Compatible,
                        None,
                        Some(join(&added)),
                        "values were added",
                    );
                }
            }
            (Some(old_values), None) => self.push(
                path,
                ChangeKind::EnumWidened,
                Compatibility::Compatible,
                Some(join(&old_values.iter().collect::<Vec<_>>())),
                Some("any value of the type".to_owned()),
                "the value is no longer restricted to a list",
            ),
            (None, Some(new_values)) => self.push(
                path,
                ChangeKind::EnumNarrowed,
                Compatibility::Breaking,
                Some("any value of the type".to_owned()),
                Some(join(&new_values.iter().collect::<Vec<_>>())),
                "the value is now restricted to a list",
            ),
            _ => {}
        }
        if old.get("default") != new.get("default") {
            self.push(
                path,
                ChangeKind::DefaultChanged,
                Compatibility::Compatible,
                old.get("default").map(text),
                new.get("default").map(text),
                "a default only fills missing values",
            );
        }
    }

    fn compare_objects(&mut self, path: &str, old: &Map<String, Value>, new: &Map<String, Value>) {
        let empty = Map::new();
        let old_properties = old
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let new_properties = new
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let old_required = names(old.get("required"));
        let new_required = names(new.get("required"));
        // New field name → old name it reads under an alias.
        let renamed: BTreeMap<&str, &str> = self
            .aliases
            .iter()
            .filter_map(|&(alias_path, alias)| {
                let field = alias_path.strip_prefix(path)?.strip_prefix('/')?;
                (!field.contains('/')
                    && old_properties.contains_key(alias)
                    && !new_properties.contains_key(alias)
                    && !old_properties.contains_key(field))
                .then_some((field, alias))
            })
            .collect();
        let renamed_from: BTreeSet<&str> = renamed.values().copied().collect();

        for (name, old_field) in old_properties {
            let field_path = format!("{path}/{name}");
            match new_properties.get(name) {
                Some(new_field) => {
                    self.compare(&field_path, old_field, new_field);
                    self.compare_required(
                        &field_path,
                        old_required.contains(name.as_str()),
                        new_required.contains(name.as_str()),
                    );
                }
                None if renamed_from.contains(name.as_str()) => {}
                None => self.push(
                    &field_path,
                    ChangeKind::FieldRemoved,
                    Compatibility::Breaking,
                    Some(describe(old_field)),
                    None,
                    "stored documents hold this field and the next write would drop it; keep it, or rename it with `#[serde(alias)]`",
                ),
            }
        }
        for (name, new_field) in new_properties {
            if old_properties.contains_key(name) {
                continue;
            }
            let field_path = format!("{path}/{name}");
            if let Some(&alias) = renamed.get(name.as_str()) {
                self.push(
                    &field_path,
                    ChangeKind::FieldRenamed,
                    Compatibility::Compatible,
                    Some(alias.to_owned()),
                    Some(name.clone()),
                    "the old name is read as an alias",
                );
                if let Some(old_field) = old_properties.get(alias) {
                    self.compare(&field_path, old_field, new_field);
                    self.compare_required(
                        &field_path,
                        old_required.contains(alias),
                        new_required.contains(name.as_str()),
                    );
                }
            } else if new_required.contains(name.as_str()) {
                self.push(
                    &field_path,
                    ChangeKind::FieldAdded,
                    Compatibility::Breaking,
                    None,
                    Some(describe(new_field)),
                    "a new required field without a default: stored documents lack it; add `#[serde(default)]` or make it an `Option`",
                );
            } else {
                self.push(
                    &field_path,
                    ChangeKind::FieldAdded,
                    Compatibility::Compatible,
                    None,
                    Some(describe(new_field)),
                    "an optional field or one with a default",
                );
            }
        }
    }

    fn compare_required(&mut self, path: &str, was: bool, is: bool) {
        match (was, is) {
            (false, true) => self.push(
                path,
                ChangeKind::BecameRequired,
                Compatibility::Breaking,
                Some("optional".to_owned()),
                Some("required".to_owned()),
                "stored documents may lack it",
            ),
            (true, false) => self.push(
                path,
                ChangeKind::BecameOptional,
                Compatibility::Compatible,
                Some("required".to_owned()),
                Some("optional".to_owned()),
                "every stored document has it",
            ),
            _ => {}
        }
    }

    fn compare_tuples(&mut self, path: &str, old: &[Value], new: &[Value]) {
        if old.len() != new.len() {
            self.push(
                path,
                ChangeKind::TypeChanged,
                Compatibility::Breaking,
                Some(format!("tuple of {}", old.len())),
                Some(format!("tuple of {}", new.len())),
                "stored tuples have another length",
            );
            return;
        }
        for (i, (old_item, new_item)) in old.iter().zip(new).enumerate() {
            self.compare(&format!("{path}/{i}"), old_item, new_item);
        }
    }

    fn compare_unions(&mut self, path: &str, old: &[Value], new: &[Value]) {
        let mut old_keyed = keyed(old);
        let mut new_keyed = keyed(new);
        // One alternative of the old union meets none, and one of the new meets none, and neither
        // is a tagged variant: the same alternative retyped (`Option<String>` -> `Option<u32>`).
        let unmatched = |these: &BTreeMap<String, Value>, those: &BTreeMap<String, Value>| {
            let keys: Vec<String> = these
                .keys()
                .filter(|key| !those.contains_key(*key) && key.as_str() != "null")
                .cloned()
                .collect();
            match &keys[..] {
                [key] if !key.starts_with("variant ") => Some(key.clone()),
                _ => None,
            }
        };
        if let (Some(old_key), Some(new_key)) = (
            unmatched(&old_keyed, &new_keyed),
            unmatched(&new_keyed, &old_keyed),
        ) {
            if let (Some(old_alternative), Some(new_alternative)) =
                (old_keyed.remove(&old_key), new_keyed.remove(&new_key))
            {
                self.compare(path, &old_alternative, &new_alternative);
            }
        }
        for (key, old_alternative) in &old_keyed {
            match new_keyed.get(key) {
                Some(new_alternative) => self.compare(path, old_alternative, new_alternative),
                None if key == "null" => self.push(
                    path,
                    ChangeKind::TypeChanged,
                    Compatibility::Breaking,
                    Some("nullable".to_owned()),
                    Some("not nullable".to_owned()),
                    "stored documents may hold null here",
                ),
                None => self.push(
                    path,
                    ChangeKind::VariantRemoved,
                    Compatibility::Breaking,
                    Some(key.clone()),
                    None,
                    "stored documents may hold the removed variant",
                ),
            }
        }
        for key in new_keyed.keys() {
            if key == "null" && !old_keyed.contains_key(key) {
                self.push(
                    path,
                    ChangeKind::TypeWidened,
                    Compatibility::Compatible,
                    Some("not nullable".to_owned()),
                    Some("nullable".to_owned()),
                    "the value may now also be null",
                );
            } else if !old_keyed.contains_key(key) {
                self.push(
                    path,
                    ChangeKind::VariantAdded,
                    Compatibility::Compatible,
                    None,
                    Some(key.clone()),
                    "a variant was added",
                );
            }
        }
    }

    fn compare_constraints(
        &mut self,
        path: &str,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
    ) {
        let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        // A numeric `format` is a range, compared with the type; any other is a constraint.
        let numeric = numeric_range(old).is_some() || numeric_range(new).is_some();
        for key in keys {
            if STRUCTURAL.contains(&key.as_str()) && (key != "format" || numeric) {
                continue;
            }
            let (before, after) = (old.get(key), new.get(key));
            if before == after {
                continue;
            }
            let loosened = match (
                key.as_str(),
                before.and_then(Value::as_f64),
                after.and_then(Value::as_f64),
            ) {
                (_, Some(_), None) if after.is_none() => true,
                (
                    "minLength" | "minItems" | "minProperties" | "exclusiveMinimum",
                    Some(a),
                    Some(b),
                ) => b <= a,
                (
                    "maxLength" | "maxItems" | "maxProperties" | "exclusiveMaximum",
                    Some(a),
                    Some(b),
                ) => b >= a,
                _ => before.is_some() && after.is_none(),
            };
            self.push(
                path,
                ChangeKind::ConstraintChanged,
                if loosened {
                    Compatibility::Compatible
                } else {
                    Compatibility::Breaking
                },
                before.map(|value| format!("{key}: {}", text(value))),
                after.map(|value| format!("{key}: {}", text(value))),
                if loosened {
                    "the constraint was loosened or removed"
                } else {
                    "the constraint was added or tightened: stored values may break it"
                },
            );
        }
    }
}

/// The alternatives of a union; the schema itself when it is not one.
fn alternatives(schema: &Map<String, Value>) -> Vec<Value> {
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alternatives)) = schema.get(key) {
            return alternatives.clone();
        }
    }
    if let Some(Value::Array(types)) = schema.get("type") {
        if types.len() > 1 && !schema.contains_key("enum") && !schema.contains_key("const") {
            // `["string", "null"]`: one alternative per type, keeping the other keywords.
            return types
                .iter()
                .map(|t| {
                    if t == "null" {
                        // Null has no keywords of its own.
                        return Value::Object(Map::from_iter([("type".to_owned(), t.clone())]));
                    }
                    let mut alternative = schema.clone();
                    alternative.insert("type".to_owned(), t.clone());
                    if t != "object" {
                        alternative.remove("properties");
                        alternative.remove("required");
                    }
                    Value::Object(alternative)
                })
                .collect();
        }
    }
    vec![Value::Object(schema.clone())]
}

/// Alternatives keyed so that one variant of the old union meets the same variant of the new:
/// an externally tagged variant by its tag, a unit variant by its value, others by their type.
/// Unit variants of one union are merged into a single enum alternative.
fn keyed(alternatives: &[Value]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut units: Vec<Value> = Vec::new();
    for alternative in alternatives {
        let Some(object) = alternative.as_object() else {
            out.insert(text(alternative), alternative.clone());
            continue;
        };
        if let Some(values) = object.get("enum").and_then(Value::as_array) {
            units.extend(values.iter().cloned());
            continue;
        }
        if let Some(value) = object.get("const") {
            units.push(value.clone());
            continue;
        }
        let required = names(object.get("required"));
        let properties = object.get("properties").and_then(Value::as_object);
        let key = match properties {
            // serde's externally tagged variant: `{"Tag": …}` and nothing else.
            Some(properties)
                if properties.len() == 1 && required.len() == 1 && additional_refused(object) =>
            {
                format!(
                    "variant {}",
                    required.iter().next().copied().unwrap_or_default()
                )
            }
            // Internally or adjacently tagged: a required field holding one fixed value.
            Some(properties) => tag(properties, &required).map_or_else(
                || type_key(object, alternative),
                |(field, value)| format!("variant {field}={value}"),
            ),
            None => type_key(object, alternative),
        };
        // Two alternatives of one kind that nothing tells apart are kept apart by their text.
        let key = if out.contains_key(&key) {
            format!("{key} {}", text(alternative))
        } else {
            key
        };
        out.insert(key, alternative.clone());
    }
    if !units.is_empty() {
        let mut merged = Map::new();
        merged.insert("enum".to_owned(), Value::Array(units));
        out.insert("unit variants".to_owned(), Value::Object(merged));
    }
    out
}

/// The field and value that tag an internally or adjacently tagged variant.
fn tag(properties: &Map<String, Value>, required: &BTreeSet<&str>) -> Option<(String, String)> {
    properties.iter().find_map(|(field, schema)| {
        if !required.contains(field.as_str()) {
            return None;
        }
        let schema = schema.as_object()?;
        let value = match (schema.get("const"), schema.get("enum")) {
            (Some(value), _) => value,
            (None, Some(Value::Array(values))) if values.len() == 1 => values.first()?,
            _ => return None,
        };
        Some((field.clone(), text(value)))
    })
}

/// An alternative keyed by its type: `string`, `null`, `object`.
fn type_key(object: &Map<String, Value>, alternative: &Value) -> String {
    types(object).map_or_else(
        || text(alternative),
        |types| join(&types.iter().collect::<Vec<_>>()),
    )
}

fn types(schema: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(BTreeSet::from([t.clone()])),
        Some(Value::Array(ts)) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

/// The values an `enum` or `const` allows, as canonical text.
fn allowed_values(schema: &Map<String, Value>) -> Option<BTreeSet<String>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.iter().map(text).collect());
    }
    schema
        .get("const")
        .map(|value| BTreeSet::from([text(value)]))
}

/// The range an integer or number schema allows, from its format and bounds.
fn numeric_range(schema: &Map<String, Value>) -> Option<(f64, f64)> {
    let types = types(schema)?;
    if !types.contains("integer") && !types.contains("number") {
        return None;
    }
    let by_format = format_range(schema).unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    let low = schema
        .get("minimum")
        .and_then(Value::as_f64)
        .map_or(by_format.0, |m| m.max(by_format.0));
    let high = schema
        .get("maximum")
        .and_then(Value::as_f64)
        .map_or(by_format.1, |m| m.min(by_format.1));
    Some((low, high))
}

/// The range a numeric `format` (as schemars writes Rust's number types) allows.
pub(crate) fn format_range(schema: &Map<String, Value>) -> Option<(f64, f64)> {
    #[allow(clippy::cast_precision_loss)] // bounds compared, never computed with
    let range = match schema.get("format").and_then(Value::as_str)? {
        "int8" => (f64::from(i8::MIN), f64::from(i8::MAX)),
        "int16" => (f64::from(i16::MIN), f64::from(i16::MAX)),
        "int32" => (f64::from(i32::MIN), f64::from(i32::MAX)),
        "int64" | "int" => (i64::MIN as f64, i64::MAX as f64),
        "uint8" => (0.0, f64::from(u8::MAX)),
        "uint16" => (0.0, f64::from(u16::MAX)),
        "uint32" => (0.0, f64::from(u32::MAX)),
        "uint64" | "uint" => (0.0, u64::MAX as f64),
        "float" => (f64::from(f32::MIN), f64::from(f32::MAX)),
        _ => return None,
    };
    Some(range)
}

fn additional_refused(schema: &Map<String, Value>) -> bool {
    schema.get("additionalProperties") == Some(&Value::Bool(false))
}

fn names(value: Option<&Value>) -> BTreeSet<&str> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn text(value: &Value) -> String {
    let mut out = String::new();
    write_sorted(value, &mut out);
    out
}

fn join<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A short description of a schema's type, for messages: `string`, `integer (uint32)`,
/// `array of string`, `object`, `enum [a, b]`.
pub(crate) fn describe(schema: &Value) -> String {
    let Some(object) = schema.as_object() else {
        return text(schema);
    };
    if let Some(Value::String(name)) = object.get("$recursive") {
        return name.clone();
    }
    if let Some(values) = allowed_values(object) {
        return format!("enum [{}]", join(&values.iter().collect::<Vec<_>>()));
    }
    let alternatives = alternatives(object);
    if alternatives.len() > 1 {
        let described: Vec<String> = alternatives.iter().map(describe).collect();
        return format!("one of [{}]", described.join(", "));
    }
    let Some(types) = types(object) else {
        return "any".to_owned();
    };
    let base = join(&types.iter().collect::<Vec<_>>());
    if types.contains("array") {
        if let Some(items) = object.get("items") {
            return format!("array of {}", describe(items));
        }
    }
    match object.get("format").and_then(Value::as_str) {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_is_short() {
        assert_eq!(
            describe(&json!({"type": "integer", "format": "uint32"})),
            "integer (uint32)"
        );
        assert_eq!(
            describe(&json!({"type": "array", "items": {"type": "string"}})),
            "array of string"
        );
        assert_eq!(
            describe(&json!({"type": "string", "enum": ["b", "a"]})),
            "enum [\"a\", \"b\"]"
        );
    }

    #[test]
    fn identical_schemas_have_no_changes() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert!(compare_schemas(&schema, &schema).is_empty());
    }
}
