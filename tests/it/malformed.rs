//! Bad input to every ingest endpoint gets a clear error, and the server stays healthy
//! with its earlier data intact.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use crate::roundtrip::{gzip, jaeger_trace_id};
use crate::support::*;

const OTLP_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// `google.rpc.Status` without details, enough to read an OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(service, spans)],
    }
}

fn span(trace_id: &[u8], name: &str) -> Span {
    simple_span(
        trace_id,
        &random_span_id(),
        None,
        name,
        now_nanos() - 60_000_000_000,
        1_000_000,
    )
}

/// A raw gRPC call (length-prefixed frame) over HTTP/2, to send bytes tonic would not.
pub(crate) async fn raw_grpc(m: &Meshtel, payload: &[u8]) -> (u16, Option<String>, Option<String>) {
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    body.extend_from_slice(payload);
    raw_grpc_body(m, body).await
}

/// A raw gRPC call whose body is `body` as it is, frame header included.
async fn raw_grpc_body(m: &Meshtel, body: Vec<u8>) -> (u16, Option<String>, Option<String>) {
    raw_grpc_call(m, OTLP_EXPORT_PATH, body).await
}

/// A raw gRPC call of `path`: status, and grpc-status and grpc-message from the
/// headers or, after a body, the trailers.
async fn raw_grpc_call(
    m: &Meshtel,
    path: &str,
    body: Vec<u8>,
) -> (u16, Option<String>, Option<String>) {
    use http_body_util::BodyExt;
    let mut sender = h2c_connect(m.grpc.unwrap()).await;
    let request = http::Request::post(format!("http://{}{path}", m.grpc.unwrap()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.expect("raw gRPC call");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.expect("answer");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap().to_string())
    };
    (status, field("grpc-status"), field("grpc-message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ingest_requests_get_clear_errors_and_the_server_stays_healthy() {
    let dir = TestDir::new();
    let m = Meshtel::start(
        &dir,
        Role::Serve,
        &[
            "--max-request-bytes",
            "64KiB",
            "--max-spans-per-request",
            "5",
        ],
    )
    .await;

    // Data that must survive everything below.
    let kept = random_trace_id();
    export_grpc(
        m.grpc.unwrap(),
        request("survivor", vec![span(&kept, "kept")]),
    )
    .await;
    let kept_hex = jaeger_trace_id(&kept);
    wait_for_trace(&m, &kept_hex, 1).await;

    check_grpc(&m).await;
    check_otlp_http(&m).await;
    check_zipkin(&m).await;

    // Still healthy, still serving what it had, still ingesting.
    let health = get(&m.http_url("/healthz")).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    assert_eq!(get(&m.http_url("/readyz")).await.status, 200);
    assert_eq!(get(&m.http_url("/metrics")).await.status, 200);
    let trace = fetch_trace(&m, &kept_hex).await;
    assert_eq!(trace["spans"][0]["operationName"], "kept");
    let after = random_trace_id();
    export_grpc(
        m.grpc.unwrap(),
        request("survivor", vec![span(&after, "after")]),
    )
    .await;
    wait_for_trace(&m, &jaeger_trace_id(&after), 1).await;
    let services = get_json(&m.query_url("/api/services")).await;
    let mut names: Vec<&str> = services["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["partial", "survivor", "zipkin-ok"],
        "only valid spans were stored"
    );
    m.stop().await;
}

async fn check_grpc(m: &Meshtel) {
    let mut client = m.grpc_client().await;

    // grpc.health.v1 on the same port: the server is SERVING, an unknown service NOT_FOUND.
    use tonic_health::pb::health_check_response::ServingStatus;
    let addr = m.grpc.unwrap();
    let serving = grpc_health(addr, "")
        .await
        .expect("grpc.health.v1.Health/Check");
    assert_eq!(serving, ServingStatus::Serving as i32);
    let unknown = grpc_health(addr, "no.such.Service")
        .await
        .expect_err("an unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

    // Not a protobuf message.
    let (status, grpc_status, message) = raw_grpc(m, b"\xff\xff\xff\xff garbage").await;
    assert_eq!(status, 200, "gRPC errors travel in grpc-status");
    let code = grpc_status.expect("grpc-status header");
    assert_eq!(
        code,
        (tonic::Code::InvalidArgument as i32).to_string(),
        "garbage → INVALID_ARGUMENT, got {code} {message:?}"
    );

    // A message cut short by the end of its stream, and one flagged compressed with no
    // grpc-encoding: bad input too, not a server fault.
    let mut cut = vec![0u8, 0, 0, 3, 232];
    cut.extend_from_slice(&[0u8; 10]);
    let mut flagged = vec![1u8, 0, 0, 0, 2];
    flagged.extend_from_slice(&[0u8; 2]);
    for (what, body) in [("cut short", cut), ("compressed flag", flagged)] {
        let (_, grpc_status, message) = raw_grpc_body(m, body.clone()).await;
        assert_eq!(
            grpc_status.as_deref(),
            Some("3"),
            "{what} → INVALID_ARGUMENT, got {grpc_status:?} {message:?}"
        );
        // On the proxies' Report stream too, where the status comes in trailers.
        let (_, grpc_status, message) =
            raw_grpc_call(m, "/meshtel.mixer.v1.Mixer/Report", body).await;
        assert_eq!(
            grpc_status.as_deref(),
            Some("3"),
            "Report, {what} → INVALID_ARGUMENT, got {grpc_status:?} {message:?}"
        );
    }

    // Quota Checks that are not protobuf, or over [report] max_message_bytes (8 MiB),
    // never reach a handler: counted with the Report streams above, and logged.
    let (_, grpc_status, message) = raw_grpc_call(
        m,
        "/meshtel.mixer.v1.Mixer/Check",
        [&[0u8, 0, 0, 0, 9][..], b"\xff\xff\xff\xff garbage"].concat(),
    )
    .await;
    assert_eq!(grpc_status.as_deref(), Some("3"), "{message:?}");
    let mut huge = vec![0u8];
    huge.extend_from_slice(&(9u32 << 20).to_be_bytes());
    huge.resize(5 + (9 << 20), 0);
    let (_, grpc_status, message) = raw_grpc_call(m, "/meshtel.mixer.v1.Mixer/Check", huge).await;
    assert_eq!(grpc_status.as_deref(), Some("8"), "{message:?}");
    let text = get(&m.http_url("/metrics")).await.text();
    let unreadable = |reason: &str| {
        parse_prometheus_text(&text)
            .into_iter()
            .find(|s| {
                s.name == "meshtel_grpc_calls_unreadable_total" && s.has(&[("reason", reason)])
            })
            .unwrap_or_else(|| panic!("no {reason} series in\n{text}"))
            .value
    };
    assert_eq!(
        (unreadable("undecodable"), unreadable("too_large")),
        (3.0, 1.0)
    );
    let log = eventually(
        std::time::Duration::from_secs(15),
        "the refused calls' log line",
        || async {
            let log = m.log_text();
            log.contains("gRPC calls refused before their handler")
                .then_some(log)
        },
    )
    .await;
    assert!(log.contains("/meshtel.mixer.v1.Mixer/"), "{log}");

    // Over max_request_bytes: RESOURCE_EXHAUSTED (not retryable), as sent and gzipped.
    let mut big = span(&random_trace_id(), "big");
    big.attributes = vec![kv_str("pad", &"x".repeat(70 * 1024))];
    let error = client
        .export(request("oversize", vec![big.clone()]))
        .await
        .expect_err("oversize request");
    assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error:?}");
    let mut gz = m
        .grpc_client()
        .await
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let error = gz
        .export(request("oversize", vec![big]))
        .await
        .expect_err("oversize once decompressed");
    assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error:?}");

    // Too many spans: INVALID_ARGUMENT naming the limit; nothing stored.
    let trace = random_trace_id();
    let spans: Vec<Span> = (0..6).map(|i| span(&trace, &format!("s{i}"))).collect();
    let error = client
        .export(request("too-many", spans))
        .await
        .expect_err("too many spans");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().contains("max_spans_per_request"),
        "{}",
        error.message()
    );

    // Invalid ids: partial success, the valid span is stored.
    let good_trace = random_trace_id();
    let mut short_trace = span(&[1; 8], "short-trace-id");
    short_trace.trace_id = vec![1; 8];
    let zero_span = Span {
        span_id: vec![0; 8],
        ..span(&random_trace_id(), "zero-span-id")
    };
    let bad_parent = Span {
        parent_span_id: vec![1; 3],
        ..span(&random_trace_id(), "bad-parent")
    };
    let response = client
        .export(request(
            "partial",
            vec![
                short_trace,
                span(&good_trace, "good"),
                zero_span,
                bad_parent,
            ],
        ))
        .await
        .expect("partial success is not an error")
        .into_inner();
    let partial = response.partial_success.expect("partial_success set");
    assert_eq!(partial.rejected_spans, 3, "{partial:?}");
    for needle in [
        "trace id must be 16 bytes",
        "span id must not be all zeros",
        "parent span id",
    ] {
        assert!(
            partial.error_message.contains(needle),
            "{needle}: {}",
            partial.error_message
        );
    }
    wait_for_trace(m, &jaeger_trace_id(&good_trace), 1).await;

    // An empty request is a success.
    let response = client
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("empty request")
        .into_inner();
    assert_eq!(response.partial_success, None);
}

