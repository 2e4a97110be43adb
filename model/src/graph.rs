//! The service graph's shared vocabulary: request records rolled up into edges.
//!
//! ```text
//!  collector ──EdgeSink::record_edges──► store (10 s buckets, SQL) ──GraphReader──► query
//! ```
//!
//! An edge is one (source workload → destination service/workload, protocol, response
//! code, gRPC status, response flags, reporter, clusters) combination; its
//! [`EdgeStats`] add up requests, errors, a latency histogram on Istio's default
//! buckets, and bytes. Values are kept as the proxy reported them: an empty source
//! workload means "from outside the mesh".
//! [`GraphReader`] reads them summed over a window (the graph) or step by step (the
//! metrics time series).

use crate::Result;
use crate::mixer::{Reporter, RequestRecord};

/// Istio's default histogram bounds (Envoy's), used for latency (ms) and sizes (bytes).
pub const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Number of latency counters in [`EdgeStats::latency_buckets`]: one per bound and `+Inf`.
pub const LATENCY_SLOTS: usize = ISTIO_BUCKETS.len() + 1;

/// Wall-clock time, injected wherever buckets, windows or lag depend on it.
pub trait UnixClock: Send + Sync + 'static {
    /// Now, Unix nanoseconds.
    fn now_unix_nano(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemUnixClock;

impl UnixClock for SystemUnixClock {
    fn now_unix_nano(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Who calls whom, as the edge rollups group records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EdgeKey {
    /// Source workload name; empty for traffic from outside the mesh.
    pub source_workload: String,
    /// Source workload namespace.
    pub source_namespace: String,
    /// Source `app` label.
    pub source_app: String,
    /// Source `version` label.
    pub source_version: String,
    /// Destination service FQDN, e.g. `reviews.default.svc.cluster.local`.
    pub destination_service: String,
    /// Destination workload name; empty when no workload answered (e.g. `UH`).
    pub destination_workload: String,
    /// Destination workload namespace (or the service's when no workload).
    pub destination_namespace: String,
    /// Destination `version` label.
    pub destination_version: String,
    /// Destination `app` label; empty when no workload answered, and in rows written
    /// before it was kept.
    pub destination_app: String,
    /// `http`, `grpc` or `tcp`.
    pub protocol: String,
    /// HTTP status, 0 when no response was sent.
    pub response_code: u32,
    /// gRPC status of a gRPC request (Istio's `grpc_response_status`: 2 when the
    /// response had none); `None` for other protocols.
    pub grpc_response_status: Option<u32>,
    /// Envoy response flags, `-` when none.
    pub response_flags: String,
    /// `source` or `destination`.
    pub reporter: String,
    /// Cluster of the source workload as reported (Istio's `source_cluster`); empty
    /// when unknown (a caller outside the mesh, or a row older than this field).
    pub source_cluster: String,
    /// Cluster of the destination workload as reported (`destination_cluster`); empty
    /// when unknown.
    pub destination_cluster: String,
}

impl EdgeKey {
    /// The key of one record.
    pub fn from_record(record: &RequestRecord) -> EdgeKey {
        let source = record.source.as_ref();
        let destination = record.destination.as_ref();
        let field = |w: Option<&crate::mixer::Workload>, f: fn(&crate::mixer::Workload) -> &str| {
            w.map(|w| f(w).to_string()).unwrap_or_default()
        };
        let mut destination_namespace = field(destination, |w| &w.namespace);
        if destination_namespace.is_empty() {
            destination_namespace = record.destination_service_namespace.clone();
        }
        EdgeKey {
            source_workload: field(source, |w| &w.name),
            source_namespace: field(source, |w| &w.namespace),
            source_app: field(source, |w| &w.app),
            source_version: field(source, |w| &w.version),
            destination_service: record.destination_service.clone(),
            destination_workload: field(destination, |w| &w.name),
            destination_namespace,
            destination_version: field(destination, |w| &w.version),
            destination_app: field(destination, |w| &w.app),
            protocol: record.request_protocol.clone(),
            response_code: record.response_code,
            grpc_response_status: grpc_response_status(record),
            response_flags: if record.response_flags.is_empty() {
                "-".to_string()
            } else {
                record.response_flags.clone()
            },
            reporter: reporter_label(record.reporter).to_string(),
            source_cluster: field(source, |w| &w.cluster),
            destination_cluster: field(destination, |w| &w.cluster),
        }
    }

    /// Short destination service name: the FQDN's first label (`reviews`).
    pub fn destination_service_name(&self) -> &str {
        self.destination_service
            .split('.')
            .next()
            .unwrap_or(&self.destination_service)
    }
}

/// The gRPC status an edge keys a record by: Istio's `grpc_response_status` (2,
/// unknown, when a gRPC response had none), `None` unless the protocol is gRPC.
pub fn grpc_response_status(record: &RequestRecord) -> Option<u32> {
    (record.request_protocol == "grpc").then(|| record.grpc_response_status.unwrap_or(2))
}

/// Istio's `reporter` label value of a proto reporter.
pub fn reporter_label(reporter: i32) -> &'static str {
    match Reporter::try_from(reporter) {
        Ok(Reporter::Source) => "source",
        Ok(Reporter::Destination) => "destination",
        _ => "unknown",
    }
}

/// Whether a record counts as an error in the rollups: a 5xx, no response at all
/// (code 0), a response flag that marks a failure (every flag but `DI`, an injected
/// delay, which still ends in the upstream's answer), or a non-OK gRPC status.
pub fn is_error_record(record: &RequestRecord) -> bool {
    record.response_code >= 500
        || record.response_code == 0
        || record.response_flags.split(',').any(|flag| !matches!(flag.trim(), "" | "-" | "DI"))
        || (record.request_protocol == "grpc"
            && record.grpc_response_status.is_some_and(|s| s != 0))
}

/// Aggregates of one edge over a bucket or a window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EdgeStats {
    /// Requests.
    pub requests: u64,
    /// Requests that failed (see [`is_error_record`]).
    pub errors: u64,
    /// Requests per latency bucket (ms, [`ISTIO_BUCKETS`] then `+Inf`), not cumulative.
    pub latency_buckets: [u64; LATENCY_SLOTS],
    /// Sum of durations, milliseconds.
    pub duration_sum_ms: f64,
    /// Sum of request sizes, bytes.
    pub request_bytes: u64,
    /// Sum of response sizes, bytes.
    pub response_bytes: u64,
}

impl EdgeStats {
    /// Adds one record, its duration in whole milliseconds (truncated), as Istio
    /// records `istio_request_duration_milliseconds`: graph latencies then agree with
    /// `histogram_quantile` over the collector's own `/metrics`, as Kiali's do.
    pub fn add_record(&mut self, record: &RequestRecord) {
        let ms = (record.duration_nanos / 1_000_000) as f64;
        self.requests += 1;
        if is_error_record(record) {
            self.errors += 1;
        }
        let slot = ISTIO_BUCKETS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(ISTIO_BUCKETS.len());
        if let Some(count) = self.latency_buckets.get_mut(slot) {
            *count += 1;
        }
        self.duration_sum_ms += ms;
        self.request_bytes = self.request_bytes.saturating_add(record.request_bytes);
        self.response_bytes = self.response_bytes.saturating_add(record.response_bytes);
    }

    /// Adds another aggregate.
    pub fn merge(&mut self, other: &EdgeStats) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (mine, theirs) in self.latency_buckets.iter_mut().zip(other.latency_buckets) {
            *mine += theirs;
        }
        self.duration_sum_ms += other.duration_sum_ms;
        self.request_bytes = self.request_bytes.saturating_add(other.request_bytes);
        self.response_bytes = self.response_bytes.saturating_add(other.response_bytes);
    }

    /// The `q` quantile (0..=1) of latency in ms, interpolated linearly inside the
    /// bucket as Prometheus' `histogram_quantile` does; `None` without requests. A
    /// quantile in `+Inf` answers the highest finite bound.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut cumulative = 0u64;
        for (slot, &count) in self.latency_buckets.iter().enumerate() {
            let below = cumulative;
            cumulative += count;
            if count > 0 && cumulative as f64 >= rank {
                let Some(&upper) = ISTIO_BUCKETS.get(slot) else {
                    return ISTIO_BUCKETS.last().copied();
                };
                let lower = if slot == 0 {
                    0.0
                } else {
                    ISTIO_BUCKETS.get(slot - 1).copied().unwrap_or(0.0)
                };
                let fraction = (rank - below as f64) / count as f64;
                return Some(lower + (upper - lower) * fraction);
            }
        }
        ISTIO_BUCKETS.last().copied()
    }
}

