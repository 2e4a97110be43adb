//! Policies edited or imported in more than one piece: a Mixer quota instance bound to
//! several services is imported as one policy per service (`<instance>.<service>`),
//! which a Mixer-era client still names by the instance; a policy keyed by other
//! dimensions after an edit.

use super::*;

fn split(name: &str, service: &str, max: u64) -> QuotaPolicySpec {
    spec(json!({
        "name": name,
        "match": {"destination": {"service": service}},
        "maxAmount": max,
        "validDuration": "1s",
    }))
}

#[test]
fn a_check_naming_a_split_instance_finds_the_policy_of_its_destination() {
    let (engine, _) = engine(vec![
        split("requestcountquota.ratings", "ratings", 1),
        split("requestcountquota.reviews", "reviews", 2),
    ]);
    let check = |destination: &str| {
        engine
            .check(
                &call("productpage", "v1", destination),
                "requestcountquota",
                1,
                false,
            )
            .decision
    };
    // ratings: its own limit of 1.
    assert_eq!(check("ratings").outcome, QuotaOutcome::Granted);
    assert!(check("ratings").is_denied());
    // reviews: its own limit of 2, counted apart.
    assert!(!check("reviews").is_denied());
    assert!(!check("reviews").is_denied());
    assert!(check("reviews").is_denied());
    // A service no split policy names: not applicable (granted), not an unknown quota.
    let details = check("details");
    assert_eq!(
        (details.outcome, details.granted),
        (QuotaOutcome::NotApplicable, 1)
    );
    // Case-insensitive as an exact name is; and an exact name wins over splits.
    assert!(
        engine
            .check(
                &call("productpage", "v1", "ratings"),
                "RequestCountQuota",
                1,
                false
            )
            .decision
            .is_denied()
    );
    let (engine, _) = engine_with_exact();
    let exact = engine
        .check(
            &call("productpage", "v1", "ratings"),
            "requestcountquota",
            1,
            false,
        )
        .decision;
    assert_eq!((exact.outcome, exact.limit), (QuotaOutcome::Granted, 7));
}

fn engine_with_exact() -> (Arc<QuotaEngine>, Arc<ManualClock>) {
    engine(vec![
        per_second("requestcountquota", 7),
        split("requestcountquota.ratings", "ratings", 1),
    ])
}

#[test]
fn counters_of_a_policy_keyed_by_other_dimensions_now_are_dropped() {
    let (engine, _) = engine(vec![per_second("ratings-limit", 10)]);
    let attrs = call("reviews", "v1", "ratings");
    engine.check(&attrs, "ratings-limit", 1, false);
    assert_eq!(engine.key_count(), 1);
    // The same dimensions: the counter stays, under the new limit.
    let load = engine.set_policies(2, vec![per_second("ratings-limit", 5)]);
    assert!(load.rekeyed.is_empty(), "{load:?}");
    assert_eq!(engine.key_count(), 1);
    // Keyed by the caller now: the old counter can never be charged again.
    let by_source = spec(json!({
        "name": "ratings-limit",
        "dimensions": {"source": "source.labels[\"app\"] | \"unknown\""},
        "maxAmount": 2,
        "validDuration": "1s",
    }));
    let load = engine.set_policies(3, vec![by_source]);
    assert_eq!(load.rekeyed, ["ratings-limit"]);
    assert_eq!(engine.key_count(), 0);
    engine.check(&attrs, "ratings-limit", 1, false);
    let usage = engine.usage("ratings-limit", 10).expect("usage");
    let keys: Vec<&str> = usage.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["ratings-limit;source=reviews"]);
    // Totals survive the edit.
    assert_eq!(usage.granted, 2);
}
