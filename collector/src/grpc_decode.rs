//! Undecodable gRPC requests answered as bad input: tonic answers a request message that
//! is not valid protobuf with `INTERNAL` and "failed to decode Protobuf message" (and a
//! message cut short by the end of its stream, or flagged compressed without an
//! encoding, likewise), a code
//! that tells clients the server is broken and invites retries. Every service of the
//! collector's port (OTLP `Export`, Mixer `Check`/`Report`/`WatchQuotas`, Istio's
//! Mixer, Envoy `ShouldRateLimit`) answers `INVALID_ARGUMENT` instead, keeping tonic's
//! message. Likewise a message over the size bound, which tonic answers `OUT_OF_RANGE`,
//! is `RESOURCE_EXHAUSTED`, as the README says of every too-large request.
//!
//! Such calls never reach a handler, so nothing else counts them: the wrapper counts
//! them in [`UnreadableCalls`] (`meshtel_grpc_calls_unreadable_total`) and logs them
//! at most once per 10 s, naming the method and what tonic said.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use meshtel_model::log_window::Throttled;
use tonic::server::NamedService;
use tracing::info;

/// How tonic's messages for a request it could not read begin: not protobuf, a
/// message cut short by the end of its stream, a compressed flag without an encoding.
const DECODE_ERRORS: [&str; 3] = [
    "failed to decode",
    "Unexpected EOF decoding stream",
    "protocol error: received message with compressed-flag",
];

/// Rewrites a trailers-only `INTERNAL` "failed to decode ..." answer (the `grpc-status`
/// and `grpc-message` headers tonic writes when it cannot decode the request) to
/// `INVALID_ARGUMENT`, and says whether it did; any other answer is left alone.
pub(crate) fn decode_error_to_invalid_argument(headers: &mut http::HeaderMap) -> bool {
    let internal = (tonic::Code::Internal as i32).to_string();
    let is_internal = headers
        .get("grpc-status")
        .is_some_and(|value| value.as_bytes() == internal.as_bytes());
    let is_decode_error = headers.get("grpc-message").is_some_and(|m| {
        // grpc-message is percent-encoded: a space may come as `%20`.
        let m = String::from_utf8_lossy(m.as_bytes()).replace("%20", " ");
        DECODE_ERRORS.iter().any(|prefix| m.starts_with(prefix))
    });
    if is_internal && is_decode_error {
        let invalid = (tonic::Code::InvalidArgument as i32).to_string();
        if let Ok(value) = http::HeaderValue::from_str(&invalid) {
            headers.insert("grpc-status", value);
        }
    }
    is_internal && is_decode_error
}

/// Tonic refuses a message over `max_decoding_message_size` before any handler runs,
/// with a trailers-only response whose `grpc-status` header is `OUT_OF_RANGE` (11).
/// Our handlers never answer that code, so every such header means "too large". Says
/// whether it rewrote one.
pub(crate) fn out_of_range_to_resource_exhausted(headers: &mut http::HeaderMap) -> bool {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    let too_large = headers
        .get("grpc-status")
        .is_some_and(|value| value.as_bytes() == out_of_range.as_bytes());
    if too_large {
        let exhausted = (tonic::Code::ResourceExhausted as i32).to_string();
        if let Ok(value) = http::HeaderValue::from_str(&exhausted) {
            headers.insert("grpc-status", value);
        }
    }
    too_large
}

/// Why a call was refused before its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// The message is not protobuf of the method's type (or cut short): `INVALID_ARGUMENT`.
    Undecodable,
    /// The message is over the method's size bound: `RESOURCE_EXHAUSTED`.
    TooLarge,
}

impl Unreadable {
    /// The `reason` label of `meshtel_grpc_calls_unreadable_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreadable::Undecodable => "undecodable",
            Unreadable::TooLarge => "too_large",
        }
    }

    /// Rewrites an answer tonic gave a message it could not read (see the module
    /// documentation), and says why it could not, if it could not.
    fn rewrite(headers: &mut http::HeaderMap) -> Option<Unreadable> {
        if out_of_range_to_resource_exhausted(headers) {
            Some(Unreadable::TooLarge)
        } else if decode_error_to_invalid_argument(headers) {
            Some(Unreadable::Undecodable)
        } else {
            None
        }
    }
}

/// Calls refused because their message could not be read, counted by reason and
/// logged at most once per 10 s; cheap to clone, shared by the services of one port.
#[derive(Clone)]
pub struct UnreadableCalls {
    undecodable: Arc<AtomicU64>,
    too_large: Arc<AtomicU64>,
    log: Arc<Throttled>,
}

impl std::fmt::Debug for UnreadableCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnreadableCalls")
            .field("undecodable", &self.count(Unreadable::Undecodable))
            .field("too_large", &self.count(Unreadable::TooLarge))
            .finish()
    }
}

impl Default for UnreadableCalls {
    fn default() -> Self {
        // A client sending the wrong messages repeats without bound: its line is the
        // client's to act on, at most once per interval.
        let log = Throttled::new(|refused, last: &str| {
            info!(
                refused,
                last,
                at_most_every = "10s",
                "gRPC calls refused before their handler, since the last line: a message was not the method's protobuf or was over its size bound"
            );
        });
        UnreadableCalls {
            undecodable: Arc::default(),
            too_large: Arc::default(),
            log,
        }
    }
}

impl UnreadableCalls {
    /// Calls refused for `reason` since start.
    pub fn count(&self, reason: Unreadable) -> u64 {
        match reason {
            Unreadable::Undecodable => self.undecodable.load(Ordering::Relaxed),
            Unreadable::TooLarge => self.too_large.load(Ordering::Relaxed),
        }
    }

