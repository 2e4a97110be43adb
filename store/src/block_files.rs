//! The blocks directory against the SQL index: what startup does with each file, and
//! what happens to a block that cannot be read.
//!
//! ```text
//!  blocks/
//!    0000000000000012.parquet (+ .tids)   in the index: checked, then searched
//!    *.tmp                                an interrupted write: deleted
//!    a block compaction or retention      deleted (SQL lists it as replaced)
//!      replaced
//!    another *.parquet (+ .tids)          not in the index: moved to orphaned/, WARN
//!    orphaned/                            blocks the index does not name; never deleted
//!    corrupt/                             blocks that could not be read, out of the index
//!    anything else (README, lost+found/)  left alone
//! ```
//!
//! A block the index names is checked at startup without reading its pages: the file
//! exists and has Parquet's magic bytes at both ends (a truncated or extended file has
//! not), and its trace id set loads. One that fails is moved to `corrupt/` (or, when missing,
//! only taken out of the index) with an ERROR naming it, and the store starts with the
//! rest; compaction does the same with a block it cannot read
//! ([`set_aside_unreadable`]). When every block the index names is missing, startup
//! stops instead: the blocks most likely live on a volume that is not mounted.
//!
//! A block damaged behind intact headers passes that check and fails the searches that
//! read its pages. When a search or fetch fails naming blocks, each named block is read
//! whole; one whose pages do not decode is set aside as compaction would (a read-only
//! store, beside a collector, only stops reading it), and the search runs again without
//! it ([`without_unreadable_blocks`]). A block that reads well is left alone: the failure
//! was elsewhere (too many open files, a cancelled query), and the search reports it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{error, info, warn};

use crate::block::BlockMeta;
use crate::catalog::Catalog;
use crate::trace_index::{self, TraceIdSet, sidecar_path};
use crate::{Error, Inner, Result, stats::Stats};

/// Where blocks the index does not name are set aside, inside the blocks directory.
pub const ORPHANED_DIR: &str = "orphaned";

/// Where blocks that cannot be read are set aside, inside the blocks directory.
pub const CORRUPT_DIR: &str = "corrupt";

const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// The index as startup leaves it.
pub(crate) struct Prepared {
    /// Blocks to search, each with its trace id set.
    pub blocks: Vec<BlockMeta>,
    /// The next block id: above every id in the index and in any file name on disk,
    /// so a new block never takes the name of a file set aside or awaiting deletion.
    pub next_id: u64,
}

