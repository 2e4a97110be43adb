//! `GET /metrics`: meshtel's own counters in the Prometheus text format.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use meshtel_collector::{MeshMetrics, QuotaEngine};
use meshtel_store::TraceStore;

use crate::http_server::HttpTimeoutMetrics;
use prometheus::{Counter, Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};

/// The `/metrics` route over the store's counters and, when given, the mesh metrics
/// (Istio's request metrics and `meshtel_report_*`), appended to the same text.
pub fn router(
    store: TraceStore,
    mesh: Option<MeshMetrics>,
    quota: Option<Arc<QuotaEngine>>,
    http_timeouts: HttpTimeoutMetrics,
) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let store = store.clone();
            let mesh = mesh.clone();
            let quota = quota.clone();
            let http_timeouts = http_timeouts.clone();
            async move { render(&store, mesh.as_ref(), quota.as_deref(), &http_timeouts) }
        }),
    )
}

fn render(
    store: &TraceStore,
    mesh: Option<&MeshMetrics>,
    quota: Option<&QuotaEngine>,
    http_timeouts: &HttpTimeoutMetrics,
) -> axum::response::Response {
    let s = store.stats();
    let registry = Registry::new();
    let _ = registry.register(http_timeouts.collector());
    let counter = |name: &str, help: &str, v: u64| {
        if let Ok(c) = IntCounter::with_opts(Opts::new(name, help)) {
            c.inc_by(v);
            let _ = registry.register(Box::new(c));
        }
    };
    let gauge = |name: &str, help: &str, v: u64| {
        if let Ok(g) = IntGauge::with_opts(Opts::new(name, help)) {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            let _ = registry.register(Box::new(g));
        }
    };
    // Cumulative seconds are counters: promtool refuses `_total` on a gauge.
    let seconds = |name: &str, help: &str, v: f64| {
        if let Ok(c) = Counter::with_opts(Opts::new(name, help)) {
            c.inc_by(v.max(0.0));
            let _ = registry.register(Box::new(c));
        }
    };
    counter(
        "meshtel_store_spans_written_total",
        "Spans acknowledged (in the WAL).",
        s.spans_written,
    );
    counter(
        "meshtel_wal_bytes_total",
        "Bytes appended to the write-ahead log.",
        s.wal_bytes,
    );
    counter(
        "meshtel_wal_commits_total",
        "WAL group commits.",
        s.wal_commits,
    );
    seconds(
        "meshtel_wal_commit_seconds_total",
        "Time spent in WAL group commits.",
        s.wal_commit_seconds,
    );
    counter(
        "meshtel_wal_fsyncs_total",
        "WAL fsyncs by the interval syncer.",
        s.wal_fsyncs,
    );
    seconds(
        "meshtel_wal_fsync_seconds_total",
        "Time spent in WAL fsyncs.",
        s.wal_fsync_seconds,
    );
    counter(
        "meshtel_store_flushes_total",
        "Head flushes to Parquet blocks.",
        s.flushes,
    );
    seconds(
        "meshtel_store_flush_seconds_total",
        "Time spent flushing the head to blocks (sort, encode, write, index).",
        s.flush_seconds,
    );
    counter(
        "meshtel_store_compactions_total",
        "Block compactions.",
        s.compactions,
    );
    counter(
        "meshtel_store_blocks_expired_total",
        "Blocks deleted by retention.",
        s.blocks_deleted_by_retention,
    );
    counter(
        "meshtel_store_writes_rejected_overload_total",
        "Writes refused because the pipeline was full.",
        s.rejected_overload,
    );
    counter(
        "meshtel_store_catalog_overflow_total",
        "Operations not catalogued because of max_catalog_operations.",
        s.catalog_overflow,
    );
    gauge(
        "meshtel_store_head_spans",
        "Spans in memory, not yet in a block.",
        s.head_spans,
    );
    gauge(
        "meshtel_store_head_bytes",
        "Arrow memory of the spans not yet in a block (bounded by store.max_head_bytes).",
        s.head_bytes,
    );
    gauge(
        "meshtel_store_blocks",
        "Parquet blocks in the index.",
        s.blocks,
    );
    gauge(
        "meshtel_store_block_spans",
        "Spans in Parquet blocks.",
        s.block_spans,
    );
    gauge(
        "meshtel_store_block_bytes",
        "Bytes of Parquet blocks on disk.",
        s.block_bytes,
    );
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buffer);
    if let Some(mesh) = mesh {
        buffer.extend_from_slice(mesh.render_text().as_bytes());
    }
    if let Some(quota) = quota {
        let mut text = String::new();
        quota.render_metrics(&mut text);
        buffer.extend_from_slice(text.as_bytes());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        buffer,
    )
        .into_response()
}
