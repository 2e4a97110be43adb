//! Trace search and dependency links as DataFusion queries over the head (in-memory
//! Arrow batches) and the Parquet blocks ([`plan`]); trace fetch by id straight from
//! both.
//!
//! ```text
//!   TraceQuery ─► filter Expr ─► per source, newest first:            ─► trace ids
//!                                 head (memory) │ block │ block ...     (newest `limit`)
//!                                 (a block inside the window skips the start test)
//!                                 newest rows (top-k), or newest start per trace
//!                                 stop once older sources cannot beat the limit-th
//!   trace ids ─► head rows filtered in place ∪ the blocks whose id sets hold them,
//!                read through the page index (not a query: [`fetch`]) ─► traces
//! ```
//!
//! Search predicates go into the Parquet scan (`pushdown_filters`), where row-group and
//! page statistics skip what cannot match. A search with tags first scans each block's
//! attribute-list pages for the tags' entries ([`entry_scan`]), and its query then reads
//! only the rows that hold them (a [`ParquetAccessPlan`] per block): the step that
//! decoded every attribute list of every block it searched now decodes those of a few
//! rows.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion_datasource_parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion_expr::{col, lit};
use datafusion_physical_plan::ExecutionPlan;
use futures::StreamExt;
use meshtel_model::{DependencyLink, TraceId, TraceQuery};

use crate::schema::{ENTRY_COLUMNS, col as c, search_schema, span_schema};
use crate::{Error, Result};

mod entries;
pub(crate) mod entry_scan;
mod fetch;
mod filter;
mod links;
mod newest;
mod plan;
pub(crate) mod runtime;
mod steps;
use crate::span_budget::{Gathered, Kept};
use entry_scan::RowGroupRows;
#[cfg(test)]
pub(crate) use fetch::candidate_rows as fetch_candidate_rows;
pub use filter::{candidate_entries, search_filter};
use filter::{derived_tag, span_filter};
use plan::{BlockFile, Input, Planner};
use steps::{FIRST_STEP_ROWS, next_step, step_blocks, within};

/// Where rows come from for one query.
#[derive(Clone)]
pub enum Source {
    /// Head batches (in memory).
    Head(Vec<RecordBatch>),
    /// Block files, with the newest span start among them.
    Blocks {
        /// Block file paths.
        paths: Vec<PathBuf>,
        /// Oldest span start in these blocks, Unix ns.
        min_start: i64,
        /// Newest span start in these blocks, Unix ns.
        max_start: i64,
        /// Spans in these blocks.
        rows: u64,
    },
}

impl Source {
    /// One source over `blocks`, with the time range their spans started in (0..0 when
    /// there are none).
    pub(crate) fn of_blocks<'a>(
        blocks: impl IntoIterator<Item = &'a crate::block::BlockMeta>,
        dir: &Path,
    ) -> Source {
        let (mut paths, mut min_start, mut max_start, mut rows) = (Vec::new(), i64::MAX, i64::MIN, 0);
        for block in blocks {
            paths.push(block.path(dir));
            min_start = min_start.min(block.min_start);
            max_start = max_start.max(block.max_start);
            rows += block.rows;
        }
        if paths.is_empty() {
            (min_start, max_start) = (0, 0);
        }
        Source::Blocks {
            paths,
            min_start,
            max_start,
            rows,
        }
    }

    /// Block files this source reads (0 for the head).
    pub fn block_count(&self) -> usize {
        match self {
            Source::Head(_) => 0,
            Source::Blocks { paths, .. } => paths.len(),
        }
    }
}

/// How long a span-based dependency query waits for its turn before it is refused.
pub const DEPENDENCY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs queries; holds the DataFusion task context (and so its Parquet metadata cache
/// and the queries' memory bound) and the runtimes query plans execute on. Scans are
/// CPU-bound: on threads of their own they cannot hold up ingest or cheap API calls
/// (`/api/services`) on the main runtime.
///
/// Two lanes of two threads each: tag searches and dependency links, which may scan the
/// attribute lists of many blocks for a second or more, run on the scan lane; trace
/// fetches by id and searches without tags, which read a few columns or a few row
/// groups, run on the fast lane. A fetch then never waits in a queue behind a tag
/// scan's partitions: the kernel shares the cores between the lanes' threads. Under a
/// mixed load on two cores this took the fetch p99 from 341 to 43 ms and the service
/// search p99 from 631 to 154 ms, and tag searches from 1.0–1.4 to 1.6 s (README,
/// Performance).
pub struct Searcher {
    planner: Planner,
    scan: Option<tokio::runtime::Runtime>,
    fast: Option<tokio::runtime::Runtime>,
    /// Metadata of the blocks fetched from (fetches read Parquet directly).
    blocks: Arc<fetch::BlockMetadata>,
    /// Span-based dependency queries run one at a time, in the order they came, each
    /// waiting at most [`DEPENDENCY_WAIT`] for its turn: each
    /// can take most of `store.max_query_memory`, and two growing side by side failed
    /// each other (the later one to ask for more memory, not the later one to come).
    dependency_turn: tokio::sync::Semaphore,
}

/// Which runtime a plan executes on; see [`Searcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Scan,
    Fast,
}

