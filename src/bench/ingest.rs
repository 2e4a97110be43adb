//! `meshtel bench ingest`: OTLP/gRPC export load against any collector.
//!
//! ```text
//! templates (encoded once) ──► workers (connections × streams) ──► collector
//!       fresh ids + times ─┘        ▲ due times                   │ ack
//!                       schedule ───┘ (with --rate)               ▼
//!                                           counters ──► progress every 5 s, summary
//! ```
//!
//! Each worker sends one request at a time; `--connections` HTTP/2 connections carry
//! `--streams-per-connection` workers each. With `--rate` the run is open-loop: request
//! k is due at start + k / rate, whoever sends it, and a request sent late because every
//! worker was busy (a stalled collector) is still timed from when it was due, so the
//! summary's latency from schedule shows the stall instead of omitting the requests it
//! delayed; requests sent more than [`BEHIND`] late, and those due but never sent, are
//! counted. `UNAVAILABLE` (and `RESOURCE_EXHAUSTED` with a retry hint) is retried after
//! the server's hint, or a doubling backoff, and counted, for at most
//! [`MAX_RETRY_ELAPSED`] per request (as the OpenTelemetry exporters'
//! `max_elapsed_time`); other errors, and a request still refused then, are counted and
//! the request dropped; a run with nothing acknowledged for [`STALLED`] while requests
//! fail stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Args;
use rand::SeedableRng;
use rand::rngs::{SmallRng, StdRng};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::otlp_client::{ExportClient, code_name, retry_advice};

/// How long an export still unanswered when the run ends may take before it is given up.
const END_GRACE: Duration = Duration::from_secs(2);

/// How long one request is retried before it counts as an error: the OpenTelemetry
/// exporters' default `max_elapsed_time`. A server that keeps refusing then ends a
/// `--total-spans` run instead of holding it forever.
const MAX_RETRY_ELAPSED: Duration = Duration::from_secs(300);
use super::report::{Latencies, Out, counts_text, merge_counts, round3};
use super::shape::{Shape, ShapeGenerator};
use super::template::RequestTemplate;

/// `meshtel bench ingest` flags.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// OTLP/gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    pub endpoint: String,
    /// How long to send, e.g. 60s [default: 60s, or until --total-spans/--traces are
    /// sent when one of them is given]
    #[arg(long, value_parser = meshtel_model::duration::parse_config_duration)]
    pub duration: Option<Duration>,
    /// HTTP/2 connections to open.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 1)]
    pub streams_per_connection: usize,
    /// Spans in each export request (whole traces: rounded down to a multiple of
    /// --spans-per-trace).
    #[arg(long, default_value_t = 500)]
    pub spans_per_request: usize,
    /// Spans in each trace.
    #[arg(long, default_value_t = 10)]
    pub spans_per_trace: usize,
    /// Target rate in spans/s; without it, send as fast as the collector acknowledges.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many traces (sets --total-spans to N × --spans-per-trace).
    #[arg(long, conflicts_with = "total_spans")]
    pub traces: Option<u64>,
    /// Stop after this many spans have been sent.
    #[arg(long)]
    pub total_spans: Option<u64>,
    /// What the spans look like: "mesh" (HTTP services, 10–20 attributes) or "tempo"
    /// (11 attributes from 97 keys × 1000 values).
    #[arg(long, value_enum, default_value_t = Shape::Mesh)]
    pub shape: Shape,
    /// Seed of the span shapes (trace ids are random on every run).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Distinct requests generated up front and replayed with fresh trace ids.
    #[arg(long, default_value_t = 32)]
    pub templates: usize,
    /// Timeout of one export call.
    #[arg(long, default_value = "30s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub timeout: Duration,
    /// Compress requests with gzip.
    #[arg(long)]
    pub gzip: bool,
    /// Progress line interval.
    #[arg(long, default_value = "5s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub progress_interval: Duration,
    /// Print a JSON summary line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Counters shared by the workers, read by the progress reporter.
#[derive(Default)]
struct Progress {
    acked_spans: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
}

/// What one worker saw.
#[derive(Default)]
struct WorkerReport {
    latencies: Latencies,
    /// With `--rate`: from each request's due time to its answer, retries included.
    from_schedule: Latencies,
    /// With `--rate`: requests sent more than [`BEHIND`] after they were due.
    behind: u64,
    /// With `--rate`: requests sent (late or not).
    sent_on_schedule: u64,
    errors: BTreeMap<String, u64>,
    retries: BTreeMap<String, u64>,
    rejected_spans: u64,
    sent_spans: u64,
}

