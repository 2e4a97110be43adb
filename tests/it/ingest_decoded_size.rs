//! Requests that would take far more memory once read than on the wire are refused
//! before they are held: one of empty messages (each a struct of a hundred bytes from
//! two), and one whose spans would each hold their own copy of a large resource or
//! scope name.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;

use crate::ingest_refusals::{many_small_spans, refused_count};
use crate::support::*;

/// `meshtel_store_spans_written_total` once it reaches `at_least` (within 10 s).
async fn spans_written_reaching(m: &Meshtel, at_least: f64) -> f64 {
    eventually(
        std::time::Duration::from_secs(10),
        "spans counted",
        || async {
            let text = get(&m.http_url("/metrics")).await.text();
            parse_prometheus_text(&text)
                .iter()
                .find(|s| s.name == "meshtel_store_spans_written_total")
                .map(|s| s.value)
                .filter(|&v| v >= at_least)
        },
    )
    .await
}

/// One group of `spans` small spans of one trace under a resource of `attributes`
/// attributes of 60,000 bytes each (within the attribute limits), and its spans.
fn wide_resource_over(service: &str, spans: usize, attributes: usize) -> (ResourceSpans, Vec<Span>) {
    let trace_id = random_trace_id();
    let start = now_nanos() - 60_000_000_000;
    let spans: Vec<_> = (0..spans)
        .map(|_| simple_span(&trace_id, &random_span_id(), None, "s", start, 1_000))
        .collect();
    let mut group = resource_spans(service, spans.clone());
    let resource = group.resource.as_mut().unwrap();
    resource
        .attributes
        .extend((0..attributes).map(|i| kv_str(&format!("k{i}"), &"v".repeat(60_000))));
    (group, spans)
}

/// `spans` as OTLP/JSON spans (ids, name, times).
fn json_spans(spans: &[Span]) -> Vec<serde_json::Value> {
    spans
        .iter()
        .map(|span| {
            serde_json::json!({
                "traceId": hex::encode(&span.trace_id),
                "spanId": hex::encode(&span.span_id),
                "name": "s",
                "startTimeUnixNano": span.start_time_unix_nano.to_string(),
                "endTimeUnixNano": span.end_time_unix_nano.to_string(),
            })
        })
        .collect()
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_empty_messages_is_refused_before_it_is_decoded() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    // Four million empty resource groups: 8 MB on the wire, over 400 MB as prost's
    // structs, and each an entry of the wire reader's index.
    let mut empty_groups = Vec::with_capacity(8 << 20);
    for _ in 0..4_000_000 {
        empty_groups.extend_from_slice(&[0x0a, 0x00]);
    }
    // One span whose attribute holds an array of two million `true`s: 8 MB, and
    // prost's structs for it (the wire reader leaves such a span to prost) over 300 MB.
    let trace_id = random_trace_id();
    let mut span = simple_span(&trace_id, &random_span_id(), None, "s", now_nanos(), 1_000);
    let trues = vec![
        AnyValue {
            value: Some(Value::BoolValue(true))
        };
        2_000_000
    ];
    span.attributes
        .push(kv("list", Value::ArrayValue(ArrayValue { values: trues })));
    let array = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("arrays", vec![span])],
    }
    .encode_to_vec();
    // One span of two million empty attributes: 4 MB, and a struct of each.
    let mut span = simple_span(&trace_id, &random_span_id(), None, "s", now_nanos(), 1_000);
    span.attributes = vec![KeyValue::default(); 2_000_000];
    let empty_attributes = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("attributes", vec![span])],
    }
    .encode_to_vec();
    let before = peak_rss(m.pid());
    let requests = [
        (&empty_groups, "application/x-protobuf", false),
        (&empty_groups, "", true),
        (&array, "application/x-protobuf", false),
        (&empty_attributes, "application/x-protobuf", false),
    ];
    for (body, content_type, grpc) in requests {
        let status = if grpc {
            let request = ExportTraceServiceRequest::decode(&body[..]).unwrap();
            let status = m.grpc_client().await.export(request).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            status.message().to_string()
        } else {
            let reply = post(
                &m.http_url("/v1/traces"),
                &[("content-type", content_type)],
                body.clone(),
            )
            .await;
            assert_eq!(reply.status, 400, "{}", reply.text());
            reply.text()
        };
        assert!(status.contains("empty or near-empty messages"), "{status}");
    }
    let rose = peak_rss(m.pid()).saturating_sub(before);
    assert!(
        rose < 200 << 20,
        "peak resident memory rose by {} MiB",
        rose >> 20
    );
    // The server goes on taking ordinary requests, small ones and ones large enough
    // to be read on a blocking thread.
    for spans in [10, 30_000] {
        let body = many_small_spans(spans).encode_to_vec();
        assert!(spans == 10 || body.len() > 1 << 20, "{}", body.len());
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            body,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let written = spans_written_reaching(&m, 30_010.0).await;
    assert_eq!(written, 30_010.0);
    m.stop().await;
}

