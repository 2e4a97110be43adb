use super::*;
use std::fs::OpenOptions;

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

fn replay_all(dir: &Path) -> Vec<Vec<u8>> {
    let (_wal, replayed) = Wal::open(dir, 0).unwrap();
    replayed.into_iter().flat_map(|s| s.records).collect()
}

/// A record large enough to bypass the buffer.
fn large(byte: u8) -> Vec<u8> {
    vec![byte; BUFFER_BYTES + 1000]
}

#[test]
fn a_large_record_that_fails_part_way_is_cut_off_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(b"before").unwrap();
        wal.commit(false).unwrap();
        // The disk fills in the middle of the large record's write.
        wal.faults().write_limit = Some(wal.written_len + 20_000);
        assert!(wal.append(&large(7)).is_err());
        // Space again: what is acknowledged from now on must replay.
        wal.faults().write_limit = None;
        wal.append(b"after-1").unwrap();
        wal.commit(false).unwrap();
        wal.append(&large(8)).unwrap();
        wal.append(b"after-2").unwrap();
        wal.commit(true).unwrap();
    }
    assert_eq!(
        replay_all(dir.path()),
        vec![
            b"before".to_vec(),
            b"after-1".to_vec(),
            large(8),
            b"after-2".to_vec()
        ]
    );
    // Nothing was left to cut or copy on replay.
    assert!(!dir.path().join(CORRUPT_DIR).exists());
}

#[test]
fn a_buffered_group_that_fails_part_way_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(b"kept").unwrap();
        wal.commit(false).unwrap();
        wal.faults().write_limit = Some(wal.written_len + 12);
        wal.append(b"refused-1").unwrap();
        wal.append(b"refused-2").unwrap();
        assert!(wal.commit(false).is_err());
        wal.faults().write_limit = None;
        wal.append(b"acked").unwrap();
        wal.commit(false).unwrap();
    }
    assert_eq!(
        replay_all(dir.path()),
        vec![b"kept".to_vec(), b"acked".to_vec()]
    );
}

#[test]
fn a_failed_write_that_cannot_be_cut_off_moves_on_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        let first = wal.current_seq();
        wal.append(b"one").unwrap();
        wal.commit(false).unwrap();
        wal.faults().write_limit = Some(wal.written_len + 100);
        wal.faults().fail_set_len = true;
        assert!(wal.append(&large(1)).is_err());
        // Neither a cut nor a new segment: every write is refused.
        wal.faults().write_limit = None;
        wal.faults().fail_new_segment = true;
        assert!(wal.append(b"refused").is_err());
        assert!(wal.commit(false).is_err());
        // A new segment can be had again.
        wal.faults().fail_new_segment = false;
        wal.append(b"two").unwrap();
        wal.commit(false).unwrap();
        assert_eq!(wal.current_seq(), first + 1);
    }
    assert_eq!(
        replay_all(dir.path()),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
}

#[test]
fn a_zero_filled_tail_is_the_end_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let seq;
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        seq = wal.current_seq();
        wal.append(b"one").unwrap();
        wal.commit(true).unwrap();
    }
    let path = segment_path(dir.path(), seq);
    let good = fs::metadata(&path).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&vec![0u8; 64 << 10]).unwrap();
    drop(f);
    let (_wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    assert_eq!(replayed[0].records, vec![b"one".to_vec()]);
    assert_eq!(fs::metadata(&path).unwrap().len(), good, "zeros cut off");
    assert!(
        !dir.path().join(CORRUPT_DIR).exists(),
        "a torn tail is no damage"
    );
}

#[test]
fn an_empty_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
    assert!(wal.append(b"").is_err());
}

/// A segment of 40 records of 4,000 bytes (record `i` all `i + 1`), each its own
/// commit; its path.
fn forty_committed_records(dir: &std::path::Path) -> std::path::PathBuf {
    let (mut wal, _) = Wal::open(dir, 0).unwrap();
    let seq = wal.current_seq();
    for i in 0..40u8 {
        wal.append(&record(i + 1, 4000)).unwrap();
        wal.commit(false).unwrap();
    }
    segment_path(dir, seq)
}

