//! Text that is not UTF-8 in one span (a string cut in the middle of a character, as
//! JavaScript's `JSON.stringify` writes it, or raw bytes in a protobuf string) costs
//! that text, repaired with U+FFFD, not the whole request: every span is stored, and
//! OTLP answers say so in their partial success.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use crate::malformed::raw_grpc;
use crate::roundtrip::jaeger_trace_id;
use crate::support::*;

const REPLACED: &str = "\u{fffd}";

/// A trace of two spans, the second named `bad @@` and tagged `label=Hi @@`, where the
/// caller turns `@@` into broken text.
fn spans(trace_id: &[u8]) -> Vec<Span> {
    let start = now_nanos() - 60_000_000_000;
    let good = simple_span(trace_id, &random_span_id(), None, "good", start, 1_000_000);
    let mut bad = simple_span(
        trace_id,
        &random_span_id(),
        None,
        "bad @@",
        start,
        1_000_000,
    );
    bad.attributes.push(kv_str("label", "Hi @@"));
    vec![good, bad]
}

fn request(trace_id: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("broken-text", spans(trace_id))],
    }
}

/// `bytes` with every `@@` replaced by `with`, which is as long.
fn replace_markers(mut bytes: Vec<u8>, with: &[u8; 2]) -> Vec<u8> {
    while let Some(at) = bytes.windows(2).position(|w| w == b"@@") {
        bytes[at..at + 2].copy_from_slice(with);
    }
    bytes
}

/// Waits for both spans, and checks the broken one's name and tag came out repaired.
async fn check_stored(m: &Meshtel, trace_id: &[u8], name: &str, label: &str) {
    let trace = wait_for_trace(m, &jaeger_trace_id(trace_id), 2).await;
    let spans = trace["spans"].as_array().unwrap();
    let bad = spans
        .iter()
        .find(|s| s["operationName"] != "good")
        .expect("the broken span");
    assert_eq!(bad["operationName"], name, "{bad}");
    let tag = bad["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "label")
        .expect("the label tag");
    assert_eq!(tag["value"], label, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_is_repaired_and_no_span_is_lost() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let json_ct = [("content-type", "application/json")];

    // OTLP/HTTP JSON: a lone surrogate escape in the tag, a byte that is not UTF-8 in
    // the name (`\uD83D` is half of an emoji's escape pair).
    let trace = random_trace_id();
    let body = serde_json::to_vec(&crate::roundtrip::otlp_json(&request(&trace))).unwrap();
    let body = String::from_utf8(body)
        .unwrap()
        .replacen("Hi @@", "Hi \\uD83D", 1);
    let body = replace_markers(body.into_bytes(), b"\xe9!");
    let reply = post(&m.http_url("/v1/traces"), &json_ct, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer: Value = reply.json();
    let warning = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(
        warning.contains("U+FFFD") && warning.contains("2 place(s)"),
        "{answer}"
    );
    assert_eq!(
        answer["partialSuccess"].get("rejectedSpans"),
        None,
        "{answer}"
    );
    check_stored(
        &m,
        &trace,
        &format!("bad {REPLACED}!"),
        &format!("Hi {REPLACED}"),
    )
    .await;

    // OTLP/HTTP protobuf and gRPC: a byte that is not UTF-8 in both strings.
    let trace = random_trace_id();
    let body = replace_markers(request(&trace).encode_to_vec(), b"\xff!");
    let reply = post(
        &m.http_url("/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = ExportTraceServiceResponse::decode(reply.body.as_slice()).unwrap();
    let partial = answer.partial_success.expect("a warning");
    assert_eq!(partial.rejected_spans, 0);
    assert!(
        partial.error_message.contains("2 string(s) with U+FFFD"),
        "{}",
        partial.error_message
    );
    let name = format!("bad {REPLACED}!");
    check_stored(&m, &trace, &name, &format!("Hi {REPLACED}!")).await;

    let trace = random_trace_id();
    let (status, grpc_status, message) = raw_grpc(
        &m,
        &replace_markers(request(&trace).encode_to_vec(), b"\xc3("),
    )
    .await;
    assert_eq!(
        (status, grpc_status.as_deref()),
        (200, Some("0")),
        "{message:?}"
    );
    check_stored(
        &m,
        &trace,
        &format!("bad {REPLACED}("),
        &format!("Hi {REPLACED}("),
    )
    .await;

    // Zipkin JSON: the tag cut in the middle of an emoji, as a browser writes it.
    let trace = random_trace_id();
    let trace_hex = hex::encode(&trace);
    let zspan = |id: &str, name: &str, tags: Value| {
        json!({"traceId": trace_hex, "id": id, "name": name,
               "timestamp": now_nanos() / 1_000 - 1_000_000, "duration": 10,
               "localEndpoint": {"serviceName": "broken-zipkin"}, "tags": tags})
    };
    let body = serde_json::to_string(&json!([
        zspan("00000000000000a1", "good", json!({})),
        zspan("00000000000000a2", "bad", json!({"label": "Hi @@"})),
    ]))
    .unwrap()
    .replacen("Hi @@", "Hi \\ud83d", 1);
    let reply = post(&m.zipkin_url(), &json_ct, body.into_bytes()).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    check_stored(&m, &trace, "bad", &format!("Hi {REPLACED}")).await;

    // A valid surrogate pair is read as its character, not repaired.
    let trace = random_trace_id();
    let body = serde_json::to_vec(&crate::roundtrip::otlp_json(&request(&trace))).unwrap();
    let body = String::from_utf8(body)
        .unwrap()
        .replace("@@", "\\uD83D\\uDE00");
    let reply = post(&m.http_url("/v1/traces"), &json_ct, body.into_bytes()).await;
    assert_eq!((reply.status, reply.json()), (200, json!({})));
    check_stored(&m, &trace, "bad \u{1f600}", "Hi \u{1f600}").await;
    m.stop().await;
}
