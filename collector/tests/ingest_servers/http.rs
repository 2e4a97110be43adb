//! OTLP/HTTP against the real axum server.

use std::time::Duration;

use meshtel_collector::IngestLimits;
use meshtel_collector::rpc;
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceResponse;
use meshtel_model::otlp::common::v1::any_value::Value as Any;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Servers, gzip, request_of, request_with, small_limits, valid_span};

/// The example of spec §3.2, verbatim.
const SPEC_EXAMPLE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
 "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},
  "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
   "name":"I'm a server span","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
   "attributes":[{"key":"http.status_code","value":{"intValue":"500"}}],
   "status":{"code":2,"message":"boom"}}]}]}]}"#;

async fn post(
    servers: &Servers,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(servers.http_url("/v1/traces"))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.unwrap()
}

async fn json_body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn protobuf_export_succeeds() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(
        &servers,
        "application/x-protobuf",
        None,
        request_of(3).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let decoded = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded.partial_success, None);
    assert_eq!(servers.sink.written(), request_of(3).resource_spans);
}

#[tokio::test]
async fn protobuf_partial_success_for_bad_ids() {
    let servers = Servers::start(IngestLimits::default()).await;
    let mut bad = valid_span(9);
    bad.trace_id = vec![1; 8];
    let body = request_with(vec![valid_span(0), bad]).encode_to_vec();
    let response = post(&servers, "application/x-protobuf", None, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let decoded = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = decoded.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial
            .error_message
            .contains("trace id must be 16 bytes, got 8")
    );
    assert_eq!(servers.sink.spans().len(), 1);
}

#[tokio::test]
async fn json_spec_example_is_stored_as_sent() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(&servers, "application/json", None, SPEC_EXAMPLE.into()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(json_body(response).await, json!({}));
    let written = servers.sink.written();
    let resource = written[0].resource.as_ref().unwrap();
    assert_eq!(resource.attributes[0].key, "service.name");
    let scope = written[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("my.library", "1.0.0")
    );
    let span = &written[0].scope_spans[0].spans[0];
    assert_eq!(
        hex::encode(&span.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.name, "I'm a server span");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(Any::IntValue(500))
    );
    let status = span.status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "boom"));
}

#[tokio::test]
async fn json_accepts_upper_case_ids_enum_names_and_snake_case() {
    let servers = Servers::start(IngestLimits::default()).await;
    let body = r#"{"resource_spans":[{"scope_spans":[{"spans":[{
        "trace_id":"5B8EFFF798038103D269B633813FC60C","span_id":"EEE19B7EC3C1B174",
        "name":"s","kind":"SPAN_KIND_SERVER","start_time_unix_nano":1544712660000000000,
        "end_time_unix_nano":"1544712661000000000","status":{"code":"STATUS_CODE_ERROR"},
        "some_future_field":{"a":1}}]}]}]}"#;
    let response = post(
        &servers,
        "application/json; charset=utf-8",
        None,
        body.into(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(response).await, json!({}));
    let span = &servers.sink.spans()[0];
    assert_eq!(
        hex::encode(&span.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(span.kind, 2);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
}

#[tokio::test]
async fn json_partial_success_body() {
    let servers = Servers::start(IngestLimits::default()).await;
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"},
        {"traceId":"","spanId":"eee19b7ec3c1b175"}]}]}]}"#;
    let response = post(&servers, "application/json", None, body.into()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let value = json_body(response).await;
    assert_eq!(value["partialSuccess"]["rejectedSpans"], "1");
    assert!(
        value["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("trace id must be 16 bytes, got 0")
    );
    assert_eq!(servers.sink.spans().len(), 1);
}

#[tokio::test]
async fn gzip_json_is_accepted() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(
        &servers,
        "application/json",
        Some("gzip"),
        gzip(SPEC_EXAMPLE.as_bytes()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(servers.sink.spans().len(), 1);
}

#[tokio::test]
async fn other_methods_are_405() {
    let servers = Servers::start(IngestLimits::default()).await;
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let response = reqwest::Client::new()
            .request(method, servers.http_url("/v1/traces"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            response.text().await.unwrap(),
            "405 method not allowed, supported: [POST]"
        );
    }
}

#[tokio::test]
async fn other_media_types_are_415() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(&servers, "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        response.text().await.unwrap(),
        "415 unsupported media type, supported: [application/json, application/x-protobuf]"
    );
    assert!(servers.sink.written().is_empty());
}

#[tokio::test]
async fn garbage_is_400_with_a_status_body() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(&servers, "application/json", None, b"{not json".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/json");
    let value = json_body(response).await;
    assert_eq!(value["code"], 3);
    assert!(value["message"].as_str().unwrap().contains("JSON"));

    let response = post(
        &servers,
        "application/x-protobuf",
        None,
        vec![0x0a, 0xff, 0x01],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let status = rpc::Status::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3);

    let response = post(
        &servers,
        "application/json",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn too_many_spans_is_400() {
    let servers = Servers::start(small_limits()).await;
    let response = post(
        &servers,
        "application/x-protobuf",
        None,
        request_of(6).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let status = rpc::Status::decode(response.bytes().await.unwrap()).unwrap();
    assert!(status.message.contains("max_spans_per_request"));
}

#[tokio::test]
async fn oversize_is_413() {
    let servers = Servers::start(small_limits()).await;
    let body = vec![b' '; 70 * 1024];
    let response = post(&servers, "application/json", None, body).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let value = json_body(response).await;
    assert_eq!(value["code"], 8);
}

#[tokio::test]
async fn gzip_bomb_is_413() {
    let servers = Servers::start(small_limits()).await;
    let bomb = gzip(&vec![b' '; 20 * 1024 * 1024]);
    assert!(
        bomb.len() < 64 * 1024,
        "compressed bomb is {} bytes",
        bomb.len()
    );
    let response = post(&servers, "application/json", Some("gzip"), bomb).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn overload_is_503_with_retry_after() {
    let servers = Servers::start(IngestLimits::default()).await;
    servers.sink.overload(Duration::from_millis(2500));
    let response = post(&servers, "application/json", None, SPEC_EXAMPLE.into()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "3");
    let value = json_body(response).await;
    assert_eq!(value["code"], 14);

    let response = post(
        &servers,
        "application/x-protobuf",
        None,
        request_of(1).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "3");
    let body = response.bytes().await.unwrap();
    assert_eq!(
        rpc::retry_delay_from_status(&body),
        Some(Duration::from_millis(2500))
    );
}

#[tokio::test]
async fn health_endpoints_answer_ok() {
    let servers = Servers::start(IngestLimits::default()).await;
    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(servers.http_url(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "ok");
    }
}
