//! Validating a JSON value against a canonical JSON Schema: the check the migrator runs on each
//! step's output.
//!
//! It covers the keywords schemars emits for serde types: `type`, `enum`, `const`, `properties`,
//! `required`, `additionalProperties`, `items`, `prefixItems`, `oneOf`, `anyOf`, `allOf`, numeric
//! bounds, integer formats, and length and size bounds. `pattern` and string formats are not
//! checked (no regular expression engine), and a `$recursive` marker accepts anything below it.

use serde_json::{Map, Value};

use super::compat::format_range;

/// A schema compiled for checking many values: its keywords read once, its properties sorted
/// for look-up, and a first pass over each value that builds no message (the alternatives of
/// `anyOf` and `oneOf` are only ever checked so); a value that fails is checked again for the
/// message.
#[derive(Debug)]
pub(crate) struct Validator {
    root: Node,
}

impl Validator {
    /// `schema` (in canonical form) compiled.
    pub(crate) fn new(schema: &Value) -> Self {
        Self {
            root: Node::new(schema),
        }
    }

    /// Whether `value` passes (the first pass only: no message is built).
    pub(crate) fn is_valid(&self, value: &Value) -> bool {
        self.root.check::<false>(value, &mut String::new()).is_ok()
    }

    /// Checks `value`; the error names the path and the rule.
    pub(crate) fn validate(&self, value: &Value) -> Result<(), String> {
        if self.is_valid(value) {
            return Ok(());
        }
        self.root.check::<true>(value, &mut String::new())
    }
}

#[derive(Debug)]
enum Node {
    /// `true`, `$recursive`, or anything that is not a schema: every value.
    Any,
    /// `false`: no value.
    Never,
    Rules(Box<Rules>),
}

/// One schema object's keywords.
#[derive(Debug, Default)]
struct Rules {
    /// The types allowed, as [`type_bits`] has them, and their names for the message; `None`
    /// when unchecked (no names, or one this check does not know).
    types: Option<(u8, Vec<String>)>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    /// `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, and the integer format's
    /// range as the lowest and highest.
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    format_range: Option<(f64, f64)>,
    /// Bounds on a string's characters, an array's items and an object's fields.
    length: Bounds,
    item_count: Bounds,
    field_count: Bounds,
    required: Vec<String>,
    /// Sorted by name.
    properties: Vec<(String, Node)>,
    additional: Option<Node>,
    prefix_items: Vec<Node>,
    items: Option<Node>,
    all_of: Vec<Node>,
    any_of: Option<Vec<Node>>,
    one_of: Option<Vec<Node>>,
}

#[derive(Debug, Default)]
struct Bounds {
    min: Option<u64>,
    max: Option<u64>,
}

impl Bounds {
    fn new(schema: &Map<String, Value>, min: &str, max: &str) -> Self {
        Self {
            min: schema.get(min).and_then(Value::as_u64),
            max: schema.get(max).and_then(Value::as_u64),
        }
    }

    fn is_set(&self) -> bool {
        self.min.is_some() || self.max.is_some()
    }

    /// `size` against the bounds named `min_key` and `max_key`.
    fn check<const MESSAGE: bool>(
        &self,
        size: usize,
        [min_key, max_key]: [&str; 2],
        path: &str,
    ) -> Result<(), String> {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        if let Some(min) = self.min.filter(|&min| size < min) {
            return Err(fail::<MESSAGE>(path, || {
                format!("{size} is below `{min_key}` {min}")
            }));
        }
        if let Some(max) = self.max.filter(|&max| size > max) {
            return Err(fail::<MESSAGE>(path, || {
                format!("{size} is above `{max_key}` {max}")
            }));
        }
        Ok(())
    }
}

const NULL: u8 = 1;
const BOOLEAN: u8 = 1 << 1;
const STRING: u8 = 1 << 2;
const ARRAY: u8 = 1 << 3;
const OBJECT: u8 = 1 << 4;
const NUMBER: u8 = 1 << 5;
const INTEGER: u8 = 1 << 6;

