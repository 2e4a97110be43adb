#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshtel_model::mixer::{Reporter, Workload};

use super::*;
use meshtel_model::graph::LATENCY_SLOTS;
use sqlx::Row;

const SEC: u64 = 1_000_000_000;
/// A bucket boundary.
const T0: u64 = 1_700_000_000 * SEC;
/// The default bucket.
const BUCKET: Duration = Duration::from_secs(10);

struct TestClock(AtomicU64);

impl UnixClock for TestClock {
    fn now_unix_nano(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TestClock {
    fn set(&self, unix_nano: u64) {
        self.0.store(unix_nano, Ordering::Relaxed);
    }
}

fn workload(name: &str, app: &str, version: &str) -> Option<Workload> {
    Some(Workload {
        name: name.into(),
        namespace: "default".into(),
        app: app.into(),
        version: version.into(),
        ..Default::default()
    })
}

fn record(start: u64, code: u32, ms: u64) -> RequestRecord {
    RequestRecord {
        reporter: Reporter::Source as i32,
        source: workload("productpage-v1", "productpage", "v1"),
        destination: workload("reviews-v2", "reviews", "v2"),
        destination_service: "reviews.default.svc.cluster.local".into(),
        request_protocol: "http".into(),
        response_code: code,
        start_unix_nano: start,
        duration_nanos: ms * 1_000_000,
        request_bytes: 10,
        response_bytes: 100,
        ..Default::default()
    }
}

async fn rollups(dir: &Path) -> (EdgeRollups, Arc<TestClock>) {
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let rollups = EdgeRollups::open(dir, EdgeConfig::default(), clock.clone())
        .await
        .unwrap();
    (rollups, clock)
}

async fn sql_rows(rollups: &EdgeRollups) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM edge_rollups")
        .fetch_one(&rollups.inner.pool)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn buckets_roll_over_and_flush_only_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let records = [record(T0 + SEC, 200, 3), record(T0 + 2 * SEC, 503, 40)];
    rollups.record(&records.iter().collect::<Vec<_>>());
    // Still open (and within the grace period at 12 s).
    clock.set(T0 + 12 * SEC);
    assert_eq!(rollups.flush_closed().await.unwrap(), 0);
    let next = [record(T0 + 11 * SEC, 200, 3)];
    rollups.record(&next.iter().collect::<Vec<_>>());
    assert_eq!(rollups.snapshot().open_buckets, 2);
    // 10 s bucket + 5 s grace: the first bucket closes at 15 s.
    clock.set(T0 + 15 * SEC);
    assert_eq!(rollups.flush_closed().await.unwrap(), 1);
    assert_eq!(
        sql_rows(&rollups).await,
        2,
        "two edges (200 and 503) in the first bucket"
    );
    assert_eq!(rollups.snapshot().open_buckets, 1);

    // A record for the flushed bucket arriving late goes to the current bucket.
    let late = [record(T0 + 3 * SEC, 200, 3)];
    rollups.record(&late.iter().collect::<Vec<_>>());
    let window = rollups.edges_between(T0, T0 + 20 * SEC).await.unwrap();
    let total: u64 = window.iter().map(|e| e.stats.requests).sum();
    assert_eq!(
        total, 4,
        "SQL rows and open buckets are both read, once each"
    );
    let errors: u64 = window.iter().map(|e| e.stats.errors).sum();
    assert_eq!(errors, 1);
    // Only the second bucket.
    let later = rollups
        .edges_between(T0 + 10 * SEC, T0 + 20 * SEC)
        .await
        .unwrap();
    assert_eq!(later.iter().map(|e| e.stats.requests).sum::<u64>(), 2);

    rollups.shutdown().await.unwrap();
    assert_eq!(rollups.snapshot().open_buckets, 0);
    assert_eq!(sql_rows(&rollups).await, 3);
}

#[tokio::test]
async fn sql_round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let mut grpc = record(T0 + SEC, 200, 700);
    grpc.request_protocol = "grpc".into();
    grpc.grpc_response_status = Some(14);
    grpc.response_flags = "URX".into();
    grpc.reporter = Reporter::Destination as i32;
    if let (Some(source), Some(destination)) = (&mut grpc.source, &mut grpc.destination) {
        source.cluster = "east".into();
        destination.cluster = "west".into();
    }
    let records = [grpc.clone(), grpc.clone(), record(T0 + SEC, 200, 0)];
    rollups.record(&records.iter().collect::<Vec<_>>());
    let in_memory = rollups.edges_between(T0, T0 + 10 * SEC).await.unwrap();
    clock.set(T0 + 60 * SEC);
    rollups.flush_closed().await.unwrap();
    assert_eq!(rollups.snapshot().open_buckets, 0);
    let from_sql = rollups.edges_between(T0, T0 + 10 * SEC).await.unwrap();
    assert_eq!(in_memory, from_sql);
    let edge = from_sql.iter().find(|e| e.key.protocol == "grpc").unwrap();
    assert_eq!(edge.key, EdgeKey::from_record(&grpc));
    assert_eq!(edge.key.grpc_response_status, Some(14));
    assert_eq!(edge.key.response_flags, "URX");
    assert_eq!(edge.key.reporter, "destination");
    assert_eq!(edge.key.destination_app, "reviews");
    assert_eq!(
        (
            edge.key.source_cluster.as_str(),
            edge.key.destination_cluster.as_str()
        ),
        ("east", "west")
    );
    assert_eq!(edge.stats.requests, 2);
    assert_eq!(edge.stats.errors, 2);
    assert_eq!(edge.stats.request_bytes, 20);
    assert!((edge.stats.duration_sum_ms - 1400.0).abs() < 1e-9);
    assert_eq!(edge.stats.latency_buckets[9], 2, "700 ms is in (500, 1000]");

