//! The catalog's way to SQL: one task applies, in the order they were made, what the
//! in-memory catalog ([`crate::catalog_memory`]) listed, saw again and forgot.
//!
//! ```text
//!  write ─► MemoryCatalog::register ─► Add ───────────┐
//!  retention pass ─► upkeep ─► Seen, Forget ──────────┼─► channel ─► one SQL transaction
//!  flush (before its WAL segments go), shutdown ─► Barrier: answered once all sent before it is written
//! ```
//!
//! A flush waits for a barrier before it records its block and lets its WAL segments
//! go. The entries of its spans are in SQL by then, so a `kill -9` right after the
//! flush cannot leave a stored service unlisted: before it, the WAL still holds the
//! spans and lists them again at start.
//!
//! After each retention pass, entries last seen before the oldest span still stored
//! and more than `retention_max_age` ago (less a slack of a hundredth of
//! `retention_max_age`, between 1 s and 1 h) are forgotten: `/api/services` stops
//! listing services whose spans are all deleted, and their room under the catalog's
//! bounds goes to new ones. "Seen" is the collector's clock when a write named the
//! entry: a service that still sends is never forgotten, but one whose clock runs
//! ahead of the collector's can leave the list up to that lead before its last spans
//! leave the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::Inner;
use crate::catalog::{Catalog, CatalogChange};

/// What the catalog writer is sent.
#[derive(Debug)]
pub(crate) enum CatalogMessage {
    /// Changes to write to SQL, in order.
    Changes(Vec<CatalogChange>),
    /// Answered once everything sent before is written (or failed and was logged).
    Barrier(oneshot::Sender<()>),
}

/// The way to the catalog writer: its channel, and how many change messages are sent
/// and not yet written, so that a flush with nothing new to write waits for nothing.
#[derive(Debug)]
pub(crate) struct CatalogQueue {
    tx: mpsc::UnboundedSender<CatalogMessage>,
    pending: Arc<AtomicU64>,
}

impl CatalogQueue {
    /// The queue, and what [`run`] takes.
    pub(crate) fn new() -> (CatalogQueue, CatalogInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicU64::new(0));
        let inbox = CatalogInbox {
            rx,
            pending: pending.clone(),
        };
        (CatalogQueue { tx, pending }, inbox)
    }

    /// Queues `changes` for SQL.
    pub(crate) fn send(&self, changes: Vec<CatalogChange>) {
        // Counted before it is sent: the writer uncounts it only once written.
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(CatalogMessage::Changes(changes)).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The writer's end of a [`CatalogQueue`].
pub(crate) struct CatalogInbox {
    rx: mpsc::UnboundedReceiver<CatalogMessage>,
    pending: Arc<AtomicU64>,
}

pub(crate) async fn run(catalog: Catalog, inbox: CatalogInbox) {
    let CatalogInbox { mut rx, pending } = inbox;
    while let Some(first) = rx.recv().await {
        // Everything queued goes in one transaction; barriers are answered after it.
        let mut changes = Vec::new();
        let mut barriers = Vec::new();
        let mut received = 0;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                CatalogMessage::Changes(more) => {
                    received += 1;
                    for change in more {
                        push_merged(&mut changes, change);
                    }
                }
                CatalogMessage::Barrier(ack) => barriers.push(ack),
            }
            next = rx.try_recv().ok();
        }
        if !changes.is_empty()
            && let Err(e) = catalog.apply(&changes).await
        {
            warn!(error = %e, "could not persist catalog changes; memory keeps them");
        }
        pending.fetch_sub(received, Ordering::AcqRel);
        for ack in barriers {
            let _ = ack.send(());
        }
    }
}

/// Appends `change`, merged into the last one when both list new entries.
fn push_merged(changes: &mut Vec<CatalogChange>, change: CatalogChange) {
    match (changes.last_mut(), change) {
        (
            Some(CatalogChange::Add {
                services,
                operations,
            }),
            CatalogChange::Add {
                services: more_services,
                operations: more_operations,
            },
        ) => {
            services.extend(more_services);
            operations.extend(more_operations);
        }
        (_, change) => changes.push(change),
    }
}

/// Waits until every catalog change sent so far is written, at most `within`:
/// at once when there is none. Returns whether it was.
pub(crate) async fn written(inner: &Inner, within: Duration) -> bool {
    let queue = &inner.catalog_queue;
    if queue.pending.load(Ordering::Acquire) == 0 {
        return true;
    }
    let (ack, done) = oneshot::channel();
    if queue.tx.send(CatalogMessage::Barrier(ack)).is_err() {
        return false;
    }
    matches!(tokio::time::timeout(within, done).await, Ok(Ok(())))
}

/// How long before the oldest stored span an entry must have been last seen to be
/// forgotten, and how much later than SQL's copy a sighting must be to be written:
/// a hundredth of the retention age, between 1 s and 1 h.
pub(crate) fn slack_ms(retention_max_age: Duration) -> i64 {
    (retention_max_age.as_millis() / 100).clamp(1_000, 3_600_000) as i64
}

/// After a retention pass at `now_unix_nano`: forgets the entries whose spans are all
/// deleted, and sends SQL the sightings it has not heard of (see the module doc).
pub(crate) fn upkeep(inner: &Inner, now_unix_nano: i64) {
    let slack = slack_ms(inner.config.retention_max_age);
    let now_ms = now_unix_nano / 1_000_000;
    let cutoff = {
        let state = inner.state.read();
        if !state.sealed.is_empty() {
            // A flush is under way or behind: the head may hold spans of entries last
            // seen long ago. Only the sightings go to SQL this time.
            i64::MIN
        } else {
            let oldest_block = state
                .blocks
                .iter()
                .map(|b| b.min_start / 1_000_000)
                .min()
                .unwrap_or(i64::MAX);
            // Last seen before the oldest stored span and more than a retention age
            // ago: the second keeps a service whose spans are dated ahead of this
            // clock (every block in the future) listed while it sends.
            let max_age =
                i64::try_from(inner.config.retention_max_age.as_millis()).unwrap_or(i64::MAX);
            let mut cutoff = oldest_block
                .min(now_ms.saturating_sub(max_age))
                .saturating_sub(slack);
            if state.active_rows > 0 {
                // The head's spans were written within the last flush interval.
                let flush_ms = inner.config.flush_interval.as_millis() as i64;
                cutoff = cutoff.min(now_ms.saturating_sub(flush_ms + slack));
            }
            cutoff
        }
    };
    let (services, operations) = inner.known.upkeep(cutoff, slack, |changes| {
        inner.catalog_queue.send(changes);
    });
    if services + operations > 0 {
        inner
            .stats
            .catalog_forgotten
            .fetch_add((services + operations) as u64, Ordering::Relaxed);
        info!(
            services,
            operations, "catalog forgot entries whose spans retention deleted"
        );
    }
}
