-- Rollups older than [edges] coarse_after are summed into coarse buckets: finding the
-- oldest fine rows left (bucket_seconds below the coarse length) reads this index, not
-- every coarse row before them. Portable SQL (PostgreSQL: same text).
CREATE INDEX edge_rollups_by_length ON edge_rollups (bucket_seconds, bucket_start_unix_ms);

-- Per coarse bucket length ever written, the end of its newest bucket: readers take
-- where coarse buckets begin from here as well as from the settings, so that rows
-- summed under earlier settings (a longer coarse_after, coarse buckets since turned
-- off) are still read in whole buckets.
CREATE TABLE edge_rollup_coarse (
    bucket_seconds INTEGER PRIMARY KEY,
    until_unix_ms BIGINT NOT NULL
);
