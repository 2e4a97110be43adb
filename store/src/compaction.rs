//! Background upkeep of blocks: retention by age and size, then compaction of small
//! blocks into larger ones.
//!
//! Compaction is levelled: blocks flushed from the head are level 0; when a level holds
//! at least [`MERGE_FAN_IN`] blocks smaller than `compaction_target_rows`, runs of them
//! (in time order, up to the target) are merged into one block of the next level. Each
//! span is therefore rewritten a logarithmic number of times, however slow ingest is.
//! Merged and expired block files are deleted a little later, so that searches that
//! already planned over them finish; until then SQL lists them as replaced, so that a
//! restart in between deletes them instead of setting them aside as unindexed.
//!
//! Each merge runs on a thread of its own at nice 10 ([`MERGE_NICE`]): under a burst
//! the scheduler gives the cores to ingest first (a 60 s burst was acknowledged 7 %
//! faster, 13 % in its second half, when merges start), and merges catch up after it,
//! or take their share back at normal priority once [`MERGE_BACKLOG_AT_NORMAL_PRIORITY`]
//! small blocks wait, so that searches never face an unbounded number of them.
//!
//! A block that fails to read in a merge, and whose pages then do not decode when read
//! whole ([`block_files::damage`]), is set aside ([`block_files::set_aside_unreadable`]:
//! out of the index, into `blocks/corrupt/`, an ERROR, counted in
//! `meshtel_store_blocks_unreadable_total`) and compaction goes on without it, instead
//! of failing the same merge at every pass. One that reads well, or cannot be read to
//! check (too many open files), stays: the pass fails and the next one merges it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::block::{self, BlockMeta};
use crate::{Inner, Result, block_files, now_unix_nano};

/// Small blocks of one level merged once there are this many.
pub const MERGE_FAN_IN: usize = 4;

/// Most blocks merged at once: bounds the memory of a merge (one decoded batch and one
/// row group's compressed column chunks per input).
pub const MAX_MERGE_INPUTS: usize = 16;

/// Nice value of a merge's thread while compaction keeps up: when ingest and a merge
/// both want a core, the scheduler gives ingest (decoding, the WAL, flushes) most of
/// it, so that a burst is acknowledged at the rate the machine can take and merged
/// after; a merge on an idle machine still has a whole core.
const MERGE_NICE: i32 = 10;

/// Blocks waiting to be merged (under the compaction target) past which merges run at
/// normal priority again: a burst that lasts can leave at most this many small blocks
/// for searches to open before compaction takes its share of the CPU back.
const MERGE_BACKLOG_AT_NORMAL_PRIORITY: usize = 16 * MAX_MERGE_INPUTS;

/// How long replaced block files stay on disk for searches already running.
const DELETE_GRACE: Duration = Duration::from_secs(30);

/// Passes every `compaction_interval` until shutdown begins ([`Inner::stopping`]).
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(inner.config.compaction_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = inner.stop_compaction.notified() => {}
        }
        if inner.stopping.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = run_once(&inner, now_unix_nano()).await {
            if inner.stopping.load(Ordering::Relaxed) {
                return;
            }
            // An error of the file system may not name its file: the directory does.
            error!(
                error = %e,
                blocks_dir = %inner.blocks_dir.display(),
                "compaction pass failed; will retry"
            );
        }
    }
}

