//! The `<block>.tids` file: a block's [`TraceIdSet`] as it is held in memory, so that
//! a start reads each block's filter instead of building it again (0.1 against 1.5 ms
//! for a compacted block; `cargo bench -p meshtel-store --bench trace_index`).
//!
//! Format 3, all integers little-endian: a body, then `TID3` and the CRC-32 of the
//! body (u32). The body: the length in bytes of the block it was made from (u64), then
//! the body of format 2. A sidecar whose block has another length is not that block's
//! (a block replaced by hand, or restored from another copy of the store) and is
//! rebuilt from the block ([`super::load_or_rebuild`]).
//!
//! Format 2, written before: a body, then `TID2` and the CRC-32 of the body (u32). It is
//! read as format 3 without the block's length: trusted as it is, and written again in
//! format 3 by a writer. The body: the kind (u8: 0 no trace, 1 a binary fuse filter, 2 the keys
//! themselves), the number of distinct keys (u64) and their digest (u64), then for a
//! filter its descriptor (seed u64, segment length u32, its mask u32, the length of
//! all segments u32), the number of fingerprints (u64) and the fingerprints (u16 each);
//! for keys, their number (u64) and the sorted keys (u64 each).
//!
//! Format 1, written before: the sorted keys (u64 each), then `TIDS` and the CRC-32 of
//! the keys. It is read as keys ([`Sidecar::Keys`]): the caller builds their filter and
//! writes the sidecar again in format 3.
//!
//! A filter depends on how `xorf` hashes a key into it; a test pins one filter's bytes,
//! so that a version of the crate that hashes differently cannot read the filters of
//! blocks written before as if nothing changed (a trace would seem absent).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use xorf::{BinaryFuse16, Descriptor};

use super::{Held, TraceIdSet, TraceKeys};
use crate::Result;

const MAGIC: &[u8; 4] = b"TID3";
const MAGIC_V2: &[u8; 4] = b"TID2";
const MAGIC_V1: &[u8; 4] = b"TIDS";

const KIND_EMPTY: u8 = 0;
const KIND_FILTER: u8 = 1;
const KIND_KEYS: u8 = 2;

/// What a sidecar held.
pub(super) enum Sidecar {
    /// Formats 2 and 3: the set as it was in memory, and (format 3) the length of the
    /// block it was made from.
    Set(TraceIdSet, Option<u64>),
    /// Format 1: the keys.
    Keys(TraceKeys),
}

/// Writes `set`, made from a block of `block_bytes`, to `path` (temporary name,
/// synced, renamed).
pub(super) fn write(set: &TraceIdSet, block_bytes: u64, path: &Path) -> Result<()> {
    let mut body = Vec::with_capacity(72 + set.heap_bytes());
    body.extend_from_slice(&block_bytes.to_le_bytes());
    match &set.held {
        Held::Empty => body.push(KIND_EMPTY),
        Held::Filter(_) => body.push(KIND_FILTER),
        Held::Exact(_) => body.push(KIND_KEYS),
    }
    body.extend_from_slice(&(set.len as u64).to_le_bytes());
    body.extend_from_slice(&set.digest.to_le_bytes());
    match &set.held {
        Held::Empty => {}
        Held::Filter(filter) => {
            let d = &filter.descriptor;
            body.extend_from_slice(&d.seed.to_le_bytes());
            body.extend_from_slice(&d.segment_length.to_le_bytes());
            body.extend_from_slice(&d.segment_length_mask.to_le_bytes());
            body.extend_from_slice(&d.segment_count_length.to_le_bytes());
            body.extend_from_slice(&(filter.fingerprints.len() as u64).to_le_bytes());
            for f in filter.fingerprints.iter() {
                body.extend_from_slice(&f.to_le_bytes());
            }
        }
        Held::Exact(keys) => {
            body.extend_from_slice(&(keys.len() as u64).to_le_bytes());
            for k in keys.iter() {
                body.extend_from_slice(&k.to_le_bytes());
            }
        }
    }
    // Unique to this write: two processes (a collector and a query process, each
    // process 1 of its own container) or two writes of one may write the same block's.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tids.{}.{n}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        out.write_all(&body)?;
        out.write_all(MAGIC)?;
        out.write_all(&crc32fast::hash(&body).to_le_bytes())?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // On a full disk above all, what was written of it is in the way.
        let _ = fs::remove_file(&tmp);
    }
    Ok(written?)
}

