//! The web UI in a real browser: `ui/tests/ui.test.mjs` drives Debian's headless
//! Chromium with playwright-core against a real `meshtel serve` that this test fed with
//! mesh traffic (the Bookinfo pair of [`crate::mesh`], plus a few 404s straight to
//! reviews: an edge with client errors only) and with traces of known shape.
//!
//! ```text
//!  test ──► productpage proxy ──► productpage app ──► reviews proxy ──► reviews app
//!               │  (20 requests, every 5th fails in reviews)   │ --quota-prefetch=false
//!               └──────── reports + spans ──► meshtel serve ◄──┘
//!  test ── OTLP: a 2 s trace (6 spans), 3 fast ones, a 1,000-span trace ──┘   ▲ query port:
//!                                                                            │ UI + APIs
//!  node ui/tests/ui.test.mjs FACTS.json ── Chromium ─────────────────────────┘
//!               └── GET through productpage's outbound (Host: reviews) → 429 once the
//!                   quota made in the UI is in force
//! ```
//!
//! The facts (ids, expected tree order, edges, admin token, where to probe the quota)
//! go to the driver as a JSON file; it prints the timings the issue asks for and exits
//! non-zero with a list of failures. Screenshots land in `target/ui-screenshots/`.
//!
//! Needs node, playwright-core (`bash scripts/test.sh` installs it into
//! `target/ui-node/`) and Chromium (`/usr/bin/chromium`; `.ci/run` installs Debian's).
//! Without them the test fails under CI (`CI=true`) and is skipped loudly elsewhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::Link;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, Status};
use serde_json::{Value, json};
use tonic::service::Routes;

use crate::mesh::{
    Productpage, productpage, productpage_reviews_mesh, reviews_app, wait_for_mesh_reload,
    write_mesh,
};
use crate::support::*;

/// The service of the slow trace and of three fast ones.
const SHOP: &str = "shop-frontend";
/// Spans in the big trace.
const BIG_SPANS: usize = 1_000;
/// The quota the browser creates: 1 request per 10 s from productpage to reviews.
const QUOTA: &str = "ui-reviews-limit";
/// Requests through productpage (every fifth fails in reviews).
const REQUESTS: usize = 20;
/// Requests straight to reviews' inbound that its app answers 404 (a 4xx-only edge).
const CLIENT_ERRORS: usize = 4;
/// The driver's own deadline; the test kills it a little after.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(65);

/// The environment, read through one function (no `set_var` in tests).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the browser test runs with.
struct BrowserTools {
    node: PathBuf,
    node_modules: PathBuf,
    chromium: PathBuf,
}

/// node (`$MESHTEL_TEST_NODE` or on `PATH`), playwright-core (`$MESHTEL_UI_NODE_MODULES`
/// or `target/ui-node/node_modules`) and Chromium (`$MESHTEL_CHROMIUM` or
/// `/usr/bin/chromium`), or what is missing.
fn browser_tools() -> Result<BrowserTools, Vec<String>> {
    let mut missing = Vec::new();
    let node = env("MESHTEL_TEST_NODE").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join("node"))
            .find(|p| p.is_file())
    });
    if node.as_ref().is_none_or(|p| !p.is_file()) {
        missing.push("node (not on PATH; or set MESHTEL_TEST_NODE)".to_string());
    }
    let node_modules = env("MESHTEL_UI_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ui-node/node_modules"));
    if !node_modules.join("playwright-core/package.json").is_file() {
        missing.push(format!(
            "playwright-core in {} (`bash scripts/test.sh` installs ui/tests/package-lock.json there)",
            node_modules.display()
        ));
    }
    let chromium =
        PathBuf::from(env("MESHTEL_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    if !chromium.is_file() {
        missing.push(format!(
            "Chromium at {} (`apt-get install chromium`, as .ci/run does; or set MESHTEL_CHROMIUM)",
            chromium.display()
        ));
    }
    match node {
        Some(node) if missing.is_empty() => Ok(BrowserTools {
            node,
            node_modules,
            chromium,
        }),
        _ => Err(missing),
    }
}

