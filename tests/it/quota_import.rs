//! `meshtel quota import --apply` of envoyproxy/ratelimit files against the real
//! binary, then `ShouldRateLimit` on its gRPC port: the greedy descriptor-tree walk, a
//! whitelisted descriptor, a shared wildcard counter, a limit of 0; and an import that
//! would move another domain's policy (same `rate_limit.name`, or derived names that
//! coincide) is refused with nothing written. `quota apply -f` and `import --apply`
//! refuse, before writing anything, a file the server would refuse a part of (two
//! policies on the same descriptors), check the token even when nothing needs writing,
//! and an Istio binding of several services is applied as one policy per service.

use std::process::Command;
use std::time::Duration;

use meshtel_model::rls::rate_limit_descriptor::Entry;
use meshtel_model::rls::rate_limit_response::Code;
use meshtel_model::rls::rate_limit_service_client::RateLimitServiceClient;
use meshtel_model::rls::{RateLimitDescriptor, RateLimitRequest, RateLimitResponse};
use tonic::transport::Channel;

use crate::support::*;

const TOKEN: &str = "quota-import-test-token";

/// Runs `meshtel quota <args>`; (success, stdout + stderr).
fn quota_cli(m: &Meshtel, args: &[&str]) -> (bool, String) {
    quota_cli_with_token(m, Some(TOKEN), args)
}

/// [`quota_cli`] with another token, or none.
fn quota_cli_with_token(m: &Meshtel, token: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
    command
        .arg("quota")
        .args(args)
        .env("MESHTEL_QUERY_URL", m.query_url(""))
        .env_remove("MESHTEL_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("MESHTEL_ADMIN_TOKEN", token);
    }
    let output = command.output().expect("running meshtel quota");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn import(m: &Meshtel, dir: &TestDir, file: &str, yaml: &str) -> (bool, String) {
    let path = dir.path().join(file);
    std::fs::write(&path, yaml).unwrap();
    quota_cli(m, &["import", "--apply", path.to_str().unwrap()])
}

async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    domain: &str,
    entries: &[(&str, &str)],
) -> RateLimitResponse {
    let descriptor = RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        limit: None,
        hits_addend: None,
    };
    let request = RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![descriptor],
        hits_addend: 0,
    };
    client
        .should_rate_limit(request)
        .await
        .unwrap()
        .into_inner()
}

/// (code, requests per unit) of the only status.
fn outcome(response: &RateLimitResponse) -> (i32, Option<u32>) {
    let status = &response.statuses[0];
    (
        status.code,
        status.current_limit.as_ref().map(|l| l.requests_per_unit),
    )
}

const OK: i32 = Code::Ok as i32;
const OVER: i32 = Code::OverLimit as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ratelimit_files_imported_and_enforced_over_rls() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--admin-token", TOKEN]).await;

    let (ok, text) = import(
        &m,
        &dir,
        "tree.yaml",
        r#"
domain: tree
descriptors:
  - key: a
    value: x
    descriptors:
      - key: b
        value: y
        rate_limit: {unit: minute, requests_per_unit: 100}
  - key: a
    descriptors:
      - key: b
        rate_limit: {unit: minute, requests_per_unit: 1}
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: remote_address
    value: 10.0.0.1
  - key: path
    value: /api/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2, name: API paths}
  - key: remote_address
    value: 50.0.0.5
    rate_limit: {unit: minute, requests_per_unit: 0}
