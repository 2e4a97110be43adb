//! Test harness for the proxy's unit tests that need real sockets: a scriptable
//! upstream app (HTTP/1.1 and h2c), a mock collector keeping request records, and a
//! proxy serving on 127.0.0.1:0 with a mesh file written for the test.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtel_model::mixer::mixer_server::{Mixer, MixerServer};
use meshtel_model::mixer::{CheckRequest, CheckResponse, ReportRequest, ReportResponse, RequestRecord, WatchQuotasRequest};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{InboundSpec, ListenerAddresses, Listeners, ProxyConfig};

/// A response body for the test apps and clients.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Polls `check` until it returns `Some` (10 s deadline).
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves `handle` on 127.0.0.1:0, HTTP/1.1 (with upgrades) and h2c.
pub async fn start_app<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("app addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let response = handle(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// An address nothing listens on, for the rest of the test process: its port stays
/// bound (not listening, and without `SO_REUSEADDR`), so connecting is refused and no
/// server another test starts on port 0 is given it. A port freed at once came back to
/// such a server now and then, and the "dead" upstream answered.
pub fn dead_address() -> SocketAddr {
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
    let addr = socket.local_addr().expect("addr").as_socket().expect("an IPv4 address");
    HELD.lock().push(socket);
    addr
}

/// A mock collector: acknowledges every Report batch and keeps its records.
#[derive(Clone, Default)]
pub struct Collector {
    /// Every record received.
    pub records: Arc<Mutex<Vec<RequestRecord>>>,
    addr: Option<SocketAddr>,
}

type ReportStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<ReportResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Mixer for Collector {
    type ReportStream = ReportStream;
    type WatchQuotasStream = ReportStreamOf<meshtel_model::mixer::QuotaPolicies>;

    async fn report(&self, request: tonic::Request<tonic::Streaming<ReportRequest>>) -> Result<tonic::Response<ReportStream>, tonic::Status> {
        let records = self.records.clone();
        let acks = request.into_inner().map(move |batch| {
            let batch = batch?;
            let accepted = batch.records.len() as u64;
            records.lock().extend(batch.records);
            Ok(ReportResponse { accepted })
        });
        Ok(tonic::Response::new(Box::pin(acks)))
    }

    async fn check(&self, _request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no quotas in the mock collector"))
    }

    async fn watch_quotas(&self, _request: tonic::Request<WatchQuotasRequest>) -> Result<tonic::Response<Self::WatchQuotasStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("no quotas in the mock collector"))
    }
}

/// A boxed stream of `T` results.
pub type ReportStreamOf<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// Serves `mixer` as the collector's Mixer service on 127.0.0.1:0; its address.
pub async fn serve_mixer<M: Mixer>(mixer: M) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
    let addr = listener.local_addr().expect("collector addr");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(MixerServer::new(mixer))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    addr
}

/// Starts a mock collector on 127.0.0.1:0.
pub async fn start_collector() -> Collector {
    let mut collector = Collector { records: Arc::default(), addr: None };
    collector.addr = Some(serve_mixer(collector.clone()).await);
    collector
}

impl Collector {
    /// Its `http://` URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr.expect("collector address"))
    }

    /// Waits for `n` records.
    pub async fn wait_records(&self, n: usize) -> Vec<RequestRecord> {
        eventually(&format!("{n} records"), || {
            let records = self.records.lock();
            (records.len() >= n).then(|| records.clone())
        })
        .await
    }
}

/// A proxy serving on 127.0.0.1:0; stopped when dropped (its task aborted), or
/// gracefully with [`TestProxy::stop`].
pub struct TestProxy {
    /// Its listeners.
    pub addresses: ListenerAddresses,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<crate::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProxy {
    /// Tells the proxy to stop, as a signal would, and waits until it has drained and
    /// flushed its telemetry.
    pub async fn stop(mut self) -> crate::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("proxy task joined")
    }
}

/// Starts a proxy for `service` v1 with `mesh` as its mesh file; `inbound` forwards to
/// that app; `configure` changes anything else.
pub async fn start_proxy(mesh: &str, service: &str, inbound: Option<SocketAddr>, configure: impl FnOnce(&mut ProxyConfig)) -> TestProxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let mesh_file = dir.path().join("mesh.yaml");
    std::fs::write(&mesh_file, mesh).expect("write mesh");
    let mut config = ProxyConfig::for_service(mesh_file, service, "v1");
    config.collector = "http://127.0.0.1:1".to_owned();
    config.inbound = inbound.map(|app| InboundSpec { listen: SocketAddr::from(([127, 0, 0, 1], 0)), app: app.to_string() });
    configure(&mut config);
    let listeners = Listeners::bind(&config).await.expect("bind proxy");
    let addresses = listeners.addresses().expect("addresses");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::serve(config, listeners, async move {
        let _ = stopped.await;
    }));
    TestProxy { addresses, stop: Some(stop), task, _dir: dir }
}

/// The value of counter `name{labels}` on the proxy's admin port (0 when absent).
pub async fn admin_counter(proxy: &TestProxy, name_and_labels: &str) -> f64 {
    let stream = tokio::net::TcpStream::connect(proxy.addresses.admin).await.expect("admin");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    let request = Request::get("/stats/prometheus").header("host", "localhost").body(http_body_util::Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("admin response");
    let body = http_body_util::BodyExt::collect(response.into_body()).await.expect("admin body").to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}
