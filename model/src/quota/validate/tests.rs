use super::*;
use crate::mixer::{QuotaAttributes, Workload};
use crate::quota::QuotaPolicySpec;

fn spec(yaml: &str) -> QuotaPolicySpec {
    yaml_serde::from_str(yaml).unwrap()
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

fn bookinfo() -> QuotaPolicySpec {
    spec(
        r#"
name: requestcount
dimensions:
  source: source.labels["app"] | "unknown"
  sourceVersion: source.labels["version"] | "unknown"
  destination: destination.labels["app"] | destination.service.name | "unknown"
  destinationVersion: destination.labels["version"] | "unknown"
maxAmount: 5000
validDuration: 1s
overrides:
  - dimensions: {destination: ratings, source: reviews}
    maxAmount: 1
    validDuration: 1s
  - dimensions: {destination: ratings}
    maxAmount: 100
"#,
    )
}

fn call(src: &str, src_version: &str, dst: &str) -> QuotaAttributes {
    QuotaAttributes {
        source: Some(Workload {
            app: src.into(),
            version: src_version.into(),
            ..Default::default()
        }),
        destination_service_name: dst.into(),
        ..Default::default()
    }
}

#[test]
fn overrides_first_match_wins_and_keys_hold_every_dimension() {
    let p = bookinfo().compile().unwrap();
    let r = p.resolve(&call("reviews", "v2", "ratings"));
    assert_eq!(r.limit.max_amount, 1);
    assert_eq!(r.override_index, Some(0));
    assert_eq!(
        r.key,
        "requestcount;destination=ratings;destinationVersion=unknown;source=reviews;sourceVersion=v2"
    );
    let r3 = p.resolve(&call("reviews", "v3", "ratings"));
    assert_ne!(r.key, r3.key, "each source version has its own 1/s bucket");
    let r = p.resolve(&call("productpage", "v1", "ratings"));
    assert_eq!((r.limit.max_amount, r.override_index), (100, Some(1)));
    let r = p.resolve(&call("productpage", "v1", "details"));
    assert_eq!((r.limit.max_amount, r.override_index), (5000, None));
}

#[test]
fn an_absent_dimension_matches_an_empty_override_value() {
    let p = spec(
        r#"
name: q
dimensions: {user: 'request.headers["x-user"]'}
maxAmount: 10
validDuration: 1s
overrides: [{dimensions: {user: ""}, maxAmount: 1}]
"#,
    )
    .compile()
    .unwrap();
    assert_eq!(p.resolve(&QuotaAttributes::default()).limit.max_amount, 1);
}

#[test]
fn matches_require_every_field() {
    let p = spec(
        r#"
name: q
match:
  source: {service: reviews}
  destination: {service: ratings}
  method: GET
  pathPrefix: /ratings
  headers: {X-Tier: free}
maxAmount: 1
validDuration: 1s
"#,
    )
    .compile()
    .unwrap();
    let mut a = call("reviews", "v1", "ratings");
    a.request_method = "GET".into();
    a.request_path = "/ratings/0".into();
    a.request_headers.insert("x-tier".into(), "free".into());
    assert!(p.matches(&a));
    assert_eq!(p.header_names().collect::<Vec<_>>(), ["x-tier"]);
    for mutate in [
        (|a: &mut QuotaAttributes| a.request_method = "POST".into()) as fn(&mut QuotaAttributes),
        |a| a.request_path = "/details".into(),
        |a| a.destination_service_name = "details".into(),
        |a| a.source = None,
        |a| {
            a.request_headers.clear();
        },
    ] {
        let mut b = a.clone();
        mutate(&mut b);
        assert!(!p.matches(&b), "{b:?}");
    }
}

#[test]
fn every_field_error_is_reported_with_its_path() {
    let errors = spec(
        r#"
name: Bad Name
match: {method: get, pathPrefix: ratings, headers: {"bad header": x}}
dimensions: {user: "request.headers[x]", ok: source.service}
maxAmount: 0
validDuration: 1 second
algorithm: leaky-bucket
bucketDuration: 1s
burst: 3
overrides:
  - dimensions: {nope: a}
    maxAmount: 0
    validDuration: -1s
  - dimensions: {}
    maxAmount: 1
"#,
    )
    .compile()
    .unwrap_err();
    let got = fields(&errors);
    for want in [
        "name",
        "match.method",
        "match.pathPrefix",
        "match.headers.bad header",
        "dimensions.user",
        "validDuration",
        "algorithm",
        "bucketDuration",
        "burst",
        "overrides[0].dimensions.nope",
        "overrides[0].validDuration",
        "overrides[1].dimensions",
    ] {
        assert!(got.contains(&want), "missing {want} in {errors:#?}");
    }
    // A limit of 0 is valid: it denies every request.
    assert!(!got.contains(&"maxAmount"), "{errors:#?}");
    assert!(!got.contains(&"overrides[0].maxAmount"), "{errors:#?}");
}

#[test]
fn a_zero_limit_compiles_for_every_algorithm() {
    for algorithm in ["fixed-window", "rolling-window", "token-bucket"] {
        let policy = spec(&format!(
            "name: blocked\nmaxAmount: 0\nvalidDuration: 1s\nalgorithm: {algorithm}\n\
             dimensions: {{user: 'request.headers[\"x-user\"]'}}\n\
             overrides: [{{dimensions: {{user: vip}}, maxAmount: 0}}]\n"
        ))
        .compile()
        .unwrap_or_else(|e| panic!("{algorithm}: {e:?}"));
        assert_eq!(policy.limit.max_amount, 0, "{algorithm}");
        assert_eq!(policy.overrides[0].limit.max_amount, 0, "{algorithm}");
    }
}

#[test]
fn share_threshold_and_the_reported_name_are_checked() {
    let errors = spec(
        r#"
name: q
maxAmount: 1
validDuration: 1s
rateLimit:
  domain: d
  name: "bad\"name"
  descriptors: [{key: path, value: /api, shareThreshold: true}, {key: user, shareThreshold: true}]
"#,
    )
    .compile()
    .unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "rateLimit.descriptors[0].shareThreshold",
            "rateLimit.descriptors[1].shareThreshold",
            "rateLimit.name"
        ]
    );
    let ok = spec(
        "name: q\nmaxAmount: 1\nvalidDuration: 1s\n\
         rateLimit: {domain: d, name: Per IP, descriptors: [{key: path, value: /api/*, shareThreshold: true}]}\n",
    );
    let policy = ok.compile().unwrap();
    let rl = policy.spec.rate_limit.as_ref().unwrap();
    assert!(rl.descriptors[0].share_threshold);
    assert_eq!(rl.reported_name("q"), "Per IP");
    // JSON keeps the field name of its neighbours (camelCase) and round-trips.
    let json = serde_json::to_string(&ok).unwrap();
    assert!(json.contains(r#""shareThreshold":true"#), "{json}");
    assert_eq!(serde_json::from_str::<QuotaPolicySpec>(&json).unwrap(), ok);
}

#[test]
fn algorithm_parameters_are_checked() {
    let base = "name: q\nmaxAmount: 10\nvalidDuration: 1s\n";
    let p = spec(&format!("{base}algorithm: rolling-window\n")).compile().unwrap();
    assert_eq!(
        p.limit.algorithm,
        Algorithm::RollingWindow { bucket: Duration::from_millis(100) }
    );
    let e = spec(&format!("{base}algorithm: rolling-window\nbucketDuration: 2s\n"))
        .compile()
        .unwrap_err();
    assert_eq!(fields(&e), ["bucketDuration"]);
    let p = spec(&format!("{base}algorithm: token-bucket\n")).compile().unwrap();
    assert_eq!(p.limit.algorithm, Algorithm::TokenBucket { burst: 10 });
    let e = spec(&format!("{base}algorithm: token-bucket\nburst: 0\n")).compile().unwrap_err();
    assert_eq!(fields(&e), ["burst"]);
    let e = spec("name: q\nmaxAmount: 1\n").compile().unwrap_err();
    assert_eq!(fields(&e), ["validDuration"]);
    let p = spec("name: q\nunlimited: true\n").compile().unwrap();
    assert!(p.spec.unlimited);
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let err = yaml_serde::from_str::<QuotaPolicySpec>("name: q\nmaxAmmount: 1\n").unwrap_err();
    assert!(err.to_string().contains("maxAmmount"), "{err}");
}

#[test]
fn rate_limit_policies_key_on_valueless_entries() {
    let p = spec(
        r#"
name: per-ip-login
maxAmount: 5
validDuration: 1m
rateLimit:
  domain: edge
  descriptors: [{key: remote_address}, {key: path, value: /login}]
"#,
    )
    .compile()
    .unwrap();
    assert!(!p.matches(&QuotaAttributes::default()));
    assert_eq!(p.resolve_values(&["10.0.0.1"]).key, "per-ip-login;remote_address=10.0.0.1");
    let e = spec(
        "name: q\nmaxAmount: 1\nvalidDuration: 1s\nrateLimit: {domain: '', descriptors: [{key: '', value: 'a*b'}]}\n",
    )
    .compile()
    .unwrap_err();
    assert_eq!(
        fields(&e),
        ["rateLimit.domain", "rateLimit.descriptors[0].key", "rateLimit.descriptors[0].value"]
    );
}

#[test]
fn specs_round_trip_through_json() {
    let s = bookinfo();
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"maxAmount\":5000"), "{json}");
    let back: QuotaPolicySpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn amounts_beyond_int64_are_refused() {
    // Check answers limit, remaining and granted amounts as int64.
    let errors = spec(
        r#"
name: q
dimensions: {user: 'request.headers["x-user"]'}
maxAmount: 18446744073709551615
validDuration: 1s
algorithm: token-bucket
burst: 9223372036854775808
overrides: [{dimensions: {user: jason}, maxAmount: 9223372036854775808}]
"#,
    )
    .compile()
    .unwrap_err();
    assert_eq!(fields(&errors), ["maxAmount", "burst", "overrides[0].maxAmount"]);
    assert!(errors[0].message.contains("9223372036854775807"), "{}", errors[0].message);
    let at_most = spec("name: q\nmaxAmount: 9223372036854775807\nvalidDuration: 1s\n").compile();
    assert!(at_most.is_ok());
}

