//! The policy set: changes, deletes and re-creations, invalid and clashing policies.

use super::*;

#[test]
fn policy_changes_apply_at_once_and_removed_counters_go() {
    let (engine, _) = engine(vec![per_second("a", 10), per_second("b", 10)]);
    let attrs = QuotaAttributes::default();
    assert_eq!(engine.check(&attrs, "a", 5, false).decision.granted, 5);
    engine.check(&attrs, "b", 1, false);
    assert_eq!(engine.key_count(), 2);
    let load = engine.set_policies(2, vec![per_second("a", 5)]);
    assert_eq!(
        (load.loaded, load.removed.clone()),
        (1, vec!["b".to_string()])
    );
    assert_eq!(engine.revision(), 2);
    // The smaller limit applies to the counter as it is.
    let denied = engine.check(&attrs, "a", 1, false).decision;
    assert!(denied.is_denied());
    assert_eq!(denied.limit, 5);
    assert_eq!(engine.key_count(), 1);
    assert!(engine.usage("b", 10).is_none());
    assert_eq!(
        engine.check(&attrs, "b", 1, false).decision.outcome,
        QuotaOutcome::UnknownQuota
    );
    // Totals survive an edit of the same policy.
    assert_eq!(engine.usage("a", 10).unwrap().granted, 5);
    let mut text = String::new();
    engine.render_metrics(&mut text);
    assert!(!text.contains(r#"quota="b""#), "{text}");
}

/// A policy deleted and created again between two loads (another incarnation in the
/// store) starts again: its counters and totals are dropped, as a deleted policy's
/// are, while an edit of the same incarnation keeps them.
#[test]
fn a_policy_created_again_starts_its_counters_again() {
    use meshtel_model::quota::StoredPolicy;
    let stored = |incarnation: u64| StoredPolicy {
        spec: per_second("a", 1),
        version: 1,
        updated_at_unix_ms: 0,
        updated_by: "test".into(),
        incarnation,
    };
    let (engine, _) = engine(Vec::new());
    let attrs = QuotaAttributes::default();
    engine.set_stored_policies(1, vec![stored(7)]);
    assert_eq!(engine.check(&attrs, "a", 1, false).decision.granted, 1);
    assert!(engine.check(&attrs, "a", 1, false).decision.is_denied());
    // The same incarnation again (an edit elsewhere): still spent.
    let load = engine.set_stored_policies(2, vec![stored(7)]);
    assert!(load.recreated.is_empty());
    assert!(engine.check(&attrs, "a", 1, false).decision.is_denied());
    // Deleted and created again within one sync interval.
    let load = engine.set_stored_policies(3, vec![stored(9)]);
    assert_eq!(load.recreated, ["a"]);
    assert_eq!(engine.usage("a", 10).unwrap().granted, 0);
    assert_eq!(engine.check(&attrs, "a", 1, false).decision.granted, 1);
    // The proxies are told too, so that they forget their leases and held denials of
    // the policy before, whose spec was the same.
    let sent = engine.watch_policies().borrow().clone();
    assert_eq!((sent.revision, sent.incarnations), (3, vec![9]));
}

#[test]
fn invalid_policies_are_skipped_and_reported() {
    let clock = Arc::new(ManualClock::new(T0));
    let engine = QuotaEngine::new(QuotaConfig::default(), clock).unwrap();
    let load = engine.set_policies(
        3,
        vec![
            per_second("ok", 1),
            spec(json!({"name": "Bad Name", "maxAmount": 0})),
            per_second("ok", 2),
        ],
    );
    assert_eq!(load.loaded, 1);
    assert_eq!(load.invalid.len(), 2);
    assert_eq!(load.invalid[0].name, "Bad Name");
    // Every problem is reported: the name, and the missing window.
    let fields: Vec<&str> = load.invalid[0]
        .errors
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(fields, ["name", "validDuration"]);
    assert_eq!(engine.policy_names(), vec!["ok".to_string()]);
}

#[test]
fn of_two_policies_for_the_same_rate_limit_descriptors_the_first_by_name_applies() {
    let clock = Arc::new(ManualClock::new(T0));
    let engine = QuotaEngine::new(QuotaConfig::default(), clock).unwrap();
    let rls = |name: &str| {
        spec(json!({
            "name": name, "maxAmount": 1, "validDuration": "1s",
            "rateLimit": {"domain": "edge", "descriptors": [{"key": "user", "value": "jason"}]},
        }))
    };
    let load = engine.set_policies(4, vec![rls("rl3"), rls("rl2")]);
    assert_eq!(load.invalid.len(), 1, "{:?}", load.invalid);
    assert_eq!(load.invalid[0].name, "rl3");
    assert_eq!(load.loaded, 1);
    assert_eq!(engine.policy_names(), vec!["rl2".to_string()]);
    assert!(
        load.invalid[0].errors[0].message.contains("\"rl2\""),
        "{:?}",
        load.invalid
    );
}
