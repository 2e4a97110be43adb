//! The write path: one thread owns the WAL and is the only one that appends to the head,
//! so the order of the log and the order of the head are the same.
//!
//! ```text
//!  write_spans ─(encode in caller)─► bounded queue ─► writer thread:
//!      append group to WAL ─► commit (write, fsync if "always") ─► push rows to head ─► ack
//!      every flush_interval or flush_rows: rotate WAL, seal head ─► flusher task
//!  flusher task: sort + write Parquet block (two generations at once) ─► index it in
//!      SQL ─► drop sealed rows, delete WAL segments now covered by blocks (in the
//!      order the generations were sealed)
//! ```

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use meshtel_model::log_window::LogWindow;
use meshtel_model::{Error as ModelError, Operation};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::block::BlockMeta;
use crate::config::WalSync;
use crate::schema::span_schema;
use crate::stats::Stats;
use crate::wal::{Wal, WalSyncer};
use crate::{Error, Inner, Result, Sealed};

mod encoding;

use encoding::Encoding;

/// A request to the writer thread.
pub(crate) enum Command {
    /// Append rows; ack once they are in the WAL and the head.
    Write {
        payload: Vec<u8>,
        batch: RecordBatch,
        /// Arrow memory of `batch`, counted against `max_head_bytes`.
        arrow_bytes: usize,
        operations: Vec<(String, Operation)>,
        ack: oneshot::Sender<Result<(), ModelError>>,
        _permit: Option<OwnedSemaphorePermit>,
    },
    /// Seal the head now; ack once it is in a block.
    Flush { ack: oneshot::Sender<()> },
    /// Seal the head, hand it to the flusher and stop; ack once it is in a block. Every
    /// write sent before it is in that seal (a separate `Flush` first could be followed
    /// by a write its seal would miss).
    Shutdown { ack: oneshot::Sender<()> },
}

/// A sealed head generation on its way to becoming a block.
pub(crate) struct SealJob {
    pub seq_through: u64,
    pub batches: Vec<RecordBatch>,
    pub waiters: Vec<oneshot::Sender<()>>,
}

/// Encodes a batch as an Arrow IPC stream (one WAL record); `arrow_bytes` is the
/// batch's Arrow memory, which sizes the buffer.
pub(crate) fn encode_record(batch: &RecordBatch, arrow_bytes: usize) -> Result<Vec<u8>> {
    // The stream holds the batch's buffers plus schema and framing: size it once
    // instead of growing it by doubling (each growth copies everything written so far).
    let capacity = arrow_bytes + 4096;
    let mut writer = StreamWriter::try_new(Vec::with_capacity(capacity), &span_schema())?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// Decodes one WAL record back into batches.
pub(crate) fn decode_record(payload: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(Cursor::new(payload), None)?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        out.push(RecordBatch::try_new(
            span_schema(),
            batch.columns().to_vec(),
        )?);
    }
    Ok(out)
}

const MAX_GROUP: usize = 512;

/// Failed WAL appends, each counted in `wal_append_failures` and logged at most once
/// per [`meshtel_model::log_window::LOG_INTERVAL`] with how many failed (and how many
/// requests were refused) since the line before: on a full disk they repeat at the
/// clients' rate, and the log may share the disk.
#[derive(Default)]
pub(crate) struct AppendFailures {
    window: LogWindow,
    requests: u64,
    last_error: String,
}

impl AppendFailures {
    /// Notes a failed append of a group of `requests` requests at `now`. Returns the
    /// (failures, requests) of the line written, if one was.
    pub(crate) fn note(
        &mut self,
        stats: &Stats,
        now: Instant,
        requests: usize,
        error: &crate::Error,
    ) -> Option<(u64, u64)> {
        stats.wal_append_failures.fetch_add(1, Ordering::Relaxed);
        self.requests += requests as u64;
        self.last_error = error.to_string();
        let failures = self.window.note(now)?;
        Some(self.log(failures))
    }

    /// For the writer's tick: logs the failures of a burst that ended, once due.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<(u64, u64)> {
        let failures = self.window.flush(now)?;
        Some(self.log(failures))
    }

    fn log(&mut self, failures: u64) -> (u64, u64) {
        let requests = std::mem::take(&mut self.requests);
        error!(
            failures,
            requests,
            error = %self.last_error,
            "wal append failed; the group's requests are refused (one line per 10 s at most: \
             the failures and refused requests since the last line)"
        );
        (failures, requests)
    }
}

