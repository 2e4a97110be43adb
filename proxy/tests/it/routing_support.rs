//! Traffic-rules harness: versioned upstream apps with scripted behaviour (delay,
//! failures), a mesh file naming them, a rules directory, and one calling proxy
//! (`productpage` v1, outbound only) that applies the rules, reporting to the mock
//! collector.
//!
//! ```text
//!  test clients ──Host: reviews:9080──► productpage proxy :outbound ──► reviews-v1 app
//!                                        (rules dir, mesh file)     ├─► reviews-v2 app
//!                                               │ records, spans    └─► ...
//!                                               ▼
//!                                         mock collector
//! ```
//!
//! The mesh endpoints are the apps themselves (no callee proxy): everything under
//! test happens in the caller's outbound proxy, as in Istio's client-side routing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtel_model::mixer::RequestRecord;
use meshtel_model::otlp::common::v1::any_value::Value as AnyValue;
use meshtel_model::otlp::trace::v1::Span;
use meshtel_proxy::ProxyConfig;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::*;

// ---------------------------------------------------------------- apps

/// What an app does with each request it receives.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Waited before answering.
    pub delay: Duration,
    /// Every `fail_one_in`-th request (counting from 1) fails; 0 = never, 1 = always.
    pub fail_one_in: u64,
    /// The status of a failing request.
    pub fail_status: u16,
}

impl Behaviour {
    /// Answers 200 at once.
    pub const OK: Behaviour = Behaviour { delay: Duration::ZERO, fail_one_in: 0, fail_status: 500 };

    /// Answers 200 after `delay`.
    pub fn slow(delay: Duration) -> Behaviour {
        Behaviour { delay, ..Behaviour::OK }
    }

    /// Always answers `status`.
    pub fn always_failing(status: u16) -> Behaviour {
        Behaviour { fail_one_in: 1, fail_status: status, ..Behaviour::OK }
    }

    /// Answers `status` to every `n`-th request, 200 otherwise.
    pub fn failing_one_in(n: u64, status: u16) -> Behaviour {
        Behaviour { fail_one_in: n, fail_status: status, ..Behaviour::OK }
    }
}

/// One instance of a service: its labels and behaviour.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub service: &'static str,
    pub version: &'static str,
    /// Workload name; also the body of every answer, so the caller can tell who
    /// answered.
    pub workload: String,
    pub behaviour: Behaviour,
}

/// `service` `version`, workload `<service>-<version>`.
pub fn app(service: &'static str, version: &'static str, behaviour: Behaviour) -> AppSpec {
    AppSpec { service, version, workload: format!("{service}-{version}"), behaviour }
}

/// One request as an app received it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    /// The `Host` header.
    pub host: String,
    pub path: String,
    /// Whether the app answered with a failure.
    pub failed: bool,
}

/// A running app on 127.0.0.1:0 (HTTP/1.1 and h2c).
pub struct App {
    pub spec: AppSpec,
    pub addr: SocketAddr,
    /// Every request received, in arrival order.
    pub hits: Arc<Mutex<Vec<Hit>>>,
    /// The most requests it was ever serving at once.
    pub max_in_flight: Arc<AtomicU64>,
    _task: JoinHandle<()>,
}

impl App {
    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.hits.lock().len()
    }

    /// Requests answered with a failure so far.
    pub fn failures(&self) -> usize {
        self.hits.lock().iter().filter(|h| h.failed).count()
    }
}

