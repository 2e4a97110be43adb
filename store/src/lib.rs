//! meshtel's persistence.
//!
//! ```text
//!  SpanSink::write_spans ─► encode rows (Arrow) ─► WAL (group commit) ─► head (Arrow, searchable)
//!                                                                      │ every few s / N rows
//!                                                                      ▼
//!                      SQL index (sqlx) ◄── Parquet block (zstd, sorted by trace id, bloom)
//!                                                                      │ background
//!                                                                      ▼
//!                                               compaction of small blocks, retention
//!  TraceReader ─► catalog (memory, persisted in SQL) │ DataFusion over head ∪ blocks
//! ```
//!
//! - [`wal`]: the write-ahead log; [`writer`]: the thread that owns it and the flusher;
//! - [`schema`], [`encode`], [`decode`]: the span table and OTLP ↔ Arrow;
//! - [`block`]: Parquet blocks; [`search`]: DataFusion queries; [`compaction`], and
//!   [`memory`]: handing a merge's freed memory back to the OS;
//! - `read`: the [`TraceReader`](meshtel_model::TraceReader) over all of it, each
//!   answer bounded in spans by `span_budget`;
//! - [`block_files`]: the blocks directory against the index (leftovers, blocks the
//!   index does not name, blocks that cannot be read); `lock`: one writer per data
//!   directory; `disk`: the free-space reserve, and an index that cannot serve the
//!   blocks beside it;
//! - [`catalog`]: SQL state (services, operations, block index); `catalog_memory`: the
//!   services and operations listed, in memory, and their bounds;
//! - [`quotas`]: quota policies, their audit log and admin tokens in SQL ([`QuotaRepo`]).

pub mod adopt;
pub mod block;
pub mod block_files;
pub mod catalog;
mod catalog_memory;
mod catalog_writer;
pub mod compaction;
pub mod config;
mod data_dir_watch;
pub mod decode;
mod disk;
pub mod edges;
pub mod encode;
mod error;
mod lock;
pub mod memory;
mod queue_room;
pub mod quotas;
mod readiness;
mod read;
mod replay;
pub mod schema;
pub mod search;
pub mod span_budget;
mod stats;
pub mod trace_index;
pub mod wal;
pub mod wire;
mod writer;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use meshtel_model::otlp::trace::v1::ResourceSpans;
use meshtel_model::validate::SpanLimits;
use meshtel_model::write::write_resource_spans;
use meshtel_model::{Error as ModelError, ExportSummary};
use meshtel_model::{Operation, SpanSink, TraceId};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

pub use config::{BlockOrder, StoreConfig, WalConfig, WalSync};
pub use disk::check_min_free_disk;
pub use data_dir_watch::DataDirLost;
pub use edges::{Coarsened, EdgeConfig, EdgeRollups};
pub use error::{Error, Result};
pub use lock::{LOCK_FILE, create_private_dir, ensure_not_in_use};
pub use quotas::QuotaRepo;
pub use stats::StoreStats;

use block::BlockMeta;
use catalog::Catalog;
use catalog_memory::MemoryCatalog;
use catalog_writer::CatalogQueue;
use search::{Searcher, Source};
use queue_room::QueueRoom;
use writer::Command;

/// A head generation sealed for flushing; still searchable until its block is indexed.
pub(crate) struct Sealed {
    seq_through: u64,
    batches: Vec<RecordBatch>,
    rows: usize,
    /// Arrow memory of `batches`.
    bytes: usize,
}

/// What searches see: head batches and indexed blocks.
#[derive(Default)]
pub(crate) struct State {
    active: Vec<RecordBatch>,
    active_rows: usize,
    /// Arrow memory of `active`.
    active_bytes: usize,
    sealed: Vec<Sealed>,
    /// Sorted by (max_start, id).
    blocks: Vec<BlockMeta>,
}

