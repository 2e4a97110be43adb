//! Loading the Istio samples and others, matching through them, and loading directories.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;

mod explain;
mod problems;

const DR_ALL: &str = include_str!("../../tests/data/rules/bookinfo/destination-rule-all.yaml");
const VS_ALL_V1: &str = include_str!("../../tests/data/rules/bookinfo/virtual-service-all-v1.yaml");
const REVIEWS_TEST_V2: &str = include_str!("../../tests/data/rules/samples/virtual-service-reviews-test-v2.yaml");
const REVIEWS_80_20: &str = include_str!("../../tests/data/rules/samples/virtual-service-reviews-80-20.yaml");
const REVIEWS_90_10: &str = include_str!("../../tests/data/rules/samples/virtual-service-reviews-90-10.yaml");
const REVIEWS_50_50: &str = include_str!("../../tests/data/rules/samples/virtual-service-reviews-50-50.yaml");
const RATINGS_DELAY: &str = include_str!("../../tests/data/rules/samples/virtual-service-ratings-test-delay.yaml");
const RATINGS_ABORT: &str = include_str!("../../tests/data/rules/samples/virtual-service-ratings-test-abort.yaml");
const CIRCUIT_BREAKER: &str = include_str!("../../tests/data/rules/samples/httpbin-circuit-breaker.yaml");
const MIRROR: &str = include_str!("../../tests/data/rules/samples/httpbin-mirror.yaml");

const VERSIONS: [&str; 3] = ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"];

/// `text` with its apiVersion replaced by `version`.
fn at_version(text: &str, version: &str) -> String {
    text.replace("networking.istio.io/v1\n", &format!("{version}\n"))
}

fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files.iter().map(|(name, text)| ((*name).to_owned(), (*text).to_owned())).collect()
}

fn load(files: &[(&str, &str)]) -> RuleSet {
    match RuleSet::from_sources(&sources(files)) {
        Ok(rules) => rules,
        Err(error) => panic!("rules should load:\n{}", lines(&error)),
    }
}

fn problems(files: &[(&str, &str)]) -> Vec<RuleProblem> {
    match RuleSet::from_sources(&sources(files)) {
        Ok(_) => panic!("rules should not load"),
        Err(error) => error.rule_problems().to_vec(),
    }
}

/// `field: message` of every problem, in order.
fn field_messages(files: &[(&str, &str)]) -> Vec<String> {
    problems(files).iter().map(|p| format!("{}: {}", p.field, p.message)).collect()
}

fn lines(error: &crate::Error) -> String {
    error.rule_problems().iter().map(|p| format!("{p}\n")).collect()
}