pub async fn start_app(spec: AppSpec) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("addr");
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let in_flight = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let (behaviour, workload) = (spec.behaviour, spec.workload.clone());
    let (hits2, max2) = (hits.clone(), max_in_flight.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (hits, in_flight, max_in_flight, workload) = (hits2.clone(), in_flight.clone(), max2.clone(), workload.clone());
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (hits, in_flight, max_in_flight, workload) = (hits.clone(), in_flight.clone(), max_in_flight.clone(), workload.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_in_flight.fetch_max(now, Ordering::SeqCst);
                    let host = request.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let failed = {
                        let mut hits = hits.lock();
                        let n = hits.len() as u64 + 1;
                        let failed = behaviour.fail_one_in > 0 && n.is_multiple_of(behaviour.fail_one_in);
                        hits.push(Hit { at: Instant::now(), host, path: request.uri().path().to_owned(), failed });
                        failed
                    };
                    // Read the request body whole before answering.
                    let _ = request.into_body().collect().await;
                    if !behaviour.delay.is_zero() {
                        tokio::time::sleep(behaviour.delay).await;
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let status = if failed { behaviour.fail_status } else { 200 };
                    let response = Response::builder()
                        .status(status)
                        .header("x-workload", workload.as_str())
                        .body(Full::new(Bytes::from(workload)))
                        .expect("valid response");
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    App { spec, addr, hits, max_in_flight, _task: task }
}

/// The mesh file: every service of `apps` with its instances as endpoints.
pub fn mesh_yaml(apps: &[App]) -> String {
    let mut services: Vec<&str> = apps.iter().map(|a| a.spec.service).collect();
    services.sort_unstable();
    services.dedup();
    let mut yaml = String::from("services:\n");
    for service in services {
        yaml.push_str(&format!("- name: {service}\n  port: 9080\n  endpoints:\n"));
        for app in apps.iter().filter(|a| a.spec.service == service) {
            yaml.push_str(&format!(
                "  - address: {}\n    workload: {}\n    labels: {{app: {service}, version: {}}}\n",
                app.addr, app.spec.workload, app.spec.version
            ));
        }
    }
    yaml
}

// ---------------------------------------------------------------- the caller

/// Apps, the mock collector, and the calling proxy with a rules directory.
pub struct RoutingMesh {
    pub dir: tempfile::TempDir,
    pub rules_dir: PathBuf,
    pub apps: Vec<App>,
    pub collector: Collector,
    pub proxy: RunningProxy,
}

/// Starts `apps`, writes the mesh file and `rules` (as `rules/rules.yaml`), and starts
/// the calling proxy with `sampling` percent.
pub async fn start_routing(apps: Vec<AppSpec>, rules: &str, sampling: f64) -> RoutingMesh {
    start_routing_with(apps, rules, sampling, |_| {}).await
}

/// [`start_routing`], with `change` applied to the calling proxy's configuration.
pub async fn start_routing_with(apps: Vec<AppSpec>, rules: &str, sampling: f64, change: impl FnOnce(&mut ProxyConfig)) -> RoutingMesh {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("rules dir");
    write_atomically(dir.path(), &rules_dir.join("rules.yaml"), rules);
    let mut started = Vec::new();
    for spec in apps {
        started.push(start_app(spec).await);
    }
    let mesh_path = dir.path().join("mesh.yaml");
    std::fs::write(&mesh_path, mesh_yaml(&started)).expect("write mesh");
    let collector = start_collector().await;
    let proxy = bind_proxy(&mesh_path, "productpage", "v1", None, &collector.url(), sampling)
        .await
        .configure(|config| config.rules_dir = Some(rules_dir.clone()))
        .configure(change)
        .start();
    let mesh = RoutingMesh { dir, rules_dir, apps: started, collector, proxy };
    mesh.wait_rules_in_force().await;
    mesh
}

/// Writes `text` to `path` by writing a temporary file in `scratch` (outside the
/// rules directory, same file system) and renaming it over `path`.
pub fn write_atomically(scratch: &Path, path: &Path, text: &str) {
    let tmp = scratch.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("rules")));
    std::fs::write(&tmp, text).expect("write temporary rules");
    std::fs::rename(&tmp, path).expect("rename rules into place");
}

/// What a caller got back.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started: Instant,
    pub status: u16,
    /// The body: the answering app's workload for forwarded requests.
    pub body: String,
    pub headers: http::HeaderMap,
    pub latency: Duration,
}

impl RoutingMesh {
    /// The app whose workload is `workload`.
    pub fn app(&self, workload: &str) -> &App {
        self.apps.iter().find(|a| a.spec.workload == workload).unwrap_or_else(|| panic!("no app {workload}"))
    }

    /// Replaces `rules/rules.yaml` atomically.
    pub fn rewrite_rules(&self, rules: &str) {
        write_atomically(self.dir.path(), &self.rules_dir.join("rules.yaml"), rules);
    }

