//! Fixtures are the examples of the envoyproxy/ratelimit README (spec §4.3).

use crate::Error;
use crate::quota::import::tests::assert_all_compile;
use crate::quota::import::{import_envoy_ratelimit};
use crate::quota::{DescriptorEntrySpec, QuotaPolicySpec};

fn import(yaml: &str) -> Vec<QuotaPolicySpec> {
    let specs = import_envoy_ratelimit(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_all_compile(&specs);
    specs
}

fn error(yaml: &str) -> String {
    import_envoy_ratelimit(yaml)
        .expect_err("should be refused")
        .to_string()
}

fn entry(key: &str, value: Option<&str>) -> DescriptorEntrySpec {
    DescriptorEntrySpec {
        key: key.into(),
        value: value.map(str::to_string),
        share_threshold: false,
    }
}

/// (name, entries, maxAmount, validDuration) of each policy.
fn summary(specs: &[QuotaPolicySpec]) -> Vec<(&str, Vec<DescriptorEntrySpec>, u64, &str)> {
    specs
        .iter()
        .map(|s| {
            let rl = s.rate_limit.as_ref().unwrap();
            (
                s.name.as_str(),
                rl.descriptors.clone(),
                s.max_amount,
                s.valid_duration.as_str(),
            )
        })
        .collect()
}

#[test]
fn example_1_two_values_of_one_key() {
    let specs = import(
        r#"
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500

  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
"#,
    );
    assert_eq!(
        summary(&specs),
        vec![
            (
                "mongo_cps.database_users",
                vec![entry("database", Some("users"))],
                500,
                "1s"
            ),
            (
                "mongo_cps.database_default",
                vec![entry("database", Some("default"))],
                500,
                "1s"
            ),
        ]
    );
    let s = &specs[0];
    assert_eq!(s.algorithm.as_deref(), Some("fixed-window"));
    assert!(!s.shadow && !s.unlimited);
    assert_eq!(s.rate_limit.as_ref().unwrap().domain, "mongo_cps");
    assert!(s.rate_limit.as_ref().unwrap().replaces.is_empty());
    assert_eq!(
        s.description,
        "imported from envoyproxy/ratelimit domain mongo_cps, descriptors[0] (mongo_cps.database_users)"
    );
}

#[test]
fn example_2_nested_descriptors_key_the_counter_by_the_value_less_entry() {
    let specs = import(
        r#"
domain: messaging
descriptors:
  # Only allow 5 marketing messages a day
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5

  # Only allow 100 messages a day to any unique phone number
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 100
"#,
    );
    assert_eq!(
        summary(&specs),
        vec![
            (
                "messaging.message_type_marketing.to_number",
                vec![
                    entry("message_type", Some("marketing")),
                    entry("to_number", None)
                ],
                5,
                "24h"
            ),
            (
                "messaging.to_number",
                vec![entry("to_number", None)],
                100,
                "24h"
            ),
        ]
    );
    let policy = specs[0].compile().unwrap();
    let dims: Vec<&str> = policy.dimensions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(dims, ["to_number"]);
    assert!(
        specs[0]
            .description
            .contains("descriptors[0].descriptors[0]")
    );
}

#[test]
fn example_3_a_zero_limit_blacklist_denies_everything() {
    let specs = import(
        r#"
domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit:
      unit: second
      requests_per_unit: 10

  # Black list IP
  - key: remote_address
    value: 50.0.0.5
    rate_limit:
      unit: second
      requests_per_unit: 0
"#,
    );
    assert_eq!(
        summary(&specs),
        vec![
            (
                "edge_proxy_per_ip.remote_address",
                vec![entry("remote_address", None)],
                10,
                "1s"
            ),
            (
                "edge_proxy_per_ip.remote_address_50.0.0.5",
                vec![entry("remote_address", Some("50.0.0.5"))],
                0,
                "1s"
            ),
        ]
    );
    assert!(!specs[1].unlimited);
    assert!(
        specs[1]
            .description
            .contains("requests_per_unit 0: every request is over the limit"),
        "{}",
        specs[1].description
    );
}

#[test]
fn example_4_limits_sit_at_their_own_depth() {
    let one_level = import(
        "domain: example4\ndescriptors:\n  - key: key\n    value: value\n    rate_limit:\n      requests_per_unit: 300\n      unit: second\n",
    );
    assert_eq!(
        one_level[0].rate_limit.as_ref().unwrap().descriptors,
        vec![entry("key", Some("value"))]
    );
    let two_levels = import(
        r#"
domain: example4
descriptors:
  - key: key
    value: value
    descriptors:
      - key: subkey
        rate_limit:
          requests_per_unit: 300
          unit: second
"#,
    );
    assert_eq!(
        summary(&two_levels),
        vec![(
            "example4.key_value.subkey",
            vec![entry("key", Some("value")), entry("subkey", None)],
            300,
            "1s"
        )]
    );
}

#[test]
fn example_5_unlimited() {
    let specs = import(
        r#"
domain: internal
descriptors:
  - key: ldap
    rate_limit:
      unlimited: true

  - key: azure
    rate_limit:
      unit: minute
      requests_per_unit: 100
"#,
    );
    assert_eq!(specs[0].name, "internal.ldap");
    assert!(specs[0].unlimited);
    assert_eq!(
        (specs[0].max_amount, specs[0].valid_duration.as_str()),
        (0, "")
    );
    assert_eq!(
        summary(&specs)[1],
        ("internal.azure", vec![entry("azure", None)], 100, "1m")
    );
}

#[test]
fn example_6_shadow_mode() {
    let specs = import(
        r#"
domain: example6
descriptors:
  - key: service
    descriptors:
      - key: user
        value: user-a
        rate_limit:
          requests_per_unit: 10
          unit: second
        shadow_mode: true
      - key: user
        value: user-b
        rate_limit:
          requests_per_unit: 20
          unit: second
"#,
    );
    assert_eq!(
        summary(&specs),
        vec![
            (
                "example6.service.user_user-a",
                vec![entry("service", None), entry("user", Some("user-a"))],
                10,
                "1s"
            ),
            (
                "example6.service.user_user-b",
                vec![entry("service", None), entry("user", Some("user-b"))],
                20,
                "1s"
            ),
        ]
    );
    assert!(specs[0].shadow);
    assert!(!specs[1].shadow);
}

#[test]
fn example_7_replaces_points_at_the_named_limit() {
    let specs = import(
        r#"
domain: example7
descriptors:
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          name: specific_limit
          requests_per_unit: 5
          unit: second
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          replaces:
            - name: specific_limit
          requests_per_unit: 10
          unit: second
"#,
    );
    assert_eq!(specs[0].name, "specific_limit");
    assert_eq!(specs[1].name, "example7.key_2_value_2.user_bkthomps");
    assert_eq!(
        specs[1].rate_limit.as_ref().unwrap().replaces,
        vec!["specific_limit".to_string()]
    );
    assert_eq!(
        specs[1].rate_limit.as_ref().unwrap().descriptors,
        vec![
            entry("key_2", Some("value_2")),
            entry("user", Some("bkthomps"))
        ]
    );
}

#[test]
fn examples_8_and_9_detailed_metric_and_wildcards() {
    let specs = import(
        r#"
domain: example8
descriptors:
  - key: key1
    detailed_metric: true
    rate_limit:
      unit: minute
      requests_per_unit: 10
  - key: key1
    value: value1
    rate_limit:
      unit: minute
      requests_per_unit: 20
"#,
    );
    assert_eq!(specs.len(), 2);
    let specs = import(
        r#"
domain: example9
descriptors:
  - key: key1
    value: value*
    rate_limit:
      unit: minute
      requests_per_unit: 20
  - key: path
    value: "/foo*"
    share_threshold: true
    rate_limit: {unit: Hour, requests_per_unit: 3}
"#,
    );
    assert_eq!(specs[0].name, "example9.key1_value_");
    assert_eq!(
        specs[0].rate_limit.as_ref().unwrap().descriptors,
        vec![entry("key1", Some("value*"))]
    );
    // Each value has its own counter in envoyproxy/ratelimit as in meshtel: no note.
    assert!(
        !specs[0].description.contains("share_threshold"),
        "{}",
        specs[0].description
    );
    // share_threshold: every value the wildcard matches shares one counter.
    let shared = DescriptorEntrySpec {
        share_threshold: true,
        ..entry("path", Some("/foo*"))
    };
    assert_eq!(
        specs[1].rate_limit.as_ref().unwrap().descriptors,
        vec![shared]
    );
    assert_eq!(specs[1].valid_duration, "1h");
    assert!(!specs[1].description.contains("share_threshold"));
}

#[test]
fn share_threshold_without_a_wildcard_is_noted_not_kept() {
    let specs = import(
        "domain: d\ndescriptors:\n  - key: path\n    value: /foo\n    share_threshold: true\n    rate_limit: {unit: hour, requests_per_unit: 3}\n",
    );
    assert_eq!(
        specs[0].rate_limit.as_ref().unwrap().descriptors,
        vec![entry("path", Some("/foo"))]
    );
    assert!(
        specs[0]
            .description
            .contains("share_threshold has no effect"),
        "{}",
        specs[0].description
    );
}

#[test]
fn quota_mode_is_refused() {
    let err = import_envoy_ratelimit(
        "domain: qm\ndescriptors:\n  - key: user\n    quota_mode: true\n    rate_limit: {unit: minute, requests_per_unit: 1}\n",
    )
    .unwrap_err();
    assert!(matches!(err, Error::ImportUnsupported { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.starts_with("descriptors[0] (qm.user), quota_mode"),
        "{err}"
    );
    assert!(err.contains("Remove quota_mode"), "{err}");
    // quota_mode: false is what envoyproxy/ratelimit does by default.
    import(
        "domain: qm\ndescriptors:\n  - key: user\n    quota_mode: false\n    rate_limit: {unit: minute, requests_per_unit: 1}\n",
    );
}

#[test]
fn unquoted_scalars_keep_the_text_as_written() {
    let specs = import(
        r#"
domain: scal
descriptors:
  - key: api_version
    value: 1.10
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: area_code
    value: 0123
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: hexish
    value: 0x1F
    rate_limit: {unit: minute, requests_per_unit: 1, name: 1.50}
  - key: big
    value: 1e3
    rate_limit: {unit: minute, requests_per_unit: 1, replaces: [{name: 1.50}]}
  - key: flag
    value: yes
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: 2.0
    value: True
    descriptors:
      - key: 0o17
        value: "1.10"
        rate_limit: {unit: minute, requests_per_unit: 1}
"#,
    );
    let values: Vec<Vec<(&str, Option<&str>)>> = specs
        .iter()
        .map(|s| {
            s.rate_limit
                .as_ref()
                .unwrap()
                .descriptors
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_deref()))
                .collect()
        })
        .collect();
    assert_eq!(
        values,
        vec![
            vec![("api_version", Some("1.10"))],
            vec![("area_code", Some("0123"))],
            vec![("hexish", Some("0x1F"))],
            vec![("big", Some("1e3"))],
            vec![("flag", Some("yes"))],
            vec![("2.0", Some("True")), ("0o17", Some("1.10"))],
        ]
    );
    assert_eq!(specs[0].name, "scal.api_version_1.10");
    assert_eq!(specs[2].name, "1.50");
    assert_eq!(
        specs[2].rate_limit.as_ref().unwrap().name.as_deref(),
        Some("1.50")
    );
    assert_eq!(specs[3].rate_limit.as_ref().unwrap().replaces, ["1.50"]);
    assert_eq!(specs[5].name, "scal.2.0_true.0o17_1.10");
}

#[test]
fn the_limit_name_is_kept_as_written_and_derived_names_report_none() {
    let specs = import(
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {name: Per Caller, unit: second, requests_per_unit: 1}\n  - key: b\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    let rl = |i: usize| specs[i].rate_limit.as_ref().unwrap();
    assert_eq!(specs[0].name, "per_caller");
    assert_eq!(rl(0).name.as_deref(), Some("Per Caller"));
    assert_eq!(rl(0).reported_name(&specs[0].name), "Per Caller");
    assert_eq!(specs[1].name, "d.b");
    assert_eq!(rl(1).reported_name(&specs[1].name), "");
}

#[test]
fn every_unit_case_insensitively() {
    for (unit, window) in [
        ("second", "1s"),
        ("MINUTE", "1m"),
        ("Hour", "1h"),
        ("day", "24h"),
        ("week", "168h"),
        ("month", "720h"),
        ("YEAR", "8760h"),
    ] {
        let specs = import(&format!(
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {{unit: {unit}, requests_per_unit: 7}}\n"
        ));
        assert_eq!(specs[0].valid_duration, window, "{unit}");
        specs[0].compile().unwrap();
    }
}

#[test]
fn names_collide_only_to_be_disambiguated() {
    let specs = import(
        r#"
domain: d
descriptors:
  - key: user
    value: Alice
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: user
    value: alice
    rate_limit: {unit: second, requests_per_unit: 2}
  - key: other
    rate_limit: {name: d.user_alice-2, unit: second, requests_per_unit: 3}
"#,
    );
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["d.user_alice", "d.user_alice-3", "d.user_alice-2"]);
}

#[test]
fn whitelisted_descriptors_become_unlimited_policies() {
    let specs = import(
        r#"
domain: d
descriptors:
  - key: internal
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: remote_address
    value: 10.0.0.1
  - key: api
    descriptors:
      - key: ok
      - key: user
        rate_limit: {unit: second, requests_per_unit: 4}
"#,
    );
    let shape: Vec<(&str, Vec<DescriptorEntrySpec>, bool)> = specs
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.rate_limit.as_ref().unwrap().descriptors.clone(),
                s.unlimited,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("d.internal", vec![entry("internal", None)], true),
            (
                "d.remote_address",
                vec![entry("remote_address", None)],
                false
            ),
            (
                "d.remote_address_10.0.0.1",
                vec![entry("remote_address", Some("10.0.0.1"))],
                true
            ),
            // `api` has children: a node of the tree, not a policy of its own.
            (
                "d.api.ok",
                vec![entry("api", None), entry("ok", None)],
                true
            ),
            (
                "d.api.user",
                vec![entry("api", None), entry("user", None)],
                false
            ),
        ]
    );
    assert!(
        specs[2]
            .description
            .contains("whitelisted in the imported file"),
        "{}",
        specs[2].description
    );
    // A file of whitelisted descriptors only imports them.
    let only = import("domain: d\ndescriptors:\n  - key: internal\n");
    assert!(only[0].unlimited);
    let err = import_envoy_ratelimit("domain: d\ndescriptors: []\n").unwrap_err();
    assert!(matches!(err, Error::NothingToImport(_)), "{err}");
}

mod refusals;
