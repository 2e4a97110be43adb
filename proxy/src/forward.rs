//! The request pipelines of the two listeners.
//!
//! ```text
//!  app ──► outbound listener ──► [mesh: Host → service → endpoint, round robin]
//!                                     │ HTTP/1.1 or h2c, pooled
//!                                     ▼
//!          inbound listener of the callee's proxy ──► local app
//! ```
//!
//! Each direction is one explicit, ordered pipeline ([`Proxy::inbound`],
//! [`Proxy::outbound`]) rather than a tower stack: the stages share per-request
//! state (the [`Exchange`] that becomes the record and span, filled in by identity,
//! trace context, routing and the response head) and telemetry must see the end of
//! the response *body*, which hyper 1 hands over long after any tower future has
//! resolved. Threading that through tower layers would mean request extensions and
//! boxed futures per layer; an ordered `async fn` keeps the order readable in one
//! place and costs no allocation. Errors become responses in exactly one place,
//! [`error_response`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use rand::Rng;
use meshtel_model::routing::{AbortStatus, HeaderOps, RequestAttrs, RequestMatch, RetryPolicy, Rewrite};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::body::{BodyFault, RequestBody, ResponseBody};
use app_hints::AppProtocolHints;
use headers::strip_hop_by_hop_headers;
pub use headers::remove_hop_by_hop_headers;
use peer::{PeerHeaders, peer_cluster, take_peer_identity};
pub use peer::{PEER_APP, PEER_CLUSTER, PEER_NAMESPACE, PEER_VERSION, PEER_WORKLOAD};
use crate::config::AppProtocol;
use crate::drain::Upgrades;
use crate::error::Error;
use crate::mesh::{CLUSTER_DOMAIN, ServiceNames, WorkloadIdentity};
use crate::pool::{Failure, PoolSettings, Upstream, UpstreamPool};
use crate::routing::SharedRouting;
use crate::quota::{self, Denial, QuotaEnforcer, RequestView};
use crate::report::ReportQueue;
use crate::spans::SpanQueue;
use crate::stats::{Direction, Stats};
use crate::telemetry::Exchange;
use crate::trace_context;

/// Request id header, added when absent.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything both pipelines share: identity, mesh, telemetry sinks, the worker's
/// upstream connection pool.
#[derive(Debug)]
pub struct ProxyContext {
    /// This instance's workload.
    pub identity: Arc<WorkloadIdentity>,
    /// This instance's cluster id (also the cluster of mesh endpoints naming none).
    pub cluster: Arc<str>,
    /// This instance's service: FQDN, short name, namespace.
    pub service: Arc<ServiceNames>,
    /// The mesh and traffic rules in force.
    pub routing: SharedRouting,
    /// Request records.
    pub reports: ReportQueue,
    /// Spans.
    pub spans: SpanQueue,
    /// Own counters.
    pub stats: Stats,
    /// Head sampling rate for new traces, percent.
    pub sample_percent: f64,
    /// Longest wait for upstream response headers; `None` waits forever.
    pub request_timeout: Option<Duration>,
    /// Longest pause in a request or response body's arrival; `None` waits forever.
    pub body_idle_timeout: Option<Duration>,
    /// The inbound quota stage.
    pub quota: QuotaEnforcer,
    /// Mirrored requests in flight (bounded; beyond, mirrors are dropped).
    pub mirror_slots: Arc<Semaphore>,
    /// What the inbound listener speaks to the local app.
    pub app_protocol: AppProtocol,
    /// This worker's WebSockets, drained on shutdown.
    pub upgrades: Upgrades,
    /// Warnings when that does not suit the app.
    app_hints: AppProtocolHints,
    /// This instance's peer identity headers, built once.
    peer_headers: PeerHeaders,
    upstream: UpstreamPool,
}

