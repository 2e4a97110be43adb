//! The span bound of one read. When the traces a read returns hold more spans than
//! it may return, the largest traces are cut, as evenly as the bound allows (a small
//! trace is never cut to make room for a large one), and each cut trace keeps its
//! earliest spans: a parent starts before its children, so what is kept is the top of
//! the tree, from the root down. Applied to the Arrow rows, before they are decoded,
//! and while they are read ([`Gathered`]), so that a read holds a few times its bound,
//! not the whole of a large trace.

use std::collections::HashMap;

use arrow::array::Array;
use arrow::array::{AsArray, BooleanArray, FixedSizeBinaryArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Int8Type, Int64Type};
use arrow::record_batch::RecordBatch;

use crate::schema::col;
use crate::{Error, Result};

/// The rows a read may return, and how many rows of each cut trace were left out.
pub struct Kept {
    /// The rows kept.
    pub batches: Vec<RecordBatch>,
    /// Trace id → rows of it left out; only cut traces are named.
    pub omitted: HashMap<[u8; 16], u64>,
}

/// One row of a trace, in the order a cut keeps rows: by start, a span without a
/// parent before one with (a child may start with its parent), then span id and
/// kind (so that exact duplicates, which a read keeps once, sit together); then
/// where it is: its batch, its row in the batch.
type Row = (i64, bool, [u8; 8], i8, u32, u32);

/// Whether two rows are one span stored twice (as at-least-once delivery can make).
fn same_span(a: &Row, b: &Row) -> bool {
    (a.0, a.2, a.3) == (b.0, b.2, b.3)
}

/// The bytes a batch's rows hold: its strings and binaries (string views by their
/// lengths, not the pages they point into), lists by their entries, eight bytes for
/// any other value.
pub(crate) fn payload_bytes(batch: &RecordBatch) -> u64 {
    batch.columns().iter().map(|c| array_bytes(c.as_ref())).sum()
}

fn array_bytes(array: &dyn Array) -> u64 {
    fn span<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> u64 {
        match (offsets.first(), offsets.last()) {
            (Some(first), Some(last)) => (last.as_usize() - first.as_usize()) as u64,
            _ => 0,
        }
    }
    match array.data_type() {
        DataType::Utf8 => span(array.as_string::<i32>().value_offsets()),
        DataType::LargeUtf8 => span(array.as_string::<i64>().value_offsets()),
        DataType::Binary => span(array.as_binary::<i32>().value_offsets()),
        DataType::LargeBinary => span(array.as_binary::<i64>().value_offsets()),
        DataType::Utf8View => view_bytes(array.as_string_view().views()),
        DataType::BinaryView => view_bytes(array.as_binary_view().views()),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let offsets = list.value_offsets();
            match (offsets.first(), offsets.last()) {
                (Some(&first), Some(&last)) => {
                    let (first, last) = (first.max(0) as usize, last.max(0) as usize);
                    let last = last.max(first);
                    array_bytes(list.values().slice(first, last - first).as_ref())
                }
                _ => 0,
            }
        }
        _ => array.len() as u64 * 8,
    }
}

/// The lengths of string or binary views (the low 32 bits of each).
fn view_bytes(views: &[u128]) -> u64 {
    views.iter().map(|&view| u64::from(view as u32)).sum()
}

/// At most `max_spans` rows of `batches`, shared between their traces.
pub fn within(batches: Vec<RecordBatch>, max_spans: usize) -> Result<Kept> {
    within_sized(batches, max_spans, &HashMap::new())
}

