//! gRPC through the proxy pair as Istio's sidecars let it through: many streams on one
//! connection, the client's `grpc-timeout` as the call's timeout, quiet streams.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::*;

/// A gRPC request through productpage's outbound listener to reviews, with `body`.
fn grpc_request(mesh: &Mesh, path: &str, grpc_timeout: Option<&str>, body: BoxBody) -> http::Request<BoxBody> {
    let mut request = http::Request::post(mesh.productpage.outbound_url(path))
        .header("host", "reviews.default.svc.cluster.local")
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = grpc_timeout {
        request = request.header("grpc-timeout", timeout);
    }
    request.body(body).expect("request")
}

/// A body fed by the returned sender, open until it is dropped.
fn open_body() -> (mpsc::Sender<Result<Frame<Bytes>, Infallible>>, BoxBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx))))
}

/// Collects each call's response head (a 200) into `into`, with what it came with;
/// whether all came within `within`.
async fn heads_within<K, E: std::fmt::Debug>(
    mut heads: FuturesUnordered<impl std::future::Future<Output = (K, Result<http::Response<hyper::body::Incoming>, E>)>>,
    within: Duration,
    into: &mut Vec<(K, http::Response<hyper::body::Incoming>)>,
) -> bool {
    tokio::time::timeout(within, async {
        while let Some((key, response)) = heads.next().await {
            let response = response.expect("response head");
            assert_eq!(response.status(), 200);
            into.push((key, response));
        }
    })
    .await
    .is_ok()
}

fn message(text: &'static [u8]) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(Bytes::from_static(text)))
}

#[tokio::test]
async fn more_streams_than_hypers_default_are_open_at_once_on_one_connection() {
    let mesh = start_mesh(0.0).await;
    let client = h2c_client();
    // Each stream's response head comes while its request body is still open (the app
    // echoes it), so every stream holds its slot until the end.
    let streams = 250;
    let mut senders = Vec::with_capacity(streams);
    let heads = FuturesUnordered::new();
    for i in 0..streams {
        let (tx, body) = open_body();
        senders.push(tx);
        let head = client.request(grpc_request(&mesh, "/echo.Echo/Chat", None, body));
        heads.push(async move { (i, head.await) });
    }
    let mut open = Vec::with_capacity(streams);
    let all = heads_within(heads, Duration::from_secs(20), &mut open).await;
    assert!(all, "{} of {streams} streams got their response head", open.len());
    open.sort_by_key(|(i, _)| *i);
    // Every stream still works: one message each way, then the end.
    for (tx, (_, response)) in senders.into_iter().zip(open) {
        tx.send(message(b"\0\0\0\0\x01a")).await.expect("send");
        drop(tx);
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"\0\0\0\0\x01a");
    }
}

#[tokio::test]
async fn a_grpc_call_waits_as_long_as_its_deadline_says_not_the_proxys_timeout() {
    // A 500 ms request timeout for plain HTTP; the app takes 1.5 s to answer.
    let mesh = start_mesh_with(0.0, |config| config.request_timeout = Some(Duration::from_millis(500))).await;
    let client = h2c_client();
    let call = |deadline| {
        let body = http_body_util::Full::new(Bytes::from_static(b"\0\0\0\0\x01a")).map_err(|never| match never {}).boxed();
        client.request(grpc_request(&mesh, "/grpc/slow.Reviews/Get", deadline, body))
    };
    // With a deadline past the answer, and with none: answered.
    for deadline in [Some("5S"), None] {
        let response = call(deadline).await.expect("response");
        assert_eq!(response.status(), 200, "{deadline:?}");
        let trailers = response.into_body().collect().await.expect("body").trailers().cloned();
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0", "{deadline:?}");
    }
    // A deadline before the answer: cut there, as the upstream request timeout.
    let started = std::time::Instant::now();
    let response = call(Some("300m")).await.expect("response");
    let waited = started.elapsed();
    assert!(waited < UPSTREAM_SLOW, "cut after {waited:?}");
    assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    // Plain HTTP keeps the proxy's timeout.
    let plain = http::Request::get(mesh.productpage.outbound_url("/grpc/slow-but-http"))
        .header("host", "reviews.default.svc.cluster.local")
        .body(empty())
        .expect("request");
    let (parts, _, _) = send(&client, plain).await;
    assert_eq!(parts.status, 504);
}