/// Reads a sidecar of either format; an error names what is wrong with it.
pub(super) fn read(path: &Path) -> Result<Sidecar> {
    let mut bytes = Vec::new();
    BufReader::new(File::open(path)?).read_to_end(&mut bytes)?;
    let corrupt = |what: &str| crate::Error::Corrupt(format!("{}: {what}", path.display()));
    let Some(body_len) = bytes.len().checked_sub(8) else {
        return Err(corrupt("shorter than its trailer"));
    };
    let (body, trailer) = bytes.split_at(body_len);
    let (magic, crc) = trailer.split_at(4);
    if magic != MAGIC && magic != MAGIC_V2 && magic != MAGIC_V1 {
        return Err(corrupt("no trailer (cut short, or written by an earlier version)"));
    }
    if crc != crc32fast::hash(body).to_le_bytes() {
        return Err(corrupt("checksum mismatch"));
    }
    if magic == MAGIC_V1 {
        if body.len() % 8 != 0 {
            return Err(corrupt("not whole keys"));
        }
        let keys = body.chunks_exact(8).map(le_u64).collect();
        return Ok(Sidecar::Keys(TraceKeys::from_keys(keys)));
    }
    let mut r = Reader { rest: body };
    let block_bytes = if magic == MAGIC {
        Some(r.u64().ok_or_else(|| corrupt("no block length"))?)
    } else {
        None
    };
    let set = parse(&mut r).ok_or_else(|| corrupt("its body does not parse"))?;
    if !r.rest.is_empty() {
        return Err(corrupt("bytes after its set"));
    }
    Ok(Sidecar::Set(set, block_bytes))
}

fn parse(r: &mut Reader<'_>) -> Option<TraceIdSet> {
    let kind = r.take(1)?[0];
    let len = usize::try_from(r.u64()?).ok()?;
    let digest = r.u64()?;
    let held = match kind {
        KIND_EMPTY if len == 0 => Held::Empty,
        KIND_FILTER => {
            let descriptor = Descriptor {
                seed: r.u64()?,
                segment_length: r.u32()?,
                segment_length_mask: r.u32()?,
                segment_count_length: r.u32()?,
            };
            let count = usize::try_from(r.u64()?).ok()?;
            let fingerprints: Box<[u16]> = r
                .take(count.checked_mul(2)?)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            if !in_bounds(&descriptor, fingerprints.len()) {
                return None;
            }
            Held::Filter(BinaryFuse16 {
                descriptor,
                fingerprints,
            })
        }
        KIND_KEYS => {
            let count = usize::try_from(r.u64()?).ok()?;
            let keys: Box<[u64]> = r.take(count.checked_mul(8)?)?.chunks_exact(8).map(le_u64).collect();
            if count != len || !keys.windows(2).all(|w| w[0] < w[1]) {
                return None;
            }
            Held::Exact(keys)
        }
        _ => return None,
    };
    Some(TraceIdSet { held, len, digest })
}

/// Whether every position a lookup can compute from `d` is inside `fingerprints`
/// entries, as for every filter `xorf` builds: a lookup indexes a segment at most two
/// segment lengths past the last whole segment.
fn in_bounds(d: &Descriptor, fingerprints: usize) -> bool {
    let segment = d.segment_length;
    segment.is_power_of_two()
        && d.segment_length_mask == segment - 1
        && d.segment_count_length.is_multiple_of(segment)
        && d.segment_count_length < 1 << 30
        && segment < 1 << 28
        && fingerprints >= d.segment_count_length as usize + 2 * segment as usize
}

