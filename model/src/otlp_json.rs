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
//!   `"Infinity"`, `"-Infinity"`) cannot be held in a JSON tree: it is carried as a
//!   marked `stringValue` and made a double again once the request is deserialised
//!   ([`restore_non_finite_doubles`]);
//! - profiling-only fields (`keyStrindex`, `stringValueStrindex`): removed;
//! - `bytesValue` in the URL-safe alphabet or without its `=` padding, both of which
//!   proto3 JSON parsers accept: rewritten as standard padded base64;
//! - fields at their default left out, as proto3 JSON encoders do, where the impls
//!   require them: an empty `arrayValue`/`kvlistValue` (`{}`) and an empty
//!   attribute key: filled in.
//!
//! So the body is parsed into a `serde_json::Value`, normalised by
//! [`normalize_otlp_json`], then deserialised. Every key of an OTLP trace document is
//! a field name (attribute keys are values of `"key"`), so the rewrite is safe.
//!
//! When the deserialiser still refuses the tree, its words are the generated impls'
//! (`expected i32` for an enum name it does not know, `untagged enum StringOrInt` for
//! an `intValue` of `1.5`) and its path stops at the outermost `AnyValue`.
//! [`explain_invalid_field`] looks at the field it stopped at and says what is wrong
//! there and what is allowed, naming the innermost field.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::common::v1::{AnyValue, KeyValue, any_value};

mod cost;

