//! Starts the Mixer service (Report + Check + WatchQuotas) and Envoy's rate limit
//! service on 127.0.0.1:0 over one quota engine with a manual clock, and talks to them
//! with tonic clients as the proxies and Envoy do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshtel_collector::quota::ManualClock;
use meshtel_collector::{
    MeshMetrics, QuotaConfig, QuotaEngine, ReportConfig, Reports, mixer_grpc_service,
    report_grpc_service, rls_grpc_service,
};
use meshtel_model::mixer::check_request::QuotaParams;
use meshtel_model::mixer::mixer_client::MixerClient;
use meshtel_model::mixer::{
    CheckRequest, CheckResponse, QuotaAttributes, WatchQuotasRequest, Workload,
};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_model::rls::rate_limit_descriptor::{Entry, RateLimitOverride};
use meshtel_model::rls::rate_limit_response::{Code, rate_limit};
use meshtel_model::rls::rate_limit_service_client::RateLimitServiceClient;
use meshtel_model::rls::{RateLimitDescriptor, RateLimitRequest, RateLimitResponse};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

/// The rate limit service's message bound in these tests.
const RLS_MAX_MESSAGE_BYTES: usize = 64 << 10;

/// A whole day, so windows of any unit start here.
const T0: u64 = 1_699_920_000 * 1_000_000_000;

