//! The proxy's error vocabulary.
//!
//! [`Error`], the crate's one error type, says three kinds of things: what setting the
//! proxy up can fail with (configuration, mesh file, binding); why one request could
//! not be forwarded, turned into a `4xx`/`5xx` local reply with an Envoy response flag
//! in exactly one place, [`Error::status`], [`Error::response_flag`] and
//! [`Error::local_reply_message`], used by `forward::error_response`; and why the proxy
//! cut a response body short after its head had gone downstream, when no status can
//! be sent any more.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

/// Result of setting up or running the proxy.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What setting up or running the proxy, forwarding a request or relaying a response
/// body can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mesh file could not be read.
    #[error("reading mesh file {path}")]
    MeshRead {
        /// The mesh file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The mesh file is not valid YAML for the mesh schema.
    #[error("parsing mesh file {path}")]
    MeshParse {
        /// The mesh file.
        path: PathBuf,
        /// Why.
        #[source]
        source: yaml_serde::Error,
    },
    /// The mesh file parsed but describes an impossible mesh.
    #[error("invalid mesh file {path}: {reason}")]
    MeshInvalid {
        /// The mesh file.
        path: PathBuf,
        /// What is wrong, for the operator.
        reason: String,
    },
    /// The traffic rules directory does not load.
    #[error("loading traffic rules from {dir}")]
    Rules {
        /// The rules directory.
        dir: PathBuf,
        /// Every problem found.
        #[source]
        source: meshtel_model::Error,
    },
    /// A command-line or configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("binding the {listener} listener on {addr}")]
    Bind {
        /// `inbound`, `outbound` or `admin`.
        listener: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listeners file could not be written.
    #[error("writing listeners file {path}")]
    ListenersFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The collector endpoint is not a valid URI.
    #[error("invalid collector endpoint {endpoint}")]
    CollectorEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// Our own metrics could not be registered (a programming error: duplicate names).
    #[error("registering proxy metrics")]
    Metrics(#[from] prometheus::Error),
    /// A worker thread could not be started, or stopped serving on its own.
    #[error("worker {index}: {what}")]
    Worker {
        /// Which worker.
        index: usize,
        /// What failed.
        what: &'static str,
        /// Why, when the system said.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Some other I/O failure.
    #[error("i/o")]
    Io(#[from] std::io::Error),

    // Why one request could not be forwarded: turned into the local reply's status,
    // response flag and body in one place (`status`, `response_flag`,
    // `local_reply_message`).
    /// The `Host`/`:authority` names no service of the mesh (or none at all).
    #[error("no service in the mesh for host {host:?}")]
    UnknownService {
        /// The host as the app sent it.
        host: String,
    },
    /// The service exists but has no endpoint to send to.
    #[error("no healthy upstream for service {service}")]
    NoHealthyUpstream {
        /// The service FQDN.
        service: String,
    },
    /// The TCP connection to the upstream could not be established.
    #[error("connecting to upstream {upstream}")]
    UpstreamConnect {
        /// The endpoint address.
        upstream: String,
        /// Why.
        #[source]
        source: crate::pool::BoxError,
    },
    /// The upstream did not send response headers in time.
    #[error("upstream {upstream} timed out")]
    UpstreamTimeout {
        /// The endpoint address.
        upstream: String,
    },
    /// The upstream connection was reset or closed before a response.
    #[error("upstream {upstream} closed the connection")]
    UpstreamReset {
        /// The endpoint address.
        upstream: String,
        /// Why.
        #[source]
        source: crate::pool::BoxError,
    },
    /// The upstream's response could not be read as HTTP (a malformed status line or
    /// header, too many or too large headers): Envoy's upstream protocol error.
    #[error("upstream {upstream} sent a malformed response")]
    UpstreamProtocol {
        /// The endpoint address.
        upstream: String,
        /// What was wrong.
        #[source]
        source: crate::pool::BoxError,
    },
    /// A virtual service covers the host but none of its routes matches the request.
    #[error("no route of the virtual service for {host:?} matches")]
    NoRoute {
        /// The host as the app sent it.
        host: String,
    },
    /// The route names a destination (service or subset) that does not exist.
    #[error("no cluster for {cluster}")]
    ClusterNotFound {
        /// `host` or `host` + subset.
        cluster: String,
    },
    /// A connection-pool limit of the destination is reached (circuit breaking).
    #[error("circuit breaker of {cluster} open: {limit}")]
    Overflow {
        /// The destination cluster.
        cluster: String,
        /// Which limit.
        limit: &'static str,
    },
    /// The downstream's request body broke while being read (malformed chunks, the
    /// downstream gone mid-body), or a streamed body was asked for twice. The upstream
    /// is not blamed (no outlier feedback, no retry).
    #[error("reading the downstream request body")]
    DownstreamBody,
    /// The downstream's request body stopped arriving: idle for the body idle timeout,
    /// or still awaited when the request timeout ended. The upstream is not blamed.
    #[error("the downstream request body stopped arriving")]
    DownstreamTimeout,
    /// The request has more than one `Host` header line (RFC 9112 §3.2): refused, as
    /// the proxy and the app could each pick a different one.
    #[error("more than one Host header")]
    RepeatedHost,
    /// The request's `Host` (or absolute-form target authority) is not `host[:port]`
    /// (RFC 9112 §3.2).
    #[error("invalid Host header")]
    InvalidHost,
    /// An HTTP/1.1 request without a `Host` header or an absolute-form target (RFC
    /// 9112 §3.2: a server must answer 400).
    #[error("missing Host header")]
    MissingHost,
    /// An HTTP/1 request target in authority form (`GET svc:80`), which only
    /// `CONNECT` may use (RFC 9112 §3.2.3).
    #[error("authority-form request target without CONNECT")]
    AuthorityForm,
    /// The request path has an escaped NUL (`%00`), which Envoy's path normalization
    /// refuses.
    #[error("escaped NUL (%00) in the request path")]
    EscapedNul,
    /// An HTTP/2 request field value beginning or ending with a space or a tab, which
    /// RFC 9113 §8.2.1 makes a malformed request (HTTP/1.1's parser trims them): read
    /// as it is, the value would miss a match that the app, trimming it, would meet.
    #[error("the value of header {0} begins or ends with whitespace")]
    HeaderWhitespace(http::HeaderName),
    /// The request could not be rewritten for the upstream (bad URI parts).
    #[error("building the upstream request")]
    BadUpstreamRequest(#[from] http::Error),
    /// A `CONNECT` request: the proxy makes no tunnels (Envoy without a CONNECT route
    /// answers it 404).
    #[error("CONNECT is not proxied")]
    Connect,
    /// The request body has a transfer coding other than `chunked` (RFC 9112 §6.1: a
    /// server answers 501), which the proxy would otherwise pass on undeclared.
    #[error("unsupported transfer coding {0:?}")]
    TransferCoding(String),

    // Why the proxy ended a response body with an error, after its head had gone
    // downstream: the downstream sees the body cut short (an HTTP/1.1 connection
    // closed, an h2 stream reset), never a clean end.
    /// The upstream's trailers are larger than the proxy takes (flag `UPE`): the stream
    /// is reset rather than ended without them, which would lose a gRPC status.
    #[error("upstream {upstream} sent trailers of {bytes} bytes, over the {limit}-byte limit")]
    ResponseTrailersTooLarge {
        /// The endpoint address.
        upstream: String,
        /// Their HTTP/2 header-list size.
        bytes: usize,
        /// The limit.
        limit: u32,
    },
    /// The upstream sent nothing of its response body for the body idle timeout
    /// (Envoy's stream idle timeout; flag `SI`).
    #[error("upstream {upstream} sent no response body bytes for {idle:?}")]
    ResponseIdle {
        /// The endpoint address.
        upstream: String,
        /// The body idle timeout.
        idle: Duration,
    },
}

/// The variants of setting up or running the proxy, which are never a request's
/// outcome: one list for the matches of [`Error`]'s methods.
macro_rules! setup_errors {
    () => {
        Error::MeshRead { .. }
            | Error::MeshParse { .. }
            | Error::MeshInvalid { .. }
            | Error::Rules { .. }
            | Error::Config(_)
            | Error::Bind { .. }
            | Error::ListenersFile { .. }
            | Error::CollectorEndpoint { .. }
            | Error::Metrics(_)
            | Error::Worker { .. }
            | Error::Io(_)
    };
}

impl Error {
    /// The HTTP status the downstream gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::UnknownService { .. }
            | Error::NoHealthyUpstream { .. }
            | Error::UpstreamConnect { .. }
            | Error::UpstreamReset { .. }
            | Error::ClusterNotFound { .. }
            | Error::Overflow { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::NoRoute { .. } | Error::Connect => StatusCode::NOT_FOUND,
            Error::TransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            Error::DownstreamBody
            | Error::RepeatedHost
            | Error::InvalidHost
            | Error::MissingHost
            | Error::AuthorityForm
            | Error::EscapedNul
            | Error::HeaderWhitespace(_) => StatusCode::BAD_REQUEST,
            Error::DownstreamTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::UpstreamTimeout { .. } | Error::ResponseIdle { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::BadUpstreamRequest(_)
            | Error::UpstreamProtocol { .. }
            | Error::ResponseTrailersTooLarge { .. } => StatusCode::BAD_GATEWAY,
            // Setting up or running the proxy: never a request's outcome.
            setup_errors!() => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// True when the request's own sender is at fault (a malformed request, `DPE`; a
    /// body that stopped arriving; a `CONNECT`), not the upstream side the operator has
    /// to act on.
    pub fn is_downstream_fault(&self) -> bool {
        self.response_flag() == "DPE" || matches!(self, Error::DownstreamTimeout | Error::Connect)
    }

    /// The Envoy `%RESPONSE_FLAGS%` short code recorded for this failure.
    pub fn response_flag(&self) -> &'static str {
        match self {
            // No route / no healthy upstream: Envoy answers unknown hosts on a
            // sidecar's outbound with `UH` too once no cluster matches.
            Error::UnknownService { .. } | Error::NoHealthyUpstream { .. } => "UH",
            Error::UpstreamConnect { .. } => "UF",
            Error::UpstreamTimeout { .. } => "UT",
            Error::UpstreamReset { .. } => "UC",
            Error::NoRoute { .. } | Error::Connect => "NR",
            // Envoy's downstream protocol error: a malformed request.
            Error::DownstreamBody
            | Error::RepeatedHost
            | Error::InvalidHost
            | Error::MissingHost
            | Error::AuthorityForm
            | Error::EscapedNul
            | Error::HeaderWhitespace(_)
            | Error::TransferCoding(_) => "DPE",
            // Envoy's stream idle timeout, 408 while the request is incomplete.
            Error::DownstreamTimeout | Error::ResponseIdle { .. } => "SI",
            Error::ClusterNotFound { .. } => "NC",
            Error::Overflow { .. } => "UO",
            Error::BadUpstreamRequest(_)
            | Error::UpstreamProtocol { .. }
            | Error::ResponseTrailersTooLarge { .. } => "UPE",
            // Setting up or running the proxy: Envoy's "no flag".
            setup_errors!() => "-",
        }
    }

    /// The body of the proxy's own reply for this failure, in Envoy's words; a
    /// refused header is named (its name is a valid token, never the value).
    pub fn local_reply_message(&self) -> Cow<'static, str> {
        if let Error::HeaderWhitespace(name) = self {
            return Cow::Owned(format!("bad request: the value of header {name} begins or ends with whitespace"));
        }
        Cow::Borrowed(match self {
            Error::UnknownService { .. } | Error::NoHealthyUpstream { .. } => "no healthy upstream",
            Error::UpstreamConnect { .. } => "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            Error::UpstreamReset { .. } => "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            Error::UpstreamProtocol { .. } | Error::ResponseTrailersTooLarge { .. } => {
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
            }
            Error::UpstreamTimeout { .. } => "upstream request timeout",
            Error::BadUpstreamRequest(_) => "bad upstream request",
            Error::NoRoute { .. } | Error::Connect => "route not found",
            Error::TransferCoding(_) => "not implemented: transfer coding",
            Error::DownstreamBody => "bad request body",
            Error::RepeatedHost => "bad request: more than one Host header",
            Error::InvalidHost => "bad request: invalid Host header",
            Error::MissingHost => "bad request: missing Host header",
            Error::AuthorityForm => "bad request: authority-form target is for CONNECT only",
            Error::EscapedNul => "bad request: escaped NUL (%00) in the path",
            Error::HeaderWhitespace(_) => "bad request: a header value begins or ends with whitespace",
            Error::DownstreamTimeout | Error::ResponseIdle { .. } => "stream timeout",
            Error::ClusterNotFound { .. } => "cluster not found",
            Error::Overflow { .. } => "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            setup_errors!() => "internal error",
        })
    }
}
