//! `meshtel demo` end to end: each test runs the real binary's demo (collector, query,
//! the Bookinfo apps and their proxies, the load generator, all in one process) on
//! 127.0.0.1 port-0 listeners, with one scenario, and checks what a user would see:
//! `istio_requests_total` on `/metrics`, the graph API, the Jaeger API, the pages
//! themselves, the proxies' admin counters. Then SIGINT: the process must exit 0 within
//! [`STOP_TIMEOUT`], its listeners closed.
//!
//! ```text
//!  test ──► meshtel demo --scenario NAME --rate 40 --listeners-file F ...
//!             │ F: server, ingress and every instance's app / inbound / outbound / admin
//!             ▼
//!           /metrics · /api/graph · /api/traces · /api/demo · productpage · proxy admin
//! ```
//!
//! - [`routing`]: route-all-v1, jason-to-v2, the splits, all-v3, mirror-to-v2,
//!   canary-v2-buggy;
//! - [`resilience`]: delay-jason, abort-jason, circuit-breaker, eject-broken-instance,
//!   rate-limit-ratings;
//! - [`quotas`]: switching around a quota policy of the user's own;
//! - here: the harness and the demo without a scenario, switched live with
//!   `meshtel demo apply`.
//!
//! Run with `cargo test --test it demo`.

mod quotas;
mod resilience;
mod routing;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// How long the demo may take to answer (two demos start at once on two cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the demo may take to exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Page loads per second in the tests: results come fast, two demos still fit.
const TEST_RATE: &str = "40";
/// The admin token the tests give the demo.
const ADMIN_TOKEN: &str = "demo-test-token";
/// How long to wait for the traffic a check needs.
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(20);

/// One running `meshtel demo`. Dropping it kills the process.
pub struct Demo {
    child: Option<Child>,
    _dir: TestDir,
    listeners_file: PathBuf,
    log: PathBuf,
    addresses: Value,
}

impl Demo {
    /// `meshtel demo --scenario NAME` (or none) on port-0 listeners, waiting until it
    /// answers.
    pub async fn start(scenario: Option<&str>) -> Demo {
        let dir = TestDir::new();
        let listeners_file = dir.path().join("demo-listeners.json");
        let log = dir.path().join("demo.log");
        let log_file = File::create(&log).expect("creating the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
        command
            .arg("demo")
            .arg("--data-dir")
            .arg(dir.data_dir())
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--zipkin-listen", "127.0.0.1:0"])
            .args(["--query-listen", "127.0.0.1:0"])
            .args(["--ingress-listen", "127.0.0.1:0"])
            .args(["--rate", TEST_RATE])
            .args(["--admin-token", ADMIN_TOKEN])
            // A safety net: the test stops it long before.
            .args(["--duration", "90s"])
            .arg("--listeners-file")
            .arg(&listeners_file);
        if let Some(scenario) = scenario {
            command.args(["--scenario", scenario]);
        }
        // Hermetic: nothing of the developer's MESHTEL_* settings leaks in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MESHTEL_") {
                command.env_remove(key);
            }
        }
        command
            .env("RUST_LOG", "warn,meshtel::demo=info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = command.spawn().expect("spawning meshtel demo");
        let mut demo = Demo {
            child: Some(child),
            _dir: dir,
            listeners_file,
            log,
            addresses: Value::Null,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = demo.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "meshtel demo exited during startup with {status}\n{}",
                    demo.log_text()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&demo.listeners_file)
                && let Ok(json) = serde_json::from_str::<Value>(&text)
            {
                demo.addresses = json;
                return demo;
            }
            assert!(
                Instant::now() < deadline,
                "meshtel demo did not answer within {START_TIMEOUT:?}\n{}",
                demo.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self._dir.data_dir()
    }

    /// What the demo printed and logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn address(&self, path: &[&str]) -> SocketAddr {
        let mut value = &self.addresses;
        for key in path {
            value = &value[*key];
        }
        value
            .as_str()
            .unwrap_or_else(|| panic!("{path:?} in {}", self.addresses))
            .parse()
            .unwrap()
    }

