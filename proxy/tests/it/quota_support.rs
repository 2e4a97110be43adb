//! Quota harness: the real collector Mixer service with the quota engine on
//! 127.0.0.1:0 (or a variant whose Check can be made to fail), and a `reviews` proxy
//! in front of an upstream app.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use meshtel_collector::mesh_metrics::MeshMetrics;
use meshtel_collector::quota::PolicyStream;
use meshtel_collector::{QuotaConfig, QuotaEngine, ReportConfig, mixer_grpc_service, report::reports_with_system_clock};
use meshtel_model::mixer::mixer_server::{Mixer, MixerServer};
use meshtel_model::mixer::{CheckRequest, CheckResponse, ReportRequest, WatchQuotasRequest};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_proxy::ProxyConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::*;

/// A collector answering Check and WatchQuotas from a real [`QuotaEngine`].
pub struct QuotaCollector {
    pub addr: std::net::SocketAddr,
    pub engine: Arc<QuotaEngine>,
    /// The collector's Istio metrics (real collector only).
    pub metrics: Option<MeshMetrics>,
    /// What Check does (switchable collector only).
    pub mode: Arc<AtomicU8>,
    _task: JoinHandle<()>,
}

/// Check answers from the engine.
pub const CHECK_ENGINE: u8 = 0;
/// Check fails with UNAVAILABLE.
pub const CHECK_UNAVAILABLE: u8 = 1;
/// Check never answers in time.
pub const CHECK_HANG: u8 = 2;

impl QuotaCollector {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the engine's policies with `specs` (JSON objects).
    pub fn set_policies(&self, revision: i64, specs: &[&str]) {
        let specs: Vec<QuotaPolicySpec> = specs.iter().map(|s| serde_json::from_str(s).expect("policy spec")).collect();
        let load = self.engine.set_policies(revision, specs);
        assert!(load.invalid.is_empty(), "invalid test policies: {:?}", load.invalid);
    }

    /// `istio_requests_total` of reporter="destination" with `code` and `flags`.
    pub fn istio_requests(&self, code: &str, flags: &str) -> f64 {
        let text = self.metrics.as_ref().expect("real collector").render_text();
        text.lines()
            .filter(|l| l.starts_with("istio_requests_total{") && l.contains("reporter=\"destination\""))
            .filter(|l| l.contains(&format!("response_code=\"{code}\"")) && l.contains(&format!("response_flags=\"{flags}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn engine() -> Arc<QuotaEngine> {
    Arc::new(QuotaEngine::with_system_clock(QuotaConfig::default()).expect("engine"))
}

/// The real collector Mixer service (Report, Check, WatchQuotas) with an engine.
pub async fn start_quota_collector() -> QuotaCollector {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
    let addr = listener.local_addr().expect("addr");
    let engine = engine();
    let reports = reports_with_system_clock(MeshMetrics::new(&Default::default()).expect("metrics"), None, ReportConfig::default());
    let metrics = reports.metrics().clone();
    let service = mixer_grpc_service(reports, Some(engine.clone()));
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    QuotaCollector { addr, engine, metrics: Some(metrics), mode: Arc::new(AtomicU8::new(CHECK_ENGINE)), _task: task }
}

/// Policies from the engine, Report into a mock, Check switchable (engine, failing,
/// hanging).
#[derive(Clone)]
struct SwitchableMixer {
    reports: MockMixer,
    engine: Arc<QuotaEngine>,
    mode: Arc<AtomicU8>,
}

#[tonic::async_trait]
impl Mixer for SwitchableMixer {
    type ReportStream = ReportStream;
    type WatchQuotasStream = PolicyStream;

    async fn report(&self, request: tonic::Request<tonic::Streaming<ReportRequest>>) -> Result<tonic::Response<ReportStream>, tonic::Status> {
        Ok(tonic::Response::new(self.reports.report_stream(request)))
    }

    async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        match self.mode.load(Ordering::SeqCst) {
            CHECK_ENGINE => self.engine.check_request(request.get_ref()).map(tonic::Response::new).map_err(|e| tonic::Status::internal(e.to_string())),
            CHECK_UNAVAILABLE => Err(tonic::Status::unavailable("quota engine down")),
            _ => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Err(tonic::Status::unavailable("too late"))
            }
        }
    }

    async fn watch_quotas(&self, _request: tonic::Request<WatchQuotasRequest>) -> Result<tonic::Response<PolicyStream>, tonic::Status> {
        Ok(tonic::Response::new(self.engine.policy_stream()))
    }
}

/// A collector whose Check can be switched to fail; its records land in `reports`.
pub async fn start_switchable_collector(reports: MockMixer) -> QuotaCollector {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
    let addr = listener.local_addr().expect("addr");
    let engine = engine();
    let mode = Arc::new(AtomicU8::new(CHECK_ENGINE));
    let mixer = SwitchableMixer { reports, engine: engine.clone(), mode: mode.clone() };
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(MixerServer::new(mixer))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    QuotaCollector { addr, engine, metrics: None, mode, _task: task }
}

/// A TCP relay in front of a collector, to cut it off like a crashed process: every
/// relayed connection closes and new ones are refused.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut downstream, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                        // No Nagle: small HTTP/2 frames would wait for delayed ACKs.
                        let _ = (downstream.set_nodelay(true), upstream.set_nodelay(true));
                        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                    }
                });
            }
        });
        Relay { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every relayed connection and the listener.
    pub async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A `reviews` v2 proxy (inbound → a fresh upstream app) reporting to `collector`.
pub struct QuotaProxy {
    pub proxy: RunningProxy,
    pub upstream: Upstream,
    _dir: tempfile::TempDir,
}

impl QuotaProxy {
    pub fn inbound_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addresses.inbound.expect("inbound"))
    }

    /// Waits until the proxy holds `n` policies.
    pub async fn wait_policies(&self, n: u64) {
        wait_policies(&self.proxy, n).await;
    }

    /// A request from productpage-v1 (as its proxy would announce it).
    pub fn request(&self, path: &str) -> http::Request<BoxBody> {
        from_productpage(&self.inbound_url(path))
    }

    pub async fn stats(&self) -> String {
        admin_get(&self.proxy, "/stats/prometheus").await.1
    }

    pub async fn stop(self) {
        self.proxy.stop().await;
    }
}

