//! The metrics API for the web UI's service page and graph side panel, over edge
//! rollups ([`GraphReader`]):
//!
//! - `GET /api/metrics/services?window=1h` → every destination service with its
//!   request rate, error rate and p50/p95/p99 latency over the window;
//! - `GET /api/metrics/timeseries?window=1h&step=60s&service=<fqdn>` → the same
//!   figures step by step, optionally for one edge (`sourceWorkload`,
//!   `sourceNamespace`, `destinationWorkload`, `destinationNamespace`), split by
//!   destination version or response code (`groupBy`), with the window's response
//!   codes and flags.
//!
//! ```text
//!  window, step ─► steps aligned to the step (the last one holds "now")
//!        │
//!  GraphReader::edge_buckets_in_window (per step and edge) ─► filter ─► one reporter
//!        ─► per group and step: EdgeStats::merge ─► rate, errorRate,
//!        EdgeStats::latency_quantile_ms
//! ```
//!
//! Every request is reported by both proxies; each answer counts it from one reporter
//! only (see [`Reporter`]). Errors are [`EdgeStats::errors`]: 5xx, no response (code
//! 0), any Envoy response flag, or a non-OK gRPC status. `window` and `step` are
//! Prometheus durations (`30s`, `5m`, `1h`, `1d`; a bare number is seconds).
//!
//! Rates divide by the time the summed rollup buckets really cover
//! ([`meshtel_model::graph::Buckets::covered_seconds`]), not by the nominal window or
//! step: a window reads whole buckets from the one holding its start, a step the
//! buckets starting in it (a 15 s step holds one or two 10 s buckets), and the running
//! bucket has counted only until now. A series that reaches back past `[edges]
//! coarse_after` is read in steps of whole coarse buckets (5 min by default).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use meshtel_model::GraphReader;
use meshtel_model::graph::{EdgeKey, EdgeRow, EdgeStats};
use serde::Serialize;

use crate::Clock;
use crate::error::{ApiError, Result};
use crate::graph::parse_whole_seconds;
use crate::jaeger::params::QueryParams;
use crate::response::json_response;

/// Window when `window` is absent.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// Longest window (the default edge retention).
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shortest step: the edge rollups' bucket.
pub const MIN_STEP: Duration = Duration::from_secs(10);
/// Most points one series may have.
pub const MAX_POINTS: u64 = 1000;
/// Points aimed at when `step` is absent.
const DEFAULT_POINTS: u64 = 60;

/// Which proxy's reports an answer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// The caller's proxy: sees failures before the callee (`UH`, `UO`) but not calls
    /// from outside the mesh.
    Source,
    /// The callee's proxy: sees every call that reached it, from anywhere.
    Destination,
}

impl Reporter {
    /// The `reporter` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }

    fn other(self) -> Reporter {
        match self {
            Reporter::Source => Reporter::Destination,
            Reporter::Destination => Reporter::Source,
        }
    }

    fn reported(self, key: &EdgeKey) -> bool {
        key.reporter == self.as_str()
    }
}

/// How a time series is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// One series.
    #[default]
    None,
    /// One series per destination version.
    Version,
    /// One series per response code.
    Code,
}

/// Which edges a time series counts. Every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeFilter {
    /// Destination service: its FQDN or its short name (first label).
    pub service: Option<String>,
    /// Source workload; `unknown` also matches traffic from outside the mesh, as the
    /// graph names that node.
    pub source_workload: Option<String>,
    /// Source namespace; `unknown` also matches an empty one.
    pub source_namespace: Option<String>,
    /// Source `app` label (the graph's app nodes).
    pub source_app: Option<String>,
    /// Destination `app` label (the graph's app nodes); rows written before rollups
    /// kept it match by their service's short name.
    pub destination_app: Option<String>,
    /// Destination workload; `unknown` also matches calls no workload answered.
    pub destination_workload: Option<String>,
    /// Destination namespace; `unknown` also matches an empty one.
    pub destination_namespace: Option<String>,
}

/// `value` matches `field`, or names the graph's `unknown` for an empty field.
fn matches_node(value: Option<&str>, field: &str) -> bool {
    value.is_none_or(|v| v == field || (v == "unknown" && field.is_empty()))
}

