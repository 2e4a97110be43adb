//! What the proxy learns about one request, and the request record and span it
//! becomes once the response body has ended.
//!
//! An [`Exchange`] is started when the request arrives, filled in by the pipeline
//! stages (identity, trace context, routing, the response head), carried inside the
//! response body, and finished exactly once when that body ends, fails or is dropped
//! (see `body::ResponseBody`). Finishing submits the record and, when sampled, the
//! span: both `try_send`, so reporting never delays the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use http::header::{CONTENT_TYPE, HOST, HeaderName, USER_AGENT};
use http::{HeaderMap, Method, Request, Version};
use meshtel_model::mixer::{Reporter, RequestRecord, Workload};
use meshtel_model::otlp::trace::v1::{Span, Status, span, status};

use crate::mesh::WorkloadIdentity;
use crate::report::unix_nanos;
use crate::spans::{int_attribute, string_attribute};
use crate::stats::Direction;
use crate::trace_context::SpanContext;

/// Envoy's order of `%RESPONSE_FLAGS%` short codes.
const FLAG_ORDER: [&str; 29] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE",
    "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
];

/// Everything known about one request so far.
#[derive(Debug)]
pub struct Exchange {
    /// Which listener it came through.
    pub direction: Direction,
    started: Instant,
    start_unix_nano: u64,
    method: Method,
    path_and_query: String,
    http_version: &'static str,
    /// `grpc` or `http`.
    pub protocol: &'static str,
    /// `Host`/`:authority` as received.
    pub authority: String,
    user_agent: Option<String>,
    request_header_bytes: u64,
    /// Request body bytes, counted by the request body as it streams upstream.
    pub request_body_bytes: Arc<AtomicU64>,
    /// The calling workload.
    pub source: WorkloadIdentity,
    /// The called workload.
    pub destination: WorkloadIdentity,
    /// Destination service FQDN, short name and namespace (empty when unknown).
    pub destination_service: (String, String, String),
    /// `x-request-id` of the request.
    pub request_id: String,
    /// The proxy's span for this request.
    pub span: Option<SpanContext>,
    /// `tracestate` as received, passed into the span.
    pub trace_state: String,
    /// The endpoint the request was sent to.
    pub upstream_address: String,
    /// HTTP status sent downstream; 0 until a response head exists.
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
        let (mut host, mut content_type, mut user_agent, mut header_bytes) = (None, None, None, 0);
        for (name, value) in request.headers() {
            header_bytes += (name.as_str().len() + value.len() + 4) as u64;
            if name == HOST {
                host.get_or_insert(value);
            } else if name == CONTENT_TYPE {
                content_type.get_or_insert(value);
            } else if name == USER_AGENT {
                user_agent.get_or_insert(value);
            }
        }
        let is_grpc = content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        // `Host` first: an h2c app that dials the outbound listener directly can only
        // name the service there (its `:authority` is the listener's address).
        let authority = host
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_default();
        let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
        Exchange {
            direction,
            started: Instant::now(),
            start_unix_nano: unix_nanos(SystemTime::now()),
            method: request.method().clone(),
            request_header_bytes: (request.method().as_str().len() + path_and_query.len() + 12) as u64 + header_bytes,
            path_and_query,
            http_version: match request.version() {
                Version::HTTP_2 => "2",
                Version::HTTP_10 => "1.0",
                Version::HTTP_3 => "3",
                _ => "1.1",
            },
            protocol: if is_grpc { "grpc" } else { "http" },
            authority,
            user_agent: user_agent.and_then(|v| v.to_str().ok()).map(str::to_owned),
            request_body_bytes: Arc::new(AtomicU64::new(0)),
            source: WorkloadIdentity::default(),
            destination: WorkloadIdentity::default(),
            destination_service: Default::default(),
            request_id: String::new(),
            span: None,
            trace_state: String::new(),
            upstream_address: String::new(),
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

    /// Notes the response head about to be sent downstream.
    pub fn response_head(&mut self, status: http::StatusCode, headers: &HeaderMap) {
        self.response_code = status.as_u16();
        self.response_header_bytes = 17 + header_bytes(headers);
        if self.protocol == "grpc" {
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

    /// The request record and, when sampled, the span.
    pub fn finish(mut self, response_body_bytes: u64) -> (RequestRecord, Option<Span>) {
        self.abandoned_to = None;
        self.take_record(response_body_bytes)
    }

    fn take_record(&mut self, response_body_bytes: u64) -> (RequestRecord, Option<Span>) {
        let duration = self.started.elapsed();
        let end_unix_nano = self.start_unix_nano + duration.as_nanos() as u64;
        let sampled_span = self.span.filter(|s| s.sampled);
        let span = sampled_span.map(|context| self.span_of(context, end_unix_nano));
        let (service_fqdn, service_name, service_namespace) = std::mem::take(&mut self.destination_service);
        let record = RequestRecord {
            reporter: match self.direction {
                Direction::Inbound => Reporter::Destination,
                Direction::Outbound => Reporter::Source,
            } as i32,
            source: Some(workload(std::mem::take(&mut self.source))),
            destination: Some(workload(std::mem::take(&mut self.destination))),
            destination_service: service_fqdn,
            destination_service_name: service_name,
            destination_service_namespace: service_namespace,
            request_method: self.method.as_str().to_owned(),
            request_path: std::mem::take(&mut self.path_and_query),
            request_protocol: self.protocol.to_owned(),
            response_code: u32::from(self.response_code),
            grpc_response_status: if self.protocol == "grpc" { Some(self.grpc_status.unwrap_or(2)) } else { None },
            response_flags: std::mem::take(&mut self.response_flags),
            start_unix_nano: self.start_unix_nano,
            duration_nanos: duration.as_nanos() as u64,
            request_bytes: self.request_header_bytes + self.request_body_bytes.load(Ordering::Relaxed),
            response_bytes: self.response_header_bytes + response_body_bytes,
            trace_id: sampled_span.map(|s| s.trace_id.to_vec()).unwrap_or_default(),
            // No mTLS between meshtel proxies: inbound knows the connection is plain,
            // outbound leaves it unknown (mesh.md §1.3).
            connection_security_policy: match self.direction {
                Direction::Inbound => "none".to_owned(),
                Direction::Outbound => String::new(),
            },
        };
        (record, span)
    }

    fn span_of(&self, context: SpanContext, end_unix_nano: u64) -> Span {
        let (kind, peer_service) = match self.direction {
            Direction::Inbound => (span::SpanKind::Server, self.source.app.as_str()),
            Direction::Outbound => (span::SpanKind::Client, self.destination_service.1.as_str()),
        };
        let (path, query) = match self.path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.path_and_query.as_str(), None),
        };
        let (host, port) = match self.authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port.parse::<i64>().ok()),
            _ => (self.authority.as_str(), None),
        };
        let mut attributes = vec![
            string_attribute("http.request.method", self.method.as_str().to_owned()),
            string_attribute("url.path", path.to_owned()),
            string_attribute("url.scheme", "http".to_owned()),
            string_attribute("server.address", host.to_owned()),
            string_attribute("network.protocol.name", "http".to_owned()),
            string_attribute("network.protocol.version", self.http_version.to_owned()),
            int_attribute("http.response.status_code", i64::from(self.response_code)),
            string_attribute("guid:x-request-id", self.request_id.clone()),
        ];
        if let Some(query) = query {
            attributes.push(string_attribute("url.query", query.to_owned()));
        }
        if let Some(port) = port {
            attributes.push(int_attribute("server.port", port));
        }
        if !peer_service.is_empty() {
            attributes.push(string_attribute("peer.service", peer_service.to_owned()));
        }
        if let Some(agent) = &self.user_agent {
            attributes.push(string_attribute("user_agent.original", agent.clone()));
        }
        if !self.upstream_address.is_empty() {
            attributes.push(string_attribute("upstream.address", self.upstream_address.clone()));
        }
        if !self.response_flags.is_empty() {
            attributes.push(string_attribute("response_flags", self.response_flags.clone()));
        }
        if !self.upstream_cluster.is_empty() {
            attributes.push(string_attribute("upstream_cluster", self.upstream_cluster.clone()));
        }
        if self.attempts > 1 {
            attributes.push(int_attribute("upstream.attempts", i64::from(self.attempts)));
        }
        if let Some(grpc) = self.grpc_status.filter(|_| self.protocol == "grpc") {
            attributes.push(int_attribute("rpc.grpc.status_code", i64::from(grpc)));
        }
        let own = match self.direction {
            Direction::Inbound => &self.destination,
            Direction::Outbound => &self.source,
        };
        attributes.push(string_attribute("istio.namespace", own.namespace.clone()));
        // Server spans fail on 5xx only (the caller's fault otherwise); client spans
        // on any 4xx/5xx, as the HTTP semantic conventions say.
        let failed = !self.response_flags.is_empty()
            || self.response_code == 0
            || match kind {
                span::SpanKind::Server => self.response_code >= 500,
                _ => self.response_code >= 400,
            };
        let service_label = if self.destination_service.1.is_empty() { host } else { self.destination_service.1.as_str() };
        Span {
            trace_id: context.trace_id.to_vec(),
            span_id: context.span_id.to_vec(),
            trace_state: self.trace_state.clone(),
            parent_span_id: context.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x01,
            name: format!("{} {service_label}", self.method),
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
            let (record, span) = self.take_record(0);
            context.reports.submit(record);
            if let Some(span) = span {
                context.spans.submit(span);
            }
        }
    }
}

fn workload(identity: WorkloadIdentity) -> Workload {
    Workload {
        name: identity.name,
        namespace: identity.namespace,
        app: identity.app,
        version: identity.version,
        ..Default::default()
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

/// `grpc-status` from a header or trailer block.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get(GRPC_STATUS)?.to_str().ok()?.trim().parse().ok()
}
