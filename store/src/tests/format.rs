//! The block format: statistics, dictionary-key schemas, row order.

use super::*;

/// Per column chunk of a block's first row group: the columns with min/max statistics,
/// and the codec and whether it has a dictionary page, by column path.
fn column_chunks(path: &std::path::Path) -> (Vec<String>, Vec<(String, String, bool)>) {
    use parquet::file::reader::FileReader;
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap())
            .unwrap();
    let row_group = reader.metadata().row_group(0);
    let mut with_stats = Vec::new();
    let mut chunks = Vec::new();
    for column in row_group.columns() {
        if column
            .statistics()
            .is_some_and(|s| s.min_bytes_opt().is_some())
        {
            with_stats.push(column.column_path().string());
        }
        let codec = match column.compression() {
            parquet::basic::Compression::ZSTD(_) => "zstd".to_string(),
            other => other.to_string(),
        };
        chunks.push((
            column.column_path().string(),
            codec,
            column.dictionary_page_offset().is_some(),
        ));
    }
    with_stats.sort();
    (with_stats, chunks)
}

const PRUNING: [&str; 7] = [
    "duration_nano",
    "kind",
    "name",
    "service",
    "start_unix_nano",
    "status_code",
    "trace_id",
];

#[tokio::test]
async fn blocks_keep_statistics_only_on_columns_that_prune_and_lz4_only_on_entry_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    store.flush().await.unwrap();
    let flushed = column_chunks(&block_paths(&store)[0]);
    flush_late_blocks(&store, 3).await;
    store.compact_now().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    let compacted = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    // Flushed and compacted blocks alike (only their zstd level differs).
    for chunks in [flushed, column_chunks(&compacted)] {
        let (with_stats, chunks) = chunks;
        assert_eq!(with_stats, PRUNING);
        let mut lz4: Vec<&str> = Vec::new();
        for (path, codec, _) in &chunks {
            match codec.as_str() {
                "LZ4_RAW" => lz4.push(path),
                "zstd" => {}
                other => panic!("{path} compressed with {other}"),
            }
        }
        lz4.sort();
        assert_eq!(
            lz4,
            [
                "attributes.list.item",
                "event_attributes.list.item",
                "resource_attributes.list.item"
            ]
        );
        // Low-cardinality strings keep their dictionaries; random ids get none.
        let dictionary = |name: &str| chunks.iter().find(|c| c.0 == name).unwrap().2;
        assert!(dictionary("service"));
        assert!(dictionary("attributes.list.item"));
        assert!(!dictionary("span_id"));
    }
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
    // The same fields; the footer's metadata (the data checksum) comes along.
    assert_eq!(
        builder.schema().fields(),
        crate::schema::stored_schema().fields()
    );
    assert!(
        builder
            .schema()
            .metadata()
            .contains_key("meshtel.data_crc32"),
        "{:?}",
        builder.schema().metadata()
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

/// The files of the store's blocks.
fn block_paths(store: &TraceStore) -> Vec<std::path::PathBuf> {
    let state = store.inner.state.read();
    state
        .blocks
        .iter()
        .map(|b| b.path(&store.inner.blocks_dir))
        .collect()
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
    let paths = block_paths(&store);
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

/// Every row of a block file rendered as text, sorted: the block's rows as a multiset.
fn block_rows_as_text(paths: &[std::path::PathBuf]) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut rows = Vec::new();
    for path in paths {
        for batch in read_block_as_strings(path) {
            let options = FormatOptions::default();
            let columns: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for r in 0..batch.num_rows() {
                let row: Vec<String> = columns.iter().map(|c| c.value(r).to_string()).collect();
                rows.push(row.join("|"));
            }
        }
    }
    rows.sort();
    rows
}

#[tokio::test]
async fn a_merge_across_row_groups_and_input_batches_keeps_every_row_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(StoreConfig {
        row_group_rows: 100,
        ..config(dir.path())
    })
    .await
    .unwrap();
    // Four flushes of 640 spans (more than a merge input reads at once), whose trace
    // ids interleave across the flushes.
    for flush in 0..4u8 {
        let traces = (0..64u8)
            .map(|i| trace(i * 4 + flush, "svc", 10, *T0 + u64::from(i) * 1000, 1000))
            .collect();
        store.write_spans(traces).await.unwrap();
        store.flush().await.unwrap();
    }
    let flushed = block_paths(&store);
    assert_eq!(flushed.len(), 4);
    let before = block_rows_as_text(&flushed);
    assert_eq!(before.len(), 2560);
    store.compact_now().await.unwrap();
    let compacted = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    assert_eq!(block_rows_as_text(std::slice::from_ref(&compacted)), before);
    let order: Vec<_> = block_order(&compacted)
        .into_iter()
        .map(|(_, id, start)| (id, start))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "compacted block out of order"
    );
    // Row groups of four times `row_group_rows` in a compacted block.
    use parquet::file::reader::FileReader;
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&compacted).unwrap())
            .unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, [400, 400, 400, 400, 400, 400, 160]);
    // Every trace is still found whole.
    for seed in [0u8, 77, 255] {
        let mut id = [0u8; 16];
        id[0] = 1;
        id[15] = seed;
        let trace = store.get_trace(TraceId(id)).await.unwrap().unwrap();
        assert_eq!(trace.resource_spans[0].scope_spans[0].spans.len(), 10);
    }
    store.shutdown().await.unwrap();
}

