//! Audit log, usage, token generation, config, and the API over a real socket.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use meshtel_model::quota::{AdminTokenStore, KeyUsage, QuotaUsage, QuotaUsageReader};
use meshtel_store::QuotaRepo;
use serde_json::{Value, json};

use super::{AUTH, JSON, TOKEN, call, fixture, fixture_with, policy_json};
use crate::quotas::*;

#[tokio::test]
async fn quotas_audit_log_newest_first_with_actors() {
    let f = fixture().await;
    let alice = ("x-meshtel-actor", " alice\t");
    call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, AUTH, alice],
        &policy_json(1),
    )
    .await;
    call(
        &f.app,
        Method::PUT,
        "/api/quotas/q",
        &[JSON, AUTH],
        &policy_json(2),
    )
    .await;
    let r_body = json!({"maxAmount": 1, "validDuration": "1s"}).to_string();
    call(&f.app, Method::PUT, "/api/quotas/r", &[JSON, AUTH], &r_body).await;
    call(&f.app, Method::DELETE, "/api/quotas/q", &[AUTH, alice], "").await;

    let r = call(&f.app, Method::GET, "/api/quotas/audit", &[], "").await;
    let entries = r.body["data"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("delete", "q"),
            ("create", "r"),
            ("update", "q"),
            ("create", "q")
        ]
    );
    let configured = format!("token:{}", &token_digest(TOKEN)[..8]);
    assert_eq!(entries[0]["actor"], "alice");
    assert_eq!(entries[1]["actor"], configured.as_str());
    assert_eq!(entries[0]["after"], Value::Null);
    assert_eq!(entries[2]["before"]["maxAmount"], 1);
    assert_eq!(entries[2]["after"]["maxAmount"], 2);
    assert_eq!(entries[3]["before"], Value::Null);

    let r = call(
        &f.app,
        Method::GET,
        "/api/quotas/audit?name=q&limit=2",
        &[],
        "",
    )
    .await;
    let actions: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "update"]);
    // The next page: entries older than the last one shown.
    let last = r.body["data"][1]["id"].as_i64().unwrap();
    let page = format!("/api/quotas/audit?name=q&limit=2&before={last}");
    let r = call(&f.app, Method::GET, &page, &[], "").await;
    let rest: Vec<(&str, i64)> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].0, "create");
    assert!(rest[0].1 < last);
    for bad in ["limit=0", "before=0", "before=-3", "before=abc"] {
        let r = call(
            &f.app,
            Method::GET,
            &format!("/api/quotas/audit?{bad}"),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = call(&f.app, Method::GET, "/api/quotas/audit?before=abc", &[], "").await;
    assert_eq!(
        r.body["error"],
        "before must be an audit entry's id (a whole number from 1), not \"abc\""
    );
    let r = call(
        &f.app,
        Method::PUT,
        "/api/quotas/audit",
        &[JSON, AUTH],
        &policy_json(1),
    )
    .await;
    assert_eq!(
        (r.status, r.body["details"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let r = call(&f.app, Method::POST, "/api/quotas", &[AUTH], "").await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method not allowed"))
    );
}

/// A usage reader that knows one quota, `q`.
struct FakeUsage;

impl QuotaUsageReader for FakeUsage {
    fn usage(&self, name: &str, limit: usize) -> Option<QuotaUsage> {
        (name == "q").then(|| QuotaUsage {
            name: name.into(),
            granted: 7,
            denied: 2,
            keys: (0..3usize.min(limit))
                .map(|i| KeyUsage {
                    key: format!("q;user=u{i}"),
                    dimensions: [("user".to_string(), format!("u{i}"))].into(),
                    used: 1,
                    limit: 5,
                    reset_after_ms: 400,
                    granted: 3,
                    denied: 1,
                })
                .collect(),
            key_count: 3,
        })
    }
}

#[tokio::test]
async fn quotas_usage_from_the_engine_or_503() {
    let f = fixture().await;
    let r = call(&f.app, Method::GET, "/api/quotas/q/usage", &[], "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("no quota engine")
    );

    let config = AdminConfig {
        token: Some(TOKEN.into()),
        ..AdminConfig::default()
    };
    let f = fixture_with(config, Some(Arc::new(FakeUsage))).await;
    let r = call(&f.app, Method::GET, "/api/quotas/q/usage?limit=2", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.body["granted"].as_u64(), r.body["keyCount"].as_u64()),
        (Some(7), Some(3))
    );
    // Named for what the engine counts: tokens and Check decisions, not requests.
    assert_eq!(
        (
            r.body["tokensGranted"].as_u64(),
            r.body["checksDenied"].as_u64()
        ),
        (Some(7), Some(2))
    );
    assert_eq!(
        (
            r.body["keys"][0]["tokensGranted"].as_u64(),
            r.body["keys"][0]["checksDenied"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(r.body["denied"], 2, "the older name stays");
    assert_eq!(r.body["keys"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["keys"][0]["dimensions"], json!({"user": "u0"}));
    assert_eq!(r.body["keys"][0]["resetAfterMs"], 400);
    let r = call(&f.app, Method::GET, "/api/quotas/nope/usage", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Stored but not loaded by the engine yet: nothing counted.
    call(
        &f.app,
        Method::PUT,
        "/api/quotas/fresh",
        &[JSON, AUTH],
        &json!({"maxAmount":1,"validDuration":"1s"}).to_string(),
    )
    .await;
    let r = call(&f.app, Method::GET, "/api/quotas/fresh/usage", &[], "").await;
    assert_eq!(
        r.body,
        json!({"name":"fresh","tokensGranted":0,"checksDenied":0,"granted":0,"denied":0,"keys":[],"keyCount":0})
    );
    let r = call(&f.app, Method::GET, "/api/quotas/q/usage?limit=x", &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn quotas_ensure_admin_token_generates_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Arc::new(QuotaRepo::open(dir.path()).await.unwrap());
    let token = ensure_admin_token(repo.as_ref(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(repo.token_digests().await.unwrap(), [token_digest(&token)]);
    assert_eq!(ensure_admin_token(repo.as_ref(), None).await.unwrap(), None);
    let write = |app: &Router, token: &str, version: u64| {
        let (app, auth) = (app.clone(), format!("Bearer {token}"));
        async move {
            let headers = [JSON, ("authorization", auth.as_str())];
            call(
                &app,
                Method::PUT,
                "/api/quotas/q",
                &headers,
                &policy_json(version),
            )
            .await
            .status
        }
    };
    let app = quota_router(repo.clone(), repo.clone(), None, AdminConfig::default());
    assert_eq!(write(&app, &token, 1).await, StatusCode::CREATED);

    // A configured token retires the generated one for good, on every process of
    // the data directory: one started before it (`app`) refuses the generated token
    // at once and takes the configured one.
    assert_eq!(
        ensure_admin_token(repo.as_ref(), Some(" configured "))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        repo.token_digests().await.unwrap(),
        [token_digest("configured")]
    );
    assert_eq!(write(&app, &token, 2).await, StatusCode::FORBIDDEN);
    assert_eq!(write(&app, "configured", 2).await, StatusCode::OK);
    // A later start without a configured token keeps it, and generates nothing.
    assert_eq!(ensure_admin_token(repo.as_ref(), None).await.unwrap(), None);
    let unconfigured = quota_router(repo.clone(), repo.clone(), None, AdminConfig::default());
    assert_eq!(write(&unconfigured, "configured", 3).await, StatusCode::OK);
    // Configuring another retires that one too, everywhere.
    ensure_admin_token(repo.as_ref(), Some("newer"))
        .await
        .unwrap();
    for app in [&app, &unconfigured] {
        assert_eq!(write(app, "configured", 4).await, StatusCode::FORBIDDEN);
    }
    assert_eq!(write(&unconfigured, "newer", 4).await, StatusCode::OK);
}

#[test]
fn quotas_admin_config_defaults_and_redaction() {
    let config = AdminConfig::default();
    assert_eq!(
        toml_like(&config),
        json!({"require_token_for_reads": false})
    );
    assert_eq!(serde_json::from_str::<AdminConfig>("{}").unwrap(), config);
    assert!(serde_json::from_str::<AdminConfig>(r#"{"tokens":"x"}"#).is_err());
    let secret = AdminConfig {
        token: Some("hunter2".into()),
        ..config
    };
    assert!(!format!("{secret:?}").contains("hunter2"));
}

fn toml_like(config: &AdminConfig) -> Value {
    serde_json::to_value(config).unwrap()
}

#[tokio::test]
async fn quotas_over_a_real_socket() {
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, f.app).await });
    let client = reqwest::Client::new();
    let url = format!("{base}/api/quotas/ratings");

    let r = client
        .put(&url)
        .header("content-type", "application/yaml")
        .body("maxAmount: 1\nvalidDuration: 1s\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = client
        .put(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/yaml")
        .header("if-none-match", "*")
        .body("maxAmount: 1\nvalidDuration: 1s\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let r = client
        .get(format!("{base}/api/quotas"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let list: DataJson<Vec<PolicyJson>> =
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((list.data.len(), list.data[0].spec.max_amount), (1, 1));
    let r = client
        .delete(&url)
        .bearer_auth(TOKEN)
        .header("if-match", "\"9\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let body: crate::error::AdminErrorBody =
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(body.error.contains("version 1, not 9"), "{}", body.error);
    let r = client.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .get(format!("{base}/api/quotas/audit"))
        .send()
        .await
        .unwrap();
    let audit: DataJson<Vec<AuditJson>> =
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        audit
            .data
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["delete", "create"]
    );
    server.abort();
}
