use axum::body::Body;
use axum::http::{Request, StatusCode};
use meshtel_model::routing::RuleSet;
use serde_json::Value;
use tower::ServiceExt;

use super::api::{Controller, ProxyStats};
use super::apps::{self, INSTANCES, Upstream};
use super::scenarios::{self, SCENARIOS, plan};
use super::*;

fn load_rules(text: &str) -> RuleSet {
    RuleSet::from_sources(&[("demo.yaml".to_owned(), text.to_owned())])
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_scenario_has_a_header_naming_it_and_saying_what_to_look_at() {
    assert_eq!(SCENARIOS.len(), 12);
    for s in &SCENARIOS {
        assert!(
            s.yaml.starts_with(&format!("# {}: ", s.name)),
            "{} header",
            s.name
        );
        assert!(!s.title().is_empty(), "{}", s.name);
        assert!(!s.description().is_empty(), "{}", s.name);
        assert!(s.look_at().len() > 40, "{}: {:?}", s.name, s.look_at());
        assert!(!s.description().contains("Look at:"), "{}", s.name);
        assert_eq!(scenarios::find(s.name), Some(s));
    }
    assert_eq!(scenarios::find("nope"), None);
    assert_eq!(
        SCENARIOS[1].title(),
        "jason sees reviews v2, everybody else v1"
    );
}

#[test]
fn every_scenario_composes_into_rules_the_proxy_loads() {
    let base = load_rules(&plan(None).unwrap().rules);
    assert_eq!(base.destination_rules.len(), 4);
    assert_eq!(base.virtual_services.len(), 1, "details pinned to v1");
    for s in &SCENARIOS {
        let plan = plan(Some(s)).unwrap_or_else(|e| panic!("{}: {e:#}", s.name));
        let rules = load_rules(&plan.rules);
        assert_eq!(
            rules.destination_rules.len(),
            4,
            "{}: one rule per service",
            s.name
        );
        assert!(plan.rules.contains(&s.file()), "{}", s.name);
        if s.name == "rate-limit-ratings" {
            assert_eq!(plan.quotas.len(), 1);
        } else {
            assert!(plan.quotas.is_empty(), "{}", s.name);
        }
    }
}

#[test]
fn a_scenario_rule_replaces_the_base_rule_for_its_host_only() {
    let eject = plan(scenarios::find("eject-broken-instance")).unwrap();
    assert_eq!(eject.rules.matches("kind: DestinationRule").count(), 4);
    assert_eq!(eject.rules.matches("outlierDetection").count(), 1);
    assert!(
        !eject
            .rules
            .contains("destination: {host: details, subset: v1}"),
        "base pin dropped"
    );
    let canary = plan(scenarios::find("canary-v2-buggy")).unwrap();
    assert_eq!(canary.rules.matches("kind: VirtualService").count(), 1);
    assert!(canary.rules.contains("weight: 20"));
    let jason = plan(scenarios::find("jason-to-v2")).unwrap();
    assert_eq!(
        jason.rules.matches("kind: VirtualService").count(),
        2,
        "reviews + the base details pin"
    );
}

#[test]
fn the_rate_limit_scenario_imports_istios_memquota_into_one_policy() {
    let plan = plan(scenarios::find("rate-limit-ratings")).unwrap();
    let policy = &plan.quotas[0];
    assert_eq!(policy.name, "requestcountquota");
    assert_eq!(policy.matches.destination.service, "ratings");
    assert_eq!(policy.max_amount, 500);
    assert_eq!(policy.overrides.len(), 1);
    assert_eq!(policy.overrides[0].max_amount, 1);
    assert!(
        !plan.rules.contains("config.istio.io"),
        "quota documents stay out of the rules"
    );
    policy.compile().unwrap();
}

#[test]
fn proxy_stats_are_read_from_the_admin_page() {
    let text = "# HELP x\nmeshtel_proxy_rules_reloads_total{result=\"ok\"} 3\n\
                meshtel_proxy_rules_reloads_total{result=\"rejected\"} 1\nmeshtel_proxy_quota_policies 2\n\
                meshtel_proxy_ready 1\n";
    assert_eq!(
        ProxyStats::parse(text),
        ProxyStats {
            rules_ok: 3.0,
            rules_rejected: 1.0,
            quota_policies: 2.0
        }
    );
    assert_eq!(ProxyStats::parse(""), ProxyStats::default());
}

#[test]
fn the_data_directory_is_wiped_only_when_it_is_the_demos() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    prepare_data_dir(&dir).unwrap();
    std::fs::write(dir.join("old"), "x").unwrap();
    prepare_data_dir(&dir).unwrap();
    assert!(!dir.join("old").exists());
    assert!(dir.join(MARKER_FILE).exists());
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("wal"), "keep").unwrap();
    let error = prepare_data_dir(&foreign).unwrap_err().to_string();
    assert!(error.contains("not the demo's data directory"), "{error}");
    assert!(foreign.join("wal").exists());
}

