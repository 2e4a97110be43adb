//! Answers whose client leaves them unread. Over HTTP/2 a client can grant a stream no
//! flow-control window and go on reading other frames, so the server is never asked
//! for the answer's frames and no write stalls: the answer would stay in memory for as
//! long as the client liked. A [`watch`]ed answer notes when the server last asked for
//! a frame; [`Answer::check`] drops it (and what it holds, such as a read's slot) once
//! that was longer ago than a timeout while a frame was ready, and the stream ends with
//! an error if the client ever opens its window. A watched body hands the server at
//! most [`HANDOUT_BYTES`] at a time, each piece a copy of its own, so that dropping the
//! answer frees it, bar the piece the server took last.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;

/// Most bytes of an answer handed to the server at once.
pub const HANDOUT_BYTES: usize = 64 * 1024;

/// `body`, watched, holding `hold` until it ends or is dropped; the answer's state for
/// a watchdog to [`Answer::check`].
pub fn watch<H: Send + 'static>(body: Body, hold: H) -> (Body, Weak<Mutex<Answer<H>>>) {
    let answer = Arc::new(Mutex::new(Answer {
        body: Some(body),
        rest: Bytes::new(),
        hold: Some(hold),
        asked: Instant::now(),
        producing: false,
        expired: false,
    }));
    let weak = Arc::downgrade(&answer);
    (Body::new(Watched(answer)), weak)
}

/// A watched answer, shared between its body and a watchdog.
pub struct Answer<H> {
    body: Option<Body>,
    /// What is left of the answer's current data frame, not handed out yet.
    rest: Bytes,
    hold: Option<H>,
    /// When the server last asked for a frame.
    asked: Instant,
    /// The answer itself was not ready at the last ask: waiting on it is no stall.
    producing: bool,
    expired: bool,
}

/// What [`Answer::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// The answer ended (or was dropped before): nothing more to watch.
    Ended,
    /// Still being read, or produced; look again at this instant.
    Live(Instant),
    /// Unread for the timeout: dropped now, with what it held.
    Dropped,
}

impl<H> Answer<H> {
    /// Drops the answer when the server has not asked for a frame of it for `timeout`
    /// at `now` while it had one ready.
    pub fn check(&mut self, timeout: Duration, now: Instant) -> Unread {
        if self.body.is_none() && self.rest.is_empty() {
            return Unread::Ended;
        }
        let due = self.asked + timeout;
        if self.producing || due > now {
            return Unread::Live(due.max(now + Duration::from_millis(10)));
        }
        self.body = None;
        self.rest = Bytes::new();
        self.hold = None;
        self.expired = true;
        Unread::Dropped
    }
}

struct Watched<H>(Arc<Mutex<Answer<H>>>);

impl<H: Send + 'static> http_body::Body for Watched<H> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut answer = self.0.lock();
        answer.asked = Instant::now();
        if !answer.rest.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(hand_out(&mut answer.rest)))));
        }
        let Some(body) = answer.body.as_mut() else {
            return Poll::Ready(
                answer
                    .expired
                    .then(|| Err(axum::Error::new("the answer went unread and was dropped"))),
            );
        };
        let frame = Pin::new(body).poll_frame(cx);
        answer.producing = frame.is_pending();
        match frame {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if data.len() > HANDOUT_BYTES => {
                    answer.rest = data;
                    Poll::Ready(Some(Ok(Frame::data(hand_out(&mut answer.rest)))))
                }
                Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(trailers) => Poll::Ready(Some(Ok(trailers))),
            },
            Poll::Pending => Poll::Pending,
            done => {
                answer.body = None;
                answer.hold = None;
                done
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let answer = self.0.lock();
        !answer.expired
            && answer.rest.is_empty()
            && answer
                .body
                .as_ref()
                .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let answer = self.0.lock();
        let rest = answer.rest.len() as u64;
        let inner = answer
            .body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// The next piece of `rest`, at most [`HANDOUT_BYTES`], as a copy of its own (a slice
/// would keep the whole answer alive in the server's send buffer).
fn hand_out(rest: &mut Bytes) -> Bytes {
    let piece = rest.split_to(rest.len().min(HANDOUT_BYTES));
    Bytes::copy_from_slice(&piece)
}
