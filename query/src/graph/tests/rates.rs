//! Rates over the real edge rollups: steady traffic reads steady at any window and
//! instant.

use std::sync::{Arc, Mutex};

use super::find;
use crate::QueryConfig;
use crate::testing::{MemoryReader, NOW, get};

/// A query clock at a chosen instant.
pub(super) struct At(pub(super) u64);

impl crate::Clock for At {
    fn now_unix_nano(&self) -> u64 {
        self.0
    }
}

/// The store's clock, moved by the test.
struct StoreClock(std::sync::atomic::AtomicU64);

impl meshtel_model::graph::UnixClock for StoreClock {
    fn now_unix_nano(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The real rollups after a steady 10 requests/s from outside the mesh to
/// productpage-v1 over the 90 s before `now`, each request recorded as it starts and
/// the buckets written to SQL as they close.
pub(super) async fn steady_rollups(dir: &std::path::Path, now: u64) -> meshtel_store::EdgeRollups {
    steady_rollups_with(dir, now, 90, meshtel_store::EdgeConfig::default()).await
}

/// [`steady_rollups`] over the `seconds` before `now`, with `config`.
async fn steady_rollups_with(
    dir: &std::path::Path,
    now: u64,
    seconds: u64,
    config: meshtel_store::EdgeConfig,
) -> meshtel_store::EdgeRollups {
    use meshtel_model::mixer::{Reporter, RequestRecord, Workload};
    const SEC: u64 = 1_000_000_000;
    let clock = Arc::new(StoreClock(Default::default()));
    let rollups = meshtel_store::EdgeRollups::open(dir, config, clock.clone())
        .await
        .unwrap();
    let set = |at: u64| clock.0.store(at, std::sync::atomic::Ordering::Relaxed);
    let mut at = now - seconds * SEC;
    while at < now {
        set(at);
        let record = RequestRecord {
            reporter: Reporter::Destination as i32,
            destination: Some(Workload {
                name: "productpage-v1".into(),
                namespace: "default".into(),
                app: "productpage".into(),
                version: "v1".into(),
                ..Default::default()
            }),
            destination_service: "productpage.default.svc.cluster.local".into(),
            request_protocol: "http".into(),
            response_code: 200,
            start_unix_nano: at,
            duration_nanos: 5_000_000,
            ..Default::default()
        };
        rollups.record(&[&record]);
        if at.is_multiple_of(SEC) {
            rollups.flush_closed().await.unwrap();
        }
        at += SEC / 10;
    }
    set(now);
    rollups.flush_closed().await.unwrap();
    rollups
}

#[tokio::test]
async fn steady_traffic_reads_steady_rates_at_any_window_and_instant() {
    const SEC: u64 = 1_000_000_000;
    // Every figure off by more than 1.5 %, listed at the end.
    let wrong = Mutex::new(Vec::new());
    let close = |what: &str, value: f64| {
        if (value - 10.0).abs() > 0.15 {
            wrong.lock().unwrap().push(format!("{what}: {value} req/s"));
        }
    };
    let number = |value: &serde_json::Value| value.as_str().unwrap().parse::<f64>().unwrap();
    // NOW is on a bucket boundary: the windows start early, half-way and late in one.
    for offset_ms in [300, 2_500, 5_000, 7_700, 9_900] {
        let now = NOW + 60 * SEC + offset_ms * 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let rollups = steady_rollups(dir.path(), now).await;
        let app = crate::router_with_graph_and_clock(
            Arc::new(MemoryReader::default()),
            Some(Arc::new(rollups)),
            None,
            Arc::new(At(now)),
            &QueryConfig::default(),
        );
        for window in ["10s", "1m"] {
            let at = format!("{offset_ms} ms into a bucket, window={window}");
            let body = get(&app, &format!("/api/graph?window={window}"))
                .await
                .json();
            let edge = find(
                &body["elements"]["edges"],
                "unknown_source->wl_default_productpage-v1:http",
            );
            close(
                &format!("edge, {at}"),
                number(&edge["traffic"]["rates"]["http"]),
            );
            let nodes = &body["elements"]["nodes"];
            let node = find(nodes, "wl_default_productpage-v1");
            close(
                &format!("httpIn, {at}"),
                number(&node["traffic"][0]["rates"]["httpIn"]),
            );
            let node = find(nodes, "unknown_source");
            close(
                &format!("httpOut, {at}"),
                number(&node["traffic"][0]["rates"]["httpOut"]),
            );

            let dot = get(&app, &format!("/api/graph.dot?window={window}"))
                .await
                .body;
            let label = dot.split("reqs/sec: ").nth(1).unwrap();
            let value = label.split('"').next().unwrap().parse::<f64>().unwrap();
            close(&format!("DOT, {at}"), value);

            let body = get(&app, &format!("/api/metrics/services?window={window}"))
                .await
                .json();
            close(
                &format!("services, {at}"),
                body["services"][0]["rate"].as_f64().unwrap(),
            );
        }
        // 15 s steps hold two or one 10 s buckets; each full step reads 10/s (the
        // running one, over the time it has run, is as young as the offset).
        let uri = "/api/metrics/timeseries?window=1m&step=15s\
                   &service=productpage.default.svc.cluster.local";
        let body = get(&app, uri).await.json();
        let points = body["series"][0]["points"].as_array().unwrap();
        for point in &points[..points.len() - 1] {
            close(
                &format!("step {}, {offset_ms} ms", point["t"]),
                point["rate"].as_f64().unwrap(),
            );
        }
    }
    let wrong = wrong.into_inner().unwrap();
    assert!(wrong.is_empty(), "not 10 req/s:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn steady_traffic_reads_steady_across_coarse_buckets() {
    const SEC: u64 = 1_000_000_000;
    // Rollups older than 2 minutes summed per minute; 8 minutes of 10 requests/s.
    let config = meshtel_store::EdgeConfig {
        coarse_bucket: std::time::Duration::from_secs(60),
        coarse_after: std::time::Duration::from_secs(120),
        ..Default::default()
    };
    let wrong = Mutex::new(Vec::new());
    let close = |what: &str, value: f64| {
        if (value - 10.0).abs() > 0.15 {
            wrong.lock().unwrap().push(format!("{what}: {value} req/s"));
        }
    };
    for offset_ms in [2_500, 37_700] {
        let now = NOW + 600 * SEC + offset_ms * 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let rollups = steady_rollups_with(dir.path(), now, 480, config.clone()).await;
        let app = |rollups: &meshtel_store::EdgeRollups| {
            crate::router_with_graph_and_clock(
                Arc::new(MemoryReader::default()),
                Some(Arc::new(rollups.clone())),
                None,
                Arc::new(At(now)),
                &QueryConfig::default(),
            )
        };
        let answers = |app: axum::Router| async move {
            let mut answers = Vec::new();
            for window in ["1m", "3m", "5m", "7m"] {
                let body = get(&app, &format!("/api/metrics/services?window={window}"))
                    .await
                    .json();
                answers.push((
                    format!("services, window={window}"),
                    body["services"][0]["rate"].as_f64().unwrap(),
                ));
            }
            let uri = "/api/metrics/timeseries?window=7m&step=15s\
                       &service=productpage.default.svc.cluster.local";
            let body = get(&app, uri).await.json();
            assert_eq!(
                body["stepSeconds"], 60,
                "steps reaching coarse buckets hold them whole"
            );
            let points = body["series"][0]["points"].as_array().unwrap();
            // The first step may predate the traffic, the last is running.
            for point in &points[1..points.len() - 1] {
                answers.push((
                    format!("step {}", point["t"]),
                    point["rate"].as_f64().unwrap(),
                ));
            }
            answers
        };
        let before = answers(app(&rollups)).await;
        let mut periods = 0;
        while rollups.coarsen_oldest().await.unwrap().is_some() {
            periods += 1;
        }
        assert!(periods >= 5, "{periods} coarse periods summed");
        let after = answers(app(&rollups)).await;
        assert_eq!(before, after, "summing old buckets changes no answer");
        for (what, rate) in after {
            close(&format!("{what}, {offset_ms} ms"), rate);
        }
    }
    let wrong = wrong.into_inner().unwrap();
    assert!(wrong.is_empty(), "not 10 req/s:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_graph_read_past_max_read_time_is_a_503_naming_it() {
    use meshtel_model::mixer::{Reporter, RequestRecord, Workload};
    const SEC: u64 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(StoreClock(Default::default()));
    let config = meshtel_store::EdgeConfig {
        max_read_time: std::time::Duration::from_millis(1),
        ..Default::default()
    };
    let rollups = meshtel_store::EdgeRollups::open(dir.path(), config, clock.clone())
        .await
        .unwrap();
    // 500 callers over 60 buckets: 30,000 rows, far more than a millisecond of work.
    let start = NOW - 600 * SEC;
    for bucket in 0..60 {
        let at = start + bucket * 10 * SEC;
        clock.0.store(at, std::sync::atomic::Ordering::Relaxed);
        let records: Vec<RequestRecord> = (0..500)
            .map(|caller| RequestRecord {
                reporter: Reporter::Source as i32,
                source: Some(Workload {
                    name: format!("caller-{caller}"),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                destination_service: "productpage.default.svc.cluster.local".into(),
                request_protocol: "http".into(),
                response_code: 200,
                start_unix_nano: at,
                ..Default::default()
            })
            .collect();
        rollups.record(&records.iter().collect::<Vec<_>>());
    }
    rollups.flush_all().await.unwrap();
    let app = crate::router_with_graph_and_clock(
        Arc::new(MemoryReader::default()),
        Some(Arc::new(rollups)),
        None,
        Arc::new(At(NOW)),
        &QueryConfig::default(),
    );
    let answer = get(&app, "/api/graph?window=10m").await;
    assert_eq!(answer.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.body.contains("[edges] max_read_time (1ms)"),
        "{}",
        answer.body
    );
}
