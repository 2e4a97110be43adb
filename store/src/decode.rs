//! Arrow rows of the span table → OTLP traces, grouped by resource and scope.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{
    Array, AsArray, BinaryArray, FixedSizeBinaryArray, Int8Array, Int64Array, ListArray,
    StringArray, UInt32Array,
};
use arrow::datatypes::{Int8Type, Int64Type, UInt32Type};
use arrow::record_batch::RecordBatch;
use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use meshtel_model::{Trace, TraceId};
use prost::Message;

use crate::encode::KEY_SEPARATOR;
use crate::schema::{PackedEntries, col};
use crate::{Error, Result};

/// Decodes one encoded attribute entry (`key \0 <type><value>`).
pub fn decode_attribute(entry: &str) -> KeyValue {
    let (key, rest) = entry.split_once(KEY_SEPARATOR).unwrap_or((entry, "s"));
    let mut chars = rest.chars();
    let kind = chars.next().unwrap_or('s');
    let text = chars.as_str();
    let value = match kind {
        'b' => Value::BoolValue(text == "true"),
        'i' => text
            .parse()
            .map(Value::IntValue)
            .unwrap_or_else(|_| Value::StringValue(text.to_string())),
        'd' => text
            .parse()
            .map(Value::DoubleValue)
            .unwrap_or_else(|_| Value::StringValue(text.to_string())),
        'x' => hex::decode(text)
            .map(Value::BytesValue)
            .unwrap_or_else(|_| Value::StringValue(text.to_string())),
        'j' => match nested_value(text) {
            Ok(AnyValue { value: Some(v) }) => v,
            _ => Value::StringValue(text.to_string()),
        },
        _ => Value::StringValue(text.to_string()),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// An array or map attribute value from its stored JSON. Without serde_json's
/// recursion limit (128 levels, three per nesting of arrays): the value came in through
/// prost, whose own limit (100 messages, two per nesting) bounds how deep it can be.
fn nested_value(text: &str) -> serde_json::Result<AnyValue> {
    use serde::Deserialize;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    AnyValue::deserialize(&mut deserializer)
}

struct Columns<'a> {
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    parent_span_id: &'a FixedSizeBinaryArray,
    name: &'a StringArray,
    kind: &'a Int8Array,
    start: &'a Int64Array,
    duration: &'a Int64Array,
    status_code: &'a Int8Array,
    status_message: &'a StringArray,
    trace_state: &'a StringArray,
    flags: &'a UInt32Array,
    scope_name: &'a StringArray,
    scope_version: &'a StringArray,
    attributes: &'a ListArray,
    resource_attributes: &'a ListArray,
    extras: &'a BinaryArray,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::Corrupt(format!("column {name} missing")))
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self> {
        let fsb = |name| -> Result<&FixedSizeBinaryArray> {
            column(batch, name)?
                .as_fixed_size_binary_opt()
                .ok_or_else(|| Error::Corrupt(format!("column {name} has the wrong type")))
        };
        let utf8 = |name| -> Result<&StringArray> {
            column(batch, name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::Corrupt(format!("column {name} has the wrong type")))
        };
        let list = |name| -> Result<&ListArray> {
            column(batch, name)?
                .as_list_opt::<i32>()
                .ok_or_else(|| Error::Corrupt(format!("column {name} has the wrong type")))
        };
        let wrong = |name: &str| Error::Corrupt(format!("column {name} has the wrong type"));
        Ok(Columns {
            trace_id: fsb(col::TRACE_ID)?,
            span_id: fsb(col::SPAN_ID)?,
            parent_span_id: fsb(col::PARENT_SPAN_ID)?,
            name: utf8(col::NAME)?,
            kind: column(batch, col::KIND)?
                .as_primitive_opt::<Int8Type>()
                .ok_or_else(|| wrong(col::KIND))?,
            start: column(batch, col::START)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| wrong(col::START))?,
            duration: column(batch, col::DURATION)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| wrong(col::DURATION))?,
            status_code: column(batch, col::STATUS_CODE)?
                .as_primitive_opt::<Int8Type>()
                .ok_or_else(|| wrong(col::STATUS_CODE))?,
            status_message: utf8(col::STATUS_MESSAGE)?,
            trace_state: utf8(col::TRACE_STATE)?,
            flags: column(batch, col::FLAGS)?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| wrong(col::FLAGS))?,
            scope_name: utf8(col::SCOPE_NAME)?,
            scope_version: utf8(col::SCOPE_VERSION)?,
            attributes: list(col::ATTRIBUTES)?,
            resource_attributes: list(col::RESOURCE_ATTRIBUTES)?,
            extras: column(batch, col::EXTRAS)?
                .as_binary_opt::<i32>()
                .ok_or_else(|| wrong(col::EXTRAS))?,
        })
    }
}