/// Brings the blocks directory and the index into agreement at startup (see the
/// module's doc).
pub(crate) async fn prepare(
    catalog: &Catalog,
    blocks_dir: &Path,
    stats: &Stats,
) -> Result<Prepared> {
    let mut blocks = catalog.load_blocks().await?;
    blocks.sort_by_key(|b| (b.max_start, b.id));
    let replaced: BTreeSet<String> = catalog.replaced_block_files().await?.into_iter().collect();
    let indexed: BTreeSet<String> = blocks.iter().map(|b| b.file_name.clone()).collect();
    let dir = blocks_dir.to_path_buf();
    let swept = tokio::task::spawn_blocking(move || sweep(&dir, &indexed, &replaced)).await??;
    catalog.forget_replaced(&swept.forgotten).await?;
    stats
        .blocks_orphaned
        .fetch_add(swept.orphaned, Ordering::Relaxed);

    let dir = blocks_dir.to_path_buf();
    let listed = blocks.len();
    let checked = tokio::task::spawn_blocking(move || check_blocks(&dir, blocks)).await??;
    // A block found set aside (a start that crashed between moving a damaged block to
    // `corrupt/` and taking it out of the index) is not missing in that sense.
    let set_aside = |b: &BlockMeta| {
        [CORRUPT_DIR, ORPHANED_DIR]
            .iter()
            .any(|aside| blocks_dir.join(aside).join(&b.file_name).exists())
    };
    let missing = checked
        .iter()
        .filter(|(b, v)| matches!(v, Verdict::Missing) && !set_aside(b))
        .count();
    // Every listed block gone, one as much as a hundred: most likely the volume that
    // holds them is not mounted, and going on would take them out of the index for good.
    if listed >= 1 && missing == listed {
        return Err(Error::BlocksMissing {
            path: blocks_dir.to_path_buf(),
            count: listed,
        });
    }
    let mut next_id = swept.highest_id;
    let mut good = Vec::with_capacity(listed);
    let mut dropped = Vec::new();
    for (mut block, verdict) in checked {
        next_id = next_id.max(block.id);
        let path = block.path(blocks_dir);
        match verdict {
            Verdict::Good(trace_ids) => {
                block.trace_ids = trace_ids;
                good.push(block);
            }
            Verdict::Missing => {
                // Its trace id set, if left, goes with the other remains.
                let _ = move_aside(blocks_dir, &block.file_name, CORRUPT_DIR);
                error!(
                    block = %path.display(),
                    spans = block.rows,
                    "block file missing; taken out of the index, its spans are lost unless \
                     the file is restored (it would then be set aside in blocks/orphaned/)"
                );
                dropped.push(block.id);
            }
            Verdict::Damaged(e) => {
                let moved = move_aside(blocks_dir, &block.file_name, CORRUPT_DIR)
                    .map_err(Error::at("block", &path))?;
                error!(
                    block = %path.display(),
                    moved_to = %moved,
                    spans = block.rows,
                    error = %e,
                    "block cannot be read; set aside and taken out of the index, its spans \
                     are no longer searchable"
                );
                dropped.push(block.id);
            }
        }
    }
    if !dropped.is_empty() {
        catalog.drop_blocks(&dropped).await?;
        stats
            .blocks_unreadable
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
    }
    Ok(Prepared {
        blocks: good,
        next_id: next_id.saturating_add(1),
    })
}

/// Takes a block that failed to read (in compaction) out of the index and moves it to
/// `corrupt/`, so that the work it held up goes on.
pub(crate) async fn set_aside_unreadable(
    inner: &Arc<Inner>,
    block: &BlockMeta,
    cause: &Error,
) -> Result<()> {
    let path = block.path(&inner.blocks_dir);
    inner.catalog.drop_blocks(&[block.id]).await?;
    inner.state.write().blocks.retain(|b| b.id != block.id);
    inner
        .stats
        .blocks_unreadable
        .fetch_add(1, Ordering::Relaxed);
    // Searches that planned over the block fail on it as they would have anyway.
    match move_aside(&inner.blocks_dir, &block.file_name, CORRUPT_DIR) {
        Ok(moved) => error!(
            block = %path.display(),
            moved_to = %moved,
            spans = block.rows,
            error = %cause,
            "block cannot be read; set aside and taken out of the index, its spans are no \
             longer searchable"
        ),
        Err(e) => error!(
            block = %path.display(),
            spans = block.rows,
            error = %cause,
            move_error = %e,
            "block cannot be read; taken out of the index, its spans are no longer \
             searchable (it could not be moved to blocks/corrupt/; it is set aside at the \
             next start)"
        ),
    }
    Ok(())
}

/// Most times a read runs again after setting aside blocks it could not read.
const UNREADABLE_RETRIES: usize = 3;

/// Runs `read`; when it fails on blocks whose pages do not decode, sets them aside
/// ([`set_aside_if_unreadable`]) and runs it again without them.
pub(crate) async fn without_unreadable_blocks<T, F, Fut>(inner: &Arc<Inner>, read: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut retries = 0;
    loop {
        match read().await {
            Err(e) if retries < UNREADABLE_RETRIES && set_aside_if_unreadable(inner, &e).await => {
                retries += 1;
            }
            done => return done,
        }
    }
}

