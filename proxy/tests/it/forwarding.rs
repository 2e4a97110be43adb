//! Forwarding through outbound → inbound → app: headers, HTTP/2, streaming, flags.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::BodyExt;

use crate::support::*;

#[tokio::test]
async fn http1_request_crosses_both_proxies_with_clean_headers() {
    let mesh = start_mesh(100.0).await;
    let client = http1_client();
    let request = get(
        &mesh.productpage.outbound_url("/reviews/1?x=1"),
        "reviews:9080",
        &[
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("x-meshtel-peer-workload", "spoofed"),
            ("x-end-to-end", "kept"),
        ],
    );
    let (parts, body, _) = send(&client, request).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body.len(), 0);
    assert_eq!(parts.headers["x-app"], "upstream");
    assert!(!parts.headers.contains_key("x-app-hop"), "response hop-by-hop header removed");

    let seen = mesh.upstream.seen.lock().clone();
    let app = headers_of(&seen.headers);
    assert_eq!(app.get("x-end-to-end").map(String::as_str), Some("kept"));
    assert_eq!(app.get("host").map(String::as_str), Some("reviews:9080"));
    for removed in ["x-hop", "keep-alive", "proxy-connection", "connection"] {
        assert!(!app.contains_key(removed), "{removed} reached the app: {app:?}");
    }
    assert!(app.keys().all(|k| !k.starts_with("x-meshtel-peer")), "peer headers stripped: {app:?}");
    assert_eq!(app.get("x-request-id").map(String::len), Some(36), "x-request-id added");
    assert_eq!(app.get("x-forwarded-proto").map(String::as_str), Some("http"), "added as Envoy does");
    assert!(app.contains_key("traceparent"));
    assert_eq!(seen.version, Some(http::Version::HTTP_11));

    // A caller's x-request-id and x-forwarded-proto are kept.
    let (_, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "reviews", &[("x-request-id", "abc"), ("x-forwarded-proto", "https")])).await;
    assert_eq!(mesh.upstream.seen.lock().headers["x-request-id"], "abc");
    assert_eq!(mesh.upstream.seen.lock().headers["x-forwarded-proto"], "https");
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}

