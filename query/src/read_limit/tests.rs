#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use meshtel_model::{
    DependencyLink, Operation, Result, SpanKind, Trace, TraceId, TraceQuery, TraceReader,
};
use tokio::sync::Semaphore;

use super::*;
use crate::testing::{FixedClock, get};
use crate::unread::HANDOUT_BYTES;
use crate::{QueryConfig, build_router};

/// A store whose trace fetches wait until the test lets them through.
struct GatedReader {
    gate: Semaphore,
}

#[async_trait::async_trait]
impl TraceReader for GatedReader {
    async fn services(&self) -> Result<Vec<String>> {
        Ok(vec!["front".into()])
    }
    async fn operations(&self, _: &str, _: Option<SpanKind>) -> Result<Vec<Operation>> {
        Ok(Vec::new())
    }
    async fn find_traces(&self, _: &TraceQuery) -> Result<Vec<Trace>> {
        Ok(Vec::new())
    }
    async fn get_traces(&self, _: &[TraceId], _: usize) -> Result<Vec<Trace>> {
        let _open = self.gate.acquire().await.unwrap();
        Ok(Vec::new())
    }
    async fn dependencies(&self, _: u64, _: u64) -> Result<Vec<DependencyLink>> {
        let _open = self.gate.acquire().await.unwrap();
        Ok(Vec::new())
    }
}

