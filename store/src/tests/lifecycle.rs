//! The store over time: catalog, WAL replay, retention, overload, readers, memory bound.

use super::*;

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
    store
        .write_spans(vec![cross.clone(), child.clone()])
        .await
        .unwrap();
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
    // An exporter's retry stores the spans again (once in a block, once in the head):
    // still two calls, not four.
    store.write_spans(vec![cross, child]).await.unwrap();
    assert_eq!(
        store
            .dependencies(*T0 + 1_000_000_000, 2_000_000_000)
            .await
            .unwrap(),
        links
    );
    store.shutdown().await.unwrap();
    // The catalog survives a restart.
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.services().await.unwrap(), vec!["backend", "frontend"]);
    store.shutdown().await.unwrap();
}

/// A child in the window whose parent started before it still makes a link, as long as
/// the parent started at most one window (and an hour) earlier.
#[tokio::test]
async fn dependencies_find_a_parent_that_started_before_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let minute = 60_000_000_000u64;
    let parent = trace(2, "batch", 1, *T0, 40 * minute);
    let mut child = trace(2, "db", 1, *T0 + 30 * minute, 1000);
    child.scope_spans[0].spans[0].span_id[0] = 77;
    child.scope_spans[0].spans[0].parent_span_id = parent.scope_spans[0].spans[0].span_id.clone();
    store.write_spans(vec![parent, child]).await.unwrap();
    let link = vec![DependencyLink {
        parent: "batch".into(),
        child: "db".into(),
        call_count: 1,
    }];
    for phase in ["head", "block"] {
        // The window holds the child only: 20..40 min, the parent at 0 min.
        let end = *T0 + 40 * minute;
        assert_eq!(
            store.dependencies(end, 20 * minute).await.unwrap(),
            link,
            "{phase}"
        );
        // A 5 min window (25..30 min] looks 5 min further back only: not to 0 min.
        assert!(
            store
                .dependencies(*T0 + 30 * minute, 5 * minute)
                .await
                .unwrap()
                .is_empty(),
            "{phase}"
        );
        store.flush().await.unwrap();
    }
    store.shutdown().await.unwrap();
}

/// Zipkin-style RPCs put the client and the server side under one span id: the server
/// side is called by the client side even when the client span starts the trace, and
/// the server side's own children (whose parent id names both) are no further calls.
#[tokio::test]
async fn dependencies_of_shared_span_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let span = |service: &str, kind: i32, id: u8, parent: Option<u8>| {
        let mut rs = trace(5, service, 1, *T0 + u64::from(id) * 1000, 1000);
        let span = &mut rs.scope_spans[0].spans[0];
        span.kind = kind;
        span.span_id = vec![5, id, 0, 0, 0, 0, 0, 1];
        span.parent_span_id = parent
            .map(|p| vec![5, p, 0, 0, 0, 0, 0, 1])
            .unwrap_or_default();
        rs
    };
    // gamma's client span 1 starts the trace; delta serves it as span 1 too, works in
    // span 2 and calls epsilon with span 3, which epsilon serves as span 4; and calls
    // zeta with span 5, which zeta serves as span 5 too, with the client's parent.
    let spans = vec![
        span("gamma", 3, 1, None),
        span("delta", 2, 1, None),
        span("delta", 1, 2, Some(1)),
        span("delta", 3, 3, Some(1)),
        span("epsilon", 2, 4, Some(3)),
        span("delta", 3, 5, Some(1)),
        span("zeta", 2, 5, Some(1)),
    ];
    store.write_spans(spans).await.unwrap();
    assert_calls_in_head_and_block(
        &store,
        &[("delta", "epsilon"), ("delta", "zeta"), ("gamma", "delta")],
    )
    .await;
    store.shutdown().await.unwrap();
}

/// The dependencies of the second after `T0` are one call for each (parent, child) of
/// `calls`, sorted, first from the head, then from a block.
async fn assert_calls_in_head_and_block(store: &TraceStore, calls: &[(&str, &str)]) {
    let expected: Vec<DependencyLink> = calls
        .iter()
        .map(|(parent, child)| DependencyLink {
            parent: (*parent).into(),
            child: (*child).into(),
            call_count: 1,
        })
        .collect();
    for phase in ["head", "block"] {
        let mut links = store
            .dependencies(*T0 + 1_000_000_000, 2_000_000_000)
            .await
            .unwrap();
        links.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        assert_eq!(links, expected, "{phase}");
        store.flush().await.unwrap();
    }
}