fn list_strings(list: &ListArray, row: usize) -> Vec<String> {
    if list.is_null(row) {
        return Vec::new();
    }
    let values = list.value(row);
    match values.as_string_opt::<i32>() {
        Some(strings) => strings.iter().flatten().map(str::to_string).collect(),
        None => Vec::new(),
    }
}

type ResourceKey = Vec<String>;
type ScopeKey = (String, String);

#[derive(Default)]
struct TraceBuilder {
    resources: BTreeMap<ResourceKey, BTreeMap<ScopeKey, Vec<Span>>>,
    seen: HashSet<([u8; 8], i8, i64)>,
}

/// Groups rows into whole traces. Exact duplicates (the same span, resource and scope,
/// as at-least-once delivery can produce) are kept once; two reports of one span id
/// that differ (a Zipkin span reported in parts) are both kept, as Jaeger keeps them.
/// Spans within a trace are sorted by start time.
pub fn batches_to_traces(batches: &[RecordBatch]) -> Result<Vec<Trace>> {
    let mut traces: HashMap<[u8; 16], TraceBuilder> = HashMap::new();
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let c = Columns::of(batch)?;
        for row in 0..batch.num_rows() {
            let trace_id: [u8; 16] = c
                .trace_id
                .value(row)
                .try_into()
                .map_err(|_| Error::Corrupt("trace id of wrong width".into()))?;
            let span_id: [u8; 8] = c
                .span_id
                .value(row)
                .try_into()
                .map_err(|_| Error::Corrupt("span id of wrong width".into()))?;
            let builder = traces.entry(trace_id).or_default();
            let start = c.start.value(row);
            // A span id, kind and start seen before: compared whole below.
            let seen_before = !builder.seen.insert((span_id, c.kind.value(row), start));
            let parent_span_id = if c.parent_span_id.is_null(row) {
                Vec::new()
            } else {
                c.parent_span_id.value(row).to_vec()
            };
            let start_ns = u64::try_from(start).unwrap_or(0);
            let duration_ns = u64::try_from(c.duration.value(row)).unwrap_or(0);
            let mut span = Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                trace_state: c.trace_state.value(row).to_string(),
                parent_span_id,
                flags: c.flags.value(row),
                name: c.name.value(row).to_string(),
                kind: i32::from(c.kind.value(row)),
                start_time_unix_nano: start_ns,
                end_time_unix_nano: start_ns.saturating_add(duration_ns),
                attributes: list_strings(c.attributes, row)
                    .iter()
                    .map(|e| decode_attribute(e))
                    .collect(),
                status: None,
                ..Default::default()
            };
            let code = i32::from(c.status_code.value(row));
            let message = c.status_message.value(row);
            if code != 0 || !message.is_empty() {
                span.status = Some(Status {
                    code,
                    message: message.to_string(),
                });
            }
            if !c.extras.is_null(row) {
                let extras = Span::decode(c.extras.value(row))?;
                span.events = extras.events;
                span.links = extras.links;
                span.dropped_events_count = extras.dropped_events_count;
                span.dropped_links_count = extras.dropped_links_count;
            }
            let resource = list_strings(c.resource_attributes, row)
                .iter()
                .flat_map(|value| PackedEntries::of(value))
                .map(str::to_string)
                .collect();
            let scope = (
                c.scope_name.value(row).to_string(),
                c.scope_version.value(row).to_string(),
            );
            let spans = builder
                .resources
                .entry(resource)
                .or_default()
                .entry(scope)
                .or_default();
            if seen_before && spans.contains(&span) {
                continue;
            }
            spans.push(span);
        }
    }
    let mut out: Vec<Trace> = traces
        .into_iter()
        .map(|(trace_id, builder)| Trace {
            trace_id: TraceId(trace_id),
            omitted_spans: 0,
            resource_spans: builder
                .resources
                .into_iter()
                .map(|(resource, scopes)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: resource.iter().map(|e| decode_attribute(e)).collect(),
                        ..Default::default()
                    }),
                    scope_spans: scopes
                        .into_iter()
                        .map(|((name, version), mut spans)| {
                            spans.sort_by_key(|s| s.start_time_unix_nano);
                            ScopeSpans {
                                scope: (!name.is_empty() || !version.is_empty()).then(|| {
                                    InstrumentationScope {
                                        name,
                                        version,
                                        ..Default::default()
                                    }
                                }),
                                spans,
                                schema_url: String::new(),
                            }
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        })
        .collect();
    out.sort_by_key(|t| t.trace_id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::encode::encode_attribute;
    use crate::search::candidate_entries;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::StringValue),
            any::<bool>().prop_map(Value::BoolValue),
            any::<i64>().prop_map(Value::IntValue),
            any::<f64>()
                .prop_filter("NaN never equals itself", |d| !d.is_nan())
                .prop_map(Value::DoubleValue),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::BytesValue),
        ]
    }

    proptest! {
        #[test]
        fn attributes_round_trip(key in "[a-z._]{1,12}", v in value()) {
            let any = AnyValue { value: Some(v) };
            let mut entry = String::new();
            encode_attribute(&key, Some(&any), &mut entry);
            let kv = decode_attribute(&entry);
            prop_assert_eq!(kv.key, key);
            prop_assert_eq!(kv.value, Some(any));
        }

        #[test]
        fn a_tag_search_finds_the_value_it_was_given(key in "[a-z._]{1,12}", v in value()) {
            // Whatever Jaeger would render as the tag's string, searching for it must
            // produce the stored entry among the candidates.
            let rendered = match &v {
                Value::StringValue(s) => s.clone(),
                Value::BoolValue(b) => b.to_string(),
                Value::IntValue(i) => i.to_string(),
                Value::DoubleValue(d) => format!("{d}"),
                Value::BytesValue(b) => hex::encode(b),
                _ => unreachable!(),
            };
            let any = AnyValue { value: Some(v) };
            let mut entry = String::new();
            encode_attribute(&key, Some(&any), &mut entry);
            prop_assert!(candidate_entries(&key, &rendered).contains(&entry));
        }
    }

    /// Arrays nested as deep as prost decodes them (it refuses past 100 messages, two
    /// per nesting) come back whole, past serde_json's default recursion limit.
    #[test]
    fn deeply_nested_values_round_trip() {
        use meshtel_model::otlp::common::v1::ArrayValue;
        let mut value = Value::StringValue("leaf".into());
        for _ in 0..48 {
            value = Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(value) }],
            });
        }
        let any = AnyValue { value: Some(value) };
        let bytes = prost::Message::encode_to_vec(&any);
        let decoded = <AnyValue as prost::Message>::decode(bytes.as_slice()).unwrap();
        let mut entry = String::new();
        encode_attribute("deep", Some(&decoded), &mut entry);
        assert_eq!(decode_attribute(&entry).value, Some(any));
    }

    /// A NUL in a key (the stored separator) does not split the entry in the wrong
    /// place: it comes back as U+FFFD, the value whole.
    #[test]
    fn a_nul_in_a_key_does_not_split_its_value() {
        let any = AnyValue {
            value: Some(Value::StringValue("x".into())),
        };
        let mut entry = String::new();
        encode_attribute("a\0sb", Some(&any), &mut entry);
        let kv = decode_attribute(&entry);
        assert_eq!(kv.key, "a\u{fffd}sb");
        assert_eq!(kv.value, Some(any));
        assert!(candidate_entries("a\0sb", "x").contains(&entry));
    }

    /// NaN and infinities inside an array come back as their text, not as `null`.
    #[test]
    fn non_finite_doubles_in_an_array_are_kept_as_text() {
        use meshtel_model::otlp::common::v1::ArrayValue;
        let double = |d: f64| AnyValue {
            value: Some(Value::DoubleValue(d)),
        };
        let any = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![double(f64::NAN), double(1.5), double(f64::NEG_INFINITY)],
            })),
        };
        let mut entry = String::new();
        encode_attribute("a", Some(&any), &mut entry);
        let Some(AnyValue {
            value: Some(Value::ArrayValue(array)),
        }) = decode_attribute(&entry).value
        else {
            panic!("not an array: {entry}");
        };
        let text = |v: &AnyValue| match &v.value {
            Some(Value::StringValue(s)) => s.clone(),
            Some(Value::DoubleValue(d)) => d.to_string(),
            other => format!("{other:?}"),
        };
        let values: Vec<String> = array.values.iter().map(text).collect();
        assert_eq!(values, ["NaN", "1.5", "-Infinity"]);
    }
}