#[tokio::test]
async fn a_grpc_stream_may_stay_silent_longer_than_the_http_body_idle_timeout() {
    let mesh = start_mesh_with(0.0, |config| config.body_idle_timeout = Some(Duration::from_millis(300))).await;
    let client = h2c_client();
    let (tx, body) = open_body();
    let response = client.request(grpc_request(&mesh, "/echo.Echo/Chat", None, body)).await.expect("response");
    assert_eq!(response.status(), 200);
    tx.send(message(b"\0\0\0\0\x01a")).await.expect("send");
    // Silent for three times the idle timeout, then one more message and the end.
    tokio::time::sleep(Duration::from_millis(900)).await;
    tx.send(message(b"\0\0\0\0\x01b")).await.expect("send");
    drop(tx);
    let body = response.into_body().collect().await.expect("the stream was not cut").to_bytes();
    assert_eq!(&body[..], b"\0\0\0\0\x01a\0\0\0\0\x01b");
}

/// gRPC travels over HTTP/2 only: its content type on an HTTP/1.1 request lifts none of
/// plain HTTP's limits.
#[tokio::test]
async fn a_grpc_content_type_over_http1_keeps_the_http_timeout() {
    let mesh = start_mesh_with(0.0, |config| {
        config.request_timeout = Some(Duration::from_millis(500));
        config.app_protocol = meshtel_proxy::AppProtocol::Http1;
    })
    .await;
    let inbound = mesh.reviews.addresses.inbound.expect("inbound listener");
    let posing = http::Request::post(format!("http://{inbound}/grpc/slow.Reviews/Get"))
        .header("host", "reviews")
        .header("content-type", "application/grpc")
        .body(empty())
        .expect("request");
    let started = std::time::Instant::now();
    let (parts, _, _) = send(&http1_client(), posing).await;
    assert!(started.elapsed() < UPSTREAM_SLOW, "cut after {:?}", started.elapsed());
    // Cut at the request timeout, answered the gRPC way (DEADLINE_EXCEEDED).
    assert_eq!(parts.headers["grpc-status"], "4", "{:?}", parts.headers);
}

/// An h2c app that takes at most `limit` streams per connection and answers every
/// request with a response head at once and a body that ends when its request body
/// does (an echo), counting the connections it accepted.
async fn limited_h2c_app(limit: u32) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(http::Response::new(request.into_body()))
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .max_concurrent_streams(limit)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// An app that takes 100 streams per connection, all held by long calls: the next calls
/// go on a second connection the proxy opens (one for a burst of them), as Envoy does,
/// instead of waiting for one of them to end.
#[tokio::test]
async fn calls_past_the_apps_stream_limit_go_on_another_connection() {
    let (app, accepted) = limited_h2c_app(100).await;
    let (proxy, _dir) = proxy_in_front_of_with(app, |config| config.concurrency = 1).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let client = h2c_client();
    let call = |body: BoxBody| {
        let request = http::Request::post(format!("http://{inbound}/echo.Echo/Chat"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .expect("request");
        client.request(request)
    };
    let mut held = Vec::new();
    for _ in 0..100 {
        let (tx, body) = open_body();
        let response = tokio::time::timeout(Duration::from_secs(5), call(body)).await.expect("a held call's head").expect("response");
        assert_eq!(response.status(), 200);
        held.push((tx, response));
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "the first 100 share one connection");
    // 60 more at once: one more connection between them, not one each.
    let burst = FuturesUnordered::new();
    for _ in 0..60 {
        let (tx, body) = open_body();
        let head = call(body);
        burst.push(async move { (tx, head.await) });
    }
    let all = heads_within(burst, Duration::from_secs(5), &mut held).await;
    assert!(all, "{} of 160 held calls got their head", held.len());
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "one more connection for the burst");
    let body = http_body_util::Full::new(Bytes::from_static(b"\0\0\0\0\x01a")).map_err(|never| match never {}).boxed();
    let response = tokio::time::timeout(Duration::from_secs(3), call(body)).await.expect("the next call is not held up").expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(&response.into_body().collect().await.expect("body").to_bytes()[..], b"\0\0\0\0\x01a");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "room on the second connection");
    // The held calls still work.
    let (tx, response) = held.pop().expect("a held call");
    tx.send(message(b"\0\0\0\0\x01b")).await.expect("send");
    drop(tx);
    assert_eq!(&response.into_body().collect().await.expect("body").to_bytes()[..], b"\0\0\0\0\x01b");
    drop(held);
    proxy.stop().await;
}

