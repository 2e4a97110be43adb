//! Sending an outbound request to its cluster under the route's resilience policy:
//! fault injection, pool admission, per-try and overall timeouts, retries with
//! jittered back-off, outlier feedback, and mirroring.
//!
//! Retries and mirrors need the request body again, so a body is buffered when it is
//! empty or its announced size is at most [`MAX_REPLAY_BODY`]. Any other body (gRPC,
//! chunked, larger) is streamed as it arrives and copied as it goes (a [`ReplayCopy`],
//! up to [`MAX_REPLAY_BODY`]): a retry sends that copy if the body ended within the
//! limit, or the body itself if no attempt read any of it (a refused connection, as
//! Envoy retries). Otherwise the retry is skipped (counted) and a streamed body gets no
//! mirror.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use meshtel_model::routing::{AbortStatus, Fault, Mirror, RetryPolicy};
use rand::Rng;
use tracing::debug;

use super::ProxyContext;
use crate::body::{BodyProgress, Replay, ReplayCopy, RequestBody};
use crate::error::Error;
use crate::pool::{Failure, Upstream};
use crate::routing::cluster::{Cluster, Outcome, Overflow, RetryPermit, UpstreamHold};
use crate::routing::RoutingTable;
use crate::telemetry::{Exchange, grpc_status};

/// Largest request body buffered for retries and mirroring (Envoy's default buffer
/// limit is of the same order).
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;
/// Base of the retry back-off: the n-th retry waits a random time in
/// `[0, (2ⁿ − 1) × base]`, capped at ten times the base (Envoy's defaults).
pub const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Most mirrored requests in flight per proxy; beyond, mirrors are dropped (counted).
pub const MAX_MIRRORS_IN_FLIGHT: usize = 256;

/// The request body, streamed or buffered for replay.
#[derive(Debug)]
pub enum OutboundBody {
    /// Sent as it arrives (`body`, `None` once taken); with `copy` (retries wanted), what
    /// is sent is copied for the next attempt.
    Streaming {
        /// The body, until an attempt takes it.
        body: Option<Incoming>,
        /// What a retry can send again.
        copy: Option<Arc<ReplayCopy>>,
    },
    /// Buffered: every attempt and the mirror send a copy.
    Buffered(Bytes),
}

impl OutboundBody {
    /// Buffers `body` when it may be replayed and `replay` is wanted; a body that
    /// breaks is 400 `DPE`, one idle for `idle` while it is read 408 `SI`.
    pub async fn prepare(body: Incoming, replay: bool, idle: Option<Duration>, exchange: &mut Exchange) -> Result<OutboundBody, Error> {
        let announced = body.size_hint().exact();
        let small = body.is_end_stream() || announced.is_some_and(|n| n <= MAX_REPLAY_BODY);
        if !replay {
            return Ok(OutboundBody::Streaming { body: Some(body), copy: None });
        }
        if !small {
            // Copied as it streams; one announced larger than the limit keeps no copy,
            // only the chance to go again unread.
            let limit = if announced.is_some() { 0 } else { MAX_REPLAY_BODY };
            return Ok(OutboundBody::Streaming { body: Some(body), copy: Some(Arc::new(ReplayCopy::new(limit))) });
        }
        if body.is_end_stream() {
            return Ok(OutboundBody::Buffered(Bytes::new()));
        }
        // Counted (and watched for a stall) as it is read.
        let progress = exchange.body_progress(&body);
        let limited = http_body_util::Limited::new(RequestBody::new(body, progress, idle), MAX_REPLAY_BODY as usize);
        // Boxed, as every rare wait of the pipeline: it would otherwise enlarge every
        // request's future, which hyper moves by value.
        match Box::pin(limited.collect()).await {
            Ok(collected) => Ok(OutboundBody::Buffered(collected.to_bytes())),
            Err(_) => Err(super::downstream_error(exchange, false).unwrap_or(Error::DownstreamBody)),
        }
    }