impl EdgeFilter {
    /// Whether `key` passes the filter.
    pub fn keeps(&self, key: &EdgeKey) -> bool {
        self.service
            .as_deref()
            .is_none_or(|s| s == key.destination_service || s == key.destination_service_name())
            && matches_node(self.source_workload.as_deref(), &key.source_workload)
            && matches_node(self.source_namespace.as_deref(), &key.source_namespace)
            && matches_node(self.source_app.as_deref(), &key.source_app)
            && self.destination_app.as_deref().is_none_or(|app| {
                match key.destination_app.as_str() {
                    "" => app == key.destination_service_name(),
                    own => app == own,
                }
            })
            && matches_node(
                self.destination_workload.as_deref(),
                &key.destination_workload,
            )
            && matches_node(
                self.destination_namespace.as_deref(),
                &key.destination_namespace,
            )
    }

    /// An edge query (from the graph) names its source; others are about a service
    /// or a workload's inbound traffic.
    pub fn is_edge_query(&self) -> bool {
        self.source_workload.is_some()
            || self.source_namespace.is_some()
            || self.source_app.is_some()
    }
}

/// A parsed `/api/metrics/timeseries` request.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeseriesRequest {
    /// Window length, at least one step.
    pub window: Duration,
    /// Step length, whole seconds.
    pub step: Duration,
    /// Which edges count.
    pub filter: EdgeFilter,
    /// How series are split.
    pub group_by: GroupBy,
    /// The reporter asked for; `None` picks one (see [`MetricsService::timeseries`]).
    pub reporter: Option<Reporter>,
}

/// Parses `window` (default [`DEFAULT_WINDOW`], at most [`MAX_WINDOW`]).
fn parse_window(params: &QueryParams) -> Result<Duration> {
    let window = match params.get("window") {
        "" => DEFAULT_WINDOW,
        text => parse_whole_seconds(text)
            .map_err(|e| ApiError::BadRequest(format!("unable to parse param 'window': {e}")))?,
    };
    if window < Duration::from_secs(1) || window > MAX_WINDOW {
        return Err(ApiError::BadRequest(format!(
            "param 'window' must be between 1s and {}d",
            MAX_WINDOW.as_secs() / 86_400
        )));
    }
    Ok(window)
}

fn optional(params: &QueryParams, name: &str) -> Option<String> {
    match params.get(name) {
        "" => None,
        value => Some(value.to_string()),
    }
}

impl TimeseriesRequest {
    /// Parses `window`, `step`, `service`, `sourceWorkload`, `sourceNamespace`,
    /// `sourceApp`, `destinationWorkload`, `destinationNamespace`, `destinationApp`,
    /// `groupBy` and `reporter`.
    pub fn parse(params: &QueryParams) -> Result<TimeseriesRequest> {
        let window = parse_window(params)?;
        if window < MIN_STEP {
            return Err(ApiError::BadRequest(format!(
                "param 'window' must be at least one step ({}s)",
                MIN_STEP.as_secs()
            )));
        }
        let step = match params.get("step") {
            "" => {
                // About DEFAULT_POINTS points, a multiple of the minimum step.
                let min = MIN_STEP.as_secs();
                let seconds = window.as_secs().div_ceil(DEFAULT_POINTS).div_ceil(min) * min;
                Duration::from_secs(seconds)
            }
            text => parse_whole_seconds(text)
                .map_err(|e| ApiError::BadRequest(format!("unable to parse param 'step': {e}")))?,
        };
        if step < MIN_STEP {
            return Err(ApiError::BadRequest(format!(
                "param 'step' must be at least {}s",
                MIN_STEP.as_secs()
            )));
        }
        if step > window {
            return Err(ApiError::BadRequest(
                "param 'step' must not be longer than the window".to_string(),
            ));
        }
        let points = points_in(window, step);
        if points > MAX_POINTS {
            return Err(ApiError::BadRequest(format!(
                "param 'step' too small: window {}s / step {}s is {points} points, more than {MAX_POINTS}",
                window.as_secs(),
                step.as_secs()
            )));
        }
        let filter = EdgeFilter {
            service: optional(params, "service"),
            source_workload: optional(params, "sourceWorkload"),
            source_namespace: optional(params, "sourceNamespace"),
            source_app: optional(params, "sourceApp"),
            destination_app: optional(params, "destinationApp"),
            destination_workload: optional(params, "destinationWorkload"),
            destination_namespace: optional(params, "destinationNamespace"),
        };
        if filter.service.is_none()
            && filter.source_workload.is_none()
            && filter.destination_workload.is_none()
        {
            return Err(ApiError::BadRequest(
                "param 'service' is required unless sourceWorkload or destinationWorkload is given"
                    .to_string(),
            ));
        }
        let group_by = match params.get("groupBy") {
            "" | "none" => GroupBy::None,
            "version" => GroupBy::Version,
            "code" => GroupBy::Code,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "param 'groupBy' must be version, code or none, not {other:?}"
                )));
            }
        };
        let reporter = match params.get("reporter") {
            "" => None,
            "source" => Some(Reporter::Source),
            "destination" => Some(Reporter::Destination),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "param 'reporter' must be source or destination, not {other:?}"
                )));
            }
        };
        Ok(TimeseriesRequest {
            window,
            step,
            filter,
            group_by,
            reporter,
        })
    }
}