/// The interval sync thread (`wal.sync = "interval"`): `fdatasync`s the WAL every
/// `interval` when anything was written since, until `stop`'s sender is dropped (or
/// sends), which wakes it at once however long the interval; then syncs one last time,
/// so that shutdown waits for one sync and not for the rest of an interval.
pub(crate) fn run_wal_syncer(
    syncer: &WalSyncer,
    interval: Duration,
    stop: &Receiver<()>,
    stats: &Stats,
) {
    let sync = || {
        let started = Instant::now();
        match syncer.sync_if_dirty() {
            Ok(true) => stats.record_fsync(started.elapsed()),
            Ok(false) => {}
            Err(e) => error!(error = %e, "wal fsync failed"),
        }
    };
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        sync();
    }
    sync();
}

/// The writer thread's loop. Returns when asked to shut down or when every sender is
/// gone.
pub(crate) fn run_writer(
    inner: Arc<Inner>,
    mut wal: Wal,
    rx: Receiver<Command>,
    flush_tx: mpsc::UnboundedSender<SealJob>,
) {
    let fsync_each = inner.config.wal.sync == WalSync::Always;
    let tick = Duration::from_millis(50);
    let mut last_seal = Instant::now();
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut flush_waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut shutting_down = false;
    let mut append_failures = AppendFailures::default();
    // Rotation fails at every seal while the WAL directory cannot take a new segment.
    let mut rotation_failures = LogWindow::default();
    // Rotations failed in a row, for the line that says they work again.
    let mut rotations_failed = 0u64;
    loop {
        append_failures.tick(Instant::now());
        match rx.recv_timeout(tick) {
            Ok(cmd) => group.push(cmd),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => shutting_down = true,
        }
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(cmd) => group.push(cmd),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        for cmd in group.drain(..) {
            match cmd {
                Command::Write {
                    payload,
                    batch,
                    arrow_bytes,
                    operations,
                    ack,
                    _permit,
                } => writes.push((payload, (batch, arrow_bytes), operations, ack)),
                Command::Flush { ack } => flush_waiters.push(ack),
                Command::Shutdown { ack } => {
                    shutting_down = true;
                    flush_waiters.push(ack);
                }
            }
        }
        if !writes.is_empty() {
            let started = Instant::now();
            let mut result = Ok(());
            for (payload, ..) in &writes {
                if let Err(e) = wal.append(payload) {
                    result = Err(e);
                    break;
                }
            }
            let result = result.and_then(|()| wal.commit(fsync_each));
            inner.stats.record_commit(started.elapsed());
            match result {
                Ok(synced) => {
                    if let Some(took) = synced {
                        inner.stats.record_fsync(took);
                    }
                    inner.wal_failing.lock().take();
                    let mut spans = 0;
                    {
                        let mut state = inner.state.write();
                        for (_, (batch, arrow_bytes), ..) in &writes {
                            spans += batch.num_rows();
                            state.active_rows += batch.num_rows();
                            state.active_bytes += arrow_bytes;
                            state.active.push(batch.clone());
                        }
                    }
                    let wal_bytes = writes.iter().map(|w| w.0.len() + 8).sum();
                    inner.stats.record_written(spans, wal_bytes);
                    for (_, _, operations, ack) in writes {
                        inner.register_operations(operations, false);
                        let _ = ack.send(Ok(()));
                    }
                }
                Err(e) => {
                    // The WAL has cut the group off (or moved on to a new segment):
                    // nothing of it replays, and the next group starts on good bytes.
                    append_failures.note(&inner.stats, Instant::now(), writes.len(), &e);
                    *inner.wal_failing.lock() = Some((e.to_string(), Instant::now()));
                    let disk_full = e.is_disk_full();
                    if disk_full {
                        inner
                            .stats
                            .rejected_disk_full
                            .fetch_add(writes.len() as u64, Ordering::Relaxed);
                    }
                    for (.., ack) in writes {
                        let _ = ack.send(Err(if disk_full {
                            ModelError::DiskFull {
                                message: format!(
                                    "the write-ahead log's disk is full, nothing of this request was kept ({e})"
                                ),
                                retry_after: crate::disk::DISK_FULL_RETRY_AFTER,
                            }
                        } else {
                            ModelError::Unavailable("write-ahead log is not writable".into())
                        }));
                    }
                }
            }
        }
        let (active_rows, active_bytes, active_empty) = {
            let state = inner.state.read();
            (
                state.active_rows,
                state.active_bytes,
                state.active.is_empty(),
            )
        };
        // Sealing at a quarter of the memory bound keeps room for the generations
        // being flushed, whatever the size of spans.
        let due = active_rows >= inner.config.flush_rows
            || active_bytes as u64 >= inner.config.max_head_bytes.as_u64() / 4
            || (!active_empty && last_seal.elapsed() >= inner.config.flush_interval)
            || !flush_waiters.is_empty()
            || shutting_down;
        if due {
            last_seal = Instant::now();
            if active_empty {
                // Nothing to seal: a flush request is already satisfied once earlier
                // seals are done, so queue it behind them.
                let _ = flush_tx.send(SealJob {
                    seq_through: 0,
                    batches: Vec::new(),
                    waiters: std::mem::take(&mut flush_waiters),
                });
            } else if !crate::data_dir_watch::writable(&inner) {
                // The data directory was replaced: a new WAL segment would land in the
                // one now in its place. Nothing is sealed; the process stops.
            } else {
                match wal.rotate() {
                    Ok(seq_through) => {
                        if rotations_failed > 0 {
                            info!(
                                failed = rotations_failed,
                                "wal rotation succeeded again; the head is flushed to a block"
                            );
                            rotations_failed = 0;
                        }
                        let batches = {
                            let mut state = inner.state.write();
                            let batches = std::mem::take(&mut state.active);
                            let rows = std::mem::take(&mut state.active_rows);
                            let bytes = std::mem::take(&mut state.active_bytes);
                            state.sealed.push(Sealed {
                                seq_through,
                                batches: batches.clone(),
                                rows,
                                bytes,
                            });
                            batches
                        };
                        debug!(seq_through, "sealed head");
                        let _ = flush_tx.send(SealJob {
                            seq_through,
                            batches,
                            waiters: std::mem::take(&mut flush_waiters),
                        });
                    }
                    Err(e) => {
                        // Retried at the next seal; counted with the flushes that fail,
                        // and logged at most once per LOG_INTERVAL.
                        inner.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
                        rotations_failed += 1;
                        if let Some(failures) = rotation_failures.note(Instant::now()) {
                            error!(
                                error = %e,
                                failures,
                                "wal rotation failed; head stays in memory (one line per 10 s at \
                                 most: the failures since the last line)"
                            );
                        }
                    }
                }
            }
        }
        if shutting_down {
            info!(wal_bytes = wal.bytes_written(), "wal writer stopped");
            return;
        }
    }
}

