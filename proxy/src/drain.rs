//! What the shutdown drain waits for besides the listeners' connection tasks: upgraded
//! connections (WebSockets). Once hyper hands a connection over to the proxy after a
//! `101`, no connection task holds it any more, so each splice registers here
//! ([`Upgrades::open`]) and the worker drains these beside its listeners.
//!
//! The outbound listener is the app's way out, and the app goes on working while it
//! finishes the requests it has: as Istio's sidecar drains its inbound side only, the
//! outbound one serves on, new connections included, until the inbound has drained
//! and the app has started no call for [`OUTBOUND_QUIET`] (at most [`DRAIN_TIMEOUT`]
//! after the stop), then drains as the inbound did ([`hold_outbound`]).
//!
//! ```text
//!  stop ─► inbound: no new connection; open ones finish their requests   ┐ both within
//!       └► WebSockets: spliced on until either side closes               ┘ DRAIN_TIMEOUT
//!       └► outbound: serves on until the inbound drained and the app is quiet, then drains
//!  drain over ─► WebSockets still open are closed, each reported (flag DC)
//!             ─► the worker stops ─► the last records and spans are flushed
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::info;

use crate::server::DRAIN_TIMEOUT;

/// How long the app must have started no outbound call, its inbound drained, before
/// the outbound listener drains: a call on a kept-alive connection a moment before it
/// closes would fail.
pub const OUTBOUND_QUIET: Duration = Duration::from_millis(250);

/// Holds the outbound listener up after `stop`: flips `release` once `inbound_drained`
/// (none: no inbound listener) is true and `started` (the outbound's requests) has not
/// moved for [`OUTBOUND_QUIET`], or [`DRAIN_TIMEOUT`] after the stop.
pub async fn hold_outbound(
    mut stop: watch::Receiver<bool>,
    inbound_drained: Option<watch::Receiver<bool>>,
    started: Arc<AtomicU64>,
    release: watch::Sender<bool>,
) {
    // A stop sender gone without a stop: nothing more will come, release at once.
    let _ = stop.wait_for(|stopped| *stopped).await;
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    if let Some(mut drained) = inbound_drained {
        let _ = tokio::time::timeout_at(deadline, drained.wait_for(|done| *done)).await;
    }
    let mut seen = started.load(Ordering::Relaxed);
    loop {
        let quiet_until = tokio::time::Instant::now() + OUTBOUND_QUIET;
        if quiet_until >= deadline {
            tokio::time::sleep_until(deadline).await;
            break;
        }
        tokio::time::sleep_until(quiet_until).await;
        let now = started.load(Ordering::Relaxed);
        if now == seen {
            break;
        }
        seen = now;
    }
    let _ = release.send(true);
}

/// How long the splices closed at the end of the drain may take to report and end:
/// they only write their record, on the worker's own thread.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The upgraded connections of one worker.
#[derive(Debug, Clone)]
pub struct Upgrades {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Splices running.
    open: AtomicUsize,
    /// Notified when the last splice ends.
    all_closed: Notify,
    /// True once the drain is over: splices still running close.
    close: watch::Sender<bool>,
}

impl Default for Upgrades {
    fn default() -> Upgrades {
        let inner = Inner { open: AtomicUsize::new(0), all_closed: Notify::new(), close: watch::Sender::new(false) };
        Upgrades { inner: Arc::new(inner) }
    }
}

/// One running splice, counted until dropped.
#[derive(Debug)]
pub struct OpenUpgrade {
    inner: Arc<Inner>,
    close: watch::Receiver<bool>,
}

impl Upgrades {
    /// Counts a splice until the returned guard is dropped; the guard says when the
    /// drain is over and the splice must close.
    pub fn open(&self) -> OpenUpgrade {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        OpenUpgrade { inner: self.inner.clone(), close: self.inner.close.subscribe() }
    }

    /// Splices running.
    pub fn count(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for every splice to end; then closes those still open and
    /// waits (briefly) until they have reported.
    pub async fn drain(&self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.all_closed()).await.is_ok() {
            return;
        }
        info!(websockets = self.count(), "drain timed out, closing remaining websockets");
        self.inner.close.send_replace(true);
        let _ = tokio::time::timeout(CLOSE_WAIT, self.all_closed()).await;
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.inner.all_closed.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the count is read: a splice ending in between still
            // wakes this wait.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl OpenUpgrade {
    /// Resolves when the drain is over (at once if it already is).
    pub async fn closing(&mut self) {
        // The sender lives in `inner`, which this guard holds: `wait_for` only ends when
        // the value turns true.
        let _ = self.close.wait_for(|close| *close).await;
    }
}

impl Drop for OpenUpgrade {
    fn drop(&mut self) {
        if self.inner.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.all_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test]
    async fn the_drain_waits_for_open_splices_and_closes_the_rest_when_it_ends() {
        let (drain, short) = (Duration::from_millis(600), Duration::from_millis(100));
        let upgrades = Upgrades::default();
        // Nothing open: the drain ends at once.
        tokio::time::timeout(short, upgrades.drain(drain)).await.expect("nothing to wait for");

        // One splice that ends on its own within the drain.
        let quick = upgrades.open();
        let ending = tokio::spawn(async move {
            tokio::time::sleep(short).await;
            drop(quick);
        });
        let started = Instant::now();
        upgrades.drain(drain).await;
        assert!(started.elapsed() >= short && started.elapsed() < drain, "{:?}", started.elapsed());
        ending.await.expect("task");

        // One that stays open until told to close at the drain's end.
        let mut stubborn = upgrades.open();
        let closed = tokio::spawn(async move {
            stubborn.closing().await;
            Instant::now()
        });
        let started = Instant::now();
        upgrades.drain(drain).await;
        let closed_after = closed.await.expect("task") - started;
        assert!(closed_after >= drain && closed_after < drain + short, "{closed_after:?}");
        assert_eq!(upgrades.count(), 0);
        // Opened after the drain: closes at once.
        let mut late = upgrades.open();
        tokio::time::timeout(short, late.closing()).await.expect("closing at once");
    }
}
