//! The Istio request series: a cache from label sets to plain counters (guarded by the
//! registry's one mutex, so no atomics per observation), and their Prometheus text.
//!
//! We render these families ourselves rather than through `prometheus::*Vec`: that
//! crate sorts label names alphabetically, and Istio's exposition keeps its own order
//! ([`super::ISTIO_LABELS`]); rendering straight from the cache also avoids building
//! protobuf families of 25 owned labels per series at every scrape.
//!
//! A scrape holds the mutex only to copy the counters out ([`SeriesCache::snapshot`]:
//! about 0.5 KB per series, each series' label text shared, escaped once when the
//! series was created), then formats without it: the Report stream never waits for
//! the text of thousands of series to be written.
//!
//! Series idle for longer than the expiry are removed by [`SeriesCache::expire_idle`]
//! (at most once per [`sweep_interval`]): a scan of the series' last-update instants,
//! then a `swap_remove` and two index fix-ups per removed series (no rehashing); the
//! removed series are freed after the lock is released. Observing costs the same as
//! without expiry (one `Instant` stored per observation, taken once per batch).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshtel_model::graph::{ISTIO_BUCKETS, LATENCY_SLOTS};

use super::ISTIO_LABELS;

/// A histogram on Istio's bounds: per-bucket counts (not cumulative) and the sum.
#[derive(Debug, Clone, Copy, Default)]
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
type HistOf = fn(&Counts) -> &Hist;

/// The counters of one label set of the four request metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    requests: u64,
    duration_ms: Hist,
    request_bytes: Hist,
    response_bytes: Hist,
}

/// One label set of the four request metrics.
struct Series {
    /// The hash of `labels`: its key in [`SeriesCache::by_hash`].
    hash: u64,
    /// When a request was last counted in it.
    last_update: Instant,
    /// The values, compared when a hash matches.
    labels: Box<[Box<str>]>,
    /// `name="value",...` in Istio order, escaped: written as is at every scrape.
    text: Arc<str>,
    counts: Counts,
}

/// The series of a scrape, copied out under the lock.
pub(super) type Snapshot = Vec<(Arc<str>, Counts)>;

/// Label-set hash → indexes into `series`; collisions resolved by comparing labels.
pub(super) struct SeriesCache {
    by_hash: HashMap<u64, Vec<usize>>,
    series: Vec<Series>,
    /// Series without a request for this long are removed; `None`: never.
    expiry: Option<Duration>,
    /// When [`Self::expire_idle`] next looks at the series; `None`: at its next call.
    next_sweep: Option<Instant>,
}

/// How often, at most, the series are scanned for idle ones: a tenth of the expiry,
/// and at least once a minute, so a series goes at most that much after its expiry.
pub(super) fn sweep_interval(expiry: Duration) -> Duration {
    (expiry / 10).min(Duration::from_secs(60))
}

/// The series a sweep removed, to drop once the lock is released.
pub(super) struct Expired(Vec<Series>);

impl Expired {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// What one observation did.
pub(super) enum Observed {
    Counted,
    Overflow,
}

impl SeriesCache {
    /// An empty cache whose series expire after `expiry` without a request
    /// (`Duration::ZERO`: never).
    pub(super) fn new(expiry: Duration) -> SeriesCache {
        SeriesCache {
            by_hash: HashMap::new(),
            series: Vec::new(),
            expiry: (!expiry.is_zero()).then_some(expiry),
            next_sweep: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.series.len()
    }

    /// Counts one request at `now` under `labels`, creating its series unless
    /// `max_series` are already there.
    pub(super) fn observe(
        &mut self,
        labels: &[&str; 25],
        max_series: usize,
        now: Instant,
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
                let mut text = String::new();
                write_labels(&mut text, labels);
                self.series.push(Series {
                    hash,
                    last_update: now,
                    labels: labels.iter().map(|l| Box::<str>::from(*l)).collect(),
                    text: text.into(),
                    counts: Counts::default(),
                });
                self.by_hash.entry(hash).or_default().push(index);
                index
            }
        };
        match self.series.get_mut(index) {
            Some(series) => {
                series.last_update = now;
                let counts = &mut series.counts;
                counts.requests += 1;
                counts.duration_ms.observe(duration_ms);
                counts.request_bytes.observe(request_bytes);
                counts.response_bytes.observe(response_bytes);
                Observed::Counted
            }
            None => Observed::Overflow,
        }
    }

