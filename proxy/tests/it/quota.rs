//! Quota enforcement on the inbound listener against the real collector quota engine:
//! 429 + `RL`, prefetch off and on, failure modes, policy propagation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::quota_support::*;
use crate::support::*;

const ONE_AN_HOUR: &str = r#"{"name": "reviews-rph", "match": {"destination": {"service": "reviews"}}, "maxAmount": 2, "validDuration": "1h"}"#;
const ONE_A_SECOND: &str = r#"{"name": "reviews-rps", "match": {"destination": {"service": "reviews"}}, "maxAmount": 1, "validDuration": "1s"}"#;

#[tokio::test]
async fn an_exhausted_quota_answers_429_with_ratelimit_headers_and_flag_rl_without_calling_the_app() {
    let collector = start_quota_collector().await;
    collector.set_policies(1, &[ONE_AN_HOUR]);
    let reviews = start_quota_proxy(&collector.url(), |_| {}).await;
    reviews.wait_policies(1).await;
    let client = http1_client();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let (parts, body, _) = send(&client, reviews.request("/reviews/1")).await;
        statuses.push(parts.status.as_u16());
        last = Some((parts, body));
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(reviews.upstream.requests.load(Ordering::SeqCst), 2, "the denied request never reached the app");
    let (parts, body) = last.expect("a response");
    let headers = headers_of(&parts.headers);
    assert_eq!(headers["x-envoy-ratelimited"], "true");
    assert_eq!(headers["x-ratelimit-limit"], r#"2, 2;w=3600;name="reviews-rph""#);
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let reset: u64 = headers["x-ratelimit-reset"].parse().expect("seconds");
    let retry_after: u64 = headers["retry-after"].parse().expect("seconds");
    // One quota, and it denies: both say when its window ends, rounded up alike.
    assert!((1..=3600).contains(&retry_after) && reset == retry_after, "reset {reset}, retry-after {retry_after}");
    assert_eq!(&body[..], b"RESOURCE_EXHAUSTED:Quota is exhausted for: reviews-rph");

    // The record says 429 / RL, so istio_requests_total does.
    eventually("a 429 RL series", || (collector.istio_requests("429", "RL") == 1.0).then_some(())).await;
    assert_eq!(collector.istio_requests("200", "-") + collector.istio_requests("200", ""), 2.0);
    let stats = reviews.stats().await;
    assert_eq!(decisions(&stats, "denied_local") + decisions(&stats, "denied_remote"), 1);
    assert_eq!(decisions(&stats, "fail_open"), 0);
    reviews.stop().await;
}

/// Two quotas match; the tighter one denies. Envoy lists every status with a limit in
/// `x-ratelimit-limit`, the one closest to its limit first (mesh.md §4.2), not only the
/// one that denied.
#[tokio::test]
async fn a_denial_lists_every_matched_quota_in_the_ratelimit_limit_header() {
    const TIGHT: &str = r#"{"name": "px-shared", "match": {"destination": {"service": "reviews"}}, "maxAmount": 1, "validDuration": "1m"}"#;
    const LOOSE: &str = r#"{"name": "px-second", "match": {"destination": {"service": "reviews"}}, "dimensions": {"m": "request.method"}, "maxAmount": 100, "validDuration": "1m"}"#;
    const UNLIMITED: &str = r#"{"name": "px-free", "match": {"destination": {"service": "reviews"}}, "unlimited": true}"#;
    for prefetch in [false, true] {
        let collector = start_quota_collector().await;
        collector.set_policies(1, &[TIGHT, LOOSE, UNLIMITED]);
        let reviews = start_quota_proxy(&collector.url(), |c| c.quota.prefetch = prefetch).await;
        // The unlimited one never denies: the proxy does not keep it.
        reviews.wait_policies(2).await;
        let client = http1_client();
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let (parts, _, _) = send(&client, reviews.request("/reviews/1")).await;
            statuses.push(parts.status.as_u16());
            last = Some(parts);
        }
        assert_eq!(statuses, [200, 429, 429], "prefetch {prefetch}");
        let headers = headers_of(&last.expect("a response").headers);
        // Policy (name) order.
        assert_eq!(
            headers["x-ratelimit-limit"],
            r#"1, 100;w=60;name="px-second", 1;w=60;name="px-shared""#,
            "prefetch {prefetch}"
        );
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        let retry_after: u64 = headers["retry-after"].parse().expect("seconds");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        reviews.stop().await;
    }
}

