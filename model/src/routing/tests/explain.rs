//! `RuleSet::explain`.

use super::*;

#[test]
fn explain_tells_the_key_facts() {
    let vs_text = format!(
        "{}---\n{}",
        at_version(REVIEWS_TEST_V2, "networking.istio.io/v1beta1"),
        vs(
            "ratings",
            "  hosts: [ratings]\n  http:\n  - name: slow\n    match:\n    - uri: {prefix: /ratings}\n      \
             method: {regex: \"GET|HEAD\"}\n    route:\n    - destination: {host: ratings, subset: v1}\n      \
             weight: 80\n    - destination: {host: ratings, subset: v2}\n      weight: 20\n    \
             fault:\n      delay: {fixedDelay: 7s}\n      abort: {httpStatus: 500, percentage: {value: 10}}\n    \
             timeout: 3s\n    retries: {attempts: 1, perTryTimeout: 3s, retryOn: gateway-error}\n    \
             mirror: {host: ratings, subset: v2}\n    mirrorPercentage: {value: 5}\n"
        )
    );
    let rules = load(&[
        ("rules/dr.yaml", DR_ALL),
        ("rules/cb.yaml", &CIRCUIT_BREAKER.replace("httpbin", "reviews-cb")),
        ("rules/vs.yaml", &vs_text),
    ]);
    let text = rules.explain();
    let expected_vs = "\
VirtualService default/reviews (rules/vs.yaml#1), hosts reviews.default.svc.cluster.local
  http[0]: when header end-user = \"jason\"
    → reviews.default.svc.cluster.local subset v2 (100%)
  http[1]: always
    → reviews.default.svc.cluster.local subset v1 (100%)

VirtualService default/ratings (rules/vs.yaml#2), hosts ratings.default.svc.cluster.local
  http[0] \"slow\": when uri starts with \"/ratings\" and method ~ /GET|HEAD/
    → ratings.default.svc.cluster.local subset v1 (80%)
    → ratings.default.svc.cluster.local subset v2 (20%)
    fault: delay 7s on 0% of requests; abort 500 on 10%
    timeout 3s; retries: 1 × per try 3s on gateway-error
    mirror 5% of requests to ratings.default.svc.cluster.local subset v2
  other requests: 404 no route
";
    assert!(text.starts_with(expected_vs), "{text}");
    assert!(
        text.contains(
            "DestinationRule default/reviews (rules/dr.yaml#2), host reviews.default.svc.cluster.local
  traffic policy: ROUND_ROBIN; no connection limits; no ejection
  subsets: v1 {version=v1}, v2 {version=v2}, v3 {version=v3}
"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "DestinationRule default/reviews-cb (rules/cb.yaml#1), host reviews-cb.default.svc.cluster.local
  traffic policy: ROUND_ROBIN; at most 1 connection, 1 pending request, 1 request per connection; eject after 1 \
             consecutive 5xx for 3m (check every 1s, up to 100%)
"
        ),
        "{text}"
    );
    assert_eq!(text.matches("\n\n").count(), 6, "one blank line between the 7 blocks:\n{text}");
}

#[test]
fn explain_subset_policies_and_shadowed_rules() {
    let spec = "  host: reviews\n  subsets:\n  - name: v1\n    labels: {}\n  - name: v2\n    labels: {version: v2}\n    \
                trafficPolicy:\n      loadBalancer: {simple: RANDOM}\n      outlierDetection: {consecutiveErrors: 3}\n";
    let other = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    let rules =
        load(&[("a.yaml", &dr("reviews", spec)), ("b.yaml", &vs("first", other)), ("c.yaml", &vs("second", other))]);
    let text = rules.explain();
    assert!(text.contains("  subsets: v1 (every endpoint), v2 {version=v2}\n"), "{text}");
    assert!(
        text.contains(
            "  subset v2 traffic policy: RANDOM; no connection limits; eject after 3 consecutive gateway errors for \
             30s (check every 10s, up to 10%)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "  note: reviews.default.svc.cluster.local is routed by VirtualService default/first (b.yaml#1), read \
             first; this rule applies to no caller\n"
        ),
        "{text}"
    );
    // What the proxy logs at load: the second virtual service, and of a second
    // destination rule for the same host, merged into the first, its traffic policy (the
    // first has one) and its subset v1 (the first defines v1).
    let pool = "  host: reviews\n  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 1}}\n  subsets:\n  \
                - name: v1\n    labels: {version: v1}\n  - name: v3\n    labels: {version: v3}\n";
    let with_policy = spec.replace("  subsets:", "  trafficPolicy:\n    loadBalancer: {simple: LEAST_REQUEST}\n  subsets:");
    let rules = load(&[
        ("a.yaml", &dr("reviews", &with_policy)),
        ("b.yaml", &vs("first", other)),
        ("c.yaml", &vs("second", other)),
        ("d.yaml", &dr("reviews-pool", pool)),
    ]);
    let shadowed = rules.shadowed();
    assert_eq!(
        shadowed,
        [
            "VirtualService default/second (c.yaml#1) does not route reviews.default.svc.cluster.local: VirtualService \
             default/first (b.yaml#1) is read first",
            "subset v1 of DestinationRule default/reviews-pool (d.yaml#1) is not applied to \
             reviews.default.svc.cluster.local: DestinationRule default/reviews (a.yaml#1), read first, defines v1",
            "the traffic policy of DestinationRule default/reviews-pool (d.yaml#1) is not applied to \
             reviews.default.svc.cluster.local: DestinationRule default/reviews (a.yaml#1), read first, has one",
        ]
    );
    let text = rules.explain();
    assert!(
        text.contains(
            "DestinationRule default/reviews (a.yaml#1), host reviews.default.svc.cluster.local
  merged with DestinationRule default/reviews-pool (d.yaml#1): subset v3 added
  traffic policy: LEAST_REQUEST; no connection limits; no ejection
  subsets: v1 (every endpoint), v2 {version=v2}, v3 {version=v3}
"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "DestinationRule default/reviews-pool (d.yaml#1), host reviews.default.svc.cluster.local
  note: merged into DestinationRule default/reviews (a.yaml#1), read first: subset v3 added
  note: subset v1 of DestinationRule default/reviews-pool (d.yaml#1) is not applied"
        ),
        "{text}"
    );
}

#[test]
fn explain_says_when_requests_match_no_route() {
    let routes = |last_match: &str| {
        let spec = format!(
            "  hosts: [r]\n  http:\n  - match:\n    - uri: {{exact: /a}}\n    route:\n    - destination: {{host: a}}\n  \
             - {last_match}route:\n    - destination: {{host: b}}\n"
        );
        load(&[("vs.yaml", &vs("r", &spec))]).explain()
    };
    let text = routes("match:\n    - queryParams: {debug: {exact: \"1\"}}\n    ");
    assert!(text.contains("  http[1]: when query debug = \"1\"\n"), "{text}");
    assert!(text.ends_with("  other requests: 404 no route\n"), "{text}");
    let text = routes("match:\n    - {}\n    ");
    assert!(text.contains("  http[1]: always\n"), "{text}");
    assert!(!text.contains("other requests"), "{text}");
    assert!(!routes("").contains("other requests"));
}

#[test]
fn export_to_dot_hides_a_rule_from_other_namespaces_and_is_explained() {
    let own = vs("reviews", "  hosts: [reviews]\n  exportTo: [\".\"]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v2}\n");
    let rule = dr("reviews", "  host: reviews\n  exportTo: [\".\"]\n  subsets:\n  - name: v2\n    labels: {version: v2}\n");
    let everyone = vs("ratings", "  hosts: [ratings]\n  exportTo: [\"*\", \".\"]\n  http:\n  - route:\n    - destination: {host: ratings}\n");
    let rules = load(&[("rules/a.yaml", &own), ("rules/b.yaml", &rule), ("rules/c.yaml", &everyone)]);
    let reviews = "reviews.default.svc.cluster.local";
    assert_eq!(rules.virtual_service(reviews).map(|vs| vs.export_to), Some(ExportTo::OwnNamespace));
    assert_eq!(rules.virtual_service("ratings.default.svc.cluster.local").map(|vs| vs.export_to), Some(ExportTo::All));
    // A proxy in the rules' namespace sees them all, as they are (no copy).
    assert!(rules.visible_from("default").is_none());
    // One in another namespace sees only what is exported to every namespace.
    let other = rules.visible_from("shop").expect("some rules hidden");
    assert!(other.virtual_service(reviews).is_none());
    assert!(other.destination_rule(reviews).is_none());
    assert!(other.virtual_service("ratings.default.svc.cluster.local").is_some());
    let text = rules.explain();
    let line = "  exportTo \".\": applies only to calls from proxies in namespace default; callers in other namespaces ignore it";
    assert_eq!(text.matches(line).count(), 2, "{text}");
}

#[test]
fn a_rule_behind_one_exported_to_its_own_namespace_is_said_to_apply_elsewhere() {
    let own = vs("reviews-own", "  hosts: [reviews]\n  exportTo: [\".\"]\n  http:\n  - route:\n    - destination: {host: reviews}\n");
    let everyone = vs("reviews-all", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n");
    let text = load(&[("rules/a.yaml", &own), ("rules/b.yaml", &everyone)]).explain();
    assert!(
        text.contains("note: reviews.default.svc.cluster.local is routed by VirtualService default/reviews-own (rules/a.yaml#1), read first by callers in namespace default (exportTo \".\"); this rule applies to callers in every namespace but default"),
        "{text}"
    );
    assert!(!text.contains("this rule applies to no caller"), "{text}");
}

#[test]
fn a_rule_behind_one_in_the_same_namespace_both_exported_to_it_applies_to_no_caller() {
    let first = vs("reviews-a", "  hosts: [reviews]\n  exportTo: [\".\"]\n  http:\n  - route:\n    - destination: {host: reviews}\n");
    let second = vs("reviews-b", "  hosts: [reviews]\n  exportTo: [\".\"]\n  http:\n  - route:\n    - destination: {host: reviews}\n");
    let rule_a = dr("reviews-a", "  host: reviews\n  exportTo: [\".\"]\n");
    let rule_b = dr("reviews-b", "  host: reviews\n  exportTo: [\".\"]\n");
    let text = load(&[("rules/a.yaml", &first), ("rules/b.yaml", &second), ("rules/c.yaml", &rule_a), ("rules/d.yaml", &rule_b)]).explain();
    // The second virtual service; the second destination rule is merged into the first.
    assert_eq!(text.matches("; this rule applies to no caller\n").count(), 1, "{text}");
    assert!(text.contains("  note: merged into DestinationRule default/reviews-a (rules/c.yaml#1), read first: nothing added\n"), "{text}");
    assert!(!text.contains("this rule applies to callers in"), "{text}");
}

/// With three rules for one host, who reads which is worked out per namespace: a rule
/// for everyone behind another for everyone applies to no caller, whatever is before.
#[test]
fn a_rule_behind_several_says_exactly_who_reads_it() {
    let rule = |name: &str, namespace: &str, export: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  \
             hosts: [reviews.default.svc.cluster.local]\n  exportTo: [\"{export}\"]\n  http:\n  - route:\n    - destination: \
             {{host: reviews.default.svc.cluster.local}}\n"
        )
    };
    let text = load(&[("a.yaml", &rule("a", "foo", ".")), ("b.yaml", &rule("b", "bar", "*")), ("c.yaml", &rule("c", "default", "*"))])
        .explain();
    assert!(text.contains("read first by callers in namespace foo (exportTo \".\"); this rule applies to callers in every namespace but foo\n"), "{text}");
    assert!(text.contains("; this rule applies to no caller\n"), "{text}");
    let text = load(&[("a.yaml", &rule("a", "foo", ".")), ("b.yaml", &rule("b", "bar", ".")), ("c.yaml", &rule("c", "default", "*"))])
        .explain();
    assert!(text.contains("this rule applies to callers in every namespace but bar, foo\n"), "{text}");
    assert!(text.contains("this rule applies to callers in namespace bar only\n"), "{text}");
}

/// A rule in `namespace` (`kind`, `name`) with `spec`.
fn in_namespace(kind: &str, name: &str, namespace: &str, spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}")
}

/// The labels of `subset` in the destination rule a caller in `caller` applies to `host`.
fn subset_labels(rules: &RuleSet, caller: &str, host: &str, subset: &str) -> Option<String> {
    let view = rules.visible_from(caller);
    let rule = view.as_ref().unwrap_or(rules).destination_rule(host)?;
    Some(format!("{}/{}: {:?}", rule.namespace, rule.name, rule.subset(subset)?.labels))
}

/// Istio's order for a sidecar: the destination rules of the caller's namespace, then
/// of the service's, then of the root namespace; a rule elsewhere only for callers there.
#[test]
fn destination_rules_apply_by_the_callers_namespace_then_the_services_then_the_root() {
    let subsets = |first: &str| format!("  subsets:\n  - name: v1\n    labels: {{version: {first}}}\n");
    let prod = in_namespace("DestinationRule", "reviews-for-prod", "prod", &format!("  host: {REVIEWS_HOST}\n{}", subsets("v3")));
    let own = dr("reviews", &format!("  host: reviews\n{}", subsets("v1")));
    let root = in_namespace("DestinationRule", "everything", "istio-system", &format!("  host: \"*.cluster.local\"\n{}", subsets("root")));
    let shop_wide = in_namespace("DestinationRule", "shop-wide", "shop", &format!("  host: \"*.svc.cluster.local\"\n{}", subsets("shop")));
    // Read in this order: prod's first, then the service's own, the root's, shop's.
    let rules = load(&[("rules/a-prod.yaml", &prod), ("rules/dr.yaml", &own), ("rules/root.yaml", &root), ("rules/shop.yaml", &shop_wide)]);
    let labels = |caller: &str, host: &str| subset_labels(&rules, caller, host, "v1");
    assert_eq!(labels("default", REVIEWS_HOST).as_deref(), Some(r#"default/reviews: {"version": "v1"}"#));
    assert_eq!(labels("prod", REVIEWS_HOST).as_deref(), Some(r#"prod/reviews-for-prod: {"version": "v3"}"#));
    // Another namespace without a rule of its own: the service's namespace's.
    assert_eq!(labels("bar", REVIEWS_HOST).as_deref(), Some(r#"default/reviews: {"version": "v1"}"#));
    // The caller's namespace first, even a wildcard over an exact host elsewhere.
    assert_eq!(labels("shop", REVIEWS_HOST).as_deref(), Some(r#"shop/shop-wide: {"version": "shop"}"#));
    // A service without a rule in its namespace: the root namespace's.
    assert_eq!(labels("bar", RATINGS_HOST).as_deref(), Some(r#"istio-system/everything: {"version": "root"}"#));
    // The lookup by host agrees with ranking every rule in force, as Istio's order says
    // (with a rule for every host, `*`, in one more namespace).
    let edge = in_namespace("DestinationRule", "edge-all", "edge", &format!("  host: \"*\"\n{}", subsets("edge")));
    let rules = load(&[("rules/a-prod.yaml", &prod), ("rules/dr.yaml", &own), ("rules/root.yaml", &root), ("rules/shop.yaml", &shop_wide), ("rules/z-edge.yaml", &edge)]);
    assert_eq!(subset_labels(&rules, "edge", RATINGS_HOST, "v1").as_deref(), Some(r#"edge/edge-all: {"version": "edge"}"#));
    for caller in [None, Some("default"), Some("prod"), Some("shop"), Some("bar"), Some("istio-system"), Some("edge")] {
        for host in [REVIEWS_HOST, RATINGS_HOST, "x.shop.svc.cluster.local", "example.com"] {
            let scanned = rules
                .dr_merged
                .iter()
                .enumerate()
                .filter_map(|(index, rule)| {
                    let specificity = if rule.host == host {
                        usize::MAX
                    } else {
                        rule.host.strip_prefix('*').filter(|suffix| host.ends_with(suffix))?.len()
                    };
                    Some(((namespace_rank(&rule.namespace, host, caller)?, std::cmp::Reverse(specificity), index), rule))
                })
                .min_by_key(|(key, _)| *key)
                .map(|(_, rule)| rule.name.clone());
            let found = rules.destination_rule_for(host, caller).map(|rule| rule.name.clone());
            assert_eq!(found, scanned, "{caller:?} {host}");
        }
    }
    // Each proxy warns only of what its own namespace does not apply.
    let shadowed = |caller: &str| rules.visible_from(caller).map(|view| view.shadowed()).unwrap_or_default();
    assert!(shadowed("default").is_empty(), "{:?}", shadowed("default"));
    let text = rules.explain();
    assert!(
        text.contains("note: DestinationRule default/reviews (rules/dr.yaml#1) comes first for reviews.default.svc.cluster.local; \
                       this rule applies to callers in namespace prod only\n"),
        "{text}"
    );
    assert!(!text.contains("applies to no caller"), "{text}");
}

/// A virtual service exported only to its own namespace is that namespace's override:
/// it wins there over one for everyone read before it.
#[test]
fn a_namespaces_own_virtual_service_wins_there_over_one_for_everyone() {
    let everyone = vs("ratings", "  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n");
    let local = in_namespace(
        "VirtualService",
        "ratings-local",
        "default",
        "  hosts: [ratings]\n  exportTo: [\".\"]\n  http:\n  - route:\n    - destination: {host: reviews}\n",
    );
    let rules = load(&[("rules/ratings.yaml", &everyone), ("rules/zz-local.yaml", &local)]);
    let winner = |caller: &str| {
        let view = rules.visible_from(caller);
        view.as_ref().unwrap_or(&rules).virtual_service(RATINGS_HOST).map(|vs| vs.name.clone())
    };
    assert_eq!(winner("default").as_deref(), Some("ratings-local"));
    assert_eq!(winner("shop").as_deref(), Some("ratings"));
}

/// A route to a subset that only another namespace's destination rule defines loads
/// (callers there are served), and says who gets 503: `rules check` in its account,
/// each proxy in a WARN for its own callers.
#[test]
fn a_subset_only_another_namespaces_rule_defines_is_said_to_fail_elsewhere() {
    let route = vs("reviews", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: pick}\n");
    let team = in_namespace(
        "DestinationRule",
        "reviews-pick",
        "team-a",
        &format!("  host: {REVIEWS_HOST}\n  subsets:\n  - name: pick\n    labels: {{version: v2}}\n"),
    );
    let rules = load(&[("rules/dr.yaml", &team), ("rules/vs.yaml", &route)]);
    let text = rules.explain();
    assert!(
        text.contains(&format!(
            "  note: subset pick of {REVIEWS_HOST} is defined by the DestinationRule that applies to callers in \
             namespace team-a only; other callers of this route get 503\n"
        )),
        "{text}"
    );
    let warned = |caller: &str| rules.visible_from(caller).map(|view| view.shadowed()).unwrap_or_default();
    assert!(warned("default").iter().any(|w| w.contains("routes to subset pick")), "{:?}", warned("default"));
    assert!(!warned("team-a").iter().any(|w| w.contains("routes to subset pick")), "{:?}", warned("team-a"));
}
