//! Bookinfo: metrics, graph, traces, collector down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing;
use serde_json::Value;
use tonic::service::Routes;

use crate::support::*;

use super::istio_metrics::{
    ISTIO_LABELS, expected_counts, istio_series_summary, promtool_check_metrics,
    reviews_series_labels, series_counts,
};
use super::{
    FAILING, OUTAGE_REQUESTS, Productpage, REQUESTS, productpage, productpage_reviews_mesh,
    reviews_app, wait_for_mesh_reload, write_mesh,
};

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Sends one request to productpage through its sidecar; returns the latency.
async fn call_productpage(
    client: &reqwest::Client,
    inbound: SocketAddr,
    fail: bool,
    traceparent: Option<&str>,
) -> Duration {
    let path = if fail {
        "/productpage/fail"
    } else {
        "/productpage"
    };
    let mut request = client.get(format!("http://{inbound}{path}"));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let started = Instant::now();
    let reply = request.send().await.expect("GET productpage");
    let status = reply.status().as_u16();
    let body = reply.text().await.expect("productpage body");
    let elapsed = started.elapsed();
    let want = if fail { "reviews 500" } else { "reviews 200" };
    assert_eq!(status, 200, "GET {path}: {body}");
    assert!(body.contains(want), "GET {path}: {body}");
    elapsed
}

fn edge<'a>(graph: &'a Value, source: &str, target: &str) -> Option<&'a Value> {
    graph["elements"]["edges"]
        .as_array()?
        .iter()
        .map(|e| &e["data"])
        .find(|e| e["source"] == source && e["target"] == target)
}

/// The span of `trace` in `service` (Jaeger process name) with `span.kind` = `kind`.
fn span_of<'a>(trace: &'a Value, service: &str, kind: &str) -> &'a Value {
    let spans = trace["spans"].as_array().unwrap();
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            let process = s["processID"].as_str().unwrap();
            trace["processes"][process]["serviceName"] == service
                && s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["key"] == "span.kind" && t["value"] == kind)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} span of {service} in {trace:#}");
    found[0]
}

