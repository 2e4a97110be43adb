//! What ingest refuses: a request larger than the whole WAL write queue is refused for
//! good (413 / `RESOURCE_EXHAUSTED`, no retry hint), and every refusal is counted in
//! `meshtel_ingest_refused_total{protocol,reason}` (rejected spans in
//! `meshtel_ingest_spans_rejected_total{protocol}`) and logged at most once per 10 s
//! per protocol and reason.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::support::*;

/// Many spans with little in them: a small protobuf request whose WAL record (one
/// Arrow row per span, every column) is several times larger.
pub(crate) fn many_small_spans(count: usize) -> ExportTraceServiceRequest {
    let trace_id = random_trace_id();
    let start = now_nanos() - 60_000_000_000;
    let spans = (0..count)
        .map(|_| simple_span(&trace_id, &random_span_id(), None, "s", start, 1_000))
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("big", spans)],
    }
}

async fn gauge_value(m: &Meshtel, name: &str) -> f64 {
    let text = get(&m.http_url("/metrics")).await.text();
    parse_prometheus_text(&text)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .value
}

pub(crate) async fn refused_count(m: &Meshtel, protocol: &str, reason: &str) -> f64 {
    let text = get(&m.http_url("/metrics")).await.text();
    parse_prometheus_text(&text)
        .into_iter()
        .find(|s| {
            s.name == "meshtel_ingest_refused_total"
                && s.has(&[("protocol", protocol), ("reason", reason)])
        })
        .unwrap_or_else(|| panic!("no {protocol}/{reason} series in\n{text}"))
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_whole_write_queue_is_refused_for_good() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(
        &dir,
        "[store]\nmax_queued_bytes = \"256 KiB\"\n[ingest]\nmax_request_bytes = \"256 KiB\"\n",
    )
    .await;
    let request = many_small_spans(4_000);
    let body = request.encode_to_vec();
    assert!(body.len() < 256 << 10, "the request fits max_request_bytes");

    // Twice: an idle server answers the same, and never with a retry hint.
    for _ in 0..2 {
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            body.clone(),
        )
        .await;
        assert_eq!(reply.status, 413, "{}", reply.text());
        assert!(reply.headers.get("retry-after").is_none());
        assert!(
            reply.text().contains("store.max_queued_bytes"),
            "{}",
            reply.text()
        );
    }
    let status = m
        .grpc_client()
        .await
        .export(request)
        .await
        .expect_err("too large for the queue");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.details().is_empty(), "no RetryInfo: {status:?}");
    assert!(
        status.message().contains("store.max_queued_bytes"),
        "{status:?}"
    );

    assert_eq!(refused_count(&m, "otlp_http", "too_large").await, 2.0);
    assert_eq!(refused_count(&m, "otlp_grpc", "too_large").await, 1.0);
    assert_eq!(refused_count(&m, "otlp_http", "overloaded").await, 0.0);
    // A request that fits is still taken.
    export_grpc(m.grpc.unwrap(), many_small_spans(10)).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_and_rejected_spans_are_counted_and_logged_sparingly() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--max-request-bytes", "64KiB"]).await;
    for _ in 0..5 {
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", "text/plain")],
            b"x".to_vec(),
        )
        .await;
        assert_eq!(reply.status, 415);
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", "application/json")],
            b"{\"resourceSpans\":[{".to_vec(),
        )
        .await;
        assert_eq!(reply.status, 400);
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            vec![0u8; 70_000],
        )
        .await;
        assert_eq!(reply.status, 413);
        let reply = post(
            &m.zipkin_url(),
            &[("content-type", "application/json")],
            br#"[{"id":"0000000000000000","traceId":"5af7183fb1d4cf70"}]"#.to_vec(),
        )
        .await;
        assert_eq!(reply.status, 400, "{}", reply.text());
    }
    // Over max_request_bytes on gRPC: refused by tonic, before the handler.
    let status = m
        .grpc_client()
        .await
        .export(many_small_spans(4_000))
        .await
        .expect_err("over max_request_bytes");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    // A span three days ahead: accepted request, one span rejected (partial_success).
    let mut ahead = many_small_spans(2);
    let span = &mut ahead.resource_spans[0].scope_spans[0].spans[0];
    span.start_time_unix_nano = now_nanos() + 3 * 86_400_000_000_000;
    span.end_time_unix_nano = span.start_time_unix_nano + 1_000;
    let response = m
        .grpc_client()
        .await
        .export(ahead)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.partial_success.unwrap().rejected_spans, 1);
    // A span name over max_name_bytes (1 KiB) is cut, told to the client and counted.
    let mut long_name = many_small_spans(1);
    long_name.resource_spans[0].scope_spans[0].spans[0].name = "n".repeat(1_500);
    let response = m
        .grpc_client()
        .await
        .export(long_name)
        .await
        .unwrap()
        .into_inner();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 0);
    assert!(
        partial.error_message.contains("max_name_bytes"),
        "{partial:?}"
    );

    assert_eq!(
        refused_count(&m, "otlp_http", "unsupported_media_type").await,
        5.0
    );
    assert_eq!(refused_count(&m, "otlp_http", "bad_request").await, 5.0);
    assert_eq!(refused_count(&m, "otlp_http", "too_large").await, 5.0);
    assert_eq!(refused_count(&m, "zipkin", "bad_request").await, 5.0);
    assert_eq!(refused_count(&m, "otlp_grpc", "too_large").await, 1.0);
    let text = get(&m.http_url("/metrics")).await.text();
    let rejected = parse_prometheus_text(&text)
        .into_iter()
        .find(|s| {
            s.name == "meshtel_ingest_spans_rejected_total" && s.has(&[("protocol", "otlp_grpc")])
        })
        .unwrap_or_else(|| panic!("no rejected spans series in\n{text}"));
    assert_eq!(rejected.value, 1.0);
    // Spans of a request refused as a whole are not also spans rejected.
    let zipkin_rejected = parse_prometheus_text(&text)
        .into_iter()
        .find(|s| {
            s.name == "meshtel_ingest_spans_rejected_total" && s.has(&[("protocol", "zipkin")])
        })
        .unwrap_or_else(|| panic!("no zipkin rejected spans series in\n{text}"));
    assert_eq!(zipkin_rejected.value, 0.0);
    let limited = |limit: &str| {
        parse_prometheus_text(&text)
            .into_iter()
            .find(|s| {
                s.name == "meshtel_ingest_attributes_limited_total"
                    && s.has(&[("protocol", "otlp_grpc"), ("limit", limit)])
            })
            .unwrap_or_else(|| panic!("no {limit} series in\n{text}"))
            .value
    };
    assert_eq!(limited("max_name_bytes"), 1.0);
    assert_eq!(limited("max_attributes_per_span"), 0.0);

    // Five refusals of each kind within 10 s: one line each.
    let log = m.log_text();
    let lines = |reason: &str| {
        log.lines()
            .filter(|l| l.contains("ingest requests refused"))
            .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
            .filter(|l| l.contains("protocol=\"otlp_http\""))
            .count()
    };
    assert_eq!(lines("unsupported_media_type"), 1, "{log}");
    assert_eq!(lines("bad_request"), 1, "{log}");
    assert_eq!(lines("too_large"), 1, "{log}");
    m.stop().await;
}

