#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;

use axum::http::StatusCode;
use meshtel_model::graph::{EdgeKey, EdgeStats};
use serde_json::json;

use super::*;
use crate::QueryConfig;
use crate::testing::{FixedClock, MemoryReader, NOW, get};

mod grpc;
mod labels;
mod params;
mod query_time;
mod rates;
mod reporters;
mod types;

#[derive(Default)]
struct FakeEdges {
    /// The rows of any window ending now.
    rows: Vec<EdgeRow>,
    /// The rows of any window ending before now.
    earlier: Vec<EdgeRow>,
    last_window: Mutex<Option<(u64, u64)>>,
    windows: Mutex<Vec<(u64, u64)>>,
}

#[async_trait::async_trait]
impl GraphReader for FakeEdges {
    async fn edges_in_window(
        &self,
        start: u64,
        end: u64,
        _buckets: Buckets,
    ) -> meshtel_model::Result<Vec<EdgeRow>> {
        *self.last_window.lock().unwrap() = Some((start, end));
        self.windows.lock().unwrap().push((start, end));
        Ok(if end < NOW {
            self.earlier.clone()
        } else {
            self.rows.clone()
        })
    }

    /// Every row in the window's first 10 s bucket.
    async fn edge_buckets_in_window(
        &self,
        start: u64,
        end: u64,
        _step: std::time::Duration,
        _buckets: Buckets,
    ) -> meshtel_model::Result<Vec<(u64, EdgeRow)>> {
        *self.last_window.lock().unwrap() = Some((start, end));
        let bucket_ms = start / 1_000_000 / 10_000 * 10_000;
        Ok(self.rows.iter().map(|r| (bucket_ms, r.clone())).collect())
    }
}

fn key(
    source: &str,
    destination_service: &str,
    destination: &str,
    code: u32,
    flags: &str,
    reporter: &str,
) -> EdgeKey {
    let app = |w: &str| w.rsplit_once('-').map_or(w, |(a, _)| a).to_string();
    // A side with no workload (a caller outside the mesh, a destination no workload
    // answered for) reports no labels of its own, the cluster included.
    let of = |workload: &str, value: String| {
        if workload.is_empty() {
            String::new()
        } else {
            value
        }
    };
    EdgeKey {
        source_workload: source.into(),
        source_namespace: of(source, "default".into()),
        source_app: of(source, app(source)),
        source_version: of(source, "v1".into()),
        destination_service: format!("{destination_service}.default.svc.cluster.local"),
        destination_workload: destination.into(),
        destination_namespace: "default".into(),
        destination_version: of(destination, "v2".into()),
        destination_app: of(destination, app(destination)),
        protocol: "http".into(),
        response_code: code,
        grpc_response_status: None,
        response_flags: flags.into(),
        reporter: reporter.into(),
        source_cluster: of(source, "Kubernetes".into()),
        destination_cluster: of(destination, "Kubernetes".into()),
    }
}

fn stats(requests: u64, ms: f64, errors: u64) -> EdgeStats {
    let mut stats = EdgeStats {
        requests,
        errors,
        duration_sum_ms: ms * requests as f64,
        request_bytes: 100 * requests,
        response_bytes: 1000 * requests,
        ..EdgeStats::default()
    };
    let slot = meshtel_model::graph::ISTIO_BUCKETS
        .iter()
        .position(|b| ms <= *b)
        .unwrap();
    stats.latency_buckets[slot] = requests;
    stats
}

fn bookinfo() -> Vec<EdgeRow> {
    let row = |key, stats| EdgeRow { key, stats };
    vec![
        row(
            key(
                "productpage-v1",
                "reviews",
                "reviews-v2",
                200,
                "-",
                "source",
            ),
            stats(90, 7.0, 0),
        ),
        row(
            key(
                "productpage-v1",
                "reviews",
                "reviews-v2",
                503,
                "-",
                "source",
            ),
            stats(10, 7.0, 10),
        ),
        // The same calls seen by the callee: ignored, the caller reported them.
        row(
            key(
                "productpage-v1",
                "reviews",
                "reviews-v2",
                200,
                "-",
                "destination",
            ),
            stats(88, 5.0, 0),
        ),
        // From outside the mesh: only the callee reports.
        row(
            key("", "productpage", "productpage-v1", 200, "-", "destination"),
            stats(20, 30.0, 0),
        ),
        // No healthy upstream: a service node, no workload.
        row(
            key("productpage-v1", "details", "", 503, "UH", "source"),
            stats(5, 0.2, 5),
        ),
    ]
}

