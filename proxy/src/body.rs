//! Streaming bodies that count what passes through them.
//!
//! Neither body ever holds back more than the one frame being handed over: the proxy
//! never waits for a body's end before forwarding it. [`ResponseBody`] carries the request's [`Exchange`] and
//! finishes it (record + span) when the body ends, fails, or is dropped early
//! (downstream went away: flag `DC`). [`RequestBody`] notes in [`BodyProgress`] whether
//! the downstream's body broke or stalled, so that a failed upstream exchange is
//! blamed on the side that caused it. Both bodies are bounded by the body idle timeout
//! (`--body-idle-timeout`, Envoy's stream idle timeout): a request body that stops
//! arriving is answered 408 `SI`; a response body the upstream stops sending is cut
//! short downstream (its head is gone already) and recorded with the status sent and
//! `SI`, its upstream connection closed. A request body that may be retried keeps a
//! [`ReplayCopy`]: the frames it forwarded (refcounted, up to a limit), or the body
//! itself when an attempt dropped it unread.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use crate::error::Error;
use crate::forward::ProxyContext;
use crate::pool::{BoxError, Reusable};
use crate::telemetry::{Exchange, grpc_status};

/// The downstream request body as the proxy has read it so far: its data bytes, and
/// whether it is still arriving, ended, broke or stalled. Shared by the body on its way
/// upstream and the pipeline, which reads it when the upstream exchange fails.
#[derive(Debug, Default)]
pub struct BodyProgress {
    bytes: AtomicU64,
    state: AtomicU8,
    /// When it ended, broke or stalled: where the request timeout starts.
    finished_at: std::sync::OnceLock<std::time::Instant>,
    /// Wakes [`BodyProgress::finished`].
    finished: tokio::sync::Notify,
}

/// The last read gave a frame (or none was tried yet).
const READING: u8 = 0;
/// The last read found nothing: the proxy waits for the downstream's bytes.
const WAITING: u8 = 1;
/// The body ended cleanly.
const ENDED: u8 = 2;
/// The body broke: malformed (a bad chunk), or the downstream went away mid-body.
const BROKEN: u8 = 3;
/// The body stopped arriving for the body idle timeout.
const STALLED: u8 = 4;

/// How the downstream's request body, not the upstream, ended an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// It broke (400 `DPE`).
    Broken,
    /// It stopped arriving (408 `SI`).
    Stalled,
}

impl BodyProgress {
    /// Data bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more data bytes.
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Why the exchange failed on the downstream's account, if it did: the body broke
    /// or stalled; with `timed_out` (a request timeout ended the exchange), also a body
    /// the proxy was still waiting for.
    pub fn fault(&self, timed_out: bool) -> Option<BodyFault> {
        match self.state.load(Ordering::Relaxed) {
            BROKEN => Some(BodyFault::Broken),
            STALLED => Some(BodyFault::Stalled),
            WAITING if timed_out => Some(BodyFault::Stalled),
            _ => None,
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Relaxed);
        if state >= ENDED && self.finished_at.set(std::time::Instant::now()).is_ok() {
            self.finished.notify_waiters();
        }
    }

    /// When the body was all received (or broke or stalled), if it was.
    pub fn finished_at(&self) -> Option<std::time::Instant> {
        self.finished_at.get().copied()
    }

    /// When the body was all received (or broke or stalled), waiting for it: the
    /// request timeout starts there, as Envoy's route timeout does, so that an upload
    /// or a client stream is not cut for taking long (a body that stops arriving is
    /// bounded by the body idle timeout).
    pub async fn finished(&self) -> std::time::Instant {
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.finished_at.get() {
                return *at;
            }
            notified.await;
        }
    }
}

/// The downstream request body on its way upstream: streamed (counting its bytes), or
/// a copy of a small body buffered so that retries and mirrors can send it again.
#[derive(Debug)]
pub struct RequestBody {
    inner: RequestSource,
}

#[derive(Debug)]
enum RequestSource {
    Streaming(Box<Streaming>),
    Buffered(Option<Bytes>),
}

/// A streamed body and what watches it (boxed: a request moves by value).
#[derive(Debug)]
struct Streaming {
    body: Incoming,
    progress: Option<Arc<BodyProgress>>,
    /// The body idle timeout, and its timer once the body has made the proxy wait.
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the last read found nothing (the timer runs since then).
    waiting: bool,
    /// Where the frames read are copied for a retry (a body that may be retried).
    copy: Option<Arc<ReplayCopy>>,
    /// Whether a read gave anything (a frame, the end or an error): until then the body
    /// is untouched and goes back to `copy` when dropped.
    touched: bool,
}

