#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use meshtel_model::mixer::check_request::QuotaParams;
use meshtel_model::mixer::{CheckRequest, QuotaAttributes, Workload};
use meshtel_model::quota::{QuotaPolicySpec, QuotaUsageReader};
use serde_json::json;

use super::*;

const S: u64 = 1_000_000_000;
/// A whole minute.
const T0: u64 = 1_700_000_040 * S;

pub(crate) fn spec(value: serde_json::Value) -> QuotaPolicySpec {
    serde_json::from_value(value).unwrap()
}

fn engine_with(
    config: QuotaConfig,
    specs: Vec<QuotaPolicySpec>,
) -> (Arc<QuotaEngine>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Arc::new(QuotaEngine::new(config, clock.clone()).unwrap());
    let load = engine.set_policies(1, specs);
    assert!(load.invalid.is_empty(), "{:?}", load.invalid);
    (engine, clock)
}

fn engine(specs: Vec<QuotaPolicySpec>) -> (Arc<QuotaEngine>, Arc<ManualClock>) {
    engine_with(QuotaConfig::default(), specs)
}

fn workload(app: &str, version: &str) -> Option<Workload> {
    Some(Workload {
        app: app.into(),
        version: version.into(),
        ..Workload::default()
    })
}

fn call(source: &str, source_version: &str, destination: &str) -> QuotaAttributes {
    QuotaAttributes {
        source: workload(source, source_version),
        destination: workload(destination, "v1"),
        destination_service_name: destination.into(),
        request_method: "GET".into(),
        request_path: "/ratings/0".into(),
        ..QuotaAttributes::default()
    }
}

/// Istio's Bookinfo rate limit (mixer-rule-ratings-ratelimit.yaml) as a policy.
fn bookinfo() -> QuotaPolicySpec {
    spec(json!({
        "name": "requestcountquota",
        "dimensions": {
            "source": "source.labels[\"app\"] | \"unknown\"",
            "sourceVersion": "source.labels[\"version\"] | \"unknown\"",
            "destination": "destination.labels[\"app\"] | destination.service.name | \"unknown\"",
            "destinationVersion": "destination.labels[\"version\"] | \"unknown\"",
        },
        "maxAmount": 5000,
        "validDuration": "1s",
        "overrides": [
            {"dimensions": {"destination": "ratings", "source": "reviews"}, "maxAmount": 1},
            {"dimensions": {"destination": "ratings"}, "maxAmount": 100},
        ],
    }))
}

fn per_second(name: &str, max: u64) -> QuotaPolicySpec {
    spec(json!({"name": name, "maxAmount": max, "validDuration": "1s"}))
}

#[test]
fn fixed_window_spec_example_grants_exactly_one_per_second() {
    let (engine, clock) = engine(vec![per_second("one-per-second", 1)]);
    let attrs = QuotaAttributes::default();
    let mut granted = 0;
    // 20 requests per second for 60 s.
    for _ in 0..1200 {
        granted += engine
            .check(&attrs, "one-per-second", 1, false)
            .decision
            .granted;
        clock.advance(Duration::from_millis(50));
    }
    assert_eq!(granted, 60);
}

#[test]
fn overrides_first_match_wins_and_every_dimension_keys() {
    let (engine, _) = engine(vec![bookinfo()]);
    let q = "requestcountquota";
    let from_reviews_v2 = engine.check(&call("reviews", "v2", "ratings"), q, 1, false);
    assert_eq!(from_reviews_v2.decision.limit, 1);
    assert_eq!(
        from_reviews_v2.key,
        "requestcountquota;destination=ratings;destinationVersion=v1;source=reviews;sourceVersion=v2"
    );
    assert!(
        engine
            .check(&call("reviews", "v2", "ratings"), q, 1, false)
            .decision
            .is_denied()
    );
    // Another source version is another counter under the same override.
    let v3 = engine.check(&call("reviews", "v3", "ratings"), q, 1, false);
    assert_eq!((v3.decision.granted, v3.decision.limit), (1, 1));
    // The second override for other callers of ratings, the default elsewhere.
    assert_eq!(
        engine
            .check(&call("productpage", "v1", "ratings"), q, 1, false)
            .decision
            .limit,
        100
    );
    assert_eq!(
        engine
            .check(&call("productpage", "v1", "details"), q, 1, false)
            .decision
            .limit,
        5000
    );
    // A missing attribute falls back to its literal.
    let anonymous = engine.check(&QuotaAttributes::default(), q, 1, false);
    assert_eq!(
        anonymous.key,
        "requestcountquota;destination=unknown;destinationVersion=unknown;source=unknown;sourceVersion=unknown"
    );
    assert_eq!(engine.key_count(), 5);
}