pub(crate) struct Inner {
    config: StoreConfig,
    blocks_dir: PathBuf,
    wal_dir: wal::WalDir,
    state: RwLock<State>,
    /// The services and operations listed, bounded.
    known: MemoryCatalog,
    catalog: Catalog,
    catalog_queue: CatalogQueue,
    searcher: Searcher,
    next_block_id: AtomicU64,
    stats: stats::Stats,
    /// The free-space reserve of the data directory's disk (`store.min_free_disk`).
    disk: disk::DiskReserve,
    /// The data directory's lock (writers only), released by [`TraceStore::shutdown`]
    /// once the writer has stopped, or when the last user of the store is gone.
    dir_lock: Mutex<Option<lock::DataDirLock>>,
    /// Opened beside a writer ([`TraceStore::open_read_only`]): never changes the data
    /// directory.
    read_only: bool,
    /// Blocks a read-only store found unreadable and no longer searches, by id (a
    /// writer sets them aside instead).
    unreadable: Mutex<BTreeSet<u64>>,
    /// Set when shutdown begins: compaction starts nothing new and gives up a merge
    /// in progress.
    stopping: Arc<AtomicBool>,
    /// Wakes compaction when shutdown begins.
    stop_compaction: tokio::sync::Notify,
    /// Wakes a read-only store's index reload at once: a read found blocks replaced.
    reload_index_now: tokio::sync::Notify,
    /// Why the last WAL append failed and when, while no append has succeeded since
    /// ([`TraceStore::refuses_writes`]).
    wal_failing: Mutex<Option<(String, std::time::Instant)>>,
    /// What happened to the database or blocks directory, once it was removed or
    /// replaced under this process ([`data_dir_watch`]).
    data_dir_lost: tokio::sync::watch::Sender<Option<data_dir_watch::DataDirLost>>,
    /// The paths of the data directory and what they named at open.
    watched: data_dir_watch::Watched,
}

