-- The gRPC status of gRPC edges (Istio's grpc_response_status: 2 when the response had
-- none), NULL for other protocols and for rows written before this column: the graph
-- keys a gRPC edge's responses by it, as Kiali does. Portable SQL (PostgreSQL: same).
ALTER TABLE edge_rollups ADD COLUMN grpc_response_status INTEGER;
