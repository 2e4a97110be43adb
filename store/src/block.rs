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
//!
//! Flushes and merges write a block one column chunk at a time ([`write_columns`]), and
//! a merge reads one column of each input at a time: what they hold at once is one
//! column's worth, not one row group's.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::ArrayRef;
use arrow::array::{Array, AsArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::interleave;
use arrow::datatypes::Int64Type;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, RowSelection, RowSelector};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use std::ops::Range;

use crate::Result;
use crate::config::BlockOrder;

pub(crate) mod checksum;
mod step;

use step::leaves_per_column;
use crate::schema::{ENTRY_COLUMNS, col, fetch_schema, span_schema, stored_schema};
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
/// them within a minute and ingest waits for nothing else. They keep their dictionaries:
/// without them (LZ4 alone) max-rate ingest was 10 % faster, but a tag search over
/// flushed blocks took three times as long, and the newest spans are what searches
/// look at most.
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

/// Rows of one column gathered per `interleave`: the transient copy a flush or merge
/// makes at once. It only bounds memory; it does not shape the file.
const CHUNK_ROWS: usize = 8192;

/// Rows of one column each merge input decodes at a time: a merge holds one such batch
/// per input (up to [`crate::compaction::MAX_MERGE_INPUTS`]).
const MERGE_BATCH_ROWS: usize = 512;

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
/// per row is sorted; the block is then written one column at a time (see
/// [`write_columns`]), so the memory this needs beyond the input is one column chunk.
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
    let rows = RowsInOrder {
        trace_keys: keys.iter().map(|k| trace_key(&k.1)).collect(),
        start_range: start_range_of(keys.iter().map(|k| k.2)),
    };
    let mut source = HeadColumns {
        batches,
        order: keys
            .iter()
            .map(|&(_, _, _, b, r)| (b as usize, r as usize))
            .collect(),
    };
    drop(keys);
    let shape = BlockShape {
        row_group_rows,
        level,
        wal_seq,
        zstd_level: FLUSH_ZSTD_LEVEL,
    };
    write_columns(blocks_dir, id, &mut source, rows, &shape)
}

/// Merges blocks that are each sorted by `order` into one sorted block, streaming and
/// one column at a time: it first merges the inputs' sort keys alone, then writes each
/// column by reading that column of every input in small batches (see
/// [`MergeColumns`]). It holds the keys (about 26 bytes per row), one batch of one
/// column per input and one column chunk of output. (Inputs written in another order,
/// before `block_order` changed, come out complete, merely less well ordered.)
/// CPU-heavy: call from `spawn_blocking`.
pub fn merge_blocks(
    blocks_dir: &Path,
    id: u64,
    inputs: &[PathBuf],
    row_group_rows: usize,
    order: BlockOrder,
    level: u32,
) -> Result<BlockMeta> {
    let never = Arc::new(AtomicBool::new(false));
    merge_blocks_unless(blocks_dir, id, inputs, row_group_rows, order, level, never)
}

/// [`merge_blocks`], given up as soon as `stop` is set (checked before each column of
/// each row group): [`crate::Error::Closed`], and no output left behind.
pub fn merge_blocks_unless(
    blocks_dir: &Path,
    id: u64,
    inputs: &[PathBuf],
    row_group_rows: usize,
    order: BlockOrder,
    level: u32,
    stop: Arc<AtomicBool>,
) -> Result<BlockMeta> {
    let (mut source, rows) = MergeColumns::open(inputs, order, stop)?;
    // Larger row groups in compacted blocks: each row group carries its own dictionary
    // of attribute entries, so fewer, larger groups store it fewer times. The page index
    // still narrows a trace lookup to a few pages.
    let shape = BlockShape {
        row_group_rows: row_group_rows.saturating_mul(MERGE_ROW_GROUP_FACTOR),
        level,
        wal_seq: 0,
        zstd_level: MERGE_ZSTD_LEVEL,
    };
    write_columns(blocks_dir, id, &mut source, rows, &shape)
}

/// What a block's writer knows of its rows before writing them: the key of each row's
/// trace id (for the sidecar set) and the range of start times, in output order.
struct RowsInOrder {
    trace_keys: Vec<u64>,
    start_range: (i64, i64),
}

fn start_range_of(starts: impl Iterator<Item = i64>) -> (i64, i64) {
    starts.fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)))
}

/// The rows of a block being written, handed out one top-level column at a time.
trait ColumnSource {
    /// Calls `out` with the values of top-level column `column` for the output rows
    /// `rows`, in order, in arrays of at most [`CHUNK_ROWS`] rows.
    fn column(
        &mut self,
        column: usize,
        rows: Range<usize>,
        out: &mut dyn FnMut(ArrayRef) -> Result<()>,
    ) -> Result<()>;

