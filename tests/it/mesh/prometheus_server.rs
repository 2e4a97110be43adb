//! A real Prometheus server scraping `meshtel serve`, asked the PromQL the stock Istio
//! Grafana dashboards (Mesh, Service, Workload) send, and Kiali's graph queries: the
//! README says they work with no edits, and this is where that is checked, to the
//! value.
//!
//! Request records go in through the Report stream in two batches: the first creates
//! every series before Prometheus starts; the second, sent once Prometheus holds a few
//! scrapes of the first, is what the rates see. Every series then has its samples at
//! the same scrape times, and every one the second batch adds to starts far above zero
//! (`rate()` extrapolates a series that starts at zero less far back), so Prometheus
//! scales every increase by the same factor: ratios, success rates and histogram
//! quantiles come out exact, whatever the timing. `$__rate_interval`, which Grafana
//! substitutes before sending, is [`RATE`] here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshtel_model::mixer::{Reporter, RequestRecord};
use serde_json::Value;

use crate::support::*;

use super::{env, report, workload};

/// `$__rate_interval` as Grafana substitutes it: at least four scrape intervals (1 s
/// here); every window ending at a scrape then also holds samples from before it.
const RATE: &str = "5s";
/// Requests of each label set in the first batch: far above the second's increases.
const FIRST: usize = 1000;
const REVIEWS: &str = "reviews.default.svc.cluster.local";
const DETAILS: &str = "details.default.svc.cluster.local";

/// A record of productpage calling `destination` (`reviews` or `details`).
fn record(
    reporter: Reporter,
    destination: &str,
    code: u32,
    micros: u64,
    bytes: u64,
) -> RequestRecord {
    RequestRecord {
        reporter: reporter as i32,
        source: Some(workload("productpage")),
        destination: Some(workload(destination)),
        destination_service: format!("{destination}.default.svc.cluster.local"),
        destination_service_name: destination.into(),
        destination_service_namespace: "default".into(),
        request_method: "GET".into(),
        request_path: "/".into(),
        request_protocol: "http".into(),
        response_code: code,
        start_unix_nano: now_nanos(),
        duration_nanos: micros * 1_000,
        request_bytes: bytes,
        response_bytes: 1000,
        ..Default::default()
    }
}

/// The second batch, the one the rates see. productpage → reviews, 40 requests each
/// side: 24 × 200, 4 × 404, 12 × 503; as the caller saw them 10 at 3 ms and 30 at
/// 40 ms, 10 of 100 bytes and 30 of 700; as reviews saw them 10 at 0.8 ms (recorded
/// as 0: Istio truncates to whole milliseconds) and 30 at 8.6 ms (recorded as 8).
/// productpage → details: 10 × 200 at 3 ms, from the caller's side only.
fn second_batch() -> Vec<RequestRecord> {
    let code = |i: usize| match i % 10 {
        0..6 => 200,
        6 => 404,
        _ => 503,
    };
    let mut records = Vec::new();
    for i in 0..40 {
        let early = i < 10;
        let (source_us, bytes) = if early { (3_000, 100) } else { (40_000, 700) };
        records.push(record(
            Reporter::Source,
            "reviews",
            code(i),
            source_us,
            bytes,
        ));
        records.push(record(
            Reporter::Destination,
            "reviews",
            code(i),
            if early { 800 } else { 8_600 },
            bytes,
        ));
    }
    records.extend((0..10).map(|_| record(Reporter::Source, "details", 200, 3_000, 100)));
    records
}

/// The first batch: every label set of the second, [`FIRST`] times, and every
/// histogram bucket the second adds to above zero (reviews' side: half of them at
/// 0.8 ms, recorded as 0, half at 3 ms).
fn first_batch() -> Vec<RequestRecord> {
    let mut records = Vec::new();
    for code in [200, 404, 503] {
        records.extend((0..FIRST).map(|_| record(Reporter::Source, "reviews", code, 3_000, 100)));
        records.extend((0..FIRST).map(|i| {
            let micros = if i % 2 == 0 { 800 } else { 3_000 };
            record(Reporter::Destination, "reviews", code, micros, 100)
        }));
    }
    records.extend((0..FIRST).map(|_| record(Reporter::Source, "details", 200, 3_000, 100)));
    records
}

