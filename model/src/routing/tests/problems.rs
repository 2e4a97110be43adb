//! What each rule field compiles to, and every way of getting one wrong.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

#[test]
fn weights_are_relative_and_missing_ones_are_zero() {
    let spec = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: 1\n    \
                - destination: {host: reviews.other}\n      weight: 2\n    - destination: {host: reviews.third}\n";
    let rules = load(&[("vs.yaml", &vs("reviews", spec))]);
    let route = &rules.virtual_services[0].http[0];
    let hosts: Vec<(&str, u32)> = route.route.iter().map(|d| (d.host.as_str(), d.weight)).collect();
    assert_eq!(
        hosts,
        [
            ("reviews.default.svc.cluster.local", 1),
            ("reviews.other.svc.cluster.local", 2),
            ("reviews.third.svc.cluster.local", 0)
        ]
    );
    assert_eq!(route.total_weight, 3);
    assert_eq!(route.pick(0).unwrap().weight, 1);
    assert_eq!(route.pick(2).unwrap().weight, 2);
    assert!(rules.explain().contains("→ reviews.other.svc.cluster.local (66.67%)"), "{}", rules.explain());

    // A lone destination takes everything, whatever its weight says.
    let lone = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: 30\n";
    assert_eq!(load(&[("vs.yaml", &vs("reviews", lone))]).virtual_services[0].http[0].route[0].weight, 100);

    let zero = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: 0\n    \
                - destination: {host: b}\n";
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("reviews", zero))]),
        ["spec.http[0].route: the weights add up to 0: give at least one destination a weight"]
    );
    let over = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: 101\n    \
                - destination: {host: b}\n      weight: -1\n";
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("reviews", over))]),
        [
            "spec.http[0].route[0].weight: must be between 0 and 100, found 101",
            "spec.http[0].route[1].weight: must be between 0 and 100, found -1",
        ]
    );
}

#[test]
fn fault_details() {
    let spec = "  hosts: [ratings]\n  http:\n  - fault:\n      delay: {fixedDelay: 0.5s, percent: 10}\n      \
                abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.1}}\n    route:\n    - destination: {host: ratings}\n";
    let rules = load(&[("vs.yaml", &vs("ratings", spec))]);
    let fault = rules.virtual_services[0].http[0].fault.as_ref().unwrap();
    let delay = fault.delay.as_ref().unwrap();
    assert_eq!((delay.fixed_delay, delay.percent), (Duration::from_millis(500), 10.0));
    let abort = fault.abort.as_ref().unwrap();
    assert_eq!((abort.status, abort.percent), (AbortStatus::Grpc(14), 0.1));
    assert!(
        rules.explain().contains("    fault: delay 500ms on 10% of requests; abort gRPC UNAVAILABLE on 0.1%\n"),
        "{}",
        rules.explain()
    );

    let bad = "  hosts: [ratings]\n  http:\n  - fault: {}\n    route:\n    - destination: {host: ratings}\n  \
               - fault:\n      delay: {percentage: {value: 150}}\n      abort: {httpStatus: 700, grpcStatus: 14}\n    \
               route:\n    - destination: {host: ratings}\n  - fault:\n      abort: {grpcStatus: NOPE, percent: 5, \
               percentage: {value: 5}}\n    route:\n    - destination: {host: ratings}\n";
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("ratings", bad))]),
        [
            "spec.http[0].fault: give a delay, an abort, or both",
            "spec.http[1].fault.delay.fixedDelay: is required, e.g. 5s",
            "spec.http[1].fault.delay.percentage.value: must be between 0 and 100, found 150",
            "spec.http[1].fault.abort.grpcStatus: give either httpStatus or grpcStatus, not both",
            "spec.http[2].fault.abort.grpcStatus: unknown gRPC status \"NOPE\" (e.g. UNAVAILABLE, DEADLINE_EXCEEDED, \
             INTERNAL)",
            "spec.http[2].fault.abort.percent: give either percentage or the older percent, not both",
        ]
    );
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let virtual_service = r#"apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: everything
  namespace: shop
