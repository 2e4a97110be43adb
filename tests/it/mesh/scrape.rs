//! `/metrics` as Prometheus scrapes it: gzipped when asked, and the service graph's
//! edge cap overflow counted.

use std::io::Read;

use meshtel_model::mixer::{Reporter, RequestRecord};

use crate::support::*;

use super::{report, workload};

/// A record of productpage → reviews answered `code`: one graph edge per code.
fn record(code: u32) -> RequestRecord {
    RequestRecord {
        reporter: Reporter::Source as i32,
        source: Some(workload("productpage")),
        destination: Some(workload("reviews")),
        destination_service: "reviews.default.svc.cluster.local".into(),
        destination_service_name: "reviews".into(),
        destination_service_namespace: "default".into(),
        request_method: "GET".into(),
        request_path: "/reviews/0".into(),
        request_protocol: "http".into(),
        response_code: code,
        start_unix_nano: now_nanos(),
        duration_nanos: 2_000_000,
        request_bytes: 100,
        response_bytes: 1000,
        ..Default::default()
    }
}

/// `GET /metrics` with `Accept-Encoding`: (status, `Content-Encoding`, body).
async fn scrape(url: &str, accept_encoding: &str) -> (u16, Option<String>, Vec<u8>) {
    let reply = http()
        .get(url)
        .header("accept-encoding", accept_encoding)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let encoding = reply
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    (status, encoding, reply.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_gzipped_for_prometheus_and_edge_overflow_is_counted() {
    let dir = TestDir::new();
    let config = dir.path().join("meshtel.toml");
    std::fs::write(&config, "[edges]\nmax_edges_per_bucket = 3\n").unwrap();
    let m = Meshtel::start(&dir, Role::Serve, &["--config", config.to_str().unwrap()]).await;

    // 10 response codes: 10 edges in one bucket, 3 kept, 7 left out of the graph.
    report(&m, (0..10).map(|i| record(200 + i)).collect()).await;

    let url = m.http_url("/metrics");
    let plain = eventually(
        std::time::Duration::from_secs(10),
        "the batch counted",
        || async {
            let text = get(&url).await.text();
            let samples = parse_prometheus_text(&text);
            let records = samples
                .iter()
                .find(|s| s.name == "meshtel_report_records_total")?;
            (records.value == 10.0).then_some(text)
        },
    )
    .await;
    let samples = parse_prometheus_text(&plain);
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} in\n{plain}"))
            .value
    };
    assert_eq!(value("meshtel_edges_overflow_total"), 7.0);
    assert_eq!(value("meshtel_edges_open_buckets"), 1.0);
    // Said in the log, naming the setting, as the other caps are.
    let log = m.log_text();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("service graph bucket full")
            && l.contains("left_out=7")
            && l.contains("max_edges_per_bucket")),
        "{log}"
    );
    assert_eq!(value("meshtel_mesh_series_overflow_total"), 0.0);

    // Prometheus asks for gzip: the same exposition, compressed.
    let (status, encoding, body) = scrape(&url, "gzip").await;
    assert_eq!(status, 200);
    assert_eq!(encoding.as_deref(), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    let istio = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("istio_") || l.starts_with("meshtel_edges"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(istio(&text), istio(&plain));
    assert_eq!(
        parse_prometheus_text(&text)
            .iter()
            .filter(|s| s.name == "istio_requests_total")
            .count(),
        10
    );
    assert!(
        body.len() * 4 < plain.len(),
        "{} of {} bytes",
        body.len(),
        plain.len()
    );
    // As Prometheus sends it, and refusals.
    let prometheus = "gzip, deflate, br;q=0.5";
    assert_eq!(scrape(&url, prometheus).await.1.as_deref(), Some("gzip"));
    for refused in ["gzip;q=0", "identity", "br"] {
        let (status, encoding, body) = scrape(&url, refused).await;
        assert_eq!((status, encoding), (200, None), "{refused}");
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("istio_requests_total{")
        );
    }
    m.stop().await;
}