/// After a read failed with `e`: a block `e` names that compaction or retention took
/// out of the index since the read began (its file deleted after the grace, by this
/// process or by the collector beside a query process) makes the read worth running
/// again over the index as it is now, which holds the blocks that replaced it. Each
/// block still indexed is read whole, and one whose pages do not decode (or whose file
/// is gone) is set aside by a writer, or no longer read by a read-only store. Returns
/// whether the read is worth running again.
async fn set_aside_if_unreadable(inner: &Arc<Inner>, e: &Error) -> bool {
    if e.is_out_of_memory() {
        return false;
    }
    let paths: &[PathBuf] = match e {
        Error::Block { path, .. } => std::slice::from_ref(path),
        Error::Blocks { paths, .. } => paths,
        _ => return false,
    };
    let named: Vec<BlockMeta> = {
        let state = inner.state.read();
        state
            .blocks
            .iter()
            .filter(|b| paths.contains(&b.path(&inner.blocks_dir)))
            .cloned()
            .collect()
    };
    // A read-only store rereads the index every second: one whose read outlasted the
    // grace (or that was stopped) may still list the replaced block.
    let replaced = if inner.read_only && !named.is_empty() {
        replaced_since_loaded(inner, &named).await
    } else {
        BTreeSet::new()
    };
    let left_index = paths.len().saturating_sub(named.len()) + replaced.len();
    if left_index > 0 {
        info!(
            blocks = left_index,
            "a read outlasted blocks it used (compaction or retention replaced them and \
             deleted their files); it runs again over the index as it is now"
        );
    }
    let mut any = left_index > 0;
    for block in named {
        let path = block.path(&inner.blocks_dir);
        if replaced.contains(&block.id) {
            any = true;
            continue;
        }
        let Some(cause) = damage(&path).await else {
            continue;
        };
        if inner.read_only {
            inner.unreadable.lock().insert(block.id);
            inner.state.write().blocks.retain(|b| b.id != block.id);
            inner
                .stats
                .blocks_unreadable
                .fetch_add(1, Ordering::Relaxed);
            error!(
                block = %path.display(),
                spans = block.rows,
                error = %cause,
                "block cannot be read; this process no longer searches it (the collector \
                 sets it aside when it reads it; or stop the collector and move the file \
                 to blocks/corrupt/)"
            );
            any = true;
        } else {
            match set_aside_unreadable(inner, &block, &cause).await {
                Ok(()) => any = true,
                Err(e) => {
                    error!(block = %path.display(), error = %e, "could not take an unreadable block out of the index")
                }
            }
        }
    }
    any
}

/// Which of `blocks` the index in SQL no longer lists: after having the store reread
/// the index, and waiting (up to 5 s) for it to take them out of its block list, so
/// that the read runs again over the blocks that replaced them.
async fn replaced_since_loaded(inner: &Arc<Inner>, blocks: &[BlockMeta]) -> BTreeSet<u64> {
    let indexed: BTreeSet<u64> = match inner.catalog.load_blocks().await {
        Ok(indexed) => indexed.iter().map(|b| b.id).collect(),
        Err(e) => {
            warn!(error = %e, "could not read the block index after a failed read");
            return BTreeSet::new();
        }
    };
    let replaced: BTreeSet<u64> = blocks
        .iter()
        .map(|b| b.id)
        .filter(|id| !indexed.contains(id))
        .collect();
    if !replaced.is_empty() {
        inner.reload_index_now.notify_one();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !replaced.is_empty() && std::time::Instant::now() < deadline {
        let listed = inner.state.read().blocks.iter().any(|b| replaced.contains(&b.id));
        if !listed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    replaced
}

/// Why the block at `path` cannot be read, when a read of it failed: `Some` when its
/// pages do not decode (or the file is gone, [`verify_pages`]); `None` when it reads
/// well, or cannot be read to check (too many open files, permissions: logged), as
/// then what failed was not the block, which stays where it is.
pub(crate) async fn damage(path: &Path) -> Option<Error> {
    let checked = path.to_path_buf();
    match tokio::task::spawn_blocking(move || verify_pages(&checked)).await {
        Ok(Ok(Some(cause))) => Some(Error::in_block(path)(cause)),
        Ok(Ok(None)) => None,
        Ok(Err(io)) => {
            warn!(
                block = %path.display(),
                error = %io,
                "could not read a block a read failed on, to check it; it is left in place"
            );
            None
        }
        Err(_) => None,
    }
}

/// Reads every page of the block at `path`. `Ok(Some(cause))` when its bytes do not
/// decode, do not match the checksum in its footer, or the file is gone; `Err` for what the operator fixes, not the block
/// (permissions, too many open files): the file is read into memory first, so every
/// error after that is the bytes'.
pub(crate) fn verify_pages(path: &Path) -> std::io::Result<Option<Error>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes::Bytes::from(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(e.into())),
        Err(e) => return Err(e),
    };
    let decode = || -> Result<()> {
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
        crate::block::checksum::verify_bytes(&bytes, builder.metadata())?;
        let reader = builder.build()?;
        for batch in reader {
            batch?;
        }
        Ok(())
    };
    Ok(decode().err())
}

