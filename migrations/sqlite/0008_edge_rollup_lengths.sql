-- Rollups older than [edges] coarse_after are summed into coarse buckets: finding the
-- oldest fine rows left (bucket_seconds below the coarse length) reads this index, not
-- every coarse row before them. Portable SQL (PostgreSQL: same text).
CREATE INDEX edge_rollups_by_length ON edge_rollups (bucket_seconds, bucket_start_unix_ms);