/// A token bucket has room for the next request after one refill, long before it is
/// full: `retry-after` says the first, `x-ratelimit-reset` the second.
#[tokio::test]
async fn a_token_bucket_denial_says_to_retry_after_one_refill_not_after_the_reset() {
    const BUCKET: &str = r#"{"name": "px-bucket", "match": {"destination": {"service": "reviews"}}, "maxAmount": 1, "validDuration": "4s", "algorithm": "token-bucket", "burst": 3}"#;
    let collector = start_quota_collector().await;
    collector.set_policies(1, &[BUCKET]);
    let reviews = start_quota_proxy(&collector.url(), |c| c.quota.prefetch = false).await;
    reviews.wait_policies(1).await;
    let client = http1_client();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let (parts, _, _) = send(&client, reviews.request("/reviews/1")).await;
        statuses.push(parts.status.as_u16());
        last = Some(parts);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "a burst of 3");
    let headers = headers_of(&last.expect("a response").headers);
    let retry_after: u64 = headers["retry-after"].parse().expect("seconds");
    let reset: u64 = headers["x-ratelimit-reset"].parse().expect("seconds");
    // One token per 4 s; full again (3 tokens) after about 12 s.
    assert!((1..=4).contains(&retry_after), "retry-after {retry_after}");
    assert!((9..=12).contains(&reset), "reset {reset}");
    reviews.stop().await;
}

