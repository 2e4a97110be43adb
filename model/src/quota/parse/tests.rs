#![allow(clippy::unwrap_used)] // test code

use super::*;
use crate::quota::{
    DescriptorEntrySpec, QuotaMatch, QuotaOverrideSpec, RateLimitSpec, WorkloadMatch,
};

fn problems(json: &str) -> Vec<FieldError> {
    spec_from_value(strict_json_value(json.as_bytes()).unwrap()).unwrap_err()
}

/// `field` → message of each problem, for assertions that name the field.
fn by_field(errors: &[FieldError]) -> Vec<(&str, &str)> {
    errors
        .iter()
        .map(|e| (e.field.as_str(), e.message.as_str()))
        .collect()
}

fn message_of<'e>(errors: &'e [FieldError], field: &str) -> &'e str {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
        .unwrap_or_else(|| panic!("no problem at {field}: {errors:?}"))
}

#[test]
fn repeated_keys_are_refused_with_their_path() {
    let error = strict_json_value(br#"{"maxAmount":1,"maxAmount":1000000}"#).unwrap_err();
    assert_eq!(error.field, "maxAmount");
    assert!(
        error.message.contains("duplicate key `maxAmount`"),
        "{error}"
    );
    let error =
        strict_json_value(br#"{"overrides":[{"dimensions":{"a":"1","a":"2"}}]}"#).unwrap_err();
    assert_eq!(error.field, "overrides[0].dimensions.a");
    let yaml = "name: a\nmaxAmount: 1\nmaxAmount: 2\n";
    let error = strict_yaml_value(yaml_serde::Deserializer::from_str(yaml)).unwrap_err();
    assert_eq!(error.field, "maxAmount", "{error}");
}

#[test]
fn an_integer_past_64_bits_is_refused_with_its_path() {
    let yaml = "name: a\noverrides:\n  - maxAmount: 99999999999999999999\n";
    let error = strict_yaml_value(yaml_serde::Deserializer::from_str(yaml)).unwrap_err();
    assert_eq!(error.field, "overrides[0].maxAmount", "{error}");
    assert_eq!(
        error.message,
        "99999999999999999999 is too large: at most 9223372036854775807"
    );
    let yaml = "name: a\nmaxAmount: -99999999999999999999\n";
    let error = strict_yaml_value(yaml_serde::Deserializer::from_str(yaml)).unwrap_err();
    assert_eq!(
        error.message,
        "-99999999999999999999 is too small: at least -9223372036854775808"
    );
    // JSON reads it as a float, which the field refuses as not a whole number.
    let errors = problems(r#"{"name":"a","maxAmount":99999999999999999999,"validDuration":"1s"}"#);
    assert!(
        message_of(&errors, "maxAmount").ends_with("not 100000000000000000000"),
        "{errors:?}"
    );
}

/// `1e3` and `5.0` are whole numbers, as YAML and JSON writers may put them; a
/// fraction, a negative or past 2^53 (where a double skips whole numbers) is not.
#[test]
fn whole_numbers_written_as_floats_are_amounts() {
    let read = |amount: &str| {
        let json = format!(r#"{{"name":"p","maxAmount":{amount},"validDuration":"1s"}}"#);
        spec_from_value(strict_json_value(json.as_bytes()).unwrap()).map(|s| s.max_amount)
    };
    assert_eq!(read("1e3").unwrap(), 1000);
    assert_eq!(read("5.0").unwrap(), 5);
    assert_eq!(read("9007199254740992.0").unwrap(), 1 << 53);
    assert_eq!(read("1e16").unwrap(), 10_000_000_000_000_000);
    assert_eq!(read("1e18").unwrap(), 1_000_000_000_000_000_000);
    let too_large = |amount: &str| message_of(&read(amount).unwrap_err(), "maxAmount").to_string();
    assert!(too_large("1e19").ends_with("up to 9223372036854775807, not 10000000000000000000"));
    assert!(too_large("1e300").ends_with("up to 9223372036854775807, not 1e300"));
    for refused in ["2.5", "-1.0", "-0.5"] {
        assert!(read(refused).is_err(), "{refused}");
    }
    let yaml = "name: p\nmaxAmount: 1.0e3\nvalidDuration: 1s\n";
    let value = strict_yaml_value(yaml_serde::Deserializer::from_str(yaml)).unwrap();
    assert_eq!(spec_from_value(value).unwrap().max_amount, 1000);
}

#[test]
fn values_read_as_serde_json_reads_them() {
    let text = r#"{"a":[1,-2,2.5,"x",true,null],"b":{"c":{}}}"#;
    let strict = strict_json_value(text.as_bytes()).unwrap();
    let plain: Value = serde_json::from_str(text).unwrap();
    assert_eq!(strict, plain);
    assert!(strict_json_value(b"{\"a\":1} x").is_err());
    assert!(
        strict_json_value(b"{")
            .unwrap_err()
            .message
            .starts_with("invalid JSON")
    );
}

#[test]
fn type_errors_name_their_field() {
    let errors = problems(
        r#"{"name":"p1","maxAmount":1,"validDuration":"1s","overrides":[{"dimensions":{"a":"x"},"maxAmount":-3}]}"#,
    );
    assert_eq!(
        by_field(&errors),
        [
            (
                "overrides[0].maxAmount",
                "must be a whole number ≥ 0, not -3"
            ),
            (
                "overrides[0].dimensions.a",
                "is not one of the quota's dimensions"
            ),
        ]
    );
    let errors = problems(
        r#"{"name":"p2","maxAmount":1,"validDuration":"1s","match":{"headers":{"x":{"regex":"a"}}}}"#,
    );
    assert_eq!(
        by_field(&errors),
        [("match.headers.x", "must be a string, not an object")]
    );
}

#[test]
fn each_wrong_type_names_the_field_and_what_it_must_be() {
    for (json, field, message) in [
        (
            r#"{"maxAmount":"5"}"#,
            "maxAmount",
            "must be a whole number ≥ 0, not the string \"5\"",
        ),
        (
            r#"{"maxAmount":2.5}"#,
            "maxAmount",
            "must be a whole number ≥ 0, not 2.5",
        ),
        (
            r#"{"burst":-1}"#,
            "burst",
            "must be a whole number ≥ 0, not -1",
        ),
        (
            r#"{"maxAmount":18446744073709551616}"#,
            "maxAmount",
            "must be a whole number ≥ 0 up to 9223372036854775807, not 18446744073709551616",
        ),
        (
            r#"{"validDuration":1}"#,
            "validDuration",
            "must be a duration such as \"1s\" or \"500ms\" (put it in quotes), not 1",
        ),
        (
            r#"{"name":7}"#,
            "name",
            "must be a string (put it in quotes), not 7",
        ),
        (
            r#"{"shadow":"yes"}"#,
            "shadow",
            "must be true or false, not the string \"yes\"",
        ),
        (
            r#"{"unlimited":1}"#,
            "unlimited",
            "must be true or false, not 1",
        ),
        (
            r#"{"overrides":{}}"#,
            "overrides",
            "must be a list, not an object",
        ),
        (
            r#"{"overrides":[3]}"#,
            "overrides[0]",
            "must be an object with the fields dimensions, maxAmount, validDuration, not 3",
        ),
        (
            r#"{"dimensions":["source.service"]}"#,
            "dimensions",
            "must be an object (name: value, each value an attribute expression such as source.service), not a list",
        ),
        (
            r#"{"dimensions":{"u":true}}"#,
            "dimensions.u",
            "must be an attribute expression such as source.service (put it in quotes), not true",
        ),
        (
            r#"{"match":{"source":"reviews"}}"#,
            "match.source",
            "must be an object with the fields service, workload, version, namespace, not the string \"reviews\"",
        ),
        (
            r#"{"match":{"destination":{"version":2}}}"#,
            "match.destination.version",
            "must be a string (put it in quotes), not 2",
        ),
        (
            r#"{"rateLimit":{"domain":"d","descriptors":[{"key":"k","shareThreshold":"no"}]}}"#,
            "rateLimit.descriptors[0].shareThreshold",
            "must be true or false, not the string \"no\"",
        ),
        (
            r#"{"rateLimit":{"domain":"d","descriptors":[{"key":"k"}],"replaces":[1]}}"#,
            "rateLimit.replaces[0]",
            "must be a policy name (a string), not 1",
        ),
    ] {
        let mut value: Value = serde_json::from_str(json).unwrap();
        let object = value.as_object_mut().unwrap();
        for (key, default) in [("name", "p"), ("validDuration", "1s")] {
            object.entry(key).or_insert_with(|| default.into());
        }
        object.entry("maxAmount").or_insert(1.into());
        let errors = spec_from_value(value).unwrap_err();
        assert_eq!(message_of(&errors, field), message, "{json}: {errors:?}");
    }
}

#[test]
fn the_reviewers_four_problems_are_all_reported() {
    let errors = problems(
        r#"{"name":"bad","maxAmount":-3,"validDuration":"0s","algorithm":"fixed-windw","dimensions":{"u":"request.bogus"}}"#,
    );
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["maxAmount", "dimensions.u", "validDuration", "algorithm"],
        "{errors:?}"
    );
    assert_eq!(
        message_of(&errors, "maxAmount"),
        "must be a whole number ≥ 0, not -3"
    );
    assert_eq!(
        message_of(&errors, "validDuration"),
        "must be greater than zero"
    );
    assert!(message_of(&errors, "algorithm").contains("\"fixed-windw\" is not one of"));
    assert!(message_of(&errors, "dimensions.u").contains("request.bogus"));
}

#[test]
fn an_unknown_key_and_a_bad_value_are_both_reported() {
    let errors = problems(
        r#"{"name":"bad","maxAmount":3,"validDuration":"0s","dimensions":{"u":"request.bogus"},"match":{"source":{"sevice":"x"}},"overrides":[{"dimensions":{"zz":"1"},"maxAmount":1}]}"#,
    );
    assert_eq!(
        message_of(&errors, "match.source.sevice"),
        "unknown field `sevice`; did you mean `service`?"
    );
    for field in [
        "validDuration",
        "dimensions.u",
        "overrides[0].dimensions.zz",
    ] {
        message_of(&errors, field);
    }
    assert_eq!(errors.len(), 4, "{errors:?}");

    let errors = problems(r#"{"name":"p","max_amount":1,"validDuration":"1s","colour":"red"}"#);
    assert_eq!(
        by_field(&errors),
        [
            (
                "colour",
                "unknown field `colour`; the fields here are name, description, match, dimensions, maxAmount, validDuration, algorithm, bucketDuration, burst, overrides, shadow, unlimited, rateLimit"
            ),
            (
                "max_amount",
                "unknown field `max_amount`; did you mean `maxAmount`?"
            ),
            (
                "maxAmount",
                "is required (0 denies every request; or set unlimited: true)"
            ),
        ]
    );
}

#[test]
fn a_field_that_did_not_read_hides_what_follows_from_it() {
    // No "is required" for the name that is there, no "applies to rolling-window only"
    // for a bucket whose algorithm did not read, no "validDuration is required" when
    // `unlimited` did not read.
    let errors = problems(
        r#"{"name":5,"maxAmount":1,"validDuration":"1s","algorithm":["rolling-window"],"bucketDuration":"100ms"}"#,
    );
    assert_eq!(
        by_field(&errors)
            .iter()
            .map(|(f, _)| *f)
            .collect::<Vec<_>>(),
        ["name", "algorithm"]
    );
    let errors = problems(r#"{"name":"p","unlimited":"true"}"#);
    assert_eq!(
        by_field(&errors),
        [(
            "unlimited",
            "must be true or false, not the string \"true\""
        )]
    );
}

#[test]
fn max_amount_is_required_unless_unlimited() {
    // 0 denies everything, so a policy that leaves the field out is not read as 0.
    let errors = problems(r#"{"name":"p","validDuration":"1s"}"#);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "maxAmount");
    assert!(errors[0].message.contains("is required"), "{errors:?}");
    let zero = strict_json_value(br#"{"name":"p","maxAmount":0,"validDuration":"1s"}"#);
    assert_eq!(spec_from_value(zero.unwrap()).unwrap().max_amount, 0);
    let unlimited = strict_json_value(br#"{"name":"p","unlimited":true}"#).unwrap();
    assert!(spec_from_value(unlimited).unwrap().unlimited);
    let errors =
        problems(r#"{"name":"p","validDuration":"1s","overrides":[{"dimensions":{"a":"1"}}]}"#);
    message_of(&errors, "overrides[0].maxAmount");
}

#[test]
fn a_spec_with_every_field_reads_back_as_itself() {
    // Every field of every struct set: the walker knows each one and its type.
    let spec = QuotaPolicySpec {
        name: "every".into(),
        description: "d".into(),
        matches: QuotaMatch {
            source: WorkloadMatch {
                service: "a".into(),
                workload: "b".into(),
                version: "c".into(),
                namespace: "d".into(),
            },
            destination: WorkloadMatch {
                service: "e".into(),
                workload: "f".into(),
                version: "g".into(),
                namespace: "h".into(),
            },
            method: "GET".into(),
            path_prefix: "/x".into(),
            headers: [("x-a".to_string(), "1".to_string())].into(),
        },
        dimensions: [("u".to_string(), "source.service".to_string())].into(),
        max_amount: 7,
        valid_duration: "1s".into(),
        algorithm: Some("rolling-window".into()),
        bucket_duration: Some("100ms".into()),
        burst: Some(3),
        overrides: vec![QuotaOverrideSpec {
            dimensions: [("u".to_string(), "x".to_string())].into(),
            max_amount: 1,
            valid_duration: Some("2s".into()),
        }],
        shadow: true,
        unlimited: true,
        rate_limit: Some(RateLimitSpec {
            domain: "dom".into(),
            descriptors: vec![DescriptorEntrySpec {
                key: "k".into(),
                value: Some("v*".into()),
                share_threshold: true,
            }],
            replaces: vec!["other".into()],
            name: Some("n".into()),
        }),
    };
    let value = serde_json::to_value(&spec).unwrap();
    assert_eq!(spec_from_value(value.clone()).unwrap(), spec);
    let as_serde_reads_it: QuotaPolicySpec = serde_json::from_value(value).unwrap();
    assert_eq!(as_serde_reads_it, spec);
    // And YAML, as the API and the CLI read it.
    let yaml = yaml_serde::to_string(&spec).unwrap();
    let value = strict_yaml_value(yaml_serde::Deserializer::from_str(&yaml)).unwrap();
    assert_eq!(spec_from_value(value).unwrap(), spec);
}

#[test]
fn null_fields_read_as_absent() {
    let value = strict_yaml_value(yaml_serde::Deserializer::from_str(
        "name: p\nmaxAmount: 1\nvalidDuration: 1s\ndescription:\nalgorithm: ~\n",
    ))
    .unwrap();
    let spec = spec_from_value(value).unwrap();
    assert_eq!((spec.description.as_str(), spec.algorithm), ("", None));
}

/// A list item that is not an object keeps its place: the problems of the next items
/// name their own indexes, and are not hidden by it.
#[test]
fn a_bad_list_item_keeps_the_indexes_of_the_next_ones() {
    let errors = problems(
        r#"{"name":"p","maxAmount":5,"validDuration":"1s","dimensions":{"u":"source.service"},"overrides":["x",{"dimensions":{"u":"a"},"maxAmount":1,"validDuration":"0s"}]}"#,
    );
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["overrides[0]", "overrides[1].validDuration"],
        "{errors:?}"
    );
    let errors = problems(
        r#"{"name":"p","maxAmount":5,"validDuration":"1s","rateLimit":{"domain":"d","descriptors":[5,{"key":"k"},{"key":""}]}}"#,
    );
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["rateLimit.descriptors[0]", "rateLimit.descriptors[2].key"],
        "{errors:?}"
    );
}

/// A dimension value of the wrong type is one problem: the overrides that name the
/// dimension are not said to name an unknown one, nor to name none.
#[test]
fn a_wrongly_typed_dimension_is_not_reported_missing_elsewhere() {
    let errors = problems(
        r#"{"name":"p","maxAmount":5,"validDuration":"1s","dimensions":{"u":5},"overrides":[{"dimensions":{"u":1},"maxAmount":1}]}"#,
    );
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["dimensions.u", "overrides[0].dimensions.u"],
        "{errors:?}"
    );
}
