#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;

use axum::http::StatusCode;
use meshtel_model::graph::{Buckets, ISTIO_BUCKETS};

use super::*;
use crate::QueryConfig;
use crate::testing::{MemoryReader, NOW, get, minify};

const SEC: u64 = 1_000_000_000;
/// [`NOW`] in ms: a minute boundary.
const NOW_MS: u64 = NOW / 1_000_000;
/// The three 60 s steps a window touches from [`S0`] to 25 s into the minute after
/// [`NOW`]: [`WINDOW`] long (a `3m` window touches a fourth, the minute before `S0`).
const S0: u64 = NOW_MS - 120_000;
const S1: u64 = NOW_MS - 60_000;
const S2: u64 = NOW_MS;
const REVIEWS: &str = "reviews.default.svc.cluster.local";
/// From `S0` to 25 s past [`NOW`].
const WINDOW: &str = "145s";

/// A clock 25 s past [`NOW`].
struct At(u64);

impl Clock for At {
    fn now_unix_nano(&self) -> u64 {
        self.0
    }
}

/// Rows per 10 s bucket; answers like the store, in whole buckets.
#[derive(Default)]
struct FakeBuckets {
    rows: Vec<(u64, EdgeRow)>,
    /// Windows asked for, with the step (0 for totals).
    windows: Mutex<Vec<(u64, u64, Duration)>>,
}

impl FakeBuckets {
    /// Rows of the window summed per (step-aligned period, key).
    fn in_window(&self, start: u64, end: u64, step: Duration) -> Vec<(u64, EdgeRow)> {
        self.windows.lock().unwrap().push((start, end, step));
        let from_ms = start / 1_000_000 / 10_000 * 10_000;
        let to_ms = end.div_ceil(1_000_000);
        let step_ms = u64::try_from(step.as_millis()).unwrap().max(1);
        let mut summed: BTreeMap<(u64, EdgeKey), EdgeStats> = BTreeMap::new();
        for (ms, row) in self
            .rows
            .iter()
            .filter(|(ms, _)| (from_ms..to_ms).contains(ms))
        {
            summed
                .entry((ms - ms % step_ms, row.key.clone()))
                .or_default()
                .merge(&row.stats);
        }
        summed
            .into_iter()
            .map(|((ms, key), stats)| (ms, EdgeRow { key, stats }))
            .collect()
    }
}

#[async_trait::async_trait]
impl GraphReader for FakeBuckets {
    async fn buckets(&self, _now: u64) -> meshtel_model::Result<Buckets> {
        Ok(Buckets::uniform(Duration::from_secs(10)))
    }

    async fn edges_in_window(
        &self,
        start: u64,
        end: u64,
        _buckets: Buckets,
    ) -> meshtel_model::Result<Vec<EdgeRow>> {
        let mut summed: BTreeMap<EdgeKey, EdgeStats> = BTreeMap::new();
        for (_, row) in self.in_window(start, end, Duration::ZERO) {
            summed.entry(row.key).or_default().merge(&row.stats);
        }
        Ok(summed
            .into_iter()
            .map(|(key, stats)| EdgeRow { key, stats })
            .collect())
    }

    async fn edge_buckets_in_window(
        &self,
        start: u64,
        end: u64,
        step: Duration,
        _buckets: Buckets,
    ) -> meshtel_model::Result<Vec<(u64, EdgeRow)>> {
        Ok(self.in_window(start, end, step))
    }
}

/// A `default`-namespace key; an empty source is outside the mesh.
fn key(
    service: &str,
    source: &str,
    destination: &str,
    version: &str,
    code: u32,
    flags: &str,
    reporter: &str,
) -> EdgeKey {
    let inside = |v: &str| {
        if source.is_empty() {
            String::new()
        } else {
            v.to_string()
        }
    };
    EdgeKey {
        source_workload: source.into(),
        source_namespace: inside("default"),
        source_app: inside(source.split('-').next().unwrap()),
        source_version: inside("v1"),
        destination_service: format!("{service}.default.svc.cluster.local"),
        destination_workload: destination.into(),
        destination_namespace: "default".into(),
        destination_version: version.into(),
        destination_app: destination.split('-').next().unwrap_or_default().into(),
        protocol: "http".into(),
        response_code: code,
        grpc_response_status: None,
        response_flags: flags.into(),
        reporter: reporter.into(),
        source_cluster: String::new(),
        destination_cluster: String::new(),
    }
}

