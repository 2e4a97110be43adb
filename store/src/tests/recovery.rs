//! What the store does with a data directory it did not leave in order: a second
//! writer, blocks the index does not name, blocks that cannot be read.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::*;
use crate::block_files::{CORRUPT_DIR, ORPHANED_DIR};

/// The indexed blocks' files, oldest id first.
fn block_paths(store: &TraceStore) -> Vec<PathBuf> {
    let state = store.inner.state.read();
    let mut blocks: Vec<_> = state.blocks.iter().collect();
    blocks.sort_by_key(|b| b.id);
    blocks
        .iter()
        .map(|b| b.path(&store.inner.blocks_dir))
        .collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn truncate_to_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

#[tokio::test]
async fn a_second_writer_is_refused_while_a_reader_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let writer = TraceStore::open(config(dir.path())).await.unwrap();
    let err = TraceStore::open(config(dir.path())).await.err().unwrap();
    let message = err.to_string();
    assert!(matches!(err, Error::Locked { .. }), "{message}");
    assert!(message.contains("another meshtel process"), "{message}");
    let reader = TraceStore::open_read_only(config(dir.path()), Duration::from_secs(1))
        .await
        .unwrap();
    reader.shutdown().await.unwrap();
    writer.shutdown().await.unwrap();
    // Shut down, the directory is free again.
    let writer = TraceStore::open(config(dir.path())).await.unwrap();
    writer.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_older_index_sets_newer_blocks_aside_and_leaves_other_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "before-backup").await;
    store.shutdown().await.unwrap();
    // Last night's backup of meshtel.db.
    copy_database(dir.path(), backup.path());
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 2, "after-backup").await;
    let newer = block_paths(&store)[1].clone();
    store.shutdown().await.unwrap();
    // The backup is restored; the blocks directory holds things meshtel did not write.
    copy_database(backup.path(), dir.path());
    let blocks_dir = dir.path().join("blocks");
    std::fs::write(blocks_dir.join("README.txt"), b"ours").unwrap();
    std::fs::create_dir(blocks_dir.join("lost+found")).unwrap();
    std::fs::write(blocks_dir.join("0000000000000063.parquet.tmp"), b"half").unwrap();

    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(ids(&store, &query("before-backup")).await.len(), 1);
    assert!(ids(&store, &query("after-backup")).await.is_empty());
    let newer_name = newer.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        file_names(&blocks_dir.join(ORPHANED_DIR)),
        vec![newer_name.clone(), format!("{newer_name}.tids")],
        "the unindexed block is kept, with its trace id set"
    );
    assert_eq!(store.stats().blocks_orphaned, 1, "counted once, the block");
    let left = file_names(&blocks_dir);
    assert!(left.contains(&"README.txt".to_string()), "{left:?}");
    assert!(left.contains(&"lost+found".to_string()), "{left:?}");
    assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
    // A new block does not take the name of the one set aside.
    flush_trace(&store, 3, "after-restore").await;
    let names: Vec<_> = block_paths(&store)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!names.contains(&newer_name), "{names:?}");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn blocks_that_cannot_be_read_at_startup_are_set_aside_and_the_rest_starts() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    for seed in 1..=3 {
        flush_trace(&store, seed, &format!("svc-{seed}")).await;
    }
    let paths = block_paths(&store);
    store.shutdown().await.unwrap();
    // Block 2 truncated (its trace id set intact), block 3 deleted with its set.
    truncate_to_half(&paths[1]);
    std::fs::remove_file(&paths[2]).unwrap();
    std::fs::remove_file(crate::trace_index::sidecar_path(&paths[2])).unwrap();

    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(ids(&store, &query("svc-1")).await.len(), 1);
    assert!(ids(&store, &query("svc-2")).await.is_empty());
    assert!(store.get_trace(trace_id(2)).await.unwrap().is_none());
    let stats = store.stats();
    assert_eq!((stats.blocks, stats.blocks_unreadable), (1, 2));
    let corrupt = dir.path().join("blocks").join(CORRUPT_DIR);
    let name = paths[1].file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        file_names(&corrupt),
        vec![name.clone(), format!("{name}.tids")]
    );
    store.shutdown().await.unwrap();
    // Out of the index for good: the next start is quiet.
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().blocks_unreadable, 0);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_damaged_trace_id_sidecar_is_rebuilt_and_hides_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "svc-1").await;
    let sidecar = crate::trace_index::sidecar_path(&block_paths(&store)[0]);
    store.shutdown().await.unwrap();
    // One flipped bit in a fingerprint: the checksum no longer matches.
    let good = std::fs::read(&sidecar).unwrap();
    let mut damaged = good.clone();
    assert!(good.len() > 60 + 8);
    damaged[60] ^= 0x01;
    std::fs::write(&sidecar, &damaged).unwrap();

    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert!(store.get_trace(trace_id(1)).await.unwrap().is_some());
    assert_eq!(std::fs::read(&sidecar).unwrap(), good, "rewritten");
    store.shutdown().await.unwrap();
}

