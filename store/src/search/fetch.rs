//! Fetching rows by trace id straight from the Parquet blocks, without planning a
//! query: the block's page index says which pages of the trace id column can hold one
//! of the ids, a row filter on that column keeps the rows that do, and every other
//! column is read for those rows only.
//!
//! A fetch is a lookup, not a search: the per-block trace id sets already chose the
//! blocks, and the page index narrows each to a page or two. Planning it as a
//! DataFusion query (listing the files, building and optimizing a plan, reading the
//! bloom filters the id sets had made moot) cost about a fifth of a fetch's CPU.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::buffer::BooleanBuffer;
use arrow::compute::filter_record_batch;
use arrow::error::ArrowError;
use hashlink::LinkedHashMap;
use parking_lot::Mutex;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    RowFilter, RowSelection, RowSelector,
};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, RowGroupMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;

use crate::schema::{col, fetch_schema, stored_schema};
use crate::span_budget::Gathered;
use crate::{Error, Result};

/// Bytes of block metadata (footers and page indexes) kept between fetches, at most;
/// the least recently fetched block's goes first. About 30 KiB per compacted block of
/// 262,144 spans.
const METADATA_CACHE_BYTES: usize = 32 << 20;

/// Rows decoded per batch of a fetch.
const FETCH_BATCH_ROWS: usize = 8192;

/// Parquet metadata (footer and page index) of the blocks fetched from, by path, most
/// recently used last.
#[derive(Default)]
pub(super) struct BlockMetadata {
    cache: Mutex<MetadataCache>,
}

#[derive(Default)]
struct MetadataCache {
    entries: LinkedHashMap<PathBuf, Cached>,
    bytes: usize,
}

struct Cached {
    /// The file's length when it was read: blocks are immutable, but a path that came
    /// back with other contents (a data directory restored under a running query
    /// process) must not be read with stale metadata.
    file_len: u64,
    metadata: ArrowReaderMetadata,
    bytes: usize,
}

impl BlockMetadata {
    /// The block's file and metadata, loaded once per block while it stays cached.
    pub(super) fn open(&self, path: &Path) -> Result<(File, ArrowReaderMetadata)> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        {
            let mut cache = self.cache.lock();
            if let Some(cached) = cache.entries.get(path)
                && cached.file_len == file_len
            {
                let metadata = cached.metadata.clone();
                cache.entries.to_back(path);
                return Ok((file, metadata));
            }
        }
        // The attribute lists as string views (see `fetch_schema`), whether a block
        // declares them as dictionary keys or, written before that, as strings.
        let options = ArrowReaderOptions::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .with_schema(fetch_schema());
        let metadata = ArrowReaderMetadata::load(&file, options)?;
        let bytes = metadata.metadata().memory_size();
        tracing::debug!(block = %path.display(), bytes, "read block metadata");
        let mut cache = self.cache.lock();
        if let Some(old) = cache.entries.insert(
            path.to_owned(),
            Cached {
                file_len,
                metadata: metadata.clone(),
                bytes,
            },
        ) {
            cache.bytes -= old.bytes;
        }
        cache.bytes += bytes;
        while cache.bytes > METADATA_CACHE_BYTES && cache.entries.len() > 1 {
            match cache.entries.pop_front() {
                Some((_, evicted)) => cache.bytes -= evicted.bytes,
                None => break,
            }
        }
        Ok((file, metadata))
    }

    /// How many blocks' metadata is cached.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.cache.lock().entries.len()
    }

    /// Drops the metadata of block files not named in `names`.
    pub(super) fn retain_files(&self, names: &std::collections::HashSet<&str>) {
        let mut cache = self.cache.lock();
        let mut freed = 0;
        cache.entries.retain(|path, cached| {
            let live = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| names.contains(n));
            if !live {
                freed += cached.bytes;
            }
            live
        });
        cache.bytes -= freed;
    }

    /// The rows of the traces `ids` in the block at `path`, as the block's schema
    /// reads them (see [`fetch_schema`]), gathered under `max_spans`
    /// ([`Gathered`]).
    pub(super) fn block_rows(
        &self,
        path: &Path,
        ids: &[[u8; 16]],
        (max_spans, max_bytes): (usize, u64),
    ) -> Result<Gathered> {
        let mut gathered = Gathered::new(max_spans, max_bytes);
        let (file, metadata) = self.open(path)?;
        let parquet = metadata.metadata().clone();
        let Some((row_groups, selection)) = candidate_rows(&parquet, ids) else {
            return Ok(gathered);
        };
        let trace_id = stored_schema().index_of(col::TRACE_ID)?;
        let wanted = WantedIds::new(ids);
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata);
        let mask = ProjectionMask::roots(builder.parquet_schema(), [trace_id]);
        let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
            wanted.matches(batch.column(0).as_ref()).ok_or_else(|| {
                ArrowError::SchemaError("a block's trace id column is not binary".into())
            })
        });
        let reader = builder
            .with_row_groups(row_groups)
            .with_row_selection(selection)
            .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
            .with_batch_size(FETCH_BATCH_ROWS)
            .build()?;
        for batch in reader {
            gathered.push(batch?)?;
        }
        Ok(gathered)
    }
}

