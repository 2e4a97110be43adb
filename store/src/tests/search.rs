//! Search and fetch: head and blocks answer alike, windows, tags, ranking.

use super::*;
use arrow::array::{Array, AsArray};

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
    flush_late_blocks(&store, 4).await;
    assert_eq!(store.stats().blocks, 5);
    // Over five small blocks: searches for more than a service take them all in their
    // first step, the others one at a time.
    assert_eq!(all_query_results(&store).await, in_head);
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

/// Thousands of tags (more than the query API lets through) neither overflow a stack
/// walking the filter nor change what matches: every one must hold.
#[tokio::test]
async fn a_search_of_thousands_of_tags_matches_as_one_of_few() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    seed(&store).await;
    let many = |odd_one: Option<usize>| {
        let mut q = query("frontend");
        q.tags = (0..5_000)
            .map(|i| match (i % 2, odd_one == Some(i)) {
                (_, true) => ("user".to_string(), "nobody".to_string()),
                (0, false) => ("cached".to_string(), "true".to_string()),
                _ => ("host.name".to_string(), "h1".to_string()),
            })
            .collect();
        q
    };
    for phase in ["head", "block"] {
        assert_eq!(ids(&store, &many(None)).await.len(), 10, "{phase}");
        assert!(ids(&store, &many(Some(3_333))).await.is_empty(), "{phase}");
        store.flush().await.unwrap();
    }
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
        // Jaeger compares the text it shows: an int 201 is "201" only.
        ("http.status_code", "0201", 0),
        ("http.status_code", "+201", 0),
        // Tags Jaeger derives from a column exist only when it is not empty.
        ("otel.status_description", "", 0),
        ("w3c.tracestate", "", 0),
        ("otel.scope.version", "", 0),
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
async fn doubles_are_found_by_their_decimal_exponent_and_infinity_texts() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let mut t = trace(51, "doubles", 1, *T0, 1000);
    let double = any_value::Value::DoubleValue;
    t.scope_spans[0].spans[0].attributes = vec![
        kv("big", double(1e21)),
        kv("tiny", double(1e-7)),
        kv("ratio", double(0.25)),
        kv("pinf", double(f64::INFINITY)),
        kv("ninf", double(f64::NEG_INFINITY)),
    ];
    store.write_spans(vec![t]).await.unwrap();
    for phase in ["head", "block"] {
        for (key, value, found) in [
            ("big", "1e+21", 1),
            ("big", "1e21", 1),
            ("big", "1000000000000000000000", 1),
            ("tiny", "1e-07", 1),
            ("tiny", "1e-7", 1),
            ("tiny", "0.0000001", 1),
            ("ratio", "0.25", 1),
            ("ratio", "0.250", 0),
            ("ratio", "+0.25", 0),
            ("ratio", "2.5e-1", 1),
            // As the Jaeger API shows infinities, as OTLP/JSON writes them, and as Rust.
            ("pinf", "+Inf", 1),
            ("pinf", "Infinity", 1),
            ("pinf", "inf", 1),
            ("pinf", "-Inf", 0),
            ("ninf", "-Inf", 1),
            ("ninf", "-Infinity", 1),
            ("ninf", "+Inf", 0),
        ] {
            let mut q = query("doubles");
            q.tags = vec![(key.to_string(), value.to_string())];
            assert_eq!(ids(&store, &q).await.len(), found, "{phase}: {key}={value}");
        }
        store.flush().await.unwrap();
    }
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn array_and_map_values_are_found_by_the_json_text_jaeger_shows() {
    use meshtel_model::otlp::common::v1::{ArrayValue, KeyValueList};
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let mut t = trace(50, "jsonish", 1, *T0, 1000);
    let strings = |items: &[&str]| {
        any_value::Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.to_string())),
                })
                .collect(),
        })
    };
    let map = any_value::Value::KvlistValue(KeyValueList {
        values: vec![kv("k", s("v")), kv("n", any_value::Value::IntValue(1))],
    });
    t.scope_spans[0].spans[0].attributes = vec![kv("arr", strings(&["a", "b"])), kv("map", map)];
    store.write_spans(vec![t]).await.unwrap();
    for phase in ["head", "block"] {
        for (key, value, found) in [
            ("arr", r#"["a","b"]"#, 1),
            ("arr", r#"["a"]"#, 0),
            ("map", r#"{"k":"v","n":1}"#, 1),
            ("map", r#"{"k":"v","n":2}"#, 0),
        ] {
            let mut q = query("jsonish");
            q.tags = vec![(key.to_string(), value.to_string())];
            assert_eq!(ids(&store, &q).await.len(), found, "{phase}: {key}={value}");
        }
        store.flush().await.unwrap();
    }
    store.shutdown().await.unwrap();
}

/// Jaeger shows an event's name as its log's `event` field only when no attribute is
/// called `event`; a search finds what it shows.
#[tokio::test]
async fn an_event_attribute_named_event_hides_the_event_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let mut t = trace(51, "events", 1, *T0, 1000);
    t.scope_spans[0].spans[0].events = vec![Event {
        time_unix_nano: *T0 + 10,
        name: "cache.miss".into(),
        attributes: vec![kv("event", s("lookup"))],
        dropped_attributes_count: 0,
    }];
    store.write_spans(vec![t]).await.unwrap();
    for phase in ["head", "block"] {
        for (value, found) in [("lookup", 1), ("cache.miss", 0)] {
            let mut q = query("events");
            q.tags = vec![("event".to_string(), value.to_string())];
            assert_eq!(ids(&store, &q).await.len(), found, "{phase}: event={value}");
        }
        store.flush().await.unwrap();
    }
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

/// `trace` with a trace id of its own for every `n` up to 65,535 (`trace` alone has
/// 256).
fn numbered_trace(n: u16, spans: usize) -> ResourceSpans {
    let [hi, lo] = n.to_be_bytes();
    let mut t = trace(lo, "frontend", spans, *T0 + u64::from(n) * 1000, 5000);
    for span in &mut t.scope_spans[0].spans {
        span.trace_id[1] = hi;
    }
    t
}

#[tokio::test]
async fn a_fetch_reads_only_the_pages_that_can_hold_its_traces() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    // 12,000 spans: one row group, so the trace id column spans two pages.
    let traces: Vec<ResourceSpans> = (0..1200u16).map(|n| numbered_trace(n, 10)).collect();
    store.write_spans(traces.clone()).await.unwrap();
    store.flush().await.unwrap();
    let path = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    let first = traces[0].scope_spans[0].spans[0].trace_id.clone();
    let last = traces[1199].scope_spans[0].spans[0].trace_id.clone();
    let id = |bytes: &[u8]| <[u8; 16]>::try_from(bytes).unwrap();

    let file = std::fs::File::open(&path).unwrap();
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
    let metadata = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, options).unwrap();
    let selected = |ids: &[[u8; 16]]| {
        crate::search::fetch_candidate_rows(metadata.metadata(), ids)
            .map(|(_, selection)| selection.row_count())
    };
    // One id: the rows of one page, not the whole block.
    let one = selected(&[id(&first)]).unwrap();
    assert!(one > 0 && one < 12_000, "selected {one} of 12,000 rows");
    // Ids at both ends: both pages.
    assert_eq!(selected(&[id(&first), id(&last)]), Some(12_000));
    // An id below every page's minimum: nothing to read.
    assert_eq!(selected(&[[0u8; 16]]), None);

    // Each trace comes back whole and alone, one at a time and together.
    for n in [0u16, 599, 600, 1199] {
        let original = &traces[usize::from(n)];
        let trace_id = TraceId::from_slice(&original.scope_spans[0].spans[0].trace_id).unwrap();
        let got = store.get_trace(trace_id).await.unwrap().expect("fetched");
        assert_eq!(got.resource_spans, vec![original.clone()], "trace {n}");
    }
    let q = TraceQuery {
        limit: 1200,
        ..query("frontend")
    };
    assert_eq!(store.find_traces(&q).await.unwrap().len(), 1200);
    store.shutdown().await.unwrap();
}

/// 2,000 traces of 10 spans whose attributes vary by span: a rare value (one span in
/// 997), a dense one (one in three), spans without attributes, and event attributes.
fn varied_trace(n: u16) -> ResourceSpans {
    let mut t = numbered_trace(n, 10);
    for (i, span) in t.scope_spans[0].spans.iter_mut().enumerate() {
        let g = usize::from(n) * 10 + i;
        span.attributes = if g % 11 == 0 {
            Vec::new()
        } else {
            vec![
                kv("k", s(&format!("v{}", g % 997))),
                kv("color", s(["red", "green", "blue"][g % 3])),
            ]
        };
        span.events = if g % 13 == 0 {
            vec![Event {
                time_unix_nano: span.start_time_unix_nano,
                name: "e".into(),
                attributes: vec![kv("ev", s(&format!("e{}", g % 5)))],
                dropped_attributes_count: 0,
            }]
        } else {
            Vec::new()
        };
    }
    t
}

#[tokio::test]
async fn tag_searches_over_blocks_read_only_the_rows_whose_entries_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let traces: Vec<ResourceSpans> = (0..2000u16).map(varied_trace).collect();
    store.write_spans(traces.clone()).await.unwrap();
    let cases: [&[(&str, &str)]; 5] = [
        &[("k", "v5")],
        &[("k", "v5"), ("color", "blue")],
        &[("ev", "e3")],
        &[("k", "v5000")],
        &[("color", "red"), ("k", "v17")],
    ];
    // What a span-by-span look at the traces says each search finds.
    let span_has = |span: &Span, key: &str, value: &str| {
        span.attributes
            .iter()
            .chain(span.events.iter().flat_map(|e| &e.attributes))
            .any(|a| {
                a.key == key
                    && a.value
                        == Some(AnyValue {
                            value: Some(s(value)),
                        })
            })
    };
    let expected = |tags: &[(&str, &str)]| {
        let mut out: Vec<String> = traces
            .iter()
            .filter(|t| {
                t.scope_spans[0]
                    .spans
                    .iter()
                    .any(|span| tags.iter().all(|(k, v)| span_has(span, k, v)))
            })
            .map(|t| {
                TraceId::from_slice(&t.scope_spans[0].spans[0].trace_id)
                    .unwrap()
                    .to_string()
            })
            .collect();
        out.sort();
        out
    };
    let found = async |tags: &[(&str, &str)]| {
        let q = TraceQuery {
            limit: 2000,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..query("frontend")
        };
        let mut out = ids(&store, &q).await;
        out.sort();
        out
    };
    for tags in cases {
        assert_eq!(found(tags).await, expected(tags), "head: {tags:?}");
    }
    store.flush().await.unwrap();
    for tags in cases {
        assert_eq!(found(tags).await, expected(tags), "block: {tags:?}");
    }
    // The rare value is in a few traces, the dense one in most.
    assert!((10..30).contains(&expected(cases[0]).len()));
    assert!(expected(&[("color", "red")]).len() > 1900);
    assert!(expected(cases[3]).is_empty());

    // The page scan finds exactly the rows that hold the entries, across the
    // block's pages (20,000 rows, at most 8,192 per page).
    let path = store.inner.state.read().blocks[0].path(&store.inner.blocks_dir);
    let file = std::fs::File::open(&path).unwrap();
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .unwrap();
    let columns: Vec<usize> = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| crate::schema::ENTRY_COLUMNS.contains(&c.path().parts()[0].as_str()))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(columns.len(), 3);
    let rows_in_block = {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let mut rows: Vec<Vec<String>> = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let mut per_row = vec![String::new(); batch.num_rows()];
            for column in crate::schema::ENTRY_COLUMNS {
                let list = arrow::compute::cast(
                    batch.column_by_name(column).unwrap(),
                    &crate::schema::span_schema()
                        .field_with_name(column)
                        .unwrap()
                        .data_type()
                        .clone(),
                )
                .unwrap();
                let list = list.as_list::<i32>();
                for (row, entries) in per_row.iter_mut().enumerate() {
                    if list.is_valid(row) {
                        for entry in list.value(row).as_string::<i32>().iter().flatten() {
                            entries.push_str(entry);
                            entries.push('\n');
                        }
                    }
                }
            }
            rows.extend(
                per_row
                    .into_iter()
                    .map(|r| r.lines().map(str::to_string).collect()),
            );
        }
        rows
    };
    assert_eq!(rows_in_block.len(), 20_000);
    for tags in cases {
        let candidates: Vec<Vec<String>> = tags
            .iter()
            .map(|(k, v)| crate::search::candidate_entries(k, v))
            .collect();
        let want: Vec<u32> = (0..rows_in_block.len() as u32)
            .filter(|row| {
                candidates
                    .iter()
                    .all(|c| rows_in_block[*row as usize].iter().any(|e| c.contains(e)))
            })
            .collect();
        let got = crate::search::entry_scan::matching_rows(
            &std::sync::Arc::new(file.try_clone().unwrap()),
            &metadata,
            &columns,
            &candidates,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![crate::search::entry_scan::RowGroupRows::Rows(want)],
            "{tags:?}"
        );
    }
    store.shutdown().await.unwrap();
}