/// Span-based dependencies take no read turn (the store gives them turns of their
/// own): while many wait, a fetch still runs.
#[tokio::test]
async fn dependency_queries_hold_no_read_turn() {
    let reader = Arc::new(GatedReader {
        gate: Semaphore::new(0),
    });
    let reads = ReadLimit::new(1, Duration::from_millis(300));
    let app = build_router(
        reader.clone(),
        None,
        None,
        Arc::new(FixedClock),
        &QueryConfig::default(),
        reads.clone(),
    );
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(
                async move { get(&app, "/api/dependencies?endTs=1000&lookback=1000").await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reads.in_flight(), 0);
    let fetch = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reads.in_flight(), 1, "the fetch has its turn");
    reader.gate.add_permits(4);
    assert_eq!(fetch.await.unwrap().status, StatusCode::NOT_FOUND);
    for dependencies in waiting {
        assert_eq!(dependencies.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(reads.refused(), 0);
}

#[tokio::test]
async fn a_read_beyond_the_bound_waits_then_is_refused_and_others_pass() {
    let reader = Arc::new(GatedReader {
        gate: Semaphore::new(0),
    });
    let reads = ReadLimit::new(1, Duration::from_millis(300));
    let config = QueryConfig {
        base_path: "/jaeger".into(),
        ..QueryConfig::default()
    };
    let app = build_router(
        reader.clone(),
        None,
        None,
        Arc::new(FixedClock),
        &config,
        reads.clone(),
    );
    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    let first = tokio::spawn({
        let app = app.clone();
        async move { get(&app, &format!("/jaeger/api/traces/{ID}")).await }
    });
    while reads.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Not a trace read: not held up.
    let services = get(&app, "/jaeger/api/services").await;
    assert_eq!(services.status, StatusCode::OK);

    let started = Instant::now();
    let refused = get(&app, &format!("/jaeger/api/v3/traces/{ID}")).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "1");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("[query] max_concurrent_reads"),
        "{message}"
    );
    let v1 = get(&app, &format!("/jaeger/api/traces?traceID={ID}")).await;
    assert_eq!(v1.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v1.headers["retry-after"], "1");
    assert!(
        v1.json()["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("max_concurrent_reads")
    );
    assert_eq!(reads.refused(), 2);

    // The first read ends; the next one gets its turn.
    reader.gate.add_permits(10);
    assert_eq!(first.await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(reads.in_flight(), 0);
    let next = get(&app, &format!("/jaeger/api/traces/{ID}")).await;
    assert_eq!(next.status, StatusCode::NOT_FOUND);
    assert_eq!(reads.refused(), 2);
}

/// Listing the quota policies and their audit takes a read turn too (their answers
/// grow to the 16 MiB of the policy set); one policy, and writes, do not.
#[tokio::test]
async fn policy_lists_take_a_read_turn() {
    let reader = Arc::new(GatedReader {
        gate: Semaphore::new(0),
    });
    let reads = ReadLimit::new(1, Duration::from_millis(200));
    let policies = axum::Router::new()
        .route("/api/quotas", axum::routing::get(|| async { "[]" }))
        .route(
            "/api/quotas/audit",
            axum::routing::get(|| async { "[]" }).put(|| async { "reserved" }),
        )
        .route("/api/quotas/{name}", axum::routing::get(|| async { "{}" }));
    let app = build_router(
        reader.clone(),
        None,
        Some(policies),
        Arc::new(FixedClock),
        &QueryConfig::default(),
        reads.clone(),
    );
    let fetch = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736").await }
    });
    while reads.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(get(&app, "/api/quotas/q").await.status, StatusCode::OK);
    for list in ["/api/quotas", "/api/quotas/audit"] {
        let refused = get(&app, list).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{list}");
    }
    assert_eq!(reads.refused(), 2);
    reader.gate.add_permits(1);
    assert_eq!(fetch.await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/api/quotas").await.status, StatusCode::OK);
    assert_eq!(reads.in_flight(), 0);
}

/// The slot is held until the answer's body is sent or dropped, not only while the
/// answer is built: an answer a client does not read still holds its memory.
#[tokio::test]
async fn an_answer_not_yet_read_holds_its_slot() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let reader = Arc::new(GatedReader {
        gate: Semaphore::new(10),
    });
    let reads = ReadLimit::new(1, Duration::from_millis(200));
    let config = QueryConfig::default();
    let app = build_router(
        reader,
        None,
        None,
        Arc::new(FixedClock),
        &config,
        reads.clone(),
    );
    let request = Request::get("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736")
        .body(Body::empty())
        .unwrap();
    let unread = app.clone().oneshot(request).await.unwrap();
    assert_eq!(unread.status(), StatusCode::NOT_FOUND);
    assert_eq!(reads.in_flight(), 1, "the body is not sent yet");
    let refused = get(&app, "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(unread);
    assert_eq!(reads.in_flight(), 0);
    let next = get(&app, "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(next.status, StatusCode::NOT_FOUND);
}

/// An answer its client leaves unread past the unread timeout (an HTTP/2 client that
/// grants no window never blocks a socket write) is dropped with its slot, and its
/// stream then ends in an error.
#[tokio::test]
async fn an_answer_left_unread_past_the_timeout_gives_its_slot_back() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let reader = Arc::new(GatedReader {
        gate: Semaphore::new(10),
    });
    let reads = ReadLimit::new(1, Duration::from_millis(100))
        .with_unread_timeout(Duration::from_millis(200));
    let app = build_router(
        reader,
        None,
        None,
        Arc::new(FixedClock),
        &QueryConfig::default(),
        reads.clone(),
    );
    let request = || {
        Request::get("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736")
            .version(axum::http::Version::HTTP_2)
            .body(Body::empty())
            .unwrap()
    };
    let unread = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(reads.in_flight(), 1);
    let started = Instant::now();
    while reads.in_flight() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the slot is still held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(reads.dropped_unread(), 1);
    let next = get(&app, "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(next.status, StatusCode::NOT_FOUND);
    assert!(
        http_body_util::BodyExt::collect(unread.into_body())
            .await
            .is_err(),
        "the dropped answer ends in an error"
    );
    // Over HTTP/1 the listener's stalled-write bound applies instead: not dropped.
    let http1 = app
        .clone()
        .oneshot(
            Request::get("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!((reads.in_flight(), reads.dropped_unread()), (1, 1));
    drop(http1);
    // An answer read in time is whole, and counts nothing.
    let read = app.clone().oneshot(request()).await.unwrap();
    let body = http_body_util::BodyExt::collect(read.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(!body.is_empty());
    assert_eq!(reads.dropped_unread(), 1);
}

/// The server gets a large answer in pieces of their own, so that when it holds one
/// it cannot send (hyper's HTTP/2 takes a frame before it waits for the client's
/// window) and the answer goes unread, dropping the answer frees all of it but that
/// piece: the stream then ends in an error, not with the rest of the answer.
#[tokio::test]
async fn a_large_answer_is_handed_out_in_pieces_and_dropped_past_its_first() {
    let reads = ReadLimit::new(1, Duration::from_millis(100))
        .with_unread_timeout(Duration::from_millis(200));
    let answer = vec![b'x'; 10 * HANDOUT_BYTES + 7];
    let permit = reads.permits.clone().acquire_owned().await.unwrap();
    let mut body = SlotBody::wrap(Body::from(answer.clone()), permit, &reads, true);
    assert_eq!(
        http_body::Body::size_hint(&body).exact(),
        Some(answer.len() as u64),
        "Content-Length stays known"
    );
    // Read whole, it comes back whole, in pieces.
    let mut pieces = 0;
    let mut whole = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(data.len() <= HANDOUT_BYTES);
        whole.extend_from_slice(&data);
        pieces += 1;
    }
    assert_eq!((whole.len(), pieces), (answer.len(), 11));
    assert_eq!(reads.in_flight(), 0);

    // One piece taken, then nothing: past the timeout the rest is gone with the slot.
    let permit = reads.permits.clone().acquire_owned().await.unwrap();
    let mut body = SlotBody::wrap(Body::from(answer), permit, &reads, true);
    let first = http_body_util::BodyExt::frame(&mut body)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap().len(), HANDOUT_BYTES);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reads.in_flight(), 0);
    assert_eq!(reads.dropped_unread(), 1);
    let next = http_body_util::BodyExt::frame(&mut body).await;
    assert!(matches!(next, Some(Err(_))), "the stream ends in an error");
}
