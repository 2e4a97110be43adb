//! The admin API against the real SQLite repository, in process (`oneshot`); the
//! audit log, usage and a test over a real socket are in `tests/audit_usage.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use meshtel_model::quota::{AdminTokenStore, QuotaPolicyStore, QuotaUsageReader};
use meshtel_store::QuotaRepo;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "configured-token";
const STORED: &str = "stored-token";

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Arc<QuotaRepo>,
    app: Router,
}

async fn fixture_with(config: AdminConfig, usage: Option<Arc<dyn QuotaUsageReader>>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = Arc::new(QuotaRepo::open(dir.path()).await.unwrap());
    repo.add_token_digest(&token_digest(STORED), "test")
        .await
        .unwrap();
    // As a server starts: a configured token replaces the stored one.
    ensure_admin_token(repo.as_ref(), config.token.as_deref())
        .await
        .unwrap();
    let app = quota_router(repo.clone(), repo.clone(), usage, config);
    Fixture {
        _dir: dir,
        repo,
        app,
    }
}

async fn fixture() -> Fixture {
    let config = AdminConfig {
        token: Some(TOKEN.into()),
        ..AdminConfig::default()
    };
    fixture_with(config, None).await
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn etag(&self) -> &str {
        self.headers
            .get(header::ETAG)
            .map_or("", |v| v.to_str().unwrap())
    }
}

/// One request; `headers` as (name, value) pairs; JSON bodies are parsed (else `Null`).
async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "application/json",
            "{status}"
        );
        serde_json::from_slice(&bytes).unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

const AUTH: (&str, &str) = ("authorization", "Bearer configured-token");
const JSON: (&str, &str) = ("content-type", "application/json");
const YAML: (&str, &str) = ("content-type", "application/yaml");

fn policy_json(max_amount: u64) -> String {
    json!({"name": "q", "maxAmount": max_amount, "validDuration": "1s"}).to_string()
}

/// A body of deeply nested brackets is refused before the YAML parser, which takes
/// time quadratic in the depth (a 1 MB body held a runtime thread for minutes).
#[tokio::test]
async fn a_deeply_nested_yaml_body_is_refused_at_once() {
    let f = fixture().await;
    let body = format!("name: q\nmaxAmount: 1\nvalidDuration: 1s\nmatch: {}", "[".repeat(1 << 20));
    let started = std::time::Instant::now();
    let r = call(&f.app, Method::PUT, "/api/quotas/q", &[AUTH, YAML], &body).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let error = r.body["error"].as_str().unwrap();
    assert!(error.contains("nest more than 256 deep"), "{error}");
}