/// What startup's sweep found.
struct Swept {
    /// Replaced block files no longer on disk: their SQL rows can go.
    forgotten: Vec<String>,
    /// The highest block id in any file name under the blocks directory.
    highest_id: u64,
    /// Blocks moved to `orphaned/`.
    orphaned: u64,
}

/// The block id in a block's file name (`<16 hex digits>.parquet…`, see
/// [`crate::block::block_file_name`]), if it is one.
fn block_id_of(name: &str) -> Option<u64> {
    let hex = name.get(..16)?;
    if !name[16..].starts_with(".parquet") {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Sorts out the files of the blocks directory that the index does not name (see the
/// module's doc).
fn sweep(dir: &Path, indexed: &BTreeSet<String>, replaced: &BTreeSet<String>) -> Result<Swept> {
    let failed = |e| Error::at("blocks directory", dir)(e);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let is_dir = entry.file_type().map_err(failed)?.is_dir();
        entries.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
    }
    let names: BTreeSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let mut highest_id = 0;
    let (mut leftovers, mut superseded, mut orphaned) = (0, 0, 0);
    for (name, is_dir) in &entries {
        if *is_dir {
            if name == ORPHANED_DIR || name == CORRUPT_DIR {
                highest_id = highest_id.max(highest_id_in(&dir.join(name)));
            }
            continue;
        }
        highest_id = highest_id.max(block_id_of(name).unwrap_or(0));
        let path = dir.join(name);
        if name.ends_with(".tmp") {
            remove(&path)?;
            leftovers += 1;
            continue;
        }
        let (block, is_sidecar) = match name.strip_suffix(".tids") {
            Some(block) => (block, true),
            None => (name.as_str(), false),
        };
        if !block.ends_with(".parquet") || indexed.contains(block) {
            continue;
        }
        if replaced.contains(block) {
            remove(&path)?;
            superseded += 1;
            continue;
        }
        if is_sidecar {
            if names.contains(block) {
                // Moves with its block.
                continue;
            }
            if names.contains(format!("{block}.tmp").as_str()) {
                // Written just before its block's interrupted write would have been
                // renamed.
                remove(&path)?;
                leftovers += 1;
                continue;
            }
        }
        let moved = move_aside(dir, block, ORPHANED_DIR).map_err(Error::at("block", &path))?;
        if !is_sidecar {
            orphaned += 1;
        }
        warn!(
            file = %path.display(),
            moved_to = %moved,
            why = "it is the output of a flush or compaction interrupted before it was indexed \
                   (its spans are then also in the WAL or in other blocks), or meshtel.db is \
                   older than the blocks (restored from a backup, or lost)",
            what_to_do = "its spans are not searchable; if meshtel.db was restored or \
                          lost, stop meshtel and run `meshtel blocks adopt` to index it again, \
                          else delete it",
            "block file not in the index set aside"
        );
    }
    if leftovers > 0 {
        info!(files = leftovers, dir = %dir.display(), "deleted leftovers of interrupted block writes");
    }
    if superseded > 0 {
        info!(files = superseded, dir = %dir.display(), "deleted block files that compaction or retention replaced");
    }
    let forgotten = replaced
        .iter()
        .filter(|name| {
            indexed.contains(*name)
                || (!dir.join(name).exists() && !sidecar_path(&dir.join(name)).exists())
        })
        .cloned()
        .collect();
    Ok(Swept {
        forgotten,
        highest_id,
        orphaned,
    })
}

pub(crate) fn highest_id_in(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| block_id_of(&e.file_name().to_string_lossy()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::at("block file", path)(e)),
    }
}

/// Deletes a block written by a flush or merge whose indexing failed (it is in no
/// index: its rows are still in the head and the WAL, or in the blocks it merged), with
/// its sidecar; a WARN names what could not be deleted (it is set aside at the next
/// start).
pub(crate) fn remove_unindexed(path: &Path) {
    for file in [sidecar_path(path), path.to_path_buf()] {
        if let Err(e) = fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(file = %file.display(), error = %e, "could not delete a block that was not indexed; it is set aside at the next start");
        }
    }
}

