use std::collections::{HashMap, HashSet};

use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::any_value;
use meshtel_model::otlp::trace::v1::Span;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const END: u64 = 1_700_000_000_000_000_000;

fn spans(request: &ExportTraceServiceRequest) -> Vec<&Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect()
}

/// Each trace has one root, unique span ids, and every parent id names a span of the
/// same trace that starts no later than its child; times end by `END`.
fn assert_well_formed_traces(request: &ExportTraceServiceRequest, traces: usize, per_trace: usize) {
    let all = spans(request);
    assert_eq!(all.len(), traces * per_trace);
    let mut by_trace: HashMap<&[u8], Vec<&Span>> = HashMap::new();
    for span in &all {
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
        assert!(span.start_time_unix_nano < span.end_time_unix_nano, "{span:?}");
        assert!(span.end_time_unix_nano <= END);
        assert!(END - span.start_time_unix_nano < 3_000_000_000);
        by_trace.entry(&span.trace_id).or_default().push(span);
    }
    assert_eq!(by_trace.len(), traces);
    for spans in by_trace.values() {
        assert_eq!(spans.len(), per_trace);
        let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), *s)).collect();
        assert_eq!(by_id.len(), per_trace, "span ids are unique within a trace");
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        assert_eq!(roots, 1);
        for span in spans.iter().filter(|s| !s.parent_span_id.is_empty()) {
            let parent = by_id.get(span.parent_span_id.as_slice()).expect("parent in the trace");
            assert!(parent.start_time_unix_nano <= span.start_time_unix_nano);
            assert!(span.end_time_unix_nano <= parent.end_time_unix_nano);
        }
    }
    for resource in &request.resource_spans {
        let attributes = &resource.resource.as_ref().expect("resource").attributes;
        assert!(attributes.iter().any(|kv| kv.key == "service.name"));
    }
}

#[test]
fn tempo_shape_has_eleven_attributes_from_97_keys_by_1000_values() {
    let mut rng = StdRng::seed_from_u64(1);
    let request = ShapeGenerator::new(Shape::Tempo, 10).request(50, END, &mut rng);
    assert_well_formed_traces(&request, 50, 10);
    let mut keys_seen = HashSet::new();
    for span in spans(&request) {
        assert_eq!(span.attributes.len(), TEMPO_ATTRIBUTES_PER_SPAN);
        let keys: HashSet<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys.len(), TEMPO_ATTRIBUTES_PER_SPAN, "keys are distinct within a span");
        for kv in &span.attributes {
            let key: usize = kv.key.strip_prefix("attr_").expect("attr_ key").parse().expect("number");
            assert!(key < TEMPO_KEYS);
            assert_eq!(kv.key.len(), "attr_00".len());
            keys_seen.insert(key);
            let Some(any_value::Value::StringValue(value)) =
                kv.value.as_ref().and_then(|v| v.value.as_ref())
            else {
                panic!("string value expected: {kv:?}");
            };
            let value: usize = value.strip_prefix("value_").expect("value_").parse().expect("number");
            assert!(value < TEMPO_VALUES);
        }
    }
    // 500 spans × 11 draws cover almost all 97 keys.
    assert!(keys_seen.len() > 90);
}

#[test]
fn mesh_shape_has_10_to_20_attributes_and_valid_parents() {
    let mut rng = StdRng::seed_from_u64(2);
    let request = ShapeGenerator::new(Shape::Mesh, 10).request(100, END, &mut rng);
    assert_well_formed_traces(&request, 100, 10);
    let mut kinds = HashSet::new();
    for span in spans(&request) {
        assert!((10..=20).contains(&span.attributes.len()), "{} attributes", span.attributes.len());
        kinds.insert(span.kind);
        if span.parent_span_id.is_empty() {
            assert_eq!(span.kind, SpanKind::Server as i32);
            assert!(span.attributes.iter().any(|kv| kv.key == "http.route"));
        }
    }
    assert!(kinds.len() >= 3, "server, client and internal spans: {kinds:?}");
    assert!(request.resource_spans.len() > 3, "spans spread over services");
}

#[test]
fn other_trace_sizes_and_seeds_reproduce() {
    for per_trace in [1, 2, 3, 25] {
        let mut rng = StdRng::seed_from_u64(3);
        let request = ShapeGenerator::new(Shape::Mesh, per_trace).request(7, END, &mut rng);
        assert_well_formed_traces(&request, 7, per_trace);
    }
    let a = ShapeGenerator::new(Shape::Tempo, 10).request(3, END, &mut StdRng::seed_from_u64(9));
    let b = ShapeGenerator::new(Shape::Tempo, 10).request(3, END, &mut StdRng::seed_from_u64(9));
    assert_eq!(a, b);
}
