//! OTLP → Jaeger JSON, exactly as the OpenTelemetry contrib translator and Jaeger v2's
//! read path do it (spec §4):
//!
//! ```text
//!  ResourceSpans ─► Process (serviceName + resource tags, deduplicated → p1, p2, …)
//!    ScopeSpans  ─► otel.scope.name / otel.scope.version tags
//!      Span      ─► Span: refs (parent CHILD_OF first, then links), tags, logs (events)
//! ```
//!
//! Spans are sorted by start time and exact duplicates (same span id, kind and start,
//! as at-least-once ingest may store twice) are dropped. The converter never panics,
//! whatever the input: ids of the wrong length are padded or cut to size.

use std::collections::{BTreeMap, HashMap, HashSet};

use meshtel_model::otlp::common::v1::{
    AnyValue, InstrumentationScope, KeyValue as OtlpKeyValue, any_value,
};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::{ResourceSpans, Span as OtlpSpan, span};
use meshtel_model::{SpanId, SpanKind, Trace, TraceId};

use super::model::{self, KeyValue, Log, Process, RefType, Reference, TagValue};

/// Service name of a resource without any attribute.
pub const RESOURCE_NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

/// Converts one stored trace; `None` when it holds no span (never send such a trace:
/// Grafana panics on it).
pub fn trace_to_jaeger(trace: &Trace) -> Option<model::Trace> {
    convert_trace(trace, Adjust::Yes)
}

/// Whether a trace is adjusted as Jaeger's query service adjusts it (`raw=false`):
/// duplicate spans dropped, a server span sharing its id with its client given a new
/// one. `raw=true` skips that, as Jaeger's `raw` skips its adjusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjust {
    /// Adjusted (the default).
    Yes,
    /// As stored.
    Raw,
}

impl Adjust {
    /// `Raw` when `raw` is true.
    pub fn from_raw(raw: bool) -> Adjust {
        if raw { Adjust::Raw } else { Adjust::Yes }
    }
}

/// [`trace_to_jaeger`], adjusted or raw.
pub fn convert_trace(trace: &Trace, adjust: Adjust) -> Option<model::Trace> {
    let processes: Vec<Process> = trace
        .resource_spans
        .iter()
        .map(resource_to_process)
        .collect();
    let spans = flatten(&trace.resource_spans);
    let mut out = build_trace(trace.trace_id, &processes, spans, adjust)?;
    if trace.omitted_spans > 0 {
        // On the trace, and on its first span, which Jaeger UI and Grafana show.
        let warning = vec![omitted_warning(trace.span_count(), trace.omitted_spans)];
        if let Some(first) = out.spans.first_mut() {
            first.warnings = Some(warning.clone());
        }
        out.warnings = Some(warning);
    }
    Some(out)
}

/// The warning of a trace cut by the query's span bound.
pub fn omitted_warning(shown: usize, omitted: u64) -> String {
    format!(
        "trace cut to its earliest {shown} spans: {omitted} more are stored; an answer holds \
         at most [query] max_spans_per_response spans and [store] max_read_bytes of \
         their attributes, events and links"
    )
}

/// The error naming a trace that a search or a fetch of several ids left out whole:
/// the answer had room for fewer spans than it had traces.
pub fn left_out_message(stored_spans: u64) -> String {
    let spans = if stored_spans == 1 { "span" } else { "spans" };
    format!(
        "trace left out of this answer: it has {stored_spans} stored {spans}, but the \
         answer had room for fewer spans than it had traces; an answer holds at most \
         [query] max_spans_per_response spans and [store] max_read_bytes of their \
         attributes, events and links; fetch this trace by its id alone"
    )
}

/// Converts any OTLP batch (e.g. an uploaded file) into one Jaeger trace per trace id,
/// in order of first appearance.
pub fn resource_spans_to_jaeger(resource_spans: &[ResourceSpans]) -> Vec<model::Trace> {
    let processes: Vec<Process> = resource_spans.iter().map(resource_to_process).collect();
    let mut order: Vec<TraceId> = Vec::new();
    let mut groups: HashMap<TraceId, Vec<FlatSpan<'_>>> = HashMap::new();
    for flat in flatten(resource_spans) {
        let id = trace_id_lenient(&flat.span.trace_id);
        groups
            .entry(id)
            .or_insert_with(|| {
                order.push(id);
                Vec::new()
            })
            .push(flat);
    }
    order
        .into_iter()
        .filter_map(|id| {
            let spans = groups.remove(&id).unwrap_or_default();
            build_trace(id, &processes, spans, Adjust::Yes)
        })
        .collect()
}

