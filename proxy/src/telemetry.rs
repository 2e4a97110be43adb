//! What the proxy learns about one request, and the request record and span it
//! becomes once the response body has ended.
//!
//! An [`Exchange`] is started when the request arrives, filled in by the pipeline
//! stages (identity, trace context, routing, the response head), carried inside the
//! response body, and finished exactly once when that body ends, fails or is dropped
//! (see `body::ResponseBody`). Finishing submits the record and, when sampled, the
//! span: both `try_send`, so reporting never delays the request.
//!
//! What an exchange holds it mostly shares rather than copies: identities, service
//! names and upstream addresses are `Arc`s of the routing table's and the proxy's own,
//! header values are the request's (reference-counted bytes), and the record is
//! written straight from the exchange into its encoded `RequestRecord` message. A
//! forwarded request used to allocate about 26 times in the proxy, a dozen of them
//! strings copied into the record and freed again once it was encoded.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Version};
use meshtel_model::mixer::Reporter;
use meshtel_model::otlp::trace::v1::{Span, Status, span, status};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::body::{BodyFault, BodyProgress};
use crate::mesh::{ServiceNames, WorkloadIdentity};
use crate::report::{ReportQueue, unix_nanos};
use crate::spans::{SpanQueue, int_attribute, string_attribute};
use crate::stats::Direction;
use crate::trace_context::SpanContext;

/// What [`Exchange::source`] and [`Exchange::destination`] give when unknown.
static UNKNOWN_WORKLOAD: WorkloadIdentity = WorkloadIdentity::UNKNOWN;

/// Envoy's order of `%RESPONSE_FLAGS%` short codes.
const FLAG_ORDER: [&str; 29] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE",
    "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
];

/// Why a request's `Host` is refused (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFault {
    /// More than one `Host` header line.
    Repeated,
    /// A `Host` (or absolute-form target authority) that is not `host[:port]`.
    Invalid,
    /// An HTTP/1.1 request with neither a `Host` nor an absolute-form target.
    Missing,
}

/// Whether `value` can be a `Host`: `uri-host [":" port]` (RFC 3986 reg-name, IPv4 or
/// IP-literal characters), possibly empty. Also proves it visible ASCII.
fn is_valid_host(value: &[u8]) -> bool {
    value.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes [`is_valid_host`] accepts, as a table: one load per byte on every request.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'[' | b']');
        b += 1;
    }
    table
};

/// Everything known about one request so far.
#[derive(Debug)]
pub struct Exchange {
    /// Which listener it came through.
    pub direction: Direction,
    started: Instant,
    start_unix_nano: u64,
    method: Method,
    path_and_query: PathAndQuery,
    http_version: &'static str,
    /// `grpc` or `http` (gRPC-Web is `http`); see [`is_grpc_content_type`].
    pub protocol: &'static str,
    /// `Host`/`:authority` as received, or an HTTP/1 absolute-form target's authority
    /// (visible ASCII; see [`Exchange::authority`]).
    authority: HeaderValue,
    /// What is wrong with the request's `Host`, if anything.
    host_fault: Option<HostFault>,
    user_agent: Option<HeaderValue>,
    request_header_bytes: u64,
    /// The request was refused before its head could be read: its method and path are
    /// unknown, and recorded empty.
    head_unread: bool,
    /// Request body bytes and state, noted by the request body as it is read; `None`
    /// until a body is read (most requests have none).
    request_body: Option<Arc<BodyProgress>>,
    /// The request came with a body (not known to be empty when it arrived).
    body_pending: bool,
    /// The calling workload; `None` when unknown.
    pub source: Option<Arc<WorkloadIdentity>>,
    /// The called workload; `None` when unknown.
    pub destination: Option<Arc<WorkloadIdentity>>,
    /// The calling workload's cluster id; `None` when unknown.
    pub source_cluster: Option<Arc<str>>,
    /// The called workload's cluster id; `None` when unknown.
    pub destination_cluster: Option<Arc<str>>,
    /// Destination service FQDN, short name and namespace; `None` when unknown.
    pub destination_service: Option<Arc<ServiceNames>>,
    /// `x-request-id` of the request.
    pub request_id: Option<HeaderValue>,
    /// The proxy's span for this request.
    pub span: Option<SpanContext>,
    /// `tracestate` as received, passed into the span.
    pub trace_state: String,
    /// The endpoint the request was sent to; `None` until one is picked.
    pub upstream_address: Option<Arc<str>>,
    /// HTTP status sent downstream; 0 until a response head exists, and when none
    /// reached the downstream (its body broke before hyper wrote the head).
    pub response_code: u16,
    /// gRPC status from response headers (trailers-only) or trailers.
    pub grpc_status: Option<u32>,
    /// Envoy response flags, comma separated.
    pub response_flags: String,
    /// Size of the response head.
    pub response_header_bytes: u64,
    /// Upstream attempts made (retries + 1; 0 for local replies).
    pub attempts: u32,
    /// The cluster the request was sent to (`fqdn` or `fqdn|subset`).
    pub upstream_cluster: String,
    /// Cluster slots (pool limits, endpoint load) held until the response ends.
    pub upstream_hold: Option<crate::routing::cluster::UpstreamHold>,
    abandoned_to: Option<Arc<crate::forward::ProxyContext>>,
}