/// A resource of 100 attributes of 60,000 bytes (each within the attribute limits) over
/// 1,500 spans: 6 MB on the wire, 9 GB if every stored span held its copy. Before, the
/// collector tried, and died (or took all the machine's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_that_would_repeat_a_large_resource_are_refused_before_they_are_held() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let (group, spans) = wide_resource_over("wide", 1_500, 100);
    let request = ExportTraceServiceRequest {
        resource_spans: vec![group],
    };
    let body = request.encode_to_vec();
    assert!(body.len() < 8 << 20, "within max_request_bytes: {}", body.len());
    // The same amplification through a scope name, on OTLP/JSON (read through structs).
    let json_spans = json_spans(&spans);
    let json = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "wide"}}
        ]},
        "scopeSpans": [{"scope": {"name": "n".repeat(6_000_000)}, "spans": json_spans}],
    }]})
    .to_string();

    let before = peak_rss(m.pid());
    for (content_type, body) in [
        ("application/x-protobuf", body),
        ("application/json", json.into_bytes()),
    ] {
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", content_type)],
            body,
        )
        .await;
        assert_eq!(reply.status, 413, "{content_type}: {}", reply.text());
        assert!(reply.headers.get("retry-after").is_none());
        let text = reply.text();
        assert!(
            text.contains("resource's attributes") && text.contains("store.max_queued_bytes"),
            "{content_type}: {text}"
        );
    }
    let status = m
        .grpc_client()
        .await
        .export(request)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.details().is_empty(), "no RetryInfo: {status:?}");
    let rose = peak_rss(m.pid()).saturating_sub(before);
    assert!(
        rose < 200 << 20,
        "peak resident memory rose by {} MiB",
        rose >> 20
    );
    assert_eq!(refused_count(&m, "otlp_http", "too_large").await, 2.0);
    assert_eq!(refused_count(&m, "otlp_grpc", "too_large").await, 1.0);
    // Nothing was stored, and the server goes on taking ordinary requests.
    export_grpc(m.grpc.unwrap(), many_small_spans(10)).await;
    let written = spans_written_reaching(&m, 1.0).await;
    assert_eq!(written, 10.0);
    m.stop().await;
}

/// An OTLP/JSON body of 7 million zeros in an unknown field: 14 MB, 14 KB gzipped,
/// about 500 MB once parsed. The in-flight budget counted only its two objects, so
/// fourteen such requests at once took the collector past 6 GB; it is now charged
/// with what the numbers parse into, more than the whole budget, and refused for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_of_numbers_is_charged_for_what_it_parses_into() {
    use std::io::Write;
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let mut body = String::with_capacity(15 << 20);
    body.push_str(r#"{"resourceSpans":[],"x":["#);
    body.push_str(&vec!["0"; 7_000_000].join(","));
    body.push_str("]}");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).unwrap();
    let gzipped = encoder.finish().unwrap();
    let before = peak_rss(m.pid());
    let url = m.http_url("/v1/traces");
    let replies = futures::future::join_all((0..4).map(|_| {
        post(
            &url,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            gzipped.clone(),
        )
    }))
    .await;
    for reply in replies {
        assert_eq!(reply.status, 413, "{}", reply.text());
        assert!(
            reply.text().contains("max_inflight_bytes"),
            "{}",
            reply.text()
        );
    }
    let rose = peak_rss(m.pid()).saturating_sub(before);
    assert!(
        rose < 200 << 20,
        "peak resident memory rose by {} MiB",
        rose >> 20
    );
    export_grpc(m.grpc.unwrap(), many_small_spans(10)).await;
    m.stop().await;
}

