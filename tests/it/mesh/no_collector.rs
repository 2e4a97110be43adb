//! A proxy whose collector was never there.

use std::time::Duration;

use tonic::service::Routes;

use crate::support::*;

use super::{reviews_app, write_mesh};

/// The reviews app behind an inbound proxy reporting to `collector`, with `extra`
/// flags.
pub(super) async fn reviews_behind_a_proxy(
    dir: &TestDir,
    collector: &str,
    extra: &[&str],
) -> (AppServer, MeshProxy) {
    let mesh_path = dir.path().join("mesh.yaml");
    write_mesh(&mesh_path, "services: []\n");
    let app = AppServer::start(Routes::from(reviews_app())).await;
    let inbound = format!("127.0.0.1:0={}", app.authority());
    let mut args = vec![
        "--mesh",
        mesh_path.to_str().unwrap(),
        "--service",
        "reviews",
        "--inbound",
        &inbound,
        "--collector",
        collector,
    ];
    args.extend_from_slice(extra);
    let proxy = MeshProxy::start(dir, "reviews-v1", &args).await;
    (app, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_a_collector_serves_and_stops() {
    let dir = TestDir::new();
    let collector = format!("http://{}", closed_address());
    let (app, proxy) = reviews_behind_a_proxy(
        &dir,
        &collector,
        &[
            "--version",
            "v1",
            "--sampling",
            "100",
            "--report-queue",
            "8",
        ],
    )
    .await;
    assert_eq!(get(&proxy.admin_url("/ready")).await.status, 200);
    let client = http();
    for _ in 0..20 {
        let reply = client
            .get(format!("http://{}/reviews/1", proxy.inbound()))
            .header(
                "traceparent",
                format!(
                    "00-{}-{}-01",
                    hex::encode(random_trace_id()),
                    hex::encode(random_span_id())
                ),
            )
            .send()
            .await
            .expect("GET /reviews/1");
        assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    }
    // 20 records, a queue of 8, nobody to send them to: at least 12 dropped and counted.
    eventually(
        Duration::from_secs(5),
        "dropped records counted",
        || async {
            let dropped = proxy.stat("meshtel_proxy_reports_dropped_total", &[]).await;
            (dropped >= 12.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        proxy
            .stat("meshtel_proxy_reports_accepted_total", &[])
            .await,
        0.0
    );
    // Shutdown does not hang on the unreachable collector: drain, bounded flush, exit 0.
    let took = proxy.stop(Duration::from_secs(10)).await;
    eprintln!("proxy stopped {took:?} after SIGTERM with the collector unreachable");
    app.stop().await;
}

/// An app that refuses connections: its proxy answers 503 `UF` and says so in its log,
/// once per 10 s with the count and the last failure (upstream, error), not once per
/// request and not never (before, it logged at debug level only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_logged_once_per_interval() {
    let dir = TestDir::new();
    let collector = format!("http://{}", closed_address());
    let (app, proxy) = reviews_behind_a_proxy(&dir, &collector, &["--version", "v1"]).await;
    app.stop().await;
    let client = http();
    for _ in 0..30 {
        let reply = client
            .get(format!("http://{}/reviews/1", proxy.inbound()))
            .send()
            .await
            .expect("GET /reviews/1");
        assert_eq!(reply.status(), 503);
    }
    let log = proxy.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("requests the proxy answered itself"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("UF") && lines[0].contains("count=1"),
        "{}",
        lines[0]
    );
    proxy.stop(Duration::from_secs(10)).await;
}

/// A collector stand-in: counts the spans it is sent.
#[derive(Clone, Default)]
struct SpanCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for SpanCounter
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        self.0.fetch_add(
            span_count(request.get_ref()),
            std::sync::atomic::Ordering::SeqCst,
        );
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_wait_for_a_collector_that_comes_back() {
    let dir = TestDir::new();
    let port = ClosedPort::new();
    let collector = format!("http://{}", port.addr);
    let (app, proxy) = reviews_behind_a_proxy(&dir, &collector, &["--sampling", "100"]).await;
    let client = http();
    for _ in 0..20 {
        let reply = client
            .get(format!("http://{}/reviews/1", proxy.inbound()))
            .send()
            .await
            .expect("GET /reviews/1");
        assert_eq!(reply.status(), 200);
    }
    // The exports fail while nobody listens (the batch waits 1 s, then is refused).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = SpanCounter::default();
    let listener = port.listen();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
                    received.clone(),
                ),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    eventually(
        Duration::from_secs(20),
        "the 20 spans, sent again",
        || async { (received.0.load(std::sync::atomic::Ordering::SeqCst) >= 20).then_some(()) },
    )
    .await;
    assert_eq!(received.0.load(std::sync::atomic::Ordering::SeqCst), 20);
    assert_eq!(
        proxy.stat("meshtel_proxy_spans_dropped_total", &[]).await,
        0.0
    );
    server.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_streams_do_not_hold_up_the_collectors_shutdown() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    // An inbound proxy holds a Report stream and a quota watch open.
    let collector = format!("http://{}", m.grpc.unwrap());
    let (app, proxy) = reviews_behind_a_proxy(&dir, &collector, &[]).await;
    let reply = http()
        .get(format!("http://{}/reviews/1", proxy.inbound()))
        .send()
        .await
        .expect("GET /reviews/1");
    assert_eq!(reply.status(), 200);
    let streams_open = || async {
        let report = proxy.stat("meshtel_proxy_report_stream_open", &[]).await;
        let watch = proxy.stat("meshtel_proxy_quota_watch_open", &[]).await;
        (report, watch)
    };
    eventually(
        Duration::from_secs(10),
        "the Report stream and the policy watch open",
        || async {
            let connects = proxy
                .stat("meshtel_proxy_report_stream_connects_total", &[])
                .await;
            (connects >= 1.0 && streams_open().await == (1.0, 1.0)).then_some(())
        },
    )
    .await;
    let started = std::time::Instant::now();
    m.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the collector took {took:?} to stop with a proxy attached"
    );
    // Both gauges say the streams are down once the collector has gone.
    eventually(
        Duration::from_secs(10),
        "the proxy to see both streams down",
        || async { (streams_open().await == (0.0, 0.0)).then_some(()) },
    )
    .await;
    app.stop().await;
}
