//! Dependency links from the spans of a window: which service called which, and how
//! often. Each partition of the scan keeps (trace, span, parent, service, kind) of its
//! rows ([`Spans`]); the partitions' are put together and joined here. A span stored
//! twice (an exporter's retry: ingest is at-least-once) is one call: calls are
//! counted once each, by the callee's trace, span and service and the caller's
//! service.
//!
//! A child span is called from its parent's service. Zipkin-style RPCs report the
//! client and the server side of a call under one span id ("shared"): the server side
//! is called by the client side, whatever their parent ids say (a client span that
//! starts a trace has none), and the children of a shared id's server side, which name
//! both sides as parent, are called from their own side only.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int8Type, Int64Type};
use datafusion_execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use meshtel_model::{DependencyLink, SpanKind};

use super::plan::table_bytes;
use crate::schema::col as c;
use crate::{Error, Result};

/// The columns the scan reads.
pub(super) const COLUMNS: [&str; 6] = [
    c::TRACE_ID,
    c::SPAN_ID,
    c::PARENT_SPAN_ID,
    c::SERVICE,
    c::KIND,
    c::START,
];

/// A span as a possible child: trace, span, parent span, service, kind.
type Child = (u128, u64, Option<u64>, u32, i8);
/// A span as a possible parent: trace, span, service, kind.
type Parent = (u128, u64, u32, i8);
/// A call: trace and span of the callee, its service, the caller's service.
type Call = (u128, u64, u32, u32);

/// Bytes an entry takes, for the memory bound.
const CHILD_BYTES: usize = std::mem::size_of::<Child>();
const PARENT_BYTES: usize = std::mem::size_of::<Parent>();
const CALL_BYTES: usize = std::mem::size_of::<Call>();

/// The spans of a window: every one a possible parent, those started from `start_min`
/// on possible children too.
pub(super) struct Spans {
    start_min: i64,
    services: Vec<String>,
    service_ids: HashMap<String, u32>,
    children: Vec<Child>,
    parents: Vec<Parent>,
    reservation: MemoryReservation,
}

impl Spans {
    pub(super) fn new(start_min: i64, pool: &Arc<dyn MemoryPool>) -> Self {
        Spans {
            start_min,
            services: Vec::new(),
            service_ids: HashMap::new(),
            children: Vec::new(),
            parents: Vec::new(),
            reservation: MemoryConsumer::new("dependency links").register(pool),
        }
    }

    fn service_id(&mut self, service: &str) -> u32 {
        if let Some(id) = self.service_ids.get(service) {
            return *id;
        }
        let id = u32::try_from(self.services.len()).unwrap_or(u32::MAX);
        self.services.push(service.to_string());
        self.service_ids.insert(service.to_string(), id);
        id
    }

    /// Takes from the memory bound what the lists need to hold `children` and
    /// `parents` more spans, before they grow to hold them.
    fn reserve(&mut self, children: usize, parents: usize) -> Result<()> {
        let grown = |len: usize, capacity: usize, more: usize| match len + more <= capacity {
            true => capacity,
            false => (len + more).max(capacity * 2),
        };
        let children = grown(self.children.len(), self.children.capacity(), children);
        let parents = grown(self.parents.len(), self.parents.capacity(), parents);
        let bytes = children * CHILD_BYTES + parents * PARENT_BYTES;
        if bytes > self.reservation.size() {
            self.reservation.try_resize(bytes)?;
        }
        self.children.reserve_exact(children - self.children.len());
        self.parents.reserve_exact(parents - self.parents.len());
        Ok(())
    }