#[test]
fn results_carry_limit_remaining_window_and_retry() {
    let (engine, clock) = engine(vec![spec(
        json!({"name": "q", "maxAmount": 3, "validDuration": "10s"}),
    )]);
    clock.advance(Duration::from_secs(4));
    let attrs = QuotaAttributes::default();
    let first = engine.check(&attrs, "q", 2, false).decision;
    assert_eq!(first.outcome, QuotaOutcome::Granted);
    assert_eq!((first.granted, first.limit, first.remaining), (2, 3, 1));
    assert_eq!(first.window, Duration::from_secs(10));
    assert_eq!(first.valid_duration, Duration::from_secs(6));
    assert_eq!(first.reset_after, Duration::from_secs(6));
    assert_eq!(first.retry_after, None);
    let denied = engine.check(&attrs, "q", 2, false).decision;
    assert_eq!(denied.code(), tonic::Code::ResourceExhausted);
    assert_eq!(denied.granted, 0);
    assert_eq!(denied.retry_after, Some(Duration::from_secs(6)));
    let best_effort = engine.check(&attrs, "q", 2, true).decision;
    assert_eq!(
        (best_effort.granted, best_effort.code()),
        (1, tonic::Code::Ok)
    );
}

#[test]
fn unknown_quota_is_granted_with_not_found_and_counted() {
    let (engine, _) = engine(vec![per_second("known", 1)]);
    let result = engine.check(&QuotaAttributes::default(), "nope", 7, false);
    assert_eq!(result.decision.outcome, QuotaOutcome::UnknownQuota);
    assert_eq!(result.decision.granted, 7);
    assert_eq!(result.decision.code(), tonic::Code::NotFound);
    assert_eq!(result.decision.valid_duration, UNGOVERNED_VALID_DURATION);
    // Names compare case-insensitively, as Mixer's EqualFold.
    assert_eq!(
        engine
            .check(&QuotaAttributes::default(), "KNOWN", 1, false)
            .decision
            .outcome,
        QuotaOutcome::Granted
    );
    let mut text = String::new();
    engine.render_metrics(&mut text);
    assert!(
        text.contains(r#"meshtel_quota_checks_total{quota="unknown",result="unknown_quota"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"meshtel_quota_checks_total{quota="known",result="granted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("meshtel_quota_decision_seconds_bucket{le=\"0.000001\"}"),
        "{text}"
    );
    assert!(text.contains("meshtel_quota_keys 1"), "{text}");
    assert_eq!(engine.key_count(), 1);
}

#[test]
fn match_limits_which_requests_are_counted() {
    let (engine, _) = engine(vec![spec(json!({
        "name": "ratings-get",
        "match": {"destination": {"service": "ratings"}, "method": "GET"},
        "maxAmount": 1,
        "validDuration": "1s",
    }))]);
    let other = engine.check(&call("reviews", "v1", "details"), "ratings-get", 1, false);
    assert_eq!(other.decision.outcome, QuotaOutcome::NotApplicable);
    assert_eq!(other.decision.granted, 1);
    assert_eq!(engine.key_count(), 0);
    assert!(
        !engine
            .check(&call("reviews", "v1", "ratings"), "ratings-get", 1, false)
            .decision
            .is_denied()
    );
    assert!(
        engine
            .check(&call("reviews", "v1", "ratings"), "ratings-get", 1, false)
            .decision
            .is_denied()
    );
    // The Check that the match left out is counted as such, not as a grant.
    let mut text = String::new();
    engine.render_metrics(&mut text);
    for (result, count) in [("not_applicable", 1), ("granted", 1), ("denied", 1)] {
        let series = format!(
            r#"meshtel_quota_checks_total{{quota="ratings-get",result="{result}"}} {count}"#
        );
        assert!(text.contains(&series), "{series}: {text}");
    }
}

#[test]
fn shadow_policies_count_but_never_deny() {
    let (engine, _) = engine(vec![spec(
        json!({"name": "shadowed", "maxAmount": 2, "validDuration": "1s", "shadow": true}),
    )]);
    let attrs = QuotaAttributes::default();
    let outcomes: Vec<QuotaOutcome> = (0..4)
        .map(|_| engine.check(&attrs, "shadowed", 1, false))
        .map(|r| {
            assert!(r.shadow);
            assert_eq!(r.decision.granted, 1);
            r.decision.outcome
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            QuotaOutcome::Granted,
            QuotaOutcome::Granted,
            QuotaOutcome::ShadowDenied,
            QuotaOutcome::ShadowDenied
        ]
    );
    let usage = engine.usage("shadowed", 10).unwrap();
    assert_eq!((usage.granted, usage.denied), (2, 2));
    let mut text = String::new();
    engine.render_metrics(&mut text);
    assert!(
        text.contains(r#"meshtel_quota_checks_total{quota="shadowed",result="shadow_denied"} 2"#),
        "{text}"
    );
}

#[test]
fn unlimited_policies_keep_no_counter() {
    let (engine, _) = engine(vec![spec(json!({"name": "free", "unlimited": true}))]);
    for _ in 0..100 {
        let r = engine.check(&QuotaAttributes::default(), "free", 1000, false);
        assert_eq!(
            (r.decision.outcome, r.decision.granted),
            (QuotaOutcome::Unlimited, 1000)
        );
    }
    assert_eq!(engine.key_count(), 0);
}

#[test]
fn a_retried_check_is_charged_once() {
    let config = QuotaConfig {
        dedup_window: Duration::from_secs(1),
        ..QuotaConfig::default()
    };
    let (engine, clock) = engine_with(config, vec![per_second("q", 2)]);
    let attrs = QuotaAttributes::default();
    let first = engine.check_deduplicated("call-1", &attrs, "q", 1, false);
    clock.advance(Duration::from_millis(300));
    let retry = engine.check_deduplicated("call-1", &attrs, "q", 1, false);
    assert_eq!(retry.decision.granted, 1);
    assert_eq!(
        retry.decision.valid_duration,
        first.decision.valid_duration - Duration::from_millis(300)
    );
    assert_eq!(engine.usage("q", 1).unwrap().keys[0].used, 1);
    // Another id is another charge; the same id for another quota too.
    engine.check_deduplicated("call-2", &attrs, "q", 1, false);
    assert!(
        engine
            .check_deduplicated("call-3", &attrs, "q", 1, false)
            .decision
            .is_denied()
    );
    // Remembered for one to two windows, then forgotten.
    clock.advance(Duration::from_millis(2100));
    engine.sweep_idle();
    assert_eq!(engine.dedup_len(), 0);
    assert_eq!(
        engine
            .check_deduplicated("call-1", &attrs, "q", 1, false)
            .decision
            .granted,
        1
    );
    assert_eq!(engine.usage("q", 1).unwrap().keys[0].used, 1);
}

/// With the deduplication table full, a Check's result is not remembered (its retry
/// would be charged again), and that is counted.
#[test]
fn checks_the_full_dedup_table_cannot_remember_are_counted() {
    let config = QuotaConfig {
        dedup_window: Duration::from_secs(1),
        max_keys: 1,
        ..QuotaConfig::default()
    };
    let (engine, _) = engine_with(config, vec![per_second("q", 1000)]);
    let attrs = QuotaAttributes::default();
    for id in 0..200 {
        engine.check_deduplicated(&format!("call-{id}"), &attrs, "q", 1, false);
    }
    let mut text = String::new();
    engine.render_metrics(&mut text);
    let full = text
        .lines()
        .find_map(|l| l.strip_prefix("meshtel_quota_dedup_full_total "))
        .unwrap_or_else(|| panic!("no meshtel_quota_dedup_full_total in\n{text}"));
    let full: f64 = full.parse().unwrap();
    let remembered = engine.dedup_len() as f64;
    assert!(
        remembered < 200.0 && full > 0.0,
        "{remembered} remembered, {full} counted"
    );
    assert_eq!(full + remembered, 200.0);
}

#[test]
fn check_request_validates_and_answers_every_quota() {
    let (engine, _) = engine(vec![per_second("a", 1)]);
    let request = |quotas: Vec<(&str, i64)>| CheckRequest {
        attributes: None,
        deduplication_id: String::new(),
        quotas: quotas
            .into_iter()
            .map(|(n, amount)| {
                (
                    n.to_string(),
                    QuotaParams {
                        amount,
                        best_effort: false,
                    },
                )
            })
            .collect(),
    };
    let response = engine
        .check_request(&request(vec![("a", 1), ("b", 2)]))
        .unwrap();
    assert_eq!(response.quotas["a"].granted_amount, 1);
    assert_eq!(response.quotas["a"].status_code, 0);
    assert_eq!(
        response.quotas["b"].status_code,
        tonic::Code::NotFound as i32
    );
    assert_eq!(response.quotas["b"].granted_amount, 2);
    let denied = engine.check_request(&request(vec![("a", 1)])).unwrap();
    assert_eq!(
        denied.quotas["a"].status_code,
        tonic::Code::ResourceExhausted as i32
    );
    assert_eq!(
        denied.quotas["a"].status_message,
        "Quota is exhausted for: a"
    );
    let error = engine.check_request(&request(vec![("a", 0)])).unwrap_err();
    assert_eq!(error.grpc_status().code(), tonic::Code::InvalidArgument);
    assert!(
        error.to_string().contains("quotas[\"a\"].amount"),
        "{error}"
    );
}

#[test]
fn concurrent_threads_never_get_more_than_the_limit() {
    let (engine, _) = engine(vec![per_second("hot", 1000)]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let attrs = QuotaAttributes::default();
                (0..500)
                    .map(|_| engine.check(&attrs, "hot", 1, false).decision.granted)
                    .sum::<u64>()
            })
        })
        .collect();
    let granted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(granted, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_with_best_effort_take_exactly_the_limit() {
    let (engine, _) = engine(vec![per_second("hot", 777)]);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let attrs = QuotaAttributes::default();
                let mut total = 0;
                for _ in 0..20 {
                    total += engine.check(&attrs, "hot", 3, true).decision.granted;
                    tokio::task::yield_now().await;
                }
                total
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    assert_eq!(granted, 777);
}

#[test]
fn idle_keys_are_evicted_and_a_full_table_fails_open() {
    let config = QuotaConfig {
        max_keys: 3,
        ..QuotaConfig::default()
    };
    let (engine, clock) = engine_with(
        config,
        vec![spec(json!({
            "name": "per-user",
            "dimensions": {"user": "request.headers[\"x-user\"]"},
            "maxAmount": 1,
            "validDuration": "1s",
        }))],
    );
    let user = |name: &str| QuotaAttributes {
        request_headers: [("x-user".to_string(), name.to_string())].into(),
        ..QuotaAttributes::default()
    };
    for name in ["a", "b", "c"] {
        assert_eq!(
            engine
                .check(&user(name), "per-user", 1, false)
                .decision
                .outcome,
            QuotaOutcome::Granted
        );
    }
    let full = engine.check(&user("d"), "per-user", 1, false);
    assert_eq!(
        (full.decision.outcome, full.decision.granted),
        (QuotaOutcome::Overflow, 1)
    );
    assert_eq!(engine.key_count(), 3);
    // Once their window is over the counters are idle: a new key evicts them.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        engine
            .check(&user("d"), "per-user", 1, false)
            .decision
            .outcome,
        QuotaOutcome::Granted
    );
    assert!(engine.key_count() <= 3);
    clock.advance(Duration::from_secs(1));
    assert!(engine.sweep_idle() >= 1);
    assert_eq!(engine.key_count(), 0);
    let mut text = String::new();
    engine.render_metrics(&mut text);
    assert!(
        text.contains(r#"meshtel_quota_checks_total{quota="per-user",result="overflow"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("meshtel_quota_keys_evicted_total 4"),
        "{text}"
    );
}

#[test]
fn fast_path_charges_a_resolved_key() {
    let (engine, _) = engine(vec![bookinfo()]);
    let handle = engine.handle("requestcountquota").unwrap();
    let resolved = handle.policy().resolve(&call("reviews", "v2", "ratings"));
    let first = engine.charge(&handle, &resolved.key, &resolved.limit, 1, false);
    assert_eq!((first.outcome, first.limit), (QuotaOutcome::Granted, 1));
    assert!(
        engine
            .charge(&handle, &resolved.key, &resolved.limit, 1, false)
            .is_denied()
    );
    engine.set_policies(2, vec![]);
    let gone = engine.charge(&handle, &resolved.key, &resolved.limit, 1, false);
    assert_eq!(gone.outcome, QuotaOutcome::UnknownQuota);
    assert_eq!(engine.key_count(), 0);
}

#[test]
fn usage_lists_the_busiest_keys_with_their_dimensions() {
    let (engine, clock) = engine(vec![bookinfo()]);
    let q = "requestcountquota";
    for (n, source) in [(5, "details"), (9, "productpage"), (2, "reviews-x")] {
        for _ in 0..n {
            engine.check(&call(source, "v1", "ratings"), q, 1, false);
        }
    }
    clock.advance(Duration::from_millis(250));
    let usage = engine.usage(q, 2).unwrap();
    assert_eq!(usage.key_count, 3);
    assert_eq!(usage.granted, 16);
    assert_eq!(usage.keys.len(), 2);
    assert_eq!(usage.keys[0].used, 9);
    assert_eq!(usage.keys[0].limit, 100);
    assert_eq!(usage.keys[0].reset_after_ms, 750);
    assert_eq!(usage.keys[0].dimensions["source"], "productpage");
    assert_eq!(usage.keys[0].dimensions["destinationVersion"], "v1");
    assert_eq!(usage.keys[1].used, 5);
    assert!(engine.usage("nope", 2).is_none());
}

#[tokio::test]
async fn watchers_get_the_set_at_once_then_every_change() {
    use futures::StreamExt;
    let (engine, _) = engine(vec![per_second("a", 1)]);
    let mut stream = engine.policy_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.revision, 1);
    let specs: Vec<QuotaPolicySpec> = serde_json::from_str(&first.policies_json).unwrap();
    assert_eq!(specs, vec![per_second("a", 1)]);
    engine.set_policies(2, vec![per_second("a", 1), per_second("b", 2)]);
    let second = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.revision, 2);
    assert!(second.policies_json.contains("\"b\""));
    engine.close_watchers();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), stream.next())
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn rate_limit_units_follow_the_window() {
    use meshtel_model::rls::rate_limit_response::rate_limit::Unit;
    assert_eq!(
        rate_limit_unit(10, Duration::from_secs(1)),
        (Unit::Second, 10)
    );
    assert_eq!(
        rate_limit_unit(10, Duration::from_secs(60)),
        (Unit::Minute, 10)
    );
    assert_eq!(
        rate_limit_unit(10, Duration::from_secs(3600)),
        (Unit::Hour, 10)
    );
    assert_eq!(
        rate_limit_unit(10, Duration::from_secs(86_400)),
        (Unit::Day, 10)
    );
    assert_eq!(
        rate_limit_unit(10, Duration::from_secs(5)),
        (Unit::Second, 2)
    );
    assert_eq!(
        rate_limit_unit(100, Duration::from_secs(600)),
        (Unit::Minute, 10)
    );
    assert_eq!(
        rate_limit_unit(10, Duration::from_millis(500)),
        (Unit::Second, 20)
    );
    assert_eq!(
        rate_limit_unit(1, Duration::from_secs(30)),
        (Unit::Second, 1)
    );
    assert_eq!(
        rate_limit_unit(10, Duration::from_secs(90)),
        (Unit::Minute, 7)
    );
    assert_eq!(
        rate_limit_unit(7, Duration::from_secs(7 * 86_400)),
        (Unit::Week, 7)
    );
}