spec:
  hosts: [cart]
  gateways: [shop-gateway]
  exportTo: [other]
  tcp: []
  tls: []
  http:
  - match:
    - gateways: [mesh]
      uri: {prefix: /}
    corsPolicy: {allowOrigins: [{exact: "*"}]}
    redirect: {uri: /x}
    directResponse: {status: 200}
    delegate: {name: x}
    mirrors: [{destination: {host: cart}}]
    appendHeaders: {x: y}
    rewrite: {uriRegexRewrite: {match: a, rewrite: b}}
    fault:
      delay: {exponentialDelay: 1s}
      abort: {http2Error: REFUSED_STREAM}
    route:
    - destination: {host: cart}
"#;
    let destination_rule = r#"apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: everything
  namespace: shop
spec:
  host: cart
  workloadSelector: {matchLabels: {app: cart}}
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings: []
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
      localityLbSetting: {enabled: true}
      warmupDurationSecs: 10s
    connectionPool:
      tcp: {tcpKeepalive: {time: 7200s}, maxConnections: 10}
      http: {idleTimeout: 1s, h2UpgradePolicy: UPGRADE, useClientProtocol: true}
    outlierDetection:
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      minHealthPercent: 50
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: PASSTHROUGH}
"#;
    let found = problems(&[("rules.yaml", &format!("{virtual_service}---\n{destination_rule}"))]);
    let mut got: Vec<String> =
        found.iter().map(|p| format!("{} | {} | {} | {}", p.source, p.object, p.field, p.message)).collect();
    got.sort();
    let vs = "rules.yaml#1 | VirtualService shop/everything";
    let dr = "rules.yaml#2 | DestinationRule shop/everything";
    let mut expected = vec![
        format!("{vs} | spec.tcp | tcp is not supported by meshtel (meshtel routes HTTP only)"),
        format!("{vs} | spec.tls | tls is not supported by meshtel (meshtel routes HTTP only)"),
        format!(
            "{vs} | spec.gateways[0] | gateway \"shop-gateway\" is not supported by meshtel (it applies sidecar rules: \
             only \"mesh\")"
        ),
        format!(
            "{vs} | spec.exportTo[0] | exportTo \"other\" is not supported by meshtel (only \"*\", every namespace, and \
             \".\", the rule's own)"
        ),
        format!("{vs} | spec.http[0].corsPolicy | corsPolicy is not supported by meshtel"),
        format!("{vs} | spec.http[0].redirect | redirect is not supported by meshtel"),
        format!("{vs} | spec.http[0].directResponse | directResponse is not supported by meshtel"),
        format!("{vs} | spec.http[0].delegate | delegate is not supported by meshtel"),
        format!("{vs} | spec.http[0].mirrors | mirrors is not supported by meshtel (use mirror with mirrorPercentage)"),
        format!(
            "{vs} | spec.http[0].appendHeaders | appendHeaders is not supported by meshtel (use headers.request.add)"
        ),
        format!(
            "{vs} | spec.http[0].rewrite.uriRegexRewrite | uriRegexRewrite is not supported by meshtel (use uri with a \
             prefix match)"
        ),
        format!(
            "{vs} | spec.http[0].fault.delay.exponentialDelay | exponentialDelay is not supported by meshtel (use \
             fixedDelay)"
        ),
        format!(
            "{vs} | spec.http[0].fault.abort.http2Error | http2Error is not supported by meshtel (use httpStatus or \
             grpcStatus)"
        ),
        format!(
            "{dr} | spec.workloadSelector | workloadSelector is not supported by meshtel (rules apply to every workload)"
        ),
        format!("{dr} | spec.trafficPolicy.tls | tls is not supported by meshtel (meshtel does not originate TLS)"),
        format!(
            "{dr} | spec.trafficPolicy.portLevelSettings | portLevelSettings is not supported by meshtel (policies apply \
             to every port)"
        ),
        format!("{dr} | spec.trafficPolicy.loadBalancer.consistentHash | consistentHash is not supported by meshtel"),
        format!(
            "{dr} | spec.trafficPolicy.loadBalancer.localityLbSetting | localityLbSetting is not supported by meshtel \
             (meshtel has no localities)"
        ),
        format!(
            "{dr} | spec.trafficPolicy.loadBalancer.warmupDurationSecs | warmupDurationSecs is not supported by meshtel"
        ),
        format!("{dr} | spec.trafficPolicy.connectionPool.tcp.tcpKeepalive | tcpKeepalive is not supported by meshtel"),
        format!("{dr} | spec.trafficPolicy.connectionPool.http.idleTimeout | idleTimeout is not supported by meshtel"),
        format!(
            "{dr} | spec.trafficPolicy.connectionPool.http.h2UpgradePolicy | h2UpgradePolicy is not supported by meshtel"
        ),
        format!(
            "{dr} | spec.trafficPolicy.connectionPool.http.useClientProtocol | useClientProtocol is not supported by \
             meshtel"
        ),
        format!(
            "{dr} | spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors | splitExternalLocalOriginErrors \
             is not supported by meshtel"
        ),
        format!(
            "{dr} | spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures | consecutiveLocalOriginFailures \
             is not supported by meshtel"
        ),
        format!(
            "{dr} | spec.trafficPolicy.outlierDetection.minHealthPercent | minHealthPercent is not supported by meshtel \
             (ejection is bounded by maxEjectionPercent only)"
        ),
        format!(
            "{dr} | spec.subsets[0].trafficPolicy.loadBalancer.simple | PASSTHROUGH is not supported by meshtel (it \
             balances over the endpoints it knows)"
        ),
    ];
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let text = format!(
        "{}---\n{}---\n# only a comment\n---\n{}---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: \
         {{name: gw}}\n---\napiVersion: apps/v1\nkind: VirtualService\nmetadata: {{name: x}}\nspec: {{}}\n",
        vs("one", "  hosts: [one]\n  http:\n  - route:\n    - destination: {host: one, subsett: v1}\n"),
        vs(
            "two",
            "  hosts: two\n  http:\n  - timeout: 5\n    retries: {attempts: -1, perTryTimeout: 0s, retryOn: bogus}\n    \
             rewrite: {uri: \"/a?b\", authority: \"x y\"}\n"
        ),
        dr("three", "  trafficPolicy:\n    loadBalancer: {simple: round_robin}\n"),
    );
    let found = problems(&[("bad.yaml", &text)]);
    let got: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "bad.yaml#1: VirtualService default/one: spec.http[0].route[0].destination.subsett: unknown field (did you \
             mean subset?)",
            "bad.yaml#2: VirtualService default/two: spec.hosts: expected a list, found a string (\"two\")",
            "bad.yaml#2: VirtualService default/two: spec.http[0].route: is required: where matching requests go",
            "bad.yaml#2: VirtualService default/two: spec.http[0].timeout: expected a duration such as \"1s\" or \
             \"500ms\", found a number (5)",
            "bad.yaml#2: VirtualService default/two: spec.http[0].retries.attempts: must be at least 0, found -1",
            "bad.yaml#2: VirtualService default/two: spec.http[0].retries.perTryTimeout: must be greater than zero",
            "bad.yaml#2: VirtualService default/two: spec.http[0].retries.retryOn: unknown retry condition \"bogus\" \
             (meshtel knows 5xx, gateway-error, reset, connect-failure, refused-stream, retriable-4xx, \
             retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable and \
             status codes such as 503)",
            "bad.yaml#2: VirtualService default/two: spec.http[0].rewrite.uri: must be a path, without query, \
             fragment or spaces",
            "bad.yaml#2: VirtualService default/two: spec.http[0].rewrite.authority: \"x y\" is not a valid \
             authority",
            "bad.yaml#4: DestinationRule default/three: spec.host: is required: the service this rule applies to",
            "bad.yaml#4: DestinationRule default/three: spec.trafficPolicy.loadBalancer.simple: unknown load balancer \
             \"round_robin\"; expected ROUND_ROBIN, RANDOM or LEAST_REQUEST (did you mean ROUND_ROBIN?)",
            "bad.yaml#5: document: kind: kind Gateway is not supported; meshtel reads VirtualService and \
             DestinationRule",
            "bad.yaml#6: document: apiVersion: apiVersion apps/v1 is not supported; meshtel reads VirtualService from \
             networking.istio.io/v1, v1beta1 and v1alpha3",
        ]
    );
}

