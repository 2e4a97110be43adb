-- Service-graph edge rollups: one row per (bucket, edge) written by a collector when a
-- bucket closes. Several rows may share a bucket and edge (several collectors, or a
-- restart inside a bucket); readers add them up. Portable SQL (PostgreSQL: same text).

CREATE TABLE edge_rollups (
    bucket_start_unix_ms BIGINT NOT NULL,
    bucket_seconds INTEGER NOT NULL,
    source_workload TEXT NOT NULL,
    source_namespace TEXT NOT NULL,
    source_app TEXT NOT NULL,
    source_version TEXT NOT NULL,
    destination_service TEXT NOT NULL,
    destination_workload TEXT NOT NULL,
    destination_namespace TEXT NOT NULL,
    destination_version TEXT NOT NULL,
    protocol TEXT NOT NULL,
    response_code INTEGER NOT NULL,
    response_flags TEXT NOT NULL,
    reporter TEXT NOT NULL,
    request_count BIGINT NOT NULL,
    error_count BIGINT NOT NULL,
    duration_sum_ms DOUBLE PRECISION NOT NULL,
    -- Requests per Istio latency bucket (ms: 0.5, 1, 5, ..., 3600000, +Inf), not
    -- cumulative, comma separated, trailing zeros left out ("" = no request).
    latency_buckets TEXT NOT NULL,
    request_bytes BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL
);

CREATE INDEX edge_rollups_by_bucket ON edge_rollups (bucket_start_unix_ms);
