use crate::Error;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::mixer::{QuotaAttributes, Workload};
use crate::quota::import::tests::assert_all_compile;
use crate::quota::import::{import_istio};
use crate::quota::{Algorithm, QuotaOverrideSpec, QuotaPolicySpec};

mod bindings;
mod fixtures;

pub(in crate::quota::import) use fixtures::BOOKINFO_MEMQUOTA;
use fixtures::{BOOKINFO_OLD_KINDS, BOOKINFO_REDIS_ROLLING};

fn call(source: &str, version: &str, destination: &str) -> QuotaAttributes {
    QuotaAttributes {
        source: Some(Workload {
            app: source.into(),
            version: version.into(),
            ..Default::default()
        }),
        destination: Some(Workload {
            app: destination.into(),
            version: "v1".into(),
            ..Default::default()
        }),
        destination_service_name: destination.into(),
        ..Default::default()
    }
}

fn dims(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn only(yaml: &str) -> QuotaPolicySpec {
    let specs = import_istio(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_all_compile(&specs);
    assert_eq!(specs.len(), 1, "{specs:#?}");
    specs.into_iter().next().unwrap()
}

/// The four policies of the Bookinfo sample (one per bound service, ratings first);
/// the one for ratings.
fn ratings(yaml: &str) -> QuotaPolicySpec {
    let specs = import_istio(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_all_compile(&specs);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, BOOKINFO_NAMES, "{specs:#?}");
    specs.into_iter().next().unwrap()
}

/// Policy names of the Bookinfo sample: its binding names four services.
const BOOKINFO_NAMES: [&str; 4] = [
    "requestcountquota.ratings",
    "requestcountquota.reviews",
    "requestcountquota.details",
    "requestcountquota.productpage",
];

/// [`call`] to a destination in `namespace`.
fn call_in(source: &str, version: &str, destination: &str, namespace: &str) -> QuotaAttributes {
    let mut attrs = call(source, version, destination);
    if let Some(d) = attrs.destination.as_mut() {
        d.namespace = namespace.into();
    }
    attrs
}

fn error(yaml: &str) -> Error {
    import_istio(yaml).expect_err("should be refused")
}

#[test]
fn bookinfo_memquota_sample_is_one_policy_per_bound_service_counted_as_mixer_did() {
    let specs = import_istio(BOOKINFO_MEMQUOTA).unwrap();
    assert_all_compile(&specs);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, BOOKINFO_NAMES);
    for (spec, service) in specs
        .iter()
        .zip(["ratings", "reviews", "details", "productpage"])
    {
        // The binding is in istio-system and its services name no namespace.
        assert_eq!(spec.matches.destination.service, service);
        assert_eq!(spec.matches.destination.namespace, "istio-system");
        assert_eq!(
            (&spec.dimensions, &spec.overrides, spec.max_amount),
            (&specs[0].dimensions, &specs[0].overrides, 5000)
        );
        assert!(
            spec.description.contains(&format!(
                "binds it to ratings.istio-system, reviews.istio-system, details.istio-system, \
                 productpage.istio-system: this policy is the one for {service}.istio-system"
            )),
            "{}",
            spec.description
        );
        // `destination` is fixed by each match: no two services shared a counter in
        // Mixer either.
        assert!(
            spec.description
                .contains("counted as in Mixer: its counters were keyed by the instance's dimensions, and dimension destination differs"),
            "{}",
            spec.description
        );
    }
    let spec = &specs[0];
    assert_eq!(
        spec.dimensions,
        dims(&[
            // The app label first, as Mixer read it, then the service's name.
            (
                "destination",
                r#"destination.labels["app"] | destination.service | "unknown""#,
            ),
            ("destinationVersion", r#"destination.version | "unknown""#),
            ("source", r#"source.service | "unknown""#),
            ("sourceVersion", r#"source.version | "unknown""#),
        ])
    );
    assert_eq!(
        (spec.max_amount, spec.valid_duration.as_str()),
        (5000, "1s")
    );
    assert_eq!(
        spec.algorithm.as_deref(),
        Some("rolling-window"),
        "memquota is a rolling window"
    );
    assert_eq!(
        spec.bucket_duration.as_deref(),
        Some("100ms"),
        "of 100 ms ticks"
    );
    assert_eq!(
        spec.overrides,
        vec![
            QuotaOverrideSpec {
                dimensions: dims(&[("destination", "ratings"), ("source", "reviews")]),
                max_amount: 1,
                valid_duration: None,
            },
            QuotaOverrideSpec {
                dimensions: dims(&[("destination", "ratings")]),
                max_amount: 100,
                valid_duration: None,
            },
        ]
    );
    assert!(
        spec.description.starts_with(
            "imported from Istio memquota handler quotahandler.istio-system (spec.params.quotas[0]), \
             instance requestcountquota.istio-system, rule quota.istio-system"
        ),
        "{}",
        spec.description
    );

    let policies: Vec<_> = specs.iter().map(|s| s.compile().unwrap()).collect();
    let policy = &policies[0];
    let r = policy.resolve(&call_in("reviews", "v2", "ratings", "istio-system"));
    assert_eq!((r.limit.max_amount, r.override_index), (1, Some(0)));
    assert_eq!(r.limit.valid_duration, Duration::from_secs(1));
    assert_eq!(
        r.key,
        "requestcountquota.ratings;destination=ratings;destinationVersion=v1;source=reviews;sourceVersion=v2"
    );
    let r = policy.resolve(&call_in("productpage", "v1", "ratings", "istio-system"));
    assert_eq!((r.limit.max_amount, r.override_index), (100, Some(1)));
    let r = policies[2].resolve(&call_in("productpage", "v1", "details", "istio-system"));
    assert_eq!((r.limit.max_amount, r.override_index), (5000, None));

    // Each bound service is charged by its own policy only; a service the binding does
    // not name (or one of the same name in another namespace) by none.
    let matching = |attrs: &QuotaAttributes| -> Vec<&str> {
        policies
            .iter()
            .filter(|p| p.matches(attrs))
            .map(|p| p.name())
            .collect()
    };
    assert_eq!(
        matching(&call_in("productpage", "v1", "details", "istio-system")),
        ["requestcountquota.details"]
    );
    assert!(matching(&call_in("reviews", "v1", "mongodb", "istio-system")).is_empty());
    assert!(matching(&call_in("reviews", "v1", "ratings", "default")).is_empty());
}

#[test]
fn bookinfo_redis_rolling_window_sample_keeps_algorithm_buckets_and_rule_match() {
    // The rule selects ratings; of the four bound services only ratings.default is
    // charged, so one policy, for it.
    let spec = only(BOOKINFO_REDIS_ROLLING);
    assert_eq!(spec.name, "requestcountquota");
    assert_eq!(
        (spec.max_amount, spec.valid_duration.as_str()),
        (5000, "30s")
    );
    assert_eq!(spec.algorithm.as_deref(), Some("rolling-window"));
    assert_eq!(spec.bucket_duration.as_deref(), Some("9s"));
    let amounts: Vec<(u64, Option<String>)> = spec
        .overrides
        .iter()
        .map(|o| (o.max_amount, o.valid_duration.clone()))
        .collect();
    assert_eq!(amounts, vec![(50, None), (100, None)]);
    assert_eq!(spec.matches.destination.service, "ratings");
    assert_eq!(spec.matches.destination.namespace, "default");
    assert!(
        spec.description
            .contains("redisquota handler redishandler.istio-system"),
        "{}",
        spec.description
    );
    assert!(
        spec.description.contains(
            "binds it to service ratings.default only; not charged on reviews.default, \
             details.default, productpage.default (rule quota.istio-system selects other \
             destinations)"
        ),
        "{}",
        spec.description
    );

    let policy = spec.compile().unwrap();
    assert_eq!(
        policy.limit.algorithm,
        Algorithm::RollingWindow {
            bucket: Duration::from_secs(9)
        }
    );
    assert!(policy.matches(&call_in("reviews", "v2", "ratings", "default")));
    assert!(!policy.matches(&call_in("reviews", "v2", "ratings", "bookinfo")));
    assert!(!policy.matches(&call_in("reviews", "v2", "details", "default")));
    let r = policy.resolve(&call_in("reviews", "v2", "ratings", "default"));
    assert_eq!(
        (r.limit.max_amount, r.limit.valid_duration),
        (50, Duration::from_secs(30))
    );
}

#[test]
fn redis_fixed_window_ignores_bucket_duration() {
    let spec = only(&BOOKINFO_REDIS_ROLLING.replace("ROLLING_WINDOW", "FIXED_WINDOW"));
    assert_eq!(spec.algorithm.as_deref(), Some("fixed-window"));
    assert_eq!(spec.bucket_duration, None);
    let spec =
        only(&BOOKINFO_REDIS_ROLLING.replace("      rateLimitAlgorithm: ROLLING_WINDOW\n", ""));
    assert_eq!(
        spec.algorithm.as_deref(),
        Some("fixed-window"),
        "FIXED_WINDOW is the default"
    );
}

#[test]
fn old_crd_kinds_and_kind_qualified_references_import_the_same() {
    let spec = only(BOOKINFO_OLD_KINDS);
    assert_eq!(spec.name, "requestcount");
    assert_eq!(spec.dimensions["source"], r#"source.service | "unknown""#);
    assert_eq!(spec.max_amount, 5000);
    assert_eq!(spec.overrides.len(), 2);
    assert!(
        spec.description
            .contains("memquota handler handler.istio-system"),
        "{}",
        spec.description
    );
}

#[test]
fn productpage_sample_keys_on_a_header_and_restricts_to_its_one_bound_service() {
    let yaml = BOOKINFO_MEMQUOTA
        .replace(
            r#"source: source.labels["app"] | "unknown""#,
            r#"source: request.headers["x-forwarded-for"] | "unknown""#,
        )
        .replace("      sourceVersion: source.labels[\"version\"] | \"unknown\"\n", "")
        .replace("        validDuration: 1s\n      # The following override applies to 'ratings' regardless", "        validDuration: 5s\n      # x")
        .replace(
            "  - name: ratings\n  - name: reviews\n  - name: details\n  - name: productpage\n",
            "  - name: productpage\n    namespace: default\n",
        );
    let spec = only(&yaml);
    assert_eq!(
        spec.dimensions["source"],
        r#"request.headers["x-forwarded-for"] | "unknown""#
    );
    assert_eq!(spec.overrides[0].valid_duration.as_deref(), Some("5s"));
    assert_eq!(spec.overrides[1].valid_duration, None);
    assert_eq!(spec.matches.destination.service, "productpage");
    assert_eq!(spec.matches.destination.namespace, "default");
    assert!(
        spec.description
            .contains("binds it to service productpage.default only"),
        "{}",
        spec.description
    );
    let policy = spec.compile().unwrap();
    assert_eq!(
        policy.header_names().collect::<Vec<_>>(),
        vec!["x-forwarded-for"]
    );
}

#[test]
fn a_bound_service_without_namespace_is_in_the_bindings_namespace() {
    // The binding is in istio-system and its one service names no namespace: Istio
    // reads it as ratings.istio-system, and so must the match.
    let yaml = BOOKINFO_MEMQUOTA.replace(
        "  - name: ratings\n  - name: reviews\n  - name: details\n  - name: productpage\n",
        "  - name: ratings\n",
    );
    let spec = only(&yaml);
    assert_eq!(spec.matches.destination.service, "ratings");
    assert_eq!(spec.matches.destination.namespace, "istio-system");
    assert!(
        spec.description
            .contains("binds it to service ratings.istio-system only"),
        "{}",
        spec.description
    );
    let policy = spec.compile().unwrap();
    let mut ratings_in_default = call("reviews", "v2", "ratings");
    ratings_in_default.destination.as_mut().unwrap().namespace = "default".into();
    assert!(!policy.matches(&ratings_in_default));
    ratings_in_default.destination.as_mut().unwrap().namespace = "istio-system".into();
    assert!(policy.matches(&ratings_in_default));
}

#[test]
fn a_memquota_override_asking_for_an_absent_dimension_to_be_empty_always_holds() {
    // memquota reads a dimension the instance lacks as "" (spec §3.3).
    let extra = BOOKINFO_MEMQUOTA.replace(
        "          destination: ratings\n          source: reviews\n",
        "          destination: ratings\n          source: reviews\n          tenant: \"\"\n",
    );
    let spec = ratings(&extra);
    assert_eq!(
        spec.overrides[0].dimensions,
        dims(&[("destination", "ratings"), ("source", "reviews")])
    );
    assert!(
        spec.description
            .contains("overrides[0].dimensions.tenant: \"\" always holds"),
        "{}",
        spec.description
    );
    // An override on such dimensions only applies to every request the overrides before
    // it did not take: its limit is the default, the overrides after it never apply.
    let everything = BOOKINFO_MEMQUOTA.replace(
        "      - dimensions:\n          destination: ratings\n        maxAmount: 100\n",
        "      - dimensions:\n          tenant: \"\"\n        maxAmount: 100\n",
    );
    assert_ne!(everything, BOOKINFO_MEMQUOTA, "the fixture changed");
    let spec = ratings(&everything);
    assert_eq!(
        (spec.max_amount, spec.overrides.len()),
        (100, 1),
        "{spec:#?}"
    );
    assert!(
        spec.description.contains("overrides[1] always applies"),
        "{}",
        spec.description
    );
    let policy = spec.compile().unwrap();
    assert_eq!(
        policy
            .resolve(&call("reviews", "v2", "ratings"))
            .limit
            .max_amount,
        1
    );
    assert_eq!(
        policy
            .resolve(&call("productpage", "v1", "details"))
            .limit
            .max_amount,
        100
    );
    // redisquota wants the dimension present: that override never applies.
    let redis = BOOKINFO_REDIS_ROLLING.replace(
        "          source: reviews\n",
        "          source: reviews\n          tenant: \"\"\n",
    );
    assert_ne!(redis, BOOKINFO_REDIS_ROLLING, "the fixture changed");
    let err = error(&redis).to_string();
    assert!(
        err.contains("redisquota needs the dimension present"),
        "{err}"
    );
}

#[test]
fn unrelated_documents_are_ignored() {
    let extra = r#"
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: ratings}
spec: {hosts: [ratings]}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prom, namespace: istio-system}
spec: {compiledAdapter: prometheus, params: {metrics: []}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcount, namespace: istio-system}
spec: {compiledTemplate: metric, params: {value: "1"}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: promhttp, namespace: istio-system}
spec:
  match: context.protocol == "http" || context.protocol == "grpc"
  actions: [{handler: prom, instances: [requestcount]}]
"#;
    let spec = ratings(&format!("{BOOKINFO_MEMQUOTA}{extra}"));
    assert_eq!(spec.name, "requestcountquota.ratings");
}

#[test]
fn an_instance_bound_by_two_rules_gives_two_policies() {
    let second_rule = r#"---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota-get, namespace: istio-system}
spec:
  match: request.method == "GET" && source.labels["app"] == "productpage"
  actions: [{handler: quotahandler.istio-system, instances: [requestcountquota.instance.istio-system]}]
"#;
    let specs = import_istio(&format!("{BOOKINFO_MEMQUOTA}{second_rule}")).unwrap();
    assert_all_compile(&specs);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut expected: Vec<String> = BOOKINFO_NAMES.iter().map(|n| n.to_string()).collect();
    expected.extend(BOOKINFO_NAMES.iter().map(|n| format!("{n}-2")));
    assert_eq!(names, expected);
    assert_eq!(specs[4].matches.method, "GET");
    assert_eq!(specs[4].matches.source.service, "productpage");
    assert_eq!(specs[4].matches.destination.service, "ratings");
    assert!(specs[4].description.contains("rule quota-get.istio-system"));
}

#[test]
fn quota_spec_attribute_matches_narrow_the_policy() {
    let yaml = BOOKINFO_MEMQUOTA.replace(
        "  - quotas:\n    - charge: 1\n",
        "  - match:\n    - clause:\n        request.path: {prefix: /api}\n        request.method: {exact: POST}\n    quotas:\n    - charge: 1\n",
    );
    let spec = ratings(&yaml);
    assert_eq!(spec.matches.path_prefix, "/api");
    assert_eq!(spec.matches.method, "POST");

    let yaml = BOOKINFO_MEMQUOTA.replace(
        "  - quotas:\n    - charge: 1\n",
        "  - match:\n    - clause:\n        request.path: {regex: /api/.*}\n    quotas:\n    - charge: 1\n",
    );
    let err = error(&yaml).to_string();
    assert!(err.contains("document 4 (QuotaSpec request-count.istio-system), spec.rules[0].match[0].clause.request.path"), "{err}");
    assert!(err.contains("regex"), "{err}");
}

#[test]
fn refusals_name_the_document_field_and_expression() {
    let mut cases: Vec<(String, &str, &str)> = vec![
        (
            BOOKINFO_MEMQUOTA.replace(
                r#"source.labels["version"] | "unknown""#,
                r#"source.labels["tier"] | "unknown""#,
            ),
            "document 2 (instance requestcountquota.istio-system), spec.params.dimensions.sourceVersion",
            r#"cannot import `source.labels["tier"] | "unknown"`"#,
        ),
        (
            BOOKINFO_REDIS_ROLLING.replace(
                r#"match: (destination.labels["app"]|"unknown") == "ratings""#,
                r#"match: destination.labels["app"] == "ratings" || request.method == "GET""#,
            ),
            "document 5 (rule quota.istio-system), spec.match",
            "disjunction",
        ),
        (
            BOOKINFO_MEMQUOTA.replace("charge: 1", "charge: 2"),
            "document 4 (QuotaSpec request-count.istio-system), spec.rules[0].quotas[0].charge",
            "divide maxAmount",
        ),
        (
            BOOKINFO_MEMQUOTA.replacen(
                "        maxAmount: 1\n        validDuration: 1s\n",
                "        maxAmount: 1\n",
                1,
            ),
            "document 1 (handler quotahandler.istio-system), spec.params.quotas[0].overrides[0].validDuration",
            "allocation quota",
        ),
        (
            BOOKINFO_MEMQUOTA.replace(
                "      validDuration: 1s\n      # The first",
                "      validDuration: 0s\n      # The first",
            ),
            "spec.params.quotas[0].validDuration",
            "allocation quota",
        ),
        (
            BOOKINFO_MEMQUOTA.replace(
                "requestcountquota.instance.istio-system",
                "other.instance.istio-system",
            ),
            "document 1 (handler quotahandler.istio-system), spec.params.quotas",
            "has no entry named requestcountquota.instance.istio-system",
        ),
        (
            BOOKINFO_MEMQUOTA.replace("maxAmount: 5000", "maxAmount: 5000\n      maxAmmount: 1"),
            "document 1 (handler quotahandler.istio-system), spec.params.quotas[0]",
            "unknown field `maxAmmount`",
        ),
        (
            BOOKINFO_MEMQUOTA.replace("maxAmount: 100", "maxAmount: 0"),
            "spec.params.quotas[0].overrides[1].maxAmount",
            "greater than zero",
        ),
        (
            BOOKINFO_MEMQUOTA.replace("          source: reviews", "          sauce: reviews"),
            "spec.params.quotas[0].overrides[0].dimensions.sauce",
            "never applies",
        ),
        (
            BOOKINFO_MEMQUOTA.replace("    - requestcountquota\n", "    - missing\n"),
            "document 3 (rule quota.istio-system), spec.actions[0].instances[0]",
            "not a quota instance",
        ),
        (
            BOOKINFO_MEMQUOTA.replace("  - handler: quotahandler\n", "  - handler: prom\n"),
            "spec.actions[0].handler",
            "not a memquota or redisquota handler",
        ),
        (
            BOOKINFO_REDIS_ROLLING.replace("bucketDuration: 9s", "bucketDuration: 30s"),
            "spec.params.quotas[0].bucketDuration",
            "shorter than validDuration",
        ),
        (
            BOOKINFO_REDIS_ROLLING.replace("ROLLING_WINDOW", "SLIDING"),
            "spec.params.quotas[0].rateLimitAlgorithm",
            "FIXED_WINDOW or ROLLING_WINDOW",
        ),
        (
            BOOKINFO_REDIS_ROLLING.replace(
                "        maxAmount: 50\n",
                "        maxAmount: 50\n        validDuration: 1s\n",
            ),
            "spec.params.quotas[0].overrides[0]",
            "unknown field `validDuration`",
        ),
        (
            BOOKINFO_MEMQUOTA.replacen(
                "apiVersion: \"config.istio.io/v1alpha2\"\nkind: instance",
                "kind: instance",
                1,
            ),
            "document 2 (instance), apiVersion",
            "is required",
        ),
    ];
    let twice = format!(
        "{BOOKINFO_MEMQUOTA}---\napiVersion: config.istio.io/v1alpha2\nkind: instance\n\
         metadata: {{name: requestcountquota, namespace: istio-system}}\n\
         spec: {{compiledTemplate: quota, params: {{dimensions: {{}}}}}}\n"
    );
    cases.push((
        twice,
        "document 6 (instance requestcountquota.istio-system)",
        "is also defined by document 2 (instance requestcountquota.istio-system)",
    ));
    for (yaml, location, message) in cases {
        let err = error(&yaml).to_string();
        assert!(err.contains(location), "expected {location:?} in: {err}");
        assert!(err.contains(message), "expected {message:?} in: {err}");
    }
}

#[test]
fn input_without_a_bound_quota_is_refused() {
    let err = error("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    assert!(matches!(err, Error::NothingToImport(_)), "{err}");
    assert!(
        err.to_string().contains("1 document(s) of other kinds"),
        "{err}"
    );
    let without_rule = BOOKINFO_MEMQUOTA.replace("kind: rule", "kind: other");
    let err = error(&without_rule);
    assert!(
        err.to_string()
            .contains("found 1 memquota/redisquota handler(s), 1 quota instance(s)"),
        "{err}"
    );
}

#[test]
fn kubernetes_lists_are_read_item_by_item() {
    let mut items = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for doc in BOOKINFO_MEMQUOTA.split("\n---\n") {
        let value: yaml_serde::Value = yaml_serde::from_str(doc).unwrap();
        let json = serde_json::to_string(&value).unwrap();
        items.push_str(&format!("- {json}\n"));
    }
    ratings(&items);
}

#[test]
fn memquota_windows_round_up_to_whole_seconds() {
    let yaml = BOOKINFO_MEMQUOTA
        .replacen("      validDuration: 1s\n", "      validDuration: 1m\n", 1)
        .replacen(
            "        maxAmount: 1\n        validDuration: 1s\n",
            "        maxAmount: 1\n        validDuration: 1500ms\n",
            1,
        );
    let spec = ratings(&yaml);
    assert_eq!(
        spec.valid_duration, "1m",
        "whole seconds are kept as written"
    );
    assert_eq!(spec.overrides[0].valid_duration.as_deref(), Some("2s"));
    assert_eq!(spec.overrides[1].valid_duration.as_deref(), Some("1s"));
    assert!(
        spec.description
            .contains("spec.params.quotas[0].overrides[0].validDuration 1500ms rounded up to 2s"),
        "{}",
        spec.description
    );
}

#[test]
fn memquota_ticks_lengthen_for_windows_beyond_100000_of_them() {
    // A 24 h override: 100 ms ticks would make 864,000 buckets per key.
    let yaml = BOOKINFO_MEMQUOTA.replacen(
        "        maxAmount: 1\n        validDuration: 1s\n",
        "        maxAmount: 1\n        validDuration: 24h\n",
        1,
    );
    let spec = ratings(&yaml); // compiles
    assert_eq!(spec.bucket_duration.as_deref(), Some("864ms"));
    assert!(
        spec.description.contains("buckets of 864ms"),
        "{}",
        spec.description
    );
    assert_eq!(
        ratings(BOOKINFO_MEMQUOTA).bucket_duration.as_deref(),
        Some("100ms")
    );
    // One bucket length cannot serve a 1 s window and a 28 h one (1,008 ms buckets).
    let apart = BOOKINFO_MEMQUOTA.replacen(
        "        maxAmount: 1\n        validDuration: 1s\n",
        "        maxAmount: 1\n        validDuration: 28h\n",
        1,
    );
    let message = error(&apart).to_string();
    assert!(message.contains("one bucket length"), "{message}");
}

#[test]
fn a_bound_handler_without_params_has_no_limit() {
    let yaml = BOOKINFO_MEMQUOTA.replace(
        &BOOKINFO_MEMQUOTA[BOOKINFO_MEMQUOTA.find("  params:").unwrap()
            ..BOOKINFO_MEMQUOTA.find("\n---").unwrap()],
        "",
    );
    let err = error(&yaml).to_string();
    assert!(
        err.contains(
            "spec.params.quotas: has no entry named requestcountquota.instance.istio-system"
        ),
        "{err}"
    );
}