/// Which request a worker sends next, when the run is bounded by a span count.
struct Plan {
    full_requests: u64,
    tail: Option<RequestTemplate>,
    next: AtomicU64,
}

enum Claim<'a> {
    Pool(usize),
    Tail(&'a RequestTemplate),
    Done,
}

impl Plan {
    /// Requests in the plan, its tail included.
    fn requests(&self) -> u64 {
        self.full_requests + u64::from(self.tail.is_some())
    }

    fn claim(&self) -> Claim<'_> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n < self.full_requests {
            Claim::Pool(n as usize)
        } else if n == self.full_requests
            && let Some(tail) = &self.tail
        {
            Claim::Tail(tail)
        } else {
            Claim::Done
        }
    }
}

struct Shared {
    templates: Vec<RequestTemplate>,
    plan: Option<Plan>,
    schedule: Option<Schedule>,
    progress: Progress,
    args: IngestArgs,
}

/// Most spans in one request (the collector's default `max_spans_per_request`).
const MAX_SPANS_PER_REQUEST: usize = 100_000;
/// Most spans generated up front, all templates together.
const MAX_GENERATED_SPANS: usize = 2_000_000;

/// A run stops when nothing has been acknowledged for this long while requests failed
/// or were refused.
const STALLED: Duration = Duration::from_secs(30);

/// Returns once [`STALLED`] has passed with failures or refusals and no acknowledgement.
async fn acks_stall(progress: &Progress) {
    let counts = || {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (load(&progress.acked_spans), load(&progress.errors) + load(&progress.retries))
    };
    let (mut acked, mut failed_before) = counts();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (now_acked, failed) = counts();
        if now_acked != acked {
            (acked, failed_before, since) = (now_acked, failed, Instant::now());
        }
        // A slow collector that fails nothing is waited for.
        if since.elapsed() >= STALLED && failed > failed_before {
            return;
        }
    }
}

/// With `--rate`: when each request of the run is due.
struct Schedule {
    start: tokio::time::Instant,
    /// The run's end with `--duration`: requests due at or after it are not sent.
    end: Option<tokio::time::Instant>,
    interval_s: f64,
    next: AtomicU64,
}

/// A request sent this much after it was due counts as behind schedule.
const BEHIND: Duration = Duration::from_millis(10);

impl Schedule {
    /// When request `k` is due, after the start.
    fn offset(&self, k: u64) -> Option<Duration> {
        Duration::try_from_secs_f64(self.interval_s * k as f64).ok()
    }

    /// How many requests are due before `until` after the start: request k is, when
    /// its offset is below `until`, reckoned as [`Self::next_due`] reckons it.
    fn due_before(&self, until: Duration) -> u64 {
        let before = |k: u64| self.offset(k).is_some_and(|at| at < until);
        // The estimate, then corrected for the rounding of the division.
        let mut n = (until.as_secs_f64() / self.interval_s).ceil() as u64;
        while n > 0 && !before(n - 1) {
            n -= 1;
        }
        while before(n) {
            n += 1;
        }
        n
    }

