//! OTLP/JSON with the leniency the OpenTelemetry Collector shows, shared by every
//! place that reads it (OTLP/HTTP ingest, Jaeger's `/api/transform`).
//!
//! `opentelemetry-proto`'s generated serde impls (feature `with-serde`) already accept
//! hex ids in either case, 64-bit integers (timestamps, `intValue`) as strings or
//! numbers, and ignore unknown fields. They do not accept:
//!
//! - snake_case keys (`start_time_unix_nano`), which proto3 JSON parsers and the
//!   Collector accept: renamed to lowerCamelCase here (the camelCase key wins when
//!   both are present);
//! - enum names (`"SPAN_KIND_SERVER"`, `"STATUS_CODE_ERROR"`): mapped to numbers;
//! - 32-bit counters (`flags`, `dropped*Count`) written as strings: made numbers;
//! - `null` for a field, which proto3 JSON reads as the default: removed;
//! - `doubleValue` as a string (`"1.5"`): parsed; a non-finite one (`"NaN"`,
//!   `"Infinity"`, `"-Infinity"`) cannot be held in a JSON tree and is kept as a
//!   `stringValue` of that text, where protobuf keeps a double;
//! - profiling-only fields (`keyStrindex`, `stringValueStrindex`): removed;
//! - fields at their default left out, as proto3 JSON encoders do, where the impls
//!   require them: an empty `arrayValue`/`kvlistValue` (`{}`) and an empty
//!   attribute key: filled in.
//!
//! So the body is parsed into a `serde_json::Value`, normalised by
//! [`normalize_otlp_json`], then deserialised. Every key of an OTLP trace document is
//! a field name (attribute keys are values of `"key"`), so the rewrite is safe.

use serde_json::{Map, Value};

/// `Span.kind` names, as `SpanKind` numbers them.
const SPAN_KIND_NAMES: &[(&str, i64)] = &[
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];

/// `Status.code` names.
const STATUS_CODE_NAMES: &[(&str, i64)] = &[
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

/// Fixed- and 32-bit integer fields the generated impls only take as JSON numbers.
const U32_FIELDS: &[&str] = &[
    "flags",
    "droppedAttributesCount",
    "droppedEventsCount",
    "droppedLinksCount",
];

/// Fields used only by the profiling signal; ignored for traces.
const PROFILING_ONLY_FIELDS: &[&str] = &["keyStrindex", "stringValueStrindex"];

/// Rewrites an OTLP/JSON tree into the form the generated serde impls accept; see
/// the module docs.
pub fn normalize_otlp_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let original = std::mem::take(map);
            let mut normalized = Map::with_capacity(original.len());
            let camel_keys_present: Vec<String> = original
                .keys()
                .filter(|key| !key.contains('_'))
                .cloned()
                .collect();
            for (key, mut field) in original {
                if field.is_null() {
                    continue;
                }
                let key = if key.contains('_') {
                    let camel = snake_to_lower_camel(&key);
                    if camel_keys_present.contains(&camel) {
                        continue;
                    }
                    camel
                } else {
                    key
                };
                if PROFILING_ONLY_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                normalize_otlp_json(&mut field);
                match key.as_str() {
                    "kind" => enum_name_to_number(&mut field, SPAN_KIND_NAMES),
                    "code" => enum_name_to_number(&mut field, STATUS_CODE_NAMES),
                    "doubleValue" => {
                        if let Some(text) = non_finite_double(&field) {
                            // Kept as its text rather than lost (see the module doc).
                            normalized.insert("stringValue".to_owned(), Value::String(text));
                            continue;
                        }
                        double_string_to_number(&mut field);
                    }
                    "arrayValue" => default_values(&mut field),
                    "kvlistValue" => {
                        default_values(&mut field);
                        if let Some(Value::Array(items)) = field.get_mut("values") {
                            items.iter_mut().for_each(default_key);
                        }
                    }
                    "attributes" => {
                        if let Value::Array(items) = &mut field {
                            items.iter_mut().for_each(default_key);
                        }
                    }
                    k if U32_FIELDS.contains(&k) => integer_string_to_number(&mut field),
                    _ => {}
                }
                if !field.is_null() {
                    normalized.insert(key, field);
                }
            }
            *map = normalized;
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_otlp_json),
        _ => {}
    }
}

/// An empty `arrayValue` or `kvlistValue` as proto3 JSON writes it (`{}`, its repeated
/// field left out): given its empty `values`.
fn default_values(field: &mut Value) {
    if let Value::Object(map) = field {
        map.entry("values")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
}

/// A `KeyValue` whose `key` is the empty string, which proto3 JSON leaves out.
fn default_key(item: &mut Value) {
    if let Value::Object(map) = item {
        map.entry("key")
            .or_insert_with(|| Value::String(String::new()));
    }
}

/// `start_time_unix_nano` → `startTimeUnixNano`.
fn snake_to_lower_camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper_next = false;
    for c in key.chars() {
        if c == '_' {
            upper_next = !out.is_empty();
        } else if upper_next {
            out.extend(c.to_uppercase());
            upper_next = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// An enum given by name (any case) or as a numeric string becomes its number;
/// anything else is left for the deserializer to reject.
fn enum_name_to_number(field: &mut Value, names: &[(&str, i64)]) {
    let Value::String(text) = field else {
        return;
    };
    let number = names
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, number)| *number)
        .or_else(|| text.trim().parse::<i64>().ok());
    if let Some(number) = number {
        *field = Value::from(number);
    }
}

fn integer_string_to_number(field: &mut Value) {
    if let Value::String(text) = field
        && let Ok(number) = text.trim().parse::<u64>()
    {
        *field = Value::from(number);
    }
}

/// `"NaN"`, `"Infinity"` or `"-Infinity"` for a `doubleValue` proto3 JSON wrote as one
/// of those strings (a JSON tree cannot hold the number).
fn non_finite_double(field: &Value) -> Option<String> {
    let text = field.as_str()?.trim();
    let number = text.parse::<f64>().ok()?;
    if number.is_finite() {
        return None;
    }
    Some(
        if number.is_nan() {
            "NaN"
        } else if number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_owned(),
    )
}

/// proto3 JSON lets doubles be strings (`"1.5"`); they become numbers.
fn double_string_to_number(field: &mut Value) {
    if let Value::String(text) = field {
        *field = match text.trim().parse::<f64>() {
            Ok(number) => serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number),
            Err(_) => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_doubles_are_kept_as_their_text() {
        let mut tree = serde_json::json!({"attributes": [
            {"key": "a", "value": {"doubleValue": "NaN"}},
            {"key": "b", "value": {"doubleValue": "-Infinity"}},
            {"key": "c", "value": {"doubleValue": "1.5"}},
            {"key": "d", "value": {"doubleValue": 2.5}},
        ]});
        normalize_otlp_json(&mut tree);
        let values: Vec<&Value> = tree["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| &kv["value"])
            .collect();
        assert_eq!(values[0], &serde_json::json!({"stringValue": "NaN"}));
        assert_eq!(values[1], &serde_json::json!({"stringValue": "-Infinity"}));
        assert_eq!(values[2], &serde_json::json!({"doubleValue": 1.5}));
        assert_eq!(values[3], &serde_json::json!({"doubleValue": 2.5}));
    }

    #[test]
    fn snake_to_camel_conversion() {
        assert_eq!(
            snake_to_lower_camel("start_time_unix_nano"),
            "startTimeUnixNano"
        );
        assert_eq!(snake_to_lower_camel("name"), "name");
        assert_eq!(snake_to_lower_camel("_x"), "x");
    }
}