impl Node {
    fn new(schema: &Value) -> Self {
        let object = match schema {
            Value::Bool(false) => return Node::Never,
            Value::Object(object) if !object.contains_key("$recursive") => object,
            _ => return Node::Any,
        };
        let nodes = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_array)
                .map(|schemas| schemas.iter().map(Node::new).collect::<Vec<_>>())
        };
        let bound = |key: &str| object.get(key).and_then(Value::as_f64);
        let mut properties: Vec<(String, Node)> = object
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| {
                properties
                    .iter()
                    .map(|(name, schema)| (name.clone(), Node::new(schema)))
                    .collect()
            })
            .unwrap_or_default();
        properties.sort_by(|a, b| a.0.cmp(&b.0));
        Node::Rules(Box::new(Rules {
            types: types(object.get("type")),
            enumeration: object.get("enum").and_then(Value::as_array).cloned(),
            constant: object.get("const").cloned(),
            minimum: bound("minimum"),
            maximum: bound("maximum"),
            exclusive_minimum: bound("exclusiveMinimum"),
            exclusive_maximum: bound("exclusiveMaximum"),
            format_range: format_range(object),
            length: Bounds::new(object, "minLength", "maxLength"),
            item_count: Bounds::new(object, "minItems", "maxItems"),
            field_count: Bounds::new(object, "minProperties", "maxProperties"),
            required: object
                .get("required")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            properties,
            additional: object.get("additionalProperties").map(Node::new),
            prefix_items: nodes("prefixItems").unwrap_or_default(),
            items: object.get("items").map(Node::new),
            all_of: nodes("allOf").unwrap_or_default(),
            any_of: nodes("anyOf"),
            one_of: nodes("oneOf"),
        }))
    }

    /// Checks `value`, at `path`; with `MESSAGE` false, neither the path nor a message is
    /// built (the error is empty).
    fn check<const MESSAGE: bool>(&self, value: &Value, path: &mut String) -> Result<(), String> {
        let rules = match self {
            Node::Any => return Ok(()),
            Node::Never => return Err(fail::<MESSAGE>(path, || "no value is allowed here".into())),
            Node::Rules(rules) => rules,
        };
        if let Some((allowed, names)) = &rules.types {
            if type_bits(value) & allowed == 0 {
                return Err(fail::<MESSAGE>(path, || {
                    format!(
                        "expected {}, found {}",
                        names.join(" or "),
                        type_name(value)
                    )
                }));
            }
        }
        if let Some(values) = &rules.enumeration {
            if !values.contains(value) {
                return Err(fail::<MESSAGE>(path, || {
                    format!("{value} is not one of the allowed values")
                }));
            }
        }
        if let Some(constant) = &rules.constant {
            if constant != value {
                return Err(fail::<MESSAGE>(path, || {
                    format!("expected {constant}, found {value}")
                }));
            }
        }
        match value {
            Value::Number(number) => rules.check_number::<MESSAGE>(value, number.as_f64(), path)?,
            Value::String(text) if rules.length.is_set() => rules.length.check::<MESSAGE>(
                text.chars().count(),
                ["minLength", "maxLength"],
                path,
            )?,
            Value::Array(items) => {
                rules
                    .item_count
                    .check::<MESSAGE>(items.len(), ["minItems", "maxItems"], path)?;
                rules.check_array::<MESSAGE>(items, path)?;
            }
            Value::Object(fields) => {
                rules.field_count.check::<MESSAGE>(
                    fields.len(),
                    ["minProperties", "maxProperties"],
                    path,
                )?;
                rules.check_object::<MESSAGE>(fields, path)?;
            }
            _ => {}
        }
        for sub in &rules.all_of {
            sub.check::<MESSAGE>(value, path)?;
        }
        // The alternatives' own messages are never shown: they are checked without.
        if let Some(any) = &rules.any_of {
            if !any
                .iter()
                .any(|sub| sub.check::<false>(value, path).is_ok())
            {
                return Err(fail::<MESSAGE>(path, || {
                    "matches none of the alternatives (anyOf)".into()
                }));
            }
        }
        if let Some(one) = &rules.one_of {
            let matching = one
                .iter()
                .filter(|sub| sub.check::<false>(value, path).is_ok())
                .count();
            if matching != 1 {
                return Err(fail::<MESSAGE>(path, || {
                    format!("matches {matching} of the alternatives, not exactly one (oneOf)")
                }));
            }
        }
        Ok(())
    }
}

impl Rules {
    fn check_number<const MESSAGE: bool>(
        &self,
        value: &Value,
        number: Option<f64>,
        path: &str,
    ) -> Result<(), String> {
        let Some(number) = number else {
            return Ok(());
        };
        let outside = self.minimum.is_some_and(|min| number < min)
            || self.maximum.is_some_and(|max| number > max)
            || self.exclusive_minimum.is_some_and(|min| number <= min)
            || self.exclusive_maximum.is_some_and(|max| number >= max)
            || self
                .format_range
                .is_some_and(|(min, max)| number < min || number > max);
        if outside {
            return Err(fail::<MESSAGE>(path, || format!("{value} is out of range")));
        }
        Ok(())
    }