struct Server {
    addr: SocketAddr,
    engine: Option<Arc<QuotaEngine>>,
    clock: Arc<ManualClock>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(specs: Vec<QuotaPolicySpec>, with_engine: bool) -> Server {
        let clock = Arc::new(ManualClock::new(T0));
        let config = ReportConfig::default();
        let reports = Reports::new(
            MeshMetrics::new(&config.metrics).unwrap(),
            None,
            clock.clone(),
            config,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (engine, task) = if with_engine {
            let engine = Arc::new(QuotaEngine::new(QuotaConfig::default(), clock.clone()).unwrap());
            let load = engine.set_policies(1, specs);
            assert!(load.invalid.is_empty(), "{:?}", load.invalid);
            let router = tonic::transport::Server::builder()
                .add_service(mixer_grpc_service(reports, Some(engine.clone())))
                .add_service(rls_grpc_service(engine.clone(), RLS_MAX_MESSAGE_BYTES));
            let task = tokio::spawn(async move {
                router
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await
                    .unwrap();
            });
            (Some(engine), task)
        } else {
            let router =
                tonic::transport::Server::builder().add_service(report_grpc_service(reports));
            let task = tokio::spawn(async move {
                router
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await
                    .unwrap();
            });
            (None, task)
        };
        Server {
            addr,
            engine,
            clock,
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn mixer(&self) -> MixerClient<Channel> {
        MixerClient::new(self.channel().await)
    }

    async fn rls(&self) -> RateLimitServiceClient<Channel> {
        RateLimitServiceClient::new(self.channel().await)
    }

    fn engine(&self) -> &Arc<QuotaEngine> {
        self.engine.as_ref().unwrap()
    }
}

fn spec(value: serde_json::Value) -> QuotaPolicySpec {
    serde_json::from_value(value).unwrap()
}

fn check(quota: &str, amount: i64, source: &str, dedup: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(QuotaAttributes {
            source: Some(Workload {
                app: source.into(),
                version: "v2".into(),
                ..Workload::default()
            }),
            destination_service_name: "ratings".into(),
            ..QuotaAttributes::default()
        }),
        deduplication_id: dedup.into(),
        quotas: [(
            quota.to_string(),
            QuotaParams {
                amount,
                best_effort: false,
            },
        )]
        .into(),
    }
}

async fn answer(client: &mut MixerClient<Channel>, request: CheckRequest) -> CheckResponse {
    client.check(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn check_grants_then_denies_over_grpc() {
    let server = Server::start(
        vec![spec(json!({
            "name": "ratings",
            "match": {"destination": {"service": "ratings"}},
            "dimensions": {"source": "source.service"},
            "maxAmount": 2,
            "validDuration": "1s",
        }))],
        true,
    )
    .await;
    let mut client = server.mixer().await;
    let first = answer(&mut client, check("ratings", 2, "reviews", "")).await;
    let result = &first.quotas["ratings"];
    assert_eq!(result.granted_amount, 2);
    assert_eq!(result.status_code, 0);
    assert_eq!((result.limit, result.remaining), (2, 0));
    assert_eq!(result.key, "ratings;source=reviews");
    assert_eq!(result.valid_duration.unwrap().seconds, 1);
    assert_eq!(result.window.unwrap().seconds, 1);
    let denied = answer(&mut client, check("ratings", 1, "reviews", "")).await;
    let result = &denied.quotas["ratings"];
    assert_eq!(result.granted_amount, 0);
    assert_eq!(result.status_code, tonic::Code::ResourceExhausted as i32);
    assert_eq!(result.retry_after.unwrap().seconds, 1);
    // Another source is another counter.
    let other = answer(&mut client, check("ratings", 1, "productpage", "")).await;
    assert_eq!(other.quotas["ratings"].granted_amount, 1);
    // The next window.
    server.clock.advance(Duration::from_secs(1));
    let next = answer(&mut client, check("ratings", 1, "reviews", "")).await;
    assert_eq!(next.quotas["ratings"].granted_amount, 1);
    // Unknown quotas fail open.
    let unknown = answer(&mut client, check("nope", 3, "reviews", "")).await;
    assert_eq!(unknown.quotas["nope"].granted_amount, 3);
    assert_eq!(
        unknown.quotas["nope"].status_code,
        tonic::Code::NotFound as i32
    );
    // A bad amount names the field.
    let error = client
        .check(check("ratings", -1, "reviews", ""))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("amount"), "{}", error.message());
}

#[tokio::test]
async fn retried_checks_are_not_charged_twice_over_grpc() {
    let server = Server::start(
        vec![spec(
            json!({"name": "q", "maxAmount": 1, "validDuration": "1m"}),
        )],
        true,
    )
    .await;
    let mut client = server.mixer().await;
    for _ in 0..3 {
        let response = answer(&mut client, check("q", 1, "a", "req-1")).await;
        assert_eq!(response.quotas["q"].granted_amount, 1);
    }
    let other = answer(&mut client, check("q", 1, "a", "req-2")).await;
    assert_eq!(other.quotas["q"].granted_amount, 0);
}

#[tokio::test]
async fn without_an_engine_check_is_unimplemented_and_watch_sends_an_empty_set() {
    let server = Server::start(Vec::new(), false).await;
    let mut client = server.mixer().await;
    let error = client.check(check("q", 1, "a", "")).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unimplemented);
    assert!(error.message().contains("quota"), "{}", error.message());
    let mut stream = client
        .watch_quotas(WatchQuotasRequest {
            proxy_id: "p".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!((first.revision, first.policies_json.as_str()), (0, "[]"));
}

#[tokio::test]
async fn watch_quotas_pushes_a_new_set_within_a_second() {
    let server = Server::start(
        vec![spec(
            json!({"name": "a", "maxAmount": 1, "validDuration": "1s"}),
        )],
        true,
    )
    .await;
    let mut client = server.mixer().await;
    let mut stream = client
        .watch_quotas(WatchQuotasRequest {
            proxy_id: "reviews-v2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.revision, 1);
    let specs: Vec<QuotaPolicySpec> = serde_json::from_str(&first.policies_json).unwrap();
    assert_eq!(specs.len(), 1);
    let changed_at = std::time::Instant::now();
    server.engine().set_policies(
        7,
        vec![
            spec(json!({"name": "a", "maxAmount": 5, "validDuration": "1s"})),
            spec(json!({"name": "b", "maxAmount": 1, "validDuration": "1m"})),
        ],
    );
    let second = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("pushed within 1 s")
        .unwrap()
        .unwrap();
    assert!(changed_at.elapsed() < Duration::from_secs(1));
    assert_eq!(second.revision, 7);
    let specs: Vec<QuotaPolicySpec> = serde_json::from_str(&second.policies_json).unwrap();
    assert_eq!(
        specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(specs[0].max_amount, 5);
}

// ---- Envoy RLS ------------------------------------------------------------------------

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        limit: None,
        hits_addend: None,
    }
}

fn rls_request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: 0,
    }
}

async fn send(
    client: &mut RateLimitServiceClient<Channel>,
    request: RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(request)
        .await
        .unwrap()
        .into_inner()
}

async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    domain: &str,
    descriptors: Vec<RateLimitDescriptor>,
) -> RateLimitResponse {
    send(client, rls_request(domain, descriptors)).await
}

fn rls_policy(name: &str, max: u64, window: &str, entries: serde_json::Value) -> QuotaPolicySpec {
    spec(json!({
        "name": name,
        "maxAmount": max,
        "validDuration": window,
        "rateLimit": {"domain": "edge", "descriptors": entries},
    }))
}

/// envoyproxy/ratelimit's README examples, as policies.
fn rls_policies() -> Vec<QuotaPolicySpec> {
    vec![
        // Any remote address: 10 per second each; one address gets 100.
        rls_policy("per-ip", 10, "1s", json!([{"key": "remote_address"}])),
        rls_policy(
            "trusted-ip",
            100,
            "1s",
            json!([{"key": "remote_address", "value": "50.0.0.5"}]),
        ),
        // A prefix: every 10.* address, 3 per minute per address.
        rls_policy(
            "private",
            3,
            "1m",
            json!([{"key": "remote_address", "value": "10.*"}]),
        ),
        // Two levels: per user on one path.
        rls_policy(
            "login-per-user",
            2,
            "1h",
            json!([{"key": "path", "value": "/login"}, {"key": "user"}]),
        ),
        // Unlimited for the health checker.
        spec(json!({
            "name": "health",
            "unlimited": true,
            "rateLimit": {"domain": "edge", "descriptors": [{"key": "user", "value": "healthcheck"}]},
        })),
        // A global 1/s on messages, replaced by the per-type limit when both match.
        rls_policy(
            "messages",
            1,
            "1s",
            json!([{"key": "kind", "value": "message"}]),
        ),
        spec(json!({
            "name": "marketing",
            "maxAmount": 5,
            "validDuration": "24h",
            "rateLimit": {
                "domain": "edge",
                "descriptors": [{"key": "type", "value": "marketing"}],
                "replaces": ["messages"],
            },
        })),
        // Shadow mode.
        spec(json!({
            "name": "shadowed",
            "maxAmount": 1,
            "validDuration": "1s",
            "shadow": true,
            "rateLimit": {"domain": "edge", "descriptors": [{"key": "shadow"}]},
        })),
    ]
}

#[tokio::test]
async fn rls_any_value_keys_each_value_and_exact_beats_it() {
    let server = Server::start(rls_policies(), true).await;
    let mut client = server.rls().await;
    let ip = |v: &str| descriptor(&[("remote_address", v)]);
    let first = ask(&mut client, "edge", vec![ip("1.2.3.4")]).await;
    assert_eq!(first.overall_code, Code::Ok as i32);
    let status = &first.statuses[0];
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.name.as_str(), limit.requests_per_unit),
        ("per-ip", 10)
    );
    assert_eq!(limit.unit, rate_limit::Unit::Second as i32);
    assert_eq!(status.limit_remaining, 9);
    assert_eq!(status.duration_until_reset.unwrap().seconds, 1);
    for _ in 0..9 {
        ask(&mut client, "edge", vec![ip("1.2.3.4")]).await;
    }
    let over = ask(&mut client, "edge", vec![ip("1.2.3.4")]).await;
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    assert_eq!(over.statuses[0].code, Code::OverLimit as i32);
    assert_eq!(over.statuses[0].limit_remaining, 0);
    // Another address has its own counter; the exact value beats "any value".
    assert_eq!(
        ask(&mut client, "edge", vec![ip("1.2.3.5")])
            .await
            .overall_code,
        Code::Ok as i32
    );
    let trusted = ask(&mut client, "edge", vec![ip("50.0.0.5")]).await;
    let limit = trusted.statuses[0].current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.name.as_str(), limit.requests_per_unit),
        ("trusted-ip", 100)
    );
}

