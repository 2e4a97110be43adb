//! The reader against the path it replaces: prost decoding, validation, then
//! [`crate::encode::encode_resource_spans`], on generated requests.

use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::any_value::Value;
use meshtel_model::otlp::common::v1::{AnyValue, ArrayValue, KeyValue};
use meshtel_model::otlp::trace::v1::span::{Event, Link};
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Status};
use meshtel_model::validate::{count_spans, validate_resource_spans};
use proptest::prelude::*;

use super::*;
use crate::encode::encode_resource_spans;

/// What the struct path makes of an encoded request.
fn by_structs(
    request: &[u8],
    limits: &SpanLimits,
) -> Option<Result<(EncodedBatch, ExportSummary), String>> {
    let decoded = ExportTraceServiceRequest::decode(request).ok()?;
    let count = count_spans(&decoded.resource_spans);
    if count > limits.max_spans_per_request {
        return Some(Err(format!("too many: {count}")));
    }
    let validated = validate_resource_spans(decoded.resource_spans, limits);
    let (encoded, skipped) = encode_resource_spans(&validated.resource_spans, u64::MAX).ok()?;
    assert_eq!(skipped, 0);
    Some(Ok((
        encoded,
        ExportSummary {
            accepted_spans: validated.accepted_spans,
            rejected_spans: validated.rejected_spans,
            error_message: validated.error_message,
            ends_before_start: validated.ends_before_start,
            limited: validated.limited,
        },
    )))
}

/// What the reader makes of it; `None` when it hands the request to prost.
fn by_wire(
    request: &[u8],
    limits: &SpanLimits,
) -> Option<Result<(EncodedBatch, ExportSummary), String>> {
    match encode_export_request(request, limits, u64::MAX) {
        Ok(Some(done)) => Some(Ok(done)),
        Ok(None) => None,
        Err(ModelError::TooManySpans { count, .. }) => Some(Err(format!("too many: {count}"))),
        Err(other) => Some(Err(other.to_string())),
    }
}

fn assert_same(
    wire: &Result<(EncodedBatch, ExportSummary), String>,
    structs: &Result<(EncodedBatch, ExportSummary), String>,
) {
    match (wire, structs) {
        (Ok((wire_rows, wire_summary)), Ok((struct_rows, struct_summary))) => {
            assert_eq!(wire_summary, struct_summary);
            assert_eq!(wire_rows.batch, struct_rows.batch);
            assert_eq!(wire_rows.operations, struct_rows.operations);
        }
        (wire, structs) => assert_eq!(
            wire.as_ref().err(),
            structs.as_ref().err(),
            "one path failed, the other did not"
        ),
    }
}

fn id(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

prop_compose! {
    fn ids()(choice in 0..10u8, fill in 1..=255u8) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        match choice {
            0 => (id(16, 0), id(8, fill), vec![]),
            1 => (id(15, fill), id(8, fill), vec![]),
            2 => (id(16, fill), id(8, 0), vec![]),
            3 => (id(16, fill), id(7, fill), vec![]),
            4 => (id(16, fill), id(8, fill), id(3, fill)),
            5 => (id(16, fill), id(8, fill), id(8, 0)),
            6 | 7 => (id(16, fill), id(8, fill), id(8, fill.wrapping_add(1))),
            _ => (id(16, fill), id(8, fill), vec![]),
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,12}",
        // Multi-byte characters, so that truncation must find a boundary.
        "[a-zé€😀]{1,8}",
    ]
}

fn scalar_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        text().prop_map(|s| Some(Value::StringValue(s))),
        any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
        any::<f64>().prop_map(|d| Some(Value::DoubleValue(d))),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| Some(Value::BytesValue(b))),
        (0..5i32).prop_map(|i| Some(Value::StringValueStrindex(i))),
    ]
}

fn attribute() -> impl Strategy<Value = KeyValue> {
    let value = prop_oneof![
        8 => scalar_value(),
        1 => scalar_value().prop_map(|v| Some(Value::ArrayValue(ArrayValue {
            values: vec![AnyValue { value: v }],
        }))),
    ];
    (
        prop_oneof![
            Just("service.name".to_string()),
            "[a-c]{1,3}",
            // Keys holding the entry separator, stored with it replaced.
            "[a-c\\x00]{1,4}",
        ],
        proptest::option::weighted(0.9, value),
    )
        .prop_map(|(key, value)| KeyValue {
            key,
            value: value.map(|value| AnyValue { value }),
            ..KeyValue::default()
        })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec(attribute(), 0..6)
}

