//! Istio's standard request metrics, made from request records, and the collector's
//! own `meshtel_report_*` / `meshtel_mesh_*` metrics, in one Prometheus registry.
//!
//! ```text
//!  records of a batch ─► labels (25, Istio 1.12+ order, "unknown" filling)
//!        │                    │ hash of borrowed label values (no allocation)
//!        │                    ▼
//!        │         series cache: hash → series ──new series──► cap? ─► overflow
//!        ▼                    │                                                counted
//!  istio_requests_total +1, istio_request_duration_milliseconds, istio_request_bytes,
//!  istio_response_bytes added to the cached series (plain counters under one lock,
//!  taken once per batch); a scrape copies the counters out under that lock, then
//!  writes them in Istio's label order without it
//! ```
//!
//! A series is one label set; the four request metrics share label sets, so the cap
//! ([`MeshMetricsConfig::max_series`]) bounds each metric family. A record that would
//! create a series beyond the cap is left out of the Istio metrics and counted in
//! `meshtel_mesh_series_overflow_total`, and a WARN says so at most once per 10 s
//! (how many records since the previous line); memory never grows without bound.
//!
//! A series without a request for [`MeshMetricsConfig::series_expiry`] (default 1 h) is
//! removed, as Mixer's Prometheus adapter did with `metricsExpiryDuration`: series of
//! deleted workloads, old versions and rare response codes do not hold the cap
//! forever. The Report path and scrapes look for idle series at most once per
//! `min(series_expiry / 10, 60 s)`; a label set seen again starts from 0, which
//! Prometheus' `rate()` and `increase()` take as a counter reset.
//!
//! Values follow Istio's stats filter: duration in whole milliseconds (truncated),
//! sizes as reported (headers + body), `grpc_response_status` empty for non-gRPC and `2`
//! when a gRPC request has no status, `response_flags` `-` when none, every other empty
//! label `unknown`; canonical service falls back to the `app` label then the workload
//! name, canonical revision to the `version` label then `latest`.

mod series;

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use meshtel_model::graph::reporter_label;
use meshtel_model::log_window::{LOG_INTERVAL, LogWindow};
use meshtel_model::mixer::{RequestRecord, Workload};
use parking_lot::Mutex;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// Istio 1.12+ standard labels, in the order the stats filter emits them.
pub const ISTIO_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
    "response_code",
    "grpc_response_status",
];

/// The `tag` of `istio_build{component="proxy"}`.
pub const BUILD_TAG: &str = concat!("meshtel-", env!("CARGO_PKG_VERSION"));

/// Settings of the mesh metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshMetricsConfig {
    /// Most label sets (series) per Istio metric family. Records that would add a
    /// series beyond it are counted in `meshtel_mesh_series_overflow_total` and left
    /// out of the Istio metrics (edges still count them), with a WARN at most once
    /// per 10 s.
    pub max_series: usize,
    /// A series (label set) without a request for this long is removed from the Istio
    /// metrics, freeing its place under `max_series` (Mixer's `metricsExpiryDuration`).
    /// If its label set comes back, it starts from 0: Prometheus `rate()` and
    /// `increase()` see a counter reset and stay right. Keep it several scrape
    /// intervals long: a series removed before a scrape has seen its last requests
    /// loses them. `"0s"`: series never expire. Default `"1h"`; otherwise at least
    /// `"1m"`.
    #[serde(with = "crate::quota::config::duration_text")]
    pub series_expiry: Duration,
}

/// Default of [`MeshMetricsConfig::max_series`].
pub fn default_max_series() -> usize {
    10_000
}

/// Default of [`MeshMetricsConfig::series_expiry`]: an hour, long beside any scrape
/// interval and dashboard `rate()` window, short beside the life of a collector.
pub fn default_series_expiry() -> Duration {
    Duration::from_secs(3600)
}

/// Shortest [`MeshMetricsConfig::series_expiry`] other than 0.
const MIN_SERIES_EXPIRY: Duration = Duration::from_secs(60);

impl Default for MeshMetricsConfig {
    fn default() -> Self {
        MeshMetricsConfig {
            max_series: default_max_series(),
            series_expiry: default_series_expiry(),
        }
    }
}

impl MeshMetricsConfig {
    /// Checks the settings: at least one series; an expiry of 0 (never) or at least
    /// a minute.
    pub fn validate(&self) -> Result<()> {
        if self.max_series == 0 {
            return Err(Error::InvalidConfig(
                "[report] metrics.max_series must be at least 1".into(),
            ));
        }
        if !self.series_expiry.is_zero() && self.series_expiry < MIN_SERIES_EXPIRY {
            return Err(Error::InvalidConfig(format!(
                "[report] metrics.series_expiry must be \"0s\" (never) or at least {}, got {}",
                humantime::format_duration(MIN_SERIES_EXPIRY),
                humantime::format_duration(self.series_expiry)
            )));
        }
        Ok(())
    }
}

