//! A search query as a DataFusion filter over the span table: its window, service,
//! operation, durations and tags.

use datafusion_expr::{Expr, col, lit};
use meshtel_model::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use meshtel_model::{SpanKind, TraceQuery};

use super::entries::entries_has_any;
use crate::encode::{KEY_SEPARATOR, format_double};
use crate::schema::{ENTRY_COLUMNS, col as c};
use crate::to_i64;

/// The filter a single span must pass for its trace to match `query`.
pub fn search_filter(query: &TraceQuery) -> Expr {
    let window = col(c::START)
        .gt_eq(lit(to_i64(query.start_min_unix_nano)))
        .and(col(c::START).lt_eq(lit(to_i64(query.start_max_unix_nano))));
    match span_filter(query) {
        Some(rest) => window.and(rest),
        None => window,
    }
}

/// [`search_filter`] without the time window: what a block whose every span started
/// inside the window must still check. `None` when that is nothing.
pub(super) fn span_filter(query: &TraceQuery) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(service) = &query.service {
        parts.push(col(c::SERVICE).eq(lit(service.clone())));
    }
    if let Some(operation) = &query.operation {
        parts.push(col(c::NAME).eq(lit(operation.clone())));
    }
    if let Some(min) = query.duration_min_nano {
        parts.push(col(c::DURATION).gt_eq(lit(to_i64(min))));
    }
    if let Some(max) = query.duration_max_nano {
        parts.push(col(c::DURATION).lt_eq(lit(to_i64(max))));
    }
    for (key, value) in &query.tags {
        parts.push(tag_filter(key, value));
    }
    all_of(parts)
}

/// `parts` ANDed as a balanced tree: its depth grows with the logarithm of their
/// count, so that the recursive walks over it stay shallow however many tags a search
/// names (a chain one level per tag overflowed a worker's stack at a few thousand).
fn all_of(mut parts: Vec<Expr>) -> Option<Expr> {
    while parts.len() > 1 {
        let mut pairs = Vec::with_capacity(parts.len().div_ceil(2));
        let mut rest = parts.into_iter();
        while let Some(left) = rest.next() {
            pairs.push(match rest.next() {
                Some(right) => left.and(right),
                None => left,
            });
        }
        parts = pairs;
    }
    parts.pop()
}

/// The stored entries that a tag `key=value` can match: one per value type whose
/// Jaeger string form could be `value`.
pub fn candidate_entries(key: &str, value: &str) -> Vec<String> {
    let key = crate::encode::stored_key(key);
    let entry = |t: char, v: &str| format!("{key}{KEY_SEPARATOR}{t}{v}");
    let mut out = vec![entry('s', value)];
    if value == "true" || value == "false" {
        out.push(entry('b', value));
    }
    // A number or bytes value is found by the one text Jaeger shows for it, as Jaeger
    // compares: `500`, not `0500` or `+500`; lower-case hex.
    if value.parse::<i64>().is_ok_and(|i| i.to_string() == value) {
        out.push(entry('i', value));
    }
    if let Ok(d) = value.parse::<f64>()
        && double_texts(d).iter().any(|t| t == value)
    {
        out.push(entry('d', &format_double(d)));
    }
    if value.len().is_multiple_of(2)
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        out.push(entry('x', value));
    }
    if let Some(stored) = stored_json_value(value) {
        out.push(entry('j', &stored));
    }
    out
}

/// The texts a double is shown as: its shortest decimal (`0.1`, `1000000`), the
/// exponent forms JSON writers use for very large and small values (`1e+21`, `1e21`,
/// `1e-07`, `1e-7`), and for infinities `+Inf`/`Infinity` (and negated).
fn double_texts(d: f64) -> Vec<String> {
    let mut texts = vec![format_double(d)];
    if d.is_infinite() {
        // As the Jaeger API shows it (Go's `+Inf`), and as OTLP/JSON writes it.
        let (go, json) = if d > 0.0 {
            ("+Inf", "Infinity")
        } else {
            ("-Inf", "-Infinity")
        };
        texts.extend([go.to_owned(), json.to_owned()]);
        return texts;
    }
    let exponent_form = format!("{d:e}");
    if let Some((mantissa, exponent)) = exponent_form.split_once('e') {
        let (signs, digits): (&[&str], &str) = match exponent.strip_prefix('-') {
            Some(digits) => (&["-"], digits),
            None => (&["", "+"], exponent),
        };
        for sign in signs {
            for digits in [digits.to_string(), format!("{digits:0>2}")] {
                texts.push(format!("{mantissa}e{sign}{digits}"));
            }
        }
    }
    texts
}

