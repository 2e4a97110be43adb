-- Catalog of services and operations seen in spans, and the index of Parquet blocks.
-- Portable SQL: the PostgreSQL dialect differs only in BIGINT for 64-bit columns.

CREATE TABLE services (
    name TEXT PRIMARY KEY NOT NULL,
    first_seen_unix_ms BIGINT NOT NULL
);

CREATE TABLE operations (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    span_kind INTEGER NOT NULL,
    first_seen_unix_ms BIGINT NOT NULL,
    PRIMARY KEY (service, name, span_kind)
);

CREATE TABLE blocks (
    id BIGINT PRIMARY KEY NOT NULL,
    path TEXT NOT NULL,
    min_start_unix_nano BIGINT NOT NULL,
    max_start_unix_nano BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    byte_size BIGINT NOT NULL,
    level INTEGER NOT NULL,
    wal_seq BIGINT NOT NULL,
    created_unix_ms BIGINT NOT NULL
);

CREATE INDEX blocks_by_max_start ON blocks (max_start_unix_nano);

-- Highest WAL segment whose rows are all in blocks; survives the deletion of blocks.
CREATE TABLE wal_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    flushed_through_seq BIGINT NOT NULL
);
INSERT INTO wal_state (id, flushed_through_seq) VALUES (1, 0);
