//! What ingest refuses, counted and logged without flooding the log:
//!
//! - `meshtel_ingest_refused_total{protocol, reason}`: requests answered with an error,
//!   nothing of them stored. `protocol` is `otlp_grpc`, `otlp_http` or `zipkin`;
//!   `reason` is `overloaded` (503 / `UNAVAILABLE`: the pipeline is full),
//!   `unavailable` (503 / `UNAVAILABLE`: the store cannot write, a WAL append failed or
//!   it is shutting down), `disk_full`, `too_large` (413 / `RESOURCE_EXHAUSTED`), `bad_request` (400 /
//!   `INVALID_ARGUMENT`) or `unsupported_media_type` (415);
//! - `meshtel_ingest_spans_rejected_total{protocol}`: spans dropped from requests that
//!   were accepted, as reported to the client in OTLP `partial_success`;
//! - `meshtel_ingest_attributes_limited_total{protocol, limit}`: attributes dropped
//!   (`max_attributes_per_span`), values cut (`max_attribute_value_bytes`) and names
//!   or keys cut (`max_name_bytes`) in accepted requests, also told to the client.
//!
//! Every series exists from the start (at 0), so a rate or an alert works before the
//! first refusal. Refusals are also logged, at most one line per 10 s for each protocol
//! and reason, saying how many were refused since the previous line: WARN for
//! `overloaded`, INFO for the client's mistakes. A timer writes the line for refusals
//! left untold when a burst ends ([`IngestMetrics::spawn_log_timer`]).

use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts};
use tracing::{info, warn};

use crate::error::{Error, Result};
use meshtel_model::ErrorCode;
use meshtel_model::log_window::LogWindow;
use meshtel_model::validate::LimitsApplied;

/// How often, at most, one (protocol, reason) pair writes a log line.
pub use meshtel_model::log_window::LOG_INTERVAL as REFUSAL_LOG_INTERVAL;

/// The ingest protocols, as the `protocol` label spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (`TraceService/Export`).
    OtlpGrpc,
    /// OTLP over HTTP (`POST /v1/traces`).
    OtlpHttp,
    /// Zipkin v2 (`POST /api/v2/spans`).
    Zipkin,
}

impl Protocol {
    const ALL: [Protocol; 3] = [Protocol::OtlpGrpc, Protocol::OtlpHttp, Protocol::Zipkin];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OtlpGrpc => "otlp_grpc",
            Protocol::OtlpHttp => "otlp_http",
            Protocol::Zipkin => "zipkin",
        }
    }
}

/// Why a whole request was refused, as the `reason` label spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// 503 / `UNAVAILABLE`: the pipeline is full.
    Overloaded,
    /// 503 / `UNAVAILABLE`: the store cannot write (a WAL append failed, shutting down).
    Unavailable,
    /// 503 / `UNAVAILABLE`: the data directory's disk is below `store.min_free_disk`.
    DiskFull,
    /// 413 / `RESOURCE_EXHAUSTED`.
    TooLarge,
    /// 400 / `INVALID_ARGUMENT` (and 408, a body that did not arrive in time).
    BadRequest,
    /// 415.
    UnsupportedMediaType,
}

/// How many refusal reasons there are.
const REASONS: usize = 6;

