//! The Istio request series: a cache from label sets to plain counters (guarded by the
//! registry's one mutex, so no atomics per observation), and their Prometheus text.
//!
//! We render these families ourselves rather than through `prometheus::*Vec`: that
//! crate sorts label names alphabetically, and Istio's exposition keeps its own order
//! ([`super::ISTIO_LABELS`]); rendering straight from the cache also avoids building
//! protobuf families of 25 owned labels per series at every scrape.

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{Hash, Hasher};

use meshtel_model::graph::{ISTIO_BUCKETS, LATENCY_SLOTS};

use super::ISTIO_LABELS;

/// A histogram on Istio's bounds: per-bucket counts (not cumulative) and the sum.
#[derive(Debug, Clone, Default)]
pub(super) struct Hist {
    counts: [u64; LATENCY_SLOTS],
    sum: f64,
}

impl Hist {
    fn observe(&mut self, value: f64) {
        let slot = ISTIO_BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(ISTIO_BUCKETS.len());
        if let Some(count) = self.counts.get_mut(slot) {
            *count += 1;
        }
        self.sum += value;
    }
}

/// Picks one of a series' histograms.
type HistOf = fn(&Series) -> &Hist;

/// One label set of the four request metrics.
struct Series {
    labels: Box<[Box<str>]>,
    requests: u64,
    duration_ms: Hist,
    request_bytes: Hist,
    response_bytes: Hist,
}

/// Label-set hash → indexes into `series`; collisions resolved by comparing labels.
#[derive(Default)]
pub(super) struct SeriesCache {
    by_hash: HashMap<u64, Vec<usize>>,
    series: Vec<Series>,
}

/// What one observation did.
pub(super) enum Observed {
    Counted,
    Overflow,
}

impl SeriesCache {
    pub(super) fn len(&self) -> usize {
        self.series.len()
    }

    /// Counts one request under `labels`, creating its series unless `max_series`
    /// are already there.
    pub(super) fn observe(
        &mut self,
        labels: &[&str; 25],
        max_series: usize,
        duration_ms: f64,
        request_bytes: f64,
        response_bytes: f64,
    ) -> Observed {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        labels.hash(&mut hasher);
        let hash = hasher.finish();
        let series = &self.series;
        let found = self.by_hash.get(&hash).and_then(|candidates| {
            candidates.iter().copied().find(|&i| {
                series
                    .get(i)
                    .is_some_and(|s| s.labels.iter().map(|l| &**l).eq(labels.iter().copied()))
            })
        });
        let index = match found {
            Some(index) => index,
            None if self.series.len() >= max_series => return Observed::Overflow,
            None => {
                let index = self.series.len();
                self.series.push(Series {
                    labels: labels.iter().map(|l| Box::<str>::from(*l)).collect(),
                    requests: 0,
                    duration_ms: Hist::default(),
                    request_bytes: Hist::default(),
                    response_bytes: Hist::default(),
                });
                self.by_hash.entry(hash).or_default().push(index);
                index
            }
        };
        match self.series.get_mut(index) {
            Some(series) => {
                series.requests += 1;
                series.duration_ms.observe(duration_ms);
                series.request_bytes.observe(request_bytes);
                series.response_bytes.observe(response_bytes);
                Observed::Counted
            }
            None => Observed::Overflow,
        }
    }

    /// Appends the four families in the Prometheus text format (0.0.4).
    pub(super) fn render(&self, out: &mut String) {
        let counter = "istio_requests_total";
        let _ = writeln!(
            out,
            "# HELP {counter} Requests, as reported by the mesh proxies."
        );
        let _ = writeln!(out, "# TYPE {counter} counter");
        let mut labels = String::new();
        for series in &self.series {
            labels.clear();
            write_labels(&mut labels, &series.labels);
            let _ = writeln!(out, "{counter}{{{labels}}} {}", series.requests);
        }
        let histograms: [(&str, &str, HistOf); 3] = [
            (
                "istio_request_duration_milliseconds",
                "Request durations in milliseconds, first request byte to last response byte.",
                |s| &s.duration_ms,
            ),
            (
                "istio_request_bytes",
                "Request sizes (headers and body) in bytes.",
                |s| &s.request_bytes,
            ),
            (
                "istio_response_bytes",
                "Response sizes (headers and body) in bytes.",
                |s| &s.response_bytes,
            ),
        ];
        for (name, help, hist_of) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for series in &self.series {
                labels.clear();
                write_labels(&mut labels, &series.labels);
                let hist = hist_of(series);
                let mut cumulative = 0u64;
                for (bound, count) in ISTIO_BUCKETS.iter().zip(hist.counts) {
                    cumulative += count;
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let total: u64 = hist.counts.iter().sum();
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", hist.sum);
                let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
            }
        }
    }
}

/// `name="value",...` in Istio order, values escaped as the text format requires.
fn write_labels(out: &mut String, values: &[Box<str>]) {
    for (i, (name, value)) in ISTIO_LABELS.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
}
