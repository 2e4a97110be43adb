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
//!
//! A span without a parent id takes its parent from its links, as Jaeger's model does
//! with the references the OTLP links become: the first link in the same trace tagged
//! `opentracing.ref_type=child_of`, else the first link in the same trace (a
//! `FOLLOWS_FROM`; a consumer span linked to its producer, for one).

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, RecordBatch};
use arrow::datatypes::{Int8Type, Int64Type};
use datafusion_execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use meshtel_model::otlp::common::v1::any_value;
use meshtel_model::otlp::trace::v1::Span as OtlpSpan;
use meshtel_model::{DependencyLink, SpanKind};
use prost::Message;

use super::newest::{column, wrong_type};
use super::plan::table_bytes;
use crate::Result;
use crate::schema::col as c;

/// The columns the scan reads.
pub(super) const COLUMNS: [&str; 7] = [
    c::TRACE_ID,
    c::SPAN_ID,
    c::PARENT_SPAN_ID,
    c::SERVICE,
    c::KIND,
    c::START,
    c::EXTRAS,
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
    /// `parents` more spans, before they grow to hold them (to twice their size, or
    /// just enough when `exact`).
    fn reserve(&mut self, children: usize, parents: usize, exact: bool) -> Result<()> {
        let grown = |len: usize, capacity: usize, more: usize| match len + more <= capacity {
            true => capacity,
            false if exact => len + more,
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
        let column = |name: &str| column(batch, name);
        let ids = |name: &str, width: i32| {
            let ids = column(name)?;
            match ids.as_fixed_size_binary_opt() {
                Some(ids) if ids.value_length() == width => Ok(ids),
                _ => Err(wrong_type(
                    name,
                    ids.data_type(),
                    &format!("FixedSizeBinary({width})"),
                )),
            }
        };
        let (traces, spans, parents) = (
            ids(c::TRACE_ID, 16)?,
            ids(c::SPAN_ID, 8)?,
            ids(c::PARENT_SPAN_ID, 8)?,
        );
        let services = column(c::SERVICE)?;
        let services = services
            .as_string_opt::<i32>()
            .ok_or_else(|| wrong_type(c::SERVICE, services.data_type(), "Utf8"))?;
        let kinds = column(c::KIND)?;
        let kinds = kinds
            .as_primitive_opt::<Int8Type>()
            .ok_or_else(|| wrong_type(c::KIND, kinds.data_type(), "Int8"))?;
        let starts = column(c::START)?;
        let starts = starts
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| wrong_type(c::START, starts.data_type(), "Int64"))?;
        let extras = column(c::EXTRAS)?;
        let extras = extras
            .as_binary_opt::<i32>()
            .ok_or_else(|| wrong_type(c::EXTRAS, extras.data_type(), "Binary"))?;
        let children = starts
            .values()
            .iter()
            .filter(|s| **s >= self.start_min)
            .count();
        self.reserve(children, batch.num_rows(), false)?;
        // The widths are checked above: the conversions below cannot fail.
        let id8 = |ids: &arrow::array::FixedSizeBinaryArray, row| {
            <[u8; 8]>::try_from(ids.value(row)).map_or(0, u64::from_be_bytes)
        };
        for row in 0..batch.num_rows() {
            // A row without an id or a service takes part in no call.
            if traces.is_null(row) || spans.is_null(row) || services.is_null(row) {
                continue;
            }
            let trace = <[u8; 16]>::try_from(traces.value(row)).map_or(0, u128::from_be_bytes);
            let span = id8(spans, row);
            let parent = if parents.is_null(row) {
                linked_parent(extras, row, trace)
            } else {
                Some(id8(parents, row))
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
        let parts: Vec<Spans> = parts.collect();
        let children = parts.iter().map(|part| part.children.len()).sum();
        let parents = parts.iter().map(|part| part.parents.len()).sum();
        all.reserve(children, parents, true)?;
        for part in parts {
            let ids: Vec<u32> = part.services.iter().map(|s| all.service_id(s)).collect();
            let id = |service: u32| ids.get(service as usize).copied().unwrap_or(u32::MAX);
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
        if self.children.is_empty() {
            return Ok(Vec::new());
        }
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
        let mut counted = 0;
        for (trace, span, _, service, kind) in &self.children {
            if *kind != server {
                continue;
            }
            for (caller, caller_kind) in sides_of(*trace, *span) {
                if *caller_kind == client && caller != service {
                    let call = (*trace, *span, *service, *caller);
                    insert_counted(&mut shared, call, &self.reservation, &mut counted)?;
                }
            }
        }
        // The server sides, and the calls (the shared ones first): reserved before
        // they are made.
        self.reservation
            .try_grow(table_bytes(shared.len(), CALL_BYTES) * 2)?;
        let servers: HashSet<(u128, u64, u32)> = shared
            .iter()
            .map(|(t, s, service, _)| (*t, *s, *service))
            .collect();
        let mut calls = shared.clone();
        let mut counted = table_bytes(calls.len(), CALL_BYTES);
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
                let call = (*trace, *span, *service, *caller);
                insert_counted(&mut calls, call, &self.reservation, &mut counted)?;
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

/// Inserts `item`, first taking from the bound what the set needs when it has to grow;
/// `counted` is what the set's table was counted at.
/// The parent a span without a parent id takes from its links (the module's doc): none
/// when it has no link in its own trace, or its links cannot be read.
fn linked_parent(extras: &BinaryArray, row: usize, trace: u128) -> Option<u64> {
    if extras.is_null(row) {
        return None;
    }
    let extras = OtlpSpan::decode(extras.value(row)).ok()?;
    let same_trace = |link: &&meshtel_model::otlp::trace::v1::span::Link| {
        <[u8; 16]>::try_from(link.trace_id.as_slice())
            .map(u128::from_be_bytes)
            .ok()
            == Some(trace)
    };
    let child_of = |link: &&meshtel_model::otlp::trace::v1::span::Link| {
        link.attributes.iter().any(|kv| {
            kv.key == "opentracing.ref_type"
                && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::StringValue(s)) if s == "child_of")
        })
    };
    let mut same = extras.links.iter().filter(same_trace);
    let link = same.clone().find(child_of).or_else(|| same.next())?;
    <[u8; 8]>::try_from(link.span_id.as_slice())
        .ok()
        .map(u64::from_be_bytes)
        .filter(|id| *id != 0)
}

fn insert_counted<T: std::hash::Hash + Eq>(
    set: &mut HashSet<T>,
    item: T,
    reservation: &MemoryReservation,
    counted: &mut usize,
) -> Result<()> {
    if set.len() == set.capacity() {
        let more = set.len().max(16);
        let bytes = table_bytes(set.len() + more, std::mem::size_of::<T>());
        reservation.try_grow(bytes.saturating_sub(*counted))?;
        *counted = bytes.max(*counted);
        set.reserve(more);
    }
    set.insert(item);
    Ok(())
}
