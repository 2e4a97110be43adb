//! The `istio_*` series the Bookinfo scenario must produce, and `promtool`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

use super::{FAILING, REQUESTS, env};

/// `(reporter, source_workload, destination_workload, response_code)` → value.
pub(super) type SeriesCounts = BTreeMap<(String, String, String, String), f64>;

pub(super) fn series_counts(samples: &[PromSample], name: &str) -> SeriesCounts {
    let mut counts = SeriesCounts::new();
    for s in samples.iter().filter(|s| s.name == name) {
        let key = (
            s.label("reporter").to_string(),
            s.label("source_workload").to_string(),
            s.label("destination_workload").to_string(),
            s.label("response_code").to_string(),
        );
        *counts.entry(key).or_default() += s.value;
    }
    counts
}

pub(super) fn expected_counts() -> SeriesCounts {
    let ok = (REQUESTS - FAILING) as f64;
    let failed = FAILING as f64;
    let key = |r: &str, s: &str, d: &str, c: &str| (r.into(), s.into(), d.into(), c.into());
    BTreeMap::from([
        // The test client is outside the mesh: only productpage's inbound reports it.
        (
            key("destination", "unknown", "productpage-v1", "200"),
            REQUESTS as f64,
        ),
        // productpage → reviews, seen by both proxies.
        (key("source", "productpage-v1", "reviews-v1", "200"), ok),
        (key("source", "productpage-v1", "reviews-v1", "500"), failed),
        (
            key("destination", "productpage-v1", "reviews-v1", "200"),
            ok,
        ),
        (
            key("destination", "productpage-v1", "reviews-v1", "500"),
            failed,
        ),
    ])
}

/// Every label of a productpage → reviews series but `reporter`,
/// `connection_security_policy` and `response_code`.
pub(super) fn reviews_series_labels() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "default"),
        ("source_principal", "unknown"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        // Istio's default cluster id: neither proxy sets --cluster.
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "reviews-v1"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "reviews"),
        ("destination_version", "v1"),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_flags", "-"),
        ("grpc_response_status", ""),
    ])
}

pub(super) const ISTIO_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
    "response_code",
    "grpc_response_status",
];

pub(super) fn istio_series_summary(samples: &[PromSample]) -> String {
    samples
        .iter()
        .filter(|s| s.name.starts_with("istio_requests_total"))
        .map(|s| format!("{:?} {}\n", s.labels, s.value))
        .collect()
}

/// `promtool check metrics` on `text`, ignoring only its complaint that
/// `istio_request_duration_milliseconds` is not in base units (Istio's standard name).
/// Without promtool: a failure under CI (`CI=true`), a loud skip elsewhere.
pub(super) fn promtool_check_metrics(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if env("CI").as_deref() == Some("true") {
                panic!(
                    "promtool is not installed (CI=true): `.ci/run` installs Debian's prometheus"
                );
            }
            eprintln!(
                "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! SKIPPED `promtool check metrics` on /metrics: promtool missing.   !!!\n\
                 !!! Install Debian's `prometheus` package (as .ci/run does).          !!!\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
            return;
        }
        Err(error) => panic!("running promtool: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (ignored, problems): (Vec<&str>, Vec<&str>) = report
        .lines()
        .filter(|line| !line.trim().is_empty())
        .partition(|line| {
            line.contains("istio_request_duration_milliseconds") && line.contains("base unit")
        });
    eprintln!(
        "promtool check metrics: {}, {} line(s) ignored (Istio's millisecond name): {ignored:?}",
        output.status,
        ignored.len()
    );
    assert!(
        problems.is_empty(),
        "promtool check metrics ({}) found problems:\n{}\n--- /metrics ---\n{text}",
        output.status,
        problems.join("\n")
    );
}
