//! gRPC-Web is HTTP, not gRPC: through a real proxy pair to a real app, and to an app
//! that is down.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtel_model::mixer::{Reporter, RequestRecord};

use crate::test_support::*;

const GRPC_WEB: [&str; 4] = ["application/grpc-web", "application/grpc-web+proto", "application/grpc-web-text", "application/grpc-web-text+proto"];

fn backend_mesh(endpoint: SocketAddr) -> String {
    format!("services:\n  - name: backend\n    endpoints:\n      - address: {endpoint}\n        labels: {{ app: backend, version: v1 }}\n")
}

/// POSTs a body with `content_type` to `/pkg.Svc/{method}` on `listener` for host
/// `backend`, over h2c or HTTP/1.1.
async fn call(listener: SocketAddr, method: &str, content_type: &str, h2c: bool) -> Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(listener).await.expect("connect outbound");
    let version = if h2c { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    let request = Request::post(format!("http://backend/pkg.Svc/{method}"))
        .version(version)
        .header("host", "backend")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from_static(b"AAAAAAA=")))
        .expect("request");
    if h2c {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c handshake");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    }
}

fn record<'a>(records: &'a [RequestRecord], reporter: Reporter, method: &str) -> &'a RequestRecord {
    let path = format!("/pkg.Svc/{method}");
    records
        .iter()
        .find(|r| r.reporter == reporter as i32 && r.request_path == path)
        .unwrap_or_else(|| panic!("a {reporter:?} record of {path} in {records:?}"))
}

#[tokio::test]
async fn a_grpc_web_call_answered_200_is_recorded_as_http_without_a_grpc_status() {
    // The app answers every call 200; a gRPC call (`application/grpc+proto`) also gets
    // `grpc-status: 0` in the head, as a trailers-only answer.
    let app = start_app(|request: Request<Incoming>| async move {
        let content_type = request.headers().get("content-type").cloned();
        let grpc = content_type.as_ref().is_some_and(|v| v == "application/grpc+proto");
        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")).map_err(|never| match never {}).boxed());
        if let Some(content_type) = content_type {
            response.headers_mut().insert("content-type", content_type);
        }
        if grpc {
            response.headers_mut().insert("grpc-status", http::HeaderValue::from_static("0"));
        }
        response
    })
    .await;
    let collector = start_collector().await;
    let destination = start_proxy("services:\n  - name: backend\n    endpoints: []\n", "backend", Some(app), |config| config.collector = collector.url()).await;
    let inbound = destination.addresses.inbound.expect("inbound listener");
    let source = start_proxy(&backend_mesh(inbound), "web", None, |config| config.collector = collector.url()).await;
    let mut calls: Vec<(String, &str, bool)> = Vec::new();
    for (i, content_type) in GRPC_WEB.into_iter().enumerate() {
        for h2c in [false, true] {
            calls.push((format!("Web{i}{}", if h2c { "h2" } else { "h1" }), content_type, h2c));
        }
    }
    calls.push(("Grpc".to_owned(), "application/grpc+proto", true));
    for (method, content_type, h2c) in &calls {
        let response = call(source.addresses.outbound, method, content_type, *h2c).await;
        assert_eq!(response.status(), 200, "{content_type} (h2c: {h2c})");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok", "{content_type}");
    }
    let records = collector.wait_records(2 * calls.len()).await;
    for (method, content_type, _) in &calls {
        for reporter in [Reporter::Source, Reporter::Destination] {
            let record = record(&records, reporter, method);
            let seen = (record.request_protocol.as_str(), record.response_code, record.grpc_response_status);
            let expected = if method == "Grpc" { ("grpc", 200, Some(0)) } else { ("http", 200, None) };
            assert_eq!(seen, expected, "{content_type} ({reporter:?})");
        }
    }
}

#[tokio::test]
async fn a_grpc_web_caller_gets_an_http_503_when_the_upstream_is_down() {
    let collector = start_collector().await;
    let source = start_proxy(&backend_mesh(dead_address()), "web", None, |config| config.collector = collector.url()).await;
    for content_type in GRPC_WEB {
        let response = call(source.addresses.outbound, "Down", content_type, false).await;
        assert_eq!(response.status(), 503, "{content_type}");
        assert_eq!(response.headers()["content-type"], "text/plain", "{content_type}");
        assert!(response.headers().get("grpc-status").is_none(), "{content_type}: {:?}", response.headers());
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert!(String::from_utf8_lossy(&body).starts_with("upstream connect error"), "{content_type}: {body:?}");
    }
    // A gRPC caller still gets a gRPC answer: HTTP 200, grpc-status 14 (UNAVAILABLE).
    let response = call(source.addresses.outbound, "GrpcDown", "application/grpc", true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "14");
    let records = collector.wait_records(GRPC_WEB.len() + 1).await;
    let down: Vec<&RequestRecord> = records.iter().filter(|r| r.request_path == "/pkg.Svc/Down").collect();
    assert_eq!(down.len(), GRPC_WEB.len(), "{records:?}");
    for r in down {
        assert_eq!((r.request_protocol.as_str(), r.response_code, r.grpc_response_status), ("http", 503, None), "{r:?}");
    }
    let grpc = record(&records, Reporter::Source, "GrpcDown");
    assert_eq!((grpc.request_protocol.as_str(), grpc.response_code, grpc.grpc_response_status), ("grpc", 200, Some(14)));
}
