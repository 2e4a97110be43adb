//! The request as the proxy receives it: `Connection` cannot remove what the proxy
//! adds, and `Host` is single, valid, and the absolute-form target's when there is one.
//! Real proxies on 127.0.0.1:0 between a raw client and raw upstreams that keep the
//! request heads they receive byte for byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::test_support::*;

/// An HTTP/1.1 app that keeps every request head it receives and answers `ok` (or a
/// response of its own).
struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        RawUpstream::answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await
    }

    async fn answering(response: &'static [u8]) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    // Requests without bodies, one after the other on the connection.
                    let mut buffer = Vec::new();
                    loop {
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buffer.drain(..end + 4).collect();
                            kept.lock().push(String::from_utf8_lossy(&head).into_owned());
                            if stream.write_all(response).await.is_err() {
                                return;
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        RawUpstream { addr, heads }
    }

    /// The request heads received so far.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().clone()
    }

    /// The only request head received.
    fn only_head(&self) -> String {
        let heads = self.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        heads.into_iter().next().expect("one head")
    }
}

/// The values of header `name` in a request head, in order.
fn values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(field, _)| field.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
        .collect()
}

/// Sends `request` (a whole HTTP/1.1 request, asking to close) to `addr` and returns the
/// response: status and body.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let (status, _, body) = exchange_with_head(addr, request).await;
    (status, body)
}

/// [`exchange`], with the response head too.
async fn exchange_with_head(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect proxy");
    stream.write_all(request.as_bytes()).await.expect("send request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.expect("answer in time").expect("read answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").map(|(head, body)| (head.to_owned(), body.to_owned())).unwrap_or_default();
    (status, head, body)
}

fn mesh_of(services: &[(&str, SocketAddr)]) -> String {
    let mut mesh = String::from("services:\n");
    for (name, addr) in services {
        mesh.push_str(&format!("  - name: {name}\n    endpoints: [{{address: \"{addr}\", labels: {{app: {name}, version: v1}}}}]\n"));
    }
    mesh
}

#[tokio::test]
async fn connection_cannot_remove_what_the_outbound_proxy_adds() {
    let upstream = RawUpstream::start().await;
    let proxy = start_proxy(&mesh_of(&[("up", upstream.addr)]), "front", None, |_| {}).await;
    let request = "GET /q HTTP/1.1\r\nHost: up\r\n\
        Connection: close, x-meshtel-peer-workload, x-meshtel-peer-app, traceparent, x-b3-traceid, host, x-hop\r\n\
        x-hop: 1\r\nx-end-to-end: kept\r\n\
        traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
    let (status, _) = exchange(proxy.addresses.outbound, request).await;
    assert_eq!(status, 200);
    let head = upstream.only_head();
    // The proxy's identity and trace headers, all there.
    assert_eq!(values(&head, "x-meshtel-peer-workload"), ["front-v1"], "{head}");
    assert_eq!(values(&head, "x-meshtel-peer-app"), ["front"], "{head}");
    assert_eq!(values(&head, "traceparent").len(), 1, "{head}");
    assert_eq!(values(&head, "x-b3-traceid").len(), 1, "{head}");
    assert_eq!(values(&head, "x-b3-spanid").len(), 1, "{head}");
    // The app's Host, not the endpoint's address.
    assert_eq!(values(&head, "host"), ["up"], "{head}");
    // What the caller sent and named in `Connection` is gone; the rest goes on.
    assert!(values(&head, "x-hop").is_empty(), "{head}");
    assert_eq!(values(&head, "x-end-to-end"), ["kept"], "{head}");
    // The caller's traceparent was hop-by-hop: the proxy started a new trace.
    assert!(!values(&head, "traceparent")[0].contains("0af7651916cd43dd8448eb211c80319c"), "{head}");
}

#[tokio::test]
async fn connection_cannot_remove_what_the_inbound_proxy_adds() {
    let app = RawUpstream::start().await;
    let proxy = start_proxy("services: []\n", "callee", Some(app.addr), |_| {}).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let request = "GET /t HTTP/1.1\r\nHost: callee\r\n\
        Connection: close, traceparent, x-b3-traceid, x-request-id, host, x-hop\r\n\
        x-hop: 1\r\nx-b3-spanid: b7ad6b7169203331\r\n\r\n";
    let (status, _) = exchange(inbound, request).await;
    assert_eq!(status, 200);
    let head = app.only_head();
    assert_eq!(values(&head, "traceparent").len(), 1, "{head}");
    assert_eq!(values(&head, "x-b3-traceid").len(), 1, "{head}");
    assert_eq!(values(&head, "x-request-id").len(), 1, "{head}");
    // The proxy's own span id, not the caller's stray one.
    assert_eq!(values(&head, "x-b3-spanid").len(), 1, "{head}");
    assert_ne!(values(&head, "x-b3-spanid"), ["b7ad6b7169203331"], "{head}");
    assert_eq!(values(&head, "host"), ["callee"], "{head}");
    assert!(values(&head, "x-hop").is_empty(), "{head}");
}

#[tokio::test]
async fn a_websocket_upgrade_keeps_its_connection_header() {
    let app = RawUpstream::start().await;
    let proxy = start_proxy("services: []\n", "callee", Some(app.addr), |_| {}).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    // The raw app answers 200, not 101: the request head is what is checked.
    let request = "GET /ws HTTP/1.1\r\nHost: callee\r\nConnection: Upgrade, x-hop\r\nUpgrade: websocket\r\nx-hop: 1\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut stream = TcpStream::connect(inbound).await.expect("connect proxy");
    stream.write_all(request.as_bytes()).await.expect("send request");
    let mut answer = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.expect("answer in time").expect("read");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..n]));
    let head = app.only_head();
    assert_eq!(values(&head, "connection"), ["upgrade"], "{head}");
    assert_eq!(values(&head, "upgrade"), ["websocket"], "{head}");
    assert!(values(&head, "x-hop").is_empty(), "{head}");
}