#[test]
fn a_rolling_window_has_a_bounded_number_of_buckets() {
    let base = "name: q\nmaxAmount: 10\nalgorithm: rolling-window\n";
    let errors = spec(&format!("{base}validDuration: 168h\nbucketDuration: 1ns\n")).compile().unwrap_err();
    assert_eq!(fields(&errors), ["bucketDuration"]);
    assert!(errors[0].message.contains("6.048s"), "{}", errors[0].message);
    assert!(spec(&format!("{base}validDuration: 168h\nbucketDuration: 7s\n")).compile().is_ok());
    // Exactly 100,000 buckets is the most.
    assert!(spec(&format!("{base}validDuration: 168h\nbucketDuration: 6048ms\n")).compile().is_ok());
    assert!(spec(&format!("{base}validDuration: 168h\nbucketDuration: 6047ms\n")).compile().is_err());
    assert!(spec(&format!("{base}validDuration: 1s\nbucketDuration: 10us\n")).compile().is_ok());
    // An override's own window counts too.
    let overridden = format!(
        "{base}validDuration: 1s\nbucketDuration: 1ms\ndimensions: {{user: 'request.headers[\"x-user\"]'}}\n\
         overrides: [{{dimensions: {{user: jason}}, maxAmount: 1, validDuration: 24h}}]\n"
    );
    let errors = spec(&overridden).compile().unwrap_err();
    assert_eq!(fields(&errors), ["overrides[0].validDuration"]);
}

