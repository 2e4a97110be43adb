//! One reporter per caller and service: a retry that moved to another workload is
//! counted once, where the caller's proxy says it ended.

use axum::http::StatusCode;
use meshtel_model::graph::EdgeRow;

use super::{find, get, graph_app, key, stats};

#[tokio::test]
async fn a_retried_call_counts_once_at_the_workload_that_answered() {
    let row = |workload: &str, code, flags: &str, reporter: &str| EdgeRow {
        key: key("frontend-v1", "reviews", workload, code, flags, reporter),
        stats: stats(20, 1.0, if code >= 500 { 20 } else { 0 }),
    };
    // 20 calls, each tried on reviews-v2 first (its app is down: 503 UF), retried on
    // reviews-v1 (200). The caller's proxy reports 20 calls ending at v1; the callees'
    // proxies report every attempt.
    let rows = vec![
        row("reviews-v1", 200, "-", "source"),
        row("reviews-v1", 200, "-", "destination"),
        row("reviews-v2", 503, "UF", "destination"),
    ];
    let (app, _) = graph_app(rows, Vec::new());
    let reply = get(&app, "/api/graph?window=10s").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    let edges = body["elements"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{edges:?}");
    let edge = find(
        &body["elements"]["edges"],
        "wl_default_frontend-v1->wl_default_reviews-v1:http",
    );
    assert_eq!(edge["traffic"]["rates"]["http"], "2.00");
    let frontend = find(&body["elements"]["nodes"], "wl_default_frontend-v1");
    assert_eq!(frontend["traffic"][0]["rates"]["httpOut"], "2.00");
}
