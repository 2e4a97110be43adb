//! OTLP/gRPC `TraceService/Export`.
//!
//! The service takes the request message undecoded (a byte codec in place of prost's)
//! and hands it to [`Ingest::export_protobuf`]: the store reads the protobuf encoding
//! straight into its columns. Limits and decompression are tonic's job:
//!
//! - gzip request messages are accepted, and responses are gzip-compressed for
//!   clients that ask for it;
//! - `max_decoding_message_size` is `max_request_bytes`, enforced by tonic on the
//!   message as received and once decompressed. Tonic answers `OUT_OF_RANGE` for an
//!   uncompressed message over the limit; the OTLP spec wants `RESOURCE_EXHAUSTED`
//!   (not retryable), so [`OtlpGrpcServer`] rewrites that code on the way out;
//! - a message that is not a valid request → `INVALID_ARGUMENT`;
//! - too many spans → `INVALID_ARGUMENT` naming `max_spans_per_request`;
//! - an overloaded store → `UNAVAILABLE` with a `google.rpc.RetryInfo` detail.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use meshtel_model::SpanSink;
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceResponse;
use meshtel_model::otlp::collector::trace::v1::trace_service_server::SERVICE_NAME;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic_prost::ProstEncoder;
use tracing::{Instrument, debug, debug_span};

use crate::grpc_decode::{
    decode_error_to_invalid_argument, name_the_size_limit, out_of_range_to_resource_exhausted,
};

use crate::config::IngestLimits;
use crate::inflight::{InflightBudget, grpc_refusal};
use crate::ingest::Ingest;
use crate::ingest_metrics::{IngestMetrics, Protocol, RefusalReason};

/// The gRPC path of `TraceService/Export`.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The `TraceService/Export` handler over an [`Ingest`] step.
#[derive(Clone)]
pub struct OtlpTraceService {
    ingest: Ingest,
    /// Set when the handler ran for the call this clone serves: a failed call whose
    /// handler did not run was refused by tonic (too large, undecodable).
    handled: Arc<AtomicBool>,
}

impl OtlpTraceService {
    /// A service writing to `sink` under `limits`.
    pub fn new(sink: Arc<dyn SpanSink>, limits: IngestLimits) -> Self {
        Self::with_ingest(Ingest::new(sink, limits, Protocol::OtlpGrpc, None))
    }

    fn with_ingest(ingest: Ingest) -> Self {
        OtlpTraceService {
            ingest,
            handled: Arc::default(),
        }
    }

    /// A clone for one call, with its own `handled` flag.
    fn for_one_call(&self) -> Self {
        Self::with_ingest(self.ingest.clone())
    }
}

impl UnaryService<Bytes> for OtlpTraceService {
    type Response = ExportTraceServiceResponse;
    type Future = Pin<
        Box<dyn Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        self.handled.store(true, Ordering::Relaxed);
        let ingest = self.ingest.clone();
        let export = async move {
            match ingest.export_protobuf(request.into_inner()).await {
                Ok(response) => Ok(tonic::Response::new(response)),
                Err(error) => {
                    debug!(error = %error, "export refused");
                    ingest.refused(&error);
                    Err(error.grpc_status())
                }
            }
        };
        Box::pin(export.instrument(debug_span!("export", protocol = "otlp_grpc")))
    }
}

/// Request messages as the bytes received (after decompression), responses through
/// prost.
#[derive(Clone, Copy, Default)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

/// Takes a whole message as [`Bytes`] without copying it.
#[derive(Clone, Copy, Default)]
struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// The OTLP gRPC trace service, ready for `tonic::transport::Server::add_service`
/// (or `tonic::service::Routes`): `TraceService/Export` with gzip both ways, the
/// message size limit, and `OUT_OF_RANGE` (tonic's answer to an oversized message)
/// reported as `RESOURCE_EXHAUSTED`. Other methods answer `UNIMPLEMENTED`.
#[derive(Clone)]
pub struct OtlpGrpcServer {
    service: OtlpTraceService,
    max_message_bytes: usize,
}

/// Builds the OTLP gRPC trace service over `sink` with `limits`. Refusals are not
/// counted; see [`otlp_grpc_service_with_metrics`].
pub fn otlp_grpc_service(sink: Arc<dyn SpanSink>, limits: IngestLimits) -> OtlpGrpcServer {
    let max_message_bytes = limits.max_request_bytes_usize();
    OtlpGrpcServer {
        service: OtlpTraceService::new(sink, limits),
        max_message_bytes,
    }
}

/// As [`otlp_grpc_service`], counting refused requests (those tonic refuses before the
/// handler included) and rejected spans in `metrics`, its requests' bytes held in
/// `budget` (shared with the other ingest servers).
pub fn otlp_grpc_service_with_metrics(
    sink: Arc<dyn SpanSink>,
    limits: IngestLimits,
    metrics: IngestMetrics,
    budget: InflightBudget,
) -> OtlpGrpcServer {
    let max_message_bytes = limits.max_request_bytes_usize();
    let ingest = Ingest::new(sink, limits, Protocol::OtlpGrpc, Some(metrics)).with_budget(budget);
    OtlpGrpcServer {
        service: OtlpTraceService::with_ingest(ingest),
        max_message_bytes,
    }
}

impl NamedService for OtlpGrpcServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tower::Service<http::Request<B>> for OtlpGrpcServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) });
        }
        let service = self.service.for_one_call();
        let handled = service.handled.clone();
        let ingest = service.ingest.clone();
        // The message's bytes are taken from the in-flight budget as they arrive, and
        // held until the call is answered (see `crate::inflight`).
        let hold = ingest.hold();
        let request = request.map(|body| hold.body(body, grpc_refusal));
        let mut grpc = Grpc::new(ExportCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_message_bytes);
        Box::pin(async move {
            let mut response = grpc.unary(service, request).await;
            drop(hold);
            out_of_range_to_resource_exhausted(response.headers_mut());
            name_the_size_limit(response.headers_mut(), "max_request_bytes");
            decode_error_to_invalid_argument(response.headers_mut());
            if !handled.load(Ordering::Relaxed) {
                count_refused_before_the_handler(&ingest, response.headers());
            }
            Ok(response)
        })
    }
}

/// Counts a call tonic answered with an error before the handler ran (a trailers-only
/// answer: `grpc-status` in the headers).
fn count_refused_before_the_handler(ingest: &Ingest, headers: &http::HeaderMap) {
    let code = headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok());
    if let Some(code) = code.filter(|code| *code != tonic::Code::Ok as i32) {
        let detail = headers
            .get("grpc-message")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        ingest.refused_for(RefusalReason::of_grpc_code(code), detail);
    }
}