/// The most steps a window can touch: the window in whole steps, rounded up, and the
/// one its start falls in when it does not start on a step boundary.
fn points_in(window: Duration, step: Duration) -> u64 {
    window.as_secs().max(1).div_ceil(step.as_secs().max(1)) + 1
}

/// `/api/metrics/services` JSON.
#[derive(Debug, Serialize)]
pub struct ServicesJson {
    /// Services, sorted by FQDN.
    pub services: Vec<ServiceMetrics>,
}

/// One service's figures over the window.
#[derive(Debug, Serialize)]
pub struct ServiceMetrics {
    /// FQDN, e.g. `reviews.default.svc.cluster.local`.
    pub service: String,
    /// Short name (the FQDN's first label).
    pub name: String,
    /// Namespace (the FQDN's second label, else the destination namespace).
    pub namespace: String,
    /// Destination versions seen, sorted; empty labels left out.
    pub versions: Vec<String>,
    /// Requests per second over the time the window's rollup buckets cover (from the
    /// start of the one holding the window's start to now).
    pub rate: f64,
    /// Errors / requests, 0 without requests.
    #[serde(rename = "errorRate")]
    pub error_rate: f64,
    /// Latency quantiles, ms (to the µs); `null` without requests.
    #[serde(rename = "p50Ms")]
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    #[serde(rename = "p95Ms")]
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    #[serde(rename = "p99Ms")]
    pub p99_ms: Option<f64>,
}

/// `/api/metrics/timeseries` JSON.
#[derive(Debug, Serialize)]
pub struct TimeseriesJson {
    /// First step's start, Unix ms.
    pub start: u64,
    /// Last step's end (exclusive), Unix ms; past "now" while that step is running.
    pub end: u64,
    /// Step length, seconds.
    #[serde(rename = "stepSeconds")]
    pub step_seconds: u64,
    /// One series per group, sorted by key.
    pub series: Vec<Series>,
    /// Requests per response code over the window (`"0"`: no response).
    pub codes: BTreeMap<String, u64>,
    /// Requests per Envoy response flag over the window (`UO,URX` counts once for each;
    /// requests without flags are left out).
    pub flags: BTreeMap<String, u64>,
}

/// One group's points.
#[derive(Debug, Serialize)]
pub struct Series {
    /// `{}`, `{"version": "v1"}` or `{"code": "503"}`.
    pub key: BTreeMap<&'static str, String>,
    /// One point per step, oldest first.
    pub points: Vec<Point>,
}

/// One step of a series.
#[derive(Debug, Serialize)]
pub struct Point {
    /// Step start, Unix ms.
    pub t: u64,
    /// Requests started in the step.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests per second over the time the step's rollup buckets cover (the step
    /// itself when it is a multiple of the bucket; so far, for the running step).
    pub rate: f64,
    /// Errors / requests, 0 without requests.
    #[serde(rename = "errorRate")]
    pub error_rate: f64,
    /// Latency quantiles, ms (to the µs); `null` without requests.
    #[serde(rename = "p50Ms")]
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    #[serde(rename = "p95Ms")]
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    #[serde(rename = "p99Ms")]
    pub p99_ms: Option<f64>,
}