impl RefusalReason {
    const ALL: [RefusalReason; REASONS] = [
        RefusalReason::Overloaded,
        RefusalReason::Unavailable,
        RefusalReason::DiskFull,
        RefusalReason::TooLarge,
        RefusalReason::BadRequest,
        RefusalReason::UnsupportedMediaType,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Overloaded => "overloaded",
            RefusalReason::Unavailable => "unavailable",
            RefusalReason::DiskFull => "disk_full",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::BadRequest => "bad_request",
            RefusalReason::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    /// The reason of an ingest error; `None` for errors that are ours, not the
    /// request's (an internal error is logged where it happens).
    pub fn of(error: &Error) -> Option<RefusalReason> {
        match error {
            Error::UnsupportedMediaType { .. } => return Some(RefusalReason::UnsupportedMediaType),
            Error::DiskFull { .. } => return Some(RefusalReason::DiskFull),
            Error::Unavailable(_) => return Some(RefusalReason::Unavailable),
            _ => {}
        }
        match error.code() {
            ErrorCode::TooLarge => Some(RefusalReason::TooLarge),
            ErrorCode::Unavailable => Some(RefusalReason::Overloaded),
            ErrorCode::Internal => None,
            ErrorCode::BadRequest | ErrorCode::NotFound | ErrorCode::PreconditionFailed => {
                Some(RefusalReason::BadRequest)
            }
        }
    }

    /// The reason of a gRPC status code tonic answered before our handler ran.
    pub fn of_grpc_code(code: i32) -> RefusalReason {
        if code == tonic::Code::ResourceExhausted as i32 {
            RefusalReason::TooLarge
        } else if code == tonic::Code::Unavailable as i32 {
            RefusalReason::Overloaded
        } else {
            RefusalReason::BadRequest
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The ingest refusal counters and their log windows; cheap to clone, shared by the
/// three ingest servers of a process.
#[derive(Clone)]
pub struct IngestMetrics {
    refused: IntCounterVec,
    spans_rejected: IntCounterVec,
    limited: IntCounterVec,
    windows: Arc<Mutex<[[RefusalLog; REASONS]; 3]>>,
}

/// The `limit` label values of `meshtel_ingest_attributes_limited_total`, in the
/// order of [`LimitsApplied`]'s counts.
const LIMITS: [&str; 5] = [
    "max_attributes_per_span",
    "max_attribute_value_bytes",
    "max_name_bytes",
    "max_events_per_span",
    "max_links_per_span",
];

/// The log window of one (protocol, reason) and what its last refusal said.
#[derive(Default)]
struct RefusalLog {
    window: LogWindow,
    last_error: String,
}

impl IngestMetrics {
    /// New, unregistered counter families, every series at 0.
    pub fn new() -> Result<IngestMetrics> {
        let refused = IntCounterVec::new(
            Opts::new(
                "meshtel_ingest_refused_total",
                "Ingest requests refused as a whole (nothing stored), by protocol and \
                 reason: overloaded (503/UNAVAILABLE, the pipeline full), unavailable \
                 (503/UNAVAILABLE, the store cannot write: a WAL append failed, or \
                 shutting down), disk_full (503/UNAVAILABLE, below \
                 store.min_free_disk), too_large (413/RESOURCE_EXHAUSTED), \
                 bad_request (400/INVALID_ARGUMENT), unsupported_media_type (415).",
            ),
            &["protocol", "reason"],
        )?;
        let spans_rejected = IntCounterVec::new(
            Opts::new(
                "meshtel_ingest_spans_rejected_total",
                "Spans dropped from accepted ingest requests as invalid, reported to the \
                 client in OTLP partial_success.",
            ),
            &["protocol"],
        )?;
        let limited = IntCounterVec::new(
            Opts::new(
                "meshtel_ingest_attributes_limited_total",
                "Attributes dropped over max_attributes_per_span, values cut to \
                 max_attribute_value_bytes, and span names or attribute keys cut to \
                 max_name_bytes, in accepted ingest requests, by protocol and limit.",
            ),
            &["protocol", "limit"],
        )?;
        for protocol in Protocol::ALL {
            spans_rejected
                .with_label_values(&[protocol.as_str()])
                .inc_by(0);
            for limit in LIMITS {
                limited
                    .with_label_values(&[protocol.as_str(), limit])
                    .inc_by(0);
            }
            for reason in RefusalReason::ALL {
                refused
                    .with_label_values(&[protocol.as_str(), reason.as_str()])
                    .inc_by(0);
            }
        }
        Ok(IngestMetrics {
            refused,
            spans_rejected,
            limited,
            windows: Arc::default(),
        })
    }

    /// The counter families, to register in a registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.refused.clone()),
            Box::new(self.spans_rejected.clone()),
            Box::new(self.limited.clone()),
        ]
    }

    /// Counts a request refused with `error` and logs it within the rate limit.
    pub fn request_refused(&self, protocol: Protocol, error: &Error) {
        if let Some(reason) = RefusalReason::of(error) {
            // The client is told only that the store is unavailable (its paths are
            // not the client's business); the operator's line says why.
            let detail = match error {
                Error::Unavailable(meshtel_model::Error::Unavailable(cause)) => {
                    format!("{error}: {cause}")
                }
                Error::Unavailable(cause) => format!("{error}: {cause}"),
                _ => error.to_string(),
            };
            self.refused_for(protocol, reason, &detail);
        }
    }

    /// Counts a request refused for `reason` (`detail` says what was wrong) and logs
    /// it within the rate limit.
    pub fn refused_for(&self, protocol: Protocol, reason: RefusalReason, detail: &str) {
        self.refused
            .with_label_values(&[protocol.as_str(), reason.as_str()])
            .inc();
        let line = {
            let mut windows = self.windows.lock();
            let log = &mut windows[protocol as usize][reason.index()];
            let line = log.window.note(Instant::now());
            if line.is_none() {
                detail.clone_into(&mut log.last_error);
            }
            line
        };
        if let Some(refused) = line {
            log_refusals(protocol, reason, refused, detail);
        }
    }

    /// Starts the timer that logs the refusals no line has told yet, once a line is
    /// due (it looks every second). It ends when the last clone of these metrics is
    /// dropped.
    pub fn spawn_log_timer(&self) {
        let windows = Arc::downgrade(&self.windows);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if !log_untold_refusals(&windows, Instant::now()) {
                    return;
                }
            }
        });
    }

    /// Counts what the attribute limits dropped or cut in an accepted request.
    pub fn limited(&self, protocol: Protocol, applied: LimitsApplied) {
        let counts = [
            applied.dropped_attributes,
            applied.truncated_values,
            applied.truncated_names,
            applied.dropped_events,
            applied.dropped_links,
        ];
        for (limit, count) in LIMITS.into_iter().zip(counts) {
            if count > 0 {
                self.limited
                    .with_label_values(&[protocol.as_str(), limit])
                    .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
            }
        }
    }

    /// Counts spans dropped from an accepted request.
    pub fn spans_rejected(&self, protocol: Protocol, spans: usize) {
        if spans > 0 {
            self.spans_rejected
                .with_label_values(&[protocol.as_str()])
                .inc_by(u64::try_from(spans).unwrap_or(u64::MAX));
        }
    }
}