/// The row groups whose trace id statistics admit one of `ids`, and within them the
/// pages whose (page index) min/max admit one: `None` when no row can match. Without
/// statistics, every row is a candidate.
pub(crate) fn candidate_rows(
    parquet: &ParquetMetaData,
    ids: &[[u8; 16]],
) -> Option<(Vec<usize>, RowSelection)> {
    let leaf = parquet
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [col::TRACE_ID]);
    let mut row_groups = Vec::new();
    let mut selectors = Vec::new();
    for (index, row_group) in parquet.row_groups().iter().enumerate() {
        let stats = leaf.and_then(|leaf| row_group.column(leaf).statistics());
        if !admits(
            ids,
            stats.and_then(|s| s.min_bytes_opt()),
            stats.and_then(|s| s.max_bytes_opt()),
        ) {
            continue;
        }
        row_groups.push(index);
        page_selectors(parquet, index, row_group, leaf, ids, &mut selectors);
    }
    let selection = RowSelection::from(selectors);
    (!row_groups.is_empty() && selection.selects_any()).then_some((row_groups, selection))
}

/// Whether a column chunk or page whose trace ids lie in `min..=max` can hold one of
/// `ids`; without bounds, it can.
fn admits(ids: &[[u8; 16]], min: Option<&[u8]>, max: Option<&[u8]>) -> bool {
    match (min, max) {
        (Some(min), Some(max)) => ids.iter().any(|id| min <= &id[..] && &id[..] <= max),
        _ => true,
    }
}

/// Appends to `out` which rows of row group `index` to read: those of the pages whose
/// trace id bounds admit one of `ids`, or all of them when the block has no page index.
fn page_selectors(
    parquet: &ParquetMetaData,
    index: usize,
    row_group: &RowGroupMetaData,
    leaf: Option<usize>,
    ids: &[[u8; 16]],
    out: &mut Vec<RowSelector>,
) {
    let rows = usize::try_from(row_group.num_rows()).unwrap_or(0);
    let bounds = leaf.and_then(|leaf| parquet.column_index()?.get(index)?.get(leaf));
    let pages = leaf
        .and_then(|leaf| parquet.offset_index()?.get(index)?.get(leaf))
        .map(|o| o.page_locations());
    let (Some(ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(bounds)), Some(pages)) = (bounds, pages)
    else {
        out.push(RowSelector::select(rows));
        return;
    };
    if usize::try_from(bounds.num_pages()).ok() != Some(pages.len()) {
        out.push(RowSelector::select(rows));
        return;
    }
    let mut selectors = Vec::with_capacity(pages.len());
    for (page, location) in pages.iter().enumerate() {
        let first = usize::try_from(location.first_row_index).unwrap_or(0);
        let end = pages
            .get(page + 1)
            .and_then(|next| usize::try_from(next.first_row_index).ok())
            .unwrap_or(rows)
            .min(rows);
        let count = end.saturating_sub(first);
        if count == 0 {
            continue;
        }
        let read = !bounds.is_null_page(page)
            && admits(ids, bounds.min_value(page), bounds.max_value(page));
        selectors.push(if read {
            RowSelector::select(count)
        } else {
            RowSelector::skip(count)
        });
    }
    // Pages that do not tile the row group from its first row say nothing reliable.
    let first_is_zero = pages.first().is_some_and(|p| p.first_row_index == 0);
    if first_is_zero && selectors.iter().map(|s| s.row_count).sum::<usize>() == rows {
        out.extend(selectors);
    } else {
        out.push(RowSelector::select(rows));
    }
}

