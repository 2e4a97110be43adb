//! The graph API's parameters: `service` and `namespace` filters, windows in every
//! unit, graph types, and the errors for bad values.

use axum::http::StatusCode;
use meshtel_model::graph::EdgeRow;
use serde_json::json;

use super::{bookinfo, get, graph_app, ids, key, stats};
use crate::testing::NOW;

#[tokio::test]
async fn graph_filters_and_params() {
    let (app, edges) = graph_app(bookinfo(), Vec::new());
    let body = get(&app, "/api/graph?duration=1h&service=details")
        .await
        .json();
    assert_eq!(body["duration"], 3600);
    assert_eq!(body["elements"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(
        *edges.last_window.lock().unwrap(),
        Some((NOW - 3_600_000_000_000, NOW))
    );
    // A service named short, with its namespace or by FQDN: the calls into it and
    // its workloads' calls out, the same edges each way.
    let short = ids(&get(&app, "/api/graph?service=productpage").await.json()["elements"]["edges"]);
    assert_eq!(short.len(), 3, "{short:?}");
    for name in [
        "productpage.default",
        "productpage.default.svc.cluster.local",
    ] {
        let body = get(&app, &format!("/api/graph?service={name}"))
            .await
            .json();
        assert_eq!(ids(&body["elements"]["edges"]), short, "{name}");
    }
    // An app label with dots in it is matched whole.
    let dotted = vec![EdgeRow {
        key: key("my.app-v1", "reviews", "reviews-v2", 200, "-", "source"),
        stats: stats(1, 1.0, 0),
    }];
    let (dotted_app, _) = graph_app(dotted, Vec::new());
    let body = get(&dotted_app, "/api/graph?service=my.app").await.json();
    assert_eq!(body["elements"]["edges"].as_array().unwrap().len(), 1);
    let body = get(&app, "/api/graph?service=productpage.other")
        .await
        .json();
    assert_eq!(ids(&body["elements"]["edges"]), Vec::<String>::new());
    let body = get(&app, "/api/graph?namespace=other").await.json();
    assert_eq!(body["duration"], 300, "default window is 5m");
    assert_eq!(body["elements"]["nodes"], json!([]));
    let body = get(&app, "/api/graph?window=60&responseTime=avg")
        .await
        .json();
    assert_eq!(body["duration"], 60);
    // Prometheus units as the metrics API takes them, Go's fractions as Kiali sends.
    for (window, seconds) in [("1d", 86_400), ("1w", 604_800), ("1.5h", 5_400)] {
        let body = get(&app, &format!("/api/graph?window={window}"))
            .await
            .json();
        assert_eq!(body["duration"], seconds, "{window}");
    }
    for kiali in ["workload", "app", "versionedApp", "service"] {
        let body = get(&app, &format!("/api/graph?graphType={kiali}"))
            .await
            .json();
        assert_eq!(body["graphType"], kiali);
    }
    // Kiali's error body, naming the parameter as sent.
    for (bad, named) in [
        ("window=5x", "window"),
        // A fraction of a second is refused, not dropped.
        ("window=1.5", "window"),
        ("window=90.5s", "window"),
        ("window=0s", "window"),
        ("window=30d", "window"),
        ("duration=abc", "duration"),
        // Beside a good alias too.
        ("window=5m&duration=abc", "duration"),
        ("duration=10m&time_horizon=1x", "time_horizon"),
        ("time_horizon=0s", "time_horizon"),
        ("responseTime=90", "responseTime"),
        ("graphType=bogus", "graphType"),
    ] {
        let reply = get(&app, &format!("/api/graph?{bad}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
        assert_eq!(reply.content_type, "application/json", "{bad}");
        let message = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(named), "{bad}: {}", reply.body);
    }
}