/// One VirtualService in `default` with `spec` (YAML, indented by two).
fn vs(name: &str, spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// One DestinationRule in `default` with `spec`.
fn dr(name: &str, spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

const REVIEWS_HOST: &str = "reviews.default.svc.cluster.local";
const RATINGS_HOST: &str = "ratings.default.svc.cluster.local";
const HTTPBIN_HOST: &str = "httpbin.default.svc.cluster.local";

/// A request as the proxy sees it.
struct Request {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: HeaderMap,
    labels: BTreeMap<String, String>,
}

impl Request {
    fn get(path: &'static str) -> Request {
        Request { method: "GET", path, query: "", headers: HeaderMap::new(), labels: BTreeMap::new() }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Request {
        self.headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        self
    }

    /// The route `host`'s virtual service picks for this request.
    fn route<'r>(&self, rules: &'r RuleSet, host: &str) -> Option<&'r HttpRoute> {
        let attrs = RequestAttrs {
            method: self.method,
            scheme: "http",
            authority: host,
            path: self.path,
            query: self.query,
            port: None,
            headers: &self.headers,
        };
        let source = SourceAttrs { labels: &self.labels, namespace: "default" };
        rules.virtual_service(host)?.route(&attrs, &source)
    }
}

/// `(subset, weight)` of each destination.
fn split(route: &HttpRoute) -> Vec<(Option<&str>, u32)> {
    route.route.iter().map(|d| (d.subset.as_deref(), d.weight)).collect()
}

#[test]
fn bookinfo_all_v1_in_every_api_version() {
    for version in VERSIONS {
        let rules = load(&[
            ("destination-rule-all.yaml", &at_version(DR_ALL, version)),
            ("virtual-service-all-v1.yaml", &at_version(VS_ALL_V1, version)),
        ]);
        assert_eq!(rules.virtual_services.len(), 4, "{version}");
        assert_eq!(rules.destination_rules.len(), 4, "{version}");
        for service in ["productpage", "reviews", "ratings", "details"] {
            let host = format!("{service}.default.svc.cluster.local");
            let vs = rules.virtual_service(&host).unwrap();
            assert_eq!((vs.name.as_str(), vs.namespace.as_str()), (service, "default"));
            assert_eq!(vs.hosts, vec![host.clone()]);
            assert_eq!(vs.http.len(), 1);
            let route = &vs.http[0];
            assert_eq!(route.name, "http[0]");
            assert!(route.matches.is_empty());
            assert_eq!(route.route.len(), 1);
            assert_eq!(route.route[0].host, host);
            assert_eq!(route.route[0].subset.as_deref(), Some("v1"));
            assert_eq!(route.route[0].weight, 100);
            assert_eq!(route.total_weight, 100);
            assert!(route.fault.is_none() && route.timeout.is_none() && route.retries.is_none());
            assert_eq!(rules.traffic_policy(&host, Some("v1")), Some(TrafficPolicy::default()));
        }
        let reviews = rules.destination_rule(REVIEWS_HOST).unwrap();
        let subsets: Vec<(&str, Vec<(&str, &str)>)> = reviews
            .subsets
            .iter()
            .map(|s| (s.name.as_str(), s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()))
            .collect();
        assert_eq!(
            subsets,
            vec![("v1", vec![("version", "v1")]), ("v2", vec![("version", "v2")]), ("v3", vec![("version", "v3")])]
        );
        let ratings = rules.destination_rule(RATINGS_HOST).unwrap();
        let names: Vec<&str> = ratings.subsets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["v1", "v2", "v2-mysql", "v2-mysql-vm"]);
        assert_eq!(rules.sources, ["destination-rule-all.yaml", "virtual-service-all-v1.yaml"]);
        assert_eq!(rules.virtual_services[1].source, "virtual-service-all-v1.yaml#2");
        assert_eq!(rules.destination_rules[3].source, "destination-rule-all.yaml#4");
    }
}

#[test]
fn reviews_test_v2_sends_jason_to_v2() {
    for version in VERSIONS {
        let rules =
            load(&[("dr.yaml", &at_version(DR_ALL, version)), ("vs.yaml", &at_version(REVIEWS_TEST_V2, version))]);
        let vs = rules.virtual_service(REVIEWS_HOST).unwrap();
        assert_eq!(vs.http[0].matches[0].headers.len(), 1);
        assert_eq!(vs.http[0].matches[0].headers[0].0, "end-user");
        assert!(matches!(&vs.http[0].matches[0].headers[0].1, StringMatch::Exact(v) if v == "jason"));

        let jason = Request::get("/reviews/0").header("end-user", "jason").route(&rules, REVIEWS_HOST).unwrap();
        assert_eq!(jason.name, "http[0]");
        assert_eq!(split(jason), [(Some("v2"), 100)]);
        let other = Request::get("/reviews/0").header("end-user", "mary").route(&rules, REVIEWS_HOST).unwrap();
        assert_eq!(other.name, "http[1]");
        assert_eq!(split(other), [(Some("v1"), 100)]);
        let anonymous = Request::get("/reviews/0").route(&rules, REVIEWS_HOST).unwrap();
        assert_eq!(anonymous.name, "http[1]");
        // Header values compare exactly.
        let upper = Request::get("/").header("end-user", "Jason").route(&rules, REVIEWS_HOST).unwrap();
        assert_eq!(upper.name, "http[1]");
    }
}

