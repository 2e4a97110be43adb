//! The collector's one error type and its mapping to gRPC and HTTP status codes.
//!
//! Every protocol adapter turns an [`Error`] into its wire form through [`Error::code`]
//! (the shared [`ErrorCode`] vocabulary), [`Error::grpc_status`] and
//! [`Error::http_status`]; none decides a status code on its own.
//!
//! A refusal is answered and logged, so a value of the request that an error repeats
//! goes through [`echo`] (or, for a library's message that quotes one,
//! [`shorten_quoted`]): at most [`ECHO_MAX_CHARS`] characters of it, then `…` and its
//! length. A 4 MB `kind` string must not become a 4 MB answer and log line.

use std::fmt::{self, Write as _};
use std::time::Duration;

use meshtel_model::ErrorCode;

use crate::rpc;

/// Why an ingest request (or the collector's configuration) was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting in the configuration is unusable; the message names the section and
    /// key as the config file spells them (`[report] max_records_per_batch must be ...`).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The body, as received or once decompressed, is larger than allowed.
    #[error("request body is larger than max_request_bytes ({limit} bytes)")]
    RequestTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Parsing a JSON (or Zipkin Thrift) body would take more memory than the whole
    /// in-flight budget.
    #[error(
        "reading this {format} body would take about {} in memory, more than [ingest] \
         max_inflight_bytes ({limit}) allows all requests at once: send it {advice}",
        bytesize::ByteSize::b(*.needed as u64)
    )]
    TooLargeToParse {
        /// The body's encoding: `JSON`, `Thrift`.
        format: &'static str,
        /// What parsing it would take, bytes.
        needed: usize,
        /// The in-flight budget.
        limit: bytesize::ByteSize,
        /// How to send it instead.
        advice: &'static str,
    },
    /// More spans in one request than allowed.
    #[error("request has {count} spans, more than max_spans_per_request ({limit})")]
    TooManySpans {
        /// Spans in the request.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A `Content-Type` this endpoint does not decode.
    #[error("unsupported media type {}, supported: [{supported}]", echo(.media_type))]
    UnsupportedMediaType {
        /// The media type as sent.
        media_type: String,
        /// The media types this endpoint decodes.
        supported: &'static str,
    },
    /// A `Content-Encoding` this endpoint cannot decompress.
    #[error("unsupported content encoding {}, supported: [gzip, deflate, identity]", echo(.0))]
    UnsupportedEncoding(String),
    /// The body could not be read from the connection.
    #[error(
        "cannot read the request body (the client sent less than it announced, or went away): {0}"
    )]
    ReadBody(#[source] axum::Error),
    /// The body did not arrive in time (the server's body read timeout); HTTP 408.
    #[error("{0}")]
    BodyTimeout(#[source] std::io::Error),
    /// The compressed body is corrupt.
    #[error("cannot decompress the request body: {0}")]
    Decompress(#[source] std::io::Error),
    /// The body is not a valid protobuf message.
    #[error("cannot decode the protobuf request: {0}")]
    DecodeProtobuf(#[from] prost::DecodeError),
    /// The body is not a valid OTLP protobuf request, as the sink's decoder found.
    #[error("cannot decode the protobuf request: {0}")]
    DecodeOtlp(String),
    /// The body is not valid (OTLP or Zipkin) JSON.
    #[error("cannot decode the JSON request: {}", shorten_quoted(&.0.to_string()))]
    DecodeJson(#[from] serde_json::Error),
    /// A Zipkin body sent with a `Content-Type` other than JSON or protobuf, read as
    /// Zipkin JSON v2 as the Zipkin server reads such a body, is not JSON v2.
    #[error(
        "cannot decode the JSON request: {} (the body was read as Zipkin JSON v2 because \
         its Content-Type {} is not application/x-protobuf{})",
        shorten_quoted(&.source.to_string()),
        echo(.content_type),
        if .content_type.to_ascii_lowercase().starts_with("application/x-thrift") {
            "; Zipkin v1 Thrift is read on POST /api/v1/spans"
        } else {
            ""
        }
    )]
    DecodeJsonByContentType {
        /// The `Content-Type` as sent.
        content_type: String,
        /// Why the body is not JSON v2.
        source: serde_json::Error,
    },
    /// A field of a JSON request holds what its type cannot (an id of odd length, a
    /// string where a number belongs, ...).
    #[error(
        "cannot decode the JSON request: {}: {}",
        shorten_quoted(path),
        shorten_quoted(&source.to_string())
    )]
    DecodeJsonField {
        /// Where, e.g. `resourceSpans[0].scopeSpans[0].spans[0].traceId`.
        path: String,
        /// What was wrong there.
        source: serde_json::Error,
    },
    /// A Zipkin span is invalid; the message names the span index and field.
    #[error("{0}")]
    InvalidZipkinSpan(String),
    /// The span store is full; retry after the delay.
    #[error("overloaded: {bound}; retry after {} ms", .retry_after.as_millis())]
    Overloaded {
        /// Suggested delay before a retry.
        retry_after: Duration,
        /// Which bound is reached, naming its setting.
        bound: &'static str,
    },
    /// The request bytes held by ingest requests being received and processed reached
    /// `[ingest] max_inflight_bytes`; retry after the delay.
    #[error(
        "too many request bytes in flight: [ingest] max_inflight_bytes ({limit}) are held \
         by requests being received and processed; retry after {} ms",
        .retry_after.as_millis()
    )]
    InflightBytesExhausted {
        /// The bound.
        limit: bytesize::ByteSize,
        /// Suggested delay before a retry.
        retry_after: Duration,
    },
    /// The request, encoded for the WAL, is larger than the whole WAL write queue
    /// (`store.max_queued_bytes`): it can never be accepted, however long the client
    /// waits, so no retry is advised. HTTP 413 / gRPC `RESOURCE_EXHAUSTED`.
    #[error(
        "request is larger than the whole WAL write queue (store.max_queued_bytes) once \
         encoded; send smaller batches or raise store.max_queued_bytes"
    )]
    LargerThanWriteQueue,
    /// The request's spans would repeat their resource and scope into more bytes than
    /// the write queue holds (the store's message says how many).
    #[error("{0}")]
    RepeatedTooLarge(String),
    /// The data directory's disk is below `store.min_free_disk`; retry after the delay.
    /// The message names the directory, its free bytes and the setting.
    #[error("{message}")]
    DiskFull {
        /// The store's message.
        message: String,
        /// Suggested delay before a retry.
        retry_after: Duration,
    },
    /// The span store cannot accept writes (shutting down, log not writable).
    #[error("span store unavailable")]
    Unavailable(#[source] meshtel_model::Error),
    /// A quota request (Check or Envoy RLS) is malformed; the message names the field.
    #[error("{0}")]
    InvalidQuotaRequest(String),
    /// Istio Mixer attributes that cannot be read (a word index that names no word, a
    /// newer global dictionary than meshtel's); the message says which.
    #[error("{0}")]
    InvalidMixerAttributes(String),
    /// A Prometheus metric could not be created or registered.
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The most characters of a request's value that an error message repeats.
pub const ECHO_MAX_CHARS: usize = 64;

/// The longest message [`shorten_quoted`] returns, in characters, however many values
/// it quotes.
const MESSAGE_MAX_CHARS: usize = 512;

/// `value` as an error message repeats it: quoted and escaped like `{:?}`, and when it
/// is longer than [`ECHO_MAX_CHARS`] characters cut there (on a character boundary),
/// with `…` and its whole length: `"aaaa…" (4000000 bytes)`.
pub fn echo(value: &str) -> Echo<'_> {
    Echo(value)
}

