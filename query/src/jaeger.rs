//! The Jaeger query HTTP API v1 (`/api/...`), as Jaeger v1.60 serves it and as
//! Grafana's Jaeger datasource and Jaeger UI (≤ v2.14) call it.
//!
//! ```text
//!  HTTP ─► handler (parse params) ─► JaegerService ─► TraceReader
//!                                         │
//!  HTTP ◄─ envelope {"data":…} ◄── convert (OTLP → Jaeger JSON)
//! ```
//!
//! - [`model`]: the Jaeger JSON model and envelope;
//! - [`convert`]: OTLP → Jaeger JSON;
//! - [`params`]: query-string parsing with Jaeger's messages;
//! - [`service`]: [`JaegerService`], the domain type behind both API versions.

pub mod convert;
pub mod model;
pub mod params;
pub mod service;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use meshtel_model::{SpanKind, TraceId};
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use serde::Deserialize as _;

pub use service::JaegerService;

use self::convert::{Adjust, convert_trace, left_out_message};
use self::model::{DependencyLink, Envelope, Operation, StructuredError};
use self::params::{QueryParams, TracesRequest};
use crate::AppState;
use crate::error::{ApiError, Result, TRACE_NOT_FOUND};
use crate::response::{build_answer, json_response, span_total};

/// The v1 routes, relative to the base path.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/services", get(get_services))
        .route(
            "/api/services/{service}/operations",
            get(get_service_operations),
        )
        .route("/api/operations", get(get_operations))
        .route("/api/traces", get(search_traces))
        .route("/api/traces/{trace_id}", get(get_trace))
        .route("/api/dependencies", get(get_dependencies))
        .route("/api/transform", post(transform))
        .route("/api/archive/{trace_id}", post(archive_trace))
}

/// `GET /api/services`: `data` is every service name, `[]` when none.
#[tracing::instrument(skip_all)]
async fn get_services(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let services = state.jaeger.services().await?;
    let total = services.len();
    json_response(
        &Envelope::with_total(services, total),
        params.pretty_print(),
    )
}

/// `GET /api/services/{service}/operations`: distinct names over every span kind. The
/// path segment is percent-decoded once (a `+` stays a `+`).
#[tracing::instrument(skip_all)]
async fn get_service_operations(
    State(state): State<AppState>,
    service: std::result::Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let Path(service) = service?;
    let params = QueryParams::parse(query.as_deref());
    let names = state.jaeger.operation_names(&service).await?;
    let total = names.len();
    json_response(&Envelope::with_total(names, total), params.pretty_print())
}

/// `GET /api/operations?service=&spanKind=`: `[{"name","spanKind"}]`.
#[tracing::instrument(skip_all)]
async fn get_operations(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let service = params.get("service");
    if service.is_empty() {
        return Err(ApiError::BadRequest(
            "parameter 'service' is required".to_string(),
        ));
    }
    let operations: Vec<Operation> = match span_kind_filter(params.get("spanKind")) {
        KindFilter::Unknown => Vec::new(),
        KindFilter::All => to_operations(state.jaeger.operations(service, None).await?),
        KindFilter::Only(kind) => {
            to_operations(state.jaeger.operations(service, Some(kind)).await?)
        }
    };
    let total = operations.len();
    json_response(
        &Envelope::with_total(operations, total),
        params.pretty_print(),
    )
}

fn to_operations(ops: Vec<meshtel_model::Operation>) -> Vec<Operation> {
    ops.into_iter()
        .map(|op| Operation {
            name: op.name,
            span_kind: op.span_kind.jaeger_name().to_string(),
        })
        .collect()
}

/// How a `spanKind` parameter filters operations.
pub(crate) enum KindFilter {
    /// `""`: every kind.
    All,
    /// One of Jaeger's five kind names.
    Only(SpanKind),
    /// Anything else: Jaeger does not validate it, it just matches nothing.
    Unknown,
}

