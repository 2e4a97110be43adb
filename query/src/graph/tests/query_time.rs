//! Kiali's `queryTime`: the graph of the window ending then.

use std::sync::Arc;

use axum::http::StatusCode;

use super::rates::{At, steady_rollups};
use super::{bookinfo, find, get, graph_app};
use crate::QueryConfig;
use crate::testing::{MemoryReader, NOW};

const SEC: u64 = 1_000_000_000;

#[tokio::test]
async fn query_time_ends_the_window_of_both_graphs() {
    let (app, edges) = graph_app(bookinfo(), Vec::new());
    let then = NOW / SEC - 3600;
    let body = get(&app, &format!("/api/graph?window=10s&queryTime={then}"))
        .await
        .json();
    assert_eq!(
        *edges.last_window.lock().unwrap(),
        Some((NOW - 3610 * SEC, NOW - 3600 * SEC))
    );
    assert_eq!(body["timestamp"], then);
    assert_eq!(body["duration"], 10);
    assert_eq!(body["elements"]["edges"], serde_json::json!([]), "{body}");

    // Now, or a little ahead of the server's clock: the window ending now.
    for at in [NOW / SEC, NOW / SEC + 30] {
        let body = get(&app, &format!("/api/graph?window=10s&queryTime={at}"))
            .await
            .json();
        assert_eq!(body["timestamp"], NOW / SEC, "{at}");
        assert_eq!(body["elements"]["edges"].as_array().unwrap().len(), 3);
    }

    edges.windows.lock().unwrap().clear();
    let dot = get(&app, &format!("/api/graph.dot?window=10s&queryTime={then}")).await;
    assert_eq!(dot.status, StatusCode::OK);
    assert_eq!(
        *edges.windows.lock().unwrap(),
        [
            (NOW - 3610 * SEC, NOW - 3600 * SEC),
            (NOW - 7210 * SEC, NOW - 3610 * SEC),
        ],
        "the window and the idle-edge hour before it"
    );

    let future = NOW / SEC + 3600;
    for bad in [
        "abc",
        "-1",
        "1.5",
        &future.to_string(),
        "99999999999999999999",
    ] {
        for path in ["/api/graph", "/api/graph.dot"] {
            let reply = get(&app, &format!("{path}?queryTime={bad}")).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {bad}");
            assert_eq!(reply.content_type, "application/json", "{path} {bad}");
            let msg = reply.json()["error"].clone();
            assert!(msg.as_str().unwrap().contains("queryTime"), "{msg}");
        }
    }
}

/// Over the real rollups, an hour after the traffic: the window then reads its rate,
/// the window now (or before the traffic) is empty.
#[tokio::test]
async fn query_time_reads_past_traffic_from_the_rollups() {
    // 10 requests/s over [NOW - 27.5 s, NOW + 62.5 s).
    let end_of_traffic = NOW + 62_500_000_000;
    let dir = tempfile::tempdir().unwrap();
    let rollups = steady_rollups(dir.path(), end_of_traffic).await;
    let app = crate::router_with_graph_and_clock(
        Arc::new(MemoryReader::default()),
        Some(Arc::new(rollups)),
        None,
        Arc::new(At(end_of_traffic + 3600 * SEC)),
        &QueryConfig::default(),
    );
    let edge_id = "unknown_source->wl_default_productpage-v1:http";
    let then = NOW / SEC + 35;
    let body = get(&app, &format!("/api/graph?window=30s&queryTime={then}"))
        .await
        .json();
    assert_eq!(body["timestamp"], then);
    let edge = find(&body["elements"]["edges"], edge_id);
    assert_eq!(edge["traffic"]["rates"]["http"], "10.00", "{edge:#}");
    let dot = get(&app, &format!("/api/graph.dot?window=30s&queryTime={then}"))
        .await
        .body;
    assert!(dot.contains("reqs/sec: 10.000000"), "{dot}");

    for query in ["", "&queryTime=1700000000"] {
        let body = get(&app, &format!("/api/graph?window=30s{query}"))
            .await
            .json();
        assert_eq!(body["elements"]["edges"], serde_json::json!([]), "{query}");
    }
}
