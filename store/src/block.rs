//! Parquet blocks: immutable files of spans sorted by trace id.
//!
//! Layout choices, each for one of the two reads that matter:
//! - rows sorted by (trace id, start): a trace's spans sit together, and the trace id
//!   column's row-group and page statistics narrow a fetch-by-id to a page or two;
//! - a bloom filter on the trace id column: row groups (and so whole blocks) that do not
//!   hold a trace are skipped without reading a page;
//! - page-level statistics on start time and duration, and the block's time range in
//!   the SQL index: searches skip blocks outside their window and pages outside their
//!   duration bounds;
//! - zstd, dictionary encoding on the low-cardinality string columns (service, name,
//!   attribute lists), no dictionary for random ids.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::Int64Type;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::Result;
use crate::schema::{col, span_schema};

/// What the index knows about one block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockMeta {
    /// Unique, increasing id.
    pub id: u64,
    /// File name within the blocks directory.
    pub file_name: String,
    /// Earliest span start in the block, Unix ns.
    pub min_start: i64,
    /// Latest span start in the block, Unix ns.
    pub max_start: i64,
    /// Spans in the block.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
    /// 0 when flushed from the head, +1 for each compaction generation.
    pub level: u32,
    /// Highest WAL segment whose rows this block holds (0 for compacted blocks).
    pub wal_seq: u64,
}

impl BlockMeta {
    /// Full path of the block file.
    pub fn path(&self, blocks_dir: &Path) -> PathBuf {
        blocks_dir.join(&self.file_name)
    }
}

/// File name for a block id.
pub fn block_file_name(id: u64) -> String {
    format!("{id:016x}.parquet")
}

fn writer_properties(rows: usize, row_group_rows: usize) -> WriterProperties {
    let trace_id = ColumnPath::from(col::TRACE_ID);
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        // zstd level 3: close to the best ratio for this data at a fraction of the CPU
        // of higher levels.
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        // Row groups are the unit of bloom filters and of parallel reads.
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        // Page statistics let the reader skip pages by trace id, start time, duration.
        .set_statistics_enabled(EnabledStatistics::Page)
        // Attribute lists repeat a few thousand distinct entries: let the dictionary grow
        // large enough to hold them instead of falling back to plain encoding.
        .set_dictionary_page_size_limit(8 << 20)
        .set_bloom_filter_enabled(false)
        .set_column_bloom_filter_enabled(trace_id.clone(), true)
        .set_column_bloom_filter_fpp(trace_id.clone(), 0.01)
        .set_column_bloom_filter_max_ndv(trace_id, (row_group_rows.min(rows.max(1)) as u64 / 4).max(64))
        // Random ids do not repeat across traces; a dictionary would only cost.
        .set_column_dictionary_enabled(ColumnPath::from(col::SPAN_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::PARENT_SPAN_ID), false)
        // Start times within a sorted trace are close together: delta-encode them.
        .set_column_dictionary_enabled(ColumnPath::from(col::START), false)
        .set_column_encoding(ColumnPath::from(col::START), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(col::DURATION), false)
        .set_column_encoding(ColumnPath::from(col::DURATION), Encoding::DELTA_BINARY_PACKED)
        .build()
}

/// Sorts rows by (trace id, start).
pub fn sort_for_block(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let batch = concat_batches(&span_schema(), batches)?;
    if batch.num_rows() == 0 {
        return Ok(batch);
    }
    let columns = [col::TRACE_ID, col::START]
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .cloned()
                .map(|values| SortColumn {
                    values,
                    options: None,
                })
                .ok_or_else(|| crate::Error::Corrupt(format!("column {name} missing")))
        })
        .collect::<Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(&batch, &indices)?)
}

/// Min and max of the start column.
fn start_range(batch: &RecordBatch) -> (i64, i64) {
    let Some(start) = batch
        .column_by_name(col::START)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
    else {
        return (0, 0);
    };
    let min = arrow::compute::min(start).unwrap_or(0);
    let max = arrow::compute::max(start).unwrap_or(0);
    (min, max)
}

/// Sorts `batches` and writes them as block `id` into `blocks_dir` (to a temporary
/// name, synced, then renamed, so a crash never leaves a half block under a real name).
/// CPU-heavy: call from `spawn_blocking`.
pub fn write_block(
    blocks_dir: &Path,
    id: u64,
    batches: &[RecordBatch],
    row_group_rows: usize,
    level: u32,
    wal_seq: u64,
) -> Result<BlockMeta> {
    let batch = sort_for_block(batches)?;
    let (min_start, max_start) = start_range(&batch);
    let file_name = block_file_name(id);
    let tmp = blocks_dir.join(format!("{file_name}.tmp"));
    let file = File::create(&tmp)?;
    let props = writer_properties(batch.num_rows(), row_group_rows);
    let mut writer = ArrowWriter::try_new(file, span_schema(), Some(props))?;
    writer.write(&batch)?;
    let file = writer.into_inner()?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    let path = blocks_dir.join(&file_name);
    fs::rename(&tmp, &path)?;
    if let Ok(dir) = File::open(blocks_dir) {
        let _ = dir.sync_all();
    }
    Ok(BlockMeta {
        id,
        file_name,
        min_start,
        max_start,
        rows: batch.num_rows() as u64,
        bytes,
        level,
        wal_seq,
    })
}

/// Reads a whole block into memory (compaction). CPU-heavy: `spawn_blocking`.
pub fn read_block(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(65_536)
        .build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        // Files written by this version carry exactly our schema; rebuild the batch
        // on it so that field metadata differences never break concatenation.
        out.push(RecordBatch::try_new(span_schema(), batch.columns().to_vec())?);
    }
    Ok(out)
}

/// Rows in a batch list.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