impl Exchange {
    /// Starts the clock on a request that just arrived.
    pub fn start<B>(direction: Direction, request: &Request<B>) -> Exchange {
        // One pass over the headers: their size, and the first value of the three read
        // here (each lookup by name would hash it).
        let (mut host, mut hosts, mut content_type, mut user_agent, mut header_bytes) = (None, 0u32, None, None, 0);
        for (name, value) in request.headers() {
            // The caller's proxy's identity headers are the mesh's, not the request's:
            // the inbound proxy removes them before the app, as Istio's metadata
            // exchange does, so the two reporters count the same request size.
            if !name.as_str().starts_with(crate::forward::peer::PEER_PREFIX) {
                header_bytes += (name.as_str().len() + value.len() + 4) as u64;
            }
            if name == HOST {
                hosts += 1;
                host.get_or_insert(value);
            } else if name == CONTENT_TYPE {
                content_type.get_or_insert(value);
            } else if name == USER_AGENT {
                user_agent.get_or_insert(value);
            }
        }
        let is_grpc = content_type.is_some_and(|v| is_grpc_content_type(v.as_bytes()));
        let target = || request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        // An HTTP/1 absolute-form target (`GET http://reviews/ HTTP/1.1`) names the host,
        // whatever `Host` says (RFC 9112 §3.2.2). Otherwise `Host` first: an h2c app that
        // dials the outbound listener directly can only name the service there (its
        // `:authority` is the listener's address).
        let absolute = request.version() != Version::HTTP_2 && request.uri().authority().is_some();
        let host_valid = host.is_none_or(|h| is_valid_host(h.as_bytes()));
        let authority = if absolute || !host_valid { target() } else { host.cloned().or_else(target) };
        let authority = authority.unwrap_or_else(|| HeaderValue::from_static(""));
        // RFC 9112 §3.2: one `Host` line, a valid `host[:port]` (a target or an HTTP/2
        // `:authority` naming userinfo is no better, RFC 9110 §4.2.4, RFC 9113
        // §8.3.1), and an HTTP/1.1 request without one
        // is a bad request (HTTP/1.0 predates `Host`; an absolute-form target names it).
        let host_fault = if hosts > 1 {
            Some(HostFault::Repeated)
        } else if !host_valid || ((absolute || host.is_none()) && !is_valid_host(authority.as_bytes())) {
            Some(HostFault::Invalid)
        } else if hosts == 0 && !absolute && request.version() == Version::HTTP_11 {
            Some(HostFault::Missing)
        } else {
            None
        };
        let path_and_query = request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        // (The path as received; `take_path` replaces it with the normalized one.)
        Exchange {
            direction,
            started: Instant::now(),
            start_unix_nano: unix_nanos(SystemTime::now()),
            method: request.method().clone(),
            request_header_bytes: (request.method().as_str().len() + path_and_query.as_str().len() + 12) as u64 + header_bytes,
            path_and_query,
            http_version: match request.version() {
                Version::HTTP_2 => "2",
                Version::HTTP_10 => "1.0",
                Version::HTTP_3 => "3",
                _ => "1.1",
            },
            protocol: if is_grpc { "grpc" } else { "http" },
            authority,
            host_fault,
            user_agent: user_agent.cloned(),
            head_unread: false,
            request_body: None,
            body_pending: false,
            source: None,
            destination: None,
            source_cluster: None,
            destination_cluster: None,
            destination_service: None,
            request_id: None,
            span: None,
            trace_state: String::new(),
            upstream_address: None,
            response_code: 0,
            grpc_status: None,
            response_flags: String::new(),
            response_header_bytes: 0,
            attempts: 0,
            upstream_cluster: String::new(),
            upstream_hold: None,
            abandoned_to: None,
        }
    }

