//! Request records over the Report stream, spans over OTLP, trace propagation, and
//! the collector being down.

use meshtel_model::mixer::{Reporter, RequestRecord};
use meshtel_model::otlp::common::v1::any_value::Value;
use http_body_util::BodyExt;
use meshtel_model::otlp::trace::v1::Span;

use crate::support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn by_reporter(records: &[RequestRecord], reporter: Reporter) -> &RequestRecord {
    records.iter().find(|r| r.reporter == reporter as i32).expect("record of that reporter")
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    })
}

/// The client span (outbound) and server span (inbound) of one request.
fn client_and_server(spans: &[Span]) -> (&Span, &Span) {
    let client = spans.iter().find(|s| s.kind == 3).expect("client span");
    let server = spans.iter().find(|s| s.kind == 2).expect("server span");
    (client, server)
}

#[tokio::test]
async fn records_carry_istio_labels_from_both_reporters() {
    let mesh = start_mesh(100.0).await;
    let (parts, _, _) = send(&http1_client(), get(&mesh.productpage.outbound_url("/reviews/7"), "reviews:9080", &[])).await;
    assert_eq!(parts.status, 200);
    let records = mesh.collector.wait_records(2).await;
    assert_eq!(records.len(), 2);

    let source = by_reporter(&records, Reporter::Source);
    let destination = by_reporter(&records, Reporter::Destination);
    for record in [source, destination] {
        let from = record.source.as_ref().expect("source");
        assert_eq!((from.name.as_str(), from.namespace.as_str(), from.app.as_str(), from.version.as_str()), ("productpage-v1", "default", "productpage", "v1"));
        let to = record.destination.as_ref().expect("destination");
        assert_eq!((to.name.as_str(), to.namespace.as_str(), to.app.as_str(), to.version.as_str()), ("reviews-v2", "default", "reviews", "v2"));
        // Istio's default cluster id on both sides: the mesh file names none for reviews.
        assert_eq!((from.cluster.as_str(), to.cluster.as_str()), ("Kubernetes", "Kubernetes"));
        assert_eq!(record.destination_service, "reviews.default.svc.cluster.local");
        assert_eq!(record.destination_service_name, "reviews");
        assert_eq!(record.destination_service_namespace, "default");
        assert_eq!((record.request_method.as_str(), record.request_path.as_str()), ("GET", "/reviews/7"));
        assert_eq!(record.request_protocol, "http");
        assert_eq!(record.response_code, 200);
        assert_eq!(record.grpc_response_status, None);
        assert_eq!(record.response_flags, "");
        assert_eq!(record.trace_id.len(), 16, "sampled at 100%");
        assert!(record.duration_nanos > 0 && record.start_unix_nano > 0);
        assert!(record.request_bytes > 0 && record.response_bytes > 0);
    }
    assert_eq!(source.connection_security_policy, "");
    assert_eq!(destination.connection_security_policy, "none");
    assert_eq!(source.trace_id, destination.trace_id);
    let batches = mesh.collector.batches.lock().clone();
    assert!(batches.iter().any(|b| b.proxy_id.starts_with("productpage-v1.default")), "{batches:?}");

    // One trace: client span (root, started by the outbound) → server span.
    let spans = mesh.collector.wait_spans(2).await;
    let (client, server) = client_and_server(&spans);
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(client.trace_id, source.trace_id);
    assert!(client.parent_span_id.is_empty());
    assert_eq!(server.parent_span_id, client.span_id);
    assert_eq!(attribute(client, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attribute(client, "url.path").as_deref(), Some("/reviews/7"));
    assert_eq!(attribute(client, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attribute(client, "server.address").as_deref(), Some("reviews"));
    assert_eq!(attribute(client, "server.port").as_deref(), Some("9080"));
    assert_eq!(attribute(client, "network.protocol.version").as_deref(), Some("1.1"));
    assert_eq!(attribute(client, "peer.service").as_deref(), Some("reviews"));
    assert_eq!(attribute(server, "peer.service").as_deref(), Some("productpage"));
    assert_eq!(attribute(client, "url.full").as_deref(), Some("http://reviews:9080/reviews/7"));
    assert_eq!(attribute(server, "url.full"), None, "server spans carry url.path and url.query");
    assert_eq!(attribute(client, "error.type"), None);
    assert_eq!(client.name, "GET reviews");
    // Envoy's cluster names: the service's (and subset's) outbound, the app's inbound.
    assert!(attribute(client, "upstream_cluster").is_some_and(|c| c.starts_with("reviews.default.svc.cluster.local")), "{client:?}");
    assert_eq!(attribute(server, "upstream_cluster"), Some(format!("inbound|{}||", mesh.upstream.addr.port())));
    // The app sees the server span as its parent.
    let app_traceparent = mesh.upstream.seen.lock().headers["traceparent"].to_str().expect("ascii").to_owned();
    assert_eq!(app_traceparent, format!("00-{}-{}-03", hex(&server.trace_id), hex(&server.span_id)));

    let (status, stats) = admin_get(&mesh.productpage, "/stats/prometheus").await;
    assert_eq!(status, 200);
    assert!(stats.contains("meshtel_proxy_reports_sent_total 1"), "{stats}");
}

/// The (source, destination) cluster ids of a record.
fn clusters(record: &RequestRecord) -> (&str, &str) {
    let source = record.source.as_ref().map_or("", |w| w.cluster.as_str());
    let destination = record.destination.as_ref().map_or("", |w| w.cluster.as_str());
    (source, destination)
}

#[tokio::test]
async fn records_carry_each_sides_cluster_and_unknown_only_for_an_unknown_peer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh_path = dir.path().join("mesh.yaml");
    let upstream = start_upstream().await;
    let collector = start_collector().await;
    let reviews = bind_proxy(&mesh_path, "reviews", "v2", Some(upstream.addr), &collector.url(), 0.0)
        .await
        .configure(|config| config.cluster = "east".to_owned());
    let productpage = bind_proxy(&mesh_path, "productpage", "v1", None, &collector.url(), 0.0)
        .await
        .configure(|config| config.cluster = "west".to_owned());
    let reviews_inbound = reviews.addresses.inbound.expect("inbound");
    let dead = dead_address().await;
    std::fs::write(
        &mesh_path,
        format!(
            "services:\n\
             - name: reviews\n  endpoints:\n  - address: {reviews_inbound}\n    cluster: east\n    labels: {{app: reviews, version: v2}}\n\
             - name: dead\n  endpoints:\n  - address: {dead}\n\
             - name: empty\n  endpoints: []\n"
        ),
    )
    .expect("write mesh");
    let (reviews, productpage) = (reviews.start(), productpage.start());
    let client = http1_client();

    // productpage (west) → reviews (east, as the mesh file says): both reporters agree.
    let (parts, _, _) = send(&client, get(&productpage.outbound_url("/"), "reviews", &[])).await;
    assert_eq!(parts.status, 200);
    let records = collector.wait_records(2).await;
    assert_eq!(clusters(by_reporter(&records, Reporter::Source)), ("west", "east"));
    assert_eq!(clusters(by_reporter(&records, Reporter::Destination)), ("west", "east"));

    // A caller outside the mesh (no proxy, no peer headers): its cluster is unknown.
    let inbound = format!("http://{reviews_inbound}/");
    let (parts, _, _) = send(&client, get(&inbound, "reviews", &[])).await;
    assert_eq!(parts.status, 200);
    let records = collector.wait_records(3).await;
    assert_eq!(clusters(&records[2]), ("", "east"));

    // An endpoint naming no cluster is in the caller's own (here: the refused one,
    // 503 UF); a host naming no service has no destination at all (503 UH).
    let (parts, _, _) = send(&client, get(&productpage.outbound_url("/"), "dead", &[])).await;
    assert_eq!(parts.status, 503);
    let (parts, _, _) = send(&client, get(&productpage.outbound_url("/"), "nowhere", &[])).await;
    assert_eq!(parts.status, 503);
    let records = collector.wait_records(5).await;
    let refused = records.iter().find(|r| r.destination_service.starts_with("dead.")).expect("the record of dead");
    assert_eq!(clusters(refused), ("west", "west"));
    let unknown = records.iter().find(|r| r.response_flags == "UH").expect("the UH record");
    assert_eq!(clusters(unknown), ("west", ""));

    // A known service with no endpoint to pick (503 UH) is still in a known cluster,
    // the caller's: Kiali drops series with a known namespace and an unknown cluster.
    let (parts, _, _) = send(&client, get(&productpage.outbound_url("/"), "empty", &[])).await;
    assert_eq!(parts.status, 503);
    let records = collector.wait_records(6).await;
    let empty = records.iter().find(|r| r.destination_service.starts_with("empty.")).expect("the record of empty");
    assert_eq!((empty.response_flags.as_str(), clusters(empty)), ("UH", ("west", "west")));

    productpage.stop().await;
    reviews.stop().await;
}

#[tokio::test]
async fn w3c_context_is_continued_and_its_sampling_decision_wins() {
    let mesh = start_mesh(0.0).await;
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    // `tracestate` split over two lines: the span holds them joined, the app gets both.
    let request = get(&mesh.productpage.outbound_url("/"), "reviews", &[("traceparent", &traceparent), ("tracestate", "vendor=opaque"), ("tracestate", "other=2")]);
    let (parts, _, _) = send(&http1_client(), request).await;
    assert_eq!(parts.status, 200);
    let spans = mesh.collector.wait_spans(2).await;
    let (client, server) = client_and_server(&spans);
    assert_eq!(hex(&client.trace_id), TRACE);
    assert_eq!(hex(&client.parent_span_id), PARENT);
    assert_eq!(server.parent_span_id, client.span_id);
    assert_eq!(client.trace_state, "vendor=opaque,other=2");
    assert_eq!(server.trace_state, "vendor=opaque,other=2");
    let seen = mesh.upstream.seen.lock().headers.clone();
    assert_eq!(seen["traceparent"], format!("00-{TRACE}-{}-01", hex(&server.span_id)).as_str());
    let lines: Vec<_> = seen.get_all("tracestate").iter().collect();
    assert_eq!(lines, ["vendor=opaque", "other=2"]);
}

#[tokio::test]
async fn b3_multi_and_single_contexts_are_continued() {
    let mesh = start_mesh(0.0).await;
    let client = http1_client();
    let multi = [("x-b3-traceid", TRACE), ("x-b3-spanid", PARENT), ("x-b3-sampled", "1")];
    let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/multi"), "reviews", &multi)).await;
    assert_eq!(parts.status, 200);
    let spans = mesh.collector.wait_spans(2).await;
    let (client_span, server_span) = client_and_server(&spans);
    assert_eq!(hex(&client_span.trace_id), TRACE);
    assert_eq!(hex(&client_span.parent_span_id), PARENT);
    assert_eq!(server_span.parent_span_id, client_span.span_id);
    let seen = mesh.upstream.seen.lock().headers.clone();
    assert_eq!(seen["x-b3-traceid"], TRACE);
    assert_eq!(seen["x-b3-spanid"], hex(&server_span.span_id).as_str());
    assert_eq!(seen["x-b3-parentspanid"], hex(&client_span.span_id).as_str());
    assert_eq!(seen["x-b3-sampled"], "1");

    let single = format!("{}-{PARENT}-1", &TRACE[16..]);
    let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/single"), "reviews", &[("b3", &single)])).await;
    assert_eq!(parts.status, 200);
    let spans = mesh.collector.wait_spans(4).await;
    let padded = format!("{}{}", "0".repeat(16), &TRACE[16..]);
    let in_trace: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == padded).collect();
    assert_eq!(in_trace.len(), 2, "one trace with two spans");
    let seen = mesh.upstream.seen.lock().headers.clone();
    let b3 = seen["b3"].to_str().expect("ascii");
    // The app gets the trace id as it came: 16 digits (traces.md §6.3).
    assert!(b3.starts_with(&format!("{}-", &TRACE[16..])) && b3.contains("-1-"), "{b3}");
}

