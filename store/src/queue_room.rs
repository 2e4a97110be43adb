//! Room in the write queue (`[store] max_queued_bytes`) taken for a request while it is
//! read into rows, before it waits for the WAL.
//!
//! The rows of a request can take many times its size on the wire: every row holds
//! its resource's attributes and its scope's name and version, so a request of a few
//! megabytes, a few kilobytes gzipped, may ask for tens of megabytes of rows. Each
//! request's repetition is bounded on its own ([`crate::encode::Repeats`]), but many
//! such requests read at once were not: sixteen gzipped requests of 15 KB, 60 MB of rows
//! each, took 1.2 GB together. The rows' expected size is now taken from the queue's
//! permits before they are built, and the request is refused as overloaded (503 /
//! `UNAVAILABLE`, retry advised) when the queue cannot hold it; once built, what is
//! taken becomes the request's place in the queue, grown or shrunk to its encoding.
//! A request expected to fill the whole queue takes nothing first: it is refused for
//! good (413) as it is read or once encoded, never told to retry.

use std::sync::Arc;

use bytes::Bytes;
use meshtel_model::Error as ModelError;
use meshtel_model::otlp::trace::v1::ResourceSpans;
use meshtel_model::validate::SpanLimits;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::encode::Room;
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

    /// Room for rows expected to take `bytes`, before they are built: none for rows
    /// that would fill the whole queue, which are refused for good as they are read or
    /// once encoded (a busy queue must not make that a retry).
    pub(crate) fn reserve(&mut self, bytes: usize) -> Result<(), ModelError> {
        if bytes >= self.total {
            return Ok(());
        }
        self.resize(bytes)
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
        // Taken in pieces a semaphore call can count; all given back if one fails.
        let mut taken: Option<OwnedSemaphorePermit> = None;
        let mut missing = want - held;
        while missing > 0 {
            let piece = u32::try_from(missing).unwrap_or(u32::MAX);
            let permit = self
                .queue
                .clone()
                .try_acquire_many_owned(piece)
                .map_err(|_| queue_full())?;
            match taken.as_mut() {
                Some(taken) => taken.merge(permit),
                None => taken = Some(permit),
            }
            missing -= piece as usize;
        }
        match (self.held.as_mut(), taken) {
            (Some(permit), Some(more)) => permit.merge(more),
            (None, more) => self.held = more,
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// The permit held, for the queue's entry.
    pub(crate) fn into_permit(self) -> Option<OwnedSemaphorePermit> {
        self.held
    }
}

/// About what the rows of decoded `spans` take once encoded, as [`Room::queue_bytes`]
/// says of a request read from its encoding: their spans' encoded sizes, and their
/// resource's and scope's on every row (counted up to `max_repeated`).
pub(crate) fn decoded_queue_bytes(spans: &[ResourceSpans], max_repeated: usize) -> usize {
    let mut room = Room::default();
    for group in spans {
        let resource = group.resource.as_ref().map_or(0, Message::encoded_len);
        for scope_spans in &group.scope_spans {
            let scope = scope_spans.scope.as_ref().map_or(0, Message::encoded_len);
            for span in &scope_spans.spans {
                room.rows += 1;
                room.attribute_bytes = room.attribute_bytes.saturating_add(span.encoded_len());
                room.resource_bytes = room.resource_bytes.saturating_add(resource + scope);
            }
        }
    }
    room.resource_bytes = room.resource_bytes.min(max_repeated);
    room.queue_bytes()
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
            wire::read_export_request(&request, limits, max_repeated, &mut |n| room.reserve(n));
        return Ok((read, room));
    }
    let limits = limits.clone();
    tokio::task::spawn_blocking(move || {
        let read =
            wire::read_export_request(&request, &limits, max_repeated, &mut |n| room.reserve(n));
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
        // Rows expected to fill the whole queue take nothing first (refused for good
        // later), even when the queue is busy.
        let mut whole = QueueRoom::new(queue.clone(), 1000);
        whole.reserve(1000).unwrap();
        assert_eq!(whole.held(), 0);
        assert!(whole.reserve(999).is_err());
        let permit = room.into_permit().unwrap();
        assert_eq!(permit.num_permits(), 1000);
        drop(permit);
        assert_eq!(queue.available_permits(), 1000);
        drop(other);
        assert_eq!(queue.available_permits(), 1000);
    }
}
