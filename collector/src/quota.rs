//! The quota engine: Mixer `Check` for the proxies, Envoy's `ShouldRateLimit` for
//! Envoy and envoyproxy/ratelimit clients, and live usage for the admin API, over one
//! set of counters.
//!
//! ```text
//!  QuotaPolicyStore ──poll revision (250 ms)──► set_policies: compile, swap whole,
//!    (SQL, admin API)     spawn_policy_sync      drop removed counters ──► WatchQuotas
//!                                                      │
//!  Check{attributes, quotas} ─► dedup (id + quota, 1–2 s) ─► policy by name ─► match?
//!        ─► resolve: key `name;dim=value…` + limit (first matching override)
//!                                                      ▼
//!  ShouldRateLimit{domain, descriptors} ─► most specific policy ─► key + limit
//!                                                      ▼
//!        counters: 64 shards × Mutex<HashMap<key, counter>> (foldhash)
//!        fixed window (epoch-aligned) · rolling window (buckets) · token bucket
//!        at most max_keys counters; idle ones swept every sweep_interval
//!                                                      ▼
//!        granted / denied / shadow_denied ─► meshtel_quota_* metrics, per-key usage
//! ```
//!
//! Decisions are exact under concurrency: a decision is one critical section on its
//! key's shard, so no window ever grants more than its limit. Without `best_effort`
//! a request gets all it asked or nothing; with it, whatever is left. A `shadow`
//! policy counts and reports `shadow_denied` but never denies; an `unlimited` one
//! keeps no counter. A quota name no policy has is granted in full with `NOT_FOUND`
//! (fail-open, as Mixer does), as is a request that needs a new counter when the table
//! is full and nothing is idle (`overflow`).
//!
//! Entry points: [`QuotaEngine`] (with [`QuotaConfig`]), [`spawn_policy_sync`],
//! [`spawn_quota_sweeper`], [`rls_grpc_service`]; the Mixer service with Check is
//! [`crate::report::mixer_grpc_service`].

mod check;
pub(crate) mod config;
mod counter;
mod dedup;
mod engine;
mod metrics;
mod policies;
mod rls;
mod sync;
mod usage;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshtel_model::graph::UnixClock;

pub(crate) use check::proto_duration;
pub use check::{
    MAX_DEDUPLICATION_ID_BYTES, MAX_QUOTA_NAME_BYTES, MAX_QUOTAS_PER_CHECK, PolicyStream,
    empty_policy_stream,
};
pub use config::{
    QuotaConfig, default_dedup_window, default_max_keys, default_sweep_interval,
    default_sync_interval,
};
pub use engine::{
    QuotaDecision, QuotaEngine, QuotaHandle, QuotaOutcome, QuotaResult, UNGOVERNED_VALID_DURATION,
};
pub use policies::{InvalidPolicy, PolicyLoad};
pub use rls::{MAX_DESCRIPTORS, MAX_ENTRIES, RateLimitGrpc, rate_limit_unit, rls_grpc_service};
pub use sync::{spawn_policy_sync, spawn_quota_sweeper, sync_policies_once};

/// A clock that moves only when told to: for tests of windows, buckets and refills
/// (here and in other crates) without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `unix_nano`.
    pub fn new(unix_nano: u64) -> ManualClock {
        ManualClock(AtomicU64::new(unix_nano))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sets the time.
    pub fn set(&self, unix_nano: u64) {
        self.0.store(unix_nano, Ordering::Relaxed);
    }
}

impl UnixClock for ManualClock {
    fn now_unix_nano(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
