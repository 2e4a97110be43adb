//! The Jaeger query API v3 over HTTP (`/api/v3/...`), as Jaeger's HTTP gateway serves
//! it: services and operations for Jaeger UI ≥ 2.15 and Grafana's gRPC toggle, trace
//! summaries for the search page of Jaeger UI ≥ 2.20, dependencies, traces as OTLP
//! JSON `{"result":{"resourceSpans":[…]}}` ([`otlp_json`]), errors as
//! `{"error":{"httpCode":…,"message":…}}`.
//!
//! Parameters take Jaeger's canonical camelCase names (`query.serviceName`,
//! `startTime`, `spanKind`, …), which current Jaeger UI sends, and the snake_case names
//! Jaeger keeps as deprecated aliases (`query.service_name`, `start_time`, …). One
//! parameter sent under two names with different values is a 400 naming both.

mod otlp_json;
mod summaries;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use meshtel_model::TraceQuery;
use meshtel_model::duration::parse_go_duration;
use meshtel_model::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use meshtel_model::otlp::trace::v1::ResourceSpans;
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, V3Error};
use crate::jaeger::params::{
    self, QueryParams, check_tag_count, parse_go_bool, parse_go_int, parse_string_map,
};
use crate::jaeger::{KindFilter, span_kind_filter};
use crate::response::{build_answer, json_response, span_total};

/// Jaeger's message when a v3 trace lookup or search finds nothing.
pub const NO_TRACES_FOUND: &str = "No traces found";

type Result<T> = std::result::Result<T, V3Error>;

/// The v3 routes, relative to the base path.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v3/services", get(get_services))
        .route("/api/v3/operations", get(get_operations))
        .route("/api/v3/traces", get(find_traces))
        .route("/api/v3/traces/{trace_id}", get(get_trace))
        .route("/api/v3/trace-summaries", get(find_trace_summaries))
        .route("/api/v3/dependencies", get(get_dependencies))
}

#[derive(Serialize)]
struct ServicesResponse {
    #[serde(rename = "services")]
    services: Vec<String>,
}

#[derive(Serialize)]
struct OperationsResponse {
    #[serde(rename = "operations")]
    operations: Vec<OperationJson>,
}

#[derive(Serialize)]
struct OperationJson {
    #[serde(rename = "name")]
    name: String,
    #[serde(rename = "spanKind")]
    span_kind: String,
}

#[derive(Serialize)]
struct DependenciesResponse {
    #[serde(rename = "dependencies")]
    dependencies: Vec<DependencyJson>,
}

/// `jaeger.api_v3.Dependency`; `callCount` is a `uint64`, so a decimal string in JSON.
#[derive(Serialize)]
struct DependencyJson {
    #[serde(rename = "parent")]
    parent: String,
    #[serde(rename = "child")]
    child: String,
    #[serde(rename = "callCount")]
    call_count: String,
}

#[derive(Serialize)]
struct TracesResponse<'a> {
    #[serde(rename = "result")]
    result: otlp_json::TracesDataJson<'a>,
}

/// The names of each parameter: Jaeger's canonical camelCase name first (jaeger PR
/// #8625), then the names it keeps as deprecated aliases. `query.num_traces` and
/// `query.span_name` are what Jaeger UI 2.20 sent.
mod names {
    pub const SERVICE: &[&str] = &["query.serviceName", "query.service_name"];
    pub const OPERATION: &[&str] = &[
        "query.operationName",
        "query.operation_name",
        "query.span_name",
    ];
    pub const START_TIME_MIN: &[&str] = &["query.startTimeMin", "query.start_time_min"];
    pub const START_TIME_MAX: &[&str] = &["query.startTimeMax", "query.start_time_max"];
    pub const DURATION_MIN: &[&str] = &["query.durationMin", "query.duration_min"];
    pub const DURATION_MAX: &[&str] = &["query.durationMax", "query.duration_max"];
    pub const SEARCH_DEPTH: &[&str] = &[
        "query.searchDepth",
        "query.search_depth",
        "query.num_traces",
    ];
    pub const QUERY_RAW_TRACES: &[&str] = &["query.rawTraces", "query.raw_traces"];
    /// One name in both spellings.
    pub const ATTRIBUTES: &str = "query.attributes";
    pub const START_TIME: &[&str] = &["startTime", "start_time"];
    pub const END_TIME: &[&str] = &["endTime", "end_time"];
    pub const RAW_TRACES: &[&str] = &["rawTraces", "raw_traces"];
    pub const SPAN_KIND: &[&str] = &["spanKind", "span_kind"];
}

