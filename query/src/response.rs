//! JSON success responses written the way Jaeger's Go code writes them: compact, or
//! indented by four spaces for `prettyPrint`, with `encoding/json`'s HTML escaping, no
//! trailing newline, `Content-Type: application/json`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;
use crate::jaeger::convert::go_html_escape;

/// Serialises `value` as Go's `json.Marshal` (or `json.MarshalIndent(v, "", "    ")`).
pub fn go_json<T: Serialize + ?Sized>(
    value: &T,
    pretty: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    let text = if pretty {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        value.serialize(&mut serializer)?;
        // serde_json writes only valid UTF-8.
        String::from_utf8_lossy(&out).into_owned()
    } else {
        serde_json::to_string(value)?
    };
    Ok(go_html_escape(&text).into_bytes())
}

/// A `200 application/json` response of `value`.
pub fn json_response<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<Response, ApiError> {
    let body = go_json(value, pretty)?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
