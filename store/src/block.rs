//! Parquet blocks: immutable files of spans sorted by trace id (or by service, then
//! trace id: [`BlockOrder`]).
//!
//! Layout choices, each for one of the two reads that matter:
//! - rows sorted by (trace id, start), in pages of at most [`PAGE_ROWS`] rows (and
//!   attribute lists in pages of at most [`ENTRY_PAGE_BYTES`]): a trace's spans sit
//!   together, and the trace id column's row-group and page statistics narrow a
//!   fetch-by-id to a page or two of each column. With [`BlockOrder::Service`]
//!   the service leads the order: every Jaeger search names a service, and a search then
//!   skips the pages of other services (the attribute lists above all), while a fetch
//!   reads a page per service the trace crosses;
//! - a bloom filter on the trace id column: row groups (and so whole blocks) that do not
//!   hold a trace are skipped without reading a page;
//! - page-level statistics on start time and duration, and the block's time range in
//!   the SQL index: searches skip blocks outside their window and pages outside their
//!   duration bounds;
//! - zstd (LZ4 for the attribute lists, whose dictionary every read decompresses),
//!   dictionary encoding on the low-cardinality string columns (service, name,
//!   attribute lists), no dictionary for random ids.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::Result;
use crate::config::BlockOrder;
use crate::schema::{ENTRY_COLUMNS, col, span_schema, stored_schema};
use crate::trace_index::{TraceIdSet, sidecar_path, trace_key};

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
    /// Keys of the trace ids in the block (see [`crate::trace_index`]).
    pub trace_ids: Arc<TraceIdSet>,
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

/// zstd level of blocks flushed from the head: the cheapest, as compaction rewrites
/// them within minutes and ingest waits for nothing else.
const FLUSH_ZSTD_LEVEL: i32 = 1;
/// zstd level of compacted blocks. Level 7 stored the benchmark's spans in 51.2 bytes
/// against 51.4 at level 3 (50.9 against 51.0 for 10M spans) for more CPU per byte.
const MERGE_ZSTD_LEVEL: i32 = 3;
/// Compacted blocks use row groups this many times `row_group_rows`.
const MERGE_ROW_GROUP_FACTOR: usize = 4;

/// Columns whose min/max statistics prune something: trace lookups (trace id), searches
/// (service, operation, kind, start, duration, status). Other columns, the attribute
/// lists above all, get none: their min/max would never skip a page, and computing them
/// compares every string a flush or merge writes.
const PRUNING_COLUMNS: [&str; 7] = [
    col::TRACE_ID,
    col::SERVICE,
    col::NAME,
    col::KIND,
    col::START,
    col::DURATION,
    col::STATUS_CODE,
];

/// Leaf column paths of the span table in Parquet (nested lists have leaves such as
/// `attributes.list.item`).
fn leaf_paths() -> &'static [ColumnPath] {
    static PATHS: OnceLock<Vec<ColumnPath>> = OnceLock::new();
    PATHS.get_or_init(|| {
        ArrowSchemaConverter::new()
            .convert(&span_schema())
            .map(|descr| descr.columns().iter().map(|c| c.path().clone()).collect())
            .unwrap_or_default()
    })
}

fn writer_properties(rows: usize, row_group_rows: usize, zstd_level: i32) -> WriterProperties {
    let trace_id = ColumnPath::from(col::TRACE_ID);
    let mut builder = WriterProperties::builder();
    for path in leaf_paths() {
        let top = path.parts().first().map(String::as_str).unwrap_or_default();
        if !PRUNING_COLUMNS.contains(&top) {
            builder = builder.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
        if ENTRY_COLUMNS.contains(&top) {
            builder = builder
                .set_column_data_page_size_limit(path.clone(), ENTRY_PAGE_BYTES)
                .set_column_compression(path.clone(), ENTRY_COMPRESSION);
        }
    }
    builder
        .set_writer_version(WriterVersion::PARQUET_2_0)
        // Plain is the encoding of columns without a dictionary (span ids) and the
        // fallback of those with one. The format-2 default for byte arrays,
        // DELTA_BYTE_ARRAY, allocates two 1 MiB bit writers per byte-array column of
        // every writer before a value is written (60 MiB of the heap's peak at a steady
        // 10,000 spans/s under heaptrack), for ids that share no prefixes. Plain: 12.7-
        // 12.8 % of a core at that rate against 14.4-14.6 %, 51.0 bytes/span against 51.4.
        .set_encoding(Encoding::PLAIN)
        // zstd: level 1 for flushes (they are rewritten by compaction soon),
        // higher for compacted blocks.
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).unwrap_or_default(),
        ))
        // Row groups are the unit of bloom filters and of parallel reads.
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        // Page statistics let the reader skip pages by service, trace id, start time,
        // duration; small pages let them skip more.
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        // Attribute lists repeat a few thousand distinct entries: let the dictionary grow
        // large enough to hold them instead of falling back to plain encoding.
        .set_dictionary_page_size_limit(8 << 20)
        .set_bloom_filter_enabled(false)
        .set_column_bloom_filter_enabled(trace_id.clone(), true)
        .set_column_bloom_filter_fpp(trace_id.clone(), 0.01)
        .set_column_bloom_filter_max_ndv(
            trace_id,
            (row_group_rows.min(rows.max(1)) as u64 / 4).max(64),
        )
        // Random ids do not repeat across traces; a dictionary would only cost.
        .set_column_dictionary_enabled(ColumnPath::from(col::SPAN_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::PARENT_SPAN_ID), false)
        // Start times within a sorted trace are close together: delta-encode them.
        .set_column_dictionary_enabled(ColumnPath::from(col::START), false)
        .set_column_encoding(ColumnPath::from(col::START), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(col::DURATION), false)
        .set_column_encoding(
            ColumnPath::from(col::DURATION),
            Encoding::DELTA_BINARY_PACKED,
        )
        .build()
}