/// Sixteen gzipped requests at once, each a resource of 1.5 MB over 40 spans: 60 MB of
/// rows apiece once read, within the bound one request has, from a body of a few
/// kilobytes. Read all at once they took gigabytes (protobuf: 1.2 GB); each now takes
/// its rows' room in the write queue before building them, and those that find no room
/// are told to retry. The same for OTLP/JSON, whose spans are read through structs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_that_grow_when_read_wait_for_room_in_the_write_queue() {
    let (group, spans) = wide_resource_over("grows", 40, 25);
    let protobuf = ExportTraceServiceRequest {
        resource_spans: vec![group],
    }
    .encode_to_vec();
    let json_spans = json_spans(&spans);
    let mut attributes = vec![serde_json::json!({"key": "service.name", "value": {"stringValue": "grows"}})];
    attributes.extend((0..25).map(|i| {
        serde_json::json!({"key": format!("k{i}"), "value": {"stringValue": "v".repeat(60_000)}})
    }));
    let json = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": attributes},
        "scopeSpans": [{"spans": json_spans}],
    }]})
    .to_string();
    // Without the room taken first: 1,198 and 760 MiB. Parsing JSON takes up to
    // `ingest.max_inflight_bytes` (384 MiB) by itself. Each request stored holds its
    // 60 MB of rows in the head and again while written to the WAL: 120-140 MiB
    // (protobuf) and 150-170 MiB (JSON) apiece; the bounds are for two stored (the
    // usual), and grow by that much for each stored past two (a flush between them
    // frees the head on a slow machine).
    for (content_type, body, bound_mib, per_extra_mib) in [
        ("application/x-protobuf", protobuf, 400, 150),
        ("application/json", json.into_bytes(), 560, 180),
    ] {
        grow_all_at_once(content_type, &body, bound_mib, per_extra_mib).await;
    }
}

/// Sends `body` gzipped sixteen times at once to a new server: each is stored or told
/// to retry, and the server's peak memory rises by less than `bound_mib`, plus
/// `per_extra_mib` for each request stored past two.
async fn grow_all_at_once(content_type: &str, body: &[u8], bound_mib: u64, per_extra_mib: u64) {
    use std::io::Write;
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    let gzipped = encoder.finish().unwrap();
    assert!(gzipped.len() < 16 << 10, "{content_type}: {}", gzipped.len());

    let before = peak_rss(m.pid());
    let url = m.http_url("/v1/traces");
    let headers = [("content-type", content_type), ("content-encoding", "gzip")];
    let replies =
        futures::future::join_all((0..16).map(|_| post(&url, &headers, gzipped.clone()))).await;
    let rose = peak_rss(m.pid()).saturating_sub(before);
    let mut stored = 0;
    for reply in &replies {
        match reply.status {
            200 => stored += 1,
            // The write queue's room, the head filled by those stored, or (JSON) the
            // bytes in flight while parsed.
            503 => {
                assert!(reply.headers.get("retry-after").is_some(), "{:?}", reply.headers);
                let text = reply.text();
                assert!(
                    ["max_queued_bytes", "max_head_bytes", "max_inflight_bytes"]
                        .iter()
                        .any(|bound| text.contains(bound)),
                    "{content_type}: {text}"
                );
            }
            status => panic!("{content_type}: {status}: {}", reply.text()),
        }
    }
    assert!(stored >= 1, "{content_type}: none stored");
    eprintln!("{content_type}: {stored} of 16 stored, peak resident memory rose by {} MiB", rose >> 20);
    let bound_mib = bound_mib + per_extra_mib * (stored as u64).saturating_sub(2);
    assert!(
        rose < bound_mib << 20,
        "{content_type}: peak resident memory rose by {} MiB",
        rose >> 20
    );
    let written = spans_written_reaching(&m, f64::from(stored * 40)).await;
    assert_eq!(written, f64::from(stored * 40));
    m.stop().await;
}