/// A record payload of `len` bytes: the prefix every record starts with, then `fill`.
fn record(fill: u8, len: usize) -> Vec<u8> {
    let mut payload = vec![fill; len];
    payload[..RECORD_PREFIX.len()].copy_from_slice(&RECORD_PREFIX);
    payload
}

#[test]
fn damage_before_the_end_keeps_a_copy_of_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = forty_committed_records(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let original = bytes.clone();
    // A flipped byte in the payload of record 5 of 40.
    bytes[5 * 4008 + HEADER_BYTES + 100] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    assert!(replayed[0].damaged);
    // Only the damaged record is lost: replay reads on from the next whole one.
    let records = &replayed[0].records;
    assert_eq!(records.len(), 39);
    assert_eq!(records[4], record(5, 4000));
    assert_eq!(records[5], record(7, 4000));
    let mut damaged = original;
    damaged[5 * 4008 + HEADER_BYTES + 100] ^= 0xff;
    assert_eq!(
        fs::read(&path).unwrap(),
        damaged,
        "the segment is left as it is"
    );
    let copy = dir.path().join(CORRUPT_DIR).join(path.file_name().unwrap());
    assert_eq!(
        fs::read(copy).unwrap(),
        damaged,
        "the copy is the segment as found"
    );
    // The next start reads it the same way.
    drop(wal);
    let (_wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    assert_eq!(replayed[0].records.len(), 39);
}

#[test]
fn damage_with_no_whole_record_after_it_is_cut_off_with_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = forty_committed_records(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    // Every record from the sixth on damaged: nothing whole follows the first damage.
    for r in 5..40 {
        bytes[r * 4008 + HEADER_BYTES + 100] ^= 0xff;
    }
    fs::write(&path, &bytes).unwrap();
    let (_wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    assert_eq!(replayed[0].records.len(), 5);
    assert_eq!(fs::metadata(&path).unwrap().len(), 5 * 4008);
    let copy = dir.path().join(CORRUPT_DIR).join(path.file_name().unwrap());
    assert_eq!(fs::read(copy).unwrap(), bytes);
}

#[test]
fn a_record_cut_short_is_a_torn_tail_without_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let seq;
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        seq = wal.current_seq();
        for i in 0..40u8 {
            wal.append(&vec![i + 1; 4000]).unwrap();
        }
        wal.append(&large(9)).unwrap();
        wal.commit(false).unwrap();
    }
    let path = segment_path(dir.path(), seq);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let (_wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    assert_eq!(replayed[0].records.len(), 40);
    assert!(!replayed[0].damaged, "a torn tail is not damage");
    assert!(!dir.path().join(CORRUPT_DIR).exists());
}

#[test]
fn copies_of_damaged_segments_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..(MAX_CORRUPT_COPIES + 2) {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        let seq = wal.current_seq();
        for i in 0..3u8 {
            wal.append(&[i + 1; 100]).unwrap();
        }
        wal.commit(false).unwrap();
        drop(wal);
        let path = segment_path(dir.path(), seq);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_BYTES] ^= 0xff;
        // Bytes after the damage that are more than a torn write leaves.
        bytes.extend(std::iter::repeat_n(1u8, BUFFER_BYTES));
        fs::write(&path, &bytes).unwrap();
    }
    let _ = Wal::open(dir.path(), 0).unwrap();
    let copies = fs::read_dir(dir.path().join(CORRUPT_DIR)).unwrap().count();
    assert_eq!(copies, MAX_CORRUPT_COPIES);
}

#[test]
fn starts_without_writes_leave_one_empty_segment_not_one_each() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(b"kept").unwrap();
        wal.commit(true).unwrap();
    }
    for _ in 0..5 {
        let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        let records: Vec<Vec<u8>> = replayed.into_iter().flat_map(|s| s.records).collect();
        assert_eq!(records, vec![b"kept".to_vec()]);
        drop(wal);
    }
    // The segment with the record, and the newest start's empty one.
    let segments = list_segments(dir.path()).unwrap();
    assert_eq!(segments.len(), 2, "{segments:?}");
    assert!(
        segments[1] > segments[0] + 4,
        "sequence numbers still only grow"
    );
}

