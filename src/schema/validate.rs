//! Validating a JSON value against a canonical JSON Schema: the check the migrator runs on each
//! step's output.
//!
//! It covers the keywords schemars emits for serde types: `type`, `enum`, `const`, `properties`,
//! `required`, `additionalProperties`, `items`, `prefixItems`, `oneOf`, `anyOf`, `allOf`, numeric
//! bounds, integer formats, and length and size bounds. `pattern` and string formats are not
//! checked (no regular expression engine), and a `$recursive` marker accepts anything below it.

use serde_json::{Map, Value};

use super::compat::format_range;

/// Checks `value` against `schema` (in canonical form); the error names the path and the rule.
pub(crate) fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    check(value, schema, &mut String::new())
}

fn check(value: &Value, schema: &Value, path: &mut String) -> Result<(), String> {
    let object = match schema {
        Value::Bool(false) => return Err(fail(path, "no value is allowed here")),
        Value::Object(object) => object,
        // `true`, and anything that is not a schema, accepts every value.
        _ => return Ok(()),
    };
    if object.contains_key("$recursive") {
        return Ok(());
    }
    if let Some(types) = object.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
            return Err(fail(
                path,
                &format!(
                    "expected {}, found {}",
                    allowed.join(" or "),
                    type_name(value)
                ),
            ));
        }
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        if !values.contains(value) {
            return Err(fail(
                path,
                &format!("{value} is not one of the allowed values"),
            ));
        }
    }
    if let Some(constant) = object.get("const") {
        if constant != value {
            return Err(fail(path, &format!("expected {constant}, found {value}")));
        }
    }
    check_numbers(value, object, path)?;
    check_sizes(value, object, path)?;
    if let Value::Object(fields) = value {
        check_object(fields, object, path)?;
    }
    if let Value::Array(items) = value {
        check_array(items, object, path)?;
    }
    if let Some(Value::Array(all)) = object.get("allOf") {
        for sub in all {
            check(value, sub, path)?;
        }
    }
    if let Some(Value::Array(any)) = object.get("anyOf") {
        if !any
            .iter()
            .any(|sub| check(value, sub, &mut path.clone()).is_ok())
        {
            return Err(fail(path, "matches none of the alternatives (anyOf)"));
        }
    }
    if let Some(Value::Array(one)) = object.get("oneOf") {
        let matching = one
            .iter()
            .filter(|sub| check(value, sub, &mut path.clone()).is_ok())
            .count();
        if matching != 1 {
            return Err(fail(
                path,
                &format!("matches {matching} of the alternatives, not exactly one (oneOf)"),
            ));
        }
    }
    Ok(())
}

fn check_object(
    fields: &Map<String, Value>,
    schema: &Map<String, Value>,
    path: &mut String,
) -> Result<(), String> {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                return Err(fail(path, &format!("missing required field `{name}`")));
            }
        }
    }
    for (name, field) in fields {
        let depth = path.len();
        path.push('/');
        path.push_str(name);
        let sub = properties
            .get(name)
            .or_else(|| schema.get("additionalProperties"));
        let result = match sub {
            Some(Value::Bool(false)) => Err(fail(path, "field not allowed")),
            Some(sub) => check(field, sub, path),
            None => Ok(()),
        };
        path.truncate(depth);
        result?;
    }
    Ok(())
}

fn check_array(
    items: &[Value],
    schema: &Map<String, Value>,
    path: &mut String,
) -> Result<(), String> {
    let prefix = schema.get("prefixItems").and_then(Value::as_array);
    for (i, item) in items.iter().enumerate() {
        let sub = match prefix.and_then(|prefix| prefix.get(i)) {
            Some(sub) => Some(sub),
            None => schema.get("items"),
        };
        if let Some(sub) = sub {
            let depth = path.len();
            path.push('/');
            path.push_str(&i.to_string());
            let result = check(item, sub, path);
            path.truncate(depth);
            result?;
        }
    }
    Ok(())
}

fn check_numbers(value: &Value, schema: &Map<String, Value>, path: &str) -> Result<(), String> {
    let Some(number) = value.as_f64() else {
        return Ok(());
    };
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let format_range = format_range(schema);
    let outside = bound("minimum").is_some_and(|min| number < min)
        || bound("maximum").is_some_and(|max| number > max)
        || bound("exclusiveMinimum").is_some_and(|min| number <= min)
        || bound("exclusiveMaximum").is_some_and(|max| number >= max)
        || format_range.is_some_and(|(min, max)| number < min || number > max);
    if outside {
        return Err(fail(path, &format!("{value} is out of range")));
    }
    Ok(())
}

fn check_sizes(value: &Value, schema: &Map<String, Value>, path: &str) -> Result<(), String> {
    let size = match value {
        Value::String(text) => Some((text.chars().count(), "minLength", "maxLength")),
        Value::Array(items) => Some((items.len(), "minItems", "maxItems")),
        Value::Object(fields) => Some((fields.len(), "minProperties", "maxProperties")),
        _ => None,
    };
    let Some((size, min_key, max_key)) = size else {
        return Ok(());
    };
    let size = u64::try_from(size).unwrap_or(u64::MAX);
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64) {
        if size < min {
            return Err(fail(path, &format!("{size} is below `{min_key}` {min}")));
        }
    }
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64) {
        if size > max {
            return Err(fail(path, &format!("{size} is above `{max_key}` {max}")));
        }
    }
    Ok(())
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => true,
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

fn fail(path: &str, reason: &str) -> String {
    let at = if path.is_empty() { "/" } else { path };
    format!("{at}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::canonical_schema;
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
        validate(&serde_json::to_value(&doc).unwrap(), &schema()).unwrap();
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
        validate(&base, &schema).unwrap();
        for (value, expected) in cases {
            let error = validate(&value, &schema).unwrap_err();
            assert!(error.starts_with(expected), "{error} !~ {expected}");
        }
    }
}