/// The [`fmt::Display`] of [`echo`].
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a>(&'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match prefix_chars(self.0, ECHO_MAX_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some(prefix) => {
                let quoted = format!("{prefix:?}");
                let open = quoted.strip_suffix('"').unwrap_or(&quoted);
                write!(f, "{open}…\" ({} bytes)", self.0.len())
            }
        }
    }
}

/// The first `max` characters of `text`, or `None` when it has no more than that.
fn prefix_chars(text: &str, max: usize) -> Option<&str> {
    text.char_indices().nth(max).map(|(end, _)| &text[..end])
}

/// A library's message that quotes values in double quotes or backticks (serde's
/// `invalid type: string "…", expected i32`) with each quoted value cut as [`echo`]
/// cuts one (the length given is the quoted text's), and the whole cut after
/// 512 characters.
pub fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_MAX_CHARS * 2));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = &rest[open..=open];
        out.push_str(&rest[..=open]);
        let inside = &rest[open + 1..];
        let close = closing_quote(inside, quote);
        let quoted = &inside[..close.unwrap_or(inside.len())];
        let cut = prefix_chars(quoted, ECHO_MAX_CHARS);
        match cut {
            None => out.push_str(quoted),
            Some(prefix) => {
                // Not ending inside an escape, which would swallow the closing quote.
                let trailing = prefix.len() - prefix.trim_end_matches('\\').len();
                out.push_str(&prefix[..prefix.len() - trailing % 2]);
                out.push('…');
            }
        }
        let Some(close) = close else {
            rest = "";
            break;
        };
        out.push_str(quote);
        if cut.is_some() {
            let _ = write!(out, " ({} bytes)", quoted.len());
        }
        rest = &inside[close + 1..];
    }
    out.push_str(rest);
    match prefix_chars(&out, MESSAGE_MAX_CHARS) {
        None => out,
        Some(prefix) => format!("{prefix}…"),
    }
}

