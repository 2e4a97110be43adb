//! Istio traffic management in the caller's outbound proxy (`--rules DIR`): the seed
//! scenarios of the issue with real upstream apps on 127.0.0.1, plus reloading the
//! rules under traffic. Times are scaled down; their ratios are Istio's tasks'.
//!
//! - routing: header match (`end-user: jason` → v2), uri/method/query/source-label
//!   matches and `404 NR`, weighted splits 90/10 and 80/20 over 2,000 requests;
//! - faults: abort (`FI`, immediate), delay (`DI`);
//! - resilience: circuit breaker (`UO`, HTTP/1.1 and h2c), outlier detection
//!   (ejection for `baseEjectionTime`, gateway errors, `maxEjectionPercent`), retries
//!   (route's and Istio's default, `URX`), timeout (`UT`);
//! - mirroring (`Host: …-shadow`, fire and forget);
//! - reload: rules rewritten under traffic, a bad edit rejected, `/config_dump`;
//! - destination rules of one host merged.
//!
//! How the path is normalized under route rules is in `paths.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::routing_support::*;
use crate::support::*;

/// A `VirtualService` for `host` whose `spec.http` is `http` (YAML indented by 2).
pub(crate) fn virtual_service(api: &str, host: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/{api}\nkind: VirtualService\nmetadata:\n  name: {host}\n  namespace: default\nspec:\n  hosts:\n  - {host}\n  http:\n{http}"
    )
}

/// `route:` to `host` / `subset` (YAML indented by 4).
fn route_to(host: &str, subset: &str) -> String {
    format!("    route:\n    - destination:\n        host: {host}\n        subset: {subset}\n")
}

/// Documents joined into one multi-document file.
pub(crate) fn documents(docs: &[&str]) -> String {
    docs.join("---\n")
}

fn split_http(v1: u32, v2: u32) -> String {
    format!(
        "  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: {v1}\n    - destination:\n        host: reviews\n        subset: v2\n      weight: {v2}\n"
    )
}

fn count(outcomes: &[Outcome], status: u16, body: &str) -> usize {
    outcomes.iter().filter(|o| o.status == status && o.body == body).count()
}

async fn stop_shared(mesh: Arc<RoutingMesh>) {
    Arc::try_unwrap(mesh).ok().expect("every caller is done").stop().await;
}

// ---------------------------------------------------------------- routing

const JASON_TO_V2: &str = "  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
";

