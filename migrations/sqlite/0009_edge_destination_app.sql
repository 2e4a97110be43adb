-- The destination workload's app (Istio's destination_app / destination_canonical_service),
-- part of an edge's key: Kiali's app graphs group the workloads answering a call by it.
-- '' for rows written before this column and for a destination no workload answered;
-- readers then take the app the workload reports as a caller, else its service.
-- Portable SQL (PostgreSQL: same text).
ALTER TABLE edge_rollups ADD COLUMN destination_app TEXT NOT NULL DEFAULT '';