/// A latency quantile of `stats`, rounded to the microsecond: the histogram only
/// estimates it, and the rounding keeps float noise (`41.249999999999986`) out of the
/// JSON.
fn quantile_ms(stats: &EdgeStats, q: f64) -> Option<f64> {
    stats
        .latency_quantile_ms(q)
        .map(|ms| (ms * 1000.0).round() / 1000.0)
}

fn error_rate(stats: &EdgeStats) -> f64 {
    if stats.requests == 0 {
        0.0
    } else {
        stats.errors as f64 / stats.requests as f64
    }
}

/// The group of a row, ordered as series are listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    All,
    Version(String),
    Code(u32),
}

impl GroupKey {
    fn of(group_by: GroupBy, key: &EdgeKey) -> GroupKey {
        match group_by {
            GroupBy::None => GroupKey::All,
            // Requests that reached no workload (`UH`, `UO`) have no version.
            GroupBy::Version if key.destination_version.is_empty() => {
                GroupKey::Version("unknown".to_owned())
            }
            GroupBy::Version => GroupKey::Version(key.destination_version.clone()),
            GroupBy::Code => GroupKey::Code(key.response_code),
        }
    }

    fn to_json(&self) -> BTreeMap<&'static str, String> {
        match self {
            GroupKey::All => BTreeMap::new(),
            GroupKey::Version(v) => BTreeMap::from([("version", v.clone())]),
            GroupKey::Code(c) => BTreeMap::from([("code", c.to_string())]),
        }
    }
}

/// The FQDN's namespace label (`reviews.default.svc.cluster.local` → `default`).
fn namespace_of_fqdn(fqdn: &str) -> Option<&str> {
    let mut labels = fqdn.split('.');
    let _name = labels.next();
    let namespace = labels.next()?;
    (labels.next() == Some("svc") && !namespace.is_empty()).then_some(namespace)
}

/// The rows that count a service's requests once each: a destination workload's own
/// reports when it sent any in the window, else its callers' (a workload without a
/// proxy, or traffic that never reached one, such as `UH`).
struct CountedOnce<'a> {
    /// (service, workload, namespace) of every destination that reported.
    reporting: HashSet<(&'a str, &'a str, &'a str)>,
}

impl<'a> CountedOnce<'a> {
    fn new(keys: impl IntoIterator<Item = &'a EdgeKey>) -> Self {
        let reporting = keys
            .into_iter()
            .filter(|key| Reporter::Destination.reported(key))
            .map(Self::destination)
            .collect();
        CountedOnce { reporting }
    }

    fn destination(key: &EdgeKey) -> (&str, &str, &str) {
        (
            key.destination_service.as_str(),
            key.destination_workload.as_str(),
            key.destination_namespace.as_str(),
        )
    }

    /// Whether the row of `key` counts: the callee's report, or the caller's of a
    /// request its callee never saw (a workload that reported nothing, or flags that
    /// say the request never reached it).
    fn counts(&self, key: &EdgeKey) -> bool {
        Reporter::Destination.reported(key)
            || (Reporter::Source.reported(key)
                && (never_reached_the_callee(&key.response_flags)
                    || !self.reporting.contains(&Self::destination(key))))
    }
}

/// Envoy flags of a request the caller's proxy answered itself, which no callee's proxy
/// saw: no healthy upstream, circuit breaking, connection failure (with or without its
/// retries), no route, an injected abort.
fn never_reached_the_callee(flags: &str) -> bool {
    flags
        .split(',')
        .any(|flag| matches!(flag.trim(), "UH" | "UO" | "UF" | "NR" | "FI"))
}

/// The metrics domain: reads edges for a window and shapes them.
pub struct MetricsService {
    reader: Arc<dyn GraphReader>,
    clock: Arc<dyn Clock>,
}

impl MetricsService {
    /// A service over `reader`, with `clock` for "now".
    pub fn new(reader: Arc<dyn GraphReader>, clock: Arc<dyn Clock>) -> Self {
        MetricsService { reader, clock }
    }