    /// The span table as [`ColumnSource::column`] hands it out (strings or views).
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        span_schema()
    }
}

/// Head batches and the sorted order of their rows.
struct HeadColumns<'a> {
    batches: &'a [RecordBatch],
    /// (batch, row) of each output row.
    order: Vec<(usize, usize)>,
}

impl ColumnSource for HeadColumns<'_> {
    fn column(
        &mut self,
        column: usize,
        rows: Range<usize>,
        out: &mut dyn FnMut(ArrayRef) -> Result<()>,
    ) -> Result<()> {
        let arrays: Vec<&dyn Array> = self
            .batches
            .iter()
            .map(|b| b.column(column).as_ref())
            .collect();
        for chunk in self.order[rows].chunks(CHUNK_ROWS) {
            out(interleave(&arrays, chunk)?)?;
        }
        Ok(())
    }
}

/// The inputs of a merge, read one column at a time in merged order.
struct MergeColumns {
    inputs: Vec<(File, ArrowReaderMetadata)>,
    /// The inputs' paths, which errors reading them name.
    paths: Vec<PathBuf>,
    /// Input of each output row. Each input's rows are taken in their stored order, so
    /// this alone says which row comes next.
    source: Vec<u16>,
    /// The runs of the row group being written, shared by its columns.
    runs: Runs,
    /// Set when the merge is to be given up (the store is shutting down).
    stop: Arc<AtomicBool>,
}

/// For the output rows `rows`: how many rows of each input come before them (`skip`)
/// and how many of each they hold (`take`).
#[derive(Default)]
struct Runs {
    rows: Range<usize>,
    skip: Vec<usize>,
    take: Vec<usize>,
}

impl Runs {
    /// Moves to `rows`: counted once per row group, not once per column, and from the
    /// previous row group when it is the next one.
    fn of(&mut self, source: &[u16], inputs: usize, rows: Range<usize>) -> &Runs {
        if self.rows == rows && self.skip.len() == inputs {
            return self;
        }
        if rows.start == self.rows.end && self.skip.len() == inputs {
            for (skip, take) in self.skip.iter_mut().zip(&self.take) {
                *skip += take;
            }
        } else {
            self.skip = vec![0; inputs];
            for &input in &source[..rows.start] {
                self.skip[usize::from(input)] += 1;
            }
        }
        self.take = vec![0; inputs];
        for &input in &source[rows.clone()] {
            self.take[usize::from(input)] += 1;
        }
        self.rows = rows;
        self
    }
}

impl MergeColumns {
    /// Reads the sort keys of every input and merges them.
    fn open(
        paths: &[PathBuf],
        order: BlockOrder,
        stop: Arc<AtomicBool>,
    ) -> Result<(Self, RowsInOrder)> {
        if paths.len() > usize::from(u16::MAX) {
            return Err(crate::Error::Corrupt(format!(
                "a merge of {} blocks is more than one can hold",
                paths.len()
            )));
        }
        // The attribute lists as string views into each row group's dictionary page (the
        // inputs' dictionaries differ): a gather copies views, not the entries' bytes.
        let options = ArrowReaderOptions::new().with_schema(fetch_schema());
        let schema = span_schema();
        let mut key_columns = vec![
            index_of(&schema, col::TRACE_ID)?,
            index_of(&schema, col::START)?,
        ];
        if order == BlockOrder::Service {
            key_columns.push(index_of(&schema, col::SERVICE)?);
        }
        // A projection hands columns out in schema order.
        key_columns.sort_unstable();
        let mut inputs = Vec::with_capacity(paths.len());
        let mut keys: Vec<RecordBatch> = Vec::with_capacity(paths.len());
        for path in paths {
            let read_keys = || -> Result<_> {
                let file = File::open(path)?;
                let metadata = ArrowReaderMetadata::load(&file, options.clone())?;
                // Damage that still decodes would be merged as data: the checksum first.
                checksum::verify_file(path, metadata.metadata())?;
                let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
                    file.try_clone()?,
                    metadata.clone(),
                );
                let mask =
                    ProjectionMask::roots(builder.parquet_schema(), key_columns.iter().copied());
                let reader = builder
                    .with_projection(mask)
                    .with_batch_size(KEY_BATCH_ROWS)
                    .build()?;
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                let projected = Arc::new(schema.project(&key_columns)?);
                let keys = arrow::compute::concat_batches(&projected, &batches)?;
                // Checked here, where a bad column names its block.
                trace_id_and_start(&keys)?;
                if order == BlockOrder::Service {
                    service_column(&keys)?;
                }
                Ok((file, metadata, keys))
            };
            let (file, metadata, batch) = read_keys().map_err(crate::Error::in_block(path))?;
            keys.push(batch);
            inputs.push((file, metadata));
        }
        let total: usize = keys.iter().map(RecordBatch::num_rows).sum();
        let mut columns = Vec::with_capacity(keys.len());
        for batch in &keys {
            let (ids, starts) = trace_id_and_start(batch)?;
            let services = match order {
                BlockOrder::Service => Some(service_column(batch)?),
                BlockOrder::Trace => None,
            };
            columns.push((ids, starts, services));
        }
        let key_at = |input: usize, row: usize| -> Result<MergeKey<'_>> {
            let (ids, starts, services) = &columns[input];
            Ok(MergeKey {
                service: services.map(|s| s.value(row)),
                trace_id: u128::from_be_bytes(trace_id_at(ids, row)?),
                start: starts.value(row),
                input,
            })
        };
        let mut heap = BinaryHeap::with_capacity(keys.len());
        for (input, batch) in keys.iter().enumerate() {
            if batch.num_rows() > 0 {
                heap.push(Reverse((key_at(input, 0)?, 0usize)));
            }
        }
        let mut source = Vec::with_capacity(total);
        let mut trace_keys = Vec::with_capacity(total);
        let mut start_range = (i64::MAX, i64::MIN);
        while let Some(Reverse((mut key, mut row))) = heap.pop() {
            let input = key.input;
            let rows = keys[input].num_rows();
            // Rows of one input come out in a run while they sort before every other
            // input's next row (a trace's spans sit together): one comparison each,
            // no heap operation.
            loop {
                source.push(input as u16);
                trace_keys.push(trace_key(&key.trace_id.to_be_bytes()));
                start_range = (start_range.0.min(key.start), start_range.1.max(key.start));
                row += 1;
                if row == rows {
                    break;
                }
                let next = key_at(input, row)?;
                match heap.peek() {
                    Some(Reverse((other, _))) if *other < next => {
                        heap.push(Reverse((next, row)));
                        break;
                    }
                    _ => key = next,
                }
            }
        }
        Ok((
            MergeColumns {
                inputs,
                paths: paths.to_vec(),
                source,
                runs: Runs::default(),
                stop,
            },
            RowsInOrder {
                trace_keys,
                start_range,
            },
        ))
    }
}