#[test]
fn a_damaged_length_that_runs_past_the_end_is_damage_not_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let seq;
    let record = 100_000usize;
    {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        seq = wal.current_seq();
        for i in 0..12u32 {
            // Large records, each its own write, with bytes that vary.
            let mut payload: Vec<u8> = (0..record as u32)
                .map(|j| (j.wrapping_mul(2_654_435_761) ^ i) as u8)
                .collect();
            payload[..RECORD_PREFIX.len()].copy_from_slice(&RECORD_PREFIX);
            wal.append(&payload).unwrap();
            wal.commit(false).unwrap();
        }
    }
    let path = segment_path(dir.path(), seq);
    let mut bytes = fs::read(&path).unwrap();
    // Bit 23 of record 5's length: it now claims 8 MiB more than the segment holds.
    let at = 5 * (HEADER_BYTES + record);
    bytes[at + 2] ^= 0x80;
    fs::write(&path, &bytes).unwrap();

    let (_wal, replayed) = Wal::open(dir.path(), 0).unwrap();
    // The record whose length was damaged is lost; the six after it are read.
    assert_eq!(replayed[0].records.len(), 11);
    let copy = dir.path().join(CORRUPT_DIR).join(path.file_name().unwrap());
    assert_eq!(
        fs::read(copy).unwrap(),
        bytes,
        "a copy of the segment as found"
    );
}

/// Records as the store writes them (Arrow IPC streams of real spans, whose bytes hold
/// a plausible record length every few bytes): a damaged record in the middle of a
/// long segment loses that record alone, and the lookahead past it stays cheap.
#[test]
fn damage_among_real_records_loses_only_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..60u8)
        .map(|seed| {
            let spans = [crate::tests::trace(
                seed,
                "svc",
                200,
                *crate::tests::T0,
                1000,
            )];
            let (encoded, _) = crate::encode::encode_resource_spans(&spans, u64::MAX).unwrap();
            let bytes = encoded.batch.get_array_memory_size();
            crate::writer::encode_record(&encoded.batch, bytes).unwrap()
        })
        .collect();
    assert!(records.iter().all(|r| r.starts_with(&RECORD_PREFIX)));
    let path = {
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        for payload in &records {
            wal.append(payload).unwrap();
            wal.commit(false).unwrap();
        }
        segment_path(dir.path(), wal.current_seq())
    };
    let mut bytes = fs::read(&path).unwrap();
    // Sixteen bytes in the middle of record 10's payload, and (another start) a
    // flipped bit in its length.
    let at: usize = records[..10].iter().map(|r| HEADER_BYTES + r.len()).sum();
    for (damage, name) in [
        (at + HEADER_BYTES + records[10].len() / 2, "payload"),
        (at + 2, "length"),
    ] {
        let mut damaged = bytes.clone();
        for b in &mut damaged[damage..damage + if name == "payload" { 16 } else { 1 }] {
            *b ^= if name == "payload" { 0xff } else { 0x80 };
        }
        fs::write(&path, &damaged).unwrap();
        let started = std::time::Instant::now();
        let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        let took = started.elapsed();
        let mut expected = records.clone();
        expected.remove(10);
        let replayed_records = &replayed[0].records;
        assert!(
            *replayed_records == expected,
            "{name}: {} records replayed, {} expected",
            replayed_records.len(),
            expected.len()
        );
        assert!(replayed[0].damaged, "{name}");
        assert!(
            took < std::time::Duration::from_secs(5),
            "{name}: replay took {took:?}"
        );
        drop(wal);
        for extra in list_segments(dir.path()).unwrap() {
            if segment_path(dir.path(), extra) != path {
                fs::remove_file(segment_path(dir.path(), extra)).unwrap();
            }
        }
        bytes = fs::read(&path).unwrap();
        assert!(bytes == damaged, "{name}: the segment is left as it is");
        // Undo for the next case.
        bytes = {
            let mut clean = Vec::new();
            for payload in &records {
                clean.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                clean.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
                clean.extend_from_slice(payload);
            }
            clean
        };
    }
}