/// A streamed request body kept for a retry, as Envoy's retry buffer: each frame
/// forwarded is copied (a refcount, not the bytes) up to a limit; a body that ended
/// within it can be sent again. A body an attempt dropped without reading a frame (the
/// connection failed before the request left) comes back here whole, whatever its
/// size, for the next attempt to stream. The body is never held back: frames go on as
/// they arrive.
#[derive(Debug)]
pub struct ReplayCopy {
    limit: u64,
    state: Mutex<CopyState>,
}

#[derive(Debug, Default)]
struct CopyState {
    /// The body, back unread from an attempt that dropped it.
    unread: Option<Incoming>,
    /// The data frames read so far, in order.
    chunks: Vec<Bytes>,
    /// Their length.
    len: u64,
    /// The body ended with every frame in `chunks`.
    complete: bool,
    /// Past the limit, trailers, or broken: cannot be sent again.
    lost: bool,
}

/// What the next attempt of a request can send.
#[derive(Debug)]
pub enum Replay {
    /// The body, unread: stream it.
    Unread(Incoming),
    /// The whole body, copied as it was forwarded.
    Copy(Bytes),
}

impl ReplayCopy {
    /// An empty copy that keeps at most `limit` bytes.
    pub fn new(limit: u64) -> ReplayCopy {
        ReplayCopy { limit, state: Mutex::new(CopyState::default()) }
    }

    /// Whether the next attempt can send the body: it came back unread, or it ended
    /// within the limit.
    pub fn replayable(&self) -> bool {
        let state = self.state.lock();
        state.unread.is_some() || (state.complete && !state.lost)
    }

    /// The body for the next attempt, if it can be sent again.
    pub fn take_replay(&self) -> Option<Replay> {
        let mut state = self.state.lock();
        if let Some(body) = state.unread.take() {
            return Some(Replay::Unread(body));
        }
        if !state.complete || state.lost {
            return None;
        }
        Some(Replay::Copy(match state.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            chunks => {
                let mut all = BytesMut::with_capacity(state.len as usize);
                for chunk in chunks {
                    all.extend_from_slice(chunk);
                }
                all.freeze()
            }
        }))
    }

    fn note_frame(&self, frame: &Frame<Bytes>, ended: bool) {
        let mut state = self.state.lock();
        if state.lost {
            return;
        }
        match frame.data_ref() {
            Some(data) if state.len + data.len() as u64 <= self.limit => {
                state.len += data.len() as u64;
                state.chunks.push(data.clone());
                state.complete = ended;
            }
            // Past the limit, or trailers (kept by no replay): sent once.
            _ => state.lose(),
        }
    }

    fn note_end(&self) {
        self.state.lock().complete = true;
    }

    fn note_broken(&self) {
        self.state.lock().lose();
    }

    fn give_back(&self, body: Incoming) {
        self.state.lock().unread = Some(body);
    }
}

impl CopyState {
    fn lose(&mut self) {
        self.lost = true;
        self.chunks = Vec::new();
    }
}

impl RequestBody {
    /// Wraps `inner`, noting its bytes and state in `progress` (`None`: a body known to
    /// be empty, nothing to note). With `idle`, a body that makes the proxy wait that
    /// long for its next bytes fails (noted as stalled), which aborts the upstream
    /// request it feeds.
    pub fn new(inner: Incoming, progress: Option<Arc<BodyProgress>>, idle: Option<Duration>) -> RequestBody {
        if inner.is_end_stream() {
            // Nothing to read, watch or count (most requests): no box for it.
            return RequestBody { inner: RequestSource::Buffered(None) };
        }
        let streaming = Streaming { body: inner, progress, idle, timer: None, waiting: false, copy: None, touched: false };
        RequestBody { inner: RequestSource::Streaming(Box::new(streaming)) }
    }

    /// As [`RequestBody::new`], copying what is read into `copy` for a retry; dropped
    /// before anything was read, the body goes back to `copy`.
    pub fn teed(inner: Incoming, progress: Option<Arc<BodyProgress>>, idle: Option<Duration>, copy: Arc<ReplayCopy>) -> RequestBody {
        let mut body = RequestBody::new(inner, progress, idle);
        match &mut body.inner {
            RequestSource::Streaming(streaming) => streaming.copy = Some(copy),
            // Known empty: complete as it is.
            RequestSource::Buffered(_) => copy.note_end(),
        }
        body
    }

