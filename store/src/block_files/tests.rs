use super::*;

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_sweep_deletes_only_leftovers_and_sets_unindexed_blocks_aside() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let block = |id: u64| crate::block::block_file_name(id);
    for name in [
        // Indexed: kept.
        block(1),
        format!("{}.tids", block(1)),
        // Unindexed with its sidecar: set aside together.
        block(2),
        format!("{}.tids", block(2)),
        // An interrupted flush: the temporary file and the sidecar written before it.
        format!("{}.tmp", block(3)),
        format!("{}.tids", block(3)),
        // Replaced by compaction, delete pending: deleted.
        block(4),
        format!("{}.tids", block(4)),
        // Not meshtel's.
        "README.txt".into(),
    ] {
        fs::write(d.join(&name), b"x").unwrap();
    }
    fs::create_dir(d.join("lost+found")).unwrap();
    // A block set aside before under the same name: the new one must not replace it.
    fs::create_dir(d.join(ORPHANED_DIR)).unwrap();
    fs::write(d.join(ORPHANED_DIR).join(block(2)), b"earlier").unwrap();
    fs::write(d.join(ORPHANED_DIR).join(block(9)), b"older").unwrap();

    let indexed = BTreeSet::from([block(1)]);
    let replaced = BTreeSet::from([block(4), block(7)]);
    let swept = sweep(d, &indexed, &replaced).unwrap();

    assert_eq!(
        names(d),
        BTreeSet::from([
            block(1),
            format!("{}.tids", block(1)),
            "README.txt".into(),
            "lost+found".into(),
            ORPHANED_DIR.into(),
        ])
    );
    let second = "0000000000000002-1.parquet".to_string();
    assert_eq!(
        names(&d.join(ORPHANED_DIR)),
        BTreeSet::from([block(2), block(9), second.clone(), format!("{second}.tids")])
    );
    assert_eq!(
        fs::read(d.join(ORPHANED_DIR).join(block(2))).unwrap(),
        b"earlier"
    );
    // Both replaced names are gone from disk: their rows can go.
    assert_eq!(swept.forgotten, vec![block(4), block(7)]);
    // Ids of files set aside count: a new block never takes their names.
    assert_eq!(swept.highest_id, 9);
}

#[test]
fn block_ids_come_from_block_file_names_only() {
    assert_eq!(block_id_of("00000000000000ff.parquet"), Some(255));
    assert_eq!(block_id_of("00000000000000ff.parquet.tids"), Some(255));
    assert_eq!(block_id_of("00000000000000ff-1.parquet"), None);
    assert_eq!(block_id_of("ffffffffffffffffffff.txt"), None);
    assert_eq!(block_id_of("README.txt"), None);
}

/// What is said to be moved is what was: a block whose file is gone leaves only its
/// sidecar to move.
#[test]
fn moving_aside_names_the_files_moved() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let block = crate::block::block_file_name(5);
    fs::write(d.join(format!("{block}.tids")), b"x").unwrap();
    let moved = move_aside(d, &block, CORRUPT_DIR).unwrap();
    let sidecar = d.join(CORRUPT_DIR).join(format!("{block}.tids"));
    assert_eq!(moved, Moved(vec![sidecar.clone()]));
    assert_eq!(moved.to_string(), sidecar.display().to_string());
    assert!(
        move_aside(d, &block, CORRUPT_DIR)
            .unwrap()
            .to_string()
            .starts_with("nothing")
    );
}