#[tokio::test]
async fn connections_are_served_by_every_worker_and_each_request_reported_once() {
    const CONNECTIONS: usize = 48;
    let mesh = start_mesh(0.0).await;
    // Each task is its own client, so its own connection; all are open at once, and
    // whichever worker is free accepts each.
    let requests = (0..CONNECTIONS).map(|i| {
        let url = mesh.productpage.outbound_url(&format!("/reviews/{i}"));
        tokio::spawn(async move {
            let client = http1_client();
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(send(&client, get(&url, "reviews", &[])).await.0.status.as_u16());
            }
            statuses
        })
    });
    for statuses in futures::future::join_all(requests).await {
        assert_eq!(statuses.expect("client task"), [200, 200, 200]);
    }
    let (_, stats) = admin_get(&mesh.productpage, "/stats/prometheus").await;
    let accepted = labelled_counters(&stats, "meshtel_proxy_downstream_connections_total", r#"listener="outbound""#);
    assert_eq!(accepted.len(), 2, "one series per worker: {accepted:?}");
    assert_eq!(accepted.values().sum::<f64>(), CONNECTIONS as f64, "every connection counted once: {accepted:?}");
    assert!(accepted.values().all(|&n| n > 0.0), "both workers accepted connections: {accepted:?}");
    // The inbound side's connections come from the outbound workers' own pools.
    let (_, stats) = admin_get(&mesh.reviews, "/stats/prometheus").await;
    assert!(labelled_counters(&stats, "meshtel_proxy_downstream_connections_total", r#"listener="inbound""#).values().sum::<f64>() >= 1.0);
    // Both proxies report every request exactly once, whichever worker served it.
    mesh.collector.wait_records(2 * 3 * CONNECTIONS).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // longer than a batch lingers
    let records = mesh.collector.wait_records(2 * 3 * CONNECTIONS).await;
    assert_eq!(records.len(), 2 * 3 * CONNECTIONS, "no record twice");
    let mut paths: Vec<(i32, String)> = records.iter().map(|r| (r.reporter, r.request_path.clone())).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 2 * CONNECTIONS, "each path from each reporter");
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}

#[tokio::test]
async fn h2c_and_grpc_pass_through() {
    let mesh = start_mesh(1.0).await;
    let client = h2c_client();
    let request = http::Request::post(mesh.productpage.outbound_url("/grpc.Reviews/Get"))
        .header("host", "reviews.default.svc.cluster.local")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"\0\0\0\0\x01a")).map_err(|never| match never {}).boxed())
        .expect("request");
    let (parts, body, trailers) = send(&client, request).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(&body[..], b"\0\0\0\0\x02hi");
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    let seen = mesh.upstream.seen.lock().clone();
    assert_eq!(seen.version, Some(http::Version::HTTP_2), "the app got HTTP/2");
    assert_eq!(seen.headers["te"], "trailers");
    // The service as the caller named it, once: `:authority`, no `host` beside it
    // (which h2 servers such as nginx refuse as a second Host).
    assert_eq!(seen.authority.as_deref(), Some("reviews.default.svc.cluster.local"));
    assert!(!seen.headers.contains_key("host"), "{:?}", seen.headers);

    // A header block past h2's default 16 KiB (a large token), up to Envoy's 60 KiB.
    let request = http::Request::post(mesh.productpage.outbound_url("/grpc.Reviews/Get"))
        .header("host", "reviews.default.svc.cluster.local")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", "t".repeat(30_000)))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"\0\0\0\0\x01a")).map_err(|never| match never {}).boxed())
        .expect("request");
    let (parts, _, trailers) = send(&client, request).await;
    assert_eq!(parts.status, 200);
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    assert_eq!(mesh.upstream.seen.lock().headers["authorization"].len(), 30_007, "the header reached the app");

    let records = mesh.collector.wait_records(4).await;
    for record in &records {
        assert_eq!(record.request_protocol, "grpc");
        assert_eq!(record.grpc_response_status, Some(0));
        assert_eq!(record.response_code, 200);
    }
}

#[tokio::test]
async fn a_large_body_streams_without_buffering() {
    // A proxy that buffered the body would send nothing before the app had produced
    // all of it. Three TCP connections lie between the app and the client, each of
    // which may hold megabytes (tcp_rmem + tcp_wmem, grown by the kernel as it sees
    // fit), and the proxies' workers run on their own threads, so the app may run
    // ahead by tens of MiB before the client's first read: the body is large enough
    // that "first bytes before the end" still means streaming.
    const TOTAL: u64 = 128 * 1024 * 1024;
    let mesh = start_mesh(1.0).await;
    let client = http1_client();
    let response = client
        .request(get(&mesh.productpage.outbound_url(&format!("/large?bytes={TOTAL}")), "reviews", &[]))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut produced_at_first_byte = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        if let Some(data) = frame.data_ref() {
            if produced_at_first_byte.is_none() {
                produced_at_first_byte = Some(mesh.upstream.produced.load(Ordering::SeqCst));
            }
            received += data.len() as u64;
        }
    }
    assert_eq!(received, TOTAL);
    let produced = produced_at_first_byte.expect("some data");
    assert!(produced < TOTAL, "first bytes arrived only after all {produced} bytes were produced: buffered");

    // Uploads stream too, and both directions are counted in the records.
    let upload = http_body_util::StreamBody::new(futures::stream::iter(
        (0..64).map(|_| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(vec![b'u'; 64 * 1024])))),
    ));
    let request = http::Request::post(mesh.productpage.outbound_url("/echo"))
        .header("host", "reviews")
        .body(upload.boxed())
        .expect("request");
    let (parts, echoed, _) = send(&client, request).await;
    assert_eq!(parts.status, 200);
    assert_eq!(echoed.len(), 4 * 1024 * 1024);
    let records = mesh.collector.wait_records(4).await;
    let echo = records.iter().find(|r| r.request_path == "/echo").expect("echo record");
    assert!(echo.request_bytes > 4 * 1024 * 1024 && echo.response_bytes > 4 * 1024 * 1024, "{echo:?}");
    let large = records.iter().find(|r| r.request_path.starts_with("/large")).expect("large record");
    assert!(large.response_bytes > TOTAL);
}