/// One edge with its aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRow {
    /// Who calls whom.
    pub key: EdgeKey,
    /// What the calls add up to.
    pub stats: EdgeStats,
}

/// `unix_nano` rounded down to a multiple of `bucket` (unchanged for a zero bucket).
pub fn bucket_floor(unix_nano: u64, bucket: std::time::Duration) -> u64 {
    match u64::try_from(bucket.as_nanos()) {
        Ok(0) => unix_nano,
        Ok(nanos) => unix_nano - unix_nano % nanos,
        Err(_) => 0,
    }
}

/// `unix_nano` rounded up to a multiple of `bucket` (unchanged for a zero bucket).
pub fn bucket_ceil(unix_nano: u64, bucket: std::time::Duration) -> u64 {
    let floor = bucket_floor(unix_nano, bucket);
    if floor == unix_nano {
        return floor;
    }
    floor.saturating_add(u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX))
}

/// The lengths of the buckets a [`GraphReader`]'s rows hold at each time: `fine`
/// buckets, and before `coarse_before` `coarse` ones (old fine buckets summed into
/// fewer, longer ones). A window or step that reaches before `coarse_before` is read
/// in whole coarse buckets there. All zero (the default): rows are exact to the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Length of the recent buckets.
    pub fine: std::time::Duration,
    /// Length of the buckets before `coarse_before`: a multiple of `fine`.
    pub coarse: std::time::Duration,
    /// Unix ns, a multiple of `coarse`: times before it are in coarse buckets.
    pub coarse_before: u64,
}