/// GET `url` as productpage-v1's outbound proxy sends it.
pub fn from_productpage(url: &str) -> http::Request<BoxBody> {
    get(
        url,
        "reviews:9080",
        &[
            ("x-meshtel-peer-workload", "productpage-v1"),
            ("x-meshtel-peer-namespace", "default"),
            ("x-meshtel-peer-app", "productpage"),
            ("x-meshtel-peer-version", "v1"),
        ],
    )
}

pub async fn wait_policies(proxy: &RunningProxy, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = admin_get(proxy, "/stats/prometheus").await.1;
        if counter(&text, "meshtel_proxy_quota_policies") as u64 == n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "proxy never held {n} quota policies:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn start_quota_proxy(collector: &str, configure: impl FnOnce(&mut ProxyConfig)) -> QuotaProxy {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh_path = dir.path().join("mesh.yaml");
    let upstream = start_upstream().await;
    let bound = bind_proxy(&mesh_path, "reviews", "v2", Some(upstream.addr), collector, 0.0).await;
    write_mesh(&mesh_path, bound.addresses.inbound.expect("inbound"), dead_address().await);
    // A generous Check timeout: on a loaded machine (CI runs tests side by side on two
    // cores) a Check can outlast the 20 ms default, and its fail-open grant would break
    // the exact counts these tests assert. Tests of the timeout set it back.
    let proxy = bound
        .configure(|c| {
            c.quota.timeout = Duration::from_secs(2);
            configure(c);
        })
        .start();
    QuotaProxy { proxy, upstream, _dir: dir }
}

/// A fail-open proxy (configured by `open`) and a fail-closed one without prefetch,
/// both holding one policy.
/// Both with the default Check timeout, which these tests are about.
pub async fn start_open_and_closed(collector: &str, open: impl FnOnce(&mut ProxyConfig)) -> (QuotaProxy, QuotaProxy) {
    let open = start_quota_proxy(collector, |c| {
        c.quota.timeout = meshtel_proxy::quota::DEFAULT_TIMEOUT;
        open(c);
    })
    .await;
    let closed = start_quota_proxy(collector, |c| {
        c.quota.timeout = meshtel_proxy::quota::DEFAULT_TIMEOUT;
        c.quota.fail_closed = true;
        c.quota.prefetch = false;
    })
    .await;
    open.wait_policies(1).await;
    closed.wait_policies(1).await;
    (open, closed)
}

/// `name{...label...} value` of a labelled counter in Prometheus text.
pub fn labelled(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Quota decisions with `result`.
pub fn decisions(text: &str, result: &str) -> u64 {
    labelled(text, "meshtel_proxy_quota_decisions_total", &format!("result=\"{result}\"")) as u64
}