/// Decimal strings of 0..=999 so that codes never allocate.
static CODES: LazyLock<Vec<String>> = LazyLock::new(|| (0..1000).map(|c| c.to_string()).collect());

/// The text of a status code below 1000 (larger ones are refused by validation).
fn code_text(code: u32) -> &'static str {
    CODES.get(code as usize).map_or("unknown", String::as_str)
}

fn or_unknown(value: &str) -> &str {
    if value.is_empty() { "unknown" } else { value }
}

/// The 25 label values of a record, borrowed from it.
pub fn istio_label_values(record: &RequestRecord) -> [&str; 25] {
    static EMPTY: Workload = Workload {
        name: String::new(),
        namespace: String::new(),
        app: String::new(),
        version: String::new(),
        principal: String::new(),
        canonical_service: String::new(),
        canonical_revision: String::new(),
        cluster: String::new(),
    };
    let source = record.source.as_ref().unwrap_or(&EMPTY);
    let destination = record.destination.as_ref().unwrap_or(&EMPTY);
    let destination_service = or_unknown(&record.destination_service);
    let destination_service_name = if record.destination_service_name.is_empty() {
        destination_service
    } else {
        &record.destination_service_name
    };
    let destination_service_namespace = if record.destination_service_namespace.is_empty() {
        or_unknown(&destination.namespace)
    } else {
        &record.destination_service_namespace
    };
    let grpc_response_status = if record.request_protocol == "grpc" {
        code_text(record.grpc_response_status.unwrap_or(2))
    } else {
        ""
    };
    [
        reporter_label(record.reporter),
        or_unknown(&source.name),
        or_unknown(&source.namespace),
        or_unknown(&source.principal),
        or_unknown(&source.app),
        or_unknown(&source.version),
        canonical_service(source),
        canonical_revision(source),
        or_unknown(&source.cluster),
        or_unknown(&destination.name),
        or_unknown(&destination.namespace),
        or_unknown(&destination.principal),
        or_unknown(&destination.app),
        or_unknown(&destination.version),
        destination_service,
        destination_service_name,
        destination_service_namespace,
        canonical_service(destination),
        canonical_revision(destination),
        or_unknown(&destination.cluster),
        or_unknown(&record.request_protocol),
        if record.response_flags.is_empty() {
            "-"
        } else {
            &record.response_flags
        },
        or_unknown(&record.connection_security_policy),
        code_text(record.response_code),
        grpc_response_status,
    ]
}

fn canonical_service(w: &Workload) -> &str {
    [&w.canonical_service, &w.app, &w.name]
        .into_iter()
        .find(|v| !v.is_empty())
        .map_or("unknown", String::as_str)
}

/// The canonical-revision label, else the version, else `latest`, as Istio's stats
/// plugin writes it: for a peer without any metadata too.
fn canonical_revision(w: &Workload) -> &str {
    if !w.canonical_revision.is_empty() {
        &w.canonical_revision
    } else if !w.version.is_empty() {
        &w.version
    } else {
        "latest"
    }
}

/// What one call to [`MeshMetrics::record_requests`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Records counted in the Istio metrics.
    pub recorded: u64,
    /// Records left out because their series would pass the cap.
    pub overflowed: u64,
}

/// The `reason` values of `meshtel_report_records_rejected_total`.
pub const REJECT_REASONS: [&str; 5] = [
    "reporter",
    "response_code",
    "grpc_response_status",
    "label_too_long",
    "max_records_per_batch",
];

struct Inner {
    registry: Registry,
    build: IntGauge,
    series_count: IntGauge,
    series_overflow: IntCounter,
    series_expired: IntCounter,
    records: IntCounter,
    records_rejected: IntCounterVec,
    batches: IntCounter,
    dropped_by_proxies: IntCounter,
    tcp_events_skipped: IntCounter,
    lag_seconds: Histogram,
    cache: Mutex<series::SeriesCache>,
    max_series: usize,
    /// Rate limit of the WARN about records refused at the cap (its own lock, never
    /// taken with `cache`).
    overflow_log: Mutex<OverflowLog>,
}

/// The log window of the series cap and the records refused since its last line.
#[derive(Default)]
struct OverflowLog {
    window: LogWindow,
    untold: u64,
}

