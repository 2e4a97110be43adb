//! Quotas end to end (issue 4): the Bookinfo rule "1 request per second to ratings
//! when the caller is reviews", applied with `meshtel quota apply`, enforced by the
//! ratings sidecar through the collector's engine, visible in `istio_requests_total`
//! and on the graph; then edited through `/api/quotas` with If-Match and enforced anew
//! within a second.
//!
//! ```text
//!  test ──► reviews proxy :outbound ──Host: ratings──► ratings proxy :inbound ──► ratings app
//!                                                          │ Check / WatchQuotas
//!                                                          ▼
//!                                                    meshtel serve ◄── meshtel quota apply
//! ```

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing;
use serde_json::Value;
use tonic::service::Routes;

use crate::support::*;

use super::istio_metrics::series_counts;
use super::write_mesh;

/// Runs `meshtel quota <args>` against `m`'s query service.
fn quota_cli(m: &Meshtel, token: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meshtel"))
        .arg("quota")
        .args(args)
        .env("MESHTEL_QUERY_URL", m.query_url(""))
        .env("MESHTEL_ADMIN_TOKEN", token)
        .output()
        .expect("running meshtel quota");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Sends `rate` requests per second for `duration` from reviews to ratings; returns
/// (granted, limited) and checks every 429's headers.
async fn drive(
    client: &reqwest::Client,
    reviews_outbound: std::net::SocketAddr,
    rate: u32,
    duration: Duration,
) -> (usize, usize) {
    let mut granted = 0;
    let mut limited = 0;
    let interval = Duration::from_secs(1) / rate;
    let started = Instant::now();
    let mut next = started;
    while started.elapsed() < duration {
        next += interval;
        let reply = client
            .get(format!("http://{reviews_outbound}/ratings/0"))
            .header("host", "ratings:9080")
            .send()
            .await
            .expect("GET ratings");
        let status = reply.status().as_u16();
        let headers = reply.headers().clone();
        let body = reply.text().await.unwrap_or_default();
        match status {
            200 => {
                assert_eq!(body, "ratings-v1: 5 stars");
                granted += 1;
            }
            429 => {
                limited += 1;
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_else(|| panic!("429 without {name}: {headers:?}"))
                        .to_string()
                };
                assert_eq!(header("x-envoy-ratelimited"), "true");
                assert!(header("x-ratelimit-limit").contains("ratings-limit"), "{headers:?}");
                assert_eq!(header("x-ratelimit-remaining"), "0");
                let retry: u64 = header("retry-after").parse().expect("retry-after seconds");
                assert!(retry <= 1, "retry-after {retry} for a 1 s window");
                assert!(body.contains("ratings-limit"), "429 body: {body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
        tokio::time::sleep_until(next.into()).await;
    }
    (granted, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_ratings_limit_through_real_proxies() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let token = eventually(
        Duration::from_secs(5),
        "meshtel prints the generated admin token at first start",
        || async { generated_token(&m.log_text()) },
    )
    .await;
    let collector = format!("http://{}", m.grpc.unwrap());
    let mesh_path = dir.path().join("mesh.yaml");
    let mesh_arg = mesh_path.to_str().unwrap().to_string();
    write_mesh(&mesh_path, "services: []\n");

    let app_calls = Arc::new(AtomicUsize::new(0));
    let calls = app_calls.clone();
    let ratings_app = AppServer::start(Routes::from(Router::new().route(
        "/ratings/{id}",
        routing::get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { "ratings-v1: 5 stars" }
        }),
    )))
    .await;
    let inbound = format!("127.0.0.1:0={}", ratings_app.authority());
    let common = |service: &'static str, version: &'static str| {
        vec![
            "--mesh".to_string(),
            mesh_arg.clone(),
            "--service".into(),
            service.into(),
            "--version".into(),
            version.into(),
            "--collector".into(),
            collector.clone(),
        ]
    };
    let mut ratings_args = common("ratings", "v1");
    // One Check per request, each allowed up to 1 s: with the default 20 ms a Check
    // slowed by the other tests running in parallel fails open and lets one more in.
    ratings_args.extend([
        "--inbound".into(),
        inbound,
        "--quota-prefetch".into(),
        "false".into(),
        "--quota-timeout".into(),
        "1s".into(),
    ]);
    let ratings_args: Vec<&str> = ratings_args.iter().map(String::as_str).collect();
    let ratings_proxy = MeshProxy::start(&dir, "ratings-v1", &ratings_args).await;
    let reviews_args = common("reviews", "v2");
    let reviews_args: Vec<&str> = reviews_args.iter().map(String::as_str).collect();
    let reviews_proxy = MeshProxy::start(&dir, "reviews-v2", &reviews_args).await;
    write_mesh(
        &mesh_path,
        &format!(
            "services:\n\
             \x20 - name: ratings\n\
             \x20   port: 9080\n\
             \x20   endpoints:\n\
             \x20     - address: {}\n\
             \x20       workload: ratings-v1\n\
             \x20       labels: {{ app: ratings, version: v1 }}\n",
            ratings_proxy.inbound()
        ),
    );
    let client = http();
    eventually(Duration::from_secs(10), "the mesh file is loaded", || async {
        let reply = client
            .get(format!("http://{}/ratings/0", reviews_proxy.outbound))
            .header("host", "ratings:9080")
            .send()
            .await
            .ok()?;
        (reply.status() == 200).then_some(())
    })
    .await;

    // 1. Without a token the API refuses writes; `meshtel quota apply` with it works.
    let policy_path = dir.path().join("ratings-limit.yaml");
    std::fs::write(
        &policy_path,
        "name: ratings-limit\n\
         description: 1 req/s to ratings when the caller is reviews\n\
         match:\n  source: {service: reviews}\n  destination: {service: ratings}\n\
         dimensions:\n  source: source.service\n  destination: destination.service\n\
         maxAmount: 1\nvalidDuration: 1s\n",
    )
    .unwrap();
    let (ok, text) = quota_cli(&m, "wrong-token", &["apply", "-f", policy_path.to_str().unwrap()]);
    assert!(!ok && text.contains("403"), "a wrong token is refused: {text}");
    let (ok, text) = quota_cli(&m, &token, &["apply", "-f", policy_path.to_str().unwrap()]);
    assert!(ok && text.contains("created"), "{text}");
    let (ok, text) = quota_cli(&m, &token, &["list"]);
    assert!(ok && text.contains("ratings-limit") && text.contains("1/1s"), "{text}");
    eventually(Duration::from_secs(2), "the ratings proxy learns the policy", || async {
        (ratings_proxy.stat("meshtel_proxy_quota_policies", &[]).await >= 1.0).then_some(())
    })
    .await;
    let before = app_calls.load(Ordering::SeqCst);

    // 2. 20 req/s for 3 s: one per second passes (3 or 4 epoch seconds are touched).
    let (granted, limited) = drive(&client, reviews_proxy.outbound, 20, Duration::from_secs(3)).await;
    assert!((3..=4).contains(&granted), "granted {granted}, limited {limited}");
    assert!(limited >= 50, "limited {limited}");
    assert_eq!(app_calls.load(Ordering::SeqCst) - before, granted, "denied requests never reach the app");

    // 3. istio_requests_total counts the 429s with flag RL (the ratings side sets the
    //    flag; the reviews side sees a plain 429).
    let metrics_url = m.http_url("/metrics");
    eventually(Duration::from_secs(10), "429/RL series in istio_requests_total", || async {
        let samples = parse_prometheus_text(&get(&metrics_url).await.text());
        let counts = series_counts(&samples, "istio_requests_total");
        let rl: Vec<f64> = samples
            .iter()
            .filter(|s| {
                s.name == "istio_requests_total"
                    && s.label("response_code") == "429"
                    && s.label("response_flags") == "RL"
                    && s.label("reporter") == "destination"
                    && s.label("destination_app") == "ratings"
                    && s.label("source_app") == "reviews"
            })
            .map(|s| s.value)
            .collect();
        let _ = counts;
        (rl.len() == 1 && rl.iter().all(|v| *v as usize == limited)).then_some(())
    })
    .await;

    // 4. ...and the graph shows the edge's 429s with flag RL: the edge is counted from
    //    the caller's side, which sees a plain 429, and takes the flag of the answers
    //    the ratings proxy made itself from its report.
    let graph_url = m.query_url("/api/graph?duration=5m");
    eventually(Duration::from_secs(20), "the graph edge shows the 429s flagged RL", || async {
        let graph = get_json(&graph_url).await;
        let rl = graph["elements"]["edges"]
            .as_array()?
            .iter()
            .map(|e| &e["data"])
            .filter(|e| e["target"].as_str().is_some_and(|t| t.contains("ratings")))
            .any(|e| e["traffic"]["responses"]["429"]["flags"].get("RL").is_some());
        rl.then_some(())
    })
    .await;

    // 5. Usage per dimension key.
    let (ok, text) = quota_cli(&m, &token, &["usage", "ratings-limit"]);
    assert!(ok && text.contains("source=reviews"), "{text}");

    // 6. An edit with a stale ETag is refused (412); with the current one it lands and
    //    is enforced within a second.
    let url = m.query_url("/api/quotas/ratings-limit");
    let current = client.get(&url).bearer_auth(&token).send().await.unwrap();
    let etag = current.headers()["etag"].to_str().unwrap().to_string();
    let mut spec: Value = serde_json::from_slice(&current.bytes().await.unwrap()).unwrap();
    spec.as_object_mut().unwrap().retain(|k, _| {
        !matches!(k.as_str(), "version" | "updatedAt" | "updatedBy")
    });
    spec["maxAmount"] = 5.into();
    let stale = client
        .put(&url)
        .bearer_auth(&token)
        .header("if-match", "\"999\"")
        .header("content-type", "application/json")
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412, "{}", stale.text().await.unwrap());
    let put = client
        .put(&url)
        .bearer_auth(&token)
        .header("if-match", &etag)
        .header("content-type", "application/json")
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (granted, _) = drive(&client, reviews_proxy.outbound, 20, Duration::from_secs(2)).await;
    assert!((10..=15).contains(&granted), "5/s over 2 s granted {granted}");

    // 7. The audit log holds both changes, newest first.
    let audit = client
        .get(m.query_url("/api/quotas/audit?name=ratings-limit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let audit: Value = serde_json::from_slice(&audit).unwrap();
    let rows = audit["data"].as_array().unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(rows.len(), 2, "{audit:#}");
    assert_eq!(rows[0]["action"], "update");
    assert_eq!(rows[0]["before"]["maxAmount"], 1);
    assert_eq!(rows[0]["after"]["maxAmount"], 5);

    // 8. Callers other than reviews are not limited by this policy.
    for _ in 0..20 {
        let reply = client
            .get(format!("http://{}/ratings/0", ratings_proxy.inbound()))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
}
