//! Times trace fetches against one block file, and rewrites a block with this build's
//! writer settings, so that two layouts of the same spans can be compared.
//!
//! ```text
//! cargo run --release -p meshtel-store --example block_fetch -- BLOCK [TRACES]
//! cargo run --release -p meshtel-store --example block_fetch -- rewrite BLOCK OUT_DIR
//! ```
//!
//! The first form fetches TRACES (20) random traces of BLOCK 60 times, as a search
//! fetches the traces it found, and prints p50, p90 and the mean of the last 55.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use arrow::array::AsArray;
use meshtel_model::TraceId;
use meshtel_store::BlockOrder;
use meshtel_store::block::merge_blocks;
use meshtel_store::search::{Searcher, Source};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::seq::IndexedRandom;

const ROUNDS: usize = 60;
const WARMUP: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, block, out] if cmd == "rewrite" => rewrite(block.into(), out.into()),
        [block] => fetch(block.into(), 20).await,
        [block, traces] => fetch(block.into(), traces.parse()?).await,
        _ => Err("usage: block_fetch BLOCK [TRACES] | block_fetch rewrite BLOCK OUT_DIR".into()),
    }
}

/// Merges BLOCK alone into OUT_DIR as block 1, with the compaction's settings.
fn rewrite(block: PathBuf, out: PathBuf) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(&out)?;
    let meta = merge_blocks(&out, 1, &[block], 65_536, BlockOrder::Trace, 1)?;
    println!(
        "{}: {} rows, {} bytes",
        out.join(&meta.file_name).display(),
        meta.rows,
        meta.bytes
    );
    Ok(())
}

async fn fetch(block: PathBuf, traces: usize) -> Result<(), Box<dyn Error>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&block)?)?;
    let trace_id = ProjectionMask::roots(builder.parquet_schema(), [0]);
    let mut ids: Vec<[u8; 16]> = Vec::new();
    for batch in builder.with_projection(trace_id).build()? {
        for id in batch?.column(0).as_fixed_size_binary().iter().flatten() {
            let id: [u8; 16] = id.try_into()?;
            if ids.last() != Some(&id) {
                ids.push(id);
            }
        }
    }
    let searcher = Searcher::default();
    let sources = [Source::Blocks {
        paths: vec![block.clone()],
        min_start: 0,
        max_start: 0,
        rows: 0,
    }];
    let mut rng = rand::rng();
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let pick: Vec<TraceId> = ids
            .choose_multiple(&mut rng, traces)
            .map(|id| TraceId(*id))
            .collect();
        let started = Instant::now();
        let rows = searcher.fetch_rows(&pick, &sources, (usize::MAX, u64::MAX)).await?.batches;
        if rows.is_empty() {
            return Err("a fetch found nothing".into());
        }
        if round >= WARMUP {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{}: {} traces in the block, {traces} per fetch: p50 {:.1} ms, p90 {:.1} ms, mean {mean:.1} ms",
        block.display(),
        ids.len(),
        times[times.len() / 2],
        times[times.len() * 9 / 10],
    );
    Ok(())
}
