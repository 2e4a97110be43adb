//! `GET /metrics`: meshtel's own counters in the Prometheus text format.
//!
//! A scrape is written on a blocking thread (with thousands of Istio series it is
//! hundreds of megabytes of text) and gzipped when the scraper accepts it, as
//! Prometheus always does: the text repeats 25 labels per line, so it shrinks 45 to
//! 55 times. Uncompressed (`curl` without `--compressed`), the text is sent as it is
//! written, in chunks of [`CHUNK_BYTES`] with at most [`CHUNKS_QUEUED`] waiting for the
//! client: a scrape holds about a megabyte of it, not the whole text (540 MB at
//! 10,000 series, each of the scrapes at once).

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use meshtel_collector::{IngestMetrics, MeshMetrics, QuotaEngine};
use meshtel_store::{EdgeRollups, TraceStore};

use crate::http_server::HttpTimeoutMetrics;
use prometheus::{
    Counter, Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// What `/metrics` reports on: the store's counters and, on a collector, the mesh
/// metrics (Istio's request metrics and `meshtel_report_*`), the edge rollups' and the
/// quota engine's.
#[derive(Clone)]
pub struct Sources {
    /// The trace store.
    pub store: TraceStore,
    /// Refused ingest requests and rejected spans, on a collector.
    pub ingest: Option<IngestMetrics>,
    /// The mesh metrics, on a collector.
    pub mesh: Option<MeshMetrics>,
    /// The service-graph edge rollups, on a collector.
    pub edges: Option<EdgeRollups>,
    /// The quota engine, on a collector.
    pub quota: Option<Arc<QuotaEngine>>,
    /// Slow-client timeouts of the HTTP listeners.
    pub http_timeouts: HttpTimeoutMetrics,
    /// The bound on trace reads in flight, where this process answers queries.
    pub query_reads: Option<meshtel_query::ReadLimit>,
    /// The bound on ingest request bytes held at once, on a collector.
    pub ingest_inflight: Option<meshtel_collector::InflightBudget>,
    /// The bounds on the collector's other gRPC messages (Report streams, Check, ...).
    pub grpc_messages: Option<meshtel_collector::GrpcMessageStats>,
    /// Calls on the collector's gRPC port refused before their handler, unread.
    pub grpc_unreadable: Option<meshtel_collector::UnreadableCalls>,
}

/// The `/metrics` route over `sources`.
pub fn router(sources: Sources) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let sources = sources.clone();
            async move {
                if !accepts_gzip(&headers) {
                    return stream_text(sources);
                }
                match tokio::task::spawn_blocking(move || render_gzip(&sources)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "could not write /metrics");
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the /metrics task failed");
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            }
        }),
    )
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a non-zero weight.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Bytes of text per chunk of an uncompressed scrape.
const CHUNK_BYTES: usize = 64 << 10;

/// Chunks of an uncompressed scrape written ahead of the client.
const CHUNKS_QUEUED: usize = 8;

/// The whole exposition, gzipped.
fn render_gzip(sources: &Sources) -> std::io::Result<axum::response::Response> {
    // The fastest level: 5,250 Istio series (287 MB of text) become 6.3 MB in
    // 0.29 s, as long as writing the text alone; the default level makes 2.3 MB
    // but takes 1.4 s (`scrape_stall` in collector/src/mesh_metrics/tests.rs).
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    write_metrics(sources, &mut encoder)?;
    let mut response = encoder.finish()?.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    Ok(with_text_headers(response))
}

/// The exposition uncompressed, sent while a blocking thread writes it. A client that
/// goes away ends the writing; an error while writing ends the body early (the
/// scraper sees a cut response, not a short valid one).
fn stream_text(sources: Sources) -> axum::response::Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(CHUNKS_QUEUED);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkSender {
            tx: tx.clone(),
            chunk: Vec::with_capacity(CHUNK_BYTES),
        };
        let written = write_metrics(&sources, &mut out).and_then(|()| out.flush());
        if let Err(error) = written {
            // The client gone is no failure of ours.
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::warn!(%error, "could not write /metrics");
                let _ = tx.blocking_send(Err(error));
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    with_text_headers(body.into_response())
}