/// Where a span is in its OTLP batch: (resource, scope, span) indexes.
type Position = (usize, usize, usize);

/// One span with the context it was found in.
struct FlatSpan<'a> {
    resource_index: usize,
    scope: Option<&'a InstrumentationScope>,
    span: &'a OtlpSpan,
    position: Position,
}

fn flatten(resource_spans: &[ResourceSpans]) -> Vec<FlatSpan<'_>> {
    let mut out = Vec::new();
    for (resource_index, rs) in resource_spans.iter().enumerate() {
        for (scope_index, ss) in rs.scope_spans.iter().enumerate() {
            for (span_index, span) in ss.spans.iter().enumerate() {
                out.push(FlatSpan {
                    resource_index,
                    scope: ss.scope.as_ref(),
                    span,
                    position: (resource_index, scope_index, span_index),
                });
            }
        }
    }
    out
}

/// Adjusts a stored trace in its OTLP form as [`convert_trace`] adjusts the Jaeger
/// one (Jaeger v2's v3 API runs the same adjusters unless `raw_traces=true`): copies
/// identical in every field are dropped, and a server span that shares its id with a
/// client span gets the id the v1 answer gives it, the shared id as its parent, and
/// its children follow it.
pub fn adjust_otlp(trace: &mut Trace) {
    let processes: Vec<Process> = trace
        .resource_spans
        .iter()
        .map(resource_to_process)
        .collect();
    let mut spans = flatten(&trace.resource_spans);
    spans.sort_by_key(|s| s.span.start_time_unix_nano);
    let before = spans.len();
    drop_identical_copies(&processes, &mut spans);
    let shared = SharedIds::find(&spans);
    if spans.len() == before && shared.moved.is_empty() {
        return;
    }
    let kept: HashSet<Position> = spans.iter().map(|s| s.position).collect();
    let changes: Vec<(Position, Option<SpanId>, SpanId)> = spans
        .iter()
        .enumerate()
        .filter_map(|(index, flat)| {
            let (new_id, parent) = shared.change(index, flat.span)?;
            Some((flat.position, new_id, parent))
        })
        .collect();
    drop(spans);
    for ((r, s, i), new_id, parent) in changes {
        let Some(span) = trace
            .resource_spans
            .get_mut(r)
            .and_then(|rs| rs.scope_spans.get_mut(s))
            .and_then(|ss| ss.spans.get_mut(i))
        else {
            continue;
        };
        if let Some(new_id) = new_id {
            span.span_id = new_id.0.to_vec();
        }
        span.parent_span_id = parent.0.to_vec();
    }
    if kept.len() < before {
        for (r, rs) in trace.resource_spans.iter_mut().enumerate() {
            for (s, ss) in rs.scope_spans.iter_mut().enumerate() {
                let mut i = 0;
                ss.spans.retain(|_| {
                    i += 1;
                    kept.contains(&(r, s, i - 1))
                });
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        trace.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    }
}

fn build_trace(
    trace_id: TraceId,
    processes: &[Process],
    mut spans: Vec<FlatSpan<'_>>,
    adjust: Adjust,
) -> Option<model::Trace> {
    spans.sort_by_key(|s| s.span.start_time_unix_nano);
    if adjust == Adjust::Yes {
        drop_identical_copies(processes, &mut spans);
    }
    if spans.is_empty() {
        return None;
    }

    let shared = match adjust {
        Adjust::Yes => SharedIds::find(&spans),
        Adjust::Raw => SharedIds::default(),
    };
    let mut table = ProcessTable::default();
    let mut by_resource: Vec<Option<String>> = vec![None; processes.len()];
    let mut out = Vec::with_capacity(spans.len());
    for (index, flat) in spans.iter().enumerate() {
        let process_id = match by_resource
            .get(flat.resource_index)
            .and_then(Option::as_ref)
        {
            Some(id) => id.clone(),
            None => {
                let process = processes
                    .get(flat.resource_index)
                    .cloned()
                    .unwrap_or_else(no_service_process);
                let id = table.add(process);
                if let Some(slot) = by_resource.get_mut(flat.resource_index) {
                    *slot = Some(id.clone());
                }
                id
            }
        };
        let mut span = span_to_jaeger(trace_id, flat, process_id);
        shared.apply(index, flat.span, &mut span);
        out.push(span);
    }
    Some(model::Trace {
        trace_id: trace_id.to_string(),
        spans: out,
        processes: table.into_map(),
        warnings: None,
    })
}

/// Jaeger's span-hash adjuster: of copies identical in every field, process included,
/// one is kept; two reports of one span that differ (a Zipkin span reported in parts,
/// a retry with a later end) both are.
fn drop_identical_copies(processes: &[Process], spans: &mut Vec<FlatSpan<'_>>) {
    let same = |a: &FlatSpan<'_>, b: &FlatSpan<'_>| {
        a.span == b.span
            && a.scope == b.scope
            && (a.resource_index == b.resource_index
                || processes.get(a.resource_index) == processes.get(b.resource_index))
    };
    let mut by_key: HashMap<(&[u8], i32, u64), Vec<usize>> = HashMap::new();
    let mut keep = Vec::with_capacity(spans.len());
    for (index, flat) in spans.iter().enumerate() {
        let key = (
            flat.span.span_id.as_slice(),
            flat.span.kind,
            flat.span.start_time_unix_nano,
        );
        let earlier = by_key.entry(key).or_default();
        let copy = earlier.iter().any(|&e| same(&spans[e], flat));
        if !copy {
            earlier.push(index);
        }
        keep.push(!copy);
    }
    let mut keep = keep.into_iter();
    spans.retain(|_| keep.next().unwrap_or(true));
}

/// Zipkin-style RPCs (B3 without a new span id per hop) report the client and the
/// server side of one call under the same span id. Jaeger UI and Grafana need every id
/// once, so, as Jaeger's query service does, a server span that shares its id with a
/// client span gets a new id (the lowest one unused in the trace, counting from 1); its
/// parent becomes the shared id, that is the client span, and its children follow it.
#[derive(Default)]
struct SharedIds {
    /// The new id of the span at each index that gets one.
    new_ids: HashMap<usize, SpanId>,
    /// Shared id → the new id of its server span.
    moved: HashMap<SpanId, SpanId>,
}

impl SharedIds {
    fn find(spans: &[FlatSpan<'_>]) -> SharedIds {
        let client_ids: HashSet<SpanId> = spans
            .iter()
            .filter(|s| SpanKind::from_otlp(s.span.kind) == SpanKind::Client)
            .map(|s| span_id_lenient(&s.span.span_id))
            .collect();
        let mut out = SharedIds::default();
        if client_ids.is_empty() {
            return out;
        }
        let used: HashSet<SpanId> = spans
            .iter()
            .map(|s| span_id_lenient(&s.span.span_id))
            .collect();
        let mut next: u64 = 0;
        for (index, flat) in spans.iter().enumerate() {
            let id = span_id_lenient(&flat.span.span_id);
            if SpanKind::from_otlp(flat.span.kind) != SpanKind::Server || !client_ids.contains(&id)
            {
                continue;
            }
            let new_id = loop {
                next += 1;
                let candidate = SpanId(next.to_be_bytes());
                if !used.contains(&candidate) {
                    break candidate;
                }
            };
            out.new_ids.insert(index, new_id);
            out.moved.insert(id, new_id);
        }
        out
    }

    /// What changes for the span at `index` (`otlp`): its new id, if it gets one, and
    /// its new parent; `None` when nothing does.
    fn change(&self, index: usize, otlp: &OtlpSpan) -> Option<(Option<SpanId>, SpanId)> {
        if self.moved.is_empty() {
            return None;
        }
        let own_id = span_id_lenient(&otlp.span_id);
        match self.new_ids.get(&index) {
            Some(new_id) => Some((Some(*new_id), own_id)),
            None if otlp.parent_span_id.is_empty() => None,
            None => {
                let old_parent = span_id_lenient(&otlp.parent_span_id);
                match self.moved.get(&old_parent) {
                    Some(new_parent) if *new_parent != own_id => Some((None, *new_parent)),
                    _ => None,
                }
            }
        }
    }

    /// Rewrites the id and parent of the converted `span` (at `index`, from `otlp`). The
    /// parent is the first reference into the same trace, as Jaeger reads it.
    fn apply(&self, index: usize, otlp: &OtlpSpan, span: &mut model::Span) {
        let Some((new_id, parent)) = self.change(index, otlp) else {
            return;
        };
        if let Some(new_id) = new_id {
            span.span_id = new_id.to_string();
        }
        let parent = parent.to_string();
        match span
            .references
            .iter_mut()
            .find(|r| r.trace_id == span.trace_id)
        {
            Some(reference) => reference.span_id = parent,
            None => span.references.insert(
                0,
                Reference {
                    ref_type: RefType::ChildOf,
                    trace_id: span.trace_id.clone(),
                    span_id: parent,
                },
            ),
        }
    }
}

/// Assigns `p1`, `p2`, … to distinct processes in order of first appearance; two
/// processes are the same when service name and tags are equal. Processes are found by
/// a hash of both, so a trace of many distinct processes is not compared pairwise.
#[derive(Default)]
struct ProcessTable {
    entries: Vec<(String, Process)>,
    by_hash: HashMap<u64, Vec<usize>>,
}

impl ProcessTable {
    fn add(&mut self, process: Process) -> String {
        let hash = process_hash(&process);
        let same = self.by_hash.get(&hash).and_then(|places| {
            places
                .iter()
                .find(|&&place| self.entries.get(place).is_some_and(|(_, p)| *p == process))
        });
        if let Some(&place) = same
            && let Some((id, _)) = self.entries.get(place)
        {
            return id.clone();
        }
        let id = format!("p{}", self.entries.len() + 1);
        self.by_hash
            .entry(hash)
            .or_default()
            .push(self.entries.len());
        self.entries.push((id.clone(), process));
        id
    }

    fn into_map(self) -> BTreeMap<String, Process> {
        self.entries.into_iter().collect()
    }
}

/// A hash of what makes two processes the same (floats by their bits: equal floats
/// that differ in bits, `0.0` and `-0.0`, only cost a second entry in one list).
fn process_hash(process: &Process) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    process.service_name.hash(&mut hasher);
    for tag in &process.tags {
        tag.key.hash(&mut hasher);
        match &tag.value {
            TagValue::String(s) => (0u8, s).hash(&mut hasher),
            TagValue::Bool(b) => (1u8, b).hash(&mut hasher),
            TagValue::Int64(i) => (2u8, i).hash(&mut hasher),
            TagValue::Float64(f) => (3u8, f.to_bits()).hash(&mut hasher),
            TagValue::Binary(b) => (4u8, b).hash(&mut hasher),
        }
    }
    hasher.finish()
}

fn no_service_process() -> Process {
    Process {
        service_name: RESOURCE_NO_SERVICE_NAME.to_string(),
        tags: Vec::new(),
    }
}

/// The Jaeger process of a resource: `service.name` becomes the service name (empty
/// when other attributes exist without it), the rest become tags.
pub fn resource_to_process(resource_spans: &ResourceSpans) -> Process {
    let attributes = resource_spans
        .resource
        .as_ref()
        .map(|r: &Resource| r.attributes.as_slice())
        .unwrap_or_default();
    if attributes.is_empty() {
        return no_service_process();
    }
    let service_name = attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                _ => String::new(),
            },
        )
        .unwrap_or_default();
    let tags = attributes
        .iter()
        .filter(|kv| kv.key != "service.name")
        .map(attribute_to_tag)
        .collect();
    Process { service_name, tags }
}

