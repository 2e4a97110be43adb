//! In-process quota decisions per second, plain std timing (no criterion in the
//! workspace). Prints one line per case:
//!
//! ```sh
//! cargo bench -p meshtel-collector --bench quota_engine
//! ```
//!
//! Cases: one hot key and 100 000 keys, each through the attribute path
//! ([`QuotaEngine::check`]: policy lookup, match, key built from the attributes,
//! counter) and the fast path ([`QuotaEngine::charge`] with a key resolved once), on
//! one thread; the hot key from two threads; and `ShouldRateLimit` in process. Every
//! decision is a grant (the limits are far above the demand) on the system clock, so
//! the figures include reading the clock and the metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshtel_collector::{QuotaConfig, QuotaEngine};
use meshtel_model::mixer::{QuotaAttributes, Workload};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_model::rls::rate_limit_descriptor::Entry;
use meshtel_model::rls::{RateLimitDescriptor, RateLimitRequest};
use serde_json::json;

const KEYS: usize = 100_000;

fn engine() -> Arc<QuotaEngine> {
    let engine = QuotaEngine::with_system_clock(QuotaConfig::default()).unwrap();
    let specs: Vec<QuotaPolicySpec> = [
        json!({
            "name": "per-user",
            "match": {"destination": {"service": "ratings"}},
            "dimensions": {
                "user": "request.headers[\"x-user\"] | \"anonymous\"",
                "source": "source.service | \"unknown\"",
            },
            "maxAmount": 1_000_000_000_000u64,
            "validDuration": "1s",
            "overrides": [{"dimensions": {"source": "vip"}, "maxAmount": 2_000_000_000_000u64}],
        }),
        json!({
            "name": "rolling",
            "dimensions": {"user": "request.headers[\"x-user\"]"},
            "maxAmount": 1_000_000_000_000u64,
            "validDuration": "1s",
            "algorithm": "rolling-window",
        }),
        json!({
            "name": "bucket",
            "dimensions": {"user": "request.headers[\"x-user\"]"},
            "maxAmount": 1_000_000_000_000u64,
            "validDuration": "1s",
            "algorithm": "token-bucket",
        }),
        json!({
            "name": "edge-per-ip",
            "maxAmount": 1_000_000_000_000u64,
            "validDuration": "1s",
            "rateLimit": {"domain": "edge", "descriptors": [{"key": "remote_address"}]},
        }),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect();
    let load = engine.set_policies(1, specs);
    assert!(load.invalid.is_empty(), "{:?}", load.invalid);
    Arc::new(engine)
}

fn attrs(user: &str) -> QuotaAttributes {
    QuotaAttributes {
        source: Some(Workload {
            app: "reviews".into(),
            version: "v2".into(),
            ..Workload::default()
        }),
        destination_service_name: "ratings".into(),
        request_method: "GET".into(),
        request_path: "/ratings/0".into(),
        request_headers: [("x-user".to_string(), user.to_string())].into(),
        ..QuotaAttributes::default()
    }
}

/// Runs `decide(i)` for about `budget` and prints decisions/s.
fn run(name: &str, budget: Duration, mut decide: impl FnMut(usize) -> u64) -> f64 {
    // Warm up (first inserts, caches).
    let mut granted = 0;
    for i in 0..KEYS.min(200_000) {
        granted += decide(i);
    }
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < budget {
        for _ in 0..10_000 {
            granted += decide(n);
            n += 1;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    black_box(granted);
    println!(
        "{name:<52} {:>12.0} decisions/s  ({:.0} ns each)",
        rate,
        1e9 / rate
    );
    rate
}

fn main() {
    let budget = Duration::from_secs(2);
    let engine = engine();
    println!(
        "quota engine, in process, {} threads available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let hot = attrs("alice");
    run("hot key, attributes (check), 1 thread", budget, |_| {
        engine.check(&hot, "per-user", 1, false).decision.granted
    });
    let handle = engine.handle("per-user").unwrap();
    let resolved = handle.policy().resolve(&hot);
    run("hot key, resolved key (charge), 1 thread", budget, |_| {
        engine
            .charge(&handle, &resolved.key, &resolved.limit, 1, false)
            .granted
    });
    for algorithm in ["rolling", "bucket"] {
        let handle = engine.handle(algorithm).unwrap();
        let resolved = handle.policy().resolve(&hot);
        run(
            &format!("hot key, resolved key (charge), {algorithm}, 1 thread"),
            budget,
            |_| {
                engine
                    .charge(&handle, &resolved.key, &resolved.limit, 1, false)
                    .granted
            },
        );
    }

    let users: Vec<QuotaAttributes> = (0..KEYS).map(|i| attrs(&format!("user-{i:06}"))).collect();
    run("100k keys, attributes (check), 1 thread", budget, |i| {
        engine
            .check(&users[i % KEYS], "per-user", 1, false)
            .decision
            .granted
    });
    let keys: Vec<_> = users.iter().map(|a| handle.policy().resolve(a)).collect();
    run("100k keys, resolved keys (charge), 1 thread", budget, |i| {
        let r = &keys[i % KEYS];
        engine.charge(&handle, &r.key, &r.limit, 1, false).granted
    });

    let threads: Vec<_> = (0..2)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let hot = attrs("alice");
                run(
                    "hot key, attributes (check), each of 2 threads",
                    budget,
                    |_| engine.check(&hot, "per-user", 1, false).decision.granted,
                )
            })
        })
        .collect();
    let total: f64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!(
        "{:<52} {total:>12.0} decisions/s",
        "hot key, attributes (check), 2 threads together"
    );

    let requests: Vec<RateLimitRequest> = (0..1000)
        .map(|i| RateLimitRequest {
            domain: "edge".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "remote_address".into(),
                    value: format!("10.0.{}.{}", i / 256, i % 256),
                }],
                limit: None,
                hits_addend: None,
            }],
            hits_addend: 0,
        })
        .collect();
    run(
        "RLS ShouldRateLimit (1 descriptor, 1000 keys), 1 thread",
        budget,
        |i| {
            engine
                .should_rate_limit(&requests[i % requests.len()])
                .unwrap()
                .statuses
                .len() as u64
        },
    );
    println!("live counters: {}", engine.key_count());
}
