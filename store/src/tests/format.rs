//! The block format: statistics, dictionary-key schemas, row order.

use super::*;

#[tokio::test]
async fn blocks_keep_statistics_only_on_columns_that_prune_and_lz4_only_on_entry_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    store.flush().await.unwrap();
    let block = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(block).unwrap())
            .unwrap();
    use parquet::file::reader::FileReader;
    let row_group = reader.metadata().row_group(0);
    let mut with_stats = Vec::new();
    let mut lz4 = Vec::new();
    for column in row_group.columns() {
        match column.compression() {
            parquet::basic::Compression::LZ4_RAW => lz4.push(column.column_path().string()),
            parquet::basic::Compression::ZSTD(_) => {}
            other => panic!("{} compressed with {other}", column.column_path()),
        }
        if column
            .statistics()
            .is_some_and(|s| s.min_bytes_opt().is_some())
        {
            with_stats.push(column.column_path().string());
        }
    }
    with_stats.sort();
    assert_eq!(
        with_stats,
        [
            "duration_nano",
            "kind",
            "name",
            "service",
            "start_unix_nano",
            "status_code",
            "trace_id"
        ]
    );
    lz4.sort();
    assert_eq!(
        lz4,
        [
            "attributes.list.item",
            "event_attributes.list.item",
            "resource_attributes.list.item"
        ]
    );
    store.shutdown().await.unwrap();
}

/// Every row of a block file, attribute lists as plain strings.
fn read_block_as_strings(path: &std::path::Path) -> Vec<arrow::array::RecordBatch> {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    let options = ArrowReaderOptions::new().with_schema(span_schema());
    ParquetRecordBatchReaderBuilder::try_new_with_options(
        std::fs::File::open(path).unwrap(),
        options,
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap())
    .collect()
}

/// Rewrites a block file as blocks were written before they declared their attribute
/// lists as dictionary keys: the same rows with the plain-string schema embedded.
fn rewrite_with_plain_string_schema(path: &std::path::Path) {
    let batches = read_block_as_strings(path);
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        span_schema(),
        None,
    )
    .unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
}

#[tokio::test]
async fn blocks_hand_out_attribute_entries_as_dictionary_keys_and_older_blocks_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    let in_head = all_query_results(&store).await;
    store.flush().await.unwrap();
    let block = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&block).unwrap(),
    )
    .unwrap();
    assert_eq!(
        builder.schema().as_ref(),
        crate::schema::stored_schema().as_ref()
    );
    assert_ne!(crate::schema::stored_schema(), span_schema());
    let id = TraceId([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
    let fetched = store.get_trace(id).await.unwrap().unwrap();
    assert_eq!(all_query_results(&store).await, in_head);

    // A block from before: plain strings embedded. Searches, fetches and compaction
    // read it the same.
    rewrite_with_plain_string_schema(&block);
    let plain = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&block).unwrap(),
    )
    .unwrap();
    assert_eq!(plain.schema().fields(), span_schema().fields());
    store.shutdown().await.unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(all_query_results(&store).await, in_head);
    assert_eq!(store.get_trace(id).await.unwrap().unwrap(), fetched);
    flush_late_blocks(&store, 4).await;
    store.compact_now().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(all_query_results(&store).await, in_head);
    assert_eq!(store.get_trace(id).await.unwrap().unwrap(), fetched);
    store.shutdown().await.unwrap();
}

/// (service, trace id, start) of every row of a block file, in file order.
fn block_order(path: &std::path::Path) -> Vec<(String, Vec<u8>, i64)> {
    use arrow::array::AsArray;
    let mut rows = Vec::new();
    for batch in read_block_as_strings(path) {
        let services = batch.column_by_name("service").unwrap().as_string::<i32>();
        let ids = batch
            .column_by_name("trace_id")
            .unwrap()
            .as_fixed_size_binary();
        let starts = batch
            .column_by_name("start_unix_nano")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        for r in 0..batch.num_rows() {
            rows.push((
                services.value(r).to_string(),
                ids.value(r).to_vec(),
                starts.value(r),
            ));
        }
    }
    rows
}

#[tokio::test]
async fn blocks_are_sorted_by_service_then_trace_through_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(StoreConfig {
        block_order: BlockOrder::Service,
        ..config(dir.path())
    })
    .await
    .unwrap();
    // Services interleaved within each flush and across flushes.
    for round in 0..4u8 {
        for i in 0..6u8 {
            let service = ["zeta", "alpha", "mid"][usize::from(i % 3)];
            let seed = 200 - round * 10 - i;
            store
                .write_spans(vec![trace(
                    seed,
                    service,
                    3,
                    *T0 + u64::from(seed) * 1000,
                    1000,
                )])
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
    }
    let sorted = |rows: &[(String, Vec<u8>, i64)]| rows.windows(2).all(|w| w[0] <= w[1]);
    let paths: Vec<_> = {
        let state = store.inner.state.read();
        state
            .blocks
            .iter()
            .map(|b| b.path(&store.inner.blocks_dir))
            .collect()
    };
    assert_eq!(paths.len(), 4);
    for path in &paths {
        let rows = block_order(path);
        assert_eq!(rows.len(), 18);
        assert!(sorted(&rows), "flushed block out of order: {rows:?}");
    }
    store.compact_now().await.unwrap();
    let block = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    let rows = block_order(&block);
    assert_eq!(rows.len(), 72);
    assert!(sorted(&rows), "compacted block out of order");
    let services: std::collections::BTreeSet<_> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(services.len(), 3);
    // Searches and fetches read the service-ordered block like any other.
    let found = ids(&store, &query("alpha")).await;
    assert_eq!(found.len(), 8);
    let id = TraceId([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 199]);
    let trace = store.get_trace(id).await.unwrap().unwrap();
    assert_eq!(trace.resource_spans[0].scope_spans[0].spans.len(), 3);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn blocks_are_sorted_by_trace_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.inner.config.block_order, BlockOrder::Trace);
    seed(&store).await;
    store.flush().await.unwrap();
    let block = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    let rows = block_order(&block);
    assert_eq!(rows.len(), 60);
    assert!(
        rows.windows(2)
            .all(|w| (&w[0].1, w[0].2) <= (&w[1].1, w[1].2))
    );
    // Both services appear interleaved: the order is not by service.
    assert!(rows.windows(2).filter(|w| w[0].0 != w[1].0).count() > 1);
    store.shutdown().await.unwrap();
}
