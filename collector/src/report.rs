//! The `meshtel.mixer.v1.Mixer` service: the Report stream (request records from the
//! sidecar proxies become Istio metrics and service-graph edges) and, when a quota
//! engine is given ([`mixer_grpc_service`]), `Check` and `WatchQuotas`
//! ([`crate::quota`]).
//!
//! ```text
//!  proxy ══ ReportRequest (batch) ══► tonic: gzip, max message size
//!                                          ▼
//!              Reports::digest: max records per batch → validate each record
//!              (bad ones counted, not fatal) → MeshMetrics (Istio series, capped)
//!                                          → EdgeSink (10 s rollups, SQL)
//!                                          → meshtel_report_* (per batch)
//!                                          ▼
//!  proxy ◄═ ReportResponse{accepted} ═══ one per request, in order
//! ```
//!
//! The handler is a thin adapter over [`Reports`]; digestion is synchronous, in-memory
//! and fast (no I/O), so it runs inline on the stream. Records of a batch past
//! `max_records_per_batch` are counted as rejected and skipped; a message over
//! `max_message_bytes` is refused by tonic (`OUT_OF_RANGE`), which ends the stream:
//! the proxy splits that batch in two, sends the halves again and keeps its later
//! batches as small, and drops (and counts) a single record that is still too large,
//! and from then on records that cannot fit the limit the refusal stated.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytesize::ByteSize;
use futures::{Stream, StreamExt};
use meshtel_model::EdgeSink;
use meshtel_model::graph::{SystemUnixClock, UnixClock};
use meshtel_model::log_window::{LOG_INTERVAL, LogWindow};
use meshtel_model::mixer::mixer_server::{Mixer, MixerServer};
use meshtel_model::mixer::{
    CheckRequest, CheckResponse, ReportRequest, ReportResponse, Reporter, RequestRecord,
    WatchQuotasRequest,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tracing::{debug, instrument, warn};

use crate::error::{Error, Result};
use crate::grpc_decode::InvalidArgumentOnDecodeError;
use crate::mesh_metrics::{MeshMetrics, MeshMetricsConfig};
use crate::quota::{PolicyStream, QuotaEngine, empty_policy_stream};

/// Settings of the Report stream and the mesh metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Most request records in one Report batch; larger batches end the stream with
    /// `INVALID_ARGUMENT`.
    pub max_records_per_batch: usize,
    /// Largest Report message, as received or once decompressed.
    #[serde(deserialize_with = "meshtel_model::size::deserialize_size")]
    pub max_message_bytes: ByteSize,
    /// Longest label value (workload, service, path-free fields); records with a
    /// longer one are refused as invalid.
    pub max_label_bytes: usize,
    /// Most Report and WatchQuotas streams open at once, from all proxies together
    /// (each holds some 5 KiB while idle); past it a new one is refused `UNAVAILABLE`
    /// and its proxy retries.
    pub max_streams: usize,
    /// Istio metrics settings.
    pub metrics: MeshMetricsConfig,
}

/// Default of [`ReportConfig::max_records_per_batch`].
pub fn default_max_records_per_batch() -> usize {
    10_000
}

/// Default of [`ReportConfig::max_message_bytes`].
pub fn default_max_message_bytes() -> ByteSize {
    ByteSize::mib(8)
}

/// Default of [`ReportConfig::max_label_bytes`].
pub fn default_max_label_bytes() -> usize {
    256
}

/// Default of [`ReportConfig::max_streams`]: a Report and a WatchQuotas stream for
/// each of 8,192 proxies, about 90 MiB when all are open.
pub fn default_max_streams() -> usize {
    16_384
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            max_records_per_batch: default_max_records_per_batch(),
            max_message_bytes: default_max_message_bytes(),
            max_label_bytes: default_max_label_bytes(),
            max_streams: default_max_streams(),
            metrics: MeshMetricsConfig::default(),
        }
    }
}

impl ReportConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.max_records_per_batch == 0 {
            return Err(Error::InvalidConfig(
                "[report] max_records_per_batch must be at least 1".into(),
            ));
        }
        if self.max_message_bytes.as_u64() < 1024 {
            return Err(Error::InvalidConfig(
                "[report] max_message_bytes must be at least 1 KiB".into(),
            ));
        }
        if self.max_label_bytes == 0 {
            return Err(Error::InvalidConfig(
                "[report] max_label_bytes must be at least 1".into(),
            ));
        }
        if self.max_streams == 0 {
            return Err(Error::InvalidConfig(
                "[report] max_streams must be at least 1".into(),
            ));
        }
        self.metrics.validate()
    }
}