/// The value of the parameter sent under one of `names` (`""` when none was sent), with
/// the name it came under, for error messages. Two of the names with different values
/// are a 400 naming both: the client meant one, and we cannot tell which.
fn aliased<'a>(params: &'a QueryParams, names: &[&'static str]) -> Result<(&'static str, &'a str)> {
    let mut found: Option<(&'static str, &'a str)> = None;
    for &name in names {
        let value = params.get(name);
        if value.is_empty() {
            continue;
        }
        match found {
            None => found = Some((name, value)),
            Some((first, first_value)) if first_value != value => {
                return Err(ApiError::BadRequest(format!(
                    "conflicting parameters {first}={} and {name}={}: two spellings of one \
                     parameter; send one",
                    params::go_quote(first_value),
                    params::go_quote(value)
                ))
                .into());
            }
            Some(_) => {}
        }
    }
    Ok(found.unwrap_or((names.first().copied().unwrap_or_default(), "")))
}

/// `GET /api/v3/services`: `{"services":[…]}`, never null.
#[tracing::instrument(skip_all)]
async fn get_services(State(state): State<AppState>) -> Result<Response> {
    let services = state.jaeger.services().await?;
    Ok(json_response(&ServicesResponse { services }, false)?)
}

/// `GET /api/v3/operations?service=&spanKind=` (`span_kind` accepted too); an
/// unspecified kind is reported as `internal`, as Jaeger does.
#[tracing::instrument(skip_all)]
async fn get_operations(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let service = params.get("service");
    let (_, kind) = aliased(&params, names::SPAN_KIND)?;
    let ops = match (service, span_kind_filter(kind)) {
        ("", _) | (_, KindFilter::Unknown) => Vec::new(),
        (s, KindFilter::All) => state.jaeger.operations(s, None).await?,
        (s, KindFilter::Only(k)) => state.jaeger.operations(s, Some(k)).await?,
    };
    let operations = ops
        .into_iter()
        .map(|op| OperationJson {
            name: op.name,
            span_kind: match op.span_kind.jaeger_name() {
                "" => "internal".to_string(),
                k => k.to_string(),
            },
        })
        .collect();
    Ok(json_response(&OperationsResponse { operations }, false)?)
}

/// `GET /api/v3/traces/{trace_id}?startTime=&endTime=&rawTraces=` (or `start_time`,
/// `end_time`, `raw_traces`); the times are validated and otherwise ignored (the store
/// finds a trace by id alone).
#[tracing::instrument(skip_all)]
async fn get_trace(
    State(state): State<AppState>,
    trace_id: std::result::Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let Path(trace_id) = trace_id.map_err(ApiError::from)?;
    let params = QueryParams::parse(query.as_deref());
    let id = params::parse_trace_id(&trace_id).map_err(|e| malformed("trace_id", &e))?;
    for time in [names::START_TIME, names::END_TIME] {
        let (name, text) = aliased(&params, time)?;
        if !text.is_empty() {
            parse_rfc3339_nano(text).map_err(|e| malformed(name, &e))?;
        }
    }
    let raw = parse_bool_param(&params, names::RAW_TRACES)?;
    let trace = state.jaeger.get_trace(id).await?;
    traces_response(trace.into_iter().collect(), raw).await
}

/// `GET /api/v3/traces?query.serviceName=&query.operationName=&query.startTimeMin=
/// &query.startTimeMax=&query.durationMin=&query.durationMax=&query.searchDepth=
/// &query.rawTraces=&query.attributes=`, or the snake_case names of [`names`]. Both
/// start times are required (RFC 3339); `query.attributes` is a JSON object of strings,
/// like v1's `tags`.
#[tracing::instrument(skip_all)]
async fn find_traces(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let (query, raw) = parse_find_traces_query(&params)?;
    let traces = state.jaeger.find_traces(&query).await?.traces;
    traces_response(traces, raw).await
}

/// `GET /api/v3/trace-summaries?query.…`: the same search as `/api/v3/traces`, answered
/// with one summary per trace (`{"summaries":[…]}`, empty when nothing matched, as
/// Jaeger answers). Jaeger UI ≥ 2.20 lists its search results from it.
#[tracing::instrument(skip_all)]
async fn find_trace_summaries(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let (query, raw) = parse_find_traces_query(&params)?;
    let mut traces = state.jaeger.find_traces(&query).await?.traces;
    if !raw {
        // Counted and rooted as the traces `/api/v3/traces` gives.
        traces
            .iter_mut()
            .for_each(crate::jaeger::convert::adjust_otlp);
    }
    let summaries = traces.iter().map(summaries::summarize).collect();
    Ok(json_response(
        &summaries::SummariesResponse { summaries },
        false,
    )?)
}

