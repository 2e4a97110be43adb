//! `[edges] max_read_time`.

use super::*;
use crate::Error;

/// Writes `edges` × `buckets` rows of 10 s buckets ending at `T0`, straight into SQL.
async fn many_rows(rollups: &EdgeRollups, edges: i64, buckets: i64) {
    sqlx::query(
        "WITH RECURSIVE e(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM e WHERE x + 1 < $1), \
         b(y) AS (SELECT 0 UNION ALL SELECT y + 1 FROM b WHERE y + 1 < $2) \
         INSERT INTO edge_rollups (bucket_start_unix_ms, bucket_seconds, source_workload, \
         source_namespace, source_app, source_version, destination_service, \
         destination_workload, destination_namespace, destination_version, protocol, \
         response_code, response_flags, reporter, request_count, error_count, \
         duration_sum_ms, latency_buckets, request_bytes, response_bytes) \
         SELECT $3 - y * 10000, 10, 'wl-' || x, 'ns', 'app', 'v1', 'svc.ns.svc.cluster.local', \
         'dst', 'ns', 'v1', 'http', 200, '-', 'source', 5, 0, 10.0, '0,5', 1, 1 FROM e, b",
    )
    .bind(edges)
    .bind(buckets)
    .bind(i64::try_from(T0 / 1_000_000).unwrap() - 10_000)
    .execute(&rollups.inner.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_read_past_max_read_time_is_stopped_by_name_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let config = EdgeConfig {
        max_read_time: Duration::from_millis(20),
        ..Default::default()
    };
    let rollups = EdgeRollups::open(dir.path(), config, clock.clone())
        .await
        .unwrap();
    // 2,000 edges over 20 minutes: 240,000 rows, far more than 20 ms of work.
    many_rows(&rollups, 2_000, 120).await;
    let started = std::time::Instant::now();
    let error = rollups
        .edges_between(T0 - 1200 * SEC, T0)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ReadTimeLimit { .. }), "{error}");
    assert!(
        error.to_string().contains("[edges] max_read_time (20ms)"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped soon after the bound"
    );
    let api: meshtel_model::Error = error.into();
    assert_eq!(api.code(), meshtel_model::ErrorCode::Unavailable);

    // Every connection still answers a read that fits the bound, however often.
    for _ in 0..8 {
        let recent = rollups.edges_between(T0, T0 + 10 * SEC).await.unwrap();
        assert!(recent.is_empty());
    }
    // The same rows, without the bound's hurry.
    let patient = EdgeRollups::open(dir.path(), EdgeConfig::default(), clock)
        .await
        .unwrap();
    let all = patient.edges_between(T0 - 1200 * SEC, T0).await.unwrap();
    assert_eq!(all.len(), 2_000);
}

#[tokio::test]
async fn a_read_dropped_by_its_caller_frees_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, _clock) = rollups(dir.path()).await;
    // 4,000 edges over 20 minutes: each read runs for seconds.
    many_rows(&rollups, 4_000, 120).await;
    // Four reads (the pool's four connections) given up on after 20 ms each: were
    // they left running, the short read below would wait for one to end.
    for _ in 0..4 {
        let read = rollups.edges_between(T0 - 1200 * SEC, T0);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), read)
                .await
                .is_err()
        );
    }
    // A short read gets a connection at once rather than wait for the long ones.
    let started = std::time::Instant::now();
    rollups.edges_between(T0, T0 + 10 * SEC).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_read_of_more_edges_than_max_read_edges_is_stopped_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let config = EdgeConfig {
        max_read_edges: 100,
        ..Default::default()
    };
    let rollups = EdgeRollups::open(dir.path(), config, clock.clone())
        .await
        .unwrap();
    // 150 edges in SQL over a minute, and 10 more of the open bucket in memory.
    many_rows(&rollups, 150, 6).await;
    let error = rollups.edges_between(T0 - 60 * SEC, T0).await.unwrap_err();
    assert!(
        matches!(error, Error::ReadEdgeLimit { limit: 100 }),
        "{error}"
    );
    assert!(
        error.to_string().contains("[edges] max_read_edges (100)"),
        "{error}"
    );
    let api: meshtel_model::Error = error.into();
    assert_eq!(api.code(), meshtel_model::ErrorCode::Unavailable);
    // The open bucket's edges count too.
    let records: Vec<RequestRecord> = (0..150)
        .map(|i| {
            let mut r = record(T0 + SEC, 200, 5);
            r.source = Some(meshtel_model::mixer::Workload {
                name: format!("live-{i}"),
                ..r.source.clone().unwrap_or_default()
            });
            r
        })
        .collect();
    rollups.record(&records.iter().collect::<Vec<_>>());
    let error = rollups.edges_between(T0, T0 + 10 * SEC).await.unwrap_err();
    assert!(matches!(error, Error::ReadEdgeLimit { .. }), "{error}");
    // In periods, the bound is per period: 150 edges in each of six 10 s periods is
    // past 100 per period.
    let periods = rollups
        .edge_buckets_between(T0 - 60 * SEC, T0, Duration::from_secs(10))
        .await;
    assert!(
        matches!(periods, Err(Error::ReadEdgeLimit { .. })),
        "{periods:?}"
    );
    // Under the default bound, the same rows are read whole.
    let patient = EdgeRollups::open(dir.path(), EdgeConfig::default(), clock)
        .await
        .unwrap();
    let all = patient.edges_between(T0 - 60 * SEC, T0).await.unwrap();
    assert_eq!(all.len(), 150);
    let periods = patient
        .edge_buckets_between(T0 - 60 * SEC, T0, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(periods.len(), 150 * 6);
}