/// Reads a `spanKind` parameter the way Jaeger's stores match it.
pub(crate) fn span_kind_filter(text: &str) -> KindFilter {
    match text {
        "" => KindFilter::All,
        "unspecified" => KindFilter::Unknown,
        other => SpanKind::from_jaeger_name(other).map_or(KindFilter::Unknown, KindFilter::Only),
    }
}

/// `GET /api/traces`: a search, or a fetch by repeated `traceID` where missing ids are
/// reported in `errors` with status 200.
#[tracing::instrument(skip_all)]
async fn search_traces(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let request = params::parse_traces_params(
        &params,
        state.jaeger.now_unix_nano(),
        state.jaeger.max_search_limit(),
    )?;
    let adjust = Adjust::from_raw(params::parse_raw_param(&params)?);
    match request {
        TracesRequest::Search(query) => {
            let found = state.jaeger.find_traces(&query).await?;
            tracing::debug!(
                traces = found.traces.len(),
                left_out = found.left_out.len(),
                "search done"
            );
            let errors = errors(found.left_out.iter().map(|&(id, spans)| (id, left_out_message(spans))));
            let traces = found.traces;
            let pretty = params.pretty_print();
            build_answer(span_total(&traces), move || {
                json_response(
                    &Envelope {
                        errors,
                        ..Envelope::data(convert_traces(&traces, adjust))
                    },
                    pretty,
                )
            })
            .await
        }
        TracesRequest::Nothing => json_response(
            &Envelope::data(Vec::<model::Trace>::new()),
            params.pretty_print(),
        ),
        TracesRequest::ByIds(ids) => {
            let found = state.jaeger.get_traces(&ids).await?;
            let left_out: HashMap<TraceId, u64> = found.left_out.into_iter().collect();
            // Each id not answered: left out by the answer's bounds, or not stored.
            let errors = errors(
                ids.iter()
                    .filter(|id| !found.traces.iter().any(|t| t.trace_id == **id))
                    .map(|id| match left_out.get(id) {
                        Some(&spans) => (*id, left_out_message(spans)),
                        None => (*id, TRACE_NOT_FOUND.to_string()),
                    }),
            );
            let traces = found.traces;
            let pretty = params.pretty_print();
            build_answer(span_total(&traces), move || {
                json_response(
                    &Envelope {
                        errors,
                        ..Envelope::data(convert_traces(&traces, adjust))
                    },
                    pretty,
                )
            })
            .await
        }
    }
}

/// `GET /api/traces/{traceID}`: `data` is a one-element array. `start`/`end` are
/// ignored: Grafana sends milliseconds where Jaeger expects microseconds, and the store
/// finds a trace by id alone.
#[tracing::instrument(skip_all)]
async fn get_trace(
    State(state): State<AppState>,
    trace_id: std::result::Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let Path(trace_id) = trace_id?;
    let params = QueryParams::parse(query.as_deref());
    let id = params::parse_trace_id(&trace_id).map_err(ApiError::BadRequest)?;
    let adjust = Adjust::from_raw(params::parse_raw_param(&params)?);
    params::parse_trace_window_hints(&params)?;
    let trace = state
        .jaeger
        .get_trace(id)
        .await?
        .ok_or_else(ApiError::trace_not_found)?;
    let pretty = params.pretty_print();
    build_answer(trace.span_count(), move || {
        let trace = convert_trace(&trace, adjust).ok_or_else(ApiError::trace_not_found)?;
        json_response(&Envelope::data([trace]), pretty)
    })
    .await
}

/// The `errors` of an answer naming traces (Jaeger's code 0), `None` when none.
fn errors(named: impl Iterator<Item = (TraceId, String)>) -> Option<Vec<StructuredError>> {
    let errors: Vec<StructuredError> = named
        .map(|(id, msg)| StructuredError {
            code: 0,
            msg,
            trace_id: id.to_string(),
        })
        .collect();
    (!errors.is_empty()).then_some(errors)
}

