//! What a trace search asks for and what the store answers with.

use crate::ids::TraceId;
use crate::otlp::trace::v1::ResourceSpans;

/// Span kind, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED` (0).
    Unspecified,
    /// `SPAN_KIND_INTERNAL` (1).
    Internal,
    /// `SPAN_KIND_SERVER` (2).
    Server,
    /// `SPAN_KIND_CLIENT` (3).
    Client,
    /// `SPAN_KIND_PRODUCER` (4).
    Producer,
    /// `SPAN_KIND_CONSUMER` (5).
    Consumer,
}

impl SpanKind {
    /// From the OTLP enum number; unknown numbers count as unspecified.
    pub fn from_otlp(kind: i32) -> Self {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP enum number.
    pub fn to_otlp(self) -> i32 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// Jaeger's lowercase name (`""` for unspecified), as used by `/api/operations`
    /// and the `span.kind` tag.
    pub fn jaeger_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Parses Jaeger's lowercase name; `None` for names Jaeger does not know.
    pub fn from_jaeger_name(name: &str) -> Option<Self> {
        Some(match name {
            "" | "unspecified" => SpanKind::Unspecified,
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => return None,
        })
    }
}

/// One operation of a service with the kind of the spans that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation {
    /// Span name.
    pub name: String,
    /// Span kind.
    pub span_kind: SpanKind,
}

/// A trace search. A trace matches when one single span satisfies every condition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceQuery {
    /// Exact service name (`service.name` of the span's resource).
    pub service: Option<String>,
    /// Exact span name.
    pub operation: Option<String>,
    /// Tags that must all be present with these string values, on the span, its
    /// resource or one of its events. Synthetic Jaeger tags (`error`, `span.kind`,
    /// `otel.status_code`, `otel.scope.name`, ...) match as Jaeger renders them. At
    /// most [`TraceQuery::MAX_TAGS`] reach a store: the query API refuses more.
    pub tags: Vec<(String, String)>,
    /// Earliest span start, Unix nanoseconds, inclusive.
    pub start_min_unix_nano: u64,
    /// Latest span start, Unix nanoseconds, inclusive.
    pub start_max_unix_nano: u64,
    /// Shortest span duration, nanoseconds, inclusive.
    pub duration_min_nano: Option<u64>,
    /// Longest span duration, nanoseconds, inclusive.
    pub duration_max_nano: Option<u64>,
    /// At most this many traces; the newest ones win.
    pub limit: usize,
    /// At most this many spans across the traces returned (`None`: no bound); see
    /// [`TraceReader::get_traces`](crate::TraceReader::get_traces).
    pub max_spans: Option<usize>,
}

impl TraceQuery {
    /// The most tags one search may name (`tag`, `tags`, `query.attributes` together):
    /// far more than a person types, few enough that a search stays quick.
    pub const MAX_TAGS: usize = 256;
}

/// A whole trace: every stored span of one trace id, grouped by resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// The trace id.
    pub trace_id: TraceId,
    /// Spans grouped by resource and scope, as OTLP does.
    pub resource_spans: Vec<ResourceSpans>,
    /// Spans of this trace that are stored but were left out of this answer: the
    /// read's span bound cut the trace, keeping its earliest spans.
    pub omitted_spans: u64,
}

impl Trace {
    /// Number of spans in the trace.
    pub fn span_count(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }

    /// Whether the trace is stored but a read's bound left all of its spans out.
    pub fn is_left_out(&self) -> bool {
        self.omitted_spans > 0 && self.span_count() == 0
    }
}

/// A caller → callee edge derived from parent/child spans across services.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DependencyLink {
    /// Service of the parent span.
    pub parent: String,
    /// Service of the child span.
    pub child: String,
    /// Number of child spans with a parent in the other service.
    pub call_count: u64,
}
