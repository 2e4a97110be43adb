//! Spans of sampled requests, exported to the collector over OTLP/gRPC in batches.
//!
//! ```text
//!  request path ──try_send──► bounded queue ──batch (≤512, ≤1 s)──► TraceService.Export
//!       (full: drop + count)          ▲           (UNAVAILABLE & co: held, sent again
//!                                     └─ fills meanwhile   after a backoff; other
//!                                                          failures: drop + count)
//! ```
//!
//! A batch refused with a status OTLP calls retryable (the collector down or
//! restarting, or overloaded) is kept and sent again, with the queue filling behind it,
//! so a collector restart loses no span unless the queue overflows. Each export sends
//! a copy of its batch, to have it back when it fails. A timed-out export is not sent
//! again: the collector may have stored it.

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
use crate::report::{BatchSender, DropLog, HalfFull, batch_channel, gather};
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
    drops: Arc<DropLog>,
    stats: Stats,
}

impl SpanQueue {
    /// Queues a span without waiting; a full queue drops it and counts the drop.
    pub fn submit(&self, span: Span) {
        if !self.sender.try_send(span) {
            self.stats.spans_dropped.inc();
            self.drops.dropped(1, std::time::Instant::now());
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
    /// Exports refused for good: warned of at the first, then at most every 10 s.
    failures: parking_lot::Mutex<meshtel_model::log_window::LogWindow>,
}

/// A queue of `capacity` spans and the exporter that sends them to `endpoint`.
/// `instance` (the proxy's `--proxy-id`) tells replicas of one workload apart, as
/// `service.instance.id` must.
pub fn span_channel(
    endpoint: Endpoint,
    identity: &WorkloadIdentity,
    service: &str,
    instance: &str,
    capacity: usize,
    stats: Stats,
) -> (SpanQueue, SpanExporter) {
    let (sender, receiver, half_full) = batch_channel(capacity);
    let resource = Resource {
        attributes: vec![
            // Istio's proxies name their spans' service `<service>.<namespace>`.
            string_attribute("service.name", format!("{service}.{}", identity.namespace)),
            string_attribute("service.namespace", identity.namespace.clone()),
            string_attribute("service.version", identity.version.clone()),
            string_attribute("service.instance.id", instance.to_owned()),
            string_attribute("k8s.workload.name", identity.name.clone()),
            string_attribute("k8s.namespace.name", identity.namespace.clone()),
            string_attribute("telemetry.sdk.name", "meshtel-proxy".to_owned()),
        ],
        ..Default::default()
    };
    let drops = DropLog::shared("span", "meshtel_proxy_spans_dropped_total");
    (SpanQueue { sender, drops, stats: stats.clone() }, SpanExporter { endpoint, resource, receiver, half_full, stats, failures: Default::default() })
}

impl SpanExporter {
    /// Exports until `shutdown` flips to true, then sends what is queued once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut client = TraceServiceClient::new(self.endpoint.connect_lazy());
        let mut backoff = Duration::ZERO;
        // A batch the collector could not take yet, sent again before anything else.
        let mut held: Vec<Span> = Vec::new();
        loop {
            let spans = if held.is_empty() {
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
                spans
            } else {
                std::mem::take(&mut held)
            };
            match self.export(&mut client, spans).await {
                Exported::Sent => backoff = Duration::ZERO,
                failed => {
                    if let Exported::Retry(spans) = failed {
                        held = spans;
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                    tokio::select! {
                        () = tokio::time::sleep(crate::report::jittered(backoff)) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // Shutdown: one last export of what is held and queued, bounded by the export
        // timeout; what it cannot send is dropped and counted.
        let mut spans = held;
        while let Ok(span) = self.receiver.try_recv() {
            spans.push(span);
        }
        if !spans.is_empty()
            && let Exported::Retry(spans) = self.export(&mut client, spans).await
        {
            self.stats.spans_dropped.inc_by(spans.len() as u64);
            warn!(spans = spans.len(), "spans not exported before shutdown, dropped");
        }
    }

    /// Sends `spans` in one export request.
    async fn export(&self, client: &mut TraceServiceClient<tonic::transport::Channel>, spans: Vec<Span>) -> Exported {
        let count = spans.len() as u64;
        let kept = spans.clone();
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
                Exported::Sent
            }
            Ok(Err(status)) if retryable(status.code()) => {
                debug!(spans = count, code = ?status.code(), error = status.message(), "span export failed, kept to send again");
                Exported::Retry(kept)
            }
            Ok(Err(status)) => {
                self.stats.spans_dropped.inc_by(count);
                // Every batch fails alike when the collector address is wrong: one line
                // at the first, then at most one per 10 s with how many failed since.
                if let Some(failed) = self.failures.lock().note(std::time::Instant::now()) {
                    let message = status.message();
                    match crate::report::not_the_grpc_port(message) {
                        Some(hint) => warn!(exports = failed, spans = count, code = ?status.code(), error = message, hint, "span exports failed, their spans dropped"),
                        None => warn!(exports = failed, spans = count, code = ?status.code(), error = message, "span exports failed, their spans dropped"),
                    }
                }
                Exported::Dropped
            }
            Err(_) => {
                self.stats.spans_dropped.inc_by(count);
                warn!(spans = count, "span export timed out, dropped");
                Exported::Dropped
            }
        }
    }
}

/// What became of one export's batch.
enum Exported {
    Sent,
    /// Refused for now: the batch, to send again.
    Retry(Vec<Span>),
    Dropped,
}

/// The gRPC statuses OTLP says an exporter retries (a collector that is down answers
/// `UNAVAILABLE`); `RESOURCE_EXHAUSTED` is not among them, as meshtel's collector
/// answers it to a request that can never fit.
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(code, Code::Unavailable | Code::Cancelled | Code::Aborted | Code::OutOfRange | Code::DataLoss | Code::DeadlineExceeded)
}

/// A string attribute.
pub fn string_attribute(key: &str, value: String) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }), ..Default::default() }
}

/// An integer attribute.
pub fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }), ..Default::default() }
}