    /// `http://<query>` + `path`.
    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address(&["query"]))
    }

    /// The query service's base URL, as `meshtel demo --server` takes it.
    pub fn query_base(&self) -> String {
        self.query_url("")
    }

    /// An instance's proxy admin URL + `path`.
    pub fn admin_url(&self, workload: &str, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.address(&["instances", workload, "admin"])
        )
    }

    /// A proxy admin counter (summed over its label sets matching `labels`).
    pub async fn proxy_stat(&self, workload: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = get(&self.admin_url(workload, "/stats/prometheus"))
            .await
            .text();
        parse_prometheus_text(&text)
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .map(|s| s.value)
            .sum()
    }

    /// Every `istio_requests_total` sample.
    pub async fn requests(&self) -> Requests {
        let url = format!("http://{}/metrics", self.address(&["http"]));
        let samples = parse_prometheus_text(&get(&url).await.text());
        Requests(
            samples
                .into_iter()
                .filter(|s| s.name == "istio_requests_total")
                .collect(),
        )
    }

    /// Loads productpage as `user` (or anonymously) and returns the page's JSON and how
    /// long it took.
    pub async fn page(&self, user: Option<&str>) -> (Value, Duration) {
        let mut request = http()
            .get(format!("http://{}/productpage", self.address(&["ingress"])))
            .header("accept", "application/json");
        if let Some(user) = user {
            request = request.header("end-user", user);
        }
        let started = Instant::now();
        let reply = request.send().await.expect("GET productpage");
        assert_eq!(reply.status(), 200, "productpage always answers 200");
        let body = reply.bytes().await.expect("productpage body");
        let page = serde_json::from_slice(&body).expect("productpage JSON");
        (page, started.elapsed())
    }

    /// `GET /api/graph?window=5m`: the edge `source → target` (node ids, see [`wl`]), if
    /// any.
    pub async fn graph_edge(&self, source: &str, target: &str) -> Option<Value> {
        let graph = get_json(&self.query_url("/api/graph?window=5m")).await;
        graph["elements"]["edges"]
            .as_array()?
            .iter()
            .map(|e| &e["data"])
            .find(|e| e["source"] == source && e["target"] == target)
            .cloned()
    }

    /// `GET /api/demo`.
    pub async fn overview(&self) -> Value {
        get_json(&self.query_url("/api/demo")).await
    }

    /// SIGINT (Ctrl-C), then a clean exit within [`STOP_TIMEOUT`]: status 0, the
    /// listeners file removed, the ingress closed.
    pub async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let ingress = self.address(&["ingress"]);
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "meshtel demo did not stop within {STOP_TIMEOUT:?} of SIGINT\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let log = self.log_text();
        assert!(exit.success(), "meshtel demo exited with {exit}\n{log}");
        assert!(
            !self.listeners_file.exists(),
            "listeners file left behind\n{log}"
        );
        assert!(
            std::net::TcpStream::connect_timeout(&ingress, Duration::from_millis(500)).is_err(),
            "the ingress still accepts connections after the exit"
        );
        assert!(log.contains("demo stopped after"), "{log}");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The graph node id of a workload in `default`.
pub fn wl(workload: &str) -> String {
    format!("wl_default_{workload}")
}

/// `istio_requests_total` samples, summed by label filters.
pub struct Requests(Vec<PromSample>);

impl Requests {
    /// The sum over samples with every `(label, value)`; a `response_flags` value
    /// matches when it is one of the sample's comma-separated flags.
    pub fn sum(&self, wanted: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| {
                wanted.iter().all(|(k, v)| {
                    let have = s.label(k);
                    if *k == "response_flags" {
                        have.split(',').any(|f| f == *v)
                    } else {
                        have == *v
                    }
                })
            })
            .map(|s| s.value)
            .sum()
    }

    /// Calls from productpage's proxy to `workload` (reporter `source`).
    pub fn sent_by_productpage_to(&self, workload: &str) -> f64 {
        self.sum(&[
            ("reporter", "source"),
            ("source_workload", "productpage-v1"),
            ("destination_workload", workload),
        ])
    }

    /// Requests reported by `workload`'s own proxy (reporter `destination`).
    pub fn received_by(&self, workload: &str) -> f64 {
        self.sum(&[
            ("reporter", "destination"),
            ("destination_workload", workload),
        ])
    }
}