prop_compose! {
    fn span()(
        (trace_id, span_id, parent_span_id) in ids(),
        name in prop_oneof![Just("GET".to_string()), Just("POST /x".to_string()), text()],
        kind in -1..7i32,
        start in any::<u64>(),
        length in 0..1_000_000u64,
        backwards in proptest::bool::weighted(0.1),
        flags in any::<u32>(),
        trace_state in text(),
        status in proptest::option::of((0..3i32, text())),
        attributes in attributes(),
        events in proptest::collection::vec((text(), attributes()), 0..2),
        links in proptest::collection::vec((ids(), attributes()), 0..2),
        dropped in 0..3u32,
    ) -> Span {
        let end = if backwards { start.saturating_sub(length) } else { start.saturating_add(length) };
        Span {
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            flags,
            trace_state,
            status: status.map(|(code, message)| Status { code, message }),
            attributes,
            dropped_attributes_count: dropped,
            events: events
                .into_iter()
                .map(|(name, attributes)| Event { name, attributes, time_unix_nano: 7, ..Event::default() })
                .collect(),
            links: links
                .into_iter()
                .map(|((trace_id, span_id, _), attributes)| Link { trace_id, span_id, attributes, ..Link::default() })
                .collect(),
            ..Span::default()
        }
    }
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope = (
        proptest::option::of((text(), text(), attributes())),
        proptest::collection::vec(span(), 0..5),
    )
        .prop_map(|(scope, spans)| ScopeSpans {
            scope: scope.map(|(name, version, attributes)| InstrumentationScope {
                name,
                version,
                attributes,
                ..InstrumentationScope::default()
            }),
            spans,
            schema_url: String::new(),
        });
    let group = (
        proptest::option::of(attributes()),
        proptest::collection::vec(scope, 0..3),
    )
        .prop_map(|(resource, scope_spans)| ResourceSpans {
            resource: resource.map(|attributes| Resource {
                attributes,
                ..Resource::default()
            }),
            scope_spans,
            schema_url: String::new(),
        });
    proptest::collection::vec(group, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

prop_compose! {
    fn limits()(
        spans in 1..20usize,
        count in 1..6usize,
        bytes in 1..12usize,
        names in 1..12usize,
        events in 0..4usize,
    ) -> SpanLimits {
        SpanLimits {
            max_spans_per_request: spans,
            max_attributes_per_span: count,
            max_attribute_value_bytes: bytes,
            max_name_bytes: names,
            max_events_per_span: events,
            max_links_per_span: events,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn reads_requests_as_the_struct_path_does(request in request(), limits in limits()) {
        let bytes = request.encode_to_vec();
        let structs = by_structs(&bytes, &limits).expect("a generated request decodes");
        let wire = by_wire(&bytes, &limits).expect("the reader handles well-formed requests");
        assert_same(&wire, &structs);
    }

    #[test]
    fn never_accepts_what_prost_refuses(
        request in request(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let limits = SpanLimits::default();
        let mut bytes = request.encode_to_vec();
        if !bytes.is_empty() {
            let at = flip.index(bytes.len());
            bytes[at] ^= xor;
            bytes.truncate(cut.index(bytes.len()) + 1);
        }
        let structs = by_structs(&bytes, &limits);
        match (by_wire(&bytes, &limits), structs) {
            // Handed to prost: whatever prost says stands.
            (None, _) => {}
            (Some(wire), Some(structs)) => assert_same(&wire, &structs),
            (Some(_), None) => panic!("the reader accepted a request prost cannot decode"),
        }
    }
}

#[test]
fn hands_a_resource_given_twice_to_prost() {
    // Two `resource` fields in one ResourceSpans merge in prost; the reader leaves
    // that to it.
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("a".into())),
            }),
            ..KeyValue::default()
        }],
        ..Resource::default()
    };
    let mut group = Vec::new();
    for _ in 0..2 {
        prost::encoding::message::encode(1, &resource, &mut group);
    }
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &group, &mut request);
    assert!(by_wire(&request, &SpanLimits::default()).is_none());
    assert!(by_structs(&request, &SpanLimits::default()).is_some());
}

/// The bytes of the entries of a list column of `batch`.
fn entry_bytes(batch: &arrow::array::RecordBatch, column: &str) -> usize {
    use arrow::array::{Array, AsArray};
    let list = batch
        .column_by_name(column)
        .expect("column")
        .as_list::<i32>();
    let values = list.values().as_string::<i32>();
    values.value_offsets()[values.len()] as usize - values.value_offsets()[0] as usize
}