/// A span without a parent id is called from the span its links name in its own trace:
/// a `child_of` link first, else the first link (Jaeger's `FOLLOWS_FROM`); a link to
/// another trace calls nothing.
#[tokio::test]
async fn dependencies_of_spans_parented_by_links() {
    use meshtel_model::otlp::common::v1::{AnyValue, KeyValue, any_value};
    use meshtel_model::otlp::trace::v1::span::Link;
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let span = |service: &str, id: u8| {
        let mut rs = trace(6, service, 1, *T0 + u64::from(id) * 1000, 1000);
        let span = &mut rs.scope_spans[0].spans[0];
        span.span_id = vec![6, id, 0, 0, 0, 0, 0, 1];
        span.parent_span_id.clear();
        rs
    };
    let link = |trace_id: &[u8], id: u8, child_of: bool| Link {
        trace_id: trace_id.to_vec(),
        span_id: vec![6, id, 0, 0, 0, 0, 0, 1],
        attributes: child_of
            .then(|| KeyValue {
                key: "opentracing.ref_type".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("child_of".into())),
                }),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let (producer, scheduler) = (span("producer", 1), span("scheduler", 2));
    let trace_id = producer.scope_spans[0].spans[0].trace_id.clone();
    let other_trace = vec![9; 16];
    // consumer: a follows-from link to producer. worker: links to producer, then a
    // child_of link to scheduler, which wins. orphan: a link to another trace only.
    let mut consumer = span("consumer", 3);
    consumer.scope_spans[0].spans[0].links = vec![link(&trace_id, 1, false)];
    let mut worker = span("worker", 4);
    worker.scope_spans[0].spans[0].links =
        vec![link(&trace_id, 1, false), link(&trace_id, 2, true)];
    let mut orphan = span("orphan", 5);
    orphan.scope_spans[0].spans[0].links = vec![link(&other_trace, 1, true)];
    store
        .write_spans(vec![producer, scheduler, consumer, worker, orphan])
        .await
        .unwrap();
    assert_calls_in_head_and_block(&store, &[("producer", "consumer"), ("scheduler", "worker")])
        .await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_commit_is_an_fsync_counted_with_sync_always() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.wal.sync = crate::config::WalSync::Always;
    let store = TraceStore::open(cfg).await.unwrap();
    assert_eq!(store.stats().wal_fsyncs, 0);
    for n in 0..3 {
        store
            .write_spans(vec![trace(200 + n, "synced", 1, *T0, 1000)])
            .await
            .unwrap();
    }
    // One commit per write here (each waited for its ack); the interval syncer has
    // nothing left to sync.
    assert_eq!(store.stats().wal_fsyncs, 3);
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

/// Size retention deletes the oldest blocks past the bound; a bound of 0 is none, not
/// "keep nothing".
#[tokio::test]
async fn retention_by_size_deletes_the_oldest_and_zero_is_no_bound() {
    for (max_bytes, kept) in [(0u64, 2usize), (1, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.retention_max_bytes = bytesize::ByteSize::b(max_bytes);
        let store = TraceStore::open(cfg).await.unwrap();
        for (n, service) in [(1, "older"), (2, "newer")] {
            store
                .write_spans(vec![trace(n, service, 2, *T0 + u64::from(n), 1000)])
                .await
                .unwrap();
            store.flush().await.unwrap();
        }
        compaction::run_once(&store.inner, (*T0 + 1_000_000_000) as i64)
            .await
            .unwrap();
        assert_eq!(
            store.stats().blocks as usize,
            kept,
            "retention_max_bytes {max_bytes}"
        );
        assert_eq!(
            ids(&store, &query("newer")).await.len(),
            kept / 2,
            "{max_bytes}"
        );
        store.shutdown().await.unwrap();
    }
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
            Err(ModelError::Overloaded { bound, .. }) => {
                // Names the bound reached (the WAL writer's queue can fill first).
                assert!(
                    bound.contains("max_head_rows") || bound.contains("WAL"),
                    "{bound}"
                );
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    store.flush().await.unwrap();
    let stored = store.stats().block_spans as usize;
    assert_eq!(stored, 4 + (50 - refused) * 4);
    store.shutdown().await.unwrap();
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
        Err(ModelError::Unavailable(_))
    ));
    reader.shutdown().await.unwrap();
    writer.shutdown().await.unwrap();
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
            Err(ModelError::Overloaded { retry_after, bound }) => {
                assert!(retry_after > Duration::ZERO);
                assert!(bound.contains("[store] max_head_bytes"), "{bound}");
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

/// The WAL sync thread waits out its interval interruptibly: shutdown does not wait for
/// the rest of a long `wal.sync_interval`, and still syncs once more before it ends.
#[tokio::test]
async fn shutdown_does_not_wait_for_the_wal_sync_interval_and_syncs_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.wal.sync_interval = crate::config::MAX_WAL_SYNC_INTERVAL;
    let store = TraceStore::open(cfg.clone()).await.unwrap();
    store
        .write_spans(vec![trace(1, "acked", 3, *T0, 1000)])
        .await
        .unwrap();
    assert_eq!(store.stats().wal_fsyncs, 0, "no interval has passed");
    let started = std::time::Instant::now();
    store.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert!(store.stats().wal_fsyncs >= 1, "the last sync did not run");
    let reopened = TraceStore::open(cfg).await.unwrap();
    assert_eq!(ids(&reopened, &query("acked")).await.len(), 1);
    reopened.shutdown().await.unwrap();
}

/// One service's many operations fill `max_catalog_operations`; a service seen later is
/// still listed (and after a restart, and by a reader), its spans searchable.
#[tokio::test]
async fn a_noisy_service_does_not_keep_a_later_service_out_of_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_catalog_operations = 3;
    let store = TraceStore::open(cfg.clone()).await.unwrap();
    // Four operations: "GET /", "call-1", "call-2", "call-3".
    store
        .write_spans(vec![trace(1, "noisy", 4, *T0, 1000)])
        .await
        .unwrap();
    store
        .write_spans(vec![trace(2, "checkout", 1, *T0, 1000)])
        .await
        .unwrap();
    assert_eq!(store.services().await.unwrap(), vec!["checkout", "noisy"]);
    assert_eq!(store.operations("noisy", None).await.unwrap().len(), 3);
    assert!(store.operations("checkout", None).await.unwrap().is_empty());
    assert_eq!(store.stats().catalog_overflow, 2);
    assert_eq!(ids(&store, &query("checkout")).await.len(), 1);
    store.shutdown().await.unwrap();

    let reopened = TraceStore::open(cfg.clone()).await.unwrap();
    assert_eq!(
        reopened.services().await.unwrap(),
        vec!["checkout", "noisy"]
    );
    let reader = TraceStore::open_read_only(cfg, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(reader.services().await.unwrap(), vec!["checkout", "noisy"]);
    reader.shutdown().await.unwrap();
    reopened.shutdown().await.unwrap();
}

#[tokio::test]
async fn services_written_just_before_shutdown_are_listed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut expected = Vec::new();
    for seed in 1..=8u8 {
        let store = TraceStore::open(cfg.clone()).await.unwrap();
        let service = format!("svc-{seed}");
        store
            .write_spans(vec![trace(seed, &service, 2, *T0, 1000)])
            .await
            .unwrap();
        store.shutdown().await.unwrap();
        expected.push(service);
        let reopened = TraceStore::open(cfg.clone()).await.unwrap();
        assert_eq!(
            reopened.services().await.unwrap(),
            expected,
            "after restart {seed}"
        );
        reopened.shutdown().await.unwrap();
    }
}

/// Retention deletes a service's last spans: the catalog stops listing it, in memory,
/// in SQL (a restart) and in a read-only store's reload; a live service stays.
#[tokio::test]
async fn retention_forgets_services_whose_spans_are_all_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // The slack is then the 1 s floor.
    cfg.retention_max_age = Duration::from_secs(2);
    let store = TraceStore::open(cfg.clone()).await.unwrap();
    let reader = TraceStore::open_read_only(cfg.clone(), Duration::from_millis(50))
        .await
        .unwrap();
    let now = || now_unix_nano() as u64;
    store
        .write_spans(vec![trace(1, "gone", 2, now(), 1000)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    // Past the retention age and its 1 s slack.
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    store
        .write_spans(vec![trace(2, "live", 2, now(), 1000)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.services().await.unwrap(), vec!["gone", "live"]);

    store.compact_now().await.unwrap();
    assert_eq!(store.stats().blocks, 1, "retention deleted the first block");
    assert_eq!(store.services().await.unwrap(), vec!["live"]);
    assert!(store.operations("gone", None).await.unwrap().is_empty());
    assert_eq!(store.operations("live", None).await.unwrap().len(), 2);
    // One service and its two operations.
    assert_eq!(store.stats().catalog_forgotten, 3);

    // The reader hears of it from SQL.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while reader.services().await.unwrap() != vec!["live"] {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader still lists {:?}",
            reader.services().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.shutdown().await.unwrap();
    store.shutdown().await.unwrap();
    let reopened = TraceStore::open(cfg).await.unwrap();
    assert_eq!(reopened.services().await.unwrap(), vec!["live"]);
    reopened.shutdown().await.unwrap();
}

/// When a flush returns, SQL lists the services of its spans: their WAL segments are
/// gone, so a crash right after could not list them again.
#[tokio::test]
async fn a_flushed_block_has_its_catalog_entries_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    for (i, service) in ["a", "b", "c"].into_iter().enumerate() {
        store
            .write_spans(vec![trace(i as u8, service, 2, *T0, 1000)])
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let catalog = Catalog::open(copy.path()).await.unwrap();
    let mut services: Vec<String> = catalog
        .load_services()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    services.sort();
    assert_eq!(services, vec!["a", "b", "c"]);
    assert_eq!(catalog.load_operations().await.unwrap().len(), 6);
    catalog.close().await;
    store.shutdown().await.unwrap();
}

/// A service whose spans are all dated ahead of the collector's clock (every block in
/// the future) stays listed while it sends, however short the retention.
#[tokio::test]
async fn a_service_dated_ahead_of_the_clock_stays_listed_while_it_sends() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention_max_age = Duration::from_secs(2);
    let store = TraceStore::open(cfg).await.unwrap();
    let ahead = now_unix_nano() as u64 + 86_400_000_000_000;
    store
        .write_spans(vec![trace(1, "ahead", 2, ahead, 1000)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    // Past the 1 s slack, within the retention age.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    store.compact_now().await.unwrap();
    assert_eq!(store.services().await.unwrap(), vec!["ahead"]);
    assert_eq!(store.stats().catalog_forgotten, 0);
    store.shutdown().await.unwrap();
}

/// Shutdown during a merge: the merge is given up (its output deleted) or finishes and
/// is indexed, never left on disk unindexed to be set aside at the next start; and
/// every span is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_merge_leaves_no_unindexed_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    // Eight blocks, large enough for a merge to take a while.
    for block in 0..8u8 {
        let traces = (0..40u8)
            .map(|t| trace(t, "svc", 250, *T0 + u64::from(block) * 1_000_000_000, 1_000))
            .collect();
        store.write_spans(traces).await.unwrap();
        store.flush().await.unwrap();
    }
    let spans = store.stats().block_spans;
    assert_eq!((store.stats().blocks, spans), (8, 8 * 40 * 250));
    store.shutdown().await.unwrap();

    let merging = TraceStore::open(StoreConfig {
        compaction_interval: Duration::from_millis(50),
        ..config(dir.path())
    })
    .await
    .unwrap();
    let blocks_dir = dir.path().join("blocks");
    let in_progress = || {
        std::fs::read_dir(&blocks_dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    };
    let started = std::time::Instant::now();
    while !in_progress() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no merge started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    merging.shutdown().await.unwrap();
    // Without the fix, a merge's blocking thread went on after shutdown and renamed
    // its output into place; give it the time it would take.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!in_progress(), "a merge wrote on after shutdown");

    let reopened = TraceStore::open(config(dir.path())).await.unwrap();
    let orphaned = blocks_dir.join(crate::block_files::ORPHANED_DIR);
    let set_aside = std::fs::read_dir(&orphaned).map_or(0, |d| d.count());
    assert_eq!(set_aside, 0, "blocks set aside in {}", orphaned.display());
    assert_eq!(reopened.stats().block_spans, spans);
    assert_eq!(reopened.stats().blocks_unreadable, 0);
    reopened.shutdown().await.unwrap();
}

/// A dependencies query that needs more than `max_query_memory` is refused as
/// unavailable, naming the setting; the data is fine, so no block is set aside, and
/// with the default bound the same query answers.
#[tokio::test]
async fn a_query_over_the_memory_bound_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write_parent_child_traces(dir.path()).await;

    let tight = TraceStore::open(StoreConfig {
        max_query_memory: bytesize::ByteSize::kib(16),
        ..config(dir.path())
    })
    .await
    .unwrap();
    let refused = tight.dependencies(*T0 + 1_000_000_000, 2_000_000_000).await;
    match refused {
        Err(meshtel_model::Error::Unavailable(message)) => {
            assert!(message.contains("store.max_query_memory"), "{message}");
        }
        other => panic!("want Unavailable, got {other:?}"),
    }
    assert_eq!(tight.stats().blocks_unreadable, 0);
    assert_eq!(tight.stats().query_memory_refusals, 1);
    tight.shutdown().await.unwrap();

    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let links = store
        .dependencies(*T0 + 1_000_000_000, 2_000_000_000)
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].call_count, 40 * 200);
    assert_eq!(store.stats().query_memory_refusals, 0);
    store.shutdown().await.unwrap();
}

/// Dependency queries that each fit the memory bound but not together all answer:
/// they take turns, first come first served, instead of failing each other.
#[tokio::test]
async fn dependency_queries_that_fit_one_at_a_time_all_answer_together() {
    let dir = tempfile::tempdir().unwrap();
    write_parent_child_traces(dir.path()).await;
    let with_bound = |kib: u64| {
        TraceStore::open(StoreConfig {
            max_query_memory: bytesize::ByteSize::kib(kib),
            ..config(dir.path())
        })
    };
    let window = (*T0 + 1_000_000_000, 2_000_000_000);
    // The least bound (to 1 KiB) one query fits in.
    let (mut refused, mut fits) = (16u64, 1u64 << 20);
    while fits - refused > 1 {
        let mid = (refused + fits) / 2;
        let store = with_bound(mid).await.unwrap();
        match store.dependencies(window.0, window.1).await {
            Ok(_) => fits = mid,
            Err(_) => refused = mid,
        }
        store.shutdown().await.unwrap();
    }
    let store = std::sync::Arc::new(with_bound(fits * 3 / 2).await.unwrap());
    let queries: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.dependencies(window.0, window.1).await })
        })
        .collect();
    for query in queries {
        let links = query.await.unwrap().unwrap();
        assert_eq!(links[0].call_count, 40 * 200);
    }
    assert_eq!(store.stats().query_memory_refusals, 0);
}