    /// Whether another attempt can send the body: buffered, not taken yet, back
    /// unread, or copied whole.
    fn replayable(&self) -> bool {
        match self {
            OutboundBody::Buffered(_) => true,
            OutboundBody::Streaming { body, copy } => body.is_some() || copy.as_ref().is_some_and(|c| c.replayable()),
        }
    }

    fn take(&mut self, exchange: &mut Exchange, idle: Option<Duration>) -> Option<RequestBody> {
        let (body, copy) = match self {
            OutboundBody::Buffered(bytes) => return Some(RequestBody::buffered(bytes.clone())),
            OutboundBody::Streaming { body, copy } => (body, copy),
        };
        let body = match body.take() {
            Some(body) => body,
            None => match copy.as_ref()?.take_replay()? {
                Replay::Unread(body) => body,
                Replay::Copy(bytes) => {
                    // Complete: from now on every attempt sends this copy.
                    *self = OutboundBody::Buffered(bytes.clone());
                    return Some(RequestBody::buffered(bytes));
                }
            },
        };
        let progress = exchange.body_progress(&body);
        Some(match copy {
            Some(copy) => RequestBody::teed(body, progress, idle, copy.clone()),
            None => RequestBody::new(body, progress, idle),
        })
    }
}

/// Rolls a percentage (0–100, fractions allowed).
fn roll(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && rand::rng().random::<f64>() * 100.0 < percent)
}

/// What a fault decided.
#[derive(Debug)]
pub enum Injected {
    /// Forward the request (after any delay).
    Proceed,
    /// Answer with this status instead.
    Abort(AbortStatus),
}

/// Applies `fault`: the delay first (flag `DI`), then the abort (flag `FI`), each by its
/// own percentage, as Envoy's fault filter does.
pub async fn inject_fault(context: &ProxyContext, fault: &Fault, exchange: &mut Exchange) -> Injected {
    if let Some(delay) = &fault.delay
        && roll(delay.percent)
    {
        context.stats.routing.faults.with_label_values(&["delay"]).inc();
        exchange.add_flag("DI");
        tokio::time::sleep(delay.fixed_delay).await;
    }
    if let Some(abort) = &fault.abort
        && roll(abort.percent)
    {
        context.stats.routing.faults.with_label_values(&["abort"]).inc();
        exchange.add_flag("FI");
        return Injected::Abort(abort.status);
    }
    Injected::Proceed
}

/// gRPC status for an HTTP status a local reply carries (Envoy's mapping).
pub fn grpc_status_for_http(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// How one attempt failed.
#[derive(Debug)]
pub(super) enum AttemptError {
    /// The exchange failed.
    Failed(Failure),
    /// The per-try timeout passed.
    PerTryTimeout,
    /// The route timeout passed.
    Timeout,
}

/// The request's resilience settings, resolved from the route (or the defaults).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Retries.
    pub retries: RetryPolicy,
    /// Overall timeout (until the response head); `None` = none.
    pub timeout: Option<Duration>,
}

/// When the wait for an upstream's response head gives up: the request's clocks start
/// once the request body was all received (`started`, for a request without one being
/// read), as Envoy's route timeout does: the route `timeout` (`Timeout`) and, from the
/// attempt's start or the body's end, whichever is later, the per-try timeout
/// (`PerTryTimeout`). While the body keeps arriving the clocks wait, so an upload or a
/// client stream may take as long as it keeps coming ([`response_after_the_body`]); a
/// body that moves no byte for a whole clock's length (the upstream reads none of it)
/// starts them from where it stopped.
///
/// A decision rather than a future taking the send future: each await stays where
/// the send future lives, and the request's future (moved by value by hyper) no bigger.
pub(super) enum ResponseClock {
    /// No timeout.
    Unbounded,
    /// Give up at this instant with this error.
    Until(Instant, AttemptError),
    /// The body is still arriving: [`response_after_the_body`], with the shortest clock.
    AfterTheBody(Duration),
}