/// The metric families of `# HELP` lines named `meshtel_*` or `process_*`.
fn own_families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| name.starts_with("meshtel_") || name.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Every metric meshtel keeps about itself, the collector's and a sidecar's, is in the
/// README's "Metrics about meshtel" section: an SRE reading a dashboard finds it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_own_metric_is_in_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split_once("\n## Metrics about meshtel\n")
        .and_then(|(_, rest)| rest.split("\n## ").next())
        .expect("README has a section \"Metrics about meshtel\"");
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let mesh = dir.path().join("mesh.yaml");
    super::write_mesh(&mesh, "services: []\n");
    let collector = format!("http://{}", m.grpc.unwrap());
    let proxy = MeshProxy::start(
        &dir,
        "own-metrics",
        &[
            "--mesh",
            mesh.to_str().unwrap(),
            "--service",
            "s",
            "--collector",
            &collector,
        ],
    )
    .await;
    let collector_families = own_families(&get(&m.http_url("/metrics")).await.text());
    let proxy_text = get(&proxy.admin_url("/stats/prometheus")).await.text();
    // The proxy's own exposition, as Prometheus would read it.
    super::istio_metrics::promtool_check_metrics(&proxy_text);
    let proxy_families = own_families(&proxy_text);
    assert!(collector_families.len() > 20, "{collector_families:?}");
    assert!(proxy_families.len() > 10, "{proxy_families:?}");
    // The process's own resources, for alerts on growth and restarts.
    for families in [&collector_families, &proxy_families] {
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(families.iter().any(|f| f == name), "{name} in {families:?}");
        }
    }
    let missing: Vec<&String> = collector_families
        .iter()
        .chain(&proxy_families)
        .filter(|name| !section.contains(&format!("`{name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in README's \"Metrics about meshtel\": {missing:?}"
    );
}

/// Resident memory of process `pid`, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncompressed_scrape_is_streamed_not_held_whole() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    // 1,200 label sets (300 response codes from 4 callers), each about 50 KB of text
    // over the four Istio metrics' histogram lines: ~60 MB in all.
    let records: Vec<RequestRecord> = (0..1_200u32)
        .map(|i| {
            let mut r = record(200 + i % 300);
            r.source = Some(workload(&format!("caller-{}", i / 300)));
            r
        })
        .collect();
    for batch in records.chunks(400) {
        report(&m, batch.to_vec()).await;
    }
    let url = m.http_url("/metrics");
    eventually(
        std::time::Duration::from_secs(10),
        "the records counted",
        || async {
            let text = get(&m.http_url("/metrics")).await;
            let samples = parse_prometheus_text(&text.text());
            let records = samples
                .iter()
                .find(|s| s.name == "meshtel_report_records_total")?;
            (records.value == 1_200.0).then_some(())
        },
    )
    .await;
    let before = rss_bytes(m.pid());
    // Read slowly, chunk by chunk, while sampling the server's memory.
    let mut reply = http()
        .get(&url)
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers().get("content-length"), None, "not streamed");
    let mut text = Vec::new();
    let mut peak = before;
    while let Some(chunk) = reply.chunk().await.unwrap() {
        text.extend_from_slice(&chunk);
        peak = peak.max(rss_bytes(m.pid()));
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.len() > 40_000_000, "{} bytes", text.len());
    let series = parse_prometheus_text(&text)
        .iter()
        .filter(|s| s.name == "istio_requests_total")
        .count();
    assert_eq!(series, 1_200);
    assert!(text.contains("# HELP meshtel_store_spans_written_total"));
    // Held whole, the text alone would have raised it by its size.
    assert!(
        peak - before < text.len() as u64 / 3,
        "resident memory rose by {} MB during a scrape of {} MB",
        (peak - before) >> 20,
        text.len() >> 20
    );
    m.stop().await;
}