/// The mesh metrics registry. Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct MeshMetrics {
    inner: Arc<Inner>,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl MeshMetrics {
    /// A registry with every metric registered and no series yet.
    pub fn new(config: &MeshMetricsConfig) -> Result<MeshMetrics> {
        config.validate()?;
        let registry = Registry::new();
        let build = register(
            &registry,
            IntGauge::with_opts(
                Opts::new(
                    "istio_build",
                    "Proxies with an open Report stream, by build.",
                )
                .const_label("component", "proxy")
                .const_label("tag", BUILD_TAG),
            )?,
        )?;
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help)?);
        let series_overflow = counter(
            "meshtel_mesh_series_overflow_total",
            "Request records left out of the Istio metrics because of [report] metrics.max_series.",
        )?;
        let series_expired = counter(
            "meshtel_mesh_series_expired_total",
            "Istio series removed after [report] metrics.series_expiry without a request.",
        )?;
        let records = counter(
            "meshtel_report_records_total",
            "Request records accepted from proxies.",
        )?;
        let records_rejected = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "meshtel_report_records_rejected_total",
                    "Request records refused, by reason: reporter, response_code, \
                     grpc_response_status (out of range), label_too_long (over [report] \
                     max_label_bytes), max_records_per_batch (beyond it in one batch).",
                ),
                &["reason"],
            )?,
        )?;
        for reason in REJECT_REASONS {
            records_rejected.with_label_values(&[reason]);
        }
        let batches = counter("meshtel_report_batches_total", "Report batches received.")?;
        let dropped_by_proxies = counter(
            "meshtel_report_dropped_by_proxies_total",
            "Request records the proxies dropped before sending (queue full, collector down).",
        )?;
        let tcp_events_skipped = counter(
            "meshtel_report_tcp_events_skipped_total",
            "TCP connection events in Istio Mixer Reports, which make no Istio request metrics.",
        )?;
        let series_count = register(
            &registry,
            IntGauge::new(
                "meshtel_mesh_series",
                "Label sets in each Istio request metric.",
            )?,
        )?;
        let lag_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "meshtel_report_lag_seconds",
                    "Time from a proxy sending a batch to the collector processing it.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0,
                ]),
            )?,
        )?;
        Ok(MeshMetrics {
            inner: Arc::new(Inner {
                registry,
                build,
                series_count,
                series_overflow,
                series_expired,
                records,
                records_rejected,
                batches,
                dropped_by_proxies,
                tcp_events_skipped,
                lag_seconds,
                cache: Mutex::new(series::SeriesCache::new(config.series_expiry)),
                max_series: config.max_series,
                overflow_log: Mutex::default(),
            }),
        })
    }

    /// Counts `records` (already validated) in the Istio metrics.
    pub fn record_requests<'a>(
        &self,
        records: impl IntoIterator<Item = &'a RequestRecord>,
    ) -> RecordOutcome {
        self.record_requests_at(records, Instant::now())
    }

    /// [`Self::record_requests`] at `now`: idle series are removed first (when a sweep
    /// is due), so that their places serve this batch.
    fn record_requests_at<'a>(
        &self,
        records: impl IntoIterator<Item = &'a RequestRecord>,
        now: Instant,
    ) -> RecordOutcome {
        let inner = &*self.inner;
        let mut outcome = RecordOutcome::default();
        let mut cache = inner.cache.lock();
        let expired = cache.expire_idle(now);
        for record in records {
            let labels = istio_label_values(record);
            // Istio records whole milliseconds, truncated.
            let duration_ms = (record.duration_nanos / 1_000_000) as f64;
            match cache.observe(
                &labels,
                inner.max_series,
                now,
                duration_ms,
                record.request_bytes as f64,
                record.response_bytes as f64,
            ) {
                series::Observed::Counted => outcome.recorded += 1,
                series::Observed::Overflow => outcome.overflowed += 1,
            }
        }
        let series = cache.len();
        drop(cache);
        self.series_changed(series, expired.len());
        drop(expired);
        if outcome.overflowed > 0 {
            inner.series_overflow.inc_by(outcome.overflowed);
            self.note_overflow(outcome.overflowed, series, now);
        }
        outcome
    }

    /// Updates `meshtel_mesh_series` and counts the series a sweep removed.
    fn series_changed(&self, series: usize, expired: usize) {
        let inner = &*self.inner;
        inner
            .series_count
            .set(i64::try_from(series).unwrap_or(i64::MAX));
        if expired > 0 {
            inner
                .series_expired
                .inc_by(u64::try_from(expired).unwrap_or(u64::MAX));
            debug!(expired, series, "idle istio series removed");
        }
    }

    /// Notes `refused` records left out at the cap at `now`, and logs them with those
    /// still untold when a line is due; answers how many the line written told.
    fn note_overflow(&self, refused: u64, series: usize, now: Instant) -> Option<u64> {
        let told = {
            let mut log = self.inner.overflow_log.lock();
            log.untold += refused;
            log.window
                .note(now)
                .map(|_| std::mem::take(&mut log.untold))
        };
        if let Some(refused) = told {
            self.log_overflow(refused, series);
        }
        told
    }

    /// Logs the refused records no line has told yet, when a line is due at `now`
    /// (at a scrape: a burst's last refusals are told without waiting for another).
    fn tell_untold_overflow(&self, series: usize, now: Instant) -> Option<u64> {
        let told = {
            let mut log = self.inner.overflow_log.lock();
            log.window
                .flush(now)
                .map(|_| std::mem::take(&mut log.untold))
        };
        if let Some(refused) = told {
            self.log_overflow(refused, series);
        }
        told
    }

    fn log_overflow(&self, refused: u64, series: usize) {
        let every = humantime::format_duration(LOG_INTERVAL).to_string();
        warn!(
            setting = "[report] metrics.max_series",
            max_series = self.inner.max_series,
            series,
            refused,
            at_most_every = %every,
            "istio series cap reached: new label sets left out of the istio metrics"
        );
    }

    /// Counts `count` records refused for `reason` (one of [`REJECT_REASONS`]).
    pub fn records_rejected(&self, reason: &str, count: u64) {
        if count > 0 {
            self.inner
                .records_rejected
                .with_label_values(&[reason])
                .inc_by(count);
        }
    }

    /// Counts one processed batch: accepted records, what the proxy says it dropped,
    /// and the lag between sending and processing.
    pub fn record_batch(&self, accepted: u64, dropped_by_proxy: u64, lag_seconds: Option<f64>) {
        let inner = &*self.inner;
        inner.batches.inc();
        inner.records.inc_by(accepted);
        if dropped_by_proxy > 0 {
            inner.dropped_by_proxies.inc_by(dropped_by_proxy);
        }
        if let Some(lag) = lag_seconds {
            inner.lag_seconds.observe(lag);
        }
    }

    /// Counts TCP connection events of an Istio Mixer Report, left out of the metrics.
    pub fn record_skipped_tcp_events(&self, count: u64) {
        if count > 0 {
            self.inner.tcp_events_skipped.inc_by(count);
        }
    }

    /// A Report stream opened (`istio_build` counts open streams).
    pub fn stream_opened(&self) {
        self.inner.build.inc();
    }

    /// A Report stream closed.
    pub fn stream_closed(&self) {
        self.inner.build.dec();
    }

    /// The `meshtel_*` and `istio_build` families (not the Istio request metrics,
    /// which [`Self::render_text`] writes itself), for merging with other registries.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.inner.registry.gather()
    }

    /// Every mesh metric in the Prometheus text format: the Istio request families
    /// (labels in Istio order), then [`Self::gather`]'s. Append it to other registries'
    /// text; family names do not collide with the store's.
    pub fn render_text(&self) -> String {
        let mut out = Vec::new();
        // Writing to a `Vec` cannot fail.
        let _ = self.write_text(&mut out);
        String::from_utf8(out)
            .unwrap_or_else(|text| String::from_utf8_lossy(text.as_bytes()).into_owned())
    }

    /// [`Self::render_text`] written to `out` in 64 KiB pieces (a scrape of 10,000
    /// series is 500 MB of text). The series lock is held only to copy the counters
    /// out, so recording never waits for the text to be formatted or sent.
    pub fn write_text(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.write_text_at(out, Instant::now())
    }

    /// [`Self::write_text`] at `now`: idle series are removed first (when a sweep is
    /// due), so they leave the exposition even when no more requests come.
    fn write_text_at(&self, mut out: &mut dyn std::io::Write, now: Instant) -> std::io::Result<()> {
        let (snapshot, series, expired) = {
            let mut cache = self.inner.cache.lock();
            let expired = cache.expire_idle(now);
            (cache.snapshot(), cache.len(), expired)
        };
        self.series_changed(series, expired.len());
        drop(expired);
        self.tell_untold_overflow(series, now);
        series::write_text(&snapshot, out)?;
        drop(snapshot);
        TextEncoder::new()
            .encode(&self.gather(), &mut out)
            .map_err(std::io::Error::other)
    }

    /// The registry (to register more collectors or gather).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Records dropped because of the series cap so far.
    pub fn series_overflow(&self) -> u64 {
        self.inner.series_overflow.get()
    }

    /// Label sets currently in the Istio request metrics.
    pub fn series(&self) -> usize {
        self.inner.cache.lock().len()
    }
}

#[cfg(test)]
pub(crate) mod tests;
