use axum::body::to_bytes;
use http::Request;
use meshtel_model::WriteError;
use meshtel_model::otlp::trace::v1::ResourceSpans;
use tower::ServiceExt;

use super::*;

struct DiscardingSink;

#[async_trait::async_trait]
impl SpanSink for DiscardingSink {
    async fn write_spans(&self, _spans: Vec<ResourceSpans>) -> Result<(), WriteError> {
        Ok(())
    }
}

fn router() -> Router {
    otlp_http_router(Arc::new(DiscardingSink), IngestLimits::default())
}

async fn body_text(response: Response) -> String {
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn health_endpoints_answer_ok() {
    for path in ["/healthz", "/readyz"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, "ok");
    }
}

#[tokio::test]
async fn other_methods_get_the_collector_405() {
    let request = Request::get("/v1/traces").body(Body::empty()).unwrap();
    let response = router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[ALLOW], "POST");
    assert_eq!(
        body_text(response).await,
        "405 method not allowed, supported: [POST]"
    );
}

#[tokio::test]
async fn empty_json_request_succeeds_with_empty_object() {
    let request = Request::post("/v1/traces")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from("{}"))
        .unwrap();
    let response = router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], JSON);
    assert_eq!(body_text(response).await, "{}");
}

#[tokio::test]
async fn decode_errors_answer_a_status_in_the_request_encoding() {
    let request = Request::post("/v1/traces")
        .header(CONTENT_TYPE, PROTOBUF)
        .body(Body::from(vec![0xff, 0xff, 0xff]))
        .unwrap();
    let response = router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[CONTENT_TYPE], PROTOBUF);
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let status = rpc::Status::decode(bytes).unwrap();
    assert_eq!(status.code, 3);
    assert!(status.message.contains("protobuf"), "{}", status.message);
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    use std::time::Duration;
    assert_eq!(retry_after_seconds(Duration::from_millis(1)), "1");
    assert_eq!(retry_after_seconds(Duration::from_secs(2)), "2");
    assert_eq!(retry_after_seconds(Duration::from_millis(2001)), "3");
    assert_eq!(retry_after_seconds(Duration::ZERO), "1");
}