    /// A request hyper's HTTP/1.1 parser refused, answering `status` itself (a malformed
    /// line or header: 400; a head over the limits: 431; a target over hyper's: 414):
    /// flag `DPE`, method and path unknown (recorded empty, as Envoy logs `-`), no span.
    pub fn refused_head(direction: Direction, status: u16) -> Exchange {
        let mut exchange = Exchange::start(direction, &Request::new(()));
        exchange.head_unread = true;
        exchange.request_header_bytes = 0;
        exchange.response_code = status;
        exchange.add_flag("DPE");
        exchange
    }

    /// Adds an Envoy response flag, keeping Envoy's order (`UF,URX`, `UT,DI`) and no
    /// duplicates.
    pub fn add_flag(&mut self, flag: &str) {
        if flag.is_empty() || self.response_flags.split(',').any(|f| f == flag) {
            return;
        }
        if self.response_flags.is_empty() {
            self.response_flags.push_str(flag);
            return;
        }
        let mut flags: Vec<&str> = self.response_flags.split(',').chain(std::iter::once(flag)).collect();
        flags.sort_by_key(|f| FLAG_ORDER.iter().position(|known| known == f).unwrap_or(FLAG_ORDER.len()));
        self.response_flags = flags.join(",");
    }

    /// Whether the request came over HTTP/1 (where a connection is closed by a
    /// `Connection: close` answer, a header HTTP/2 forbids).
    pub fn is_http1(&self) -> bool {
        matches!(self.http_version, "1.1" | "1.0")
    }

    /// Whether the request is a gRPC call (its content type is gRPC's, not gRPC-Web's):
    /// it gets gRPC-shaped local replies and a gRPC status in its record and span.
    pub fn is_grpc(&self) -> bool {
        self.protocol == "grpc"
    }

    /// Whether the request is a gRPC call over HTTP/2, the only way gRPC travels: such
    /// a call gets gRPC's timeouts ([`crate::forward`]). A gRPC content type over
    /// HTTP/1 keeps plain HTTP's, so the header alone cannot lift them.
    pub fn is_h2_grpc(&self) -> bool {
        self.is_grpc() && self.http_version == "2"
    }

    /// Notes the response head about to be sent downstream.
    pub fn response_head(&mut self, status: http::StatusCode, headers: &HeaderMap) {
        self.response_code = status.as_u16();
        self.response_header_bytes = 17 + header_bytes(headers);
        if self.is_grpc() {
            self.grpc_status = grpc_status(headers).or(self.grpc_status);
        }
    }

    /// Reports this exchange (flag `DC`, no response) if it is dropped before it
    /// finishes: the downstream went away while the request was still being handled,
    /// e.g. a caller's per-try timeout. Without this such attempts would vanish from
    /// metrics and traces.
    pub fn report_if_abandoned(&mut self, context: Arc<crate::forward::ProxyContext>) {
        self.abandoned_to = Some(context);
    }

    /// `Host`/`:authority` as received (`Host` first: an h2c app that dials the
    /// outbound listener directly can only name the service there).
    pub fn authority(&self) -> &str {
        self.authority.to_str().unwrap_or_default()
    }

    /// Reports the path and query of `uri`, the request as normalized for routing,
    /// quota matching and the upstream, instead of the one received: spans and
    /// records then show the path the rules saw (`/admin` for `/x/../admin`).
    pub fn take_path(&mut self, uri: &http::Uri) {
        if let Some(path) = uri.path_and_query()
            && *path != self.path_and_query
        {
            self.path_and_query = path.clone();
        }
    }