impl ProxyContext {
    /// Reports a request of `direction` that hyper's HTTP/1.1 parser refused with
    /// `status` before the proxy saw it ([`Exchange::refused_head`]): this instance is
    /// its destination (inbound) or source (outbound), the other side unknown.
    pub fn report_refused_head(&self, direction: Direction, status: u16) {
        let mut exchange = Exchange::refused_head(direction, status);
        let stats = match direction {
            Direction::Inbound => {
                exchange.destination = Some(self.identity.clone());
                exchange.destination_cluster = Some(self.cluster.clone());
                exchange.destination_service = Some(self.service.clone());
                &self.stats.inbound
            }
            Direction::Outbound => {
                exchange.source = Some(self.identity.clone());
                exchange.source_cluster = Some(self.cluster.clone());
                &self.stats.outbound
            }
        };
        stats.requests.inc();
        stats.local_errors.inc();
        exchange.finish(0, &self.reports, &self.spans);
    }

    /// Builds the shared context and its upstream connection pool.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service_name: &str,
        identity: WorkloadIdentity,
        cluster: &str,
        routing: SharedRouting,
        reports: ReportQueue,
        spans: SpanQueue,
        stats: Stats,
        sample_percent: f64,
        request_timeout: Option<Duration>,
        body_idle_timeout: Option<Duration>,
        pool: PoolSettings,
        quota: QuotaEnforcer,
    ) -> ProxyContext {
        let upstream = UpstreamPool::new(pool);
        let service = service_names(service_name, &identity.namespace);
        let mirror_slots = Arc::new(Semaphore::new(upstream::MAX_MIRRORS_IN_FLIGHT));
        let peer_headers = PeerHeaders::of(&identity, cluster);
        ProxyContext {
            identity: Arc::new(identity),
            cluster: cluster.into(),
            service: Arc::new(service),
            routing,
            reports,
            spans,
            stats,
            sample_percent,
            request_timeout,
            body_idle_timeout,
            quota,
            mirror_slots,
            app_protocol: AppProtocol::Auto,
            upgrades: Upgrades::default(),
            app_hints: AppProtocolHints::default(),
            peer_headers,
            upstream,
        }
    }
}

/// A service's FQDN, short name and namespace.
pub fn service_names(service_name: &str, namespace: &str) -> ServiceNames {
    (format!("{service_name}.{namespace}.{CLUSTER_DOMAIN}"), service_name.to_owned(), namespace.to_owned())
}

/// One listener's request handler.
#[derive(Debug, Clone)]
pub struct Proxy {
    context: Arc<ProxyContext>,
    /// `host:port` of the local app (inbound only).
    local_app: Option<Arc<str>>,
}

impl Proxy {
    /// The handler of the inbound listener, forwarding to `local_app`.
    pub fn inbound(context: Arc<ProxyContext>, local_app: String) -> Proxy {
        Proxy { context, local_app: Some(local_app.into()) }
    }

    /// The handler of the outbound listener.
    pub fn outbound(context: Arc<ProxyContext>) -> Proxy {
        Proxy { context, local_app: None }
    }