/// Moves the block `file_name` (when present) and its sidecar (when present) from
/// `blocks_dir` into its subdirectory `sub`, under a name no file there has yet;
/// returns what was moved, by its new path.
pub(crate) fn move_aside(blocks_dir: &Path, file_name: &str, sub: &str) -> std::io::Result<Moved> {
    let target_dir = blocks_dir.join(sub);
    fs::create_dir_all(&target_dir)?;
    let mut target = target_dir.join(file_name);
    let mut n = 1;
    while target.exists() || sidecar_path(&target).exists() {
        let stem = file_name.strip_suffix(".parquet").unwrap_or(file_name);
        target = target_dir.join(format!("{stem}-{n}.parquet"));
        n += 1;
    }
    let source = blocks_dir.join(file_name);
    let mut moved = Moved(Vec::new());
    for (from, to) in [
        (sidecar_path(&source), sidecar_path(&target)),
        (source, target),
    ] {
        match fs::rename(&from, &to) {
            Ok(()) => moved.0.push(to),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Ok(d) = File::open(blocks_dir) {
        let _ = d.sync_all();
    }
    Ok(moved)
}

/// The new paths of the files [`move_aside`] moved; shown as a list, or as "nothing
/// (no file was left)".
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Moved(pub Vec<PathBuf>);

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nothing (no file was left)");
        }
        let paths: Vec<String> = self.0.iter().map(|p| p.display().to_string()).collect();
        f.write_str(&paths.join(", "))
    }
}

/// What startup's check found of one indexed block.
enum Verdict {
    Good(Arc<TraceIdSet>),
    Missing,
    Damaged(Error),
}

/// Whether an I/O error is the process's or the operator's rather than a block's
/// bytes': permissions, no file descriptor or memory left (Linux `ENOMEM`, `ENFILE`,
/// `EMFILE`).
fn not_the_blocks(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || matches!(e.raw_os_error(), Some(12 | 23 | 24))
}

/// Checks one indexed block without reading its pages, and loads its trace id set.
/// Errors only for what an operator fixes rather than the block: permissions, too
/// many open files.
fn check_block(dir: &Path, block: &BlockMeta) -> Result<Verdict> {
    let path = block.path(dir);
    let denied = not_the_blocks;
    let metadata = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Missing),
        Err(e) if denied(&e) => return Err(Error::at("block", &path)(e)),
        Err(e) => return Ok(Verdict::Damaged(e.into())),
    };
    // Not its size against the index: a block rewritten in place (by hand, by a tool)
    // reads as well as it did; its trace id set is rebuilt when the sidecar was made
    // from a block of another length (`trace_index::load_or_rebuild`).
    if !metadata.is_file() {
        return Ok(Verdict::Damaged(Error::Corrupt("not a file".into())));
    }
    match has_parquet_magic(&path) {
        Ok(true) => {}
        Ok(false) => {
            return Ok(Verdict::Damaged(Error::Corrupt(
                "no Parquet magic bytes at its start or end".into(),
            )));
        }
        Err(e) if denied(&e) => return Err(Error::at("block", &path)(e)),
        Err(e) => return Ok(Verdict::Damaged(e.into())),
    }
    Ok(match trace_index::load_or_rebuild(&path, true) {
        Ok(set) => Verdict::Good(Arc::new(set)),
        Err(Error::Io(e)) if denied(&e) => return Err(Error::at("block", &path)(e)),
        Err(e) => Verdict::Damaged(e),
    })
}