fn span_to_jaeger(trace_id: TraceId, flat: &FlatSpan<'_>, process_id: String) -> model::Span {
    let span = flat.span;
    // The span's own id is authoritative for its references; fall back to the trace's.
    let own_trace_id = if span.trace_id.len() == 16 {
        trace_id_lenient(&span.trace_id)
    } else {
        trace_id
    };
    let start = span.start_time_unix_nano;
    model::Span {
        trace_id: own_trace_id.to_string(),
        span_id: span_id_lenient(&span.span_id).to_string(),
        parent_span_id: None,
        flags: 0,
        operation_name: span.name.clone(),
        references: references(own_trace_id, span),
        start_time: start / 1000,
        duration: span.end_time_unix_nano.saturating_sub(start) / 1000,
        tags: span_tags(span, flat.scope),
        logs: span.events.iter().map(event_to_log).collect(),
        process_id,
        process: None,
        warnings: None,
    }
}

/// The parent as the first `CHILD_OF`, then one reference per link. A link to the
/// parent itself does not repeat it but sets the parent reference's type.
fn references(trace_id: TraceId, span: &OtlpSpan) -> Vec<Reference> {
    let parent = if span.parent_span_id.is_empty() {
        None
    } else {
        Some(span_id_lenient(&span.parent_span_id))
    };
    let parent = parent.filter(|p| !p.is_zero());
    let mut refs = Vec::with_capacity(span.links.len() + usize::from(parent.is_some()));
    if let Some(parent) = parent {
        refs.push(Reference {
            ref_type: RefType::ChildOf,
            trace_id: trace_id.to_string(),
            span_id: parent.to_string(),
        });
    }
    for link in &span.links {
        let link_trace = trace_id_lenient(&link.trace_id);
        let link_span = span_id_lenient(&link.span_id);
        let ref_type = link_ref_type(link);
        if parent == Some(link_span) && link_trace == trace_id {
            if let Some(first) = refs.first_mut() {
                first.ref_type = ref_type;
            }
            continue;
        }
        refs.push(Reference {
            ref_type,
            trace_id: link_trace.to_string(),
            span_id: link_span.to_string(),
        });
    }
    refs
}

