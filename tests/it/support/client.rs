//! The HTTP and gRPC clients the tests talk to `meshtel` with.

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde_json::Value;
use tonic::transport::Channel;

use super::{Meshtel, eventually};

/// A gRPC `TraceService` client to `addr`.
pub async fn grpc_client(addr: SocketAddr) -> TraceServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .expect("connecting to the gRPC listener");
    TraceServiceClient::new(channel).max_decoding_message_size(64 << 20)
}

/// The gRPC health (`grpc.health.v1`) status of `service` ("" for the server) on the
/// listener at `addr`.
pub async fn grpc_health(addr: SocketAddr, service: &str) -> Result<i32, tonic::Status> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connecting for the health check");
    let request = HealthCheckRequest {
        service: service.into(),
    };
    let response = HealthClient::new(channel).check(request).await?;
    Ok(response.into_inner().status)
}

/// Exports `request` over gRPC and expects full success.
pub async fn export_grpc(addr: SocketAddr, request: ExportTraceServiceRequest) {
    let response: ExportTraceServiceResponse = grpc_client(addr)
        .await
        .export(request)
        .await
        .expect("gRPC export")
        .into_inner();
    assert_eq!(
        response.partial_success, None,
        "no partial success expected"
    );
}

/// A shared HTTP client with a timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.bytes().await.expect("reading the body").to_vec();
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

/// `GET url`.
pub async fn get(url: &str) -> Reply {
    read(http().get(url).send().await.expect("GET")).await
}

/// `GET url`, expecting 200 JSON.
pub async fn get_json(url: &str) -> Value {
    let reply = get(url).await;
    assert_eq!(reply.status, 200, "GET {url}: {}", reply.text());
    assert_eq!(reply.content_type, "application/json", "GET {url}");
    reply.json()
}

/// `POST url` with a body and headers.
pub async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut request = http().post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    read(request.send().await.expect("POST")).await
}

/// `OPTIONS url` with headers: a browser's CORS preflight.
pub async fn options(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = http().request(reqwest::Method::OPTIONS, url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    read(request.send().await.expect("OPTIONS")).await
}

/// `{"data":[trace]}` of `/api/traces/{id}`: the one trace.
pub async fn fetch_trace(m: &Meshtel, trace_id_hex: &str) -> Value {
    let body = get_json(&m.query_url(&format!("/api/traces/{trace_id_hex}"))).await;
    let data = body["data"].as_array().expect("data array");
    assert_eq!(data.len(), 1, "{body}");
    data[0].clone()
}

/// Waits until `/api/traces/{id}` has `spans` spans, and returns the trace.
pub async fn wait_for_trace(m: &Meshtel, trace_id_hex: &str, spans: usize) -> Value {
    let url = m.query_url(&format!("/api/traces/{trace_id_hex}"));
    eventually(
        Duration::from_secs(10),
        &format!("trace {trace_id_hex} with {spans} spans"),
        || async {
            let reply = get(&url).await;
            if reply.status != 200 {
                return None;
            }
            let trace = reply.json()["data"][0].clone();
            (trace["spans"].as_array().map(Vec::len) == Some(spans)).then_some(trace)
        },
    )
    .await
}

/// An h2c (prior knowledge) connection to `addr`, driven on a task of its own, for
/// raw HTTP/2 requests with bodies the test writes frame by frame.
pub async fn h2c_connect<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(connection);
    sender
}
