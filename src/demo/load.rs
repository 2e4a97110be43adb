//! The load generator: page loads of productpage through its inbound proxy (the
//! demo's ingress), as a steady mix plus periodic bursts.
//!
//! ```text
//!  Poisson arrivals at --rate ─┐   20 % as end-user: jason
//!  every 5 s: --burst at once ─┼─► GET /productpage (JSON) ──► productpage's proxy
//!                              │   at most MAX_IN_FLIGHT at a time (else skipped)
//!                              └─► TrafficStats: status classes, latency, what the
//!                                  page showed (reviews version, stars, errors)
//! ```
//!
//! Arrivals are exponentially spaced, as independent users are, so calls overlap now
//! and then; the bursts (a crawler, or the lab's `fortio load -c 3`) are what trips the
//! circuit-breaker scenario.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::apps::Page;

/// Page loads in flight at most; arrivals beyond are skipped and counted.
pub const MAX_IN_FLIGHT: usize = 256;
/// Time between bursts.
pub const BURST_EVERY: Duration = Duration::from_secs(5);
/// Longest wait for one page.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the generator sends.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// productpage's inbound listener.
    pub target: SocketAddr,
    /// Page loads per second on average (0: none).
    pub rate: f64,
    /// Share of page loads made as `end-user: jason`, in percent.
    pub jason_percent: f64,
    /// Page loads sent at once every [`BURST_EVERY`] (0: none).
    pub burst: usize,
}

/// Counts of page loads and what the pages showed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Page loads sent.
    pub pages: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 4xx.
    pub client_errors: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// No answer (connection failure, timeout).
    pub failed: u64,
    /// Not sent: too many in flight.
    pub skipped: u64,
    /// Pages without details.
    pub details_unavailable: u64,
    /// Pages without reviews.
    pub reviews_unavailable: u64,
    /// Pages whose reviews could not show stars.
    pub ratings_unavailable: u64,
    /// User (`jason` or `anonymous`) → reviews version → pages.
    pub reviews: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Counts {
    fn add_page(&mut self, user: &str, page: &Page) {
        if page.details.is_none() {
            self.details_unavailable += 1;
        }
        if page.reviews.is_none() {
            self.reviews_unavailable += 1;
        }
        if page.ratings.as_deref() == Some("unavailable") {
            self.ratings_unavailable += 1;
        }
        let version = page
            .reviews_version
            .clone()
            .unwrap_or_else(|| "unavailable".to_owned());
        *self
            .reviews
            .entry(user.to_owned())
            .or_default()
            .entry(version)
            .or_default() += 1;
    }
}

/// Counts and latencies since the start, and since the last [`TrafficStats::take_interval`].
#[derive(Debug)]
pub struct TrafficStats {
    settings: LoadSettings,
    inner: Mutex<Windows>,
}

#[derive(Debug)]
struct Windows {
    total: Counts,
    total_latency: Option<Histogram<u64>>,
    interval: Counts,
    interval_latency: Option<Histogram<u64>>,
    interval_started: Instant,
}

/// A summary for the API and the periodic log line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSummary {
    /// Configured page loads per second.
    pub rate: f64,
    /// Configured share of jason, percent.
    pub jason_percent: f64,
    /// Configured burst size.
    pub burst: usize,
    /// Seconds covered.
    pub seconds: f64,
    /// The counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Median page latency, ms.
    pub p50_ms: Option<u64>,
    /// 99th percentile page latency, ms.
    pub p99_ms: Option<u64>,
}

fn new_histogram() -> Option<Histogram<u64>> {
    // 1 ms .. 1 h, 2 significant digits.
    Histogram::new_with_bounds(1, 3_600_000, 2).ok()
}

