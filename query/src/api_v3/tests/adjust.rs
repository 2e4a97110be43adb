//! v3 answers adjusted as v1's are, unless raw.

use axum::http::StatusCode;

use crate::testing::*;

/// A B3 call whose client and server share one span id, and a span stored twice:
/// adjusted as v1 adjusts them unless `raw_traces=true`, as Jaeger's v3 API runs its
/// adjusters.
#[tokio::test]
async fn traces_are_adjusted_unless_raw() {
    const B: &str = "00000000000000005a00000000000001";
    let fe = resource_spans(
        "fe",
        "",
        vec![span(B, "000000000000000a", "", "get", 3, 1_000, 9_000)],
    );
    let db = span(
        B,
        "000000000000000c",
        "000000000000000a",
        "db",
        3,
        3_000,
        4_000,
    );
    let be = resource_spans(
        "be",
        "",
        vec![
            span(B, "000000000000000a", "", "get", 2, 2_000, 8_000),
            db.clone(),
            db,
        ],
    );
    let app = app(MemoryReader {
        traces: vec![trace_of(vec![fe, be])],
        ..Default::default()
    });
    // (span id, parent id) of every span, as answered.
    let ids = |body: &str| -> Vec<(String, String)> {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        let mut out = Vec::new();
        for rs in value["result"]["resourceSpans"].as_array().unwrap() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    out.push((
                        s["spanId"].as_str().unwrap().to_owned(),
                        s["parentSpanId"].as_str().unwrap_or("").to_owned(),
                    ));
                }
            }
        }
        out
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let adjusted = [
        pair("000000000000000a", ""),
        pair("0000000000000001", "000000000000000a"),
        pair("000000000000000c", "0000000000000001"),
    ];
    for path in [
        format!("/api/v3/traces/{B}"),
        format!("/api/v3/traces/{B}?raw_traces=false"),
        "/api/v3/traces?query.serviceName=be&query.startTimeMin=1970-01-01T00:00:00Z\
         &query.startTimeMax=2100-01-01T00:00:00Z"
            .to_owned(),
    ] {
        let reply = get(&app, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        assert_eq!(ids(&reply.body), adjusted, "{path}");
    }
    let raw = [
        pair("000000000000000a", ""),
        pair("000000000000000a", ""),
        pair("000000000000000c", "000000000000000a"),
        pair("000000000000000c", "000000000000000a"),
    ];
    for path in [
        format!("/api/v3/traces/{B}?raw_traces=true"),
        "/api/v3/traces?query.serviceName=be&query.startTimeMin=1970-01-01T00:00:00Z\
         &query.startTimeMax=2100-01-01T00:00:00Z&query.rawTraces=true"
            .to_owned(),
    ] {
        let reply = get(&app, &path).await;
        assert_eq!(ids(&reply.body), raw, "{path}");
    }
    // Summaries count the trace as /api/v3/traces gives it: one copy of db.
    let summaries = |extra: &str| {
        let app = app.clone();
        let uri = format!(
            "/api/v3/trace-summaries?query.serviceName=be&query.startTimeMin=1970-01-01T00:00:00Z\
             &query.startTimeMax=2100-01-01T00:00:00Z{extra}"
        );
        async move {
            let body: serde_json::Value =
                serde_json::from_str(&get(&app, &uri).await.body).unwrap();
            body["summaries"][0]["spanCount"].clone()
        }
    };
    assert_eq!(summaries("").await, 3);
    assert_eq!(summaries("&query.rawTraces=true").await, 4);
    // The v1 answer gives the server span the same id.
    let reply = get(&app, &format!("/api/traces/{B}")).await;
    assert!(
        reply.body.contains(r#""spanID":"0000000000000001""#),
        "{}",
        reply.body
    );
}
