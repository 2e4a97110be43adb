use axum::body::to_bytes;
use http::Request;
use meshtel_model::Error as ModelError;
use meshtel_model::otlp::trace::v1::ResourceSpans;
use tower::ServiceExt;

use super::*;

struct DiscardingSink;

#[async_trait::async_trait]
impl SpanSink for DiscardingSink {
    async fn write_spans(&self, _spans: Vec<ResourceSpans>) -> Result<(), ModelError> {
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

/// Serves `app` on 127.0.0.1, port 0; its address.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn other_paths_get_a_404_naming_what_the_port_serves() {
    // As the binary builds the port: with the metrics router merged in.
    let app = router().merge(Router::new().route("/metrics", get(|| async { "# metrics" })));
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    for path in ["/v1/logs", "/v1/metrics"] {
        let reply = client
            .post(format!("http://{addr}{path}"))
            .header(CONTENT_TYPE, JSON)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.headers()[CONTENT_TYPE], JSON, "{path}");
        let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"error": format!(
                "no route POST {path}: this port serves POST /v1/traces (OTLP traces only; \
                 logs and metrics are not accepted), and GET /metrics, /healthz and /readyz"
            )}),
        );
    }
    // A long path is cut.
    let long = "x".repeat(10_000);
    let reply = client
        .get(format!("http://{addr}/{long}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("no route GET /{}…: ", &long[..63])),
        "{error}"
    );
    // What the port served before is served as before.
    let get = |path: &'static str| client.get(format!("http://{addr}{path}")).send();
    let reply = get("/metrics").await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.text().await.unwrap(), "# metrics");
    for path in ["/healthz", "/readyz"] {
        let reply = get(path).await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.text().await.unwrap(), "ok");
    }
    let reply = get("/v1/traces").await.unwrap();
    assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    let reply = client
        .post(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    let reply = client
        .post(format!("http://{addr}/v1/traces"))
        .header(CONTENT_TYPE, JSON)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.text().await.unwrap(), "{}");
}

#[tokio::test]
async fn a_bad_json_field_is_answered_with_what_it_allows() {
    let addr = serve(router()).await;
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x",
        "attributes":[{"key":"a","value":{"intValue":1.5}}]}]}]}]}"#;
    let reply = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header(CONTENT_TYPE, JSON)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    let status: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    assert_eq!(
        status["message"],
        "cannot decode the JSON request: resourceSpans[0].scopeSpans[0].spans[0].attributes[0]\
         .value.intValue: must be an integer or a decimal string, not 1.5"
    );
}
