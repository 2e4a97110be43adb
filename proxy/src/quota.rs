//! Quota enforcement on the inbound listener: the proxy side of `Mixer.Check`.
//!
//! ```text
//!  collector ──WatchQuotas──► PolicyWatcher ──► PolicyCell (policies that can match here)
//!                                                   │
//!  inbound request ──► any policy? ── no ─► forward (one atomic load, nothing else)
//!                          │ yes
//!                          ▼
//!        match on (source, destination, method, path, headers) ── none ─► forward
//!                          │ matched: counter key = QuotaPolicy::resolve
//!          prefetch on ────┴──── prefetch off
//!          lease per key         one Check per request (best_effort=false, --quota-timeout)
//!            │ tokens? take one locally; refill in the background below half the last lease
//!            │ empty: ask (best_effort) and wait ≤ --quota-timeout
//!            │ collector said 0: deny locally until its retry time, without asking again
//!            ▼
//!   granted ─► forward   exhausted ─► 429 RL   collector failed ─► allow (or 500 RLSE, fail-closed)
//! ```
//!
//! # Leasing (Mixer's quota prefetch)
//!
//! With `--quota-prefetch` (the default) the proxy keeps a lease of tokens per counter
//! key. It asks the collector with `best_effort = true` for
//! `min(limit, max(min(min_prefetch, ceil(limit / 10)), predicted, 1))` tokens, where
//! `predicted` is the number of requests for that key over the last predict window
//! (1 s by default) and `min_prefetch` is 10 by default. The collector grants what is
//! left of the window (up to that) and says how long the grant is valid: until the
//! counter's window ends. The proxy answers requests from the lease until it is empty
//! or expired and asks for more in the background once it falls below half the last
//! lease, so requests rarely wait. When the collector grants nothing, the key is
//! denied locally until the answer's `retry_after` (the window's end), then asked again
//! once: at most a couple of calls per key and window however high the rate.
//!
//! **Why the global limit holds.** Leased tokens are charged to the global counter in
//! the window in which they are granted, and the proxy never uses one after
//! `send time + valid_duration`: measured from when the ask was *sent*, so latency
//! and clock skew between proxy and collector can only shorten a lease. A token
//! therefore cannot be used in a later window than the one it was charged to, and the
//! tokens all proxies use in a window are at most the limit. The tolerance is what
//! the collector's `valid_duration` gets wrong: if it overstates the time left (e.g.
//! rounding to ticks), the tokens used in that overstatement after the boundary, at
//! most the requests of one round trip's worth of time at the usual precision.
//!
//! **What it costs.** Tokens leased and not used before the window ends are lost to
//! every proxy: with many proxies sharing a small quota, one proxy's lease can deny
//! another's request although the limit is not reached globally. Leases are therefore
//! never bigger than the limit, the minimum lease shrinks to a tenth of the limit, and
//! prediction sizes leases to the proxy's actual demand. For rolling-window and
//! token-bucket policies a token is charged when leased, not when used, so traffic may
//! be burstier by up to one lease than the algorithm alone allows. Where exactness
//! matters more than latency, `--quota-prefetch=false` asks once per request.
//!
//! **Policy edits.** A policy pushed over `WatchQuotas` with a spec that differs from
//! the one in force (limit, window, algorithm, overrides, match, ...) gets a new
//! generation number; the leases of its counter keys are reset on the push: leased
//! tokens dropped, a denial or failure held forgotten, an ask in flight disowned. The
//! next request asks the collector, which decides by the edited policy, so an edit
//! applies within the collector's sync interval plus a round trip. Leases of a
//! removed policy go; leases of unchanged policies are untouched. On the request path
//! this costs one integer comparison per lease.
//!
//! # Failure
//!
//! A Check that fails or exceeds `--quota-timeout` (20 ms, Envoy's rate limit filter
//! default) lets the request through (`fail_open`), or with `--quota-fail-closed`
//! answers 500 with flag `RLSE` (`fail_closed`), as Envoy's `failure_mode_deny`; a
//! fail-closed proxy that has not received its first policy set (the collector
//! unreachable since it started) refuses every request so, not knowing which policies
//! apply. After
//! a failed lease request a key decides by the failure mode for 250 ms without asking.
//! Leased tokens still valid are used while the collector is down.
//!
//! Memory is bounded: at most [`MAX_LEASES`] keys hold a lease (beyond, requests are
//! checked one by one and counted), and a lease idle for [`LEASE_IDLE_EVICTION`] is
//! dropped (Mixer's quota cache: 10,000 entries, 600 s).