/// Where the quote that `text` (just after an opening `quote`) ends: a backtick at the
/// next one, a double quote at the next one not escaped by a backslash.
fn closing_quote(text: &str, quote: &str) -> Option<usize> {
    if quote == "`" {
        return text.find('`');
    }
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(at),
            _ => {}
        }
    }
    None
}

/// Result with the collector's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<meshtel_model::Error> for Error {
    fn from(error: meshtel_model::Error) -> Self {
        use meshtel_model::Error as Store;
        match error {
            Store::DecodeRequest(message) => Error::DecodeOtlp(message),
            Store::TooManySpans { count, limit } => Error::TooManySpans { count, limit },
            // No wait makes room for it: permanent.
            Store::LargerThanQueue { .. } => Error::LargerThanWriteQueue,
            repeated @ Store::RepeatedTooLarge { .. } => {
                Error::RepeatedTooLarge(repeated.to_string())
            }
            Store::Overloaded { retry_after, bound } => Error::Overloaded { retry_after, bound },
            Store::DiskFull {
                message,
                retry_after,
            } => Error::DiskFull {
                message,
                retry_after,
            },
            other => Error::Unavailable(other),
        }
    }
}

impl Error {
    /// The protocol-neutral code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::RequestTooLarge { .. }
            | Error::LargerThanWriteQueue
            | Error::RepeatedTooLarge(_)
            | Error::TooLargeToParse { .. } => ErrorCode::TooLarge,
            Error::TooManySpans { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::UnsupportedEncoding(_)
            | Error::ReadBody(_)
            | Error::BodyTimeout(_)
            | Error::Decompress(_)
            | Error::DecodeProtobuf(_)
            | Error::DecodeOtlp(_)
            | Error::DecodeJson(_)
            | Error::DecodeJsonByContentType { .. }
            | Error::DecodeJsonField { .. }
            | Error::InvalidZipkinSpan(_)
            | Error::InvalidQuotaRequest(_)
            | Error::InvalidMixerAttributes(_) => ErrorCode::BadRequest,
            Error::Overloaded { .. }
            | Error::InflightBytesExhausted { .. }
            | Error::DiskFull { .. }
            | Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::InvalidConfig(_) | Error::Metrics(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status. Follows [`ErrorCode::http_status`], except that an unsupported
    /// media type is 415 as the OTLP/HTTP spec and the OpenTelemetry Collector answer,
    /// and a body that did not arrive in time is 408.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Error::UnsupportedMediaType { .. } => {
                return http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            }
            Error::BodyTimeout(_) => return http::StatusCode::REQUEST_TIMEOUT,
            _ => {}
        }
        http::StatusCode::from_u16(self.code().http_status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The delay a client should wait before retrying, when the error says so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Overloaded { retry_after, .. }
            | Error::InflightBytesExhausted { retry_after, .. }
            | Error::DiskFull { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The message a client may see: the error text, except for internal errors and
    /// store failures, whose details stay in our logs.
    pub fn client_message(&self) -> String {
        match self.code() {
            ErrorCode::Internal => "internal error".to_string(),
            _ => self.to_string(),
        }
    }

    /// The gRPC status. An overload carries a `google.rpc.RetryInfo` detail and says
    /// the delay in its message too.
    pub fn grpc_status(&self) -> tonic::Status {
        let code = self.code().grpc_code();
        let message = self.client_message();
        match self.retry_after() {
            Some(delay) => {
                let details = rpc::status_with_retry_info(code as i32, &message, delay);
                tonic::Status::with_details(code, message, details)
            }
            None => tonic::Status::new(code, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_protocol_codes_in_one_place() {
        let too_large = Error::RequestTooLarge { limit: 10 };
        assert_eq!(too_large.http_status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            too_large.grpc_status().code(),
            tonic::Code::ResourceExhausted
        );

        let too_many = Error::TooManySpans { count: 3, limit: 2 };
        assert_eq!(too_many.http_status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(too_many.grpc_status().code(), tonic::Code::InvalidArgument);
        assert!(too_many.to_string().contains("max_spans_per_request"));

        let media = Error::UnsupportedMediaType {
            media_type: "text/plain".into(),
            supported: "application/json",
        };
        assert_eq!(
            media.http_status(),
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn overload_is_retryable_with_a_delay() {
        let error = Error::from(meshtel_model::Error::Overloaded {
            retry_after: Duration::from_millis(1500),
            bound: "the head holds [store] max_head_rows spans",
        });
        assert_eq!(error.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            error.to_string(),
            "overloaded: the head holds [store] max_head_rows spans; retry after 1500 ms"
        );
        let status = error.grpc_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("1500 ms"), "{}", status.message());
        assert!(!status.details().is_empty());
    }

    #[test]
    fn a_disk_below_its_reserve_is_unavailable_with_the_stores_message() {
        let error = Error::from(meshtel_model::Error::DiskFull {
            message: "data directory /d has 1 MiB free, below store.min_free_disk".into(),
            retry_after: Duration::from_secs(5),
        });
        assert_eq!(error.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));
        let status = error.grpc_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("store.min_free_disk"),
            "{status:?}"
        );
        assert_eq!(
            rpc::retry_delay_from_status(status.details()),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_write_larger_than_the_queue_is_permanent_and_names_the_setting() {
        let error = Error::from(meshtel_model::Error::LargerThanQueue {
            queue_bytes: 1 << 20,
        });
        assert_eq!(error.http_status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.retry_after(), None);
        let status = error.grpc_status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.details().is_empty(), "no RetryInfo");
        assert!(
            status.message().contains("store.max_queued_bytes"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn echo_repeats_short_values_and_cuts_long_ones() {
        assert_eq!(echo("text/plain").to_string(), "\"text/plain\"");
        assert_eq!(echo("a\u{0}b").to_string(), "\"a\\0b\"");
        let long = "é".repeat(100);
        assert_eq!(
            echo(&long).to_string(),
            format!("\"{}…\" (200 bytes)", "é".repeat(ECHO_MAX_CHARS))
        );
        let error = Error::UnsupportedMediaType {
            media_type: "x".repeat(400_000),
            supported: "application/json",
        };
        assert!(error.to_string().len() < 200, "{error}");
    }

    #[test]
    fn shorten_quoted_cuts_each_quoted_value() {
        let long = "k".repeat(1000);
        let message = format!("invalid type: string \"{long}\", expected i32 at line 1");
        assert_eq!(
            shorten_quoted(&message),
            format!(
                "invalid type: string \"{}…\" (1000 bytes), expected i32 at line 1",
                &long[..ECHO_MAX_CHARS]
            )
        );
        let message = format!("unknown variant `{long}`, expected one of `a`, `b`");
        assert_eq!(
            shorten_quoted(&message),
            format!(
                "unknown variant `{}…` (1000 bytes), expected one of `a`, `b`",
                &long[..ECHO_MAX_CHARS]
            )
        );
        // An escape cut in half does not swallow the closing quote; short text stays.
        let escaped = format!("string \"{}\\\\{long}\" end", "q".repeat(63));
        let short = shorten_quoted(&escaped);
        assert!(short.ends_with("…\" (1065 bytes) end"), "{short}");
        assert_eq!(shorten_quoted("expected `,` or `]`"), "expected `,` or `]`");
        assert_eq!(shorten_quoted("unterminated \"abc"), "unterminated \"abc");
        assert!(shorten_quoted(&"z".repeat(10_000)).len() < 600);
    }

    #[test]
    fn store_failures_do_not_leak_details() {
        let error = Error::from(meshtel_model::Error::Unavailable(
            "disk /var/x is full".into(),
        ));
        assert_eq!(error.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(!error.client_message().contains("/var/x"));
    }
}