#[test]
fn weighted_splits_pick_by_roll() {
    for (text, first, second) in [
        (REVIEWS_80_20, (Some("v1"), 80), (Some("v2"), 20)),
        (REVIEWS_90_10, (Some("v1"), 90), (Some("v2"), 10)),
        (REVIEWS_50_50, (Some("v1"), 50), (Some("v3"), 50)),
    ] {
        for version in VERSIONS {
            let rules = load(&[("dr.yaml", &at_version(DR_ALL, version)), ("vs.yaml", &at_version(text, version))]);
            let route = Request::get("/").route(&rules, REVIEWS_HOST).unwrap();
            assert_eq!(split(route), [first, second]);
            assert_eq!(route.total_weight, 100);
            assert_eq!(route.pick(0).unwrap().subset.as_deref(), first.0);
            assert_eq!(route.pick(first.1 - 1).unwrap().subset.as_deref(), first.0);
            assert_eq!(route.pick(first.1).unwrap().subset.as_deref(), second.0);
            assert_eq!(route.pick(99).unwrap().subset.as_deref(), second.0);
        }
    }
}

#[test]
fn ratings_delay_and_abort() {
    for version in VERSIONS {
        let rules =
            load(&[("dr.yaml", &at_version(DR_ALL, version)), ("vs.yaml", &at_version(RATINGS_DELAY, version))]);
        let jason = Request::get("/ratings/0").header("end-user", "jason").route(&rules, RATINGS_HOST).unwrap();
        let delay = jason.fault.as_ref().unwrap().delay.as_ref().unwrap();
        assert_eq!(delay.fixed_delay, Duration::from_secs(7));
        assert_eq!(delay.percent, 100.0);
        assert!(jason.fault.as_ref().unwrap().abort.is_none());
        let other = Request::get("/ratings/0").route(&rules, RATINGS_HOST).unwrap();
        assert!(other.fault.is_none());

        let rules =
            load(&[("dr.yaml", &at_version(DR_ALL, version)), ("vs.yaml", &at_version(RATINGS_ABORT, version))]);
        let jason = Request::get("/ratings/0").header("end-user", "jason").route(&rules, RATINGS_HOST).unwrap();
        let abort = jason.fault.as_ref().unwrap().abort.as_ref().unwrap();
        assert_eq!(abort.status, AbortStatus::Http(500));
        assert_eq!(abort.percent, 100.0);
        assert!(jason.fault.as_ref().unwrap().delay.is_none());
    }
}

#[test]
fn circuit_breaker_policy() {
    for version in VERSIONS {
        let rules = load(&[("cb.yaml", &at_version(CIRCUIT_BREAKER, version))]);
        let expected = TrafficPolicy {
            load_balancer: LoadBalancer::RoundRobin,
            connection_pool: ConnectionPool {
                max_connections: Some(1),
                connect_timeout: None,
                http1_max_pending_requests: Some(1),
                http2_max_requests: None,
                max_requests_per_connection: Some(1),
                max_retries: None,
            },
            outlier_detection: Some(OutlierDetection {
                consecutive_5xx_errors: 1,
                consecutive_gateway_errors: 0,
                interval: Duration::from_secs(1),
                base_ejection_time: Duration::from_secs(180),
                max_ejection_percent: 100,
            }),
        };
        assert_eq!(rules.destination_rule(HTTPBIN_HOST).unwrap().traffic_policy, expected);
        assert_eq!(rules.traffic_policy(HTTPBIN_HOST, None), Some(expected));
        assert_eq!(rules.traffic_policy(HTTPBIN_HOST, Some("v1")), None);
    }
}