#[tokio::test]
async fn a_repeated_invalid_or_missing_host_is_a_bad_request_on_both_listeners() {
    let upstream = RawUpstream::start().await;
    let collector = start_collector().await;
    let proxy = start_proxy(&mesh_of(&[("up", upstream.addr)]), "front", Some(upstream.addr), |config| config.collector = collector.url()).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let request = "GET /twohost HTTP/1.1\r\nHost: up\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    for listener in [proxy.addresses.outbound, inbound] {
        let (status, body) = exchange(listener, request).await;
        assert_eq!((status, body.as_str()), (400, "bad request: more than one Host header"));
    }
    // An invalid one too.
    let (status, body) = exchange(inbound, "GET / HTTP/1.1\r\nHost: up@evil.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (400, "bad request: invalid Host header"));
    // None at all, in HTTP/1.1.
    for listener in [proxy.addresses.outbound, inbound] {
        let (status, body) = exchange(listener, "GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert_eq!((status, body.as_str()), (400, "bad request: missing Host header"));
    }
    let records = collector.wait_records(5).await;
    assert!(records.iter().all(|r| r.response_code == 400 && r.response_flags == "DPE"), "{records:?}");
    // Refused before routing, each is still reported with this proxy's own workload.
    let own = |r: &meshtel_model::mixer::RequestRecord| {
        let side = if r.reporter == meshtel_model::mixer::Reporter::Source as i32 { &r.source } else { &r.destination };
        side.as_ref().map(|w| w.name.clone()).unwrap_or_default()
    };
    assert!(records.iter().all(|r| !own(r).is_empty()), "{records:?}");
    assert!(upstream.heads().is_empty(), "forwarded: {:?}", upstream.heads());
    // One Host header goes through as before; HTTP/1.0 needs none.
    let (status, _) = exchange(proxy.addresses.outbound, "GET / HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200);
    let (status, _) = exchange(inbound, "GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_absolute_form_target_names_the_host() {
    let (good, other) = (RawUpstream::start().await, RawUpstream::start().await);
    let mesh = mesh_of(&[("good", good.addr), ("other", other.addr)]);
    let proxy = start_proxy(&mesh, "front", Some(other.addr), |_| {}).await;
    let request = "GET http://other/abs HTTP/1.1\r\nHost: good\r\nConnection: close\r\n\r\n";
    let (status, _) = exchange(proxy.addresses.outbound, request).await;
    assert_eq!(status, 200);
    assert!(good.heads().is_empty(), "routed by the Host header: {:?}", good.heads());
    let head = other.only_head();
    assert!(head.starts_with("GET /abs HTTP/1.1\r\n"), "{head}");
    assert_eq!(values(&head, "host"), ["other"], "{head}");
    // Inbound: the app gets the target's authority as its one Host.
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let (status, _) = exchange(inbound, "GET http://other:9080/in HTTP/1.1\r\nHost: good\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200);
    let heads = other.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert_eq!(values(&heads[1], "host"), ["other:9080"], "{}", heads[1]);
}

#[tokio::test]
async fn an_upstreams_connection_cannot_remove_the_routes_response_headers() {
    let upstream = RawUpstream::answering(
        b"HTTP/1.1 200 OK\r\nconnection: x-route-set, x-app-hop\r\nx-app-hop: 1\r\nx-app: kept\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let rules = tempfile::tempdir().expect("rules dir");
    let virtual_service = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: up\n  namespace: default\n\
        spec:\n  hosts:\n  - up\n  http:\n  - route:\n    - destination:\n        host: up\n    headers:\n      response:\n        set:\n          x-route-set: proxy\n";
    std::fs::write(rules.path().join("up.yaml"), virtual_service).expect("write rules");
    let rules_dir = rules.path().to_owned();
    let proxy = start_proxy(&mesh_of(&[("up", upstream.addr)]), "front", None, |config| config.rules_dir = Some(rules_dir)).await;
    let (status, head, _) = exchange_with_head(proxy.addresses.outbound, "GET / HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200, "{head}");
    let head = format!("{head}\r\n");
    assert_eq!(values(&head, "x-route-set"), ["proxy"], "{head}");
    assert_eq!(values(&head, "x-app"), ["kept"], "{head}");
    assert!(values(&head, "x-app-hop").is_empty(), "{head}");
}
