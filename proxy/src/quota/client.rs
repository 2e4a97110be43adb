//! `Mixer.Check` calls to the collector, bounded by `--quota-timeout`, counted by gRPC
//! code.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshtel_model::mixer::check_request::QuotaParams;
use meshtel_model::mixer::check_response::QuotaResult;
use meshtel_model::mixer::mixer_client::MixerClient;
use meshtel_model::mixer::{CheckRequest, QuotaAttributes};
use tonic::transport::{Channel, Endpoint};
use meshtel_model::log_window::Throttled;
use tracing::{debug, info, warn};

use super::lease::Grant;
use super::stats::QuotaStats;

/// Validity assumed when an answer carries none (Mixer's default, one minute).
pub const DEFAULT_VALID_DURATION: Duration = Duration::from_secs(60);
/// Longest validity believed (Mixer's max expiration, 60 s).
pub const MAX_VALID_DURATION: Duration = Duration::from_secs(60);
/// Shortest timeout of a lease ask: nobody waits on it beyond `--quota-timeout`, and
/// giving up on a slow answer would put the key in failure mode for a while.
pub const MIN_ASK_TIMEOUT: Duration = Duration::from_millis(200);

/// A cheap, cloneable client for Check calls.
#[derive(Debug, Clone)]
pub struct CheckClient {
    client: MixerClient<Channel>,
    timeout: Duration,
    stats: QuotaStats,
    /// `<proxy id>-<nonce>`, the prefix of every deduplication id.
    proxy_id: Arc<str>,
    calls: Arc<AtomicU64>,
    /// Checks failed since the last one answered, and their WARN, at most once per
    /// interval: requests then go unchecked (or are refused with `RLSE`).
    failing: Arc<AtomicU64>,
    failures_log: Arc<Throttled>,
    /// The INFO for checks answered again after failures, throttled alike (a collector
    /// that fails every other check must not log every recovery).
    recoveries_log: Arc<Throttled>,
}

impl CheckClient {
    /// A client over a lazily connected channel to `endpoint`.
    pub fn new(endpoint: &Endpoint, timeout: Duration, proxy_id: &str, stats: QuotaStats, fail_closed: bool) -> CheckClient {
        let what = if fail_closed { "answered 500 (RLSE)" } else { "let through unchecked (fail open)" };
        let collector = endpoint.uri().to_string();
        let failures_log = Throttled::new(move |failed, last_code: &str| {
            warn!(checks_failed = failed, last_code, collector = %collector, timeout_ms = timeout.as_millis() as u64, at_most_every = "10s", "quota Checks failed since the last warning: the requests waiting on them were {what} (meshtel_proxy_quota_decisions_total counts those requests)");
        });
        let recoveries_log = Throttled::new(|recoveries, last_failed: &str| {
            info!(recoveries, checks_failed_before_the_last = last_failed, at_most_every = "10s", "quota Checks answered again after failing");
        });
        CheckClient {
            client: MixerClient::new(endpoint.connect_lazy()),
            timeout,
            stats,
            // A per-process nonce keeps a restarted proxy (same --proxy-id) from
            // reusing ids the collector still remembers for deduplication.
            proxy_id: Arc::from(format!("{proxy_id}-{:016x}", rand::random::<u64>())),
            calls: Arc::new(AtomicU64::new(0)),
            failing: Arc::new(AtomicU64::new(0)),
            failures_log,
            recoveries_log,
        }
    }