#[test]
fn object_level_problems() {
    let no_name = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  namespace: prod\n  \
                   labels: {app: x}\n  annotations: {a: b}\n  resourceVersion: \"12\"\n  namspace: x\nspec:\n  \
                   hosts: [x]\n  http:\n  - route:\n    - destination: {host: x}\nstatus: {anything: 1}\nextra: 1\n";
    assert_eq!(
        problems(&[("a.yaml", no_name)]).iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "a.yaml#1: VirtualService prod/?: extra: unknown field; expected one of apiVersion, kind, metadata, spec, \
             status",
            "a.yaml#1: VirtualService prod/?: metadata.namspace: unknown field (did you mean namespace?)",
            "a.yaml#1: VirtualService prod/?: metadata.name: is required",
        ]
    );
    let twice = format!(
        "{}---\n{}",
        vs("r", "  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n"),
        vs("r", "  hosts: [b]\n  http:\n  - route:\n    - destination: {host: b}\n")
    );
    assert_eq!(
        problems(&[("a.yaml", &twice)]).iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["a.yaml#2: VirtualService default/r: metadata.name: VirtualService default/r is also defined at a.yaml#1"]
    );
    let syntax = "apiVersion: networking.istio.io/v1\nkind: [unclosed\n";
    let found = problems(&[("broken.yaml", syntax)]);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].source.as_str(), found[0].object.as_str(), found[0].field.as_str()),
        ("broken.yaml#1", "document", "")
    );
    assert!(found[0].message.starts_with("invalid YAML: "), "{}", found[0].message);
    assert!(found[0].message.contains("line 2"), "{}", found[0].message);
    assert_eq!(
        field_messages(&[("junk.yaml", "just a string\n")]),
        [": expected a Kubernetes object (apiVersion, kind, metadata, spec), found a string (\"just a string\")"]
    );
    assert_eq!(
        field_messages(&[("none.yaml", "kind: VirtualService\n")]),
        ["apiVersion: is required, e.g. networking.istio.io/v1"]
    );
    assert_eq!(
        field_messages(&[("none.yaml", "apiVersion: networking.istio.io/v1\n")]),
        ["kind: is required: VirtualService or DestinationRule"]
    );
}

