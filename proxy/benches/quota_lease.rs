//! Quota leasing against the real collector quota engine over gRPC on loopback.
//!
//! `cargo bench -p meshtel-proxy --bench quota_lease` (`BENCH_SECONDS`, default 60,
//! is the length of the 1 req/s run; the other runs take a few seconds each). Prints:
//!
//! 1. local decisions: fraction answered from the lease at full speed (target ≥ 95 %)
//!    and the latency of those decisions, p50/p99/p999 (target p99 ≤ 2 µs); also the
//!    cost of the stage when policies exist but none matches, and with no policy;
//! 2. over-admission: three proxies sharing one 1,000/s quota as fast as they can,
//!    grants per 1 s window above the limit (target ≤ 1 % of the limit);
//! 3. a 1 req/s quota driven at 20 req/s for `BENCH_SECONDS`: grants with prefetch off
//!    (target `BENCH_SECONDS` ± 1) and on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use http::HeaderMap;
use meshtel_collector::mesh_metrics::MeshMetrics;
use meshtel_collector::report::reports_with_system_clock;
use meshtel_collector::{QuotaConfig, QuotaEngine, ReportConfig, mixer_grpc_service};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_proxy::mesh::WorkloadIdentity;
use meshtel_proxy::quota::{DecisionResult, QuotaEnforcer, QuotaSettings, QuotaStats, RequestView};
use tokio::sync::watch;
use tonic::transport::Endpoint;

const POLICIES: &str = r#"[
    {"name": "bench-hot", "match": {"pathPrefix": "/hot"}, "maxAmount": 200000, "validDuration": "1s"},
    {"name": "bench-shared", "match": {"pathPrefix": "/shared"}, "maxAmount": 1000, "validDuration": "1s"},
    {"name": "bench-one-off", "match": {"pathPrefix": "/one-off"}, "maxAmount": 1, "validDuration": "1s"},
    {"name": "bench-one-on", "match": {"pathPrefix": "/one-on"}, "maxAmount": 1, "validDuration": "1s"}
]"#;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let (addr, _engine) = start_collector().await;
    let (_stop, stopped) = watch::channel(false);
    println!("quota_lease: collector engine on {addr}, 2 worker threads");

    local_decisions(addr, &stopped).await;
    over_admission(addr, &stopped).await;
    one_per_second(addr, &stopped, seconds).await;
}

async fn start_collector() -> (SocketAddr, Arc<QuotaEngine>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let engine = Arc::new(QuotaEngine::with_system_clock(QuotaConfig::default()).expect("engine"));
    let specs: Vec<QuotaPolicySpec> = serde_json::from_str(POLICIES).expect("policies");
    engine.set_policies(1, specs);
    let reports = reports_with_system_clock(MeshMetrics::new(&Default::default()).expect("metrics"), None, ReportConfig::default());
    let service = mixer_grpc_service(reports, Some(engine.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("collector");
    });
    (addr, engine)
}

