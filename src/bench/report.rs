//! Latency histograms and the way the benchmarks print them.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Request latencies in microseconds, 1 µs to 1 hour, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("low = 1, high ≥ 2 × low and 3 significant figures are valid bounds");
        Latencies { histogram }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(micros);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        for value in other.histogram.iter_recorded() {
            self.histogram
                .saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.max() as f64 / 1000.0
    }

    /// `p50 1.23  p95 …  p99 …  max …` in milliseconds.
    pub fn text(&self) -> String {
        format!(
            "p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            self.quantile_ms(0.50),
            self.quantile_ms(0.95),
            self.quantile_ms(0.99),
            self.max_ms()
        )
    }

    /// `{"p50": …, "p95": …, "p99": …, "max": …}` in milliseconds.
    pub fn json(&self) -> Value {
        json!({
            "count": self.count(),
            "p50": round3(self.quantile_ms(0.50)),
            "p95": round3(self.quantile_ms(0.95)),
            "p99": round3(self.quantile_ms(0.99)),
            "max": round3(self.max_ms()),
        })
    }
}

/// Rounds to 3 decimals for reports.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `UNAVAILABLE=3 DEADLINE_EXCEEDED=1`, or `none`.
pub fn counts_text(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_string();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Adds `other` into `into`.
pub fn merge_counts(into: &mut BTreeMap<String, u64>, other: &BTreeMap<String, u64>) {
    for (k, v) in other {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Where a benchmark writes its human-readable summary: stdout normally, stderr when
/// stdout carries the `--json` line.
pub struct Out {
    json: bool,
}

impl Out {
    /// Output for a run with or without `--json`.
    pub fn new(json: bool) -> Self {
        Out { json }
    }

    /// Prints one line of the human-readable summary.
    pub fn line(&self, text: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", text.as_ref());
        } else {
            println!("{}", text.as_ref());
        }
    }

    /// Prints the JSON summary line (only with `--json`).
    pub fn json(&self, value: &Value) {
        if self.json {
            println!("{value}");
        }
    }
}

/// Set once Ctrl-C (SIGINT) arrives, so that a run ends early and still prints what it
/// measured; the task watching for it is aborted when the handle is dropped.
pub struct Interrupt {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Interrupt {
    /// Starts watching; `what` ends the message printed when Ctrl-C arrives.
    pub fn watch(what: &'static str) -> Interrupt {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let set = flag.clone();
        // Listening from now on, not from the task's first poll: a run whose thread is
        // busy measuring is not killed by a Ctrl-C that comes first.
        let mut signal =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        let watcher = tokio::spawn(async move {
            let arrived = match signal.as_mut() {
                Some(signal) => signal.recv().await.is_some(),
                None => tokio::signal::ctrl_c().await.is_ok(),
            };
            if arrived {
                eprintln!("interrupted; {what}");
                set.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Interrupt { flag, watcher }
    }

    /// Whether Ctrl-C has arrived.
    pub fn arrived(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The flag Ctrl-C sets, for a thread of its own to look at.
    pub fn flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.flag.clone()
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