fn graph_app(rows: Vec<EdgeRow>, links: Vec<DependencyLink>) -> (Router, Arc<FakeEdges>) {
    let edges = Arc::new(FakeEdges {
        rows,
        ..FakeEdges::default()
    });
    let reader = Arc::new(MemoryReader {
        links,
        ..MemoryReader::default()
    });
    let app = crate::router_with_graph_and_clock(
        reader,
        Some(edges.clone()),
        None,
        Arc::new(FixedClock),
        &QueryConfig::default(),
    );
    (app, edges)
}

/// The ids of a list of cytoscape elements, sorted.
fn ids(list: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn find<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}"))
}

#[tokio::test]
async fn graph_json_has_kiali_shape_rates_errors_and_latency() {
    let (app, edges) = graph_app(bookinfo(), Vec::new());
    let reply = get(&app, "/api/graph?window=10s").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(
        *edges.last_window.lock().unwrap(),
        Some((NOW - 10_000_000_000, NOW))
    );
    let body = reply.json();
    assert_eq!(body["timestamp"], NOW / 1_000_000_000);
    assert_eq!(body["duration"], 10);
    assert_eq!(body["graphType"], "workload");
    let nodes = &body["elements"]["nodes"];
    assert_eq!(nodes.as_array().unwrap().len(), 4);

    let unknown = find(nodes, "unknown_source");
    assert_eq!(unknown["nodeType"], "unknown");
    assert_eq!(unknown["namespace"], "unknown");
    assert_eq!(unknown["isRoot"], true);
    assert_eq!(unknown["cluster"], "unknown");
    let productpage = find(nodes, "wl_default_productpage-v1");
    assert_eq!(productpage["nodeType"], "workload");
    assert_eq!(productpage["app"], "productpage");
    assert_eq!(productpage["workload"], "productpage-v1");
    assert_eq!(productpage["cluster"], "Kubernetes");
    assert_eq!(
        productpage["traffic"],
        json!([{"protocol": "http", "rates": {"httpIn": "2.00", "httpOut": "10.50"}}])
    );
    let reviews = find(nodes, "wl_default_reviews-v2");
    assert_eq!(
        reviews["app"], "reviews",
        "app from the service it answers for"
    );
    assert_eq!(reviews["version"], "v2");
    assert_eq!(reviews["destServices"][0]["name"], "reviews");
    assert_eq!(reviews["cluster"], "Kubernetes");
    assert_eq!(reviews["destServices"][0]["cluster"], "Kubernetes");
    assert_eq!(reviews["traffic"][0]["rates"]["httpIn5xx"], "1.00");
    let details = find(nodes, "svc_default_details");
    assert_eq!(details["nodeType"], "service");
    assert_eq!(details["service"], "details");
    assert_eq!(
        details["cluster"], "unknown",
        "no workload, no proxy reported one"
    );

    let all_edges = &body["elements"]["edges"];
    assert_eq!(all_edges.as_array().unwrap().len(), 3);
    let edge = find(
        all_edges,
        "wl_default_productpage-v1->wl_default_reviews-v2:http",
    );
    assert_eq!(edge["source"], "wl_default_productpage-v1");
    assert_eq!(edge["target"], "wl_default_reviews-v2");
    let traffic = &edge["traffic"];
    assert_eq!(traffic["protocol"], "http");
    assert_eq!(
        traffic["rates"],
        json!({"http": "10.00", "http5xx": "1.00", "httpPercentErr": "10.0", "httpPercentReq": "95.2"})
    );
    assert_eq!(
        traffic["responses"],
        json!({"200": {"flags": {"-": "90.0"}, "hosts": {"reviews.default.svc.cluster.local": "90.0"}}, "503": {"flags": {"-": "10.0"}, "hosts": {"reviews.default.svc.cluster.local": "10.0"}}})
    );
    // Response times are the callee's view of the calls it answered 2xx, as Kiali's
    // (`reporter="destination"`, `response_code=~"2.."`): its 88 requests at 5 ms, not
    // the caller's 100 at 7 ms, 503s included.
    assert_eq!(edge["responseTime"], "5", "{edge}");
    assert_eq!(edge["responseTimes"]["avg"], "5.0", "{edge}");
    assert_eq!(edge["throughput"], "10000.00");
    let uh = find(
        all_edges,
        "wl_default_productpage-v1->svc_default_details:http",
    );
    assert_eq!(
        uh["traffic"]["responses"],
        json!({"503": {"flags": {"UH": "100.0"}, "hosts": {"details.default.svc.cluster.local": "100.0"}}})
    );
    assert_eq!(uh["traffic"]["rates"]["httpPercentErr"], "100.0");
    let outside = find(all_edges, "unknown_source->wl_default_productpage-v1:http");
    assert_eq!(outside["traffic"]["rates"]["http"], "2.00");
}