/// The [`ResponseClock`] of an attempt.
pub(super) fn response_clock(
    body: Option<&BodyProgress>,
    started: Instant,
    timeout: Option<Duration>,
    per_try: Option<Duration>,
) -> ResponseClock {
    let Some(shortest) = [timeout, per_try].into_iter().flatten().min() else {
        return ResponseClock::Unbounded;
    };
    // Most requests: no body, or one read whole already (kept for retries).
    let received = match body {
        None => Some(started),
        Some(body) => body.finished_at().map(|at| at.max(started)),
    };
    match received {
        Some(received) => {
            let attempt_started = if per_try.is_some() { Instant::now() } else { received };
            let (at, error) = due(received, attempt_started, timeout, per_try);
            ResponseClock::Until(at, error)
        }
        None => ResponseClock::AfterTheBody(shortest),
    }
}

/// The earlier clock of the two, from when the body was all received; the route's
/// when both are due together.
fn due(
    received: Instant,
    attempt_started: Instant,
    timeout: Option<Duration>,
    per_try: Option<Duration>,
) -> (Instant, AttemptError) {
    let route = timeout.map(|limit| received + limit);
    let attempt = per_try.map(|limit| received.max(attempt_started) + limit);
    match (route, attempt) {
        (Some(route), Some(attempt)) if attempt < route => (attempt, AttemptError::PerTryTimeout),
        (Some(route), _) => (route, AttemptError::Timeout),
        (None, Some(attempt)) => (attempt, AttemptError::PerTryTimeout),
        (None, None) => (received, AttemptError::Timeout),
    }
}

/// Awaits `$sent` (a send future) under the clocks of [`response_clock`], as a
/// `Result<_, AttemptError>`: expanded where the send future lives, so that the
/// request's future holds it once.
macro_rules! response_within {
    // `$sent` names the send future: moved once, into the wait that takes it (a
    // binding of its own would copy it once more).
    ($sent:ident, $progress:expr, $started:expr, $timeout:expr, $per_try:expr) => {{
        use $crate::forward::upstream::{AttemptError, ResponseClock};
        let (progress, started, timeout, per_try) = ($progress, $started, $timeout, $per_try);
        match $crate::forward::upstream::response_clock(progress.as_deref(), started, timeout, per_try) {
            ResponseClock::Unbounded => $sent.await.map_err(AttemptError::Failed),
            ResponseClock::Until(at, error) => match tokio::time::timeout_at(at.into(), $sent).await {
                Ok(result) => result.map_err(AttemptError::Failed),
                Err(_) => Err(error),
            },
            ResponseClock::AfterTheBody(shortest) => match progress {
                Some(body) => {
                    let waiting = $crate::forward::upstream::response_after_the_body($sent, body, started, timeout, per_try, shortest);
                    Box::pin(waiting).await
                }
                None => $sent.await.map_err(AttemptError::Failed),
            },
        }
    }};
}
pub(super) use response_within;

/// Waits for `sent` under `timeout` and `per_try`, each started when `body` ends (see
/// [`ResponseClock`]); `shortest` is the shorter of them. Call it boxed, as every rare
/// wait of the pipeline.
pub(super) async fn response_after_the_body<T>(
    sent: impl Future<Output = Result<T, Failure>>,
    body: Arc<BodyProgress>,
    started: Instant,
    timeout: Option<Duration>,
    per_try: Option<Duration>,
    shortest: Duration,
) -> Result<T, AttemptError> {
    let attempt_started = Instant::now();
    // A body that moves no byte for `shortest` ends there: the clocks run from its last
    // byte (seen within a sixteenth of `shortest`), not from the end of a whole
    // `shortest` without one, which could be up to twice as late.
    let step = (shortest / 16).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let received = async {
        let (mut seen, mut moved_at) = (body.bytes(), Instant::now());
        loop {
            match tokio::time::timeout(step, body.finished()).await {
                Ok(at) => return at.max(started),
                Err(_) if body.bytes() != seen => (seen, moved_at) = (body.bytes(), Instant::now()),
                Err(_) if moved_at.elapsed() >= shortest => return moved_at.max(started),
                Err(_) => {}
            }
        }
    };
    let clocks = async {
        let (at, error) = due(received.await, attempt_started, timeout, per_try);
        tokio::time::sleep_until(at.into()).await;
        error
    };
    tokio::select! {
        biased;
        result = sent => result.map_err(AttemptError::Failed),
        error = clocks => Err(error),
    }
}

