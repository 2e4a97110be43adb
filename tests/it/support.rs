//! Starting the real `meshtel` binary on 127.0.0.1 port-0 listeners, stopping it
//! (gracefully or with SIGKILL), and the HTTP / gRPC clients the tests talk to it with.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::Value;
use tempfile::TempDir;
use tonic::transport::Channel;

/// How long the binary may take to publish its listeners.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop (flush included) may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Which subcommand to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Collector,
    Query,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Collector => "collector",
            Role::Query => "query",
        }
    }

    /// The file this role publishes its bound addresses in.
    fn listeners_file(self) -> &'static str {
        match self {
            Role::Serve => "listeners.json",
            Role::Collector => "listeners-collector.json",
            Role::Query => "listeners-query.json",
        }
    }
}

/// A temporary directory holding a data directory and the processes' logs; survives
/// restarts of the binary, removed at the end of the test.
pub struct TestDir {
    tmp: TempDir,
    runs: AtomicUsize,
}

impl TestDir {
    pub fn new() -> TestDir {
        let tmp = tempfile::Builder::new()
            .prefix("meshtel-it-")
            .tempdir()
            .expect("creating a temp dir");
        std::fs::create_dir_all(tmp.path().join("data")).unwrap();
        TestDir {
            tmp,
            runs: AtomicUsize::new(0),
        }
    }

    /// The temporary directory itself (mesh files, proxy logs and listener files).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn next_log(&self, role: Role) -> PathBuf {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        self.tmp
            .path()
            .join(format!("{}-{n}.log", role.subcommand()))
    }
}

/// One running `meshtel` process. Dropping it sends SIGTERM, then SIGKILL after a
/// timeout, so no test leaves a process behind, even when it panics.
pub struct Meshtel {
    child: Option<Child>,
    listeners_path: PathBuf,
    log: PathBuf,
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub zipkin: Option<SocketAddr>,
    pub query: Option<SocketAddr>,
}

impl Meshtel {
    /// `meshtel serve` with the default flags.
    pub async fn serve(dir: &TestDir) -> Meshtel {
        Meshtel::start(dir, Role::Serve, &[]).await
    }