impl Buckets {
    /// Buckets of one length at every time.
    pub fn uniform(bucket: std::time::Duration) -> Buckets {
        Buckets {
            fine: bucket,
            coarse: bucket,
            coarse_before: 0,
        }
    }

    /// Length of the bucket holding `unix_nano`.
    pub fn at(&self, unix_nano: u64) -> std::time::Duration {
        if unix_nano < self.coarse_before {
            self.coarse
        } else {
            self.fine
        }
    }

    /// Start of the bucket holding `unix_nano`.
    pub fn floor(&self, unix_nano: u64) -> u64 {
        bucket_floor(unix_nano, self.at(unix_nano))
    }

    /// `unix_nano` rounded up to the end of the bucket holding it (unchanged at a
    /// boundary).
    pub fn ceil(&self, unix_nano: u64) -> u64 {
        bucket_ceil(unix_nano, self.at(unix_nano))
    }

    /// Seconds of requests that the buckets starting in `[from, to)` hold: from `from`
    /// to `to`, both rounded up to a bucket boundary, the end no later than `now` (a
    /// bucket still running has counted requests only until now); 0 when that is
    /// empty. A per-second figure divides by this, not by the asked length: a window
    /// `[start, end)` reads from the bucket holding `start` (see
    /// [`GraphReader::edges_in_window`]), so pass `from = self.floor(start)`.
    pub fn covered_seconds(&self, from: u64, to: u64, now: u64) -> f64 {
        let end = self.ceil(to).min(now);
        end.saturating_sub(self.ceil(from)) as f64 / 1e9
    }

    /// Seconds a window `[start, now)` read from whole buckets covers (from the start
    /// of the bucket holding `start` to now), at least one: what its rates divide by.
    pub fn window_seconds(&self, start: u64, now: u64) -> f64 {
        self.covered_seconds(self.floor(start), now, now).max(1.0)
    }

    /// The step a series starting at `start` is read in: `step`, or when the series
    /// reaches into coarse buckets, the nearest multiple of the coarse length at or
    /// above it, so that no step holds part of a bucket.
    pub fn step_from(&self, start: u64, step: std::time::Duration) -> std::time::Duration {
        if start >= self.coarse_before || self.coarse.is_zero() {
            return step;
        }
        let coarse = self.coarse.as_nanos();
        let multiple = step.as_nanos().div_ceil(coarse).max(1);
        u64::try_from(multiple * coarse).map_or(step, std::time::Duration::from_nanos)
    }
}

/// Where the collector hands request records for the service graph.
pub trait EdgeSink: Send + Sync + 'static {
    /// Adds accepted records to the in-memory rollups; never blocks on I/O.
    fn record_edges(&self, records: &[&RequestRecord]);
}

