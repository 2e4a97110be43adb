//! A proxy whose collector was never there.

use std::time::Duration;

use tonic::service::Routes;

use crate::support::*;

use super::{reviews_app, write_mesh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_a_collector_serves_and_stops() {
    let dir = TestDir::new();
    let collector = format!("http://{}", closed_address());
    let mesh_path = dir.path().join("mesh.yaml");
    write_mesh(&mesh_path, "services: []\n");
    let app = AppServer::start(Routes::from(reviews_app())).await;
    let inbound = format!("127.0.0.1:0={}", app.authority());
    let proxy = MeshProxy::start(
        &dir,
        "reviews-v1",
        &[
            "--mesh",
            mesh_path.to_str().unwrap(),
            "--service",
            "reviews",
            "--version",
            "v1",
            "--inbound",
            &inbound,
            "--collector",
            &collector,
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