    // Rows reopened by a new repository (a restart) read the same.
    let (reopened, _) = super::tests::rollups(dir.path()).await;
    assert_eq!(
        reopened.edges_between(T0, T0 + 10 * SEC).await.unwrap(),
        from_sql
    );

    // A row written before the rollups kept clusters names none.
    sqlx::query(
        "INSERT INTO edge_rollups (bucket_start_unix_ms, bucket_seconds, source_workload, \
         source_namespace, source_app, source_version, destination_service, \
         destination_workload, destination_namespace, destination_version, protocol, \
         response_code, response_flags, reporter, request_count, error_count, \
         duration_sum_ms, latency_buckets, request_bytes, response_bytes) VALUES \
         ($1, 10, 'old-v1', 'default', 'old', 'v1', 'reviews.default.svc.cluster.local', \
         'reviews-v2', 'default', 'v2', 'http', 200, '-', 'source', 1, 0, 1.0, '', 0, 0)",
    )
    .bind(to_i64((T0 + 20 * SEC) / 1_000_000))
    .execute(&reopened.inner.pool)
    .await
    .unwrap();
    let old = reopened
        .edges_between(T0 + 20 * SEC, T0 + 30 * SEC)
        .await
        .unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].key.source_workload, "old-v1");
    assert_eq!(
        (
            old[0].key.source_cluster.as_str(),
            old[0].key.destination_cluster.as_str()
        ),
        ("", "")
    );
}