#[tokio::test]
async fn dead_upstream_is_503_uf_and_unknown_host_is_503_uh() {
    let mesh = start_mesh(1.0).await;
    let client = http1_client();
    let (parts, body, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "dead", &[])).await;
    assert_eq!(parts.status, 503);
    assert!(String::from_utf8_lossy(&body).contains("connection failure"));
    let (parts, body, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "nowhere.example:80", &[])).await;
    assert_eq!(parts.status, 503);
    assert_eq!(&body[..], b"no healthy upstream");
    let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "empty", &[])).await;
    assert_eq!(parts.status, 503);

    let records = mesh.collector.wait_records(3).await;
    let flags: Vec<(&str, &str, u32)> =
        records.iter().map(|r| (r.destination_service_name.as_str(), r.response_flags.as_str(), r.response_code)).collect();
    // Istio's default retry policy retries connect failures twice: `UF,URX`.
    assert!(flags.contains(&("dead", "UF,URX", 503)), "{flags:?}");
    assert!(flags.contains(&("", "UH", 503)), "{flags:?}");
    assert!(flags.contains(&("empty", "UH", 503)), "{flags:?}");
    let dead = records.iter().find(|r| r.destination_service_name == "dead").expect("dead");
    assert_eq!(dead.destination.as_ref().map(|w| w.name.as_str()), Some("dead-v1"));

    let (_, stats) = admin_get(&mesh.productpage, "/stats/prometheus").await;
    // Three connections refused: the first try and Istio's two retries.
    assert!(stats.contains("meshtel_proxy_upstream_connect_failures_total{direction=\"outbound\"} 3"), "{stats}");
    assert!(stats.contains("meshtel_proxy_requests_total{direction=\"outbound\"} 3"), "{stats}");
}

#[tokio::test]
async fn mesh_edits_are_picked_up_and_bad_edits_ignored() {
    let mesh = start_mesh(1.0).await;
    let client = http1_client();
    let mesh_path = mesh.dir.path().join("mesh.yaml");
    let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "ratings", &[])).await;
    assert_eq!(parts.status, 503, "ratings not in the mesh yet");

    let reviews_inbound = mesh.reviews.addresses.inbound.expect("inbound");
    let mut text = std::fs::read_to_string(&mesh_path).expect("read mesh");
    text.push_str(&format!("- name: ratings\n  endpoints:\n  - address: {reviews_inbound}\n"));
    std::fs::write(&mesh_path, &text).expect("write mesh");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "ratings", &[])).await;
        if parts.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "mesh reload not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::write(&mesh_path, "services: [ {name: broken").expect("write bad mesh");
    wait_stats_contain(&mesh.productpage, "meshtel_proxy_mesh_reloads_total{result=\"rejected\"} 1").await;
    let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "ratings", &[])).await;
    assert_eq!(parts.status, 200, "the last good mesh stays in force");
    // The operator sees why in /config_dump.
    let (_, dump) = admin_get(&mesh.productpage, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("config_dump JSON");
    let error = dump["mesh_last_error"].as_str().unwrap_or_default();
    assert!(error.contains("mesh.yaml"), "mesh_last_error names the file: {dump:#}");
    assert!(dump["mesh_file"].as_str().is_some_and(|f| f.ends_with("mesh.yaml")), "{dump:#}");
    // And an alert, from the gauge, until a good file is in force again.
    let (_, stats) = admin_get(&mesh.productpage, "/stats/prometheus").await;
    assert!(stats.contains("\nmeshtel_proxy_mesh_last_reload_successful 0\n"), "{stats}");
    std::fs::write(&mesh_path, &text).expect("write the good mesh again");
    wait_stats_contain(&mesh.productpage, "\nmeshtel_proxy_mesh_last_reload_successful 1\n").await;
}