impl Inner {
    fn next_block_id(&self) -> u64 {
        self.next_block_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Lists services and operations not seen before, within the catalog's bounds
    /// ([`catalog_memory`]), and queues them for SQL. What the bounds refuse of writes
    /// `replayed` from the WAL at start was counted by the process that took them.
    fn register_operations(&self, operations: Vec<(String, Operation)>, replayed: bool) {
        let (now, now_unix_ms) = (std::time::Instant::now(), now_unix_nano() / 1_000_000);
        let registered = if replayed {
            self.known.register_replayed(operations, now, now_unix_ms)
        } else {
            let overflow = &self.stats.catalog_overflow;
            self.known.register(operations, overflow, now, now_unix_ms)
        };
        if !registered.added.is_empty() {
            self.catalog_queue
                .send(vec![registered.added.into_change()]);
        }
    }

    fn head_batches(state: &State) -> Vec<RecordBatch> {
        let mut head: Vec<RecordBatch> = state.active.clone();
        for sealed in &state.sealed {
            head.extend(sealed.batches.iter().cloned());
        }
        head
    }

    /// Head first, then each block overlapping the window, newest first. The search
    /// decides how many blocks to scan at once (see [`Searcher::find_trace_ids`]).
    fn sources(&self, start_min: i64, start_max: i64) -> Vec<Source> {
        let state = self.state.read();
        let mut sources = vec![Source::Head(Self::head_batches(&state))];
        sources.extend(
            state
                .blocks
                .iter()
                .rev()
                .filter(|b| b.max_start >= start_min && b.min_start <= start_max)
                .map(|b| Source::of_blocks([b], &self.blocks_dir)),
        );
        sources
    }

    /// The head plus the blocks whose trace id sets may hold one of `ids`.
    fn fetch_sources(&self, ids: &[TraceId]) -> Vec<Source> {
        let state = self.state.read();
        let blocks = state
            .blocks
            .iter()
            .filter(|b| ids.iter().any(|id| b.trace_ids.may_contain(&id.0)));
        vec![
            Source::Head(Self::head_batches(&state)),
            Source::of_blocks(blocks, &self.blocks_dir),
        ]
    }

    /// Head plus every block overlapping the window, as one source list.
    fn window_sources(&self, start_min: i64, start_max: i64) -> Vec<Source> {
        let state = self.state.read();
        let blocks = state
            .blocks
            .iter()
            .filter(|b| b.max_start >= start_min && b.min_start <= start_max);
        vec![
            Source::Head(Self::head_batches(&state)),
            Source::of_blocks(blocks, &self.blocks_dir),
        ]
    }
}

/// The trace store. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct TraceStore {
    inner: Arc<Inner>,
    tx: Arc<Mutex<Option<SyncSender<Command>>>>,
    queued_bytes: Arc<Semaphore>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The compaction task, which shutdown lets finish (or give up) its merge.
    compaction: Arc<Mutex<Option<JoinHandle<()>>>>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

/// `store.max_query_memory` in bytes.
fn query_memory(config: &StoreConfig) -> usize {
    usize::try_from(config.max_query_memory.as_u64()).unwrap_or(usize::MAX)
}

/// How long shutdown waits for compaction to give up or index a merge.
const COMPACTION_STOP_WAIT: Duration = Duration::from_secs(30);

fn now_unix_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl TraceStore {
    /// Opens the store in `config.data_dir` for writing: locks the directory (a second
    /// writer gets [`Error::Locked`]), reads the disk's free space (`disk`), runs SQL
    /// migrations (refusing a new index beside blocks, and one it cannot write), loads
    /// the catalog and the block index, sorts out the blocks directory ([`block_files`]:
    /// leftovers of interrupted writes deleted, unindexed and unreadable blocks set
    /// aside), replays the WAL into the head, and starts the writer, flusher, WAL
    /// syncer, disk monitor and compaction. Must be called within a Tokio runtime.
    pub async fn open(config: StoreConfig) -> Result<TraceStore> {
        config.validate()?;
        let data_dir = lock::absolute_data_dir(&config.data_dir)?;
        // Before anything is read or written: one writer per data directory.
        let dir_lock = lock::DataDirLock::acquire(&data_dir)?;
        let blocks_dir = data_dir.join("blocks");
        let wal_dir = data_dir.join("wal");
        lock::create_dir("blocks directory", &blocks_dir)?;
        lock::create_dir("WAL directory", &wal_dir)?;
        lock::check_dir_writable("blocks directory", &blocks_dir, "a block at every flush")?;
        let stats = stats::Stats::default();
        let disk = disk::DiskReserve::new(&data_dir, config.min_free_disk);
        disk.check_at_open(&stats)?;
        let flush_room = config
            .max_head_bytes
            .as_u64()
            .saturating_add(config.max_queued_bytes.as_u64());
        let min_free = config.min_free_disk.as_u64();
        if min_free > 0 && min_free < flush_room {
            warn!(
                min_free_disk = min_free,
                max_head_bytes = config.max_head_bytes.as_u64(),
                max_queued_bytes = config.max_queued_bytes.as_u64(),
                "store.min_free_disk is below max_head_bytes + max_queued_bytes: on a nearly \
                 full disk a burst can leave too little room to flush the head and merge blocks"
            );
        }
        disk::check_index_beside_blocks(&data_dir, &blocks_dir)?;
        let catalog = Catalog::open(&data_dir)
            .await
            .map_err(disk::explain_open_error)?;
        disk::check_index_writable(&catalog, &data_dir).await?;
        let watched =
            data_dir_watch::Watched::new(&data_dir, catalog.path(), &blocks_dir, Some(&wal_dir))?;
        // A file that opened may still be damaged further in: the first reads say so.
        let damaged = disk::explain_read_error(&data_dir);
        let block_files::Prepared { blocks, next_id } =
            block_files::prepare(&catalog, &blocks_dir, &stats)
                .await
                .map_err(&damaged)?;

        let known = MemoryCatalog::new(&config);
        known.replace(
            catalog.load_services().await.map_err(&damaged)?,
            catalog.load_operations().await.map_err(&damaged)?,
        );

        let flushed_through = catalog.flushed_through().await.map_err(&damaged)?;
        let (wal, replayed) = wal::Wal::open(&wal_dir, flushed_through)?;
        let damaged_segments = replayed.iter().filter(|s| s.damaged).count() as u64;
        stats
            .wal_segments_damaged
            .fetch_add(damaged_segments, Ordering::Relaxed);
        let head = replay::into_head(&replayed);

        let (catalog_queue, catalog_inbox) = CatalogQueue::new();
        let inner = Arc::new(Inner {
            blocks_dir,
            wal_dir: wal.dir().clone(),
            state: RwLock::new(State {
                active: head.batches,
                active_rows: head.rows,
                active_bytes: head.bytes,
                sealed: Vec::new(),
                blocks,
            }),
            known,
            catalog: catalog.clone(),
            catalog_queue,
            searcher: Searcher::new(query_memory(&config)),
            next_block_id: AtomicU64::new(next_id),
            stats,
            disk,
            config: config.clone(),
            dir_lock: Mutex::new(Some(dir_lock)),
            read_only: false,
            stopping: Arc::default(),
            stop_compaction: tokio::sync::Notify::new(),
            reload_index_now: tokio::sync::Notify::new(),
            wal_failing: Mutex::new(None),
            unreadable: Mutex::default(),
            data_dir_lost: tokio::sync::watch::Sender::new(None),
            watched,
        });
        inner.register_operations(head.operations, true);

        let (tx, rx) = sync_channel(4096);
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let syncer = wal.syncer();
        let writer_inner = inner.clone();
        let writer_thread = std::thread::Builder::new()
            .name("meshtel-wal".into())
            .spawn(move || writer::run_writer(writer_inner, wal, rx, flush_tx))?;
        let mut threads = vec![writer_thread];
        // The sync thread stops as soon as this sender is dropped: when shutdown aborts
        // the task holding it, or when the runtime ends.
        let (stop_sync, stop_sync_rx) = std::sync::mpsc::channel::<()>();
        if config.wal.sync == WalSync::Interval {
            let interval = config.wal.sync_interval;
            let sync_inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("meshtel-wal-sync".into())
                    .spawn(move || {
                        writer::run_wal_syncer(&syncer, interval, &stop_sync_rx, &sync_inner.stats)
                    })?,
            );
        }

        let log_inner = inner.clone();
        let tasks = vec![
            tokio::spawn(writer::run_flusher(inner.clone(), flush_rx)),
            tokio::spawn(catalog_writer::run(catalog, catalog_inbox)),
            tokio::spawn(disk::run_monitor(inner.clone())),
            tokio::spawn(data_dir_watch::run(inner.clone())),
            tokio::spawn(async move {
                // Holds the sync thread's stop sender until the store shuts down, and
                // logs catalog refusals no line has told yet.
                let _stop_sync = stop_sync;
                let mut ticks = tokio::time::interval(Duration::from_secs(1));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    log_inner.known.log_untold(std::time::Instant::now());
                }
            }),
        ];
        let compaction = tokio::spawn(compaction::run(inner.clone()));
        Ok(TraceStore {
            inner,
            tx: Arc::new(Mutex::new(Some(tx))),
            // Validation keeps the queue within MAX_QUEUED_BYTES, far below the
            // semaphore's limit; the `min` only guards against a panic.
            queued_bytes: Arc::new(Semaphore::new(
                usize::try_from(config.max_queued_bytes.as_u64())
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            )),
            tasks: Arc::new(Mutex::new(tasks)),
            compaction: Arc::new(Mutex::new(Some(compaction))),
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    /// Opens the store for reading only, beside a collector that writes to the same data
    /// directory: no WAL, no writer, no compaction. The block index and the catalog are
    /// reloaded from SQL every `refresh` so that new blocks become searchable (spans
    /// still in the collector's head are not visible to this reader).
    pub async fn open_read_only(config: StoreConfig, refresh: Duration) -> Result<TraceStore> {
        config.validate()?;
        let data_dir = lock::absolute_data_dir(&config.data_dir)?;
        let blocks_dir = data_dir.join("blocks");
        lock::create_dir("blocks directory", &blocks_dir)?;
        // A reader would create the new index a writer then starts with.
        disk::check_index_beside_blocks(&data_dir, &blocks_dir)?;
        let catalog = Catalog::open_existing(&data_dir, READER_SCHEMA_WAIT)
            .await
            .map_err(disk::explain_open_error)?;
        let watched = data_dir_watch::Watched::new(&data_dir, catalog.path(), &blocks_dir, None)?;
        let (catalog_queue, _inbox) = CatalogQueue::new();
        let inner = Arc::new(Inner {
            blocks_dir,
            wal_dir: wal::WalDir::by_path(&data_dir.join("wal")),
            state: RwLock::new(State::default()),
            known: MemoryCatalog::new(&config),
            catalog,
            catalog_queue,
            searcher: Searcher::new(query_memory(&config)),
            next_block_id: AtomicU64::new(0),
            stats: stats::Stats::default(),
            disk: disk::DiskReserve::disabled(&data_dir),
            config,
            dir_lock: Mutex::new(None),
            read_only: true,
            unreadable: Mutex::default(),
            stopping: Arc::default(),
            stop_compaction: tokio::sync::Notify::new(),
            reload_index_now: tokio::sync::Notify::new(),
            wal_failing: Mutex::new(None),
            data_dir_lost: tokio::sync::watch::Sender::new(None),
            watched,
        });
        let watch = tokio::spawn(data_dir_watch::run(inner.clone()));
        let warned = Arc::default();
        let mut loaded = LoadedCatalog::default();
        reload_index(&inner, &warned, &mut loaded)
            .await
            .map_err(disk::explain_read_error(&data_dir))?;
        let refresher = inner.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(refresh);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = refresher.reload_index_now.notified() => {}
                }
                if let Err(e) = reload_index(&refresher, &warned, &mut loaded).await {
                    warn!(error = %e, "could not reload the block index");
                }
            }
        });
        Ok(TraceStore {
            inner,
            tx: Arc::new(Mutex::new(None)),
            queued_bytes: Arc::new(Semaphore::new(0)),
            tasks: Arc::new(Mutex::new(vec![task, watch])),
            compaction: Arc::default(),
            threads: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Seals the head and waits until its rows are in an indexed block.
    pub async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        let tx = self.tx.lock().clone().ok_or(Error::Closed)?;
        tokio::task::spawn_blocking(move || tx.send(Command::Flush { ack }))
            .await?
            .map_err(|_| Error::Closed)?;
        done.await.map_err(|_| Error::Closed)
    }

    /// Runs one compaction and retention pass now (normally periodic).
    pub async fn compact_now(&self) -> Result<()> {
        compaction::run_once(&self.inner, now_unix_nano()).await
    }

    /// Stops accepting writes, flushes the head to a block, and stops background work.
    /// A head that cannot be flushed within a minute (a full disk, an index that cannot
    /// be written) stays in the WAL, which the next start replays: a WARN says how many
    /// spans.
    pub async fn shutdown(&self) -> Result<()> {
        self.shutdown_within(Duration::from_secs(60)).await
    }

    /// [`TraceStore::shutdown`], waiting at most `wait` for the head's flush.
    pub(crate) async fn shutdown_within(&self, wait: Duration) -> Result<()> {
        let Some(tx) = self.tx.lock().take() else {
            // Read-only: only the refresher to stop.
            for task in self.tasks.lock().drain(..) {
                task.abort();
            }
            self.inner.catalog.close().await;
            return Ok(());
        };
        // A merge in progress is given up (its output deleted) or, if it is indexing
        // already, finishes: never left on disk unindexed once the store is gone.
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.stop_compaction.notify_one();
        let (ack, done) = oneshot::channel();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = tx.send(Command::Shutdown { ack });
        })
        .await;
        if tokio::time::timeout(wait, done).await.is_err() {
            warn!(
                waited = ?wait,
                "the head could not be flushed to a block in time; stopping without it"
            );
        }
        // Catalog changes made since the last flush (sightings, entries forgotten)
        // reach SQL before the writer stops.
        catalog_writer::written(&self.inner, Duration::from_secs(10)).await;
        let compaction = self.compaction.lock().take();
        if let Some(mut compaction) = compaction
            && tokio::time::timeout(COMPACTION_STOP_WAIT, &mut compaction)
                .await
                .is_err()
        {
            compaction.abort();
            warn!(
                waited = ?COMPACTION_STOP_WAIT,
                "compaction did not stop in time; a merged block it leaves is set aside at the next start"
            );
        }
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        let tasks: Vec<_> = self.tasks.lock().drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        // Encodes given up above delete what they write; the directory is theirs till then.
        writer::wait_for_encodes(&self.inner, Duration::from_secs(30)).await;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        data_dir_watch::restore_database(&self.inner).await;
        self.inner.catalog.close().await;
        self.inner.dir_lock.lock().take();
        stats::log_shutdown(&self.stats(), &self.inner.state.read());
        Ok(())
    }

    /// Counters about the store, for metrics and benchmarks.
    pub fn stats(&self) -> StoreStats {
        let state = self.inner.state.read();
        self.inner
            .stats
            .snapshot(state.held_rows(), state.held_bytes(), &state.blocks)
    }
}