    /// [`Exchange::authority`] as a header value.
    pub fn authority_header(&self) -> &HeaderValue {
        &self.authority
    }

    /// What is wrong with the request's `Host` (RFC 9112 §3.2), if anything.
    pub fn host_fault(&self) -> Option<HostFault> {
        self.host_fault
    }

    /// Where the request body's bytes and state are noted as it is read; `None` when
    /// `body` is known to be empty.
    pub fn body_progress(&mut self, body: &impl hyper::body::Body) -> Option<Arc<BodyProgress>> {
        if body.is_end_stream() {
            return None;
        }
        Some(self.request_body.get_or_insert_with(Arc::default).clone())
    }

    /// Notes whether the request arrived with a body to read (`body` not known empty).
    pub fn note_request_body(&mut self, body: &impl hyper::body::Body) {
        self.body_pending = !body.is_end_stream();
    }

    /// Whether the request had a body that has not all been read (nor broke): an
    /// HTTP/1.1 connection cannot take the next request until it is.
    pub fn request_body_unread(&self) -> bool {
        match &self.request_body {
            Some(progress) => progress.finished_at().is_none(),
            None => self.body_pending,
        }
    }

    /// The request body's progress, when it has a body being read.
    pub fn request_body_progress(&self) -> Option<Arc<BodyProgress>> {
        self.request_body.clone()
    }

    /// Counts request body bytes sent upstream in one piece.
    pub fn add_request_body_bytes(&mut self, bytes: u64) {
        self.request_body.get_or_insert_with(Arc::default).add_bytes(bytes);
    }

    /// Whether the request body broke or stalled (see [`BodyProgress::fault`]): the
    /// downstream's fault, not the upstream's.
    pub fn request_body_fault(&self, timed_out: bool) -> Option<BodyFault> {
        self.request_body.as_ref().and_then(|progress| progress.fault(timed_out))
    }

    /// The calling workload (all fields empty when unknown).
    pub fn source(&self) -> &WorkloadIdentity {
        self.source.as_deref().unwrap_or(&UNKNOWN_WORKLOAD)
    }

    /// The called workload (all fields empty when unknown).
    pub fn destination(&self) -> &WorkloadIdentity {
        self.destination.as_deref().unwrap_or(&UNKNOWN_WORKLOAD)
    }

    /// The endpoint the request was sent to; empty until one is picked.
    pub fn upstream_address(&self) -> &str {
        self.upstream_address.as_deref().unwrap_or_default()
    }

    /// Destination service FQDN, short name and namespace (empty when unknown).
    fn service(&self) -> (&str, &str, &str) {
        match self.destination_service.as_deref() {
            Some((fqdn, name, namespace)) => (fqdn, name, namespace),
            None => ("", "", ""),
        }
    }

    /// Submits the request record and, when sampled, the span.
    pub fn finish(mut self, response_body_bytes: u64, reports: &ReportQueue, spans: &SpanQueue) {
        self.abandoned_to = None;
        self.report(response_body_bytes, reports, spans);
    }

    fn report(&mut self, response_body_bytes: u64, reports: &ReportQueue, spans: &SpanQueue) {
        let duration = self.started.elapsed();
        let sampled_span = self.span.filter(|s| s.sampled);
        if let Some(context) = sampled_span {
            spans.submit(self.span_of(context, self.start_unix_nano + duration.as_nanos() as u64, response_body_bytes));
        }
        let trace_id = sampled_span.map(|s| s.trace_id);
        reports.submit(|| self.encode_record(duration, response_body_bytes, trace_id.as_ref()));
    }