    fn check_object<const MESSAGE: bool>(
        &self,
        fields: &Map<String, Value>,
        path: &mut String,
    ) -> Result<(), String> {
        for name in &self.required {
            if !fields.contains_key(name) {
                return Err(fail::<MESSAGE>(path, || {
                    format!("missing required field `{name}`")
                }));
            }
        }
        for (name, field) in fields {
            let sub = match self
                .properties
                .binary_search_by(|(property, _)| property.as_str().cmp(name))
            {
                Ok(i) => Some(&self.properties[i].1),
                Err(_) => self.additional.as_ref(),
            };
            let Some(sub) = sub else {
                continue;
            };
            let depth = path.len();
            if MESSAGE {
                path.push('/');
                path.push_str(name);
            }
            let result = match sub {
                Node::Never => Err(fail::<MESSAGE>(path, || "field not allowed".into())),
                sub => sub.check::<MESSAGE>(field, path),
            };
            path.truncate(depth);
            result?;
        }
        Ok(())
    }

    fn check_array<const MESSAGE: bool>(
        &self,
        items: &[Value],
        path: &mut String,
    ) -> Result<(), String> {
        for (i, item) in items.iter().enumerate() {
            let Some(sub) = self.prefix_items.get(i).or(self.items.as_ref()) else {
                continue;
            };
            let depth = path.len();
            if MESSAGE {
                path.push('/');
                path.push_str(&i.to_string());
            }
            let result = sub.check::<MESSAGE>(item, path);
            path.truncate(depth);
            result?;
        }
        Ok(())
    }
}

