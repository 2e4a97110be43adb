//! Service-graph edge rollups: request records added up per edge in fixed time buckets
//! (10 s by default), in memory while a bucket is open, in SQL once it closes.
//!
//! ```text
//!  EdgeSink::record_edges ─► bucket of the record's start time (late or future
//!        │                   records: the current bucket) ─► edge (hash of borrowed
//!        │                   fields; at most max_edges_per_bucket, overflow counted)
//!        ▼
//!  open buckets (memory) ──every second: buckets ended more than flush_grace ago──►
//!        INSERT edge_rollups (one transaction per flush; on failure kept in
//!        memory up to max_edges_in_memory edges, then the oldest dropped and counted)
//!  every prune_interval: DELETE rows older than retention; then rows older than
//!        coarse_after summed per coarse_bucket (`coarse`);  shutdown: flush all
//!
//!  GraphReader::edges_in_window        ─► SQL rows ∪ open buckets, summed per edge
//!  GraphReader::edge_buckets_in_window ─► the same, summed per (step, edge)
//! ```
//!
//! Rows are append-only: two collectors (or one restarted within a bucket) may write
//! the same bucket and edge; readers add the rows up. Time comes from an injected
//! [`UnixClock`].

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use meshtel_model::graph::{
    Buckets, EdgeKey, EdgeRow, EdgeStats, UnixClock, grpc_response_status, reporter_label,
};
use meshtel_model::log_window::LogWindow;
use meshtel_model::mixer::RequestRecord;
use meshtel_model::{EdgeSink, GraphReader};
use parking_lot::Mutex;
use sqlx::{Connection, SqlitePool};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::catalog::Catalog;
use crate::{Result, to_i64};

/// A record's edge fields, borrowed: looked up without allocating.
struct KeyRef<'a> {
    strings: [&'a str; 14],
    response_code: u32,
    grpc_response_status: Option<u32>,
}

impl<'a> KeyRef<'a> {
    fn of(record: &'a RequestRecord) -> KeyRef<'a> {
        let s = record.source.as_ref();
        let d = record.destination.as_ref();
        let src = |f: fn(&meshtel_model::mixer::Workload) -> &str| s.map_or("", f);
        let dst = |f: fn(&meshtel_model::mixer::Workload) -> &str| d.map_or("", f);
        let mut destination_namespace = dst(|w| &w.namespace);
        if destination_namespace.is_empty() {
            destination_namespace = &record.destination_service_namespace;
        }
        let flags = if record.response_flags.is_empty() {
            "-"
        } else {
            &record.response_flags
        };
        KeyRef {
            strings: [
                src(|w| &w.name),
                src(|w| &w.namespace),
                src(|w| &w.app),
                src(|w| &w.version),
                &record.destination_service,
                dst(|w| &w.name),
                destination_namespace,
                dst(|w| &w.version),
                &record.request_protocol,
                flags,
                reporter_label(record.reporter),
                src(|w| &w.cluster),
                dst(|w| &w.cluster),
                dst(|w| &w.app),
            ],
            response_code: record.response_code,
            grpc_response_status: grpc_response_status(record),
        }
    }

    fn hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.strings.hash(&mut hasher);
        self.response_code.hash(&mut hasher);
        self.grpc_response_status.hash(&mut hasher);
        hasher.finish()
    }

    fn matches(&self, key: &EdgeKey) -> bool {
        let [sw, sn, sa, sv, ds, dw, dn, dv, p, f, r, sc, dc, da] = self.strings;
        self.response_code == key.response_code
            && self.grpc_response_status == key.grpc_response_status
            && sw == key.source_workload
            && sn == key.source_namespace
            && sa == key.source_app
            && sv == key.source_version
            && ds == key.destination_service
            && dw == key.destination_workload
            && dn == key.destination_namespace
            && dv == key.destination_version
            && p == key.protocol
            && f == key.response_flags
            && r == key.reporter
            && sc == key.source_cluster
            && dc == key.destination_cluster
            && da == key.destination_app
    }