/// Codec of the attribute lists. Their data pages are bit-packed dictionary keys, which
/// zstd barely shrinks, and every read of a row group (a fetch of one trace included)
/// decompresses the whole dictionary page, about 2 MiB for the benchmark's 97,000
/// distinct entries. LZ4 decompresses that several times faster: fetching one trace of
/// a 500,000-span block took 5.1-6.6 ms instead of 6.8-9.7 ms (0.30 against 0.45 s of
/// CPU for 60 fetches), for 2 % more disk (README, Performance).
const ENTRY_COMPRESSION: Compression = Compression::LZ4_RAW;

/// Rows gathered per `interleave`: the transient copy a flush or merge makes at once.
/// The Parquet writer closes row groups at `row_group_rows` on its own, so this only
/// bounds memory; it does not shape the file.
const CHUNK_ROWS: usize = 8192;

/// Rows each merge input decodes at a time.
const MERGE_BATCH_ROWS: usize = 2048;

/// Rows per data page, at most: the unit page statistics prune at, so the pages of one
/// service (or one trace) are not diluted by their neighbours'.
const PAGE_ROWS: usize = 8192;

/// Bytes of one data page of an attribute list, at most (before compression): about
/// 1,500 spans of eleven entries. A fetch decompresses and steps through every page a
/// selected row sits in, and these are the widest columns.
const ENTRY_PAGE_BYTES: usize = 32 << 10;

/// Sort key of one row: service (its rank among the flush's services with
/// [`BlockOrder::Service`], else 0), trace id, then start time, then where the row lives.
type RowKey = (u32, [u8; 16], i64, u32, u32);

fn trace_id_and_start(batch: &RecordBatch) -> Result<(&FixedSizeBinaryArray, &Int64Array)> {
    let ids = batch
        .column_by_name(col::TRACE_ID)
        .and_then(|c| c.as_fixed_size_binary_opt())
        .ok_or_else(|| crate::Error::Corrupt("trace_id column missing".into()))?;
    let starts = batch
        .column_by_name(col::START)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| crate::Error::Corrupt("start column missing".into()))?;
    Ok((ids, starts))
}

fn trace_id_at(ids: &FixedSizeBinaryArray, r: usize) -> Result<[u8; 16]> {
    ids.value(r)
        .try_into()
        .map_err(|_| crate::Error::Corrupt("trace id of wrong width".into()))
}

fn service_column(batch: &RecordBatch) -> Result<&StringArray> {
    batch
        .column_by_name(col::SERVICE)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| crate::Error::Corrupt("service column missing".into()))
}

/// Each service of `batches` with its rank in byte order.
fn service_ranks(batches: &[RecordBatch]) -> Result<HashMap<&str, u32>> {
    let mut names = BTreeSet::new();
    for batch in batches {
        names.extend(service_column(batch)?.iter().flatten());
    }
    Ok(names.into_iter().zip(0..).collect())
}

