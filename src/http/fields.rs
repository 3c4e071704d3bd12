//! Unknown fields in a request body: serde drops a field the type does not name, so a misspelt
//! `"descripton"` would be acknowledged and lost. Every write is checked against the JSON Schema
//! of the version it is decoded as, and a field no schema at its place declares is refused (422),
//! unless the application allowed unknown fields for the collection.
//!
//! The walk follows what schemars writes for serde types: `properties` (a flattened struct's
//! fields are merged into its parent's), `allOf`, the alternatives of `oneOf` and `anyOf` that
//! the value matches (tagged enums, a flattened enum, `Option`), `additionalProperties` (maps),
//! `items` and `prefixItems`, and `$ref` into `$defs` or to the root `#`. Where the schema does
//! not describe an object's fields (`true`, `serde_json::Value`, a map), every field is accepted.
//! The old names of the document type's own fields (`Schema::ALIASES`) are accepted; a nested
//! type's `#[serde(alias)]` is not known to the schema, so a collection whose clients send those
//! needs `Router::allow_unknown_fields`.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::schema::Validator;

/// How many `$ref`s and combinators are followed at one place before giving up (accepting).
const MAX_RESOLVE: usize = 32;
/// How many unknown fields one answer names.
const MAX_REPORTED: usize = 20;

/// The JSON pointers of the fields of `value` that `schema` (a schemars root schema, with its
/// `$defs`) does not declare, at most [`MAX_REPORTED`]. `aliases` are old names the root object's
/// fields are also read under (`Schema::ALIASES`).
pub(crate) fn unknown_fields(
    value: &Value,
    schema: &Value,
    aliases: &[(&str, &str)],
) -> Vec<String> {
    let mut walk = Walk {
        root: schema,
        aliases,
        found: Vec::new(),
        validators: RefCell::new(HashMap::new()),
    };
    walk.value(value, schema, &mut String::new());
    walk.found
}

struct Walk<'a> {
    root: &'a Value,
    aliases: &'a [(&'a str, &'a str)],
    found: Vec<String>,
    /// The alternatives compiled so far, by their schema's address in `root` (which outlives
    /// the walk): each is compiled once per body, however many values it is matched against.
    validators: RefCell<HashMap<*const Value, Validator>>,
}

impl<'a> Walk<'a> {
    /// Follows a `$ref` into the root's `$defs` (or `definitions`), or to the root itself. An
    /// unknown reference resolves to `true`, which accepts everything.
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        for _ in 0..MAX_RESOLVE {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return schema;
            };
            let target = if reference == "#" {
                Some(self.root)
            } else {
                reference
                    .strip_prefix("#/$defs/")
                    .map(|name| ("$defs", name))
                    .or_else(|| {
                        reference
                            .strip_prefix("#/definitions/")
                            .map(|name| ("definitions", name))
                    })
                    .and_then(|(defs, name)| {
                        let name = name.replace("~1", "/").replace("~0", "~");
                        self.root.get(defs).and_then(|defs| defs.get(name.as_str()))
                    })
            };
            match target {
                Some(target) => schema = target,
                None => return &Value::Bool(true),
            }
        }
        &Value::Bool(true)
    }

    /// The schemas that apply to `value` at this place: `schema`, its `allOf`, and the
    /// alternatives of `oneOf`/`anyOf` that `value` matches (all of them if it matches none).
    fn applicable(&self, value: &Value, schema: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
        let schema = self.resolve(schema);
        if depth > MAX_RESOLVE {
            out.push(&Value::Bool(true));
            return;
        }
        out.push(schema);
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for sub in all {
                self.applicable(value, sub, out, depth + 1);
            }
        }
        for combinator in ["oneOf", "anyOf"] {
            if let Some(Value::Array(alternatives)) = schema.get(combinator) {
                let matching: Vec<&Value> = alternatives
                    .iter()
                    .filter(|alternative| self.matches(value, alternative))
                    .collect();
                let chosen = if matching.is_empty() {
                    alternatives.iter().collect()
                } else {
                    matching
                };
                for alternative in chosen {
                    self.applicable(value, alternative, out, depth + 1);
                }
            }
        }
    }

    /// Whether `value` fits `schema` at its own level (a `$ref` resolved once; nested references
    /// accept anything, which only makes the choice of alternatives more lenient).
    fn matches(&self, value: &Value, schema: &Value) -> bool {
        let schema = self.resolve(schema);
        self.validators
            .borrow_mut()
            .entry(std::ptr::from_ref(schema))
            .or_insert_with(|| Validator::new(schema))
            .is_valid(value)
    }

    fn value(&mut self, value: &Value, schema: &'a Value, path: &mut String) {
        if self.found.len() >= MAX_REPORTED {
            return;
        }
        match value {
            Value::Object(fields) => self.object(fields, value, schema, path),
            Value::Array(items) => {
                let mut schemas = Vec::new();
                self.applicable(value, schema, &mut schemas, 0);
                for (i, item) in items.iter().enumerate() {
                    let sub = schemas.iter().find_map(|schema| {
                        schema
                            .get("prefixItems")
                            .and_then(|prefix| prefix.get(i))
                            .or_else(|| schema.get("items"))
                    });
                    if let Some(sub) = sub {
                        let depth = path.len();
                        path.push('/');
                        path.push_str(&i.to_string());
                        self.value(item, sub, path);
                        path.truncate(depth);
                    }
                }
            }
            _ => {}
        }
    }

    fn object(
        &mut self,
        fields: &Map<String, Value>,
        value: &Value,
        schema: &'a Value,
        path: &mut String,
    ) {
        let mut schemas = Vec::new();
        self.applicable(value, schema, &mut schemas, 0);
        // A schema that says nothing of fields (`true`, `{}`, `{"type": "object"}`) accepts all.
        let described = schemas.iter().any(|schema| {
            schema.get("properties").is_some() || schema.get("additionalProperties").is_some()
        });
        let extra: Option<&Value> = schemas.iter().find_map(|schema| {
            schema
                .get("additionalProperties")
                .filter(|extra| !matches!(extra, Value::Bool(false)))
        });
        let open = !described
            || schemas
                .iter()
                .any(|schema| schema.get("patternProperties").is_some());
        for (name, field) in fields {
            let declared = schemas.iter().find_map(|schema| {
                schema
                    .get("properties")
                    .and_then(|properties| properties.get(name.as_str()))
            });
            let sub = match (declared, extra) {
                (Some(sub), _) | (None, Some(sub)) => sub,
                (None, None) if open => continue,
                (None, None) => {
                    let alias = path.is_empty()
                        && self.aliases.iter().any(|(_, old)| *old == name.as_str());
                    if !alias {
                        self.found.push(format!("{path}/{}", escape(name)));
                        if self.found.len() >= MAX_REPORTED {
                            return;
                        }
                    }
                    continue;
                }
            };
            let depth = path.len();
            path.push('/');
            path.push_str(&escape(name));
            self.value(field, sub, path);
            path.truncate(depth);
        }
    }
}