#[tokio::test]
async fn batches_a_broken_stream_did_not_acknowledge_are_sent_again() {
    let mesh = start_mesh(0.0).await;
    let client = http1_client();
    let call = || async {
        let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "reviews", &[])).await;
        assert_eq!(parts.status, 200);
    };
    call().await;
    // Both proxies' records of the first request: their streams are open.
    mesh.collector.wait_records(2).await;
    // The next batch ends its stream unacknowledged (a collector restarting), whichever
    // proxy sends it: the proxy sends it again on a new stream, and nothing is lost.
    mesh.collector.break_next_batch.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..9 {
        call().await;
    }
    let records = mesh.collector.wait_records(20).await;
    assert!(!mesh.collector.break_next_batch.load(std::sync::atomic::Ordering::SeqCst), "a stream was broken");
    let mut dropped = 0.0;
    let mut resent = 0.0;
    for proxy in [&mesh.productpage, &mesh.reviews] {
        let (_, stats) = admin_get(proxy, "/stats/prometheus").await;
        dropped += counter(&stats, "meshtel_proxy_reports_dropped_total");
        resent += counter(&stats, "meshtel_proxy_reports_resent_total");
    }
    assert_eq!(dropped, 0.0);
    assert!(resent >= 1.0, "the unacknowledged batch was sent again");
    // Exactly once each: 10 requests, one record per side.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(mesh.collector.records.lock().len(), 20, "{records:?}");
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}

