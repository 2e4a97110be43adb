//! The protocol-neutral ingest step every server calls once it has decoded a request:
//! request-level limits, validation, the durable write, and the OTLP response.

use std::sync::Arc;

use meshtel_model::SpanSink;
use meshtel_model::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use meshtel_model::otlp::trace::v1::ResourceSpans;
use tracing::debug;

use crate::config::IngestLimits;
use crate::error::{Error, Result};
use crate::validate::{count_spans, validate_resource_spans};

/// What every ingest server shares: where spans go and the limits they must respect.
#[derive(Clone)]
pub struct Ingest {
    sink: Arc<dyn SpanSink>,
    limits: Arc<IngestLimits>,
}

impl Ingest {
    /// An ingest step writing to `sink` under `limits`.
    pub fn new(sink: Arc<dyn SpanSink>, limits: IngestLimits) -> Self {
        Ingest {
            sink,
            limits: Arc::new(limits),
        }
    }

    /// The limits this ingest step enforces.
    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// Validates decoded spans, writes the valid ones durably and builds the OTLP
    /// response: `partial_success` set when spans were rejected or limits applied,
    /// unset on full success. Fails as a whole on too many spans or a store error.
    pub async fn export(
        &self,
        resource_spans: Vec<ResourceSpans>,
    ) -> Result<ExportTraceServiceResponse> {
        let received = count_spans(&resource_spans);
        if received > self.limits.max_spans_per_request {
            return Err(Error::TooManySpans {
                count: received,
                limit: self.limits.max_spans_per_request,
            });
        }
        let validated = validate_resource_spans(resource_spans, &self.limits);
        if !validated.resource_spans.is_empty() {
            self.sink.write_spans(validated.resource_spans).await?;
        }
        debug!(
            spans = validated.accepted_spans,
            rejected = validated.rejected_spans,
            "accepted"
        );
        let partial_success = if validated.rejected_spans > 0 || !validated.error_message.is_empty()
        {
            Some(ExportTracePartialSuccess {
                rejected_spans: i64::try_from(validated.rejected_spans).unwrap_or(i64::MAX),
                error_message: validated.error_message,
            })
        } else {
            None
        };
        Ok(ExportTraceServiceResponse { partial_success })
    }
}