#[tokio::test]
async fn buckets_read_back_line_up_with_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let first = [
        record(T0 + SEC, 200, 3),
        record(T0 + 9 * SEC, 200, 7),
        record(T0 + 2 * SEC, 503, 40),
    ];
    rollups.record(&first.iter().collect::<Vec<_>>());
    clock.set(T0 + 12 * SEC);
    let second = [record(T0 + 11 * SEC, 200, 3)];
    rollups.record(&second.iter().collect::<Vec<_>>());
    // The first bucket goes to SQL, the second stays open.
    clock.set(T0 + 15 * SEC);
    assert_eq!(rollups.flush_closed().await.unwrap(), 1);
    // Another collector wrote the same bucket and edge: its row adds up with ours.
    let other_clock = Arc::new(TestClock(AtomicU64::new(T0 + 5 * SEC)));
    let other = EdgeRollups::with_pool(
        rollups.inner.pool.clone(),
        EdgeConfig::default(),
        other_clock,
    )
    .unwrap();
    let theirs = [record(T0 + 4 * SEC, 200, 3)];
    other.record(&theirs.iter().collect::<Vec<_>>());
    other.flush_all().await.unwrap();
    assert_eq!(sql_rows(&rollups).await, 3);

    let buckets = rollups
        .edge_buckets_between(T0, T0 + 20 * SEC, BUCKET)
        .await
        .unwrap();
    let t0_ms = T0 / 1_000_000;
    let summary: Vec<(u64, u32, u64, u64)> = buckets
        .iter()
        .map(|(ms, row)| {
            (
                *ms,
                row.key.response_code,
                row.stats.requests,
                row.stats.errors,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (t0_ms, 200, 3, 0),
            (t0_ms, 503, 1, 1),
            (t0_ms + 10_000, 200, 1, 0),
        ]
    );
    let ok = &buckets[0].1.stats;
    assert_eq!(ok.latency_buckets[2], 2, "two 3 ms requests in (1, 5]");
    assert_eq!(ok.latency_buckets[3], 1, "one 7 ms request in (5, 10]");
    assert!((ok.duration_sum_ms - 13.0).abs() < 1e-9);
    assert_eq!(buckets[0].1.key, EdgeKey::from_record(&first[0]));

    // Summed over buckets, the rows are the window's totals.
    let mut totals: HashMap<EdgeKey, EdgeStats> = HashMap::new();
    for (_, row) in &buckets {
        totals.entry(row.key.clone()).or_default().merge(&row.stats);
    }
    let mut totals: Vec<EdgeRow> = totals
        .into_iter()
        .map(|(key, stats)| EdgeRow { key, stats })
        .collect();
    totals.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        totals,
        rollups.edges_between(T0, T0 + 20 * SEC).await.unwrap()
    );

    // Windows are read in whole buckets: starting mid-bucket reads that bucket.
    let later = rollups
        .edge_buckets_between(T0 + 13 * SEC, T0 + 20 * SEC, BUCKET)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].0, t0_ms + 10_000);
    assert!(
        rollups
            .edge_buckets_between(T0 + 20 * SEC, T0 + 30 * SEC, BUCKET)
            .await
            .unwrap()
            .is_empty()
    );

    // Longer steps sum the buckets of each period, aligned to the step: T0 is 20 s
    // into a minute, so both buckets are in that minute. A zero step reads buckets.
    let minutes = rollups
        .edge_buckets_between(T0, T0 + 20 * SEC, Duration::from_secs(60))
        .await
        .unwrap();
    let summary: Vec<(u64, u32, u64)> = minutes
        .iter()
        .map(|(ms, row)| (*ms, row.key.response_code, row.stats.requests))
        .collect();
    assert_eq!(
        summary,
        vec![(t0_ms - 20_000, 200, 4), (t0_ms - 20_000, 503, 1)]
    );
    assert_eq!(
        rollups
            .edge_buckets_between(T0, T0 + 20 * SEC, Duration::ZERO)
            .await
            .unwrap(),
        buckets
    );

    // Once every bucket is in SQL, the answer is the same.
    rollups.flush_all().await.unwrap();
    assert_eq!(rollups.snapshot().open_buckets, 0);
    assert_eq!(
        rollups
            .edge_buckets_between(T0, T0 + 20 * SEC, BUCKET)
            .await
            .unwrap(),
        buckets
    );
}

