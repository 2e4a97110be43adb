//! The proxy's defence against HTTP/2 "rapid reset" floods that wait a little before
//! each reset (CVE-2023-44487 and its variants), as Envoy's: a connection on which at
//! least [`MIN_STREAMS`] streams started and more than half of them were reset by the
//! client within [`PREMATURE`] of starting is closed. The h2 crate already ends a
//! connection whose streams are reset before the proxy takes them; these are reset
//! after, once the proxy has begun forwarding them, so each would cost the upstream a
//! request.
//!
//! A stream counts as reset when its request is dropped before its response has ended
//! (the response future, or the response body before its last frame), which is what a
//! client's `RST_STREAM` does. Only HTTP/2 streams are watched: an HTTP/1.1 connection
//! has one request at a time, and a client that drops it closes the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::Response;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// Streams a connection must have started before its resets can close it.
pub const MIN_STREAMS: u64 = 100;

/// A reset this soon after the stream started is premature.
pub const PREMATURE: Duration = Duration::from_secs(1);

/// One connection's streams and premature resets; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Resets(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    streams: AtomicU64,
    premature: AtomicU64,
    flooded: AtomicBool,
    flood: Notify,
}

impl Resets {
    /// A stream starts; its guard tells how it ended.
    pub fn started(&self) -> StreamGuard {
        self.0.streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            resets: self.clone(),
            started: Instant::now(),
            ended: false,
        }
    }

    fn reset_early(&self) {
        let premature = self.0.premature.fetch_add(1, Ordering::Relaxed) + 1;
        let streams = self.0.streams.load(Ordering::Relaxed);
        if streams >= MIN_STREAMS
            && premature * 2 > streams
            && !self.0.flooded.swap(true, Ordering::Relaxed)
        {
            self.0.flood.notify_one();
        }
    }

    /// Resolves once the connection's client has reset too many streams too early.
    pub async fn flooded(&self) {
        self.0.flood.notified().await;
    }

    /// Streams started and reset prematurely so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.0.streams.load(Ordering::Relaxed),
            self.0.premature.load(Ordering::Relaxed),
        )
    }
}

/// Notes, when dropped, a stream that did not end within [`PREMATURE`] of starting.
#[derive(Debug)]
pub struct StreamGuard {
    resets: Resets,
    started: Instant,
    ended: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.ended && self.started.elapsed() < PREMATURE {
            self.resets.reset_early();
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response future under its [`StreamGuard`], which moves to the
    /// response body once the head is ready.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        guard: Option<StreamGuard>,
    }
}

impl<F> Tracked<F> {
    /// `inner` under `guard` (none: a stream not watched).
    pub fn new(inner: F, guard: Option<StreamGuard>) -> Self {
        Tracked { inner, guard }
    }
}

impl<F, B, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<Guarded<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Ready(response) => response,
            Poll::Pending => return Poll::Pending,
        };
        let mut guard = this.guard.take();
        Poll::Ready(response.map(|response| {
            response.map(|inner| {
                if inner.is_end_stream()
                    && let Some(guard) = guard.as_mut()
                {
                    guard.ended = true;
                }
                Guarded { inner, guard }
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells its stream's guard whether it reached its end.
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        guard: Option<StreamGuard>,
    }
}

impl<B: Body> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        // The end (hyper stops polling once `is_end_stream` says so), or an error of
        // the upstream's side: not a reset of the client's.
        let ended = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended && let Some(guard) = this.guard.as_mut() {
            guard.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