pub use cost::{
    MIN_BYTES_PER_OBJECT, PARSED_BYTES_PER_ARRAY_SCALAR, PARSED_BYTES_PER_EXTRA_ENTRY,
    PARSED_BYTES_PER_OBJECT, check_json_objects, json_parse_bytes,
};

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
            // Looked up by hash: an object of many keys in both cases costs one lookup
            // per key, not a scan of the others.
            let camel_keys_present: std::collections::HashSet<String> = original
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
                            // A JSON tree cannot hold it: carried as a marked string,
                            // made a double again by `restore_non_finite_doubles`.
                            normalized.insert(
                                "stringValue".to_owned(),
                                Value::String(format!("{NON_FINITE_MARK}{text}")),
                            );
                            continue;
                        }
                        double_string_to_number(&mut field);
                    }
                    "stringValue" => {
                        // A client's string that starts like the marks below is marked
                        // as a literal, so that no string a client sends reads as one.
                        if let Value::String(text) = &mut field
                            && text.starts_with(MARK_PREFIX)
                        {
                            text.insert_str(0, LITERAL_MARK);
                        }
                    }
                    "bytesValue" => standard_base64(&mut field),
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
                    "entityRefs" => {
                        if let Value::Array(items) = &mut field {
                            items.iter_mut().for_each(default_entity_ref);
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

/// A `bytesValue` string in the URL-safe alphabet (`-`, `_`) or without its padding,
/// as proto3 JSON parsers accept it, in the standard padded form the generated impls
/// decode. Anything else is left as sent, for them to refuse (and the error to quote).
fn standard_base64(field: &mut Value) {
    use base64::Engine as _;
    let Value::String(text) = field else {
        return;
    };
    if !text.contains(['-', '_']) && text.len().is_multiple_of(4) {
        return;
    }
    let mut standard: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    if base64::engine::general_purpose::STANDARD
        .decode(&standard)
        .is_ok()
    {
        *text = standard;
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

/// A resource's `EntityRef` with the fields proto3 JSON leaves out at their defaults
/// (an empty `schemaUrl`, no `descriptionKeys`), which its generated serde requires.
fn default_entity_ref(item: &mut Value) {
    if let Value::Object(map) = item {
        for (key, default) in [
            ("schemaUrl", Value::String(String::new())),
            ("type", Value::String(String::new())),
            ("idKeys", Value::Array(Vec::new())),
            ("descriptionKeys", Value::Array(Vec::new())),
        ] {
            map.entry(key).or_insert(default);
        }
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

/// How the marks of strings carried through the JSON tree start.
const MARK_PREFIX: &str = "\u{0}meshtel-";

/// What a non-finite `doubleValue` is carried as through the JSON tree, before its
/// text (`NaN`, `Infinity`, `-Infinity`).
const NON_FINITE_MARK: &str = "\u{0}meshtel-non-finite-double:";

/// What a client's `stringValue` starting with [`MARK_PREFIX`] is carried behind:
/// [`restore_non_finite_doubles`] takes it off again.
const LITERAL_MARK: &str = "\u{0}meshtel-literal:";

/// Makes the non-finite doubles [`normalize_otlp_json`] carried as marked strings
/// doubles again, and the client strings it marked as literals their own text again,
/// everywhere attributes are (resources, scopes, spans, events, links,
/// and inside arrays and maps): call on the request deserialised from its tree.
pub fn restore_non_finite_doubles(request: &mut ExportTraceServiceRequest) {
    fn value(v: &mut AnyValue) {
        match &mut v.value {
            Some(any_value::Value::StringValue(text)) => {
                if let Some(literal) = text.strip_prefix(LITERAL_MARK) {
                    *text = literal.to_owned();
                } else if let Some(number) = text.strip_prefix(NON_FINITE_MARK) {
                    let double = match number {
                        "NaN" => f64::NAN,
                        "Infinity" => f64::INFINITY,
                        _ => f64::NEG_INFINITY,
                    };
                    v.value = Some(any_value::Value::DoubleValue(double));
                }
            }
            Some(any_value::Value::ArrayValue(array)) => array.values.iter_mut().for_each(value),
            Some(any_value::Value::KvlistValue(list)) => attributes(&mut list.values),
            _ => {}
        }
    }
    fn attributes(list: &mut [KeyValue]) {
        list.iter_mut()
            .filter_map(|kv| kv.value.as_mut())
            .for_each(value);
    }
    for resource_spans in &mut request.resource_spans {
        if let Some(resource) = &mut resource_spans.resource {
            attributes(&mut resource.attributes);
        }
        for scope_spans in &mut resource_spans.scope_spans {
            if let Some(scope) = &mut scope_spans.scope {
                attributes(&mut scope.attributes);
            }
            for span in &mut scope_spans.spans {
                attributes(&mut span.attributes);
                span.events
                    .iter_mut()
                    .for_each(|e| attributes(&mut e.attributes));
                span.links
                    .iter_mut()
                    .for_each(|l| attributes(&mut l.attributes));
            }
        }
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

/// A field of an OTLP/JSON tree holding what its type cannot, in a client's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// Where, e.g. `resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue`.
    pub path: String,
    /// What is wrong and what is allowed, e.g. `must be an integer or a decimal
    /// string, not 1.5`.
    pub message: String,
}

/// Why the normalised `tree` could not be deserialised at `path` (where
/// `serde_path_to_error` says it failed: `resourceSpans[0].scopeSpans[0].spans[0].kind`),
/// for the fields whose deserialiser speaks of Rust types: the enums (`kind`,
/// `status.code`), the 64-bit integers (timestamps, `intValue`), the 32-bit counters
/// and the `AnyValue`s, searched down to the innermost bad value. `None` when the
/// field is not one of these or nothing is found wrong there.
pub fn explain_invalid_field(tree: &Value, path: &str) -> Option<InvalidField> {
    let node = node_at(tree, path)?;
    let field = path.rsplit(['.', ']']).next().unwrap_or_default();
    let message = match field {
        "kind" => enum_problem(node, "SpanKind", SPAN_KIND_NAMES),
        "code" => enum_problem(node, "StatusCode", STATUS_CODE_NAMES),
        "startTimeUnixNano" | "endTimeUnixNano" | "timeUnixNano" => uint_problem(node, u64::MAX),
        f if U32_FIELDS.contains(&f) => uint_problem(node, u64::from(u32::MAX)),
        "value" => {
            let mut inner = path.to_owned();
            return any_value_problem(node, &mut inner).map(|message| InvalidField {
                path: inner,
                message,
            });
        }
        _ => None,
    }?;
    Some(InvalidField {
        path: path.to_owned(),
        message,
    })
}

/// Where and why a normalised OTLP/JSON `tree` does not deserialise into an
/// `ExportTraceServiceRequest`: the path of the bad field and, where
/// [`explain_invalid_field`] knows the field, what it allows, else the deserialiser's
/// own words. `None` when it deserialises, or fails at the top (`.`).
pub fn locate_invalid_field(tree: &Value) -> Option<InvalidField> {
    use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
    let error = serde_path_to_error::deserialize::<_, ExportTraceServiceRequest>(tree).err()?;
    let path = error.path().to_string();
    if path == "." {
        return None;
    }
    Some(
        explain_invalid_field(tree, &path).unwrap_or_else(|| InvalidField {
            path,
            message: error.into_inner().to_string(),
        }),
    )
}

/// The node at a `serde_path_to_error` path (`a[0].b.c[2]`).
fn node_at<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = tree;
    for part in path.split('.') {
        let (name, indices) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            node = node.get(name)?;
        }
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            node = node.get(index.strip_suffix(']')?.parse::<usize>().ok()?)?;
        }
    }
    Some(node)
}

/// How a value is shown in a message: JSON text for scalars, a word for the rest.
fn shown(value: &Value) -> String {
    match value {
        Value::Object(_) => "an object".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        scalar => scalar.to_string(),
    }
}

/// Unless `node` is an `i32`, what is wrong with it as the enum `name` whose
/// values are `names` (names were already made numbers by the normalisation).
fn enum_problem(node: &Value, name: &str, names: &[(&str, i64)]) -> Option<String> {
    if node.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) {
        return None;
    }
    let allowed: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    let allowed = allowed.join(", ");
    Some(match node {
        Value::String(_) => {
            format!(
                "unknown {name} {} (expected a number or one of {allowed})",
                shown(node)
            )
        }
        _ => format!("must be a number or one of {allowed}, not {}", shown(node)),
    })
}

/// Unless `node` is an unsigned integer up to `max`, as a number or a decimal string.
fn uint_problem(node: &Value, max: u64) -> Option<String> {
    let fits = match node {
        Value::Number(n) => n.as_u64().is_some_and(|n| n <= max),
        Value::String(text) => text.parse::<u64>().is_ok_and(|n| n <= max),
        _ => false,
    };
    (!fits).then(|| {
        if max == u64::MAX {
            format!(
                "must be a non-negative integer or a decimal string, not {}",
                shown(node)
            )
        } else {
            format!(
                "must be an integer from 0 to {max} or a decimal string of one, not {}",
                shown(node)
            )
        }
    })
}

/// Unless `node` is a 64-bit signed integer, as a number or a decimal string.
fn int_problem(node: &Value) -> Option<String> {
    let fits = match node {
        Value::Number(n) => n.as_i64().is_some(),
        Value::String(text) => text.parse::<i64>().is_ok(),
        _ => false,
    };
    if fits {
        return None;
    }
    let integral = match node {
        Value::Number(n) => n.is_u64(),
        Value::String(text) => text.parse::<i128>().is_ok(),
        _ => false,
    };
    Some(if integral {
        format!(
            "must be an integer from {} to {} or a decimal string of one, not {}",
            i64::MIN,
            i64::MAX,
            shown(node)
        )
    } else {
        format!(
            "must be an integer or a decimal string, not {}",
            shown(node)
        )
    })
}

/// What is wrong with a `bytesValue` (made standard padded base64 where it was
/// URL-safe or unpadded and then decoded), if anything.
fn bytes_problem(node: &Value) -> Option<String> {
    use base64::Engine as _;
    let Value::String(text) = node else {
        return Some(format!("must be a base64 string, not {}", shown(node)));
    };
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .err()
        .map(|error| {
            format!(
                "must be base64 (standard or URL-safe alphabet, padding optional): {error}, in {}",
                shown(node)
            )
        })
}

/// The first bad value inside the `AnyValue` `node`, with `path` (the node's) made
/// its path.
fn any_value_problem(node: &Value, path: &mut String) -> Option<String> {
    let Value::Object(fields) = node else {
        return Some(format!(
            "must be an object such as {{\"stringValue\":\"x\"}}, not {}",
            shown(node)
        ));
    };
    for (key, value) in fields {
        let mark = path.len();
        path.push('.');
        path.push_str(key);
        let problem = match key.as_str() {
            "stringValue" => {
                (!value.is_string()).then(|| format!("must be a string, not {}", shown(value)))
            }
            "bytesValue" => bytes_problem(value),
            "boolValue" => (!value.is_boolean())
                .then(|| format!("must be true or false, not {}", shown(value))),
            "intValue" => int_problem(value),
            "doubleValue" => (!value.is_number())
                .then(|| format!("must be a number or a decimal string, not {}", shown(value))),
            "arrayValue" | "kvlistValue" => list_problem(value, key == "kvlistValue", path),
            _ => None,
        };
        if problem.is_some() {
            return problem;
        }
        path.truncate(mark);
    }
    None
}

/// The first bad value in an `arrayValue` (`AnyValue`s) or a `kvlistValue`
/// (`KeyValue`s) `node`, with `path` made its path.
fn list_problem(node: &Value, key_values: bool, path: &mut String) -> Option<String> {
    let Some(Value::Array(values)) = node.get("values") else {
        return Some(format!(
            "must be an object with a \"values\" array, not {}",
            shown(node)
        ));
    };
    path.push_str(".values");
    let mark = path.len();
    for (i, item) in values.iter().enumerate() {
        let _ = write!(path, "[{i}]");
        let problem = if !key_values {
            any_value_problem(item, path)
        } else if !item.is_object() {
            Some(format!(
                "must be an object with a key and a value, not {}",
                shown(item)
            ))
        } else if let Some(key) = item.get("key").filter(|k| !k.is_string()) {
            path.push_str(".key");
            Some(format!("must be a string, not {}", shown(key)))
        } else if let Some(value) = item.get("value") {
            path.push_str(".value");
            any_value_problem(value, path)
        } else {
            None
        };
        if problem.is_some() {
            return problem;
        }
        path.truncate(mark);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_doubles_are_doubles_once_deserialised() {
        let double = |v: &str| serde_json::json!({"key": "d", "value": {"doubleValue": v}});
        let mut tree = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [double("Infinity")]},
            "scopeSpans": [{"spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                "name": "s", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
                "attributes": [double("NaN"), {"key": "a", "value": {"arrayValue": {"values": [{"doubleValue": "-Infinity"}]}}}],
                "events": [{"name": "e", "timeUnixNano": "1", "attributes": [double("NaN")]}]
            }]}]
        }]});
        normalize_otlp_json(&mut tree);
        let mut request: ExportTraceServiceRequest = serde_json::from_value(tree).unwrap();
        restore_non_finite_doubles(&mut request);
        let of = |kv: &KeyValue| kv.value.clone().and_then(|v| v.value);
        let resource = &request.resource_spans[0];
        let span = &resource.scope_spans[0].spans[0];
        match of(&resource.resource.as_ref().unwrap().attributes[0]) {
            Some(any_value::Value::DoubleValue(d)) => assert_eq!(d, f64::INFINITY),
            other => panic!("{other:?}"),
        }
        match of(&span.attributes[0]) {
            Some(any_value::Value::DoubleValue(d)) => assert!(d.is_nan()),
            other => panic!("{other:?}"),
        }
        match of(&span.attributes[1]) {
            Some(any_value::Value::ArrayValue(array)) => assert_eq!(
                array.values[0].value,
                Some(any_value::Value::DoubleValue(f64::NEG_INFINITY))
            ),
            other => panic!("{other:?}"),
        }
        match of(&span.events[0].attributes[0]) {
            Some(any_value::Value::DoubleValue(d)) => assert!(d.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    /// An object of many keys in both spellings: each snake-case key is looked up
    /// among the camel-case ones by hash. A scan per key took minutes for the
    /// 1.5 million keys a 16 MiB body holds.
    #[test]
    fn many_keys_in_both_spellings_normalize_in_linear_time() {
        let mut object = serde_json::Map::new();
        for i in 0..40_000 {
            object.insert(format!("camelKey{i}"), Value::from(1));
            object.insert(format!("snake_key{i}"), Value::from(2));
        }
        // One snake-case key whose camel-case twin is present: dropped for it.
        object.insert("camel_key7".into(), Value::from(3));
        let mut tree = Value::Object(object);
        let started = std::time::Instant::now();
        normalize_otlp_json(&mut tree);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let map = tree.as_object().unwrap();
        assert_eq!(map.len(), 80_000);
        assert_eq!(map["camelKey7"], Value::from(1));
        assert_eq!(map["snakeKey7"], Value::from(2));
    }

    /// A client's string that looks like a marked double stays the string it sent.
    #[test]
    fn strings_that_look_like_the_marks_stay_strings() {
        let sent = [
            format!("{NON_FINITE_MARK}NaN"),
            format!("{NON_FINITE_MARK}whatever"),
            format!("{LITERAL_MARK}x"),
            "\u{0}meshtel-".to_owned(),
        ];
        let attributes: Vec<Value> = sent
            .iter()
            .map(|text| serde_json::json!({"key": "s", "value": {"stringValue": text}}))
            .collect();
        let mut tree = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "s", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
            "attributes": attributes
        }]}]}]});
        normalize_otlp_json(&mut tree);
        let mut request: ExportTraceServiceRequest = serde_json::from_value(tree).unwrap();
        restore_non_finite_doubles(&mut request);
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        for (kv, text) in span.attributes.iter().zip(&sent) {
            assert_eq!(
                kv.value.clone().and_then(|v| v.value),
                Some(any_value::Value::StringValue(text.clone()))
            );
        }
    }

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
        assert_eq!(
            values[0],
            &serde_json::json!({"stringValue": format!("{NON_FINITE_MARK}NaN")})
        );
        assert_eq!(
            values[1],
            &serde_json::json!({"stringValue": format!("{NON_FINITE_MARK}-Infinity")})
        );
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