"#,
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("tree.remote_address_10.0.0.1 created"),
        "{text}"
    );

    let grpc = m.grpc.expect("gRPC listener");
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut rls = RateLimitServiceClient::new(channel);
    // The collector loads the policies within a second. The CLI writes them one by one
    // in file order, so the last one (a denial that charges nothing) being in force
    // means they all are.
    eventually(Duration::from_secs(5), "the tree domain is loaded", || {
        let mut rls = rls.clone();
        async move {
            let r = ask(&mut rls, "tree", &[("remote_address", "50.0.0.5")]).await;
            (outcome(&r) == (OVER, Some(0))).then_some(())
        }
    })
    .await;
    let r = ask(&mut rls, "tree", &[("a", "x"), ("b", "y")]).await;
    assert_eq!(outcome(&r), (OK, Some(100)));
    // a=x wins its level, and has no b=z below it: no limit (no going back to `a`).
    for _ in 0..3 {
        let r = ask(&mut rls, "tree", &[("a", "x"), ("b", "z")]).await;
        assert_eq!(outcome(&r), (OK, None));
    }
    // Whitelisted: never limited by the 1/min of any address.
    for _ in 0..3 {
        let r = ask(&mut rls, "tree", &[("remote_address", "10.0.0.1")]).await;
        assert_eq!(outcome(&r), (OK, None));
    }
    // Blocked outright.
    let r = ask(&mut rls, "tree", &[("remote_address", "50.0.0.5")]).await;
    assert_eq!(outcome(&r), (OVER, Some(0)));
    // One counter for every path under /api/, reported under the configured name.
    let codes: Vec<i32> = {
        let mut codes = Vec::new();
        for path in ["/api/a", "/api/b", "/api/c"] {
            codes.push(ask(&mut rls, "tree", &[("path", path)]).await.statuses[0].code);
        }
        codes
    };
    assert_eq!(codes, [OK, OK, OVER]);
    let r = ask(&mut rls, "tree", &[("path", "/api/d")]).await;
    assert_eq!(
        r.statuses[0].current_limit.as_ref().unwrap().name,
        "API paths"
    );

    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_does_not_move_another_domains_policy() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--admin-token", TOKEN]).await;
    let rep = "domain: rep\ndescriptors:\n  - key: key1\n    rate_limit: {unit: minute, requests_per_unit: 1, name: one}\n";
    let (ok, text) = import(&m, &dir, "rep.yaml", rep);
    assert!(ok && text.contains("one created"), "{text}");
    // Another file, another domain, the same limit name.
    let other = "domain: other_domain\ndescriptors:\n  - key: api_key\n    rate_limit: {unit: hour, requests_per_unit: 1000, name: one}\n  - key: fresh\n    rate_limit: {unit: hour, requests_per_unit: 5}\n";
    let (ok, text) = import(&m, &dir, "other.yaml", other);
    assert!(!ok, "{text}");
    assert!(text.contains("nothing applied"), "{text}");
    assert!(text.contains(r#"policy "one""#), "{text}");
    assert!(
        text.contains(r#""rep""#) && text.contains(r#""other_domain""#),
        "{text}"
    );
    // Nothing was written: `one` is still rep's, `other_domain.fresh` does not exist.
    let one = get_json(&m.query_url("/api/quotas/one")).await;
    assert_eq!(one["rateLimit"]["domain"], "rep", "{one}");
    assert_eq!(
        get(&m.query_url("/api/quotas/other_domain.fresh"))
            .await
            .status,
        404
    );
    // Importing the same domain again updates it in place.
    let (ok, text) = import(&m, &dir, "rep.yaml", rep);
    assert!(ok && text.contains("one unchanged"), "{text}");
    let (ok, text) = import(
        &m,
        &dir,
        "rep2.yaml",
        &rep.replace("requests_per_unit: 1,", "requests_per_unit: 2,"),
    );
    assert!(ok && text.contains("one updated"), "{text}");

    // Derived names that coincide across domains: a.b + c and a + b → c.
    let (ok, text) = import(
        &m,
        &dir,
        "ab.yaml",
        "domain: a.b\ndescriptors:\n  - key: c\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    assert!(ok && text.contains("a.b.c created"), "{text}");
    let (ok, text) = import(
        &m,
        &dir,
        "a.yaml",
        "domain: a\ndescriptors:\n  - key: b\n    descriptors:\n      - key: c\n        rate_limit: {unit: second, requests_per_unit: 2}\n",
    );
    assert!(!ok, "{text}");
    assert!(text.contains("derived from the descriptor path"), "{text}");
    let abc = get_json(&m.query_url("/api/quotas/a.b.c")).await;
    assert_eq!(abc["rateLimit"]["domain"], "a.b", "{abc}");

    // A policy that limits Checks is not an import's to replace either.
    let path = dir.path().join("by-hand.yaml");
    std::fs::write(&path, "name: by-hand.k\nmaxAmount: 1\nvalidDuration: 1s\n").unwrap();
    let (ok, text) = quota_cli(&m, &["apply", "-f", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = import(
        &m,
        &dir,
        "by-hand-domain.yaml",
        "domain: by-hand\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    assert!(
        !ok && text.contains("not bound to a rate-limit domain"),
        "{text}"
    );
    m.stop().await;
}

/// Writes `yaml` to `file` in `dir`; its path.
fn write(dir: &TestDir, file: &str, yaml: &str) -> String {
    let path = dir.path().join(file);
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_string()
}

/// Names of the stored policies.
async fn stored_names(m: &Meshtel) -> Vec<String> {
    let list = get_json(&m.query_url("/api/quotas")).await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// A policy on domain `d`'s descriptor `key`.
fn rate_limit_policy(name: &str, key: &str, max: u32) -> String {
    format!(
        "name: {name}\nmaxAmount: {max}\nvalidDuration: 1s\nrateLimit:\n  domain: d\n  descriptors:\n    - key: {key}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_server_would_refuse_part_of_is_not_applied_at_all() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--admin-token", TOKEN]).await;
    let (ok, text) = quota_cli(
        &m,
        &[
            "apply",
            "-f",
            &write(&dir, "a.yaml", &rate_limit_policy("held", "k", 1)),
        ],
    );
    assert!(ok && text.contains("held created"), "{text}");

    // A fresh policy first, then one on the stored policy's descriptors, then two of the
    // file on the same descriptors: every problem, nothing written.
    let file = [
        rate_limit_policy("fresh", "f", 1),
        rate_limit_policy("taker", "k", 2),
        rate_limit_policy("twin-a", "t", 1),
        rate_limit_policy("twin-b", "t", 2),
    ]
    .join("---\n");
    let (ok, text) = quota_cli(&m, &["apply", "-f", &write(&dir, "b.yaml", &file)]);
    assert!(!ok, "{text}");
    assert!(text.contains("nothing applied"), "{text}");
    assert!(
        text.contains(
            r#"policy "taker": stored policy "held" already limits these descriptors in domain "d""#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"policies "twin-a" and "twin-b" of the input limit the same descriptors"#),
        "{text}"
    );
    assert_eq!(stored_names(&m).await, ["held"]);

    // The same through an import: its first descriptor is new, its second is held.
    let envoy = "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 5}\n";
    let (ok, text) = import(&m, &dir, "d.yaml", envoy);
    assert!(!ok, "{text}");
    assert!(
        text.contains(r#"policy "d.k": stored policy "held" already limits these descriptors"#),
        "{text}"
    );
    assert_eq!(stored_names(&m).await, ["held"]);

    // Moving the descriptors in one file works: the stored policy's new version is
    // written before the one that takes its descriptors, whatever the file's order.
    let file = [
        rate_limit_policy("taker", "k", 2),
        rate_limit_policy("held", "h", 1),
    ]
    .join("---\n");
    let (ok, text) = quota_cli(&m, &["apply", "-f", &write(&dir, "c.yaml", &file)]);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["held updated (version 2)", "taker created"],
        "{text}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_policies_are_not_reported_applied_with_a_wrong_token() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--admin-token", TOKEN]).await;
    let file = write(&dir, "p.yaml", "name: p\nmaxAmount: 1\nvalidDuration: 1s\n");
    let (ok, text) = quota_cli(&m, &["apply", "-f", &file]);
    assert!(ok && text.contains("p created"), "{text}");
    let (ok, text) = quota_cli(&m, &["apply", "-f", &file]);
    assert!(ok && text.contains("p unchanged"), "{text}");

    let (ok, text) = quota_cli_with_token(&m, Some("wrong-token"), &["apply", "-f", &file]);
    assert!(!ok, "{text}");
    assert!(!text.contains("unchanged"), "{text}");
    assert!(text.contains("invalid admin token (HTTP 403)"), "{text}");
    assert!(text.contains("does not accept this token"), "{text}");
    let (ok, text) = quota_cli_with_token(&m, None, &["apply", "-f", &file]);
    assert!(!ok, "{text}");
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("set MESHTEL_ADMIN_TOKEN"), "{text}");
    // https:// to the plain HTTP query port says so.
    let https = m.query_url("").replacen("http://", "https://", 1);
    let (ok, text) = quota_cli(&m, &["list", "--server", &https]);
    assert!(!ok, "{text}");
    assert!(text.contains("speaks plain HTTP: use http://"), "{text}");

    let envoy = write(
        &dir,
        "e.yaml",
        "domain: e\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    let (ok, text) = quota_cli(&m, &["import", "--apply", &envoy]);
    assert!(ok && text.contains("e.k created"), "{text}");
    let (ok, text) = quota_cli_with_token(&m, Some("wrong-token"), &["import", "--apply", &envoy]);
    assert!(!ok && text.contains("HTTP 403"), "{text}");

    // Checking the token wrote nothing.
    let audit = get_json(&m.query_url("/api/quotas/audit")).await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 2, "{audit}");

    // A script retrying with a retired token is logged at most once per 10 s, with
    // the count, not once per request.
    let url = m.query_url("/api/quotas/p");
    for _ in 0..30 {
        let reply = http()
            .delete(&url)
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 403);
    }
    let log = m.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("for an invalid token"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} lines for 32 refusals:\n{log}"
    );
    m.stop().await;
}

/// The demo's `rate-limit-ratings` scenario: Istio's memquota sample aimed at ratings,
/// its binding naming ratings only.
const RATE_LIMIT_RATINGS: &str = include_str!("../../src/demo/scenarios/rate-limit-ratings.yaml");
const RATINGS_ONLY: &str = "  services:\n  - name: ratings\n    namespace: default\n";
const RULE_MATCH: &str = "  match: destination.labels[\"app\"] == \"ratings\"\n";

/// The scenario as spec §3.7's Bookinfo sample has it: no rule match, the binding
/// naming four services in its own namespace (`services`: YAML list items).
fn bound_to(services: &str) -> String {
    assert!(RATE_LIMIT_RATINGS.contains(RATINGS_ONLY) && RATE_LIMIT_RATINGS.contains(RULE_MATCH));
    RATE_LIMIT_RATINGS
        .replace(RULE_MATCH, "")
        .replace(RATINGS_ONLY, &format!("  services:\n{services}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_istio_binding_of_several_services_applies_to_them_only() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--admin-token", TOKEN]).await;
    // The scenario as the demo applies it: one policy, for ratings.
    let (ok, text) = import(&m, &dir, "scenario.yaml", RATE_LIMIT_RATINGS);
    assert!(ok && text.contains("requestcountquota created"), "{text}");
    let (ok, text) = quota_cli(&m, &["delete", "requestcountquota"]);
    assert!(ok, "{text}");

    let four = "  - name: ratings\n  - name: reviews\n  - name: details\n  - name: productpage\n";
    let (ok, text) = import(&m, &dir, "bookinfo.yaml", &bound_to(four));
    assert!(ok, "{text}");
    let mut names = stored_names(&m).await;
    names.sort();
    assert_eq!(
        names,
        [
            "requestcountquota.details",
            "requestcountquota.productpage",
            "requestcountquota.ratings",
            "requestcountquota.reviews"
        ]
    );
    for service in ["details", "productpage", "ratings", "reviews"] {
        let policy =
            get_json(&m.query_url(&format!("/api/quotas/requestcountquota.{service}"))).await;
        assert_eq!(
            policy["match"],
            serde_json::json!({"destination": {"service": service, "namespace": "istio-system"}}),
            "{policy}"
        );
    }
    // A binding of no service is refused, nothing written.
    let none = bound_to("").replace("  services:\n", "  services: []\n");
    let (ok, text) = import(&m, &dir, "none.yaml", &none);
    assert!(!ok && text.contains("to no service"), "{text}");
    assert_eq!(stored_names(&m).await.len(), 4);
    m.stop().await;
}