/// `requests` requests all taking `ms`, `errors` of them failed.
fn stats(requests: u64, errors: u64, ms: f64) -> EdgeStats {
    let mut stats = EdgeStats {
        requests,
        errors,
        duration_sum_ms: ms * requests as f64,
        ..EdgeStats::default()
    };
    let slot = ISTIO_BUCKETS.iter().position(|b| ms <= *b).unwrap();
    stats.latency_buckets[slot] = requests;
    stats
}

/// productpage → reviews v1/v2 seen by both proxies, calls only the caller saw (`UO`
/// circuit breaking, `UF,URX`), a call from outside the mesh only the callee saw,
/// details (destination) and ratings (source only), and a row before every window.
fn mesh() -> Vec<(u64, EdgeRow)> {
    let pp = "productpage-v1";
    let row = |ms: u64, key: EdgeKey, stats: EdgeStats| (ms, EdgeRow { key, stats });
    let d = "destination";
    let s = "source";
    vec![
        // Too old for any window here.
        row(
            S0 - 60_000,
            key("reviews", pp, "reviews-v1", "v1", 200, "-", d),
            stats(100, 0, 1.0),
        ),
        // A
        row(
            S0,
            key("reviews", pp, "reviews-v1", "v1", 200, "-", d),
            stats(4, 0, 7.0),
        ),
        // E: A as the caller saw it.
        row(
            S0,
            key("reviews", pp, "reviews-v1", "v1", 200, "-", s),
            stats(4, 0, 8.0),
        ),
        // K
        row(
            S0,
            key("details", pp, "details-v1", "v1", 200, "-", d),
            stats(10, 0, 1.0),
        ),
        // B, C
        row(
            S0 + 10_000,
            key("reviews", pp, "reviews-v2", "v2", 200, "-", d),
            stats(2, 0, 30.0),
        ),
        row(
            S0 + 10_000,
            key("reviews", pp, "reviews-v2", "v2", 503, "-", d),
            stats(2, 2, 0.2),
        ),
        // F, G: B and C as the caller saw them.
        row(
            S0 + 10_000,
            key("reviews", pp, "reviews-v2", "v2", 200, "-", s),
            stats(2, 0, 40.0),
        ),
        row(
            S0 + 10_000,
            key("reviews", pp, "reviews-v2", "v2", 503, "-", s),
            stats(2, 2, 1.0),
        ),
        // Nothing in S1.
        // D, and M from outside the mesh.
        row(
            S2 + 20_000,
            key("reviews", pp, "reviews-v1", "v1", 200, "-", d),
            stats(4, 0, 3.0),
        ),
        row(
            S2,
            key("reviews", "", "reviews-v1", "v1", 200, "-", d),
            stats(2, 0, 7.0),
        ),
        // H: D as the caller saw it; I, J: failures only the caller saw.
        row(
            S2 + 20_000,
            key("reviews", pp, "reviews-v1", "v1", 200, "-", s),
            stats(4, 0, 4.0),
        ),
        row(
            S2 + 20_000,
            key("reviews", pp, "", "", 503, "UO", s),
            stats(2, 2, 0.2),
        ),
        row(
            S2,
            key("reviews", pp, "reviews-v2", "v2", 503, "UF,URX", s),
            stats(1, 1, 0.2),
        ),
        // N: ratings has no proxy of its own.
        row(
            S2,
            key("ratings", pp, "", "", 503, "UH", s),
            stats(3, 3, 0.2),
        ),
    ]
}

fn metrics_app(rows: Vec<(u64, EdgeRow)>) -> (Router, Arc<FakeBuckets>) {
    let edges = Arc::new(FakeBuckets {
        rows,
        ..FakeBuckets::default()
    });
    let app = crate::router_with_graph_and_clock(
        Arc::new(MemoryReader::default()),
        Some(edges.clone()),
        None,
        Arc::new(At(NOW + 25 * SEC)),
        &QueryConfig::default(),
    );
    (app, edges)
}

async fn body_of(app: &Router, uri: &str) -> String {
    let reply = get(app, uri).await;
    assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    reply.body
}

