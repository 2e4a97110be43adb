//! Counters the store keeps about itself, read by `/metrics` and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::block::BlockMeta;
use crate::{State, StoreConfig};

impl State {
    /// Spans in memory: the head and the generations being flushed.
    pub(crate) fn held_rows(&self) -> usize {
        self.active_rows + self.sealed.iter().map(|s| s.rows).sum::<usize>()
    }

    /// Arrow memory of those spans.
    pub(crate) fn held_bytes(&self) -> usize {
        self.active_bytes + self.sealed.iter().map(|s| s.bytes).sum::<usize>()
    }

    /// The bound of spans in memory that is reached, naming its setting, if one is: new
    /// writes wait for a flush to free room.
    pub(crate) fn full(&self, config: &StoreConfig) -> Option<&'static str> {
        if self.held_rows() >= config.max_head_rows {
            Some("spans in memory reached [store] max_head_rows until a flush frees room")
        } else if self.held_bytes() as u64 >= config.max_head_bytes.as_u64() {
            Some("spans in memory reached [store] max_head_bytes until a flush frees room")
        } else {
            None
        }
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub spans_written: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub commits: AtomicU64,
    pub commit_nanos: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_nanos: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_nanos: AtomicU64,
    /// How long the latest flush's rows waited to leave the head once their generation
    /// was next in line: the wait advised to writers the head refuses.
    pub last_flush_nanos: AtomicU64,
    /// Head generations being encoded into blocks now (at most
    /// `writer::ENCODES_IN_FLIGHT`, plus any given up and still finishing), and the most
    /// at once so far.
    pub encodes_running: AtomicU64,
    pub encodes_running_max: AtomicU64,
    pub compactions: AtomicU64,
    pub blocks_deleted_by_retention: AtomicU64,
    /// Blocks taken out of the index because they could not be read.
    pub blocks_unreadable: AtomicU64,
    /// Block files the index does not name, set aside in `blocks/orphaned/` at start.
    pub blocks_orphaned: AtomicU64,
    /// WAL segments found damaged (not merely torn) at start.
    pub wal_segments_damaged: AtomicU64,
    pub rejected_overload: AtomicU64,
    pub catalog_overflow: AtomicU64,
    /// Services and operations the catalog forgot after retention deleted their spans.
    pub catalog_forgotten: AtomicU64,
    /// Head flushes that failed (and were retried).
    pub flush_failures: AtomicU64,
    /// Compaction or retention passes that failed.
    pub compaction_failures: AtomicU64,
    /// WAL appends that failed (their requests refused).
    pub wal_append_failures: AtomicU64,
    /// Writes refused because the data directory's disk is below its free-space reserve.
    pub rejected_disk_full: AtomicU64,
    /// Free bytes on the data directory's disk at the latest check (0 before it).
    pub disk_free_bytes: AtomicU64,
    /// Traces a read cut to its span bound, and the spans it left out of them.
    pub traces_cut: AtomicU64,
    pub spans_omitted: AtomicU64,
    /// Reads refused because `max_query_memory` was used up.
    pub query_memory_refusals: AtomicU64,
    /// One WARN per interval for those refusals.
    pub query_memory_log: parking_lot::Mutex<meshtel_model::log_window::LogWindow>,
}

impl Stats {
    pub fn record_commit(&self, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn record_fsync(&self, took: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn record_written(&self, spans: usize, wal_bytes: usize) {
        self.spans_written
            .fetch_add(spans as u64, Ordering::Relaxed);
        self.wal_bytes
            .fetch_add(wal_bytes as u64, Ordering::Relaxed);
    }

    /// A flush done: it `took` that long from its encode's start to its index commit,
    /// and its rows left the head `freed_after` it became next in line.
    pub fn record_flush(&self, took: Duration, freed_after: Duration) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flush_nanos.fetch_add(nanos(took), Ordering::Relaxed);
        self.last_flush_nanos.store(nanos(freed_after), Ordering::Relaxed);
    }

    /// When a writer the full head refused should come back: the time the latest
    /// flush's rows waited to leave the head once next in line (the head frees a
    /// generation as each flush ends), between 100 ms and 2 s; 1 s before the first.
    pub fn head_full_retry_after(&self) -> Duration {
        match self.last_flush_nanos.load(Ordering::Relaxed) {
            0 => Duration::from_secs(1),
            nanos => Duration::from_nanos(nanos)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
        }
    }

    pub fn snapshot(
        &self,
        head_rows: usize,
        head_bytes: usize,
        blocks: &[BlockMeta],
    ) -> StoreStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            spans_written: get(&self.spans_written),
            wal_bytes: get(&self.wal_bytes),
            wal_commits: get(&self.commits),
            wal_commit_seconds: get(&self.commit_nanos) as f64 / 1e9,
            wal_fsyncs: get(&self.fsyncs),
            wal_fsync_seconds: get(&self.fsync_nanos) as f64 / 1e9,
            flushes: get(&self.flushes),
            flush_seconds: get(&self.flush_nanos) as f64 / 1e9,
            compactions: get(&self.compactions),
            blocks_deleted_by_retention: get(&self.blocks_deleted_by_retention),
            blocks_unreadable: get(&self.blocks_unreadable),
            blocks_orphaned: get(&self.blocks_orphaned),
            wal_segments_damaged: get(&self.wal_segments_damaged),
            rejected_overload: get(&self.rejected_overload),
            catalog_overflow: get(&self.catalog_overflow),
            catalog_forgotten: get(&self.catalog_forgotten),
            flush_failures: get(&self.flush_failures),
            compaction_failures: get(&self.compaction_failures),
            wal_append_failures: get(&self.wal_append_failures),
            rejected_disk_full: get(&self.rejected_disk_full),
            disk_free_bytes: get(&self.disk_free_bytes),
            traces_cut: get(&self.traces_cut),
            spans_omitted: get(&self.spans_omitted),
            query_memory_refusals: get(&self.query_memory_refusals),
            head_spans: head_rows as u64,
            head_bytes: head_bytes as u64,
            blocks: blocks.len() as u64,
            block_spans: blocks.iter().map(|b| b.rows).sum(),
            block_bytes: blocks.iter().map(|b| b.bytes).sum(),
            trace_index_bytes: blocks.iter().map(|b| b.trace_ids.heap_bytes() as u64).sum(),
        }
    }
}

