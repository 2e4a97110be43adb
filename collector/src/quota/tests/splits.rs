//! A Mixer quota instance bound to several services is imported as one policy per
//! service (`<instance>.<service>`); a Mixer-era client still names the instance.

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