/// What a read-only store last read of the catalog: the fingerprint of its entries
/// ([`Catalog::entries_fingerprint`]) and when.
#[derive(Default)]
struct LoadedCatalog {
    fingerprint: Option<[i64; 4]>,
    at: Option<std::time::Instant>,
}

/// How long a read-only store waits for a collector to create or upgrade the database.
const READER_SCHEMA_WAIT: Duration = Duration::from_secs(30);

/// A read-only store reads the whole catalog at least this often, changed or not.
const CATALOG_FULL_RELOAD: Duration = Duration::from_secs(60);

/// Replaces the in-memory block list with what SQL holds now, and the catalog when its
/// entries changed: reading 100,000 operations every second kept an idle query process
/// at a fifth of a core.
async fn reload_index(
    inner: &Arc<Inner>,
    warned: &Arc<Mutex<BTreeSet<u64>>>,
    loaded: &mut LoadedCatalog,
) -> Result<()> {
    let mut blocks = inner.catalog.load_blocks().await?;
    blocks.sort_by_key(|b| (b.max_start, b.id));
    {
        let unreadable = inner.unreadable.lock();
        blocks.retain(|b| !unreadable.contains(&b.id));
    }
    let known = inner.state.read().blocks.clone();
    let blocks =
        block_files::load_trace_id_sets(&inner.blocks_dir, blocks, &known, warned.clone()).await?;
    inner.searcher.forget_blocks_but(&blocks);
    inner.state.write().blocks = blocks;
    let fingerprint = inner.catalog.entries_fingerprint().await?;
    let fresh = loaded
        .at
        .is_some_and(|at| at.elapsed() < CATALOG_FULL_RELOAD);
    if fresh && loaded.fingerprint == Some(fingerprint) {
        return Ok(());
    }
    let services = inner.catalog.load_services().await?;
    let operations = inner.catalog.load_operations().await?;
    inner.known.replace(services, operations);
    *loaded = LoadedCatalog {
        fingerprint: Some(fingerprint),
        at: Some(std::time::Instant::now()),
    };
    Ok(())
}