// ---------------------------------------------------------------------------------------
// Traces of known shape
// ---------------------------------------------------------------------------------------

/// One span to send, relative to the trace's start.
struct Planned {
    id: Vec<u8>,
    parent: Option<usize>,
    service: String,
    operation: String,
    start_ms: f64,
    duration_ms: f64,
    error: bool,
    /// A span of another trace this one links to (an OTLP link, a FOLLOWS_FROM
    /// reference to that trace in Jaeger's model).
    link: Option<(Vec<u8>, Vec<u8>)>,
}

impl Planned {
    fn new(
        parent: Option<usize>,
        service: &str,
        operation: &str,
        start_ms: f64,
        duration_ms: f64,
    ) -> Planned {
        Planned {
            id: random_span_id(),
            parent,
            service: service.to_string(),
            operation: operation.to_string(),
            start_ms,
            duration_ms,
            error: false,
            link: None,
        }
    }

    fn id_hex(&self) -> String {
        hex::encode(&self.id)
    }
}

/// Jaeger's display order: depth first from the root, children by start time (then
/// span id).
fn tree_order(spans: &[Planned]) -> Vec<usize> {
    let by_start = |list: &mut Vec<usize>| {
        list.sort_by(|&a, &b| {
            spans[a]
                .start_ms
                .total_cmp(&spans[b].start_ms)
                .then_with(|| spans[a].id.cmp(&spans[b].id))
        });
    };
    let mut children = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match span.parent {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    children.iter_mut().for_each(by_start);
    by_start(&mut roots);
    let mut order = Vec::with_capacity(spans.len());
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    order
}

/// Ancestors of span `i`, nearest first.
fn ancestors(spans: &[Planned], i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = spans[i].parent;
    while let Some(p) = at {
        out.push(p);
        at = spans[p].parent;
    }
    out
}

/// The OTLP request for `spans` of `trace_id` starting at `start_ns`: one resource per
/// service, spans sent in reverse so that no order comes for free.
fn otlp_request(trace_id: &[u8], start_ns: u64, spans: &[Planned]) -> ExportTraceServiceRequest {
    let mut services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    services.reverse();
    let ns = |ms: f64| (ms * 1e6).round() as u64;
    let batches: Vec<ResourceSpans> = services
        .into_iter()
        .map(|service| {
            let otlp: Vec<Span> = spans
                .iter()
                .rev()
                .filter(|s| s.service == service)
                .map(|s| {
                    let mut span = simple_span(
                        trace_id,
                        &s.id,
                        s.parent.map(|p| spans[p].id.as_slice()),
                        &s.operation,
                        start_ns + ns(s.start_ms),
                        ns(s.duration_ms),
                    );
                    if let Some((trace_id, span_id)) = &s.link {
                        span.links.push(Link {
                            trace_id: trace_id.clone(),
                            span_id: span_id.clone(),
                            ..Link::default()
                        });
                    }
                    if s.error {
                        span.status = Some(Status {
                            message: "card declined".into(),
                            code: 2,
                        });
                    }
                    span
                })
                .collect();
            resource_spans(service, otlp)
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: batches,
    }
}

/// The slow trace, 2 s:
///
/// ```text
///  GET /checkout  0 ─────────────────────────────────────── 2000 ms   shop-frontend
///   load-cart      10 ── 210                                            shop-frontend
///    SELECT cart    20 ─ 120                                            shop-cart
///   charge         15 ──────────────────────────────── 1900   (error)  shop-payments
///    fraud-check       300 ───────────────────────── 1800               shop-payments
///   render                                              1920 ── 1990    shop-frontend
/// ```
///
/// Tree order (load-cart, SELECT cart, charge) differs from start order (load-cart,
/// charge, SELECT cart). Critical path (Jaeger's): GET /checkout, render, charge,
/// fraud-check; never SELECT cart. The root links to a span of another trace: it is
/// still the root (no "no root span" badge).
fn slow_trace() -> (Vec<Planned>, Vec<Option<bool>>) {
    let mut spans = vec![
        Planned::new(None, SHOP, "GET /checkout", 0.0, 2000.0),
        Planned::new(Some(0), SHOP, "load-cart", 10.0, 200.0),
        Planned::new(Some(1), "shop-cart", "SELECT cart", 20.0, 100.0),
        Planned::new(Some(0), "shop-payments", "charge", 15.0, 1885.0),
        Planned::new(Some(3), "shop-payments", "fraud-check", 300.0, 1500.0),
        Planned::new(Some(0), SHOP, "render", 1920.0, 70.0),
    ];
    spans[3].error = true;
    spans[0].link = Some((random_trace_id(), random_span_id()));
    let critical = vec![
        Some(true),
        None,
        Some(false),
        Some(true),
        Some(true),
        Some(true),
    ];
    (spans, critical)
}

/// 1,000 spans over 5 services, each span `i > 0` a child of `(i - 1) / 4`, starting
/// later and ending earlier than its parent.
fn big_trace() -> Vec<Planned> {
    (0..BIG_SPANS)
        .map(|i| {
            let parent = (i > 0).then(|| (i - 1) / 4);
            // Starts at i × 0.1 ms, ends at 1000 − i × 0.5 ms: inside its parent.
            let start = i as f64 * 0.1;
            let end = 1000.0 - i as f64 * 0.5;
            Planned::new(
                parent,
                &format!("bulk-{}", i % 5),
                &format!("step-{i:04}"),
                start,
                end - start,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------

/// The driver process; dropping it stops it (SIGTERM, so playwright closes Chromium,
/// then SIGKILL).
struct Driver(Option<Child>);

impl Driver {
    fn stop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_in_headless_chromium() {
    let tools = match browser_tools() {
        Ok(tools) => tools,
        Err(missing) => {
            if env("CI").as_deref() == Some("true") {
                panic!(
                    "the browser test cannot run, missing:\n  - {}",
                    missing.join("\n  - ")
                );
            }
            eprintln!(
                "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! SKIPPED web_ui_in_headless_chromium: the browser test needs        !!!\n\
                 !!!   - {}\n\
                 !!! Run `bash scripts/test.sh` (installs playwright-core) with Debian's !!!\n\
                 !!! chromium installed, as .ci/run does.                               !!!\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
                missing.join("\n!!!   - ")
            );
            return;
        }
    };
    let started = Instant::now();
    let dir = TestDir::new();
    // The shop's pages (served by the driver on *.localhost) may post spans.
    let m = Meshtel::serve_with_config(
        &dir,
        "[ingest.cors]\nallowed_origins = [\"http://shop.localhost:*\"]\n",
    )
    .await;
    let token = eventually(
        Duration::from_secs(5),
        "meshtel prints the generated admin token at first start",
        || async { generated_token(&m.log_text()) },
    )
    .await;
    let collector = format!("http://{}", m.grpc.unwrap());

    // 1. The mesh: productpage → reviews through two sidecars; reviews enforces quotas
    //    with one Check per request (exact counts).
    let mesh_path = dir.path().join("mesh.yaml");
    let mesh_arg = mesh_path.to_str().unwrap().to_string();
    write_mesh(&mesh_path, "services: []\n");
    let outbound = Arc::new(OnceLock::new());
    let productpage_app = AppServer::start(Routes::from(
        Router::new()
            .route("/productpage", routing::get(productpage))
            .route("/productpage/fail", routing::get(productpage))
            .with_state(Productpage {
                outbound: outbound.clone(),
                client: http(),
            }),
    ))
    .await;
    let reviews_app = AppServer::start(Routes::from(reviews_app())).await;
    let sidecar = async |name: &str, service: &str, app: &AppServer, extra: &[&str]| {
        let inbound = format!("127.0.0.1:0={}", app.authority());
        MeshProxy::sidecar(
            &dir,
            name,
            service,
            &mesh_arg,
            &collector,
            Some(&inbound),
            extra,
        )
        .await
    };
    let productpage_proxy = sidecar("productpage-v1", "productpage", &productpage_app, &[]).await;
    let reviews_proxy = sidecar(
        "reviews-v1",
        "reviews",
        &reviews_app,
        &["--quota-prefetch", "false"],
    )
    .await;
    outbound.set(productpage_proxy.outbound).unwrap();
    write_mesh(
        &mesh_path,
        &productpage_reviews_mesh(productpage_proxy.inbound(), reviews_proxy.inbound()),
    );
    wait_for_mesh_reload(&productpage_proxy, 1.0).await;
    let client = http();
    for i in 0..REQUESTS {
        let path = if i % 5 == 4 {
            "/productpage/fail"
        } else {
            "/productpage"
        };
        let reply = client
            .get(format!("http://{}{path}", productpage_proxy.inbound()))
            .send()
            .await
            .expect("GET productpage");
        assert_eq!(
            reply.status(),
            200,
            "GET {path}: {}",
            reply.text().await.unwrap_or_default()
        );
    }
    // An edge with client errors only: straight to reviews' inbound, a path it lacks (404).
    for _ in 0..CLIENT_ERRORS {
        let reply = client
            .get(format!("http://{}/no-such-page", reviews_proxy.inbound()))
            .send()
            .await
            .expect("GET reviews /no-such-page");
        assert_eq!(reply.status(), 404);
    }

    // 2. Traces of known shape: the slow one, three fast ones of the same service, and
    //    the big one.
    let now = now_nanos();
    let (slow, critical) = slow_trace();
    let slow_id = random_trace_id();
    export_grpc(
        m.grpc.unwrap(),
        otlp_request(&slow_id, now - 5_000_000_000, &slow),
    )
    .await;
    let mut fast_ids = Vec::new();
    for k in 0..3u64 {
        let id = random_trace_id();
        let fast = vec![
            Planned::new(None, SHOP, "GET /checkout", 0.0, 20.0 + k as f64),
            Planned::new(Some(0), SHOP, "render", 5.0, 10.0),
        ];
        export_grpc(
            m.grpc.unwrap(),
            otlp_request(&id, now - (4 - k) * 1_000_000_000, &fast),
        )
        .await;
        fast_ids.push(hex::encode(&id));
    }
    let big = big_trace();
    let big_id = random_trace_id();
    export_grpc(
        m.grpc.unwrap(),
        otlp_request(&big_id, now - 3_000_000_000, &big),
    )
    .await;
    let slow_hex = hex::encode(&slow_id);
    let big_hex = hex::encode(&big_id);
    wait_for_trace(&m, &slow_hex, slow.len()).await;
    wait_for_trace(&m, &big_hex, BIG_SPANS).await;
    for id in &fast_ids {
        wait_for_trace(&m, id, 2).await;
    }

    // 3. The graph has both edges before the browser looks.
    let graph_url = m.query_url("/api/graph?window=5m");
    eventually(
        Duration::from_secs(20),
        "the graph shows both mesh edges",
        || async {
            let graph = get_json(&graph_url).await;
            let edges = graph["elements"]["edges"].as_array()?.clone();
            let has = |s: &str, t: &str| {
                edges
                    .iter()
                    .any(|e| e["data"]["source"] == s && e["data"]["target"] == t)
            };
            (has("unknown_source", "wl_default_productpage-v1")
                && has("wl_default_productpage-v1", "wl_default_reviews-v1")
                && has("unknown_source", "wl_default_reviews-v1"))
            .then_some(())
        },
    )
    .await;

    // 4. The facts, then the driver.
    let order = tree_order(&slow);
    let slow_spans: Vec<Value> = order
        .iter()
        .map(|&i| {
            let s = &slow[i];
            json!({
                "spanId": s.id_hex(),
                "service": s.service,
                "operation": s.operation,
                "depth": ancestors(&slow, i).len(),
                "ancestors": ancestors(&slow, i).iter().map(|&a| slow[a].id_hex()).collect::<Vec<_>>(),
                "error": s.error,
                "critical": critical[i],
                "collapse": s.operation == "charge",
            })
        })
        .collect();
    let screenshots = repo().join("target/ui-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let probe: SocketAddr = productpage_proxy.outbound;
    let facts = json!({
        "baseUrl": m.query_url(""),
        "screenshotsDir": screenshots,
        "adminToken": token,
        "timeoutMs": DRIVER_TIMEOUT.as_millis() as u64,
        "maxInteractiveMs": 5000,
        "slow": {
            "traceId": slow_hex,
            "service": SHOP,
            "minDuration": "1s",
            "durationUs": 2_000_000,
            "otherTraceIds": fast_ids,
            "spans": slow_spans,
            "searchOperation": "fraud-check",
        },
        "big": {
            "traceId": big_hex,
            "spanCount": BIG_SPANS,
            "order": tree_order(&big).iter().map(|&i| big[i].id_hex()).collect::<Vec<_>>(),
        },
        "graph": {
            "edges": [
                {"source": "unknown_source", "target": "wl_default_productpage-v1",
                 "sourceApp": "unknown", "targetApp": "productpage", "errors": false},
                {"source": "wl_default_productpage-v1", "target": "wl_default_reviews-v1",
                 "sourceApp": "productpage", "targetApp": "reviews", "errors": true},
                // 404s only: an error rate as /api/graph's httpPercentErr (Kiali) counts it.
                {"source": "unknown_source", "target": "wl_default_reviews-v1",
                 "sourceApp": "unknown", "targetApp": "reviews", "errors": true,
                 "clientErrorsOnly": true},
            ],
        },
        "metrics": { "services": ["productpage", "reviews"] },
        "cors": {
            "otlpUrl": m.http_url("/v1/traces"),
            "allowedName": "shop",
            "deniedName": "evil",
        },
        "quota": {
            "name": QUOTA,
            "sourceService": "productpage",
            "destinationService": "reviews",
            "maxAmount": 1,
            "validDuration": "10s",
            "invalidValidDuration": "soon",
            "probe": {
                "url": format!("http://{probe}/reviews/0"),
                "headers": { "host": "reviews:9080" },
            },
        },
    });
    let facts_path = dir.path().join("ui-facts.json");
    std::fs::write(&facts_path, serde_json::to_vec_pretty(&facts).unwrap()).unwrap();
    eprintln!(
        "ui: scenario ready after {:.1} s; running the browser test",
        started.elapsed().as_secs_f64()
    );
    let status = run_driver(&tools, &facts_path).await;
    assert!(
        status.success(),
        "the browser test failed ({status}); its output is above, screenshots in {}\n\
         meshtel log (tail):\n{}",
        screenshots.display(),
        tail(&m.log_text(), 40)
    );
    eprintln!("ui: done in {:.1} s", started.elapsed().as_secs_f64());
    drop(productpage_proxy);
    drop(reviews_proxy);
    productpage_app.stop().await;
    reviews_app.stop().await;
    m.stop().await;
}

/// Runs `node ui/tests/ui.test.mjs FACTS`, its output streamed to ours, within
/// [`DRIVER_TIMEOUT`] (plus a margin for Chromium to close).
async fn run_driver(tools: &BrowserTools, facts: &Path) -> std::process::ExitStatus {
    let script = repo().join("ui/tests/ui.test.mjs");
    let child = Command::new(&tools.node)
        .arg(&script)
        .arg(facts)
        .env("MESHTEL_UI_NODE_MODULES", &tools.node_modules)
        .env("MESHTEL_CHROMIUM", &tools.chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", tools.node.display(), script.display()));
    let mut driver = Driver(Some(child));
    let deadline = Instant::now() + DRIVER_TIMEOUT + Duration::from_secs(10);
    loop {
        let child = driver.0.as_mut().expect("the driver runs");
        if let Some(status) = child.try_wait().unwrap() {
            driver.0 = None;
            return status;
        }
        if Instant::now() > deadline {
            driver.stop();
            panic!("the browser test did not finish within {DRIVER_TIMEOUT:?} (+10 s)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
