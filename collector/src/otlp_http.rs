//! OTLP/HTTP: `POST /v1/traces` in binary protobuf or JSON, plus `/healthz` and
//! `/readyz`; any other path (`/v1/logs`, `/v1/metrics`) is a 404 whose JSON body
//! says what the port serves.
//!
//! Behaviour copies the OpenTelemetry Collector's receiver (spec §3.1, §3.3):
//!
//! | request | answer |
//! | --- | --- |
//! | `application/x-protobuf` or `application/json` (parameters ignored) | 200 + `ExportTraceServiceResponse` in the same content type |
//! | another method | 405 text `405 method not allowed, supported: [POST]` |
//! | another path | 404 + `{"error":"no route POST /v1/logs: this port serves POST /v1/traces (…)"}` |
//! | another media type | 415 text |
//! | undecodable body, bad encoding, too many spans | 400 + `google.rpc.Status` in the request's content type |
//! | body over `max_request_bytes`, as sent or decompressed | 413 + `Status` |
//! | store overloaded / unavailable | 503 + `Status` (+ `Retry-After` seconds when overloaded) |

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use meshtel_model::SpanSink;
use meshtel_model::json_text::repaired_text_warning;
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use serde_json::json;
use tracing::{debug, instrument};

use crate::body::{DECODE_ON_BLOCKING_THREAD_BYTES, hold_json_parse, media_type, off_runtime_if, read_body_limited};
use crate::config::IngestLimits;
use crate::error::{Error, Result, echo};
use crate::inflight::InflightBudget;
use crate::ingest::Ingest;
use crate::ingest_metrics::{IngestMetrics, Protocol, RefusalReason};
use crate::otlp_json::{
    decode_export_request_json, encode_export_response_json, encode_status_json,
};
use crate::rpc;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Builds the OTLP/HTTP router over `sink` with `limits`: `POST /v1/traces`,
/// `GET /healthz`, `GET /readyz`. Refusals are not counted; see
/// [`otlp_http_router_with_metrics`].
pub fn otlp_http_router(sink: Arc<dyn SpanSink>, limits: IngestLimits) -> Router {
    router(Ingest::new(sink, limits, Protocol::OtlpHttp, None))
}

/// As [`otlp_http_router`], counting refused requests and rejected spans in `metrics`,
/// its requests' bytes held in `budget` (shared with the other ingest servers).
pub fn otlp_http_router_with_metrics(
    sink: Arc<dyn SpanSink>,
    limits: IngestLimits,
    metrics: IngestMetrics,
    budget: InflightBudget,
) -> Router {
    router(Ingest::new(sink, limits, Protocol::OtlpHttp, Some(metrics)).with_budget(budget))
}

fn router(ingest: Ingest) -> Router {
    let traces = ingest
        .limits()
        .cors
        .apply(post(export_traces).fallback(method_not_allowed));
    Router::new()
        .route("/v1/traces", traces)
        .route("/healthz", get(ok))
        .route("/readyz", get(ready))
        .fallback(
            |method: Method, uri: Uri| async move { no_route(&method, &uri, OTLP_HTTP_SERVES) },
        )
        .with_state(ingest)
}

/// What the OTLP/HTTP port serves, for a request to another path.
const OTLP_HTTP_SERVES: &str = "this port serves POST /v1/traces (OTLP traces only; logs and metrics are not accepted), \
     and GET /metrics, /healthz and /readyz";

/// Longest method or path a 404 repeats, in characters.
const ROUTE_ECHO_MAX_CHARS: usize = 64;

/// A path the port does not serve: 404 with `{"error":"no route POST /v1/logs: <serves>"}`,
/// so that an SDK also exporting logs or metrics, or a client of another API version,
/// is told where it went wrong rather than given an empty body.
pub(crate) fn no_route(method: &Method, uri: &Uri, serves: &str) -> Response {
    let cut = |text: &str| match text.char_indices().nth(ROUTE_ECHO_MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    };
    let (method, path) = (cut(method.as_str()), cut(uri.path()));
    debug!(%method, %path, "no route");
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, JSON)],
        json!({ "error": format!("no route {method} {path}: {serves}") }).to_string(),
    )
        .into_response()
}

