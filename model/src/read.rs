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
    /// `query.limit`; each trace complete and never empty.
    async fn find_traces(&self, query: &TraceQuery) -> Result<Vec<Trace>>;

    /// One whole trace, or `None` when no span of it is stored.
    async fn get_trace(&self, trace_id: TraceId) -> Result<Option<Trace>>;

    /// Caller → callee edges of spans started in `[end - lookback, end]` (Unix ns).
    async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nano: u64,
    ) -> Result<Vec<DependencyLink>>;
}