/// Waits until `check` over fresh `istio_requests_total` samples returns `Some`.
pub async fn wait_for_requests<T>(
    demo: &Demo,
    what: &str,
    check: impl Fn(&Requests) -> Option<T>,
) -> T {
    let deadline = Instant::now() + TRAFFIC_TIMEOUT;
    loop {
        let requests = demo.requests().await;
        if let Some(value) = check(&requests) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TRAFFIC_TIMEOUT:?}: {what}\n{}",
            demo.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `meshtel demo <args> --server <demo>` and returns (success, stdout + stderr).
fn demo_cli(demo: &Demo, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meshtel"))
        .arg("demo")
        .args(args)
        .args(["--server", &demo.query_base()])
        .env_remove("MESHTEL_QUERY_URL")
        .output()
        .expect("running meshtel demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_without_a_scenario_rotates_reviews_and_switches_live() {
    let demo = Demo::start(None).await;
    let log = demo.log_text();
    for wanted in [
        "/productpage",
        "/graph",
        "/metrics",
        "/api/traces?service=productpage.default",
        "/api/graph?window=5m",
        "meshtel demo apply NAME",
        "Ctrl-C",
    ] {
        assert!(log.contains(wanted), "the guide shows {wanted:?}:\n{log}");
    }

    // A second demo on the same directory is refused before it wipes anything.
    let second = Command::new(env!("CARGO_BIN_EXE_meshtel"))
        .arg("demo")
        .arg("--data-dir")
        .arg(demo.data_dir())
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--zipkin-listen", "127.0.0.1:0"])
        .args(["--query-listen", "127.0.0.1:0", "--ingress-listen", "127.0.0.1:0", "--duration", "5s"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running a second meshtel demo");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second demo on the same directory started:\n{said}");
    assert!(said.contains("is in use by another meshtel process"), "{said}");
    assert!(demo.data_dir().join("meshtel.db").exists(), "the running demo's data is still there");

    // Bookinfo without routing rules: reviews rotates, details v2 stays dark.
    wait_for_requests(&demo, "traffic to every reviews version", |r| {
        ["reviews-v1", "reviews-v2", "reviews-v3"]
            .iter()
            .all(|w| r.sent_by_productpage_to(w) >= 10.0)
            .then_some(())
    })
    .await;
    let requests = demo.requests().await;
    assert_eq!(requests.sum(&[("destination_workload", "details-v2")]), 0.0);
    assert!(requests.received_by("ratings-v1") > 0.0);
    // Every proxy of the demo is in Istio's default cluster (Kiali drops series of a
    // known namespace whose cluster is unknown); only callers outside the mesh (the
    // load generator at the ingress) have an unknown one.
    for sample in &requests.0 {
        let outside = sample.label("source_workload") == "unknown";
        let source = if outside { "unknown" } else { "Kubernetes" };
        assert_eq!(sample.label("source_cluster"), source, "{sample:?}");
        if sample.label("destination_workload") != "unknown" {
            assert_eq!(
                sample.label("destination_cluster"),
                "Kubernetes",
                "{sample:?}"
            );
        }
    }

    // One trace across the four services, found by the Jaeger API.
    let search = demo.query_url("/api/traces?service=productpage.default&limit=50&lookback=1h");
    eventually(
        Duration::from_secs(15),
        "a productpage trace through details, reviews and ratings",
        || async {
            let found = get_json(&search).await;
            found["data"].as_array()?.iter().find_map(|trace| {
                let services: std::collections::BTreeSet<&str> = trace["processes"]
                    .as_object()?
                    .values()
                    .filter_map(|p| p["serviceName"].as_str())
                    .collect();
                (services.len() == 4 && services.contains("ratings.default")).then_some(())
            })
        },
    )
    .await;

    let overview = demo.overview().await;
    assert_eq!(overview["current"], Value::Null);
    assert_eq!(overview["scenarios"].as_array().unwrap().len(), 12);
    assert!(
        overview["traffic"]["ok"].as_u64().unwrap() > 0,
        "{overview}"
    );

    // Switching live: `meshtel demo apply` returns once every proxy has the rules.
    let (ok, text) = demo_cli(&demo, &["list"]);
    assert!(ok, "{text}");
    assert!(text.contains("canary-v2-buggy"), "{text}");
    let (ok, text) = demo_cli(&demo, &["apply", "no-such-scenario"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("unknown scenario \"no-such-scenario\""),
        "{text}"
    );
    let (ok, text) = demo_cli(&demo, &["apply", "route-all-v1"]);
    assert!(ok, "{text}");
    assert!(text.contains("Look at:"), "{text}");
    assert_eq!(demo.overview().await["current"], "route-all-v1");
    // Calls in flight at the switch are reported within a few hundred ms.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = demo.requests().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = demo.requests().await;
    let delta = |w: &str| after.sent_by_productpage_to(w) - before.sent_by_productpage_to(w);
    assert!(
        delta("reviews-v1") >= 30.0,
        "v1 took over: {}",
        delta("reviews-v1")
    );
    assert_eq!(
        delta("reviews-v2") + delta("reviews-v3"),
        0.0,
        "v2 and v3 are out"
    );
    let (ok, text) = demo_cli(&demo, &["list"]);
    assert!(ok && text.contains("* route-all-v1"), "{text}");

    demo.stop().await;
}

/// `meshtel demo list` pointed at a query service that runs no demo says so, and
/// names the flag to point elsewhere; `--url`, its earlier name, is still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_list_against_a_plain_server_says_it_runs_no_demo() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    for flag in ["--server", "--url"] {
        let output = Command::new(env!("CARGO_BIN_EXE_meshtel"))
            .args(["demo", "list", flag, &m.query_url("")])
            .env_remove("MESHTEL_QUERY_URL")
            .output()
            .expect("running meshtel demo list");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag}: {text}");
        assert!(
            text.contains("runs no demo") && text.contains("/api/demo"),
            "{flag}: {text}"
        );
    }
}
