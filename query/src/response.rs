//! JSON success responses written the way Jaeger's Go code writes them: compact, or
//! indented by four spaces for `prettyPrint`, with `encoding/json`'s HTML escaping, no
//! trailing newline, `Content-Type: application/json`.

use std::io::{self, Write};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::ser::Formatter;

use crate::error::ApiError;

/// Serialises `value` as Go's `json.Marshal` (or `json.MarshalIndent(v, "", "    ")`),
/// escaping as it writes: the answer is built once, in one buffer (a large trace's
/// JSON is tens of megabytes).
pub fn go_json<T: Serialize + ?Sized>(
    value: &T,
    pretty: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    if pretty {
        let formatter = GoEscape(serde_json::ser::PrettyFormatter::with_indent(b"    "));
        value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, formatter,
        ))?;
    } else {
        let formatter = GoEscape(serde_json::ser::CompactFormatter);
        value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, formatter,
        ))?;
    }
    Ok(out)
}

/// A formatter that writes strings as Go's `encoding/json` does: `<`, `>`, `&`, U+2028
/// and U+2029 as `\u` escapes (as [`crate::jaeger::convert::go_html_escape`] does to
/// finished text).
struct GoEscape<F>(F);

impl<F: Formatter> Formatter for GoEscape<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut written = 0;
        for (at, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[written..at])?;
            writer.write_all(escaped.as_bytes())?;
            written = at + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[written..])
    }

    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// Spans from which an answer of traces is built (converted, written as JSON) on a
/// blocking thread rather than on one of the runtime's few workers.
pub const BLOCKING_ANSWER_SPANS: usize = 5_000;

/// Runs `build`, which turns traces read into an answer, on a blocking thread when
/// they hold [`BLOCKING_ANSWER_SPANS`] spans or more (a 50,000-span trace takes a
/// worker for a good part of a second): the workers go on answering `/healthz`, the
/// service lists and small reads meanwhile.
pub async fn build_answer<E>(
    spans: usize,
    build: impl FnOnce() -> Result<Response, E> + Send + 'static,
) -> Result<Response, E>
where
    E: From<ApiError> + Send + 'static,
{
    if spans < BLOCKING_ANSWER_SPANS {
        return build();
    }
    match tokio::task::spawn_blocking(build).await {
        Ok(built) => built,
        Err(e) => Err(ApiError::Unavailable(format!("building the answer failed: {e}")).into()),
    }
}

/// Spans of `traces` together.
pub fn span_total(traces: &[meshtel_model::Trace]) -> usize {
    traces.iter().map(meshtel_model::Trace::span_count).sum()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::jaeger::convert::go_html_escape;

    #[test]
    fn strings_are_escaped_as_go_escapes_them_while_written() {
        let value = serde_json::json!({
            "<key>": ["a<b>&c", "\u{2028}line\u{2029}", "plain", 1, null, {"x": "&amp;", "é": "ü<"}],
            "empty": {},
            "list": [],
        });
        for pretty in [false, true] {
            let plain = if pretty {
                serde_json::to_string_pretty(&value)
                    .unwrap()
                    .replace("  ", "    ")
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let ours = String::from_utf8(go_json(&value, pretty).unwrap()).unwrap();
            assert_eq!(ours, go_html_escape(&plain), "pretty: {pretty}");
            assert!(
                ours.contains("\\u003ckey\\u003e") && ours.contains("a\\u003cb\\u003e\\u0026c")
            );
            assert!(ours.contains("\\u2028line\\u2029"));
        }
    }
}
