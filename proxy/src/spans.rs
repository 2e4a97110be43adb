//! Spans of sampled requests, exported to the collector over OTLP/gRPC in batches.
//!
//! ```text
//!  request path ──try_send──► bounded queue ──batch (≤512, ≤1 s)──► TraceService.Export
//!       (full: drop + count)                     (failed: drop + count, back off)
//! ```

use std::sync::Arc;
use std::time::Duration;

use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;
use tracing::{debug, warn};

use crate::mesh::WorkloadIdentity;
use crate::report::{BatchSender, HalfFull, batch_channel, gather};
use crate::stats::Stats;

/// Most spans in one export.
pub const MAX_BATCH_SPANS: usize = 512;
/// How long a batch waits for more spans after its first.
pub const BATCH_LINGER: Duration = Duration::from_secs(1);
/// Longest one export may take.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The request path's handle on the span queue.
#[derive(Debug, Clone)]
pub struct SpanQueue {
    sender: BatchSender<Span>,
    stats: Stats,
}

impl SpanQueue {
    /// Queues a span without waiting; a full queue drops it and counts the drop.
    pub fn submit(&self, span: Span) {
        if !self.sender.try_send(span) {
            self.stats.spans_dropped.inc();
        }
    }
}

/// The background exporter.
#[derive(Debug)]
pub struct SpanExporter {
    endpoint: Endpoint,
    resource: Resource,
    receiver: mpsc::Receiver<Span>,
    half_full: Arc<HalfFull>,
    stats: Stats,
}

/// A queue of `capacity` spans and the exporter that sends them to `endpoint`.
pub fn span_channel(endpoint: Endpoint, identity: &WorkloadIdentity, service: &str, capacity: usize, stats: Stats) -> (SpanQueue, SpanExporter) {
    let (sender, receiver, half_full) = batch_channel(capacity);
    let resource = Resource {
        attributes: vec![
            // Istio's proxies name their spans' service `<service>.<namespace>`.
            string_attribute("service.name", format!("{service}.{}", identity.namespace)),
            string_attribute("service.namespace", identity.namespace.clone()),
            string_attribute("service.version", identity.version.clone()),
            string_attribute("service.instance.id", identity.name.clone()),
            string_attribute("k8s.namespace.name", identity.namespace.clone()),
            string_attribute("telemetry.sdk.name", "meshtel-proxy".to_owned()),
        ],
        ..Default::default()
    };
    (SpanQueue { sender, stats: stats.clone() }, SpanExporter { endpoint, resource, receiver, half_full, stats })
}

impl SpanExporter {
    /// Exports until `shutdown` flips to true, then sends what is queued once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut client = TraceServiceClient::new(self.endpoint.connect_lazy());
        let mut backoff = Duration::ZERO;
        loop {
            let first = tokio::select! {
                span = self.receiver.recv() => span,
                _ = shutdown.changed() => None,
            };
            let Some(first) = first else { break };
            let mut spans = vec![first];
            // Shutdown cuts the linger short; what was gathered is exported below.
            tokio::select! {
                _ = gather(&mut self.receiver, &self.half_full, &mut spans, MAX_BATCH_SPANS, BATCH_LINGER) => {}
                _ = shutdown.changed() => {}
            }
            if self.export(&mut client, spans).await {
                backoff = Duration::ZERO;
            } else {
                backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // Shutdown: one last export of what is queued, bounded by the export timeout.
        let mut spans = Vec::new();
        while let Ok(span) = self.receiver.try_recv() {
            spans.push(span);
        }
        if !spans.is_empty() {
            self.export(&mut client, spans).await;
        }
    }

    async fn export(&self, client: &mut TraceServiceClient<tonic::transport::Channel>, spans: Vec<Span>) -> bool {
        let count = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "meshtel-proxy".to_owned(), version: env!("CARGO_PKG_VERSION").to_owned(), ..Default::default() }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        match tokio::time::timeout(EXPORT_TIMEOUT, client.export(request)).await {
            Ok(Ok(_)) => {
                self.stats.spans_sent.inc_by(count);
                debug!(spans = count, "spans exported");
                true
            }
            Ok(Err(status)) => {
                self.stats.spans_dropped.inc_by(count);
                warn!(spans = count, code = ?status.code(), message = status.message(), "span export failed, dropped");
                false
            }
            Err(_) => {
                self.stats.spans_dropped.inc_by(count);
                warn!(spans = count, "span export timed out, dropped");
                false
            }
        }
    }
}

/// A string attribute.
pub fn string_attribute(key: &str, value: String) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }), ..Default::default() }
}

/// An integer attribute.
pub fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }), ..Default::default() }
}