/// The `type` keyword's names as [`type_bits`] has them, and as written; `None` when it names
/// none, or one this check does not know (which allows every value).
fn types(value: Option<&Value>) -> Option<(u8, Vec<String>)> {
    let names: Vec<&str> = match value? {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let mut bits = 0;
    for name in &names {
        bits |= match *name {
            "null" => NULL,
            "boolean" => BOOLEAN,
            "string" => STRING,
            "array" => ARRAY,
            "object" => OBJECT,
            "number" => NUMBER,
            "integer" => INTEGER,
            _ => return None,
        };
    }
    (bits != 0).then(|| (bits, names.into_iter().map(str::to_owned).collect()))
}

/// The types `value` is of: a number is an `integer` too when it has no fraction.
fn type_bits(value: &Value) -> u8 {
    match value {
        Value::Null => NULL,
        Value::Bool(_) => BOOLEAN,
        Value::String(_) => STRING,
        Value::Array(_) => ARRAY,
        Value::Object(_) => OBJECT,
        Value::Number(number) => {
            let integer = number.is_i64()
                || number.is_u64()
                || number.as_f64().is_some_and(|f| f.fract() == 0.0);
            if integer {
                NUMBER | INTEGER
            } else {
                NUMBER
            }
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The error at `path` for `reason` (an empty one, not built, without `MESSAGE`).
fn fail<const MESSAGE: bool>(path: &str, reason: impl FnOnce() -> String) -> String {
    if !MESSAGE {
        return String::new();
    }
    let at = if path.is_empty() { "/" } else { path };
    format!("{at}: {}", reason())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::canonical_schema;
    use proptest::prelude::*;
    use serde_json::json;

    #[derive(serde::Serialize, schemars::JsonSchema)]
    enum Status {
        Open,
        Closed { reason: String },
    }

    #[derive(serde::Serialize, schemars::JsonSchema)]
    struct Doc {
        title: String,
        count: u8,
        tags: Vec<String>,
        status: Status,
        parent: Option<Box<Doc>>,
    }

    fn schema() -> Value {
        canonical_schema(&serde_json::to_value(schemars::schema_for!(Doc)).unwrap())
    }

    #[test]
    fn serialised_values_of_the_type_pass() {
        let doc = Doc {
            title: "t".into(),
            count: 3,
            tags: vec!["a".into()],
            status: Status::Closed {
                reason: "done".into(),
            },
            parent: Some(Box::new(Doc {
                title: "p".into(),
                count: 0,
                tags: vec![],
                status: Status::Open,
                parent: None,
            })),
        };
        Validator::new(&schema())
            .validate(&serde_json::to_value(&doc).unwrap())
            .unwrap();
    }

    #[test]
    fn violations_name_the_path() {
        let schema = schema();
        let base = json!({"title": "t", "count": 1, "tags": [], "status": "Open", "parent": null});
        let cases = [
            (
                json!({"count": 1, "tags": [], "status": "Open"}),
                "/: missing required field `title`",
            ),
            (
                json!({"title": 1, "count": 1, "tags": [], "status": "Open"}),
                "/title: expected string",
            ),
            (
                json!({"title": "t", "count": 300, "tags": [], "status": "Open"}),
                "/count: 300 is out of range",
            ),
            (
                json!({"title": "t", "count": 1, "tags": [1], "status": "Open"}),
                "/tags/0: expected string",
            ),
            (
                json!({"title": "t", "count": 1, "tags": [], "status": "Gone"}),
                "/status: matches 0",
            ),
        ];
        let validator = Validator::new(&schema);
        validator.validate(&base).unwrap();
        for (value, expected) in cases {
            let error = validator.validate(&value).unwrap_err();
            assert!(error.starts_with(expected), "{error} !~ {expected}");
        }
    }

    /// A schema with every keyword the check knows.
    fn keywords() -> Value {
        json!({
            "type": "object",
            "required": ["a"],
            "properties": {
                "a": {"type": ["integer", "null"], "minimum": 0, "exclusiveMaximum": 10},
                "b": {"type": "string", "minLength": 1, "maxLength": 3},
                "c": {"type": "array", "prefixItems": [{"const": 1}], "items": {"type": "boolean"},
                      "minItems": 1, "maxItems": 3},
                "d": {"enum": ["x", "y", 1]},
                "e": {"anyOf": []},
                "f": {"oneOf": [{"type": "number"}, {"type": "integer"}]},
                "g": {"anyOf": [{"type": "string"}, {"type": "object", "minProperties": 1,
                                                     "maxProperties": 1}]},
                "h": {"type": "integer", "format": "uint8"},
                "i": {"allOf": [{"type": "number", "maximum": 5}, {"exclusiveMinimum": 1}]},
                "j": false,
                "k": {"$recursive": "#"},
                "l": {"type": "whatever"},
            },
            "additionalProperties": {"type": "string"},
        })
    }

    #[test]
    fn every_keyword_is_checked() {
        let validator = Validator::new(&keywords());
        let passing = [
            json!({"a": 0}),
            json!({"a": null, "b": "abc", "c": [1, true], "d": 1, "f": 1.5, "g": {"x": 1}}),
            json!({"a": 9, "h": 255, "i": 2, "k": [[["anything"]]], "l": 1, "z": "more"}),
        ];
        for value in passing {
            assert_eq!(validator.validate(&value), Ok(()), "{value}");
        }
        let failing = [
            (json!({}), "/: missing required field `a`"),
            (
                json!({"a": 1.5}),
                "/a: expected integer or null, found number",
            ),
            (json!({"a": -1}), "/a: -1 is out of range"),
            (json!({"a": 10}), "/a: 10 is out of range"),
            (json!({"a": 1, "b": ""}), "/b: 0 is below `minLength` 1"),
            (json!({"a": 1, "b": "abcd"}), "/b: 4 is above `maxLength` 3"),
            (json!({"a": 1, "c": []}), "/c: 0 is below `minItems` 1"),
            (json!({"a": 1, "c": [2]}), "/c/0: expected 1, found 2"),
            (
                json!({"a": 1, "c": [1, 2]}),
                "/c/1: expected boolean, found number",
            ),
            (
                json!({"a": 1, "d": "z"}),
                "/d: \"z\" is not one of the allowed values",
            ),
            (
                json!({"a": 1, "e": 1}),
                "/e: matches none of the alternatives (anyOf)",
            ),
            (
                json!({"a": 1, "f": 2}),
                "/f: matches 2 of the alternatives, not exactly one (oneOf)",
            ),
            (
                json!({"a": 1, "g": {}}),
                "/g: matches none of the alternatives (anyOf)",
            ),
            (json!({"a": 1, "h": 256}), "/h: 256 is out of range"),
            (json!({"a": 1, "i": 6}), "/i: 6 is out of range"),
            (json!({"a": 1, "i": 1}), "/i: 1 is out of range"),
            (json!({"a": 1, "j": null}), "/j: field not allowed"),
            (json!({"a": 1, "z": 1}), "/z: expected string, found number"),
        ];
        for (value, expected) in failing {
            assert_eq!(
                validator.validate(&value),
                Err(expected.to_owned()),
                "{value}"
            );
        }
        assert_eq!(
            Validator::new(&json!(false)).validate(&json!(1)),
            Err("/: no value is allowed here".to_owned())
        );
    }

    /// JSON values whose fields are mostly those the schemas name.
    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..300).prop_map(Value::from),
            (-3.0f64..12.0).prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::String),
            prop_oneof![Just("Open"), Just("Closed"), Just("x"), Just("y")]
                .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                "[a-l]",
                prop_oneof![
                    Just("title"),
                    Just("count"),
                    Just("tags"),
                    Just("status"),
                    Just("parent"),
                    Just("reason"),
                    Just("Closed"),
                ]
                .prop_map(str::to_owned),
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key, inner, 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The first pass, which builds no message, and the second, which does, agree on every
        /// value; a failure's message names a path.
        #[test]
        fn both_passes_agree(value in values()) {
            for schema in [schema(), keywords()] {
                let node = Node::new(&schema);
                let quick = node.check::<false>(&value, &mut String::new());
                let full = node.check::<true>(&value, &mut String::new());
                prop_assert_eq!(quick.is_ok(), full.is_ok(), "{} against {}", value, schema);
                if let Err(message) = full {
                    prop_assert!(message.starts_with('/'), "{}", message);
                }
            }
        }
    }
}
