//! The one error type of the query service (its answers and its configuration) and how
//! it becomes an HTTP response.
//!
//! Status codes come from the shared [`ErrorCode`] vocabulary. Bodies follow Jaeger,
//! which writes errors through Go's `http.Error`: `text/plain; charset=utf-8`,
//! `X-Content-Type-Options: nosniff`, a JSON document and a trailing newline.
//!
//! - `/api` (v1): `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":"…"}]}`
//! - `/api/v3`: `{"error":{"httpCode":400,"message":"…"}}` (see [`V3Error`])
//! - `/api/quotas`: `application/json` `{"error":"…","details":[{"field":"…","message":"…"}]}`
//!   (see [`AdminError`]; `details` only for invalid policies)
//!
//! 5xx bodies never carry internal details; those are logged.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshtel_model::ErrorCode;
use meshtel_model::quota::FieldError;

use crate::jaeger::model::{Envelope, StructuredError};

/// Jaeger's message for a trace id with no stored span.
pub const TRACE_NOT_FOUND: &str = "trace not found";

/// Everything a query request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed parameter, path or body; the message says what and is shown to
    /// the client verbatim.
    #[error("{0}")]
    BadRequest(String),
    /// The trace (or, for v3, any trace) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Archive storage was asked for but is not part of meshtel.
    #[error("archive span storage was not configured")]
    ArchiveNotConfigured,
    /// The trace store failed.
    #[error(transparent)]
    Storage(#[from] meshtel_model::Error),
    /// A response could not be encoded.
    #[error("encoding response: {0}")]
    Encode(#[from] serde_json::Error),
    /// The request carries no usable bearer token (HTTP 401, `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthenticated(String),
    /// The bearer token is not valid here (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// A quota policy failed validation; every problem with its field path.
    #[error("invalid quota policy")]
    InvalidPolicy(Vec<FieldError>),
    /// A conditional request did not hold (HTTP 412); the message says why.
    #[error("{0}")]
    PreconditionFailed(String),
    /// This process cannot serve the request (e.g. it runs no quota engine); the
    /// message says why and is shown to the client.
    #[error("{0}")]
    Unavailable(String),
    /// The method is not served on this path (HTTP 405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body's media type is not one the endpoint reads (HTTP 415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the query API reads (HTTP 413).
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes ([`crate::MAX_REQUEST_BODY_BYTES`]).
        limit: usize,
    },
    /// The body did not arrive within the server's body read timeout (HTTP 408); the
    /// message names the setting.
    #[error("{0}")]
    RequestTimeout(String),
    /// An endpoint of the Jaeger API that meshtel does not provide (HTTP 501), such as
    /// Jaeger's SPM metrics; the message is Jaeger's.
    #[error("{0}")]
    NotImplemented(String),
    /// A `[query]` setting is unusable (at startup, never in an answer); the message
    /// names the setting as the config file spells it.
    #[error("{0}")]
    InvalidConfig(String),
}

/// Result with [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// Jaeger's 404 for a missing trace.
    pub fn trace_not_found() -> Self {
        ApiError::NotFound(TRACE_NOT_FOUND.to_string())
    }

    /// The protocol-neutral code, mapped to HTTP in one place. The shared vocabulary has
    /// no authentication or HTTP-only codes: those errors are `BadRequest` here and get
    /// their own status from [`ApiError::status`].
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::InvalidPolicy(_)
            | ApiError::Unauthenticated(_)
            | ApiError::Forbidden(_)
            | ApiError::MethodNotAllowed
            | ApiError::RequestTimeout(_)
            | ApiError::UnsupportedMediaType(_) => ErrorCode::BadRequest,
            ApiError::TooLarge { .. } => ErrorCode::TooLarge,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::ArchiveNotConfigured
            | ApiError::Encode(_)
            | ApiError::NotImplemented(_)
            | ApiError::InvalidConfig(_) => ErrorCode::Internal,
            ApiError::Storage(e) => e.code(),
        }
    }

    /// `Retry-After` for a read refused for a while (no read turn in time, the
    /// queries' memory used up, a time bound, a full disk): a second, as ingest advises
    /// for a full queue.
    pub fn retry_after(&self) -> Option<HeaderValue> {
        (self.code() == ErrorCode::Unavailable).then(|| HeaderValue::from_static("1"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::from_u16(self.code().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The message the client sees: the error itself for 4xx, a generic text for 5xx
    /// (logged here with its details).
    pub fn public_message(&self) -> String {
        match self {
            ApiError::ArchiveNotConfigured
            | ApiError::Unavailable(_)
            | ApiError::NotImplemented(_) => self.to_string(),
            ApiError::Storage(
                meshtel_model::Error::BadRequest(msg) | meshtel_model::Error::Unavailable(msg),
            ) => shorten(msg),
            _ if self.status().is_server_error() => {
                tracing::warn!(error = %self, status = self.status().as_u16(), "query failed");
                match self.code() {
                    ErrorCode::Unavailable => "service unavailable".to_string(),
                    _ => "internal error".to_string(),
                }
            }
            _ => shorten(&self.to_string()),
        }
    }
}

/// Characters of a 4xx message shown: enough for the parameter's name, the cause and
/// the start of the value, which can be as long as a query string (64 KiB).
const MESSAGE_MAX_CHARS: usize = 300;

/// `message`, cut after [`MESSAGE_MAX_CHARS`] characters with its full length said.
fn shorten(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_MAX_CHARS) {
        None => message.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &message[..end], message.len()),
    }
}

/// The v1 (`/api`) error body.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Envelope::<()> {
            errors: Some(vec![StructuredError {
                code: status.as_u16(),
                msg: self.public_message(),
                trace_id: String::new(),
            }]),
            ..Envelope::data(())
        };
        go_http_error(status, &body, self.retry_after())
    }
}