#[tokio::test]
async fn rls_wildcard_beats_any_value_and_counts_per_value() {
    let server = Server::start(rls_policies(), true).await;
    let mut client = server.rls().await;
    let ip = |v: &str| descriptor(&[("remote_address", v)]);
    for _ in 0..3 {
        let r = ask(&mut client, "edge", vec![ip("10.0.0.1")]).await;
        let limit = r.statuses[0].current_limit.as_ref().unwrap();
        assert_eq!(limit.name, "private");
        assert_eq!(limit.unit, rate_limit::Unit::Minute as i32);
        assert_eq!(r.overall_code, Code::Ok as i32);
    }
    let over = ask(&mut client, "edge", vec![ip("10.0.0.1")]).await;
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    // Reset at the minute boundary (T0 is one).
    assert_eq!(over.statuses[0].duration_until_reset.unwrap().seconds, 60);
    assert_eq!(
        ask(&mut client, "edge", vec![ip("10.0.0.2")])
            .await
            .overall_code,
        Code::Ok as i32
    );
}

#[tokio::test]
async fn rls_limits_apply_only_at_the_level_of_the_last_entry() {
    let server = Server::start(rls_policies(), true).await;
    let mut client = server.rls().await;
    let login = |user: &str| descriptor(&[("path", "/login"), ("user", user)]);
    for remaining in [1, 0] {
        let r = ask(&mut client, "edge", vec![login("alice")]).await;
        assert_eq!(
            r.statuses[0].current_limit.as_ref().unwrap().name,
            "login-per-user"
        );
        assert_eq!(r.statuses[0].limit_remaining, remaining);
    }
    assert_eq!(
        ask(&mut client, "edge", vec![login("alice")])
            .await
            .overall_code,
        Code::OverLimit as i32
    );
    assert_eq!(
        ask(&mut client, "edge", vec![login("bob")])
            .await
            .overall_code,
        Code::Ok as i32
    );
    // One level only: the two-level rule does not apply.
    let path_only = ask(&mut client, "edge", vec![descriptor(&[("path", "/login")])]).await;
    assert_eq!(path_only.statuses[0].code, Code::Ok as i32);
    assert!(path_only.statuses[0].current_limit.is_none());
    // Two levels never match a one-level rule either.
    let two = ask(
        &mut client,
        "edge",
        vec![descriptor(&[("remote_address", "1.1.1.1"), ("user", "x")])],
    )
    .await;
    assert!(two.statuses[0].current_limit.is_none());
}

