//! Retries of streamed request bodies, through a real proxy to real apps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::test_support::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn mesh(service: &str, endpoints: &[SocketAddr]) -> String {
    let mut text = format!("services:\n  - name: {service}\n    endpoints:\n");
    for address in endpoints {
        text.push_str(&format!("      - address: {address}\n        labels: {{ app: {service}, version: v1 }}\n"));
    }
    text
}

fn full(text: String) -> TestBody {
    Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed()
}

/// An app that reads the whole request body and answers with its length; the first
/// `fail_first` requests get `fail_status`. Counts requests.
async fn counting_app(fail_first: usize, fail_status: u16) -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let addr = start_app(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let status = if n < fail_first { fail_status } else { 200 };
            let mut response = Response::new(full(body.len().to_string()));
            *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
            response
        }
    })
    .await;
    (addr, count)
}

/// A streamed request body without a length (chunked on HTTP/1.1, as gRPC's on h2c),
/// fed through the returned sender.
fn streamed() -> (mpsc::Sender<Bytes>, TestBody) {
    let (sender, receiver) = mpsc::channel::<Bytes>(8);
    let frames = tokio_stream::wrappers::ReceiverStream::new(receiver).map(|data| Ok::<_, BoxError>(Frame::data(data)));
    (sender, BodyExt::boxed(StreamBody::new(frames)))
}

/// Sends `body` to the proxy's outbound listener for `host`, over h2c or HTTP/1.1.
async fn send(proxy: &TestProxy, host: &str, h2c: bool, body: TestBody) -> hyper::Result<Response<Incoming>> {
    let stream = tokio::net::TcpStream::connect(proxy.addresses.outbound).await.expect("connect outbound");
    let request = |version| Request::post(format!("http://{host}/echo")).version(version).header("host", host).body(body).expect("request");
    if h2c {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        sender.send_request(request(http::Version::HTTP_2)).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        sender.send_request(request(http::Version::HTTP_11)).await
    }
}

async fn text(response: Response<Incoming>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("response body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_streamed_body_is_retried_after_a_refused_connection() {
    let (app, count) = counting_app(0, 200).await;
    // Round robin over a dead endpoint and the app: every other first attempt is refused.
    let proxy = start_proxy(&mesh("flaky", &[dead_address(), app]), "productpage", None, |_| {}).await;
    for h2c in [false, true, false, true] {
        let (sender, body) = streamed();
        let sending = tokio::spawn(async move {
            for part in ["hello ", "world"] {
                let _ = sender.send(Bytes::from_static(part.as_bytes())).await;
            }
        });
        let response = send(&proxy, "flaky", h2c, body).await.expect("response");
        assert_eq!(text(response).await, (200, "11".to_owned()), "h2c: {h2c}");
        sending.await.expect("sender");
    }
    assert_eq!(count.load(Ordering::SeqCst), 4);
    // Each request whose first pick was the dead endpoint was retried (at least half).
    assert!(admin_counter(&proxy, "meshtel_proxy_retries_total{result=\"sent\"}").await >= 2.0);
}

#[tokio::test]
async fn a_streamed_body_that_ended_is_replayed_on_a_retriable_status() {
    // Istio's default policy retries a 503.
    let (app, count) = counting_app(1, 503).await;
    let proxy = start_proxy(&mesh("ratings", &[app]), "productpage", None, |_| {}).await;
    let (sender, body) = streamed();
    tokio::spawn(async move {
        for part in ["hello ", "world"] {
            let _ = sender.send(Bytes::from_static(part.as_bytes())).await;
        }
    });
    let response = send(&proxy, "ratings", true, body).await.expect("response");
    assert_eq!(text(response).await, (200, "11".to_owned()), "the retry sent the whole body again");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(admin_counter(&proxy, "meshtel_proxy_retries_total{result=\"skipped_body\"}").await, 0.0);
}

#[tokio::test]
async fn a_streamed_body_past_the_replay_limit_is_sent_once_and_counted() {
    let (app, count) = counting_app(usize::MAX, 503).await;
    let proxy = start_proxy(&mesh("ratings", &[app]), "productpage", None, |_| {}).await;
    let (sender, body) = streamed();
    tokio::spawn(async move {
        for _ in 0..4 {
            let _ = sender.send(Bytes::from(vec![b'x'; 25 * 1024])).await;
        }
    });
    let response = send(&proxy, "ratings", false, body).await.expect("response");
    assert_eq!(text(response).await, (503, (100 * 1024).to_string()));
    assert_eq!(count.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(admin_counter(&proxy, "meshtel_proxy_retries_total{result=\"skipped_body\"}").await, 1.0);
}

#[tokio::test]
async fn a_streamed_body_is_forwarded_as_it_arrives() {
    // A client-streaming call: the app must see the first message before the client
    // sends the next, though the proxy keeps a copy for a retry.
    let received = Arc::new(AtomicU64::new(0));
    let seen = received.clone();
    let app = start_app(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let mut body = request.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    seen.fetch_add(data.len() as u64, Ordering::SeqCst);
                }
            }
            Response::new(full(seen.load(Ordering::SeqCst).to_string()))
        }
    })
    .await;
    let proxy = start_proxy(&mesh("stream", &[app]), "productpage", None, |_| {}).await;
    let (sender, body) = streamed();
    let responding = tokio::spawn(async move {
        let proxy = proxy;
        let response = send(&proxy, "stream", true, body).await.expect("response");
        text(response).await
    });
    sender.send(Bytes::from_static(b"first")).await.expect("send");
    eventually("the first message at the app", || (received.load(Ordering::SeqCst) == 5).then_some(())).await;
    sender.send(Bytes::from_static(b"second")).await.expect("send");
    drop(sender);
    assert_eq!(responding.await.expect("client"), (200, "11".to_owned()));
}