#[test]
fn mirror_with_percentage() {
    for version in VERSIONS {
        let rules = load(&[("mirror.yaml", &at_version(MIRROR, version))]);
        let route = Request::get("/headers").route(&rules, HTTPBIN_HOST).unwrap();
        assert_eq!(split(route), [(Some("v1"), 100)]);
        let mirror = route.mirror.as_ref().unwrap();
        assert_eq!(mirror.host, HTTPBIN_HOST);
        assert_eq!(mirror.subset.as_deref(), Some("v2"));
        assert_eq!(mirror.port, None);
        assert_eq!(mirror.percent, 100.0);
    }
    let legacy = "  hosts: [httpbin]\n  http:\n  - route:\n    - destination: {host: httpbin}\n    \
                  mirror: {host: shadow, port: {number: 8080}}\n    mirrorPercent: 25\n";
    let rules = load(&[("vs.yaml", &vs("httpbin", legacy))]);
    let mirror = rules.virtual_services[0].http[0].mirror.as_ref().unwrap();
    assert_eq!(
        (mirror.host.as_str(), mirror.port, mirror.percent),
        ("shadow.default.svc.cluster.local", Some(8080), 25.0)
    );

    let no_mirror = "  hosts: [httpbin]\n  http:\n  - route:\n    - destination: {host: httpbin}\n    \
                     mirrorPercentage: {value: 50}\n";
    assert_eq!(
        field_messages(&[("vs.yaml", &vs("httpbin", no_mirror))]),
        ["spec.http[0].mirrorPercentage: has no effect without mirror"]
    );
}

#[test]
fn matching_conditions() {
    let spec = r#"  hosts: [api]
  http:
  - name: admin
    match:
    - uri: {prefix: /admin}
      method: {regex: "GET|HEAD"}
      headers:
        X-Role: {exact: admin}
        x-trace: {}
      withoutHeaders:
        x-debug: {exact: "1"}
      queryParams:
        tenant: {regex: "t[0-9]+"}
      sourceLabels: {app: frontend}
      sourceNamespace: default
    route:
    - destination: {host: admin}
  - name: case
    match:
    - uri: {exact: /Login}
      ignoreUriCase: true
    - uri: {regex: "/v[0-9]+/.*"}
    - uri: {regex: "/Docs/.*"}
      ignoreUriCase: true
    route:
    - destination: {host: api}
"#;
    let rules = load(&[("vs.yaml", &vs("api", spec))]);
    let host = "api.default.svc.cluster.local";
    let admin = || {
        let mut request = Request::get("/admin/users").header("x-role", "admin").header("x-trace", "");
        request.query = "tenant=t42&x=1";
        request.labels.insert("app".to_owned(), "frontend".to_owned());
        request
    };
    assert_eq!(admin().route(&rules, host).map(|r| r.name.as_str()), Some("admin"));
    let mut post = admin();
    post.method = "POST";
    assert!(post.route(&rules, host).is_none());
    assert!(admin().header("x-debug", "1").route(&rules, host).is_none());
    assert_eq!(admin().header("x-debug", "2").route(&rules, host).map(|r| r.name.as_str()), Some("admin"));
    let mut wrong_tenant = admin();
    wrong_tenant.query = "tenant=acme";
    assert!(wrong_tenant.route(&rules, host).is_none());
    let mut stranger = admin();
    stranger.labels.clear();
    assert!(stranger.route(&rules, host).is_none());
    let mut no_trace = admin();
    no_trace.headers.remove("x-trace");
    assert!(no_trace.route(&rules, host).is_none());

    assert_eq!(Request::get("/LOGIN").route(&rules, host).map(|r| r.name.as_str()), Some("case"));
    assert_eq!(Request::get("/v2/items").route(&rules, host).map(|r| r.name.as_str()), Some("case"));
    // `ignoreUriCase` holds for exact and prefix matches only, not a regex (Istio).
    assert_eq!(Request::get("/Docs/a").route(&rules, host).map(|r| r.name.as_str()), Some("case"));
    assert!(Request::get("/docs/a").route(&rules, host).is_none());
    // A repeated header's values are matched joined by `,`, as Envoy does.
    assert!(admin().header("x-role", "guest").route(&rules, host).is_none());
    // Regexes match the whole path.
    assert!(Request::get("/api/v2/items").route(&rules, host).is_none());
    assert!(Request::get("/other").route(&rules, host).is_none());
}