/// Writes unsorted head batches as a block sorted by `order`. Only an index of 36 bytes
/// per row is sorted; rows are gathered one row group at a time, so the
/// memory this needs beyond the input is one row group, not a second copy of it all.
/// CPU-heavy: call from `spawn_blocking`.
pub fn write_block_from_batches(
    blocks_dir: &Path,
    id: u64,
    batches: &[RecordBatch],
    row_group_rows: usize,
    order: BlockOrder,
    level: u32,
    wal_seq: u64,
) -> Result<BlockMeta> {
    let ranks = match order {
        BlockOrder::Service => Some(service_ranks(batches)?),
        BlockOrder::Trace => None,
    };
    let mut keys: Vec<RowKey> = Vec::with_capacity(row_count(batches));
    for (b, batch) in batches.iter().enumerate() {
        let (ids, starts) = trace_id_and_start(batch)?;
        let services = service_column(batch)?;
        for r in 0..batch.num_rows() {
            let rank = ranks.as_ref().map_or(0, |ranks| {
                ranks.get(services.value(r)).copied().unwrap_or(u32::MAX)
            });
            keys.push((
                rank,
                trace_id_at(ids, r)?,
                starts.value(r),
                b as u32,
                r as u32,
            ));
        }
    }
    keys.sort_unstable();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let chunks = keys.chunks(CHUNK_ROWS).map(|chunk| {
        let indices: Vec<(usize, usize)> = chunk
            .iter()
            .map(|&(_, _, _, b, r)| (b as usize, r as usize))
            .collect();
        Ok(interleave_record_batch(&refs, &indices)?)
    });
    let shape = BlockShape {
        expected_rows: keys.len(),
        row_group_rows,
        level,
        wal_seq,
        zstd_level: FLUSH_ZSTD_LEVEL,
    };
    write_sorted_block(blocks_dir, id, chunks, &shape)
}

/// Merges blocks that are each sorted by `order` into one sorted block, streaming: it
/// holds one small batch per input and one row group of output. (Inputs written in
/// another order, before `block_order` changed, come out complete, merely less well
/// ordered.)
/// CPU-heavy: call from `spawn_blocking`.
pub fn merge_blocks(
    blocks_dir: &Path,
    id: u64,
    inputs: &[PathBuf],
    total_rows: usize,
    row_group_rows: usize,
    order: BlockOrder,
    level: u32,
) -> Result<BlockMeta> {
    let merged = MergedRows::open(inputs, CHUNK_ROWS, order)?;
    // Larger row groups in compacted blocks: each row group carries its own dictionary
    // of attribute entries, so fewer, larger groups store it fewer times. The page index
    // still narrows a trace lookup to a few pages.
    let shape = BlockShape {
        expected_rows: total_rows,
        row_group_rows: row_group_rows.saturating_mul(MERGE_ROW_GROUP_FACTOR),
        level,
        wal_seq: 0,
        zstd_level: MERGE_ZSTD_LEVEL,
    };
    write_sorted_block(blocks_dir, id, merged, &shape)
}

/// One input of a merge: a block read batch by batch.
struct MergeInput {
    reader: ParquetRecordBatchReader,
    /// Slot in `MergedRows::live` of the batch being read, and the row within it.
    current: Option<(usize, usize)>,
    /// Service of the current row with [`BlockOrder::Service`] (else empty), shared
    /// with its heap entry: rows arrive grouped by service, so this is allocated once
    /// per service, not per row.
    service: Arc<str>,
}

/// Merge order of one input's current row: service, trace id, start, input.
type MergeKey = (Arc<str>, [u8; 16], i64, usize);

/// The sorted output chunks of a k-way merge.
struct MergedRows {
    inputs: Vec<MergeInput>,
    live: Vec<Option<RecordBatch>>,
    heap: BinaryHeap<Reverse<MergeKey>>,
    chunk_rows: usize,
    order: BlockOrder,
}