mod client;
mod enforce;
mod lease;
mod policies;
mod response;
mod stats;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshtel_model::quota::QuotaAttributes;
use parking_lot::Mutex;
use tonic::transport::Endpoint;

pub use client::{CheckClient, grant_of, passes};
pub use lease::{Grant, Lease, LeaseSizing, Take, lease_size};
pub use policies::{PolicyCell, PolicySet, RequestView, SkippedPolicy, destination_attributes};
pub use response::{Denial, LimitStatus, RateLimitHeaders, denied_response, rate_limit_headers, whole_seconds_up};
pub use stats::{DecisionResult, QuotaStats};
pub use watch::PolicyWatcher;

use crate::error::{Error, Result};
use crate::mesh::WorkloadIdentity;

/// Default `--quota-min-prefetch` (Mixer's `min_prefetch_amount`).
pub const DEFAULT_MIN_PREFETCH: u64 = 10;
/// Longest `--quota-timeout` and `--quota-predict-window` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Default `--quota-timeout` (Envoy's rate limit filter).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);
/// Default `--quota-predict-window` (Mixer's).
pub const DEFAULT_PREDICT_WINDOW: Duration = Duration::from_secs(1);
/// Most counter keys holding a lease.
pub const MAX_LEASES: usize = 10_000;
/// A lease unused this long is dropped.
pub const LEASE_IDLE_EVICTION: Duration = Duration::from_secs(600);

/// Quota enforcement settings (`--quota-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Lease tokens ahead and answer locally.
    pub prefetch: bool,
    /// Longest wait for the collector.
    pub timeout: Duration,
    /// Deny with 500 `RLSE` when the collector cannot answer.
    pub fail_closed: bool,
    /// Smallest lease asked for, before capping at a tenth of the limit.
    pub min_prefetch: u64,
    /// Demand over this window sizes the next lease.
    pub predict_window: Duration,
}

impl Default for QuotaSettings {
    fn default() -> QuotaSettings {
        QuotaSettings {
            prefetch: true,
            timeout: DEFAULT_TIMEOUT,
            fail_closed: false,
            min_prefetch: DEFAULT_MIN_PREFETCH,
            predict_window: DEFAULT_PREDICT_WINDOW,
        }
    }
}

impl QuotaSettings {
    /// Checks values clap cannot.
    pub fn validate(&self) -> Result<()> {
        // A request waits up to the timeout for its quota: past a minute it is no
        // bound at all (and a deadline that far out cannot be computed).
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(Error::Config(format!("--quota-timeout {:?} must be greater than zero and at most 60s", self.timeout)));
        }
        if self.predict_window.is_zero() || self.predict_window > MAX_TIMEOUT {
            return Err(Error::Config(format!("--quota-predict-window {:?} must be greater than zero and at most 60s", self.predict_window)));
        }
        if self.min_prefetch == 0 {
            return Err(Error::Config("--quota-min-prefetch must be at least 1".to_owned()));
        }
        Ok(())
    }

    fn sizing(&self) -> LeaseSizing {
        LeaseSizing { min_prefetch: self.min_prefetch, predict_window: self.predict_window }
    }
}

/// One counter key's lease and what asking for more needs.
#[derive(Debug)]
struct LeaseEntry {
    lease: Lease,
    /// The policy's name (the quota asked for).
    quota: Arc<str>,
    /// The attributes of the request that created the lease (they resolve to its key).
    attributes: Arc<QuotaAttributes>,
    /// Bumped whenever an ask completes or the lease is reset, waking the requests
    /// waiting on it.
    changed: tokio::sync::watch::Sender<()>,
}

