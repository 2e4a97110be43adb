//! The write side of the trace store, as the ingest servers see it.

use std::time::Duration;

use crate::otlp::trace::v1::ResourceSpans;

/// Why a write was not accepted. Nothing of a failed write is stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The pipeline is full; the client should retry after the given delay.
    #[error("overloaded, retry after {retry_after:?}")]
    Overloaded {
        /// Suggested delay before a retry.
        retry_after: Duration,
    },
    /// The store is shutting down or its log cannot be written.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Where ingest hands validated spans. `write_spans` returns only once the spans are
/// in the write-ahead log: after `Ok`, a process crash loses nothing.
#[async_trait::async_trait]
pub trait SpanSink: Send + Sync + 'static {
    /// Durably appends the spans. Every span must carry a 16-byte trace id and an
    /// 8-byte span id (ingest validates this before the call).
    async fn write_spans(&self, spans: Vec<ResourceSpans>) -> Result<(), WriteError>;
}