    /// Starts `meshtel <role>` on `dir`'s data directory with every listener on
    /// 127.0.0.1:0 plus `extra` flags, and waits for `listeners.json`.
    pub async fn start(dir: &TestDir, role: Role, extra: &[&str]) -> Meshtel {
        let data_dir = dir.data_dir();
        let listeners_path = data_dir.join(role.listeners_file());
        // A SIGKILLed process leaves its file behind; never read a stale one.
        let _ = std::fs::remove_file(&listeners_path);
        let log = dir.next_log(role);
        let log_file = File::create(&log).expect("creating the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
        command
            .arg(role.subcommand())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--zipkin-listen", "127.0.0.1:0"])
            .args(["--query-listen", "127.0.0.1:0"]);
        command
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("MESHTEL_CONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = command.spawn().expect("spawning meshtel");
        let mut process = Meshtel {
            child: Some(child),
            listeners_path: listeners_path.clone(),
            log,
            grpc: None,
            http: None,
            zipkin: None,
            query: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.child_mut().try_wait().unwrap() {
                panic!(
                    "meshtel {} exited during startup with {status}\n{}",
                    role.subcommand(),
                    process.log_text()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&listeners_path)
                && let Ok(json) = serde_json::from_str::<Value>(&text)
            {
                let addr = |key: &str| {
                    json.get(key)
                        .and_then(Value::as_str)
                        .map(|s| s.parse().unwrap())
                };
                process.grpc = addr("grpc");
                process.http = addr("http");
                process.zipkin = addr("zipkin");
                process.query = addr("query");
                let complete = match role {
                    Role::Serve => process.grpc.is_some() && process.query.is_some(),
                    Role::Collector => process.grpc.is_some(),
                    Role::Query => process.query.is_some(),
                };
                if complete {
                    return process;
                }
            }
            assert!(
                Instant::now() < deadline,
                "meshtel did not write listeners.json within {START_TIMEOUT:?}\n{}",
                process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process is running")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the process is running").id()
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit (status 0, `listeners.json` removed).
    pub async fn stop(mut self) {
        let status = self.terminate().await;
        assert!(
            status.success(),
            "meshtel did not exit cleanly on SIGTERM: {status}\n{}",
            self.log_text()
        );
        assert!(
            !self.listeners_path.exists(),
            "{} left behind after a clean stop",
            self.listeners_path.display()
        );
    }

    async fn terminate(&mut self) -> ExitStatus {
        send_signal(self.pid(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child_mut().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let log = self.log_text();
                let _ = self.child_mut().kill();
                let _ = self.child_mut().wait();
                self.child = None;
                panic!("meshtel did not stop within {STOP_TIMEOUT:?} of SIGTERM\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no flush, no cleanup; only the WAL survives.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("the process is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the killed process");
    }

    /// `http://<query>` + `path`.
    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.query.expect("a query listener"))
    }

    /// `http://<http>` + `path`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("an OTLP HTTP listener"))
    }

    /// The Zipkin span endpoint.
    pub fn zipkin_url(&self) -> String {
        format!(
            "http://{}/api/v2/spans",
            self.zipkin.expect("a Zipkin listener")
        )
    }

    /// A gRPC `TraceService` client.
    pub async fn grpc_client(&self) -> TraceServiceClient<Channel> {
        grpc_client(self.grpc.expect("a gRPC listener")).await
    }
}

impl Drop for Meshtel {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            send_signal(child.id(), "TERM");
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A gRPC `TraceService` client to `addr`.
pub async fn grpc_client(addr: SocketAddr) -> TraceServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .expect("connecting to the gRPC listener");
    TraceServiceClient::new(channel).max_decoding_message_size(64 << 20)
}

/// Exports `request` over gRPC and expects full success.
pub async fn export_grpc(addr: SocketAddr, request: ExportTraceServiceRequest) {
    let response: ExportTraceServiceResponse = grpc_client(addr)
        .await
        .export(request)
        .await
        .expect("gRPC export")
        .into_inner();
    assert_eq!(
        response.partial_success, None,
        "no partial success expected"
    );
}

/// A shared HTTP client with a timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.bytes().await.expect("reading the body").to_vec();
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

/// `GET url`.
pub async fn get(url: &str) -> Reply {
    read(http().get(url).send().await.expect("GET")).await
}

/// `GET url`, expecting 200 JSON.
pub async fn get_json(url: &str) -> Value {
    let reply = get(url).await;
    assert_eq!(reply.status, 200, "GET {url}: {}", reply.text());
    assert_eq!(reply.content_type, "application/json", "GET {url}");
    reply.json()
}

/// `POST url` with a body and headers.
pub async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut request = http().post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    read(request.send().await.expect("POST")).await
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Number of Parquet files under `dir`, recursively.
pub fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                parquet_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// Now, Unix nanoseconds.
pub fn now_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// 16 random bytes with a non-zero high half (renders as 32 hex digits).
pub fn random_trace_id() -> Vec<u8> {
    let mut id: [u8; 16] = rand::random();
    id[0] |= 0x10;
    id[15] |= 1;
    id.to_vec()
}

/// A trace id whose high 8 bytes are zero (renders as 16 hex digits).
pub fn random_short_trace_id() -> Vec<u8> {
    let mut id = vec![0u8; 16];
    let low: [u8; 8] = rand::random();
    id[8..].copy_from_slice(&low);
    id[8] |= 0x10;
    id
}

/// 8 random non-zero bytes.
pub fn random_span_id() -> Vec<u8> {
    let mut id: [u8; 8] = rand::random();
    id[0] |= 0x10;
    id.to_vec()
}

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

/// One resource (`service.name`) with one scope holding `spans`.
pub fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", service)],
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "it".into(),
                ..InstrumentationScope::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// A minimal span: `name`, kind SERVER, `[start, start + duration)`.
pub fn simple_span(
    trace_id: &[u8],
    span_id: &[u8],
    parent: Option<&[u8]>,
    name: &str,
    start_ns: u64,
    duration_ns: u64,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(<[u8]>::to_vec).unwrap_or_default(),
        name: name.to_string(),
        kind: 2,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + duration_ns,
        ..Span::default()
    }
}

/// `{"data":[trace]}` of `/api/traces/{id}`: the one trace.
pub async fn fetch_trace(m: &Meshtel, trace_id_hex: &str) -> Value {
    let body = get_json(&m.query_url(&format!("/api/traces/{trace_id_hex}"))).await;
    let data = body["data"].as_array().expect("data array");
    assert_eq!(data.len(), 1, "{body}");
    data[0].clone()
}

/// Waits until `/api/traces/{id}` has `spans` spans, and returns the trace.
pub async fn wait_for_trace(m: &Meshtel, trace_id_hex: &str, spans: usize) -> Value {
    let url = m.query_url(&format!("/api/traces/{trace_id_hex}"));
    eventually(
        Duration::from_secs(10),
        &format!("trace {trace_id_hex} with {spans} spans"),
        || async {
            let reply = get(&url).await;
            if reply.status != 200 {
                return None;
            }
            let trace = reply.json()["data"][0].clone();
            (trace["spans"].as_array().map(Vec::len) == Some(spans)).then_some(trace)
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The sidecar: `meshtel proxy` processes and in-process upstream apps.
// ---------------------------------------------------------------------------------------

/// One running `meshtel proxy` process, its outbound and admin listeners (and inbound
/// when asked for) on 127.0.0.1:0. Dropping it kills the process (SIGKILL): a sidecar
/// holds nothing that must survive the test.
pub struct MeshProxy {
    child: Option<Child>,
    log: PathBuf,
    pub inbound: Option<SocketAddr>,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
}

impl MeshProxy {
    /// Starts `meshtel proxy --outbound 127.0.0.1:0 --admin 127.0.0.1:0
    /// --listeners-file <dir>/<name>-listeners.json <args>` and waits for the listeners
    /// file. `args` carries `--mesh`, `--service`, `--version`, `--inbound`,
    /// `--collector`, `--sampling`, ... as the test needs.
    pub async fn start(dir: &TestDir, name: &str, args: &[&str]) -> MeshProxy {
        let listeners_path = dir.path().join(format!("{name}-listeners.json"));
        let _ = std::fs::remove_file(&listeners_path);
        let log = dir.path().join(format!("proxy-{name}.log"));
        let log_file = File::create(&log).expect("creating the proxy log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
        command
            .arg("proxy")
            .args(["--outbound", "127.0.0.1:0"])
            .args(["--admin", "127.0.0.1:0"])
            .arg("--listeners-file")
            .arg(&listeners_path)
            .args(["--proxy-id", name])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // Hermetic: no MESHTEL_PROXY_* of the developer's shell leaks into the proxy.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MESHTEL_PROXY_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().expect("spawning meshtel proxy");
        let mut proxy = MeshProxy {
            child: Some(child),
            log,
            inbound: None,
            outbound: ([127, 0, 0, 1], 0).into(),
            admin: ([127, 0, 0, 1], 0).into(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = proxy.child.as_mut().expect("the proxy is running");
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "meshtel proxy {name} exited during startup with {status}\n{}",
                    proxy.log_text()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&listeners_path)
                && let Ok(json) = serde_json::from_str::<Value>(&text)
            {
                let addr = |key: &str| {
                    json.get(key)
                        .and_then(Value::as_str)
                        .map(|s| s.parse::<SocketAddr>().unwrap())
                };
                if let (Some(outbound), Some(admin)) = (addr("outbound"), addr("admin")) {
                    proxy.inbound = addr("inbound");
                    proxy.outbound = outbound;
                    proxy.admin = admin;
                    return proxy;
                }
            }
            assert!(
                Instant::now() < deadline,
                "meshtel proxy {name} did not write its listeners file within {START_TIMEOUT:?}\n{}",
                proxy.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The inbound listener (panics when the proxy has none).
    pub fn inbound(&self) -> SocketAddr {
        self.inbound.expect("a proxy with --inbound")
    }

    /// What the proxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://<admin>` + `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The admin `/stats/prometheus` samples of `name`, summed over label sets that
    /// contain every `(label, value)` of `labels`.
    pub async fn stat(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let reply = get(&self.admin_url("/stats/prometheus")).await;
        assert_eq!(
            reply.status,
            200,
            "admin /stats/prometheus: {}",
            reply.text()
        );
        parse_prometheus_text(&reply.text())
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .map(|s| s.value)
            .sum()
    }
}

impl MeshProxy {
    /// SIGTERM, then waits up to `within` for a clean exit (status 0); returns how long
    /// the proxy took to drain and flush.
    pub async fn stop(mut self, within: Duration) -> Duration {
        let mut child = self.child.take().expect("the proxy is running");
        send_signal(child.id(), "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "meshtel proxy did not exit cleanly on SIGTERM: {status}\n{}",
                    self.log_text()
                );
                return started.elapsed();
            }
            if started.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "meshtel proxy did not stop within {within:?} of SIGTERM\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for MeshProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A 127.0.0.1 address nothing listens on (bound to port 0, then released): a
/// collector that is down.
pub fn closed_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// An in-process upstream app on 127.0.0.1:0 speaking HTTP/1.1 and h2c (prior
/// knowledge) on one port, serving an axum router and/or tonic gRPC services.
/// `stop` joins the server task so its panics surface; dropping it aborts the task.
pub struct AppServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AppServer {
    /// Binds 127.0.0.1:0 and serves `routes` (`Routes::from(axum_router)`, with
    /// `.add_service(grpc_server)` for gRPC).
    pub async fn start(routes: tonic::service::Routes) -> AppServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("the app server failed");
        });
        AppServer {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// `host:port`, as `--inbound LISTEN=APP` wants it.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the server and joins its task (a panic inside surfaces here).
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the app server did not stop")
                .expect("the app server task panicked");
        }
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One sample of the Prometheus text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

impl PromSample {
    /// Whether every `(label, value)` of `wanted` is on this sample.
    pub fn has(&self, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }

    /// A label's value (`""` when absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Parses the Prometheus text format (comments skipped; label values unescaped).
/// Panics on a line it cannot read: a malformed exposition is a failure.
pub fn parse_prometheus_text(text: &str) -> Vec<PromSample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value on metrics line {line:?}"));
        let name = line[..name_end].to_string();
        let mut labels = std::collections::BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let mut end = None;
            loop {
                // label name
                while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                    chars.next();
                }
                match chars.peek() {
                    Some((i, '}')) => {
                        end = Some(*i);
                        break;
                    }
                    None => break,
                    _ => {}
                }
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                assert_eq!(
                    chars.next().map(|(_, c)| c),
                    Some('"'),
                    "metrics line {line:?}"
                );
                let mut value = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(other) => value.push(other),
                            None => panic!("metrics line {line:?}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(key.trim().to_string(), value);
            }
            let end = end.unwrap_or_else(|| panic!("unterminated labels on {line:?}"));
            rest = &after[end + 1..];
        }
        let value_text = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value on metrics line {line:?}"));
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("bad value {v:?} on {line:?}: {e}")),
        };
        samples.push(PromSample {
            name,
            labels,
            value,
        });
    }
    samples
}
