-- Rollups written before 0009 have no destination app (''), and readers since take ''
-- for a workload with no app label (its own node, app "unknown", as Kiali draws it), so
-- an upgraded directory drew its older rollups' workloads as unknown for the edges'
-- retention. Rows older than 0009's installation are given the app the builds before it
-- drew: the one the workload reports as a caller, else the name of the service it
-- answered for. SQLite (PostgreSQL: extract(epoch from installed_on), strpos()).
CREATE TEMP TABLE caller_apps AS
    SELECT source_namespace AS namespace, source_workload AS workload, MAX(source_app) AS app
    FROM edge_rollups
    WHERE source_app <> '' AND source_workload <> ''
    GROUP BY source_namespace, source_workload;
CREATE UNIQUE INDEX caller_apps_key ON caller_apps (namespace, workload);
UPDATE edge_rollups
SET destination_app = coalesce(
    (SELECT app FROM caller_apps
     WHERE namespace = edge_rollups.destination_namespace
       AND workload = edge_rollups.destination_workload),
    substr(destination_service, 1, instr(destination_service || '.', '.') - 1))
WHERE destination_app = ''
  AND destination_workload <> ''
  AND bucket_start_unix_ms < 1000 * (
    SELECT CAST(strftime('%s', installed_on) AS INTEGER)
    FROM _sqlx_migrations WHERE version = 9);
DROP TABLE caller_apps;