impl TraceStore {
    /// The write channel, or why there is none; refuses early when the disk is below
    /// its free-space reserve ([`disk`]) or the head is full.
    fn admit_write(&self) -> Result<SyncSender<Command>, ModelError> {
        let tx =
            self.tx.lock().clone().ok_or_else(|| {
                ModelError::Unavailable("store is read-only or shutting down".into())
            })?;
        let config = &self.inner.config;
        self.admit_disk()?;
        {
            let state = self.inner.state.read();
            if let Some(bound) = state.full(config) {
                self.inner
                    .stats
                    .rejected_overload
                    .fetch_add(1, Ordering::Relaxed);
                return Err(ModelError::Overloaded {
                    retry_after: self.inner.stats.head_full_retry_after(),
                    bound,
                });
            }
        }
        Ok(tx)
    }

    /// Room in the write queue for one request, holding nothing yet.
    fn queue_room(&self) -> QueueRoom {
        let total = usize::try_from(self.inner.config.max_queued_bytes.as_u64()).unwrap_or(usize::MAX);
        QueueRoom::new(self.queued_bytes.clone(), total)
    }

    /// The free-space reserve's check ([`disk`]): the space still needed is the
    /// requests waiting for the WAL (the queue's permits in use, this one's included
    /// once it holds them) and the blocks the head's spans will become (bounded by their
    /// Arrow memory), so that what is acknowledged can always be flushed.
    fn admit_disk(&self) -> Result<(), ModelError> {
        let queued = self
            .inner
            .config
            .max_queued_bytes
            .as_u64()
            .min(Semaphore::MAX_PERMITS as u64)
            .saturating_sub(self.queued_bytes.available_permits() as u64);
        let head = self.inner.state.read().held_bytes() as u64;
        self.inner
            .disk
            .admit(&self.inner.stats, queued.saturating_add(head))
    }