    /// Asks for `quotas` (name → amount) for one request with `attributes`, giving up
    /// after `--quota-timeout` (a request waits), or after at least
    /// [`MIN_ASK_TIMEOUT`] for a best-effort lease ask (the request path does not wait
    /// on it beyond its own timeout). `Err` carries the gRPC code of a failed or
    /// timed-out call.
    pub async fn check(
        &self,
        attributes: QuotaAttributes,
        quotas: impl IntoIterator<Item = (String, i64)>,
        best_effort: bool,
    ) -> Result<HashMap<String, QuotaResult>, tonic::Code> {
        let timeout = if best_effort { self.timeout.max(MIN_ASK_TIMEOUT) } else { self.timeout };
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let request = CheckRequest {
            attributes: Some(attributes),
            deduplication_id: format!("{}-{call}", self.proxy_id),
            quotas: quotas.into_iter().map(|(name, amount)| (name, QuotaParams { amount, best_effort })).collect(),
        };
        // The timeout is ours alone (no `grpc-timeout`): the call is abandoned and
        // counted as `DeadlineExceeded` when it expires.
        let request = tonic::Request::new(request);
        let mut client = self.client.clone();
        let code = match tokio::time::timeout(timeout, client.check(request)).await {
            Ok(Ok(response)) => {
                self.count(tonic::Code::Ok);
                let failed = self.failing.swap(0, Ordering::Relaxed);
                if failed > 0 {
                    self.recoveries_log.note(failed);
                }
                return Ok(response.into_inner().quotas);
            }
            Ok(Err(status)) => {
                debug!(code = ?status.code(), error = status.message(), "quota check failed");
                status.code()
            }
            Err(_) => tonic::Code::DeadlineExceeded,
        };
        self.count(code);
        self.failing.fetch_add(1, Ordering::Relaxed);
        self.failures_log.note(meshtel_model::grpc_status::name(i32::from(code)).unwrap_or("UNKNOWN"));
        Err(code)
    }

    /// Opens the connection ahead of the first real Check (a Check charging nothing),
    /// so that the first request under a new policy does not pay for the handshake.
    pub async fn warm_up(&self) {
        let request = CheckRequest { attributes: None, deduplication_id: String::new(), quotas: HashMap::new() };
        let mut client = self.client.clone();
        if let Ok(Err(status)) = tokio::time::timeout(Duration::from_secs(1), client.check(request)).await {
            debug!(code = ?status.code(), "quota check warm-up failed");
        }
    }

    fn count(&self, code: tonic::Code) {
        let code = i32::from(code);
        let name = meshtel_model::grpc_status::name(code).map_or_else(|| code.to_string(), str::to_owned);
        self.stats.check_rpcs.with_label_values(&[&name]).inc();
    }
}

/// A protobuf duration as a `Duration` (negative or absent: `None`).
pub fn duration_of(value: Option<&prost_types::Duration>) -> Option<Duration> {
    let value = value?;
    let seconds = u64::try_from(value.seconds).ok()?;
    let nanos = u32::try_from(value.nanos).ok()?;
    Some(Duration::new(seconds, nanos))
}

/// True when `result` lets the request through: granted, shadow, or an unknown quota
/// (the collector grants those in full).
pub fn passes(result: &QuotaResult) -> bool {
    result.granted_amount > 0 || result.shadow || result.status_code == tonic::Code::NotFound as i32
}

/// True when a shadow policy's `result` would have denied: the collector grants it,
/// but says when a denied caller could try again, as it does only for a denial.
pub fn shadow_denies(result: &QuotaResult) -> bool {
    result.shadow && result.retry_after.is_some()
}

/// The lease's view of the answer to an ask for `asked` tokens: validity capped at
/// [`MAX_VALID_DURATION`] (tokens are held at most a minute, as Mixer's), absent
/// validity read as [`DEFAULT_VALID_DURATION`]; a denial holds until its retry time,
/// else the reset time, else the validity; an unknown quota grants what was asked, a
/// shadow policy that would have denied nothing.
pub fn grant_of(result: &QuotaResult, asked: u64) -> Grant {
    let valid_duration = duration_of(result.valid_duration.as_ref()).unwrap_or(DEFAULT_VALID_DURATION).min(MAX_VALID_DURATION);
    let retry_after = duration_of(result.retry_after.as_ref())
        .filter(|d| !d.is_zero())
        .or_else(|| duration_of(result.reset_after.as_ref()).filter(|d| !d.is_zero()))
        .unwrap_or(valid_duration);
    let granted = u64::try_from(result.granted_amount).unwrap_or(0);
    let granted = if result.status_code == tonic::Code::NotFound as i32 { granted.max(asked) } else { granted };
    // A shadow policy's lease holds the denial it would have made, as a real policy's
    // does; the request path then lets each request through as `shadow_allowed`.
    let granted = if shadow_denies(result) { 0 } else { granted };
    Grant { granted, valid_duration, retry_after }
}