    pub(super) fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        self.reserve(batch.num_rows(), batch.num_rows())?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Corrupt(format!("a dependency scan lacks column {name}")))
        };
        let wrong = |name: &str| Error::Corrupt(format!("column {name} of the wrong type"));
        let traces = column(c::TRACE_ID)?
            .as_fixed_size_binary_opt()
            .ok_or_else(|| wrong(c::TRACE_ID))?;
        let spans = column(c::SPAN_ID)?
            .as_fixed_size_binary_opt()
            .ok_or_else(|| wrong(c::SPAN_ID))?;
        let parents = column(c::PARENT_SPAN_ID)?
            .as_fixed_size_binary_opt()
            .ok_or_else(|| wrong(c::PARENT_SPAN_ID))?;
        let services = column(c::SERVICE)?;
        let services = services
            .as_string_opt::<i32>()
            .ok_or_else(|| wrong(c::SERVICE))?;
        let kinds = column(c::KIND)?
            .as_primitive_opt::<Int8Type>()
            .ok_or_else(|| wrong(c::KIND))?;
        let starts = column(c::START)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| wrong(c::START))?;
        for row in 0..batch.num_rows() {
            // A row without an id or a service takes part in no call.
            if traces.is_null(row) || spans.is_null(row) || services.is_null(row) {
                continue;
            }
            let (Ok(trace), Ok(span)) = (
                <[u8; 16]>::try_from(traces.value(row)),
                <[u8; 8]>::try_from(spans.value(row)),
            ) else {
                return Err(Error::Corrupt("span or trace id of wrong width".into()));
            };
            let (trace, span) = (u128::from_be_bytes(trace), u64::from_be_bytes(span));
            let parent = match parents.is_null(row) {
                true => None,
                false => <[u8; 8]>::try_from(parents.value(row))
                    .ok()
                    .map(u64::from_be_bytes),
            };
            let service = self.service_id(services.value(row));
            let kind = kinds.value(row);
            self.parents.push((trace, span, service, kind));
            if starts.value(row) >= self.start_min {
                self.children.push((trace, span, parent, service, kind));
            }
        }
        Ok(())
    }

    /// The partitions' spans together.
    pub(super) fn merge(parts: Vec<Spans>) -> Result<Option<Spans>> {
        let mut parts = parts.into_iter();
        let Some(mut all) = parts.next() else {
            return Ok(None);
        };
        for part in parts {
            let ids: Vec<u32> = part.services.iter().map(|s| all.service_id(s)).collect();
            let id = |service: u32| ids.get(service as usize).copied().unwrap_or(u32::MAX);
            all.reserve(part.children.len(), part.parents.len())?;
            all.children.extend(
                part.children
                    .into_iter()
                    .map(|(t, s, p, service, kind)| (t, s, p, id(service), kind)),
            );
            all.parents.extend(
                part.parents
                    .into_iter()
                    .map(|(t, s, service, kind)| (t, s, id(service), kind)),
            );
        }
        Ok(Some(all))
    }

    /// Caller → callee service pairs and their calls, in order.
    pub(super) fn links(mut self) -> Result<Vec<DependencyLink>> {
        let kind = |k: SpanKind| i8::try_from(k.to_otlp()).unwrap_or_default();
        let (server, client) = (kind(SpanKind::Server), kind(SpanKind::Client));
        // The sides of each span id, sorted by it, each once, and where each id's
        // begin.
        let index_entry = std::mem::size_of::<((u128, u64), usize)>();
        self.reservation
            .try_grow(table_bytes(self.parents.len(), index_entry))?;
        let mut sides = std::mem::take(&mut self.parents);
        sides.sort_unstable();
        sides.dedup();
        let mut first: HashMap<(u128, u64), usize> = HashMap::with_capacity(sides.len());
        for (at, (trace, span, _, _)) in sides.iter().enumerate() {
            first.entry((*trace, *span)).or_insert(at);
        }
        let sides_of = |trace: u128, span: u64| {
            let at = first.get(&(trace, span)).copied().unwrap_or(sides.len());
            sides[at..]
                .iter()
                .take_while(move |(t, s, _, _)| (*t, *s) == (trace, span))
                .map(|(_, _, service, kind)| (service, kind))
        };
        // A shared id's server side, called by its client side in another service.
        let mut shared: HashSet<Call> = HashSet::new();
        for (trace, span, _, service, kind) in &self.children {
            if *kind != server {
                continue;
            }
            for (caller, caller_kind) in sides_of(*trace, *span) {
                if *caller_kind == client && caller != service {
                    shared.insert((*trace, *span, *service, *caller));
                }
            }
        }
        let servers: HashSet<(u128, u64, u32)> = shared
            .iter()
            .map(|(t, s, service, _)| (*t, *s, *service))
            .collect();
        let mut calls = shared.clone();
        let mut calls_bytes = 0;
        for (trace, span, parent, service, _) in &self.children {
            let Some(parent) = parent else { continue };
            if servers.contains(&(*trace, *span, *service)) {
                continue;
            }
            for (caller, _) in sides_of(*trace, *parent) {
                // A child of a shared id's server side names its client side too.
                if caller == service || shared.contains(&(*trace, *parent, *service, *caller)) {
                    continue;
                }
                if calls.len() == calls.capacity() {
                    let more = calls.len().max(16);
                    let bytes = table_bytes(calls.len() + more, CALL_BYTES);
                    self.reservation
                        .try_grow(bytes.saturating_sub(calls_bytes))?;
                    calls_bytes = bytes.max(calls_bytes);
                    calls.reserve(more);
                }
                calls.insert((*trace, *span, *service, *caller));
            }
        }
        let mut counts: HashMap<(u32, u32), u64> = HashMap::new();
        for (_, _, callee, caller) in calls {
            *counts.entry((caller, callee)).or_default() += 1;
        }
        let name = |id: u32| self.services.get(id as usize).cloned().unwrap_or_default();
        let mut links: Vec<DependencyLink> = counts
            .into_iter()
            .map(|((caller, callee), n)| DependencyLink {
                parent: name(caller),
                child: name(callee),
                call_count: n,
            })
            .collect();
        links.sort();
        Ok(links)
    }
}
