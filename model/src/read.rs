//! The read side of the trace store, as the query service sees it.

use crate::Result;
use crate::ids::TraceId;
use crate::trace::{DependencyLink, Operation, SpanKind, Trace, TraceQuery};

/// Everything the Jaeger API needs from storage.
#[async_trait::async_trait]
pub trait TraceReader: Send + Sync + 'static {
    /// All service names ever seen, sorted.
    async fn services(&self) -> Result<Vec<String>>;

    /// The operations of `service`, optionally only those of one span kind, sorted.
    async fn operations(&self, service: &str, kind: Option<SpanKind>) -> Result<Vec<Operation>>;

    /// Traces with at least one span matching `query`, newest first, at most
    /// `query.limit`; each trace complete, unless `query.max_spans` cut it (as
    /// [`Self::get_traces`] does).
    async fn find_traces(&self, query: &TraceQuery) -> Result<Vec<Trace>>;

    /// The stored traces among `trace_ids`, in that order, the ones not found left
    /// out. Together they hold at most `max_spans` spans: when the traces hold more,
    /// the largest are cut, as evenly as the bound allows, each keeping its earliest
    /// spans and counting the rest in [`Trace::omitted_spans`]. When the bound is
    /// smaller than the number of traces, some are left out whole: they come back
    /// without spans, all of them counted in `omitted_spans` ([`Trace::is_left_out`]),
    /// so that an answer can name them rather than call them missing.
    async fn get_traces(&self, trace_ids: &[TraceId], max_spans: usize) -> Result<Vec<Trace>>;

    /// Caller → callee edges of spans started in `[end - lookback, end]` (Unix ns).
    async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nano: u64,
    ) -> Result<Vec<DependencyLink>>;
}