#[tokio::test]
async fn graph_dot_is_like_servicegraph() {
    let (app, _) = graph_app(bookinfo(), Vec::new());
    let reply = get(&app, "/api/graph.dot?window=10s").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.starts_with("text/vnd.graphviz"));
    let expected = "digraph \"istio-servicegraph\" {\n\
        \"productpage_(productpage-v1)\" -> \"details_(unknown)\" [label=\"reqs/sec: 0.500000\"];\n\
        \"productpage_(productpage-v1)\" -> \"reviews_(reviews-v2)\" [label=\"reqs/sec: 10.000000\"];\n\
        \"unknown_(unknown)\" -> \"productpage_(productpage-v1)\" [label=\"reqs/sec: 2.000000\"];\n\
        \"unknown_(unknown)\" [label=\"unknown (unknown)\"];\n\
        \"productpage_(productpage-v1)\" [label=\"productpage (productpage-v1)\"];\n\
        \"reviews_(reviews-v2)\" [label=\"reviews (reviews-v2)\"];\n\
        \"details_(unknown)\" [label=\"details (unknown)\"];\n\
        }\n";
    assert_eq!(reply.body, expected);
}

/// A call to a host outside the mesh names no destination service: its node is
/// `no service (unknown)`, not a blank (nor `unknown (unknown)`, the callers outside).
#[tokio::test]
async fn graph_dot_names_an_unknown_destination() {
    let rows = vec![EdgeRow {
        key: key("productpage-v1", "", "", 503, "UH", "source"),
        stats: stats(3, 1.0, 3),
    }];
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph.dot?window=10s").await.body;
    assert!(
        body.contains("\"productpage_(productpage-v1)\" -> \"no_service_(unknown)\""),
        "{body}"
    );
    assert!(
        body.contains("\"no_service_(unknown)\" [label=\"no service (unknown)\"];"),
        "{body}"
    );
}

/// Callers outside the mesh and a host naming no service are two nodes in DOT as in
/// the JSON (`unknown_source`, `svc__`): merged, they drew `frontend -> unknown ->
/// backend`, a path no request took.
#[tokio::test]
async fn graph_dot_keeps_outside_callers_apart_from_unnamed_destinations() {
    let mut no_host = key("frontend-v1", "", "", 503, "UH", "source");
    no_host.destination_service = String::new();
    no_host.destination_namespace = String::new();
    let rows = vec![
        EdgeRow {
            key: no_host,
            stats: stats(5, 1.0, 5),
        },
        EdgeRow {
            key: key("", "backend", "backend-v1", 200, "-", "destination"),
            stats: stats(5, 1.0, 0),
        },
    ];
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph?window=10s").await.json();
    let mut ids: Vec<_> = body["elements"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["data"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "svc_unknown_unknown",
            "unknown_source",
            "wl_default_backend-v1",
            "wl_default_frontend-v1"
        ]
    );
    let dot = get(&app, "/api/graph.dot?window=10s").await.body;
    let expected = "digraph \"istio-servicegraph\" {\n\
        \"frontend_(frontend-v1)\" -> \"no_service_(unknown)\" [label=\"reqs/sec: 0.500000\"];\n\
        \"unknown_(unknown)\" -> \"backend_(backend-v1)\" [label=\"reqs/sec: 0.500000\"];\n\
        \"unknown_(unknown)\" [label=\"unknown (unknown)\"];\n\
        \"backend_(backend-v1)\" [label=\"backend (backend-v1)\"];\n\
        \"frontend_(frontend-v1)\" [label=\"frontend (frontend-v1)\"];\n\
        \"no_service_(unknown)\" [label=\"no service (unknown)\"];\n\
        }\n";
    assert_eq!(dot, expected);
}