    /// Waits until `/config_dump` shows at least one rule in force. When
    /// the admin has no `/config_dump` (asserted by the reload test), returns at once.
    pub async fn wait_rules_in_force(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = admin_get(&self.proxy, "/config_dump").await;
            if status == 404 {
                return;
            }
            if status == 200
                && let Ok(dump) = serde_json::from_str::<Value>(&body)
                && ["virtual_services", "destination_rules"]
                    .iter()
                    .any(|kind| dump["rules"][*kind].as_array().is_some_and(|v| !v.is_empty()))
            {
                return;
            }
            assert!(Instant::now() < deadline, "the rules never came into force: /config_dump {status}: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path` with `Host: <host>:9080` and `headers` through the caller's outbound
    /// listener, on `client`.
    pub async fn call(&self, client: &HttpClient, host: &str, path: &str, headers: &[(&str, &str)]) -> Outcome {
        call(client, &self.proxy.outbound_url(path), host, headers).await
    }

    /// The admin `/stats/prometheus` text.
    pub async fn stats(&self) -> String {
        let (status, text) = admin_get(&self.proxy, "/stats/prometheus").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// `/config_dump` as JSON.
    pub async fn config_dump(&self) -> Value {
        let (status, body) = admin_get(&self.proxy, "/config_dump").await;
        assert_eq!(status, 200, "GET /config_dump: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/config_dump is not JSON ({e}): {body}"))
    }

    /// Waits until the collector holds `n` records, then returns them.
    pub async fn records(&self, n: usize) -> Vec<RequestRecord> {
        let records = self.collector.wait_records(n).await;
        assert_eq!(records.len(), n, "one record per request, no more");
        records
    }

    pub async fn stop(self) {
        self.proxy.stop().await;
    }
}

pub type HttpClient = Client<HttpConnector, BoxBody>;

/// What a raw HTTP/1.1 exchange got back.
#[derive(Debug, Clone)]
pub struct RawOutcome {
    /// The status line (`HTTP/1.1 400 Bad Request`); empty when nothing came.
    pub status_line: String,
    /// The response head (status line and headers).
    pub head: String,
    /// The response body (everything after the head).
    pub body: String,
    /// Whether the proxy closed the connection (EOF) within the wait.
    pub closed: bool,
    pub latency: Duration,
}

/// Writes `request` as is to `addr` (for bodies no HTTP client would send: malformed
/// chunks, a body that stops short), then reads until the proxy closes the connection
/// or `wait` is up.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> RawOutcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the proxy");
    stream.write_all(request).await.expect("write the request");
    let mut received = Vec::new();
    let closed = tokio::time::timeout(wait, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .is_ok();
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    RawOutcome {
        status_line: head.lines().next().unwrap_or("").to_owned(),
        head: head.to_owned(),
        body: body.to_owned(),
        closed,
        latency: started.elapsed(),
    }
}

/// `GET url` with `Host: <host>:9080`; the whole body read.
pub async fn call(client: &HttpClient, url: &str, host: &str, headers: &[(&str, &str)]) -> Outcome {
    let host = format!("{host}:9080");
    let started = Instant::now();
    let (parts, body, _) = send(client, get(url, &host, headers)).await;
    Outcome {
        started,
        status: parts.status.as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
        headers: parts.headers,
        latency: started.elapsed(),
    }
}

/// Runs `clients` concurrent callers, each sending `per_client` requests made by
/// `request(i)` (`(host, path, headers)`); returns every outcome.
pub async fn drive(
    mesh: &Arc<RoutingMesh>,
    clients: usize,
    per_client: usize,
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
) -> Vec<Outcome> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mesh = mesh.clone();
        tasks.push(tokio::spawn(async move {
            let client = http1_client();
            let mut outcomes = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                outcomes.push(mesh.call(&client, host, path, headers).await);
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.expect("client task"));
    }
    outcomes
}

// ---------------------------------------------------------------- assertions

/// The Envoy response flags of a record (empty when none).
pub fn flags(record: &RequestRecord) -> Vec<&str> {
    record.response_flags.split(',').map(str::trim).filter(|f| !f.is_empty() && *f != "-").collect()
}

/// The destination version recorded.
pub fn destination_version(record: &RequestRecord) -> &str {
    record.destination.as_ref().map_or("", |d| d.version.as_str())
}

/// A string attribute of a span.
pub fn span_attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        _ => None,
    })
}

/// A sample of a labelled counter in Prometheus text: the sum over series of `name`
/// whose labels contain `label` (e.g. `result="ok"`).
pub fn labelled(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many outcomes came from each answering workload, with their statuses.
pub fn tally(outcomes: &[Outcome]) -> std::collections::BTreeMap<(u16, String), usize> {
    let mut tally = std::collections::BTreeMap::new();
    for outcome in outcomes {
        *tally.entry((outcome.status, outcome.body.clone())).or_default() += 1;
    }
    tally
}

/// The standard `DestinationRule` for `service`: one subset per version label.
pub fn subsets_rule(service: &str, versions: &[&str], traffic_policy: &str) -> String {
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  name: {service}\nspec:\n  host: {service}\n{traffic_policy}  subsets:\n"
    );
    for version in versions {
        yaml.push_str(&format!("  - name: {version}\n    labels:\n      version: {version}\n"));
    }
    yaml
}

// ---------------------------------------------------------------- continuous traffic

/// Callers sending one request every `pace` each until stopped, keeping every outcome.
pub struct Traffic {
    pub outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Starts `clients` callers of `host` `path` through `mesh`'s proxy.
    pub fn start(mesh: &Arc<RoutingMesh>, clients: usize, pace: Duration, host: &'static str, path: &'static str) -> Traffic {
        let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (mesh, outcomes, stop) = (mesh.clone(), outcomes.clone(), stop.clone());
                tokio::spawn(async move {
                    let client = http1_client();
                    let mut ticks = tokio::time::interval(pace);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::SeqCst) {
                        ticks.tick().await;
                        let outcome = mesh.call(&client, host, path, &[]).await;
                        outcomes.lock().push(outcome);
                    }
                })
            })
            .collect();
        Traffic { outcomes, stop, tasks }
    }

    /// Outcomes of requests sent at or after `since`.
    pub fn sent_since(&self, since: Instant) -> Vec<Outcome> {
        self.outcomes.lock().iter().filter(|o| o.started >= since).cloned().collect()
    }

    /// Waits until `n` requests sent at or after `since` have been answered; returns them.
    pub async fn wait_sent_since(&self, since: Instant, n: usize) -> Vec<Outcome> {
        eventually(&format!("{n} answers to requests sent after the mark"), || {
            let since = self.sent_since(since);
            (since.len() >= n).then_some(since)
        })
        .await
    }

    /// Stops the callers, joins them and returns every outcome.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("caller task");
        }
        std::mem::take(&mut *self.outcomes.lock())
    }
}
