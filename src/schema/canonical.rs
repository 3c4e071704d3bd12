//! The canonical form of a JSON Schema, which revolve owns, and its fingerprint.
//!
//! The canonical form keeps what decides which documents a schema accepts and drops the rest:
//! every `$ref` is resolved in place (a reference back into a type being resolved becomes
//! `{"$recursive": "<name>"}`), `$defs`/`definitions` go once resolved, and so do `$schema`, `$id`,
//! `title`, `description`, `$comment`, `examples`, `deprecated`, `readOnly` and `writeOnly`.
//! `required` and `enum` are sorted (their order means nothing), and so are the alternatives of
//! `oneOf` and `anyOf`. Object keys are written sorted. Documentation changes and a schemars upgrade
//! that only reorders or re-documents therefore leave the fingerprint alone.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Keywords that document a schema without changing what it accepts.
const DOCUMENTATION: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// How deep `$ref`s may nest while resolving; deeper is treated as recursive.
const MAX_RESOLVE_DEPTH: usize = 64;

/// The canonical form of a JSON Schema: references resolved, documentation left out, unordered
/// lists sorted.
///
/// ```
/// let a = serde_json::json!({"title": "A", "type": "object", "required": ["b", "a"]});
/// let b = serde_json::json!({"type": "object", "required": ["a", "b"], "description": "docs"});
/// assert_eq!(revolve::canonical_schema(&a), revolve::canonical_schema(&b));
/// assert_eq!(revolve::schema_fingerprint(&a), revolve::schema_fingerprint(&b));
/// ```
#[must_use]
pub fn canonical_schema(schema: &Value) -> Value {
    let defs = definitions(schema);
    let mut resolving = Vec::new();
    canonical(schema, &defs, &mut resolving)
}

/// The SHA-256 of a schema's canonical form, as 64 lowercase hex digits.
#[must_use]
pub fn schema_fingerprint(schema: &Value) -> String {
    fingerprint_canonical(&canonical_schema(schema))
}

/// The SHA-256 of a schema already in canonical form.
pub(crate) fn fingerprint_canonical(canonical: &Value) -> String {
    let mut text = String::new();
    write_sorted(canonical, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
            hex
        })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The definitions a schema's references point into.
fn definitions(schema: &Value) -> Map<String, Value> {
    let mut defs = Map::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(found)) = schema.get(key) {
            for (name, def) in found {
                defs.insert(name.clone(), def.clone());
            }
        }
    }
    defs
}

/// The definition name a local reference points at: `#/$defs/Name` or `#/definitions/Name`.
fn reference_name(reference: &str) -> Option<String> {
    let name = reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/definitions/"))?;
    // JSON Pointer escapes.
    Some(name.replace("~1", "/").replace("~0", "~"))
}

