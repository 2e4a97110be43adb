//! Store tests over a real data directory: write, search, flush, compact, reopen.

use std::time::Duration;

use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::span::Event;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::schema::span_schema;

/// One hour ago, rounded to the second: test spans must be inside retention.
static T0: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| (now_unix_nano() as u64 / 1_000_000_000 - 3600) * 1_000_000_000);

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A trace of `n` spans for `service`: a server root and client children.
fn trace(seed: u8, service: &str, n: usize, start: u64, root_duration: u64) -> ResourceSpans {
    let mut trace_id = [0u8; 16];
    trace_id[0] = 1;
    trace_id[15] = seed;
    let spans = (0..n)
        .map(|i| Span {
            trace_id: trace_id.to_vec(),
            span_id: vec![seed, i as u8 + 1, 0, 0, 0, 0, 0, 1],
            parent_span_id: if i == 0 {
                vec![]
            } else {
                vec![seed, 1, 0, 0, 0, 0, 0, 1]
            },
            name: if i == 0 {
                "GET /".into()
            } else {
                format!("call-{i}")
            },
            kind: if i == 0 { 2 } else { 3 },
            start_time_unix_nano: start + i as u64 * 1000,
            end_time_unix_nano: start + i as u64 * 1000 + if i == 0 { root_duration } else { 500 },
            attributes: vec![
                kv(
                    "http.status_code",
                    any_value::Value::IntValue(200 + i as i64),
                ),
                kv("user", s(&format!("u{seed}"))),
                kv("cached", any_value::Value::BoolValue(i % 2 == 0)),
            ],
            status: (seed.is_multiple_of(3) && i == 0).then(|| Status {
                code: 2,
                message: "boom".into(),
            }),
            events: if i == 1 {
                vec![Event {
                    time_unix_nano: start + 1500,
                    name: "retry".into(),
                    attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
                    dropped_attributes_count: 0,
                }]
            } else {
                vec![]
            },
            ..Default::default()
        })
        .collect();
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s(service)), kv("host.name", s("h1"))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        flush_interval: Duration::from_secs(3600),
        compaction_interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

fn query(service: &str) -> TraceQuery {
    TraceQuery {
        service: Some(service.into()),
        start_min_unix_nano: *T0 - 1_000_000_000,
        start_max_unix_nano: *T0 + 1_000_000_000_000,
        limit: 100,
        ..Default::default()
    }
}

async fn ids(store: &TraceStore, q: &TraceQuery) -> Vec<String> {
    store
        .find_traces(q)
        .await
        .unwrap()
        .iter()
        .map(|t| t.trace_id.to_string())
        .collect()
}

/// Writes 20 traces (3 spans each) over two services, 1 ms apart.
async fn seed(store: &TraceStore) {
    for i in 0..20u8 {
        let service = if i % 2 == 0 { "frontend" } else { "backend" };
        store
            .write_spans(vec![trace(
                i,
                service,
                3,
                *T0 + i as u64 * 1_000_000,
                (i as u64 + 1) * 1_000_000,
            )])
            .await
            .unwrap();
    }
}

async fn all_query_results(store: &TraceStore) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    out.push(ids(store, &query("frontend")).await);
    out.push(ids(store, &query("backend")).await);
    let mut q = query("frontend");
    q.duration_min_nano = Some(5_000_000);
    q.duration_max_nano = Some(15_000_000);
    out.push(ids(store, &q).await);
    let mut q = query("backend");
    q.tags = vec![("user".into(), "u7".into())];
    out.push(ids(store, &q).await);
    let mut q = query("frontend");
    q.tags = vec![("error".into(), "true".into())];
    out.push(ids(store, &q).await);
    let mut q = query("frontend");
    q.limit = 3;
    out.push(ids(store, &q).await);
    out
}

#[tokio::test]
async fn spans_are_searchable_in_the_head_and_identical_after_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    let in_head = all_query_results(&store).await;
    assert_eq!(in_head[0].len(), 10);
    assert_eq!(in_head[1].len(), 10);
    // Newest first.
    assert_eq!(
        in_head[0][0],
        TraceId([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 18]).to_string()
    );
    // frontend roots have durations 1,3,5,...,19 ms: 5..=15 ms matches 5,7,9,11,13,15.
    assert_eq!(in_head[2].len(), 6);
    assert_eq!(in_head[3].len(), 1);
    // error=true: seeds divisible by 3 among even seeds: 0, 6, 12, 18.
    assert_eq!(in_head[4].len(), 4);
    assert_eq!(in_head[5].len(), 3);

    store.flush().await.unwrap();
    assert_eq!(store.stats().head_spans, 0);
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(all_query_results(&store).await, in_head);

    // More small blocks, then compaction into one.
    for round in 0..4u8 {
        store
            .write_spans(vec![trace(
                100 + round,
                "late",
                2,
                *T0 + 10_000_000_000,
                1000,
            )])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    assert_eq!(store.stats().blocks, 5);
    store.compact_now().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(store.stats().block_spans, 60 + 8);
    assert_eq!(all_query_results(&store).await, in_head);
    assert_eq!(ids(&store, &query("late")).await.len(), 4);
    store.shutdown().await.unwrap();
}