#[tokio::test]
async fn collector_down_changes_nothing_and_drops_are_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh_path = dir.path().join("mesh.yaml");
    let upstream = start_upstream().await;
    let collector = format!("http://{}", dead_address().await);
    let reviews = bind_proxy(&mesh_path, "reviews", "v2", Some(upstream.addr), &collector, 100.0).await;
    let productpage = bind_proxy(&mesh_path, "productpage", "v1", None, &collector, 100.0)
        .await
        .configure(|config| {
            config.report_queue = 5;
            config.span_queue = 5;
        });
    write_mesh(&mesh_path, reviews.addresses.inbound.expect("inbound"), dead_address().await);
    let (reviews, productpage) = (reviews.start(), productpage.start());
    let client = http1_client();
    for _ in 0..30 {
        let (parts, _, _) = send(&client, get(&productpage.outbound_url("/"), "reviews", &[])).await;
        assert_eq!(parts.status, 200);
    }
    assert_eq!(admin_get(&productpage, "/healthz").await.0, 200);
    assert_eq!(admin_get(&productpage, "/ready").await.0, 200);
    let (_, stats) = admin_get(&productpage, "/stats/prometheus").await;
    // The queue holds 5 records while the collector is unreachable; the rest are
    // dropped and counted, and none were sent.
    assert_eq!(counter(&stats, "meshtel_proxy_reports_dropped_total"), 25.0, "{stats}");
    assert_eq!(counter(&stats, "meshtel_proxy_reports_sent_total"), 0.0, "{stats}");
    assert_eq!(counter(&stats, "meshtel_proxy_ready"), 1.0, "{stats}");
    // Both streams down; an outbound-only proxy opens no policy watch and has no gauge
    // for one, where the inbound proxy's says it is down.
    assert!(stats.contains("\nmeshtel_proxy_report_stream_open 0\n"), "{stats}");
    assert!(!stats.contains("meshtel_proxy_quota_watch_open"), "{stats}");
    let (_, inbound_stats) = admin_get(&reviews, "/stats/prometheus").await;
    assert!(inbound_stats.contains("\nmeshtel_proxy_quota_watch_open 0\n"), "{inbound_stats}");
    productpage.stop().await;
    reviews.stop().await;
}

