//! The trace id index at start and at fetch, for a store holding a full default
//! retention (4,000 compacted blocks of 33,000 traces each, mesh traces):
//! - at start, per block: reading its sidecar's filter, against reading the keys the
//!   sidecars held before and building the filter from them;
//! - at fetch: asking every block's filter whether it may hold a trace, against a
//!   binary search of every block's keys (what the index held in memory before).
//!
//! ```text
//! cargo bench -p meshtel-store --bench trace_index
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use meshtel_store::trace_index::{TraceIdSet, TraceKeys, load_or_rebuild, sidecar_path, trace_key};

const TRACES_PER_BLOCK: usize = 33_000;
const BLOCKS: usize = 4_000;

/// Distinct pseudo-random keys, as trace ids hash to.
fn keys(n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let dir = tempfile::tempdir().expect("temporary directory");
    let block = dir.path().join("0000000000000001.parquet");
    // A stand-in for the block: only its length is looked at when the sidecar matches it.
    std::fs::write(&block, b"PAR1 stand-in PAR1").expect("block");
    TraceIdSet::from_keys(keys(TRACES_PER_BLOCK, 3))
        .write(18, &sidecar_path(&block))
        .expect("sidecar");
    // The keys as the sidecars held them before: u64 LE each (the trailer left out).
    let keys_file = dir.path().join("keys");
    let mut sorted = keys(TRACES_PER_BLOCK, 3);
    sorted.sort_unstable();
    std::fs::write(&keys_file, sorted.iter().flat_map(|k| k.to_le_bytes()).collect::<Vec<u8>>())
        .expect("keys");

    let mut group = criterion.benchmark_group("a block's trace ids at start");
    group.bench_function("read its filter", |b| {
        b.iter(|| black_box(load_or_rebuild(&block, true).expect("load")))
    });
    group.bench_function("read its keys and build the filter", |b| {
        b.iter(|| {
            let bytes = std::fs::read(&keys_file).expect("read");
            let keys = bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            black_box(TraceIdSet::of(&TraceKeys::from_keys(keys)))
        })
    });
    group.finish();

    let block_keys: Vec<Vec<u64>> = (0..BLOCKS as u64)
        .map(|n| {
            let mut k = keys(TRACES_PER_BLOCK, n * 7 + 5);
            k.sort_unstable();
            k
        })
        .collect();
    let sets: Vec<TraceIdSet> = block_keys.iter().map(|k| TraceIdSet::from_keys(k.clone())).collect();
    println!(
        "memory of the index over {BLOCKS} blocks: filters {} MiB, keys {} MiB",
        sets.iter().map(TraceIdSet::heap_bytes).sum::<usize>() >> 20,
        (BLOCKS * TRACES_PER_BLOCK * 8) >> 20
    );
    let asked: Vec<[u8; 16]> = keys(64, 99)
        .into_iter()
        .map(|k| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&k.to_be_bytes());
            id[8..].copy_from_slice(&k.rotate_left(17).to_be_bytes());
            id
        })
        .collect();
    let mut group = criterion.benchmark_group("a fetch asking 4,000 blocks");
    group.bench_function("filters", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % asked.len();
            black_box(sets.iter().filter(|s| s.may_contain(&asked[i])).count())
        })
    });
    group.bench_function("keys, binary search", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % asked.len();
            let key = trace_key(&asked[i]);
            black_box(block_keys.iter().filter(|k| k.binary_search(&key).is_ok()).count())
        })
    });
    group.finish();
}
