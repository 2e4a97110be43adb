//! OTLP export requests of the ingest benchmark's shape, shared by the store's
//! benchmarks: 10-span traces, each whole in one request, 11 span attributes drawn from
//! 97 keys × 1000 values, a resource with `service.name` and two more.
// Each benchmark uses part of this.
#![allow(dead_code)]

use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::any_value::Value;
use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// Spans per trace.
pub const TRACE_SPANS: usize = 10;

/// Where a span's start falls among its trace's spans.
#[derive(Clone, Copy, Debug)]
pub enum Starts {
    /// In the order the spans come in the request.
    InOrder,
    /// In another order than the spans come (children start inside their parents'
    /// spans in no particular order, as the end-to-end benchmark's traces do).
    Shuffled,
}

fn attribute(key: String, value: Value) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// An encoded export request of spans `first..first + spans`, each trace's spans
/// next to each other.
pub fn request(first: usize, spans: usize, starts: Starts) -> Vec<u8> {
    request_of(first..first + spans, starts)
}

/// An encoded export request of spans `first..first + spans` whose traces take turns:
/// the first span of every trace, then the second of every trace, and so on (as an
/// SDK exports spans in the order they end, across traces).
pub fn interleaved_request(first: usize, spans: usize, starts: Starts) -> Vec<u8> {
    let traces = spans / TRACE_SPANS;
    let order = (0..TRACE_SPANS).flat_map(move |p| (0..traces).map(move |t| first + t * TRACE_SPANS + p));
    request_of(order, starts)
}

/// An encoded export request of the spans numbered by `indices`, in that order.
pub fn request_of(indices: impl Iterator<Item = usize>, starts: Starts) -> Vec<u8> {
    let spans = indices
        .map(|i| {
            let trace = (i / TRACE_SPANS) as u64 + 1;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&trace.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            trace_id[8..].copy_from_slice(&trace.to_be_bytes());
            let position = (i % TRACE_SPANS) as u64;
            let rank = match starts {
                Starts::InOrder => position,
                // A permutation of 0..10 (7 and 10 share no factor).
                Starts::Shuffled => (position * 7) % TRACE_SPANS as u64,
            };
            let start = 1_700_000_000_000_000_000 + trace * 1_000_000 + rank * 1000;
            Span {
                trace_id: trace_id.to_vec(),
                span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
                parent_span_id: if position == 0 {
                    vec![]
                } else {
                    (i as u64).to_be_bytes().to_vec()
                },
                name: format!("GET /api/v1/items/{}", i % 20),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 250_000,
                status: Some(Status::default()),
                attributes: (0..11)
                    .map(|a| {
                        let key = (i * 7 + a * 13) % 97;
                        let value = (i * 31 + a * 17) % 1000;
                        attribute(
                            format!("attr.key.{key}"),
                            Value::StringValue(format!("value-{value}")),
                        )
                    })
                    .collect(),
                ..Span::default()
            }
        })
        .collect();
    let resource = Resource {
        attributes: vec![
            attribute("service.name".into(), Value::StringValue("reviews".into())),
            attribute("service.version".into(), Value::StringValue("v2".into())),
            attribute("host.name".into(), Value::StringValue("node-7".into())),
        ],
        ..Resource::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "meshtel-bench".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}
