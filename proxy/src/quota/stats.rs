//! The quota counters on the admin listener's `/stats/prometheus`, resolved to their
//! label values once so that counting a decision is one relaxed atomic add.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::error::Result;
use crate::stats::{counter, counter_vec, gauge};

/// How one inbound request under at least one quota policy was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionResult {
    /// Granted from leased tokens, without waiting for the collector.
    GrantedLocal,
    /// Granted after waiting for the collector (a Check or a lease refill).
    GrantedRemote,
    /// Denied locally: the collector said the quota is exhausted until a known time.
    DeniedLocal,
    /// Denied by the collector's answer to this request.
    DeniedRemote,
    /// The collector could not answer; allowed (`--quota-fail-closed` off).
    FailOpen,
    /// The collector could not answer; denied with 500 `RLSE`.
    FailClosed,
    /// A shadow policy would have denied; allowed.
    ShadowAllowed,
}

impl DecisionResult {
    const ALL: [DecisionResult; 7] = [
        DecisionResult::GrantedLocal,
        DecisionResult::GrantedRemote,
        DecisionResult::DeniedLocal,
        DecisionResult::DeniedRemote,
        DecisionResult::FailOpen,
        DecisionResult::FailClosed,
        DecisionResult::ShadowAllowed,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionResult::GrantedLocal => "granted_local",
            DecisionResult::GrantedRemote => "granted_remote",
            DecisionResult::DeniedLocal => "denied_local",
            DecisionResult::DeniedRemote => "denied_remote",
            DecisionResult::FailOpen => "fail_open",
            DecisionResult::FailClosed => "fail_closed",
            DecisionResult::ShadowAllowed => "shadow_allowed",
        }
    }

    /// True when the request was answered without waiting for the collector.
    pub fn is_local(self) -> bool {
        matches!(self, DecisionResult::GrantedLocal | DecisionResult::DeniedLocal)
    }
}

/// Every quota counter of the proxy.
#[derive(Debug, Clone)]
pub struct QuotaStats {
    decisions: [IntCounter; 7],
    /// `Check` calls by gRPC code (`Ok`, `Unavailable`, `DeadlineExceeded`, ...).
    pub check_rpcs: IntCounterVec,
    /// Policies in force that can match at this proxy.
    pub policies: IntGauge,
    /// Policies received that did not parse or compile, skipped.
    pub policies_invalid: IntCounter,
    /// `WatchQuotas` streams opened.
    pub watch_connects: IntCounter,
    /// 1 while the policy watch stream to the collector is open, 0 otherwise.
    pub watch_open: IntGauge,
    /// Counter keys with a lease.
    pub leases: IntGauge,
    /// Leases dropped after [`super::LEASE_IDLE_EVICTION`] without use.
    pub leases_evicted: IntCounter,
    /// Requests checked one by one because the lease table was full.
    pub lease_table_full: IntCounter,
    /// Time to answer a request from its lease.
    pub local_decision_seconds: Histogram,
}

impl QuotaStats {
    /// Registers every quota counter in `registry`.
    pub fn register(registry: &Registry) -> Result<QuotaStats> {
        let decisions = counter_vec(
            registry,
            "meshtel_proxy_quota_decisions_total",
            "Inbound requests under a quota policy, by how they were decided",
            &["result"],
        )?;
        let local_decision_seconds = Histogram::with_opts(
            HistogramOpts::new("meshtel_proxy_quota_local_decision_seconds", "Time to answer a request from its quota lease").buckets(vec![
                0.000_000_5,
                0.000_001,
                0.000_002,
                0.000_005,
                0.000_01,
                0.000_05,
                0.000_1,
                0.001,
            ]),
        )?;
        registry.register(Box::new(local_decision_seconds.clone()))?;
        let check_rpcs = counter_vec(registry, "meshtel_proxy_quota_check_rpcs_total", "Quota Check calls to the collector, by gRPC code", &["code"])?;
        // Every code from 0, so that an alert on increase() sees the first failure.
        for code in meshtel_model::grpc_status::NAMES {
            check_rpcs.with_label_values(&[code]);
        }
        Ok(QuotaStats {
            decisions: DecisionResult::ALL.map(|result| decisions.with_label_values(&[result.as_str()])),
            check_rpcs,
            policies: gauge(registry, "meshtel_proxy_quota_policies", "Quota policies in force that can match at this proxy")?,
            policies_invalid: counter(registry, "meshtel_proxy_quota_policies_invalid_total", "Quota policies received that were invalid and skipped")?,
            watch_connects: counter(registry, "meshtel_proxy_quota_watch_connects_total", "Quota policy watch streams opened to the collector")?,
            watch_open: gauge(registry, "meshtel_proxy_quota_watch_open", "1 while the quota policy watch stream to the collector is open, 0 while it is down")?,
            leases: gauge(registry, "meshtel_proxy_quota_leases", "Quota counter keys with a token lease")?,
            leases_evicted: counter(registry, "meshtel_proxy_quota_leases_evicted_total", "Quota leases dropped after being idle")?,
            lease_table_full: counter(
                registry,
                "meshtel_proxy_quota_lease_table_full_total",
                "Requests checked one by one because the quota lease table was full",
            )?,
            local_decision_seconds,
        })
    }

    /// Counts one decision.
    pub fn decided(&self, result: DecisionResult) {
        self.decisions[result as usize].inc();
    }

    /// Decisions counted so far with `result`.
    pub fn decisions(&self, result: DecisionResult) -> u64 {
        self.decisions[result as usize].get()
    }
}