    fn to_key(&self) -> EdgeKey {
        let [sw, sn, sa, sv, ds, dw, dn, dv, p, f, r, sc, dc, da] =
            self.strings.map(str::to_string);
        EdgeKey {
            source_workload: sw,
            source_namespace: sn,
            source_app: sa,
            source_version: sv,
            destination_service: ds,
            destination_workload: dw,
            destination_namespace: dn,
            destination_version: dv,
            destination_app: da,
            protocol: p,
            response_code: self.response_code,
            grpc_response_status: self.grpc_response_status,
            response_flags: f,
            reporter: r,
            source_cluster: sc,
            destination_cluster: dc,
        }
    }
}

/// The edges of one open bucket.
#[derive(Default)]
struct Bucket {
    by_hash: HashMap<u64, Vec<(EdgeKey, EdgeStats)>>,
    edges: usize,
}

impl Bucket {
    fn add(&mut self, record: &RequestRecord, max_edges: usize) -> bool {
        let key = KeyRef::of(record);
        let slot = self.by_hash.entry(key.hash()).or_default();
        if let Some((_, stats)) = slot.iter_mut().find(|(k, _)| key.matches(k)) {
            stats.add_record(record);
            return true;
        }
        if self.edges >= max_edges {
            return false;
        }
        let mut stats = EdgeStats::default();
        stats.add_record(record);
        slot.push((key.to_key(), stats));
        self.edges += 1;
        true
    }

    fn merge(&mut self, other: Bucket) {
        for (hash, edges) in other.by_hash {
            let slot = self.by_hash.entry(hash).or_default();
            for (key, stats) in edges {
                match slot.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, mine)) => mine.merge(&stats),
                    None => {
                        slot.push((key, stats));
                        self.edges += 1;
                    }
                }
            }
        }
    }

    fn rows(&self) -> impl Iterator<Item = &(EdgeKey, EdgeStats)> {
        self.by_hash.values().flatten()
    }

    fn requests(&self) -> u64 {
        self.rows().map(|(_, stats)| stats.requests).sum()
    }
}

struct Inner {
    pool: SqlitePool,
    clock: Arc<dyn UnixClock>,
    config: EdgeConfig,
    /// Bucket start (Unix ns) → its edges.
    open: Mutex<BTreeMap<u64, Bucket>>,
    /// Held for writing while flushed rows move from memory to SQL, so that a reader
    /// never counts a bucket twice or misses it.
    flush_gate: tokio::sync::RwLock<()>,
    overflow: AtomicU64,
    /// The WARN of records left out at `max_edges_per_bucket`, at most one per interval.
    overflow_log: Mutex<LogWindow>,
    /// Requests of buckets dropped because SQL refused them and memory was full.
    dropped: AtomicU64,
    background: Mutex<Option<JoinHandle<()>>>,
}

/// The edge rollups repository. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct EdgeRollups {
    inner: Arc<Inner>,
}

/// Counters of the rollups, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeStatsSnapshot {
    /// Records left out because a bucket had `max_edges_per_bucket` edges.
    pub overflow: u64,
    /// Buckets in memory, not yet in SQL.
    pub open_buckets: usize,
    /// Requests of buckets dropped unwritten: SQL refused them and
    /// `max_edges_in_memory` was reached.
    pub dropped: u64,
    /// Edges in memory, not yet in SQL.
    pub edges_in_memory: usize,
}

impl EdgeRollups {
    /// Opens the rollups on the SQLite database in `data_dir` (running migrations).
    pub async fn open(
        data_dir: &Path,
        config: EdgeConfig,
        clock: Arc<dyn UnixClock>,
    ) -> Result<EdgeRollups> {
        let catalog = Catalog::open(data_dir).await?;
        EdgeRollups::with_pool(catalog.pool(), config, clock)
    }

    /// Rollups on the database `catalog` opened (a query process opens it without
    /// migrating: [`Catalog::open_existing`]).
    pub fn on_catalog(
        catalog: &Catalog,
        config: EdgeConfig,
        clock: Arc<dyn UnixClock>,
    ) -> Result<EdgeRollups> {
        EdgeRollups::with_pool(catalog.pool(), config, clock)
    }

    /// Rollups over an already-migrated pool.
    pub fn with_pool(
        pool: SqlitePool,
        config: EdgeConfig,
        clock: Arc<dyn UnixClock>,
    ) -> Result<EdgeRollups> {
        config.validate()?;
        Ok(EdgeRollups {
            inner: Arc::new(Inner {
                pool,
                clock,
                config,
                open: Mutex::new(BTreeMap::new()),
                flush_gate: tokio::sync::RwLock::new(()),
                overflow: AtomicU64::new(0),
                overflow_log: Mutex::new(LogWindow::default()),
                dropped: AtomicU64::new(0),
                background: Mutex::new(None),
            }),
        })
    }

