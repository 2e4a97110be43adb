//! The WAL's records back into the head at open.

use std::collections::{BTreeSet, HashSet};

use arrow::record_batch::RecordBatch;
use meshtel_model::{Operation, SpanKind};
use tracing::{info, warn};

use crate::schema;
use crate::wal::ReplayedSegment;
use crate::writer;

/// The head as the WAL left it.
pub(crate) struct Head {
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// Arrow memory of `batches`, counted as for spans written live.
    pub bytes: usize,
    /// Services and operations of those spans.
    pub operations: Vec<(String, Operation)>,
}

/// Decodes the replayed segments' records; an undecodable one is skipped with a WARN.
pub(crate) fn into_head(segments: &[ReplayedSegment]) -> Head {
    let mut head = Head {
        batches: Vec::new(),
        rows: 0,
        bytes: 0,
        operations: Vec::new(),
    };
    for segment in segments {
        for record in &segment.records {
            match writer::decode_record(record) {
                Ok(batches) => {
                    for batch in batches {
                        head.rows += batch.num_rows();
                        head.bytes += arrow_memory(&batch);
                        head.operations.extend(operations_in(&batch));
                        head.batches.push(batch);
                    }
                }
                Err(e) => {
                    warn!(segment = segment.seq, error = %e, "skipping undecodable wal record")
                }
            }
        }
    }
    if head.rows > 0 {
        info!(
            spans = head.rows,
            segments = segments.len(),
            "replayed wal into head"
        );
    }
    head
}

/// Arrow memory of `batch`, each allocation counted once: the columns of a batch read
/// from the WAL share the record's one buffer, which `get_array_memory_size` counts
/// once per column. For a batch built live (one allocation per buffer), as
/// `get_array_memory_size` counts it.
fn arrow_memory(batch: &RecordBatch) -> usize {
    fn add(data: &arrow::array::ArrayData, seen: &mut HashSet<usize>) -> usize {
        let mut size = std::mem::size_of_val(data);
        let nulls = data.nulls().map(|n| n.buffer());
        for buffer in data.buffers().iter().chain(nulls) {
            size += std::mem::size_of_val(buffer);
            if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                size += buffer.capacity();
            }
        }
        size + data
            .child_data()
            .iter()
            .map(|c| add(c, seen))
            .sum::<usize>()
    }
    let mut seen = HashSet::new();
    batch
        .columns()
        .iter()
        .map(|column| add(&column.to_data(), &mut seen))
        .sum()
}

/// The (service, operation) pairs of `batch`'s spans, once each.
fn operations_in(batch: &RecordBatch) -> Vec<(String, Operation)> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int8Type;
    let (Some(svc), Some(name), Some(kind)) = (
        batch.column_by_name(schema::col::SERVICE),
        batch.column_by_name(schema::col::NAME),
        batch.column_by_name(schema::col::KIND),
    ) else {
        return Vec::new();
    };
    let (Some(svc), Some(name), Some(kind)) = (
        svc.as_string_opt::<i32>(),
        name.as_string_opt::<i32>(),
        kind.as_primitive_opt::<Int8Type>(),
    ) else {
        return Vec::new();
    };
    let mut set = BTreeSet::new();
    for row in 0..batch.num_rows() {
        set.insert((
            svc.value(row).to_string(),
            Operation {
                name: name.value(row).to_string(),
                span_kind: SpanKind::from_otlp(i32::from(kind.value(row))),
            },
        ));
    }
    set.into_iter().collect()
}