async fn call(router: axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn put(path: &str, body: &str) -> Request<Body> {
    Request::put(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn the_api_lists_scenarios_and_refuses_unknown_ones_by_name() {
    let controller = Arc::new(Controller::new(Path::new("/nonexistent-demo-data")).unwrap());
    let router = api::router(controller);
    let (status, body) = call(router.clone(), get("/api/demo")).await;
    assert_eq!(status, StatusCode::OK);
    let overview: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(overview["current"], Value::Null);
    assert_eq!(overview["scenarios"].as_array().unwrap().len(), 12);
    assert_eq!(overview["scenarios"][0]["name"], "route-all-v1");
    assert_eq!(
        overview["scenarios"][0]["file"],
        "src/demo/scenarios/route-all-v1.yaml"
    );
    assert!(
        overview["scenarios"][0]["lookAt"]
            .as_str()
            .unwrap()
            .contains("stars")
    );

    let (status, body) = call(
        router.clone(),
        put("/api/demo/scenario", r#"{"name":"nope"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("\"nope\""),
        "{error}"
    );
    assert_eq!(error["scenarios"].as_array().unwrap().len(), 12);

    let (status, body) = call(router.clone(), put("/api/demo/scenario", "{name")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );

    let (status, _) = call(
        router.clone(),
        put("/api/demo/scenario", r#"{"name":"all-v3"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not wired yet");

    let (status, body) = call(router.clone(), get("/api/demo/scenarios/delay-jason")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("fixedDelay: 7s"));
    let (status, _) = call(router.clone(), get("/api/demo/scenarios/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(router, get("/demo")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("api/demo/scenario"));
}

fn app(workload: &str) -> axum::Router {
    let instance = INSTANCES.iter().find(|i| i.workload() == workload).unwrap();
    // Never called by these apps: v1 reviews, details and ratings make no calls.
    let upstream = Upstream::new("127.0.0.1:9".parse().unwrap(), reqwest::Client::new());
    apps::router(instance, upstream)
}

#[tokio::test]
async fn details_v2_fails_about_half_of_the_reads() {
    let mut failures = 0;
    for _ in 0..200 {
        let (status, _) = call(app("details-v2"), get("/details/0")).await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            failures += 1;
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert!((50..=150).contains(&failures), "{failures} of 200");
    for _ in 0..20 {
        assert_eq!(
            call(app("details-v1"), get("/details/0")).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn reviews_v1_and_ratings_answer_bookinfo_json() {
    let (status, body) = call(app("reviews-v1"), get("/reviews/0")).await;
    assert_eq!(status, StatusCode::OK);
    let reviews: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reviews["podname"], "reviews-v1");
    assert_eq!(reviews["reviews"].as_array().unwrap().len(), 2);
    assert!(
        reviews["reviews"][0].get("rating").is_none(),
        "v1 shows no stars"
    );
    let (status, body) = call(app("ratings-v1"), get("/ratings/0")).await;
    assert_eq!(status, StatusCode::OK);
    let ratings: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ratings["ratings"]["Reviewer1"], 5);
}

#[test]
fn html_is_escaped() {
    assert_eq!(
        apps::escape_html(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn the_instances_match_the_mesh_the_rules_expect() {
    let workloads: Vec<String> = INSTANCES.iter().map(|i| i.workload()).collect();
    assert_eq!(
        workloads,
        [
            "productpage-v1",
            "details-v1",
            "details-v2",
            "reviews-v1",
            "reviews-v2",
            "reviews-v3",
            "ratings-v1"
        ]
    );
}

#[test]
fn the_help_names_every_scenario() {
    for s in &SCENARIOS {
        assert!(DEMO_HELP.contains(s.name), "{} missing from the help", s.name);
    }
    assert_eq!(DEMO_HELP.matches(", ").count() + 1, SCENARIOS.len() + 1, "{DEMO_HELP}");
}

#[test]
fn proxies_are_waited_on_for_the_stored_policies_that_can_match_at_them() {
    use super::api::quotas::{ProxyDestination, check_stored, compiled_policies, lagging};
    let admin: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let proxy = |app: &str| {
        let dump = serde_json::json!({"source_labels": {"app": app, "version": "v1"}});
        ProxyDestination::from_config_dump(admin, &dump).unwrap()
    };
    let proxies = [proxy("ratings"), proxy("productpage")];
    let scenario = scenarios::find("rate-limit-ratings");
    let demo = plan(scenario).unwrap().quotas;
    let user = serde_json::json!({"name": "ratings-limit", "version": 3, "updatedAt": "x",
        "updatedBy": "y", "match": {"destination": {"service": "ratings"}},
        "maxAmount": 1, "validDuration": "1s"});
    let mut data = vec![user];
    data.extend(demo.iter().map(|q| serde_json::to_value(q).unwrap()));
    let both = compiled_policies(&serde_json::json!({ "data": data.clone() })).unwrap();
    let user_only = compiled_policies(&serde_json::json!({ "data": [data[0].clone()] })).unwrap();
    let demo_names: Vec<String> = demo.iter().map(|q| q.name.clone()).collect();

    // Switching to the scenario: ratings' proxy must hold both, not just any one.
    check_stored(&both, &demo_names, &[]).unwrap();
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let both_held = [names(&["requestcountquota", "ratings-limit"]), names(&[])];
    assert_eq!(lagging(&proxies, &both_held, &both), Vec::<String>::new());
    let late = lagging(&proxies, &[names(&["ratings-limit"]), names(&[])], &both);
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(late[0].starts_with("ratings-v1 holds ratings-limit, expected ratings-limit, requestcountquota"), "{late:?}");
    // Another policy of the same count is not the one wanted: names, not a count.
    let swapped = lagging(&proxies, &[names(&["ratings-limit", "someone-elses"]), names(&[])], &both);
    assert_eq!(swapped.len(), 1, "{swapped:?}");
    // Switching away: done once only the user's is left, not when none is.
    check_stored(&user_only, &[], &demo_names).unwrap();
    assert!(check_stored(&both, &[], &demo_names).is_err());
    assert_eq!(lagging(&proxies, &[names(&["ratings-limit"]), names(&[])], &user_only), Vec::<String>::new());
    assert_eq!(lagging(&proxies, &[names(&["ratings-limit", "requestcountquota"]), names(&[])], &user_only).len(), 1);
}

#[test]
fn a_config_file_naming_a_data_dir_is_not_overridden_by_the_demo_default() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.toml");
    std::fs::write(&with, "data_dir = \"/srv/demo\"\n[store]\nflush_rows = 100\n").unwrap();
    let without = dir.path().join("without.toml");
    std::fs::write(&without, "[store]\ndata_dir = \"not-the-top-level-key\"\n").unwrap();
    assert!(config_file_sets_data_dir(Some(&with)).unwrap());
    assert!(!config_file_sets_data_dir(Some(&without)).unwrap());
    assert!(!config_file_sets_data_dir(None).unwrap());
    let missing = config_file_sets_data_dir(Some(&dir.path().join("missing.toml")))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing.toml"), "{missing}");
}

/// The mesh file's endpoints load whatever the ingress listens on, an IPv6 address
/// (`--ingress-listen '[::1]:0'`) included: unquoted, YAML read `[::1]:port` as a list.
#[test]
fn mesh_file_endpoints_load_with_ipv4_and_ipv6_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    for address in ["127.0.0.1:15006", "[::1]:15006"] {
        let instance = &INSTANCES[0];
        let yaml = format!(
            "services:\n  - name: {}\n    port: 9080\n    endpoints:\n{}",
            instance.service,
            mesh::endpoint_yaml(instance, address)
        );
        std::fs::write(&path, &yaml).unwrap();
        let loaded = meshtel_proxy::mesh::load_mesh_file(&path, "default")
            .unwrap_or_else(|e| panic!("{address}: {e:?}\n{yaml}"));
        let service = loaded.resolve(instance.service).unwrap();
        assert_eq!(service.endpoints.len(), 1, "{address}");
    }
}