    /// Handles one request of this listener.
    ///
    /// Each pipeline owns its `Proxy` and is returned as is, not awaited inside
    /// another `async fn`: hyper moves the request's future by value, and every level
    /// of nesting would hold the request once more.
    pub fn handle(self, request: Request<Incoming>) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        match self.local_app.clone() {
            Some(app) => Either::Left(self.inbound_pipeline(request, app)),
            None => Either::Right(self.outbound_pipeline(request)),
        }
    }

    /// Inbound: another service's proxy → the local app. Stages, in order:
    async fn inbound_pipeline(self, mut request: Request<Incoming>, local_app: Arc<str>) -> Response<ResponseBody> {
        let context = &self.context;
        // 1. telemetry: start the clock, count the request (reporter="destination").
        context.stats.inbound.requests.inc();
        let mut exchange = Exchange::start(Direction::Inbound, &request);
        exchange.note_request_body(request.body());
        exchange.report_if_abandoned(context.clone());
        // The destination is this instance and its service, also for a request refused
        // at the next stage.
        exchange.destination = Some(context.identity.clone());
        exchange.destination_cluster = Some(context.cluster.clone());
        exchange.destination_service = Some(context.service.clone());
        // 2. the request as received: one valid `Host` (else 400 `DPE`), an
        //    absolute-form target's authority as `Host`; hop-by-hop headers (RFC 9110
        //    §7.6.1; a WebSocket upgrade's kept) removed before the proxy adds any.
        let upgrade = match headers::receive_request(&mut request, &exchange) {
            Ok(upgrade) => upgrade,
            Err(error) => {
                // Refused as received, still traced when the caller's trace is sampled.
                continue_trace(request.headers_mut(), &mut exchange, context.sample_percent);
                headers::ensure_request_id(request.headers_mut(), &mut exchange);
                return respond(context, Err(error), exchange, None, None);
            }
        };
        // Reported as matched and forwarded: the normalized path.
        exchange.take_path(request.uri());
        // An instance of several services: the one the caller named (its `Host`).
        if context.routing.serves_several()
            && let Some(service) = context.routing.current().own_service_for(exchange.authority())
        {
            exchange.destination_service = Some(service.clone());
        }
        // 3. identity: the caller from the peer headers (stripped before the app sees
        //    them).
        if let Some((caller, cluster)) = take_peer_identity(request.headers_mut()) {
            exchange.source = Some(Arc::new(caller));
            exchange.source_cluster = cluster.and_then(|value| peer_cluster(&value, &context.cluster));
        }
        // 4. trace context: continue the caller's trace with our server span;
        //    x-request-id when absent.
        continue_trace(request.headers_mut(), &mut exchange, context.sample_percent);
        headers::ensure_request_id(request.headers_mut(), &mut exchange);
        // 5. quota: the policies matching this request must grant it (lease or Check);
        //    exhausted → 429 `RL`, collector failing → allowed or 500 `RLSE`. With no
        //    policy for this service this is one atomic load.
        if !context.quota.is_idle() {
            let denial = match context.quota.without_policies() {
                Some(decided) => decided,
                None => {
                    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                    let view = RequestView { source: exchange.source(), method: request.method().as_str(), path, headers: request.headers() };
                    // Boxed: the quota stage's state (gRPC calls) would otherwise be
                    // part of every request's future, and hyper moves that future
                    // around by value.
                    Box::pin(context.quota.check_inbound(view)).await
                }
            };
            if let Some(denial) = denial {
                if denial == Denial::CheckFailed {
                    context.stats.inbound.local_errors.inc();
                }
                return quota::denied_response(context, &denial, exchange);
            }
        }
        // 6. route: always the local app.
        exchange.upstream_address = Some(local_app);
        // 7. forward over the pooled client, bounded by the request timeout.
        let forwarded = forward(context, request, &mut exchange).await;
        // 8. respond: errors → 5xx + flag; response hop-by-hop headers; record + span
        //    when the response body ends (a WebSocket's when its connection closes).
        respond(context, forwarded, exchange, None, upgrade)
    }

    /// Outbound: the local app → another service of the mesh. Stages, in order:
    async fn outbound_pipeline(self, mut request: Request<Incoming>) -> Response<ResponseBody> {
        let context = &self.context;
        // 1. telemetry: start the clock, count the request (reporter="source"); a
        //    request abandoned by the app is still reported (flag DC).
        context.stats.outbound.requests.inc();
        let mut exchange = Exchange::start(Direction::Outbound, &request);
        exchange.note_request_body(request.body());
        exchange.report_if_abandoned(context.clone());
        // The caller is this instance, also for a request refused at the next stage.
        exchange.source = Some(context.identity.clone());
        exchange.source_cluster = Some(context.cluster.clone());
        // 2. the request as received: one valid `Host` (else 400 `DPE`), an
        //    absolute-form target's authority as `Host`; hop-by-hop headers (a WebSocket
        //    upgrade's kept) removed before the proxy adds any, so that the app's
        //    `Connection` cannot remove the identity or trace headers.
        let upgrade = match headers::receive_request(&mut request, &exchange) {
            Ok(upgrade) => upgrade,
            Err(error) => {
                // Refused as received, still traced when the caller's trace is sampled.
                continue_trace(request.headers_mut(), &mut exchange, context.sample_percent);
                headers::ensure_request_id(request.headers_mut(), &mut exchange);
                return respond(context, Err(error), exchange, None, None);
            }
        };
        exchange.take_path(request.uri());
        // 3. identity: announce this instance to the callee's proxy (replacing whatever
        //    the app may have sent).
        context.peer_headers.set(request.headers_mut());
        // 4. routing: Host → mesh service / virtual service → first matching route →
        //    weighted destination → cluster (service or subset).
        let table = context.routing.current();
        let roll = rand::rng().random::<u32>();
        let decided = {
            let uri = request.uri();
            let attrs = RequestAttrs {
                method: request.method().as_str(),
                scheme: "http",
                authority: exchange.authority(),
                path: uri.path(),
                query: uri.query().unwrap_or(""),
                port: authority_port(exchange.authority()),
                headers: request.headers(),
            };
            table.decide(&attrs, roll)
        };
        // 5. trace context: continue the app's trace (or start one) with our client
        //    span; x-request-id when absent.
        continue_trace(request.headers_mut(), &mut exchange, context.sample_percent);
        headers::ensure_request_id(request.headers_mut(), &mut exchange);
        let decision = match decided {
            Ok(decision) => decision,
            Err(error) => {
                if matches!(error, Error::NoRoute { .. })
                    && let Some(service) = table.service_names(exchange.authority())
                {
                    exchange.destination_service = Some(service);
                    exchange.destination_cluster = Some(context.cluster.clone());
                }
                return respond(context, Err(error), exchange, None, None);
            }
        };
        exchange.destination_service = Some(decision.cluster.service.clone());
        exchange.upstream_cluster.clone_from(&decision.cluster.name);
        // A known service is in a known cluster even when no endpoint gets picked
        // (fault abort, no endpoints, a stalled body): this proxy's, as for a mesh-file
        // endpoint without `cluster:`, until an endpoint names its own. Kiali drops
        // series with a known namespace and an `unknown` cluster.
        exchange.destination_cluster = Some(context.cluster.clone());
        // 6. fault injection: delay (DI), then abort (FI).
        if let Some(fault) = decision.route.and_then(|r| r.fault.as_ref())
            && let upstream::Injected::Abort(status) = Box::pin(upstream::inject_fault(context, fault, &mut exchange)).await
        {
            let grpc_status = match status {
                AbortStatus::Grpc(code) => code,
                AbortStatus::Http(code) => upstream::grpc_status_for_http(code),
            };
            let reply = LocalReply {
                flag: "",
                status: upstream::abort_http_status(status),
                grpc_status,
                message: "fault filter abort",
                body: Bytes::from_static(b"fault filter abort"),
            };
            return local_reply(context, reply, HeaderMap::new(), exchange);
        }
        // 7. request rewrites: `rewrite` (path prefix, authority), header operations.
        let (mut parts, body) = request.into_parts();
        if let Some(route) = decision.route {
            if let Some(rewrite) = &route.rewrite {
                rewrite_request(&mut parts, rewrite, decision.matched);
            }
            route.headers.request.apply(&mut parts.headers);
        }
        if let Some(destination) = decision.destination {
            destination.headers.request.apply(&mut parts.headers);
        }
        if parts.version != Version::HTTP_2 {
            parts.version = Version::HTTP_11;
        }
        // 8. resilience plan: retries (the route's, or Istio's default) and timeouts.
        let plan = upstream::Plan {
            retries: decision.route.and_then(|r| r.retries.clone()).unwrap_or_else(RetryPolicy::istio_default),
            timeout: grpc::request_timeout(decision.route.and_then(|r| r.timeout), context.request_timeout, exchange.is_h2_grpc(), &parts.headers),
        };
        if exchange.is_h2_grpc() {
            grpc::cap_grpc_timeout(&mut parts.headers, plan.timeout);
        }
        let mirror = decision.route.and_then(|r| r.mirror.as_ref());
        let replay = plan.retries.attempts > 0 || mirror.is_some();
        let idle = context.body_idle_timeout_for(&exchange);
        let mut body = match upstream::OutboundBody::prepare(body, replay, idle, &mut exchange).await {
            Ok(body) => body,
            Err(error) => return respond(context, Err(error), exchange, None, None),
        };
        // 9. mirror: a fire-and-forget copy to the shadow destination.
        if let Some(mirror) = mirror {
            upstream::mirror(context, &table, mirror, &parts, &body);
        }
        // 10. forward with retries under the per-try and overall timeouts.
        let forwarded = upstream::send(context, decision.cluster, &parts, &mut body, &plan, &mut exchange).await;
        let response_ops = decision.route.map(|r| (&r.headers.response, decision.destination.map(|d| &d.headers.response)));
        // 11. respond: errors → 5xx + flag; record + span when the body ends (a
        //     WebSocket's when its connection closes).
        respond(context, forwarded, exchange, response_ops, upgrade)
    }
}