/// A collector address that answers HTTP but not gRPC (here an app that echoes what it
/// is sent, as a wrong `--collector` could name) opens no stream: neither the Report
/// stream nor the policy watch counts as connected, however often they try.
#[tokio::test]
async fn an_address_answering_http_but_not_grpc_opens_no_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh_path = dir.path().join("mesh.yaml");
    let app = start_upstream().await;
    let not_a_collector = start_upstream().await;
    let url = format!("http://{}", not_a_collector.addr);
    let reviews = bind_proxy(&mesh_path, "reviews", "v2", Some(app.addr), &url, 100.0).await;
    write_mesh(&mesh_path, reviews.addresses.inbound.expect("inbound"), dead_address().await);
    let reviews = reviews.start();
    // Two attempts of each stream at least (the first retry comes within a second).
    eventually("the proxy to try the address again", || {
        (not_a_collector.requests.load(std::sync::atomic::Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    let (_, stats) = admin_get(&reviews, "/stats/prometheus").await;
    assert_eq!(counter(&stats, "meshtel_proxy_report_stream_connects_total"), 0.0, "{stats}");
    assert_eq!(counter(&stats, "meshtel_proxy_quota_watch_connects_total"), 0.0, "{stats}");
    reviews.stop().await;
}

/// Span status and `error.type` as the HTTP semantic conventions set them: a client
/// span fails on an error status (and says which in `error.type`); a method the
/// conventions do not know is `_OTHER`, its text kept beside, and names no operation.
#[tokio::test]
async fn failed_calls_and_unknown_methods_are_spanned_as_the_conventions_say() {
    let mesh = start_mesh(100.0).await;
    let client = http1_client();
    let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "dead", &[])).await;
    assert_eq!(parts.status, 503);
    let spans = mesh.collector.wait_spans(1).await;
    let failed = spans.iter().find(|s| s.kind == 3).expect("client span");
    assert_eq!(failed.status.as_ref().map(|s| s.code), Some(2), "ERROR: {failed:?}");
    assert_eq!(attribute(failed, "error.type").as_deref(), Some("503"));
    assert_eq!(attribute(failed, "server.port").as_deref(), Some("80"), "the scheme's default");

    let request = http::Request::builder()
        .method("FOO")
        .uri(mesh.productpage.outbound_url("/echo?sig=s3cret&page=2&Signature=abc&X-Amz-Security-Token=sts&x-amz-signature=f00"))
        .header("host", "reviews")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 1234])).map_err(|never| match never {}).boxed())
        .expect("request");
    let (parts, echoed, _) = send(&client, request).await;
    assert_eq!((parts.status.as_u16(), echoed.len()), (200, 1234));
    let spans = mesh.collector.wait_spans(3).await;
    let foo = spans.iter().find(|s| s.kind == 3 && s.name != failed.name).expect("client span of FOO");
    assert_eq!(foo.name, "HTTP reviews");
    assert_eq!(attribute(foo, "http.request.method").as_deref(), Some("_OTHER"));
    assert_eq!(attribute(foo, "http.request.method_original").as_deref(), Some("FOO"));
    assert_eq!(foo.status.as_ref().map(|s| s.code), Some(0), "answered 200: {foo:?}");
    // The upstream echoes the body: both sizes, on both sides' spans.
    let foo_server = spans.iter().find(|s| s.kind == 2 && s.trace_id == foo.trace_id).expect("server span of FOO");
    for span in [foo, foo_server] {
        assert_eq!(attribute(span, "http.request.body.size").as_deref(), Some("1234"), "{span:?}");
        assert_eq!(attribute(span, "http.response.body.size").as_deref(), Some("1234"), "{span:?}");
    }
    // Signed-URL credentials are redacted, as the conventions say; other parameters kept.
    assert_eq!(attribute(foo_server, "url.query").as_deref(), Some("sig=REDACTED&page=2&Signature=REDACTED&X-Amz-Security-Token=REDACTED&x-amz-signature=REDACTED"));
    assert_eq!(attribute(foo, "url.full").as_deref(), Some("http://reviews/echo?sig=REDACTED&page=2&Signature=REDACTED&X-Amz-Security-Token=REDACTED&x-amz-signature=REDACTED"));
    // No body, no request size; the 503 the proxy answered itself has its own.
    assert_eq!(attribute(failed, "http.request.body.size"), None);
    assert!(attribute(failed, "http.response.body.size").is_some_and(|n| n != "0"), "{failed:?}");
}

