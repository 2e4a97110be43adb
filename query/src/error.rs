//! The one error type of the query service and how it becomes an HTTP response.
//!
//! Status codes come from the shared [`ErrorCode`] vocabulary. Bodies follow Jaeger,
//! which writes errors through Go's `http.Error`: `text/plain; charset=utf-8`,
//! `X-Content-Type-Options: nosniff`, a JSON document and a trailing newline.
//!
//! - `/api` (v1): `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":"…"}]}`
//! - `/api/v3`: `{"error":{"httpCode":400,"message":"…"}}` (see [`V3Error`])
//!
//! 5xx bodies never carry internal details; those are logged.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshtel_model::ErrorCode;

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
}

/// Result with [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// Jaeger's 404 for a missing trace.
    pub fn trace_not_found() -> Self {
        ApiError::NotFound(TRACE_NOT_FOUND.to_string())
    }

    /// The protocol-neutral code, mapped to HTTP in one place.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::ArchiveNotConfigured | ApiError::Encode(_) => ErrorCode::Internal,
            ApiError::Storage(e) => e.code(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The message the client sees: the error itself for 4xx, a generic text for 5xx
    /// (logged here with its details).
    pub fn public_message(&self) -> String {
        match self {
            ApiError::ArchiveNotConfigured => self.to_string(),
            ApiError::Storage(meshtel_model::Error::BadRequest(msg)) => msg.clone(),
            _ if self.status().is_server_error() => {
                tracing::warn!(error = %self, status = self.status().as_u16(), "query failed");
                match self.code() {
                    ErrorCode::Unavailable => "service unavailable".to_string(),
                    _ => "internal error".to_string(),
                }
            }
            _ => self.to_string(),
        }
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
        go_http_error(status, &body)
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
        go_http_error(status, &body)
    }
}

/// What Go's `http.Error(w, json, status)` writes.
fn go_http_error<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
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
    response
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}