/// Why a record is refused (counted in `meshtel_report_records_rejected_total`).
fn invalid_record(record: &RequestRecord, max_label_bytes: usize) -> Option<&'static str> {
    if !matches!(
        Reporter::try_from(record.reporter),
        Ok(Reporter::Source | Reporter::Destination)
    ) {
        return Some("reporter");
    }
    if record.response_code != 0 && !(100..=599).contains(&record.response_code) {
        return Some("response_code");
    }
    if record.grpc_response_status.is_some_and(|s| s > 999) {
        return Some("grpc_response_status");
    }
    let too_long = |s: &str| s.len() > max_label_bytes;
    let workload_too_long = |w: Option<&meshtel_model::mixer::Workload>| {
        w.is_some_and(|w| {
            [
                &w.name,
                &w.namespace,
                &w.app,
                &w.version,
                &w.principal,
                &w.canonical_service,
                &w.canonical_revision,
                &w.cluster,
            ]
            .into_iter()
            .any(|v| too_long(v))
        })
    };
    if workload_too_long(record.source.as_ref())
        || workload_too_long(record.destination.as_ref())
        || [
            &record.destination_service,
            &record.destination_service_name,
            &record.destination_service_namespace,
            &record.request_protocol,
            &record.response_flags,
            &record.connection_security_policy,
        ]
        .into_iter()
        .any(|v| too_long(v))
    {
        return Some("label_too_long");
    }
    None
}

/// The Report domain: digests batches into metrics and edges.
#[derive(Clone)]
pub struct Reports {
    metrics: MeshMetrics,
    edges: Option<Arc<dyn EdgeSink>>,
    clock: Arc<dyn UnixClock>,
    config: ReportConfig,
    /// Batches with refused records, told at most once per interval.
    refusals_log: Arc<parking_lot::Mutex<LogWindow>>,
}

impl Reports {
    /// Reports feeding `metrics` and, when given, `edges`.
    pub fn new(
        metrics: MeshMetrics,
        edges: Option<Arc<dyn EdgeSink>>,
        clock: Arc<dyn UnixClock>,
        config: ReportConfig,
    ) -> Self {
        Reports {
            metrics,
            edges,
            clock,
            config,
            refusals_log: Arc::default(),
        }
    }

    /// The metrics this feeds.
    pub fn metrics(&self) -> &MeshMetrics {
        &self.metrics
    }

    /// The largest Report message accepted (`[report] max_message_bytes`).
    pub fn max_message_bytes(&self) -> usize {
        usize::try_from(self.config.max_message_bytes.as_u64()).unwrap_or(usize::MAX)
    }

    /// Digests one batch; answers how many records were accepted. Invalid records, and
    /// those past `max_records_per_batch`, are counted and skipped: a refused batch
    /// would be sent again by its proxy at every reconnect, and counted nowhere.
    pub fn digest(&self, batch: &ReportRequest) -> Result<ReportResponse> {
        let max_label_bytes = self.config.max_label_bytes;
        let taken = batch.records.len().min(self.config.max_records_per_batch);
        let beyond = (batch.records.len() - taken) as u64;
        let mut rejected = beyond;
        self.metrics
            .records_rejected("max_records_per_batch", beyond);
        let mut first_reason = (rejected > 0).then_some("beyond [report] max_records_per_batch");
        let valid: Vec<&RequestRecord> = batch.records[..taken]
            .iter()
            .filter(|r| match invalid_record(r, max_label_bytes) {
                Some(reason) => {
                    rejected += 1;
                    self.metrics.records_rejected(reason, 1);
                    first_reason.get_or_insert(reason);
                    false
                }
                None => true,
            })
            .collect();
        if let Some(reason) = first_reason {
            // Requests missing from the metrics and the graph: worth a line, but not
            // one per batch from a proxy that sends nothing else.
            match self.refusals_log.lock().note(Instant::now()) {
                Some(batches) => warn!(
                    proxy = %batch.proxy_id,
                    rejected,
                    reason,
                    batches_with_refusals = batches,
                    max_label_bytes,
                    at_most_every = %humantime::format_duration(LOG_INTERVAL),
                    "request records refused (invalid, or past [report] max_records_per_batch): their requests are left out of the istio metrics and the graph (meshtel_report_records_rejected_total{reason})"
                ),
                None => {
                    debug!(proxy = %batch.proxy_id, rejected, reason, "invalid request records")
                }
            }
        }
        self.metrics.record_requests(valid.iter().copied());
        if let Some(edges) = &self.edges {
            edges.record_edges(&valid);
        }
        let accepted = valid.len() as u64;
        let lag = (batch.sent_unix_nano > 0).then(|| {
            let now = self.clock.now_unix_nano();
            now.saturating_sub(batch.sent_unix_nano) as f64 / 1e9
        });
        self.metrics
            .record_batch(accepted, batch.dropped_since_last, lag);
        Ok(ReportResponse { accepted })
    }
}

