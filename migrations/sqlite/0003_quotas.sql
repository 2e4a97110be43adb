-- Quota policy administration: the policies, their audit log, admin bearer tokens and a
-- revision counter that every policy write bumps (collectors poll it to reload).
-- Portable SQL; the PostgreSQL dialect differs only in the audit id column
-- (`BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY`).

CREATE TABLE quota_policies (
    name TEXT PRIMARY KEY NOT NULL,
    -- The QuotaPolicySpec as JSON (camelCase keys, as the API takes it).
    spec TEXT NOT NULL,
    -- 1 at creation, +1 on every change; the HTTP ETag.
    version BIGINT NOT NULL,
    updated_unix_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE quota_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_unix_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    -- create, update or delete
    action TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The spec as JSON before and after the change; NULL on create / delete.
    before_spec TEXT,
    after_spec TEXT
);

CREATE INDEX quota_audit_by_name ON quota_audit (name, id);

-- Bearer tokens of the admin API, as SHA-256 hex digests; the tokens are never stored.
CREATE TABLE admin_tokens (
    digest TEXT PRIMARY KEY NOT NULL,
    label TEXT NOT NULL,
    created_unix_ms BIGINT NOT NULL
);

-- One row: bumped in the same transaction as every policy write.
CREATE TABLE quota_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO quota_state (id, revision) VALUES (1, 0);
