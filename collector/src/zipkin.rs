//! Zipkin ingest: `POST /api/v2/spans` (spec §5), and `POST /api/v1/spans` for v1 JSON
//! and Thrift ([`convert::v1`], converted to v2 spans first).
//!
//! The body is a proto3 `ListOfSpans` when the `Content-Type` is
//! `application/x-protobuf`, and a JSON array of Zipkin v2 spans otherwise, as the
//! Zipkin server reads it (spec §5.1): `application/json`, no type at all (old Zipkin
//! clients), and any other type, such as the `text/plain;charset=UTF-8` of a browser's
//! `fetch` or `sendBeacon` and the `application/x-www-form-urlencoded` of `curl -d`.
//! Parameters such as `; charset=utf-8` are ignored. A body read as JSON only because
//! of its type that is not JSON is a 400 that says so. The body may be gzip- or
//! deflate-compressed. It is converted to OTLP ([`convert`]) and goes through the same
//! limits, validation and durable write as OTLP ([`Ingest::export`]).
//!
//! | request | answer |
//! | --- | --- |
//! | valid span list | 202, empty body |
//! | undecodable JSON or protobuf, invalid id, non-string tag, too many spans | 400, text naming the problem (span index and field for a bad span; for JSON sent as another type, that it was read as JSON v2 because of that type) |
//! | body over `max_request_bytes` | 413 |
//! | v1 API with `application/x-protobuf` | 415 naming what it reads |
//! | another path | 404, JSON `{"error":"no route …"}` naming both span APIs |
//! | store overloaded / unavailable | 503 (+ `Retry-After` seconds when overloaded) |

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, StatusCode, Uri};
use meshtel_model::SpanSink;
use meshtel_model::validate::MAX_REASONS_QUOTED;
use tracing::{debug, instrument};

use crate::body::{
    DECODE_ON_BLOCKING_THREAD_BYTES, hold_json_parse, hold_parse, media_type, off_runtime_if, read_body_limited,
};
use crate::config::IngestLimits;
use crate::error::{Error, Result};
use crate::inflight::InflightBudget;
use crate::ingest::Ingest;
use crate::ingest_metrics::{IngestMetrics, Protocol};
use crate::otlp_http::{method_not_allowed, no_route, retry_after_seconds};

pub mod convert;

use convert::v1::thrift::parse_bytes as thrift_parse_bytes;
use convert::{
    decode_zipkin_json, decode_zipkin_proto, decode_zipkin_v1_json, decode_zipkin_v1_thrift, zipkin_paths,
    zipkin_spans_to_otlp_placed_from,
};

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
const THRIFT: &str = "application/x-thrift";

/// Which of Zipkin's span APIs a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// `POST /api/v1/spans`: v1 spans, JSON or Thrift ([`convert::v1`]).
    V1,
    /// `POST /api/v2/spans`.
    V2,
}

/// Builds the Zipkin router over `sink` with `limits`: `POST /api/v2/spans` and
/// `POST /api/v1/spans`. Refusals
/// are not counted; see [`zipkin_router_with_metrics`].
pub fn zipkin_router(sink: Arc<dyn SpanSink>, limits: IngestLimits) -> Router {
    router(Ingest::new(sink, limits, Protocol::Zipkin, None))
}

/// As [`zipkin_router`], counting refused requests and rejected spans in `metrics`,
/// its requests' bytes held in `budget` (shared with the other ingest servers).
pub fn zipkin_router_with_metrics(
    sink: Arc<dyn SpanSink>,
    limits: IngestLimits,
    metrics: IngestMetrics,
    budget: InflightBudget,
) -> Router {
    router(Ingest::new(sink, limits, Protocol::Zipkin, Some(metrics)).with_budget(budget))
}

fn router(ingest: Ingest) -> Router {
    let cors = &ingest.limits().cors;
    let spans = cors.apply(post(accept_spans).fallback(method_not_allowed));
    let spans_v1 = cors.apply(post(accept_spans_v1).fallback(method_not_allowed));
    Router::new()
        .route("/api/v2/spans", spans)
        .route("/api/v1/spans", spans_v1)
        .fallback(|method: Method, uri: Uri| async move { no_route(&method, &uri, ZIPKIN_SERVES) })
        .with_state(ingest)
}

