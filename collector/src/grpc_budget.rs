//! Bounds on the gRPC messages the collector's port 4317 receives outside OTLP
//! `Export` (which holds its whole request itself, see `crate::otlp_grpc`): Report and
//! WatchQuotas streams, Check, Envoy rate limit and Istio's Mixer calls.
//!
//! A message's bytes are taken from the shared in-flight budget
//! (`[ingest] max_inflight_bytes`) as its frames arrive and given back once it has
//! arrived whole, so that a long-lived stream holds only the message it is receiving;
//! a frame that does not fit ends the call `UNAVAILABLE` with a retry delay. A message
//! that has begun to arrive must end within `http.body_read_timeout`, or the call ends
//! `DEADLINE_EXCEEDED`: a stream may stay open and idle, but not hold half a message.
//! The long-lived streams (Report, WatchQuotas) are bounded in number, all connections
//! together (`[report] max_streams`): one past the bound is refused `UNAVAILABLE`.
//!
//! ```text
//!   frame ─► take its bytes ─► walk the 5-byte gRPC prefixes ─► a message ends? give back
//!              └─ no room: UNAVAILABLE            └─ begun and not ended in time: DEADLINE_EXCEEDED
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::inflight::{Hold, InflightBudget, grpc_refusal};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Calls ended by the bounds, since start, and the long-lived streams open; cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct GrpcMessageStats {
    inner: Arc<StatsInner>,
    streams: Arc<Semaphore>,
    max_streams: usize,
}

impl GrpcMessageStats {
    fn new(max_streams: usize) -> Self {
        let max_streams = max_streams.clamp(1, Semaphore::MAX_PERMITS);
        GrpcMessageStats {
            inner: Arc::default(),
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
        }
    }

    /// Report and WatchQuotas streams open now.
    pub fn open_streams(&self) -> usize {
        self.max_streams - self.streams.available_permits()
    }
}

#[derive(Debug, Default)]
struct StatsInner {
    refused: AtomicU64,
    timed_out: AtomicU64,
    streams_refused: AtomicU64,
}

impl GrpcMessageStats {
    /// Calls ended `UNAVAILABLE` because a message did not fit the in-flight budget.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Calls ended `DEADLINE_EXCEEDED` because a message began and did not end in time.
    pub fn timed_out(&self) -> u64 {
        self.inner.timed_out.load(Ordering::Relaxed)
    }

    /// Long-lived streams refused because `[report] max_streams` were open.
    pub fn streams_refused(&self) -> u64 {
        self.inner.streams_refused.load(Ordering::Relaxed)
    }
}

/// The tower layer of the bounds, for `tonic::transport::Server::layer`.
#[derive(Clone, Debug)]
pub struct GrpcMessageBudgetLayer {
    budget: InflightBudget,
    timeout: Duration,
    skip_path: &'static str,
    stats: GrpcMessageStats,
}

/// The long-lived calls, bounded in number.
const STREAM_PATHS: [&str; 2] = [
    "/meshtel.mixer.v1.Mixer/Report",
    "/meshtel.mixer.v1.Mixer/WatchQuotas",
];

impl GrpcMessageBudgetLayer {
    /// Bounds every call but those to `skip_path` by `budget`, each message's arrival
    /// by `timeout`, and the long-lived streams open at once by `max_streams`.
    pub fn new(
        budget: InflightBudget,
        timeout: Duration,
        skip_path: &'static str,
        max_streams: usize,
    ) -> Self {
        GrpcMessageBudgetLayer {
            budget,
            timeout,
            skip_path,
            stats: GrpcMessageStats::new(max_streams),
        }
    }

    /// What the bounds ended, for `/metrics`.
    pub fn stats(&self) -> GrpcMessageStats {
        self.stats.clone()
    }
}

impl<S> tower::Layer<S> for GrpcMessageBudgetLayer {
    type Service = GrpcMessageBudget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMessageBudget {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer makes.
#[derive(Clone, Debug)]
pub struct GrpcMessageBudget<S> {
    inner: S,
    layer: GrpcMessageBudgetLayer,
}

type GrpcResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcMessageBudget<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = GrpcResponse>,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = Call<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == self.layer.skip_path {
            return Call::plain(self.inner.call(request), None);
        }
        let layer = &self.layer;
        let mut stream_permit = None;
        if STREAM_PATHS.contains(&request.uri().path()) {
            match layer.stats.streams.clone().try_acquire_owned() {
                Ok(permit) => stream_permit = Some(permit),
                Err(_) => {
                    layer
                        .stats
                        .inner
                        .streams_refused
                        .fetch_add(1, Ordering::Relaxed);
                    let status = tonic::Status::unavailable(format!(
                        "{} Report and WatchQuotas streams are open, as many as [report] \
                         max_streams allows; retry later",
                        layer.stats.max_streams
                    ));
                    return Call::Refused {
                        response: Some(status.into_http()),
                    };
                }
            }
        }
        let request = request.map(|body| {
            tonic::body::Body::new(MessageBoundBody {
                inner: body,
                hold: layer.budget.hold(),
                timeout: layer.timeout,
                stats: layer.stats.clone(),
                framing: Framing::default(),
                deadline: None,
                failed: false,
            })
        });
        Call::plain(self.inner.call(request), stream_permit)
    }
}