/// `GET /api/v3/dependencies?startTime=&endTime=` (RFC 3339; `start_time` and
/// `end_time` accepted too): the edges of `/api/dependencies` over that window.
#[tracing::instrument(skip_all)]
async fn get_dependencies(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    // A missing time is named by its canonical camelCase name.
    let time = |names: &[&'static str]| -> Result<u64> {
        let (name, text) = aliased(&params, names)?;
        if text.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "missing required parameter: {}",
                names.join(" (or ") + ")"
            ))
            .into());
        }
        Ok(parse_rfc3339_nano(text).map_err(|e| malformed(name, &e))?)
    };
    let start = time(names::START_TIME)?;
    let end = time(names::END_TIME)?;
    if end <= start {
        return Err(ApiError::BadRequest("endTime must be after startTime".to_string()).into());
    }
    let links = state.jaeger.dependencies(end, end - start, None).await?;
    let dependencies = links
        .into_iter()
        .map(|l| DependencyJson {
            parent: l.parent,
            child: l.child,
            call_count: l.call_count.to_string(),
        })
        .collect();
    Ok(json_response(
        &DependenciesResponse { dependencies },
        false,
    )?)
}

/// The search, and whether `query.rawTraces` asked for the traces as stored.
fn parse_find_traces_query(params: &QueryParams) -> Result<(TraceQuery, bool)> {
    let (min_name, min_text) = aliased(params, names::START_TIME_MIN)?;
    let (max_name, max_text) = aliased(params, names::START_TIME_MAX)?;
    if min_text.is_empty() || max_text.is_empty() {
        return Err(ApiError::BadRequest(
            "query.startTimeMin and query.startTimeMax are required (or query.start_time_min \
             and query.start_time_max)"
                .to_string(),
        )
        .into());
    }
    let start_min = parse_rfc3339_nano(min_text).map_err(|e| malformed(min_name, &e))?;
    let start_max = parse_rfc3339_nano(max_text).map_err(|e| malformed(max_name, &e))?;

    let (depth_name, depth_text) = aliased(params, names::SEARCH_DEPTH)?;
    let mut limit = params::DEFAULT_SEARCH_LIMIT;
    if !depth_text.is_empty() {
        let depth = parse_go_int(depth_text, 64)
            .map_err(|e| e.replace("strconv.ParseInt", "strconv.Atoi"))
            .map_err(|e| malformed(depth_name, &e))?;
        if depth > 0 {
            limit = usize::try_from(depth).unwrap_or(usize::MAX);
        }
    }
    let duration = |names: &[&'static str]| -> Result<Option<u64>> {
        let (name, text) = aliased(params, names)?;
        if text.is_empty() {
            return Ok(None);
        }
        let d = parse_go_duration(text).map_err(|e| malformed(name, &e.to_string()))?;
        Ok(Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).filter(|d| *d != 0))
    };
    let duration_min_nano = duration(names::DURATION_MIN)?;
    let duration_max_nano = duration(names::DURATION_MAX)?;
    let raw = parse_bool_param(params, names::QUERY_RAW_TRACES)?;
    let mut tags = Vec::new();
    for text in params.all(names::ATTRIBUTES) {
        tags.extend(parse_string_map(text).map_err(|e| malformed(names::ATTRIBUTES, &e))?);
    }
    check_tag_count(tags.len(), "'query.attributes' parameters")?;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let query = TraceQuery {
        service: non_empty(aliased(params, names::SERVICE)?.1),
        operation: non_empty(aliased(params, names::OPERATION)?.1),
        tags,
        start_min_unix_nano: start_min,
        start_max_unix_nano: start_max,
        duration_min_nano,
        duration_max_nano,
        limit,
        max_spans: None,
    };
    Ok((query, raw))
}

