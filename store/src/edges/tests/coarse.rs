//! Old rollups summed into coarse buckets.

use super::*;
use meshtel_model::graph::bucket_ceil;

const HOUR: u64 = 3600 * SEC;
/// When every period of [`traffic`] is older than the default `coarse_after` (1 h).
const LATER: u64 = 2 * HOUR;
/// A coarse (5 min) bucket boundary.
const P0: u64 = (T0 / (300 * SEC) + 1) * 300 * SEC;

/// Requests of two edges every 7 s for 17 minutes from `P0 + 2 min`, each recorded as
/// it starts and the buckets written as they close, with latencies in whole ms (so
/// that sums in any order are exact).
async fn traffic(rollups: &EdgeRollups, clock: &TestClock) -> u64 {
    let mut at = P0 + 120 * SEC;
    let mut sent = 0;
    while at < P0 + 1140 * SEC {
        clock.set(at);
        let mut slow = record(at, 503, 40 + sent % 900);
        slow.destination_service = "ratings.default.svc.cluster.local".into();
        let records = [record(at, 200, 1 + sent % 30), slow];
        rollups.record(&records.iter().collect::<Vec<_>>());
        rollups.flush_closed().await.unwrap();
        sent += 2;
        at += 7 * SEC;
    }
    clock.set(at + 60 * SEC);
    rollups.flush_closed().await.unwrap();
    assert_eq!(rollups.snapshot().open_buckets, 0);
    sent
}

/// Writes a 10 s row of one request at `at` as another collector would.
async fn late_row(rollups: &EdgeRollups, at: u64) {
    let late = record(at, 200, 3);
    let mut stats = EdgeStats::default();
    stats.add_record(&late);
    let mut conn = rollups.inner.pool.acquire().await.unwrap();
    let start_ms = i64::try_from(at / 1_000_000).unwrap();
    insert_row(
        &mut conn,
        start_ms,
        10,
        &EdgeKey::from_record(&late),
        &stats,
    )
    .await
    .unwrap();
}

/// Requests of every stored rollup, read two hours on.
async fn requests_stored(rollups: &EdgeRollups) -> u64 {
    rollups
        .edges_between(P0, P0 + LATER)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stats.requests)
        .sum()
}

async fn coarsen_all(rollups: &EdgeRollups) -> Vec<Coarsened> {
    let mut done = Vec::new();
    while let Some(one) = rollups.coarsen_oldest().await.unwrap() {
        done.push(one);
    }
    done
}

#[tokio::test]
async fn old_rollups_are_summed_per_coarse_bucket_and_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let sent = traffic(&rollups, &clock).await;
    let fine_rows = sql_rows(&rollups).await;

    // Younger than coarse_after (1 h): left alone.
    clock.set(P0 + HOUR);
    assert_eq!(rollups.coarsen_oldest().await.unwrap(), None);

    // Two hours on, every period of the traffic is past it. Windows that start
    // inside a coarse period read it whole, before the sums as after.
    clock.set(P0 + LATER);
    let reads = || async {
        (
            rollups
                .edges_between(P0 + 150 * SEC, P0 + LATER)
                .await
                .unwrap(),
            rollups
                .edges_between(P0 + 400 * SEC, P0 + 700 * SEC)
                .await
                .unwrap(),
            rollups
                .edge_buckets_between(P0, P0 + LATER, Duration::from_secs(600))
                .await
                .unwrap(),
        )
    };
    let before = reads().await;
    let done = coarsen_all(&rollups).await;
    // 2 min .. 19 min: the periods at 0, 5, 10 and 15 minutes, two edges each.
    let starts: Vec<i64> = done.iter().map(|d| d.period_start_ms).collect();
    let p0_ms = i64::try_from(P0 / 1_000_000).unwrap();
    assert_eq!(starts, [0, 300_000, 600_000, 900_000].map(|ms| p0_ms + ms));
    assert!(done.iter().all(|d| d.coarse_rows == 2));
    assert_eq!(
        done.iter().map(|d| d.fine_rows).sum::<u64>(),
        u64::try_from(fine_rows).unwrap()
    );
    assert_eq!(sql_rows(&rollups).await, 8);
    let after = reads().await;
    assert_eq!(before, after);
    let total: u64 = after.0.iter().map(|e| e.stats.requests).sum();
    assert_eq!(total, sent);
    // 400 s .. 700 s reads the coarse periods at 300 and 600 s whole.
    let buckets = rollups.buckets_at(P0 + LATER);
    assert_eq!(buckets.floor(P0 + 400 * SEC), P0 + 300 * SEC);
    assert_eq!(buckets.coarse_before, P0 + HOUR);
    let middle: u64 = after.1.iter().map(|e| e.stats.requests).sum();
    assert_eq!(
        middle,
        2 * (600 / 7 + 1),
        "two coarse periods of two edges every 7 s"
    );
    // Nothing is left to sum.
    assert_eq!(rollups.coarsen_oldest().await.unwrap(), None);
}

