//! The downstream's request body in the caller's outbound proxy: a body that breaks
//! (400 `DPE`) or stops arriving (408 `SI`, `--body-idle-timeout`) is the caller's
//! failure, and the instance it was being sent to is neither ejected nor retried.

use std::time::Duration;

use crate::routing::{documents, virtual_service};
use crate::routing_support::*;
use crate::support::*;

/// A `DestinationRule` for `host` that ejects its instance after two consecutive 5xx.
fn ejected_after_two_failures(host: &str) -> String {
    let policy = "  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
";
    subsets_rule(host, &["v1"], policy)
}

/// A request whose body breaks is the caller's fault: 400 `DPE`, and the instance it
/// was being sent to is neither ejected nor retried.
#[tokio::test]
async fn a_malformed_request_body_is_400_dpe_and_the_upstream_stays_healthy() {
    let mesh = start_routing(vec![app("ratings", "v1", Behaviour::OK)], &ejected_after_two_failures("ratings"), 0.0).await;
    let outbound = mesh.proxy.addresses.outbound;
    let head = "POST /ratings/0 HTTP/1.1\r\nHost: ratings:9080\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    // A bad chunk size at once, and one after a good chunk: both streamed (no size).
    let bodies = ["zz\r\n", "5\r\nhello\r\nzz\r\n", "zz\r\n"];
    for body in bodies {
        let outcome = raw_exchange(outbound, format!("{head}{body}").as_bytes(), Duration::from_secs(5)).await;
        assert!(outcome.status_line.starts_with("HTTP/1.1 400 "), "{body:?}: {outcome:?}");
        assert_eq!(outcome.body, "bad request body", "{body:?}");
    }
    let client = http1_client();
    let outcome = mesh.call(&client, "ratings", "/ratings/0", &[]).await;
    assert_eq!((outcome.status, outcome.body.as_str()), (200, "ratings-v1"), "the instance was not ejected");
    let stats = mesh.stats().await;
    assert_eq!(counter(&stats, "meshtel_proxy_outlier_ejections_total"), 0.0, "{stats}");
    assert_eq!(labelled(&stats, "meshtel_proxy_retries_total", "result=\"sent\""), 0.0, "{stats}");
    let records = mesh.records(bodies.len() + 1).await;
    for record in records.iter().filter(|r| r.response_code != 200) {
        assert_eq!((record.response_code, flags(record)), (400, vec!["DPE"]), "{record:?}");
    }
    mesh.stop().await;
}

