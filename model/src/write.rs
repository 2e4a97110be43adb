//! The write side of the trace store, as the ingest servers see it.

use bytes::Bytes;
use prost::Message;

use crate::Error;
use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::trace::v1::ResourceSpans;
use crate::validate::{SpanLimits, count_spans, validate_resource_spans};

/// What became of the spans of an accepted request, for OTLP `partial_success`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportSummary {
    /// Attributes dropped and values and names cut by the limits, also told in
    /// `error_message`.
    pub limited: crate::validate::LimitsApplied,
    /// Spans stored.
    pub accepted_spans: usize,
    /// Spans dropped as invalid.
    pub rejected_spans: usize,
    /// Rejections and warnings in English; empty when there is none.
    pub error_message: String,
    /// Spans stored whose end is before their start.
    pub ends_before_start: usize,
}

impl ExportSummary {
    /// Adds a warning to `error_message`, after what it says already.
    pub fn warn(&mut self, warning: &str) {
        if !self.error_message.is_empty() {
            self.error_message.push_str("; ");
        }
        self.error_message.push_str(warning);
    }
}

/// Where ingest hands validated spans. The writes return only once the spans are in
/// the write-ahead log: after `Ok`, a process crash loses nothing.
#[async_trait::async_trait]
pub trait SpanSink: Send + Sync + 'static {
    /// Why every write would be refused now, if it would (a full disk, an unwritable
    /// log): what a readiness probe reports. Passing by default.
    fn refuses_writes(&self) -> Option<String> {
        None
    }

    /// Durably appends the spans. Every span must carry a 16-byte trace id and an
    /// 8-byte span id (ingest validates this before the call).
    async fn write_spans(&self, spans: Vec<ResourceSpans>) -> Result<(), Error>;

    /// Decodes a protobuf `ExportTraceServiceRequest`, validates it under `limits`
    /// ([`crate::validate`]) and durably appends the valid spans. A sink may read the
    /// encoding directly instead of decoding it into structs first, as long as the
    /// result is the same: this default decodes with prost and calls
    /// [`write_resource_spans`].
    async fn write_export_request(
        &self,
        request: Bytes,
        limits: &SpanLimits,
    ) -> Result<ExportSummary, Error> {
        let request = ExportTraceServiceRequest::decode(request)
            .map_err(|error| Error::DecodeRequest(error.to_string()))?;
        write_resource_spans(self, request.resource_spans, limits).await
    }
}

/// Checks the request-level span limit, validates the spans ([`crate::validate`]) and
/// writes the valid ones to `sink`.
pub async fn write_resource_spans<S: SpanSink + ?Sized>(
    sink: &S,
    resource_spans: Vec<ResourceSpans>,
    limits: &SpanLimits,
) -> Result<ExportSummary, Error> {
    let count = count_spans(&resource_spans);
    if count > limits.max_spans_per_request {
        return Err(Error::TooManySpans {
            count,
            limit: limits.max_spans_per_request,
        });
    }
    let validated = validate_resource_spans(resource_spans, limits);
    if !validated.resource_spans.is_empty() {
        sink.write_spans(validated.resource_spans).await?;
    }
    Ok(ExportSummary {
        accepted_spans: validated.accepted_spans,
        rejected_spans: validated.rejected_spans,
        error_message: validated.error_message,
        ends_before_start: validated.ends_before_start,
        limited: validated.limited,
    })
}