    /// Every destination service of the window ending now, each request counted once
    /// ([`CountedOnce`]). Rows without a destination service are left out.
    pub async fn services(&self, window: Duration) -> Result<ServicesJson> {
        let end = self.clock.now_unix_nano();
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let start = end.saturating_sub(window_nanos);
        let buckets = self.reader.buckets(end).await?;
        let rows = self.reader.edges_in_window(start, end, buckets).await?;
        let counted = CountedOnce::new(rows.iter().map(|row| &row.key));
        let mut by_service: BTreeMap<&str, Vec<&EdgeRow>> = BTreeMap::new();
        for row in &rows {
            if row.key.destination_service.is_empty() || !counted.counts(&row.key) {
                continue;
            }
            by_service
                .entry(row.key.destination_service.as_str())
                .or_default()
                .push(row);
        }
        let seconds = buckets.window_seconds(start, end);
        let mut services = Vec::new();
        for (fqdn, chosen) in by_service {
            let Some(first) = chosen.first() else {
                continue;
            };
            let mut stats = EdgeStats::default();
            let mut versions = BTreeSet::new();
            for row in &chosen {
                stats.merge(&row.stats);
                if !row.key.destination_version.is_empty() {
                    versions.insert(row.key.destination_version.clone());
                }
            }
            services.push(ServiceMetrics {
                service: fqdn.to_string(),
                name: first.key.destination_service_name().to_string(),
                namespace: namespace_of_fqdn(fqdn)
                    .unwrap_or(&first.key.destination_namespace)
                    .to_string(),
                versions: versions.into_iter().collect(),
                rate: stats.requests as f64 / seconds,
                error_rate: error_rate(&stats),
                p50_ms: quantile_ms(&stats, 0.5),
                p95_ms: quantile_ms(&stats, 0.95),
                p99_ms: quantile_ms(&stats, 0.99),
            });
        }
        Ok(ServicesJson { services })
    }