/// A read over its span bound cuts the largest trace, keeping its earliest spans (the
/// root first), counts what it left out, and leaves a small trace whole; head and
/// blocks alike, and a search the same as a fetch.
#[tokio::test]
async fn reads_over_their_span_bound_cut_the_largest_trace_to_its_earliest_spans() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let big = trace(1, "frontend", 40, *T0, 1_000_000);
    let small = trace(2, "frontend", 3, *T0 + 10_000_000, 1_000_000);
    store.write_spans(vec![big.clone(), small]).await.unwrap();
    let ids = [
        TraceId::from_slice(&big.scope_spans[0].spans[0].trace_id).unwrap(),
        TraceId([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
    ];
    let names = |t: &meshtel_model::Trace| -> Vec<String> {
        let mut spans: Vec<&Span> = t.resource_spans[0].scope_spans[0].spans.iter().collect();
        spans.sort_by_key(|s| s.start_time_unix_nano);
        spans.iter().map(|s| s.name.clone()).collect()
    };
    for phase in ["head", "block"] {
        let got = store.get_traces(&ids, 13).await.unwrap();
        assert_eq!(got.len(), 2, "{phase}");
        assert_eq!(got[0].trace_id, ids[0], "{phase}: asked order");
        assert_eq!(got[0].span_count(), 10, "{phase}");
        assert_eq!(got[0].omitted_spans, 30, "{phase}");
        let want: Vec<String> = ["GET /".to_string()]
            .into_iter()
            .chain((1..10).map(|i| format!("call-{i}")))
            .collect();
        assert_eq!(names(&got[0]), want, "{phase}: the earliest spans");
        assert_eq!(
            (got[1].span_count(), got[1].omitted_spans),
            (3, 0),
            "{phase}"
        );

        let found = store
            .find_traces(&TraceQuery {
                max_spans: Some(13),
                ..query("frontend")
            })
            .await
            .unwrap();
        let counts: Vec<(usize, u64)> = found
            .iter()
            .map(|t| (t.span_count(), t.omitted_spans))
            .collect();
        assert_eq!(counts, vec![(3, 0), (10, 30)], "{phase}: newest first");

        // Far over the bound: cut while read too (to the bound once a read holds
        // twice it), with the same outcome.
        let tight = store.get_traces(&ids, 3).await.unwrap();
        assert_eq!(names(&tight[0]), ["GET /", "call-1"], "{phase}");
        assert_eq!((tight[0].omitted_spans, tight[1].omitted_spans), (38, 2));
        let whole = store.get_traces(&ids, 43).await.unwrap();
        assert_eq!((whole[0].span_count(), whole[0].omitted_spans), (40, 0));

        // Fewer spans than traces: the small trace is left out whole, and said to be
        // (not dropped as if it were not stored).
        let one = store.get_traces(&ids, 1).await.unwrap();
        let shape = |traces: &[meshtel_model::Trace]| -> Vec<(usize, u64, bool)> {
            traces
                .iter()
                .map(|t| (t.span_count(), t.omitted_spans, t.is_left_out()))
                .collect()
        };
        assert_eq!(shape(&one), [(1, 39, false), (0, 3, true)], "{phase}");
        assert_eq!(one[1].trace_id, ids[1], "{phase}");
        assert_eq!(names(&one[0]), ["GET /"], "{phase}");
        let found = store
            .find_traces(&TraceQuery {
                max_spans: Some(1),
                ..query("frontend")
            })
            .await
            .unwrap();
        assert_eq!(shape(&found), [(0, 3, true), (1, 39, false)], "{phase}: newest first");
        store.flush().await.unwrap();
    }
    let stats = store.stats();
    assert_eq!((stats.traces_cut, stats.spans_omitted), (16, 368));
    store.shutdown().await.unwrap();
}

/// The metadata cached of blocks compaction replaced is dropped with them: a long-lived
/// process that searches as blocks come and go keeps the live blocks' only (it kept
/// every block's until the caches' bounds, 82 MiB between them).
#[tokio::test]
async fn cached_block_metadata_goes_with_the_blocks_compaction_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_five_blocks(dir.path(), "cached").await;
    // A search reads every block through DataFusion, a fetch through its own cache.
    assert_eq!(ids(&store, &query("cached")).await.len(), 5);
    for seed in 1..=5 {
        assert!(store.get_trace(trace_id(seed)).await.unwrap().is_some());
    }
    assert_eq!(store.inner.searcher.cached_blocks(), (5, 5));
    store.compact_now().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(store.inner.searcher.cached_blocks(), (0, 0));
    assert_eq!(ids(&store, &query("cached")).await.len(), 5);
    assert!(store.get_trace(trace_id(3)).await.unwrap().is_some());
    assert_eq!(store.inner.searcher.cached_blocks(), (1, 1));
    store.shutdown().await.unwrap();
}

/// Only the resource column holds packed entries: a span attribute whose entry reads
/// like a packing (key `\u{1}4:a`, value `x`: `\u{1}4:a\0sx`) is matched as itself,
/// never as the entry `a=x` it would unpack to.
#[tokio::test]
async fn a_span_attribute_that_reads_like_a_packing_is_matched_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let mut spans = trace(1, "frontend", 2, *T0, 1000);
    spans.scope_spans[0].spans[0]
        .attributes
        .push(kv("\u{1}4:a", s("x")));
    store.write_spans(vec![spans]).await.unwrap();
    let with = |key: &str, value: &str| {
        let mut q = query("frontend");
        q.tags = vec![(key.to_string(), value.to_string())];
        q
    };
    for phase in ["head", "block"] {
        assert_eq!(ids(&store, &with("\u{1}4:a", "x")).await.len(), 1, "{phase}");
        assert!(ids(&store, &with("a", "x")).await.is_empty(), "{phase}");
        store.flush().await.unwrap();
    }
    store.shutdown().await.unwrap();
}
