//! The proxy's own counters, served by the admin listener on `/stats/prometheus`.
//!
//! Counters are resolved to their label values once at start-up, so counting on the
//! request path is one relaxed atomic add.

use std::sync::Arc;

use meshtel_model::log_window::Throttled;
use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tracing::warn;

use crate::error::Result;
use crate::quota::QuotaStats;

/// Which listener a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Calls from other services to the local app (`reporter="destination"`).
    Inbound,
    /// Calls from the local app to other services (`reporter="source"`).
    Outbound,
}

impl Direction {
    /// `inbound` / `outbound`, the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone)]
pub struct DirectionStats {
    /// Requests received.
    pub requests: IntCounter,
    /// Requests answered by the proxy itself with a 5xx and a response flag.
    pub local_errors: IntCounter,
    /// Upstream connections that could not be established.
    pub upstream_connect_failures: IntCounter,
}

/// Every counter the proxy exposes.
#[derive(Debug, Clone)]
pub struct Stats {
    registry: Registry,
    /// Inbound listener counters.
    pub inbound: DirectionStats,
    /// Outbound listener counters.
    pub outbound: DirectionStats,
    /// Request records written to the Report stream.
    pub reports_sent: IntCounter,
    /// Request records the collector acknowledged.
    pub reports_accepted: IntCounter,
    /// Request records the collector acknowledged without taking them (invalid, or
    /// past its `[report] max_records_per_batch`; its own counters say which).
    pub reports_rejected: IntCounter,
    /// Request records sent again on a new stream after the one they were sent on
    /// broke before acknowledging them.
    pub reports_resent: IntCounter,
    /// Request records dropped (queue full, collector unreachable, stream broken).
    pub reports_dropped: IntCounter,
    /// Report stream (re)connections established.
    pub report_stream_connects: IntCounter,
    /// 1 while the Report stream to the collector is open, 0 otherwise.
    pub report_stream_open: IntGauge,
    /// Spans the collector accepted.
    pub spans_sent: IntCounter,
    /// Spans dropped (queue full, export failed).
    pub spans_dropped: IntCounter,
    /// Mesh file reloads.
    pub mesh_reloads: IntCounterVec,
    /// 0 while the mesh in force is older than a mesh file that was refused.
    pub mesh_last_reload_successful: IntGauge,
    /// The WARN for requests answered by the proxy itself because of the upstream side
    /// (`UF`, `UH`, `UT`, `URX`, `UO`, ...), at most once per interval.
    pub local_replies_log: Arc<Throttled>,
    /// 1 once every listener is bound and serving.
    pub ready: IntGauge,
    /// Downstream connections accepted, by listener and worker (`admin` on `main`).
    pub connections: IntCounterVec,
    /// Downstream connections closed because their client read nothing of a response
    /// for [`crate::server::WRITE_STALL_TIMEOUT`], by listener.
    pub write_stalls: IntCounterVec,
    /// Downstream connections ended by a request hyper's parser refused, by listener.
    /// Downstream connections closed for resetting most of their streams early.
    pub reset_floods: IntCounterVec,
    pub protocol_errors: IntCounterVec,
    /// Quota decisions, Check calls, policies and leases.
    pub quota: QuotaStats,
    /// Traffic rules: reloads, faults, retries, circuit breaking, ejections, mirrors.
    pub routing: RoutingStats,
}

/// Counters of what the traffic rules made the proxy do.
#[derive(Debug, Clone)]
pub struct RoutingStats {
    /// Rules directory reloads, by result (`ok`, `rejected`).
    pub rules_reloads: IntCounterVec,
    /// 0 while the rules in force are older than a rules directory that was refused.
    pub rules_last_reload_successful: IntGauge,
    /// Faults injected, by kind (`delay`, `abort`).
    pub faults: IntCounterVec,
    /// Retries sent, and retries given up (`sent`, `exhausted`, `skipped_body`: the
    /// request body was streamed past the replay limit, or had not ended, when the retry
    /// was due).
    pub retries: IntCounterVec,
    /// Requests refused by a connection-pool limit, by limit.
    pub overflows: IntCounterVec,
    /// Endpoints ejected by outlier detection.
    pub ejections: IntCounter,
    /// Mirrored requests, by result (`sent`, `failed`, `dropped`: too many in flight
    /// or a body that cannot be copied).
    pub mirrors: IntCounterVec,
}

impl RoutingStats {
    fn register(registry: &Registry) -> Result<RoutingStats> {
        Ok(RoutingStats {
            rules_reloads: from_zero(
                counter_vec(registry, "meshtel_proxy_rules_reloads_total", "Traffic rules reloads, by result", &["result"])?,
                &["ok", "rejected"],
            ),
            rules_last_reload_successful: set_to_one(gauge(
                registry,
                "meshtel_proxy_rules_last_reload_successful",
                "0 while the latest change of the rules directory is refused and older rules stay in force, 1 otherwise",
            )?),
            faults: from_zero(
                counter_vec(registry, "meshtel_proxy_faults_injected_total", "Faults injected by the traffic rules, by kind", &["kind"])?,
                &["delay", "abort"],
            ),
            retries: from_zero(
                counter_vec(registry, "meshtel_proxy_retries_total", "Upstream retries, by result", &["result"])?,
                &["sent", "exhausted", "skipped_body"],
            ),
            overflows: from_zero(
                counter_vec(
                    registry,
                    "meshtel_proxy_circuit_breaker_overflows_total",
                    "Requests or retries refused by a connection-pool limit, by limit",
                    &["limit"],
                )?,
                &["http2MaxRequests", "http1MaxPendingRequests", "maxRetries"],
            ),
            ejections: counter(registry, "meshtel_proxy_outlier_ejections_total", "Endpoints ejected by outlier detection")?,
            mirrors: from_zero(
                counter_vec(registry, "meshtel_proxy_mirrored_requests_total", "Mirrored requests, by result", &["result"])?,
                &["sent", "failed", "dropped"],
            ),
        })
    }
}

impl Stats {
    /// Registers every counter in a fresh registry.
    pub fn new() -> Result<Stats> {
        let registry = Registry::new();
        // process_resident_memory_bytes, process_open_fds, process_threads, ...
        registry.register(Box::new(ProcessMetrics::for_self()?))?;
        let requests = counter_vec(&registry, "meshtel_proxy_requests_total", "Requests received, by direction (inbound, outbound)", &["direction"])?;
        let local_errors = counter_vec(
            &registry,
            "meshtel_proxy_local_replies_total",
            "Requests the proxy answered itself with an error and a response flag, by direction (inbound, outbound): 5xx (UH, UF, UO, UT, ...), 400 DPE, 404 NR, 408 SI, 500 RLSE; quota 429s and fault-injection aborts (FI, meshtel_proxy_faults_injected_total) are not counted here",
            &["direction"],
        )?;
        let connect_failures = counter_vec(
            &registry,
            "meshtel_proxy_upstream_connect_failures_total",
            "Upstream connections that could not be established, by direction (inbound, outbound)",
            &["direction"],
        )?;
        let direction = |d: Direction| DirectionStats {
            requests: requests.with_label_values(&[d.as_str()]),
            local_errors: local_errors.with_label_values(&[d.as_str()]),
            upstream_connect_failures: connect_failures.with_label_values(&[d.as_str()]),
        };
        Ok(Stats {
            inbound: direction(Direction::Inbound),
            outbound: direction(Direction::Outbound),
            reports_sent: counter(&registry, "meshtel_proxy_reports_sent_total", "Request records written to the Report stream")?,
            reports_accepted: counter(&registry, "meshtel_proxy_reports_accepted_total", "Request records the collector acknowledged")?,
            reports_rejected: counter(
                &registry,
                "meshtel_proxy_reports_rejected_total",
                "Request records the collector acknowledged without taking them (invalid, or past its [report] max_records_per_batch)",
            )?,
            reports_resent: counter(
                &registry,
                "meshtel_proxy_reports_resent_total",
                "Request records sent again on a new Report stream because the one before broke before acknowledging them",
            )?,
            reports_dropped: counter(
                &registry,
                "meshtel_proxy_reports_dropped_total",
                "Request records dropped because the queue was full or the collector unreachable",
            )?,
            report_stream_connects: counter(&registry, "meshtel_proxy_report_stream_connects_total", "Report streams opened to the collector")?,
            report_stream_open: gauge(&registry, "meshtel_proxy_report_stream_open", "1 while the Report stream to the collector is open, 0 while it is down")?,
            spans_sent: counter(&registry, "meshtel_proxy_spans_sent_total", "Spans exported to the collector")?,
            spans_dropped: counter(&registry, "meshtel_proxy_spans_dropped_total", "Spans dropped because the queue was full or the export failed")?,
            local_replies_log: Throttled::new(|count, last: &str| {
                warn!(count, last, metric = "meshtel_proxy_local_replies_total", at_most_every = "10s", "requests the proxy answered itself since the last warning: their upstream failed or could not be found");
            }),
            mesh_reloads: from_zero(
                counter_vec(&registry, "meshtel_proxy_mesh_reloads_total", "Mesh file reloads, by result", &["result"])?,
                &["ok", "rejected"],
            ),
            mesh_last_reload_successful: set_to_one(gauge(
                &registry,
                "meshtel_proxy_mesh_last_reload_successful",
                "0 while the latest change of the mesh file is refused and an older mesh stays in force, 1 otherwise",
            )?),
            ready: gauge(&registry, "meshtel_proxy_ready", "1 once every listener is serving")?,
            connections: counter_vec(
                &registry,
                "meshtel_proxy_downstream_connections_total",
                "Downstream connections accepted, by listener and worker thread",
                &["listener", "worker"],
            )?,
            write_stalls: counter_vec(
                &registry,
                "meshtel_proxy_downstream_write_timeouts_total",
                "Downstream connections closed because the client read nothing of a response for 5 minutes",
                &["listener"],
            )?,
            reset_floods: counter_vec(
                &registry,
                "meshtel_proxy_downstream_reset_floods_total",
                "Downstream connections closed because their client reset more than half of its streams (at least 100) within a second of opening them (HTTP/2 rapid reset)",
                &["listener"],
            )?,
            protocol_errors: counter_vec(
                &registry,
                "meshtel_proxy_downstream_protocol_errors_total",
                "Downstream requests refused before routing because they were not valid HTTP/1.1 (a malformed request line or header, headers or a URI over the size limit): answered 400, 414 or 431 and the connection closed",
                &["listener"],
            )?,
            quota: QuotaStats::register(&registry)?,
            routing: RoutingStats::register(&registry)?,
            registry,
        })
    }

