//! WebSocket upgrades through an outbound and an inbound proxy to a real app.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::websocket_upgrade;
use crate::test_support::*;

fn body(text: &'static str) -> TestBody {
    Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed()
}

/// An app that accepts WebSocket upgrades on `/ws` (then echoes every byte), refuses
/// them on `/deny` (403), and answers 400 to a `/ws` request that lost its upgrade
/// headers.
async fn websocket_app() -> SocketAddr {
    start_app(|mut request: Request<Incoming>| async move {
        let wants = websocket_upgrade(request.headers()).is_some();
        match (request.uri().path(), wants) {
            ("/ws", true) => {
                let upgrade = hyper::upgrade::on(&mut request);
                tokio::spawn(async move {
                    if let Ok(upgraded) = upgrade.await {
                        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                        let _ = tokio::io::copy(&mut reader, &mut writer).await;
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("upgrade", "websocket")
                    .header("connection", "Upgrade")
                    .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                    .body(Empty::new().map_err(|never| match never {}).boxed())
                    .expect("101")
            }
            ("/deny", _) => Response::builder().status(StatusCode::FORBIDDEN).body(body("denied")).expect("403"),
            (_, _) => Response::builder().status(StatusCode::BAD_REQUEST).body(body("no upgrade")).expect("400"),
        }
    })
    .await
}

const HANDSHAKE: &str = "Host: echo\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Reads a response head (up to the blank line).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.expect("read head"), 1, "closed mid-head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn a_websocket_is_spliced_through_both_proxies_and_reported_once_with_101() {
    let collector = start_collector().await;
    let app = websocket_app().await;
    let callee = start_proxy("services: []\n", "echo", Some(app), |config| config.collector = collector.url()).await;
    let inbound = callee.addresses.inbound.expect("inbound");
    let mesh = format!("services:\n  - name: echo\n    endpoints:\n      - address: {inbound}\n        labels: {{ app: echo, version: v1 }}\n");
    let caller = start_proxy(&mesh, "productpage", None, |config| config.collector = collector.url()).await;

    let mut stream = TcpStream::connect(caller.addresses.outbound).await.expect("connect");
    stream.write_all(format!("GET /ws HTTP/1.1\r\n{HANDSHAKE}").as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"), "{head}");
    for message in [&b"ping"[..], b"a second message"] {
        stream.write_all(message).await.expect("write message");
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(echoed, message);
    }
    // Not reported while open: the record covers the WebSocket's whole life.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(collector.records.lock().is_empty(), "reported before the close");
    drop(stream);
    let records = collector.wait_records(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(collector.records.lock().len(), 2, "once by each proxy");
    for record in &records {
        assert_eq!(record.response_code, 101, "{record:?}");
        assert!(record.response_flags.is_empty(), "{record:?}");
        assert!(record.request_bytes >= 20 && record.response_bytes >= 20, "spliced bytes counted: {record:?}");
        assert!(record.duration_nanos >= 200_000_000, "whole life: {record:?}");
    }
}

#[tokio::test]
async fn an_upgrade_the_app_refuses_is_forwarded_as_a_plain_response() {
    let app = websocket_app().await;
    let callee = start_proxy("services: []\n", "echo", Some(app), |_| {}).await;
    let inbound = callee.addresses.inbound.expect("inbound");
    // Through the inbound proxy directly, on a kept-alive connection.
    let stream = TcpStream::connect(inbound).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection.with_upgrades());
    let request = |path: &str, upgrade: bool| {
        let mut builder = Request::get(path).header("host", "echo");
        if upgrade {
            builder = builder.header("connection", "Upgrade").header("upgrade", "websocket");
        }
        builder.body(Empty::<Bytes>::new()).expect("request")
    };
    let denied = sender.send_request(request("/deny", true)).await.expect("response");
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(&denied.into_body().collect().await.expect("body").to_bytes()[..], b"denied");
    // The connection goes on; an upgrade to anything but websocket is stripped.
    sender.ready().await.expect("ready");
    let mut h2c = request("/ws", false);
    h2c.headers_mut().insert("connection", "Upgrade".parse().expect("value"));
    h2c.headers_mut().insert("upgrade", "h2c".parse().expect("value"));
    assert_eq!(sender.send_request(h2c).await.expect("response").status(), StatusCode::BAD_REQUEST);
}

/// A raw upstream that answers every WebSocket handshake with `101`, then echoes.
async fn raw_websocket_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("app addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

/// Opens a WebSocket through `proxy` and checks that it echoes.
async fn open_websocket(proxy: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream.write_all(format!("GET /ws HTTP/1.1\r\n{HANDSHAKE}").as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo(&mut stream, b"ping").await;
    stream
}

async fn echo(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.expect("write message");
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(echoed, message);
}

/// A proxy told to stop keeps its WebSockets spliced for the drain, as its other
/// connections; one still open when the drain ends is closed. Each is reported before
/// the proxy exits: the one its caller closed as usual, the one the proxy closed `DC`.
#[tokio::test]
async fn websockets_open_at_shutdown_are_drained_and_reported() {
    use std::time::{Duration, Instant};
    let collector = start_collector().await;
    let app = raw_websocket_app().await;
    let proxy = start_proxy("services: []\n", "echo", Some(app), |config| config.collector = collector.url()).await;
    let inbound = proxy.addresses.inbound.expect("inbound");
    let mut closed_by_caller = open_websocket(inbound).await;
    let mut left_open = open_websocket(inbound).await;
    // Both open, neither reported yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(collector.records.lock().is_empty(), "reported before the close");

    let stopping = Instant::now();
    let stopped = tokio::spawn(proxy.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still spliced during the drain.
    echo(&mut closed_by_caller, b"during the drain").await;
    drop(closed_by_caller);
    let result = tokio::time::timeout(crate::server::DRAIN_TIMEOUT + Duration::from_secs(5), stopped).await;
    result.expect("the proxy stopped").expect("proxy task").expect("proxy ran cleanly");
    let took = stopping.elapsed();
    let drain = crate::server::DRAIN_TIMEOUT;
    assert!(took >= drain && took < drain + Duration::from_secs(2), "stopped after {took:?}");
    // The proxy closed the WebSocket left open.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(1), left_open.read(&mut byte)).await.expect("closed by the proxy");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Both reported before the proxy exited.
    let mut records = collector.records.lock().clone();
    records.sort_by(|a, b| a.response_flags.cmp(&b.response_flags));
    let summary: Vec<_> = records.iter().map(|r| (r.response_code, r.response_flags.as_str())).collect();
    assert_eq!(summary, [(101, ""), (101, "DC")], "{records:?}");
    assert!(records[0].request_bytes >= 20 && records[0].response_bytes >= 20, "spliced bytes counted: {:?}", records[0]);
    assert!(records[1].duration_nanos >= drain.as_nanos() as u64, "whole life: {:?}", records[1]);
}

#[test]
fn only_a_websocket_upgrade_is_kept() {
    let headers = |connection: &str, upgrade: &str| {
        let mut map = http::HeaderMap::new();
        map.insert("connection", connection.parse().expect("value"));
        map.insert("upgrade", upgrade.parse().expect("value"));
        map
    };
    assert!(websocket_upgrade(&headers("keep-alive, Upgrade", "WebSocket")).is_some());
    assert!(websocket_upgrade(&headers("keep-alive", "websocket")).is_none(), "Connection must name upgrade");
    assert!(websocket_upgrade(&headers("upgrade", "h2c")).is_none());
    let mut request = headers("Upgrade", "websocket");
    assert!(crate::forward::strip_hop_by_hop_headers(&mut request, true));
    assert_eq!(request["upgrade"], "websocket");
    assert_eq!(request["connection"], "upgrade");
    let mut not_kept = headers("Upgrade", "websocket");
    assert!(!crate::forward::strip_hop_by_hop_headers(&mut not_kept, false));
    assert!(not_kept.is_empty());
}