/// A block that lies inside the search window is searched without comparing each
/// span's start with the window; one that straddles it still is. Both must agree with
/// the head, which always compares.
#[tokio::test]
async fn windows_inside_and_across_a_block_find_what_the_head_finds() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    // Trace i starts at T0 + i ms with spans 1 µs apart (ends later: starts count).
    let window = |min: u64, max: u64, service: &str| TraceQuery {
        start_min_unix_nano: *T0 + min,
        start_max_unix_nano: *T0 + max,
        ..query(service)
    };
    let queries = [
        // Across the block: traces 6..=12 start inside, the rest outside.
        window(6_000_000, 12_000_000, "frontend"),
        window(6_000_000, 12_000_000, "backend"),
        // Exactly the block's first and last span start: inside, bounds included.
        window(0, 19_000_000 + 2_000, "backend"),
        window(0, 19_000_000 + 2_000, "frontend"),
        // Ends inside the last trace's spans: its first span matches, so it does.
        window(0, 19_000_000 + 500, "backend"),
        // Between two traces' spans: nothing.
        window(3_500_000, 3_900_000, "backend"),
    ];
    let mut in_head = Vec::new();
    for q in &queries {
        in_head.push(ids(&store, q).await);
    }
    assert_eq!(in_head[0].len(), 4, "frontend traces 6, 8, 10, 12");
    assert_eq!(in_head[1].len(), 3, "backend traces 7, 9, 11");
    assert_eq!(in_head[2].len(), 10);
    assert_eq!(in_head[3].len(), 10);
    assert_eq!(in_head[4].len(), 10);
    assert!(in_head[5].is_empty());
    store.flush().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    for (q, expected) in queries.iter().zip(&in_head) {
        assert_eq!(&ids(&store, q).await, expected, "{q:?}");
    }
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn fetched_trace_round_trips_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let original = trace(3, "frontend", 3, *T0, 7_000_000);
    store.write_spans(vec![original.clone()]).await.unwrap();
    let id = TraceId::from_slice(&original.scope_spans[0].spans[0].trace_id).unwrap();
    for phase in ["head", "block"] {
        let got = store.get_trace(id).await.unwrap().expect(phase);
        assert_eq!(got.resource_spans.len(), 1, "{phase}");
        assert_eq!(got.resource_spans[0], original, "{phase}");
        store.flush().await.unwrap();
    }
    assert!(store.get_trace(TraceId([9; 16])).await.unwrap().is_none());
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn tag_search_covers_types_resources_events_and_derived_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    // In the head (plain strings), then in a block (dictionary keys).
    for phase in ["head", "block"] {
        tag_search_checks(&store, phase).await;
        store.flush().await.unwrap();
    }
    assert_eq!(store.stats().blocks, 1);
    store.shutdown().await.unwrap();
}

async fn tag_search_checks(store: &TraceStore, phase: &str) {
    let with = |tags: &[(&str, &str)]| {
        let mut q = query("frontend");
        q.tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        q
    };
    // (tag, value, traces of the 10 frontend ones that match)
    let expected = [
        ("http.status_code", "201", 10),
        ("cached", "true", 10),
        ("host.name", "h1", 10),
        ("event", "retry", 10),
        ("attempt", "2", 10),
        ("span.kind", "server", 10),
        ("otel.scope.name", "lib", 10),
        ("otel.status_code", "ERROR", 4),
    ];
    for (key, value, traces) in expected {
        assert_eq!(
            ids(store, &with(&[(key, value)])).await.len(),
            traces,
            "{phase}: {key}={value}"
        );
    }
    // One span must carry every tag: the root has status 200, not 201.
    assert!(
        ids(
            store,
            &with(&[("http.status_code", "201"), ("span.kind", "server")])
        )
        .await
        .is_empty(),
        "{phase}"
    );
    assert!(
        ids(store, &with(&[("user", "nobody")])).await.is_empty(),
        "{phase}"
    );
}

