//! Room in the write queue (`[store] max_queued_bytes`) taken for a request while it is
//! read into rows, before it waits for the WAL.
//!
//! The rows of a request can take many times its size on the wire: every row holds
//! its resource's attributes and its scope's name and version, so a request of a few
//! megabytes, a few kilobytes gzipped, may ask for tens of megabytes of rows. Each
//! request's repetition is bounded on its own ([`crate::encode::Repeats`]), but many
//! such requests read at once were not: sixteen gzipped requests of 23 KB took two
//! gigabytes together. The rows' expected size is now taken from the queue's permits
//! before they are built, and the request is refused as overloaded (503 /
//! `UNAVAILABLE`, retry advised) when the queue cannot hold it; once built, what is
//! taken becomes the request's place in the queue, grown or shrunk to its encoding.

use std::sync::Arc;

use bytes::Bytes;
use meshtel_model::Error as ModelError;
use meshtel_model::validate::SpanLimits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::wire::{self, ReadRequest};

/// Retry advice of a request refused for want of room in the queue: the queue drains
/// as fast as the WAL writes, in milliseconds.
pub(crate) const QUEUE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// What one request holds of the write queue; returned when dropped.
pub(crate) struct QueueRoom {
    queue: Arc<Semaphore>,
    /// The queue's size in permits (bytes), which no request can pass.
    total: usize,
    held: Option<OwnedSemaphorePermit>,
}

/// The refusal of a request the queue has no room for now.
pub(crate) fn queue_full() -> ModelError {
    ModelError::Overloaded {
        retry_after: QUEUE_RETRY_AFTER,
        bound: "requests waiting for the WAL fill [store] max_queued_bytes",
    }
}

impl QueueRoom {
    /// Room in `queue`, holding nothing yet.
    pub(crate) fn new(queue: Arc<Semaphore>, total: usize) -> Self {
        QueueRoom {
            queue,
            total,
            held: None,
        }
    }

    /// Bytes held.
    pub(crate) fn held(&self) -> usize {
        self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds `bytes` in all, taking or giving back the difference; a request larger
    /// than the whole queue holds all of it. Refused (holding what it held) when the
    /// queue has not that much free now.
    pub(crate) fn resize(&mut self, bytes: usize) -> Result<(), ModelError> {
        let want = bytes.min(self.total).min(Semaphore::MAX_PERMITS);
        let held = self.held();
        if want <= held {
            if let Some(permit) = self.held.as_mut() {
                // The excess goes back when the split-off part is dropped.
                drop(permit.split(held - want));
            }
            return Ok(());
        }
        let more = u32::try_from(want - held).unwrap_or(u32::MAX);
        let more = self
            .queue
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| queue_full())?;
        match self.held.as_mut() {
            Some(permit) => permit.merge(more),
            None => self.held = Some(more),
        }
        Ok(())
    }

    /// The permit held, for the queue's entry.
    pub(crate) fn into_permit(self) -> Option<OwnedSemaphorePermit> {
        self.held
    }
}

/// What reading a request gave, and the room it took.
type Read = (Result<(ReadRequest, Option<String>), ModelError>, QueueRoom);

/// Reads `request` into rows ([`wire::read_export_request`]), their room taken in
/// `room` before they are built; a large request off the runtime's threads, not to
/// hold up the others.
pub(crate) async fn read_request(
    mut room: QueueRoom,
    request: Bytes,
    limits: &SpanLimits,
    max_repeated: u64,
) -> Result<Read, ModelError> {
    if request.len() < wire::READ_ON_BLOCKING_THREAD_BYTES {
        let read =
            wire::read_export_request(&request, limits, max_repeated, &mut |n| room.resize(n));
        return Ok((read, room));
    }
    let limits = limits.clone();
    tokio::task::spawn_blocking(move || {
        let read =
            wire::read_export_request(&request, &limits, max_repeated, &mut |n| room.resize(n));
        (read, room)
    })
    .await
    .map_err(|e| ModelError::Unavailable(format!("reading the request failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_grown_shrunk_and_given_back() {
        let queue = Arc::new(Semaphore::new(1000));
        let mut room = QueueRoom::new(queue.clone(), 1000);
        room.resize(600).unwrap();
        assert_eq!((room.held(), queue.available_permits()), (600, 400));
        let mut other = QueueRoom::new(queue.clone(), 1000);
        let refused = other.resize(500).unwrap_err();
        assert!(matches!(refused, ModelError::Overloaded { .. }), "{refused:?}");
        assert_eq!((other.held(), queue.available_permits()), (0, 400));
        room.resize(200).unwrap();
        assert_eq!((room.held(), queue.available_permits()), (200, 800));
        room.resize(900).unwrap();
        assert_eq!((room.held(), queue.available_permits()), (900, 100));
        // Larger than the queue: all of it, once free.
        room.resize(5000).unwrap();
        assert_eq!((room.held(), queue.available_permits()), (1000, 0));
        let permit = room.into_permit().unwrap();
        assert_eq!(permit.num_permits(), 1000);
        drop(permit);
        assert_eq!(queue.available_permits(), 1000);
        drop(other);
        assert_eq!(queue.available_permits(), 1000);
    }
}