/// The port named by an authority, 80 when it names none.
fn authority_port(authority: &str) -> Option<u16> {
    match authority.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port.parse().ok(),
        // No port: HTTP's, 80, the one the app's client dialled (Istio matches the
        // listener's port, which a call to `http://web` reaches).
        _ => Some(80),
    }
}

/// Applies `rewrite` to the request head.
fn rewrite_request(parts: &mut http::request::Parts, rewrite: &Rewrite, matched: Option<&RequestMatch>) {
    if let Some(path) = rewrite.rewrite_path(parts.uri.path(), matched) {
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        // The scheme and authority stay (an HTTP/2 request's `:authority`).
        if let Ok(path_and_query) = http::uri::PathAndQuery::try_from(path_and_query) {
            let mut uri = parts.uri.clone().into_parts();
            uri.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(uri) {
                parts.uri = uri;
            }
        }
    }
    if let Some(authority) = &rewrite.authority
        && let Ok(value) = HeaderValue::from_str(authority)
    {
        parts.headers.insert(http::header::HOST, value);
    }
}

/// Extracts the incoming trace context, starts our span, re-injects it.
fn continue_trace(headers: &mut HeaderMap, exchange: &mut Exchange, sample_percent: f64) {
    let extracted = trace_context::extract(headers);
    let span = trace_context::start_span(&extracted, sample_percent);
    if extracted.formats.w3c && span.sampled && extracted.present.tracestate() {
        exchange.trace_state = trace_context::trace_state(headers);
    }
    trace_context::inject(headers, &extracted, &span);
    exchange.span = Some(span);
}