#[test]
fn empty_documents_lists_and_json() {
    let rules = load(&[
        ("empty.yaml", "# nothing here\n"),
        ("blank.yaml", ""),
        ("separators.yaml", "---\n---\n"),
        (
            "list.yaml",
            &format!(
                "apiVersion: v1\nkind: List\nitems:\n- {}\n",
                serde_json::json!({
                    "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                    "metadata": {"name": "reviews"}, "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
                })
            ),
        ),
        (
            "reviews.json",
            &serde_json::json!({
                "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
                "metadata": {"name": "reviews", "namespace": "default"},
                "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}
            })
            .to_string(),
        ),
    ]);
    assert_eq!((rules.virtual_services.len(), rules.destination_rules.len()), (1, 1));
    assert_eq!(rules.virtual_services[0].source, "reviews.json#1");
    assert_eq!(rules.destination_rules[0].source, "list.yaml#1");

    let bad_item = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  \
                    metadata: {name: r}\n  spec: {host: r, subsets: [{name: V1}]}\n";
    assert_eq!(
        problems(&[("list.yaml", bad_item)]).iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["list.yaml#1: DestinationRule default/r: items[0].spec.subsets[0].name: \"V1\" is not a valid subset name \
             (lower-case letters, digits and '-', at most 63)"]
    );
    let json = problems(&[("bad.json", "{\"kind\": ")]);
    assert!(json[0].message.starts_with("invalid JSON: "), "{}", json[0].message);
}

#[test]
fn subset_policies_replace_the_rules_parts() {
    let spec = r#"  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 250ms}
      http: {http2MaxRequests: 0, maxRetries: 3}
    outlierDetection: {consecutive5xxErrors: 2}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      connectionPool:
        http: {http1MaxPendingRequests: 5}
      outlierDetection: {interval: 5s}
"#;
    let rules = load(&[("dr.yaml", &dr("reviews", spec))]);
    let rule_pool = ConnectionPool {
        max_connections: Some(100),
        connect_timeout: Some(Duration::from_millis(250)),
        max_retries: Some(3),
        ..ConnectionPool::default()
    };
    let rule_outlier = OutlierDetection { consecutive_5xx_errors: 2, ..OutlierDetection::default() };
    let rule_policy = TrafficPolicy {
        load_balancer: LoadBalancer::LeastRequest,
        connection_pool: rule_pool.clone(),
        outlier_detection: Some(rule_outlier.clone()),
    };
    assert_eq!(rules.traffic_policy(REVIEWS_HOST, None), Some(rule_policy.clone()));
    assert_eq!(rules.traffic_policy(REVIEWS_HOST, Some("v1")), Some(rule_policy.clone()));
    assert_eq!(
        rules.traffic_policy(REVIEWS_HOST, Some("v2")),
        Some(TrafficPolicy { load_balancer: LoadBalancer::Random, ..rule_policy.clone() })
    );
    assert_eq!(
        rules.traffic_policy(REVIEWS_HOST, Some("v3")),
        Some(TrafficPolicy {
            load_balancer: LoadBalancer::LeastRequest,
            // The subset's connectionPool replaces the rule's whole.
            connection_pool: ConnectionPool { http1_max_pending_requests: Some(5), ..ConnectionPool::default() },
            outlier_detection: Some(OutlierDetection {
                interval: Duration::from_secs(5),
                ..OutlierDetection::default()
            }),
        })
    );
    assert_eq!(rules.traffic_policy(REVIEWS_HOST, Some("v4")), None);
}