fn link_ref_type(link: &span::Link) -> RefType {
    let child_of = link
        .attributes
        .iter()
        .find(|kv| kv.key == "opentracing.ref_type")
        .is_some_and(|kv| {
            matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                 Some(any_value::Value::StringValue(s)) if s == "child_of")
        });
    if child_of {
        RefType::ChildOf
    } else {
        RefType::FollowsFrom
    }
}

/// Tags in the translator's order: scope name and version, attributes, `span.kind`,
/// `otel.status_code`, `error`, `otel.status_description`, `w3c.tracestate`.
fn span_tags(span: &OtlpSpan, scope: Option<&InstrumentationScope>) -> Vec<KeyValue> {
    let mut tags = Vec::with_capacity(span.attributes.len() + 6);
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            tags.push(KeyValue::string("otel.scope.name", scope.name.clone()));
        }
        if !scope.version.is_empty() {
            tags.push(KeyValue::string(
                "otel.scope.version",
                scope.version.clone(),
            ));
        }
    }
    tags.extend(span.attributes.iter().map(attribute_to_tag));
    let kind = SpanKind::from_otlp(span.kind);
    if kind != SpanKind::Unspecified {
        tags.push(KeyValue::string("span.kind", kind.jaeger_name()));
    }
    if let Some(status) = &span.status {
        match status.code {
            1 => tags.push(KeyValue::string("otel.status_code", "OK")),
            2 => {
                tags.push(KeyValue::string("otel.status_code", "ERROR"));
                tags.push(KeyValue::bool("error", true));
            }
            _ => {}
        }
        if !status.message.is_empty() {
            tags.push(KeyValue::string(
                "otel.status_description",
                status.message.clone(),
            ));
        }
    }
    if !span.trace_state.is_empty() {
        tags.push(KeyValue::string("w3c.tracestate", span.trace_state.clone()));
    }
    tags
}