/// [`check_block`] for every block, spread over the cores: a block's filter reads in
/// about 0.05 ms, but one without a sidecar (or with one of the format before) takes
/// about 2 ms to read its trace ids and build one, and a store that holds a full
/// default retention has some 4,000 blocks. In the order given.
fn check_blocks(dir: &Path, blocks: Vec<BlockMeta>) -> Result<Vec<(BlockMeta, Verdict)>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per_thread = blocks.len().div_ceil(threads).max(1);
    let mut chunks = Vec::new();
    let mut rest = blocks;
    while rest.len() > per_thread {
        let tail = rest.split_off(per_thread);
        chunks.push(rest);
        rest = tail;
    }
    chunks.push(rest);
    let check = move |chunk: Vec<BlockMeta>| -> Result<Vec<(BlockMeta, Verdict)>> {
        chunk
            .into_iter()
            .map(|b| check_block(dir, &b).map(|verdict| (b, verdict)))
            .collect()
    };
    // Each part is taken by its thread, or by this one when its thread cannot be
    // started (a limit on processes): a failed spawn does not hand its closure back.
    let parts: Vec<Mutex<Option<Vec<BlockMeta>>>> =
        chunks.into_iter().map(|c| Mutex::new(Some(c))).collect();
    let take = |part: &Mutex<Option<Vec<BlockMeta>>>| {
        part.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default()
    };
    let checked: Vec<Result<Vec<(BlockMeta, Verdict)>>> = std::thread::scope(|scope| {
        let started: Vec<_> = parts
            .iter()
            .map(|part| {
                let thread = std::thread::Builder::new()
                    .name("meshtel-check-blocks".into())
                    .spawn_scoped(scope, move || check(take(part)));
                (part, thread.ok())
            })
            .collect();
        started
            .into_iter()
            .map(|(part, thread)| match thread {
                Some(t) => t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                None => check(take(part)),
            })
            .collect()
    });
    let mut all = Vec::new();
    for part in checked {
        all.extend(part?);
    }
    Ok(all)
}

fn has_parquet_magic(path: &Path) -> std::io::Result<bool> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    file.read_exact(&mut head)?;
    file.seek(SeekFrom::End(-4))?;
    file.read_exact(&mut tail)?;
    Ok(&head == PARQUET_MAGIC && &tail == PARQUET_MAGIC)
}

/// Gives every block its trace id set: kept from `known` blocks, else read from the
/// sidecar (or rebuilt from the block) off the async threads. For the read-only
/// store: a block whose set cannot be had is left out (not searchable here) with a
/// WARN the first time, and the rest are kept.
pub(crate) async fn load_trace_id_sets(
    blocks_dir: &Path,
    blocks: Vec<BlockMeta>,
    known: &[BlockMeta],
    warned: Arc<parking_lot::Mutex<BTreeSet<u64>>>,
) -> Result<Vec<BlockMeta>> {
    let known: std::collections::HashMap<u64, Arc<TraceIdSet>> =
        known.iter().map(|b| (b.id, b.trace_ids.clone())).collect();
    let dir = blocks_dir.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || {
        blocks
            .into_iter()
            .filter_map(|mut b| {
                b.trace_ids = match known.get(&b.id) {
                    Some(set) => set.clone(),
                    None => match trace_index::load_or_rebuild(&b.path(&dir), false) {
                        Ok(set) => Arc::new(set),
                        Err(e) => {
                            if warned.lock().insert(b.id) {
                                warn!(block = %b.path(&dir).display(), error = %e, "block cannot be read; not searchable from this process");
                            }
                            return None;
                        }
                    },
                };
                Some(b)
            })
            .collect()
    })
    .await?)
}

#[cfg(test)]
mod tests;