#[tokio::test]
async fn grpc_callers_get_resource_exhausted() {
    let collector = start_quota_collector().await;
    collector.set_policies(1, &[r#"{"name": "grpc-quota", "maxAmount": 1, "validDuration": "1h"}"#]);
    let reviews = start_quota_proxy(&collector.url(), |_| {}).await;
    reviews.wait_policies(1).await;
    let client = h2c_client();
    let request = || {
        http::Request::post(reviews.inbound_url("/grpc.Reviews/Get"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(empty())
            .expect("request")
    };
    let (first, _, trailers) = send(&client, request()).await;
    assert_eq!((first.status.as_u16(), trailers.map(|t| t["grpc-status"].clone())), (200, Some("0".parse().expect("value"))));
    let (denied, body, _) = send(&client, request()).await;
    assert_eq!(denied.status, 200, "gRPC denials are HTTP 200 with a grpc-status");
    assert_eq!(denied.headers["grpc-status"], "8");
    assert_eq!(denied.headers["grpc-message"], "Quota is exhausted for: grpc-quota");
    assert_eq!(denied.headers["x-envoy-ratelimited"], "true");
    assert!(body.is_empty());
    assert_eq!(reviews.upstream.requests.load(Ordering::SeqCst), 1);
    reviews.stop().await;
}

/// Sends `rate` requests per second for `seconds`; returns the statuses and the number
/// of distinct epoch seconds the requests were sent in (under load the loop can run
/// late and so touch more one-second windows than `seconds`).
async fn drive(reviews: &QuotaProxy, rate: u64, seconds: u64) -> (Vec<u16>, usize) {
    let client = http1_client();
    let start = tokio::time::Instant::now();
    let mut statuses = Vec::new();
    let mut windows = std::collections::BTreeSet::new();
    for i in 0..rate * seconds {
        tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate)).await;
        windows.insert(epoch_second());
        statuses.push(send(&client, reviews.request("/reviews/1")).await.0.status.as_u16());
        windows.insert(epoch_second());
    }
    (statuses, windows.len())
}

fn epoch_second() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[tokio::test]
async fn without_prefetch_one_per_second_at_twenty_per_second_grants_one_per_window() {
    let collector = start_quota_collector().await;
    collector.set_policies(1, &[ONE_A_SECOND]);
    let reviews = start_quota_proxy(&collector.url(), |c| c.quota.prefetch = false).await;
    reviews.wait_policies(1).await;
    let (statuses, windows) = drive(&reviews, 20, 5).await;
    let granted = statuses.iter().filter(|s| **s == 200).count();
    let stats = reviews.stats().await;
    assert!(windows <= 8, "the 5 s drive ran far too late: {windows} windows");
    assert!(
        (windows.saturating_sub(2)..=windows).contains(&granted),
        "{granted} granted over {windows} one-second windows of a 1/s quota; fail-open grants: {}",
        decisions(&stats, "fail_open")
    );
    assert_eq!(granted + statuses.iter().filter(|s| **s == 429).count(), 100);
    assert_eq!(decisions(&stats, "granted_remote") as usize, granted, "one Check per request");
    assert_eq!(decisions(&stats, "denied_remote") as usize, 100 - granted);
    assert_eq!(labelled(&stats, "meshtel_proxy_quota_check_rpcs_total", "code=\"OK\""), 100.0);
    reviews.stop().await;
}

#[tokio::test]
async fn with_prefetch_most_decisions_are_local_and_windows_stay_within_the_limit() {
    let collector = start_quota_collector().await;
    let limit = 200;
    collector.set_policies(1, &[&format!(r#"{{"name": "reviews-200", "maxAmount": {limit}, "validDuration": "1s"}}"#)]);
    let reviews = Arc::new(start_quota_proxy(&collector.url(), |_| {}).await);
    reviews.wait_policies(1).await;
    let concurrency = 4;
    let granted_at: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (reviews, granted_at) = (reviews.clone(), granted_at.clone());
        tasks.push(tokio::spawn(async move {
            let client = http1_client();
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let window = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
                let (parts, _, _) = send(&client, reviews.request("/reviews/1")).await;
                if parts.status == 200 {
                    *granted_at.lock().entry(window).or_default() += 1;
                } else {
                    assert_eq!(parts.status, 429);
                }
                sent += 1;
            }
            sent
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await.expect("driver");
    }
    let stats = reviews.stats().await;
    let local = decisions(&stats, "granted_local") + decisions(&stats, "denied_local");
    let total = local + decisions(&stats, "granted_remote") + decisions(&stats, "denied_remote");
    assert_eq!(total, sent, "one decision per request, none failed: {stats}");
    assert!(local as f64 >= 0.95 * total as f64, "{local} of {total} decisions local");
    // Requests in flight across a boundary are counted by their send time, so a
    // window may show up to `concurrency` of the next one's grants.
    for (window, granted) in granted_at.lock().iter() {
        assert!(*granted <= limit + concurrency, "window {window}: {granted} granted, limit {limit}");
    }
    Arc::try_unwrap(reviews).ok().expect("drivers done").stop().await;
}

#[tokio::test]
async fn a_collector_gone_keeps_the_policies_and_fails_open_or_closed_with_500_rlse() {
    let collector = start_quota_collector().await;
    // One counter per path, so that every new path needs the collector.
    collector.set_policies(1, &[r#"{"name": "per-path", "dimensions": {"path": "request.path"}, "maxAmount": 5, "validDuration": "1h"}"#]);
    let relay = Relay::start(collector.addr).await;
    let (open, closed) = start_open_and_closed(&relay.url(), |_| {}).await;
    let client = http1_client();
    assert_eq!(send(&client, open.request("/before")).await.0.status, 200);
    assert_eq!(send(&client, closed.request("/before")).await.0.status, 200);

    assert_eq!(decisions(&open.stats().await, "fail_open"), 0);
    relay.cut().await;
    for path in ["/a", "/b", "/c"] {
        assert_eq!(send(&client, open.request(path)).await.0.status, 200, "fail-open");
    }
    let stats = open.stats().await;
    assert_eq!(decisions(&stats, "fail_open"), 3);
    assert_eq!(counter(&stats, "meshtel_proxy_quota_policies"), 1.0, "the last policies stay in force");
    // `/config_dump` names them, with the collector's revision.
    let dump: serde_json::Value = serde_json::from_str(&admin_get(&open.proxy, "/config_dump").await.1).expect("config_dump JSON");
    assert_eq!(dump["quota_policies"], serde_json::json!({"revision": 1, "names": ["per-path"]}));

    let (parts, body, _) = send(&client, closed.request("/a")).await;
    assert_eq!(parts.status, 500);
    assert_eq!(&body[..], b"quota service unavailable");
    assert_eq!(closed.upstream.requests.load(Ordering::SeqCst), 1, "only the request before the cut reached the app");
    let stats = closed.stats().await;
    assert_eq!(decisions(&stats, "fail_closed"), 1);
    assert_eq!(labelled(&stats, "meshtel_proxy_quota_check_rpcs_total", "code=\"OK\""), 1.0);
    for proxy in [open, closed] {
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_check_slower_than_the_timeout_decides_by_the_failure_mode_and_records_rlse() {
    let reports = MockMixer::default();
    let collector = start_switchable_collector(reports.clone()).await;
    collector.set_policies(1, &[ONE_AN_HOUR]);
    collector.mode.store(CHECK_HANG, Ordering::SeqCst);
    let (open, closed) = start_open_and_closed(&collector.url(), |c| c.quota.prefetch = false).await;
    let client = http1_client();
    let started = Instant::now();
    assert_eq!(send(&client, open.request("/reviews/1")).await.0.status, 200);
    assert_eq!(send(&client, closed.request("/reviews/1")).await.0.status, 500);
    assert!(started.elapsed() < Duration::from_secs(1), "answered after the quota timeout (20 ms), not the collector's 5 s");
    for proxy in [&open, &closed] {
        let stats = proxy.stats().await;
        assert_eq!(labelled(&stats, "meshtel_proxy_quota_check_rpcs_total", "code=\"DEADLINE_EXCEEDED\""), 1.0);
    }
    assert_eq!(decisions(&open.stats().await, "fail_open"), 1);
    let record = eventually("the RLSE record", || reports.records.lock().iter().find(|r| r.response_flags == "RLSE").cloned()).await;
    assert_eq!(record.response_code, 500);
    for proxy in [open, closed] {
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_policy_added_at_the_engine_is_enforced_by_the_proxy_within_a_second() {
    let collector = start_quota_collector().await;
    let reviews = start_quota_proxy(&collector.url(), |_| {}).await;
    let client = http1_client();
    assert_eq!(send(&client, reviews.request("/reviews/1")).await.0.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&reviews.stats().await, "meshtel_proxy_quota_watch_connects_total") < 1.0 {
        assert!(Instant::now() < deadline, "the policy watch never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let added = Instant::now();
    collector.set_policies(1, &[ONE_AN_HOUR]);
    reviews.wait_policies(1).await;
    let took = added.elapsed();
    assert!(took < Duration::from_secs(1), "policy reached the proxy after {took:?}");
    let statuses = [
        send(&client, reviews.request("/reviews/1")).await.0.status.as_u16(),
        send(&client, reviews.request("/reviews/1")).await.0.status.as_u16(),
        send(&client, reviews.request("/reviews/1")).await.0.status.as_u16(),
    ];
    assert_eq!(statuses, [200, 200, 429]);
    reviews.stop().await;
}

/// A shadow policy never denies, and the proxy says what it would have denied:
/// `shadow_allowed` counts those requests, with prefetch (the lease holds the would-be
/// denial as it holds a real one) and without (one Check per request).
#[tokio::test]
async fn a_shadow_policy_lets_everything_through_and_counts_what_it_would_deny() {
    const SHADOW: &str = r#"{"name": "reviews-preview", "match": {"destination": {"service": "reviews"}}, "maxAmount": 3, "validDuration": "1h", "shadow": true}"#;
    for prefetch in [false, true] {
        let collector = start_quota_collector().await;
        collector.set_policies(1, &[SHADOW]);
        let reviews = start_quota_proxy(&collector.url(), |c| c.quota.prefetch = prefetch).await;
        reviews.wait_policies(1).await;
        let client = http1_client();
        let mut statuses = Vec::new();
        for _ in 0..8 {
            statuses.push(send(&client, reviews.request("/reviews/1")).await.0.status.as_u16());
        }
        assert_eq!(statuses, [200; 8], "prefetch {prefetch}");
        assert_eq!(reviews.upstream.requests.load(Ordering::SeqCst), 8);
        let stats = reviews.stats().await;
        let granted = decisions(&stats, "granted_local") + decisions(&stats, "granted_remote");
        assert_eq!(
            (granted, decisions(&stats, "shadow_allowed")),
            (3, 5),
            "prefetch {prefetch}: enforcement would grant the limit and deny the rest\n{stats}"
        );
        reviews.stop().await;
    }
}

/// `request.path` is the path with its query string (Mixer's attribute), as the
/// policy reads it: a policy keyed on it counts each URL apart; `request.url_path`
/// leaves the query out.
#[tokio::test]
async fn request_path_keys_keep_the_query_and_url_path_keys_do_not() {
    const PER_URL: &str = r#"{"name": "reviews-url", "match": {"destination": {"service": "reviews"}}, "dimensions": {"url": "request.path"}, "maxAmount": 1, "validDuration": "1h"}"#;
    const PER_PATH: &str = r#"{"name": "reviews-path", "match": {"destination": {"service": "reviews"}}, "dimensions": {"path": "request.url_path"}, "maxAmount": 2, "validDuration": "1h"}"#;
    let collector = start_quota_collector().await;
    collector.set_policies(1, &[PER_URL, PER_PATH]);
    let reviews = start_quota_proxy(&collector.url(), |c| c.quota.prefetch = false).await;
    reviews.wait_policies(2).await;
    let client = http1_client();
    let mut statuses = Vec::new();
    for path in ["/reviews/1?id=1", "/reviews/1?id=2", "/reviews/1?id=1", "/reviews/1?id=3"] {
        statuses.push(send(&client, reviews.request(path)).await.0.status.as_u16());
    }
    // id=1 and id=2 are two URLs of one path: the third call repeats a URL, the
    // fourth is a third call of the path.
    assert_eq!(statuses, [200, 200, 429, 429]);
    reviews.stop().await;
}