#[tokio::test]
async fn catalog_and_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    // A frontend root calling into backend within one trace.
    let mut cross = trace(1, "frontend", 1, *T0, 1000);
    let mut child = trace(1, "backend", 2, *T0 + 10, 1000);
    for span in &mut child.scope_spans[0].spans {
        span.span_id[0] = 99;
        span.parent_span_id = cross.scope_spans[0].spans[0].span_id.clone();
    }
    cross.scope_spans[0].spans[0].name = "GET /home".into();
    store.write_spans(vec![cross, child]).await.unwrap();
    assert_eq!(store.services().await.unwrap(), vec!["backend", "frontend"]);
    let ops = store.operations("frontend", None).await.unwrap();
    assert_eq!(
        ops,
        vec![Operation {
            name: "GET /home".into(),
            span_kind: SpanKind::Server
        }]
    );
    assert_eq!(
        store
            .operations("backend", Some(SpanKind::Client))
            .await
            .unwrap()
            .len(),
        1
    );
    let links = store
        .dependencies(*T0 + 1_000_000_000, 2_000_000_000)
        .await
        .unwrap();
    assert_eq!(
        links,
        vec![DependencyLink {
            parent: "frontend".into(),
            child: "backend".into(),
            call_count: 2
        }]
    );
    store.flush().await.unwrap();
    assert_eq!(
        store
            .dependencies(*T0 + 1_000_000_000, 2_000_000_000)
            .await
            .unwrap()
            .len(),
        1
    );
    store.shutdown().await.unwrap();
    // The catalog survives a restart.
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.services().await.unwrap(), vec!["backend", "frontend"]);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn unflushed_spans_are_replayed_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    store.flush().await.unwrap();
    store
        .write_spans(vec![trace(200, "after-flush", 4, *T0, 1000)])
        .await
        .unwrap();
    // Copy the data directory while the store runs, as a crash would leave it.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    store.shutdown().await.unwrap();
    let reopened = TraceStore::open(config(copy.path())).await.unwrap();
    assert_eq!(reopened.stats().head_spans, 4);
    assert_eq!(ids(&reopened, &query("after-flush")).await.len(), 1);
    assert_eq!(ids(&reopened, &query("frontend")).await.len(), 10);
    reopened.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_drops_old_blocks_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention_max_age = Duration::from_secs(60);
    let store = TraceStore::open(cfg).await.unwrap();
    store
        .write_spans(vec![trace(1, "old", 2, *T0, 1000)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .write_spans(vec![trace(2, "new", 2, *T0 + 120_000_000_000, 1000)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    compaction::run_once(&store.inner, (*T0 + 150_000_000_000) as i64)
        .await
        .unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert!(ids(&store, &query("old")).await.is_empty());
    assert_eq!(ids(&store, &query("new")).await.len(), 1);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn overload_is_refused_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_rows = 4;
    cfg.max_head_rows = 4;
    cfg.flush_interval = Duration::from_secs(3600);
    let store = TraceStore::open(cfg).await.unwrap();
    // The writer seals at 4 rows and the flusher empties the head; fill faster than
    // one flush by writing 4 rows, then check an immediate second write is refused or
    // accepted but never lost.
    store
        .write_spans(vec![trace(1, "a", 4, *T0, 1)])
        .await
        .unwrap();
    let mut refused = 0;
    for i in 0..50u8 {
        match store.write_spans(vec![trace(10 + i, "a", 4, *T0, 1)]).await {
            Ok(()) => {}
            Err(WriteError::Overloaded { .. }) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    store.flush().await.unwrap();
    let stored = store.stats().block_spans as usize;
    assert_eq!(stored, 4 + (50 - refused) * 4);
    store.shutdown().await.unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_read_only_store_sees_blocks_flushed_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = TraceStore::open(config(dir.path())).await.unwrap();
    let reader = TraceStore::open_read_only(config(dir.path()), Duration::from_millis(50))
        .await
        .unwrap();
    writer
        .write_spans(vec![trace(1, "svc", 2, *T0, 1000)])
        .await
        .unwrap();
    writer.flush().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ids(&reader, &query("svc")).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "reader never saw the block"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reader.services().await.unwrap(), vec!["svc"]);
    assert!(matches!(
        reader.write_spans(vec![trace(2, "svc", 1, *T0, 1)]).await,
        Err(WriteError::Unavailable(_))
    ));
    reader.shutdown().await.unwrap();
    writer.shutdown().await.unwrap();
}

#[tokio::test]
async fn blocks_keep_statistics_only_on_columns_that_prune() {
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
    for column in row_group.columns() {
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
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_memory_bound_refuses_writes_until_a_flush_frees_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_head_bytes = bytesize::ByteSize::mib(1);
    cfg.flush_interval = Duration::from_secs(3600);
    let store = TraceStore::open(cfg).await.unwrap();
    // A trace with large attributes: about 300 KiB of Arrow memory per write.
    let big = |seed: u8| {
        let mut t = trace(seed, "big", 4, *T0, 1);
        for span in &mut t.scope_spans[0].spans {
            span.attributes
                .push(kv("payload", s(&"x".repeat(64 << 10))));
        }
        t
    };
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..12u8 {
        match store.write_spans(vec![big(i)]).await {
            Ok(()) => accepted += 1,
            Err(WriteError::Overloaded { retry_after }) => {
                assert!(retry_after > Duration::ZERO);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(
            store.stats().head_bytes <= 2 << 20,
            "head grew past the bound"
        );
    }
    assert!(refused > 0, "a 1 MiB bound never refused 3.6 MiB of writes");
    store.flush().await.unwrap();
    assert_eq!(store.stats().head_bytes, 0);
    assert_eq!(store.stats().block_spans as usize, accepted * 4);
    // Room again after the flush.
    store.write_spans(vec![big(99)]).await.unwrap();
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
    for round in 0..4u8 {
        store
            .write_spans(vec![trace(
                100 + round,
                "late",
                2,
                *T0 + 10_000_000_000,
                1000,
            )])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
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

/// `trace(seed, ..)` with `n` spans, any number of them: span ids from the index.
fn wide_trace(seed: u8, service: &str, n: u32, start: u64) -> ResourceSpans {
    let mut wide = trace(seed, service, 1, start, 500);
    let template = wide.scope_spans[0].spans[0].clone();
    wide.scope_spans[0].spans = (0..n)
        .map(|i| {
            let mut span = template.clone();
            span.span_id = [&[seed, 0, 0, 0][..], &i.to_be_bytes()[..]].concat();
            span.start_time_unix_nano = start + u64::from(i) * 1000;
            span.end_time_unix_nano = span.start_time_unix_nano + 500;
            span
        })
        .collect();
    wide
}

/// A search without tags asks for the newest matching spans, `limit` × 32 at first.
/// When one trace's spans fill that, it asks again for as many rows per trace as it
/// saw; beyond 65,536 rows (a large `limit` too) it groups by trace instead. Either
/// way the older traces still come back, in the order grouping by trace gives, from the
/// head and a block.
#[tokio::test]
async fn a_trace_with_many_new_spans_does_not_hide_older_traces() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    // Traces 1..=3 of three spans, then two traces with many spans, newer than them:
    // 8 (120 spans) is older than 9 (1,500 spans).
    for i in 1..=3u8 {
        let start = *T0 + i as u64 * 1_000_000;
        store
            .write_spans(vec![trace(i, "shop", 3, start, 500)])
            .await
            .unwrap();
    }
    store
        .write_spans(vec![wide_trace(8, "shop", 120, *T0 + 10_000_000)])
        .await
        .unwrap();
    store
        .write_spans(vec![wide_trace(9, "shop", 1500, *T0 + 1_000_000_000)])
        .await
        .unwrap();
    let expected = |seeds: &[u8]| -> Vec<String> {
        seeds
            .iter()
            .map(|&seed| {
                let mut id = [0u8; 16];
                id[0] = 1;
                id[15] = seed;
                TraceId(id).to_string()
            })
            .collect()
    };
    let mut q = query("shop");
    for phase in ["head", "block"] {
        // 96 rows, all of trace 9: asked again for 3 × 96 × 2.
        q.limit = 3;
        assert_eq!(
            ids(&store, &q).await,
            expected(&[9, 8, 3]),
            "{phase}, limit 3"
        );
        // 1,280 rows of trace 9, then 40 × 1,280 × 2 would be too many: grouped.
        q.limit = 40;
        assert_eq!(
            ids(&store, &q).await,
            expected(&[9, 8, 3, 2, 1]),
            "{phase}, limit 40"
        );
        // 3,000 × 32 rows would be too many from the start: grouped.
        q.limit = 3000;
        assert_eq!(
            ids(&store, &q).await,
            expected(&[9, 8, 3, 2, 1]),
            "{phase}, limit 3000"
        );
        store.flush().await.unwrap();
    }
    let traces = store.find_traces(&q).await.unwrap();
    assert_eq!(traces[0].span_count(), 1500);
    assert_eq!(traces[1].span_count(), 120);
}
