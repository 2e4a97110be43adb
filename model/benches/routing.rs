//! The proxy's per-request routing decision over a rule set of 100 virtual services and
//! 100 destination rules: find the virtual service for the host, the first matching
//! route, the weighted destination, and the destination's traffic policy.
//!
//! ```text
//! cargo bench -p meshtel-model --bench routing
//! ```
//!
//! Prints criterion's figures, then `per decision: N ns` for a request that falls
//! through to the last (weighted) route, which is the longest path (target: < 5 µs).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use meshtel_model::routing::{RequestAttrs, RuleSet, SourceAttrs};

const SERVICES: usize = 100;

/// 100 virtual services, each with a header match, a prefix + method regex match and a
/// weighted default; 100 destination rules with subsets v1, v2 and a policy.
fn rule_set() -> RuleSet {
    let mut text = String::new();
    for i in 0..SERVICES {
        text.push_str(&format!(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc{i}, namespace: shop}}
spec:
  hosts: [svc{i}]
  http:
  - name: canary-user
    match:
    - headers:
        end-user: {{exact: "tester{i}"}}
    route:
    - destination: {{host: svc{i}, subset: v2}}
  - name: api
    match:
    - uri: {{prefix: /api/}}
      method: {{regex: "GET|HEAD"}}
    route:
    - destination: {{host: svc{i}, subset: v1}}
      weight: 90
    - destination: {{host: svc{i}, subset: v2}}
      weight: 10
    timeout: 2s
    retries: {{attempts: 2, perTryTimeout: 500ms, retryOn: "gateway-error,connect-failure"}}
  - name: default
    route:
    - destination: {{host: svc{i}, subset: v1}}
      weight: 80
    - destination: {{host: svc{i}, subset: v2}}
      weight: 20
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc{i}, namespace: shop}}
spec:
  host: svc{i}
  trafficPolicy:
    loadBalancer: {{simple: LEAST_REQUEST}}
    connectionPool:
      tcp: {{maxConnections: 100}}
      http: {{http1MaxPendingRequests: 10}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
    trafficPolicy:
      connectionPool:
        tcp: {{maxConnections: 10}}
---
"#
        ));
    }
    match RuleSet::from_sources(&[("bench.yaml".to_owned(), text)]) {
        Ok(rules) => rules,
        Err(error) => {
            eprintln!("the bench rules do not load: {error}");
            std::process::exit(1);
        }
    }
}

/// Headers a browser-ish client sends.
fn headers(end_user: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-encoding", "gzip, deflate"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("x-request-id", "5f0e9c1c-6a4e-4a8e-9d6b-2b7b7f1c0e11"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("cookie", "session=abc123"),
        ("end-user", end_user),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    headers
}

/// One routing decision; returns something of the result so that nothing is optimised
/// away.
fn decide(rules: &RuleSet, host: &str, request: &RequestAttrs<'_>, source: &SourceAttrs<'_>, roll: u32) -> u32 {
    let Some(vs) = rules.virtual_service(host) else { return 0 };
    let Some(route) = vs.route(request, source) else { return 1 };
    let Some(destination) = route.pick(roll % route.total_weight) else { return 2 };
    let Some(policy) = rules.traffic_policy(&destination.host, destination.subset.as_deref()) else { return 3 };
    policy.connection_pool.max_connections.unwrap_or(4)
}

fn main() {
    let rules = rule_set();
    let hosts: Vec<String> = (0..SERVICES).map(|i| format!("svc{i}.shop.svc.cluster.local")).collect();
    let labels: BTreeMap<String, String> = [("app".to_owned(), "frontend".to_owned())].into();
    let source = SourceAttrs { labels: &labels, namespace: "shop" };
    let other_user = headers("someone");
    let static_request = |host: &'static str| RequestAttrs {
        method: "GET",
        scheme: "http",
        authority: host,
        path: "/static/app.js",
        query: "",
        port: None,
        headers: &other_user,
    };

    // Sanity: the three routes are what the requests reach.
    let first = &hosts[0];
    let vs = rules.virtual_service(first).map(|vs| vs.as_ref());
    let route_name = |request: &RequestAttrs<'_>| {
        vs.and_then(|vs| vs.route(request, &source)).map(|r| r.name.clone()).unwrap_or_default()
    };
    assert_eq!(route_name(&static_request("svc0")), "default");
    let tester = headers("tester0");
    assert_eq!(route_name(&RequestAttrs { headers: &tester, ..static_request("svc0") }), "canary-user");
    assert_eq!(route_name(&RequestAttrs { path: "/api/items", ..static_request("svc0") }), "api");

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("routing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decision/fall-through-to-weighted-default", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(1);
            let host = &hosts[n % SERVICES];
            let request = static_request("svc");
            black_box(decide(&rules, black_box(host), &request, &source, n as u32))
        })
    });
    group.bench_function("decision/prefix-and-method-regex", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(1);
            let host = &hosts[n % SERVICES];
            let request = RequestAttrs { path: "/api/items/42", ..static_request("svc") };
            black_box(decide(&rules, black_box(host), &request, &source, n as u32))
        })
    });
    group.bench_function("decision/header-match", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(1);
            let request = RequestAttrs { headers: &tester, ..static_request("svc0") };
            black_box(decide(&rules, black_box(first), &request, &source, n as u32))
        })
    });
    group.finish();
    criterion.final_summary();

    // The figure: the longest path, timed directly over many decisions.
    let rounds = 1_000_000usize;
    let started = Instant::now();
    let mut sum = 0u64;
    for n in 0..rounds {
        let request = static_request("svc");
        sum += u64::from(decide(&rules, black_box(&hosts[n % SERVICES]), &request, &source, n as u32));
    }
    let per_decision = started.elapsed().as_nanos() as f64 / rounds as f64;
    black_box(sum);
    println!(
        "per decision: {per_decision:.0} ns ({SERVICES} virtual services, 3 routes each, request reaching the last \
         route; target < 5000 ns)"
    );
}