/// One pass of retention then compaction, with `now` as the current time; a failed
/// one is counted in `compaction_failures`. The metadata cached of the blocks it
/// replaced is dropped after it.
pub(crate) async fn run_once(inner: &Arc<Inner>, now: i64) -> Result<()> {
    let pass = pass(inner, now).await;
    let live = inner.state.read().blocks.clone();
    inner.searcher.forget_blocks_but(&live);
    if pass.is_err() && !inner.stopping.load(Ordering::Relaxed) {
        inner
            .stats
            .compaction_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    pass
}

async fn pass(inner: &Arc<Inner>, now: i64) -> Result<()> {
    // Nothing written or deleted in a directory put in the place of the one opened.
    if !crate::data_dir_watch::writable(inner) {
        return Ok(());
    }
    apply_retention(inner, now).await?;
    crate::catalog_writer::upkeep(inner, now);
    while !inner.stopping.load(Ordering::Relaxed)
        && let Some(group) = pick_compaction(inner)
    {
        // A merge writes its output beside its inputs: on a disk near its reserve it
        // waits, so that the space stays for flushing what is acknowledged.
        let bytes: u64 = group.iter().map(|b| b.bytes).sum();
        if !inner.disk.has_room_for(&inner.stats, bytes) {
            warn!(
                blocks = group.len(),
                bytes,
                min_free_disk = inner.config.min_free_disk.as_u64(),
                "compaction waits: merging these blocks would take the disk below store.min_free_disk"
            );
            break;
        }
        if let Err(e) = compact(inner, &group).await {
            let named = e
                .block_path()
                .and_then(|path| group.iter().find(|b| b.path(&inner.blocks_dir) == path))
                .filter(|_| !e.is_out_of_memory());
            // Set aside only a block whose bytes are damaged: one that failed for want
            // of file descriptors or memory is merged at a later pass.
            let damaged = match named {
                Some(block) => block_files::damage(&block.path(&inner.blocks_dir))
                    .await
                    .map(|cause| (block, cause)),
                None => None,
            };
            match damaged {
                Some((block, cause)) => {
                    block_files::set_aside_unreadable(inner, block, &cause).await?
                }
                None => return Err(e),
            }
        }
    }
    Ok(())
}

async fn apply_retention(inner: &Arc<Inner>, now: i64) -> Result<()> {
    let max_age = i64::try_from(inner.config.retention_max_age.as_nanos()).unwrap_or(i64::MAX);
    // 0: no bound on size (StoreConfig::retention_max_bytes).
    let max_bytes = match inner.config.retention_max_bytes.as_u64() {
        0 => u64::MAX,
        bytes => bytes,
    };
    let (expired, by_age) = {
        let state = inner.state.read();
        let mut expired: Vec<BlockMeta> = state
            .blocks
            .iter()
            .filter(|b| b.max_start < now.saturating_sub(max_age))
            .cloned()
            .collect();
        let by_age = expired.len();
        let mut total: u64 = state
            .blocks
            .iter()
            .filter(|b| !expired.contains(b))
            .map(|b| b.bytes)
            .sum();
        // Oldest first (blocks are sorted by max start).
        for b in state.blocks.iter() {
            if total <= max_bytes {
                break;
            }
            if !expired.contains(b) {
                total -= b.bytes;
                expired.push(b.clone());
            }
        }
        (expired, by_age)
    };
    if expired.is_empty() {
        return Ok(());
    }
    let ids: Vec<u64> = expired.iter().map(|b| b.id).collect();
    inner.catalog.replace_blocks(&[], &ids, None).await?;
    inner.state.write().blocks.retain(|b| !ids.contains(&b.id));
    inner
        .stats
        .blocks_deleted_by_retention
        .fetch_add(ids.len() as u64, Ordering::Relaxed);
    // Which bound, and what went: an operator reading this wants to know whether the
    // age bound or the disk bound is eating the data.
    let spans: u64 = expired.iter().map(|b| b.rows).sum();
    let bytes: u64 = expired.iter().map(|b| b.bytes).sum();
    info!(
        blocks = ids.len(),
        older_than_max_age = by_age,
        over_max_bytes = ids.len() - by_age,
        spans,
        bytes,
        retention_max_age = %humantime::format_duration(inner.config.retention_max_age),
        retention_max_bytes = %inner.config.retention_max_bytes,
        "retention deleted blocks"
    );
    delete_later(inner, expired);
    Ok(())
}

fn pick_compaction(inner: &Arc<Inner>) -> Option<Vec<BlockMeta>> {
    let state = inner.state.read();
    pick_group(&state.blocks, inner.config.compaction_target_rows as u64)
}

/// The nice value the next merge runs at: [`MERGE_NICE`], or 0 once more than
/// [`MERGE_BACKLOG_AT_NORMAL_PRIORITY`] blocks wait to be merged.
fn merge_nice(blocks: &[BlockMeta], target: u64) -> i32 {
    let waiting = blocks.iter().filter(|b| b.rows < target).count();
    if waiting > MERGE_BACKLOG_AT_NORMAL_PRIORITY {
        0
    } else {
        MERGE_NICE
    }
}

/// Runs `work` on a thread of its own at scheduling priority `nice` (the runtime's
/// blocking threads are shared, and a thread cannot take its priority back), and
/// waits for it.
async fn on_merge_thread<T: Send + 'static>(
    nice: i32,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (done, answer) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("meshtel-merge".into())
        .spawn(move || {
            crate::search::runtime::lower_priority(nice);
            let _ = done.send(work());
        })?;
    answer
        .await
        .map_err(|_| std::io::Error::other("the merge thread ended without an outcome").into())
}

