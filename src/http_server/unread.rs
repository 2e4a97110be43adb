//! HTTP/2 answers that their client leaves unread, on the HTTP listeners: a client that
//! grants a stream no flow-control window keeps its connection alive (it reads other
//! frames, it answers pings), so the stalled-write bound never fires, and 200 such
//! streams per connection held their whole answers for as long as the client liked.
//! Each HTTP/2 answer is watched ([`meshtel_query::unread`]) and dropped once it could
//! not be sent for `http.write_timeout` while ready, counted in
//! `meshtel_http_answers_dropped_unread_total{listener}`. One watchdog task per
//! listener looks every [`SWEEP`].

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use meshtel_query::unread::{self, Answer, Unread};
use parking_lot::Mutex;
use prometheus::IntCounter;

/// How often the watchdog looks.
const SWEEP: Duration = Duration::from_secs(1);

/// The watched answers of one listener; cheap to clone.
#[derive(Clone)]
pub(crate) struct UnreadAnswers {
    inner: Arc<Inner>,
}

struct Inner {
    timeout: Duration,
    dropped: IntCounter,
    watched: Mutex<Vec<Weak<Mutex<Answer<()>>>>>,
}

impl UnreadAnswers {
    /// Answers unread for `timeout` are dropped and counted in `dropped`; the watchdog
    /// task ends with the last clone.
    pub(crate) fn new(timeout: Duration, dropped: IntCounter) -> Self {
        let inner = Arc::new(Inner {
            timeout,
            dropped,
            watched: Mutex::default(),
        });
        tokio::spawn(watchdog(Arc::downgrade(&inner)));
        UnreadAnswers { inner }
    }

    /// `body`, watched.
    pub(crate) fn watch(&self, body: Body) -> Body {
        let (body, answer) = unread::watch(body, ());
        self.inner.watched.lock().push(answer);
        body
    }
}

/// Every [`SWEEP`], drops the answers unread for the timeout and forgets the ended
/// ones; ends with the listener's last [`UnreadAnswers`].
async fn watchdog(inner: Weak<Inner>) {
    let mut ticks = tokio::time::interval(SWEEP);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut dropped = 0;
        inner.watched.lock().retain(|entry| {
            let Some(answer) = entry.upgrade() else {
                return false;
            };
            let checked = answer.lock().check(inner.timeout, now);
            match checked {
                Unread::Ended => false,
                Unread::Live(_) => true,
                Unread::Dropped => {
                    dropped += 1;
                    false
                }
            }
        });
        if dropped > 0 {
            inner.dropped.inc_by(dropped);
            tracing::debug!(answers = dropped, timeout = ?inner.timeout, "answers went unread; dropped");
        }
    }
}