#[test]
fn duplicate_subsets() {
    let spec = "  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n  - name: v1\n    \
                labels: {version: v2}\n  - labels: {version: v3}\n";
    assert_eq!(
        field_messages(&[("dr.yaml", &dr("reviews", spec))]),
        ["spec.subsets[1].name: subset v1 is defined twice", "spec.subsets[2].name: is required"]
    );
}

#[test]
fn undefined_subsets_are_reported_where_they_are_named() {
    let reviews_v3 = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      \
                      weight: 50\n    - destination: {host: reviews, subset: v3}\n      weight: 50\n    \
                      mirror: {host: ratings, subset: v9}\n";
    let reviews_dr = "  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n  - name: v2\n    \
                      labels: {version: v2}\n";
    let found = problems(&[("vs.yaml", &vs("reviews", reviews_v3)), ("dr.yaml", &dr("reviews", reviews_dr))]);
    assert_eq!(
        found.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "vs.yaml#1: VirtualService default/reviews: spec.http[0].route[1].destination.subset: subset v3 of \
             reviews.default.svc.cluster.local is not defined by DestinationRule default/reviews (dr.yaml#1), which \
             defines v1, v2",
            "vs.yaml#1: VirtualService default/reviews: spec.http[0].mirror.subset: subset v9 of \
             ratings.default.svc.cluster.local is not defined by any DestinationRule",
        ]
    );
    // A later rule of the host in the same namespace is merged, as Istio merges them: its
    // subset can be routed to. One from another namespace is not merged.
    let later = "  host: reviews\n  subsets:\n  - name: v3\n    labels: {version: v3}\n";
    let route_v3 = vs("reviews", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v3}\n");
    let rules = load(&[("a.yaml", &dr("reviews", reviews_dr)), ("b.yaml", &dr("reviews-v3", later)), ("c.yaml", &route_v3)]);
    assert!(rules.destination_rule(REVIEWS_HOST).is_some_and(|rule| rule.subset("v3").is_some()));
    let elsewhere = dr("reviews-v3", "  host: reviews.default.svc.cluster.local\n  subsets:\n  - name: v3\n    labels: {version: v3}\n")
        .replace("name: reviews-v3", "name: reviews-v3\n  namespace: other");
    let found = problems(&[("a.yaml", &dr("reviews", reviews_dr)), ("b.yaml", &elsewhere), ("c.yaml", &route_v3)]);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].message,
        "subset v3 of reviews.default.svc.cluster.local is not defined by DestinationRule default/reviews \
         (a.yaml#1), which defines v1, v2; DestinationRule other/reviews-v3 (b.yaml#1) defines it but is not used: \
         the first rule for a host applies, and rules of one host are merged only within one namespace and exportTo"
    );
}