/// A block replaced by hand by another of the same name (restored from another copy),
/// its old sidecar kept: the writer and a read-only process each rebuild its set and
/// find the trace it holds now.
#[tokio::test]
async fn a_block_replaced_under_its_old_sidecar_hides_no_trace() {
    let (here, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = TraceStore::open(config(here.path())).await.unwrap();
    flush_trace(&store, 1, "svc-1").await;
    let block = block_paths(&store)[0].clone();
    store.shutdown().await.unwrap();
    let other = TraceStore::open(config(elsewhere.path())).await.unwrap();
    flush_trace(&other, 2, "a-service-of-another-name").await;
    let replacement = block_paths(&other)[0].clone();
    other.shutdown().await.unwrap();
    assert_eq!(block.file_name(), replacement.file_name());
    let old_sidecar = std::fs::read(crate::trace_index::sidecar_path(&block)).unwrap();
    let old_len = std::fs::metadata(&block).unwrap().len();
    std::fs::copy(&replacement, &block).unwrap();
    assert_ne!(std::fs::metadata(&block).unwrap().len(), old_len, "a replacement of another length");
    assert_eq!(std::fs::read(crate::trace_index::sidecar_path(&block)).unwrap(), old_sidecar);

    let reader = TraceStore::open_read_only(config(here.path()), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(reader.get_trace(trace_id(2)).await.unwrap().is_some(), "the reader skipped the block");
    let store = TraceStore::open(config(here.path())).await.unwrap();
    assert!(store.get_trace(trace_id(2)).await.unwrap().is_some(), "the writer skipped the block");
    assert_ne!(std::fs::read(crate::trace_index::sidecar_path(&block)).unwrap(), old_sidecar, "rewritten");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_store_whose_blocks_are_all_missing_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "a").await;
    flush_trace(&store, 2, "b").await;
    let paths = block_paths(&store);
    store.shutdown().await.unwrap();
    for path in &paths {
        std::fs::remove_file(path).unwrap();
    }
    let message = TraceStore::open(config(dir.path()))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("none of the 2 blocks"), "{message}");
    assert!(message.contains("blocks"), "{message}");
}

/// One indexed block, its file gone (a small store whose blocks were compacted into
/// one, on a volume not mounted): no start either, and the index keeps it.
#[tokio::test]
async fn a_store_whose_only_block_is_missing_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "a").await;
    let paths = block_paths(&store);
    store.shutdown().await.unwrap();
    assert_eq!(paths.len(), 1);
    let aside = dir.path().join("aside");
    std::fs::rename(&paths[0], &aside).unwrap();
    let message = TraceStore::open(config(dir.path()))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("none of the 1 blocks"), "{message}");
    // Mounted again, the block is there and searchable.
    std::fs::rename(&aside, &paths[0]).unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(block_paths(&store).len(), 1);
    store.shutdown().await.unwrap();
    // Gone for good: `meshtel blocks forget-missing` takes it out of the index, and the
    // store starts without it.
    std::fs::remove_file(&paths[0]).unwrap();
    assert!(TraceStore::open(config(dir.path())).await.is_err());
    let forgotten = crate::adopt::forget_missing_blocks(dir.path())
        .await
        .unwrap();
    assert_eq!(forgotten.len(), 1);
    assert!(paths[0].ends_with(&forgotten[0]), "{forgotten:?}");
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert!(block_paths(&store).is_empty());
    // Nothing else to forget.
    store.shutdown().await.unwrap();
    assert!(
        crate::adopt::forget_missing_blocks(dir.path())
            .await
            .unwrap()
            .is_empty()
    );
}

