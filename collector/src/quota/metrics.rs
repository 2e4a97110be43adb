//! The quota engine's own metrics, in a registry of their own:
//!
//! - `meshtel_quota_checks_total{quota,result}`: decisions, `result` one of
//!   `granted`, `denied`, `shadow_denied`, `unknown_quota`, `overflow`; `quota` is a
//!   policy name (series are dropped with the policy) or `unknown`;
//! - `meshtel_quota_decision_seconds`: time inside the engine per decision (each quota
//!   of a Check, each descriptor of a `ShouldRateLimit`; not the [`super::QuotaEngine::charge`]
//!   fast path);
//! - `meshtel_quota_keys`: live counters;
//! - `meshtel_quota_keys_evicted_total`: idle counters dropped;
//! - `meshtel_quota_dedup_full_total`: Check results not remembered for their
//!   `deduplication_id` because the table was full (a retry is charged again);
//! - `meshtel_quota_rls_requests_total{domain,code}`: Envoy RLS requests, `domain` a
//!   configured domain or `unknown`, `code` `ok`, `over_limit` or `invalid_argument`.
//!
//! Per-decision counters are resolved once per policy (at load), so a decision costs
//! a few atomic increments, no label lookup.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::error::Result;

pub(crate) use meshtel_model::quota::{LIMIT_OVERRIDE_LABEL, UNKNOWN_QUOTA_LABEL};

/// Results a policy's checks can have.
const POLICY_RESULTS: [&str; 5] = [
    "granted",
    "denied",
    "shadow_denied",
    "overflow",
    "not_applicable",
];

/// The `code` of `meshtel_quota_rls_requests_total` for a domain policies limit.
const RLS_CODES: [&str; 3] = ["ok", "over_limit", "invalid_argument"];

/// The `domain` of RLS requests to a domain no policy limits.
pub(crate) const UNKNOWN_DOMAIN: &str = meshtel_model::quota::UNKNOWN_DOMAIN_LABEL;

/// `meshtel_quota_checks_total` series of one `quota` label.
#[derive(Clone)]
pub(crate) struct ResultCounters {
    pub granted: IntCounter,
    pub denied: IntCounter,
    pub shadow_denied: IntCounter,
    pub overflow: IntCounter,
    /// Checks naming the policy whose match does not hold: granted, uncounted.
    pub not_applicable: IntCounter,
}

/// Every quota metric.
pub(crate) struct QuotaMetrics {
    pub registry: Registry,
    checks: IntCounterVec,
    pub decision_seconds: Histogram,
    pub keys: IntGauge,
    pub evicted: IntCounter,
    /// Check results not remembered for deduplication: the table was full.
    pub dedup_full: IntCounter,
    rls_requests: IntCounterVec,
    /// Checks of quota names no policy has.
    pub unknown_quota: IntCounter,
    /// RLS descriptors with their own limit.
    pub limit_override: ResultCounters,
}

impl QuotaMetrics {
    pub fn new() -> Result<QuotaMetrics> {
        let registry = Registry::new();
        let checks = IntCounterVec::new(
            Opts::new(
                "meshtel_quota_checks_total",
                "Quota decisions by quota and result (granted, denied, shadow_denied, unknown_quota, overflow, not_applicable).",
            ),
            &["quota", "result"],
        )?;
        registry.register(Box::new(checks.clone()))?;
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "meshtel_quota_decision_seconds",
                "Time the quota engine takes for one decision (policy lookup, key, counter).",
            )
            .buckets(vec![
                1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025,
            ]),
        )?;
        registry.register(Box::new(decision_seconds.clone()))?;
        let keys = IntGauge::new("meshtel_quota_keys", "Live quota counters.")?;
        registry.register(Box::new(keys.clone()))?;
        let evicted = IntCounter::new(
            "meshtel_quota_keys_evicted_total",
            "Idle quota counters dropped (window expired) to bound memory.",
        )?;
        registry.register(Box::new(evicted.clone()))?;
        let dedup_full = IntCounter::new(
            "meshtel_quota_dedup_full_total",
            "Check results not remembered for their deduplication_id because the table was full ([quota] max_keys per window): a retry of such a Check is charged again.",
        )?;
        registry.register(Box::new(dedup_full.clone()))?;
        let rls_requests = IntCounterVec::new(
            Opts::new(
                "meshtel_quota_rls_requests_total",
                "Envoy rate limit service requests by domain and code (ok, over_limit, invalid_argument).",
            ),
            &["domain", "code"],
        )?;
        registry.register(Box::new(rls_requests.clone()))?;
        // A domain no policy limits: always answered OK (or refused as malformed).
        for code in ["ok", "invalid_argument"] {
            rls_requests.with_label_values(&[UNKNOWN_DOMAIN, code]);
        }
        let unknown_quota = checks.with_label_values(&[UNKNOWN_QUOTA_LABEL, "unknown_quota"]);
        let limit_override = Self::results_of(&checks, LIMIT_OVERRIDE_LABEL);
        Ok(QuotaMetrics {
            registry,
            checks,
            decision_seconds,
            keys,
            evicted,
            dedup_full,
            rls_requests,
            unknown_quota,
            limit_override,
        })
    }

    fn results_of(checks: &IntCounterVec, quota: &str) -> ResultCounters {
        ResultCounters {
            granted: checks.with_label_values(&[quota, "granted"]),
            denied: checks.with_label_values(&[quota, "denied"]),
            shadow_denied: checks.with_label_values(&[quota, "shadow_denied"]),
            overflow: checks.with_label_values(&[quota, "overflow"]),
            not_applicable: checks.with_label_values(&[quota, "not_applicable"]),
        }
    }

    /// The series of one policy (created at zero).
    pub fn results_for(&self, quota: &str) -> ResultCounters {
        Self::results_of(&self.checks, quota)
    }

    /// Drops the series of a removed policy.
    pub fn forget(&self, quota: &str) {
        for result in POLICY_RESULTS {
            let _ = self.checks.remove_label_values(&[quota, result]);
        }
    }

    /// Creates (at zero) the RLS series of `domain`, one a policy limits.
    pub fn rls_domain(&self, domain: &str) {
        for code in RLS_CODES {
            self.rls_requests.with_label_values(&[domain, code]);
        }
    }

    /// Drops the RLS series of a domain no policy limits any more (its requests are
    /// counted under `unknown` from then on).
    pub fn forget_rls_domain(&self, domain: &str) {
        for code in RLS_CODES {
            let _ = self.rls_requests.remove_label_values(&[domain, code]);
        }
    }

    /// Counts one RLS request.
    pub fn rls_request(&self, domain: &str, code: &str) {
        self.rls_requests.with_label_values(&[domain, code]).inc();
    }

    /// Appends every family in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut buffer = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_ok()
        {
            out.push_str(&String::from_utf8_lossy(&buffer));
        }
    }
}