/// A Prometheus server on 127.0.0.1 with its data under the test's directory; killed
/// when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping `target`'s `/metrics` every second. `None` when it
    /// is not installed (a loud skip; a failure under `CI=true`).
    async fn start(dir: &Path, target: SocketAddr) -> Option<Prometheus> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: meshtel\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        // Prometheus takes an address, not a listener: a port free a moment ago, tried
        // again if another process took it in between.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let spawned = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    assert!(
                        env("CI").as_deref() != Some("true"),
                        "prometheus is not installed (CI=true): `.ci/run` installs Debian's prometheus"
                    );
                    eprintln!(
                        "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                         !!! SKIPPED the Istio dashboards' PromQL against a Prometheus server: !!!\n\
                         !!! prometheus missing. Install Debian's `prometheus` (as .ci/run).  !!!\n\
                         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                    );
                    return None;
                }
                Err(error) => panic!("running prometheus: {error}"),
            };
            let mut prometheus = Prometheus {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = prometheus.child.try_wait().unwrap() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("address already in use") {
                        break;
                    }
                    panic!("prometheus exited with {status}:\n{text}");
                }
                let ready = http()
                    .get(format!("{}/-/ready", prometheus.url))
                    .send()
                    .await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return Some(prometheus);
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus not ready in 30 s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("no free port for prometheus after 5 tries");
    }

    /// `/api/v1/query` at `time` (Unix seconds): the `data` object, after checking the
    /// status.
    async fn query(&self, promql: &str, time: f64) -> Value {
        let reply = http()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql), ("time", &format!("{time:.3}"))])
            .send()
            .await
            .unwrap();
        let status = reply.status();
        let body: Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
        assert!(
            status.is_success() && body["status"] == "success",
            "{promql}: {status} {body}"
        );
        body["data"].clone()
    }

    /// An instant vector query: each result's labels (without `__name__`) → value.
    async fn vector(&self, promql: &str, time: f64) -> Vec<(BTreeMap<String, String>, f64)> {
        let data = self.query(promql, time).await;
        assert_eq!(data["resultType"], "vector", "{promql}: {data}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| *k != "__name__")
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (labels, number(&r["value"][1]))
            })
            .collect()
    }

    /// The one value of an instant vector query that must return one series.
    async fn one(&self, promql: &str, time: f64) -> f64 {
        let result = self.vector(promql, time).await;
        assert_eq!(result.len(), 1, "{promql}: {result:?}");
        result[0].1
    }

    /// Values of `promql` by the value of `label`.
    async fn by(&self, promql: &str, label: &str, time: f64) -> BTreeMap<String, f64> {
        let result = self.vector(promql, time).await;
        let values: BTreeMap<String, f64> = result
            .iter()
            .map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), *v))
            .collect();
        assert_eq!(
            values.len(),
            result.len(),
            "{promql}: one series per {label}: {result:?}"
        );
        values
    }

    /// The raw samples of `selector` over the last `range`: (time, value).
    async fn samples(&self, selector: &str, range: &str, time: f64) -> Vec<(f64, f64)> {
        let promql = format!("{selector}[{range}]");
        let data = self.query(&promql, time).await;
        assert_eq!(data["resultType"], "matrix", "{promql}: {data}");
        let result = data["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{promql}: {data}");
        result[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), number(&p[1])))
            .collect()
    }
}

/// A sample value as the Prometheus API writes it: a string.
fn number(value: &Value) -> f64 {
    value.as_str().unwrap().parse().unwrap()
}

fn now_seconds() -> f64 {
    now_nanos() as f64 / 1e9
}