impl Drop for Searcher {
    fn drop(&mut self) {
        // Dropping a runtime inside another one blocks; let its threads wind down alone.
        for runtime in [self.scan.take(), self.fast.take()].into_iter().flatten() {
            runtime.shutdown_background();
        }
    }
}

impl Default for Searcher {
    fn default() -> Self {
        Self::new(crate::query_memory(&crate::StoreConfig::default()))
    }
}

impl Searcher {
    /// A context tuned for this table ([`runtime::session`]), whose queries together
    /// take at most `max_memory` bytes (see
    /// [`StoreConfig::max_query_memory`](crate::StoreConfig::max_query_memory)).
    pub fn new(max_memory: usize) -> Self {
        Searcher {
            planner: Planner::new(runtime::session(max_memory)),
            scan: runtime::query_runtime(2, "meshtel-query", runtime::SCAN_LANE_NICE),
            fast: runtime::query_runtime(2, "meshtel-fetch", 0),
            blocks: Arc::default(),
            dependency_turn: tokio::sync::Semaphore::new(1),
        }
    }

    /// Drops the cached metadata (footers, page indexes) of every block file but
    /// `live`'s, the blocks in the index: those compaction or retention replaced would
    /// otherwise stay cached until the caches' bounds push them out, 32 MiB here and
    /// 50 MiB in DataFusion's. A read still using one loads it again.
    pub(crate) fn forget_blocks_but(&self, live: &[crate::block::BlockMeta]) {
        let names: HashSet<&str> = live.iter().map(|b| b.file_name.as_str()).collect();
        self.blocks.retain_files(&names);
        let cache = self
            .planner
            .task()
            .runtime_env()
            .cache_manager
            .get_file_metadata_cache();
        for key in cache.list_entries().into_keys() {
            if !key.filename().is_some_and(|name| names.contains(name)) {
                cache.remove(&key);
            }
        }
    }

    /// How many blocks each metadata cache holds: (fetches', DataFusion's).
    #[cfg(test)]
    pub(crate) fn cached_blocks(&self) -> (usize, usize) {
        let runtime = self.planner.task().runtime_env();
        let datafusion = runtime.cache_manager.get_file_metadata_cache().len();
        (self.blocks.len(), datafusion)
    }

    /// A lane's runtime; `None` when it could not be had.
    fn runtime(&self, lane: Lane) -> Option<&tokio::runtime::Runtime> {
        match lane {
            Lane::Scan => self.scan.as_ref(),
            Lane::Fast => self.fast.as_ref(),
        }
    }

    /// Executes `plan` on a lane's runtime, each partition on a task of its own (the
    /// lane's threads read them in parallel), its batches folded into an accumulator
    /// that `start` makes; the partitions' accumulators, in no particular order.
    async fn fold<A, S, F>(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        lane: Lane,
        start: S,
        fold: F,
    ) -> Result<Vec<A>>
    where
        A: Send + 'static,
        S: Fn() -> A + Send + Sync + 'static,
        F: Fn(&mut A, &RecordBatch) -> Result<()> + Send + Sync + 'static,
    {
        let (start, fold) = (Arc::new(start), Arc::new(fold));
        let partitions = plan.properties().partitioning.partition_count();
        // Dropped (the first partition failed, or the caller went away), the set
        // stops the other partitions at their next batch.
        let mut tasks = tokio::task::JoinSet::new();
        for partition in 0..partitions {
            let (plan, task) = (plan.clone(), self.planner.task());
            let (start, fold) = (start.clone(), fold.clone());
            let run = async move {
                let mut batches = plan.execute(partition, task)?;
                let mut acc = start();
                while let Some(batch) = batches.next().await {
                    fold(&mut acc, &batch?)?;
                }
                Ok::<_, Error>(acc)
            };
            match self.runtime(lane) {
                Some(runtime) => tasks.spawn_on(run, runtime.handle()),
                None => tasks.spawn(run),
            };
        }
        let mut out = Vec::with_capacity(partitions);
        while let Some(done) = tasks.join_next().await {
            out.push(done??);
        }
        Ok(out)
    }

