use std::time::{Duration, Instant};

use http::HeaderMap;
use meshtel_model::quota::QuotaAttributes;

use super::*;
use crate::mesh::WorkloadIdentity;

mod edits;

const SIZING: LeaseSizing = LeaseSizing { min_prefetch: 10, predict_window: Duration::from_secs(1) };

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn grant(granted: u64, valid: Duration) -> Grant {
    Grant { granted, valid_duration: valid, retry_after: Duration::ZERO }
}

/// A lease of `limit` whose first request started an ask (sent at the returned time).
fn asking(limit: u64) -> (Instant, Lease) {
    let t0 = Instant::now();
    let mut lease = Lease::new(limit, SIZING, t0);
    assert!(matches!(lease.take(t0), Take::Wait { fetch: Some(_) }));
    (t0, lease)
}

/// Takes until the lease wants a fetch or denies; returns how many were granted.
fn drain(lease: &mut Lease, now: Instant) -> u64 {
    let mut granted = 0;
    while let Take::Granted { .. } = lease.take(now) {
        granted += 1;
    }
    granted
}

#[test]
fn lease_sizes_follow_demand_within_the_limit() {
    assert_eq!(lease_size(1000, 10, 0), 10);
    assert_eq!(lease_size(1000, 10, 250), 250);
    assert_eq!(lease_size(100, 10, 5000), 100, "never more than the limit");
    assert_eq!(lease_size(20, 10, 0), 2, "min prefetch capped at a tenth of the limit");
    assert_eq!(lease_size(1, 10, 0), 1);
    assert_eq!(lease_size(1, 10, 20), 1);
    assert_eq!(lease_size(0, 10, 3), 1, "an empty limit still asks once (and is denied)");
}

#[test]
fn an_empty_lease_fetches_once_and_later_requests_join_the_ask() {
    let t0 = Instant::now();
    let mut lease = Lease::new(1000, SIZING, t0);
    lease.record_demand(t0);
    assert_eq!(lease.take(t0), Take::Wait { fetch: Some(10) });
    assert_eq!(lease.take(t0), Take::Wait { fetch: None }, "one ask in flight per key");
    lease.granted(t0, grant(10, Duration::from_secs(1)));
    assert!(matches!(lease.take(t0 + ms(1)), Take::Granted { refill: None }));
    assert_eq!(lease.available(t0 + ms(1)), 9);
}