/// A point-in-time view of the store's counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreStats {
    /// Spans acknowledged since start.
    pub spans_written: u64,
    /// Bytes appended to the WAL since start.
    pub wal_bytes: u64,
    /// WAL group commits since start.
    pub wal_commits: u64,
    /// Total time spent in WAL commits.
    pub wal_commit_seconds: f64,
    /// WAL fsyncs: by the interval syncer, or of every commit with `wal.sync = "always"`.
    pub wal_fsyncs: u64,
    /// Total time spent in those fsyncs.
    pub wal_fsync_seconds: f64,
    /// Head flushes to blocks.
    pub flushes: u64,
    /// Total time those flushes took, from sealed head to block in the index.
    pub flush_seconds: f64,
    /// Compactions run.
    pub compactions: u64,
    /// Blocks deleted by retention.
    pub blocks_deleted_by_retention: u64,
    /// Blocks taken out of the index because they could not be read (missing, or moved
    /// to `blocks/corrupt/`), at startup or by compaction.
    pub blocks_unreadable: u64,
    /// Block files the index does not name, set aside in `blocks/orphaned/` at start
    /// (`meshtel blocks adopt` indexes them again).
    pub blocks_orphaned: u64,
    /// WAL segments found damaged at start (records lost; a copy kept in
    /// `wal/corrupt/`), not counting torn tails a crash leaves.
    pub wal_segments_damaged: u64,
    /// Writes refused because the pipeline was full.
    pub rejected_overload: u64,
    /// Catalog entries (services or operations) not listed because of
    /// `max_catalog_services`, `max_catalog_operations_per_service` or
    /// `max_catalog_operations`.
    pub catalog_overflow: u64,
    /// Services and operations no longer listed because retention deleted every span
    /// of theirs.
    pub catalog_forgotten: u64,
    /// Head flushes that failed (and were retried).
    pub flush_failures: u64,
    /// Compaction or retention passes that failed.
    pub compaction_failures: u64,
    /// WAL appends that failed (their requests refused).
    pub wal_append_failures: u64,
    /// Writes refused because the data directory's disk is below its free-space reserve.
    pub rejected_disk_full: u64,
    /// Free bytes on the data directory's disk at the latest check.
    pub disk_free_bytes: u64,
    /// Traces that reads cut to their span bound (`[query] max_spans_per_response`).
    pub traces_cut: u64,
    /// Spans those cuts left out of the answers.
    pub spans_omitted: u64,
    /// Reads (searches, span-based dependencies) answered 503 because the queries
    /// running at once had used `store.max_query_memory` up.
    pub query_memory_refusals: u64,
    /// Spans in memory (head and blocks being written).
    pub head_spans: u64,
    /// Arrow memory of those spans, bounded by `max_head_bytes`.
    pub head_bytes: u64,
    /// Blocks in the index.
    pub blocks: u64,
    /// Spans in blocks.
    pub block_spans: u64,
    /// Bytes of blocks on disk.
    pub block_bytes: u64,
    /// Memory of the blocks' trace id filters (see [`crate::trace_index`]).
    pub trace_index_bytes: u64,
}

/// The store's last line: what this run wrote, and the spans a shutdown could not
/// flush, if any. Those are still in WAL segments that no flush has deleted.
pub(crate) fn log_shutdown(run: &StoreStats, state: &crate::State) {
    let (spans_written, flushes, blocks_in_index) =
        (run.spans_written, run.flushes, state.blocks.len());
    match state.held_rows() {
        0 => tracing::info!(spans_written, flushes, blocks_in_index, "store shut down"),
        spans => tracing::warn!(
            spans_in_wal = spans,
            spans_written,
            flushes,
            blocks_in_index,
            "store shut down without flushing every span to blocks: the rest are safe \
             in the WAL and are replayed at the next start"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_head_advises_the_time_of_the_latest_flush() {
        let stats = Stats::default();
        let ms = Duration::from_millis;
        assert_eq!(stats.head_full_retry_after(), Duration::from_secs(1));
        // Encoded alongside the one before: its rows left the head sooner than it took.
        stats.record_flush(ms(700), ms(400));
        assert_eq!(stats.head_full_retry_after(), ms(400));
        stats.record_flush(ms(3), ms(3));
        assert_eq!(stats.head_full_retry_after(), ms(100));
        stats.record_flush(ms(500), Duration::from_secs(9));
        assert_eq!(stats.head_full_retry_after(), Duration::from_secs(2));
        assert_eq!(stats.flushes.load(Ordering::Relaxed), 3);
        // The flushes' own time, not their waits in line.
        assert_eq!(stats.flush_nanos.load(Ordering::Relaxed), 1_203_000_000);
    }
}
