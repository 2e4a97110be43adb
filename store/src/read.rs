//! [`TraceReader`] over the store: searches and fetches run over the head and the
//! blocks, each retried once without a block that turned out unreadable
//! ([`block_files::without_unreadable_blocks`]), and bounded in spans
//! ([`span_budget`](crate::span_budget)).

use std::sync::atomic::Ordering;

use meshtel_model::{DependencyLink, Operation, SpanKind, Trace, TraceId, TraceQuery, TraceReader};

use crate::search::Source;
use crate::span_budget::Kept;
use crate::stats::Stats;
use crate::{Result, TraceStore, block_files, decode, to_i64};

#[async_trait::async_trait]
impl TraceReader for TraceStore {
    async fn services(&self) -> meshtel_model::Result<Vec<String>> {
        Ok(self.inner.known.services())
    }

    async fn operations(
        &self,
        service: &str,
        kind: Option<SpanKind>,
    ) -> meshtel_model::Result<Vec<Operation>> {
        Ok(self.inner.known.operations(service, kind))
    }

    async fn find_traces(&self, query: &TraceQuery) -> meshtel_model::Result<Vec<Trace>> {
        let found =
            block_files::without_unreadable_blocks(&self.inner, || self.find_traces_once(query))
                .await;
        Ok(self.count_memory_refusal(found)?)
    }

    async fn get_traces(
        &self,
        trace_ids: &[TraceId],
        max_spans: usize,
    ) -> meshtel_model::Result<Vec<Trace>> {
        Ok(block_files::without_unreadable_blocks(&self.inner, || {
            self.get_traces_once(trace_ids, max_spans)
        })
        .await?)
    }

    async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nano: u64,
    ) -> meshtel_model::Result<Vec<DependencyLink>> {
        let links = block_files::without_unreadable_blocks(&self.inner, || {
            self.dependencies_once(end_unix_nano, lookback_nano)
        })
        .await;
        Ok(self.count_memory_refusal(links)?)
    }
}

impl TraceStore {
    /// Counts a read refused for want of query memory (the API answers it 503).
    fn count_memory_refusal<T>(&self, read: Result<T>) -> Result<T> {
        if read.as_ref().is_err_and(crate::Error::is_out_of_memory) {
            let stats = &self.inner.stats;
            let refused = stats.query_memory_refusals.fetch_add(1, Ordering::Relaxed) + 1;
            let now = std::time::Instant::now();
            if let Some(since_last) = stats.query_memory_log.lock().note(now) {
                tracing::warn!(
                    since_last,
                    refused,
                    "reads refused: the queries running at once used store.max_query_memory up"
                );
            }
        }
        read
    }

    async fn find_traces_once(&self, query: &TraceQuery) -> Result<Vec<Trace>> {
        let sources = self.inner.sources(
            to_i64(query.start_min_unix_nano),
            to_i64(query.start_max_unix_nano),
        );
        let started = std::time::Instant::now();
        let ids = self.inner.searcher.find_trace_ids(query, &sources).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let searched = started.elapsed();
        let fetch_sources = self.inner.fetch_sources(&ids);
        let rows = self
            .inner
            .searcher
            .fetch_rows(&ids, &fetch_sources, self.read_bounds(query.max_spans.unwrap_or(usize::MAX)))
            .await?;
        let fetched = started.elapsed();
        let mut traces = decode_kept(rows, &self.inner.stats)?;
        tracing::debug!(
            traces = ids.len(),
            fetch_blocks = fetch_sources.iter().map(Source::block_count).sum::<usize>(),
            search_ms = searched.as_secs_f64() * 1e3,
            fetch_ms = (fetched - searched).as_secs_f64() * 1e3,
            decode_ms = (started.elapsed() - fetched).as_secs_f64() * 1e3,
            "found traces"
        );
        let rank: std::collections::HashMap<TraceId, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        traces.retain(|t| t.span_count() > 0 || t.is_left_out());
        traces.sort_by_key(|t| rank.get(&t.trace_id).copied().unwrap_or(usize::MAX));
        Ok(traces)
    }

    /// One whole trace, or `None` when no span of it is stored.
    pub async fn get_trace(&self, trace_id: TraceId) -> meshtel_model::Result<Option<Trace>> {
        Ok(self.get_traces(&[trace_id], usize::MAX).await?.pop())
    }

    /// The bounds of one read: `max_spans`, and `[store] max_read_bytes`.
    fn read_bounds(&self, max_spans: usize) -> (usize, u64) {
        (max_spans, self.inner.config.max_read_bytes.as_u64())
    }

    async fn get_traces_once(&self, trace_ids: &[TraceId], max_spans: usize) -> Result<Vec<Trace>> {
        let rows = self
            .inner
            .searcher
            .fetch_rows(trace_ids, &self.inner.fetch_sources(trace_ids), self.read_bounds(max_spans))
            .await?;
        let mut found: std::collections::HashMap<TraceId, Trace> =
            decode_kept(rows, &self.inner.stats)?
                .into_iter()
                .filter(|t| t.span_count() > 0 || t.is_left_out())
                .map(|t| (t.trace_id, t))
                .collect();
        Ok(trace_ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn dependencies_once(
        &self,
        end_unix_nano: u64,
        lookback_nano: u64,
    ) -> Result<Vec<DependencyLink>> {
        let end = i64::try_from(end_unix_nano).unwrap_or(i64::MAX);
        let lookback = i64::try_from(lookback_nano).unwrap_or(i64::MAX);
        let start = end.saturating_sub(lookback);
        // A child in the window may have a parent that started before it: parents are
        // looked for one window further back, at most PARENT_LOOKBACK_NANO (so a short
        // window costs at most twice its own scan).
        let parent_start = start.saturating_sub(lookback.min(PARENT_LOOKBACK_NANO));
        let sources = self.inner.window_sources(parent_start, end);
        self.inner
            .searcher
            .dependencies(parent_start, start, end, &sources)
            .await
    }
}

/// The rows a read kept as traces, each with the spans the span bound left out of
/// it ([`span_budget`](crate::span_budget)), and a trace without spans for each one
/// the bound left out whole; the cuts are counted in `stats`.
fn decode_kept(kept: Kept, stats: &Stats) -> Result<Vec<Trace>> {
    let Kept {
        batches,
        mut omitted,
    } = kept;
    if !omitted.is_empty() {
        let spans: u64 = omitted.values().sum();
        stats
            .traces_cut
            .fetch_add(omitted.len() as u64, Ordering::Relaxed);
        stats.spans_omitted.fetch_add(spans, Ordering::Relaxed);
        tracing::debug!(traces = omitted.len(), spans, "read cut to its span bound");
    }
    let mut traces = decode::batches_to_traces(&batches)?;
    for trace in &mut traces {
        trace.omitted_spans = omitted.remove(&trace.trace_id.0).unwrap_or(0);
    }
    // What is left names traces of which no span was kept.
    traces.extend(omitted.into_iter().map(|(id, omitted_spans)| Trace {
        trace_id: TraceId(id),
        resource_spans: Vec::new(),
        omitted_spans,
    }));
    Ok(traces)
}

/// How far before a dependencies window its parents are looked for, at most: an hour.
const PARENT_LOOKBACK_NANO: i64 = 3_600_000_000_000;