#[test]
fn default_config_round_trips_and_validates() {
    let config = QuotaConfig::default();
    config.validate().unwrap();
    let text = serde_json::to_string(&config).unwrap();
    let back: QuotaConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, config);
    let empty: QuotaConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, config);
    assert_eq!(config.max_keys, 1_000_000);
    assert_eq!(config.sync_interval, Duration::from_millis(250));
    let parsed: QuotaConfig =
        serde_json::from_str(r#"{"dedup_window":"2s","max_keys":10}"#).unwrap();
    assert_eq!(parsed.dedup_window, Duration::from_secs(2));
    assert!(serde_json::from_str::<QuotaConfig>(r#"{"max_key":1}"#).is_err());
    assert!(
        QuotaConfig {
            max_keys: 0,
            ..QuotaConfig::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        QuotaConfig {
            sweep_interval: Duration::ZERO,
            ..QuotaConfig::default()
        }
        .validate()
        .is_err()
    );
}

mod sync {
    use std::sync::atomic::{AtomicI64, Ordering};

    use async_trait::async_trait;
    use meshtel_model::quota::{AuditEntry, Precondition, QuotaPolicyStore, StoredPolicy};
    use parking_lot::Mutex;

    use super::*;

    /// Policies in memory; the revision moves on every put.
    #[derive(Default)]
    struct MemoryStore {
        policies: Mutex<Vec<StoredPolicy>>,
        revision: AtomicI64,
    }

    impl MemoryStore {
        fn put(&self, spec: QuotaPolicySpec) {
            let mut policies = self.policies.lock();
            policies.retain(|p| p.spec.name != spec.name);
            policies.push(StoredPolicy {
                spec,
                version: 1,
                updated_at_unix_ms: 0,
                updated_by: "test".into(),
                incarnation: 0,
            });
            self.revision.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl QuotaPolicyStore for MemoryStore {
        async fn list_policies(&self) -> meshtel_model::Result<Vec<StoredPolicy>> {
            Ok(self.policies.lock().clone())
        }
        async fn get_policy(&self, _: &str) -> meshtel_model::Result<Option<StoredPolicy>> {
            Ok(None)
        }
        async fn put_policy(
            &self,
            _: QuotaPolicySpec,
            _: Precondition,
            _: &str,
        ) -> meshtel_model::Result<(StoredPolicy, bool)> {
            unimplemented!()
        }
        async fn delete_policy(
            &self,
            _: &str,
            _: Precondition,
            _: &str,
        ) -> meshtel_model::Result<bool> {
            Ok(false)
        }
        async fn audit_before(
            &self,
            _: Option<&str>,
            _: Option<i64>,
            _: usize,
        ) -> meshtel_model::Result<Vec<AuditEntry>> {
            Ok(Vec::new())
        }
        async fn policies_revision(&self) -> meshtel_model::Result<i64> {
            Ok(self.revision.load(Ordering::SeqCst))
        }
    }

    #[tokio::test]
    async fn an_edit_in_the_store_is_enforced_within_a_second() {
        let store = Arc::new(MemoryStore::default());
        store.put(per_second("a", 100));
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Arc::new(QuotaEngine::new(QuotaConfig::default(), clock).unwrap());
        let (revision, load) = sync_policies_once(store.as_ref(), &engine).await.unwrap();
        assert_eq!((revision, load.loaded), (1, 1));
        let task = spawn_policy_sync(store.clone(), engine.clone(), Duration::from_millis(250));
        store.put(per_second("a", 1));
        let attrs = QuotaAttributes::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            if engine.revision() == 2 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reloaded within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(engine.check(&attrs, "a", 1, false).decision.limit, 1);
        task.abort();
        // The sweeper ends with the engine.
        let sweeper = spawn_quota_sweeper(&engine);
        drop(engine);
        sweeper.abort();
    }
}

mod policy_set;
mod splits;
mod zero_limit;
