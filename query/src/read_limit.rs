//! [`ReadLimit`]: how many trace reads (searches, fetches, dependencies) run at once.
//! Each holds up to `[query] max_spans_per_response` spans and their JSON at its peak,
//! so this bounds the query service's memory; a read beyond it waits its turn, up to
//! [`READ_WAIT`], then is answered 503 naming the setting. A read holds its slot until
//! its answer is sent (or its connection closed, at the latest after
//! `http.write_timeout`), since until then the answer is in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use crate::error::{ApiError, V3Error};

/// How long a read waits for its turn before it is refused.
pub const READ_WAIT: Duration = Duration::from_secs(30);

/// The routes that read traces, relative to the base path.
const READ_ROUTES: [&str; 7] = [
    "/api/traces",
    "/api/traces/{trace_id}",
    "/api/dependencies",
    "/api/v3/traces",
    "/api/v3/traces/{trace_id}",
    "/api/v3/trace-summaries",
    "/api/v3/dependencies",
];

/// The bound on trace reads in flight, and what it refused. Cheap to clone; clones
/// share one bound.
#[derive(Clone, Debug)]
pub struct ReadLimit {
    permits: Arc<Semaphore>,
    max: usize,
    wait: Duration,
    refused: Arc<AtomicU64>,
}

impl ReadLimit {
    /// At most `max` reads at once (at least one); others wait up to `wait`.
    pub fn new(max: usize, wait: Duration) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ReadLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
            wait,
            refused: Arc::default(),
        }
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
    if !READ_ROUTES.iter().any(|r| route.ends_with(r)) {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit.wait, limit.permits.clone().acquire_owned()).await {
        // The slot goes with the answer's body, freed once the body is sent or
        // dropped: an answer built but not yet read by its client still holds its
        // memory, and so its slot.
        Ok(Ok(permit)) => next.run(request).await.map(|body| {
            Body::new(body.map_frame(move |frame| {
                let _slot = &permit;
                frame
            }))
        }),
        _ => {
            let refused = limit.refused.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                route,
                max_concurrent_reads = limit.max,
                waited = ?limit.wait,
                refused,
                "trace read refused: the others in flight did not end in time"
            );
            let error = ApiError::Unavailable(format!(
                "{} trace reads are running ([query] max_concurrent_reads) and this one waited \
                 {} s for its turn; retry later",
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

#[cfg(test)]
mod tests;