/// A request's builders reserve room for its attribute entries from its encoding:
/// enough for all of them (no buffer doubles while they are appended) and not twice
/// what they take.
#[test]
fn reserves_about_what_the_attributes_take() {
    let text = |key: &str, value: String| KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..KeyValue::default()
    };
    let group = |service: &str, spans: u8| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                text("service.name", service.to_string()),
                text("host.name", format!("{service}-7d9f8c6b5-x2x9q")),
                text("telemetry.sdk.language", "rust".to_string()),
            ],
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..spans)
                .map(|i| Span {
                    trace_id: id(16, i / 10 + 1),
                    span_id: id(8, i + 1),
                    parent_span_id: if i % 10 == 0 { Vec::new() } else { id(8, i) },
                    name: format!("GET /api/items/{{id}} {}", i % 7),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_001_000_000,
                    attributes: (0..11)
                        .map(|a| text(&format!("attribute.key.{a}"), format!("value-{i}-{a}")))
                        .collect(),
                    ..Span::default()
                })
                .collect(),
            ..ScopeSpans::default()
        }],
        schema_url: String::new(),
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![group("frontend", 200), group("checkout", 50)],
    }
    .encode_to_vec();
    let room = Index::of(&request).ok().expect("indexed").room();
    let (encoded, summary) = encode_export_request(&request, &SpanLimits::default(), u64::MAX)
        .expect("read")
        .expect("read without prost");
    assert_eq!(summary.accepted_spans, 250);
    assert_eq!(room.rows, 250);
    for (reserved, column) in [
        (room.attribute_bytes, "attributes"),
        (room.resource_bytes, "resource_attributes"),
    ] {
        let used = entry_bytes(&encoded.batch, column);
        assert!(
            used <= reserved && reserved < 2 * used,
            "{column}: {used} bytes of entries, {reserved} reserved"
        );
    }
}

#[test]
fn refuses_too_many_spans_before_reading_them() {
    let spans = (0..3)
        .map(|i| Span {
            trace_id: id(16, 1),
            span_id: id(8, i + 1),
            ..Span::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let limits = SpanLimits {
        max_spans_per_request: 2,
        ..SpanLimits::default()
    };
    match encode_export_request(&request.encode_to_vec(), &limits, u64::MAX) {
        Err(ModelError::TooManySpans { count: 3, limit: 2 }) => {}
        other => panic!(
            "expected TooManySpans, got {:?}",
            other.map(|o| o.is_some())
        ),
    }
}

/// A request of one span in one resource and scope group, encoded.
fn encoded_request_of(span: Span) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

/// Dropped event and link counts of a span with no events or links left are kept
/// (the struct path stores them with events and links) and read back.
#[test]
fn dropped_event_and_link_counts_are_kept_without_events() {
    let span = Span {
        trace_id: id(16, 1),
        span_id: id(8, 2),
        name: "dropping".into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_000_001_000,
        dropped_events_count: 3,
        dropped_links_count: 4,
        ..Span::default()
    };
    let request = encoded_request_of(span);
    let wire = by_wire(&request, &SpanLimits::default()).unwrap();
    let structs = by_structs(&request, &SpanLimits::default()).unwrap();
    assert_same(&wire, &structs);
    let (encoded, _) = wire.unwrap();
    let traces = crate::decode::batches_to_traces(&[encoded.batch]).unwrap();
    let read = &traces[0].resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        (read.dropped_events_count, read.dropped_links_count),
        (3, 4)
    );
}

/// A span attribute nested as deep as the reader takes it but past prost's recursion
/// limit for a whole request: one byte that is not UTF-8 in it costs that text, as it
/// does anywhere else, not the request (the repaired request is read again here).
#[test]
fn text_repaired_deep_in_a_nested_value_is_read_like_the_rest() {
    let mut value = AnyValue {
        value: Some(Value::StringValue("x@~@".into())),
    };
    for _ in 0..48 {
        value = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    let span = Span {
        trace_id: id(16, 1),
        span_id: id(8, 2),
        name: "deep".into(),
        attributes: vec![KeyValue {
            key: "deep".into(),
            value: Some(value),
            ..KeyValue::default()
        }],
        ..Span::default()
    };
    let request = encoded_request_of(span);
    let limits = SpanLimits::default();
    assert!(
        ExportTraceServiceRequest::decode(&request[..]).is_err(),
        "past prost's limit"
    );
    let (read, warning) = read_export_request(&request, &limits, u64::MAX, &mut |_| Ok(())).expect("read");
    assert!(matches!(read, ReadRequest::Rows(..)) && warning.is_none());
    let mut broken = request.clone();
    let at = broken
        .windows(4)
        .position(|w| w == b"x@~@")
        .expect("the marker");
    broken[at + 1] = 0xe9;
    let (read, warning) = read_export_request(&broken, &limits, u64::MAX, &mut |_| Ok(())).expect("read repaired");
    assert!(matches!(read, ReadRequest::Rows(..)), "read as rows");
    assert_eq!(
        warning.as_deref(),
        Some("replaced invalid UTF-8 in 1 string(s) with U+FFFD")
    );
}