/// An h2c app that answers every call with a message, then trailers holding an
/// `x-big` field of the request's `x-size` bytes before `grpc-status: 13`; a request
/// with `x-head` puts that many bytes in the response head instead.
async fn large_trailers_app() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                    let size = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("x-big", "b".repeat(size("x-size").unwrap_or(0)).parse().expect("value"));
                    trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
                    let frames = vec![Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\x01a"))), Ok(Frame::trailers(trailers))];
                    let mut response = http::Response::new(StreamBody::new(futures::stream::iter(frames)));
                    if let Some(head) = size("x-head") {
                        response.headers_mut().insert("x-head", "h".repeat(head).parse().expect("value"));
                    }
                    response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Trailers within the 60 KiB HTTP/2 limit come through whole; larger ones reset the
/// stream (flag `UPE`), as Envoy resets it, never a clean end without them, which
/// would lose the call's gRPC status. A response head over the limit is a 502 `UPE`.
#[tokio::test]
async fn trailers_over_the_header_list_limit_reset_the_stream_instead_of_vanishing() {
    let app = large_trailers_app().await;
    let (proxy, _dir) = proxy_in_front_of_with(app, |_| {}).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .http2_max_header_list_size(1 << 20)
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let call = |header: &'static str, size: usize| {
        let request = http::Request::post(format!("http://{inbound}/echo.Echo/Say"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(header, size.to_string())
            .body(empty())
            .expect("request");
        client.request(request)
    };
    let response = call("x-size", 20 << 10).await.expect("response");
    let collected = response.into_body().collect().await.expect("whole body");
    let trailers = collected.trailers().expect("trailers");
    assert_eq!((trailers["grpc-status"].to_str().unwrap(), trailers["x-big"].len()), ("13", 20 << 10));
    let response = call("x-size", 62 << 10).await.expect("response head");
    let read = response.into_body().collect().await;
    assert!(read.is_err(), "the stream is reset: {:?}", read.map(|c| c.trailers().cloned()));
    // A gRPC caller's local reply: trailers-only, UNAVAILABLE, the upstream's protocol
    // error (not a connection termination).
    let response = call("x-head", 70 << 10).await.expect("response");
    let (status, message) = (&response.headers()["grpc-status"], response.headers()["grpc-message"].to_str().unwrap());
    assert_eq!(status, "14");
    assert!(message.ends_with("reset reason: protocol error"), "{message}");
    proxy.stop().await;
}

/// One caller's rapid-reset flood (each call reset 5 ms after it starts) ends its own
/// connection, and the proxy-to-proxy connection that relayed it is told to go away
/// rather than cut: other callers' gRPC calls through the same pair all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_flood_ends_its_connection_and_spares_other_callers() {
    let mesh = start_mesh(0.0).await;
    let flood = {
        let url = mesh.productpage.outbound_url("/grpc/slow.Reviews/Get");
        tokio::spawn(async move {
            let client = h2c_client();
            for _ in 0..2_000 {
                let request = http::Request::post(url.as_str())
                    .header("host", "reviews.default.svc.cluster.local")
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(empty())
                    .expect("request");
                let _ = tokio::time::timeout(Duration::from_millis(5), client.request(request)).await;
            }
        })
    };
    // Other callers' calls, slow ones (1.5 s), twenty at a time: some are always in
    // flight on the proxy-to-proxy connections the flood shares.
    let innocent = h2c_client();
    let mut failed = Vec::new();
    for _ in 0..4 {
        let calls = (0..20).map(|_| {
            let innocent = innocent.clone();
            let request = grpc_request(&mesh, "/grpc/slow.Reviews/List", None, empty());
            tokio::spawn(async move { send(&innocent, request).await })
        });
        for call in calls.collect::<Vec<_>>() {
            let (parts, _, trailers) = call.await.expect("call task");
            let status = trailers.as_ref().and_then(|t| t.get("grpc-status")).map(|v| v.to_str().unwrap_or("?").to_owned());
            if parts.status != 200 || status.as_deref() != Some("0") {
                failed.push((parts.status, status, parts.headers.get("grpc-message").cloned()));
            }
        }
    }
    flood.await.expect("flood task");
    assert!(failed.is_empty(), "{} other calls failed: {failed:?}", failed.len());
    let floods = |proxy| async move {
        let (_, stats) = admin_get(proxy, "/stats/prometheus").await;
        labelled_counters(&stats, "meshtel_proxy_downstream_reset_floods_total", "listener")
    };
    let outbound = floods(&mesh.productpage).await;
    let inbound = floods(&mesh.reviews).await;
    eprintln!("reset floods: productpage {outbound:?}, reviews {inbound:?}");
    assert!(outbound.get("listener=\"outbound\"").copied().unwrap_or(0.0) >= 1.0, "{outbound:?}");
}