/// Sends the request to `exchange.upstream_address`, HTTP/2 if it came as HTTP/2 (and
/// the app protocol is `auto`), else HTTP/1.1.
async fn forward(context: &ProxyContext, mut request: Request<Incoming>, exchange: &mut Exchange) -> Result<Upstream, Error> {
    let h2c_to_app = request.version() == Version::HTTP_2 && context.app_protocol == AppProtocol::Auto;
    if context.app_protocol == AppProtocol::Http1 && request.version() == Version::HTTP_2 {
        if exchange.is_grpc() {
            context.app_hints.grpc_as_http1(exchange.upstream_address());
        }
        // The app only speaks HTTP/1.1: the caller's `:authority` becomes `Host`.
        if !request.headers().contains_key(http::header::HOST)
            && let Some(host) = request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            request.headers_mut().insert(http::header::HOST, host);
        }
        *request.version_mut() = Version::HTTP_11;
    }
    let timeout = grpc::request_timeout(None, context.request_timeout, exchange.is_h2_grpc(), request.headers());
    let idle = context.body_idle_timeout_for(exchange);
    let request = request.map(|body| {
        let progress = exchange.body_progress(&body);
        RequestBody::new(body, progress, idle)
    });
    let sent = context.upstream.send(exchange.upstream_address(), request);
    // The request timeout runs from the end of the request body, as Envoy's does.
    let result = match (exchange.request_body_progress(), timeout) {
        // No body being read (most requests): from now.
        (None, Some(timeout)) => match tokio::time::timeout(timeout, sent).await {
            Ok(result) => result.map_err(upstream::AttemptError::Failed),
            Err(_) => Err(upstream::AttemptError::Timeout),
        },
        (progress, timeout) => {
            let started = std::time::Instant::now();
            upstream::response_within!(sent, progress, started, timeout, None)
        }
    };
    match result {
        Ok(upstream) => {
            if h2c_to_app {
                context.app_hints.h2c_answered();
            }
            Ok(upstream)
        }
        Err(upstream::AttemptError::Failed(failure)) => {
            if h2c_to_app && matches!(failure, Failure::Reset(_)) {
                context.app_hints.h2c_dropped(exchange.upstream_address());
            }
            Err(failed(context, exchange, failure))
        }
        Err(upstream::AttemptError::Timeout | upstream::AttemptError::PerTryTimeout) => Err(timed_out(exchange)),
    }
}

