use http::HeaderMap;

use super::*;
use crate::config::MAX_IDENTITY_BYTES;

mod grpc_web;

#[test]
fn hop_by_hop_headers_are_removed() {
    let mut headers = HeaderMap::new();
    headers.insert("connection", "keep-alive, x-hop, te".parse().expect("value"));
    headers.insert("x-hop", "1".parse().expect("value"));
    headers.insert("keep-alive", "timeout=5".parse().expect("value"));
    headers.insert("proxy-connection", "keep-alive".parse().expect("value"));
    headers.insert("transfer-encoding", "chunked".parse().expect("value"));
    headers.insert("upgrade", "websocket".parse().expect("value"));
    headers.insert("te", "trailers, deflate;q=0.5".parse().expect("value"));
    headers.insert("x-end-to-end", "kept".parse().expect("value"));
    remove_hop_by_hop_headers(&mut headers);
    let mut names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["te", "x-end-to-end"]);
    assert_eq!(headers["te"], "trailers");

    let mut gzip_only = HeaderMap::new();
    gzip_only.insert("te", "gzip".parse().expect("value"));
    remove_hop_by_hop_headers(&mut gzip_only);
    assert!(gzip_only.is_empty());

    // A usual HTTP/1.1 response: only `Connection` goes.
    let mut response = HeaderMap::new();
    response.insert("connection", "Keep-Alive".parse().expect("value"));
    response.insert("content-length", "2".parse().expect("value"));
    remove_hop_by_hop_headers(&mut response);
    assert_eq!(response.keys().map(|name| name.as_str()).collect::<Vec<_>>(), ["content-length"]);

    // `close` names no header; a `Keep-Alive` header goes whether named or not.
    let mut closing = HeaderMap::new();
    closing.insert("connection", "close".parse().expect("value"));
    closing.insert("keep-alive", "timeout=5".parse().expect("value"));
    closing.insert("x-end-to-end", "kept".parse().expect("value"));
    remove_hop_by_hop_headers(&mut closing);
    assert_eq!(closing.keys().map(|name| name.as_str()).collect::<Vec<_>>(), ["x-end-to-end"]);

    // `Connection` on two lines: the second one's names go too.
    let mut two_lines = HeaderMap::new();
    two_lines.append("connection", "keep-alive".parse().expect("value"));
    two_lines.append("connection", "x-hop".parse().expect("value"));
    two_lines.insert("x-hop", "1".parse().expect("value"));
    two_lines.insert("x-end-to-end", "kept".parse().expect("value"));
    remove_hop_by_hop_headers(&mut two_lines);
    assert_eq!(two_lines.keys().map(|name| name.as_str()).collect::<Vec<_>>(), ["x-end-to-end"]);

    // `Host` is end to end, whatever `Connection` says.
    let mut host = HeaderMap::new();
    host.insert("connection", "host, x-hop".parse().expect("value"));
    host.insert("host", "reviews".parse().expect("value"));
    host.insert("x-hop", "1".parse().expect("value"));
    remove_hop_by_hop_headers(&mut host);
    assert_eq!(host.keys().map(|name| name.as_str()).collect::<Vec<_>>(), ["host"]);
}

#[test]
fn request_ids_are_uuid_v4() {
    let id = new_request_id();
    let text = std::str::from_utf8(&id).expect("ascii");
    let groups: Vec<&str> = text.split('-').collect();
    assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{text}");
    assert!(groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))), "{text}");
    assert_eq!(id[14], b'4');
    assert!(matches!(id[19], b'8' | b'9' | b'a' | b'b'));
    assert_ne!(id, new_request_id());
}

#[test]
fn peer_identity_round_trips_and_is_stripped() {
    let identity = WorkloadIdentity { name: "productpage-v1".into(), namespace: "default".into(), app: "productpage".into(), version: "v1".into() };
    let mut headers = HeaderMap::new();
    PeerHeaders::of(&identity, "Kubernetes").set(&mut headers);
    assert_eq!(headers.len(), 5);
    assert_eq!(headers["x-meshtel-peer-cluster"], "Kubernetes");
    let (caller, cluster) = take_peer_identity(&mut headers).expect("peer headers");
    assert_eq!(caller, identity);
    assert!(headers.is_empty());
    // The caller's cluster is shared with this proxy's own when the same.
    let cluster = cluster.expect("cluster header");
    let own: Arc<str> = Arc::from("Kubernetes");
    assert!(Arc::ptr_eq(&peer_cluster(&cluster, &own).expect("cluster"), &own));
    let east = peer_cluster(&cluster, &Arc::from("east")).expect("cluster");
    assert_eq!(&*east, "Kubernetes");

    // An empty label is not sent, and what the app sent in its place is dropped.
    let unversioned = WorkloadIdentity { version: String::new(), ..identity.clone() };
    headers.insert("x-meshtel-peer-version", "spoofed".parse().expect("value"));
    PeerHeaders::of(&unversioned, "Kubernetes").set(&mut headers);
    assert_eq!(headers.len(), 4);
    assert!(!headers.contains_key("x-meshtel-peer-version"));

    // A caller that sends no cluster (an older proxy): its cluster is unknown.
    let mut headers = HeaderMap::new();
    headers.insert("x-meshtel-peer-workload", "productpage-v1".parse().expect("value"));
    assert_eq!(take_peer_identity(&mut headers).map(|(_, cluster)| cluster), Some(None));

    // A value no proxy sends (past a Kubernetes name's length, or with a space) reads
    // as absent, so that the collector does not refuse the request's record.
    let mut headers = HeaderMap::new();
    headers.insert("x-meshtel-peer-workload", "w".repeat(MAX_IDENTITY_BYTES + 1).parse().expect("value"));
    headers.insert("x-meshtel-peer-namespace", "default".parse().expect("value"));
    headers.insert("x-meshtel-peer-app", "a b".parse().expect("value"));
    headers.insert("x-meshtel-peer-cluster", "c".repeat(MAX_IDENTITY_BYTES + 1).parse().expect("value"));
    let (caller, cluster) = take_peer_identity(&mut headers).expect("peer headers");
    assert_eq!((caller.name.as_str(), caller.namespace.as_str(), caller.app.as_str()), ("", "default", ""));
    assert_eq!(cluster, None);
    assert!(headers.is_empty());
}