/// Two nodes of one DOT id (a workload of one name in two namespaces, merged as
/// servicegraph merges them) are declared once.
#[tokio::test]
async fn graph_dot_declares_each_node_once() {
    let rows = ["a", "b"].map(|namespace| {
        let mut key = key(
            "productpage-v1",
            "reviews",
            "reviews-v1",
            200,
            "-",
            "source",
        );
        key.destination_namespace = namespace.into();
        EdgeRow {
            key,
            stats: stats(5, 1.0, 0),
        }
    });
    let (app, _) = graph_app(rows.to_vec(), Vec::new());
    let dot = get(&app, "/api/graph.dot?window=10s").await.body;
    assert_eq!(
        dot.matches("\"reviews_(reviews-v1)\" [label=\"reviews (reviews-v1)\"];")
            .count(),
        1,
        "{dot}"
    );
    assert!(dot.contains("reqs/sec: 1.000000"), "{dot}");
}

#[tokio::test]
async fn dependencies_come_from_edges_and_from_spans_for_other_pairs() {
    let span_links = vec![
        // A pair the proxies reported: counted from the edges, not from sampled spans.
        DependencyLink {
            parent: "productpage.default".into(),
            child: "reviews.default".into(),
            call_count: 7,
        },
        // A pair only an SDK's spans show.
        DependencyLink {
            parent: "from-spans".into(),
            child: "b".into(),
            call_count: 1,
        },
    ];
    let (app, _) = graph_app(bookinfo(), span_links.clone());
    let body = get(&app, "/api/dependencies?lookback=60000").await.json();
    assert_eq!(
        body["data"],
        json!([
            {"parent": "from-spans", "child": "b", "callCount": 1},
            {"parent": "productpage.default", "child": "details.default", "callCount": 5},
            {"parent": "productpage.default", "child": "reviews.default", "callCount": 100},
        ])
    );
    let (app, _) = graph_app(Vec::new(), span_links);
    let body = get(&app, "/api/dependencies").await.json();
    assert_eq!(body["data"][0]["parent"], "from-spans");
    assert_eq!(body["data"][1]["callCount"], 7);
}

#[tokio::test]
async fn without_edges_there_is_no_graph_route() {
    let app = crate::router_with_clock(
        Arc::new(MemoryReader::default()),
        Arc::new(FixedClock),
        &QueryConfig::default(),
    );
    assert_eq!(get(&app, "/api/graph").await.status, StatusCode::NOT_FOUND);
}

fn grpc_row(code: u32, grpc_status: Option<u32>, requests: u64) -> EdgeRow {
    let mut key = key(
        "productpage-v1",
        "reviews",
        "reviews-v2",
        code,
        "-",
        "source",
    );
    key.protocol = "grpc".into();
    key.grpc_response_status = grpc_status;
    let errors = if code == 200 && grpc_status == Some(0) {
        0
    } else {
        requests
    };
    EdgeRow {
        key,
        stats: stats(requests, 7.0, errors),
    }
}

#[tokio::test]
async fn grpc_responses_are_keyed_by_grpc_status_as_kiali_does() {
    let rows = vec![
        grpc_row(200, Some(0), 80),
        grpc_row(200, Some(14), 10),
        // An HTTP error wins over the gRPC status; no response is `-`.
        grpc_row(503, Some(14), 5),
        grpc_row(0, Some(2), 3),
        // A row written before the rollups kept gRPC statuses: its HTTP status.
        grpc_row(200, None, 2),
    ];
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph?window=10s").await.json();
    let edge = find(
        &body["elements"]["edges"],
        "wl_default_productpage-v1->wl_default_reviews-v2:grpc",
    );
    assert_eq!(
        edge["traffic"]["responses"],
        json!({
            "0": {"flags": {"-": "80.0"}, "hosts": {"reviews.default.svc.cluster.local": "80.0"}},
            "14": {"flags": {"-": "10.0"}, "hosts": {"reviews.default.svc.cluster.local": "10.0"}},
            "503": {"flags": {"-": "5.0"}, "hosts": {"reviews.default.svc.cluster.local": "5.0"}},
            "-": {"flags": {"-": "3.0"}, "hosts": {"reviews.default.svc.cluster.local": "3.0"}},
            "200": {"flags": {"-": "2.0"}, "hosts": {"reviews.default.svc.cluster.local": "2.0"}},
        }),
        "{edge:#}"
    );
    // Errors: status 14 and the HTTP 503 (1.50/s); no response (0.30/s) apart.
    assert_eq!(edge["traffic"]["rates"]["grpcErr"], "1.50", "{edge:#}");
    assert_eq!(
        edge["traffic"]["rates"]["grpcPercentErr"], "18.0",
        "{edge:#}"
    );
    assert_eq!(
        edge["traffic"]["rates"]["grpcNoResponse"], "0.30",
        "{edge:#}"
    );
}