#[tokio::test]
async fn rls_replaces_unlimited_shadow_and_unknown_domain() {
    let server = Server::start(rls_policies(), true).await;
    let mut client = server.rls().await;
    // Both match: "marketing" replaces "messages", which then limits nothing.
    let both = vec![
        descriptor(&[("kind", "message")]),
        descriptor(&[("type", "marketing")]),
    ];
    for _ in 0..3 {
        let r = ask(&mut client, "edge", both.clone()).await;
        assert_eq!(r.overall_code, Code::Ok as i32);
        assert!(r.statuses[0].current_limit.is_none());
        let limit = r.statuses[1].current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.name.as_str(), limit.unit),
            ("marketing", rate_limit::Unit::Day as i32)
        );
    }
    // Alone, "messages" limits.
    let alone = vec![descriptor(&[("kind", "message")])];
    assert_eq!(
        ask(&mut client, "edge", alone.clone()).await.overall_code,
        Code::Ok as i32
    );
    assert_eq!(
        ask(&mut client, "edge", alone).await.overall_code,
        Code::OverLimit as i32
    );
    // Unlimited.
    let health = ask(
        &mut client,
        "edge",
        vec![descriptor(&[("user", "healthcheck")])],
    )
    .await;
    assert_eq!(health.statuses[0].code, Code::Ok as i32);
    assert_eq!(health.statuses[0].limit_remaining, u32::MAX);
    assert!(health.statuses[0].current_limit.is_none());
    // Shadow: counted, answered OK.
    for _ in 0..3 {
        let r = ask(&mut client, "edge", vec![descriptor(&[("shadow", "x")])]).await;
        assert_eq!(r.overall_code, Code::Ok as i32);
    }
    let usage =
        meshtel_model::quota::QuotaUsageReader::usage(server.engine().as_ref(), "shadowed", 5)
            .unwrap();
    assert_eq!((usage.granted, usage.denied), (1, 2));
    assert_eq!(usage.keys[0].key, "shadowed;shadow=x");
    // Unknown domain: OK, one status per descriptor, no limit.
    let unknown = ask(
        &mut client,
        "nowhere",
        vec![descriptor(&[("a", "b")]), descriptor(&[("c", "d")])],
    )
    .await;
    assert_eq!(unknown.overall_code, Code::Ok as i32);
    assert_eq!(unknown.statuses.len(), 2);
    assert!(
        unknown
            .statuses
            .iter()
            .all(|s| s.current_limit.is_none() && s.code == Code::Ok as i32)
    );
}