/// The only indexed block found in `corrupt/`: a start that moved it there crashed
/// before taking it out of the index. Not a volume missing: the start goes on, taking
/// it out.
#[tokio::test]
async fn a_block_left_in_corrupt_by_a_crashed_start_does_not_stop_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "a").await;
    let paths = block_paths(&store);
    store.shutdown().await.unwrap();
    let corrupt = paths[0]
        .parent()
        .unwrap()
        .join(crate::block_files::CORRUPT_DIR);
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::rename(&paths[0], corrupt.join(paths[0].file_name().unwrap())).unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert!(block_paths(&store).is_empty());
    store.shutdown().await.unwrap();
}

/// Zeroes the second quarter of what lies before a block's footer (its pages): its
/// magic bytes and footer stay intact, so startup's check passes, and reading its
/// pages fails.
fn damage_pages(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize;
    let pages = len - 8 - footer_len - 4;
    bytes[4 + pages / 4..4 + pages / 2].fill(0);
    std::fs::write(path, bytes).unwrap();
}

/// A block damaged behind intact headers: the first read over it sets it aside (a
/// writer) and answers from the rest; so does a restart.
#[tokio::test]
async fn a_search_over_a_block_that_cannot_be_read_sets_it_aside_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "kept").await;
    flush_trace(&store, 2, "damaged").await;
    let bad = block_paths(&store)[1].clone();
    damage_pages(&bad);
    assert_eq!(store.get_trace(trace_id(2)).await.unwrap(), None);
    assert!(store.get_trace(trace_id(1)).await.unwrap().is_some());
    assert_eq!(ids(&store, &query("kept")).await.len(), 1);
    let stats = store.stats();
    assert_eq!((stats.blocks, stats.blocks_unreadable), (1, 1));
    let corrupt = dir.path().join("blocks").join(CORRUPT_DIR);
    assert!(corrupt.join(bad.file_name().unwrap()).exists());
    store.shutdown().await.unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(ids(&store, &query("kept")).await.len(), 1);
    store.shutdown().await.unwrap();
}

/// A read-only store beside the writer stops reading such a block, also after its
/// reloads, and leaves the data directory as it is.
#[tokio::test]
async fn a_read_only_store_skips_a_block_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "kept").await;
    flush_trace(&store, 2, "damaged").await;
    let bad = block_paths(&store)[1].clone();
    damage_pages(&bad);
    let reader = TraceStore::open_read_only(config(dir.path()), Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(reader.get_trace(trace_id(2)).await.unwrap(), None);
    assert_eq!(ids(&reader, &query("damaged")).await.len(), 0);
    assert_eq!(ids(&reader, &query("kept")).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = reader.stats();
    assert_eq!((stats.blocks, stats.blocks_unreadable), (1, 1));
    assert!(bad.exists(), "the reader moves nothing");
    assert_eq!(store.stats().blocks, 2);
    reader.shutdown().await.unwrap();
    store.shutdown().await.unwrap();
}

/// A read-only store whose read outlasts the blocks it used (merged by the collector,
/// their files deleted before its next reread of the index) rereads the index and runs
/// the read again over the merged block: the spans are found and no block is called
/// unreadable. (A read used to fail with 500 on the missing file.)
#[tokio::test]
async fn a_read_only_store_reads_again_over_the_blocks_that_replaced_those_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_five_blocks(dir.path(), "merged").await;
    // It rereads the index only when a read asks.
    let reader = TraceStore::open_read_only(config(dir.path()), Duration::from_secs(3600))
        .await
        .unwrap();
    let replaced = block_paths(&reader);
    assert_eq!(replaced.len(), 5);
    store.compact_now().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while replaced.iter().any(|p| p.exists()) {
        assert!(std::time::Instant::now() < deadline, "the merged blocks' files stay");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reader.stats().blocks, 5, "the reader has not reread the index");
    assert!(reader.get_trace(trace_id(1)).await.unwrap().is_some());
    assert_eq!(ids(&reader, &query("merged")).await.len(), 5);
    let stats = reader.stats();
    assert_eq!((stats.blocks, stats.blocks_unreadable), (1, 0));
    reader.shutdown().await.unwrap();
    store.shutdown().await.unwrap();
}

