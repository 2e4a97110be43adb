//! `FindTraceSummaries` over HTTP (`GET /api/v3/trace-summaries`): one row per trace
//! found, as Jaeger UI ≥ 2.20 lists search results. The JSON is what Jaeger's gateway
//! writes for `jaeger.api_v3.FindTraceSummariesResponse` (proto3 JSON: camelCase
//! names, 64-bit times as decimal strings).

use std::collections::{BTreeMap, HashSet};

use meshtel_model::Trace;
use meshtel_model::otlp::common::v1::any_value;
use meshtel_model::otlp::trace::v1::{ResourceSpans, Span, status::StatusCode};
use serde::Serialize;

/// The response body: `{"summaries":[…]}`, an empty list when nothing matched.
#[derive(Serialize, Debug)]
pub struct SummariesResponse {
    #[serde(rename = "summaries")]
    pub summaries: Vec<TraceSummary>,
}

/// One trace's summary (`jaeger.api_v3.TraceSummary`).
#[derive(Serialize, Debug, PartialEq)]
pub struct TraceSummary {
    /// 32 hex digits.
    #[serde(rename = "traceId")]
    pub trace_id: String,
    #[serde(rename = "rootServiceName")]
    pub root_service_name: String,
    #[serde(rename = "rootOperationName")]
    pub root_operation_name: String,
    /// Earliest span start, Unix nanoseconds as a decimal string (`fixed64`).
    #[serde(rename = "minStartTimeUnixNano")]
    pub min_start_time_unix_nano: String,
    /// Latest span end, Unix nanoseconds as a decimal string.
    #[serde(rename = "maxEndTimeUnixNano")]
    pub max_end_time_unix_nano: String,
    #[serde(rename = "spanCount")]
    pub span_count: u32,
    /// Spans whose OTLP status is `ERROR`.
    #[serde(rename = "errorSpanCount")]
    pub error_span_count: u32,
    /// Spans whose parent is not in the trace.
    #[serde(rename = "orphanSpanCount")]
    pub orphan_span_count: u32,
    /// One entry per service, sorted by name.
    #[serde(rename = "services")]
    pub services: Vec<ServiceSummary>,
}

/// A service's share of a trace (`jaeger.api_v3.ServiceSummary`).
#[derive(Serialize, Debug, PartialEq)]
pub struct ServiceSummary {
    #[serde(rename = "name")]
    pub name: String,
    #[serde(rename = "spanCount")]
    pub span_count: u32,
    #[serde(rename = "errorSpanCount")]
    pub error_span_count: u32,
}

/// The `service.name` of a resource; empty when it has none.
fn service_name(resource_spans: &ResourceSpans) -> &str {
    resource_spans
        .resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map_or("", |v| match v {
            any_value::Value::StringValue(s) => s.as_str(),
            _ => "",
        })
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

/// Summarises one trace. The root is the earliest span without a parent; a trace
/// whose every span has a parent elsewhere (a partial trace) takes its earliest span.
pub fn summarize(trace: &Trace) -> TraceSummary {
    let spans: Vec<(&str, &Span)> = trace
        .resource_spans
        .iter()
        .flat_map(|rs| {
            let service = service_name(rs);
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (service, s)))
        })
        .collect();
    let ids: HashSet<&[u8]> = spans.iter().map(|(_, s)| s.span_id.as_slice()).collect();
    let is_orphan =
        |s: &Span| !s.parent_span_id.is_empty() && !ids.contains(s.parent_span_id.as_slice());
    let earliest = |root_only: bool| {
        spans
            .iter()
            .filter(|(_, s)| !root_only || s.parent_span_id.is_empty())
            .min_by_key(|(_, s)| s.start_time_unix_nano)
    };
    let root = earliest(true).or_else(|| earliest(false));

    let mut services: BTreeMap<&str, ServiceSummary> = BTreeMap::new();
    let (mut errors, mut orphans) = (0u32, 0u32);
    for (service, span) in &spans {
        let entry = services.entry(service).or_insert_with(|| ServiceSummary {
            name: (*service).to_string(),
            span_count: 0,
            error_span_count: 0,
        });
        entry.span_count = entry.span_count.saturating_add(1);
        if is_error(span) {
            entry.error_span_count = entry.error_span_count.saturating_add(1);
            errors = errors.saturating_add(1);
        }
        if is_orphan(span) {
            orphans = orphans.saturating_add(1);
        }
    }
    let min_start = spans.iter().map(|(_, s)| s.start_time_unix_nano).min();
    let max_end = spans
        .iter()
        .map(|(_, s)| s.end_time_unix_nano.max(s.start_time_unix_nano))
        .max();
    TraceSummary {
        trace_id: trace.trace_id.to_hex32(),
        root_service_name: root.map_or_else(String::new, |(svc, _)| (*svc).to_string()),
        root_operation_name: root.map_or_else(String::new, |(_, s)| s.name.clone()),
        min_start_time_unix_nano: min_start.unwrap_or(0).to_string(),
        max_end_time_unix_nano: max_end.unwrap_or(0).to_string(),
        span_count: u32::try_from(spans.len()).unwrap_or(u32::MAX),
        error_span_count: errors,
        orphan_span_count: orphans,
        services: services.into_values().collect(),
    }
}