/// Waits up to 10 s for `proxy`'s `/stats/prometheus` to contain `needle`.
async fn wait_stats_contain(proxy: &RunningProxy, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = admin_get(proxy, "/stats/prometheus").await;
        if stats.contains(needle) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never saw {needle:?} in {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An app on a plain TCP server on 127.0.0.1: `serve` runs on each connection.
async fn tcp_app<F: std::future::Future<Output = ()> + Send + 'static>(
    serve: impl Fn(tokio::net::TcpStream) -> F + Send + 'static,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let app = listener.local_addr().expect("app addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    app
}

/// An app on a plain TCP server that writes `answer` for each request head it reads
/// and reads and discards everything else, never closing first (closing with unread
/// data would reset the connection).
async fn raw_app(answer: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp_app(move |mut stream| async move {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        loop {
            let Ok(n) = stream.read(&mut buffer).await else { return };
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buffer[..n]);
            // One answer per request head seen (bodies here hold no blank line).
            while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head.drain(..end + 4);
                if stream.write_all(answer).await.is_err() {
                    return;
                }
            }
            if head.len() > 8192 {
                head.clear();
            }
        }
    })
    .await
}

/// A `reviews` proxy whose inbound listener forwards to `app`, with no peers and no
/// collector; the directory holds its mesh file.
async fn proxy_in_front_of(app: std::net::SocketAddr) -> (RunningProxy, tempfile::TempDir) {
    proxy_in_front_of_with(app, |_| {}).await
}

/// RFC 9110 §8.6: a 204 carries no Content-Length. An HTTP/1.1 app's that does must not
/// reach an HTTP/2 caller, whose client would refuse the whole response.
#[tokio::test]
async fn a_204_reaches_an_http2_caller_without_the_apps_content_length() {
    let app = raw_app(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n").await;
    let (proxy, _dir) = proxy_in_front_of_with(app, |config| config.app_protocol = meshtel_proxy::config::AppProtocol::Http1).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    for client in [h2c_client(), http1_client()] {
        let (parts, body, _) = send(&client, get(&format!("http://{inbound}/empty"), "reviews", &[])).await;
        assert_eq!(parts.status, 204, "{parts:?}");
        assert!(body.is_empty());
        assert!(!parts.headers.contains_key("content-length"), "{parts:?}");
    }
}

/// RFC 9110 §15.2.2: a 101 switches only to a protocol the request offered. An app's
/// 101 to a plain request is its protocol error, 502 `UPE`, and the caller's next
/// request on the connection is still answered.
#[tokio::test]
async fn a_101_to_a_request_that_offered_no_upgrade_is_502() {
    let app = raw_app(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: none\r\nconnection: upgrade\r\n\r\n").await;
    let (proxy, _dir) = proxy_in_front_of_with(app, |config| config.app_protocol = meshtel_proxy::config::AppProtocol::Http1).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let client = http1_client();
    for _ in 0..2 {
        let (parts, body, _) = send(&client, get(&format!("http://{inbound}/101"), "reviews", &[])).await;
        assert_eq!(parts.status, 502, "{parts:?} {body:?}");
        assert!(String::from_utf8_lossy(&body).ends_with("protocol error"), "{parts:?} {body:?}");
    }
}

#[tokio::test]
async fn a_response_framed_by_chunks_loses_the_content_length_sent_beside_them() {
    // Both framings: the chunked body is the message (RFC 9112 §6.3), and a
    // Content-Length passed on would cut it.
    let app = raw_app(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n").await;
    let (proxy, _dir) = proxy_in_front_of(app).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    // Over HTTP/1.1, which the proxy also speaks to this app (an HTTP/2 caller's
    // request would go on over HTTP/2).
    let (parts, body, _) = send(&http1_client(), get(&format!("http://{inbound}/both"), "reviews", &[])).await;
    assert_eq!(parts.status, 200, "{parts:?} {body:?}");
    assert_eq!(&body[..], b"0123456789", "{parts:?}");
    assert_ne!(parts.headers.get("content-length").map(|v| v.as_bytes()), Some(&b"5"[..]));
}

#[tokio::test]
async fn a_request_does_not_wait_behind_an_upload_the_app_answered_early() {
    // The app answers each request as soon as it has the head, as one that rejects an
    // upload would, then reads and discards the rest. The upload never ends here, so
    // the upstream connection that carries it stays busy sending it.
    let app = raw_app(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly").await;
    let (proxy, _dir) = proxy_in_front_of(app).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");

    let (mut upload, chunks) = futures::channel::mpsc::channel::<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>(4);
    futures::SinkExt::send(&mut upload, Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![b'u'; 64 * 1024])))).await.expect("first chunk");
    let request = http::Request::post(format!("http://{inbound}/upload"))
        .header("host", "reviews")
        .body(http_body_util::StreamBody::new(chunks).boxed())
        .expect("request");
    let first = http1_client().request(request).await.expect("early answer");
    assert_eq!(first.status(), 200);
    // The app keeps its connection (and reads the body on, as nginx does): so does the
    // caller's, with no `Connection: close`.
    assert!(!first.headers().contains_key("connection"), "{:?}", first.headers());
    assert_eq!(&first.into_body().collect().await.expect("body").to_bytes()[..], b"early");

    // Another caller's request, with the upload still going: answered, not stuck
    // waiting for that connection.
    let second = tokio::time::timeout(Duration::from_secs(5), send(&http1_client(), get(&format!("http://{inbound}/next"), "reviews", &[])))
        .await
        .expect("second request answered while the upload still runs");
    assert_eq!(second.0.status, 200);
    assert_eq!(&second.1[..], b"early");
    drop(upload);
    proxy.stop().await;
}

/// An app that refuses every upload as soon as it has the request head, as one with a
/// body limit does: it answers 413, ends its side, reads on for 100 ms, and closes.
async fn refusing_app() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp_app(move |mut stream| async move {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(n) if n > 0 => head.extend_from_slice(&buffer[..n]),
                _ => return,
            }
        }
        let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large";
        if stream.write_all(answer).await.is_err() || stream.shutdown().await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), async {
            while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        })
        .await;
    })
    .await
}