/// `requests` of every point of every series.
async fn requests_of(app: &Router, uri: &str) -> Vec<Vec<u64>> {
    let body: serde_json::Value = serde_json::from_str(&body_of(app, uri).await).unwrap();
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["requests"].as_u64().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn services_count_each_request_once_from_the_destination_if_it_reported() {
    let (app, edges) = metrics_app(mesh());
    let body = body_of(&app, "/api/metrics/services?window=3m").await;
    assert_eq!(
        *edges.windows.lock().unwrap(),
        vec![(NOW + 25 * SEC - 180 * SEC, NOW + 25 * SEC, Duration::ZERO)]
    );
    // reviews: destination rows A, B, C, D, M, and the caller's rows of requests no
    // callee saw, I (UO) and J (UF,URX) (17 requests, 5 errors; not E, F, G, H, which
    // the callees reported); ratings: source rows only; details: destination.
    // Rates are over the 185 s the buckets cover: from NOW - 160 s (the bucket holding
    // the window's start) to now. Quantiles are rounded to the µs.
    let expected = r#"{"services":[
        {"service":"details.default.svc.cluster.local","name":"details","namespace":"default",
         "versions":["v1"],"rate":0.05405405405405406,"errorRate":0.0,
         "p50Ms":0.75,"p95Ms":0.975,"p99Ms":0.995},
        {"service":"ratings.default.svc.cluster.local","name":"ratings","namespace":"default",
         "versions":[],"rate":0.016216216216216217,"errorRate":1.0,
         "p50Ms":0.25,"p95Ms":0.475,"p99Ms":0.495},
        {"service":"reviews.default.svc.cluster.local","name":"reviews","namespace":"default",
         "versions":["v1","v2"],"rate":0.0918918918918919,"errorRate":0.29411764705882354,
         "p50Ms":4.5,"p95Ms":39.375,"p99Ms":47.875}
    ]}"#;
    assert_eq!(body, minify(expected));

    let (app, _) = metrics_app(Vec::new());
    assert_eq!(
        body_of(&app, "/api/metrics/services").await,
        r#"{"services":[]}"#
    );
}

#[tokio::test]
async fn timeseries_by_version_has_every_step_zeros_and_nulls_included() {
    let (app, edges) = metrics_app(mesh());
    let body = body_of(
        &app,
        &format!(
            "/api/metrics/timeseries?window={WINDOW}&step=60s&service={REVIEWS}&groupBy=version"
        ),
    )
    .await;
    // Steps start on minute boundaries; the last one holds now (NOW + 25 s).
    assert_eq!(
        *edges.windows.lock().unwrap(),
        vec![(
            S0 * 1_000_000,
            (NOW_MS + 60_000) * 1_000_000,
            Duration::from_secs(60)
        )]
    );
    let zero = |t: u64| {
        format!(
            r#"{{"t":{t},"requests":0,"errors":0,"rate":0.0,"errorRate":0.0,
                "p50Ms":null,"p95Ms":null,"p99Ms":null}}"#
        )
    };
    // v1: A (4 × 7 ms) in S0; D (4 × 3 ms) and M (2 × 7 ms) in S2.
    // v2: B (2 × 30 ms) and C (2 × 0.2 ms, 503) in S0; J (UF,URX), which v2's proxy
    // never saw, in S2. unknown: I (2 × 0.2 ms, 503 UO), which reached no workload, in
    // S2. The other source rows are left out (their callees reported). S2's rate is
    // over the 25 s it has run.
    let expected = format!(
        r#"{{"start":{S0},"end":{end},"stepSeconds":60,"series":[
            {{"key":{{"version":"unknown"}},"points":[
                {z0},
                {z1},
                {{"t":{S2},"requests":2,"errors":2,"rate":0.08,"errorRate":1.0,
                  "p50Ms":0.25,"p95Ms":0.475,"p99Ms":0.495}}]}},
            {{"key":{{"version":"v1"}},"points":[
                {{"t":{S0},"requests":4,"errors":0,"rate":0.06666666666666667,"errorRate":0.0,
                  "p50Ms":7.5,"p95Ms":9.75,"p99Ms":9.95}},
                {z1},
                {{"t":{S2},"requests":6,"errors":0,"rate":0.24,"errorRate":0.0,
                  "p50Ms":4.0,"p95Ms":9.25,"p99Ms":9.85}}]}},
            {{"key":{{"version":"v2"}},"points":[
                {{"t":{S0},"requests":4,"errors":2,"rate":0.06666666666666667,"errorRate":0.5,
                  "p50Ms":0.5,"p95Ms":47.5,"p99Ms":49.5}},
                {z1},
                {{"t":{S2},"requests":1,"errors":1,"rate":0.04,"errorRate":1.0,
                  "p50Ms":0.25,"p95Ms":0.475,"p99Ms":0.495}}]}}],
            "codes":{{"200":12,"503":5}},"flags":{{"UF":1,"UO":2,"URX":1}}}}"#,
        end = NOW_MS + 60_000,
        z0 = zero(S0),
        z1 = zero(S1),
    );
    assert_eq!(body, minify(&expected));
}