/// What the Zipkin port serves, for a request to another path.
const ZIPKIN_SERVES: &str = "this port serves the Zipkin span APIs: POST /api/v2/spans \
     (JSON or protobuf) and POST /api/v1/spans (JSON or Thrift)";

#[instrument(skip_all, fields(protocol = "zipkin"))]
async fn accept_spans(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    answer(&ingest, decode_and_export(&ingest, Api::V2, &headers, body).await)
}

#[instrument(skip_all, fields(protocol = "zipkin", api = "v1"))]
async fn accept_spans_v1(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    answer(&ingest, decode_and_export(&ingest, Api::V1, &headers, body).await)
}

fn answer(ingest: &Ingest, result: Result<Option<String>>) -> Response {
    match result {
        Ok(None) => StatusCode::ACCEPTED.into_response(),
        // Some spans stored, some refused: still 202 (the others are kept), with what
        // was refused in the body, as text.
        Ok(Some(refused)) => (
            StatusCode::ACCEPTED,
            [(CONTENT_TYPE, TEXT)],
            format!("{refused}\n"),
        )
            .into_response(),
        Err(error) => {
            ingest.refused(&error);
            ZipkinError(error).into_response()
        }
    }
}

/// How a span list is read, from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Encoding {
    /// `application/json`, or no `Content-Type` at all.
    Json,
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/x-thrift`: v1 only.
    Thrift,
    /// Any other type (as sent), read as JSON v2 as the Zipkin server reads it.
    JsonByDefault(String),
}

/// The encoding the `Content-Type` names for `api`: protobuf for
/// `application/x-protobuf`, Thrift for `application/x-thrift` on the v1 API, JSON for
/// anything else, as the Zipkin server decodes it (spec §5.1; its v2 API reads even a
/// body sent as Thrift as JSON).
fn encoding(api: Api, headers: &HeaderMap) -> Encoding {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Encoding::Json;
    };
    match (api, media_type(headers).as_deref()) {
        (_, Some(JSON)) => Encoding::Json,
        (_, Some(PROTOBUF)) => Encoding::Protobuf,
        (Api::V1, Some(THRIFT)) => Encoding::Thrift,
        _ => Encoding::JsonByDefault(String::from_utf8_lossy(value.as_bytes()).into_owned()),
    }
}

/// The 415 for protobuf on the v1 API, saying where to send it.
fn protobuf_on_v1() -> Error {
    Error::UnsupportedMediaType {
        media_type: PROTOBUF.into(),
        supported: "application/json or application/x-thrift (Zipkin v1); protobuf is \
                    Zipkin v2: POST it to /api/v2/spans",
    }
}

/// Decodes and stores the spans; `Some` says which were refused (Zipkin has no partial
/// success: OTLP's would say it), an error when none was stored.
async fn decode_and_export(
    ingest: &Ingest,
    api: Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<String>> {
    let encoding = encoding(api, headers);
    if api == Api::V1 && encoding == Encoding::Protobuf {
        return Err(protobuf_on_v1());
    }
    // Held until the spans are stored or refused (see `crate::inflight`).
    let hold = ingest.hold();
    let limit = ingest.limits().max_request_bytes_usize();
    let bytes = read_body_limited(headers, body, limit, Some(&hold)).await?;
    let large = bytes.len() >= DECODE_ON_BLOCKING_THREAD_BYTES;
    let max_spans = ingest.limits().max_spans_per_request;
    let held = hold.clone();
    let (received, placed) = off_runtime_if(large, move || {
        match encoding {
            Encoding::Json | Encoding::JsonByDefault(_) => hold_json_parse(&held, &bytes)?,
            Encoding::Thrift => hold_parse(&held, thrift_parse_bytes(&bytes), "Zipkin Thrift", "in smaller batches")?,
            Encoding::Protobuf => {}
        }
        let by_content_type = |content_type: String| {
            move |error| match error {
                Error::DecodeJson(source) => Error::DecodeJsonByContentType {
                    content_type,
                    source,
                },
                other => other,
            }
        };
        let zipkin_spans: Vec<_> = match (api, encoding) {
            // Checks the count of v1 spans itself: each may become two or more.
            (Api::V1, Encoding::Thrift) => decode_zipkin_v1_thrift(&bytes, max_spans)?,
            (Api::V1, Encoding::Protobuf) => return Err(protobuf_on_v1()),
            (Api::V1, _) => decode_zipkin_v1_json(&bytes, max_spans)?,
            (Api::V2, Encoding::Protobuf) => numbered(decode_zipkin_proto(&bytes)?),
            // `encoding` gives the v2 API no Thrift: JSON, as for any type but protobuf.
            (Api::V2, Encoding::Json | Encoding::Thrift) => numbered(decode_zipkin_json(&bytes)?),
            (Api::V2, Encoding::JsonByDefault(content_type)) => numbered(
                decode_zipkin_json(&bytes).map_err(by_content_type(content_type))?,
            ),
        };
        let received = zipkin_spans.len();
        if api == Api::V2 && received > max_spans {
            return Err(Error::TooManySpans {
                count: received,
                limit: max_spans,
            });
        }
        Ok((received, zipkin_spans_to_otlp_placed_from(zipkin_spans)))
    })
    .await?;
    // Spans that could not be converted are left out, named by their place in the
    // list; the rest are stored.
    // The first few quoted, as OTLP's partial success quotes them: a list of 100,000
    // bad spans must not make a 4 MB answer and log line.
    let mut problems: Vec<String> = placed
        .refused
        .iter()
        .take(MAX_REASONS_QUOTED)
        .map(Error::to_string)
        .collect();
    // The sides of one v1 span share its ids: one bad id is named once.
    problems.dedup();
    if placed.refused.len() > MAX_REASONS_QUOTED {
        problems.push(format!(
            "and {} more",
            placed.refused.len() - MAX_REASONS_QUOTED
        ));
    }
    let unconverted = placed.refused.len();
    let mut rejected = unconverted;
    if rejected < received {
        let response = ingest.export(placed.resource_spans, None).await?;
        if let Some(partial) = response.partial_success.filter(|p| p.rejected_spans > 0) {
            rejected += usize::try_from(partial.rejected_spans).unwrap_or(usize::MAX);
            // Spans are named by their place in the list the client sent.
            problems.push(zipkin_paths(&partial.error_message, &placed.positions));
        }
    }
    if rejected == 0 {
        return Ok(None);
    }
    let problems = problems.join("; ");
    if rejected >= received {
        // Refused as a whole: counted as a refused request, not as spans rejected
        // from an accepted one.
        return Err(Error::InvalidZipkinSpan(format!(
            "no span stored: {problems}"
        )));
    }
    ingest.spans_rejected(unconverted);
    Ok(Some(format!(
        "{rejected} of {received} spans refused: {problems}"
    )))
}

/// Spans each with its index in the list.
fn numbered(spans: Vec<convert::ZipkinSpan>) -> Vec<(usize, convert::ZipkinSpan)> {
    spans.into_iter().enumerate().collect()
}

/// A Zipkin error: the status of [`Error::http_status`] and the message as text, as
/// Go's `http.Error` writes it in the OpenTelemetry Collector's receiver.
struct ZipkinError(Error);

impl IntoResponse for ZipkinError {
    fn into_response(self) -> Response {
        // Each refusal is counted and logged, rate-limited, by `Ingest::refused`.
        let status = self.0.http_status();
        debug!(error = %self.0, status = status.as_u16(), "zipkin ingest refused");
        let mut response = (
            status,
            [(CONTENT_TYPE, TEXT)],
            format!("{}\n", self.0.client_message()),
        )
            .into_response();
        if let Some(delay) = self.0.retry_after() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, retry_after_seconds(delay));
        }
        response
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v1;
#[cfg(test)]
mod tests_v1_thrift;