/// Sends the request to `cluster` with retries, returning the response head and what
/// it holds of the cluster.
pub async fn send(
    context: &ProxyContext,
    cluster: &Arc<Cluster>,
    parts: &Parts,
    body: &mut OutboundBody,
    plan: &Plan,
    exchange: &mut Exchange,
) -> Result<Upstream, Error> {
    let started = Instant::now();
    // The route timeout runs from the end of the request body (see `response_within`);
    // while it is still arriving, the time left is counted from now.
    let deadline = |exchange: &Exchange| {
        let received = exchange.request_body_progress().map_or(Some(started), |body| body.finished_at());
        plan.timeout.map(|t| received.unwrap_or_else(Instant::now).max(started) + t)
    };
    let http2 = parts.version == Version::HTTP_2;
    let retry_on = &plan.retries.retry_on;
    let mut retry_permit = None;
    // Endpoints of the attempts so far: a retry goes elsewhere when it can. Allocated
    // only when a request is retried.
    let mut tried: Vec<usize> = Vec::new();
    exchange.upstream_cluster.clone_from(&cluster.name);
    loop {
        let Some(lease) = cluster.pick_avoiding(&tried) else {
            return Err(Error::NoHealthyUpstream { service: cluster.name.clone() });
        };
        exchange.upstream_address = Some(lease.endpoint().address.clone());
        exchange.destination = Some(lease.endpoint().workload.clone());
        exchange.destination_cluster = Some(lease.endpoint().cluster.clone().unwrap_or_else(|| context.cluster.clone()));
        let admission = cluster
            .admit(http2, deadline(exchange))
            .await
            .map_err(|overflow| match overflow {
                Overflow::TimedOut => Error::UpstreamTimeout { upstream: exchange.upstream_address().to_owned() },
                overflow => Error::Overflow { cluster: cluster.name.clone(), limit: overflow.limit() },
            })?;
        let Some(request_body) = body.take(exchange, context.body_idle_timeout_for(exchange)) else {
            // A streamed body was already sent once: nothing to retry with.
            return Err(Error::DownstreamBody);
        };
        let request = upstream_request(parts, request_body, cluster.close_connection_after() && !http2)?;
        exchange.attempts += 1;
        let pool = cluster.pool.as_ref().unwrap_or(&context.upstream);
        let sent = pool.send(exchange.upstream_address(), request);
        let progress = exchange.request_body_progress();
        let result = response_within!(sent, progress, started, plan.timeout, plan.retries.per_try_timeout);
        let retries_left = exchange.attempts <= plan.retries.attempts;
        let deadline = deadline(exchange);
        let time_left = deadline.is_none_or(|d| Instant::now() < d);
        let wants_retry = retries_left && time_left;
        let can_retry = wants_retry && body.replayable();
        let skipped_body = || context.stats.routing.retries.with_label_values(&["skipped_body"]).inc();
        match result {
            Ok(upstream) => {
                let status = upstream.response.status().as_u16();
                lease.record(Outcome::Status(status));
                if retry_on.retries_status(status, grpc_status(upstream.response.headers())) {
                    if can_retry {
                        if let Some(permit) = retry_slot(cluster, &mut retry_permit) {
                            retry_permit = Some(permit);
                            tried.push(lease.index());
                            // Read while the retry backs off and goes ahead, not before it.
                            tokio::spawn(drain_for_reuse(upstream));
                            Box::pin(retry_backoff(context, exchange.attempts, deadline)).await;
                            continue;
                        }
                        exchange.add_flag("UO");
                    } else if wants_retry {
                        // A streamed body that was read and did not end within the
                        // replay limit: this response stands.
                        skipped_body();
                    } else if plan.retries.attempts > 0 && !retries_left {
                        context.stats.routing.retries.with_label_values(&["exhausted"]).inc();
                        exchange.add_flag("URX");
                    }
                }
                exchange.upstream_hold = Some(UpstreamHold { admission, lease, retry: retry_permit });
                return Ok(upstream);
            }
            Err(error) => {
                // The request body broke or stalled: the downstream's failure, which says
                // nothing of the endpoint (no outlier feedback) and is not retried.
                let timed_out = matches!(error, AttemptError::PerTryTimeout | AttemptError::Timeout);
                if let Some(downstream) = super::downstream_error(exchange, timed_out) {
                    debug!(cluster = %cluster.name, upstream = exchange.upstream_address(), attempt = exchange.attempts, error = ?error, "request body failed");
                    return Err(downstream);
                }
                lease.record(Outcome::LocalFailure);
                let retriable = match &error {
                    AttemptError::Failed(Failure::Connect(_)) => retry_on.retries_connect_failure(),
                    AttemptError::Failed(Failure::Reset(_)) => retry_on.retries_reset(),
                    AttemptError::PerTryTimeout => retry_on.retries_per_try_timeout(),
                    AttemptError::Timeout => false,
                };
                debug!(cluster = %cluster.name, upstream = exchange.upstream_address(), attempt = exchange.attempts, error = ?error, "upstream attempt failed");
                if retriable && can_retry {
                    if let Some(permit) = retry_slot(cluster, &mut retry_permit) {
                        if matches!(error, AttemptError::Failed(Failure::Connect(_))) {
                            // Each connection that failed counts, the last in `failed`.
                            context.stats.direction(exchange.direction).upstream_connect_failures.inc();
                        }
                        retry_permit = Some(permit);
                        tried.push(lease.index());
                        drop((admission, lease));
                        Box::pin(retry_backoff(context, exchange.attempts, deadline)).await;
                        continue;
                    }
                    exchange.add_flag("UO");
                } else if retriable && wants_retry {
                    skipped_body();
                } else if retriable && plan.retries.attempts > 0 && !retries_left {
                    context.stats.routing.retries.with_label_values(&["exhausted"]).inc();
                    exchange.add_flag("URX");
                }
                return Err(match error {
                    AttemptError::Failed(failure) => super::failed(context, exchange, failure),
                    AttemptError::PerTryTimeout | AttemptError::Timeout => {
                        Error::UpstreamTimeout { upstream: exchange.upstream_address().to_owned() }
                    }
                });
            }
        }
    }
}

