//! Blocks set aside in `blocks/orphaned/` put back into the index.

use std::path::Path;

use super::*;
use crate::adopt::adopt_orphaned_blocks;
use crate::block_files::ORPHANED_DIR;

fn orphaned_blocks(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blocks").join(ORPHANED_DIR))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                .count()
        })
        .unwrap_or(0)
}

/// `meshtel.db` restored from a backup taken before a block was written: startup sets
/// that block aside, and adopting it makes its spans searchable and its service listed
/// again, beside the blocks the backup knew.
#[tokio::test]
async fn a_block_set_aside_after_a_restored_backup_is_adopted_back() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "before").await;
    store.shutdown().await.unwrap();
    copy_database(dir.path(), backup.path());
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 2, "after").await;
    store.shutdown().await.unwrap();
    copy_database(backup.path(), dir.path());

    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert!(ids(&store, &query("after")).await.is_empty());
    assert_eq!(orphaned_blocks(dir.path()), 1);
    // Not beside a running writer.
    let refused = adopt_orphaned_blocks(dir.path()).await.unwrap_err();
    assert!(matches!(refused, Error::Locked { .. }), "{refused}");
    store.shutdown().await.unwrap();

    let adopted = adopt_orphaned_blocks(dir.path()).await.unwrap();
    assert_eq!((adopted.blocks.len(), adopted.spans), (1, 2));
    assert!(adopted.unreadable.is_empty());
    assert_eq!(orphaned_blocks(dir.path()), 0);
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().blocks, 2);
    assert_eq!(ids(&store, &query("after")).await.len(), 1);
    assert_eq!(ids(&store, &query("before")).await.len(), 1);
    assert!(store.get_trace(trace_id(2)).await.unwrap().is_some());
    assert_eq!(store.services().await.unwrap(), vec!["after", "before"]);
    assert_eq!(orphaned_blocks(dir.path()), 0, "the next start keeps it");
    store.shutdown().await.unwrap();
    // Nothing left to adopt.
    let again = adopt_orphaned_blocks(dir.path()).await.unwrap();
    assert!(again.blocks.is_empty());
}

/// A file in `orphaned/` whose pages do not decode stays there, named.
#[tokio::test]
async fn an_orphaned_file_that_does_not_read_stays_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    store.shutdown().await.unwrap();
    let orphaned = dir.path().join("blocks").join(ORPHANED_DIR);
    std::fs::create_dir_all(&orphaned).unwrap();
    std::fs::write(
        orphaned.join("00000000000000ff.parquet"),
        b"PAR1 not a block PAR1",
    )
    .unwrap();
    let adopted = adopt_orphaned_blocks(dir.path()).await.unwrap();
    assert!(adopted.blocks.is_empty());
    assert_eq!(adopted.unreadable.len(), 1);
    assert_eq!(orphaned_blocks(dir.path()), 1);
}

/// `meshtel.db` lost with no backup: the blocks moved into `orphaned/` are adopted
/// into a new index, as the start's error advises.
#[tokio::test]
async fn blocks_of_a_lost_index_are_adopted_into_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "a").await;
    flush_trace(&store, 2, "b").await;
    store.shutdown().await.unwrap();
    remove_database(dir.path());
    let message = TraceStore::open(config(dir.path()))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("meshtel blocks adopt"), "{message}");
    let blocks = dir.path().join("blocks");
    let orphaned = blocks.join(ORPHANED_DIR);
    std::fs::create_dir_all(&orphaned).unwrap();
    for entry in std::fs::read_dir(&blocks).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::rename(&path, orphaned.join(path.file_name().unwrap())).unwrap();
        }
    }

    let adopted = adopt_orphaned_blocks(dir.path()).await.unwrap();
    assert_eq!((adopted.blocks.len(), adopted.spans), (2, 4));
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().blocks, 2);
    assert_eq!(store.services().await.unwrap(), vec!["a", "b"]);
    assert!(store.get_trace(trace_id(1)).await.unwrap().is_some());
    store.shutdown().await.unwrap();
}

/// The maintenance commands refuse a directory that is not a store's, and one whose
/// index is gone while its blocks are there, creating nothing in it: a new index
/// would set every block aside at the next start.
#[tokio::test]
async fn maintenance_refuses_other_directories_and_a_lost_index_beside_blocks() {
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("notes.txt"), "not meshtel").unwrap();
    for message in [
        adopt_orphaned_blocks(elsewhere.path())
            .await
            .err()
            .unwrap()
            .to_string(),
        crate::adopt::forget_missing_blocks(elsewhere.path())
            .await
            .err()
            .unwrap()
            .to_string(),
    ] {
        assert!(
            message.contains("not the data directory of a meshtel store"),
            "{message}"
        );
    }
    let names: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"], "nothing created");

    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "a").await;
    store.shutdown().await.unwrap();
    remove_database(dir.path());
    for message in [
        adopt_orphaned_blocks(dir.path())
            .await
            .err()
            .unwrap()
            .to_string(),
        crate::adopt::forget_missing_blocks(dir.path())
            .await
            .err()
            .unwrap()
            .to_string(),
    ] {
        assert!(
            message.contains("meshtel.db") && message.contains("is missing"),
            "{message}"
        );
    }
    assert!(!dir.path().join("meshtel.db").exists(), "no new index");
}
