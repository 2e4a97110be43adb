//! OTLP/JSON decoding with the leniency the OpenTelemetry Collector shows: the body is
//! parsed into a `serde_json::Value`, normalised by
//! [`meshtel_model::otlp_json::normalize_otlp_json`] (snake_case keys, enum names,
//! numbers as strings; see there), then deserialised. A refused body is answered
//! with the path of the bad field and, for the fields whose deserialiser speaks of
//! Rust types (enums, 64-bit integers, `AnyValue`s), what that field allows.

use meshtel_model::otlp::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use meshtel_model::otlp_json::normalize_otlp_json;
use meshtel_model::json_text::{parse_json_text, repair_json_text};
use meshtel_model::otlp_json::{InvalidField, locate_invalid_field, restore_non_finite_doubles};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// Counts the objects and arrays of a JSON body before it is parsed, and refuses one
/// of too many: [`meshtel_model::otlp_json::check_json_objects`].
pub fn check_json_objects(body: &[u8]) -> Result<()> {
    meshtel_model::otlp_json::check_json_objects(body)
        .map_err(|refused| Error::DecodeJson(serde::de::Error::custom(refused)))
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`, with how many places of its text
/// were repaired ([`parse_json_text`]).
pub fn decode_export_request_json(body: &[u8]) -> Result<(ExportTraceServiceRequest, usize)> {
    check_json_objects(body)?;
    let (mut value, repaired): (Value, usize) = parse_json_text(body)?;
    // The generated impls would also read a message written as an array of its fields.
    if !value.is_object() {
        return Err(Error::DecodeJson(serde::de::Error::custom(format!(
            "an OTLP/JSON request is a JSON object ({{\"resourceSpans\": [...]}}), not {}",
            json_kind(&value)
        ))));
    }
    normalize_otlp_json(&mut value);
    match serde_json::from_value(value) {
        Ok(mut request) => {
            restore_non_finite_doubles(&mut request);
            Ok((request, repaired))
        }
        // Decoded again to find where it went wrong: tracking the path of every field
        // would cost each good request, and bad ones are rare.
        Err(error) => {
            let repaired_body = (repaired > 0).then(|| repair_json_text(body)).flatten();
            let body = repaired_body.as_ref().map_or(body, |(text, _)| &text[..]);
            Err(locate_json_error(body).unwrap_or(Error::DecodeJson(error)))
        }
    }
}

/// What a JSON value is, for an error message.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The error of decoding `body`, with the path of the field it happened at (`None`
/// when it happened at the top, or not again). For an enum, a 64-bit integer, a
/// counter or an `AnyValue`, the message says what is wrong and what is allowed
/// ([`explain_invalid_field`]) rather than the generated impls' Rust types.
fn locate_json_error(body: &[u8]) -> Option<Error> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    normalize_otlp_json(&mut value);
    let InvalidField { path, message } = locate_invalid_field(&value)?;
    Some(Error::DecodeJsonField {
        path,
        source: serde::de::Error::custom(message),
    })
}

/// OTLP/JSON `ExportTraceServiceResponse`: `{}` on full success, otherwise
/// `{"partialSuccess":{"rejectedSpans":"3","errorMessage":"…"}}` (int64 as a string,
/// default values omitted, as proto3 JSON writes them).
pub fn encode_export_response_json(response: &ExportTraceServiceResponse) -> Vec<u8> {
    let mut root = Map::new();
    if let Some(partial) = &response.partial_success {
        let mut fields = Map::new();
        if partial.rejected_spans != 0 {
            fields.insert(
                "rejectedSpans".into(),
                Value::String(partial.rejected_spans.to_string()),
            );
        }
        if !partial.error_message.is_empty() {
            fields.insert(
                "errorMessage".into(),
                Value::String(partial.error_message.clone()),
            );
        }
        if !fields.is_empty() {
            root.insert("partialSuccess".into(), Value::Object(fields));
        }
    }
    Value::Object(root).to_string().into_bytes()
}

/// OTLP/JSON `google.rpc.Status`: `{"code":3,"message":"…"}`.
pub fn encode_status_json(code: i32, message: &str) -> Vec<u8> {
    json!({ "code": code, "message": message })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests;