/// Logs the refusals of every (protocol, reason) that no line has told yet, where a
/// line is due at `now`; false once the metrics are gone.
fn log_untold_refusals(windows: &Weak<Mutex<[[RefusalLog; REASONS]; 3]>>, now: Instant) -> bool {
    let Some(windows) = windows.upgrade() else {
        return false;
    };
    let mut lines = Vec::new();
    for (protocol, logs) in Protocol::ALL.into_iter().zip(windows.lock().iter_mut()) {
        for (reason, log) in RefusalReason::ALL.into_iter().zip(logs.iter_mut()) {
            if let Some(refused) = log.window.flush(now) {
                lines.push((
                    protocol,
                    reason,
                    refused,
                    std::mem::take(&mut log.last_error),
                ));
            }
        }
    }
    for (protocol, reason, refused, detail) in lines {
        log_refusals(protocol, reason, refused, &detail);
    }
    true
}

/// One log line for `refused` requests of `protocol` refused for `reason`, the last of
/// them with `detail`.
fn log_refusals(protocol: Protocol, reason: RefusalReason, refused: u64, detail: &str) {
    let (protocol, reason_label) = (protocol.as_str(), reason.as_str());
    let every = humantime::format_duration(REFUSAL_LOG_INTERVAL).to_string();
    // Spans lost to overload or a full disk (503s) are WARN; a client's bad request
    // (400, 413, 415) is the client's to fix.
    if matches!(
        reason,
        RefusalReason::Overloaded | RefusalReason::Unavailable | RefusalReason::DiskFull
    ) {
        warn!(protocol, reason = reason_label, refused, last_error = ?detail, at_most_every = %every, "ingest requests refused");
    } else {
        info!(protocol, reason = reason_label, refused, last_error = ?detail, at_most_every = %every, "ingest requests refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_exists_at_zero_and_reasons_follow_the_status() {
        let metrics = IngestMetrics::new().unwrap();
        let families: Vec<_> = metrics
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .collect();
        let series: usize = families.iter().map(|f| f.get_metric().len()).sum();
        // Per protocol: 6 refusal reasons, rejected spans, 5 span limits.
        assert_eq!(series, 3 * (6 + 1 + 5));
        let overloaded = Error::Overloaded {
            retry_after: std::time::Duration::from_millis(500),
            bound: "test",
        };
        assert_eq!(
            RefusalReason::of(&overloaded),
            Some(RefusalReason::Overloaded)
        );
        // A store that cannot write is not an overload: an alert on `overloaded` would
        // send the operator to capacity while the disk fails.
        let wal = Error::from(meshtel_model::Error::Unavailable(
            "write-ahead log is not writable".into(),
        ));
        assert_eq!(RefusalReason::of(&wal), Some(RefusalReason::Unavailable));
        assert_eq!(
            RefusalReason::of(&Error::LargerThanWriteQueue),
            Some(RefusalReason::TooLarge)
        );
        let disk_full = Error::DiskFull {
            message: "below store.min_free_disk".into(),
            retry_after: std::time::Duration::from_secs(5),
        };
        assert_eq!(RefusalReason::of(&disk_full), Some(RefusalReason::DiskFull));
        assert_eq!(
            RefusalReason::of(&Error::TooManySpans { count: 2, limit: 1 }),
            Some(RefusalReason::BadRequest)
        );
        metrics.request_refused(Protocol::OtlpGrpc, &overloaded);
        metrics.request_refused(Protocol::OtlpGrpc, &overloaded);
        metrics.spans_rejected(Protocol::Zipkin, 3);
        assert_eq!(
            metrics
                .refused
                .with_label_values(&["otlp_grpc", "overloaded"])
                .get(),
            2
        );
        assert_eq!(
            metrics.spans_rejected.with_label_values(&["zipkin"]).get(),
            3
        );
    }

    #[test]
    fn the_timer_tells_untold_refusals_and_stops_with_the_metrics() {
        let metrics = IngestMetrics::new().unwrap();
        let start = Instant::now();
        let (zipkin, bad) = (Protocol::Zipkin as usize, RefusalReason::BadRequest.index());
        // The first refusal is logged at once, the second waits for a line.
        metrics.refused_for(Protocol::Zipkin, RefusalReason::BadRequest, "first");
        metrics.refused_for(Protocol::Zipkin, RefusalReason::BadRequest, "second");
        assert_eq!(metrics.windows.lock()[zipkin][bad].last_error, "second");
        let windows = Arc::downgrade(&metrics.windows);
        assert!(log_untold_refusals(
            &windows,
            start + REFUSAL_LOG_INTERVAL * 2
        ));
        {
            let mut logs = metrics.windows.lock();
            assert_eq!(logs[zipkin][bad].last_error, "", "told");
            assert_eq!(
                logs[zipkin][bad]
                    .window
                    .flush(start + REFUSAL_LOG_INTERVAL * 4),
                None,
                "nothing left to tell"
            );
        }
        drop(metrics);
        assert!(!log_untold_refusals(
            &windows,
            start + REFUSAL_LOG_INTERVAL * 6
        ));
    }
}