/// An upload the app refuses before reading it gets the app's 413 through both
/// proxies, every time: a proxy that closes a connection whose request it did not read
/// to the end lingers, so the proxy in front is not reset before it reads the answer
/// (which it then turned into 503 `UC`, about every other time).
#[tokio::test]
async fn an_upload_refused_before_it_was_read_gets_the_apps_answer_through_two_proxies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh_path = dir.path().join("mesh.yaml");
    let dead = dead_address().await;
    let collector = format!("http://{dead}");
    let reviews = bind_proxy(&mesh_path, "reviews", "v1", Some(refusing_app().await), &collector, 0.0).await;
    let productpage = bind_proxy(&mesh_path, "productpage", "v1", None, &collector, 0.0).await;
    write_mesh(&mesh_path, reviews.addresses.inbound.expect("inbound"), dead);
    let (reviews, productpage) = (reviews.start(), productpage.start());
    let client = http1_client();
    for attempt in 0..8 {
        // 64 MiB, more than the sockets between here and the app hold (loopback buffers
        // grow to several MiB each: with 8 MiB, about one attempt in seven had all of it
        // read by the proxies before the app's answer, and rightly kept the connection).
        let chunks = (0..1024).map(|_| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(vec![b'u'; 64 * 1024]))));
        let request = http::Request::post(productpage.outbound_url("/upload"))
            .header("host", "reviews")
            .body(http_body_util::StreamBody::new(futures::stream::iter(chunks)).boxed())
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await.expect("answered in time");
        let response = response.unwrap_or_else(|error| panic!("attempt {attempt}: {error:?}"));
        assert_eq!(response.status(), 413, "attempt {attempt}: {:?}", response.headers());
        assert_eq!(response.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]), "attempt {attempt}: the app closes, so does the caller's connection");
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        assert_eq!(body.ok().as_deref(), Some(&b"too large"[..]), "attempt {attempt}");
    }
    // The proxy's own answer to a request whose body it never read says so too.
    let request = http::Request::post(productpage.outbound_url("/upload"))
        .header("host", "nosuch")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![b'u'; 64 * 1024])).map_err(|never| match never {}).boxed())
        .expect("request");
    let response = client.request(request).await.expect("local reply");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
    productpage.stop().await;
    reviews.stop().await;
}

