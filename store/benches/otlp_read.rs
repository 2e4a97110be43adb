//! Reading one OTLP export request of 500 spans into span rows, two ways: prost
//! decoding into structs then validation and encoding (the path JSON and Zipkin still
//! take), and the wire reader the protobuf ingest path uses (`store/src/wire.rs`).
//! The request has the ingest benchmark's shape: 10-span traces, 11 span attributes
//! drawn from 97 keys × 1000 values, a resource with `service.name` and two more.
//!
//! ```text
//! cargo bench -p meshtel-store --bench otlp_read
//! ```
//!
//! Prints criterion's figures, then `per span: prost N ns, wire M ns (K× faster)`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::any_value::Value;
use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use meshtel_model::validate::{SpanLimits, validate_resource_spans};
use meshtel_store::encode::encode_resource_spans;
use meshtel_store::wire::encode_export_request;
use prost::Message;

const SPANS: usize = 500;

fn attribute(key: String, value: Value) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn request() -> Vec<u8> {
    let spans = (0..SPANS)
        .map(|i| {
            let trace = (i / 10) as u8 + 1;
            Span {
                trace_id: [trace; 16].to_vec(),
                span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
                parent_span_id: if i % 10 == 0 {
                    vec![]
                } else {
                    (i as u64).to_be_bytes().to_vec()
                },
                name: format!("GET /api/v1/items/{}", i % 20),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1000,
                end_time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1000 + 250_000,
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

fn by_structs(bytes: &[u8], limits: &SpanLimits) -> usize {
    let Ok(request) = ExportTraceServiceRequest::decode(bytes) else {
        return 0;
    };
    let validated = validate_resource_spans(request.resource_spans, limits);
    encode_resource_spans(&validated.resource_spans).map_or(0, |(rows, _)| rows.batch.num_rows())
}

fn by_wire(bytes: &[u8], limits: &SpanLimits) -> usize {
    match encode_export_request(bytes, limits) {
        Ok(Some((rows, _))) => rows.batch.num_rows(),
        _ => 0,
    }
}

/// Nanoseconds per span over `rounds` reads.
fn per_span(read: impl Fn() -> usize, rounds: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(read());
    }
    started.elapsed().as_nanos() as f64 / f64::from(rounds) / SPANS as f64
}

fn main() {
    let bytes = request();
    let limits = SpanLimits::default();
    assert_eq!(by_structs(&bytes, &limits), SPANS);
    assert_eq!(by_wire(&bytes, &limits), SPANS);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("otlp_read");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("prost+validate+encode/500 spans", |b| {
        b.iter(|| by_structs(black_box(&bytes), &limits))
    });
    group.bench_function("wire/500 spans", |b| {
        b.iter(|| by_wire(black_box(&bytes), &limits))
    });
    group.finish();

    let rounds = 400;
    let structs = per_span(|| by_structs(&bytes, &limits), rounds);
    let wire = per_span(|| by_wire(&bytes, &limits), rounds);
    println!(
        "per span: prost {structs:.0} ns, wire {wire:.0} ns ({:.1}x faster; request {} bytes, {SPANS} spans)",
        structs / wire,
        bytes.len()
    );
}