/// A request body that stops arriving is answered 408 `SI` once it has been idle for
/// the body idle timeout, or when the route's timeout ends first, and its connection
/// is closed; the instance waiting for it is not blamed.
#[tokio::test]
async fn a_request_body_that_stops_arriving_is_408_si_and_the_upstream_stays_healthy() {
    let idle = Duration::from_millis(500);
    let details_timeout = "  - route:
    - destination:
        host: details
    timeout: 0.2s
";
    let rules = documents(&[
        &ejected_after_two_failures("ratings"),
        &ejected_after_two_failures("details"),
        &virtual_service("v1beta1", "details", details_timeout),
    ]);
    let apps = vec![app("ratings", "v1", Behaviour::OK), app("details", "v1", Behaviour::OK)];
    let mesh = start_routing_with(apps, &rules, 0.0, |config| config.body_idle_timeout = Some(idle)).await;
    let outbound = mesh.proxy.addresses.outbound;
    let post = |host: &str, headers: &str, sent: &str| format!("POST /{host}/0 HTTP/1.1\r\nHost: {host}:9080\r\n{headers}\r\n{sent}");
    let cases = [
        // Announced small: buffered for retries before anything is sent.
        (post("ratings", "Content-Length: 10\r\n", "abc"), idle),
        // Streamed to the instance, which waits for the rest.
        (post("ratings", "Content-Length: 100000\r\n", "abc"), idle),
        (post("ratings", "Transfer-Encoding: chunked\r\n", "5\r\nhel"), idle),
        // The route's timeout ends while the body is still arriving.
        (post("details", "Content-Length: 100000\r\n", "abc"), Duration::from_millis(200)),
    ];
    for (request, after) in &cases {
        let outcome = raw_exchange(outbound, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(outcome.status_line.starts_with("HTTP/1.1 408 "), "{request:?}: {outcome:?}");
        assert_eq!(outcome.body, "stream timeout", "{request:?}");
        assert!(outcome.closed, "the connection is closed: {request:?}");
        assert!(outcome.head.to_ascii_lowercase().contains("\r\nconnection: close"), "and says so: {outcome:?}");
        assert!(outcome.latency >= *after && outcome.latency < *after + Duration::from_secs(2), "{request:?}: answered after {:?}", outcome.latency);
    }
    let client = http1_client();
    for host in ["ratings", "details"] {
        let outcome = mesh.call(&client, host, &format!("/{host}/0"), &[]).await;
        assert_eq!((outcome.status, outcome.body), (200, format!("{host}-v1")), "the instance was not ejected");
    }
    let stats = mesh.stats().await;
    assert_eq!(counter(&stats, "meshtel_proxy_outlier_ejections_total"), 0.0, "{stats}");
    let records = mesh.records(cases.len() + 2).await;
    for record in records.iter().filter(|r| r.response_code != 200) {
        assert_eq!((record.response_code, flags(record)), (408, vec!["SI"]), "{record:?}");
    }
    mesh.stop().await;
}

/// A body that stops after moving for a while is cut the request timeout after its
/// last byte (408 `SI`: the caller stopped), not as late as twice that.
#[tokio::test]
async fn a_body_that_stops_is_cut_a_request_timeout_after_its_last_byte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = Duration::from_millis(1000);
    let apps = vec![app("ratings", "v1", Behaviour::OK)];
    let rules = documents(&[&ejected_after_two_failures("ratings")]);
    let mesh = start_routing_with(apps, &rules, 0.0, |config| {
        config.request_timeout = Some(timeout);
        config.body_idle_timeout = Some(Duration::from_secs(30));
    })
    .await;
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(mesh.proxy.addresses.outbound).await.unwrap();
    let head = "POST /ratings/0 HTTP/1.1\r\nHost: ratings:9080\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // Bytes keep coming for 600 ms, then stop with the body unfinished.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(b"5\r\nhello\r\n").await.unwrap();
    }
    let last_byte = started.elapsed();
    let mut received = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut received)).await.unwrap().unwrap();
    let answered = started.elapsed();
    let text = String::from_utf8_lossy(&received[..n]);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    let after_last_byte = answered - last_byte;
    assert!(
        after_last_byte >= timeout && after_last_byte < timeout + Duration::from_millis(400),
        "answered {after_last_byte:?} after the last byte"
    );
    mesh.stop().await;
}

/// Writes a chunked POST to `host` in `chunks` pieces `every` apart (the connection
/// closed after the answer), then reads the answer.
async fn slow_upload(addr: std::net::SocketAddr, host: &str, chunks: usize, every: Duration) -> RawOutcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the proxy");
    let head = format!("POST /{host}/0 HTTP/1.1\r\nHost: {host}:9080\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("head");
    for _ in 0..chunks {
        tokio::time::sleep(every).await;
        stream.write_all(b"5\r\nhello\r\n").await.expect("chunk");
    }
    stream.write_all(b"0\r\n\r\n").await.expect("end");
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await.is_ok();
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    RawOutcome { status_line: head.lines().next().unwrap_or("").to_owned(), head: head.to_owned(), body: body.to_owned(), closed, latency: started.elapsed() }
}

/// The request timeout runs from the end of the request body, as Envoy's route timeout
/// does: an upload that keeps arriving for longer than it is forwarded whole, with the
/// route's timeout (details) and the proxy's own (ratings, no route).
#[tokio::test]
async fn an_upload_that_keeps_arriving_outlasts_the_request_timeout() {
    let details_timeout = "  - route:
    - destination:
        host: details
    timeout: 0.2s
";
    let rules = documents(&[&virtual_service("v1beta1", "details", details_timeout)]);
    let apps = vec![app("ratings", "v1", Behaviour::OK), app("details", "v1", Behaviour::OK)];
    let mesh = start_routing_with(apps, &rules, 0.0, |config| config.request_timeout = Some(Duration::from_millis(200))).await;
    let outbound = mesh.proxy.addresses.outbound;
    for host in ["details", "ratings"] {
        // Eight chunks 100 ms apart: four times the timeout.
        let outcome = slow_upload(outbound, host, 8, Duration::from_millis(100)).await;
        assert!(outcome.status_line.starts_with("HTTP/1.1 200 "), "{host}: {outcome:?}");
        assert!(outcome.body.contains(&format!("{host}-v1")), "{host}: {outcome:?}");
        assert!(outcome.latency >= Duration::from_millis(800), "{host}: {outcome:?}");
    }
    mesh.stop().await;
}
