use super::*;

#[test]
fn replays_records_in_order_and_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert!(replayed.is_empty());
        wal.append(b"one").unwrap();
        wal.append(b"two").unwrap();
        wal.commit(true).unwrap();
        wal.rotate().unwrap();
        wal.append(b"three").unwrap();
        wal.commit(false).unwrap();
    }
    // Simulate a crash in the middle of a record: append half a header.
    let last = *list_segments(dir.path()).unwrap().last().unwrap();
    let mut f = OpenOptions::new()
        .append(true)
        .open(segment_path(dir.path(), last))
        .unwrap();
    f.write_all(&[42, 0, 0, 0, 1]).unwrap();
    drop(f);

    let (mut wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    let all: Vec<Vec<u8>> = replayed.into_iter().flat_map(|s| s.records).collect();
    assert_eq!(
        all,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    wal.append(b"four").unwrap();
    wal.commit(true).unwrap();
    drop(wal);
    let (_wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    let all: Vec<Vec<u8>> = replayed.into_iter().flat_map(|s| s.records).collect();
    assert_eq!(all.len(), 4);
}

#[test]
fn corrupt_checksum_stops_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(b"good").unwrap();
        wal.append(b"bad!").unwrap();
        wal.commit(true).unwrap();
    }
    let seq = list_segments(dir.path()).unwrap()[0];
    let path = segment_path(dir.path(), seq);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let records = read_segment_for_inspection(&path).unwrap();
    assert_eq!(records, vec![b"good".to_vec()]);
}

#[test]
fn flushed_segments_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let first_seq;
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        first_seq = wal.current_seq();
        wal.append(b"flushed").unwrap();
        wal.rotate().unwrap();
        wal.append(b"pending").unwrap();
        wal.commit(true).unwrap();
    }
    let (_wal, replayed) = Wal::open(dir.path(), first_seq).unwrap();
    let all: Vec<Vec<u8>> = replayed.into_iter().flat_map(|s| s.records).collect();
    assert_eq!(all, vec![b"pending".to_vec()]);
}
