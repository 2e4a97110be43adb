//! Traffic rules end to end (issue 5, seed scenario 3): Bookinfo's "delay fault with a
//! retry" through real `meshtel proxy` processes with `--rules DIR`, scaled down 5×.
//!
//! ```text
//!  test ─end-user: jason─► productpage proxy ─► productpage app
//!                              │ outbound: reviews, perTryTimeout 0.6 s, 1 retry
//!                              ▼  (gateway-error) → 504 UT after ~1.2 s
//!                          reviews proxy ─► reviews app (v2) ── detached call ──┐
//!                              │ outbound: ratings, jason → fixedDelay 1.4 s (DI) ◄┘
//!                              ▼
//!                          ratings proxy ─► ratings app
//! ```
//!
//! Istio's task has a 7 s delay under a 3 s per-try timeout; here 1.4 s and 0.6 s. So
//! productpage sees 504 after two timed-out attempts (~1.2 s), each attempt reaches
//! reviews (two server spans under productpage's client span), and reviews' calls to
//! ratings still complete after 1.4 s. Jaeger's search for slow productpage traces
//! finds exactly that one.
//!
//! Declared in `mesh.rs` as `traffic_routing` (a module `routing` would clash with
//! `axum::routing` there): run with `cargo test --test it traffic_routing`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing;
use serde_json::{Value, json};
use tonic::service::Routes;

use crate::support::*;

use super::{PROPAGATED, wait_for_mesh_reload, write_mesh};

const PER_TRY_TIMEOUT: Duration = Duration::from_millis(600);
const RATINGS_DELAY: Duration = Duration::from_millis(1_400);

/// reviews → v2 with one retry of a 0.6 s try; ratings delayed 1.4 s for jason.
const RULES: &str = "\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
    retries:
      attempts: 1
      perTryTimeout: 0.6s
      retryOn: gateway-error
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      delay:
        percentage:
          value: 100.0
        fixedDelay: 1.4s
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  subsets:
  - name: v1
    labels:
      version: v1
";

/// An app that calls another service through its sidecar's outbound listener,
/// copying the trace headers and `end-user`.
#[derive(Clone)]
struct Caller {
    outbound: Arc<OnceLock<SocketAddr>>,
    client: reqwest::Client,
    /// Every outgoing call that completed: status and how long it took.
    completed: Arc<Mutex<Vec<(u16, Duration)>>>,
}

impl Caller {
    fn new() -> Caller {
        Caller {
            outbound: Arc::new(OnceLock::new()),
            client: http(),
            completed: Arc::default(),
        }
    }

    async fn call(&self, host: &str, path: &str, incoming: &HeaderMap) -> (u16, String, Duration) {
        let outbound = *self
            .outbound
            .get()
            .expect("the proxy runs before any traffic");
        let mut call = self
            .client
            .get(format!("http://{outbound}{path}"))
            .header("host", host);
        for name in PROPAGATED.iter().chain(&["end-user"]) {
            if let Some(value) = incoming.get(*name) {
                call = call.header(*name, value.clone());
            }
        }
        let started = Instant::now();
        let (status, body) = match call.send().await {
            Ok(reply) => (
                reply.status().as_u16(),
                reply.text().await.unwrap_or_default(),
            ),
            Err(error) => (0, format!("unreachable: {error}")),
        };
        let took = started.elapsed();
        self.completed.lock().unwrap().push((status, took));
        (status, body, took)
    }
}

/// productpage: calls reviews; always answers 200 with what reviews did (Bookinfo
/// shows "reviews unavailable" rather than failing).
async fn productpage(State(app): State<Caller>, headers: HeaderMap) -> axum::Json<Value> {
    let (status, body, took) = app.call("reviews:9080", "/reviews/0", &headers).await;
    axum::Json(json!({
        "reviews_status": status,
        "reviews_ms": took.as_millis() as u64,
        "reviews_body": body,
    }))
}

/// reviews v2: calls ratings in a detached task, so that the call completes even when
/// reviews' own caller gives up.
async fn reviews(State(app): State<Caller>, headers: HeaderMap) -> String {
    let call = tokio::spawn(async move { app.call("ratings:9080", "/ratings/0", &headers).await });
    match call.await {
        Ok((status, body, _)) => format!("reviews-v2: ratings {status}: {body}"),
        Err(error) => format!("reviews-v2: ratings call failed: {error}"),
    }
}