/// An [`ApiError`] rendered in the `/api/v3` format.
#[derive(Debug)]
pub struct V3Error(pub ApiError);

impl From<ApiError> for V3Error {
    fn from(e: ApiError) -> Self {
        V3Error(e)
    }
}

impl From<meshtel_model::Error> for V3Error {
    fn from(e: meshtel_model::Error) -> Self {
        V3Error(e.into())
    }
}

#[derive(serde::Serialize)]
struct V3ErrorBody {
    #[serde(rename = "error")]
    error: V3ErrorDetails,
}

#[derive(serde::Serialize)]
struct V3ErrorDetails {
    #[serde(rename = "httpCode")]
    http_code: u16,
    #[serde(rename = "message")]
    message: String,
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = V3ErrorBody {
            error: V3ErrorDetails {
                http_code: status.as_u16(),
                message: self.0.public_message(),
            },
        };
        go_http_error(status, &body, self.0.retry_after())
    }
}

/// What Go's `http.Error(w, json, status)` writes, with `Retry-After` when given.
fn go_http_error<T: serde::Serialize>(
    status: StatusCode,
    body: &T,
    retry_after: Option<HeaderValue>,
) -> Response {
    let mut text = crate::response::go_json(body, false).unwrap_or_default();
    text.push(b'\n');
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(delay) = retry_after {
        headers.insert(header::RETRY_AFTER, delay);
    }
    response
}

/// An [`ApiError`] rendered for the quota admin API (`/api/quotas`): `application/json`,
/// `{"error":"…"}`, with `"details"` (field path and message per problem) for invalid
/// policies and `WWW-Authenticate: Bearer` on 401.
#[derive(Debug)]
pub struct AdminError(pub ApiError);

/// The JSON body of an [`AdminError`]; the CLI reads it back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminErrorBody {
    /// What went wrong.
    pub error: String,
    /// For invalid policies: every problem with its field path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<AdminFieldError>,
}

/// One problem of an invalid policy, as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminFieldError {
    /// Field path in the spec's camelCase names (`overrides[1].maxAmount`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> Self {
        AdminError(e)
    }
}

impl From<meshtel_model::Error> for AdminError {
    fn from(e: meshtel_model::Error) -> Self {
        AdminError(e.into())
    }
}

impl From<PathRejection> for AdminError {
    fn from(rejection: PathRejection) -> Self {
        AdminError(rejection.into())
    }
}

impl From<BytesRejection> for AdminError {
    fn from(rejection: BytesRejection) -> Self {
        AdminError(rejection.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let details = match &self.0 {
            ApiError::InvalidPolicy(errors) => errors
                .iter()
                .map(|e| AdminFieldError {
                    field: e.field.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let body = AdminErrorBody {
            error: self.0.public_message(),
            details,
        };
        let mut response = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// A body that could not be read: 413 over the size limit, 408 when it did not arrive
/// in time (the server's body read timeout ends it with a `TimedOut` I/O error), 400
/// otherwise.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge {
                limit: crate::MAX_REQUEST_BODY_BYTES,
            };
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(error) = source {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return ApiError::RequestTimeout(io.to_string());
            }
            source = error.source();
        }
        ApiError::BadRequest(rejection.body_text())
    }
}