/// An event becomes a log; its name comes first as field `event` unless it is empty
/// or an attribute is already called `event`.
fn event_to_log(event: &span::Event) -> Log {
    let mut fields = Vec::with_capacity(event.attributes.len() + 1);
    if !event.name.is_empty() && !event.attributes.iter().any(|kv| kv.key == "event") {
        fields.push(KeyValue::string("event", event.name.clone()));
    }
    fields.extend(event.attributes.iter().map(attribute_to_tag));
    Log {
        timestamp: event.time_unix_nano / 1000,
        fields,
    }
}

/// One OTLP attribute as a typed Jaeger tag. Arrays and maps become their JSON text.
pub fn attribute_to_tag(kv: &OtlpKeyValue) -> KeyValue {
    KeyValue {
        key: kv.key.clone(),
        value: any_value_to_tag_value(kv.value.as_ref()),
    }
}

fn any_value_to_tag_value(value: Option<&AnyValue>) -> TagValue {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => TagValue::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => TagValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => TagValue::Int64(*i),
        Some(any_value::Value::DoubleValue(d)) => TagValue::Float64(*d),
        Some(any_value::Value::BytesValue(b)) => TagValue::Binary(b.clone()),
        Some(v @ (any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_))) => {
            let mut json = String::new();
            write_any_value_json(Some(v), &mut json);
            TagValue::String(go_html_escape(&json))
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => TagValue::String(String::new()),
    }
}