/// Stored traces as Jaeger JSON, those with no span left out.
fn convert_traces(traces: &[meshtel_model::Trace], adjust: Adjust) -> Vec<model::Trace> {
    traces
        .iter()
        .filter_map(|t| convert_trace(t, adjust))
        .collect()
}

/// `GET /api/dependencies?endTs=&lookback=&service=`: edges with summed call counts.
#[tracing::instrument(skip_all)]
async fn get_dependencies(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = QueryParams::parse(query.as_deref());
    let deps = params::parse_dependencies_params(&params, state.jaeger.now_unix_nano())?;
    let links = state
        .jaeger
        .dependencies(
            deps.end_unix_nano,
            deps.lookback_nano,
            deps.service.as_deref(),
        )
        .await?;
    let data: Vec<DependencyLink> = links
        .into_iter()
        .map(|l| DependencyLink {
            parent: l.parent,
            child: l.child,
            call_count: l.call_count,
        })
        .collect();
    json_response(&Envelope::data(data), params.pretty_print())
}

/// Most memory parsing one `/api/transform` upload may take
/// ([`meshtel_model::otlp_json::json_parse_bytes`]): an ordinary 2 MiB OTLP/JSON file
/// takes about 45 MiB, one of tiny objects four times that.
const MAX_TRANSFORM_PARSE_BYTES: usize = 64 << 20;

/// `POST /api/transform`: an OTLP/JSON `ExportTraceServiceRequest` (as Jaeger UI
/// uploads it) rendered as Jaeger traces.
#[tracing::instrument(skip_all)]
async fn transform(
    RawQuery(query): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body?;
    let params = QueryParams::parse(query.as_deref());
    // Read as the OTLP/HTTP receiver reads it: snake_case keys and enum names too.
    let unmarshal =
        |e: serde_json::Error| ApiError::BadRequest(format!("cannot unmarshal OTLP traces: {e}"));
    meshtel_model::otlp_json::check_json_objects(&body)
        .map_err(|e| ApiError::BadRequest(format!("cannot unmarshal OTLP traces: {e}")))?;
    let parse_bytes = meshtel_model::otlp_json::json_parse_bytes(&body);
    if parse_bytes > MAX_TRANSFORM_PARSE_BYTES {
        return Err(ApiError::BadRequest(format!(
            "cannot unmarshal OTLP traces: reading this body would take about {} in memory, \
             more than the {} an upload may: upload fewer spans",
            bytesize::ByteSize::b(parse_bytes as u64),
            bytesize::ByteSize::b(MAX_TRANSFORM_PARSE_BYTES as u64)
        )));
    }
    let (mut value, _repaired): (serde_json::Value, usize) =
        meshtel_model::json_text::parse_json_text(&body).map_err(unmarshal)?;
    meshtel_model::otlp_json::normalize_otlp_json(&mut value);
    let request = match ExportTraceServiceRequest::deserialize(&value) {
        Ok(mut request) => {
            meshtel_model::otlp_json::restore_non_finite_doubles(&mut request);
            request
        }
        // A refusal names the field and what it allows, as the OTLP/HTTP receiver's.
        Err(error) => {
            return Err(
                match meshtel_model::otlp_json::locate_invalid_field(&value) {
                    Some(invalid) => ApiError::BadRequest(format!(
                        "cannot unmarshal OTLP traces: {}: {}",
                        invalid.path, invalid.message
                    )),
                    None => unmarshal(error),
                },
            );
        }
    };
    let traces = convert::resource_spans_to_jaeger(&request.resource_spans);
    json_response(&Envelope::data(traces), params.pretty_print())
}

/// `POST /api/archive/{traceID}`: meshtel has no separate archive storage; Jaeger
/// answers 500 in that case.
#[tracing::instrument(skip_all)]
async fn archive_trace(
    trace_id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let Path(trace_id) = trace_id?;
    params::parse_trace_id(&trace_id).map_err(ApiError::BadRequest)?;
    Err(ApiError::ArchiveNotConfigured)
}

#[cfg(test)]
mod tests;
