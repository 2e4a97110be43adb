//! OTLP/gRPC `TraceService/Export`.
//!
//! The handler stays thin (decoded request → [`Ingest::export`] → response or
//! `Status`); limits and decompression are the server's job:
//!
//! - gzip request messages are accepted, and responses are gzip-compressed for
//!   clients that ask for it;
//! - `max_decoding_message_size` is `max_request_bytes`, enforced by tonic on the
//!   message as received and once decompressed. Tonic answers `OUT_OF_RANGE` for an
//!   uncompressed message over the limit; the OTLP spec wants `RESOURCE_EXHAUSTED`
//!   (not retryable), so [`OtlpGrpcServer`] rewrites that code on the way out;
//! - too many spans → `INVALID_ARGUMENT` naming `max_spans_per_request`;
//! - an overloaded store → `UNAVAILABLE` with a `google.rpc.RetryInfo` detail.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use meshtel_model::SpanSink;
use meshtel_model::otlp::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use meshtel_model::otlp::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tracing::{debug, instrument};

use crate::config::IngestLimits;
use crate::ingest::Ingest;

/// The `TraceService` implementation over a [`SpanSink`].
#[derive(Clone)]
pub struct OtlpTraceService {
    ingest: Ingest,
}

impl OtlpTraceService {
    /// A service writing to `sink` under `limits`.
    pub fn new(sink: Arc<dyn SpanSink>, limits: IngestLimits) -> Self {
        OtlpTraceService {
            ingest: Ingest::new(sink, limits),
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpTraceService {
    #[instrument(skip_all, fields(protocol = "otlp_grpc"))]
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        match self.ingest.export(request.resource_spans).await {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(error) => {
                debug!(error = %error, "export refused");
                Err(error.grpc_status())
            }
        }
    }
}

/// The OTLP gRPC trace service, ready for `tonic::transport::Server::add_service`
/// (or `tonic::service::Routes`). It is tonic's generated `TraceServiceServer` with
/// the limits applied and `OUT_OF_RANGE` (tonic's answer to an oversized message)
/// reported as `RESOURCE_EXHAUSTED`.
#[derive(Clone)]
pub struct OtlpGrpcServer {
    inner: TraceServiceServer<OtlpTraceService>,
}

/// Builds the OTLP gRPC trace service over `sink` with `limits`.
pub fn otlp_grpc_service(sink: Arc<dyn SpanSink>, limits: IngestLimits) -> OtlpGrpcServer {
    let max_message_bytes = limits.max_request_bytes_usize();
    let inner = TraceServiceServer::new(OtlpTraceService::new(sink, limits))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes);
    OtlpGrpcServer { inner }
}

impl NamedService for OtlpGrpcServer {
    const NAME: &'static str = <TraceServiceServer<OtlpTraceService> as NamedService>::NAME;
}

impl<B> tower::Service<http::Request<B>> for OtlpGrpcServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let mut response = response.await?;
            out_of_range_to_resource_exhausted(response.headers_mut());
            decode_error_to_invalid_argument(response.headers_mut());
            Ok(response)
        })
    }
}

/// Tonic refuses a message over `max_decoding_message_size` before any handler runs,
/// with a trailers-only response whose `grpc-status` header is `OUT_OF_RANGE` (11).
/// Our handler never answers that code, so every such header means "too large".
fn out_of_range_to_resource_exhausted(headers: &mut http::HeaderMap) {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    if headers
        .get("grpc-status")
        .is_some_and(|value| value.as_bytes() == out_of_range.as_bytes())
    {
        let exhausted = (tonic::Code::ResourceExhausted as i32).to_string();
        if let Ok(value) = http::HeaderValue::from_str(&exhausted) {
            headers.insert("grpc-status", value);
        }
    }
}

/// Tonic answers a body that is not a valid protobuf message with `INTERNAL` and the
/// message "failed to decode Protobuf message"; for OTLP that is bad data from the
/// client, `INVALID_ARGUMENT` (not retryable), as the specification asks.
fn decode_error_to_invalid_argument(headers: &mut http::HeaderMap) {
    let internal = (tonic::Code::Internal as i32).to_string();
    let is_internal = headers
        .get("grpc-status")
        .is_some_and(|value| value.as_bytes() == internal.as_bytes());
    let is_decode_error = headers.get("grpc-message").is_some_and(|m| {
        let m = m.as_bytes();
        m.starts_with(b"failed to decode") || m.starts_with(b"failed%20to%20decode")
    });
    if is_internal && is_decode_error {
        let invalid = (tonic::Code::InvalidArgument as i32).to_string();
        if let Ok(value) = http::HeaderValue::from_str(&invalid) {
            headers.insert("grpc-status", value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_decode_errors_only() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("failed%20to%20decode%20Protobuf%20message"),
        );
        decode_error_to_invalid_argument(&mut headers);
        assert_eq!(headers["grpc-status"], "3");
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
        headers.insert("grpc-message", http::HeaderValue::from_static("disk on fire"));
        decode_error_to_invalid_argument(&mut headers);
        assert_eq!(headers["grpc-status"], "13");
    }

    #[test]
    fn rewrites_only_out_of_range() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("11"));
        out_of_range_to_resource_exhausted(&mut headers);
        assert_eq!(headers["grpc-status"], "8");
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        out_of_range_to_resource_exhausted(&mut headers);
        assert_eq!(headers["grpc-status"], "3");
    }
}
