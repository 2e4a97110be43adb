-- When a service or operation was last written, so that the catalog forgets entries
-- whose spans retention has deleted (crate::catalog_writer). Written coarsely: at most
-- once per hundredth of the retention age per entry.
ALTER TABLE services ADD COLUMN last_seen_unix_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN last_seen_unix_ms BIGINT NOT NULL DEFAULT 0;
-- Entries listed before this migration count as seen now: none is forgotten sooner
-- than one retention age after the upgrade.
UPDATE services SET last_seen_unix_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
UPDATE operations SET last_seen_unix_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