fn le_u64(c: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(c);
    u64::from_le_bytes(k)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(le_u64)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{keys_of, random_ids};
    use super::*;
    use crate::trace_index::{load_or_rebuild, sidecar_path};

    fn read_set(path: &Path) -> (TraceIdSet, Option<u64>) {
        match read(path).unwrap() {
            Sidecar::Set(set, block_bytes) => (set, block_bytes),
            Sidecar::Keys(_) => panic!("{} read as keys", path.display()),
        }
    }

    #[test]
    fn every_kind_of_set_comes_back_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.parquet.tids");
        let ids = random_ids(5_000, 21);
        let absent = random_ids(2_000, 23);
        let filter = TraceIdSet::from_keys(keys_of(&ids));
        assert!(matches!(filter.held, Held::Filter(_)));
        let exact = TraceIdSet::exact(&TraceKeys::from_keys(keys_of(&ids)));
        for (set, block_bytes) in [(filter, 1), (exact, 7_000_000), (TraceIdSet::from_keys(Vec::new()), 0)] {
            set.write(block_bytes, &path).unwrap();
            let (back, made_from) = read_set(&path);
            assert_eq!(back, set);
            assert_eq!(made_from, Some(block_bytes));
            assert_eq!(back.heap_bytes(), set.heap_bytes());
            for id in ids.iter().chain(&absent) {
                assert_eq!(back.may_contain(id), set.may_contain(id));
            }
        }
        // A filter's file is about a quarter of the keys' 8 bytes per trace.
        TraceIdSet::from_keys(keys_of(&ids)).write(1 << 20, &path).unwrap();
        let per_trace = fs::metadata(&path).unwrap().len() as f64 / 5_000.0;
        assert!(per_trace < 2.7, "{per_trace:.2} bytes per trace");
    }

    #[test]
    fn a_damaged_or_first_format_sidecar_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.parquet.tids");
        TraceIdSet::from_keys((1..=500).collect()).write(1 << 20, &path).unwrap();
        let good = fs::read(&path).unwrap();
        let refused = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            match read(&path) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{} bytes were read", bytes.len()),
            }
        };
        // One flipped bit in a fingerprint: a trace could seem absent.
        let mut flipped = good.clone();
        flipped[60] ^= 0x10;
        assert!(refused(&flipped).contains("checksum mismatch"));
        for cut in [&good[..good.len() - 3], &good[..good.len() - 8], &good[..5], &[][..]] {
            refused(cut);
        }
        // The first format: keys alone, no trailer.
        let keys: Vec<u8> = (1..=50u64).flat_map(|k| k.to_le_bytes()).collect();
        assert!(refused(&keys).contains("earlier version"));
        // A descriptor that would index past the fingerprints, with a good checksum.
        let mut body = good[..good.len() - 8].to_vec();
        body[8 + 17 + 8 + 8..8 + 17 + 8 + 8 + 4].copy_from_slice(&(1u32 << 29).to_le_bytes());
        let mut bad = body.clone();
        bad.extend_from_slice(MAGIC);
        bad.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        assert!(refused(&bad).contains("does not parse"));
    }

    #[test]
    fn a_sidecar_of_keys_is_read_and_written_again_as_a_filter() {
        let dir = tempfile::tempdir().unwrap();
        let ids = random_ids(1_000, 31);
        let block = block_of(dir.path(), "0000000000000001.parquet", &ids);
        let mut keys = keys_of(&ids);
        keys.sort_unstable();
        let mut bytes: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(MAGIC_V1);
        bytes.extend_from_slice(&crc.to_le_bytes());
        fs::write(sidecar_path(&block), &bytes).unwrap();
        // A reader takes it as it is.
        let set = load_or_rebuild(&block, false).unwrap();
        assert_eq!(set, TraceIdSet::from_keys(keys.clone()));
        assert_eq!(fs::read(sidecar_path(&block)).unwrap(), bytes);
        let set = load_or_rebuild(&block, true).unwrap();
        assert!(ids.iter().all(|id| set.may_contain(id)));
        assert_eq!(set, TraceIdSet::from_keys(keys));
        let rewritten = fs::read(sidecar_path(&block)).unwrap();
        assert_eq!(&rewritten[rewritten.len() - 8..rewritten.len() - 4], MAGIC);
        assert!(rewritten.len() < bytes.len() / 2);
        assert_eq!(read_set(&sidecar_path(&block)).0, set);
    }

    /// A block made from the keys in `ids`, as a flush writes it: its sidecar of format 3
    /// with its length.
    fn block_of(dir: &Path, name: &str, ids: &[[u8; 16]]) -> std::path::PathBuf {
        use arrow::array::{FixedSizeBinaryArray, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new(
            crate::schema::col::TRACE_ID,
            DataType::FixedSizeBinary(16),
            false,
        )]));
        let column = FixedSizeBinaryArray::try_from_iter(ids.iter()).unwrap();
        let batch = RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(column)]).unwrap();
        let path = dir.join(name);
        let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let bytes = fs::metadata(&path).unwrap().len();
        TraceIdSet::from_keys(keys_of(ids)).write(bytes, &sidecar_path(&path)).unwrap();
        path
    }

    #[test]
    fn a_sidecar_made_from_another_block_is_rebuilt_from_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let (old_ids, new_ids) = (random_ids(300, 41), random_ids(500, 43));
        let block = block_of(dir.path(), "0000000000000009.parquet", &old_ids);
        let old_sidecar = fs::read(sidecar_path(&block)).unwrap();
        // The block replaced by another (restored from elsewhere), its sidecar kept.
        let other = block_of(dir.path(), "other.parquet", &new_ids);
        fs::rename(&other, &block).unwrap();
        fs::write(sidecar_path(&block), &old_sidecar).unwrap();
        // A reader rebuilds it and writes nothing; a writer writes it again.
        for writer in [false, true] {
            let set = load_or_rebuild(&block, writer).unwrap();
            assert!(new_ids.iter().all(|id| set.may_contain(id)), "writer {writer}: a trace of the block was hidden");
            assert_eq!(set, TraceIdSet::from_keys(keys_of(&new_ids)));
        }
        let (rewritten, made_from) = read_set(&sidecar_path(&block));
        assert_eq!(rewritten, TraceIdSet::from_keys(keys_of(&new_ids)));
        assert_eq!(made_from, Some(fs::metadata(&block).unwrap().len()));
        // A sidecar of format 2 (no length) is taken as it is; a writer stamps it with
        // the block's length, a reader leaves it.
        let set = TraceIdSet::from_keys(keys_of(&old_ids));
        set.write(1, &sidecar_path(&block)).unwrap();
        let v3 = fs::read(sidecar_path(&block)).unwrap();
        let body = &v3[8..v3.len() - 8];
        let mut v2 = body.to_vec();
        v2.extend_from_slice(MAGIC_V2);
        v2.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        fs::write(sidecar_path(&block), &v2).unwrap();
        assert_eq!(load_or_rebuild(&block, false).unwrap(), set);
        assert_eq!(fs::read(sidecar_path(&block)).unwrap(), v2);
        assert_eq!(load_or_rebuild(&block, true).unwrap(), set);
        let (stamped, made_from) = read_set(&sidecar_path(&block));
        assert_eq!((stamped, made_from), (set, Some(fs::metadata(&block).unwrap().len())));
        // A block that cannot be looked at: its sidecar cannot be checked.
        fs::remove_file(&block).unwrap();
        assert!(load_or_rebuild(&block, false).is_err());
    }

    #[test]
    fn a_third_format_sidecar_without_its_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.parquet.tids");
        let body = [0u8; 5];
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        fs::write(&path, bytes).unwrap();
        let error = read(&path).err().unwrap().to_string();
        assert!(error.contains("no block length"), "{error}");
    }

    #[test]
    fn every_filter_built_indexes_inside_its_fingerprints() {
        for n in (1..300).chain([1_000, 4_096, 33_000, 250_000]) {
            let set = TraceIdSet::from_keys(keys_of(&random_ids(n, n as u64)));
            let Held::Filter(filter) = &set.held else {
                panic!("no filter for {n} keys");
            };
            assert!(in_bounds(&filter.descriptor, filter.fingerprints.len()), "{n} keys: {:?}", filter.descriptor);
        }
    }

    /// The filters of blocks written before must answer as they did: `xorf` hashing a
    /// key differently would make their traces seem absent. If this fails after an
    /// upgrade of `xorf`, the sidecar format needs a new version (and a rebuild).
    #[test]
    fn a_filter_is_laid_out_as_blocks_written_before_expect() {
        let set = TraceIdSet::from_keys((1..=1_000u64).map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect());
        let Held::Filter(filter) = &set.held else {
            panic!("no filter");
        };
        let d = &filter.descriptor;
        let bytes: Vec<u8> = filter.fingerprints.iter().flat_map(|f| f.to_le_bytes()).collect();
        let layout = (d.seed, d.segment_length, d.segment_count_length, filter.fingerprints.len(), crc32fast::hash(&bytes));
        assert_eq!(layout, (10_451_216_379_200_822_465, 128, 1_152, 1_408, 3_625_662_840));
    }
}
