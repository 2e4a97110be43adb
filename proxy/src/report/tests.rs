use super::*;
use meshtel_model::log_window::LOG_INTERVAL;

#[test]
fn drops_are_logged_at_the_first_then_once_per_interval_with_their_count() {
    let log = DropLog::new("report", "meshtel_proxy_reports_dropped_total");
    let t0 = std::time::Instant::now();
    assert_eq!(
        log.dropped(1, t0),
        Some(1),
        "the first drop is logged at once"
    );
    assert_eq!(log.dropped(1, t0 + Duration::from_millis(1)), None);
    assert_eq!(
        log.dropped(5, t0 + Duration::from_secs(1)),
        None,
        "quiet within the interval"
    );
    assert_eq!(
        log.dropped(2, t0 + LOG_INTERVAL),
        Some(8),
        "the next line counts every drop since the last"
    );
    assert_eq!(log.dropped(1, t0 + LOG_INTERVAL), None);
    assert_eq!(
        log.tick(t0 + LOG_INTERVAL + Duration::from_secs(1)),
        None,
        "not due yet"
    );
    assert_eq!(
        log.tick(t0 + LOG_INTERVAL * 2),
        Some(1),
        "the timer tells a burst's last drops"
    );
    assert_eq!(log.tick(t0 + LOG_INTERVAL * 3), None, "nothing untold");
}

/// Takes batches as the Report stream does until the producer is done; how many items.
async fn take_in_batches(receiver: &mut mpsc::Receiver<u32>, half_full: &HalfFull) -> usize {
    let mut seen = 0;
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        gather(
            receiver,
            half_full,
            &mut batch,
            MAX_BATCH_RECORDS,
            BATCH_LINGER,
        )
        .await;
        seen += batch.len();
    }
    seen
}

/// Queues `count` items, `burst` every `every` (the timer ticks in milliseconds),
/// then stops.
fn produce(sender: BatchSender<u32>, count: u32, every: Duration, burst: u32) {
    tokio::spawn(async move {
        for i in 0..count {
            if i % burst == 0 {
                tokio::time::sleep(every).await;
            }
            send(&sender, i);
        }
    });
}

/// Queues `item` as the request path does; panics when the queue is full.
fn send(sender: &BatchSender<u32>, item: u32) {
    if !sender.try_send(item) {
        panic!("item {item} found the queue full");
    }
}

#[test]
fn an_encoded_batch_decodes_as_the_report_request_it_stands_for() {
    let record = |path: &str, code: u32| meshtel_model::mixer::RequestRecord {
        request_path: path.to_owned(),
        response_code: code,
        destination_service: "reviews.default.svc.cluster.local".to_owned(),
        source: Some(meshtel_model::mixer::Workload {
            name: "productpage-v1".to_owned(),
            ..Default::default()
        }),
        start_unix_nano: 1_700_000_000_000_000_000,
        ..Default::default()
    };
    // A record longer than 127 bytes takes a two-byte length prefix.
    let long = record(&format!("/{}", "x".repeat(300)), 200);
    let records = vec![record("/a", 200), long, record("/b", 503)];
    let expected = ReportRequest {
        proxy_id: "productpage-v1-1".to_owned(),
        records: records.clone(),
        dropped_since_last: 7,
        sent_unix_nano: 42,
    };
    let head = ReportRequest {
        records: Vec::new(),
        ..expected.clone()
    };
    let batch = EncodedBatch {
        head,
        records: records.iter().map(Message::encode_to_vec).collect(),
    };
    let mut encoded = Vec::new();
    batch.encode_into(&mut encoded);
    assert_eq!(
        ReportRequest::decode(&encoded[..]).expect("decodes"),
        expected
    );
    assert_eq!(encoded.len(), expected.encoded_len());
}

