//! gRPC error rates as Kiali counts them: `grpcErr` for a response with an error
//! status, `grpcNoResponse` for none, never both.

use meshtel_model::graph::{EdgeKey, EdgeRow, EdgeStats};
use meshtel_model::mixer::{Reporter, RequestRecord, Workload};

use super::{find, get, graph_app};

/// `n` gRPC calls ga-v1 → gc-v1 with this outcome, rolled up as the collector does.
fn calls(n: u64, code: u32, grpc_status: Option<u32>, flags: &str) -> EdgeRow {
    let workload = |name: &str, app: &str| Workload {
        name: name.into(),
        namespace: "default".into(),
        app: app.into(),
        version: "v1".into(),
        ..Default::default()
    };
    let record = RequestRecord {
        reporter: Reporter::Source as i32,
        source: Some(workload("ga-v1", "ga")),
        destination: Some(workload("gc-v1", "gc")),
        destination_service: "gc.default.svc.cluster.local".into(),
        request_protocol: "grpc".into(),
        response_code: code,
        grpc_response_status: grpc_status,
        response_flags: flags.into(),
        duration_nanos: 1_000_000,
        ..Default::default()
    };
    let mut stats = EdgeStats::default();
    for _ in 0..n {
        stats.add_record(&record);
    }
    EdgeRow {
        key: EdgeKey::from_record(&record),
        stats,
    }
}

#[tokio::test]
async fn grpc_no_response_is_not_also_an_error_and_status_0_never_is() {
    let rows = vec![
        calls(10, 200, Some(0), ""),
        calls(5, 200, Some(14), ""),
        // No response: `-`, counted in grpcNoResponse only.
        calls(5, 0, None, "DC"),
        // OK status with a flag (downstream closed after the answer): not an error.
        calls(5, 200, Some(0), "DC"),
    ];
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph?window=10s").await.json();
    let edge = find(
        &body["elements"]["edges"],
        "wl_default_ga-v1->wl_default_gc-v1:grpc",
    );
    let rates = &edge["traffic"]["rates"];
    assert_eq!(rates["grpc"], "2.50", "{edge:#}");
    assert_eq!(rates["grpcErr"], "0.50", "only status 14: {edge:#}");
    assert_eq!(rates["grpcNoResponse"], "0.50", "{edge:#}");
    // Kiali's percentage adds the two: 10 of 25.
    assert_eq!(rates["grpcPercentErr"], "40.0", "{edge:#}");
    let node = find(&body["elements"]["nodes"], "wl_default_gc-v1");
    assert_eq!(
        node["traffic"][0]["rates"],
        serde_json::json!({"grpcIn": "2.50", "grpcInErr": "0.50", "grpcInNoResponse": "0.50"}),
        "{node:#}"
    );
}
