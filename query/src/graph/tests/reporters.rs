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

/// `requests` calls from `source` to `service` that `workload` answered, as `reporter`
/// saw them.
fn calls(
    (source, service, workload): (&str, &str, &str),
    code: u32,
    flags: &str,
    reporter: &str,
    requests: u64,
) -> EdgeRow {
    EdgeRow {
        key: key(source, service, workload, code, flags, reporter),
        stats: stats(requests, 1.0, 0),
    }
}

/// The edge `id` of the workload graph of `rows` over the last 10 s.
async fn edge_of(rows: Vec<EdgeRow>, id: &str) -> serde_json::Value {
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph?window=10s").await.json();
    find(&body["elements"]["edges"], id).clone()
}

/// A quota's 429s: the callee's proxy answered them itself (`RL`), and the caller's
/// proxy, as Envoy's, saw a 429 with no flag of its own. The edge, counted from the
/// caller, gives as many of its unflagged 429s the callee's flag; the app's own 429s
/// stay unflagged, and the counts and rates stay the caller's.
#[tokio::test]
async fn the_callees_own_answers_carry_its_flags_on_the_callers_edge() {
    let row = |code, flags: &str, reporter: &str, requests| {
        calls(
            ("reviews-v1", "ratings", "ratings-v1"),
            code,
            flags,
            reporter,
            requests,
        )
    };
    let rows = vec![
        row(200, "-", "source", 10),
        row(200, "-", "destination", 10),
        // 30 calls answered 429: 25 by the quota at the callee's proxy, 5 by the app.
        row(429, "-", "source", 30),
        row(429, "RL", "destination", 25),
        row(429, "-", "destination", 5),
    ];
    let (app, _) = graph_app(rows, Vec::new());
    let hosts = |percent: &str| serde_json::json!({"ratings.default.svc.cluster.local": percent});
    let expected = serde_json::json!({
        "200": {"flags": {"-": "25.0"}, "hosts": hosts("25.0")},
        "429": {"flags": {"-": "12.5", "RL": "62.5"}, "hosts": hosts("75.0")},
    });
    let reply = get(&app, "/api/graph?window=10s").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    let edge = find(
        &body["elements"]["edges"],
        "wl_default_reviews-v1->wl_default_ratings-v1:http",
    );
    assert_eq!(edge["traffic"]["responses"], expected, "{edge}");
    assert_eq!(
        edge["traffic"]["rates"]["http"], "4.00",
        "the caller's 40 calls"
    );
    // Both edges through an injected service node carry the calls, and so the flags.
    let reply = get(&app, "/api/graph?window=10s&injectServiceNodes=true").await;
    let body = reply.json();
    for id in [
        "wl_default_reviews-v1->svc_default_ratings:http",
        "svc_default_ratings->wl_default_ratings-v1:http",
    ] {
        let edge = find(&body["elements"]["edges"], id);
        assert_eq!(edge["traffic"]["responses"], expected, "{id}: {edge}");
    }
}

/// A flag both proxies report (a client that went away mid-answer, `DC`) is the
/// caller's already: the edge keeps the caller's counts, not the callee's flags on top.
#[tokio::test]
async fn a_flag_both_proxies_report_is_counted_once() {
    let row = |flags: &str, reporter: &str, requests| {
        calls(
            ("productpage-v1", "ratings", "ratings-v1"),
            200,
            flags,
            reporter,
            requests,
        )
    };
    let rows = vec![
        row("-", "source", 13),
        row("DC", "source", 7),
        row("-", "destination", 13),
        row("DC", "destination", 7),
    ];
    let edge = edge_of(
        rows,
        "wl_default_productpage-v1->wl_default_ratings-v1:http",
    )
    .await;
    assert_eq!(
        edge["traffic"]["responses"]["200"]["flags"],
        serde_json::json!({"-": "65.0", "DC": "35.0"}),
        "{edge}"
    );
}

/// The caller's proxy gave up on a body mid-way (`SI`, its body idle timeout): the
/// callee saw its downstream hang up (`DC`). That is the caller's flag, not an answer
/// the callee made: the caller's unflagged 200s stay unflagged.
#[tokio::test]
async fn the_callees_dc_never_moves_the_callers_answers() {
    let row = |code, flags: &str, reporter: &str, requests| {
        calls(
            ("frontend-v1", "reviews", "reviews-v1"),
            code,
            flags,
            reporter,
            requests,
        )
    };
    let rows = vec![
        row(200, "-", "source", 8),
        row(200, "SI", "source", 3),
        row(200, "-", "destination", 8),
        row(200, "DC", "destination", 3),
    ];
    let edge = edge_of(rows, "wl_default_frontend-v1->wl_default_reviews-v1:http").await;
    let flags = &edge["traffic"]["responses"]["200"]["flags"];
    assert_eq!(flags["-"], "72.7", "{edge}");
    assert_eq!(flags["SI"], "27.3", "{edge}");
    assert!(flags.get("DC").is_none(), "{edge}");
}
