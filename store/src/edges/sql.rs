//! The SQL of the edge rollups: the sums readers and summing share, and one row's
//! insert.

use meshtel_model::graph::{EdgeKey, EdgeStats};
use sqlx::Row;

use super::{encode_latency_buckets, sum_latency_buckets};
use crate::{Result, to_i64};

/// The rows of buckets in `[$1, $2)` ms shorter than `$4` s, summed per `$3`-ms period
/// and edge.
pub(super) const SUMS_PER_PERIOD: &str = "SELECT source_workload, source_namespace, source_app, \
     source_version, destination_service, destination_workload, destination_namespace, \
     destination_version, protocol, response_code, response_flags, reporter, \
     SUM(request_count), SUM(error_count), SUM(duration_sum_ms), \
     group_concat(latency_buckets, ';'), SUM(request_bytes), SUM(response_bytes), \
     bucket_start_unix_ms - bucket_start_unix_ms % $3 AS period, grpc_response_status, \
     source_cluster, destination_cluster, COUNT(*), destination_app FROM edge_rollups \
     WHERE bucket_start_unix_ms >= $1 AND bucket_start_unix_ms < $2 AND bucket_seconds < $4 \
     GROUP BY period, source_workload, source_namespace, source_app, source_version, \
     destination_service, destination_workload, destination_namespace, \
     destination_version, protocol, response_code, response_flags, reporter, \
     grpc_response_status, source_cluster, destination_cluster, destination_app";

/// One row of [`SUMS_PER_PERIOD`]: `(period start in Unix ms, edge, sums)`.
pub(super) fn sum_row(row: &sqlx::sqlite::SqliteRow) -> Result<(u64, EdgeKey, EdgeStats)> {
    let key = EdgeKey {
        source_workload: row.try_get(0)?,
        source_namespace: row.try_get(1)?,
        source_app: row.try_get(2)?,
        source_version: row.try_get(3)?,
        destination_service: row.try_get(4)?,
        destination_workload: row.try_get(5)?,
        destination_namespace: row.try_get(6)?,
        destination_version: row.try_get(7)?,
        destination_app: row.try_get(23)?,
        protocol: row.try_get(8)?,
        response_code: u32::try_from(row.try_get::<i64, _>(9)?).unwrap_or(0),
        grpc_response_status: row
            .try_get::<Option<i64>, _>(19)?
            .and_then(|status| u32::try_from(status).ok()),
        response_flags: row.try_get(10)?,
        reporter: row.try_get(11)?,
        source_cluster: row.try_get(20)?,
        destination_cluster: row.try_get(21)?,
    };
    let stats = EdgeStats {
        requests: u64::try_from(row.try_get::<i64, _>(12)?).unwrap_or(0),
        errors: u64::try_from(row.try_get::<i64, _>(13)?).unwrap_or(0),
        duration_sum_ms: row.try_get(14)?,
        latency_buckets: sum_latency_buckets(row.try_get::<&str, _>(15)?)?,
        request_bytes: u64::try_from(row.try_get::<i64, _>(16)?).unwrap_or(0),
        response_bytes: u64::try_from(row.try_get::<i64, _>(17)?).unwrap_or(0),
    };
    let period_ms = u64::try_from(row.try_get::<i64, _>(18)?).unwrap_or(0);
    Ok((period_ms, key, stats))
}

/// Inserts one rollup row: `key`'s `stats` in the `seconds`-long bucket at `start_ms`.
pub(super) async fn insert_row(
    conn: &mut sqlx::SqliteConnection,
    start_ms: i64,
    seconds: i64,
    key: &EdgeKey,
    stats: &EdgeStats,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO edge_rollups (bucket_start_unix_ms, bucket_seconds, \
         source_workload, source_namespace, source_app, source_version, \
         destination_service, destination_workload, destination_namespace, \
         destination_version, protocol, response_code, response_flags, reporter, \
         request_count, error_count, duration_sum_ms, latency_buckets, \
         request_bytes, response_bytes, grpc_response_status, source_cluster, \
         destination_cluster, destination_app) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
    )
    .bind(start_ms)
    .bind(seconds)
    .bind(&key.source_workload)
    .bind(&key.source_namespace)
    .bind(&key.source_app)
    .bind(&key.source_version)
    .bind(&key.destination_service)
    .bind(&key.destination_workload)
    .bind(&key.destination_namespace)
    .bind(&key.destination_version)
    .bind(&key.protocol)
    .bind(i64::from(key.response_code))
    .bind(&key.response_flags)
    .bind(&key.reporter)
    .bind(to_i64(stats.requests))
    .bind(to_i64(stats.errors))
    .bind(stats.duration_sum_ms)
    .bind(encode_latency_buckets(&stats.latency_buckets))
    .bind(to_i64(stats.request_bytes))
    .bind(to_i64(stats.response_bytes))
    .bind(key.grpc_response_status.map(i64::from))
    .bind(&key.source_cluster)
    .bind(&key.destination_cluster)
    .bind(&key.destination_app)
    .execute(conn)
    .await?;
    Ok(())
}