#[tokio::test]
async fn retention_prunes_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let old = [record(T0, 200, 1)];
    rollups.record(&old.iter().collect::<Vec<_>>());
    clock.set(T0 + 3600 * SEC);
    let new = [record(T0 + 3600 * SEC, 200, 1)];
    rollups.record(&new.iter().collect::<Vec<_>>());
    rollups.flush_all().await.unwrap();
    assert_eq!(sql_rows(&rollups).await, 2);
    clock.set(T0 + 7 * 24 * 3600 * SEC + 10 * SEC);
    assert_eq!(rollups.prune().await.unwrap(), 1);
    assert_eq!(sql_rows(&rollups).await, 1);
}

#[tokio::test]
async fn grpc_statuses_are_edges_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let grpc = |status: Option<u32>| {
        let mut r = record(T0 + SEC, 200, 1);
        r.request_protocol = "grpc".into();
        r.grpc_response_status = status;
        r
    };
    let records = [
        grpc(Some(0)),
        grpc(Some(0)),
        grpc(Some(14)),
        grpc(None),
        record(T0 + SEC, 200, 1),
    ];
    rollups.record(&records.iter().collect::<Vec<_>>());
    clock.set(T0 + 60 * SEC);
    rollups.flush_closed().await.unwrap();
    let mut statuses: Vec<(Option<u32>, u64)> = rollups
        .edges_between(T0, T0 + 10 * SEC)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.key.grpc_response_status, e.stats.requests))
        .collect();
    statuses.sort();
    // No status on a gRPC response is Istio's 2 (UNKNOWN); HTTP has none.
    assert_eq!(
        statuses,
        [(None, 1), (Some(0), 2), (Some(2), 1), (Some(14), 1)]
    );
}

#[tokio::test]
async fn edges_per_bucket_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let config = EdgeConfig {
        max_edges_per_bucket: 2,
        ..EdgeConfig::default()
    };
    let rollups = EdgeRollups::open(dir.path(), config, clock).await.unwrap();
    let records: Vec<RequestRecord> = (0..4).map(|i| record(T0, 200 + i, 1)).collect();
    let overflow = rollups.record(&records.iter().collect::<Vec<_>>());
    assert_eq!(overflow, 2);
    // Existing edges still count.
    let again = [record(T0, 200, 1)];
    assert_eq!(rollups.record(&again.iter().collect::<Vec<_>>()), 0);
    assert_eq!(rollups.snapshot().overflow, 2);
}

/// While SQL refuses the rollups, buckets stay in memory up to `max_edges_in_memory`
/// edges; past it the oldest go, their requests counted, and the rest are written once
/// SQL takes them again.
#[tokio::test]
async fn buckets_sql_refuses_are_held_up_to_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let config = EdgeConfig {
        max_edges_per_bucket: 2,
        max_edges_in_memory: 4,
        ..EdgeConfig::default()
    };
    let rollups = EdgeRollups::open(dir.path(), config, clock.clone())
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER injected_fault BEFORE INSERT ON edge_rollups \
         BEGIN SELECT RAISE(ABORT, 'injected abort'); END;",
    )
    .execute(&rollups.inner.pool)
    .await
    .unwrap();
    // Three buckets of two edges each; the first holds three requests.
    for (start, codes) in [
        (T0, &[200, 200, 500][..]),
        (T0 + 10 * SEC, &[200, 500][..]),
        (T0 + 20 * SEC, &[200, 500][..]),
    ] {
        clock.set(start);
        let records: Vec<RequestRecord> = codes.iter().map(|&c| record(start, c, 1)).collect();
        assert_eq!(rollups.record(&records.iter().collect::<Vec<_>>()), 0);
    }
    clock.set(T0 + 40 * SEC);
    assert!(rollups.flush_closed().await.is_err());
    let held = rollups.snapshot();
    assert_eq!(held.dropped, 3, "{held:?}");
    assert_eq!(
        (held.open_buckets, held.edges_in_memory),
        (2, 4),
        "{held:?}"
    );
    // Within the bound nothing more goes.
    assert!(rollups.flush_closed().await.is_err());
    assert_eq!(rollups.snapshot().dropped, 3);

    sqlx::raw_sql("DROP TRIGGER injected_fault")
        .execute(&rollups.inner.pool)
        .await
        .unwrap();
    assert_eq!(rollups.flush_closed().await.unwrap(), 2);
    assert_eq!(sql_rows(&rollups).await, 4);
    assert_eq!(rollups.snapshot().edges_in_memory, 0);
}

