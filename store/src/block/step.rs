//! How many rows a merge reads and gathers at a time of one column: a fixed count of
//! ordinary rows, fewer of large ones. Spans of megabytes (a hundred attributes of
//! 64 KiB each, thousands of events) are within the ingest limits; thousands of them
//! read and gathered at once would take gigabytes, and a merge that cannot allocate
//! them would fail again at every compaction pass.

use std::fs::File;

use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use super::{CHUNK_ROWS, MERGE_BATCH_ROWS};
use super::leaf_paths;
use crate::schema::span_schema;

/// About the bytes of one column a merge step reads from an input, and gathers.
const STEP_BYTES: u64 = 64 << 20;

/// (rows per read batch, rows per gathered chunk) of top-level `column` for a merge of
/// `inputs`: their defaults, fewer when the widest input's rows of that column average
/// more than [`STEP_BYTES`] shares out (their size uncompressed, from the footers).
pub(super) fn rows_per_step(inputs: &[(File, ArrowReaderMetadata)], column: usize) -> (usize, usize) {
    let leaves = leaves_per_column();
    let first: usize = leaves.iter().take(column).sum();
    let count = leaves.get(column).copied().unwrap_or(1);
    let widest = inputs
        .iter()
        .map(|(_, metadata)| bytes_per_row(metadata, first..first + count))
        .max()
        .unwrap_or(0);
    let rows = usize::try_from(STEP_BYTES / widest.max(1)).unwrap_or(usize::MAX);
    (rows.clamp(1, MERGE_BATCH_ROWS), rows.clamp(1, CHUNK_ROWS))
}

/// The uncompressed bytes per row of the leaf columns `leaves` in a block.
fn bytes_per_row(metadata: &ArrowReaderMetadata, leaves: std::ops::Range<usize>) -> u64 {
    let metadata = metadata.metadata();
    let rows = u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0).max(1);
    let bytes: u64 = metadata
        .row_groups()
        .iter()
        .flat_map(|group| group.columns().get(leaves.clone()).unwrap_or_default())
        .map(|chunk| u64::try_from(chunk.uncompressed_size()).unwrap_or(0))
        .sum();
    bytes / rows
}

/// Parquet leaf columns of each top-level column of the span schema, in order.
pub(super) fn leaves_per_column() -> Vec<usize> {
    let schema = span_schema();
    schema
        .fields()
        .iter()
        .map(|field| {
            leaf_paths()
                .iter()
                .filter(|p| p.parts().first().map(String::as_str) == Some(field.name().as_str()))
                .count()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::record_batch::RecordBatch;
    use meshtel_model::otlp::common::v1::{AnyValue, KeyValue, any_value};
    use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use parquet::arrow::arrow_reader::ArrowReaderOptions;

    use super::*;
    use crate::config::BlockOrder;
    use crate::schema::{col, span_schema};

    /// A head batch of `rows` spans of one trace, each with `attributes` entries of
    /// `bytes` bytes.
    fn spans(rows: u8, attributes: usize, bytes: usize) -> RecordBatch {
        let value = "x".repeat(bytes);
        let spans = (0..rows)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: vec![i + 1; 8],
                name: "s".into(),
                attributes: (0..attributes)
                    .map(|a| KeyValue {
                        key: format!("k{a}"),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(value.clone())),
                        }),
                        ..KeyValue::default()
                    })
                    .collect(),
                ..Span::default()
            })
            .collect();
        let group = ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        };
        crate::encode::encode_resource_spans(&[group], u64::MAX)
            .expect("encoded")
            .0
            .batch
    }

    #[test]
    fn large_rows_are_merged_a_few_at_a_time() {
        let dir = tempfile::tempdir().expect("dir");
        let attributes = span_schema().index_of(col::ATTRIBUTES).expect("column");
        let step = |id: u64, batch: RecordBatch| {
            let meta = super::super::write_block_from_batches(
                dir.path(),
                id,
                &[batch],
                65_536,
                BlockOrder::Trace,
                0,
                0,
            )
            .expect("block");
            let file = File::open(meta.path(dir.path())).expect("open");
            let metadata =
                ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).expect("footer");
            rows_per_step(&[(file, metadata)], attributes)
        };
        assert_eq!(step(1, spans(100, 3, 10)), (MERGE_BATCH_ROWS, CHUNK_ROWS));
        // 16 rows of 128 entries of 64 KiB: 8 MiB each.
        let (read, gather) = step(2, spans(16, 128, 64 << 10));
        assert!((4..=10).contains(&read) && read == gather, "{read}, {gather}");
    }
}
