//! Which blocks hold which traces. Each block has a [`TraceIdSet`]: a binary fuse
//! filter of 16-bit fingerprints of 64-bit keys of its trace ids ([`TraceKeys`]), held
//! in memory and written beside the block as `<block>.tids` with a checksum and the
//! length of the block it was made from ([`sidecar`]). A sidecar that is missing,
//! damaged, of the first format without a checksum, or made from a block of another
//! length (a block replaced by hand) is rebuilt from the block, so that it never hides
//! a trace; one of the formats before is read and written again in the current one.
//!
//! A filter takes 2.0-2.4 bytes per trace in memory and on disk, instead of the keys'
//! 8. The index lives as long as the blocks it covers, so its memory grows with what
//! retention keeps: the default 50 GiB of blocks of mesh traces (about 8 spans per
//! trace, 48 bytes per span) hold some 140 million traces, about 300 MiB as filters
//! against 1.06 GiB as keys (`meshtel_store_trace_index_bytes`).
//!
//! A fetch by trace id opens only the blocks whose set may contain the id's key,
//! instead of asking every block's bloom filters; asking 4,000 blocks' filters takes
//! 0.2 ms, against 8 ms for a binary search of each block's keys (`cargo bench -p
//! meshtel-store --bench trace_index`). A block that does not hold the trace answers
//! "may" once in about 65,000 lookups (a hash of the 128-bit id, then a 16-bit
//! fingerprint), which costs one block read and never a wrong answer: over 4,000 blocks
//! (a full default retention) about one fetch in sixteen reads one block too many.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use xorf::{BinaryFuse16, Filter};

use crate::Result;
use crate::schema::col;

mod sidecar;

/// Sorted, deduplicated trace id keys of one block: what a [`TraceIdSet`] is built from
/// (and what a sidecar of the first format held).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceKeys {
    keys: Vec<u64>,
}

/// The trace ids of one block as held in memory: whether the block may hold a trace.
/// Never "no" for a trace the block holds; "may" for one it does not hold about once
/// in 65,000 lookups (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct TraceIdSet {
    held: Held,
    len: usize,
    /// A digest of the keys, so that two sets compare equal exactly when they were made
    /// from the same keys (the filters' layouts do not say it).
    digest: u64,
}

#[derive(Debug, Clone, Default)]
enum Held {
    #[default]
    Empty,
    Filter(BinaryFuse16),
    /// The keys themselves, should a filter fail to build (its construction retries
    /// with new seeds a bounded number of times).
    Exact(Box<[u64]>),
}

impl PartialEq for TraceIdSet {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.digest == other.digest
    }
}

impl TraceIdSet {
    /// The set of `keys`.
    pub fn of(keys: &TraceKeys) -> Self {
        let keys = &keys.keys;
        let held = if keys.is_empty() {
            Held::Empty
        } else {
            match BinaryFuse16::try_from(keys.as_slice()) {
                Ok(filter) => Held::Filter(filter),
                Err(error) => {
                    tracing::debug!(keys = keys.len(), error, "trace id filter not built; keeping the keys");
                    Held::Exact(keys.clone().into_boxed_slice())
                }
            }
        };
        TraceIdSet {
            held,
            len: keys.len(),
            digest: digest_of(keys),
        }
    }

    /// The set of `keys` held as the keys themselves, as when a filter cannot be built.
    #[cfg(test)]
    fn exact(keys: &TraceKeys) -> Self {
        TraceIdSet {
            held: Held::Exact(keys.keys.clone().into_boxed_slice()),
            len: keys.len(),
            digest: digest_of(&keys.keys),
        }
    }

    /// The set of keys given in any order.
    pub fn from_keys(keys: Vec<u64>) -> Self {
        Self::of(&TraceKeys::from_keys(keys))
    }

    /// Whether the block may hold the trace with this id.
    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        let key = trace_key(id);
        match &self.held {
            Held::Empty => false,
            Held::Filter(filter) => filter.contains(&key),
            Held::Exact(keys) => keys.binary_search(&key).is_ok(),
        }
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the block holds no trace.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the set, made from a block of `block_bytes`, to `path` (see [`sidecar`]).
    pub fn write(&self, block_bytes: u64, path: &Path) -> Result<()> {
        sidecar::write(self, block_bytes, path)
    }

    /// Bytes of memory the set holds beyond its own struct.
    pub fn heap_bytes(&self) -> usize {
        match &self.held {
            Held::Empty => 0,
            Held::Filter(filter) => std::mem::size_of_val(&*filter.fingerprints),
            Held::Exact(keys) => std::mem::size_of_val(&**keys),
        }
    }
}

