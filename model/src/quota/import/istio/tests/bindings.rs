//! QuotaSpecBinding services: a policy never applies beyond the services a binding
//! names (Istio charges no other), one policy per bound service, and what would widen
//! it is refused.

use super::*;

const BOUND_FOUR: &str =
    "  - name: ratings\n  - name: reviews\n  - name: details\n  - name: productpage\n";

/// The Bookinfo sample with its binding's services replaced by `services` (YAML list
/// items, indented by two).
fn bound_to(services: &str) -> String {
    let yaml = BOOKINFO_MEMQUOTA.replace(BOUND_FOUR, services);
    assert_ne!(yaml, BOOKINFO_MEMQUOTA, "the fixture changed");
    yaml
}

fn names(specs: &[QuotaPolicySpec]) -> Vec<&str> {
    specs.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn an_unbound_service_is_charged_by_no_policy() {
    let specs = import_istio(&bound_to("  - name: ratings\n  - name: reviews\n")).unwrap();
    assert_all_compile(&specs);
    assert_eq!(
        names(&specs),
        ["requestcountquota.ratings", "requestcountquota.reviews"]
    );
    let policies: Vec<_> = specs.iter().map(|s| s.compile().unwrap()).collect();
    for destination in ["details", "productpage", "mongodb"] {
        let attrs = call_in("productpage", "v1", destination, "istio-system");
        assert!(
            policies.iter().all(|p| !p.matches(&attrs)),
            "{destination} is not bound"
        );
    }
    let attrs = call_in("productpage", "v1", "reviews", "istio-system");
    let matched: Vec<&str> = policies
        .iter()
        .filter(|p| p.matches(&attrs))
        .map(|p| p.name())
        .collect();
    assert_eq!(matched, ["requestcountquota.reviews"]);
}

#[test]
fn a_binding_of_no_service_is_refused() {
    let yaml = BOOKINFO_MEMQUOTA.replace(&format!("  services:\n{BOUND_FOUR}"), "  services: []\n");
    assert_ne!(yaml, BOOKINFO_MEMQUOTA, "the fixture changed");
    let err = error(&yaml).to_string();
    assert!(
        err.contains("document 5 (QuotaSpecBinding request-count.istio-system), spec.services"),
        "{err}"
    );
    assert!(err.contains("to no service"), "{err}");
    let without = BOOKINFO_MEMQUOTA.replace(&format!("  services:\n{BOUND_FOUR}"), "");
    assert!(error(&without).to_string().contains("to no service"));
}

#[test]
fn a_quota_spec_no_binding_binds_is_refused() {
    let yaml = BOOKINFO_MEMQUOTA.replace("kind: QuotaSpecBinding", "kind: SomethingElse");
    let err = error(&yaml).to_string();
    assert!(
        err.contains("document 4 (QuotaSpec request-count.istio-system), spec.rules[0].quotas"),
        "{err}"
    );
    assert!(
        err.contains("no QuotaSpecBinding in this input binds"),
        "{err}"
    );
}

#[test]
fn a_binding_of_every_service_is_one_policy_for_every_destination() {
    let specs = import_istio(&bound_to("  - service: \"*\"\n")).unwrap();
    assert_eq!(names(&specs), ["requestcountquota"]);
    assert!(specs[0].matches.is_empty());
    assert!(
        specs[0].description.contains("to every service"),
        "{}",
        specs[0].description
    );
}

#[test]
fn binding_labels_narrow_the_policy_or_are_refused() {
    let specs = import_istio(&bound_to(
        "  - name: ratings\n    labels: {version: v1}\n  - name: ratings\n    labels: {version: v2}\n",
    ))
    .unwrap();
    assert_all_compile(&specs);
    assert_eq!(
        names(&specs),
        [
            "requestcountquota.ratings.istio-system.v1",
            "requestcountquota.ratings.istio-system.v2"
        ]
    );
    assert_eq!(specs[0].matches.destination.version, "v1");
    assert_eq!(specs[1].matches.destination.version, "v2");
    assert!(
        specs[0]
            .description
            .contains("the one for ratings.istio-system (labels version=v1)"),
        "{}",
        specs[0].description
    );
    let policy = specs[0].compile().unwrap();
    let mut v3 = call_in("reviews", "v2", "ratings", "istio-system");
    v3.destination.as_mut().unwrap().version = "v3".into();
    assert!(!policy.matches(&v3), "labels narrow, never widen");

    // One binding entry without labels covers the labelled ones of the same service.
    let specs = import_istio(&bound_to(
        "  - name: ratings\n  - name: ratings\n    labels: {version: v1}\n",
    ))
    .unwrap();
    assert_eq!(names(&specs), ["requestcountquota"]);
    assert!(specs[0].matches.destination.version.is_empty());

    let err = error(&bound_to("  - name: ratings\n    labels: {tier: gold}\n")).to_string();
    assert!(
        err.contains("document 5 (QuotaSpecBinding request-count.istio-system), spec.services[0]"),
        "{err}"
    );
    assert!(err.contains("label \"tier\" cannot be matched"), "{err}");
}

#[test]
fn services_of_one_name_in_two_namespaces_are_named_with_their_namespace() {
    let specs = import_istio(&bound_to(
        "  - name: ratings\n    namespace: default\n  - name: ratings\n    namespace: bookinfo\n",
    ))
    .unwrap();
    assert_eq!(
        names(&specs),
        [
            "requestcountquota.ratings.default",
            "requestcountquota.ratings.bookinfo"
        ]
    );
    // `destination` (the service name) does not tell them apart: Mixer counted both
    // in shared counters, these policies count each apart.
    assert!(
        specs[0]
            .description
            .contains("counted per service, unlike Mixer"),
        "{}",
        specs[0].description
    );
    assert!(
        specs[0].description.contains("up to 2 times a limit"),
        "{}",
        specs[0].description
    );
}

#[test]
fn dimensions_that_do_not_tell_the_services_apart_are_said_to_count_per_service() {
    // The productpage sample's instance: keyed by the caller's address only.
    let yaml = BOOKINFO_MEMQUOTA
        .replace(
            "      destination: destination.labels[\"app\"] | destination.service.name | \"unknown\"\n",
            "",
        )
        .replace("      destinationVersion: destination.labels[\"version\"] | \"unknown\"\n", "")
        .replace(
            "          destination: ratings\n          source: reviews\n",
            "          source: reviews\n",
        )
        .replace(
            "          destination: ratings\n        maxAmount: 100",
            "          sourceVersion: v1\n        maxAmount: 100",
        );
    let specs = import_istio(&yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(specs.len(), 4);
    for spec in &specs {
        assert!(
            spec.description.contains(
                "counted per service, unlike Mixer: Mixer kept one counter per combination of \
                 the instance's dimensions (source, sourceVersion), shared by requests to every \
                 bound service"
            ),
            "{}",
            spec.description
        );
        assert!(spec.description.contains("up to 4 times a limit"));
    }
}

#[test]
fn a_rule_that_selects_none_of_the_bound_services_is_refused() {
    let yaml = BOOKINFO_REDIS_ROLLING.replace(
        r#"match: (destination.labels["app"]|"unknown") == "ratings""#,
        r#"match: destination.labels["app"] == "mongodb""#,
    );
    let err = error(&yaml).to_string();
    assert!(
        err.contains("document 5 (rule quota.istio-system), spec.match"),
        "{err}"
    );
    assert!(
        err.contains("selects none of the bound services (ratings.default, reviews.default"),
        "{err}"
    );
}
