-- The clusters the proxies reported (Istio's source_cluster / destination_cluster, the
-- proxies' --cluster), part of an edge's key: the graph's nodes carry them, as Kiali's
-- do. '' for rows written before these columns and for a side no proxy reported (the
-- graph shows "unknown"). Portable SQL (PostgreSQL: same text).
ALTER TABLE edge_rollups ADD COLUMN source_cluster TEXT NOT NULL DEFAULT '';
ALTER TABLE edge_rollups ADD COLUMN destination_cluster TEXT NOT NULL DEFAULT '';