/// The stored form of an array or map attribute value that Jaeger shows as the JSON
/// text `value` (see [`crate::encode::encode_attribute`]): strings, bools, integers and
/// other numbers as themselves, maps with their keys in the order the text gives (the
/// order Jaeger shows them in, sorted). A double with an integral value, bytes (shown
/// as base64) and a map sent with its keys in another order are stored otherwise and
/// not found this way.
fn stored_json_value(value: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(value).ok()?;
    if !(json.is_array() || json.is_object()) {
        return None;
    }
    let any = AnyValue {
        value: any_value_of(&json),
    };
    serde_json::to_string(&any).ok()
}

fn any_value_of(json: &serde_json::Value) -> Option<any_value::Value> {
    use serde_json::Value as J;
    Some(match json {
        J::Null => return None,
        J::Bool(b) => any_value::Value::BoolValue(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64()?),
        },
        J::String(s) => any_value::Value::StringValue(s.clone()),
        J::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|item| AnyValue {
                    value: any_value_of(item),
                })
                .collect(),
        }),
        J::Object(fields) => any_value::Value::KvlistValue(KeyValueList {
            values: fields
                .iter()
                .map(|(key, item)| KeyValue {
                    key: key.clone(),
                    value: Some(AnyValue {
                        value: any_value_of(item),
                    }),
                    ..KeyValue::default()
                })
                .collect(),
        }),
    })
}

/// Matches a tag on the span, its resource or its events, or one of the tags Jaeger
/// derives from span fields (`error`, `span.kind`, `otel.status_code`, ...).
fn tag_filter(key: &str, value: &str) -> Expr {
    let candidates = candidate_entries(key, value);
    let mut any = ENTRY_COLUMNS
        .iter()
        .map(|column| {
            let packed = *column == c::RESOURCE_ATTRIBUTES;
            entries_has_any(col(*column), &candidates, packed)
        })
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false));
    if let Some(derived) = derived_tag(key, value) {
        any = any.or(derived);
    }
    any
}

/// The test of a span field that Jaeger shows as tag `key=value` (`error`,
/// `span.kind`, `otel.status_code`, ...), if `key` is one.
pub(super) fn derived_tag(key: &str, value: &str) -> Option<Expr> {
    match key {
        "error" if value == "true" => Some(col(c::STATUS_CODE).eq(lit(2i8))),
        "span.kind" => SpanKind::from_jaeger_name(value)
            .filter(|k| *k != SpanKind::Unspecified)
            .map(|k| col(c::KIND).eq(lit(k.to_otlp() as i8))),
        "otel.status_code" => match value {
            "OK" => Some(col(c::STATUS_CODE).eq(lit(1i8))),
            "ERROR" => Some(col(c::STATUS_CODE).eq(lit(2i8))),
            _ => None,
        },
        // These tags exist only when their column is not empty: an empty value is
        // looked for among the stored attributes, like any other tag.
        _ if value.is_empty() => None,
        "otel.status_description" => Some(col(c::STATUS_MESSAGE).eq(lit(value.to_string()))),
        "otel.scope.name" => Some(col(c::SCOPE_NAME).eq(lit(value.to_string()))),
        "otel.scope.version" => Some(col(c::SCOPE_VERSION).eq(lit(value.to_string()))),
        "w3c.tracestate" => Some(col(c::TRACE_STATE).eq(lit(value.to_string()))),
        _ => None,
    }
}