/// The trace ids a fetch wants, sorted, for testing a column of ids against them: a
/// predicate runs over every row of the candidate pages (about 100,000 rows for 20
/// ids in a compacted block), where hashing each id cost a tenth of a search.
struct WantedIds {
    sorted: Vec<u128>,
}

impl WantedIds {
    fn new(ids: &[[u8; 16]]) -> Self {
        let mut sorted: Vec<u128> = ids.iter().map(|id| u128::from_be_bytes(*id)).collect();
        sorted.sort_unstable();
        sorted.dedup();
        WantedIds { sorted }
    }

    /// Which rows of `column` hold one of the ids (nulls and ids of another width do
    /// not); `None` when it is not a column of fixed-size binary values.
    fn matches(&self, column: &dyn Array) -> Option<BooleanArray> {
        let column = column.as_fixed_size_binary_opt()?;
        let keep = BooleanBuffer::collect_bool(column.len(), |row| {
            column.is_valid(row)
                && <[u8; 16]>::try_from(column.value(row))
                    .is_ok_and(|id| self.contains(u128::from_be_bytes(id)))
        });
        Some(BooleanArray::new(keep, None))
    }

    fn contains(&self, id: u128) -> bool {
        // Most rows lie outside the wanted range: two comparisons, no search.
        self.sorted.first().is_some_and(|lowest| id >= *lowest)
            && self.sorted.last().is_some_and(|highest| id <= *highest)
            && self.sorted.binary_search(&id).is_ok()
    }
}

/// The rows of head batches that belong to the traces `ids`.
pub(super) fn head_rows(batches: &[RecordBatch], ids: &[[u8; 16]]) -> Result<Vec<RecordBatch>> {
    let wanted = WantedIds::new(ids);
    let trace_id = stored_schema().index_of(col::TRACE_ID)?;
    let mut out = Vec::new();
    for batch in batches {
        let keep = wanted
            .matches(batch.column(trace_id).as_ref())
            .ok_or_else(|| Error::Corrupt("a head batch's trace id column is not binary".into()))?;
        if keep.true_count() == 0 {
            continue;
        }
        out.push(filter_record_batch(batch, &keep)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::FixedSizeBinaryArray;

    #[test]
    fn wanted_ids_match_exactly_those_ids_in_sliced_and_nullable_columns() {
        let id = |n: u8| {
            let mut id = [0u8; 16];
            id[0] = n;
            id[15] = n;
            id
        };
        let column = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            [
                Some(id(1)),
                Some(id(2)),
                None,
                Some(id(3)),
                Some(id(9)),
                Some(id(4)),
            ]
            .into_iter()
            .map(|v| v.map(|v| v.to_vec())),
            16,
        )
        .unwrap();
        let wanted = WantedIds::new(&[id(4), id(2), id(2), id(7)]);
        let matched = |column: &dyn Array| -> Vec<bool> {
            wanted
                .matches(column)
                .unwrap()
                .iter()
                .map(|v| v.unwrap())
                .collect()
        };
        assert_eq!(matched(&column), [false, true, false, false, false, true]);
        assert_eq!(matched(&column.slice(3, 3)), [false, false, true]);
        let none = WantedIds::new(&[]);
        assert_eq!(none.matches(&column).unwrap().true_count(), 0);
        let strings = arrow::array::StringArray::from(vec!["a"]);
        assert!(wanted.matches(&strings).is_none());
    }
}