    /// Runs a CPU-bound read of Parquet pages on a lane's runtime (on the blocking
    /// pool when the lane has none).
    fn spawn_read<T: Send + 'static>(
        &self,
        lane: Lane,
        read: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T>> {
        match self.runtime(lane) {
            Some(runtime) => runtime.spawn(async move { read() }),
            None => tokio::task::spawn_blocking(read),
        }
    }

    /// What a plan over `source` reads: the head's batches, or its blocks whole, in
    /// [`QUERY_PARTITIONS`] partitions.
    async fn input(source: &Source) -> Result<Input<'_>> {
        Ok(match source {
            Source::Head(batches) => Input::Head(batches),
            Source::Blocks { paths, .. } => {
                let mut files = Vec::with_capacity(paths.len());
                for path in paths {
                    files.push(block_file(path).await?);
                }
                Input::Blocks {
                    files,
                    partitions: QUERY_PARTITIONS,
                }
            }
        })
    }

    /// Trace ids with a span matching `query`, newest first, at most `query.limit`.
    /// `sources` must be ordered newest first (head, then blocks by max start desc).
    ///
    /// Blocks are scanned in steps, newest first, several at once (in parallel), and
    /// the search stops once older blocks cannot change the newest `limit` traces. How
    /// many blocks a step takes follows from what earlier steps found: as many as the
    /// traces still missing need at the rate found so far, at most as many as were
    /// scanned before (doubling while nothing is found) and at most
    /// [`steps::SCAN_GROUP`]; the first step of a search for more than a service holds
    /// [`FIRST_STEP_ROWS`] spans at least.
    pub async fn find_trace_ids(
        &self,
        query: &TraceQuery,
        sources: &[Source],
    ) -> Result<Vec<TraceId>> {
        let limit = query.limit.max(1);
        let filter = search_filter(query);
        let unwindowed = span_filter(query);
        // The tags whose entries a block's pages can be scanned for ahead of its query
        // (see `entry_scan`): not those that span fields can match as well.
        let scanned_tags: Vec<Vec<String>> = query
            .tags
            .iter()
            .filter(|(key, value)| derived_tag(key, value).is_none())
            .map(|(key, value)| candidate_entries(key, value))
            .collect();
        let lane = if query.tags.is_empty() {
            Lane::Fast
        } else {
            Lane::Scan
        };
        // More than a service (an operation, a duration bound) matches a fraction of
        // its spans: a small newest block rarely holds `limit` traces of them, so the
        // first step reads the blocks after it as well, in parallel.
        let selective = query.tags.is_empty()
            && (query.operation.is_some()
                || query.duration_min_nano.is_some()
                || query.duration_max_nano.is_some());
        let mut found: HashMap<[u8; 16], i64> = HashMap::new();
        let mut rest = sources;
        let mut blocks_scanned = 0;
        while let Some(first) = rest.first() {
            let step = match first {
                Source::Head(_) => {
                    rest = &rest[1..];
                    Cow::Borrowed(first)
                }
                Source::Blocks { max_start, .. } => {
                    if found.len() >= limit {
                        let mut newest: Vec<i64> = found.values().copied().collect();
                        newest.sort_unstable_by(|a, b| b.cmp(a));
                        if *max_start < newest[limit - 1] {
                            break;
                        }
                    }
                    let mut take = step_blocks(blocks_scanned, found.len(), limit);
                    if !scanned_tags.is_empty() && found.len() < limit {
                        // Each block's page scan is a task of its own: two run on the
                        // two cores in the time of one.
                        take = take.max(2);
                    }
                    let least_rows = if blocks_scanned == 0 && selective {
                        FIRST_STEP_ROWS
                    } else {
                        0
                    };
                    let (step, taken) = next_step(rest, take, least_rows);
                    rest = &rest[taken..];
                    blocks_scanned += step.block_count();
                    Cow::Owned(step)
                }
            };
            let started = std::time::Instant::now();
            // Blocks whose spans all started inside the window need not compare each
            // span's start with it: one predicate fewer to decode and evaluate per row.
            let step_filter = match step.as_ref() {
                Source::Blocks {
                    min_start,
                    max_start,
                    ..
                } if within(*min_start, *max_start, query) => unwindowed.as_ref(),
                _ => Some(&filter),
            };
            let searched = async {
                let input = match step.as_ref() {
                    Source::Blocks { paths, .. } if !scanned_tags.is_empty() => {
                        let files = self.selected_files(paths, &scanned_tags).await?;
                        let partitions = files.len();
                        Input::Blocks { files, partitions }
                    }
                    source => Self::input(source).await?,
                };
                let (output, schema) = ([c::TRACE_ID, c::START], search_schema());
                // A plan runs once (its partitions share one queue of files): each ask
                // builds its own.
                let plan = || {
                    self.planner
                        .plan(input.clone(), &schema, step_filter, &output)
                };
                if query.tags.is_empty()
                    && let Some(rows) = self.newest_rows(&plan, limit).await?
                {
                    return Ok(Some(rows));
                }
                Ok::<_, Error>(match plan()? {
                    Some(plan) => Some(self.newest_traces(&plan, lane, limit).await?),
                    None => None,
                })
            };
            let Some(newest) = searched.await.map_err(|e| in_blocks(&step, e))? else {
                continue;
            };
            tracing::debug!(
                blocks = step.block_count(),
                rows = newest.len(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "searched a source"
            );
            for (id, t) in newest {
                let entry = found.entry(id).or_insert(t);
                *entry = (*entry).max(t);
            }
        }
        let mut ranked: Vec<([u8; 16], i64)> = found.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        Ok(ranked.into_iter().map(|(id, _)| TraceId(id)).collect())
    }

    /// The blocks of `paths` with the rows that hold an entry of every tag in `tags`
    /// (each tag's candidate entries), found by scanning the attribute lists' pages on
    /// the scan lane, one task per block; blocks without such a row are left out. Row
    /// groups the scan cannot read are read whole.
    async fn selected_files(
        &self,
        paths: &[PathBuf],
        tags: &[Vec<String>],
    ) -> Result<Vec<BlockFile>> {
        let tags: Arc<[Vec<String>]> = tags.into();
        let mut scans = Vec::with_capacity(paths.len());
        for path in paths {
            let (blocks, tags, path) = (self.blocks.clone(), tags.clone(), path.clone());
            scans.push(self.spawn_read(Lane::Scan, move || {
                selected_file(&blocks, &path, &tags).map_err(Error::in_block(&path))
            }));
        }
        let mut files = Vec::new();
        for scan in scans {
            files.extend(scan.await??);
        }
        Ok(files)
    }

    /// (trace id, start) of the newest rows `plan` hands out, newest first, enough of
    /// them to hold `limit` distinct traces (or every row). The first time a trace
    /// appears is its newest matching span, so these rank traces exactly as keeping the
    /// newest start per trace would, while each partition keeps a small top-k instead
    /// of a hash table of every matching trace.
    ///
    /// Each ask runs a plan of its own, so there are at most two: `limit` ×
    /// [`NEWEST_ROWS_PER_TRACE`] rows, then, when those held too few traces, twice the
    /// rows per trace they showed. `None` when that is still too few, or when an ask
    /// would exceed [`MAX_NEWEST_ROWS`] (a large `limit` too): keeping the newest start
    /// per trace ([`Self::newest_traces`]) is then the cheaper way.
    async fn newest_rows(
        &self,
        plan: &impl Fn() -> Result<Option<Arc<dyn ExecutionPlan>>>,
        limit: usize,
    ) -> Result<Option<Vec<([u8; 16], i64)>>> {
        let mut rows = limit.saturating_mul(NEWEST_ROWS_PER_TRACE);
        for _ask in 0..2 {
            if rows > MAX_NEWEST_ROWS {
                break;
            }
            let Some(plan) = plan()? else {
                return Ok(Some(Vec::new()));
            };
            let start = move || newest::TopRows::new(rows);
            let parts = self
                .fold(&plan, Lane::Fast, start, newest::TopRows::push)
                .await?;
            let newest = newest::TopRows::merge(parts, rows);
            let distinct: HashSet<[u8; 16]> = newest.iter().map(|(id, _)| *id).collect();
            if newest.len() < rows || distinct.len() >= limit {
                return Ok(Some(newest));
            }
            let per_trace = newest.len().div_ceil(distinct.len().max(1));
            rows = limit.saturating_mul(per_trace).saturating_mul(2);
        }
        Ok(None)
    }

    /// The `limit` traces with the newest rows `plan` hands out: (trace id, newest
    /// start), newest first. Each partition keeps the newest start of every trace it
    /// reads, within the queries' memory bound.
    async fn newest_traces(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<([u8; 16], i64)>> {
        let pool = self.planner.memory_pool();
        let parts = self
            .fold(
                plan,
                lane,
                move || newest::PerTrace::new(&pool),
                newest::PerTrace::push,
            )
            .await?;
        // Merging the partitions' tables is CPU work too: on the lane, not the caller's.
        self.spawn_read(lane, move || newest::PerTrace::merge(parts, limit))
            .await?
    }

    /// The rows of the given traces, from every source, at most `max_spans` of them
    /// ([`span_budget`](crate::span_budget): the largest traces cut to their earliest
    /// spans, also while the rows are read).
    ///
    /// Not a DataFusion query: the head's batches are filtered in place, and each block
    /// is read through its page index (see [`fetch`]), on the fast lane. Blocks hand
    /// out their attribute lists as string views into each row group's dictionary
    /// page, which the reader decodes once without copying its bytes, instead of every
    /// entry of every page the selected rows sit in being copied as a string; only the
    /// rows kept are turned into strings, at the end.
    pub async fn fetch_rows(
        &self,
        trace_ids: &[TraceId],
        sources: &[Source],
        (max_spans, max_bytes): (usize, u64),
    ) -> Result<Kept> {
        let mut gathered = Gathered::new(max_spans, max_bytes);
        if trace_ids.is_empty() {
            return gathered.finish();
        }
        let ids: Arc<[[u8; 16]]> = trace_ids.iter().map(|id| id.0).collect();
        let mut paths = Vec::new();
        for source in sources {
            match source {
                Source::Head(batches) => {
                    for batch in fetch::head_rows(batches, &ids)? {
                        gathered.push(batch)?;
                    }
                }
                Source::Blocks { paths: more, .. } => paths.extend(more.iter().cloned()),
            }
        }
        // A few blocks read at once, each merged in as it ends: however many blocks a
        // trace spans, at most that many reads' rows wait to be cut.
        let mut reads = futures::stream::iter(paths.into_iter().map(|path| {
            let (blocks, ids) = (self.blocks.clone(), ids.clone());
            self.spawn_read(Lane::Fast, move || {
                blocks
                    .block_rows(&path, &ids, (max_spans, max_bytes))
                    .map_err(Error::in_block(&path))
            })
        }))
        .buffered(BLOCK_READS_AT_ONCE);
        while let Some(read) = reads.next().await {
            gathered.merge(read??, as_span_schema)?;
        }
        gathered.finish()
    }

    /// Caller → callee service pairs from child spans started in the window and their
    /// parents started from `parent_start_min` on.
    pub async fn dependencies(
        &self,
        parent_start_min: i64,
        start_min: i64,
        start_max: i64,
        sources: &[Source],
    ) -> Result<Vec<DependencyLink>> {
        let in_any_block = |e| {
            let paths: Vec<PathBuf> = sources
                .iter()
                .flat_map(|s| match s {
                    Source::Head(_) => &[][..],
                    Source::Blocks { paths, .. } => &paths[..],
                })
                .cloned()
                .collect();
            match paths.len() {
                0 => e,
                _ => in_blocks(
                    &Source::Blocks {
                        paths,
                        min_start: 0,
                        max_start: 0,
                        rows: 0,
                    },
                    e,
                ),
            }
        };
        // Never closed; were it, the query would run without waiting.
        let Ok(turn) = tokio::time::timeout(DEPENDENCY_WAIT, self.dependency_turn.acquire()).await
        else {
            return Err(Error::DependencyTurn(DEPENDENCY_WAIT));
        };
        let _turn = turn.ok();
        self.dependency_links(parent_start_min, start_min, start_max, sources)
            .await
            .map_err(in_any_block)
    }

    async fn dependency_links(
        &self,
        parent_start_min: i64,
        start_min: i64,
        start_max: i64,
        sources: &[Source],
    ) -> Result<Vec<DependencyLink>> {
        let filter = col(c::START)
            .gt_eq(lit(parent_start_min))
            .and(col(c::START).lt_eq(lit(start_max)));
        let output = links::COLUMNS;
        let mut parts = Vec::new();
        for source in sources {
            let input = Self::input(source).await?;
            let Some(plan) = self
                .planner
                .plan(input, &span_schema(), Some(&filter), &output)?
            else {
                continue;
            };
            let pool = self.planner.memory_pool();
            let start = move || links::Spans::new(start_min, &pool);
            parts.extend(
                self.fold(&plan, Lane::Scan, start, links::Spans::push)
                    .await?,
            );
        }
        // Putting the partitions' spans together and joining them is CPU work too: on
        // the scan lane, not the caller's runtime.
        self.spawn_read(Lane::Scan, move || match links::Spans::merge(parts)? {
            Some(spans) => spans.links(),
            None => Ok(Vec::new()),
        })
        .await?
    }
}

/// The block at `path` with the rows that hold an entry of every tag; `None` when
/// it has none.
fn selected_file(
    blocks: &fetch::BlockMetadata,
    path: &Path,
    tags: &[Vec<String>],
) -> Result<Option<BlockFile>> {
    let (file, metadata) = blocks.open(path)?;
    let size = file.metadata()?.len();
    let parquet = metadata.metadata();
    let columns: Vec<usize> = parquet
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, column)| {
            column
                .path()
                .parts()
                .first()
                .is_some_and(|top| ENTRY_COLUMNS.contains(&top.as_str()))
        })
        .map(|(index, _)| index)
        .collect();
    let found = entry_scan::matching_rows(&Arc::new(file), parquet, &columns, tags)?;
    let plan = ParquetAccessPlan::new(
        found
            .iter()
            .zip(parquet.row_groups())
            .map(|(rows, row_group)| match rows {
                RowGroupRows::Unknown => RowGroupAccess::Scan,
                RowGroupRows::Rows(rows) if rows.is_empty() => RowGroupAccess::Skip,
                RowGroupRows::Rows(rows) => {
                    let num_rows = usize::try_from(row_group.num_rows()).unwrap_or(0);
                    RowGroupAccess::Selection(entry_scan::selection(rows, num_rows))
                }
            })
            .collect(),
    );
    let (mut rows, mut read_whole) = (0, 0);
    for found in &found {
        match found {
            RowGroupRows::Unknown => read_whole += 1,
            RowGroupRows::Rows(found) => rows += found.len(),
        }
    }
    tracing::debug!(
        block = %path.display(),
        rows,
        row_groups_read_whole = read_whole,
        "scanned a block's attribute lists"
    );
    if plan.row_group_index_iter().next().is_none() {
        return Ok(None);
    }
    Ok(Some(BlockFile {
        path: path.to_string_lossy().into_owned(),
        size,
        access: Some(plan),
    }))
}