    /// The `RequestRecord` message of this exchange, written field by field in the
    /// order prost writes them (proto3: fields at their default are left out; the two
    /// workloads are always present, as `Some` of a message).
    fn encode_record(&self, duration: Duration, response_body_bytes: u64, trace_id: Option<&[u8; 16]>) -> Vec<u8> {
        let (service_fqdn, service_name, service_namespace) = self.service();
        let (source, destination) = (self.source(), self.destination());
        let source_cluster = self.source_cluster.as_deref().unwrap_or_default();
        let destination_cluster = self.destination_cluster.as_deref().unwrap_or_default();
        let reporter = match self.direction {
            Direction::Inbound => Reporter::Destination,
            Direction::Outbound => Reporter::Source,
        };
        // No mTLS between meshtel proxies: inbound knows the connection is plain,
        // outbound leaves it unknown (mesh.md §1.3).
        let security_policy = match self.direction {
            Direction::Inbound => "none",
            Direction::Outbound => "",
        };
        let (method, path) = if self.head_unread { ("", "") } else { (self.method.as_str(), self.path_and_query.as_str()) };
        let strings = [
            service_fqdn,
            service_name,
            service_namespace,
            method,
            path,
            self.protocol,
            &self.response_flags,
            security_policy,
        ];
        let (source_len, destination_len) =
            (workload_len(source, source_cluster), workload_len(destination, destination_cluster));
        let capacity = 64
            + source_len
            + destination_len
            + strings.iter().map(|s| s.len() + 2).sum::<usize>()
            + trace_id.map_or(0, |_| 18);
        let mut out = Vec::with_capacity(capacity);
        let buf = &mut out;
        put_varint(buf, 1, reporter as u64);
        put_workload(buf, 2, source, source_cluster, source_len);
        put_workload(buf, 3, destination, destination_cluster, destination_len);
        put_str(buf, 4, service_fqdn);
        put_str(buf, 5, service_name);
        put_str(buf, 6, service_namespace);
        put_str(buf, 7, method);
        put_str(buf, 8, path);
        put_str(buf, 9, self.protocol);
        put_varint(buf, 10, u64::from(self.response_code));
        if self.is_grpc() {
            // `optional`: written when set, zero (OK) included.
            encode_key(11, WireType::Varint, buf);
            encode_varint(u64::from(self.grpc_status.unwrap_or(2)), buf);
        }
        put_str(buf, 12, &self.response_flags);
        if self.start_unix_nano != 0 {
            encode_key(13, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&self.start_unix_nano.to_le_bytes());
        }
        put_varint(buf, 14, duration.as_nanos() as u64);
        let body_bytes = self.request_body.as_ref().map_or(0, |progress| progress.bytes());
        put_varint(buf, 15, self.request_header_bytes + body_bytes);
        put_varint(buf, 16, self.response_header_bytes + response_body_bytes);
        if let Some(trace_id) = trace_id {
            put_bytes(buf, 17, trace_id);
        }
        put_str(buf, 18, security_policy);
        out
    }

