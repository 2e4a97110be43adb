//! A minimal OTLP/gRPC trace exporter for the benchmarks: it sends request bodies that
//! are already encoded (see [`super::template`]) over tonic, and decodes the response.

use std::time::Duration;

use anyhow::Context as _;
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::client::Grpc;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The OTLP trace export method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A codec that writes pre-encoded `ExportTraceServiceRequest` bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedExportCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct ResponseDecoder;

impl Codec for EncodedExportCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ExportTraceServiceResponse::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the export response: {e}")))
    }
}

/// One HTTP/2 connection to an OTLP/gRPC endpoint. Clones share the connection.
#[derive(Debug, Clone)]
pub struct ExportClient {
    grpc: Grpc<Channel>,
}

impl ExportClient {
    /// Opens a new connection to `endpoint` (`http://host:port`).
    pub async fn connect(endpoint: &str, gzip: bool) -> anyhow::Result<Self> {
        refuse_tls(endpoint)?;
        let channel = Endpoint::from_shared(endpoint.to_string())
            .with_context(|| format!("bad OTLP endpoint {endpoint:?}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        let mut grpc = Grpc::new(channel);
        if gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        Ok(ExportClient { grpc })
    }

    /// Sends one encoded export request; `timeout` bounds the whole call.
    pub async fn export(
        &mut self,
        body: Bytes,
        timeout: Duration,
    ) -> Result<ExportTraceServiceResponse, Status> {
        let call = async {
            self.grpc
                .ready()
                .await
                .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
            let mut request = tonic::Request::new(body);
            // Told to the server a little longer than the call's own bound, so that the
            // bound below ends the call as DEADLINE_EXCEEDED (tonic's client ends a
            // call at its grpc-timeout as CANCELLED, the code of a run's end).
            request.set_timeout(timeout + Duration::from_millis(100));
            self.grpc
                .unary(request, PathAndQuery::from_static(EXPORT_PATH), EncodedExportCodec)
                .await
                .map(tonic::Response::into_inner)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Status::deadline_exceeded("client timeout")),
        }
    }
}

/// The benchmarks speak cleartext HTTP/2 (h2c): an `https://` endpoint is refused
/// rather than sent cleartext.
pub fn refuse_tls(endpoint: &str) -> anyhow::Result<()> {
    let scheme = endpoint.trim_start().to_ascii_lowercase();
    if scheme.starts_with("https://") || scheme.starts_with("grpcs://") {
        anyhow::bail!(
            "{endpoint}: the benchmarks speak cleartext HTTP/2 only (h2c, as meshtel's 4317); \
             use http://, or reach a TLS endpoint through a local proxy"
        );
    }
    Ok(())
}

/// Whether an export that failed with `status` should be sent again (OTLP's rules:
/// `UNAVAILABLE` always, `RESOURCE_EXHAUSTED` only with a retry hint), and after how
/// long the server asked for, if it did.
pub fn retry_advice(status: &Status) -> (bool, Option<Duration>) {
    let hint = meshtel_collector::rpc::retry_delay_from_status(status.details());
    let retry = match status.code() {
        Code::Unavailable => true,
        Code::ResourceExhausted => hint.is_some(),
        _ => false,
    };
    (retry, hint)
}

/// A gRPC code's canonical name, for reports: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, …
pub fn code_name(code: Code) -> String {
    let code = i32::from(code);
    meshtel_model::grpc_status::name(code).map_or_else(|| code.to_string(), str::to_owned)
}