/// Forty traces of a `frontend` root and 200 `backend` children, flushed to a block.
async fn write_parent_child_traces(dir: &std::path::Path) {
    let store = TraceStore::open(config(dir)).await.unwrap();
    for seed in 0..40u8 {
        let root = trace(seed, "frontend", 1, *T0 + u64::from(seed), 1000);
        let mut child = trace(seed, "backend", 200, *T0 + u64::from(seed) + 10, 1000);
        for span in &mut child.scope_spans[0].spans {
            span.span_id[0] = 99;
            span.parent_span_id = root.scope_spans[0].spans[0].span_id.clone();
        }
        store.write_spans(vec![root, child]).await.unwrap();
    }
    store.flush().await.unwrap();
    store.shutdown().await.unwrap();
}

/// A span stored again as it was (an exporter's retry, in the head or across a flush)
/// comes back once; a second report of its id that differs (a Zipkin span reported in
/// parts) comes back too, as Jaeger keeps both.
#[tokio::test]
async fn an_identical_span_comes_back_once_and_a_different_report_of_its_id_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    let first = trace(9, "parts", 1, *T0, 1_000);
    let id = TraceId(
        first.scope_spans[0].spans[0]
            .trace_id
            .clone()
            .try_into()
            .unwrap(),
    );
    let spans = |trace: &meshtel_model::Trace| -> Vec<String> {
        trace
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    };
    store.write_spans(vec![first.clone()]).await.unwrap();
    store.write_spans(vec![first.clone()]).await.unwrap();
    store.flush().await.unwrap();
    store.write_spans(vec![first.clone()]).await.unwrap();
    let trace = store.get_trace(id).await.unwrap().unwrap();
    assert_eq!(spans(&trace).len(), 1, "{:?}", spans(&trace));
    let mut second = first.clone();
    second.scope_spans[0].spans[0].name = "second part".into();
    store.write_spans(vec![second]).await.unwrap();
    let trace = store.get_trace(id).await.unwrap().unwrap();
    let mut names = spans(&trace);
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"second part".to_string()), "{names:?}");
    store.shutdown().await.unwrap();
}