#[test]
fn every_forward_error_maps_to_a_status_and_a_flag() {
    let cases = [
        (Error::UnknownService { host: "x".into() }, 503, "UH"),
        (Error::NoHealthyUpstream { service: "x".into() }, 503, "UH"),
        (Error::UpstreamTimeout { upstream: "x".into() }, 504, "UT"),
        (Error::UpstreamProtocol { upstream: "x".into(), source: "bad".into() }, 502, "UPE"),
        (Error::Connect, 404, "NR"),
        (Error::TransferCoding("gzip".into()), 501, "DPE"),
    ];
    for (error, status, flag) in cases {
        assert_eq!(error.status().as_u16(), status);
        assert_eq!(error.response_flag(), flag);
    }
}

/// An app that speaks only HTTP/1.1, answering with the version and `Host` it saw.
async fn http1_only_app() -> std::net::SocketAddr {
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("app addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let host = request.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("-").to_owned();
                    let text = format!("{:?} {host}", request.version());
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// Sends an h2c (prior knowledge) GET to `addr` for `host`.
async fn h2c_get(addr: std::net::SocketAddr, host: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect inbound");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c handshake");
    tokio::spawn(connection);
    let request = Request::get(format!("http://{host}/")).version(Version::HTTP_2).body(http_body_util::Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn an_h2c_caller_reaches_an_http1_app_with_app_protocol_http1() {
    use crate::test_support::start_proxy;
    let app = http1_only_app().await;
    let mesh = "services:\n  - name: reviews\n    endpoints: []\n";
    // The caller's protocol (the default): the app cannot answer h2c.
    let auto = start_proxy(mesh, "reviews", Some(app), |_| {}).await;
    let inbound = auto.addresses.inbound.expect("inbound listener");
    let (status, _) = h2c_get(inbound, "reviews:9080").await;
    assert_eq!(status, 503, "an h2c request forwarded as h2c to an HTTP/1.1-only app");
    // `--app-protocol http1`: converted, with `:authority` as `Host`.
    let http1 = start_proxy(mesh, "reviews", Some(app), |config| config.app_protocol = AppProtocol::Http1).await;
    let inbound = http1.addresses.inbound.expect("inbound listener");
    assert_eq!(h2c_get(inbound, "reviews:9080").await, (200, "HTTP/1.1 reviews:9080".to_owned()));
    // An `:authority` naming userinfo is refused, as such a Host is over HTTP/1.1.
    assert_eq!(h2c_get(inbound, "evil@reviews:9080").await.0, 400);
}

#[tokio::test]
async fn an_http10_app_does_not_close_an_http11_callers_connection() {
    use crate::test_support::start_proxy;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An app that answers every request in HTTP/1.0 and closes, as old servers do.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let app = listener.local_addr().expect("app addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head).await;
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            });
        }
    });
    let mesh = "services:\n  - name: reviews\n    endpoints: []\n";
    let proxy = start_proxy(mesh, "reviews", Some(app), |_| {}).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let mut caller = tokio::net::TcpStream::connect(inbound).await.expect("connect");
    for i in 0..2 {
        caller.write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n").await.expect("request");
        let mut answer = Vec::new();
        while !answer.ends_with(b"ok") {
            let mut buffer = [0u8; 1024];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), caller.read(&mut buffer))
                .await
                .expect("an answer")
                .expect("read");
            assert!(n > 0, "request {i}: the connection was closed after {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "request {i}: {text}");
    }
}

#[tokio::test]
async fn a_malformed_answer_is_a_protocol_error_and_a_closed_connection_is_not() {
    use crate::test_support::start_proxy;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An app whose answer depends on the path: garbage, or nothing at all.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let app = listener.local_addr().expect("app addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let n = stream.read(&mut head).await.unwrap_or(0);
                if head[..n].starts_with(b"GET /garbage") {
                    let _ = stream.write_all(b"HTTP/1.1 2000 Nope\r\nbad header: x\r\n\r\n").await;
                }
            });
        }
    });
    let mesh = "services:\n  - name: reviews\n    endpoints: []\n";
    let proxy = start_proxy(mesh, "reviews", Some(app), |_| {}).await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    for (path, status, reason) in [("/garbage", 502, "protocol error"), ("/closed", 503, "connection termination")] {
        let uri: http::Uri = format!("http://{inbound}{path}").parse().expect("uri");
        let response = client.get(uri).await.expect("an answer from the proxy");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.ends_with(&format!("reset reason: {reason}")), "{path}: {body}");
    }
}

#[test]
fn a_host_without_a_port_is_matched_as_port_80() {
    // A call to `http://web` reaches Istio's port-80 listener, and its `port: 80` match.
    assert_eq!(super::authority_port("web"), Some(80));
    assert_eq!(super::authority_port("web.default.svc.cluster.local"), Some(80));
    assert_eq!(super::authority_port("[::1]"), Some(80));
    assert_eq!(super::authority_port("web:8080"), Some(8080));
    assert_eq!(super::authority_port("[::1]:9080"), Some(9080));
}