#[test]
fn latency_bucket_text_round_trips() {
    let mut counts = [0u64; LATENCY_SLOTS];
    assert_eq!(encode_latency_buckets(&counts), "");
    assert_eq!(decode_latency_buckets("").unwrap(), counts);
    counts[0] = 3;
    counts[4] = 12;
    assert_eq!(encode_latency_buckets(&counts), "3,0,0,0,12");
    assert_eq!(decode_latency_buckets("3,0,0,0,12").unwrap(), counts);
    counts[LATENCY_SLOTS - 1] = 1;
    assert_eq!(
        decode_latency_buckets(&encode_latency_buckets(&counts)).unwrap(),
        counts
    );
    assert!(decode_latency_buckets("x").is_err());
    assert!(decode_latency_buckets(&vec!["1"; LATENCY_SLOTS + 1].join(",")).is_err());
}

#[test]
fn default_config_round_trips() {
    let config = EdgeConfig::default();
    config.validate().unwrap();
    let text = toml_like(&config);
    assert_eq!(serde_json::from_str::<EdgeConfig>(&text).unwrap(), config);
    assert_eq!(serde_json::from_str::<EdgeConfig>("{}").unwrap(), config);
    assert!(serde_json::from_str::<EdgeConfig>(r#"{"nope":1}"#).is_err());
    assert!(
        EdgeConfig {
            bucket: Duration::from_millis(1500),
            ..EdgeConfig::default()
        }
        .validate()
        .is_err()
    );
}

fn toml_like(config: &EdgeConfig) -> String {
    serde_json::to_string(config).unwrap()
}

/// A long read (many SQL rows) holds up neither a flush nor the reads behind it, and
/// still counts the bucket flushed during it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_read_does_not_hold_up_flushes_and_counts_each_bucket_once() {
    const ROWS: i64 = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    rollups.record(&[&record(T0 + SEC, 200, 3)]);
    clock.set(T0 + 60 * SEC);
    rollups.flush_closed().await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $1) \
         INSERT INTO edge_rollups SELECT e.* FROM edge_rollups e, n",
    )
    .bind(ROWS - 1)
    .execute(&rollups.inner.pool)
    .await
    .unwrap();
    assert_eq!(sql_rows(&rollups).await, ROWS);
    // One more request in a bucket that is closed but still in memory.
    clock.set(T0 + 22 * SEC);
    rollups.record(&[&record(T0 + 21 * SEC, 200, 3)]);
    clock.set(T0 + 60 * SEC);
    let total = |edges: &[EdgeRow]| edges.iter().map(|e| e.stats.requests).sum::<u64>();

    let started = std::time::Instant::now();
    let reader = rollups.clone();
    let long_read = tokio::spawn(async move {
        let edges = reader.edges_between(T0, T0 + 60 * SEC).await.unwrap();
        (edges, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rollups.flush_closed().await.unwrap(), 1);
    let flushed_after = started.elapsed();
    let (edges, read_took) = long_read.await.unwrap();
    assert!(
        flushed_after < read_took,
        "the flush waited for the read: flushed after {flushed_after:?}, read took {read_took:?}"
    );
    assert_eq!(total(&edges), ROWS as u64 + 1);
    // Summed in SQL, latency histograms included: one latency count per request.
    let latencies: u64 = edges
        .iter()
        .map(|e| e.stats.latency_buckets.iter().sum::<u64>())
        .sum();
    assert_eq!(latencies, ROWS as u64 + 1);
    let after = rollups.edges_between(T0, T0 + 60 * SEC).await.unwrap();
    assert_eq!(total(&after), ROWS as u64 + 1);
}

mod coarse;

mod read_time;