#[tokio::test]
async fn a_slow_stream_is_taken_twice_per_batch_and_a_fast_one_fills_it_early() {
    // 100 items/s: the batch waits out its linger, taking from the queue at most
    // twice more, not every 10 ms.
    let (sender, mut receiver, half_full) = batch_channel(10_000);
    produce(sender, 1_000, Duration::from_millis(10), 1);
    let mut batch = vec![receiver.recv().await.expect("first item")];
    let started = Instant::now();
    let takes = gather(
        &mut receiver,
        &half_full,
        &mut batch,
        MAX_BATCH_RECORDS,
        BATCH_LINGER,
    )
    .await;
    assert!(started.elapsed() >= BATCH_LINGER);
    assert!((5..=12).contains(&batch.len()), "{} items", batch.len());
    assert!(takes <= 3, "{takes} takes");

    // 50,000 items/s: full long before the linger ends.
    let (sender, mut receiver, half_full) = batch_channel(10_000);
    produce(sender, 5_000, Duration::from_millis(1), 50);
    let mut batch = vec![receiver.recv().await.expect("first item")];
    let started = Instant::now();
    gather(
        &mut receiver,
        &half_full,
        &mut batch,
        MAX_BATCH_RECORDS,
        BATCH_LINGER,
    )
    .await;
    assert_eq!(batch.len(), MAX_BATCH_RECORDS);
    assert!(started.elapsed() < BATCH_LINGER, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_sparse_span_stream_is_taken_once_per_linger() {
    // 20 spans/s into a queue of 2,048 with a 1 s linger (the span exporter's
    // shape): the batch sleeps through its linger instead of waking every 10 ms.
    let (sender, mut receiver, half_full) = batch_channel(2_048);
    produce(sender, 40, Duration::from_millis(50), 1);
    let mut batch = vec![receiver.recv().await.expect("first item")];
    let takes = gather(
        &mut receiver,
        &half_full,
        &mut batch,
        512,
        Duration::from_secs(1),
    )
    .await;
    assert!(takes <= 3, "{takes} takes");
    assert!((15..=25).contains(&batch.len()), "{} items", batch.len());
}

#[tokio::test]
async fn a_burst_after_a_quiet_start_does_not_overflow_the_queue() {
    // One item, 15 quiet ms (long enough for the rate so far to promise a slow
    // batch), then 50 items a millisecond: the queue of 1,000 must never fill
    // (the producer panics if it does).
    let (sender, mut receiver, half_full) = batch_channel(1_000);
    tokio::spawn(async move {
        send(&sender, 0);
        tokio::time::sleep(Duration::from_millis(15)).await;
        for i in 1..=4_000 {
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            send(&sender, i);
        }
    });
    let seen = take_in_batches(&mut receiver, &half_full).await;
    assert_eq!(seen, 4_001);
}

#[tokio::test]
async fn a_burst_wakes_a_batch_lingering_over_a_sparse_stream() {
    // A batch lingering for a second over a quiet queue of 1,000: 550 items at once
    // pass half full and wake it, so it fills (500) long before its linger ends.
    // Without the wake it would sleep on, at the rate the first item promised.
    let (sender, mut receiver, half_full) = batch_channel(1_000);
    send(&sender, 0);
    let mut batch = vec![receiver.recv().await.expect("first item")];
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        for i in 1..=550 {
            send(&sender, i);
        }
    });
    let started = Instant::now();
    gather(
        &mut receiver,
        &half_full,
        &mut batch,
        500,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(batch.len(), 500);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_small_queue_is_taken_from_before_it_fills() {
    // A queue of 100 at 2,000 items/s: waits stay short enough that the producer
    // never finds it full (it panics if it does).
    let (sender, mut receiver, half_full) = batch_channel(100);
    produce(sender, 400, Duration::from_millis(1), 2);
    let seen = take_in_batches(&mut receiver, &half_full).await;
    assert_eq!(seen, 400);
}

#[test]
fn the_limit_a_refusal_states_is_read() {
    assert_eq!(
        stated_limit("Error, decoded message length too large: found 2322 bytes, the limit is: 1024 bytes"),
        Some(1024)
    );
    assert_eq!(stated_limit("Error decompressing: size limit, of 1024 bytes, exceeded"), None);
    assert_eq!(stated_limit("the limit is: "), None);
}

/// Reconnect delays double from 100 ms to 10 s, each spread ± 20 %: proxies that lost
/// the collector together do not all come back in the same instant.
#[test]
fn reconnect_delays_double_and_are_spread() {
    let mut expected = INITIAL_BACKOFF;
    let mut distinct = std::collections::BTreeSet::new();
    let mut reconnect = Reconnect::new("test");
    for _ in 0..12 {
        let delay = reconnect.next_delay();
        assert!(delay >= expected.mul_f64(0.8) && delay <= expected.mul_f64(1.2), "{delay:?} for {expected:?}");
        expected = (expected * 2).min(MAX_BACKOFF);
    }
    for _ in 0..50 {
        distinct.insert(Reconnect::new("test").next_delay());
    }
    assert!(distinct.len() > 10, "first delays not spread: {distinct:?}");
}