#[test]
fn rates_show_one_significant_digit_as_kiali_does() {
    use super::json::rate;
    assert_eq!(rate(0.0), None);
    assert_eq!(rate(12.5).as_deref(), Some("12.50"));
    assert_eq!(rate(0.5).as_deref(), Some("0.50"));
    assert_eq!(rate(0.02).as_deref(), Some("0.02"));
    assert_eq!(rate(0.002).as_deref(), Some("0.002"));
    assert_eq!(rate(1.0 / 3600.0).as_deref(), Some("0.0003"));
    assert_eq!(rate(0.000_01).as_deref(), Some("0.00001"));
    // One request in 7 days (the longest window) is not zero; Kiali stops at 5
    // decimals, meshtel at 8.
    assert_eq!(rate(1.0 / (7.0 * 86400.0)).as_deref(), Some("0.000002"));
    assert_eq!(rate(0.000_000_01).as_deref(), Some("0.00000001"));
    assert_eq!(rate(0.000_000_000_1).as_deref(), Some("0.00000000"));
}

#[tokio::test]
async fn a_tiny_rate_is_not_printed_as_zero() {
    // One request in an hour: 0.00028/s.
    let rows = vec![EdgeRow {
        key: key(
            "productpage-v1",
            "reviews",
            "reviews-v2",
            500,
            "-",
            "source",
        ),
        stats: stats(1, 7.0, 1),
    }];
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph?window=1h").await.json();
    let edge = find(
        &body["elements"]["edges"],
        "wl_default_productpage-v1->wl_default_reviews-v2:http",
    );
    assert_eq!(
        edge["traffic"]["rates"],
        json!({"http": "0.0003", "http5xx": "0.0003", "httpPercentErr": "100.0", "httpPercentReq": "100.0"})
    );
    let reviews = find(&body["elements"]["nodes"], "wl_default_reviews-v2");
    assert_eq!(reviews["traffic"][0]["rates"]["httpIn"], "0.0003");
}

#[tokio::test]
async fn graph_dot_takes_servicegraphs_time_horizon_and_filter_empty() {
    // ratings was called in the hour before the window, not in it.
    let earlier = vec![EdgeRow {
        key: key("reviews-v2", "ratings", "ratings-v1", 200, "-", "source"),
        stats: stats(30, 3.0, 0),
    }];
    let edges = Arc::new(FakeEdges {
        rows: bookinfo(),
        earlier,
        ..FakeEdges::default()
    });
    let app = crate::router_with_graph_and_clock(
        Arc::new(MemoryReader::default()),
        Some(edges.clone()),
        None,
        Arc::new(FixedClock),
        &QueryConfig::default(),
    );
    let idle =
        "\"reviews_(reviews-v2)\" -> \"ratings_(ratings-v1)\" [label=\"reqs/sec: 0.000000\"];";
    let reply = get(&app, "/api/graph.dot?time_horizon=10s").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply.body.contains("[label=\"reqs/sec: 10.000000\"]"),
        "rates over 10 s:\n{}",
        reply.body
    );
    assert!(
        reply.body.lines().any(|l| l == idle),
        "an idle edge at 0:\n{}",
        reply.body
    );
    assert_eq!(
        *edges.windows.lock().unwrap(),
        [
            (NOW - 10_000_000_000, NOW),
            (
                NOW - 10_000_000_000 - 3_600_000_000_000,
                NOW - 10_000_000_000
            ),
        ]
    );
    let filtered = get(&app, "/api/graph.dot?time_horizon=10s&filter_empty=true").await;
    assert!(
        !filtered.body.contains("ratings"),
        "filter_empty=true leaves idle edges out:\n{}",
        filtered.body
    );
    assert!(filtered.body.contains("[label=\"reqs/sec: 10.000000\"]"));
    // Read as Go reads a boolean: `1` filters too, and a word that is not one is refused.
    let one = get(&app, "/api/graph.dot?time_horizon=10s&filter_empty=1").await;
    assert_eq!(one.body, filtered.body);
    let reply = get(&app, "/api/graph.dot?time_horizon=10s&filter_empty=maybe").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply.body.contains("filter_empty must be true or false"),
        "{}",
        reply.body
    );
    let reply = get(&app, "/api/graph.dot?time_horizon=5x").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
}