/// Head generations encoded into blocks at once. A flush is mostly one thread's CPU,
/// then waits on the disk (the block's fsync) and on SQL; a second generation encoded
/// meanwhile keeps ingest from waiting on those under a burst. Blocks are still
/// indexed, and their WAL segments deleted, in the order they were sealed.
const ENCODES_IN_FLIGHT: usize = 2;

/// Turns sealed head generations into blocks, in order, retrying on failure; up to
/// [`ENCODES_IN_FLIGHT`] are encoded at once.
pub(crate) async fn run_flusher(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<SealJob>) {
    // Jobs received, in order, with their encodes when started.
    let mut queue: std::collections::VecDeque<(SealJob, Option<Encoding>)> =
        std::collections::VecDeque::new();
    let mut open = true;
    loop {
        let (job, encoding) = match queue.pop_front() {
            Some(next) => next,
            None if open => match rx.recv().await {
                Some(job) => {
                    let encoding = start_encoding(&inner, &job);
                    (job, encoding)
                }
                None => return,
            },
            None => return,
        };
        // The wait advised to refused exporters runs from when this generation is next
        // in line: the one before it, and that one's retries, are not its own.
        let front_at = Instant::now();
        let mut first = None;
        if let Some(mut encoding) = encoding {
            // While this one is encoded, jobs that arrive start theirs.
            let written = loop {
                let room = open && queue.len() + 1 < ENCODES_IN_FLIGHT;
                tokio::select! {
                    written = encoding.wait() => break written,
                    next = rx.recv(), if room => match next {
                        Some(next) => {
                            let started = start_encoding(&inner, &next);
                            queue.push_back((next, started));
                        }
                        None => open = false,
                    },
                }
            };
            let settled = settle(&inner, &job, &encoding, written, front_at).await;
            if settled.is_err() {
                // The blocks behind this one are indexed after it: not held on disk
                // while it is tried again (on a full disk, its retry needs their space).
                // They are dropped, deleting what they wrote, and written again in turn.
                for (_, behind) in &mut queue {
                    *behind = None;
                }
            }
            first = Some(settled);
        }
        if !job.batches.is_empty() {
            flush_until_done(&inner, &job, first, front_at).await;
        }
        for waiter in job.waiters {
            let _ = waiter.send(());
        }
    }
}

