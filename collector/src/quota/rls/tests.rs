//! `ShouldRateLimit` on the engine, with policies imported from envoyproxy/ratelimit
//! files (the cases of its README and of its `GetLimit`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use meshtel_model::quota::import::import_envoy_ratelimit;
use meshtel_model::quota::{QuotaPolicySpec, QuotaUsageReader};
use meshtel_model::rls::rate_limit_descriptor::Entry;
use meshtel_model::rls::rate_limit_response::{Code, DescriptorStatus};
use meshtel_model::rls::{RateLimitDescriptor, RateLimitRequest};
use serde_json::json;

use super::super::tests::spec;
use super::super::{ManualClock, QuotaConfig, QuotaEngine};

/// A whole day: windows of every unit start here.
const T0: u64 = 1_699_920_000 * 1_000_000_000;

fn engine_of(specs: Vec<QuotaPolicySpec>) -> Arc<QuotaEngine> {
    engine_on(specs, Arc::new(ManualClock::new(T0)))
}

fn engine_on(specs: Vec<QuotaPolicySpec>, clock: Arc<ManualClock>) -> Arc<QuotaEngine> {
    let engine = QuotaEngine::new(QuotaConfig::default(), clock).unwrap();
    let load = engine.set_policies(1, specs);
    assert!(load.invalid.is_empty(), "{:?}", load.invalid);
    Arc::new(engine)
}

fn imported(files: &[&str]) -> Arc<QuotaEngine> {
    engine_of(
        files
            .iter()
            .flat_map(|f| import_envoy_ratelimit(f).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
    )
}

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        limit: None,
        hits_addend: None,
    }
}

/// One descriptor's status.
fn ask(engine: &QuotaEngine, domain: &str, entries: &[(&str, &str)]) -> DescriptorStatus {
    let request = RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![descriptor(entries)],
        hits_addend: 0,
    };
    let response = engine.should_rate_limit(&request).unwrap();
    assert_eq!(response.statuses.len(), 1);
    response.statuses[0].clone()
}

/// (code, limit name, requests per unit) of a status; `None` without a limit.
fn limit_of(status: &DescriptorStatus) -> (i32, Option<(String, u32)>) {
    (
        status.code,
        status
            .current_limit
            .as_ref()
            .map(|l| (l.name.clone(), l.requests_per_unit)),
    )
}

const OK: i32 = Code::Ok as i32;
const OVER: i32 = Code::OverLimit as i32;

const GREEDY: &str = "
domain: greedy
descriptors:
  - key: a
    value: x
    descriptors:
      - key: b
        value: y
        rate_limit: {unit: minute, requests_per_unit: 100}
  - key: a
    descriptors:
      - key: b
        rate_limit: {unit: minute, requests_per_unit: 1}
";

#[test]
fn the_tree_walk_is_greedy_and_never_backtracks() {
    let engine = imported(&[GREEDY]);
    // a=x wins the first level; its only child is b=y, so b=z finds nothing there, and
    // the walk does not go back to try `a` (any value) → `b`.
    for _ in 0..3 {
        assert_eq!(
            limit_of(&ask(&engine, "greedy", &[("a", "x"), ("b", "z")])),
            (OK, None)
        );
    }
    let exact = ask(&engine, "greedy", &[("a", "x"), ("b", "y")]);
    assert_eq!(limit_of(&exact), (OK, Some((String::new(), 100))));
    assert_eq!(exact.limit_remaining, 99);
    // Another value of a takes the `a` branch: 1 per minute.
    assert_eq!(
        limit_of(&ask(&engine, "greedy", &[("a", "w"), ("b", "z")]))
            .1
            .unwrap()
            .1,
        1
    );
    assert_eq!(ask(&engine, "greedy", &[("a", "w"), ("b", "z")]).code, OVER);
}