/// The blocks to merge next, if any: in the lowest level holding at least
/// [`MERGE_FAN_IN`] blocks under `target` rows, the first run of neighbours in time
/// order (at least two, at most [`MAX_MERGE_INPUTS`]) that together stay within
/// `target`. A block that fits with neither neighbour is passed over, so that it
/// cannot hold back the blocks after it.
fn pick_group(blocks: &[BlockMeta], target: u64) -> Option<Vec<BlockMeta>> {
    let mut by_level: BTreeMap<u32, Vec<&BlockMeta>> = BTreeMap::new();
    for b in blocks.iter().filter(|b| b.rows < target) {
        by_level.entry(b.level).or_default().push(b);
    }
    for (_, mut blocks) in by_level {
        if blocks.len() < MERGE_FAN_IN {
            continue;
        }
        blocks.sort_by_key(|b| (b.min_start, b.id));
        let mut group: Vec<&BlockMeta> = Vec::new();
        let mut rows = 0;
        for b in blocks {
            if !group.is_empty() && (rows + b.rows > target || group.len() >= MAX_MERGE_INPUTS) {
                if group.len() >= 2 {
                    break;
                }
                // A run of one: start again from this block.
                group.clear();
                rows = 0;
            }
            rows += b.rows;
            group.push(b);
        }
        if group.len() >= 2 {
            return Some(group.into_iter().cloned().collect());
        }
    }
    None
}

/// Merges `group` into one block. An error reading one of the inputs is an
/// [`crate::Error::Block`] naming it.
async fn compact(inner: &Arc<Inner>, group: &[BlockMeta]) -> Result<()> {
    let id = inner.next_block_id();
    let dir = inner.blocks_dir.clone();
    let row_group_rows = inner.config.row_group_rows;
    let order = inner.config.block_order;
    let level = group.iter().map(|b| b.level).max().unwrap_or(0) + 1;
    let paths: Vec<_> = group.iter().map(|b| b.path(&dir)).collect();
    let stop = inner.stopping.clone();
    let nice = merge_nice(
        &inner.state.read().blocks,
        inner.config.compaction_target_rows as u64,
    );
    let meta = on_merge_thread(nice, move || {
        let meta = block::merge_blocks_unless(&dir, id, &paths, row_group_rows, order, level, stop);
        crate::memory::release_freed();
        meta
    })
    .await??;
    let removed: Vec<u64> = group.iter().map(|b| b.id).collect();
    if let Err(e) = inner
        .catalog
        .replace_blocks(std::slice::from_ref(&meta), &removed, None)
        .await
    {
        // Not indexed: the blocks it merged still are. A retry merges under a new id.
        if matches!(inner.catalog.lists_block(meta.id).await, Ok(false)) {
            block_files::remove_unindexed(&meta.path(&inner.blocks_dir));
        }
        return Err(e);
    }
    {
        let mut state = inner.state.write();
        state.blocks.retain(|b| !removed.contains(&b.id));
        state.blocks.push(meta.clone());
        state.blocks.sort_by_key(|b| (b.max_start, b.id));
    }
    inner.stats.compactions.fetch_add(1, Ordering::Relaxed);
    info!(
        merged = removed.len(),
        block = meta.id,
        rows = meta.rows,
        bytes = meta.bytes,
        level,
        "compacted blocks"
    );
    delete_later(inner, group.to_vec());
    Ok(())
}