/// A proxy's quota stage, with policies from the collector's WatchQuotas stream.
async fn enforcer(addr: SocketAddr, name: &str, prefetch: bool, stopped: &watch::Receiver<bool>) -> QuotaEnforcer {
    let identity = WorkloadIdentity { name: format!("{name}-v1"), namespace: "default".into(), app: name.into(), version: "v1".into() };
    let service = meshtel_proxy::forward::service_names(name, "default");
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint").tcp_nodelay(true);
    let settings = QuotaSettings { prefetch, ..QuotaSettings::default() };
    let stats = QuotaStats::register(&prometheus::Registry::new()).expect("stats");
    let enforcer = QuotaEnforcer::new(settings, &identity, &service, &endpoint, name, stats);
    tokio::spawn(enforcer.watcher(endpoint, name.to_owned()).run(stopped.clone()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while enforcer.policies().policies.len() < 4 {
        assert!(Instant::now() < deadline, "policies never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    enforcer
}

fn caller() -> WorkloadIdentity {
    WorkloadIdentity { name: "productpage-v1".into(), namespace: "default".into(), app: "productpage".into(), version: "v1".into() }
}

async fn decide(enforcer: &QuotaEnforcer, source: &WorkloadIdentity, headers: &HeaderMap, path: &str) -> bool {
    enforcer.check_inbound(RequestView { source, method: "GET", path, headers }).await.is_none()
}

fn local_count(stats: &QuotaStats) -> u64 {
    stats.decisions(DecisionResult::GrantedLocal) + stats.decisions(DecisionResult::DeniedLocal)
}

fn total_count(stats: &QuotaStats) -> u64 {
    local_count(stats)
        + [DecisionResult::GrantedRemote, DecisionResult::DeniedRemote, DecisionResult::FailOpen, DecisionResult::FailClosed]
            .into_iter()
            .map(|r| stats.decisions(r))
            .sum::<u64>()
}

/// Check calls by code and fail-open decisions, for the figures' footnotes.
fn calls(stats: &QuotaStats) -> String {
    let codes: Vec<String> = ["Ok", "DeadlineExceeded", "Unavailable", "Cancelled", "Unknown", "Internal"]
        .into_iter()
        .map(|code| (code, stats.check_rpcs.with_label_values(&[code]).get()))
        .filter(|(_, n)| *n > 0)
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    format!("Check calls [{}], fail-open {}", codes.join(", "), stats.decisions(DecisionResult::FailOpen))
}

fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

async fn local_decisions(addr: SocketAddr, stopped: &watch::Receiver<bool>) {
    let proxy = enforcer(addr, "hot", true, stopped).await;
    let (source, headers) = (caller(), HeaderMap::new());
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut unmatched = local.clone();
    let (mut granted, mut decisions) = (0u64, 0u64);
    let stats = proxy.stats().clone();
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    while started.elapsed() < run_for {
        for _ in 0..1000 {
            let before_local = local_count(&stats);
            let t = Instant::now();
            granted += u64::from(decide(&proxy, &source, &headers, "/hot").await);
            let took = t.elapsed().as_nanos() as u64;
            if local_count(&stats) > before_local {
                local.record(took.max(1)).expect("record");
            }
            decisions += 1;
        }
        tokio::task::yield_now().await;
    }
    let fraction = local_count(&stats) as f64 / total_count(&stats) as f64;
    for _ in 0..200_000 {
        let t = Instant::now();
        let _ = decide(&proxy, &source, &headers, "/nothing-matches").await;
        unmatched.record((t.elapsed().as_nanos() as u64).max(1)).expect("record");
    }
    let idle = enforcer_without_policies(addr).await;
    let mut none = local.clone();
    none.reset();
    for _ in 0..200_000 {
        let t = Instant::now();
        let _ = decide(&idle, &source, &headers, "/hot").await;
        none.record((t.elapsed().as_nanos() as u64).max(1)).expect("record");
    }
    println!(
        "local decisions: {decisions} decisions in {:.1} s ({granted} granted), answered locally: {:.3} % (target >= 95 %), {}",
        started.elapsed().as_secs_f64(),
        fraction * 100.0,
        calls(&stats),
    );
    println!(
        "local decision latency: p50 {:.2} us, p99 {:.2} us (target <= 2 us), p99.9 {:.2} us, max {:.1} us",
        micros(&local, 0.5),
        micros(&local, 0.99),
        micros(&local, 0.999),
        local.max() as f64 / 1000.0
    );
    println!(
        "stage cost, policies but none matching: p50 {:.2} us, p99 {:.2} us; no policy at all: p50 {:.3} us, p99 {:.3} us",
        micros(&unmatched, 0.5),
        micros(&unmatched, 0.99),
        micros(&none, 0.5),
        micros(&none, 0.99)
    );
}

async fn enforcer_without_policies(addr: SocketAddr) -> QuotaEnforcer {
    let identity = caller();
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
    let stats = QuotaStats::register(&prometheus::Registry::new()).expect("stats");
    QuotaEnforcer::new(QuotaSettings::default(), &identity, &meshtel_proxy::forward::service_names("idle", "default"), &endpoint, "idle", stats)
}

fn unix_second() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

async fn over_admission(addr: SocketAddr, stopped: &watch::Receiver<bool>) {
    const LIMIT: u64 = 1000;
    const PROXIES: usize = 3;
    let run_for = Duration::from_secs(6);
    let mut tasks = Vec::new();
    for i in 0..PROXIES {
        let proxy = enforcer(addr, &format!("shared{i}"), true, stopped).await;
        tasks.push(tokio::spawn(async move {
            let (source, headers) = (caller(), HeaderMap::new());
            let mut per_window: BTreeMap<u64, u64> = BTreeMap::new();
            let started = Instant::now();
            while started.elapsed() < run_for {
                for _ in 0..100 {
                    if decide(&proxy, &source, &headers, "/shared").await {
                        *per_window.entry(unix_second()).or_default() += 1;
                    }
                }
                tokio::task::yield_now().await;
            }
            let stats = proxy.stats();
            println!("  proxy shared: {}", calls(stats));
            (per_window, local_count(stats), total_count(stats))
        }));
    }
    let mut windows: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut local, mut total) = (0, 0);
    for task in tasks {
        let (per_window, l, t) = task.await.expect("driver");
        for (window, grants) in per_window {
            *windows.entry(window).or_default() += grants;
        }
        local += l;
        total += t;
    }
    let over: Vec<u64> = windows.values().map(|g| g.saturating_sub(LIMIT)).collect();
    let worst = over.iter().copied().max().unwrap_or(0);
    let grants: Vec<u64> = windows.values().copied().collect();
    println!(
        "over-admission: {PROXIES} proxies, limit {LIMIT}/s, {} windows, grants per window {grants:?}; worst over-admission {worst} ({:.2} % of the limit, target <= 1 %); {:.3} % of {total} decisions local",
        windows.len(),
        worst as f64 * 100.0 / LIMIT as f64,
        local as f64 * 100.0 / total.max(1) as f64,
    );
}

async fn one_per_second(addr: SocketAddr, stopped: &watch::Receiver<bool>, seconds: u64) {
    let off = enforcer(addr, "one-off", false, stopped).await;
    let on = enforcer(addr, "one-on", true, stopped).await;
    let drive = |proxy: QuotaEnforcer, path: &'static str| {
        tokio::spawn(async move {
            let (source, headers) = (caller(), HeaderMap::new());
            let mut ticks = tokio::time::interval(Duration::from_millis(50));
            let mut granted = 0u64;
            for _ in 0..seconds * 20 {
                ticks.tick().await;
                granted += u64::from(decide(&proxy, &source, &headers, path).await);
            }
            let stats = proxy.stats();
            println!("  {path}: {}", calls(stats));
            let fail_open = stats.decisions(DecisionResult::FailOpen);
            (granted, total_count(stats) - local_count(stats), fail_open)
        })
    };
    let started = Instant::now();
    let (off, on) = (drive(off, "/one-off"), drive(on, "/one-on"));
    let (off, on) = (off.await.expect("off"), on.await.expect("on"));
    println!(
        "1 req/s at 20 req/s for {seconds} s ({:.1} s): prefetch off granted {} (target {seconds} ± 1, {} checks, {} fail-open); prefetch on granted {} ({} remote decisions, {} fail-open)",
        started.elapsed().as_secs_f64(),
        off.0,
        off.1,
        off.2,
        on.0,
        on.1,
        on.2
    );
}