#[tokio::test]
async fn quotas_writes_need_a_valid_bearer_token() {
    let f = fixture().await;
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON],
        &policy_json(1),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(r.body["error"].as_str().unwrap().contains("Bearer"));

    let wrong = ("authorization", "Bearer nope");
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, wrong],
        &policy_json(1),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"error": "invalid admin token"}));
    let r = call(&f.app, Method::DELETE, "/api/quotas/q", &[wrong], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(f.repo.get_policy("q").await.unwrap().is_none());

    // The configured token works; the stored (generated) one no longer does while a
    // token is configured: configuring one retires it.
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, AUTH],
        &policy_json(1),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.body["updatedBy"],
        format!("token:{}", &token_digest(TOKEN)[..8])
    );
    let stored = ("authorization", "Bearer stored-token");
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, stored],
        &policy_json(2),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Without a configured token, the stored one is the key.
    let open = fixture_with(AdminConfig::default(), None).await;
    let r = call(
        &open.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, stored],
        &policy_json(2),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.body["updatedBy"],
        format!("token:{}", &token_digest(STORED)[..8])
    );

    // Reads are open by default.
    assert_eq!(
        call(&f.app, Method::GET, "/api/quotas", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&f.app, Method::GET, "/api/quotas/q", &[], "")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_token_check_answers_204_for_a_write_token_and_writes_nothing() {
    let f = fixture().await;
    let check = |headers: &'static [(&'static str, &'static str)]| {
        let app = f.app.clone();
        async move { call(&app, Method::GET, TOKEN_CHECK_PATH, headers, "").await }
    };
    let r = check(&[AUTH]).await;
    assert_eq!((r.status, r.body), (StatusCode::NO_CONTENT, Value::Null));
    let r = check(&[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    let r = check(&[("authorization", "Bearer nope")]).await;
    assert_eq!(
        (r.status, r.body),
        (
            StatusCode::FORBIDDEN,
            json!({"error": "invalid admin token"})
        )
    );
    let r = call(&f.app, Method::PUT, TOKEN_CHECK_PATH, &[AUTH], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(f.repo.audit(None, 10).await.unwrap().is_empty());
    // A policy may still be named `token`.
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/token",
        &[JSON, AUTH],
        &json!({"maxAmount": 1, "validDuration": "1s"}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(&f.app, Method::GET, "/api/quotas/token", &[], "").await;
    assert_eq!(
        (r.status, &r.body["name"]),
        (StatusCode::OK, &json!("token"))
    );
}

#[tokio::test]
async fn quotas_reads_need_the_token_when_configured() {
    let config = AdminConfig {
        token: Some(TOKEN.into()),
        require_token_for_reads: true,
    };
    let f = fixture_with(config, None).await;
    for uri in [
        "/api/quotas",
        "/api/quotas/q",
        "/api/quotas/audit",
        "/api/quotas/q/usage",
    ] {
        let r = call(&f.app, Method::GET, uri, &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        let r = call(
            &f.app,
            Method::GET,
            uri,
            &[("authorization", "Bearer x")],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    let r = call(&f.app, Method::GET, "/api/quotas", &[AUTH], "").await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({"data": []})));
}

#[tokio::test]
async fn a_second_policy_for_the_same_rate_limit_descriptors_is_refused() {
    let f = fixture().await;
    let policy = |descriptors: Value| {
        json!({
            "maxAmount": 10,
            "validDuration": "1s",
            "rateLimit": {"domain": "edge", "descriptors": descriptors},
        })
        .to_string()
    };
    let put = |name: &'static str, body: String| {
        let app = f.app.clone();
        async move {
            call(
                &app,
                Method::PUT,
                &format!("/api/quotas/{name}"),
                &[JSON, AUTH],
                &body,
            )
            .await
        }
    };
    let first = json!([{"key": "user", "value": "jason"}]);
    assert_eq!(
        put("rl1", policy(first.clone())).await.status,
        StatusCode::CREATED
    );
    let r = put("rl2", policy(first.clone())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["details"][0]["field"], "rateLimit.descriptors");
    assert!(
        r.body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"rl1\""),
        "{}",
        r.body
    );
    // The policy itself may be edited; another value or domain is another limit.
    assert_eq!(put("rl1", policy(first)).await.status, StatusCode::OK);
    let other = json!([{"key": "user", "value": "bob"}]);
    assert_eq!(put("rl2", policy(other)).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn quotas_invalid_policies_answer_400_with_field_paths() {
    let f = fixture().await;
    // (0 is a limit that denies everything; an amount beyond int64 is not.)
    let body = json!({
        "maxAmount": 9_223_372_036_854_775_808u64,
        "validDuration": "soon",
        "dimensions": {"user": "request.headers[\"x-user\"]"},
        "overrides": [{"dimensions": {"nope": "a"}, "maxAmount": 9_223_372_036_854_775_808u64}],
    });
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, AUTH],
        &body.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid quota policy");
    let fields: Vec<&str> = r.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for want in [
        "maxAmount",
        "validDuration",
        "overrides[0].dimensions.nope",
        "overrides[0].maxAmount",
    ] {
        assert!(fields.contains(&want), "{want} not in {fields:?}");
    }
    assert!(r.body["details"][0]["message"].as_str().is_some());

    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, AUTH],
        r#"{"name":"other"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["details"][0]["field"], "name");
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/Bad_Name",
        &[JSON, AUTH],
        &json!({"maxAmount":1,"validDuration":"1s"}).to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.body["details"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );

    for (body, ct) in [
        ("{", JSON),
        ("[1]", JSON),
        ("", JSON),
        ("maxAmmount: 1", YAML),
    ] {
        let r = call(&f.app, Method::PUT, "/api/quotas/q", &[ct, AUTH], body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.body["error"].is_string(), "{body}");
    }
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[("content-type", "text/plain"), AUTH],
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(f.repo.list_policies().await.unwrap().is_empty());
    assert!(f.repo.audit(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn quotas_put_answers_every_problem_of_a_policy_at_once() {
    let f = fixture().await;
    // A type error, an unknown key and three validation problems: all five, one answer.
    let body = r#"{"maxAmount":-3,"validDuration":"0s","algorithm":"fixed-windw","dimensions":{"u":"request.bogus"},"match":{"source":{"sevice":"x"}}}"#;
    let r = call(&f.app, Method::PUT, "/api/quotas/bad", &[JSON, AUTH], body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let details: Vec<(&str, &str)> = r.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["field"].as_str().unwrap(), d["message"].as_str().unwrap()))
        .collect();
    let fields: Vec<&str> = details.iter().map(|(field, _)| *field).collect();
    assert_eq!(
        fields,
        [
            "match.source.sevice",
            "maxAmount",
            "dimensions.u",
            "validDuration",
            "algorithm"
        ],
        "{details:?}"
    );
    assert_eq!(
        details[0].1,
        "unknown field `sevice`; did you mean `service`?"
    );
    assert_eq!(details[1].1, "must be a whole number ≥ 0, not -3");
    // The same in YAML.
    let yaml = "maxAmount: -3\nvalidDuration: 0s\nalgorithm: fixed-windw\ndimensions: {u: request.bogus}\nmatch: {source: {sevice: x}}\n";
    let r = call(&f.app, Method::PUT, "/api/quotas/bad", &[YAML, AUTH], yaml).await;
    assert_eq!(r.body["details"].as_array().unwrap().len(), 5, "{}", r.body);
    assert!(f.repo.list_policies().await.unwrap().is_empty());
}

#[tokio::test]
async fn quotas_put_reads_what_curl_d_sends() {
    // `curl -d @policy.json` sends application/x-www-form-urlencoded: read like a body
    // without Content-Type (YAML, which takes JSON too).
    let f = fixture().await;
    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[FORM, AUTH],
        &policy_json(1),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let yaml = "maxAmount: 2\nvalidDuration: 1s\n";
    let r = call(&f.app, Method::PUT, "/api/quotas/y", &[FORM, AUTH], yaml).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["maxAmount"], 2);
    let r = call(&f.app, Method::PUT, "/api/quotas/n", &[AUTH], yaml).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for other in ["multipart/form-data; boundary=x", "text/html"] {
        let r = call(
            &f.app,
            Method::PUT,
            "/api/quotas/m",
            &[("content-type", other), AUTH],
            &policy_json(1),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{other}");
        let error = r.body["error"].as_str().unwrap();
        assert!(
            error.contains("application/json or application/yaml"),
            "{error}"
        );
    }
    assert_eq!(f.repo.list_policies().await.unwrap().len(), 3);
}

/// A request and what it must answer: (method, conditional header, maxAmount of the
/// body (0: no body), status, the ETag of a success or a part of the error).
type Step = (
    Method,
    Option<(&'static str, &'static str)>,
    u64,
    StatusCode,
    &'static str,
);

#[tokio::test]
async fn quotas_conditional_requests() {
    let f = fixture().await;
    #[rustfmt::skip]
    let steps: &[Step] = &[
        (Method::PUT, Some(("if-none-match", "*")), 1, StatusCode::CREATED, "\"1\""),
        (Method::PUT, Some(("if-none-match", "*")), 1, StatusCode::PRECONDITION_FAILED, "already exists"),
        (Method::GET, None, 0, StatusCode::OK, "\"1\""),
        (Method::GET, Some(("if-none-match", "\"1\"")), 0, StatusCode::NOT_MODIFIED, "\"1\""),
        (Method::PUT, Some(("if-match", "\"1\"")), 2, StatusCode::OK, "\"2\""),
        (Method::PUT, Some(("if-match", "\"1\"")), 3, StatusCode::PRECONDITION_FAILED, "version 2, not 1"),
        // Unchanged: same version.
        (Method::PUT, Some(("if-match", "*")), 2, StatusCode::OK, "\"2\""),
        (Method::PUT, Some(("if-match", "one")), 2, StatusCode::BAD_REQUEST, "If-Match takes"),
        (Method::PUT, Some(("if-match", "W/\"2\"")), 2, StatusCode::PRECONDITION_FAILED, "not at a version"),
        (Method::PUT, Some(("if-match", "\"7\", \"2\"")), 2, StatusCode::OK, "\"2\""),
        (Method::PUT, Some(("if-match", "\"7\", \"3\"")), 3, StatusCode::PRECONDITION_FAILED, "not at a version"),
        (Method::DELETE, Some(("if-match", "\"1\"")), 0, StatusCode::PRECONDITION_FAILED, "version 2, not 1"),
        (Method::DELETE, Some(("if-match", "\"2\"")), 0, StatusCode::NO_CONTENT, ""),
        (Method::DELETE, None, 0, StatusCode::NOT_FOUND, "quota policy \"q\" not found"),
        (Method::GET, None, 0, StatusCode::NOT_FOUND, "not found"),
        (Method::PUT, Some(("if-match", "*")), 2, StatusCode::PRECONDITION_FAILED, "does not exist"),
    ];
    for (i, (method, condition, amount, status, want)) in steps.iter().enumerate() {
        let mut headers = vec![JSON, AUTH];
        headers.extend(*condition);
        let body = if *amount == 0 {
            String::new()
        } else {
            policy_json(*amount)
        };
        let r = call(&f.app, method.clone(), "/api/quotas/q", &headers, &body).await;
        assert_eq!(r.status, *status, "step {i}: {}", r.body);
        let seen = match r.body["error"].as_str() {
            Some(error) => error.to_string(),
            None => r.etag().to_string(),
        };
        assert!(seen.contains(want), "step {i}: {seen:?} lacks {want:?}");
    }
}

#[tokio::test]
async fn quotas_yaml_body_and_policy_shape() {
    let f = fixture().await;
    let yaml = "match: {destination: {service: ratings}}\nmaxAmount: 5\nvalidDuration: 1s\n\
                dimensions: {source: source.service}\n\
                overrides:\n  - dimensions: {source: reviews}\n    maxAmount: 50\n";
    let headers = [YAML, AUTH, ("x-meshtel-actor", "alice")];
    let r = call(&f.app, Method::PUT, "/api/quotas/ratings", &headers, yaml).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = call(&f.app, Method::GET, "/api/quotas", &[], "").await;
    let policy = &r.body["data"][0];
    assert_eq!(policy["name"], "ratings");
    assert_eq!(
        policy["match"],
        json!({"destination": {"service": "ratings"}})
    );
    assert_eq!(policy["overrides"][0]["maxAmount"], 50);
    assert_eq!(
        (policy["version"].as_u64(), policy["updatedBy"].as_str()),
        (Some(1), Some("alice"))
    );
    assert!(policy["updatedAt"].as_str().unwrap().ends_with('Z'));

    // A GET answer sent back is accepted as is (read-only fields ignored): unchanged.
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/ratings",
        &[JSON, AUTH],
        &policy.to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.body["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
}

mod audit_usage;

#[tokio::test]
async fn rate_limit_fields_and_a_zero_limit_round_trip() {
    let f = fixture().await;
    let body = json!({
        "maxAmount": 0,
        "validDuration": "1m",
        "rateLimit": {
            "domain": "share",
            "name": "API paths",
            "descriptors": [{"key": "path", "value": "/api/*", "shareThreshold": true}],
        },
    });
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/shared",
        &[JSON, AUTH],
        &body.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = call(&f.app, Method::GET, "/api/quotas/shared", &[], "").await;
    assert_eq!(r.body["maxAmount"], 0);
    assert_eq!(r.body["rateLimit"]["name"], "API paths");
    assert_eq!(
        r.body["rateLimit"]["descriptors"],
        json!([{"key": "path", "value": "/api/*", "shareThreshold": true}])
    );
    // The GET answer sent back is the same policy.
    let again = call(
        &f.app,
        Method::PUT,
        "/api/quotas/shared",
        &[JSON, AUTH],
        &r.body.to_string(),
    )
    .await;
    assert_eq!(
        (again.status, again.body["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    // shareThreshold only shapes counter keys: the same descriptors are still one limit.
    let mut twin = body.clone();
    twin["rateLimit"]["descriptors"][0]["shareThreshold"] = json!(false);
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/twin",
        &[JSON, AUTH],
        &twin.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["details"][0]["field"], "rateLimit.descriptors");
    // Leaving maxAmount out is not a limit of 0.
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/no-amount",
        &[YAML, AUTH],
        "validDuration: 1s\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["details"][0]["field"], "maxAmount");
}

/// Concurrent writes of two policies for the same descriptors: one is created, the
/// others are refused naming it, as one after the other would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_policies_for_the_same_descriptors_are_refused_but_one() {
    let f = fixture().await;
    let body = json!({
        "maxAmount": 1,
        "validDuration": "1s",
        "rateLimit": {"domain": "race", "descriptors": [{"key": "k"}]},
    })
    .to_string();
    let puts: Vec<_> = (0..12)
        .map(|i| {
            let (app, body) = (f.app.clone(), body.clone());
            tokio::spawn(async move {
                let uri = format!("/api/quotas/race{i}");
                call(&app, Method::PUT, &uri, &[JSON, AUTH], &body)
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for put in puts {
        statuses.push(put.await.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!((created, refused), (1, 11), "{statuses:?}");
    assert_eq!(f.repo.list_policies().await.unwrap().len(), 1);
}

/// The policies together must fit the message every proxy's policy watch reads: a
/// write past it is refused saying so; replacing a policy counts it once.
#[tokio::test]
async fn a_policy_set_too_big_for_the_proxies_is_refused() {
    let f = fixture().await;
    let description = "a".repeat(1_600_000);
    let put = |name: String| {
        let app = f.app.clone();
        let body =
            json!({"maxAmount": 1, "validDuration": "1s", "description": description}).to_string();
        async move {
            let uri = format!("/api/quotas/{name}");
            call(&app, Method::PUT, &uri, &[JSON, AUTH], &body).await
        }
    };
    for i in 0..10 {
        let r = put(format!("big{i}")).await;
        assert_eq!(r.status, StatusCode::CREATED, "big{i}: {}", r.body);
    }
    let r = put("big10".into()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let message = r.body["details"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("11 policies would take") && message.contains("16777216 bytes"),
        "{message}"
    );
    assert_eq!(put("big3".into()).await.status, StatusCode::OK);
    let delete = call(&f.app, Method::DELETE, "/api/quotas/big3", &[AUTH], "").await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
    assert_eq!(put("big10".into()).await.status, StatusCode::CREATED);
}
