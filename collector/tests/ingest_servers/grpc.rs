//! OTLP/gRPC against the real tonic server.

use std::time::Duration;

use meshtel_collector::IngestLimits;
use meshtel_collector::rpc::retry_delay_from_status;
use meshtel_model::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::support::{Servers, request_of, request_with, small_limits, valid_span};

async fn client(servers: &Servers) -> TraceServiceClient<Channel> {
    TraceServiceClient::connect(format!("http://{}", servers.grpc))
        .await
        .unwrap()
}

#[tokio::test]
async fn export_succeeds_and_reaches_the_sink() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = client(&servers).await.export(request_of(3)).await.unwrap();
    assert_eq!(response.into_inner().partial_success, None);
    assert_eq!(servers.sink.spans().len(), 3);
    assert_eq!(servers.sink.written(), request_of(3).resource_spans);
}

#[tokio::test]
async fn gzip_requests_are_accepted() {
    let servers = Servers::start(IngestLimits::default()).await;
    let mut client = client(&servers)
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let response = client.export(request_of(2)).await.unwrap();
    assert_eq!(response.into_inner().partial_success, None);
    assert_eq!(servers.sink.spans().len(), 2);
}

#[tokio::test]
async fn bad_ids_give_a_partial_success() {
    let servers = Servers::start(IngestLimits::default()).await;
    let mut bad_trace = valid_span(7);
    bad_trace.trace_id = vec![0; 16];
    let mut bad_span = valid_span(8);
    bad_span.span_id = vec![1, 2, 3];
    let request = request_with(vec![valid_span(0), bad_trace, bad_span, valid_span(1)]);
    let response = client(&servers).await.export(request).await.unwrap();
    let partial = response
        .into_inner()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("spans[1]: trace id must not be all zeros"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("spans[2]: span id must be 8 bytes, got 3"),
        "{}",
        partial.error_message
    );
    let names: Vec<_> = servers.sink.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["span-0", "span-1"]);
}

#[tokio::test]
async fn too_many_spans_is_invalid_argument() {
    let servers = Servers::start(small_limits()).await;
    let status = client(&servers)
        .await
        .export(request_of(6))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("max_spans_per_request (5)"),
        "{}",
        status.message()
    );
    assert!(servers.sink.spans().is_empty());
}

/// A request well over 64 KiB: 5 spans with 20 KiB names.
fn oversized_request() -> meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest {
    request_with(
        (0..5)
            .map(|i| {
                let mut span = valid_span(i);
                span.name = "x".repeat(20 * 1024);
                span
            })
            .collect(),
    )
}

#[tokio::test]
async fn oversize_is_resource_exhausted() {
    let servers = Servers::start(small_limits()).await;
    let status = client(&servers)
        .await
        .export(oversized_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The message names the setting, as the HTTP port's 413 does.
    assert!(
        status.message().starts_with("request of ")
            && status
                .message()
                .contains(" bytes is larger than max_request_bytes ("),
        "{status:?}"
    );
    assert!(servers.sink.spans().is_empty());
}

#[tokio::test]
async fn oversize_after_decompression_is_resource_exhausted() {
    let servers = Servers::start(small_limits()).await;
    let mut client = client(&servers)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let status = client.export(oversized_request()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_request_bytes"), "{status:?}");
}

#[tokio::test]
async fn overload_is_unavailable_with_retry_info() {
    let servers = Servers::start(IngestLimits::default()).await;
    servers.sink.overload(Duration::from_millis(1500));
    let status = client(&servers)
        .await
        .export(request_of(1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("retry after 1500 ms"),
        "{}",
        status.message()
    );
    assert_eq!(
        retry_delay_from_status(status.details()),
        Some(Duration::from_millis(1500))
    );
}

#[tokio::test]
async fn empty_request_succeeds() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = client(&servers)
        .await
        .export(request_with(vec![]))
        .await
        .unwrap();
    assert_eq!(response.into_inner().partial_success, None);
    assert!(servers.sink.written().is_empty());
}
