//! `maxAmount: 0`: every request that asks for something is over the limit, through
//! Check as through the RLS API, whatever the algorithm.

use super::*;

#[test]
fn check_denies_every_request_of_a_zero_limit_under_every_algorithm() {
    let policies = vec![
        spec(json!({"name": "fixed", "maxAmount": 0, "validDuration": "10s"})),
        spec(
            json!({"name": "rolling", "maxAmount": 0, "validDuration": "10s",
            "algorithm": "rolling-window", "bucketDuration": "1s"}),
        ),
        spec(
            json!({"name": "token", "maxAmount": 0, "validDuration": "10s",
            "algorithm": "token-bucket"}),
        ),
        spec(
            json!({"name": "token-burst", "maxAmount": 0, "validDuration": "10s",
            "algorithm": "token-bucket", "burst": 3}),
        ),
        spec(json!({"name": "shadowed", "maxAmount": 0, "validDuration": "10s", "shadow": true})),
        // Only the matching override is 0.
        spec(
            json!({"name": "blocked-user", "maxAmount": 5, "validDuration": "10s",
            "dimensions": {"user": "request.headers[\"x-user\"]"},
            "overrides": [{"dimensions": {"user": "mallory"}, "maxAmount": 0}]}),
        ),
    ];
    let (engine, clock) = engine(policies);
    clock.advance(Duration::from_secs(4));
    let attrs = QuotaAttributes::default();
    for quota in ["fixed", "rolling", "token", "token-burst"] {
        for best_effort in [false, true, false] {
            let d = engine.check(&attrs, quota, 1, best_effort).decision;
            assert_eq!(d.outcome, QuotaOutcome::Denied, "{quota}");
            assert_eq!((d.granted, d.limit, d.remaining), (0, 0, 0), "{quota}");
            assert!(d.retry_after.is_some_and(|r| !r.is_zero()), "{quota} {d:?}");
            clock.advance(Duration::from_secs(3));
        }
    }
    let shadow = engine.check(&attrs, "shadowed", 1, false).decision;
    assert_eq!(
        (shadow.outcome, shadow.granted),
        (QuotaOutcome::ShadowDenied, 1)
    );
    let mut mallory = QuotaAttributes::default();
    mallory
        .request_headers
        .insert("x-user".into(), "mallory".into());
    assert!(
        engine
            .check(&mallory, "blocked-user", 1, false)
            .decision
            .is_denied()
    );
    assert!(
        !engine
            .check(&attrs, "blocked-user", 1, false)
            .decision
            .is_denied()
    );
    // Over the wire: RESOURCE_EXHAUSTED with limit 0.
    let request = CheckRequest {
        quotas: [(
            "fixed".to_string(),
            QuotaParams {
                amount: 1,
                best_effort: false,
            },
        )]
        .into(),
        ..CheckRequest::default()
    };
    let answer = engine.check_request(&request).unwrap();
    let result = &answer.quotas["fixed"];
    assert_eq!(result.status_code, tonic::Code::ResourceExhausted as i32);
    assert_eq!((result.granted_amount, result.limit), (0, 0));
}