/// [`within`], sharing the bound by the traces' sizes in `sizes` where it names them
/// (rows a read saw, some of which it no longer holds) rather than by the rows held.
fn within_sized(
    batches: Vec<RecordBatch>,
    max_spans: usize,
    sizes: &HashMap<[u8; 16], u64>,
) -> Result<Kept> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if total <= max_spans {
        return Ok(Kept {
            batches,
            omitted: HashMap::new(),
        });
    }
    let mut rows: HashMap<[u8; 16], Vec<Row>> = HashMap::new();
    for (b, batch) in batches.iter().enumerate() {
        let ids = trace_ids(batch)?;
        let missing = |name: &str| Error::Corrupt(format!("column {name} missing"));
        let starts = batch
            .column_by_name(col::START)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| missing(col::START))?;
        let span_ids = batch
            .column_by_name(col::SPAN_ID)
            .and_then(|c| c.as_fixed_size_binary_opt())
            .ok_or_else(|| missing(col::SPAN_ID))?;
        let parents = batch
            .column_by_name(col::PARENT_SPAN_ID)
            .ok_or_else(|| missing(col::PARENT_SPAN_ID))?;
        let kinds = batch
            .column_by_name(col::KIND)
            .and_then(|c| c.as_primitive_opt::<Int8Type>())
            .ok_or_else(|| missing(col::KIND))?;
        for row in 0..batch.num_rows() {
            rows.entry(id_at(ids, row)).or_default().push((
                starts.value(row),
                parents.is_valid(row),
                span_ids.value(row).try_into().unwrap_or([0; 8]),
                kinds.value(row),
                index(b)?,
                index(row)?,
            ));
        }
    }
    // Each trace's spans in keeping order, a span stored twice once.
    for rows in rows.values_mut() {
        rows.sort_unstable();
        rows.dedup_by(|a, b| same_span(a, b));
    }
    let size = |id: &[u8; 16], rows: &[Row]| {
        sizes
            .get(id)
            .map_or(rows.len(), |&n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    let mut traces: Vec<([u8; 16], Vec<Row>)> = rows.into_iter().collect();
    traces.sort_by_key(|(id, rows)| (size(id, rows), *id));
    let sizes: Vec<usize> = traces.iter().map(|(id, rows)| size(id, rows)).collect();
    let mut keep: Vec<Vec<bool>> = batches
        .iter()
        .map(|batch| vec![false; batch.num_rows()])
        .collect();
    let mut omitted = HashMap::new();
    for (((id, mut rows), share), size) in traces
        .into_iter()
        .zip(shares(&sizes, max_spans))
        .zip(sizes.iter().copied())
    {
        if share < size {
            omitted.insert(id, (size - share) as u64);
        }
        // Held rows are never fewer than the share (see `Gathered`), but never more
        // is kept than is held.
        rows.truncate(share);
        for (_, _, _, _, b, row) in rows {
            if let Some(k) = keep
                .get_mut(b as usize)
                .and_then(|k| k.get_mut(row as usize))
            {
                *k = true;
            }
        }
    }
    let mut kept = Vec::with_capacity(batches.len());
    for (batch, keep) in batches.iter().zip(keep) {
        let filtered = filter_record_batch(batch, &BooleanArray::from(keep))?;
        if filtered.num_rows() > 0 {
            kept.push(filtered);
        }
    }
    Ok(Kept {
        batches: kept,
        omitted,
    })
}

/// Rows of a read, gathered batch by batch under its span bound. Once they hold more
/// than twice the bound they are cut to the bound (and a row per trace): a trace's share of the bound
/// only shrinks as more rows come, and the rows cut start after at least that share
/// of its rows, so [`Gathered::finish`], which shares the bound by the rows each trace
/// had (not those still held), keeps the rows a cut of all of them at once would
/// have kept.
pub struct Gathered {
    max_spans: usize,
    /// Bound on the bytes of what the rows hold ([`payload_bytes`]): a few spans of
    /// megabytes each (arrays of a million strings, hundreds of thousands of events)
    /// must not make an answer of gigabytes.
    max_bytes: u64,
    batches: Vec<RecordBatch>,
    held: usize,
    held_bytes: u64,
    /// Rows seen per trace, kept or not.
    seen: HashMap<[u8; 16], u64>,
    /// Whether rows were cut while gathering: then `seen` sizes the final cut (a
    /// span stored twice counting twice), else the rows held (each span once).
    cut: bool,
}

impl Gathered {
    /// Nothing gathered yet, under a bound of `max_spans` and of `max_bytes`.
    pub fn new(max_spans: usize, max_bytes: u64) -> Self {
        Gathered {
            max_spans,
            max_bytes,
            batches: Vec::new(),
            held: 0,
            held_bytes: 0,
            seen: HashMap::new(),
            cut: false,
        }
    }

    /// Adds `batch`'s rows.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let ids = trace_ids(&batch)?;
        for row in 0..batch.num_rows() {
            *self.seen.entry(id_at(ids, row)).or_default() += 1;
        }
        self.hold(batch)
    }

    /// Adds what `other` gathered (a block read apart), each batch as `convert`
    /// makes it.
    pub fn merge(
        &mut self,
        other: Gathered,
        convert: impl Fn(&RecordBatch) -> Result<RecordBatch>,
    ) -> Result<()> {
        for (id, n) in other.seen {
            *self.seen.entry(id).or_default() += n;
        }
        self.cut |= other.cut;
        for batch in other.batches {
            self.hold(convert(&batch)?)?;
        }
        Ok(())
    }

    fn hold(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.held += batch.num_rows();
        self.held_bytes = self.held_bytes.saturating_add(payload_bytes(&batch));
        self.batches.push(batch);
        let over_bytes = self.held_bytes > self.max_bytes.saturating_mul(2);
        if self.held > self.max_spans.saturating_mul(2) || over_bytes {
            // A row more per trace than the bound shares out: what integer shares
            // round off never cuts a row the final cut keeps. Rows as large as the
            // byte bound cuts to are cut at once.
            let bound = match self.bound() {
                bound if bound < self.max_spans => bound,
                bound => bound.saturating_add(self.seen.len()),
            };
            let kept = within(std::mem::take(&mut self.batches), bound)?;
            self.batches = kept.batches;
            self.held = self.batches.iter().map(RecordBatch::num_rows).sum();
            self.held_bytes = self.batches.iter().map(payload_bytes).sum();
            self.cut = true;
        }
        Ok(())
    }

    /// The spans an answer may hold: `max_spans`, or fewer when the rows held are
    /// larger on average than `max_bytes` shares out.
    fn bound(&self) -> usize {
        if self.held_bytes <= self.max_bytes || self.held == 0 {
            return self.max_spans;
        }
        let by_bytes = (self.held as u128 * u128::from(self.max_bytes)) / u128::from(self.held_bytes);
        self.max_spans
            .min(usize::try_from(by_bytes).unwrap_or(usize::MAX))
            .max(1)
    }

    /// At most `max_spans` of the rows, and how many of each cut trace were left out.
    pub fn finish(self) -> Result<Kept> {
        let bound = self.bound();
        if !self.cut {
            return within(self.batches, bound);
        }
        let kept = within_sized(self.batches, bound, &self.seen)?;
        let mut returned: HashMap<[u8; 16], u64> = HashMap::new();
        for batch in &kept.batches {
            let ids = trace_ids(batch)?;
            for row in 0..batch.num_rows() {
                *returned.entry(id_at(ids, row)).or_default() += 1;
            }
        }
        let omitted = self
            .seen
            .into_iter()
            .filter_map(|(id, seen)| {
                let left_out = seen.saturating_sub(returned.get(&id).copied().unwrap_or(0));
                (left_out > 0).then_some((id, left_out))
            })
            .collect();
        Ok(Kept {
            batches: kept.batches,
            omitted,
        })
    }
}