pin_project_lite::pin_project! {
    /// A call through the layer: answered by the service, its long-lived stream
    /// holding a turn until its answer ends, or refused at once.
    #[project = CallProjection]
    pub enum Call<F> {
        /// Answered by the service.
        Answered {
            #[pin]
            inner: F,
            turn: Option<OwnedSemaphorePermit>,
        },
        /// Refused before the service.
        Refused {
            response: Option<GrpcResponse>,
        },
    }
}

impl<F> Call<F> {
    fn plain(inner: F, turn: Option<OwnedSemaphorePermit>) -> Self {
        Call::Answered { inner, turn }
    }
}

impl<F, E> Future for Call<F>
where
    F: Future<Output = Result<GrpcResponse, E>>,
{
    type Output = Result<GrpcResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CallProjection::Answered { inner, turn } => {
                let answered = std::task::ready!(inner.poll(cx));
                Poll::Ready(answered.map(|response| match turn.take() {
                    // The stream's turn ends with its answer's body.
                    Some(turn) => response.map(|body| {
                        tonic::body::Body::new(TurnBody {
                            inner: body,
                            _turn: turn,
                        })
                    }),
                    None => response,
                }))
            }
            CallProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

/// A long-lived stream's answer, holding its turn.
struct TurnBody {
    inner: tonic::body::Body,
    _turn: OwnedSemaphorePermit,
}

impl Body for TurnBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a body is in its stream of length-prefixed gRPC messages.
#[derive(Debug, Default)]
struct Framing {
    /// Prefix bytes of the next message seen so far (0 to 4).
    prefix: [u8; 5],
    prefix_len: usize,
    /// Payload bytes of the current message still to come; 0 while in a prefix.
    remaining: usize,
    /// Bytes of the current, unfinished message received (its prefix included).
    current: usize,
}

impl Framing {
    /// Walks `data`; gives the bytes of the messages it finished (to give back) and
    /// whether one began.
    fn advance(&mut self, mut data: &[u8]) -> (usize, bool) {
        let (mut finished, mut began) = (0, false);
        while !data.is_empty() {
            if self.current == 0 {
                began = true;
            }
            let taken = if self.remaining == 0 {
                let taken = (5 - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + taken]
                    .copy_from_slice(&data[..taken]);
                self.prefix_len += taken;
                taken
            } else {
                let taken = self.remaining.min(data.len());
                self.remaining -= taken;
                taken
            };
            self.current += taken;
            data = &data[taken..];
            let mut ended = self.prefix_len == 0 && self.remaining == 0;
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                self.remaining = u32::from_be_bytes([a, b, c, d]) as usize;
                ended = self.remaining == 0;
            }
            if ended {
                finished += std::mem::take(&mut self.current);
            }
        }
        (finished, began)
    }
}

/// A request body whose messages are bounded as the module says.
struct MessageBoundBody {
    inner: tonic::body::Body,
    hold: Hold,
    timeout: Duration,
    stats: GrpcMessageStats,
    framing: Framing,
    /// When the message being received must have ended.
    deadline: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl MessageBoundBody {
    fn fail(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failed = true;
        self.deadline = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for MessageBoundBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.stats.inner.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                timeout = ?this.timeout,
                received = this.framing.current,
                "grpc message did not arrive whole in time"
            );
            let status = tonic::Status::deadline_exceeded(format!(
                "a message began to arrive and did not end within http.body_read_timeout ({} s)",
                this.timeout.as_secs()
            ));
            return this.fail(Box::new(status));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Some(data) = frame.data_ref() else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                if !this.hold.take(data.len()) {
                    this.stats.inner.refused.fetch_add(1, Ordering::Relaxed);
                    let refusal = grpc_refusal(this.hold.budget());
                    return this.fail(refusal);
                }
                let (finished, began) = this.framing.advance(data);
                this.hold.give_back(finished);
                if this.framing.current == 0 {
                    this.deadline = None;
                } else if began || this.deadline.is_none() {
                    this.deadline = Some(Box::pin(tokio::time::sleep(this.timeout)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                this.deadline = None;
                Poll::Ready(None)
            }
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

#[cfg(test)]
mod tests;