    /// Removes the series without a request for the expiry, when a sweep is due at
    /// `now` (at most once per [`sweep_interval`]). A removed label set seen again
    /// starts from 0. Drop the answer once the lock is released: freeing the labels
    /// of thousands of series is most of a sweep's cost.
    pub(super) fn expire_idle(&mut self, now: Instant) -> Expired {
        let mut expired = Expired(Vec::new());
        let Some(expiry) = self.expiry else {
            return expired;
        };
        if self.next_sweep.is_some_and(|next| now < next) {
            return expired;
        }
        self.next_sweep = now.checked_add(sweep_interval(expiry));
        let mut index = 0;
        while let Some(series) = self.series.get(index) {
            if now.saturating_duration_since(series.last_update) >= expiry {
                // The last series moves to `index`: look at it next.
                expired.0.extend(self.remove(index));
            } else {
                index += 1;
            }
        }
        expired
    }

    /// Removes the series at `index`, moving the last one into its place and fixing
    /// both index entries.
    fn remove(&mut self, index: usize) -> Option<Series> {
        if index >= self.series.len() {
            return None;
        }
        let last = self.series.len() - 1;
        let removed = self.series.swap_remove(index);
        if let Some(slots) = self.by_hash.get_mut(&removed.hash) {
            slots.retain(|&slot| slot != index);
            if slots.is_empty() {
                self.by_hash.remove(&removed.hash);
            }
        }
        if index == last {
            return Some(removed);
        }
        let moved = self.series.get(index).map(|series| series.hash);
        if let Some(slots) = moved.and_then(|hash| self.by_hash.get_mut(&hash)) {
            for slot in slots.iter_mut().filter(|slot| **slot == last) {
                *slot = index;
            }
        }
        Some(removed)
    }

    /// Every series' label text (shared) and counters, for [`write_text`] to format
    /// once the lock is released.
    pub(super) fn snapshot(&self) -> Snapshot {
        self.series
            .iter()
            .map(|series| (series.text.clone(), series.counts))
            .collect()
    }
}

/// Text written before it is handed to the writer (a socket, gzip).
const CHUNK: usize = 64 * 1024;

/// Writes the four families of `snapshot` in the Prometheus text format (0.0.4).
pub(super) fn write_text(snapshot: &Snapshot, out: &mut dyn io::Write) -> io::Result<()> {
    let mut buf = String::with_capacity(2 * CHUNK);
    let mut flush = |buf: &mut String, at_least: usize| -> io::Result<()> {
        if buf.len() >= at_least {
            out.write_all(buf.as_bytes())?;
            buf.clear();
        }
        Ok(())
    };
    let counter = "istio_requests_total";
    let _ = writeln!(
        buf,
        "# HELP {counter} Requests, as reported by the mesh proxies."
    );
    let _ = writeln!(buf, "# TYPE {counter} counter");
    for (labels, counts) in snapshot {
        let _ = writeln!(buf, "{counter}{{{labels}}} {}", counts.requests);
        flush(&mut buf, CHUNK)?;
    }
    let histograms: [(&str, &str, HistOf); 3] = [
        (
            "istio_request_duration_milliseconds",
            "Request durations in milliseconds, first request byte to last response byte.",
            |c| &c.duration_ms,
        ),
        (
            "istio_request_bytes",
            "Request sizes (headers and body) in bytes.",
            |c| &c.request_bytes,
        ),
        (
            "istio_response_bytes",
            "Response sizes (headers and body) in bytes.",
            |c| &c.response_bytes,
        ),
    ];
    for (name, help, hist_of) in histograms {
        let _ = writeln!(buf, "# HELP {name} {help}");
        let _ = writeln!(buf, "# TYPE {name} histogram");
        for (labels, counts) in snapshot {
            let hist = hist_of(counts);
            let mut cumulative = 0u64;
            for (bound, count) in ISTIO_BUCKETS.iter().zip(hist.counts) {
                cumulative += count;
                let _ = writeln!(buf, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let total: u64 = hist.counts.iter().sum();
            let _ = writeln!(buf, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
            let _ = writeln!(buf, "{name}_sum{{{labels}}} {}", hist.sum);
            let _ = writeln!(buf, "{name}_count{{{labels}}} {total}");
            flush(&mut buf, CHUNK)?;
        }
    }
    flush(&mut buf, 0)
}

/// `name="value",...` in Istio order, values escaped as the text format requires.
fn write_labels(out: &mut String, values: &[&str; 25]) {
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
