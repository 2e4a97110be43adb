use super::cexl::{MatchBuilder, translate_match};
use super::*;
use crate::Error;
use crate::quota::{QuotaMatch, WorkloadMatch};

/// Compiles every spec (the importers' contract), failing the test with the errors.
pub(super) fn assert_all_compile(specs: &[QuotaPolicySpec]) {
    for spec in specs {
        if let Err(errors) = spec.compile() {
            panic!("{} does not compile: {errors:?}", spec.name);
        }
    }
}

fn translated(expr: &str) -> Result<QuotaMatch, String> {
    let mut m = MatchBuilder::default();
    translate_match(expr, &mut m).map_err(|u| format!("{}: {}", u.term, u.reason))?;
    Ok(m.into_match())
}

fn destination_service(name: &str) -> QuotaMatch {
    QuotaMatch {
        destination: WorkloadMatch {
            service: name.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn match_expressions_that_are_conjunctions_of_equalities_translate() {
    assert_eq!(translated("").unwrap(), QuotaMatch::default());
    assert_eq!(translated(" true ").unwrap(), QuotaMatch::default());
    let ratings = destination_service("ratings");
    assert_eq!(
        translated(r#"destination.labels["app"] == "ratings""#).unwrap(),
        ratings
    );
    assert_eq!(
        translated(r#"(destination.labels["app"]|"unknown") == "ratings""#).unwrap(),
        ratings
    );
    assert_eq!(
        translated(r#""ratings" == destination.service.name"#).unwrap(),
        ratings
    );
    assert_eq!(
        translated(r#"destination.labels["app"] | destination.service.name | "x" == "ratings""#)
            .unwrap(),
        ratings,
        "both alternatives are destination.service"
    );
    let m = translated(r#"source.labels["app"]=="reviews" && request.method == "GET""#).unwrap();
    assert_eq!(m.source.service, "reviews");
    assert_eq!(m.method, "GET");
    let m = translated(
        r#"((source.labels["version"] == "v2") && (request.headers["X-User"] == "jason" && match(request.path, "/api/*")))"#,
    )
    .unwrap();
    assert_eq!(m.source.version, "v2");
    assert_eq!(m.headers["x-user"], "jason");
    assert_eq!(m.path_prefix, "/api/");
    let m =
        translated(r#"request.path.startsWith("/v1") && match(request.method, "POST")"#).unwrap();
    assert_eq!((m.path_prefix.as_str(), m.method.as_str()), ("/v1", "POST"));
    let m =
        translated(r#"destination.service.host == "ratings.bookinfo.svc.cluster.local""#).unwrap();
    assert_eq!(m.destination.service, "ratings");
    assert_eq!(m.destination.namespace, "bookinfo");
    let m = translated(r#"destination.service == "ratings.default.svc.cluster.local""#).unwrap();
    assert_eq!(
        (
            m.destination.service.as_str(),
            m.destination.namespace.as_str()
        ),
        ("ratings", "default")
    );
}

#[test]
fn other_match_expressions_are_refused_with_the_term() {
    let cases = [
        (r#"a.b == "x""#, r#"a.b == "x""#, "unknown attribute"),
        (
            r#"destination.labels["app"] == "ratings" || source.labels["app"] == "reviews""#,
            "||",
            "disjunction",
        ),
        (r#"request.method != "GET""#, "!=", "negation"),
        (r#"!(request.method == "GET")"#, "!(", "negation"),
        (
            r#"(source.labels["app"] | "unknown") == "unknown""#,
            "unknown",
            "fallback equals",
        ),
        (
            r#"(source.labels["app"] | destination.labels["app"]) == "x""#,
            "|",
            "different attributes",
        ),
        (r#"request.path == "/login""#, "/login", "prefix only"),
        (
            r#"match(request.headers["cookie"], "user=*") == false"#,
            "cookie",
            "quoted string",
        ),
        (r#"match(request.path, "*.js")"#, "*.js", "prefix globs"),
        (
            r#"source.principal == "cluster.local/ns/default/sa/x""#,
            "principal",
            "principal",
        ),
        (r#"destination.port == 9080"#, "9080", "quoted string"),
        (r#"request.size > 10"#, "request.size > 10", "only attr"),
        (
            r#"destination.labels["app"] == "ratings" && destination.service.name == "reviews""#,
            "reviews",
            "never apply",
        ),
        (
            r#"destination.service.host == "ratings""#,
            "ratings",
            "not a Kubernetes service host",
        ),
    ];
    for (expr, term_part, reason_part) in cases {
        let err = translated(expr).expect_err(expr);
        assert!(err.contains(term_part), "{expr}: {err}");
        assert!(err.contains(reason_part), "{expr}: {err}");
    }
}

#[test]
fn names_are_sanitised_and_made_unique() {
    assert_eq!(sanitize_name("requestcountquota"), "requestcountquota");
    assert_eq!(
        sanitize_name("Edge_Proxy.remote_address_50.0.0.5"),
        "edge_proxy.remote_address_50.0.0.5"
    );
    assert_eq!(sanitize_name("ex9.key1_value*"), "ex9.key1_value_");
    assert_eq!(sanitize_name("_x y/z"), "x_y_z");
    assert_eq!(sanitize_name("**"), "quota");
    assert_eq!(sanitize_name(&"a".repeat(300)).len(), MAX_NAME);
    let mut names = NameSet::default();
    assert_eq!(names.unique("a"), "a");
    assert_eq!(names.unique("a"), "a-2");
    assert_eq!(names.unique("a"), "a-3");
    assert!(!names.reserve("a-2"));
    let long = "b".repeat(MAX_NAME);
    assert_eq!(names.unique(&long), long);
    let second = names.unique(&long);
    assert_eq!(second.len(), MAX_NAME);
    assert!(second.ends_with("-2"));
}

#[test]
fn import_any_detects_the_format() {
    let envoy = "# comment\ndomain: mongo_cps\ndescriptors:\n  - key: database\n    value: users\n    rate_limit: {unit: second, requests_per_unit: 500}\n";
    let specs = import_any(envoy).unwrap();
    assert_eq!(specs.len(), 1);
    assert!(specs[0].rate_limit.is_some());

    let istio = super::istio::tests::BOOKINFO_MEMQUOTA;
    let specs = import_any(istio).unwrap();
    assert_eq!(specs[0].name, "requestcountquota.ratings");

    let err = import_any("name: x\nmaxAmount: 1\n").unwrap_err();
    assert!(matches!(err, Error::ImportInvalid(_)), "{err}");
    assert!(err.to_string().contains("apiVersion"), "{err}");
    let err = import_any("").unwrap_err();
    assert!(matches!(err, Error::ImportInvalid(_)), "{err}");
}

#[test]
fn yaml_errors_name_the_document() {
    let err = import_istio("kind: rule\n---\nkind: [unclosed\n").unwrap_err();
    assert!(matches!(err, Error::ImportYaml { .. }), "{err}");
    assert!(
        err.to_string().starts_with("document 2: not valid YAML"),
        "{err}"
    );
}

proptest::proptest! {
    #[test]
    fn sanitised_names_are_valid_policy_names(raw in "\\PC{0,300}") {
        let spec = QuotaPolicySpec {
            name: sanitize_name(&raw),
            max_amount: 1,
            valid_duration: "1s".into(),
            ..QuotaPolicySpec::default()
        };
        proptest::prop_assert!(spec.compile().is_ok(), "{:?}", spec.name);
    }

    #[test]
    fn match_translation_never_panics(expr in r#"[a-z.()\[\]"'|&=! *]{0,40}"#) {
        let _ = translated(&expr);
    }

    #[test]
    fn importers_never_panic(yaml in "\\PC{0,80}") {
        let _ = import_any(&yaml);
        let _ = import_envoy_ratelimit(&yaml);
        let _ = import_istio(&yaml);
    }

    #[test]
    fn generated_descriptor_trees_import_to_compiling_policies(
        keys in proptest::collection::vec(("[a-zA-Z_]{1,6}", proptest::option::of("[a-zA-Z0-9.*]{0,6}"), 0u32..5), 1..6),
    ) {
        let mut yaml = String::from("domain: Gen\ndescriptors:\n");
        for (i, (key, value, rpu)) in keys.iter().enumerate() {
            yaml.push_str(&format!("  - key: {key}{i}\n"));
            if let Some(v) = value {
                yaml.push_str(&format!("    value: \"{v}\"\n"));
            }
            yaml.push_str(&format!(
                "    descriptors:\n      - key: inner\n        rate_limit: {{unit: minute, requests_per_unit: {}}}\n",
                rpu + 1
            ));
        }
        match import_envoy_ratelimit(&yaml) {
            Ok(specs) => {
                proptest::prop_assert_eq!(specs.len(), keys.len());
                let names: std::collections::BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                proptest::prop_assert_eq!(names.len(), specs.len(), "names are unique");
                assert_all_compile(&specs);
            }
            Err(Error::ImportUnsupported { .. }) => {} // a '*' inside a value
            Err(e) => proptest::prop_assert!(false, "{e}\n{yaml}"),
        }
    }
}

#[test]
fn an_import_may_not_replace_a_policy_of_another_origin() {
    let first = import_envoy_ratelimit(
        "domain: rep\ndescriptors:\n  - key: key1\n    rate_limit: {unit: minute, requests_per_unit: 1, name: one}\n",
    )
    .unwrap();
    // Another domain that reuses the name `one`.
    let second = import_envoy_ratelimit(
        "domain: other_domain\ndescriptors:\n  - key: api_key\n    rate_limit: {unit: hour, requests_per_unit: 1000, name: one}\n",
    )
    .unwrap();
    assert_eq!(first[0].name, second[0].name);
    let message = replace_conflict(&first[0], &second[0]).unwrap();
    assert!(message.contains(r#"policy "one""#), "{message}");
    assert!(message.contains(r#"domain "rep""#), "{message}");
    assert!(message.contains(r#"domain "other_domain""#), "{message}");
    assert!(message.contains("another rate_limit.name"), "{message}");
    // Derived names coincide: domain a.b + key c, domain a + b → c.
    let ab = import_envoy_ratelimit("domain: a.b\ndescriptors:\n  - key: c\n    rate_limit: {unit: second, requests_per_unit: 1}\n").unwrap();
    let a = import_envoy_ratelimit(
        "domain: a\ndescriptors:\n  - key: b\n    descriptors:\n      - key: c\n        rate_limit: {unit: second, requests_per_unit: 2}\n",
    )
    .unwrap();
    assert_eq!(
        (ab[0].name.as_str(), a[0].name.as_str()),
        ("a.b.c", "a.b.c")
    );
    let message = replace_conflict(&ab[0], &a[0]).unwrap();
    assert!(
        message.contains("derived from the descriptor path"),
        "{message}"
    );
    // A policy that limits Checks is not an import's to replace, either way.
    let mut by_hand = first[0].clone();
    by_hand.rate_limit = None;
    let message = replace_conflict(&by_hand, &first[0]).unwrap();
    assert!(
        message.contains("not bound to a rate-limit domain"),
        "{message}"
    );
    assert!(replace_conflict(&first[0], &by_hand).is_some());
    // The same domain imported again: an update.
    let mut again = first[0].clone();
    again.max_amount = 5;
    assert_eq!(replace_conflict(&first[0], &again), None);
    assert_eq!(replace_conflict(&by_hand, &by_hand), None);
}