/// Merge order of one input's row: service (when blocks lead with it), trace id, start,
/// input. The trace id as a big-endian integer sorts as its bytes do, and compares
/// without a call to `memcmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct MergeKey<'a> {
    service: Option<&'a str>,
    trace_id: u128,
    start: i64,
    input: usize,
}

/// Rows each sort-key read decodes at a time.
const KEY_BATCH_ROWS: usize = 8192;

impl ColumnSource for MergeColumns {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        fetch_schema()
    }

    fn column(
        &mut self,
        column: usize,
        rows: Range<usize>,
        out: &mut dyn FnMut(ArrayRef) -> Result<()>,
    ) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(crate::Error::Closed);
        }
        // Each input's rows in `rows` are a run of its stored rows: skip the ones
        // taken before, read the ones taken here.
        let Runs { skip, take, .. } = self.runs.of(&self.source, self.inputs.len(), rows.clone());
        let (batch_rows, chunk_rows) = step::rows_per_step(&self.inputs, column);
        let mut readers = Vec::with_capacity(self.inputs.len());
        for (i, (file, metadata)) in self.inputs.iter().enumerate() {
            let reader = || -> Result<_> {
                let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
                    file.try_clone()?,
                    metadata.clone(),
                );
                let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
                let selection = RowSelection::from(vec![
                    RowSelector::skip(skip[i]),
                    RowSelector::select(take[i]),
                ]);
                Ok(builder
                    .with_projection(mask)
                    .with_row_selection(selection)
                    .with_batch_size(batch_rows)
                    .build()?)
            };
            readers.push(reader().map_err(crate::Error::in_block(&self.paths[i]))?);
        }
        // Per input: the slot in `live` of the batch being read and the row within it.
        let mut current: Vec<Option<(usize, usize)>> = vec![None; readers.len()];
        let mut live: Vec<Option<ArrayRef>> = Vec::new();
        for chunk in self.source[rows].chunks(chunk_rows) {
            let mut indices = Vec::with_capacity(chunk.len());
            for &input in chunk {
                let input = usize::from(input);
                let (slot, row) = match current[input] {
                    Some((slot, row)) if live[slot].as_ref().is_some_and(|a| row < a.len()) => {
                        (slot, row)
                    }
                    _ => {
                        let batch = match readers[input].next() {
                            Some(Ok(batch)) => batch,
                            Some(Err(e)) => {
                                return Err(crate::Error::in_block(&self.paths[input])(e));
                            }
                            None => {
                                return Err(crate::Error::in_block(&self.paths[input])(
                                    crate::Error::Corrupt("ended before its rows did".to_string()),
                                ));
                            }
                        };
                        live.push(Some(batch.column(0).clone()));
                        (live.len() - 1, 0)
                    }
                };
                indices.push((slot, row));
                current[input] = Some((slot, row + 1));
            }
            let empty = arrow::array::new_empty_array(fetch_schema().field(column).data_type());
            let arrays: Vec<&dyn Array> = live
                .iter()
                .map(|a| a.as_ref().map_or(empty.as_ref(), |a| a.as_ref()))
                .collect();
            out(interleave(&arrays, &indices)?)?;
            // Release the batches no input reads any more.
            for (slot, array) in live.iter_mut().enumerate() {
                if !current.iter().flatten().any(|&(s, _)| s == slot) {
                    *array = None;
                }
            }
        }
        Ok(())
    }
}