impl MergedRows {
    fn open(paths: &[PathBuf], chunk_rows: usize, order: BlockOrder) -> Result<Self> {
        let mut merged = MergedRows {
            inputs: Vec::with_capacity(paths.len()),
            live: Vec::new(),
            heap: BinaryHeap::new(),
            chunk_rows,
            order,
        };
        for path in paths {
            // Small batches: a merge holds one per input at a time. Plain strings: the
            // rows are gathered across inputs, whose dictionaries differ.
            let options = ArrowReaderOptions::new().with_schema(span_schema());
            let reader =
                ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(path)?, options)?
                    .with_batch_size(MERGE_BATCH_ROWS)
                    .build()?;
            merged.inputs.push(MergeInput {
                reader,
                current: None,
                service: Arc::from(""),
            });
            merged.advance_batch(merged.inputs.len() - 1)?;
        }
        Ok(merged)
    }

    /// Loads the next non-empty batch of `input` and pushes its first row's key.
    fn advance_batch(&mut self, input: usize) -> Result<()> {
        loop {
            match self.inputs[input].reader.next() {
                None => {
                    self.inputs[input].current = None;
                    return Ok(());
                }
                Some(batch) => {
                    let batch = RecordBatch::try_new(span_schema(), batch?.columns().to_vec())?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    self.live.push(Some(batch));
                    self.inputs[input].current = Some((self.live.len() - 1, 0));
                    return self.push_key(input);
                }
            }
        }
    }

    fn push_key(&mut self, input: usize) -> Result<()> {
        if let Some((slot, row)) = self.inputs[input].current
            && let Some(batch) = &self.live[slot]
        {
            let (ids, starts) = trace_id_and_start(batch)?;
            let input_state = &mut self.inputs[input];
            if self.order == BlockOrder::Service {
                let service = service_column(batch)?.value(row);
                if *input_state.service != *service {
                    input_state.service = Arc::from(service);
                }
            }
            let key = (
                input_state.service.clone(),
                trace_id_at(ids, row)?,
                starts.value(row),
                input,
            );
            self.heap.push(Reverse(key));
        }
        Ok(())
    }

    fn next_chunk(&mut self) -> Result<Option<RecordBatch>> {
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(self.chunk_rows);
        while indices.len() < self.chunk_rows {
            let Some(Reverse((_, _, _, input))) = self.heap.pop() else {
                break;
            };
            let Some((slot, row)) = self.inputs[input].current else {
                continue;
            };
            indices.push((slot, row));
            let rows = self.live[slot].as_ref().map_or(0, |b| b.num_rows());
            if row + 1 < rows {
                self.inputs[input].current = Some((slot, row + 1));
                self.push_key(input)?;
            } else {
                self.advance_batch(input)?;
            }
        }
        if indices.is_empty() {
            return Ok(None);
        }
        // Gather from the live batches, then release those no input reads any more.
        let empty = RecordBatch::new_empty(span_schema());
        let refs: Vec<&RecordBatch> = self
            .live
            .iter()
            .map(|b| b.as_ref().unwrap_or(&empty))
            .collect();
        let chunk = interleave_record_batch(&refs, &indices)?;
        let in_use: Vec<usize> = self
            .inputs
            .iter()
            .filter_map(|i| i.current.map(|(slot, _)| slot))
            .collect();
        for (slot, batch) in self.live.iter_mut().enumerate() {
            if !in_use.contains(&slot) {
                *batch = None;
            }
        }
        Ok(Some(chunk))
    }
}

impl Iterator for MergedRows {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
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

/// Writes already-sorted chunks as block `id` (to a temporary
/// name, synced, then renamed, so a crash never leaves a half block under a real name).
/// How a block is written.
#[derive(Clone, Copy)]
struct BlockShape {
    expected_rows: usize,
    row_group_rows: usize,
    level: u32,
    wal_seq: u64,
    zstd_level: i32,
}

fn write_sorted_block(
    blocks_dir: &Path,
    id: u64,
    chunks: impl Iterator<Item = Result<RecordBatch>>,
    shape: &BlockShape,
) -> Result<BlockMeta> {
    let BlockShape {
        expected_rows,
        row_group_rows,
        level,
        wal_seq,
        zstd_level,
    } = *shape;
    let file_name = block_file_name(id);
    let tmp = blocks_dir.join(format!("{file_name}.tmp"));
    let file = File::create(&tmp)?;
    let mut props = writer_properties(expected_rows, row_group_rows, zstd_level);
    // The rows are written as plain strings; the schema readers see by default is the
    // stored one, with the attribute lists as dictionary keys (see `stored_schema`).
    add_encoded_arrow_schema_to_metadata(&stored_schema(), &mut props);
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let mut writer = ArrowWriter::try_new_with_options(file, span_schema(), options)?;
    let (mut min_start, mut max_start, mut rows) = (i64::MAX, i64::MIN, 0u64);
    let mut keys: Vec<u64> = Vec::with_capacity(expected_rows);
    for chunk in chunks {
        let chunk = chunk?;
        let (ids, _) = trace_id_and_start(&chunk)?;
        keys.extend((0..ids.len()).map(|i| trace_key(ids.value(i))));
        let (lo, hi) = start_range(&chunk);
        min_start = min_start.min(lo);
        max_start = max_start.max(hi);
        rows += chunk.num_rows() as u64;
        // Chunks arrive sorted, so every row group the writer closes is sorted too.
        writer.write(&chunk)?;
    }
    let file = writer.into_inner()?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    // The sidecar first: a block under its real name always has its trace id set.
    let trace_ids = TraceIdSet::from_keys(keys);
    trace_ids.write(&sidecar_path(&blocks_dir.join(&file_name)))?;
    fs::rename(&tmp, blocks_dir.join(&file_name))?;
    if let Ok(dir) = File::open(blocks_dir) {
        let _ = dir.sync_all();
    }
    if rows == 0 {
        (min_start, max_start) = (0, 0);
    }
    Ok(BlockMeta {
        id,
        file_name,
        min_start,
        max_start,
        rows,
        bytes,
        level,
        wal_seq,
        trace_ids: Arc::new(trace_ids),
    })
}

/// Rows in a batch list.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}