/// A field name as a JSON pointer token.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Inner {
        a: u32,
        b: Option<String>,
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(tag = "kind")]
    enum Tagged {
        One { x: u8 },
        Two { y: String },
        Three,
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(tag = "t", content = "c")]
    enum Adjacent {
        P(u8),
        Q { z: u8 },
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    enum External {
        Open,
        Closed { reason: String },
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(untagged)]
    enum Untagged {
        S { s: String },
        N { n: u8 },
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Doc {
        title: String,
        #[serde(flatten)]
        inner: Inner,
        #[serde(flatten)]
        tagged: Tagged,
        external: External,
        adjacent: Adjacent,
        untagged: Untagged,
        map: BTreeMap<String, Inner>,
        list: Vec<Inner>,
        next: Option<Box<Doc>>,
        any: Value,
    }

    fn schema() -> Value {
        serde_json::to_value(schemars::schema_for!(Doc)).unwrap()
    }

    fn base() -> Value {
        json!({
            "title": "t", "a": 1, "b": null, "kind": "One", "x": 2,
            "external": { "Closed": { "reason": "r" } },
            "adjacent": { "t": "Q", "c": { "z": 1 } },
            "untagged": { "s": "s" },
            "map": { "k": { "a": 1 } },
            "list": [{ "a": 1 }],
            "next": null,
            "any": { "whatever": [1, { "deep": true }] },
        })
    }

    fn unknown(value: &Value) -> Vec<String> {
        unknown_fields(value, &schema(), &[("/title", "heading")])
    }

    #[test]
    fn a_serialised_value_has_no_unknown_field() {
        let value = base();
        let _: Doc = serde_json::from_value(value.clone()).unwrap();
        assert!(unknown(&value).is_empty(), "{:?}", unknown(&value));
        let mut nested = base();
        nested["next"] = base();
        nested["kind"] = json!("Three");
        nested.as_object_mut().unwrap().remove("x");
        assert!(unknown(&nested).is_empty(), "{:?}", unknown(&nested));
    }

    #[test]
    fn unknown_fields_are_named_wherever_they_are() {
        let cases: [(&str, &[&str], Value); 9] = [
            ("/descripton", &[], json!("typo")),
            ("/external/Closed/why", &["external", "Closed"], json!("x")),
            ("/adjacent/c/w", &["adjacent", "c"], json!(1)),
            ("/untagged/extra", &["untagged"], json!(1)),
            ("/map/k/c", &["map", "k"], json!(1)),
            ("/list/0/c", &["list", "0"], json!(1)),
            ("/next/zzz", &["next"], json!(1)),
            // `y` belongs to the variant `Two`, not to `One`, which this document is.
            ("/y", &[], json!("other variant")),
            ("/a~1b", &[], json!(1)),
        ];
        for (pointer, parent, extra) in cases {
            let mut value = base();
            value["next"] = base();
            let mut target = &mut value;
            for step in parent {
                target = match target {
                    Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
                    other => &mut other[*step],
                };
            }
            let name = pointer.rsplit('/').next().unwrap().replace("~1", "/");
            target[name.as_str()] = extra;
            assert_eq!(unknown(&value), [pointer.to_owned()], "{pointer}");
        }
    }

    #[test]
    fn aliases_and_open_schemas_are_accepted() {
        let mut value = base();
        value["heading"] = json!("old name of title");
        assert!(unknown(&value).is_empty());
        assert!(unknown_fields(&json!({"x": 1}), &json!(true), &[]).is_empty());
        assert!(unknown_fields(&json!({"x": 1}), &json!({"type": "object"}), &[]).is_empty());
        let mut many = base();
        for n in 0..50 {
            many[format!("extra{n}")] = json!(n);
        }
        assert_eq!(unknown(&many).len(), MAX_REPORTED);
    }
}
