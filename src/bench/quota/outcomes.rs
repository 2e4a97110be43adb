//! What the quota benchmark counts of each phase: latency histograms of the calls
//! answered, and the calls' outcomes.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::bail;
use hdrhistogram::Histogram;
use serde_json::json;

/// Latencies in microseconds.
pub(super) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

pub(super) fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

pub(super) fn percentiles_text(h: &Histogram<u64>) -> String {
    format!(
        "p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

/// Outcome counts of a phase.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) granted: AtomicU64,
    /// Of those granted, the ones no counter was charged for: no policy of the quota
    /// matched the request, or the one that did is unlimited.
    pub(super) uncounted: AtomicU64,
    pub(super) not_granted: AtomicU64,
    /// Answered NOT_FOUND: the server has no policy of that name.
    pub(super) unknown: AtomicU64,
    pub(super) errors: AtomicU64,
}

impl Counts {
    /// Counts a Check's outcome; true when it was answered (its latency counts).
    pub(super) fn record(
        &self,
        result: &Result<tonic::Response<meshtel_model::mixer::CheckResponse>, tonic::Status>,
    ) -> bool {
        let quotas = match result {
            Ok(r) => &r.get_ref().quotas,
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let counter = if quotas
            .values()
            .any(|q| q.status_code == tonic::Code::NotFound as i32)
        {
            &self.unknown
        } else if quotas.values().all(|q| q.granted_amount > 0) {
            if quotas.values().all(|q| q.key.is_empty()) {
                self.uncounted.fetch_add(1, Ordering::Relaxed);
            }
            &self.granted
        } else {
            &self.not_granted
        };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The reference call: an answer counts as granted.
    pub(super) fn record_empty<T>(&self, result: &Result<T, tonic::Status>) -> bool {
        let counter = if result.is_ok() {
            &self.granted
        } else {
            &self.errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result.is_ok()
    }

    /// Calls answered (latencies are of these only).
    pub(super) fn answered(&self) -> u64 {
        [&self.granted, &self.not_granted, &self.unknown]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Fails a phase in which nothing was answered, or the quota does not exist there.
    pub(super) fn check(&self, phase: &str, quota: &str) -> anyhow::Result<()> {
        let unknown = self.unknown.load(Ordering::Relaxed);
        if unknown > 0 {
            bail!(
                "{phase}: {unknown} Checks were answered NOT_FOUND: the server has no quota \
                 policy named {quota:?} (apply one, or name one with --quota)"
            );
        }
        if self.answered() == 0 {
            bail!(
                "{phase}: no call was answered ({} failed): nothing was measured",
                self.errors.load(Ordering::Relaxed)
            );
        }
        Ok(())
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "granted": self.granted.load(Ordering::Relaxed),
            "granted_uncounted": self.uncounted.load(Ordering::Relaxed),
            "not_granted": self.not_granted.load(Ordering::Relaxed),
            "unknown_quota": self.unknown.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
        })
    }

    pub(super) fn text(&self) -> String {
        let uncounted = match self.uncounted.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!(
                " ({n} uncounted: no policy of the quota matched the request, or it is \
                 unlimited; such Checks charge no counter)"
            ),
        };
        format!(
            "granted {}{uncounted}, not granted {}, unknown quota {}, errors {}",
            self.granted.load(Ordering::Relaxed),
            self.not_granted.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed)
        )
    }
}

/// A rate for a report line: whole from 10 a second, to two decimals below.
pub(super) fn rate_text(rate: f64) -> String {
    if rate >= 10.0 {
        format!("{rate:.0}")
    } else {
        format!("{}", (rate * 100.0).round() / 100.0)
    }
}

/// Checks due before `seconds` at `rate` a second: one at 0, then one every 1/rate
/// (a whole number of them is not rounded up by the product's last bit).
pub(super) fn due_before(seconds: f64, rate: f64) -> usize {
    let checks = seconds * rate;
    let whole = checks.floor();
    let due = if checks - whole > 1e-9 {
        whole + 1.0
    } else {
        whole
    };
    due as usize
}

#[cfg(test)]
mod tests {
    use meshtel_model::mixer::CheckResponse;
    use meshtel_model::mixer::check_response::QuotaResult;

    use super::*;

    #[test]
    fn grants_that_charged_no_counter_are_told_apart() {
        let answer = |granted: i64, key: &str| {
            let result = QuotaResult {
                granted_amount: granted,
                key: key.into(),
                ..Default::default()
            };
            let quotas = [("requestcount".to_string(), result)].into();
            Ok(tonic::Response::new(CheckResponse { quotas }))
        };
        let counts = Counts::default();
        assert!(counts.record(&answer(1, "ratings")));
        assert!(counts.record(&answer(1, "")));
        assert!(counts.record(&answer(0, "ratings")));
        let text = counts.text();
        assert!(text.starts_with("granted 2 (1 uncounted: no policy of the quota matched"), "{text}");
        assert!(text.contains("not granted 1,"), "{text}");
        assert_eq!(counts.json()["granted_uncounted"], 1);
        let counted = Counts::default();
        counted.record(&answer(1, "ratings"));
        assert!(counted.text().starts_with("granted 1, not granted 0"), "{}", counted.text());
    }

    #[test]
    fn checks_due_are_those_before_the_end() {
        assert_eq!(super::due_before(2.0, 0.5), 1);
        assert_eq!(super::due_before(3.0, 0.5), 2);
        assert_eq!(super::due_before(60.0, 10_000.0), 600_000);
        assert_eq!(super::due_before(5.0, 49.0), 245);
    }
}