#[test]
fn load_dir_reads_rule_files_in_name_order() {
    let dir = std::env::temp_dir().join(format!("meshtel-rules-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nested.yaml")).unwrap();
    std::fs::write(dir.join("b-vs.yaml"), VS_ALL_V1).unwrap();
    std::fs::write(dir.join("a-dr.yml"), DR_ALL).unwrap();
    for skipped in [".hidden.yaml", "b-vs.yaml~", "c.yaml.swp", "d.yaml.tmp", "notes.txt"] {
        std::fs::write(dir.join(skipped), "not: [valid").unwrap();
    }
    let rules = RuleSet::load_dir(&dir);
    let loaded_paths = RuleSet::load_paths(&[dir.join("a-dr.yml"), dir.join("b-vs.yaml")]);
    std::fs::remove_dir_all(&dir).unwrap();
    let rules = rules.unwrap();
    let names: Vec<String> = rules.sources.iter().map(|s| s.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(names, ["a-dr.yml", "b-vs.yaml"]);
    assert_eq!((rules.virtual_services.len(), rules.destination_rules.len()), (4, 4));
    assert_eq!(loaded_paths.unwrap().virtual_services.len(), 4);

    let missing = RuleSet::load_dir(&dir).unwrap_err();
    assert_eq!(missing.rule_problems().len(), 1);

    // An empty rule file (an editor's truncate before its write) is refused, not read
    // as no rules; a file holding only a comment is a deliberate edit.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-dr.yml"), DR_ALL).unwrap();
    std::fs::write(dir.join("b-vs.yaml"), " \n").unwrap();
    let empty = RuleSet::load_dir(&dir);
    std::fs::write(dir.join("b-vs.yaml"), "# no virtual services for now\n").unwrap();
    let commented = RuleSet::load_dir(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let empty = empty.unwrap_err();
    assert_eq!(empty.rule_problems().len(), 1, "{empty}");
    assert!(empty.rule_problems()[0].source.ends_with("b-vs.yaml"), "{empty}");
    assert!(empty.rule_problems()[0].message.starts_with("is empty"), "{empty}");
    let commented = commented.unwrap();
    assert_eq!((commented.virtual_services.len(), commented.destination_rules.len()), (0, 4));

    let missing = RuleSet::load_dir(&dir).unwrap_err();
    assert_eq!(missing.rule_problems().len(), 1);
    assert_eq!(missing.rule_problems()[0].source, dir.display().to_string());
    assert!(missing.rule_problems()[0].message.starts_with("cannot read the rules directory: "), "{}", missing.rule_problems()[0]);
    assert!(missing.rule_problems()[0].to_string().starts_with(&format!("{}: cannot read", dir.display())));
}

#[test]
fn load_dir_on_the_bookinfo_samples() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rules/bookinfo");
    let rules = RuleSet::load_dir(&dir).unwrap();
    assert_eq!((rules.virtual_services.len(), rules.destination_rules.len()), (4, 4));
    assert!(rules.sources[0].ends_with("destination-rule-all.yaml"));
}

proptest! {
    #[test]
    fn loading_never_panics(text in "\\PC{0,200}") {
        let _ = RuleSet::from_sources(&[("x.yaml".to_owned(), text.clone()), ("x.json".to_owned(), text)]);
    }

    #[test]
    fn weights_pick_every_destination_in_proportion(weights in proptest::collection::vec(0u32..=100, 2..6)) {
        prop_assume!(weights.iter().sum::<u32>() > 0);
        let destinations: String = weights
            .iter()
            .enumerate()
            .map(|(i, w)| format!("    - destination: {{host: s{i}}}\n      weight: {w}\n"))
            .collect();
        let rules = load(&[("vs.yaml", &vs("r", &format!("  hosts: [r]\n  http:\n  - route:\n{destinations}")))]);
        let route = &rules.virtual_services[0].http[0];
        prop_assert_eq!(route.total_weight, weights.iter().sum::<u32>());
        let mut counts = vec![0u32; weights.len()];
        for roll in 0..route.total_weight {
            let picked = route.pick(roll).unwrap();
            let index = route.route.iter().position(|d| std::ptr::eq(d, picked)).unwrap();
            counts[index] += 1;
        }
        prop_assert_eq!(counts, weights);
    }
}

/// Where Istio's defaults differ from a first reading of its fields: a fault without a
/// percentage injects nothing, a retry policy without attempts has no per-try timeout,
/// `gateway-error` retries resets, a rewrite on a route with no uri match replaces the
/// `/` it then matches, and a header with non-ASCII bytes is present.
#[test]
fn istio_defaults_for_faults_retries_rewrites_and_headers() {
    let spec = r#"  hosts: [api]
  http:
  - match:
    - headers: {x-p: {prefix: caf}}
    route:
    - destination: {host: api}
    fault:
      abort: {httpStatus: 418}
      delay: {fixedDelay: 2s}
    retries: {perTryTimeout: 500ms, retryOn: gateway-error}
  - rewrite: {uri: /v2}
    route:
    - destination: {host: api}
"#;
    let rules = load(&[("vs.yaml", &vs("api", spec))]);
    let host = "api.default.svc.cluster.local";
    let mut request = Request::get("/foo/bar");
    request.headers.insert("x-p", HeaderValue::from_bytes("café".as_bytes()).unwrap());
    let first = request.route(&rules, host).unwrap();
    let fault = first.fault.as_ref().unwrap();
    assert_eq!(fault.abort.as_ref().unwrap().percent, 0.0, "no percentage: no request aborted");
    assert_eq!(fault.delay.as_ref().unwrap().percent, 0.0, "no percentage: no request delayed");
    let retries = first.retries.as_ref().unwrap();
    assert_eq!((retries.attempts, retries.per_try_timeout), (0, None));
    assert!(retries.retry_on.retries_reset());
    let other = Request::get("/foo/bar").route(&rules, host).unwrap();
    let rewrite = other.rewrite.as_ref().unwrap();
    assert_eq!(rewrite.rewrite_path("/foo/bar", other.matches.first()).as_deref(), Some("/v2foo/bar"));
}

#[test]
fn destination_rules_of_one_host_and_namespace_merge_as_in_istio() {
    // The first has no traffic policy: the second's applies, to every subset. The
    // second's v1 is not taken (the first defines v1); a third's policy is not (the
    // second's came first). A rule exported only to its namespace is not merged.
    let first = "  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n";
    let second = "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: LEAST_REQUEST}\n    \
                  connectionPool: {tcp: {maxConnections: 7}}\n  subsets:\n  - name: v1\n    labels: {version: old}\n  \
                  - name: v2\n    labels: {version: v2}\n    trafficPolicy:\n      loadBalancer: {simple: RANDOM}\n";
    let third = "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: RANDOM}\n";
    let local = "  host: reviews\n  exportTo: [\".\"]\n  subsets:\n  - name: v9\n    labels: {version: v9}\n";
    let rules = load(&[
        ("a.yaml", &dr("first", first)),
        ("b.yaml", &dr("second", second)),
        ("c.yaml", &dr("third", third)),
        ("d.yaml", &dr("local", local)),
    ]);
    let Some(rule) = rules.destination_rule(REVIEWS_HOST) else { panic!("a rule for reviews") };
    assert_eq!((rule.name.as_str(), rule.source.as_str()), ("first", "a.yaml#1"));
    assert_eq!(rule.traffic_policy.load_balancer, LoadBalancer::LeastRequest);
    assert_eq!(rule.traffic_policy.connection_pool.max_connections, Some(7));
    let names: Vec<&str> = rule.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["v1", "v2"]);
    assert_eq!(rule.subset("v1").map(|s| s.labels["version"].as_str()), Some("v1"));
    let v1 = rules.traffic_policy(REVIEWS_HOST, Some("v1")).unwrap_or_default();
    assert_eq!((v1.load_balancer, v1.connection_pool.max_connections), (LoadBalancer::LeastRequest, Some(7)));
    let v2 = rules.traffic_policy(REVIEWS_HOST, Some("v2")).unwrap_or_default();
    assert_eq!((v2.load_balancer, v2.connection_pool.max_connections), (LoadBalancer::Random, Some(7)));
    assert_eq!(rules.traffic_policy(REVIEWS_HOST, Some("v9")), None);
    assert_eq!(
        rule.merged,
        [
            MergedRule { name: "second".into(), source: "b.yaml#1".into(), subsets: vec!["v2".into()], traffic_policy: true },
            MergedRule { name: "third".into(), source: "c.yaml#1".into(), subsets: vec![], traffic_policy: false },
        ]
    );
    // The loaded objects are kept as written.
    assert_eq!(rules.destination_rules.len(), 4);
    assert_eq!(rules.destination_rules[0].subsets.len(), 1);
    assert_eq!(rules.destination_rules[0].traffic_policy, TrafficPolicy::default());
    let shadowed = rules.shadowed();
    assert_eq!(shadowed.len(), 3, "{shadowed:?}");
    assert!(shadowed[0].starts_with("subset v1 of DestinationRule default/second (b.yaml#1) is not applied"), "{shadowed:?}");
    assert!(shadowed[1].starts_with("the traffic policy of DestinationRule default/third (c.yaml#1)"), "{shadowed:?}");
    assert!(shadowed[2].starts_with("DestinationRule default/local (d.yaml#1) is not applied"), "{shadowed:?}");
    // A proxy in another namespace does not see the rule exported to default only.
    let elsewhere = rules.visible_from("shop").unwrap_or_default().shadowed();
    assert_eq!(elsewhere.len(), 2, "{elsewhere:?}");
    // `rules` also shows the merged rules in force, with what was merged.
    let json = serde_json::to_value(&rules).unwrap_or_default();
    let in_force = json["destination_rules_in_force"].as_array().cloned().unwrap_or_default();
    assert_eq!(in_force.len(), 2, "{json:#}");
    assert_eq!(in_force[0]["merged"][0]["subsets"], serde_json::json!(["v2"]), "{json:#}");
    assert_eq!(in_force[0]["subsets"].as_array().map(Vec::len), Some(2), "{json:#}");
}