/// The block at `path`, to be read whole.
async fn block_file(path: &Path) -> Result<BlockFile> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(Error::in_block(path))?
        .len();
    Ok(BlockFile {
        path: path.to_string_lossy().into_owned(),
        size,
        access: None,
    })
}

/// `e`, from reading `source`, naming its block file(s); errors that already name
/// one are kept as they are.
fn in_blocks(source: &Source, e: Error) -> Error {
    match (source, &e) {
        (_, Error::Block { .. } | Error::Blocks { .. }) | (Source::Head(_), _) => e,
        (Source::Blocks { paths, .. }, _) => match &paths[..] {
            [] => e,
            [path] => Error::in_block(path)(e),
            _ => Error::Blocks {
                paths: paths.clone(),
                source: Box::new(e),
            },
        },
    }
}

/// Partitions a plan reads blocks in: as many as each lane has threads.
const QUERY_PARTITIONS: usize = 2;

/// Rows a search without tags asks for per trace it wants, at first: a trace rarely
/// has more matching spans than this, and a top-k of a few hundred rows costs no more
/// to keep than one of twenty.
const NEWEST_ROWS_PER_TRACE: usize = 32;

/// Blocks one fetch reads at once: as many as the fast lane has threads, and a few
/// more ready to go, so that no thread waits.
const BLOCK_READS_AT_ONCE: usize = 4;

/// Most rows the newest-rows search asks for before it keeps the newest start per
/// trace instead.
const MAX_NEWEST_ROWS: usize = 1 << 16;

/// `batch` with the columns of [`span_schema`]: entry lists of string views (or of
/// dictionary keys) become plain strings (a copy of the rows' entries only).
fn as_span_schema(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = span_schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}
