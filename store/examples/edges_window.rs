//! Times service-graph reads over a long window: EDGES distinct edges in each of
//! BUCKETS 10 s buckets (default 6,000 × 360: an hour of a large mesh, 2.16M rows),
//! written straight into a fresh `meshtel.db`, then read three times as `/api/graph`
//! reads them (summed per edge) and as the metrics API does (per minute).
//!
//! ```text
//! cargo run --release -p meshtel-store --example edges_window -- [EDGES] [BUCKETS]
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshtel_model::graph::{SystemUnixClock, UnixClock};
use meshtel_store::{EdgeConfig, EdgeRollups};
use sqlx::sqlite::SqliteConnectOptions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let edges = args.first().copied().unwrap_or(6_000);
    let buckets = args.get(1).copied().unwrap_or(360);
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(SystemUnixClock);
    let rollups = EdgeRollups::open(dir.path(), EdgeConfig::default(), clock.clone()).await?;
    let now_ms = clock.now_unix_nano() / 1_000_000;
    let newest = (now_ms / 10_000) * 10_000 - 20_000;

    let started = Instant::now();
    let pool = sqlx::SqlitePool::connect_with(
        SqliteConnectOptions::new().filename(dir.path().join("meshtel.db")),
    )
    .await?;
    sqlx::query(
        "WITH RECURSIVE e(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM e WHERE x + 1 < $1), \
         b(y) AS (SELECT 0 UNION ALL SELECT y + 1 FROM b WHERE y + 1 < $2) \
         INSERT INTO edge_rollups (bucket_start_unix_ms, bucket_seconds, source_workload, \
         source_namespace, source_app, source_version, destination_service, \
         destination_workload, destination_namespace, destination_version, protocol, \
         response_code, response_flags, reporter, request_count, error_count, \
         duration_sum_ms, latency_buckets, request_bytes, response_bytes) \
         SELECT $3 - y * 10000, 10, 'wl-' || (x / 3), 'ns-' || (x % 20), 'app-' || (x / 3), \
         'v1', 'svc-' || ((x * 7) % 1000) || '.ns.svc.cluster.local', 'dst-' || ((x * 7) % 1000), \
         'ns', 'v1', 'http', CASE x % 3 WHEN 0 THEN 200 WHEN 1 THEN 503 ELSE 404 END, '-', \
         'source', 50, x % 3, 1234.5, '0,3,10,20,15,2', 5000, 90000 FROM e, b",
    )
    .bind(i64::try_from(edges)?)
    .bind(i64::try_from(buckets)?)
    .bind(i64::try_from(newest)?)
    .execute(&pool)
    .await?;
    pool.close().await;
    println!(
        "{} rows written in {:.1} s",
        edges * buckets,
        started.elapsed().as_secs_f64()
    );

    let end = (newest + 10_000) * 1_000_000;
    let start = end - buckets * 10_000_000_000;
    for round in 1..=3 {
        let started = Instant::now();
        let summed = rollups.edges_between(start, end).await?;
        let per_edge = started.elapsed();
        let started = Instant::now();
        let periods = rollups
            .edge_buckets_between(start, end, Duration::from_secs(60))
            .await?;
        let per_minute = started.elapsed();
        let requests: u64 = summed.iter().map(|e| e.stats.requests).sum();
        println!(
            "round {round}: per edge {} edges, {requests} requests in {:.2} s; per minute {} rows in {:.2} s",
            summed.len(),
            per_edge.as_secs_f64(),
            periods.len(),
            per_minute.as_secs_f64()
        );
    }
    rollups.shutdown().await?;
    Ok(())
}