/// What a rule merged into another loses is blamed on the rule that took it, not on
/// the first of the host.
#[test]
fn merge_losses_name_the_rule_that_took_the_subset_or_policy() {
    let first = "  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n";
    let second = "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: LEAST_REQUEST}\n  subsets:\n  - name: v2\n    \
                  labels: {version: v2}\n  - name: v3\n    labels: {version: v3}\n";
    let third = "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: RANDOM}\n  subsets:\n  - name: v2\n    \
                 labels: {version: other}\n";
    let rules = load(&[("a.yaml", &dr("first", first)), ("b.yaml", &dr("second", second)), ("c.yaml", &dr("third", third))]);
    assert_eq!(
        rules.shadowed(),
        [
            "subset v2 of DestinationRule default/third (c.yaml#1) is not applied to reviews.default.svc.cluster.local: \
             DestinationRule default/second (b.yaml#1), read first, defines v2",
            "the traffic policy of DestinationRule default/third (c.yaml#1) is not applied to \
             reviews.default.svc.cluster.local: DestinationRule default/second (b.yaml#1), read first, has one",
        ]
    );
    let text = rules.explain();
    // The second rule's block: what it gave, as in force.
    assert!(
        text.contains(
            "DestinationRule default/second (b.yaml#1), host reviews.default.svc.cluster.local
  note: merged into DestinationRule default/first (a.yaml#1), read first: subsets v2, v3 and the traffic policy added
  traffic policy (in force, merged): LEAST_REQUEST; no connection limits; no ejection
  subsets: v2 {version=v2}, v3 {version=v3}
"
        ),
        "{text}"
    );
    // The third gave nothing; it lists no subset.
    assert!(text.contains("read first: nothing added\n"), "{text}");
    assert!(!text.contains("{version=other}"), "{text}");
}