    /// Claims the next request's slot and waits until it is due (at once when it is
    /// past); `None` when the run ends first.
    async fn next_due(&self, stop: &mut watch::Receiver<bool>) -> Option<tokio::time::Instant> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let due = self.start.checked_add(self.offset(k)?)?;
        if self.end.is_some_and(|end| due >= end) {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep_until(due) => Some(due),
            _ = stop.changed() => None,
        }
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs the ingest benchmark and prints its summary.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.streams_per_connection == 0 {
        bail!("--connections and --streams-per-connection must be at least 1");
    }
    if args.spans_per_trace == 0 {
        bail!("--spans-per-trace must be at least 1");
    }
    if !(args.spans_per_trace..=MAX_SPANS_PER_REQUEST).contains(&args.spans_per_request) {
        bail!(
            "--spans-per-request must be from --spans-per-trace ({}) to {MAX_SPANS_PER_REQUEST}: \
             a request holds whole traces",
            args.spans_per_trace
        );
    }
    let generated = args.templates.saturating_mul(args.spans_per_request);
    if args.templates == 0 || generated > MAX_GENERATED_SPANS {
        bail!(
            "--templates × --spans-per-request ({generated}) must be from 1 to \
             {MAX_GENERATED_SPANS}: every template is generated up front"
        );
    }
    if args.traces == Some(0) || args.total_spans == Some(0) {
        bail!("--traces and --total-spans must be at least 1");
    }
    if args.duration.is_some_and(|d| d.is_zero()) || args.timeout.is_zero() {
        bail!("--duration and --timeout must be positive");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of spans/s");
    }
    if args.rate.is_some_and(|r| args.spans_per_request as f64 / r > 3600.0) {
        bail!("--rate must be at least one request (--spans-per-request spans) an hour");
    }
    let traces_per_request = (args.spans_per_request / args.spans_per_trace).max(1);
    let spans_per_request = (traces_per_request * args.spans_per_trace) as u64;
    let total_spans = match (args.traces, args.total_spans) {
        (Some(traces), _) => Some(traces.saturating_mul(args.spans_per_trace as u64)),
        (None, total) => total,
    };
    let duration = match (args.duration, total_spans) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(60)),
    };

    // Generate and encode every request up front.
    let generation_started = Instant::now();
    let generator = ShapeGenerator::new(args.shape, args.spans_per_trace);
    let mut shape_rng = StdRng::seed_from_u64(args.seed);
    let base = now_unix_nano();
    let pool_size = match total_spans {
        Some(total) => (total.div_ceil(spans_per_request) as usize).clamp(1, args.templates.max(1)),
        None => args.templates.max(1),
    };
    let mut templates = Vec::with_capacity(pool_size);
    for _ in 0..pool_size {
        let request = generator.request(traces_per_request, base, &mut shape_rng);
        templates.push(RequestTemplate::new(&request, base)?);
    }
    let plan = match total_spans {
        None => None,
        Some(total) => {
            let full_requests = total / spans_per_request;
            let tail_traces = (total % spans_per_request).div_ceil(args.spans_per_trace as u64);
            let tail = if tail_traces > 0 {
                let request = generator.request(tail_traces as usize, base, &mut shape_rng);
                Some(RequestTemplate::new(&request, base)?)
            } else {
                None
            };
            Some(Plan {
                full_requests,
                tail,
                next: AtomicU64::new(0),
            })
        }
    };
    let request_bytes = templates.first().map_or(0, RequestTemplate::encoded_len);
    let out = Out::new(args.json);
    eprintln!(
        "ingest → {}, shape {}, {} spans/request ({} traces × {}), {} B/request, {} templates in {:.1}s; {} connections × {} streams{}{}{}",
        args.endpoint,
        args.shape.name(),
        spans_per_request,
        traces_per_request,
        args.spans_per_trace,
        request_bytes,
        templates.len(),
        generation_started.elapsed().as_secs_f64(),
        args.connections,
        args.streams_per_connection,
        args.rate.map(|r| format!(", target {r:.0} spans/s")).unwrap_or_default(),
        duration.map(|d| format!(", for {}", humantime::format_duration(d))).unwrap_or_default(),
        total_spans.map(|t| format!(", {t} spans in total")).unwrap_or_default(),
    );

    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        clients.push(ExportClient::connect(&args.endpoint, args.gzip).await?);
    }

    // The schedule's start and the deadline are one instant: a request due exactly at
    // the end is not sent.
    let start = tokio::time::Instant::now();
    let deadline = duration.map(|d| start + d);
    let shared = Arc::new(Shared {
        templates,
        plan,
        schedule: args.rate.map(|rate| Schedule {
            start,
            end: deadline,
            interval_s: spans_per_request as f64 / rate,
            next: AtomicU64::new(0),
        }),
        progress: Progress::default(),
        args: args.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        for _ in 0..args.streams_per_connection {
            workers.spawn(run_worker(shared.clone(), client.clone(), i, stop_rx.clone()));
        }
    }
    let reporter = tokio::spawn(report_progress(shared.clone(), started, total_spans, stop_rx.clone()));

    // Stop at the deadline or on Ctrl-C; workers also stop by themselves when the plan
    // runs out.
    // Or when the collector has acknowledged nothing for STALLED while requests fail or
    // are refused: a collector that is gone would keep the run retrying for minutes.
    let watched = shared.clone();
    let stopper = tokio::spawn(async move {
        let at_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut stalled = false;
        tokio::select! {
            _ = at_deadline => {}
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted; finishing requests in flight"),
            () = acks_stall(&watched.progress) => {
                eprintln!(
                    "the collector acknowledged nothing for {} s while requests failed or were \
                     refused; stopping",
                    STALLED.as_secs()
                );
                stalled = true;
            }
        }
        let _ = stop_tx.send(true);
        (stop_tx, stalled)
    });

    let mut total = WorkerReport::default();
    while let Some(joined) = workers.join_next().await {
        let report = joined.context("ingest worker failed")??;
        total.latencies.merge(&report.latencies);
        total.from_schedule.merge(&report.from_schedule);
        total.behind += report.behind;
        total.sent_on_schedule += report.sent_on_schedule;
        merge_counts(&mut total.errors, &report.errors);
        merge_counts(&mut total.retries, &report.retries);
        total.rejected_spans += report.rejected_spans;
        total.sent_spans += report.sent_spans;
    }
    let mut elapsed = started.elapsed();
    // Ended by itself (its plan done, or every request due before the deadline sent),
    // not by the deadline, Ctrl-C or a stall.
    let ended_by_itself = !stopper.is_finished();
    let stalled = if stopper.is_finished() {
        matches!(stopper.await, Ok((_, true)))
    } else {
        stopper.abort();
        false
    };
    reporter.abort();
    // A paced run that ended by itself lasts its schedule: its spans at the rate (n
    // whole requests take n intervals, the last one's included), whether its plan ran
    // out or --duration came, so that the same requests read the same either way.
    if let (Some(rate), true) = (args.rate, ended_by_itself) {
        let planned = Duration::try_from_secs_f64(total.sent_spans as f64 / rate);
        elapsed = elapsed.max(planned.unwrap_or_default());
    }

    let acked = shared.progress.acked_spans.load(Ordering::Relaxed);
    let requests = shared.progress.requests.load(Ordering::Relaxed);
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let error_total: u64 = total.errors.values().sum();
    let retry_total: u64 = total.retries.values().sum();
    out.line(format!(
        "ingest summary: {:.1} s, shape {}, {} connections × {} streams, {} spans/request",
        seconds,
        args.shape.name(),
        args.connections,
        args.streams_per_connection,
        spans_per_request
    ));
    out.line(format!("  acked spans     {acked}  ({:.0} spans/s)", acked as f64 / seconds));
    out.line(format!("  requests ok     {requests}  ({:.1} req/s)", requests as f64 / seconds));
    out.line(format!("  rejected spans  {} (partial success)", total.rejected_spans));
    out.line(format!("  errors          {error_total}: {}", counts_text(&total.errors)));
    out.line(format!("  retries         {retry_total}: {}", counts_text(&total.retries)));
    out.line(format!("  latency ms      {}", total.latencies.text()));
    // With --rate: the requests that came due before the run ended (its deadline, or
    // the plan's last request), of which some may never have been sent.
    let due = shared.schedule.as_ref().map(|schedule| {
        let until = duration.map_or(elapsed, |d| d.min(elapsed));
        let due = schedule.due_before(until).max(1);
        shared.plan.as_ref().map_or(due, |plan| due.min(plan.requests()))
    });
    let unsent = due.map_or(0, |due| due.saturating_sub(total.sent_on_schedule));
    if let Some(due) = due {
        if (total.behind + unsent) * 100 > due {
            tracing::warn!(
                late = total.behind,
                unsent,
                due,
                "the run fell behind its --rate: requests waited for a free worker (raise \
                 --connections or --streams-per-connection), or the collector answered slower \
                 than the rate needs"
            );
        }
        out.line(format!(
            "  from schedule   {} (ms from each request's due time; of {due} requests due, {} \
             sent over {} ms late, {unsent} not sent)",
            total.from_schedule.text(),
            total.behind,
            BEHIND.as_millis()
        ));
    }
    out.json(&json!({
        "bench": "ingest",
        "endpoint": args.endpoint,
        "shape": args.shape.name(),
        "connections": args.connections,
        "streams_per_connection": args.streams_per_connection,
        "spans_per_request": spans_per_request,
        "request_bytes": request_bytes,
        "target_spans_per_s": args.rate,
        "elapsed_s": round3(seconds),
        "sent_spans": total.sent_spans,
        "acked_spans": acked,
        "spans_per_s": round3(acked as f64 / seconds),
        "requests": requests,
        "requests_per_s": round3(requests as f64 / seconds),
        "rejected_spans": total.rejected_spans,
        "errors": total.errors,
        "retries": total.retries,
        "latency_ms": total.latencies.json(),
        "from_schedule_ms": shared.schedule.as_ref().map(|_| total.from_schedule.json()),
        "behind_schedule": due.map(|_| total.behind),
        "due": due,
        "unsent": due.map(|_| unsent),
    }));
    if stalled {
        anyhow::bail!(
            "stopped: the collector acknowledged nothing for {} s ({error_total} failed: {}; \
             {retry_total} refused and retried: {})",
            STALLED.as_secs(),
            counts_text(&total.errors),
            counts_text(&total.retries)
        );
    }
    // A run in which nothing was acknowledged measured nothing: a script must see it,
    // whether its refusals ended as errors or as retries the run's end cut short.
    if requests == 0 && error_total + retry_total > 0 {
        anyhow::bail!(
            "no request was acknowledged ({error_total} failed: {}; {retry_total} refused and retried: {})",
            counts_text(&total.errors),
            counts_text(&total.retries)
        );
    }
    Ok(())
}