/// Workload names with control characters, quotes and backslashes: every one escaped,
/// and the file parses (checked with Graphviz's `dot` when it is installed).
#[tokio::test]
async fn graph_dot_escapes_control_characters_so_that_dot_parses_it() {
    let names = [
        "evil\0name-v1",
        "tab\tname-v1",
        "nl\nname-v1",
        "cr\rname-v1",
        "del\u{7f}name-v1",
        "c1\u{85}name-v1",
        "quote\"name-v1",
        "back\\slash-v1",
        "ends-in-backslash\\",
        "\\\"\0\\-v1",
    ];
    let rows = names
        .iter()
        .map(|name| EdgeRow {
            key: key(name, "reviews", "reviews-v2", 200, "-", "source"),
            stats: stats(1, 5.0, 0),
        })
        .collect();
    let (app, _) = graph_app(rows, Vec::new());
    let reply = get(&app, "/api/graph.dot?window=10s").await;
    assert_eq!(reply.status, StatusCode::OK);
    let dot = reply.body;
    for line in dot.lines() {
        assert!(
            !line.contains(|c: char| c.is_control()),
            "a raw control character in {line:?}"
        );
    }
    assert!(
        dot.contains(
            r#""evil\\u{0}name_(evil\\u{0}name-v1)" [label="evil\\u{0}name (evil\\u{0}name-v1)"];"#
        ),
        "{dot}"
    );
    assert!(dot.contains(r#"[label="nl\nname (nl\nname-v1)"]"#), "{dot}");
    assert!(
        dot.contains(r#"[label="quote\"name (quote\"name-v1)"]"#),
        "{dot}"
    );
    assert!(
        dot.contains(r#"[label="ends-in (ends-in-backslash\\)"]"#),
        "{dot}"
    );
    assert_eq!(dot.lines().count(), 2 * names.len() + 3, "{dot}");

    let Ok(mut child) = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "graphviz `dot` is needed in CI (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED IN PART: graphviz `dot` is not installed (apt-get install graphviz): \
             the escaped text alone was checked"
        );
        return;
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let svg = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dot -Tsvg failed: {}\n{dot}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !svg.contains(|c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t')),
        "the SVG holds a character XML forbids"
    );
    assert_eq!(svg.matches("class=\"node\"").count(), names.len() + 1);
}

#[tokio::test]
async fn nodes_carry_the_cluster_their_proxies_reported() {
    let mut from_east = key(
        "productpage-v1",
        "reviews",
        "reviews-v2",
        200,
        "-",
        "source",
    );
    from_east.source_cluster = "east".into();
    from_east.destination_cluster = "west".into();
    // A row from before the rollups kept clusters: it names none.
    let mut old = key("reviews-v2", "ratings", "ratings-v1", 200, "-", "source");
    old.source_cluster.clear();
    old.destination_cluster.clear();
    let rows = vec![
        EdgeRow {
            key: from_east,
            stats: stats(10, 5.0, 0),
        },
        EdgeRow {
            key: old,
            stats: stats(10, 5.0, 0),
        },
    ];
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph?window=5m").await.json();
    let nodes = &body["elements"]["nodes"];
    assert_eq!(find(nodes, "wl_default_productpage-v1")["cluster"], "east");
    let reviews = find(nodes, "wl_default_reviews-v2");
    assert_eq!(
        reviews["cluster"], "west",
        "the first cluster reported for it"
    );
    assert_eq!(
        reviews["destServices"],
        json!([{"cluster": "west", "namespace": "default", "name": "reviews"}])
    );
    let ratings = find(nodes, "wl_default_ratings-v1");
    assert_eq!(ratings["cluster"], "unknown");
    assert_eq!(ratings["destServices"][0]["cluster"], "unknown");
}