    /// Sends encoded rows to the writer and waits until they are in the WAL.
    async fn write_encoded(
        &self,
        tx: SyncSender<Command>,
        encoded: encode::EncodedBatch,
        mut room: QueueRoom,
    ) -> Result<(), ModelError> {
        if encoded.batch.num_rows() == 0 {
            return Ok(());
        }
        let arrow_bytes = encoded.batch.get_array_memory_size();
        let payload = writer::encode_record(&encoded.batch, arrow_bytes)
            .map_err(|e| ModelError::Unavailable(e.to_string()))?;
        if payload.len() as u64 > self.inner.config.max_queued_bytes.as_u64() {
            // Larger than the whole queue: no retry can ever fit, even on an idle
            // server, so this is a permanent refusal and not an overload.
            return Err(ModelError::LargerThanQueue {
                queue_bytes: self.inner.config.max_queued_bytes.as_u64(),
            });
        }
        // What reading the request took of the queue becomes its place in it.
        if let Err(refused) = room.resize(payload.len()) {
            self.inner
                .stats
                .rejected_overload
                .fetch_add(1, Ordering::Relaxed);
            return Err(refused);
        }
        // Checked again with this request's bytes in the queue: requests admitted
        // together must not overshoot the reserve between two reads of the disk.
        self.admit_disk()?;
        let (ack, done) = oneshot::channel();
        let cmd = Command::Write {
            payload,
            batch: encoded.batch,
            arrow_bytes,
            operations: encoded.operations.into_iter().collect(),
            ack,
            _permit: room.into_permit(),
        };
        match tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.inner
                    .stats
                    .rejected_overload
                    .fetch_add(1, Ordering::Relaxed);
                return Err(ModelError::Overloaded {
                    retry_after: Duration::from_millis(500),
                    bound: "the WAL writer's queue of requests is full",
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ModelError::Unavailable("store is shutting down".into()));
            }
        }
        done.await
            .map_err(|_| ModelError::Unavailable("store is shutting down".into()))?
    }
}