#[tokio::test]
async fn timeseries_by_code_from_the_source_with_codes_and_flags() {
    let (app, _) = metrics_app(mesh());
    let body = body_of(
        &app,
        &format!(
            "/api/metrics/timeseries?window={WINDOW}&step=60s&service={REVIEWS}&groupBy=code&reporter=source"
        ),
    )
    .await;
    // 200: E (4 × 8 ms) and F (2 × 40 ms) in S0, H (4 × 4 ms) in S2.
    // 503: G (2 × 1 ms) in S0, I (2, UO) and J (1, UF,URX) at 0.2 ms in S2.
    let expected = format!(
        r#"{{"start":{S0},"end":{end},"stepSeconds":60,"series":[
            {{"key":{{"code":"200"}},"points":[
                {{"t":{S0},"requests":6,"errors":0,"rate":0.1,"errorRate":0.0,
                  "p50Ms":8.75,"p95Ms":46.25,"p99Ms":49.25}},
                {{"t":{S1},"requests":0,"errors":0,"rate":0.0,"errorRate":0.0,
                  "p50Ms":null,"p95Ms":null,"p99Ms":null}},
                {{"t":{S2},"requests":4,"errors":0,"rate":0.16,"errorRate":0.0,
                  "p50Ms":3.0,"p95Ms":4.8,"p99Ms":4.96}}]}},
            {{"key":{{"code":"503"}},"points":[
                {{"t":{S0},"requests":2,"errors":2,"rate":0.03333333333333333,"errorRate":1.0,
                  "p50Ms":0.75,"p95Ms":0.975,"p99Ms":0.995}},
                {{"t":{S1},"requests":0,"errors":0,"rate":0.0,"errorRate":0.0,
                  "p50Ms":null,"p95Ms":null,"p99Ms":null}},
                {{"t":{S2},"requests":3,"errors":3,"rate":0.12,"errorRate":1.0,
                  "p50Ms":0.25,"p95Ms":0.475,"p99Ms":0.495}}]}}],
            "codes":{{"200":10,"503":5}},"flags":{{"UF":1,"UO":2,"URX":1}}}}"#,
        end = NOW_MS + 60_000,
    );
    assert_eq!(body, minify(&expected));
}