    /// The time series of `request` over the steps ending with the one holding now.
    /// Without `reporter`, service queries count each request once ([`CountedOnce`])
    /// and edge queries ([`EdgeFilter::is_edge_query`]) source-reported rows, falling
    /// back to destination-reported ones when the window has none.
    pub async fn timeseries(&self, request: &TimeseriesRequest) -> Result<TimeseriesJson> {
        let now = self.clock.now_unix_nano();
        let buckets = self.reader.buckets(now).await?;
        // Every step the window touches: from the one holding its start to the one
        // holding now, so a window as long as its step is two steps unless aligned,
        // and no request in the window is left out.
        let window_ms = u64::try_from(request.window.as_millis()).unwrap_or(u64::MAX);
        let steps = |step: Duration| {
            let step_ms = step.as_secs().max(1) * 1000;
            let now_ms = now / 1_000_000;
            let last = now_ms - now_ms % step_ms;
            let from = now_ms.saturating_sub(window_ms);
            let first = from - from % step_ms;
            (step_ms, (last - first) / step_ms + 1, first, last)
        };
        let (mut step, (mut step_ms, mut points, mut start, mut last)) =
            (request.step, steps(request.step));
        // Steps that reach back past `[edges] coarse_after` hold whole coarse buckets.
        let coarse_step = buckets.step_from(start.saturating_mul(1_000_000), step);
        if coarse_step != step {
            step = coarse_step;
            (step_ms, points, start, last) = steps(step);
        }
        let end = last + step_ms;
        let rows = self
            .reader
            .edge_buckets_in_window(
                start.saturating_mul(1_000_000),
                end.saturating_mul(1_000_000),
                step,
                buckets,
            )
            .await?;
        let rows: Vec<(u64, EdgeRow)> = rows
            .into_iter()
            .filter(|(_, row)| request.filter.keeps(&row.key))
            .collect();
        // A named reporter's rows; for a service, each request once ([`CountedOnce`]);
        // for an edge, the caller's rows, or the callee's when there are none.
        let counted = CountedOnce::new(rows.iter().map(|(_, row)| &row.key));
        let reporter = match request.reporter {
            Some(reporter) => Some(reporter),
            None if request.filter.is_edge_query() => {
                let preferred = Reporter::Source;
                Some(
                    if rows.iter().any(|(_, row)| preferred.reported(&row.key)) {
                        preferred
                    } else {
                        preferred.other()
                    },
                )
            }
            None => None,
        };
        let counts = |key: &EdgeKey| match reporter {
            Some(reporter) => reporter.reported(key),
            None => counted.counts(key),
        };

        let slots = usize::try_from(points).unwrap_or(usize::MAX);
        let mut groups: BTreeMap<GroupKey, Vec<EdgeStats>> = BTreeMap::new();
        if request.group_by == GroupBy::None {
            groups.insert(GroupKey::All, vec![EdgeStats::default(); slots]);
        }
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        let mut flags: HashMap<&str, u64> = HashMap::new();
        for (bucket_ms, row) in &rows {
            if !counts(&row.key) {
                continue;
            }
            // Rows come per step, aligned as `start` is.
            let Some(slot) = bucket_ms
                .checked_sub(start)
                .and_then(|offset| usize::try_from(offset / step_ms).ok())
                .filter(|&slot| slot < slots)
            else {
                continue;
            };
            let series = groups
                .entry(GroupKey::of(request.group_by, &row.key))
                .or_insert_with(|| vec![EdgeStats::default(); slots]);
            if let Some(stats) = series.get_mut(slot) {
                stats.merge(&row.stats);
            }
            *codes.entry(row.key.response_code.to_string()).or_default() += row.stats.requests;
            for flag in row.key.response_flags.split(',').map(str::trim) {
                if !flag.is_empty() && flag != "-" {
                    *flags.entry(flag).or_default() += row.stats.requests;
                }
            }
        }

        let step_seconds = step.as_secs().max(1);
        // What each step's requests were counted over: its buckets, up to now.
        let covered: Vec<f64> = (0..points)
            .map(|i| {
                let from = (start + i * step_ms).saturating_mul(1_000_000);
                buckets.covered_seconds(from, from + step_ms * 1_000_000, now)
            })
            .collect();
        let series = groups
            .into_iter()
            .map(|(key, steps)| Series {
                key: key.to_json(),
                points: (0..)
                    .zip(steps)
                    .zip(&covered)
                    .map(|((i, stats), &seconds): ((u64, EdgeStats), &f64)| Point {
                        t: start + i * step_ms,
                        requests: stats.requests,
                        errors: stats.errors,
                        // At least a second: a step's first bucket may have run for
                        // a moment only (and a step none of whose buckets has
                        // started has no requests).
                        rate: stats.requests as f64 / seconds.max(1.0),
                        error_rate: error_rate(&stats),
                        p50_ms: quantile_ms(&stats, 0.5),
                        p95_ms: quantile_ms(&stats, 0.95),
                        p99_ms: quantile_ms(&stats, 0.99),
                    })
                    .collect(),
            })
            .collect();
        Ok(TimeseriesJson {
            start,
            end,
            step_seconds,
            series,
            codes,
            flags: flags
                .into_iter()
                .map(|(flag, n)| (flag.to_string(), n))
                .collect(),
        })
    }
}

/// The metrics routes, with their own state.
pub fn router(service: Arc<MetricsService>) -> Router {
    Router::new()
        .route("/api/metrics/services", get(get_services))
        .route("/api/metrics/timeseries", get(get_timeseries))
        .with_state(service)
}

/// `GET /api/metrics/services`.
#[tracing::instrument(skip_all)]
async fn get_services(
    State(service): State<Arc<MetricsService>>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let window = parse_window(&params)?;
    let json = service.services(window).await?;
    tracing::debug!(services = json.services.len(), "service metrics");
    json_response(&json, params.pretty_print())
}

/// `GET /api/metrics/timeseries`.
#[tracing::instrument(skip_all)]
async fn get_timeseries(
    State(service): State<Arc<MetricsService>>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let request = TimeseriesRequest::parse(&params)?;
    let json = service.timeseries(&request).await?;
    tracing::debug!(series = json.series.len(), "metrics time series");
    json_response(&json, params.pretty_print())
}

#[cfg(test)]
mod tests;
