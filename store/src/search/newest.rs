//! What trace search keeps of the rows its plan hands out, per partition: the newest
//! rows ([`TopRows`]), or the newest start of every trace ([`PerTrace`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryArray, PrimitiveArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use datafusion_execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use foldhash::{HashMap, HashMapExt};

use super::plan::table_bytes;
use crate::schema::col as c;
use crate::{Error, Result};

/// A trace id and a span start, Unix ns.
pub(super) type Row = ([u8; 16], i64);

/// The `k` newest rows seen; of rows that started at the same time, those with the
/// smaller trace ids (as [`TopRows::merge`] and [`PerTrace::merge`] rank them).
pub(super) struct TopRows {
    k: usize,
    /// The least-ranked row on top: the oldest, the largest id of the oldest.
    heap: BinaryHeap<Reverse<(i64, Reverse<[u8; 16]>)>>,
}

impl TopRows {
    pub(super) fn new(k: usize) -> Self {
        TopRows {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)),
        }
    }

    pub(super) fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        let (ids, starts) = columns(batch)?;
        for (row, start) in starts.values().iter().enumerate() {
            let full = self.heap.len() == self.k;
            if full
                && self
                    .heap
                    .peek()
                    .is_none_or(|Reverse((least, _))| start < least)
            {
                continue;
            }
            let ranked = (*start, Reverse(trace_id(ids, row)?));
            if full
                && self
                    .heap
                    .peek()
                    .is_none_or(|Reverse(least)| ranked <= *least)
            {
                continue;
            }
            self.heap.push(Reverse(ranked));
            if self.heap.len() > self.k {
                self.heap.pop();
            }
        }
        Ok(())
    }

    /// The `k` newest rows of all the partitions', newest first.
    pub(super) fn merge(parts: Vec<TopRows>, k: usize) -> Vec<Row> {
        let mut rows: Vec<Row> = parts
            .into_iter()
            .flat_map(|part| {
                part.heap
                    .into_iter()
                    .map(|Reverse((t, Reverse(id)))| (id, t))
            })
            .collect();
        newest_first(&mut rows, k);
        rows
    }
}

/// Bytes of a trace's entry in [`PerTrace`]'s table: its id and newest start.
const ENTRY_BYTES: usize = 16 + 8;

/// The newest start of every trace seen, its memory taken from the queries' bound.
pub(super) struct PerTrace {
    newest: HashMap<[u8; 16], i64>,
    reservation: MemoryReservation,
}

impl PerTrace {
    pub(super) fn new(pool: &Arc<dyn MemoryPool>) -> Self {
        PerTrace {
            newest: HashMap::new(),
            reservation: MemoryConsumer::new("trace search").register(pool),
        }
    }

    pub(super) fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        let (ids, starts) = columns(batch)?;
        // Taken from the bound before the table grows.
        let bytes = table_bytes(self.newest.len() + batch.num_rows(), ENTRY_BYTES);
        if bytes > self.reservation.size() {
            self.reservation.try_resize(bytes)?;
        }
        self.newest.reserve(batch.num_rows());
        for (row, start) in starts.values().iter().enumerate() {
            let newest = self.newest.entry(trace_id(ids, row)?).or_insert(*start);
            *newest = (*newest).max(*start);
        }
        Ok(())
    }

    /// The `limit` traces with the newest starts of all the partitions', newest first;
    /// the table it grows and the list it ranks taken from the bound first.
    pub(super) fn merge(parts: Vec<PerTrace>, limit: usize) -> Result<Vec<Row>> {
        let mut parts = parts.into_iter();
        let Some(mut all) = parts.next() else {
            return Ok(Vec::new());
        };
        for part in parts {
            let bytes = table_bytes(all.newest.len() + part.newest.len(), ENTRY_BYTES);
            if bytes > all.reservation.size() {
                all.reservation.try_resize(bytes)?;
            }
            all.newest.reserve(part.newest.len());
            for (id, t) in part.newest {
                let newest = all.newest.entry(id).or_insert(t);
                *newest = (*newest).max(t);
            }
        }
        all.reservation
            .try_grow(all.newest.len() * std::mem::size_of::<Row>())?;
        let mut ranked: Vec<Row> = all.newest.drain().collect();
        newest_first(&mut ranked, limit);
        Ok(ranked)
    }
}