/// The tonic `Mixer` service: Report over [`Reports`], Check and WatchQuotas over an
/// optional [`QuotaEngine`].
#[derive(Clone)]
pub struct MixerService {
    reports: Reports,
    quota: Option<Arc<QuotaEngine>>,
    /// Turns true when the server shuts down: the long-lived streams (Report,
    /// WatchQuotas) end then, so that they do not hold up the shutdown; proxies
    /// reconnect to the next collector.
    stop: Option<watch::Receiver<bool>>,
}

impl MixerService {
    /// `stream`, ended once [`MixerService::stop`] turns true.
    fn until_stopped<T: Send + 'static>(
        &self,
        stream: impl Stream<Item = T> + Send + 'static,
    ) -> Pin<Box<dyn Stream<Item = T> + Send>> {
        let Some(mut stop) = self.stop.clone() else {
            return Box::pin(stream);
        };
        Box::pin(stream.take_until(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }))
    }
}

/// The former name of [`MixerService`].
pub type ReportService = MixerService;

/// Decrements `istio_build` when a stream ends, however it ends.
struct OpenStream(MeshMetrics);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.stream_closed();
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ReportResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Mixer for MixerService {
    type ReportStream = ResponseStream;
    type WatchQuotasStream = PolicyStream;

    #[instrument(skip_all, fields(protocol = "report"))]
    async fn report(
        &self,
        request: tonic::Request<tonic::Streaming<ReportRequest>>,
    ) -> Result<tonic::Response<Self::ReportStream>, tonic::Status> {
        let inbound = request.into_inner();
        let reports = self.reports.clone();
        reports.metrics.stream_opened();
        let open = OpenStream(reports.metrics.clone());
        // One response per request, in order; the first error ends the stream.
        let responses = inbound
            .map(move |batch| {
                let _open = &open;
                batch.and_then(|batch| {
                    reports.digest(&batch).map_err(|error| {
                        debug!(proxy = %batch.proxy_id, error = %error, "report batch refused");
                        error.grpc_status()
                    })
                })
            })
            .scan(false, |failed, item| {
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            });
        Ok(tonic::Response::new(self.until_stopped(responses)))
    }

    #[instrument(level = "debug", skip_all, fields(protocol = "check"))]
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let Some(engine) = &self.quota else {
            return Err(tonic::Status::unimplemented(
                "quota Check is not enabled on this collector (no quota engine)",
            ));
        };
        match engine.check_request(request.get_ref()) {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(error) => {
                debug!(error = %error, "check refused");
                Err(error.grpc_status())
            }
        }
    }

    #[instrument(skip_all, fields(protocol = "watch_quotas"))]
    async fn watch_quotas(
        &self,
        request: tonic::Request<WatchQuotasRequest>,
    ) -> Result<tonic::Response<Self::WatchQuotasStream>, tonic::Status> {
        debug!(proxy = %request.get_ref().proxy_id, "quota policies watched");
        let policies = match &self.quota {
            Some(engine) => engine.policy_stream(),
            None => empty_policy_stream(),
        };
        Ok(tonic::Response::new(self.until_stopped(policies)))
    }
}

/// Builds the `Mixer` gRPC service (gzip both ways, message size bound) over `reports`
/// without a quota engine (Check answers `UNIMPLEMENTED`, WatchQuotas an empty set),
/// for `tonic::transport::Server::add_service` next to the OTLP service.
pub fn report_grpc_service(
    reports: Reports,
) -> InvalidArgumentOnDecodeError<MixerServer<MixerService>> {
    mixer_grpc_service(reports, None)
}

/// Builds the `Mixer` gRPC service: Report over `reports`, and Check and WatchQuotas
/// over `quota` when given. An undecodable request gets `INVALID_ARGUMENT`.
pub fn mixer_grpc_service(
    reports: Reports,
    quota: Option<Arc<QuotaEngine>>,
) -> InvalidArgumentOnDecodeError<MixerServer<MixerService>> {
    mixer_grpc_service_until(reports, quota, None)
}

/// [`mixer_grpc_service`] whose long-lived streams end when `stop` turns true (the
/// server's shutdown), instead of holding it up until the proxies hang up.
pub fn mixer_grpc_service_until(
    reports: Reports,
    quota: Option<Arc<QuotaEngine>>,
    stop: Option<watch::Receiver<bool>>,
) -> InvalidArgumentOnDecodeError<MixerServer<MixerService>> {
    let max_message_bytes = reports.max_message_bytes();
    InvalidArgumentOnDecodeError::new(
        MixerServer::new(MixerService {
            reports,
            quota,
            stop,
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes),
    )
}

/// [`Reports`] with the system clock: what the binary builds.
pub fn reports_with_system_clock(
    metrics: MeshMetrics,
    edges: Option<Arc<dyn EdgeSink>>,
    config: ReportConfig,
) -> Reports {
    Reports::new(metrics, edges, Arc::new(SystemUnixClock), config)
}

#[cfg(test)]
mod tests;
