//! `FindTraceSummaries` over HTTP (`GET /api/v3/trace-summaries`): one row per trace
//! found, as Jaeger UI ≥ 2.20 lists search results. The JSON is what Jaeger's gateway
//! writes for `jaeger.api_v3.FindTraceSummariesResponse` (proto3 JSON: camelCase
//! names, 64-bit times as decimal strings).

use std::collections::{BTreeMap, HashSet};

use crate::jaeger::convert::resource_to_process;
use meshtel_model::Trace;
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

/// The service of a resource as every other answer names it (`service.name`, or
/// Jaeger's `OTLPResourceNoServiceName` for a resource without attributes).
fn service_name(resource_spans: &ResourceSpans) -> String {
    resource_to_process(resource_spans).service_name
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

/// Summarises one trace. The root is the earliest span without a parent; in a partial
/// trace, the earliest span whose parent was never received (as the trace view shows
/// it at the top, whatever skewed clocks say of its children); failing both (a cycle
/// of parents), the earliest span.
pub fn summarize(trace: &Trace) -> TraceSummary {
    let services: Vec<String> = trace.resource_spans.iter().map(service_name).collect();
    let spans: Vec<(&str, &Span)> = trace
        .resource_spans
        .iter()
        .zip(&services)
        .flat_map(|(rs, service)| {
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (service.as_str(), s)))
        })
        .collect();
    let ids: HashSet<&[u8]> = spans.iter().map(|(_, s)| s.span_id.as_slice()).collect();
    let is_orphan =
        |s: &Span| !s.parent_span_id.is_empty() && !ids.contains(s.parent_span_id.as_slice());
    let earliest = |keep: &dyn Fn(&Span) -> bool| {
        spans
            .iter()
            .filter(|(_, s)| keep(s))
            .min_by_key(|(_, s)| s.start_time_unix_nano)
    };
    let root = earliest(&|s| s.parent_span_id.is_empty())
        .or_else(|| earliest(&|s| is_orphan(s)))
        .or_else(|| earliest(&|_| true));

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