#[tokio::test]
async fn a_late_fine_row_in_a_summed_period_is_summed_again() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let sent = traffic(&rollups, &clock).await;
    clock.set(P0 + LATER);
    coarsen_all(&rollups).await;
    // A second collector, hours behind, writes a bucket of the first period.
    late_row(&rollups, P0 + 130 * SEC).await;
    assert_eq!(requests_stored(&rollups).await, sent + 1);
    let again = coarsen_all(&rollups).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].fine_rows, again[0].coarse_rows), (1, 1));
    assert_eq!(
        requests_stored(&rollups).await,
        sent + 1,
        "the period's two coarse rows add up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_summing_at_once_count_every_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let sent = traffic(&rollups, &clock).await;
    clock.set(P0 + LATER);
    let other = EdgeRollups::open(dir.path(), EdgeConfig::default(), clock.clone())
        .await
        .unwrap();
    let (mine, theirs) = tokio::join!(coarsen_all(&rollups), coarsen_all(&other));
    let periods: std::collections::BTreeSet<i64> = mine
        .iter()
        .chain(&theirs)
        .filter(|d| d.fine_rows > 0)
        .map(|d| d.period_start_ms)
        .collect();
    assert_eq!(periods.len(), 4, "{mine:?} {theirs:?}");
    assert_eq!(sql_rows(&rollups).await, 8, "{mine:?} {theirs:?}");
    assert_eq!(requests_stored(&rollups).await, sent);
}

#[tokio::test]
async fn a_row_landing_in_a_period_while_it_is_summed_stops_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let sent = traffic(&rollups, &clock).await;
    clock.set(P0 + LATER);
    let mut conn = rollups.inner.pool.acquire().await.unwrap();
    let sums = rollups.sum_oldest(&mut conn).await.unwrap().unwrap();
    // Another collector writes a bucket of that period.
    late_row(&rollups, P0 + 250 * SEC).await;
    let rows = sql_rows(&rollups).await;
    let done = rollups.write_sums(&mut conn, sums).await.unwrap();
    drop(conn);
    assert_eq!((done.fine_rows, done.coarse_rows), (0, 0));
    assert_eq!(sql_rows(&rollups).await, rows, "nothing written");
    let done = coarsen_all(&rollups).await;
    assert_eq!(done.len(), 4);
    assert_eq!(requests_stored(&rollups).await, sent + 1);
}

#[tokio::test]
async fn rows_summed_under_earlier_settings_are_still_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let sent = traffic(&rollups, &clock).await;
    clock.set(P0 + LATER);
    coarsen_all(&rollups).await;
    let reads = |rollups: EdgeRollups| async move {
        (
            rollups
                .edges_between(P0 + 400 * SEC, P0 + 700 * SEC)
                .await
                .unwrap(),
            rollups
                .edge_buckets_between(P0, P0 + LATER, Duration::from_secs(300))
                .await
                .unwrap(),
        )
    };
    let expected = reads(rollups.clone()).await;
    assert_eq!(
        expected
            .1
            .iter()
            .map(|(_, e)| e.stats.requests)
            .sum::<u64>(),
        sent
    );
    // Coarse buckets turned off, or a longer coarse_after: the summed rows still read
    // in whole 5-minute buckets, up to the end of the newest one (20 minutes in).
    let off = EdgeConfig {
        coarse_bucket: Duration::from_secs(10),
        ..Default::default()
    };
    let later = EdgeConfig {
        coarse_after: Duration::from_secs(6 * 3600),
        ..Default::default()
    };
    for config in [off, later] {
        let reopened = EdgeRollups::open(dir.path(), config.clone(), clock.clone())
            .await
            .unwrap();
        let buckets = reopened.read_buckets(P0 + LATER).await.unwrap();
        assert_eq!(buckets.coarse, Duration::from_secs(300), "{config:?}");
        assert_eq!(buckets.coarse_before, P0 + 1200 * SEC, "{config:?}");
        assert_eq!(reads(reopened).await, expected, "{config:?}");
    }
}

