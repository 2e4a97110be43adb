//! Policy edits reach leases: an enforcer with its policy watch against the real
//! collector quota engine over gRPC on loopback, edited the way the collector's sync
//! does it (`QuotaEngine::set_policies`, pushed over `WatchQuotas`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use meshtel_collector::quota::PolicyStream;
use meshtel_collector::{QuotaConfig, QuotaEngine};
use meshtel_model::mixer::mixer_server::Mixer;
use meshtel_model::mixer::{CheckRequest, CheckResponse, ReportRequest, ReportResponse, WatchQuotasRequest};
use meshtel_model::quota::QuotaPolicySpec;
use tonic::transport::Endpoint;

use super::reviews;
use crate::mesh::WorkloadIdentity;
use crate::quota::{QuotaEnforcer, QuotaSettings, QuotaStats, RequestView};
use crate::test_support::{ReportStreamOf, eventually, serve_mixer};

/// An edit must be enforced within this long (README: "within 1 s").
const EDIT_DEADLINE: Duration = Duration::from_secs(1);

/// Check and WatchQuotas from a real engine. Check decides at once and answers after
/// `answer_delay_ms` (to hold an answer in flight across an edit).
#[derive(Clone)]
struct EngineMixer {
    engine: Arc<QuotaEngine>,
    answer_delay_ms: Arc<AtomicU64>,
    /// Checks decided (warm-up Checks, which ask for no quota, aside).
    decided: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl Mixer for EngineMixer {
    type ReportStream = ReportStreamOf<ReportResponse>;
    type WatchQuotasStream = PolicyStream;

    async fn report(&self, _request: tonic::Request<tonic::Streaming<ReportRequest>>) -> Result<tonic::Response<Self::ReportStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("no reports in this test"))
    }

    async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let answer = self.engine.check_request(request.get_ref()).map_err(|e| tonic::Status::internal(e.to_string()));
        if !request.get_ref().quotas.is_empty() {
            self.decided.fetch_add(1, Ordering::SeqCst);
            let delay = self.answer_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        answer.map(tonic::Response::new)
    }

    async fn watch_quotas(&self, _request: tonic::Request<WatchQuotasRequest>) -> Result<tonic::Response<PolicyStream>, tonic::Status> {
        Ok(tonic::Response::new(self.engine.policy_stream()))
    }
}

impl EngineMixer {
    /// Replaces the engine's policies (as the collector's sync does on an edit).
    fn set_policies(&self, revision: i64, specs: &[&str]) {
        let specs: Vec<QuotaPolicySpec> = specs.iter().map(|s| serde_json::from_str(s).expect("policy spec")).collect();
        let load = self.engine.set_policies(revision, specs);
        assert!(load.invalid.is_empty(), "invalid test policies: {:?}", load.invalid);
    }
}