async fn check_otlp_http(m: &Meshtel) {
    let url = m.http_url("/v1/traces");
    let proto = [("content-type", "application/x-protobuf")];
    let json_ct = [("content-type", "application/json")];

    let reply = get(&url).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.text(), "405 method not allowed, supported: [POST]");
    assert_eq!(reply.headers.get("allow").unwrap(), "POST");
    assert!(reply.content_type.starts_with("text/plain"));

    let reply = post(&url, &[("content-type", "text/plain")], b"hello".to_vec()).await;
    assert_eq!(reply.status, 415, "{}", reply.text());
    let reply = post(&url, &[], b"hello".to_vec()).await;
    assert_eq!(reply.status, 415, "no content type: {}", reply.text());

    // Undecodable protobuf: 400 with a google.rpc.Status in protobuf.
    let reply = post(&url, &proto, b"\xff\xff\xff\xff garbage".to_vec()).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.content_type, "application/x-protobuf");
    let status = RpcStatus::decode(reply.body.as_slice()).expect("a Status body");
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(!status.message.is_empty());

    // Undecodable JSON: 400 with a JSON Status.
    let reply = post(&url, &json_ct, b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.content_type, "application/json");
    let body = reply.json();
    assert_eq!(body["code"], 3, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    let reply = post(&url, &json_ct, b"[1,2,3]".to_vec()).await;
    assert_eq!(reply.status, 400, "{}", reply.text());

    // Too large as sent, and a gzip bomb too large once inflated.
    let reply = post(&url, &proto, vec![0u8; 65 * 1024]).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    // Far too large, from a client that sends its whole body before it reads: the 413
    // comes before the body is read, and the server reads on before it closes, so the
    // client's writes succeed and the answer is not lost to a reset.
    let answer = send_whole_then_read(&url, "application/x-protobuf", 8 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let bomb = gzip(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 64 * 1024, "the bomb itself is under the limit");
    let reply = post(&url, &[json_ct[0], ("content-encoding", "gzip")], bomb).await;
    assert_eq!(reply.status, 413, "gzip bomb: {}", reply.text());
    let reply = post(
        &url,
        &[json_ct[0], ("content-encoding", "gzip")],
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 400, "corrupt gzip: {}", reply.text());
    let reply = post(
        &url,
        &[json_ct[0], ("content-encoding", "br")],
        b"{}".to_vec(),
    )
    .await;
    assert!(
        matches!(reply.status, 400 | 415),
        "unknown encoding: {}",
        reply.text()
    );

    // Too many spans.
    let trace = random_trace_id();
    let spans: Vec<Span> = (0..6).map(|i| span(&trace, &format!("s{i}"))).collect();
    let reply = post(&url, &proto, request("too-many", spans).encode_to_vec()).await;
    assert_eq!(reply.status, 400);
    let status = RpcStatus::decode(reply.body.as_slice()).unwrap();
    assert!(
        status.message.contains("max_spans_per_request"),
        "{}",
        status.message
    );

    // Invalid ids in JSON: partial success with rejectedSpans as a decimal string.
    let good = random_trace_id();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "partial"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "00000000000000000000000000000000", "spanId": "0102030405060708", "name": "zero",
             "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
            {"traceId": hex::encode(&good), "spanId": "0102030405060708", "name": "good", "kind": "SPAN_KIND_SERVER",
             "startTimeUnixNano": (now_nanos() - 1_000_000_000).to_string(), "endTimeUnixNano": now_nanos().to_string()}
        ]}]
    }]});
    let reply = post(&url, &json_ct, serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let response = reply.json();
    assert_eq!(
        response["partialSuccess"]["rejectedSpans"], "1",
        "{response}"
    );
    assert!(
        response["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("trace id")
    );
    let trace = wait_for_trace(m, &jaeger_trace_id(&good), 1).await;
    assert_eq!(
        trace["spans"][0]["tags"][0],
        json!({"key": "span.kind", "type": "string", "value": "server"}),
        "enum names are accepted"
    );

    // Empty requests succeed.
    let reply = post(&url, &json_ct, b"{}".to_vec()).await;
    assert_eq!((reply.status, reply.json()), (200, json!({})));
    let reply = post(&url, &proto, Vec::new()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty(), "an empty ExportTraceServiceResponse");
}

async fn check_zipkin(m: &Meshtel) {
    let url = m.zipkin_url();
    let json_ct = [("content-type", "application/json")];
    let ok_trace = hex::encode(random_trace_id());
    let zspan = |trace: &str, id: &str| {
        json!({"traceId": trace, "id": id, "name": "z", "timestamp": now_nanos() / 1_000 - 1_000_000,
               "duration": 10, "localEndpoint": {"serviceName": "zipkin-ok"}})
    };
    let bad = |body: Value| serde_json::to_vec(&body).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated JSON", b"[{\"traceId\":".to_vec(), ""),
        ("not an array", bad(json!({"traceId": ok_trace})), ""),
        (
            "upper-case trace id",
            bad(json!([zspan(&ok_trace.to_uppercase(), "0102030405060708")])),
            "traceId",
        ),
        (
            "all-zero trace id",
            bad(json!([zspan("0000000000000000", "0102030405060708")])),
            "traceId",
        ),
        (
            "33-digit trace id",
            bad(json!([zspan(&format!("{ok_trace}1"), "0102030405060708")])),
            "traceId",
        ),
        (
            "non-hex span id",
            bad(json!([zspan(&ok_trace, "01020304050607zz")])),
            "id",
        ),
        (
            "missing id",
            bad(json!([{"traceId": ok_trace, "name": "x"}])),
            "id",
        ),
        (
            "non-string tag",
            bad(json!([{"traceId": ok_trace, "id": "0102030405060708", "tags": {"n": 1}}])),
            "n",
        ),
    ];
    for (what, body, needle) in cases {
        let reply = post(&url, &json_ct, body).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert!(reply.content_type.starts_with("text/plain"), "{what}");
        assert!(!reply.text().trim().is_empty(), "{what}: an explanation");
        assert!(reply.text().contains(needle), "{what}: {}", reply.text());
    }
    let reply = post(
        &url,
        &[("content-type", "application/x-protobuf")],
        vec![1, 2, 3],
    )
    .await;
    // Not a protobuf ListOfSpans.
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.content_type.starts_with("text/plain"));
    assert!(!reply.text().trim().is_empty(), "an explanation");
    let reply = get(&url).await;
    assert_eq!(reply.status, 405);
    let too_many: Vec<Value> = (1..=6)
        .map(|i| zspan(&ok_trace, &format!("{i:016x}")))
        .collect();
    let reply = post(&url, &json_ct, bad(json!(too_many))).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = post(&url, &json_ct, vec![b' '; 65 * 1024]).await;
    assert_eq!(reply.status, 413);
    let bomb = gzip(&vec![b' '; 4 << 20]);
    let reply = post(&url, &[json_ct[0], ("content-encoding", "gzip")], bomb).await;
    assert_eq!(reply.status, 413);

    // Nothing of the above was stored; a valid gzip upload is.
    let reply = post(
        &url,
        &[json_ct[0], ("content-encoding", "gzip")],
        gzip(&bad(json!([zspan(&ok_trace, "0102030405060708")]))),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let trace = wait_for_trace(m, &ok_trace, 1).await;
    assert_eq!(trace["spans"][0]["spanID"], "0102030405060708");
}

/// POSTs `len` bytes to `url` over a raw connection, writing the whole request before
/// reading anything, and returns the answer as text.
async fn send_whole_then_read(url: &str, content_type: &str, len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: {content_type}\r\ncontent-length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let sent = stream.write_all(&vec![0u8; len]).await;
    assert!(sent.is_ok(), "the body could not be sent: {sent:?}");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("answered in time");
    assert!(read.is_ok(), "{read:?}");
    String::from_utf8_lossy(&answer).into_owned()
}
