//! The outbound proxy's whole routing step per request, with 100 virtual services and
//! 100 destination rules loaded over a 100-service mesh: resolve the `Host` through the
//! mesh, find the virtual service, the first matching route, the weighted destination,
//! the subset's cluster, and pick an endpoint (load balancer, ejection check).
//!
//! ```text
//! cargo bench -p meshtel-proxy --bench routing
//! ```
//!
//! Prints criterion's figures, then `per routing step: N ns` for a request that falls
//! through to the last (weighted) route (target: < 5 µs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use meshtel_model::routing::{RequestAttrs, RuleSet};
use meshtel_proxy::mesh::{Mesh, MeshFile, WorkloadIdentity};
use meshtel_proxy::routing::RoutingTable;
use meshtel_proxy::stats::Stats;

const SERVICES: usize = 100;

fn mesh() -> Mesh {
    let mut yaml = String::from("services:\n");
    for i in 0..SERVICES {
        let _ = write!(
            yaml,
            "  - name: svc{i}\n    namespace: shop\n    endpoints:\n      - {{address: \"127.0.0.1:{}\", labels: {{version: v1}}}}\n      - {{address: \"127.0.0.1:{}\", labels: {{version: v1}}}}\n      - {{address: \"127.0.0.1:{}\", labels: {{version: v2}}}}\n",
            20000 + i * 3,
            20001 + i * 3,
            20002 + i * 3
        );
    }
    yaml.push_str("  - name: frontend\n    namespace: shop\n    endpoints:\n      - {address: \"127.0.0.1:19999\", labels: {version: v1}}\n");
    let file: MeshFile = yaml_serde::from_str(&yaml).unwrap();
    Mesh::build(file, "shop").unwrap()
}

fn rules() -> RuleSet {
    let mut text = String::new();
    for i in 0..SERVICES {
        let _ = write!(
            text,
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc{i}, namespace: shop}}
spec:
  hosts: [svc{i}]
  http:
  - match: [{{headers: {{end-user: {{exact: "tester{i}"}}}}}}]
    route: [{{destination: {{host: svc{i}, subset: v2}}}}]
  - match: [{{uri: {{prefix: /api/}}, method: {{regex: "GET|HEAD"}}}}]
    route:
    - {{destination: {{host: svc{i}, subset: v1}}, weight: 90}}
    - {{destination: {{host: svc{i}, subset: v2}}, weight: 10}}
    retries: {{attempts: 2, perTryTimeout: 500ms, retryOn: "gateway-error,connect-failure"}}
  - route:
    - {{destination: {{host: svc{i}, subset: v1}}, weight: 80}}
    - {{destination: {{host: svc{i}, subset: v2}}, weight: 20}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc{i}, namespace: shop}}
spec:
  host: svc{i}
  trafficPolicy:
    loadBalancer: {{simple: LEAST_REQUEST}}
    connectionPool: {{tcp: {{maxConnections: 100}}, http: {{http1MaxPendingRequests: 10}}}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
"#
        );
    }
    RuleSet::from_sources(&[("bench.yaml".to_owned(), text)]).unwrap()
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("accept", "text/html,application/xhtml+xml"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("x-request-id", "5f0e9c1c-6a4e-4a8e-9d6b-2b7b7f1c0e11"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("end-user", "someone"),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    headers
}

/// The routing step of one request: decision, then an endpoint of the cluster.
fn route(table: &RoutingTable, authority: &str, path: &str, headers: &HeaderMap, roll: u32) -> usize {
    let attrs = RequestAttrs { method: "GET", scheme: "http", authority, path, query: "", port: Some(9080), headers };
    let Ok(decision) = table.decide(&attrs, roll) else { return 0 };
    let Some(lease) = decision.cluster.pick() else { return 1 };
    lease.endpoint().address.len()
}

fn main() {
    let identity = WorkloadIdentity {
        name: "frontend-v1".to_owned(),
        namespace: "shop".to_owned(),
        app: "frontend".to_owned(),
        version: "v1".to_owned(),
    };
    let stats = Stats::new().unwrap();
    let table = RoutingTable::build(Arc::new(mesh()), Arc::new(rules()), &identity, None, &stats.routing);
    let authorities: Vec<String> = (0..SERVICES).map(|i| format!("svc{i}:9080")).collect();
    let headers = headers();
    assert!(route(&table, "svc7:9080", "/static/app.js", &headers, 1) > 1, "the bench request routes to an endpoint");

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("proxy-routing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("step/fall-through-to-weighted-default", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(route(&table, black_box(&authorities[n % SERVICES]), "/static/app.js", &headers, n as u32))
        })
    });
    group.bench_function("step/prefix-and-method-regex", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(route(&table, black_box(&authorities[n % SERVICES]), "/api/items/42", &headers, n as u32))
        })
    });
    group.finish();
    criterion.final_summary();

    let rounds = 1_000_000usize;
    let started = Instant::now();
    let mut sum = 0usize;
    for n in 0..rounds {
        sum += route(&table, black_box(&authorities[n % SERVICES]), "/static/app.js", &headers, n as u32);
    }
    let per_step = started.elapsed().as_nanos() as f64 / rounds as f64;
    black_box(sum);
    println!(
        "per routing step: {per_step:.0} ns ({SERVICES} virtual services and destination rules, 3 routes each, \
         request reaching the last route, endpoint picked by least request; target < 5000 ns)"
    );
}
