//! The fault and resilience scenarios: injected delays and aborts, circuit breaking,
//! outlier ejection, the rate limit.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

use super::{Demo, wait_for_requests, wl};

/// A span's tag as text (`""` when absent).
fn tag(span: &Value, key: &str) -> String {
    span["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["key"] == key))
        .map(|t| match &t["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_delay_jason_is_found_by_a_min_duration_trace_search() {
    let demo = Demo::start(Some("delay-jason")).await;
    // What jason sees: after two 3 s tries productpage gives up on reviews.
    let (jason, anonymous) = tokio::join!(demo.page(Some("jason")), demo.page(None));
    let ((page, took), (fast, fast_took)) = (jason, anonymous);
    assert!(
        took >= Duration::from_millis(5_500),
        "jason waited {took:?}"
    );
    assert!(
        page["reviewsError"]
            .as_str()
            .is_some_and(|e| e.contains("reviews are currently unavailable")),
        "{page}"
    );
    assert_eq!(fast["reviewsVersion"], "v1", "{fast}");
    assert!(fast_took < Duration::from_secs(2), "{fast_took:?}");

    // The lab: search productpage traces of at least 5 s.
    let now_us = now_nanos() / 1_000;
    let search = demo.query_url(&format!(
        "/api/traces?service=productpage.default&minDuration=5s&limit=20&start={}&end={}",
        now_us - 600_000_000,
        now_us + 600_000_000
    ));
    let trace = eventually(
        Duration::from_secs(15),
        "a slow productpage trace with the delayed ratings call",
        || async {
            let found = get_json(&search).await;
            found["data"]
                .as_array()?
                .iter()
                .find(|t| {
                    t["spans"].as_array().is_some_and(|spans| {
                        spans
                            .iter()
                            .any(|s| tag(s, "response_flags").contains("DI"))
                    })
                })
                .cloned()
        },
    )
    .await;
    let spans = trace["spans"].as_array().unwrap();
    let longest = spans
        .iter()
        .filter_map(|s| s["duration"].as_u64())
        .max()
        .unwrap();
    eprintln!("delay-jason: jason's page took {took:?}, the slow trace {longest} µs");
    assert!(
        (5_500_000..=7_500_000).contains(&longest),
        "productpage took {longest} µs"
    );
    // Every trace the search found is a slow one; the fast majority is not there.
    let found = get_json(&search).await;
    for trace in found["data"].as_array().unwrap() {
        let longest = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["duration"].as_u64())
            .max()
            .unwrap();
        assert!(longest >= 5_000_000, "{longest} µs");
    }
    let requests = demo.requests().await;
    assert!(
        requests.sum(&[
            ("reporter", "source"),
            ("destination_service_name", "ratings"),
            ("response_flags", "DI"),
        ]) > 0.0
    );
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_abort_jason_fails_his_ratings_with_500_fi() {
    let demo = Demo::start(Some("abort-jason")).await;
    let (page, took) = demo.page(Some("jason")).await;
    assert_eq!(page["reviewsVersion"], "v2", "{page}");
    assert_eq!(page["ratings"], "unavailable", "{page}");
    assert!(
        took < Duration::from_secs(2),
        "the abort is immediate: {took:?}"
    );
    let (page, _) = demo.page(None).await;
    assert_eq!(page["reviewsVersion"], "v1", "{page}");

    let aborted = [
        ("reporter", "source"),
        ("source_workload", "reviews-v2"),
        ("destination_service_name", "ratings"),
        ("response_code", "500"),
        ("response_flags", "FI"),
    ];
    wait_for_requests(&demo, "500 FI from reviews-v2 to ratings", |r| {
        (r.sum(&aborted) >= 10.0).then_some(())
    })
    .await;
    let requests = demo.requests().await;
    assert_eq!(
        requests.sum(&[
            ("reporter", "destination"),
            ("destination_service_name", "ratings")
        ]),
        0.0,
        "ratings' proxy never sees an aborted call (and only jason goes to v2)"
    );
    let edge = demo
        .graph_edge(&wl("reviews-v2"), "svc_default_ratings")
        .await
        .expect("an edge reviews-v2 -> the ratings service (no instance reached)");
    let flags = edge["traffic"]["responses"]["500"]["flags"]
        .as_object()
        .unwrap_or_else(|| panic!("500s on {edge}"));
    assert!(flags.keys().any(|f| f.contains("FI")), "{edge}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_circuit_breaker_refuses_bursts_with_503_uo() {
    let demo = Demo::start(Some("circuit-breaker")).await;
    let overflow = [
        ("reporter", "source"),
        ("source_workload", "productpage-v1"),
        ("destination_service_name", "reviews"),
        ("response_code", "503"),
        ("response_flags", "UO"),
    ];
    wait_for_requests(&demo, "503 UO from productpage to reviews", |r| {
        (r.sum(&overflow) >= 3.0).then_some(())
    })
    .await;
    let overflows = demo
        .proxy_stat(
            "productpage-v1",
            "meshtel_proxy_circuit_breaker_overflows_total",
            &[],
        )
        .await;
    eprintln!("circuit-breaker: {overflows} overflows at productpage's proxy");
    assert!(overflows >= 3.0, "{overflows}");
    let uo_on_graph = eventually(Duration::from_secs(10), "UO on a graph edge", || async {
        for version in ["v1", "v2", "v3"] {
            let edge = demo
                .graph_edge(&wl("productpage-v1"), &wl(&format!("reviews-{version}")))
                .await?;
            if let Some(flags) = edge["traffic"]["responses"]["503"]["flags"].as_object()
                && flags.keys().any(|f| f.contains("UO"))
            {
                return Some(edge);
            }
        }
        None
    })
    .await;
    assert!(uo_on_graph["traffic"]["rates"]["httpPercentErr"].is_string());
    // productpage answers 200 regardless (it shows "reviews unavailable" at worst).
    assert_eq!(demo.overview().await["traffic"]["serverErrors"], 0);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_eject_broken_instance_stops_traffic_to_details_v2() {
    let demo = Demo::start(Some("eject-broken-instance")).await;
    eventually(
        Duration::from_secs(20),
        "productpage's proxy ejects an instance",
        || async {
            let ejections = demo
                .proxy_stat(
                    "productpage-v1",
                    "meshtel_proxy_outlier_ejections_total",
                    &[],
                )
                .await;
            (ejections >= 1.0).then_some(())
        },
    )
    .await;
    // Calls in flight at the ejection are reported within a few hundred ms.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = demo.requests().await;
    let failed = before.sum(&[
        ("reporter", "source"),
        ("destination_workload", "details-v2"),
        ("response_code", "500"),
    ]);
    assert!(
        failed >= 3.0,
        "details-v2 failed {failed} times before it was ejected"
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = demo.requests().await;
    let delta = |w: &str| after.sent_by_productpage_to(w) - before.sent_by_productpage_to(w);
    assert!(
        delta("details-v1") >= 40.0,
        "details-v1 took over: {}",
        delta("details-v1")
    );
    assert_eq!(
        delta("details-v2"),
        0.0,
        "details-v2 got calls while ejected ({:?} after the first ejection)",
        started.elapsed()
    );
    let dump = get_json(&demo.admin_url("productpage-v1", "/config_dump")).await;
    assert!(dump.to_string().contains("details"), "{dump}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_rate_limit_ratings_lets_one_call_a_second_through() {
    let demo = Demo::start(Some("rate-limit-ratings")).await;
    let quotas = get_json(&demo.query_url("/api/quotas")).await;
    assert_eq!(quotas["data"][0]["name"], "requestcountquota", "{quotas}");

    let at_ratings = |code: &'static str| {
        [
            ("reporter", "destination"),
            ("destination_service_name", "ratings"),
            ("response_code", code),
        ]
    };
    wait_for_requests(&demo, "429s at ratings", |r| {
        (r.sum(&at_ratings("429")) >= 20.0).then_some(())
    })
    .await;
    let requests = demo.requests().await;
    assert_eq!(
        requests.sum(&at_ratings("429")),
        requests.sum(&[
            ("reporter", "destination"),
            ("destination_service_name", "ratings"),
            ("response_flags", "RL"),
        ]),
        "every 429 carries RL"
    );
    let before = demo.requests().await;
    let window = Duration::from_secs(8);
    tokio::time::sleep(window).await;
    let after = demo.requests().await;
    let granted = after.sum(&at_ratings("200")) - before.sum(&at_ratings("200"));
    let limited = after.sum(&at_ratings("429")) - before.sum(&at_ratings("429"));
    assert!(
        (4.0..=13.0).contains(&granted),
        "{granted} granted in {window:?} at 1/s"
    );
    let share = limited / (granted + limited);
    eprintln!("rate-limit-ratings: {granted} granted, {limited} limited in {window:?}");
    assert!(
        share >= 0.6,
        "429 share {share:.3} ({limited} of {})",
        granted + limited
    );

    // Switching away deletes the quota: ratings answers everyone again.
    let reply = http()
        .put(demo.query_url("/api/demo/scenario"))
        .header("content-type", "application/json")
        .body(r#"{"name":null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let quotas = get_json(&demo.query_url("/api/quotas")).await;
    assert_eq!(quotas["data"].as_array().unwrap().len(), 0, "{quotas}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = demo.requests().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = demo.requests().await;
    assert_eq!(
        after.sum(&at_ratings("429")),
        before.sum(&at_ratings("429"))
    );
    assert!(after.sum(&at_ratings("200")) - before.sum(&at_ratings("200")) >= 20.0);
    demo.stop().await;
}