#[track_caller]
fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{what}: {actual}, expected {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_dashboards_promql_against_a_prometheus_server() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    report(&m, first_batch()).await;
    let Some(prometheus) = Prometheus::start(dir.path(), m.http.unwrap()).await else {
        return;
    };

    // The selector whose samples time the test: productpage → reviews, 200, caller side.
    let probe = r#"istio_requests_total{reporter="source",destination_workload="reviews-v1",response_code="200"}"#;
    eventually(
        Duration::from_secs(30),
        "five scrapes of the first batch",
        || async {
            let data = prometheus
                .query(&format!("count_over_time({probe}[1m])"), now_seconds())
                .await;
            let count = data["result"]
                .as_array()?
                .first()
                .map(|r| number(&r["value"][1]))?;
            (count >= 5.0).then_some(())
        },
    )
    .await;
    report(&m, second_batch()).await;

    // The first scrape holding the second batch, and the one before.
    let (before, at) = eventually(
        Duration::from_secs(30),
        "a scrape of the second batch",
        || async {
            let samples = prometheus.samples(probe, "1m", now_seconds()).await;
            let i = samples.iter().position(|(_, v)| *v > FIRST as f64)?;
            Some((*samples.get(i.checked_sub(1)?)?, samples[i]))
        },
    )
    .await;
    let t = at.0;
    assert_eq!(before.1, FIRST as f64, "the sample before the second batch");
    assert_eq!(
        at.1,
        (FIRST + 24) as f64,
        "the sample holding the second batch"
    );

    // Exact counters, `sum by (l) (x)` syntax, at the scrape that first held the second
    // batch: a scrape shows a Report batch whole or not at all.
    let counts = prometheus
        .vector(
            "sum by (reporter, destination_workload, response_code) (istio_requests_total)",
            t,
        )
        .await;
    let counts: BTreeMap<(String, String, String), f64> = counts
        .into_iter()
        .map(|(l, v)| {
            (
                (
                    l["reporter"].clone(),
                    l["destination_workload"].clone(),
                    l["response_code"].clone(),
                ),
                v,
            )
        })
        .collect();
    let key = |r: &str, w: &str, c: &str| (r.to_string(), w.to_string(), c.to_string());
    let mut expected = BTreeMap::new();
    for reporter in ["source", "destination"] {
        for (code, n) in [("200", 24), ("404", 4), ("503", 12)] {
            expected.insert(key(reporter, "reviews-v1", code), (FIRST + n) as f64);
        }
    }
    expected.insert(key("source", "details-v1", "200"), (FIRST + 10) as f64);
    assert_eq!(counts, expected);
    // ... and the scrape before held none of it.
    let earlier = prometheus
        .one(r#"sum(istio_requests_total)"#, before.0)
        .await;
    assert_eq!(earlier, (7 * FIRST) as f64);

    let src = r#"reporter=~"source|waypoint""#;

    // Mesh dashboard: global request volume, success rate, 4xx and 5xx.
    let volume = prometheus
        .one(
            &format!("round(sum(rate(istio_requests_total{{{src}}}[{RATE}])), 0.001)"),
            t,
        )
        .await;
    // `irate` divides the last two samples' difference by their distance: the 50
    // requests of the second batch over the scrape interval.
    let irate_volume = prometheus
        .one(
            &format!("round(sum(irate(istio_requests_total{{{src}}}[1m])), 0.001)"),
            t,
        )
        .await;
    let expected = 50.0 / (at.0 - before.0);
    assert!(
        (irate_volume - expected).abs() <= 0.0005 + 1e-9,
        "global request volume (irate) {irate_volume}, expected {expected}"
    );
    let success = prometheus
        .one(
            &format!(
                r#"sum(rate(istio_requests_total{{{src},response_code!~"5.."}}[{RATE}])) / sum(rate(istio_requests_total{{{src}}}[{RATE}]))"#
            ),
            t,
        )
        .await;
    assert_close(success, 38.0 / 50.0, "global success rate");
    let four = prometheus
        .one(&format!(r#"sum(rate(istio_requests_total{{{src},response_code=~"4.."}}[{RATE}]))or vector(0)"#), t)
        .await;
    let all = prometheus
        .one(
            &format!("sum(rate(istio_requests_total{{{src}}}[{RATE}]))"),
            t,
        )
        .await;
    assert_close(four / all, 4.0 / 50.0, "4xx share");
    assert!(
        (volume - all).abs() <= 0.0005 + 1e-9,
        "{volume} is {all} rounded"
    );
    let probe_rate = prometheus.one(&format!("rate({probe}[{RATE}])"), t).await;
    assert_close(
        all / probe_rate,
        50.0 / 24.0,
        "global volume : reviews 200s",
    );
    let none = prometheus
        .one(
            &format!(
                r#"round(sum(rate(istio_requests_total{{{src},destination_workload="details-v1",response_code=~"5.."}}[{RATE}])))or vector(0)"#
            ),
            t,
        )
        .await;
    assert_eq!(none, 0.0, "no 5xx to details: `or vector(0)`");

    // Mesh dashboard's HTTP workloads table: requests, p50, p90, success rate, by
    // destination workload, joined into `destination_workload_var`.
    let join = |q: String| {
        format!(
            r#"label_join({q}, "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")"#
        )
    };
    let requests = prometheus
        .by(
            &join(format!(
                "sum(rate(istio_requests_total{{{src}}}[{RATE}])) by (destination_workload, destination_workload_namespace, destination_service)"
            )),
            "destination_workload_var",
            t,
        )
        .await;
    assert_eq!(
        requests.keys().collect::<Vec<_>>(),
        ["details-v1.default", "reviews-v1.default"]
    );
    assert_close(
        requests["reviews-v1.default"] / requests["details-v1.default"],
        4.0,
        "reviews : details",
    );
    let services = prometheus
        .by(
            &format!("sum(rate(istio_requests_total{{{src}}}[{RATE}])) by (destination_workload, destination_service)"),
            "destination_service",
            t,
        )
        .await;
    assert_eq!(services.keys().collect::<Vec<_>>(), [DETAILS, REVIEWS]);
    let quantile = |q: &str| {
        join(format!(
            "histogram_quantile({q}, sum(rate(istio_request_duration_milliseconds_bucket{{{src}}}[{RATE}])) by (le, destination_workload, destination_workload_namespace))"
        ))
    };
    let p50 = prometheus
        .by(&quantile("0.5"), "destination_workload_var", t)
        .await;
    let p90 = prometheus
        .by(&quantile("0.9"), "destination_workload_var", t)
        .await;
    // reviews: 10 in (1, 5] ms, 30 in (25, 50]; details: 10 in (1, 5].
    assert_close(
        p50["reviews-v1.default"],
        25.0 + 25.0 * 10.0 / 30.0,
        "reviews p50 (ms)",
    );
    assert_close(
        p90["reviews-v1.default"],
        25.0 + 25.0 * 26.0 / 30.0,
        "reviews p90 (ms)",
    );
    assert_close(
        p50["details-v1.default"],
        1.0 + 4.0 * 0.5,
        "details p50 (ms)",
    );
    assert_close(
        p90["details-v1.default"],
        1.0 + 4.0 * 0.9,
        "details p90 (ms)",
    );
    let success = prometheus
        .by(
            &join(format!(
                r#"sum(rate(istio_requests_total{{{src},response_code!~"5.."}}[{RATE}])) by (destination_workload, destination_workload_namespace)/sum(rate(istio_requests_total{{{src}}}[{RATE}])) by (destination_workload, destination_workload_namespace)"#
            )),
            "destination_workload_var",
            t,
        )
        .await;
    assert_close(
        success["reviews-v1.default"],
        28.0 / 40.0,
        "reviews success rate",
    );
    assert_close(success["details-v1.default"], 1.0, "details success rate");

    // Service dashboard for reviews, as reviews reports it (`qrep` = destination):
    // latency in the form that serves both eras (milliseconds / 1000, or seconds),
    // incoming requests by source and code, request sizes; its `service` variable.
    let svc = format!(r#"reporter=~"destination",destination_service=~"{REVIEWS}""#);
    let latency = |q: &str| {
        format!(
            "(histogram_quantile({q}, sum(rate(istio_request_duration_milliseconds_bucket{{{svc}}}[{RATE}])) by (le)) / 1000) or histogram_quantile({q}, sum(rate(istio_request_duration_seconds_bucket{{{svc}}}[{RATE}])) by (le))"
        )
    };
    // 10 recorded as 0 ms, in (0, 0.5]; 30 in (5, 10].
    assert_close(
        prometheus.one(&latency("0.50"), t).await,
        (5.0 + 5.0 * 10.0 / 30.0) / 1000.0,
        "p50 (s)",
    );
    assert_close(
        prometheus.one(&latency("0.90"), t).await,
        (5.0 + 5.0 * 26.0 / 30.0) / 1000.0,
        "p90 (s)",
    );
    assert_close(
        prometheus.one(&latency("0.20"), t).await,
        0.5 * 8.0 / 10.0 / 1000.0,
        "p20 (s)",
    );
    let by_code = prometheus
        .by(
            &format!(
                "round(sum(irate(istio_requests_total{{{svc}}}[{RATE}])) by (source_workload, source_workload_namespace, response_code), 0.001)"
            ),
            "response_code",
            t,
        )
        .await;
    assert_eq!(by_code.keys().collect::<Vec<_>>(), ["200", "404", "503"]);
    let by_code = prometheus
        .by(
            &format!("sum(irate(istio_requests_total{{{svc}}}[{RATE}])) by (source_workload, source_workload_namespace, response_code)"),
            "response_code",
            t,
        )
        .await;
    assert_close(by_code["200"] / by_code["404"], 6.0, "200 : 404 (irate)");
    assert_close(by_code["503"] / by_code["404"], 3.0, "503 : 404 (irate)");
    let sizes = prometheus
        .one(
            &format!(
                r#"histogram_quantile(0.50, sum(rate(istio_request_bytes_bucket{{reporter=~"source",destination_service=~"{REVIEWS}"}}[{RATE}])) by (le))"#
            ),
            t,
        )
        .await;
    // 10 of 100 bytes in (50, 100], 30 of 700 in (500, 1000].
    assert_close(
        sizes,
        500.0 + 500.0 * 10.0 / 30.0,
        "request size p50 (bytes)",
    );
    let variable = prometheus
        .by(
            r#"sum(istio_requests_total{}) by (destination_service) or sum(istio_tcp_sent_bytes_total{}) by (destination_service)"#,
            "destination_service",
            t,
        )
        .await;
    assert_eq!(variable.keys().collect::<Vec<_>>(), [DETAILS, REVIEWS]);

    // Kiali's graph query, as reviews reports it: every label it groups by is filled
    // in (Prometheus drops the empty `grpc_response_status` of HTTP requests), and the
    // rates per code keep their ratios; then its response time, p95.
    let kiali = prometheus
        .vector(
            &format!(
                r#"sum(rate(istio_requests_total{{reporter="destination",destination_workload_namespace="default"}}[{RATE}])) by (source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol,response_code,grpc_response_status,response_flags)"#
            ),
            t,
        )
        .await;
    let edge: BTreeMap<String, String> = [
        ("source_cluster", "Kubernetes"),
        ("source_workload_namespace", "default"),
        ("source_workload", "productpage-v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        ("destination_cluster", "Kubernetes"),
        ("destination_service_namespace", "default"),
        ("destination_service", REVIEWS),
        ("destination_service_name", "reviews"),
        ("destination_workload_namespace", "default"),
        ("destination_workload", "reviews-v1"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("request_protocol", "http"),
        ("response_flags", "-"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut by_code = BTreeMap::new();
    for (mut labels, value) in kiali {
        let code = labels.remove("response_code").unwrap_or_default();
        assert_eq!(labels, edge, "Kiali's labels for code {code}");
        by_code.insert(code, value);
    }
    assert_eq!(by_code.keys().collect::<Vec<_>>(), ["200", "404", "503"]);
    assert_close(by_code["200"] / by_code["503"], 2.0, "200 : 503 (Kiali)");
    let response_time = prometheus
        .one(
            &format!(
                r#"histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{{reporter="destination",destination_workload_namespace="default"}}[{RATE}])) by (le,source_workload_namespace,source_workload,destination_service_namespace,destination_service_name,destination_workload_namespace,destination_workload)) > 0"#
            ),
            t,
        )
        .await;
    // 10 in (0, 0.5] ms, 30 in (5, 10].
    assert_close(response_time, 5.0 + 5.0 * 28.0 / 30.0, "Kiali's p95 (ms)");
    // Its average, from the histogram's sum and count: 10 recorded as 0 ms, 30 as 8.
    let average = prometheus
        .one(
            &format!(
                r#"sum(rate(istio_request_duration_milliseconds_sum{{reporter="destination",destination_workload="reviews-v1"}}[{RATE}])) / sum(rate(istio_request_duration_milliseconds_count{{reporter="destination",destination_workload="reviews-v1"}}[{RATE}]))"#
            ),
            t,
        )
        .await;
    assert_close(
        average,
        30.0 * 8.0 / 40.0,
        "Kiali's average response time (ms)",
    );

    // Workload dashboard's `workload` variable, as Grafana asks for label values.
    let values = http()
        .get(format!(
            "{}/api/v1/label/destination_workload/values",
            prometheus.url
        ))
        .query(&[(
            "match[]",
            r#"istio_requests_total{destination_workload_namespace=~"default"}"#,
        )])
        .send()
        .await
        .unwrap();
    let values: Value = serde_json::from_slice(&values.bytes().await.unwrap()).unwrap();
    assert_eq!(
        values["data"],
        serde_json::json!(["details-v1", "reviews-v1"])
    );

    // The build panel.
    let build = prometheus
        .vector("sum(istio_build) by (component, tag)", t)
        .await;
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(build[0].0["component"], "proxy");
    assert!(build[0].0["tag"].starts_with("meshtel-"), "{build:?}");
}
