//! Which blocks hold which traces: per block, the sorted 64-bit keys of its trace ids,
//! kept in memory (8 bytes per trace) and beside the block as `<block>.tids`: the keys
//! (u64 LE each), then `TIDS` and the CRC-32 of the keys (u32 LE). A sidecar that is
//! missing, damaged or of the earlier format without that trailer is rebuilt from the
//! block, so a damaged one never hides a trace.
//!
//! A fetch by trace id opens only the blocks whose set contains the id's key, instead of
//! asking every block's bloom filters. Keys are a hash of the 128-bit id, so a false
//! positive costs one block read and never a wrong answer.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::Result;
use crate::schema::col;

/// What follows the keys in a sidecar, before their CRC-32.
const TRAILER_MAGIC: &[u8; 4] = b"TIDS";

/// Sorted, deduplicated trace id keys of one block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceIdSet {
    keys: Vec<u64>,
}

/// The key of a trace id: both halves folded together, so that 64-bit ids (high half
/// zero) and random 128-bit ids both spread.
pub fn trace_key(id: &[u8]) -> u64 {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    if id.len() == 16 {
        hi.copy_from_slice(&id[..8]);
        lo.copy_from_slice(&id[8..]);
    }
    // Multiply-rotate the high half so equal halves do not cancel out.
    u64::from_be_bytes(lo)
        ^ u64::from_be_bytes(hi)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
}

impl TraceIdSet {
    /// A set from keys in any order.
    pub fn from_keys(mut keys: Vec<u64>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        keys.shrink_to_fit();
        TraceIdSet { keys }
    }

    /// Whether the block may hold the trace with this id.
    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        self.keys.binary_search(&trace_key(id)).is_ok()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the block holds no trace.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Writes the set to `path` (temporary name, synced, renamed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tids.tmp");
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut crc = crc32fast::Hasher::new();
        for key in &self.keys {
            out.write_all(&key.to_le_bytes())?;
            crc.update(&key.to_le_bytes());
        }
        out.write_all(TRAILER_MAGIC)?;
        out.write_all(&crc.finalize().to_le_bytes())?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Reads a set written by [`TraceIdSet::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let mut bytes = Vec::new();
        BufReader::new(File::open(path)?).read_to_end(&mut bytes)?;
        let corrupt = |what: &str| crate::Error::Corrupt(format!("{}: {what}", path.display()));
        let Some(keys_len) = bytes.len().checked_sub(8).filter(|len| len % 8 == 0) else {
            return Err(corrupt("not whole keys and a trailer"));
        };
        let (keys, trailer) = bytes.split_at(keys_len);
        if &trailer[..4] != TRAILER_MAGIC {
            return Err(corrupt("no trailer (written by an earlier version)"));
        }
        if trailer[4..] != crc32fast::hash(keys).to_le_bytes() {
            return Err(corrupt("checksum mismatch"));
        }
        let keys = keys
            .chunks_exact(8)
            .map(|c| {
                let mut k = [0u8; 8];
                k.copy_from_slice(c);
                u64::from_le_bytes(k)
            })
            .collect();
        Ok(TraceIdSet::from_keys(keys))
    }

    /// Rebuilds the set from a block's trace id column.
    pub fn from_block(block: &Path) -> Result<Self> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(block)?)?;
        let index = builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == col::TRACE_ID)
            .ok_or_else(|| crate::Error::Corrupt("block without a trace_id column".into()))?;
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(65_536)
            .build()?;
        let mut keys = Vec::new();
        for batch in reader {
            let batch = batch?;
            if let Some(ids) = batch.column(0).as_fixed_size_binary_opt() {
                keys.extend((0..ids.len()).map(|i| trace_key(ids.value(i))));
            }
        }
        Ok(TraceIdSet::from_keys(keys))
    }
}

/// Where a block's trace id set lives.
pub fn sidecar_path(block: &Path) -> PathBuf {
    let mut name = block.as_os_str().to_owned();
    name.push(".tids");
    PathBuf::from(name)
}

/// The set of a block: from its sidecar, or rebuilt from the block (and the sidecar
/// rewritten, an INFO naming a damaged one) when the sidecar is missing or unreadable;
/// a sidecar that cannot be written is only warned about.
pub fn load_or_rebuild(block: &Path) -> Result<TraceIdSet> {
    let sidecar = sidecar_path(block);
    match TraceIdSet::read(&sidecar) {
        Ok(set) => Ok(set),
        Err(error) => {
            if sidecar.exists() {
                tracing::info!(file = %sidecar.display(), %error, "rebuilding a block's trace id index from the block");
            } else {
                tracing::info!(file = %sidecar.display(), "rebuilding a block's missing trace id index from the block");
            }
            let set = TraceIdSet::from_block(block)?;
            if let Err(e) = set.write(&sidecar) {
                tracing::warn!(sidecar = %sidecar.display(), error = %e, "could not write a block's trace id set; it is rebuilt at every start");
            }
            Ok(set)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_round_trips_and_answers_membership() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<[u8; 16]> = (0..100u8).map(|i| [i; 16]).collect();
        let set = TraceIdSet::from_keys(ids.iter().map(|id| trace_key(id)).collect());
        assert!(ids.iter().all(|id| set.may_contain(id)));
        assert!(!set.may_contain(&[200; 16]));
        let path = dir.path().join("b.parquet.tids");
        set.write(&path).unwrap();
        assert_eq!(TraceIdSet::read(&path).unwrap(), set);
    }

    #[test]
    fn a_damaged_or_old_sidecar_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.parquet.tids");
        let set = TraceIdSet::from_keys((1..=50).collect());
        set.write(&path).unwrap();
        let good = fs::read(&path).unwrap();
        assert_eq!(good.len(), 50 * 8 + 8);
        // One flipped bit in a key: that key's trace would be looked for elsewhere.
        let mut flipped = good.clone();
        flipped[17] ^= 0x10;
        fs::write(&path, &flipped).unwrap();
        let error = TraceIdSet::read(&path).unwrap_err().to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
        // Cut short, and the format before the trailer (keys only).
        for bytes in [&good[..good.len() - 3], &good[..good.len() - 8], &[][..]] {
            fs::write(&path, bytes).unwrap();
            assert!(TraceIdSet::read(&path).is_err(), "{} bytes", bytes.len());
        }
    }
}