async fn run_worker(
    shared: Arc<Shared>,
    mut client: ExportClient,
    index: usize,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<WorkerReport> {
    let mut report = WorkerReport::default();
    let mut id_rng = SmallRng::from_os_rng();
    let mut next_template = index;
    let timeout = shared.args.timeout;
    loop {
        if *stop.borrow() {
            break;
        }
        // The request first, then its time: a worker that finds the plan used up ends
        // at once, not after waiting for a slot no request will fill.
        let template = match &shared.plan {
            None => {
                next_template = (next_template + 1) % shared.templates.len();
                &shared.templates[next_template]
            }
            Some(plan) => match plan.claim() {
                Claim::Pool(n) => &shared.templates[n % shared.templates.len()],
                Claim::Tail(tail) => tail,
                Claim::Done => break,
            },
        };
        let due = match &shared.schedule {
            Some(schedule) => match schedule.next_due(&mut stop).await {
                Some(due) => Some(due),
                None => break,
            },
            None => None,
        };
        if let Some(due) = due {
            report.sent_on_schedule += 1;
            report.behind += u64::from(due.elapsed() > BEHIND);
        }
        let body = template.materialize(now_unix_nano(), &mut id_rng);
        let spans = template.spans();
        report.sent_spans += spans;

        let mut backoff = Duration::from_millis(50);
        let first_try = Instant::now();
        loop {
            let sent_at = Instant::now();
            // At the end of the run an export still waiting gets END_GRACE more, not
            // all of --timeout: a stalled collector does not stretch the run.
            let ended = async {
                if !*stop.borrow() {
                    let _ = stop.changed().await;
                }
                tokio::time::sleep(END_GRACE).await;
            };
            let exported = tokio::select! {
                exported = client.export(body.clone(), timeout) => exported,
                () = ended => Err(tonic::Status::cancelled("still unanswered when the run ended")),
            };
            match exported {
                Ok(response) => {
                    report.latencies.record(sent_at.elapsed());
                    if let Some(due) = due {
                        report.from_schedule.record(due.elapsed());
                    }
                    let rejected = response
                        .partial_success
                        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                    report.rejected_spans += rejected;
                    let progress = &shared.progress;
                    progress.acked_spans.fetch_add(spans.saturating_sub(rejected), Ordering::Relaxed);
                    progress.requests.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(status) => {
                    let (retry, hint) = retry_advice(&status);
                    let code = code_name(status.code());
                    if retry && !*stop.borrow() && first_try.elapsed() < MAX_RETRY_ELAPSED {
                        *report.retries.entry(code).or_default() += 1;
                        shared.progress.retries.fetch_add(1, Ordering::Relaxed);
                        let wait = hint.unwrap_or(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => continue,
                            // The run ended during the wait: this refusal is counted
                            // as a retry already, not as an error too.
                            _ = stop.changed() => break,
                        }
                    }
                    if report.errors.is_empty() {
                        tracing::warn!(code = %status.code(), error = status.message(), "export failed");
                    }
                    *report.errors.entry(code_name(status.code())).or_default() += 1;
                    shared.progress.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    Ok(report)
}

async fn report_progress(
    shared: Arc<Shared>,
    started: Instant,
    total_spans: Option<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let period = shared.args.progress_interval.max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_acked = 0u64;
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let p = &shared.progress;
        let acked = p.acked_spans.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (acked - last_acked) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-9);
        let done = total_spans
            .map(|t| format!(" ({:.1}%)", 100.0 * acked as f64 / t.max(1) as f64))
            .unwrap_or_default();
        eprintln!(
            "[{:>5.0}s] acked {acked} spans{done}, {rate:.0} spans/s, {} requests, {} errors, {} retries",
            started.elapsed().as_secs_f64(),
            p.requests.load(Ordering::Relaxed),
            p.errors.load(Ordering::Relaxed),
            p.retries.load(Ordering::Relaxed),
        );
        last_acked = acked;
        last_at = now;
    }
}
