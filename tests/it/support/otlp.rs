//! OTLP spans and resources to send, with random trace and span ids.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// Now, Unix nanoseconds.
pub fn now_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// 16 random bytes with a non-zero high half (renders as 32 hex digits).
pub fn random_trace_id() -> Vec<u8> {
    let mut id: [u8; 16] = rand::random();
    id[0] |= 0x10;
    id[15] |= 1;
    id.to_vec()
}

/// A trace id whose high 8 bytes are zero (renders as 16 hex digits).
pub fn random_short_trace_id() -> Vec<u8> {
    let mut id = vec![0u8; 16];
    let low: [u8; 8] = rand::random();
    id[8..].copy_from_slice(&low);
    id[8] |= 0x10;
    id
}

/// 8 random non-zero bytes.
pub fn random_span_id() -> Vec<u8> {
    let mut id: [u8; 8] = rand::random();
    id[0] |= 0x10;
    id.to_vec()
}

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

/// One resource (`service.name`) with one scope holding `spans`.
pub fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", service)],
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "it".into(),
                ..InstrumentationScope::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// A minimal span: `name`, kind SERVER, `[start, start + duration)`.
pub fn simple_span(
    trace_id: &[u8],
    span_id: &[u8],
    parent: Option<&[u8]>,
    name: &str,
    start_ns: u64,
    duration_ns: u64,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(<[u8]>::to_vec).unwrap_or_default(),
        name: name.to_string(),
        kind: 2,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + duration_ns,
        ..Span::default()
    }
}

/// The spans an export request carries.
pub fn span_count(
    request: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}