#[test]
fn a_shorter_branch_that_wins_a_level_ends_the_walk() {
    let engine = imported(&["
domain: d
descriptors:
  - key: a
    value: x
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: a
    descriptors:
      - key: b
        rate_limit: {unit: minute, requests_per_unit: 1}
"]);
    // a=x has a limit but no children: a request with two entries gets none.
    assert_eq!(
        limit_of(&ask(&engine, "d", &[("a", "x"), ("b", "z")])),
        (OK, None)
    );
    assert_eq!(limit_of(&ask(&engine, "d", &[("a", "x")])).1.unwrap().1, 5);
    assert_eq!(
        limit_of(&ask(&engine, "d", &[("a", "q"), ("b", "z")]))
            .1
            .unwrap()
            .1,
        1
    );
    // The `a` node itself has no limit.
    assert_eq!(limit_of(&ask(&engine, "d", &[("a", "q")])), (OK, None));
}

#[test]
fn a_whitelisted_descriptor_is_not_limited_by_a_more_general_one() {
    let engine = imported(&["
domain: wl
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: remote_address
    value: 10.0.0.1
"]);
    for _ in 0..3 {
        let status = ask(&engine, "wl", &[("remote_address", "10.0.0.1")]);
        assert_eq!(limit_of(&status), (OK, None));
    }
    assert_eq!(
        ask(&engine, "wl", &[("remote_address", "1.2.3.4")]).code,
        OK
    );
    assert_eq!(
        ask(&engine, "wl", &[("remote_address", "1.2.3.4")]).code,
        OVER
    );
}

#[test]
fn share_threshold_makes_every_value_of_a_wildcard_share_one_counter() {
    let engine = imported(&["
domain: share
descriptors:
  - key: path
    value: /api/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: path
    value: /web/*
    rate_limit: {unit: minute, requests_per_unit: 2}
"]);
    let codes: Vec<i32> = ["/api/a", "/api/b", "/api/c", "/api/d"]
        .iter()
        .map(|v| ask(&engine, "share", &[("path", v)]).code)
        .collect();
    assert_eq!(codes, [OK, OK, OVER, OVER]);
    // Without it, each value has its own counter.
    let codes: Vec<i32> = ["/web/a", "/web/b", "/web/c", "/web/a", "/web/a"]
        .iter()
        .map(|v| ask(&engine, "share", &[("path", v)]).code)
        .collect();
    assert_eq!(codes, [OK, OK, OK, OK, OVER]);
    let shared = engine.usage("share.path__api__", 10).unwrap();
    let keys: Vec<&str> = shared.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["share.path__api__;path=/api/*"]);
    assert_eq!(shared.keys[0].dimensions["path"], "/api/*");
}

#[test]
fn of_two_wildcards_the_longest_prefix_wins() {
    let engine = imported(&["
domain: wco
descriptors:
  - key: p
    value: /a*
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: p
    value: /ab*
    rate_limit: {unit: minute, requests_per_unit: 100}
"]);
    assert_eq!(
        limit_of(&ask(&engine, "wco", &[("p", "/abc")]))
            .1
            .unwrap()
            .1,
        100
    );
    assert_eq!(
        limit_of(&ask(&engine, "wco", &[("p", "/axy")]))
            .1
            .unwrap()
            .1,
        1
    );
    assert_eq!(limit_of(&ask(&engine, "wco", &[("p", "/b")])), (OK, None));
}

#[test]
fn a_limit_of_zero_denies_every_request() {
    // envoyproxy/ratelimit's README example 3: block one address.
    let engine = imported(&["
domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: remote_address
    value: 50.0.0.5
    rate_limit: {unit: second, requests_per_unit: 0}
"]);
    for _ in 0..2 {
        let blocked = ask(
            &engine,
            "edge_proxy_per_ip",
            &[("remote_address", "50.0.0.5")],
        );
        assert_eq!(limit_of(&blocked), (OVER, Some((String::new(), 0))));
        assert_eq!(blocked.limit_remaining, 0);
    }
    let other = ask(
        &engine,
        "edge_proxy_per_ip",
        &[("remote_address", "50.0.0.6")],
    );
    assert_eq!((other.code, other.limit_remaining), (OK, 9));
    // A check that asks for nothing (hits_addend 0) is not over the limit.
    let mut check_only = descriptor(&[("remote_address", "50.0.0.5")]);
    check_only.hits_addend = Some(0);
    let request = RateLimitRequest {
        domain: "edge_proxy_per_ip".into(),
        descriptors: vec![check_only],
        hits_addend: 0,
    };
    let response = engine.should_rate_limit(&request).unwrap();
    assert_eq!(response.overall_code, OK);
    // Any window: 0 is reported as 0 per unit.
    let odd_window = engine_with_window("90s");
    let status = ask(&odd_window, "z", &[("k", "v")]);
    assert_eq!(limit_of(&status), (OVER, Some(("z0".into(), 0))));
}

fn engine_with_window(window: &str) -> Arc<QuotaEngine> {
    engine_of(vec![spec(json!({
        "name": "z0", "maxAmount": 0, "validDuration": window,
        "rateLimit": {"domain": "z", "descriptors": [{"key": "k"}]},
    }))])
}

#[test]
fn current_limit_names_the_configured_name_only() {
    let engine = imported(&["
domain: rep
descriptors:
  - key: key1
    rate_limit: {unit: minute, requests_per_unit: 5, name: First Limit}
  - key: key2
    rate_limit: {unit: minute, requests_per_unit: 5}
"]);
    // The name as written in the file, not the policy name made of it.
    let named = ask(&engine, "rep", &[("key1", "v")]);
    assert_eq!(limit_of(&named).1.unwrap().0, "First Limit");
    // A limit the file does not name has none (the policy's derived name is not sent).
    let derived = ask(&engine, "rep", &[("key2", "v")]);
    assert_eq!(limit_of(&derived).1.unwrap().0, "");
    // A policy written for meshtel reports its own name unless rateLimit.name says
    // otherwise.
    let by_hand = engine_of(vec![
        spec(json!({
            "name": "by-hand", "maxAmount": 3, "validDuration": "1m",
            "rateLimit": {"domain": "h", "descriptors": [{"key": "a"}]},
        })),
        spec(json!({
            "name": "renamed", "maxAmount": 3, "validDuration": "1m",
            "rateLimit": {"domain": "h", "name": "per-b", "descriptors": [{"key": "b"}]},
        })),
    ]);
    assert_eq!(
        limit_of(&ask(&by_hand, "h", &[("a", "1")])).1.unwrap().0,
        "by-hand"
    );
    assert_eq!(
        limit_of(&ask(&by_hand, "h", &[("b", "1")])).1.unwrap().0,
        "per-b"
    );
}

/// `(seconds, nanos)` of a status's `duration_until_reset`.
fn reset_of(status: &DescriptorStatus) -> (i64, i32) {
    let d = status.duration_until_reset.unwrap();
    (d.seconds, d.nanos)
}

#[test]
fn duration_until_reset_is_whole_seconds_as_envoyproxy_ratelimit_counts_them() {
    let clock = Arc::new(ManualClock::new(T0));
    let file = "
domain: edge
descriptors:
  - key: per_second
    rate_limit: {unit: second, requests_per_unit: 100}
  - key: per_minute
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: per_hour
    rate_limit: {unit: hour, requests_per_unit: 100}
";
    let engine = engine_on(import_envoy_ratelimit(file).unwrap(), clock.clone());
    // envoyproxy/ratelimit: divider - now % divider, on whole Unix seconds.
    for offset_ms in [0, 1, 400, 999, 17_000, 17_001, 59_400, 3_599_999] {
        clock.set(T0 + offset_ms * 1_000_000);
        let now_s = (T0 / 1_000_000_000 + offset_ms / 1_000) as i64;
        for (key, divider) in [("per_second", 1), ("per_minute", 60), ("per_hour", 3_600)] {
            let status = ask(&engine, "edge", &[(key, "a")]);
            assert_eq!(
                reset_of(&status),
                (divider - now_s % divider, 0),
                "{key} at +{offset_ms} ms"
            );
        }
    }
}

#[test]
fn duration_until_reset_of_rolling_windows_and_token_buckets_is_rounded_up() {
    let clock = Arc::new(ManualClock::new(T0 + 400_000_000));
    let engine = engine_on(
        vec![
            spec(json!({
                "name": "roll", "maxAmount": 3, "validDuration": "10s",
                "algorithm": "rolling-window", "bucketDuration": "1s",
                "rateLimit": {"domain": "r", "descriptors": [{"key": "roll"}]},
            })),
            spec(json!({
                "name": "tb", "maxAmount": 2, "validDuration": "1s",
                "algorithm": "token-bucket", "burst": 4,
                "rateLimit": {"domain": "r", "descriptors": [{"key": "tb"}]},
            })),
        ],
        clock,
    );
    // The oldest bucket (the one at +0.4 s) leaves the window at +10 s: 9.6 s, said 10.
    assert_eq!(reset_of(&ask(&engine, "r", &[("roll", "x")])), (10, 0));
    // One token of 4 taken, refilled at 2/s: full again in 0.5 s, said 1.
    assert_eq!(reset_of(&ask(&engine, "r", &[("tb", "x")])), (1, 0));
    // Nothing counted (a check that asks for no hit): still at least 1 s.
    let mut check_only = descriptor(&[("roll", "y")]);
    check_only.hits_addend = Some(0);
    let request = RateLimitRequest {
        domain: "r".into(),
        descriptors: vec![check_only],
        hits_addend: 0,
    };
    let status = &engine.should_rate_limit(&request).unwrap().statuses[0];
    assert_eq!(reset_of(status), (1, 0));
}

#[test]
fn limit_remaining_never_exceeds_the_reported_requests_per_unit() {
    let engine = engine_of(vec![
        spec(json!({
            "name": "rl-rolling", "maxAmount": 3, "validDuration": "10s",
            "algorithm": "rolling-window", "bucketDuration": "1s",
            "rateLimit": {"domain": "d3", "descriptors": [{"key": "roll"}]},
        })),
        spec(json!({
            "name": "rl-90s", "maxAmount": 3, "validDuration": "90s",
            "rateLimit": {"domain": "d3", "descriptors": [{"key": "odd"}]},
        })),
        spec(json!({
            "name": "rl-bucket", "maxAmount": 2, "validDuration": "1s",
            "algorithm": "token-bucket", "burst": 4,
            "rateLimit": {"domain": "d3", "descriptors": [{"key": "tb"}]},
        })),
        spec(json!({
            "name": "rl-5s", "maxAmount": 10, "validDuration": "5s",
            "rateLimit": {"domain": "d3", "descriptors": [{"key": "five"}]},
        })),
    ]);
    // (key, reported requests per unit, limit_remaining of the first hits): cut to the
    // limit while the counter has more left, then the counter's own figure.
    for (key, rpu, remaining) in [
        ("roll", 1, [1, 1, 0, 0]),
        ("odd", 2, [2, 1, 0, 0]),
        ("tb", 2, [2, 2, 1, 0]),
        ("five", 2, [2, 2, 2, 2]),
    ] {
        let seen: Vec<u32> = (0..4)
            .map(|_| {
                let status = ask(&engine, "d3", &[(key, "x")]);
                assert_eq!(
                    status.current_limit.unwrap().requests_per_unit,
                    rpu,
                    "{key}"
                );
                status.limit_remaining
            })
            .collect();
        assert_eq!(seen, remaining, "{key}");
    }
    // A window of one unit reports the counter as it is.
    let engine = imported(&["
domain: u
descriptors:
  - key: k
    rate_limit: {unit: minute, requests_per_unit: 3}
"]);
    let seen: Vec<u32> = (0..4)
        .map(|_| ask(&engine, "u", &[("k", "x")]).limit_remaining)
        .collect();
    assert_eq!(seen, [2, 1, 0, 0]);
}

/// `replaces` names a limit as envoyproxy/ratelimit does, by its `rateLimit.name` (what
/// `current_limit.name` reports, which may hold spaces), or by its policy's name.
#[test]
fn replaces_names_the_limit_by_its_rate_limit_name() {
    let limit = |name: &str, value: &str, limit_name: &str, replaces: &[&str], max: u64| {
        spec(json!({
            "name": name,
            "maxAmount": max,
            "validDuration": "1m",
            "rateLimit": {
                "domain": "d4",
                "descriptors": [{"key": "r", "value": value}],
                "name": limit_name,
                "replaces": replaces,
            },
        }))
    };
    let engine = engine_of(vec![
        limit("rp-a", "a", "lim a", &["Global Limit"], 10),
        limit("rp-b", "b", "Global Limit", &[], 1),
    ]);
    let both = || RateLimitRequest {
        domain: "d4".into(),
        descriptors: vec![descriptor(&[("r", "a")]), descriptor(&[("r", "b")])],
        hits_addend: 0,
    };
    for _ in 0..3 {
        let response = engine.should_rate_limit(&both()).unwrap();
        assert_eq!(response.overall_code, OK, "{response:?}");
        assert_eq!(
            limit_of(&response.statuses[1]),
            (OK, None),
            "replaced: no limit"
        );
    }
    // Named by its policy's name, too.
    let engine = engine_of(vec![
        limit("rp-a", "a", "lim a", &["rp-b"], 10),
        limit("rp-b", "b", "Global Limit", &[], 1),
    ]);
    let response = engine.should_rate_limit(&both()).unwrap();
    assert_eq!(limit_of(&response.statuses[1]), (OK, None));
}

/// As envoyproxy/ratelimit with `STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT`: when one
/// descriptor of a request would go over its limit, the others are not charged.
#[test]
fn a_request_over_one_limit_charges_its_other_descriptors_nothing() {
    let limit = |name: &str, value: &str, max: u64| {
        spec(json!({
            "name": name,
            "maxAmount": max,
            "validDuration": "1h",
            "rateLimit": {"domain": "d6", "descriptors": [{"key": "m", "value": value}]},
        }))
    };
    let engine = engine_of(vec![limit("m1", "one", 2), limit("m2", "two", 5)]);
    let both = RateLimitRequest {
        domain: "d6".into(),
        descriptors: vec![descriptor(&[("m", "one")]), descriptor(&[("m", "two")])],
        hits_addend: 0,
    };
    let remaining = |r: &meshtel_model::rls::RateLimitResponse| {
        (
            r.overall_code,
            r.statuses[0].limit_remaining,
            r.statuses[1].limit_remaining,
        )
    };
    let first = engine.should_rate_limit(&both).unwrap();
    assert_eq!(remaining(&first), (OK, 1, 4));
    let second = engine.should_rate_limit(&both).unwrap();
    assert_eq!(remaining(&second), (OK, 0, 3));
    // m1 would go over: refused, and m2 keeps its 3.
    let third = engine.should_rate_limit(&both).unwrap();
    assert_eq!(remaining(&third), (OVER, 0, 3));
    assert_eq!(third.statuses[0].code, OVER);
    assert_eq!(third.statuses[1].code, OK);
    // m2 alone is charged as before.
    let alone = ask(&engine, "d6", &[("m", "two")]);
    assert_eq!((alone.code, alone.limit_remaining), (OK, 2));

    // One counter named twice: its hits add up, and over its limit together they
    // charge it nothing (m2 has 2 left; 2 + 1 fit, 2 + 2 do not).
    let twice = |first: u64, second: u64| RateLimitRequest {
        domain: "d6".into(),
        descriptors: [first, second]
            .into_iter()
            .map(|hits| RateLimitDescriptor {
                hits_addend: Some(hits),
                ..descriptor(&[("m", "two")])
            })
            .collect(),
        hits_addend: 0,
    };
    let over = engine.should_rate_limit(&twice(2, 2)).unwrap();
    assert_eq!(over.overall_code, OVER);
    assert_eq!(over.statuses[1].code, OVER);
    let left = ask(&engine, "d6", &[("m", "two")]);
    assert_eq!(
        (left.code, left.limit_remaining),
        (OK, 1),
        "charged nothing, then 1"
    );
    let fits = engine.should_rate_limit(&twice(0, 1)).unwrap();
    assert_eq!(
        (fits.overall_code, fits.statuses[1].limit_remaining),
        (OK, 0)
    );
}

/// An RLS policy's entries without a value are its dimensions, which its overrides
/// match: a gold tier gets more than the policy's own limit.
#[test]
fn overrides_of_an_rls_policy_match_its_descriptor_values() {
    let engine = engine_of(vec![spec(json!({
        "name": "tier-1",
        "maxAmount": 1,
        "validDuration": "1h",
        "overrides": [{"dimensions": {"tier": "gold"}, "maxAmount": 3}],
        "rateLimit": {"domain": "d5", "descriptors": [{"key": "tier"}]},
    }))]);
    let codes = |tier: &str| -> Vec<i32> {
        (0..4)
            .map(|_| ask(&engine, "d5", &[("tier", tier)]).code)
            .collect()
    };
    assert_eq!(codes("gold"), [OK, OK, OK, OVER]);
    assert_eq!(codes("silver"), [OK, OVER, OVER, OVER]);
}

/// Counters a client names with its own limits (Envoy's `limit` in a descriptor) take
/// half the table at most: once they have it, new ones are granted uncounted, and the
/// policies' counters still find room.
#[test]
fn limit_overrides_cannot_take_the_table_from_the_policies() {
    let (engine, _) = small_edge_engine("edge-limit");
    let yearly = |value: &str| override_of(value, 6);
    let counted = (0..8)
        .filter(|i| {
            let value = format!("10.0.0.{i}");
            edge_code(&engine, yearly(&value));
            edge_code(&engine, yearly(&value)) == OVER
        })
        .count();
    assert_eq!(counted, 5, "half of max_keys");
    assert_eq!(engine.key_count(), 5);
    // The policy's own counter is kept and enforced.
    let policy = || descriptor(&[("remote_address", "192.0.2.1")]);
    assert_eq!(edge_code(&engine, policy()), OK);
    assert_eq!(edge_code(&engine, policy()), OVER);

    // The other way round: policies holding more than half leave overrides the rest.
    let (engine, _) = small_edge_engine("edge-limit");
    for i in 0..7 {
        edge_code(
            &engine,
            descriptor(&[("remote_address", &format!("192.0.2.{i}"))]),
        );
    }
    assert_eq!(engine.key_count(), 7);
    assert_eq!(edge_code(&engine, yearly("10.0.0.1")), OK);
    assert_eq!(
        edge_code(&engine, yearly("10.0.0.1")),
        OVER,
        "an override still counted"
    );
    assert_eq!(engine.key_count(), 8);
}

#[test]
fn long_descriptor_values_are_cut_and_still_limited_and_long_keys_refused() {
    // A value past the bound is cut to it, not refused: a refused call lets the
    // request through Envoy, so lengthening a header would escape the limit.
    let engine = imported(&[GREEDY]);
    let long = |tail: &str| format!("{}{tail}", "v".repeat(super::MAX_ENTRY_VALUE_BYTES));
    assert_eq!(
        ask(&engine, "greedy", &[("a", &long("1")), ("b", "y")]).code,
        OK
    );
    // Another value with the same first 4 KiB shares its counter (1 a minute).
    assert_eq!(
        ask(&engine, "greedy", &[("a", &long("2")), ("b", "y")]).code,
        OVER
    );
    let request = RateLimitRequest {
        domain: "greedy".into(),
        descriptors: vec![descriptor(&[(&"k".repeat(257), "x")])],
        hits_addend: 0,
    };
    let message = engine.should_rate_limit(&request).unwrap_err().to_string();
    assert!(
        message.contains("descriptors[0].entries[0].key: 257 bytes"),
        "{message}"
    );
}

/// An engine with `max_keys` 10 and one policy, `remote_address` on domain `edge` at
/// 1 a minute, named `name`; its clock; and a one-descriptor ask.
fn small_edge_engine(name: &str) -> (Arc<QuotaEngine>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let config = QuotaConfig {
        max_keys: 10,
        ..QuotaConfig::default()
    };
    let engine = Arc::new(QuotaEngine::new(config, clock.clone()).unwrap());
    let mut specs = import_envoy_ratelimit(
        "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: minute, requests_per_unit: 1}\n",
    )
    .unwrap();
    specs[0].name = name.into();
    assert!(engine.set_policies(1, specs).invalid.is_empty());
    (engine, clock)
}

fn edge_code(engine: &QuotaEngine, d: RateLimitDescriptor) -> i32 {
    let request = RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![d],
        hits_addend: 0,
    };
    engine.should_rate_limit(&request).unwrap().statuses[0].code
}

fn override_of(value: &str, unit: i32) -> RateLimitDescriptor {
    let mut d = descriptor(&[("remote_address", value)]);
    d.limit = Some(
        meshtel_model::rls::rate_limit_descriptor::RateLimitOverride {
            requests_per_unit: 1,
            unit,
        },
    );
    d
}

/// No policy may be named like the overrides' metric label: its series would merge
/// with theirs, and deleting it would take theirs away.
#[test]
fn a_policy_named_limit_override_is_refused_and_overrides_still_count() {
    let engine = QuotaEngine::new(QuotaConfig::default(), Arc::new(ManualClock::new(T0))).unwrap();
    let mut specs = import_envoy_ratelimit(
        "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: minute, requests_per_unit: 1}\n",
    )
    .unwrap();
    specs[0].name = "limit_override".into();
    let load = engine.set_policies(1, specs);
    assert_eq!(load.invalid.len(), 1);
    assert!(
        load.invalid[0].errors[0].message.contains("is reserved"),
        "{:?}",
        load.invalid[0].errors
    );
}

/// Override counters whose windows ended are evicted when the share is full, as
/// counters are when the table is, not only at the next sweep.
#[test]
fn idle_overrides_give_their_share_back_on_demand() {
    let (engine, clock) = small_edge_engine("edge-limit");
    for i in 0..5 {
        edge_code(&engine, override_of(&format!("10.0.0.{i}"), 1)); // SECOND
    }
    assert_eq!(engine.key_count(), 5);
    clock.advance(std::time::Duration::from_millis(1_500));
    let yearly = override_of("10.0.1.1", 6);
    assert_eq!(edge_code(&engine, yearly.clone()), OK);
    assert_eq!(
        edge_code(&engine, yearly),
        OVER,
        "counted without waiting for a sweep"
    );
}

/// The `meshtel_quota_rls_requests_total` series: `domain="..."` values only.
fn rls_series(engine: &QuotaEngine) -> Vec<(String, String, u64)> {
    let mut series = Vec::new();
    for family in engine.registry().gather() {
        if family.name() != "meshtel_quota_rls_requests_total" {
            continue;
        }
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            let value = metric.get_counter().get_value() as u64;
            series.push((label("domain"), label("code"), value));
        }
    }
    series.sort();
    series
}

#[test]
fn rls_series_of_each_limited_domain_start_at_zero_and_go_with_it() {
    let engine = imported(&["
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1}
"]);
    let zero = |domain: &str, code: &str| (domain.to_owned(), code.to_owned(), 0);
    assert_eq!(
        rls_series(&engine),
        vec![
            zero("edge", "invalid_argument"),
            zero("edge", "ok"),
            zero("edge", "over_limit"),
            zero("unknown", "invalid_argument"),
            zero("unknown", "ok"),
        ]
    );
    ask(&engine, "edge", &[("remote_address", "10.0.0.1")]);
    ask(&engine, "nobody", &[("remote_address", "10.0.0.1")]);
    let counted = rls_series(&engine);
    assert!(
        counted.contains(&("edge".into(), "ok".into(), 1)),
        "{counted:?}"
    );
    assert!(
        counted.contains(&("unknown".into(), "ok".into(), 1)),
        "{counted:?}"
    );
    // Its policy gone, the domain's series go too.
    engine.set_policies(2, Vec::new());
    assert!(
        rls_series(&engine)
            .iter()
            .all(|(domain, _, _)| domain == "unknown"),
        "{:?}",
        rls_series(&engine)
    );
}
