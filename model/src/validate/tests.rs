use crate::otlp::common::v1::{ArrayValue, InstrumentationScope};
use crate::otlp::resource::v1::Resource;
use crate::otlp::trace::v1::ScopeSpans;
use crate::otlp::trace::v1::span::Event;

use super::*;

fn span(trace_id: Vec<u8>, span_id: Vec<u8>, parent: Vec<u8>) -> Span {
    Span {
        trace_id,
        span_id,
        parent_span_id: parent,
        name: "op".into(),
        start_time_unix_nano: 10,
        end_time_unix_nano: 20,
        ..Span::default()
    }
}

fn good_span() -> Span {
    span(vec![1; 16], vec![2; 8], vec![])
}

fn group(spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource::default()),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope::default()),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

#[test]
fn keeps_valid_spans_untouched() {
    let input = vec![group(vec![
        good_span(),
        span(vec![1; 16], vec![3; 8], vec![2; 8]),
    ])];
    let out = validate_resource_spans(input.clone(), &SpanLimits::default());
    assert_eq!(out.resource_spans, input);
    assert_eq!(out.accepted_spans, 2);
    assert_eq!(out.rejected_spans, 0);
    assert_eq!(out.error_message, "");
}

#[test]
fn rejects_each_kind_of_bad_id() {
    let bad = vec![
        span(vec![1; 15], vec![2; 8], vec![]),
        span(vec![0; 16], vec![2; 8], vec![]),
        span(vec![1; 16], vec![2; 7], vec![]),
        span(vec![1; 16], vec![0; 8], vec![]),
        span(vec![1; 16], vec![2; 8], vec![3; 4]),
        span(vec![], vec![], vec![]),
    ];
    let mut spans = bad;
    spans.push(good_span());
    let out = validate_resource_spans(vec![group(spans)], &SpanLimits::default());
    assert_eq!(out.accepted_spans, 1);
    assert_eq!(out.rejected_spans, 6);
    assert_eq!(count_spans(&out.resource_spans), 1);
    let message = &out.error_message;
    assert!(
        message.starts_with("rejected 6 invalid span(s)"),
        "{message}"
    );
    assert!(
        message.contains(
            "resource_spans[0].scope_spans[0].spans[0]: trace id must be 16 bytes, got 15"
        )
    );
    assert!(message.contains("trace id must not be all zeros"));
    assert!(message.contains("span id must be 8 bytes, got 7"));
    assert!(message.contains("span id must not be all zeros"));
    assert!(message.contains("parent span id must be empty or 8 bytes, got 4"));
    assert!(message.contains("and 1 more"));
}

#[test]
fn drops_groups_left_empty() {
    let input = vec![
        group(vec![span(vec![0; 16], vec![2; 8], vec![])]),
        group(vec![good_span()]),
    ];
    let out = validate_resource_spans(input, &SpanLimits::default());
    assert_eq!(out.resource_spans.len(), 1);
    assert_eq!(out.resource_spans[0].scope_spans.len(), 1);
    assert_eq!(out.rejected_spans, 1);
}

#[test]
fn zero_parent_means_root_and_end_before_start_is_kept() {
    let mut backwards = span(vec![1; 16], vec![2; 8], vec![0; 8]);
    backwards.end_time_unix_nano = 1;
    let out = validate_resource_spans(vec![group(vec![backwards])], &SpanLimits::default());
    let kept = &out.resource_spans[0].scope_spans[0].spans[0];
    assert!(kept.parent_span_id.is_empty());
    assert_eq!(kept.end_time_unix_nano, 1);
    assert_eq!(out.error_message, "");
}