#[tokio::test]
async fn reporter_defaults_and_fallback() {
    let (app, _) = metrics_app(mesh());
    let series = |q: &str| format!("/api/metrics/timeseries?window={WINDOW}&step=60s&{q}");
    // A service query counts each request once: the destination's reports, and the
    // caller's of requests no callee saw (S2: D + M + I + J, not H).
    assert_eq!(
        requests_of(&app, &series(&format!("service={REVIEWS}"))).await,
        vec![vec![8, 0, 9]]
    );
    assert_eq!(
        requests_of(
            &app,
            &series(&format!("service={REVIEWS}&groupBy=none&reporter=source"))
        )
        .await,
        vec![vec![8, 0, 7]]
    );
    // An edge query from the graph counts the caller's (F + G, then J).
    let edge = "sourceWorkload=productpage-v1&sourceNamespace=default\
                &destinationWorkload=reviews-v2&destinationNamespace=default";
    assert_eq!(requests_of(&app, &series(edge)).await, vec![vec![4, 0, 1]]);
    let body: serde_json::Value =
        serde_json::from_str(&body_of(&app, &series(edge)).await).unwrap();
    assert_eq!(body["codes"], serde_json::json!({"200": 2, "503": 3}));
    assert_eq!(body["flags"], serde_json::json!({"UF": 1, "URX": 1}));
    assert_eq!(
        requests_of(&app, &series(&format!("{edge}&reporter=destination"))).await,
        vec![vec![4, 0, 0]]
    );
    // An edge between app nodes (the app graph) is an edge query too: the caller's
    // reports, of every version on both sides.
    let apps = format!(
        "service={REVIEWS}&sourceApp=productpage&sourceNamespace=default\
         &destinationApp=reviews&destinationNamespace=default"
    );
    assert_eq!(
        requests_of(&app, &series(&apps)).await,
        requests_of(&app, &series(&format!("service={REVIEWS}&reporter=source"))).await
    );
    assert_eq!(
        requests_of(
            &app,
            &series(&format!("service={REVIEWS}&sourceApp=ratings"))
        )
        .await,
        vec![vec![0, 0, 0]]
    );
    // From outside the mesh (the graph's `unknown` node) only the callee reports: the
    // default falls back to it; an explicit reporter does not.
    let outside = "sourceWorkload=unknown&sourceNamespace=unknown&destinationWorkload=reviews-v1";
    assert_eq!(
        requests_of(&app, &series(outside)).await,
        vec![vec![0, 0, 2]]
    );
    let body: serde_json::Value =
        serde_json::from_str(&body_of(&app, &series(&format!("{outside}&reporter=source"))).await)
            .unwrap();
    assert_eq!(body["series"][0]["points"][2]["requests"], 0);
    assert_eq!(body["codes"], serde_json::json!({}));
    // A short service name works, and workload filters narrow it.
    assert_eq!(
        requests_of(
            &app,
            &series("service=reviews&destinationWorkload=reviews-v1")
        )
        .await,
        vec![vec![4, 0, 6]]
    );
    // An empty window still has its one series of zeros.
    let (empty, _) = metrics_app(Vec::new());
    assert_eq!(
        requests_of(&empty, &series(&format!("service={REVIEWS}"))).await,
        vec![vec![0, 0, 0]]
    );
    assert_eq!(
        requests_of(
            &empty,
            &series(&format!("service={REVIEWS}&groupBy=version"))
        )
        .await,
        Vec::<Vec<u64>>::new()
    );
}

#[tokio::test]
async fn steps_are_aligned_counted_and_bounded() {
    let (app, _) = metrics_app(Vec::new());
    let now_ms = NOW_MS + 25_000;
    // Every step the window touches, from the one holding its start (now is 25 s
    // past a minute, so no window here starts on a step boundary) to the one holding
    // now: a window of 60 steps touches 61.
    for (query, window_seconds, step_seconds, expected_points) in [
        ("window=1d&step=1h", 86_400, 3600, 25),
        ("window=90s&step=60s", 90, 60, 3),
        ("window=60s&step=60s", 60, 60, 2),
        ("window=1h", 3600, 60, 61),
        ("window=5m", 300, 10, 31),
        ("window=7d", 604_800, 10_080, 61),
        ("window=3600&step=600", 3600, 600, 7),
        ("window=10m&step=7m", 600, 420, 3),
    ] {
        let uri = format!("/api/metrics/timeseries?service={REVIEWS}&{query}");
        let body: serde_json::Value = serde_json::from_str(&body_of(&app, &uri).await).unwrap();
        assert_eq!(body["stepSeconds"], step_seconds, "{query}");
        let points = body["series"][0]["points"].as_array().unwrap();
        assert_eq!(points.len(), expected_points, "{query}");
        let step_ms = step_seconds * 1000;
        let ts: Vec<u64> = points.iter().map(|p| p["t"].as_u64().unwrap()).collect();
        assert!(
            ts.iter().all(|t| t.is_multiple_of(step_ms)),
            "{query}: aligned"
        );
        assert!(
            ts.windows(2).all(|w| w[1] - w[0] == step_ms),
            "{query}: contiguous"
        );
        let last = *ts.last().unwrap();
        assert!(
            last <= now_ms && now_ms < last + step_ms,
            "{query}: last holds now"
        );
        let from = now_ms - window_seconds * 1000;
        assert!(
            ts[0] <= from && from < ts[0] + step_ms,
            "{query}: first holds the window's start"
        );
        assert_eq!(body["start"], ts[0]);
        assert_eq!(body["end"], last + step_ms);
    }
}