    /// Counts and logs one refused call of `method` (a request path) whose answer has
    /// `headers` (or trailers).
    fn note(&self, method: &str, reason: Unreadable, headers: &http::HeaderMap) {
        let counter = match reason {
            Unreadable::Undecodable => &self.undecodable,
            Unreadable::TooLarge => &self.too_large,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let message = headers
            .get("grpc-message")
            .map(|m| String::from_utf8_lossy(m.as_bytes()).replace("%20", " "))
            .unwrap_or_default();
        self.log.note(format_args!(
            "{method:.96} {}: {message:.160}",
            reason.as_str()
        ));
    }
}

/// Rewrites tonic's `grpc-message` of a request over the decoding limit ("Error,
/// decoded message length too large: found N bytes, the limit is: L bytes", sent
/// percent-encoded), or over it once decompressed ("Error decompressing: size limit, of
/// L bytes, exceeded"), to one naming `setting`, the option that sets the limit, as
/// the HTTP ports' 413 does; any other answer is left alone.
pub(crate) fn name_the_size_limit(headers: &mut http::HeaderMap, setting: &str) {
    let Some(message) = headers.get("grpc-message") else {
        return;
    };
    let message = String::from_utf8_lossy(message.as_bytes())
        .replace("%20", " ")
        .replace("%2C", ",");
    let number_after = |marker: &str| -> Option<u64> {
        let rest = &message[message.find(marker)? + marker.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let named = if message.contains("decoded message length too large") {
        let (Some(found), Some(limit)) = (number_after("found"), number_after("limit is:")) else {
            return;
        };
        format!("request of {found} bytes is larger than {setting} ({limit} bytes)")
    } else if message.contains("Error decompressing") {
        // "Error decompressing: size limit, of 65536 bytes, exceeded"
        let Some(limit) = number_after("size limit, of") else {
            return;
        };
        format!("request is larger than {setting} ({limit} bytes) once decompressed")
    } else {
        return;
    };
    // Printable ASCII without `%` needs no percent-encoding in `grpc-message`.
    if let Ok(value) = http::HeaderValue::from_str(&named) {
        headers.insert("grpc-message", value);
    }
}

/// A tonic service whose undecodable requests get `INVALID_ARGUMENT` (see the module
/// documentation); add it to a `tonic::transport::Server` as the service itself.
#[derive(Debug, Clone)]
pub struct InvalidArgumentOnDecodeError<S> {
    inner: S,
    unreadable: UnreadableCalls,
}

impl<S> InvalidArgumentOnDecodeError<S> {
    /// Wraps `inner`, counting its unreadable calls on their own.
    pub fn new(inner: S) -> Self {
        InvalidArgumentOnDecodeError {
            inner,
            unreadable: UnreadableCalls::default(),
        }
    }

    /// Counts the calls refused unread in `unreadable` (shared with the port's other
    /// services) instead.
    pub fn counted_in(mut self, unreadable: &UnreadableCalls) -> Self {
        self.unreadable = unreadable.clone();
        self
    }
}

impl<S: NamedService> NamedService for InvalidArgumentOnDecodeError<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for InvalidArgumentOnDecodeError<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method: Arc<str> = Arc::from(request.uri().path());
        let answer = self.inner.call(request);
        let unreadable = self.unreadable.clone();
        Box::pin(async move {
            let mut response = answer.await?;
            if let Some(reason) = Unreadable::rewrite(response.headers_mut()) {
                unreadable.note(&method, reason, response.headers());
            }
            // A streaming call (Report) meets an undecodable message after its
            // headers went out: the status is in the trailers.
            Ok(response.map(|body| {
                tonic::body::Body::new(http_body_util::BodyExt::map_frame(
                    body,
                    move |mut frame| {
                        if let Some(trailers) = frame.trailers_mut()
                            && let Some(reason) = Unreadable::rewrite(trailers)
                        {
                            unreadable.note(&method, reason, trailers);
                        }
                        frame
                    },
                ))
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_too_large_message_names_the_setting() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%20244783%20bytes,%20the%20limit%20is:%2065536%20bytes",
            ),
        );
        name_the_size_limit(&mut headers, "max_request_bytes");
        assert_eq!(
            headers["grpc-message"],
            "request of 244783 bytes is larger than max_request_bytes (65536 bytes)"
        );
        let mut gzip = http::HeaderMap::new();
        gzip.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "Error%20decompressing:%20size%20limit,%20of%2065536%20bytes,%20exceeded",
            ),
        );
        name_the_size_limit(&mut gzip, "max_request_bytes");
        assert_eq!(
            gzip["grpc-message"],
            "request is larger than max_request_bytes (65536 bytes) once decompressed"
        );
        let mut other = http::HeaderMap::new();
        other.insert("grpc-message", http::HeaderValue::from_static("boom"));
        name_the_size_limit(&mut other, "max_request_bytes");
        assert_eq!(other["grpc-message"], "boom");
    }

    #[test]
    fn rewrites_only_out_of_range() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("11"));
        out_of_range_to_resource_exhausted(&mut headers);
        assert_eq!(headers["grpc-status"], "8");
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        out_of_range_to_resource_exhausted(&mut headers);
        assert_eq!(headers["grpc-status"], "3");
    }

    #[test]
    fn rewrites_decode_errors_only() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("failed%20to%20decode%20Protobuf%20message"),
        );
        decode_error_to_invalid_argument(&mut headers);
        assert_eq!(headers["grpc-status"], "3");
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("disk on fire"),
        );
        decode_error_to_invalid_argument(&mut headers);
        assert_eq!(headers["grpc-status"], "13");
    }
}