#[async_trait::async_trait]
impl SpanSink for TraceStore {
    fn refuses_writes(&self) -> Option<String> {
        TraceStore::refuses_writes(self)
    }

    async fn write_spans(&self, spans: Vec<ResourceSpans>) -> Result<(), ModelError> {
        let tx = self.admit_write()?;
        let max_repeated = self.inner.config.max_queued_bytes.as_u64();
        // The rows' room in the write queue first, as for a request read from its
        // encoding (JSON, Zipkin, and protobuf read through prost).
        let mut room = self.queue_room();
        let expected = queue_room::decoded_queue_bytes(&spans, usize::try_from(max_repeated).unwrap_or(usize::MAX));
        if let Err(refused) = room.reserve(expected) {
            self.inner.stats.rejected_overload.fetch_add(1, Ordering::Relaxed);
            return Err(refused);
        }
        let encoded = encode::encode_resource_spans_off_runtime(spans, max_repeated).await;
        let (encoded, _skipped) = encoded.map_err(Error::into_write_error)?;
        self.write_encoded(tx, encoded, room).await
    }

    /// Reads the request's encoding straight into rows ([`wire`]); requests that
    /// reader leaves to prost take the decoding path.
    async fn write_export_request(
        &self,
        request: Bytes,
        limits: &SpanLimits,
    ) -> Result<ExportSummary, ModelError> {
        let tx = self.admit_write()?;
        let max_repeated = self.inner.config.max_queued_bytes.as_u64();
        // The rows' room in the write queue is taken before they are built.
        let (read, room) =
            queue_room::read_request(self.queue_room(), request, limits, max_repeated).await?;
        let (read, warning) = read.inspect_err(|refused| {
            if matches!(refused, ModelError::Overloaded { .. }) {
                self.inner
                    .stats
                    .rejected_overload
                    .fetch_add(1, Ordering::Relaxed);
            }
        })?;
        let mut summary = match read {
            wire::ReadRequest::Rows(encoded, summary) => {
                self.write_encoded(tx, encoded, room).await?;
                summary
            }
            wire::ReadRequest::Decoded(request) => {
                // Read through prost instead: its rows take their room in `write_spans`.
                drop(room);
                write_resource_spans(self, request.resource_spans, limits).await?
            }
        };
        if let Some(warning) = warning {
            summary.warn(&warning);
        }
        Ok(summary)
    }
}

/// Unix nanoseconds (or any count) as the i64 the store keeps, saturating.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