#[test]
fn drops_attributes_over_the_limit_and_counts_them() {
    let mut s = good_span();
    s.attributes = (0..5)
        .map(|i| string_attribute(&format!("k{i}"), "v"))
        .collect();
    s.dropped_attributes_count = 1;
    let limits = SpanLimits {
        max_attributes_per_span: 3,
        ..SpanLimits::default()
    };
    let out = validate_resource_spans(vec![group(vec![s])], &limits);
    let kept = &out.resource_spans[0].scope_spans[0].spans[0];
    let keys: Vec<_> = kept.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["k0", "k1", "k2"]);
    assert_eq!(kept.dropped_attributes_count, 3);
    assert_eq!(out.rejected_spans, 0);
    assert!(
        out.error_message
            .contains("dropped 2 attribute(s) over max_attributes_per_span (3)")
    );
}

#[test]
fn truncates_long_values_at_char_boundaries_even_when_nested() {
    let mut s = good_span();
    s.attributes = vec![
        string_attribute("long", "ééééé"),
        KeyValue {
            key: "list".into(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("abcdefgh".into())),
                    }],
                })),
            }),
            key_strindex: 7,
        },
    ];
    let limits = SpanLimits {
        max_attribute_value_bytes: 5,
        ..SpanLimits::default()
    };
    let out = validate_resource_spans(vec![group(vec![s])], &limits);
    let kept = &out.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        kept.attributes[0].value,
        Some(AnyValue {
            value: Some(Value::StringValue("éé".into()))
        })
    );
    let Some(Value::ArrayValue(array)) = kept.attributes[1]
        .value
        .as_ref()
        .and_then(|v| v.value.clone())
    else {
        panic!("array kept");
    };
    assert_eq!(
        array.values[0].value,
        Some(Value::StringValue("abcde".into()))
    );
    assert_eq!(kept.attributes[1].key_strindex, 0);
    assert!(out.error_message.contains("truncated 2 attribute value(s)"));
}

#[test]
fn truncates_long_names_and_keys_at_a_character_boundary() {
    let mut s = good_span();
    s.name = "GET /ééééé".into();
    s.attributes = vec![
        string_attribute("http.ééé", "v"),
        string_attribute("ok", "v"),
    ];
    s.events = vec![Event {
        name: "exception.thrown".into(),
        ..Event::default()
    }];
    let limits = SpanLimits {
        max_name_bytes: 8,
        ..SpanLimits::default()
    };
    let out = validate_resource_spans(vec![group(vec![s])], &limits);
    let kept = &out.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(kept.name, "GET /é");
    let keys: Vec<_> = kept.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["http.é", "ok"]);
    assert_eq!(kept.events[0].name, "exceptio");
    assert!(
        out.error_message
            .contains("truncated 3 name(s) or attribute key(s) longer than max_name_bytes (8)"),
        "{}",
        out.error_message
    );
}

/// An array or map is one value: its elements past `max_attribute_value_bytes` in
/// total are dropped (the first kept whatever its size), nested ones too.
#[test]
fn an_array_or_map_value_keeps_its_elements_within_the_value_limit() {
    use crate::otlp::common::v1::KeyValueList;
    let text = |s: &str| AnyValue {
        value: Some(Value::StringValue(s.into())),
    };
    let array = |values: Vec<AnyValue>| AnyValue {
        value: Some(Value::ArrayValue(ArrayValue { values })),
    };
    let mut s = good_span();
    s.attributes = vec![
        KeyValue {
            key: "many".into(),
            value: Some(array(vec![text("abcdefgh"); 100_000])),
            ..KeyValue::default()
        },
        KeyValue {
            key: "map".into(),
            value: Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![string_attribute("k", "abcdefgh"); 100_000],
                })),
            }),
            ..KeyValue::default()
        },
        KeyValue {
            key: "nested".into(),
            value: Some(array(vec![array(vec![text("abcdefgh"); 1_000]); 1_000])),
            ..KeyValue::default()
        },
        KeyValue {
            key: "one".into(),
            value: Some(array(vec![text(&"x".repeat(2_000))])),
            ..KeyValue::default()
        },
    ];
    let limits = SpanLimits {
        max_attribute_value_bytes: 1_000,
        ..SpanLimits::default()
    };
    let out = validate_resource_spans(vec![group(vec![s])], &limits);
    let kept = &out.resource_spans[0].scope_spans[0].spans[0];
    for attribute in &kept.attributes[..3] {
        let bytes = attribute.value.as_ref().map_or(0, Message::encoded_len);
        assert!(
            (900..=1_100).contains(&bytes),
            "{}: {bytes} bytes kept",
            attribute.key
        );
    }
    let Some(Value::ArrayValue(one)) = kept.attributes[3].value.as_ref().and_then(|v| v.value.as_ref())
    else {
        panic!("an array");
    };
    assert_eq!(one.values.len(), 1, "the first element stays, cut");
    assert!(
        out.error_message
            .contains("truncated 6 attribute value(s) longer than max_attribute_value_bytes (1000)"),
        "{}",
        out.error_message
    );
}