/// Deletes the files of blocks taken out of the index, after [`DELETE_GRACE`] (at
/// once in tests), then forgets them in SQL.
fn delete_later(inner: &Arc<Inner>, blocks: Vec<BlockMeta>) {
    let dir = inner.blocks_dir.clone();
    let checked = inner.clone();
    let remove = move || {
        let mut deleted = Vec::new();
        if !crate::data_dir_watch::writable(&checked) {
            return deleted;
        }
        for b in blocks {
            let path = b.path(&dir);
            let mut gone = true;
            for file in [crate::trace_index::sidecar_path(&path), path] {
                if let Err(e) = std::fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    gone = false;
                    error!(file = %file.display(), error = %e, "could not delete replaced block file");
                }
            }
            if gone {
                deleted.push(b.file_name);
            }
        }
        deleted
    };
    let catalog = inner.catalog.clone();
    let forget = |deleted: Vec<String>| async move {
        // Listed ones are deleted again (found missing) at the next start. A pool
        // closed by a shutdown that came first is no reason to warn.
        match catalog.forget_replaced(&deleted).await {
            Ok(()) => {}
            Err(crate::Error::Database { source, .. })
                if matches!(*source, crate::Error::Sql(sqlx::Error::PoolClosed)) => {}
            Err(e) => warn!(error = %e, "could not forget deleted block files"),
        }
    };
    // Unlinking large files (and the data directory's checks) block: not on the
    // runtime's threads.
    let remove = || async move {
        tokio::task::spawn_blocking(remove)
            .await
            .unwrap_or_default()
    };
    if cfg!(test) {
        tokio::spawn(async move { forget(remove().await).await });
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(DELETE_GRACE).await;
            forget(remove().await).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: u64, level: u32, rows: u64) -> BlockMeta {
        BlockMeta {
            id,
            file_name: crate::block::block_file_name(id),
            min_start: id as i64 * 1_000,
            max_start: id as i64 * 1_000 + 999,
            rows,
            bytes: rows * 50,
            level,
            wal_seq: 0,
            trace_ids: Arc::new(crate::trace_index::TraceIdSet::from_keys(Vec::new())),
        }
    }

    fn ids(group: Option<Vec<BlockMeta>>) -> Vec<u64> {
        group.unwrap_or_default().iter().map(|b| b.id).collect()
    }

    #[test]
    fn the_first_run_within_the_target_is_merged() {
        let blocks: Vec<_> = (1..=6).map(|id| block(id, 0, 3_000)).collect();
        assert_eq!(ids(pick_group(&blocks, 10_000)), [1, 2, 3]);
        // Fewer than MERGE_FAN_IN small blocks in a level: nothing yet.
        assert_eq!(ids(pick_group(&blocks[..3], 10_000)), Vec::<u64>::new());
        // Blocks at the target are done.
        let done: Vec<_> = (1..=6).map(|id| block(id, 1, 10_000)).collect();
        assert_eq!(ids(pick_group(&done, 10_000)), Vec::<u64>::new());
    }

    #[test]
    fn a_block_that_pairs_with_no_neighbour_does_not_hold_back_the_rest() {
        // 6,000 + 5,000 > 10,000: the oldest block fits with nothing, and once stood
        // in front of the level at every pass while flushes piled up behind it.
        let mut blocks = vec![block(1, 0, 6_000), block(2, 0, 5_000)];
        blocks.extend((3..=12).map(|id| block(id, 0, 1_000)));
        assert_eq!(ids(pick_group(&blocks, 10_000)), [2, 3, 4, 5, 6, 7]);
        // Alone between two that it fits with neither.
        let blocks = vec![
            block(1, 0, 6_000),
            block(2, 0, 5_000),
            block(3, 0, 6_000),
            block(4, 0, 4_000),
            block(5, 0, 100),
        ];
        assert_eq!(ids(pick_group(&blocks, 10_000)), [3, 4]);
        // No two neighbours fit together: nothing to merge.
        let blocks: Vec<_> = (1..=5).map(|id| block(id, 0, 6_000)).collect();
        assert_eq!(ids(pick_group(&blocks, 10_000)), Vec::<u64>::new());
    }

    #[test]
    fn merges_run_at_normal_priority_only_past_their_backlog() {
        let mut blocks: Vec<_> = (1..=10).map(|id| block(id, 1, 10_000)).collect();
        let small = |from: u64, n: u64| (from..from + n).map(|id| block(id, 0, 1_000));
        blocks.extend(small(11, MERGE_BACKLOG_AT_NORMAL_PRIORITY as u64));
        assert_eq!(merge_nice(&blocks, 10_000), MERGE_NICE, "blocks at the target are not waiting");
        blocks.extend(small(10_000, 1));
        assert_eq!(merge_nice(&blocks, 10_000), 0);
    }

    /// The nice value of the calling thread.
    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_merge_thread_takes_the_priority_it_is_given_and_leaves_the_callers_alone() {
        let before = own_nice();
        let (merge, name) = on_merge_thread(MERGE_NICE, || {
            (own_nice(), std::thread::current().name().map(String::from))
        })
        .await
        .unwrap();
        assert_eq!(merge, (before + MERGE_NICE).min(19));
        assert_eq!(name.as_deref(), Some("meshtel-merge"));
        assert_eq!(own_nice(), before);
        let (normal, _) = on_merge_thread(0, || (own_nice(), ())).await.unwrap();
        assert_eq!(normal, before);
    }
}
