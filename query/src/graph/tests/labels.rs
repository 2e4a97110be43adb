//! Workloads whose labels differ from their service's name (an `app` label that is not
//! the service, no `app` at all), TCP edges, and a graph of many thousand nodes.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use meshtel_model::graph::EdgeRow;
use serde_json::{Value, json};

use super::{find, get, graph_app, ids, key, stats};

/// `requests` calls from `source` to `workload` of `service`, reported by the caller.
fn calls(source: &str, service: &str, workload: &str, requests: u64) -> EdgeRow {
    EdgeRow {
        key: key(source, service, workload, 200, "-", "source"),
        stats: stats(requests, 5.0, 0),
    }
}

/// productpage → cart → ratings, where cart's workload carries `app: shop-cart`.
fn shop() -> Vec<EdgeRow> {
    let mut into_cart = calls("productpage-v1", "cart", "cart-v1", 15);
    into_cart.key.destination_app = "shop-cart".into();
    let mut out_of_cart = calls("cart-v1", "ratings", "ratings-v1", 25);
    out_of_cart.key.source_app = "shop-cart".into();
    vec![into_cart, out_of_cart]
}

async fn graph(rows: Vec<EdgeRow>, query: &str) -> Value {
    let (app, _) = graph_app(rows, Vec::new());
    let reply = get(&app, query).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()
}

#[tokio::test]
async fn dependencies_name_a_caller_by_the_service_it_answers_for() {
    let (app, _) = graph_app(shop(), Vec::new());
    let body = get(&app, "/api/dependencies?lookback=60000").await.json();
    // As the proxies name their spans (`<service>.<namespace>`), not by the app label:
    // the chain productpage → cart → ratings holds together in Jaeger.
    assert_eq!(
        body["data"],
        json!([
            {"parent": "cart.default", "child": "ratings.default", "callCount": 25},
            {"parent": "productpage.default", "child": "cart.default", "callCount": 15},
        ])
    );
}

#[tokio::test]
async fn a_service_filter_keeps_the_calls_of_the_workloads_answering_for_it() {
    let body = graph(shop(), "/api/graph?window=10s&service=cart").await;
    assert_eq!(
        ids(&body["elements"]["nodes"]),
        [
            "wl_default_cart-v1",
            "wl_default_productpage-v1",
            "wl_default_ratings-v1"
        ]
    );
    assert_eq!(body["elements"]["edges"].as_array().unwrap().len(), 2);
    // The app label is no service: nothing answered for `shop-cart`.
    let body = graph(shop(), "/api/graph?window=10s&service=shop-cart").await;
    assert_eq!(body["elements"]["nodes"], json!([]));
    // A caller that answered for nothing in the window is known by its app.
    let rows = vec![calls("cron-v1", "ratings", "ratings-v1", 3)];
    let body = graph(rows, "/api/graph?window=10s&service=cron").await;
    assert_eq!(
        ids(&body["elements"]["nodes"]),
        ["wl_default_cron-v1", "wl_default_ratings-v1"]
    );
}

#[tokio::test]
async fn a_workload_without_an_app_stays_one_workload_node_in_app_graphs() {
    // fe → worker (service `jobs`, no app label) → db, each reported by both sides.
    let mut rows = Vec::new();
    for reporter in ["source", "destination"] {
        let mut into = calls("fe-v1", "jobs", "worker-v1", 10);
        into.key.reporter = reporter.into();
        into.key.destination_app = String::new();
        let mut out = calls("worker-v1", "db", "db-v1", 10);
        out.key.reporter = reporter.into();
        out.key.source_app = String::new();
        rows.extend([into, out]);
    }
    for (graph_type, fe, db) in [
        ("app", "app_default_fe", "app_default_db"),
        ("versionedApp", "vapp_default_fe-v1", "vapp_default_db-v1"),
    ] {
        let query = format!("/api/graph?window=10s&graphType={graph_type}");
        let body = graph(rows.clone(), &query).await;
        assert_eq!(
            ids(&body["elements"]["nodes"]),
            [db, fe, "wl_default_worker-v1"],
            "{graph_type}"
        );
        assert_eq!(body["elements"]["edges"].as_array().unwrap().len(), 2);
        let worker = find(&body["elements"]["nodes"], "wl_default_worker-v1");
        assert_eq!(worker["nodeType"], "workload");
        assert_eq!(worker["app"], "unknown", "{worker}");
    }
    let body = graph(rows, "/api/graph?window=10s").await;
    let worker = find(&body["elements"]["nodes"], "wl_default_worker-v1");
    assert_eq!(worker["app"], "unknown", "{worker}");
}

#[tokio::test]
async fn tcp_connections_are_keyed_dash_with_every_flag_and_bytes_in_dot() {
    let tcp = |code: u32, flags: &str, connections: u64| {
        let mut row = calls("fe-v1", "db", "db-v1", connections);
        row.key.protocol = "tcp".into();
        row.key.response_code = code;
        row.key.response_flags = flags.into();
        row
    };
    let rows = vec![tcp(0, "-", 6), tcp(0, "UF", 3), tcp(101, "-", 1)];
    let body = graph(rows.clone(), "/api/graph?window=10s").await;
    let edge = &body["elements"]["edges"][0]["data"]["traffic"];
    assert_eq!(edge["protocol"], "tcp");
    assert_eq!(
        edge["responses"],
        json!({"-": {
            "flags": {"-": "70.0", "UF": "30.0"},
            "hosts": {"db.default.svc.cluster.local": "100.0"},
        }})
    );
    // servicegraph reads TCP from the bytes received, not as requests: 100 bytes per
    // connection (`stats`), 10 connections in 10 s.
    let (app, _) = graph_app(rows, Vec::new());
    let dot = get(&app, "/api/graph.dot?time_horizon=10s").await.body;
    assert!(
        dot.contains("\"fe_(fe-v1)\" -> \"db_(db-v1)\" [label=\"bytes/sec: 100.000000\"];"),
        "{dot}"
    );
    assert!(!dot.contains("reqs/sec"), "{dot}");
}

#[tokio::test]
async fn a_graph_of_twenty_thousand_nodes_is_built_in_linear_time() {
    // One caller to 20,000 workloads: a scan of every node's totals for each node took
    // 12 s in a release build.
    let rows: Vec<EdgeRow> = (0..20_000)
        .map(|i| calls("fe-v1", &format!("s{i}"), &format!("w{i}-v1"), 1))
        .collect();
    let (app, _) = graph_app(rows, Vec::new());
    let started = Instant::now();
    let reply = get(&app, "/api/graph?window=10s").await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json()["elements"]["nodes"].as_array().map(Vec::len),
        Some(20_001)
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
