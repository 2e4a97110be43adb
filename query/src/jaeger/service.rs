//! [`JaegerService`]: the query domain over a [`TraceReader`]. HTTP handlers (v1 and
//! v3) are thin adapters around it.

use std::collections::HashMap;
use std::sync::Arc;

use meshtel_model::{DependencyLink, Operation, SpanKind, Trace, TraceId, TraceQuery, TraceReader};

use crate::Clock;
use crate::error::Result;

/// What a search or a fetch found: the traces it returns, and those it matched or was
/// asked for but had to leave out whole, because the answer's bounds (`[query]
/// max_spans_per_response`, `[store] max_read_bytes`) held fewer spans than there were
/// traces.
#[derive(Debug, Default)]
pub struct Found {
    /// The traces returned, none empty.
    pub traces: Vec<Trace>,
    /// Traces left out: their id and how many spans of theirs are stored.
    pub left_out: Vec<(TraceId, u64)>,
}

impl Found {
    fn from_read(read: Vec<Trace>) -> Self {
        let mut found = Found::default();
        for trace in read {
            if trace.span_count() > 0 {
                found.traces.push(trace);
            } else if trace.is_left_out() {
                found.left_out.push((trace.trace_id, trace.omitted_spans));
            }
        }
        found
    }
}

/// Answers Jaeger queries from a trace store.
pub struct JaegerService {
    reader: Arc<dyn TraceReader>,
    clock: Arc<dyn Clock>,
    max_search_limit: usize,
    max_spans: usize,
}

impl JaegerService {
    /// A service over `reader`; searches return at most `max_search_limit` traces,
    /// and an answer at most `max_spans` spans (see [`TraceReader::get_traces`]).
    pub fn new(
        reader: Arc<dyn TraceReader>,
        clock: Arc<dyn Clock>,
        max_search_limit: usize,
        max_spans: usize,
    ) -> Self {
        JaegerService {
            reader,
            clock,
            max_search_limit: max_search_limit.max(1),
            max_spans: max_spans.max(1),
        }
    }

    /// Now, Unix nanoseconds, from the injected clock.
    pub fn now_unix_nano(&self) -> u64 {
        self.clock.now_unix_nano()
    }

    /// The bound on a search's `limit`.
    pub fn max_search_limit(&self) -> usize {
        self.max_search_limit
    }

    /// All service names, sorted.
    pub async fn services(&self) -> Result<Vec<String>> {
        Ok(self.reader.services().await?)
    }

    /// Operations of `service` of one kind, or of every kind when `kind` is `None`.
    pub async fn operations(
        &self,
        service: &str,
        kind: Option<SpanKind>,
    ) -> Result<Vec<Operation>> {
        Ok(self.reader.operations(service, kind).await?)
    }

    /// Distinct operation names of `service` across all span kinds, in store order.
    pub async fn operation_names(&self, service: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for op in self.operations(service, None).await? {
            if seen.insert(op.name.clone()) {
                names.push(op.name);
            }
        }
        Ok(names)
    }

    /// Traces matching `query` (limit bounded), never an empty one, and those
    /// matched but left out whole.
    pub async fn find_traces(&self, query: &TraceQuery) -> Result<Found> {
        let mut bounded = query.clone();
        bounded.limit = bounded.limit.clamp(1, self.max_search_limit);
        bounded.max_spans = Some(self.max_spans);
        let mut traces = self.reader.find_traces(&bounded).await?;
        traces.retain(|t| t.span_count() > 0 || t.is_left_out());
        traces.truncate(bounded.limit);
        Ok(Found::from_read(traces))
    }

    /// One trace, `None` when not found or empty.
    pub async fn get_trace(&self, trace_id: TraceId) -> Result<Option<Trace>> {
        Ok(self.get_traces(&[trace_id]).await?.traces.pop())
    }

    /// The traces among `trace_ids` that are stored and not empty, in that order, and
    /// those stored but left out whole.
    pub async fn get_traces(&self, trace_ids: &[TraceId]) -> Result<Found> {
        let traces = self.reader.get_traces(trace_ids, self.max_spans).await?;
        Ok(Found::from_read(traces))
    }

    /// Service-graph edges in `[end − lookback, end]`, duplicates summed, optionally
    /// only those with `service` as parent or child; first-seen order.
    pub async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nano: u64,
        service: Option<&str>,
    ) -> Result<Vec<DependencyLink>> {
        let links = self
            .reader
            .dependencies(end_unix_nano, lookback_nano)
            .await?;
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut out: Vec<DependencyLink> = Vec::new();
        for link in links {
            if let Some(s) = service
                && link.parent != s
                && link.child != s
            {
                continue;
            }
            match index.get(&(link.parent.clone(), link.child.clone())) {
                Some(&i) => {
                    if let Some(existing) = out.get_mut(i) {
                        existing.call_count = existing.call_count.saturating_add(link.call_count);
                    }
                }
                None => {
                    index.insert((link.parent.clone(), link.child.clone()), out.len());
                    out.push(link);
                }
            }
        }
        Ok(out)
    }
}