/// A refused request's offending value is repeated cut short: a 4 MB `kind` (OTLP/JSON)
/// or `traceId` (Zipkin) gives a short 400 and a short log line, not 4 MB of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_value_is_cut_in_the_answer_and_the_log() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let long = "K".repeat(4_000_000);
    let otlp = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a","kind":"{long}"}}]}}]}}]}}"#
    );
    let zipkin = format!(r#"[{{"traceId":"{}","id":"1"}}]"#, long.to_lowercase());
    let json = [("content-type", "application/json")];
    let reply = post(&m.http_url("/v1/traces"), &json, otlp.into_bytes()).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.len() < 400, "{} bytes", reply.body.len());
    assert!(reply.text().contains("spans[0].kind"), "{}", reply.text());
    let reply = post(&m.zipkin_url(), &json, zipkin.into_bytes()).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.len() < 300, "{} bytes", reply.body.len());
    assert!(
        reply
            .text()
            .starts_with("no span stored: spans[0].traceId: \"kkkk"),
        "{}",
        reply.text()
    );
    let log = eventually(
        std::time::Duration::from_secs(5),
        "both refusals are logged",
        || async {
            let log = m.log_text();
            let refused = log
                .lines()
                .filter(|l| l.contains("ingest requests refused"));
            (refused.count() >= 2).then_some(log)
        },
    )
    .await;
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2_000, "a log line of {longest} bytes");
    m.stop().await;
}

