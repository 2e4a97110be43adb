//! [`ReadLimit`]: how many trace reads (searches, fetches) and reads of the quota
//! policies and their audit run at once. Each holds up to `[query]
//! max_spans_per_response` spans and their JSON at its peak (a policy list or audit
//! page up to the 16 MiB of the policy set), so this bounds the query service's memory; a read beyond it waits its turn, up to
//! [`READ_WAIT`], then is answered 503 naming the setting. A read holds its slot until
//! its answer is sent (or its connection closed), since until then the answer is in
//! memory; over HTTP/2, an answer its client leaves unread for the unread timeout
//! (the binary's `http.write_timeout`) is dropped with its slot, and its stream ends
//! in an error: a client that grants no flow-control window never blocks a socket
//! write (over HTTP/1 it does, and the listener's stalled-write bound applies); see
//! [`crate::unread`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meshtel_model::log_window::LogWindow;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, V3Error};
use crate::unread::{self, Answer, Unread};

/// How long a read waits for its turn before it is refused.
pub const READ_WAIT: Duration = Duration::from_secs(30);

/// The routes that read traces, relative to the base path. Span-based dependencies
/// are not among them: they take turns of their own in the store, one at a time, and
/// one waiting there must not hold a turn that searches and fetches need.
const READ_ROUTES: [&str; 5] = [
    "/api/traces",
    "/api/traces/{trace_id}",
    "/api/v3/traces",
    "/api/v3/traces/{trace_id}",
    "/api/v3/trace-summaries",
];

/// The quota administration's GET routes whose answers grow with the policy set (to
/// 16 MiB): without a bound, a few hundred clients that read nothing of them held
/// gigabytes.
const POLICY_LIST_ROUTES: [&str; 2] = ["/api/quotas", "/api/quotas/audit"];

/// The bound on trace reads in flight, and what it refused. Cheap to clone; clones
/// share one bound.
#[derive(Clone, Debug)]
pub struct ReadLimit {
    permits: Arc<Semaphore>,
    max: usize,
    wait: Duration,
    unread_timeout: Option<Duration>,
    refused: Arc<AtomicU64>,
    dropped_unread: Arc<AtomicU64>,
    /// One WARN per interval for refusals, which a crowd of clients can make by the
    /// hundred a second.
    refusal_log: Arc<Mutex<LogWindow>>,
}

impl ReadLimit {
    /// At most `max` reads at once (at least one); others wait up to `wait`.
    pub fn new(max: usize, wait: Duration) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ReadLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
            wait,
            unread_timeout: None,
            refused: Arc::default(),
            dropped_unread: Arc::default(),
            refusal_log: Arc::default(),
        }
    }

    /// Drops an answer, and frees its slot, when its client has read nothing of it
    /// for `timeout` while it was ready to send.
    #[must_use]
    pub fn with_unread_timeout(mut self, timeout: Duration) -> Self {
        self.unread_timeout = Some(timeout);
        self
    }

    /// Answers dropped because their client read nothing of them in time.
    pub fn dropped_unread(&self) -> u64 {
        self.dropped_unread.load(Ordering::Relaxed)
    }

    /// Reads refused because they waited [`READ_WAIT`] without a turn.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Reads running now.
    pub fn in_flight(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// Middleware: runs a trace read when it gets a turn, answers 503 when it waited too
/// long; other routes pass straight through.
pub(crate) async fn limit_reads(
    State(limit): State<ReadLimit>,
    request: Request,
    next: Next,
) -> Response {
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let lists_policies = matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        && POLICY_LIST_ROUTES.iter().any(|r| route.ends_with(r));
    if !lists_policies && !READ_ROUTES.iter().any(|r| route.ends_with(r)) {
        return next.run(request).await;
    }
    // Over HTTP/1 a client that reads nothing blocks the socket, and the listener's
    // stalled-write bound lets it go; the server asks for pieces only as the socket
    // drains, so a slow but steady reader would look stalled here.
    let watch = request.version() == http::Version::HTTP_2;
    match tokio::time::timeout(limit.wait, limit.permits.clone().acquire_owned()).await {
        // The slot goes with the answer's body, freed once the body is sent or
        // dropped: an answer built but not yet read by its client still holds its
        // memory, and so its slot.
        Ok(Ok(permit)) => next
            .run(request)
            .await
            .map(|body| SlotBody::wrap(body, permit, &limit, watch)),
        _ => {
            let refused = limit.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(since_last) = limit.refusal_log.lock().note(Instant::now()) {
                tracing::warn!(
                    route,
                    max_concurrent_reads = limit.max,
                    waited = ?limit.wait,
                    since_last,
                    refused,
                    "trace reads refused: the others in flight did not end in time"
                );
            }
            let error = ApiError::Unavailable(format!(
                "{} reads of traces or quota policies are running ([query] \
                 max_concurrent_reads) and this one waited {} s for its turn; retry later",
                limit.max,
                limit.wait.as_secs()
            ));
            if route.contains("/api/v3/") {
                V3Error(error).into_response()
            } else {
                error.into_response()
            }
        }
    }
}

/// The answer's body, holding the read's slot until it ends or is dropped.
struct SlotBody;

impl SlotBody {
    fn wrap(body: Body, permit: OwnedSemaphorePermit, limit: &ReadLimit, watch: bool) -> Body {
        let (body, answer) = unread::watch(body, permit);
        if let Some(timeout) = limit.unread_timeout.filter(|_| watch) {
            tokio::spawn(drop_when_unread(
                answer,
                timeout,
                limit.dropped_unread.clone(),
            ));
        }
        body
    }
}

/// Drops the answer and its slot once the server has not asked for a frame for
/// `timeout` while the answer had one ready; ends with the answer.
async fn drop_when_unread(
    answer: Weak<Mutex<Answer<OwnedSemaphorePermit>>>,
    timeout: Duration,
    dropped: Arc<AtomicU64>,
) {
    let mut deadline = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(deadline.into()).await;
        let Some(answer) = answer.upgrade() else {
            return;
        };
        match answer.lock().check(timeout, Instant::now()) {
            Unread::Ended => return,
            Unread::Live(next) => deadline = next,
            Unread::Dropped => {
                dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    ?timeout,
                    "a trace read's answer went unread; dropped with its slot"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
