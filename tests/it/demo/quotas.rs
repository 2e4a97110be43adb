//! Switching scenarios with a quota policy of the user's own in place (the README's
//! `ratings-limit`, or one made on `/quotas`): each switch waits for the demo's own
//! policy only, and leaves the user's alone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

use super::{ADMIN_TOKEN, Demo};

/// How long a switch may take: a few hundred ms, on a busy 2-core machine a few s.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);

/// `PUT /api/demo/scenario`: the status, the answer and how long it took.
async fn switch(demo: &Demo, name: Option<&str>) -> (u16, Value, Duration) {
    let started = Instant::now();
    let reply = http()
        .put(demo.query_url("/api/demo/scenario"))
        .header("content-type", "application/json")
        .body(json!({ "name": name }).to_string())
        .send()
        .await
        .expect("PUT /api/demo/scenario");
    let status = reply.status().as_u16();
    let body = reply.bytes().await.expect("the answer");
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, value, started.elapsed())
}

/// `meshtel_proxy_quota_policies` of ratings' proxy: the policies it holds.
async fn held_at_ratings(demo: &Demo) -> f64 {
    demo.proxy_stat("ratings-v1", "meshtel_proxy_quota_policies", &[])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_switches_around_a_quota_policy_of_the_users_own() {
    let demo = Demo::start(None).await;
    // The README's example, through the admin API as `meshtel quota apply` sends it.
    let policy = json!({
        "name": "ratings-limit",
        "description": "1 req/s to ratings when the caller is reviews",
        "match": {"source": {"service": "reviews"}, "destination": {"service": "ratings"}},
        "dimensions": {"source": "source.service", "sourceVersion": "source.version | \"unknown\""},
        "maxAmount": 1,
        "validDuration": "1s",
        "overrides": [{"dimensions": {"sourceVersion": "v3"}, "maxAmount": 5}],
    });
    let reply = http()
        .put(demo.query_url("/api/quotas/ratings-limit"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(policy.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap());
    eventually(
        Duration::from_secs(10),
        "ratings' proxy holds the user's policy",
        || async { (held_at_ratings(&demo).await == 1.0).then_some(()) },
    )
    .await;

    // To the scenario: returns once ratings' proxy holds requestcountquota too (the
    // user's policy alone is not enough).
    let (status, applied, took) = switch(&demo, Some("rate-limit-ratings")).await;
    assert_eq!(status, 200, "{applied}\n{}", demo.log_text());
    assert!(took < SWITCH_TIMEOUT, "took {took:?}");
    assert_eq!(applied["current"], "rate-limit-ratings");
    assert_eq!(applied["quotas"], json!(["requestcountquota"]));
    assert_eq!(
        held_at_ratings(&demo).await,
        2.0,
        "both policies at ratings"
    );

    // Away from it: returns once requestcountquota is gone, the user's staying.
    for name in [None, Some("rate-limit-ratings"), Some("none")] {
        let (status, applied, took) = switch(&demo, name).await;
        assert_eq!(status, 200, "{name:?}: {applied}\n{}", demo.log_text());
        assert!(took < SWITCH_TIMEOUT, "{name:?} took {took:?}");
        let (current, held) = match name {
            Some("rate-limit-ratings") => (json!("rate-limit-ratings"), 2.0),
            _ => (Value::Null, 1.0),
        };
        assert_eq!(applied["current"], current, "{applied}");
        assert_eq!(held_at_ratings(&demo).await, held, "after {name:?}");
        assert_eq!(demo.overview().await["current"], current);
    }
    let quotas = get_json(&demo.query_url("/api/quotas")).await;
    let names: Vec<&str> = quotas["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["ratings-limit"], "the user's policy is left alone");
    assert!(
        !demo.log_text().contains("applying a scenario failed"),
        "{}",
        demo.log_text()
    );

    // A policy of the user's own under the demo's name is not the demo's to replace.
    let mine = json!({
        "name": "requestcountquota",
        "description": "mine",
        "match": {"destination": {"service": "details"}},
        "maxAmount": 1000,
        "validDuration": "1s",
    });
    let reply = http()
        .put(demo.query_url("/api/quotas/requestcountquota"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(mine.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let rules_before =
        std::fs::read_to_string(demo.overview().await["rulesFile"].as_str().unwrap()).unwrap();
    let (status, answer, _) = switch(&demo, Some("rate-limit-ratings")).await;
    assert_eq!(status, 500, "{answer}");
    // The reason is in the answer, and nothing changed: the rules, what is current.
    let said = answer["error"].as_str().unwrap_or_default();
    assert!(
        said.contains("a quota policy named requestcountquota exists and is not the demo's")
            && said.contains("nothing changed: none stays in force"),
        "{answer}"
    );
    assert_eq!(answer["current"], Value::Null, "{answer}");
    assert_eq!(demo.overview().await["current"], Value::Null);
    let rules_after =
        std::fs::read_to_string(demo.overview().await["rulesFile"].as_str().unwrap()).unwrap();
    assert_eq!(
        rules_after, rules_before,
        "the rules file is left as it was"
    );
    let kept = get_json(&demo.query_url("/api/quotas/requestcountquota")).await;
    assert_eq!(kept["description"], "mine", "{kept}");
    let (status, _, _) = switch(&demo, None).await;
    assert_eq!(status, 200);
    let kept = get_json(&demo.query_url("/api/quotas/requestcountquota")).await;
    assert_eq!(
        kept["description"], "mine",
        "switching away leaves it too: {kept}"
    );
    demo.stop().await;
}