#[tokio::test]
async fn header_match_sends_jason_to_v2_and_everyone_else_to_v1() {
    let rules = documents(&[&virtual_service("v1beta1", "reviews", JASON_TO_V2), &subsets_rule("reviews", &["v1", "v2", "v3"], "")]);
    let apps = vec![app("reviews", "v1", Behaviour::OK), app("reviews", "v2", Behaviour::OK), app("reviews", "v3", Behaviour::OK)];
    let mesh = start_routing(apps, &rules, 0.0).await;
    let client = http1_client();
    // (who, request headers, the instance that must answer)
    type User = (&'static str, &'static [(&'static str, &'static str)], &'static str);
    let users: [User; 4] = [
        ("jason", &[("end-user", "jason")], "reviews-v2"),
        ("anonymous", &[], "reviews-v1"),
        ("mary", &[("end-user", "mary")], "reviews-v1"),
        ("Jason (exact is case-sensitive)", &[("end-user", "Jason")], "reviews-v1"),
    ];
    for i in 0..60 {
        let (who, headers, want) = users[i % users.len()];
        let outcome = mesh.call(&client, "reviews", "/reviews/1", headers).await;
        assert_eq!((outcome.status, outcome.body.as_str()), (200, want), "request {i} as {who}");
    }
    assert_eq!(mesh.app("reviews-v2").requests(), 15);
    assert_eq!(mesh.app("reviews-v1").requests(), 45);
    assert_eq!(mesh.app("reviews-v3").requests(), 0, "no route leads to v3");

    let records = mesh.records(60).await;
    let to = |version: &str| records.iter().filter(|r| destination_version(r) == version && r.response_code == 200).count();
    assert_eq!((to("v1"), to("v2"), to("v3")), (45, 15, 0), "records name the subset's instance");
    assert!(records.iter().all(|r| flags(r).is_empty()), "no flags on routed requests");
    assert!(records.iter().all(|r| r.destination_service == "reviews.default.svc.cluster.local"));
    mesh.stop().await;
}

/// Subsets split over two destination rules of one host, as Istio merges them: v2 comes
/// from the second, whose connection limit applies since the first has no policy.
#[tokio::test]
async fn destination_rules_of_one_host_are_merged() {
    let canary = subsets_rule("reviews", &["v2"], "  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: 3\n")
        .replace("name: reviews\n", "name: reviews-canary\n");
    let rules = documents(&[&virtual_service("v1", "reviews", JASON_TO_V2), &subsets_rule("reviews", &["v1"], ""), &canary]);
    let apps = vec![app("reviews", "v1", Behaviour::OK), app("reviews", "v2", Behaviour::OK)];
    let mesh = start_routing(apps, &rules, 0.0).await;
    let client = http1_client();
    for i in 0..20 {
        let (headers, want): (&[(&str, &str)], _) = if i % 2 == 0 { (&[("end-user", "jason")], "reviews-v2") } else { (&[], "reviews-v1") };
        let outcome = mesh.call(&client, "reviews", "/reviews/1", headers).await;
        assert_eq!((outcome.status, outcome.body.as_str()), (200, want), "request {i}");
    }
    assert_eq!((mesh.app("reviews-v1").requests(), mesh.app("reviews-v2").requests()), (10, 10));
    let dump = mesh.config_dump().await;
    let clusters = dump["clusters"].as_array().cloned().unwrap_or_default();
    for name in ["reviews.default.svc.cluster.local|v1", "reviews.default.svc.cluster.local|v2"] {
        let cluster = clusters.iter().find(|c| c["name"] == name);
        let limit = cluster.map(|c| c["policy"]["connection_pool"]["max_connections"].clone());
        assert_eq!(limit, Some(serde_json::json!(3)), "{name} in {dump:#}");
    }
    mesh.stop().await;
}

#[tokio::test]
async fn uri_method_query_and_source_label_matches_in_order_and_no_route_is_404_nr() {
    let http = format!(
        "  - match:
    - uri:
        prefix: /reviews/
      method:
        exact: POST
{}  - match:
    - uri:
        regex: /reviews/[0-9]+
      queryParams:
        flavour:
          exact: two
{}  - match:
    - sourceLabels:
        app: details
{}  - match:
    - sourceLabels:
        app: productpage
        version: v1
      uri:
        exact: /reviews/1
{}",
        route_to("reviews", "v3"),
        route_to("reviews", "v2"),
        route_to("reviews", "v3"),
        route_to("reviews", "v1"),
    );
    let rules = documents(&[&virtual_service("v1", "reviews", &http), &subsets_rule("reviews", &["v1", "v2", "v3"], "")]);
    let apps = vec![app("reviews", "v1", Behaviour::OK), app("reviews", "v2", Behaviour::OK), app("reviews", "v3", Behaviour::OK)];
    let mesh = start_routing(apps, &rules, 0.0).await;
    let client = http1_client();

    let post = http::Request::post(mesh.proxy.outbound_url("/reviews/1")).header("host", "reviews:9080").body(empty()).expect("request");
    let (parts, body, _) = send(&client, post).await;
    assert_eq!((parts.status.as_u16(), String::from_utf8_lossy(&body).as_ref()), (200, "reviews-v3"), "POST /reviews/… matches the first route");
    let cases = [
        ("/reviews/7?flavour=two", 200, "reviews-v2"),
        ("/reviews/7?colour=red&flavour=two", 200, "reviews-v2"),
        // The caller is productpage v1: the `app: details` route never applies.
        ("/reviews/1", 200, "reviews-v1"),
        ("/reviews/1?flavour=two", 200, "reviews-v2"),
    ];
    for (path, status, want) in cases {
        let outcome = mesh.call(&client, "reviews", path, &[]).await;
        assert_eq!((outcome.status, outcome.body.as_str()), (status, want), "GET {path}");
    }
    // No route applies: the regex is anchored, the exact uri differs, GET is not POST.
    for path in ["/reviews/7x?flavour=two", "/reviews/2", "/ratings/1", "/reviews/7?flavour=Two"] {
        let outcome = mesh.call(&client, "reviews", path, &[]).await;
        assert_eq!(outcome.status, 404, "GET {path}: {}", outcome.body);
    }
    let served: usize = mesh.apps.iter().map(App::requests).sum();
    assert_eq!(served, 5, "unrouted requests never reach an app");

    let records = mesh.records(9).await;
    let unrouted: Vec<_> = records.iter().filter(|r| r.response_code == 404).collect();
    assert_eq!(unrouted.len(), 4);
    for record in unrouted {
        assert_eq!(flags(record), ["NR"], "{record:?}");
        // Reported against the service the host names, as Istio does, not `unknown`.
        assert_eq!(record.destination_service_name, "reviews", "{record:?}");
    }
    mesh.stop().await;
}

/// 2,000 requests over a `v1`/`v2` split. The share of v2 is binomial: σ =
/// √(p(1−p)/n) = 0.67 pp at 10 %, 0.89 pp at 20 %; ±3 pp is beyond 3.3σ (a false alarm
/// under 1 in 1,000), while ignoring the weights (50/50) or swapping them fails by far.
async fn weighted_split(v1: u32, v2: u32) {
    const REQUESTS: usize = 2_000;
    let rules = documents(&[&virtual_service("v1alpha3", "reviews", &split_http(v1, v2)), &subsets_rule("reviews", &["v1", "v2"], "")]);
    let mesh = Arc::new(start_routing(vec![app("reviews", "v1", Behaviour::OK), app("reviews", "v2", Behaviour::OK)], &rules, 0.0).await);
    let outcomes = drive(&mesh, 8, REQUESTS / 8, "reviews", "/reviews/1", &[]).await;
    let (to_v1, to_v2) = (count(&outcomes, 200, "reviews-v1"), count(&outcomes, 200, "reviews-v2"));
    assert_eq!(to_v1 + to_v2, REQUESTS, "every request answered 200 by v1 or v2: {:?}", tally(&outcomes));
    let share = 100.0 * to_v2 as f64 / REQUESTS as f64;
    eprintln!("{v1}/{v2} split: v2 got {share:.2} % of {REQUESTS}");
    assert!((share - f64::from(v2)).abs() <= 3.0, "{v1}/{v2}: v2 got {share:.2} % ({to_v2} of {REQUESTS})");
    assert_eq!((mesh.app("reviews-v1").requests(), mesh.app("reviews-v2").requests()), (to_v1, to_v2));
    let records = mesh.records(REQUESTS).await;
    let recorded_v2 = records.iter().filter(|r| destination_version(r) == "v2").count();
    assert_eq!(recorded_v2, to_v2, "records agree with the apps");
    stop_shared(mesh).await;
}

#[tokio::test]
async fn weighted_split_90_10_over_2000_requests() {
    weighted_split(90, 10).await;
}

#[tokio::test]
async fn weighted_split_80_20_over_2000_requests() {
    weighted_split(80, 20).await;
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn abort_fault_fails_jason_at_once_with_fi_and_leaves_others_alone() {
    let http = format!(
        "  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      abort:
        httpStatus: 500
        percentage:
          value: 100.0
{}  - route:
    - destination:
        host: ratings
        subset: v1
",
        route_to("ratings", "v1")
    );
    let rules = documents(&[&virtual_service("v1beta1", "ratings", &http), &subsets_rule("ratings", &["v1"], "")]);
    // A slow app: an answer in well under its delay can only be the proxy's own.
    let app_delay = Duration::from_millis(200);
    let mesh = start_routing(vec![app("ratings", "v1", Behaviour::slow(app_delay))], &rules, 100.0).await;
    let client = http1_client();
    for i in 0..10 {
        let outcome = mesh.call(&client, "ratings", "/ratings/0", &[("end-user", "jason")]).await;
        assert_eq!(outcome.status, 500, "jason's request {i}: {}", outcome.body);
        assert!(outcome.latency < Duration::from_millis(100), "jason's request {i} took {:?}: not immediate", outcome.latency);
    }
    for user in ["mary", "jasonx", "bob", "", "alice"] {
        let headers: &[(&str, &str)] = if user.is_empty() { &[] } else { &[("end-user", user)] };
        let outcome = mesh.call(&client, "ratings", "/ratings/0", headers).await;
        assert_eq!((outcome.status, outcome.body.as_str()), (200, "ratings-v1"), "user {user:?}");
        assert!(outcome.latency >= app_delay, "user {user:?}: answered by the app");
    }
    assert_eq!(mesh.app("ratings-v1").requests(), 5, "aborted requests never reach the app");

    let records = mesh.records(15).await;
    let aborted: Vec<_> = records.iter().filter(|r| r.response_code == 500).collect();
    assert_eq!(aborted.len(), 10);
    for record in &aborted {
        assert_eq!(flags(record), ["FI"], "{record:?}");
        // Aborted before an endpoint is picked, yet in a known cluster (Kiali keeps it).
        let cluster = record.destination.as_ref().map_or("", |w| w.cluster.as_str());
        assert_eq!(cluster, "Kubernetes", "{record:?}");
        assert!(record.duration_nanos < 100_000_000, "{record:?}");
    }
    assert!(records.iter().filter(|r| r.response_code == 200).all(|r| flags(r).is_empty()));
    // The client spans say so too.
    let spans = mesh.collector.wait_spans(15).await;
    let fi = spans.iter().filter(|s| span_attribute(s, "response_flags").as_deref() == Some("FI")).count();
    assert_eq!(fi, 10, "spans with response_flags=FI");
    mesh.stop().await;
}

#[tokio::test]
async fn delay_fault_delays_then_forwards_with_di() {
    let http = format!(
        "  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      delay:
        fixedDelay: 300ms
        percentage:
          value: 100
{}{}",
        route_to("ratings", "v1"),
        route_to("ratings", "v1").replacen("    route:", "  - route:", 1)
    );
    let rules = documents(&[&virtual_service("v1", "ratings", &http), &subsets_rule("ratings", &["v1"], "")]);
    let mesh = start_routing(vec![app("ratings", "v1", Behaviour::OK)], &rules, 0.0).await;
    let client = http1_client();
    for _ in 0..3 {
        let outcome = mesh.call(&client, "ratings", "/ratings/0", &[("end-user", "jason")]).await;
        assert_eq!((outcome.status, outcome.body.as_str()), (200, "ratings-v1"));
        assert!(outcome.latency >= Duration::from_millis(300), "delayed by the fault: {:?}", outcome.latency);
        assert!(outcome.latency < Duration::from_millis(900), "delayed once: {:?}", outcome.latency);
        let other = mesh.call(&client, "ratings", "/ratings/0", &[]).await;
        assert_eq!(other.status, 200);
        assert!(other.latency < Duration::from_millis(250), "others are not delayed: {:?}", other.latency);
    }
    assert_eq!(mesh.app("ratings-v1").requests(), 6, "delayed requests are forwarded");
    let records = mesh.records(6).await;
    let delayed: Vec<_> = records.iter().filter(|r| flags(r) == ["DI"]).collect();
    assert_eq!(delayed.len(), 3, "{records:?}");
    assert!(delayed.iter().all(|r| r.response_code == 200 && r.duration_nanos >= 300_000_000));
    mesh.stop().await;
}

// ---------------------------------------------------------------- resilience

#[tokio::test]
async fn circuit_breaker_one_connection_one_pending_overflows_with_503_uo() {
    // As Istio's circuit-breaking task: a DestinationRule alone, no VirtualService.
    let policy = "  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
";
    let rules = subsets_rule("reviews", &["v1"], policy);
    let mesh = Arc::new(start_routing(vec![app("reviews", "v1", Behaviour::slow(Duration::from_millis(50)))], &rules, 0.0).await);
    let outcomes = drive(&mesh, 3, 20, "reviews", "/reviews/1", &[]).await;
    let ok = count(&outcomes, 200, "reviews-v1");
    let overflow = outcomes.iter().filter(|o| o.status == 503).count();
    eprintln!("circuit breaker: {ok} × 200, {overflow} × 503 of {}", outcomes.len());
    assert_eq!(ok + overflow, 60, "only 200 (from the app) or 503: {:?}", tally(&outcomes));
    assert!(overflow >= 1, "3 callers against 1 connection + 1 pending must overflow: {:?}", tally(&outcomes));
    assert!(ok >= 1, "{:?}", tally(&outcomes));
    let app = mesh.app("reviews-v1");
    assert_eq!(app.requests(), ok, "overflowing requests never reach the app");
    assert_eq!(app.max_in_flight.load(std::sync::atomic::Ordering::SeqCst), 1, "never more than maxConnections in flight");

    let records = mesh.records(60).await;
    for record in &records {
        match record.response_code {
            503 => assert!(flags(record).contains(&"UO"), "{record:?}"),
            200 => assert!(flags(record).is_empty(), "{record:?}"),
            other => panic!("unexpected {other}: {record:?}"),
        }
    }
    assert_eq!(records.iter().filter(|r| r.response_code == 503).count(), overflow);
    stop_shared(mesh).await;
}

#[tokio::test]
async fn http2_max_requests_limits_requests_in_flight_over_h2c() {
    let policy = "  trafficPolicy:
    connectionPool:
      http:
        http2MaxRequests: 1
";
    let rules = subsets_rule("reviews", &["v1"], policy);
    let mesh = Arc::new(start_routing(vec![app("reviews", "v1", Behaviour::slow(Duration::from_millis(50)))], &rules, 0.0).await);
    // One h2c connection, three callers multiplexed on it.
    let client = h2c_client();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (mesh, client) = (mesh.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..10 {
                outcomes.push(mesh.call(&client, "reviews", "/reviews/1", &[]).await);
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.expect("caller"));
    }
    let ok = count(&outcomes, 200, "reviews-v1");
    let overflow = outcomes.iter().filter(|o| o.status == 503).count();
    assert_eq!(ok + overflow, 30, "{:?}", tally(&outcomes));
    assert!(overflow >= 1 && ok >= 1, "{:?}", tally(&outcomes));
    let app = mesh.app("reviews-v1");
    assert_eq!(app.requests(), ok);
    assert_eq!(app.max_in_flight.load(std::sync::atomic::Ordering::SeqCst), 1, "never more than http2MaxRequests in flight");
    let records = mesh.records(30).await;
    assert!(records.iter().filter(|r| r.response_code == 503).all(|r| flags(r).contains(&"UO")), "{records:?}");
    stop_shared(mesh).await;
}

#[tokio::test]
async fn outlier_detection_ejects_the_failing_instance_for_base_ejection_time() {
    let base_ejection = Duration::from_secs(2);
    let interval = Duration::from_secs(1);
    let http = "  - route:
    - destination:
        host: ratings
    retries:
      attempts: 0
";
    let policy = "  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 2s
      maxEjectionPercent: 100
";
    let rules = documents(&[&virtual_service("v1beta1", "ratings", http), &subsets_rule("ratings", &["v1"], policy)]);
    let good = AppSpec { workload: "ratings-good".into(), ..app("ratings", "v1", Behaviour::OK) };
    let bad = AppSpec { workload: "ratings-bad".into(), ..app("ratings", "v1", Behaviour::always_failing(500)) };
    let mesh = start_routing(vec![good, bad], &rules, 0.0).await;
    let client = http1_client();

    // One request every 20 ms until the failing instance has been called twice, or
    // 2 × (baseEjectionTime + interval) after its first call.
    let pace = Duration::from_millis(20);
    let mut outcomes = Vec::new();
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    loop {
        let bad_hits = mesh.app("ratings-bad").hits.lock().clone();
        if bad_hits.len() >= 2 {
            break;
        }
        let limit = bad_hits.first().map_or(started + Duration::from_secs(5), |first| first.at + 2 * (base_ejection + interval));
        assert!(Instant::now() < limit, "the failing instance was called {} time(s) (want 2) before the deadline: {bad_hits:?}", bad_hits.len());
        outcomes.push(mesh.call(&client, "ratings", "/ratings/0", &[]).await);
        next += pace;
        tokio::time::sleep_until(next).await;
    }
    let bad_hits = mesh.app("ratings-bad").hits.lock().clone();
    let (first, again) = (bad_hits[0].at, bad_hits[1].at);
    let ejected_for = again - first;
    eprintln!("outlier detection: the failing instance was ejected for {ejected_for:?}");
    assert!(
        ejected_for >= base_ejection - Duration::from_millis(50),
        "called again {ejected_for:?} after its 500, within baseEjectionTime {base_ejection:?}"
    );
    assert!(
        ejected_for <= base_ejection + interval + Duration::from_millis(500),
        "ejected for {ejected_for:?}: longer than baseEjectionTime + interval"
    );
    let good_meanwhile = mesh.app("ratings-good").hits.lock().iter().filter(|h| h.at > first && h.at < again).count();
    let expected = (ejected_for.as_millis() / pace.as_millis()) as usize / 2;
    assert!(good_meanwhile >= expected, "the healthy instance took the traffic: {good_meanwhile} requests");
    // No retries: each of the failing instance's 500s reached the caller.
    assert_eq!(outcomes.iter().filter(|o| o.status == 500).count(), 2, "{:?}", tally(&outcomes));
    assert_eq!(count(&outcomes, 200, "ratings-good"), outcomes.len() - 2, "{:?}", tally(&outcomes));
    mesh.stop().await;
}

#[tokio::test]
async fn gateway_errors_eject_but_max_ejection_percent_keeps_all_but_one_in_and_500_is_no_gateway_error() {
    let no_retries = |host: &str| format!("  - route:\n    - destination:\n        host: {host}\n    retries:\n      attempts: 0\n");
    let policy = "  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 0
      consecutiveGatewayErrors: 1
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 10
";
    let rules = documents(&[
        &virtual_service("v1beta1", "ratings", &no_retries("ratings")),
        &virtual_service("v1beta1", "details", &no_retries("details")),
        &subsets_rule("ratings", &["v1"], policy),
        &subsets_rule("details", &["v1"], policy),
    ]);
    let instance = |service: &'static str, name: &str, behaviour| AppSpec { workload: format!("{service}-{name}"), ..app(service, "v1", behaviour) };
    let apps = vec![
        instance("ratings", "a", Behaviour::always_failing(502)),
        instance("ratings", "b", Behaviour::always_failing(502)),
        instance("ratings", "c", Behaviour::always_failing(502)),
        instance("details", "ok", Behaviour::OK),
        instance("details", "broken", Behaviour::always_failing(500)),
    ];
    let mesh = start_routing(apps, &rules, 0.0).await;
    let client = http1_client();
    for _ in 0..30 {
        assert_eq!(mesh.call(&client, "ratings", "/ratings/0", &[]).await.status, 502);
    }
    for _ in 0..20 {
        let outcome = mesh.call(&client, "details", "/details/0", &[]).await;
        assert!(matches!(outcome.status, 200 | 500), "{outcome:?}");
    }
    // 10 % of 3 instances rounds to none, yet one can always be ejected; only one.
    let mut ratings: Vec<usize> = ["a", "b", "c"].iter().map(|n| mesh.app(&format!("ratings-{n}")).requests()).collect();
    ratings.sort_unstable();
    assert_eq!(ratings[0], 1, "one instance ejected after its first 502: {ratings:?}");
    assert!(ratings[1] >= 10 && ratings[1] + ratings[2] == 29, "the other two keep serving: {ratings:?}");
    // A 500 is a 5xx (disabled here) but no gateway error: nobody is ejected.
    assert_eq!((mesh.app("details-ok").requests(), mesh.app("details-broken").requests()), (10, 10));
    mesh.stop().await;
}

#[tokio::test]
async fn route_retries_hide_a_flaky_upstream() {
    const REQUESTS: usize = 300;
    let http = "  - route:
    - destination:
        host: ratings
    retries:
      attempts: 3
      retryOn: 5xx
";
    // 500, not 503: only the route's `5xx` retries it (Istio's default retries 503 only).
    let mesh = start_routing(vec![app("ratings", "v1", Behaviour::failing_one_in(3, 500))], &virtual_service("v1beta1", "ratings", http), 0.0).await;
    let client = http1_client();
    for i in 0..REQUESTS {
        let outcome = mesh.call(&client, "ratings", "/ratings/0", &[]).await;
        assert_eq!((outcome.status, outcome.body.as_str()), (200, "ratings-v1"), "request {i}");
    }
    let app = mesh.app("ratings-v1");
    let (requests, failures) = (app.requests(), app.failures());
    eprintln!("retries: the upstream answered {requests} requests, {failures} of them with 500");
    assert!(failures >= REQUESTS / 3, "the upstream did fail ({failures} times)");
    assert_eq!(requests, REQUESTS + failures, "each failure retried once, no success retried");
    let records = mesh.records(REQUESTS).await;
    assert!(records.iter().all(|r| r.response_code == 200 && flags(r).is_empty()));
    mesh.stop().await;
}

#[tokio::test]
async fn max_retries_of_one_lets_a_lone_request_make_all_its_retries() {
    // `maxRetries` bounds the retries outstanding at once across the cluster: one
    // request retrying in turn holds one, so with a budget of 1 it gets all 3.
    let http = "  - route:
    - destination:
        host: reviews
    retries:
      attempts: 3
      retryOn: 5xx
";
    let budget = "  trafficPolicy:\n    connectionPool:\n      http:\n        maxRetries: 1\n";
    let rules = documents(&[&virtual_service("v1beta1", "reviews", http), &subsets_rule("reviews", &["v1"], budget)]);
    let mesh = start_routing(vec![app("reviews", "v1", Behaviour::always_failing(500))], &rules, 0.0).await;
    let client = http1_client();
    for _ in 0..3 {
        let reviews = mesh.call(&client, "reviews", "/reviews/0", &[]).await;
        assert_eq!(reviews.status, 500);
    }
    assert_eq!(mesh.app("reviews-v1").requests(), 12, "1 try + 3 retries each");
    let records = mesh.records(3).await;
    for record in &records {
        assert_eq!(flags(record), vec!["URX"], "retries exhausted, no overflow: {record:?}");
    }
    mesh.stop().await;
}

#[tokio::test]
async fn without_retries_istios_default_retries_503_twice_and_exhausted_retries_add_urx() {
    let no_retries = |host: &str| format!("  - route:\n    - destination:\n        host: {host}\n");
    let exhausted = "  - route:
    - destination:
        host: reviews
    retries:
      attempts: 2
      retryOn: 5xx
";
    let rules = documents(&[
        &virtual_service("v1beta1", "ratings", &no_retries("ratings")),
        &virtual_service("v1beta1", "details", &no_retries("details")),
        &virtual_service("v1beta1", "reviews", exhausted),
    ]);
    let apps = vec![
        app("ratings", "v1", Behaviour::failing_one_in(2, 503)),
        app("details", "v1", Behaviour::failing_one_in(2, 500)),
        app("reviews", "v1", Behaviour::always_failing(503)),
    ];
    let mesh = start_routing(apps, &rules, 0.0).await;
    let client = http1_client();
    let mut details_500 = 0;
    for _ in 0..20 {
        let ratings = mesh.call(&client, "ratings", "/ratings/0", &[]).await;
        assert_eq!(ratings.status, 200, "503 is retried by default");
        let details = mesh.call(&client, "details", "/details/0", &[]).await;
        assert!(matches!(details.status, 200 | 500), "{details:?}");
        details_500 += usize::from(details.status == 500);
    }
    let ratings = mesh.app("ratings-v1");
    assert!(ratings.failures() >= 10 && ratings.requests() == 20 + ratings.failures(), "ratings: {} requests", ratings.requests());
    assert_eq!(details_500, 10, "500 is not retried by default");
    assert_eq!(mesh.app("details-v1").requests(), 20);

    for _ in 0..3 {
        let reviews = mesh.call(&client, "reviews", "/reviews/0", &[]).await;
        assert_eq!(reviews.status, 503);
    }
    assert_eq!(mesh.app("reviews-v1").requests(), 9, "1 try + 2 retries each");
    let records = mesh.records(43).await;
    let reviews: Vec<_> = records.iter().filter(|r| r.destination_service_name == "reviews").collect();
    assert_eq!(reviews.len(), 3);
    for record in reviews {
        assert_eq!(record.response_code, 503);
        assert!(flags(record).contains(&"URX"), "{record:?}");
    }
    mesh.stop().await;
}

#[tokio::test]
async fn route_timeout_answers_504_ut() {
    let http = "  - route:
    - destination:
        host: ratings
    timeout: 0.3s
    headers:
      response:
        set: {x-route: ratings}
";
    let mesh = start_routing(vec![app("ratings", "v1", Behaviour::slow(Duration::from_secs(2)))], &virtual_service("v1", "ratings", http), 0.0).await;
    let client = http1_client();
    let outcome = mesh.call(&client, "ratings", "/ratings/0", &[]).await;
    assert_eq!(outcome.status, 504, "{}", outcome.body);
    assert!(
        outcome.latency >= Duration::from_millis(300) && outcome.latency < Duration::from_millis(1_000),
        "timed out after {:?}",
        outcome.latency
    );
    // The route's response headers hold for the proxy's own answer, as Envoy's router
    // applies them.
    assert_eq!(outcome.headers.get("x-route").map(|v| v.as_bytes()), Some(&b"ratings"[..]));
    let records = mesh.records(1).await;
    assert!(flags(&records[0]).contains(&"UT"), "{:?}", records[0]);
    mesh.stop().await;
}

// ---------------------------------------------------------------- mirroring

#[tokio::test]
async fn mirror_copies_every_request_to_v2_as_shadow_without_slowing_the_caller() {
    const REQUESTS: usize = 20;
    let http = "  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 100
    mirror:
      host: reviews
      subset: v2
    mirrorPercentage:
      value: 100.0
";
    let mirror_delay = Duration::from_secs(1);
    let rules = documents(&[&virtual_service("v1beta1", "reviews", http), &subsets_rule("reviews", &["v1", "v2"], "")]);
    let apps = vec![app("reviews", "v1", Behaviour::OK), app("reviews", "v2", Behaviour::slow(mirror_delay))];
    let mesh = start_routing(apps, &rules, 0.0).await;
    let client = http1_client();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..REQUESTS {
        let outcome = mesh.call(&client, "reviews", &format!("/reviews/{i}"), &[]).await;
        assert_eq!((outcome.status, outcome.body.as_str()), (200, "reviews-v1"), "request {i}: only the primary answers");
        slowest = slowest.max(outcome.latency);
    }
    let total = started.elapsed();
    eprintln!("mirroring: {REQUESTS} requests in {total:?}, slowest {slowest:?} (mirror takes {mirror_delay:?})");
    assert!(slowest < mirror_delay / 2, "a caller waited {slowest:?}: the slow mirror held it up");

    let v2 = mesh.app("reviews-v2");
    eventually("every request mirrored to v2", || (v2.requests() >= REQUESTS).then_some(())).await;
    let shadow = v2.hits.lock().clone();
    assert_eq!(shadow.len(), REQUESTS);
    assert!(shadow.iter().all(|h| h.host == "reviews-shadow:9080"), "{:?}", shadow.iter().map(|h| &h.host).collect::<Vec<_>>());
    let mut paths: Vec<String> = shadow.iter().map(|h| h.path.clone()).collect();
    paths.sort();
    let mut want: Vec<String> = (0..REQUESTS).map(|i| format!("/reviews/{i}")).collect();
    want.sort();
    assert_eq!(paths, want, "the copies are of the same requests");
    let primary = mesh.app("reviews-v1").hits.lock().clone();
    assert_eq!(primary.len(), REQUESTS);
    assert!(primary.iter().all(|h| h.host == "reviews:9080"), "the primary keeps the caller's Host");
    mesh.stop().await;
}

// ---------------------------------------------------------------- reload

/// How the split in force shows in `/config_dump`: the weights of the reviews
/// virtual service's first route.
fn weights_in_force(dump: &serde_json::Value) -> Vec<u64> {
    let services = dump["rules"]["virtual_services"].as_array().cloned().unwrap_or_default();
    let reviews = services.iter().find(|vs| vs["name"] == "reviews").unwrap_or_else(|| panic!("VirtualService reviews in {dump:#}"));
    reviews["http"][0]["route"].as_array().unwrap_or_else(|| panic!("http[0].route in {reviews:#}")).iter().filter_map(|d| d["weight"].as_u64()).collect()
}

/// `revision` (top level, or beside the rules).
fn revision(dump: &serde_json::Value) -> u64 {
    dump["revision"].as_u64().or_else(|| dump["rules"]["revision"].as_u64()).unwrap_or_else(|| panic!("a revision in {dump:#}"))
}

fn last_error(dump: &serde_json::Value) -> String {
    let error = if dump.get("last_error").is_some() { &dump["last_error"] } else { &dump["rules"]["last_error"] };
    match error {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_under_traffic_drops_no_request_and_a_bad_edit_keeps_the_last_good_rules() {
    let subsets = subsets_rule("reviews", &["v1", "v2"], "");
    let all_v1 = documents(&[
        &virtual_service("v1beta1", "reviews", "  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 100\n"),
        &subsets,
    ]);
    let split = documents(&[&virtual_service("v1beta1", "reviews", &split_http(80, 20)), &subsets]);
    let bad = split.replace("  - route:\n", "  - corsPolicy:\n      allowOrigins:\n      - exact: https://example.com\n    route:\n");
    assert!(bad.contains("corsPolicy"));

    let mesh = Arc::new(start_routing(vec![app("reviews", "v1", Behaviour::OK), app("reviews", "v2", Behaviour::OK)], &all_v1, 0.0).await);
    // /config_dump shows the rules in force: hosts qualified, subsets by name.
    let dump = mesh.config_dump().await;
    let services = dump["rules"]["virtual_services"].as_array().cloned().unwrap_or_default();
    assert!(
        services.iter().any(|vs| vs["name"] == "reviews"
            && vs["namespace"] == "default"
            && vs["hosts"].as_array().is_some_and(|h| h.iter().any(|h| h == "reviews.default.svc.cluster.local"))),
        "{dump:#}"
    );
    let rules = dump["rules"]["destination_rules"].as_array().cloned().unwrap_or_default();
    assert!(
        rules.iter().any(|dr| dr["subsets"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == "v2"))),
        "subset v2 in {dump:#}"
    );
    assert_eq!(weights_in_force(&dump), [100]);
    let first_revision = revision(&dump);

    // 4 callers, one request every 5 ms each.
    let traffic = Traffic::start(&mesh, 4, Duration::from_millis(5), "reviews", "/reviews/1");
    traffic.wait_sent_since(Instant::now(), 100).await;
    let mut switches = Vec::new();
    for cycle in 0..3 {
        // all v1 → 80/20: the first request v2 answers was sent how long after the write?
        let written = Instant::now();
        mesh.rewrite_rules(&split);
        let first_v2 = eventually("v2 answers after the switch to 80/20", || {
            traffic.sent_since(written).into_iter().filter(|o| o.body == "reviews-v2").min_by_key(|o| o.started)
        })
        .await;
        let took = first_v2.started - written;
        switches.push(took);
        assert!(took < Duration::from_secs(1), "cycle {cycle}: 80/20 took effect after {took:?}");
        let window = traffic.wait_sent_since(first_v2.started, 400).await;
        let share = 100.0 * window.iter().filter(|o| o.body == "reviews-v2").count() as f64 / window.len() as f64;
        assert!((share - 20.0).abs() <= 8.0, "cycle {cycle}: v2 got {share:.1} % of {} requests under 80/20", window.len());
        assert_eq!(weights_in_force(&mesh.config_dump().await), [80, 20]);

        // 80/20 → all v1: the last request v2 answered was sent how long after the write?
        let written = Instant::now();
        mesh.rewrite_rules(&all_v1);
        traffic.wait_sent_since(written + Duration::from_millis(1_300), 50).await;
        let last_v2 = traffic.sent_since(written).into_iter().filter(|o| o.body == "reviews-v2").map(|o| o.started).max();
        let took = last_v2.map_or(Duration::ZERO, |last| last - written);
        switches.push(took);
        assert!(took < Duration::from_secs(1), "cycle {cycle}: v2 still answered requests sent {took:?} after the switch back");
        assert_eq!(weights_in_force(&mesh.config_dump().await), [100]);
    }
    eprintln!("rules reload: the new split took effect after {switches:?}");
    let good_revision = revision(&mesh.config_dump().await);
    assert!(good_revision > first_revision, "revision moves with each good reload: {first_revision} → {good_revision}");

    // A bad edit (an unsupported field): rejected, counted, the last good rules stay.
    let rejected = labelled(&mesh.stats().await, "meshtel_proxy_rules_reloads_total", "result=\"rejected\"");
    let written = Instant::now();
    mesh.rewrite_rules(&bad);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = labelled(&mesh.stats().await, "meshtel_proxy_rules_reloads_total", "result=\"rejected\"");
        if now > rejected {
            break;
        }
        assert!(Instant::now() < deadline, "the bad edit was never counted as rejected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    traffic.wait_sent_since(written + Duration::from_millis(1_000), 50).await;
    let after_bad = traffic.sent_since(written);
    assert_eq!(count(&after_bad, 200, "reviews-v2"), 0, "the bad edit's 80/20 must not be in force: {:?}", tally(&after_bad));
    let dump = mesh.config_dump().await;
    assert_eq!(weights_in_force(&dump), [100], "the last good rules stay in force");
    assert_eq!(revision(&dump), good_revision, "a rejected edit is no new revision");
    assert!(last_error(&dump).contains("corsPolicy"), "last_error names the field: {dump:#}");
    let stats = mesh.stats().await;
    assert!(stats.contains("\nmeshtel_proxy_rules_last_reload_successful 0\n"), "{stats}");

    let outcomes = traffic.stop().await;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    assert!(failed.is_empty(), "{} of {} requests failed during reloads: {:?}", failed.len(), outcomes.len(), &failed[..failed.len().min(5)]);
    let stats = mesh.stats().await;
    assert!(labelled(&stats, "meshtel_proxy_rules_reloads_total", "result=\"ok\"") >= 6.0, "{stats}");
    stop_shared(mesh).await;
}