/// `batch` with each row's resource entries one by one, as blocks held them before
/// resources were packed into one value.
fn with_resources_unpacked(batch: &RecordBatch) -> RecordBatch {
    use arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
    let column = batch.schema().index_of(crate::schema::col::RESOURCE_ATTRIBUTES).unwrap();
    let packed = batch.column(column).as_list::<i32>();
    let field = arrow::datatypes::Field::new_list_field(arrow::datatypes::DataType::Utf8, false);
    let mut plain = ListBuilder::new(StringBuilder::new()).with_field(field);
    for row in 0..packed.len() {
        let values = packed.value(row);
        for value in values.as_string::<i32>().iter().flatten() {
            for entry in crate::schema::PackedEntries::of(value) {
                plain.values().append_value(entry);
            }
        }
        plain.append(true);
    }
    let mut columns = batch.columns().to_vec();
    columns[column] = std::sync::Arc::new(plain.finish());
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// A block written before resources were packed (each entry a list value of its own)
/// still answers tag searches on its resources and shows them as process tags, before
/// and after compaction merges it with packed blocks.
#[tokio::test]
async fn blocks_with_unpacked_resources_read_as_before_and_merge_with_packed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    store.shutdown().await.unwrap();
    // Three such blocks, adopted (as level-1 blocks), beside four packed flushes that
    // compaction merges into a fourth level-1 block, then all four into one.
    let orphaned = dir.path().join("blocks").join(crate::block_files::ORPHANED_DIR);
    std::fs::create_dir_all(&orphaned).unwrap();
    for seed in [1, 5, 6] {
        let spans = [trace(seed, "old", 2, *T0, 1000)];
        let (encoded, _) = crate::encode::encode_resource_spans(&spans, u64::MAX).unwrap();
        let old = with_resources_unpacked(&encoded.batch);
        let resources = old.column_by_name(crate::schema::col::RESOURCE_ATTRIBUTES).unwrap();
        use arrow::array::AsArray;
        assert_eq!(resources.as_list::<i32>().value(0).len(), 2);
        let id = 0xf0 + u64::from(seed);
        block::write_block_from_batches(&orphaned, id, &[old], 65_536, BlockOrder::Trace, 0, 0)
            .unwrap();
    }
    let adopted = crate::adopt::adopt_orphaned_blocks(dir.path()).await.unwrap();
    assert_eq!(adopted.spans, 6);

    let store = TraceStore::open(config(dir.path())).await.unwrap();
    for seed in [2, 3, 4, 7] {
        flush_trace(&store, seed, "old").await;
    }
    let mut tagged = query("old");
    tagged.tags = vec![("host.name".into(), "h1".into())];
    let mut untagged = query("old");
    untagged.tags = vec![("host.name".into(), "h2".into())];
    // One pass merges the packed flushes, then the four level-1 blocks.
    for (phase, blocks) in [("as written", 7), ("merged", 1)] {
        assert_eq!(store.stats().blocks, blocks, "{phase}");
        assert_eq!(ids(&store, &tagged).await.len(), 7, "{phase}");
        assert!(ids(&store, &untagged).await.is_empty(), "{phase}");
        for seed in [1, 2] {
            let trace = store.get_trace(trace_id(seed)).await.unwrap().unwrap();
            let resources: Vec<_> = trace
                .resource_spans
                .iter()
                .map(|rs| rs.resource.clone().unwrap_or_default().attributes)
                .collect();
            assert_eq!(
                resources,
                vec![vec![kv("service.name", s("old")), kv("host.name", s("h1"))]],
                "{phase}: trace {seed}"
            );
        }
        store.compact_now().await.unwrap();
    }
    store.shutdown().await.unwrap();
}