#[tokio::test]
async fn bad_params_are_400_naming_the_param() {
    let (app, _) = metrics_app(mesh());
    let service = format!("service={REVIEWS}");
    for (path, query, message) in [
        (
            "timeseries",
            format!("{service}&window=5x"),
            r#"unable to parse param 'window': time: unknown unit "x" in duration "5x""#,
        ),
        (
            "timeseries",
            format!("{service}&window=8d"),
            "param 'window' must be between 1s and 7d",
        ),
        (
            "timeseries",
            format!("{service}&window=-1h"),
            r#"unable to parse param 'window': time: negative duration "-1h" is not allowed here"#,
        ),
        (
            "timeseries",
            format!("{service}&step=abc"),
            r#"unable to parse param 'step': time: invalid duration "abc""#,
        ),
        (
            "timeseries",
            format!("{service}&step=5s"),
            "param 'step' must be at least 10s",
        ),
        (
            "timeseries",
            format!("{service}&step=15.5"),
            r#"unable to parse param 'step': "15.5" is not a whole number of seconds"#,
        ),
        (
            "timeseries",
            format!("{service}&step=2h"),
            "param 'step' must not be longer than the window",
        ),
        (
            "timeseries",
            format!("{service}&window=7d&step=10s"),
            "param 'step' too small: window 604800s / step 10s is 60481 points, more than 1000",
        ),
        (
            // 1,000 whole steps, and the one the window's start falls in.
            "timeseries",
            format!("{service}&window=10000s&step=10s"),
            "param 'step' too small: window 10000s / step 10s is 1001 points, more than 1000",
        ),
        (
            "timeseries",
            "window=1h&sourceNamespace=default".to_string(),
            "param 'service' is required unless sourceWorkload or destinationWorkload is given",
        ),
        (
            "timeseries",
            format!("{service}&groupBy=pod"),
            r#"param 'groupBy' must be version, code or none, not "pod""#,
        ),
        (
            "timeseries",
            format!("{service}&reporter=both"),
            r#"param 'reporter' must be source or destination, not "both""#,
        ),
        (
            "timeseries",
            format!("{service}&window=5s"),
            "param 'window' must be at least one step (10s)",
        ),
        (
            "services",
            "window=0s".to_string(),
            "param 'window' must be between 1s and 7d",
        ),
        (
            "services",
            "window=1d1d".to_string(),
            r#"unable to parse param 'window': time: invalid duration "1d1d""#,
        ),
    ] {
        let reply = get(&app, &format!("/api/metrics/{path}?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            reply.body
        );
        let body = reply.json();
        assert_eq!(body["errors"][0]["code"], 400, "{query}");
        assert_eq!(body["errors"][0]["msg"], message, "{query}");
    }
    // At the bounds: accepted; Go's forms as the graph API takes them.
    for query in [
        format!("{service}&window=1.5m&step=1.5m"),
        format!("{service}&window=7d&step=620s"),
        format!("{service}&window=10s&step=10s"),
    ] {
        let reply = get(&app, &format!("/api/metrics/timeseries?{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
    }
}

#[tokio::test]
async fn without_edges_metrics_routes_answer_not_implemented() {
    let app = crate::router_with_clock(
        Arc::new(MemoryReader::default()),
        Arc::new(At(NOW)),
        &QueryConfig::default(),
    );
    for path in ["/api/metrics/services", "/api/metrics/timeseries?service=x"] {
        // As Jaeger answers with its metrics store disabled.
        assert_eq!(
            get(&app, path).await.status,
            StatusCode::NOT_IMPLEMENTED,
            "{path}"
        );
    }
}

/// The store's clock, moved by the test.
struct StoreClock(std::sync::atomic::AtomicU64);

impl meshtel_model::graph::UnixClock for StoreClock {
    fn now_unix_nano(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl StoreClock {
    fn set_ms(&self, unix_ms: u64) {
        self.0
            .store(unix_ms * 1_000_000, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test]
async fn timeseries_over_the_real_rollups_line_up_with_the_steps() {
    use meshtel_model::mixer::{Reporter as ProtoReporter, RequestRecord, Workload};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(StoreClock(Default::default()));
    let rollups = meshtel_store::EdgeRollups::open(
        dir.path(),
        meshtel_store::EdgeConfig::default(),
        clock.clone(),
    )
    .await
    .unwrap();
    let record = |start_ms: u64, code: u32| RequestRecord {
        reporter: ProtoReporter::Destination as i32,
        source: Some(Workload {
            name: "productpage-v1".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        destination: Some(Workload {
            name: "reviews-v1".into(),
            namespace: "default".into(),
            version: "v1".into(),
            ..Default::default()
        }),
        destination_service: REVIEWS.into(),
        request_protocol: "http".into(),
        response_code: code,
        start_unix_nano: start_ms * 1_000_000,
        duration_nanos: 7_000_000,
        ..Default::default()
    };
    // Each recorded as it happens (late records would go to the current bucket): two
    // in S0's second bucket and one in S2's first, written to SQL; one in S2's third
    // bucket, still open at NOW + 25 s.
    for (at_ms, records) in [
        (
            S0 + 20_000,
            [record(S0 + 15_000, 200), record(S0 + 19_999, 200)].to_vec(),
        ),
        (S2 + 4_000, vec![record(S2 + 3_000, 503)]),
        (S2 + 25_000, vec![record(S2 + 21_000, 200)]),
    ] {
        clock.set_ms(at_ms);
        rollups.record(&records.iter().collect::<Vec<_>>());
    }
    assert_eq!(rollups.flush_closed().await.unwrap(), 2);
    assert_eq!(rollups.snapshot().open_buckets, 1);
    let app = crate::router_with_graph_and_clock(
        Arc::new(MemoryReader::default()),
        Some(Arc::new(rollups)),
        None,
        Arc::new(At(NOW + 25 * SEC)),
        &QueryConfig::default(),
    );
    let uri = format!("/api/metrics/timeseries?window={WINDOW}&step=60s&service={REVIEWS}");
    assert_eq!(requests_of(&app, &uri).await, vec![vec![2, 0, 2]]);
    let body: serde_json::Value = serde_json::from_str(&body_of(&app, &uri).await).unwrap();
    assert_eq!(body["codes"], serde_json::json!({"200": 3, "503": 1}));
    assert_eq!(body["series"][0]["points"][2]["errors"], 1);
    // From S2 - 5 s: four 10 s steps, the first the one before S2.
    let uri = format!("/api/metrics/timeseries?window=30s&step=10s&service={REVIEWS}");
    assert_eq!(requests_of(&app, &uri).await, vec![vec![0, 1, 0, 1]]);
}

/// A version without a proxy (reviews-v3, in the mesh file, nothing listening) is
/// counted from its callers' reports beside the versions that report their own.
#[tokio::test]
async fn a_version_without_a_proxy_is_counted_from_its_callers() {
    let pp = "productpage-v1";
    let row = |ms: u64, key: EdgeKey, stats: EdgeStats| (ms, EdgeRow { key, stats });
    let (app, _) = metrics_app(vec![
        row(
            S2,
            key("reviews", pp, "reviews-v1", "v1", 200, "-", "destination"),
            stats(4, 0, 3.0),
        ),
        row(
            S2,
            key("reviews", pp, "reviews-v1", "v1", 200, "-", "source"),
            stats(4, 0, 4.0),
        ),
        row(
            S2,
            key("reviews", pp, "reviews-v3", "v3", 503, "UF,URX", "source"),
            stats(5, 5, 1.0),
        ),
        // Circuit breaking at the caller, aimed at reviews-v1, which reports: its proxy
        // never saw these, so the caller's count.
        row(
            S2,
            key("reviews", pp, "reviews-v1", "v1", 503, "UO", "source"),
            stats(2, 2, 0.1),
        ),
        // A 503 reviews-v1's app answered: its proxy reported it (not in this window's
        // rows); the caller's row of it is not counted instead.
        row(
            S2,
            key("reviews", pp, "reviews-v1", "v1", 503, "-", "source"),
            stats(1, 1, 5.0),
        ),
    ]);
    let body: serde_json::Value =
        serde_json::from_str(&body_of(&app, "/api/metrics/services?window=1m").await).unwrap();
    let reviews = &body["services"][0];
    assert_eq!(reviews["versions"], serde_json::json!(["v1", "v3"]));
    assert_eq!(reviews["errorRate"], 7.0 / 11.0);
    let uri =
        format!("/api/metrics/timeseries?window=1m&step=60s&service={REVIEWS}&groupBy=version");
    assert_eq!(requests_of(&app, &uri).await, vec![vec![0, 6], vec![0, 5]]);
    let body: serde_json::Value = serde_json::from_str(&body_of(&app, &uri).await).unwrap();
    assert_eq!(
        body["flags"],
        serde_json::json!({"UF": 5, "URX": 5, "UO": 2})
    );
}