/// Largest body of a response given up for a retry that is read so that its
/// connection can be reused (a `503` page, a gRPC status); longer ones close it.
pub const MAX_DRAIN: u64 = 16 * 1024;
/// How long reading such a body may take. An app that writes a response's head and body
/// apart (with Nagle's algorithm on, as Python's and many servers' sockets have it) can
/// send the body a delayed ACK (40 ms on Linux) after the head: cut off before it, the
/// upstream's proxy records its caller gone (`DC`) for a response the app gave in full.
pub const DRAIN_WAIT: Duration = Duration::from_millis(100);

/// Reads the short body of a response given up for a retry, so its connection goes
/// back to the pool instead of closing: retries happen when the upstream is
/// struggling, the worst time to open new connections to it.
async fn drain_for_reuse(upstream: Upstream) {
    let Upstream { response, connection } = upstream;
    // A shared h2c connection carries the next request whatever this stream does.
    let Some(connection) = connection.filter(|c| !c.is_shared()) else { return };
    let body = response.into_body();
    if body.size_hint().upper().is_none_or(|bytes| bytes > MAX_DRAIN) {
        return;
    }
    if let Ok(Ok(_)) = tokio::time::timeout(DRAIN_WAIT, body.collect()).await {
        connection.release();
    }
}

/// The `maxRetries` slot of a request's next retry: the one its previous retry holds,
/// or a new one. A request retrying in turn has one retry outstanding at a time, as
/// Envoy counts them, so its own earlier retry never uses up the budget of the next.
fn retry_slot(cluster: &Arc<Cluster>, held: &mut Option<RetryPermit>) -> Option<RetryPermit> {
    held.take().or_else(|| cluster.try_retry())
}

