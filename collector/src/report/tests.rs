#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};

use meshtel_model::mixer::mixer_client::MixerClient;
use parking_lot::Mutex;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

use super::*;
use crate::mesh_metrics::tests::{record, render, sample};

struct FixedClock(AtomicU64);

impl UnixClock for FixedClock {
    fn now_unix_nano(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct CollectEdges(Mutex<Vec<RequestRecord>>);

impl EdgeSink for CollectEdges {
    fn record_edges(&self, records: &[&RequestRecord]) {
        self.0.lock().extend(records.iter().map(|r| (*r).clone()));
    }
}

const NOW: u64 = 1_700_000_000_000_000_000;

fn reports(config: ReportConfig) -> (Reports, Arc<CollectEdges>) {
    let edges = Arc::new(CollectEdges::default());
    let metrics = MeshMetrics::new(&config.metrics).unwrap();
    let reports = Reports::new(
        metrics,
        Some(edges.clone()),
        Arc::new(FixedClock(AtomicU64::new(NOW))),
        config,
    );
    (reports, edges)
}

fn batch(records: Vec<RequestRecord>) -> ReportRequest {
    ReportRequest {
        proxy_id: "reviews-v2-abc".into(),
        records,
        dropped_since_last: 3,
        sent_unix_nano: NOW - 250_000_000,
    }
}

#[test]
fn bad_records_are_counted_not_fatal() {
    let (reports, edges) = reports(ReportConfig::default());
    let mut records = vec![record(200, 1); 4];
    records.push(RequestRecord {
        reporter: 0,
        ..record(200, 1)
    });
    records.push(record(1200, 1));
    let mut long = record(200, 1);
    long.destination_service = "x".repeat(1000);
    records.push(long);
    let response = reports.digest(&batch(records)).unwrap();
    assert_eq!(response.accepted, 4);
    assert_eq!(edges.0.lock().len(), 4);
    let text = render(reports.metrics());
    assert_eq!(
        sample(&text, "meshtel_report_records_total", &[]),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "meshtel_report_records_rejected_total", &[]),
        Some(3.0)
    );
    // By reason, each series present from 0.
    for (reason, n) in [
        ("reporter", 1.0),
        ("response_code", 1.0),
        ("label_too_long", 1.0),
        ("grpc_response_status", 0.0),
        ("max_records_per_batch", 0.0),
    ] {
        let labels = [("reason", reason)];
        let counted = sample(&text, "meshtel_report_records_rejected_total", &labels);
        assert_eq!(counted, Some(n), "{reason}");
    }
    assert_eq!(
        sample(&text, "meshtel_report_batches_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "meshtel_report_dropped_by_proxies_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "meshtel_report_lag_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "meshtel_report_lag_seconds_sum", &[]),
        Some(0.25)
    );
    assert_eq!(sample(&text, "istio_requests_total", &[]), Some(4.0));
}

#[test]
fn records_past_the_batch_bound_are_counted_as_rejected_and_the_rest_taken() {
    let (reports, edges) = reports(ReportConfig {
        max_records_per_batch: 2,
        ..ReportConfig::default()
    });
    // Answered, not refused: a refused batch came back at every reconnect.
    let response = reports.digest(&batch(vec![record(200, 1); 3])).unwrap();
    assert_eq!(response.accepted, 2);
    assert_eq!(edges.0.lock().len(), 2);
    let text = render(reports.metrics());
    assert_eq!(
        sample(
            &text,
            "meshtel_report_records_rejected_total",
            &[("reason", "max_records_per_batch")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "istio_requests_total", &[]), Some(2.0));
}

#[test]
fn default_config_round_trips() {
    let config = ReportConfig::default();
    config.validate().unwrap();
    let text = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<ReportConfig>(&text).unwrap(), config);
    assert_eq!(serde_json::from_str::<ReportConfig>("{}").unwrap(), config);
    assert!(serde_json::from_str::<ReportConfig>(r#"{"nope":1}"#).is_err());
    assert!(
        ReportConfig {
            max_records_per_batch: 0,
            ..ReportConfig::default()
        }
        .validate()
        .is_err()
    );
}

#[tokio::test]
async fn report_stream_acknowledges_each_batch_in_order() {
    let (reports, edges) = reports(ReportConfig {
        max_records_per_batch: 100,
        ..ReportConfig::default()
    });
    let metrics = reports.metrics().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(report_grpc_service(reports))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop_rx.await;
            }),
    );

    let mut client = MixerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut responses = client
        .report(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let sizes = [5usize, 1, 40];
    for (i, &n) in sizes.iter().enumerate() {
        let code = [200, 404, 503][i];
        tx.send(batch(vec![record(code, 2); n])).await.unwrap();
        let ack = responses.message().await.unwrap().unwrap();
        assert_eq!(ack.accepted, n as u64);
    }
    // istio_build counts the open stream.
    let text = render(&metrics);
    assert_eq!(sample(&text, "istio_build", &[]), Some(1.0));

    // A batch over the limit is answered, its records past it counted as rejected:
    // the stream goes on.
    tx.send(batch(vec![record(404, 2); 101])).await.unwrap();
    let ack = responses.message().await.unwrap().unwrap();
    assert_eq!(ack.accepted, 100);
    drop(tx);

    let text = render(&metrics);
    for (code, n) in [("200", 5.0), ("404", 101.0), ("503", 40.0)] {
        assert_eq!(
            sample(
                &text,
                "istio_requests_total",
                &[("response_code", code), ("reporter", "destination")]
            ),
            Some(n),
            "{code}"
        );
    }
    assert_eq!(
        sample(&text, "meshtel_report_batches_total", &[]),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "meshtel_report_records_rejected_total", &[]),
        Some(1.0)
    );
    assert_eq!(edges.0.lock().len(), 146);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = render(&metrics);
        if sample(&text, "istio_build", &[]) == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

/// Digest rate through [`Reports::digest`] with metrics and an edge sink (run with
/// `--ignored --nocapture`, in release).
#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn report_digest_rate() {
    let metrics = MeshMetrics::new(&MeshMetricsConfig::default()).unwrap();
    let reports = Reports::new(
        metrics,
        None,
        Arc::new(SystemUnixClock),
        ReportConfig::default(),
    );
    let requests: Vec<ReportRequest> = (0..20)
        .map(|b| {
            batch(
                (0..500)
                    .map(|i| record([200, 200, 200, 404, 503][(i + b) % 5], (i % 300) as u64))
                    .collect(),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let mut total = 0u64;
    for _ in 0..50 {
        for request in &requests {
            total += reports.digest(request).unwrap().accepted;
        }
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("report digest (metrics only): {rate:.0} records/s");
}