/// A digest of sorted keys, for [`TraceIdSet`]'s equality.
fn digest_of(keys: &[u64]) -> u64 {
    keys.iter().fold(0u64, |digest, key| {
        (digest ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31)
    })
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

impl TraceKeys {
    /// The keys given in any order.
    pub fn from_keys(mut keys: Vec<u64>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        keys.shrink_to_fit();
        TraceKeys { keys }
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Rebuilds the keys from a block's trace id column.
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
        Ok(TraceKeys::from_keys(keys))
    }
}

/// Where a block's trace id set lives.
pub fn sidecar_path(block: &Path) -> PathBuf {
    let mut name = block.as_os_str().to_owned();
    name.push(".tids");
    PathBuf::from(name)
}

/// The set of a block: from its sidecar, or rebuilt from the block (and, by a
/// `writer`, the sidecar rewritten, an INFO naming a damaged one) when the sidecar is
/// missing, unreadable or made from a block of another length; a sidecar that cannot
/// be written is only warned about. A writer writes a sidecar of the formats before
/// again: the keys as a filter, a filter of format 2 with the block's length (so that
/// a block replaced later is noticed). A reader writes none: a block it reads may be
/// deleted by the writer meanwhile, and its sidecar must not come back after it. A
/// block that cannot be looked at is an error: its sidecar cannot be checked.
pub fn load_or_rebuild(block: &Path, writer: bool) -> Result<TraceIdSet> {
    let sidecar = sidecar_path(block);
    let block_bytes = std::fs::metadata(block)?.len();
    let write = |set: &TraceIdSet, what: &str| {
        if !writer {
            return;
        }
        if let Err(e) = set.write(block_bytes, &sidecar) {
            tracing::warn!(sidecar = %sidecar.display(), error = %e, "could not write a block's trace id set; it is {what} at every start");
        }
    };
    match sidecar::read(&sidecar) {
        Ok(sidecar::Sidecar::Set(_, Some(made_from))) if made_from != block_bytes => {
            tracing::info!(file = %sidecar.display(), made_from, block_bytes, "rebuilding a block's trace id index: it was made from a block of another length (the block was replaced)");
            let set = TraceIdSet::of(&TraceKeys::from_block(block)?);
            write(&set, "rebuilt");
            Ok(set)
        }
        Ok(sidecar::Sidecar::Set(set, Some(_))) => Ok(set),
        Ok(sidecar::Sidecar::Set(set, None)) => {
            // Format 2: trusted as it is (rebuilding every block's set once would read
            // every block's trace ids), and stamped with the block's length from now on.
            write(&set, "read as format 2");
            Ok(set)
        }
        Ok(sidecar::Sidecar::Keys(keys)) => {
            let set = TraceIdSet::of(&keys);
            write(&set, "built from the keys");
            Ok(set)
        }
        Err(error) => {
            if sidecar.exists() {
                tracing::info!(file = %sidecar.display(), %error, "rebuilding a block's trace id index from the block");
            } else {
                tracing::info!(file = %sidecar.display(), "rebuilding a block's missing trace id index from the block");
            }
            let set = TraceIdSet::of(&TraceKeys::from_block(block)?);
            write(&set, "rebuilt");
            Ok(set)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random 128-bit ids, as SDKs make them.
    pub(super) fn random_ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&next().to_be_bytes());
                id[8..].copy_from_slice(&next().to_be_bytes());
                id
            })
            .collect()
    }

    pub(super) fn keys_of(ids: &[[u8; 16]]) -> Vec<u64> {
        ids.iter().map(|id| trace_key(id)).collect()
    }

    #[test]
    fn the_filter_never_misses_takes_a_third_of_the_keys_memory_and_rarely_says_may() {
        // A compacted block of mesh traces holds about 30,000 of them.
        let ids = random_ids(30_000, 7);
        let set = TraceIdSet::from_keys(keys_of(&ids));
        assert_eq!(set.len(), 30_000);
        assert!(ids.iter().all(|id| set.may_contain(id)), "a held trace was missed");
        let per_trace = set.heap_bytes() as f64 / 30_000.0;
        assert!(per_trace < 2.6, "{per_trace:.2} bytes per trace (the keys: 8)");
        let others = random_ids(1_000_000, 11);
        let false_positives = others.iter().filter(|id| set.may_contain(id)).count();
        // Expected about 15 (2^-16 of a million).
        assert!(false_positives <= 60, "{false_positives} of 1,000,000 absent traces said may");
        assert_ne!(TraceIdSet::from_keys(keys_of(&ids[1..])), set);
    }

    #[test]
    fn an_empty_set_and_the_keys_kept_whole_answer_exactly() {
        let empty = TraceIdSet::from_keys(Vec::new());
        assert!(empty.is_empty());
        assert_eq!(empty.heap_bytes(), 0);
        assert!(random_ids(1_000, 3).iter().all(|id| !empty.may_contain(id)));
        let ids = random_ids(100, 5);
        let exact = TraceIdSet::exact(&TraceKeys::from_keys(keys_of(&ids)));
        assert!(ids.iter().all(|id| exact.may_contain(id)));
        assert!(random_ids(1_000, 9).iter().all(|id| !exact.may_contain(id)));
        assert_eq!(exact.heap_bytes(), 800);
        assert_eq!(exact, TraceIdSet::from_keys(keys_of(&ids)));
    }
}