    /// A buffered body (already counted when it was read).
    pub fn buffered(bytes: Bytes) -> RequestBody {
        RequestBody { inner: RequestSource::Buffered(Some(bytes).filter(|b| !b.is_empty())) }
    }
}

impl Streaming {
    fn note(&self, state: u8) {
        if let Some(progress) = &self.progress {
            progress.set(state);
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(progress) = &self.progress {
                    if let Some(data) = frame.data_ref() {
                        progress.add_bytes(data.len() as u64);
                    }
                    // A body of known length is not read past its last bytes.
                    progress.set(if self.body.is_end_stream() { ENDED } else { READING });
                }
                if let Some(copy) = &self.copy {
                    copy.note_frame(&frame, self.body.is_end_stream());
                }
                self.waiting = false;
                self.touched = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.note(BROKEN);
                self.touched = true;
                if let Some(copy) = &self.copy {
                    copy.note_broken();
                }
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                self.note(ENDED);
                self.touched = true;
                if let Some(copy) = &self.copy {
                    copy.note_end();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.note(WAITING);
                let Some(idle) = self.idle else { return Poll::Pending };
                // One timer per body, created the first time it makes the proxy wait
                // (most bodies arrive with their head and never do).
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if !self.waiting {
                    self.waiting = true;
                    timer.as_mut().reset(Instant::now() + idle);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.note(STALLED);
                let message = format!("no request body bytes for {idle:?}");
                Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message).into())))
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.inner {
            RequestSource::Streaming(streaming) => streaming.poll_frame(cx),
            RequestSource::Buffered(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            RequestSource::Streaming(streaming) => streaming.body.is_end_stream(),
            RequestSource::Buffered(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            RequestSource::Streaming(streaming) => streaming.body.size_hint(),
            RequestSource::Buffered(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // An attempt that never read the body (its connection failed first) hands it
        // back whole for the next one.
        let untouched = matches!(&self.inner, RequestSource::Streaming(s) if s.copy.is_some() && !s.touched);
        if untouched && let RequestSource::Streaming(streaming) = std::mem::replace(&mut self.inner, RequestSource::Buffered(None)) {
            let Streaming { body, copy, .. } = *streaming;
            if let Some(copy) = copy {
                copy.give_back(body);
            }
        }
    }
}

#[derive(Debug)]
enum Source {
    /// Streamed from the upstream.
    Upstream(Incoming),
    /// A local reply (errors), sent in one frame.
    Local(Option<Bytes>),
    /// An upstream body the proxy cut short (idle too long): dropped, so that an h2
    /// stream is reset; the body ended with an error.
    Cut,
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
    /// Whether hyper has had anything of the body but an error: a frame, or a wait (it
    /// then flushes the head). Until then it has written nothing downstream.
    answered: bool,
    idle: IdleWatch,
}

/// The body idle timeout of an upstream response body: how long the upstream has made
/// the proxy wait for the next frame. Nothing is armed while frames come at once (a
/// short response read in one go never touches the clock); the first wait reads the
/// clock and arms one timer, which later waits reuse: a wait only notes when it
/// started, and a timer that fires before `since + idle` (the body moved meanwhile)
/// is re-armed then, not on every frame.
#[derive(Debug, Default)]
struct IdleWatch {
    /// Armed at or before `since + idle`.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the current wait started; `None` while frames arrive.
    since: Option<Instant>,
}

impl IdleWatch {
    /// The body made the proxy wait (its inner body is pending): whether it has been
    /// waiting for `idle`; if not, the timer wakes `cx` when it will have.
    fn stalled(&mut self, idle: Duration, cx: &mut Context<'_>) -> bool {
        let deadline = *self.since.get_or_insert_with(Instant::now) + idle;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if timer.deadline() >= deadline {
                return true;
            }
            // Armed for an earlier wait: the body moved since; wait for this one.
            timer.as_mut().reset(deadline);
        }
    }
}

impl ResponseBody {
    /// The upstream's body, reporting `exchange` at its end; `connection` goes back to
    /// its pool if the body ends cleanly.
    pub fn upstream(body: Incoming, connection: Option<Reusable>, exchange: Exchange, context: Arc<ProxyContext>) -> ResponseBody {
        let pending = Some(Box::new(Pending { exchange, context, body_bytes: 0, ended: false, answered: false, idle: IdleWatch::default() }));
        ResponseBody { source: Source::Upstream(body), pending, connection }
    }

    /// A local reply, reporting `exchange` once sent.
    pub fn local(body: Bytes, exchange: Exchange, context: Arc<ProxyContext>) -> ResponseBody {
        let pending = Some(Box::new(Pending { exchange, context, body_bytes: 0, ended: false, answered: false, idle: IdleWatch::default() }));
        ResponseBody { source: Source::Local(Some(body)), pending, connection: None }
    }

    /// A body that reports nothing (admin replies).
    pub fn plain(body: Bytes) -> ResponseBody {
        ResponseBody { source: Source::Local(Some(body)), pending: None, connection: None }
    }

    /// The upstream body ended cleanly: its connection can carry another request,
    /// unless the upstream answered before a request body that then broke or stalled
    /// (it got part of a request).
    fn release_connection(&mut self) {
        if let Some(connection) = self.connection.take() {
            let partial = self.pending.as_ref().is_some_and(|p| p.exchange.request_body_fault(false).is_some());
            if !partial {
                connection.release();
            }
        }
    }

    fn finish(&mut self, ended: bool) {
        if let Some(mut pending) = self.pending.take() {
            pending.ended |= ended;
            pending.finish();
        }
    }

    /// The upstream sent nothing for the body idle timeout, `idle`: as Envoy on its
    /// stream idle timeout, the stream is reset both ways. The upstream connection is
    /// closed (an h2 stream reset), the downstream gets an error instead of the rest of
    /// the body, and the exchange is reported with the status already sent and `SI`.
    fn cut_idle(&mut self, idle: Duration) -> BoxError {
        let (upstream, direction) = self.cut("SI");
        debug!(direction, %upstream, ?idle, "response body idle, reset");
        Box::new(Error::ResponseIdle { upstream, idle })
    }

    /// Trailers over [`crate::pool::H2_MAX_HEADER_LIST_BYTES`]: the stream is reset both
    /// ways, as Envoy resets it, and the exchange reported with `UPE`; the downstream
    /// gets an error, never a clean end without them.
    fn cut_trailers(&mut self, bytes: usize) -> BoxError {
        let (upstream, direction) = self.cut("UPE");
        debug!(direction, %upstream, bytes, "response trailers too large, reset");
        Box::new(Error::ResponseTrailersTooLarge { upstream, bytes, limit: crate::pool::H2_MAX_HEADER_LIST_BYTES })
    }

    /// Ends the body here: the upstream connection dropped (the stream reset), the
    /// exchange reported with `flag` and the status already sent. The upstream's
    /// address and the direction, for the error and the log.
    fn cut(&mut self, flag: &'static str) -> (String, &'static str) {
        self.connection = None;
        self.source = Source::Cut;
        let (mut upstream, mut direction) = (String::new(), "");
        if let Some(pending) = &mut self.pending {
            upstream.push_str(pending.exchange.upstream_address());
            direction = pending.exchange.direction.as_str();
            pending.exchange.add_flag(flag);
            pending.ended = true;
        }
        self.finish(true);
        (upstream, direction)
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
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
            Source::Cut => Poll::Ready(None),
            Source::Upstream(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Pending => {
                    if let Some(pending) = &mut this.pending {
                        pending.answered = true;
                        if let Some(idle) = pending.context.body_idle_timeout_for(&pending.exchange)
                            && pending.idle.stalled(idle, cx)
                        {
                            return Poll::Ready(Some(Err(this.cut_idle(idle))));
                        }
                    }
                    Poll::Pending
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref()
                        && let bytes = crate::pool::h2_header_list_size(trailers)
                        && bytes > crate::pool::H2_MAX_HEADER_LIST_BYTES as usize
                    {
                        return Poll::Ready(Some(Err(this.cut_trailers(bytes))));
                    }
                    if let Some(pending) = &mut this.pending {
                        pending.answered = true;
                        pending.idle.since = None;
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
                        // The upstream reset the stream mid-body, or the connection
                        // ended because the request body it was still sending failed.
                        let flag = match pending.exchange.request_body_fault(false) {
                            Some(BodyFault::Broken) => "DPE",
                            Some(BodyFault::Stalled) => "SI",
                            None => "UR",
                        };
                        pending.exchange.add_flag(flag);
                        pending.ended = true;
                        if !pending.answered {
                            // Broken on hyper's first read, before it wrote the head: the
                            // downstream got no status at all (an HTTP/1.1 connection
                            // closed, an h2 stream reset before its headers).
                            pending.exchange.response_code = 0;
                            pending.exchange.response_header_bytes = 0;
                        }
                    }
                    this.finish(true);
                    Poll::Ready(Some(Err(error.into())))
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
            Source::Cut => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(body) => body.size_hint(),
            Source::Local(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Source::Cut => SizeHint::default(),
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

#[cfg(test)]
mod tests;