/// Five flushed blocks, the first damaged by `damage` (which leaves it readable when
/// `still_reads`), then a merge: it sets the damaged block aside, into `corrupt/`, and
/// merges the other four. Returns the data directory, the store stopped.
async fn compaction_with_one_damaged_block(
    damage: fn(&Path),
    still_reads: bool,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_five_blocks(dir.path(), "compacted").await;
    let bad = block_paths(&store)[0].clone();
    damage(&bad);
    if still_reads {
        assert!(store.get_trace(trace_id(1)).await.unwrap().is_some());
    }
    store.compact_now().await.unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.compactions, stats.blocks, stats.blocks_unreadable),
        (1, 1, 1)
    );
    assert_eq!(ids(&store, &query("compacted")).await.len(), 4);
    let corrupt = dir.path().join("blocks").join(CORRUPT_DIR);
    assert!(corrupt.join(bad.file_name().unwrap()).exists());
    store.shutdown().await.unwrap();
    dir
}

/// A block a merge cannot read for a cause that is not its bytes (the process out of
/// file descriptors; here the file cannot be read at all, as its path is a directory
/// for a while): the pass fails, the block stays indexed, and a later pass merges it.
#[tokio::test]
async fn compaction_leaves_a_block_it_could_not_read_for_want_of_resources() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_five_blocks(dir.path(), "compacted").await;
    let blocked = block_paths(&store)[0].clone();
    let kept = dir.path().join("kept.parquet");
    std::fs::rename(&blocked, &kept).unwrap();
    std::fs::create_dir(&blocked).unwrap();
    assert!(store.compact_now().await.is_err());
    let stats = store.stats();
    assert_eq!(
        (stats.compactions, stats.blocks, stats.blocks_unreadable),
        (0, 5, 0)
    );
    assert!(!dir.path().join("blocks").join(CORRUPT_DIR).exists());
    std::fs::remove_dir(&blocked).unwrap();
    std::fs::rename(&kept, &blocked).unwrap();
    store.compact_now().await.unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.compactions, stats.blocks, stats.blocks_unreadable),
        (1, 1, 0)
    );
    assert_eq!(ids(&store, &query("compacted")).await.len(), 5);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn compaction_sets_aside_a_block_it_cannot_read_and_goes_on() {
    let dir = compaction_with_one_damaged_block(truncate_to_half, false).await;
    // The index agrees after a restart.
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(ids(&store, &query("compacted")).await.len(), 4);
    store.shutdown().await.unwrap();
}

/// Flips a byte of the trace id column's bloom filter, which a merge does not read:
/// damage that decodes, as damaged ids or plain values can.
fn damage_unread_bytes(path: &Path) {
    use parquet::file::reader::FileReader;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap();
    let offset = reader
        .metadata()
        .row_group(0)
        .column(0)
        .bloom_filter_offset()
        .expect("a bloom filter on trace_id");
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize + 40] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// A block whose bytes no longer match the checksum its writer left in its footer is
/// set aside by the merge that would read it, even when it still decodes: merged, its
/// damage would be written into the new block and the damaged one deleted.
#[tokio::test]
async fn compaction_sets_aside_a_block_whose_bytes_do_not_match_its_checksum() {
    compaction_with_one_damaged_block(damage_unread_bytes, true).await;
}

#[tokio::test]
async fn startup_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocks"), b"not a directory").unwrap();
    let message = TraceStore::open(config(dir.path()))
        .await
        .err()
        .unwrap()
        .to_string();
    let blocks = std::fs::canonicalize(dir.path()).unwrap().join("blocks");
    assert!(message.contains(&blocks.display().to_string()), "{message}");
}