/// The error for a failed upstream exchange that the downstream's request body caused,
/// if it did: it broke (400 `DPE`) or stalled (408 `SI`); with `timed_out` (the request
/// timeout ended the exchange), a body the proxy was still waiting for counts as
/// stalled. Such a failure says nothing about the upstream: it feeds no outlier
/// detection and is not retried.
fn downstream_error(exchange: &Exchange, timed_out: bool) -> Option<Error> {
    exchange.request_body_fault(timed_out).map(|fault| match fault {
        BodyFault::Broken => Error::DownstreamBody,
        BodyFault::Stalled => Error::DownstreamTimeout,
    })
}

/// The request timeout ended the exchange: the upstream's fault unless the proxy was
/// still waiting for the request body.
fn timed_out(exchange: &Exchange) -> Error {
    downstream_error(exchange, true).unwrap_or_else(|| Error::UpstreamTimeout { upstream: exchange.upstream_address().to_owned() })
}

/// A request that got no response from `exchange.upstream_address`, as the error its
/// caller answers with (the downstream's when its request body broke or stalled);
/// connect failures are counted.
fn failed(context: &ProxyContext, exchange: &Exchange, failure: Failure) -> Error {
    if let Some(error) = downstream_error(exchange, false) {
        debug!(direction = exchange.direction.as_str(), upstream = exchange.upstream_address(), failure = ?failure, "request body failed");
        return error;
    }
    let upstream = exchange.upstream_address().to_owned();
    match failure {
        Failure::Connect(source) => {
            context.stats.direction(exchange.direction).upstream_connect_failures.inc();
            Error::UpstreamConnect { upstream, source }
        }
        Failure::Reset(source) if is_protocol_error(&*source) => Error::UpstreamProtocol { upstream, source },
        Failure::Reset(source) => Error::UpstreamReset { upstream, source },
    }
}

/// Whether an exchange failed because the upstream's response was not valid HTTP
/// (hyper could not parse its head), rather than because the connection ended.
fn is_protocol_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(hyper_error) = error.downcast_ref::<hyper::Error>() {
            return hyper_error.is_parse() || hyper_error.is_parse_status() || hyper_error.is_parse_too_large();
        }
        source = error.source();
    }
    false
}

