//! A bound on the ingest request bytes held in memory at once, across the three ingest
//! servers of a process (`[ingest] max_inflight_bytes`).
//!
//! Each request's body is read under a [`Hold`]: every frame takes its size from the
//! shared budget as it arrives, and the hold gives it all back when the request has
//! been answered (stored or refused). A frame that does not fit ends the request with
//! 503 / `UNAVAILABLE` and a retry delay, as an overloaded store does, counted in
//! `meshtel_ingest_refused_total{reason="overloaded"}`: many clients uploading at once
//! (each request may hold up to `max_request_bytes` as received, and as much again once
//! decompressed) cannot grow the collector's memory past the bound.
//!
//! The WAL write queue (`[store] max_queued_bytes`) bounds what waits to be written
//! after; this bounds what is being received and decoded before.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
#[cfg(test)]
use bytes::Bytes;
use bytesize::ByteSize;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Semaphore;

use crate::error::Error;

/// How long a refused client is told to wait: requests in flight finish in
/// milliseconds unless their bodies arrive slowly.
pub const INFLIGHT_RETRY_AFTER: Duration = Duration::from_secs(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The shared budget of request bytes; cheap to clone.
#[derive(Clone, Debug)]
pub struct InflightBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    permits: Semaphore,
    limit: ByteSize,
    refused: AtomicU64,
}

impl InflightBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: ByteSize) -> Self {
        let permits = usize::try_from(limit.as_u64())
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        InflightBudget {
            inner: Arc::new(BudgetInner {
                permits: Semaphore::new(permits),
                limit,
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// A hold for one request, taking nothing yet.
    pub fn hold(&self) -> Hold {
        Hold {
            inner: Arc::new(HoldInner {
                budget: self.clone(),
                bytes: AtomicUsize::new(0),
            }),
        }
    }

    /// Bytes not held by any request.
    pub fn available(&self) -> usize {
        self.inner.permits.available_permits()
    }

    /// The bound.
    pub fn limit(&self) -> ByteSize {
        self.inner.limit
    }

    /// Requests refused because the budget was spent, since start.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// The error a request gets when a frame of it does not fit.
    pub fn exhausted(&self) -> Error {
        Error::InflightBytesExhausted {
            limit: self.inner.limit,
            retry_after: INFLIGHT_RETRY_AFTER,
        }
    }
}

/// What one request holds of the budget; given back when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Hold {
    inner: Arc<HoldInner>,
}

#[derive(Debug)]
struct HoldInner {
    budget: InflightBudget,
    bytes: AtomicUsize,
}

impl Drop for HoldInner {
    fn drop(&mut self) {
        let bytes = *self.bytes.get_mut();
        if bytes > 0 {
            self.budget.inner.permits.add_permits(bytes);
        }
    }
}

impl Hold {
    /// Takes `bytes` more from the budget; `false` (taking nothing) when they do not
    /// fit. The first refusal of a request is counted.
    pub fn take(&self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let budget = &self.inner.budget.inner;
        let taken = u32::try_from(bytes)
            .ok()
            .and_then(|n| budget.permits.try_acquire_many(n).ok());
        match taken {
            Some(permits) => {
                permits.forget();
                self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
                true
            }
            None => {
                budget.refused.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Gives `bytes` this hold took back to the budget (a long-lived stream's message
    /// that has arrived whole and gone on to its handler).
    pub fn give_back(&self, bytes: usize) {
        let held = &self.inner.bytes;
        let given = bytes.min(held.load(Ordering::Relaxed));
        if given > 0 {
            held.fetch_sub(given, Ordering::Relaxed);
            self.inner.budget.inner.permits.add_permits(given);
        }
    }

    /// Bytes this request holds.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// The budget this hold takes from.
    pub fn budget(&self) -> &InflightBudget {
        &self.inner.budget
    }

    /// `body` taking each frame's size from this hold as it arrives; a frame that does
    /// not fit ends it with `refusal` (the protocol's own error, so that the server
    /// answers 503 or `UNAVAILABLE` rather than a read error).
    pub fn body<B>(&self, body: B, refusal: fn(&InflightBudget) -> BoxError) -> HeldBody<B> {
        HeldBody {
            inner: Box::pin(body),
            hold: self.clone(),
            refusal,
            failed: false,
        }
    }
}

/// A request body read under a [`Hold`].
pub struct HeldBody<B> {
    inner: Pin<Box<B>>,
    hold: Hold,
    refusal: fn(&InflightBudget) -> BoxError,
    failed: bool,
}

impl<B> Body for HeldBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, Buf::remaining);
                if self.hold.take(size) {
                    Poll::Ready(Some(Ok(frame)))
                } else {
                    self.failed = true;
                    Poll::Ready(Some(Err((self.refusal)(self.hold.budget()))))
                }
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The refusal of an HTTP body: the ingest error itself, which the body reader finds.
pub fn http_refusal(budget: &InflightBudget) -> BoxError {
    Box::new(budget.exhausted())
}

/// The refusal of a gRPC body: a `tonic::Status` (`UNAVAILABLE` with a retry delay),
/// which tonic answers as it is when decoding the message fails.
pub fn grpc_refusal(budget: &InflightBudget) -> BoxError {
    Box::new(budget.exhausted().grpc_status())
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    #[tokio::test]
    async fn frames_take_from_the_budget_until_the_request_is_done() {
        let budget = InflightBudget::new(ByteSize::b(100));
        let first = budget.hold();
        let body = first.body(Full::new(Bytes::from(vec![0u8; 60])), http_refusal);
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), 60);
        assert_eq!(first.bytes(), 60);
        assert_eq!(budget.available(), 40);

        // A second request's frame that does not fit ends its body with the refusal.
        let second = budget.hold();
        let frames = futures::stream::iter(vec![
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![1u8; 30]))),
            Ok(Frame::data(Bytes::from(vec![2u8; 30]))),
        ]);
        let error = second
            .body(StreamBody::new(frames), http_refusal)
            .collect()
            .await
            .err()
            .unwrap();
        let refused = error.downcast_ref::<Error>().unwrap();
        assert!(
            matches!(refused, Error::InflightBytesExhausted { .. }),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("max_inflight_bytes"),
            "{refused}"
        );
        assert_eq!(budget.refused(), 1);

        // The second request holds its first frame until it is answered.
        assert_eq!(second.bytes(), 30);
        assert_eq!(budget.available(), 10);
        drop(second);
        assert_eq!(budget.available(), 40);
        drop(first);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn a_grpc_refusal_is_an_unavailable_status_with_a_delay() {
        let budget = InflightBudget::new(ByteSize::b(10));
        let hold = budget.hold();
        let error = hold
            .body(Full::new(Bytes::from(vec![0u8; 11])), grpc_refusal)
            .collect()
            .await
            .err()
            .unwrap();
        let status = error.downcast_ref::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("retry after 1000 ms"),
            "{status:?}"
        );
        assert_eq!(budget.available(), 10);
    }
}