#[test]
fn bad_regex_and_string_matches() {
    let spec = "  hosts: [api]\n  http:\n  - match:\n    - uri: {regex: \"/v(1\"}\n      method: {exact: GET, prefix: G}\n      \
                queryParams:\n        q: {prefix: a}\n      headers:\n        \":authority\": {exact: x}\n        \
                x-a: {suffix: b}\n        x-b: {exact: 3}\n      port: 70000\n    route:\n    - destination: {host: api}\n";
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("api", spec))]),
        [
            "spec.http[0].match[0].uri.regex: invalid regex: unclosed group",
            "spec.http[0].match[0].method: give only one of exact, prefix, regex (found exact, prefix)",
            "spec.http[0].match[0].headers[\":authority\"]: \":authority\" is a pseudo-header, not a header name (use \
             the authority match)",
            "spec.http[0].match[0].headers.x-a.suffix: unknown field; expected one of exact, prefix, regex",
            "spec.http[0].match[0].headers.x-b.exact: expected a string, found a number (3)",
            "spec.http[0].match[0].queryParams.q: queryParams match exact or regex only (Istio has no prefix match for \
             them)",
            "spec.http[0].match[0].port: must be between 1 and 65535, found 70000",
        ]
    );
}

/// The regexes of one load share a budget of compiled bytes: each is charged the
/// smallest size tier it fits (32 KiB for a short pattern), and the one past the
/// budget is refused with its path, whatever file it is in.
#[test]
fn regexes_past_the_load_budget_are_refused() {
    let routes = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| format!("  - match:\n    - uri: {{regex: \"/v{i}/.*\"}}\n    route:\n    - destination: {{host: api}}\n"))
            .collect()
    };
    // 128 MiB of 32 KiB charges.
    let fits = 4096;
    let first = vs("api", &format!("  hosts: [api]\n  http:\n{}", routes(0, fits - 1)));
    let second = vs("web", &format!("  hosts: [web]\n  http:\n{}", routes(fits - 1, fits + 1)));
    let messages = field_messages(&[("a.yaml", &first), ("b.yaml", &second)]);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with(
            "spec.http[1].match[0].uri.regex: the regexes of these rules take more than 128 MiB compiled together"
        ),
        "{messages:?}"
    );
}

#[test]
fn legacy_consecutive_errors() {
    let policy = |outlier: &str| {
        let rules =
            load(&[("dr.yaml", &dr("r", &format!("  host: r\n  trafficPolicy:\n    outlierDetection: {outlier}\n")))]);
        rules.destination_rules[0].traffic_policy.outlier_detection.clone().unwrap()
    };
    let legacy = policy("{consecutiveErrors: 7}");
    assert_eq!((legacy.consecutive_gateway_errors, legacy.consecutive_5xx_errors), (7, 0));
    let both = policy("{consecutiveErrors: 7, consecutive5xxErrors: 3}");
    assert_eq!((both.consecutive_gateway_errors, both.consecutive_5xx_errors), (7, 3));
    let modern = policy("{consecutiveGatewayErrors: 2}");
    assert_eq!((modern.consecutive_gateway_errors, modern.consecutive_5xx_errors), (2, 5));
    assert_eq!(policy("{}"), OutlierDetection::default());
    assert_eq!(
        field_messages(&[(
            "dr.yaml",
            &dr(
                "r",
                "  host: r\n  trafficPolicy:\n    outlierDetection: {consecutiveErrors: 1, \
                                                consecutiveGatewayErrors: 2, maxEjectionPercent: 101}\n"
            )
        )]),
        [
            "spec.trafficPolicy.outlierDetection.consecutiveErrors: give either consecutiveGatewayErrors or the older \
             consecutiveErrors, not both",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100, found 101",
        ]
    );
}

