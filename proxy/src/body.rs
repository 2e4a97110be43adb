//! Streaming bodies that count what passes through them.
//!
//! Neither body ever holds more than the one frame being handed over: the proxy
//! never buffers a body. [`ResponseBody`] carries the request's [`Exchange`] and
//! finishes it (record + span) when the body ends, fails, or is dropped early
//! (downstream went away: flag `DC`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::forward::ProxyContext;
use crate::pool::Reusable;
use crate::telemetry::{Exchange, grpc_status};

/// The downstream request body on its way upstream: streamed (counting its bytes), or
/// a copy of a small body buffered so that retries and mirrors can send it again.
#[derive(Debug)]
pub struct RequestBody {
    inner: RequestSource,
}

#[derive(Debug)]
enum RequestSource {
    Streaming { body: Incoming, bytes: Option<Arc<AtomicU64>> },
    Buffered(Option<Bytes>),
}

impl RequestBody {
    /// Wraps `inner`, adding its data bytes to `bytes` (`None`: a body known to be
    /// empty, nothing to count).
    pub fn new(inner: Incoming, bytes: Option<Arc<AtomicU64>>) -> RequestBody {
        RequestBody { inner: RequestSource::Streaming { body: inner, bytes } }
    }

    /// A buffered body (already counted when it was read).
    pub fn buffered(bytes: Bytes) -> RequestBody {
        RequestBody { inner: RequestSource::Buffered(Some(bytes).filter(|b| !b.is_empty())) }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.inner {
            RequestSource::Streaming { body, bytes } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled
                    && let Some(data) = frame.data_ref()
                    && let Some(bytes) = bytes
                {
                    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                polled
            }
            RequestSource::Buffered(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            RequestSource::Streaming { body, .. } => body.is_end_stream(),
            RequestSource::Buffered(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            RequestSource::Streaming { body, .. } => body.size_hint(),
            RequestSource::Buffered(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

#[derive(Debug)]
enum Source {
    /// Streamed from the upstream.
    Upstream(Incoming),
    /// A local reply (errors), sent in one frame.
    Local(Option<Bytes>),
}

/// The response body sent downstream; finishes the exchange when it ends, and returns
/// the upstream connection to its pool when the upstream's body ended cleanly.
#[derive(Debug)]
pub struct ResponseBody {
    source: Source,
    /// Boxed: hyper moves the response, body included, by value several times per
    /// request, and the exchange is most of its size (896 → 208 bytes).
    pending: Option<Box<Pending>>,
    connection: Option<Reusable>,
}

#[derive(Debug)]
struct Pending {
    exchange: Exchange,
    context: Arc<ProxyContext>,
    body_bytes: u64,
    ended: bool,
}

impl ResponseBody {
    /// The upstream's body, reporting `exchange` at its end; `connection` goes back to
    /// its pool if the body ends cleanly.
    pub fn upstream(body: Incoming, connection: Option<Reusable>, exchange: Exchange, context: Arc<ProxyContext>) -> ResponseBody {
        let pending = Some(Box::new(Pending { exchange, context, body_bytes: 0, ended: false }));
        ResponseBody { source: Source::Upstream(body), pending, connection }
    }

    /// A local reply, reporting `exchange` once sent.
    pub fn local(body: Bytes, exchange: Exchange, context: Arc<ProxyContext>) -> ResponseBody {
        let pending = Some(Box::new(Pending { exchange, context, body_bytes: 0, ended: false }));
        ResponseBody { source: Source::Local(Some(body)), pending, connection: None }
    }

    /// A body that reports nothing (admin replies).
    pub fn plain(body: Bytes) -> ResponseBody {
        ResponseBody { source: Source::Local(Some(body)), pending: None, connection: None }
    }

    /// The upstream body ended cleanly: its connection can carry another request.
    fn release_connection(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.release();
        }
    }

    fn finish(&mut self, ended: bool) {
        if let Some(mut pending) = self.pending.take() {
            pending.ended |= ended;
            pending.finish();
        }
    }
}

impl Pending {
    fn finish(mut self) {
        if !self.ended {
            // The downstream stopped reading before the end: its connection went away.
            self.exchange.add_flag("DC");
        }
        let context = &self.context;
        self.exchange.finish(self.body_bytes, &context.reports, &context.spans);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match &mut this.source {
            Source::Local(body) => {
                let frame = body.take().filter(|b| !b.is_empty()).map(|b| {
                    if let Some(pending) = &mut this.pending {
                        pending.body_bytes += b.len() as u64;
                    }
                    Ok(Frame::data(b))
                });
                if frame.is_none() {
                    this.finish(true);
                }
                Poll::Ready(frame)
            }
            Source::Upstream(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(pending) = &mut this.pending {
                        if let Some(data) = frame.data_ref() {
                            pending.body_bytes += data.len() as u64;
                        } else if let Some(trailers) = frame.trailers_ref() {
                            // The last frame: hyper drops the body after it without asking
                            // for the end.
                            pending.ended = true;
                            pending.body_bytes += crate::telemetry::header_bytes(trailers);
                            if let Some(status) = grpc_status(trailers) {
                                pending.exchange.grpc_status = Some(status);
                            }
                        }
                    }
                    if frame.is_trailers() {
                        this.release_connection();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(error))) => {
                    this.connection = None;
                    if let Some(pending) = &mut this.pending {
                        // The upstream reset the stream mid-body.
                        pending.exchange.add_flag("UR");
                        pending.ended = true;
                    }
                    this.finish(true);
                    Poll::Ready(Some(Err(error)))
                }
                Poll::Ready(None) => {
                    this.release_connection();
                    this.finish(true);
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Upstream(body) => body.is_end_stream(),
            Source::Local(body) => body.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(body) => body.size_hint(),
            Source::Local(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper drops a body without polling it further once `is_end_stream` says so.
        let ended = self.is_end_stream();
        if ended {
            self.release_connection();
        }
        self.finish(ended);
    }
}
