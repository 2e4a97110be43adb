//! The protocol-neutral ingest step every server calls once it has read a request:
//! request-level limits, validation, the durable write, and the OTLP response.

use std::sync::Arc;

use bytes::Bytes;
use meshtel_model::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use meshtel_model::otlp::trace::v1::ResourceSpans;
use meshtel_model::validate::SpanLimits;
use meshtel_model::write::write_resource_spans;
use meshtel_model::{ExportSummary, SpanSink};
use tracing::debug;

use crate::config::IngestLimits;
use crate::error::{Error, Result};
use crate::inflight::{Hold, InflightBudget};
use crate::ingest_metrics::{IngestMetrics, Protocol, RefusalReason};

/// What every ingest server shares: where spans go, the limits they must respect, and
/// the counters of what they refuse.
#[derive(Clone)]
pub struct Ingest {
    sink: Arc<dyn SpanSink>,
    limits: Arc<IngestLimits>,
    span_limits: Arc<SpanLimits>,
    protocol: Protocol,
    metrics: Option<IngestMetrics>,
    budget: InflightBudget,
}

impl Ingest {
    /// Why every write would be refused now, if it would ([`SpanSink::refuses_writes`]).
    pub fn refuses_writes(&self) -> Option<String> {
        self.sink.refuses_writes()
    }

    /// An ingest step of `protocol` writing to `sink` under `limits`, counting what it
    /// refuses in `metrics` when given.
    pub fn new(
        sink: Arc<dyn SpanSink>,
        limits: IngestLimits,
        protocol: Protocol,
        metrics: Option<IngestMetrics>,
    ) -> Self {
        let limits_budget = limits.max_inflight_bytes;
        Ingest {
            sink,
            span_limits: Arc::new(limits.span_limits()),
            limits: Arc::new(limits),
            protocol,
            metrics,
            budget: InflightBudget::new(limits_budget),
        }
    }

    /// The same step taking its requests' bytes from `budget`, shared with the other
    /// ingest servers of the process (see [`crate::inflight`]).
    pub fn with_budget(mut self, budget: InflightBudget) -> Self {
        self.budget = budget;
        self
    }

    /// A hold on the in-flight budget for one request.
    pub fn hold(&self) -> Hold {
        self.budget.hold()
    }

    /// Counts (and, within the rate limit, logs) a request refused with `error`.
    pub fn refused(&self, error: &Error) {
        if let Some(metrics) = &self.metrics {
            metrics.request_refused(self.protocol, error);
        }
    }

    /// Counts (and, within the rate limit, logs) a request refused for `reason`.
    pub fn refused_for(&self, reason: RefusalReason, detail: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.refused_for(self.protocol, reason, detail);
        }
    }

    /// Counts `spans` rejected as invalid before they reached [`Self::export`] (a
    /// Zipkin span that could not be converted), as the spans `export` rejects are.
    pub fn spans_rejected(&self, spans: usize) {
        if let Some(metrics) = &self.metrics {
            metrics.spans_rejected(self.protocol, spans);
        }
    }

    /// The limits this ingest step enforces.
    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// Validates decoded spans, writes the valid ones durably and builds the OTLP
    /// response: `partial_success` set when spans were rejected or limits applied or
    /// there is a `warning` about the decoding, unset on full success. Fails as a whole
    /// on too many spans or a store error.
    pub async fn export(
        &self,
        resource_spans: Vec<ResourceSpans>,
        warning: Option<String>,
    ) -> Result<ExportTraceServiceResponse> {
        let mut summary =
            write_resource_spans(self.sink.as_ref(), resource_spans, &self.span_limits).await?;
        if let Some(warning) = warning {
            summary.warn(&warning);
        }
        Ok(self.response(summary))
    }

    /// As [`Self::export`], for a protobuf `ExportTraceServiceRequest` not yet decoded:
    /// the sink decodes it (the store reads it straight into its columns). A body that
    /// does not decode fails as a whole.
    pub async fn export_protobuf(&self, request: Bytes) -> Result<ExportTraceServiceResponse> {
        let summary = self
            .sink
            .write_export_request(request, &self.span_limits)
            .await?;
        Ok(self.response(summary))
    }

    /// The OTLP response for `summary`, its rejected spans counted.
    fn response(&self, summary: ExportSummary) -> ExportTraceServiceResponse {
        if let Some(metrics) = &self.metrics {
            metrics.spans_rejected(self.protocol, summary.rejected_spans);
            metrics.limited(self.protocol, summary.limited);
        }
        response(summary)
    }
}

/// The OTLP response for what became of a request's spans.
fn response(summary: ExportSummary) -> ExportTraceServiceResponse {
    debug!(
        spans = summary.accepted_spans,
        rejected = summary.rejected_spans,
        "accepted"
    );
    if summary.ends_before_start > 0 {
        debug!(
            spans = summary.ends_before_start,
            "spans end before they start"
        );
    }
    let partial_success = if summary.rejected_spans > 0 || !summary.error_message.is_empty() {
        Some(ExportTracePartialSuccess {
            rejected_spans: i64::try_from(summary.rejected_spans).unwrap_or(i64::MAX),
            error_message: summary.error_message,
        })
    } else {
        None
    };
    ExportTraceServiceResponse { partial_success }
}