fn index_of(schema: &arrow::datatypes::Schema, name: &str) -> Result<usize> {
    schema
        .index_of(name)
        .map_err(|_| crate::Error::Corrupt(format!("{name} column missing")))
}

/// How a block is written.
#[derive(Clone, Copy)]
struct BlockShape {
    row_group_rows: usize,
    level: u32,
    wal_seq: u64,
    zstd_level: i32,
}

/// Writes the rows of `source` as block `id`, one row group at a time and within it one
/// top-level column at a time: each column chunk is encoded and written out before the
/// next is read, so a flush or merge holds one column chunk of output, not a whole row
/// group. The file gets a temporary name, is synced, then renamed, so a crash never
/// leaves a half block under a real name.
fn write_columns(
    blocks_dir: &Path,
    id: u64,
    source: &mut dyn ColumnSource,
    rows: RowsInOrder,
    shape: &BlockShape,
) -> Result<BlockMeta> {
    let written = write_columns_once(blocks_dir, id, source, rows, shape);
    if written.is_err() {
        // Never indexed, never renamed: what the failed write left is garbage (and on
        // a full disk, the space the next try needs).
        let file_name = block_file_name(id);
        let _ = fs::remove_file(blocks_dir.join(format!("{file_name}.tmp")));
        let _ = fs::remove_file(sidecar_path(&blocks_dir.join(&file_name)));
    }
    written
}

fn write_columns_once(
    blocks_dir: &Path,
    id: u64,
    source: &mut dyn ColumnSource,
    rows: RowsInOrder,
    shape: &BlockShape,
) -> Result<BlockMeta> {
    let BlockShape {
        row_group_rows,
        level,
        wal_seq,
        zstd_level,
    } = *shape;
    let total = rows.trace_keys.len();
    let file_name = block_file_name(id);
    let tmp = blocks_dir.join(format!("{file_name}.tmp"));
    let file = checksum::Summing::new(File::create(&tmp)?);
    let mut props = writer_properties(total, row_group_rows, zstd_level);
    // Readers see the stored schema by default, the lists as dictionary keys.
    add_encoded_arrow_schema_to_metadata(&stored_schema(), &mut props);
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let schema = source.schema();
    let (mut writer, factory) = ArrowWriter::try_new_with_options(file, schema.clone(), options)?
        .into_serialized_writer()?;
    let leaves = leaves_per_column();
    let group_rows = row_group_rows.max(1);
    for (group, start) in (0..total).step_by(group_rows).enumerate() {
        let range = start..(start + group_rows).min(total);
        let mut column_writers = factory.create_column_writers(group)?.into_iter();
        let mut row_group = writer.next_row_group()?;
        for (column, field) in schema.fields().iter().enumerate() {
            let mut writers: Vec<_> = column_writers
                .by_ref()
                .take(leaves.get(column).copied().unwrap_or(1))
                .collect();
            source.column(column, range.clone(), &mut |array| {
                for (leaf, writer) in compute_leaves(field, &array)?.iter().zip(&mut writers) {
                    writer.write(leaf)?;
                }
                Ok(())
            })?;
            for writer in writers {
                writer.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
    }
    // Everything before the footer has reached the file: its checksum goes in the footer.
    writer.flush()?;
    let checksum = writer.inner().key_value();
    writer.append_key_value_metadata(checksum);
    let file = writer.into_inner()?.into_inner();
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    // The sidecar first: a block under its real name always has its trace id set.
    let trace_ids = TraceIdSet::from_keys(rows.trace_keys);
    trace_ids.write(bytes, &sidecar_path(&blocks_dir.join(&file_name)))?;
    fs::rename(&tmp, blocks_dir.join(&file_name))?;
    if let Ok(dir) = File::open(blocks_dir) {
        let _ = dir.sync_all();
    }
    let (min_start, max_start) = if total == 0 { (0, 0) } else { rows.start_range };
    Ok(BlockMeta {
        id,
        file_name,
        min_start,
        max_start,
        rows: total as u64,
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
