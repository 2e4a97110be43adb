//! Times service-graph reads over a long window: EDGES distinct edges in each of
//! BUCKETS 10 s buckets (default 6,000 × 360: an hour of a large mesh, 2.16M rows),
//! written straight into a fresh `meshtel.db`, then read three times as `/api/graph`
//! reads them (summed per edge) and as the metrics API does (per 5 minutes). Then the
//! rows older than COARSE_AFTER seconds (default 360) are summed into 5-minute buckets
//! as `[edges] coarse_after` has the collector do, and the same reads timed again.
//!
//! ```text
//! cargo run --release -p meshtel-store --example edges_window -- [EDGES] [BUCKETS] [COARSE_AFTER]
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
    let coarse_after = args.get(2).copied().unwrap_or(360);
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(SystemUnixClock);
    let config = EdgeConfig {
        coarse_after: Duration::from_secs(coarse_after),
        ..EdgeConfig::default()
    };
    let rollups = EdgeRollups::open(dir.path(), config, clock.clone()).await?;
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
    read_rounds(&rollups, start, end).await?;

    let started = Instant::now();
    let (mut periods, mut fine, mut coarse) = (0, 0, 0);
    while let Some(done) = rollups.coarsen_oldest().await? {
        periods += 1;
        fine += done.fine_rows;
        coarse += done.coarse_rows;
    }
    println!(
        "summed {fine} rows into {coarse} in {periods} coarse buckets in {:.1} s ({:.0} ms each)",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1000.0 / f64::from(periods.max(1))
    );
    read_rounds(&rollups, start, end).await?;
    rollups.shutdown().await?;
    Ok(())
}

/// Reads the window three times as the graph and the metrics API do.
async fn read_rounds(rollups: &EdgeRollups, start: u64, end: u64) -> Result<(), Box<dyn Error>> {
    for round in 1..=3 {
        let started = Instant::now();
        let summed = rollups.edges_between(start, end).await?;
        let per_edge = started.elapsed();
        let started = Instant::now();
        let periods = rollups
            .edge_buckets_between(start, end, Duration::from_secs(300))
            .await?;
        let per_step = started.elapsed();
        let requests: u64 = summed.iter().map(|e| e.stats.requests).sum();
        println!(
            "round {round}: per edge {} edges, {requests} requests in {:.2} s; per 5 minutes {} rows in {:.2} s",
            summed.len(),
            per_edge.as_secs_f64(),
            periods.len(),
            per_step.as_secs_f64()
        );
    }
    Ok(())
}