#[tokio::test]
async fn the_index_lists_replaced_blocks_until_they_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path()).await.unwrap();
    let block = |id: u64| BlockMeta {
        id,
        file_name: block::block_file_name(id),
        min_start: 0,
        max_start: 0,
        rows: 1,
        bytes: 1,
        level: 0,
        wal_seq: 0,
        trace_ids: Default::default(),
    };
    catalog
        .replace_blocks(&[block(1), block(2), block(3)], &[], None)
        .await
        .unwrap();
    catalog.replace_blocks(&[], &[1], None).await.unwrap();
    // Set aside, not replaced: its file is not to be deleted.
    catalog.drop_blocks(&[2]).await.unwrap();
    assert_eq!(
        catalog.replaced_block_files().await.unwrap(),
        vec![block::block_file_name(1)]
    );
    catalog
        .forget_replaced(&[block::block_file_name(1)])
        .await
        .unwrap();
    assert!(catalog.replaced_block_files().await.unwrap().is_empty());
    assert_eq!(catalog.load_blocks().await.unwrap().len(), 1);
    catalog.close().await;
}

/// A WAL directory in which no new segment can be started (here a file of the next
/// segment's name in its way): the head stays in memory, each try is counted as a
/// failed flush, and the flush goes through once the way is clear.
#[tokio::test]
async fn a_wal_that_cannot_start_a_segment_counts_failed_flushes_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    store
        .write_spans(vec![trace(1, "held", 2, *T0, 1000)])
        .await
        .unwrap();
    let wal = dir.path().join("wal");
    let current = crate::wal::list_segments(&wal).unwrap().last().copied().unwrap();
    let blocker = wal.join(format!("{:020}.wal", current + 1));
    std::fs::write(&blocker, b"in the way").unwrap();
    let flushing = tokio::spawn({
        let store = store.clone();
        async move { store.flush().await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.stats().flush_failures == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed flush counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.stats().blocks, 0);
    std::fs::remove_file(&blocker).unwrap();
    flushing.await.unwrap().unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(ids(&store, &query("held")).await.len(), 1);
    store.shutdown().await.unwrap();
}

/// Generations sealed in quick succession are encoded two at a time and indexed in the
/// order they were sealed: every span ends in a block once, every WAL segment a block
/// covers is deleted, and a restart replays nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_encoded_together_are_indexed_in_order_and_replay_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_rows = 64;
    cfg.flush_interval = Duration::from_secs(3600);
    let store = TraceStore::open(cfg.clone()).await.unwrap();
    // One at a time, each its own generation, sealed while the one before is encoded.
    for seed in 1..=40u8 {
        let spans = vec![trace(seed, "svc", 64, *T0, 1_000)];
        store.write_spans(spans).await.unwrap();
    }
    store.flush().await.unwrap();
    let stats = store.stats();
    assert_eq!((stats.block_spans, stats.head_spans), (40 * 64, 0));
    assert!(stats.flushes >= 2, "{} flushes", stats.flushes);
    let most = store.inner.stats.encodes_running_max.load(Ordering::Relaxed);
    assert_eq!(most, 2, "generations encoded at once, at most");
    // Without a failure, block ids are handed out in seal order (a retry takes a new one).
    assert_eq!(stats.flush_failures, 0);
    let seqs: Vec<u64> = {
        let state = store.inner.state.read();
        let mut blocks: Vec<_> = state.blocks.iter().collect();
        blocks.sort_by_key(|b| b.id);
        blocks.iter().map(|b| b.wal_seq).collect()
    };
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "blocks by id cover WAL in order: {seqs:?}");
    let wal = file_names(store.inner.wal_dir.path());
    assert!(wal.len() <= 1, "segments left behind: {wal:?}");
    store.shutdown().await.unwrap();

    let reopened = TraceStore::open(cfg).await.unwrap();
    let stats = reopened.stats();
    assert_eq!((stats.block_spans, stats.head_spans), (40 * 64, 0), "nothing replayed");
    reopened.shutdown().await.unwrap();
}