/// The two OTLP/HTTP encodings; responses use the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        match media_type(headers)?.as_str() {
            PROTOBUF => Some(Encoding::Protobuf),
            JSON => Some(Encoding::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

#[instrument(skip_all, fields(protocol = "otlp_http"))]
async fn export_traces(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let Some(encoding) = Encoding::from_headers(&headers) else {
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        debug!(
            content_type = %echo(content_type.as_deref().unwrap_or("")),
            "unsupported media type"
        );
        ingest.refused_for(
            RefusalReason::UnsupportedMediaType,
            "unsupported media type",
        );
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(CONTENT_TYPE, TEXT)],
            format!("415 unsupported media type, supported: [{JSON}, {PROTOBUF}]"),
        )
            .into_response();
    };
    match decode_and_export(&ingest, &headers, body, encoding).await {
        Ok(response) => {
            let body = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => encode_export_response_json(&response),
            };
            (
                StatusCode::OK,
                [(CONTENT_TYPE, encoding.content_type())],
                body,
            )
                .into_response()
        }
        Err(error) => {
            ingest.refused(&error);
            OtlpHttpError { error, encoding }.into_response()
        }
    }
}

async fn decode_and_export(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<ExportTraceServiceResponse> {
    // Held until the spans are stored or refused (see `crate::inflight`).
    let hold = ingest.hold();
    let limit = ingest.limits().max_request_bytes_usize();
    let bytes = read_body_limited(headers, body, limit, Some(&hold)).await?;
    match encoding {
        Encoding::Protobuf => ingest.export_protobuf(bytes).await,
        Encoding::Json => {
            let large = bytes.len() >= DECODE_ON_BLOCKING_THREAD_BYTES;
            let held = hold.clone();
            let (request, repaired) = off_runtime_if(large, move || {
                hold_json_parse(&held, &bytes)?;
                decode_export_request_json(&bytes)
            })
            .await?;
            let warning = (repaired > 0).then(|| repaired_text_warning(repaired));
            ingest.export(request.resource_spans, warning).await
        }
    }
}

/// An error answered as OTLP/HTTP does: the status code of [`Error::http_status`] and
/// a `google.rpc.Status` body in the request's encoding.
struct OtlpHttpError {
    error: Error,
    encoding: Encoding,
}

impl IntoResponse for OtlpHttpError {
    fn into_response(self) -> Response {
        // Each refusal is counted and logged, rate-limited, by `Ingest::refused`.
        let status = self.error.http_status();
        debug!(error = %self.error, status = status.as_u16(), "export refused");
        let grpc_code = self.error.code().grpc_code() as i32;
        let message = self.error.client_message();
        let retry_after = self.error.retry_after();
        let body = match (self.encoding, retry_after) {
            (Encoding::Json, _) => encode_status_json(grpc_code, &message),
            (Encoding::Protobuf, Some(delay)) => {
                rpc::status_with_retry_info(grpc_code, &message, delay).to_vec()
            }
            (Encoding::Protobuf, None) => rpc::Status {
                code: grpc_code,
                message,
                details: Vec::new(),
            }
            .encode_to_vec(),
        };
        let mut response =
            (status, [(CONTENT_TYPE, self.encoding.content_type())], body).into_response();
        if let Some(delay) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, retry_after_seconds(delay));
        }
        response
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1.
pub(crate) fn retry_after_seconds(delay: std::time::Duration) -> HeaderValue {
    let mut seconds = delay.as_secs();
    if delay.subsec_nanos() > 0 || seconds == 0 {
        seconds += 1;
    }
    HeaderValue::from(seconds)
}

/// The OpenTelemetry Collector's answer to a method other than POST.
pub(crate) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(ALLOW, "POST"), (CONTENT_TYPE, TEXT)],
        "405 method not allowed, supported: [POST]",
    )
        .into_response()
}

/// Ready while the store accepts writes: 503 with the reason while it refuses all of
/// them (a full disk, an unwritable WAL), so that a load balancer sends spans to
/// another collector meanwhile.
async fn ready(State(ingest): State<Ingest>) -> Response {
    match ingest.refuses_writes() {
        None => "ok".into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "not ready", "reason": reason })),
        )
            .into_response(),
    }
}

async fn ok() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests;