    fn span_of(&self, context: SpanContext, end_unix_nano: u64, response_body_bytes: u64) -> Span {
        let (_, service_name, _) = self.service();
        let (kind, peer_service) = match self.direction {
            Direction::Inbound => (span::SpanKind::Server, self.source().app.as_str()),
            Direction::Outbound => (span::SpanKind::Client, service_name),
        };
        let (path, query) = (self.path_and_query.path(), self.path_and_query.query());
        let authority = self.authority();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port.parse::<i64>().ok()),
            _ => (authority, None),
        };
        // An IPv6 literal without its brackets, as the conventions write addresses.
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        // A method the conventions do not know is `_OTHER`, its own text kept beside:
        // callers cannot coin operation names.
        let method = self.method.as_str();
        let known_method = matches!(method, "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" | "QUERY");
        let mut attributes = vec![
            string_attribute("http.request.method", if known_method { method } else { "_OTHER" }.to_owned()),
            string_attribute("url.path", path.to_owned()),
            string_attribute("url.scheme", "http".to_owned()),
            string_attribute("server.address", host.to_owned()),
            string_attribute("network.protocol.name", "http".to_owned()),
            string_attribute("network.protocol.version", self.http_version.to_owned()),
            string_attribute("guid:x-request-id", header_text(self.request_id.as_ref())),
        ];
        if !known_method {
            attributes.push(string_attribute("http.request.method_original", method.to_owned()));
        }
        // Left out when no response was sent (the conventions' "if one was received").
        if self.response_code != 0 {
            attributes.push(int_attribute("http.response.status_code", i64::from(self.response_code)));
        }
        let query = query.map(redact_query);
        if let Some(query) = &query {
            attributes.push(string_attribute("url.query", query.clone().into_owned()));
        }
        match (port, kind) {
            (Some(port), _) => attributes.push(int_attribute("server.port", port)),
            // Required on client spans: the scheme's default when the Host names none.
            (None, span::SpanKind::Client) => attributes.push(int_attribute("server.port", 80)),
            (None, _) => {}
        }
        if kind == span::SpanKind::Client {
            let full = match &query {
                Some(query) => format!("http://{authority}{path}?{query}"),
                None => format!("http://{authority}{path}"),
            };
            attributes.push(string_attribute("url.full", full));
        }
        // Body bytes as they crossed the proxy (it never re-encodes a body); the
        // request's only when it had one, the response's when one was sent.
        let size = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        if let Some(progress) = &self.request_body {
            attributes.push(int_attribute("http.request.body.size", size(progress.bytes())));
        }
        if self.response_code != 0 {
            attributes.push(int_attribute("http.response.body.size", size(response_body_bytes)));
        }
        if !peer_service.is_empty() {
            attributes.push(string_attribute("peer.service", peer_service.to_owned()));
        }
        if let Some(agent) = &self.user_agent {
            attributes.push(string_attribute("user_agent.original", header_text(Some(agent))));
        }
        if !self.upstream_address().is_empty() {
            attributes.push(string_attribute("upstream.address", self.upstream_address().to_owned()));
        }
        if !self.response_flags.is_empty() {
            attributes.push(string_attribute("response_flags", self.response_flags.clone()));
        }
        if !self.upstream_cluster.is_empty() {
            attributes.push(string_attribute("upstream_cluster", self.upstream_cluster.clone()));
        } else if self.direction == Direction::Inbound
            && let Some((_, port)) = self.upstream_address().rsplit_once(':')
        {
            // Istio's name of the cluster of the local app: `inbound|<port>||`.
            attributes.push(string_attribute("upstream_cluster", format!("inbound|{port}||")));
        }
        if self.attempts > 1 {
            attributes.push(int_attribute("upstream.attempts", i64::from(self.attempts)));
        }
        // A gRPC call that ended without a status (its stream broken, cut idle or given
        // up on after its head) has Istio's default, 2 (UNKNOWN), as its record has.
        let grpc_status = self.is_grpc().then(|| self.grpc_status.unwrap_or(2));
        if let Some(grpc) = grpc_status.filter(|_| self.response_code != 0 || self.grpc_status.is_some()) {
            attributes.push(int_attribute("rpc.grpc.status_code", i64::from(grpc)));
        }
        let own = match self.direction {
            Direction::Inbound => self.destination(),
            Direction::Outbound => self.source(),
        };
        attributes.push(string_attribute("istio.namespace", own.namespace.clone()));
        // Server spans fail on 5xx only (the caller's fault otherwise), client spans on
        // any 4xx/5xx, both when no response was sent, as the HTTP semantic conventions
        // say (and Envoy: a flag on an answered request, `DI` or `RL` at the callee, is
        // no error of its own). A gRPC call fails on a status other than OK at the
        // client; at the server, on the statuses that are the server's fault (the RPC
        // conventions: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
        // UNAVAILABLE, DATA_LOSS).
        let grpc = grpc_status.filter(|_| self.response_code != 0);
        let grpc_failed = grpc.is_some_and(|status| match kind {
            span::SpanKind::Server => matches!(status, 2 | 4 | 12 | 13 | 14 | 15),
            _ => status != 0,
        });
        let http_failed = self.response_code == 0
            || match kind {
                span::SpanKind::Server => self.response_code >= 500,
                _ => self.response_code >= 400,
            };
        let failed = http_failed || grpc_failed;
        if failed {
            // The conventions' `error.type`: the status code, else what went wrong.
            let error_type = match (self.response_code, grpc) {
                (0, _) if !self.response_flags.is_empty() => self.response_flags.clone(),
                (0, _) => "_OTHER".to_owned(),
                (_, Some(status)) if grpc_failed && !http_failed => status.to_string(),
                (code, _) => code.to_string(),
            };
            attributes.push(string_attribute("error.type", error_type));
        }
        // A host the mesh file does not name is `unknown`, as in the metrics (the host is
        // `server.address`): callers cannot coin operation names with it either.
        let service_label = if service_name.is_empty() { "unknown" } else { service_name };
        let method_label = if known_method { method } else { "HTTP" };
        Span {
            trace_id: context.trace_id.to_vec(),
            span_id: context.span_id.to_vec(),
            trace_state: self.trace_state.clone(),
            parent_span_id: context.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x01,
            name: format!("{method_label} {service_label}"),
            kind: kind as i32,
            start_time_unix_nano: self.start_unix_nano,
            end_time_unix_nano: end_unix_nano,
            attributes,
            status: Some(Status {
                code: if failed { status::StatusCode::Error } else { status::StatusCode::Unset } as i32,
                message: String::new(),
            }),
            ..Default::default()
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(context) = self.abandoned_to.take() {
            self.upstream_hold = None;
            self.add_flag("DC");
            self.report(0, &context.reports, &context.spans);
        }
    }
}