/// State shared by the request path, the refill tasks and the policy watch.
#[derive(Debug)]
struct Shared {
    settings: QuotaSettings,
    /// This proxy's destination attributes (constant).
    destination: QuotaAttributes,
    policies: PolicyCell,
    /// Set by the first policy set published: before it, this proxy does not know
    /// which policies apply, and `--quota-fail-closed` refuses every request.
    synced: std::sync::atomic::AtomicBool,
    leases: Mutex<HashMap<String, LeaseEntry>>,
    client: CheckClient,
    stats: QuotaStats,
}

impl Shared {
    fn publish(&self, set: PolicySet) {
        self.stats.policies.set(set.policies.len() as i64);
        let set = self.policies.store(set);
        self.synced.store(true, std::sync::atomic::Ordering::Release);
        self.follow_policies(&set);
    }

    /// Before the first policy set arrived (the collector unreachable since start):
    /// which policies apply is unknown, so every request is decided as a failed Check
    /// would be, refused with `--quota-fail-closed`, let through (and counted
    /// `fail_open`) without.
    fn unsynced(&self) -> bool {
        !self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    fn evict_idle_leases(&self) {
        let now = Instant::now();
        let mut leases = self.leases.lock();
        let before = leases.len();
        evict_idle(&mut leases, now);
        self.stats.leases_evicted.inc_by((before - leases.len()) as u64);
        self.stats.leases.set(leases.len() as i64);
    }
}

fn evict_idle(leases: &mut HashMap<String, LeaseEntry>, now: Instant) {
    leases.retain(|_, entry| entry.lease.in_flight() || now.saturating_duration_since(entry.lease.last_used()) < LEASE_IDLE_EVICTION);
}

/// The inbound listener's quota stage; cheap to clone.
#[derive(Debug, Clone)]
pub struct QuotaEnforcer {
    shared: Arc<Shared>,
}

impl QuotaEnforcer {
    /// An enforcer for the inbound side of `identity` / `service` (FQDN, short name,
    /// namespace) that checks with the collector at `collector`. It enforces nothing
    /// until policies arrive ([`QuotaEnforcer::watcher`] or [`QuotaEnforcer::publish`]).
    pub fn new(
        settings: QuotaSettings,
        identity: &WorkloadIdentity,
        service: &(String, String, String),
        collector: &Endpoint,
        proxy_id: &str,
        stats: QuotaStats,
    ) -> QuotaEnforcer {
        let client = CheckClient::new(collector, settings.timeout, proxy_id, stats.clone(), settings.fail_closed);
        let shared = Shared {
            settings,
            destination: destination_attributes(identity, service),
            policies: PolicyCell::default(),
            synced: std::sync::atomic::AtomicBool::new(false),
            leases: Mutex::new(HashMap::new()),
            client,
            stats,
        };
        QuotaEnforcer { shared: Arc::new(shared) }
    }

    /// The task that keeps the policies current from the collector's `WatchQuotas`
    /// stream (and evicts idle leases).
    pub fn watcher(&self, collector: Endpoint, proxy_id: String) -> PolicyWatcher {
        PolicyWatcher { endpoint: collector, proxy_id, shared: self.shared.clone() }
    }

    /// Publishes a policy set compiled from the collector's JSON (what the watch does
    /// with each message, `incarnations` its policies' creations); returns the entries
    /// skipped.
    pub fn publish_json(&self, revision: i64, json: &str, incarnations: &[u64]) -> Vec<SkippedPolicy> {
        let (set, skipped) = PolicySet::from_json(revision, json, incarnations, &self.shared.destination);
        self.shared.stats.policies_invalid.inc_by(skipped.len() as u64);
        self.shared.publish(set);
        skipped
    }

    /// True when no policy can match at this proxy: the request path skips the stage.
    /// Never before the first policy set: its requests are refused with
    /// `--quota-fail-closed`, else let through and counted `fail_open`.
    pub fn is_idle(&self) -> bool {
        self.shared.policies.is_empty() && !self.shared.unsynced()
    }

    /// The policies in force.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.shared.policies.load()
    }

    /// The counters.
    pub fn stats(&self) -> &QuotaStats {
        &self.shared.stats
    }
}

#[cfg(test)]
mod tests;