fn trace_ids(batch: &RecordBatch) -> Result<&FixedSizeBinaryArray> {
    batch
        .column_by_name(col::TRACE_ID)
        .and_then(|c| c.as_fixed_size_binary_opt())
        .ok_or_else(|| Error::Corrupt(format!("column {} missing", col::TRACE_ID)))
}

fn id_at(ids: &FixedSizeBinaryArray, row: usize) -> [u8; 16] {
    ids.value(row).try_into().unwrap_or([0; 16])
}

fn index(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| Error::Corrupt(format!("a read of more than {} rows", u32::MAX)))
}

/// How many of each trace's `sizes` (ascending) rows fit in `budget`: every trace
/// gets an equal share of what is left, a trace smaller than its share all of itself,
/// and what it leaves goes to the larger ones.
pub fn shares(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut left = budget;
    let mut out = Vec::with_capacity(sizes.len());
    for (i, &size) in sizes.iter().enumerate() {
        let share = (left / (sizes.len() - i)).min(size);
        left -= share;
        out.push(share);
    }
    // What integer division left over goes to the cut traces, one row each.
    for (share, &size) in out.iter_mut().zip(sizes).rev() {
        if left == 0 {
            break;
        }
        if *share < size {
            *share += 1;
            left -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{FixedSizeBinaryArray, Int8Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn shares_cut_only_what_does_not_fit_and_as_evenly_as_they_can() {
        assert_eq!(shares(&[1, 2, 3], 10), vec![1, 2, 3]);
        assert_eq!(shares(&[1, 2, 100], 10), vec![1, 2, 7]);
        assert_eq!(shares(&[50, 60, 100], 90), vec![30, 30, 30]);
        assert_eq!(shares(&[5, 60, 100], 90), vec![5, 42, 43]);
        assert_eq!(shares(&[100, 100, 100], 100), vec![33, 33, 34]);
        assert_eq!(shares(&[3, 3], 0), vec![0, 0]);
        assert_eq!(shares(&[], 5), Vec::<usize>::new());
        for (sizes, budget) in [(vec![7, 9, 13, 40], 50), (vec![1, 1, 1, 1000], 7)] {
            let got = shares(&sizes, budget);
            let want = budget.min(sizes.iter().sum());
            assert_eq!(got.iter().sum::<usize>(), want, "{sizes:?} {budget}");
            assert!(got.iter().zip(&sizes).all(|(g, s)| g <= s));
        }
    }

    /// Rows of (trace, start): span id from the start, every span a child.
    fn batch(rows: &[(u8, i64)]) -> RecordBatch {
        spans(
            &rows
                .iter()
                .map(|&(t, s)| (t, s, s, true))
                .collect::<Vec<_>>(),
        )
    }

    /// Rows of (trace, start, span id, has a parent).
    fn spans(rows: &[(u8, i64, i64, bool)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(col::TRACE_ID, DataType::FixedSizeBinary(16), false),
            Field::new(col::START, DataType::Int64, false),
            Field::new(col::SPAN_ID, DataType::FixedSizeBinary(8), false),
            Field::new(col::PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
            Field::new(col::KIND, DataType::Int8, false),
        ]);
        let ids = FixedSizeBinaryArray::try_from_iter(rows.iter().map(|r| [r.0; 16])).unwrap();
        let starts = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        let span_ids =
            FixedSizeBinaryArray::try_from_iter(rows.iter().map(|r| r.2.to_be_bytes())).unwrap();
        let parents = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            rows.iter().map(|r| r.3.then_some([7u8; 8])),
            8,
        )
        .unwrap();
        let kinds = Int8Array::from_iter_values(rows.iter().map(|_| 2));
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(ids),
            Arc::new(starts),
            Arc::new(span_ids),
            Arc::new(parents),
            Arc::new(kinds),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    /// A span stored twice counts once: a trace whose distinct spans fit is not cut,
    /// and one that is cut says how many distinct spans were left out.
    #[test]
    fn a_span_stored_twice_counts_once() {
        let four: Vec<(u8, i64)> = (0..4).map(|i| (1u8, i)).collect();
        let twice = vec![batch(&four), batch(&four)];
        let kept = within(twice.clone(), 5).unwrap();
        assert_eq!(rows(&kept), four);
        assert!(kept.omitted.is_empty());
        let cut = within(twice, 3).unwrap();
        assert_eq!(rows(&cut), four[..3]);
        assert_eq!(cut.omitted, HashMap::from([([1; 16], 1)]));
    }

    /// A root and its child that start together: the root is kept.
    #[test]
    fn a_root_is_kept_before_a_child_that_starts_with_it() {
        let tied = spans(&[(1, 10, 1, true), (1, 10, 2, false), (1, 11, 3, true)]);
        let kept = within(vec![tied], 1).unwrap();
        let span_ids = kept.batches[0].column(2).as_fixed_size_binary();
        assert_eq!(span_ids.value(0), 2i64.to_be_bytes());
    }

    fn rows(kept: &Kept) -> Vec<(u8, i64)> {
        let mut out = Vec::new();
        for b in &kept.batches {
            let ids = b.column(0).as_fixed_size_binary();
            let starts = b.column(1).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                out.push((ids.value(r)[0], starts.value(r)));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_read_over_the_bound_keeps_the_earliest_spans_of_the_largest_trace() {
        // Trace 1: 2 spans; trace 2: 6 spans over two batches, out of order.
        let batches = vec![
            batch(&[(2, 50), (1, 10), (2, 20), (2, 60)]),
            batch(&[(2, 5), (1, 11), (2, 40), (2, 30)]),
        ];
        let kept = within(batches.clone(), 5).unwrap();
        assert_eq!(
            rows(&kept),
            vec![(1, 10), (1, 11), (2, 5), (2, 20), (2, 30)]
        );
        assert_eq!(kept.omitted, HashMap::from([([2; 16], 3)]));

        let all = within(batches, 8).unwrap();
        assert_eq!(rows(&all).len(), 8);
        assert!(all.omitted.is_empty());
    }

    /// `batch`'s rows, each with a string of `bytes` bytes beside.
    fn heavy(rows: &[(u8, i64)], bytes: usize) -> RecordBatch {
        let plain = batch(rows);
        let mut fields: Vec<Field> = plain.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("attributes", DataType::Utf8, false));
        let mut columns = plain.columns().to_vec();
        let text = "x".repeat(bytes);
        columns.push(Arc::new(arrow::array::StringArray::from_iter_values(rows.iter().map(|_| text.as_str()))));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    /// Rows of a megabyte each are cut by bytes, however few spans they are: the
    /// earliest spans of each trace, about the byte bound's worth, while they are read
    /// and at the end, with the rows left out counted.
    #[test]
    fn a_read_of_large_spans_is_cut_to_the_byte_bound() {
        let mut gathered = Gathered::new(50_000, 3 << 20);
        for start in 0..4 {
            gathered.push(heavy(&[(1, start), (2, start)], 1 << 20)).unwrap();
            assert!(gathered.held_bytes <= 7 << 20, "held {} bytes", gathered.held_bytes);
        }
        let kept = gathered.finish().unwrap();
        let bytes: u64 = kept.batches.iter().map(payload_bytes).sum();
        assert!((2 << 20..=4 << 20).contains(&bytes), "kept {bytes} bytes");
        assert_eq!(rows(&kept), vec![(1, 0), (2, 0)]);
        assert_eq!(kept.omitted, HashMap::from([([1; 16], 3), ([2; 16], 3)]));

        // Under the byte bound, the span bound alone applies.
        let mut gathered = Gathered::new(50_000, 64 << 20);
        gathered.push(heavy(&[(1, 0), (2, 0), (2, 1)], 1 << 20)).unwrap();
        assert_eq!(rows(&gathered.finish().unwrap()).len(), 3);
    }

    /// A cut while gathering can leave a small and a large trace the same size held:
    /// the final cut still shares by what each had, as one cut of every row does.
    #[test]
    fn the_final_cut_shares_by_the_rows_each_trace_had() {
        let mut rows_in: Vec<(u8, i64)> = (0..40).map(|i| (1u8, i)).collect();
        rows_in.extend((0..3).map(|i| (2u8, 100 + i)));
        let mut gathered = Gathered::new(3, u64::MAX);
        gathered.push(batch(&rows_in)).unwrap();
        let got = gathered.finish().unwrap();
        // Held 3 and 2 after the cut to 5; had 40 and 3: the large one gets 2.
        assert_eq!(rows(&got), vec![(1, 0), (1, 1), (2, 100)]);
        assert_eq!(got.omitted, HashMap::from([([1; 16], 38), ([2; 16], 2)]));
        assert_eq!(rows(&within(vec![batch(&rows_in)], 3).unwrap()), rows(&got));
    }

    /// Gathered batch by batch (cut to the bound whenever it holds twice it), a read
    /// returns what one cut of all its rows returns.
    #[test]
    fn gathering_under_the_bound_keeps_what_one_cut_keeps() {
        // Trace 1: 300 rows, latest first; trace 2: 40 rows; trace 3: 5; interleaved.
        let mut all = Vec::new();
        for i in 0..300i64 {
            all.push((1u8, 10_000 - i));
            if i % 7 == 0 {
                all.push((2, i));
            }
            if i % 60 == 0 {
                all.push((3, 5_000 + i));
            }
        }
        for max in [1, 3, 10, 25, 60, 400] {
            let mut gathered = Gathered::new(max, u64::MAX);
            let mut apart = Gathered::new(max, u64::MAX);
            for (n, chunk) in all.chunks(9).enumerate() {
                if n % 3 == 0 {
                    apart.push(batch(chunk)).unwrap();
                } else {
                    gathered.push(batch(chunk)).unwrap();
                }
            }
            gathered.merge(apart, |b| Ok(b.clone())).unwrap();
            let once = within(all.chunks(9).map(batch).collect(), max).unwrap();
            let got = gathered.finish().unwrap();
            assert_eq!(rows(&got), rows(&once), "max {max}");
            assert_eq!(got.omitted, once.omitted, "max {max}");
            let seen = |id: u8| all.iter().filter(|r| r.0 == id).count() as u64;
            for id in [1u8, 2, 3] {
                let kept = rows(&got).iter().filter(|r| r.0 == id).count() as u64;
                let omitted = got.omitted.get(&[id; 16]).copied().unwrap_or(0);
                assert_eq!(kept + omitted, seen(id), "max {max}, trace {id}");
            }
        }
    }
}