async fn retry_backoff(context: &ProxyContext, attempt: u32, deadline: Option<Instant>) {
    context.stats.routing.retries.with_label_values(&["sent"]).inc();
    let ceiling = RETRY_BACKOFF_BASE
        .saturating_mul((1u32 << attempt.min(10)).saturating_sub(1))
        .min(RETRY_BACKOFF_BASE * 10);
    let wait = ceiling.mul_f64(rand::rng().random::<f64>());
    let wait = match deadline {
        Some(deadline) => wait.min(deadline.saturating_duration_since(Instant::now())),
        None => wait,
    };
    tokio::time::sleep(wait).await;
}

/// The request for one attempt: the original head (the pool sets the URI's form for
/// the connection and the endpoint).
fn upstream_request(parts: &Parts, body: RequestBody, close: bool) -> Result<Request<RequestBody>, Error> {
    let mut builder = Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).version(parts.version);
    if let Some(headers) = builder.headers_mut() {
        headers.clone_from(&parts.headers);
        if close {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    Ok(builder.body(body)?)
}

/// `reviews:9080` → `reviews-shadow:9080` (Envoy's shadow host).
pub fn shadow_authority(authority: &str) -> String {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => format!("{host}-shadow:{port}"),
        _ => format!("{authority}-shadow"),
    }
}

/// Sends a copy of the request to the mirror destination, fire and forget: bounded in
/// flight, response discarded, never awaited by the caller.
pub fn mirror(context: &Arc<ProxyContext>, table: &RoutingTable, mirror: &Mirror, parts: &Parts, body: &OutboundBody) {
    if !roll(mirror.percent) {
        return;
    }
    let dropped = || context.stats.routing.mirrors.with_label_values(&["dropped"]).inc();
    let OutboundBody::Buffered(bytes) = body else {
        dropped();
        return;
    };
    let Some(cluster) = table.cluster(&mirror.host, mirror.subset.as_deref()) else {
        dropped();
        return;
    };
    let Ok(slot) = context.mirror_slots.clone().try_acquire_owned() else {
        dropped();
        return;
    };
    let Some(lease) = cluster.pick() else {
        dropped();
        return;
    };
    let Ok(mut request) = upstream_request(parts, RequestBody::buffered(bytes.clone()), false) else {
        dropped();
        return;
    };
    // As the caller named the service: `Host`, or an HTTP/2 request's `:authority`.
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
        .map_or_else(|| mirror.host.clone(), str::to_owned);
    if let Ok(value) = HeaderValue::from_str(&shadow_authority(&host)) {
        request.headers_mut().insert(http::header::HOST, value);
    }
    let context = context.clone();
    let timeout = context.request_timeout.unwrap_or(Duration::from_secs(15));
    let pool = cluster.pool.as_ref().unwrap_or(&context.upstream).clone();
    tokio::spawn(async move {
        let _slot = slot;
        let result = tokio::time::timeout(timeout, async {
            let Upstream { response, connection } = pool.send(&lease.endpoint().address, request).await?;
            lease.record(Outcome::Status(response.status().as_u16()));
            // Read and discard the body, a frame at a time (a large answer is never
            // held whole), so the connection goes back to the pool.
            let mut body = response.into_body();
            let mut complete = true;
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    complete = false;
                    break;
                }
            }
            if complete && let Some(connection) = connection {
                connection.release();
            }
            Ok::<_, Failure>(())
        })
        .await;
        let result = if matches!(result, Ok(Ok(()))) { "sent" } else { "failed" };
        context.stats.routing.mirrors.with_label_values(&[result]).inc();
    });
}

/// Status an injected abort answers HTTP callers with.
pub fn abort_http_status(status: AbortStatus) -> StatusCode {
    match status {
        AbortStatus::Http(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        AbortStatus::Grpc(_) => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests;