/// Events and links past the span limits are dropped, the first ones kept, and the
/// span's dropped counts and the response say so (OpenTelemetry SDKs keep 128 of each).
#[test]
fn keeps_the_first_events_and_links_within_the_limits() {
    let mut s = good_span();
    s.events = (0..10)
        .map(|i| Event {
            name: format!("e{i}"),
            ..Event::default()
        })
        .collect();
    s.dropped_events_count = 1;
    s.links = (0..5u8)
        .map(|i| crate::otlp::trace::v1::span::Link {
            trace_id: vec![i + 1; 16],
            span_id: vec![i + 1; 8],
            ..Default::default()
        })
        .collect();
    let limits = SpanLimits {
        max_events_per_span: 3,
        max_links_per_span: 2,
        ..SpanLimits::default()
    };
    let out = validate_resource_spans(vec![group(vec![s])], &limits);
    let kept = &out.resource_spans[0].scope_spans[0].spans[0];
    let names: Vec<_> = kept.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["e0", "e1", "e2"]);
    assert_eq!(kept.dropped_events_count, 8);
    assert_eq!(kept.links.len(), 2);
    assert_eq!(kept.links[1].span_id, vec![2; 8]);
    assert_eq!(kept.dropped_links_count, 3);
    assert_eq!((out.limited.dropped_events, out.limited.dropped_links), (7, 3));
    assert!(
        out.error_message
            .contains("dropped 7 span event(s) over max_events_per_span (3); dropped 3 span link(s) over max_links_per_span (2)"),
        "{}",
        out.error_message
    );
}

#[test]
fn drops_spans_that_start_more_than_a_day_ahead() {
    let now = latest_start_now() - MAX_START_AHEAD.as_nanos() as u64;
    let hour = 3_600_000_000_000;
    let mut soon = good_span();
    soon.start_time_unix_nano = now + hour;
    let mut late = span(vec![1; 16], vec![3; 8], vec![]);
    late.start_time_unix_nano = now + 48 * hour;
    let mut year_2262 = span(vec![1; 16], vec![4; 8], vec![]);
    year_2262.start_time_unix_nano = u64::MAX;
    let out = validate_resource_spans(
        vec![group(vec![soon, late, year_2262])],
        &SpanLimits::default(),
    );
    assert_eq!((out.accepted_spans, out.rejected_spans), (1, 2));
    assert_eq!(
        out.resource_spans[0].scope_spans[0].spans[0].span_id,
        vec![2; 8]
    );
    assert!(
        out.error_message.contains(&format!(
            "spans[1]: start time {} (Unix ns) is more than 86400 s ahead of the collector's clock",
            now + 48 * hour
        )),
        "{}",
        out.error_message
    );
}

#[test]
fn drops_links_with_invalid_ids() {
    let mut s = good_span();
    s.links = vec![
        Link {
            trace_id: vec![1; 16],
            span_id: vec![9; 8],
            ..Link::default()
        },
        Link {
            trace_id: vec![1; 3],
            span_id: vec![9; 8],
            ..Link::default()
        },
    ];
    let out = validate_resource_spans(vec![group(vec![s])], &SpanLimits::default());
    let kept = &out.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(kept.links.len(), 1);
    assert_eq!(kept.dropped_links_count, 1);
    assert_eq!(out.rejected_spans, 0);
}