#[test]
fn retries_and_timeouts() {
    let route = |http: &str| {
        let spec = format!("  hosts: [r]\n  http:\n  - route:\n    - destination: {{host: r}}\n{http}");
        load(&[("vs.yaml", &vs("r", &spec))]).virtual_services[0].http[0].clone()
    };
    let r = route("    timeout: 3s\n    retries: {attempts: 1, perTryTimeout: 3s, retryOn: gateway-error}\n");
    assert_eq!(r.timeout, Some(Duration::from_secs(3)));
    assert_eq!(
        r.retries,
        Some(RetryPolicy {
            attempts: 1,
            per_try_timeout: Some(Duration::from_secs(3)),
            retry_on: RetryOn { gateway_error: true, ..RetryOn::default() }
        })
    );
    let r = route("    timeout: 0s\n    retries: {attempts: 3}\n");
    assert_eq!(r.timeout, Some(Duration::ZERO));
    assert_eq!(r.retries, Some(RetryPolicy { attempts: 3, per_try_timeout: None, retry_on: RetryOn::istio_default() }));
    let r = route(
        "    retries: {attempts: 2, retryOn: \"5xx, reset,503, 429,unavailable\", retryRemoteLocalities: true}\n",
    );
    assert_eq!(
        r.retries.unwrap().retry_on,
        RetryOn {
            five_xx: true,
            reset: true,
            grpc_unavailable: true,
            retriable_status_codes: true,
            status_codes: vec![503, 429],
            ..RetryOn::default()
        }
    );
    assert!(route("").retries.is_none());

    let spec = "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    timeout: 1d\n    \
                retries: {attempts: 2, retryOn: \"5xx,sometimes,envoy-ratelimited,999\"}\n";
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("r", spec))]),
        [
            "spec.http[0].timeout: expected a duration such as \"1s\" or \"500ms\": time: unknown unit \"d\" in \
             duration \"1d\"",
            "spec.http[0].retries.retryOn: unknown retry condition \"sometimes\" (meshtel knows 5xx, gateway-error, \
             reset, connect-failure, refused-stream, retriable-4xx, retriable-status-codes, cancelled, \
             deadline-exceeded, internal, resource-exhausted, unavailable and status codes such as 503)",
            "spec.http[0].retries.retryOn: retry condition envoy-ratelimited is not supported by meshtel",
            "spec.http[0].retries.retryOn: 999 is not an HTTP status code",
        ]
    );
}

#[test]
fn rewrite_and_header_operations() {
    let spec = r#"  hosts: [web]
  http:
  - match:
    - uri: {prefix: /old}
    rewrite: {uri: /new, authority: web.internal}
    headers:
      request:
        set: {X-Env: prod, x-count: 3}
        add: {x-tag: a}
        remove: [X-Debug]
      response:
        remove: [server]
    route:
    - destination: {host: web}
      headers:
        response:
          set: {x-served-by: web}
"#;
    let rules = load(&[("vs.yaml", &vs("web", spec))]);
    let route = &rules.virtual_services[0].http[0];
    let rewrite = route.rewrite.as_ref().unwrap();
    assert_eq!((rewrite.uri.as_deref(), rewrite.authority.as_deref()), (Some("/new"), Some("web.internal")));
    assert_eq!(rewrite.rewrite_path("/old/a?x", route.matches.first()), Some("/new/a?x".to_owned()));
    // The request target stays a path whatever the rewrite leaves of it.
    let bare = Rewrite { uri: Some("v2".to_owned()), authority: None };
    assert_eq!(bare.rewrite_path("/old/a", route.matches.first()), Some("/v2/a".to_owned()));
    let empty_rest = Rewrite { uri: Some("v2".to_owned()), authority: None };
    assert_eq!(empty_rest.rewrite_path("/old", route.matches.first()), Some("/v2".to_owned()));
    // `uri: ""` is unset, as in Istio: the authority alone is rewritten, and with
    // nothing else the rewrite is refused.
    let blank = spec.replace("uri: /new", "uri: ''");
    let rules = load(&[("vs.yaml", &vs("web", &blank))]);
    let rewrite = rules.virtual_services[0].http[0].rewrite.as_ref().unwrap();
    assert_eq!((rewrite.uri.as_deref(), rewrite.authority.as_deref()), (None, Some("web.internal")));
    let bare = spec.replace("uri: /new", "uri: v2");
    let rules = load(&[("vs.yaml", &vs("web", &bare))]);
    let route = &rules.virtual_services[0].http[0];
    assert_eq!(route.rewrite.as_ref().unwrap().uri.as_deref(), Some("/v2"), "loaded as the path sent");
    let only_blank = spec.replace("uri: /new, authority: web.internal", "uri: ''");
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("web", &only_blank))]),
        ["spec.http[0].rewrite: give uri, authority, or both"]
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-debug", HeaderValue::from_static("1"));
    headers.insert("x-tag", HeaderValue::from_static("z"));
    route.headers.request.apply(&mut headers);
    assert_eq!(headers.get("x-env").unwrap(), "prod");
    assert_eq!(headers.get("x-count").unwrap(), "3");
    assert_eq!(headers.get_all("x-tag").iter().collect::<Vec<_>>(), ["z", "a"]);
    assert!(headers.get("x-debug").is_none());
    assert_eq!(route.headers.response.remove, [HeaderName::from_static("server")]);
    assert_eq!(route.route[0].headers.response.set[0].0, "x-served-by");

    let bad = r#"  hosts: [web]
  http:
  - rewrite: {}
    headers:
      request:
        set: {Host: x, "x-ip": "%DOWNSTREAM_REMOTE_ADDRESS%", "bad name": v, "x-padded": "v "}
        remove: [":path"]
      responses: {}
    route:
    - destination: {host: web}