/// Turns the forwarding result into the downstream response, applying the route's
/// response header operations. A `101` to a WebSocket request (`upgrade`: the
/// downstream connection's) splices the two connections.
fn respond(
    context: &Arc<ProxyContext>,
    forwarded: Result<Upstream, Error>,
    mut exchange: Exchange,
    response_ops: Option<(&HeaderOps, Option<&HeaderOps>)>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ResponseBody> {
    // A 101 to a request that offered no upgrade switches to a protocol the caller never
    // asked for (RFC 9110 §15.2.2): the upstream's protocol error (502 `UPE`), as
    // Envoy answers it, not a response the caller cannot use.
    let forwarded = match forwarded {
        Ok(upstream) if upstream.response.status() == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_none() => Err(Error::UpstreamProtocol {
            upstream: exchange.upstream_address().to_owned(),
            source: "101 Switching Protocols to a request that offered no upgrade".into(),
        }),
        // An HTTP/2 head over the limit (decoded whole up to a larger one, so that
        // trailers are judged too): the upstream's protocol error, as over HTTP/1.1.
        Ok(upstream)
            if upstream.response.version() == Version::HTTP_2
                && crate::pool::h2_header_list_size(upstream.response.headers()) > crate::pool::H2_MAX_HEADER_LIST_BYTES as usize =>
        {
            Err(Error::UpstreamProtocol {
                upstream: exchange.upstream_address().to_owned(),
                source: format!("response head over the {}-byte HTTP/2 header list limit", crate::pool::H2_MAX_HEADER_LIST_BYTES).into(),
            })
        }
        other => other,
    };
    match forwarded {
        Ok(Upstream { response, connection }) => {
            let (mut parts, body) = response.into_parts();
            // An app that answers before it read the request body and closes its
            // connection (a 413 for an upload) will not read the rest: this caller's
            // connection closes after the answer too, and says so. One that keeps its
            // connection reads the body on (nginx, most servers), and so does the proxy.
            let app_closes = exchange.request_body_unread() && says_close(&parts);
            // The proxy answers in its own HTTP version (RFC 9110 §2.5), so an app's
            // HTTP/1.0 answer does not close an HTTP/1.1 caller's keep-alive connection
            // (hyper answers an HTTP/1.0 caller as such).
            if parts.version < Version::HTTP_11 {
                parts.version = Version::HTTP_11;
            }
            let switching = upgrade.is_some() && parts.status == StatusCode::SWITCHING_PROTOCOLS;
            strip_hop_by_hop_headers(&mut parts.headers, switching);
            // A 1xx or 204 has no body and may carry no Content-Length (RFC 9110 §8.6):
            // an HTTP/1.1 app's would otherwise reach an HTTP/2 caller, whose client
            // refuses the whole response.
            if parts.status.is_informational() || parts.status == StatusCode::NO_CONTENT {
                parts.headers.remove(http::header::CONTENT_LENGTH);
            }
            if let Some((route_ops, destination_ops)) = response_ops {
                route_ops.apply(&mut parts.headers);
                if let Some(ops) = destination_ops {
                    ops.apply(&mut parts.headers);
                }
            }
            if app_closes && !switching && exchange.is_http1() {
                parts.headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            exchange.response_head(parts.status, &parts.headers);
            if switching
                && let (Some(downstream), Some(upstream)) = (upgrade, parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
            {
                // The upstream connection now carries the WebSocket: never pooled again,
                // and its task lives on to hand it over.
                drop(body);
                if let Some(connection) = connection {
                    connection.detach();
                }
                upgrade::splice(context.clone(), exchange, downstream, upstream);
                return Response::from_parts(parts, ResponseBody::plain(Bytes::new()));
            }
            Response::from_parts(parts, ResponseBody::upstream(body, connection, exchange, context.clone()))
        }
        Err(error) => {
            context.stats.direction(exchange.direction).local_errors.inc();
            let chain = crate::mesh::error_chain(&error);
            debug!(direction = exchange.direction.as_str(), error = %chain, "local reply");
            // What the operator has to act on: the upstream side failed (not a client
            // that broke off or sent a malformed request), told at most once per 10 s.
            if !error.is_downstream_fault() {
                context.stats.local_replies_log.note(format_args!(
                    "{} {} {}: {chain}",
                    exchange.direction.as_str(),
                    error.status().as_u16(),
                    error.response_flag()
                ));
            }
            // The route's response header operations hold for the proxy's own answer
            // when its upstream failed (`UT`, `UF`, `UO`), as Envoy's router applies them.
            let mut headers = HeaderMap::new();
            if let Some((route_ops, destination_ops)) = response_ops {
                route_ops.apply(&mut headers);
                if let Some(ops) = destination_ops {
                    ops.apply(&mut headers);
                }
            }
            error_response_with(context, &error, exchange, headers)
        }
    }
}

/// Whether an upstream HTTP/1 response says its connection closes after it
/// (`Connection: close`, or HTTP/1.0 without `keep-alive`). Used, with a request body
/// not all read, to close the caller's connection after the answer as well (with
/// `Connection: close`, as Envoy does), rather than leave the caller to find it closed:
/// the listener then reads on and drops what the caller still sends before it closes
/// (`conn_life::Lingering`), so the answer is not lost to a reset.
fn says_close(parts: &http::response::Parts) -> bool {
    let tokens = || parts.headers.get_all(http::header::CONNECTION).into_iter().flat_map(|v| v.as_bytes().split(|b| *b == b','));
    let has = |token: &[u8]| tokens().any(|t| t.trim_ascii().eq_ignore_ascii_case(token));
    has(b"close") || (parts.version == Version::HTTP_10 && !has(b"keep-alive"))
}

/// THE place where forwarding errors become responses: the status and Envoy
/// response flag come from [`Error`]; gRPC callers get a trailers-only
/// response with `grpc-status` (14 UNAVAILABLE, 4 DEADLINE_EXCEEDED) as Envoy does.
/// Bodies name the failure class only, nothing internal.
pub fn error_response(context: &Arc<ProxyContext>, error: &Error, exchange: Exchange) -> Response<ResponseBody> {
    error_response_with(context, error, exchange, HeaderMap::new())
}

/// [`error_response`] with `headers` added.
fn error_response_with(context: &Arc<ProxyContext>, error: &Error, exchange: Exchange, mut headers: HeaderMap) -> Response<ResponseBody> {
    // A request body the proxy gave up on (broken, stalled) leaves the HTTP/1.1
    // connection unusable: it is closed after this answer, which says so.
    if exchange.is_http1() && (matches!(error, Error::DownstreamBody | Error::DownstreamTimeout) || exchange.request_body_unread()) {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = error.status();
    let message = error.local_reply_message();
    let grpc_status = if status == StatusCode::GATEWAY_TIMEOUT { 4 } else { upstream::grpc_status_for_http(status.as_u16()) };
    let body = match &message {
        std::borrow::Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
        std::borrow::Cow::Owned(text) => Bytes::copy_from_slice(text.as_bytes()),
    };
    let reply = LocalReply { flag: error.response_flag(), status, grpc_status, message: &message, body };
    local_reply(context, reply, headers, exchange)
}

/// A response the proxy sends itself instead of forwarding.
#[derive(Debug, Clone)]
pub struct LocalReply<'a> {
    /// The Envoy response flag recorded for it.
    pub flag: &'static str,
    /// The HTTP status (HTTP callers).
    pub status: StatusCode,
    /// The `grpc-status` gRPC callers get instead, with HTTP 200.
    pub grpc_status: u32,
    /// `grpc-message` for gRPC callers.
    pub message: &'a str,
    /// The `text/plain` body for HTTP callers.
    pub body: Bytes,
}

/// Builds a local reply (with `headers` added) and reports `exchange` once it is
/// sent. gRPC callers get a trailers-only response, HTTP callers a text body.
pub fn local_reply(context: &Arc<ProxyContext>, reply: LocalReply<'_>, headers: HeaderMap, mut exchange: Exchange) -> Response<ResponseBody> {
    exchange.add_flag(reply.flag);
    let mut response = Response::new(());
    let body = if exchange.is_grpc() {
        let response_headers = response.headers_mut();
        response_headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        response_headers.insert(crate::telemetry::GRPC_STATUS, HeaderValue::from(reply.grpc_status));
        if let Ok(message) = HeaderValue::from_str(reply.message) {
            response_headers.insert(crate::telemetry::GRPC_MESSAGE, message);
        }
        Bytes::new()
    } else {
        *response.status_mut() = reply.status;
        response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        reply.body
    };
    response.headers_mut().extend(headers);
    let (parts, ()) = response.into_parts();
    exchange.response_head(parts.status, &parts.headers);
    Response::from_parts(parts, ResponseBody::local(body, exchange, context.clone()))
}

/// A random UUID v4, as Envoy generates for `x-request-id` (lower-case hex).
fn new_request_id() -> [u8; 36] {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = *b"00000000-0000-0000-0000-000000000000";
    for (from, to) in [(0..4, 0..8), (4..6, 9..13), (6..8, 14..18), (8..10, 19..23), (10..16, 24..36)] {
        trace_context::hex_into(&bytes[from], &mut text[to]);
    }
    text
}

mod app_hints;
mod grpc;
mod headers;
mod path;
pub(crate) mod peer;
mod upgrade;
mod upstream;

#[cfg(test)]
mod tests;