    fn bucket_nanos(&self) -> u64 {
        u64::try_from(self.inner.config.bucket.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn bucket_start(&self, unix_nano: u64) -> u64 {
        unix_nano - unix_nano % self.bucket_nanos()
    }

    /// Whether the bucket starting at `start` is closed at `now`.
    fn is_closed(&self, start: u64, now: u64) -> bool {
        let grace = u64::try_from(self.inner.config.flush_grace.as_nanos()).unwrap_or(u64::MAX);
        start
            .saturating_add(self.bucket_nanos())
            .saturating_add(grace)
            <= now
    }

    /// Adds records to their buckets; returns how many overflowed.
    pub fn record(&self, records: &[&RequestRecord]) -> u64 {
        let now = self.inner.clock.now_unix_nano();
        let current = self.bucket_start(now);
        let max_edges = self.inner.config.max_edges_per_bucket;
        let mut overflow = 0;
        let mut open = self.inner.open.lock();
        for record in records {
            let start = self.bucket_start(record.start_unix_nano);
            let bucket =
                if record.start_unix_nano == 0 || start > current || self.is_closed(start, now) {
                    current
                } else {
                    start
                };
            if !open.entry(bucket).or_default().add(record, max_edges) {
                overflow += 1;
            }
        }
        drop(open);
        if overflow > 0 {
            self.inner.overflow.fetch_add(overflow, Ordering::Relaxed);
            let told = self
                .inner
                .overflow_log
                .lock()
                .note_many(overflow, std::time::Instant::now());
            self.log_overflow(told);
        }
        overflow
    }

    /// WARNs of `told` records left out of the graph, when a line is due.
    fn log_overflow(&self, told: Option<u64>) {
        if let Some(left_out) = told {
            warn!(
                setting = "[edges] max_edges_per_bucket",
                max_edges_per_bucket = self.inner.config.max_edges_per_bucket,
                left_out,
                at_most_every = %humantime::format_duration(meshtel_model::log_window::LOG_INTERVAL),
                "service graph bucket full: records of new edges left out of the graph \
                 (counted in meshtel_edges_overflow_total)"
            );
        }
    }

    /// Writes buckets closed by now to SQL; returns how many buckets were written.
    pub async fn flush_closed(&self) -> Result<usize> {
        let now = self.inner.clock.now_unix_nano();
        self.flush_where(|rollups, start| rollups.is_closed(start, now))
            .await
    }

    /// Writes every bucket, open or not (at shutdown).
    pub async fn flush_all(&self) -> Result<usize> {
        self.flush_where(|_, _| true).await
    }

    async fn flush_where(&self, closed: impl Fn(&Self, u64) -> bool) -> Result<usize> {
        // Most seconds nothing has closed: no need to wait for the gate, and so to hold
        // up the reads queued behind this writer.
        if !self.inner.open.lock().keys().any(|&s| closed(self, s)) {
            return Ok(0);
        }
        // The connection first: waiting for one (every one busy with long reads) while
        // holding the gate would hold up every read.
        let mut conn = self.inner.pool.acquire().await?;
        let _gate = self.inner.flush_gate.write().await;
        let starts: Vec<u64> = {
            let open = self.inner.open.lock();
            open.keys().copied().filter(|&s| closed(self, s)).collect()
        };
        if starts.is_empty() {
            return Ok(0);
        }
        let taken: Vec<(u64, Bucket)> = {
            let mut open = self.inner.open.lock();
            starts
                .iter()
                .filter_map(|s| open.remove(s).map(|b| (*s, b)))
                .collect()
        };
        let written = self.insert_buckets_on(&mut conn, &taken).await;
        crate::catalog::close_if_read_only(&mut conn, &written);
        match written {
            Ok(rows) => {
                debug!(buckets = taken.len(), rows, "edge buckets flushed");
                Ok(taken.len())
            }
            Err(error) => {
                // Keep them for the next attempt rather than lose them, as far as
                // max_edges_in_memory allows.
                let mut open = self.inner.open.lock();
                for (start, bucket) in taken {
                    open.entry(start).or_default().merge(bucket);
                }
                self.shed_unwritten(&mut open, &starts);
                Err(error)
            }
        }
    }

    /// Drops the oldest of the buckets SQL refused (`refused`, in time order) while
    /// memory holds more than `max_edges_in_memory` edges; counts their requests.
    fn shed_unwritten(&self, open: &mut BTreeMap<u64, Bucket>, refused: &[u64]) {
        let config = &self.inner.config;
        let max = config.max_edges_in_memory.max(config.max_edges_per_bucket);
        let mut edges: usize = open.values().map(|b| b.edges).sum();
        let mut dropped_requests = 0;
        let mut dropped_buckets = 0;
        for start in refused {
            if edges <= max {
                break;
            }
            if let Some(bucket) = open.remove(start) {
                edges -= bucket.edges;
                dropped_requests += bucket.requests();
                dropped_buckets += 1;
            }
        }
        if dropped_buckets > 0 {
            self.inner
                .dropped
                .fetch_add(dropped_requests, Ordering::Relaxed);
            warn!(
                buckets = dropped_buckets,
                requests = dropped_requests,
                max_edges_in_memory = max,
                "SQL still refuses edge rollups and memory is full: dropped the oldest buckets"
            );
        }
    }

    async fn insert_buckets_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
        buckets: &[(u64, Bucket)],
    ) -> Result<usize> {
        let bucket_seconds = to_i64(self.inner.config.bucket.as_secs());
        let mut rows = 0;
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        for (start, bucket) in buckets {
            let start_ms = to_i64(start / 1_000_000);
            for (key, stats) in bucket.rows() {
                insert_row(&mut tx, start_ms, bucket_seconds, key, stats).await?;
                rows += 1;
            }
        }
        tx.commit().await?;
        // Rollups are answered written only once committed (see `Catalog`).
        crate::catalog::confirm_committed(conn).await?;
        Ok(rows)
    }

    /// Deletes rows older than the retention; returns how many.
    pub async fn prune(&self) -> Result<u64> {
        let now = self.inner.clock.now_unix_nano();
        let retention = u64::try_from(self.inner.config.retention.as_nanos()).unwrap_or(u64::MAX);
        let cutoff_ms = to_i64(now.saturating_sub(retention) / 1_000_000);
        // By their end: a coarse bucket stays while part of it is within retention.
        let done = sqlx::query(
            "DELETE FROM edge_rollups WHERE bucket_start_unix_ms < $1 \
             AND bucket_start_unix_ms + bucket_seconds * 1000 <= $1",
        )
        .bind(cutoff_ms)
        .execute(&self.inner.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Edges of buckets starting in `[start, end)`, summed per edge: SQL rows and
    /// buckets still in memory, read in the buckets of now ([`Self::read_buckets`]).
    pub async fn edges_between(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
    ) -> Result<Vec<EdgeRow>> {
        let buckets = self.read_buckets(self.inner.clock.now_unix_nano()).await?;
        self.edges_between_in(start_unix_nano, end_unix_nano, buckets)
            .await
    }

    /// [`Self::edges_between`] read in `buckets`.
    pub async fn edges_between_in(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        buckets: Buckets,
    ) -> Result<Vec<EdgeRow>> {
        let summed = self
            .sum_between(
                start_unix_nano,
                end_unix_nano,
                buckets,
                u64::MAX,
                self.inner.config.max_read_edges,
                |_, key| key,
            )
            .await?;
        let mut edges: Vec<EdgeRow> = summed
            .into_iter()
            .map(|(key, stats)| EdgeRow { key, stats })
            .collect();
        edges.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(edges)
    }

    /// Edges of buckets starting in `[start, end)`, per `step`-long period aligned to
    /// multiples of `step` since the epoch: `(period start in Unix ms, row)`, every SQL
    /// row and open bucket of one period and edge summed, sorted by period then edge.
    /// A step of one bucket (or zero) reads bucket by bucket. Read in the buckets of
    /// now ([`Self::read_buckets`]).
    pub async fn edge_buckets_between(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        step: Duration,
    ) -> Result<Vec<(u64, EdgeRow)>> {
        let buckets = self.read_buckets(self.inner.clock.now_unix_nano()).await?;
        self.edge_buckets_between_in(start_unix_nano, end_unix_nano, step, buckets)
            .await
    }

    /// [`Self::edge_buckets_between`] read in `buckets`.
    pub async fn edge_buckets_between_in(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        step: Duration,
        buckets: Buckets,
    ) -> Result<Vec<(u64, EdgeRow)>> {
        let step_ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX).max(1);
        // `max_read_edges` per period (the window's periods, and one more for a window
        // not aligned to them).
        let periods = (end_unix_nano.saturating_sub(start_unix_nano) / 1_000_000)
            .div_ceil(step_ms)
            .saturating_add(1);
        let max_groups = usize::try_from(periods)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.inner.config.max_read_edges);
        let summed = self
            .sum_between(
                start_unix_nano,
                end_unix_nano,
                buckets,
                step_ms,
                max_groups,
                |bucket_ms, key| (bucket_ms - bucket_ms % step_ms, key),
            )
            .await?;
        let mut periods: Vec<(u64, EdgeRow)> = summed
            .into_iter()
            .map(|((period_ms, key), stats)| (period_ms, EdgeRow { key, stats }))
            .collect();
        periods.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
        Ok(periods)
    }

    /// Every SQL row and open-bucket edge of buckets starting in `[start, end)`,
    /// summed per `group(period start in Unix ms, key)`, where SQL sums its rows per
    /// `step_ms`-long period and key first (`u64::MAX`: one period, starting at 0), so
    /// that an hour of a large mesh is thousands of rows to read, not millions.
    ///
    /// No bucket is counted twice or missed: the SQL read transaction's snapshot is
    /// fixed (by its first read) and the buckets in memory are copied under the flush
    /// gate, with no flush between them; the sums then run on that snapshot without
    /// holding the gate, so a long read holds up neither flushes nor, queued behind
    /// them, other reads. The connection is taken before the gate, as a flush takes
    /// its own, so that a reader never waits for one while holding the gate.
    ///
    /// More than `max_groups` sums stop the read: [`crate::Error::ReadEdgeLimit`].
    async fn sum_between<G: Hash + Eq>(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        buckets: Buckets,
        step_ms: u64,
        max_groups: usize,
        group: impl Fn(u64, EdgeKey) -> G,
    ) -> Result<HashMap<G, EdgeStats>> {
        let too_many = || crate::Error::ReadEdgeLimit { limit: max_groups };
        let mut timed =
            read_time::TimedConn::acquire(&self.inner.pool, self.inner.config.max_read_time)
                .await?;
        let read: Result<HashMap<G, EdgeStats>> = async {
            let mut tx = timed.conn.begin().await?;
            let gate = self.inner.flush_gate.read().await;
            sqlx::query("SELECT 1 FROM edge_rollups LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
            // The bucket holding `start` is read whole, so a window holds up to one bucket
            // more than asked: readers divide by the time really covered
            // (`Buckets::covered_seconds`), which is never shorter than the window, rather
            // than leave that bucket out, which would leave as little as a fraction of a
            // second of a short window while its first bucket is young. Before
            // `coarse_after`, buckets are coarse ones, summed or not yet: read whole at
            // both ends, so that summing them changes no answer.
            let from = buckets.floor(start_unix_nano);
            let to = buckets.ceil(end_unix_nano);
            let mut summed: HashMap<G, EdgeStats> = HashMap::new();
            {
                let open = self.inner.open.lock();
                for (start, bucket) in open.range(from..to) {
                    let bucket_ms = start / 1_000_000;
                    for (key, stats) in bucket.rows() {
                        summed
                            .entry(group(bucket_ms, key.clone()))
                            .or_default()
                            .merge(stats);
                    }
                    if summed.len() > max_groups {
                        return Err(too_many());
                    }
                }
            }
            drop(gate);
            let mut rows = sqlx::query(SUMS_PER_PERIOD)
                .bind(to_i64(from / 1_000_000))
                .bind(to_i64(to.div_ceil(1_000_000)))
                .bind(to_i64(step_ms))
                .bind(i64::MAX)
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let (period_ms, key, stats) = sum_row(&row)?;
                summed
                    .entry(group(period_ms, key))
                    .or_default()
                    .merge(&stats);
                if summed.len() > max_groups {
                    return Err(too_many());
                }
            }
            drop(rows);
            // Read only: nothing to keep.
            tx.rollback().await?;
            Ok(summed)
        }
        .await;
        let summed = read.map_err(|e| timed.classify(e))?;
        timed.finish().await?;
        Ok(summed)
    }

    /// Counters for `/metrics`.
    pub fn snapshot(&self) -> EdgeStatsSnapshot {
        let open = self.inner.open.lock();
        EdgeStatsSnapshot {
            overflow: self.inner.overflow.load(Ordering::Relaxed),
            open_buckets: open.len(),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            edges_in_memory: open.values().map(|b| b.edges).sum(),
        }
    }

    /// Starts the background flusher (every second), pruner (every `prune_interval`)
    /// and summing of old rollups into coarse buckets (after each prune, then a slice
    /// a second until done). Must be called within a Tokio runtime.
    pub fn start(&self) {
        let rollups = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let prune_every = rollups.inner.config.prune_interval;
            let mut last_prune: Option<tokio::time::Instant> = None;
            let mut coarsening = false;
            let mut coarsened = coarse::CoarsenRun::default();
            let mut failures = LogWindow::default();
            let mut failing = false;
            loop {
                tick.tick().await;
                // A burst's last refusals are told without waiting for another.
                let untold = rollups
                    .inner
                    .overflow_log
                    .lock()
                    .flush(std::time::Instant::now());
                rollups.log_overflow(untold);
                match rollups.flush_closed().await {
                    Ok(_) if failing => {
                        failing = false;
                        info!("edge rollups are written to SQL again");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        failing = true;
                        if let Some(failures) = failures.note(std::time::Instant::now()) {
                            let held = rollups.snapshot();
                            warn!(
                                error = %error,
                                failures,
                                buckets = held.open_buckets,
                                edges = held.edges_in_memory,
                                max_edges_in_memory = rollups.inner.config.max_edges_in_memory,
                                "could not write edge rollups; kept in memory, retried every second"
                            );
                        }
                    }
                }
                if last_prune.is_none_or(|at| at.elapsed() >= prune_every) {
                    last_prune = Some(tokio::time::Instant::now());
                    match rollups.prune().await {
                        Ok(0) => {}
                        Ok(rows) => info!(rows, "pruned edge rollups past retention"),
                        Err(error) => warn!(error = %error, "could not prune edge rollups"),
                    }
                    coarsening = rollups.inner.config.is_coarsened();
                }
                if coarsening {
                    match rollups.coarsen_slice(&mut coarsened).await {
                        Ok(more) => coarsening = more,
                        Err(error) => {
                            coarsening = false;
                            coarsened = coarse::CoarsenRun::default();
                            warn!(error = %error, "could not sum old edge rollups into coarse buckets; retried at the next prune");
                        }
                    }
                }
            }
        });
        if let Some(previous) = self.inner.background.lock().replace(task) {
            previous.abort();
        }
    }

    /// Stops the background task and writes every bucket still in memory.
    pub async fn shutdown(&self) -> Result<()> {
        let task = self.inner.background.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.flush_all().await?;
        Ok(())
    }
}

