//! A collector whose `[report]` bounds are smaller than a proxy's batches: nothing is
//! sent again forever, and what is left out is counted.

use std::time::Duration;

use crate::support::*;

use super::no_collector::reviews_behind_a_proxy;

const REQUESTS: usize = 60;

/// `REQUESTS` calls at once through `proxy`'s inbound port, so that its records
/// leave in a few large batches.
async fn burst(proxy: &MeshProxy) {
    let client = http();
    let calls = (0..REQUESTS).map(|_| {
        let client = client.clone();
        let url = format!("http://{}/reviews/1", proxy.inbound());
        tokio::spawn(async move { client.get(url).send().await.expect("GET").status() })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.expect("call task"), 200);
    }
}

/// The sum of every sample of `name` on the collector's /metrics.
async fn collector_total(meshtel: &Meshtel, name: &str) -> f64 {
    let text = get(&meshtel.http_url("/metrics")).await.text();
    parse_prometheus_text(&text)
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_collector_takes_is_sent_again_in_halves() {
    let dir = TestDir::new();
    let meshtel =
        Meshtel::serve_with_config(&dir, "[report]\nmax_message_bytes = \"1 KiB\"\n").await;
    let collector = format!("http://{}", meshtel.grpc.expect("grpc listener"));
    let (app, proxy) =
        reviews_behind_a_proxy(&dir, &collector, &["--version", "v1", "--sampling", "0"]).await;
    burst(&proxy).await;
    // Within seconds: before, each split cost a reconnect with backoff (60 requests
    // took 75-105 s).
    eventually(
        Duration::from_secs(15),
        "every request in istio_requests_total",
        || async {
            let total = collector_total(&meshtel, "istio_requests_total").await;
            (total >= REQUESTS as f64).then_some(())
        },
    )
    .await;
    // Each once: acknowledgements still on their way when a refusal ended the call
    // are read, not taken for lost (before: 65-69 counted of 60).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        collector_total(&meshtel, "istio_requests_total").await,
        REQUESTS as f64
    );
    assert_eq!(
        proxy
            .stat("meshtel_proxy_reports_accepted_total", &[])
            .await,
        REQUESTS as f64
    );
    assert!(proxy.stat("meshtel_proxy_reports_resent_total", &[]).await >= 1.0);
    assert_eq!(
        proxy.stat("meshtel_proxy_reports_dropped_total", &[]).await,
        0.0
    );
    assert_eq!(
        proxy
            .stat("meshtel_proxy_reports_rejected_total", &[])
            .await,
        0.0
    );
    assert!(
        proxy.log_text().contains("sent again in two halves"),
        "{}",
        proxy.log_text()
    );
    proxy.stop(Duration::from_secs(10)).await;
    app.stop().await;
    meshtel.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_the_batch_bound_are_counted_and_the_batch_is_not_sent_again() {
    let dir = TestDir::new();
    let meshtel = Meshtel::serve_with_config(&dir, "[report]\nmax_records_per_batch = 2\n").await;
    let collector = format!("http://{}", meshtel.grpc.expect("grpc listener"));
    let (app, proxy) =
        reviews_behind_a_proxy(&dir, &collector, &["--version", "v1", "--sampling", "0"]).await;
    burst(&proxy).await;
    let (taken, rejected) = eventually(
        Duration::from_secs(20),
        "every record taken or counted as rejected",
        || async {
            let taken = collector_total(&meshtel, "istio_requests_total").await;
            let rejected = collector_total(&meshtel, "meshtel_report_records_rejected_total").await;
            (taken + rejected == REQUESTS as f64).then_some((taken, rejected))
        },
    )
    .await;
    assert!(
        taken >= 2.0 && rejected >= 1.0,
        "{taken} taken, {rejected} rejected"
    );
    assert_eq!(
        proxy
            .stat("meshtel_proxy_reports_accepted_total", &[])
            .await,
        taken
    );
    // The proxy counts what the collector refused too.
    assert_eq!(
        proxy
            .stat("meshtel_proxy_reports_rejected_total", &[])
            .await,
        rejected
    );
    // Answered, so never sent again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        proxy.stat("meshtel_proxy_reports_resent_total", &[]).await,
        0.0
    );
    proxy.stop(Duration::from_secs(10)).await;
    app.stop().await;
    meshtel.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_too_large_for_the_collector_are_dropped_before_they_are_sent() {
    let dir = TestDir::new();
    let meshtel =
        Meshtel::serve_with_config(&dir, "[report]\nmax_message_bytes = \"1 KiB\"\n").await;
    let collector = format!("http://{}", meshtel.grpc.expect("grpc listener"));
    // Five labels of 240 bytes: each record is over 2 KiB.
    let long = |prefix: &str| format!("{prefix}-{}", "w".repeat(240));
    let (version, workload, namespace, app_name) = (long("v"), long("wl"), long("ns"), long("app"));
    let (app, proxy) = reviews_behind_a_proxy(
        &dir,
        &collector,
        &[
            "--sampling",
            "0",
            "--version",
            &version,
            "--workload",
            &workload,
            "--namespace",
            &namespace,
            "--app",
            &app_name,
        ],
    )
    .await;
    let client = http();
    for _ in 0..40 {
        let url = format!("http://{}/reviews/1", proxy.inbound());
        assert_eq!(client.get(url).send().await.expect("GET").status(), 200);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eventually(Duration::from_secs(15), "every record dropped", || async {
        let dropped = proxy.stat("meshtel_proxy_reports_dropped_total", &[]).await;
        (dropped == 40.0).then_some(())
    })
    .await;
    // Once the collector stated its limit, records that cannot fit are dropped before
    // they are sent: not each sent to end a stream and have the backlog sent again
    // (before: a stream and a WARN per record, and the resends grew with the square).
    let connects = proxy
        .stat("meshtel_proxy_report_stream_connects_total", &[])
        .await;
    assert!(connects <= 3.0, "{connects} streams");
    let resent = proxy.stat("meshtel_proxy_reports_resent_total", &[]).await;
    assert!(resent <= 40.0, "{resent} resent");
    let warnings = proxy
        .log_text()
        .matches("larger than the collector takes")
        .count();
    assert!(warnings <= 3, "{warnings} warnings:\n{}", proxy.log_text());
    assert_eq!(collector_total(&meshtel, "istio_requests_total").await, 0.0);
    proxy.stop(Duration::from_secs(10)).await;
    app.stop().await;
    meshtel.stop().await;
}

/// Report and WatchQuotas streams are bounded in number, all connections together:
/// one past `[report] max_streams` is refused `UNAVAILABLE` naming the setting, and a
/// stream that ends gives its turn back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_streams_past_the_bound_are_refused_until_one_ends() {
    use meshtel_model::mixer::mixer_client::MixerClient;
    use meshtel_model::mixer::{ReportRequest, WatchQuotasRequest};

    let dir = TestDir::new();
    let meshtel = Meshtel::serve_with_config(&dir, "[report]\nmax_streams = 2\n").await;
    let endpoint = format!("http://{}", meshtel.grpc.expect("grpc listener"));
    // Each on a connection of its own: the bound is the process's, not a connection's.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            MixerClient::connect(endpoint.clone())
                .await
                .expect("connect"),
        );
    }
    let report = |client: &mut MixerClient<tonic::transport::Channel>| {
        let mut client = client.clone();
        async move {
            let (batches, rx) = futures::channel::mpsc::unbounded();
            batches
                .unbounded_send(ReportRequest {
                    proxy_id: "bounded".into(),
                    ..Default::default()
                })
                .unwrap();
            let acks = client.report(rx).await;
            (batches, acks)
        }
    };
    let (first_batches, first) = report(&mut clients[0]).await;
    let mut first = first.expect("first stream").into_inner();
    first.message().await.unwrap().expect("first ack");
    let watch = clients[1]
        .watch_quotas(WatchQuotasRequest::default())
        .await
        .expect("second stream");
    let (_third_batches, third) = report(&mut clients[2]).await;
    let refused = third.expect_err("a third stream is refused");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("[report] max_streams"),
        "{refused:?}"
    );
    assert_eq!(
        collector_total(&meshtel, "meshtel_grpc_streams_open").await,
        2.0
    );
    assert_eq!(
        collector_total(&meshtel, "meshtel_grpc_streams_refused_total").await,
        1.0
    );
    // The first ends: its turn is free again.
    drop(first_batches);
    while first.message().await.ok().flatten().is_some() {}
    drop(first);
    eventually(Duration::from_secs(5), "a turn given back", || async {
        (collector_total(&meshtel, "meshtel_grpc_streams_open").await == 1.0).then_some(())
    })
    .await;
    let (_again_batches, again) = report(&mut clients[2]).await;
    let mut again = again.expect("a stream once one ended").into_inner();
    again.message().await.unwrap().expect("ack");
    drop(watch);
    meshtel.stop().await;
}