/// A request refused as received (two `Host` headers: 400 `DPE`) is spanned when its
/// caller's trace is sampled, with its `x-request-id` as Envoy's `guid:x-request-id`.
#[tokio::test]
async fn a_request_refused_as_received_keeps_its_request_id_on_its_span() {
    use crate::routing_support::raw_exchange;
    let mesh = start_mesh(0.0).await;
    let request = format!(
        "GET /dpe HTTP/1.1\r\nHost: reviews\r\nHost: other\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\
         x-request-id: my-request-1\r\nConnection: close\r\n\r\n"
    );
    let outcome = raw_exchange(mesh.productpage.addresses.outbound, request.as_bytes(), std::time::Duration::from_secs(2)).await;
    assert!(outcome.status_line.starts_with("HTTP/1.1 400 "), "{outcome:?}");
    let spans = mesh.collector.wait_spans(1).await;
    assert_eq!(hex(&spans[0].trace_id), TRACE);
    assert_eq!(attribute(&spans[0], "response_flags").as_deref(), Some("DPE"));
    assert_eq!(attribute(&spans[0], "guid:x-request-id").as_deref(), Some("my-request-1"));
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}

/// Requests hyper's parser refuses before the proxy sees them (a malformed header, a
/// head over the limits) still become request records, as Envoy logs them: the
/// status sent, flag `DPE`, method and path unknown, this instance on its side.
#[tokio::test]
async fn requests_refused_by_the_parser_are_reported_with_dpe() {
    use crate::routing_support::raw_exchange;
    let mesh = start_mesh(0.0).await;
    let wait = std::time::Duration::from_secs(5);
    let outbound = mesh.productpage.addresses.outbound;
    let inbound = mesh.reviews.addresses.inbound.expect("inbound");
    let malformed = b"GET / HTTP/1.1\r\nHost: reviews\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\n";
    let outcome = raw_exchange(outbound, malformed, wait).await;
    assert_eq!(outcome.status_line, "HTTP/1.1 400 Bad Request");
    let fields: String = (0..140).map(|i| format!("x-h{i}: v\r\n")).collect();
    let too_many = format!("GET / HTTP/1.1\r\nHost: reviews\r\n{fields}\r\n");
    let outcome = raw_exchange(inbound, too_many.as_bytes(), wait).await;
    assert_eq!(outcome.status_line, "HTTP/1.1 431 Request Header Fields Too Large");
    let records = mesh.collector.wait_records(2).await;
    let source = by_reporter(&records, Reporter::Source);
    assert_eq!((source.response_code, source.response_flags.as_str()), (400, "DPE"));
    assert_eq!((source.request_method.as_str(), source.request_path.as_str()), ("", ""));
    assert_eq!(source.source.as_ref().map(|w| w.name.as_str()), Some("productpage-v1"));
    assert_eq!(source.destination_service, "");
    let destination = by_reporter(&records, Reporter::Destination);
    assert_eq!((destination.response_code, destination.response_flags.as_str()), (431, "DPE"));
    assert_eq!(destination.destination.as_ref().map(|w| w.name.as_str()), Some("reviews-v2"));
    assert_eq!(destination.destination_service, "reviews.default.svc.cluster.local");
    assert_eq!(destination.source.as_ref().map(|w| w.name.as_str()), Some(""));
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}