"#;
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("web", bad))]),
        [
            "spec.http[0].rewrite: give uri, authority, or both",
            "spec.http[0].headers.responses: unknown field (did you mean response?)",
            "spec.http[0].headers.request.set.Host: \"Host\" may not be changed by a rule: use rewrite.authority to \
             change the authority",
            "spec.http[0].headers.request.set.x-ip: Envoy variables in header values (%DOWNSTREAM_REMOTE_ADDRESS% and \
             the like) are not supported by meshtel; a literal % cannot be told apart from one",
            "spec.http[0].headers.request.set[\"bad name\"]: \"bad name\" is not a valid header name",
            "spec.http[0].headers.request.set.x-padded: \"v \" begins or ends with whitespace, which HTTP/2 refuses \
             in a header value",
            "spec.http[0].headers.request.remove[0]: \":path\" is a pseudo-header; rules may not change it (use \
             rewrite for the authority)",
        ]
    );
}

#[test]
fn hosts_gateways_and_namespaces() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop, namespace: prod}\n\
                spec:\n  hosts: [cart, cart.other, billing.other.svc, API.example.com, \"*.example.org\"]\n  \
                gateways: [mesh]\n  exportTo: [\"*\", \".\"]\n  http:\n  - route:\n    - destination: {host: cart}\n";
    let rules = load(&[("vs.yaml", text)]);
    assert_eq!(
        rules.virtual_services[0].hosts,
        [
            "cart.prod.svc.cluster.local",
            "cart.other.svc.cluster.local",
            "billing.other.svc.cluster.local",
            "api.example.com",
            "*.example.org"
        ]
    );
    assert!(rules.virtual_service("shop.example.org").is_some());
    assert_eq!(rules.virtual_services[0].http[0].route[0].host, "cart.prod.svc.cluster.local");

    let bad = "  hosts: [\"*\", \"reviews:9080\", \"a.*.com\", http://x]\n  http:\n  - route:\n    \
               - destination: {host: \"*.x\"}\n";
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("r", bad))]),
        [
            "spec.hosts[0]: the wildcard host * is not allowed for sidecar (mesh) rules; name the hosts",
            "spec.hosts[1]: \"reviews:9080\" must not name a port (use the port field)",
            "spec.hosts[2]: \"a.*.com\": a wildcard may only be the first label, as in *.example.com",
            "spec.hosts[3]: \"http://x\" must not name a port (use the port field)",
            "spec.http[0].route[0].destination.host: a destination must name one service, not a wildcard",
        ]
    );
}

#[test]
fn a_number_over_its_bound_says_the_bound() {
    let text = dr("big", "  host: big\n  trafficPolicy:\n    connectionPool:\n      http: {http1MaxPendingRequests: 99999999999999}\n");
    let found = problems(&[("big.yaml", &text)]);
    let got: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        ["big.yaml#1: DestinationRule default/big: spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: must be at \
          most 4294967295, found 99999999999999"]
    );
}