/// The JSON text of pdata's `AsRaw` form as Go's `encoding/json` writes it: map keys
/// sorted (the last duplicate wins), numbers as Go writes them ([`go_json_float`]);
/// non-finite doubles, which Go cannot write, as the strings `NaN`, `+Inf`, `-Inf`.
fn write_any_value_json(value: Option<&any_value::Value>, out: &mut String) {
    use std::fmt::Write as _;
    match value {
        Some(any_value::Value::StringValue(s)) => {
            out.push_str(&serde_json::to_string(s).unwrap_or_default());
        }
        Some(any_value::Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => match go_json_float(*d) {
            Some(text) => out.push_str(&text),
            None => out.push_str(if d.is_nan() {
                "\"NaN\""
            } else if *d > 0.0 {
                "\"+Inf\""
            } else {
                "\"-Inf\""
            }),
        },
        Some(any_value::Value::BytesValue(b)) => {
            use base64::Engine as _;
            let _ = write!(
                out,
                "\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(b)
            );
        }
        Some(any_value::Value::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_any_value_json(v.value.as_ref(), out);
            }
            out.push(']');
        }
        Some(any_value::Value::KvlistValue(kvs)) => {
            let sorted: BTreeMap<&str, Option<&any_value::Value>> = kvs
                .values
                .iter()
                .map(|kv| {
                    (
                        kv.key.as_str(),
                        kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    )
                })
                .collect();
            out.push('{');
            for (i, (key, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).unwrap_or_default());
                out.push(':');
                write_any_value_json(v, out);
            }
            out.push('}');
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => out.push_str("null"),
    }
}

/// A finite float as Go's `encoding/json` writes it: the shortest text that reads back
/// as the same number, without an exponent from 1e-6 up to 1e21 (`1000000000000000`,
/// `-0`), with one outside (`1e+21`, `1.5e-7`). `None` for NaN and infinities.
pub(crate) fn go_json_float(d: f64) -> Option<String> {
    if !d.is_finite() {
        return None;
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{d:e}");
        return Some(match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        });
    }
    Some(format!("{d}"))
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings. In
/// JSON text those characters can only occur inside strings, so a plain replace over
/// the whole document is exact.
pub fn go_html_escape(json: &str) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A trace id from OTLP bytes; other lengths than 16 are left-padded or keep the last
/// 16 bytes, so that malformed stored data still renders.
pub fn trace_id_lenient(bytes: &[u8]) -> TraceId {
    let mut out = [0u8; 16];
    let n = bytes.len().min(16);
    out[16 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    TraceId(out)
}

/// A span id from OTLP bytes, lenient like [`trace_id_lenient`].
pub fn span_id_lenient(bytes: &[u8]) -> SpanId {
    let mut out = [0u8; 8];
    let n = bytes.len().min(8);
    out[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    SpanId(out)
}

#[cfg(test)]
mod tests;