impl EdgeSink for EdgeRollups {
    fn record_edges(&self, records: &[&RequestRecord]) {
        self.record(records);
    }
}

#[async_trait::async_trait]
impl GraphReader for EdgeRollups {
    async fn buckets(&self, now_unix_nano: u64) -> meshtel_model::Result<Buckets> {
        Ok(self.read_buckets(now_unix_nano).await?)
    }

    async fn edges_in_window(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        buckets: Buckets,
    ) -> meshtel_model::Result<Vec<EdgeRow>> {
        Ok(self
            .edges_between_in(start_unix_nano, end_unix_nano, buckets)
            .await?)
    }

    async fn edge_buckets_in_window(
        &self,
        start_unix_nano: u64,
        end_unix_nano: u64,
        step: Duration,
        buckets: Buckets,
    ) -> meshtel_model::Result<Vec<(u64, EdgeRow)>> {
        Ok(self
            .edge_buckets_between_in(start_unix_nano, end_unix_nano, step, buckets)
            .await?)
    }
}

mod coarse;
mod config;
mod latency;
mod read_time;
mod sql;
pub use coarse::Coarsened;
pub use config::EdgeConfig;
use latency::sum_latency_buckets;
pub use latency::{decode_latency_buckets, encode_latency_buckets};
use sql::{SUMS_PER_PERIOD, insert_row, sum_row};

#[cfg(test)]
mod tests;