/// Spans of `trace` in `service` (Jaeger process name) with `span.kind` = `kind`.
fn spans_of<'a>(trace: &'a Value, service: &str, kind: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|s| {
            let process = s["processID"].as_str().unwrap_or_default();
            trace["processes"][process]["serviceName"] == service && tag(s, "span.kind") == kind
        })
        .collect()
}

/// A tag's value as text (`""` when absent).
fn tag(span: &Value, key: &str) -> String {
    span["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["key"] == key))
        .map(|t| match &t["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

fn parent_of(span: &Value) -> String {
    span["references"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["refType"] == "CHILD_OF"))
        .and_then(|r| r["spanID"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn duration_of(span: &Value) -> Duration {
    Duration::from_micros(
        span["duration"]
            .as_u64()
            .unwrap_or_else(|| panic!("duration of {span:#}")),
    )
}

/// Waits until every proxy has the rules in force (`/config_dump`); a proxy without
/// `/config_dump` is not waited for (the proxy tests check it).
async fn wait_for_rules(proxies: &[&MeshProxy]) {
    for proxy in proxies {
        eventually(
            Duration::from_secs(10),
            "the proxy loads the rules",
            || async {
                let reply = get(&proxy.admin_url("/config_dump")).await;
                if reply.status == 404 {
                    return Some(());
                }
                let dump: Value = serde_json::from_slice(&reply.body).ok()?;
                let services = dump["rules"]["virtual_services"].as_array()?.len();
                (services == 2).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_delay_fault_under_a_per_try_timeout_gives_504_ut_and_one_slow_trace() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let collector = format!("http://{}", m.grpc.unwrap());
    let mesh_path = dir.path().join("mesh.yaml");
    let mesh_arg = mesh_path.to_str().unwrap().to_string();
    write_mesh(&mesh_path, "services: []\n");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("bookinfo.yaml"), RULES).unwrap();
    let rules_arg = rules_dir.to_str().unwrap().to_string();

    let productpage_caller = Caller::new();
    let reviews_caller = Caller::new();
    let productpage_app = AppServer::start(Routes::from(
        Router::new()
            .route("/productpage", routing::get(productpage))
            .with_state(productpage_caller.clone()),
    ))
    .await;
    let reviews_app = AppServer::start(Routes::from(
        Router::new()
            .route("/reviews/{id}", routing::get(reviews))
            .with_state(reviews_caller.clone()),
    ))
    .await;
    let ratings_app = AppServer::start(Routes::from(Router::new().route(
        "/ratings/{id}",
        routing::get(|| async { "ratings-v1: 5 stars" }),
    )))
    .await;
    let sidecar = async |service: &str, version: &str, app: &AppServer| {
        let inbound = format!("127.0.0.1:0={}", app.authority());
        let args = [
            "--mesh",
            &mesh_arg,
            "--rules",
            &rules_arg,
            "--service",
            service,
            "--version",
            version,
            "--inbound",
            &inbound,
            "--collector",
            &collector,
            "--sampling",
            "100",
        ];
        MeshProxy::start(&dir, &format!("{service}-{version}"), &args).await
    };
    let productpage_proxy = sidecar("productpage", "v1", &productpage_app).await;
    let reviews_proxy = sidecar("reviews", "v2", &reviews_app).await;
    let ratings_proxy = sidecar("ratings", "v1", &ratings_app).await;
    productpage_caller
        .outbound
        .set(productpage_proxy.outbound)
        .unwrap();
    reviews_caller.outbound.set(reviews_proxy.outbound).unwrap();
    let endpoint = |service: &str, version: &str, proxy: &MeshProxy| {
        format!(
            "  - name: {service}\n    port: 9080\n    endpoints:\n      - address: {}\n        \
             workload: {service}-{version}\n        labels: {{ app: {service}, version: {version} }}\n",
            proxy.inbound()
        )
    };
    write_mesh(
        &mesh_path,
        &format!(
            "services:\n{}{}{}",
            endpoint("productpage", "v1", &productpage_proxy),
            endpoint("reviews", "v2", &reviews_proxy),
            endpoint("ratings", "v1", &ratings_proxy),
        ),
    );
    for proxy in [&productpage_proxy, &reviews_proxy] {
        wait_for_mesh_reload(proxy, 1.0).await;
    }
    wait_for_rules(&[&productpage_proxy, &reviews_proxy]).await;
    let logs = || {
        format!(
            "productpage proxy:\n{}\nreviews proxy:\n{}",
            productpage_proxy.log_text(),
            reviews_proxy.log_text()
        )
    };

    // 1. Everyone but jason: fast and 200 all the way down.
    let client = http();
    let page = |end_user: Option<&'static str>, traceparent: Option<String>| {
        let mut request = client.get(format!(
            "http://{}/productpage",
            productpage_proxy.inbound()
        ));
        if let Some(user) = end_user {
            request = request.header("end-user", user);
        }
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        async move {
            let started = Instant::now();
            let reply = request.send().await.expect("GET productpage");
            assert_eq!(reply.status(), 200);
            let bytes = reply.bytes().await.expect("productpage body");
            let body: Value = serde_json::from_slice(&bytes).expect("productpage JSON");
            (body, started.elapsed())
        }
    };
    for user in [None, Some("mary"), None, Some("bob"), None] {
        let (body, took) = page(user, None).await;
        assert_eq!(body["reviews_status"], 200, "{user:?}: {body}\n{}", logs());
        let reviews_body = body["reviews_body"].as_str().unwrap_or_default();
        assert!(
            reviews_body.contains("ratings 200: ratings-v1"),
            "{user:?}: {body}"
        );
        assert!(
            took < Duration::from_secs(1),
            "{user:?} took {took:?}: {body}"
        );
    }

    // 2. jason: two 0.6 s tries of reviews time out (ratings is delayed 1.4 s) → 504.
    let trace_id = hex::encode(random_trace_id());
    let traceparent = format!("00-{trace_id}-{}-01", hex::encode(random_span_id()));
    let (body, _) = page(Some("jason"), Some(traceparent)).await;
    assert_eq!(body["reviews_status"], 504, "{body}\n{}", logs());
    let reviews_ms = body["reviews_ms"].as_u64().unwrap();
    assert!(
        (1_100..=1_800).contains(&reviews_ms),
        "productpage got its 504 after {reviews_ms} ms; two tries of {PER_TRY_TIMEOUT:?} expected"
    );
    // reviews' detached calls to ratings both complete, each after the 1.4 s delay.
    let completed = eventually(
        Duration::from_secs(5),
        "reviews' two calls to ratings complete",
        || async {
            let calls = reviews_caller.completed.lock().unwrap().clone();
            let slow: Vec<_> = calls
                .into_iter()
                .filter(|(_, took)| *took >= RATINGS_DELAY)
                .collect();
            (slow.len() >= 2).then_some(slow)
        },
    )
    .await;
    eprintln!(
        "jason: productpage got 504 after {reviews_ms} ms; reviews' ratings calls: {completed:?}"
    );
    assert_eq!(
        completed.len(),
        2,
        "one ratings call per reviews attempt: {completed:?}"
    );
    assert!(
        completed.iter().all(|(status, _)| *status == 200),
        "{completed:?}"
    );

    // 3. Jaeger: the slow productpage traces are exactly jason's.
    let now_us = now_nanos() / 1_000;
    let search = m.query_url(&format!(
        "/api/traces?service=productpage.default&minDuration=1s&lookback=1h&limit=20&start={}&end={}",
        now_us - 3_600_000_000,
        now_us + 60_000_000
    ));
    // Complete once the two ratings client spans (the last to end) are in.
    let trace = eventually(
        Duration::from_secs(15),
        "the slow trace with both ratings calls",
        || async {
            let found = get_json(&search).await;
            let traces = found["data"].as_array()?;
            let trace = traces.iter().find(|t| t["traceID"] == trace_id.as_str())?;
            (spans_of(trace, "reviews.default", "client").len() >= 2).then(|| trace.clone())
        },
    )
    .await;
    let found = get_json(&search).await;
    let ids: Vec<&str> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["traceID"].as_str())
        .collect();
    assert_eq!(ids, [trace_id.as_str()], "only jason's request is slow");

    let outbound = spans_of(&trace, "productpage.default", "client");
    assert_eq!(outbound.len(), 1, "{trace:#}");
    let outbound = outbound[0];
    assert!(
        tag(outbound, "response_flags").contains("UT"),
        "{outbound:#}"
    );
    assert_eq!(
        tag(outbound, "http.response.status_code"),
        "504",
        "{outbound:#}"
    );
    let took = duration_of(outbound);
    assert!(
        (Duration::from_millis(1_100)..=Duration::from_millis(1_800)).contains(&took),
        "productpage's client span lasted {took:?}"
    );
    let attempts = spans_of(&trace, "reviews.default", "server");
    assert_eq!(attempts.len(), 2, "two tries of reviews: {trace:#}");
    let outbound_id = outbound["spanID"].as_str().unwrap();
    for attempt in &attempts {
        assert_eq!(
            parent_of(attempt),
            outbound_id,
            "each try is under productpage's client span: {attempt:#}"
        );
        // productpage's proxy gave up on the try: reviews' proxy saw its caller go.
        assert!(tag(attempt, "response_flags").contains("DC"), "{attempt:#}");
    }
    let ratings_calls = spans_of(&trace, "reviews.default", "client");
    assert_eq!(ratings_calls.len(), 2, "{trace:#}");
    let attempt_ids: Vec<&str> = attempts
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    let mut parents: Vec<String> = ratings_calls.iter().map(|s| parent_of(s)).collect();
    parents.sort();
    let mut want: Vec<String> = attempt_ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(parents, want, "one ratings call under each try");
    for call in &ratings_calls {
        assert!(
            duration_of(call) >= RATINGS_DELAY,
            "the ratings call lasted {:?}",
            duration_of(call)
        );
        assert!(tag(call, "response_flags").contains("DI"), "{call:#}");
        assert_eq!(tag(call, "http.response.status_code"), "200", "{call:#}");
    }

    // 4. The collector's istio_requests_total carries the flags.
    let metrics_url = m.http_url("/metrics");
    eventually(
        Duration::from_secs(10),
        "UT and DI in istio_requests_total",
        || async {
            let samples = parse_prometheus_text(&get(&metrics_url).await.text());
            let sum = |service: &str, code: &str, flag: &str| -> f64 {
                samples
                    .iter()
                    .filter(|s| {
                        s.name == "istio_requests_total"
                            && s.label("reporter") == "source"
                            && s.label("destination_service_name") == service
                            && s.label("response_code") == code
                            && s.label("response_flags").split(',').any(|f| f == flag)
                    })
                    .map(|s| s.value)
                    .sum()
            };
            (sum("reviews", "504", "UT") == 1.0 && sum("ratings", "200", "DI") == 2.0).then_some(())
        },
    )
    .await;

    // 5. The service graph shows them on the edges, as Kiali does: response code →
    //    flags → share of the edge's requests.
    let graph_url = m.query_url("/api/graph?window=5m");
    eventually(
        Duration::from_secs(15),
        "UT on productpage → reviews and DI on reviews → ratings in the graph",
        || async {
            let graph = get_json(&graph_url).await;
            let flags_of = |source: &str, target: &str, code: &str| -> Vec<String> {
                graph["elements"]["edges"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| &e["data"])
                    .find(|e| e["source"] == source && e["target"] == target)
                    .and_then(|e| e["traffic"]["responses"][code]["flags"].as_object())
                    .map(|flags| flags.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let ut = flags_of("wl_default_productpage-v1", "wl_default_reviews-v2", "504");
            let di = flags_of("wl_default_reviews-v2", "wl_default_ratings-v1", "200");
            (ut.iter().any(|f| f.split(',').any(|f| f == "UT")) && di.iter().any(|f| f.split(',').any(|f| f == "DI")))
                .then_some(())
        },
    )
    .await;

    productpage_app.stop().await;
    reviews_app.stop().await;
    ratings_app.stop().await;
}
