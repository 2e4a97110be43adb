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

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Starts, request};
use criterion::{Criterion, Throughput};
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::validate::{SpanLimits, validate_resource_spans};
use meshtel_store::encode::encode_resource_spans;
use meshtel_store::wire::encode_export_request;
use prost::Message;

const SPANS: usize = 500;

fn by_structs(bytes: &[u8], limits: &SpanLimits) -> usize {
    let Ok(request) = ExportTraceServiceRequest::decode(bytes) else {
        return 0;
    };
    let validated = validate_resource_spans(request.resource_spans, limits);
    encode_resource_spans(&validated.resource_spans, u64::MAX).map_or(0, |(rows, _)| rows.batch.num_rows())
}

fn by_wire(bytes: &[u8], limits: &SpanLimits) -> usize {
    match encode_export_request(bytes, limits, u64::MAX) {
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
    let bytes = request(0, SPANS, Starts::InOrder);
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