impl TrafficStats {
    /// Empty stats for a generator with `settings`.
    pub fn new(settings: LoadSettings) -> TrafficStats {
        TrafficStats {
            settings,
            inner: Mutex::new(Windows {
                total: Counts::default(),
                total_latency: new_histogram(),
                interval: Counts::default(),
                interval_latency: new_histogram(),
                interval_started: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Windows> {
        // A panic while counting leaves counts that are still counts.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, f: impl Fn(&mut Counts)) {
        let mut windows = self.lock();
        f(&mut windows.total);
        f(&mut windows.interval);
    }

    fn record_latency(&self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut windows = self.lock();
        let windows = &mut *windows;
        for histogram in [&mut windows.total_latency, &mut windows.interval_latency]
            .into_iter()
            .flatten()
        {
            histogram.saturating_record(ms);
        }
    }

    fn summary(
        &self,
        counts: &Counts,
        latency: Option<&Histogram<u64>>,
        seconds: f64,
    ) -> TrafficSummary {
        let quantile = |q: f64| {
            latency
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q))
        };
        TrafficSummary {
            rate: self.settings.rate,
            jason_percent: self.settings.jason_percent,
            burst: self.settings.burst,
            seconds,
            counts: counts.clone(),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        }
    }

    /// Everything since the start.
    pub fn total(&self, started: Instant) -> TrafficSummary {
        let windows = self.lock();
        self.summary(
            &windows.total,
            windows.total_latency.as_ref(),
            started.elapsed().as_secs_f64(),
        )
    }

    /// Everything since the previous call, and starts a new interval.
    pub fn take_interval(&self) -> TrafficSummary {
        let mut windows = self.lock();
        let seconds = windows.interval_started.elapsed().as_secs_f64();
        let summary = self.summary(
            &windows.interval,
            windows.interval_latency.as_ref(),
            seconds,
        );
        windows.interval = Counts::default();
        if let Some(histogram) = windows.interval_latency.as_mut() {
            histogram.reset();
        }
        windows.interval_started = Instant::now();
        summary
    }
}

/// A running generator.
pub struct LoadGenerator {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LoadGenerator {
    /// Starts sending; counts go to `stats`.
    pub fn start(stats: Arc<TrafficStats>, client: reqwest::Client) -> LoadGenerator {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(drive(stats, client, stopped));
        LoadGenerator { stop, task }
    }

    /// Stops sending and abandons the page loads in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the load generator ended abnormally");
        }
    }
}

/// The gap to the next arrival of a Poisson process with `rate` per second.
fn next_gap(rate: f64) -> Duration {
    let uniform: f64 = rand::rng().random_range(f64::EPSILON..1.0);
    Duration::from_secs_f64((-uniform.ln() / rate).min(60.0))
}

async fn drive(
    stats: Arc<TrafficStats>,
    client: reqwest::Client,
    mut stopped: watch::Receiver<bool>,
) {
    let settings = stats.settings.clone();
    let url = format!("http://{}/productpage", settings.target);
    let steady = settings.rate > 0.0 && settings.rate.is_finite();
    let mut next = tokio::time::Instant::now();
    let mut bursts = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        BURST_EVERY,
    );
    bursts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    let send = |in_flight: &mut JoinSet<()>| {
        if in_flight.len() >= MAX_IN_FLIGHT {
            stats.update(|c| c.skipped += 1);
            return;
        }
        let jason = rand::rng().random_bool((settings.jason_percent / 100.0).clamp(0.0, 1.0));
        in_flight.spawn(load_page(stats.clone(), client.clone(), url.clone(), jason));
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next), if steady => {
                send(&mut in_flight);
                let now = tokio::time::Instant::now();
                next += next_gap(settings.rate);
                // After a stall (a suspended laptop), do not catch up in one rush.
                if next + Duration::from_secs(1) < now {
                    next = now;
                }
            }
            _ = bursts.tick(), if settings.burst > 0 => {
                for _ in 0..settings.burst {
                    send(&mut in_flight);
                }
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
}

/// Loads one page and counts it once it has an outcome (a page still loading when the
/// load stops is not counted), so that a summary's pages add up to its outcomes.
async fn load_page(stats: Arc<TrafficStats>, client: reqwest::Client, url: String, jason: bool) {
    let mut request = client
        .get(&url)
        .header("accept", "application/json")
        .header("user-agent", "meshtel-demo-load")
        .timeout(PAGE_TIMEOUT);
    if jason {
        request = request.header("end-user", "jason");
    }
    let started = Instant::now();
    let response = match request.send().await {
        Ok(response) => response,
        Err(_) => {
            stats.update(|c| {
                c.pages += 1;
                c.failed += 1;
            });
            return;
        }
    };
    let status = response.status().as_u16();
    let body = response.bytes().await;
    stats.record_latency(started.elapsed());
    let user = if jason { "jason" } else { "anonymous" };
    let page = match (status, &body) {
        (200..=299, Ok(body)) => serde_json::from_slice::<Page>(body).ok(),
        _ => None,
    };
    stats.update(|c| {
        c.pages += 1;
        match (status, &body) {
            (200..=299, Ok(_)) => {
                c.ok += 1;
                if let Some(page) = &page {
                    c.add_page(user, page);
                }
            }
            (400..=499, _) => c.client_errors += 1,
            (500..=599, _) => c.server_errors += 1,
            (_, Err(_)) => c.failed += 1,
            _ => c.ok += 1,
        }
    });
}

impl TrafficSummary {
    /// One line for the log: counts, latency, what the pages showed.
    pub fn line(&self) -> String {
        let c = &self.counts;
        let versions = |user: &str| {
            c.reviews
                .get(user)
                .map(|by| {
                    by.iter()
                        .map(|(v, n)| format!("{v} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "-".to_owned())
        };
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        format!(
            "{} pages in {:.0}s ({:.1}/s): {} ok, {} 4xx, {} 5xx, {} failed{}; p50 {}, p99 {} | reviews for anonymous: {} | for jason: {} | \
             details unavailable {}, reviews unavailable {}, ratings unavailable {}",
            c.pages,
            self.seconds,
            c.pages as f64 / self.seconds.max(0.001),
            c.ok,
            c.client_errors,
            c.server_errors,
            c.failed,
            if c.skipped > 0 {
                format!(", {} skipped", c.skipped)
            } else {
                String::new()
            },
            ms(self.p50_ms),
            ms(self.p99_ms),
            versions("anonymous"),
            versions("jason"),
            c.details_unavailable,
            c.reviews_unavailable,
            c.ratings_unavailable,
        )
    }
}