/// Waits, at most `wait`, until no head generation is being encoded: after the flusher
/// stopped, those it gave up are deleting what they wrote.
pub(crate) async fn wait_for_encodes(inner: &Inner, wait: Duration) {
    let deadline = Instant::now() + wait;
    while inner.stats.encodes_running.load(Ordering::Relaxed) > 0 {
        if Instant::now() >= deadline {
            warn!(waited = ?wait, "a block being written when the store stopped is still being written; it is set aside at the next start");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts writing `job`'s block, or `None` when it holds no rows.
fn start_encoding(inner: &Arc<Inner>, job: &SealJob) -> Option<Encoding> {
    (!job.batches.is_empty()).then(|| Encoding::start(inner, job))
}

/// Indexes the block `encoding` wrote (`written`), or says why it could not be.
async fn settle(
    inner: &Arc<Inner>,
    job: &SealJob,
    encoding: &Encoding,
    written: Result<BlockMeta>,
    front_at: Instant,
) -> Result<BlockMeta, FlushFailed> {
    let committed = match written {
        Ok(meta) => commit_block(inner, job, meta, encoding, front_at).await,
        Err(error) => Err(error),
    };
    committed.map_err(|error| FlushFailed {
        block: encoding.path.clone(),
        error,
    })
}

/// Settles `job` whose first attempt ended as `first` (`None`: not tried yet): on
/// failure, tries again, under a new block id, with a backoff, until it is flushed.
/// `front_at`: when it became next in line.
async fn flush_until_done(
    inner: &Arc<Inner>,
    job: &SealJob,
    first: Option<Result<BlockMeta, FlushFailed>>,
    front_at: Instant,
) {
    let mut backoff = Duration::from_millis(200);
    let mut failed = 0u64;
    let mut attempt = first;
    loop {
        let outcome = match attempt.take() {
            Some(outcome) => outcome,
            None => flush_one(inner, job, front_at).await,
        };
        match outcome {
            Ok(meta) => {
                // Every flush interval: routine, counted in
                // meshtel_store_flushes_total; INFO would log one a second.
                debug!(
                    block = meta.id,
                    rows = meta.rows,
                    bytes = meta.bytes,
                    "flushed head to block"
                );
                if failed > 0 {
                    info!(block = meta.id, failed, "block flush succeeded again");
                }
                return;
            }
            Err(FlushFailed { block, error: e }) => {
                failed += 1;
                inner.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
                error!(block = %block.display(), error = %e, retry_in = ?backoff, "block flush failed; rows stay in the head and the wal");
                wait_to_retry(inner, backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Waits `backoff` before a failed flush is tried again, or less once the data
/// directory's disk has gained room since (space freed after a full disk): a flush costs
/// the head's encoding, so retries back off to 30 s, but a disk made free again is
/// written to within a second.
async fn wait_to_retry(inner: &Inner, backoff: Duration) {
    const ROOM: u64 = 16 << 20;
    let until = tokio::time::Instant::now() + backoff;
    let free_then = inner.disk.free_at_check();
    while tokio::time::Instant::now() < until {
        let step = (until - tokio::time::Instant::now()).min(Duration::from_millis(500));
        tokio::time::sleep(step).await;
        if let (Some(then), Some(now)) = (free_then, inner.disk.free_at_check())
            && now > then.saturating_add(ROOM)
        {
            return;
        }
    }
}

/// A flush that failed: the block file it was writing, and why.
pub(crate) struct FlushFailed {
    pub block: PathBuf,
    pub error: Error,
}

/// Writes `job` as a block and indexes it; then its WAL segments go. When the index
/// write fails (its error names the database), the block file is deleted, so that a
/// retry, under a new id, leaves no copy behind.
pub(crate) async fn flush_one(
    inner: &Arc<Inner>,
    job: &SealJob,
    front_at: Instant,
) -> Result<BlockMeta, FlushFailed> {
    let mut encoding = Encoding::start(inner, job);
    let written = encoding.wait().await;
    settle(inner, job, &encoding, written, front_at).await
}

/// Whether the index lists block `id`, whose commit reported `error`. Asked again, with
/// a backoff, until SQL answers: a flush tried again while it is not known would index
/// the same rows a second time, under another id, if this one's commit did happen.
async fn listed_once_known(inner: &Inner, id: u64, error: &Error) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        match inner.catalog.lists_block(id).await {
            Ok(listed) => return listed,
            Err(e) => {
                // The flush stands still meanwhile: counted with the failed ones, so
                // that an alert on them sees it.
                inner.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
                error!(block = id, commit_error = %error, error = %e, retry_in = ?backoff, "cannot tell whether a block's index commit happened; asking again before the flush goes on");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Indexes the block `meta` that `encoding` wrote of `job`, takes its rows out of the
/// head and deletes the WAL segments it covers. Called in the order the generations
/// were sealed; `front_at` is when `job` became next in line.
async fn commit_block(
    inner: &Arc<Inner>,
    job: &SealJob,
    meta: BlockMeta,
    encoding: &Encoding,
    front_at: Instant,
) -> Result<BlockMeta> {
    let id = meta.id;
    let path = encoding.path.as_path();
    let seq = job.seq_through;
    // The catalog entries of these spans reach SQL before their WAL segments go
    // (crate::catalog_writer).
    if !crate::catalog_writer::written(inner, Duration::from_secs(10)).await {
        warn!(
            block = id,
            "catalog entries not yet written; flushing the block anyway"
        );
    }
    // Only a commit that happened lets the WAL segments go (crate::catalog::Catalog).
    encoding.committing();
    if let Err(e) = inner
        .catalog
        .replace_blocks(std::slice::from_ref(&meta), &[], Some(seq))
        .await
    {
        if listed_once_known(inner, id, &e).await {
            warn!(
                block = %path.display(),
                error = %e,
                "the block's commit reported an error, but the index lists it: flushed"
            );
        } else {
            // Not indexed: its rows are still in the head and the WAL.
            crate::block_files::remove_unindexed(path);
            return Err(e);
        }
    }
    {
        let mut state = inner.state.write();
        state.blocks.push(meta.clone());
        state.blocks.sort_by_key(|b| (b.max_start, b.id));
        state.sealed.retain(|s| s.seq_through != seq);
    }
    inner
        .stats
        .record_flush(encoding.started.elapsed(), front_at.elapsed());
    // A restored copy's WAL segments, named as this process's, are not deleted. Off
    // the runtime's threads: directory checks and unlinks block.
    let checked = inner.clone();
    let removed = tokio::task::spawn_blocking(move || {
        if !crate::data_dir_watch::writable(&checked) {
            return Ok(());
        }
        Wal::remove_through(&checked.wal_dir, seq)
    })
    .await;
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "could not delete flushed wal segments; they are skipped on replay");
        }
        Err(e) => warn!(error = %e, "the task deleting flushed wal segments failed"),
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshtel_model::log_window::LOG_INTERVAL;

    /// Every failed append is counted; one line per interval tells how many failed.
    #[test]
    fn failed_wal_appends_are_counted_and_logged_once_per_interval() {
        let stats = Stats::default();
        let mut failures = AppendFailures::default();
        let error = crate::Error::Io(std::io::Error::other("No space left on device"));
        let t0 = Instant::now();
        let mut lines = Vec::new();
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i);
            lines.extend(failures.note(&stats, now, 2, &error));
            lines.extend(failures.tick(now));
        }
        assert_eq!(lines, vec![(1, 2)]);
        assert_eq!(failures.tick(t0 + LOG_INTERVAL), Some((999, 1998)));
        assert_eq!(failures.tick(t0 + LOG_INTERVAL * 3), None);
        assert_eq!(stats.wal_append_failures.load(Ordering::Relaxed), 1000);
    }
}