/// Sorts `rows` newest first, smaller trace ids first among rows that started at the
/// same time, and keeps the first `k`.
fn newest_first(rows: &mut Vec<Row>, k: usize) {
    rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(k);
}

/// A batch's trace ids and starts.
fn columns(batch: &RecordBatch) -> Result<(&FixedSizeBinaryArray, &PrimitiveArray<Int64Type>)> {
    let ids = column(batch, c::TRACE_ID)?;
    let ids = ids
        .as_fixed_size_binary_opt()
        .ok_or_else(|| wrong_type(c::TRACE_ID, ids.data_type(), "FixedSizeBinary(16)"))?;
    let starts = column(batch, c::START)?;
    let starts = starts
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| wrong_type(c::START, starts.data_type(), "Int64"))?;
    if ids.null_count() > 0 || starts.null_count() > 0 {
        return Err(Error::Corrupt(
            "a search's row without a trace id or start".into(),
        ));
    }
    Ok((ids, starts))
}

fn trace_id(ids: &FixedSizeBinaryArray, row: usize) -> Result<[u8; 16]> {
    ids.value(row).try_into().map_err(|_| {
        Error::Corrupt(format!(
            "a trace id of {} bytes, not 16",
            ids.value_length()
        ))
    })
}

/// The column `name` of a batch a search's plan handed out.
pub(super) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Corrupt(format!("a search's rows lack column {name}")))
}

/// A search's column read as another type than the store writes.
pub(super) fn wrong_type(column: &str, found: &DataType, expected: &str) -> Error {
    Error::Corrupt(format!("column {column} read as {found}, not {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{FixedSizeBinaryArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion_execution::memory_pool::GreedyMemoryPool;

    fn batch(rows: &[(u8, i64)]) -> RecordBatch {
        let ids =
            FixedSizeBinaryArray::try_from_iter(rows.iter().map(|(id, _)| [*id; 16])).unwrap();
        let starts = Int64Array::from_iter_values(rows.iter().map(|(_, t)| *t));
        let schema = Schema::new(vec![
            Field::new(c::TRACE_ID, DataType::FixedSizeBinary(16), false),
            Field::new(c::START, DataType::Int64, false),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(starts)]).unwrap()
    }

    #[test]
    fn top_rows_keep_the_newest_across_partitions() {
        let mut first = TopRows::new(3);
        first
            .push(&batch(&[(1, 10), (2, 50), (3, 30), (4, 40)]))
            .unwrap();
        first.push(&batch(&[(5, 5), (6, 45)])).unwrap();
        let mut second = TopRows::new(3);
        second.push(&batch(&[(7, 60), (8, 1)])).unwrap();
        let ids: Vec<u8> = TopRows::merge(vec![first, second], 3)
            .iter()
            .map(|(id, _)| id[0])
            .collect();
        assert_eq!(ids, [7, 2, 6]);
    }

    #[test]
    fn ties_keep_the_smaller_ids_in_each_partition_and_the_merge() {
        let mut top = TopRows::new(2);
        top.push(&batch(&[(9, 5), (3, 5), (7, 5), (1, 4)])).unwrap();
        let ids: Vec<u8> = TopRows::merge(vec![top], 2)
            .iter()
            .map(|(id, _)| id[0])
            .collect();
        assert_eq!(ids, [3, 7]);
    }

    #[test]
    fn per_trace_ranks_by_the_newest_start() {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1 << 20));
        let mut first = PerTrace::new(&pool);
        first.push(&batch(&[(1, 10), (2, 20), (1, 70)])).unwrap();
        let mut second = PerTrace::new(&pool);
        second.push(&batch(&[(2, 80), (3, 30)])).unwrap();
        let ranked = PerTrace::merge(vec![first, second], 2).unwrap();
        assert_eq!(ranked, [([2; 16], 80), ([1; 16], 70)]);
    }

    #[test]
    fn per_trace_fails_over_the_memory_bound() {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(64));
        let mut traces = PerTrace::new(&pool);
        let rows: Vec<(u8, i64)> = (0..20).map(|i| (i, i64::from(i))).collect();
        let err = traces.push(&batch(&rows)).unwrap_err();
        assert!(err.is_out_of_memory(), "{err}");
    }
}