/// A `Write` that hands its bytes to a response body in chunks of [`CHUNK_BYTES`],
/// waiting while [`CHUNKS_QUEUED`] are unread; `BrokenPipe` once the body is dropped.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    chunk: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(bytes::Bytes::from(chunk)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn with_text_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

fn write_metrics(sources: &Sources, out: &mut dyn Write) -> std::io::Result<()> {
    let s = sources.store.stats();
    let registry = Registry::new();
    // process_resident_memory_bytes, process_open_fds, process_threads,
    // process_start_time_seconds, ...: what an alert on growth or restarts reads.
    if let Ok(process) = meshtel_proxy::stats::ProcessMetrics::for_self() {
        let _ = registry.register(Box::new(process));
    }
    for collector in sources.http_timeouts.collectors() {
        let _ = registry.register(collector);
    }
    if let Some(ingest) = &sources.ingest {
        for collector in ingest.collectors() {
            let _ = registry.register(collector);
        }
    }
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
    let labelled_counter = |name: &str, help: &str, label: &str, values: [(&str, u64); 2]| {
        if let Ok(c) = IntCounterVec::new(Opts::new(name, help), &[label]) {
            for (value, v) in values {
                c.with_label_values(&[value]).inc_by(v);
            }
            let _ = registry.register(Box::new(c));
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
    if let Some(budget) = &sources.ingest_inflight {
        let limit = budget.limit().as_u64();
        gauge(
            "meshtel_ingest_inflight_bytes",
            "Request bytes held now by ingest requests being received and processed, at most [ingest] max_inflight_bytes; past it requests are refused (meshtel_ingest_refused_total{reason=\"overloaded\"}).",
            limit.saturating_sub(budget.available() as u64),
        );
        gauge(
            "meshtel_ingest_inflight_bytes_limit",
            "[ingest] max_inflight_bytes.",
            limit,
        );
    }
    if let Some(messages) = &sources.grpc_messages {
        counter(
            "meshtel_grpc_messages_refused_total",
            "Calls on 4317 other than OTLP Export (Report streams, Check, rate limit, Mixer) ended UNAVAILABLE because a message did not fit [ingest] max_inflight_bytes.",
            messages.refused(),
        );
        counter(
            "meshtel_grpc_messages_timed_out_total",
            "Calls on 4317 other than OTLP Export ended DEADLINE_EXCEEDED because a message began to arrive and did not end within http.body_read_timeout.",
            messages.timed_out(),
        );
        gauge(
            "meshtel_grpc_streams_open",
            "Report and WatchQuotas streams open now, at most [report] max_streams.",
            messages.open_streams() as u64,
        );
        counter(
            "meshtel_grpc_streams_refused_total",
            "Report and WatchQuotas streams refused UNAVAILABLE because [report] max_streams were open.",
            messages.streams_refused(),
        );
    }
    if let Some(unreadable) = &sources.grpc_unreadable {
        labelled_counter(
            "meshtel_grpc_calls_unreadable_total",
            "Calls on 4317 other than OTLP Export (Check, Report, rate limit, Mixer) refused before their handler: a message that is not the method's protobuf (reason undecodable, INVALID_ARGUMENT) or over its size bound (too_large, RESOURCE_EXHAUSTED).",
            "reason",
            [
                meshtel_collector::Unreadable::Undecodable,
                meshtel_collector::Unreadable::TooLarge,
            ]
            .map(|reason| (reason.as_str(), unreadable.count(reason))),
        );
    }
    if let Some(reads) = &sources.query_reads {
        gauge(
            "meshtel_query_reads_in_flight",
            "Trace reads (searches, fetches, dependencies) running now, at most [query] max_concurrent_reads.",
            reads.in_flight() as u64,
        );
        counter(
            "meshtel_query_reads_refused_total",
            "Trace reads answered 503 because they waited 30 s without a turn under [query] max_concurrent_reads.",
            reads.refused(),
        );
        counter(
            "meshtel_query_reads_dropped_unread_total",
            "Trace read answers dropped, with their slot, because their client read nothing of them for http.write_timeout.",
            reads.dropped_unread(),
        );
    }
    counter(
        "meshtel_query_memory_refused_total",
        "Searches and span-based dependency reads answered 503 because the queries running at once had used store.max_query_memory up.",
        s.query_memory_refusals,
    );
    counter(
        "meshtel_query_traces_cut_total",
        "Traces cut to their earliest spans because an answer would have held more than [query] max_spans_per_response spans or [store] max_read_bytes of attributes, events and links.",
        s.traces_cut,
    );
    counter(
        "meshtel_query_spans_omitted_total",
        "Spans those cuts left out of answers.",
        s.spans_omitted,
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
        "meshtel_store_blocks_unreadable_total",
        "Blocks taken out of the index because they could not be read (missing, or moved to blocks/corrupt/).",
        s.blocks_unreadable,
    );
    counter(
        "meshtel_store_blocks_orphaned_total",
        "Block files the index does not name, set aside in blocks/orphaned/ at start (meshtel blocks adopt indexes them again).",
        s.blocks_orphaned,
    );
    counter(
        "meshtel_wal_segments_damaged_total",
        "WAL segments found damaged at start, not merely torn: records in the damaged bytes lost, a copy kept in wal/corrupt/.",
        s.wal_segments_damaged,
    );
    counter(
        "meshtel_store_writes_rejected_overload_total",
        "Writes refused because the pipeline was full.",
        s.rejected_overload,
    );
    counter(
        "meshtel_store_catalog_overflow_total",
        "Refusals by the catalog's bounds (max_catalog_services, max_catalog_operations_per_service, max_catalog_operations), counted per write: a service not listed once, an operation not listed once (their spans are stored).",
        s.catalog_overflow,
    );
    counter(
        "meshtel_store_catalog_forgotten_total",
        "Services and operations no longer listed because retention deleted every span of theirs.",
        s.catalog_forgotten,
    );
    counter(
        "meshtel_store_flush_failures_total",
        "Head flushes that failed and were retried, a WAL segment that could not be started included (the log names the file or database and the error).",
        s.flush_failures,
    );
    counter(
        "meshtel_store_compaction_failures_total",
        "Compaction or retention passes that failed.",
        s.compaction_failures,
    );
    counter(
        "meshtel_wal_append_failures_total",
        "WAL appends that failed; their requests were refused with 503 / UNAVAILABLE.",
        s.wal_append_failures,
    );
    counter(
        "meshtel_store_writes_rejected_disk_full_total",
        "Writes refused because the data directory's disk is below store.min_free_disk.",
        s.rejected_disk_full,
    );
    // Measured by a process that writes; a query process would show a false 0, which
    // a low-disk alert takes for a full disk.
    if sources.ingest.is_some() {
        gauge(
            "meshtel_store_disk_free_bytes",
            "Free bytes on the data directory's disk at the latest check.",
            s.disk_free_bytes,
        );
        gauge(
            "meshtel_store_min_free_disk_bytes",
            "store.min_free_disk: below it new spans are refused (0: off).",
            sources.store.min_free_disk_bytes(),
        );
        gauge(
            "meshtel_ingest_ready",
            "1 while new spans are taken, 0 while every span is refused (/readyz answers 503 and says why).",
            u64::from(sources.store.refuses_writes().is_none()),
        );
    }
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
    gauge(
        "meshtel_store_trace_index_bytes",
        "Memory of the blocks' trace id filters (about 2 bytes per stored trace; grows with what retention keeps).",
        s.trace_index_bytes,
    );
    if let Some(edges) = &sources.edges {
        let edges = edges.snapshot();
        counter(
            "meshtel_edges_overflow_total",
            "Request records left out of the service graph because their edge bucket had edges.max_edges_per_bucket edges.",
            edges.overflow,
        );
        gauge(
            "meshtel_edges_open_buckets",
            "Edge rollup buckets in memory, not yet written to SQL.",
            edges.open_buckets as u64,
        );
        gauge(
            "meshtel_edges_in_memory",
            "Service-graph edges in memory, not yet written to SQL (at most edges.max_edges_in_memory).",
            edges.edges_in_memory as u64,
        );
        counter(
            "meshtel_edges_dropped_total",
            "Request records dropped from the service graph: SQL refused their buckets and edges.max_edges_in_memory was reached.",
            edges.dropped,
        );
    }
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buffer);
    out.write_all(&buffer)?;
    if let Some(mesh) = &sources.mesh {
        mesh.write_text(out)?;
    }
    if let Some(quota) = &sources.quota {
        let mut text = String::new();
        quota.render_metrics(&mut text);
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}