/// The collector and a `reviews` enforcer watching its policies.
struct Harness {
    collector: EngineMixer,
    enforcer: QuotaEnforcer,
    caller: WorkloadIdentity,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Harness {
    /// Prefetch on, leases of at least `min_prefetch` tokens, a Check timeout generous
    /// enough for a loaded machine.
    async fn start(min_prefetch: u64) -> Harness {
        let engine = Arc::new(QuotaEngine::with_system_clock(QuotaConfig::default()).expect("engine"));
        let collector = EngineMixer { engine, answer_delay_ms: Arc::default(), decided: Arc::default() };
        let addr = serve_mixer(collector.clone()).await;
        let (identity, service) = reviews();
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
        let settings = QuotaSettings { timeout: Duration::from_secs(2), min_prefetch, ..QuotaSettings::default() };
        let stats = QuotaStats::register(&prometheus::Registry::new()).expect("stats");
        let enforcer = QuotaEnforcer::new(settings, &identity, &service, &endpoint, "reviews-test", stats);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(enforcer.watcher(endpoint, "reviews-test".to_owned()).run(stopped));
        let caller = WorkloadIdentity { name: "productpage-v1".into(), namespace: "default".into(), app: "productpage".into(), version: "v1".into() };
        Harness { collector, enforcer, caller, _stop: stop }
    }

    /// Edits the policies and waits until the enforcer holds them.
    async fn set_policies(&self, revision: i64, specs: &[&str]) {
        self.collector.set_policies(revision, specs);
        eventually(&format!("policy revision {revision} at the proxy"), || (self.enforcer.policies().revision == revision).then_some(())).await;
    }

    /// True when a GET of `path` is let through.
    async fn allowed(&self, path: &str) -> bool {
        let headers = HeaderMap::new();
        let view = RequestView { source: &self.caller, method: "GET", path, headers: &headers };
        self.enforcer.check_inbound(view).await.is_none()
    }

    /// Sends a request every 10 ms until one is `allowed` (or not); returns how long
    /// after `since` that was, or `None` when it did not happen within a second.
    async fn first(&self, allowed: bool, path: &str, since: Instant) -> Option<Duration> {
        while since.elapsed() < EDIT_DEADLINE {
            if self.allowed(path).await == allowed {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Check RPCs answered.
    fn check_rpcs(&self) -> u64 {
        self.enforcer.stats().check_rpcs.with_label_values(&["OK"]).get()
    }

    /// Tokens leased for counter `key`.
    fn leased(&self, key: &str) -> Option<u64> {
        self.enforcer.shared.leases.lock().get(key).map(|entry| entry.lease.available(Instant::now()))
    }
}

fn hourly(max_amount: u64) -> String {
    format!(r#"{{"name": "hourly", "match": {{"destination": {{"service": "reviews"}}}}, "maxAmount": {max_amount}, "validDuration": "1h"}}"#)
}

/// The repro: leased tokens of a policy edited to `maxAmount: 0` must stop admitting.
#[tokio::test]
async fn an_edit_to_max_amount_zero_denies_within_a_second_although_tokens_are_leased() {
    let proxy = Harness::start(1000).await;
    proxy.set_policies(1, &[&hourly(100_000)]).await;
    for _ in 0..20 {
        assert!(proxy.allowed("/reviews/1").await);
    }
    let leased = proxy.leased("hourly").expect("a lease");
    assert!(leased >= 900, "the lease holds most of its 1000 tokens: {leased}");

    let edited = Instant::now();
    proxy.collector.set_policies(2, &[&hourly(0)]);
    let denied_after = proxy.first(false, "/reviews/1", edited).await;
    assert!(denied_after.is_some(), "still admitted 1 s after the edit to maxAmount 0 (tokens leased: {:?})", proxy.leased("hourly"));
    for _ in 0..10 {
        assert!(!proxy.allowed("/reviews/1").await, "admitted after a denial under maxAmount 0");
    }
}

/// The mirror case: a denial held locally until the window's end is forgotten when
/// the limit is raised.
#[tokio::test]
async fn raising_the_limit_after_a_denial_admits_within_a_second() {
    let proxy = Harness::start(10).await;
    proxy.set_policies(1, &[&hourly(2)]).await;
    let statuses: Vec<bool> = [proxy.allowed("/reviews/1").await, proxy.allowed("/reviews/1").await, proxy.allowed("/reviews/1").await].into();
    assert_eq!(statuses, [true, true, false]);
    assert!(!proxy.allowed("/reviews/1").await, "the denial is held");

    let edited = Instant::now();
    proxy.collector.set_policies(2, &[&hourly(100)]);
    assert!(proxy.first(true, "/reviews/1", edited).await.is_some(), "still denied 1 s after the limit was raised");
}

/// A denial the collector decided before the edit and that arrives after it must not
/// be held until the old window's end.
#[tokio::test]
async fn a_denial_answered_after_the_limit_was_raised_is_not_held() {
    let proxy = Arc::new(Harness::start(10).await);
    proxy.set_policies(1, &[&hourly(0)]).await;
    proxy.collector.answer_delay_ms.store(500, Ordering::SeqCst);
    let decided = proxy.collector.decided.load(Ordering::SeqCst);
    let waiting = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.allowed("/reviews/1").await })
    };
    // The collector has denied it (under maxAmount 0); the answer is on its way.
    eventually("the ask decided", || (proxy.collector.decided.load(Ordering::SeqCst) > decided).then_some(())).await;
    proxy.collector.answer_delay_ms.store(0, Ordering::SeqCst);
    let edited = Instant::now();
    proxy.set_policies(2, &[&hourly(100)]).await;
    let first_request = waiting.await.expect("request task");
    let allowed_after = if first_request { Some(edited.elapsed()) } else { proxy.first(true, "/reviews/1", edited).await };
    assert!(allowed_after.is_some_and(|after| after < EDIT_DEADLINE), "still denied 1 s after the limit was raised: {allowed_after:?}");
}

/// A push that changes one policy leaves the leases (and the held denials) of the
/// others alone: no Check for them; a removed policy's leases go.
#[tokio::test]
async fn a_push_that_changes_another_policy_costs_the_unchanged_ones_no_check() {
    const HOT: &str = r#"{"name": "hot", "match": {"pathPrefix": "/hot"}, "maxAmount": 100000, "validDuration": "1h"}"#;
    const TIGHT: &str = r#"{"name": "tight", "match": {"pathPrefix": "/tight"}, "maxAmount": 1, "validDuration": "1h"}"#;
    let other = |max_amount: u64| format!(r#"{{"name": "other", "match": {{"pathPrefix": "/other"}}, "maxAmount": {max_amount}, "validDuration": "1h"}}"#);
    let proxy = Harness::start(1000).await;
    proxy.set_policies(1, &[HOT, TIGHT, &other(5)]).await;
    for _ in 0..3 {
        assert!(proxy.allowed("/hot").await);
    }
    assert!(proxy.allowed("/tight").await);
    assert!(!proxy.allowed("/tight").await);
    let checks = proxy.check_rpcs();
    let hot_leased = proxy.leased("hot");

    proxy.set_policies(2, &[HOT, TIGHT, &other(6)]).await;
    for _ in 0..3 {
        assert!(proxy.allowed("/hot").await);
        assert!(!proxy.allowed("/tight").await);
    }
    assert_eq!(proxy.check_rpcs(), checks, "an unchanged policy's lease or denial was reset by another's edit");
    assert_eq!(proxy.leased("hot"), hot_leased.map(|n| n - 3), "the hot lease kept its tokens");

    proxy.set_policies(3, &[HOT, &other(6)]).await;
    assert_eq!(proxy.leased("tight"), None, "a removed policy's lease is dropped");
    assert!(proxy.allowed("/tight").await);
    assert!(proxy.leased("hot").is_some());
}

/// A token bucket's leased tokens last a refill period: a steady rate well under the
/// limit is answered from the lease, and never refused. (A grant valid until the next
/// token, a millisecond here, made every request ask again and each ask drain the
/// bucket.)
#[tokio::test]
async fn a_token_bucket_lease_serves_a_steady_rate_under_the_limit() {
    let proxy = Harness::start(10).await;
    let bucket = r#"{"name": "bucket", "match": {"destination": {"service": "reviews"}}, "maxAmount": 1000, "validDuration": "1s", "algorithm": "token-bucket", "burst": 1000}"#;
    proxy.set_policies(1, &[bucket]).await;
    let before = proxy.check_rpcs();
    let mut refused = 0;
    for _ in 0..150 {
        if !proxy.allowed("/reviews/1").await {
            refused += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let checks = proxy.check_rpcs() - before;
    assert_eq!(refused, 0, "refused under a tenth of the limit ({checks} Checks)");
    assert!(checks <= 30, "{checks} Checks for 150 requests: the lease is not serving them");
}
