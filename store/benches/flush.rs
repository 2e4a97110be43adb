//! Writing blocks: a head flush of 20,000 spans (two seconds at 10,000 spans/s, in 40
//! requests of 500) and a merge of four such blocks, for three layouts of the head's
//! rows: traces whole with their spans' starts in row order, traces whole with their
//! starts in another order (the end-to-end benchmark's traces), and traces taking
//! turns across a request (an SDK exporting spans as they end).
//!
//! ```text
//! cargo bench -p meshtel-store --bench flush
//! ```
//!
//! Prints criterion's figures, then nanoseconds per span of each flush and merge, timed
//! over `BENCH_ROUNDS` (10) more of each; `BENCH_ROUNDS=0` skips them, as
//! `benches/flush_instructions.sh` does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use common::{Starts, interleaved_request, request};
use criterion::{Criterion, Throughput};
use meshtel_model::validate::SpanLimits;
use meshtel_store::block::{merge_blocks, write_block_from_batches};
use meshtel_store::config::BlockOrder;
use meshtel_store::wire::encode_export_request;

const REQUESTS: usize = 40;
const REQUEST_SPANS: usize = 500;
const SPANS: usize = REQUESTS * REQUEST_SPANS;
const ROW_GROUP_ROWS: usize = 65_536;

#[derive(Clone, Copy)]
enum Layout {
    InOrder,
    Shuffled,
    Interleaved,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::InOrder => "whole traces, starts in row order",
            Layout::Shuffled => "whole traces, starts shuffled",
            Layout::Interleaved => "traces taking turns",
        }
    }
}

/// The head batches of one flush, the `n`th of a run (distinct trace ids).
fn head(layout: Layout, n: usize) -> Vec<RecordBatch> {
    let limits = SpanLimits::default();
    (0..REQUESTS)
        .map(|r| {
            let first = (n * REQUESTS + r) * REQUEST_SPANS;
            let bytes = match layout {
                Layout::InOrder => request(first, REQUEST_SPANS, Starts::InOrder),
                Layout::Shuffled => request(first, REQUEST_SPANS, Starts::Shuffled),
                Layout::Interleaved => interleaved_request(first, REQUEST_SPANS, Starts::Shuffled),
            };
            match encode_export_request(&bytes, &limits, u64::MAX) {
                Ok(Some((rows, _))) => rows.batch,
                other => panic!("the benchmark's request did not read: {:?}", other.err()),
            }
        })
        .collect()
}

fn flush(dir: &Path, id: u64, batches: &[RecordBatch]) -> PathBuf {
    let meta = write_block_from_batches(dir, id, batches, ROW_GROUP_ROWS, BlockOrder::Trace, 0, 0)
        .expect("flush");
    meta.path(dir)
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .configure_from_args();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut id = 0;
    let mut summary = Vec::new();
    for layout in [Layout::InOrder, Layout::Shuffled, Layout::Interleaved] {
        let heads: Vec<Vec<RecordBatch>> = (0..4).map(|n| head(layout, n)).collect();
        let mut group = criterion.benchmark_group("flush");
        group.throughput(Throughput::Elements(SPANS as u64));
        group.bench_function(layout.name(), |b| {
            b.iter(|| {
                id += 1;
                black_box(flush(dir.path(), id, &heads[0]))
            })
        });
        group.finish();
        let inputs: Vec<PathBuf> = heads
            .iter()
            .map(|batches| {
                id += 1;
                flush(dir.path(), id, batches)
            })
            .collect();
        let mut group = criterion.benchmark_group("merge of four flushes");
        group.throughput(Throughput::Elements(4 * SPANS as u64));
        group.bench_function(layout.name(), |b| {
            b.iter(|| {
                id += 1;
                black_box(merge_blocks(dir.path(), id, &inputs, ROW_GROUP_ROWS, BlockOrder::Trace, 1).expect("merge"))
            })
        });
        group.finish();

        let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(10);
        if rounds == 0 {
            continue;
        }
        let started = Instant::now();
        for _ in 0..rounds {
            id += 1;
            black_box(flush(dir.path(), id, &heads[0]));
        }
        let flush_ns = started.elapsed().as_nanos() as f64 / (rounds * SPANS) as f64;
        let started = Instant::now();
        for _ in 0..rounds {
            id += 1;
            black_box(merge_blocks(dir.path(), id, &inputs, ROW_GROUP_ROWS, BlockOrder::Trace, 1).expect("merge"));
        }
        let merge_ns = started.elapsed().as_nanos() as f64 / (rounds * 4 * SPANS) as f64;
        summary.push((layout.name(), flush_ns, merge_ns));
    }
    for (name, flush_ns, merge_ns) in summary {
        println!("{name:<36} per span: flush {flush_ns:6.0} ns, merge {merge_ns:6.0} ns");
    }
}