fn canonical(schema: &Value, defs: &Map<String, Value>, resolving: &mut Vec<String>) -> Value {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("$ref") {
                return resolve(reference, object, defs, resolving);
            }
            let mut out = Map::new();
            for (key, value) in object {
                if DOCUMENTATION.contains(&key.as_str()) || key == "$defs" || key == "definitions" {
                    continue;
                }
                let value = match key.as_str() {
                    // Maps of names to subschemas.
                    "properties" | "patternProperties" | "dependentSchemas" => match value {
                        Value::Object(entries) => Value::Object(
                            entries
                                .iter()
                                .map(|(name, sub)| (name.clone(), canonical(sub, defs, resolving)))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    // Values, not schemas.
                    "const" | "default" => value.clone(),
                    "required" | "enum" => sorted(value.clone()),
                    "oneOf" | "anyOf" => match value {
                        Value::Array(alternatives) => {
                            let alternatives = merge_values(
                                alternatives
                                    .iter()
                                    .map(|sub| canonical(sub, defs, resolving))
                                    .collect(),
                            );
                            if let [single] = &alternatives[..] {
                                // One alternative left: it is the schema itself.
                                if let Value::Object(single) = single {
                                    for (inner_key, inner) in single {
                                        out.insert(inner_key.clone(), inner.clone());
                                    }
                                }
                                continue;
                            }
                            sorted(Value::Array(alternatives))
                        }
                        other => other.clone(),
                    },
                    _ => canonical(value, defs, resolving),
                };
                out.insert(key.clone(), value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| canonical(item, defs, resolving))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn resolve(
    reference: &str,
    object: &Map<String, Value>,
    defs: &Map<String, Value>,
    resolving: &mut Vec<String>,
) -> Value {
    let Some(name) = reference_name(reference) else {
        // Not a local definition: keep the reference as written.
        return Value::Object(Map::from_iter([(
            "$ref".to_owned(),
            Value::String(reference.to_owned()),
        )]));
    };
    if resolving.contains(&name) || resolving.len() >= MAX_RESOLVE_DEPTH {
        return Value::Object(Map::from_iter([(
            "$recursive".to_owned(),
            Value::String(name),
        )]));
    }
    let Some(target) = defs.get(&name) else {
        return Value::Object(Map::from_iter([(
            "$unresolved".to_owned(),
            Value::String(name),
        )]));
    };
    resolving.push(name);
    let mut resolved = canonical(target, defs, resolving);
    resolving.pop();
    // Keywords beside `$ref` (2020-12 allows them) apply too.
    if let Value::Object(merged) = &mut resolved {
        let siblings: Map<String, Value> = object
            .iter()
            .filter(|(key, _)| key.as_str() != "$ref")
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if let Value::Object(extra) = canonical(&Value::Object(siblings), defs, resolving) {
            for (key, value) in extra {
                merged.entry(key).or_insert(value);
            }
        }
    }
    resolved
}

/// Merges the alternatives that only list values (`const`, or `enum`, of one type) into one
/// `enum`: schemars writes a unit variant with a doc comment as its own `const` alternative, and
/// without one inside a shared `enum`, which mean the same.
fn merge_values(alternatives: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<(Option<Value>, Vec<Value>)> = Vec::new();
    let mut rest = Vec::new();
    for alternative in alternatives {
        let values = alternative.as_object().and_then(|object| {
            if object
                .keys()
                .any(|key| !matches!(key.as_str(), "type" | "const" | "enum"))
            {
                return None;
            }
            match (object.get("const"), object.get("enum")) {
                (Some(value), None) => Some((object.get("type").cloned(), vec![value.clone()])),
                (None, Some(Value::Array(values))) => {
                    Some((object.get("type").cloned(), values.clone()))
                }
                _ => None,
            }
        });
        match values {
            Some((kind, values)) => match merged.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, all)) => all.extend(values),
                None => merged.push((kind, values)),
            },
            None => rest.push(alternative),
        }
    }
    for (kind, values) in merged {
        let mut object = Map::new();
        if let Some(kind) = kind {
            object.insert("type".to_owned(), kind);
        }
        object.insert("enum".to_owned(), sorted(Value::Array(values)));
        rest.push(Value::Object(object));
    }
    rest
}

/// Sorts an array by each element's canonical text.
fn sorted(value: Value) -> Value {
    match value {
        Value::Array(mut items) => {
            items.sort_by_cached_key(|item| {
                let mut text = String::new();
                write_sorted(item, &mut text);
                text
            });
            Value::Array(items)
        }
        other => other,
    }
}

/// Writes JSON with object keys sorted, whatever order the map keeps them in.
pub(crate) fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(inner) = object.get(key) {
                    write_sorted(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_resolved_and_documentation_dropped() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Issue",
            "type": "object",
            "properties": {
                "status": {"$ref": "#/$defs/Status", "description": "where it is"},
                "assignee": {"$ref": "#/$defs/Person"}
            },
            "required": ["status", "assignee"],
            "$defs": {
                "Status": {"type": "string", "enum": ["open", "closed"], "description": "x"},
                "Person": {"type": "object", "properties": {"email": {"type": "string"}}}
            }
        });
        assert_eq!(
            canonical_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["closed", "open"]},
                    "assignee": {"type": "object", "properties": {"email": {"type": "string"}}}
                },
                "required": ["assignee", "status"]
            })
        );
    }

    #[test]
    fn recursive_types_end_in_a_marker() {
        let schema = json!({
            "$ref": "#/$defs/Node",
            "$defs": {"Node": {"type": "object", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
            }}}
        });
        let canonical = canonical_schema(&schema);
        assert_eq!(
            canonical["properties"]["children"]["items"],
            json!({"$recursive": "Node"})
        );
    }

    #[test]
    fn fingerprints_ignore_order_and_docs_but_not_meaning() {
        let a = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}});
        let b = json!({"properties": {"b": {"type": "integer", "description": "count"}, "a": {"type": "string"}}, "type": "object"});
        let c = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}});
        assert_eq!(schema_fingerprint(&a), schema_fingerprint(&b));
        assert_ne!(schema_fingerprint(&a), schema_fingerprint(&c));
        assert_eq!(schema_fingerprint(&a).len(), 64);
    }

    #[test]
    fn real_schemars_output_canonicalises() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)] // only its schema is used
        struct Doc {
            /// Documented.
            title: String,
            tags: Vec<String>,
            parent: Option<Box<Doc>>,
        }
        let schema = serde_json::to_value(schemars::schema_for!(Doc)).unwrap();
        let canonical = canonical_schema(&schema);
        assert!(canonical.get("title").is_none());
        assert!(canonical["properties"]["title"]
            .get("description")
            .is_none());
    }
}
