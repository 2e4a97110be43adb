//! A sealed head generation's block, written on a blocking thread.
//!
//! The block is deleted when its `Encoding` is dropped (the flusher gave it up, or was
//! aborted by a shutdown that ran out of time) before its index commit began: once
//! written if the encode is still running, at once if it is done. From the commit on,
//! the flusher indexes the block or deletes it; only a commit cut short leaves one for
//! the next start to settle. Otherwise no block stays in `blocks/` unindexed, holding
//! disk space, to be set aside at the next start.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::Mutex;
use tracing::debug;

use super::SealJob;
use crate::block::{self, BlockMeta};
use crate::{Error, Inner, Result, block_files};

/// Who owns an encode's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Being written.
    Writing,
    /// Written (or failed), not committed yet.
    Written,
    /// Its index commit has begun: the flusher indexes or deletes it.
    Committing,
    /// Given up: the writing thread deletes what it writes.
    Dropped,
}

/// A generation's block being written on a blocking thread.
pub(super) struct Encoding {
    pub(super) path: PathBuf,
    /// When the encode started: the flush's time runs from here.
    pub(super) started: Instant,
    handle: tokio::task::JoinHandle<Result<BlockMeta>>,
    claim: Arc<Mutex<Claim>>,
}

impl Encoding {
    /// Starts writing `job`'s rows as a new block.
    pub(super) fn start(inner: &Arc<Inner>, job: &SealJob) -> Encoding {
        let id = inner.next_block_id();
        let path = inner.blocks_dir.join(block::block_file_name(id));
        let claim = Arc::new(Mutex::new(Claim::Writing));
        let batches = job.batches.clone();
        let arrow_bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        debug!(
            arrow_bytes,
            batches = batches.len(),
            "flushing head generation"
        );
        let running = Running::start(inner.clone());
        let checked = inner.clone();
        let seq = job.seq_through;
        let handle = tokio::task::spawn_blocking({
            let claim = claim.clone();
            let path = path.clone();
            move || {
                let _running = running;
                // Not into a directory put in the place of the one opened: the process stops.
                let written = if crate::data_dir_watch::writable(&checked) {
                    let config = &checked.config;
                    block::write_block_from_batches(
                        &checked.blocks_dir,
                        id,
                        &batches,
                        config.row_group_rows,
                        config.block_order,
                        0,
                        seq,
                    )
                } else {
                    Err(Error::Closed)
                };
                let mut claim = claim.lock();
                if *claim == Claim::Dropped {
                    block_files::remove_unindexed(&path);
                    return Err(Error::Closed);
                }
                *claim = Claim::Written;
                written
            }
        });
        Encoding {
            path,
            started: Instant::now(),
            handle,
            claim,
        }
    }

    /// Waits for the block to be written. Cancel-safe: dropped before it is done, the
    /// encode goes on.
    pub(super) async fn wait(&mut self) -> Result<BlockMeta> {
        let written = (&mut self.handle).await;
        written.map_err(Error::from).and_then(|meta| meta)
    }

    /// The block's index commit begins: from now on the caller indexes or deletes it.
    pub(super) fn committing(&self) {
        *self.claim.lock() = Claim::Committing;
    }
}

impl Drop for Encoding {
    fn drop(&mut self) {
        let mut claim = self.claim.lock();
        match *claim {
            Claim::Writing => *claim = Claim::Dropped,
            Claim::Written => {
                *claim = Claim::Dropped;
                block_files::remove_unindexed(&self.path);
            }
            Claim::Committing | Claim::Dropped => {}
        }
    }
}

/// Counts an encode running until it ends, however it ends (a blocking task dropped
/// before it ran included).
struct Running(Arc<Inner>);

impl Running {
    fn start(inner: Arc<Inner>) -> Running {
        let stats = &inner.stats;
        let running = stats.encodes_running.fetch_add(1, Ordering::Relaxed) + 1;
        stats.encodes_running_max.fetch_max(running, Ordering::Relaxed);
        Running(inner)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.stats.encodes_running.fetch_sub(1, Ordering::Relaxed);
    }
}