#[test]
fn a_refill_starts_below_half_the_last_lease() {
    let (t0, mut lease) = asking(1000);
    lease.granted(t0, grant(10, Duration::from_secs(1)));
    let refills: Vec<Option<u64>> = (0..6)
        .map(|_| match lease.take(t0) {
            Take::Granted { refill } => refill,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // 10 → 9, 8, 7, 6, 5 (no refill), 4 < 5: refill, then no second one while in flight.
    assert_eq!(refills, [None, None, None, None, None, Some(10)]);
    assert!(lease.in_flight());
    assert!(matches!(lease.take(t0), Take::Granted { refill: None }));
}

#[test]
fn tokens_expire_at_send_time_plus_validity() {
    let (t0, mut lease) = asking(1000);
    // Sent at t0, answered 5 ms later: valid 100 ms from the *send* time.
    lease.granted(t0, grant(10, ms(100)));
    assert_eq!(lease.available(t0 + ms(99)), 10);
    assert_eq!(lease.available(t0 + ms(100)), 0);
    assert!(matches!(lease.take(t0 + ms(100)), Take::Wait { fetch: Some(_) }));
}

#[test]
fn a_denial_holds_until_retry_after_without_asking_again() {
    let t0 = Instant::now();
    let mut lease = Lease::new(1, SIZING, t0);
    assert_eq!(lease.take(t0), Take::Wait { fetch: Some(1) });
    lease.granted(t0, Grant { granted: 0, valid_duration: ms(700), retry_after: ms(700) });
    for step in 0..100 {
        assert_eq!(lease.take(t0 + ms(step * 6)), Take::Denied { until: t0 + ms(700) });
    }
    assert_eq!(lease.take(t0 + ms(700)), Take::Wait { fetch: Some(1) }, "asks again once the window ended");
}

#[test]
fn one_per_second_at_twenty_per_second_grants_one_per_window() {
    // Simulates the collector: fixed 1 s windows, limit 1, best effort.
    let t0 = Instant::now();
    let mut lease = Lease::new(1, SIZING, t0);
    let (mut used_in_window, mut granted) = (0u64, 0u64);
    let mut window = 0;
    for i in 0..100u64 {
        let now = t0 + ms(i * 50);
        let this_window = i * 50 / 1000;
        if this_window != window {
            window = this_window;
            used_in_window = 0;
        }
        lease.record_demand(now);
        let mut take = lease.take(now);
        loop {
            match take {
                Take::Granted { refill } => {
                    granted += 1;
                    if let Some(amount) = refill {
                        let give = amount.min(1 - used_in_window);
                        used_in_window += give;
                        let window_end = t0 + Duration::from_secs(this_window + 1);
                        let left = window_end - now;
                        lease.granted(now, Grant { granted: give, valid_duration: left, retry_after: left });
                    }
                    break;
                }
                Take::Wait { fetch: Some(amount) } => {
                    let give = amount.min(1 - used_in_window);
                    used_in_window += give;
                    let left = t0 + Duration::from_secs(this_window + 1) - now;
                    lease.granted(now, Grant { granted: give, valid_duration: left, retry_after: left });
                    take = lease.take(now);
                }
                Take::Denied { .. } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(granted, 5, "one per 1 s window over 5 s");
}

#[test]
fn leftovers_of_an_older_window_are_used_first_and_expire_with_it() {
    let (t0, mut lease) = asking(1000);
    lease.granted(t0, grant(3, ms(100)));
    lease.granted(t0 + ms(90), grant(10, ms(1010)));
    assert_eq!(lease.available(t0 + ms(95)), 13);
    assert!(matches!(lease.take(t0 + ms(95)), Take::Granted { .. }));
    assert_eq!(lease.available(t0 + ms(100)), 10, "the older batch's 2 left expired");
    // A same-window grant expiring earlier merges and keeps the earlier expiry.
    lease.granted(t0 + ms(95), grant(5, ms(1000)));
    assert_eq!(lease.available(t0 + ms(1094)), 15);
    assert_eq!(lease.available(t0 + ms(1095)), 0);
}

#[test]
fn a_failed_ask_holds_the_failure_mode_briefly() {
    let (t0, mut lease) = asking(100);
    lease.failed(t0);
    assert_eq!(lease.take(t0 + ms(10)), Take::Unavailable);
    assert!(matches!(lease.take(t0 + lease::FAILURE_HOLD), Take::Wait { fetch: Some(_) }));
}

#[test]
fn demand_over_the_predict_window_sizes_the_next_lease() {
    let t0 = Instant::now();
    let mut lease = Lease::new(10_000, SIZING, t0);
    for i in 0..500 {
        lease.record_demand(t0 + ms(i * 2));
    }
    assert_eq!(lease.ask_size(t0 + ms(1000)), 500);
    assert_eq!(lease.ask_size(t0 + ms(5000)), 10, "idle for two windows: back to the minimum");
}

#[test]
fn refunds_go_back_to_the_lease() {
    let (t0, mut lease) = asking(100);
    lease.granted(t0, grant(2, Duration::from_secs(1)));
    assert_eq!(drain(&mut lease, t0), 2);
    lease.granted(t0, grant(2, Duration::from_secs(1)));
    let _ = lease.take(t0);
    lease.refund(t0);
    assert_eq!(lease.available(t0), 2);
}

#[test]
fn rate_limit_headers_follow_envoy() {
    let status = |name: &str, limit, window, remaining, reset| LimitStatus {
        name: name.to_owned(),
        limit,
        window: Duration::from_millis(window),
        remaining,
        reset: Duration::from_millis(reset),
        retry: Duration::from_millis(reset),
        denied: remaining == 0,
    };
    let one = rate_limit_headers(&[status("per-ip", 10, 1000, 0, 400)]).expect("headers");
    assert_eq!(one.limit, r#"10, 10;w=1;name="per-ip""#);
    // Seconds until reset, rounded up: 400 ms is 1, never 0 while the window runs.
    assert_eq!((one.remaining.as_str(), one.reset.as_str()), ("0", "1"));
    let two = rate_limit_headers(&[status("a", 1000, 3_600_000, 7, 65_500), status("b", 10, 1500, 0, 1200)]).expect("headers");
    assert_eq!(two.limit, r#"10, 1000;w=3600;name="a", 10;w=2;name="b""#, "the least remaining leads");
    assert_eq!((two.remaining.as_str(), two.reset.as_str()), ("0", "2"));
    assert_eq!(rate_limit_headers(&[]), None);
    // Of two at 0 left, the one that denied leads (the other granted its last token).
    let granted_last = LimitStatus { denied: false, ..status("last", 5, 60_000, 0, 0) };
    let tie = rate_limit_headers(&[granted_last, status("full", 1, 1000, 0, 700)]).expect("headers");
    assert_eq!(tie.limit, r#"1, 5;w=60;name="last", 1;w=1;name="full""#);
    assert_eq!(tie.reset, "1");
    assert_eq!(whole_seconds_up(ms(1)), 1);
    assert_eq!(whole_seconds_up(Duration::from_secs(2)), 2);
}

fn reviews() -> (WorkloadIdentity, (String, String, String)) {
    let identity = WorkloadIdentity { name: "reviews-v2".into(), namespace: "default".into(), app: "reviews".into(), version: "v2".into() };
    (identity, crate::forward::service_names("reviews", "default"))
}

#[test]
fn only_policies_that_can_match_here_are_kept() {
    let (identity, service) = reviews();
    let destination = destination_attributes(&identity, &service);
    let json = r#"[
        {"name": "to-reviews", "match": {"destination": {"service": "reviews"}}, "maxAmount": 5, "validDuration": "1s"},
        {"name": "to-ratings", "match": {"destination": {"service": "ratings"}}, "maxAmount": 5, "validDuration": "1s"},
        {"name": "v1-only", "match": {"destination": {"version": "v1"}}, "maxAmount": 5, "validDuration": "1s"},
        {"name": "everything", "dimensions": {"user": "request.headers[\"x-user\"]"}, "maxAmount": 5, "validDuration": "1s"},
        {"name": "free", "unlimited": true},
        {"name": "BAD NAME", "maxAmount": 5, "validDuration": "1s"},
        {"name": "typo", "maxAmont": 5}
    ]"#;
    let (set, skipped) = PolicySet::from_json(7, json, &[], &destination);
    let names: Vec<&str> = set.policies.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["to-reviews", "everything"]);
    assert_eq!(set.header_names, ["x-user"]);
    assert_eq!(set.revision, 7);
    let skipped: Vec<&str> = skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["BAD NAME", "typo"]);
    assert_eq!(PolicySet::from_json(8, "{", &[], &destination).1.len(), 1);
}

#[test]
fn attributes_carry_the_caller_this_service_and_the_read_headers() {
    let (identity, service) = reviews();
    let destination = destination_attributes(&identity, &service);
    let caller = WorkloadIdentity { name: "productpage-v1".into(), namespace: "default".into(), app: "productpage".into(), version: "v1".into() };
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "alice".parse().expect("value"));
    headers.insert("x-other", "ignored".parse().expect("value"));
    let view = RequestView { source: &caller, method: "GET", path: "/reviews/1", headers: &headers };
    let attrs: QuotaAttributes = policies::with_attributes(&destination, view, &["x-user".to_owned()], Clone::clone);
    let source = attrs.source.as_ref().expect("source");
    assert_eq!((source.name.as_str(), source.app.as_str(), source.version.as_str()), ("productpage-v1", "productpage", "v1"));
    assert_eq!(attrs.destination_service_name, "reviews");
    assert_eq!(attrs.destination_service_host, "reviews.default.svc.cluster.local");
    assert_eq!(attrs.destination.as_ref().map(|d| d.name.as_str()), Some("reviews-v2"));
    assert_eq!((attrs.request_method.as_str(), attrs.request_path.as_str()), ("GET", "/reviews/1"));
    assert_eq!(attrs.request_headers.len(), 1);
    assert_eq!(attrs.request_headers.get("x-user").map(String::as_str), Some("alice"));
    // A repeated header reads as its first value (Envoy's rate limit actions): a junk
    // second value makes no new counter key.
    headers.append("x-user", "junk".parse().expect("value"));
    let view = RequestView { source: &caller, method: "GET", path: "/reviews/1?id=3", headers: &headers };
    let attrs: QuotaAttributes = policies::with_attributes(&destination, view, &["x-user".to_owned()], Clone::clone);
    assert_eq!(attrs.request_headers.get("x-user").map(String::as_str), Some("alice"));
    assert_eq!(attrs.request_path, "/reviews/1?id=3", "request.path keeps the query");
}

#[test]
fn default_settings_are_valid_and_zero_values_are_not() {
    assert!(QuotaSettings::default().validate().is_ok());
    assert!(QuotaSettings { timeout: Duration::ZERO, ..QuotaSettings::default() }.validate().is_err());
    assert!(QuotaSettings { min_prefetch: 0, ..QuotaSettings::default() }.validate().is_err());
    assert!(QuotaSettings { predict_window: Duration::ZERO, ..QuotaSettings::default() }.validate().is_err());
}

#[test]
fn a_newer_policy_generation_resets_the_lease_and_an_older_or_equal_one_does_not() {
    let t0 = Instant::now();
    let mut lease = Lease::new(1000, SIZING, t0);
    lease.follow_policy(1, 1000);
    assert_eq!(lease.take(t0), Take::Wait { fetch: Some(10) });
    lease.granted(t0, grant(10, Duration::from_secs(1)));
    lease.follow_policy(1, 1000);
    assert_eq!(lease.available(t0), 10, "the same generation leaves the lease alone");
    lease.follow_policy(2, 5);
    assert_eq!((lease.generation(), lease.available(t0)), (2, 0), "an edit drops the leased tokens");
    assert_eq!(lease.take(t0), Take::Wait { fetch: Some(1) }, "asks again, sized by the new limit");
    lease.granted(t0, Grant { granted: 0, valid_duration: ms(700), retry_after: Duration::from_secs(3600) });
    assert!(matches!(lease.take(t0), Take::Denied { .. }));
    lease.follow_policy(1, 1000);
    assert!(matches!(lease.take(t0), Take::Denied { .. }), "an older generation (a request that read the set before the push) changes nothing");
    lease.follow_policy(3, 1000);
    assert_eq!(lease.take(t0), Take::Wait { fetch: Some(10) }, "the denial is forgotten");
    lease.follow_policy(4, 1000);
    assert_eq!(lease.take(t0), Take::Wait { fetch: Some(10) }, "the ask in flight is disowned: a new one starts");
    lease.failed(t0);
    lease.follow_policy(5, 1000);
    assert!(matches!(lease.take(t0), Take::Wait { fetch: Some(_) }), "a failure held is forgotten");
}

#[test]
fn a_policy_keeps_its_generation_until_its_spec_changes() {
    let (identity, service) = reviews();
    let destination = destination_attributes(&identity, &service);
    let set = |revision: i64, specs: &[&str]| PolicySet::from_json(revision, &format!("[{}]", specs.join(",")), &[], &destination).0;
    let a = r#"{"name": "a", "maxAmount": 5, "validDuration": "1s"}"#;
    let b = r#"{"name": "b", "maxAmount": 5, "validDuration": "1s"}"#;
    let b_edited = r#"{"name": "b", "maxAmount": 5, "validDuration": "1m"}"#;
    let cell = PolicyCell::default();
    let first = cell.store(set(1, &[a, b]));
    assert!(first.generations.iter().all(|g| *g > 0) && first.generations[0] != first.generations[1]);
    let second = cell.store(set(2, &[a, b_edited]));
    assert_eq!(second.generations[0], first.generations[0], "unchanged");
    assert!(second.generations[1] > first.generations[1], "edited");
    let third = cell.store(set(3, &[b_edited]));
    assert_eq!(third.generations, [second.generations[1]]);
    let fourth = cell.store(set(4, &[a, b_edited]));
    assert!(fourth.generations[0] > second.generations[1], "removed then added again: a new generation");
    assert_eq!(cell.load().generations, fourth.generations);
    // Deleted and created again between two sets, the same spec: another incarnation,
    // a new generation (its leases and held denials forgotten); the other policy keeps
    // its own.
    let recreated = |revision: i64, incarnations: &[u64]| {
        PolicySet::from_json(revision, &format!("[{a},{b_edited}]"), incarnations, &destination).0
    };
    let fifth = cell.store(recreated(5, &[0, 0]));
    assert_eq!(fifth.generations, fourth.generations, "no incarnations given: as before");
    let sixth = cell.store(recreated(6, &[0, 7]));
    assert_eq!(sixth.generations[0], fifth.generations[0]);
    assert!(sixth.generations[1] > fifth.generations[0].max(fifth.generations[1]), "re-created");
    assert_eq!(cell.store(recreated(7, &[0, 7])).generations, sixth.generations, "the same creation");
}

/// A fail-closed proxy that never received its policies (its collector unreachable
/// since it started) refuses every request; a fail-open one lets them through; both
/// decide by the policies once a set arrives.
#[tokio::test]
async fn fail_closed_refuses_until_the_first_policy_set() {
    let (identity, service) = reviews();
    // Nothing listens there: a port bound and let go.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{dead}")).expect("endpoint");
    let caller = WorkloadIdentity { name: "productpage-v1".into(), namespace: "default".into(), app: "productpage".into(), version: "v1".into() };
    let headers = HeaderMap::new();
    let view = || RequestView { source: &caller, method: "GET", path: "/", headers: &headers };
    for fail_closed in [true, false] {
        let settings = QuotaSettings { fail_closed, ..QuotaSettings::default() };
        let registry = prometheus::Registry::new();
        let stats = QuotaStats::register(&registry).expect("stats");
        let enforcer = QuotaEnforcer::new(settings, &identity, &service, &endpoint, "reviews-test", stats);
        assert!(!enforcer.is_idle(), "no policies known yet: each request is decided");
        let denial = enforcer.check_inbound(view()).await;
        assert_eq!(matches!(denial, Some(Denial::CheckFailed)), fail_closed, "fail_closed={fail_closed}");
        // Counted either way: an alert on fail_open sees quotas off at a proxy that
        // never reached its collector.
        let result = if fail_closed { DecisionResult::FailClosed } else { DecisionResult::FailOpen };
        assert_eq!(enforcer.stats().decisions(result), 1, "fail_closed={fail_closed}");
        // An empty set says no policy applies here: nothing is refused any more.
        enforcer.publish_json(1, "[]", &[]);
        assert!(enforcer.is_idle());
        assert!(enforcer.check_inbound(view()).await.is_none());
        let decided = enforcer.stats().decisions(DecisionResult::FailClosed);
        assert_eq!(decided, u64::from(fail_closed));
    }
}