#[test]
fn a_duration_in_days_is_refused_saying_how_to_write_it() {
    let errors = spec("name: week\nmaxAmount: 10\nvalidDuration: 7d\n").compile().unwrap_err();
    let message = &errors.iter().find(|e| e.field == "validDuration").expect("validDuration").message;
    assert!(message.contains("write 168h for 7 days"), "{message}");
    assert!(spec("name: week\nmaxAmount: 10\nvalidDuration: 168h\n").compile().is_ok());
}

#[test]
fn names_the_quota_metrics_use_for_their_own_series_are_reserved() {
    for name in ["unknown", "limit_override"] {
        let errors = spec(&format!("name: {name}\nmaxAmount: 1\nvalidDuration: 1s\n"))
            .compile()
            .unwrap_err();
        assert_eq!(fields(&errors), ["name"]);
        assert!(errors[0].message.contains("is reserved"), "{}", errors[0].message);
    }
    let errors = spec(
        "name: q\nmaxAmount: 1\nvalidDuration: 1s\n\
         rateLimit: {domain: unknown, descriptors: [{key: path}]}\n",
    )
    .compile()
    .unwrap_err();
    assert_eq!(fields(&errors), ["rateLimit.domain"]);
    // Other names alike are fine.
    spec("name: unknown-quota\nmaxAmount: 1\nvalidDuration: 1s\n").compile().unwrap();
}

/// An override with the dimensions of one before it can never match: refused, naming
/// both, instead of a limit that silently never applies.
#[test]
fn an_override_repeating_an_earlier_ones_dimensions_is_refused() {
    let mut s = bookinfo();
    let mut again = s.overrides[1].clone();
    again.max_amount = 7;
    s.overrides.push(again);
    let errors = s.compile_new().unwrap_err();
    assert_eq!(fields(&errors), ["overrides[2].dimensions"]);
    // One stored before the rule is enforced as it is.
    assert_eq!(s.compile().unwrap().overrides.len(), 3);
    assert_eq!(
        errors[0].message,
        "the same as overrides[1]'s, which matches first: this one never would"
    );
    // A subset or superset of another's dimensions is a different override.
    let mut s = bookinfo();
    let mut wider = s.overrides[0].clone();
    wider.dimensions.insert("sourceVersion".into(), "v1".into());
    s.overrides.push(wider);
    assert!(s.compile_new().is_ok());
}