#[tokio::test]
async fn coarse_buckets_are_pruned_by_their_end_and_never_begin_after_now() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    traffic(&rollups, &clock).await;
    clock.set(P0 + LATER);
    coarsen_all(&rollups).await;
    // Retention (7 days) ends two minutes into the first coarse bucket: it stays.
    let week = 7 * 24 * HOUR;
    clock.set(P0 + week + 120 * SEC);
    assert_eq!(rollups.prune().await.unwrap(), 0);
    clock.set(P0 + week + 300 * SEC);
    assert_eq!(
        rollups.prune().await.unwrap(),
        2,
        "the first bucket's two edges"
    );

    // A bucket summed while the clock ran a day ahead begins coarse buckets no later
    // than now.
    sqlx::query("UPDATE edge_rollup_coarse SET until_unix_ms = until_unix_ms + 86400000")
        .execute(&rollups.inner.pool)
        .await
        .unwrap();
    let now = P0 + LATER + 7 * SEC;
    let buckets = rollups.read_buckets(now).await.unwrap();
    assert_eq!(
        buckets.coarse_before,
        bucket_ceil(now, Duration::from_secs(300))
    );
}

#[tokio::test]
async fn the_background_task_sums_old_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    traffic(&rollups, &clock).await;
    clock.set(P0 + LATER);
    rollups.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sql_rows(&rollups).await != 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "not summed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rollups.shutdown().await.unwrap();
}

#[tokio::test]
async fn coarse_buckets_are_checked_and_can_be_turned_off() {
    let bad = EdgeConfig {
        coarse_bucket: Duration::from_secs(45),
        ..Default::default()
    };
    let error = bad.validate().unwrap_err().to_string();
    assert!(
        error.contains("coarse_bucket (45s)") && error.contains("bucket (10s)"),
        "{error}"
    );
    let soon = EdgeConfig {
        coarse_after: Duration::from_secs(60),
        ..Default::default()
    };
    assert!(
        soon.validate()
            .unwrap_err()
            .to_string()
            .contains("coarse_after")
    );

    // A bucket that does not divide the default 5 minutes still starts.
    let odd = EdgeConfig {
        bucket: Duration::from_secs(120),
        ..Default::default()
    };
    odd.validate().unwrap();
    assert_eq!(odd.coarse_len(), Duration::from_secs(360));
    let long = EdgeConfig {
        bucket: Duration::from_secs(600),
        ..Default::default()
    };
    long.validate().unwrap();
    assert!(!long.is_coarsened());

    let off = EdgeConfig {
        coarse_bucket: Duration::from_secs(10),
        ..Default::default()
    };
    off.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let rollups = EdgeRollups::open(dir.path(), off, clock.clone())
        .await
        .unwrap();
    traffic(&rollups, &clock).await;
    let rows = sql_rows(&rollups).await;
    clock.set(P0 + LATER);
    assert_eq!(rollups.coarsen_oldest().await.unwrap(), None);
    assert_eq!(sql_rows(&rollups).await, rows);
    assert_eq!(
        rollups.buckets_at(P0 + LATER),
        meshtel_model::graph::Buckets::uniform(Duration::from_secs(10))
    );
}

/// Rows written at a `bucket` length changed since are summed too, though no row of
/// their periods has the length of today.
#[tokio::test]
async fn rows_of_an_earlier_bucket_length_are_summed() {
    let dir = tempfile::tempdir().unwrap();
    let (rollups, clock) = rollups(dir.path()).await;
    let sent = traffic(&rollups, &clock).await;
    let longer = EdgeConfig {
        bucket: Duration::from_secs(30),
        ..Default::default()
    };
    let reopened = EdgeRollups::open(dir.path(), longer, clock.clone())
        .await
        .unwrap();
    clock.set(P0 + LATER);
    let done = coarsen_all(&reopened).await;
    assert!(!done.is_empty(), "the 10 s rows are summed");
    let mut conn = reopened.inner.pool.acquire().await.unwrap();
    let fine: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM edge_rollups WHERE bucket_seconds < 300")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(fine, 0, "no fine row left");
    drop(conn);
    assert_eq!(requests_stored(&reopened).await, sent);
}