/// What the graph API needs from storage.
#[async_trait::async_trait]
pub trait GraphReader: Send + Sync + 'static {
    /// The buckets the rows are summed in, as of `now_unix_nano`: a window's rows
    /// hold whole buckets, from the one holding the window's start. Per-second figures
    /// divide by [`Buckets::covered_seconds`] of the buckets a read was given. The
    /// default: rows exact to the window.
    async fn buckets(&self, now_unix_nano: u64) -> Result<Buckets> {
        let _ = now_unix_nano;
        Ok(Buckets::default())
    }

    /// Edges of requests started in `[start, end)` (Unix ns, at bucket granularity:
    /// the buckets from the one holding `start` to the one holding `end`, so up to a
    /// bucket more than the window at each end, a coarse one where
    /// [`GraphReader::buckets`] has them), one row per key with its aggregates summed
    /// over the window.
    /// Read in `buckets` (from [`GraphReader::buckets`]), so that the rows and what
    /// the caller divides by agree on where coarse buckets begin.
    async fn edges_in_window(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        buckets: Buckets,
    ) -> Result<Vec<EdgeRow>>;

    /// Edges of requests started in `[start, end)` (Unix ns, at bucket granularity),
    /// period by period: one `(period start in Unix ms, row)` per period and key.
    /// Periods are `step` long and aligned to multiples of `step` since the epoch; each
    /// bucket (its stored copies and its still-open part summed) counts in the period
    /// holding its start, so a `step` of one bucket (or zero) gives the buckets
    /// themselves. Sorted by period then key; summed over periods, the rows equal
    /// [`GraphReader::edges_in_window`]'s for the same window.
    async fn edge_buckets_in_window(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        step: std::time::Duration,
        buckets: Buckets,
    ) -> Result<Vec<(u64, EdgeRow)>>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stats_with(ms: &[f64]) -> EdgeStats {
        let mut stats = EdgeStats::default();
        for &m in ms {
            stats.add_record(&RequestRecord {
                duration_nanos: (m * 1e6) as u64,
                response_code: 200,
                ..Default::default()
            });
        }
        stats
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        assert_eq!(EdgeStats::default().latency_quantile_ms(0.5), None);
        // 100 requests in (5, 10]: p50 is halfway through the bucket.
        let stats = stats_with(&[7.0; 100]);
        assert!((stats.latency_quantile_ms(0.5).unwrap() - 7.5).abs() < 1e-9);
        assert!((stats.latency_quantile_ms(0.99).unwrap() - 9.95).abs() < 1e-9);
        // 90 fast, 10 slow: p95 lands in the slow bucket (250, 500].
        let mut ms = vec![0.2; 90];
        ms.extend([300.0; 10]);
        let stats = stats_with(&ms);
        assert!(stats.latency_quantile_ms(0.5).unwrap() <= 0.5);
        let p95 = stats.latency_quantile_ms(0.95).unwrap();
        assert!((250.0..=500.0).contains(&p95), "{p95}");
        assert_eq!(stats_with(&[1e9]).latency_quantile_ms(0.5), Some(3600000.0));
    }

    #[test]
    fn durations_count_in_whole_milliseconds_as_istio_records_them() {
        // 0.8 ms is 0 ms, in the first bucket (le 0.5), as in istio_request_duration_milliseconds.
        let stats = stats_with(&[0.8, 0.8, 1.9]);
        assert_eq!(stats.latency_buckets[0], 2);
        assert_eq!(stats.latency_buckets[1], 1, "1.9 ms is 1 ms: (0.5, 1]");
        assert_eq!(stats.duration_sum_ms, 1.0);
    }

    #[test]
    fn errors_are_5xx_no_response_flags_or_grpc_failures() {
        let ok = RequestRecord {
            response_code: 200,
            request_protocol: "http".into(),
            ..Default::default()
        };
        assert!(!is_error_record(&ok));
        assert!(is_error_record(&RequestRecord {
            response_code: 503,
            ..ok.clone()
        }));
        assert!(is_error_record(&RequestRecord {
            response_code: 0,
            ..ok.clone()
        }));
        assert!(is_error_record(&RequestRecord {
            response_flags: "UH".into(),
            ..ok.clone()
        }));
        assert!(!is_error_record(&RequestRecord {
            response_flags: "DI".into(),
            ..ok.clone()
        }), "a delayed request that succeeded is not an error");
        assert!(is_error_record(&RequestRecord {
            response_code: 429,
            response_flags: "RL".into(),
            ..ok.clone()
        }));
        assert!(!is_error_record(&RequestRecord {
            response_code: 404,
            ..ok.clone()
        }));
        let grpc = RequestRecord {
            request_protocol: "grpc".into(),
            grpc_response_status: Some(14),
            ..ok
        };
        assert!(is_error_record(&grpc));
    }

    #[test]
    fn covered_seconds_run_from_the_first_bucket_to_now() {
        use std::time::Duration;
        const SEC: u64 = 1_000_000_000;
        let bucket = Duration::from_secs(10);
        assert_eq!(bucket_floor(1234 * SEC + 5, bucket), 1230 * SEC);
        assert_eq!(bucket_ceil(1234 * SEC, bucket), 1240 * SEC);
        assert_eq!(bucket_ceil(1240 * SEC, bucket), 1240 * SEC);
        assert_eq!(bucket_floor(1234, Duration::ZERO), 1234);
        assert_eq!(bucket_ceil(1234, Duration::ZERO), 1234);
        // A 10 s window ending at 1234 s reads the buckets 1220 and 1230: 14 s so far.
        let now = 1234 * SEC;
        let from = bucket_floor(now - 10 * SEC, bucket);
        assert!((Buckets::uniform(bucket).covered_seconds(from, now, now) - 14.0).abs() < 1e-9);
        // 15 s steps: the one at 1200 s holds the buckets 1200 and 1210 (20 s; 14 s of
        // them at 1214 s), the one at 1215 s only 1220 (10 s).
        let step = 15 * SEC;
        let covered =
            |from: u64, now: u64| Buckets::uniform(bucket).covered_seconds(from, from + step, now);
        assert!((covered(1200 * SEC, u64::MAX) - 20.0).abs() < 1e-9);
        assert!((covered(1200 * SEC, 1214 * SEC) - 14.0).abs() < 1e-9);
        assert!((covered(1215 * SEC, u64::MAX) - 10.0).abs() < 1e-9);
        // A step whose first bucket has not started yet covers nothing.
        assert_eq!(
            Buckets::uniform(bucket).covered_seconds(1245 * SEC, 1260 * SEC, 1241 * SEC),
            0.0
        );
        // Without buckets, the window itself.
        assert!((Buckets::default().covered_seconds(5 * SEC, 65 * SEC, 70 * SEC) - 60.0).abs() < 1e-9);
    }

    #[test]
    fn coarse_buckets_before_their_time_widen_windows_and_steps() {
        use std::time::Duration;
        const SEC: u64 = 1_000_000_000;
        // 10 s buckets, 300 s ones before 3,000 s.
        let buckets = Buckets {
            fine: Duration::from_secs(10),
            coarse: Duration::from_secs(300),
            coarse_before: 3000 * SEC,
        };
        assert_eq!(buckets.floor(2950 * SEC), 2700 * SEC);
        assert_eq!(buckets.ceil(2950 * SEC), 3000 * SEC);
        assert_eq!(buckets.floor(3005 * SEC), 3000 * SEC);
        assert_eq!(buckets.ceil(3005 * SEC), 3010 * SEC);
        // A window from 2,950 s to now (3,125 s) reads the coarse bucket at 2,700 s
        // whole, then ten-second ones: 425 s.
        let now = 3125 * SEC;
        assert!((buckets.window_seconds(2950 * SEC, now) - 425.0).abs() < 1e-9);
        // Only fine buckets: as before.
        assert!((buckets.window_seconds(3050 * SEC, now) - 75.0).abs() < 1e-9);
        // Steps that reach into coarse buckets are whole multiples of them.
        let minute = Duration::from_secs(60);
        assert_eq!(buckets.step_from(3000 * SEC, minute), minute);
        assert_eq!(buckets.step_from(2999 * SEC, minute), Duration::from_secs(300));
        assert_eq!(
            buckets.step_from(0, Duration::from_secs(301)),
            Duration::from_secs(600)
        );
        assert_eq!(Buckets::default().step_from(0, minute), minute);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = stats_with(&[1.0, 2.0]);
        let b = stats_with(&[2000.0]);
        a.merge(&b);
        assert_eq!(a.requests, 3);
        assert_eq!(a.latency_buckets.iter().sum::<u64>(), 3);
        assert!((a.duration_sum_ms - 2003.0).abs() < 1e-6);
    }
}