fn parent_of(span: &Value) -> String {
    let references = span["references"].as_array().unwrap();
    let parents: Vec<&Value> = references
        .iter()
        .filter(|r| r["refType"] == "CHILD_OF")
        .collect();
    assert_eq!(parents.len(), 1, "one parent of {span:#}");
    parents[0]["spanID"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_metrics_graph_and_traces_then_collector_down() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let collector = format!("http://{}", m.grpc.unwrap());
    let mesh_path = dir.path().join("mesh.yaml");
    let mesh_arg = mesh_path.to_str().unwrap().to_string();
    // Proxies must start from a good mesh; endpoints come once their ports are known.
    write_mesh(&mesh_path, "services: []\n");

    // The apps, then one proxy per instance.
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
    let sidecar = async |name: &str, service: &str, app: &AppServer| {
        let inbound = format!("127.0.0.1:0={}", app.authority());
        MeshProxy::sidecar(
            &dir,
            name,
            service,
            &mesh_arg,
            &collector,
            Some(&inbound),
            &[],
        )
        .await
    };
    let productpage_proxy = sidecar("productpage-v1", "productpage", &productpage_app).await;
    let reviews_proxy = sidecar("reviews-v1", "reviews", &reviews_app).await;
    outbound.set(productpage_proxy.outbound).unwrap();
    write_mesh(
        &mesh_path,
        &productpage_reviews_mesh(productpage_proxy.inbound(), reviews_proxy.inbound()),
    );
    wait_for_mesh_reload(&productpage_proxy, 1.0).await;

    // Traffic: 40 ok + 10 failing, the first with a trace context of the test's own.
    let client = http();
    let trace_id = hex::encode(random_trace_id());
    let client_span_id = hex::encode(random_span_id());
    let traceparent = format!("00-{trace_id}-{client_span_id}-01");
    let mut latencies = Vec::new();
    for i in 0..REQUESTS {
        let fail = i % (REQUESTS / FAILING) == REQUESTS / FAILING - 1;
        let context = (i == 0).then_some(traceparent.as_str());
        latencies.push(call_productpage(&client, productpage_proxy.inbound(), fail, context).await);
    }

    // 1. /metrics: exact counts per label set, the histograms' counts too.
    let expected = expected_counts();
    let metrics_url = m.http_url("/metrics");
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let reply = get(&metrics_url).await;
        assert_eq!(reply.status, 200);
        let text = reply.text();
        if series_counts(&parse_prometheus_text(&text), "istio_requests_total") == expected {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "istio_requests_total never matched {expected:#?}\n{}\nproductpage proxy:\n{}\nreviews proxy:\n{}",
            istio_series_summary(&parse_prometheus_text(&text)),
            productpage_proxy.log_text(),
            reviews_proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Nothing arrives late on top (no double reporting): still exact a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = {
        let again = get(&metrics_url).await.text();
        assert_eq!(
            series_counts(&parse_prometheus_text(&again), "istio_requests_total"),
            expected,
            "counts moved after matching (was:\n{text})"
        );
        again
    };
    let samples = parse_prometheus_text(&text);
    for histogram in [
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
    ] {
        assert_eq!(
            series_counts(&samples, &format!("{histogram}_count")),
            expected,
            "{histogram}_count"
        );
        let inf: Vec<PromSample> = samples
            .iter()
            .filter(|s| s.name == format!("{histogram}_bucket") && s.label("le") == "+Inf")
            .cloned()
            .collect();
        assert_eq!(
            series_counts(&inf, &format!("{histogram}_bucket")),
            expected,
            "{histogram}_bucket{{le=\"+Inf\"}}"
        );
    }
    for s in samples.iter().filter(|s| s.name == "istio_requests_total") {
        let names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        let mut want = ISTIO_LABELS.to_vec();
        want.sort_unstable();
        assert_eq!(names, want, "the 25 standard labels on {s:?}");
        if s.label("destination_workload") == "reviews-v1" {
            let labels: BTreeMap<&str, &str> = s
                .labels
                .iter()
                .filter(|(k, _)| {
                    !["reporter", "connection_security_policy", "response_code"]
                        .contains(&k.as_str())
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(labels, reviews_series_labels(), "{s:?}");
            let policy = match s.label("reporter") {
                "destination" => "none",
                _ => "unknown",
            };
            assert_eq!(s.label("connection_security_policy"), policy, "{s:?}");
        } else {
            for (label, value) in [
                ("source_workload_namespace", "unknown"),
                ("source_app", "unknown"),
                ("source_version", "unknown"),
                // The caller is outside the mesh: only its cluster is unknown.
                ("source_cluster", "unknown"),
                ("destination_cluster", "Kubernetes"),
                ("destination_workload_namespace", "default"),
                ("destination_app", "productpage"),
                ("destination_version", "v1"),
                (
                    "destination_service",
                    "productpage.default.svc.cluster.local",
                ),
                ("destination_service_name", "productpage"),
                ("destination_service_namespace", "default"),
                ("request_protocol", "http"),
                ("response_flags", "-"),
                ("connection_security_policy", "none"),
                ("grpc_response_status", ""),
            ] {
                assert_eq!(s.label(label), value, "{label} on {s:?}");
            }
        }
    }
    promtool_check_metrics(&text);

    // 2. The service graph over 5 minutes: 50 requests = 0.17/s on each edge.
    let graph_url = m.query_url("/api/graph?window=5m");
    let graph = eventually(
        Duration::from_secs(15),
        "graph edges with 50 requests each",
        || async {
            let graph = get_json(&graph_url).await;
            let complete = [
                ("unknown_source", "wl_default_productpage-v1"),
                ("wl_default_productpage-v1", "wl_default_reviews-v1"),
            ]
            .iter()
            .all(|(s, t)| {
                edge(&graph, s, t).is_some_and(|e| e["traffic"]["rates"]["http"] == "0.17")
            });
            complete.then_some(graph)
        },
    )
    .await;
    let edges = graph["elements"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "exactly two edges: {graph:#}");
    let ingress = edge(&graph, "unknown_source", "wl_default_productpage-v1").unwrap();
    assert_eq!(ingress["traffic"]["protocol"], "http", "{ingress:#}");
    let rates = &ingress["traffic"]["rates"];
    assert_eq!(rates["http"], "0.17", "{ingress:#}");
    assert!(rates.get("http5xx").is_none(), "{ingress:#}");
    assert!(rates.get("httpPercentErr").is_none(), "{ingress:#}");
    let reviews = edge(&graph, "wl_default_productpage-v1", "wl_default_reviews-v1").unwrap();
    let rates = &reviews["traffic"]["rates"];
    assert_eq!(rates["http"], "0.17", "{reviews:#}");
    assert_eq!(rates["http5xx"], "0.03", "10/300 s: {reviews:#}");
    assert_eq!(rates["httpPercentErr"], "20.0", "10 of 50: {reviews:#}");
    assert_eq!(rates["httpPercentReq"], "100.0", "{reviews:#}");
    let responses = &reviews["traffic"]["responses"];
    assert_eq!(responses["200"]["flags"]["-"], "80.0", "{reviews:#}");
    assert_eq!(responses["500"]["flags"]["-"], "20.0", "{reviews:#}");
    for e in [ingress, reviews] {
        let p50: f64 = e["responseTimes"]["p50"]
            .as_str()
            .unwrap_or_else(|| panic!("p50 latency on {e:#}"))
            .parse()
            .unwrap();
        let p99: f64 = e["responseTimes"]["p99"].as_str().unwrap().parse().unwrap();
        assert!((0.0..1000.0).contains(&p50) && p50 <= p99, "{e:#}");
    }
    let nodes = graph["elements"]["nodes"].as_array().unwrap();
    let node = |id: &str| {
        nodes
            .iter()
            .map(|n| &n["data"])
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("node {id} in {graph:#}"))
    };
    assert_eq!(node("unknown_source")["nodeType"], "unknown");
    // Each node in the cluster its proxy reported (--cluster, default Kubernetes); the
    // caller outside the mesh has none.
    assert_eq!(node("unknown_source")["cluster"], "unknown");
    for id in ["wl_default_productpage-v1", "wl_default_reviews-v1"] {
        assert_eq!(node(id)["cluster"], "Kubernetes", "{graph:#}");
    }
    assert_eq!(
        node("wl_default_reviews-v1")["destServices"][0]["cluster"],
        "Kubernetes"
    );
    let reviews_node = node("wl_default_reviews-v1");
    assert_eq!(reviews_node["app"], "reviews", "{reviews_node:#}");
    assert_eq!(reviews_node["version"], "v1", "{reviews_node:#}");
    assert_eq!(
        node("wl_default_productpage-v1")["workload"],
        "productpage-v1"
    );

    let dot = get(&m.query_url("/api/graph.dot?window=5m")).await;
    assert_eq!(dot.status, 200, "{}", dot.text());
    let dot = dot.text();
    // 50 requests over the time the window's 10 s buckets cover: the 300 s and up to
    // one bucket before them (the one holding the window's start).
    for edge in [
        "\"unknown_(unknown)\" -> \"productpage_(productpage-v1)\" [label=\"reqs/sec: ",
        "\"productpage_(productpage-v1)\" -> \"reviews_(reviews-v1)\" [label=\"reqs/sec: ",
    ] {
        let rate: f64 = dot
            .lines()
            .find_map(|l| l.trim().strip_prefix(edge)?.strip_suffix("\"];"))
            .unwrap_or_else(|| panic!("{edge} in\n{dot}"))
            .parse()
            .unwrap();
        assert!(
            (50.0 / 310.0..=50.0 / 300.0).contains(&rate),
            "{edge}{rate} in\n{dot}"
        );
    }
    assert!(dot.starts_with("digraph"), "{dot}");

    // Jaeger's /api/dependencies answers from the edges: productpage → reviews, 50
    // calls (traffic from outside the mesh has no parent and is left out).
    let dependencies = get_json(&m.query_url(&format!(
        "/api/dependencies?endTs={}&lookback=300000",
        now_nanos() / 1_000_000
    )))
    .await;
    let links = dependencies["data"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{dependencies:#}");
    assert_eq!(links[0]["callCount"], REQUESTS, "{dependencies:#}");
    // Named as the proxies name their spans' service, so the links match the traces.
    assert_eq!(
        links[0]["parent"], "productpage.default",
        "{dependencies:#}"
    );
    assert_eq!(links[0]["child"], "reviews.default", "{dependencies:#}");

    // 3. One trace across both proxies: the test's span → productpage server span →
    //    productpage client span → reviews server span.
    let trace = wait_for_trace(&m, &trace_id, 3).await;
    let server = span_of(&trace, "productpage.default", "server");
    let client_span = span_of(&trace, "productpage.default", "client");
    let reviews_server = span_of(&trace, "reviews.default", "server");
    assert_eq!(parent_of(server), client_span_id, "{trace:#}");
    assert_eq!(
        parent_of(client_span),
        server["spanID"].as_str().unwrap(),
        "{trace:#}"
    );
    assert_eq!(
        parent_of(reviews_server),
        client_span["spanID"].as_str().unwrap(),
        "{trace:#}"
    );
    for span in [server, client_span, reviews_server] {
        assert_eq!(span["traceID"].as_str().unwrap(), trace_id, "{span:#}");
    }
    // Every request became one trace of three spans (sampling 100 %).
    let now_us = now_nanos() / 1_000;
    let search = m.query_url(&format!(
        "/api/traces?service=reviews.default&limit=200&start={}&end={}",
        now_us - 600_000_000,
        now_us + 60_000_000
    ));
    eventually(Duration::from_secs(15), "50 traces of 3 spans", || async {
        let found = get_json(&search).await;
        let traces = found["data"].as_array().cloned().unwrap_or_default();
        let complete = traces.len() == REQUESTS
            && traces
                .iter()
                .all(|t| t["spans"].as_array().map(Vec::len) == Some(3));
        complete.then_some(())
    })
    .await;

    // 5. The collector goes away: the app's traffic does not notice.
    let baseline = median(latencies);
    // Records neither sent nor dropped are waiting in the proxy's queue.
    let queued = async |p: &MeshProxy| {
        let requests = p.stat("meshtel_proxy_requests_total", &[]).await;
        let sent = p.stat("meshtel_proxy_reports_sent_total", &[]).await;
        let dropped = p.stat("meshtel_proxy_reports_dropped_total", &[]).await;
        (requests - sent - dropped, dropped)
    };
    let before = [
        queued(&productpage_proxy).await,
        queued(&reviews_proxy).await,
    ];
    m.stop().await;
    let mut outage = Vec::new();
    for _ in 0..OUTAGE_REQUESTS {
        outage.push(call_productpage(&client, productpage_proxy.inbound(), false, None).await);
    }
    let slowest = *outage.iter().max().unwrap();
    let outage_median = median(outage);
    eprintln!(
        "latency through two proxies: median {baseline:?}; collector down: median {outage_median:?}, slowest {slowest:?}"
    );
    assert!(
        outage_median <= baseline * 5 + Duration::from_millis(50)
            && slowest < Duration::from_secs(2),
        "collector down: median {outage_median:?} (before: {baseline:?}), slowest {slowest:?}"
    );
    // Each productpage request is two records there (inbound + outbound), one at reviews.
    for (index, (p, records)) in [
        (&productpage_proxy, 2 * OUTAGE_REQUESTS),
        (&reviews_proxy, OUTAGE_REQUESTS),
    ]
    .into_iter()
    .enumerate()
    {
        let (queued_before, dropped_before) = before[index];
        eventually(
            Duration::from_secs(5),
            "the proxy queues or drops (and counts) the records it cannot deliver",
            || async {
                let (queued_now, dropped_now) = queued(p).await;
                let grew = queued_now - queued_before >= records as f64;
                (grew || dropped_now > dropped_before).then_some(())
            },
        )
        .await;
        let health = get(&p.admin_url("/healthz")).await;
        assert_eq!(health.status, 200, "admin /healthz with the collector down");
    }

    productpage_app.stop().await;
    reviews_app.stop().await;
}