    /// The counters of one direction.
    pub fn direction(&self, direction: Direction) -> &DirectionStats {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would mean an invalid
        // metric, which registration already rejected.
        if TextEncoder::new().encode(&self.registry.gather(), &mut buffer).is_err() {
            buffer.clear();
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Registers an un-labelled counter.
pub(crate) fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter> {
    let counter = IntCounter::new(name, help)?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

/// Registers a labelled counter.
pub(crate) fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

/// `counter` with a series at 0 for each of `values` (its one label's values known in
/// advance), so that a scrape shows them before the first event and `rate()` has a
/// start.
fn from_zero(counter: IntCounterVec, values: &[&str]) -> IntCounterVec {
    for value in values {
        counter.with_label_values(&[value]);
    }
    counter
}

/// Registers a gauge.
impl Stats {
    /// Leaves `meshtel_proxy_quota_watch_open` out of the metrics of a proxy that opens
    /// no policy watch (no inbound listener, so no quota to enforce): its 0 would read as
    /// a watch that is down.
    pub fn without_quota_watch(&self) {
        let _ = self.registry.unregister(Box::new(self.quota.watch_open.clone()));
    }
}

/// `gauge` with the value 1.
fn set_to_one(gauge: IntGauge) -> IntGauge {
    gauge.set(1);
    gauge
}

pub(crate) fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge> {
    let gauge = IntGauge::new(name, help)?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// Name of the CPU time counter of [`ProcessMetrics`].
const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// The `process_*` metrics every Prometheus client exports (resident memory, open
/// fds, threads, start time), with `process_cpu_seconds_total` counted in the kernel's
/// ticks (hundredths of a second) instead of the whole seconds of
/// [`ProcessCollector`]: at a few percent of a core, whole seconds step once every
/// tens of seconds and a `rate()` over a minute jumps between 0 and twice the truth.
/// The collector's binary registers it on `/metrics` too.
pub struct ProcessMetrics {
    inner: ProcessCollector,
    cpu: Counter,
    descs: Vec<Desc>,
}

impl ProcessMetrics {
    /// The metrics of this process.
    pub fn for_self() -> Result<ProcessMetrics> {
        let inner = ProcessCollector::for_self();
        let cpu = Counter::with_opts(Opts::new(
            CPU_SECONDS,
            "Total user and system CPU time spent in seconds.",
        ))?;
        let descs = (inner.desc().into_iter())
            .filter(|d| d.fq_name != CPU_SECONDS)
            .chain(cpu.desc())
            .cloned()
            .collect();
        Ok(ProcessMetrics { inner, cpu, descs })
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = (self.inner.collect().into_iter())
            .filter(|f| f.name() != CPU_SECONDS)
            .collect();
        if let Some(seconds) = cpu_seconds() {
            // Two scrapes at once may both have moved it on: it never goes back.
            let past = self.cpu.get();
            if seconds > past {
                self.cpu.inc_by(seconds - past);
            }
            families.extend(self.cpu.collect());
        }
        families
    }
}

/// User and system CPU time of this process so far, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    /// CPU time in fractions of a second, growing with work; the other process
    /// metrics still there, each name once.
    #[test]
    fn process_cpu_time_is_counted_in_ticks_not_whole_seconds() {
        let registry = Registry::new();
        registry.register(Box::new(ProcessMetrics::for_self().unwrap())).unwrap();
        let cpu = |registry: &Registry| -> f64 {
            let families = registry.gather();
            let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
            assert_eq!(names.iter().filter(|n| **n == CPU_SECONDS).count(), 1, "{names:?}");
            assert!(names.contains(&"process_resident_memory_bytes"), "{names:?}");
            let family = families.iter().find(|f| f.name() == CPU_SECONDS).unwrap();
            family.get_metric()[0].get_counter().get_value()
        };
        let before = cpu(&registry);
        // Burn a little over a tenth of a second of CPU.
        let started = std::time::Instant::now();
        let mut x = 1u64;
        while started.elapsed() < std::time::Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let after = cpu(&registry);
        // Whole seconds would have moved by 0 or 1.
        assert!((0.05..0.95).contains(&(after - before)), "{before} → {after}");
    }
}