/// Query parameters whose values are redacted in `url.query` and `url.full`: those the
/// HTTP semantic conventions redact by default (signed-URL credentials of AWS's older
/// scheme, Azure SAS and Google Cloud), and the credentials of AWS's SigV4 presigned
/// URLs, which S3 hands out today (their signature, access key and STS session token).
/// Compared without regard to case.
const REDACTED_QUERY_KEYS: [&str; 7] = [
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
];

/// `query` with the value of each parameter named in [`REDACTED_QUERY_KEYS`] replaced
/// by `REDACTED`, as the conventions say; borrowed when there is none.
fn redact_query(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        pair.split_once('=').is_some_and(|(key, _)| REDACTED_QUERY_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)))
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if secret(pair) => Cow::Owned(format!("{key}=REDACTED")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// A header value as span attribute text (lossy: header values may hold any byte).
fn header_text(value: Option<&HeaderValue>) -> String {
    value.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default()
}

/// Encoded size of a string field; 0 for an empty string, which proto3 leaves out.
fn str_len(tag: u32, value: &str) -> usize {
    if value.is_empty() { 0 } else { key_len(tag) + encoded_len_varint(value.len() as u64) + value.len() }
}

/// Encoded size of a `Workload` message's body.
fn workload_len(identity: &WorkloadIdentity, cluster: &str) -> usize {
    str_len(1, &identity.name)
        + str_len(2, &identity.namespace)
        + str_len(3, &identity.app)
        + str_len(4, &identity.version)
        + str_len(8, cluster)
}

/// A `Workload` message field (`len` from [`workload_len`]).
fn put_workload(buf: &mut Vec<u8>, tag: u32, identity: &WorkloadIdentity, cluster: &str, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    put_str(buf, 1, &identity.name);
    put_str(buf, 2, &identity.namespace);
    put_str(buf, 3, &identity.app);
    put_str(buf, 4, &identity.version);
    put_str(buf, 8, cluster);
}

/// A string field, left out when empty.
fn put_str(buf: &mut Vec<u8>, tag: u32, value: &str) {
    if !value.is_empty() {
        put_bytes(buf, tag, value.as_bytes());
    }
}

/// A bytes field.
fn put_bytes(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

/// A varint field, left out when zero.
fn put_varint(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

/// gRPC's status header (and trailer).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// gRPC's status message header (and trailer).
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Bytes of a header block as sent on HTTP/1.1 (`name: value\r\n` each).
pub fn header_bytes(headers: &HeaderMap) -> u64 {
    headers.iter().map(|(name, value)| (name.as_str().len() + value.len() + 4) as u64).sum()
}

/// Whether a request's `content-type` makes it a gRPC call, as Envoy decides
/// (`Grpc::Common::hasGrpcContentType`): the media type is exactly `application/grpc`
/// or `application/grpc+<subtype>` (`+proto`, `+json`). gRPC-Web
/// (`application/grpc-web`, `application/grpc-web-text+proto`, ...) is not gRPC: it is
/// HTTP, with plain HTTP local replies. The media type is compared case-insensitively
/// and parameters after `;` are ignored.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let media_type = value.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    media_type.len() >= GRPC.len()
        && media_type[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && media_type.get(GRPC.len()).is_none_or(|&b| b == b'+')
}

/// `grpc-status` from a header or trailer block.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get(GRPC_STATUS)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests;