#[tokio::test]
async fn rls_hits_addend_and_limit_override() {
    let server = Server::start(rls_policies(), true).await;
    let mut client = server.rls().await;
    // Request-level hits_addend.
    let mut request = rls_request("edge", vec![descriptor(&[("remote_address", "7.7.7.7")])]);
    request.hits_addend = 4;
    let r = send(&mut client, request.clone()).await;
    assert_eq!(r.statuses[0].limit_remaining, 6);
    // Per-descriptor hits_addend wins; 0 only checks.
    request.descriptors[0].hits_addend = Some(0);
    let r = send(&mut client, request.clone()).await;
    assert_eq!(r.statuses[0].limit_remaining, 6);
    request.descriptors[0].hits_addend = Some(7);
    let r = send(&mut client, request.clone()).await;
    assert_eq!(r.overall_code, Code::OverLimit as i32);
    request.descriptors[0].hits_addend = Some(6);
    let r = send(&mut client, request).await;
    assert_eq!(
        (r.overall_code, r.statuses[0].limit_remaining),
        (Code::Ok as i32, 0)
    );
    // A limit in the descriptor is used as is (the tree is ignored).
    let mut overridden = descriptor(&[("remote_address", "8.8.8.8")]);
    overridden.limit = Some(RateLimitOverride {
        requests_per_unit: 2,
        unit: 2, // MINUTE
    });
    for code in [Code::Ok, Code::Ok, Code::OverLimit] {
        let r = ask(&mut client, "edge", vec![overridden.clone()]).await;
        assert_eq!(r.statuses[0].code, code as i32);
        let limit = r.statuses[0].current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.requests_per_unit, limit.unit),
            (2, rate_limit::Unit::Minute as i32)
        );
    }
    // Any descriptor over limit makes the whole answer OVER_LIMIT.
    let mixed = ask(
        &mut client,
        "edge",
        vec![descriptor(&[("remote_address", "9.9.9.9")]), overridden],
    )
    .await;
    assert_eq!(mixed.overall_code, Code::OverLimit as i32);
    assert_eq!(mixed.statuses[0].code, Code::Ok as i32);
}

#[tokio::test]
async fn rls_refuses_malformed_requests_naming_the_field() {
    let server = Server::start(rls_policies(), true).await;
    let mut client = server.rls().await;
    let error = client
        .should_rate_limit(rls_request("", vec![descriptor(&[("a", "b")])]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("domain"), "{}", error.message());
    let error = client
        .should_rate_limit(rls_request("edge", vec![]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().contains("descriptors"),
        "{}",
        error.message()
    );
    let error = client
        .should_rate_limit(rls_request("edge", vec![descriptor(&[("", "b")])]))
        .await
        .unwrap_err();
    assert!(
        error.message().contains("descriptors[0].entries[0].key"),
        "{}",
        error.message()
    );
    let mut text = String::new();
    server.engine().render_metrics(&mut text);
    assert!(
        text.contains(
            r#"meshtel_quota_rls_requests_total{code="invalid_argument",domain="edge"} 2"#
        ),
        "{text}"
    );
}

/// A raw unary gRPC call carrying `payload` as the message: `(grpc-status, grpc-message)`.
async fn raw_unary(addr: SocketAddr, path: &str, payload: &[u8]) -> (String, String) {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    body.extend_from_slice(payload);
    let response = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

#[tokio::test]
async fn undecodable_check_and_rate_limit_requests_are_invalid_argument() {
    let server = Server::start(Vec::new(), true).await;
    for path in [
        "/meshtel.mixer.v1.Mixer/Check",
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
    ] {
        let (status, message) = raw_unary(server.addr, path, b"\xff\xff\xff").await;
        assert_eq!(
            status,
            (tonic::Code::InvalidArgument as i32).to_string(),
            "{path}: {message}"
        );
        assert!(
            message.starts_with("failed%20to%20decode") || message.starts_with("failed to decode"),
            "{path}: {message}"
        );
    }
}

/// A request over the port's message bound (`[report] max_message_bytes`) is refused
/// unread, as the port's other calls are.
#[tokio::test]
async fn rls_requests_over_the_message_bound_are_resource_exhausted() {
    let server = Server::start(rls_policies(), true).await;
    let mut client = server.rls().await;
    let big = "x".repeat(RLS_MAX_MESSAGE_BYTES + 1);
    let status = client
        .should_rate_limit(rls_request("edge", vec![descriptor(&[("kind", &big)])]))
        .await
        .expect_err("over the bound");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let small = ask(
        &mut client,
        "edge",
        vec![descriptor(&[("kind", "message")])],
    )
    .await;
    assert_eq!(small.overall_code, Code::Ok as i32);
}