/// The traces as Jaeger's v3 API answers them: adjusted as v1's are (duplicates
/// dropped, a server span sharing its client's id given its own) unless `raw`.
async fn traces_response(traces: Vec<meshtel_model::Trace>, raw: bool) -> Result<Response> {
    if traces.is_empty() {
        return Err(ApiError::NotFound(NO_TRACES_FOUND.to_string()).into());
    }
    build_answer(span_total(&traces), move || {
        let resource_spans: Vec<ResourceSpans> = traces
            .into_iter()
            .flat_map(|mut trace| {
                if !raw {
                    crate::jaeger::convert::adjust_otlp(&mut trace);
                }
                warn_if_cut(&mut trace);
                trace.resource_spans
            })
            .collect();
        Ok(json_response(
            &TracesResponse {
                result: otlp_json::TracesDataJson(&resource_spans),
            },
            false,
        )?)
    })
    .await
}

/// Where Jaeger puts the warnings of a span in OTLP (a list of strings).
const WARNINGS_ATTRIBUTE: &str = "@jaeger@warnings";

/// A trace cut by `[query] max_spans_per_response` says so on its earliest span, in the
/// attribute Jaeger's v3 API uses for warnings (v1 has a `warnings` field instead).
fn warn_if_cut(trace: &mut meshtel_model::Trace) {
    if trace.omitted_spans == 0 {
        return;
    }
    let warning = crate::jaeger::convert::omitted_warning(trace.span_count(), trace.omitted_spans);
    let first = trace
        .resource_spans
        .iter_mut()
        .flat_map(|r| r.scope_spans.iter_mut())
        .flat_map(|s| s.spans.iter_mut())
        .min_by_key(|span| span.start_time_unix_nano);
    let Some(span) = first else {
        return;
    };
    let warning = AnyValue {
        value: Some(any_value::Value::StringValue(warning)),
    };
    // Keys are unique in OTLP: join a list the span already has.
    let existing = span
        .attributes
        .iter_mut()
        .find(|a| a.key == WARNINGS_ATTRIBUTE)
        .and_then(|a| a.value.as_mut())
        .and_then(|v| match &mut v.value {
            Some(any_value::Value::ArrayValue(list)) => Some(list),
            _ => None,
        });
    match existing {
        Some(list) => list.values.push(warning),
        None => span.attributes.push(KeyValue {
            key: WARNINGS_ATTRIBUTE.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![warning],
                })),
            }),
            ..Default::default()
        }),
    }
}

fn parse_bool_param(params: &QueryParams, names: &[&'static str]) -> Result<bool> {
    let (name, text) = aliased(params, names)?;
    if text.is_empty() {
        return Ok(false);
    }
    Ok(parse_go_bool(text).map_err(|e| malformed(name, &e))?)
}

/// `malformed parameter <name>: <cause>`, Jaeger's v3 wording.
fn malformed(name: &str, cause: &str) -> ApiError {
    ApiError::BadRequest(format!("malformed parameter {name}: {cause}"))
}

/// Parses Go's `time.RFC3339Nano` layout (`2006-01-02T15:04:05.999999999Z07:00`) into
/// Unix nanoseconds; times before the epoch clamp to 0.
pub fn parse_rfc3339_nano(text: &str) -> std::result::Result<u64, String> {
    let fail = || {
        format!(
            "parsing time {}: not an RFC 3339 time",
            params::go_quote(text)
        )
    };
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> std::result::Result<i64, String> {
        let part = b.get(range).ok_or_else(fail)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(fail());
        }
        Ok(part
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, c: u8| {
        if b.get(i) == Some(&c) {
            Ok(())
        } else {
            Err(fail())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    sep(4, b'-')?;
    sep(7, b'-')?;
    sep(10, b'T')?;
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    sep(13, b':')?;
    sep(16, b':')?;
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 9 {
            return Err(fail());
        }
        let digits = num(start..end)?;
        nanos = digits * 10i64.pow(u32::try_from(9 - (end - start)).map_err(|_| fail())?);
        i = end;
    }
    let offset_seconds = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b':')?;
            let (off_hours, off_minutes) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            // As Go's parser: an offset's hours 00–23, its minutes 00–59.
            if off_hours > 23 || off_minutes > 59 {
                return Err(fail());
            }
            let off = off_hours * 3600 + off_minutes * 60;
            if sign == b'+' { off } else { -off }
        }
        _ => return Err(fail()),
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = usize::try_from(month - 1)
        .ok()
        .and_then(|m| month_days.get(m))
        .copied()
        .ok_or_else(fail)?;
    if day < 1 || day > max_day || hour > 23 || minute > 59 || second > 59 {
        return Err(fail());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    Ok(u64::try_from(total.max(0)).unwrap_or(u64::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