/// A Zipkin JSON list of `count` spans.
fn zipkin_spans(count: usize) -> Vec<u8> {
    let start_us = now_nanos() / 1_000 - 60_000_000;
    let spans: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"traceId":"5af7183fb1d4cf{:02x}","id":"{:016x}","name":"s","timestamp":{start_us},"duration":1,"localEndpoint":{{"serviceName":"z"}}}}"#,
                i % 200,
                i + 1
            )
        })
        .collect();
    format!("[{}]", spans.join(",")).into_bytes()
}

/// `[ingest] max_inflight_bytes` bounds the request bytes held at once across the three
/// ingest servers: while slow uploads hold most of it, a larger request on any of them
/// is refused with 503 / `UNAVAILABLE` and a retry delay (counted as overloaded), a
/// small one is still taken, and once the uploads end the larger one is taken too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bytes_in_flight_are_bounded_across_the_ingest_servers() {
    use std::io::Write as _;

    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(
        &dir,
        "[ingest]\nmax_request_bytes = \"1MiB\"\nmax_inflight_bytes = \"2112KiB\"\n",
    )
    .await;

    // Two clients that each declare 1,000,000 bytes, send 950,000 and then stall.
    let stalled = || {
        let mut slow = std::net::TcpStream::connect(m.http.unwrap()).unwrap();
        slow.write_all(
            b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n\
              Content-Length: 1000000\r\n\r\n",
        )
        .unwrap();
        slow.write_all(&vec![0u8; 950_000]).unwrap();
        slow.flush().unwrap();
        slow
    };
    let slow = [stalled(), stalled()];

    let larger = many_small_spans(6_000);
    let larger_body = larger.encode_to_vec();
    assert!(larger_body.len() > 300_000, "{}", larger_body.len());
    // Refused on OTLP/HTTP once the slow uploads' bytes are in (give the server a moment).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reply = loop {
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            larger_body.clone(),
        )
        .await;
        if reply.status == 503 || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let refusal = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(refusal.contains("max_inflight_bytes"), "{refusal}");
    // On OTLP/gRPC and Zipkin too: one budget.
    let status = m
        .grpc_client()
        .await
        .export(larger.clone())
        .await
        .expect_err("over the in-flight bound");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("max_inflight_bytes"),
        "{status:?}"
    );
    let reply = post(
        &m.zipkin_url(),
        &[("content-type", "application/json")],
        zipkin_spans(3_000),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    // A small request fits beside the uploads.
    export_grpc(m.grpc.unwrap(), many_small_spans(10)).await;
    assert!(refused_count(&m, "otlp_http", "overloaded").await >= 1.0);
    assert_eq!(refused_count(&m, "otlp_grpc", "overloaded").await, 1.0);
    assert_eq!(refused_count(&m, "zipkin", "overloaded").await, 1.0);
    let held = gauge_value(&m, "meshtel_ingest_inflight_bytes").await;
    assert!((1_900_000.0..=2_162_688.0).contains(&held), "{held}");
    assert_eq!(
        gauge_value(&m, "meshtel_ingest_inflight_bytes_limit").await,
        2_162_688.0
    );

    // The uploads end (their clients go away): their bytes are given back.
    drop(slow);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = post(
            &m.http_url("/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            larger_body.clone(),
        )
        .await;
        if reply.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the upload ended: {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(gauge_value(&m, "meshtel_ingest_inflight_bytes").await, 0.0);
    // Refused for a budget, not for the disk or the log: still ready.
    assert_eq!(gauge_value(&m, "meshtel_ingest_ready").await, 1.0);
    m.stop().await;
}

/// Parsing a JSON body takes from the in-flight budget too, about 770 bytes per object
/// or array: a body of tiny objects that would take more than the whole budget is 413
/// naming it (it took 100 times its size: 16 MB, 1.6 GB), an ordinary one is taken,
/// and what they held is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parsing_json_is_bounded_by_the_inflight_budget() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[ingest]\nmax_inflight_bytes = \"64MiB\"\n").await;
    let tiny = format!(
        "{{\"resourceSpans\":[{}]}}",
        vec!["{\"a\":1}"; 375_000].join(",")
    );
    for (url, content_type) in [
        (m.http_url("/v1/traces"), "application/json"),
        (m.zipkin_url(), "application/json"),
    ] {
        let body = if url.contains("v2") {
            tiny[17..tiny.len() - 1].to_string()
        } else {
            tiny.clone()
        };
        let reply = post(&url, &[("content-type", content_type)], body.into_bytes()).await;
        assert_eq!(reply.status, 413, "{url}: {}", reply.text());
        assert!(
            reply.text().contains("max_inflight_bytes (64.0 MiB)"),
            "{}",
            reply.text()
        );
    }
    let start = now_nanos() - 60_000_000_000;
    let trace = random_trace_id();
    let spans: Vec<_> = (0..2_000u64)
        .map(|i| {
            simple_span(
                &trace,
                &random_span_id(),
                None,
                &format!("op-{i}"),
                start + i,
                10,
            )
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("front", spans)],
    };
    let json = serde_json::to_vec(&request).unwrap();
    let reply = post(
        &m.http_url("/v1/traces"),
        &[("content-type", "application/json")],
        json,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gauge_value(&m, "meshtel_ingest_inflight_bytes").await, 0.0);
    m.stop().await;
}

/// At the smallest `max_inflight_bytes` allowed (twice `max_request_bytes` and 64 KiB),
/// a compressed request of nearly the largest size, alone, is taken: its bytes as
/// received and once decompressed both fit, so it is never refused for good with a
/// retryable 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_compressed_request_fits_the_smallest_inflight_bound() {
    use std::io::Write as _;

    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(
        &dir,
        "[ingest]\nmax_request_bytes = \"256KiB\"\nmax_inflight_bytes = \"576KiB\"\n",
    )
    .await;
    let mut request = many_small_spans(5_000);
    while request.encoded_len() > 262_144 {
        request.resource_spans[0].scope_spans[0].spans.pop();
    }
    let body = request.encode_to_vec();
    assert!(body.len() > 240_000, "{}", body.len());
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&body).unwrap();
    let gzipped = encoder.finish().unwrap();
    let reply = post(
        &m.http_url("/v1/traces"),
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        gzipped,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    m.stop().await;
}

