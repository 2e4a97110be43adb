-- The policy version an audit entry's change made (the HTTP ETag), or for a delete the
-- version deleted: audit entries and If-Match / ETag values can be matched up.
-- NULL for entries written before this column.
-- Portable SQL (PostgreSQL: same text).
ALTER TABLE quota_audit ADD COLUMN version BIGINT;