#[tokio::test]
async fn retried_503s_reuse_their_upstream_connection() {
    // Istio's default policy retries a 503 twice: three attempts per call, each on the
    // connection the one before used (its short body is read, not dropped).
    let mesh = start_mesh(0.0).await;
    let client = http1_client();
    for _ in 0..5 {
        let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/status/503"), "reviews", &[])).await;
        assert_eq!(parts.status, 503);
    }
    let (_, stats) = admin_get(&mesh.reviews, "/stats/prometheus").await;
    let opened = labelled_counters(&stats, "meshtel_proxy_downstream_connections_total", r#"listener="inbound""#).values().sum::<f64>();
    // One client connection lands on one outbound worker, whose pool needs one.
    assert_eq!(opened, 1.0, "15 attempts over {opened} connections");
    let (_, stats) = admin_get(&mesh.productpage, "/stats/prometheus").await;
    let retried = labelled_counters(&stats, "meshtel_proxy_retries_total", r#"result="sent""#).values().sum::<f64>();
    assert_eq!(retried, 10.0, "two retries per call");
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}

#[tokio::test]
async fn a_response_given_up_for_a_retry_is_read_to_its_end_not_cut_off() {
    // Cut off before its late body, each given-up attempt read to the callee's proxy as
    // its caller gone (`DC`), for a response the app gave in full.
    let mesh = start_mesh(0.0).await;
    let client = http1_client();
    let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/late-body/503"), "reviews", &[])).await;
    assert_eq!(parts.status, 503);
    let records = mesh.collector.wait_records(4).await;
    let destination = meshtel_model::mixer::Reporter::Destination as i32;
    let flags: Vec<(bool, &str)> = records.iter().map(|r| (r.reporter == destination, r.response_flags.as_str())).collect();
    assert_eq!(flags.iter().filter(|(callee, _)| *callee).count(), 3, "{flags:?}");
    assert!(flags.iter().all(|(_, f)| !f.contains("DC")), "{flags:?}");
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}

/// What the proxy does not forward as asked: `CONNECT` (no tunnels: 404 `NR`, as Envoy
/// without a CONNECT route), a transfer coding other than `chunked` (501, RFC 9112
/// §6.1); and `Expect: 100-continue`, which it answers itself, is not sent on.
#[tokio::test]
async fn connect_and_unknown_transfer_codings_are_refused_and_expect_is_answered_here() {
    use crate::routing_support::raw_exchange;
    let mesh = start_mesh(1.0).await;
    let outbound = mesh.productpage.addresses.outbound;
    let wait = Duration::from_secs(2);
    let connect = "CONNECT reviews:9080 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n";
    let outcome = raw_exchange(outbound, connect.as_bytes(), wait).await;
    assert!(outcome.status_line.starts_with("HTTP/1.1 404 "), "{outcome:?}");
    let gzip = "POST /echo HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let outcome = raw_exchange(outbound, gzip.as_bytes(), wait).await;
    assert!(outcome.status_line.starts_with("HTTP/1.1 501 "), "{outcome:?}");
    assert_eq!(mesh.upstream.requests.load(Ordering::SeqCst), 0, "neither reached the app");
    let expect = "POST /echo HTTP/1.1\r\nHost: reviews\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello";
    let outcome = raw_exchange(outbound, expect.as_bytes(), wait).await;
    assert!(outcome.body.contains("hello"), "{outcome:?}");
    let seen = mesh.upstream.seen.lock().clone();
    assert!(!seen.headers.contains_key("expect"), "{:?}", seen.headers);
    let records = mesh.collector.wait_records(4).await;
    let mut outcomes: Vec<(u32, &str)> =
        records.iter().filter(|r| r.response_code != 200).map(|r| (r.response_code, r.response_flags.as_str())).collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, [(404, "NR"), (501, "DPE")]);
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}

/// An HTTP/2 caller whose upload an HTTP/1.1 app answers before reading it (and then
/// reads on) gets the answer, and its upload ends instead of waiting for ever.
#[tokio::test]
async fn an_h2_upload_answered_early_by_an_http1_app_ends() {
    let app = raw_app(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly").await;
    let (proxy, _dir) = proxy_in_front_of_with(app, |config| config.app_protocol = meshtel_proxy::config::AppProtocol::Http1).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    // 10 MiB, far over the stream's flow-control window.
    let chunks = futures::StreamExt::map(futures::stream::iter(0..160), move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(vec![b'u'; 64 * 1024])))
    });
    let request = http::Request::post(format!("http://{inbound}/upload"))
        .header("host", "reviews")
        .body(http_body_util::StreamBody::new(chunks).boxed())
        .expect("request");
    let exchange = async {
        let response = h2c_client().request(request).await.expect("answer");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.map(|b| b.to_bytes())
    };
    let body = tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("answered in time");
    assert_eq!(body.ok().as_deref(), Some(&b"early"[..]));
    // The upload is not left waiting: wait for it to be taken or cut.
    let taken = tokio::time::timeout(Duration::from_secs(10), async {
        while sent.load(Ordering::SeqCst) < 160 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(taken.is_ok(), "the upload stopped after {} of 160 chunks", sent.load(Ordering::SeqCst));
    proxy.stop().await;
}

/// A request the caller's outbound takes at its head limits (header fields and bytes,
/// over HTTP/1.1 and HTTP/2) reaches the app: the callee's inbound has room for the
/// headers the caller's proxy added (about 600 bytes in 11 fields). Past them, the
/// outbound refuses it with 431 itself.
#[tokio::test]
async fn a_request_at_the_outbounds_head_limits_crosses_the_pair() {
    let mesh = start_mesh(100.0).await;
    let many: Vec<(String, String)> = (0..94).map(|i| (format!("x-h{i}"), "v".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let big = "a".repeat(58_000);
    for (client, name) in [(http1_client(), "HTTP/1.1"), (h2c_client(), "HTTP/2")] {
        for headers in [many.as_slice(), &[("x-big", big.as_str())]] {
            let (parts, _, _) = send(&client, get(&mesh.productpage.outbound_url("/"), "reviews:9080", headers)).await;
            assert_eq!(parts.status, 200, "{name}: {} headers, {} bytes", headers.len(), headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
        }
    }
    let too_many: Vec<(String, String)> = (0..101).map(|i| (format!("x-h{i}"), "v".to_owned())).collect();
    let too_many: Vec<(&str, &str)> = too_many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (parts, _, _) = send(&http1_client(), get(&mesh.productpage.outbound_url("/"), "reviews:9080", &too_many)).await;
    assert_eq!(parts.status, 431);
    // The inbound's own HTTP/1.1 limit is exact, 128 KiB, however the head arrives.
    use crate::routing_support::raw_exchange;
    let inbound = mesh.reviews.addresses.inbound.expect("inbound");
    for (bytes, status) in [(120_000, "HTTP/1.1 200 OK"), (140_000, "HTTP/1.1 431 Request Header Fields Too Large")] {
        let request = format!("GET / HTTP/1.1\r\nHost: reviews:9080\r\nx-big: {}\r\nConnection: close\r\n\r\n", "a".repeat(bytes));
        let outcome = raw_exchange(inbound, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(outcome.status_line, status, "a {bytes}-byte header at the inbound");
    }
    mesh.productpage.stop().await;
    mesh.reviews.stop().await;
}