/// Bytes of the file system holding `path`, as `df` reads them.
fn disk_size(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(path)
        .output()
        .expect("df runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("df said {text:?}"))
}

/// While the store refuses every span (here: the disk below `store.min_free_disk`),
/// `/readyz` answers 503 with the reason, and gRPC health NOT_SERVING, so that a load
/// balancer sends spans elsewhere; liveness stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_every_write_is_refused() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = TestDir::new();
    // Just below the whole disk: more than is free, so every span is refused.
    let reserve = disk_size(dir.path()) - 1;
    let m = Meshtel::serve_with_config(
        &dir,
        &format!(
            "[store]
min_free_disk = \"{reserve} B\"
"
        ),
    )
    .await;
    let reply = post(
        &m.http_url("/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        many_small_spans(1).encode_to_vec(),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let ready = get(&m.http_url("/readyz")).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let body: serde_json::Value = serde_json::from_str(&ready.text()).expect("a JSON body");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("store.min_free_disk")),
        "{body}"
    );
    assert_eq!(get(&m.http_url("/healthz")).await.status, 200);
    // An alert reads the same from /metrics.
    assert_eq!(gauge_value(&m, "meshtel_ingest_ready").await, 0.0);
    assert_eq!(
        gauge_value(&m, "meshtel_store_min_free_disk_bytes").await,
        reserve as f64
    );
    for service in ["", "opentelemetry.proto.collector.trace.v1.TraceService"] {
        eventually(
            std::time::Duration::from_secs(10),
            "gRPC health NOT_SERVING",
            || async {
                let status = grpc_health(m.grpc.unwrap(), service)
                    .await
                    .expect("grpc.health.v1.Health/Check");
                (status == ServingStatus::NotServing as i32).then_some(())
            },
        )
        .await;
    }
    m.stop().await;
}

/// Process `pid`'s peak resident memory (`VmHWM`), in bytes.
/// A Report stream's messages take from the in-flight budget while they arrive: one
/// that stops midway ends the stream `DEADLINE_EXCEEDED` a body timeout after it began,
/// giving its bytes back (before: held for as long as the stream lived, outside the
/// budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_stream_that_stops_within_a_message_ends_and_gives_its_bytes_back() {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use hyper::body::Frame;

    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[http]\nbody_read_timeout = \"2s\"\n").await;
    let mut sender = h2c_connect(m.grpc.unwrap()).await;
    let (frames, rx) = tokio::sync::mpsc::channel::<Result<Frame<bytes::Bytes>, std::io::Error>>(4);
    let request = http::Request::post(format!(
        "http://{}/meshtel.mixer.v1.Mixer/Report",
        m.grpc.unwrap()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(http_body_util::StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
    .unwrap();
    let framed = |payload: &[u8], declared: usize| {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&u32::try_from(declared).unwrap().to_be_bytes());
        bytes.extend_from_slice(payload);
        Ok(Frame::data(bytes::Bytes::from(bytes)))
    };
    let whole = meshtel_model::mixer::ReportRequest {
        proxy_id: "half-sent".into(),
        ..Default::default()
    }
    .encode_to_vec();
    frames.send(framed(&whole, whole.len())).await.unwrap();
    let response = sender.send_request(request).await.expect("Report call");
    assert_eq!(response.status(), 200);
    // Then 100,000 bytes of a message declared as 300,000, and nothing more.
    frames
        .send(framed(&vec![0u8; 100_000], 300_000))
        .await
        .unwrap();
    let began = std::time::Instant::now();
    eventually(Duration::from_secs(5), "the half message held", || async {
        (gauge_value(&m, "meshtel_ingest_inflight_bytes").await >= 100_000.0).then_some(())
    })
    .await;
    let answer = tokio::time::timeout(Duration::from_secs(15), response.into_body().collect())
        .await
        .expect("the stream ends")
        .expect("an answer");
    let waited = began.elapsed();
    let trailers = answer.trailers().cloned().unwrap_or_default();
    let field = |name: &str| trailers.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(field("grpc-status").as_deref(), Some("4"), "{trailers:?}");
    assert!(
        field("grpc-message").is_some_and(|m| m.contains("http.body_read_timeout")),
        "{trailers:?}"
    );
    assert!(waited < Duration::from_secs(6), "ended after {waited:?}");
    assert_eq!(gauge_value(&m, "meshtel_ingest_inflight_bytes").await, 0.0);
    assert_eq!(
        gauge_value(&m, "meshtel_grpc_messages_timed_out_total").await,
        1.0
    );
    drop(frames);
    m.stop().await;
}

/// A client that speaks TLS, or HTTP/1.1, to the gRPC port (an exporter with TLS on,
/// or an OTLP/HTTP one given the wrong port) is closed and told in the log, once per
/// 10 s with what it spoke, an opening shorter than HTTP/2's preface too (once the
/// header read timeout closes it); it used to leave no trace at all. gRPC still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_speak_grpc_to_its_port_are_named_in_the_log() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[http]\nheader_read_timeout = \"1s\"\n").await;
    let grpc = m.grpc.unwrap();
    // A TLS ClientHello's first bytes, then a short HTTP/1.1 request (18 bytes, less
    // than the preface), each on its own connection: both closed without an answer.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    hello.resize(64, 0x42);
    let get = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    for bytes in [hello, get] {
        let mut stream = tokio::net::TcpStream::connect(grpc).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{read:?} {answer:?}"
        );
    }
    let log = eventually(
        std::time::Duration::from_secs(12),
        "both told in the log",
        || async {
            let log = m.log_text();
            (log.contains("a TLS handshake: this port speaks plaintext gRPC")
                && log.contains("an OTLP/HTTP exporter?"))
            .then_some(log)
        },
    )
    .await;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("did not open with HTTP/2"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines.iter().all(|l| l.contains("connections=1")), "{log}");
    export_grpc(grpc, many_small_spans(3)).await;
    m.stop().await;
}
